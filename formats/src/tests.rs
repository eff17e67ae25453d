//! Tests of every format against this repository's fixtures (`tests/fixtures`, always) and the
//! shared conformance set of real files (`../shared/examples`, or `$ORDO_SHARED_EXAMPLES`, when
//! that directory exists), plus robustness (the property tests and the worst cases are in
//! `hostile.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ordo_proto::{Dag, ExecutionMode, JobSpec, Jump, TaskName};

use super::*;
use crate::json_positions::{json_positions, pointer_key};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");

fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

/// The shared conformance set: `$ORDO_SHARED_EXAMPLES`, else `../shared/examples` beside the
/// repository. `None` when that directory does not exist, which is said once on stderr.
pub(super) fn shared_dir() -> Option<PathBuf> {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    let dir = std::env::var_os("ORDO_SHARED_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples"));
    if dir.is_dir() {
        return Some(dir);
    }
    SKIPPED.call_once(|| {
        // Straight to stderr: the test harness would capture `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "note: shared example set not found at {}: skipped, tests use tests/fixtures only",
            dir.display()
        );
    });
    None
}

/// A file of the shared conformance set, if the set is there.
fn shared(rel: &str) -> Option<PathBuf> {
    shared_dir().map(|d| d.join(rel))
}

/// Every example spec: the fixtures, then the shared set when present; each sorted.
pub(super) fn examples() -> Vec<PathBuf> {
    let mut out = spec_files(Path::new(FIXTURES));
    assert!(out.len() >= 10, "fixtures found: {out:?}");
    if let Some(dir) = shared_dir() {
        out.extend(spec_files(&dir));
    }
    out
}

/// The spec files of an example set: those in its one-directory-per-format layout (a
/// directory there is a project layout such as `.taskmaster/`, read by the tests about it).
fn spec_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["json", "markdown", "prompter", "taskmaster"] {
        let dir = root.join(sub);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn load_ok(path: &Path, opts: &LoadOptions) -> (Loaded, Dag) {
    let label = path.display().to_string();
    let loaded = load(path, opts).unwrap_or_else(|e| panic!("{label}: {e:?}"));
    let dag = check(&loaded, &label).unwrap_or_else(|e| panic!("{label}: {e:?}"));
    (loaded, dag)
}

fn parse_ok(label: &str, text: &str, opts: &LoadOptions) -> Loaded {
    parse(label, text, opts).unwrap_or_else(|e| {
        panic!(
            "{label}: {}",
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn names(spec: &JobSpec) -> Vec<&str> {
    spec.tasks.iter().map(|t| t.name.as_str()).collect()
}

fn task<'a>(spec: &'a JobSpec, name: &str) -> &'a ordo_proto::TaskSpec {
    spec.tasks
        .iter()
        .find(|t| t.name.as_str() == name)
        .unwrap_or_else(|| panic!("no task {name}"))
}

fn deps<'a>(spec: &'a JobSpec, name: &str) -> Vec<&'a str> {
    task(spec, name)
        .depends_on
        .iter()
        .map(|d| d.as_str())
        .collect()
}

/// Levels as task names.
fn levels(dag: &Dag) -> Vec<Vec<String>> {
    dag.levels()
        .iter()
        .map(|l| {
            l.iter()
                .map(|&t| dag.names[t as usize].to_string())
                .collect()
        })
        .collect()
}

fn opts(format: Option<Format>) -> LoadOptions {
    LoadOptions {
        format,
        ..Default::default()
    }
}

/// TaskMaster subtasks expanded, every status included (the whole graph).
fn expanded() -> LoadOptions {
    LoadOptions {
        expand_subtasks: true,
        include_done: true,
        ..Default::default()
    }
}

#[test]
fn every_example_parses_and_validates() {
    for path in examples() {
        let rel = path.display().to_string();
        for expand in [false, true] {
            let o = LoadOptions {
                expand_subtasks: expand,
                ..Default::default()
            };
            let loaded = load(&path, &o).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
            // A file whose tasks are all done is valid, with nothing to run.
            if loaded.nothing_to_do().is_none() {
                check(&loaded, &rel).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
            }
            assert!(!loaded.spec.name.is_empty(), "{rel}");
            for t in &loaded.spec.tasks {
                assert!(
                    loaded.positions.contains_key(&t.name),
                    "{rel}: {} has no position",
                    t.name
                );
            }
            // The only warnings of an example: items or tasks done, cancelled or deferred (or
            // depending on such), left out; a tag read in place of `master`; subtasks sharing
            // an id.
            assert!(
                loaded.warnings.iter().all(|w| w.contains(": not run")
                    || w.contains("reading its only tag")
                    || w.contains("more than one subtask with id")),
                "{rel}: {:?}",
                loaded.warnings
            );
        }
    }
}

fn assert_detected(path: &Path, want: Format) {
    let rel = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(detect(&rel, &text), want, "{rel}");
    // Content alone, as from stdin.
    assert_eq!(detect("-", &text), want, "{rel} by content");
}

#[test]
fn detection_by_extension_and_content() {
    let cases = [
        ("prompter/release-train.toml", Format::Toml),
        ("prompter/docs-overhaul.toml", Format::Toml),
        ("prompter/claude-command.toml", Format::Toml),
        ("json/log-report.json", Format::MarkdownJson),
        ("json/claude-code-mcp_tasks.json", Format::TaskList),
        ("json/claude-code-mcp_mixed.json", Format::TaskList),
        ("json/subtasks_parallel.json", Format::Subtasks),
        ("json/subtasks_sequential.json", Format::Subtasks),
        ("taskmaster/offline-mode_tasks.json", Format::TaskMaster),
        ("taskmaster/ci-hardening_tasks.json", Format::TaskMaster),
        ("taskmaster/all-done_tasks.json", Format::TaskMaster),
        ("taskmaster/empty-tag_tasks.json", Format::TaskMaster),
        ("taskmaster/empty-untagged_tasks.json", Format::TaskMaster),
        ("taskmaster/single-tag_tasks.json", Format::TaskMaster),
        ("taskmaster/subtask-ids_tasks.json", Format::TaskMaster),
        ("taskmaster/many-done_tasks.json", Format::TaskMaster),
        ("markdown/log-report.md", Format::Markdown),
        ("markdown/feature-flag-rollout.md", Format::Markdown),
        ("markdown/build-and-package.md", Format::Markdown),
        ("markdown/checklist.md", Format::Markdown),
    ];
    for (rel, want) in cases {
        assert_detected(&fixture(rel), want);
    }
    // Every fixture is in the table, and the fixtures cover every format but canonical JSON.
    assert_eq!(spec_files(Path::new(FIXTURES)).len(), cases.len());
    for f in Format::ALL.into_iter().filter(|&f| f != Format::Json) {
        assert!(cases.iter().any(|&(_, c)| c == f), "no fixture for {f}");
    }
    assert_eq!(
        detect("x.json", r#"{"tasks":[{"name":"a","command":"true"}]}"#),
        Format::Json
    );
    assert_eq!(
        detect("x.json", r#"{"tasks":[{"id":1,"title":"a"}]}"#),
        Format::TaskMaster
    );
    assert_eq!(
        detect("x.json", r#"{"name":"j","settings":{}}"#),
        Format::Json
    );
    assert_eq!(detect("x.json", "not json"), Format::Json);
    assert_eq!(detect("x.TOML", "{"), Format::Toml);
    for f in Format::ALL {
        assert_eq!(f.to_string().parse::<Format>(), Ok(f));
    }
    assert!("yaml".parse::<Format>().is_err());
}

#[test]
fn shared_examples_are_detected() {
    let Some(dir) = shared_dir() else { return };
    let cases = [
        ("prompter/example.toml", Format::Toml),
        ("prompter/parallel-execution.toml", Format::Toml),
        (
            "json/docs_sample_tasks_mixed_mode_task.json",
            Format::MarkdownJson,
        ),
        (
            "json/extracted_task_execution_modes_parallel.json",
            Format::Subtasks,
        ),
        (
            "json/extracted_task_execution_modes_sequential.json",
            Format::Subtasks,
        ),
        (
            "taskmaster/cto-parallel-test_tasks.json",
            Format::TaskMaster,
        ),
        (
            "taskmaster/5dlabs-taskmaster-sync_tasks.json",
            Format::TaskMaster,
        ),
        (
            "markdown/docs_sample_tasks_mixed_mode_task.md",
            Format::Markdown,
        ),
        (
            "markdown/docs_tasks_004_task_execution_modes.md",
            Format::Markdown,
        ),
    ];
    for (rel, want) in cases {
        assert_detected(&dir.join(rel), want);
    }
}

#[test]
fn taskmaster_tagged_file_has_five_tasks_in_three_levels() {
    let path = fixture("taskmaster/offline-mode_tasks.json");
    let (loaded, dag) = load_ok(&path, &LoadOptions::default());
    let spec = &loaded.spec;
    assert_eq!(loaded.format, Format::TaskMaster);
    assert_eq!(spec.name, "offline-mode_tasks");
    assert_eq!(
        spec.description.as_deref(),
        Some("Offline mode for the field app")
    );
    assert_eq!(names(spec), ["1", "2", "3", "4", "5"]);
    assert_eq!(
        levels(&dag),
        vec![vec!["1", "2"], vec!["3", "4"], vec!["5"]]
    );
    assert_eq!(deps(spec, "3"), ["1", "2"]);
    // Without expansion, a dependency on subtask "2.2" means task 2.
    assert_eq!(deps(spec, "4"), ["2"]);

    let t1 = &spec.tasks[0];
    let prompt = t1.prompt.as_deref().unwrap();
    assert!(
        prompt.starts_with(
            "Task 1: Define the Sync Protocol\n\nSpecify the messages the field app and the \
             server exchange"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains("\n\nDetails:\nWrite the protocol down before any code:\n1. One message"),
        "{prompt}"
    );
    assert!(
        prompt.contains("\n\nTest strategy:\nReview the document with the server team"),
        "{prompt}"
    );
    assert!(
        prompt.ends_with(
            "\n\nSubtasks:\n- [ ] 1.1 Write the message schema\n- [ ] 1.2 Version negotiation\n\
             - [ ] 1.3 Document the conflict rules"
        ),
        "{prompt}"
    );
    assert_eq!(
        t1.description.as_deref(),
        Some(
            "Specify the messages the field app and the server exchange when the app comes back \
             online."
        )
    );
    assert_eq!(
        t1.labels.get("status").map(String::as_str),
        Some("in-progress")
    );
    assert_eq!(
        t1.labels.get("title").map(String::as_str),
        Some("Define the Sync Protocol")
    );
    // Consumed fields are not labels too.
    for consumed in ["id", "details", "testStrategy", "dependencies", "subtasks"] {
        assert!(!t1.labels.contains_key(consumed), "{consumed}");
    }
    // high / medium / low.
    let priorities: Vec<i32> = spec.tasks.iter().map(|t| t.priority).collect();
    assert_eq!(priorities, [2, 2, 1, 0, 1]);
    let t4 = &spec.tasks[3];
    assert_eq!(
        t4.labels.get("agentHint").map(String::as_str),
        Some("frontend")
    );
    // Unknown fields of any type are kept as labels, non-strings as JSON text.
    let t5 = &spec.tasks[4];
    assert_eq!(t5.labels["status"], "review");
    assert_eq!(t5.labels["complexity"], "7");
    assert_eq!(
        t5.labels["assignee"],
        r#"{"name":"qa-bot","team":"mobile"}"#
    );
    // No subtasks: no checklist.
    assert!(
        t5.prompt
            .as_deref()
            .unwrap()
            .ends_with("Test strategy:\nRuns nightly on two emulators."),
        "{:?}",
        t5.prompt
    );
    // Positions are the id values.
    let text = std::fs::read_to_string(&path).unwrap();
    let p = loaded.positions[&t4.name];
    let line = text.lines().nth(p.line as usize - 1).unwrap();
    assert_eq!(line.trim(), "\"id\": 4,");
    assert_eq!(&line[p.col as usize - 1..], "4,");

    // The other tag of the same file.
    let o = LoadOptions {
        tag: Some("feature-billing".into()),
        ..Default::default()
    };
    let (loaded, _) = load_ok(&path, &o);
    assert_eq!(names(&loaded.spec), ["1", "2"]);
    assert_eq!(deps(&loaded.spec, "2"), ["1"]);
    assert_eq!(
        loaded.spec.tasks[1].labels["title"], "Invoice Email",
        "{:?}",
        loaded.spec.tasks[1]
    );
    assert_eq!(
        loaded.spec.description.as_deref(),
        Some("Billing, developed on its own tag")
    );
    let o = LoadOptions {
        tag: Some("nope".into()),
        ..Default::default()
    };
    let err = load(&path, &o).unwrap_err();
    assert!(
        err[0].to_string().ends_with(
            "TaskMaster tag \"nope\" not found; available tags: feature-billing, master"
        ),
        "{}",
        err[0]
    );
}

#[test]
fn taskmaster_untagged_file_with_slug_ids() {
    let (loaded, dag) = load_ok(
        &fixture("taskmaster/ci-hardening_tasks.json"),
        &LoadOptions::default(),
    );
    let spec = &loaded.spec;
    assert_eq!(spec.name, "ci-hardening_tasks");
    assert_eq!(spec.description, None);
    assert_eq!(
        levels(&dag),
        vec![
            vec!["ci-cache"],
            vec!["flaky-test-quarantine"],
            vec!["release-workflow"]
        ]
    );
    // "ci-cache.restore-step" is a subtask of ci-cache: without expansion, ci-cache itself.
    assert_eq!(
        deps(spec, "release-workflow"),
        ["flaky-test-quarantine", "ci-cache"]
    );
    let t = task(spec, "flaky-test-quarantine");
    assert_eq!(t.labels["estimate"], r#"{"hours":6}"#);
    assert_eq!(task(spec, "ci-cache").labels["assignee"], "build-bot");
    // Nested subtasks are indented under their parent in the checklist.
    assert!(
        t.prompt.as_deref().unwrap().ends_with(
            "Subtasks:\n\
             - [ ] flaky-test-quarantine.detect-flakes Detect flaky tests\n\
             - [ ] flaky-test-quarantine.quarantine-list Maintain the quarantine list\n  \
             - [ ] flaky-test-quarantine.quarantine-list.format Choose the list format\n  \
             - [ ] flaky-test-quarantine.quarantine-list.expiry Expire entries after 30 days"
        ),
        "{:?}",
        t.prompt
    );
}

#[test]
fn taskmaster_expand_subtasks() {
    let o = expanded();
    let (loaded, dag) = load_ok(&fixture("taskmaster/offline-mode_tasks.json"), &o);
    let spec = &loaded.spec;
    assert_eq!(spec.tasks.len(), 5 + 8);
    assert_eq!(&names(spec)[..4], ["1.1", "1.2", "1.3", "1"]);
    // Integer dependencies of a subtask name its siblings; every subtask inherits its parent's
    // dependencies; the parent depends on all its subtasks.
    assert_eq!(deps(spec, "1.1"), Vec::<&str>::new());
    assert_eq!(deps(spec, "1.2"), ["1.1"]);
    assert_eq!(deps(spec, "1"), ["1.1", "1.2", "1.3"]);
    assert_eq!(deps(spec, "3.1"), ["1", "2"]);
    assert_eq!(deps(spec, "3.2"), ["1", "2", "3.1"]);
    // "1.3" names that subtask of another task.
    assert_eq!(deps(spec, "3.3"), ["1", "2", "1.3", "3.2"]);
    assert_eq!(deps(spec, "3"), ["1", "2", "3.1", "3.2", "3.3"]);
    assert_eq!(deps(spec, "4"), ["2.2"]);
    assert_eq!(
        levels(&dag),
        vec![
            vec!["1.1", "2.1"],
            vec!["1.2", "1.3", "2.2"],
            vec!["1", "2", "4"],
            vec!["3.1"],
            vec!["3.2"],
            vec!["3.3"],
            vec!["3"],
            vec!["5"],
        ]
    );
    let s = task(spec, "3.3");
    assert_eq!(s.labels.get("parent").map(String::as_str), Some("3"));
    assert_eq!(s.labels["status"], "pending");
    assert_eq!(task(spec, "1.1").labels["status"], "done");
    // A subtask without a priority has its parent's.
    assert_eq!(s.priority, 1);
    assert_eq!(
        s.prompt.as_deref(),
        Some(
            "Task 3.3: Conflict resolution\n\nPart of task 3: Sync Client\n\n\
             Apply the documented conflict rules to incoming changes."
        )
    );

    // Slug ids: sibling slugs mean siblings, "slug.slug" another task's subtask.
    let (loaded, _) = load_ok(&fixture("taskmaster/ci-hardening_tasks.json"), &o);
    let spec = &loaded.spec;
    assert_eq!(
        names(spec),
        [
            "ci-cache.cache-key",
            "ci-cache.restore-step",
            "ci-cache",
            "flaky-test-quarantine.detect-flakes",
            "flaky-test-quarantine.quarantine-list",
            "flaky-test-quarantine",
            "release-workflow"
        ]
    );
    assert_eq!(deps(spec, "ci-cache.restore-step"), ["ci-cache.cache-key"]);
    assert_eq!(
        deps(spec, "flaky-test-quarantine.quarantine-list"),
        ["ci-cache", "flaky-test-quarantine.detect-flakes"]
    );
    assert_eq!(
        deps(spec, "release-workflow"),
        ["flaky-test-quarantine", "ci-cache.restore-step"]
    );
    // Subtasks of a subtask stay a checklist in its prompt.
    assert!(
        task(spec, "flaky-test-quarantine.quarantine-list")
            .prompt
            .as_deref()
            .unwrap()
            .ends_with(
                "Subtasks:\n\
                 - [ ] flaky-test-quarantine.quarantine-list.format Choose the list format\n\
                 - [ ] flaky-test-quarantine.quarantine-list.expiry Expire entries after 30 days"
            )
    );

    // Integer sibling dependencies, and "N.M" from another task.
    let text = r#"{"tasks":[
        {"id":1,"title":"A","priority":"low","subtasks":[
            {"id":1,"title":"x"},{"id":2,"title":"y","dependencies":[1]}]},
        {"id":2,"title":"B","dependencies":["1.2"],"assignee":{"who":"me"}}]}"#;
    let l = parse_ok("t.json", text, &o);
    assert_eq!(names(&l.spec), ["1.1", "1.2", "1", "2"]);
    assert_eq!(deps(&l.spec, "1.2"), ["1.1"]);
    assert_eq!(deps(&l.spec, "1"), ["1.1", "1.2"]);
    assert_eq!(deps(&l.spec, "2"), ["1.2"]);
    assert_eq!(l.spec.tasks[3].labels["assignee"], r#"{"who":"me"}"#);
    assert_eq!(l.positions[&l.spec.tasks[1].name], Pos::new(3, 40));
    check(&l, "t.json").unwrap();
    // Without expansion, "1.2" means task 1.
    let l = parse_ok("t.json", text, &LoadOptions::default());
    assert_eq!(names(&l.spec), ["1", "2"]);
    assert_eq!(deps(&l.spec, "2"), ["1"]);
    assert!(
        l.spec.tasks[0]
            .prompt
            .as_deref()
            .unwrap()
            .ends_with("Subtasks:\n- [ ] 1.1 x\n- [ ] 1.2 y")
    );
}

/// The real TaskMaster files, where the shared conformance set is present.
#[test]
fn shared_taskmaster_files() {
    let Some(cto) = shared("taskmaster/cto-parallel-test_tasks.json") else {
        return;
    };
    let (loaded, dag) = load_ok(&cto, &LoadOptions::default());
    assert_eq!(loaded.format, Format::TaskMaster);
    assert_eq!(loaded.spec.tasks.len(), 10);
    assert_eq!(
        levels(&dag),
        vec![
            vec!["1", "3", "4", "6"],
            vec!["2", "5", "8"],
            vec!["7", "9"],
            vec!["10"]
        ]
    );
    let t1 = &loaded.spec.tasks[0];
    let prompt = t1.prompt.as_deref().unwrap();
    assert!(
        prompt.starts_with("Task 1: Database Schema Setup\n\n"),
        "{prompt}"
    );
    assert!(prompt.contains("\n\nDetails:\n"), "{prompt}");
    assert!(prompt.contains("\n\nTest strategy:\n"), "{prompt}");
    assert!(
        prompt.contains("\n- [ ] 1.2 Create Database Configuration"),
        "{prompt}"
    );
    assert_eq!(t1.labels.get("status").map(String::as_str), Some("pending"));
    assert_eq!(
        t1.labels.get("title").map(String::as_str),
        Some("Database Schema Setup")
    );
    assert_eq!(t1.priority, 2);
    let t6 = &loaded.spec.tasks[5];
    assert_eq!(
        t6.labels.get("agentHint").map(String::as_str),
        Some("frontend")
    );
    assert_eq!(
        loaded.spec.description.as_deref(),
        Some("Tasks for master context")
    );
    assert_eq!(loaded.spec.name, "cto-parallel-test_tasks");
    // Positions are the id values.
    let text = std::fs::read_to_string(&cto).unwrap();
    let p = loaded.positions[&t6.name];
    let line = text.lines().nth(p.line as usize - 1).unwrap();
    assert_eq!(line.trim(), "\"id\": 6,");
    assert_eq!(&line[p.col as usize - 1..], "6,");

    let o = expanded();
    let (loaded, dag) = load_ok(&cto, &o);
    let spec = &loaded.spec;
    assert_eq!(spec.tasks.len(), 10 + 35);
    assert_eq!(&names(spec)[..6], ["1.1", "1.2", "1.3", "1.4", "1.5", "1"]);
    // "2.1" strings name that subtask; every subtask inherits its parent's dependencies.
    assert_eq!(deps(spec, "2.1"), ["1"]);
    assert_eq!(deps(spec, "2.2"), ["1", "2.1"]);
    assert_eq!(deps(spec, "2.5"), ["1", "2.2", "2.3"]);
    assert_eq!(deps(spec, "2"), ["1", "2.1", "2.2", "2.3", "2.4", "2.5"]);
    assert_eq!(deps(spec, "5.1"), ["3", "4"]);
    let p = task(spec, "2.2");
    assert_eq!(p.labels.get("parent").map(String::as_str), Some("2"));
    assert!(
        p.prompt.as_deref().unwrap().starts_with(
            "Task 2.2: Implement Route Configuration\n\nPart of task 2: API Endpoints"
        )
    );
    assert!(dag.levels().len() > 4);

    // Slug ids: sibling slugs mean siblings.
    let sync = shared("taskmaster/5dlabs-taskmaster-sync_tasks.json").unwrap();
    let (loaded, _) = load_ok(&sync, &o);
    assert_eq!(
        deps(&loaded.spec, "rust-real-issues.enhanced-subtasks"),
        ["rust-sync-engine", "rust-real-issues.repo-issue-creation"]
    );
}

#[test]
fn taskmaster_statuses() {
    // Subtasks 1.1 and 2.1 of the fixture are done: left out, and what depended on them runs.
    let o = LoadOptions {
        expand_subtasks: true,
        ..Default::default()
    };
    let (loaded, _) = load_ok(&fixture("taskmaster/offline-mode_tasks.json"), &o);
    assert_eq!(loaded.spec.tasks.len(), 5 + 8 - 2);
    assert!(!names(&loaded.spec).contains(&"1.1"));
    assert_eq!(deps(&loaded.spec, "1.2"), Vec::<&str>::new());
    // One line for both.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0]
            .ends_with(": 2 tasks already done: 1.1, 2.1: not run (--include-done runs them)"),
        "{:?}",
        loaded.warnings
    );

    let text = r#"{"tasks":[
        {"id":1,"title":"A","status":"done"},
        {"id":2,"title":"B","status":"cancelled"},
        {"id":3,"title":"C","status":"deferred","subtasks":[{"id":1,"title":"c1"}]},
        {"id":4,"title":"D","dependencies":[1]},
        {"id":5,"title":"E","dependencies":[2, 4]},
        {"id":6,"title":"F","dependencies":[5]},
        {"id":7,"title":"G","status":"pending","dependencies":[1, 4]}]}"#;
    let l = parse_ok("tasks.json", text, &LoadOptions::default());
    // Done, cancelled and deferred tasks are left out; a done dependency counts as succeeded;
    // what depends on a cancelled or deferred task (even through another) is left out too.
    assert_eq!(names(&l.spec), ["4", "7"]);
    assert_eq!(deps(&l.spec, "4"), Vec::<&str>::new());
    assert_eq!(deps(&l.spec, "7"), ["4"]);
    assert_eq!(
        l.warnings,
        [
            "tasks.json:2:15: task '1' is already done: not run (--include-done runs it)",
            "tasks.json:3:15: task '2' is cancelled: not run (--include-done runs it)",
            "tasks.json:4:15: task '3' is deferred: not run (--include-done runs it)",
            "tasks.json: 2 tasks depend on a cancelled or deferred task: 5 (on 2), 6 (on 5): \
             not run",
        ]
    );
    check(&l, "tasks.json").unwrap();
    assert!(!l.positions.contains_key(&TaskName::new("1").unwrap()));
    // Expanded, a deferred task's subtasks are deferred with it.
    let l = parse_ok("tasks.json", text, &o);
    assert!(!names(&l.spec).contains(&"3.1"), "{:?}", names(&l.spec));
    // --include-done: all of them.
    let all = LoadOptions {
        include_done: true,
        ..Default::default()
    };
    let l = parse_ok("tasks.json", text, &all);
    assert_eq!(l.spec.tasks.len(), 7);
    assert!(l.warnings.is_empty());
    assert_eq!(deps(&l.spec, "5"), ["2", "4"]);
}

#[test]
fn taskmaster_dangling_dependencies_are_dropped_with_a_warning() {
    let text = r#"{"master":{"tasks":[
        {"id":1,"title":"A","dependencies":[7, "1.1"],"subtasks":[{"id":1,"title":"s"}]},
        {"id":"b","title":"B","dependencies":["1", 1, "9.9"]}]}}"#;
    let l = parse_ok("tasks.json", text, &LoadOptions::default());
    assert_eq!(deps(&l.spec, "1"), Vec::<&str>::new());
    assert_eq!(deps(&l.spec, "b"), ["1"]);
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert_eq!(
        l.warnings[0],
        "tasks.json:2:45: task '1' depends on unknown task '7'; dependency dropped"
    );
    assert!(
        l.warnings[1].contains("task 'b' depends on unknown task '9.9'"),
        "{:?}",
        l.warnings
    );
    check(&l, "tasks.json").unwrap();
}

#[test]
fn taskmaster_tags() {
    let text = r#"{"master":{"tasks":[{"id":1,"title":"A"}]},
                   "feature-x":{"tasks":[{"id":1,"title":"X"},{"id":2,"title":"Y","dependencies":[1]}]}}"#;
    let l = parse_ok("t.json", text, &LoadOptions::default());
    assert_eq!(l.spec.tasks.len(), 1);
    let o = LoadOptions {
        tag: Some("feature-x".into()),
        ..Default::default()
    };
    let l = parse_ok("t.json", text, &o);
    assert_eq!(names(&l.spec), ["1", "2"]);
    let o = LoadOptions {
        tag: Some("nope".into()),
        ..Default::default()
    };
    let err = parse("t.json", text, &o).unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "t.json:1:1: TaskMaster tag \"nope\" not found; available tags: feature-x, master"
    );
}

#[test]
fn subtasks_json() {
    let (loaded, dag) = load_ok(
        &fixture("json/subtasks_parallel.json"),
        &LoadOptions::default(),
    );
    assert_eq!(loaded.format, Format::Subtasks);
    assert_eq!(loaded.spec.name, "subtasks_parallel");
    assert_eq!(
        levels(&dag),
        vec![vec!["mirror-eu", "mirror-us"], vec!["rebuild-index"]]
    );
    assert_eq!(
        loaded.spec.settings.execution_mode,
        Some(ExecutionMode::Parallel)
    );
    assert_eq!(
        loaded.spec.tasks[0].command.as_deref(),
        Some("sleep 2 && echo 'eu mirror synced'")
    );
    assert_eq!(
        loaded.spec.tasks[0].description.as_deref(),
        Some("Sync the EU package mirror")
    );
    assert_eq!(
        deps(&loaded.spec, "rebuild-index"),
        ["mirror-eu", "mirror-us"]
    );

    let (loaded, dag) = load_ok(
        &fixture("json/subtasks_sequential.json"),
        &LoadOptions::default(),
    );
    assert_eq!(
        loaded.spec.mode(Some(ExecutionMode::Parallel)),
        ExecutionMode::Sequential
    );
    assert_eq!(
        levels(&dag),
        vec![vec!["prepare-workspace", "write-manifest", "show-manifest"]]
    );
    // Fields a subtask has and ordo does not are labels, never settings.
    let t = task(&loaded.spec, "write-manifest");
    assert_eq!(t.labels["owner"], "release-team");
    assert_eq!(t.labels["timeout"], "30");
    assert_eq!(t.timeout, None);
    assert_eq!(
        t.command.as_deref(),
        Some("printf 'v2.4.0\\n' > out/manifest && echo 'manifest written'")
    );

    let text = r#"{"subtasks":[{"id":"a","command":"true","timeout":30,"owner":"me"},
                                 {"id":2,"command":"true","dependencies":["a"]}],
                   "executionMode":"parallel"}"#;
    let l = parse_ok("s.json", text, &opts(Some(Format::Subtasks)));
    assert_eq!(l.spec.tasks[0].labels["timeout"], "30");
    assert_eq!(l.spec.tasks[0].labels["owner"], "me");
    assert_eq!(deps(&l.spec, "2"), ["a"]);
    let bad = r#"{"subtasks":[{"id":"a","command":"true","dependencies":["zzz"]}],"executionMode":"fast"}"#;
    let err = parse("s.json", bad, &LoadOptions::default()).unwrap_err();
    assert!(
        err[0].message.contains("unknown execution mode \"fast\""),
        "{err:?}"
    );
    let bad = r#"{"subtasks":[{"id":"a","command":"true","dependencies":["zzz"]}]}"#;
    let l = parse_ok("s.json", bad, &LoadOptions::default());
    let err = check(&l, "s.json").unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "s.json:1:20: task 'a' depends on unknown task 'zzz'"
    );
}

#[test]
fn claude_code_mcp_task_list() {
    let (loaded, dag) = load_ok(
        &fixture("json/claude-code-mcp_tasks.json"),
        &LoadOptions::default(),
    );
    assert_eq!(loaded.format, Format::TaskList);
    assert_eq!(loaded.spec.name, "claude-code-mcp_tasks");
    assert_eq!(
        names(&loaded.spec),
        [
            "prepare.1",
            "prepare.2",
            "survey.1",
            "survey.2",
            "survey.3",
            "report.1",
            "report.2"
        ]
    );
    // Sequential within `prepare` and `report` (no executionMode), parallel within `survey`,
    // each task after the whole of the one before.
    assert_eq!(
        levels(&dag),
        vec![
            vec!["prepare.1"],
            vec!["prepare.2"],
            vec!["survey.1", "survey.2", "survey.3"],
            vec!["report.1"],
            vec!["report.2"],
        ]
    );
    assert_eq!(deps(&loaded.spec, "survey.3"), ["prepare.2"]);
    assert_eq!(
        deps(&loaded.spec, "report.1"),
        ["survey.1", "survey.2", "survey.3"]
    );
    assert_eq!(deps(&loaded.spec, "report.2"), ["report.1"]);
    assert_eq!(
        loaded.spec.mode(Some(ExecutionMode::Sequential)),
        ExecutionMode::Parallel
    );
    let t = task(&loaded.spec, "survey.3");
    assert!(t.command.is_none());
    assert!(t.prompt.as_deref().unwrap().starts_with("How many lines"));
    assert_eq!(t.labels["expected_answer"], "1");
    assert_eq!(t.labels["title"], "Survey the sources");
    assert_eq!(t.labels["task"], "survey");
    assert_eq!(
        t.description.as_deref(),
        Some("Count what is there, each count on its own")
    );
    assert_eq!(
        task(&loaded.spec, "prepare.1").command.as_deref(),
        Some("mkdir -p build/scratch")
    );
    // Each task at its subtask's element.
    assert_eq!(
        loaded.positions[&TaskName::new("prepare.1").unwrap()],
        Pos::new(8, 7)
    );
    assert_eq!(
        loaded.positions[&TaskName::new("report.2").unwrap()],
        Pos::new(32, 7)
    );

    // Detected by content alone; a task without subtasks is one prompt task; numbers as ids.
    let text = r#"[{"id":1,"title":"Plan","description":"Write the plan"},
                   {"id":2,"executionMode":"parallel","subtasks":[{"command":"true"},{"command":"false"}]},
                   {"id":3,"subtasks":[{"prompt":"go","owner":"me"}]}]"#;
    assert_eq!(detect("-", text), Format::TaskList);
    let l = parse_ok("-", text, &LoadOptions::default());
    assert_eq!(names(&l.spec), ["1", "2.1", "2.2", "3.1"]);
    assert_eq!(
        task(&l.spec, "1").prompt.as_deref(),
        Some("Plan\n\nWrite the plan")
    );
    assert_eq!(deps(&l.spec, "2.2"), ["1"]);
    assert_eq!(deps(&l.spec, "3.1"), ["2.1", "2.2"]);
    assert_eq!(task(&l.spec, "3.1").labels["owner"], "me");

    // Errors, each at its place.
    let bad = r#"[{"id":"a","executionMode":"fast","subtasks":[{"command":"true"}]},
 {"id":"b","subtasks":[{"command":"true"},
  {"expected_answer":"4"}]},
 {"title":"no id"},
 7]"#;
    let err: Vec<String> = parse("t.json", bad, &LoadOptions::default())
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        err,
        [
            "t.json:1:28: task 'a': executionMode must be \"sequential\", \"parallel\" or \"mixed\", not \"fast\"",
            "t.json:3:3: task 'b.2': a subtask needs a \"command\" or a \"prompt\"",
            "t.json:4:2: task #3 needs an \"id\" (string or number)",
            "t.json:5:2: task #4 is not an object",
        ]
    );
    let err = parse("t.json", "{\"tasks\": 1}", &opts(Some(Format::TaskList))).unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "t.json:1:1: expected a JSON array of tasks"
    );
    let err = parse("t.json", "[]", &LoadOptions::default()).unwrap_err();
    assert_eq!(err[0].to_string(), "t.json:1:1: the task list is empty");
}

#[test]
fn markdown_checklist() {
    let (loaded, dag) = load_ok(&fixture("markdown/checklist.md"), &LoadOptions::default());
    assert_eq!(loaded.format, Format::Markdown);
    assert_eq!(loaded.spec.name, "Release checklist for the CLI");
    assert_eq!(
        loaded.spec.description.as_deref(),
        Some("Ship version 2.5 of the command-line tool.")
    );
    // Done items (1 and 5) are left out, with a warning each at their line.
    assert_eq!(
        names(&loaded.spec),
        ["item-2", "item-3", "item-4", "item-6", "item-7"]
    );
    assert_eq!(loaded.warnings.len(), 2);
    assert!(
        loaded.warnings[0].ends_with(
            "checklist.md:9:1: checklist item 'item-1' (\"Freeze the main branch\") is already \
             done ([x]): not run"
        ),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.warnings[1].contains("checklist.md:29:1: checklist item 'item-5'"));
    // Sequential, in document order; the first open item depends on nothing.
    assert_eq!(dag.levels().len(), 5);
    assert!(deps(&loaded.spec, "item-2").is_empty());
    assert_eq!(deps(&loaded.spec, "item-6"), ["item-4"]);
    let t = task(&loaded.spec, "item-2");
    assert_eq!(t.labels["title"], "Update the changelog");
    assert_eq!(t.labels["section"], "Preparation");
    assert_eq!(
        t.prompt.as_deref(),
        Some(
            "Update the changelog\n\nSection: Preparation\n\nSteps:\n\
             - Collect the merged pull requests since v2.4\n- [ ] Group them by area\n\
             - [x] Draft the summary paragraph"
        )
    );
    let t = task(&loaded.spec, "item-4");
    assert_eq!(t.labels["section"], "Verification > Automated");
    let p = t.prompt.as_deref().unwrap();
    assert!(p.contains("release profile"), "{p}");
    assert!(
        p.contains("```sh\ncargo test --release --workspace\n```"),
        "{p}"
    );
    assert!(!p.contains("belong to no item"), "{p}");
    assert!(
        task(&loaded.spec, "item-6")
            .prompt
            .as_deref()
            .unwrap()
            .ends_with("Steps:\n- Linux x86_64\n- macOS arm64")
    );
    assert_eq!(
        loaded.positions[&TaskName::new("item-7").unwrap()],
        Pos::new(36, 1)
    );

    // Parallel when the document says so; detected by content; all done is no task.
    let text = "Execution mode: parallel\n- [ ] a\n- [ ] b\n";
    assert_eq!(detect("-", text), Format::Markdown);
    let l = parse_ok("-", text, &LoadOptions::default());
    assert_eq!(names(&l.spec), ["item-1", "item-2"]);
    assert!(deps(&l.spec, "item-2").is_empty());
    let l = parse_ok("c.md", "# Done\n- [x] a\n", &LoadOptions::default());
    assert!(l.spec.tasks.is_empty());
    assert_eq!(l.warnings.len(), 1);
    // A bad mode is located; indented or unticked plain bullets are no items.
    let err = parse(
        "c.md",
        "Execution mode: sideways\n- [ ] a\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "c.md:1:1: unknown execution mode \"sideways\" (expected parallel or sequential)"
    );
    let err = parse("c.md", "# T\n- a\n  - [ ] b\n", &LoadOptions::default()).unwrap_err();
    assert!(
        err[0].message.starts_with("no task sections found"),
        "{err:?}"
    );
}

#[test]
fn markdown_json_from_the_converter() {
    let (loaded, dag) = load_ok(&fixture("json/log-report.json"), &LoadOptions::default());
    let spec = &loaded.spec;
    assert_eq!(loaded.format, Format::MarkdownJson);
    assert_eq!(spec.name, "log-report");
    assert_eq!(
        spec.description.as_deref(),
        Some("Summarise last night's service logs for the on-call engineer.")
    );
    assert_eq!(deps(spec, "task-4"), ["task-2", "task-3"]);
    assert_eq!(
        levels(&dag),
        vec![vec!["task-1"], vec!["task-2", "task-3"], vec!["task-4"]]
    );
    let t2 = &spec.tasks[1];
    assert_eq!(t2.labels["execution_mode"], "parallel");
    assert_eq!(t2.labels["status"], "not_started");
    assert_eq!(
        t2.prompt.as_deref(),
        Some(
            "Count Errors per Service\n\nCount ERROR lines per service and list the five most \
             frequent messages"
        )
    );
    assert_eq!(loaded.positions[&t2.name], Pos::new(26, 13));
    // Steps become a checklist; steps already written as checkboxes keep their mark.
    let t3 = &spec.tasks[2];
    assert_eq!(t3.labels["status"], "in_progress");
    assert_eq!(
        t3.prompt.as_deref(),
        Some(
            "Latency Percentiles\n\nCompute the p50, p95 and p99 request latency of the api \
             service\n\nSteps:\n- [ ] Parse the request durations\n- [x] Pick the percentiles"
        )
    );
}

#[test]
fn shared_subtasks_and_markdown_json_files() {
    let Some(par) = shared("json/extracted_task_execution_modes_parallel.json") else {
        return;
    };
    let (loaded, dag) = load_ok(&par, &LoadOptions::default());
    assert_eq!(loaded.format, Format::Subtasks);
    assert_eq!(levels(&dag), vec![vec!["subtask-1", "subtask-2"]]);
    assert_eq!(
        loaded.spec.settings.execution_mode,
        Some(ExecutionMode::Parallel)
    );
    assert_eq!(
        loaded.spec.tasks[0].command.as_deref(),
        Some("sleep 2 && echo 'Task 1 complete'")
    );
    assert_eq!(
        loaded.spec.tasks[0].description.as_deref(),
        Some("Independent task 1")
    );
    assert_eq!(loaded.spec.name, "extracted_task_execution_modes_parallel");

    let seq = shared("json/extracted_task_execution_modes_sequential.json").unwrap();
    let (loaded, _) = load_ok(&seq, &LoadOptions::default());
    assert_eq!(
        loaded.spec.mode(Some(ExecutionMode::Parallel)),
        ExecutionMode::Sequential
    );

    let mixed = shared("json/docs_sample_tasks_mixed_mode_task.json").unwrap();
    let (loaded, dag) = load_ok(&mixed, &LoadOptions::default());
    let spec = &loaded.spec;
    assert_eq!(spec.name, "mixed-mode-task");
    assert_eq!(
        spec.description.as_deref(),
        Some("Test the mixed execution mode with dependencies.")
    );
    assert_eq!(deps(spec, "task-5"), ["task-2", "task-3", "task-4"]);
    assert_eq!(
        levels(&dag),
        vec![
            vec!["task-1"],
            vec!["task-2", "task-3", "task-4"],
            vec!["task-5"]
        ]
    );
    let t2 = &spec.tasks[1];
    assert_eq!(t2.labels["execution_mode"], "parallel");
    assert_eq!(t2.labels["status"], "not_started");
    assert_eq!(
        t2.prompt.as_deref(),
        Some("Calculate Sum\n\nCalculate the sum of the generated numbers")
    );
    assert_eq!(loaded.positions[&t2.name], Pos::new(26, 13));
}

#[test]
fn prompter_toml_parallel_levels_follow_its_dependencies() {
    let (loaded, dag) = load_ok(
        &fixture("prompter/docs-overhaul.toml"),
        &LoadOptions::default(),
    );
    let spec = &loaded.spec;
    assert_eq!(spec.name, "docs-overhaul");
    assert_eq!(spec.settings.max_parallel_tasks, Some(3));
    assert_eq!(
        spec.mode(Some(ExecutionMode::Sequential)),
        ExecutionMode::Parallel
    );
    assert!(!spec.uses_flow_jumps());
    assert_eq!(
        levels(&dag),
        vec![
            vec![
                "audit_api_reference",
                "audit_tutorials",
                "collect_user_questions"
            ],
            vec!["restructure_navigation", "write_faq"],
            vec!["rebuild_search_index"],
            vec!["publish_preview"],
        ]
    );
    let q = task(spec, "collect_user_questions");
    assert_eq!((q.cpu_required, q.memory_required), (Some(1.0), Some(2048)));
    assert_eq!(spec.timeout(q), Some(Duration::from_secs(1200)));
    // max_retries = 1: two attempts for every task.
    assert_eq!(spec.max_attempts(q), 2);
    assert!(task(spec, "rebuild_search_index").exclusive);
    assert_eq!(task(spec, "write_faq").priority, 2);
    assert_eq!(
        spec.settings.check_interval.map(|d| d.0),
        Some(Duration::from_secs(2))
    );
    assert_eq!(loaded.positions[&spec.tasks[0].name], Pos::new(12, 8));
}

#[test]
fn prompter_toml_sequential_with_flow_jumps() {
    let (loaded, dag) = load_ok(
        &fixture("prompter/release-train.toml"),
        &LoadOptions::default(),
    );
    let spec = &loaded.spec;
    assert_eq!(spec.name, "release-train");
    assert_eq!(spec.tasks.len(), 5);
    assert!(spec.uses_flow_jumps());
    assert_eq!(levels(&dag).len(), 1, "no depends_on: one level");
    let triage = task(spec, "triage_open_issues");
    assert_eq!(spec.max_attempts(triage), 4);
    assert_eq!(spec.timeout(triage), Some(Duration::from_secs(900)));
    assert_eq!(
        (&triage.on_success, &triage.on_failure),
        (&Some(Jump::Next), &Some(Jump::Retry))
    );
    let draft = task(spec, "draft_changelog");
    // No max_attempts: max_retries = 2 gives three.
    assert_eq!(spec.max_attempts(draft), 3);
    assert_eq!(
        (&draft.on_success, &draft.on_failure),
        (&Some(Jump::Task("bump_version".into())), &Some(Jump::Stop))
    );
    let bump = task(spec, "bump_version");
    assert_eq!(
        bump.system_prompt.as_deref(),
        Some("Change only version strings. Do not reformat the files you touch.")
    );
    assert_eq!(
        bump.verify_command.as_deref(),
        Some("grep -q 'version = \"2.4.0\"' pyproject.toml")
    );
    assert_eq!(bump.on_success, Some(Jump::Stop));
    assert_eq!(spec.timeout(bump), Some(Duration::from_secs(300)));
    assert_eq!(
        spec.settings.check_interval.map(|d| d.0),
        Some(Duration::from_secs(1))
    );
}

#[test]
fn shared_prompter_files() {
    let Some(par) = shared("prompter/parallel-execution.toml") else {
        return;
    };
    // The levels the file's closing comments describe.
    let (loaded, dag) = load_ok(&par, &LoadOptions::default());
    assert_eq!(loaded.spec.settings.max_parallel_tasks, Some(4));
    assert_eq!(
        levels(&dag),
        vec![
            vec![
                "analyze_frontend",
                "analyze_backend",
                "analyze_tests",
                "memory_intensive_task"
            ],
            vec!["create_architecture_diagram", "database_migration"],
            vec!["generate_test_plan"],
            vec!["create_technical_docs"],
        ]
    );
    let m = &loaded.spec.tasks[6];
    assert_eq!((m.cpu_required, m.memory_required), (Some(2.0), Some(4096)));
    assert_eq!(
        loaded.positions[&loaded.spec.tasks[0].name],
        Pos::new(17, 8)
    );

    let example = shared("prompter/example.toml").unwrap();
    let (loaded, _) = load_ok(&example, &LoadOptions::default());
    assert_eq!(loaded.spec.tasks.len(), 6);
    assert!(loaded.spec.uses_flow_jumps());
    assert_eq!(loaded.spec.name, "example");
}

#[test]
fn markdown_mixed_mode_document() {
    let (loaded, dag) = load_ok(&fixture("markdown/log-report.md"), &LoadOptions::default());
    let spec = &loaded.spec;
    assert_eq!(spec.name, "Nightly Log Report");
    assert_eq!(
        spec.description.as_deref(),
        Some("Summarise last night's service logs for the on-call engineer.")
    );
    assert_eq!(names(spec), ["task-1", "task-2", "task-3", "task-4"]);
    assert_eq!(deps(spec, "task-4"), ["task-2", "task-3"]);
    assert_eq!(deps(spec, "task-2"), ["task-1"]);
    assert_eq!(
        levels(&dag),
        vec![vec!["task-1"], vec!["task-2", "task-3"], vec!["task-4"]]
    );
    let t1 = &spec.tasks[0];
    assert_eq!(t1.labels["title"], "Fetch Service Logs");
    assert_eq!(t1.labels["execution_mode"], "sequential");
    assert_eq!(
        t1.description.as_deref(),
        Some("Download last night's logs of the api, worker and scheduler services into logs/")
    );
    assert_eq!(
        t1.prompt.as_deref(),
        Some(
            "Task 1: Fetch Service Logs\n\nDownload last night's logs of the api, worker and \
             scheduler services into logs/"
        )
    );
    // Task 3 has no `Execution mode:` line: its heading's "(Parallel)" says it.
    assert_eq!(spec.tasks[2].labels["execution_mode"], "parallel");
    assert_eq!(spec.tasks[2].labels["title"], "Latency Percentiles");
    assert_eq!(loaded.positions[&spec.tasks[3].name], Pos::new(32, 1));

    // The same graph as the converter's JSON of this document.
    let (json, json_dag) = load_ok(&fixture("json/log-report.json"), &LoadOptions::default());
    assert_eq!(names(&json.spec), names(spec));
    assert_eq!(levels(&json_dag), levels(&dag));
}

#[test]
fn markdown_task_document_with_steps_and_verification() {
    let (loaded, dag) = load_ok(
        &fixture("markdown/feature-flag-rollout.md"),
        &LoadOptions::default(),
    );
    let spec = &loaded.spec;
    assert_eq!(
        spec.name,
        "Task 012: Feature Flag Rollout (Staff, Then Everyone)"
    );
    assert!(
        spec.description
            .as_deref()
            .unwrap()
            .starts_with("Roll out the new checkout flow behind a feature flag")
    );
    assert_eq!(names(spec), ["task-1", "task-2", "task-3", "task-4"]);
    assert_eq!(
        levels(&dag),
        vec![vec!["task-1"], vec!["task-2", "task-4"], vec!["task-3"]]
    );
    assert!(spec.tasks.iter().all(|t| t.command.is_none()));
    let priorities: Vec<i32> = spec.tasks.iter().map(|t| t.priority).collect();
    assert_eq!(priorities, [2, 1, 2, 0]);
    assert_eq!(spec.tasks[0].labels["status"], "Not Started");
    let t2 = &spec.tasks[1];
    assert_eq!(t2.labels["title"], "Staff-Only Stage");
    assert_eq!(t2.labels["status"], "In Progress");
    assert_eq!(t2.labels["complexity"], "MEDIUM");
    assert_eq!(t2.labels["impact"], "HIGH");
    assert_eq!(
        t2.description.as_deref(),
        Some("Turn the flag on for employees only and watch the checkout errors for a day.")
    );
    let prompt = t2.prompt.as_deref().unwrap();
    assert!(
        prompt.starts_with("Task 2: Staff-Only Stage\n\nTurn the flag on for employees only"),
        "{prompt}"
    );
    assert!(
        prompt.contains(
            "\n\nSteps:\n- [ ] 2.1 Target the staff segment:\n  - web: the employee cookie\n  \
             - mobile: the account's staff attribute\n- [ ] 2.2 Compare"
        ),
        "{prompt}"
    );
    assert!(
        prompt.ends_with(
            "\n\nVerification:\n\
             - No rise in checkout errors over 24 hours\n\
             - Staff sessions show the new flow"
        ),
        "{prompt}"
    );
    // The usage table and progress sections after the tasks are not part of task 4.
    let last = spec.tasks[3].prompt.as_deref().unwrap();
    assert!(
        last.ends_with("Verification:\n- Every client shows the old flow within 60 seconds"),
        "{last}"
    );
    assert_eq!(loaded.positions[&spec.tasks[3].name], Pos::new(70, 1));
}

#[test]
fn markdown_command_document() {
    let (loaded, dag) = load_ok(
        &fixture("markdown/build-and-package.md"),
        &LoadOptions::default(),
    );
    let spec = &loaded.spec;
    assert_eq!(spec.name, "Static Site Build");
    assert_eq!(spec.settings.execution_mode, Some(ExecutionMode::Parallel));
    // The heading inside the fence before the tasks is not a task.
    assert_eq!(names(spec), ["task-1", "task-2", "task-3", "task-4"]);
    assert_eq!(
        levels(&dag),
        vec![vec!["task-1"], vec!["task-2", "task-3"], vec!["task-4"]]
    );
    assert!(spec.tasks.iter().all(|t| t.prompt.is_none()));
    let t1 = &spec.tasks[0];
    assert_eq!(t1.command.as_deref(), Some("mkdir -p dist"));
    assert_eq!(t1.verify_command.as_deref(), Some("test -d dist"));
    assert_eq!(
        t1.description.as_deref(),
        Some("Start from a dist/ directory")
    );
    let t2 = &spec.tasks[1];
    assert_eq!(
        t2.command.as_deref(),
        Some(
            "printf '<h1>Ordo fixtures</h1>\\n' > dist/index.html\n\
             printf '<h1>About</h1>\\n' > dist/about.html"
        )
    );
    // A fence after a line about verifying is the verify command.
    assert_eq!(
        t2.verify_command.as_deref(),
        Some("grep -q 'Ordo fixtures' dist/index.html")
    );
    assert_eq!(t2.labels["title"], "Render the Pages");
    assert_eq!(t2.labels["execution_mode"], "parallel");
    let t3 = &spec.tasks[2];
    assert_eq!(
        t3.command.as_deref(),
        Some("printf 'index.html\\nabout.html\\n' > dist/sitemap.txt")
    );
    assert_eq!(t3.verify_command, None);
    assert!(
        t3.description
            .as_deref()
            .unwrap()
            .contains("```python\nprint(\"\\n\".join([\"index.html\", \"about.html\"]))\n```"),
        "{:?}",
        t3.description
    );
    let t4 = &spec.tasks[3];
    assert_eq!(deps(spec, "task-4"), ["task-2", "task-3"]);
    assert_eq!(t4.command.as_deref(), Some("tar -cf site.tar -C dist ."));
    assert_eq!(
        t4.verify_command.as_deref(),
        Some("tar -tf site.tar | grep -q about.html")
    );
    assert_eq!(t4.labels["status"], "In Progress");
    assert_eq!(t4.labels["owner"], "docs-team");
    assert_eq!(t4.priority, 2);
    assert_eq!(loaded.positions[&t4.name], Pos::new(47, 1));
}

#[test]
fn shared_markdown_documents() {
    let Some(mixed) = shared("markdown/docs_sample_tasks_mixed_mode_task.md") else {
        return;
    };
    let (loaded, dag) = load_ok(&mixed, &LoadOptions::default());
    let spec = &loaded.spec;
    assert_eq!(spec.name, "Mixed Mode Task");
    assert_eq!(
        spec.description.as_deref(),
        Some("Test the mixed execution mode with dependencies.")
    );
    assert_eq!(
        names(spec),
        ["task-1", "task-2", "task-3", "task-4", "task-5"]
    );
    assert_eq!(deps(spec, "task-5"), ["task-2", "task-3", "task-4"]);
    assert_eq!(deps(spec, "task-2"), ["task-1"]);
    assert_eq!(
        levels(&dag),
        vec![
            vec!["task-1"],
            vec!["task-2", "task-3", "task-4"],
            vec!["task-5"]
        ]
    );
    let t1 = &spec.tasks[0];
    assert_eq!(t1.labels["title"], "Generate Random Numbers");
    assert_eq!(t1.labels["execution_mode"], "sequential");
    assert_eq!(
        t1.description.as_deref(),
        Some("Generate a list of 10 random integers between 1 and 100")
    );
    assert_eq!(
        t1.prompt.as_deref(),
        Some(
            "Task 1: Generate Random Numbers\n\nGenerate a list of 10 random integers between 1 \
             and 100"
        )
    );
    assert_eq!(spec.tasks[2].labels["execution_mode"], "parallel");
    assert_eq!(loaded.positions[&spec.tasks[4].name], Pos::new(39, 1));

    // The same graph as the converter's own JSON output of this document.
    let json = shared("json/docs_sample_tasks_mixed_mode_task.json").unwrap();
    let (json, json_dag) = load_ok(&json, &LoadOptions::default());
    assert_eq!(names(&json.spec), names(spec));
    assert_eq!(levels(&json_dag), levels(&dag));

    let modes = shared("markdown/docs_tasks_004_task_execution_modes.md").unwrap();
    let (loaded, dag) = load_ok(&modes, &LoadOptions::default());
    let spec = &loaded.spec;
    assert_eq!(
        spec.name,
        "Task 004: Task Execution Modes (Sequential and Parallel)"
    );
    assert!(
        spec.description
            .as_deref()
            .unwrap()
            .starts_with("Implement task execution modes")
    );
    assert_eq!(
        names(spec),
        ["task-1", "task-2", "task-3", "task-4", "task-5"]
    );
    assert_eq!(dag.levels().len(), 1);
    let t4 = &spec.tasks[3];
    assert_eq!(t4.labels["title"], "Mixed Mode Task Execution");
    assert_eq!(t4.labels["status"], "Not Started");
    assert_eq!(t4.labels["complexity"], "HIGH");
    assert_eq!(t4.priority, 2);
    assert_eq!(spec.tasks[2].priority, 1);
    assert_eq!(
        t4.description.as_deref(),
        Some(
            "This task will implement a mixed execution flow with both sequential and parallel tasks."
        )
    );
    let prompt = t4.prompt.as_deref().unwrap();
    assert!(
        prompt.starts_with("Task 4: Mixed Mode Task Execution\n\nThis task will"),
        "{prompt}"
    );
    assert!(
        prompt.contains(
            "Steps:\n- [ ] 4.1 Create a task with 5 subtasks:\n  - Sequential: \"Generate a list"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains("\n- [ ] 4.5 Create verification report"),
        "{prompt}"
    );
    assert!(
        prompt.ends_with(
            "Verification:\n\
             - All results must be mathematically correct\n\
             - Parallel tasks must execute concurrently\n\
             - Sequential tasks must execute in order\n\
             - Dependencies must be respected"
        ),
        "{prompt}"
    );
    // The usage table and report sections after the tasks are not part of task 5.
    assert!(!spec.tasks[4].prompt.as_deref().unwrap().contains("Usage"));
}

#[test]
fn markdown_commands_fences_and_errors() {
    let text = "# Build ✅ Done\n\
        \n\
        **Objective**: Build and test.\n\
        \n\
        ```sh\n\
        ### Task 9: not a heading inside a fence\n\
        ```\n\
        \n\
        ## Task 1: Build 🚧 In Progress\n\
        - Compile everything\n\
        - command: `cargo build`\n\
        - verify: `test -f target/x`\n\
        \n\
        ## Task 2: Test (Parallel)\n\
        - Depends on: Task 1\n\
        ```python\n\
        print('kept as text')\n\
        ```\n\
        \n\
        ```bash\n\
        cargo test\n\
        ### Task 3: still in the fence\n\
        ```\n\
        \n\
        Verification:\n\
        ```sh\n\
        test -d target\n\
        ```\n";
    let l = parse_ok("doc.md", text, &LoadOptions::default());
    let spec = &l.spec;
    assert_eq!(spec.name, "Build");
    assert_eq!(names(spec), ["task-1", "task-2"]);
    let t1 = &spec.tasks[0];
    assert_eq!(t1.command.as_deref(), Some("cargo build"));
    assert_eq!(t1.verify_command.as_deref(), Some("test -f target/x"));
    assert_eq!(t1.description.as_deref(), Some("Compile everything"));
    assert_eq!(t1.labels["status"], "In Progress");
    assert!(t1.prompt.is_none());
    let t2 = &spec.tasks[1];
    assert_eq!(
        t2.command.as_deref(),
        Some("cargo test\n### Task 3: still in the fence")
    );
    assert_eq!(t2.verify_command.as_deref(), Some("test -d target"));
    assert_eq!(t2.labels["execution_mode"], "parallel");
    assert_eq!(t2.labels["title"], "Test");
    assert!(
        t2.description
            .as_deref()
            .unwrap()
            .contains("```python\nprint('kept as text')\n```")
    );
    check(&l, "doc.md").unwrap();

    // A dependency on a missing task is a validation error at the heading of the task.
    let text = "# Doc\n\n### Task 1: A\n- do a\n\n### Task 2: B\n- Depends on: Task 1, Task 9\n";
    let l = parse_ok("doc.md", text, &LoadOptions::default());
    let err = check(&l, "doc.md").unwrap_err();
    assert_eq!(
        err.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["doc.md:6:1: task 'task-2' depends on unknown task 'task-9'"]
    );

    // No task sections.
    let err = parse(
        "doc.md",
        "# Title\n\nJust prose.\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        err[0]
            .to_string()
            .starts_with("doc.md: no task sections found"),
        "{err:?}"
    );
    // A bad job-wide mode is located.
    let err = parse(
        "doc.md",
        "# T\nExecution mode: sideways\n### Task 1: A\n- a\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        err[0]
            .to_string()
            .starts_with("doc.md:2:1: unknown execution mode"),
        "{err:?}"
    );
}

#[test]
fn markdown_task_headings() {
    let h = markdown::task_heading("### Task 2: Calculate Sum (Parallel)").unwrap();
    assert_eq!(
        (h.id.as_str(), h.title.as_str(), h.note.as_deref()),
        ("2", "Calculate Sum", Some("Parallel"))
    );
    let h = markdown::task_heading("### Task 1: Answer Simple Geography Questions ⏳ Not Started")
        .unwrap();
    assert_eq!(h.title, "Answer Simple Geography Questions");
    assert_eq!(h.status.as_deref(), Some("Not Started"));
    let h = markdown::task_heading("## Task 2.1 - Split → merge").unwrap();
    assert_eq!((h.id.as_str(), h.title.as_str()), ("2.1", "Split → merge"));
    assert!(markdown::task_heading("# Task 1: top level is the job").is_none());
    assert!(markdown::task_heading("### Task Summary").is_none());
    assert!(markdown::task_heading("### Tasks").is_none());
    assert!(markdown::task_heading("    ### Task 1: code block").is_none());
    assert!(markdown::task_heading("###Task 1: no space").is_none());
}

/// Parsing the canonical JSON/TOML output gives back the same spec and the same validation.
#[test]
fn conversions_round_trip() {
    for path in examples() {
        let rel = path.display().to_string();
        for expand in [false, true] {
            // Every task, so that a file whose tasks are all done has some.
            let o = LoadOptions {
                expand_subtasks: expand,
                include_done: true,
                ..Default::default()
            };
            let loaded = load(&path, &o).unwrap();
            if loaded.spec.tasks.is_empty() {
                continue;
            }
            let dag = check(&loaded, &rel).unwrap();
            let json = to_json(&loaded.spec);
            let again = parse_ok("out.json", &json, &LoadOptions::default());
            assert_eq!(again.format, Format::Json, "{rel}");
            assert_eq!(again.spec, loaded.spec, "{rel} via JSON");
            assert_eq!(
                levels(&check(&again, "out.json").unwrap()),
                levels(&dag),
                "{rel}"
            );
            assert_eq!(again.positions.len(), loaded.positions.len(), "{rel}");

            let toml = to_toml(&loaded.spec).unwrap();
            let again = parse_ok("out.toml", &toml, &LoadOptions::default());
            assert_eq!(again.spec, loaded.spec, "{rel} via TOML:\n{toml}");
            assert_eq!(
                levels(&check(&again, "out.toml").unwrap()),
                levels(&dag),
                "{rel}"
            );
            assert_eq!(again.positions.len(), loaded.positions.len(), "{rel}");
        }
    }
}

#[test]
fn canonical_errors_are_located() {
    let text = "name = \"j\"\n\n[[tasks]]\nname = \"a\"\ncomand = \"true\"\n";
    let err = parse("job.toml", text, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].pos, Some(Pos::new(5, 1)), "{}", err[0]);
    assert!(
        err[0].message.contains("unknown field `comand`"),
        "{}",
        err[0]
    );
    assert!(
        err[0]
            .to_string()
            .starts_with("job.toml:5:1: unknown field `comand`")
    );

    let text = "{\n  \"tasks\": [\n    {\"name\": \"a\", \"comand\": \"true\"}\n  ]\n}\n";
    let err = parse("job.json", text, &LoadOptions::default()).unwrap_err();
    assert_eq!(err[0].pos.map(|p| p.line), Some(3), "{}", err[0]);
    assert!(
        err[0].message.starts_with("unknown field `comand`"),
        "{}",
        err[0]
    );

    let err = parse("job.json", "{\"tasks\": [", &LoadOptions::default()).unwrap_err();
    assert!(
        err[0]
            .to_string()
            .starts_with("job.json:1:11: invalid JSON: EOF"),
        "{}",
        err[0]
    );

    let err = parse(
        "job.toml",
        "[[tasks]]\nname = \"\"\ncommand = \"x\"\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err[0].pos.map(|p| p.line), Some(2), "{}", err[0]);
    assert!(err[0].message.contains("task name is empty"), "{}", err[0]);
}

#[test]
fn validation_errors_are_located_at_tasks() {
    let text = "name = \"cyc\"\n\
        [[tasks]]\n\
        name = \"a\"\n\
        command = \"true\"\n\
        depends_on = [\"c\"]\n\
        \n\
        [[tasks]]\n\
        name = \"b\"\n\
        command = \"true\"\n\
        depends_on = [\"a\"]\n\
        \n\
        [[tasks]]\n\
          name = \"c\"\n\
        command = \"true\"\n\
        depends_on = [\"b\"]\n";
    let l = parse_ok("cyc.toml", text, &LoadOptions::default());
    assert_eq!(l.positions[&l.spec.tasks[2].name], Pos::new(13, 8));
    let err = check(&l, "cyc.toml").unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "cyc.toml:3:8: dependency cycle: a → b → c → a (each must finish before the next)"
    );

    let text = r#"{"tasks":[{"name":"a","command":"true"},
                  {"name":"b","command":"true","depends_on":["zzz"]}]}"#;
    let l = parse_ok("j.json", text, &LoadOptions::default());
    let err = check(&l, "j.json").unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "j.json:2:27: task 'b' depends on unknown task 'zzz'"
    );

    let l = parse_ok("empty.toml", "name = \"x\"\n", &LoadOptions::default());
    assert_eq!(
        check(&l, "empty.toml").unwrap_err()[0].to_string(),
        "empty.toml: job has no tasks"
    );
}

#[test]
fn size_and_nesting_caps() {
    let deep_toml = format!("x = {}", "[".repeat(100_000));
    let deep_json = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let dotted = format!("{} = 1\n", vec!["a"; 100_000].join("."));
    let header = format!("[{}]\n", vec!["a"; 100_000].join("."));
    let inline = format!("x = {}1{}\n", "{a.a.a = ".repeat(60), "}".repeat(60));
    let nested_headers = (0..200)
        .map(|i| format!("[{}]\nk = 1\n", vec!["a"; i + 1].join(".")))
        .collect::<String>();
    for (label, text) in [
        ("deep.toml", "[".repeat(100_000)),
        ("deep.toml", deep_toml),
        ("dotted.toml", dotted),
        ("header.toml", header),
        ("inline.toml", inline),
        ("nested.toml", nested_headers),
        ("deep.json", deep_json),
        ("deep.json", "[".repeat(100_000)),
    ] {
        for f in Format::ALL {
            let err = parse(label, &text, &opts(Some(f))).unwrap_err();
            assert!(!err.is_empty(), "{label} as {f}");
        }
        let err = parse(label, &text, &LoadOptions::default()).unwrap_err();
        assert!(
            err[0].message.contains("nested deeper than 128 levels"),
            "{label}: {}",
            err[0]
        );
    }
    // Nesting within the cap is fine.
    let ok = format!(
        "name = \"n\"\n[settings.env]\nK = \"v\"\n[[tasks]]\nname = \"a\"\ncommand = \"true\"\nlabels = {{ x = \"{}\" }}\n",
        "[".repeat(500)
    );
    parse_ok("ok.toml", &ok, &LoadOptions::default());

    let big = " ".repeat(ordo_proto::names::MAX_SPEC_BYTES + 1);
    let err = parse("big.json", &big, &LoadOptions::default()).unwrap_err();
    assert!(
        err[0].message.contains("at most 67108864 bytes"),
        "{}",
        err[0]
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(ordo_proto::names::MAX_SPEC_BYTES as u64 + 10)
        .unwrap();
    let err = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        err[0].to_string().contains("at most 67108864 bytes"),
        "{}",
        err[0]
    );
    let err = load(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(err[0].message.contains("directory"), "{}", err[0]);
    let err = load(&dir.path().join("missing.toml"), &LoadOptions::default()).unwrap_err();
    assert!(err[0].message.starts_with("cannot open"), "{}", err[0]);
    std::fs::write(&path, b"name = \"x\"\n\xff\xfe").unwrap();
    let err = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        err[0]
            .to_string()
            .ends_with("big.toml:2:1: file is not valid UTF-8"),
        "{}",
        err[0]
    );
}

#[test]
fn diagnostics_display() {
    let d = Diagnostic::new("f.toml", Some(Pos::new(3, 7)), "bad");
    assert_eq!(d.to_string(), "f.toml:3:7: bad");
    assert_eq!(
        Diagnostic::new("f.toml", None, "bad").to_string(),
        "f.toml: bad"
    );
}

#[test]
fn json_positions_follow_structure() {
    let text = concat!(
        "{\"master\": {\"tasks\": [\n",
        "  {\"id\": 1, \"subtasks\": [{\"id\": 1}, {\"id\": 2, \"dependencies\": [\"2.1\", 3]}]},\n",
        "  {\"id\": \"x/y~\", \"t\\u0069tle\": \"é\"}\n",
        "]}}"
    );
    let p = json_positions(text);
    assert_eq!(p.get("/master/tasks/0/id"), Some(Pos::new(2, 10)));
    assert_eq!(
        p.get("/master/tasks/0/subtasks/1/id"),
        Some(Pos::new(2, 44))
    );
    assert_eq!(
        p.get("/master/tasks/0/subtasks/1/dependencies/1"),
        Some(Pos::new(2, 71))
    );
    assert_eq!(p.get("/master/tasks/1"), Some(Pos::new(3, 3)));
    assert_eq!(p.get("/master/tasks/1/title"), Some(Pos::new(3, 32)));
    assert_eq!(p.get("/master/tasks/1/id"), Some(Pos::new(3, 10)));
    assert_eq!(pointer_key("x/y~"), "x~1y~0");
}

// Property tests of every parser (random bytes, token soups, mutated examples) are in
// `hostile.rs`.

#[test]
fn toml_positions_skip_strings_and_handle_inline_tables() {
    let text = "[[tasks]]\nprompt = \"\"\"\n[[tasks]]\nname = \"fake\"\n\"\"\"\nname = \"a\"\n\n\
                [tasks.labels]\nname = \"label\"\n\n[[ tasks ]]\n  name   =   'b'\n\
                command = \"true\"\ndepends_on = [\"a\"]\n";
    let l = parse_ok("p.toml", text, &LoadOptions::default());
    assert_eq!(names(&l.spec), ["a", "b"]);
    assert_eq!(l.positions[&l.spec.tasks[0].name], Pos::new(6, 8));
    assert_eq!(l.positions[&l.spec.tasks[1].name], Pos::new(12, 14));

    let text = "tasks = [\n  { name = \"a\", command = \"true\" },\n  { name = \"b\", command = \"true\" },\n]\n";
    let l = parse_ok("p.toml", text, &LoadOptions::default());
    assert_eq!(l.positions[&l.spec.tasks[0].name], Pos::new(2, 12));
    assert_eq!(l.positions[&l.spec.tasks[1].name], Pos::new(3, 12));
}

// ---------------------------------------------------------------------------------------------
// Real-world shapes of TaskMaster and Prompter files (each a fixture of its own).

#[test]
fn taskmaster_all_done_is_nothing_to_do() {
    let path = fixture("taskmaster/all-done_tasks.json");
    let loaded = load(&path, &LoadOptions::default()).unwrap();
    assert!(loaded.spec.tasks.is_empty());
    assert_eq!(
        loaded.nothing_to_do(),
        Some("nothing to do: all 3 tasks are done (--include-done runs them)")
    );
    // The reason is also what check says, never "job has no tasks".
    let err = check(&loaded, "f").unwrap_err();
    assert_eq!(err[0].message, loaded.nothing_to_do().unwrap());
    let expanded = LoadOptions {
        expand_subtasks: true,
        ..Default::default()
    };
    let loaded = load(&path, &expanded).unwrap();
    assert_eq!(
        loaded.nothing_to_do(),
        Some("nothing to do: all 4 tasks are done (--include-done runs them)")
    );
    let (loaded, _) = load_ok(
        &path,
        &LoadOptions {
            include_done: true,
            ..Default::default()
        },
    );
    assert_eq!(names(&loaded.spec), ["1", "2", "3"]);
    assert_eq!(loaded.nothing_to_do(), None);
    // Some done, some cancelled: the counts.
    let l = parse_ok(
        "t.json",
        r#"{"tasks":[{"id":1,"title":"a","status":"done"},{"id":2,"title":"b","status":"cancelled"},
                     {"id":3,"title":"c","dependencies":[2]}]}"#,
        &LoadOptions::default(),
    );
    assert_eq!(
        l.nothing_to_do(),
        Some(
            "nothing to do: none of the 3 tasks is to run (1 done, 1 cancelled, 1 waiting on \
             those; --include-done runs them)"
        )
    );
}

#[test]
fn taskmaster_empty_tags_are_nothing_to_do() {
    for (file, message) in [
        (
            "taskmaster/empty-tag_tasks.json",
            "nothing to do: tag \"master\" has no tasks",
        ),
        (
            "taskmaster/empty-untagged_tasks.json",
            "nothing to do: the file has no tasks",
        ),
    ] {
        let path = fixture(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(detect("-", &text), Format::TaskMaster, "{file}");
        let loaded = load(&path, &LoadOptions::default()).unwrap();
        assert_eq!(loaded.format, Format::TaskMaster);
        assert_eq!(loaded.nothing_to_do(), Some(message), "{file}");
    }
    // An empty list without TaskMaster's metadata is still ordo's own (empty) job.
    assert_eq!(detect("-", r#"{"tasks":[]}"#), Format::Json);
}

#[test]
fn taskmaster_tag_other_than_master() {
    // The only tag is read, and the warning says so.
    let (loaded, _) = load_ok(
        &fixture("taskmaster/single-tag_tasks.json"),
        &LoadOptions::default(),
    );
    assert_eq!(names(&loaded.spec), ["1", "2"]);
    assert!(
        loaded.warnings[0]
            .ends_with("the file has no tag \"master\"; reading its only tag \"feature-auth\""),
        "{:?}",
        loaded.warnings
    );
    // Several tags and no master: the project's current tag (.taskmaster/state.json).
    let path = fixture("taskmaster/current-tag/.taskmaster/tasks/tasks.json");
    let (loaded, _) = load_ok(&path, &LoadOptions::default());
    assert_eq!(names(&loaded.spec), ["1", "2"]);
    assert!(
        loaded.warnings[0].contains("reading \"feature-export\", the project's current tag"),
        "{:?}",
        loaded.warnings
    );
    // Without the project around it, the error lists the tags.
    let text = std::fs::read_to_string(&path).unwrap();
    let err = parse("tasks.json", &text, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "tasks.json:1:1: TaskMaster tag \"master\" not found; available tags: feature-export, \
         feature-search"
    );
    let search = LoadOptions {
        tag: Some("feature-search".into()),
        ..Default::default()
    };
    assert_eq!(names(&parse_ok("tasks.json", &text, &search).spec), ["1"]);
}

#[test]
fn taskmaster_subtask_ids_qualified_and_duplicated() {
    let path = fixture("taskmaster/subtask-ids_tasks.json");
    let o = LoadOptions {
        expand_subtasks: true,
        ..Default::default()
    };
    let (loaded, dag) = load_ok(&path, &o);
    let spec = &loaded.spec;
    // "1.1" under task 1 and 29.1 under task 29 are not qualified twice; the second subtask 3
    // of task 27 is kept as 27.3-2.
    assert_eq!(
        names(spec),
        [
            "1.1", "1.2", "1", "27.1", "27.3", "27.3-2", "27", "29.1", "29"
        ]
    );
    assert_eq!(deps(spec, "1.2"), ["1.1"]);
    assert_eq!(deps(spec, "27.3"), ["1", "27.1"]);
    assert_eq!(deps(spec, "27.3-2"), ["1", "27.1"]);
    assert_eq!(deps(spec, "27"), ["1", "27.1", "27.3", "27.3-2"]);
    assert_eq!(dag.len(), 9);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0]
            .ends_with("task '27' has more than one subtask with id 3: this one (#3) is '27.3-2'"),
        "{:?}",
        loaded.warnings
    );
    // Not expanded: the checklists of the prompts number them the same way.
    let (loaded, _) = load_ok(&path, &LoadOptions::default());
    let prompt = |n: &str| task(&loaded.spec, n).prompt.clone().unwrap();
    assert!(prompt("1").contains("- [ ] 1.1 Read the header\n- [ ] 1.2 Read the rows"));
    assert!(prompt("27").contains("- [ ] 27.3 Draw the chart\n- [ ] 27.3-2 Draw the table"));
    assert!(
        prompt("29").contains("- [ ] 29.1 Upload"),
        "{}",
        prompt("29")
    );
}

#[test]
fn taskmaster_many_done_warnings_are_grouped() {
    let (loaded, _) = load_ok(
        &fixture("taskmaster/many-done_tasks.json"),
        &LoadOptions::default(),
    );
    assert_eq!(names(&loaded.spec), ["13"]);
    let w: Vec<&str> = loaded
        .warnings
        .iter()
        .map(|w| w.split_once(".json").map_or(w.as_str(), |(_, rest)| rest))
        .collect();
    assert_eq!(
        w,
        [
            ": 12 tasks already done: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, …: not run (--include-done \
             runs them)",
            ":107:11: task '14' is cancelled: not run (--include-done runs it)",
            ":113:11: task '15' is deferred: not run (--include-done runs it)",
        ]
    );
}

#[test]
fn prompter_claude_command_is_the_agent_program() {
    let (loaded, _) = load_ok(
        &fixture("prompter/claude-command.toml"),
        &LoadOptions::default(),
    );
    let s = &loaded.spec.settings;
    assert_eq!(
        s.agent_command.as_deref(),
        Some(&["claude".to_string(), "--model".into(), "sonnet".into()][..])
    );
    assert_eq!(loaded.spec.agent(), ordo_proto::AgentKind::Claude);
    // Never written back as Prompter's key.
    assert!(!to_toml(&loaded.spec).unwrap().contains("claude_command"));
    // An ordo file (it names its job) says ordo's name for it.
    let err = parse(
        "j.toml",
        "name = 'j'\n[settings]\nclaude_command = 'claude'\n[[tasks]]\nname = 'a'\ncommand = 'true'\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err[0].message.contains("agent_command"), "{err:?}");
    // A Prompter file still has no room for typos.
    let err = parse(
        "p.toml",
        "[settings]\nclaude_comand = 'claude'\n[[tasks]]\nname = 'a'\ncommand = 'true'\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err[0].message.contains("claude_comand"), "{err:?}");
}

#[test]
fn task_list_mixed_mode_groups_parallel_subtasks() {
    let (loaded, dag) = load_ok(
        &fixture("json/claude-code-mcp_mixed.json"),
        &LoadOptions::default(),
    );
    let spec = &loaded.spec;
    assert_eq!(deps(spec, "release.1"), Vec::<&str>::new());
    assert_eq!(deps(spec, "release.2"), ["release.1"]);
    assert_eq!(deps(spec, "release.3"), ["release.1"]);
    assert_eq!(deps(spec, "release.4"), ["release.2", "release.3"]);
    assert_eq!(deps(spec, "release.6"), ["release.4"]);
    assert_eq!(deps(spec, "announce.1"), ["release.5", "release.6"]);
    assert_eq!(
        levels(&dag),
        vec![
            vec!["release.1"],
            vec!["release.2", "release.3"],
            vec!["release.4"],
            vec!["release.5", "release.6"],
            vec!["announce.1"],
        ]
    );
    // A subtask of a mixed task with a mode that is neither is located.
    let bad = r#"[{"id":"a","executionMode":"mixed","subtasks":[{"command":"true","executionMode":"later"}]}]"#;
    let err = parse("t.json", bad, &LoadOptions::default()).unwrap_err();
    assert!(
        err[0]
            .to_string()
            .starts_with("t.json:1:82: task 'a.1': executionMode must be"),
        "{err:?}"
    );
}

/// The mode each format's files run in, and why (the rule of `JobSpec::mode_decision`).
#[test]
fn mode_rule_of_each_format() {
    use ordo_proto::ModeReason;
    let mode = |rel: &str| {
        let (loaded, _) = load_ok(&fixture(rel), &LoadOptions::default());
        loaded.spec.mode_decision(None)
    };
    let m = mode("prompter/claude-command.toml");
    assert_eq!(
        (m.mode, m.reason),
        (ExecutionMode::Sequential, ModeReason::NoDependencies)
    );
    let m = mode("prompter/release-train.toml");
    assert_eq!(
        (m.mode, m.reason),
        (ExecutionMode::Sequential, ModeReason::FlowJumps)
    );
    assert_eq!(
        mode("prompter/docs-overhaul.toml").mode,
        ExecutionMode::Parallel
    );
    assert_eq!(
        mode("taskmaster/offline-mode_tasks.json").mode,
        ExecutionMode::Parallel
    );
    assert_eq!(
        mode("taskmaster/single-tag_tasks.json").mode,
        ExecutionMode::Parallel
    );
    assert_eq!(
        mode("json/claude-code-mcp_tasks.json").mode,
        ExecutionMode::Parallel
    );
    assert_eq!(
        mode("json/subtasks_sequential.json").mode,
        ExecutionMode::Sequential
    );
    assert_eq!(mode("markdown/log-report.md").mode, ExecutionMode::Parallel);
    // A subtasks document without executionMode follows its dependencies when it gives any
    // (an empty list counts), else runs in file order.
    let subtasks = |deps: &str| {
        let text = format!(
            r#"{{"subtasks":[{{"id":"a","command":"true"{deps}}},{{"id":"b","command":"true"}}]}}"#
        );
        parse_ok("s.json", &text, &LoadOptions::default())
            .spec
            .mode(None)
    };
    assert_eq!(subtasks(r#","dependencies":[]"#), ExecutionMode::Parallel);
    assert_eq!(subtasks(""), ExecutionMode::Sequential);
    // The real Prompter files, when the shared set is there.
    if let Some(example) = shared("prompter/example.toml") {
        let (l, _) = load_ok(&example, &LoadOptions::default());
        assert_eq!(l.spec.mode(None), ExecutionMode::Sequential);
        let (l, _) = load_ok(
            &shared("prompter/parallel-execution.toml").unwrap(),
            &LoadOptions::default(),
        );
        assert_eq!(l.spec.mode(None), ExecutionMode::Parallel);
    }
}

#[test]
fn plan_of_a_sequential_job_has_no_speedup() {
    for rel in [
        "prompter/release-train.toml",
        "prompter/claude-command.toml",
    ] {
        let (loaded, dag) = load_ok(&fixture(rel), &LoadOptions::default());
        let plan = dag.plan(8, &loaded.spec.mode_decision(None));
        assert_eq!(plan.mode, ExecutionMode::Sequential, "{rel}");
        assert_eq!(plan.estimated_speedup, 1.0, "{rel}");
        assert_eq!(plan.workers, 1, "{rel}");
        assert_eq!(plan.levels.len(), loaded.spec.tasks.len(), "{rel}");
        assert_eq!(plan.estimated_makespan as usize, loaded.spec.tasks.len());
    }
}
