//! `ordo run`: one job run by a local host in this process (`crate::local`: the coordinator's
//! host with the in-process executor, no broker), shown in the terminal as it goes. With
//! `--state DIR` the store is a redb file committed durably before anything it allows is
//! carried out, so a killed run resumes where the store says, and the directory is served on
//! its socket meanwhile (`ordo status`, `ordo ui`, `ordo cancel` from other terminals); without
//! it the store lives in memory and changes are committed in groups.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use ordo_coordinator::engine::SavedTask;
use ordo_coordinator::host::Recover;
use ordo_coordinator::store::{Change, JobRecord, Store};
use ordo_plumbing::telemetry::Telemetry;
use ordo_proto::api::{self, ApiReply, SubmitReply, SubmitRequest};
use ordo_proto::{ExecutionMode, JobSpec, TaskResult};

use crate::local::{Node, NodeOptions, socket};

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

/// How long `ordo run` waits for its notifications before it exits.
const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What `ordo run` says of the notifications it could not deliver before exiting.
fn unsent_note(unsent: &[(String, Option<String>)], durable: bool) -> String {
    let n = unsent.len();
    let plural = if n == 1 { "" } else { "s" };
    let why = unsent
        .iter()
        .find_map(|(_, e)| e.clone())
        .unwrap_or_else(|| "receiver did not answer in time".into());
    let then = if durable {
        "the next ordo process on this state directory sends them"
    } else {
        "they are lost with this run (give --state DIR to keep them for the next process)"
    };
    let mut note = format!("ordo: {n} notification{plural} not sent yet ({why}): {then}");
    for (what, _) in unsent {
        note.push_str(&format!("\n  {what}"));
    }
    note
}

/// Runs a validated job to its end (or resumes the unfinished job of the same spec that the
/// state directory holds). `shutdown` resolving cancels the job (Ctrl-C).
/// The store is `opts.state_dir`'s, held by this process (`local::socket::hold`), or memory.
pub async fn run(
    spec: JobSpec,
    opts: RunOptions,
    store: Store,
    progress: &mut dyn Progress,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport> {
    let store = Arc::new(store);
    let node_opts = NodeOptions {
        slots: opts.workers.max(1),
        fixed: true,
        recover: Recover::None,
        telemetry: opts.telemetry.clone(),
    };
    let node = Node::start(store.clone(), opts.state_dir.is_some(), node_opts)
        .await
        .map_err(anyhow::Error::msg)?;
    let served = match &opts.state_dir {
        Some(dir) => Some(
            socket::serve(dir, node.clone())
                .with_context(|| format!("cannot serve {}", socket::path(dir).display()))?,
        ),
        None => None,
    };
    let mut changes = node.watch();

    // Resume the unfinished job of the same spec, if the state directory has one.
    let previous = store
        .jobs()?
        .into_iter()
        .rev()
        .find(|j| !j.state.is_terminal() && j.spec == spec);
    let resumed = previous.is_some();
    let job = match previous {
        Some(rec) => {
            let id = rec.id;
            progress.start(&rec, &spec, true);
            node.resume(rec).await.map_err(anyhow::Error::msg)?;
            id
        }
        None => {
            let req = SubmitRequest {
                spec: spec.clone(),
                source: opts.source.clone(),
                default_mode: opts.default_mode,
                max_parallel: opts.max_parallel,
            };
            let reply = node.call(api::SUBMIT, serde_json::to_vec(&req)?).await?;
            let id = match serde_json::from_slice::<ApiReply<SubmitReply>>(&reply)? {
                ApiReply::Ok(r) => r.job,
                ApiReply::Error(e) => anyhow::bail!("{}", e.message),
            };
            let rec = store
                .job(&id)?
                .context("the submitted job is not recorded")?;
            progress.start(&rec, &spec, false);
            id
        }
    };

    tokio::pin!(shutdown);
    let ended = node.ended(Some(job));
    tokio::pin!(ended);
    let mut interrupted = false;
    // The node runs every job of the directory: jobs other processes submitted through the
    // socket are not this run's to show.
    let show = |progress: &mut dyn Progress, c: &[Change]| {
        let ours: Vec<Change> = c.iter().filter(|c| c.job() == Some(job)).cloned().collect();
        if !ours.is_empty() {
            progress.changes(&ours, &spec);
        }
    };
    loop {
        tokio::select! {
            Some(c) = changes.recv() => show(progress, &c),
            _ = &mut ended => break,
            _ = &mut shutdown, if !interrupted => {
                interrupted = true;
                node.cancel(job, "interrupted");
            }
        }
    }
    // The job's last changes were sent before its end was.
    while let Ok(c) = changes.try_recv() {
        show(progress, &c);
    }
    drop(changes);
    // Jobs that other processes submitted here run in this process: it serves them to their
    // end (Ctrl-C cancels them) rather than taking them down with it.
    let others = store
        .jobs()?
        .iter()
        .filter(|j| j.id != job && !j.state.is_terminal())
        .count();
    if others > 0 && !interrupted {
        let dir = opts
            .state_dir
            .as_deref()
            .unwrap_or(std::path::Path::new("."));
        eprintln!("{}", socket::waiting_note(others, dir));
        tokio::select! {
            _ = node.ended(None) => {}
            _ = &mut shutdown => node.stop().await,
        }
    }
    // The request that ended the job (an approval, a cancel) gets its answer before this
    // process stops serving the directory.
    if let Some(served) = served {
        served.close(socket::ANSWER_WAIT).await;
    }
    // `[[notify]]`: what is still due goes out before this process exits (10 s at most).
    let unsent = node.deliver_notices(NOTIFY_WAIT).await;
    if !unsent.is_empty() {
        eprintln!("{}", unsent_note(&unsent, opts.state_dir.is_some()));
    }
    if let Some(tel) = opts.telemetry.clone() {
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
        slots: opts.workers.max(1),
        store: store.clone(),
    };
    progress.finish(&report);
    Ok(report)
}
