//! `ordo validate | plan | graph | convert` on the fixtures (and the shared conformance set
//! when present) and on broken specs.

use std::path::Path;

use ordo_tests::{all_examples, fixture, ordo, ordo_in, shared_example, write};

#[test]
fn every_example_validates_unedited() {
    let examples = all_examples();
    assert!(examples.len() >= 10, "examples missing: {examples:?}");
    for path in examples {
        let r = ordo(&["validate", path.to_str().unwrap()]);
        let rel = path.display();
        assert_eq!(r.code(), 0, "{rel}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("valid"), "{rel}: {}", r.stdout);
    }
}

fn plan(path: &Path) -> serde_json::Value {
    let r = ordo(&["plan", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(r.code(), 0, "{}: {}", path.display(), r.stderr);
    r.json()
}

fn level_sizes(plan: &serde_json::Value) -> Vec<usize> {
    plan["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_array().unwrap().len())
        .collect()
}

#[test]
fn plan_gives_the_levels_each_example_implies() {
    let offline = plan(&fixture("taskmaster/offline-mode_tasks.json"));
    assert_eq!(offline["tasks"], 5);
    assert_eq!(level_sizes(&offline), vec![2, 2, 1]);
    assert_eq!(offline["levels"][0], serde_json::json!(["1", "2"]));
    assert_eq!(offline["levels"][1], serde_json::json!(["3", "4"]));
    assert_eq!(offline["critical_path"].as_array().unwrap().len(), 3);
    assert_eq!(offline["critical_path"][2], "5");

    let ci = plan(&fixture("taskmaster/ci-hardening_tasks.json"));
    assert_eq!(
        ci["levels"],
        serde_json::json!([
            ["ci-cache"],
            ["flaky-test-quarantine"],
            ["release-workflow"]
        ])
    );

    let par = plan(&fixture("json/subtasks_parallel.json"));
    assert_eq!(level_sizes(&par), vec![2, 1]);
    assert_eq!(par["levels"][1], serde_json::json!(["rebuild-index"]));

    let seq = plan(&fixture("json/subtasks_sequential.json"));
    assert_eq!(seq["mode"], "sequential");
    assert_eq!(
        level_sizes(&seq),
        vec![1, 1, 1],
        "sequential: one task at a time"
    );

    let prompter = plan(&fixture("prompter/docs-overhaul.toml"));
    assert_eq!(
        prompter["levels"],
        serde_json::json!([
            [
                "audit_api_reference",
                "audit_tutorials",
                "collect_user_questions"
            ],
            ["restructure_navigation", "write_faq"],
            ["rebuild_search_index"],
            ["publish_preview"]
        ])
    );
    let report = plan(&fixture("markdown/log-report.md"));
    assert_eq!(level_sizes(&report), vec![1, 2, 1]);
    let rollout = plan(&fixture("markdown/feature-flag-rollout.md"));
    assert_eq!(
        rollout["levels"],
        serde_json::json!([["task-1"], ["task-2", "task-4"], ["task-3"]])
    );
    let site = plan(&fixture("markdown/build-and-package.md"));
    assert_eq!(level_sizes(&site), vec![1, 2, 1]);
}

#[test]
fn a_claude_code_mcp_task_list_validates_and_plans() {
    let list = fixture("json/claude-code-mcp_tasks.json");
    let r = ordo(&["validate", list.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stdout.contains("valid"), "{}", r.stdout);
    let p = plan(&list);
    assert_eq!(p["tasks"], 7);
    assert_eq!(
        p["levels"],
        serde_json::json!([
            ["prepare.1"],
            ["prepare.2"],
            ["survey.1", "survey.2", "survey.3"],
            ["report.1"],
            ["report.2"]
        ])
    );

    // A subtask with neither command nor prompt is named with its line.
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "list.json",
        "[\n  {\"id\": \"t\", \"subtasks\": [\n    {\"command\": \"true\"},\n    {\"expected_answer\": \"4\"}\n  ]}\n]\n",
    );
    let r = ordo(&["validate", &spec]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr
            .contains("list.json:4:5: task 't.2': a subtask needs a \"command\" or a \"prompt\""),
        "{}",
        r.stderr
    );
}

#[test]
fn a_markdown_checklist_plans_its_open_items_in_order() {
    let list = fixture("markdown/checklist.md");
    let r = ordo(&["validate", list.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    // One warning line per item already done.
    assert_eq!(r.stderr.matches("warning: ").count(), 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("checklist.md:9:1: checklist item 'item-1'")
            && r.stderr.contains("already done ([x]): not run"),
        "{}",
        r.stderr
    );
    let p = plan(&list);
    assert_eq!(
        p["levels"],
        serde_json::json!([["item-2"], ["item-3"], ["item-4"], ["item-6"], ["item-7"]])
    );
}

#[test]
fn taskmaster_done_tasks_are_left_out_unless_include_done() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "tasks.json",
        r#"{"tasks":[{"id":1,"title":"A","status":"done"},
                     {"id":2,"title":"B","status":"deferred"},
                     {"id":3,"title":"C","dependencies":[1]}]}"#,
    );
    let r = ordo(&["plan", &spec, "--output", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["levels"], serde_json::json!([["3"]]));
    assert!(
        r.stderr.contains("warning: ")
            && r.stderr.contains("task '1' is already done: not run")
            && r.stderr.contains("task '2' is deferred: not run"),
        "{}",
        r.stderr
    );
    let r = ordo(&["plan", &spec, "--output", "json", "--include-done"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["levels"], serde_json::json!([["1", "2"], ["3"]]));
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let r = ordo(&["validate", &spec, "--include-done"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
}

/// The levels of the real files, where the shared conformance set is present.
#[test]
fn plan_levels_of_the_shared_examples() {
    let Some(cto) = shared_example("taskmaster/cto-parallel-test_tasks.json") else {
        return;
    };
    let cto = plan(&cto);
    assert_eq!(cto["tasks"], 10);
    assert_eq!(level_sizes(&cto), vec![4, 3, 2, 1]);
    assert_eq!(cto["levels"][0], serde_json::json!(["1", "3", "4", "6"]));
    assert_eq!(cto["critical_path"].as_array().unwrap().len(), 4);
    assert_eq!(cto["critical_path"][3], "10");

    let shared = |rel: &str| shared_example(rel).unwrap();
    let par = plan(&shared("json/extracted_task_execution_modes_parallel.json"));
    assert_eq!(level_sizes(&par), vec![2]);

    let seq = plan(&shared(
        "json/extracted_task_execution_modes_sequential.json",
    ));
    assert_eq!(seq["mode"], "sequential");
    assert_eq!(
        level_sizes(&seq),
        vec![1, 1],
        "sequential: one task at a time"
    );

    let prompter = plan(&shared("prompter/parallel-execution.toml"));
    assert_eq!(
        prompter["levels"],
        serde_json::json!([
            [
                "analyze_frontend",
                "analyze_backend",
                "analyze_tests",
                "memory_intensive_task"
            ],
            ["create_architecture_diagram", "database_migration"],
            ["generate_test_plan"],
            ["create_technical_docs"]
        ])
    );
    let mixed = plan(&shared("markdown/docs_sample_tasks_mixed_mode_task.md"));
    assert_eq!(level_sizes(&mixed), vec![1, 3, 1]);
}

#[test]
fn plan_text_names_the_critical_path_and_speedup() {
    let r = ordo(&[
        "plan",
        fixture("prompter/docs-overhaul.toml").to_str().unwrap(),
        "--workers",
        "4",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stdout.contains("critical path (4 tasks)"), "{}", r.stdout);
    assert!(r.stdout.contains("speedup"), "{}", r.stdout);
}

#[test]
fn convert_markdown_gives_the_tasks_with_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let md = fixture("markdown/log-report.md");
    let r = ordo(&["convert", md.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["name"], "Nightly Log Report");
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    assert_eq!(tasks[3]["name"], "task-4");
    assert_eq!(
        tasks[3]["depends_on"],
        serde_json::json!(["task-2", "task-3"])
    );
    assert_eq!(tasks[2]["labels"]["execution_mode"], "parallel");
    // Validating the converted file agrees with validating the document.
    let direct = ordo(&["plan", md.to_str().unwrap(), "--output", "json"]);
    let converted = ordo(&["plan", out.to_str().unwrap(), "--output", "json"]);
    assert_eq!(direct.json()["levels"], converted.json()["levels"]);

    let toml_out = dir.path().join("report.toml");
    let r = ordo(&[
        "convert",
        md.to_str().unwrap(),
        "-o",
        toml_out.to_str().unwrap(),
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let again = ordo(&["plan", toml_out.to_str().unwrap(), "--output", "json"]);
    assert_eq!(direct.json()["levels"], again.json()["levels"]);
}

#[test]
fn a_cycle_is_rejected_with_its_whole_path() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "cycle.toml",
        r#"name = "cyclic"
[[tasks]]
name = "a"
command = "true"
depends_on = ["c"]

[[tasks]]
name = "b"
command = "true"
depends_on = ["a"]

[[tasks]]
name = "c"
command = "true"
depends_on = ["b"]
"#,
    );
    let r = ordo(&["validate", &spec]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr.contains("a → b → c → a"), "{}", r.stderr);
    assert!(
        r.stderr.contains("cycle.toml:3:"),
        "no position: {}",
        r.stderr
    );
    // Nothing else runs either.
    let r = ordo(&["run", &spec]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
}

#[test]
fn a_dangling_dependency_names_both_tasks_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "dangling.toml",
        "[[tasks]]\nname = \"build\"\ncommand = \"true\"\n\n[[tasks]]\nname = \"deploy\"\ncommand = \"true\"\ndepends_on = [\"tests\"]\n",
    );
    let r = ordo(&["validate", &spec]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr.contains("dangling.toml:6:")
            && r.stderr
                .contains("task 'deploy' depends on unknown task 'tests'"),
        "{}",
        r.stderr
    );
}

#[test]
fn toml_syntax_and_unknown_field_errors_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "typo.toml",
        "[[tasks]]\nname = \"a\"\ncomand = \"true\"\n",
    );
    let r = ordo(&["validate", &spec]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr.contains("typo.toml:3:"), "{}", r.stderr);
    assert!(r.stderr.contains("comand"), "{}", r.stderr);

    let spec = write(
        dir.path(),
        "broken.toml",
        "[[tasks]]\nname = \"a\ncommand = \"true\"\n",
    );
    let r = ordo(&["validate", &spec]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr.contains("broken.toml:2:"), "{}", r.stderr);
}

#[test]
fn validate_json_output_reports_errors_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "empty.json",
        r#"{"tasks":[{"name":"a","command":"  "}]}"#,
    );
    let r = ordo(&["validate", &spec, "--output", "json"]);
    assert_eq!(r.code(), 2);
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("task 'a' has an empty command")
    );
}

#[test]
fn graph_renders_dot_and_mermaid() {
    let spec = fixture("prompter/docs-overhaul.toml");
    let dot = ordo(&["graph", spec.to_str().unwrap()]);
    assert_eq!(dot.code(), 0, "{}", dot.stderr);
    assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
    assert!(dot.stdout.contains("restructure_navigation"));
    let mermaid = ordo(&["graph", spec.to_str().unwrap(), "--format", "mermaid"]);
    assert_eq!(mermaid.code(), 0, "{}", mermaid.stderr);
    assert!(
        mermaid.stdout.contains("\nflowchart LR\n"),
        "{}",
        mermaid.stdout
    );
    assert!(
        mermaid.stdout.contains("(\"restructure_navigation\")"),
        "{}",
        mermaid.stdout
    );
    // The file declares six dependencies.
    assert_eq!(
        mermaid.stdout.matches("-->").count(),
        6,
        "{}",
        mermaid.stdout
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let r = ordo(&["validate", "/nonexistent/job.toml"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr.contains("/nonexistent/job.toml"), "{}", r.stderr);
}

/// Hostile specs through the commands a user types: each is rejected with exit code 2 and a
/// message naming the file and line, never a panic or a stack overflow; a 100,000-task chain
/// is accepted.
#[test]
fn hostile_specs_fail_cleanly_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let task = |i: usize, dep: Option<usize>| {
        let dep = dep.map_or(String::new(), |d| format!("depends_on = [\"t{d}\"]\n"));
        format!("[[tasks]]\nname = \"t{i}\"\ncommand = \"true\"\n{dep}")
    };
    let chain: String = (0..n).map(|i| task(i, i.checked_sub(1))).collect();
    let ring: String = (0..n)
        .map(|i| task(i, Some(i.checked_sub(1).unwrap_or(n - 1))))
        .collect();
    let chain = write(dir.path(), "chain.toml", &chain);
    let ring = write(dir.path(), "ring.toml", &ring);
    let deep = write(
        dir.path(),
        "deep.json",
        &format!("{{\n\"tasks\": {}", "[".repeat(n)),
    );
    let deep_toml = write(
        dir.path(),
        "deep.toml",
        &format!("x = {}", "{a = ".repeat(n)),
    );
    let nul = write(
        dir.path(),
        "nul.toml",
        "[[tasks]]\nname = \"a\"\ncommand = \"x\\u0000y\"\n",
    );
    let bad_utf8 = dir.path().join("bad.toml");
    std::fs::write(&bad_utf8, b"[[tasks]]\nname = \"a\xff\"\ncommand = \"x\"\n").unwrap();
    let bad_utf8 = bad_utf8.to_string_lossy().into_owned();

    let cases = [
        (&ring, "ring.toml:2:8: dependency cycle: t0 → t1 → t2 → "),
        (&deep, "deep.json:2:137: nested deeper than 128 levels"),
        (&deep_toml, "deep.toml:1:"),
        (&nul, "nul.toml:2:8: task 'a': command contains a NUL byte"),
        (&bad_utf8, "bad.toml:2:10: file is not valid UTF-8"),
    ];
    for (spec, want) in cases {
        for cmd in ["validate", "plan", "graph"] {
            let r = ordo(&[cmd, spec]);
            let head: String = r.stderr.chars().take(300).collect();
            assert_eq!(r.code(), 2, "{cmd} {spec}: {head}");
            assert!(r.stderr.contains(want), "{cmd} {spec}: {head}");
            assert!(
                !r.stderr.contains("panicked") && !r.stderr.contains("overflow"),
                "{cmd} {spec}: {head}"
            );
        }
    }
    let r = ordo(&["plan", &chain, "--output", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["critical_path"].as_array().unwrap().len(), n);
}

#[test]
fn validate_refuses_what_could_only_fail_at_run_time_or_disguise_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "hostile.toml",
        "name = \"hostile\"\n\
         [settings]\n\
         workspace = \"worktree\"\n\
         target_branch = \"refs/tags/v1\"\n\
         [[tasks]]\n\
         name = \"a\"\n\
         command = \"true\"\n\
         timeout = 0\n\
         retries = 4294967295\n\
         verify_command = \"true\"\n\
         verify_success_code = 256\n\
         env = { \"\" = \"x\", \"A=B\" = \"y\" }\n",
    );
    let r = ordo(&["validate", &spec]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout, r.stderr);
    for wanted in [
        "target_branch \"refs/tags/v1\" starts with 'refs/'",
        "task 'a': timeout must be longer than 0",
        "task 'a': retries allows at most 1000 attempts in all",
        "task 'a': verify_success_code 256 can never match",
        "task 'a': env has an empty variable name",
        "task 'a': env variable name \"A=B\" contains '='",
    ] {
        assert!(r.stderr.contains(wanted), "{wanted:?} not in {}", r.stderr);
    }

    // A right-to-left override would show this task as "build-exe.txt" on a terminal.
    let disguised = write(
        dir.path(),
        "disguised.toml",
        "[[tasks]]\nname = \"build-\u{202E}txt.exe\"\ncommand = \"true\"\n",
    );
    let r = ordo(&["validate", &disguised]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("disguised.toml:2:") && r.stderr.contains("bidirectional control"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains('\u{202E}'), "printed raw: {}", r.stderr);
}

#[test]
fn an_ext_repository_runs_nothing_on_the_submitting_machine_whatever_the_users_git_allows() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    // `ext::` runs `sh -c "touch CANARY #://"`; the "://" makes it look like a URL to ordo.
    let repository = format!("ext::sh -c touch% {}% #://", canary.display());
    let spec = write(
        dir.path(),
        "ext.toml",
        &format!(
            "[settings]\nworkspace = \"worktree\"\nrepository = {repository:?}\n\
             [[tasks]]\nname = \"a\"\ncommand = \"true\"\n"
        ),
    );
    // No server listens there: the repository is checked before anything is sent.
    let r = ordo_in(
        dir.path(),
        &["submit", "--nats", "nats://127.0.0.1:9", &spec],
        &[
            ("GIT_ALLOW_PROTOCOL", "ext"),
            ("GIT_PROTOCOL_FROM_USER", "1"),
        ],
    );
    assert_ne!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("transport 'ext' not allowed"),
        "{}",
        r.stderr
    );
    assert!(!canary.exists(), "the ext:: repository ran a command");
}

/// The mode of a job and why, in `validate` and `plan` (text and JSON): a Prompter chain
/// without dependencies is sequential (speedup 1.0) even with `enable_parallel = true`; a
/// flow-jump job is sequential with its jumps listed and drawn; `--workers` above 1 asks for
/// parallel; declared dependencies make a job parallel.
#[test]
fn validate_and_plan_say_the_mode_and_why() {
    let chain = fixture("prompter/claude-command.toml");
    let chain = chain.to_str().unwrap();
    let r = ordo(&["validate", chain]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("mode: sequential (no task declares depends_on"),
        "{}",
        r.stdout
    );
    let r = ordo(&["validate", chain, "--output", "json"]);
    assert_eq!(r.json()["mode"], "sequential", "{}", r.stdout);
    let p = plan(Path::new(chain));
    assert_eq!(p["mode"], "sequential");
    assert_eq!(p["estimated_speedup"], 1.0);
    assert_eq!(p["workers"], 1);
    let r = ordo(&["plan", chain]);
    assert!(r.stdout.contains("speedup 1.00x"), "{}", r.stdout);
    // The command line asks for parallel.
    let r = ordo(&["plan", chain, "--workers", "4", "--output", "json"]);
    assert_eq!(r.json()["mode"], "parallel", "{}", r.stdout);
    let r = ordo(&["plan", chain, "--output", "json"]);
    assert_eq!(r.json()["mode"], "sequential", "{}", r.stdout);

    let flow = fixture("prompter/release-train.toml");
    let r = ordo(&["plan", flow.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("mode: sequential (tasks jump"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("speedup 1.00x"), "{}", r.stdout);
    assert!(r.stdout.contains("jumps: "), "{}", r.stdout);
    let p = plan(&flow);
    assert!(!p["jumps"].as_array().unwrap().is_empty(), "{p}");
    let r = ordo(&["graph", flow.to_str().unwrap()]);
    assert!(
        r.stdout.contains("style=dashed, label=\"on_success\""),
        "{}",
        r.stdout
    );

    let p = plan(&fixture("prompter/docs-overhaul.toml"));
    assert_eq!(p["mode"], "parallel");
    assert!(
        p["mode_reason"]
            .as_str()
            .unwrap()
            .contains("declares depends_on"),
        "{p}"
    );
    let p = plan(&fixture("taskmaster/offline-mode_tasks.json"));
    assert_eq!(p["mode"], "parallel");

    // The real Prompter files, when the shared set is there.
    if let Some(example) = shared_example("prompter/example.toml") {
        assert_eq!(plan(&example)["mode"], "sequential");
        let par = shared_example("prompter/parallel-execution.toml").unwrap();
        assert_eq!(plan(&par)["mode"], "parallel");
    }
}

/// A TaskMaster file whose tasks are all done (or an empty tag) is nothing to do: exit 0 and
/// say so, for validate, plan and run; --include-done runs them.
#[test]
fn taskmaster_all_done_is_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let done = fixture("taskmaster/all-done_tasks.json");
    let done = done.to_str().unwrap();
    for args in [
        vec!["validate", done],
        vec!["plan", done],
        vec!["run", done],
    ] {
        let r = ordo_in(dir.path(), &args, &[]);
        assert_eq!(r.code(), 0, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("nothing to do: all 3 tasks are done"),
            "{args:?}: {}",
            r.stdout
        );
        assert!(!r.stderr.contains("job has no tasks"), "{}", r.stderr);
        // The warnings say which, on one line.
        assert!(
            r.stderr.contains("3 tasks already done: 1, 2, 3"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = ordo(&["plan", done, "--include-done", "--output", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["tasks"], 3);
    for empty in [
        "taskmaster/empty-tag_tasks.json",
        "taskmaster/empty-untagged_tasks.json",
    ] {
        let r = ordo(&["validate", fixture(empty).to_str().unwrap()]);
        assert_eq!(r.code(), 0, "{empty}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("nothing to do"), "{empty}: {}", r.stdout);
    }
    // A single tag other than master is read, with a warning.
    let r = ordo(&[
        "plan",
        fixture("taskmaster/single-tag_tasks.json")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("reading its only tag \"feature-auth\""),
        "{}",
        r.stderr
    );
}
