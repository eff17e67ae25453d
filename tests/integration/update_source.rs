//! `ordo run --update-source` on TaskMaster files (issue 16): done tasks are not run; the
//! others are `in-progress` while they run (their agent reads the file and waits to see it)
//! and `done` after; a failed task goes back to its status; every other byte of the file is
//! kept; and TaskMaster's own CLI (`task-master list`, which validates every task it loads)
//! reads the result. Both layouts: tagged (with `--expand-subtasks`) and untagged. A file
//! broken while the job runs is a warning and the job still succeeds.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ordo_tests::{lines, ordo_in, run_with_deadline, taskmaster_cli, venv_python, write};
use serde_json::Value;

/// A stand-in agent: polls the file until its own task is `in-progress` (20 s at most), logs
/// `TASK<TAB>status it saw`, proves it ran with `ran-TASK`, fails when `FAIL_TASK` names it,
/// and replaces the file with broken JSON when `BREAK_TASK` does.
const AGENT: &str = r#"
import json, os, sys, time
task = os.environ["ORDO_TASK"]
top, _, sub = task.partition(".")
tag = os.environ.get("TM_TAG")
seen = None
deadline = time.time() + 20
# The task that breaks the file first waits for its own `in-progress`, so no write of the
# run is still on its way to replace the broken file with a good one.
wait = os.environ.get("WAIT_STATUS") == "1" or os.environ.get("BREAK_TASK") == task
while wait and time.time() < deadline:
    try:
        with open("tasks.json") as f:
            doc = json.load(f)
        t = next(t for t in (doc[tag] if tag else doc)["tasks"] if str(t["id"]) == top)
        if sub:
            t = next(s for s in t["subtasks"] if str(s["id"]) == sub)
        seen = t.get("status")
    except Exception as e:
        seen = "unreadable: %s" % e
    if seen == "in-progress":
        break
    time.sleep(0.02)
with open("agent.log", "a") as f:
    f.write("%s\t%s\n" % (task, seen))
open("ran-" + task, "w").close()
if os.environ.get("BREAK_TASK") == task:
    # Replaced at once (a rename), so the writer never reads it half-written: the broken
    # content is one state, warned about once.
    with open("tasks.json.broken", "w") as f:
        f.write('{"master": {"tasks": [')
    os.replace("tasks.json.broken", "tasks.json")
if os.environ.get("FAIL_TASK") == task:
    print("agent gave up")
    sys.exit(3)
print("agent did", task)
"#;

/// Tagged layout: task 1 done, task 2 with two subtasks (one without a status), task 3 with
/// one; a second tag that must not change.
const TAGGED: &str = r#"{
  "master": {
    "tasks": [
      {
        "id": 1,
        "title": "Set up the repository",
        "description": "Create the project skeleton.",
        "details": "Cargo workspace, CI config.",
        "testStrategy": "CI is green.",
        "status": "done",
        "dependencies": [],
        "priority": "high",
        "subtasks": []
      },
      {
        "id": 2,
        "title": "Storage layer",
        "description": "Keep records in SQLite.",
        "details": "One table per record type; an outbox table.",
        "testStrategy": "Unit tests per table.",
        "status": "pending",
        "dependencies": [1],
        "priority": "medium",
        "agentHint": {"model": "opus", "effort": 3},
        "subtasks": [
          {
            "id": 1,
            "title": "Schema",
            "description": "Write the schema.",
            "details": "Tables and indexes.",
            "status": "pending",
            "dependencies": []
          },
          {
            "id": 2,
            "title": "Migrations",
            "description": "Migrate from an empty database.",
            "details": "Forward only.",
            "dependencies": [1]
          }
        ]
      },
      {
        "id": "3",
        "title": "Sync client — caf\u00e9 edition",
        "description": "Send local changes when online.",
        "details": "Backoff: 1.50e0 s, then doubling.",
        "testStrategy": "Simulated network drops.",
        "status": "pending",
        "dependencies": [2],
        "priority": "low",
        "subtasks": [
          {
            "id": 1,
            "title": "Queue",
            "description": "Persist the queue.",
            "status": "pending",
            "dependencies": []
          }
        ]
      }
    ],
    "metadata": {
      "created": "2026-11-01T10:00:00.000Z",
      "updated": "2026-11-02T10:00:00.000Z",
      "description": "Tasks for master context"
    }
  },
  "feature-billing": {
    "tasks": [
      {
        "id": 1,
        "title": "Invoices",
        "description": "Monthly invoices.",
        "status": "pending",
        "dependencies": [],
        "priority": "medium",
        "subtasks": []
      }
    ],
    "metadata": {"created": "2026-11-01T10:00:00.000Z", "description": "Billing"}
  }
}
"#;

/// Untagged layout, subtasks not expanded: task 2's subtasks follow it to `done`; task 3
/// fails and goes back to `review`; task 4 depends on it and never starts.
const UNTAGGED: &str = r#"{"tasks": [
  {"id": 1, "title": "Done already", "description": "Was done before.", "status": "done", "priority": "high", "dependencies": []},
  {"id": 2, "title": "Write the parser", "description": "Parse the input.", "status": "pending", "priority": "high", "dependencies": [1],
   "subtasks": [
     {"id": 1, "title": "Lexer", "description": "Tokens.", "status": "done", "dependencies": []},
     {"id": 2, "title": "Grammar", "description": "Rules.", "status": "pending", "dependencies": [1]},
     {"id": 3, "title": "Errors", "description": "Positions.", "dependencies": []}
   ]},
  {"id": 3, "title": "Benchmark it", "description": "Measure the parser.", "status": "review", "priority": "low", "dependencies": [2]},
  {"id": 4, "title": "Publish numbers", "description": "Post the results.", "status": "pending", "priority": "low", "dependencies": [3]}
]}
"#;

/// A directory holding `tasks.json` and the agent; returns it and the `--agent-command`.
fn project(tasks: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tasks.json", tasks);
    let agent = write(dir.path(), "agent.py", AGENT);
    let python = venv_python("Python");
    (dir, format!("{} {agent}", python.display()))
}

/// `ordo run tasks.json --update-source --agent-command AGENT EXTRA…` in `dir`.
fn run(dir: &Path, agent: &str, extra: &[&str], env: &[(&str, &str)]) -> ordo_tests::Run {
    let mut args = vec![
        "run",
        "tasks.json",
        "--update-source",
        "--agent-command",
        agent,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    ordo_in(dir, &args, env)
}

/// The text without its `"status": "…"` members (and the comma before one).
fn without_statuses(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(k) = rest.find("\"status\"") {
        let (before, after) = rest.split_at(k);
        let mut keep = before;
        let trimmed = before.trim_end();
        if let Some(t) = trimmed.strip_suffix(',') {
            keep = t;
        }
        out.push_str(keep);
        // Past `"status"`, the colon and the string value.
        let after = &after["\"status\"".len()..];
        let value = after.find('"').expect("status value");
        let end = after[value + 1..].find('"').expect("status end");
        rest = &after[value + 1 + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The document with every `status` member removed.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "status")
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

/// `(id, status)` of every task and subtask under `tasks`, subtasks as `N.M`.
fn statuses(tasks: &Value) -> Vec<(String, String)> {
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let status = |v: &Value| v["status"].as_str().unwrap_or("(none)").to_string();
    let mut out = Vec::new();
    for t in tasks.as_array().unwrap() {
        out.push((id(&t["id"]), status(t)));
        for s in t["subtasks"].as_array().into_iter().flatten() {
            out.push((format!("{}.{}", id(&t["id"]), id(&s["id"])), status(s)));
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The file read by TaskMaster's own CLI: `task-master list --with-subtasks --format json`
/// in a project holding it (TaskMaster validates every task it loads: id, title,
/// description, status among its seven, priority). Returns the listed tasks.
fn taskmaster_list(tasks_json: &str, tag: Option<&str>) -> Value {
    let project = tempfile::tempdir().unwrap();
    let tasks_dir = project.path().join(".taskmaster/tasks");
    std::fs::create_dir_all(&tasks_dir).unwrap();
    std::fs::write(tasks_dir.join("tasks.json"), tasks_json).unwrap();
    let mut cmd = Command::new(taskmaster_cli());
    cmd.args(["list", "--with-subtasks", "--format", "json", "--project"])
        .arg(project.path())
        .current_dir(project.path())
        .env("HOME", project.path())
        .env("TASKMASTER_SKIP_AUTO_UPDATE", "1")
        .env("TASKMASTER_STORAGE_TYPE", "file");
    if let Some(tag) = tag {
        cmd.args(["--tag", tag]);
    }
    let r = run_with_deadline(cmd, Duration::from_secs(90));
    assert_eq!(
        r.code(),
        0,
        "task-master list rejected the file:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    // Warnings (e.g. about dependencies) may precede the JSON, and tips follow it.
    let start = r.stdout.find('{').unwrap_or_else(|| {
        panic!(
            "task-master list printed no JSON:\n{}\n{}",
            r.stdout, r.stderr
        )
    });
    let listed: Value = serde_json::Deserializer::from_str(&r.stdout[start..])
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| {
            panic!(
                "task-master list output is not JSON:\n{}\n{}",
                r.stdout, r.stderr
            )
        });
    listed["tasks"].clone()
}

#[test]
fn update_source_tagged_expanded_marks_done_and_taskmaster_reads_it() {
    let (dir, agent) = project(TAGGED);
    let r = run(
        dir.path(),
        &agent,
        &["--expand-subtasks"],
        &[("WAIT_STATUS", "1"), ("TM_TAG", "master")],
    );
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("--update-source"), "{}", r.stderr);

    // The done task was not run; every other one saw itself in-progress while it ran.
    assert!(
        !dir.path().join("ran-1").exists(),
        "task 1 is done: not run"
    );
    let mut log = lines(&dir.path().join("agent.log"));
    log.sort();
    assert_eq!(
        log,
        [
            "2\tin-progress",
            "2.1\tin-progress",
            "2.2\tin-progress",
            "3\tin-progress",
            "3.1\tin-progress"
        ]
    );

    let after_text = std::fs::read_to_string(dir.path().join("tasks.json")).unwrap();
    let after: Value = serde_json::from_str(&after_text).unwrap();
    let before: Value = serde_json::from_str(TAGGED).unwrap();
    assert_eq!(
        statuses(&after["master"]["tasks"]),
        pairs(&[
            ("1", "done"),
            ("2", "done"),
            ("2.1", "done"),
            ("2.2", "done"),
            ("3", "done"),
            ("3.1", "done"),
        ])
    );
    // The other tag is untouched, and so is every field but the statuses: in value, and in
    // the bytes (order, layout, escapes such as \u00e9 and 1.50e0).
    assert_eq!(after["feature-billing"], before["feature-billing"]);
    assert_eq!(strip(&after), strip(&before));
    assert_eq!(without_statuses(&after_text), without_statuses(TAGGED));
    assert!(after_text.contains("caf\\u00e9") && after_text.contains("1.50e0"));
    // The added status (2.2 had none) is laid out like its neighbours.
    assert!(
        after_text.contains("\"dependencies\": [1],\n            \"status\": \"done\"\n"),
        "{after_text}"
    );
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // TaskMaster's own CLI loads the file and sees the same statuses.
    let listed = taskmaster_list(&after_text, Some("master"));
    assert_eq!(
        statuses(&listed),
        statuses(&after["master"]["tasks"]),
        "{listed:#}"
    );
    let billing = taskmaster_list(&after_text, Some("feature-billing"));
    assert_eq!(statuses(&billing), pairs(&[("1", "pending")]));

    // Run again: everything is done, so nothing runs, the file stays as it is, and ordo says
    // so and exits 0 (not "job has no tasks").
    let r = run(dir.path(), &agent, &["--expand-subtasks"], &[]);
    assert!(r.stderr.contains("already done"), "{}", r.stderr);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("nothing to do: all "), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tasks.json")).unwrap(),
        after_text
    );
}

#[test]
fn update_source_untagged_subtasks_follow_and_failures_go_back() {
    let (dir, agent) = project(UNTAGGED);
    let r = run(
        dir.path(),
        &agent,
        &[],
        &[("WAIT_STATUS", "1"), ("FAIL_TASK", "3")],
    );
    assert_eq!(r.code(), 1, "task 3 fails:\n{}\n{}", r.stdout, r.stderr);
    assert!(
        !dir.path().join("ran-1").exists(),
        "task 1 is done: not run"
    );
    assert!(
        !dir.path().join("ran-4").exists(),
        "task 4 depends on a failure"
    );
    let log = lines(&dir.path().join("agent.log"));
    assert!(log.iter().all(|l| l.ends_with("\tin-progress")), "{log:?}");
    assert_eq!(log.first().map(String::as_str), Some("2\tin-progress"));
    assert!(log.iter().any(|l| l.starts_with("3\t")), "{log:?}");

    let after_text = std::fs::read_to_string(dir.path().join("tasks.json")).unwrap();
    let after: Value = serde_json::from_str(&after_text).unwrap();
    assert_eq!(
        statuses(&after["tasks"]),
        pairs(&[
            ("1", "done"),
            ("2", "done"),
            ("2.1", "done"),
            ("2.2", "done"),
            ("2.3", "done"),
            // Failed: back to what it was; never started: as it was.
            ("3", "review"),
            ("4", "pending"),
        ])
    );
    assert_eq!(
        strip(&after),
        strip(&serde_json::from_str(UNTAGGED).unwrap())
    );
    assert_eq!(without_statuses(&after_text), without_statuses(UNTAGGED));

    let listed = taskmaster_list(&after_text, None);
    let top: Vec<(String, String)> = statuses(&listed)
        .into_iter()
        .filter(|(id, _)| !id.contains('.'))
        .collect();
    assert_eq!(
        top,
        pairs(&[
            ("1", "done"),
            ("2", "done"),
            ("3", "review"),
            ("4", "pending")
        ])
    );
}

#[test]
fn update_source_survives_a_broken_file_and_refuses_other_formats() {
    let (dir, agent) = project(UNTAGGED);
    // Task 2 breaks the file as it ends: its `done` cannot be written, nor task 3's
    // statuses; the job goes on and succeeds, and says what was not written.
    let r = run(
        dir.path(),
        &agent,
        &["--include-done"],
        &[("BREAK_TASK", "2")],
    );
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let summary = r.json();
    assert_eq!(summary["state"], "succeeded", "{summary:#}");
    for t in ["1", "2", "3", "4"] {
        assert!(dir.path().join(format!("ran-{t}")).exists(), "task {t} ran");
    }
    let file = dir.path().join("tasks.json");
    let file = std::fs::canonicalize(&file).unwrap();
    let warning = format!(
        "warning: --update-source: {}: not valid JSON",
        file.display()
    );
    assert!(r.stderr.contains(&warning), "{}", r.stderr);
    assert_eq!(
        r.stderr.matches(&warning).count(),
        1,
        "said once while it lasts:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("statuses not written: ") && r.stderr.contains("4 → done"),
        "{}",
        r.stderr
    );
    // The broken file is the user's: left as it is.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"master\": {\"tasks\": ["
    );

    // Not a TaskMaster file: refused before anything runs.
    let other = write(
        dir.path(),
        "subtasks.json",
        r#"{"subtasks":[{"id":"a","description":"A","command":"touch ran-a"}],"executionMode":"parallel"}"#,
    );
    let r = ordo_in(dir.path(), &["run", &other, "--update-source"], &[]);
    assert_eq!(r.code(), 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("--update-source") && r.stderr.contains("is read as subtasks"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("ran-a").exists());
}
