//! The coordinator service: the engine and the store driven by NATS.
//!
//! One loop owns the driver (engine + commit rule) and the store. Inputs (API requests, worker
//! events, heartbeats, max-deliveries advisories, timers) arrive on one channel (`inputs`); each
//! turn drains everything queued, applies it, and then, in this order:
//! 1. commits the changes and the new dispatches (the outbox) in ONE redb transaction
//!    (`driver`);
//! 2. acks the worker events it applied (an event is acked only after its commit);
//! 3. answers API requests (`api`);
//! 4. publishes the outbox (`Nats-Msg-Id = job.task.attempt`, awaiting each ack) and marks the
//!    entries sent in the next commit; kills go out on core NATS; integrations of worktree
//!    tasks go to the task's queue like a task (`Ordo-Kind: integrate`), and come back as
//!    `Integrated` events.
//!
//! A crash anywhere replays safely: unacked events come back, unsent outbox entries are
//! published again on start and de-duplicated by JetStream.
//!
//! # Layout
//! - `inputs`: the forwarders from NATS to the loop's channel.
//! - `api`: one handler per API verb.
//! - `workers`: the worker registry and the capacity it offers per queue.

mod api;
mod inputs;
mod workers;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ordo_plumbing::telemetry::Telemetry;
use ordo_plumbing::{blobs, failpoint};
use ordo_proto::api::{ApiError, ApiReply, ErrorKind};
use ordo_proto::validate::validate;
use ordo_proto::wire::{self, Dispatch, Integrate, Integration, Kill, WorkerEvent};
use ordo_proto::{AttemptRef, JobId, Millis, TaskIndex, names, now_ms};
use tokio::sync::mpsc;

use crate::bus::{Bus, Delivery, TaskMessage};
use crate::driver::{self, Driver, Policy};
use crate::engine::{Change, Event, Ignore, TaskState};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::traces::Traces;
use inputs::Input;
use workers::Registry;

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
    /// Largest API request body (a submitted spec, as JSON) accepted, in bytes.
    pub max_spec_bytes: usize,
    /// Most tasks in one submitted job (at most `names::MAX_TASKS`).
    pub max_tasks: usize,
    /// `--ha`: whether this coordinator still holds the lease (HA hook: checked before replies
    /// go out, so a coordinator that lost it never answers from its stale state).
    pub ha: Option<crate::ha::Hooks>,
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
            max_spec_bytes: names::MAX_SPEC_BYTES,
            max_tasks: names::MAX_TASKS,
            ha: None,
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

struct Service {
    client: async_nats::Client,
    /// The object store bucket of API bodies larger than one NATS message, once created.
    blobs: Blobs,
    traces: Traces,
    metrics: Option<Metrics>,
    bus: Arc<Bus>,
    /// The loop's own input channel, for background publishers.
    tx: mpsc::Sender<Input>,
    store: Arc<Store>,
    driver: Driver,
    opts: Options,
    workers: Registry,
    queues: BTreeSet<String>,
    /// Stream sequence of each published attempt, to delete messages that must not run.
    published: HashMap<AttemptRef, u64>,
    /// Outbox entries handed over, to be marked sent in the next commit.
    sent: Vec<u64>,
    /// Applied worker events, acked once what they changed is committed.
    acks: Vec<jetstream::Message>,
    /// API replies, sent after the commit of what their request changed.
    replies: Vec<(async_nats::Subject, Vec<u8>)>,
    /// Name and creation time of live jobs whose summary was asked for.
    headers: HashMap<JobId, crate::views::Header>,
}

/// The bucket of large API bodies, set once created (`create_blobs`).
pub(crate) type Blobs = Arc<std::sync::OnceLock<jetstream::object_store::ObjectStore>>;

/// Creates the bucket of large API bodies, retrying every few seconds until it exists.
async fn create_blobs(client: async_nats::Client, replicas: usize, blobs: Blobs) {
    let js = jetstream::new(client);
    let mut warned = false;
    loop {
        match blobs::create_bucket(&js, replicas).await {
            Ok(store) => {
                let _ = blobs.set(store);
                if warned {
                    tracing::info!("the object store bucket {} is ready", names::BLOB_BUCKET);
                }
                return;
            }
            Err(e) if !warned => {
                tracing::warn!("{e}; API bodies over max_payload are refused until it exists");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Capacity refresh, lost-dispatch checks and deferred commits happen this often.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// Jobs that ended this recently are handed to the engine at start for fencing late results.
const REMEMBER_ENDED_MS: Millis = 60 * 60 * 1000;

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
    // Without the bucket, everything but bodies over max_payload works: it is created in the
    // background, retried until it is there (a user without the permission, an older config).
    let blobs = Blobs::default();
    let bucket = tokio::spawn(create_blobs(client.clone(), opts.replicas, blobs.clone()));
    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let mut svc = Service {
        client: client.clone(),
        blobs: blobs.clone(),
        bus: Arc::new(bus),
        tx: tx.clone(),
        store: Arc::new(store),
        driver: Driver::new(Policy::COORDINATOR),
        traces: Traces::new(opts.telemetry.clone()),
        metrics: None,
        workers: Registry::new(opts.worker_timeout, opts.prefetch),
        opts,
        queues: BTreeSet::new(),
        published: HashMap::new(),
        sent: Vec::new(),
        acks: Vec::new(),
        replies: Vec::new(),
        headers: HashMap::new(),
    };
    if let Some(addr) = svc.opts.metrics_addr {
        let (metrics, registry) = Metrics::new();
        let bound = ordo_plumbing::telemetry::serve_metrics(addr, Arc::new(registry))
            .await
            .map_err(|e| Error::Nats(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!(addr = %bound, "metrics at /metrics");
        svc.metrics = Some(metrics);
    } else if let Some(ha) = &svc.opts.ha {
        // HA hook: the HA thread serves the metrics (standby or active).
        let (metrics, registry) = Metrics::new();
        ha.metrics(registry);
        svc.metrics = Some(metrics);
    }
    svc.ensure_queue(names::DEFAULT_QUEUE).await?;
    svc.recover().await?;

    let mut tasks = vec![
        bucket,
        tokio::spawn(inputs::forward_api(
            client.clone(),
            blobs,
            svc.opts.max_spec_bytes,
            tx.clone(),
        )),
        tokio::spawn(inputs::forward(
            client.clone(),
            names::HEARTBEAT_SUBJECTS.into(),
            tx.clone(),
            inputs::heartbeat,
        )),
        tokio::spawn(inputs::forward(
            client.clone(),
            names::STARTED_SUBJECTS.into(),
            tx.clone(),
            inputs::started,
        )),
        tokio::spawn(inputs::forward(
            client.clone(),
            names::max_deliveries_advisories(),
            tx.clone(),
            inputs::advisory,
        )),
    ];
    let events = svc.bus.events().await?;
    tasks.push(tokio::spawn(inputs::forward_events(events, tx.clone())));

    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    svc.turn(true).await?;
    loop {
        let wake = svc.driver.engine().next_wakeup();
        let (first, tick) = tokio::select! {
            _ = &mut shutdown => break,
            i = rx.recv() => match i { Some(i) => (Some(i), false), None => break },
            _ = housekeeping.tick() => (None, true),
            _ = driver::sleep_until(wake) => (None, false),
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
            svc.input(now, input).await;
        }
        if tick {
            svc.housekeeping(now);
        }
        svc.driver.apply(now, Event::Tick);
        svc.turn(tick).await?;
    }
    // What was deferred is committed before leaving.
    svc.turn(true).await?;
    if let Some(tel) = svc.traces.telemetry().cloned() {
        let _ = tokio::task::spawn_blocking(move || tel.flush()).await;
    }
    for t in tasks {
        t.abort();
    }
    let _ = client.flush().await;
    Ok(())
}

impl Service {
    async fn ensure_queue(&mut self, queue: &str) -> Result<(), Error> {
        if !self.queues.contains(queue) {
            self.bus.ensure_queue(queue).await?;
            self.queues.insert(queue.to_string());
        }
        Ok(())
    }

    /// Reloads unfinished jobs into the engine (and the records of recently ended ones, for
    /// fencing) and publishes the outbox again.
    async fn recover(&mut self) -> Result<(), Error> {
        let now = now_ms();
        for job in self.store.jobs()? {
            if job.state.is_terminal() {
                // Late results for a job that ended shortly before are still fenced by its
                // records (a redelivered duplicate, a frozen worker's stale result).
                if job
                    .finished_ms
                    .is_some_and(|f| now.saturating_sub(f) < REMEMBER_ENDED_MS)
                {
                    let saved = self.store.tasks(&job.id)?;
                    self.driver.apply(now, Event::Ended { job: job.id, saved });
                }
                continue;
            }
            for t in &job.spec.tasks {
                self.ensure_queue(job.spec.queue(t)).await?;
            }
            let saved = self.store.saved(&job)?;
            let Ok(dag) = validate(&job.spec) else {
                continue;
            };
            self.traces
                .job(job.id, &job.name, job.created_ms, &job.spec);
            self.driver.apply(
                now,
                Event::Submit {
                    job: job.id,
                    spec: Arc::new(job.spec),
                    dag: Arc::new(dag),
                    options: job.options,
                    saved: Some(saved),
                },
            );
        }
        for (seq, d) in self.store.outbox()? {
            self.publish(seq, d);
        }
        Ok(())
    }

    /// Commit, ack, reply, publish: one turn of the loop's write half. `force`: commit what
    /// waits even if nothing needs it yet (housekeeping, stopping).
    async fn turn(&mut self, force: bool) -> Result<(), Error> {
        // A reply must not go out before what its request changed is durable.
        let force = force || !self.replies.is_empty();
        let commit_started = Instant::now();
        let turn = self
            .driver
            .turn(&self.store, now_ms(), force, &mut self.sent)?;
        if turn.committed {
            if let Some(m) = &self.metrics {
                m.commit(commit_started.elapsed());
            }
            log_ignored(&turn.changes);
            self.traces.observe(&turn.changes);
            if let Some(m) = &mut self.metrics {
                m.observe(&turn.changes);
            }
        }
        // HA hook: a coordinator that lost its lease answers nothing more (it stops).
        if let Some(ha) = &self.opts.ha
            && !self.replies.is_empty()
            && !ha.holds()
        {
            return Err(Error::Nats("the lease is lost: not answering".into()));
        }
        // Events are acked only once everything applied is committed.
        if !self.acks.is_empty() && self.driver.settled() {
            if turn.committed {
                failpoint::hit(failpoint::AFTER_APPLY_BEFORE_ACK);
            }
            // A lost ack only means the event comes again, and fencing ignores it.
            for m in self.acks.drain(..) {
                let _ = m.ack().await;
            }
        }
        if self.driver.settled() {
            for (reply, body) in std::mem::take(&mut self.replies) {
                self.reply(reply, body).await;
            }
        }
        if !turn.dispatches.is_empty() {
            failpoint::hit(failpoint::AFTER_COMMIT_BEFORE_PUBLISH);
        }
        for (seq, d) in turn.outbox.into_iter().zip(turn.dispatches) {
            self.publish(seq, d);
        }
        for k in turn.kills {
            self.kill(k).await;
        }
        for req in turn.integrations {
            self.publish_integration(req);
        }
        Ok(())
    }

    /// Sends an API reply: inline, or, larger than one NATS message, through the object store
    /// by a task of its own (so the loop does not wait for the upload).
    async fn reply(&self, reply: async_nats::Subject, body: Vec<u8>) {
        if body.len() <= blobs::inline_limit(self.client.server_info().max_payload) {
            let _ = self.client.publish(reply, body.into()).await;
            return;
        }
        let (client, store) = (self.client.clone(), self.blobs.get().cloned());
        tokio::spawn(async move {
            let stored = match &store {
                Some(store) => blobs::put(store, &body, "an API reply")
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!(
                    "the object store bucket {} is not available",
                    names::BLOB_BUCKET
                )),
            };
            match stored {
                Ok(name) => {
                    let _ = client
                        .publish_with_headers(reply, blobs::headers(&name), bytes::Bytes::new())
                        .await;
                }
                Err(e) => {
                    let message = format!(
                        "a reply of {} bytes is larger than one NATS message: {e}",
                        body.len()
                    );
                    tracing::error!("{message}");
                    let err = ApiError::new(ErrorKind::Internal, message);
                    let body = serde_json::to_vec(&ApiReply::<()>::Error(err));
                    let _ = client.publish(reply, body.unwrap_or_default().into()).await;
                }
            }
        });
    }

    /// Sends a kill to every worker; a cancelled job's undelivered messages never run.
    async fn kill(&mut self, k: Kill) {
        if k.index.is_none() {
            let gone: Vec<_> = self
                .published
                .iter()
                .filter(|(key, _)| key.job == k.job)
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
                        let key = d.attempt_ref();
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

    /// Publishes an integration request in the background, retrying until JetStream stores
    /// it. Not kept in the outbox: a restarted coordinator queues an integrating task's
    /// integration again from its stored attempt (the same message id: a request still in
    /// the stream is de-duplicated, one already carried out merges as nothing new).
    fn publish_integration(&self, req: Integrate) {
        let bus = self.bus.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                match bus.publish_integration(&req).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(job = %req.job, task = %req.task, attempt = req.attempt.0, "publishing the integration: {e}; retrying")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    async fn input(&mut self, now: Millis, input: Input) {
        match input {
            Input::Events(events, msg) => {
                for ev in events {
                    if let WorkerEvent::Finished(r) = &ev {
                        self.published.remove(&r.attempt_ref());
                    }
                    self.driver.apply(now, engine_event(ev));
                }
                // Acked once the commit that applied all of them is durable.
                self.acks.push(*msg);
            }
            // Only `Started` comes as a core-NATS notice.
            Input::Started(ev @ WorkerEvent::Started { .. }) => {
                self.driver.apply(now, engine_event(ev))
            }
            Input::Started(_) => {}
            Input::Heartbeat(hb) => {
                let queues = hb.queues.clone();
                if let Err(why) = self.workers.heartbeat(hb) {
                    tracing::warn!("{why}");
                    return;
                }
                // Queues are valid: `Heartbeat::check` refused the heartbeat otherwise.
                for q in &queues {
                    if self.ensure_queue(q).await.is_err() {
                        tracing::error!(queue = %q, "cannot create the queue's consumer");
                    }
                }
            }
            Input::Exhausted { stream_seq } => {
                let found = self
                    .published
                    .iter()
                    .find(|(_, s)| **s == stream_seq)
                    .map(|(k, _)| *k);
                let key = match found {
                    Some(k) => Some(k),
                    None => match self.bus.task_at(stream_seq).await {
                        Some(TaskMessage::Run(d)) => Some(d.attempt_ref()),
                        Some(TaskMessage::Integrate(req)) => {
                            self.bus.delete_task(stream_seq).await;
                            let message = format!(
                                "the integration request was delivered {} times without a \
                                 result",
                                self.opts.delivery.max_deliver
                            );
                            self.driver.apply(
                                now,
                                Event::Integrated {
                                    job: req.job,
                                    index: req.index,
                                    attempt: req.attempt,
                                    outcome: Integration::Failed { message },
                                },
                            );
                            return;
                        }
                        None => None,
                    },
                };
                self.bus.delete_task(stream_seq).await;
                if let Some(key) = key {
                    self.published.remove(&key);
                    let reason = format!(
                        "delivered {} times without a result",
                        self.opts.delivery.max_deliver
                    );
                    self.driver.apply(
                        now,
                        Event::Lost {
                            job: key.job,
                            index: key.index,
                            attempt: key.attempt,
                            reason,
                        },
                    );
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
                    .driver
                    .engine()
                    .tasks(&key.job)
                    .and_then(|t| t.get(key.index.get()))
                    .and_then(TaskState::active_attempt)
                    == Some(key.attempt)
                {
                    self.published.insert(key, stream_seq);
                }
            }
            Input::Api {
                verb,
                name,
                body,
                reply,
            } => {
                let answer = self.api(now, verb, &name, &body).await;
                if let Some(reply) = reply {
                    self.replies.push((reply, answer));
                }
            }
        }
    }

    /// Capacity from live workers, per queue; dispatches nobody started are lost.
    fn housekeeping(&mut self, now: Millis) {
        self.workers.expire();
        let mut total_slots = 0;
        for q in self.queues.clone() {
            let capacity = self.workers.capacity(&q);
            total_slots += capacity.slots;
            self.driver
                .apply(now, Event::Capacity { queue: q, capacity });
        }
        if let Some(m) = &self.metrics {
            m.sample(self.driver.engine(), total_slots);
        }
        let deadline = self.opts.start_deadline.as_millis() as Millis;
        let engine = self.driver.engine();
        let mut lost = Vec::new();
        for job in engine.job_ids() {
            for (i, t) in engine.tasks(&job).into_iter().flatten().enumerate() {
                if let TaskState::Dispatched { attempt, at } = t
                    && now.saturating_sub(*at) > deadline
                {
                    lost.push((job, TaskIndex::from(i), *attempt));
                }
            }
        }
        for (job, index, attempt) in lost {
            let reason = format!("no worker started it within {}s", deadline / 1000);
            self.driver.apply(
                now,
                Event::Lost {
                    job,
                    index,
                    attempt,
                    reason,
                },
            );
        }
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

/// What a worker reported, as the engine's event.
fn engine_event(ev: WorkerEvent) -> Event {
    match ev {
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
        WorkerEvent::Finished(r) => Event::Finished(r),
        WorkerEvent::Integrated(r) => Event::Integrated {
            job: r.job,
            index: r.index,
            attempt: r.attempt,
            outcome: r.outcome,
        },
    }
}
