//! Quality gates (docs/design.md, "Quality gates: stages") end to end: `[[stages]]` of worktree
//! jobs run by the real `ordo run` and by a cluster's workers, with the stub agents of
//! `examples/stub-agent` as implementer and reviewers (Claude Code's and Codex's formats), their
//! verdicts scripted one per line in a file. Each test says what it proves.

use std::path::{Path, PathBuf};

use ordo_tests::{Cluster, Run, git, git_run, ordo_in, stub_agent, task, write};
use serde_json::Value;

use crate::workspaces_cluster::Shared;

/// A test's directory: `repo/` (a git repository on `main` with one commit) and beside it the
/// job files, the state directory, the stub's log, sessions and verdict files.
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "Ordo Test"]);
        git(&repo, &["config", "user.email", "test@ordo.invalid"]);
        write(&repo, "README.md", "# demo\n");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
        Sandbox { tmp }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn repo(&self) -> PathBuf {
        self.root().join("repo")
    }

    /// Writes `lines` (one verdict each) to a file beside the repository; its path.
    fn verdicts(&self, name: &str, lines: &[&str]) -> String {
        write(self.root(), name, &format!("{}\n", lines.join("\n")))
    }

    /// `ordo ARGS --state <state>` in the repository, the stub agents first on `PATH` (a
    /// stage's `agent = "codex"` runs `codex`).
    fn ordo(&self, args: &[&str]) -> Run {
        let state = self.root().join("state").display().to_string();
        let mut all = args.to_vec();
        all.extend(["--state", state.as_str()]);
        let path = format!(
            "{}:{}",
            Path::new(&stub_agent("claude")).parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        ordo_in(&self.repo(), &all, &[("PATH", path.as_str())])
    }

    fn report(&self) -> Value {
        let r = self.ordo(&["report", "--format", "json"]);
        assert_eq!(r.code(), 0, "ordo report: {}", r.stderr);
        r.json()
    }

    /// The stub's calls (`tool=... task=... resume=... prompt=<first line>`), one per line.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every prompt a stub session was given.
    fn session(&self, id: &str) -> String {
        std::fs::read_to_string(self.root().join("ordo-stub-agent").join(id))
            .unwrap_or_else(|e| panic!("session {id}: {e}"))
    }

    /// A worktree job with a Claude implementer (the stub, $0.25 a run) and `rest` (tasks and
    /// stages).
    fn job(&self, name: &str, rest: &str) -> String {
        let text = format!(
            "name = \"{name}\"\n[settings]\nworkspace = \"worktree\"\ntimeout = \"20s\"\n\
             agent = \"claude\"\nagent_command = [\"{}\"]\n\
             env = {{ STUB_LOG = \"{}\", STUB_STATE = \"{}\", STUB_COST = \"0.25\" }}\n{rest}",
            stub_agent("claude"),
            self.root().join("calls.log").display(),
            self.root().display(),
        );
        write(self.root(), &format!("{name}.toml"), &text)
    }
}

fn integration_branch(job_name: &str, report: &Value) -> String {
    let id = report["job"]["id"].as_str().expect("job id");
    format!("ordo/{job_name}-{}-{}", &id[..8], &id[id.len() - 4..])
}

/// The stage records of a task's only attempt, as `(name, round, verdict)`.
fn stages(report: &Value, name: &str) -> Vec<(String, u64, String)> {
    let runs = task(report, name)["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    runs[0]["stages"]
        .as_array()
        .unwrap_or_else(|| panic!("no stages in {:#}", runs[0]))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["round"].as_u64().unwrap(),
                s["verdict"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect()
}

/// A reviewer answering `changes` then `pass`: the implementer's own session is resumed with
/// the review's findings (a round of the same attempt, not a new attempt), its fix is
/// committed, the reviewer sees it in the next round's diff and passes, and the task
/// integrates with both changes. The report shows the attempt's rounds, each stage run with
/// its round, verdict, findings and cost, and the implementer's spend over both rounds.
#[test]
fn changes_resume_the_implementer_and_the_task_integrates_after_the_pass() {
    let sb = Sandbox::new();
    let verdicts = sb.verdicts(
        "review.verdicts",
        &[
            r#"{"verdict": "changes", "findings": [{"file": "a.txt", "line": 1, "severity": "high", "message": "b.txt is missing"}]}"#,
            r#"{"verdict": "pass", "findings": []}"#,
        ],
    );
    let spec = sb.job(
        "reviewed",
        &format!(
            r#"
[[tasks]]
max_attempts = 1
name = "feature"
escalate = ["sonnet", "opus"]
prompt = """write a.txt: one
then write b.txt: fixed"""

[[stages]]
name = "review"
kind = "agent"
read_only = true
prompt = """Review task {{task}} ({{title}}).
verdict {verdicts}
{{diff}}"""
"#
        ),
    );
    let r = sb.ordo(&["run", &spec]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = sb.report();
    let branch = integration_branch("reviewed", &report);
    assert_eq!(
        git(&sb.repo(), &["show", &format!("{branch}:a.txt")]),
        "one"
    );
    assert_eq!(
        git(&sb.repo(), &["show", &format!("{branch}:b.txt")]),
        "fixed"
    );

    let run = &task(&report, "feature")["runs"][0];
    assert_eq!(run["outcome"], "succeeded", "{run:#}");
    assert_eq!(run["rounds"], 1);
    assert_eq!(
        stages(&report, "feature"),
        [
            ("review".to_string(), 1, "changes".to_string()),
            ("review".to_string(), 2, "pass".to_string())
        ]
    );
    let review = &run["stages"][0];
    assert_eq!(review["findings"][0]["message"], "b.txt is missing");
    assert_eq!(review["agent"]["cost_usd"], 0.25);
    assert_eq!(run["stages"][1]["agent"]["cost_usd"], 0.25);
    // Two implementer runs (the task, then its round) at $0.25.
    assert_eq!(run["agent"]["cost_usd"], 0.5);
    assert_eq!(run["agent"]["input_tokens"], 2000);

    // Calls: the implementer, the review, the implementer resumed, the review again.
    let session = run["agent"]["session_id"].as_str().unwrap();
    let calls = sb.calls();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    assert!(calls[0].contains("resume= ") && calls[0].contains("prompt=write a.txt"));
    // The revision climbs the task's escalation ladder: its attempt ran the first rung.
    assert!(calls[0].contains("model=sonnet "), "{calls:#?}");
    assert!(calls[2].contains("model=opus "), "{calls:#?}");
    assert!(calls[1].contains("prompt=Review task feature (feature)."));
    assert!(
        calls[2].contains(&format!("resume={session} "))
            && calls[2].contains("prompt=The review stage asked for changes"),
        "{calls:#?}"
    );
    assert!(calls[3].contains("prompt=Review task feature"));
    let prompts = sb.session(session);
    assert!(
        prompts.contains("- a.txt:1: [high] b.txt is missing"),
        "{prompts}"
    );
    let second_review = sb.session(run["stages"][1]["agent"]["session_id"].as_str().unwrap());
    assert!(second_review.contains("+fixed"), "{second_review}");
}

/// Verdicts are parsed, never assumed, and `read_only` is enforced: a Codex reviewer that
/// answers without a verdict fails its task, a read-only command stage that edits a file
/// fails its task; neither task's work reaches the integration branch (which never moves off
/// `main`), and the messages say which stage and why.
#[test]
fn no_verdict_or_a_read_only_stage_that_edits_fails_and_nothing_integrates() {
    let sb = Sandbox::new();
    let spec = sb.job(
        "refused",
        r#"
[[tasks]]
max_attempts = 1
name = "unsure"
prompt = "write u.txt: u"
labels = { gate = "review" }

[[tasks]]
max_attempts = 1
name = "meddled"
prompt = "write m.txt: m"
labels = { gate = "check" }

[[stages]]
name = "review"
kind = "agent"
agent = "codex"
select = { gate = "review" }
prompt = "answer: Looks fine to me."

[[stages]]
name = "check"
kind = "command"
read_only = true
select = { gate = "check" }
command = "echo touched >> README.md"
"#,
    );
    let main = git(&sb.repo(), &["rev-parse", "main"]);
    let r = sb.ordo(&["run", &spec]);
    assert_ne!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = sb.report();

    let unsure = &task(&report, "unsure")["runs"][0];
    assert_eq!(unsure["outcome"], "failed");
    assert_eq!(
        unsure["message"],
        "the review stage failed: no verdict: the answer does not end with a JSON verdict"
    );
    assert_eq!(
        stages(&report, "unsure"),
        [("review".into(), 1, "none".into())]
    );
    assert!(
        sb.calls()
            .iter()
            .any(|c| c.starts_with("tool=codex task=unsure"))
    );

    let meddled = &task(&report, "meddled")["runs"][0];
    assert_eq!(meddled["outcome"], "failed");
    assert_eq!(
        meddled["message"],
        "the check stage failed: read_only, but it changed README.md"
    );

    let branch = integration_branch("refused", &report);
    let tip = git_run(&sb.repo(), &["rev-parse", "--verify", "--quiet", &branch]);
    assert!(
        tip.code() != 0 || tip.stdout.trim() == main,
        "the integration branch moved: {}",
        tip.stdout
    );
    assert_eq!(git(&sb.repo(), &["rev-parse", "main"]), main);
}

/// On a cluster the stages run on the workers, in the task's worktree of a worker's cache
/// clone: a command stage (which sees the task's committed work) and a Claude reviewer asking
/// for changes once, the round resuming the implementer on the worker; the task integrates
/// into the shared repository with the round's fix.
#[test]
fn stages_run_on_the_workers_of_a_cluster() {
    let sh = Shared::new();
    let mut c = Cluster::start(&["--ack-wait", "2s"]);
    sh.add_workers(&mut c, &["w1", "w2"]);
    let root = sh.root();
    let verdicts = write(
        &root,
        "verdicts",
        "{\"verdict\": \"changes\", \"findings\": [{\"message\": \"add b\"}]}\n{\"verdict\": \"pass\"}\n",
    );
    let spec = write(
        &root,
        "cluster.toml",
        &format!(
            r#"name = "gated"
[settings]
workspace = "worktree"
repository = "{repo}"
target_branch = "gated"
timeout = "30s"
agent = "claude"
agent_command = ["{stub}"]
env = {{ STUB_LOG = "{log}", STUB_STATE = "{state}", STUB_COST = "0.25" }}

[[tasks]]
max_attempts = 1
name = "feature"
prompt = """write a.txt: one
then write b.txt: fixed"""

[[stages]]
name = "tests"
kind = "command"
command = "test \"$(cat a.txt)\" = one && echo \"$ORDO_WORKER\" >> {marks}"

[[stages]]
name = "review"
kind = "agent"
prompt = "verdict {verdicts}"
"#,
            repo = sh.repo().display(),
            stub = stub_agent("claude"),
            log = root.join("calls.log").display(),
            state = root.display(),
            marks = root.join("ran-on").display(),
        ),
    );
    let r = c.ordo(&["submit", &spec, "--wait"]);
    let job = r.first_line();
    assert_eq!(
        r.code(),
        0,
        "{}\n{}\nworkers:\n{}",
        r.stdout,
        r.stderr,
        c.workers_log()
    );
    assert_eq!(sh.show("gated", "a.txt"), "one");
    assert_eq!(sh.show("gated", "b.txt"), "fixed");
    let ran_on = std::fs::read_to_string(root.join("ran-on")).unwrap();
    let ran_on: Vec<&str> = ran_on.lines().collect();
    assert_eq!(
        ran_on.len(),
        2,
        "the command stage ran once a round: {ran_on:?}"
    );
    assert!(
        ran_on.iter().all(|w| ["w1", "w2"].contains(w)),
        "{ran_on:?}"
    );

    let r = c.ordo(&["report", &job, "--format", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let report = r.json();
    let run = &task(&report, "feature")["runs"][0];
    assert_eq!(run["rounds"], 1, "{run:#}");
    assert_eq!(run["worker"].as_str(), Some(ran_on[0]));
    assert_eq!(
        stages(&report, "feature"),
        [
            ("tests".to_string(), 1, "pass".to_string()),
            ("review".to_string(), 1, "changes".to_string()),
            ("tests".to_string(), 2, "pass".to_string()),
            ("review".to_string(), 2, "pass".to_string()),
        ]
    );
}
