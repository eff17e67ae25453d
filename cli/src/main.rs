//! `ordo`: the command line. Flags are parsed here (clap, every flag naming its environment
//! variable), turned into plain options, and handed to the library modules; errors are printed
//! with their cause chain and mapped to the exit codes of docs/design.md, "Exit codes".

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ordo::args::{Mode, Output, RunArgs, SpecArgs, exit, report_not_prepared, slots};
use ordo::local::socket::Holder;
use ordo::progress::{Bars, Lines, Progress, Quiet};
use ordo::run::{RunOptions, RunReport};
use ordo::summary;
use ordo_formats::prepare::Unprepared;
use ordo_formats::{Diagnostic, Prepared, Source, graph};
use ordo_proto::{Dur, JobState};

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
    Report(ordo::report::ReportArgs),
    /// Remove finished jobs older than a duration from a local state directory (--state) or the
    /// coordinator.
    Prune(ordo::report::PruneArgs),
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
    report_format: Option<ordo_report::Format>,
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
            let p = prepared(&spec, None, None, None)?;
            let text = match graph_format {
                GraphFormat::Dot => graph::dot(&p.request.spec, &p.dag),
                GraphFormat::Mermaid => graph::mermaid(&p.request.spec, &p.dag),
            };
            print!("{text}");
            Ok(exit::OK)
        }
        Command::Convert { spec, out, to } => convert(&spec, out.as_deref(), to),
        Command::Run(args) => run(args),
        Command::Report(args) => Ok(ordo::report::report(args)),
        Command::Prune(args) => Ok(ordo::report::prune(args)),
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

/// Prepares a spec with a command's `--mode`, `--max-parallel` and `--workers`; on failure
/// prints every error and exits 2, and a file with nothing to do says so and exits 0.
fn prepared(
    spec: &SpecArgs,
    mode: Option<Mode>,
    max_parallel: Option<u32>,
    workers: Option<u32>,
) -> anyhow::Result<Prepared> {
    spec.prepare(&spec.overrides(mode, max_parallel, workers))
        .map_err(|e| Exit(report_not_prepared(&e)).into())
}

fn validate(spec: &SpecArgs, output: Output) -> anyhow::Result<u8> {
    let label = spec.label();
    // Warnings go to stderr with the text output only: the JSON carries them.
    let result = ordo_formats::prepare(
        Source::File(&spec.spec),
        &spec.load_options(),
        &spec.overrides(None, None, None),
    );
    let warn = |warnings: &[String]| {
        for w in warnings {
            eprintln!("warning: {w}");
        }
    };
    if let Err(e) = &result
        && let Unprepared::NothingToDo { format, reason } = &e.reason
    {
        // Valid, with nothing left to run.
        warn(&e.warnings);
        let nothing = &reason.message;
        match output {
            Output::Text => println!("{label}: valid {format} job: {nothing}"),
            Output::Json => println!(
                "{}",
                serde_json::json!({"valid": true, "file": label, "format": format.to_string(),
                                   "tasks": 0, "nothing_to_do": nothing, "warnings": e.warnings})
            ),
        }
        return Ok(exit::OK);
    }
    match (result, output) {
        (Ok(p), Output::Text) => {
            warn(&p.warnings);
            let mode = p.mode();
            println!(
                "{label}: valid {} job '{}': {} tasks, {} dependencies",
                p.format,
                p.request.spec.name,
                p.dag.len(),
                p.dag.deps.iter().map(Vec::len).sum::<usize>()
            );
            println!("mode: {} ({mode})", mode.mode);
            Ok(exit::OK)
        }
        (Ok(p), Output::Json) => {
            let mode = p.mode();
            let v = serde_json::json!({
                "valid": true, "file": label, "format": p.format.to_string(),
                "name": p.request.spec.name, "tasks": p.dag.len(), "warnings": p.warnings,
                "mode": mode.mode, "mode_reason": mode.to_string(),
            });
            println!("{v}");
            Ok(exit::OK)
        }
        (Err(e), output) => {
            let Unprepared::Invalid(diags) = &e.reason else {
                if output == Output::Text {
                    warn(&e.warnings);
                }
                return Ok(report_not_prepared(&e));
            };
            print_diagnostics(diags);
            if output == Output::Json {
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
            }
            Ok(exit::INVALID)
        }
    }
}

fn plan(spec: &SpecArgs, workers: Option<u32>, output: Output) -> anyhow::Result<u8> {
    let p = prepared(spec, None, None, workers)?;
    let (spec, dag) = (&p.request.spec, &p.dag);
    let mode = p.mode();
    let plan = dag.plan(slots(workers, None, spec), &mode);
    match output {
        Output::Json => {
            let mut v = serde_json::to_value(&plan)?;
            v["name"] = spec.name.clone().into();
            v["jumps"] = graph::jumps(spec).into();
            println!("{v}");
        }
        Output::Text => {
            println!(
                "job '{}': {} tasks, {} dependencies, {} levels",
                spec.name,
                plan.tasks,
                plan.edges,
                plan.levels.len()
            );
            println!("mode: {} ({})", plan.mode, plan.mode_reason);
            for (i, level) in plan.levels.iter().enumerate() {
                let names: Vec<&str> = level.iter().map(|n| n.as_str()).collect();
                println!("  level {}: {}", i + 1, names.join(", "));
            }
            let jumps = graph::jumps(spec);
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
    let spec = prepared(spec, None, None, None)?.request.spec;
    let to = to.unwrap_or_else(|| match out.and_then(|p| p.extension()) {
        Some(ext) if ext == "toml" => ConvertTo::Toml,
        _ => ConvertTo::Json,
    });
    let text = match to {
        ConvertTo::Json => ordo_formats::to_json(&spec),
        ConvertTo::Toml => ordo_formats::to_toml(&spec).context("cannot write TOML")?,
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
    /// By the process that serves the state directory: the job (once submitted) and the exit
    /// code.
    Elsewhere(Option<ordo_proto::JobId>, u8),
    /// Not at all: the spec's workspace settings are wrong (said on stderr).
    Invalid,
}

fn run(args: RunCommand) -> anyhow::Result<u8> {
    let overrides = args
        .spec
        .overrides(args.mode, args.max_parallel, args.run.workers);
    let prepared = args
        .spec
        .prepare(&overrides)
        .map_err(|e| Exit(report_not_prepared(&e)))?;
    let sources = match (args.update_source, prepared.sources) {
        (false, _) => None,
        (true, Some(sources)) => Some(sources),
        (true, None) => {
            eprintln!(
                "ordo: --update-source writes statuses back into a TaskMaster tasks.json; {} is \
                 read as {} (--input-format taskmaster reads it as one)",
                args.spec.label(),
                prepared.format
            );
            return Ok(exit::INVALID);
        }
    };
    let (mut req, dag) = (prepared.request, prepared.dag);
    match args.run.agent_argv() {
        Ok(Some(argv)) => req.spec.settings.agent_command = Some(argv),
        Ok(None) => {}
        Err(e) => {
            eprintln!("ordo: {e}");
            return Ok(exit::INVALID);
        }
    }
    if let Some(d) = args.check_interval {
        req.spec.settings.check_interval = Some(d);
    }
    let opts = RunOptions {
        workers: slots(args.run.workers, args.max_parallel, &req.spec),
        default_mode: req.default_mode,
        max_parallel: req.max_parallel,
        state_dir: args.state.clone(),
        source: req.source.clone(),
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
        let mut req = req;
        if let Err(e) = ordo::jobs::settle_workspace(&mut req.spec, &label, false).await {
            eprintln!("{e}");
            return anyhow::Ok(Ran::Invalid);
        }
        let held = match &args.state {
            Some(dir) => match ordo::local::socket::hold(dir, ordo::jobs::HELD_WAIT).await {
                Ok(held) => held,
                Err(e) => {
                    eprintln!("ordo: {e}");
                    let busy = matches!(e, ordo::local::socket::HoldError::Busy { .. });
                    let code = if busy {
                        exit::UNREACHABLE
                    } else {
                        exit::JOB_FAILED
                    };
                    return Ok(Ran::Elsewhere(None, code));
                }
            },
            None => Holder::Here(ordo_coordinator::store::Store::in_memory()?),
        };
        let store = match held {
            Holder::Here(store) => store,
            Holder::Served(_) => {
                // Another ordo process holds the directory (a dashboard, an MCP server): the job
                // runs there, followed from here.
                let dir = args.state.as_deref().unwrap_or(Path::new("."));
                let (job, code) = ordo::manage::run_served(dir, &args.run, req, dag).await;
                return Ok(Ran::Elsewhere(job, code));
            }
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
        ordo::run::run(req.spec, opts, store, progress.as_mut(), shutdown)
            .await
            .map(|r| Ran::Here(Box::new(r)))
    })?;
    let report = match ran {
        Ran::Here(report) => *report,
        Ran::Elsewhere(job, code) => {
            if let (Some(job), Some(path), Some(dir)) = (job, &args.report, &args.state) {
                // Written from the records the serving process keeps.
                let target = ordo::args::Target::Local {
                    dir: dir.clone(),
                    run: args.run.clone(),
                };
                let job = job.to_string();
                let wrote =
                    ordo::report::write_report(&target, Some(&job), args.report_format, Some(path));
                return Ok(if wrote == exit::OK { code } else { wrote });
            }
            return Ok(code);
        }
        Ran::Invalid => return Ok(exit::INVALID),
    };
    drop(progress);

    if json {
        println!("{}", summary::json(&report));
    } else {
        print!("{}", summary::table(&report));
    }
    if let Some(path) = &args.report {
        let format = ordo_report::Format::pick(args.report_format, Some(path));
        ordo::report::write_from_store(&report.store, &report.job.id, format, path)?;
    }
    Ok(match report.job.state {
        JobState::Succeeded => exit::OK,
        _ if report.interrupted => exit::INTERRUPTED,
        _ => exit::JOB_FAILED,
    })
}
