//! `ordo logs`: a job's (or one task's) output, raw as the tasks wrote it. On a cluster it is
//! read from the `ORDO_LOGS` stream, and with `--follow` printed as it arrives until the job
//! has ended and its output is drained. A local state directory keeps each attempt's output
//! tail: those are printed, and with `--follow` each task's as it ends.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ordo_proto::{JobId, TaskIndex};

use super::follow::{OUTAGE_LIMIT, Outage, POLL_EVERY, summary_tolerant};
use super::render::warn;
use crate::args::exit;
use crate::jobs::{Cluster, Error, Jobs};

/// `logs --follow` checks whether the job ended this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// `logs` stops when no output arrives for this long once the job's output is all stored...
const IDLE: Duration = Duration::from_secs(2);
/// ... or this long when the server said nothing more is pending.
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
    let consumer = cluster.output_consumer(job, task).await?;
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
        .map_err(|e| cluster.stream_error("cannot read", &e))?;
    let mut outage = Outage::default();
    let mut status_outage = Outage::default();
    let mut next_status = Instant::now() + STATUS_EVERY;
    loop {
        let wait = match (ended, pending) {
            (true, 0) => QUIET,
            (true, _) => IDLE,
            (false, _) => next_status.saturating_duration_since(Instant::now()),
        };
        match tokio::time::timeout(wait, messages.next()).await {
            Ok(Some(Ok(msg))) => {
                if outage.ok() {
                    warn("ordo: reading task output again");
                }
                write_out(&msg.payload)?;
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
                    return Err(cluster.stream_error("reading failed", &e));
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
            Ok(None) => return Ok(exit::OK),
            Err(_idle) if ended => return Ok(exit::OK),
            Err(_idle) => {}
        }
        if !ended && Instant::now() >= next_status {
            if let Some(s) = summary_tolerant(jobs, job, &mut status_outage).await? {
                ended = s.state.is_terminal();
            }
            next_status = Instant::now() + STATUS_EVERY;
        }
    }
}
