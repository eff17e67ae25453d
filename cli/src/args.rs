//! The one home of what several `ordo` commands (and the MCP server) take alike: the spec file
//! and how to read it, where jobs live (a local state directory or a cluster), the execution
//! overrides, `--output`, and the exit codes of docs/design.md, "Exit codes". Flags are parsed by
//! clap here and turned into plain values (`LoadOptions`, `Overrides`, `jobs::Target`) for the
//! libraries.

use std::path::PathBuf;

use ordo_formats::prepare::{Unprepared, env_mode};
use ordo_formats::{Format, LoadOptions, NotPrepared, Overrides, Prepared, Source, With, prepare};
use ordo_plumbing::connect::NatsArgs;
use ordo_proto::{ExecutionMode, JobSpec, WorkspaceMode};

/// Exit codes (docs/design.md, "Exit codes").
pub mod exit {
    pub const OK: u8 = 0;
    pub const JOB_FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

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

/// A job spec file and how to read it.
#[derive(Clone, Debug, clap::Args)]
pub struct SpecArgs {
    /// The job spec: ordo TOML/JSON, Prompter TOML, subtasks JSON, TaskMaster tasks.json, a
    /// claude-code-mcp task list, or a Markdown task document or checklist.
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
    /// TaskMaster: also run the tasks whose status is done, cancelled or deferred (left out,
    /// with a warning each, by default).
    #[arg(long)]
    pub include_done: bool,
    /// Settings overlay: a TOML file holding `[settings]`, laid over the spec's own (for
    /// formats such as tasks.json or Markdown that cannot carry them).
    #[arg(long = "with", value_name = "FILE")]
    pub with: Option<PathBuf>,
    /// `worktree`: run every attempt in a git worktree of its own and integrate the changes in
    /// order (overrides settings.workspace).
    #[arg(long, value_name = "MODE", env = "ORDO_WORKSPACE_MODE")]
    pub workspace: Option<WorkspaceMode>,
    /// Budget of the job in dollars of agent spend (overrides settings.max_cost_usd).
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// Budget of the job in agent tokens (overrides settings.max_tokens).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
}

impl SpecArgs {
    pub fn label(&self) -> String {
        self.spec.display().to_string()
    }

    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            format: self.input_format,
            tag: Some(self.tag.clone()),
            expand_subtasks: self.expand_subtasks,
            include_done: self.include_done,
            current_tag: None,
        }
    }

    /// The overrides these flags give, with a command's own: `--mode`, `--max-parallel` and
    /// `--workers` (`None` where it has no such flag), and `ORDO_EXECUTION_MODE`.
    pub fn overrides(
        &self,
        mode: Option<Mode>,
        max_parallel: Option<u32>,
        workers: Option<u32>,
    ) -> Overrides {
        Overrides {
            with: self.with.clone().map(With::File),
            workspace: self.workspace,
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens,
            mode: mode.map(ExecutionMode::from),
            max_parallel,
            workers,
            env_mode: env_mode(),
        }
    }

    /// Prepares the spec (`ordo_formats::prepare`) with `overrides`; its warnings go to stderr
    /// whether it is prepared or not.
    pub fn prepare(&self, overrides: &Overrides) -> Result<Prepared, NotPrepared> {
        let prepared = prepare(Source::File(&self.spec), &self.load_options(), overrides);
        let warnings = match &prepared {
            Ok(p) => &p.warnings,
            Err(e) => &e.warnings,
        };
        for w in warnings {
            eprintln!("warning: {w}");
        }
        prepared
    }
}

/// Says why a spec was not prepared (diagnostics to stderr, nothing-to-do to stdout) and
/// returns the exit code: 2, or 0 when there is nothing to do.
pub fn report_not_prepared(not: &NotPrepared) -> u8 {
    match &not.reason {
        Unprepared::Invalid(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            exit::INVALID
        }
        Unprepared::NothingToDo { reason, .. } => {
            println!("{reason}");
            exit::OK
        }
        Unprepared::Mode(e) => {
            eprintln!("ordo: {e}");
            exit::INVALID
        }
    }
}

/// Where jobs live (what the job client opens).
#[derive(Clone, Debug)]
pub enum Target {
    /// A state directory, and how jobs run in this process.
    Local {
        dir: PathBuf,
        run: RunArgs,
    },
    Cluster(NatsArgs),
}

/// Where the job commands find jobs: a local state directory or a cluster.
#[derive(Clone, Debug, clap::Args)]
pub struct TargetArgs {
    /// Use this local state directory (as kept by `ordo run --state DIR`) instead of a
    /// coordinator; jobs submitted or retried this way run in this process.
    #[arg(long, value_name = "DIR", env = "ORDO_STATE_DIR")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

impl TargetArgs {
    /// The target of a command that starts no job: `--state DIR`, else the cluster.
    pub fn target(&self) -> Target {
        self.with_run(None, RunArgs::default())
    }

    /// The target, with how jobs run when it is local; `local_default` is the state directory
    /// used when neither `--state` nor `--nats` is given (the MCP server and the dashboard run
    /// jobs locally by default, the job commands ask the coordinator at the default URL).
    pub fn with_run(&self, local_default: Option<PathBuf>, run: RunArgs) -> Target {
        match (&self.state, self.nats.url.is_some(), local_default) {
            (Some(dir), _, _) => Target::Local {
                dir: dir.clone(),
                run,
            },
            (None, false, Some(dir)) => Target::Local { dir, run },
            _ => Target::Cluster(self.nats.clone()),
        }
    }
}

/// Where jobs live and how they run there: the commands that start jobs.
#[derive(Clone, Debug, clap::Args)]
pub struct RunTarget {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

impl RunTarget {
    /// See `TargetArgs::with_run`.
    pub fn target(&self, local_default: Option<PathBuf>) -> Target {
        self.target.with_run(local_default, self.run.clone())
    }
}

/// How jobs run when they run in this process (`ordo run`, and local mode of the job commands,
/// the MCP server and the dashboard).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Task slots of each job run here (default: the job's max_parallel_tasks, else one per
    /// CPU).
    #[arg(long, env = "ORDO_WORKERS")]
    pub workers: Option<u32>,
    /// Agent command for prompt tasks, e.g. "claude -p" (split on whitespace; the prompt is
    /// appended as one argument). Overrides the spec's settings.agent_command.
    #[arg(long, env = "ORDO_AGENT_COMMAND")]
    pub agent_command: Option<String>,
}

impl RunArgs {
    /// `--agent-command` as an argv; an empty one is an error.
    pub fn agent_argv(&self) -> Result<Option<Vec<String>>, String> {
        match &self.agent_command {
            None => Ok(None),
            Some(a) => {
                let argv: Vec<String> = a.split_whitespace().map(String::from).collect();
                if argv.is_empty() {
                    Err("--agent-command / ORDO_AGENT_COMMAND is empty".into())
                } else {
                    Ok(Some(argv))
                }
            }
        }
    }
}

/// Task slots by default: one per CPU.
pub fn default_workers() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

/// Task slots for running (or planning) `spec` on this machine (docs/design.md, "Task states"):
/// `--workers`, else the `max_parallel_tasks` asked for (`--max-parallel`, else the spec's: a job
/// asking for 6 agents gets 6 whatever the CPUs), else one per CPU.
pub fn slots(workers: Option<u32>, max_parallel: Option<u32>, spec: &JobSpec) -> u32 {
    workers
        .or(max_parallel)
        .or(spec.settings.max_parallel_tasks)
        .unwrap_or_else(default_workers)
        .max(1)
}
