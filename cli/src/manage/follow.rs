//! Following a job until it ends (`ordo watch`, `ordo submit --wait`, and `ordo submit` /
//! `ordo retry` of a local job): poll its status, write a line for each task state change and a
//! last line with the outcome, and ride out a coordinator restart of up to `OUTAGE_LIMIT`.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use ordo_proto::api::{JobStatus, JobSummary, TaskStatus};
use ordo_proto::{JobId, JobState, TaskIndex, TaskPhase};

use super::render::{fmt_duration, one_line, warn};
use crate::args::exit;
use crate::jobs::{Error, Jobs, plain};

/// `watch` / `submit --wait` poll `status` this often.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Following commands tolerate failing requests this long (a coordinator restart) before exit 3.
pub const OUTAGE_LIMIT: Duration = Duration::from_secs(30);

/// Runs `fut` unless Ctrl-C or SIGTERM comes first.
pub async fn interruptible<T>(fut: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::select! {
        r = fut => r,
        () = ordo_plumbing::signals::interrupted() => Err(Error::Interrupted),
    }
}

/// How long requests have been failing.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Records a failure at `now`; true once failures have lasted longer than `limit`.
    pub fn failed(&mut self, now: Instant, limit: Duration) -> bool {
        let since = *self.since.get_or_insert(now);
        now.duration_since(since) > limit
    }

    /// Records a success; true if requests were failing until now.
    pub fn ok(&mut self) -> bool {
        self.since.take().is_some()
    }

    fn ongoing(&self) -> bool {
        self.since.is_some()
    }
}

/// Asks for `status`, riding out an outage of up to `OUTAGE_LIMIT` (`None`: failed, try
/// again).
pub async fn status_tolerant(
    jobs: &Jobs,
    job: JobId,
    outage: &mut Outage,
) -> Result<Option<JobStatus>, Error> {
    tolerate(jobs.status(job).await, outage)
}

/// `status_tolerant` for the summary alone (no task list is read).
pub async fn summary_tolerant(
    jobs: &Jobs,
    job: JobId,
    outage: &mut Outage,
) -> Result<Option<JobSummary>, Error> {
    tolerate(jobs.summary(job).await, outage)
}

fn tolerate<T>(answer: Result<T, Error>, outage: &mut Outage) -> Result<Option<T>, Error> {
    match answer {
        Ok(status) => {
            if outage.ok() {
                warn("ordo: the coordinator answers again");
            }
            Ok(Some(status))
        }
        Err(e) if e.is_transient() => {
            let first = !outage.ongoing();
            if outage.failed(Instant::now(), OUTAGE_LIMIT) {
                return Err(e);
            }
            if first {
                warn(&format!(
                    "ordo: {e}; retrying for up to {}s",
                    OUTAGE_LIMIT.as_secs()
                ));
            }
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Polls `status` until the job ends, writing a line to `progress` for each task state change
/// and a last line with the job's outcome; returns the final status.
pub async fn follow_job(
    jobs: &Jobs,
    job: JobId,
    progress: &mut (dyn Write + Send),
) -> Result<JobStatus, Error> {
    let mut seen = HashMap::new();
    let mut outage = Outage::default();
    loop {
        if let Some(status) = status_tolerant(jobs, job, &mut outage).await? {
            let mut text = String::new();
            for line in changes(&mut seen, &status) {
                text.push_str(&line);
                text.push('\n');
            }
            let done = status.summary.state.is_terminal();
            if done {
                text.push_str(&final_line(&status.summary));
                text.push('\n');
            }
            progress
                .write_all(text.as_bytes())
                .and_then(|()| progress.flush())
                .map_err(Error::Output)?;
            if done {
                return Ok(status);
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Exit code of a finished job: 0 if it succeeded, 1 otherwise.
pub fn outcome_code(state: JobState) -> u8 {
    if state == JobState::Succeeded {
        exit::OK
    } else {
        exit::JOB_FAILED
    }
}

/// What was last seen of each task: state, attempts and conflicts.
type Seen = HashMap<TaskIndex, (TaskPhase, u32, u32)>;

/// Lines for the tasks whose state, attempt or conflicts changed since the last call; updates
/// `seen`. What happened between two polls is told too, as `ordo run` tells it: a failed
/// attempt retried at once (its retry wait never seen) and a conflict at integration.
fn changes(seen: &mut Seen, status: &JobStatus) -> Vec<String> {
    let mut lines = Vec::new();
    for t in &status.tasks {
        let now = (t.state, t.attempts, t.conflicts);
        let Some(&(phase, attempts, conflicts)) = seen.get(&t.index) else {
            lines.extend(change_line(t));
            seen.insert(t.index, now);
            continue;
        };
        if (phase, attempts, conflicts) == now {
            continue;
        }
        let name = plain(&t.name);
        // Attempts that ended and were retried between two polls.
        let unseen = if phase == TaskPhase::RetryWait {
            attempts + 1
        } else {
            attempts
        };
        for a in unseen.max(1)..t.attempts {
            lines.push(format!("↻ {name} attempt {a} failed, retried"));
        }
        for _ in conflicts..t.conflicts {
            lines.push(format!(
                "⚠ {name} conflicted at integration: running again from the new tip (no \
                 attempt spent)"
            ));
        }
        lines.extend(change_line(t));
        seen.insert(t.index, now);
    }
    lines
}

/// The line for a task entering its current state; `None` for states not worth a line
/// (pending, ready, dispatched).
fn change_line(t: &TaskStatus) -> Option<String> {
    let name = plain(&t.label());
    let why = |what: &str| match (t.reason.as_deref().map(one_line), t.exit_code) {
        (Some(r), _) if !r.is_empty() => format!("{what}: {r}"),
        (_, Some(code)) => format!("{what}: exit code {code}"),
        _ => what.to_string(),
    };
    Some(match t.state {
        TaskPhase::Running => {
            let mut line = format!("▶ {name} running");
            if let Some(w) = &t.worker {
                line.push_str(&format!(" on {}", plain(w.as_str())));
            }
            if t.attempts > 1 {
                line.push_str(&format!(" (attempt {})", t.attempts));
            }
            line
        }
        TaskPhase::Integrating => format!("⇢ {name} integrating"),
        TaskPhase::AwaitingApproval => format!("⏸ {name} awaiting approval"),
        TaskPhase::Succeeded => match t.duration_ms {
            Some(ms) => format!("✓ {name} succeeded in {}", fmt_duration(ms)),
            None => format!("✓ {name} succeeded"),
        },
        TaskPhase::Failed => format!("✗ {name} {}", why("failed")),
        TaskPhase::TimedOut => format!("✗ {name} {}", why("timed out")),
        TaskPhase::Cancelled => format!("⊘ {name} {}", why("cancelled")),
        TaskPhase::Skipped => format!("⊘ {name} {}", why("skipped")),
        TaskPhase::RetryWait => format!(
            "↻ {name} {}",
            why(&format!("attempt {} failed, will retry", t.attempts))
        ),
        TaskPhase::Pending | TaskPhase::Ready | TaskPhase::Dispatched => return None,
    })
}

/// The last line of `watch`: the job's outcome.
pub fn final_line(s: &JobSummary) -> String {
    let symbol = match s.state {
        JobState::Succeeded => "✓",
        JobState::Cancelled => "⊘",
        _ => "✗",
    };
    let mut line = format!("{symbol} job {} '{}' {}", s.id, plain(&s.name), s.state);
    if let Some(f) = s.finished_ms {
        line.push_str(&format!(
            " in {}{}",
            fmt_duration(s.run_duration(f)),
            super::render::run_note(s.retries)
        ));
    }
    line.push_str(&format!(": {}/{} tasks succeeded", s.succeeded, s.total));
    if s.failed > 0 {
        line.push_str(&format!(", {} failed", s.failed));
    }
    if let Some(r) = s.reason.as_deref().map(one_line)
        && !r.is_empty()
    {
        line.push_str(&format!(" ({r})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::render::MAX_REASON;
    use crate::manage::tests::{JOB, status, summary, task};

    #[test]
    fn change_lines() {
        let mut t = task(0, "build", TaskPhase::Running);
        t.worker = Some("w-1".into());
        assert_eq!(change_line(&t).unwrap(), "▶ build running on w-1");
        t.attempts = 2;
        assert_eq!(
            change_line(&t).unwrap(),
            "▶ build running on w-1 (attempt 2)"
        );
        t.state = TaskPhase::Succeeded;
        t.duration_ms = Some(1234);
        assert_eq!(change_line(&t).unwrap(), "✓ build succeeded in 1.2s");
        t.state = TaskPhase::Failed;
        t.exit_code = Some(3);
        assert_eq!(change_line(&t).unwrap(), "✗ build failed: exit code 3");
        t.reason = Some("exit code 3:\n  boom".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "✗ build failed: exit code 3: boom"
        );
        t.state = TaskPhase::TimedOut;
        t.reason = Some("timed out after 5s".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "✗ build timed out: timed out after 5s"
        );
        t.state = TaskPhase::Skipped;
        t.reason = Some("dependency a failed".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "⊘ build skipped: dependency a failed"
        );
        t.state = TaskPhase::RetryWait;
        t.reason = Some("exit code 1".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "↻ build attempt 2 failed, will retry: exit code 1"
        );
        for quiet in [TaskPhase::Pending, TaskPhase::Ready, TaskPhase::Dispatched] {
            t.state = quiet;
            assert_eq!(change_line(&t), None);
        }
        let mut long = task(1, "x", TaskPhase::Cancelled);
        long.reason = Some("r".repeat(500));
        assert_eq!(
            change_line(&long).unwrap().chars().count(),
            "⊘ x cancelled: ".chars().count() + MAX_REASON
        );
    }

    #[test]
    fn changes_are_reported_once() {
        let mut seen = Seen::new();
        let mut st = status(
            JobState::Running,
            vec![
                task(0, "a", TaskPhase::Succeeded),
                task(1, "b", TaskPhase::Pending),
            ],
        );
        assert_eq!(changes(&mut seen, &st), vec!["✓ a succeeded"]);
        assert!(changes(&mut seen, &st).is_empty());
        st.tasks[1].state = TaskPhase::Running;
        assert_eq!(changes(&mut seen, &st), vec!["▶ b running"]);
        st.tasks[1].attempts = 2;
        assert_eq!(
            changes(&mut seen, &st),
            vec!["↻ b attempt 1 failed, retried", "▶ b running (attempt 2)"]
        );
        st.tasks[1].state = TaskPhase::Failed;
        assert_eq!(changes(&mut seen, &st), vec!["✗ b failed"]);
    }

    /// A poll sees where a task is, not how it got there: a failure retried at once and a
    /// conflict between two polls are told all the same.
    #[test]
    fn quick_retries_and_conflicts_between_polls_are_told() {
        let mut seen = Seen::new();
        let mut st = status(JobState::Running, vec![task(0, "a", TaskPhase::Running)]);
        assert_eq!(changes(&mut seen, &st), vec!["▶ a running"]);
        st.tasks[0].attempts = 3;
        assert_eq!(
            changes(&mut seen, &st),
            vec![
                "↻ a attempt 1 failed, retried",
                "↻ a attempt 2 failed, retried",
                "▶ a running (attempt 3)"
            ]
        );
        st.tasks[0].state = TaskPhase::RetryWait;
        st.tasks[0].reason = Some("exit code 1".into());
        assert_eq!(
            changes(&mut seen, &st),
            vec!["↻ a attempt 3 failed, will retry: exit code 1"]
        );
        st.tasks[0].state = TaskPhase::Running;
        st.tasks[0].attempts = 4;
        st.tasks[0].conflicts = 1;
        assert_eq!(
            changes(&mut seen, &st),
            vec![
                "⚠ a conflicted at integration: running again from the new tip (no attempt \
                 spent)",
                "▶ a running (attempt 4)"
            ]
        );
    }

    #[test]
    fn final_lines() {
        let mut s = summary(JobState::Succeeded);
        s.finished_ms = Some(s.created_ms + 12_300);
        s.succeeded = 3;
        s.running = 0;
        assert_eq!(
            final_line(&s),
            format!("✓ job {JOB} 'build' succeeded in 12.3s: 3/3 tasks succeeded")
        );
        s.state = JobState::Failed;
        s.succeeded = 1;
        s.failed = 2;
        s.reason = Some("fail_fast".into());
        assert_eq!(
            final_line(&s),
            format!(
                "✗ job {JOB} 'build' failed in 12.3s: 1/3 tasks succeeded, 2 failed (fail_fast)"
            )
        );
        assert_eq!(outcome_code(JobState::Succeeded), exit::OK);
        assert_eq!(outcome_code(JobState::Failed), exit::JOB_FAILED);
        assert_eq!(outcome_code(JobState::Cancelled), exit::JOB_FAILED);
    }

    #[test]
    fn outage_window() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert!(!o.ok());
        assert!(!o.failed(t0, OUTAGE_LIMIT));
        assert!(!o.failed(t0 + Duration::from_secs(29), OUTAGE_LIMIT));
        assert!(o.failed(t0 + Duration::from_secs(31), OUTAGE_LIMIT));
        assert!(o.ok());
        assert!(!o.failed(t0 + Duration::from_secs(40), OUTAGE_LIMIT));
    }
}
