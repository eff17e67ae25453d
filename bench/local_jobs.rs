//! What the benchmarks of jobs run by the local runner share: a fresh git repository, one run
//! of a job as `ordo run` does it (settle its workspace, validate, run on N slots, in memory),
//! and the median of several measures. Included by each such bench with `#[path]`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ordo::jobs::settle_workspace;
use ordo::progress::Quiet;
use ordo::run::{RunOptions, RunReport, run};
use ordo_proto::{ExecutionMode, JobSpec, validate::validate};

/// `git -C dir ARGS` with no user or system configuration; it must succeed.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir/repo` holding `files` (name, text); a git repository on `main` with one commit when
/// `repository`, else a plain directory.
pub fn sandbox(dir: &Path, files: &[(&str, &str)], repository: bool) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    for (name, text) in files {
        std::fs::write(repo.join(name), text).unwrap();
    }
    if repository {
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "bench"]);
        git(&repo, &["config", "user.email", "bench@ordo.invalid"]);
        git(&repo, &["config", "commit.gpgsign", "false"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
    }
    repo
}

/// Runs `spec` through the library as `ordo run` does (`settle_workspace`, validation, then
/// `run` on `slots` in `mode`, with an in-memory store): how long it took, settling included,
/// and its report.
pub async fn run_timed(
    mut spec: JobSpec,
    slots: u32,
    mode: ExecutionMode,
) -> (Duration, RunReport) {
    let start = Instant::now();
    settle_workspace(&mut spec, "bench", false)
        .await
        .expect("settle");
    validate(&spec).expect("valid");
    let opts = RunOptions {
        workers: slots,
        default_mode: Some(mode),
        max_parallel: None,
        state_dir: None,
        source: "bench".into(),
        telemetry: None,
    };
    let store = ordo_coordinator::store::Store::in_memory().expect("store");
    let report = run(spec, opts, store, &mut Quiet, std::future::pending())
        .await
        .expect("run");
    (start.elapsed(), report)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
