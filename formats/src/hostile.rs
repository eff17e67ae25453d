//! Hostile specs: property tests of every parser (arbitrary bytes and strings, token soups of
//! the formats' own syntax, mutations of the example files) and the explicit worst cases:
//! cycles, 100,000 tasks, 100,000-deep chains and nesting, NUL bytes, invalid UTF-8.
//!
//! Every property holds for any input: parsing (under each format and by detection) never
//! panics, and fails only with diagnostics that name the file and, for errors about a place in
//! it, a line. The case count is proptest's default (256) unless a property sets fewer;
//! `PROPTEST_CASES` overrides both.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;

use ordo_proto::{Dag, ExecutionMode};

use super::*;

/// The example specs as bytes: the fixtures and the shared conformance set when present (as
/// the format tests find them), and this repository's examples/.
fn example_files() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut paths = super::tests::examples();
        for e in std::fs::read_dir(&own).unwrap_or_else(|e| panic!("{}: {e}", own.display())) {
            // Job files only (examples/stub-agent/ holds the stub agent's script).
            let path = e.unwrap().path();
            if path.is_file() {
                paths.push(path);
            }
        }
        let mut out: Vec<(String, Vec<u8>)> = paths
            .into_iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (name, bytes)
            })
            .collect();
        out.sort();
        assert!(out.len() >= 12, "examples found: {out:?}");
        out
    })
}

/// Proptest's configuration with `cases` cases, unless `PROPTEST_CASES` says otherwise.
fn cases(cases: u32) -> ProptestConfig {
    let config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        config
    } else {
        ProptestConfig { cases, ..config }
    }
}

/// Runs `f` on a thread with the default 2 MiB stack, whatever RUST_MIN_STACK says: deep
/// recursion anywhere in it would overflow.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Messages about the whole file rather than a place in it.
fn whole_file(message: &str) -> bool {
    [
        "no task sections found",
        "bytes are accepted",
        "job has ",
        "settings: ",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Diagnostics name `label`, carry a line within the text when they are about a place, and
/// say something.
fn assert_diagnostics(label: &str, text: &str, diags: &[Diagnostic], what: &str) {
    assert!(!diags.is_empty(), "{what}: an error without diagnostics");
    let lines = text.split('\n').count() as u32;
    for d in diags {
        assert_eq!(d.file, label, "{what}: {d}");
        assert!(d.to_string().starts_with(label), "{what}: {d}");
        assert!(!d.message.trim().is_empty(), "{what}: empty message");
        match d.pos {
            Some(p) => assert!(
                p.line >= 1 && p.line <= lines && p.col >= 1,
                "{what}: {d} is outside the text ({lines} lines)"
            ),
            None => assert!(whole_file(&d.message), "{what}: no line in {d}"),
        }
    }
}

/// Parses `text` as every format and by detection, with and without TaskMaster subtask
/// expansion; validates, converts and renders whatever parses. Panics only on a broken
/// property.
fn parse_everything(label: &str, text: &str) {
    for expand in [false, true] {
        for format in Format::ALL.into_iter().map(Some).chain([None]) {
            let what = format!("{label} as {format:?}, expand {expand}");
            let o = LoadOptions {
                format,
                tag: None,
                expand_subtasks: expand,
                include_done: expand,
                current_tag: None,
            };
            let loaded = match parse(label, text, &o) {
                Ok(l) => l,
                Err(diags) => {
                    assert_diagnostics(label, text, &diags, &what);
                    continue;
                }
            };
            let lines = text.split('\n').count() as u32;
            for p in loaded.positions.values() {
                assert!(p.line >= 1 && p.line <= lines, "{what}: position {p}");
            }
            let _ = to_json(&loaded.spec);
            let _ = to_toml(&loaded.spec);
            match check(&loaded, label) {
                Ok(dag) => {
                    let _ = dag.plan(4, &loaded.spec.mode_decision(None));
                    let _ = crate::graph::dot(&loaded.spec, &dag);
                    let _ = crate::graph::mermaid(&loaded.spec, &dag);
                }
                Err(diags) => {
                    // Validation errors name a task (located where it is defined) or the job.
                    assert!(!diags.is_empty(), "{what}");
                    for d in &diags {
                        assert_eq!(d.file, label, "{what}: {d}");
                    }
                }
            }
        }
    }
}

/// Pieces of every format's syntax; soups of them reach deeper than random bytes.
const TOKENS: &[&str] = &[
    "[[tasks]]\n",
    "[settings]\n",
    "name = ",
    "command = ",
    "depends_on = ",
    "\"a\"",
    "\"b\"",
    "'c'",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\n",
    "\"tasks\"",
    "\"subtasks\"",
    "\"id\"",
    "\"name\"",
    "\"command\"",
    "\"title\"",
    "\"steps\"",
    "\"metadata\"",
    "\"master\"",
    "1",
    "-1e999",
    "\"1.2\"",
    "\"dependencies\"",
    "### Task 1: x\n",
    "## Task 2 - y\n",
    "# Job\n",
    "- Depends on: Task 2, Task 1\n",
    "- Execution mode: parallel\n",
    "**Objective**: o\n",
    "```sh\n",
    "```\n",
    "~~~bash\n",
    "- [ ] 1.1 s\n",
    "command: x\n",
    "verify: y\n",
    "'''",
    "\"\"\"",
    "a.b.",
    " = ",
    "#",
    "\\",
    "\\u0000",
    "\0",
    "\u{feff}",
    "\r\n",
    "⏳",
];

/// Byte sequences that are not UTF-8: a stray byte, a continuation byte, a truncated
/// sequence, an encoded surrogate and an overlong encoding.
const BAD_UTF8: &[&[u8]] = &[b"\xff", b"\x80", b"\xe2\x8f", b"\xed\xa0\x80", b"\xc0\xaf"];

/// One edit of a file's bytes.
#[derive(Clone, Debug)]
enum Edit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Copies `len` bytes from the first index to the second.
    Duplicate(Index, usize, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let insert = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
        prop::sample::select(BAD_UTF8).prop_map(<[u8]>::to_vec),
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<Index>(), insert).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), 1usize..512, any::<Index>())
            .prop_map(|(i, n, j)| Edit::Duplicate(i, n, j)),
    ]
}

fn apply(data: &mut Vec<u8>, edit: &Edit) {
    let len = data.len();
    let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
    match edit {
        Edit::Flip(i, bit) if len > 0 => data[at(i)] ^= 1 << bit,
        Edit::Set(i, b) if len > 0 => data[at(i)] = *b,
        Edit::Flip(..) | Edit::Set(..) => {}
        Edit::Insert(i, bytes) => {
            let i = at(i);
            data.splice(i..i, bytes.iter().copied());
        }
        Edit::Delete(i, n) => {
            let i = at(i);
            data.drain(i..(i + n).min(len));
        }
        Edit::Duplicate(i, n, j) => {
            let i = at(i);
            let copy = data[i..(i + n).min(len)].to_vec();
            let j = at(j);
            data.splice(j..j, copy);
        }
    }
}

/// Loads `bytes` from a file named `name` (in a fresh directory), as `ordo validate` does.
fn load_bytes(name: &str, bytes: &[u8]) -> (PathBuf, Result<Loaded, Vec<Diagnostic>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let r = load(&path, &LoadOptions::default());
    (path, r)
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_everything("random.bin", &String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_strings_never_panic(chars in prop::collection::vec(any::<char>(), 0..512)) {
        let text: String = chars.into_iter().collect();
        parse_everything("random.txt", &text);
        parse_everything("random.toml", &text);
    }

    #[test]
    fn token_soups_never_panic(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80),
    ) {
        let text = tokens.concat();
        parse_everything("tokens", &text);
        parse_everything("tokens.json", &text);
        parse_everything("tokens.md", &text);
    }

    /// Any file, valid UTF-8 or not, loads or fails naming the file; invalid UTF-8 is
    /// located at its first bad byte.
    #[test]
    fn arbitrary_files_load_or_name_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        ext in prop::sample::select(&["toml", "json", "md", "txt"][..]),
    ) {
        let (path, r) = load_bytes(&format!("f.{ext}"), &bytes);
        let label = path.display().to_string();
        match std::str::from_utf8(&bytes) {
            Err(e) => {
                let diags = r.unwrap_err();
                let prefix = &bytes[..e.valid_up_to()];
                let line = 1 + prefix.iter().filter(|&&b| b == b'\n').count() as u32;
                prop_assert_eq!(diags.len(), 1);
                prop_assert_eq!(&diags[0].message, "file is not valid UTF-8");
                prop_assert_eq!(diags[0].pos.map(|p| p.line), Some(line));
                let want = format!("{label}:{line}:");
                prop_assert!(diags[0].to_string().starts_with(&want), "{}", diags[0]);
            }
            Ok(text) => {
                if let Err(diags) = r {
                    assert_diagnostics(&label, text, &diags, &label);
                }
            }
        }
    }
}

proptest! {
    // Each case parses an example 14 ways; the shared TaskMaster files are up to 85 KB.
    #![proptest_config(cases(96))]

    #[test]
    fn mutated_examples_never_panic(
        which in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let (name, original) = &example_files()[which.index(example_files().len())];
        let mut data = original.clone();
        for e in &edits {
            apply(&mut data, e);
        }
        parse_everything(name, &String::from_utf8_lossy(&data));
    }

    /// An invalid byte sequence put anywhere in an example is reported at its line and
    /// column.
    #[test]
    fn invalid_utf8_in_an_example_is_located(
        which in any::<Index>(),
        at in any::<Index>(),
        bad in prop::sample::select(BAD_UTF8),
    ) {
        let (name, original) = &example_files()[which.index(example_files().len())];
        let text = std::str::from_utf8(original).unwrap();
        let i = text.floor_char_boundary(at.index(text.len() + 1));
        let before = &text[..i];
        let line = 1 + before.matches('\n').count() as u32;
        let col = 1 + before.rsplit('\n').next().unwrap().chars().count() as u32;
        let mut bytes = original.clone();
        bytes.splice(i..i, bad.iter().copied());
        let (path, r) = load_bytes(name, &bytes);
        let diags = r.unwrap_err();
        prop_assert_eq!(
            diags[0].to_string(),
            format!("{}:{line}:{col}: file is not valid UTF-8", path.display())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Explicit hostile inputs.

/// Parses and validates; the diagnostics joined, one a line, on failure.
fn parse_and_check(label: &str, text: &str) -> Result<(Loaded, Dag), String> {
    let join = |d: Vec<Diagnostic>| {
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let loaded = parse(label, text, &LoadOptions::default()).map_err(join)?;
    let dag = check(&loaded, label).map_err(join)?;
    Ok((loaded, dag))
}

#[test]
fn cycles_are_named_with_their_path_in_every_format() {
    let cases = [
        (
            "c.toml",
            "[[tasks]]\nname = \"a\"\ncommand = \"true\"\ndepends_on = [\"c\"]\n\
             [[tasks]]\nname = \"b\"\ncommand = \"true\"\ndepends_on = [\"a\"]\n\
             [[tasks]]\nname = \"c\"\ncommand = \"true\"\ndepends_on = [\"b\"]\n",
            "c.toml:2:8: dependency cycle: a → b → c → a",
        ),
        (
            "c.json",
            "{\"tasks\": [\n{\"name\": \"a\", \"command\": \"true\", \"depends_on\": [\"b\"]},\n\
             {\"name\": \"b\", \"command\": \"true\", \"depends_on\": [\"a\"]}]}",
            "c.json:2:10: dependency cycle: a → b → a",
        ),
        (
            "c.json",
            "{\"subtasks\": [{\"id\": \"x\", \"command\": \"true\", \"dependencies\": [\"x\"]}]}",
            "c.json:1:22: dependency cycle: x → x",
        ),
        (
            "c.json",
            "{\"metadata\": {}, \"objective\": \"o\", \"subtasks\": [\n\
             {\"id\": \"a\", \"title\": \"A\", \"dependencies\": [\"b\"]},\n\
             {\"id\": \"b\", \"title\": \"B\", \"dependencies\": [\"a\"]}]}",
            "c.json:2:8: dependency cycle: a → b → a",
        ),
        (
            "tasks.json",
            "{\"master\": {\"tasks\": [{\"id\": 1, \"title\": \"A\", \"dependencies\": [3]},\n\
             {\"id\": 2, \"title\": \"B\", \"dependencies\": [1]},\n\
             {\"id\": 3, \"title\": \"C\", \"dependencies\": [2]}]}}",
            "tasks.json:1:30: dependency cycle: 1 → 2 → 3 → 1",
        ),
        (
            "c.md",
            "# J\n\n### Task 1: A\n- Depends on: Task 2\n```sh\ntrue\n```\n\n\
             ### Task 2: B\n- Depends on: Task 1\n```sh\ntrue\n```\n",
            "c.md:3:1: dependency cycle: task-1 → task-2 → task-1",
        ),
    ];
    for (label, text, want) in cases {
        let err = parse_and_check(label, text).unwrap_err();
        assert!(err.starts_with(want), "{label}: {err}");
    }
}

/// `n` TOML tasks `t0…`, each depending on the one before when `chain`; with `close`, `t0`
/// depends on the last one, closing a cycle through all of them.
fn toml_tasks(n: usize, chain: bool, close: bool) -> String {
    let mut s = String::with_capacity(n * 60);
    for i in 0..n {
        s.push_str(&format!("[[tasks]]\nname = \"t{i}\"\ncommand = \"true\"\n"));
        if chain && i > 0 {
            s.push_str(&format!("depends_on = [\"t{}\"]\n", i - 1));
        } else if close && i == 0 {
            s.push_str(&format!("depends_on = [\"t{}\"]\n", n - 1));
        }
    }
    s
}

#[test]
fn a_hundred_thousand_independent_tasks_are_accepted() {
    on_small_stack(|| {
        let n = 100_000;
        let (loaded, dag) = parse_and_check("wide.toml", &toml_tasks(n, false, false)).unwrap();
        assert_eq!(loaded.spec.tasks.len(), n);
        assert_eq!(dag.levels().len(), 1);
        let json = format!(
            "{{\"subtasks\": [{}]}}",
            (0..n)
                .map(|i| format!("{{\"id\": {i}, \"command\": \"true\"}}"))
                .collect::<Vec<_>>()
                .join(",\n")
        );
        let (loaded, dag) = parse_and_check("wide.json", &json).unwrap();
        assert_eq!(loaded.format, Format::Subtasks);
        let parallel = loaded.spec.mode_decision(Some(ExecutionMode::Parallel));
        assert_eq!(dag.plan(8, &parallel).estimated_makespan as usize, n / 8);
        assert_eq!(
            loaded.positions[&loaded.spec.tasks[n - 1].name].line,
            n as u32
        );
    });
}

#[test]
fn a_hundred_thousand_deep_chain_needs_no_deep_stack() {
    on_small_stack(|| {
        let n = 100_000;
        let (loaded, dag) = parse_and_check("chain.toml", &toml_tasks(n, true, false)).unwrap();
        let plan = dag.plan(4, &loaded.spec.mode_decision(None));
        assert_eq!((plan.levels.len(), plan.critical_path.len()), (n, n));
        assert!(crate::graph::dot(&loaded.spec, &dag).contains("  t99998 -> t99999;\n"));
        let _ = crate::graph::mermaid(&loaded.spec, &dag);

        // The same chain closed into a cycle: named whole, at the first task's line.
        let err = parse_and_check("ring.toml", &toml_tasks(n, true, true)).unwrap_err();
        assert!(
            err.starts_with("ring.toml:2:8: dependency cycle: t0 → t1 → t2 → "),
            "{}",
            &err[..200]
        );
        assert!(err.ends_with("t99998 → t99999 → t0 (each must finish before the next)"));

        // A TaskMaster chain, each task depending on the one before.
        let tm = format!(
            "{{\"tasks\": [{}]}}",
            (1..=n)
                .map(|i| format!(
                    "{{\"id\": {i}, \"title\": \"t\", \"dependencies\": [{}]}}",
                    i - 1
                ))
                .collect::<Vec<_>>()
                .join(",\n")
        );
        let o = LoadOptions::default();
        let loaded = parse("tasks.json", &tm, &o).unwrap();
        assert_eq!(loaded.format, Format::TaskMaster);
        let dag = check(&loaded, "tasks.json").unwrap();
        assert_eq!(dag.levels().len(), n);
    });
}

#[test]
fn deep_nesting_is_rejected_at_its_line_on_a_small_stack() {
    on_small_stack(|| {
        let n = 100_000;
        let cases = [
            (
                "deep.json",
                format!("{{\"tasks\": [],\n\"x\": {}", "[".repeat(n)),
                2,
            ),
            ("deep.json", format!("\n\n{}", "{\"a\": [".repeat(n)), 3),
            (
                "deep.json",
                format!(
                    "{{\"subtasks\": [{{\"id\": 1,\n\"steps\": {}}}]}}",
                    "[".repeat(n)
                ),
                2,
            ),
            (
                "deep.toml",
                format!("name = \"j\"\nx = {}", "[".repeat(n)),
                2,
            ),
            (
                "deep.toml",
                format!("name = \"j\"\n\nx = {}", "{a = ".repeat(n)),
                3,
            ),
            ("deep.toml", format!("x = {}", "[{a = ".repeat(n)), 1),
            (
                "deep.toml",
                format!("[[tasks]]\nname = \"a\"\nlabels = {}", "{b = [".repeat(n)),
                3,
            ),
            (
                "deep.md",
                format!("### Task 1: A\n```sh\n{}\n```\n", "[".repeat(n)),
                0,
            ),
        ];
        for (label, text, line) in cases {
            for f in Format::ALL.into_iter().map(Some).chain([None]) {
                let o = LoadOptions {
                    format: f,
                    ..Default::default()
                };
                match parse(label, &text, &o) {
                    Ok(_) => assert!(
                        f.is_none() && line == 0 || f == Some(Format::Markdown),
                        "{label} accepted as {f:?}"
                    ),
                    Err(diags) => assert_diagnostics(label, &text, &diags, label),
                }
            }
            if line > 0 {
                let err = parse(label, &text, &LoadOptions::default()).unwrap_err();
                assert_eq!(err[0].pos.map(|p| p.line), Some(line), "{}", err[0]);
                assert!(
                    err[0].message.contains("nested deeper than 128 levels"),
                    "{}",
                    err[0]
                );
            } else {
                // Brackets inside a Markdown code block are just a command.
                let (loaded, _) = parse_and_check(label, &text).unwrap();
                assert_eq!(
                    loaded.spec.tasks[0].command.as_ref().unwrap().trim().len(),
                    n
                );
            }
        }
    });
}

#[test]
fn nul_bytes_are_rejected_with_their_line() {
    let cases = [
        // Raw NUL: not allowed in TOML or JSON strings, nor bare.
        (
            "n.toml",
            "[[tasks]]\nname = \"a\"\ncommand = \"x\0y\"\n",
            "n.toml:3:",
        ),
        (
            "n.toml",
            "[[tasks]]\nname = 'a\0'\ncommand = 'x'\n",
            "n.toml:2:",
        ),
        (
            "n.toml",
            "[[tasks]]\nname = \"a\"\ncommand = \"\"\"x\0y\"\"\"\n",
            "n.toml:3:",
        ),
        (
            "n.toml",
            "[[tasks]]\nname = \"a\"\ncommand = \"x\"\n\0\n",
            "n.toml:4:",
        ),
        (
            "n.json",
            "{\"tasks\": [\n{\"name\": \"a\", \"command\": \"x\0\"}]}",
            "n.json:2:",
        ),
        ("n.json", "{\"tasks\": []}\n\0", "n.json:2:"),
        // Escaped NUL in a task name: not a name.
        (
            "n.toml",
            "[[tasks]]\nname = \"a\\u0000b\"\ncommand = \"x\"\n",
            "n.toml:2:8: task name \"a\\0b\" contains a control character",
        ),
        (
            "n.json",
            "{\"tasks\": [\n{\"name\": \"a\\u0000\", \"command\": \"x\"}]}",
            "n.json:2:",
        ),
        (
            "tasks.json",
            "{\"tasks\": [\n{\"id\": \"a\\u0000\", \"title\": \"x\"}]}",
            "tasks.json:2:8: task name",
        ),
        (
            "s.json",
            "{\"subtasks\": [\n{\"id\": \"\\u0000\", \"command\": \"x\"}]}",
            "s.json:2:8: task name",
        ),
        // Escaped NUL in what a program receives: no program can be given it.
        (
            "n.toml",
            "[[tasks]]\nname = \"a\"\ncommand = \"x\\u0000y\"\n",
            "n.toml:2:8: task 'a': command contains a NUL byte",
        ),
        (
            "n.toml",
            "[[tasks]]\nname = \"a\"\nargv = [\"x\", \"\\u0000\"]\n",
            "n.toml:2:8: task 'a': argv contains a NUL byte",
        ),
        (
            "n.json",
            "{\"tasks\": [\n{\"name\": \"a\", \"prompt\": \"\\u0000\"}]}",
            "n.json:2:10: task 'a': prompt contains a NUL byte",
        ),
        (
            "s.json",
            "{\"subtasks\": [\n{\"id\": \"a\", \"command\": \"\\u0000\"}]}",
            "s.json:2:8: task 'a': command contains a NUL byte",
        ),
        (
            "n.md",
            "# J\n\n### Task 1: A\u{0}B\n```sh\nec\0ho\n```\n",
            "n.md:3:1: task 'task-1': command contains a NUL byte",
        ),
        (
            "n.toml",
            "[settings]\nenv = { K = \"\\u0000\" }\n[[tasks]]\nname = \"a\"\ncommand = \"x\"\n",
            "n.toml: settings: env contains a NUL byte",
        ),
    ];
    for (label, text, want) in cases {
        let err = parse_and_check(label, text).unwrap_err();
        assert!(err.starts_with(want), "{text:?}: {err}");
    }
    // NUL in text nothing executes is kept.
    let (loaded, _) = parse_and_check(
        "ok.toml",
        "[[tasks]]\nname = \"a\"\ncommand = \"x\"\ndescription = \"\\u0000\"\n",
    )
    .unwrap();
    assert_eq!(loaded.spec.tasks[0].description.as_deref(), Some("\0"));
}

#[test]
fn invalid_utf8_is_rejected_at_its_line_and_column() {
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "u.toml",
            b"name = \"j\"\n[[tasks]]\nname = \"\xff\"\n",
            ":3:9:",
        ),
        (
            "u.json",
            b"{\"tasks\": [\n  {\"name\": \"\xc3\xa9\xc3\"}]}",
            ":2:14:",
        ),
        (
            "u.md",
            b"# J\n### Task 1: \xe2\x8f\xb3 \xed\xa0\x80\n",
            ":2:15:",
        ),
        ("u.toml", b"\xef\xbb\xbf\x80", ":1:2:"),
        ("u.json", b"{}\n\xe2\x8f", ":2:1:"),
    ];
    for (name, bytes, want) in cases {
        let (path, r) = load_bytes(name, bytes);
        let err = r.unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            err[0].to_string(),
            format!("{}{want} file is not valid UTF-8", path.display()),
            "{bytes:?}"
        );
    }
}
