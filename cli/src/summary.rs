//! The summary `ordo run` prints at the end: a table (task, state, attempts, duration, exit
//! code, reason; what agents cost when they said) or one JSON object with `--output json`.

use std::fmt::Write;

use ordo_coordinator::store::TaskState;
use ordo_proto::TaskResult;
use serde_json::json;

use crate::run::RunReport;

/// One row per task, from its record and its last attempt.
struct Row<'a> {
    name: &'a str,
    state: &'a TaskState,
    attempts: u32,
    last: Option<&'a TaskResult>,
}

fn rows(report: &RunReport) -> Vec<Row<'_>> {
    report
        .job
        .spec
        .tasks
        .iter()
        .zip(&report.tasks)
        .enumerate()
        .map(|(i, (t, saved))| Row {
            name: t.name.as_str(),
            state: &saved.state,
            attempts: saved.attempts,
            last: report
                .attempts
                .iter()
                .filter(|r| r.index.get() == i)
                .max_by_key(|r| r.attempt),
        })
        .collect()
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.2}s", ms as f64 / 1000.0)
    }
}

/// Elapsed time of the job from its records.
pub fn makespan_ms(report: &RunReport) -> u64 {
    report
        .job
        .finished_ms
        .unwrap_or(report.job.updated_ms)
        .saturating_sub(report.job.created_ms)
}

pub fn table(report: &RunReport) -> String {
    let rows = rows(report);
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<10}  {:>8}  {:>9}  {:>4}  reason",
        "task", "state", "attempts", "duration", "exit"
    );
    for r in &rows {
        let name: String = r.name.chars().take(width).collect();
        let exit = r
            .last
            .and_then(|l| l.exit_code)
            .map_or("-".to_string(), |c| c.to_string());
        let dur = r.last.map_or("-".to_string(), |l| duration(l.duration_ms));
        let _ = writeln!(
            out,
            "{name:<width$}  {:<10}  {:>8}  {:>9}  {:>4}  {}",
            r.state.name(),
            r.attempts,
            dur,
            exit,
            r.state.reason().unwrap_or("")
        );
    }
    let counts = count_states(&rows);
    let _ = writeln!(
        out,
        "\njob '{}' {} in {} ({counts})",
        report.job.name,
        report.job.state.name(),
        duration(makespan_ms(report))
    );
    if let Some((cost, tokens)) = spent(report) {
        let _ = writeln!(
            out,
            "agents spent {} and {tokens} tokens",
            crate::manage::render::fmt_cost(cost)
        );
    }
    out
}

/// Dollars and tokens agents reported over every attempt, if any reported.
fn spent(report: &RunReport) -> Option<(f64, u64)> {
    let runs: Vec<_> = report
        .attempts
        .iter()
        .filter_map(|r| r.agent.as_deref())
        .collect();
    (!runs.is_empty()).then(|| {
        (
            runs.iter().filter_map(|a| a.cost_usd).sum(),
            runs.iter().map(|a| a.tokens()).sum(),
        )
    })
}

fn count_states(rows: &[Row<'_>]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(n, _)| *n == r.state.name()) {
            Some((_, c)) => *c += 1,
            None => counts.push((r.state.name(), 1)),
        }
    }
    counts
        .iter()
        .map(|(n, c)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn json(report: &RunReport) -> serde_json::Value {
    let tasks: Vec<_> = rows(report)
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "state": r.state.name(),
                "attempts": r.attempts,
                "duration_ms": r.last.map(|l| l.duration_ms),
                "exit_code": r.last.and_then(|l| l.exit_code),
                "reason": r.state.reason(),
                "output_tail": r.last.map(|l| l.output_tail.as_str()),
            })
        })
        .collect();
    json!({
        "job": report.job.id.to_string(),
        "name": report.job.name,
        "state": report.job.state.name(),
        "reason": report.job.reason,
        "resumed": report.resumed,
        "makespan_ms": makespan_ms(report),
        "cost_usd": spent(report).map(|(c, _)| c),
        "tokens": spent(report).map(|(_, t)| t),
        "tasks": tasks,
    })
}
