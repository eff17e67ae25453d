//! First faults of docs/design.md, "Fencing and delivery", by killing and forging things (issue 5
//! has the full suite to come): a worker killed with SIGKILL mid-task, forged and undecodable
//! messages on the task and event subjects, and hostile task names that must never reach a shell, a
//! path or a subject.

use std::time::Duration;

use ordo_tests::{Cluster, lines, ordo_in, wait_until, write};
use serde_json::Value;

fn status(c: &Cluster, job: &str) -> Option<Value> {
    let r = c.ordo(&["status", job, "--output", "json"]);
    (r.code() == 0).then(|| r.json())
}

fn wait_done(c: &Cluster, job: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(90), || {
        if let Some(s) = status(c, job) {
            last = s;
        }
        matches!(
            last["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
    });
    assert!(ok, "job did not finish: {last}\n{}", c.coordinator.log());
    last
}

#[test]
fn a_worker_killed_mid_task_loses_only_that_attempt() {
    let mut c = Cluster::start(&["--ack-wait", "2s"]);
    c.add_worker("doomed", &["--concurrency", "1"]);
    let spec = write(
        c.work.path(),
        "kill.toml",
        "[[tasks]]\nname = \"slow\"\ncommand = \"echo start >> ledger; sleep 1; echo end >> ledger\"\n\
         [[tasks]]\nname = \"after\"\ncommand = \"echo after >> ledger\"\ndepends_on = [\"slow\"]\n",
    );
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let job = r.stdout.trim().to_string();
    assert!(wait_until(Duration::from_secs(30), || lines(
        &c.work.path().join("ledger")
    )
    .len()
        == 1));
    c.workers[0].stop(libc::SIGKILL);
    c.add_worker("survivor", &[]);
    let s = wait_done(&c, &job);
    assert_eq!(s["state"], "succeeded", "{s}");
    let ledger = lines(&c.work.path().join("ledger"));
    // The attempt in flight ran again elsewhere; everything after it ran once.
    assert_eq!(
        ledger.iter().filter(|l| *l == "start").count(),
        2,
        "{ledger:?}"
    );
    assert_eq!(
        ledger.iter().filter(|l| *l == "after").count(),
        1,
        "{ledger:?}"
    );
    let slow = &s["tasks"][0];
    assert_eq!(slow["worker"], "survivor", "{s}");
}

#[test]
fn forged_and_undecodable_messages_change_nothing() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &[]);
    let spec = write(
        c.work.path(),
        "gate.toml",
        "[[tasks]]\nname = \"gate\"\ncommand = \"while [ ! -f go ]; do sleep 0.05; done; echo ran >> ledger\"\n",
    );
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let job = r.stdout.trim().to_string();
    assert!(wait_until(Duration::from_secs(30), || {
        status(&c, &job).is_some_and(|s| s["tasks"][0]["state"] == "running")
    }));

    // Garbage on the event and task subjects, through JetStream like the real thing, and a
    // well-formed result for an attempt that was never dispatched.
    let url = c.nats.url();
    let job_id = job.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for subject in [
            format!("ordo.event.{job_id}"),
            "ordo.task.default".to_string(),
        ] {
            js.publish(subject, b"\x00\xffnot msgpack".as_ref().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    // The forged messages are dropped with one log line each, not redelivered in a loop.
    assert!(
        wait_until(Duration::from_secs(10), || {
            c.coordinator.log().contains("undecodable event")
                && c.workers[0].log().contains("undecodable task")
        }),
        "coordinator:\n{}\nworker:\n{}",
        c.coordinator.log(),
        c.workers[0].log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.coordinator.log().matches("undecodable event").count(), 1);
    assert_eq!(c.workers[0].log().matches("undecodable task").count(), 1);

    let s = status(&c, &job).unwrap();
    assert_eq!(
        s["tasks"][0]["state"], "running",
        "the record did not change: {s}"
    );
    std::fs::write(c.work.path().join("go"), "").unwrap();
    let s = wait_done(&c, &job);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(lines(&c.work.path().join("ledger")), ["ran"]);
}

const HOSTILE: [&str; 7] = [
    "$(touch canary)",
    ";id",
    "../x",
    "a.b",
    "*",
    ">",
    "`touch canary`",
];

fn hostile_spec(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for (i, name) in HOSTILE.iter().enumerate() {
        let dep = if i > 0 {
            format!("depends_on = [{:?}]\n", HOSTILE[i - 1])
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[tasks]]\nname = {name:?}\ncommand = \"printf '%s\\\\n' \\\"$ORDO_TASK\\\" >> names\"\n{dep}\n"
        ));
    }
    write(dir, "hostile.toml", &text)
}

#[test]
fn hostile_task_names_never_reach_a_shell_a_path_or_a_subject() {
    // Locally...
    let dir = tempfile::tempdir().unwrap();
    let spec = hostile_spec(dir.path());
    let r = ordo_in(
        dir.path(),
        &["run", &spec, "--state", "state", "--quiet"],
        &[],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    assert!(!dir.path().join("canary").exists());
    assert_eq!(lines(&dir.path().join("names")), HOSTILE);
    let report = ordo_in(
        dir.path(),
        &["report", "--state", "state", "--format", "json"],
        &[],
    );
    assert_eq!(report.code(), 0, "{}", report.stderr);

    // ...and through the cluster, where subjects carry task indexes, never names.
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &[]);
    let spec = hostile_spec(c.work.path());
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    assert!(!c.work.path().join("canary").exists());
    assert_eq!(lines(&c.work.path().join("names")), HOSTILE);
    let job = r.stdout.trim();
    let logs = c.ordo(&["logs", job, "a.b"]);
    assert_eq!(logs.code(), 0, "{}", logs.stderr);
    ordo_tests::ledger::record(
        "6",
        ordo_tests::ledger::Row {
            fault: "6. task names `$(touch canary)`, `;id`, `../x`, `a.b`, `*`, `>`, backticks, locally and on a cluster: run as data, no canary (hostile files: `cli::hostile_specs_fail_cleanly_naming_file_and_line` and the parser properties)".into(),
            seeds: 1,
            tally: ordo_tests::ledger::Tally {
                tasks: HOSTILE.len(),
                executions: lines(&c.work.path().join("names")).len(),
                ..Default::default()
            },
            recovery: None,
        },
    );
}

#[test]
fn a_task_delivered_max_deliver_times_without_a_result_fails_with_the_reason() {
    // Two deliveries, each to a worker that is then frozen (SIGSTOP): no result, no lease.
    let mut c = Cluster::start(&["--ack-wait", "1s", "--max-deliver", "2"]);
    let spec = write(
        c.work.path(),
        "stuck.toml",
        "[[tasks]]\nname = \"stuck\"\ncommand = \"echo $ORDO_ATTEMPT >> ledger; sleep 30\"\n",
    );
    c.add_worker("first", &["--concurrency", "1"]);
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let job = r.stdout.trim().to_string();
    assert!(wait_until(Duration::from_secs(30), || lines(
        &c.work.path().join("ledger")
    )
    .len()
        == 1));
    ordo_tests::signal(c.workers[0].pid(), libc::SIGSTOP);
    c.add_worker("second", &["--concurrency", "1"]);
    assert!(wait_until(Duration::from_secs(30), || lines(
        &c.work.path().join("ledger")
    )
    .len()
        == 2));
    ordo_tests::signal(c.workers[1].pid(), libc::SIGSTOP);
    // JetStream notices the exhausted message when a live consumer asks for more.
    c.add_worker("third", &["--concurrency", "1"]);

    let s = wait_done(&c, &job);
    assert_eq!(s["state"], "failed", "{s}");
    let reason = s["tasks"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("delivered 2 times"), "{s}");
    // The exhausted message was removed: the live worker never ran it.
    assert_eq!(lines(&c.work.path().join("ledger")).len(), 2);
    for w in &c.workers {
        ordo_tests::signal(w.pid(), libc::SIGCONT);
    }
}

/// Runs `f` on a one-thread runtime of its own, with a plain client of the test's server.
fn with_client<T>(url: String, f: impl AsyncFnOnce(async_nats::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move { f(async_nats::connect(url).await.unwrap()).await })
}

#[test]
fn a_forged_heartbeat_with_absurd_capacity_stalls_no_queue() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &["--concurrency", "2"]);
    // A phantom worker claims almost 2^31 slots, every 100 ms, while the job is submitted and
    // runs: summed with the real worker's slots in u32 it wrapped the queue's capacity.
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let (url, stop) = (c.nats.url(), stop.clone());
        std::thread::spawn(move || {
            with_client(url, async move |client| {
                let hb = ordo_proto::Heartbeat {
                    worker: ordo_proto::WorkerId::new("phantom"),
                    host: "nowhere".into(),
                    queues: vec!["default".into()],
                    slots: 2_147_483_646,
                    busy: 0,
                    cpus: 8.0,
                    memory_mb: 1024,
                    draining: false,
                    at_ms: ordo_proto::now_ms(),
                    note: None,
                };
                let subject = ordo_proto::names::heartbeat_subject(&hb.worker);
                while !stop.load(Ordering::SeqCst) {
                    let body = ordo_proto::wire::encode(&hb);
                    client.publish(subject.clone(), body.into()).await.unwrap();
                    client.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
    };
    let spec = write(
        c.work.path(),
        "three.toml",
        "[[tasks]]\nname = \"a\"\ncommand = \"echo a >> ledger\"\n\
         [[tasks]]\nname = \"b\"\ncommand = \"echo b >> ledger\"\ndepends_on = [\"a\"]\n\
         [[tasks]]\nname = \"c\"\ncommand = \"echo c >> ledger\"\n",
    );
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let job = r.stdout.trim().to_string();
    let s = wait_done(&c, &job);
    stop.store(true, Ordering::SeqCst);
    forger.join().unwrap();
    assert_eq!(s["state"], "succeeded", "{s}");
    let mut ledger = lines(&c.work.path().join("ledger"));
    ledger.sort();
    assert_eq!(ledger, ["a", "b", "c"]);
    assert!(
        c.coordinator
            .log()
            .contains("worker phantom claims 2147483646 slots"),
        "{}",
        c.coordinator.log()
    );
    let workers = c.ordo(&["workers", "--output", "json"]);
    assert_eq!(workers.code(), 0, "{}", workers.stderr);
    assert!(!workers.stdout.contains("phantom"), "{}", workers.stdout);
    // The open test server is what a phantom needs: the worker says so when it starts.
    assert!(
        c.workers[0].log().contains("OPEN SERVER")
            && c.workers[0].log().contains("scripts/local-nats"),
        "{}",
        c.workers[0].log()
    );
}

#[test]
fn a_huge_body_object_header_is_refused_without_costing_the_coordinator_its_connection() {
    let c = Cluster::start(&[]);
    let name = "x".repeat(5000);
    let reply = with_client(c.nats.url(), async move |client| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(ordo_proto::names::HEADER_BODY_OBJECT, name.as_str());
        let request = async_nats::Request::new()
            .headers(headers)
            .timeout(Some(Duration::from_secs(10)));
        let subject = ordo_proto::names::api_subject(ordo_proto::api::JOBS);
        let msg = client.send_request(subject, request).await.unwrap();
        String::from_utf8_lossy(&msg.payload).into_owned()
    });
    assert!(
        reply.contains("must name an object by its UUID") && reply.contains("5000 bytes"),
        "{reply}"
    );
    // The coordinator still answers, and the server never had to cut it off.
    let r = c.ordo(&["jobs"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let log = c.nats.log();
    assert!(!log.contains("maximum control line"), "{log}");
    assert!(
        !c.coordinator.log().to_lowercase().contains("disconnect"),
        "{}",
        c.coordinator.log()
    );
}

/// The inbox a daemon pulls through, seen by watching its pull requests (`pulls` is a JetStream
/// API subject; on the open test server anyone may watch it, on the deployed one nobody can).
async fn pull_inbox(client: &async_nats::Client, pulls: &str) -> String {
    use futures::StreamExt;
    let mut sub = client.subscribe(pulls.to_string()).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(60), sub.next())
        .await
        .expect("no pull request within 60 s")
        .unwrap();
    msg.reply
        .expect("a pull request has a reply subject")
        .to_string()
}

/// Stores `payload` in ORDO_LOGS (task output, which whoever submits a job controls) and makes
/// a push consumer of that stream deliver it to `inbox`, as a client allowed to create log
/// consumers could.
async fn deliver_from_logs(
    client: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
    inbox: String,
) {
    use async_nats::jetstream::{self, consumer::push};
    let js = jetstream::new(client.clone());
    js.publish(subject.clone(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let logs = js.get_stream(ordo_proto::names::LOG_STREAM).await.unwrap();
    logs.create_consumer(push::Config {
        deliver_subject: inbox,
        filter_subject: subject,
        ..Default::default()
    })
    .await
    .unwrap();
}

#[test]
fn only_what_jetstream_delivered_from_the_right_stream_is_run_or_applied() {
    use ordo_proto::{Attempt, Dispatch, JobId, Program, TaskIndex, TaskName, TaskResult};
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &[]);
    let spec = write(
        c.work.path(),
        "gate.toml",
        "[[tasks]]\nname = \"gate\"\ncommand = \"while [ ! -f go ]; do sleep 0.05; done; echo ran >> ledger\"\n",
    );
    let r = c.ordo(&["submit", &spec]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let job = r.stdout.trim().to_string();
    assert!(wait_until(Duration::from_secs(30), || {
        status(&c, &job).is_some_and(|s| s["tasks"][0]["state"] == "running")
    }));

    let marker = c.work.path().join("forged-ran");
    let job_id: JobId = job.parse().unwrap();
    let forged = Dispatch::new(
        JobId::new(),
        TaskName::new("forged").unwrap(),
        TaskIndex(0),
        Attempt(1),
        Program::Shell(format!("touch {}", marker.display())),
    );
    // A result claiming the gate succeeded, which it has not.
    let gate = Dispatch::new(
        job_id,
        TaskName::new("gate").unwrap(),
        TaskIndex(0),
        Attempt(1),
        Program::Shell(String::new()),
    );
    let result = ordo_proto::WorkerEvent::Finished(TaskResult::new(
        &gate,
        ordo_proto::WorkerId::new("w1"),
        ordo_proto::Outcome::Succeeded,
        ordo_proto::now_ms(),
        "forged",
    ));
    with_client(c.nats.url(), async move |client| {
        // The coordinator asks again only when its last pull (30 s) runs out: watch both at once.
        let (worker_inbox, coordinator_inbox) = tokio::join!(
            pull_inbox(&client, "$JS.API.CONSUMER.MSG.NEXT.ORDO_TASKS.>"),
            pull_inbox(&client, "$JS.API.CONSUMER.MSG.NEXT.ORDO_EVENTS.>"),
        );
        let other = JobId::new();
        deliver_from_logs(
            &client,
            ordo_proto::names::log_subject(&other, TaskIndex(0)),
            ordo_proto::wire::encode(&forged),
            worker_inbox,
        )
        .await;
        deliver_from_logs(
            &client,
            ordo_proto::names::log_subject(&other, TaskIndex(1)),
            ordo_proto::wire::encode(&result),
            coordinator_inbox,
        )
        .await;
    });
    assert!(
        wait_until(Duration::from_secs(20), || {
            c.workers[0]
                .log()
                .contains("ignoring a message on the task inbox")
                && c.coordinator
                    .log()
                    .contains("ignoring a message on the event inbox")
        }),
        "worker:\n{}\ncoordinator:\n{}",
        c.workers[0].log(),
        c.coordinator.log()
    );
    let s = status(&c, &job).unwrap();
    assert_eq!(
        s["tasks"][0]["state"], "running",
        "a forged result was applied: {s}"
    );
    std::fs::write(c.work.path().join("go"), "").unwrap();
    let s = wait_done(&c, &job);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(lines(&c.work.path().join("ledger")), ["ran"]);
    assert!(!marker.exists(), "a task message no job holds was run");
}
