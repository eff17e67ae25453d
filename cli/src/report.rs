//! `ordo report` and `ordo prune`: through the job client, so from a local state directory
//! (`--state DIR`, what `ordo run --state DIR` keeps) or the coordinator's `report` / `prune`
//! API verbs alike. Either way the same `ReportData` is rendered by `ordo-report`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::args::{Output, TargetArgs, exit};
use crate::jobs::Open;
use crate::manage::with_jobs;
use anyhow::Context;
use ordo_coordinator::store::Store;
use ordo_proto::api::ReportData;
use ordo_proto::{Dur, JobId};
use ordo_report::{Format, build, render};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Job id, or the start of one; default: the newest job.
    pub job: Option<String>,
    /// Default: from -o's extension (.md, .json, .xml, .html), else md.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the report here instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["older_than", "job"])))]
pub struct PruneArgs {
    /// Remove finished jobs (succeeded, failed, cancelled) that ended longer ago than this,
    /// e.g. 30d, 12h, 0s, with the worktrees and task branches they kept; unfinished jobs are
    /// never removed.
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<Dur>,
    /// Keep the job's record; remove only the worktrees and task branches its failed attempts
    /// kept (on a cluster, the workers remove them from their caches and the shared
    /// repository).
    #[arg(long, value_name = "JOB", conflicts_with = "older_than")]
    pub job: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `ordo report`: prints or writes the report; returns the exit code.
pub fn report(args: ReportArgs) -> u8 {
    let format = Format::pick(args.format, args.out.as_deref());
    let target = args.target.target();
    let data = with_jobs(&target, Open::Existing, async |jobs| {
        let job = match &args.job {
            Some(text) => Some(jobs.resolve(text).await?),
            None => None,
        };
        jobs.report(job).await
    });
    let data = match data {
        Ok(d) => d,
        Err(code) => return code,
    };
    match write(&data, format, args.out.as_deref()) {
        Ok(()) => exit::OK,
        Err(e) if is_broken_pipe(&e) => exit::OK,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ordo: {e:#}");
            exit::JOB_FAILED
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Renders `data` as `format` into `out` (a file) or stdout.
pub fn write(data: &ReportData, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
    let text = render(&build(data), format);
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write the report to {}", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}

/// `ordo run --report FILE`: the report of job `id` from the run's store.
pub fn write_from_store(
    store: &Store,
    id: &JobId,
    format: Format,
    out: &Path,
) -> anyhow::Result<()> {
    let data =
        ordo_coordinator::report::gather(store, id)?.context("the job vanished from the store")?;
    write(&data, format, Some(out))
}

/// `ordo prune`: returns the exit code.
pub fn prune(args: PruneArgs) -> u8 {
    let target = args.target.target();
    if let Some(text) = &args.job {
        let job = match with_jobs(&target, Open::Existing, async |jobs| {
            let job = jobs.resolve(text).await?;
            jobs.prune_job(job).await.map(|()| job)
        }) {
            Ok(job) => job,
            Err(code) => return code,
        };
        let line = match args.output {
            Output::Json => serde_json::json!({ "pruned": job.to_string() }).to_string(),
            Output::Text => format!("removed the worktrees and task branches job {job} kept"),
        };
        println!("{line}");
        return exit::OK;
    }
    let Some(older_than) = args.older_than else {
        return exit::INVALID;
    };
    let older_than_ms = older_than.0.as_millis() as u64;
    let removed = match with_jobs(&target, Open::Existing, async |jobs| {
        jobs.prune(older_than_ms).await
    }) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let line = match args.output {
        Output::Json => serde_json::json!({ "removed": removed }).to_string(),
        Output::Text => format!(
            "removed {removed} finished job{} older than {}",
            if removed == 1 { "" } else { "s" },
            age(older_than)
        ),
    };
    println!("{line}");
    exit::OK
}

/// A duration as typed: whole days as `30d`, else as `Dur` prints it.
fn age(d: Dur) -> String {
    let secs = d.0.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && d.0.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        d.to_string()
    }
}
