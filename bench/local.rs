//! Local-runner benchmarks (DESIGN §9), each against baselines measured in the same run:
//!
//! - 10,000 independent `true` tasks, 4 slots, vs the spawn limit (tokio spawning the same
//!   `sh -c true` with 4 in flight, capturing output) and vs `xargs -P4`;
//! - a 1,000-task chain of `true`: overhead per hop beyond the spawn time (1 in flight);
//! - 200 tasks of `sleep 0.2` on 40 slots: makespan vs the 1.0 s ideal;
//! - the seed example (`sleep 2` ∥ `sleep 1`) in parallel and sequential mode.
//!
//! Run: `cargo bench --workspace --bench local` (ORDO_BENCH_N scales the 10,000).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo::progress::Quiet;
use ordo::run::{RunOptions, run};
use ordo_coordinator::engine::JobState;
use ordo_proto::{ExecutionMode, JobSpec, TaskName, TaskSpec, validate::validate};
use tokio::sync::Semaphore;

fn job(n: usize, command: &str, chain: bool) -> JobSpec {
    let tasks = (0..n)
        .map(|i| {
            let mut t = TaskSpec::shell(&format!("t{i}"), command);
            if chain && i > 0 {
                t.depends_on = vec![TaskName::new(format!("t{}", i - 1)).unwrap()];
            }
            t
        })
        .collect();
    JobSpec {
        name: "bench".into(),
        tasks,
        ..Default::default()
    }
}

async fn ordo_run(spec: JobSpec, workers: u32) -> Duration {
    let dag = validate(&spec).expect("valid");
    let opts = RunOptions {
        workers,
        default_mode: ExecutionMode::Parallel,
        max_parallel: None,
        state_dir: None,
        source: "bench".into(),
        telemetry: None,
    };
    let start = Instant::now();
    let report = run(spec, dag, opts, &mut Quiet, std::future::pending())
        .await
        .expect("run");
    let took = start.elapsed();
    assert_eq!(report.job.state, JobState::Succeeded);
    took
}

/// The physical limit: spawn `sh -c CMD` n times with `in_flight` at once, capturing output.
async fn spawn_limit(n: usize, in_flight: usize, command: &str) -> Duration {
    let sem = Arc::new(Semaphore::new(in_flight));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let command = command.to_string();
        handles.push(tokio::spawn(async move {
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .stdin(Stdio::null())
                .output()
                .await
                .expect("spawn");
            drop(permit);
            assert!(out.status.success());
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

fn xargs(n: usize, parallel: usize) -> Duration {
    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "yes true | head -n {n} | xargs -P{parallel} -I{{}} sh -c {{}}"
        ))
        .status()
        .expect("xargs");
    assert!(status.success());
    start.elapsed()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("ORDO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);

    // 1. Independent tasks, 4 in flight.
    let limit = spawn_limit(n, 4, "true").await;
    let xa = xargs(n, 4);
    let ours = ordo_run(job(n, "true", false), 4).await;
    println!(
        "independent: {n} `true` tasks, 4 slots: ordo {:.0}/s, spawn limit {:.0}/s, xargs -P4 {:.0}/s",
        rate(n, ours),
        rate(n, limit),
        rate(n, xa)
    );
    println!(
        "  ordo / spawn limit = {:.2} (target >= 0.9); ordo / xargs = {:.2} (target > 1)",
        limit.as_secs_f64() / ours.as_secs_f64(),
        xa.as_secs_f64() / ours.as_secs_f64()
    );

    // 2. A chain: one in flight, every hop waits for the previous result.
    let hops = 1_000;
    let limit = spawn_limit(hops, 1, "true").await;
    let ours = ordo_run(job(hops, "true", true), 4).await;
    let per_hop_ms = (ours.as_secs_f64() - limit.as_secs_f64()) * 1000.0 / hops as f64;
    println!(
        "chain: {hops} `true` tasks: ordo {:.3}s, spawn limit {:.3}s: overhead per hop {per_hop_ms:.3} ms (target <= 0.3 ms), ratio {:.2}",
        ours.as_secs_f64(),
        limit.as_secs_f64(),
        limit.as_secs_f64() / ours.as_secs_f64()
    );

    // 3. Sleeps: 200 × 0.2 s on 40 slots; ideal makespan 5 rounds = 1.0 s.
    let limit = spawn_limit(200, 40, "sleep 0.2").await;
    let ours = ordo_run(job(200, "sleep 0.2", false), 40).await;
    println!(
        "sleeps: 200 `sleep 0.2` tasks, 40 slots: makespan {:.3}s vs ideal 1.000s: {:.3}x (target <= 1.1); spawn limit {:.3}s",
        ours.as_secs_f64(),
        ours.as_secs_f64(),
        limit.as_secs_f64()
    );

    // 4. The seed example in both modes.
    let mut seed = JobSpec {
        name: "seed".into(),
        tasks: vec![
            TaskSpec::shell("subtask-1", "sleep 2 && echo 'Task 1 complete'"),
            TaskSpec::shell("subtask-2", "sleep 1 && echo 'Task 2 complete'"),
        ],
        ..Default::default()
    };
    let par = ordo_run(seed.clone(), 4).await;
    seed.settings.execution_mode = Some(ExecutionMode::Sequential);
    let seq = ordo_run(seed, 4).await;
    println!(
        "seed example: parallel {:.2}s (ideal 2.0s, {:.3}x), sequential {:.2}s (ideal 3.0s, {:.3}x)",
        par.as_secs_f64(),
        par.as_secs_f64() / 2.0,
        seq.as_secs_f64(),
        seq.as_secs_f64() / 3.0
    );
}
