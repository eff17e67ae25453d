//! The worker daemon behind `ordo-worker`: pulls task messages from the durable consumers of
//! its queues, runs them with `exec`, and publishes what happened. Keeps nothing: killing a
//! worker loses only the attempt in flight, which JetStream delivers again.
//!
//! Pulls ask for exactly the free slots, through one inbox. While this worker's runs are quick
//! (`names::QUICK_RUN_MS`) and none of those running has run that long yet, they ask for one
//! task more (`HOLD_TASKS`, in asks that expire as fast), held until a slot frees, so a slot
//! does not sit idle for a pull's round trip between two quick tasks (`Pace`). The moment a
//! running one has run that long, a held task goes back for another worker (a delivery spent,
//! while enough are left), and none is held again until a run ends.
//!
//! Per task message: run it, renewing the lease with in-progress acks (and telling `Started` if
//! it runs longer than a moment); stream output to `ordo.log.<job>.<task>`; publish `Finished`
//! and await its JetStream ack (`report`: results that queue meanwhile go together); only then
//! ack the task message. A worker that cannot renew its lease for a whole ack-wait kills its
//! task rather than let two copies run for long, and reports it as abandoned (the coordinator
//! records that as stale: the message is delivered again). On SIGTERM it drains: no new pulls,
//! running tasks get a grace period, the rest (held tasks too) are handed back (nak) for another
//! worker.
//!
//! A worktree task whose workspace this worker cannot prepare (its cache clone, fetch or
//! worktree) never ran: the message is handed back with a delay, costing a delivery and no
//! attempt, and the worker pauses its pulls so that another worker takes it. After
//! `workspace::PREPARE_TRIES` such failures in a row (the policy the local runner follows too,
//! see `workspace::attempt`) it hands worktree tasks back unopened for `REFUSE_FOR`, and says
//! why in its log and heartbeat (`ordo workers`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::StatusCode;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use ordo_proto::names;
use ordo_proto::wire::{
    self, Dispatch, Heartbeat, Integrate, IntegrationResult, Kill, Outcome, TaskResult, WorkerEvent,
};
use ordo_proto::{AttemptRef, JobId, WorkerId, now_ms};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::exec::{self, ExecOptions, OutputChunk};
use crate::report::Reporter;
use crate::workspace::{self, Caches, PREPARE_TRIES};

#[derive(Clone, Debug)]
pub struct Options {
    pub id: WorkerId,
    pub host: String,
    pub queues: Vec<String>,
    pub slots: u32,
    pub cpus: f64,
    pub memory_mb: u64,
    /// How long running tasks may finish after SIGTERM before they are handed back.
    pub drain_grace: Duration,
    pub heartbeat: Duration,
    /// OTLP traces, when an exporter is configured.
    pub telemetry: Option<Arc<ordo_plumbing::telemetry::Telemetry>>,
    /// Prometheus metrics, when served.
    pub metrics: Option<crate::metrics::Metrics>,
    /// Token of the worker's guard process (see `guard`), given to every task process.
    pub guard_token: Option<String>,
    /// Where the cache clones of worktree jobs' repositories live (`workspace::cache`).
    pub workspaces: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// How an attempt's cancel was requested.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    /// The coordinator killed it (cancel, fail-fast): report `Cancelled`.
    Killed,
    /// The worker drains: hand the message back, report nothing.
    HandBack,
    /// The lease is gone (no renewal for a whole ack wait): the message is no longer ours.
    LeaseLost,
}

/// How long a worker that keeps failing to prepare workspaces hands worktree tasks back.
const REFUSE_FOR: Duration = Duration::from_secs(60);
/// A task handed back unprepared is delivered again after this long, and the worker that
/// handed it back asks for nothing for `PULL_PAUSE`, so that another worker's ask gets it.
const PREPARE_RETRY_DELAY: Duration = Duration::from_secs(1);
const PULL_PAUSE: Duration = Duration::from_millis(1500);

/// Whether this worker can prepare workspaces: its failures in a row, and until when it
/// refuses worktree tasks.
#[derive(Default)]
struct Preparing {
    failures: u32,
    refusing_until: Option<Instant>,
    /// Why it refuses (the last error), for the heartbeat.
    note: Option<String>,
}

/// Most tasks a worker holds beyond its free slots while its runs are quick (never more than its
/// slots). Three kept 4 slots of `true` fuller and asked in fewer requests while spawns held
/// the worker's thread, and were no faster once they did not (docs/design.md, "Where a task's
/// time goes"); one keeps fewer tasks away from other workers.
const HOLD_TASKS: usize = 1;

/// How long an ask for a task to hold waits for one: no longer than a run may take before a
/// held task goes back, so that no ask outlives the reason it was made.
const HOLD_ASK_EXPIRES: Duration = Duration::from_millis(names::QUICK_RUN_MS);

/// A held task that could not go back without leaving fewer than two deliveries (`max_deliver`)
/// waits up to this long (or a third of the ack wait) for a slot before it goes back anyway.
const HOLD_AT_MOST: Duration = Duration::from_secs(1);

/// This worker's pace: whether it holds tasks beyond its free slots (module docs).
#[derive(Default)]
struct Pace(std::sync::Mutex<PaceNow>);

#[derive(Default)]
struct PaceNow {
    /// The moving average of its run durations in milliseconds, once one ended.
    avg_ms: Option<u64>,
    /// A held task went back since the last run ended: none is held until one ends.
    held_back: bool,
    /// When each slot in use was taken.
    running: Vec<Instant>,
}

impl Pace {
    /// A slot was taken at `at`.
    fn took(&self, at: Instant) {
        self.0.lock().unwrap().running.push(at);
    }

    /// The slot taken at `at` is free again.
    fn freed(&self, at: Instant) {
        let mut now = self.0.lock().unwrap();
        if let Some(i) = now.running.iter().position(|t| *t == at) {
            now.running.swap_remove(i);
        }
    }

    /// A run of `ms` ended.
    fn ran(&self, ms: u64) {
        let mut now = self.0.lock().unwrap();
        now.avg_ms = Some(names::pace_after(now.avg_ms, ms));
        now.held_back = false;
    }

    /// A held task went back: none is held until a run ends.
    fn went_back(&self) {
        self.0.lock().unwrap().held_back = true;
    }

    /// When one of the slots in use will have run long (`names::QUICK_RUN_MS`): a held task
    /// goes back then. `None` while no slot is in use.
    fn long_at(&self) -> Option<Instant> {
        self.0.lock().unwrap().long_at()
    }

    /// Whether to hold a task beyond the free slots at `now`: something runs, the recent runs
    /// are quick, none running has run long, and no held task went back since the last run
    /// ended. (An idle worker holds nothing: its asks would expire and be made again.)
    fn holds(&self, now: Instant) -> bool {
        let p = self.0.lock().unwrap();
        p.avg_ms.is_some_and(|ms| ms < names::QUICK_RUN_MS)
            && !p.held_back
            && p.long_at().is_some_and(|long| now < long)
    }
}

impl PaceNow {
    fn long_at(&self) -> Option<Instant> {
        let quick = Duration::from_millis(names::QUICK_RUN_MS);
        self.running.iter().min().map(|t| *t + quick)
    }
}

/// A first delivery's `Started` notice waits this long: a task that ends sooner is told by its
/// result alone.
const STARTED_NOTICE_AFTER: Duration = Duration::from_millis(50);

type Running = HashMap<AttemptRef, oneshot::Sender<Stop>>;

struct Shared {
    opts: Options,
    js: jetstream::Context,
    client: async_nats::Client,
    running: Mutex<Running>,
    /// Jobs killed recently: their tasks are never started.
    killed_jobs: Mutex<HashMap<JobId, Instant>>,
    /// Slots whose task processes are running.
    busy: AtomicU32,
    /// Executions whose result is not yet stored and acked (a slot is free before that).
    unreported: AtomicU32,
    /// CPU and memory in use, in thousandths of a CPU and MB.
    used_millicpus: AtomicU32,
    used_memory: AtomicU32,
    slot_freed: Notify,
    pace: Pace,
    draining: AtomicBool,
    caches: Caches,
    reporter: Reporter,
    preparing: std::sync::Mutex<Preparing>,
    /// No pull is asked for before this instant (see `PULL_PAUSE`).
    pulls_paused_until: std::sync::Mutex<Option<Instant>>,
}

/// The runtime `ordo-worker` runs on: one thread. A worker mostly waits (on processes, pipes
/// and NATS); on one thread each hand-off is a function call rather than a wake-up of another
/// thread, which leaves more of the cores to the tasks (bench/distributed). What would hold
/// that thread (spawning a process, reading `/proc`) runs on its blocking threads, named
/// `BLOCKING_THREADS`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    ordo_plumbing::one_thread_runtime(BLOCKING_THREADS)
}

/// The name of the worker's threads for blocking calls (bench/distributed counts their CPU as
/// the worker's).
pub const BLOCKING_THREADS: &str = "worker-blocking";

/// Runs until `shutdown` resolves, then drains.
pub async fn run(
    client: async_nats::Client,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let js = jetstream::new(client.clone());
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        js: js.clone(),
        client: client.clone(),
        running: Mutex::new(HashMap::new()),
        killed_jobs: Mutex::new(HashMap::new()),
        busy: AtomicU32::new(0),
        unreported: AtomicU32::new(0),
        used_millicpus: AtomicU32::new(0),
        used_memory: AtomicU32::new(0),
        slot_freed: Notify::new(),
        pace: Pace::default(),
        draining: AtomicBool::new(false),
        caches: Caches::new(opts.workspaces.clone()),
        reporter: Reporter::start(js.clone(), opts.id.clone()),
        preparing: std::sync::Mutex::new(Preparing::default()),
        pulls_paused_until: std::sync::Mutex::new(None),
    });

    let heartbeats = tokio::spawn(heartbeat_loop(shared.clone()));
    let kills = tokio::spawn(kill_loop(shared.clone()));
    let prunes = tokio::spawn(prune_loop(shared.clone()));
    let pulls = tokio::spawn(pull_loop(shared.clone()));

    shutdown.await;
    tracing::info!(worker = %opts.id, "draining");
    shared.draining.store(true, Ordering::SeqCst);
    // Wakes the pull loop, which stops asking and hands back what its last asks bring.
    shared.slot_freed.notify_one();
    publish_heartbeat(&shared).await;
    let deadline = Instant::now() + opts.drain_grace;
    while shared.in_hand() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Hand back whatever is still running.
    for (_, stop) in shared.running.lock().await.drain() {
        let _ = stop.send(Stop::HandBack);
    }
    let handback_deadline = Instant::now() + Duration::from_secs(10);
    while shared.in_hand() && Instant::now() < handback_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    heartbeats.abort();
    kills.abort();
    prunes.abort();
    pulls.abort();
    let _ = shared.client.flush().await;
    tracing::info!(worker = %opts.id, "stopped");
    Ok(())
}

async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.opts.heartbeat);
    loop {
        tick.tick().await;
        publish_heartbeat(&shared).await;
    }
}

async fn publish_heartbeat(shared: &Shared) {
    let hb = Heartbeat {
        worker: shared.opts.id.clone(),
        host: shared.opts.host.clone(),
        queues: shared.opts.queues.clone(),
        slots: shared.opts.slots,
        busy: shared.busy.load(Ordering::SeqCst),
        cpus: shared.opts.cpus,
        memory_mb: shared.opts.memory_mb,
        draining: shared.draining.load(Ordering::SeqCst),
        at_ms: now_ms(),
        note: shared.refusing_worktrees(),
    };
    let subject = names::heartbeat_subject(&shared.opts.id);
    let _ = shared
        .client
        .publish(subject, wire::encode(&hb).into())
        .await;
}

async fn kill_loop(shared: Arc<Shared>) {
    loop {
        let mut sub = match shared.client.subscribe(names::CONTROL_KILL).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(msg) = sub.next().await {
            let Ok(kill) = wire::decode::<Kill>(&msg.payload) else {
                tracing::warn!("ignoring an undecodable kill message");
                continue;
            };
            if kill.index.is_none() {
                let mut killed = shared.killed_jobs.lock().await;
                killed.retain(|_, at| at.elapsed() < Duration::from_secs(3600));
                killed.insert(kill.job, Instant::now());
            }
            let mut running = shared.running.lock().await;
            let keys: Vec<_> = running
                .keys()
                .filter(|key| {
                    key.job == kill.job
                        && kill.index.is_none_or(|i| i == key.index)
                        && kill.attempt.is_none_or(|a| a == key.attempt)
                })
                .copied()
                .collect();
            for k in keys {
                if let Some(stop) = running.remove(&k) {
                    let _ = stop.send(Stop::Killed);
                }
            }
        }
    }
}

/// Removes what a job's attempts kept on `ordo.control.prune` (`Caches::prune_job`), one
/// request at a time.
async fn prune_loop(shared: Arc<Shared>) {
    loop {
        let mut sub = match shared.client.subscribe(names::CONTROL_PRUNE).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(msg) = sub.next().await {
            let Ok(prune) = wire::decode::<wire::Prune>(&msg.payload) else {
                tracing::warn!("ignoring an undecodable prune message");
                continue;
            };
            tracing::info!(job = %prune.job, repository = %prune.repository, "removing what the job's attempts kept");
            shared.caches.prune_job(&prune.repository, &prune.job).await;
        }
    }
}

/// Waits for each queue's durable consumer (the coordinator creates them).
async fn consumers(shared: &Shared) -> Vec<(String, PullConsumer, Duration)> {
    let mut out = Vec::new();
    for q in &shared.opts.queues {
        loop {
            let found = match shared.js.get_stream(names::TASK_STREAM).await {
                Ok(stream) => stream
                    .get_consumer::<jetstream::consumer::pull::Config>(&names::queue_consumer(q))
                    .await
                    .ok(),
                Err(_) => None,
            };
            if let Some(c) = found {
                let ack_wait = c.cached_info().config.ack_wait;
                out.push((q.clone(), c, ack_wait));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    out
}

/// How long a pull request waits for messages before the worker asks again. Short, because a
/// worker that froze (SIGSTOP, a partition) keeps its connection, and JetStream hands what it
/// redelivers to a live ask first: an ask outliving the freeze would swallow the redelivery for
/// another whole ack wait. With several queues it is shorter still, so an empty queue does not
/// hold the free slots away from the others.
fn pull_expiry(queues: usize) -> Duration {
    if queues > 1 {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    }
}

/// Asks for exactly as many task messages as slots are free and not yet asked for, through one
/// inbox subscribed once: a message is never held by a worker that cannot start it, and a pull
/// costs one request (no subscription per pull). Requests rotate over the queues' consumers.
async fn pull_loop(shared: Arc<Shared>) {
    let consumers = consumers(&shared).await;
    let inbox = async_nats::Subject::from(shared.client.new_inbox());
    let mut sub = loop {
        match shared.client.subscribe(inbox.clone()).await {
            Ok(sub) => break sub,
            Err(e) => {
                tracing::warn!("cannot subscribe to the pull inbox: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let expiry = pull_expiry(consumers.len());
    let slots = shared.opts.slots as usize;
    // Messages asked for and neither received nor expired, and when the last ask expires (a
    // server restart forgets requests without answering them).
    let mut asked = 0usize;
    let mut asked_until = Instant::now();
    let mut turn = 0usize;
    loop {
        if asked > 0 && Instant::now() > asked_until {
            asked = 0;
        }
        let draining = shared.draining.load(Ordering::SeqCst);
        if draining && asked == 0 {
            let _ = sub.unsubscribe().await;
            return;
        }
        let hold = if shared.pace.holds(Instant::now()) {
            HOLD_TASKS.min(slots)
        } else {
            0
        };
        let ask = ask_for(
            slots,
            shared.busy.load(Ordering::SeqCst) as usize,
            asked,
            hold,
        );
        let paused = shared.pulls_paused();
        if let Some((want, to_hold)) = ask.filter(|_| !draining && paused.is_none()) {
            let (queue, consumer, _) = &consumers[turn % consumers.len()];
            turn += 1;
            let expires = if to_hold { HOLD_ASK_EXPIRES } else { expiry };
            let request = jetstream::consumer::pull::BatchConfig {
                batch: want,
                expires: Some(expires),
                ..Default::default()
            };
            match consumer.request_batch(request, inbox.clone()).await {
                Ok(()) => {
                    asked += want;
                    asked_until = Instant::now() + expires + Duration::from_millis(500);
                }
                Err(e) => {
                    tracing::warn!(queue = %queue, "pull failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = shared.slot_freed.notified() => continue,
            _ = tokio::time::sleep_until(asked_until.into()), if asked > 0 => continue,
            _ = tokio::time::sleep_until(paused.unwrap_or(asked_until).into()), if paused.is_some() => continue,
        };
        let Some(msg) = msg else {
            tracing::warn!("the pull inbox closed; subscribing again");
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(s) = shared.client.subscribe(inbox.clone()).await {
                sub = s;
            }
            asked = 0;
            continue;
        };
        match msg.status {
            None | Some(StatusCode::OK) => {
                let msg = jetstream::Message {
                    message: msg,
                    context: shared.js.clone(),
                };
                // Only what JetStream delivered from a queue this worker serves is ever run or
                // acked: a consumer of another stream can be told to deliver into this inbox.
                if let Err(why) = from_served_queue(&msg, &consumers) {
                    tracing::warn!(subject = %msg.subject, "ignoring a message on the task inbox: {why}");
                    continue;
                }
                asked = asked.saturating_sub(1);
                if draining {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    continue;
                }
                let served = msg.info().ok().and_then(|i| {
                    consumers
                        .iter()
                        .find(|(_, c, _)| c.cached_info().name == i.consumer)
                });
                let ack_wait = served.map_or(Duration::from_secs(30), |(_, _, w)| *w);
                let max_deliver = served.map_or(-1, |(_, c, _)| c.cached_info().config.max_deliver);
                // A task asked for beyond the free slots waits here for one; the next ask
                // waits with it.
                if !shared.slot_for_held(&msg, ack_wait, max_deliver).await {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    continue;
                }
                accept(&shared, msg, ack_wait).await;
            }
            // A request expired or ended: what it still wanted will not come.
            Some(StatusCode::TIMEOUT) | Some(StatusCode::REQUEST_TERMINATED) => {
                let left = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse::<usize>().ok());
                match left {
                    Some(n) => asked = asked.saturating_sub(n),
                    // A bare status (consumer deleted, request limits): start over.
                    None => {
                        tracing::debug!(status = ?msg.status, description = ?msg.description, "pull ended");
                        asked = 0;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Some(status) => {
                tracing::debug!(?status, description = ?msg.description, "pull status");
            }
        }
    }
}

/// What to ask for with `busy` of `slots` taken and `asked` asked for and not yet come: the free
/// slots and `hold` tasks more (`HOLD_TASKS` while `Pace::holds`, else none), less what was
/// asked for; an ask that includes tasks to hold expires soon (`HOLD_ASK_EXPIRES`, marked
/// `true`). A held task the pull loop waits with counts as come: it takes the next free slot.
fn ask_for(slots: usize, busy: usize, asked: usize, hold: usize) -> Option<(usize, bool)> {
    let want = slots.saturating_sub(busy) + hold;
    (want > asked).then(|| (want - asked, hold > 0))
}

/// Whether `msg` is one JetStream delivered from `ORDO_TASKS` through the consumer of a queue
/// this worker serves (its reply subject, `$JS.ACK.<stream>.<consumer>...`, says so; nobody but
/// the server may publish into a worker's inbox, so it cannot be forged).
fn from_served_queue(
    msg: &jetstream::Message,
    consumers: &[(String, PullConsumer, Duration)],
) -> Result<(), String> {
    let info = msg
        .info()
        .map_err(|e| format!("not delivered by JetStream ({e})"))?;
    if info.stream != names::TASK_STREAM {
        return Err(format!(
            "delivered from stream {}, not {}",
            info.stream,
            names::TASK_STREAM
        ));
    }
    if !consumers
        .iter()
        .any(|(_, c, _)| c.cached_info().name == info.consumer)
    {
        return Err(format!(
            "delivered through consumer {}, of no queue this worker serves",
            info.consumer
        ));
    }
    Ok(())
}

/// Takes one task message: decodes it, checks it fits, and starts it.
async fn accept(shared: &Arc<Shared>, msg: jetstream::Message, ack_wait: Duration) {
    let kind = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(names::HEADER_KIND))
        .map(|v| v.as_str().to_string());
    if kind.as_deref() == Some(names::KIND_INTEGRATE) {
        return accept_integration(shared, msg, ack_wait).await;
    }
    let dispatch: Dispatch = match wire::decode(&msg.payload) {
        Ok(d) => d,
        Err(e) => {
            // Redelivering a message nobody can read would loop forever: terminate it.
            tracing::error!("terminating undecodable task message: {e}");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let delivery = msg
        .info()
        .map_or(0, |i| u32::try_from(i.delivered).unwrap_or(u32::MAX));
    if dispatch.workspace.is_some()
        && let Some(why) = shared.refusing_worktrees()
    {
        tracing::debug!(job = %dispatch.job, task = %dispatch.task, "{why}; handing the task back");
        shared.hand_back_unprepared(&msg).await;
        return;
    }
    if shared.killed_jobs.lock().await.contains_key(&dispatch.job) {
        let mut result = not_run(shared, &dispatch, Outcome::Cancelled, "job was cancelled");
        result.delivery = delivery;
        if shared.reporter.report(WorkerEvent::Finished(result)).await {
            let _ = msg.ack_with(AckKind::Term).await;
        }
        return;
    }
    let need_cpu = (dispatch.cpus * 1000.0) as u32;
    let need_mem = dispatch.memory_mb.min(u32::MAX as u64) as u32;
    let cap_cpu = (shared.opts.cpus * 1000.0) as u32;
    let used_cpu = shared.used_millicpus.load(Ordering::SeqCst);
    let used_mem = shared.used_memory.load(Ordering::SeqCst) as u64;
    let full = shared.busy.load(Ordering::SeqCst) >= shared.opts.slots;
    if full || used_cpu + need_cpu > cap_cpu || used_mem + need_mem as u64 > shared.opts.memory_mb {
        // Does not fit here now: let another worker (or this one, later) take it.
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
            .await;
        return;
    }
    let slot = Slot::take(shared, need_cpu, need_mem);
    shared.unreported.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    tokio::spawn(async move {
        execute(&shared, msg, dispatch, delivery, ack_wait, slot).await;
        shared.unreported.fetch_sub(1, Ordering::SeqCst);
    });
}

impl Shared {
    /// Waits until a slot is free for a task just delivered: true at once when one is. False
    /// (the task goes back, and none is held again before a run ends) if the worker drains, or
    /// once a slot in use has run long (`Pace::long_at`); a task whose going back would leave
    /// it fewer than two of its `max_deliver` deliveries waits up to `HOLD_AT_MOST` instead.
    async fn slot_for_held(
        &self,
        msg: &jetstream::Message,
        ack_wait: Duration,
        max_deliver: i64,
    ) -> bool {
        let delivered = msg.info().map_or(1, |i| i.delivered);
        let may_go_back = max_deliver <= 0 || delivered + 2 <= max_deliver;
        let at_most = Instant::now() + HOLD_AT_MOST.min(ack_wait / 3);
        let mut held = false;
        loop {
            if self.draining.load(Ordering::SeqCst) {
                return false;
            }
            if self.busy.load(Ordering::SeqCst) < self.opts.slots {
                return true;
            }
            if !held {
                held = true;
                ordo_plumbing::failpoint::hit(ordo_plumbing::failpoint::HOLDING_A_TASK);
            }
            let until = match self.pace.long_at() {
                Some(long) if may_go_back => long,
                _ => at_most,
            };
            // `notify_one` keeps a permit when nobody waits: a slot freed since the check
            // is not missed.
            let freed = self.slot_freed.notified();
            if tokio::time::timeout_at(until.into(), freed).await.is_err()
                && (!may_go_back || self.pace.long_at().is_some_and(|l| l <= Instant::now()))
            {
                self.pace.went_back();
                return false;
            }
        }
    }

    /// Whether any execution is running or not yet reported.
    fn in_hand(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0 || self.unreported.load(Ordering::SeqCst) > 0
    }

    /// Until when pulls are paused, if they are.
    fn pulls_paused(&self) -> Option<Instant> {
        let until = *self.pulls_paused_until.lock().unwrap();
        until.filter(|u| *u > Instant::now())
    }

    /// Hands a task message back unrun (its workspace cannot be prepared here): delivered
    /// again after `PREPARE_RETRY_DELAY`, meanwhile this worker asks for nothing.
    async fn hand_back_unprepared(&self, msg: &jetstream::Message) {
        *self.pulls_paused_until.lock().unwrap() = Some(Instant::now() + PULL_PAUSE);
        let _ = msg.ack_with(AckKind::Nak(Some(PREPARE_RETRY_DELAY))).await;
    }

    /// Why this worker takes no worktree tasks now, if it does not.
    fn refusing_worktrees(&self) -> Option<String> {
        let p = self.preparing.lock().unwrap();
        p.refusing_until
            .filter(|until| *until > Instant::now())
            .and(p.note.clone())
    }

    /// Counts a preparation that succeeded (`None`) or failed (why); past `PREPARE_TRIES`
    /// failures in a row the worker refuses worktree tasks for `REFUSE_FOR`.
    fn prepared(&self, failure: Option<&str>) {
        let mut p = self.preparing.lock().unwrap();
        let Some(why) = failure else {
            if p.refusing_until.take().is_some() {
                tracing::info!("workspaces can be prepared again; taking worktree tasks");
            }
            *p = Preparing::default();
            return;
        };
        p.failures = p.failures.saturating_add(1);
        if p.failures >= PREPARE_TRIES {
            let note = format!(
                "takes no worktree tasks for {}s: cannot prepare a workspace ({} times in a \
                 row): {why}",
                REFUSE_FOR.as_secs(),
                p.failures
            );
            tracing::error!(worker = %self.opts.id, "{note}");
            p.refusing_until = Some(Instant::now() + REFUSE_FOR);
            p.note = Some(note);
        }
    }
}

/// A slot and the CPUs and memory one execution reserved, given back when dropped: `execute`
/// drops it as soon as the task's processes are gone, so the next task starts while the result
/// is being stored.
struct Slot {
    shared: Arc<Shared>,
    millicpus: u32,
    memory: u32,
    taken: Instant,
}

impl Slot {
    fn take(shared: &Arc<Shared>, millicpus: u32, memory: u32) -> Slot {
        let busy = shared.busy.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(m) = &shared.opts.metrics {
            m.busy_slots.set(busy as i64);
        }
        shared.used_millicpus.fetch_add(millicpus, Ordering::SeqCst);
        shared.used_memory.fetch_add(memory, Ordering::SeqCst);
        let taken = Instant::now();
        shared.pace.took(taken);
        Slot {
            shared: shared.clone(),
            millicpus,
            memory,
            taken,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let shared = &self.shared;
        let busy = shared.busy.fetch_sub(1, Ordering::SeqCst) - 1;
        if let Some(m) = &shared.opts.metrics {
            m.busy_slots.set(busy as i64);
        }
        shared
            .used_millicpus
            .fetch_sub(self.millicpus, Ordering::SeqCst);
        shared.used_memory.fetch_sub(self.memory, Ordering::SeqCst);
        shared.pace.freed(self.taken);
        shared.slot_freed.notify_one();
    }
}

fn not_run(shared: &Shared, d: &Dispatch, outcome: Outcome, why: &str) -> TaskResult {
    TaskResult::new(d, shared.opts.id.clone(), outcome, now_ms(), why)
}

async fn execute(
    shared: &Arc<Shared>,
    msg: jetstream::Message,
    d: Dispatch,
    delivery: u32,
    ack_wait: Duration,
    slot: Slot,
) {
    let key = d.attempt_ref();
    let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
    shared.running.lock().await.insert(key, stop_tx);
    let msg = Arc::new(msg);
    let ack_wait = ack_wait.max(Duration::from_millis(300));
    let (lease, lease_lost_rx) = hold_lease(msg.clone(), shared.client.clone(), ack_wait);

    // Output streams to the job's log subject as it arrives.
    let (out_tx, mut out_rx) = mpsc::channel::<OutputChunk>(64);
    let logger = {
        let client = shared.client.clone();
        let subject = names::log_subject(&d.job, d.index);
        let attempt = d.attempt.to_string();
        // `ordo logs` shows an agent's result text instead of the JSON it prints.
        let agent = d
            .agent
            .filter(|k| *k != ordo_proto::AgentKind::Command)
            .map(|k| k.name());
        tokio::spawn(async move {
            let mut streamed = 0u64;
            while let Some(chunk) = out_rx.recv().await {
                if streamed >= names::MAX_STREAMED_LOG_BYTES {
                    continue;
                }
                let mut data = chunk.data;
                let room = names::MAX_STREAMED_LOG_BYTES - streamed;
                data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                streamed += data.len() as u64;
                if streamed >= names::MAX_STREAMED_LOG_BYTES {
                    data.extend_from_slice(
                        format!(
                            "\n[ordo: output beyond {} MiB is not streamed; the result keeps its tail]\n",
                            names::MAX_STREAMED_LOG_BYTES >> 20
                        )
                        .as_bytes(),
                    );
                }
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(names::LOG_ATTEMPT_HEADER, attempt.as_str());
                let stream = match chunk.stream {
                    exec::Stream::Stdout => "stdout",
                    exec::Stream::Stderr => "stderr",
                };
                headers.insert(names::LOG_STREAM_HEADER, stream);
                if let Some(kind) = agent {
                    headers.insert(names::LOG_AGENT_HEADER, kind);
                }
                let _ = client
                    .publish_with_headers(subject.clone(), headers, data.into())
                    .await;
            }
        })
    };

    let stop = Arc::new(std::sync::Mutex::new(None::<Stop>));
    let cancel = {
        let stop = stop.clone();
        let task = d.task.clone();
        async move {
            tokio::select! {
                s = stop_rx => match s {
                    Ok(s) => *stop.lock().unwrap() = Some(s),
                    Err(_) => std::future::pending::<()>().await,
                },
                r = lease_lost_rx => match r {
                    Ok(()) => {
                        tracing::warn!(task = %task, "lost the lease; killing the task");
                        *stop.lock().unwrap() = Some(Stop::LeaseLost);
                    }
                    Err(_) => std::future::pending::<()>().await,
                },
            }
        }
    };
    let opts = exec_options(shared, delivery);
    let traceparent = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_string());
    // `Started` is a best-effort notice the coordinator does not need (a result of a
    // dispatched attempt is accepted without it). A redelivery sends it at once: it takes the
    // attempt over from the earlier delivery. A first delivery sends it only if the task is
    // still running after STARTED_NOTICE_AFTER: most short tasks end first, and their result
    // tells the rest, one message per task fewer on every hop.
    let notice = async {
        if delivery <= 1 {
            tokio::time::sleep(STARTED_NOTICE_AFTER).await;
        }
        let started = WorkerEvent::Started {
            job: d.job,
            index: d.index,
            attempt: d.attempt,
            worker: shared.opts.id.clone(),
            delivery,
        };
        let _ = shared
            .client
            .publish(
                names::started_subject(&d.job),
                wire::encode(&started).into(),
            )
            .await;
        std::future::pending().await
    };
    let ran = tokio::select! {
        r = workspace::run_attempt(&d, &opts, cancel, Some(out_tx), &shared.caches) => r,
        r = notice => r,
    };
    if d.workspace.is_some() {
        shared.prepared(ran.as_ref().err().map(ToString::to_string).as_deref());
    }
    let mut result = match ran {
        Ok(result) => result,
        Err(e) => {
            // The command never ran: not the task's failure. Another worker (or this one,
            // later) takes the message; a delivery is spent, no attempt.
            tracing::warn!(job = %d.job, task = %d.task, attempt = d.attempt.0, error = %e, "cannot prepare the workspace; handing the task back");
            let _ = logger.await;
            shared.running.lock().await.remove(&key);
            drop(slot);
            lease.abort();
            shared.hand_back_unprepared(&msg).await;
            return;
        }
    };
    result.delivery = delivery;
    if let Some(tel) = &shared.opts.telemetry {
        tel.execution_span(traceparent.as_deref(), &result);
    }
    if let Some(m) = &shared.opts.metrics {
        m.finished(&result);
    }
    shared.pace.ran(result.duration_ms);
    let _ = logger.await;
    shared.running.lock().await.remove(&key);
    // The processes are gone: the next task may start while this one's result is stored.
    drop(slot);

    let stopped = *stop.lock().unwrap();
    match stopped {
        Some(Stop::HandBack) => {
            lease.abort();
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            return;
        }
        Some(Stop::LeaseLost) => {
            lease.abort();
            // Reported so the record shows this execution; the message is not ours to ack.
            result.abandoned = true;
            result.message = format!(
                "abandoned: no lease renewal for {:?}; the task was killed",
                ack_wait
            );
            shared.reporter.report(WorkerEvent::Finished(result)).await;
            return;
        }
        Some(Stop::Killed) | None => {}
    }
    // The result is durable in JetStream before the task message is acked; the lease is held
    // until then (results queue behind one publish at a time).
    let stored = shared.reporter.report(WorkerEvent::Finished(result)).await;
    lease.abort();
    if !stored {
        // Not acked: JetStream delivers the attempt again.
        return;
    }
    ordo_plumbing::failpoint::hit(ordo_plumbing::failpoint::AFTER_RESULT_BEFORE_ACK);
    // The result is stored, so a lost ack costs at most a duplicate execution, whose result
    // the coordinator records as a duplicate: a plain ack (no confirmation round trip) is enough.
    let _ = msg.ack().await;
}

/// Holds the lease of a task message: in-progress acks every third of the ack wait while the
/// work runs. Going a whole ack wait without a renewal (cut off from NATS, or this process
/// stopped) loses it: by then JetStream may have handed the message to another worker, and
/// the receiver resolves so that the work is stopped. Abort the handle when the work ends.
fn hold_lease(
    msg: Arc<jetstream::Message>,
    client: async_nats::Client,
    ack_wait: Duration,
) -> (tokio::task::JoinHandle<()>, oneshot::Receiver<()>) {
    let (lost_tx, lost_rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut last_ok = Instant::now();
        let mut tick = tokio::time::interval(ack_wait / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Checked before renewing: a renewal sent after the ack wait came too late.
            if last_ok.elapsed() >= ack_wait {
                let _ = lost_tx.send(());
                return;
            }
            // A renewal counts from when it was sent, and only once the server has it (a
            // publish is only queued until the flush): one that could not get through
            // promptly (the process was stopped or cut off meanwhile) may have come after
            // JetStream gave the message to another worker, so it renews nothing.
            let sent = Instant::now();
            let renewal = async {
                msg.ack_with(AckKind::Progress)
                    .await
                    .map_err(|e| e.to_string())?;
                client.flush().await.map_err(|e| e.to_string())
            };
            if let Ok(Ok(())) = tokio::time::timeout(ack_wait / 3, renewal).await
                && sent.elapsed() < ack_wait / 3
            {
                last_ok = sent;
            }
        }
    });
    (handle, lost_rx)
}

/// What every process this worker starts gets: its id, the delivery count, the guard token.
fn exec_options(shared: &Shared, delivery: u32) -> ExecOptions {
    let mut opts = ExecOptions::new(shared.opts.id.clone());
    opts.env
        .push((exec::ENV_WORKER.into(), shared.opts.id.to_string()));
    opts.env
        .push((exec::ENV_DELIVERY.into(), delivery.to_string()));
    if let Some(token) = &shared.opts.guard_token {
        opts.env
            .push((exec::ENV_WORKER_TOKEN.into(), token.clone()));
    }
    opts
}

/// Takes an integration request (docs/design.md, "Agent workspaces"): it needs a slot like a task (its
/// verify command runs here), holds its lease while it runs, and reports `Integrated`. A
/// request whose lease is lost is dropped unreported: JetStream gives it to another worker,
/// whose integration finds this one's merge if it was pushed.
async fn accept_integration(shared: &Arc<Shared>, msg: jetstream::Message, ack_wait: Duration) {
    let req: Integrate = match wire::decode(&msg.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("terminating undecodable integration message: {e}");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    if shared.busy.load(Ordering::SeqCst) >= shared.opts.slots {
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
            .await;
        return;
    }
    // An integration works in the cache clone too: a worker that cannot prepare one leaves it
    // to another.
    if let Some(why) = shared.refusing_worktrees() {
        tracing::debug!(job = %req.job, task = %req.task, "{why}; handing the integration back");
        shared.hand_back_unprepared(&msg).await;
        return;
    }
    let delivery = msg
        .info()
        .map_or(0, |i| u32::try_from(i.delivered).unwrap_or(u32::MAX));
    let slot = Slot::take(shared, 0, 0);
    shared.unreported.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    tokio::spawn(async move {
        let msg = Arc::new(msg);
        let ack_wait = ack_wait.max(Duration::from_millis(300));
        let (lease, lost) = hold_lease(msg.clone(), shared.client.clone(), ack_wait);
        let opts = exec_options(&shared, delivery);
        let outcome = tokio::select! {
            o = workspace::integrate_batch(&req, &shared.caches, &opts) => Some(o),
            Ok(()) = lost => None,
        };
        drop(slot);
        match outcome {
            Some((mut batch, tidy)) => {
                let outcome = batch.remove(0).outcome;
                tracing::info!(job = %req.job, task = %req.task, attempt = req.attempt.0, outcome = outcome.name(), batch = batch.len() + 1, "integrated");
                let event = WorkerEvent::Integrated(IntegrationResult {
                    job: req.job,
                    index: req.index,
                    attempt: req.attempt,
                    worker: shared.opts.id.clone(),
                    delivery,
                    outcome,
                    batch,
                    step: req.step,
                    stacked: req.stacked(),
                });
                // The lease is held until the outcome is stored.
                let stored = shared.reporter.report(event).await;
                lease.abort();
                if stored {
                    let _ = msg.ack().await;
                }
                // Off the queue's path: the coordinator has the outcome already.
                tidy.run(&shared.caches).await;
            }
            None => {
                lease.abort();
                tracing::warn!(job = %req.job, task = %req.task, "lost the lease of an integration; dropped")
            }
        }
        shared.unreported.fetch_sub(1, Ordering::SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The free slots not yet asked for, and the tasks to hold only while the pace says so, in
    /// an ask that expires soon.
    #[test]
    fn tasks_to_hold_are_asked_for_beyond_the_free_slots() {
        assert_eq!(ask_for(4, 0, 0, 0), Some((4, false)));
        assert_eq!(ask_for(4, 1, 1, 0), Some((2, false)));
        assert_eq!(ask_for(4, 1, 1, 3), Some((5, true)));
        assert_eq!(ask_for(4, 3, 1, 0), None, "the free slot is asked for");
        assert_eq!(ask_for(4, 3, 1, 3), Some((3, true)));
        assert_eq!(ask_for(4, 4, 0, 0), None);
        assert_eq!(
            ask_for(4, 4, 0, 3),
            Some((3, true)),
            "every slot busy: three to hold"
        );
        assert_eq!(ask_for(4, 4, 2, 3), Some((1, true)), "two are on their way");
        assert_eq!(ask_for(4, 4, 3, 3), None, "all three are on their way");
        assert_eq!(ask_for(4, 5, 0, 3), Some((3, true)));
    }

    /// A task is held only while the recent runs are quick and none running has run long; a
    /// held task that went back stops the holding until a run ends.
    #[test]
    fn a_task_is_held_only_while_every_run_is_quick() {
        let quick = Duration::from_millis(names::QUICK_RUN_MS);
        let t0 = Instant::now();
        let pace = Pace::default();
        pace.took(t0);
        assert!(!pace.holds(t0), "nothing ran yet");
        pace.ran(3);
        assert!(pace.holds(t0));

        let later = t0 + quick / 2;
        pace.took(later);
        assert_eq!(pace.long_at(), Some(t0 + quick), "the oldest run decides");
        assert!(pace.holds(t0 + quick / 2));
        assert!(
            !pace.holds(t0 + quick),
            "a run that has taken as long as a quick one is long: nothing is held beside it"
        );
        pace.freed(t0);
        assert_eq!(pace.long_at(), Some(later + quick));
        assert!(pace.holds(t0 + quick));
        pace.freed(later);
        assert_eq!(pace.long_at(), None);
        assert!(!pace.holds(t0), "nothing runs");

        pace.took(t0);
        pace.went_back();
        assert!(!pace.holds(t0), "a held task went back");
        pace.ran(3);
        assert!(pace.holds(t0), "a run ended since");

        // Runs of any length (they come from a clock) neither wrap the average nor stick.
        pace.ran(u64::MAX);
        pace.ran(u64::MAX);
        assert!(!pace.holds(t0));
        let mut n = 0;
        while !pace.holds(t0) {
            pace.ran(2);
            n += 1;
            assert!(n < 400, "the average follows the recent runs");
        }
    }
}
