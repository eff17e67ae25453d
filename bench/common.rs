//! What the benchmarks share: generated jobs and the spawn-limit baseline (tokio spawning the
//! same `sh -c CMD` commands with the same number in flight, capturing their output: the
//! physical limit of any task runner on the machine). Included by each bench with `#[path]`.

#![allow(dead_code)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_proto::{Deps, JobSpec, TaskName, TaskSpec};
use tokio::sync::Semaphore;

/// `n` tasks running `command`: independent, or a chain when `chain`.
pub fn job(n: usize, command: &str, chain: bool) -> JobSpec {
    let tasks = (0..n)
        .map(|i| {
            let mut t = TaskSpec::shell(&format!("t{i}"), command);
            // Declared (`depends_on = []` when empty): the job is parallel.
            t.depends_on = Deps::declared(if chain && i > 0 {
                vec![TaskName::new(format!("t{}", i - 1)).unwrap()]
            } else {
                Vec::new()
            });
            t
        })
        .collect();
    JobSpec {
        name: "bench".into(),
        tasks,
        ..Default::default()
    }
}

/// The physical limit: spawn `sh -c CMD` n times with `in_flight` at once, capturing output.
pub async fn spawn_limit(n: usize, in_flight: usize, command: &str) -> Duration {
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

pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}
