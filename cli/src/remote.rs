//! The remote commands (`submit`, `status`, `jobs`, `watch`, `logs`, `cancel`, `retry`,
//! `workers`): they reach a running `ordo-coordinator` through NATS only, with JSON requests on
//! `ordo.api.<verb>` (proto `api`) and task output read from the `ORDO_LOGS` stream.
//! Every failure is one `CallError`, which knows its exit code (DESIGN §6): 2 invalid input,
//! 3 NATS or the coordinator unreachable, 1 job failed, 130 interrupted.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use ordo_coordinator::engine::JobState;
use ordo_proto::api::{
    self, ApiError, ApiReply, ErrorKind, JobRef, JobStatus, JobSummary, JobsRequest, RetryRequest,
    SubmitReply, SubmitRequest, TaskStatus, WorkerInfo,
};
use ordo_proto::connect::{ConnectError, NatsArgs};
use ordo_proto::{ExecutionMode, JobId, JobSpec, names};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::formats::{self, Diagnostic, Format, LoadOptions};

/// Exit codes (DESIGN §6).
pub mod exit {
    pub const OK: u8 = 0;
    pub const JOB_FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// Connecting to NATS fails after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An API request without a reply after this long means the coordinator is unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `watch` / `submit --wait` poll `status` this often.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Following commands tolerate failing requests this long (a coordinator restart) before exit 3.
const OUTAGE_LIMIT: Duration = Duration::from_secs(30);
/// `logs --follow` checks whether the job ended this often.
const LOGS_STATUS_EVERY: Duration = Duration::from_secs(1);
/// `logs` stops when no output arrives for this long once the job's output is all stored...
const LOGS_IDLE: Duration = Duration::from_secs(2);
/// ... or this long when the server said nothing more is pending.
const LOGS_QUIET: Duration = Duration::from_millis(500);
/// Reasons are cut to this many characters in one-line renderings.
const MAX_REASON: usize = 160;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Parallel,
    Sequential,
}

impl From<Mode> for ExecutionMode {
    fn from(m: Mode) -> ExecutionMode {
        match m {
            Mode::Parallel => ExecutionMode::Parallel,
            Mode::Sequential => ExecutionMode::Sequential,
        }
    }
}

/// The spec file of `submit` and how to read it (same flags as `ordo run`).
#[derive(Clone, Debug, clap::Args)]
pub struct SubmitSpec {
    /// The job spec: ordo TOML/JSON, Prompter TOML, subtasks JSON, TaskMaster tasks.json, or a
    /// Markdown task document.
    pub spec: PathBuf,
    /// Force the input format instead of detecting it.
    #[arg(long = "input-format", value_name = "FORMAT")]
    pub input_format: Option<Format>,
    /// TaskMaster tag to read.
    #[arg(long, default_value = "master")]
    pub tag: String,
    /// TaskMaster: make each subtask a task of its own (`parent.sub`).
    #[arg(long)]
    pub expand_subtasks: bool,
}

#[derive(clap::Subcommand)]
pub enum Remote {
    /// Submit a job to the coordinator; prints the job id alone on stdout. --wait follows it and
    /// exits by outcome.
    Submit {
        #[command(flatten)]
        spec: SubmitSpec,
        /// Follow the job until it ends (progress on stderr); exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
        /// Override the spec's execution mode.
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// Override the spec's max_parallel_tasks.
        #[arg(long, env = "ORDO_MAX_PARALLEL")]
        max_parallel: Option<u32>,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show a job and its tasks; without JOB, list the jobs like `ordo jobs`.
    Status {
        job: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List jobs, newest first, one line each.
    Jobs {
        /// Only jobs in this state (pending, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs whose name, a task name or state contains this text.
        #[arg(long)]
        search: Option<String>,
        /// At most this many jobs.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Follow a job live, one line per task state change, until it ends; exit 0 if it
    /// succeeded, 1 if not.
    Watch {
        job: String,
        #[command(flatten)]
        nats: NatsArgs,
        /// json: progress goes to stderr and the final status is printed as JSON.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print a job's output (raw, as the tasks wrote it), or one task's.
    Logs {
        job: String,
        /// Task name or index.
        task: Option<String>,
        /// Keep printing until the job ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Cancel a job: running tasks are killed, the rest never start.
    Cancel {
        job: String,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run a finished job's unsuccessful tasks again.
    Retry {
        job: String,
        /// Only failed tasks (not skipped or cancelled ones).
        #[arg(long)]
        failed_only: bool,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the workers the coordinator has heard from.
    Workers {
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Everything a remote command can fail with; `exit_code` maps it to DESIGN §6.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
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
    /// The coordinator does not know the job.
    #[error("{}", not_found_message(job, message))]
    NotFound { job: JobId, message: String },
    /// The reply was not an `ApiReply` of the expected type.
    #[error("unexpected reply on {subject}: {reason}")]
    Reply { subject: String, reason: String },
    /// JetStream failed while reading task output.
    #[error("{0}")]
    Stream(String),
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error("interrupted")]
    Interrupted,
}

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

impl CallError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CallError::Spec(_) | CallError::Invalid(_) | CallError::NotFound { .. } => {
                exit::INVALID
            }
            CallError::Connect { code, .. } => *code,
            CallError::Unreachable { .. } | CallError::Stream(_) => exit::UNREACHABLE,
            CallError::Api(e) => match e.kind {
                ErrorKind::Invalid | ErrorKind::NotFound => exit::INVALID,
                ErrorKind::Internal => exit::JOB_FAILED,
            },
            CallError::Reply { .. } | CallError::Output(_) => exit::JOB_FAILED,
            CallError::Interrupted => exit::INTERRUPTED,
        }
    }

    /// Worth retrying while following a job: the coordinator may be restarting.
    fn is_transient(&self) -> bool {
        match self {
            CallError::Unreachable { .. } => true,
            CallError::Api(e) => e.kind == ErrorKind::Internal,
            _ => false,
        }
    }

    /// Names the job in a `not_found` reply to a request about it.
    fn for_job(self, job: JobId) -> CallError {
        match self {
            CallError::Api(e) if e.kind == ErrorKind::NotFound => CallError::NotFound {
                job,
                message: e.message,
            },
            other => other,
        }
    }

    fn from_connect(e: ConnectError, url: &str) -> CallError {
        let (message, code) = match &e {
            ConnectError::Unreachable { source, .. } => (
                format!("cannot reach NATS at {}: {source}", redact(url)),
                exit::UNREACHABLE,
            ),
            ConnectError::Creds { .. } | ConnectError::Incomplete => (e.to_string(), exit::INVALID),
        };
        CallError::Connect { message, code }
    }
}

/// Runs a remote command on its own multi-thread runtime. Errors are printed here (`ordo: ...`,
/// or the spec's diagnostics) and come back as the exit code, so `Err` means only that the
/// runtime could not start.
pub fn dispatch(cmd: Remote) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(cmd));
    // Do not wait for the NATS client's background tasks.
    runtime.shutdown_background();
    Ok(match result {
        Ok(code) => code,
        Err(e) => report(&e),
    })
}

/// Prints an error the way the user sees it and returns its exit code.
fn report(e: &CallError) -> u8 {
    match e {
        CallError::Interrupted => {}
        // The reader went away (`ordo logs JOB | head`): not an error.
        CallError::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe => return exit::OK,
        CallError::Spec(diags) => {
            for d in diags {
                warn(&d.to_string());
            }
        }
        _ => warn(&format!("ordo: {e}")),
    }
    e.exit_code()
}

/// One line on stderr; a closed stderr is ignored rather than a panic.
fn warn(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One API request for commands outside this module (`ordo report`, `ordo prune`): connects,
/// asks, and on failure prints the error and returns its exit code. `job` names the job in a
/// `not_found` message.
pub fn request<Req: Serialize, Rep: DeserializeOwned>(
    nats: &NatsArgs,
    verb: &str,
    req: &Req,
    job: Option<JobId>,
) -> Result<Rep, u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            warn(&format!("ordo: cannot start the async runtime: {e}"));
            exit::JOB_FAILED
        })?;
    let result = runtime.block_on(async {
        let api = Api::connect(nats).await?;
        let reply = call(&api, verb, req).await;
        reply.map_err(|e| match job {
            Some(j) => e.for_job(j),
            None => e,
        })
    });
    runtime.shutdown_background();
    result.map_err(|e| report(&e))
}

/// A job id as the remote commands take it; on error, prints it and returns exit 2.
pub fn job_id(s: &str) -> Result<JobId, u8> {
    parse_job(s).map_err(|e| report(&e))
}

/// A connected API client for long-lived callers (`ordo mcp`): the requests of the commands,
/// with the same errors and messages, on one connection.
pub struct Client(Api);

impl Client {
    pub async fn connect(nats: &NatsArgs) -> Result<Client, CallError> {
        Api::connect(nats).await.map(Client)
    }

    /// One API request; `job` names the job in a `not_found` message.
    pub async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        verb: &str,
        req: &Req,
        job: Option<JobId>,
    ) -> Result<Rep, CallError> {
        let reply = call(&self.0, verb, req).await;
        reply.map_err(|e| match job {
            Some(j) => e.for_job(j),
            None => e,
        })
    }

    /// The output of a job's tasks (or of task `task`) stored in `ORDO_LOGS` so far, without
    /// waiting for more: per task index, the bytes written in all and the last `keep` of them.
    pub async fn output(
        &self,
        job: JobId,
        task: Option<u32>,
        keep: usize,
    ) -> Result<std::collections::BTreeMap<u32, (u64, Vec<u8>)>, CallError> {
        let api = &self.0;
        let filter = match task {
            Some(i) => names::log_subject(&job, i),
            None => names::log_subjects(&job),
        };
        let consumer = log_consumer(api, filter).await?;
        let mut out = std::collections::BTreeMap::<u32, (u64, Vec<u8>)>::new();
        let mut pending = consumer.cached_info().num_pending;
        if pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| log_stream_err(api, "cannot read", &e))?;
        while pending > 0 {
            let msg = match tokio::time::timeout(LOGS_IDLE, messages.next()).await {
                Ok(Some(Ok(msg))) => msg,
                Ok(Some(Err(e))) => return Err(log_stream_err(api, "reading failed", &e)),
                Ok(None) | Err(_) => break,
            };
            if let Ok(info) = msg.info() {
                pending = info.pending;
            }
            let index = msg.subject.as_str().rsplit('.').next();
            let Some(index) = index.and_then(|i| i.parse::<u32>().ok()) else {
                continue;
            };
            let (total, tail) = out.entry(index).or_default();
            *total += msg.payload.len() as u64;
            tail.extend_from_slice(&msg.payload);
            if tail.len() > keep {
                tail.drain(..tail.len() - keep);
            }
        }
        Ok(out)
    }
}

async fn run(cmd: Remote) -> Result<u8, CallError> {
    match cmd {
        Remote::Submit {
            spec,
            wait,
            mode,
            max_parallel,
            nats,
            output,
        } => {
            let job_spec = load_spec(&spec)?;
            let env_mode = std::env::var("ORDO_EXECUTION_MODE").ok();
            let req = submit_request(
                job_spec,
                spec.spec.display().to_string(),
                mode,
                max_parallel,
                env_mode.as_deref(),
            )?;
            let api = Api::connect(&nats).await?;
            let reply: SubmitReply = call(&api, api::SUBMIT, &req).await?;
            match output {
                Output::Text => print(&format!("{}\n", reply.job))?,
                Output::Json => print_json(&reply)?,
            }
            if !wait {
                return Ok(exit::OK);
            }
            let status = interruptible(follow_job(&api, reply.job, &mut std::io::stderr())).await?;
            Ok(outcome_code(&status.summary.state))
        }
        Remote::Status { job, nats, output } => match job {
            Some(job) => {
                let job = parse_job(&job)?;
                let api = Api::connect(&nats).await?;
                let status: JobStatus = call(&api, api::STATUS, &JobRef { job })
                    .await
                    .map_err(|e| e.for_job(job))?;
                match output {
                    Output::Text => print(&status_text(&status, now_ms()))?,
                    Output::Json => print_json(&status)?,
                }
                Ok(exit::OK)
            }
            None => list_jobs(&nats, &JobsRequest::default(), output).await,
        },
        Remote::Jobs {
            state,
            search,
            limit,
            nats,
            output,
        } => list_jobs(&nats, &jobs_request(state, search, limit), output).await,
        Remote::Watch { job, nats, output } => {
            let job = parse_job(&job)?;
            let api = Api::connect(&nats).await?;
            let status = match output {
                Output::Text => {
                    interruptible(follow_job(&api, job, &mut std::io::stdout())).await?
                }
                Output::Json => {
                    let status =
                        interruptible(follow_job(&api, job, &mut std::io::stderr())).await?;
                    print_json(&status)?;
                    status
                }
            };
            Ok(outcome_code(&status.summary.state))
        }
        Remote::Logs {
            job,
            task,
            follow,
            nats,
        } => {
            let job = parse_job(&job)?;
            let api = Api::connect(&nats).await?;
            interruptible(logs(&api, job, task.as_deref(), follow)).await
        }
        Remote::Cancel { job, nats, output } => {
            let job = parse_job(&job)?;
            let api = Api::connect(&nats).await?;
            let summary: JobSummary = call(&api, api::CANCEL, &JobRef { job })
                .await
                .map_err(|e| e.for_job(job))?;
            print_summary(&summary, output)
        }
        Remote::Retry {
            job,
            failed_only,
            nats,
            output,
        } => {
            let job = parse_job(&job)?;
            let api = Api::connect(&nats).await?;
            let req = RetryRequest { job, failed_only };
            let summary: JobSummary = call(&api, api::RETRY, &req)
                .await
                .map_err(|e| e.for_job(job))?;
            print_summary(&summary, output)
        }
        Remote::Workers { nats, output } => {
            let api = Api::connect(&nats).await?;
            let workers: Vec<WorkerInfo> = call(&api, api::WORKERS, &Empty {}).await?;
            match output {
                Output::Text if workers.is_empty() => warn("(no workers)"),
                Output::Text => print(&workers_text(&workers))?,
                Output::Json => print_json(&workers)?,
            }
            Ok(exit::OK)
        }
    }
}

async fn list_jobs(nats: &NatsArgs, req: &JobsRequest, output: Output) -> Result<u8, CallError> {
    let api = Api::connect(nats).await?;
    let jobs: Vec<JobSummary> = call(&api, api::JOBS, req).await?;
    match output {
        Output::Text if jobs.is_empty() => warn("(no jobs)"),
        Output::Text => print(&jobs_text(&jobs, now_ms()))?,
        Output::Json => print_json(&jobs)?,
    }
    Ok(exit::OK)
}

fn print_summary(summary: &JobSummary, output: Output) -> Result<u8, CallError> {
    match output {
        Output::Text => print(&format!("{}\n", summary_line(summary, now_ms())))?,
        Output::Json => print_json(summary)?,
    }
    Ok(exit::OK)
}

// ---------------------------------------------------------------------------------------------
// Requests

/// A connected client and the URL it was given (for messages).
struct Api {
    client: async_nats::Client,
    url: String,
}

impl Api {
    async fn connect(nats: &NatsArgs) -> Result<Api, CallError> {
        let connecting = nats.connect("ordo", CONNECT_TIMEOUT);
        // The outer timeout covers what `connection_timeout` may not (name resolution, TLS).
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting).await {
            Ok(Ok(client)) => Ok(Api {
                client,
                url: redact(&nats.url),
            }),
            Ok(Err(e)) => Err(CallError::from_connect(e, &nats.url)),
            Err(_) => Err(CallError::Connect {
                message: format!(
                    "cannot reach NATS at {}: timed out after {}s",
                    redact(&nats.url),
                    (CONNECT_TIMEOUT * 2).as_secs()
                ),
                code: exit::UNREACHABLE,
            }),
        }
    }
}

/// The body of `workers`: `{}`.
#[derive(Serialize)]
struct Empty {}

/// One API request: JSON body to `ordo.api.<verb>`, `ApiReply<Rep>` back within
/// `REQUEST_TIMEOUT`.
async fn call<Req: Serialize, Rep: DeserializeOwned>(
    api: &Api,
    verb: &str,
    req: &Req,
) -> Result<Rep, CallError> {
    let subject = names::api_subject(verb);
    let body = serde_json::to_vec(req)
        .map_err(|e| CallError::Invalid(format!("cannot encode the {verb} request: {e}")))?;
    let sent = tokio::time::timeout(
        REQUEST_TIMEOUT,
        api.client.request(subject.clone(), body.into()),
    )
    .await;
    match sent {
        Ok(Ok(msg)) => decode_reply(&subject, &msg.payload),
        Ok(Err(e)) => Err(request_error(&api.url, &subject, e.kind(), &e.to_string())),
        Err(_) => Err(request_error(
            &api.url,
            &subject,
            async_nats::RequestErrorKind::TimedOut,
            "",
        )),
    }
}

fn request_error(
    url: &str,
    subject: &str,
    kind: async_nats::RequestErrorKind,
    detail: &str,
) -> CallError {
    use async_nats::RequestErrorKind as K;
    let unreachable = |what: String| CallError::Unreachable {
        url: url.to_string(),
        subject: subject.to_string(),
        what,
    };
    match kind {
        K::NoResponders => unreachable("no responders".into()),
        K::TimedOut => unreachable(format!("no reply within {}s", REQUEST_TIMEOUT.as_secs())),
        K::MaxPayloadExceeded => CallError::Invalid(format!(
            "the request on {subject} is larger than the NATS server's max_payload"
        )),
        K::InvalidSubject | K::Other => unreachable(format!("request failed ({detail})")),
    }
}

/// Decodes `{"ok": Rep}` or `{"error": {...}}`.
fn decode_reply<Rep: DeserializeOwned>(subject: &str, payload: &[u8]) -> Result<Rep, CallError> {
    match serde_json::from_slice::<ApiReply<Rep>>(payload) {
        Ok(ApiReply::Ok(v)) => Ok(v),
        Ok(ApiReply::Error(e)) => Err(CallError::Api(e)),
        Err(e) => {
            // An error of a kind this CLI does not know still has a message worth showing.
            let message = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
            Err(CallError::Reply {
                subject: subject.to_string(),
                reason: message.unwrap_or_else(|| e.to_string()),
            })
        }
    }
}

fn jobs_request(
    state: Option<String>,
    search: Option<String>,
    limit: Option<usize>,
) -> JobsRequest {
    JobsRequest {
        state,
        search,
        limit,
    }
}

/// The submit request for a validated spec: `--mode` overrides the spec's mode, and
/// `ORDO_EXECUTION_MODE` (`env_mode`) is the default for specs that set none.
pub fn submit_request(
    mut spec: JobSpec,
    source: String,
    mode: Option<Mode>,
    max_parallel: Option<u32>,
    env_mode: Option<&str>,
) -> Result<SubmitRequest, CallError> {
    if let Some(mode) = mode {
        spec.settings.execution_mode = Some(mode.into());
        spec.settings.enable_parallel = None;
    }
    let default_mode = match env_mode.map(str::trim) {
        Some(v) if !v.is_empty() => Some(
            v.parse::<ExecutionMode>()
                .map_err(|e| CallError::Invalid(format!("ORDO_EXECUTION_MODE: {e}")))?,
        ),
        _ => None,
    };
    Ok(SubmitRequest {
        spec,
        source,
        default_mode,
        max_parallel,
    })
}

/// Loads and validates like `ordo validate`; warnings go to stderr.
fn load_spec(args: &SubmitSpec) -> Result<JobSpec, CallError> {
    let label = args.spec.display().to_string();
    let opts = LoadOptions {
        format: args.input_format,
        tag: Some(args.tag.clone()),
        expand_subtasks: args.expand_subtasks,
    };
    let loaded = formats::load(&args.spec, &opts).map_err(CallError::Spec)?;
    for w in &loaded.warnings {
        warn(&format!("warning: {w}"));
    }
    formats::check(&loaded, &label).map_err(CallError::Spec)?;
    Ok(loaded.spec)
}

pub fn parse_job(s: &str) -> Result<JobId, CallError> {
    s.trim()
        .parse::<JobId>()
        .map_err(|_| CallError::Invalid(format!("'{}' is not a job id", plain(s))))
}

/// A task by name, else by index.
fn resolve_task(status: &JobStatus, task: &str) -> Result<u32, CallError> {
    if let Some(t) = status.tasks.iter().find(|t| t.name == task) {
        return Ok(t.index);
    }
    if let Ok(i) = task.trim().parse::<u32>()
        && status.tasks.iter().any(|t| t.index == i)
    {
        return Ok(i);
    }
    Err(CallError::Invalid(format!(
        "job {} has no task '{}'",
        status.summary.id,
        plain(task)
    )))
}

/// `user:password@` / `token@` in a URL is not for messages.
fn redact(urls: &str) -> String {
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

// ---------------------------------------------------------------------------------------------
// Following a job

async fn interruptible<T>(fut: impl Future<Output = Result<T, CallError>>) -> Result<T, CallError> {
    tokio::select! {
        r = fut => r,
        () = ordo_proto::signals::interrupted() => Err(CallError::Interrupted),
    }
}

/// How long requests have been failing.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Records a failure at `now`; true once failures have lasted longer than `limit`.
    fn failed(&mut self, now: Instant, limit: Duration) -> bool {
        let since = *self.since.get_or_insert(now);
        now.duration_since(since) > limit
    }

    /// Records a success; true if requests were failing until now.
    fn ok(&mut self) -> bool {
        self.since.take().is_some()
    }

    fn ongoing(&self) -> bool {
        self.since.is_some()
    }
}

/// Calls `status`, riding out an outage of up to `OUTAGE_LIMIT` (`None`: failed, try again).
async fn status_tolerant(
    api: &Api,
    job: JobId,
    outage: &mut Outage,
) -> Result<Option<JobStatus>, CallError> {
    match call::<_, JobStatus>(api, api::STATUS, &JobRef { job }).await {
        Ok(status) => {
            if outage.ok() {
                warn("ordo: the coordinator answers again");
            }
            Ok(Some(status))
        }
        Err(e) if e.is_transient() => {
            let first = !outage.ongoing();
            if outage.failed(Instant::now(), OUTAGE_LIMIT) {
                return Err(e);
            }
            if first {
                warn(&format!(
                    "ordo: {e}; retrying for up to {}s",
                    OUTAGE_LIMIT.as_secs()
                ));
            }
            Ok(None)
        }
        Err(e) => Err(e.for_job(job)),
    }
}

/// Polls `status` until the job ends, writing a line to `progress` for each task state change
/// and a last line with the job's outcome; returns the final status.
async fn follow_job(
    api: &Api,
    job: JobId,
    progress: &mut (dyn Write + Send),
) -> Result<JobStatus, CallError> {
    let mut seen = HashMap::new();
    let mut outage = Outage::default();
    loop {
        if let Some(status) = status_tolerant(api, job, &mut outage).await? {
            let mut text = String::new();
            for line in changes(&mut seen, &status) {
                text.push_str(&line);
                text.push('\n');
            }
            let done = job_terminal(&status.summary.state);
            if done {
                text.push_str(&final_line(&status.summary));
                text.push('\n');
            }
            progress
                .write_all(text.as_bytes())
                .and_then(|()| progress.flush())
                .map_err(CallError::Output)?;
            if done {
                return Ok(status);
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn job_terminal(state: &str) -> bool {
    state.parse::<JobState>().is_ok_and(JobState::is_terminal)
}

/// Exit code of a finished job: 0 if it succeeded, 1 otherwise.
fn outcome_code(state: &str) -> u8 {
    if state == JobState::Succeeded.name() {
        exit::OK
    } else {
        exit::JOB_FAILED
    }
}

/// What was last seen of each task: state and attempts.
type Seen = HashMap<u32, (String, u32)>;

/// Lines for the tasks whose state or attempt changed since the last call; updates `seen`.
fn changes(seen: &mut Seen, status: &JobStatus) -> Vec<String> {
    let mut lines = Vec::new();
    for t in &status.tasks {
        let now = (t.state.clone(), t.attempts);
        if seen.get(&t.index) != Some(&now) {
            lines.extend(change_line(t));
            seen.insert(t.index, now);
        }
    }
    lines
}

/// The line for a task entering its current state; `None` for states not worth a line
/// (pending, ready, dispatched).
fn change_line(t: &TaskStatus) -> Option<String> {
    let name = plain(&t.name);
    let why = |what: &str| match (t.reason.as_deref().map(one_line), t.exit_code) {
        (Some(r), _) if !r.is_empty() => format!("{what}: {r}"),
        (_, Some(code)) => format!("{what}: exit code {code}"),
        _ => what.to_string(),
    };
    Some(match t.state.as_str() {
        "running" => {
            let mut line = format!("▶ {name} running");
            if let Some(w) = &t.worker {
                line.push_str(&format!(" on {}", plain(w)));
            }
            if t.attempts > 1 {
                line.push_str(&format!(" (attempt {})", t.attempts));
            }
            line
        }
        "succeeded" => match t.duration_ms {
            Some(ms) => format!("✓ {name} succeeded in {}", fmt_duration(ms)),
            None => format!("✓ {name} succeeded"),
        },
        "failed" => format!("✗ {name} {}", why("failed")),
        "timed_out" => format!("✗ {name} {}", why("timed out")),
        "cancelled" => format!("⊘ {name} {}", why("cancelled")),
        "skipped" => format!("⊘ {name} {}", why("skipped")),
        "retry_wait" => format!(
            "↻ {name} {}",
            why(&format!("attempt {} failed, will retry", t.attempts))
        ),
        _ => return None,
    })
}

/// The last line of `watch`: the job's outcome.
fn final_line(s: &JobSummary) -> String {
    let symbol = match s.state.as_str() {
        "succeeded" => "✓",
        "cancelled" => "⊘",
        _ => "✗",
    };
    let mut line = format!("{symbol} job {} '{}' {}", s.id, plain(&s.name), s.state);
    if let Some(f) = s.finished_ms {
        line.push_str(&format!(
            " in {}",
            fmt_duration(f.saturating_sub(s.created_ms))
        ));
    }
    line.push_str(&format!(": {}/{} tasks succeeded", s.succeeded, s.total));
    if s.failed > 0 {
        line.push_str(&format!(", {} failed", s.failed));
    }
    if let Some(r) = s.reason.as_deref().map(one_line)
        && !r.is_empty()
    {
        line.push_str(&format!(" ({r})"));
    }
    line
}

// ---------------------------------------------------------------------------------------------
// Logs

/// Prints the job's (or one task's) stored output; with `follow`, keeps printing until the job
/// is terminal and its output drained.
fn log_stream_err(api: &Api, what: &str, e: &dyn std::fmt::Display) -> CallError {
    CallError::Stream(format!(
        "cannot read task output from stream {} on {}: {what}: {e}",
        names::LOG_STREAM,
        api.url
    ))
}

/// An ordered consumer over the stored task output matching `filter`, from the start.
async fn log_consumer(
    api: &Api,
    filter: String,
) -> Result<jetstream::consumer::Consumer<OrderedConfig>, CallError> {
    let stream_err = |what: &str, e: &dyn std::fmt::Display| log_stream_err(api, what, e);
    let js = jetstream::new(api.client.clone());
    let stream = js
        .get_stream(names::LOG_STREAM)
        .await
        .map_err(|e| stream_err("cannot open the stream", &e))?;
    stream
        .create_consumer(OrderedConfig {
            filter_subject: filter,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| stream_err("cannot create a consumer", &e))
}

async fn logs(api: &Api, job: JobId, task: Option<&str>, follow: bool) -> Result<u8, CallError> {
    let status: JobStatus = call(api, api::STATUS, &JobRef { job })
        .await
        .map_err(|e| e.for_job(job))?;
    let filter = match task {
        Some(t) => names::log_subject(&job, resolve_task(&status, t)?),
        None => names::log_subjects(&job),
    };
    let consumer = log_consumer(api, filter).await?;

    // `ended`: the job is over, so everything it wrote is stored; stop once drained.
    let mut ended = !follow || job_terminal(&status.summary.state);
    // Ended before the consumer was created: a message with nothing pending behind it is the
    // last. (Ended later: messages read may have been delivered before the end, so stop only
    // after a quiet spell.)
    let ended_first = ended;
    let mut pending = consumer.cached_info().num_pending;
    if ended && pending == 0 {
        return Ok(exit::OK);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| log_stream_err(api, "cannot read", &e))?;
    let mut outage = Outage::default();
    let mut status_outage = Outage::default();
    let mut next_status = Instant::now() + LOGS_STATUS_EVERY;
    let mut stdout = std::io::stdout();
    loop {
        let wait = match (ended, pending) {
            (true, 0) => LOGS_QUIET,
            (true, _) => LOGS_IDLE,
            (false, _) => next_status.saturating_duration_since(Instant::now()),
        };
        match tokio::time::timeout(wait, messages.next()).await {
            Ok(Some(Ok(msg))) => {
                if outage.ok() {
                    warn("ordo: reading task output again");
                }
                stdout
                    .write_all(&msg.payload)
                    .and_then(|()| stdout.flush())
                    .map_err(CallError::Output)?;
                if let Ok(info) = msg.info() {
                    pending = info.pending;
                }
                if ended_first && pending == 0 {
                    return Ok(exit::OK);
                }
            }
            Ok(Some(Err(e))) => {
                // The ordered consumer recreates itself after most errors; ride them out.
                if outage.failed(Instant::now(), OUTAGE_LIMIT) {
                    return Err(log_stream_err(api, "reading failed", &e));
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
            Ok(None) => return Ok(exit::OK),
            Err(_idle) if ended => return Ok(exit::OK),
            Err(_idle) => {}
        }
        if !ended && Instant::now() >= next_status {
            if let Some(s) = status_tolerant(api, job, &mut status_outage).await? {
                ended = job_terminal(&s.summary.state);
            }
            next_status = Instant::now() + LOGS_STATUS_EVERY;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn print(text: &str) -> Result<(), CallError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CallError::Output)
}

/// One JSON document on one line.
fn print_json<T: Serialize>(v: &T) -> Result<(), CallError> {
    let text = serde_json::to_string(v)
        .map_err(|e| CallError::Output(std::io::Error::other(e.to_string())))?;
    print(&(text + "\n"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Text from the coordinator without control characters (they could drive the terminal).
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Free text (a reason) on one line, whitespace collapsed, cut to `MAX_REASON` characters.
fn one_line(s: &str) -> String {
    let text = plain(s).split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > MAX_REASON {
        let cut: String = text.chars().take(MAX_REASON - 1).collect();
        cut + "…"
    } else {
        text
    }
}

/// `850ms`, `1.2s`, `2m05s`, `1h03m`.
fn fmt_duration(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// Coarse age: `12s`, `5m`, `3h`, `2d`.
fn fmt_age(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn fmt_memory(mb: u64) -> String {
    if mb >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MiB")
    }
}

fn fmt_cpus(cpus: f64) -> String {
    if cpus.fract() == 0.0 {
        format!("{cpus:.0}")
    } else {
        format!("{cpus:.1}")
    }
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `3/5 succeeded, 1 failed, 1 running` (zero counts after the first left out).
fn counts(s: &JobSummary) -> String {
    let mut text = format!("{}/{} succeeded", s.succeeded, s.total);
    if s.failed > 0 {
        text.push_str(&format!(", {} failed", s.failed));
    }
    if s.running > 0 {
        text.push_str(&format!(", {} running", s.running));
    }
    text
}

/// `job <id> '<name>': <state>, <counts>, created 5m ago[, took 1.2s][: reason]`.
fn summary_line(s: &JobSummary, now_ms: u64) -> String {
    let mut line = format!(
        "job {} '{}': {}, {}, created {} ago",
        s.id,
        plain(&s.name),
        s.state,
        counts(s),
        fmt_age(now_ms.saturating_sub(s.created_ms))
    );
    if let Some(f) = s.finished_ms {
        line.push_str(&format!(
            ", took {}",
            fmt_duration(f.saturating_sub(s.created_ms))
        ));
    }
    if let Some(r) = s.reason.as_deref().map(one_line)
        && !r.is_empty()
    {
        line.push_str(&format!(": {r}"));
    }
    line
}

/// The job's line, then a table of its tasks.
fn status_text(st: &JobStatus, now_ms: u64) -> String {
    let dash = || "-".to_string();
    let mut rows = vec![
        [
            "TASK", "STATE", "ATTEMPTS", "WORKER", "EXIT", "DURATION", "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in &st.tasks {
        rows.push(vec![
            plain(&t.name),
            t.state.clone(),
            t.attempts.to_string(),
            t.worker.as_deref().map_or_else(dash, plain),
            t.exit_code.map_or_else(dash, |c| c.to_string()),
            t.duration_ms.map_or_else(dash, fmt_duration),
            t.reason.as_deref().map_or_else(String::new, one_line),
        ]);
    }
    format!("{}\n{}", summary_line(&st.summary, now_ms), table(&rows))
}

/// One line per job: id, state, name, counts, age.
fn jobs_text(jobs: &[JobSummary], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.state.clone(),
                plain(&j.name),
                counts(j),
                format!("{} ago", fmt_age(now_ms.saturating_sub(j.created_ms))),
            ]
        })
        .collect();
    table(&rows)
}

/// One line per worker: id, host, queues, busy/slots, cpus, memory, last heard, draining.
fn workers_text(workers: &[WorkerInfo]) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let h = &w.heartbeat;
            vec![
                plain(&h.worker),
                plain(&h.host),
                plain(&h.queues.join(",")),
                format!("{}/{} busy", h.busy, h.slots),
                format!("{} cpus", fmt_cpus(h.cpus)),
                fmt_memory(h.memory_mb),
                format!("seen {} ago", fmt_age(w.age_ms)),
                if h.draining { "draining" } else { "" }.to_string(),
            ]
        })
        .collect();
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use ordo_proto::Heartbeat;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Remote,
    }

    fn parse(args: &[&str]) -> Remote {
        Cli::try_parse_from(std::iter::once("ordo").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .cmd
    }

    const JOB: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

    fn job() -> JobId {
        JOB.parse().unwrap()
    }

    fn summary(state: &str) -> JobSummary {
        JobSummary {
            id: job(),
            name: "build".into(),
            state: state.into(),
            created_ms: 1_000_000,
            finished_ms: None,
            reason: None,
            total: 3,
            succeeded: 1,
            failed: 0,
            running: 1,
        }
    }

    fn task(index: u32, name: &str, state: &str) -> TaskStatus {
        TaskStatus {
            index,
            name: name.into(),
            state: state.into(),
            attempts: 1,
            worker: None,
            exit_code: None,
            duration_ms: None,
            reason: None,
            output_tail: None,
        }
    }

    fn spec() -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "name": "j",
            "settings": {"enable_parallel": false},
            "tasks": [{"name": "a", "command": "true"}],
        }))
        .unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn jobs_flags_become_the_request() {
        let Remote::Jobs {
            state,
            search,
            limit,
            output,
            ..
        } = parse(&[
            "jobs", "--state", "failed", "--search", "x", "--limit", "5", "--output", "json",
        ])
        else {
            panic!("not jobs")
        };
        assert_eq!(output, Output::Json);
        let req = jobs_request(state, search, limit);
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"state": "failed", "search": "x", "limit": 5})
        );
        let Remote::Jobs {
            state,
            search,
            limit,
            output,
            ..
        } = parse(&["jobs"])
        else {
            panic!("not jobs")
        };
        assert_eq!(output, Output::Text);
        let v = serde_json::to_value(jobs_request(state, search, limit)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"state": null, "search": null, "limit": null})
        );
    }

    #[test]
    fn submit_flags_parse() {
        let Remote::Submit {
            spec,
            wait,
            mode,
            max_parallel,
            nats,
            ..
        } = parse(&[
            "submit",
            "job.toml",
            "--wait",
            "--mode",
            "sequential",
            "--max-parallel",
            "3",
            "--nats",
            "nats://h:4222",
            "--input-format",
            "md",
        ])
        else {
            panic!("not submit")
        };
        assert!(wait);
        assert_eq!(mode, Some(Mode::Sequential));
        assert_eq!(max_parallel, Some(3));
        assert_eq!(nats.url, "nats://h:4222");
        assert_eq!(spec.input_format, Some(Format::Markdown));
        assert_eq!(spec.spec, PathBuf::from("job.toml"));
    }

    #[test]
    fn other_commands_parse() {
        assert!(matches!(
            parse(&["status"]),
            Remote::Status { job: None, .. }
        ));
        assert!(matches!(
            parse(&["status", JOB]),
            Remote::Status { job: Some(_), .. }
        ));
        assert!(matches!(
            parse(&["logs", JOB, "build", "-f"]),
            Remote::Logs {
                task: Some(_),
                follow: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&["retry", JOB, "--failed-only"]),
            Remote::Retry {
                failed_only: true,
                ..
            }
        ));
        assert!(matches!(parse(&["watch", JOB]), Remote::Watch { .. }));
        assert!(matches!(parse(&["cancel", JOB]), Remote::Cancel { .. }));
        assert!(matches!(
            parse(&["workers", "--output", "json"]),
            Remote::Workers {
                output: Output::Json,
                ..
            }
        ));
    }

    #[test]
    fn submit_request_applies_mode_and_environment() {
        let req = submit_request(spec(), "j.json".into(), None, Some(4), None).unwrap();
        assert_eq!(req.source, "j.json");
        assert_eq!(req.max_parallel, Some(4));
        assert_eq!(req.default_mode, None);
        assert_eq!(req.spec.settings.enable_parallel, Some(false));
        assert_eq!(req.spec.settings.execution_mode, None);

        let req = submit_request(
            spec(),
            "j.json".into(),
            Some(Mode::Parallel),
            None,
            Some(" Sequential "),
        )
        .unwrap();
        assert_eq!(
            req.spec.settings.execution_mode,
            Some(ExecutionMode::Parallel)
        );
        assert_eq!(req.spec.settings.enable_parallel, None);
        assert_eq!(req.default_mode, Some(ExecutionMode::Sequential));

        let req = submit_request(spec(), String::new(), None, None, Some("")).unwrap();
        assert_eq!(req.default_mode, None);

        let err = submit_request(spec(), String::new(), None, None, Some("fast")).unwrap_err();
        assert_eq!(err.exit_code(), exit::INVALID);
        assert!(
            err.to_string().starts_with("ORDO_EXECUTION_MODE: "),
            "{err}"
        );
    }

    #[test]
    fn job_ids_are_checked() {
        assert_eq!(parse_job(JOB).unwrap(), job());
        assert_eq!(parse_job(&format!(" {JOB}\n")).unwrap(), job());
        let err = parse_job("xyz").unwrap_err();
        assert_eq!(err.to_string(), "'xyz' is not a job id");
        assert_eq!(err.exit_code(), exit::INVALID);
        assert_eq!(
            parse_job("a\u{1b}[2Jb").unwrap_err().to_string(),
            "'a [2Jb' is not a job id"
        );
    }

    #[test]
    fn replies_decode() {
        let s: JobSummary = decode_reply(
            "ordo.api.cancel",
            serde_json::to_string(&ApiReply::Ok(summary("cancelled")))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(s, summary("cancelled"));

        let w: Vec<WorkerInfo> = decode_reply("s", br#"{"ok": []}"#).unwrap();
        assert!(w.is_empty());

        let e = decode_reply::<JobStatus>(
            "ordo.api.status",
            br#"{"error": {"kind": "not_found", "message": "no such job"}}"#,
        )
        .unwrap_err();
        assert!(matches!(&e, CallError::Api(a) if a.kind == ErrorKind::NotFound));
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
            assert!(matches!(e, CallError::Reply { .. }), "{junk:?}");
            assert_eq!(e.exit_code(), exit::JOB_FAILED);
        }
    }

    #[test]
    fn not_found_message_names_the_job_once() {
        let msg = |m: &str| {
            CallError::NotFound {
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
    fn request_errors_map_to_exit_codes() {
        use async_nats::RequestErrorKind as K;
        let e = request_error(
            "nats://127.0.0.1:4222",
            "ordo.api.status",
            K::NoResponders,
            "",
        );
        assert_eq!(
            e.to_string(),
            "cannot reach the coordinator on nats://127.0.0.1:4222: no responders on \
             ordo.api.status (is ordo-coordinator running?)"
        );
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
        assert!(e.is_transient());
        let e = request_error("u", "s", K::TimedOut, "");
        assert!(e.to_string().contains("no reply within 5s on s"), "{e}");
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
        assert_eq!(
            request_error("u", "s", K::Other, "x").exit_code(),
            exit::UNREACHABLE
        );
        assert_eq!(
            request_error("u", "s", K::MaxPayloadExceeded, "").exit_code(),
            exit::INVALID
        );
    }

    #[test]
    fn exit_codes() {
        let api = |kind| CallError::Api(ApiError::new(kind, "m"));
        assert_eq!(api(ErrorKind::Invalid).exit_code(), 2);
        assert_eq!(api(ErrorKind::NotFound).exit_code(), 2);
        assert_eq!(api(ErrorKind::Internal).exit_code(), 1);
        assert_eq!(CallError::Spec(vec![]).exit_code(), 2);
        assert_eq!(CallError::Stream("x".into()).exit_code(), 3);
        assert_eq!(CallError::Interrupted.exit_code(), 130);
        assert!(!api(ErrorKind::Invalid).is_transient());
        assert!(!CallError::Interrupted.is_transient());
        assert_eq!(
            CallError::from_connect(ConnectError::Incomplete, "u").exit_code(),
            2
        );
        assert_eq!(outcome_code("succeeded"), exit::OK);
        assert_eq!(outcome_code("failed"), exit::JOB_FAILED);
        assert_eq!(outcome_code("cancelled"), exit::JOB_FAILED);
        assert!(job_terminal("cancelled") && job_terminal("succeeded"));
        assert!(!job_terminal("running") && !job_terminal("??"));
        // Broken pipes end quietly.
        let pipe = CallError::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(report(&pipe), exit::OK);
    }

    #[test]
    fn bad_input_exits_2_before_connecting() {
        // Port 1 on localhost refuses connections: reaching it would exit 3, not 2.
        let run = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--nats", "nats://127.0.0.1:1"]);
            dispatch(parse(&all)).unwrap()
        };
        assert_eq!(run(&["status", "xyz"]), exit::INVALID);
        assert_eq!(run(&["logs", "not-a-job", "a"]), exit::INVALID);
        assert_eq!(
            run(&["submit", "/nonexistent/ordo/job.toml"]),
            exit::INVALID
        );
        assert_eq!(run(&["status", JOB]), exit::UNREACHABLE);
        assert_eq!(run(&["workers"]), exit::UNREACHABLE);
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
    fn change_lines() {
        let mut t = task(0, "build", "running");
        t.worker = Some("w-1".into());
        assert_eq!(change_line(&t).unwrap(), "▶ build running on w-1");
        t.attempts = 2;
        assert_eq!(
            change_line(&t).unwrap(),
            "▶ build running on w-1 (attempt 2)"
        );
        t.state = "succeeded".into();
        t.duration_ms = Some(1234);
        assert_eq!(change_line(&t).unwrap(), "✓ build succeeded in 1.2s");
        t.state = "failed".into();
        t.exit_code = Some(3);
        assert_eq!(change_line(&t).unwrap(), "✗ build failed: exit code 3");
        t.reason = Some("exit code 3:\n  boom".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "✗ build failed: exit code 3: boom"
        );
        t.state = "timed_out".into();
        t.reason = Some("timed out after 5s".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "✗ build timed out: timed out after 5s"
        );
        t.state = "skipped".into();
        t.reason = Some("dependency a failed".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "⊘ build skipped: dependency a failed"
        );
        t.state = "retry_wait".into();
        t.reason = Some("exit code 1".into());
        assert_eq!(
            change_line(&t).unwrap(),
            "↻ build attempt 2 failed, will retry: exit code 1"
        );
        for quiet in ["pending", "ready", "dispatched", "whatever"] {
            t.state = quiet.into();
            assert_eq!(change_line(&t), None);
        }
        let mut long = task(1, "x", "cancelled");
        long.reason = Some("r".repeat(500));
        assert_eq!(
            change_line(&long).unwrap().chars().count(),
            "⊘ x cancelled: ".chars().count() + MAX_REASON
        );
    }

    #[test]
    fn changes_are_reported_once() {
        let mut seen = Seen::new();
        let mut st = JobStatus {
            summary: summary("running"),
            tasks: vec![task(0, "a", "succeeded"), task(1, "b", "pending")],
            omitted: 0,
        };
        assert_eq!(changes(&mut seen, &st), vec!["✓ a succeeded"]);
        assert!(changes(&mut seen, &st).is_empty());
        st.tasks[1].state = "running".into();
        assert_eq!(changes(&mut seen, &st), vec!["▶ b running"]);
        st.tasks[1].attempts = 2;
        assert_eq!(changes(&mut seen, &st), vec!["▶ b running (attempt 2)"]);
        st.tasks[1].state = "failed".into();
        assert_eq!(changes(&mut seen, &st), vec!["✗ b failed"]);
    }

    #[test]
    fn final_lines() {
        let mut s = summary("succeeded");
        s.finished_ms = Some(s.created_ms + 12_300);
        s.succeeded = 3;
        s.running = 0;
        assert_eq!(
            final_line(&s),
            format!("✓ job {JOB} 'build' succeeded in 12.3s: 3/3 tasks succeeded")
        );
        s.state = "failed".into();
        s.succeeded = 1;
        s.failed = 2;
        s.reason = Some("fail_fast".into());
        assert_eq!(
            final_line(&s),
            format!(
                "✗ job {JOB} 'build' failed in 12.3s: 1/3 tasks succeeded, 2 failed (fail_fast)"
            )
        );
    }

    #[test]
    fn tasks_resolve_by_name_then_index() {
        let st = JobStatus {
            summary: summary("running"),
            tasks: vec![task(0, "1", "pending"), task(1, "b", "pending")],
            omitted: 0,
        };
        assert_eq!(resolve_task(&st, "b").unwrap(), 1);
        assert_eq!(resolve_task(&st, "1").unwrap(), 0, "names win over indexes");
        assert_eq!(resolve_task(&st, "0").unwrap(), 0);
        let e = resolve_task(&st, "7").unwrap_err();
        assert_eq!(e.to_string(), format!("job {JOB} has no task '7'"));
        assert_eq!(e.exit_code(), exit::INVALID);
    }

    #[test]
    fn outage_window() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert!(!o.ok());
        assert!(!o.failed(t0, OUTAGE_LIMIT));
        assert!(!o.failed(t0 + Duration::from_secs(29), OUTAGE_LIMIT));
        assert!(o.failed(t0 + Duration::from_secs(31), OUTAGE_LIMIT));
        assert!(o.ok());
        assert!(!o.failed(t0 + Duration::from_secs(40), OUTAGE_LIMIT));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_duration(850), "850ms");
        assert_eq!(fmt_duration(1234), "1.2s");
        assert_eq!(fmt_duration(125_000), "2m05s");
        assert_eq!(fmt_duration(3_780_000), "1h03m");
        assert_eq!(fmt_age(5_000), "5s");
        assert_eq!(fmt_age(300_000), "5m");
        assert_eq!(fmt_age(2 * 86_400_000), "2d");
        assert_eq!(fmt_memory(512), "512 MiB");
        assert_eq!(fmt_memory(16_000), "15.6 GiB");
        assert_eq!(fmt_cpus(4.0), "4");
        assert_eq!(fmt_cpus(1.5), "1.5");
        assert_eq!(
            table(&[
                vec!["a".into(), "bb".into(), "c".into()],
                vec!["ddd".into(), "e".into(), String::new()],
            ]),
            "a    bb  c\nddd  e\n"
        );
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn text_renderings() {
        let now = 1_000_000 + 300_000;
        let mut st = JobStatus {
            summary: summary("running"),
            tasks: vec![task(0, "a", "succeeded"), task(1, "b\u{7}", "running")],
            omitted: 0,
        };
        st.tasks[0].exit_code = Some(0);
        st.tasks[0].duration_ms = Some(1500);
        st.tasks[1].worker = Some("w-1".into());
        let text = status_text(&st, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("job {JOB} 'build': running, 1/3 succeeded, 1 running, created 5m ago")
        );
        assert!(lines[1].starts_with("TASK  STATE"), "{text}");
        assert_eq!(lines[2], "a     succeeded  1         -       0     1.5s");
        assert_eq!(lines[3], "b     running    1         w-1     -     -");

        let jobs = jobs_text(&[summary("running"), summary("failed")], now);
        assert_eq!(jobs.lines().count(), 2);
        assert_eq!(
            jobs.lines().next().unwrap(),
            format!("{JOB}  running  build  1/3 succeeded, 1 running  5m ago")
        );

        let w = WorkerInfo {
            heartbeat: Heartbeat {
                worker: "w-1".into(),
                host: "h".into(),
                queues: vec!["default".into(), "gpu".into()],
                slots: 4,
                busy: 1,
                cpus: 8.0,
                memory_mb: 2048,
                draining: true,
                at_ms: 0,
            },
            age_ms: 2_000,
        };
        assert_eq!(
            workers_text(&[w]),
            "w-1  h  default,gpu  1/4 busy  8 cpus  2.0 GiB  seen 2s ago  draining\n"
        );
    }
}
