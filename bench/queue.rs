//! Integration-queue benchmark (docs/design.md, "Integration queue: batches" and "Targets"):
//! what batching the integration verify buys when it is the bottleneck. 24 command tasks of
//! 1 s in 3 levels of 8 (each task of a level depends on two of the level before), an
//! integration verify of 1 s, 4 slots, git worktrees in a fresh repository per run:
//!
//! - one task per integration (`integration.batch = 1`), measured in the same run as
//! - batches of up to 8 (`integration.batch = 8`: a level's 8 tasks can share an integration),
//! - batches with speculation (`speculate = "verified"`: a level starts on the work of the
//!   level before as soon as it passed its verify, before it is integrated),
//!
//! side by side with the ideal (24 x 1 s / 4 slots = 6 s). Every task's change must be on the
//! integration branch exactly once (one first-parent commit touching its file). The target
//! (DESIGN §9: <= 1.4x the ideal; the floor is 7 s, as the last batch's verify follows the last
//! task) is for batches with speculation.
//! Run: `cargo bench -p ordo --bench queue`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ordo_proto::{
    Deps, ExecutionMode, IntegrationSettings, JobSpec, JobState, TaskName, TaskSpec, WorkspaceMode,
};

#[path = "local_jobs.rs"]
mod local_jobs;

const SLOTS: u32 = 4;
const LEVELS: usize = 3;
const WIDTH: usize = 8;
const TASKS: usize = LEVELS * WIDTH;
/// The target, as a multiple of the ideal, with batches and speculation (DESIGN §9).
const TARGET: f64 = 1.4;
/// `integration.batch` of the batched cases.
const BATCH: u32 = 8;
const BRANCH: &str = "it";

fn name(level: usize, i: usize) -> TaskName {
    TaskName::new(format!("t{}", level * WIDTH + i)).unwrap()
}

/// The 24 tasks: task `i` of level `l > 0` depends on tasks `i` and `i + 1` (mod 8) of level
/// `l - 1`; each writes a file of its own, `fN.txt`.
fn spec(dir: &Path, batch: u32, speculate: bool) -> JobSpec {
    let mut tasks = Vec::with_capacity(TASKS);
    for level in 0..LEVELS {
        for i in 0..WIDTH {
            let n = level * WIDTH + i;
            let mut t = TaskSpec::shell(
                name(level, i).as_str(),
                &format!("sleep 1 && echo {n} > f{n}.txt"),
            );
            t.depends_on = Deps::declared(if level == 0 {
                Vec::new()
            } else {
                vec![name(level - 1, i), name(level - 1, (i + 1) % WIDTH)]
            });
            tasks.push(t);
        }
    }
    let mut spec = JobSpec {
        name: "bench-queue".into(),
        tasks,
        ..Default::default()
    };
    let s = &mut spec.settings;
    s.working_directory = Some(dir.display().to_string());
    s.workspace = Some(WorkspaceMode::Worktree);
    s.repository = Some(dir.display().to_string());
    s.target_branch = Some(BRANCH.into());
    s.integration_verify = Some("sleep 1".into());
    s.integration = Some(IntegrationSettings {
        batch: Some(batch),
        speculate: speculate.then(|| "verified".to_string()),
        ..IntegrationSettings::default()
    });
    spec
}

/// How many first-parent commits of the integration branch touch `file`.
fn first_parent_commits(dir: &Path, file: &str) -> usize {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "--first-parent", "--format=%H", BRANCH, "--", file])
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// One run of the job with `batch` in a fresh repository, settling included; it must succeed
/// with every change on the integration branch exactly once.
async fn measure(batch: u32, speculate: bool) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let dir = local_jobs::sandbox(tmp.path(), &[("README.md", "# bench\n")], true);
    let (took, report) =
        local_jobs::run_timed(spec(&dir, batch, speculate), SLOTS, ExecutionMode::Parallel).await;
    assert_eq!(
        report.job.state,
        JobState::Succeeded,
        "batch {batch}: {:?}",
        report.attempts
    );
    for n in 0..TASKS {
        let commits = first_parent_commits(&dir, &format!("f{n}.txt"));
        assert_eq!(
            commits, 1,
            "batch {batch}: f{n}.txt on {BRANCH} {commits} times"
        );
    }
    took
}

async fn bench() {
    let one = measure(1, false).await;
    let batches = measure(BATCH, false).await;
    let speculating = measure(BATCH, true).await;
    let ideal = Duration::from_secs((TASKS / SLOTS as usize) as u64);
    let ratio = |d: Duration| d.as_secs_f64() / ideal.as_secs_f64();
    println!(
        "integration queue: {TASKS} tasks of 1 s in {LEVELS} levels of {WIDTH} (each depending \
         on two of the level before), integration verify 1 s, {SLOTS} slots, worktrees:"
    );
    println!(
        "  ideal ({TASKS} x 1 s / {SLOTS} slots)       {:>7.2} s",
        ideal.as_secs_f64()
    );
    println!(
        "  one at a time (batch 1)          {:>7.2} s  {:.2}x the ideal",
        one.as_secs_f64(),
        ratio(one)
    );
    println!(
        "  batches (batch {BATCH})                {:>7.2} s  {:.2}x the ideal, {:.2}x faster than one at a time",
        batches.as_secs_f64(),
        ratio(batches),
        one.as_secs_f64() / batches.as_secs_f64()
    );
    println!(
        "  batches and speculation          {:>7.2} s  {:.2}x the ideal, {:.2}x faster than one at a time",
        speculating.as_secs_f64(),
        ratio(speculating),
        one.as_secs_f64() / speculating.as_secs_f64()
    );
    println!("  every change on {BRANCH} exactly once (one first-parent commit per file): ok");
    println!(
        "target: <= {TARGET}x the ideal with batches and speculation: {:.2}x {}",
        ratio(speculating),
        if ratio(speculating) <= TARGET {
            "(within it)"
        } else {
            "(over it)"
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
