//! The coordinator service: a `Host` with the JetStream executor, reached through the NATS
//! API (`ordo.api.<verb>`).
//!
//! One loop owns the host (engine, commit rule, store). Inputs (API requests, worker events,
//! heartbeats, max-deliveries advisories, timers) arrive on one channel (`inputs`); each turn
//! drains everything queued, applies it, and then, in this order:
//! 1. commits the changes and the new dispatches (the outbox) in ONE redb transaction, and
//!    hands the executor what the commit allows: outbox entries are published
//!    (`Nats-Msg-Id = job.task.attempt`) and marked sent in the next commit, kills go out on
//!    core NATS, integrations of worktree tasks to the task's queue (`executor`);
//! 2. acks the worker events it applied (an event is acked only after its commit);
//! 3. answers API requests (the host's verbs, `host::api`).
//!
//! A crash anywhere replays safely: unacked events come back, unsent outbox entries are
//! published again on start and de-duplicated by JetStream.
//!
//! # Layout
//! - `inputs`: the forwarders from NATS to the loop's channel.
//! - `executor`: the JetStream executor: attempts, kills, integrations and prunes as NATS messages.
//! - `workers`: the worker registry and the capacity it offers per queue.

mod executor;
mod inputs;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ordo_plumbing::telemetry::Telemetry;
use ordo_plumbing::{blobs, failpoint};
use ordo_proto::api::{self, ApiError, ApiReply, ErrorKind};
use ordo_proto::wire::{Integration, WorkerEvent};
use ordo_proto::{Millis, names, now_ms};
use tokio::sync::mpsc;

use crate::bus::{Bus, Delivery, TaskMessage};
use crate::driver::{self, Policy};
use crate::engine::{Event, TaskState};
use crate::host::{self, Host, Limits, Recover, api::ReplyLimit};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::traces::Traces;
use executor::JetStream;
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
    #[error("{0}")]
    Metrics(String),
    #[error("{0}")]
    Lease(String),
}

struct Service {
    client: async_nats::Client,
    /// The object store bucket of API bodies larger than one NATS message, once created.
    blobs: Blobs,
    host: Host<JetStream>,
    opts: Options,
    /// Applied worker events, acked once what they changed is committed.
    acks: Vec<jetstream::Message>,
    /// API replies, sent after the commit of what their request changed.
    replies: Vec<(async_nats::Subject, Vec<u8>)>,
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

/// The runtime `ordo-coordinator` runs on: one thread, for one loop that also commits (redb
/// is synchronous, and nothing can proceed before a commit is durable); fewer wake-ups of other
/// threads per task than a multi-threaded runtime (bench/distributed).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    ordo_plumbing::one_thread_runtime("coord-blocking")
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
    let executor = JetStream::new(
        client.clone(),
        Arc::new(bus),
        tx.clone(),
        Registry::new(opts.worker_timeout, opts.prefetch),
    );
    let limits = Limits {
        max_tasks: opts.max_tasks,
    };
    let traces = Traces::new(opts.telemetry.clone());
    let mut host =
        Host::new(Arc::new(store), Policy::COORDINATOR, executor, traces).with_limits(limits);
    if let Some(addr) = opts.metrics_addr {
        let (metrics, registry) = Metrics::new();
        let bound = ordo_plumbing::telemetry::serve_metrics(addr, Arc::new(registry))
            .await
            .map_err(|e| Error::Metrics(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!(addr = %bound, "metrics at /metrics");
        host = host.with_metrics(metrics);
    } else if let Some(ha) = &opts.ha {
        // HA hook: the HA thread serves the metrics (standby or active).
        let (metrics, registry) = Metrics::new();
        ha.metrics(registry);
        host = host.with_metrics(metrics);
    }
    let mut svc = Service {
        client: client.clone(),
        blobs: blobs.clone(),
        host,
        opts,
        acks: Vec::new(),
        replies: Vec::new(),
    };
    svc.host
        .executor_mut()
        .ensure_queue(names::DEFAULT_QUEUE)
        .await?;
    svc.host.recover(now_ms(), Recover::All).await?;

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
    let events = svc.host.executor().bus.events().await?;
    tasks.push(tokio::spawn(inputs::forward_events(events, tx.clone())));

    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    svc.turn(true).await?;
    let delivered = svc.host.notify_waker();
    loop {
        let wake = svc.host.next_wakeup(now_ms());
        let (first, tick) = tokio::select! {
            _ = &mut shutdown => break,
            i = rx.recv() => match i { Some(i) => (Some(i), false), None => break },
            _ = housekeeping.tick() => (None, true),
            _ = delivered.notified() => (None, false),
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
        svc.host.apply(now, Event::Tick);
        svc.turn(tick).await?;
    }
    // What was deferred is committed before leaving.
    svc.turn(true).await?;
    if let Some(tel) = svc.host.traces().telemetry().cloned() {
        let _ = tokio::task::spawn_blocking(move || tel.flush()).await;
    }
    for t in tasks {
        t.abort();
    }
    let _ = client.flush().await;
    Ok(())
}

impl Service {
    /// Commit, ack, reply, publish: one turn of the loop's write half. `force`: commit what
    /// waits even if nothing needs it yet (housekeeping, stopping).
    async fn turn(&mut self, force: bool) -> Result<(), Error> {
        // A reply must not go out before what its request changed is durable.
        let force = force || !self.replies.is_empty();
        let committed = self.host.turn(now_ms(), force).await?;
        // HA hook: a coordinator that lost its lease answers nothing more (it stops).
        if let Some(ha) = &self.opts.ha
            && !self.replies.is_empty()
            && !ha.holds()
        {
            return Err(Error::Lease("the lease is lost: not answering".into()));
        }
        // Events are acked only once everything applied is committed.
        if !self.acks.is_empty() && self.host.settled() {
            if committed {
                failpoint::hit(failpoint::AFTER_APPLY_BEFORE_ACK);
            }
            // A lost ack only means the event comes again, and fencing ignores it.
            for m in self.acks.drain(..) {
                let _ = m.ack().await;
            }
        }
        if self.host.settled() {
            for (reply, body) in std::mem::take(&mut self.replies) {
                self.reply(reply, body).await;
            }
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

    async fn input(&mut self, now: Millis, input: Input) {
        match input {
            Input::Events(events, msg) => {
                for ev in events {
                    if let WorkerEvent::Finished(r) = &ev {
                        self.host.executor_mut().finished(r);
                    }
                    self.host.apply(now, engine_event(ev));
                }
                // Acked once the commit that applied all of them is durable.
                self.acks.push(*msg);
            }
            // Only `Started` comes as a core-NATS notice.
            Input::Started(ev @ WorkerEvent::Started { .. }) => {
                self.host.apply(now, engine_event(ev))
            }
            Input::Started(_) => {}
            Input::Heartbeat(hb) => {
                let queues = hb.queues.clone();
                let js = self.host.executor_mut();
                if let Err(why) = js.workers.heartbeat(hb) {
                    tracing::warn!("{why}");
                    return;
                }
                // Queues are valid: `Heartbeat::check` refused the heartbeat otherwise.
                for q in &queues {
                    if js.ensure_queue(q).await.is_err() {
                        tracing::error!(queue = %q, "cannot create the queue's consumer");
                    }
                }
            }
            Input::Exhausted { stream_seq } => self.exhausted(now, stream_seq).await,
            Input::Published {
                outbox_seq,
                key,
                stream_seq,
            } => {
                failpoint::hit(failpoint::AFTER_PUBLISH_BEFORE_SENT);
                self.host.sent(outbox_seq);
                // A result may already have come back; then the message is gone anyway.
                if self
                    .host
                    .engine()
                    .tasks(&key.job)
                    .and_then(|t| t.get(key.index.get()))
                    .and_then(TaskState::active_attempt)
                    == Some(key.attempt)
                {
                    self.host.executor_mut().published.insert(key, stream_seq);
                }
            }
            Input::Api { name, body, reply } => {
                let limit = ReplyLimit(api::MAX_LARGE_REPLY_BYTES);
                let answer = host::api::handle(&mut self.host, now, &name, &body, limit).await;
                if let Some(reply) = reply {
                    self.replies.push((reply, answer));
                }
            }
        }
    }

    /// A task message ran out of deliveries: its attempt (or integration) is lost.
    async fn exhausted(&mut self, now: Millis, stream_seq: u64) {
        let max_deliver = self.opts.delivery.max_deliver;
        let js = self.host.executor_mut();
        let found = js
            .published
            .iter()
            .find(|(_, s)| **s == stream_seq)
            .map(|(k, _)| *k);
        let key = match found {
            Some(k) => Some(k),
            None => match js.bus.task_at(stream_seq).await {
                Some(TaskMessage::Run(d)) => Some(d.attempt_ref()),
                Some(TaskMessage::Integrate(req)) => {
                    js.bus.delete_task(stream_seq).await;
                    let message = format!(
                        "the integration request was delivered {max_deliver} times without a \
                         result"
                    );
                    self.host.apply(
                        now,
                        Event::Integrated {
                            job: req.job,
                            index: req.index,
                            attempt: req.attempt,
                            outcome: Integration::Failed { message },
                            batch: Vec::new(),
                            step: req.step,
                            stacked: req.stacked(),
                        },
                    );
                    return;
                }
                None => None,
            },
        };
        js.bus.delete_task(stream_seq).await;
        if let Some(key) = key {
            js.forget(&key);
            let reason = format!("delivered {max_deliver} times without a result");
            self.host.apply(
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

    /// Capacity from live workers, per queue; dispatches nobody started are lost.
    fn housekeeping(&mut self, now: Millis) {
        let total_slots = self.host.refresh_capacity(now);
        if let Some(m) = self.host.metrics() {
            m.sample(self.host.engine(), total_slots);
        }
        let deadline = self.opts.start_deadline.as_millis() as Millis;
        for lost in host::unstarted(self.host.engine(), now, deadline) {
            self.host.apply(now, lost);
        }
        // An attempt may end without a result (lost, requeued, its job gone): only those the
        // engine still has in flight count as handed over.
        let (engine, js) = self.host.engine_and_executor();
        js.keep_handed(|key| {
            engine
                .tasks(&key.job)
                .and_then(|t| t.get(key.index.get()))
                .and_then(TaskState::active_attempt)
                == Some(key.attempt)
        });
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
            batch: r.batch,
            step: r.step,
            stacked: r.stacked,
        },
    }
}
