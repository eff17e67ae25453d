//! `ordo run` end to end with the real binary: the shared examples (prompt tasks through a stub
//! agent script), every execution semantic on a small job, Ctrl-C, and resume after SIGKILL.
//! Orders are asserted from ledgers the tasks write; times are measured in bench/, not here.

use std::path::Path;
use std::time::Duration;

use ordo_tests::{
    example, lines, ordo_in, pids_with_env, signal, spawn_ordo, wait_child, wait_until, write,
};
use serde_json::Value;

/// Runs `ordo run SPEC --output json` in `dir`; returns (exit code, summary).
fn run_json(dir: &Path, spec: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let mut args = vec!["run", spec, "--output", "json"];
    args.extend_from_slice(extra);
    let r = ordo_in(dir, &args, env);
    let code = r.code();
    (code, r.json())
}

fn task<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {summary}"))
}

fn states(summary: &Value) -> Vec<(String, String)> {
    summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A stand-in for an AI coding agent: logs how it was called and "does the work" each example
/// task's verify command checks for.
const STUB_AGENT: &str = r#"#!/bin/sh
# Called as: stub-agent --print PROMPT
[ "$#" -eq 2 ] || { echo "expected 2 arguments, got $#" >&2; exit 64; }
printf '%s\t%s\n' "$ORDO_TASK" "$(printf '%s' "$2" | head -c 60 | tr '\n\t' '  ')" >> agent.log
case "$ORDO_TASK" in
  analyze_frontend) touch frontend_analysis.md ;;
  analyze_backend) touch backend_analysis.md ;;
  analyze_tests) touch test_analysis.md ;;
  create_architecture_diagram) touch architecture.md ;;
  generate_test_plan) touch test_plan.md ;;
  create_technical_docs) touch technical_docs.md ;;
  memory_intensive_task) touch statistics.csv ;;
esac
echo "agent did: $ORDO_TASK"
"#;

const MAKEFILE: &str =
    "all:\n\t@true\ndocs:\n\t@true\nlint:\n\t@true\ntest:\n\t@true\nsecurity-check:\n\t@true\n";

fn agent_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let agent = write(dir.path(), "stub-agent", STUB_AGENT);
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(dir.path(), "Makefile", MAKEFILE);
    (dir, format!("{agent} --print"))
}

#[test]
fn command_examples_run_and_order_follows_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let seq = example("json/extracted_task_execution_modes_sequential.json");
    let (code, s) = run_json(dir.path(), seq.to_str().unwrap(), &[], &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(task(&s, "subtask-1")["output_tail"], "Hello\n");
    assert_eq!(task(&s, "subtask-2")["output_tail"], "World\n");

    // Parallel: `sleep 2` and `sleep 1` overlap, so the second finishes first.
    let par = example("json/extracted_task_execution_modes_parallel.json");
    let r = ordo_in(dir.path(), &["run", par.to_str().unwrap()], &[]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let done1 = r.stdout.find("✓ subtask-1").expect("subtask-1 line");
    let done2 = r.stdout.find("✓ subtask-2").expect("subtask-2 line");
    let start2 = r.stdout.find("▶ subtask-2").expect("subtask-2 start");
    assert!(
        done2 < done1,
        "parallel: subtask-2 should finish first:\n{}",
        r.stdout
    );
    assert!(
        start2 < done1,
        "parallel: both should run at once:\n{}",
        r.stdout
    );

    // --mode sequential: subtask-2 starts only after subtask-1 succeeded.
    let r = ordo_in(
        dir.path(),
        &["run", par.to_str().unwrap(), "--mode", "sequential"],
        &[],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let done1 = r.stdout.find("✓ subtask-1").unwrap();
    let start2 = r.stdout.find("▶ subtask-2").unwrap();
    assert!(done1 < start2, "sequential order broken:\n{}", r.stdout);
}

#[test]
fn prompt_examples_run_through_the_agent_command() {
    let (dir, agent) = agent_dir();
    let env = [
        ("ORDO_AGENT_COMMAND", agent.as_str()),
        ("ORDO_CHECK_INTERVAL", "0"),
    ];
    for rel in [
        "prompter/parallel-execution.toml",
        "taskmaster/cto-parallel-test_tasks.json",
        "taskmaster/5dlabs-taskmaster-sync_tasks.json",
        "markdown/docs_sample_tasks_mixed_mode_task.md",
        "markdown/docs_tasks_004_task_execution_modes.md",
        "json/docs_sample_tasks_mixed_mode_task.json",
    ] {
        let _ = std::fs::remove_file(dir.path().join("agent.log"));
        let spec = example(rel);
        let (code, s) = run_json(dir.path(), spec.to_str().unwrap(), &[], &env);
        assert_eq!(code, 0, "{rel}: {s}");
        let n = s["tasks"].as_array().unwrap().len();
        assert!(
            states(&s).iter().all(|(_, st)| st == "succeeded"),
            "{rel}: {s}"
        );
        let log = lines(&dir.path().join("agent.log"));
        assert_eq!(log.len(), n, "{rel}: the agent ran once per task: {log:?}");
    }
    // Dependencies hold: in the mixed-mode document, task-5 ran after tasks 2, 3 and 4.
    let log = lines(&dir.path().join("agent.log"));
    let pos = |t: &str| {
        log.iter()
            .position(|l| l.starts_with(&format!("{t}\t")))
            .unwrap()
    };
    assert!(pos("task-5") > pos("task-2").max(pos("task-3")).max(pos("task-4")));
}

#[test]
fn prompter_flow_jumps_stop_where_the_file_says() {
    // example.toml: update_tests has on_success = "stop", so the last two tasks never run.
    let (dir, agent) = agent_dir();
    let env = [
        ("ORDO_AGENT_COMMAND", agent.as_str()),
        ("ORDO_CHECK_INTERVAL", "0"),
    ];
    let spec = example("prompter/example.toml");
    let (code, s) = run_json(dir.path(), spec.to_str().unwrap(), &[], &env);
    assert_eq!(code, 0, "{s}");
    let ran: Vec<String> = lines(&dir.path().join("agent.log"))
        .iter()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(
        ran,
        [
            "fix_compiler_warnings",
            "update_documentation",
            "format_code",
            "update_tests"
        ]
    );
    assert_eq!(task(&s, "security_audit")["state"], "skipped");
    assert_eq!(task(&s, "planned_refactor")["state"], "skipped");
    // The system prompt travels with the prompt as the same single argument.
    assert_eq!(s["state"], "succeeded");
}

#[test]
fn failure_skips_dependents_and_independent_branches_finish() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "fail.toml",
        r#"
[[tasks]]
name = "build"
command = "echo compiling; exit 3"
[[tasks]]
name = "test"
command = "true"
depends_on = ["build"]
[[tasks]]
name = "deploy"
command = "true"
depends_on = ["test"]
[[tasks]]
name = "lint"
command = "echo lint ok"
"#,
    );
    let (code, s) = run_json(dir.path(), &spec, &[], &[]);
    assert_eq!(code, 1, "{s}");
    assert_eq!(s["state"], "failed");
    assert_eq!(task(&s, "build")["state"], "failed");
    assert_eq!(task(&s, "build")["exit_code"], 3);
    assert_eq!(task(&s, "build")["output_tail"], "compiling\n");
    assert_eq!(task(&s, "test")["state"], "skipped");
    assert!(
        task(&s, "test")["reason"]
            .as_str()
            .unwrap()
            .contains("'build'")
    );
    assert_eq!(task(&s, "deploy")["state"], "skipped");
    assert_eq!(task(&s, "lint")["state"], "succeeded");
}

#[test]
fn retries_verify_allow_failure_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "semantics.toml",
        r#"
[[tasks]]
name = "flaky"
command = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]"
max_attempts = 3
retry_backoff = "10ms"

[[tasks]]
name = "verified"
command = "echo built > artifact"
verify_command = "grep -q built artifact && exit 3"
verify_success_code = 3

[[tasks]]
name = "unverified"
command = "true"
verify_command = "test -f does-not-exist"

[[tasks]]
name = "optional"
command = "exit 1"
allow_failure = true

[[tasks]]
name = "after-optional"
command = "true"
depends_on = ["optional"]

[[tasks]]
name = "slow"
command = "sleep 60"
timeout = "300ms"
"#,
    );
    let (code, s) = run_json(dir.path(), &spec, &[], &[]);
    assert_eq!(code, 1, "{s}");
    assert_eq!(task(&s, "flaky")["state"], "succeeded");
    assert_eq!(task(&s, "flaky")["attempts"], 3);
    assert_eq!(task(&s, "verified")["state"], "succeeded");
    assert_eq!(task(&s, "unverified")["state"], "failed");
    assert!(
        task(&s, "unverified")["reason"]
            .as_str()
            .unwrap()
            .contains("verify"),
        "{s}"
    );
    assert_eq!(task(&s, "optional")["state"], "failed");
    assert_eq!(task(&s, "after-optional")["state"], "succeeded");
    assert_eq!(task(&s, "slow")["state"], "timed_out");
}

#[test]
fn fail_fast_cancels_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "ff.toml",
        r#"
[settings]
fail_fast = true
[[tasks]]
name = "long"
command = "sleep 60"
[[tasks]]
name = "bad"
command = "sleep 0.2; exit 1"
[[tasks]]
name = "later"
command = "true"
depends_on = ["long"]
"#,
    );
    let (code, s) = run_json(dir.path(), &spec, &[], &[]);
    assert_eq!(code, 1, "{s}");
    assert_eq!(task(&s, "bad")["state"], "failed");
    assert_eq!(task(&s, "long")["state"], "cancelled");
    assert_eq!(task(&s, "later")["state"], "cancelled");
}

/// Tasks append "start NAME" and "end NAME" to a ledger; returns the ledger lines.
fn ledger_job(dir: &Path, header: &str, tasks: &[(&str, &str)]) -> String {
    let mut text = String::from(header);
    for (name, extra) in tasks {
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"{name}\"\ncommand = \"echo start $ORDO_TASK >> ledger; sleep 0.1; echo end $ORDO_TASK >> ledger\"\n{extra}\n"
        ));
    }
    write(dir, "job.toml", &text)
}

/// Intervals (start index, end index) per task from a ledger.
fn overlaps(ledger: &[String], a: &str, b: &str) -> bool {
    let at = |what: &str| ledger.iter().position(|l| l == what).unwrap();
    let (sa, ea) = (at(&format!("start {a}")), at(&format!("end {a}")));
    let (sb, eb) = (at(&format!("start {b}")), at(&format!("end {b}")));
    sa < eb && sb < ea
}

#[test]
fn locks_and_exclusive_tasks_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ledger_job(
        dir.path(),
        "",
        &[
            ("edit-a", "locks = [\"src/lib.rs\"]"),
            ("edit-b", "locks = [\"src/lib.rs\"]"),
            ("free-1", ""),
            ("free-2", ""),
            ("migrate", "exclusive = true"),
        ],
    );
    let (code, s) = run_json(dir.path(), &spec, &["--workers", "8"], &[]);
    assert_eq!(code, 0, "{s}");
    let ledger = lines(&dir.path().join("ledger"));
    assert_eq!(ledger.len(), 10, "{ledger:?}");
    assert!(!overlaps(&ledger, "edit-a", "edit-b"), "{ledger:?}");
    for other in ["edit-a", "edit-b", "free-1", "free-2"] {
        assert!(!overlaps(&ledger, "migrate", other), "{ledger:?}");
    }
    // Unlocked tasks do run together.
    assert!(overlaps(&ledger, "free-1", "free-2"), "{ledger:?}");
}

#[test]
fn priority_and_workers_order_the_ready_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ledger_job(
        dir.path(),
        "",
        &[
            ("low", ""),
            ("high", "priority = 10"),
            ("mid", "priority = 5"),
        ],
    );
    let (code, s) = run_json(dir.path(), &spec, &["--workers", "1"], &[]);
    assert_eq!(code, 0, "{s}");
    let starts: Vec<String> = lines(&dir.path().join("ledger"))
        .into_iter()
        .filter(|l| l.starts_with("start"))
        .collect();
    assert_eq!(starts, ["start high", "start mid", "start low"]);
}

#[test]
fn max_parallel_bounds_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<(String, &str)> = (0..6).map(|i| (format!("t{i}"), "")).collect();
    let refs: Vec<(&str, &str)> = tasks.iter().map(|(n, e)| (n.as_str(), *e)).collect();
    let spec = ledger_job(dir.path(), "[settings]\nmax_parallel_tasks = 2\n", &refs);
    let (code, s) = run_json(dir.path(), &spec, &["--workers", "8"], &[]);
    assert_eq!(code, 0, "{s}");
    let mut running = 0i32;
    let mut peak = 0;
    for l in lines(&dir.path().join("ledger")) {
        running += if l.starts_with("start") { 1 } else { -1 };
        peak = peak.max(running);
    }
    assert_eq!(peak, 2);
}

#[test]
fn argv_env_and_working_dir_are_applied_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let spec = write(
        dir.path(),
        "argv.json",
        r#"{"name": "argv", "settings": {"env": {"GREETING": "hi"}},
            "tasks": [
              {"name": "literal", "argv": ["printf", "%s", "$(touch canary); ;id"]},
              {"name": "env", "command": "echo $GREETING $ONLY_HERE; pwd", "env": {"ONLY_HERE": "there"}, "working_dir": "sub"}
            ]}"#,
    );
    let (code, s) = run_json(dir.path(), &spec, &[], &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(task(&s, "literal")["output_tail"], "$(touch canary); ;id");
    assert!(!dir.path().join("canary").exists());
    let out = task(&s, "env")["output_tail"].as_str().unwrap().to_string();
    assert!(
        out.starts_with("hi there\n") && out.trim_end().ends_with("/sub"),
        "{out}"
    );
}

#[test]
fn ctrl_c_cancels_cleanly_and_kills_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "long.toml",
        "[[tasks]]\nname = \"long\"\ncommand = \"echo started > marker; sleep 120\"\nenv = { ORDO_TEST_MARK = \"ctrl-c-test\" }\n",
    );
    let mut child = spawn_ordo(dir.path(), &["run", &spec]);
    assert!(wait_until(Duration::from_secs(20), || dir
        .path()
        .join("marker")
        .exists()));
    signal(child.id(), libc::SIGINT);
    let status = wait_child(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    assert!(
        wait_until(Duration::from_secs(5), || pids_with_env(
            "ORDO_TEST_MARK",
            "ctrl-c-test"
        )
        .is_empty()),
        "the task's processes survived Ctrl-C"
    );
}

#[test]
fn resume_after_sigkill_does_not_rerun_finished_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut text = String::new();
    for i in 1..=5 {
        let dep = if i > 1 {
            format!("depends_on = [\"t{}\"]\n", i - 1)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[tasks]]\nname = \"t{i}\"\ncommand = \"echo $ORDO_TASK >> ledger; sleep 0.3\"\n{dep}\n"
        ));
    }
    let spec = write(dir.path(), "chain.toml", &text);
    let state_arg = state.to_str().unwrap();
    let mut child = spawn_ordo(dir.path(), &["run", &spec, "--state", state_arg]);
    assert!(wait_until(Duration::from_secs(30), || lines(
        &dir.path().join("ledger")
    )
    .len()
        >= 3));
    signal(child.id(), libc::SIGKILL);
    wait_child(&mut child, Duration::from_secs(10));

    let (code, s) = run_json(dir.path(), &spec, &["--state", state_arg], &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["resumed"], true);
    let ledger = lines(&dir.path().join("ledger"));
    let count = |t: &str| ledger.iter().filter(|l| *l == t).count();
    assert_eq!(count("t1"), 1, "{ledger:?}");
    assert_eq!(count("t2"), 1, "{ledger:?}");
    assert!(count("t3") <= 2, "{ledger:?}");
    assert_eq!(count("t4"), 1, "{ledger:?}");
    assert_eq!(count("t5"), 1, "{ledger:?}");

    // A finished job is not resumed: the same command runs it again.
    let (code, s) = run_json(dir.path(), &spec, &["--state", state_arg], &[]);
    assert_eq!(code, 0);
    assert_eq!(s["resumed"], false);
}

#[test]
fn a_sigkilled_ordo_run_leaves_no_task_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mark = format!("run-guard-{}", std::process::id());
    let spec = write(
        dir.path(),
        "orphans.toml",
        &format!(
            "[settings]\nenv = {{ ORDO_TEST_MARK = \"{mark}\" }}\n[[tasks]]\nname = \"a\"\n\
             command = \"setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo up >> ledger; sleep 1000\"\n\
             [[tasks]]\nname = \"b\"\ncommand = \"sleep 1000\"\n"
        ),
    );
    let mut child = spawn_ordo(dir.path(), &["run", &spec]);
    assert!(wait_until(Duration::from_secs(30), || {
        lines(&dir.path().join("ledger")).len() == 1
            && pids_with_env("ORDO_TEST_MARK", &mark).len() >= 3
    }));
    signal(child.id(), libc::SIGKILL);
    wait_child(&mut child, Duration::from_secs(10));
    // Its guard kills the tasks' processes, the one in its own session too.
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(2), || {
            left = pids_with_env("ORDO_TEST_MARK", &mark);
            left.is_empty()
        }),
        "task processes outlived ordo run: {left:?}"
    );
}

#[test]
fn a_task_no_machine_can_fit_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "huge.toml",
        "[[tasks]]\nname = \"huge\"\ncommand = \"true\"\ncpu_required = 4096.0\n",
    );
    let (code, s) = run_json(dir.path(), &spec, &[], &[]);
    assert_eq!(code, 1);
    assert!(
        task(&s, "huge")["reason"]
            .as_str()
            .unwrap()
            .contains("needs 4096 CPUs"),
        "{s}"
    );
}
