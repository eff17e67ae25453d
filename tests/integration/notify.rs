//! `[[notify]]` end to end: a webhook receiver on loopback (a thread on a `TcpListener` that
//! records each request and can answer 500 to the first N) gets exactly the subscribed events
//! of an `ordo run`, signed (checked by Python's `hmac`, not by ordo's code) and each with its
//! own `Ordo-Delivery`; a receiver that fails for a while gets them later, once each, and the
//! job does not wait for it; a coordinator killed right after committing a notification sends
//! it once after its restart. The guarantee is at least once with a stable delivery id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ordo_tests::{Cluster, ordo_in, venv_python, wait_until, write};
use serde_json::Value;

const SECRET: &str = "s3cret-for-tests";

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// What the receiver answered.
    status: u16,
}

impl Request {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub(crate) fn event(&self) -> String {
        self.json()["event"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub(crate) fn delivery(&self) -> String {
        self.headers["ordo-delivery"].clone()
    }
}

/// A webhook receiver: answers 500 to the first `fail_first` requests, 200 after (the
/// approvals' cluster test uses it too).
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub(crate) fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Request>>> = Arc::default();
        let log = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let mut got = log.lock().unwrap();
                let status = if got.len() < fail_first { 500 } else { 200 };
                got.push(Request {
                    path,
                    headers,
                    body,
                    status,
                });
                drop(got);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }

    /// The requests answered 200.
    fn accepted(&self) -> Vec<Request> {
        let mut r = self.requests();
        r.retain(|r| r.status == 200);
        r
    }
}

/// Checks every signature with Python's `hmac` over `<t>.<body>`; panics naming a bad one.
fn assert_signed(requests: &[Request]) {
    let items: Vec<Value> = requests
        .iter()
        .map(|r| {
            let sig = r.headers.get("ordo-signature").cloned().unwrap_or_default();
            serde_json::json!({"sig": sig, "body": String::from_utf8_lossy(&r.body)})
        })
        .collect();
    let script = r#"
import hmac, hashlib, json, sys, time
for item in json.load(sys.stdin):
    parts = dict(p.split("=", 1) for p in item["sig"].split(","))
    t, v1 = parts["t"], parts["v1"]
    want = hmac.new(sys.argv[1].encode(), (t + "." + item["body"]).encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(want, v1), item
    assert abs(time.time() - int(t)) < 600, item
print("ok")
"#;
    let mut child = Command::new(venv_python("python"))
        .args(["-c", script, SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&items).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "a signature does not verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spec(url: &str) -> String {
    format!(
        r#"name = "hooked"
[[tasks]]
name = "build"
command = "true"
[[tasks]]
name = "broken"
command = "echo boom; exit 3"

[[notify]]
events = ["task_failed", "job_ended"]
url = "{url}/ops"
secret_env = "ORDO_TEST_HOOK_SECRET"
dashboard_url = "http://dash.example"

[[notify]]
events = ["awaiting_approval", "budget_exhausted", "conflict_escalated"]
url = "{url}/unsubscribed"
"#
    )
}

/// A local run with a failing task: the hook gets `task_failed` and `job_ended` (and nothing
/// for events it did not subscribe to), signed, each with its own delivery id, and the body
/// names the task, its state, the reason and the dashboard link.
#[test]
fn a_local_run_sends_exactly_the_subscribed_events_signed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(0);
    let spec = write(dir.path(), "job.toml", &spec(&rx.url));
    let r = ordo_in(
        dir.path(),
        &["run", &spec],
        &[("ORDO_TEST_HOOK_SECRET", SECRET)],
    );
    assert_eq!(r.code(), 1, "{}{}", r.stdout, r.stderr);
    // `ordo run` delivered before it exited: nothing to wait for.
    let got = rx.requests();
    let mut events: Vec<(String, String)> =
        got.iter().map(|r| (r.path.clone(), r.event())).collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("/ops".to_string(), "job_ended".to_string()),
            ("/ops".to_string(), "task_failed".to_string())
        ],
        "{}",
        r.stderr
    );
    assert_signed(&got);
    assert_ne!(got[0].delivery(), got[1].delivery());
    let failed = got
        .iter()
        .find(|r| r.event() == "task_failed")
        .unwrap()
        .json();
    assert_eq!(failed["task"], "broken");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["job_name"], "hooked");
    let job = failed["job"].as_str().unwrap();
    assert_eq!(
        failed["url"],
        format!("http://dash.example/jobs/{job}/tasks/1")
    );
    let ended = got
        .iter()
        .find(|r| r.event() == "job_ended")
        .unwrap()
        .json();
    assert_eq!(ended["state"], "failed");
    assert_eq!(ended["url"], format!("http://dash.example/jobs/{job}"));
}

/// A receiver answering 500 to the first requests: the job ends without waiting for it; the
/// notifications left are sent by the next process on the state directory, once each, with the
/// same delivery id as the failed tries; status counts the failures.
#[test]
fn a_failing_receiver_gets_each_event_later_once_and_the_job_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    // Fails more requests than a 10 s exit wait can retry (1 s, 2 s, 4 s...): some are left.
    let rx = Receiver::start(8);
    let spec = write(dir.path(), "job.toml", &spec(&rx.url));
    let env = [("ORDO_TEST_HOOK_SECRET", SECRET)];
    let r = ordo_in(dir.path(), &["run", &spec, "--state", state], &env);
    assert_eq!(r.code(), 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("not sent yet")
            && r.stderr
                .contains("the next ordo process on this state directory sends them"),
        "{}",
        r.stderr
    );
    let status = ordo_in(
        dir.path(),
        &["status", "--state", state, "--output", "json"],
        &[],
    );
    let jobs = status.json();
    let failures = jobs[0]["notify"]["failures"].as_u64().unwrap_or(0);
    assert!(failures >= 1, "{jobs}");
    assert!(
        jobs[0]["notify"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{jobs}"
    );
    let job = jobs[0]["id"].as_str().unwrap();
    let text = ordo_in(dir.path(), &["status", job, "--state", state], &[]);
    assert!(
        text.stdout.contains("notify: ") && text.stdout.contains("deliveries failed"),
        "{}",
        text.stdout
    );
    // The job's end was committed before the first delivery ended: it did not wait.
    let tries_before = rx.requests().len();
    assert!(tries_before >= 2, "retried while exiting");

    // The next process on the directory (an idle dashboard) sends what is left.
    let mut ui = Command::new(ordo_tests::bin("ordo"))
        .args(["ui", "--state", state, "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let both = wait_until(Duration::from_secs(30), || rx.accepted().len() >= 2);
    let _ = ui.kill();
    let _ = ui.wait();
    assert!(both, "{:?}", rx.requests());
    let accepted = rx.accepted();
    let mut events: Vec<String> = accepted.iter().map(Request::event).collect();
    events.sort();
    assert_eq!(events, ["job_ended", "task_failed"], "once each");
    // Every try of one notification carried the same id; two notifications, two ids.
    let ids: std::collections::BTreeSet<String> =
        rx.requests().iter().map(Request::delivery).collect();
    assert_eq!(ids.len(), 2, "{:?}", rx.requests());
    assert_signed(&rx.requests());
}

/// The coordinator killed right after committing a notification, before sending it: the
/// restarted coordinator sends it, and it arrives once (no two requests share a delivery id).
#[test]
fn a_coordinator_killed_after_committing_a_notification_sends_it_once_after_restart() {
    let rx = Receiver::start(0);
    let env = vec![
        (
            "ORDO_FAILPOINTS".to_string(),
            ordo_plumbing::failpoint::AFTER_NOTICE_COMMIT.to_string(),
        ),
        ("ORDO_TEST_HOOK_SECRET".to_string(), SECRET.to_string()),
    ];
    let mut c = Cluster::start_env(&[], env);
    c.add_worker("w1", &[]);
    let spec = write(c.work.path(), "job.toml", &spec(&rx.url));
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let status = c.coordinator.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "the failpoint killed it");
    assert!(rx.requests().is_empty(), "killed before sending");
    c.coordinator.set_env("ORDO_FAILPOINTS", None);
    let restarted = std::time::Instant::now();
    c.coordinator.start();
    assert!(
        wait_until(Duration::from_secs(30), || rx.requests().len() >= 2),
        "{:?}\n{}",
        rx.requests(),
        c.coordinator.log()
    );
    let recovery = restarted.elapsed();
    // Anything more would come at once: give a double a moment to show.
    std::thread::sleep(Duration::from_millis(500));
    let got = rx.requests();
    let ids: std::collections::BTreeSet<String> = got.iter().map(Request::delivery).collect();
    assert_eq!(ids.len(), got.len(), "a delivery id came twice: {got:?}");
    let mut events: Vec<String> = got.iter().map(Request::event).collect();
    events.sort();
    assert_eq!(events, ["job_ended", "task_failed"]);
    assert_signed(&got);
    ordo_tests::ledger::record(
        "9zzc",
        ordo_tests::ledger::Row {
            fault: "13. notifications: the coordinator killed right after committing them \
                    (`coordinator.after-notice-commit`) and restarted: each event delivered \
                    from the outbox, none twice (events as tasks, deliveries as executions)"
                .into(),
            seeds: 1,
            tally: ordo_tests::ledger::Tally {
                tasks: 2,
                executions: got.len(),
                duplicates: got.len() - ids.len(),
                ..Default::default()
            },
            recovery: Some(recovery),
        },
    );
}
