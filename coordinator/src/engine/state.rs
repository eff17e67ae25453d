//! Task states as the engine keeps them: each variant carries only what is valid in it
//! (attempt, worker, times, reason), so impossible combinations cannot be written down. Their
//! names (`TaskPhase`) and job states (`JobState`, which carry no data) are proto's.
//!
//! ```text
//! pending → ready → dispatched → running → succeeded | failed | timed_out | cancelled
//!             ↑ ↑                   │ │ └──► integrating → succeeded | failed | cancelled
//!             │ └──── retry_wait ←──┘ │            │
//!             └───────────────────────┴────────────┘ requeued, or a conflict (no attempt spent)
//! running → awaiting_approval (→ awaiting_approval, the next approval stage)
//! awaiting_approval → integrating | succeeded (approved) | failed (rejected, timed out)
//!                   | ready (rejected to revise: a round, no attempt spent) | cancelled
//! pending | ready | retry_wait | integrating | awaiting_approval → skipped | cancelled
//! ready → failed (it can never run); a flow job's ended task → ready (a jump)
//! dispatched goes wherever running does (a result may come before the start)
//! ready | retry_wait | dispatched | running | integrating | awaiting_approval → pending
//!     (a speculative task discarded: it waits for its dependencies again)
//! ```
//!
//! `legal` is that diagram as a table; `Job::set_state` asserts it on every change.

use serde::{Deserialize, Serialize};

use ordo_proto::{Attempt, WorkerId};
pub use ordo_proto::{JobState, Millis, TaskPhase};

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
        worker: WorkerId,
        started: Millis,
    },
    /// The attempt succeeded in its worktree; its change waits for (or is in) integration.
    Integrating {
        attempt: Attempt,
        since: Millis,
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
    /// The attempt passed its verify and stages; approval stage `stage` (its index in the
    /// spec's `[[stages]]`) waits for a person until `deadline` (its `timeout`). Holds no
    /// slot, pool or lock. Last, so stored records keep their tags.
    AwaitingApproval {
        attempt: Attempt,
        since: Millis,
        stage: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<Millis>,
    },
}

impl TaskState {
    pub fn phase(&self) -> TaskPhase {
        match self {
            TaskState::Pending => TaskPhase::Pending,
            TaskState::Ready { .. } => TaskPhase::Ready,
            TaskState::Dispatched { .. } => TaskPhase::Dispatched,
            TaskState::Running { .. } => TaskPhase::Running,
            TaskState::Integrating { .. } => TaskPhase::Integrating,
            TaskState::RetryWait { .. } => TaskPhase::RetryWait,
            TaskState::Succeeded { .. } => TaskPhase::Succeeded,
            TaskState::Failed { .. } => TaskPhase::Failed,
            TaskState::TimedOut { .. } => TaskPhase::TimedOut,
            TaskState::Cancelled { .. } => TaskPhase::Cancelled,
            TaskState::Skipped { .. } => TaskPhase::Skipped,
            TaskState::AwaitingApproval { .. } => TaskPhase::AwaitingApproval,
        }
    }

    pub fn name(&self) -> &'static str {
        self.phase().name()
    }

    pub fn is_terminal(&self) -> bool {
        self.phase().is_terminal()
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

/// Whether a task may go from `from` to `to` (the diagram above). `pending` is entered again
/// only by a speculative task discarded (and by a stored record or `ordo retry`). Leaving a
/// terminal state (for `ready`) is for flow jobs only, which `Job::set_state` checks too.
pub fn legal(from: &TaskState, to: &TaskState) -> bool {
    use TaskState as S;
    let waiting = matches!(
        from,
        S::Pending
            | S::Ready { .. }
            | S::RetryWait { .. }
            | S::Integrating { .. }
            | S::AwaitingApproval { .. }
    );
    let approval = matches!(from, S::AwaitingApproval { .. });
    match to {
        // A speculative task discarded: it waits for its dependencies again.
        S::Pending => waiting && !matches!(from, S::Pending) || from.is_active(),
        // Dependencies met, a retry's wait over, an attempt requeued, a conflict to rework,
        // or a flow job's jump to a task (which may have run and ended).
        S::Ready { .. } => match from {
            S::Ready { .. } | S::Cancelled { .. } | S::Skipped { .. } => false,
            S::Pending
            | S::AwaitingApproval { .. }
            | S::Dispatched { .. }
            | S::Running { .. }
            | S::Integrating { .. }
            | S::RetryWait { .. }
            | S::Succeeded { .. }
            | S::Failed { .. }
            | S::TimedOut { .. } => true,
        },
        S::Dispatched { .. } => matches!(from, S::Ready { .. }),
        // A later delivery of the attempt running takes it over.
        S::Running { .. } => from.is_active(),
        S::RetryWait { .. } => from.is_active(),
        // Approved (worktree jobs), or the attempt passed without an approval.
        S::Integrating { .. } => from.is_active() || approval,
        // Approved, or the next of several approval stages.
        S::AwaitingApproval { .. } => from.is_active() || approval,
        S::Succeeded { .. } => {
            from.is_active() || approval || matches!(from, S::Integrating { .. })
        }
        // `ready`: it can never run (too large for any worker, nothing to run); an approval
        // rejected or timed out.
        S::Failed { .. } => {
            from.is_active() || approval || matches!(from, S::Ready { .. } | S::Integrating { .. })
        }
        S::TimedOut { .. } => from.is_active(),
        S::Cancelled { .. } => !from.is_terminal(),
        S::Skipped { .. } => waiting,
    }
}
