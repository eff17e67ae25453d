//! `ordo validate | plan | graph | convert` on the shared examples and on broken specs.

use ordo_tests::{all_examples, example, ordo, write};

#[test]
fn every_example_validates_unedited() {
    let examples = all_examples();
    assert!(examples.len() >= 9, "examples missing: {examples:?}");
    for rel in examples {
        let path = example(&rel);
        let r = ordo(&["validate", path.to_str().unwrap()]);
        assert_eq!(r.code(), 0, "{rel}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("valid"), "{rel}: {}", r.stdout);
    }
}

fn plan(rel: &str) -> serde_json::Value {
    let r = ordo(&["plan", example(rel).to_str().unwrap(), "--output", "json"]);
    assert_eq!(r.code(), 0, "{rel}: {}", r.stderr);
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
    let cto = plan("taskmaster/cto-parallel-test_tasks.json");
    assert_eq!(cto["tasks"], 10);
    assert_eq!(level_sizes(&cto), vec![4, 3, 2, 1]);
    assert_eq!(cto["levels"][0], serde_json::json!(["1", "3", "4", "6"]));
    assert_eq!(cto["critical_path"].as_array().unwrap().len(), 4);
    assert_eq!(cto["critical_path"][3], "10");

    let par = plan("json/extracted_task_execution_modes_parallel.json");
    assert_eq!(level_sizes(&par), vec![2]);

    let seq = plan("json/extracted_task_execution_modes_sequential.json");
    assert_eq!(level_sizes(&seq), vec![2], "no dependencies: one level");

    let prompter = plan("prompter/parallel-execution.toml");
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
    let mixed = plan("markdown/docs_sample_tasks_mixed_mode_task.md");
    assert_eq!(level_sizes(&mixed), vec![1, 3, 1]);
}

#[test]
fn plan_text_names_the_critical_path_and_speedup() {
    let r = ordo(&[
        "plan",
        example("prompter/parallel-execution.toml")
            .to_str()
            .unwrap(),
        "--workers",
        "4",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stdout.contains("critical path (4 tasks)"), "{}", r.stdout);
    assert!(r.stdout.contains("speedup"), "{}", r.stdout);
}

#[test]
fn convert_markdown_gives_five_tasks_with_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.json");
    let md = example("markdown/docs_sample_tasks_mixed_mode_task.md");
    let r = ordo(&["convert", md.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 5);
    assert_eq!(tasks[4]["name"], "task-5");
    assert_eq!(
        tasks[4]["depends_on"],
        serde_json::json!(["task-2", "task-3", "task-4"])
    );
    // Validating the converted file agrees with validating the document.
    let direct = ordo(&["plan", md.to_str().unwrap(), "--output", "json"]);
    let converted = ordo(&["plan", out.to_str().unwrap(), "--output", "json"]);
    assert_eq!(direct.json()["levels"], converted.json()["levels"]);

    let toml_out = dir.path().join("mixed.toml");
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
    let spec = example("prompter/parallel-execution.toml");
    let dot = ordo(&["graph", spec.to_str().unwrap()]);
    assert_eq!(dot.code(), 0, "{}", dot.stderr);
    assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
    assert!(dot.stdout.contains("analyze_backend"));
    let mermaid = ordo(&["graph", spec.to_str().unwrap(), "--format", "mermaid"]);
    assert_eq!(mermaid.code(), 0, "{}", mermaid.stderr);
    assert!(
        mermaid.stdout.contains("\nflowchart LR\n"),
        "{}",
        mermaid.stdout
    );
    assert!(
        mermaid.stdout.contains("(\"analyze_backend\")"),
        "{}",
        mermaid.stdout
    );
    // The file declares seven dependencies.
    assert_eq!(
        mermaid.stdout.matches("-->").count(),
        7,
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
