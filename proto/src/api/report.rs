//! The `report` verb's reply: a job's records as the renderers (`ordo-report`) need them, and
//! nothing of how the coordinator stores them. `ordo_coordinator::report::gather` builds it
//! from the store; the coordinator's API, `ordo report --state` and `ordo run --report` hand it
//! to the same renderer.

use serde::{Deserialize, Serialize};

use super::JobSummary;
use crate::clock::Millis;
use crate::ids::{Attempt, TaskIndex, TaskName, WorkerId};
use crate::spec::{ExecutionMode, JobSpec};
use crate::state::{Ignore, JobState, TaskPhase};
use crate::wire::{Integration, TaskResult};

/// A job's records: enough to rebuild its summary, checklist, task table, critical path and
/// timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub job: ReportJob,
    /// One per task, in spec order.
    pub tasks: Vec<ReportTask>,
    /// Every attempt's result, by task then attempt.
    pub attempts: Vec<TaskResult>,
    /// Task and job state changes, integrations and budgets, oldest first. Attempt results are
    /// in `attempts`; results that changed nothing are in `ignored_results`.
    pub history: Vec<HistoryEntry>,
    /// Results that changed nothing (stale, duplicate or unknown executions), without their
    /// output, oldest first.
    #[serde(default)]
    pub ignored_results: Vec<IgnoredResult>,
    /// Output tails were cut to their last this-many bytes (to fit one API reply).
    #[serde(default)]
    pub tails_cut_to: Option<usize>,
}

/// The job itself: its summary (header, times, cost, counts), where its spec came from, the
/// spec, and what its submission asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportJob {
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Where the spec came from (a file path, `mcp`, ...).
    pub source: String,
    pub spec: JobSpec,
    /// Its last recorded change.
    pub updated_ms: Millis,
    /// The mode the submission asked for, if it did (`JobSpec::mode_decision`).
    #[serde(default)]
    pub default_mode: Option<ExecutionMode>,
    /// Overrides the spec's `max_parallel_tasks`.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// Task slots the job could use when it was submitted (`ordo run --workers`, or the live
    /// workers' slots on the coordinator): the denominator of a report's parallel efficiency.
    #[serde(default)]
    pub slots: Option<u32>,
}

/// A task's state as a report shows it: which, since when, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateAt {
    pub state: TaskPhase,
    /// The time the state records: ready since, dispatched at, started running, integrating
    /// since, retry after (`retry_wait`), finished (none for pending and skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Millis>,
    /// Why it failed, timed out, was cancelled or skipped, or waits to be retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One task's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportTask {
    #[serde(flatten)]
    pub state: StateAt,
    /// Attempts spent (conflicts left out).
    pub attempts: u32,
    /// Runs whose change conflicted at integration and ran again without spending an attempt.
    #[serde(default)]
    pub conflicts: u32,
}

/// One recorded change, and when it was recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: Millis,
    pub change: HistoryChange,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryChange {
    /// A task changed state.
    Task { index: TaskIndex, state: StateAt },
    /// The job changed state at `at` (a terminal state ends a run; leaving one, a retry,
    /// starts another).
    Job {
        state: JobState,
        at: Millis,
        reason: Option<String>,
    },
    /// An integration ended: the attempt's task branch and what became of it.
    Integrated {
        index: TaskIndex,
        attempt: Attempt,
        branch: String,
        outcome: Integration,
        /// For a conflict: the integrated task whose change touched the same files.
        with: Option<TaskName>,
    },
    /// A stage record the engine made: an approval's decision (who, when, which commit), or
    /// its timeout.
    Stage {
        index: TaskIndex,
        attempt: Attempt,
        record: crate::gates::StageRecord,
    },
    /// One integration of a job with batches: the tasks it took, whether it ran an
    /// integration verify, and whether the batch was bisected (its verify failed).
    Batch {
        tasks: Vec<TaskIndex>,
        verified: bool,
        bisected: bool,
        /// A stacked integration's, on top of one that did not land (nothing integrated).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        voided: bool,
    },
    /// A speculative attempt's end (docs/design.md, "Integration queue: speculation"): it
    /// started on `on`'s work before they were integrated; `kept` once they integrated as
    /// they were (it then integrates like any task), else discarded (the task runs again on
    /// the real tip) with what it spent.
    Speculation {
        index: TaskIndex,
        attempt: Attempt,
        on: Vec<TaskIndex>,
        kept: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The job's budget was set anew (`ordo retry --max-cost-usd`).
    Budget {
        max_cost_usd: Option<f64>,
        max_tokens: Option<u64>,
    },
}

/// A result that changed nothing: which execution sent it and why it was not applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IgnoredResult {
    pub index: TaskIndex,
    pub attempt: u32,
    pub delivery: u32,
    pub worker: WorkerId,
    pub kind: Ignore,
    pub why: String,
    /// What its agent run spent (it counts against the budget, though the result does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl ReportData {
    /// Keeps only the last `max` bytes (on a character boundary) of every output tail.
    pub fn cut_tails(&mut self, max: usize) {
        for a in &mut self.attempts {
            if a.output_tail.len() > max {
                let cut = a.output_tail.ceil_char_boundary(a.output_tail.len() - max);
                a.output_tail.drain(..cut);
                self.tails_cut_to = Some(max);
            }
        }
    }

    /// The JSON of this data, cutting output tails (to 4 KiB, 1 KiB, 256 bytes, nothing) until
    /// it is at most `limit` bytes; `None` if it is larger even without any output.
    pub fn to_json_within(mut self, limit: usize) -> Option<Vec<u8>> {
        for cut in [usize::MAX, 4096, 1024, 256, 0] {
            if cut != usize::MAX {
                self.cut_tails(cut);
            }
            if let Ok(json) = serde_json::to_vec(&self)
                && json.len() <= limit
            {
                return Some(json);
            }
        }
        None
    }
}
