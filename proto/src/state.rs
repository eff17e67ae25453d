//! The names of task and job states, as every component shows and exchanges them: the API,
//! reports, metrics, traces and the CLI. The engine's own `TaskState` carries each state's data
//! (attempt, worker, deadline, reason) and maps onto `TaskPhase` with `phase()`; `JobState`
//! carries no data, so the engine uses this one.
//!
//! ```text
//! pending → ready → dispatched → running → (awaiting_approval) → (integrating) → succeeded | failed | timed_out
//!              ↑                    │            │                        | cancelled
//!              └──── retry_wait ←───┘ ←──────────┘ (attempts left; a conflict re-runs)
//! pending | ready | retry_wait → skipped | cancelled
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which state a task is in, without the state's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    Pending,
    Ready,
    Dispatched,
    Running,
    /// Its attempt succeeded in a worktree; its change waits for (or is in) integration.
    Integrating,
    RetryWait,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Skipped,
    /// Its attempt passed its verify and stages; an approval stage waits for a person (no
    /// slot, pool or lock held; its dependents wait). Last, so stored indices stay.
    AwaitingApproval,
}

impl TaskPhase {
    pub const ALL: [TaskPhase; 12] = [
        TaskPhase::Pending,
        TaskPhase::Ready,
        TaskPhase::Dispatched,
        TaskPhase::Running,
        TaskPhase::Integrating,
        TaskPhase::RetryWait,
        TaskPhase::Succeeded,
        TaskPhase::Failed,
        TaskPhase::TimedOut,
        TaskPhase::Cancelled,
        TaskPhase::Skipped,
        TaskPhase::AwaitingApproval,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskPhase::Pending => "pending",
            TaskPhase::Ready => "ready",
            TaskPhase::Dispatched => "dispatched",
            TaskPhase::Running => "running",
            TaskPhase::Integrating => "integrating",
            TaskPhase::RetryWait => "retry_wait",
            TaskPhase::Succeeded => "succeeded",
            TaskPhase::Failed => "failed",
            TaskPhase::TimedOut => "timed_out",
            TaskPhase::Cancelled => "cancelled",
            TaskPhase::Skipped => "skipped",
            TaskPhase::AwaitingApproval => "awaiting_approval",
        }
    }

    pub fn is_terminal(self) -> bool {
        match self {
            TaskPhase::Succeeded
            | TaskPhase::Failed
            | TaskPhase::TimedOut
            | TaskPhase::Cancelled
            | TaskPhase::Skipped => true,
            TaskPhase::Pending
            | TaskPhase::Ready
            | TaskPhase::Dispatched
            | TaskPhase::Running
            | TaskPhase::Integrating
            | TaskPhase::AwaitingApproval
            | TaskPhase::RetryWait => false,
        }
    }

    /// Ended without success (what a report counts as failed).
    pub fn is_failure(self) -> bool {
        matches!(self, TaskPhase::Failed | TaskPhase::TimedOut)
    }
}

impl fmt::Display for TaskPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TaskPhase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TaskPhase::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown task state {s:?}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL
            .into_iter()
            .find(|j| j.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = JobState::ALL.iter().map(|j| j.name()).collect();
                format!("unknown job state {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Why a result changed nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ignore {
    /// From an execution that a newer one replaced before it reported: an older attempt, or an
    /// older delivery of the attempt (its worker went silent and the message went elsewhere).
    Stale,
    /// The applied execution's result again, or another execution of the applied attempt that
    /// reported after it.
    Duplicate,
    /// For a job, task or attempt the engine never dispatched.
    #[default]
    Unknown,
}

impl Ignore {
    /// Whether an ignored result's agent spend counts: as the engine decided (`charged`), or,
    /// for records from before it did, any execution of a dispatched attempt.
    pub fn counts_spend(self, charged: Option<bool>) -> bool {
        charged.unwrap_or(self != Ignore::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for p in TaskPhase::ALL {
            assert_eq!(p.name().parse::<TaskPhase>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        for j in JobState::ALL {
            assert_eq!(j.name().parse::<JobState>(), Ok(j));
            assert_eq!(serde_json::to_string(&j).unwrap(), format!("\"{j}\""));
        }
        assert!("done".parse::<JobState>().is_err());
        assert!("done".parse::<TaskPhase>().is_err());
    }
}
