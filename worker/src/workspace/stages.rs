//! Quality gates on the executor's side (docs/design.md, "Quality gates: stages"): once an
//! attempt's program and verify succeeded (in a worktree, once its work is committed), the
//! agent and command stages of its dispatch run where the task ran. A `changes` verdict resumes
//! the implementer's session with the findings (a round of the same attempt: verify and commit
//! again, then every stage again); a failed stage or a `fail` verdict fails the attempt.
//! Processes run through `exec::run`; agents' answers are read by `agent::read` there.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::SystemTime;

use ordo_proto::gates::{
    Finding, StageKind, StageProgram, StageRecord, StageRun, Verdict, fill_prompt, parse_verdict,
    revise_prompt,
};
use ordo_proto::{AgentRun, Dispatch, Outcome, Program, TaskResult, now_ms};

use super::git::git;
use crate::exec::{self, ExecOptions, OutputChunk};

/// Most bytes of the task's diff given to a stage's `{diff}`.
pub const MAX_DIFF: usize = 100 * 1024;
/// Bytes of an agent stage's answer kept to find its verdict in.
const ANSWER_TAIL: usize = 64 * 1024;
/// Bytes of a failed command stage's output quoted in its record.
const MESSAGE_TAIL: usize = 2000;

/// Commits the work of a round (a worktree attempt): `run_attempt` gives one, a plain
/// dispatch none.
pub(super) trait Commit {
    /// Commits what the task changed into `result.workspace`, or fails `result` saying why.
    fn commit(&self, result: &mut TaskResult) -> impl Future<Output = ()>;
}

/// Runs the stages of `d` (the dispatch as it ran: its working directory where the task ran)
/// over `result`, an attempt that succeeded, round after round: records every stage run in
/// `result.stages`, adds each round's implementer run to `result.agent`, counts
/// `result.rounds`, and fails `result` (naming the stage and why) when a stage fails, answers
/// `fail`, or asks for changes that cannot be made. Nothing to do for a dispatch without stages
/// or an attempt that did not succeed.
pub(super) async fn gate<C: Future<Output = ()>>(
    d: &Dispatch,
    dir: &Path,
    committer: Option<&impl Commit>,
    opts: &ExecOptions,
    mut cancel: Pin<&mut C>,
    output: Option<tokio::sync::mpsc::Sender<OutputChunk>>,
    result: &mut TaskResult,
) {
    if d.stages.is_empty() || !result.outcome.is_success() {
        return;
    }
    // Per stage, the `changes` verdicts sent back to the implementer so far.
    let mut sent: HashMap<String, u32> = HashMap::new();
    loop {
        let round = result.rounds + 1;
        let values = placeholders(d, dir, result).await;
        let mut asked = Vec::new();
        for batch in batches(&d.stages) {
            let runs = batch.iter().map(|s| run_stage(d, s, dir, round, &values, opts));
            let records = tokio::select! {
                records = futures::future::join_all(runs) => records,
                () = cancel.as_mut() => {
                    result.outcome = Outcome::Cancelled;
                    result.message = "cancelled".into();
                    return;
                }
            };
            result.stages.extend(records.iter().cloned());
            let failed: Vec<String> = records.iter().filter_map(failure).collect();
            if !failed.is_empty() {
                return fail(result, failed.join("; "));
            }
            asked = records
                .into_iter()
                .filter(|r| r.verdict == Some(Verdict::Changes))
                .collect();
            if !asked.is_empty() {
                break;
            }
        }
        if asked.is_empty() {
            finish(result);
            return;
        }
        let names: Vec<String> = asked.iter().map(|r| r.name.clone()).collect();
        for name in &names {
            let max = d
                .stages
                .iter()
                .find(|s| s.name == *name)
                .map_or(0, |s| s.max_rounds);
            let n = sent.entry(name.clone()).or_default();
            if *n >= max {
                return fail(
                    result,
                    format!("the {name} stage asked for changes after {n} rounds (max_rounds {max})"),
                );
            }
            *n += 1;
        }
        let session = result.agent.as_ref().and_then(|a| a.session_id.clone());
        let (Some(implementer), Some(session)) = (&d.implementer, session) else {
            return fail(
                result,
                format!(
                    "the {} stage asked for changes, but the task has no agent session to \
                     resume (only a prompt task's agent can make them)",
                    names.join(", ")
                ),
            );
        };
        let findings: Vec<Finding> = asked.into_iter().flat_map(|r| r.findings).collect();
        let prompt = revise_prompt(&names.join(", "), &findings, None);
        let revise = Dispatch {
            program: Program::Argv(implementer.argv(Some(&session), &prompt)),
            agent: Some(implementer.kind),
            model: implementer.model.clone(),
            stages: Vec::new(),
            implementer: None,
            ..d.clone()
        };
        let ran = exec::run(&revise, opts, cancel.as_mut(), output.clone()).await;
        result.rounds = round;
        absorb(result, ran);
        if !result.outcome.is_success() {
            result.message = format!(
                "round {} (the {} stage asked for changes): {}",
                round + 1,
                names.join(", "),
                result.message
            );
            finish(result);
            return;
        }
        if let Some(c) = committer {
            c.commit(result).await;
            if !result.outcome.is_success() {
                finish(result);
                return;
            }
        }
    }
}

/// Fails the attempt with `message` once its stages said so.
fn fail(result: &mut TaskResult, message: String) {
    result.outcome = Outcome::Failed;
    result.message = message;
    finish(result);
}

/// The attempt's duration covers its stages and rounds.
fn finish(result: &mut TaskResult) {
    result.duration_ms = now_ms().saturating_sub(result.started_at_ms);
}

/// Why a stage run fails the attempt, if it does: no verdict, or `fail`.
fn failure(r: &StageRecord) -> Option<String> {
    match r.verdict {
        None => Some(format!("the {} stage failed: {}", r.name, r.message)),
        Some(Verdict::Fail) if r.kind == Some(StageKind::Command) => {
            Some(format!("the {} stage failed: {}", r.name, r.message))
        }
        Some(Verdict::Fail) => {
            let mut why = format!("the {} stage answered fail", r.name);
            if let Some(f) = r.findings.first() {
                why.push_str(&format!(": {}", f.message));
                if r.findings.len() > 1 {
                    why.push_str(&format!(" (and {} more findings)", r.findings.len() - 1));
                }
            }
            Some(why)
        }
        Some(_) => None,
    }
}

/// The stages in the order they run: one batch per stage, except that the stages of one
/// `group` form one batch (run concurrently) where the group first appears.
pub(crate) fn batches(stages: &[StageRun]) -> Vec<Vec<&StageRun>> {
    let mut out: Vec<Vec<&StageRun>> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for s in stages {
        match s.group.as_deref() {
            Some(g) if at.contains_key(g) => out[at[g]].push(s),
            Some(g) => {
                at.insert(g, out.len());
                out.push(vec![s]);
            }
            None => out.push(vec![s]),
        }
    }
    out
}

/// A round of the implementer, folded into the attempt's result: its outcome, exit codes and
/// output replace the attempt's, its agent run adds to the attempt's (the last session kept).
fn absorb(result: &mut TaskResult, ran: TaskResult) {
    result.outcome = ran.outcome;
    result.message = ran.message;
    result.exit_code = ran.exit_code;
    result.signal = ran.signal;
    result.verify_exit_code = ran.verify_exit_code;
    result.verify_started_ms = ran.verify_started_ms;
    result.command_ms = result.command_ms.saturating_add(ran.command_ms);
    result.output_tail = ran.output_tail;
    result.output_bytes = result.output_bytes.saturating_add(ran.output_bytes);
    result.agent = match (result.agent.take(), ran.agent) {
        (Some(before), Some(now)) => Some(Box::new(add_runs(*before, *now))),
        (before, now) => now.or(before),
    };
}

/// Two runs of one agent as one: spend added up, the later session, model and rate limit.
fn add_runs(before: AgentRun, now: AgentRun) -> AgentRun {
    let cost_usd = match (before.cost_usd, now.cost_usd) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    let num_turns = match (before.num_turns, now.num_turns) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
    AgentRun {
        session_id: now.session_id.or(before.session_id),
        cost_usd,
        input_tokens: before.input_tokens.saturating_add(now.input_tokens),
        output_tokens: before.output_tokens.saturating_add(now.output_tokens),
        num_turns,
        model: now.model.or(before.model),
        rate_limited: now.rate_limited,
    }
}

/// The values of an agent stage's placeholders for the attempt as it stands.
async fn placeholders(d: &Dispatch, dir: &Path, result: &TaskResult) -> BTreeMap<&'static str, String> {
    let title = d
        .title
        .clone()
        .or_else(|| d.workspace.as_ref().and_then(|w| w.title.clone()))
        .unwrap_or_else(|| d.task.to_string());
    let verify_output = if d.verify.is_some() {
        result.output_tail.clone()
    } else {
        String::new()
    };
    BTreeMap::from([
        ("task", d.task.to_string()),
        ("title", title),
        ("prompt", d.prompt.clone().unwrap_or_default()),
        ("diff", diff(dir, result).await),
        ("verify_output", verify_output),
    ])
}

/// What the task changed, at most `MAX_DIFF` bytes: from its base to its committed head in a
/// worktree; elsewhere, in a git checkout, its uncommitted changes; else nothing.
async fn diff(dir: &Path, result: &TaskResult) -> String {
    let out = match result.workspace.as_deref() {
        Some(w) => git(dir).args(["diff", &w.base_commit, &w.head, "--"]).output().await,
        None => git(dir).args(["diff", "HEAD", "--"]).output().await,
    };
    let Some(out) = out.ok().filter(|o| o.ok()) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if text.len() <= MAX_DIFF {
        return text.into_owned();
    }
    let mut cut = MAX_DIFF;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n[diff cut here: {} more bytes]\n",
        &text[..cut],
        text.len() - cut
    )
}

/// Runs one stage in `dir` and records it.
async fn run_stage(
    d: &Dispatch,
    stage: &StageRun,
    dir: &Path,
    round: u32,
    values: &BTreeMap<&'static str, String>,
    opts: &ExecOptions,
) -> StageRecord {
    let started_at_ms = now_ms();
    let before = if stage.read_only {
        snapshot(dir).await
    } else {
        None
    };
    let (program, agent, model) = match &stage.run {
        StageProgram::Agent { call, prompt } => (
            Program::Argv(call.argv(None, &fill_prompt(prompt, values))),
            Some(call.kind),
            call.model.clone(),
        ),
        StageProgram::Command { command } => (Program::Shell(command.clone()), None, None),
    };
    let run = Dispatch {
        program,
        agent,
        model,
        verify: None,
        verify_delay: None,
        timeout: stage.timeout,
        workspace: None,
        stages: Vec::new(),
        implementer: None,
        working_dir: Some(dir.display().to_string()),
        ..d.clone()
    };
    let mut opts = opts.clone();
    opts.tail_bytes = opts.tail_bytes.max(ANSWER_TAIL);
    let ran = exec::run(&run, &opts, std::future::pending(), None).await;
    let mut record = StageRecord {
        name: stage.name.clone(),
        kind: Some(stage.kind()),
        round,
        started_at_ms,
        duration_ms: ran.duration_ms,
        agent: ran.agent.map(|a| *a),
        ..StageRecord::default()
    };
    match (stage.kind(), ran.outcome) {
        (StageKind::Agent, Outcome::Succeeded) => match parse_verdict(&ran.output_tail) {
            Ok((verdict, findings)) => {
                record.verdict = Some(verdict);
                record.findings = findings;
            }
            Err(why) => record.message = format!("no verdict: {why}"),
        },
        (_, Outcome::Succeeded) => record.verdict = Some(Verdict::Pass),
        (StageKind::Command, _) => {
            record.verdict = Some(Verdict::Fail);
            record.message = format!("{}: {}", ran.message, tail(&ran.output_tail));
        }
        _ => record.message = ran.message,
    }
    if let Some(before) = before {
        match snapshot(dir).await {
            Some(after) if after == before => {}
            after => {
                record.verdict = None;
                record.message = format!(
                    "read_only, but it changed {}{}",
                    changed(&before, after.as_ref()),
                    if record.message.is_empty() {
                        String::new()
                    } else {
                        format!(" (and: {})", record.message)
                    }
                );
            }
        }
    }
    record
}

/// The last `MESSAGE_TAIL` bytes of `text`, trimmed.
fn tail(text: &str) -> &str {
    let text = text.trim();
    let mut cut = text.len().saturating_sub(MESSAGE_TAIL);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

/// What a read-only check compares: the checkout's HEAD, `git status --porcelain -uall` and
/// the size and modification time of every file it lists (so a further edit of a file already
/// changed shows). `None` outside a git checkout: the check cannot be made there.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: String,
    status: Vec<(String, Option<(u64, Option<SystemTime>)>)>,
}

async fn snapshot(dir: &Path) -> Option<Snapshot> {
    let top = git(dir).args(["rev-parse", "--show-toplevel"]).output().await.ok()?;
    if !top.ok() {
        return None;
    }
    let top = std::path::PathBuf::from(top.text());
    let head = git(dir)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .output()
        .await
        .ok()?
        .text();
    let status = git(dir)
        .args(["status", "--porcelain", "-uall", "-z", "--no-renames"])
        .output()
        .await
        .ok()
        .filter(|o| o.ok())?;
    let status = super::git::nul_fields(&status.stdout)
        .map(|line| {
            let path = line.get(3..).unwrap_or_default().to_string();
            let meta = std::fs::symlink_metadata(top.join(&path))
                .ok()
                .map(|m| (m.len(), m.modified().ok()));
            (line, meta)
        })
        .collect();
    Some(Snapshot { head, status })
}

/// What changed between two snapshots, in words.
fn changed(before: &Snapshot, after: Option<&Snapshot>) -> String {
    let Some(after) = after else {
        return "its checkout (it is no longer a git checkout)".into();
    };
    let mut what = Vec::new();
    if after.head != before.head {
        what.push(format!("HEAD ({} to {})", short(&before.head), short(&after.head)));
    }
    let paths: Vec<&str> = after
        .status
        .iter()
        .chain(&before.status)
        .filter(|e| !before.status.contains(e) || !after.status.contains(e))
        .map(|(line, _)| line.get(3..).unwrap_or(line))
        .collect();
    let mut paths = paths;
    paths.sort_unstable();
    paths.dedup();
    if !paths.is_empty() {
        what.push(paths.join(", "));
    }
    what.join(" and ")
}

fn short(oid: &str) -> &str {
    if oid.is_empty() { "none" } else { &oid[..oid.len().min(10)] }
}
