//! The job client of a local state directory: one redb store opened for this process's
//! lifetime, read by every request, and jobs run here in the background by the local runner
//! (`run::run_recorded`), each with a cancel handle. Reads go through the same views as the
//! coordinator's API (`ordo_coordinator::views`, `report`), so a job looks the same wherever it
//! runs. A serving process (`ordo mcp`, the dashboard) resumes the jobs a dead one left
//! unfinished; when it stops, it cancels the jobs it runs and waits for their processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ordo_coordinator::driver::Policy;
use ordo_coordinator::engine::Again;
use ordo_coordinator::report as data;
use ordo_coordinator::store::{Batch, Change, JobRecord, Store};
use ordo_coordinator::views;
use ordo_proto::api::{
    JobStatus, JobSummary, JobsRequest, ReportData, RetryRequest, SubmitRequest,
};
use ordo_proto::{Dag, JobId, JobState, TaskIndex, TaskPhase, names, now_ms};
use tokio::sync::{oneshot, watch};

use super::{Error, Open, Output, Result};
use crate::args::{self, RunArgs, default_workers};
use crate::progress::Quiet;
use crate::run::{self, RunOptions, Start};
use ordo_worker::workspace;

/// `cancel` waits this long for a job's processes to be killed.
const CANCEL_WAIT: Duration = Duration::from_secs(15);
/// A stopping server waits this long for its jobs to end.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// The reason recorded for jobs cancelled through the client (the coordinator's words).
const CANCEL_REASON: &str = "cancelled by user";

pub struct Local {
    store: Arc<Store>,
    dir: PathBuf,
    /// Task slots of each job run here (`None`: what the job was recorded with, else the
    /// CPUs).
    workers: Option<u32>,
    agent_command: Option<Vec<String>>,
    /// Jobs running in this process.
    running: Arc<Mutex<HashMap<JobId, RunningJob>>>,
}

struct RunningJob {
    cancel: Option<oneshot::Sender<String>>,
    /// Turns true when the runner returned.
    done: watch::Receiver<bool>,
}

impl Local {
    /// Opens the state directory as `open` says.
    pub fn open(dir: &Path, run: &RunArgs, open: Open) -> Result<Local> {
        let agent_command = run.agent_argv().map_err(Error::Invalid)?;
        if open == Open::Existing && !dir.join(names::STATE_FILE).is_file() {
            return Err(Error::Invalid(format!(
                "{} holds no ordo state (no {})",
                dir.display(),
                names::STATE_FILE
            )));
        }
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let store = Store::open(&dir)
            .map_err(|e| Error::State(format!("cannot use the state directory: {e}")))?;
        let local = Local {
            store: Arc::new(store),
            dir,
            workers: run.workers,
            agent_command,
            running: Arc::new(Mutex::new(HashMap::new())),
        };
        if open == Open::Serve {
            local.resume_unfinished();
        }
        Ok(local)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs a store call on this (multi-threaded) runtime without stalling its other tasks;
    /// a failure names the state directory.
    fn read<T>(&self, f: impl FnOnce(&Store) -> ordo_coordinator::store::Result<T>) -> Result<T> {
        tokio::task::block_in_place(|| f(&self.store))
            .map_err(|e| Error::State(format!("state directory {}: {e}", self.dir.display())))
    }

    fn record(&self, job: JobId) -> Result<JobRecord> {
        self.read(|s| s.job(&job))?
            .ok_or_else(|| self.not_found(job))
    }

    fn not_found(&self, job: JobId) -> Error {
        Error::NotFound {
            job,
            message: format!("no job {job} in the state directory {}", self.dir.display()),
        }
    }

    fn options(&self, record: &JobRecord) -> RunOptions {
        RunOptions {
            workers: self.slots(record.options.slots),
            default_mode: record.options.default_mode,
            max_parallel: record.options.max_parallel,
            state_dir: None,
            source: record.source.clone(),
            telemetry: None,
        }
    }

    /// Slots for a recorded job: `--workers`, else what it was recorded with, else the CPUs.
    fn slots(&self, recorded: Option<u32>) -> u32 {
        self.workers
            .or(recorded)
            .unwrap_or_else(default_workers)
            .max(1)
    }

    pub async fn submit(&self, req: SubmitRequest, dag: Dag) -> Result<JobId> {
        let mut spec = req.spec;
        let label = if req.source.is_empty() {
            spec.name.clone()
        } else {
            req.source.clone()
        };
        run::settle_workspace(&mut spec, &label, false)
            .await
            .map_err(Error::Invalid)?;
        if let Some(argv) = &self.agent_command {
            spec.settings.agent_command = Some(argv.clone());
        }
        let opts = RunOptions {
            workers: args::slots(self.workers, req.max_parallel, &spec),
            default_mode: req.default_mode,
            max_parallel: req.max_parallel,
            state_dir: None,
            source: req.source,
            telemetry: None,
        };
        let record = tokio::task::block_in_place(|| run::insert_job(&self.store, &spec, &opts))
            .map_err(|e| Error::State(format!("state directory {}: {e:#}", self.dir.display())))?;
        let id = record.id;
        self.start(record, Start::New, dag, opts);
        Ok(id)
    }

    pub fn status(&self, job: JobId) -> Result<JobStatus> {
        self.read(|s| views::status(s, &job))?
            .ok_or_else(|| self.not_found(job))
    }

    /// Page `page` (from 1) of a job's tasks in `states` (and named `task`).
    pub fn status_page(
        &self,
        job: JobId,
        page: usize,
        page_size: usize,
        states: &[TaskPhase],
        task: Option<&str>,
    ) -> Result<JobStatus> {
        self.read(|s| views::status_page(s, &job, None, page, page_size, states, task))?
            .ok_or_else(|| self.not_found(job))
    }

    pub fn list(&self, req: &JobsRequest) -> Result<Vec<JobSummary>> {
        self.read(|s| views::jobs(s, req))
    }

    /// Cancels a job this process runs and waits for its processes to be killed; a job that
    /// ended is left as it is.
    pub async fn cancel(&self, job: JobId) -> Result<JobSummary> {
        let record = self.record(job)?;
        let waiting = {
            let mut running = self.running.lock().unwrap();
            running.get_mut(&job).map(|r| {
                if let Some(tx) = r.cancel.take() {
                    let _ = tx.send(CANCEL_REASON.into());
                }
                r.done.clone()
            })
        };
        match waiting {
            Some(mut done) => {
                let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
            }
            None if !record.state.is_terminal() => {
                return Err(Error::Invalid(format!(
                    "job {job} is not running in this process (an interrupted `ordo run --state \
                     {}` resumes it when run again)",
                    self.dir.display()
                )));
            }
            None => {}
        }
        let record = self.record(job)?;
        let tasks = self.read(|s| s.tasks(&job))?;
        Ok(views::summary(&record, &tasks))
    }

    /// Runs an ended job's unsuccessful tasks again, here.
    pub fn retry(&self, req: &RetryRequest) -> Result<JobSummary> {
        let job = req.job;
        let record = self.record(job)?;
        if !record.state.is_terminal() || self.running.lock().unwrap().contains_key(&job) {
            return Err(Error::Invalid(format!(
                "job {job} is still {}",
                record.state
            )));
        }
        let dag = ordo_proto::validate::validate(&record.spec).map_err(|_| {
            Error::State(format!("the stored spec of job {job} no longer validates"))
        })?;
        let again = Again::of(req, &dag).map_err(Error::Invalid)?;
        let mut changes = vec![Change::Job {
            job,
            state: JobState::Running,
            at: now_ms(),
            reason: None,
        }];
        if req.max_cost_usd.is_some() || req.max_tokens.is_some() {
            changes.push(Change::Budget {
                job,
                max_cost_usd: req.max_cost_usd,
                max_tokens: req.max_tokens,
            });
        }
        self.read(|s| {
            s.commit(&Batch {
                now: now_ms(),
                changes: &changes,
                ..Default::default()
            })
        })?;
        let record = self.record(job)?;
        let tasks = self.read(|s| s.tasks(&job))?;
        let summary = views::summary(&record, &tasks);
        let opts = self.options(&record);
        self.start(record, Start::Retry(again), dag, opts);
        Ok(summary)
    }

    /// The output tails the runner kept of each task's last attempt.
    pub fn output(&self, job: JobId, task: Option<TaskIndex>, keep: usize) -> Result<Output> {
        self.record(job)?;
        let attempts = self.read(|s| s.attempts(&job))?;
        let mut out = Output::new();
        for a in attempts {
            if task.is_some_and(|t| t != a.index) {
                continue;
            }
            let bytes = a.output_tail.into_bytes();
            let cut = bytes.len().saturating_sub(keep);
            out.insert(a.index, (a.output_bytes, bytes[cut..].to_vec()));
        }
        Ok(out)
    }

    pub fn report(&self, job: Option<JobId>) -> Result<ReportData> {
        let job = match job {
            Some(job) => job,
            None => self
                .read(data::latest)?
                .ok_or_else(|| Error::Invalid(format!("{} holds no jobs", self.dir.display())))?,
        };
        self.read(|s| data::gather(s, &job))?
            .ok_or_else(|| self.not_found(job))
    }

    /// Removes old finished jobs, and the worktrees their tasks kept (their integration
    /// branches stay: they are the jobs' results).
    pub async fn prune(&self, older_than_ms: u64) -> Result<usize> {
        let pruned = self.read(|s| s.prune(now_ms(), older_than_ms))?;
        for job in pruned.iter().filter(|j| j.spec.uses_worktrees()) {
            if let Some(repo) = &job.spec.settings.repository {
                workspace::remove_job(repo, &job.id).await;
            }
        }
        Ok(pruned.len())
    }

    /// Removes the worktrees and task branches a finished job's attempts kept; its record stays.
    pub async fn prune_job(&self, job: JobId) -> Result<()> {
        let rec = self.record(job)?;
        if rec.finished_ms.is_none() {
            return Err(Error::Invalid(format!(
                "job {job} has not finished: its worktrees are in use"
            )));
        }
        if rec.spec.uses_worktrees()
            && let Some(repo) = &rec.spec.settings.repository
        {
            workspace::remove_job(repo, &job).await;
        }
        Ok(())
    }

    /// Runs a recorded job in the background; registers its cancel handle first.
    fn start(&self, record: JobRecord, start: Start, dag: Dag, opts: RunOptions) {
        let id = record.id;
        let (cancel_tx, cancel_rx) = oneshot::channel::<String>();
        let (done_tx, done_rx) = watch::channel(false);
        self.running.lock().unwrap().insert(
            id,
            RunningJob {
                cancel: Some(cancel_tx),
                done: done_rx,
            },
        );
        let running = self.running.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let cancel = async move {
                match cancel_rx.await {
                    Ok(reason) => reason,
                    // Never cancelled.
                    Err(_) => std::future::pending().await,
                }
            };
            let policy = Policy::LOCAL_DURABLE;
            let result =
                run::run_recorded(store, record, start, policy, dag, opts, &mut Quiet, cancel)
                    .await;
            if let Err(e) = result {
                eprintln!("ordo: job {id}: {e:#}");
            }
            running.lock().unwrap().remove(&id);
            let _ = done_tx.send(true);
        });
    }

    /// Resumes the jobs an earlier process left unfinished (it was killed).
    fn resume_unfinished(&self) {
        let jobs = match self.store.jobs() {
            Ok(j) => j,
            Err(e) => {
                eprintln!("ordo: cannot read the state directory: {e}");
                return;
            }
        };
        for rec in jobs.into_iter().filter(|j| !j.state.is_terminal()) {
            let dag = match ordo_proto::validate::validate(&rec.spec) {
                Ok(dag) => dag,
                Err(errors) => {
                    eprintln!(
                        "ordo: cannot resume job {}: {}",
                        rec.id,
                        errors.first().map(ToString::to_string).unwrap_or_default()
                    );
                    continue;
                }
            };
            eprintln!("ordo: resuming job {} '{}'", rec.id, rec.name);
            let opts = self.options(&rec);
            self.start(rec, Start::Resume, dag, opts);
        }
    }

    /// Waits for every job this process runs to end.
    pub async fn wait_idle(&self) {
        let waits: Vec<_> = self
            .running
            .lock()
            .unwrap()
            .values()
            .map(|r| r.done.clone())
            .collect();
        for mut d in waits {
            let _ = d.wait_for(|d| *d).await;
        }
    }

    /// Cancels the jobs still running and waits (a bounded time) for them to end.
    pub async fn stop(&self) {
        let waits: Vec<_> = {
            let mut running = self.running.lock().unwrap();
            running
                .values_mut()
                .map(|r| {
                    if let Some(tx) = r.cancel.take() {
                        let _ = tx.send("stopped".into());
                    }
                    r.done.clone()
                })
                .collect()
        };
        let all = futures::future::join_all(waits.into_iter().map(|mut d| async move {
            let _ = d.wait_for(|d| *d).await;
        }));
        let _ = tokio::time::timeout(STOP_WAIT, all).await;
    }
}
