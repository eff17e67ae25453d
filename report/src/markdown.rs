//! The Markdown report (GitHub-flavoured): summary table, verification checklist (a task
//! list), task table (with each task's stages, then their details), critical path, a Mermaid `gantt` timeline (one line per attempt), and each
//! task's output tail in a fenced block. User text is escaped for where it lands: table cells,
//! code spans, fences, Mermaid lines.

use std::fmt::Write;

use super::{
    Mark, Report, RunOutcome, TaskReport, VerifyResult, clean_output, cut, fmt_escalation, fmt_ms,
    fmt_pct, fmt_success, fmt_time, fmt_tokens, fmt_usd, stage_text, stages_line,
};
use ordo_proto::{JobState, Outcome, TaskIndex};

/// Where a worktree job's changes went: the branch, then per task its files and conflicts.
fn integration_section(out: &mut String, r: &Report, ji: &super::JobIntegration) {
    let _ = writeln!(out, "## Integration\n");
    let _ = writeln!(
        out,
        "Branch {}: {} integrated, {} conflict(s), conflict rate {}.\n",
        code(&ji.branch),
        ji.integrations,
        ji.conflicts,
        fmt_pct(Some(ji.conflict_rate))
    );
    if let Some(rework) = super::rework_text(ji) {
        let _ = writeln!(out, "{}\n", cell(&rework));
    }
    for line in super::queue_lines(ji) {
        let _ = writeln!(out, "{}\n", cell(&line));
    }
    let _ = writeln!(
        out,
        "| task | outcome | waited to integrate | commit | files changed | conflicts |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for t in &r.tasks {
        let Some(it) = &t.integration else { continue };
        let conflicts: Vec<String> = it
            .conflicts
            .iter()
            .map(|c| {
                let with = c
                    .task
                    .as_deref()
                    .map_or(String::new(), |w| format!(" with {w}"));
                format!("{}{with}", c.files.join(", "))
            })
            .collect();
        let mut outcome = cell(&it.outcome);
        if let Some(w) = &it.worktree {
            outcome.push_str(&format!(" (worktree kept: {})", code(w)));
        }
        if let Some(sp) = &t.speculation {
            let text = super::speculation_text(sp);
            outcome.push_str(&format!("; speculative runs: {}", cell(&text)));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&t.label()),
            outcome,
            fmt_ms(t.integration_wait_ms),
            it.commit
                .as_deref()
                .map_or("-".into(), |c| code(&c[..c.len().min(12)])),
            cell(&it.files.join(", ")),
            cell(&conflicts.join("; ")),
        );
    }
    out.push('\n');
    if let Some(kept) = &ji.kept {
        let _ = writeln!(out, "{}\n", cell(kept));
    }
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let s = &r.summary;
    let _ = writeln!(out, "# Job report: {}\n", inline(&r.job.name));
    if let Some(d) = &r.job.description {
        let _ = writeln!(out, "{}\n", inline(d));
    }

    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row("job", code(&r.job.id));
    let outcome = match s.outcome {
        JobState::Succeeded => "✅ succeeded".to_string(),
        JobState::Failed => "❌ failed".to_string(),
        other => other.to_string(),
    };
    row(
        "outcome",
        match &s.reason {
            Some(why) => format!("{outcome}: {}", cell(why)),
            None => outcome,
        },
    );
    row("source", cell(&r.job.source));
    row("mode", r.job.mode.clone());
    row("start", fmt_time(s.start_ms));
    row(
        if s.finished { "end" } else { "last change" },
        fmt_time(s.end_ms),
    );
    if s.runs.len() > 1 {
        row("submitted", fmt_time(s.submitted_ms));
        let runs: Vec<String> = s
            .runs
            .iter()
            .map(|run| {
                format!(
                    "run {}: {}, {}",
                    run.run,
                    fmt_ms(run.duration_ms),
                    run.outcome.map_or("unfinished", |o| o.name())
                )
            })
            .collect();
        row("runs (submission, then each retry)", runs.join("; "));
    }
    row(
        if s.runs.len() > 1 {
            "makespan (last run)"
        } else {
            "makespan"
        },
        fmt_ms(s.makespan_ms),
    );
    row("task time (sum of attempts)", fmt_ms(s.task_time_ms));
    row(
        "speedup (task time / makespan)",
        s.speedup.map_or("-".into(), |v| format!("{v:.2}×")),
    );
    row("slots", s.slots.map_or("unknown".into(), |n| n.to_string()));
    row(
        "parallel efficiency (speedup / slots)",
        fmt_pct(s.parallel_efficiency),
    );
    let states: Vec<String> = s.states.iter().map(|(k, v)| format!("{v} {k}")).collect();
    row("tasks", format!("{} ({})", s.tasks, states.join(", ")));
    row(
        "attempts",
        format!("{} ({} retries)", s.attempts, s.retries),
    );
    row(
        "waited ready for a slot or lock",
        format!(
            "{} (of which on locks: {})",
            fmt_ms(s.queue_wait_ms),
            fmt_ms(s.lock_wait_ms)
        ),
    );
    row("critical path", fmt_ms(s.critical_path_ms));
    if let Some(c) = s.cost_usd {
        row("cost", fmt_usd(c));
    }
    if let Some(t) = s.tokens {
        row("tokens", fmt_tokens(t));
    }
    out.push('\n');
    if !s.models.is_empty() {
        let _ = writeln!(
            out,
            "| model | runs | succeeded | cost | tokens |\n|---|---:|---:|---:|---:|"
        );
        for m in &s.models {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&m.model),
                m.runs,
                fmt_success(m),
                m.cost_usd.map_or("-".into(), fmt_usd),
                fmt_tokens(m.tokens)
            );
        }
        out.push('\n');
    }
    if let Some(e) = &s.escalation {
        let _ = writeln!(out, "Escalation: {}\n", fmt_escalation(e));
    }
    for note in &r.notes {
        let _ = writeln!(out, "> {}\n", inline(note));
    }

    let _ = writeln!(out, "## Verification\n");
    for t in &r.tasks {
        let _ = writeln!(out, "{}", checklist_line(t));
    }
    out.push('\n');

    let _ = writeln!(out, "## Tasks\n");
    // Agent jobs get cost and token columns.
    let agents = s.cost_usd.is_some() || s.tokens.is_some();
    // Jobs with quality gates get a stages column, and their details after the table.
    let gated = r.tasks.iter().any(|t| !t.stages.is_empty());
    let _ = writeln!(
        out,
        "| # | task | state | attempts | worker | exit | duration | waited |{}{} reason |",
        if agents { " cost | tokens |" } else { "" },
        if gated { " stages |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|---:|---|---|---:|---|---:|---:|---:|{}{}---|",
        if agents { "---:|---:|" } else { "" },
        if gated { "---|" } else { "" }
    );
    for t in &r.tasks {
        let exit = match (t.exit_code, t.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "-".into(),
        };
        let spend = if agents {
            format!(
                " {} | {} |",
                t.cost_usd.map_or("-".into(), fmt_usd),
                t.tokens.map_or("-".into(), fmt_tokens)
            )
        } else {
            String::new()
        };
        let spend = if gated {
            format!("{spend} {} |", cell(&stages_line(t.last_stages())))
        } else {
            spend
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} {} | {} | {} | {} | {} | {} |{spend} {} |",
            t.index,
            cell(&t.label()),
            if t.critical { " ★" } else { "" },
            t.mark.symbol(),
            t.state,
            t.attempts,
            t.worker.as_deref().map_or("-".into(), cell),
            exit,
            t.duration_ms.map_or("-".into(), fmt_ms),
            fmt_ms(t.queue_wait_ms),
            t.reason
                .as_deref()
                .map_or(String::new(), |r| cell(&cut(r, 200))),
        );
    }
    let _ = writeln!(out, "\n★ on the critical path\n");

    if gated {
        stages_section(&mut out, r);
    }

    if let Some(ji) = &s.integration {
        integration_section(&mut out, r, ji);
    }

    let _ = writeln!(out, "## Critical path\n");
    if r.critical_path.is_empty() {
        let _ = writeln!(out, "No task ran.\n");
    } else {
        for (i, step) in r.critical_path.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}. {} — {} (waited {})",
                i + 1,
                code(&step.name),
                fmt_ms(step.duration_ms),
                fmt_ms(step.waited_ms)
            );
        }
        let _ = writeln!(
            out,
            "\n{} task{}, {} from the first start to the last end; makespan {}.\n",
            r.critical_path.len(),
            if r.critical_path.len() == 1 { "" } else { "s" },
            fmt_ms(s.critical_path_ms),
            fmt_ms(s.makespan_ms)
        );
    }

    let _ = writeln!(out, "## Timeline\n");
    out.push_str(&gantt(r));
    out.push('\n');

    let with_output: Vec<&TaskReport> = r
        .tasks
        .iter()
        .filter(|t| !t.output_tail.is_empty())
        .collect();
    if !with_output.is_empty() {
        let _ = writeln!(out, "## Output\n");
        for t in with_output {
            let text = clean_output(&t.output_tail);
            let _ = writeln!(
                out,
                "### {} ({}, last attempt, {} bytes in all)\n",
                inline(&t.label()),
                t.state,
                t.output_bytes
            );
            let fence = "`".repeat(longest_run(&text, '`').max(2) + 1);
            let _ = writeln!(
                out,
                "{fence}text\n{}\n{fence}\n",
                text.trim_end_matches('\n')
            );
        }
    }
    out
}

/// Every stage record of every gated task, attempt by attempt, with its findings.
fn stages_section(out: &mut String, r: &Report) {
    let _ = writeln!(out, "## Stages\n");
    for t in r.tasks.iter().filter(|t| !t.stages.is_empty()) {
        let _ = writeln!(out, "### {}\n", inline(&t.label()));
        for s in &t.stages {
            let _ = writeln!(out, "- attempt {}: {}", s.attempt, inline(&stage_text(s)));
            for f in &s.record.findings {
                let _ = writeln!(out, "  - {}", inline(&f.to_string()));
            }
        }
        out.push('\n');
    }
}

fn checklist_line(t: &TaskReport) -> String {
    let done = if t.mark == Mark::Pass { 'x' } else { ' ' };
    let mut line = format!("- [{done}] {} **{}**", t.mark.symbol(), inline(&t.label()));
    let _ = write!(
        line,
        " — {} {}",
        t.run.kind,
        run_code(&t.run.text, t.run.kind)
    );
    match &t.verify {
        Some(v) => {
            let result = match v.result {
                VerifyResult::Passed => format!("passed (exit {})", v.exit_code.unwrap_or(0)),
                VerifyResult::Failed => format!(
                    "failed (exit {}, expected {})",
                    v.exit_code.map_or("-".into(), |c| c.to_string()),
                    v.success_code
                ),
                VerifyResult::NotRun => "not run".to_string(),
            };
            let _ = write!(line, " · verify {} → {result}", code(&v.command));
        }
        None => line.push_str(" · no verify command"),
    }
    match t.mark {
        Mark::Pass => {}
        _ => {
            let _ = write!(
                line,
                " · **{}**{}",
                t.state,
                t.reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(": {}", inline(&cut(r, 200))))
            );
        }
    }
    line
}

/// A command or prompt in the checklist: prompts are cut to one readable line.
fn run_code(text: &str, kind: &str) -> String {
    if kind == "prompt" {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        format!("“{}”", inline(&cut(first.trim(), 160)))
    } else {
        code(&cut(text, 400))
    }
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        if ch == c {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// A code span that holds any text: a fence longer than any backtick run inside, newlines as
/// spaces, and `|` escaped so it is safe in a table cell too.
pub fn code(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let fence = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || s.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{}{pad}{fence}", s.replace('|', "\\|"))
}

/// Plain text in Markdown (never at the start of a line): punctuation that could start markup
/// mid-line backslash-escaped, `<` and `&` as entities, line breaks as spaces.
pub fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '&' => out.push_str("&amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn cell(s: &str) -> String {
    inline(s)
}

/// The Mermaid `gantt` block: one line per attempt, `name :tags, id, start, end` with Unix
/// millisecond times (`dateFormat x`), sectioned by worker; tasks that never ran are listed in
/// a comment.
pub fn gantt(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "```mermaid\ngantt");
    let _ = writeln!(out, "    title {}", mermaid_text(&r.job.name));
    let _ = writeln!(out, "    dateFormat x");
    let span = r.summary.makespan_ms;
    let axis = if span < 60_000 {
        "%M:%S.%L"
    } else if span < 86_400_000 {
        "%H:%M:%S"
    } else {
        "%m-%d %H:%M"
    };
    let _ = writeln!(out, "    axisFormat {axis}");
    let mut workers: Vec<&str> = Vec::new();
    let last_run = r.summary.runs.last().map_or(1, |run| run.run);
    for t in &r.tasks {
        for a in t.runs.iter().filter(|a| a.run == last_run) {
            if !workers.contains(&a.worker.as_str()) {
                workers.push(&a.worker);
            }
        }
    }
    // The last run's attempts; earlier runs are in the summary's runs row.
    let last = r.summary.runs.last().map_or(1, |run| run.run);
    for w in workers {
        let _ = writeln!(out, "    section {}", mermaid_text(w));
        let mut lines: Vec<(u64, TaskIndex, String)> = Vec::new();
        for t in &r.tasks {
            let many = t.runs.len() > 1;
            for a in t.runs.iter().filter(|a| a.worker == w && a.run == last) {
                let tag = match a.outcome {
                    RunOutcome::Ended(Outcome::Succeeded) => "done",
                    RunOutcome::Ended(Outcome::Cancelled)
                    | RunOutcome::Conflict
                    | RunOutcome::Unresolved => "active",
                    RunOutcome::Ended(
                        Outcome::Failed | Outcome::VerifyFailed | Outcome::TimedOut,
                    ) => "crit",
                };
                let name = if many {
                    format!("{} (attempt {})", t.label(), a.attempt)
                } else {
                    t.label()
                };
                let end = a.started_ms + a.duration_ms.max(1);
                lines.push((
                    a.started_ms,
                    t.index,
                    format!(
                        "    {} :{tag}, t{}a{}, {}, {end}",
                        mermaid_task(&name),
                        t.index,
                        a.attempt,
                        a.started_ms
                    ),
                ));
            }
        }
        lines.sort();
        for (_, _, l) in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    let never: Vec<String> = r
        .tasks
        .iter()
        .filter(|t| t.runs.is_empty())
        .map(|t| format!("{} ({})", mermaid_text(&t.label()), t.state))
        .collect();
    if !never.is_empty() {
        let _ = writeln!(out, "    %% never ran: {}", never.join(", "));
    }
    let _ = writeln!(out, "```");
    out
}

/// Text for a Mermaid title, section or comment: no characters its grammar reserves, and none
/// its HTML sanitiser would eat or escape twice (`<`, `>`, `&`).
fn mermaid_text(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            ':' | ';' | '#' | '%' => ' ',
            '<' => '‹',
            '>' => '›',
            '&' => '＆',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let t = t.trim().to_string();
    if t.is_empty() { "-".to_string() } else { t }
}

/// A Mermaid task name: reserved characters removed, and never mistaken for a keyword line.
fn mermaid_task(s: &str) -> String {
    let t = mermaid_text(s);
    let lower = t.to_ascii_lowercase();
    const KEYWORDS: &[&str] = &[
        "title",
        "section",
        "dateformat",
        "axisformat",
        "tickinterval",
        "excludes",
        "includes",
        "todaymarker",
        "weekday",
        "weekend",
        "inclusiveenddates",
        "topaxis",
        "acctitle",
        "accdescr",
        "click",
        "displaymode",
        "gantt",
    ];
    if KEYWORDS.iter().any(|k| {
        lower == *k
            || (lower.starts_with(k)
                && lower[k.len()..].starts_with(|c: char| !c.is_alphanumeric()))
    }) {
        format!("task {t}")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_hold_backticks_and_pipes() {
        assert_eq!(code("ls"), "`ls`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("a|b\nc"), "`a\\|b c`");
    }

    #[test]
    fn inline_text_cannot_start_markup() {
        assert_eq!(
            inline("*a* <b> & [c](d) x_y-z.|"),
            "\\*a\\* &lt;b> &amp; \\[c\\](d) x\\_y-z.\\|"
        );
    }

    #[test]
    fn mermaid_names_are_safe() {
        assert_eq!(mermaid_task("build: step #1; ok"), "build  step  1  ok");
        assert_eq!(mermaid_task("title page"), "task title page");
        assert_eq!(mermaid_task("titles"), "titles");
        assert_eq!(mermaid_task("%%x"), "x");
        assert_eq!(mermaid_task(":"), "-");
        assert_eq!(mermaid_text("<a> & b"), "‹a› ＆ b");
    }
}
