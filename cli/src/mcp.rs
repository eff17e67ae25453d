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
//! Every tool that touches jobs goes through the job client (`jobs`), as the CLI's job commands
//! and the dashboard do:
//! - Local (no `--nats`): the server runs jobs itself, in the background. One redb store in
//!   `--state DIR` (default `.ordo-mcp`, or `ORDO_MCP_STATE_DIR`) is opened for the server's
//!   lifetime and shared by every running job and every read, so `job_status`, `job_logs` and
//!   `job_report` see jobs while and after they run. Jobs left unfinished by a server that died
//!   resume when the next one starts (as `ordo run --state` resumes); when the server stops
//!   (stdin closed, SIGTERM) it cancels the jobs it is running and waits for their processes.
//! - Cluster (`--nats URL`): coordinator API requests (one connection made on first use), and
//!   `job_logs` reads `ORDO_LOGS`.
//!
//! Stdout is the protocol: nothing else may write to it (tasks' output is captured, diagnostics
//! go to stderr).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum as _;
use ordo_formats::prepare::env_mode;
use ordo_formats::{Diagnostic, Format, LoadOptions, Overrides, Prepared, Source, With};
use ordo_proto::api::{DecideRequest, JobStatus, JobSummary, JobsRequest};
use ordo_proto::{ExecutionMode, JobState, WorkspaceMode};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::args::RunTarget;
use crate::jobs::{self, Jobs, Open};
use ordo_report as report;

/// The default state directory of local mode, under the current directory.
pub const DEFAULT_STATE_DIR: &str = ".ordo-mcp";
/// `job_status` keeps this many bytes of each task's output tail (`job_logs` has the rest).
const STATUS_TAIL: usize = 2048;
/// `job_logs` returns at most this many bytes per task unless asked otherwise.
const LOGS_DEFAULT: usize = 16 * 1024;
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Where jobs live: `--nats URL` for a cluster; without it jobs run on this machine and
    /// are kept in --state DIR (default .ordo-mcp, or ORDO_MCP_STATE_DIR).
    #[command(flatten)]
    pub place: RunTarget,
}

/// Serves MCP on stdin/stdout until the client closes it (or SIGTERM / Ctrl-C); returns the
/// exit code.
pub fn serve(args: McpArgs) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let server = Ordo::new(args).await?;
        tokio::select! {
            r = serve_stdio(server.clone()) => r?,
            () = ordo_plumbing::signals::interrupted() => {}
        }
        server.stop().await;
        anyhow::Ok(())
    });
    // A pending stdin read (blocking thread) must not hold the exit up.
    runtime.shutdown_background();
    result.map(|()| 0)
}

async fn serve_stdio(server: Ordo) -> anyhow::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio();
    let framed = crate::mcp_stdio::frame(stdin, stdout);
    let transport =
        rmcp::transport::async_rw::AsyncRwTransport::new_server(framed.read, framed.write)
            .with_max_line_length(crate::mcp_stdio::MAX_LINE);
    let running = server
        .serve(transport)
        .await
        .context("the MCP session did not start")?;
    running.waiting().await.context("the MCP session failed")?;
    // Answers still on their way out (a bad last line) are written before the process ends.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), framed.writer).await;
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
    /// TaskMaster: also run tasks marked done, cancelled or deferred (left out by default).
    #[serde(default)]
    pub include_done: bool,
    /// Settings overlay: the path of a TOML file holding `[settings]`, laid over the spec's
    /// own (like `--with FILE`).
    #[serde(default)]
    pub with: Option<String>,
    /// `worktree`: every attempt in a git worktree of its own, integrated in order.
    #[serde(default)]
    pub workspace: Option<String>,
    /// The job's budget in dollars of agent spend.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// The job's budget in agent tokens.
    #[serde(default)]
    pub max_tokens: Option<u64>,
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

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ApproveInput {
    /// Job id (locally also a unique prefix of one).
    pub job: String,
    /// The task awaiting approval (name or index).
    pub task: String,
    /// Why it is approved, kept with the decision.
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RejectInput {
    /// Job id (locally also a unique prefix of one).
    pub job: String,
    /// The task awaiting approval (name or index).
    pub task: String,
    /// Why it is rejected (required): with `on_reject = "revise"` it goes back to the task's
    /// agent.
    pub reason: String,
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

impl From<jobs::Error> for Fail {
    fn from(e: jobs::Error) -> Fail {
        match e {
            jobs::Error::Spec(diags) => diags.into(),
            e => Fail::msg(e.to_string()),
        }
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
    /// The job client, or why it could not be opened (another `ordo mcp` may hold the state
    /// directory): the tools that need no jobs still work.
    jobs: Arc<Result<Jobs, String>>,
    tool_router: ToolRouter<Ordo>,
}

impl Ordo {
    pub async fn new(args: McpArgs) -> anyhow::Result<Ordo> {
        let default_dir = std::env::var_os("ORDO_MCP_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        args.place.run.agent_argv().map_err(anyhow::Error::msg)?;
        let target = args.place.target(Some(default_dir));
        let jobs = Jobs::open(&target, Open::Serve).await.map_err(|e| {
            let msg = e.to_string();
            eprintln!("ordo mcp: {msg}; local jobs are unavailable");
            msg
        });
        Ok(Ordo {
            jobs: Arc::new(jobs),
            tool_router: Self::tool_router(),
        })
    }

    /// Cancels the local jobs still running and waits (a bounded time) for them to end.
    pub async fn stop(&self) {
        if let Ok(jobs) = &*self.jobs {
            jobs.stop().await;
        }
    }

    fn jobs(&self) -> Result<&Jobs, Fail> {
        self.jobs
            .as_ref()
            .as_ref()
            .map_err(|e| Fail::msg(e.clone()))
    }
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

    /// A job's state and each task's state, attempts, exit code, duration, reason, the end
    /// of its output, its quality gates' stages (verdict, findings, round, duration, cost,
    /// session) and, for a task awaiting approval, what the decision is about (`approval`).
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

    /// Approve a task awaiting approval (a quality gate's approval stage): the task goes on
    /// to its integration. The decision is recorded as by `mcp`, with the comment. Returns the
    /// job's summary.
    #[tool(annotations(destructive_hint = false, idempotent_hint = false))]
    async fn approve(&self, Parameters(p): Parameters<ApproveInput>) -> CallToolResult {
        self.decide(p.job, p.task, p.comment, true)
            .await
            .unwrap_or_else(Fail::result)
    }

    /// Reject a task awaiting approval, with a reason: its attempt fails, or with
    /// `on_reject = "revise"` the reason goes back to its agent as a new round. Recorded as by
    /// `mcp`. Returns the job's summary.
    #[tool(annotations(destructive_hint = true, idempotent_hint = false))]
    async fn reject(&self, Parameters(p): Parameters<RejectInput>) -> CallToolResult {
        self.decide(p.job, p.task, Some(p.reason), false)
            .await
            .unwrap_or_else(Fail::result)
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
        let mode = match &*self.jobs {
            Ok(Jobs::Cluster(_)) => "Jobs run on the ordo cluster behind --nats.".to_string(),
            Ok(Jobs::Local(l)) => format!(
                "Jobs run on this machine; their state is kept in {}.",
                l.dir().display()
            ),
            Err(e) => format!("Local jobs are unavailable: {e}."),
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

/// Prepares a spec like the CLI (`ordo_formats::prepare`), with a tool's `mode`,
/// `max_parallel` and `workers`.
fn prepare(
    p: &SpecInput,
    mode: Option<ExecutionMode>,
    max_parallel: Option<u32>,
    workers: Option<u32>,
) -> Result<Prepared, Fail> {
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
        include_done: p.include_done,
        current_tag: None,
    };
    let source = match (&p.spec, &p.path) {
        (Some(text), None) => Source::Text {
            text,
            origin: "mcp",
        },
        (None, Some(path)) => {
            // Only a regular file: `/dev/stdin` would read this server's own protocol stream
            // and a FIFO would hang the call.
            let meta = std::fs::metadata(path).map_err(|e| Fail::msg(format!("{path}: {e}")))?;
            if !meta.is_file() {
                return Err(Fail::msg(format!(
                    "{path}: not a regular file; give the path of a spec file"
                )));
            }
            Source::File(Path::new(path))
        }
        (Some(_), Some(_)) => return Err(Fail::msg("give the spec as `spec` or `path`, not both")),
        (None, None) => {
            return Err(Fail::msg(
                "no spec: give its text as `spec` or a file as `path`",
            ));
        }
    };
    let workspace = p
        .workspace
        .as_deref()
        .map(str::parse::<WorkspaceMode>)
        .transpose()
        .map_err(Fail::msg)?;
    let overrides = Overrides {
        with: p.with.as_ref().map(|w| With::File(w.into())),
        workspace,
        max_cost_usd: p.max_cost_usd,
        max_tokens: p.max_tokens,
        mode,
        max_parallel,
        workers,
        env_mode: env_mode(),
    };
    ordo_formats::prepare(source, &opts, &overrides).map_err(|e| match e.diagnostics() {
        Some(diags) => Fail::from(diags),
        None => Fail::msg(e.to_string()),
    })
}

fn parse_mode(mode: Option<&str>) -> Result<Option<ExecutionMode>, Fail> {
    mode.map(str::parse::<ExecutionMode>)
        .transpose()
        .map_err(Fail::msg)
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

impl Ordo {
    fn validate(&self, p: SpecInput) -> Outcome {
        let prep = prepare(&p, None, None, None)?;
        let (spec, dag, label) = (&prep.request.spec, &prep.dag, &prep.label);
        let deps: usize = dag.deps.iter().map(Vec::len).sum();
        let summary = format!(
            "{label}: valid {} job '{}': {}, {}",
            prep.format,
            spec.name,
            plural(dag.len(), "task", "tasks"),
            plural(deps, "dependency", "dependencies"),
        );
        let v = json!({
            "valid": true, "file": label, "format": prep.format.to_string(),
            "name": spec.name, "tasks": dag.len(), "dependencies": deps,
            "task_names": dag.names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            "warnings": prep.warnings,
        });
        done(summary, v, None)
    }

    fn plan(&self, p: PlanInput) -> Outcome {
        let prep = prepare(&p.spec, None, None, p.workers)?;
        let plan = prep.dag.plan(p.workers.unwrap_or(4).max(1), &prep.mode());
        let name = &prep.request.spec.name;
        let path: Vec<&str> = plan.critical_path.iter().map(|n| n.as_str()).collect();
        let summary = format!(
            "job '{}': {}, {} levels, {} ({}); critical path {}; estimated makespan {} \
             task-lengths with {} workers (speedup {:.2}x)",
            name,
            plural(plan.tasks, "task", "tasks"),
            plan.levels.len(),
            plan.mode,
            plan.mode_reason,
            path.join(" → "),
            plan.estimated_makespan,
            plan.workers,
            plan.estimated_speedup
        );
        let mut v = to_value(&plan)?;
        v["name"] = name.clone().into();
        v["warnings"] = json!(prep.warnings);
        done(summary, v, None)
    }

    fn convert(&self, p: ConvertInput) -> Outcome {
        let prep = prepare(&p.spec, None, None, None)?;
        let (spec, label) = (&prep.request.spec, &prep.label);
        let to =
            p.to.as_deref()
                .unwrap_or("json")
                .trim()
                .to_ascii_lowercase();
        let text = match to.as_str() {
            "json" => ordo_formats::to_json(spec),
            "toml" => ordo_formats::to_toml(spec)
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
            prep.format,
            spec.name,
            plural(prep.dag.len(), "task", "tasks")
        );
        let v = json!({
            "from": prep.format.to_string(), "to": to, "name": spec.name,
            "tasks": prep.dag.len(), "text": text, "warnings": prep.warnings,
        });
        done(summary, v, Some(text))
    }

    async fn submit(&self, p: SubmitInput) -> Outcome {
        let mode = parse_mode(p.mode.as_deref())?;
        let prep = prepare(&p.spec, mode, p.max_parallel, None)?;
        let jobs = self.jobs()?;
        let name = prep.request.spec.name.clone();
        let tasks = prep.dag.len();
        let job = jobs.submit(prep.request, prep.dag).await?;
        let (place, mut v) = match jobs {
            Jobs::Local(l) => (
                "running on this machine",
                json!({ "where": "local", "state_dir": l.dir() }),
            ),
            Jobs::Cluster(_) => ("to the cluster", json!({ "where": "cluster" })),
        };
        let summary = format!(
            "submitted job {job} '{name}' ({}) {place}",
            plural(tasks, "task", "tasks")
        );
        v["job"] = json!(job);
        v["name"] = json!(name);
        v["tasks"] = json!(tasks);
        v["warnings"] = json!(prep.warnings);
        done(summary, v, None)
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

    async fn decide(
        &self,
        job: String,
        task: String,
        comment: Option<String>,
        approve: bool,
    ) -> Outcome {
        let jobs = self.jobs()?;
        let id = jobs.resolve(&job).await?;
        let req = DecideRequest {
            job: id,
            task,
            by: "mcp".into(),
            comment: comment.filter(|c| !c.trim().is_empty()),
        };
        let summary = jobs.decide(&req, approve).await?;
        let what = if approve { "approved" } else { "rejected" };
        done(
            format!("{what} task {}: {}", req.task, summary_line(&summary)),
            to_value(&summary)?,
            None,
        )
    }

    async fn fetch_status(&self, job: &str) -> Result<JobStatus, Fail> {
        let jobs = self.jobs()?;
        let id = jobs.resolve(job).await?;
        Ok(jobs.status(id).await?)
    }

    async fn list(&self, p: ListInput) -> Outcome {
        let state = p
            .state
            .as_deref()
            .map(|s| s.trim().parse::<JobState>())
            .transpose()
            .map_err(Fail::msg)?;
        let req = JobsRequest {
            state,
            search: p.search,
            limit: p.limit,
        };
        let jobs = self.jobs()?.list(&req).await?;
        let mut states: BTreeMap<JobState, usize> = BTreeMap::new();
        for j in &jobs {
            *states.entry(j.state).or_default() += 1;
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
        let jobs = self.jobs()?;
        let id = jobs.resolve(&p.job).await?;
        let summary = jobs.cancel(id).await?;
        done(summary_line(&summary), to_value(&summary)?, None)
    }

    async fn logs(&self, p: LogsInput) -> Outcome {
        let keep = p.max_bytes.unwrap_or(LOGS_DEFAULT);
        let status = self.fetch_status(&p.job).await?;
        let only = p
            .task
            .as_deref()
            .map(|t| jobs::resolve_task(&status, t))
            .transpose()?;
        let id = status.summary.id;
        let outputs = self.jobs()?.output(id, only, keep).await?;
        let mut tasks = Vec::new();
        let mut body = String::new();
        for t in &status.tasks {
            if only.is_some_and(|i| i != t.index) {
                continue;
            }
            let (total, output) = match outputs.get(&t.index) {
                Some((total, bytes)) => {
                    let text = String::from_utf8_lossy(bytes);
                    (*total, tail(&text, keep).to_string())
                }
                None => (0, String::new()),
            };
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
        let jobs = self.jobs()?;
        let job = match &p.job {
            Some(text) => Some(jobs.resolve(text).await?),
            None => None,
        };
        let data = jobs.report(job).await?;
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
    fn spec_errors_carry_the_cli_messages() {
        let cycle = "[[tasks]]\nname = 'a'\ncommand = 'true'\ndepends_on = ['b']\n\
                     [[tasks]]\nname = 'b'\ncommand = 'true'\ndepends_on = ['a']\n";
        let e = prepare(&spec(cycle), None, None, None).unwrap_err();
        assert!(
            e.message.starts_with("spec.toml:")
                && e.message.contains("dependency cycle: a → b → a"),
            "{}",
            e.message
        );
        assert_eq!(e.detail["valid"], false);
        let e = prepare(&SpecInput::default(), None, None, None).unwrap_err();
        assert!(e.message.starts_with("no spec"), "{}", e.message);
        let both = SpecInput {
            path: Some("x.toml".into()),
            ..spec("")
        };
        assert!(
            prepare(&both, None, None, None)
                .unwrap_err()
                .message
                .contains("not both")
        );
        let bad_format = SpecInput {
            format: Some("yaml".into()),
            ..spec("")
        };
        assert!(
            prepare(&bad_format, None, None, None)
                .unwrap_err()
                .message
                .contains("unknown format")
        );
    }

    /// TaskMaster tasks marked done are left out unless `include_done` asks for them.
    #[test]
    fn include_done_reaches_the_taskmaster_reader() {
        let text = r#"{"tasks": [
            {"id": 1, "title": "old", "description": "d", "status": "done", "dependencies": []},
            {"id": 2, "title": "new", "description": "d", "status": "pending", "dependencies": [1]}
        ]}"#;
        let names = |include_done| {
            let input = SpecInput {
                include_done,
                ..spec(text)
            };
            let prep =
                prepare(&input, None, None, None).unwrap_or_else(|e| panic!("{}", e.message));
            prep.request
                .spec
                .tasks
                .iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(false), ["2"]);
        assert_eq!(names(true), ["1", "2"]);
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
