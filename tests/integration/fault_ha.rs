//! Row 11 of the fault suite: coordinator high availability (`ordo-coordinator --ha`, issue 19)
//! with real processes on one nats-server. The three shapes run while the active coordinator is
//! `kill -9`ed with its data directory deleted, or frozen (SIGSTOP) past its lease and thawed;
//! standbys take over, a coordinator restarted on an empty disk joins (from a snapshot and the
//! journal) and later finishes the jobs itself, and the ledger shows every task executed once.
//! A child module of `fault_suite` (its `Suite` and helpers).
//!
//! *Failover* is measured from the fault to the next new dispatch (a task message with a message
//! id never published before, seen by a plain subscriber of `ordo.task.>`); *recovery* from the
//! fault until the record advanced, as in the other rows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ordo_tests::ledger::{self, Row, Tally};
use ordo_tests::{Cluster, Daemon, wait_until};

use super::{Rng, Suite, max, seeds, tail, workers};

const TTL: &str = "3s";

/// Every task message published, with when it was seen and its message id.
struct DispatchWatch {
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl DispatchWatch {
    fn start(url: &str) -> DispatchWatch {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let url = url.to_string();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = async_nats::connect(url).await.unwrap();
                let mut sub = client.subscribe("ordo.task.>").await.unwrap();
                client.flush().await.unwrap();
                ready_tx.send(()).unwrap();
                while let Some(m) = sub.next().await {
                    let id = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.as_str().to_string())
                        .unwrap_or_default();
                    into.lock().unwrap().push((Instant::now(), id));
                }
            });
        });
        ready.recv().unwrap();
        DispatchWatch { seen }
    }

    /// Time from `fault` to the first dispatch whose id was not published before it.
    fn next_new_dispatch(&self, fault: Instant, limit: Duration) -> Duration {
        let mut found = None;
        let ok = wait_until(limit, || {
            let seen = self.seen.lock().unwrap();
            let before: HashSet<&str> = seen
                .iter()
                .filter(|(t, _)| *t <= fault)
                .map(|(_, id)| id.as_str())
                .collect();
            found = seen
                .iter()
                .find(|(t, id)| *t > fault && !before.contains(id.as_str()))
                .map(|(t, _)| *t - fault);
            found.is_some()
        });
        assert!(ok, "no new dispatch within {limit:?} of the fault");
        found.unwrap()
    }
}

/// A further `--ha` coordinator with its own data directory.
struct Standby {
    d: Daemon,
    data: tempfile::TempDir,
}

fn ha_flags<'a>(id: &'a str, data: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "--nats",
        url,
        "--data-dir",
        data,
        "--ack-wait",
        "5s",
        "--ha",
        "--lease-ttl",
        TTL,
        "--id",
        id,
        "--snapshot-every",
        "20",
    ]
}

fn standby(c: &Cluster, id: &str, env: &[(String, String)]) -> Standby {
    let data = tempfile::tempdir().unwrap();
    let url = c.nats.url();
    let dir = data.path().to_string_lossy().into_owned();
    let d = Daemon::spawn_env(
        "ordo-coordinator",
        &ha_flags(id, &dir, &url),
        c.work.path(),
        env,
    );
    Standby { d, data }
}

/// The coordinators as `ordo cluster` lists them: (id, role, lag).
fn coordinators(c: &Cluster) -> Vec<(String, String, u64)> {
    let r = c.ordo(&["cluster", "--output", "json"]);
    if r.code() != 0 {
        return Vec::new();
    }
    ordo_tests::cluster_members(&r.stdout)
}

fn active(c: &Cluster) -> Option<String> {
    coordinators(c)
        .into_iter()
        .find(|(_, role, _)| role == "active")
        .map(|(id, _, _)| id)
}

/// Waits until `ids` are all listed as caught-up standbys.
fn wait_standbys(c: &Cluster, ids: &[&str], logs: &dyn Fn() -> String) {
    let mut last = Vec::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            last = coordinators(c);
            ids.iter().all(|id| {
                last.iter()
                    .any(|(i, role, lag)| i == id && role == "standby" && *lag < 50)
            })
        }),
        "{ids:?} did not join as standbys: {last:?}\n{}",
        logs()
    );
}

/// Starts the first coordinator (`c1`, active) with the suite's cluster.
fn ha_cluster(env: Vec<(String, String)>) -> Suite {
    let flags = [
        "--ack-wait",
        "5s",
        "--ha",
        "--lease-ttl",
        TTL,
        "--id",
        "c1",
        "--snapshot-every",
        "20",
    ];
    Suite::on(Cluster::start_env(&flags, env))
}

fn empty(dir: &std::path::Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir_all(dir).unwrap();
}

/// c1 active, c2 and c3 standbys. c1 is `kill -9`ed with its disk deleted mid-job; a standby
/// takes over. c1 restarts on its empty disk and joins as a standby (the journal is purged
/// behind snapshots, so it starts from one). Then the active one and the other standby are
/// killed with their disks too: c1, the one that joined with nothing, finishes the jobs.
#[test]
fn f11_ha_active_coordinator_killed_with_its_disk() {
    let (mut tally, mut recovery, mut failover) = (Tally::default(), None, None);
    for seed in seeds() {
        let mut rng = Rng::new(seed + 100);
        let mut s = ha_cluster(Vec::new());
        let watch = DispatchWatch::start(&s.c.nats.url());
        let mut others = vec![standby(&s.c, "c2", &[]), standby(&s.c, "c3", &[])];
        let logs = |s: &Suite, others: &[Standby]| {
            format!(
                "c1:\n{}\nc2:\n{}\nc3:\n{}",
                tail(&s.c.coordinator.log()),
                tail(&others[0].d.log()),
                tail(&others[1].d.log())
            )
        };
        wait_standbys(&s.c, &["c2", "c3"], &|| logs(&s, &others));
        assert_eq!(active(&s.c).as_deref(), Some("c1"));
        workers(&mut s.c, &["w1", "w2"]);
        s.submit("sleep 0.2");
        s.wait_starts(80 + rng.below(120) as usize);

        // 1. The active one dies with its disk.
        let before = s.recorded();
        let fault = Instant::now();
        s.c.coordinator.stop(libc::SIGKILL);
        empty(s.c.data.path());
        // Asked while nobody is active, the CLI waits for the takeover instead of failing.
        if seed == seeds()[0] {
            let job = &s.jobs[0].1;
            let r = s.c.ordo(&["status", job, "--output", "json"]);
            assert_eq!(r.code(), 0, "status during the takeover: {}", r.stderr);
            assert!(r.json()["state"].is_string(), "{}", r.stdout);
            assert!(r.stderr.contains("waiting up to"), "{}", r.stderr);
        }
        failover = max(
            failover,
            watch.next_new_dispatch(fault, Duration::from_secs(30)),
        );
        recovery = max(
            recovery,
            s.until_record_advances(fault, before, Duration::from_secs(30)),
        );
        let next = active(&s.c).expect("a standby took over");
        assert!(next == "c2" || next == "c3", "{next}");

        // 2. It comes back on its empty disk and joins as a standby.
        s.c.coordinator.start();
        wait_standbys(&s.c, &["c1"], &|| logs(&s, &others));
        assert!(
            s.c.coordinator
                .log()
                .contains("state restored from the snapshot"),
            "c1 did not start from a snapshot\n{}",
            logs(&s, &others)
        );

        // 3. Everyone else dies with their disks: the one that joined with nothing finishes.
        s.wait_starts(s.ledger.starts() + 40);
        let before = s.recorded();
        let fault = Instant::now();
        for o in &mut others {
            o.d.stop(libc::SIGKILL);
            empty(o.data.path());
        }
        failover = max(
            failover,
            watch.next_new_dispatch(fault, Duration::from_secs(30)),
        );
        recovery = max(
            recovery,
            s.until_record_advances(fault, before, Duration::from_secs(30)),
        );
        assert_eq!(active(&s.c).as_deref(), Some("c1"));
        let t = s.finish(&[]);
        assert_eq!(
            t.executions,
            t.tasks,
            "every task executed once: {t:?}\n{}",
            logs(&s, &others)
        );
        tally += t;
    }
    eprintln!("failover (kill → next new dispatch): {failover:?}; recovery: {recovery:?}");
    let failover = failover.unwrap();
    assert!(failover < Duration::from_secs(5), "failover {failover:?}");
    ledger::record(
        "9x",
        Row {
            fault: format!(
                "11. `--ha`, one nats-server, lease {TTL}: the active coordinator `kill -9`ed with \
                 its disk deleted; it rejoins on an empty disk (snapshot + journal), then the \
                 other two die with their disks and it finishes the jobs (failover, kill → next \
                 dispatch: {:.1} s at most)",
                failover.as_secs_f64()
            ),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}

/// c1 active, c2 standby. c1 is frozen past its lease: c2 takes over; c1 thawed steps down
/// and becomes a standby. With the second seed c1 runs blind to its lease
/// (`ORDO_HA_IGNORE_LEASE`, debug builds): only the journal's fence stops it, and its log shows
/// the server refusing its append. Nothing is recorded twice (the ledger's checks).
#[test]
fn f11_ha_active_coordinator_frozen_past_its_lease() {
    let (mut tally, mut recovery, mut failover) = (Tally::default(), None, None);
    for (i, seed) in seeds().into_iter().enumerate() {
        let mut rng = Rng::new(seed + 200);
        let blind = i % 2 == 1;
        let env = if blind {
            vec![("ORDO_HA_IGNORE_LEASE".to_string(), "1".to_string())]
        } else {
            Vec::new()
        };
        let mut s = ha_cluster(env);
        let watch = DispatchWatch::start(&s.c.nats.url());
        let other = standby(&s.c, "c2", &[]);
        let logs = |s: &Suite| {
            format!(
                "c1:\n{}\nc2:\n{}",
                tail(&s.c.coordinator.log()),
                tail(&other.d.log())
            )
        };
        wait_standbys(&s.c, &["c2"], &|| logs(&s));
        workers(&mut s.c, &["w1", "w2"]);
        s.submit("sleep 0.2");
        s.wait_starts(80 + rng.below(120) as usize);

        let pid = s.c.coordinator.pid();
        let fault = Instant::now();
        ordo_tests::signal(pid, libc::SIGSTOP);
        failover = max(
            failover,
            watch.next_new_dispatch(fault, Duration::from_secs(30)),
        );
        assert!(
            wait_until(Duration::from_secs(30), || active(&s.c).as_deref()
                == Some("c2")),
            "c2 did not take over\n{}",
            logs(&s)
        );
        let before = s.recorded();
        let thawed = Instant::now();
        ordo_tests::signal(pid, libc::SIGCONT);
        // The thawed one steps down and follows the journal again.
        assert!(
            wait_until(Duration::from_secs(30), || s
                .c
                .coordinator
                .log()
                .contains("standby: following the journal")),
            "c1 did not step down\n{}",
            logs(&s)
        );
        let log = s.c.coordinator.log();
        assert!(log.contains("stepping down"), "{}", logs(&s));
        if blind {
            assert!(
                log.contains("the journal refused an append"),
                "the server's fence did not stop c1\n{}",
                logs(&s)
            );
        }
        wait_standbys(&s.c, &["c1"], &|| logs(&s));
        assert_eq!(active(&s.c).as_deref(), Some("c2"));
        recovery = max(
            recovery,
            s.until_record_advances(thawed, before, Duration::from_secs(30)),
        );
        let t = s.finish(&[]);
        assert_eq!(t.executions, t.tasks, "every task executed once: {t:?}");
        tally += t;
    }
    eprintln!("failover (freeze → next new dispatch): {failover:?}; recovery: {recovery:?}");
    ledger::record(
        "9y",
        Row {
            fault: format!(
                "11. `--ha`, lease {TTL}: the active coordinator frozen (SIGSTOP) past its lease \
                 and thawed: the standby takes over, the thawed one steps down (second seed blind \
                 to its lease: the journal's fence rejects its append) (failover, freeze → next \
                 dispatch: {:.1} s at most)",
                failover.unwrap().as_secs_f64()
            ),
            seeds: seeds().len(),
            tally,
            recovery,
        },
    );
}
