//! The dashboard's page of a 10,000-task job (docs/design.md, "Targets": served < 300 ms, usable in
//! Chromium < 2 s), against baselines measured in the same run:
//!
//! - served: `GET /jobs/ID` from `ordo ui`'s server (in this process, over TCP) against the
//!   same job's status as JSON from the same job client (what `ordo status --output json`
//!   computes), median of several requests each;
//! - usable: `chromium --headless --dump-dom` of the page (load, parse, render, scripts run)
//!   against `--dump-dom about:blank` (starting the browser alone), when Chromium is there.
//!
//! The job is run first with the local runner into a state directory: 100 levels of 100
//! `true` tasks, each depending on up to three tasks of the level before.
//!
//! Run: `cargo bench --workspace --bench dashboard` (ORDO_BENCH_TASKS overrides 10,000).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo::args::{RunArgs, Target};
use ordo::jobs::{Jobs, Open};
use ordo::progress::Quiet;
use ordo::run::{RunOptions, run};
use ordo_proto::{ExecutionMode, JobSpec, JobState, TaskName, TaskSpec, validate::validate};

const TARGET_SERVED_MS: f64 = 300.0;
const TARGET_USABLE_MS: f64 = 2000.0;
const ROUNDS: usize = 7;

fn layered(n: usize) -> JobSpec {
    let width = (n / 100).max(1);
    let tasks = (0..n)
        .map(|i| {
            let mut t = TaskSpec::shell(&format!("t{i}"), "true");
            // Declared even when empty: the job is parallel.
            t.depends_on.declare();
            if i >= width {
                let base = i - width;
                let mut deps = vec![base, base.saturating_sub(1), base.saturating_sub(7)];
                deps.sort_unstable();
                deps.dedup();
                t.depends_on.extend(
                    deps.into_iter()
                        .map(|d| TaskName::new(format!("t{d}")).unwrap()),
                );
            }
            t
        })
        .collect();
    JobSpec {
        name: "dashboard-bench".into(),
        tasks,
        ..Default::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `GET path` over a fresh connection; the time to the whole response and its size.
fn get(addr: &str, path: &str) -> (Duration, usize) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).unwrap();
    let took = start.elapsed();
    assert!(
        body.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    (took, body.len())
}

fn chromium_dump(url: &str) -> Option<Duration> {
    let profile = tempfile::tempdir().ok()?;
    let start = Instant::now();
    let out = std::process::Command::new(std::env::var("CHROMIUM").unwrap_or("chromium".into()))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .ok()?;
    let took = start.elapsed();
    (out.status.success() && !out.stdout.is_empty()).then_some(took)
}

fn main() {
    let n: usize = std::env::var("ORDO_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");

    runtime.block_on(async {
        let spec = layered(n);
        validate(&spec).expect("valid");
        let opts = RunOptions {
            workers: 4,
            default_mode: Some(ExecutionMode::Parallel),
            max_parallel: None,
            state_dir: Some(state.clone()),
            source: "bench".into(),
            telemetry: None,
        };
        let start = Instant::now();
        let store = ordo_coordinator::store::Store::in_memory().expect("store");
        let report = run(spec, opts, store, &mut Quiet, std::future::pending())
            .await
            .expect("run");
        assert_eq!(report.job.state, JobState::Succeeded);
        let job = report.job.id;
        drop(report);
        println!(
            "dashboard: a {n}-task job (100 levels) run into a state directory in {:.1} s",
            start.elapsed().as_secs_f64()
        );

        let target = Target::Local {
            dir: state.clone(),
            run: RunArgs::default(),
        };
        let jobs = Arc::new(Jobs::open(&target, Open::Existing).await.expect("open"));

        // Baseline: the job's status as JSON, from the same client.
        let mut base = Vec::new();
        let mut json_bytes = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let status = jobs.status(job).await.expect("status");
            json_bytes = serde_json::to_string(&status).unwrap().len();
            base.push(t.elapsed());
        }
        let base = median(base);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(ordo::ui::run(
            listener,
            jobs.clone(),
            ordo::ui::Options::default(),
            std::future::pending(),
        ));
        let (page, task_page, list) = tokio::task::spawn_blocking(move || {
            let mut page = Vec::new();
            let mut size = 0;
            for _ in 0..ROUNDS {
                let (d, s) = get(&addr, &format!("/jobs/{job}"));
                page.push(d);
                size = s;
            }
            let task: Vec<Duration> = (0..ROUNDS)
                .map(|_| get(&addr, &format!("/jobs/{job}/tasks/5000")).0)
                .collect();
            let list: Vec<Duration> = (0..ROUNDS).map(|_| get(&addr, "/").0).collect();
            ((median(page), size), median(task), (median(list), addr))
        })
        .await
        .unwrap();
        println!(
            "  baseline: status as JSON (`ordo status --output json`'s work): {:.1} ms, {} KB",
            ms(base),
            json_bytes / 1024
        );
        println!(
            "  served:   GET /jobs/ID: {:.1} ms, {} KB ({:.2}x the baseline; target < {TARGET_SERVED_MS} ms: {})",
            ms(page.0),
            page.1 / 1024,
            ms(page.0) / ms(base).max(0.001),
            if ms(page.0) < TARGET_SERVED_MS { "met" } else { "MISSED" }
        );
        println!(
            "            GET /jobs/ID/tasks/5000: {:.1} ms; GET /: {:.1} ms",
            ms(task_page),
            ms(list.0)
        );

        let url = format!("http://{}/jobs/{job}", list.1);
        let usable = tokio::task::spawn_blocking(move || {
            let blank: Vec<Duration> = (0..3).filter_map(|_| chromium_dump("about:blank")).collect();
            let page: Vec<Duration> = (0..3).filter_map(|_| chromium_dump(&url)).collect();
            (!blank.is_empty() && !page.is_empty()).then(|| (median(blank), median(page)))
        })
        .await
        .unwrap();
        match usable {
            Some((blank, page)) => {
                let extra = page.saturating_sub(blank);
                println!(
                    "  usable:   chromium --dump-dom of the page {:.0} ms vs about:blank {:.0} ms: \
                     {:.0} ms for the page (target < {TARGET_USABLE_MS} ms: {})",
                    ms(page),
                    ms(blank),
                    ms(extra),
                    if ms(extra) < TARGET_USABLE_MS { "met" } else { "MISSED" }
                );
            }
            None => println!("  usable:   skipped (chromium not found; scripts/test installs it)"),
        }
    });
    runtime.shutdown_background();
}
