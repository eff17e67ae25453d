//! `ordo mcp` driven by a real MCP client that is not ours: the official Python SDK (PyPI `mcp`,
//! installed into `.venv` by `scripts/test`) through its stdio client, with the driver script
//! `tests/mcp_client.py`. Local mode: initialize, tools/list, every tool called, a job run to
//! completion and its report fetched, a cycle rejected as a tool error, a running job
//! cancelled, and the state directory readable by `ordo report` afterwards. Cluster mode: a job
//! submitted through MCP runs on a real coordinator and worker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ordo_tests::{Cluster, bin, ordo_in, run_with_deadline, write};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    ordo_tests::venv_python("the MCP Python SDK")
}

/// Runs `ordo ARGS` as an MCP server in `dir` under the Python SDK's client, which calls
/// `steps` (see tests/mcp_client.py); returns what the client saw.
pub(crate) fn mcp_session(dir: &Path, args: &[&str], steps: &Value) -> Value {
    let steps_file = write(dir, "mcp-steps.json", &steps.to_string());
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/mcp_client.py"))
        .arg(&steps_file)
        .arg(bin("ordo"))
        .args(args)
        .current_dir(dir)
        .env_remove("ORDO_EXECUTION_MODE")
        .env_remove("ORDO_NATS_URL");
    let r = run_with_deadline(cmd, Duration::from_secs(180));
    assert_eq!(
        r.code(),
        0,
        "the MCP client failed:\n{}\nstdout:\n{}",
        r.stderr,
        r.stdout
    );
    r.json()
}

fn step<'a>(session: &'a Value, i: usize, tool: &str) -> &'a Value {
    let s = &session["steps"][i];
    assert_eq!(s["tool"], tool, "step {i}: {s}");
    s
}

/// A successful call: structured content, and text whose first item is a one-line summary.
fn ok<'a>(session: &'a Value, i: usize, tool: &str) -> &'a Value {
    let s = step(session, i, tool);
    assert_eq!(s["is_error"], false, "{tool} failed: {s}");
    let summary = s["text"][0].as_str().unwrap();
    assert!(
        !summary.is_empty() && !summary.contains('\n'),
        "{tool}: the first text is not a one-line summary: {summary:?}"
    );
    assert!(s["structured"].is_object(), "{tool}: no structured content");
    &s["structured"]
}

fn text(s: &Value) -> String {
    s["text"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

const TOOLS: [&str; 9] = [
    "validate_job",
    "plan_job",
    "convert_markdown",
    "submit_job",
    "job_status",
    "list_jobs",
    "cancel_job",
    "job_logs",
    "job_report",
];

/// The tools that decide on a task awaiting approval (called in `gates_faces`).
const DECIDE_TOOLS: [&str; 2] = ["approve", "reject"];

const PIPELINE: &str = r#"
name = "mcp-pipeline"

[[tasks]]
name = "fetch"
command = "echo fetched-data"

[[tasks]]
name = "build"
command = "echo built-it"
depends_on = ["fetch"]

[[tasks]]
name = "check"
command = "echo checked"
verify_command = "true"
depends_on = ["fetch"]
"#;

const CYCLE: &str = r#"
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
"#;

const MARKDOWN: &str = "# Doc\n\n## Implementation Tasks\n\n### Task 1: Prepare\n\n\
    - Get ready\n\n```sh\necho prepared\n```\n\n### Task 2: Finish\n\n- Depends on: Task 1\n\n\
    ```sh\necho finished\n```\n";

const ENDED: [&str; 3] = ["succeeded", "failed", "cancelled"];

#[test]
fn local_mode_serves_every_tool_to_the_python_sdk() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pipeline.toml", PIPELINE);
    let slow = json!({"name": "slow", "tasks": [
        {"name": "nap", "command": "sleep 60"},
        {"name": "after", "command": "true", "depends_on": ["nap"]},
    ]})
    .to_string();
    let steps = json!([
        {"tool": "validate_job", "arguments": {"spec": PIPELINE}},
        {"tool": "validate_job", "arguments": {"spec": CYCLE}},
        {"tool": "plan_job", "arguments": {"path": "pipeline.toml", "workers": 2}},
        {"tool": "convert_markdown", "arguments": {"spec": MARKDOWN, "to": "toml"}},
        {"tool": "submit_job", "arguments": {"path": "pipeline.toml"}, "save": {"job": "job"}},
        {"tool": "job_status", "arguments": {"job": "${job}"},
         "until": {"field": "state", "in": ENDED}, "timeout": 60},
        {"tool": "list_jobs", "arguments": {"search": "mcp-pipeline"}},
        {"tool": "job_logs", "arguments": {"job": "${job}", "task": "build"}},
        {"tool": "job_report", "arguments": {"job": "${job}"}},
        {"tool": "job_report", "arguments": {"job": "${job}", "format": "json"}},
        {"tool": "submit_job", "arguments": {"spec": slow, "format": "json"},
         "save": {"slow": "job"}},
        {"tool": "job_status", "arguments": {"job": "${slow}"},
         "until": {"field": "running", "in": [1]}, "timeout": 60},
        {"tool": "cancel_job", "arguments": {"job": "${slow}"}},
        {"tool": "job_status", "arguments": {"job": "${slow}"}},
        {"tool": "job_status", "arguments": {"job": "not-a-job"}},
        {"tool": "submit_job", "arguments": {"spec": CYCLE}},
    ]);
    let s = mcp_session(dir.path(), &["mcp"], &steps);

    // initialize and tools/list
    assert_eq!(s["server_info"]["name"], "ordo", "{}", s["server_info"]);
    assert!(
        s["capabilities"]["tools"].is_object(),
        "{}",
        s["capabilities"]
    );
    let tools = s["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut expected = [TOOLS.as_slice(), &DECIDE_TOOLS].concat();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for t in tools {
        let schema = &t["inputSchema"];
        assert_eq!(schema["type"], "object", "{t}");
        assert!(
            schema["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty()),
            "{t}"
        );
        assert!(!t["description"].as_str().unwrap_or("").is_empty(), "{t}");
    }
    let submit = tools.iter().find(|t| t["name"] == "submit_job").unwrap();
    for field in ["spec", "path", "format", "mode", "max_parallel"] {
        assert!(
            submit["inputSchema"]["properties"][field]["description"].is_string(),
            "submit_job has no described `{field}`: {submit}"
        );
    }
    let called: std::collections::BTreeSet<&str> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["tool"].as_str().unwrap())
        .collect();
    assert_eq!(called.len(), TOOLS.len(), "every tool is called");

    // validate_job: a valid spec, then a cycle as a tool error with the CLI's message.
    let v = ok(&s, 0, "validate_job");
    assert_eq!(v["valid"], true);
    assert_eq!(v["tasks"], 3);
    assert_eq!(v["name"], "mcp-pipeline");
    let bad = step(&s, 1, "validate_job");
    assert_eq!(bad["is_error"], true, "{bad}");
    let message = text(bad);
    assert!(
        message.contains("dependency cycle: a → b → c → a"),
        "the cycle path is named: {message}"
    );
    assert!(
        message.starts_with("spec.toml:"),
        "file:line:col: {message}"
    );
    assert_eq!(bad["structured"]["valid"], false);
    assert!(bad["structured"]["errors"][0]["line"].is_number(), "{bad}");

    // plan_job (from a path)
    let plan = ok(&s, 2, "plan_job");
    assert_eq!(plan["levels"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(plan["workers"], 2);
    assert_eq!(plan["critical_path"][0], "fetch");

    // convert_markdown
    let conv = ok(&s, 3, "convert_markdown");
    assert_eq!(conv["from"], "markdown");
    assert_eq!(conv["tasks"], 2);
    let toml_text = conv["text"].as_str().unwrap();
    assert!(
        toml_text.contains("[[tasks]]") && toml_text.contains("echo finished"),
        "{toml_text}"
    );

    // submit_job → job_status until it ends
    let job = ok(&s, 4, "submit_job")["job"].as_str().unwrap().to_string();
    assert_eq!(job.len(), 36);
    let status = ok(&s, 5, "job_status");
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["id"], job.as_str());
    for t in status["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "succeeded", "{t}");
        assert_eq!(t["exit_code"], 0, "{t}");
    }

    // list_jobs
    let jobs = ok(&s, 6, "list_jobs")["jobs"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["id"] == job.as_str()), "{jobs:?}");

    // job_logs of one task
    let logs = ok(&s, 7, "job_logs");
    let tasks = logs["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{logs}");
    assert_eq!(tasks[0]["name"], "build");
    assert_eq!(tasks[0]["output"], "built-it\n");

    // job_report: Markdown naming every task, then the JSON model
    let md = ok(&s, 8, "job_report");
    assert_eq!(md["format"], "md");
    let report = md["report"].as_str().unwrap();
    for name in ["fetch", "build", "check", "mcp-pipeline", "succeeded"] {
        assert!(report.contains(name), "the report names {name}:\n{report}");
    }
    assert!(text(step(&s, 8, "job_report")).contains("## Verification"));
    let model = &ok(&s, 9, "job_report")["report"];
    let names: Vec<&str> = model["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fetch", "build", "check"]);
    assert_eq!(model["summary"]["outcome"], "succeeded");

    // cancel_job stops a running job
    let slow_id = ok(&s, 10, "submit_job")["job"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ok(&s, 11, "job_status")["running"], 1);
    let cancelled = ok(&s, 12, "cancel_job");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let after = ok(&s, 13, "job_status");
    assert_eq!(after["state"], "cancelled");
    assert_eq!(after["reason"], "cancelled by user");
    let nap = &after["tasks"][0];
    assert_eq!(nap["state"], "cancelled", "{after}");
    assert!(
        nap["duration_ms"].as_u64().unwrap() < 30_000,
        "the task was killed, not waited for: {nap}"
    );

    // errors: an unknown job, a bad spec given to submit_job
    let unknown = step(&s, 14, "job_status");
    assert_eq!(unknown["is_error"], true);
    assert!(text(unknown).contains("no job 'not-a-job'"), "{unknown}");
    let rejected = step(&s, 15, "submit_job");
    assert_eq!(rejected["is_error"], true);
    assert!(text(rejected).contains("dependency cycle"), "{rejected}");

    // The state outlives the server: the default state directory holds both jobs.
    let r = ordo_in(
        dir.path(),
        &["report", "--state", ".ordo-mcp", &job, "--format", "json"],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["summary"]["outcome"], "succeeded");
    let r = ordo_in(
        dir.path(),
        &[
            "report",
            "--state",
            ".ordo-mcp",
            &slow_id,
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(r.json()["summary"]["outcome"], "cancelled");
}

#[test]
fn cluster_mode_submits_through_the_coordinator() {
    let mut c = Cluster::start(&[]);
    c.add_worker("mcp-worker", &["--concurrency", "2"]);
    let spec = json!({"name": "mcp-remote", "tasks": [
        {"name": "first", "command": "echo from-the-cluster"},
        {"name": "second", "command": "echo second-done", "depends_on": ["first"]},
    ]})
    .to_string();
    let steps = json!([
        {"tool": "submit_job", "arguments": {"spec": spec}, "save": {"job": "job"}},
        {"tool": "job_status", "arguments": {"job": "${job}"},
         "until": {"field": "state", "in": ENDED}, "timeout": 90},
        {"tool": "list_jobs", "arguments": {}},
        {"tool": "job_logs", "arguments": {"job": "${job}"}},
        {"tool": "job_report", "arguments": {"job": "${job}"}},
    ]);
    let url = c.nats.url();
    let s = mcp_session(c.work.path(), &["mcp", "--nats", &url], &steps);
    assert_eq!(s["server_info"]["name"], "ordo");

    let submitted = ok(&s, 0, "submit_job");
    assert_eq!(submitted["where"], "cluster");
    let job = submitted["job"].as_str().unwrap();
    let status = ok(&s, 1, "job_status");
    assert_eq!(status["state"], "succeeded", "{status}");
    for t in status["tasks"].as_array().unwrap() {
        assert_eq!(t["worker"], "mcp-worker", "{t}");
    }
    let jobs = ok(&s, 2, "list_jobs")["jobs"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["id"] == job), "{jobs:?}");
    let logs = text(step(&s, 3, "job_logs"));
    assert!(
        logs.contains("from-the-cluster") && logs.contains("second-done"),
        "{logs}"
    );
    let report = ok(&s, 4, "job_report")["report"].as_str().unwrap();
    assert!(
        report.contains("first") && report.contains("second"),
        "{report}"
    );

    // The coordinator agrees.
    let r = c.ordo(&["status", job, "--output", "json"]);
    assert_eq!(r.json()["state"], "succeeded");
}

/// `ordo mcp` as a child with raw pipes: lines written as they are, answers read as lines.
struct RawMcp {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    answers: std::sync::mpsc::Receiver<Value>,
}

impl RawMcp {
    fn start(dir: &Path) -> RawMcp {
        use std::io::BufRead;
        let mut child = Command::new(bin("ordo"))
            .arg("mcp")
            .current_dir(dir)
            .env_remove("ORDO_NATS_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| json!({"unreadable": e.to_string(), "line": line}));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        RawMcp {
            child,
            stdin,
            answers,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next answer, within a deadline.
    fn answer(&self) -> Value {
        self.answers
            .recv_timeout(Duration::from_secs(30))
            .expect("no answer within 30 s")
    }
}

impl Drop for RawMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_line_gets_an_answer_and_only_regular_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut mcp = RawMcp::start(dir.path());
    mcp.send(
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}
{"jsonrpc":"2.0","method":"notifications/initialized"}
"#,
    );
    assert_eq!(mcp.answer()["id"], 1);

    // Not JSON: cut short, invalid UTF-8, nested deeper than any parser keeps.
    for bad in [
        b"{\"jsonrpc\": \"2.0\", \"id\": 2, \"method\":\n".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"\xff\xfe\"}\n".to_vec(),
        format!("{}\n", "[".repeat(100_000)).into_bytes(),
    ] {
        mcp.send(&bad);
        let a = mcp.answer();
        assert_eq!(a["error"]["code"], -32700, "{a}");
        assert_eq!(a["id"], Value::Null, "{a}");
    }

    // A request larger than a line may be: refused with its id, in pieces so the test holds
    // no copy of it.
    let max_line = 2 * ordo_proto::names::MAX_SPEC_BYTES;
    mcp.send(br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"validate_job","arguments":{"spec":""#);
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..=max_line / chunk.len() {
        mcp.send(&chunk);
    }
    mcp.send(b"\"}}}\n");
    let a = mcp.answer();
    assert_eq!(a["id"], 4, "{a}");
    assert_eq!(a["error"]["code"], -32600, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("at most {max_line} bytes")),
        "{a}"
    );

    // `path` must be a regular file: not this server's own stdin, not a FIFO nobody writes.
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (id, path) in [(5, "/dev/stdin"), (6, fifo.to_str().unwrap())] {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "validate_job", "arguments": {"path": path}}});
        mcp.send(format!("{call}\n").as_bytes());
        let a = mcp.answer();
        assert_eq!(a["id"], id, "{a}");
        assert_eq!(a["result"]["isError"], true, "{a}");
        assert!(a.to_string().contains("not a regular file"), "{a}");
    }

    // And the session still serves ordinary requests.
    mcp.send(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}\n");
    let a = mcp.answer();
    assert_eq!(a["id"], 7, "{a}");
    assert!(
        a["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() == TOOLS.len() + DECIDE_TOOLS.len()),
        "{a}"
    );
}
