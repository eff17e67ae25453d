//! One place for names: NATS subjects, streams and consumers, limits, and file names.
//!
//! Subject tokens are never user text: jobs appear as their UUID, tasks as their index in the
//! job, workers as their generated id. Queue names are the one user-chosen token; validation
//! restricts them to `[A-Za-z0-9_-]`.

use crate::ids::{Attempt, AttemptRef, JobId, TaskIndex, TaskName, WorkerId};

/// Queue of tasks that do not name one.
pub const DEFAULT_QUEUE: &str = "default";

/// Largest spec file accepted, in bytes.
pub const MAX_SPEC_BYTES: usize = 64 * 1024 * 1024;
/// Most tasks in one job.
pub const MAX_TASKS: usize = 200_000;
/// Deepest nesting accepted in JSON/TOML specs (serde_json's own limit is 128).
pub const MAX_NESTING: usize = 128;

/// The redb file inside a `--state` / `--data-dir` directory.
pub const STATE_FILE: &str = "ordo.redb";

/// Default NATS URL of every binary (`--nats`, `ORDO_NATS_URL`).
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Work-queue stream of task messages, `ordo.task.<queue>`.
pub const TASK_STREAM: &str = "ORDO_TASKS";
/// Results and events from workers, `ordo.event.<job>`.
pub const EVENT_STREAM: &str = "ORDO_EVENTS";
/// Task output, `ordo.log.<job>.<task index>` (limits retention).
pub const LOG_STREAM: &str = "ORDO_LOGS";
/// The coordinator's durable consumer of `EVENT_STREAM`.
pub const EVENT_CONSUMER: &str = "ordo-coordinator";

pub const TASK_SUBJECTS: &str = "ordo.task.>";
pub const EVENT_SUBJECTS: &str = "ordo.event.>";
pub const LOG_SUBJECTS: &str = "ordo.log.>";
/// Output of one attempt streamed to its log subject; beyond this only the result's tail
/// keeps it (a task writing gigabytes must not flood the broker).
pub const MAX_STREAMED_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// `Started` notices (core NATS, best effort: a lost one only delays the `running` display),
/// `ordo.started.<job>`.
pub const STARTED_SUBJECTS: &str = "ordo.started.*";
/// Worker heartbeats (core NATS), `ordo.heartbeat.<worker>`.
pub const HEARTBEAT_SUBJECTS: &str = "ordo.heartbeat.*";
/// Kill requests from the coordinator to every worker (core NATS).
pub const CONTROL_KILL: &str = "ordo.control.kill";
/// The coordinator's API: `ordo.api.<verb>`, JSON request and reply.
pub const API_SUBJECTS: &str = "ordo.api.*";
/// Queue group of coordinator API subscribers.
pub const API_QUEUE_GROUP: &str = "ordo-coordinator";

pub fn task_subject(queue: &str) -> String {
    format!("ordo.task.{queue}")
}

/// Durable pull consumer shared by every worker of a queue.
pub fn queue_consumer(queue: &str) -> String {
    format!("ordo-queue-{queue}")
}

pub fn event_subject(job: &JobId) -> String {
    format!("ordo.event.{job}")
}

pub fn log_subject(job: &JobId, index: TaskIndex) -> String {
    format!("ordo.log.{job}.{index}")
}

/// Every task's output of a job.
pub fn log_subjects(job: &JobId) -> String {
    format!("ordo.log.{job}.*")
}

pub fn started_subject(job: &JobId) -> String {
    format!("ordo.started.{job}")
}

pub fn heartbeat_subject(worker: &WorkerId) -> String {
    format!("ordo.heartbeat.{worker}")
}

pub fn api_subject(verb: &str) -> String {
    format!("ordo.api.{verb}")
}

/// The advisories JetStream sends when a task message of any queue ran out of deliveries.
pub fn max_deliveries_advisories() -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{TASK_STREAM}.*")
}

/// `Nats-Msg-Id` of a dispatch: replays of the same attempt are de-duplicated by JetStream.
pub fn dispatch_msg_id(attempt: &AttemptRef) -> String {
    format!("{}.{}.{}", attempt.job, attempt.index, attempt.attempt)
}

/// Environment of an attempt in a workspace: the worktree it runs in.
pub const ENV_WORKSPACE: &str = "ORDO_WORKSPACE";
/// Environment of an attempt re-run after a conflict: the conflicting files, one per line.
pub const ENV_CONFLICT_FILES: &str = "ORDO_CONFLICT_FILES";

/// The first 8 characters of a job id: short, and unique enough within a repository.
pub fn job8(job: &JobId) -> String {
    job.to_string()[..8].to_string()
}

/// A git branch name component from user text: `[A-Za-z0-9._-]` kept, runs of anything else
/// one `-`, no `-` or `.` at the ends, no `..`, at most 40 bytes, `task` when nothing is left.
/// Valid in any ref name (`git check-ref-format`).
pub fn ref_component(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let keep = c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
        let c = if keep { c } else { '-' };
        let last = out.chars().last();
        if (c == '-' && last == Some('-')) || (c == '.' && last == Some('.')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(40);
    let out = out.trim_matches(|c| c == '-' || c == '.');
    let out = out.strip_suffix(".lock").unwrap_or(out);
    let out = out.trim_matches(|c| c == '-' || c == '.');
    if out.is_empty() {
        "task".to_string()
    } else {
        out.to_string()
    }
}

/// The default integration branch of a job (DESIGN §10): `ordo/<job name>-<job8>`.
pub fn integration_branch(job_name: &str, job: &JobId) -> String {
    format!("ordo/{}-{}", ref_component(job_name), job8(job))
}

/// The branch of one attempt (DESIGN §10): `ordo/<job8>/<index>-<name>/<attempt>`.
pub fn task_branch(job: &JobId, index: TaskIndex, name: &TaskName, attempt: Attempt) -> String {
    format!(
        "ordo/{}/{index}-{}/{attempt}",
        job8(job),
        ref_component(name.as_str())
    )
}

/// Whether a queue name is a safe subject token.
pub fn valid_queue(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= 64
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Branch names from hostile user text stay valid ref names: the checks of
    /// `git check-ref-format` that such text could break.
    #[test]
    fn branch_names_are_valid_refs_for_any_name() {
        let job: JobId = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
        for name in [
            "build api",
            "..",
            "a..b",
            "@{x}",
            "~^:?*[\\",
            "x.lock",
            "-x-",
            ".hidden",
            "ünï",
            "////",
            "a/b",
            "x".repeat(300).as_str(),
            "-",
            ".",
        ] {
            let b = task_branch(
                &job,
                TaskIndex(3),
                &TaskName::new(name).unwrap(),
                Attempt(2),
            );
            assert!(
                b.starts_with("ordo/01890a5d/3-") && b.ends_with("/2"),
                "{b}"
            );
            for part in b.split('/') {
                assert!(!part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"));
                assert!(!part.ends_with('.'), "{b}");
            }
            assert!(!b.contains("..") && !b.contains("@{"), "{b}");
            assert!(
                b.bytes()
                    .all(|c| c.is_ascii_graphic() && !b"~^:?*[\\ ".contains(&c)),
                "{b}"
            );
            let i = integration_branch(name, &job);
            assert!(i.starts_with("ordo/") && i.ends_with("-01890a5d"), "{i}");
        }
        assert_eq!(
            task_branch(
                &job,
                TaskIndex(0),
                &TaskName::new("fix the API").unwrap(),
                Attempt(1)
            ),
            "ordo/01890a5d/0-fix-the-API/1"
        );
        assert_eq!(
            integration_branch("play plan", &job),
            "ordo/play-plan-01890a5d"
        );
    }
}
