//! Quality-gate benchmark (docs/design.md, "Quality gates" and "Targets"): ordo's own overhead
//! per stage, beyond the stage's own process. 20 prompt tasks of the stub Claude Code
//! (`examples/stub-agent`) in git worktrees, one at a time, through the local runner:
//!
//! - with a pipeline of three stages: `review` (an agent stage: the stub answering a `pass`
//!   verdict), `lint` (a command stage: `true`) and `sign-off` (an approval decided by its
//!   timeout of 1 ms, `on_timeout = "approve"`: the approval path without a person);
//! - the same job without stages, measured in the same run;
//! - the stages' own processes (the stub reviewer and `true`, 20 times each), spawned directly.
//!
//! Overhead per stage = (with - without - own processes) / (20 tasks x 3 stages); target <= 100
//! ms. Run: `cargo bench --workspace --bench stages` (ORDO_BENCH_ROUNDS: runs per median).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ordo_proto::gates::{OnTimeout, StageKind, StageSpec};
use ordo_proto::{
    AgentKind, Dur, ExecutionMode, JobSpec, JobState, TaskName, TaskSpec, WorkspaceMode,
};

#[path = "local_jobs.rs"]
mod local_jobs;
use local_jobs::median;

const TASKS: usize = 20;
const STAGES: usize = 3;
const TARGET: Duration = Duration::from_millis(100);
/// What the stub reviewer is asked: it ends its answer with a `pass` verdict.
const REVIEW: &str = "Review {task}.\nanswer: {\"verdict\": \"pass\", \"findings\": []}";

fn stub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/stub-agent/claude")
        .canonicalize()
        .expect("the stub agent")
}

fn spec(dir: &Path, state: &Path, stages: bool) -> JobSpec {
    let tasks = (0..TASKS)
        .map(|i| TaskSpec {
            prompt: Some(format!("write t{i}.txt: {i}")),
            ..TaskSpec::empty(TaskName::new(format!("t{i}")).unwrap())
        })
        .collect();
    let mut spec = JobSpec {
        name: "bench-stages".into(),
        tasks,
        ..Default::default()
    };
    if stages {
        spec.stages = vec![
            StageSpec {
                name: "review".into(),
                kind: Some(StageKind::Agent),
                prompt: Some(REVIEW.into()),
                read_only: true,
                ..StageSpec::default()
            },
            StageSpec {
                name: "lint".into(),
                kind: Some(StageKind::Command),
                command: Some("true".into()),
                ..StageSpec::default()
            },
            StageSpec {
                name: "sign-off".into(),
                kind: Some(StageKind::Approval),
                timeout: Some(Dur(Duration::from_millis(1))),
                on_timeout: Some(OnTimeout::Approve),
                ..StageSpec::default()
            },
        ];
    }
    let s = &mut spec.settings;
    s.agent = Some(AgentKind::Claude);
    s.agent_command = Some(vec![stub().display().to_string()]);
    s.env
        .insert("STUB_STATE".into(), state.display().to_string());
    s.working_directory = Some(dir.display().to_string());
    s.workspace = Some(WorkspaceMode::Worktree);
    s.repository = Some(dir.display().to_string());
    spec
}

/// One run of the job in a fresh repository, one task at a time, settling included; it must
/// succeed.
async fn measure(stages: bool) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let dir = local_jobs::sandbox(tmp.path(), &[("README.md", "# bench\n")], true);
    let spec = spec(&dir, tmp.path(), stages);
    let (took, report) = local_jobs::run_timed(spec, 1, ExecutionMode::Sequential).await;
    assert_eq!(
        report.job.state,
        JobState::Succeeded,
        "{:?}",
        report.attempts
    );
    if stages {
        let records: usize = report.attempts.iter().map(|a| a.stages.len()).sum();
        assert_eq!(records, TASKS * 2, "review and lint ran for every task");
    }
    took
}

/// The stages' own processes, spawned directly: the stub reviewer and `true`, once per task.
fn own_processes() -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    for i in 0..TASKS {
        let out = Command::new(stub())
            .args(["-p", "--output-format", "json"])
            .arg(REVIEW.replace("{task}", &format!("t{i}")))
            .env("STUB_STATE", tmp.path())
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .output()
            .expect("stub");
        assert!(out.status.success());
        let ok = Command::new("sh").args(["-c", "true"]).status().unwrap();
        assert!(ok.success());
    }
    start.elapsed()
}

async fn bench() {
    let rounds: usize = std::env::var("ORDO_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (mut with, mut without, mut own) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        without.push(measure(false).await);
        with.push(measure(true).await);
        own.push(own_processes());
    }
    let (with, without, own) = (median(with), median(without), median(own));
    let overhead = with.saturating_sub(without).saturating_sub(own) / (TASKS * STAGES) as u32;
    println!("{TASKS} prompt tasks in worktrees, one at a time (median of {rounds} runs):");
    println!(
        "  without stages                      {:>8.2} s",
        without.as_secs_f64()
    );
    println!(
        "  with review + lint + sign-off       {:>8.2} s",
        with.as_secs_f64()
    );
    println!(
        "  the stages' own processes           {:>8.2} s",
        own.as_secs_f64()
    );
    println!(
        "ordo's overhead per stage: {:.1} ms (target <= {} ms) {}",
        overhead.as_secs_f64() * 1000.0,
        TARGET.as_millis(),
        if overhead <= TARGET { "ok" } else { "MISSED" }
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}
