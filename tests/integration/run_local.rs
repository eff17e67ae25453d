//! `ordo run` end to end with the real binary: the example job files (commands, and prompt
//! tasks through a stub agent script; the fixtures, plus the shared conformance set when
//! present), every execution semantic on a small job, Ctrl-C, and resume after SIGKILL.
//! Orders are asserted from ledgers the tasks write; times are measured in bench/, not here.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ordo_tests::{
    fixture, lines, ordo, ordo_in, pids_with_env, shared_example, signal, spawn_ordo, task,
    wait_child, wait_until, write,
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
/// task's verify command checks for, unless `STUB_IDLE` names the task.
const STUB_AGENT: &str = r#"#!/bin/sh
# Called as: stub-agent --print PROMPT
[ "$#" -eq 2 ] || { echo "expected 2 arguments, got $#" >&2; exit 64; }
printf '%s\t%s\n' "$ORDO_TASK" "$(printf '%s' "$2" | head -c 60 | tr '\n\t' '  ')" >> agent.log
[ "$ORDO_TASK" = "${STUB_IDLE:-}" ] && { echo "agent did nothing"; exit 0; }
case "$ORDO_TASK" in
  # tests/fixtures/prompter/release-train.toml
  triage_open_issues) echo "issue 12: not a blocker" > TRIAGE.md ;;
  draft_changelog) printf '## 2.4.0\n\n- Offline mode\n' > CHANGELOG.md ;;
  refresh_screenshots) mkdir -p docs/img && touch docs/img/home.png ;;
  bump_version) printf 'version = "2.4.0"\n' > pyproject.toml ;;
  announce_release) touch ANNOUNCEMENT.md ;;
  # tests/fixtures/prompter/docs-overhaul.toml
  audit_api_reference) touch audit_api.md ;;
  audit_tutorials) touch audit_tutorials.md ;;
  collect_user_questions) touch faq_sources.md ;;
  restructure_navigation) touch nav.yml ;;
  write_faq) mkdir -p docs && touch docs/faq.md ;;
  rebuild_search_index) touch search_index.json ;;
  publish_preview) echo "https://preview.example/42" > preview_url.txt ;;
  # The shared conformance set: prompter/parallel-execution.toml
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

/// The make targets the verify commands of the shared `prompter/example.toml` call.
const MAKEFILE: &str =
    "all:\n\t@true\ndocs:\n\t@true\nlint:\n\t@true\ntest:\n\t@true\nsecurity-check:\n\t@true\n";

fn agent_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let agent = write(dir.path(), "stub-agent", STUB_AGENT);
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(dir.path(), "Makefile", MAKEFILE);
    (dir, format!("{agent} --print"))
}

/// The task names the stub agent logged, in the order it was called.
fn agent_calls(dir: &Path) -> Vec<String> {
    lines(&dir.join("agent.log"))
        .iter()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

#[test]
fn command_examples_run_and_order_follows_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    // Sequential: the last task prints the manifest the one before it wrote.
    let seq = fixture("json/subtasks_sequential.json");
    let (code, s) = run_json(dir.path(), seq.to_str().unwrap(), &[], &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        task(&s, "prepare-workspace")["output_tail"],
        "workspace ready\n"
    );
    assert_eq!(
        task(&s, "write-manifest")["output_tail"],
        "manifest written\n"
    );
    assert_eq!(task(&s, "show-manifest")["output_tail"], "v2.4.0\n");

    // Parallel: `sleep 2` and `sleep 1` overlap, so the second finishes first; the task that
    // depends on both starts after both.
    let par = fixture("json/subtasks_parallel.json");
    let r = ordo_in(dir.path(), &["run", par.to_str().unwrap()], &[]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let done_eu = r.stdout.find("✓ mirror-eu").expect("mirror-eu line");
    let done_us = r.stdout.find("✓ mirror-us").expect("mirror-us line");
    let start_us = r.stdout.find("▶ mirror-us").expect("mirror-us start");
    let start_index = r
        .stdout
        .find("▶ rebuild-index")
        .expect("rebuild-index start");
    assert!(
        done_us < done_eu,
        "parallel: mirror-us should finish first:\n{}",
        r.stdout
    );
    assert!(
        start_us < done_eu,
        "parallel: both should run at once:\n{}",
        r.stdout
    );
    assert!(
        done_eu < start_index,
        "rebuild-index ran before its dependencies:\n{}",
        r.stdout
    );

    // --mode sequential: mirror-us starts only after mirror-eu succeeded.
    let r = ordo_in(
        dir.path(),
        &["run", par.to_str().unwrap(), "--mode", "sequential"],
        &[],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let done_eu = r.stdout.find("✓ mirror-eu").unwrap();
    let start_us = r.stdout.find("▶ mirror-us").unwrap();
    assert!(done_eu < start_us, "sequential order broken:\n{}", r.stdout);

    // A Markdown document's fenced blocks and `command:`/`verify:` lines run as written.
    let dir = tempfile::tempdir().unwrap();
    let doc = fixture("markdown/build-and-package.md");
    let (code, s) = run_json(dir.path(), doc.to_str().unwrap(), &[], &[]);
    assert_eq!(code, 0, "{s}");
    assert!(states(&s).iter().all(|(_, st)| st == "succeeded"), "{s}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dist/sitemap.txt")).unwrap(),
        "index.html\nabout.html\n"
    );
    assert!(dir.path().join("site.tar").is_file());
}

/// A spec's prompt tasks and every task's dependencies, as `ordo convert` writes them.
fn prompt_tasks(spec: &Path) -> (Vec<String>, HashMap<String, Vec<String>>) {
    let r = ordo(&["convert", spec.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}: {}", spec.display(), r.stderr);
    let mut prompts = Vec::new();
    let mut deps = HashMap::new();
    for t in r.json()["tasks"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap().to_string();
        if t.get("prompt").is_some() {
            prompts.push(name.clone());
        }
        let d = t["depends_on"].as_array().map_or(Vec::new(), |d| {
            d.iter().map(|d| d.as_str().unwrap().to_string()).collect()
        });
        deps.insert(name, d);
    }
    (prompts, deps)
}

#[test]
fn prompt_examples_run_through_the_agent_command() {
    let (dir, agent) = agent_dir();
    let env = [
        ("ORDO_AGENT_COMMAND", agent.as_str()),
        ("ORDO_CHECK_INTERVAL", "0"),
    ];
    let mut specs: Vec<_> = [
        "prompter/docs-overhaul.toml",
        "taskmaster/offline-mode_tasks.json",
        "taskmaster/ci-hardening_tasks.json",
        "markdown/log-report.md",
        "markdown/feature-flag-rollout.md",
        "json/log-report.json",
    ]
    .into_iter()
    .map(fixture)
    .collect();
    specs.extend(
        [
            "prompter/parallel-execution.toml",
            "taskmaster/cto-parallel-test_tasks.json",
            "taskmaster/5dlabs-taskmaster-sync_tasks.json",
            "markdown/docs_sample_tasks_mixed_mode_task.md",
            "markdown/docs_tasks_004_task_execution_modes.md",
            "json/docs_sample_tasks_mixed_mode_task.json",
        ]
        .into_iter()
        .filter_map(shared_example),
    );
    for spec in specs {
        let rel = spec.display();
        let _ = std::fs::remove_file(dir.path().join("agent.log"));
        let (code, s) = run_json(dir.path(), spec.to_str().unwrap(), &[], &env);
        assert_eq!(code, 0, "{rel}: {s}");
        assert!(
            states(&s).iter().all(|(_, st)| st == "succeeded"),
            "{rel}: {s}"
        );
        // The agent ran once per prompt task, and each task after all its dependencies.
        let (mut prompts, deps) = prompt_tasks(&spec);
        assert_eq!(
            prompts.len(),
            s["tasks"].as_array().unwrap().len(),
            "{rel}: every task is a prompt task"
        );
        let ran = agent_calls(dir.path());
        let mut once = ran.clone();
        once.sort();
        prompts.sort();
        assert_eq!(once, prompts, "{rel}: the agent ran once per task");
        for (i, t) in ran.iter().enumerate() {
            for d in &deps[t] {
                assert!(
                    ran[..i].contains(d),
                    "{rel}: {t} ran before its dependency {d}: {ran:?}"
                );
            }
        }
    }
}

#[test]
fn prompter_flow_jumps_go_where_the_file_says() {
    // release-train.toml: draft_changelog jumps to bump_version (refresh_screenshots never
    // runs), and bump_version has on_success = "stop" (announce_release never runs).
    let (dir, agent) = agent_dir();
    let env = [
        ("ORDO_AGENT_COMMAND", agent.as_str()),
        ("ORDO_CHECK_INTERVAL", "0"),
    ];
    let spec = fixture("prompter/release-train.toml");
    let (code, s) = run_json(dir.path(), spec.to_str().unwrap(), &[], &env);
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        agent_calls(dir.path()),
        ["triage_open_issues", "draft_changelog", "bump_version"]
    );
    assert_eq!(task(&s, "refresh_screenshots")["state"], "skipped");
    assert_eq!(task(&s, "announce_release")["state"], "skipped");
    assert_eq!(s["state"], "succeeded");
    // The system prompt travels with the prompt as the same single argument.
    let log = lines(&dir.path().join("agent.log"));
    assert_eq!(
        log[2],
        "bump_version\tChange only version strings. Do not reformat the files you t"
    );

    // The verify command decides: without a changelog, draft_changelog fails (three attempts:
    // max_retries = 2) and its on_failure = "stop" ends the job there.
    let (dir, agent) = agent_dir();
    let env = [
        ("ORDO_AGENT_COMMAND", agent.as_str()),
        ("ORDO_CHECK_INTERVAL", "0"),
        ("STUB_IDLE", "draft_changelog"),
    ];
    let (code, s) = run_json(dir.path(), spec.to_str().unwrap(), &[], &env);
    assert_ne!(code, 0, "{s}");
    assert_eq!(s["state"], "failed", "{s}");
    assert_eq!(task(&s, "draft_changelog")["state"], "failed", "{s}");
    assert_eq!(task(&s, "draft_changelog")["attempts"], 3, "{s}");
    for t in ["refresh_screenshots", "bump_version", "announce_release"] {
        assert_eq!(task(&s, t)["state"], "skipped", "{t}: {s}");
    }
    assert_eq!(
        agent_calls(dir.path()),
        [
            "triage_open_issues",
            "draft_changelog",
            "draft_changelog",
            "draft_changelog"
        ]
    );
}

#[test]
fn shared_prompter_example_stops_where_the_file_says() {
    // The shared example.toml: update_tests has on_success = "stop", so the last two tasks
    // never run.
    let Some(spec) = shared_example("prompter/example.toml") else {
        return;
    };
    let (dir, agent) = agent_dir();
    let env = [
        ("ORDO_AGENT_COMMAND", agent.as_str()),
        ("ORDO_CHECK_INTERVAL", "0"),
    ];
    let (code, s) = run_json(dir.path(), spec.to_str().unwrap(), &[], &env);
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        agent_calls(dir.path()),
        [
            "fix_compiler_warnings",
            "update_documentation",
            "format_code",
            "update_tests"
        ]
    );
    assert_eq!(task(&s, "security_audit")["state"], "skipped");
    assert_eq!(task(&s, "planned_refactor")["state"], "skipped");
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
    // Priorities order the ready tasks of a parallel job (a sequential one keeps file order).
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!("[settings]\nexecution_mode = \"parallel\"\n{text}"),
    )
    .unwrap();
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

/// A job that declares `max_parallel_tasks` gets that many slots from `ordo run`, whatever the
/// CPUs (a job asking for 6 agents runs 6 at once on 2 cores), and `ordo plan` estimates with
/// the same number; `--workers` still overrides.
#[test]
fn declared_max_parallel_is_the_slots_of_run_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<(String, &str)> = (0..6).map(|i| (format!("t{i}"), "")).collect();
    let refs: Vec<(&str, &str)> = tasks.iter().map(|(n, e)| (n.as_str(), *e)).collect();
    let spec = ledger_job(dir.path(), "[settings]\nmax_parallel_tasks = 6\n", &refs);
    // Each task holds its slot until every task has started (or 10 s pass): with fewer than
    // 6 slots the last ones could not start while the first wait, and the job would take
    // the full 10 s per wave; the ledger tells.
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "sleep 0.1",
        "n=0; while [ $(grep -c start ledger) -lt 6 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done",
    );
    std::fs::write(&spec, text).unwrap();
    let (code, s) = run_json(dir.path(), &spec, &[], &[]);
    assert_eq!(code, 0, "{s}");
    let mut running = 0i32;
    let mut peak = 0;
    for l in lines(&dir.path().join("ledger")) {
        running += if l.starts_with("start") { 1 } else { -1 };
        peak = peak.max(running);
    }
    assert_eq!(peak, 6, "all six ran at once");
    let plan = ordo_in(dir.path(), &["plan", &spec, "--output", "json"], &[]);
    assert_eq!(plan.json()["workers"], 6, "{}", plan.stdout);
    let plan = ordo_in(
        dir.path(),
        &["plan", &spec, "--output", "json", "--workers", "3"],
        &[],
    );
    assert_eq!(plan.json()["workers"], 3, "{}", plan.stdout);
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

/// A Prompter chain (no task declares `depends_on`) runs one task at a time in file order,
/// each ended before the next starts, however many slots there are; `--workers 2` (the
/// command line asking) or one `depends_on = []` makes it parallel.
#[test]
fn a_job_without_dependencies_runs_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = [("first", ""), ("second", ""), ("third", "")];
    let spec = ledger_job(dir.path(), "[settings]\nenable_parallel = true\n", &tasks);
    let (code, s) = run_json(dir.path(), &spec, &[], &[]);
    assert_eq!(code, 0, "{s}");
    let ledger = lines(&dir.path().join("ledger"));
    assert_eq!(
        ledger,
        [
            "start first",
            "end first",
            "start second",
            "end second",
            "start third",
            "end third"
        ]
    );
    // Asked for on the command line: the three run together.
    std::fs::remove_file(dir.path().join("ledger")).unwrap();
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("sleep 0.1", "n=0; while [ $(grep -c start ledger) -lt 3 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done");
    std::fs::write(&spec, &text).unwrap();
    let (code, s) = run_json(dir.path(), &spec, &["--workers", "3"], &[]);
    assert_eq!(code, 0, "{s}");
    let ledger = lines(&dir.path().join("ledger"));
    assert!(
        ledger[..3].iter().all(|l| l.starts_with("start")),
        "{ledger:?}"
    );
    // Declared dependencies (an empty list counts): parallel too.
    std::fs::write(
        &spec,
        text.replacen("[[tasks]]\n", "[[tasks]]\ndepends_on = []\n", 1),
    )
    .unwrap();
    let plan = ordo_in(dir.path(), &["plan", &spec, "--output", "json"], &[]);
    assert_eq!(plan.json()["mode"], "parallel", "{}", plan.stdout);
}
