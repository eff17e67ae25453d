//! Local-runner benchmarks (docs/design.md, "Targets"), each against baselines measured in the same
//! run:
//!
//! - 10,000 independent `true` tasks, 4 slots, vs the spawn limit (tokio spawning the same
//!   `sh -c true` with 4 in flight, capturing output) and vs `xargs -P4`;
//! - a 1,000-task chain of `true`: overhead per hop beyond the spawn time (1 in flight);
//! - 200 tasks of `sleep 0.2` on 40 slots: makespan vs the 1.0 s ideal;
//! - the seed example (`sleep 2` ∥ `sleep 1`) in parallel and sequential mode.
//!
//! Run: `cargo bench --workspace --bench local` (ORDO_BENCH_N scales the 10,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo::progress::Quiet;
use ordo::run::{RunOptions, run};
use ordo_plumbing::telemetry::Telemetry;
use ordo_proto::{ExecutionMode, JobSpec, JobState, TaskSpec, validate::validate};
#[path = "common.rs"]
mod common;

use common::{job, rate, spawn_limit};

async fn ordo_run(spec: JobSpec, workers: u32) -> Duration {
    ordo_run_traced(spec, workers, None).await
}

async fn ordo_run_traced(
    spec: JobSpec,
    workers: u32,
    telemetry: Option<Arc<Telemetry>>,
) -> Duration {
    validate(&spec).expect("valid");
    let opts = RunOptions {
        workers,
        default_mode: Some(ExecutionMode::Parallel),
        max_parallel: None,
        state_dir: None,
        source: "bench".into(),
        telemetry,
    };
    let start = Instant::now();
    let store = ordo_coordinator::store::Store::in_memory().expect("store");
    let report = run(spec, opts, store, &mut Quiet, std::future::pending())
        .await
        .expect("run");
    let took = start.elapsed();
    assert_eq!(report.job.state, JobState::Succeeded);
    took
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

/// An OTLP/HTTP endpoint that accepts every export and discards it, so the traced run pays for
/// building, batching, encoding and sending spans but not for a collector.
async fn sink() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let mut pending = Vec::new();
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // Answer each complete request (headers + content-length body).
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if pending.len() < end + 4 + len {
                            break;
                        }
                        pending.drain(..end + 4 + len);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if sock.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn main() {
    // Set before any thread exists: the traced run reads the standard OTLP variables.
    // SAFETY: single-threaded here; nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
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

    // 1b. The same with tracing on, exporting to a sink over OTLP/HTTP.
    let endpoint = sink().await;
    // SAFETY: the exporter reads the endpoint once, below; the runtime's threads do not read
    // the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    }
    let tel = Telemetry::from_env("ordo-bench")
        .expect("exporter")
        .map(Arc::new);
    unsafe {
        std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    }
    let untraced = ordo_run(job(n, "true", false), 4).await;
    let traced = ordo_run_traced(job(n, "true", false), 4, tel).await;
    println!(
        "tracing: {n} tasks with an OTLP exporter {:.0}/s vs {:.0}/s without: cost {:.1}% (target <= 10%)",
        rate(n, traced),
        rate(n, untraced),
        (traced.as_secs_f64() / untraced.as_secs_f64() - 1.0) * 100.0
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
