//! The `report` reply (`proto::api::ReportData`) built from the store in one place, so `ordo
//! report --state` (a local state directory), `ordo run --report` and the coordinator's
//! `report` API verb hand the renderer (`ordo-report`) the same data. The store's records stay
//! the store's: only what a report shows goes out.

use ordo_proto::JobId;
use ordo_proto::api::{
    HistoryChange, HistoryEntry, IgnoredResult, ReportData, ReportJob, ReportTask, StateAt,
};

use crate::engine::{Change, TaskState};
use crate::store::{Result, Store};

/// The records of job `id`, or `None` if the store does not know it.
pub fn gather(store: &Store, id: &JobId) -> Result<Option<ReportData>> {
    let Some(job) = store.job(id)? else {
        return Ok(None);
    };
    let saved = store.tasks(id)?;
    let mut summary = crate::views::summary(&job, &saved);
    summary.cost_usd = store.job_cost(id)?;
    let mut ignored_results = Vec::new();
    let mut history = Vec::new();
    for h in store.history(id)? {
        let change = match h.change {
            Change::Task { index, state, .. } => HistoryChange::Task {
                index,
                state: state_at(&state),
            },
            Change::Job {
                state, at, reason, ..
            } => HistoryChange::Job { state, at, reason },
            Change::Integrated {
                index,
                attempt,
                branch,
                outcome,
                with,
                ..
            } => HistoryChange::Integrated {
                index,
                attempt,
                branch,
                outcome,
                with,
            },
            Change::Budget {
                max_cost_usd,
                max_tokens,
                ..
            } => HistoryChange::Budget {
                max_cost_usd,
                max_tokens,
            },
            Change::Stage {
                index,
                attempt,
                record,
                ..
            } => HistoryChange::Stage {
                index,
                attempt,
                record,
            },
            Change::Batch {
                tasks,
                verified,
                bisected,
                voided,
                ..
            } => HistoryChange::Batch {
                tasks,
                verified,
                bisected,
                voided,
            },
            Change::Speculation {
                index,
                attempt,
                on,
                kept,
                cost_usd,
                ..
            } => HistoryChange::Speculation {
                index,
                attempt,
                on,
                kept,
                cost_usd,
            },
            Change::Attempt(_) | Change::Pool { .. } => continue,
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
                    kind,
                    why,
                    cost_usd: kind
                        .counts_spend(charged)
                        .then(|| result.agent.as_ref().and_then(|a| a.cost_usd))
                        .flatten(),
                });
                continue;
            }
        };
        history.push(HistoryEntry { at: h.at, change });
    }
    Ok(Some(ReportData {
        tasks: saved
            .iter()
            .map(|t| ReportTask {
                state: state_at(&t.state),
                attempts: t.spent(),
                conflicts: t.conflicts,
            })
            .collect(),
        attempts: store.attempts(id)?,
        job: ReportJob {
            summary,
            source: job.source,
            spec: job.spec,
            updated_ms: job.updated_ms,
            default_mode: job.options.default_mode,
            max_parallel: job.options.max_parallel,
            slots: job.options.slots,
        },
        history,
        ignored_results,
        tails_cut_to: None,
    }))
}

/// A task's state as a report shows it: its phase, the time it records, its reason.
fn state_at(state: &TaskState) -> StateAt {
    let at = match state {
        TaskState::Pending | TaskState::Skipped { .. } => None,
        TaskState::Ready { since }
        | TaskState::Integrating { since, .. }
        | TaskState::AwaitingApproval { since, .. } => Some(*since),
        TaskState::Dispatched { at, .. } => Some(*at),
        TaskState::Running { started, .. } => Some(*started),
        TaskState::RetryWait { until, .. } => Some(*until),
        TaskState::Succeeded { finished, .. }
        | TaskState::Failed { finished, .. }
        | TaskState::TimedOut { finished, .. }
        | TaskState::Cancelled { finished, .. } => Some(*finished),
    };
    StateAt {
        state: state.phase(),
        at,
        reason: state.reason().map(String::from),
    }
}

/// The newest job in the store (job ids are UUIDv7, so the last one).
pub fn latest(store: &Store) -> Result<Option<JobId>> {
    Ok(store.jobs()?.last().map(|j| j.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::JobOptions;
    use crate::store::{Batch, JobRecord};
    use ordo_proto::{Attempt, JobSpec, Outcome, TaskIndex, TaskResult, TaskSpec};

    fn stored_job(store: &Store, tail: &str) -> JobId {
        let spec = JobSpec {
            name: "j".into(),
            tasks: vec![TaskSpec::shell("a", "true")],
            ..Default::default()
        };
        let job = JobRecord::new(JobId::new(), spec, "test", JobOptions::default(), 1);
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
            stages: Vec::new(),
            rounds: 0,
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
        assert_eq!(
            data.history[0].change,
            HistoryChange::Task {
                index: TaskIndex(0),
                state: StateAt {
                    state: ordo_proto::TaskPhase::Ready,
                    at: Some(1),
                    reason: None,
                },
            }
        );
        assert_eq!(data.ignored_results.len(), 1);
        assert_eq!(
            data.ignored_results[0].kind,
            crate::engine::Ignore::Duplicate
        );
        assert_eq!(data.job.summary.total, 1);
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
