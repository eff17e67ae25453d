//! Turns the engine's `Change`s into OpenTelemetry spans: one root span per job (submission to
//! final state, with every job and task transition as an event) and one span per attempt
//! (dispatch to result, with its transitions as events), holding a span per stage run and
//! approval decision (docs/design.md, "Quality gates"). Shared by the coordinator service and
//! `ordo run`, so both produce the same shape. Does nothing when no exporter is configured.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::KeyValue;
use ordo_plumbing::telemetry::Telemetry;
use ordo_proto::{JobId, TaskIndex, TaskResult};

use crate::engine::{Change, Millis, TaskState};

#[derive(Default)]
struct AttemptTrace {
    dispatched: Millis,
    events: Vec<(Millis, String)>,
    result: Option<TaskResult>,
    /// A `running` transition was seen (a task shorter than the worker's `Started` delay has
    /// none: its result tells when it started).
    running: bool,
    /// The engine's stage records of this attempt (approval decisions, their timeouts).
    approvals: Vec<ordo_proto::gates::StageRecord>,
}

struct JobTrace {
    name: String,
    start: Millis,
    task_names: Vec<String>,
    events: Vec<(Millis, String, Vec<KeyValue>)>,
}

pub struct Traces {
    tel: Option<Arc<Telemetry>>,
    attempts: HashMap<(JobId, TaskIndex), AttemptTrace>,
    jobs: HashMap<JobId, JobTrace>,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("enabled", &self.tel.is_some())
            .finish_non_exhaustive()
    }
}

impl Traces {
    pub fn new(tel: Option<Arc<Telemetry>>) -> Traces {
        Traces {
            tel,
            attempts: HashMap::new(),
            jobs: HashMap::new(),
        }
    }

    pub fn telemetry(&self) -> Option<&Arc<Telemetry>> {
        self.tel.as_ref()
    }

    /// A job entered the engine (submitted or reloaded) at `created`.
    /// The task names are copied only when traces are exported.
    pub fn job(&mut self, job: JobId, name: &str, created: Millis, spec: &ordo_proto::JobSpec) {
        if self.tel.is_none() {
            return;
        }
        self.jobs.entry(job).or_insert_with(|| JobTrace {
            name: name.to_string(),
            start: created,
            task_names: spec.tasks.iter().map(|t| t.name.to_string()).collect(),
            events: vec![(created, "submitted".into(), vec![])],
        });
    }

    pub fn observe(&mut self, changes: &[Change]) {
        let Some(tel) = self.tel.clone() else { return };
        for c in changes {
            match c {
                Change::Task {
                    job, index, state, ..
                } => self.task(&tel, *job, *index, state),
                Change::Attempt(r) => {
                    let a = self.attempts.entry((r.job, r.index)).or_default();
                    if !a.running {
                        a.events
                            .push((r.started_at_ms, format!("running on {}", r.worker)));
                    }
                    a.result = Some(r.clone());
                }
                Change::Ignored { result, why, .. } => {
                    if let Some(j) = self.jobs.get_mut(&result.job) {
                        let attrs = vec![
                            KeyValue::new("ordo.task.name", result.task.to_string()),
                            KeyValue::new("ordo.task.attempt", result.attempt.0 as i64),
                        ];
                        j.events.push((
                            result.started_at_ms,
                            format!("result ignored: {why}"),
                            attrs,
                        ));
                    }
                }
                Change::Integrated {
                    job,
                    index,
                    attempt,
                    outcome,
                    at,
                    ..
                } => {
                    if let Some(j) = self.jobs.get_mut(job) {
                        let name = j.task_names.get(index.get()).cloned().unwrap_or_default();
                        let attrs = vec![
                            KeyValue::new("ordo.task.name", name.clone()),
                            KeyValue::new("ordo.task.attempt", attempt.0 as i64),
                            KeyValue::new("ordo.integration.outcome", outcome.name()),
                        ];
                        j.events.push((
                            *at,
                            format!("integrated {name}: {}", outcome.name()),
                            attrs,
                        ));
                    }
                }
                Change::Stage {
                    job,
                    index,
                    attempt,
                    record,
                } => {
                    if let Some(a) = self.attempts.get_mut(&(*job, *index))
                        && a.result.as_ref().is_none_or(|r| r.attempt == *attempt)
                    {
                        a.approvals.push(record.clone());
                    }
                }
                Change::Budget { .. }
                | Change::Pool { .. }
                | Change::Batch { .. }
                | Change::Speculation { .. } => {}
                Change::Job { job, state, at, .. } => {
                    let Some(j) = self.jobs.get_mut(job) else {
                        continue;
                    };
                    j.events
                        .push((*at, format!("job {}", state.name()), vec![]));
                    if state.is_terminal()
                        && let Some(j) = self.jobs.remove(job)
                    {
                        tel.job_span(job, &j.name, j.start, *at, state.name(), &j.events);
                        self.attempts.retain(|(id, _), _| id != job);
                    }
                }
            }
        }
    }

    fn task(&mut self, tel: &Telemetry, job: JobId, index: TaskIndex, state: &TaskState) {
        let key = (job, index);
        let at = match state {
            TaskState::Ready { since } => *since,
            TaskState::Dispatched { at, .. } => {
                self.attempts.insert(
                    key,
                    AttemptTrace {
                        dispatched: *at,
                        events: vec![(*at, "dispatched".into())],
                        result: None,
                        running: false,
                        approvals: Vec::new(),
                    },
                );
                *at
            }
            TaskState::Running {
                started, worker, ..
            } => {
                if let Some(a) = self.attempts.get_mut(&key) {
                    a.events.push((*started, format!("running on {worker}")));
                    a.running = true;
                }
                *started
            }
            TaskState::Integrating { since, .. } => {
                if let Some(a) = self.attempts.get_mut(&key) {
                    a.events.push((*since, "integrating".into()));
                }
                *since
            }
            TaskState::AwaitingApproval { since, stage, .. } => {
                if let Some(a) = self.attempts.get_mut(&key) {
                    a.events
                        .push((*since, format!("awaiting approval (stage {stage})")));
                }
                *since
            }
            TaskState::RetryWait { until, .. } => self.end_attempt(tel, key, state, *until),
            TaskState::Succeeded { finished, .. }
            | TaskState::Failed { finished, .. }
            | TaskState::TimedOut { finished, .. }
            | TaskState::Cancelled { finished, .. } => self.end_attempt(tel, key, state, *finished),
            TaskState::Pending | TaskState::Skipped { .. } => 0,
        };
        if let Some(j) = self.jobs.get_mut(&job) {
            let name = j.task_names.get(index.get()).cloned().unwrap_or_default();
            let mut text = format!("task {name} {}", state.name());
            if let Some(reason) = state.reason() {
                text.push_str(": ");
                text.push_str(reason);
            }
            let when = if at == 0 {
                j.events.last().map_or(j.start, |e| e.0)
            } else {
                at
            };
            let attrs = vec![KeyValue::new("ordo.task.name", name)];
            j.events.push((when, text, attrs));
        }
    }

    /// An attempt ended: emit its span if its result is known.
    fn end_attempt(
        &mut self,
        tel: &Telemetry,
        key: (JobId, TaskIndex),
        state: &TaskState,
        at: Millis,
    ) -> Millis {
        if let Some(mut a) = self.attempts.remove(&key)
            && let Some(r) = a.result.take()
        {
            let end = r.started_at_ms + r.duration_ms;
            a.events.push((end, state.name().to_string()));
            tel.attempt_span(&r, a.dispatched, end, state.name(), &a.events, &a.approvals);
            return end;
        }
        at
    }
}
