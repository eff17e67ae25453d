//! What `ordo run` shows while a job runs: live bars on a terminal (an overall bar and one line
//! per running task), plain lines otherwise, nothing with `--quiet`. Fed the same `Change`s the
//! store records, so what is shown is what is kept.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ordo_coordinator::store::JobRecord;
use ordo_coordinator::store::{Change, TaskState};
use ordo_proto::{Integration, JobSpec, JobState, TaskIndex};

pub use crate::run::Progress;
use crate::run::RunReport;

/// Shows nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: &JobRecord, _: &JobSpec, _: bool) {}
    fn changes(&mut self, _: &[Change], _: &JobSpec) {}
    fn finish(&mut self, _: &RunReport) {}
}

/// One line per event, for logs and pipes.
pub struct Lines<W: Write> {
    out: W,
    started: Instant,
    /// Last reported attempt result per task, to say why a retry happens.
    last_message: HashMap<TaskIndex, String>,
}

impl<W: Write> Lines<W> {
    pub fn new(out: W) -> Self {
        Lines {
            out,
            started: Instant::now(),
            last_message: HashMap::new(),
        }
    }
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// One human line for a task change, or `None` for changes not worth a line.
fn describe(
    change: &Change,
    spec: &JobSpec,
    last: &mut HashMap<TaskIndex, String>,
) -> Option<String> {
    match change {
        Change::Task {
            job, index, state, ..
        } => {
            let name = spec.tasks.get(index.get())?.label();
            let msg = last.get(index).cloned().unwrap_or_default();
            Some(match state {
                TaskState::Pending | TaskState::Ready { .. } | TaskState::Dispatched { .. } => {
                    return None;
                }
                TaskState::Running { attempt, .. } => {
                    format!("▶ {name} started (attempt {attempt})")
                }
                TaskState::Integrating { .. } => format!("⇢ {name} integrating {msg}"),
                TaskState::AwaitingApproval { stage, .. } => {
                    let stage = spec.stages.get(*stage as usize).map_or("", |s| &s.name);
                    let task = &spec.tasks.get(index.get())?.name;
                    format!(
                        "⏸ {name} awaiting approval ({stage}): ordo approve {job} {task} \
                         (or ordo reject {job} {task} --reason TEXT)"
                    )
                }
                TaskState::RetryWait { until, reason, .. } => {
                    let wait = until.saturating_sub(ordo_proto::now_ms());
                    format!("↻ {name} failed: {reason}; retrying in {}", secs(wait))
                }
                TaskState::Succeeded { .. } => format!("✓ {name} succeeded {msg}"),
                TaskState::Failed { reason, .. } => format!("✗ {name} failed: {reason}"),
                TaskState::TimedOut { reason, .. } => format!("✗ {name} {reason}"),
                TaskState::Cancelled { reason, .. } => format!("⊘ {name} cancelled: {reason}"),
                TaskState::Skipped { reason } => format!("⊘ {name} skipped: {reason}"),
            })
        }
        Change::Attempt(r) => {
            last.insert(r.index, format!("in {}", secs(r.duration_ms)));
            None
        }
        Change::Integrated {
            index,
            outcome,
            with,
            ..
        } => {
            let name = spec.tasks.get(index.get())?.label();
            match outcome {
                Integration::Merged { commit, files } => {
                    let short = &commit[..commit.len().min(10)];
                    Some(format!("⇢ {name} merged ({} files, {short})", files.len()))
                }
                Integration::Unchanged { .. } => Some(format!("⇢ {name} changed nothing")),
                // Whether it runs again or fails for good, the next line says.
                Integration::Conflict { files } => {
                    let with = with.as_ref().map_or(String::new(), |w| {
                        format!(" with task '{}'", spec.label_of(w.as_str()))
                    });
                    Some(format!("⚠ {name} conflicts{with} in {}", files.join(", ")))
                }
                Integration::VerifyFailed { .. } => {
                    Some(format!("⚠ {name}: the integration verify failed"))
                }
                Integration::Failed { message } => Some(format!("⚠ {name}: {message}")),
                // Not an integration's end: a stacked verify (it lands later).
                Integration::Verified { .. } => None,
            }
        }
        Change::Stage { index, record, .. } => {
            let name = spec.tasks.get(index.get())?.label();
            let verdict = record.verdict.map_or("?", |v| v.name());
            let by = record.by.as_deref().unwrap_or("?");
            Some(format!("✎ {name}: {} {verdict} by {by}", record.name))
        }
        Change::Batch {
            tasks, bisected, ..
        } if *bisected => Some(format!(
            "⇣ the integration verify failed for a batch of {}: bisecting",
            tasks.len()
        )),
        Change::Batch { .. } => None,
        Change::Speculation {
            index, kept: false, ..
        } => Some(format!(
            "↺ {}: its speculative run is discarded (a dependency changed): it runs again",
            spec.tasks.get(index.get())?.label()
        )),
        Change::Speculation { .. } => None,
        Change::Ignored { .. }
        | Change::Job { .. }
        | Change::Budget { .. }
        | Change::Pool { .. } => None,
    }
}

impl<W: Write> Progress for Lines<W> {
    fn start(&mut self, job: &JobRecord, spec: &JobSpec, resumed: bool) {
        let verb = if resumed { "resumed" } else { "started" };
        let _ = writeln!(
            self.out,
            "ordo: job '{}' ({}) {verb}: {} tasks",
            job.name,
            job.id,
            spec.tasks.len()
        );
    }

    fn changes(&mut self, changes: &[Change], spec: &JobSpec) {
        for c in changes {
            if let Some(line) = describe(c, spec, &mut self.last_message) {
                let _ = writeln!(self.out, "  {}", line.trim_end());
            }
        }
        let _ = self.out.flush();
    }

    fn finish(&mut self, report: &RunReport) {
        let _ = writeln!(
            self.out,
            "ordo: job '{}' {} in {}",
            report.job.name,
            report.job.state.name(),
            secs(self.started.elapsed().as_millis() as u64)
        );
    }
}

/// Live bars on a terminal.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<TaskIndex, ProgressBar>,
    last_message: HashMap<TaskIndex, String>,
    color: bool,
}

impl Bars {
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let template = if color {
            "{spinner:.green} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} tasks {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tasks {msg}"
        };
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(120));
        Bars {
            multi,
            overall,
            running: HashMap::new(),
            last_message: HashMap::new(),
            color,
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bars {
    fn start(&mut self, job: &JobRecord, spec: &JobSpec, resumed: bool) {
        self.overall.set_length(spec.tasks.len() as u64);
        let verb = if resumed { "resumed" } else { "running" };
        self.overall.set_message(format!("{verb} '{}'", job.name));
    }

    fn changes(&mut self, changes: &[Change], spec: &JobSpec) {
        for c in changes {
            let line = describe(c, spec, &mut self.last_message);
            if let Change::Task { index, state, .. } = c {
                match state {
                    TaskState::Running { .. } => {
                        let bar = self.multi.add(ProgressBar::new_spinner());
                        let style = if self.color {
                            "  {spinner:.yellow} {msg} {elapsed}"
                        } else {
                            "  {spinner} {msg} {elapsed}"
                        };
                        bar.set_style(
                            ProgressStyle::with_template(style)
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_message(spec.tasks[index.get()].label());
                        bar.enable_steady_tick(Duration::from_millis(120));
                        if let Some(old) = self.running.insert(*index, bar) {
                            old.finish_and_clear();
                        }
                    }
                    s => {
                        if let Some(bar) = self.running.remove(index) {
                            bar.finish_and_clear();
                        }
                        if s.is_terminal() {
                            self.overall.inc(1);
                        }
                        // Failures and skips stay on screen above the bars.
                        if let Some(line) = line
                            && !matches!(s, TaskState::Succeeded { .. })
                        {
                            let _ = self.multi.println(format!("  {line}"));
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self, report: &RunReport) {
        for (_, bar) in self.running.drain() {
            bar.finish_and_clear();
        }
        let state = report.job.state;
        self.overall.finish_with_message(format!(
            "'{}' {}",
            report.job.name,
            match state {
                JobState::Succeeded => "succeeded",
                JobState::Failed => "failed",
                JobState::Cancelled => "cancelled",
                JobState::Pending | JobState::Running => "stopped",
            }
        ));
    }
}
