//! Distributed operation against real processes: a nats-server per test, the real
//! `ordo-coordinator` and `ordo-worker` binaries, and the `ordo` CLI talking to them through
//! NATS only. Faults are real: SIGTERM, SIGKILL, server restarts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ordo_tests::{Cluster, bin, lines, pids_with_env, wait_until, write};
use serde_json::Value;

fn submit(c: &Cluster, spec: &str) -> String {
    let r = c.ordo(&["submit", spec]);
    assert_eq!(r.code(), 0, "submit failed: {}{}", r.stdout, r.stderr);
    let id = r.stdout.trim().to_string();
    assert_eq!(
        id.len(),
        36,
        "submit should print the job id alone: {:?}",
        r.stdout
    );
    id
}

fn status(c: &Cluster, job: &str) -> Value {
    let r = c.ordo(&["status", job, "--output", "json"]);
    assert_eq!(r.code(), 0, "status failed: {}", r.stderr);
    r.json()
}

/// Polls `status` until the job ends; tolerates a coordinator that is restarting.
fn wait_state(c: &Cluster, job: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    let done = wait_until(limit, || {
        let r = c.ordo(&["status", job, "--output", "json"]);
        if r.code() != 0 {
            return false;
        }
        last = r.json();
        matches!(
            last["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
    });
    assert!(done, "job did not finish: {last}\n{}", c.logs());
    last
}

fn task<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}: {s}"))
}

fn all_succeeded(s: &Value) -> bool {
    s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["state"] == "succeeded")
}

#[test]
fn a_job_splits_across_workers_by_queue_and_wait_exits_by_outcome() {
    let mut c = Cluster::start(&[]);
    c.add_worker("alpha-worker", &["--queue", "alpha", "--concurrency", "2"]);
    c.add_worker("beta-worker", &["--queue", "beta", "--concurrency", "2"]);
    let spec = write(
        c.work.path(),
        "split.toml",
        r#"name = "split"
[[tasks]]
name = "on-alpha"
command = "echo alpha"
queue = "alpha"
[[tasks]]
name = "on-beta"
command = "echo beta"
queue = "beta"
depends_on = ["on-alpha"]
"#,
    );
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let job = r.stdout.trim().to_string();
    let s = status(&c, &job);
    assert_eq!(s["state"], "succeeded");
    assert_eq!(task(&s, "on-alpha")["worker"], "alpha-worker");
    assert_eq!(task(&s, "on-beta")["worker"], "beta-worker");
    assert_eq!(task(&s, "on-beta")["output_tail"], "beta\n");

    let failing = write(
        c.work.path(),
        "fail.toml",
        "name = \"failing\"\n[[tasks]]\nname = \"boom\"\ncommand = \"exit 7\"\nqueue = \"alpha\"\n",
    );
    let r = c.ordo(&["submit", &failing, "--wait"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout, r.stderr);

    // status and jobs: filters by state and text.
    let jobs = c.ordo(&["jobs", "--output", "json"]).json();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    let failed = c
        .ordo(&["jobs", "--state", "failed", "--output", "json"])
        .json();
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["name"], "failing");
    let found = c
        .ordo(&["jobs", "--search", "on-bet", "--output", "json"])
        .json();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["name"], "split");
    let text = c.ordo(&["status", &job]);
    assert!(
        text.stdout.contains("on-alpha") && text.stdout.contains("succeeded"),
        "{}",
        text.stdout
    );

    let workers = c.ordo(&["workers", "--output", "json"]).json();
    assert_eq!(workers.as_array().unwrap().len(), 2, "{workers}");
}

/// One worker pulling from three queues, one of them always empty: asks rotate over the queues,
/// so the empty one never keeps the free slots from the others.
#[test]
fn one_worker_serves_several_queues_and_an_empty_one_holds_nothing_back() {
    let mut c = Cluster::start(&[]);
    c.add_worker(
        "multi",
        &[
            "--queue",
            "alpha",
            "--queue",
            "empty",
            "--queue",
            "beta",
            "--concurrency",
            "2",
        ],
    );
    let mut spec = String::from("name = \"queues\"\n");
    for i in 0..6 {
        let queue = if i % 2 == 0 { "alpha" } else { "beta" };
        spec.push_str(&format!(
            "[[tasks]]\nname = \"t{i}\"\ncommand = \"echo {queue}\"\nqueue = \"{queue}\"\n"
        ));
        if i > 0 {
            spec.push_str(&format!("depends_on = [\"t{}\"]\n", i - 1));
        }
    }
    spec.push_str("[[tasks]]\nname = \"fan-a\"\ncommand = \"true\"\nqueue = \"alpha\"\n");
    spec.push_str("[[tasks]]\nname = \"fan-b\"\ncommand = \"true\"\nqueue = \"beta\"\n");
    let spec = write(c.work.path(), "queues.toml", &spec);
    let job = submit(&c, &spec);
    let s = wait_state(&c, &job, Duration::from_secs(60));
    assert_eq!(s["state"], "succeeded", "{s}");
    for t in s["tasks"].as_array().unwrap() {
        assert_eq!(t["worker"], "multi", "{t}");
    }
    assert_eq!(task(&s, "t5")["output_tail"], "beta\n");
}

/// A worker whose runs are quick holds tasks beyond its free slots, but never behind a run that
/// turned long: the held tasks go back, and a worker with a free slot runs them meanwhile.
#[test]
fn tasks_held_beside_runs_that_turn_long_go_back_to_an_idle_worker() {
    // A long ack wait: a task held until its slot frees, or until a bound tied to the ack
    // wait, would not reach the idle worker within the wait below.
    let mut c = Cluster::start(&["--ack-wait", "90s"]);
    c.add_worker("busy", &["--concurrency", "2"]);
    // Quick runs first, so the worker's pace holds tasks beside its next runs.
    let mut warm = String::from("name = \"warm\"\n[settings]\nexecution_mode = \"parallel\"\n");
    for i in 0..20 {
        warm.push_str(&format!("[[tasks]]\nname = \"w{i}\"\ncommand = \"true\"\n"));
    }
    let warm = write(c.work.path(), "warm.toml", &warm);
    let job = submit(&c, &warm);
    assert_eq!(
        wait_state(&c, &job, Duration::from_secs(60))["state"],
        "succeeded"
    );

    // The long tasks are dispatched first (their priority); the short ones wait in the stream
    // behind them, and the busy worker, whose runs are young, asks for one of them to hold.
    let mut spec = String::from("name = \"mixed\"\n[settings]\nexecution_mode = \"parallel\"\n");
    for i in 0..2 {
        spec.push_str(&format!(
            "[[tasks]]\nname = \"long{i}\"\npriority = 10\ncommand = \"touch long{i}-started; sleep 60\"\n"
        ));
    }
    for i in 0..3 {
        spec.push_str(&format!(
            "[[tasks]]\nname = \"short{i}\"\ncommand = \"true\"\n"
        ));
    }
    let spec = write(c.work.path(), "mixed.toml", &spec);
    let job = submit(&c, &spec);
    let work = c.work.path().to_path_buf();
    assert!(wait_until(Duration::from_secs(30), || (0..2)
        .all(|i| work.join(format!("long{i}-started")).exists())));
    c.add_worker("idle", &["--concurrency", "1"]);
    let mut s = Value::Null;
    let ran = wait_until(Duration::from_secs(20), || {
        s = status(&c, &job);
        // `running` shows once the worker's started notice came.
        (0..3).all(|i| task(&s, &format!("short{i}"))["state"] == "succeeded")
            && (0..2).all(|i| task(&s, &format!("long{i}"))["state"] == "running")
    });
    assert!(
        ran,
        "short tasks waited behind long ones (held by the busy worker?): {s}\n{}",
        c.logs()
    );
    for i in 0..2 {
        assert_eq!(task(&s, &format!("long{i}"))["worker"], "busy", "{s}");
    }
    for i in 0..3 {
        assert_eq!(task(&s, &format!("short{i}"))["worker"], "idle", "{s}");
    }
}

#[test]
fn logs_follow_sees_output_while_the_task_runs() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &[]);
    let spec = write(
        c.work.path(),
        "log.toml",
        "[[tasks]]\nname = \"talker\"\ncommand = \"echo first-line; while [ ! -f go ]; do sleep 0.05; done; echo second-line\"\n",
    );
    let job = submit(&c, &spec);
    let mut follow = Command::new(bin("ordo"))
        .args(["logs", &job, "talker", "--follow", "--nats", &c.nats.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "first-line\n");
    // The task has not finished: it waits for the file we have not created yet.
    let state = task(&status(&c, &job), "talker")["state"].clone();
    assert!(state == "running" || state == "dispatched", "{state}");
    std::fs::write(c.work.path().join("go"), "").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "second-line\n");
    let status_code = ordo_tests::wait_child(&mut follow, Duration::from_secs(30));
    assert!(status_code.success());
    // Without --follow, the stored output.
    let r = c.ordo(&["logs", &job]);
    assert!(
        r.stdout.contains("first-line\nsecond-line\n"),
        "{}",
        r.stdout
    );
}

/// `ordo logs JOB` puts a header (the task's name and title, the attempt) before each task's
/// attempt, and shows an agent's result text rather than its JSON (`--raw` shows the JSON):
/// on a cluster from the stream, and the same text from a local state directory.
#[test]
fn logs_have_a_header_per_task_and_attempt_and_agent_results() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &[]);
    let dir = c.work.path();
    let spec = write(
        dir,
        "logs.toml",
        &format!(
            r#"
name = "logs"
[settings]
agent = "claude"
agent_command = ["{}"]
env = {{ STUB_STATE = "{}" }}
[[tasks]]
name = "flaky"
command = "echo try-$ORDO_ATTEMPT; test $ORDO_ATTEMPT -ge 2"
retries = 1
retry_backoff = "0s"
labels = {{ title = "Flaky step" }}
[[tasks]]
name = "agent"
prompt = "write {}: hi"
depends_on = ["flaky"]
"#,
            ordo_tests::stub_agent("claude"),
            dir.display(),
            dir.join("a.txt").display()
        ),
    );
    let result = format!("stub claude: write {};\n", dir.join("a.txt").display());
    let expected = format!(
        "==> flaky (Flaky step) · attempt 1 <==\ntry-1\n\
         ==> flaky (Flaky step) · attempt 2 <==\ntry-2\n\
         ==> agent · attempt 1 <==\n{result}"
    );
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let job = r.stdout.lines().next().unwrap().trim().to_string();
    let logs = c.ordo(&["logs", &job]);
    assert_eq!(logs.code(), 0, "{}", logs.stderr);
    assert_eq!(logs.stdout, expected);
    // One task: its first attempt needs no header.
    assert_eq!(c.ordo(&["logs", &job, "agent"]).stdout, result);
    let raw = c.ordo(&["logs", &job, "agent", "--raw"]).stdout;
    assert!(
        raw.starts_with("{\"type\":\"result\"") && raw.contains("\"session_id\""),
        "{raw}"
    );

    // A local state directory shows the same.
    let r = ordo_tests::ordo_in(dir, &["run", &spec, "--state", "st", "-q"], &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let id = ordo_tests::ordo_in(dir, &["status", "--state", "st", "--output", "json"], &[]).json()
        [0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let local = ordo_tests::ordo_in(dir, &["logs", &id, "--state", "st"], &[]);
    assert_eq!(local.code(), 0, "{}", local.stderr);
    assert_eq!(local.stdout, expected);
}

#[test]
fn cancel_kills_running_tasks_and_nothing_starts_afterwards() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &["--concurrency", "1"]);
    let spec = write(
        c.work.path(),
        "long.toml",
        r#"[[tasks]]
name = "long"
command = "echo $ORDO_TASK >> started; sleep 120"
env = { ORDO_TEST_MARK = "cancel-test" }
[[tasks]]
name = "queued"
command = "echo $ORDO_TASK >> started"
[[tasks]]
name = "after"
command = "echo $ORDO_TASK >> started"
depends_on = ["long"]
"#,
    );
    let job = submit(&c, &spec);
    assert!(wait_until(Duration::from_secs(30), || {
        !pids_with_env("ORDO_TEST_MARK", "cancel-test").is_empty()
    }));
    let r = c.ordo(&["cancel", &job]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    // Killed within a second or two, not at the end of `sleep 120`.
    assert!(
        wait_until(Duration::from_secs(5), || pids_with_env(
            "ORDO_TEST_MARK",
            "cancel-test"
        )
        .is_empty()),
        "the cancelled task is still running"
    );
    let s = wait_state(&c, &job, Duration::from_secs(30));
    assert_eq!(s["state"], "cancelled");
    std::thread::sleep(Duration::from_millis(500));
    let started = lines(&c.work.path().join("started"));
    assert!(!started.contains(&"after".to_string()), "{started:?}");
    assert_eq!(task(&s, "after")["state"], "cancelled");
}

#[test]
fn retry_failed_only_reruns_just_the_failures() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &[]);
    let spec = write(
        c.work.path(),
        "retry.toml",
        r#"[[tasks]]
name = "good"
command = "echo good >> ledger"
[[tasks]]
name = "flaky"
command = "echo flaky >> ledger; test -f fixed"
[[tasks]]
name = "after"
command = "echo after >> ledger"
depends_on = ["flaky"]
"#,
    );
    let job = submit(&c, &spec);
    let s = wait_state(&c, &job, Duration::from_secs(60));
    assert_eq!(s["state"], "failed");
    assert_eq!(task(&s, "after")["state"], "skipped");
    std::fs::write(c.work.path().join("fixed"), "").unwrap();
    let r = c.ordo(&["retry", &job, "--failed-only"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let s = wait_state(&c, &job, Duration::from_secs(60));
    assert_eq!(s["state"], "succeeded", "{s}");
    let ledger = lines(&c.work.path().join("ledger"));
    assert_eq!(
        ledger.iter().filter(|l| *l == "good").count(),
        1,
        "{ledger:?}"
    );
    assert_eq!(
        ledger.iter().filter(|l| *l == "flaky").count(),
        2,
        "{ledger:?}"
    );
    assert_eq!(
        ledger.iter().filter(|l| *l == "after").count(),
        1,
        "{ledger:?}"
    );
    assert_eq!(task(&s, "flaky")["attempts"], 2);
    // Its time is the second run's: from the retry, which came after the first run ended.
    let first_end = first_run_end(&c, &job);
    assert_eq!(s["retries"], 1, "{s}");
    assert!(s["run_started_ms"].as_u64().unwrap() >= first_end, "{s}");
}

/// When job `job`'s first run ended, from its report.
fn first_run_end(c: &Cluster, job: &str) -> u64 {
    let r = c.ordo(&["report", job, "--format", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let report = r.json();
    let runs = report["summary"]["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{report:#}");
    runs[0]["ended_ms"].as_u64().unwrap()
}

#[test]
fn a_worker_drained_with_sigterm_finishes_its_task_and_hands_back_the_rest() {
    let mut c = Cluster::start(&["--ack-wait", "2s"]);
    c.add_worker("drainer", &["--concurrency", "2", "--drain-grace", "1s"]);
    let spec = write(
        c.work.path(),
        "drain.toml",
        r#"[[tasks]]
name = "short"
command = "echo short-$ORDO_ATTEMPT >> ledger; sleep 0.5"
[[tasks]]
name = "long"
command = "echo long-start >> ledger; sleep 4; echo long-end >> ledger"
"#,
    );
    let job = submit(&c, &spec);
    assert!(wait_until(Duration::from_secs(30), || {
        let l = lines(&c.work.path().join("ledger"));
        l.contains(&"long-start".to_string()) && l.iter().any(|x| x.starts_with("short"))
    }));
    let status_code = c.workers[0].stop(libc::SIGTERM);
    assert!(
        status_code.success(),
        "worker exit: {status_code:?}\n{}",
        c.workers[0].log()
    );
    // `short` finished within the grace; `long` was handed back and runs on another worker.
    c.add_worker("taker", &[]);
    let s = wait_state(&c, &job, Duration::from_secs(60));
    assert!(all_succeeded(&s), "{s}");
    assert_eq!(task(&s, "short")["worker"], "drainer");
    assert_eq!(task(&s, "long")["worker"], "taker");
}

#[test]
fn the_coordinator_survives_sigkill_mid_job() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &["--concurrency", "4"]);
    let mut text = String::new();
    for i in 0..30 {
        let dep = if i >= 4 {
            format!("depends_on = [\"t{}\"]\n", i - 4)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[tasks]]\nname = \"t{i}\"\ncommand = \"echo $ORDO_TASK >> ledger; sleep 0.1\"\n{dep}\n"
        ));
    }
    let spec = write(c.work.path(), "chain.toml", &text);
    let job = submit(&c, &spec);
    assert!(wait_until(Duration::from_secs(30), || lines(
        &c.work.path().join("ledger")
    )
    .len()
        >= 8));
    c.coordinator.stop(libc::SIGKILL);
    c.coordinator.start();
    let s = wait_state(&c, &job, Duration::from_secs(90));
    assert!(all_succeeded(&s), "{s}");
    // Every task reached one terminal record; re-executions are possible but bounded.
    let ledger = lines(&c.work.path().join("ledger"));
    for i in 0..30 {
        let n = ledger.iter().filter(|l| **l == format!("t{i}")).count();
        assert!((1..=2).contains(&n), "t{i} ran {n} times: {ledger:?}");
    }
}

#[test]
fn a_nats_server_restart_mid_job_loses_nothing() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w1", &["--concurrency", "2"]);
    let mut text = String::new();
    for i in 0..12 {
        let dep = if i >= 2 {
            format!("depends_on = [\"t{}\"]\n", i - 2)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[tasks]]\nname = \"t{i}\"\ncommand = \"echo $ORDO_TASK >> ledger; sleep 0.2\"\n{dep}\n"
        ));
    }
    let spec = write(c.work.path(), "chain.toml", &text);
    let job = submit(&c, &spec);
    assert!(wait_until(Duration::from_secs(30), || lines(
        &c.work.path().join("ledger")
    )
    .len()
        >= 3));
    c.nats.restart(libc::SIGTERM);
    let s = wait_state(&c, &job, Duration::from_secs(120));
    assert!(all_succeeded(&s), "{s}");
}

#[test]
fn the_cli_exits_3_when_the_coordinator_or_nats_is_unreachable() {
    let mut c = Cluster::start(&[]);
    c.coordinator.stop(libc::SIGTERM);
    let r = c.ordo(&["jobs"]);
    assert_eq!(r.code(), 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("coordinator"), "{}", r.stderr);
    c.nats.stop(libc::SIGTERM);
    let r = c.ordo(&["status", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(r.code(), 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("NATS") || r.stderr.contains("nats"),
        "{}",
        r.stderr
    );
}
