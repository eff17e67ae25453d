//! The host: one driver and one store for every job of a process, and every verb (submit,
//! cancel, retry, prune, status, jobs, report, output, workers) written once. It drives an
//! `Executor`: the JetStream one of `ordo-coordinator` (workers on any machine), or the
//! in-process one of local mode (`ordo run`, `ordo mcp`, `ordo ui`). Transports reach the
//! verbs by name with JSON bodies (`api::handle`): the NATS API, a state directory's Unix
//! socket, or a call from the same process.
//!
//! # Layout
//! - `executor`: what runs the attempts (start, kill, integrate, prune, capacity, workers).
//! - `verbs`: one method per verb, typed requests and replies.
//! - `api`: the verbs by name, JSON in and JSON out, for every transport.
//!
//! The loop around a host belongs to its transport (`service` for NATS, the `ordo` binary's
//! `local` for a state directory): it feeds events and requests in, calls `turn`, and sends a
//! reply only once `settled` says what its request changed is committed.

pub mod api;
mod executor;
mod verbs;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use ordo_proto::validate::validate;
use ordo_proto::{JobId, Millis, TaskIndex, names};
use tokio::sync::mpsc;

use crate::driver::{Driver, Policy};
use crate::engine::{Change, Engine, Event, Ignore, TaskState};
use crate::metrics::Metrics;
use crate::notify::{Notice, Notifier};
use crate::store::{JobRecord, Store};
use crate::traces::Traces;
use crate::views;

pub use executor::Executor;

/// Jobs that ended this recently are handed to the engine at start for fencing late results.
const REMEMBER_ENDED_MS: Millis = 60 * 60 * 1000;

/// Limits a host puts on what it is sent.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most tasks in one submitted job (at most `names::MAX_TASKS`).
    pub max_tasks: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tasks: names::MAX_TASKS,
        }
    }
}

/// Which unfinished jobs a starting host takes up again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recover {
    /// All of them (the coordinator; `ordo mcp` and `ordo ui` serving a state directory).
    All,
    /// None: they wait for the process that runs them (`ordo run` resumes its own job,
    /// `Host::resume`; a one-shot command only reads).
    None,
}

pub struct Host<E: Executor> {
    store: Arc<Store>,
    driver: Driver,
    traces: Traces,
    metrics: Option<Metrics>,
    executor: E,
    limits: Limits,
    /// Name and creation time of live jobs whose summary was asked for.
    headers: HashMap<JobId, views::Header>,
    /// Outbox entries handed over, to be marked sent in the next commit.
    sent: Vec<u64>,
    /// Who wants the changes as they are committed (`ordo run`'s progress).
    watchers: Vec<mpsc::UnboundedSender<Arc<[Change]>>>,
    /// `[[notify]]`: the notifications to commit and the deliveries.
    notifier: Notifier,
}

impl<E: Executor> Host<E> {
    pub fn new(store: Arc<Store>, policy: Policy, executor: E, traces: Traces) -> Host<E> {
        Host {
            store,
            driver: Driver::new(policy),
            traces,
            metrics: None,
            executor,
            limits: Limits::default(),
            headers: HashMap::new(),
            sent: Vec::new(),
            watchers: Vec::new(),
            notifier: Notifier::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn engine(&self) -> &Engine {
        self.driver.engine()
    }

    pub fn executor(&self) -> &E {
        &self.executor
    }

    pub fn executor_mut(&mut self) -> &mut E {
        &mut self.executor
    }

    /// The engine to read while the executor changes.
    pub fn engine_and_executor(&mut self) -> (&Engine, &mut E) {
        (self.driver.engine(), &mut self.executor)
    }

    pub fn traces(&self) -> &Traces {
        &self.traces
    }

    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// Sends every change committed from now on to `tx`.
    pub fn watch(&mut self, tx: mpsc::UnboundedSender<Arc<[Change]>>) {
        self.watchers.push(tx);
    }

    /// Applies one event (a worker's report, a timer, a lost dispatch).
    pub fn apply(&mut self, now: Millis, event: Event) {
        self.driver.apply(now, event);
    }

    /// An outbox entry was handed over: it is marked sent in the next commit.
    pub fn sent(&mut self, outbox_seq: u64) {
        self.sent.push(outbox_seq);
    }

    /// Everything applied is committed: what waits on a commit (an ack, a reply) may go.
    pub fn settled(&self) -> bool {
        self.driver.settled()
    }

    /// When the loop must come back even if nothing arrives (the engine's timers, a deferred
    /// commit, a notification due). A delivery's end wakes it through `notify_waker`.
    pub fn next_wakeup(&self, now: Millis) -> Option<Millis> {
        match (self.driver.next_wakeup(now), self.notifier.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Notified when a notification's delivery ended: the loop then turns to record it.
    pub fn notify_waker(&self) -> Arc<tokio::sync::Notify> {
        self.notifier.waker()
    }

    /// Notifications not delivered yet (in flight, or waiting for a retry).
    pub fn notices_waiting(&self) -> Vec<&Notice> {
        self.notifier.waiting()
    }

    /// Whether waiting for notifications until `deadline` could deliver any more.
    pub fn notices_idle_until(&self, deadline: Millis) -> bool {
        self.notifier.idle_until(deadline)
    }

    /// Hands the engine what the executor offers now.
    pub fn refresh_capacity(&mut self, now: Millis) -> u32 {
        let mut total = 0;
        for (queue, capacity) in self.executor.capacity() {
            total += capacity.slots;
            self.driver.apply(now, Event::Capacity { queue, capacity });
        }
        total
    }

    /// Takes up the jobs the store holds: those that ended within the hour for fencing late
    /// results, and the unfinished ones as `recover` says.
    pub async fn recover(
        &mut self,
        now: Millis,
        recover: Recover,
    ) -> Result<(), crate::store::Error> {
        // The adaptive pools' limits go on from where they were, before any job dispatches.
        for (name, limit) in self.store.pool_limits()? {
            self.driver.apply(now, Event::Pool { name, limit });
        }
        for job in self.store.jobs()? {
            if job.state.is_terminal() {
                if job
                    .finished_ms
                    .is_some_and(|f| now.saturating_sub(f) < REMEMBER_ENDED_MS)
                {
                    let saved = self.store.tasks(&job.id)?;
                    self.driver.apply(now, Event::Ended { job: job.id, saved });
                }
                continue;
            }
            if recover == Recover::All
                && let Err(e) = self.resume(now, job).await
            {
                tracing::error!("{e}");
            }
        }
        // Notifications a previous process committed and did not deliver go out from here.
        self.notifier.load(self.store.notices()?, now);
        if self.executor.attempts_outlive_host() {
            for (seq, d) in self.store.outbox()? {
                self.executor.start(d, Some(seq));
            }
        }
        Ok(())
    }

    /// Runs an unfinished job again from its records: finished tasks keep them; attempts that
    /// were in flight run again without counting when they died with the last process.
    pub async fn resume(&mut self, now: Millis, job: JobRecord) -> Result<(), String> {
        let dag = validate(&job.spec).map_err(|errs| {
            let first = errs.first().map(ToString::to_string).unwrap_or_default();
            format!("cannot resume job {} '{}': {first}", job.id, job.name)
        })?;
        let queues: BTreeSet<String> = job
            .spec
            .tasks
            .iter()
            .map(|t| job.spec.queue(t).to_string())
            .collect();
        self.executor.open_queues(&queues).await?;
        let saved = self
            .store
            .saved(&job)
            .map_err(|e| format!("cannot resume job {}: {e}", job.id))?;
        let orphans: Vec<(TaskIndex, _)> = if self.executor.attempts_outlive_host() {
            Vec::new()
        } else {
            saved
                .tasks
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.state.active_attempt().map(|a| (TaskIndex::from(i), a)))
                .collect()
        };
        self.traces
            .job(job.id, &job.name, job.created_ms, &job.spec);
        let id = job.id;
        let spec = Arc::new(job.spec);
        self.notifier.watch(id, &spec);
        self.driver.apply(
            now,
            Event::Submit {
                job: id,
                spec,
                dag: Arc::new(dag),
                options: job.options,
                saved: Some(saved),
            },
        );
        for (index, attempt) in orphans {
            self.driver.apply(
                now,
                Event::Requeue {
                    job: id,
                    index,
                    attempt,
                },
            );
        }
        Ok(())
    }

    /// One turn of the loop's write half: commits what is due (`force`: what waits, even if
    /// nothing needs it yet), shows it (traces, metrics, watchers), then has the executor
    /// carry out what the commit allows. Whether it committed.
    pub async fn turn(&mut self, now: Millis, force: bool) -> Result<bool, crate::store::Error> {
        let started = Instant::now();
        // Deliveries that ended are recorded with this commit.
        let counts = self.notifier.collect(now);
        if let Some(m) = &self.metrics {
            m.notified(counts.sent, counts.failed);
        }
        let edits = self.notifier.has_edits();
        let force = force || edits;
        let (driver, store, sent, notifier, executor) = (
            &mut self.driver,
            &self.store,
            &mut self.sent,
            &mut self.notifier,
            &self.executor,
        );
        let queued = |q: &str| executor.queued(q);
        let turn = if driver.due(force, queued) || edits {
            // A commit blocks (redb): off a multi-threaded runtime's thread then, and only then.
            block_in_place(|| driver.turn(store, now, force, queued, sent, notifier))
        } else {
            driver.turn(store, now, force, queued, sent, notifier)
        }?;
        // Notifications due go out on tasks of their own; the loop never waits for them.
        self.notifier.start_due(now);
        if turn.committed {
            if let Some(m) = &self.metrics {
                m.commit(started.elapsed());
            }
            log_ignored(&turn.changes);
            self.traces.observe(&turn.changes);
            if let Some(m) = &mut self.metrics {
                m.observe(&turn.changes);
            }
            if !self.watchers.is_empty() && !turn.changes.is_empty() {
                let changes: Arc<[Change]> = turn.changes.into();
                self.watchers.retain(|w| w.send(changes.clone()).is_ok());
            }
        }
        if !turn.dispatches.is_empty() {
            ordo_plumbing::failpoint::hit(ordo_plumbing::failpoint::AFTER_COMMIT_BEFORE_PUBLISH);
        }
        let mut outbox = turn.outbox.into_iter();
        for d in turn.dispatches {
            self.executor.start(d, outbox.next());
        }
        for k in turn.kills {
            self.executor.kill(k).await;
        }
        for req in turn.integrations {
            self.executor.integrate(req);
        }
        Ok(turn.committed)
    }
}

/// Runs a blocking call without stalling a multi-threaded runtime's other tasks (a
/// current-thread runtime, the coordinator's, just runs it).
fn block_in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Results that changed nothing, logged once each (warn for unknown ones: forged or corrupt).
fn log_ignored(changes: &[Change]) {
    for c in changes {
        if let Change::Ignored {
            result, why, kind, ..
        } = c
        {
            let (job, task, attempt) = (result.job, result.index.0, result.attempt.0);
            let (delivery, worker) = (result.delivery, &result.worker);
            match kind {
                Ignore::Unknown => {
                    tracing::warn!(%job, task, attempt, delivery, %worker, "result ignored: {why}")
                }
                Ignore::Stale | Ignore::Duplicate => {
                    tracing::info!(%job, task, attempt, delivery, %worker, ?kind, "result ignored: {why}")
                }
            }
        }
    }
}

/// Dispatches no worker started within `deadline` ms: lost (the coordinator's housekeeping).
pub fn unstarted(engine: &Engine, now: Millis, deadline: Millis) -> Vec<Event> {
    let mut lost = Vec::new();
    for job in engine.job_ids() {
        for (i, t) in engine.tasks(&job).into_iter().flatten().enumerate() {
            if let TaskState::Dispatched { attempt, at } = t
                && now.saturating_sub(*at) > deadline
            {
                lost.push(Event::Lost {
                    job,
                    index: TaskIndex::from(i),
                    attempt: *attempt,
                    reason: format!("no worker started it within {}s", deadline / 1000),
                });
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests;
