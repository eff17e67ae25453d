//! Adaptive-pool benchmark (docs/design.md, adaptive pools): 60 agent runs of 0.5 s by the stub
//! Claude Code of `examples/stub-agent`, whose provider refuses a run beyond 3 at once (429,
//! Retry-After: 1), through the local runner:
//!
//! - a pool of 8 (adaptive) against 3 slots and no pool (the best fixed size, measured in the
//!   same run): throughput target >= 0.9x, runs refused <= 10 % of all runs;
//! - 8 slots and no pool (what a fixed pool of 8 did before), printed beside them.
//!
//! Run: `cargo bench --workspace --bench pools`.

use std::path::Path;
use std::time::Duration;

use ordo_proto::{AgentKind, ExecutionMode, JobSpec, JobState, TaskName, TaskSpec};

#[path = "local_jobs.rs"]
mod local_jobs;

const RUNS: usize = 60;
/// The stub provider's limit of runs at once.
const CAP: &str = "3";
const THROUGHPUT_TARGET: f64 = 0.9;
const REFUSED_TARGET: f64 = 0.10;

/// `RUNS` prompt tasks of 0.5 s; with `pool`, all in a pool of that size.
fn spec(dir: &Path, pool: Option<u32>) -> JobSpec {
    let tasks = (0..RUNS)
        .map(|i| TaskSpec {
            prompt: Some("sleep 0.5".into()),
            ..TaskSpec::empty(TaskName::new(format!("t{i}")).unwrap())
        })
        .collect();
    let mut spec = JobSpec {
        name: "bench-pools".into(),
        tasks,
        ..Default::default()
    };
    let stub = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stub-agent/claude");
    let s = &mut spec.settings;
    s.agent = Some(AgentKind::Claude);
    s.agent_command = Some(vec![stub.display().to_string()]);
    for (k, v) in [
        ("STUB_MAX_IN_FLIGHT", CAP.to_string()),
        (
            "STUB_IN_FLIGHT",
            dir.join("in-flight").display().to_string(),
        ),
        ("STUB_STATE", dir.display().to_string()),
    ] {
        s.env.insert(k.into(), v);
    }
    if let Some(size) = pool {
        s.pools.insert("claude".into(), size);
    }
    spec
}

/// Runs the job on `slots`: its makespan, the runs refused, and whether every task succeeded.
async fn measure(slots: u32, pool: Option<u32>) -> (Duration, usize, bool) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), pool);
    let (took, report) = local_jobs::run_timed(spec, slots, ExecutionMode::Parallel).await;
    let refused = report
        .attempts
        .iter()
        .filter(|r| r.agent.as_ref().is_some_and(|a| a.rate_limited.is_some()))
        .count();
    (took, refused, report.job.state == JobState::Succeeded)
}

async fn bench() {
    let line = |what: &str, (took, refused, ok): (Duration, usize, bool)| {
        let rate = RUNS as f64 / took.as_secs_f64();
        println!(
            "  {what:<26} {:>6.2} s  {rate:>5.2} runs/s  refused {refused:>3} ({:>4.1} %){}",
            took.as_secs_f64(),
            100.0 * refused as f64 / (RUNS + refused) as f64,
            if ok { "" } else { "  (job failed)" }
        );
        rate
    };
    println!("{RUNS} agent runs of 0.5 s, provider limit {CAP} at once:");
    let adaptive = measure(8, Some(8)).await;
    let fixed3 = measure(3, None).await;
    let fixed8 = measure(8, None).await;
    let a = line("adaptive pool of 8", adaptive);
    let f = line("fixed 3 (best fixed size)", fixed3);
    line("fixed 8 (before)", fixed8);
    let ratio = a / f;
    let refused = adaptive.1 as f64 / (RUNS + adaptive.1) as f64;
    println!(
        "throughput adaptive / fixed 3: {ratio:.2}x (target >= {THROUGHPUT_TARGET}x) {}",
        if ratio >= THROUGHPUT_TARGET {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!(
        "refused: {:.1} % of all runs (target <= {:.0} %) {}",
        100.0 * refused,
        100.0 * REFUSED_TARGET,
        if refused <= REFUSED_TARGET && adaptive.2 {
            "ok"
        } else {
            "MISSED"
        }
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}
