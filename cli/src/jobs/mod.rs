//! The one job client: submit, status, list, cancel, retry, approve, reject, output, report,
//! prune, workers and
//! job-id resolution, against a local state directory (`Local`: the host of the process that
//! holds it, through its socket or in this process) or a cluster (`Cluster`: the coordinator's
//! API on NATS and the `ORDO_LOGS` stream). Both send the host's verbs by name with JSON
//! bodies (`ordo_coordinator::host::api`). The job commands, the MCP server and the dashboard are
//! three faces of it; each renders the same answers its own way.
//!
//! Every failure is one `Error`, which knows its exit code (docs/design.md, "Exit codes"): 2
//! invalid input, 3 NATS or the coordinator unreachable, 1 anything else that failed, 130
//! interrupted.

mod cluster;
mod local;
mod workspace;

use std::collections::BTreeMap;

use ordo_formats::Diagnostic;
use ordo_plumbing::connect::ConnectError;
use ordo_proto::api::{
    self, ApiError, ApiReply, DecideRequest, ErrorKind, JobRef, JobStatus, JobSummary, JobsRequest,
    OutputReply, OutputRequest, PruneReply, PruneRequest, ReportData, ReportRequest, RetryRequest,
    StatusRequest, SubmitReply, SubmitRequest, WorkerInfo,
};
use ordo_proto::{Dag, JobId, TaskIndex, TaskPhase, names};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::args::Target;
use crate::args::exit;

pub use cluster::Cluster;
pub use local::{HELD_WAIT, Local};
pub use workspace::settle_workspace;

/// Everything a job request can fail with; `exit_code` maps it to docs/design.md, "Exit codes".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec did not load or validate (printed one diagnostic per line).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Spec(Vec<Diagnostic>),
    /// Bad input found before asking anyone: a job id, a task name, an environment variable.
    #[error("{0}")]
    Invalid(String),
    /// NATS could not be reached, or the connection options are wrong.
    #[error("{message}")]
    Connect { message: String, code: u8 },
    /// No coordinator answered.
    #[error(
        "cannot reach the coordinator on {url}: {what} on {subject} (is ordo-coordinator running?)"
    )]
    Unreachable {
        url: String,
        subject: String,
        what: String,
    },
    /// The coordinator answered with an error.
    #[error("{}", api_message(.0))]
    Api(ApiError),
    /// The job is not there.
    #[error("{}", not_found_message(job, message))]
    NotFound { job: JobId, message: String },
    /// The reply was not an `ApiReply` of the expected type.
    #[error("unexpected reply on {subject}: {reason}")]
    Reply { subject: String, reason: String },
    /// JetStream failed while reading task output.
    #[error("{0}")]
    Stream(String),
    /// The local state directory could not be used.
    #[error("{0}")]
    State(String),
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_message(e: &ApiError) -> String {
    match e.kind {
        ErrorKind::Internal => format!("the coordinator failed: {}", e.message),
        ErrorKind::Invalid | ErrorKind::NotFound => e.message.clone(),
    }
}

fn not_found_message(job: &JobId, message: &str) -> String {
    if message.contains(&job.to_string()) {
        message.to_string()
    } else if message.is_empty() {
        format!("job {job} not found")
    } else {
        format!("job {job} not found ({message})")
    }
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) | Error::Invalid(_) | Error::NotFound { .. } => exit::INVALID,
            Error::Connect { code, .. } => *code,
            Error::Unreachable { .. } | Error::Stream(_) => exit::UNREACHABLE,
            Error::Api(e) => match e.kind {
                ErrorKind::Invalid | ErrorKind::NotFound => exit::INVALID,
                ErrorKind::Internal => exit::JOB_FAILED,
            },
            Error::State(_) | Error::Reply { .. } | Error::Output(_) => exit::JOB_FAILED,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }

    /// Worth retrying while following a job: the coordinator may be restarting.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Api(e) => e.kind == ErrorKind::Internal,
            _ => false,
        }
    }

    /// Names the job in a `not_found` reply to a request about it.
    fn for_job(self, job: JobId) -> Error {
        match self {
            Error::Api(e) if e.kind == ErrorKind::NotFound => Error::NotFound {
                job,
                message: e.message,
            },
            other => other,
        }
    }

    fn from_connect(e: ConnectError, url: &str) -> Error {
        let (message, code) = match &e {
            ConnectError::Unreachable { source, .. } => (
                format!("cannot reach NATS at {}: {source}", redact(url)),
                exit::UNREACHABLE,
            ),
            ConnectError::Creds { .. } | ConnectError::Incomplete => (e.to_string(), exit::INVALID),
        };
        Error::Connect { message, code }
    }
}

/// `cancel` of a locally run job waits this long for its processes to be killed.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Decodes `{"ok": Rep}` or `{"error": {...}}`.
pub(crate) fn decode_reply<Rep: DeserializeOwned>(subject: &str, payload: &[u8]) -> Result<Rep> {
    match serde_json::from_slice::<ApiReply<Rep>>(payload) {
        Ok(ApiReply::Ok(v)) => Ok(v),
        Ok(ApiReply::Error(e)) => Err(Error::Api(e)),
        Err(e) => {
            // An error of a kind this CLI does not know still has a message worth showing.
            let message = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
            Err(Error::Reply {
                subject: subject.to_string(),
                reason: message.unwrap_or_else(|| e.to_string()),
            })
        }
    }
}

/// Per task: the bytes its output had in all, and the last of them kept.
pub type Output = BTreeMap<TaskIndex, (u64, Vec<u8>)>;

/// How a local state directory is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// It must exist already (reading commands: a missing one is an input error).
    Existing,
    /// Created if missing (submitting here).
    Create,
    /// Created if missing, and the jobs it left unfinished resume in this long-running process
    /// (`ordo mcp`, the dashboard). Whichever of `Create` and `Serve` holds the directory
    /// serves it on its socket while it runs.
    Serve,
}

/// The job client.
pub enum Jobs {
    Local(Local),
    /// Boxed: the connection is large.
    Cluster(Box<Cluster>),
}

impl Jobs {
    /// Opens the target: connects to NATS, or opens the state directory as `open` says.
    pub async fn open(target: &Target, open: Open) -> Result<Jobs> {
        Ok(match target {
            Target::Local { dir, run } => Jobs::Local(Local::open(dir, run, open).await?),
            Target::Cluster(nats) => Jobs::Cluster(Box::new(Cluster::new(nats))),
        })
    }

    /// One request: the verb by name with its JSON body, the `ApiReply` decoded. `what`
    /// names the body in errors.
    async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        verb: &str,
        req: &Req,
        what: &str,
    ) -> Result<Rep> {
        let body = serde_json::to_vec(req)
            .map_err(|e| Error::Invalid(format!("cannot encode the {verb} request: {e}")))?;
        let (reply, to) = match self {
            Jobs::Local(l) => (
                l.send(verb, body).await?,
                local::socket_path(l.dir()).display().to_string(),
            ),
            Jobs::Cluster(c) => (c.send(verb, body, what).await?, names::api_subject(verb)),
        };
        decode_reply(&format!("{to} ({verb})"), &reply)
    }

    /// `call` of a request about `job`: "not found" names it.
    async fn call_for<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        job: JobId,
        verb: &str,
        req: &Req,
    ) -> Result<Rep> {
        self.call(verb, req, &format!("the {verb} request"))
            .await
            .map_err(|e| e.for_job(job))
    }

    /// Submits a validated spec (its workspace settings made definite here, where the
    /// repository is found from the working directory); a local job starts running in the
    /// process that holds the state directory.
    pub async fn submit(&self, req: SubmitRequest, _dag: Dag) -> Result<JobId> {
        let mut req = req;
        let label = if req.source.is_empty() {
            req.spec.name.clone()
        } else {
            req.source.clone()
        };
        let shared = matches!(self, Jobs::Cluster(_));
        settle_workspace(&mut req.spec, &label, shared)
            .await
            .map_err(Error::Invalid)?;
        if let Jobs::Local(l) = self
            && let Some(argv) = l.agent_command()
        {
            req.spec.settings.agent_command = Some(argv.to_vec());
        }
        let what = if req.source.is_empty() || req.source == req.spec.name {
            format!("the spec of job '{}'", req.spec.name)
        } else {
            format!("the spec {} (job '{}')", req.source, req.spec.name)
        };
        let reply: SubmitReply = self.call(api::SUBMIT, &req, &what).await?;
        Ok(reply.job)
    }

    /// A job's summary and its whole task list (trimmed to one API message).
    pub async fn status(&self, job: JobId) -> Result<JobStatus> {
        self.call_for(job, api::STATUS, &StatusRequest::whole(job))
            .await
    }

    /// Page `page` (from 1, `page_size` tasks) of a job's tasks in `states` (all when empty),
    /// with the summary and the page's place (`JobStatus::page`).
    pub async fn status_page(
        &self,
        job: JobId,
        page: usize,
        page_size: usize,
        states: &[TaskPhase],
    ) -> Result<JobStatus> {
        self.status_where(job, page, page_size, states, None).await
    }

    /// Like `status_page`, only the tasks named `task` (when given).
    pub async fn status_where(
        &self,
        job: JobId,
        page: usize,
        page_size: usize,
        states: &[TaskPhase],
        task: Option<&str>,
    ) -> Result<JobStatus> {
        let mut req = StatusRequest::page(job, page, page_size, states.to_vec());
        req.task = task.map(str::to_string);
        self.call_for(job, api::STATUS, &req).await
    }

    /// The summary of a job without its tasks (one task at most is read).
    pub async fn summary(&self, job: JobId) -> Result<JobSummary> {
        Ok(self.status_page(job, 1, 1, &[]).await?.summary)
    }

    /// A task of a job by name, else by index, without reading the job's whole task list.
    /// A coordinator that does not page answers with the whole list (trimmed): it is searched.
    pub async fn find_task(&self, job: JobId, task: &str) -> Result<TaskIndex> {
        let named = self.status_where(job, 1, 1, &[], Some(task)).await?;
        if named.page.is_none() {
            return resolve_task(&named, task);
        }
        if let Some(t) = named.tasks.first() {
            return Ok(t.index);
        }
        if let Ok(i) = task.trim().parse::<u32>()
            && (i as usize) < named.summary.total
        {
            return Ok(TaskIndex(i));
        }
        Err(Error::Invalid(format!(
            "job {} has no task '{}'",
            named.summary.id,
            plain(task)
        )))
    }

    /// Jobs matching `req`, newest first.
    pub async fn list(&self, req: &JobsRequest) -> Result<Vec<JobSummary>> {
        self.call(api::JOBS, req, "the jobs request").await
    }

    /// Cancels a job: its running tasks are killed, the rest never start. A job run by a
    /// local host is waited for (a bounded time) until its processes are gone.
    pub async fn cancel(&self, job: JobId) -> Result<JobSummary> {
        let mut summary: JobSummary = self.call_for(job, api::CANCEL, &JobRef { job }).await?;
        if let Jobs::Local(_) = self {
            let started = std::time::Instant::now();
            while !summary.state.is_terminal() && started.elapsed() < CANCEL_WAIT {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                summary = self.summary(job).await?;
            }
        }
        Ok(summary)
    }

    /// Runs an ended job's tasks again, as the request says (which tasks, a new budget).
    pub async fn retry(&self, req: &RetryRequest) -> Result<JobSummary> {
        req.check_budget().map_err(Error::Invalid)?;
        self.call_for(req.job, api::RETRY, req).await
    }

    /// `approve` (`approve: true`) or `reject` a task awaiting approval (docs/design.md,
    /// "Quality gates: approvals"); a rejection needs its reason in `comment`. The job's
    /// summary once the decision is recorded.
    pub async fn decide(&self, req: &DecideRequest, approve: bool) -> Result<JobSummary> {
        if !approve && req.comment.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return Err(Error::Invalid(format!(
                "rejecting task {} needs a reason (--reason)",
                plain(&req.task)
            )));
        }
        let verb = if approve { api::APPROVE } else { api::REJECT };
        self.call_for(req.job, verb, req).await
    }

    /// The stored output of a job's tasks (or of one), the last `keep` bytes of each: kept
    /// with the attempts in a state directory, read from `ORDO_LOGS` on a cluster.
    pub async fn output(&self, job: JobId, task: Option<TaskIndex>, keep: usize) -> Result<Output> {
        match self {
            Jobs::Local(_) => {
                let req = OutputRequest { job, task, keep };
                let reply: OutputReply = self.call_for(job, api::OUTPUT, &req).await?;
                Ok(reply
                    .tasks
                    .into_iter()
                    .map(|t| (t.index, (t.bytes, t.tail.into_bytes())))
                    .collect())
            }
            Jobs::Cluster(c) => c.output(job, task, keep).await,
        }
    }

    /// The records a report is rendered from; `None`: the newest job.
    pub async fn report(&self, job: Option<JobId>) -> Result<ReportData> {
        let req = ReportRequest { job };
        match job {
            Some(j) => self.call_for(j, api::REPORT, &req).await,
            None => self
                .call(api::REPORT, &req, "a report request")
                .await
                .map_err(|e| match (e, self) {
                    (Error::Api(e), Jobs::Local(l)) if e.kind == ErrorKind::NotFound => {
                        Error::Invalid(format!("{} holds no jobs", l.dir().display()))
                    }
                    (e, _) => e,
                }),
        }
    }

    /// Removes finished jobs that ended more than `older_than_ms` ago; how many.
    pub async fn prune(&self, older_than_ms: u64) -> Result<usize> {
        let req = PruneRequest {
            older_than_ms,
            job: None,
        };
        let reply: PruneReply = self.call(api::PRUNE, &req, "the prune request").await?;
        Ok(reply.removed)
    }

    /// Removes the worktrees and task branches a finished job's attempts kept (on a cluster,
    /// the workers do); its record stays.
    pub async fn prune_job(&self, job: JobId) -> Result<()> {
        let req = PruneRequest {
            older_than_ms: 0,
            job: Some(job),
        };
        let _: PruneReply = self.call_for(job, api::PRUNE, &req).await?;
        Ok(())
    }

    /// The workers of a cluster; a local host has none (its jobs run in its process).
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.call(api::WORKERS, &serde_json::json!({}), "the workers request")
            .await
    }

    /// A job id, or an unambiguous prefix of one.
    pub async fn resolve(&self, text: &str) -> Result<JobId> {
        let text = text.trim();
        if let Ok(id) = text.parse::<JobId>() {
            return Ok(id);
        }
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // Decided before asking anyone: bad input exits 2 even with no coordinator.
            return Err(Error::Invalid(format!(
                "no job '{}' (not a job id or the start of one)",
                plain(text)
            )));
        }
        let req = JobsRequest {
            search: Some(text.to_string()),
            ..Default::default()
        };
        let hits: Vec<JobId> = self
            .list(&req)
            .await?
            .into_iter()
            .map(|j| j.id)
            .filter(|id| id.to_string().starts_with(text))
            .collect();
        match hits.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::Invalid(format!(
                "no job '{}'{}",
                plain(text),
                self.place()
            ))),
            _ => Err(Error::Invalid(format!(
                "'{}' matches {} jobs; give more of the id",
                plain(text),
                hits.len()
            ))),
        }
    }

    /// Whether submitted jobs run in this process (it holds the state directory).
    pub async fn runs_here(&self) -> bool {
        match self {
            Jobs::Local(l) => l.node().await.is_some(),
            Jobs::Cluster(_) => false,
        }
    }

    /// Waits for the jobs this process runs to end (a one-shot command with `--state`).
    pub async fn wait_idle(&self) {
        if let Jobs::Local(l) = self {
            l.wait_idle().await;
        }
    }

    /// Cancels the jobs this process runs and waits (a bounded time) for them to end.
    pub async fn stop(&self) {
        if let Jobs::Local(l) = self {
            l.stop().await;
        }
    }

    /// ` in the state directory DIR` or ` on the coordinator`, for messages.
    fn place(&self) -> String {
        match self {
            Jobs::Local(l) => format!(" in the state directory {}", l.dir().display()),
            Jobs::Cluster(_) => " on the coordinator".into(),
        }
    }
}

/// A task of `status` by name, else by index.
pub fn resolve_task(status: &JobStatus, task: &str) -> Result<TaskIndex> {
    if let Some(t) = status.tasks.iter().find(|t| t.name == task) {
        return Ok(t.index);
    }
    if let Ok(i) = task.trim().parse::<u32>()
        && status.tasks.iter().any(|t| t.index == TaskIndex(i))
    {
        return Ok(TaskIndex(i));
    }
    Err(Error::Invalid(format!(
        "job {} has no task '{}'",
        status.summary.id,
        plain(task)
    )))
}

/// Text from outside without control characters (they could drive the terminal).
pub fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `user:password@` / `token@` in a URL is not for messages.
pub fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let u = u.trim();
            match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}***{}", &u[..s + 3], &u[at..]),
                (None, Some(at)) => format!("***{}", &u[at..]),
                _ => u.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Who a decision from this command line is by: on a cluster the NATS user when the
/// connection names one (`--user`, or the URL's `user@`), else the OS user (`USER`, `LOGNAME`,
/// else `uid N`).
pub fn decider(target: &Target) -> String {
    if let Target::Cluster(nats) = target {
        let from_url = nats.url.as_deref().and_then(|u| {
            let rest = u.split_once("://").map_or(u, |(_, r)| r);
            let auth = rest.split_once('@')?.0;
            Some(
                auth.split_once(':')
                    .map_or(auth, |(user, _)| user)
                    .to_string(),
            )
        });
        if let Some(user) = nats.user.clone().or(from_url).filter(|u| !u.is_empty()) {
            return user;
        }
    }
    os_user()
}

/// The OS user running this process.
pub fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.trim().is_empty())
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

#[cfg(test)]
mod tests {
    use ordo_proto::{JobState, TaskPhase};

    use super::*;
    use crate::manage::tests::{JOB, job, status, summary, task};

    #[test]
    fn replies_decode() {
        let s: JobSummary = decode_reply(
            "ordo.api.cancel",
            serde_json::to_string(&ApiReply::Ok(summary(JobState::Cancelled)))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(s, summary(JobState::Cancelled));

        let w: Vec<WorkerInfo> = decode_reply("s", br#"{"ok": []}"#).unwrap();
        assert!(w.is_empty());

        let e = decode_reply::<JobStatus>(
            "ordo.api.status",
            br#"{"error": {"kind": "not_found", "message": "no such job"}}"#,
        )
        .unwrap_err();
        assert!(matches!(&e, Error::Api(a) if a.kind == ErrorKind::NotFound));
        let e = e.for_job(job());
        assert_eq!(e.to_string(), format!("job {JOB} not found (no such job)"));
        assert_eq!(e.exit_code(), exit::INVALID);

        let e = decode_reply::<JobStatus>(
            "s",
            br#"{"error": {"kind": "invalid", "message": "cycle: a -> b -> a"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "cycle: a -> b -> a");
        assert_eq!(e.exit_code(), exit::INVALID);

        let e = decode_reply::<JobStatus>(
            "s",
            br#"{"error": {"kind": "internal", "message": "disk full"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the coordinator failed: disk full");
        assert!(e.is_transient());

        // Unknown error kinds keep their message; garbage is reported, never a panic.
        let e = decode_reply::<JobStatus>(
            "ordo.api.status",
            br#"{"error": {"kind": "busy", "message": "try later"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected reply on ordo.api.status: try later"
        );
        for junk in [&b""[..], b"null", b"{\"ok\": 3}", b"\xff\xfe", b"[]"] {
            let e = decode_reply::<JobStatus>("s", junk).unwrap_err();
            assert!(matches!(e, Error::Reply { .. }), "{junk:?}");
            assert_eq!(e.exit_code(), exit::JOB_FAILED);
        }
        // A state this client does not know is a reply it cannot read, not a panic.
        let e = decode_reply::<JobSummary>(
            "s",
            format!(
                r#"{{"ok": {{"id": "{JOB}", "name": "n", "state": "paused", "created_ms": 0,
                "finished_ms": null, "reason": null, "total": 0, "succeeded": 0, "failed": 0,
                "running": 0}}}}"#
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Reply { .. }), "{e}");
    }

    #[test]
    fn not_found_message_names_the_job_once() {
        let msg = |m: &str| {
            Error::NotFound {
                job: job(),
                message: m.into(),
            }
            .to_string()
        };
        assert_eq!(msg(""), format!("job {JOB} not found"));
        assert_eq!(
            msg(&format!("unknown job {JOB}")),
            format!("unknown job {JOB}")
        );
    }

    #[test]
    fn exit_codes() {
        let api = |kind| Error::Api(ApiError::new(kind, "m"));
        assert_eq!(api(ErrorKind::Invalid).exit_code(), 2);
        assert_eq!(api(ErrorKind::NotFound).exit_code(), 2);
        assert_eq!(api(ErrorKind::Internal).exit_code(), 1);
        assert_eq!(Error::Spec(vec![]).exit_code(), 2);
        assert_eq!(Error::Stream("x".into()).exit_code(), 3);
        assert_eq!(Error::Interrupted.exit_code(), 130);
        assert!(!api(ErrorKind::Invalid).is_transient());
        assert!(!Error::Interrupted.is_transient());
        assert_eq!(
            Error::from_connect(ConnectError::Incomplete, "u").exit_code(),
            2
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://u:p@h:4222, tls://tok@h2"),
            "nats://***@h:4222,tls://***@h2"
        );
        assert_eq!(redact("u:p@h"), "***@h");
    }

    #[test]
    fn tasks_resolve_by_name_then_index() {
        let st = status(
            JobState::Running,
            vec![
                task(0, "1", TaskPhase::Pending),
                task(1, "b", TaskPhase::Pending),
            ],
        );
        assert_eq!(resolve_task(&st, "b").unwrap(), TaskIndex(1));
        assert_eq!(
            resolve_task(&st, "1").unwrap(),
            TaskIndex(0),
            "names win over indexes"
        );
        assert_eq!(resolve_task(&st, "0").unwrap(), TaskIndex(0));
        let e = resolve_task(&st, "7").unwrap_err();
        assert_eq!(e.to_string(), format!("job {JOB} has no task '7'"));
        assert_eq!(e.exit_code(), exit::INVALID);
    }

    /// Ids resolve in full or by a unique start, in a state directory and on a cluster alike;
    /// text that cannot start an id is refused before anything is asked.
    #[tokio::test(flavor = "multi_thread")]
    async fn job_ids_resolve_in_full_or_by_their_start() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Local {
            dir: dir.path().to_path_buf(),
            run: crate::args::RunArgs::default(),
        };
        let jobs = Jobs::open(&target, Open::Create).await.unwrap();
        assert_eq!(jobs.resolve(&format!(" {JOB}\n")).await.unwrap(), job());
        let e = jobs.resolve("xyz").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "no job 'xyz' (not a job id or the start of one)"
        );
        assert_eq!(e.exit_code(), exit::INVALID);
        assert_eq!(
            jobs.resolve("a\u{1b}[2Jb").await.unwrap_err().to_string(),
            "no job 'a [2Jb' (not a job id or the start of one)"
        );
        let e = jobs.resolve("0189").await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no job '0189' in the state directory")
        );
        let spec: ordo_proto::JobSpec =
            toml::from_str("name = \"j\"\n[[tasks]]\nname = \"a\"\ncommand = \"true\"\n").unwrap();
        let dag = ordo_proto::validate::validate(&spec).unwrap();
        let req = SubmitRequest {
            spec,
            source: "test".into(),
            default_mode: None,
            max_parallel: None,
        };
        let id = jobs.submit(req, dag).await.unwrap();
        jobs.wait_idle().await;
        let start = &id.to_string()[..8];
        assert_eq!(jobs.resolve(start).await.unwrap(), id);
        assert_eq!(
            jobs.status(id).await.unwrap().summary.state,
            JobState::Succeeded
        );
    }
}
