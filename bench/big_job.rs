//! The large-job case of the distributed bench (docs/design.md, "Targets", issue 18): a
//! 100,000-task spec (about 7 MB of TOML, over NATS's 1 MiB max_payload) submitted with the real
//! `ordo` binary to a coordinator in a process of its own (this bench binary run again with
//! `ORDO_BENCH_ROLE=coordinator`, so /proc gives its own peak RSS), run to the end by one
//! in-process worker. Printed, each with the baseline measured in the same run:
//!
//! - accept time (`ordo submit`, target < 3 s) vs `ordo validate` of the same file (the
//!   client-side floor: reading, parsing and validating the spec);
//! - `ordo status JOB` latency while it runs (target < 100 ms) vs `ordo workers` (a process
//!   start, a connection and the cheapest request), and the API round trip alone;
//! - the coordinator's peak RSS (VmHWM, target < 1 GiB) and per task, vs its idle peak;
//! - the run to the end (tasks/s).
//!
//! `ORDO_SOAK=1` adds 1,000,000 tasks (RSS target < 4 GiB); `ORDO_BENCH_BIG_N` scales the
//! 100,000.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ordo_coordinator::service;
use ordo_coordinator::store::Store;
use ordo_proto::api::{self, ApiReply, JobStatus};
use ordo_proto::{JobId, names};
use tokio::sync::oneshot;

use super::{Cluster, connect, makespan, start_nats, wait_api};

/// Environment of the coordinator role: the NATS URL and the data directory.
const ROLE: &str = "ORDO_BENCH_ROLE";
const ROLE_NATS: &str = "ORDO_BENCH_NATS";
const ROLE_DATA: &str = "ORDO_BENCH_DATA";

/// In the coordinator role, runs the coordinator until stdin closes and returns true.
pub fn serve_role() -> bool {
    if std::env::var(ROLE).ok().as_deref() != Some("coordinator") {
        return false;
    }
    let url = std::env::var(ROLE_NATS).expect("ORDO_BENCH_NATS");
    let data = std::env::var(ROLE_DATA).expect("ORDO_BENCH_DATA");
    let store = Store::open(Path::new(&data)).expect("store");
    let runtime = service::runtime().expect("runtime");
    runtime.block_on(async move {
        // The parent holds our stdin: its end (or its death) stops us.
        let shutdown = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            })
            .await;
        };
        let client = connect(&url).await;
        service::run(client, store, service::Options::default(), shutdown)
            .await
            .expect("coordinator");
    });
    true
}

/// A coordinator process of this binary.
struct Coordinator {
    child: Child,
    _data: tempfile::TempDir,
}

impl Coordinator {
    fn start(url: &str) -> Coordinator {
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "coordinator")
            .env(ROLE_NATS, url)
            .env(ROLE_DATA, data.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coordinator process");
        Coordinator { child, _data: data }
    }

    /// VmHWM (peak resident set) in bytes.
    fn peak_rss(&self) -> u64 {
        self.proc_status("VmHWM:")
    }

    /// VmRSS (resident set now) in bytes.
    fn rss(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spec of `n` independent `true` tasks, about 70 bytes of TOML each (7 MB for 100,000, the
/// size issue 18 reports); without descriptions (44 bytes each) beyond 500,000, so 1,000,000
/// stay under the 64 MiB spec limit.
fn write_spec(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::with_capacity(n * 80);
    // Independent tasks meant to run at once: the job says so.
    text.push_str("name = \"big\"\n[settings]\nexecution_mode = \"parallel\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[tasks]]\nname = \"t{i:07}\"\ncommand = \"true\"\n"
        ));
        if n <= 500_000 {
            text.push_str(&format!("description = \"task {i}\"\n"));
        }
    }
    let path = dir.join("big.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the `ordo` binary; its wall time and stdout.
fn ordo(args: &[&str]) -> (Duration, String) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ordo");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "ordo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One page of status through the API, as `ordo status` asks for it.
async fn page(client: &async_nats::Client, job: JobId) -> (Duration, JobStatus) {
    let body = serde_json::to_vec(&api::StatusRequest::page(
        job,
        1,
        api::DEFAULT_PAGE_SIZE,
        Vec::new(),
    ))
    .unwrap();
    let start = Instant::now();
    let r = client
        .request(names::api_subject(api::STATUS), body.into())
        .await
        .unwrap();
    let took = start.elapsed();
    match serde_json::from_slice::<ApiReply<JobStatus>>(&r.payload) {
        Ok(ApiReply::Ok(s)) => (took, s),
        other => panic!("status failed: {other:?}"),
    }
}

/// The large-job case with `n` tasks; `rss_target` in GiB.
pub async fn run(n: usize, slots: u32, rss_target: f64) {
    let nats = start_nats(None);
    let coordinator = Coordinator::start(&nats.url);
    let client = connect(&nats.url).await;
    let (stop, _) = oneshot::channel::<()>();
    let mut c = Cluster {
        client: client.clone(),
        stops: vec![stop],
        workers: Vec::new(),
        // The coordinator is a process of its own here.
        coordinator_tid: Default::default(),
        worker_tids: Vec::new(),
        commits: Default::default(),
        _data: tempfile::tempdir().unwrap(),
    };
    wait_api(&client, 400).await;
    c.add_worker(&nats.url, "bench-big", slots, None).await;
    let idle_rss = coordinator.peak_rss();

    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), n);
    let spec_bytes = std::fs::metadata(&spec).unwrap().len();
    let spec = spec.to_string_lossy().into_owned();
    let url = nats.url.clone();
    let (validate, _) = tokio::task::spawn_blocking({
        let spec = spec.clone();
        move || ordo(&["validate", &spec])
    })
    .await
    .unwrap();
    let (accept, out) = tokio::task::spawn_blocking({
        let (spec, url) = (spec.clone(), url.clone());
        move || ordo(&["submit", &spec, "--nats", &url])
    })
    .await
    .unwrap();
    let job: JobId = out.trim().parse().expect("a job id");
    let accepted_rss = coordinator.rss();
    println!(
        "distributed big job: {n} tasks ({:.1} MB of TOML): accepted in {:.2}s{}; `ordo validate` of it {:.2}s: ratio {:.2}",
        spec_bytes as f64 / 1e6,
        accept.as_secs_f64(),
        if n <= 100_000 { " (target < 3 s)" } else { "" },
        validate.as_secs_f64(),
        accept.as_secs_f64() / validate.as_secs_f64()
    );

    // Status while it runs: the CLI (process start included) and the API round trip alone.
    let (mut cli, mut rtt, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut json = Vec::new();
    let started = Instant::now();
    let end = loop {
        let (took, s) = page(&client, job).await;
        if let Some(took) = makespan(&s.summary, "big job") {
            break took;
        }
        if cli.len() < 20 && s.summary.succeeded > 0 {
            rtt.push(took);
            let (job, url) = (job.to_string(), url.clone());
            let (status, as_json, workers) = tokio::task::spawn_blocking(move || {
                (
                    ordo(&["status", &job, "--nats", &url]).0,
                    ordo(&["status", &job, "--nats", &url, "--output", "json"]).0,
                    ordo(&["workers", "--nats", &url]).0,
                )
            })
            .await
            .unwrap();
            cli.push(status);
            json.push(as_json);
            floor.push(workers);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "the big job did not end within an hour"
        );
    };
    let (cli_max, cli) = (cli.iter().max().copied().unwrap_or_default(), median(cli));
    let (json_max, json) = (json.iter().max().copied().unwrap_or_default(), median(json));
    println!(
        "distributed big job: `ordo status` while it runs: median {:.1} ms, max {:.1} ms (`--output json`: median {:.1} ms, max {:.1} ms){}; `ordo workers` {:.1} ms: ratio {:.2}; the API round trip alone {:.1} ms",
        cli.as_secs_f64() * 1e3,
        cli_max.as_secs_f64() * 1e3,
        json.as_secs_f64() * 1e3,
        json_max.as_secs_f64() * 1e3,
        if n <= 100_000 {
            " (target < 100 ms)"
        } else {
            ""
        },
        median(floor.clone()).as_secs_f64() * 1e3,
        cli.as_secs_f64() / median(floor).as_secs_f64().max(1e-9),
        median(rtt).as_secs_f64() * 1e3,
    );
    let peak = coordinator.peak_rss();
    println!(
        "distributed big job: coordinator peak RSS {:.0} MiB (target < {rss_target} GiB), idle {:.0} MiB: {:.2} KiB per task; {:.0} MiB once accepted, {:.0} MiB at the end",
        mib(peak),
        mib(idle_rss),
        peak.saturating_sub(idle_rss) as f64 / 1024.0 / n as f64,
        mib(accepted_rss),
        mib(coordinator.rss()),
    );
    println!(
        "distributed big job: ran to the end in {:.1}s, {:.0} tasks/s (1 worker × {slots} slots)",
        end.as_secs_f64(),
        n as f64 / end.as_secs_f64()
    );
    // An ended job's page: its states and spec come from the store.
    let (job_text, url2) = (job.to_string(), url.clone());
    let ended = tokio::task::spawn_blocking(move || {
        (0..5)
            .map(|_| ordo(&["status", &job_text, "--nats", &url2]).0)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    println!(
        "distributed big job: `ordo status` once it ended: median {:.1} ms",
        median(ended).as_secs_f64() * 1e3
    );
    c.stop_workers().await;
    drop(coordinator);
}
