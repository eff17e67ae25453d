//! Failpoints for the fault suite (issue 5): `ORDO_FAILPOINTS=point[@n][,point[@n]...]` makes a
//! process kill itself with SIGKILL the n-th time (default: the first) it passes `point`, so a
//! test can crash the coordinator or a worker at an exact step of the delivery protocol. They
//! exist in debug builds only (the ones the tests run); in a release build `hit` is empty.
//!
//! The points, named once here:

/// Coordinator: changes and new dispatches applied, not yet committed.
pub const BEFORE_COMMIT: &str = "coordinator.before-commit";
/// Coordinator: a commit that applied worker results is durable; the results are not acked.
pub const AFTER_APPLY_BEFORE_ACK: &str = "coordinator.after-apply-before-ack";
/// Coordinator: new dispatches are committed to the outbox, not yet published.
pub const AFTER_COMMIT_BEFORE_PUBLISH: &str = "coordinator.after-commit-before-publish";
/// Coordinator: JetStream acked a dispatch; its outbox entry is not yet marked sent.
pub const AFTER_PUBLISH_BEFORE_SENT: &str = "coordinator.after-publish-before-sent";
/// Worker: a result is stored in JetStream; the task message is not acked.
pub const AFTER_RESULT_BEFORE_ACK: &str = "worker.after-result-before-ack";
/// Worker: several results are gathered into one message, not yet published (none of their
/// task messages is acked).
pub const HOLDING_A_BATCH: &str = "worker.holding-a-batch";
/// Worker: a task asked for beyond the free slots came while every slot is busy: it is held,
/// neither started nor acked.
pub const HOLDING_A_TASK: &str = "worker.holding-a-task";
/// Coordinator: a commit that stored `[[notify]]` notifications is durable; none is sent.
pub const AFTER_NOTICE_COMMIT: &str = "coordinator.after-notice-commit";

/// Every point, for tests that pick one.
pub const ALL: [&str; 8] = [
    BEFORE_COMMIT,
    AFTER_APPLY_BEFORE_ACK,
    AFTER_COMMIT_BEFORE_PUBLISH,
    AFTER_PUBLISH_BEFORE_SENT,
    AFTER_RESULT_BEFORE_ACK,
    HOLDING_A_BATCH,
    HOLDING_A_TASK,
    AFTER_NOTICE_COMMIT,
];

/// The variable that arms failpoints.
pub const ENV: &str = "ORDO_FAILPOINTS";

/// Passes `point`: kills this process if the point is armed and its count is reached.
#[cfg(debug_assertions)]
pub fn hit(point: &'static str) {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    static ARMED: OnceLock<HashMap<String, u64>> = OnceLock::new();
    static SEEN: OnceLock<Mutex<HashMap<&'static str, AtomicU64>>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| parse(&std::env::var(ENV).unwrap_or_default()));
    let Some(&at) = armed.get(point) else {
        return;
    };
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let n = seen
        .entry(point)
        .or_insert_with(|| AtomicU64::new(0))
        .fetch_add(1, Ordering::SeqCst)
        + 1;
    if n == at {
        eprintln!("failpoint {point} (hit {n}): killing this process");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        // SIGKILL is on its way; nothing after this point may run.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_point: &'static str) {}

/// `a@3,b` → {a: 3, b: 1}; unknown or malformed entries are ignored.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn parse(spec: &str) -> std::collections::HashMap<String, u64> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.split_once('@') {
            Some((p, n)) => Some((p.to_string(), n.parse().ok()?)),
            None => Some((s.to_string(), 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_points_and_counts() {
        let m = super::parse("coordinator.before-commit@3, worker.x ,bad@y");
        assert_eq!(m.get("coordinator.before-commit"), Some(&3));
        assert_eq!(m.get("worker.x"), Some(&1));
        assert_eq!(m.get("bad"), None);
    }
}
