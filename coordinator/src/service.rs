//! The coordinator service: the engine and the store driven by NATS.
//!
//! One loop owns the engine and the store. Inputs (API requests, worker events, heartbeats,
//! max-deliveries advisories, timers) arrive on one channel; each turn drains everything
//! queued, applies it, and then, in this order:
//! 1. commits the changes and the new dispatches (the outbox) in ONE redb transaction;
//! 2. acks the worker events it applied (an event is acked only after its commit);
//! 3. answers API requests;
//! 4. publishes the outbox (`Nats-Msg-Id = job.task.attempt`, awaiting each ack) and marks the
//!    entries sent in the next commit; kills go out on core NATS.
//!
//! A crash anywhere replays safely: unacked events come back, unsent outbox entries are
//! published again on start and de-duplicated by JetStream.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use ordo_proto::api::{self, ApiError, ApiReply, ErrorKind};
use ordo_proto::wire::{self, Dispatch, Heartbeat, Kill, TaskResult, WorkerEvent};
use ordo_proto::{Attempt, JobId, failpoint, names, validate::validate};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::bus::{Bus, Delivery};
use crate::engine::{
    Action, Capacity, Change, Engine, Event, Ignore, JobOptions, JobState, Millis, TaskState,
    retry_records,
};
use crate::metrics::Metrics;
use crate::store::{Batch, JobRecord, Store};
use crate::traces::Traces;
use crate::views;
use ordo_proto::telemetry::Telemetry;

#[derive(Clone, Debug)]
pub struct Options {
    pub delivery: Delivery,
    /// Stream replicas (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// A worker silent this long is gone.
    pub worker_timeout: Duration,
    /// A dispatch no worker started within this long is lost.
    pub start_deadline: Duration,
    /// Tasks dispatched ahead per worker slot, waiting in the stream for a slot to free.
    pub prefetch: u32,
    /// OTLP traces, when an exporter is configured.
    pub telemetry: Option<Arc<Telemetry>>,
    /// Serve Prometheus metrics here (`/metrics`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            delivery: Delivery {
                ack_wait: Duration::from_secs(30),
                max_deliver: 5,
            },
            replicas: 1,
            worker_timeout: Duration::from_secs(5),
            start_deadline: Duration::from_secs(120),
            prefetch: 1,
            telemetry: None,
            metrics_addr: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] crate::bus::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("NATS: {0}")]
    Nats(String),
}

enum Input {
    Api {
        verb: String,
        body: bytes::Bytes,
        reply: Option<async_nats::Subject>,
    },
    Event(Box<(WorkerEvent, jetstream::Message)>),
    Heartbeat(Heartbeat),
    /// A worker began an attempt (best effort, core NATS).
    Started(WorkerEvent),
    /// A task message ran out of deliveries.
    Exhausted {
        stream_seq: u64,
    },
    /// An outbox entry is stored in JetStream.
    Published {
        outbox_seq: u64,
        key: (JobId, u32, Attempt),
        stream_seq: u64,
    },
}

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

struct Service {
    client: async_nats::Client,
    traces: Traces,
    metrics: Option<Metrics>,
    bus: Arc<Bus>,
    /// The loop's own input channel, for background publishers.
    tx: mpsc::Sender<Input>,
    store: Arc<Store>,
    engine: Engine,
    opts: Options,
    workers: HashMap<String, (Heartbeat, Instant)>,
    queues: BTreeSet<String>,
    /// Stream sequence of each published attempt, to delete messages that must not run.
    published: HashMap<(JobId, u32, Attempt), u64>,
    /// Outbox entries handed over, to be marked sent in the next commit.
    sent: Vec<u64>,
    /// Changes and applied events waiting for the next commit.
    deferred: Vec<Change>,
    deferred_acks: Vec<jetstream::Message>,
    /// Name and creation time of live jobs whose summary was asked for.
    headers: HashMap<JobId, (String, u64)>,
}

/// Capacity refresh, lost-dispatch checks and deferred commits happen this often.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// Deferred changes that force a commit.
const MAX_DEFERRED: usize = 1000;

/// The runtime `ordo-coordinator` runs on: one thread, for one loop that also commits (redb
/// is synchronous, and nothing can proceed before a commit is durable); fewer wake-ups of other
/// threads per task than a multi-threaded runtime (bench/distributed).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs the coordinator until `shutdown` resolves.
pub async fn run(
    client: async_nats::Client,
    store: Store,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    tokio::pin!(shutdown);
    // JetStream may not be ready yet (a cluster still electing its leader, a server
    // restarting): keep trying rather than exit.
    let mut delay = Duration::from_millis(250);
    let bus = loop {
        match Bus::setup(client.clone(), opts.delivery, opts.replicas).await {
            Ok(bus) => break bus,
            Err(e) => tracing::warn!("cannot set up JetStream yet: {e}; retrying in {delay:?}"),
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    };
    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let mut svc = Service {
        client: client.clone(),
        bus: Arc::new(bus),
        tx: tx.clone(),
        store: Arc::new(store),
        engine: Engine::new(),
        traces: Traces::new(opts.telemetry.clone()),
        metrics: None,
        opts,
        workers: HashMap::new(),
        queues: BTreeSet::new(),
        published: HashMap::new(),
        sent: Vec::new(),
        deferred: Vec::new(),
        deferred_acks: Vec::new(),
        headers: HashMap::new(),
    };
    if let Some(addr) = svc.opts.metrics_addr {
        let (metrics, registry) = Metrics::new();
        let bound = ordo_proto::telemetry::serve_metrics(addr, Arc::new(registry))
            .await
            .map_err(|e| Error::Nats(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!(addr = %bound, "metrics at /metrics");
        svc.metrics = Some(metrics);
    }
    svc.ensure_queue(names::DEFAULT_QUEUE).await?;
    let mut actions = svc.recover().await?;

    let mut tasks = vec![
        tokio::spawn(forward_api(client.clone(), tx.clone())),
        tokio::spawn(forward(
            client.clone(),
            names::HEARTBEAT_SUBJECTS.into(),
            tx.clone(),
            heartbeat_input,
        )),
        tokio::spawn(forward(
            client.clone(),
            names::STARTED_SUBJECTS.into(),
            tx.clone(),
            started_input,
        )),
        tokio::spawn(forward(
            client.clone(),
            names::max_deliveries_advisories(),
            tx.clone(),
            advisory_input,
        )),
    ];
    let events = svc.bus.events().await?;
    tasks.push(tokio::spawn(forward_events(events, tx.clone())));

    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut acks: Vec<jetstream::Message> = Vec::new();
    let mut replies: Vec<(async_nats::Subject, Vec<u8>)> = Vec::new();
    svc.turn(std::mem::take(&mut actions), &mut acks, &mut replies, true)
        .await?;
    loop {
        let wake = svc.engine.next_wakeup();
        let (first, tick) = tokio::select! {
            _ = &mut shutdown => break,
            i = rx.recv() => match i { Some(i) => (Some(i), false), None => break },
            _ = housekeeping.tick() => (None, true),
            _ = sleep_until(wake) => (None, false),
        };
        let now = now_ms();
        let mut inputs: Vec<Input> = first.into_iter().collect();
        while inputs.len() < 10_000 {
            match rx.try_recv() {
                Ok(i) => inputs.push(i),
                Err(_) => break,
            }
        }
        for input in inputs {
            svc.input(now, input, &mut actions, &mut acks, &mut replies)
                .await;
        }
        if tick {
            actions.extend(svc.housekeeping(now));
        }
        actions.extend(svc.engine.apply(now, Event::Tick));
        svc.turn(std::mem::take(&mut actions), &mut acks, &mut replies, tick)
            .await?;
    }
    // What was deferred is committed before leaving.
    svc.turn(Vec::new(), &mut acks, &mut replies, true).await?;
    if let Some(tel) = svc.traces.telemetry().cloned() {
        let _ = tokio::task::spawn_blocking(move || tel.flush()).await;
    }
    for t in tasks {
        t.abort();
    }
    let _ = client.flush().await;
    Ok(())
}

async fn sleep_until(at: Option<Millis>) {
    match at {
        Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await,
        None => std::future::pending().await,
    }
}

impl Service {
    async fn ensure_queue(&mut self, queue: &str) -> Result<(), Error> {
        if !self.queues.contains(queue) {
            self.bus.ensure_queue(queue).await?;
            self.queues.insert(queue.to_string());
        }
        Ok(())
    }

    /// Reloads unfinished jobs into the engine and publishes the outbox again.
    async fn recover(&mut self) -> Result<Vec<Action>, Error> {
        let now = now_ms();
        let mut actions = Vec::new();
        for job in self.store.jobs()? {
            if job.state.is_terminal() {
                continue;
            }
            for t in &job.spec.tasks {
                self.ensure_queue(job.spec.queue(t)).await?;
            }
            let saved = self.store.tasks(&job.id)?;
            let Ok(dag) = validate(&job.spec) else {
                continue;
            };
            let names = job.spec.tasks.iter().map(|t| t.name.to_string()).collect();
            self.traces.job(job.id, &job.name, job.created_ms, names);
            actions.extend(self.engine.apply(
                now,
                Event::Submit {
                    job: job.id,
                    spec: Arc::new(job.spec.clone()),
                    dag: Arc::new(dag),
                    options: job.options.clone(),
                    saved: Some(saved),
                },
            ));
        }
        for (seq, d) in self.store.outbox()? {
            self.publish(seq, d);
        }
        Ok(actions)
    }

    /// Commit, ack, reply, publish: one turn of the loop's write half.
    async fn turn(
        &mut self,
        actions: Vec<Action>,
        acks: &mut Vec<jetstream::Message>,
        replies: &mut Vec<(async_nats::Subject, Vec<u8>)>,
        force: bool,
    ) -> Result<(), Error> {
        let mut dispatches = Vec::new();
        let mut kills = Vec::new();
        // Only a task starting to run may wait for the next commit (at most one housekeeping
        // period): losing it in a crash loses nothing, the attempt is in flight either way.
        let mut urgent = force;
        for a in actions {
            match a {
                Action::Record(c) => {
                    urgent |= !matches!(
                        c,
                        Change::Task {
                            state: TaskState::Running { .. },
                            ..
                        }
                    );
                    if let Change::Job {
                        job,
                        state: JobState::Cancelled,
                        ..
                    } = &c
                    {
                        kills.push(Kill {
                            job: *job,
                            index: None,
                            attempt: None,
                        });
                    }
                    self.deferred.push(c);
                }
                Action::Dispatch(d) => dispatches.push(d),
                Action::Kill {
                    job,
                    index,
                    attempt,
                } => kills.push(Kill {
                    job,
                    index: Some(index),
                    attempt: Some(attempt),
                }),
            }
        }
        // Events are acked only with the commit that applied them.
        self.deferred_acks.append(acks);
        urgent |= !dispatches.is_empty()
            || !replies.is_empty()
            || !kills.is_empty()
            || self.deferred.len() >= MAX_DEFERRED;
        if !urgent {
            return Ok(());
        }
        let changes = std::mem::take(&mut self.deferred);
        for c in &changes {
            if let Change::Ignored { result, why, kind } = c {
                let (job, task, attempt) = (result.job, result.index, result.attempt.0);
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
        self.traces.observe(&changes);
        if let Some(m) = &mut self.metrics {
            m.observe(&changes);
        }
        let commit_started = Instant::now();
        let mut acks = std::mem::take(&mut self.deferred_acks);
        let seqs = if !changes.is_empty() || !dispatches.is_empty() || !self.sent.is_empty() {
            let sent = std::mem::take(&mut self.sent);
            let batch = Batch {
                now: now_ms(),
                changes: &changes,
                outbox_add: &dispatches,
                outbox_sent: &sent,
            };
            failpoint::hit(failpoint::BEFORE_COMMIT);
            // redb is synchronous, and the loop has nothing to do until the commit is durable:
            // it commits on its own thread (a hand-off to the blocking pool cost two thread
            // wake-ups per turn, on the path of every dependent task).
            let seqs = self.store.commit(&batch)?;
            if let Some(m) = &self.metrics {
                m.commit(commit_started.elapsed());
            }
            seqs
        } else {
            Vec::new()
        };
        if !acks.is_empty() {
            failpoint::hit(failpoint::AFTER_APPLY_BEFORE_ACK);
        }
        // A lost ack only means the event comes again, and fencing ignores it.
        for m in acks.drain(..) {
            let _ = m.ack().await;
        }
        for (reply, body) in replies.drain(..) {
            let _ = self.client.publish(reply, body.into()).await;
        }
        if !dispatches.is_empty() {
            failpoint::hit(failpoint::AFTER_COMMIT_BEFORE_PUBLISH);
        }
        for (seq, d) in seqs.into_iter().zip(dispatches) {
            self.publish(seq, d);
        }
        for k in kills {
            if k.index.is_none() {
                // Messages of a cancelled job not yet delivered never run.
                let gone: Vec<_> = self
                    .published
                    .iter()
                    .filter(|((job, _, _), _)| *job == k.job)
                    .map(|(key, seq)| (*key, *seq))
                    .collect();
                for (key, seq) in gone {
                    self.bus.delete_task(seq).await;
                    self.published.remove(&key);
                }
            }
            let _ = self
                .client
                .publish(names::CONTROL_KILL, wire::encode(&k).into())
                .await;
        }
        Ok(())
    }

    /// A job's summary for cheap polling: a live job's comes from the engine's memory (its
    /// name and creation time read once), so polling a large job costs no store reads.
    fn summary(&mut self, id: &JobId) -> Result<api::JobSummary, ApiError> {
        self.headers.retain(|job, _| self.engine.has_job(job));
        if let (Some(_), None) = (self.engine.tasks(id), self.headers.get(id))
            && let Some(job) = self.store.job(id).map_err(internal)?
        {
            self.headers.insert(*id, (job.name, job.created_ms));
        }
        let live = match (
            self.engine.tasks(id),
            self.engine.job_state(id),
            self.headers.get(id),
        ) {
            (Some(tasks), Some(state), Some(header)) => Some((tasks, state, header)),
            _ => None,
        };
        views::summary_of(&self.store, id, live)
            .map_err(internal)?
            .ok_or_else(|| not_found(id))
    }

    /// The record of a result for a job no longer in the engine: stale or duplicate by the
    /// stored task, or unknown.
    fn late_result(&self, result: TaskResult) -> Change {
        let stored = self.store.job(&result.job).ok().flatten().and_then(|_| {
            let task = self.store.task(&result.job, result.index).ok()??;
            let applied = self
                .store
                .task_attempts(&result.job, result.index)
                .ok()?
                .last()
                .map(|r| (r.attempt, r.delivery));
            Some((task, applied))
        });
        let (kind, why) = match stored {
            Some((task, applied)) => {
                crate::engine::settled(&result, task.state.name(), applied, task.attempts)
            }
            None => (
                Ignore::Unknown,
                format!("job {} or its task {} is unknown", result.job, result.index),
            ),
        };
        Change::Ignored { result, why, kind }
    }

    /// Publishes an outbox entry in the background, retrying until JetStream stores it; the
    /// loop learns of it through `Input::Published` and marks the entry sent in its next
    /// commit. Retries carry the same message id, so JetStream stores one copy.
    fn publish(&self, outbox_seq: u64, d: Dispatch) {
        let bus = self.bus.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                match bus.publish(&d).await {
                    Ok(stream_seq) => {
                        let key = (d.job, d.index, d.attempt);
                        let _ = tx
                            .send(Input::Published {
                                outbox_seq,
                                key,
                                stream_seq,
                            })
                            .await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job = %d.job, task = %d.task, attempt = d.attempt.0, "publishing: {e}; retrying")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    async fn input(
        &mut self,
        now: Millis,
        input: Input,
        actions: &mut Vec<Action>,
        acks: &mut Vec<jetstream::Message>,
        replies: &mut Vec<(async_nats::Subject, Vec<u8>)>,
    ) {
        match input {
            Input::Event(boxed) => {
                let (ev, msg) = *boxed;
                let event = match ev {
                    WorkerEvent::Started {
                        job,
                        index,
                        attempt,
                        worker,
                        delivery,
                    } => Event::Started {
                        job,
                        index,
                        attempt,
                        worker,
                        delivery,
                    },
                    WorkerEvent::Finished(r) => {
                        self.published.remove(&(r.job, r.index, r.attempt));
                        if !self.engine.has_job(&r.job) {
                            // The job ended: its record says how this result stands.
                            actions.push(Action::Record(self.late_result(r)));
                            acks.push(msg);
                            return;
                        }
                        Event::Finished(r)
                    }
                };
                actions.extend(self.engine.apply(now, event));
                acks.push(msg);
            }
            Input::Started(WorkerEvent::Started {
                job,
                index,
                attempt,
                worker,
                delivery,
            }) => {
                let event = Event::Started {
                    job,
                    index,
                    attempt,
                    worker,
                    delivery,
                };
                actions.extend(self.engine.apply(now, event));
            }
            Input::Started(WorkerEvent::Finished(_)) => {}
            Input::Heartbeat(hb) => {
                for q in &hb.queues {
                    if names::valid_queue(q) && self.ensure_queue(q).await.is_err() {
                        tracing::error!(queue = %q, "cannot create the queue's consumer");
                    }
                }
                self.workers.insert(hb.worker.clone(), (hb, Instant::now()));
            }
            Input::Exhausted { stream_seq } => {
                let found = self
                    .published
                    .iter()
                    .find(|(_, s)| **s == stream_seq)
                    .map(|(k, _)| *k);
                let key = match found {
                    Some(k) => Some(k),
                    None => self
                        .bus
                        .task_at(stream_seq)
                        .await
                        .map(|d| (d.job, d.index, d.attempt)),
                };
                self.bus.delete_task(stream_seq).await;
                if let Some((job, index, attempt)) = key {
                    self.published.remove(&(job, index, attempt));
                    actions.extend(self.engine.apply(
                        now,
                        Event::Lost {
                            job,
                            index,
                            attempt,
                            reason: format!(
                                "delivered {} times without a result",
                                self.opts.delivery.max_deliver
                            ),
                        },
                    ));
                }
            }
            Input::Published {
                outbox_seq,
                key,
                stream_seq,
            } => {
                failpoint::hit(failpoint::AFTER_PUBLISH_BEFORE_SENT);
                self.sent.push(outbox_seq);
                // A result may already have come back; then the message is gone anyway.
                if self
                    .engine
                    .tasks(&key.0)
                    .and_then(|t| t.get(key.1 as usize))
                    .and_then(TaskState::active_attempt)
                    == Some(key.2)
                {
                    self.published.insert(key, stream_seq);
                }
            }
            Input::Api { verb, body, reply } => {
                let answer = self.api(now, &verb, &body, actions).await;
                if let Some(reply) = reply {
                    replies.push((reply, answer));
                }
            }
        }
    }

    /// Capacity from live workers, per queue; dispatches nobody started are lost.
    fn housekeeping(&mut self, now: Millis) -> Vec<Action> {
        let timeout = self.opts.worker_timeout;
        self.workers
            .retain(|_, (_, seen)| seen.elapsed() < timeout * 12);
        let mut actions = Vec::new();
        let mut total_slots = 0;
        for q in self.queues.clone() {
            let mut cap = Capacity {
                slots: 0,
                cpus: 0.0,
                memory_mb: 0,
                largest_cpus: 0.0,
                largest_memory_mb: 0,
            };
            for (hb, seen) in self.workers.values() {
                if seen.elapsed() < timeout && !hb.draining && hb.queues.contains(&q) {
                    // Each slot also gets `prefetch` queued tasks, so a worker never waits for a
                    // commit between two tasks; the stream still holds at most that many.
                    cap.slots += hb.slots * (1 + self.opts.prefetch);
                    cap.cpus += hb.cpus;
                    cap.memory_mb += hb.memory_mb;
                    cap.largest_cpus = cap.largest_cpus.max(hb.cpus);
                    cap.largest_memory_mb = cap.largest_memory_mb.max(hb.memory_mb);
                }
            }
            total_slots += cap.slots;
            actions.extend(self.engine.apply(
                now,
                Event::Capacity {
                    queue: q,
                    capacity: cap,
                },
            ));
        }
        if let Some(m) = &self.metrics {
            m.sample(&self.engine, total_slots);
        }
        let deadline = self.opts.start_deadline.as_millis() as Millis;
        let mut lost = Vec::new();
        for job in self.engine.job_ids() {
            if let Some(tasks) = self.engine.tasks(&job) {
                for (i, t) in tasks.iter().enumerate() {
                    if let TaskState::Dispatched { attempt, at } = t
                        && now.saturating_sub(*at) > deadline
                    {
                        lost.push((job, i as u32, *attempt));
                    }
                }
            }
        }
        for (job, index, attempt) in lost {
            let reason = format!("no worker started it within {}s", deadline / 1000);
            actions.extend(self.engine.apply(
                now,
                Event::Lost {
                    job,
                    index,
                    attempt,
                    reason,
                },
            ));
        }
        actions
    }

    async fn api(
        &mut self,
        now: Millis,
        verb: &str,
        body: &[u8],
        actions: &mut Vec<Action>,
    ) -> Vec<u8> {
        let result = match verb {
            api::SUBMIT => self.submit(now, body, actions).await.map(to_value),
            api::STATUS => parse::<api::StatusRequest>(body).and_then(|r| {
                if r.summary_only {
                    return self.summary(&r.job).map(|summary| {
                        let omitted = summary.total;
                        to_value(api::JobStatus {
                            summary,
                            tasks: Vec::new(),
                            omitted,
                        })
                    });
                }
                let status = views::status(&self.store, &r.job)
                    .map_err(internal)?
                    .ok_or_else(|| not_found(&r.job))?;
                Ok(views::status_within(status, api::MAX_REPLY_BYTES))
            }),
            api::JOBS => {
                let req = if body.is_empty() {
                    Ok(api::JobsRequest::default())
                } else {
                    parse::<api::JobsRequest>(body)
                };
                req.and_then(|r| views::jobs(&self.store, &r).map(to_value).map_err(internal))
            }
            api::CANCEL => match parse::<api::JobRef>(body) {
                Ok(r) => self.cancel(now, r.job, actions),
                Err(e) => Err(e),
            },
            api::RETRY => match parse::<api::RetryRequest>(body) {
                Ok(r) => self.retry(now, r, actions),
                Err(e) => Err(e),
            },
            api::WORKERS => Ok(to_value(self.worker_list(now))),
            api::REPORT => parse::<api::ReportRequest>(body).and_then(|r| self.report(r)),
            api::PRUNE => parse::<api::PruneRequest>(body).and_then(|r| {
                let removed = self.store.prune(now, r.older_than_ms).map_err(internal)?;
                Ok(to_value(api::PruneReply { removed }))
            }),
            other => Err(ApiError::new(
                ErrorKind::Invalid,
                format!("unknown API verb '{other}'"),
            )),
        };
        let reply = match result {
            Ok(v) => ApiReply::Ok(v),
            Err(e) => ApiReply::Error(e),
        };
        serde_json::to_vec(&reply).unwrap_or_default()
    }

    async fn submit(
        &mut self,
        now: Millis,
        body: &[u8],
        actions: &mut Vec<Action>,
    ) -> Result<api::SubmitReply, ApiError> {
        let req: api::SubmitRequest = parse(body)?;
        let dag = validate(&req.spec).map_err(|errs| {
            let text: Vec<String> = errs
                .iter()
                .map(|e| format!("{}: {e}", req.spec.name))
                .collect();
            ApiError::new(ErrorKind::Invalid, text.join("\n"))
        })?;
        for t in &req.spec.tasks {
            let q = req.spec.queue(t).to_string();
            self.ensure_queue(&q)
                .await
                .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        }
        let id = JobId::new();
        let queues = req.spec.tasks.iter().map(|t| req.spec.queue(t).to_string());
        let slots = self.live_slots(&queues.collect());
        let options = JobOptions {
            default_mode: req
                .default_mode
                .unwrap_or(ordo_proto::ExecutionMode::Parallel),
            max_parallel: req.max_parallel,
            seed: now,
            slots: (slots > 0).then_some(slots),
        };
        let rec = JobRecord {
            id,
            name: req.spec.name.clone(),
            source: req.source.clone(),
            spec: req.spec.clone(),
            options: options.clone(),
            state: JobState::Pending,
            created_ms: now,
            updated_ms: now,
            finished_ms: None,
            reason: None,
        };
        self.store.insert_job(&rec).map_err(internal)?;
        let names = rec.spec.tasks.iter().map(|t| t.name.to_string()).collect();
        self.traces.job(id, &rec.name, now, names);
        actions.extend(self.engine.apply(
            now,
            Event::Submit {
                job: id,
                spec: Arc::new(req.spec),
                dag: Arc::new(dag),
                options,
                saved: None,
            },
        ));
        Ok(api::SubmitReply { job: id })
    }

    fn cancel(
        &mut self,
        now: Millis,
        job: JobId,
        actions: &mut Vec<Action>,
    ) -> Result<serde_json::Value, ApiError> {
        let rec = self
            .store
            .job(&job)
            .map_err(internal)?
            .ok_or_else(|| not_found(&job))?;
        if self.engine.has_job(&job) {
            actions.extend(self.engine.apply(
                now,
                Event::Cancel {
                    job,
                    reason: "cancelled by user".into(),
                },
            ));
        }
        let tasks = self.store.tasks(&job).map_err(internal)?;
        Ok(to_value(views::summary(&rec, &tasks)))
    }

    fn retry(
        &mut self,
        now: Millis,
        req: api::RetryRequest,
        actions: &mut Vec<Action>,
    ) -> Result<serde_json::Value, ApiError> {
        let job = req.job;
        let rec = self
            .store
            .job(&job)
            .map_err(internal)?
            .ok_or_else(|| not_found(&job))?;
        if self.engine.has_job(&job) {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                format!("job {job} is still {}", rec.state.name()),
            ));
        }
        let saved = self.store.tasks(&job).map_err(internal)?;
        let again = retry_records(&saved, req.failed_only);
        let dag = validate(&rec.spec)
            .map_err(|_| ApiError::new(ErrorKind::Internal, "stored spec no longer validates"))?;
        actions.push(Action::Record(Change::Job {
            job,
            state: JobState::Running,
            at: now,
            reason: None,
        }));
        actions.extend(self.engine.apply(
            now,
            Event::Submit {
                job,
                spec: Arc::new(rec.spec.clone()),
                dag: Arc::new(dag),
                options: rec.options.clone(),
                saved: Some(again),
            },
        ));
        let tasks = self.store.tasks(&job).map_err(internal)?;
        let mut summary = views::summary(&rec, &tasks);
        summary.state = JobState::Running.name().into();
        Ok(to_value(summary))
    }

    /// A job's records for `ordo report`, output tails cut so the reply fits one message.
    fn report(&self, r: api::ReportRequest) -> Result<serde_json::Value, ApiError> {
        let job = match r.job {
            Some(job) => job,
            None => crate::report::latest(&self.store)
                .map_err(internal)?
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "no jobs yet"))?,
        };
        let data = crate::report::gather(&self.store, &job)
            .map_err(internal)?
            .ok_or_else(|| not_found(&job))?;
        // Room for the reply envelope.
        let limit = self.client.server_info().max_payload.saturating_sub(1024);
        data.to_json_within(limit).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                format!(
                    "the report of job {job} does not fit in one NATS message ({limit} bytes) \
                     even without task output"
                ),
            )
        })
    }

    /// Slots of the live, non-draining workers serving any of `queues`.
    fn live_slots(&self, queues: &BTreeSet<String>) -> u32 {
        self.workers
            .values()
            .filter(|(hb, seen)| {
                seen.elapsed() < self.opts.worker_timeout
                    && !hb.draining
                    && hb.queues.iter().any(|q| queues.contains(q))
            })
            .map(|(hb, _)| hb.slots)
            .sum()
    }

    fn worker_list(&self, _now: Millis) -> Vec<api::WorkerInfo> {
        let mut list: Vec<_> = self
            .workers
            .values()
            .map(|(hb, seen)| api::WorkerInfo {
                heartbeat: hb.clone(),
                age_ms: seen.elapsed().as_millis() as u64,
            })
            .collect();
        list.sort_by(|a, b| a.heartbeat.worker.cmp(&b.heartbeat.worker));
        list
    }
}

fn to_value<T: Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorKind::Invalid, format!("bad request: {e}")))
}

fn internal(e: crate::store::Error) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

fn not_found(job: &JobId) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no job {job}"))
}

/// A batch whose slices the blocking commit task owns.
async fn forward_api(client: async_nats::Client, tx: mpsc::Sender<Input>) {
    loop {
        let Ok(mut sub) = client
            .queue_subscribe(names::API_SUBJECTS, names::API_QUEUE_GROUP.into())
            .await
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(msg) = sub.next().await {
            let verb = msg
                .subject
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_string();
            let input = Input::Api {
                verb,
                body: msg.payload,
                reply: msg.reply,
            };
            if tx.send(input).await.is_err() {
                return;
            }
        }
    }
}

/// Forwards every message on a core-NATS `subject` that `to_input` understands; messages it
/// cannot read are logged and dropped. Resubscribes if the subscription ends.
async fn forward(
    client: async_nats::Client,
    subject: String,
    tx: mpsc::Sender<Input>,
    to_input: fn(&[u8]) -> Result<Input, String>,
) {
    loop {
        let Ok(mut sub) = client.subscribe(subject.clone()).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(msg) = sub.next().await {
            match to_input(&msg.payload) {
                Ok(input) => {
                    if tx.send(input).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("ignoring a message on {}: {e}", msg.subject),
            }
        }
    }
}

fn heartbeat_input(payload: &[u8]) -> Result<Input, String> {
    wire::decode::<Heartbeat>(payload)
        .map(Input::Heartbeat)
        .map_err(|e| e.to_string())
}

fn started_input(payload: &[u8]) -> Result<Input, String> {
    wire::decode::<WorkerEvent>(payload)
        .map(Input::Started)
        .map_err(|e| e.to_string())
}

#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
}

fn advisory_input(payload: &[u8]) -> Result<Input, String> {
    serde_json::from_slice::<MaxDeliveries>(payload)
        .map(|a| Input::Exhausted {
            stream_seq: a.stream_seq,
        })
        .map_err(|e| e.to_string())
}

async fn forward_events(consumer: jetstream::consumer::PullConsumer, tx: mpsc::Sender<Input>) {
    let mut seen_bad: HashSet<u64> = HashSet::new();
    loop {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("event consumer: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(m) = messages.next().await {
            let Ok(msg) = m else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match wire::decode::<WorkerEvent>(&msg.payload) {
                Ok(ev) => {
                    if tx.send(Input::Event(Box::new((ev, msg)))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Undecodable: logged once and terminated, never redelivered in a loop.
                    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                    if seen_bad.insert(seq) {
                        tracing::warn!("dropping an undecodable event on {}: {e}", msg.subject);
                    }
                    let _ = msg.ack_with(AckKind::Term).await;
                }
            }
        }
    }
}
