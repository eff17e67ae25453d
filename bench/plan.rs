//! Validate + plan of a generated 100,000-task DAG (docs/design.md, "Targets": < 1 s, memory well
//! under 1 GiB). Parses canonical JSON text through the same loader `ordo validate` uses,
//! validates, and computes levels, the critical path and the makespan estimate. Prints time and the
//! process's peak resident memory, with their ratios to the targets.
//!
//! Run: `cargo bench --workspace --bench plan` (ORDO_BENCH_TASKS overrides 100,000).

use std::fmt::Write;
use std::time::Instant;

use ordo_formats::{self as formats, LoadOptions};

/// A layered DAG: 100 layers, each task depending on up to 3 tasks of the layer before.
fn generate(n: usize) -> String {
    let width = (n / 100).max(1);
    let mut s = String::with_capacity(n * 80);
    s.push_str("{\"name\":\"big\",\"tasks\":[");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"name\":\"t{i}\",\"command\":\"true\"");
        if i >= width {
            let base = i - width;
            s.push_str(",\"depends_on\":[");
            for (k, d) in [base, base.saturating_sub(1), base.saturating_sub(7)]
                .iter()
                .enumerate()
            {
                if k > 0 {
                    s.push(',');
                }
                let _ = write!(s, "\"t{d}\"");
            }
            s.push(']');
        }
        s.push('}');
    }
    s.push_str("]}");
    s
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let n: usize = std::env::var("ORDO_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let text = generate(n);
    let before = peak_rss_mb();
    let start = Instant::now();
    let loaded = formats::parse("big.json", &text, &LoadOptions::default()).expect("parses");
    let dag = formats::check(&loaded, "big.json").expect("valid");
    let plan = dag.plan(4, &loaded.spec.mode_decision(None));
    let took = start.elapsed().as_secs_f64();
    let peak = peak_rss_mb();
    println!(
        "validate + plan: {n} tasks, {} edges, {} levels: {took:.3}s (target < 1 s, {:.2}x of target); peak memory {peak:.0} MiB ({:.0} MiB before parsing; target < 1024 MiB, {:.2}x)",
        plan.edges,
        plan.levels.len(),
        took,
        before,
        peak / 1024.0
    );
}
