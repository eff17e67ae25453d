//! `ordo logs`: a job's (or one task's) output, raw as the tasks wrote it. On a cluster it is
//! read from the `ORDO_LOGS` stream, and with `--follow` printed as it arrives until the job
//! has ended and its output is drained. A local state directory keeps each attempt's output
//! tail: those are printed, and with `--follow` each task's as it ends.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use ordo_proto::{JobId, TaskIndex};

use super::follow::{OUTAGE_LIMIT, Outage, POLL_EVERY, summary_tolerant};
use super::render::warn;
use crate::args::exit;
use crate::jobs::{Cluster, Error, Jobs};

/// `logs --follow` checks whether the job ended this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// `logs` stops when no output arrives for this long after the job ended...
const IDLE: Duration = Duration::from_secs(2);
/// ... looking again this often.
const QUIET: Duration = Duration::from_millis(500);

pub async fn logs(jobs: &Jobs, job: JobId, task: Option<&str>, follow: bool) -> Result<u8, Error> {
    let summary = jobs.summary(job).await?;
    let task = match task {
        Some(t) => Some(jobs.find_task(job, t).await?),
        None => None,
    };
    let ended = !follow || summary.state.is_terminal();
    match jobs {
        Jobs::Cluster(c) => stream(jobs, c, job, task, ended).await,
        Jobs::Local(_) => stored(jobs, job, task, ended).await,
    }
}

fn write_out(bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = std::io::stdout();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(Error::Output)
}

/// A local job: each task's kept output once its attempt has ended, in task order.
async fn stored(
    jobs: &Jobs,
    job: JobId,
    task: Option<TaskIndex>,
    mut ended: bool,
) -> Result<u8, Error> {
    let mut printed: HashSet<(TaskIndex, u64)> = HashSet::new();
    loop {
        for (index, (total, bytes)) in jobs.output(job, task, usize::MAX).await? {
            if printed.insert((index, total)) {
                write_out(&bytes)?;
            }
        }
        if ended {
            return Ok(exit::OK);
        }
        tokio::time::sleep(POLL_EVERY).await;
        ended = jobs.summary(job).await?.state.is_terminal();
    }
}

/// A cluster job: the stream, from the start.
async fn stream(
    jobs: &Jobs,
    cluster: &Cluster,
    job: JobId,
    task: Option<TaskIndex>,
    mut ended: bool,
) -> Result<u8, Error> {
    let mut reader = cluster.output_reader(job, task).await?;
    // Ended before reading started: everything is stored, so the first time nothing more is
    // there is the end. (Ended later: output may still be on its way, so stop only after a
    // quiet spell.)
    let ended_first = ended;
    let mut quiet_since: Option<Instant> = None;
    let mut outage = Outage::default();
    let mut status_outage = Outage::default();
    let mut next_status = Instant::now() + STATUS_EVERY;
    loop {
        match reader.next().await {
            Ok(Some(msg)) => {
                if outage.ok() {
                    warn("ordo: reading task output again");
                }
                write_out(&msg.payload)?;
                quiet_since = None;
                continue;
            }
            Ok(None) if ended => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if ended_first || since.elapsed() >= IDLE {
                    return Ok(exit::OK);
                }
            }
            Ok(None) => {}
            Err(e) => {
                // A coordinator or server restart: ride it out.
                if outage.failed(Instant::now(), OUTAGE_LIMIT) {
                    return Err(cluster.stream_error("reading failed", &e));
                }
            }
        }
        tokio::time::sleep(if ended { QUIET } else { POLL_EVERY }).await;
        if !ended && Instant::now() >= next_status {
            if let Some(s) = summary_tolerant(jobs, job, &mut status_outage).await? {
                ended = s.state.is_terminal();
            }
            next_status = Instant::now() + STATUS_EVERY;
        }
    }
}
