//! `ordo report` and `ordo prune`: from a local state directory (`--state DIR`, what
//! `ordo run --state DIR` keeps) or through the coordinator's `report` / `prune` API verbs.
//! Either way the report is rendered here, from the same `ReportData`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ordo_coordinator::report::{self as data, ReportData};
use ordo_coordinator::store::Store;
use ordo_proto::api::{self, PruneReply, PruneRequest, ReportRequest};
use ordo_proto::connect::NatsArgs;
use ordo_proto::{Dur, JobId, names};

use super::{Format, build, render};
use crate::remote::{self, Output, exit};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Job id (with --state, also a unique prefix of one); default: the newest job.
    pub job: Option<String>,
    /// Default: from -o's extension (.md, .json, .xml, .html), else md.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the report here instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read this local state directory (as kept by `ordo run --state DIR`) instead of asking
    /// the coordinator.
    #[arg(long, env = "ORDO_STATE_DIR")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove finished jobs (succeeded, failed, cancelled) that ended longer ago than this,
    /// e.g. 30d, 12h, 0s; unfinished jobs are never removed.
    #[arg(long, value_name = "DURATION")]
    pub older_than: Dur,
    /// Prune this local state directory instead of the coordinator's store.
    #[arg(long, env = "ORDO_STATE_DIR")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

fn fail(message: impl std::fmt::Display, code: u8) -> u8 {
    let _ = writeln!(std::io::stderr(), "ordo: {message}");
    code
}

/// Opens an existing state directory; a missing one is an input error, not a new store.
fn open_state(dir: &Path) -> Result<Store, u8> {
    if !dir.join(names::STATE_FILE).is_file() {
        return Err(fail(
            format!(
                "{} holds no ordo state (no {})",
                dir.display(),
                names::STATE_FILE
            ),
            exit::INVALID,
        ));
    }
    Store::open(dir).map_err(|e| fail(e, exit::JOB_FAILED))
}

/// `ordo report`: prints or writes the report; returns the exit code.
pub fn report(args: ReportArgs) -> u8 {
    let format = Format::pick(args.format, args.out.as_deref());
    let data = match &args.state {
        Some(dir) => local_data(dir, args.job.as_deref()),
        None => remote_data(&args.nats, args.job.as_deref()),
    };
    let data = match data {
        Ok(d) => d,
        Err(code) => return code,
    };
    match write(&data, format, args.out.as_deref()) {
        Ok(()) => exit::OK,
        Err(e) if is_broken_pipe(&e) => exit::OK,
        Err(e) => fail(format!("{e:#}"), exit::JOB_FAILED),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn local_data(dir: &Path, job: Option<&str>) -> Result<ReportData, u8> {
    let store = open_state(dir)?;
    let id = match job {
        Some(text) => resolve_local(&store, text)?,
        None => data::latest(&store)
            .map_err(|e| fail(e, exit::JOB_FAILED))?
            .ok_or_else(|| fail(format!("{} holds no jobs", dir.display()), exit::INVALID))?,
    };
    data::gather(&store, &id)
        .map_err(|e| fail(e, exit::JOB_FAILED))?
        .ok_or_else(|| {
            fail(
                format!("job {id} not found in {}", dir.display()),
                exit::INVALID,
            )
        })
}

/// A full job id, or an unambiguous prefix of one.
fn resolve_local(store: &Store, text: &str) -> Result<JobId, u8> {
    let text = text.trim();
    if let Ok(id) = text.parse::<JobId>() {
        return Ok(id);
    }
    let jobs = store.jobs().map_err(|e| fail(e, exit::JOB_FAILED))?;
    let hits: Vec<JobId> = jobs
        .iter()
        .map(|j| j.id)
        .filter(|id| !text.is_empty() && id.to_string().starts_with(text))
        .collect();
    match hits.as_slice() {
        [id] => Ok(*id),
        [] => Err(fail(
            format!("no job '{}' in the state directory", text.escape_debug()),
            exit::INVALID,
        )),
        _ => Err(fail(
            format!(
                "'{}' matches {} jobs; give more of the id",
                text.escape_debug(),
                hits.len()
            ),
            exit::INVALID,
        )),
    }
}

fn remote_data(nats: &NatsArgs, job: Option<&str>) -> Result<ReportData, u8> {
    let job = job.map(remote::job_id).transpose()?;
    remote::request(nats, api::REPORT, &ReportRequest { job }, job)
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
    let data = data::gather(store, id)?.context("the job vanished from the store")?;
    write(&data, format, Some(out))
}

/// `ordo prune`: returns the exit code.
pub fn prune(args: PruneArgs) -> u8 {
    let older_than_ms = args.older_than.0.as_millis() as u64;
    let removed = match &args.state {
        Some(dir) => {
            let store = match open_state(dir) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.prune(crate::run::now_ms(), older_than_ms) {
                Ok(n) => n,
                Err(e) => return fail(e, exit::JOB_FAILED),
            }
        }
        None => {
            let req = PruneRequest { older_than_ms };
            match remote::request::<_, PruneReply>(&args.nats, api::PRUNE, &req, None) {
                Ok(r) => r.removed,
                Err(code) => return code,
            }
        }
    };
    let line = match args.output {
        Output::Json => serde_json::json!({ "removed": removed }).to_string(),
        Output::Text => format!(
            "removed {removed} finished job{} older than {}",
            if removed == 1 { "" } else { "s" },
            age(args.older_than)
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
