//! The in-process executor of local mode: each attempt is a process tree started here through
//! the worker's attempt path (in its own worktree of the user's repository when the job says
//! so), and each integration runs here too; outcomes come back to the host's loop as engine
//! events. A guard process kills the task processes if this process dies, SIGKILL included.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ordo_coordinator::engine::{ANY_QUEUE, Capacity, Event};
use ordo_coordinator::host::Executor;
use ordo_coordinator::store::JobRecord;
use ordo_plumbing::telemetry::{self, Telemetry};
use ordo_proto::api::WorkerInfo;
use ordo_proto::{AttemptRef, Dispatch, Integrate, JobId, JobSpec, Kill};
use ordo_worker::exec::{self, ExecOptions};
use ordo_worker::{guard, workspace};
use tokio::sync::{mpsc, oneshot};

use crate::args;

pub struct InProcess {
    /// The host loop's events.
    events: mpsc::UnboundedSender<Event>,
    /// How to kill each attempt in flight.
    kills: HashMap<AttemptRef, oneshot::Sender<()>>,
    opts: Arc<ExecOptions>,
    telemetry: Option<Arc<Telemetry>>,
    /// `--workers`: the slots, whatever jobs ask for.
    fixed: Option<u32>,
    /// The slots offered now.
    slots: u32,
    /// Held to the end once the first attempt starts: kills the task processes if this
    /// process dies (a reader that never runs anything starts none).
    guard: Option<guard::Guard>,
    /// Integrations tidying up after their outcome.
    tidying: Tidying,
}

/// Integrations of each job still tidying up after their outcome was sent (removing the
/// worktrees and branches it leaves): a job has ended for its caller once they are done.
#[derive(Clone, Default)]
pub struct Tidying(Arc<(std::sync::Mutex<HashMap<JobId, usize>>, tokio::sync::Notify)>);

impl Tidying {
    fn begin(&self, job: JobId) {
        *self.0.0.lock().unwrap().entry(job).or_default() += 1;
    }

    fn end(&self, job: JobId) {
        let mut busy = self.0.0.lock().unwrap();
        if let Some(n) = busy.get_mut(&job) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&job);
            }
        }
        drop(busy);
        self.0.1.notify_waiters();
    }

    /// Waits until no integration of `job` (`None`: of any job) is tidying up.
    pub async fn done(&self, job: Option<JobId>) {
        loop {
            let notified = self.0.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let busy = {
                let busy = self.0.0.lock().unwrap();
                job.map_or(!busy.is_empty(), |j| busy.contains_key(&j))
            };
            if !busy {
                return;
            }
            notified.await;
        }
    }
}

impl InProcess {
    /// An executor offering `slots` task slots (`fixed`: never more, whatever a job asks).
    pub fn new(
        events: mpsc::UnboundedSender<Event>,
        slots: u32,
        fixed: bool,
        telemetry: Option<Arc<Telemetry>>,
        tidying: Tidying,
    ) -> InProcess {
        InProcess {
            tidying,
            events,
            kills: HashMap::new(),
            opts: Arc::new(ExecOptions::new("local")),
            telemetry,
            fixed: fixed.then_some(slots.max(1)),
            slots: slots.max(1),
            guard: None,
        }
    }

    /// The guard, started with the first attempt; its token marks every task process.
    fn guard(&mut self) {
        if self.guard.is_some() {
            return;
        }
        if let Ok(g) = guard::start() {
            let mut opts = ExecOptions::new("local");
            opts.env
                .push((exec::ENV_WORKER_TOKEN.into(), g.token.clone()));
            self.opts = Arc::new(opts);
            self.guard = Some(g);
        }
    }

    /// An attempt ended (its result is in the loop's hands): nothing left to kill.
    pub fn finished(&mut self, attempt: &AttemptRef) {
        self.kills.remove(attempt);
    }
}

impl Executor for InProcess {
    fn attempts_outlive_host(&self) -> bool {
        false
    }

    async fn open_queues(&mut self, _: &BTreeSet<String>) -> Result<(), String> {
        // One machine: every queue is this process.
        Ok(())
    }

    fn slots(&mut self, _: &BTreeSet<String>, spec: &JobSpec, max_parallel: Option<u32>) -> u32 {
        let wanted = args::slots(self.fixed, max_parallel, spec);
        if self.fixed.is_none() {
            self.slots = self.slots.max(wanted);
        }
        wanted.min(self.slots)
    }

    fn capacity(&mut self) -> Vec<(String, Capacity)> {
        vec![(ANY_QUEUE.into(), machine_capacity(self.slots))]
    }

    fn start(&mut self, d: Dispatch, _: Option<u64>) {
        self.guard();
        let (kill_tx, kill_rx) = oneshot::channel();
        self.kills.insert(d.attempt_ref(), kill_tx);
        let events = self.events.clone();
        let opts = self.opts.clone();
        let tel = self.telemetry.clone();
        // The process is being spawned now: running from here on.
        let _ = self.events.send(Event::Started {
            job: d.job,
            index: d.index,
            attempt: d.attempt,
            worker: opts.worker.clone(),
            delivery: 0,
        });
        tokio::spawn(async move {
            let cancel = async {
                // A dropped sender (job over) must not look like a kill.
                if kill_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let result =
                workspace::run_attempt_retrying(&d, &opts, cancel, None, &workspace::Local::new())
                    .await;
            if let Some(tel) = tel {
                let parent = telemetry::traceparent(&d.attempt_ref());
                tel.execution_span(Some(&parent), &result);
            }
            let _ = events.send(Event::Finished(result));
        });
    }

    async fn kill(&mut self, k: Kill) {
        let gone: Vec<AttemptRef> = self
            .kills
            .keys()
            .filter(|a| {
                a.job == k.job
                    && k.index.is_none_or(|i| i == a.index)
                    && k.attempt.is_none_or(|n| n == a.attempt)
            })
            .copied()
            .collect();
        for a in gone {
            if let Some(kill) = self.kills.remove(&a) {
                let _ = kill.send(());
            }
        }
    }

    fn integrate(&mut self, req: Integrate) {
        let events = self.events.clone();
        let opts = self.opts.clone();
        let tidying = self.tidying.clone();
        tidying.begin(req.job);
        tokio::spawn(async move {
            let local = workspace::Local::new();
            let (mut batch, tidy) = workspace::integrate_batch(&req, &local, &opts).await;
            let outcome = batch.remove(0).outcome;
            let _ = events.send(Event::Integrated {
                job: req.job,
                index: req.index,
                attempt: req.attempt,
                outcome,
                batch,
                step: req.step,
                stacked: req.stacked(),
            });
            tidy.run(&local).await;
            tidying.end(req.job);
        });
    }

    /// Removes the worktrees and task branches the job's attempts kept (its integration
    /// branch stays: it is the job's result).
    async fn prune(&mut self, job: &JobRecord) {
        if job.spec.uses_worktrees()
            && let Some(repo) = &job.spec.settings.repository
        {
            workspace::remove_job(repo, &job.id).await;
        }
    }

    fn workers(&self) -> Vec<WorkerInfo> {
        Vec::new()
    }
}

/// CPUs and memory this machine offers to tasks that declare `cpu_required`/`memory_required`.
fn machine_capacity(slots: u32) -> Capacity {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(u64::MAX / 2, |kb| kb / 1024);
    Capacity::machine(slots, cpus, memory_mb)
}
