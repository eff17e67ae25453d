//! `ordo logs`: a job's (or one task's) output. On a cluster it is read from the `ORDO_LOGS`
//! stream, and with `--follow` printed as it arrives until the job has ended and its output is
//! drained. A local state directory keeps each attempt's output tail: those are printed, and
//! with `--follow` each attempt's as it ends.
//!
//! Each task's attempt starts with a header line, `==> NAME (TITLE) · attempt N <==` (one
//! task's first attempt goes without). An agent's prompt task shows its result text, not the
//! JSON the agent prints; `--raw` prints that JSON as it came (a local state directory keeps
//! only the result text).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::StreamMessage;
use ordo_proto::{AgentKind, JobId, TaskIndex, names, task_label};

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
/// Tasks read per status page for their names.
const NAMES_PAGE: usize = 500;

pub async fn logs(
    jobs: &Jobs,
    job: JobId,
    task: Option<&str>,
    follow: bool,
    raw: bool,
) -> Result<u8, Error> {
    let summary = jobs.summary(job).await?;
    let task = match task {
        Some(t) => Some((jobs.find_task(job, t).await?, t)),
        None => None,
    };
    let ended = !follow || summary.state.is_terminal();
    let mut out = Printer {
        labels: labels(jobs, job, task).await?,
        one_task: task.is_some(),
        current: None,
        line_start: true,
        raw,
        agents: HashMap::new(),
    };
    let task = task.map(|(i, _)| i);
    let code = match jobs {
        Jobs::Cluster(c) => {
            let code = stream(jobs, c, job, task, ended, &mut out).await;
            out.flush_agents()?;
            code
        }
        Jobs::Local(_) => {
            if raw {
                warn(
                    "ordo: a local state directory keeps an agent's result text, not its JSON \
                     (--raw shows it for jobs on a cluster)",
                );
            }
            stored(jobs, job, task, ended, &mut out).await
        }
    };
    if !out.line_start {
        write_out(b"\n")?;
    }
    code
}

/// How each task is named in headers: `NAME (TITLE)`.
async fn labels(
    jobs: &Jobs,
    job: JobId,
    task: Option<(TaskIndex, &str)>,
) -> Result<HashMap<TaskIndex, String>, Error> {
    let mut labels = HashMap::new();
    let mut page = 1;
    loop {
        let status = jobs
            .status_where(job, page, NAMES_PAGE, &[], task.map(|(_, t)| t))
            .await?;
        for t in &status.tasks {
            labels.insert(t.index, task_label(&t.name, t.title.as_deref()));
        }
        match status.page {
            Some(p) if task.is_none() && page < p.pages => page += 1,
            _ => return Ok(labels),
        }
    }
}

/// Writes output to stdout with a header line before each task's attempt.
struct Printer {
    labels: HashMap<TaskIndex, String>,
    /// One task asked for: its first attempt goes without a header.
    one_task: bool,
    /// The attempt whose output was printed last.
    current: Option<(TaskIndex, u32)>,
    /// What was printed so far ends its line.
    line_start: bool,
    /// `--raw`: agents' JSON as it came.
    raw: bool,
    /// Agent attempts' stdout on the stream, until it is whole.
    agents: HashMap<(TaskIndex, u32), AgentOutput>,
}

impl Printer {
    fn print(&mut self, index: TaskIndex, attempt: u32, bytes: &[u8]) -> Result<(), Error> {
        let mut text = Vec::new();
        if self.current != Some((index, attempt)) {
            if !self.line_start {
                // The previous attempt's output did not end its line.
                text.push(b'\n');
            }
            if !(self.one_task && self.current.is_none() && attempt <= 1) {
                let label = self
                    .labels
                    .get(&index)
                    .cloned()
                    .unwrap_or_else(|| index.to_string());
                text.extend_from_slice(format!("==> {label} · attempt {attempt} <==\n").as_bytes());
            }
            self.current = Some((index, attempt));
        }
        text.extend_from_slice(bytes);
        if let Some(last) = text.last() {
            self.line_start = *last == b'\n';
        }
        write_out(&text)
    }

    /// Prints one message of the stream: an agent's stdout is held until the result in it can
    /// be shown.
    fn message(&mut self, msg: &StreamMessage) -> Result<(), Error> {
        let Some((index, attempt, agent)) = message_source(msg) else {
            return write_out(&msg.payload);
        };
        let Some(kind) = agent.filter(|_| !self.raw) else {
            return self.print(index, attempt, &msg.payload);
        };
        let slot = self
            .agents
            .entry((index, attempt))
            .or_insert_with(|| AgentOutput::Reading(kind, Vec::new()));
        let AgentOutput::Reading(kind, bytes) = slot else {
            return self.print(index, attempt, &msg.payload);
        };
        bytes.extend_from_slice(&msg.payload);
        let Some(mut text) = ordo_worker::agent::shown(*kind, bytes) else {
            return Ok(());
        };
        *slot = AgentOutput::Shown;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        self.print(index, attempt, text.as_bytes())
    }

    /// Agent output that never became whole, as it came.
    fn flush_agents(&mut self) -> Result<(), Error> {
        let mut left: Vec<_> = std::mem::take(&mut self.agents).into_iter().collect();
        left.sort_by_key(|(k, _)| *k);
        for ((index, attempt), a) in left {
            if let AgentOutput::Reading(_, bytes) = a {
                self.print(index, attempt, &bytes)?;
            }
        }
        Ok(())
    }
}

fn write_out(bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = std::io::stdout();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(Error::Output)
}

/// A local job: each attempt's kept output once it has ended, in task then attempt order.
async fn stored(
    jobs: &Jobs,
    job: JobId,
    task: Option<TaskIndex>,
    mut ended: bool,
    out: &mut Printer,
) -> Result<u8, Error> {
    let mut printed: HashSet<(TaskIndex, u32)> = HashSet::new();
    loop {
        for a in jobs.report(Some(job)).await?.attempts {
            if task.is_some_and(|t| t != a.index) {
                continue;
            }
            if printed.insert((a.index, a.attempt.0)) {
                out.print(a.index, a.attempt.0, a.output_tail.as_bytes())?;
            }
        }
        if ended {
            return Ok(exit::OK);
        }
        tokio::time::sleep(POLL_EVERY).await;
        ended = jobs.summary(job).await?.state.is_terminal();
    }
}

/// An agent attempt's stdout on the stream, until it is whole.
enum AgentOutput {
    Reading(AgentKind, Vec<u8>),
    /// Its result text is printed: what follows (the verify command's output) goes as it is.
    Shown,
}

/// A cluster job: the stream, from the start.
async fn stream(
    jobs: &Jobs,
    cluster: &Cluster,
    job: JobId,
    task: Option<TaskIndex>,
    mut ended: bool,
    out: &mut Printer,
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
                out.message(&msg)?;
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

/// One message's task, attempt and (for an agent's stdout) agent.
fn message_source(msg: &StreamMessage) -> Option<(TaskIndex, u32, Option<AgentKind>)> {
    let index = msg
        .subject
        .as_str()
        .rsplit('.')
        .next()?
        .parse::<u32>()
        .ok()?;
    let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_string());
    let attempt = header(names::LOG_ATTEMPT_HEADER)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let agent = header(names::LOG_AGENT_HEADER)
        .filter(|_| header(names::LOG_STREAM_HEADER).as_deref() != Some("stderr"))
        .and_then(|k| AgentKind::named(&k));
    Some((TaskIndex(index), attempt, agent))
}
