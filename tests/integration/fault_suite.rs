//! The fault suite of issue 5: docs/design.md, "Fencing and delivery"'s delivery guarantees checked
//! by killing real processes. Each test runs the three job shapes (50-task chain, 200-task fan-out,
//! 20×20 lattice) at once on a real nats-server, coordinator and workers, injects its fault, lets
//! the system go quiet, and checks the ledger against the coordinator's record
//! (`ordo_tests::ledger`). Each writes its row of docs/reliability.md. Row 10 is a worktree job on
//! a shared repository, whose ledger is the integration branch itself; row 12 kills a worker
//! holding a batch of results (`ordo_worker::report`), row 14 one holding a task beyond its
//! slots (`ordo_worker::daemon`'s pace).
//!
//! Two seeds per fault by default (the whole suite stays within about five minutes on 2
//! cores); `ORDO_SOAK=1` runs five seeds and a longer coordinator-kill loop.

use std::time::{Duration, Instant};

use ordo_plumbing::failpoint;
use ordo_tests::ledger::{self, Ledger, Row, SHAPES, Shape, Tally};
use ordo_tests::{Cluster, NatsServer, pids_with_env, signal, wait_until, write};
use serde_json::Value;

fn soak() -> bool {
    std::env::var_os("ORDO_SOAK").is_some_and(|v| v != "0")
}

fn seeds() -> Vec<u64> {
    if soak() {
        (1..=5).collect()
    } else {
        vec![1, 2]
    }
}

/// A small deterministic generator: the seed decides when faults strike.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A cluster running the three shapes, with its ledger.
struct Suite {
    c: Cluster,
    ledger: Ledger,
    jobs: Vec<(Shape, String)>,
    /// Results were forged on purpose: some name attempts never dispatched.
    forged: bool,
}

impl Suite {
    fn on(c: Cluster) -> Suite {
        let ledger = Ledger::new(c.work.path());
        Suite {
            c,
            ledger,
            jobs: Vec::new(),
            forged: false,
        }
    }

    /// Submits every shape, each task running `work`.
    fn submit(&mut self, work: &str) {
        self.submit_shapes(&SHAPES, work);
    }

    fn submit_shapes(&mut self, shapes: &[Shape], work: &str) {
        for &shape in shapes {
            let path = write(
                self.c.work.path(),
                &format!("{}.toml", shape.name()),
                &self.ledger.spec(shape, work),
            );
            let r = self.c.ordo(&["submit", &path]);
            assert_eq!(r.code(), 0, "{}", r.stderr);
            self.jobs.push((shape, r.stdout.trim().to_string()));
        }
    }

    fn wait_starts(&self, n: usize) {
        assert!(
            wait_until(Duration::from_secs(120), || self.ledger.starts() >= n),
            "only {} executions started",
            self.ledger.starts()
        );
    }

    /// Tasks the coordinator has recorded as succeeded, over every job (`None` while it does
    /// not answer).
    fn recorded(&self) -> Option<usize> {
        let mut n = 0;
        for (_, job) in &self.jobs {
            n += ledger::succeeded(&self.status(job)?)?;
        }
        Some(n)
    }

    /// Time from `fault` until the coordinator's record moved past `before` (or, if that is
    /// unknown, past what it shows when it first answers again).
    fn until_record_advances(
        &self,
        fault: Instant,
        mut before: Option<usize>,
        limit: Duration,
    ) -> Duration {
        assert!(
            wait_until(limit, || match (self.recorded(), before) {
                (Some(n), Some(b)) => n > b,
                (Some(n), None) => {
                    before = Some(n);
                    false
                }
                (None, _) => false,
            }),
            "the record did not advance within {limit:?} of the fault\ncoordinator:\n{}",
            tail(&self.c.coordinator.log())
        );
        fault.elapsed()
    }

    /// Tasks with an execution open (started, not ended) on `worker`.
    fn open_on(&self, worker: &str) -> Vec<(String, String)> {
        self.ledger
            .executions()
            .into_iter()
            .filter(|e| e.worker == worker && e.end.is_none())
            .map(|e| (e.job, e.task))
            .collect()
    }

    /// Time until each of `tasks` has an execution started by another worker than `gone`.
    fn until_rerun(&self, tasks: &[(String, String)], gone: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        let ok = wait_until(limit, || {
            let execs = self.ledger.executions();
            tasks.iter().all(|(job, task)| {
                execs
                    .iter()
                    .any(|e| &e.job == job && &e.task == task && e.worker != gone)
            })
        });
        assert!(ok, "{tasks:?} did not run again within {limit:?}");
        t0.elapsed()
    }

    fn status(&self, job: &str) -> Option<Value> {
        let r = self.c.ordo(&["status", job, "--output", "json"]);
        (r.code() == 0).then(|| r.json())
    }

    fn report(&self, job: &str) -> Value {
        let r = self.c.ordo(&["report", job, "--format", "json"]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        r.json()
    }

    /// Waits for every job to end, then checks each against the ledger. Executions on
    /// `lossy` workers (killed) may lack a published result; everyone else's must be
    /// recorded, so the check waits (bounded) for late results to arrive.
    fn finish(&self, lossy: &[String]) -> Tally {
        for (shape, job) in &self.jobs {
            let mut last = Value::Null;
            let done = wait_until(Duration::from_secs(240), || {
                if let Some(s) = self.status(job) {
                    last = s;
                }
                matches!(
                    last["state"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
            });
            assert!(
                done,
                "{} did not finish: {last}\ncoordinator:\n{}",
                shape.name(),
                tail(&self.c.coordinator.log())
            );
        }
        let mut tally = Tally::default();
        for (shape, job) in &self.jobs {
            let mut report = self.report(job);
            // Results of live workers still on their way are waited for, not excused.
            wait_until(Duration::from_secs(20), || {
                report = self.report(job);
                self.ledger.unreflected(job, &report, lossy).is_empty()
            });
            tally += self.ledger.check(job, *shape, &report, lossy);
        }
        self.ledger.assert_no_leftovers();
        if !self.forged {
            assert_eq!(
                tally.unknown, 0,
                "results of attempts never dispatched: {tally:?}"
            );
        }
        tally
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn workers(c: &mut Cluster, ids: &[&str]) {
    for id in ids {
        c.add_worker(id, &["--concurrency", "4"]);
    }
}

/// The task processes of `worker` are gone within 2 s.
pub(crate) fn assert_worker_tasks_gone(worker: &str) {
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(2), || {
            left = pids_with_env("ORDO_WORKER", worker);
            left.is_empty()
        }),
        "processes of dead worker {worker} still alive: {left:?}"
    );
}

/// Waits for worker `i` (`id`) to kill itself at failpoint `point`, and for its task processes
/// to be gone; when it died.
fn died_at(c: &mut Cluster, i: usize, id: &str, point: &str) -> Instant {
    let status = c.workers[i].wait_exit(Duration::from_secs(120));
    let at = Instant::now();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{id} should die at {point}\n{}",
        tail(&c.workers[i].log())
    );
    assert!(
        c.workers[i].log().contains(point),
        "{}",
        tail(&c.workers[i].log())
    );
    assert_worker_tasks_gone(id);
    at
}

/// The results a job's report shows as recorded and ignored: (stale, duplicate).
pub(crate) fn ignored(report: &Value) -> (usize, usize) {
    let (mut stale, mut duplicates) = (0, 0);
    for t in report["tasks"].as_array().into_iter().flatten() {
        for i in t["ignored"].as_array().into_iter().flatten() {
            match i["kind"].as_str() {
                Some("stale") => stale += 1,
                Some("duplicate") => duplicates += 1,
                _ => {}
            }
        }
    }
    (stale, duplicates)
}

fn max(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.max(b)))
}

#[test]
fn f1_a_worker_killed_mid_task_or_between_result_and_ack() {
    let (mut tally, mut recovery) = (Tally::default(), None);
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        let mut s = Suite::on(Cluster::start(&["--ack-wait", "2s"]));
        workers(&mut s.c, &["a"]);
        // b dies right after its n-th result is stored, before acking the task message.
        let point = format!(
            "{}@{}",
            failpoint::AFTER_RESULT_BEFORE_ACK,
            5 + rng.below(60)
        );
        s.c.add_worker_env(
            "b",
            &["--concurrency", "4"],
            &[("ORDO_FAILPOINTS", point.as_str())],
        );
        // Every task leaves a child in its own session: only the guard can reap those of a
        // dead worker.
        s.submit("setsid sleep 60 </dev/null >/dev/null 2>&1 & sleep 0.1");
        s.wait_starts(40 + rng.below(150) as usize);
        let open = s.open_on("a");
        s.c.workers[0].stop(libc::SIGKILL);
        assert_worker_tasks_gone("a");
        s.c.add_worker("c", &["--concurrency", "4"]);
        recovery = max(recovery, s.until_rerun(&open, "a", Duration::from_secs(30)));
        let b = s.c.workers[1].wait_exit(Duration::from_secs(120));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&b),
            Some(libc::SIGKILL),
            "b should die at its failpoint"
        );
        assert_worker_tasks_gone("b");
        let t = s.finish(&["a".into(), "b".into()]);
        // b's stored-but-unacked result was applied, and the redelivered message ran again:
        // that second result is a recorded duplicate.
        assert!(t.duplicates >= 1, "{t:?}");
        tally += t;
    }
    ledger::record(
        "1a",
        Row {
            fault: "1. worker `kill -9` mid-task; a worker killed after storing a result, before acking".into(),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}

#[test]
fn f2_the_coordinator_killed_every_2s_for_30s() {
    let (mut tally, mut recovery) = (Tally::default(), None);
    let window = Duration::from_secs(if soak() { 120 } else { 30 });
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        let mut s = Suite::on(Cluster::start(&["--ack-wait", "5s"]));
        workers(&mut s.c, &["w1", "w2"]);
        // About as much work on 8 slots as the window is long.
        s.submit(&format!("sleep {:.2}", 0.35 * window.as_secs_f64() / 30.0));
        let t0 = Instant::now();
        let mut kills = 0;
        while t0.elapsed() < window && s.ledger.starts() < 640 {
            std::thread::sleep(Duration::from_millis(1500 + rng.below(1000)));
            let before = s.recorded();
            let fault = Instant::now();
            s.c.coordinator.stop(libc::SIGKILL);
            s.c.coordinator.start();
            kills += 1;
            let back = s.until_record_advances(fault, before, Duration::from_secs(30));
            recovery = max(recovery, back);
        }
        assert!(kills >= 5, "only {kills} kills before the work ran out");
        tally += s.finish(&[]);
    }
    ledger::record(
        "2a",
        Row {
            fault: format!(
                "2. coordinator `kill -9` every 1.5–2.5 s for {} s",
                window.as_secs()
            ),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}

/// Each failpoint comes with commits of the last second that only the state file's write-ahead
/// log holds (redb commits them unsynced): the restarts must replay them, and the rows' checks
/// (every task ends once, nothing acknowledged is lost) hold with them.
#[test]
fn f2_the_coordinator_killed_at_each_failpoint() {
    let mut replayed = 0;
    for (i, point) in [
        failpoint::BEFORE_COMMIT,
        failpoint::AFTER_APPLY_BEFORE_ACK,
        failpoint::AFTER_COMMIT_BEFORE_PUBLISH,
        failpoint::AFTER_PUBLISH_BEFORE_SENT,
    ]
    .into_iter()
    .enumerate()
    {
        let (mut tally, mut recovery) = (Tally::default(), None);
        for seed in seeds() {
            let mut rng = Rng::new(seed * 31 + i as u64);
            // Past the three submissions.
            let armed = format!("{point}@{}", 8 + rng.below(80));
            let mut s = Suite::on(Cluster::start_env(
                &["--ack-wait", "3s"],
                vec![("ORDO_FAILPOINTS".into(), armed)],
            ));
            workers(&mut s.c, &["w1", "w2"]);
            s.submit("sleep 0.05");
            let died = s.c.coordinator.wait_exit(Duration::from_secs(120));
            let fault = Instant::now();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&died),
                Some(libc::SIGKILL),
                "the coordinator should die at {point}:\n{}",
                s.c.coordinator.log()
            );
            s.c.coordinator.set_env("ORDO_FAILPOINTS", None);
            s.c.coordinator.start();
            let back = s.until_record_advances(fault, None, Duration::from_secs(30));
            recovery = max(recovery, back);
            if s.c
                .coordinator
                .log()
                .contains("replayed the state file's write-ahead log")
            {
                replayed += 1;
            }
            tally += s.finish(&[]);
        }
        ledger::record(
            &format!("2b{i}"),
            Row {
                fault: format!("2. coordinator killed at `{point}`"),
                seeds: seeds().len(),
                tally,
                recovery,
            },
        );
    }
    // A kill right after a checkpoint leaves nothing to replay; not at every one of these.
    assert!(replayed > 0, "no restart replayed the write-ahead log");
}

#[test]
fn f3_nats_server_stopped_and_killed_mid_job() {
    for (i, (sig, how)) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "`kill -9`")]
        .into_iter()
        .enumerate()
    {
        let (mut tally, mut recovery) = (Tally::default(), None);
        for seed in seeds() {
            let mut rng = Rng::new(seed + 7 * i as u64);
            let nats = NatsServer::start_synced();
            let mut s = Suite::on(Cluster::start_on(nats, &["--ack-wait", "3s"], Vec::new()));
            workers(&mut s.c, &["w1", "w2"]);
            s.submit("sleep 0.05");
            s.wait_starts(60 + rng.below(300) as usize);
            let before = s.recorded();
            let fault = Instant::now();
            s.c.nats.restart(sig);
            let back = s.until_record_advances(fault, before, Duration::from_secs(60));
            recovery = max(recovery, back);
            tally += s.finish(&[]);
        }
        ledger::record(
            &format!("3{i}"),
            Row {
                fault: format!("3. nats-server stopped with {how} mid-job and restarted"),
                seeds: seeds().len(),
                tally,
                recovery,
            },
        );
    }
}

#[test]
fn f4_a_worker_cut_off_longer_than_the_ack_wait() {
    let (mut tally, mut recovery) = (Tally::default(), None);
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        let mut s = Suite::on(Cluster::start(&["--ack-wait", "2s"]));
        workers(&mut s.c, &["cut", "ok"]);
        // The cut-off worker's first delivery of a task runs long once `slow-cut` exists.
        let slow = s.c.work.path().join("slow-cut");
        s.submit(&format!(
            "if [ -e {0}-$ORDO_WORKER ] && [ \"$ORDO_DELIVERY\" = 1 ]; then sleep 30; else sleep 0.05; fi",
            slow.display().to_string().trim_end_matches("-cut")
        ));
        s.wait_starts(30 + rng.below(200) as usize);
        std::fs::write(&slow, "").unwrap();
        let before = s.ledger.starts();
        assert!(wait_until(Duration::from_secs(30), || {
            s.ledger
                .executions()
                .iter()
                .skip(before)
                .any(|e| e.worker == "cut")
        }));
        std::fs::remove_file(&slow).unwrap();
        // Freeze it (SIGSTOP: no renewal, no result) while a long execution runs: one whose
        // shell is in its `sleep 30` (an execution that started as the file went away runs
        // short, and its pid may name another process by the time the check comes).
        let mut victim = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                victim = s
                    .ledger
                    .executions()
                    .into_iter()
                    .skip(before)
                    .filter(|e| e.worker == "cut" && e.end.is_none())
                    .find_map(|e| {
                        let shell = Process::of(victim_pid(&s.ledger, &e))?;
                        shell.runs(&["sleep", "30"]).then_some((e, shell))
                    });
                victim.is_some()
            }),
            "no long execution on the cut-off worker"
        );
        let (victim, shell) = victim.unwrap();
        signal(s.c.workers[0].pid(), libc::SIGSTOP);
        recovery = max(
            recovery,
            s.until_rerun(
                &[(victim.job.clone(), victim.task.clone())],
                "cut",
                Duration::from_secs(30),
            ),
        );
        // Its task ran elsewhere and succeeded; now the worker comes back.
        assert!(wait_until(Duration::from_secs(30), || {
            s.ledger.executions().iter().any(|e| {
                e.job == victim.job && e.task == victim.task && e.worker == "ok" && e.end.is_some()
            })
        }));
        signal(s.c.workers[0].pid(), libc::SIGCONT);
        // It finds its lease lost and kills its own task (which had 25 s to go: waiting 15 s
        // tells a kill from the task's own end).
        assert!(
            wait_until(Duration::from_secs(15), || !shell.alive()),
            "the cut-off worker did not kill its task ({shell:?}; the worker's state and start: {:?}); its log:\n{}",
            Process::stat(s.c.workers[0].pid()),
            tail(&s.c.workers[0].log())
        );
        let t = s.finish(&[]);
        // ...and its report of that execution is recorded as stale.
        let report = s.report(&victim.job);
        let task = report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == victim.task.as_str())
            .unwrap();
        assert!(
            task["ignored"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["kind"] == "stale"
                    && i["worker"] == "cut"
                    && i["delivery"] == victim.delivery),
            "no stale record of the cut-off execution: {task}"
        );
        tally += t;
    }
    ledger::record(
        "4",
        Row {
            fault: "4. a worker frozen (SIGSTOP) past the ack wait, then resumed".into(),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}

/// A worktree job on a shared repository (docs/design.md, "Agent workspaces", distributed) with
/// three workers: the worker running `slow`'s first delivery is killed mid-task, then the one
/// running `held`'s integration verify is killed mid-integration. The job still succeeds with every
/// task's change on the integration branch exactly once (one first-parent commit per file), no
/// conflict marker and no task branch left; `slow` ran again elsewhere and `held`'s integration was
/// redone by the surviving worker.
#[test]
fn f10_workers_killed_mid_task_and_mid_integration_of_a_worktree_job() {
    let (mut tally, mut recovery) = (Tally::default(), None);
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        let sh = crate::workspaces_cluster::Shared::new();
        let repo = sh.repo();
        let marks = sh.dir("marks");
        let mut c = Cluster::start(&["--ack-wait", "2s"]);
        for id in ["w1", "w2", "w3"] {
            let caches = sh.dir(&format!("caches-{id}")).display().to_string();
            c.add_worker(id, &["--concurrency", "2", "--workspaces", &caches]);
        }
        let plain = 3 + rng.below(4) as usize;
        let mut spec = format!(
            r#"
name = "worktree-faults"
[settings]
workspace = "worktree"
repository = "{repo}"
target_branch = "it"
timeout = "60s"
env = {{ MARKS = "{marks}" }}
integration_verify = """
if [ -n "$HOLD" ] && mkdir "$MARKS/held" 2>/dev/null; then
  echo "$ORDO_WORKER" > "$MARKS/integrating.new" && mv "$MARKS/integrating.new" "$MARKS/integrating"
  sleep 120
fi
"""

[[tasks]]
name = "slow"
command = """
echo "start slow $ORDO_WORKER" >> "$MARKS/log"
if [ "$ORDO_DELIVERY" = 1 ]; then
  echo "$ORDO_WORKER" > "$MARKS/slow.new" && mv "$MARKS/slow.new" "$MARKS/slow"
  sleep 120
fi
echo slow > slow.txt
"""

[[tasks]]
name = "held"
env = {{ HOLD = "1" }}
command = """
echo "start held $ORDO_WORKER" >> "$MARKS/log"
until [ -e "$MARKS/arm" ]; do sleep 0.02; done
echo held > held.txt
"""
"#,
            repo = repo.display(),
            marks = marks.display()
        );
        for i in 0..plain {
            spec.push_str(&format!(
                r#"
[[tasks]]
name = "t{i}"
command = 'echo "start t{i} $ORDO_WORKER" >> "$MARKS/log"; echo t{i} > f{i}.txt'
"#
            ));
        }
        let spec = write(c.work.path(), "worktree-faults.toml", &spec);
        let r = c.ordo(&["submit", &spec]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        let job = r.stdout.trim().to_string();
        let read = |name: &str| std::fs::read_to_string(marks.join(name)).ok();
        let worker_index = |id: &str| ["w1", "w2", "w3"].iter().position(|w| *w == id.trim());

        // Mid-task: the worker running slow's first delivery.
        let mut slow_on = None;
        assert!(
            wait_until(Duration::from_secs(60), || {
                slow_on = read("slow");
                slow_on.is_some()
            }),
            "slow never started"
        );
        let slow_on = slow_on.unwrap().trim().to_string();
        c.workers[worker_index(&slow_on).unwrap()].stop(libc::SIGKILL);
        assert_worker_tasks_gone(&slow_on);
        std::fs::write(marks.join("arm"), "").unwrap();

        // Mid-integration: the worker running held's integration verify (another one: the
        // first is dead).
        let mut held_on = None;
        assert!(
            wait_until(Duration::from_secs(60), || {
                held_on = read("integrating");
                held_on.is_some()
            }),
            "held's integration never started
coordinator:
{}",
            tail(&c.coordinator.log())
        );
        let held_on = held_on.unwrap().trim().to_string();
        assert_ne!(held_on, slow_on);
        let fault = Instant::now();
        c.workers[worker_index(&held_on).unwrap()].stop(libc::SIGKILL);
        assert_worker_tasks_gone(&held_on);

        let mut last = Value::Null;
        let done = wait_until(Duration::from_secs(120), || {
            let r = c.ordo(&["status", &job, "--output", "json"]);
            if r.code() == 0 {
                last = r.json();
            }
            matches!(
                last["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        });
        assert!(
            done && last["state"] == "succeeded",
            "{last:#}
coordinator:
{}
workers:
{}",
            tail(&c.coordinator.log()),
            c.workers
                .iter()
                .map(|w| tail(&w.log()))
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        recovery = max(recovery, fault.elapsed());

        // The ledger: every change on the branch, each brought by exactly one commit.
        let mut files: Vec<(String, String)> = (0..plain)
            .map(|i| (format!("f{i}.txt"), format!("t{i}")))
            .collect();
        files.push(("slow.txt".into(), "slow".into()));
        files.push(("held.txt".into(), "held".into()));
        for (file, content) in &files {
            assert_eq!(&sh.show("it", file), content, "{file}");
            let commits = ordo_tests::git(
                &repo,
                &["log", "--first-parent", "--format=%H", "it", "--", file],
            );
            assert_eq!(commits.lines().count(), 1, "{file} came by {commits}");
        }
        assert_eq!(
            ordo_tests::git_run(&repo, &["grep", "-F", "<<<<<<<", "it"]).code(),
            1
        );
        assert_eq!(
            ordo_tests::git(&repo, &["for-each-ref", "refs/heads/ordo/"]),
            "",
            "task branches left"
        );
        let r = c.ordo(&["report", &job, "--format", "json"]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        let report = r.json();
        let ran_on = |t: &str| -> Vec<String> {
            ordo_tests::task(&report, t)["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["worker"].as_str().unwrap_or("").to_string())
                .collect()
        };
        assert!(
            ran_on("slow").iter().any(|w| *w != slow_on),
            "slow never ran elsewhere: {:?}",
            ran_on("slow")
        );
        assert_eq!(
            ordo_tests::task(&report, "held")["integration"]["outcome"],
            "merged"
        );
        let executions = std::fs::read_to_string(marks.join("log"))
            .unwrap_or_default()
            .lines()
            .count();
        let (stale, duplicates) = ignored(&report);
        tally += Tally {
            tasks: files.len(),
            executions,
            stale,
            duplicates,
            unknown: 0,
        };
    }
    ledger::record(
        "9w",
        Row {
            fault: "10. worktree job on a shared repository: a worker `kill -9` mid-task, another mid-integration (each change on the branch once)".into(),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}

#[test]
fn f12_a_worker_killed_holding_a_batch_of_results() {
    let (mut tally, mut recovery) = (Tally::default(), None);
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        let mut s = Suite::on(Cluster::start(&["--ack-wait", "2s"]));
        workers(&mut s.c, &["batch-ok"]);
        // b (`held-batch`) dies the n-th time it has gathered several results into one message, before
        // publishing it: those tasks ended, and neither their results nor their acks left.
        let point = format!("{}@{}", failpoint::HOLDING_A_BATCH, 1 + rng.below(4));
        s.c.add_worker_env(
            "held-batch",
            &["--concurrency", "8"],
            &[("ORDO_FAILPOINTS", point.as_str())],
        );
        // Short tasks on many slots end close together: results queue while one is stored.
        s.submit("sleep 0.05");
        let fault = died_at(&mut s.c, 1, "held-batch", failpoint::HOLDING_A_BATCH);
        // The batch's tasks had ended on b; each runs again elsewhere (its message was never
        // acked), as do the tasks b was still running.
        let execs = s.ledger.executions();
        let ended_on_b: Vec<(String, String)> = execs
            .iter()
            .filter(|e| e.worker == "held-batch" && e.end.is_some())
            .map(|e| (e.job.clone(), e.task.clone()))
            .collect();
        let mut batch = Vec::new();
        let rerun = wait_until(Duration::from_secs(30), || {
            let execs = s.ledger.executions();
            batch = ended_on_b
                .iter()
                .filter(|(job, task)| {
                    execs
                        .iter()
                        .any(|e| &e.job == job && &e.task == task && e.worker != "held-batch")
                })
                .cloned()
                .collect();
            batch.len() >= 2
        });
        assert!(
            rerun,
            "tasks that ended on b and ran again elsewhere: {batch:?} (the held batch has >= 2)"
        );
        recovery = max(recovery, fault.elapsed());
        let t = s.finish(&["held-batch".into()]);
        tally += t;
    }
    ledger::record(
        "9zz",
        Row {
            fault: "12. a worker `kill -9`ed holding a batch of results (gathered into one message, not yet stored; its tasks ended, their messages unacked)".into(),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}

#[test]
fn f14_a_worker_killed_holding_a_task_beyond_its_slots() {
    let (mut tally, mut recovery) = (Tally::default(), None);
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        let mut s = Suite::on(Cluster::start(&["--ack-wait", "2s"]));
        workers(&mut s.c, &["hold-ok"]);
        // b (`held-task`) dies the n-th time a task it asked for beyond its free slots comes
        // while every slot is busy: that task was neither started nor acked.
        let point = format!("{}@{}", failpoint::HOLDING_A_TASK, 3 + rng.below(20));
        s.c.add_worker_env(
            "held-task",
            &["--concurrency", "4"],
            &[("ORDO_FAILPOINTS", point.as_str())],
        );
        // Quick tasks: the worker holds one beside its slots while none of them has run long.
        s.submit("true");
        let fault = died_at(&mut s.c, 1, "held-task", failpoint::HOLDING_A_TASK);
        // The held task never started on b: JetStream delivers it again after the ack wait,
        // to the other worker (a later delivery of a task b never started), and every job ends
        // with each task run as the ledger says.
        let started_on_b: Vec<(String, String)> = s
            .ledger
            .executions()
            .into_iter()
            .filter(|e| e.worker == "held-task")
            .map(|e| (e.job, e.task))
            .collect();
        // Executions starting from here on: a task handed back earlier (a held task that went
        // back, a nak) may have run on a later delivery before the fault.
        let from = ordo_tests::lines(&s.ledger.path).len();
        let redelivered = wait_until(Duration::from_secs(30), || {
            s.ledger.executions().iter().any(|e| {
                e.start >= from
                    && e.worker != "held-task"
                    && e.delivery >= 2
                    && !started_on_b.contains(&(e.job.clone(), e.task.clone()))
            })
        });
        assert!(
            redelivered,
            "no task that b never started ran again elsewhere after the fault"
        );
        recovery = max(recovery, fault.elapsed());
        let t = s.finish(&["held-task".into()]);
        tally += t;
    }
    ledger::record(
        "9zzz",
        Row {
            fault: "14. a worker `kill -9`ed holding a task beyond its slots (delivered while every slot was busy, neither started nor acked)".into(),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}

/// The pid the ledger wrote for an execution (its `$$`).
fn victim_pid(ledger: &Ledger, e: &ordo_tests::ledger::Execution) -> u32 {
    let line = &ordo_tests::lines(&ledger.path)[e.start];
    line.split(' ').nth(6).unwrap().parse().unwrap()
}

/// A process as `/proc` shows it, known by its pid and start time: a pid alone may name
/// another process once this one is gone and reaped (pids wrap at 32,768 on these machines).
#[derive(Debug)]
struct Process {
    pid: u32,
    started: u64,
}

impl Process {
    /// The live process `pid`, if any.
    fn of(pid: u32) -> Option<Process> {
        let (state, started) = Process::stat(pid)?;
        (state != 'Z').then_some(Process { pid, started })
    }

    /// Its state letter and start time (in clock ticks since boot), from `/proc/PID/stat`.
    fn stat(pid: u32) -> Option<(char, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, whose parentheses may hold anything.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let state = fields.first()?.chars().next()?;
        Some((state, fields.get(19)?.parse().ok()?))
    }

    /// Whether it is still running (neither gone nor a zombie nor replaced).
    fn alive(&self) -> bool {
        Process::stat(self.pid).is_some_and(|(state, t)| state != 'Z' && t == self.started)
    }

    /// Whether a child of it runs the command line `argv`.
    fn runs(&self, argv: &[&str]) -> bool {
        std::fs::read_dir("/proc").is_ok_and(|dir| {
            dir.flatten().any(|e| {
                let path = e.path();
                let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
                let parent = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                parent == Some(self.pid)
                    && std::fs::read(path.join("cmdline")).is_ok_and(|c| {
                        c.split(|b| *b == 0)
                            .filter(|a| !a.is_empty())
                            .eq(argv.iter().map(|a| a.as_bytes()))
                    })
            })
        })
    }
}

#[test]
fn f5_tasks_that_hang_trap_escape_flood_or_write_bad_bytes() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w", &["--concurrency", "9"]);
    let ledger = Ledger::new(c.work.path());
    let tasks: [(&str, &str, &str); 9] = [
        ("hang", "sleep 1000", "1s"),
        ("trap", "trap '' TERM; sleep 1000", "1s"),
        ("stdin", "cat && ! read x", "30s"),
        ("background", "sleep 1000 & echo started", "30s"),
        ("nohup", "nohup sleep 1000 >/dev/null 2>&1 &", "30s"),
        ("setsid", "setsid sleep 1000 >/dev/null 2>&1 &", "30s"),
        (
            "double-fork",
            "(setsid sh -c 'sleep 1000 &' </dev/null >/dev/null 2>&1 &)",
            "30s",
        ),
        ("gigabyte", "head -c 1000000000 /dev/zero", "300s"),
        ("bad-utf8", "printf 'x\\377\\376 after bad bytes'", "30s"),
    ];
    let mut toml = format!(
        "name = \"hostile-tasks\"\n[settings]\nenv = {{ {} = \"{}\" }}\n",
        ledger::MARK_VAR,
        ledger.mark
    );
    for (name, command, timeout) in tasks {
        toml.push_str(&format!(
            "[[tasks]]\nname = \"{name}\"\ncommand = {command:?}\ntimeout = \"{timeout}\"\n"
        ));
    }
    let path = write(c.work.path(), "hostile-tasks.toml", &toml);
    let r = c.ordo(&["submit", &path, "--wait"]);
    // Two tasks time out, so the job fails; nothing hangs.
    assert_eq!(r.code(), 1, "{}{}", r.stdout, r.stderr);
    let job = r.first_line();
    let jobs = c.ordo(&["jobs", "--output", "json"]).json();
    let job = if job.len() == 36 {
        job
    } else {
        jobs[0]["id"].as_str().unwrap().to_string()
    };
    let report = c.ordo(&["report", &job, "--format", "json"]);
    assert_eq!(report.code(), 0, "{}", report.stderr);
    let report = report.json();
    let task = |name: &str| -> Value {
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap()
    };
    for name in ["hang", "trap"] {
        let t = task(name);
        assert_eq!(t["state"], "timed_out", "{t}");
        // 1 s, then SIGTERM and a 2 s grace before SIGKILL.
        assert!(t["duration_ms"].as_u64().unwrap() < 6_000, "{t}");
    }
    for name in [
        "stdin",
        "background",
        "nohup",
        "setsid",
        "double-fork",
        "gigabyte",
        "bad-utf8",
    ] {
        assert_eq!(task(name)["state"], "succeeded", "{}", task(name));
    }
    assert_eq!(task("gigabyte")["output_bytes"], 1_000_000_000u64);
    // Each ran once: nothing was retried or delivered again.
    let executions: usize = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["runs"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(executions, tasks.len(), "{report}");
    let tail = task("bad-utf8")["output_tail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        tail.contains('\u{FFFD}') && tail.ends_with("after bad bytes"),
        "{tail:?}"
    );
    // No process of any of them is left, escaped or not.
    ledger.assert_no_leftovers();
    // A gigabyte went through the worker without its memory following.
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.workers[0].pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    assert!(peak_kb < 256 * 1024, "worker peak RSS {peak_kb} kB");
    // The log stream carried a bounded part of it.
    let logs = c.ordo(&["logs", &job, "gigabyte"]);
    assert_eq!(logs.code(), 0, "{}", logs.stderr);
    assert!(
        logs.stdout.len() as u64 <= ordo_proto::names::MAX_STREAMED_LOG_BYTES + 4096,
        "{} bytes streamed",
        logs.stdout.len()
    );
    assert!(logs.stdout.contains("not streamed"), "no truncation notice");
    ledger::record(
        "5",
        Row {
            fault: format!(
                "5. tasks that hang, trap SIGTERM, read stdin, escape (`&`, nohup, setsid, double fork), write 1 GB, write invalid UTF-8: worker peak RSS {} MB",
                peak_kb / 1024
            ),
            seeds: 1,
            tally: Tally {
                tasks: tasks.len(),
                executions,
                ..Tally::default()
            },
            recovery: None,
        },
    );
}

/// A size-limited filesystem mounted over a directory, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_path_buf())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn f8_redb_on_a_full_disk_stops_cleanly_and_finishes_once_space_returns() {
    let mut s = Suite::on(Cluster::start(&["--ack-wait", "3s"]));
    // The coordinator's data directory on a 32 MB filesystem, from its first start.
    s.c.coordinator.stop(libc::SIGTERM);
    let disk = SmallDisk::mount(s.c.data.path(), "32m");
    s.c.coordinator.start();
    workers(&mut s.c, &["w1", "w2"]);
    s.submit("sleep 0.05");
    s.wait_starts(50);
    let filler = disk.fill();
    let fault = Instant::now();
    let status = s.c.coordinator.wait_exit(Duration::from_secs(120));
    let log = s.c.coordinator.log();
    assert!(
        !status.success() && std::os::unix::process::ExitStatusExt::signal(&status).is_none(),
        "the coordinator should exit with an error: {status:?}\n{}",
        tail(&log)
    );
    assert!(
        log.contains("No space left on device") && log.contains("ordo.redb"),
        "the error should say why and name the file:\n{}",
        tail(&log)
    );
    // Space returns; the job finishes with nothing lost.
    std::fs::remove_file(filler).unwrap();
    s.c.coordinator.start();
    let recovery = s.until_record_advances(fault, None, Duration::from_secs(60));
    let tally = s.finish(&[]);
    drop(disk);
    ledger::record(
        "8",
        Row {
            fault: "8. redb's disk full mid-job (tmpfs), then space freed and the coordinator restarted".into(),
            seeds: 1,
            tally,
            recovery: Some(recovery),
        },
    );
}

#[test]
fn f7_replayed_reordered_and_forged_results_change_nothing() {
    use futures::StreamExt;
    use ordo_proto::wire::{self, WorkerEvent};

    let mut s = Suite::on(Cluster::start(&[]));
    s.forged = true;
    workers(&mut s.c, &["w1", "w2"]);
    let url = s.c.nats.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Every result as it goes by, like an eavesdropper on the event subjects.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<WorkerEvent>::new()));
    let client = rt.block_on(async_nats::connect(url)).unwrap();
    let mut sub = rt
        .block_on(client.subscribe(ordo_proto::names::EVENT_SUBJECTS))
        .unwrap();
    let sink = seen.clone();
    rt.spawn(async move {
        while let Some(m) = sub.next().await {
            if let Ok(ev @ WorkerEvent::Finished(_)) = wire::decode::<WorkerEvent>(&m.payload) {
                sink.lock().unwrap().push(ev);
            }
        }
    });
    s.submit_shapes(&[Shape::Chain(50)], "sleep 0.1");
    assert!(wait_until(Duration::from_secs(60), || seen
        .lock()
        .unwrap()
        .len()
        >= 15));
    let captured: Vec<WorkerEvent> = seen.lock().unwrap().clone();
    let WorkerEvent::Finished(template) = captured[0].clone() else {
        unreachable!()
    };
    let mut inject: Vec<WorkerEvent> = Vec::new();
    // Replays, then the same again in reverse order.
    inject.extend(captured.iter().cloned());
    inject.extend(captured.iter().rev().cloned());
    // Forged: an attempt never dispatched; a failure for a task still pending.
    let mut never = template.clone();
    never.attempt = ordo_proto::Attempt(never.attempt.0 + 5);
    never.outcome = ordo_proto::Outcome::Failed;
    let mut pending = template.clone();
    pending.index = ordo_proto::TaskIndex(49);
    pending.task = ordo_proto::TaskName::new("t49").unwrap();
    pending.outcome = ordo_proto::Outcome::Failed;
    inject.push(WorkerEvent::Finished(never));
    inject.push(WorkerEvent::Finished(pending));
    rt.block_on(async {
        let js = async_nats::jetstream::new(client);
        for (n, ev) in inject.iter().enumerate() {
            // A fresh message id, or JetStream would drop the copy before ordo sees it.
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("replay-{n}").as_str());
            js.publish_with_headers(
                ordo_proto::names::event_subject(&ev.job()),
                headers,
                wire::encode(ev).into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    });
    let tally = s.finish(&[]);
    let replays = 2 * captured.len();
    assert_eq!(tally.duplicates, replays, "{tally:?}");
    assert_eq!(tally.unknown, 2, "{tally:?}");
    // Each logged once: nothing came back in a loop.
    let log = s.c.coordinator.log();
    assert_eq!(
        log.matches("result ignored").count(),
        inject.len(),
        "{}",
        tail(&log)
    );
    ledger::record(
        "7",
        Row {
            fault: format!(
                "7. {replays} results replayed (in order and reversed) and 2 forged, mid-chain"
            ),
            seeds: 1,
            tally,
            recovery: None,
        },
    );
}

// Row 11: coordinator high availability (`ordo-coordinator --ha`), in its own file.
#[path = "fault_ha.rs"]
mod ha;
