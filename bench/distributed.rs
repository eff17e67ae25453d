//! Distributed benchmarks (docs/design.md, "Targets") through one real local nats-server, with the
//! coordinator service and workers running in this process (the same library code the binaries run,
//! each on its own thread and the `runtime()` its binary uses), each against a baseline measured in
//! the same run:
//!
//! - 10,000 independent `true` tasks, one worker with 4 slots, vs the spawn limit (tokio
//!   spawning the same `sh -c true` with 4 in flight), everything sharing every CPU, with each
//!   component's CPU per task (nats-server, coordinator, worker with its blocking threads; from
//!   /proc) and the rate one core of it could carry;
//! - the same with nats-server and the coordinator on one CPU and the worker and its tasks on
//!   another, vs the spawn limit of that CPU: target ≥ 0.8. This is the target's question (is the
//!   broker what limits a worker?), which the first cannot answer on a small machine: there the
//!   broker's and the coordinator's CPU per task is taken from the spawns (skipped on one CPU);
//! - a 1,000-task chain of `true`: overhead per hop beyond the spawn time, target ≤ 1.5 ms;
//! - 400 `sleep 0.5` tasks on one worker of 20 slots, then on two: the makespan roughly halves;
//! - a 100,000-task job (7 MB of TOML) through a coordinator process of its own: accept time,
//!   status latency, the coordinator's peak RSS, the run to the end (`big_job.rs`; 1,000,000
//!   tasks too with `ORDO_SOAK=1`; `ORDO_BENCH_ONLY=big` runs these cases alone,
//!   `ORDO_BENCH_ONLY=soak` the 1,000,000 alone, `ORDO_BENCH_ONLY=chain` the chain alone,
//!   `ORDO_BENCH_ONLY=independent` the two
//!   10,000-task cases alone).
//! - the cost of `--ha` (issue 19): the 10,000 independent tasks and the chain again with the
//!   coordinator journaling every commit (and one hot standby following the journal), printed
//!   beside the single-node figures of the same run.
//!
//! Run: `scripts/test` once (installs nats-server into .venv), then
//! `cargo bench --workspace --bench distributed` (NATS_SERVER_BIN overrides the binary,
//! ORDO_BENCH_N scales the 10,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use ordo_coordinator::store::Store;
use ordo_coordinator::{ha, service};
use ordo_plumbing::connect::NatsArgs;
use ordo_proto::api::{self, ApiReply};
use ordo_proto::{JobSpec, names};
use ordo_worker::daemon;
use tokio::sync::oneshot;

#[path = "common.rs"]
mod common;

#[path = "big_job.rs"]
mod big_job;
#[path = "nats.rs"]
mod nats;

use common::{job, spawn_limit};
use nats::{
    Nats, connect, makespan, named_threads_cpu, own_thread, pin_to, process_cpu, run_job,
    start_nats, thread_cpu, thread_id, two_cpus, wait_api,
};

/// A coordinator and workers in this process, stopped by dropping their senders.
struct Cluster {
    client: async_nats::Client,
    stops: Vec<oneshot::Sender<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Threads of the coordinator and of each worker, for their CPU time.
    coordinator_tid: Arc<AtomicI32>,
    worker_tids: Vec<Arc<AtomicI32>>,
    /// The coordinator store's commits so far.
    commits: Arc<AtomicU64>,
    _data: tempfile::TempDir,
}

/// CPU time used so far by each component.
#[derive(Clone, Copy)]
struct Cpu {
    broker: Duration,
    coordinator: Duration,
    /// The workers' threads (their tasks' processes are not counted).
    workers: Duration,
    /// The coordinator's store commits, and the messages nats-server received and sent.
    commits: u64,
    msgs: (u64, u64),
}

impl Cpu {
    /// Each component's CPU per task between `self` and `later`, and the rate one core of it
    /// could carry.
    fn print_per_task(self, later: Cpu, n: usize) {
        let per = |a: Duration, b: Duration| (b - a).as_secs_f64() * 1e6 / n as f64;
        let parts = [
            ("nats-server", per(self.broker, later.broker)),
            ("coordinator", per(self.coordinator, later.coordinator)),
            ("worker", per(self.workers, later.workers)),
        ];
        let line: Vec<String> = parts
            .iter()
            .map(|(name, us)| {
                format!(
                    "{name} {us:.0} µs (ceiling {:.0}/s)",
                    1e6 / us.max(f64::MIN_POSITIVE)
                )
            })
            .collect();
        let total: f64 = parts.iter().map(|(_, us)| us).sum();
        println!(
            "  CPU per task: {}; together {total:.0} µs",
            line.join(", ")
        );
        let each = |a: u64, b: u64| b.saturating_sub(a) as f64 / n as f64;
        println!(
            "  per task: {:.2} coordinator commits (fsyncs), nats-server {:.2} messages in and {:.2} out",
            each(self.commits, later.commits),
            each(self.msgs.0, later.msgs.0),
            each(self.msgs.1, later.msgs.1),
        );
    }
}

/// `--ha` for the bench: the coordinator's HA settings (`cluster_ha`).
fn ha_config(dir: &std::path::Path, id: &str) -> ha::Config {
    ha::Config {
        id: id.into(),
        host: "bench".into(),
        ttl: Duration::from_secs(3),
        replicas: 1,
        data_dir: dir.to_path_buf(),
        snapshot_every: 10_000,
        metrics_addr: None,
    }
}

async fn cluster(url: &str, cpu: Option<usize>) -> Cluster {
    cluster_with(url, cpu, false).await
}

/// With `ha`: the coordinator runs as `--ha` does (journal, lease), and a hot standby follows
/// its journal on a thread of its own.
async fn cluster_with(url: &str, cpu: Option<usize>, with_ha: bool) -> Cluster {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let commits = store.commits();
    let (stop, stopped) = oneshot::channel::<()>();
    let coordinator_url = url.to_string();
    let dir = data.path().to_path_buf();
    let coordinator_tid = Arc::new(AtomicI32::new(0));
    let tid = coordinator_tid.clone();
    own_thread("coordinator", service::runtime(), cpu, async move {
        tid.store(thread_id(), Ordering::SeqCst);
        let shutdown = async {
            let _ = stopped.await;
        };
        let mut opts = service::Options::default();
        let mut store = store;
        let mut _held = None;
        if with_ha {
            // The first one takes the lease at once (nothing else runs on this runtime yet).
            let h = ha::Ha::start(
                NatsArgs::with_url(&coordinator_url),
                ha_config(&dir, "active"),
            )
            .expect("ha");
            store = h.standby(store).expect("standby").expect("lease");
            store.set_journal(h.appender());
            opts.ha = Some(h.hooks());
            _held = Some(h);
        }
        let client = connect(&coordinator_url).await;
        service::run(client, store, opts, shutdown)
            .await
            .expect("coordinator");
    });
    if with_ha {
        let standby_dir = tempfile::tempdir().unwrap().keep();
        let url = url.to_string();
        std::thread::spawn(move || {
            pin_to(cpu);
            let store = Store::open(&standby_dir).unwrap();
            let h = ha::Ha::start(NatsArgs::with_url(&url), ha_config(&standby_dir, "standby"))
                .expect("ha");
            // Follows the journal until the process ends.
            let _ = h.standby(store);
        });
    }
    let client = connect(url).await;
    wait_api(&client, 200).await;
    Cluster {
        client,
        stops: vec![stop],
        workers: Vec::new(),
        coordinator_tid,
        worker_tids: Vec::new(),
        commits,
        _data: data,
    }
}

impl Cluster {
    async fn add_worker(&mut self, url: &str, id: &str, slots: u32, cpu: Option<usize>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = daemon::Options {
            id: id.into(),
            host: "bench".into(),
            queues: vec![names::DEFAULT_QUEUE.into()],
            slots,
            cpus: 64.0,
            memory_mb: 1 << 20,
            drain_grace: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            telemetry: None,
            metrics: None,
            guard_token: None,
            workspaces: std::env::temp_dir().join(format!("ordo-bench-ws-{}", std::process::id())),
        };
        self.stops.push(stop);
        let url = url.to_string();
        let tid = Arc::new(AtomicI32::new(0));
        self.worker_tids.push(tid.clone());
        self.workers
            .push(own_thread("worker", daemon::runtime(), cpu, async move {
                tid.store(thread_id(), Ordering::SeqCst);
                let shutdown = async {
                    let _ = stopped.await;
                };
                let client = connect(&url).await;
                daemon::run(client, opts, shutdown).await.expect("worker");
            }));
        // The coordinator counts a worker's slots from its heartbeats.
        let want = self.workers.len();
        for _ in 0..200 {
            let r = self
                .client
                .request(names::api_subject(api::WORKERS), "{}".into())
                .await;
            if let Ok(m) = r
                && let Ok(ApiReply::Ok(list)) =
                    serde_json::from_slice::<ApiReply<Vec<api::WorkerInfo>>>(&m.payload)
                && list.len() >= want
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Capacity is refreshed on the coordinator's housekeeping tick.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }

    async fn stop_workers(&mut self) {
        // Senders 1.. are workers; dropping them drains each worker.
        self.stops.truncate(1);
        self.worker_tids.clear();
        for w in self.workers.drain(..) {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }

    fn cpu(&self, nats: &Nats) -> Cpu {
        Cpu {
            broker: process_cpu(nats.child.id()),
            coordinator: thread_cpu(self.coordinator_tid.load(Ordering::SeqCst)),
            // The workers' threads, and those they spawn processes on.
            workers: self
                .worker_tids
                .iter()
                .map(|t| thread_cpu(t.load(Ordering::SeqCst)))
                .sum::<Duration>()
                + named_threads_cpu(daemon::BLOCKING_THREADS),
            commits: self.commits.load(Ordering::SeqCst),
            msgs: nats.msgs(),
        }
    }

    /// Submits a job and returns its makespan from the coordinator's own records.
    async fn run(&self, spec: JobSpec) -> Duration {
        run_job(&self.client, spec).await
    }
}

fn print_independent(
    setup: &str,
    slots: u32,
    n: usize,
    ours: Duration,
    limit: Duration,
    target: &str,
) {
    println!(
        "distributed independent: {n} `true` tasks, 1 worker × {slots} slots, {setup}: ordo {:.0}/s, spawn limit {:.0}/s: ratio {:.2}{target}",
        n as f64 / ours.as_secs_f64(),
        n as f64 / limit.as_secs_f64(),
        limit.as_secs_f64() / ours.as_secs_f64()
    );
}

fn main() {
    // The big-job case runs its coordinator as this binary in another process.
    if big_job::serve_role() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let only = std::env::var("ORDO_BENCH_ONLY").ok();
    if only.as_deref() == Some("chain") {
        rt.block_on(chain_only());
        return;
    }
    if only.is_none() || only.as_deref() == Some("independent") {
        rt.block_on(bench(only.is_some()));
    }
    if only.as_deref() == Some("independent") {
        return;
    }
    let big: usize = std::env::var("ORDO_BENCH_BIG_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if only.as_deref() != Some("soak") {
        rt.block_on(big_job::run(big, 16, 1.0));
    }
    if std::env::var("ORDO_SOAK").ok().as_deref() == Some("1") {
        rt.block_on(big_job::run(1_000_000, 16, 4.0));
    }
}

/// `ORDO_BENCH_ONLY=chain`: the chain's hop alone (as in `bench`), for profiling.
async fn chain_only() {
    let nats = start_nats(None);
    let mut c = cluster(&nats.url, None).await;
    c.add_worker(&nats.url, "bench-w1", 4, None).await;
    let hops: usize = std::env::var("ORDO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let limit = spawn_limit(hops, 1, "true").await;
    let before = c.cpu(&nats);
    let ours = c.run(job(hops, "true", true)).await;
    let per_hop = (ours.as_secs_f64() - limit.as_secs_f64()) * 1000.0 / hops as f64;
    println!(
        "distributed chain: {hops} `true` tasks: ordo {:.3}s, spawn limit {:.3}s: overhead per hop {per_hop:.3} ms (target <= 1.5 ms)",
        ours.as_secs_f64(),
        limit.as_secs_f64()
    );
    before.print_per_task(c.cpu(&nats), hops);
    c.stop_workers().await;
}

/// `n` independent `true` tasks on the cluster's one worker of `slots`, everything sharing every
/// CPU: the makespan, printed against the spawn limit with each component's CPU per task.
async fn shared_cpus(c: &mut Cluster, nats: &Nats, slots: usize, n: usize) -> Duration {
    let limit = spawn_limit(n, slots, "true").await;
    let before = c.cpu(nats);
    let ours = c.run(job(n, "true", false)).await;
    print_independent(
        "broker, coordinator and tasks sharing every CPU",
        slots as u32,
        n,
        ours,
        limit,
        "",
    );
    before.print_per_task(c.cpu(nats), n);
    ours
}

/// With `independent_only`: the two 10,000-task cases alone.
async fn bench(independent_only: bool) {
    let n: usize = std::env::var("ORDO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let nats = start_nats(None);
    let mut c = cluster(&nats.url, None).await;
    c.add_worker(&nats.url, "bench-w1", 4, None).await;

    let single_independent = shared_cpus(&mut c, &nats, 4, n).await;
    // The same with one worker of 16 slots: results come several at a time.
    c.stop_workers().await;
    c.add_worker(&nats.url, "bench-w16", 16, None).await;
    shared_cpus(&mut c, &nats, 16, n).await;
    c.stop_workers().await;
    c.add_worker(&nats.url, "bench-w1b", 4, None).await;

    if independent_only {
        c.stop_workers().await;
        drop(c);
        drop(nats);
        return independent_pinned(n).await;
    }
    let hops = 1_000;
    let limit = spawn_limit(hops, 1, "true").await;
    let ours = c.run(job(hops, "true", true)).await;
    let per_hop = (ours.as_secs_f64() - limit.as_secs_f64()) * 1000.0 / hops as f64;
    let (single_chain, chain_limit) = (ours, limit);
    println!(
        "distributed chain: {hops} `true` tasks: ordo {:.3}s, spawn limit {:.3}s: overhead per hop {per_hop:.3} ms (target <= 1.5 ms)",
        ours.as_secs_f64(),
        limit.as_secs_f64()
    );

    c.stop_workers().await;
    c.add_worker(&nats.url, "bench-s1", 20, None).await;
    let one = c.run(job(400, "sleep 0.5", false)).await;
    c.add_worker(&nats.url, "bench-s2", 20, None).await;
    let two = c.run(job(400, "sleep 0.5", false)).await;
    println!(
        "distributed scale-out: 400 `sleep 0.5` tasks: 1 worker × 20 slots {:.2}s (ideal 10.0s), 2 workers {:.2}s (ideal 5.0s): speedup {:.2} (target ≈ 2)",
        one.as_secs_f64(),
        two.as_secs_f64(),
        one.as_secs_f64() / two.as_secs_f64()
    );
    c.stop_workers().await;
    drop(c);
    drop(nats);

    // The cost of --ha: the same two runs with a journaling coordinator and a hot standby.
    let nats = start_nats(None);
    let mut c = cluster_with(&nats.url, None, true).await;
    c.add_worker(&nats.url, "bench-h1", 4, None).await;
    let ours = c.run(job(n, "true", false)).await;
    println!(
        "distributed --ha: {n} `true` tasks, 1 worker × 4 slots, one standby: ordo {:.0}/s (single-node {:.0}/s above: {:+.0}%)",
        n as f64 / ours.as_secs_f64(),
        n as f64 / single_independent.as_secs_f64(),
        (single_independent.as_secs_f64() / ours.as_secs_f64() - 1.0) * 100.0
    );
    let ha_chain = c.run(job(hops, "true", true)).await;
    let ha_hop = (ha_chain.as_secs_f64() - chain_limit.as_secs_f64()) * 1000.0 / hops as f64;
    println!(
        "distributed --ha chain: {hops} `true` tasks: ordo {:.3}s (single-node {:.3}s): overhead per hop {ha_hop:.3} ms (single-node {per_hop:.3} ms)",
        ha_chain.as_secs_f64(),
        single_chain.as_secs_f64(),
    );
    c.stop_workers().await;
    drop(c);
    drop(nats);
    independent_pinned(n).await;
}

/// The 10,000 `true` tasks with nats-server and the coordinator on one CPU, the worker and its
/// tasks on the other.
async fn independent_pinned(n: usize) {
    let Some((worker_cpu, broker_cpu)) = two_cpus() else {
        println!("distributed independent, broker on its own CPU: skipped (one CPU)");
        return;
    };
    // One CPU for nats-server and the coordinator; the other for the worker and every task.
    let (broker, tasks) = (Some(broker_cpu), Some(worker_cpu));
    let nats = start_nats(broker);
    let mut c = cluster(&nats.url, broker).await;
    c.add_worker(&nats.url, "bench-p1", 4, tasks).await;
    let limit = std::thread::spawn(move || {
        // The same baseline as above (a multi-threaded runtime), its threads on the tasks' CPU.
        pin_to(tasks);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(spawn_limit(n, 4, "true"))
    })
    .join()
    .unwrap();
    let before = c.cpu(&nats);
    let ours = c.run(job(n, "true", false)).await;
    print_independent(
        "broker and coordinator on one CPU, worker and tasks on another (limit: that CPU's)",
        4,
        n,
        ours,
        limit,
        " (target >= 0.8)",
    );
    before.print_per_task(c.cpu(&nats), n);
    c.stop_workers().await;
}
