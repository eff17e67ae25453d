//! The job client of a local state directory. When another process holds the directory (an
//! `ordo run --state`, `ordo ui`, `ordo mcp` running), every request goes to it through the
//! directory's socket; when nobody does, this process holds it: it opens the store and runs a
//! local host (`crate::local::Node`), serving the socket itself while it runs jobs. Either way
//! a request is a verb by name with a JSON body, answered by the host's one implementation
//! of it, as on a cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_coordinator::host::Recover;
use ordo_coordinator::report::ReportData;
use ordo_coordinator::store::{self, Store};
use ordo_proto::api::{
    self, JobRef, JobStatus, JobSummary, JobsRequest, OutputReply, OutputRequest, PruneReply,
    PruneRequest, ReportRequest, RetryRequest, StatusRequest, SubmitReply, SubmitRequest,
};
use ordo_proto::{JobId, TaskIndex, TaskPhase, names};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cluster::decode_reply;
use super::{Error, Open, Output, Result};
use crate::args::{RunArgs, default_workers};
use crate::local::socket::{self, Claim, Client, Served};
use crate::local::{Node, NodeOptions};

/// `cancel` waits this long for a job's processes to be killed.
const CANCEL_WAIT: Duration = Duration::from_secs(15);
/// How many times one request comes to the directory again when its server is gone.
const RELINKS: u32 = 3;
/// A stopping server waits this long for its jobs to end.
const STOP_WAIT: Duration = Duration::from_secs(10);
pub struct Local {
    dir: PathBuf,
    /// Replaced when the process serving the directory is gone (`call`), by one request at a
    /// time (`relink`).
    link: std::sync::Mutex<Link>,
    relink: tokio::sync::Mutex<()>,
    run: RunArgs,
    open: Open,
    agent_command: Option<Vec<String>>,
}

#[derive(Clone)]
enum Link {
    /// This process holds the directory and runs its jobs (serving the socket while `served`).
    Own {
        node: Node,
        _served: Option<Arc<Served>>,
    },
    /// Another process holds it.
    Socket(Client),
}

impl Local {
    /// Opens the state directory as `open` says: through the socket of the process holding
    /// it, else in this process.
    pub async fn open(dir: &Path, run: &RunArgs, open: Open) -> Result<Local> {
        let agent_command = run.agent_argv().map_err(Error::Invalid)?;
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let link = Local::link(&dir, run, open, false).await?;
        Ok(Local {
            dir,
            link: std::sync::Mutex::new(link),
            relink: tokio::sync::Mutex::new(()),
            run: run.clone(),
            open,
            agent_command,
        })
    }

    /// Comes to the directory as `open` says; `again` when the process that served it is gone
    /// (its unfinished jobs are orphans then, taken up here unless this is a one-shot read).
    async fn link(dir: &Path, run: &RunArgs, open: Open, again: bool) -> Result<Link> {
        if open == Open::Existing && !dir.join(names::STATE_FILE).is_file() {
            return Err(Error::Invalid(format!(
                "{} holds no ordo state (no {})",
                dir.display(),
                names::STATE_FILE
            )));
        }
        match socket::claim(dir).await {
            Ok(Claim::Served(client)) => Ok(Link::Socket(client)),
            Ok(Claim::Held(store)) => Local::own(dir, store, run, open, again).await,
            Err(store::Error::InUse(path)) => Err(Error::State(format!(
                "{} is held by another ordo process that does not answer on {} (waited {}s)",
                path.display(),
                socket::path(dir).display(),
                socket::HELD_WAIT.as_secs()
            ))),
            Err(e) => Err(Error::State(format!("cannot use the state directory: {e}"))),
        }
    }

    /// This process holds the directory: a local host runs here, and serves the socket
    /// unless this is a one-shot read.
    async fn own(dir: &Path, store: Store, run: &RunArgs, open: Open, again: bool) -> Result<Link> {
        let opts = NodeOptions {
            slots: run.workers.unwrap_or_else(default_workers),
            fixed: run.workers.is_some(),
            recover: match open {
                Open::Serve => Recover::All,
                Open::Create if again => Recover::All,
                Open::Existing | Open::Create => Recover::None,
            },
            telemetry: None,
        };
        let node = Node::start(Arc::new(store), true, opts)
            .await
            .map_err(|e| Error::State(format!("state directory {}: {e}", dir.display())))?;
        let served = match open {
            Open::Existing => None,
            Open::Create | Open::Serve => Some(socket::serve(dir, node.clone()).map_err(|e| {
                Error::State(format!(
                    "cannot serve the state directory on {}: {e}",
                    socket::path(dir).display()
                ))
            })?),
        };
        Ok(Link::Own {
            node,
            _served: served.map(Arc::new),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node this process runs, when it holds the directory.
    pub fn node(&self) -> Option<Node> {
        match self.current() {
            Link::Own { node, .. } => Some(node),
            Link::Socket(_) => None,
        }
    }

    fn current(&self) -> Link {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Comes to the directory again, its server gone: once for all the requests that found it
    /// gone at the same time.
    async fn relink(&self) -> Result<Link> {
        let _one = self.relink.lock().await;
        if let own @ Link::Own { .. } = self.current() {
            // Another request of this process came to it first.
            return Ok(own);
        }
        let new = Local::link(&self.dir, &self.run, self.open, true).await?;
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
        Ok(new)
    }

    /// One request: a verb and its JSON body, the `ApiReply` decoded.
    async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        verb: &str,
        req: &Req,
    ) -> Result<Rep> {
        let body = serde_json::to_vec(req)
            .map_err(|e| Error::Invalid(format!("cannot encode the {verb} request: {e}")))?;
        let mut link = self.current();
        let mut relinked = 0;
        let reply = loop {
            let reply = match &link {
                Link::Own { node, .. } => node.call(verb, body.clone()).await,
                Link::Socket(client) => match client.call(verb, &body).await {
                    // Nobody listens any more (the request was not sent): the process that
                    // served the directory has ended. Come to it again, as `open` would.
                    Err(e) if socket::never_sent(&e) && relinked < RELINKS => {
                        relinked += 1;
                        link = self.relink().await?;
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::State(format!(
                            "the process serving {} did not answer: {e}",
                            self.dir.display()
                        )));
                    }
                    Ok(reply) => break reply,
                },
            };
            break reply.map_err(|e| Error::State(e.to_string()))?;
        };
        decode_reply(
            &format!("{} ({verb})", socket::path(&self.dir).display()),
            &reply,
        )
    }

    pub async fn submit(&self, req: SubmitRequest) -> Result<JobId> {
        let mut req = req;
        if let Some(argv) = &self.agent_command {
            req.spec.settings.agent_command = Some(argv.clone());
        }
        let reply: SubmitReply = self.call(api::SUBMIT, &req).await?;
        Ok(reply.job)
    }

    pub async fn status(&self, job: JobId) -> Result<JobStatus> {
        self.call(api::STATUS, &StatusRequest::whole(job))
            .await
            .map_err(|e| e.for_job(job))
    }

    /// Page `page` (from 1) of a job's tasks in `states` (and named `task`).
    pub async fn status_page(
        &self,
        job: JobId,
        page: usize,
        page_size: usize,
        states: &[TaskPhase],
        task: Option<&str>,
    ) -> Result<JobStatus> {
        let mut req = StatusRequest::page(job, page, page_size, states.to_vec());
        req.task = task.map(str::to_string);
        self.call(api::STATUS, &req)
            .await
            .map_err(|e| e.for_job(job))
    }

    pub async fn list(&self, req: &JobsRequest) -> Result<Vec<JobSummary>> {
        self.call(api::JOBS, req).await
    }

    /// Cancels a job and waits (a bounded time) for its processes to be killed.
    pub async fn cancel(&self, job: JobId) -> Result<JobSummary> {
        let summary: JobSummary = self
            .call(api::CANCEL, &JobRef { job })
            .await
            .map_err(|e| e.for_job(job))?;
        let started = Instant::now();
        let mut summary = summary;
        while !summary.state.is_terminal() && started.elapsed() < CANCEL_WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
            summary = self.status_page(job, 1, 1, &[], None).await?.summary;
        }
        Ok(summary)
    }

    pub async fn retry(&self, req: &RetryRequest) -> Result<JobSummary> {
        self.call(api::RETRY, req)
            .await
            .map_err(|e| e.for_job(req.job))
    }

    /// The output kept with each task's last attempt.
    pub async fn output(&self, job: JobId, task: Option<TaskIndex>, keep: usize) -> Result<Output> {
        let req = OutputRequest { job, task, keep };
        let reply: OutputReply = self
            .call(api::OUTPUT, &req)
            .await
            .map_err(|e| e.for_job(job))?;
        Ok(reply
            .tasks
            .into_iter()
            .map(|t| (t.index, (t.bytes, t.tail.into_bytes())))
            .collect())
    }

    pub async fn report(&self, job: Option<JobId>) -> Result<ReportData> {
        let reply = self.call(api::REPORT, &ReportRequest { job }).await;
        match (job, reply) {
            (Some(j), r) => r.map_err(|e| e.for_job(j)),
            (None, Err(Error::Api(e))) if e.kind == api::ErrorKind::NotFound => Err(
                Error::Invalid(format!("{} holds no jobs", self.dir.display())),
            ),
            (None, r) => r,
        }
    }

    /// Removes old finished jobs, and the worktrees their tasks kept.
    pub async fn prune(&self, older_than_ms: u64) -> Result<usize> {
        let req = PruneRequest {
            older_than_ms,
            job: None,
        };
        let reply: PruneReply = self.call(api::PRUNE, &req).await?;
        Ok(reply.removed)
    }

    /// Removes the worktrees and task branches a finished job's attempts kept.
    pub async fn prune_job(&self, job: JobId) -> Result<()> {
        let req = PruneRequest {
            older_than_ms: 0,
            job: Some(job),
        };
        let _: PruneReply = self
            .call(api::PRUNE, &req)
            .await
            .map_err(|e| e.for_job(job))?;
        Ok(())
    }

    /// Waits for every job this process runs to end.
    pub async fn wait_idle(&self) {
        if let Some(node) = self.node() {
            node.ended(None).await;
        }
    }

    /// Cancels the jobs this process runs and waits (a bounded time) for them to end.
    pub async fn stop(&self) {
        if let Some(node) = self.node() {
            let _ = tokio::time::timeout(STOP_WAIT, node.stop()).await;
        }
    }
}
