//! Agent runs (docs/design.md, "Agent runs") end to end with the stub agents shipped in
//! `examples/stub-agent` (scripts that print what Claude Code and Codex print): sessions resumed,
//! costs and tokens in status and reports, budgets, rate limits, pools across jobs on a cluster,
//! and bad agent output. Each test says what it proves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ordo_tests::{Cluster, Run, ordo_in, stub_agent as stub, task, write};
use serde_json::Value;

/// A test's directory: job files, the state directory, the stub's call log.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn state(&self) -> String {
        self.file("state").display().to_string()
    }

    fn job(&self, name: &str, text: &str) -> String {
        write(self.path(), name, text)
    }

    /// `ordo ARGS --state <state>` in the directory.
    fn ordo(&self, args: &[&str]) -> Run {
        let state = self.state();
        let mut all = args.to_vec();
        all.extend(["--state", state.as_str()]);
        ordo_in(self.path(), &all, &[])
    }

    fn report(&self) -> Value {
        let r = self.ordo(&["report", "--format", "json"]);
        assert_eq!(r.code(), 0, "ordo report: {}", r.stderr);
        r.json()
    }

    /// The stub's calls: one map of `key=value` fields per line.
    fn calls(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        std::fs::read_to_string(self.file("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut fields = std::collections::BTreeMap::new();
                let mut key: Option<String> = None;
                for part in l.split(' ') {
                    match part.split_once('=') {
                        Some((k, v))
                            if [
                                "tool", "task", "model", "effort", "resume", "system", "prompt",
                            ]
                            .contains(&k) =>
                        {
                            fields.insert(k.to_string(), v.to_string());
                            key = Some(k.to_string());
                        }
                        _ => {
                            if let Some(k) = &key {
                                let v = fields.get_mut(k).unwrap();
                                v.push(' ');
                                v.push_str(part);
                            }
                        }
                    }
                }
                fields
            })
            .collect()
    }

    fn calls_of(&self, task: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        self.calls()
            .into_iter()
            .filter(|c| c["task"] == task)
            .collect()
    }
}

fn settings(d: &Dir, tool: &str, extra: &str) -> String {
    format!(
        "[settings]\nagent = \"{tool}\"\nagent_command = [\"{}\"]\nenv = {{ STUB_LOG = \"{}\", STUB_STATE = \"{}\", STUB_COST = \"0.25\" }}\n{extra}\n",
        stub(tool),
        d.file("calls.log").display(),
        d.path().display(),
    )
}

fn session_of(report: &Value, name: &str, run: usize) -> String {
    task(report, name)["runs"][run]["agent"]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session in run {run} of {name}: {report:#}"))
        .to_string()
}

/// Claude Code runs: the system prompt reaches the agent, `resume_previous_session` resumes
/// the session of the task before it, a failed verify command makes the next attempt resume
/// the task's own session with the verify command and its output as the prompt (and that
/// attempt fixes it), and every run's session, cost and tokens are in the report (per run,
/// per task, for the job) and `ordo status`.
#[test]
fn claude_sessions_costs_and_the_verify_loop() {
    let d = Dir::new();
    let spec = d.job(
        "agents.toml",
        &format!(
            "name = \"agents\"\n{}\n{}",
            settings(&d, "claude", "max_parallel_tasks = 1"),
            r#"
[[tasks]]
name = "plan"
system_prompt = "You are terse."
prompt = "write plan.txt: the plan"

[[tasks]]
name = "build"
depends_on = ["plan"]
resume_previous_session = true
prompt = "append plan.txt: built"

[[tasks]]
name = "check"
depends_on = ["build"]
prompt = """write notes.txt: first try
then write fixed.txt: fixed"""
verify_command = "cat notes.txt && test -f fixed.txt"
max_attempts = 2
"#
        ),
    );
    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();

    let plan = d.calls_of("plan");
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0]["system"], "You are terse.");
    assert_eq!(plan[0]["resume"], "");
    let build = d.calls_of("build");
    assert_eq!(
        build[0]["resume"],
        session_of(&report, "plan", 0),
        "build resumes plan's session"
    );
    let check = d.calls_of("check");
    assert_eq!(check.len(), 2, "{check:?}");
    assert_eq!(check[0]["resume"], "");
    assert_eq!(check[1]["resume"], session_of(&report, "check", 0));
    assert!(
        check[1]["prompt"].contains("The verify command `cat notes.txt && test -f fixed.txt`"),
        "{:?}",
        check[1]
    );
    assert_eq!(
        std::fs::read_to_string(d.file("fixed.txt")).unwrap(),
        "fixed\n"
    );

    // Four runs at $0.25, 1000 input and 250 output tokens each.
    let runs: Vec<&Value> = ["plan", "build", "check"]
        .iter()
        .flat_map(|t| task(&report, t)["runs"].as_array().unwrap())
        .collect();
    assert_eq!(runs.len(), 4);
    for run in &runs {
        assert_eq!(run["agent"]["cost_usd"], 0.25, "{run:#}");
        assert_eq!(run["agent"]["input_tokens"], 1000);
        assert_eq!(run["agent"]["output_tokens"], 250);
    }
    assert_eq!(task(&report, "check")["cost_usd"], 0.5);
    assert_eq!(report["summary"]["cost_usd"], 1.0);
    assert_eq!(report["summary"]["tokens"]["input"], 4000);
    assert_eq!(report["summary"]["tokens"]["total"], 5000);
    // The task's output is the agent's result text, not its JSON.
    let out = task(&report, "plan")["output_tail"].as_str().unwrap();
    assert!(out.starts_with("stub claude: write plan.txt"), "{out}");

    let job = report["job"]["id"].as_str().unwrap().to_string();
    let st = d.ordo(&["status", &job]);
    assert_eq!(st.code(), 0, "{}", st.stderr);
    assert!(st.stdout.contains("COST"), "{}", st.stdout);
    assert!(st.stdout.contains("cost $1.00"), "{}", st.stdout);
    assert!(st.stdout.contains("$0.5000"), "{}", st.stdout);
    // The job's total in its summary, for the jobs list and status as JSON.
    let st = d.ordo(&["status", &job, "--output", "json"]);
    assert_eq!(st.json()["cost_usd"], 1.0, "{}", st.stdout);
    // The state directory's job list (`ordo jobs` on a cluster).
    let jobs = d.ordo(&["status"]);
    assert_eq!(jobs.code(), 0, "{}", jobs.stderr);
    assert!(jobs.stdout.contains("cost $1.00"), "{}", jobs.stdout);
}

/// A $1 budget with $0.50 runs: two tasks run, the others end skipped with `budget exhausted
/// ($1.00 of $1.00)` and the job fails; `ordo retry --failed-only --max-cost-usd 5` goes on
/// with the new budget and the job succeeds, without running the first two again.
#[test]
fn a_budget_stops_agent_attempts_and_retry_goes_on_with_a_new_one() {
    let d = Dir::new();
    let mut text = format!(
        "name = \"budget\"\n{}",
        settings(&d, "claude", "enable_parallel = false\nmax_cost_usd = 1.0")
    )
    .replace("STUB_COST = \"0.25\"", "STUB_COST = \"0.5\"");
    for i in 0..4 {
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i}\"\nprompt = \"write t{i}.txt: {i}\"\n"
        ));
    }
    let spec = d.job("budget.toml", &text);
    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    for t in ["t0", "t1"] {
        assert_eq!(task(&report, t)["state"], "succeeded");
    }
    for t in ["t2", "t3"] {
        assert_eq!(task(&report, t)["state"], "skipped", "{report:#}");
        assert_eq!(
            task(&report, t)["reason"],
            "budget exhausted ($1.00 of $1.00)"
        );
        assert!(!d.file(&format!("{t}.txt")).exists());
    }
    assert_eq!(report["summary"]["outcome"], "failed");
    assert_eq!(d.calls().len(), 2);

    let job = report["job"]["id"].as_str().unwrap().to_string();
    let r = d.ordo(&["retry", &job, "--failed-only", "--max-cost-usd", "5"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    assert_eq!(report["summary"]["outcome"], "succeeded", "{report:#}");
    assert_eq!(d.calls().len(), 4, "t0 and t1 ran again: {:?}", d.calls());
    assert!(d.file("t3.txt").exists());

    // A budget of 0 starts nothing: refused before anything is recorded.
    let zero = d.job(
        "zero.toml",
        &text.replace("max_cost_usd = 1.0", "max_cost_usd = 0"),
    );
    let r = d.ordo(&["run", &zero]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("max_cost_usd must be a positive number"),
        "{}",
        r.stderr
    );
    let r = d.ordo(&["retry", &job, "--max-cost-usd", "0"]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
}

/// `ordo run --state` killed mid-job and run again: the job resumes with what its agent runs
/// already spent and the sessions they left. $0.50 runs on a $1 budget: t0 ran, t1 (resuming
/// t0's session) was killed and runs again, still resuming t0's session, and its cost spends
/// the budget, so t2 and t3 end skipped. A resumed job that forgot would run t2 as well.
#[test]
fn a_resumed_job_keeps_its_sessions_and_what_it_spent() {
    let d = Dir::new();
    let text = format!(
        "name = \"resumed\"\n{}{}",
        settings(&d, "claude", "enable_parallel = false\nmax_cost_usd = 1.0")
            .replace("STUB_COST = \"0.25\"", "STUB_COST = \"0.5\""),
        r#"
[[tasks]]
name = "t0"
prompt = "write t0.txt: 0"

[[tasks]]
name = "t1"
resume_previous_session = true
prompt = """sleep 1
write t1.txt: 1"""

[[tasks]]
name = "t2"
prompt = "write t2.txt: 2"

[[tasks]]
name = "t3"
prompt = "write t3.txt: 3"
"#
    );
    let spec = d.job("resumed.toml", &text);
    let state = d.state();
    let mut first = ordo_tests::spawn_ordo(d.path(), &["run", &spec, "--state", &state]);
    assert!(
        ordo_tests::wait_until(std::time::Duration::from_secs(30), || d
            .calls_of("t1")
            .len()
            == 1),
        "t1 never started: {:?}",
        d.calls()
    );
    ordo_tests::signal(first.id(), libc::SIGKILL);
    ordo_tests::wait_child(&mut first, std::time::Duration::from_secs(10));
    assert!(!d.file("t1.txt").exists(), "killed before t1 ended");

    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    for t in ["t0", "t1"] {
        assert_eq!(task(&report, t)["state"], "succeeded", "{report:#}");
    }
    for t in ["t2", "t3"] {
        assert_eq!(task(&report, t)["state"], "skipped", "{report:#}");
        assert_eq!(
            task(&report, t)["reason"],
            "budget exhausted ($1.00 of $1.00)"
        );
    }
    assert_eq!(d.calls_of("t0").len(), 1, "{:?}", d.calls());
    let t0_session = session_of(&report, "t0", 0);
    let t1 = d.calls_of("t1");
    assert_eq!(t1.len(), 2, "{:?}", d.calls());
    for call in &t1 {
        assert_eq!(call["resume"], t0_session, "{t1:?}");
    }
}

/// A run that ends on a rate limit (429, Retry-After: 1) is not a failed attempt: with
/// `max_attempts = 1` the task waits and runs again, and succeeds; the report shows the
/// rate-limited run.
#[test]
fn a_rate_limited_run_waits_and_does_not_spend_an_attempt() {
    let d = Dir::new();
    std::fs::write(d.file("limits"), "1").unwrap();
    let text = format!(
        "name = \"limited\"\n{}\n[[tasks]]\nname = \"only\"\nprompt = \"write out.txt: done\"\nmax_attempts = 1\n",
        settings(&d, "claude", "")
    )
    .replace(
        "STUB_COST = \"0.25\"",
        &format!("STUB_COST = \"0.25\", STUB_RATE_LIMITS = \"{}\"", d.file("limits").display()),
    );
    let spec = d.job("limited.toml", &text);
    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    let t = task(&report, "only");
    assert_eq!(t["state"], "succeeded");
    let runs = t["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{t:#}");
    assert_eq!(runs[0]["agent"]["rate_limited"], true);
    assert!(
        runs[0]["message"].as_str().unwrap().contains("429"),
        "{t:#}"
    );
    assert_eq!(runs[1]["agent"]["rate_limited"], false);
    // It waited about what the agent asked (1 s) between the two runs.
    let gap = runs[1]["started_ms"].as_u64().unwrap()
        - (runs[0]["started_ms"].as_u64().unwrap() + runs[0]["duration_ms"].as_u64().unwrap());
    assert!(gap >= 900, "ran again after {gap} ms");
}

/// Codex runs: the session comes from `thread.started`, the result from the last agent
/// message, tokens from `turn.completed` (Codex reports no cost); resuming passes `resume ID`.
#[test]
fn codex_sessions_and_tokens() {
    let d = Dir::new();
    let spec = d.job(
        "codex.toml",
        &format!(
            "name = \"codex\"\n{}\n{}",
            settings(&d, "codex", ""),
            r#"
[[tasks]]
name = "first"
prompt = "write a.txt: a"

[[tasks]]
name = "second"
depends_on = ["first"]
resume_previous_session = true
prompt = "append a.txt: b"
"#
        ),
    );
    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    let first = session_of(&report, "first", 0);
    assert_eq!(d.calls_of("second")[0]["resume"], first);
    assert_eq!(d.calls_of("second")[0]["tool"], "codex");
    let run = &task(&report, "first")["runs"][0]["agent"];
    assert_eq!(run["input_tokens"], 1000);
    assert_eq!(run["cost_usd"], Value::Null);
    assert_eq!(
        task(&report, "second")["output_tail"],
        "stub codex: append a.txt;"
    );
    assert_eq!(std::fs::read_to_string(d.file("a.txt")).unwrap(), "a\nb\n");
}

/// An agent that prints text instead of Claude Code's JSON fails the attempt with a message
/// quoting what came back; a missing agent program fails with a message naming it; both
/// are recorded, nothing is lost.
#[test]
fn bad_agent_output_and_a_missing_agent_are_clear() {
    let d = Dir::new();
    let spec = d.job(
        "bad.toml",
        r#"
name = "bad"
[settings]
agent = "claude"
agent_command = ["sh", "-c", "echo 'Sure, here you go'"]

[[tasks]]
name = "text"
prompt = "do it"
"#,
    );
    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    let reason = task(&report, "text")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("claude printed no JSON result") && reason.contains("Sure, here you go"),
        "{reason}"
    );
    let spec = d.job(
        "missing.toml",
        "name = \"missing\"\n[settings]\nagent = \"claude\"\nagent_command = [\"/nonexistent/claude\"]\n\n[[tasks]]\nname = \"gone\"\nprompt = \"do it\"\n",
    );
    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    let reason = task(&report, "gone")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("/nonexistent/claude"), "{reason}");
}

/// On a cluster, `pools = { claude = 2 }` bounds the prompt tasks of two jobs together (a
/// counted semaphore global across jobs, taken by prompt tasks of the agent it is named
/// after): measured from the tasks' own start and end times, never more than two run at
/// once, though eight slots are free; the costs come back in the report.
#[test]
fn a_pool_bounds_agents_across_two_jobs_on_a_cluster() {
    let d = Dir::new();
    let mut c = Cluster::start(&[]);
    c.add_worker("w", &["--concurrency", "8"]);
    let mut jobs = Vec::new();
    for j in 0..2 {
        let mut text = format!(
            "name = \"pool{j}\"\n{}",
            settings(&d, "claude", "pools = { claude = 2 }")
        );
        for i in 0..3 {
            text.push_str(&format!(
                "\n[[tasks]]\nname = \"t{i}\"\nprompt = \"\"\"sleep 0.4\nwrite {}: {j}{i}\"\"\"\n",
                d.file(&format!("out-{j}-{i}")).display()
            ));
        }
        let spec = d.job(&format!("pool{j}.toml"), &text);
        let r = c.ordo(&["submit", &spec]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        jobs.push(r.stdout.trim().to_string());
    }
    let mut spans = Vec::new();
    for job in &jobs {
        let r = c.ordo(&["watch", job]);
        assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
        let r = c.ordo(&["report", job, "--format", "json"]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        let report = r.json();
        assert_eq!(report["summary"]["cost_usd"], 0.75, "{report:#}");
        for t in report["tasks"].as_array().unwrap() {
            let run = &t["runs"][0];
            let start = run["started_ms"].as_u64().unwrap();
            spans.push((start, start + run["duration_ms"].as_u64().unwrap()));
        }
    }
    let most = most_at_once(&spans);
    assert!(most <= 2, "{most} agents ran at once: {spans:?}");
    assert_eq!(most, 2, "the pool's two places were used: {spans:?}");
}

/// A TaskMaster tasks.json cannot carry ordo's settings: `--with FILE` gives them (the agent,
/// its environment) and `--max-cost-usd` a budget, for run, validate and plan alike; a bad
/// overlay is refused naming its file and line, with nothing recorded.
#[test]
fn a_tasks_json_gets_its_settings_from_with_and_its_budget_from_a_flag() {
    let d = Dir::new();
    let tasks = d.job(
        "tasks.json",
        r#"{"master": {"tasks": [
  {"id": 1, "title": "Plan", "description": "write plan.txt: the plan", "status": "pending", "dependencies": []},
  {"id": 2, "title": "Build", "description": "write build.txt: built", "status": "pending", "dependencies": [1]},
  {"id": 3, "title": "Ship", "description": "write ship.txt: shipped", "status": "pending", "dependencies": [2]}
]}}"#,
    );
    let with = d.job("with.toml", &settings(&d, "claude", ""));
    let plan = ordo_in(d.path(), &["plan", &tasks, "--with", &with], &[]);
    assert_eq!(plan.code(), 0, "{}", plan.stderr);

    // $0.25 a run, $0.40 to spend: Plan and Build run, Ship is skipped for the budget.
    let r = d.ordo(&["run", &tasks, "--with", &with, "--max-cost-usd", "0.4"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    assert_eq!(task(&report, "1")["state"], "succeeded", "{report:#}");
    assert_eq!(task(&report, "2")["state"], "succeeded");
    assert_eq!(task(&report, "3")["state"], "skipped");
    assert_eq!(
        task(&report, "3")["reason"],
        "budget exhausted ($0.50 of $0.40)"
    );
    assert_eq!(d.calls().len(), 2, "{:?}", d.calls());

    let bad = d.job(
        "bad.toml",
        "[settings]\nmax_cost_usd = 1\n\n[[tasks]]\nname = \"x\"\n",
    );
    for verb in ["validate", "plan", "run"] {
        let r = ordo_in(d.path(), &[verb, &tasks, "--with", &bad], &[]);
        assert_eq!(r.code(), 2, "{verb}: {}", r.stderr);
        assert!(r.stderr.contains("bad.toml:4:"), "{verb}: {}", r.stderr);
    }
    let jobs = d.ordo(&["status", "--output", "json"]);
    assert_eq!(jobs.json().as_array().unwrap().len(), 1, "nothing recorded");
}

/// The most of these (start, end) spans that overlap at any one start.
fn most_at_once(spans: &[(u64, u64)]) -> usize {
    spans
        .iter()
        .map(|&(s, _)| spans.iter().filter(|&&(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

/// `settings` with the stub's environment extended by `vars` (`KEY = "value", ...`).
fn settings_with(d: &Dir, tool: &str, extra: &str, vars: &str) -> String {
    settings(d, tool, extra).replace(
        "STUB_COST = \"0.25\"",
        &format!("STUB_COST = \"0.25\", {vars}"),
    )
}

/// A pool of 8 agent runs under a provider that refuses runs beyond 3 at once (the stub
/// counts its runs in flight): the limit starts at 2, grows, is refused once at 4 and settles
/// at 3 for the cool-down; the refused runs are counted (status, as JSON and text); every
/// task succeeds, none lost.
#[test]
fn an_agent_pool_settles_at_what_the_provider_allows() {
    let d = Dir::new();
    let vars = format!(
        "STUB_MAX_IN_FLIGHT = \"3\", STUB_IN_FLIGHT = \"{}\"",
        d.file("in-flight").display()
    );
    let mut text = format!(
        "name = \"adaptive\"\n{}",
        settings_with(&d, "claude", "pools = { claude = 8 }", &vars)
    );
    for i in 0..20 {
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i}\"\nprompt = \"sleep 0.5\"\nmax_attempts = 1\n"
        ));
    }
    let spec = d.job("adaptive.toml", &text);
    let r = d.ordo(&["run", &spec, "--workers", "8"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    let mut refused = 0;
    for t in report["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "succeeded", "{t:#}");
        refused += t["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|run| run["agent"]["rate_limited"] == true)
            .count();
    }
    assert!(
        (1..=3).contains(&refused),
        "{refused} runs refused: the limit found the provider's cap once"
    );
    let job = report["job"]["id"].as_str().unwrap().to_string();
    let st = d.ordo(&["status", &job, "--output", "json"]);
    assert_eq!(st.code(), 0, "{}", st.stderr);
    let pool = &st.json()["pools"][0];
    assert_eq!(pool["name"], "claude", "{}", st.stdout);
    assert_eq!(pool["size"], 8);
    assert_eq!(pool["limit"], 3, "settled at the provider's cap: {pool}");
    assert_eq!(pool["refused_total"], refused as u64);
    assert!(pool["limited_at_ms"].as_u64().is_some(), "{pool}");
    let st = d.ordo(&["status", &job]);
    assert!(
        st.stdout.contains("pool claude: 3 of 8"),
        "the text status shows the limit: {}",
        st.stdout
    );
}

/// Two jobs on a cluster of two workers with 16 slots between them share one adaptive limit
/// for their pool, whatever worker runs a task: under a provider refusing runs beyond 3 at
/// once, never more than 4 of their agent runs overlap (the limit finds the cap by going one
/// above it), both jobs' status shows the same limit and refusals, and nothing is lost.
#[test]
fn two_jobs_on_two_workers_share_one_adaptive_limit() {
    let d = Dir::new();
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &["--concurrency", "8"]);
    c.add_worker("w2", &["--concurrency", "8"]);
    let vars = format!(
        "STUB_MAX_IN_FLIGHT = \"3\", STUB_IN_FLIGHT = \"{}\"",
        d.file("in-flight").display()
    );
    let mut jobs = Vec::new();
    for j in 0..2 {
        let mut text = format!(
            "name = \"shared{j}\"\n{}",
            settings_with(&d, "claude", "pools = { claude = 8 }", &vars)
        );
        for i in 0..8 {
            text.push_str(&format!(
                "\n[[tasks]]\nname = \"t{i}\"\nprompt = \"sleep 0.5\"\nmax_attempts = 1\n\
                 depends_on = []\n"
            ));
        }
        let spec = d.job(&format!("shared{j}.toml"), &text);
        let r = c.ordo(&["submit", &spec]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        jobs.push(r.stdout.trim().to_string());
    }
    let (mut spans, mut workers, mut pools) = (Vec::new(), BTreeSet::new(), Vec::new());
    for job in &jobs {
        let r = c.ordo(&["watch", job]);
        assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
        let report = c.ordo(&["report", job, "--format", "json"]).json();
        for t in report["tasks"].as_array().unwrap() {
            assert_eq!(t["state"], "succeeded", "{t:#}");
            for run in t["runs"].as_array().unwrap() {
                workers.insert(run["worker"].as_str().unwrap_or_default().to_string());
                if run["agent"]["rate_limited"] != true {
                    let start = run["started_ms"].as_u64().unwrap();
                    spans.push((start, start + run["duration_ms"].as_u64().unwrap()));
                }
            }
        }
        let st = c.ordo(&["status", job, "--output", "json"]).json();
        pools.push(st["pools"][0].clone());
    }
    assert_eq!(workers.len(), 2, "both workers ran agents: {workers:?}");
    let most = most_at_once(&spans);
    assert!(most <= 4, "{most} agent runs at once: {spans:?}");
    assert_eq!(pools[0], pools[1], "one limit for both jobs");
    assert_eq!(pools[0]["name"], "claude", "{}", pools[0]);
    assert!(pools[0]["limit"].as_u64().unwrap() <= 3, "{}", pools[0]);
    // One limit finds the cap once or twice; a limit per worker or per job would be refused
    // by the provider again and again.
    let refused = pools[0]["refused_total"].as_u64().unwrap_or(0);
    assert!((1..=4).contains(&refused), "{}", pools[0]);
}

/// A task waiting out a rate limit holds no slot: with one slot (a parallel job: dependencies
/// declared), the command task declared after a rate-limited agent task runs while that task
/// waits (1 s, as the agent asked).
#[test]
fn a_rate_limited_task_holds_no_slot_while_it_waits() {
    let d = Dir::new();
    std::fs::write(d.file("limits"), "1").unwrap();
    let vars = format!("STUB_RATE_LIMITS = \"{}\"", d.file("limits").display());
    let text = format!(
        "name = \"waits\"\n{}\n[[tasks]]\nname = \"agent\"\nprompt = \"write a.txt: a\"\ndepends_on = []\n\n[[tasks]]\nname = \"cmd\"\ncommand = \"sleep 0.2\"\ndepends_on = []\n",
        settings_with(&d, "claude", "", &vars)
    );
    let spec = d.job("waits.toml", &text);
    let r = d.ordo(&["run", &spec, "--workers", "1"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let report = d.report();
    let runs = task(&report, "agent")["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["agent"]["rate_limited"], true);
    let cmd = &task(&report, "cmd")["runs"][0];
    let (start, end) = (
        cmd["started_ms"].as_u64().unwrap(),
        cmd["started_ms"].as_u64().unwrap() + cmd["duration_ms"].as_u64().unwrap(),
    );
    let waited_from = runs[0]["started_ms"].as_u64().unwrap();
    let waited_to = runs[1]["started_ms"].as_u64().unwrap();
    assert!(
        waited_from <= start && end <= waited_to,
        "the command ran ({start}..{end}) while the agent task waited ({waited_from}..{waited_to})"
    );
}

/// A task's `model` reaches Claude Code as `--model`, the job's `[settings] model` is the
/// default, and an escalation ladder runs the attempt after a failed verify with the next model;
/// each run records the model it asked for (the stub names none). Codex gets `-m` and
/// `-c model_reasoning_effort=`.
#[test]
fn models_reach_the_agent_and_a_failed_verify_escalates() {
    let d = Dir::new();
    let spec = d.job(
        "models.toml",
        &format!(
            "name = \"models\"\n{}\n{}",
            settings(&d, "claude", "max_parallel_tasks = 1\nmodel = \"house\""),
            r#"
[[tasks]]
name = "plain"
prompt = "write a.txt: a"

[[tasks]]
name = "picked"
model = "sonnet-x"
prompt = "write b.txt: b"

[[tasks]]
name = "ladder"
escalate = ["small", "big"]
prompt = """write notes.txt: first try
then write fixed.txt: fixed"""
verify_command = "test -f fixed.txt"
max_attempts = 2
"#
        ),
    );
    let r = d.ordo(&["run", &spec]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let asked =
        |t: &str| -> Vec<String> { d.calls_of(t).iter().map(|c| c["model"].clone()).collect() };
    assert_eq!(asked("plain"), ["house"]);
    assert_eq!(asked("picked"), ["sonnet-x"]);
    assert_eq!(asked("ladder"), ["small", "big"]);
    let report = d.report();
    let recorded: Vec<&Value> = task(&report, "ladder")["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| &run["agent"]["model"])
        .collect();
    assert_eq!(recorded, ["small", "big"], "{report:#}");

    let codex = d.job(
        "codex.toml",
        &format!(
            "name = \"codex\"\n{}\n{}",
            settings(&d, "codex", "effort = \"low\""),
            "[[tasks]]\nname = \"cx\"\nmodel = \"gpt-x\"\neffort = \"high\"\nprompt = \"write c.txt: c\"\n",
        ),
    );
    let r = d.ordo(&["run", &codex]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let cx = d.calls_of("cx");
    assert_eq!(
        (cx[0]["model"].as_str(), cx[0]["effort"].as_str()),
        ("gpt-x", "high")
    );
}

/// A TaskMaster file gets its models without edits: `--with` maps levels to models, a task's
/// `complexity` score (else its priority word) picks its level, and each run asks for its
/// task's model; the report shows the spend and success per model.
#[test]
fn taskmaster_complexity_and_priority_pick_models_through_with() {
    let d = Dir::new();
    let tasks = d.job(
        "tasks.json",
        r#"{"tasks": [
  {"id": 1, "title": "Schema", "description": "write schema.txt: s", "status": "pending",
   "complexity": 8, "priority": "low", "dependencies": []},
  {"id": 2, "title": "Api", "description": "write api.txt: a", "status": "pending",
   "complexity": 5, "dependencies": [1]},
  {"id": 3, "title": "Docs", "description": "write docs.txt: d", "status": "pending",
   "priority": "low", "dependencies": [2]}
]}"#,
    );
    let with = d.job(
        "with.toml",
        &format!(
            "{}models = {{ high = \"big\", medium = \"mid\", low = \"small\" }}\n",
            settings(&d, "claude", "")
        ),
    );
    let r = d.ordo(&["run", &tasks, "--with", &with]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let asked = |t: &str| -> Vec<String> {
        d.calls_of(t)
            .iter()
            .map(|c| format!("{} {}", c["tool"], c["model"]))
            .collect()
    };
    assert_eq!(
        asked("1"),
        ["claude big"],
        "the score wins over the priority"
    );
    assert_eq!(asked("2"), ["claude mid"]);
    assert_eq!(asked("3"), ["claude small"]);
    let report = d.report();
    let models: Vec<(&str, u64, f64)> = report["summary"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["model"].as_str().unwrap(),
                m["runs"].as_u64().unwrap(),
                m["success_rate"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(models.len(), 3, "{report:#}");
    assert!(models.contains(&("mid", 1, 1.0)), "{models:?}");
}

/// A task's own `agent` runs it: a Codex task beside Claude tasks in one job, each agent
/// found on PATH and called with its own command line.
#[test]
fn a_task_names_its_agent_beside_the_job_s() {
    let d = Dir::new();
    let stubs = Path::new(&stub("claude"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let path = format!("{stubs}:{}", std::env::var("PATH").unwrap_or_default());
    let spec = d.job(
        "mixed.toml",
        &format!(
            "name = \"mixed\"\n[settings]\nenv = {{ STUB_LOG = \"{}\", STUB_STATE = \"{}\" }}\n\
             [[tasks]]\nname = \"cl\"\nprompt = \"write a.txt: a\"\n\
             [[tasks]]\nname = \"cx\"\nagent = \"codex\"\nmodel = \"gpt-x\"\nprompt = \"write b.txt: b\"\n",
            d.file("calls.log").display(),
            d.path().display(),
        ),
    );
    let state = d.state();
    let r = ordo_in(
        d.path(),
        &["run", &spec, "--state", &state],
        &[("PATH", &path)],
    );
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let tool = |t: &str| -> Vec<String> {
        d.calls_of(t)
            .iter()
            .map(|c| format!("{} {}", c["tool"], c["model"]))
            .collect()
    };
    assert_eq!(tool("cl"), ["claude "]);
    assert_eq!(tool("cx"), ["codex gpt-x"]);
    let report = d.report();
    // Codex's output was read as Codex's: its session is in the report.
    assert!(
        task(&report, "cx")["runs"][0]["agent"]["session_id"].is_string(),
        "{report:#}"
    );
}
