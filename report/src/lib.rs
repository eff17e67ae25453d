//! ordo-report: job reports. A model built from a job's records (`proto::api::ReportData`, the
//! reply of the `report` verb, the same for a local state directory, `ordo run --report` and
//! the coordinator) and its renderings: Markdown with a Mermaid gantt timeline, JSON, JUnit XML,
//! and one self-contained HTML file with an inline SVG timeline. The CLI, the MCP server and
//! the dashboard render through it; it depends on `ordo-proto` alone.
//!
//! What the summary measures:
//! - runs: the job's submission, then each `ordo retry` (a job that had ended going back to
//!   running), each with its start, end, outcome and attempts. The summary (makespan, task
//!   time, speedup), the critical path and the timelines are of the last run; the HTML
//!   timeline folds the earlier runs away, each on its own axis.
//! - makespan: from the last run's start (the submission, unless retried) to its end (or its
//!   last recorded change if it has not ended); a resumed job's makespan includes the time it
//!   was not running.
//! - task time: the sum of the last run's attempts' durations, retries included.
//! - speedup = task time / makespan; parallel efficiency = speedup / slots, where slots is what
//!   the job was given at submission (`--workers`, or the live workers' slots on the
//!   coordinator), bounded by its parallelism limit (`max_parallel_tasks`, 1 if sequential).
//! - queue wait: time tasks spent `ready` before being dispatched, summed over tasks (from the
//!   history's ready → dispatched transitions); lock wait: the part of it during which another
//!   task of the job holding one of its locks (or an exclusive task) was running.
//! - integration wait (worktree jobs): time tasks spent `integrating` (from their work's success
//!   to their change on the branch: the queue, the merge and the integration verify, and for a
//!   speculative run the wait for its dependencies), from the history's transitions, per task
//!   and in all (with the longest of a task).
//! - speculation: speculative runs kept and discarded, and what the discarded ones cost, from
//!   the history's `Speculation` records, per task and in all.
//! - the critical path as it ran: from the task that finished last, back through the dependency
//!   that finished last, to a task with none (sequential jobs: every task in run order).

pub mod html;
pub mod junit;
pub mod markdown;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use std::fmt::Write as _;

pub use ordo_proto::api::{BatchSummary, SpeculationSummary};
use ordo_proto::api::{HistoryChange, IgnoredResult, ReportData};
use ordo_proto::gates::{StageRecord, Verdict};
use ordo_proto::{
    ExecutionMode, Integration, JobState, Outcome, TaskIndex, TaskPhase, TaskResult, TaskSpec,
    WorkerId,
};
use serde::Serialize;

/// What `ordo report --format` and `ordo run --report` write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// Markdown with a Mermaid gantt timeline.
    Md,
    /// The report's model as JSON.
    Json,
    /// JUnit XML: a testsuite per job, a testcase per task.
    Junit,
    /// One self-contained HTML file with an SVG Gantt timeline.
    Html,
}

impl Format {
    /// From a file's extension: `.md`, `.json`, `.xml` (JUnit), `.html`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "md" | "markdown" => Format::Md,
            "json" => Format::Json,
            "xml" | "junit" => Format::Junit,
            "html" | "htm" => Format::Html,
            _ => return None,
        })
    }

    /// `explicit`, else from `path`'s extension, else Markdown.
    pub fn pick(explicit: Option<Format>, path: Option<&Path>) -> Format {
        explicit
            .or_else(|| path.and_then(Format::from_path))
            .unwrap_or(Format::Md)
    }
}

/// The report in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Md => markdown::render(report),
        Format::Json => {
            serde_json::to_string_pretty(report).expect("reports always serialise") + "\n"
        }
        Format::Junit => junit::render(report),
        Format::Html => html::render(report),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub job: JobInfo,
    pub summary: Summary,
    pub tasks: Vec<TaskReport>,
    /// The chain of tasks that decided the makespan, first to last.
    pub critical_path: Vec<PathStep>,
    /// What a reader should know about the data (cut output, unknown slots, ...).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Where the spec came from.
    pub source: String,
    /// `parallel`, `sequential` or `flow` (Prompter jumps: one task at a time).
    pub mode: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The job's state: succeeded, failed, cancelled (or running, pending).
    pub outcome: JobState,
    pub reason: Option<String>,
    pub finished: bool,
    /// Submission, milliseconds since the Unix epoch.
    pub submitted_ms: u64,
    /// Its submission and each retry (`ordo retry`), first to last.
    pub runs: Vec<JobRun>,
    /// Start of the last run: the submission, unless it was retried.
    pub start_ms: u64,
    /// The job's end (or last recorded change).
    pub end_ms: u64,
    pub makespan_ms: u64,
    /// Sum of every attempt's duration.
    pub task_time_ms: u64,
    /// task time / makespan.
    pub speedup: Option<f64>,
    /// Slots the job could use (see the module docs); `None` if not recorded.
    pub slots: Option<u32>,
    /// speedup / slots.
    pub parallel_efficiency: Option<f64>,
    pub tasks: usize,
    /// Tasks per final state.
    pub states: BTreeMap<TaskPhase, usize>,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts after each task's first.
    pub retries: u32,
    /// Time tasks were ready but not yet dispatched, summed.
    pub queue_wait_ms: u64,
    /// The part of `queue_wait_ms` while a task sharing a lock (or an exclusive task) ran.
    pub lock_wait_ms: u64,
    /// Span of the critical path, from its first start to its last end.
    pub critical_path_ms: u64,
    /// Results that changed nothing (stale or duplicate deliveries).
    pub ignored_results: usize,
    /// Jobs in worktrees (docs/design.md, "Agent workspaces"): where their changes were
    /// integrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<JobIntegration>,
    /// What agent runs cost in all, when any agent reported it (docs/design.md, "Agent runs").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Tokens of every agent run, when any reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// Cost, tokens and success rate per model, for the runs whose agent named its model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelSpend>,
    /// What the attempts after the first of tasks with an `escalate` ladder cost, when any
    /// task has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

/// The attempts that escalation paid for: those after the first of tasks with a ladder.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Escalation {
    pub runs: u32,
    pub cost_usd: Option<f64>,
    pub tokens: u64,
}

impl Escalation {
    /// The escalated attempts of `attempts` (tasks of `spec` with a ladder, attempt 2 on);
    /// `None` when no task of the spec has a ladder.
    fn of(spec: &ordo_proto::JobSpec, attempts: &[ordo_proto::TaskResult]) -> Option<Escalation> {
        let laddered = |r: &&ordo_proto::TaskResult| {
            spec.tasks
                .get(r.index.get())
                .is_some_and(|t| t.escalate.as_ref().is_some_and(|l| l.len() > 1))
        };
        if !spec.tasks.iter().any(|t| t.escalate.is_some()) {
            return None;
        }
        let mut e = Escalation::default();
        for r in attempts.iter().filter(laddered).filter(|r| r.attempt.0 > 1) {
            let Some(a) = r.agent.as_deref() else {
                continue;
            };
            e.runs += 1;
            if let Some(c) = a.cost_usd {
                e.cost_usd = Some(e.cost_usd.unwrap_or(0.0) + c);
            }
            e.tokens = e.tokens.saturating_add(a.tokens());
        }
        Some(e)
    }
}

/// Agent tokens, in all.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub total: u64,
}

impl Tokens {
    /// The tokens of `runs` in all, `None` when there is no agent run.
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a ordo_proto::AgentRun>) -> Option<Tokens> {
        runs.into_iter().fold(None, |sum, a| {
            let t = sum.unwrap_or_default();
            let (input, output) = (t.input + a.input_tokens, t.output + a.output_tokens);
            Some(Tokens {
                input,
                output,
                total: input + output,
            })
        })
    }
}

/// What the runs of one model spent, and how many of them succeeded.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSpend {
    pub model: String,
    pub runs: u32,
    /// Attempts of this model that succeeded (their verify passed).
    pub succeeded: u32,
    /// succeeded / runs.
    pub success_rate: f64,
    pub cost_usd: Option<f64>,
    pub tokens: Tokens,
}

/// Cost, tokens and successes per model named by the agent runs of `attempts`, costliest
/// first.
fn by_model(attempts: &[ordo_proto::TaskResult]) -> Vec<ModelSpend> {
    let mut models: BTreeMap<&str, Vec<&ordo_proto::TaskResult>> = BTreeMap::new();
    for r in attempts {
        if let Some(m) = r.agent.as_deref().and_then(|a| a.model.as_deref()) {
            models.entry(m).or_default().push(r);
        }
    }
    let mut out: Vec<ModelSpend> = models
        .into_iter()
        .map(|(model, results)| {
            let runs: Vec<&ordo_proto::AgentRun> =
                results.iter().filter_map(|r| r.agent.as_deref()).collect();
            let succeeded = results
                .iter()
                .filter(|r| r.outcome == ordo_proto::Outcome::Succeeded)
                .count() as u32;
            ModelSpend {
                model: model.to_string(),
                runs: runs.len() as u32,
                succeeded,
                success_rate: f64::from(succeeded) / runs.len().max(1) as f64,
                cost_usd: runs.iter().filter_map(|a| a.cost_usd).reduce(|a, b| a + b),
                tokens: Tokens::of(runs.iter().copied()).unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.cost_usd
            .unwrap_or(0.0)
            .total_cmp(&a.cost_usd.unwrap_or(0.0))
            .then(b.tokens.total.cmp(&a.tokens.total))
    });
    out
}

/// Dollars for people: `$0.0421`, `$3.02`.
pub fn fmt_usd(v: f64) -> String {
    if v < 1.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// A worktree job's integration, in all.
#[derive(Clone, Debug, Serialize)]
pub struct JobIntegration {
    pub branch: String,
    /// Tasks whose change is on the branch (merged, or found already there).
    pub integrations: usize,
    /// Integrations that conflicted.
    pub conflicts: usize,
    /// conflicts / integrations tried.
    pub conflict_rate: f64,
    /// What failed attempts kept (worktrees, task branches) and the command that removes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// Conflicts resolved in the task's own session, and what those rounds cost.
    pub resolve_rounds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve_cost_usd: Option<f64>,
    /// The files with the most conflicts, most first (at most 10).
    pub hot_files: Vec<HotFile>,
    /// With `integration.batch` above 1: the integrations that took several tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<BatchSummary>,
    /// With `integration.speculate` (or when any ran): speculative runs kept and discarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speculation: Option<SpeculationSummary>,
    /// Time tasks spent `integrating` (waiting in the queue, merging, verifying), summed over
    /// tasks, and the most one task spent.
    pub wait_ms: u64,
    pub max_wait_ms: u64,
}

/// The integration queue's batches of a job, and its speculative runs in all and per task,
/// from its history.
fn queue_records(
    history: &[ordo_proto::api::HistoryEntry],
    n: usize,
) -> (BatchSummary, SpeculationSummary, Vec<SpeculationSummary>) {
    let mut b = BatchSummary::default();
    let mut all = SpeculationSummary::default();
    let mut per_task = vec![SpeculationSummary::default(); n];
    for h in history {
        match &h.change {
            HistoryChange::Batch {
                tasks,
                verified,
                bisected,
                voided,
            } => b.add(tasks.len(), *verified, *bisected, *voided),
            HistoryChange::Speculation {
                index,
                kept,
                cost_usd,
                ..
            } => {
                if let Some(s) = per_task.get_mut(index.get()) {
                    s.add(*kept, *cost_usd);
                    all.add(*kept, *cost_usd);
                }
            }
            _ => {}
        }
    }
    (b, all, per_task)
}

#[derive(Clone, Debug, Serialize)]
pub struct HotFile {
    pub file: String,
    pub conflicts: usize,
}

/// One task's integration: its last attempt's branch, the commit on the integration branch
/// and the files it changed there, how its last integration ended, and every conflict.
#[derive(Clone, Debug, Serialize)]
pub struct TaskIntegration {
    pub branch: String,
    pub commit: Option<String>,
    pub files: Vec<String>,
    /// merged, unchanged, conflict, verify_failed, failed.
    pub outcome: String,
    pub conflicts: Vec<ConflictReport>,
    /// The worktree kept for a task that failed to integrate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// Races lost are `conflicts`; these are how they were reworked: resolve rounds in the
    /// task's own session (and their cost), and runs again from the new tip.
    pub resolve_rounds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve_cost_usd: Option<f64>,
    pub reruns: u32,
}

/// What became of one attempt: how its program ended, or `conflict` when it succeeded in its
/// worktree but its change could not be integrated (a text conflict or a failed integration
/// verify). A conflict spends no attempt: the task ran again from the new tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Ended(Outcome),
    Conflict,
    /// A resolve round that left conflict markers: the task ran again from the tip (no
    /// attempt spent either).
    Unresolved,
}

impl RunOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Ended(o) => o.name(),
            RunOutcome::Conflict => "conflict",
            RunOutcome::Unresolved => "unresolved",
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for RunOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ConflictReport {
    /// The task whose integrated change touched the same files, when known.
    pub task: Option<String>,
    pub files: Vec<String>,
}

/// A task's pass/fail mark in the checklist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Pass,
    Fail,
    Skipped,
    Cancelled,
    /// Not finished yet.
    Pending,
}

impl Mark {
    /// The mark of a task in `phase`: pass, fail, skipped, cancelled, or not finished yet.
    pub fn of(phase: TaskPhase) -> Mark {
        match phase {
            TaskPhase::Succeeded => Mark::Pass,
            TaskPhase::Failed | TaskPhase::TimedOut => Mark::Fail,
            TaskPhase::Skipped => Mark::Skipped,
            TaskPhase::Cancelled => Mark::Cancelled,
            TaskPhase::Pending
            | TaskPhase::Ready
            | TaskPhase::Dispatched
            | TaskPhase::Running
            | TaskPhase::Integrating
            | TaskPhase::AwaitingApproval
            | TaskPhase::RetryWait => Mark::Pending,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::Skipped => "⊘",
            Mark::Cancelled => "■",
            Mark::Pending => "…",
        }
    }
}

/// What a task runs.
#[derive(Clone, Debug, Serialize)]
pub struct RunText {
    /// `command` (sh -c), `argv` (exec'd) or `prompt` (given to the agent command).
    pub kind: &'static str,
    /// The command, the argv shell-quoted, or the prompt.
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyResult {
    Passed,
    Failed,
    /// The program did not succeed (or never ran), so the verify command did not run.
    NotRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub command: String,
    pub success_code: i32,
    /// Exit code of the last attempt's verify command.
    pub exit_code: Option<i32>,
    pub result: VerifyResult,
}

#[derive(Clone, Debug, Serialize)]
pub struct TaskReport {
    pub index: TaskIndex,
    pub name: String,
    /// Its title, when its format gave one apart from the name (a TaskMaster task's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub state: TaskPhase,
    pub mark: Mark,
    /// Why it did not succeed.
    pub reason: Option<String>,
    pub run: RunText,
    pub verify: Option<VerifyReport>,
    pub depends_on: Vec<String>,
    pub attempts: u32,
    /// Worker of the last attempt (`local` for `ordo run`).
    pub worker: Option<WorkerId>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Duration of the last attempt.
    pub duration_ms: Option<u64>,
    /// Start of the first attempt.
    pub started_ms: Option<u64>,
    /// End of the last attempt, or when the task was skipped or cancelled.
    pub ended_ms: Option<u64>,
    pub queue_wait_ms: u64,
    pub lock_wait_ms: u64,
    /// Worktree jobs: time it spent `integrating` (see the module docs).
    #[serde(skip_serializing_if = "is_zero")]
    pub integration_wait_ms: u64,
    /// Its speculative runs, when it had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speculation: Option<SpeculationSummary>,
    /// On the critical path.
    pub critical: bool,
    /// Last output of the last attempt (stdout and stderr interleaved).
    pub output_tail: String,
    pub output_bytes: u64,
    /// Every attempt, first to last.
    pub runs: Vec<AttemptReport>,
    /// What its agent runs cost, when the agent reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Its agent runs' tokens, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// The models its agent runs named.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Results of this task that changed nothing (stale or duplicate executions).
    pub ignored: Vec<IgnoredResult>,
    /// Jobs in worktrees: how its change was integrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<TaskIntegration>,
    /// Its quality gates (docs/design.md, "Quality gates"): every stage run and approval
    /// decision of every attempt, by attempt then start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageReport>,
}

/// One stage run (or approval decision) of one attempt: the record as the result or the
/// engine made it, with its agent's session and cost lifted out.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    pub attempt: u32,
    #[serde(flatten)]
    pub record: StageRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl TaskReport {
    /// The stage records of its last attempt that has any.
    pub fn last_stages(&self) -> impl Iterator<Item = &StageRecord> {
        let last = self.stages.last().map(|s| s.attempt);
        self.stages
            .iter()
            .filter(move |s| Some(s.attempt) == last)
            .map(|s| &s.record)
    }
}

/// The symbol of a stage's verdict: ✓ pass, ↻ changes, ✗ fail or no verdict.
pub fn verdict_symbol(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Pass) => "✓",
        Some(Verdict::Changes) => "↻",
        Some(Verdict::Fail) | None => "✗",
    }
}

/// One line per stage of `records` (one attempt's): its last verdict, its rounds when more
/// than one, who decided an approval. `review ✓ (2 rounds) · lint ✓ · sign-off ✓ alice`.
pub fn stages_line<'a>(records: impl IntoIterator<Item = &'a StageRecord>) -> String {
    stage_summaries(records)
        .iter()
        .map(|s| {
            let mut part = format!("{} {}", s.name, verdict_symbol(s.verdict));
            if s.rounds > 1 {
                let _ = write!(part, " ({} rounds)", s.rounds);
            }
            if let Some(by) = s.by {
                let _ = write!(part, " {by}");
            }
            part
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// One stage record in a line, without its findings: `review, round 2: ✓ pass, 1.2s, $0.0100,
/// session abc` or `sign-off: ✓ pass by alice at 1a2b3c4: looks fine`.
pub fn stage_text(s: &StageReport) -> String {
    let r = &s.record;
    let mut text = r.name.clone();
    if r.round > 1 {
        let _ = write!(text, ", round {}", r.round);
    }
    let _ = write!(
        text,
        ": {} {}",
        verdict_symbol(r.verdict),
        r.verdict.map_or("no verdict", Verdict::name)
    );
    if let Some(by) = &r.by {
        let _ = write!(text, " by {by}");
    }
    if let Some(c) = &r.commit {
        let _ = write!(text, " at {}", &c[..c.len().min(10)]);
    }
    if r.duration_ms > 0 {
        let _ = write!(text, ", {}", fmt_ms(r.duration_ms));
    }
    if let Some(c) = s.cost_usd {
        let _ = write!(text, ", {}", fmt_usd(c));
    }
    if let Some(id) = &s.session {
        let _ = write!(text, ", session {id}");
    }
    for note in r.comment.iter().chain(Some(&r.message)) {
        if !note.is_empty() {
            let _ = write!(text, ": {}", cut(note, 300));
        }
    }
    text
}

/// A stage of one attempt, folded over its rounds.
#[derive(Clone, Debug, PartialEq)]
pub struct StageSummary<'a> {
    pub name: &'a str,
    /// Its last verdict.
    pub verdict: Option<Verdict>,
    /// Rounds it ran in.
    pub rounds: u32,
    /// Approvals: who decided last.
    pub by: Option<&'a str>,
}

/// The stages of `records` (one attempt's) in the order they first ran, each folded over its
/// rounds.
pub fn stage_summaries<'a>(
    records: impl IntoIterator<Item = &'a StageRecord>,
) -> Vec<StageSummary<'a>> {
    let mut out: Vec<StageSummary<'a>> = Vec::new();
    for r in records {
        let i = match out.iter().position(|s| s.name == r.name) {
            Some(i) => i,
            None => {
                out.push(StageSummary {
                    name: &r.name,
                    verdict: None,
                    rounds: 0,
                    by: None,
                });
                out.len() - 1
            }
        };
        let s = &mut out[i];
        s.verdict = r.verdict;
        s.rounds += 1;
        s.by = r.by.as_deref().or(s.by);
    }
    out
}

/// One run of a job: its submission, or one `ordo retry`.
#[derive(Clone, Debug, Serialize)]
pub struct JobRun {
    /// 1 for the submission, 2 for the first retry, ...
    pub run: u32,
    pub started_ms: u64,
    /// When it ended; `None` while it runs.
    pub ended_ms: Option<u64>,
    /// Its end (or the last recorded change) minus its start.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Option<JobState>,
    /// Attempts that started in it.
    pub attempts: usize,
}

/// The runs of a job from its history: the first starts at its submission, each retry (a
/// terminal job going back to running) starts another, a terminal state ends one.
fn job_runs(data: &ReportData) -> Vec<JobRun> {
    let mut runs = vec![JobRun {
        run: 1,
        started_ms: data.job.summary.created_ms,
        ended_ms: None,
        duration_ms: 0,
        outcome: None,
        attempts: 0,
    }];
    for h in &data.history {
        let HistoryChange::Job { state, at, .. } = &h.change else {
            continue;
        };
        let last = runs.last_mut().expect("one run at least");
        if state.is_terminal() {
            last.ended_ms = Some(*at);
            last.outcome = Some(*state);
        } else if last.ended_ms.is_some() {
            let run = last.run + 1;
            runs.push(JobRun {
                run,
                started_ms: *at,
                ended_ms: None,
                duration_ms: 0,
                outcome: None,
                attempts: 0,
            });
        }
    }
    let last_change = data
        .attempts
        .iter()
        .map(attempt_end)
        .chain(data.history.iter().map(|h| h.at))
        .max()
        .unwrap_or(data.job.updated_ms)
        .max(data.job.updated_ms);
    let starts: Vec<u64> = runs.iter().map(|r| r.started_ms).collect();
    for (k, r) in runs.iter_mut().enumerate() {
        let next = starts.get(k + 1).copied().unwrap_or(u64::MAX);
        r.attempts = data
            .attempts
            .iter()
            .filter(|a| a.started_at_ms >= r.started_ms && a.started_at_ms < next)
            .count();
        r.duration_ms = r
            .ended_ms
            .unwrap_or(last_change)
            .saturating_sub(r.started_ms);
    }
    runs
}

#[derive(Clone, Debug, Serialize)]
pub struct AttemptReport {
    pub attempt: u32,
    /// The job's run it belongs to (`Summary::runs`).
    pub run: u32,
    pub outcome: RunOutcome,
    /// For a `conflict`: the files and the task whose integrated change touched them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<ConflictReport>,
    /// The run was a resolve round: its conflict resolved in the task's own session.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resolve: bool,
    pub worker: WorkerId,
    /// Which delivery of the attempt's task message ran it (0 for `ordo run`).
    pub delivery: u32,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub verify_exit_code: Option<i32>,
    pub message: String,
    /// Agent runs: session, cost and tokens as the agent reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentReport>,
    /// Each run of each of its stages, round by round (docs/design.md, "Quality gates").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<ordo_proto::gates::StageRecord>,
    /// `changes` verdicts sent back to the implementer in this attempt.
    #[serde(skip_serializing_if = "is_zero")]
    pub rounds: u32,
}

fn is_zero<N: Default + PartialEq>(n: &N) -> bool {
    *n == N::default()
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentReport {
    pub session_id: Option<String>,
    pub cost_usd: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub num_turns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The run ended on a rate limit (it did not count as an attempt).
    pub rate_limited: bool,
}

impl TaskReport {
    /// Its name with its title: `3 (Set up the database)`.
    pub fn label(&self) -> String {
        ordo_proto::task_label(&self.name, self.title.as_deref())
    }
}

impl AgentReport {
    fn of(run: &ordo_proto::AgentRun) -> AgentReport {
        AgentReport {
            session_id: run.session_id.clone(),
            cost_usd: run.cost_usd,
            input_tokens: run.input_tokens,
            output_tokens: run.output_tokens,
            num_turns: run.num_turns,
            model: run.model.clone(),
            rate_limited: run.rate_limited.is_some(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PathStep {
    pub index: TaskIndex,
    pub name: String,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub duration_ms: u64,
    /// Between the previous step's end (or the job's start) and this step's start.
    pub waited_ms: u64,
}

fn run_text(t: &TaskSpec) -> RunText {
    if let Some(c) = &t.command {
        RunText {
            kind: "command",
            text: c.clone(),
        }
    } else if let Some(argv) = &t.argv {
        RunText {
            kind: "argv",
            text: argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    } else if let Some(p) = &t.prompt {
        RunText {
            kind: "prompt",
            text: p.clone(),
        }
    } else {
        RunText {
            kind: "command",
            text: String::new(),
        }
    }
}

/// `s` as one shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn attempt_end(r: &TaskResult) -> u64 {
    r.started_at_ms.saturating_add(r.duration_ms)
}

/// Length of the union of `intervals` clipped to `[from, to]`.
fn covered(mut intervals: Vec<(u64, u64)>, from: u64, to: u64) -> u64 {
    intervals.retain(|&(a, b)| b > from && a < to);
    intervals.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for (a, b) in intervals {
        let (a, b) = (a.max(from), b.min(to));
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = cur {
        total += b - a;
    }
    total
}

/// Builds the report of one job from its records.
pub fn build(data: &ReportData) -> Report {
    let spec = &data.job.spec;
    let job = &data.job.summary;
    let n = spec.tasks.len();
    let by_name: HashMap<&str, usize> = spec
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut runs: Vec<Vec<&TaskResult>> = vec![Vec::new(); n];
    for r in &data.attempts {
        if let Some(v) = runs.get_mut(r.index.get()) {
            v.push(r);
        }
    }
    for v in &mut runs {
        v.sort_by_key(|r| r.attempt);
    }

    // Ready → dispatched waits, and when tasks that never ran were settled, from the history.
    let mut ready: Vec<Option<u64>> = vec![None; n];
    let mut waits: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n];
    let mut settled: Vec<Option<u64>> = vec![None; n];
    // Time spent integrating: since when a task is, and what it spent in all.
    let mut integrating: Vec<Option<u64>> = vec![None; n];
    let mut integration_wait: Vec<u64> = vec![0; n];
    let mut last_change = data.job.updated_ms;
    for h in &data.history {
        last_change = last_change.max(h.at);
        let HistoryChange::Task { index, state } = &h.change else {
            continue;
        };
        let i = index.get();
        if i >= n {
            continue;
        }
        let at = state.at.unwrap_or(h.at);
        if state.state == TaskPhase::Integrating {
            integrating[i].get_or_insert(at);
        } else if let Some(since) = integrating[i].take() {
            integration_wait[i] += at.saturating_sub(since);
        }
        match state.state {
            TaskPhase::Ready => ready[i] = Some(at),
            TaskPhase::Dispatched => {
                if let Some(r) = ready[i].take() {
                    waits[i].push((r, at.max(r)));
                }
            }
            TaskPhase::Cancelled | TaskPhase::Skipped => {
                ready[i] = None;
                settled[i] = Some(at);
            }
            _ => {}
        }
    }
    // Tasks still ready when the records end have waited until then.
    let end_ms = job
        .finished_ms
        .unwrap_or_else(|| {
            data.attempts
                .iter()
                .map(attempt_end)
                .max()
                .unwrap_or(0)
                .max(last_change)
        })
        .max(data.job.summary.created_ms);
    for (i, r) in ready.iter().enumerate() {
        if let Some(r) = r {
            waits[i].push((*r, end_ms.max(*r)));
        }
    }
    for (i, since) in integrating.iter().enumerate() {
        if let Some(since) = since {
            integration_wait[i] += end_ms.saturating_sub(*since);
        }
    }
    let (batches, speculated, speculation) = queue_records(&data.history, n);

    // Lock waits: within a wait, the time a conflicting task of the job was running.
    let conflicts = |a: &TaskSpec, b: &TaskSpec| {
        a.exclusive || b.exclusive || a.locks.iter().any(|l| b.locks.contains(l))
    };
    let any_locks = spec
        .tasks
        .iter()
        .any(|t| t.exclusive || !t.locks.is_empty());
    let lock_wait: Vec<u64> = (0..n)
        .map(|i| {
            if !any_locks || waits[i].is_empty() {
                return 0;
            }
            let holders: Vec<(u64, u64)> = (0..n)
                .filter(|&j| j != i && conflicts(&spec.tasks[i], &spec.tasks[j]))
                .flat_map(|j| runs[j].iter().map(|r| (r.started_at_ms, attempt_end(r))))
                .collect();
            waits[i]
                .iter()
                .map(|&(a, b)| covered(holders.clone(), a, b))
                .sum()
        })
        .collect();

    let mode = if spec.uses_flow_jumps() {
        "flow"
    } else {
        match spec.mode(data.job.default_mode) {
            ExecutionMode::Parallel => "parallel",
            ExecutionMode::Sequential => "sequential",
        }
    };

    // The job's runs: its submission, then one per retry. The summary, the critical path and
    // the timeline are of the last one.
    let job_runs = job_runs(data);
    let run_start = job_runs
        .last()
        .map_or(data.job.summary.created_ms, |r| r.started_ms);
    let run_of = |r: &TaskResult| {
        job_runs
            .iter()
            .rev()
            .find(|run| run.started_ms <= r.started_at_ms)
            .map_or(1, |run| run.run)
    };

    // The critical path as it ran (in the last run).
    let this_run = |i: usize| runs[i].iter().filter(|r| r.started_at_ms >= run_start);
    let first_start = |i: usize| runs[i].iter().map(|r| r.started_at_ms).min();
    let last_end = |i: usize| runs[i].iter().map(|r| attempt_end(r)).max();
    let run_first_start = |i: usize| this_run(i).map(|r| r.started_at_ms).min();
    let run_last_end = |i: usize| this_run(i).map(|r| attempt_end(r)).max();
    let ran: Vec<usize> = (0..n).filter(|&i| this_run(i).next().is_some()).collect();
    let mut chain: Vec<usize> = Vec::new();
    if mode == "parallel" {
        let mut cur = ran
            .iter()
            .copied()
            .max_by_key(|&i| (run_last_end(i), usize::MAX - i));
        while let Some(i) = cur {
            chain.push(i);
            cur = spec.tasks[i]
                .depends_on
                .iter()
                .filter_map(|d| by_name.get(d.as_str()).copied())
                .filter(|&j| ran.contains(&j) && !chain.contains(&j))
                .max_by_key(|&j| (run_last_end(j), usize::MAX - j));
        }
        chain.reverse();
    } else {
        chain = ran.clone();
        chain.sort_by_key(|&i| (run_first_start(i), i));
    }
    let mut prev_end = run_start;
    let critical_path: Vec<PathStep> = chain
        .iter()
        .map(|&i| {
            let started = run_first_start(i).unwrap_or(prev_end);
            let ended = run_last_end(i).unwrap_or(started);
            let step = PathStep {
                index: TaskIndex::from(i),
                name: spec.tasks[i].name.to_string(),
                started_ms: started,
                ended_ms: ended,
                duration_ms: ended.saturating_sub(started),
                waited_ms: started.saturating_sub(prev_end),
            };
            prev_end = ended;
            step
        })
        .collect();

    let mut integrations: Vec<Option<TaskIntegration>> = vec![None; n];
    // Attempts whose change could not be integrated: (task, attempt) → the conflict.
    let mut conflicted: HashMap<(usize, u32), ConflictReport> = HashMap::new();
    for h in &data.history {
        let HistoryChange::Integrated {
            index,
            attempt,
            branch,
            outcome,
            with,
            ..
        } = &h.change
        else {
            continue;
        };
        let files = match outcome {
            Integration::Conflict { files } => Some(files.clone()),
            Integration::VerifyFailed { .. } | Integration::Failed { .. } => Some(Vec::new()),
            _ => None,
        };
        if let Some(files) = files {
            let conflict = ConflictReport {
                task: with.as_ref().map(|w| w.to_string()),
                files,
            };
            conflicted.insert((index.get(), attempt.0), conflict);
        }
        let Some(slot) = integrations.get_mut(index.get()) else {
            continue;
        };
        let it = slot.get_or_insert_with(|| TaskIntegration {
            branch: String::new(),
            commit: None,
            files: Vec::new(),
            outcome: String::new(),
            conflicts: Vec::new(),
            worktree: None,
            resolve_rounds: 0,
            resolve_cost_usd: None,
            reruns: 0,
        });
        it.branch = branch.clone();
        it.outcome = outcome.name().to_string();
        match outcome {
            Integration::Merged { commit, files } => {
                it.commit = Some(commit.clone());
                it.files = files.clone();
            }
            Integration::Unchanged { commit } => it.commit = Some(commit.clone()),
            Integration::Conflict { files } => it.conflicts.push(ConflictReport {
                task: with.as_ref().map(|w| w.to_string()),
                files: files.clone(),
            }),
            Integration::VerifyFailed { .. }
            | Integration::Failed { .. }
            | Integration::Verified { .. } => {}
        }
    }
    // How each task's lost races were reworked: resolve rounds, or runs again from the tip.
    for (i, slot) in integrations.iter_mut().enumerate() {
        let Some(it) = slot else { continue };
        let mut after_conflict = false;
        for r in &runs[i] {
            let ws = r.workspace.as_deref();
            if ws.is_some_and(|w| w.resolve_round()) {
                it.resolve_rounds += 1;
                if let Some(c) = r.agent.as_ref().and_then(|a| a.cost_usd) {
                    *it.resolve_cost_usd.get_or_insert(0.0) += c;
                }
            } else if after_conflict {
                it.reruns += 1;
            }
            after_conflict = conflicted.contains_key(&(i, r.attempt.0))
                || ws.is_some_and(|w| !w.unresolved.is_empty());
        }
    }
    let mut hot: HashMap<&str, usize> = HashMap::new();
    for it in integrations.iter().flatten() {
        for c in &it.conflicts {
            for f in &c.files {
                *hot.entry(f.as_str()).or_default() += 1;
            }
        }
    }
    let mut hot_files: Vec<HotFile> = hot
        .into_iter()
        .map(|(file, conflicts)| HotFile {
            file: file.to_string(),
            conflicts,
        })
        .collect();
    hot_files.sort_by(|a, b| b.conflicts.cmp(&a.conflicts).then(a.file.cmp(&b.file)));
    hot_files.truncate(10);

    // Stage records: the results' (agent and command stages) and the engine's (approvals).
    let mut stages: Vec<Vec<StageReport>> = vec![Vec::new(); n];
    let stage_report = |attempt: u32, record: &StageRecord| StageReport {
        attempt,
        session: record.agent.as_ref().and_then(|a| a.session_id.clone()),
        cost_usd: record.agent.as_ref().and_then(|a| a.cost_usd),
        record: record.clone(),
    };
    for r in &data.attempts {
        if let Some(v) = stages.get_mut(r.index.get()) {
            v.extend(r.stages.iter().map(|s| stage_report(r.attempt.0, s)));
        }
    }
    for h in &data.history {
        if let HistoryChange::Stage {
            index,
            attempt,
            record,
        } = &h.change
            && let Some(v) = stages.get_mut(index.get())
        {
            v.push(stage_report(attempt.0, record));
        }
    }
    for v in &mut stages {
        v.sort_by_key(|s| (s.attempt, s.record.started_at_ms));
    }

    let mut on_path = vec![false; n];
    for &i in &chain {
        on_path[i] = true;
    }
    let tasks: Vec<TaskReport> = spec
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let saved = data.tasks.get(i);
            let state = saved.map_or(TaskPhase::Pending, |s| s.state.state);
            let last = runs[i].last().copied();
            let mark = Mark::of(state);
            let verify = t.verify_command.as_ref().map(|c| {
                let exit_code = last.and_then(|r| r.verify_exit_code);
                VerifyReport {
                    command: c.clone(),
                    success_code: t.verify_success_code,
                    exit_code,
                    result: match exit_code {
                        Some(code) if code == t.verify_success_code => VerifyResult::Passed,
                        Some(_) => VerifyResult::Failed,
                        None => VerifyResult::NotRun,
                    },
                }
            });
            let ended = match state {
                TaskPhase::Succeeded | TaskPhase::Failed | TaskPhase::TimedOut => {
                    last_end(i).or(saved.and_then(|s| s.state.at))
                }
                _ => last_end(i).or(settled[i]),
            };
            TaskReport {
                index: TaskIndex::from(i),
                name: t.name.to_string(),
                title: t.title(),
                state,
                mark,
                reason: saved.and_then(|s| s.state.reason.clone()),
                run: run_text(t),
                verify,
                depends_on: t.depends_on.iter().map(|d| d.to_string()).collect(),
                // A conflict is not an attempt spent.
                attempts: saved.map_or(0, |s| s.attempts),
                worker: last.map(|r| r.worker.clone()),
                exit_code: last.and_then(|r| r.exit_code),
                signal: last.and_then(|r| r.signal),
                duration_ms: last.map(|r| r.duration_ms),
                started_ms: first_start(i),
                ended_ms: ended,
                queue_wait_ms: waits[i].iter().map(|(a, b)| b - a).sum(),
                lock_wait_ms: lock_wait[i],
                integration_wait_ms: integration_wait[i],
                speculation: speculation[i].any().then(|| speculation[i].clone()),
                critical: on_path[i],
                output_tail: last.map(|r| r.output_tail.clone()).unwrap_or_default(),
                output_bytes: last.map_or(0, |r| r.output_bytes),
                runs: runs[i]
                    .iter()
                    .map(|r| AttemptReport {
                        attempt: r.attempt.0,
                        run: run_of(r),
                        outcome: match conflicted.get(&(i, r.attempt.0)) {
                            Some(_) => RunOutcome::Conflict,
                            None if r
                                .workspace
                                .as_ref()
                                .is_some_and(|w| !w.unresolved.is_empty()) =>
                            {
                                RunOutcome::Unresolved
                            }
                            None => RunOutcome::Ended(r.outcome),
                        },
                        conflict: conflicted.get(&(i, r.attempt.0)).cloned(),
                        resolve: r.workspace.as_ref().is_some_and(|w| w.resolve_round()),
                        worker: r.worker.clone(),
                        delivery: r.delivery,
                        started_ms: r.started_at_ms,
                        duration_ms: r.duration_ms,
                        exit_code: r.exit_code,
                        signal: r.signal,
                        verify_exit_code: r.verify_exit_code,
                        message: r.message.clone(),
                        agent: r.agent.as_deref().map(AgentReport::of),
                        stages: r.stages.clone(),
                        rounds: r.rounds,
                    })
                    .collect(),
                // Its runs' and, once charged, its stale or duplicate executions' (as the
                // budget and the job's total count them).
                cost_usd: runs[i]
                    .iter()
                    .filter_map(|r| r.spend().0)
                    .chain(
                        data.ignored_results
                            .iter()
                            .filter(|r| r.index.get() == i)
                            .filter_map(|r| r.cost_usd),
                    )
                    .reduce(|a, b| a + b),
                tokens: Tokens::of(runs[i].iter().filter_map(|r| r.agent.as_deref())),
                models: {
                    let mut m: Vec<String> = runs[i]
                        .iter()
                        .filter_map(|r| r.agent.as_ref()?.model.clone())
                        .collect();
                    m.sort();
                    m.dedup();
                    m
                },
                ignored: data
                    .ignored_results
                    .iter()
                    .filter(|r| r.index.get() == i)
                    .cloned()
                    .collect(),
                integration: integrations[i].clone().map(|mut it| {
                    // A task that failed keeps the worktree of its last attempt.
                    if mark == Mark::Fail {
                        it.worktree = last
                            .and_then(|r| r.workspace.as_ref())
                            .map(|w| w.worktree.clone());
                    }
                    it
                }),
                stages: std::mem::take(&mut stages[i]),
            }
        })
        .collect();

    let start_ms = run_start;
    let makespan_ms = end_ms.saturating_sub(start_ms);
    let task_time_ms: u64 = data
        .attempts
        .iter()
        .filter(|r| r.started_at_ms >= run_start)
        .map(|r| r.duration_ms)
        .sum();
    let speedup = (makespan_ms > 0).then(|| task_time_ms as f64 / makespan_ms as f64);
    let limit = match mode {
        "parallel" => data.job.max_parallel.or(spec.settings.max_parallel_tasks),
        _ => Some(1),
    };
    let slots = data.job.slots.map(|s| match limit {
        Some(l) if l > 0 => s.min(l),
        _ => s,
    });
    let mut states: BTreeMap<TaskPhase, usize> = BTreeMap::new();
    for t in &tasks {
        *states.entry(t.state).or_default() += 1;
    }
    let attempts: u32 = tasks.iter().map(|t| t.attempts).sum();
    let retries: u32 = tasks.iter().map(|t| t.attempts.saturating_sub(1)).sum();

    let mut notes = Vec::new();
    if !data.job.summary.state.is_terminal() {
        notes.push(format!(
            "The job is {}: times run to its last recorded change.",
            data.job.summary.state.name()
        ));
    }
    if job_runs.len() > 1 {
        notes.push(format!(
            "The job ran {} times (retried with ordo retry): the summary, critical path and \
             timeline are of its last run; earlier runs are listed under Runs.",
            job_runs.len()
        ));
    }
    if slots.is_none() {
        notes.push(
            "The job's slots were not recorded, so parallel efficiency is unknown.".to_string(),
        );
    }
    if let Some(cut) = data.tails_cut_to {
        notes.push(format!(
            "Output tails were cut to their last {cut} bytes to fit one reply from the \
             coordinator."
        ));
    }
    if !data.ignored_results.is_empty() {
        notes.push(format!(
            "{} result(s) changed nothing (stale or duplicate deliveries).",
            data.ignored_results.len()
        ));
    }

    Report {
        job: JobInfo {
            id: data.job.summary.id.to_string(),
            name: data.job.summary.name.clone(),
            description: spec.description.clone(),
            source: data.job.source.clone(),
            mode: mode.to_string(),
        },
        summary: Summary {
            submitted_ms: data.job.summary.created_ms,
            runs: job_runs,
            outcome: data.job.summary.state,
            reason: data.job.summary.reason.clone(),
            finished: data.job.summary.state.is_terminal(),
            start_ms,
            end_ms,
            makespan_ms,
            task_time_ms,
            speedup,
            slots,
            parallel_efficiency: match (speedup, slots) {
                (Some(s), Some(n)) if n > 0 => Some(s / n as f64),
                _ => None,
            },
            tasks: n,
            states,
            attempts,
            retries,
            queue_wait_ms: tasks.iter().map(|t| t.queue_wait_ms).sum(),
            lock_wait_ms: tasks.iter().map(|t| t.lock_wait_ms).sum(),
            critical_path_ms: match (critical_path.first(), critical_path.last()) {
                (Some(a), Some(b)) => b.ended_ms.saturating_sub(a.started_ms),
                _ => 0,
            },
            ignored_results: data.ignored_results.len(),
            cost_usd: tasks.iter().filter_map(|t| t.cost_usd).reduce(|a, b| a + b),
            tokens: Tokens::of(data.attempts.iter().filter_map(|r| r.agent.as_deref())),
            models: by_model(&data.attempts),
            escalation: Escalation::of(spec, &data.attempts),
            integration: spec.uses_worktrees().then(|| {
                let tried = data
                    .history
                    .iter()
                    .filter(|h| matches!(h.change, HistoryChange::Integrated { .. }))
                    .count();
                let done = tasks
                    .iter()
                    .filter(|t| {
                        t.integration
                            .as_ref()
                            .is_some_and(|it| matches!(it.outcome.as_str(), "merged" | "unchanged"))
                    })
                    .count();
                let conflicts = integrations
                    .iter()
                    .flatten()
                    .map(|it| it.conflicts.len())
                    .sum();
                let failed = data.attempts.iter().any(|a| !a.outcome.is_success())
                    || tasks.iter().any(|t| {
                        t.integration
                            .as_ref()
                            .is_some_and(|it| it.worktree.is_some())
                    });
                let resolve_rounds = integrations
                    .iter()
                    .flatten()
                    .map(|it| it.resolve_rounds)
                    .sum();
                let resolve_cost_usd = integrations
                    .iter()
                    .flatten()
                    .filter_map(|it| it.resolve_cost_usd)
                    .reduce(|a, b| a + b);
                JobIntegration {
                    batches: (spec.integration_batch() > 1).then(|| batches.clone()),
                    speculation: (spec.speculation().is_some() || speculated.any())
                        .then(|| speculated.clone()),
                    wait_ms: integration_wait.iter().sum(),
                    max_wait_ms: integration_wait.iter().copied().max().unwrap_or(0),
                    kept: failed.then(|| kept_text(&data.job.summary.id)),
                    resolve_rounds,
                    resolve_cost_usd,
                    hot_files: hot_files.clone(),
                    branch: spec.settings.target_branch.clone().unwrap_or_else(|| {
                        ordo_proto::names::integration_branch(&spec.name, &data.job.summary.id)
                    }),
                    integrations: done,
                    conflicts,
                    conflict_rate: if tried == 0 {
                        0.0
                    } else {
                        conflicts as f64 / tried as f64
                    },
                }
            }),
        },
        tasks,
        critical_path,
        notes,
    }
}

// ---------------------------------------------------------------------------------------------
// Text helpers shared by the renderers

/// How a worktree job's lost races were reworked, and its hot files, in one sentence (none
/// when nothing conflicted).
pub fn rework_text(ji: &JobIntegration) -> Option<String> {
    if ji.hot_files.is_empty() && ji.resolve_rounds == 0 {
        return None;
    }
    let mut text = format!("Resolve rounds: {}", ji.resolve_rounds);
    if let Some(c) = ji.resolve_cost_usd {
        text.push_str(&format!(" (${c:.2})"));
    }
    text.push('.');
    if !ji.hot_files.is_empty() {
        let files: Vec<String> = ji
            .hot_files
            .iter()
            .map(|h| format!("{} ({})", h.file, h.conflicts))
            .collect();
        text.push_str(&format!(" Hot files: {}.", files.join(", ")));
    }
    Some(text)
}

/// The integration queue's figures in sentences: its batches when the job had them on, its
/// speculative runs when it had speculation on, and the time tasks waited to integrate.
pub fn queue_lines(ji: &JobIntegration) -> Vec<String> {
    let mut lines: Vec<String> = ji.batches.iter().map(batch_line).collect();
    lines.extend(ji.speculation.as_ref().map(speculation_line));
    if ji.wait_ms > 0 {
        lines.push(format!(
            "Waiting to integrate: {} in all, at most {} for one task.",
            fmt_ms(ji.wait_ms),
            fmt_ms(ji.max_wait_ms)
        ));
    }
    lines
}

/// Speculative runs kept and discarded, and what the discarded ones cost, in a sentence (the
/// report and `ordo status`).
pub fn speculation_line(s: &SpeculationSummary) -> String {
    format!("Speculative runs: {}.", speculation_text(s))
}

/// `1 kept, 2 discarded ($0.2500)`: a job's or a task's speculative runs.
pub fn speculation_text(s: &SpeculationSummary) -> String {
    let cost = s
        .discarded_cost_usd
        .map_or(String::new(), |c| format!(" ({})", fmt_usd(c)));
    format!("{} kept, {} discarded{cost}", s.kept, s.discarded)
}

/// Batches, their sizes, bisections and integration verifies run and saved, in a sentence
/// (the report and `ordo status`).
pub fn batch_line(b: &BatchSummary) -> String {
    let sizes: Vec<String> = b.sizes.iter().map(usize::to_string).collect();
    format!(
        "Batches: {} (sizes {}), {} bisection(s); integration verifies run {}, saved {}.",
        b.batches,
        if sizes.is_empty() {
            "-".to_string()
        } else {
            sizes.join(", ")
        },
        b.bisections,
        b.verifies_run,
        b.verifies_saved
    ) + &match b.voided {
        0 => String::new(),
        n => format!(" {n} verified on top of a half that failed (void)."),
    }
}

/// What the failed attempts of worktree job `job` keep, and the command that removes it.
pub fn kept_text(job: &ordo_proto::JobId) -> String {
    format!(
        "failed attempts keep their worktrees and task branches (ordo/{}/...) for inspection; \
         `ordo prune --job {job}` removes them",
        ordo_proto::names::job_tag(job)
    )
}

/// A duration for people: `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// `1,250 (1,000 in, 250 out)`.
/// A model's successes for people: `3/4 (75%)`.
pub fn fmt_success(m: &ModelSpend) -> String {
    format!(
        "{}/{} ({:.0}%)",
        m.succeeded,
        m.runs,
        m.success_rate * 100.0
    )
}

/// What escalation cost, for people: `2 attempts after the first, $0.5000, 2,500 tokens`.
pub fn fmt_escalation(e: &Escalation) -> String {
    let cost = e.cost_usd.map_or("no cost reported".into(), fmt_usd);
    format!(
        "{} attempt{} after the first on a ladder, {cost}, {} tokens",
        e.runs,
        if e.runs == 1 { "" } else { "s" },
        thousands(e.tokens)
    )
}

pub fn fmt_tokens(t: Tokens) -> String {
    format!(
        "{} ({} in, {} out)",
        thousands(t.total),
        thousands(t.input),
        thousands(t.output)
    )
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds since the Unix epoch as `2025-01-02 03:04:05.678 UTC`.
pub fn fmt_time(ms: u64) -> String {
    let (date, time) = utc(ms);
    format!("{date} {time} UTC")
}

/// `(YYYY-MM-DD, HH:MM:SS.mmm)` in UTC.
pub fn utc(ms: u64) -> (String, String) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            ms % 1000
        ),
    )
}

/// Percent with one decimal, or `-`.
pub fn fmt_pct(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// Task output made printable: ANSI escape sequences removed, carriage-return overwrites
/// resolved to what a terminal would last show, other control characters dropped.
pub fn clean_output(s: &str) -> String {
    let mut no_ansi = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            no_ansi.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: ESC [ parameters... final byte in @..~
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: ESC ] ... BEL or ESC \
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    let lines: Vec<String> = no_ansi
        .split('\n')
        .map(|line| {
            let shown = line.split('\r').rfind(|seg| !seg.is_empty()).unwrap_or("");
            shown
                .chars()
                .filter(|&c| c == '\t' || !c.is_control())
                .collect()
        })
        .collect();
    lines.join("\n")
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(fmt_time(951_782_400_123), "2000-02-29 00:00:00.123 UTC");
        assert_eq!(fmt_time(1_735_689_599_999), "2024-12-31 23:59:59.999 UTC");
    }

    #[test]
    fn union_of_intervals() {
        assert_eq!(covered(vec![(0, 10), (5, 15), (20, 30)], 2, 25), 13 + 5);
        assert_eq!(covered(vec![], 0, 10), 0);
        assert_eq!(covered(vec![(0, 3)], 5, 10), 0);
    }

    #[test]
    fn output_is_cleaned() {
        assert_eq!(
            clean_output("\u{1b}[31mred\u{1b}[0m\r\n10%\r50%\r100%\nbell\u{7}\u{1}"),
            "red\n100%\nbell"
        );
        assert_eq!(clean_output("\u{1b}]0;title\u{7}x"), "x");
    }

    #[test]
    fn formats_from_extensions() {
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("r.md"), Some(Format::Md));
        assert_eq!(f("r.JSON"), Some(Format::Json));
        assert_eq!(f("r.xml"), Some(Format::Junit));
        assert_eq!(f("r.html"), Some(Format::Html));
        assert_eq!(f("r.txt"), None);
        assert_eq!(
            Format::pick(Some(Format::Json), Some(Path::new("r.html"))),
            Format::Json
        );
        assert_eq!(Format::pick(None, None), Format::Md);
    }

    /// A job's records, built by hand as a coordinator's reply would carry them: `a` waited
    /// 50 ms and succeeded (and a duplicate of its result was ignored), `b` failed, `c` was
    /// ready until the job ended and was cancelled.
    fn records() -> ReportData {
        use ordo_proto::api::{HistoryEntry, JobSummary, ReportJob, ReportTask, StateAt};
        use ordo_proto::{
            AgentRun, Attempt, Deps, Dispatch, Ignore, JobId, JobSpec, Program, TaskName,
        };
        let id = JobId::new();
        let after_a = || Deps::declared(vec![TaskName::new("a").unwrap()]);
        let spec = JobSpec {
            name: "j".into(),
            tasks: vec![
                TaskSpec::shell("a", "true"),
                TaskSpec {
                    depends_on: after_a(),
                    ..TaskSpec::shell("b", "false")
                },
                TaskSpec {
                    depends_on: after_a(),
                    ..TaskSpec::shell("c", "true")
                },
            ],
            ..Default::default()
        };
        let result = |i: usize, outcome: Outcome, started: u64, took: u64| {
            let t = &spec.tasks[i];
            let d = Dispatch::new(
                id,
                t.name.clone(),
                TaskIndex::from(i),
                Attempt(1),
                Program::Shell(t.command.clone().unwrap()),
            );
            TaskResult {
                duration_ms: took,
                exit_code: Some(i32::from(!outcome.is_success())),
                ..TaskResult::new(&d, "w1".into(), outcome, started, "")
            }
        };
        let state = |state: TaskPhase, at: Option<u64>, reason: Option<&str>| StateAt {
            state,
            at,
            reason: reason.map(String::from),
        };
        let task = |i: u32, s: StateAt| HistoryEntry {
            // Recorded by a later commit: the state's own time is what counts.
            at: s.at.unwrap_or(0) + 5,
            change: HistoryChange::Task {
                index: TaskIndex(i),
                state: s,
            },
        };
        let job = |state: JobState, at: u64| HistoryEntry {
            at,
            change: HistoryChange::Job {
                state,
                at,
                reason: None,
            },
        };
        let mut a = result(0, Outcome::Succeeded, 150, 250);
        a.agent = Some(Box::new(AgentRun {
            cost_usd: Some(1.0),
            ..Default::default()
        }));
        ReportData {
            job: ReportJob {
                summary: JobSummary {
                    id,
                    name: "j".into(),
                    state: JobState::Failed,
                    created_ms: 100,
                    finished_ms: Some(600),
                    reason: Some("b failed".into()),
                    total: 3,
                    succeeded: 1,
                    failed: 1,
                    running: 0,
                    cost_usd: Some(1.5),
                    run_started_ms: None,
                    retries: 0,
                    notify: None,
                },
                source: "j.toml".into(),
                spec: spec.clone(),
                updated_ms: 600,
                default_mode: None,
                max_parallel: None,
                slots: Some(2),
            },
            tasks: vec![
                ReportTask {
                    state: state(TaskPhase::Succeeded, Some(400), None),
                    attempts: 1,
                    conflicts: 0,
                },
                ReportTask {
                    state: state(TaskPhase::Failed, Some(500), Some("exit code 1")),
                    attempts: 1,
                    conflicts: 0,
                },
                ReportTask {
                    state: state(TaskPhase::Cancelled, Some(600), Some("job failed")),
                    attempts: 0,
                    conflicts: 0,
                },
            ],
            attempts: vec![a, result(1, Outcome::Failed, 400, 100)],
            history: vec![
                job(JobState::Running, 100),
                task(0, state(TaskPhase::Ready, Some(100), None)),
                task(0, state(TaskPhase::Dispatched, Some(150), None)),
                task(1, state(TaskPhase::Ready, Some(400), None)),
                task(2, state(TaskPhase::Ready, Some(400), None)),
                task(1, state(TaskPhase::Dispatched, Some(400), None)),
                task(
                    2,
                    state(TaskPhase::Cancelled, Some(600), Some("job failed")),
                ),
                job(JobState::Failed, 600),
            ],
            ignored_results: vec![IgnoredResult {
                index: TaskIndex(0),
                attempt: 1,
                delivery: 2,
                worker: "w2".into(),
                kind: Ignore::Duplicate,
                why: "already applied".into(),
                cost_usd: Some(0.5),
            }],
            tails_cut_to: None,
        }
    }

    #[test]
    fn the_model_is_built_from_the_records_alone() {
        let r = build(&records());
        let s = &r.summary;
        assert_eq!(
            (s.outcome, s.start_ms, s.end_ms),
            (JobState::Failed, 100, 600)
        );
        assert_eq!((s.makespan_ms, s.task_time_ms), (500, 350));
        // A wait cut short by a cancel is not a queue wait.
        assert_eq!(s.queue_wait_ms, 50);
        assert_eq!((s.attempts, s.slots, s.ignored_results), (2, Some(2), 1));
        assert_eq!(s.runs.len(), 1);
        assert_eq!(s.runs[0].outcome, Some(JobState::Failed));
        let marks: Vec<Mark> = r.tasks.iter().map(|t| t.mark).collect();
        assert_eq!(marks, [Mark::Pass, Mark::Fail, Mark::Cancelled]);
        assert_eq!(r.tasks[1].reason.as_deref(), Some("exit code 1"));
        // The cancelled task never ran: it ended when it was cancelled.
        assert_eq!(r.tasks[2].ended_ms, Some(600));
        assert_eq!(r.tasks[2].started_ms, None);
        // What the ignored duplicate spent counts in its task's cost.
        assert_eq!(r.tasks[0].cost_usd, Some(1.5));
        let path: Vec<&str> = r.critical_path.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(path, ["a", "b"]);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("1 result(s) changed nothing"))
        );
        // The JSON report names an ignored result's kind as before.
        let json: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        assert_eq!(json["tasks"][0]["ignored"][0]["kind"], "duplicate");
        assert_eq!(json["tasks"][0]["ignored"][0]["delivery"], 2);
    }

    #[test]
    fn stages_show_in_every_format() {
        use ordo_proto::api::HistoryEntry;
        use ordo_proto::gates::{Finding, StageKind};
        use ordo_proto::{AgentRun, Attempt};
        let mut data = records();
        let review = |round: u32, verdict: Verdict, cost: f64| StageRecord {
            name: "review".into(),
            kind: Some(StageKind::Agent),
            round,
            verdict: Some(verdict),
            started_at_ms: 200 + u64::from(round) * 10,
            duration_ms: 1200,
            agent: Some(AgentRun {
                session_id: Some(format!("rev-{round}")),
                cost_usd: Some(cost),
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = &mut data.attempts[0];
        a.rounds = 1;
        a.stages = vec![
            StageRecord {
                findings: vec![Finding {
                    file: Some("src/a.rs".into()),
                    line: Some(3),
                    severity: Some("high".into()),
                    message: "no test for the empty case".into(),
                }],
                ..review(1, Verdict::Changes, 0.25)
            },
            review(2, Verdict::Pass, 0.25),
            StageRecord {
                name: "lint".into(),
                kind: Some(StageKind::Command),
                round: 2,
                verdict: Some(Verdict::Pass),
                started_at_ms: 240,
                ..Default::default()
            },
        ];
        data.history.push(HistoryEntry {
            at: 390,
            change: HistoryChange::Stage {
                index: TaskIndex(0),
                attempt: Attempt(1),
                record: StageRecord {
                    name: "sign-off".into(),
                    kind: Some(StageKind::Approval),
                    round: 2,
                    verdict: Some(Verdict::Pass),
                    started_at_ms: 390,
                    by: Some("alice".into()),
                    comment: Some("ship it".into()),
                    commit: Some("1a2b3c4d5e6f".into()),
                    ..Default::default()
                },
            },
        });
        let r = build(&data);
        let t = &r.tasks[0];
        assert_eq!(t.stages.len(), 4);
        assert!(r.tasks[1].stages.is_empty());
        // The reviewers' cost counts in the task's (its own run's $1, the duplicate's $0.5).
        assert_eq!(t.cost_usd, Some(2.0));
        let line = stages_line(t.last_stages());
        assert_eq!(line, "review ✓ (2 rounds) · lint ✓ · sign-off ✓ alice");

        let json: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        let st = &json["tasks"][0]["stages"];
        assert_eq!(st[0]["name"], "review");
        assert_eq!(st[0]["kind"], "agent");
        assert_eq!(st[0]["round"], 1);
        assert_eq!(st[0]["verdict"], "changes");
        assert_eq!(st[0]["findings"][0]["file"], "src/a.rs");
        assert_eq!(st[0]["duration_ms"], 1200);
        assert_eq!(st[0]["cost_usd"], 0.25);
        assert_eq!(st[0]["session"], "rev-1");
        assert_eq!(st[3]["by"], "alice");
        assert_eq!(st[3]["comment"], "ship it");
        assert_eq!(st[3]["commit"], "1a2b3c4d5e6f");
        assert!(json["tasks"][1].get("stages").is_none());

        let md = render(&r, Format::Md);
        assert!(md.contains("| stages |"), "{md}");
        assert!(md.contains(&line), "{md}");
        assert!(md.contains("## Stages"), "{md}");
        assert!(
            md.contains("  - src/a.rs:3: \\[high\\] no test for the empty case"),
            "{md}"
        );
        assert!(md.contains("sign-off, round 2: ✓ pass by alice at 1a2b3c4d5e: ship it"));

        let html = render(&r, Format::Html);
        assert!(html.contains("<th>stages</th>"));
        assert!(html.contains(&line));
        assert!(html.contains("src/a.rs:3: [high] no test for the empty case"));

        let junit = render(&r, Format::Junit);
        assert!(junit.contains(r#"<property name="stage.review" value="pass"/>"#));
        assert!(junit.contains(r#"<property name="stage.review.rounds" value="2"/>"#));
        assert!(junit.contains(r#"<property name="stage.lint" value="pass"/>"#));
        assert!(junit.contains(r#"<property name="stage.sign-off.by" value="alice"/>"#));

        // A job without stages has no stages column.
        let plain = render(&build(&records()), Format::Md);
        assert!(!plain.contains("stages"));
    }

    #[test]
    fn every_format_shows_spend_and_success_per_model_and_what_escalation_cost() {
        use ordo_proto::{AgentRun, Attempt};
        let mut data = records();
        data.job.spec.tasks[1].escalate = Some(vec!["sonnet".into(), "opus".into()]);
        let run = |model: &str, cost: f64| {
            Some(Box::new(AgentRun {
                model: Some(model.into()),
                cost_usd: Some(cost),
                input_tokens: 1000,
                output_tokens: 250,
                ..Default::default()
            }))
        };
        data.attempts[0].agent = run("haiku", 1.0);
        data.attempts[1].agent = run("sonnet", 0.25);
        let mut second = data.attempts[1].clone();
        second.attempt = Attempt(2);
        second.outcome = Outcome::Succeeded;
        second.agent = run("opus", 0.5);
        data.attempts.push(second);
        let mut third = data.attempts[2].clone();
        third.attempt = Attempt(3);
        third.outcome = Outcome::VerifyFailed;
        data.attempts.push(third);
        let r = build(&data);
        let models: Vec<(&str, u32, u32, Option<f64>)> = r
            .summary
            .models
            .iter()
            .map(|m| (m.model.as_str(), m.runs, m.succeeded, m.cost_usd))
            .collect();
        assert_eq!(
            models,
            [
                ("opus", 2, 1, Some(1.0)),
                ("haiku", 1, 1, Some(1.0)),
                ("sonnet", 1, 0, Some(0.25))
            ]
        );
        let e = r.summary.escalation.unwrap();
        assert_eq!((e.runs, e.cost_usd, e.tokens), (2, Some(1.0), 2500));

        let json: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        let opus = &json["summary"]["models"][0];
        assert_eq!(opus["model"], "opus");
        assert_eq!(opus["success_rate"], 0.5);
        assert_eq!(opus["tokens"]["total"], 2500);
        assert_eq!(json["summary"]["escalation"]["cost_usd"], 1.0);
        let md = render(&r, Format::Md);
        assert!(
            md.contains("| opus | 2 | 1/2 (50%) | $1.00 | 2,500 (2,000 in, 500 out) |"),
            "{md}"
        );
        assert!(
            md.contains("Escalation: 2 attempts after the first on a ladder, $1.00, 2,500 tokens"),
            "{md}"
        );
        let html = render(&r, Format::Html);
        assert!(html.contains("<td class=\"num\">0/1 (0%)</td>"), "{html}");
        assert!(html.contains("Escalation: 2 attempts"), "{html}");
        let junit = render(&r, Format::Junit);
        assert!(junit.contains("model.opus.success_rate"), "{junit}");
        assert!(junit.contains("escalation.cost_usd"), "{junit}");
        // Without a ladder, nothing is said of escalation.
        assert!(build(&records()).summary.escalation.is_none());
    }

    /// A worktree job with batches and speculation: the integration queue's figures in all and
    /// per task (batches, speculative runs kept and discarded with what the discarded ones
    /// cost, the time tasks spent integrating, until the records end for one still there), in
    /// JSON, Markdown and HTML; a job in no worktree has none of them.
    #[test]
    fn the_integration_queue_shows_in_every_format() {
        use ordo_proto::api::{HistoryEntry, StateAt};
        use ordo_proto::{Attempt, IntegrationSettings, WorkspaceMode};
        let mut data = records();
        data.job.spec.settings.workspace = Some(WorkspaceMode::Worktree);
        data.job.spec.settings.integration = Some(IntegrationSettings {
            batch: Some(2),
            speculate: Some("verified".into()),
            ..IntegrationSettings::default()
        });
        let entry = |at: u64, change: HistoryChange| HistoryEntry { at, change };
        let task = |i: u32, state: TaskPhase, at: u64| {
            let state = StateAt {
                state,
                at: Some(at),
                reason: None,
            };
            entry(
                at,
                HistoryChange::Task {
                    index: TaskIndex(i),
                    state,
                },
            )
        };
        let speculation = |i: u32, kept: bool, cost_usd: Option<f64>| {
            entry(
                500,
                HistoryChange::Speculation {
                    index: TaskIndex(i),
                    attempt: Attempt(1),
                    on: vec![TaskIndex(0)],
                    kept,
                    cost_usd,
                },
            )
        };
        let integrated = |i: u32, outcome: Integration| {
            entry(
                450,
                HistoryChange::Integrated {
                    index: TaskIndex(i),
                    attempt: Attempt(1),
                    branch: format!("ordo/t{i}"),
                    outcome,
                    with: None,
                },
            )
        };
        // a: integrating 300..450; c: 500 until it was cancelled at 600; b: from 550 to the end
        // of the records (the job's end, 600).
        let cancel = data.history.len() - 2;
        data.history
            .insert(cancel, task(2, TaskPhase::Integrating, 500));
        data.history.extend([
            task(0, TaskPhase::Integrating, 300),
            task(0, TaskPhase::Integrating, 320),
            task(0, TaskPhase::Succeeded, 450),
            entry(
                450,
                HistoryChange::Batch {
                    tasks: vec![TaskIndex(0), TaskIndex(2)],
                    verified: true,
                    bisected: false,
                    voided: false,
                },
            ),
            integrated(
                0,
                Integration::Merged {
                    commit: "0123456789abcdef".into(),
                    files: vec!["a.rs".into()],
                },
            ),
            integrated(
                1,
                Integration::Conflict {
                    files: vec!["b.rs".into()],
                },
            ),
            speculation(1, false, Some(0.25)),
            speculation(1, false, None),
            speculation(2, true, Some(3.0)),
            task(1, TaskPhase::Integrating, 550),
        ]);
        let r = build(&data);
        let ji = r.summary.integration.as_ref().unwrap();
        assert_eq!(
            ji.speculation,
            Some(SpeculationSummary {
                kept: 1,
                discarded: 2,
                discarded_cost_usd: Some(0.25),
            })
        );
        assert_eq!(ji.batches.as_ref().unwrap().sizes, [2]);
        let waits: Vec<u64> = r.tasks.iter().map(|t| t.integration_wait_ms).collect();
        assert_eq!(waits, [150, 50, 100]);
        assert_eq!((ji.wait_ms, ji.max_wait_ms), (300, 150));
        assert_eq!(r.tasks[0].speculation, None);
        assert_eq!(r.tasks[2].speculation.as_ref().map(|s| s.kept), Some(1));

        let json: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        let spec_json = &json["summary"]["integration"]["speculation"];
        assert_eq!(spec_json["kept"], 1);
        assert_eq!(spec_json["discarded"], 2);
        assert_eq!(spec_json["discarded_cost_usd"], 0.25);
        assert_eq!(json["summary"]["integration"]["wait_ms"], 300);
        assert_eq!(json["summary"]["integration"]["max_wait_ms"], 150);
        assert_eq!(json["tasks"][1]["speculation"]["discarded"], 2);
        assert_eq!(json["tasks"][1]["integration_wait_ms"], 50);
        assert!(json["tasks"][0].get("speculation").is_none());

        let spoken = "Speculative runs: 1 kept, 2 discarded ($0.2500).";
        let waited = "Waiting to integrate: 300 ms in all, at most 150 ms for one task.";
        let md = render(&r, Format::Md);
        assert!(md.contains(spoken), "{md}");
        assert!(md.contains(waited), "{md}");
        assert!(md.contains("Batches: 1 (sizes 2)"), "{md}");
        assert!(
            md.contains(
                "| b | conflict; speculative runs: 0 kept, 2 discarded ($0.2500) | 50 ms |"
            ),
            "{md}"
        );
        let html = render(&r, Format::Html);
        assert!(
            html.contains("<div class=\"queue\"><h3>Integration queue</h3>"),
            "{html}"
        );
        assert!(html.contains(&format!("<p>{spoken}</p>")), "{html}");
        assert!(html.contains(&format!("<p>{waited}</p>")), "{html}");
        assert!(
            html.contains("(speculative runs: 0 kept, 2 discarded ($0.2500))"),
            "{html}"
        );

        // No worktrees: no queue, no waits, and the JSON as before.
        let plain = build(&records());
        assert!(plain.summary.integration.is_none());
        let json: serde_json::Value = serde_json::from_str(&render(&plain, Format::Json)).unwrap();
        assert!(json["tasks"][0].get("integration_wait_ms").is_none());
        assert!(!render(&plain, Format::Html).contains("class=\"queue\""));
    }

    #[test]
    fn records_survive_the_wire() {
        let data = records();
        let json = data.clone().to_json_within(1 << 20).unwrap();
        let back: ReportData = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
