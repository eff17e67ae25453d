//! Local mode: a `Host` with the in-process executor, run by one loop in this process, for
//! `ordo run` and for a state directory this process holds (`--state DIR`). Its faces reach
//! it through a `Node` handle, by verb name and JSON like every transport (so a verb behaves
//! the same here and on a cluster); other processes reach it through the directory's Unix
//! socket (`socket`).
//!
//! # Layout
//! - `executor`: attempts and integrations as child processes of this one.
//! - `socket`: `DIR/ordo.sock`, served while this process holds the directory, and its client.

mod executor;
pub mod socket;

use std::sync::Arc;

use ordo_coordinator::driver::{self, Policy};
use ordo_coordinator::engine::{Change, Event};
use ordo_coordinator::host::api::{self, ReplyLimit};
use ordo_coordinator::host::{Host, Recover};
use ordo_coordinator::store::{JobRecord, Store};
use ordo_coordinator::traces::Traces;
use ordo_plumbing::telemetry::Telemetry;
use ordo_proto::{JobId, Millis, now_ms};
use tokio::sync::{mpsc, oneshot};

pub use executor::{InProcess, Tidying};

/// How a node is started.
pub struct NodeOptions {
    /// Task slots offered to jobs.
    pub slots: u32,
    /// `--workers` fixed them: jobs asking for more do not get more.
    pub fixed: bool,
    /// Which unfinished jobs of the store to take up.
    pub recover: Recover,
    /// OTLP traces, when an exporter is configured: the same spans as the coordinator's.
    pub telemetry: Option<Arc<Telemetry>>,
}

/// What a node's loop is asked.
enum Msg {
    /// A verb by name with its JSON body; the `ApiReply` JSON comes back once what it changed
    /// is committed.
    Api {
        name: String,
        body: Vec<u8>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// Sends every committed change from now on.
    Watch(mpsc::UnboundedSender<Arc<[Change]>>),
    /// Runs an unfinished job of the store again.
    Resume(Box<JobRecord>, oneshot::Sender<Result<(), String>>),
    /// Cancels a job with this reason (`ordo run` interrupted).
    Cancel(JobId, String),
    /// Answers once the job (`None`: every job) has ended and its end is committed.
    Ended(Option<JobId>, oneshot::Sender<()>),
    /// Cancels every job, waits for them to end, and stops the loop.
    Stop(oneshot::Sender<()>),
    /// The `[[notify]]` notifications not delivered yet, with their last error, and whether
    /// waiting until the deadline (ms) could deliver any more.
    Notices(Millis, oneshot::Sender<(Vec<Unsent>, bool)>),
}

/// A handle on the loop of a local host. Cloned freely; the loop runs until `stop`.
#[derive(Clone)]
pub struct Node {
    tx: mpsc::UnboundedSender<Msg>,
    store: Arc<Store>,
    /// Integrations tidying up after their outcome (worktrees, branches).
    tidying: Tidying,
}

/// Replies can be any size here: nothing is cut to fit a message.
const NO_LIMIT: ReplyLimit = ReplyLimit(usize::MAX);

impl Node {
    /// Starts the loop of a host on `store` (durable when it is a state directory's).
    pub async fn start(
        store: Arc<Store>,
        durable: bool,
        opts: NodeOptions,
    ) -> Result<Node, String> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let tidying = Tidying::default();
        let executor = InProcess::new(
            events_tx,
            opts.slots,
            opts.fixed,
            opts.telemetry.clone(),
            tidying.clone(),
        );
        let policy = if durable {
            Policy::LOCAL_DURABLE
        } else {
            Policy::IN_MEMORY
        };
        let mut host = Host::new(store.clone(), policy, executor, Traces::new(opts.telemetry));
        let now = now_ms();
        host.refresh_capacity(now);
        host.recover(now, opts.recover)
            .await
            .map_err(|e| format!("cannot read the state: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(host, rx, events));
        Ok(Node { tx, store, tidying })
    }

    /// The store this node keeps its jobs in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A verb by name with its JSON body; the `ApiReply` JSON.
    pub async fn call(&self, name: &str, body: Vec<u8>) -> Result<Vec<u8>, Stopped> {
        let (reply, rx) = oneshot::channel();
        let name = name.to_string();
        self.tx
            .send(Msg::Api { name, body, reply })
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Every change committed from now on, in order.
    pub fn watch(&self) -> mpsc::UnboundedReceiver<Arc<[Change]>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Msg::Watch(tx));
        rx
    }

    /// Runs an unfinished job of the store again (`ordo run` of the same spec).
    pub async fn resume(&self, job: JobRecord) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Resume(Box::new(job), tx));
        rx.await.map_err(|_| Stopped.to_string())?
    }

    pub fn cancel(&self, job: JobId, reason: &str) {
        let _ = self.tx.send(Msg::Cancel(job, reason.to_string()));
    }

    /// Waits until `job` (`None`: every job) has ended and its end is committed, and its
    /// integrations have tidied up (their worktrees and branches are gone).
    pub async fn ended(&self, job: Option<JobId>) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Ended(job, tx)).is_ok() {
            let _ = rx.await;
        }
        self.tidying.done(job).await;
    }

    /// Waits up to `wait` for the `[[notify]]` notifications still due to be delivered; the
    /// ones that were not (what they are, their last error). The outbox is in the store: the
    /// next process on a state directory sends what is left.
    pub async fn deliver_notices(&self, wait: std::time::Duration) -> Vec<Unsent> {
        let deadline = now_ms() + wait.as_millis() as Millis;
        loop {
            let (tx, rx) = oneshot::channel();
            if self.tx.send(Msg::Notices(deadline, tx)).is_err() {
                return Vec::new();
            }
            let (left, idle) = rx.await.unwrap_or_default();
            if left.is_empty() || idle || now_ms() >= deadline {
                return left;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Cancels the jobs still running, waits for them to end and stops the loop.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        self.tidying.done(None).await;
    }
}

/// A notification not delivered: what it is (event, job, task, url) and its last error.
pub type Unsent = (String, Option<String>);

/// The node's loop stopped (its process is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the local runner stopped")]
pub struct Stopped;

/// The loop: waits for requests, results and timers, drains everything queued, applies it,
/// turns (commit, then what the commit allows), and answers what waited on the commit.
async fn run(
    mut host: Host<InProcess>,
    mut msgs: mpsc::UnboundedReceiver<Msg>,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let mut replies: Vec<(oneshot::Sender<Vec<u8>>, Vec<u8>)> = Vec::new();
    let mut waiting: Vec<(Option<JobId>, oneshot::Sender<()>)> = Vec::new();
    let mut stopping: Option<oneshot::Sender<()>> = None;
    let mut closed = false;
    let delivered = host.notify_waker();
    loop {
        let wake = host.next_wakeup(now_ms());
        let first = tokio::select! {
            m = msgs.recv(), if !closed => match m {
                Some(m) => Some(Ok(m)),
                None => { closed = true; None }
            },
            e = events.recv() => e.map(Err),
            _ = delivered.notified() => None,
            _ = driver::sleep_until(wake) => None,
        };
        let now = now_ms();
        let queued_msgs = std::iter::from_fn(|| msgs.try_recv().ok().map(Ok));
        let queued: Vec<Result<Msg, Event>> = first
            .into_iter()
            .chain(queued_msgs)
            .chain(std::iter::from_fn(|| events.try_recv().ok().map(Err)))
            .collect();
        for input in queued {
            match input {
                Err(event) => {
                    if let Event::Finished(r) = &event {
                        host.executor_mut().finished(&r.attempt_ref());
                    }
                    host.apply(now, event);
                }
                Ok(Msg::Api { name, body, reply }) => {
                    let answer = api::handle(&mut host, now, &name, &body, NO_LIMIT).await;
                    replies.push((reply, answer));
                }
                Ok(Msg::Watch(tx)) => host.watch(tx),
                Ok(Msg::Resume(job, reply)) => {
                    let _ = reply.send(host.resume(now, *job).await);
                }
                Ok(Msg::Cancel(job, reason)) => {
                    if host.engine().has_job(&job) {
                        host.apply(now, Event::Cancel { job, reason });
                    }
                }
                Ok(Msg::Ended(job, tx)) => waiting.push((job, tx)),
                Ok(Msg::Notices(deadline, tx)) => {
                    let left = host
                        .notices_waiting()
                        .iter()
                        .map(|n| {
                            let task = n.task.as_ref().map(|t| format!(", task {t}"));
                            let what = format!(
                                "{} (job {}{}) to {}",
                                n.event.name(),
                                n.job_name,
                                task.unwrap_or_default(),
                                n.hook.url
                            );
                            (what, n.last_error.clone())
                        })
                        .collect();
                    let _ = tx.send((left, host.notices_idle_until(deadline)));
                }
                Ok(Msg::Stop(tx)) => {
                    for job in host.engine().job_ids() {
                        let reason = "stopped".to_string();
                        host.apply(now, Event::Cancel { job, reason });
                    }
                    stopping = Some(tx);
                }
            }
        }
        host.apply(now, Event::Tick);
        // A reply, a stop, or someone waiting for a job that has ended needs the commit now;
        // otherwise the commit rule decides (changes are grouped).
        let engine = host.engine();
        let idle = engine.is_idle();
        let ended = waiting.iter().any(|(job, _)| match job {
            Some(job) => !engine.has_job(job),
            None => idle,
        });
        let force = !replies.is_empty() || stopping.is_some() || ended || idle;
        if let Err(e) = host.turn(now_ms(), force).await {
            eprintln!("ordo: cannot record progress: {e}");
            // Nothing more can be recorded: whoever waits learns it by the loop's end.
            return;
        }
        if !host.settled() {
            continue;
        }
        for (reply, body) in replies.drain(..) {
            let _ = reply.send(body);
        }
        let engine = host.engine();
        waiting.retain(|(job, _)| match job {
            Some(job) => engine.has_job(job),
            None => !engine.is_idle(),
        });
        // Those that were retained still wait; the others were dropped above: answer them.
        // (A dropped sender wakes its receiver, which is all `ended` waits for.)
        if let Some(tx) = stopping.take_if(|_| host.engine().is_idle()) {
            let _ = tx.send(());
            return;
        }
        if closed && host.engine().is_idle() {
            return;
        }
    }
}
