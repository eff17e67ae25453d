//! `ordo mcp`: ordo as a Model Context Protocol server on stdio (rmcp), so AI coding agents can
//! validate, plan, convert, run and follow task graphs through tool calls.
//!
//! # Tools
//! `validate_job`, `plan_job`, `convert_markdown`, `submit_job`, `job_status`, `list_jobs`,
//! `cancel_job`, `job_logs`, `job_report`. Each takes a JSON object described by its input schema
//! (derived from the parameter structs below; their doc comments are the descriptions) and
//! answers with structured JSON (`structuredContent`, always an object) and text content: a
//! one-line summary first, then the JSON (or the rendered report / converted spec / output).
//! Failures are tool errors (`isError: true`) whose text is the message the CLI prints: one
//! `file:line:col: message` line per spec diagnostic, the coordinator's and NATS errors as
//! `ordo submit` / `ordo status` word them.
//!
//! # Where jobs run
//! - Local (no `--nats`): the server runs jobs itself, in the background, with the local runner
//!   (`run::run_recorded`). One redb store in `--state DIR` (default `.ordo-mcp`) is opened for
//!   the server's lifetime and shared by every running job and every read, so `job_status`,
//!   `job_logs` and `job_report` see jobs while and after they run. Each running job has a
//!   cancel handle (`cancel_job`). Jobs left unfinished by a server that died resume when the
//!   next one starts (as `ordo run --state` resumes); when the server stops (stdin closed,
//!   SIGTERM) it cancels the jobs it is running and waits for their processes to be killed.
//! - Cluster (`--nats URL`): every tool that touches jobs is a coordinator API request
//!   (`remote::Client`, one connection made on first use), and `job_logs` reads `ORDO_LOGS`.
//!
//! Stdout is the protocol: nothing else may write to it (tasks' output is captured, diagnostics
//! go to stderr).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum as _;
use ordo_coordinator::report::{self as data, ReportData};
use ordo_coordinator::store::{JobRecord, Store};
use ordo_coordinator::views;
use ordo_proto::api::{
    self, JobRef, JobStatus, JobSummary, JobsRequest, ReportRequest, SubmitReply,
};
use ordo_proto::connect::NatsArgs;
use ordo_proto::{Dag, ExecutionMode, JobId};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, oneshot, watch};

use crate::formats::{self, Diagnostic, Format, LoadOptions, Loaded};
use crate::progress::Quiet;
use crate::remote::{self, CallError};
use crate::report;
use crate::run::{self, RunOptions};

/// The default state directory of local mode, under the current directory.
pub const DEFAULT_STATE_DIR: &str = ".ordo-mcp";
/// `job_status` keeps this many bytes of each task's output tail (`job_logs` has the rest).
const STATUS_TAIL: usize = 2048;
/// `job_logs` returns at most this many bytes per task unless asked otherwise.
const LOGS_DEFAULT: usize = 16 * 1024;
/// `cancel_job` waits this long for a local job's processes to be killed.
const CANCEL_WAIT: Duration = Duration::from_secs(15);
/// A stopping server waits this long for its jobs to end.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// The reason recorded for jobs cancelled through `cancel_job` (the coordinator's words).
const CANCEL_REASON: &str = "cancelled by user";

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Run jobs on a cluster: NATS server URL(s) of its coordinator, comma-separated. Without
    /// it, jobs run on this machine.
    #[arg(long = "nats", env = "ORDO_NATS_URL", value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials file (JWT + nkey).
    #[arg(long, env = "ORDO_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    #[arg(long, env = "ORDO_NATS_USER")]
    pub user: Option<String>,
    #[arg(long, env = "ORDO_NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    #[arg(long, env = "ORDO_NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for TLS.
    #[arg(long, env = "ORDO_NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Local mode: keep jobs here (held open while the server runs; read it through the
    /// tools). Cluster mode ignores the local-mode flags.
    #[arg(long, env = "ORDO_MCP_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state: PathBuf,
    /// Local mode: task slots of each job (default: the number of CPUs).
    #[arg(long, env = "ORDO_WORKERS")]
    pub workers: Option<u32>,
    /// Local mode: agent command for prompt tasks, e.g. "claude -p" (split on whitespace; the
    /// prompt is appended as one argument). Overrides the spec's settings.agent_command.
    #[arg(long, env = "ORDO_AGENT_COMMAND")]
    pub agent_command: Option<String>,
}

/// Serves MCP on stdin/stdout until the client closes it (or SIGTERM / Ctrl-C); returns the
/// exit code.
pub fn serve(args: McpArgs) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let server = Ordo::new(args)?;
        tokio::select! {
            r = serve_stdio(server.clone()) => r?,
            () = ordo_proto::signals::interrupted() => {}
        }
        server.stop().await;
        anyhow::Ok(())
    });
    // A pending stdin read (blocking thread) must not hold the exit up.
    runtime.shutdown_background();
    result.map(|()| 0)
}

async fn serve_stdio(server: Ordo) -> anyhow::Result<()> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP session did not start")?;
    running.waiting().await.context("the MCP session failed")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tool inputs

/// A job spec given as text or as a file path.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SpecInput {
    /// The job spec's text: ordo TOML/JSON, Prompter TOML, subtasks JSON, TaskMaster
    /// tasks.json, or a Markdown task document. Give this or `path`.
    #[serde(default)]
    pub spec: Option<String>,
    /// Path of a spec file (relative paths from the server's working directory). Give this or
    /// `spec`.
    #[serde(default)]
    pub path: Option<String>,
    /// Input format: toml, json, subtasks, markdown-json, taskmaster or markdown. Detected from
    /// the path's extension and the content when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// TaskMaster tag to read (default: master).
    #[serde(default)]
    pub tag: Option<String>,
    /// TaskMaster: make each subtask a task of its own (`parent.sub`).
    #[serde(default)]
    pub expand_subtasks: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PlanInput {
    #[serde(flatten)]
    pub spec: SpecInput,
    /// Workers (task slots) to estimate the makespan for (default 4).
    #[serde(default)]
    pub workers: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConvertInput {
    #[serde(flatten)]
    pub spec: SpecInput,
    /// Output format: json (default) or toml.
    #[serde(default)]
    pub to: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SubmitInput {
    #[serde(flatten)]
    pub spec: SpecInput,
    /// Override the spec's execution mode: parallel or sequential.
    #[serde(default)]
    pub mode: Option<String>,
    /// Override the spec's max_parallel_tasks.
    #[serde(default)]
    pub max_parallel: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct JobInput {
    /// Job id, as submit_job returned it (locally also a unique prefix of one).
    pub job: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListInput {
    /// Only jobs in this state: pending, running, succeeded, failed or cancelled.
    #[serde(default)]
    pub state: Option<String>,
    /// Only jobs whose name, a task name, or state contains this text.
    #[serde(default)]
    pub search: Option<String>,
    /// At most this many jobs (newest first).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LogsInput {
    /// Job id (locally also a unique prefix of one).
    pub job: String,
    /// Only this task (name or index).
    #[serde(default)]
    pub task: Option<String>,
    /// Keep at most the last this-many bytes of each task's output (default 16384).
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ReportInput {
    /// Job id (locally also a unique prefix of one); default: the newest job.
    #[serde(default)]
    pub job: Option<String>,
    /// md (default: Markdown with a Mermaid timeline), json, junit or html.
    #[serde(default)]
    pub format: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Results

/// A failed tool call: the message the CLI would print, and structured details.
#[derive(Debug)]
struct Fail {
    message: String,
    detail: Value,
}

impl Fail {
    fn msg(message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            detail: json!({}),
        }
    }

    fn result(self) -> CallToolResult {
        let mut v = self.detail;
        if !v.is_object() {
            v = json!({ "detail": v });
        }
        v["error"] = Value::String(self.message.clone());
        let mut r = CallToolResult::structured_error(v);
        r.content = vec![ContentBlock::text(self.message)];
        r
    }
}

impl From<Vec<Diagnostic>> for Fail {
    fn from(diags: Vec<Diagnostic>) -> Fail {
        let errors: Vec<Value> = diags
            .iter()
            .map(|d| {
                json!({
                    "file": d.file, "line": d.pos.map(|p| p.line),
                    "column": d.pos.map(|p| p.col), "message": d.message,
                })
            })
            .collect();
        let message = diags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        Fail {
            message,
            detail: json!({ "valid": false, "errors": errors }),
        }
    }
}

impl From<CallError> for Fail {
    fn from(e: CallError) -> Fail {
        match e {
            CallError::Spec(diags) => diags.into(),
            e => Fail::msg(e.to_string()),
        }
    }
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Fail {
        Fail::msg(format!("{e:#}"))
    }
}

impl From<ordo_coordinator::store::Error> for Fail {
    fn from(e: ordo_coordinator::store::Error) -> Fail {
        Fail::msg(e.to_string())
    }
}

type Outcome = Result<CallToolResult, Fail>;

/// Success: the summary line, then `body` (the JSON when `None`); `value` as structured content.
fn done(summary: impl Into<String>, value: Value, body: Option<String>) -> Outcome {
    let body = body.unwrap_or_else(|| {
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
    });
    let mut r = CallToolResult::structured(value);
    r.content = vec![ContentBlock::text(summary), ContentBlock::text(body)];
    Ok(r)
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, Fail> {
    serde_json::to_value(v).map_err(|e| Fail::msg(format!("cannot encode the result: {e}")))
}

// ---------------------------------------------------------------------------------------------
// The server

#[derive(Clone)]
pub struct Ordo {
    inner: Arc<Inner>,
    tool_router: ToolRouter<Ordo>,
}

enum Inner {
    Local(Local),
    /// Boxed: the connection options are large.
    Cluster(Box<Cluster>),
}

struct Local {
    /// The shared store, or why it could not be opened (another `ordo mcp` may hold it).
    store: Result<Arc<Store>, String>,
    dir: PathBuf,
    workers: u32,
    agent_command: Option<Vec<String>>,
    /// Jobs running in this process.
    running: Arc<Mutex<HashMap<JobId, RunningJob>>>,
}

struct RunningJob {
    cancel: Option<oneshot::Sender<String>>,
    /// Turns true when the runner returned.
    done: watch::Receiver<bool>,
}

struct Cluster {
    nats: NatsArgs,
    client: OnceCell<remote::Client>,
}

impl Ordo {
    pub fn new(args: McpArgs) -> anyhow::Result<Ordo> {
        let inner = match args.nats {
            Some(url) => Inner::Cluster(Box::new(Cluster {
                nats: NatsArgs {
                    url,
                    creds: args.creds,
                    user: args.user,
                    password: args.password,
                    token: args.token,
                    tls_ca: args.tls_ca,
                },
                client: OnceCell::new(),
            })),
            None => {
                let agent_command = match &args.agent_command {
                    Some(a) => {
                        let argv: Vec<String> = a.split_whitespace().map(String::from).collect();
                        anyhow::ensure!(
                            !argv.is_empty(),
                            "--agent-command / ORDO_AGENT_COMMAND is empty"
                        );
                        Some(argv)
                    }
                    None => None,
                };
                let dir = std::path::absolute(&args.state).unwrap_or(args.state);
                let store = Store::open(&dir).map(Arc::new).map_err(|e| {
                    let msg = format!("cannot use the state directory: {e}");
                    eprintln!("ordo mcp: {msg}; local jobs are unavailable");
                    msg
                });
                let local = Local {
                    store,
                    dir,
                    workers: args.workers.unwrap_or_else(default_workers).max(1),
                    agent_command,
                    running: Arc::new(Mutex::new(HashMap::new())),
                };
                local.resume_unfinished();
                Inner::Local(local)
            }
        };
        Ok(Ordo {
            inner: Arc::new(inner),
            tool_router: Self::tool_router(),
        })
    }

    /// Cancels the local jobs still running and waits (a bounded time) for them to end.
    pub async fn stop(&self) {
        if let Inner::Local(local) = &*self.inner {
            let waits: Vec<_> = {
                let mut running = local.running.lock().unwrap();
                running
                    .values_mut()
                    .map(|r| {
                        if let Some(tx) = r.cancel.take() {
                            let _ = tx.send("ordo mcp stopped".into());
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
}

fn default_workers() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

#[tool_router]
impl Ordo {
    /// Check a job spec (text or path) without running it: the format it was read as, its
    /// name, task and dependency counts, and warnings. An invalid spec is a tool error listing
    /// every problem as `file:line:col: message` (unknown fields, missing dependencies,
    /// dependency cycles with their path, ...).
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn validate_job(&self, Parameters(p): Parameters<SpecInput>) -> CallToolResult {
        self.validate(p).unwrap_or_else(Fail::result)
    }

    /// Plan a job without running it: levels of tasks that can run together, the critical
    /// path, and the estimated makespan and speedup with `workers` slots.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn plan_job(&self, Parameters(p): Parameters<PlanInput>) -> CallToolResult {
        self.plan(p).unwrap_or_else(Fail::result)
    }

    /// Convert a Markdown task document (or any spec ordo reads) to ordo's canonical JSON or
    /// TOML, validated; the converted text is returned, not written anywhere.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn convert_markdown(&self, Parameters(p): Parameters<ConvertInput>) -> CallToolResult {
        self.convert(p).unwrap_or_else(Fail::result)
    }

    /// Submit a job (spec text or path) and return its id at once. Without --nats the server
    /// runs it on this machine in the background; with --nats the cluster's coordinator runs
    /// it. Follow it with job_status, job_logs and job_report.
    #[tool(annotations(destructive_hint = false, open_world_hint = true))]
    async fn submit_job(&self, Parameters(p): Parameters<SubmitInput>) -> CallToolResult {
        self.submit(p).await.unwrap_or_else(Fail::result)
    }

    /// A job's state and each task's state, attempts, exit code, duration, reason and the end
    /// of its output.
    #[tool(annotations(read_only_hint = true))]
    async fn job_status(&self, Parameters(p): Parameters<JobInput>) -> CallToolResult {
        self.status(p).await.unwrap_or_else(Fail::result)
    }

    /// List jobs, newest first, with their task counts; filter by state or text.
    #[tool(annotations(read_only_hint = true))]
    async fn list_jobs(&self, Parameters(p): Parameters<ListInput>) -> CallToolResult {
        self.list(p).await.unwrap_or_else(Fail::result)
    }

    /// Cancel a job: running tasks are killed (their whole process trees), the rest never
    /// start. Returns the job's summary; a finished job is left as it is.
    #[tool(annotations(destructive_hint = true, idempotent_hint = true))]
    async fn cancel_job(&self, Parameters(p): Parameters<JobInput>) -> CallToolResult {
        self.cancel(p).await.unwrap_or_else(Fail::result)
    }

    /// The output of a job's tasks (or one task's): locally the tail of each task's last
    /// finished attempt; on a cluster everything the workers streamed so far.
    #[tool(annotations(read_only_hint = true))]
    async fn job_logs(&self, Parameters(p): Parameters<LogsInput>) -> CallToolResult {
        self.logs(p).await.unwrap_or_else(Fail::result)
    }

    /// A job's report: summary (makespan, speedup, retries, waits), verification checklist,
    /// task table, critical path, timeline and output tails. Markdown by default; json, junit
    /// or html on request.
    #[tool(annotations(read_only_hint = true))]
    async fn job_report(&self, Parameters(p): Parameters<ReportInput>) -> CallToolResult {
        self.report(p).await.unwrap_or_else(Fail::result)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Ordo {
    fn get_info(&self) -> ServerConfig {
        let mode = match &*self.inner {
            Inner::Local(l) => format!(
                "Jobs run on this machine; their state is kept in {}.",
                l.dir.display()
            ),
            Inner::Cluster(_) => "Jobs run on the ordo cluster behind --nats.".to_string(),
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "ordo validates, plans and runs task graphs (DAGs of shell commands, argv lists \
                 or agent prompts, with verification commands, retries and dependencies). \
                 validate_job / plan_job / convert_markdown check a spec; submit_job starts a \
                 job and returns its id; poll job_status until its state is succeeded, failed \
                 or cancelled; job_logs and job_report tell what happened. {mode}"
            ))
    }
}

// ---------------------------------------------------------------------------------------------
// Specs

/// A name for spec text in diagnostics, whose extension matches its format.
fn text_label(format: Option<Format>, text: &str) -> String {
    let format = format.unwrap_or_else(|| formats::detect("spec", text));
    let ext = match format {
        Format::Toml => "toml",
        Format::Markdown => "md",
        Format::Json | Format::Subtasks | Format::MarkdownJson | Format::TaskMaster => "json",
    };
    format!("spec.{ext}")
}

/// Reads and validates a spec like `ordo validate`: the loaded spec, its DAG and its label.
fn load(p: &SpecInput) -> Result<(Loaded, Dag, String), Fail> {
    let format = p
        .format
        .as_deref()
        .map(str::parse::<Format>)
        .transpose()
        .map_err(Fail::msg)?;
    let opts = LoadOptions {
        format,
        tag: Some(p.tag.clone().unwrap_or_else(|| "master".into())),
        expand_subtasks: p.expand_subtasks,
    };
    let (loaded, label) = match (&p.spec, &p.path) {
        (Some(text), None) => {
            let label = text_label(format, text);
            (formats::parse(&label, text, &opts)?, label)
        }
        (None, Some(path)) => (formats::load(Path::new(path), &opts)?, path.clone()),
        (Some(_), Some(_)) => return Err(Fail::msg("give the spec as `spec` or `path`, not both")),
        (None, None) => {
            return Err(Fail::msg(
                "no spec: give its text as `spec` or a file as `path`",
            ));
        }
    };
    let dag = formats::check(&loaded, &label)?;
    Ok((loaded, dag, label))
}

fn parse_mode(mode: Option<&str>) -> Result<Option<ExecutionMode>, Fail> {
    mode.map(str::parse::<ExecutionMode>)
        .transpose()
        .map_err(Fail::msg)
}

/// `ORDO_EXECUTION_MODE`, the default mode of specs that set none.
fn env_mode() -> Result<Option<ExecutionMode>, Fail> {
    match std::env::var("ORDO_EXECUTION_MODE") {
        Ok(v) if !v.trim().is_empty() => v
            .parse::<ExecutionMode>()
            .map(Some)
            .map_err(|e| Fail::msg(format!("ORDO_EXECUTION_MODE: {e}"))),
        _ => Ok(None),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The line for a job: state and task counts, as `ordo watch` ends.
fn summary_line(s: &JobSummary) -> String {
    let mut line = format!(
        "job {} '{}' {}: {}/{} tasks succeeded",
        s.id, s.name, s.state, s.succeeded, s.total
    );
    if s.failed > 0 {
        line.push_str(&format!(", {} failed", s.failed));
    }
    if s.running > 0 {
        line.push_str(&format!(", {} running", s.running));
    }
    if let Some(r) = s.reason.as_deref().filter(|r| !r.is_empty()) {
        line.push_str(&format!(" ({})", r.lines().next().unwrap_or_default()));
    }
    line
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        s
    } else {
        &s[s.ceil_char_boundary(s.len() - max)..]
    }
}

/// A task of `status` by name, else by index.
fn resolve_task(status: &JobStatus, task: &str) -> Result<u32, Fail> {
    if let Some(t) = status.tasks.iter().find(|t| t.name == task) {
        return Ok(t.index);
    }
    if let Ok(i) = task.trim().parse::<u32>()
        && status.tasks.iter().any(|t| t.index == i)
    {
        return Ok(i);
    }
    Err(Fail::msg(format!(
        "job {} has no task '{}'",
        status.summary.id,
        task.escape_debug()
    )))
}

impl Ordo {
    fn validate(&self, p: SpecInput) -> Outcome {
        let (loaded, dag, label) = load(&p)?;
        let deps: usize = dag.deps.iter().map(Vec::len).sum();
        let summary = format!(
            "{label}: valid {} job '{}': {}, {}",
            loaded.format,
            loaded.spec.name,
            plural(dag.len(), "task", "tasks"),
            plural(deps, "dependency", "dependencies"),
        );
        let v = json!({
            "valid": true, "file": label, "format": loaded.format.to_string(),
            "name": loaded.spec.name, "tasks": dag.len(), "dependencies": deps,
            "task_names": dag.names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            "warnings": loaded.warnings,
        });
        done(summary, v, None)
    }

    fn plan(&self, p: PlanInput) -> Outcome {
        let (loaded, dag, _) = load(&p.spec)?;
        let plan = dag.plan(p.workers.unwrap_or(4).max(1));
        let path: Vec<&str> = plan.critical_path.iter().map(|n| n.as_str()).collect();
        let summary = format!(
            "job '{}': {}, {} levels; critical path {}; estimated makespan {} task-lengths with \
             {} workers (speedup {:.2}x)",
            loaded.spec.name,
            plural(plan.tasks, "task", "tasks"),
            plan.levels.len(),
            path.join(" → "),
            plan.estimated_makespan,
            plan.workers,
            plan.estimated_speedup
        );
        let mut v = to_value(&plan)?;
        v["name"] = loaded.spec.name.clone().into();
        v["warnings"] = json!(loaded.warnings);
        done(summary, v, None)
    }

    fn convert(&self, p: ConvertInput) -> Outcome {
        let (loaded, dag, label) = load(&p.spec)?;
        let to =
            p.to.as_deref()
                .unwrap_or("json")
                .trim()
                .to_ascii_lowercase();
        let text = match to.as_str() {
            "json" => formats::to_json(&loaded.spec),
            "toml" => formats::to_toml(&loaded.spec)
                .map_err(|e| Fail::msg(format!("cannot write TOML: {e}")))?,
            other => {
                return Err(Fail::msg(format!(
                    "unknown output format '{}' (expected json or toml)",
                    other.escape_debug()
                )));
            }
        };
        let summary = format!(
            "{label} ({}) → ordo {to}: job '{}', {}",
            loaded.format,
            loaded.spec.name,
            plural(dag.len(), "task", "tasks")
        );
        let v = json!({
            "from": loaded.format.to_string(), "to": to, "name": loaded.spec.name,
            "tasks": dag.len(), "text": text, "warnings": loaded.warnings,
        });
        done(summary, v, Some(text))
    }

    async fn submit(&self, p: SubmitInput) -> Outcome {
        let (loaded, dag, label) = load(&p.spec)?;
        let mode = parse_mode(p.mode.as_deref())?;
        let source = if p.spec.path.is_some() {
            label
        } else {
            "mcp".to_string()
        };
        let mut spec = loaded.spec;
        match &*self.inner {
            Inner::Local(local) => {
                if let Some(mode) = mode {
                    spec.settings.execution_mode = Some(mode);
                    spec.settings.enable_parallel = None;
                }
                if let Some(argv) = &local.agent_command {
                    spec.settings.agent_command = Some(argv.clone());
                }
                let opts = RunOptions {
                    workers: local.workers,
                    default_mode: env_mode()?.unwrap_or(ExecutionMode::Parallel),
                    max_parallel: p.max_parallel,
                    state_dir: None,
                    source,
                    telemetry: None,
                };
                let store = local.store()?;
                let record = tokio::task::block_in_place(|| run::insert_job(&store, &spec, &opts))?;
                let summary = format!(
                    "submitted job {} '{}' ({}), running on this machine",
                    record.id,
                    record.name,
                    plural(dag.len(), "task", "tasks")
                );
                let v = json!({
                    "job": record.id, "name": record.name, "tasks": dag.len(), "where": "local",
                    "state_dir": local.dir, "warnings": loaded.warnings,
                });
                local.start(store, record, false, dag, opts);
                done(summary, v, None)
            }
            Inner::Cluster(cluster) => {
                let mode = mode.map(|m| match m {
                    ExecutionMode::Parallel => remote::Mode::Parallel,
                    ExecutionMode::Sequential => remote::Mode::Sequential,
                });
                let env = std::env::var("ORDO_EXECUTION_MODE").ok();
                let name = spec.name.clone();
                let req =
                    remote::submit_request(spec, source, mode, p.max_parallel, env.as_deref())?;
                let client = cluster.client().await?;
                let reply: SubmitReply = client.call(api::SUBMIT, &req, None).await?;
                let summary = format!(
                    "submitted job {} '{name}' ({}) to the cluster",
                    reply.job,
                    plural(dag.len(), "task", "tasks")
                );
                let v = json!({
                    "job": reply.job, "name": name, "tasks": dag.len(), "where": "cluster",
                    "warnings": loaded.warnings,
                });
                done(summary, v, None)
            }
        }
    }

    async fn status(&self, p: JobInput) -> Outcome {
        let mut status = self.fetch_status(&p.job).await?;
        for t in &mut status.tasks {
            if let Some(out) = &mut t.output_tail
                && out.len() > STATUS_TAIL
            {
                *out = tail(out, STATUS_TAIL).to_string();
            }
        }
        done(summary_line(&status.summary), to_value(&status)?, None)
    }

    async fn fetch_status(&self, job: &str) -> Result<JobStatus, Fail> {
        match &*self.inner {
            Inner::Local(local) => {
                let store = local.store()?;
                let id = local.resolve(&store, job)?;
                tokio::task::block_in_place(|| views::status(&store, &id))?
                    .ok_or_else(|| Fail::msg(format!("no job {id}")))
            }
            Inner::Cluster(cluster) => {
                let id = remote::parse_job(job)?;
                let client = cluster.client().await?;
                Ok(client
                    .call(api::STATUS, &JobRef { job: id }, Some(id))
                    .await?)
            }
        }
    }

    async fn list(&self, p: ListInput) -> Outcome {
        let req = JobsRequest {
            state: p.state,
            search: p.search,
            limit: p.limit,
        };
        let jobs: Vec<JobSummary> = match &*self.inner {
            Inner::Local(local) => {
                let store = local.store()?;
                tokio::task::block_in_place(|| views::jobs(&store, &req))?
            }
            Inner::Cluster(cluster) => cluster.client().await?.call(api::JOBS, &req, None).await?,
        };
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for j in &jobs {
            *states.entry(j.state.as_str()).or_default() += 1;
        }
        let mut summary = plural(jobs.len(), "job", "jobs");
        if !states.is_empty() {
            let parts: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
            summary.push_str(&format!(": {}", parts.join(", ")));
        }
        let body = jobs.iter().map(summary_line).collect::<Vec<_>>().join("\n");
        done(summary, json!({ "jobs": jobs }), Some(body))
    }

    async fn cancel(&self, p: JobInput) -> Outcome {
        let summary: JobSummary = match &*self.inner {
            Inner::Local(local) => {
                let store = local.store()?;
                let id = local.resolve(&store, &p.job)?;
                let waiting = {
                    let mut running = local.running.lock().unwrap();
                    running.get_mut(&id).map(|r| {
                        if let Some(tx) = r.cancel.take() {
                            let _ = tx.send(CANCEL_REASON.into());
                        }
                        r.done.clone()
                    })
                };
                if let Some(mut done) = waiting {
                    let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
                }
                tokio::task::block_in_place(|| -> Result<_, Fail> {
                    let rec = store
                        .job(&id)?
                        .ok_or_else(|| Fail::msg(format!("no job {id}")))?;
                    Ok(views::summary(&rec, &store.tasks(&id)?))
                })?
            }
            Inner::Cluster(cluster) => {
                let id = remote::parse_job(&p.job)?;
                let client = cluster.client().await?;
                client
                    .call(api::CANCEL, &JobRef { job: id }, Some(id))
                    .await?
            }
        };
        done(summary_line(&summary), to_value(&summary)?, None)
    }

    async fn logs(&self, p: LogsInput) -> Outcome {
        let keep = p.max_bytes.unwrap_or(LOGS_DEFAULT);
        let status = self.fetch_status(&p.job).await?;
        let only = p
            .task
            .as_deref()
            .map(|t| resolve_task(&status, t))
            .transpose()?;
        let id = status.summary.id;
        // Per task index: (bytes written in all, kept output).
        let outputs: BTreeMap<u32, (u64, String)> = match &*self.inner {
            Inner::Local(local) => {
                let store = local.store()?;
                let attempts = tokio::task::block_in_place(|| store.attempts(&id))?;
                let mut last = BTreeMap::new();
                for a in attempts {
                    last.insert(
                        a.index,
                        (a.output_bytes, tail(&a.output_tail, keep).to_string()),
                    );
                }
                last
            }
            Inner::Cluster(cluster) => {
                let client = cluster.client().await?;
                client
                    .output(id, only, keep)
                    .await?
                    .into_iter()
                    .map(|(i, (total, bytes))| {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        (i, (total, tail(&text, keep).to_string()))
                    })
                    .collect()
            }
        };
        let mut tasks = Vec::new();
        let mut body = String::new();
        for t in &status.tasks {
            if only.is_some_and(|i| i != t.index) {
                continue;
            }
            let (total, output) = outputs.get(&t.index).cloned().unwrap_or_default();
            let truncated = (output.len() as u64) < total;
            body.push_str(&format!("── {} ({}) ──\n", t.name, t.state));
            if truncated {
                body.push_str(&format!("[… last {} of {total} bytes]\n", output.len()));
            }
            body.push_str(&output);
            if !output.is_empty() && !output.ends_with('\n') {
                body.push('\n');
            }
            tasks.push(json!({
                "index": t.index, "name": t.name, "state": t.state, "attempts": t.attempts,
                "output": output, "output_bytes": total, "truncated": truncated,
            }));
        }
        let summary = format!(
            "output of {} of job {} '{}' ({})",
            plural(tasks.len(), "task", "tasks"),
            id,
            status.summary.name,
            status.summary.state
        );
        let v = json!({ "job": id, "state": status.summary.state, "tasks": tasks });
        done(summary, v, Some(body))
    }

    async fn report(&self, p: ReportInput) -> Outcome {
        let format = match p.format.as_deref() {
            None => report::Format::Md,
            Some(f) => report::Format::from_str(f.trim(), true).map_err(|_| {
                Fail::msg(format!(
                    "unknown report format '{}' (expected md, json, junit or html)",
                    f.escape_debug()
                ))
            })?,
        };
        let data: ReportData = match &*self.inner {
            Inner::Local(local) => {
                let store = local.store()?;
                tokio::task::block_in_place(|| -> Result<_, Fail> {
                    let id = match &p.job {
                        Some(text) => local.resolve(&store, text)?,
                        None => data::latest(&store)?.ok_or_else(|| {
                            Fail::msg(format!("{} holds no jobs", local.dir.display()))
                        })?,
                    };
                    data::gather(&store, &id)?.ok_or_else(|| Fail::msg(format!("no job {id}")))
                })?
            }
            Inner::Cluster(cluster) => {
                let job = p.job.as_deref().map(remote::parse_job).transpose()?;
                let client = cluster.client().await?;
                client
                    .call(api::REPORT, &ReportRequest { job }, job)
                    .await?
            }
        };
        let model = report::build(&data);
        let text = report::render(&model, format);
        let name = format!("{format:?}").to_ascii_lowercase();
        let summary = format!(
            "report of job {} '{}' ({name}): {}, {}, makespan {}",
            model.job.id,
            model.job.name,
            model.summary.outcome,
            plural(model.summary.tasks, "task", "tasks"),
            report::fmt_ms(model.summary.makespan_ms)
        );
        let report_value = match format {
            report::Format::Json => to_value(&model)?,
            _ => Value::String(text.clone()),
        };
        let v = json!({ "job": model.job.id, "format": name, "report": report_value });
        done(summary, v, Some(text))
    }
}

impl Cluster {
    async fn client(&self) -> Result<&remote::Client, Fail> {
        Ok(self
            .client
            .get_or_try_init(|| remote::Client::connect(&self.nats))
            .await?)
    }
}

impl Local {
    fn store(&self) -> Result<Arc<Store>, Fail> {
        self.store.clone().map_err(Fail::msg)
    }

    /// A full job id, or an unambiguous prefix of one (as `ordo report --state` takes them).
    fn resolve(&self, store: &Store, text: &str) -> Result<JobId, Fail> {
        let text = text.trim();
        if let Ok(id) = text.parse::<JobId>() {
            return Ok(id);
        }
        let jobs = tokio::task::block_in_place(|| store.jobs())?;
        let hits: Vec<JobId> = jobs
            .iter()
            .map(|j| j.id)
            .filter(|id| !text.is_empty() && id.to_string().starts_with(text))
            .collect();
        match hits.as_slice() {
            [id] => Ok(*id),
            [] => Err(Fail::msg(format!(
                "no job '{}' in the state directory {}",
                text.escape_debug(),
                self.dir.display()
            ))),
            _ => Err(Fail::msg(format!(
                "'{}' matches {} jobs; give more of the id",
                text.escape_debug(),
                hits.len()
            ))),
        }
    }

    /// Runs a recorded job in the background; registers its cancel handle first.
    fn start(
        &self,
        store: Arc<Store>,
        record: JobRecord,
        resume: bool,
        dag: Dag,
        opts: RunOptions,
    ) {
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
        tokio::spawn(async move {
            let cancel = async move {
                match cancel_rx.await {
                    Ok(reason) => reason,
                    // Never cancelled.
                    Err(_) => std::future::pending().await,
                }
            };
            let mut quiet = Quiet;
            let result =
                run::run_recorded(store, record, resume, dag, opts, &mut quiet, cancel).await;
            if let Err(e) = result {
                eprintln!("ordo mcp: job {id}: {e:#}");
            }
            running.lock().unwrap().remove(&id);
            let _ = done_tx.send(true);
        });
    }

    /// Resumes the jobs an earlier server left unfinished (it was killed).
    fn resume_unfinished(&self) {
        let Ok(store) = self.store.clone() else {
            return;
        };
        let jobs = match store.jobs() {
            Ok(j) => j,
            Err(e) => {
                eprintln!("ordo mcp: cannot read the state directory: {e}");
                return;
            }
        };
        for rec in jobs.into_iter().filter(|j| !j.state.is_terminal()) {
            let dag = match ordo_proto::validate::validate(&rec.spec) {
                Ok(dag) => dag,
                Err(errors) => {
                    eprintln!(
                        "ordo mcp: cannot resume job {}: {}",
                        rec.id,
                        errors.first().map(ToString::to_string).unwrap_or_default()
                    );
                    continue;
                }
            };
            let opts = RunOptions {
                workers: rec.options.slots.unwrap_or(self.workers),
                default_mode: rec.options.default_mode,
                max_parallel: rec.options.max_parallel,
                state_dir: None,
                source: rec.source.clone(),
                telemetry: None,
            };
            eprintln!("ordo mcp: resuming job {} '{}'", rec.id, rec.name);
            self.start(store.clone(), rec, true, dag, opts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> SpecInput {
        SpecInput {
            spec: Some(text.into()),
            ..Default::default()
        }
    }

    #[test]
    fn spec_text_gets_a_label_of_its_format() {
        assert_eq!(text_label(None, "[[tasks]]\nname = 'a'\n"), "spec.toml");
        assert_eq!(text_label(None, r#"{"tasks": []}"#), "spec.json");
        assert_eq!(text_label(None, "# Doc\n\n### Task 1: Do\n"), "spec.md");
        assert_eq!(text_label(Some(Format::TaskMaster), ""), "spec.json");
    }

    #[test]
    fn spec_errors_carry_the_cli_messages() {
        let cycle = "[[tasks]]\nname = 'a'\ncommand = 'true'\ndepends_on = ['b']\n\
                     [[tasks]]\nname = 'b'\ncommand = 'true'\ndepends_on = ['a']\n";
        let e = load(&spec(cycle)).unwrap_err();
        assert!(
            e.message.starts_with("spec.toml:")
                && e.message.contains("dependency cycle: a → b → a"),
            "{}",
            e.message
        );
        assert_eq!(e.detail["valid"], false);
        let e = load(&SpecInput::default()).unwrap_err();
        assert!(e.message.starts_with("no spec"), "{}", e.message);
        let both = SpecInput {
            path: Some("x.toml".into()),
            ..spec("")
        };
        assert!(load(&both).unwrap_err().message.contains("not both"));
        let bad_format = SpecInput {
            format: Some("yaml".into()),
            ..spec("")
        };
        assert!(
            load(&bad_format)
                .unwrap_err()
                .message
                .contains("unknown format")
        );
    }

    #[test]
    fn tool_errors_are_error_results_with_the_message_first() {
        let r = Fail::msg("no job x").result();
        assert_eq!(r.is_error, Some(true));
        assert_eq!(r.structured_content.unwrap()["error"], "no job x");
        assert_eq!(r.content.len(), 1);
    }

    #[test]
    fn tails_keep_the_end_on_a_character_boundary() {
        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("aéé", 3), "é");
    }
}
