//! Task and job states. Each variant carries only what is valid in it (attempt, worker, times,
//! reason), so impossible combinations cannot be written down.
//!
//! ```text
//! pending → ready → dispatched → running → succeeded | failed | timed_out | cancelled
//!              ↑                    │
//!              └──── retry_wait ←───┘ (attempts left)
//! pending | ready | retry_wait → skipped | cancelled
//! ```

use serde::{Deserialize, Serialize};

use ordo_proto::Attempt;

/// Milliseconds since the Unix epoch. The engine never reads a clock: callers pass `now`.
pub type Millis = u64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for dependencies.
    Pending,
    /// Every dependency is satisfied; waiting for a slot, a lock or its turn.
    Ready {
        since: Millis,
    },
    /// Handed to an executor, not yet reported started.
    Dispatched {
        attempt: Attempt,
        at: Millis,
    },
    Running {
        attempt: Attempt,
        worker: String,
        started: Millis,
    },
    /// The attempt failed and another is allowed after `until`.
    RetryWait {
        attempt: Attempt,
        until: Millis,
        reason: String,
    },
    Succeeded {
        attempt: Attempt,
        finished: Millis,
    },
    Failed {
        attempt: Attempt,
        finished: Millis,
        reason: String,
    },
    TimedOut {
        attempt: Attempt,
        finished: Millis,
        reason: String,
    },
    Cancelled {
        finished: Millis,
        reason: String,
    },
    Skipped {
        reason: String,
    },
}

impl TaskState {
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Ready { .. } => "ready",
            TaskState::Dispatched { .. } => "dispatched",
            TaskState::Running { .. } => "running",
            TaskState::RetryWait { .. } => "retry_wait",
            TaskState::Succeeded { .. } => "succeeded",
            TaskState::Failed { .. } => "failed",
            TaskState::TimedOut { .. } => "timed_out",
            TaskState::Cancelled { .. } => "cancelled",
            TaskState::Skipped { .. } => "skipped",
        }
    }

    pub fn is_terminal(&self) -> bool {
        match self {
            TaskState::Succeeded { .. }
            | TaskState::Failed { .. }
            | TaskState::TimedOut { .. }
            | TaskState::Cancelled { .. }
            | TaskState::Skipped { .. } => true,
            TaskState::Pending
            | TaskState::Ready { .. }
            | TaskState::Dispatched { .. }
            | TaskState::Running { .. }
            | TaskState::RetryWait { .. } => false,
        }
    }

    /// An attempt is in flight: it holds a slot and its locks.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            TaskState::Dispatched { .. } | TaskState::Running { .. }
        )
    }

    /// The attempt currently in flight, if any.
    pub fn active_attempt(&self) -> Option<Attempt> {
        match self {
            TaskState::Dispatched { attempt, .. } | TaskState::Running { attempt, .. } => {
                Some(*attempt)
            }
            _ => None,
        }
    }

    /// Why the task is not succeeded, for reports and messages.
    pub fn reason(&self) -> Option<&str> {
        match self {
            TaskState::RetryWait { reason, .. }
            | TaskState::Failed { reason, .. }
            | TaskState::TimedOut { reason, .. }
            | TaskState::Cancelled { reason, .. }
            | TaskState::Skipped { reason } => Some(reason),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
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

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(format!("unknown job state {other:?}")),
        })
    }
}
