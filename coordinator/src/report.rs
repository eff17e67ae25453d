//! What a job's report is built from, read from the store in one place so `ordo report --state`
//! (a local state directory), `ordo run --report` and the coordinator's `report` API verb hand
//! the renderer the same data. Rendering is the CLI's (`cli/src/report`).

use ordo_proto::{JobId, TaskIndex, TaskResult, WorkerId};
use serde::{Deserialize, Serialize};

use crate::engine::{Change, Ignore, SavedTask};
use crate::store::{HistoryEntry, JobRecord, Result, Store};

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

/// A job's records: enough to rebuild its summary, checklist, task table, critical path and
/// timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub job: JobRecord,
    /// One per task, in spec order.
    pub tasks: Vec<SavedTask>,
    /// Every attempt's result, by task then attempt.
    pub attempts: Vec<TaskResult>,
    /// Task and job state changes, oldest first. Attempt results are in `attempts`; results
    /// that changed nothing (stale or duplicate) are only counted in `ignored`.
    pub history: Vec<HistoryEntry>,
    #[serde(default)]
    pub ignored: usize,
    /// Those results, without their output, oldest first.
    #[serde(default)]
    pub ignored_results: Vec<IgnoredResult>,
    /// Output tails were cut to their last this-many bytes (to fit one API reply).
    #[serde(default)]
    pub tails_cut_to: Option<usize>,
}

/// The records of job `id`, or `None` if the store does not know it.
pub fn gather(store: &Store, id: &JobId) -> Result<Option<ReportData>> {
    let Some(job) = store.job(id)? else {
        return Ok(None);
    };
    let mut ignored_results = Vec::new();
    let history = store
        .history(id)?
        .into_iter()
        .filter(|h| match &h.change {
            Change::Task { .. }
            | Change::Job { .. }
            | Change::Integrated { .. }
            | Change::Budget { .. } => true,
            Change::Attempt(_) => false,
            Change::Ignored {
                result,
                why,
                kind,
                charged,
            } => {
                ignored_results.push(IgnoredResult {
                    index: result.index,
                    attempt: result.attempt.0,
                    delivery: result.delivery,
                    worker: result.worker.clone(),
                    kind: *kind,
                    why: why.clone(),
                    cost_usd: kind
                        .counts_spend(*charged)
                        .then(|| result.agent.as_ref().and_then(|a| a.cost_usd))
                        .flatten(),
                });
                false
            }
        })
        .collect();
    Ok(Some(ReportData {
        tasks: store.tasks(id)?,
        attempts: store.attempts(id)?,
        job,
        history,
        ignored: ignored_results.len(),
        ignored_results,
        tails_cut_to: None,
    }))
}

/// The newest job in the store (job ids are UUIDv7, so the last one).
pub fn latest(store: &Store) -> Result<Option<JobId>> {
    Ok(store.jobs()?.last().map(|j| j.id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{JobOptions, JobState, TaskState};
    use crate::store::Batch;
    use ordo_proto::{Attempt, JobSpec, Outcome, TaskSpec};

    fn stored_job(store: &Store, tail: &str) -> JobId {
        let spec = JobSpec {
            name: "j".into(),
            tasks: vec![TaskSpec::shell("a", "true")],
            ..Default::default()
        };
        let job = JobRecord {
            id: JobId::new(),
            name: "j".into(),
            source: "test".into(),
            spec,
            options: JobOptions::default(),
            state: JobState::Pending,
            created_ms: 1,
            updated_ms: 1,
            finished_ms: None,
            reason: None,
        };
        store.insert_job(&job).unwrap();
        let result = TaskResult {
            job: job.id,
            task: job.spec.tasks[0].name.clone(),
            index: TaskIndex(0),
            attempt: Attempt(1),
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            signal: None,
            verify_exit_code: None,
            started_at_ms: 2,
            duration_ms: 3,
            command_ms: 3,
            verify_started_ms: None,
            output_tail: tail.into(),
            output_bytes: tail.len() as u64,
            worker: "local".into(),
            delivery: 0,
            abandoned: false,
            message: String::new(),
            workspace: None,
            agent: None,
        };
        let changes = [
            Change::Task {
                job: job.id,
                index: TaskIndex(0),
                attempts: 0,
                conflicts: 0,
                state: TaskState::Ready { since: 1 },
            },
            Change::Attempt(result.clone()),
            Change::Ignored {
                result,
                why: "duplicate".into(),
                kind: crate::engine::Ignore::Duplicate,
                charged: Some(false),
            },
        ];
        store
            .commit(&Batch {
                now: 5,
                changes: &changes,
                ..Default::default()
            })
            .unwrap();
        job.id
    }

    #[test]
    fn gather_keeps_state_changes_and_counts_ignored_results() {
        let store = Store::in_memory().unwrap();
        let id = stored_job(&store, "out");
        let data = gather(&store, &id).unwrap().unwrap();
        assert_eq!(data.history.len(), 1);
        assert_eq!(data.ignored, 1);
        assert_eq!(data.attempts.len(), 1);
        assert_eq!(latest(&store).unwrap(), Some(id));
        assert!(gather(&store, &JobId::new()).unwrap().is_none());
        // Through JSON and back, as the API sends it.
        let back: ReportData =
            serde_json::from_slice(&data.clone().to_json_within(1 << 20).unwrap()).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn tails_are_cut_to_fit_a_reply() {
        let store = Store::in_memory().unwrap();
        let tail = "é".repeat(20_000);
        let id = stored_job(&store, &tail);
        let data = gather(&store, &id).unwrap().unwrap();
        let full = serde_json::to_vec(&data).unwrap().len();
        let v = data.clone().to_json_within(full - 1).unwrap();
        let back: ReportData = serde_json::from_slice(&v).unwrap();
        assert_eq!(back.tails_cut_to, Some(4096));
        assert!(back.attempts[0].output_tail.len() <= 4096);
        assert!(tail.ends_with(&back.attempts[0].output_tail));
        assert!(data.to_json_within(10).is_none());
    }
}
