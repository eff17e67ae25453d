//! The HTML report: one self-contained file (inline CSS and SVG, no script, no external asset)
//! with the summary, the verification checklist, an SVG Gantt timeline, the task table with
//! collapsible output tails, and the critical path.
//!
//! The dashboard (`ui`) draws with the same pieces: `SHARED_CSS` (state colours and marks, the
//! Gantt's styles), `mark_html`, `phase_class`, `LEGEND`, `gantt`, `integration_section`,
//! `models` and `queue`.
//!
//! The timeline has one row per task, sorted by first start, and exactly one
//! `<rect class="bar ...">` per task: its last attempt (earlier attempts are `rect.try`), or a
//! thin marker where a task that never ran was skipped or cancelled. At 20 px a row, 100 tasks
//! make a chart about 2,100 px tall with every label readable.

use std::fmt::Write;

use ordo_proto::TaskPhase;

use super::{
    Mark, Report, TaskReport, VerifyReport, VerifyResult, clean_output, cut, fmt_escalation,
    fmt_ms, fmt_pct, fmt_success, fmt_tokens, fmt_usd, stage_text, stages_line, utc,
};

const WIDTH: u64 = 1200;
const LABEL_W: u64 = 300;
const CHART_W: u64 = WIDTH - LABEL_W - 70;
const ROW_H: u64 = 20;
const BAR_H: u64 = 14;
const TOP: u64 = 34;

/// The report page's own layout.
const PAGE_CSS: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
  max-width: 1240px; padding: 0 16px; color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 10px;
  border-bottom: 1px solid #e3e6ec; padding-bottom: 4px; }
code, pre { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: #f3f4f7; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
pre { background: #f6f7f9; border: 1px solid #e3e6ec; padding: 8px; overflow: auto; max-height: 360px;
  white-space: pre-wrap; word-break: break-all; margin: 6px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceef2; vertical-align: top; }
th { background: #f6f7f9; font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
.summary { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 8px; }
.summary div { background: #f6f7f9; border-radius: 6px; padding: 8px 10px; }
.summary b { display: block; font-size: 18px; }
.summary div > span { color: #5b6475; font-size: 12px; }
"#;

/// What the report and the dashboard show alike: outcome and state colours (each `.o-STATE`
/// class sets `fill` for SVG and `--c` for HTML), check marks, the Gantt's styles, the legend.
pub const SHARED_CSS: &str = r#"
table.models { width: auto; margin-top: 10px; }
div.queue h3 { font-size: 14px; margin: 14px 0 4px; } div.queue p { margin: 3px 0; }
.outcome-succeeded { color: #1f7a43; } .outcome-failed, .outcome-cancelled { color: #b42323; }
.mark { font-weight: 700; width: 1.2em; display: inline-block; text-align: center; }
.m-pass { color: #1f7a43; } .m-fail { color: #b42323; } .m-skipped, .m-cancelled, .m-pending { color: #7a808c; }
.note { background: #fff7e0; border-left: 3px solid #e0a800; padding: 6px 10px; margin: 8px 0; }
ul.check { list-style: none; padding-left: 0; } ul.check li { padding: 3px 0; border-bottom: 1px solid #f0f1f4; }
.muted { color: #5b6475; }
svg.gantt { width: 100%; height: auto; display: block; }
svg.gantt text { font: 11.5px system-ui, sans-serif; fill: #1d2330; }
svg.gantt text.label.crit { font-weight: 700; }
svg.gantt text.tick, svg.gantt text.dur { fill: #5b6475; font-size: 10.5px; }
svg.gantt line.grid { stroke: #e3e6ec; } svg.gantt rect.row { fill: #f8f9fb; }
rect.bar, rect.try { rx: 2px; }
.o-succeeded { fill: #2e9d57; --c: #2e9d57; } .o-failed { fill: #d64545; --c: #d64545; }
.o-verify_failed { fill: #a23fc4; --c: #a23fc4; } .o-timed_out { fill: #e08a1e; --c: #e08a1e; }
.o-cancelled { fill: #8a8f99; --c: #8a8f99; } .o-skipped { fill: #c4c8d0; --c: #c4c8d0; }
.o-pending { fill: #c4c8d0; --c: #c4c8d0; } .o-running { fill: #2f6fd0; --c: #2f6fd0; }
.o-retry_wait { fill: #e0b21e; --c: #e0b21e; }
rect.try { opacity: .55; }
details.run { margin: 10px 0; } details.run > summary { cursor: pointer; color: #5b6475; }
details.run svg.gantt { opacity: .6; }
rect.bar.crit { stroke: #1d2330; stroke-width: 1.5px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px; margin-right: 4px;
  background: var(--c); }
.legend i.crit { background: #fff; border: 2px solid #1d2330; width: 9px; height: 9px; }
"#;

/// Text content or a double-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The Gantt's legend: outcome colours, the critical path, earlier attempts.
pub const LEGEND: &str = "<div class=\"legend\"><span><i class=\"o-succeeded\"></i>succeeded</span>\
     <span><i class=\"o-failed\"></i>failed</span>\
     <span><i class=\"o-verify_failed\"></i>verify failed</span>\
     <span><i class=\"o-timed_out\"></i>timed out</span>\
     <span><i class=\"o-cancelled\"></i>cancelled</span>\
     <span><i class=\"o-skipped\"></i>skipped / never ran</span>\
     <span><i class=\"crit\"></i>critical path</span>\
     <span class=\"muted\">faded: earlier attempts</span></div>\n";

/// The colour class of a task's state (`o-succeeded`, `o-running`, ...): the outcome colours
/// of the timeline, plus running (dispatched, running, integrating) and waiting to retry.
pub fn phase_class(p: TaskPhase) -> &'static str {
    match p {
        TaskPhase::Pending | TaskPhase::Ready => "o-pending",
        TaskPhase::Dispatched | TaskPhase::Running | TaskPhase::Integrating => "o-running",
        TaskPhase::RetryWait | TaskPhase::AwaitingApproval => "o-retry_wait",
        TaskPhase::Succeeded => "o-succeeded",
        TaskPhase::Failed => "o-failed",
        TaskPhase::TimedOut => "o-timed_out",
        TaskPhase::Cancelled => "o-cancelled",
        TaskPhase::Skipped => "o-skipped",
    }
}

/// The class of a check mark's colour (`m-pass`, `m-fail`, ...).
pub fn mark_class(m: Mark) -> &'static str {
    match m {
        Mark::Pass => "m-pass",
        Mark::Fail => "m-fail",
        Mark::Skipped => "m-skipped",
        Mark::Cancelled => "m-cancelled",
        Mark::Pending => "m-pending",
    }
}

/// A task's check mark as HTML.
pub fn mark_html(m: Mark) -> String {
    format!(
        "<span class=\"mark {}\">{}</span>",
        mark_class(m),
        m.symbol()
    )
}

/// How a task's verify command ended, as HTML: passed or failed with its exit code, or not run.
pub fn verify_html(v: &VerifyReport) -> String {
    match v.result {
        VerifyResult::Passed => format!(
            "<span class=\"m-pass\">passed</span> (exit {})",
            v.exit_code.unwrap_or(0)
        ),
        VerifyResult::Failed => format!(
            "<span class=\"m-fail\">failed</span> (exit {}, expected {})",
            v.exit_code.map_or("-".into(), |c| c.to_string()),
            v.success_code
        ),
        VerifyResult::NotRun => "<span class=\"muted\">not run</span>".into(),
    }
}

/// Where a worktree job's changes went: the branch, then per task its files and conflicts.
pub fn integration_section(out: &mut String, r: &Report, ji: &super::JobIntegration) {
    let _ = writeln!(
        out,
        "<h2>Integration</h2>\n<p>Branch <code>{}</code>: {} integrated, {} conflict(s), \
         conflict rate {}.</p>",
        esc(&ji.branch),
        ji.integrations,
        ji.conflicts,
        super::fmt_pct(Some(ji.conflict_rate))
    );
    if let Some(rework) = super::rework_text(ji) {
        let _ = writeln!(out, "<p class=\"rework\">{}</p>", esc(&rework));
    }
    let _ = writeln!(
        out,
        "<table>\n<thead><tr><th>task</th><th>outcome</th><th class=\"num\">waited to integrate</th>\
         <th>commit</th><th>files changed</th><th>conflicts</th></tr></thead>\n<tbody>"
    );
    for t in &r.tasks {
        let Some(it) = &t.integration else { continue };
        let conflicts: Vec<String> = it
            .conflicts
            .iter()
            .map(|c| match &c.task {
                Some(w) => format!("{} with {}", esc(&c.files.join(", ")), esc(w)),
                None => esc(&c.files.join(", ")),
            })
            .collect();
        let kept = it.worktree.as_deref().map_or(String::new(), |w| {
            format!(
                " <span class=\"muted\">(worktree kept: <code>{}</code>)</span>",
                esc(w)
            )
        });
        let speculative = t.speculation.as_ref().map_or(String::new(), |sp| {
            format!(
                " <span class=\"muted\">(speculative runs: {})</span>",
                esc(&super::speculation_text(sp))
            )
        });
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}{kept}{speculative}</td><td class=\"num\">{}</td>\
             <td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&t.label()),
            esc(&it.outcome),
            esc(&fmt_ms(t.integration_wait_ms)),
            esc(it.commit.as_deref().map_or("-", |c| &c[..c.len().min(12)])),
            esc(&it.files.join(", ")),
            conflicts.join("; "),
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>");
    if let Some(kept) = &ji.kept {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", esc(kept));
    }
}

pub fn render(r: &Report) -> String {
    let s = &r.summary;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>ordo report: {}</title>\n<style>{PAGE_CSS}{SHARED_CSS}</style>\n</head>\n<body>\n",
        esc(&r.job.name)
    );
    let _ = writeln!(
        out,
        "<h1>Job report: {}</h1>\n<p class=\"muted\">job <code>{}</code> · {} · {} mode</p>",
        esc(&r.job.name),
        esc(&r.job.id),
        esc(&r.job.source),
        esc(&r.job.mode)
    );
    if let Some(d) = &r.job.description {
        let _ = writeln!(out, "<p>{}</p>", esc(d));
    }

    // Summary
    let _ = writeln!(out, "<h2>Summary</h2>\n<div class=\"summary\">");
    let mut tile = |value: String, label: &str| {
        let _ = writeln!(out, "<div><b>{value}</b><span>{label}</span></div>");
    };
    tile(
        format!(
            "<span class=\"outcome-{0}\">{0}</span>",
            esc(s.outcome.name())
        ),
        "outcome",
    );
    if s.runs.len() > 1 {
        tile(
            esc(&fmt_ms(s.makespan_ms)),
            &format!(
                "makespan of run {0} of {0} (its start to end)",
                s.runs.len()
            ),
        );
        let earlier: Vec<String> = s.runs[..s.runs.len() - 1]
            .iter()
            .map(|run| format!("run {}: {}", run.run, fmt_ms(run.duration_ms)))
            .collect();
        tile(
            esc(&earlier.join(", ")),
            "earlier runs (submission, retries)",
        );
    } else {
        tile(esc(&fmt_ms(s.makespan_ms)), "makespan (submission to end)");
    }
    tile(esc(&fmt_ms(s.task_time_ms)), "task time (sum of attempts)");
    tile(
        s.speedup.map_or("-".into(), |v| format!("{v:.2}×")),
        "speedup (task time / makespan)",
    );
    tile(s.slots.map_or("unknown".into(), |n| n.to_string()), "slots");
    tile(
        fmt_pct(s.parallel_efficiency),
        "parallel efficiency (speedup / slots)",
    );
    let states: Vec<String> = s.states.iter().map(|(k, v)| format!("{v} {k}")).collect();
    tile(s.tasks.to_string(), &esc(&states.join(", ")));
    tile(
        s.attempts.to_string(),
        &format!("attempts ({} retries)", s.retries),
    );
    tile(
        esc(&fmt_ms(s.queue_wait_ms)),
        &format!(
            "waited ready for a slot or lock (locks: {})",
            esc(&fmt_ms(s.lock_wait_ms))
        ),
    );
    tile(esc(&fmt_ms(s.critical_path_ms)), "critical path");
    if let Some(c) = s.cost_usd {
        tile(esc(&fmt_usd(c)), "cost (agent runs)");
    }
    if let Some(t) = s.tokens {
        tile(esc(&fmt_tokens(t)), "tokens (agent runs)");
    }
    let (start_date, start_time) = utc(s.start_ms);
    tile(start_time, &format!("start (UTC, {start_date})"));
    let (end_date, end_time) = utc(s.end_ms);
    let end_label = if s.finished { "end" } else { "last change" };
    tile(end_time, &format!("{end_label} (UTC, {end_date})"));
    let _ = writeln!(out, "</div>");
    models(&mut out, s);
    queue(&mut out, s);
    if let Some(why) = &s.reason {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(why));
    }
    for note in &r.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(note));
    }

    // Timeline
    let _ = writeln!(out, "<h2>Timeline</h2>");
    out.push_str(LEGEND);
    out.push_str(&gantt(r));

    // Verification checklist
    let _ = writeln!(out, "<h2>Verification</h2>\n<ul class=\"check\">");
    for t in &r.tasks {
        let _ = writeln!(out, "<li>{}</li>", checklist_item(t));
    }
    let _ = writeln!(out, "</ul>");

    // Tasks
    // Agent jobs get cost and token columns.
    let agents = s.cost_usd.is_some() || s.tokens.is_some();
    // Jobs with quality gates get a stages column (details under each task's line).
    let gated = r.tasks.iter().any(|t| !t.stages.is_empty());
    let _ = writeln!(
        out,
        "<h2>Tasks</h2>\n<table>\n<thead><tr><th class=\"num\">#</th><th>task</th><th>state</th>\
         <th class=\"num\">attempts</th><th>worker</th><th class=\"num\">exit</th>\
         <th class=\"num\">duration</th><th class=\"num\">waited</th>{}{}<th>reason / output</th></tr></thead>\n<tbody>",
        if agents {
            "<th class=\"num\">cost</th><th class=\"num\">tokens</th>"
        } else {
            ""
        },
        if gated { "<th>stages</th>" } else { "" }
    );
    for t in &r.tasks {
        let exit = match (t.exit_code, t.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "-".into(),
        };
        let mut detail = t
            .reason
            .as_deref()
            .map_or(String::new(), |r| format!("<div>{}</div>", esc(r)));
        if !t.output_tail.is_empty() {
            let _ = write!(
                detail,
                "<details><summary>output ({} bytes{})</summary><pre>{}</pre></details>",
                t.output_bytes,
                if t.output_bytes > t.output_tail.len() as u64 {
                    ", last part"
                } else {
                    ""
                },
                esc(&clean_output(&t.output_tail))
            );
        }
        let spend = if agents {
            format!(
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                esc(&t.cost_usd.map_or("-".into(), fmt_usd)),
                esc(&t.tokens.map_or("-".into(), fmt_tokens))
            )
        } else {
            String::new()
        };
        let spend = if gated {
            format!("{spend}<td>{}</td>", esc(&stages_line(t.last_stages())))
        } else {
            spend
        };
        if !t.stages.is_empty() {
            let _ = write!(detail, "{}", stages_details(t));
        }
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}{}</td><td>{} {}</td><td class=\"num\">{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{spend}<td>{}</td></tr>",
            t.index,
            esc(&t.label()),
            if t.critical {
                " <span title=\"critical path\">★</span>"
            } else {
                ""
            },
            mark_html(t.mark),
            esc(t.state.name()),
            t.attempts,
            esc(t.worker.as_deref().unwrap_or("-")),
            exit,
            t.duration_ms.map_or("-".into(), fmt_ms),
            fmt_ms(t.queue_wait_ms),
            detail
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>");

    if let Some(ji) = &r.summary.integration {
        integration_section(&mut out, r, ji);
    }

    // Critical path
    let _ = writeln!(out, "<h2>Critical path</h2>");
    if r.critical_path.is_empty() {
        let _ = writeln!(out, "<p>No task ran.</p>");
    } else {
        let _ = writeln!(out, "<ol>");
        for step in &r.critical_path {
            let _ = writeln!(
                out,
                "<li><code>{}</code> — {} <span class=\"muted\">(waited {})</span></li>",
                esc(&step.name),
                fmt_ms(step.duration_ms),
                fmt_ms(step.waited_ms)
            );
        }
        let _ = writeln!(
            out,
            "</ol>\n<p class=\"muted\">{} from the first start to the last end; makespan {}.</p>",
            fmt_ms(s.critical_path_ms),
            fmt_ms(s.makespan_ms)
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">Generated by ordo from the job's stored records.</p>\n</body>\n</html>"
    );
    out
}

/// A task's stage records, attempt by attempt, with their findings, folded.
pub fn stages_details(t: &TaskReport) -> String {
    let mut out = format!(
        "<details class=\"stages\"><summary>stages ({})</summary><ul>",
        t.stages.len()
    );
    for s in &t.stages {
        let _ = write!(out, "<li>attempt {}: {}", s.attempt, esc(&stage_text(s)));
        if !s.record.findings.is_empty() {
            out.push_str("<ul>");
            for f in &s.record.findings {
                let _ = write!(out, "<li>{}</li>", esc(&f.to_string()));
            }
            out.push_str("</ul>");
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></details>");
    out
}

fn checklist_item(t: &TaskReport) -> String {
    let mut item = format!(
        "{} <b>{}</b> — {} ",
        mark_html(t.mark),
        esc(&t.label()),
        t.run.kind
    );
    if t.run.kind == "prompt" {
        let first = t
            .run
            .text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let _ = write!(
            item,
            "<span title=\"{}\">“{}”</span>",
            esc(&cut(&t.run.text, 2000)),
            esc(&cut(first.trim(), 160))
        );
    } else {
        let _ = write!(item, "<code>{}</code>", esc(&cut(&t.run.text, 400)));
    }
    match &t.verify {
        Some(v) => {
            let result = verify_html(v);
            let _ = write!(
                item,
                " · verify <code>{}</code> → {result}",
                esc(&v.command)
            );
        }
        None => item.push_str(" · <span class=\"muted\">no verify command</span>"),
    }
    if t.mark != Mark::Pass {
        let _ = write!(
            item,
            " · <b>{}</b>{}",
            esc(t.state.name()),
            t.reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {}", esc(&cut(r, 300))))
        );
    }
    item
}

/// A tick step near a tenth of `span` milliseconds: 1, 2 or 5 times a power of ten.
fn tick_step(span: u64) -> u64 {
    let raw = (span / 10).max(1);
    let mut base = 1u64;
    while base * 10 <= raw {
        base *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * base)
        .find(|&s| s >= raw)
        .unwrap_or(base * 10)
}

fn tick_label(ms: u64) -> String {
    if ms == 0 {
        "0".into()
    } else if ms < 1000 {
        format!("+{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if ms.is_multiple_of(1000) {
            format!("+{s:.0}s")
        } else {
            format!("+{s:.1}s")
        }
    } else if ms < 3_600_000 {
        format!("+{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("+{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// The SVG Gantt chart of `r`'s tasks (all of them, or the page of them the caller kept) in
/// the job's last run, on that run's time axis; a retried job's earlier runs follow, folded
/// (`<details class="run">`), each on its own axis.
pub fn gantt(r: &Report) -> String {
    let s = &r.summary;
    let last = s.runs.last().map_or(1, |run| run.run);
    let mut out = gantt_run(r, last, s.start_ms, s.end_ms);
    for run in s.runs.iter().rev().skip(1) {
        let _ = writeln!(
            out,
            "<details class=\"run\"><summary>Run {} (earlier): {} from {}, {}, {} attempt(s)</summary>",
            run.run,
            fmt_ms(run.duration_ms),
            utc(run.started_ms).1,
            run.outcome.map_or("unfinished", |o| o.name()),
            run.attempts
        );
        out.push_str(&gantt_run(
            r,
            run.run,
            run.started_ms,
            run.started_ms + run.duration_ms,
        ));
        let _ = writeln!(out, "</details>");
    }
    out
}

/// The chart of the attempts of run `run`, on the axis from `t0` to `end`.
fn gantt_run(r: &Report, run: u32, t0: u64, end: u64) -> String {
    let span = end.saturating_sub(t0).max(1);
    let x = |t: u64| LABEL_W as f64 + (t.saturating_sub(t0)) as f64 / span as f64 * CHART_W as f64;
    let mut rows: Vec<(&TaskReport, Vec<&super::AttemptReport>)> = r
        .tasks
        .iter()
        .map(|t| (t, t.runs.iter().filter(|a| a.run == run).collect()))
        .collect();
    rows.sort_by_key(|(t, a)| {
        (
            a.first()
                .map(|a| a.started_ms)
                .or(t.ended_ms.filter(|_| t.runs.is_empty()))
                .unwrap_or(u64::MAX),
            t.index,
        )
    });
    let height = TOP + rows.len() as u64 * ROW_H + 12;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg class=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of {} tasks\">",
        rows.len()
    );
    for (i, _) in rows.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let _ = writeln!(
            out,
            "<rect class=\"row\" x=\"0\" y=\"{}\" width=\"{WIDTH}\" height=\"{ROW_H}\"/>",
            TOP + i as u64 * ROW_H
        );
    }
    let step = tick_step(span);
    let mut t = 0;
    while t <= span {
        let xt = x(t0 + t);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{xt:.1}\" y1=\"{}\" x2=\"{xt:.1}\" y2=\"{}\"/>\
             <text class=\"tick\" x=\"{xt:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            TOP - 6,
            height - 8,
            TOP - 12,
            tick_label(t)
        );
        t += step;
    }
    for (row, (task, attempts)) in rows.iter().enumerate() {
        let y = TOP + row as u64 * ROW_H;
        let bar_y = y + (ROW_H - BAR_H) / 2;
        let crit = if task.critical { " crit" } else { "" };
        let _ = writeln!(
            out,
            "<text class=\"label{crit}\" x=\"{}\" y=\"{}\" text-anchor=\"end\"><title>{}</title>{}</text>",
            LABEL_W - 8,
            y + ROW_H / 2 + 4,
            esc(&task.label()),
            esc(&cut(&task.label(), 42))
        );
        let n = attempts.len();
        for (k, a) in attempts.iter().enumerate() {
            let x1 = x(a.started_ms);
            let w = (x(a.started_ms + a.duration_ms) - x1).max(2.0);
            let last = k + 1 == n;
            let class = if last {
                format!("bar o-{}{crit}", a.outcome)
            } else {
                format!("try o-{}", a.outcome)
            };
            let _ = writeln!(
                out,
                "<rect class=\"{class}\" x=\"{x1:.1}\" y=\"{bar_y}\" width=\"{w:.1}\" height=\"{BAR_H}\">\
                 <title>{} — attempt {}: {} in {} on {}{}</title></rect>",
                esc(&task.label()),
                a.attempt,
                a.outcome,
                fmt_ms(a.duration_ms),
                esc(&a.worker),
                if a.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", esc(&cut(&a.message, 200)))
                }
            );
            if last {
                let _ =
                    writeln!(
                        out,
                        "<text class=\"dur\" x=\"{:.1}\" y=\"{}\">{}</text>",
                        x1 + w + 4.0,
                        y + ROW_H / 2 + 4,
                        fmt_ms((a.started_ms + a.duration_ms).saturating_sub(
                            attempts.first().map_or(a.started_ms, |f| f.started_ms)
                        ))
                    );
            }
        }
        if n == 0 && !task.runs.is_empty() {
            let mut runs: Vec<String> = task.runs.iter().map(|a| a.run.to_string()).collect();
            runs.dedup();
            let _ = writeln!(
                out,
                "<text class=\"dur\" x=\"{}\" y=\"{}\">not in this run (ran in run {})</text>",
                LABEL_W + 4,
                y + ROW_H / 2 + 4,
                runs.join(", ")
            );
        } else if n == 0 {
            let at = x(task.ended_ms.unwrap_or(t0));
            let _ = writeln!(
                out,
                "<rect class=\"bar o-{}\" x=\"{at:.1}\" y=\"{bar_y}\" width=\"3\" height=\"{BAR_H}\">\
                 <title>{} — {}{}</title></rect>",
                if task.mark == Mark::Pending {
                    "pending"
                } else {
                    task.state.name()
                },
                esc(&task.label()),
                esc(task.state.name()),
                task.reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(": {}", esc(&cut(r, 200))))
            );
        }
    }
    let _ = writeln!(out, "</svg>");
    out
}

/// The spend per model (runs, success rate, cost, tokens) and what escalation cost, when the
/// job ran agents: the report's summary and the dashboard's job page.
pub fn models(out: &mut String, s: &crate::Summary) {
    if !s.models.is_empty() {
        let _ = writeln!(
            out,
            "<table class=\"models\">\n<thead><tr><th>model</th><th class=\"num\">runs</th>\
             <th class=\"num\">succeeded</th><th class=\"num\">cost</th>\
             <th class=\"num\">tokens</th></tr></thead>\n<tbody>"
        );
        for m in &s.models {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&m.model),
                m.runs,
                esc(&fmt_success(m)),
                esc(&m.cost_usd.map_or("-".into(), fmt_usd)),
                esc(&fmt_tokens(m.tokens))
            );
        }
        let _ = writeln!(out, "</tbody>\n</table>");
    }
    if let Some(e) = &s.escalation {
        let _ = writeln!(
            out,
            "<p class=\"note\">Escalation: {}</p>",
            esc(&fmt_escalation(e))
        );
    }
}

/// A worktree job's integration queue in a small section: its batches (sizes, integration
/// verifies run and saved, bisections), its speculative runs kept and discarded (with what the
/// discarded ones cost) and the time tasks waited to integrate; nothing when there is none of
/// these. The report's summary and the dashboard's job page.
pub fn queue(out: &mut String, s: &crate::Summary) {
    let lines = s.integration.as_ref().map(super::queue_lines);
    let Some(lines) = lines.filter(|l| !l.is_empty()) else {
        return;
    };
    let _ = writeln!(out, "<div class=\"queue\"><h3>Integration queue</h3>");
    for line in lines {
        let _ = writeln!(out, "<p>{}</p>", esc(&line));
    }
    let _ = writeln!(out, "</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10_000), 1000);
        assert_eq!(tick_step(13_000), 2000);
        assert_eq!(tick_step(45_000), 5000);
        assert_eq!(tick_step(3), 1);
        assert_eq!(tick_label(1500), "+1.5s");
        assert_eq!(tick_label(120_000), "+2m00s");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>\u{1b}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
