//! How the job commands print what the job client answers: one-line summaries, the status
//! table, job and worker listings, JSON documents, durations and ages. Pure functions of their
//! input (and `now`), so every rendering is tested without a coordinator. Text from outside is
//! shown without control characters.

use std::io::Write;

use ordo_proto::JobId;
use ordo_proto::api::{ApprovalView, JobStatus, JobSummary, PoolStatus, TaskStatus, WorkerInfo};
use serde::Serialize;

use crate::jobs::{Error, plain};

/// Reasons are cut to this many characters in one-line renderings.
pub const MAX_REASON: usize = 160;

pub fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// One JSON document on one line.
pub fn print_json<T: Serialize>(v: &T) -> Result<(), Error> {
    let text = serde_json::to_string(v)
        .map_err(|e| Error::Output(std::io::Error::other(e.to_string())))?;
    print(&(text + "\n"))
}

/// One line on stderr; a closed stderr is ignored rather than a panic.
pub fn warn(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Free text (a reason) on one line, whitespace collapsed, cut to `MAX_REASON` characters.
pub fn one_line(s: &str) -> String {
    let text = plain(s).split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > MAX_REASON {
        let cut: String = text.chars().take(MAX_REASON - 1).collect();
        cut + "…"
    } else {
        text
    }
}

/// `850ms`, `1.2s`, `2m05s`, `1h03m`.
pub fn fmt_duration(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// Coarse age: `12s`, `5m`, `3h`, `2d`.
pub fn fmt_age(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn fmt_memory(mb: u64) -> String {
    if mb >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MiB")
    }
}

fn fmt_cpus(cpus: f64) -> String {
    if cpus.fract() == 0.0 {
        format!("{cpus:.0}")
    } else {
        format!("{cpus:.1}")
    }
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `3/5 succeeded, 1 failed, 1 running` (zero counts after the first left out).
pub fn counts(s: &JobSummary) -> String {
    let mut text = format!("{}/{} succeeded", s.succeeded, s.total);
    if s.failed > 0 {
        text.push_str(&format!(", {} failed", s.failed));
    }
    if s.running > 0 {
        text.push_str(&format!(", {} running", s.running));
    }
    text
}

/// ` (run 2 of 2)` for a job retried once, nothing for one that ran once: what its duration
/// measures.
pub fn run_note(retries: u32) -> String {
    if retries == 0 {
        String::new()
    } else {
        format!(" (run {0} of {0})", retries + 1)
    }
}

/// `job <id> '<name>': <state>, <counts>, created 5m ago[, took 1.2s[ (run 2 of 2)]][: reason]`:
/// a retried job's time is its last run's.
pub fn summary_line(s: &JobSummary, now_ms: u64) -> String {
    let mut line = format!(
        "job {} '{}': {}, {}, created {} ago",
        s.id,
        plain(&s.name),
        s.state,
        counts(s),
        fmt_age(now_ms.saturating_sub(s.created_ms))
    );
    if s.finished_ms.is_some() {
        line.push_str(&format!(
            ", took {}{}",
            fmt_duration(s.run_duration(now_ms)),
            run_note(s.retries)
        ));
    }
    if let Some(r) = s.reason.as_deref().map(one_line)
        && !r.is_empty()
    {
        line.push_str(&format!(": {r}"));
    }
    line
}

/// The job's line, then a table of its tasks; a COST column (and the job's total) when any
/// agent reported what it cost.
pub fn status_text(st: &JobStatus, now_ms: u64) -> String {
    let dash = || "-".to_string();
    let costs = st.tasks.iter().any(|t| t.cost_usd.is_some());
    let gated = st.tasks.iter().any(|t| !t.stages.is_empty());
    let mut head = ["TASK", "STATE", "ATTEMPTS", "WORKER", "EXIT", "DURATION"]
        .map(String::from)
        .to_vec();
    if costs {
        head.push("COST".into());
    }
    if gated {
        head.push("STAGES".into());
    }
    head.push("REASON".into());
    let mut rows = vec![head];
    for t in &st.tasks {
        let mut row = vec![
            plain(&t.label()),
            t.state.to_string(),
            t.attempts.to_string(),
            t.worker.as_ref().map_or_else(dash, |w| plain(w.as_str())),
            t.exit_code.map_or_else(dash, |c| c.to_string()),
            t.duration_ms.map_or_else(dash, fmt_duration),
        ];
        if costs {
            row.push(t.cost_usd.map_or_else(dash, fmt_cost));
        }
        if gated {
            row.push(plain(&ordo_report::stages_line(&t.stages)));
        }
        let reason = match &t.approval {
            // Awaiting approval: which stage; what it changed and how to decide follow the table.
            Some(a) => format!("awaiting {} (see below)", plain(&a.stage)),
            None => t.reason.as_deref().map_or_else(String::new, one_line),
        };
        row.push(reason);
        rows.push(row);
    }
    let waiting: Vec<String> = st
        .tasks
        .iter()
        .filter_map(|t| {
            Some(approval_text(
                &st.summary.id,
                t,
                t.approval.as_deref()?,
                now_ms,
            ))
        })
        .collect();
    let mut line = summary_line(&st.summary, now_ms);
    // The job's own total (every task, stale and duplicate runs too), else this page's.
    let page: f64 = st.tasks.iter().filter_map(|t| t.cost_usd).sum();
    if let Some(total) = st.summary.cost_usd.or(costs.then_some(page)) {
        line.push_str(&format!(", cost {}", fmt_cost(total)));
    }
    for p in &st.pools {
        line.push_str(&format!("\n{}", pool_line(p, now_ms)));
    }
    if let Some(b) = &st.batches {
        line.push_str(&format!("\n{}", ordo_report::batch_line(b)));
    }
    if let Some(s) = &st.speculation {
        line.push_str(&format!("\n{}", ordo_report::speculation_line(s)));
    }
    if let Some(n) = &st.summary.notify {
        line.push_str(&format!("\n{}", notify_line(n)));
    }
    format!("{line}\n{}{}", table(&rows), waiting.concat())
}

/// A task awaiting approval: which stage waits and since when, what it changed, what it cost,
/// and the commands that decide.
pub fn approval_text(job: &JobId, t: &TaskStatus, a: &ApprovalView, now_ms: u64) -> String {
    let (added, removed) = a
        .files
        .iter()
        .fold((0, 0), |(p, m), f| (p + f.added, m + f.removed));
    let mut text = format!(
        "\n{} awaits approval ({}, {} ago",
        plain(&t.label()),
        plain(&a.stage),
        fmt_age(now_ms.saturating_sub(a.since_ms))
    );
    if let Some(d) = a.deadline_ms {
        text.push_str(&format!(
            ", decided by timeout in {}",
            fmt_age(d.saturating_sub(now_ms))
        ));
    }
    text.push_str(&format!(
        "): {} file{} changed (+{added} -{removed})",
        a.files.len(),
        if a.files.len() == 1 { "" } else { "s" }
    ));
    if let Some(c) = a.cost_usd {
        text.push_str(&format!(", cost so far {}", fmt_cost(c)));
    }
    if let Some(c) = &a.commit {
        text.push_str(&format!(", commit {}", plain(&c[..c.len().min(10)])));
    }
    let task = ordo_report::shell_quote(&t.name);
    text.push_str(&format!(
        "\n  approve: ordo approve {job} {task} [--comment TEXT]\n  reject:  ordo reject {job} {task} --reason TEXT\n"
    ));
    text
}

/// `notify: 3 deliveries failed (1 given up); last: task_failed to https://...: ...`.
pub fn notify_line(n: &ordo_proto::api::NotifyHealth) -> String {
    let plural = if n.failures == 1 {
        "delivery"
    } else {
        "deliveries"
    };
    let mut line = format!("notify: {} {plural} failed", n.failures);
    if n.given_up > 0 {
        line.push_str(&format!(" ({} given up after 24 hours)", n.given_up));
    }
    if let Some(e) = &n.last_error {
        line.push_str(&format!("; last: {}", one_line(e)));
    }
    line
}

/// `pool claude: 3 of 8 (adapts to rate limits; last limited 12s ago, 2 runs refused)`: the
/// places a pool grants now, of its size.
pub fn pool_line(p: &PoolStatus, now_ms: u64) -> String {
    let mut line = format!("pool {}: {} of {}", plain(&p.name), p.limit, p.size);
    if p.adaptive {
        line.push_str(" (adapts to rate limits");
        if let Some(at) = p.limited_at_ms {
            line.push_str(&format!(
                "; last limited {} ago",
                fmt_age(now_ms.saturating_sub(at))
            ));
        }
        if p.refused_total > 0 {
            let s = if p.refused_total == 1 { "" } else { "s" };
            line.push_str(&format!(", {} run{s} refused", p.refused_total));
        }
        line.push(')');
    }
    line
}

/// The line under a page of `status` saying where it is in the task list; nothing when the
/// page holds every task.
pub fn page_text(st: &JobStatus) -> String {
    let Some(p) = &st.page else {
        return String::new();
    };
    if p.pages <= 1 && p.states.is_empty() {
        return String::new();
    }
    let states: Vec<&str> = p.states.iter().map(|s| s.name()).collect();
    let which = if states.is_empty() {
        format!("{} tasks", p.matching)
    } else {
        format!("{} tasks {}", p.matching, states.join("/"))
    };
    let mut line = format!("page {} of {} ({which}", p.page, p.pages);
    if p.page < p.pages {
        line.push_str(&format!("; --page {} for more", p.page + 1));
    }
    line.push_str(")\n");
    line
}

/// Dollars as agents report them: `$0.0421`, `$3.02`.
pub fn fmt_cost(usd: f64) -> String {
    if usd < 1.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// One line per job: id, state, name, counts, age, and what its agents cost when any did.
pub fn jobs_text(jobs: &[JobSummary], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let mut row = vec![
                j.id.to_string(),
                j.state.to_string(),
                plain(&j.name),
                counts(j),
                format!("{} ago", fmt_age(now_ms.saturating_sub(j.created_ms))),
            ];
            if let Some(c) = j.cost_usd {
                row.push(format!("cost {}", fmt_cost(c)));
            }
            row
        })
        .collect();
    table(&rows)
}

/// One line per worker: id, host, queues, busy/slots, cpus, memory, last heard, draining, and
/// what the worker says about itself (why it takes no worktree tasks).
pub fn workers_text(workers: &[WorkerInfo]) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let h = &w.heartbeat;
            vec![
                plain(h.worker.as_str()),
                plain(&h.host),
                plain(&h.queues.join(",")),
                format!("{}/{} busy", h.busy, h.slots),
                format!("{} cpus", fmt_cpus(h.cpus)),
                fmt_memory(h.memory_mb),
                format!("seen {} ago", fmt_age(w.age_ms)),
                if h.draining { "draining" } else { "" }.to_string(),
                h.note.as_deref().map(plain).unwrap_or_default(),
            ]
        })
        .collect();
    table(&rows)
}

#[cfg(test)]
mod tests {
    use ordo_proto::Heartbeat;

    use super::*;
    use crate::manage::tests::{JOB, status, summary, task};
    use ordo_proto::{JobState, TaskPhase};

    #[test]
    fn formatting() {
        assert_eq!(fmt_duration(850), "850ms");
        assert_eq!(fmt_duration(1234), "1.2s");
        assert_eq!(fmt_duration(125_000), "2m05s");
        assert_eq!(fmt_duration(3_780_000), "1h03m");
        assert_eq!(fmt_age(5_000), "5s");
        assert_eq!(fmt_age(300_000), "5m");
        assert_eq!(fmt_age(2 * 86_400_000), "2d");
        assert_eq!(fmt_memory(512), "512 MiB");
        assert_eq!(fmt_memory(16_000), "15.6 GiB");
        assert_eq!(fmt_cpus(4.0), "4");
        assert_eq!(fmt_cpus(1.5), "1.5");
        assert_eq!(
            table(&[
                vec!["a".into(), "bb".into(), "c".into()],
                vec!["ddd".into(), "e".into(), String::new()],
            ]),
            "a    bb  c\nddd  e\n"
        );
        assert_eq!(table(&[]), "");
    }

    /// A job with batches on shows them under its summary line, and in its JSON.
    #[test]
    fn status_shows_batches() {
        let mut st = status(JobState::Running, vec![task(0, "a", TaskPhase::Running)]);
        st.batches = Some(ordo_proto::api::BatchSummary {
            batches: 2,
            sizes: vec![4, 2],
            bisections: 1,
            verifies_run: 5,
            verifies_saved: 2,
            voided: 1,
        });
        let text = status_text(&st, 1_000_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "Batches: 2 (sizes 4, 2), 1 bisection(s); integration verifies run 5, saved 2. 1 \
             verified on top of a half that failed (void).",
            "{text}"
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["batches"]["verifies_saved"], 2);
        assert_eq!(json["batches"]["bisections"], 1);
        st.batches = None;
        assert!(!status_text(&st, 1_000_000).contains("Batches"));
        assert!(serde_json::to_value(&st).unwrap().get("batches").is_none());
    }

    /// A job that had speculative runs shows them under its summary line (after its batches),
    /// and in its JSON; a status without them reads as before.
    #[test]
    fn status_shows_speculation() {
        let mut st = status(JobState::Running, vec![task(0, "a", TaskPhase::Running)]);
        st.speculation = Some(ordo_proto::api::SpeculationSummary {
            kept: 3,
            discarded: 1,
            discarded_cost_usd: Some(0.125),
        });
        let text = status_text(&st, 1_000_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1], "Speculative runs: 3 kept, 1 discarded ($0.1250).",
            "{text}"
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["speculation"]["kept"], 3);
        assert_eq!(json["speculation"]["discarded_cost_usd"], 0.125);
        st.speculation = None;
        assert!(!status_text(&st, 1_000_000).contains("Speculative"));
        let json = serde_json::to_value(&st).unwrap();
        assert!(json.get("speculation").is_none());
        // A status from before speculation (no field) still reads.
        let read: ordo_proto::api::JobStatus = serde_json::from_value(json).unwrap();
        assert_eq!(read.speculation, None);
    }

    #[test]
    fn text_renderings() {
        let now = 1_000_000 + 300_000;
        let mut st = status(
            JobState::Running,
            vec![
                task(0, "a", TaskPhase::Succeeded),
                task(1, "b\u{7}", TaskPhase::Running),
            ],
        );
        st.tasks[0].exit_code = Some(0);
        st.tasks[0].duration_ms = Some(1500);
        st.tasks[1].worker = Some("w-1".into());
        let text = status_text(&st, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("job {JOB} 'build': running, 1/3 succeeded, 1 running, created 5m ago")
        );
        assert!(lines[1].starts_with("TASK  STATE"), "{text}");
        assert_eq!(lines[2], "a     succeeded  1         -       0     1.5s");
        assert_eq!(lines[3], "b     running    1         w-1     -     -");

        // A gated job: each task's stages, and what waits for a decision.
        use ordo_proto::gates::{StageKind, StageRecord, Verdict};
        let review = |round, verdict| StageRecord {
            name: "review".into(),
            kind: Some(StageKind::Agent),
            round,
            verdict: Some(verdict),
            ..Default::default()
        };
        st.tasks[0].stages = vec![review(1, Verdict::Changes), review(2, Verdict::Pass)];
        st.tasks[1].state = TaskPhase::AwaitingApproval;
        st.tasks[1].name = "migrate".into();
        st.tasks[1].approval = Some(Box::new(ApprovalView {
            stage: "sign-off".into(),
            since_ms: now - 120_000,
            files: vec![ordo_proto::FileLines {
                path: "migrations/1.sql".into(),
                added: 40,
                removed: 2,
            }],
            cost_usd: Some(0.5),
            ..Default::default()
        }));
        let text = status_text(&st, now);
        assert!(text.lines().nth(1).unwrap().contains("STAGES"), "{text}");
        assert!(text.contains("review ✓ (2 rounds)"), "{text}");
        assert!(
            text.contains(
                "migrate awaits approval (sign-off, 2m ago): 1 file changed (+40 -2), cost so far $0.5000"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!("ordo approve {JOB} migrate")),
            "{text}"
        );
        assert!(
            text.contains(&format!("ordo reject {JOB} migrate --reason TEXT")),
            "{text}"
        );

        let jobs = jobs_text(
            &[summary(JobState::Running), summary(JobState::Failed)],
            now,
        );
        assert_eq!(jobs.lines().count(), 2);
        assert_eq!(
            jobs.lines().next().unwrap(),
            format!("{JOB}  running  build  1/3 succeeded, 1 running  5m ago")
        );

        let w = WorkerInfo {
            heartbeat: Heartbeat {
                worker: "w-1".into(),
                host: "h".into(),
                queues: vec!["default".into(), "gpu".into()],
                slots: 4,
                busy: 1,
                cpus: 8.0,
                memory_mb: 2048,
                draining: true,
                at_ms: 0,
                note: None,
            },
            age_ms: 2_000,
        };
        assert_eq!(
            workers_text(&[w]),
            "w-1  h  default,gpu  1/4 busy  8 cpus  2.0 GiB  seen 2s ago  draining\n"
        );
    }
}
