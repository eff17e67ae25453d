//! The local runner behind `ordo run`: the coordinator's engine and store, and the worker's
//! executor, in one process with no broker.
//!
//! The loop: wait for events (results, timers, Ctrl-C), drain every event already queued, apply
//! them all through the engine's one driver (`ordo_coordinator::driver`, as the coordinator
//! does), and carry out what its turn allows. With `--state DIR` (and in `ordo mcp` / the
//! dashboard) the store is a redb file committed durably before any action of the batch is
//! carried out, so a killed run resumes where the store says; without it the store lives in
//! memory and changes are committed in groups.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use ordo_coordinator::driver::{self, Driver, Policy};
use ordo_coordinator::engine::{
    ANY_QUEUE, Again, Capacity, Event, JobOptions, SavedTask, retry_records,
};
use ordo_coordinator::store::{JobRecord, Store};
use ordo_coordinator::traces::Traces;
use ordo_plumbing::telemetry::{self, Telemetry};
use ordo_proto::{AttemptRef, Dag, ExecutionMode, JobId, JobSpec, TaskIndex, TaskResult, now_ms};
use ordo_worker::exec::{self, ExecOptions};
use ordo_worker::workspace::{self, Local, cache};
use tokio::sync::{mpsc, oneshot};

pub struct RunOptions {
    /// Task slots (tasks running at once across the job).
    pub workers: u32,
    pub default_mode: Option<ExecutionMode>,
    pub max_parallel: Option<u32>,
    pub state_dir: Option<PathBuf>,
    /// Where the spec came from, for records and messages.
    pub source: String,
    /// OTLP traces, when an exporter is configured: the same spans as the coordinator's.
    pub telemetry: Option<Arc<Telemetry>>,
}

/// What a finished (or interrupted) run leaves behind.
#[derive(Debug)]
pub struct RunReport {
    pub job: JobRecord,
    pub tasks: Vec<SavedTask>,
    pub attempts: Vec<TaskResult>,
    /// The run was resumed from a state directory.
    pub resumed: bool,
    /// Ctrl-C (or the shutdown future) ended it.
    pub interrupted: bool,
    pub slots: u32,
    /// The store the run used (in memory without `--state`), for `--report`.
    pub store: Arc<Store>,
}

/// What a run shows while it goes (`progress`: bars, lines, nothing), fed the changes as they
/// are committed.
pub trait Progress {
    fn start(&mut self, job: &JobRecord, spec: &JobSpec, resumed: bool);
    fn changes(&mut self, changes: &[ordo_coordinator::store::Change], spec: &JobSpec);
    fn finish(&mut self, report: &RunReport);
}

/// How a recorded job starts running here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Just inserted: every task pending.
    New,
    /// Left unfinished by a process that died: finished tasks keep their records, attempts
    /// that were in flight run again without counting.
    Resume,
    /// Ended, and recorded running again by the caller (so readers never see it ended while
    /// it restarts): the tasks `Again` names run again, the others keep their records.
    Retry(Again),
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

/// Runs a validated job to its end. `shutdown` resolving cancels the job (Ctrl-C).
pub async fn run(
    spec: JobSpec,
    dag: Dag,
    opts: RunOptions,
    progress: &mut dyn Progress,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport> {
    let store = match &opts.state_dir {
        Some(dir) => Store::open(dir)?,
        None => Store::in_memory()?,
    };
    let store = Arc::new(store);

    // Resume the unfinished job of the same spec, if the state directory has one.
    let previous = store
        .jobs()?
        .into_iter()
        .rev()
        .find(|j| !j.state.is_terminal() && j.spec == spec);
    let (record, start) = match previous {
        Some(rec) => (rec, Start::Resume),
        None => (insert_job(&store, &spec, &opts)?, Start::New),
    };
    let policy = if opts.state_dir.is_some() {
        Policy::LOCAL_DURABLE
    } else {
        Policy::IN_MEMORY
    };
    let cancel = async {
        shutdown.await;
        "interrupted".to_string()
    };
    run_recorded(store, record, start, policy, dag, opts, progress, cancel).await
}

/// Makes a worktree job's workspace settings definite before it is recorded (DESIGN §10): the
/// repository (default: the one the working directory is in) as its top directory, and `base`
/// as the commit it names now. `label` (the spec's file) starts each error, which names the
/// setting; nothing is written anywhere. For a cluster (`shared`) the repository may also be a
/// URL, which must be reachable from here; on one machine it must be a local path.
pub async fn settle_workspace(spec: &mut JobSpec, label: &str, shared: bool) -> Result<(), String> {
    if !spec.uses_worktrees() {
        return Ok(());
    }
    let s = &spec.settings;
    let dir = match &s.working_directory {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::current_dir().map_err(|e| format!("{label}: {e}"))?,
    };
    let resolved = match s.repository.as_deref() {
        Some(url) if cache::is_url(url) => {
            if !shared {
                return Err(format!(
                    "{label}: settings.repository: {url}: a repository given by URL needs a \
                     cluster (`ordo submit`); `ordo run` works in a local repository (a path)"
                ));
            }
            cache::resolve_url(url, s.base.as_deref(), s.target_branch.as_deref()).await
        }
        repository => {
            workspace::resolve(
                repository,
                &dir,
                s.base.as_deref(),
                s.target_branch.as_deref(),
            )
            .await
        }
    };
    let resolved = resolved.map_err(|e| {
        let setting = match &e {
            workspace::Error::Invalid { what, .. } => (*what).to_string(),
            _ => "repository".into(),
        };
        format!("{label}: settings.{setting}: {e}")
    })?;
    spec.settings.repository = Some(resolved.repository.display().to_string());
    spec.settings.base = Some(resolved.base);
    Ok(())
}

/// Records a new job in `store` (pending, every task pending) without running it; for callers
/// that run it with `run_recorded` (the local job client).
pub fn insert_job(store: &Store, spec: &JobSpec, opts: &RunOptions) -> Result<JobRecord> {
    let now = now_ms();
    let options = JobOptions {
        default_mode: opts.default_mode,
        max_parallel: opts.max_parallel,
        seed: now,
        slots: Some(opts.workers.max(1)),
    };
    let rec = JobRecord::new(
        JobId::new(),
        spec.clone(),
        opts.source.clone(),
        options,
        now,
    );
    store.insert_job(&rec)?;
    Ok(rec)
}

/// Runs a job recorded in `store` (by `insert_job`, or left unfinished, or ended and now
/// retried, as `start` says) to its end, committing by `policy`. The local job client runs its
/// jobs with `Policy::LOCAL_DURABLE`, so readers of the shared store see them progress;
/// `opts.state_dir` is not used. `shutdown` resolving cancels the job with the reason it yields.
pub async fn run_recorded<P: Progress + ?Sized>(
    store: Arc<Store>,
    record: JobRecord,
    start: Start,
    policy: Policy,
    dag: Dag,
    opts: RunOptions,
    progress: &mut P,
    shutdown: impl Future<Output = String>,
) -> Result<RunReport> {
    let spec = Arc::new(record.spec.clone());
    let dag = Arc::new(dag);
    let slots = opts.workers.max(1);
    let saved = match start {
        Start::New => None,
        Start::Resume => Some(store.saved(&record)?),
        Start::Retry(again) => Some(retry_records(&store.tasks(&record.id)?, &dag, again).into()),
    };
    let now = now_ms();
    let job = record.id;
    progress.start(&record, &spec, start == Start::Resume);

    let mut traces = Traces::new(opts.telemetry.clone());
    traces.job(job, &record.name, record.created_ms, &spec);
    let mut driver = Driver::new(policy);
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut kills: HashMap<AttemptRef, oneshot::Sender<()>> = HashMap::new();
    // Kills the task processes if this process dies (SIGKILL included); held to the end.
    let guard = ordo_worker::guard::start().ok();
    let mut exec_opts = ExecOptions::new("local");
    if let Some(g) = &guard {
        exec_opts
            .env
            .push((exec::ENV_WORKER_TOKEN.into(), g.token.clone()));
    }
    let exec_opts = Arc::new(exec_opts);

    driver.apply(
        now,
        Event::Capacity {
            queue: ANY_QUEUE.into(),
            capacity: machine_capacity(slots),
        },
    );
    let in_flight: Vec<(TaskIndex, _)> = saved
        .iter()
        .flat_map(|s| &s.tasks)
        .enumerate()
        .filter_map(|(i, s)| s.state.active_attempt().map(|a| (TaskIndex::from(i), a)))
        .collect();
    driver.apply(
        now,
        Event::Submit {
            job,
            spec: spec.clone(),
            dag: dag.clone(),
            options: record.options.clone(),
            saved,
        },
    );
    // Attempts that were in flight when the last run died have no process any more.
    for (index, attempt) in in_flight {
        driver.apply(
            now,
            Event::Requeue {
                job,
                index,
                attempt,
            },
        );
    }

    tokio::pin!(shutdown);
    let mut interrupted = false;
    let mut sent = Vec::new();
    loop {
        let finished = !driver.engine().has_job(&job);
        // A commit blocks (redb): off the runtime's thread then, and only then (handing the
        // thread's other tasks over costs a wake-up on every hop of a chain).
        let turn = if driver.due(finished) {
            tokio::task::block_in_place(|| driver.turn(&store, now_ms(), finished, &mut sent))
        } else {
            driver.turn(&store, now_ms(), finished, &mut sent)
        };
        let turn = turn.with_context(|| {
            format!(
                "cannot record the progress of job '{}' ({job})",
                record.name
            )
        })?;
        traces.observe(&turn.changes);
        progress.changes(&turn.changes, &spec);
        for k in &turn.kills {
            if let (Some(index), Some(attempt)) = (k.index, k.attempt) {
                let key = AttemptRef {
                    job,
                    index,
                    attempt,
                };
                if let Some(kill) = kills.remove(&key) {
                    let _ = kill.send(());
                }
            }
        }
        let now = now_ms();
        let dispatched = !turn.dispatches.is_empty();
        for d in turn.dispatches {
            let (kill_tx, kill_rx) = oneshot::channel();
            kills.insert(d.attempt_ref(), kill_tx);
            let (index, attempt) = (d.index, d.attempt);
            let tx = tx.clone();
            let task_opts = exec_opts.clone();
            let tel = traces.telemetry().cloned();
            tokio::spawn(async move {
                let cancel = async {
                    // A dropped sender (job over) must not look like a kill.
                    if kill_rx.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                // In its own worktree when the job says so (`workspace = "worktree"`); one
                // that cannot be made is tried again within the attempt.
                let result =
                    workspace::run_attempt_retrying(&d, &task_opts, cancel, None, &Local::new())
                        .await;
                if let Some(tel) = tel {
                    let parent = telemetry::traceparent(&d.attempt_ref());
                    tel.execution_span(Some(&parent), &result);
                }
                let _ = tx.send(Event::Finished(result));
            });
            // The process is being spawned now: running from here on.
            driver.apply(
                now,
                Event::Started {
                    job,
                    index,
                    attempt,
                    worker: exec_opts.worker.clone(),
                    delivery: 0,
                },
            );
        }
        for req in turn.integrations {
            let tx = tx.clone();
            let task_opts = exec_opts.clone();
            tokio::spawn(async move {
                let outcome = workspace::integrate(&req, &Local::new(), &task_opts).await;
                let _ = tx.send(Event::Integrated {
                    job: req.job,
                    index: req.index,
                    attempt: req.attempt,
                    outcome,
                });
            });
        }
        if dispatched {
            continue;
        }
        if finished && driver.settled() {
            break;
        }

        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(e) => Some(e),
                None => break,
            },
            _ = driver::sleep_until(driver.next_wakeup(now_ms())) => None,
            reason = &mut shutdown, if !interrupted => {
                interrupted = true;
                Some(Event::Cancel { job, reason })
            }
        };
        let now = now_ms();
        // Group commit: everything already queued joins this turn.
        let queued = std::iter::from_fn(|| rx.try_recv().ok());
        // Woken by a timer alone: time passed (retry timers fire).
        let tick = first.is_none().then_some(Event::Tick);
        for e in first.into_iter().chain(queued).chain(tick) {
            if let Event::Finished(r) = &e {
                kills.remove(&r.attempt_ref());
            }
            driver.apply(now, e);
        }
    }

    if let Some(tel) = traces.telemetry().cloned() {
        // Spans are exported when the job ends, not only at exit.
        let _ = tokio::task::spawn_blocking(move || tel.flush()).await;
    }
    let job_record = store
        .job(&job)?
        .with_context(|| format!("job {job} vanished from the store"))?;
    let report = RunReport {
        tasks: store.tasks(&job)?,
        attempts: store.attempts(&job)?,
        job: job_record,
        resumed: start == Start::Resume,
        interrupted,
        slots,
        store: store.clone(),
    };
    progress.finish(&report);
    Ok(report)
}
