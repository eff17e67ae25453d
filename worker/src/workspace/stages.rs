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
            let runs = batch
                .iter()
                .map(|s| run_stage(d, s, dir, round, &values, opts));
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
            // What stages that may write (a formatter) changed goes with the task's work.
            if let Some(c) = committer {
                c.commit(result).await;
            }
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
                    format!(
                        "the {name} stage asked for changes after {n} rounds (max_rounds {max})"
                    ),
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
        let implementer = implementer.for_round(round);
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
async fn placeholders(
    d: &Dispatch,
    dir: &Path,
    result: &TaskResult,
) -> BTreeMap<&'static str, String> {
    let brief = d.brief.as_deref().cloned().unwrap_or_default();
    let title = brief
        .title
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
        ("prompt", brief.prompt.unwrap_or_default()),
        ("diff", diff(dir, result).await),
        ("verify_output", verify_output),
    ])
}

/// What the task changed, at most `MAX_DIFF` bytes: from its base to its committed head in a
/// worktree; elsewhere, in a git checkout, its uncommitted changes; else nothing.
async fn diff(dir: &Path, result: &TaskResult) -> String {
    let out = match result.workspace.as_deref() {
        Some(w) => {
            git(dir)
                .args(["diff", &w.base_commit, &w.head, "--"])
                .output()
                .await
        }
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
    /// Each line of the status, with the size and modification time of its file (if any).
    status: Vec<(String, Option<FileStamp>)>,
}

type FileStamp = (u64, Option<SystemTime>);

async fn snapshot(dir: &Path) -> Option<Snapshot> {
    let top = git(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .await
        .ok()?;
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
        what.push(format!(
            "HEAD ({} to {})",
            short(&before.head),
            short(&after.head)
        ));
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
    if oid.is_empty() {
        "none"
    } else {
        &oid[..oid.len().min(10)]
    }
}

#[cfg(test)]
mod tests {
    use ordo_proto::gates::StageProgram;
    use ordo_proto::spec::{AgentCall, AgentKind};
    use ordo_proto::{Attempt, TaskIndex, TaskName};

    use super::*;
    use crate::workspace::testkit::*;
    use crate::workspace::{Local, run_attempt};

    fn stub(kind: AgentKind) -> AgentCall {
        let name = if kind == AgentKind::Codex {
            "codex"
        } else {
            "claude"
        };
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/stub-agent")
            .join(name);
        AgentCall {
            kind,
            base: vec![path.display().to_string()],
            model: None,
            effort: None,
            system: None,
            escalate: Vec::new(),
        }
    }

    fn agent(name: &str, kind: AgentKind, prompt: &str) -> StageRun {
        StageRun {
            name: name.into(),
            run: StageProgram::Agent {
                call: stub(kind),
                prompt: prompt.into(),
            },
            group: None,
            read_only: false,
            max_rounds: 2,
            timeout: None,
        }
    }

    fn command(name: &str, command: &str) -> StageRun {
        StageRun {
            name: name.into(),
            run: StageProgram::Command {
                command: command.into(),
            },
            ..agent(name, AgentKind::Claude, "")
        }
    }

    /// A plain dispatch of `program` in `dir` with `stages`.
    fn plain(fx: &Fx, dir: &Path, program: Program, stages: Vec<StageRun>) -> Dispatch {
        let mut d = Dispatch::new(
            fx.job,
            TaskName::new("t").unwrap(),
            TaskIndex(0),
            Attempt(1),
            program,
        );
        d.working_dir = Some(dir.display().to_string());
        d.env
            .insert("STUB_STATE".into(), fx.tmp.path().display().to_string());
        d.stages = stages;
        d
    }

    async fn attempt(fx: &Fx, d: &Dispatch) -> TaskResult {
        let local = Local::with_root(fx.root.clone());
        run_attempt(
            d,
            &ExecOptions::default(),
            std::future::pending(),
            None,
            &local,
        )
        .await
        .unwrap()
    }

    /// Proves verdicts are read, never assumed: a reviewer's JSON verdict (Claude's and
    /// Codex's formats) passes, a command stage passes on exit 0 only, an answer without a
    /// verdict and a `fail` verdict fail the attempt naming the stage, and the stages after
    /// a failed one do not run.
    #[tokio::test]
    async fn verdicts_decide_the_attempt() {
        let fx = Fx::new();
        let dir = fx.tmp.path();
        let pass = |name: &str, kind| agent(name, kind, "answer: {\"verdict\": \"pass\"}");
        let d = plain(
            &fx,
            dir,
            Program::Shell("true".into()),
            vec![
                pass("claude-review", AgentKind::Claude),
                pass("codex-review", AgentKind::Codex),
                command("lint", "echo linted"),
            ],
        );
        let r = attempt(&fx, &d).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{}", r.message);
        let seen: Vec<_> = r
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.verdict))
            .collect();
        assert_eq!(
            seen,
            [
                ("claude-review", Some(Verdict::Pass)),
                ("codex-review", Some(Verdict::Pass)),
                ("lint", Some(Verdict::Pass))
            ]
        );
        let claude = r.stages[0].agent.as_ref().unwrap();
        assert_eq!((claude.cost_usd, claude.tokens()), (Some(0.01), 1250));
        assert!(r.stages[1].agent.as_ref().unwrap().session_id.is_some());
        assert_eq!(r.spend(), (Some(0.01), 2500));

        let marker = dir.join("ran-after");
        for (stage, why) in [
            (
                agent("review", AgentKind::Claude, "answer: LGTM"),
                "the review stage failed: no verdict: the answer does not end with a JSON verdict",
            ),
            (
                agent(
                    "review",
                    AgentKind::Codex,
                    "answer: {\"verdict\": \"fail\", \"findings\": [{\"message\": \"broken\"}]}",
                ),
                "the review stage answered fail: broken",
            ),
            (
                command("lint", "echo 'bad style'; exit 3"),
                "the lint stage failed: exit code 3: bad style",
            ),
        ] {
            let after = command("after", &format!("touch {}", marker.display()));
            let d = plain(&fx, dir, Program::Shell("true".into()), vec![stage, after]);
            let r = attempt(&fx, &d).await;
            assert_eq!((r.outcome, r.message.as_str()), (Outcome::Failed, why));
            assert_eq!(r.stages.len(), 1);
            assert!(!marker.exists(), "a stage ran after a failed one");
        }
        // An attempt that failed goes through no stage.
        let d = plain(
            &fx,
            dir,
            Program::Shell("exit 1".into()),
            vec![command("lint", "true")],
        );
        let r = attempt(&fx, &d).await;
        assert!(r.outcome == Outcome::Failed && r.stages.is_empty());
    }

    /// Proves a `read_only` stage that changes files fails, naming them (a file created, a
    /// file already changed changed again), a stage that is not read-only may change them,
    /// and outside a git checkout the check is not made.
    #[tokio::test]
    async fn a_read_only_stage_that_changes_files_fails() {
        let fx = Fx::new();
        write(&fx.repo.join("same.txt"), "dirty\n");
        let read_only = |cmd: &str| StageRun {
            read_only: true,
            ..command("check", cmd)
        };
        for (cmd, changed) in [
            ("echo x > new.txt", "new.txt"),
            ("sleep 0.01; echo more >> same.txt", "same.txt"),
        ] {
            let d = plain(
                &fx,
                &fx.repo,
                Program::Shell("true".into()),
                vec![read_only(cmd)],
            );
            let r = attempt(&fx, &d).await;
            assert_eq!(r.outcome, Outcome::Failed);
            assert_eq!(
                r.message,
                format!("the check stage failed: read_only, but it changed {changed}")
            );
        }
        let d = plain(
            &fx,
            &fx.repo,
            Program::Shell("true".into()),
            vec![command("fmt", "echo y > other.txt")],
        );
        assert_eq!(attempt(&fx, &d).await.outcome, Outcome::Succeeded);
        let d = plain(
            &fx,
            &fx.repo,
            Program::Shell("true".into()),
            vec![read_only("git status --short")],
        );
        assert_eq!(attempt(&fx, &d).await.outcome, Outcome::Succeeded);

        let plain_dir = fx.tmp.path().join("not-git");
        std::fs::create_dir(&plain_dir).unwrap();
        let d = plain(
            &fx,
            &plain_dir,
            Program::Shell("true".into()),
            vec![read_only("echo x > f")],
        );
        assert_eq!(attempt(&fx, &d).await.outcome, Outcome::Succeeded);
    }

    /// Proves the stages of one group run at the same time (each waits for the other's mark,
    /// which run in order would time out), and a stage outside it after them.
    #[tokio::test]
    async fn the_stages_of_a_group_run_concurrently() {
        let fx = Fx::new();
        let dir = fx.tmp.path();
        let waits_for = |me: &str, other: &str| StageRun {
            group: Some("checks".into()),
            ..command(
                me,
                &format!(
                    "touch {me}; i=0; while [ ! -e {other} ]; do i=$((i+1)); \
                     [ $i -gt 100 ] && exit 1; sleep 0.05; done"
                ),
            )
        };
        let d = plain(
            &fx,
            dir,
            Program::Shell("true".into()),
            vec![
                waits_for("a", "b"),
                command("last", "test -e a && test -e b"),
                waits_for("b", "a"),
            ],
        );
        assert_eq!(
            batches(&d.stages)
                .iter()
                .map(|b| b.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            [vec!["a", "b"], vec!["last"]]
        );
        let started = std::time::Instant::now();
        let r = attempt(&fx, &d).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{}", r.message);
        let names: Vec<_> = r.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "last"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// Proves `changes` is a round of the same attempt: the implementer's session is resumed
    /// with the findings, its work verified and committed again, the stages run again (the
    /// reviewer sees the new diff) and pass; the spend of both implementer runs is added up,
    /// and line counts are reported. A stage whose rounds are used up fails the attempt.
    #[tokio::test]
    async fn changes_resume_the_implementer_then_the_stages_pass() {
        let fx = Fx::new();
        let verdicts = fx.tmp.path().join("verdicts");
        std::fs::write(
            &verdicts,
            "{\"verdict\":\"changes\",\"findings\":[{\"file\":\"a.txt\",\"line\":1,\"message\":\"add b\"}]}\n\
             {\"verdict\":\"pass\"}\n",
        )
        .unwrap();
        let implementer = stub(AgentKind::Claude);
        let task_prompt = "write a.txt: one\nthen write b.txt: two";
        let review = agent(
            "review",
            AgentKind::Codex,
            &format!("Review {{task}}.\nverdict {}\n{{diff}}", verdicts.display()),
        );
        let mut d = plain(
            &fx,
            &fx.repo,
            Program::Argv(implementer.argv(None, task_prompt)),
            vec![review.clone(), command("fmt", "echo formatted > fmt.txt")],
        );
        d.working_dir = None;
        d.agent = Some(AgentKind::Claude);
        d.implementer = Some(Box::new(implementer.clone()));
        d.verify = Some(ordo_proto::Verify {
            command: "test -s a.txt".into(),
            success_code: 0,
        });
        d.workspace = Some(fx.ws(0, "t", 1));
        let r = attempt(&fx, &d).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{}", r.message);
        assert_eq!(r.rounds, 1);
        let seen: Vec<_> = r.stages.iter().map(|s| (s.round, s.verdict)).collect();
        assert_eq!(
            seen,
            [
                (1, Some(Verdict::Changes)),
                (2, Some(Verdict::Pass)),
                (2, Some(Verdict::Pass))
            ]
        );
        assert_eq!(r.stages[0].findings[0].message, "add b");
        let agent = r.agent.as_deref().unwrap();
        assert_eq!((agent.cost_usd, agent.tokens()), (Some(0.02), 2500));
        let session = agent.session_id.clone().unwrap();
        let prompts =
            std::fs::read_to_string(fx.tmp.path().join("ordo-stub-agent").join(&session)).unwrap();
        assert!(
            prompts.contains("The review stage asked for changes")
                && prompts.contains("- a.txt:1: add b"),
            "{prompts}"
        );
        let w = r.workspace.as_deref().unwrap();
        // The formatter's change, made after the last review, is committed with the work.
        assert_eq!(w.files, ["a.txt", "b.txt", "fmt.txt"]);
        let lines: Vec<_> = w
            .lines
            .iter()
            .map(|l| (l.path.as_str(), l.added, l.removed))
            .collect();
        assert_eq!(lines, [("a.txt", 1, 0), ("b.txt", 1, 0), ("fmt.txt", 1, 0)]);
        assert_eq!(g(&fx.repo, &["show", &format!("{}:b.txt", w.head)]), "two");
        let reviewer = std::fs::read_to_string(
            fx.tmp.path().join("ordo-stub-agent").join(
                r.stages[1]
                    .agent
                    .as_ref()
                    .unwrap()
                    .session_id
                    .as_deref()
                    .unwrap(),
            ),
        )
        .unwrap();
        assert!(
            reviewer.contains("+two"),
            "the second review sees the round's diff: {reviewer}"
        );

        // Rounds used up: changes again fail the attempt.
        std::fs::write(
            &verdicts,
            "{\"verdict\":\"changes\"}\n{\"verdict\":\"changes\"}\n",
        )
        .unwrap();
        d.stages = vec![StageRun {
            max_rounds: 1,
            ..review
        }];
        d.workspace = Some(fx.ws(0, "t", 2));
        d.attempt = Attempt(2);
        let r = attempt(&fx, &d).await;
        assert_eq!(
            (r.outcome, r.message.as_str(), r.rounds),
            (
                Outcome::Failed,
                "the review stage asked for changes after 1 rounds (max_rounds 1)",
                1
            )
        );
    }
}
