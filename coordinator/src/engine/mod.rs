//! The sans-IO engine: `Engine::apply(now, Event) -> Vec<Action>` advances every job's DAG with
//! the semantics of docs/design.md, "Task states". No clock, no tokio, no redb, no NATS: time is an
//! argument, and effects (run this attempt, kill that one, record this change) come back as
//! `Action`s that the local runner or the coordinator service carries out. The same engine serves
//! both.
//!
//! Invariants (checked by the model-based tests in `tests.rs`):
//! - A task is dispatched only when every dependency succeeded or failed with permission.
//! - Fencing: a result is applied only if it names the task's attempt in flight; anything else
//!   (an older attempt, a finished task, a duplicate) becomes `Change::Ignored` and changes
//!   nothing. Results for jobs that already ended are classified here too, from the fences the
//!   engine keeps of ended jobs (`Event::Ended` hands it those of jobs that ended before it
//!   started).
//! - Each task reaches exactly one terminal state, which never changes afterwards (flow-jump
//!   jobs may run a task again; their records are final when the job is).
//! - A task's state changes only along the diagram in `state.rs` (`legal`, asserted by the one
//!   function that changes it in every debug build, so every test checks it).
//! - Attempts never exceed the task's `max_attempts`.
//! - A job ends exactly when all its tasks are terminal.

mod adaptive;
mod agents;
mod job;
mod pool;
mod slot;
mod state;
#[cfg(test)]
mod tests;
mod workspace;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ordo_proto::{
    Attempt, Dag, Dispatch, ExecutionMode, Integrate, Integration, ItemOutcome, JobId, JobSpec,
    TaskIndex, TaskResult, WorkerId,
};
use serde::{Deserialize, Serialize};

pub use adaptive::PoolLimit;
pub use agents::BUDGET_EXHAUSTED;
pub use ordo_proto::Ignore;
pub use pool::{ANY_QUEUE, Capacity, Fit, Need, Pools};
pub use slot::{Tasks, TasksIter};
pub use state::{JobState, Millis, TaskPhase, TaskState};

use job::Job;
pub use job::settled;

/// Something that happened, fed to the engine.
#[derive(Debug, Clone)]
pub enum Event {
    /// A validated job to run (or, with `saved`, to resume from stored records).
    Submit {
        job: JobId,
        spec: Arc<JobSpec>,
        dag: Arc<Dag>,
        options: JobOptions,
        saved: Option<Saved>,
    },
    /// An executor began an attempt.
    Started {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
        worker: WorkerId,
        /// Which delivery of the attempt's message (0: unknown, the local runner). A higher
        /// delivery of the attempt in flight takes it over: the older one's result is stale.
        delivery: u32,
    },
    /// An attempt ended.
    Finished(TaskResult),
    /// An attempt vanished (its worker died, its messages were lost): counts as a failure.
    Lost {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
        reason: String,
    },
    /// An attempt handed back without counting against its task (the local runner restarted,
    /// a worker drained on shutdown): the task becomes ready again.
    Requeue {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
    },
    Cancel {
        job: JobId,
        reason: String,
    },
    /// What executors offer now, for a queue (`*` for all).
    Capacity {
        queue: String,
        capacity: Capacity,
    },
    /// An integration of a task in a worktree ended (docs/design.md, "Agent workspaces").
    Integrated {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
        outcome: Integration,
        /// For a batch: what became of its other tasks (`Integrate::batch`).
        batch: Vec<ItemOutcome>,
        /// The request's `Integrate::step`: an outcome of an earlier step is not this one's.
        step: u32,
        /// The request was stacked (`Integrate::onto`): verified on top of the integration
        /// ahead, nothing integrated.
        stacked: bool,
    },
    /// A job that ended before this engine started (a restarted coordinator): its records,
    /// remembered so that late results for it are classified (stale, duplicate) like those of
    /// a job that ended here.
    Ended {
        job: JobId,
        saved: Vec<SavedTask>,
    },
    /// An adaptive pool's limit as the store recorded it (`Change::Pool`): a restarted engine
    /// goes on from it.
    Pool {
        name: String,
        limit: PoolLimit,
    },
    /// A person's decision on a task awaiting approval (`ordo approve|reject`): applied only
    /// while the task awaits it (`Engine::awaiting`), so a decision is never applied twice.
    Decide {
        job: JobId,
        index: TaskIndex,
        decision: Decision,
    },
    /// Nothing happened; only time passed (fires due retry timers and approval timeouts).
    Tick,
}

/// An approval's decision (docs/design.md, "Quality gates: approvals").
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub approve: bool,
    /// Who decided: the NATS user, the OS user, `dashboard`, `mcp`.
    pub by: String,
    /// The comment of an approval, the reason of a rejection (required to reject).
    pub comment: Option<String>,
}

/// Per-job options decided at submission (the CLI's flags and environment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// The mode the command line or API asked for, if it did (`JobSpec::mode_decision`).
    /// Records written when this was always set decode as `Some`.
    pub default_mode: Option<ExecutionMode>,
    /// Overrides the spec's `max_parallel_tasks`.
    pub max_parallel: Option<u32>,
    /// Seeds retry jitter so runs are reproducible in tests.
    pub seed: u64,
    /// Task slots the job could use when it was submitted (`ordo run --workers`, or the live
    /// workers' slots on the coordinator): the denominator of a report's parallel efficiency.
    /// Records written before it existed decode as `None`.
    #[serde(default)]
    pub slots: Option<u32>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            default_mode: None,
            max_parallel: None,
            seed: 0x5EED,
            slots: None,
        }
    }
}

/// A task's stored record, used to resume a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedTask {
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// How many of those succeeded but could not be integrated (a conflict or a failed
    /// integration verify): they ran again without spending an attempt, so users are shown
    /// `attempts - conflicts`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conflicts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SavedTask {
    /// The attempts spent, as users count them: conflicts left out.
    pub fn spent(&self) -> u32 {
        self.attempts.saturating_sub(self.conflicts)
    }
}

/// What a job resumes from: its task records and the stored results of applied attempts it
/// rebuilds from, in (task, attempt) order: those that reported an agent run (sessions, the
/// budget spent and the verify loop carry on across a restart) and the attempt of each task
/// that was integrating (its worktree result goes back in the integration queue rather than
/// the task running again); and the ignored results that reported an agent run (what stale
/// and duplicate executions spent counts against the budget too). A retry starts from the
/// records alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Saved {
    pub tasks: Vec<SavedTask>,
    pub results: Vec<TaskResult>,
    /// Ignored results that were charged (`Change::Ignored::charged`).
    pub ignored: Vec<TaskResult>,
    /// Per integrating task, the integrations it has tried (its `Change::Integrated`
    /// records), so a restart grants no more than `max_integration_attempts`.
    pub integrations: HashMap<u32, u32>,
    /// The integrating tasks that were in a batch whose verify failed (`Change::Batch`
    /// bisected): requests of theirs were carried out while they stayed integrating, so a
    /// request made again must not share a message id with one of those
    /// (`Workspaces::resume`).
    pub bisected: HashSet<u32>,
}

impl From<Vec<SavedTask>> for Saved {
    fn from(tasks: Vec<SavedTask>) -> Saved {
        Saved {
            tasks,
            ..Saved::default()
        }
    }
}

/// One execution of an attempt: (task, attempt, delivery, worker). Its agent spend is
/// counted once, however often its result is reported.
pub(crate) type Execution = (u32, u32, u32, String);

pub(crate) fn execution(r: &TaskResult) -> Execution {
    (r.index.0, r.attempt.0, r.delivery, r.worker.to_string())
}

/// Something for the caller to do.
#[derive(Debug, Clone, PartialEq)]
// A dispatch is the common case and is moved, not copied around: boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Start this attempt on an executor.
    Dispatch(Dispatch),
    /// Stop this attempt (cancel, fail-fast): kill its process tree.
    Kill {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
    },
    /// Persist and show this change.
    Record(Change),
    /// Integrate this task's worktree branch into the job's integration branch; the outcome
    /// comes back as `Event::Integrated`. One at a time per repository.
    Integrate(Integrate),
}

/// A state change, to be written to the store (task record, history) and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Task {
        job: JobId,
        index: TaskIndex,
        attempts: u32,
        state: TaskState,
        /// Of `attempts`, those whose change conflicted (`SavedTask::conflicts`).
        #[serde(default)]
        conflicts: u32,
    },
    /// An attempt's result was applied.
    Attempt(TaskResult),
    /// A result that changed nothing (stale attempt, duplicate, unknown job).
    Ignored {
        result: TaskResult,
        why: String,
        #[serde(default)]
        kind: Ignore,
        /// What its agent run spent counts against the budget and the job's cost: another
        /// execution of a dispatched attempt, not one already counted (a result reported
        /// again after a lost ack is the same execution) nor a forged one. `None` in records
        /// written before the engine decided it (`Ignore::counts_spend`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        charged: Option<bool>,
    },
    Job {
        job: JobId,
        state: JobState,
        at: Millis,
        /// Why a job failed or was cancelled.
        reason: Option<String>,
    },
    /// The job's budget was set anew (`ordo retry --max-cost-usd`): the stored spec changes.
    Budget {
        job: JobId,
        #[serde(default)]
        max_cost_usd: Option<f64>,
        #[serde(default)]
        max_tokens: Option<u64>,
    },
    /// An integration ended: the attempt's task branch and what became of it.
    Integrated {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
        branch: String,
        outcome: Integration,
        /// For a conflict: the integrated task whose change touched the same files.
        #[serde(default)]
        with: Option<ordo_proto::TaskName>,
        at: Millis,
    },
    /// An integration of a job with `integration.batch` above 1 ended (docs/design.md,
    /// "Integration queue: batches"): the tasks it merged and verified together, whether an
    /// integration verify ran, and whether it failed with more than one task merged (the
    /// batch is bisected). `voided`: a stacked integration's, on top of one that did not land
    /// (its verify, if it ran, told nothing).
    Batch {
        job: JobId,
        tasks: Vec<TaskIndex>,
        verified: bool,
        bisected: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        voided: bool,
        at: Millis,
    },
    /// A speculative attempt's end (docs/design.md, "Integration queue: speculation"): kept
    /// (the dependencies it started on integrated as they were) or discarded (it runs again
    /// on the real tip), with what its attempt spent.
    Speculation {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
        on: Vec<TaskIndex>,
        kept: bool,
        cost_usd: Option<f64>,
        at: Millis,
    },
    /// An adaptive pool's limit changed, or a run in it was refused (a rate limit, an
    /// overload). Not a job's: global across jobs, kept per pool name.
    Pool { name: String, limit: PoolLimit },
    /// A stage record the engine made: an approval's decision or its timeout (who, when,
    /// which commit). Kept in the job's history.
    Stage {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
        record: ordo_proto::gates::StageRecord,
    },
}

impl Change {
    /// The job the change is about (`None`: a pool's limit, which is every job's).
    pub fn job(&self) -> Option<JobId> {
        match self {
            Change::Task { job, .. }
            | Change::Job { job, .. }
            | Change::Budget { job, .. }
            | Change::Integrated { job, .. }
            | Change::Batch { job, .. }
            | Change::Speculation { job, .. }
            | Change::Stage { job, .. } => Some(*job),
            Change::Attempt(r) | Change::Ignored { result: r, .. } => Some(r.job),
            Change::Pool { .. } => None,
        }
    }
}

/// Longest wait between two attempts (a retry's backoff, a rate limit), whatever the backoff or
/// the agent says.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(600);

/// Task records of ended jobs remembered for fencing late results, at most (oldest forgotten
/// first): about 24 bytes each.
const ENDED_TASKS: usize = 1 << 20;

/// What fencing needs of one task of an ended job.
#[derive(Debug, Clone, Copy)]
struct Fence {
    phase: TaskPhase,
    /// Attempts started.
    attempts: u32,
    /// Attempt and delivery of the applied result (unknown after a restart).
    applied: Option<(Attempt, u32)>,
}

/// Every job in flight and the capacity they share, and what fencing needs of the jobs that
/// ended.
#[derive(Debug, Default)]
pub struct Engine {
    jobs: BTreeMap<JobId, Job>,
    pools: Pools,
    ended: HashMap<JobId, Vec<Fence>>,
    /// Ended jobs, oldest first, and how many task fences they hold.
    ended_order: VecDeque<JobId>,
    ended_tasks: usize,
    /// Of the jobs that ended here, the executions whose agent spend was counted (a restarted
    /// engine does not know them, and counts no late result's spend).
    ended_charged: HashMap<JobId, HashSet<Execution>>,
    /// Repositories with an integration in flight, and whose.
    integrating: HashMap<String, (JobId, TaskIndex, Attempt, u32)>,
    /// Repositories with a stacked integration in flight (verified on top of the one in
    /// `integrating`; docs/design.md, "Integration queue: batches", halves verified at once),
    /// and whose.
    stacking: HashMap<String, (JobId, TaskIndex, Attempt, u32)>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    pub fn apply(&mut self, now: Millis, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle(now, event, &mut out);
        for job in self.jobs.values_mut() {
            job.fire_timers(now, &mut out);
        }
        self.schedule(now, &mut out);
        let done: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.finished())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(mut job) = self.jobs.remove(&id) {
                self.remember(id, job.fences());
                self.ended_charged.insert(id, job.take_charged());
            }
        }
        out
    }

    /// Keeps an ended job's fences, forgetting the oldest beyond `ENDED_TASKS`.
    fn remember(&mut self, job: JobId, fences: Vec<Fence>) {
        self.forget(&job);
        self.ended_tasks += fences.len();
        self.ended.insert(job, fences);
        self.ended_order.push_back(job);
        while self.ended_tasks > ENDED_TASKS {
            let Some(old) = self.ended_order.pop_front() else {
                break;
            };
            if let Some(f) = self.ended.remove(&old) {
                self.ended_tasks -= f.len();
            }
            self.ended_charged.remove(&old);
        }
    }

    fn forget(&mut self, job: &JobId) {
        self.ended_charged.remove(job);
        if let Some(f) = self.ended.remove(job) {
            self.ended_tasks -= f.len();
            self.ended_order.retain(|j| j != job);
        }
    }

    /// How a result for a job no longer running stands: from the ended job's records if they
    /// are remembered, else unknown.
    fn late(&mut self, result: TaskResult) -> Change {
        let fence = self
            .ended
            .get(&result.job)
            .and_then(|tasks| tasks.get(result.index.get()));
        let (kind, why) = match fence {
            Some(f) => settled(&result, f.phase, f.applied, f.attempts),
            None => (
                Ignore::Unknown,
                format!("job {} is not running", result.job),
            ),
        };
        // A new execution of an ended job still spent; one already counted is not again.
        let charged = kind != Ignore::Unknown
            && result.ran_agents()
            && self
                .ended_charged
                .get_mut(&result.job)
                .is_some_and(|set| set.insert(execution(&result)));
        Change::Ignored {
            result,
            why,
            kind,
            charged: Some(charged),
        }
    }

    /// The earliest time at which `apply(now, Event::Tick)` would do something.
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.jobs.values().filter_map(Job::next_wakeup).min()
    }

    /// Whether a job is still in the engine (finished jobs are dropped).
    pub fn has_job(&self, job: &JobId) -> bool {
        self.jobs.contains_key(job)
    }

    /// Jobs still running, oldest first.
    pub fn job_ids(&self) -> Vec<JobId> {
        self.jobs.keys().copied().collect()
    }

    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Current state of a job's tasks, if the job is live.
    pub fn tasks(&self, job: &JobId) -> Option<Tasks<'_>> {
        self.jobs.get(job).map(Job::tasks)
    }

    /// The spec of a live job.
    pub fn spec(&self, job: &JobId) -> Option<&ordo_proto::JobSpec> {
        self.jobs.get(job).map(|j| j.spec())
    }

    /// Whether task `index` of live job `job` awaits a decision: `Ok` with the approval
    /// stage's name, else why a decision cannot be applied ("task X of job Y is not awaiting
    /// approval (it is succeeded)").
    pub fn awaiting(&self, job: &JobId, index: TaskIndex) -> Result<String, String> {
        let j = self
            .jobs
            .get(job)
            .ok_or_else(|| format!("job {job} is not running"))?;
        j.awaiting(index.0)
    }

    /// State of a live job.
    pub fn job_state(&self, job: &JobId) -> Option<JobState> {
        self.jobs.get(job).map(|j| j.state)
    }

    pub fn busy_slots(&self) -> u32 {
        self.pools.busy_slots()
    }

    /// The adaptive pools' limits, by name.
    pub fn pool_limits(&self) -> &BTreeMap<String, PoolLimit> {
        self.pools.limits()
    }

    fn handle(&mut self, now: Millis, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Submit {
                job,
                spec,
                dag,
                options,
                saved,
            } => {
                if self.jobs.contains_key(&job) {
                    return;
                }
                self.forget(&job);
                let j = Job::new(job, spec, dag, &options, saved, now, out);
                self.jobs.insert(job, j);
            }
            Event::Started {
                job,
                index,
                attempt,
                worker,
                delivery,
            } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.started(index.0, attempt, worker, delivery, now, out);
                }
            }
            Event::Finished(result) => match self.jobs.get_mut(&result.job) {
                Some(j) => j.finished_attempt(result, now, &mut self.pools, out),
                None => out.push(Action::Record(self.late(result))),
            },
            Event::Lost {
                job,
                index,
                attempt,
                reason,
            } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.lost(index.0, attempt, reason, now, &mut self.pools, out);
                }
            }
            Event::Cancel { job, reason } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.cancel(reason, now, out);
                }
            }
            Event::Requeue {
                job,
                index,
                attempt,
            } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.requeue(index.0, attempt, now, &mut self.pools, out);
                }
            }
            Event::Capacity { queue, capacity } => self.pools.set(&queue, capacity),
            Event::Integrated {
                job,
                index,
                attempt,
                outcome,
                batch,
                step,
                stacked,
            } => {
                let busy = match stacked {
                    true => &mut self.stacking,
                    false => &mut self.integrating,
                };
                busy.retain(|_, busy| *busy != (job, index, attempt, step));
                if let Some(j) = self.jobs.get_mut(&job) {
                    match stacked {
                        true => {
                            j.stacked_integrated(index.0, attempt, step, outcome, batch, now, out)
                        }
                        false => j.integrated(index.0, attempt, step, outcome, batch, now, out),
                    }
                }
            }
            Event::Ended { job, saved } => {
                if !self.jobs.contains_key(&job) {
                    let fences = saved
                        .iter()
                        .map(|s| Fence {
                            phase: s.state.phase(),
                            attempts: s.attempts,
                            applied: None,
                        })
                        .collect();
                    self.remember(job, fences);
                }
            }
            Event::Pool { name, limit } => self.pools.restore(name, limit),
            Event::Decide {
                job,
                index,
                decision,
            } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.decide(index.0, decision, now, out);
                }
            }
            Event::Tick => {}
        }
    }

    /// Hands ready tasks to free slots: higher priority first, then the longest remaining
    /// critical path, jobs in submission order.
    fn schedule(&mut self, now: Millis, out: &mut Vec<Action>) {
        for job in self.jobs.values_mut() {
            job.schedule(now, &mut self.pools, out);
        }
        // One integration at a time per repository, jobs in submission order; and, on top of
        // it, one stacked integration of the same job's bisection.
        for (id, job) in self.jobs.iter_mut() {
            let Some(repo) = job.repository() else {
                continue;
            };
            let repo = repo.to_string();
            if !self.integrating.contains_key(&repo)
                && let Some(req) = job.next_integration()
            {
                let busy = (*id, req.index, req.attempt, req.step);
                self.integrating.insert(repo.clone(), busy);
                out.push(Action::Integrate(req));
            }
            if self
                .integrating
                .get(&repo)
                .is_some_and(|busy| busy.0 == *id)
                && !self.stacking.contains_key(&repo)
                && let Some(req) = job.next_stacked()
            {
                let busy = (*id, req.index, req.attempt, req.step);
                self.stacking.insert(repo, busy);
                out.push(Action::Integrate(req));
            }
        }
    }
}

/// Which tasks of an ended job `ordo retry` starts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Again {
    /// Every task (`ordo retry JOB`).
    All,
    /// The tasks that did not succeed (`--failed-only`, the dashboard's "Retry failed").
    Unsuccessful,
    /// One task and the tasks it held back: its dependents, direct or not, that did not
    /// succeed (`--task T`, the task page's "Retry"). A task that was skipped takes along the
    /// dependencies that did not succeed, or it would be skipped again.
    Task(u32),
}

impl Again {
    /// What a retry request asks for, its task looked up in the job's graph.
    pub fn of(req: &ordo_proto::api::RetryRequest, dag: &Dag) -> Result<Again, String> {
        match (&req.task, req.failed_only) {
            (Some(_), true) => Err("give either --task or --failed-only, not both".into()),
            (Some(name), false) => dag
                .names
                .iter()
                .position(|n| n.as_str() == name)
                .map(|t| Again::Task(t as u32))
                .ok_or_else(|| format!("job {} has no task named {name:?}", req.job)),
            (None, true) => Ok(Again::Unsuccessful),
            (None, false) => Ok(Again::All),
        }
    }
}

/// Records for running a finished job again (`ordo retry`): the tasks `again` names start
/// over and the others keep their records, so a task that succeeded never runs again unless
/// asked to. Attempt numbers keep counting, so results of earlier runs stay stale.
pub fn retry_records(saved: &[SavedTask], dag: &Dag, again: Again) -> Vec<SavedTask> {
    let succeeded = |t: usize| matches!(saved[t].state, TaskState::Succeeded { .. });
    let mut chosen = vec![false; saved.len()];
    match again {
        Again::All => chosen.fill(true),
        Again::Unsuccessful => {
            for (t, c) in chosen.iter_mut().enumerate() {
                *c = !succeeded(t);
            }
        }
        Again::Task(root) => {
            let mut stack = vec![root];
            let mut up = vec![root];
            while let Some(t) = up.pop() {
                for &d in dag.deps.get(t as usize).into_iter().flatten() {
                    if !succeeded(d as usize) && !stack.contains(&d) {
                        stack.push(d);
                        up.push(d);
                    }
                }
            }
            while let Some(t) = stack.pop() {
                let t = t as usize;
                if t >= chosen.len() || chosen[t] {
                    continue;
                }
                chosen[t] = true;
                stack.extend(
                    dag.dependents[t]
                        .iter()
                        .filter(|&&d| !succeeded(d as usize)),
                );
            }
        }
    }
    saved
        .iter()
        .zip(chosen)
        .map(|(s, again)| {
            if again {
                SavedTask {
                    state: TaskState::Pending,
                    ..s.clone()
                }
            } else {
                s.clone()
            }
        })
        .collect()
}
