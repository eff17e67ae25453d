//! The job commands (`submit`, `status`, `jobs`, `watch`, `logs`, `cancel`, `retry`,
//! `workers`): a face of the job client (`jobs`) for people. They reach a coordinator through
//! NATS (`--nats`, the default) or use a local state directory (`--state DIR`; a job submitted
//! or retried there runs in this process, which follows it to its end).
//!
//! # Layout
//! - `cluster`: `ordo cluster`, the coordinators of an `--ha` deployment.
//! - `follow`: following a job to its end (`watch`, `submit --wait`).
//! - `logs`: task output, stored or streamed.
//! - `render`: how answers are printed.

mod cluster;
mod follow;
mod logs;
pub mod render;

use ordo_plumbing::connect::NatsArgs;
use ordo_proto::api::{self, JobsRequest, SubmitRequest};
use ordo_proto::{JobState, TaskPhase, now_ms};

use crate::args::{Mode, Output, RunTarget, SpecArgs, TargetArgs, exit, report_not_prepared};
use crate::jobs::{Error, Jobs, Open, Target};
use follow::{follow_job, interruptible, outcome_code};
use render::{
    jobs_text, page_text, print, print_json, status_text, summary_line, warn, workers_text,
};

#[derive(clap::Subcommand)]
pub enum Manage {
    /// Submit a job; prints the job id alone on stdout. --wait follows it and exits by
    /// outcome (with --state the job runs in this process, which always follows it).
    Submit {
        #[command(flatten)]
        spec: SpecArgs,
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
        place: RunTarget,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show a job and its tasks, a page at a time; without JOB, list the jobs like `ordo jobs`.
    Status {
        /// Job id, or the start of one.
        job: Option<String>,
        /// Page of the task list to show, from 1 (the summary counts every task).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        page: u64,
        /// Tasks per page (at most 10,000).
        #[arg(long, default_value_t = api::DEFAULT_PAGE_SIZE as u64,
              value_parser = clap::value_parser!(u64).range(1..=api::MAX_PAGE_SIZE as u64))]
        page_size: u64,
        /// Only tasks in these states, comma-separated (e.g. failed,running; `--state` names a
        /// local state directory).
        #[arg(long, value_name = "STATES", value_delimiter = ',')]
        task_state: Vec<TaskPhase>,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List a coordinator's jobs, newest first, one line each (`ordo status --state DIR` lists
    /// a local state directory's).
    Jobs {
        /// Only jobs in this state (pending, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<JobState>,
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
        target: TargetArgs,
        /// json: progress goes to stderr and the final status is printed as JSON.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print a job's output, or one task's: a header line before each task's attempt, an
    /// agent's result text rather than its JSON.
    Logs {
        job: String,
        /// Task name or index.
        task: Option<String>,
        /// Keep printing until the job ends.
        #[arg(long, short)]
        follow: bool,
        /// Agents' output as they printed it (their JSON), on a cluster.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Cancel a job: running tasks are killed, the rest never start.
    Cancel {
        job: String,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Approve a task awaiting approval: it goes on (integration, or succeeded). Recorded with
    /// who (the NATS user on a cluster, else the OS user), when and which commit.
    Approve {
        job: String,
        /// Task name or index.
        task: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Reject a task awaiting approval: it fails, or with `on_reject = "revise"` the reason
    /// goes back to its agent as a new round.
    Reject {
        job: String,
        /// Task name or index.
        task: String,
        /// Why (required): recorded, and sent to the agent when the stage revises.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run a finished job's unsuccessful tasks again (with --state, here, to their end).
    Retry {
        job: String,
        /// Only the tasks that did not succeed (failed, and those they held back);
        /// succeeded tasks keep their results.
        #[arg(long, conflicts_with = "task")]
        failed_only: bool,
        /// Only this task and the tasks it held back (its dependents that did not succeed).
        #[arg(long, value_name = "TASK")]
        task: Option<String>,
        /// Go on with a new budget: dollars agents may spend from now on.
        #[arg(long, value_name = "USD")]
        max_cost_usd: Option<f64>,
        /// Go on with a new budget of agent tokens.
        #[arg(long, value_name = "N")]
        max_tokens: Option<u64>,
        #[command(flatten)]
        place: RunTarget,
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
    /// List the coordinators of a high-availability deployment (`ordo-coordinator --ha`): id,
    /// host, role, epoch, lease age, journal position and lag.
    Cluster {
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Runs a job command on its own multi-thread runtime. Errors are printed here (`ordo: ...`,
/// or the spec's diagnostics) and come back as the exit code, so `Err` means only that the
/// runtime could not start.
pub fn dispatch(cmd: Manage) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(run(cmd));
    // Do not wait for the NATS client's background tasks.
    runtime.shutdown_background();
    Ok(match result {
        Ok(code) => code,
        Err(e) => report(&e),
    })
}

/// Prints an error the way the user sees it and returns its exit code.
pub fn report(e: &Error) -> u8 {
    match e {
        Error::Interrupted => {}
        // The reader went away (`ordo logs JOB | head`): not an error.
        Error::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe => return exit::OK,
        Error::Spec(diags) => {
            for d in diags {
                warn(&d.to_string());
            }
        }
        _ => warn(&format!("ordo: {e}")),
    }
    e.exit_code()
}

/// For a finished worktree job whose attempts failed: the worktrees and task branches they kept
/// in its repository (those the repository shows here; on a cluster, failed attempts' worktrees
/// are in the workers' caches) and the command that removes them. Empty otherwise.
async fn kept(jobs: &Jobs, status: &ordo_proto::api::JobStatus) -> String {
    let s = &status.summary;
    let retried = status.tasks.iter().any(|t| t.attempts > 1);
    if s.finished_ms.is_none() || (s.failed == 0 && !retried) {
        return String::new();
    }
    let Ok(data) = jobs.report(Some(s.id)).await else {
        return String::new();
    };
    let spec = &data.job.spec;
    let (true, Some(repo)) = (spec.uses_worktrees(), spec.settings.repository.as_deref()) else {
        return String::new();
    };
    let found = ordo_worker::workspace::leftovers(repo, &s.id).await;
    let cluster = matches!(jobs, Jobs::Cluster(_));
    if found.is_empty() && !cluster {
        return String::new();
    }
    let mut out = format!("\n{}\n", ordo_report::kept_text(&s.id));
    for w in &found.worktrees {
        out.push_str(&format!(
            "  worktree {}\n",
            crate::jobs::plain(&w.display().to_string())
        ));
    }
    for b in &found.branches {
        out.push_str(&format!("  branch {}\n", crate::jobs::plain(b)));
    }
    if cluster {
        out.push_str("  (worktrees of failed attempts are in the workers' caches)\n");
    }
    out
}

/// Runs one job-client request for commands outside this module (`ordo report`, `ordo prune`)
/// on a runtime of its own; on failure prints the error and returns its exit code.
pub fn with_jobs<T>(
    target: &Target,
    open: Open,
    f: impl AsyncFnOnce(&Jobs) -> Result<T, Error>,
) -> Result<T, u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            warn(&format!("ordo: cannot start the async runtime: {e}"));
            exit::JOB_FAILED
        })?;
    let result = runtime.block_on(async {
        let jobs = Jobs::open(target, open).await?;
        f(&jobs).await
    });
    runtime.shutdown_background();
    result.map_err(|e| report(&e))
}

async fn run(cmd: Manage) -> Result<u8, Error> {
    match cmd {
        Manage::Submit {
            spec,
            wait,
            mode,
            max_parallel,
            place,
            output,
        } => {
            // `--workers` above 1 asks for parallel too (it sizes local runs).
            let overrides = spec.overrides(mode, max_parallel, place.run.workers);
            let prepared = match spec.prepare(&overrides) {
                Ok(p) => p,
                Err(e) => return Ok(report_not_prepared(&e)),
            };
            let jobs = Jobs::open(&place.target(None), Open::Create).await?;
            let job = jobs.submit(prepared.request, prepared.dag).await?;
            match output {
                Output::Text => print(&format!("{job}\n"))?,
                Output::Json => print_json(&serde_json::json!({ "job": job }))?,
            }
            // A job run by this process ends before the process does.
            if !wait && !jobs.runs_here().await {
                return Ok(exit::OK);
            }
            let status = interruptible(follow_job(&jobs, job, &mut std::io::stderr())).await;
            jobs.stop().await;
            Ok(outcome_code(status?.summary.state))
        }
        Manage::Status {
            job,
            page,
            page_size,
            task_state,
            target,
            output,
        } => {
            let jobs = Jobs::open(&target.target(), Open::Existing).await?;
            match job {
                Some(job) => {
                    let job = jobs.resolve(&job).await?;
                    let status = jobs
                        .status_page(job, page as usize, page_size as usize, &task_state)
                        .await?;
                    match output {
                        Output::Text => {
                            let mut text = status_text(&status, now_ms());
                            text.push_str(&page_text(&status));
                            text.push_str(&kept(&jobs, &status).await);
                            print(&text)?
                        }
                        Output::Json => print_json(&status)?,
                    }
                    Ok(exit::OK)
                }
                None => list_jobs(&jobs, &JobsRequest::default(), output).await,
            }
        }
        Manage::Jobs {
            state,
            search,
            limit,
            nats,
            output,
        } => {
            let jobs = Jobs::open(&Target::Cluster(nats), Open::Existing).await?;
            let req = JobsRequest {
                state,
                search,
                limit,
            };
            list_jobs(&jobs, &req, output).await
        }
        Manage::Watch {
            job,
            target,
            output,
        } => {
            let (jobs, job) = open_job(&target.target(), &job, Open::Existing).await?;
            let status = match output {
                Output::Text => {
                    interruptible(follow_job(&jobs, job, &mut std::io::stdout())).await?
                }
                Output::Json => {
                    let status =
                        interruptible(follow_job(&jobs, job, &mut std::io::stderr())).await?;
                    print_json(&status)?;
                    status
                }
            };
            Ok(outcome_code(status.summary.state))
        }
        Manage::Logs {
            job,
            task,
            follow,
            raw,
            target,
        } => {
            let (jobs, job) = open_job(&target.target(), &job, Open::Existing).await?;
            interruptible(logs::logs(&jobs, job, task.as_deref(), follow, raw)).await
        }
        Manage::Cancel {
            job,
            target,
            output,
        } => {
            let (jobs, job) = open_job(&target.target(), &job, Open::Existing).await?;
            let summary = jobs.cancel(job).await?;
            print_summary(&summary, output)
        }
        Manage::Approve {
            job,
            task,
            comment,
            target,
            output,
        } => decide(&target.target(), &job, &task, comment, true, output).await,
        Manage::Reject {
            job,
            task,
            reason,
            target,
            output,
        } => decide(&target.target(), &job, &task, Some(reason), false, output).await,
        Manage::Retry {
            job,
            failed_only,
            task,
            max_cost_usd,
            max_tokens,
            place,
            output,
        } => {
            // Run here when nobody holds the state directory: served meanwhile.
            let (jobs, job) = open_job(&place.target(None), &job, Open::Create).await?;
            let req = ordo_proto::api::RetryRequest {
                job,
                failed_only,
                task,
                max_cost_usd,
                max_tokens,
            };
            let summary = jobs.retry(&req).await?;
            print_summary(&summary, output)?;
            if matches!(jobs, Jobs::Local(_)) {
                let status = interruptible(follow_job(&jobs, job, &mut std::io::stderr())).await;
                jobs.stop().await;
                return Ok(outcome_code(status?.summary.state));
            }
            Ok(exit::OK)
        }
        Manage::Cluster { nats, output } => cluster::cluster(&nats, output).await,
        Manage::Workers { nats, output } => {
            let jobs = Jobs::open(&Target::Cluster(nats), Open::Existing).await?;
            let workers = jobs.workers().await?;
            match output {
                Output::Text if workers.is_empty() => warn("(no workers)"),
                Output::Text => print(&workers_text(&workers))?,
                Output::Json => print_json(&workers)?,
            }
            Ok(exit::OK)
        }
    }
}

/// `ordo run --state DIR` while another process serves `DIR`: the job is submitted there and
/// followed from here (Ctrl-C stops following; the job runs on). The job, once submitted, and
/// the exit code.
pub async fn run_served(
    dir: &std::path::Path,
    run: &crate::args::RunArgs,
    req: SubmitRequest,
    dag: ordo_proto::Dag,
) -> (Option<ordo_proto::JobId>, u8) {
    let target = Target::Local {
        dir: dir.to_path_buf(),
        run: run.clone(),
    };
    let jobs = match Jobs::open(&target, Open::Create).await {
        Ok(jobs) => jobs,
        Err(e) => return (None, report(&e)),
    };
    let job = match jobs.submit(req, dag).await {
        Ok(job) => job,
        Err(e) => return (None, report(&e)),
    };
    eprintln!(
        "ordo: {} is served by another ordo process; job {job} runs there",
        dir.display()
    );
    let code = match interruptible(follow_job(&jobs, job, &mut std::io::stderr())).await {
        Ok(status) => outcome_code(status.summary.state),
        Err(e) => return (Some(job), report(&e)),
    };
    // The process serving the directory ended meanwhile and this one took the directory over,
    // with the jobs that process ran: serve them to their end too, as `ordo run` does.
    if jobs.runs_here().await {
        let others = match jobs.list(&JobsRequest::default()).await {
            Ok(all) => all.iter().filter(|j| !j.state.is_terminal()).count(),
            Err(_) => 0,
        };
        if others > 0 {
            eprintln!("{}", crate::local::socket::waiting_note(others, dir));
            let _ = interruptible(async {
                jobs.wait_idle().await;
                Ok(())
            })
            .await;
        }
        jobs.stop().await;
    }
    (Some(job), code)
}

/// The client of an existing target and the job `text` names there.
/// `ordo approve` and `ordo reject`: the task named (or numbered) in the job, decided by who
/// runs this command (`jobs::decider`).
async fn decide(
    target: &Target,
    job: &str,
    task: &str,
    comment: Option<String>,
    approve: bool,
    output: Output,
) -> Result<u8, Error> {
    let (jobs, job) = open_job(target, job, Open::Existing).await?;
    // An unknown task is named before anything is asked of the job.
    jobs.find_task(job, task).await?;
    let req = ordo_proto::api::DecideRequest {
        job,
        task: task.to_string(),
        by: crate::jobs::decider(target),
        comment,
    };
    let summary = jobs.decide(&req, approve).await?;
    print_summary(&summary, output)
}

async fn open_job(
    target: &Target,
    text: &str,
    open: Open,
) -> Result<(Jobs, ordo_proto::JobId), Error> {
    let jobs = Jobs::open(target, open).await?;
    let job = jobs.resolve(text).await?;
    Ok((jobs, job))
}

async fn list_jobs(jobs: &Jobs, req: &JobsRequest, output: Output) -> Result<u8, Error> {
    let list = jobs.list(req).await?;
    match output {
        Output::Text if list.is_empty() => warn("(no jobs)"),
        Output::Text => print(&jobs_text(&list, now_ms()))?,
        Output::Json => print_json(&list)?,
    }
    Ok(exit::OK)
}

fn print_summary(summary: &ordo_proto::api::JobSummary, output: Output) -> Result<u8, Error> {
    match output {
        Output::Text => print(&format!("{}\n", summary_line(summary, now_ms())))?,
        Output::Json => print_json(summary)?,
    }
    Ok(exit::OK)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use clap::{CommandFactory, Parser};
    use ordo_proto::api::{JobSummary, TaskStatus};
    use ordo_proto::{JobId, TaskIndex, TaskPhase};

    use super::*;
    use ordo_formats::Format;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Manage,
    }

    fn parse(args: &[&str]) -> Manage {
        Cli::try_parse_from(std::iter::once("ordo").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .cmd
    }

    pub const JOB: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

    pub fn job() -> JobId {
        JOB.parse().unwrap()
    }

    pub fn summary(state: JobState) -> JobSummary {
        JobSummary {
            id: job(),
            name: "build".into(),
            state,
            created_ms: 1_000_000,
            finished_ms: None,
            reason: None,
            total: 3,
            succeeded: 1,
            failed: 0,
            running: 1,
            cost_usd: None,
            run_started_ms: None,
            retries: 0,
            notify: None,
        }
    }

    /// A job in `state` (as `summary` has it) with these tasks, all on one page.
    pub fn status(state: JobState, tasks: Vec<TaskStatus>) -> ordo_proto::api::JobStatus {
        ordo_proto::api::JobStatus {
            summary: summary(state),
            tasks,
            omitted: 0,
            page: None,
            pools: Vec::new(),
            batches: None,
            speculation: None,
        }
    }

    pub fn task(index: u32, name: &str, state: TaskPhase) -> TaskStatus {
        TaskStatus {
            index: TaskIndex(index),
            name: name.into(),
            title: None,
            state,
            attempts: 1,
            conflicts: 0,
            worker: None,
            exit_code: None,
            duration_ms: None,
            reason: None,
            output_tail: None,
            cost_usd: None,
            stages: Vec::new(),
            approval: None,
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn jobs_flags_become_the_request() {
        let Manage::Jobs {
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
        let req = JobsRequest {
            state,
            search,
            limit,
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"state": "failed", "search": "x", "limit": 5})
        );
        assert!(
            Cli::try_parse_from(["ordo", "jobs", "--state", "done"]).is_err(),
            "job states are checked when parsed"
        );
    }

    #[test]
    fn submit_flags_parse() {
        let Manage::Submit {
            spec,
            wait,
            mode,
            max_parallel,
            place,
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
        assert_eq!(place.target.nats.url(), "nats://h:4222");
        assert_eq!(spec.input_format, Some(Format::Markdown));
        assert_eq!(spec.spec, PathBuf::from("job.toml"));
    }

    #[test]
    fn targets_are_a_state_directory_or_a_cluster() {
        let Manage::Status { target, .. } = parse(&["status", "--state", "/tmp/s"]) else {
            panic!("not status")
        };
        assert!(matches!(
            target.target(),
            Target::Local { dir, .. } if dir == std::path::Path::new("/tmp/s")
        ));
        let Manage::Status { target, .. } = parse(&["status"]) else {
            panic!("not status")
        };
        assert!(matches!(
            target.target(),
            Target::Cluster(n) if n.url() == "nats://127.0.0.1:4222"
        ));
        // A face that runs jobs locally by default (MCP, the dashboard) unless --nats is given.
        assert!(matches!(
            target.with_run(Some("d".into()), Default::default()),
            Target::Local { .. }
        ));
        let Manage::Status { target, .. } = parse(&["status", "--nats", "nats://h:1"]) else {
            panic!("not status")
        };
        assert!(matches!(
            target.with_run(Some("d".into()), Default::default()),
            Target::Cluster(_)
        ));
    }

    #[test]
    fn other_commands_parse() {
        assert!(matches!(
            parse(&["status"]),
            Manage::Status { job: None, .. }
        ));
        assert!(matches!(
            parse(&["status", JOB]),
            Manage::Status { job: Some(_), .. }
        ));
        assert!(matches!(
            parse(&["logs", JOB, "build", "-f"]),
            Manage::Logs {
                task: Some(_),
                follow: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&["retry", JOB, "--failed-only"]),
            Manage::Retry {
                failed_only: true,
                ..
            }
        ));
        assert!(matches!(parse(&["watch", JOB]), Manage::Watch { .. }));
        assert!(matches!(parse(&["cancel", JOB]), Manage::Cancel { .. }));
        assert!(matches!(
            parse(&["workers", "--output", "json"]),
            Manage::Workers {
                output: Output::Json,
                ..
            }
        ));
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
        // A missing state directory is bad input too.
        assert_eq!(
            dispatch(parse(&["status", JOB, "--state", "/nonexistent/ordo"])).unwrap(),
            exit::INVALID
        );
    }

    #[test]
    fn broken_pipes_end_quietly() {
        let pipe = Error::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(report(&pipe), exit::OK);
    }
}
