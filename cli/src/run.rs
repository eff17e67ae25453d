//! The local runner behind `ordo run`: the coordinator's engine and store, and the worker's
//! executor, in one process with no broker.
//!
//! The loop: wait for events (results, timers, Ctrl-C), drain every event already queued, apply
//! them all, commit their changes in one store transaction (group commit), then carry out the
//! actions. With `--state DIR` the store is a redb file committed durably before any action of
//! the batch is carried out, so a killed run resumes where the store says; without it the store
//! lives in memory.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use ordo_coordinator::engine::{
    ANY_QUEUE, Action, Capacity, Change, Engine, Event, JobOptions, JobState, Millis, SavedTask,
};
use ordo_coordinator::store::{Batch, JobRecord, Store};
use ordo_coordinator::traces::Traces;
use ordo_proto::telemetry::{self, Telemetry};
use ordo_proto::{Attempt, Dag, ExecutionMode, JobId, JobSpec, TaskResult};
use ordo_worker::exec::{self, ExecOptions};
use tokio::sync::{mpsc, oneshot};

use crate::progress::Progress;

/// In-memory runs commit when this many changes are pending...
const MEMORY_BATCH: usize = 4096;
/// ...or this long after the last commit.
const MEMORY_COMMIT_EVERY: Duration = Duration::from_millis(200);

pub struct RunOptions {
    /// Task slots (tasks running at once across the job).
    pub workers: u32,
    pub default_mode: ExecutionMode,
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

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
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
    let (record, resumed) = match previous {
        Some(rec) => (rec, true),
        None => (insert_job(&store, &spec, &opts)?, false),
    };
    let durable = opts.state_dir.is_some();
    let cancel = async {
        shutdown.await;
        "interrupted".to_string()
    };
    drive(store, record, resumed, durable, dag, opts, progress, cancel).await
}

/// Records a new job in `store` (pending, every task pending) without running it; for callers
/// that run it with `run_recorded` (`ordo mcp`).
pub fn insert_job(store: &Store, spec: &JobSpec, opts: &RunOptions) -> Result<JobRecord> {
    let now = now_ms();
    let rec = JobRecord {
        id: JobId::new(),
        name: spec.name.clone(),
        source: opts.source.clone(),
        spec: spec.clone(),
        options: JobOptions {
            default_mode: opts.default_mode,
            max_parallel: opts.max_parallel,
            seed: now,
            slots: Some(opts.workers.max(1)),
        },
        state: JobState::Pending,
        created_ms: now,
        updated_ms: now,
        finished_ms: None,
        reason: None,
    };
    store.insert_job(&rec)?;
    Ok(rec)
}

/// Runs a job recorded in a store shared with other runs and readers (`ordo mcp`): one inserted
/// by `insert_job`, or, with `resume`, one left unfinished by an earlier process. Every turn
/// commits before it acts, so readers of the store see the job progress; `opts.state_dir` is not
/// used. `cancel` resolving cancels the job with the reason it yields.
pub async fn run_recorded<P: Progress + ?Sized>(
    store: Arc<Store>,
    record: JobRecord,
    resume: bool,
    dag: Dag,
    opts: RunOptions,
    progress: &mut P,
    cancel: impl Future<Output = String>,
) -> Result<RunReport> {
    drive(store, record, resume, true, dag, opts, progress, cancel).await
}

/// The run loop of a job recorded in `store`. `durable`: commit every turn before acting.
async fn drive<P: Progress + ?Sized>(
    store: Arc<Store>,
    record: JobRecord,
    resumed: bool,
    durable: bool,
    dag: Dag,
    opts: RunOptions,
    progress: &mut P,
    shutdown: impl Future<Output = String>,
) -> Result<RunReport> {
    let spec = Arc::new(record.spec.clone());
    let dag = Arc::new(dag);
    let slots = opts.workers.max(1);
    let saved = if resumed {
        Some(store.tasks(&record.id)?)
    } else {
        None
    };
    let now = now_ms();
    let job = record.id;
    progress.start(&record, &spec, resumed);

    let mut traces = Traces::new(opts.telemetry.clone());
    let names = spec.tasks.iter().map(|t| t.name.to_string()).collect();
    traces.job(job, &record.name, record.created_ms, names);
    let mut engine = Engine::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut kills: HashMap<(u32, Attempt), oneshot::Sender<()>> = HashMap::new();
    // Kills the task processes if this process dies (SIGKILL included); held to the end.
    let guard = ordo_worker::guard::start().ok();
    let mut exec_opts = ExecOptions::new("local");
    if let Some(g) = &guard {
        exec_opts
            .env
            .push((exec::ENV_WORKER_TOKEN.into(), g.token.clone()));
    }
    let exec_opts = Arc::new(exec_opts);

    let mut actions = engine.apply(
        now,
        Event::Capacity {
            queue: ANY_QUEUE.into(),
            capacity: machine_capacity(slots),
        },
    );
    let in_flight: Vec<(u32, Attempt)> = saved
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| s.state.active_attempt().map(|a| (i as u32, a)))
        .collect();
    actions.extend(engine.apply(
        now,
        Event::Submit {
            job,
            spec: spec.clone(),
            dag: dag.clone(),
            options: record.options.clone(),
            saved,
        },
    ));
    // Attempts that were in flight when the last run died have no process any more.
    for (index, attempt) in in_flight {
        actions.extend(engine.apply(
            now,
            Event::Requeue {
                job,
                index,
                attempt,
            },
        ));
    }

    tokio::pin!(shutdown);
    let mut interrupted = false;
    // Changes applied but not yet committed. With a state directory every turn commits before
    // it acts (durable); in memory nothing survives anyway, so commits are grouped by size and
    // time to keep the store off the hot path.
    let mut pending: Vec<Change> = Vec::new();
    let mut last_commit = Instant::now();
    loop {
        let mut dispatches = Vec::new();
        let mut shown = pending.len();
        let observed = pending.len();
        for a in actions.drain(..) {
            match a {
                Action::Record(c) => pending.push(c),
                Action::Dispatch(d) => dispatches.push(d),
                Action::Kill { index, attempt, .. } => {
                    if let Some(k) = kills.remove(&(index, attempt)) {
                        let _ = k.send(());
                    }
                }
            }
        }
        traces.observe(&pending[observed..]);
        let finished = !engine.has_job(&job);
        if !pending.is_empty()
            && (durable
                || finished
                || pending.len() >= MEMORY_BATCH
                || last_commit.elapsed() >= MEMORY_COMMIT_EVERY)
        {
            let batch = Batch {
                now: now_ms(),
                changes: &pending,
                ..Default::default()
            };
            tokio::task::block_in_place(|| store.commit(&batch)).with_context(|| {
                format!(
                    "cannot record the progress of job '{}' ({job})",
                    record.name
                )
            })?;
            progress.changes(&pending[shown..], &spec);
            pending.clear();
            shown = 0;
            last_commit = Instant::now();
        }
        if shown < pending.len() {
            progress.changes(&pending[shown..], &spec);
        }
        let now = now_ms();
        for d in dispatches {
            let (kill_tx, kill_rx) = oneshot::channel();
            kills.insert((d.index, d.attempt), kill_tx);
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
                let result = exec::run(&d, &task_opts, cancel, None).await;
                if let Some(tel) = tel {
                    let parent = telemetry::traceparent(&d.job, d.index, d.attempt);
                    tel.execution_span(Some(&parent), &result);
                }
                let _ = tx.send(Event::Finished(result));
            });
            // The process is being spawned now: running from here on.
            actions.extend(engine.apply(
                now,
                Event::Started {
                    job,
                    index,
                    attempt,
                    worker: exec_opts.worker.clone(),
                    delivery: 0,
                },
            ));
        }
        if !actions.is_empty() {
            continue;
        }
        if finished {
            break;
        }

        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(e) => e,
                None => break,
            },
            _ = sleep_until(engine.next_wakeup()) => Event::Tick,
            reason = &mut shutdown, if !interrupted => {
                interrupted = true;
                Event::Cancel { job, reason }
            }
        };
        let now = now_ms();
        if let Event::Finished(r) = &first {
            kills.remove(&(r.index, r.attempt));
        }
        actions.extend(engine.apply(now, first));
        // Group commit: everything already queued joins this batch.
        while let Ok(e) = rx.try_recv() {
            if let Event::Finished(r) = &e {
                kills.remove(&(r.index, r.attempt));
            }
            actions.extend(engine.apply(now, e));
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
        resumed,
        interrupted,
        slots,
        store: store.clone(),
    };
    progress.finish(&report);
    Ok(report)
}

async fn sleep_until(at: Option<Millis>) {
    match at {
        Some(at) => {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await
        }
        None => std::future::pending().await,
    }
}
