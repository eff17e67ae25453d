//! Traces end to end: a real OTLP receiver (HTTP/protobuf and gRPC) gets the spans of a 3-task
//! job run by `ordo run` and by a coordinator and a worker: one trace per job, the attempt spans
//! children of the job span, the worker's execution spans children of the attempt spans (through
//! `traceparent` in the NATS headers), command and verify spans under them, a quality gate's
//! stage span under its attempt, attributes and state-transition events present.

use std::time::Duration;

use ordo_tests::otlp::{OtlpReceiver, Protocol, ReceivedSpan};
use ordo_tests::{Cluster, ordo_in, wait_until, write};

const JOB: &str = r#"name = "traced"
[[tasks]]
name = "build"
command = "echo built > artifact"
verify_command = "test -f artifact"
labels = { gated = "yes" }
[[tasks]]
name = "test"
command = "true"
depends_on = ["build"]
[[tasks]]
name = "lint"
command = "exit 0"
[[stages]]
name = "check"
command = "test -f artifact"
select = { gated = "yes" }
"#;

/// Waits until the receiver holds `n` spans named like `prefix*`.
fn wait_spans(rx: &OtlpReceiver, prefix: &str, n: usize) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    let ok = wait_until(Duration::from_secs(30), || {
        spans = rx.spans();
        spans.iter().filter(|s| s.name.starts_with(prefix)).count() >= n
    });
    assert!(ok, "expected {n} '{prefix}' spans, got {spans:#?}");
    spans
}

/// Checks the shape of one job's trace and returns the job id.
fn check_trace(spans: &[ReceivedSpan], worker: &str) -> String {
    let roots: Vec<_> = spans.iter().filter(|s| s.name == "job traced").collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0];
    let job = root
        .attr("ordo.job.id")
        .expect("job id attribute")
        .to_string();
    assert_eq!(
        root.trace_id,
        job.replace('-', ""),
        "the trace id is the job id"
    );
    assert_eq!(root.attr("ordo.job.state"), Some("succeeded"));
    assert!(
        root.events.iter().any(|e| e == "job succeeded"),
        "{:?}",
        root.events
    );
    assert!(
        root.events
            .iter()
            .any(|e| e.starts_with("task build succeeded")),
        "{:?}",
        root.events
    );
    assert!(
        spans.iter().all(|s| s.trace_id == root.trace_id),
        "one trace per job"
    );

    let tasks: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("task "))
        .collect();
    assert_eq!(tasks.len(), 3, "{tasks:#?}");
    for t in &tasks {
        assert_eq!(
            t.parent_span_id, root.span_id,
            "attempt span under the job span"
        );
        assert_eq!(t.attr("ordo.task.attempt"), Some("1"));
        assert_eq!(t.attr("ordo.task.state"), Some("succeeded"));
        assert_eq!(t.attr("ordo.exit_code"), Some("0"));
        assert_eq!(t.attr("ordo.worker"), Some(worker));
        assert!(t.events.iter().any(|e| e == "dispatched"), "{:?}", t.events);
        // Also for tasks too short for the worker to send `Started`: the result tells.
        assert!(
            t.events
                .iter()
                .any(|e| e == &format!("running on {worker}")),
            "{:?}",
            t.events
        );
        assert!(t.events.iter().any(|e| e == "succeeded"), "{:?}", t.events);
    }
    // The quality gate's stage run: a span of its own under the attempt it checked.
    let build = tasks.iter().find(|t| t.name == "task build").unwrap();
    let stages: Vec<_> = spans.iter().filter(|s| s.name == "stage check").collect();
    assert_eq!(stages.len(), 1, "{spans:#?}");
    assert_eq!(
        stages[0].parent_span_id, build.span_id,
        "stage under its attempt"
    );
    assert_eq!(stages[0].attr("ordo.stage.verdict"), Some("pass"));
    assert_eq!(stages[0].attr("ordo.stage.kind"), Some("command"));
    let execs: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("execute "))
        .collect();
    assert_eq!(execs.len(), 3, "{execs:#?}");
    for e in &execs {
        let task = e.name.trim_start_matches("execute ");
        let parent = tasks
            .iter()
            .find(|t| t.name == format!("task {task}"))
            .expect("matching attempt span");
        assert_eq!(
            e.parent_span_id, parent.span_id,
            "execution under its attempt span"
        );
        let children: Vec<_> = spans
            .iter()
            .filter(|s| s.parent_span_id == e.span_id)
            .collect();
        let names: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
        if task == "build" {
            assert_eq!(names.len(), 2, "{names:?}");
            assert!(
                names.contains(&"command") && names.contains(&"verify"),
                "{names:?}"
            );
        } else {
            assert_eq!(names, ["command"]);
        }
    }
    job
}

#[test]
fn ordo_run_exports_the_job_trace_over_http() {
    let rx = OtlpReceiver::start(Protocol::Http);
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "traced.toml", JOB);
    let env: Vec<(String, String)> = rx.env("ordo");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = ordo_in(dir.path(), &["run", &spec, "--quiet"], &env_refs);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    // `ordo run` flushes when the job ends: everything is there when it exits.
    let spans = rx.spans();
    assert!(spans.iter().all(|s| s.service == "ordo"), "{spans:#?}");
    check_trace(&spans, "local");
}

#[test]
fn coordinator_and_worker_export_one_trace_over_grpc() {
    let rx = OtlpReceiver::start(Protocol::Grpc);
    let mut c = Cluster::start_env(&[], rx.env("ordo-cluster"));
    c.add_worker("traced-worker", &[]);
    let spec = write(c.work.path(), "traced.toml", JOB);
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let spans = wait_spans(&rx, "job ", 1);
    let spans = if spans
        .iter()
        .filter(|s| s.name.starts_with("execute "))
        .count()
        < 3
    {
        wait_spans(&rx, "execute ", 3)
    } else {
        spans
    };
    let job = check_trace(&spans, "traced-worker");
    assert_eq!(job, r.stdout.trim());
}

/// The address a daemon logged for its metrics endpoint.
fn metrics_addr(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("metrics at /metrics"))?;
    let start = line.find("addr=")? + 5;
    Some(line[start..].split_whitespace().next()?.to_string())
}

/// GET /metrics and parse the exposition format into `name{labels}` → value.
fn scrape(addr: &str) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut out = std::collections::HashMap::new();
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return out;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some((key, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(key.to_string(), v);
        }
    }
    out
}

#[test]
fn metrics_of_coordinator_and_worker_match_the_job() {
    let mut c = Cluster::start(&["--metrics-addr", "127.0.0.1:0"]);
    c.add_worker(
        "metered",
        &["--metrics-addr", "127.0.0.1:0", "--concurrency", "2"],
    );
    let mut coord = None;
    let mut work = None;
    assert!(wait_until(Duration::from_secs(10), || {
        coord = metrics_addr(&c.coordinator.log());
        work = metrics_addr(&c.workers[0].log());
        coord.is_some() && work.is_some()
    }));
    let (coord, work) = (coord.unwrap(), work.unwrap());
    let spec = write(
        c.work.path(),
        "metered.toml",
        "[[tasks]]\nname = \"gate\"\ncommand = \"while [ ! -f go ]; do sleep 0.05; done\"\n\
         [[tasks]]\nname = \"a\"\ncommand = \"true\"\ndepends_on = [\"gate\"]\n\
         [[tasks]]\nname = \"b\"\ncommand = \"true\"\ndepends_on = [\"gate\"]\n",
    );
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let job = r.stdout.trim().to_string();

    // During the job: one task running on the worker, two pending on the coordinator.
    let mut m = Default::default();
    assert!(
        wait_until(Duration::from_secs(20), || {
            m = scrape(&coord);
            m.get("ordo_tasks{state=\"running\"}") == Some(&1.0)
                && m.get("ordo_tasks{state=\"pending\"}") == Some(&2.0)
        }),
        "coordinator metrics during the job: {m:?}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            m = scrape(&work);
            m.get("ordo_worker_busy_slots") == Some(&1.0)
                && m.get("ordo_worker_total_slots") == Some(&2.0)
        }),
        "worker metrics during the job: {m:?}"
    );

    std::fs::write(c.work.path().join("go"), "").unwrap();
    let r = c.ordo(&["watch", &job]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);

    assert!(
        wait_until(Duration::from_secs(20), || {
            m = scrape(&coord);
            m.get("ordo_task_transitions_total{state=\"succeeded\"}") == Some(&3.0)
                && m.get("ordo_results_total{kind=\"applied\"}") == Some(&3.0)
                && m.get("ordo_tasks{state=\"running\"}") == Some(&0.0)
        }),
        "coordinator metrics after the job: {m:?}"
    );
    assert_eq!(
        m.get("ordo_task_duration_seconds_count"),
        Some(&3.0),
        "{m:?}"
    );
    assert!(
        m.get("ordo_redb_commit_seconds_count")
            .is_some_and(|n| *n >= 1.0),
        "{m:?}"
    );
    // `gate` was seen running; `a` and `b` end before the worker's `Started` delay, and their
    // results tell when they started: every attempt has its dispatch-to-start time.
    assert!(
        m.get("ordo_task_transitions_total{state=\"running\"}")
            .is_some_and(|n| *n >= 1.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("ordo_dispatch_to_start_seconds_count"),
        Some(&3.0),
        "{m:?}"
    );
    let w = scrape(&work);
    assert_eq!(
        w.get("ordo_worker_tasks_total{outcome=\"succeeded\"}"),
        Some(&3.0),
        "{w:?}"
    );
    assert_eq!(w.get("ordo_worker_busy_slots"), Some(&0.0), "{w:?}");
}
