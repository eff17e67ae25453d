//! Jobs larger than one NATS message (issue 18): a spec, a status and a report each over the
//! server's max_payload (1 MiB) go through a real nats-server, coordinator and worker via the
//! object store; `ordo status` pages the task list; a spec over the coordinator's limits is
//! refused naming the file, and leaves no job and no object behind.

use std::time::Duration;

use futures::StreamExt;
use ordo_proto::names;
use ordo_tests::{Cluster, wait_until, write};
use serde_json::Value;

/// Bytes of a padded command: `n` tasks of it make a spec of about `n * (PAD + 60)` bytes.
const PAD: usize = 500;

/// A TOML spec of `n` independent tasks each printing `PAD` bytes, so a few thousand of them
/// (and their status, with output tails) exceed one NATS message.
fn padded_spec(name: &str, n: usize) -> String {
    let pad = "x".repeat(PAD);
    let mut s = format!("name = \"{name}\"\n");
    for i in 0..n {
        s.push_str(&format!(
            "[[tasks]]\nname = \"t{i:05}\"\ncommand = \"echo {pad}\"\n\n"
        ));
    }
    s
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let r = c.ordo(args);
    assert_eq!(r.code(), 0, "ordo {args:?} failed: {}", r.stderr);
    r.json()
}

/// Chunks of live objects in the bucket of large bodies: subjects `$O.ORDO_BLOBS.C.<nuid>`
/// still holding messages (a deleted object's chunks are purged).
fn live_chunks(url: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_stream(format!("OBJ_{}", names::BLOB_BUCKET))
            .await
            .expect("the coordinator creates the bucket");
        let mut subjects = stream
            .info_with_subjects(format!("$O.{}.C.>", names::BLOB_BUCKET))
            .await
            .unwrap();
        let mut live = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, count) = s.unwrap();
            if count > 0 {
                live.push(subject);
            }
        }
        live
    })
}

#[test]
fn a_job_larger_than_one_message_runs_pages_and_reports_whole() {
    let mut c = Cluster::start(&[]);
    c.add_worker("big-w1", &["--concurrency", "8"]);
    let n = 2_500;
    let text = padded_spec("big", n);
    assert!(text.len() > 1 << 20, "the spec must exceed max_payload");
    let spec = write(c.work.path(), "big.toml", &text);
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "submit failed: {}{}", r.stdout, r.stderr);
    let job = r.stdout.trim().to_string();

    // The summary alone is cheap to poll (page size 1).
    let mut last = Value::Null;
    let ended = wait_until(Duration::from_secs(60), || {
        last = json(
            &c,
            &["status", &job, "--page-size", "1", "--output", "json"],
        );
        last["state"] == "succeeded" || last["state"] == "failed"
    });
    assert!(
        ended,
        "the job did not end: {last}\n{}",
        c.coordinator.log()
    );
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["total"], n);
    assert_eq!(last["succeeded"], n);

    // Pages in index order, with their place in the list.
    let p2 = json(
        &c,
        &[
            "status",
            &job,
            "--page",
            "2",
            "--page-size",
            "1000",
            "--output",
            "json",
        ],
    );
    let tasks = p2["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1000);
    assert_eq!(tasks[0]["name"], "t01000");
    assert_eq!(tasks[999]["index"], 1999);
    assert_eq!(p2["page"]["page"], 2);
    assert_eq!(p2["page"]["pages"], 3);
    assert_eq!(p2["page"]["matching"], n);
    assert_eq!(p2["omitted"], n - 1000);
    assert_eq!(p2["total"], n, "the summary counts every task");
    let p3 = json(
        &c,
        &[
            "status",
            &job,
            "--page",
            "3",
            "--task-state",
            "succeeded",
            "--output",
            "json",
        ],
    );
    assert_eq!(p3["tasks"].as_array().unwrap().len(), 500);
    assert_eq!(p3["page"]["states"], serde_json::json!(["succeeded"]));
    let failed = json(
        &c,
        &[
            "status",
            &job,
            "--task-state",
            "failed,timed_out",
            "--output",
            "json",
        ],
    );
    assert_eq!(failed["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(failed["page"]["matching"], 0);
    assert_eq!(failed["page"]["pages"], 1);
    let text = c.ordo(&["status", &job, "--page", "2"]);
    assert!(
        text.stdout
            .contains("page 2 of 3 (2500 tasks; --page 3 for more)"),
        "{}",
        text.stdout
    );

    // A whole page of 2,500 padded tasks is over max_payload: it comes back in one piece.
    let all = c.ordo(&["status", &job, "--page-size", "2500", "--output", "json"]);
    assert_eq!(all.code(), 0, "{}", all.stderr);
    assert!(all.stdout.len() > 1 << 20, "{} bytes", all.stdout.len());
    let all = all.json();
    assert_eq!(all["tasks"].as_array().unwrap().len(), n);
    assert_eq!(
        all["tasks"][n - 1]["output_tail"],
        format!("{}\n", "x".repeat(PAD))
    );

    // One task's output, the task found by name without reading the whole list.
    let logs = c.ordo(&["logs", &job, "t02499"]);
    assert_eq!(logs.code(), 0, "{}", logs.stderr);
    assert_eq!(logs.stdout, format!("{}\n", "x".repeat(PAD)));
    let missing = c.ordo(&["logs", &job, "t99999"]);
    assert_eq!(missing.code(), 2);
    assert!(
        missing.stderr.contains("has no task 't99999'"),
        "{}",
        missing.stderr
    );

    // The report (every command and output, 2.6 MB) comes back whole.
    let report = c.ordo(&["report", &job, "--format", "json"]);
    assert_eq!(report.code(), 0, "report failed: {}", report.stderr);
    assert!(
        report.stdout.len() > 1 << 20,
        "{} bytes",
        report.stdout.len()
    );
    let doc = report.json();
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), n);
    assert!(tasks.iter().all(|t| t["state"] == "succeeded"));
    assert!(
        tasks[n - 1]["run"]["text"]
            .as_str()
            .unwrap()
            .ends_with(&"x".repeat(PAD)),
        "commands come back whole"
    );
    assert_eq!(
        live_chunks(&c.nats.url()),
        Vec::<String>::new(),
        "every request and reply object was deleted once read"
    );
}

#[test]
fn a_spec_over_the_limits_is_refused_and_leaves_nothing_behind() {
    let c = Cluster::start(&["--max-spec-bytes", "1500000", "--max-tasks", "2000"]);
    let dir = c.work.path();

    // Over the byte limit: uploaded (it is over 1 MiB), refused unread, deleted.
    let big = write(dir, "too-big.toml", &padded_spec("too-big", 3_000));
    let r = c.ordo(&["submit", &big]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "no job id: {}", r.stdout);
    assert!(
        r.stderr.contains("too-big.toml (job 'too-big') is ")
            && r.stderr.contains("at most 1500000 bytes are accepted")
            && r.stderr.contains("--max-spec-bytes"),
        "{}",
        r.stderr
    );

    // Over the task limit, through the object store (1.3 MB) and inline (small tasks).
    let many = write(dir, "many.toml", &padded_spec("many", 2_100));
    let r = c.ordo(&["submit", &many]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "many.toml (job 'many'): 2100 tasks; this coordinator accepts at most 2000 tasks \
             per job (ordo-coordinator --max-tasks)"
        ),
        "{}",
        r.stderr
    );
    let mut small = String::from("name = \"small\"\n");
    for i in 0..2_001 {
        small.push_str(&format!("[[tasks]]\nname = \"t{i}\"\ncommand = \"true\"\n"));
    }
    let small = write(dir, "small.toml", &small);
    let r = c.ordo(&["submit", &small]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("2001 tasks"), "{}", r.stderr);

    // Nothing recorded, nothing left in the bucket.
    let jobs = json(&c, &["jobs", "--output", "json"]);
    assert_eq!(jobs, serde_json::json!([]), "no job was recorded");
    assert_eq!(live_chunks(&c.nats.url()), Vec::<String>::new());

    // The limits refuse only what is over them.
    let ok = write(dir, "ok.toml", &padded_spec("ok", 2_000));
    let r = c.ordo(&["submit", &ok]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(live_chunks(&c.nats.url()), Vec::<String>::new());
}
