//! `ordo`: the command line. Flags are parsed here (clap, every flag naming its environment
//! variable), turned into plain options, and handed to the library modules; errors are printed
//! with their cause chain and mapped to the exit codes of DESIGN §6.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ordo::args::{
    Mode, Output, RunArgs, SpecArgs, env_mode, exit, override_mode, requested_mode, slots,
};
use ordo::formats::{self, Diagnostic, Loaded};
use ordo::progress::{Bars, Lines, Progress, Quiet};
use ordo::run::{RunOptions, RunReport};
use ordo::summary;
use ordo_proto::{Dag, Dur, ExecutionMode, JobState, ModeDecision};

#[derive(Parser)]
#[command(
    name = "ordo",
    version,
    about = "Validate, plan and run task graphs locally or across a NATS cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a job spec; exit 0 if valid, 2 if not (errors on stderr as file:line:col).
    Validate {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show levels, the critical path and the estimated makespan and speedup.
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
        /// Task slots to estimate for (default: as `ordo run` would use: the job's
        /// max_parallel_tasks, else one per CPU).
        #[arg(long, env = "ORDO_WORKERS")]
        workers: Option<u32>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the task graph as Graphviz dot or Mermaid.
    Graph {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long = "format", value_enum, default_value_t = GraphFormat::Dot)]
        graph_format: GraphFormat,
    },
    /// Convert a Markdown task document (or any spec) to ordo JSON or TOML.
    Convert {
        #[command(flatten)]
        spec: SpecArgs,
        /// Write here instead of stdout.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Output format (default: from -o's extension, else json).
        #[arg(long)]
        to: Option<ConvertTo>,
    },
    /// Run a job on this machine, no broker needed.
    Run(RunCommand),
    /// Write a job's report (Markdown, JSON, JUnit XML or HTML) from a local state directory
    /// (--state) or the coordinator.
    Report(ordo::report::command::ReportArgs),
    /// Remove finished jobs older than a duration from a local state directory (--state) or the
    /// coordinator.
    Prune(ordo::report::command::PruneArgs),
    /// Serve the Model Context Protocol on stdio: ordo's tools for AI coding agents (jobs run
    /// on this machine, or on a cluster with --nats).
    Mcp(ordo::mcp::McpArgs),
    /// Serve the web dashboard: jobs, tasks, the graph, live logs and actions (on a local state
    /// directory with --state, or a cluster with --nats).
    Ui(ordo::ui::UiArgs),
    #[command(flatten)]
    Manage(ordo::manage::Manage),
}

#[derive(Args)]
struct RunCommand {
    #[command(flatten)]
    spec: SpecArgs,
    /// Task slots (how many tasks run at once) and the agent command.
    #[command(flatten)]
    run: RunArgs,
    /// Override the spec's execution mode.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Override the spec's max_parallel_tasks.
    #[arg(long, env = "ORDO_MAX_PARALLEL")]
    max_parallel: Option<u32>,
    /// Keep the job's state here; running the same command again resumes an unfinished job.
    #[arg(long, env = "ORDO_STATE_DIR")]
    state: Option<PathBuf>,
    /// Pause before a prompt task's verify command (overrides settings.check_interval).
    #[arg(long, env = "ORDO_CHECK_INTERVAL")]
    check_interval: Option<Dur>,
    /// TaskMaster: write each task's status back into the tasks.json while the job runs
    /// (`in-progress` when it starts, `done` when it succeeds), keeping every other field;
    /// the file is replaced atomically.
    #[arg(long)]
    update_source: bool,
    /// No progress output; only the summary.
    #[arg(long, short)]
    quiet: bool,
    /// At the end, write the job's report here (format from the extension: .md, .json,
    /// .xml = JUnit, .html; else --report-format, default md).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Format of --report.
    #[arg(long, value_enum, alias = "format", requires = "report")]
    report_format: Option<ordo::report::Format>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, ValueEnum)]
enum ConvertTo {
    Json,
    Toml,
}

/// An error that carries its exit code; anything else exits 1.
#[derive(Debug)]
struct Exit(u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn main() -> ExitCode {
    // `ordo run`'s guard process (see ordo_worker::guard) is this binary in another role.
    if ordo_worker::guard::main_hook() {
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            eprintln!("ordo: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit::JOB_FAILED)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate { spec, output } => validate(&spec, output),
        Command::Plan {
            spec,
            workers,
            output,
        } => plan(&spec, workers, output),
        Command::Graph { spec, graph_format } => {
            let (loaded, dag) = load_checked(&spec)?;
            let text = match graph_format {
                GraphFormat::Dot => ordo::graph::dot(&loaded.spec, &dag),
                GraphFormat::Mermaid => ordo::graph::mermaid(&loaded.spec, &dag),
            };
            print!("{text}");
            Ok(exit::OK)
        }
        Command::Convert { spec, out, to } => convert(&spec, out.as_deref(), to),
        Command::Run(args) => run(args),
        Command::Report(args) => Ok(ordo::report::command::report(args)),
        Command::Prune(args) => Ok(ordo::report::command::prune(args)),
        Command::Mcp(args) => ordo::mcp::serve(args),
        Command::Ui(args) => ordo::ui::serve(args),
        Command::Manage(cmd) => ordo::manage::dispatch(cmd),
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

/// Loads and validates a spec; on failure prints every error and exits 2, and a file with
/// nothing to do says so and exits 0.
fn load_checked(spec: &SpecArgs) -> anyhow::Result<(Loaded, Dag)> {
    spec.load().map_err(|e| Exit(e.report()).into())
}

/// The mode a loaded job runs in as `ordo run` would run it with `workers` (and the
/// environment); an invalid `ORDO_EXECUTION_MODE` is an error.
fn mode_of(loaded: &Loaded, workers: Option<u32>) -> anyhow::Result<ModeDecision> {
    let env = env_mode().map_err(|e| {
        eprintln!("ordo: {e}");
        anyhow::Error::from(Exit(exit::INVALID))
    })?;
    Ok(loaded
        .spec
        .mode_decision(requested_mode(env, workers, None)))
}

fn validate(spec: &SpecArgs, output: Output) -> anyhow::Result<u8> {
    let label = spec.label();
    let loaded = spec.read();
    if let Ok(l) = &loaded
        && let Some(nothing) = l.nothing_to_do()
    {
        // Valid, with nothing left to run.
        for w in &l.warnings {
            eprintln!("warning: {w}");
        }
        match output {
            Output::Text => println!("{label}: valid {} job: {nothing}", l.format),
            Output::Json => println!(
                "{}",
                serde_json::json!({"valid": true, "file": label, "format": l.format.to_string(),
                                   "tasks": 0, "nothing_to_do": nothing, "warnings": l.warnings})
            ),
        }
        return Ok(exit::OK);
    }
    let result = loaded.and_then(|l| formats::check(&l, &label).map(|dag| (l, dag)));
    match (result, output) {
        (Ok((loaded, dag)), Output::Text) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            let mode = mode_of(&loaded, None)?;
            println!(
                "{label}: valid {} job '{}': {} tasks, {} dependencies",
                loaded.format,
                loaded.spec.name,
                dag.len(),
                dag.deps.iter().map(Vec::len).sum::<usize>()
            );
            println!("mode: {} ({mode})", mode.mode);
            Ok(exit::OK)
        }
        (Ok((loaded, dag)), Output::Json) => {
            let mode = mode_of(&loaded, None)?;
            let v = serde_json::json!({
                "valid": true, "file": label, "format": loaded.format.to_string(),
                "name": loaded.spec.name, "tasks": dag.len(), "warnings": loaded.warnings,
                "mode": mode.mode, "mode_reason": mode.to_string(),
            });
            println!("{v}");
            Ok(exit::OK)
        }
        (Err(diags), Output::Text) => {
            print_diagnostics(&diags);
            Ok(exit::INVALID)
        }
        (Err(diags), Output::Json) => {
            print_diagnostics(&diags);
            let errors: Vec<_> = diags
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "file": d.file, "line": d.pos.map(|p| p.line), "column": d.pos.map(|p| p.col),
                        "message": d.message,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({"valid": false, "errors": errors}));
            Ok(exit::INVALID)
        }
    }
}

fn plan(spec: &SpecArgs, workers: Option<u32>, output: Output) -> anyhow::Result<u8> {
    let (loaded, dag) = load_checked(spec)?;
    let mode = mode_of(&loaded, workers)?;
    let plan = dag.plan(slots(workers, None, &loaded.spec), &mode);
    match output {
        Output::Json => {
            let mut v = serde_json::to_value(&plan)?;
            v["name"] = loaded.spec.name.clone().into();
            v["jumps"] = ordo::graph::jumps(&loaded.spec).into();
            println!("{v}");
        }
        Output::Text => {
            println!(
                "job '{}': {} tasks, {} dependencies, {} levels",
                loaded.spec.name,
                plan.tasks,
                plan.edges,
                plan.levels.len()
            );
            println!("mode: {} ({})", plan.mode, plan.mode_reason);
            for (i, level) in plan.levels.iter().enumerate() {
                let names: Vec<&str> = level.iter().map(|n| n.as_str()).collect();
                println!("  level {}: {}", i + 1, names.join(", "));
            }
            let jumps = ordo::graph::jumps(&loaded.spec);
            if !jumps.is_empty() {
                println!("jumps: {}", jumps.join("; "));
            }
            let path: Vec<&str> = plan.critical_path.iter().map(|n| n.as_str()).collect();
            println!("critical path ({} tasks): {}", path.len(), path.join(" → "));
            println!(
                "estimated makespan with {} workers: {} task-lengths (speedup {:.2}x over one worker)",
                plan.workers, plan.estimated_makespan, plan.estimated_speedup
            );
        }
    }
    Ok(exit::OK)
}

fn convert(spec: &SpecArgs, out: Option<&Path>, to: Option<ConvertTo>) -> anyhow::Result<u8> {
    let (loaded, _dag) = load_checked(spec)?;
    let to = to.unwrap_or_else(|| match out.and_then(|p| p.extension()) {
        Some(ext) if ext == "toml" => ConvertTo::Toml,
        _ => ConvertTo::Json,
    });
    let text = match to {
        ConvertTo::Json => formats::to_json(&loaded.spec),
        ConvertTo::Toml => formats::to_toml(&loaded.spec).context("cannot write TOML")?,
    };
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(exit::OK)
}

/// How `ordo run` went.
enum Ran {
    /// Here: what the run left behind.
    Here(Box<RunReport>),
    /// By the process that serves the state directory: the exit code.
    Elsewhere(u8),
    /// Not at all: the spec's workspace settings are wrong (said on stderr).
    Invalid,
}

fn run(args: RunCommand) -> anyhow::Result<u8> {
    let (loaded, dag) = load_checked(&args.spec)?;
    let sources = match (args.update_source, loaded.sources) {
        (false, _) => None,
        (true, Some(sources)) => Some(sources),
        (true, None) => {
            eprintln!(
                "ordo: --update-source writes statuses back into a TaskMaster tasks.json; {} is \
                 read as {} (--input-format taskmaster reads it as one)",
                args.spec.label(),
                loaded.format
            );
            return Ok(exit::INVALID);
        }
    };
    let mut spec = loaded.spec;
    override_mode(&mut spec, args.mode.map(ExecutionMode::from));
    match args.run.agent_argv() {
        Ok(Some(argv)) => spec.settings.agent_command = Some(argv),
        Ok(None) => {}
        Err(e) => {
            eprintln!("ordo: {e}");
            return Ok(exit::INVALID);
        }
    }
    if let Some(d) = args.check_interval {
        spec.settings.check_interval = Some(d);
    }
    let default_mode = match env_mode() {
        Ok(env) => requested_mode(env, args.run.workers, args.max_parallel),
        Err(e) => {
            eprintln!("ordo: {e}");
            return Ok(exit::INVALID);
        }
    };
    let opts = RunOptions {
        workers: slots(args.run.workers, args.max_parallel, &spec),
        default_mode,
        max_parallel: args.max_parallel,
        state_dir: args.state.clone(),
        source: args.spec.label(),
        telemetry: None,
    };
    let json = args.output == Output::Json;
    let mut progress: Box<dyn Progress> = if args.quiet {
        Box::new(Quiet)
    } else if json {
        Box::new(Lines::new(std::io::stderr()))
    } else if std::io::stdout().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::new(std::io::stdout()))
    };
    if let Some(sources) = sources {
        progress = Box::new(ordo::update_source::UpdateSource::new(
            progress,
            args.spec.spec.clone(),
            sources,
        ));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let label = args.spec.label();
    let ran = runtime.block_on(async {
        let mut spec = spec;
        if let Err(e) = ordo::run::settle_workspace(&mut spec, &label, false).await {
            eprintln!("{e}");
            return anyhow::Ok(Ran::Invalid);
        }
        use ordo::local::socket::{self, Claim};
        let held = match &args.state {
            Some(dir) => match socket::claim(dir).await? {
                Claim::Held(store) => Some(store),
                Claim::Served(_) => {
                    // Another ordo process holds the directory (a dashboard, an MCP server,
                    // another run): the job runs there, followed from here.
                    let req = ordo_proto::api::SubmitRequest {
                        spec,
                        source: label.clone(),
                        default_mode: opts.default_mode,
                        max_parallel: opts.max_parallel,
                    };
                    let code =
                        ordo::manage::run_served(dir, &args.run, req, dag, args.report.as_deref())
                            .await;
                    return Ok(Ran::Elsewhere(code));
                }
            },
            None => None,
        };
        let shutdown = async {
            ordo_plumbing::signals::interrupted().await;
            // A second interrupt exits at once.
            tokio::spawn(async {
                ordo_plumbing::signals::interrupted().await;
                std::process::exit(exit::INTERRUPTED as i32);
            });
        };
        let mut opts = opts;
        // The gRPC exporter must be built inside the runtime.
        opts.telemetry =
            ordo_plumbing::telemetry::Telemetry::from_env("ordo")?.map(std::sync::Arc::new);
        let store = match held {
            Some(store) => store,
            None => ordo_coordinator::store::Store::in_memory()?,
        };
        ordo::run::run_on(store, spec, opts, progress.as_mut(), shutdown)
            .await
            .map(|r| Ran::Here(Box::new(r)))
    })?;
    let report = match ran {
        Ran::Here(report) => *report,
        Ran::Elsewhere(code) => return Ok(code),
        Ran::Invalid => return Ok(exit::INVALID),
    };
    drop(progress);

    if json {
        println!("{}", summary::json(&report));
    } else {
        print!("{}", summary::table(&report));
    }
    if let Some(path) = &args.report {
        let format = ordo::report::Format::pick(args.report_format, Some(path));
        ordo::report::command::write_from_store(&report.store, &report.job.id, format, path)?;
    }
    Ok(match report.job.state {
        JobState::Succeeded => exit::OK,
        _ if report.interrupted => exit::INTERRUPTED,
        _ => exit::JOB_FAILED,
    })
}
