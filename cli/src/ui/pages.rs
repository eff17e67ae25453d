//! The dashboard's pages as HTML strings, rendered from the job client's answers: pure
//! functions of their data (and `now`), so they are tested without a server. Every piece of
//! job data goes through `esc`; task output also through `clean_output` (ANSI escapes and
//! control characters dropped). Colours, check marks and the Gantt are the HTML report's
//! (`report::html`), so a job looks the same in both.
//!
//! Elements the live script updates carry `data-task` (a task's row or graph node) and
//! `data-f` (which field); the body's `data-live-job` / `data-live-task` tell the script what
//! to follow, and are only set while the job runs.

use std::fmt::Write;

use axum::http::StatusCode;
use ordo_proto::api::ReportData;
use ordo_proto::api::{ApprovalView, JobSummary, PoolStatus, WorkerInfo};
use ordo_proto::gates::Verdict;
use ordo_proto::{JobState, TaskIndex, TaskPhase};

use super::graph_svg;
use super::{JobQuery, ListQuery};
use crate::manage::render::{fmt_cost, pool_line, run_note};
use ordo_report::html::{
    LEGEND, esc, gantt, integration_section, mark_html, phase_class, verify_html,
};
use ordo_report::{self as report, Mark, Report, TaskReport, clean_output, cut, fmt_ms};

/// Jobs per page of the list.
pub const JOBS_PER_PAGE: usize = 50;
/// Tasks per page of a job's grid (and its timeline).
pub const TASKS_PER_PAGE: usize = 100;

/// What every page needs to know about the server.
pub struct Context<'a> {
    pub csrf: &'a str,
    pub read_only: bool,
    /// Jobs run in this process (a state directory): there are no workers.
    pub local: bool,
    pub trace_url: Option<&'a str>,
}

/// The colour class of a job state (the task colours: running blue, failed red, ...).
pub fn job_class(s: JobState) -> &'static str {
    match s {
        JobState::Pending => "o-pending",
        JobState::Running => "o-running",
        JobState::Succeeded => "o-succeeded",
        JobState::Failed => "o-failed",
        JobState::Cancelled => "o-cancelled",
    }
}

fn job_mark(s: JobState) -> Mark {
    match s {
        JobState::Pending | JobState::Running => Mark::Pending,
        JobState::Succeeded => Mark::Pass,
        JobState::Failed => Mark::Fail,
        JobState::Cancelled => Mark::Cancelled,
    }
}

/// A state chip: colour, mark and name; the live script rewrites all three.
fn chip(class: &str, mark: Mark, name: &str, field: &str) -> String {
    format!(
        "<span class=\"st {class}\" data-f=\"{field}\">{}<i>{}</i></span>",
        mark_html(mark),
        esc(name)
    )
}

fn task_chip(p: TaskPhase) -> String {
    chip(phase_class(p), Mark::of(p), p.name(), "state")
}

fn job_chip(s: JobState) -> String {
    chip(job_class(s), job_mark(s), s.name(), "job-state")
}

/// What a page follows live: the body's data attributes `assets/ui.js` reads.
enum Live {
    Nothing,
    /// The jobs list (`/events/jobs`), rendered with jobs up to this creation time.
    Jobs(u64),
    /// A running job, or one running task of it (`/events?job=ID[&task=N]`).
    Job(String, Option<u32>),
}

/// The page around `body`.
fn layout(ctx: &Context, title: &str, live: Live, body: &str) -> String {
    let live_attrs = match &live {
        Live::Nothing => String::new(),
        Live::Jobs(newest) => format!(" data-live-jobs=\"{newest}\""),
        Live::Job(job, task) => format!(
            " data-live-job=\"{}\"{}",
            esc(job),
            task.map_or(String::new(), |t| format!(" data-live-task=\"{t}\""))
        ),
    };
    let mut badges = String::new();
    if ctx.read_only {
        badges.push_str("<span class=\"badge\">read-only</span>");
    }
    if ctx.local {
        badges.push_str("<span class=\"badge\">local</span>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · ordo</title>\n<link rel=\"stylesheet\" href=\"/assets/ui.css\">\n\
         <script src=\"/assets/ui.js\" defer></script>\n</head>\n<body{live_attrs}>\n\
         <header class=\"top\"><a class=\"brand\" href=\"/\">ordo</a><nav><a href=\"/\">Jobs</a>\
         <a href=\"/workers\">Workers</a></nav>{badges}</header>\n<main>\n{body}</main>\n\
         </body>\n</html>\n",
        esc(title)
    )
}

fn csrf_field(ctx: &Context) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(ctx.csrf)
    )
}

/// A one-button form posting to `action`; disabled (with why) when `why_not` says so.
fn action(ctx: &Context, action: &str, label: &str, why_not: Option<&str>, danger: bool) -> String {
    let why_not = if ctx.read_only {
        Some("read-only dashboard")
    } else {
        why_not
    };
    let (disabled, title) = match why_not {
        Some(w) => (" disabled", format!(" title=\"{}\"", esc(w))),
        None => ("", String::new()),
    };
    format!(
        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\"{}{disabled}{title}>{}</button></form>",
        esc(action),
        csrf_field(ctx),
        if danger { " class=\"danger\"" } else { "" },
        esc(label)
    )
}

/// What a job's agents cost, or "-".
pub(crate) fn job_cost(j: &JobSummary) -> String {
    j.cost_usd.map_or("-".into(), fmt_cost)
}

/// "(3 running)" beside a job's progress, or nothing.
pub(crate) fn running_note(running: usize) -> String {
    match running {
        0 => String::new(),
        n => format!("({n} running)"),
    }
}

pub(crate) fn duration(created: u64, finished: Option<u64>, now: u64) -> String {
    fmt_ms(finished.unwrap_or(now).saturating_sub(created))
}

fn time(ms: u64) -> String {
    let (date, t) = report::utc(ms);
    format!("{date} {}", &t[..8])
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Prev/next links for page `page` (from 1) of `pages`.
fn pager(base: &str, extra: &[(&str, String)], page: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let link = |p: usize, label: &str| {
        let mut pairs = extra.to_vec();
        pairs.push(("page", p.to_string()));
        format!(
            "<a href=\"{}{}\">{label}</a>",
            esc(base),
            esc(&query_string(&pairs))
        )
    };
    let mut out = String::from("<nav class=\"pager\">");
    if page > 1 {
        out.push_str(&link(1, "« first"));
        out.push_str(&link(page - 1, "‹ prev"));
    }
    let _ = write!(out, "<span>page {page} of {pages}</span>");
    if page < pages {
        out.push_str(&link(page + 1, "next ›"));
        out.push_str(&link(pages, "last »"));
    }
    out.push_str("</nav>\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Jobs

pub fn jobs(ctx: &Context, list: &[JobSummary], q: &ListQuery, now: u64) -> String {
    let mut b = String::new();
    let state = q.state.clone().unwrap_or_default();
    let text = q.q.clone().unwrap_or_default();
    let pages = list.len().div_ceil(JOBS_PER_PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let _ = writeln!(
        b,
        "<h1>Jobs</h1>\n<p data-f=\"new-jobs\" hidden><a href=\"\"></a></p>"
    );
    let _ = write!(
        b,
        "<form class=\"filter\" method=\"get\" action=\"/\"><label>state <select name=\"state\">\
         <option value=\"\">any</option>"
    );
    for s in JobState::ALL {
        let _ = write!(
            b,
            "<option{}>{}</option>",
            if state == s.name() { " selected" } else { "" },
            s.name()
        );
    }
    let _ = writeln!(
        b,
        "</select></label> <label>search <input type=\"search\" name=\"q\" value=\"{}\" \
         placeholder=\"job or task name\"></label> <button type=\"submit\">Filter</button></form>",
        esc(&text)
    );
    if list.is_empty() {
        let _ = writeln!(
            b,
            "<p class=\"muted\">No jobs{}.</p>",
            if state.is_empty() && text.is_empty() {
                ""
            } else {
                " match"
            }
        );
    } else {
        let _ = writeln!(
            b,
            "<div class=\"scroll\"><table class=\"grid\">\n<thead><tr><th>state</th><th>job</th>\
             <th>progress</th><th class=\"num\">failed</th><th>created (UTC)</th>\
             <th class=\"num\">duration</th><th class=\"num\">cost</th></tr></thead>\n<tbody>"
        );
        for j in list
            .iter()
            .skip((page - 1) * JOBS_PER_PAGE)
            .take(JOBS_PER_PAGE)
        {
            let _ = writeln!(
                b,
                "<tr data-job=\"{id}\"><td>{}</td><td><a href=\"/jobs/{id}\">{}</a><br>\
                 <code class=\"id\">{id}</code></td><td><progress data-f=\"progress\" max=\"{}\" \
                 value=\"{}\"></progress> <span data-f=\"count\">{}/{}</span> \
                 <span class=\"muted\" data-f=\"running\">{}</span></td>\
                 <td class=\"num\" data-f=\"failed\">{}</td><td>{}</td>\
                 <td class=\"num\" data-f=\"duration\">{}</td>\
                 <td class=\"num\" data-f=\"cost\">{}</td></tr>",
                job_chip(j.state),
                esc(&j.name),
                j.total.max(1),
                j.succeeded,
                j.succeeded,
                j.total,
                running_note(j.running),
                j.failed,
                time(j.created_ms),
                duration(j.run_start(), j.finished_ms, now) + &run_note(j.retries),
                job_cost(j),
                id = j.id,
            );
        }
        let _ = writeln!(b, "</tbody></table></div>");
        b.push_str(&pager(
            "/",
            &[("state", state.clone()), ("q", text.clone())],
            page,
            pages,
        ));
    }
    // Submitting: a spec pasted in (any format `ordo validate` reads).
    let disabled = if ctx.read_only { " disabled" } else { "" };
    let _ = writeln!(
        b,
        "<details class=\"submit\"{}><summary>Submit a job</summary>\
         <form method=\"post\" action=\"/jobs\">{}\
         <label>spec (ordo TOML or JSON, Prompter TOML, subtasks JSON, tasks.json, Markdown)\
         <textarea name=\"spec\" rows=\"12\" spellcheck=\"false\" required{disabled}></textarea></label>\
         <label>settings overlay (optional TOML <code>[settings]</code> laid over the spec's, as \
         <code>--with FILE</code>: e.g. <code>workspace = \"worktree\"</code>, \
         <code>max_cost_usd = 5</code>)\
         <textarea name=\"with\" rows=\"4\" spellcheck=\"false\"{disabled}></textarea></label>\
         <label>format <select name=\"format\"{disabled}><option value=\"\">detect</option>\
         <option>toml</option><option>json</option><option>subtasks</option>\
         <option>markdown-json</option><option>taskmaster</option><option>markdown</option>\
         </select></label> <button type=\"submit\"{disabled}>Submit</button>{}</form></details>",
        if list.is_empty() { " open" } else { "" },
        csrf_field(ctx),
        if ctx.read_only {
            " <span class=\"muted\">(read-only dashboard)</span>"
        } else if ctx.local {
            " <span class=\"muted\">(runs in this dashboard's process)</span>"
        } else {
            ""
        }
    );
    let newest = list.iter().map(|j| j.created_ms).max().unwrap_or(0);
    layout(ctx, "Jobs", Live::Jobs(newest), &b)
}

// ---------------------------------------------------------------------------------------------
// A job

fn exit_text(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => format!("signal {s}"),
        _ => "-".into(),
    }
}

/// A task's stages (its last attempt's) as chips: the stage's name coloured by its last
/// verdict, its rounds when more than one, who decided an approval.
fn stage_chips(t: &TaskReport) -> String {
    report::stage_summaries(t.last_stages())
        .iter()
        .map(|s| {
            let verdict = Verdict::name_or_none(s.verdict);
            let mut title = verdict.to_string();
            if s.rounds > 1 {
                title.push_str(&format!(", {} rounds", s.rounds));
            }
            if let Some(by) = s.by {
                title.push_str(&format!(", by {by}"));
            }
            format!(
                " <span class=\"stage v-{verdict}\" title=\"{}\">{} {}</span>",
                esc(&title),
                report::verdict_symbol(s.verdict),
                esc(s.name)
            )
        })
        .collect()
}

fn task_row(job: &str, t: &TaskReport) -> String {
    format!(
        "<tr data-task=\"{i}\"><td class=\"num muted\">{i}</td><td><a href=\"/jobs/{job}/tasks/{i}\">{}</a>{}{}</td>\
         <td>{}</td><td class=\"num\" data-f=\"attempts\">{}</td><td data-f=\"worker\">{}</td>\
         <td class=\"num\" data-f=\"duration\">{}</td><td class=\"num\" data-f=\"exit\">{}</td>\
         <td class=\"num\">{}</td></tr>\n",
        esc(&cut(&t.label(), 120)),
        if t.critical {
            " <span class=\"crit\" title=\"critical path\">★</span>"
        } else {
            ""
        },
        stage_chips(t),
        task_chip(t.state),
        t.attempts,
        esc(t.worker.as_deref().unwrap_or("-")),
        t.duration_ms.map_or("-".into(), fmt_ms),
        exit_text(t.exit_code, t.signal),
        t.cost_usd.map_or("-".into(), fmt_cost),
        i = t.index,
    )
}

fn trace_link(ctx: &Context, job: &ordo_proto::JobId) -> String {
    let id = ordo_plumbing::telemetry::trace_id(job).to_string();
    match ctx.trace_url {
        Some(t) => format!(
            "<a href=\"{}\"><code>{id}</code></a>",
            esc(&t.replace("{trace_id}", &id))
        ),
        None => format!("<code>{id}</code>"),
    }
}

pub fn job(
    ctx: &Context,
    data: &ReportData,
    pools: &[PoolStatus],
    q: &JobQuery,
    now: u64,
) -> String {
    let r = report::build(data);
    let rec = &data.job.summary;
    let id = rec.id.to_string();
    let running = !rec.state.is_terminal();
    let mut b = String::new();
    let counts = |p: &[TaskPhase]| r.tasks.iter().filter(|t| p.contains(&t.state)).count();
    let succeeded = counts(&[TaskPhase::Succeeded]);
    let failed = counts(&[TaskPhase::Failed, TaskPhase::TimedOut]);
    let active = counts(&[
        TaskPhase::Dispatched,
        TaskPhase::Running,
        TaskPhase::Integrating,
    ]);
    let _ = writeln!(
        b,
        "<p class=\"crumbs\"><a href=\"/\">Jobs</a> ›</p>\n<h1>{} {}</h1>",
        esc(&rec.name),
        job_chip(rec.state)
    );
    let _ = writeln!(
        b,
        "<div class=\"facts\"><div><b><progress data-f=\"progress\" max=\"{}\" value=\"{succeeded}\"></progress> \
         <span data-f=\"succeeded\">{succeeded}</span>/{}</b><span>succeeded</span></div>\
         <div><b data-f=\"failed\">{failed}</b><span>failed</span></div>\
         <div><b data-f=\"running\">{active}</b><span>running</span></div>\
         <div><b>{}</b><span>duration{}{}</span></div><div><b>{}</b><span>created (UTC)</span></div>\
         <div><b>{}</b><span>mode</span></div><div><b><code class=\"id\">{id}</code></b><span>job id</span></div>\
         <div><b>{}</b><span>trace id</span></div><div><b>{}</b><span>source</span></div>{}</div>",
        r.tasks.len().max(1),
        r.tasks.len(),
        duration(rec.run_start(), rec.finished_ms, now),
        if running { " so far" } else { "" },
        run_note(rec.retries),
        time(rec.created_ms),
        esc(&r.job.mode),
        trace_link(ctx, &rec.id),
        esc(&cut(&data.job.source, 60)),
        r.summary.cost_usd.map_or(String::new(), |c| format!(
            "<div><b>{}</b><span>agents' cost</span></div>",
            fmt_cost(c)
        )),
    );
    if let Some(d) = &data.job.spec.description {
        let _ = writeln!(b, "<p>{}</p>", esc(d));
    }
    // A line per pool: the places it grants now, and when a rate limit last brought it down.
    for p in pools {
        let _ = writeln!(b, "<p class=\"pool\">{}</p>", esc(&pool_line(p, now)));
    }
    // What each model cost and how often its runs succeeded; what escalation cost.
    ordo_report::html::models(&mut b, &r.summary);
    // The integration queue: batches, speculative runs, the wait to integrate.
    ordo_report::html::queue(&mut b, &r.summary);
    if let Some(why) = &rec.reason {
        let _ = writeln!(b, "<p class=\"note\">{}</p>", esc(why));
    }
    // Actions.
    let _ = writeln!(
        b,
        "<div class=\"actions\">{}{}{}</div>",
        action(
            ctx,
            &format!("/jobs/{id}/cancel"),
            "Cancel",
            (!running).then_some("the job has ended"),
            true
        ),
        action(
            ctx,
            &format!("/jobs/{id}/retry"),
            "Retry failed",
            (rec.state != JobState::Failed).then_some("only a failed job is retried"),
            false
        ),
        action(
            ctx,
            &format!("/jobs/{id}/rerun"),
            "Re-run",
            running.then_some("the job is still running"),
            false
        ),
    );
    if running {
        let _ = writeln!(
            b,
            "<p class=\"live\" data-f=\"live\"><span class=\"dot\"></span>live: states update as \
             the job runs (<a href=\"/jobs/{id}\">reload</a> for the timeline)</p>"
        );
    }

    // Graph.
    let dag = ordo_proto::validate::validate(&data.job.spec).ok();
    if let Some(dag) = &dag {
        let phases: Vec<TaskPhase> = r.tasks.iter().map(|t| t.state).collect();
        let labels: Vec<String> = r.tasks.iter().map(TaskReport::label).collect();
        let mut critical: Vec<bool> = r.tasks.iter().map(|t| t.critical).collect();
        if !critical.contains(&true) {
            for i in dag.critical_path() {
                critical[i as usize] = true;
            }
        }
        let _ = writeln!(
            b,
            "<h2>Graph</h2>\n<p class=\"muted\">Levels left to right; <b>bold</b> outline: \
             critical path{}; a box with a count stands for tasks with the same \
             dependencies.</p>\n<div class=\"scroll graph\">{}</div>",
            if r.critical_path.is_empty() {
                " (longest chain)"
            } else {
                " (as it ran)"
            },
            graph_svg::render(&id, dag, &labels, &phases, &critical)
        );
    }

    // Tasks grid, filtered and paged.
    let filter = q.state.as_deref().map(str::trim).unwrap_or("");
    let shown: Vec<&TaskReport> = r
        .tasks
        .iter()
        .filter(|t| {
            filter.is_empty()
                || t.state.name() == filter
                || (filter == "active" && !t.state.is_terminal())
        })
        .collect();
    let pages = shown.len().div_ceil(TASKS_PER_PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let on_page: Vec<&TaskReport> = shown
        .iter()
        .copied()
        .skip((page - 1) * TASKS_PER_PAGE)
        .take(TASKS_PER_PAGE)
        .collect();
    let _ = write!(
        b,
        "<h2>Tasks</h2>\n<form class=\"filter\" method=\"get\" action=\"/jobs/{id}\"><label>state \
         <select name=\"state\"><option value=\"\">any</option>"
    );
    for name in std::iter::once("active").chain(TaskPhase::ALL.iter().map(|p| p.name())) {
        let _ = write!(
            b,
            "<option{}>{name}</option>",
            if filter == name { " selected" } else { "" }
        );
    }
    let _ = writeln!(
        b,
        "</select></label> <button type=\"submit\">Filter</button> <span class=\"muted\">{} of {} tasks</span></form>",
        shown.len(),
        r.tasks.len()
    );
    let _ = writeln!(
        b,
        "<div class=\"scroll\"><table class=\"grid\">\n<thead><tr><th class=\"num\" \
         title=\"the task's position in the job, from 0 (not its id: that is in the task column)\">pos</th><th>task</th>\
         <th>state</th><th class=\"num\">attempts</th><th>worker</th><th class=\"num\">duration</th>\
         <th class=\"num\">exit</th><th class=\"num\">cost</th></tr></thead>\n<tbody>"
    );
    for t in &on_page {
        b.push_str(&task_row(&id, t));
    }
    let _ = writeln!(b, "</tbody></table></div>");
    b.push_str(&pager(
        &format!("/jobs/{id}"),
        &[("state", filter.to_string())],
        page,
        pages,
    ));

    // Timeline of this page's tasks.
    if on_page
        .iter()
        .any(|t| !t.runs.is_empty() || t.ended_ms.is_some())
    {
        let page_report = Report {
            job: r.job.clone(),
            summary: r.summary.clone(),
            tasks: on_page.iter().map(|t| (*t).clone()).collect(),
            critical_path: Vec::new(),
            notes: Vec::new(),
        };
        let _ = writeln!(
            b,
            "<h2>Timeline</h2>{}{LEGEND}<div class=\"scroll\">{}</div>",
            if pages > 1 {
                "<p class=\"muted\">The tasks of this page, on the job's time axis.</p>"
            } else {
                ""
            },
            gantt(&page_report)
        );
    }

    if let Some(ji) = &r.summary.integration {
        let mut s = String::new();
        integration_section(&mut s, &r, ji);
        b.push_str(&s);
    }

    if !r.critical_path.is_empty() {
        let _ = writeln!(b, "<h2>Critical path</h2>\n<ol class=\"path\">");
        let len = r.critical_path.len();
        for (k, step) in r.critical_path.iter().enumerate() {
            if len > 40 && k == 20 {
                let _ = writeln!(b, "<li class=\"muted\">… {} more …</li>", len - 40);
            }
            if len > 40 && (20..len - 20).contains(&k) {
                continue;
            }
            let _ = writeln!(
                b,
                "<li><a href=\"/jobs/{id}/tasks/{}\"><code>{}</code></a> — {} <span class=\"muted\">(waited {})</span></li>",
                step.index,
                esc(&cut(&step.name, 80)),
                fmt_ms(step.duration_ms),
                fmt_ms(step.waited_ms)
            );
        }
        let _ = writeln!(b, "</ol>");
    }
    let live = match running {
        true => Live::Job(id.clone(), None),
        false => Live::Nothing,
    };
    layout(ctx, &rec.name, live, &b)
}

// ---------------------------------------------------------------------------------------------
// A task

/// A task awaiting approval: what the person deciding sees (the files it changed with their
/// line counts, its verify output, its cost so far) and the Approve / Reject forms, left out
/// of a read-only dashboard.
fn approval_section(ctx: &Context, job: &str, t: &TaskReport, a: &ApprovalView) -> String {
    let mut b = format!(
        "<section class=\"approval\"><h2>Awaiting approval: {}</h2>\n<p>Waiting since {} (UTC)",
        esc(&a.stage),
        time(a.since_ms)
    );
    if let Some(d) = a.deadline_ms {
        let _ = write!(b, "; decided by its timeout at {} (UTC)", time(d));
    }
    if let Some(c) = &a.commit {
        let _ = write!(b, "; commit <code>{}</code>", esc(&c[..c.len().min(12)]));
    }
    if let Some(c) = a.cost_usd {
        let _ = write!(b, "; cost so far <b>{}</b>", esc(&fmt_cost(c)));
    }
    b.push_str(".</p>\n");
    let _ = writeln!(
        b,
        "<table class=\"grid files\"><thead><tr><th>file changed</th><th class=\"num\">added</th>\
         <th class=\"num\">removed</th></tr></thead><tbody>"
    );
    for f in &a.files {
        let _ = writeln!(
            b,
            "<tr><td><code>{}</code></td><td class=\"num\">+{}</td><td class=\"num\">-{}</td></tr>",
            esc(&f.path),
            f.added,
            f.removed
        );
    }
    let _ = writeln!(b, "</tbody></table>");
    if !a.verify_output.is_empty() {
        let _ = writeln!(
            b,
            "<h3>Verify output</h3>\n<pre class=\"log\">{}</pre>",
            esc(&clean_output(&a.verify_output))
        );
    }
    if ctx.read_only {
        let _ = writeln!(
            b,
            "<p class=\"muted\">Read-only dashboard: decide with <code>ordo approve {job} {}</code> \
             or <code>ordo reject {job} {} --reason TEXT</code>.</p>",
            esc(&t.name),
            esc(&t.name)
        );
    } else {
        let _ = writeln!(
            b,
            "<div class=\"actions decide\">\
             <form method=\"post\" action=\"/jobs/{job}/tasks/{i}/approve\">{csrf}\
             <label>comment <input name=\"comment\" placeholder=\"optional\"></label>\
             <button type=\"submit\" name=\"approve\">Approve</button></form>\
             <form method=\"post\" action=\"/jobs/{job}/tasks/{i}/reject\">{csrf}\
             <label>reason <input name=\"reason\" required></label>\
             <button type=\"submit\" name=\"reject\" class=\"danger\">Reject</button></form></div>",
            i = t.index,
            csrf = csrf_field(ctx)
        );
    }
    b.push_str("</section>\n");
    b
}

/// A task's stage records, attempt by attempt: verdict, round, findings, duration, cost,
/// session, who decided.
fn stages_table(t: &TaskReport) -> String {
    let mut b = String::from(
        "<h2>Stages</h2>\n<div class=\"scroll\"><table class=\"grid stages\"><thead><tr>\
         <th class=\"num\">attempt</th><th>stage</th><th class=\"num\">round</th><th>verdict</th>\
         <th class=\"num\">duration</th><th class=\"num\">cost</th><th>session</th><th>findings</th>\
         </tr></thead><tbody>\n",
    );
    for s in &t.stages {
        let r = &s.record;
        let verdict = Verdict::name_or_none(r.verdict);
        let mut notes: Vec<String> = r.findings.iter().map(|f| esc(&f.to_string())).collect();
        if let Some(by) = &r.by {
            notes.push(format!("by <b>{}</b>", esc(by)));
        }
        for text in r.comment.iter().chain(Some(&r.message)) {
            if !text.is_empty() {
                notes.push(esc(&cut(text, 300)));
            }
        }
        let _ = writeln!(
            b,
            "<tr><td class=\"num\">{}</td><td>{}{}</td><td class=\"num\">{}</td>\
             <td><span class=\"stage v-{verdict}\">{} {verdict}</span></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            s.attempt,
            esc(&r.name),
            r.kind.map_or(String::new(), |k| format!(
                " <span class=\"muted\">{}</span>",
                k.name()
            )),
            r.round,
            report::verdict_symbol(r.verdict),
            fmt_ms(r.duration_ms),
            s.cost_usd.map_or("-".into(), fmt_cost),
            esc(s.session.as_deref().unwrap_or("-")),
            notes.join("<br>")
        );
    }
    b.push_str("</tbody></table></div>\n");
    b
}

pub fn task(
    ctx: &Context,
    data: &ReportData,
    index: TaskIndex,
    approval: Option<&ApprovalView>,
) -> String {
    let r = report::build(data);
    let rec = &data.job.summary;
    let id = rec.id.to_string();
    let Some(t) = r.tasks.get(index.get()) else {
        return error(ctx, StatusCode::NOT_FOUND, "no such task");
    };
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<p class=\"crumbs\"><a href=\"/\">Jobs</a> › <a href=\"/jobs/{id}\">{}</a> ›</p>\n\
         <h1 data-task=\"{}\">{} {}</h1>",
        esc(&rec.name),
        t.index,
        esc(&t.label()),
        task_chip(t.state)
    );
    let _ = writeln!(
        b,
        "<div class=\"facts\"><div><b>{}</b><span>position in the job (from 0)</span></div>\
         <div><b>{}</b><span>attempts</span></div><div><b>{}</b><span>job</span></div>\
         <div><b>{}</b><span>trace id</span></div>{}</div>",
        t.index,
        t.attempts,
        job_chip(rec.state).replace("data-f=\"job-state\"", ""),
        trace_link(ctx, &rec.id),
        if t.critical {
            "<div><b>★</b><span>on the critical path</span></div>"
        } else {
            ""
        }
    );
    let _ = writeln!(
        b,
        "<div class=\"actions\">{}</div>",
        action(
            ctx,
            &format!("/jobs/{id}/tasks/{}/retry", t.index),
            "Retry this task",
            (!rec.state.is_terminal()).then_some("the job is still running"),
            false
        )
    );
    if let Some(why) = &t.reason {
        let _ = writeln!(b, "<p class=\"note\">{}</p>", esc(why));
    }
    if let Some(a) = approval.filter(|_| t.state == TaskPhase::AwaitingApproval) {
        b.push_str(&approval_section(ctx, &id, t, a));
    }
    if !t.stages.is_empty() {
        b.push_str(&stages_table(t));
    }
    let _ = writeln!(
        b,
        "<h2>{}</h2>\n<pre class=\"run\">{}</pre>",
        match t.run.kind {
            "prompt" => "Prompt",
            "argv" => "Program (argv)",
            _ => "Command",
        },
        esc(&t.run.text)
    );
    match &t.verify {
        Some(v) => {
            let result = verify_html(v);
            let _ = writeln!(
                b,
                "<h2>Verify</h2>\n<pre class=\"run\">{}</pre><p>{result}</p>",
                esc(&v.command)
            );
        }
        None => {
            let _ = writeln!(b, "<p class=\"muted\">No verify command.</p>");
        }
    }
    if !t.depends_on.is_empty() {
        let names: Vec<String> = t
            .depends_on
            .iter()
            .map(|d| {
                match data
                    .job
                    .spec
                    .tasks
                    .iter()
                    .position(|s| s.name.as_str() == d)
                {
                    Some(i) => format!(
                        "<a href=\"/jobs/{id}/tasks/{i}\"><code>{}</code></a>",
                        esc(&data.job.spec.tasks[i].label())
                    ),
                    None => format!("<code>{}</code>", esc(d)),
                }
            })
            .collect();
        let _ = writeln!(b, "<p>Depends on: {}</p>", names.join(", "));
    }

    let _ = writeln!(b, "<h2>Attempts</h2>");
    if t.runs.is_empty() {
        let _ = writeln!(b, "<p class=\"muted\">No attempt has ended yet.</p>");
    } else {
        let _ = writeln!(
            b,
            "<div class=\"scroll\"><table class=\"grid\"><thead><tr><th class=\"num\">#</th><th>outcome</th>\
             <th>worker</th><th>started (UTC)</th><th class=\"num\">duration</th><th class=\"num\">exit</th>\
             <th class=\"num\">verify exit</th><th class=\"num\">cost</th><th>session</th><th>message</th></tr></thead><tbody>"
        );
        // A retried job's earlier runs: their attempts faded, with the run they belong to.
        let last_run = r.summary.runs.last().map_or(1, |run| run.run);
        for a in &t.runs {
            let outcome = a.outcome.to_string();
            let _ = writeln!(
                b,
                "<tr{}><td class=\"num\">{}{}</td><td><span class=\"st o-{}\"><i>{}</i></span></td><td>{}</td>\
                 <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                if a.run < last_run {
                    " class=\"muted\" title=\"an earlier run of the job\""
                } else {
                    ""
                },
                a.attempt,
                if last_run > 1 {
                    format!(" <span class=\"muted\">(run {})</span>", a.run)
                } else {
                    String::new()
                },
                esc(&outcome),
                esc(&outcome),
                esc(&a.worker),
                time(a.started_ms),
                fmt_ms(a.duration_ms),
                exit_text(a.exit_code, a.signal),
                a.verify_exit_code.map_or("-".into(), |c| c.to_string()),
                a.agent
                    .as_ref()
                    .and_then(|g| g.cost_usd)
                    .map_or("-".into(), fmt_cost),
                esc(a
                    .agent
                    .as_ref()
                    .and_then(|g| g.session_id.as_deref())
                    .unwrap_or("-")),
                esc(&cut(&a.message, 300))
            );
        }
        let _ = writeln!(b, "</tbody></table></div>");
    }
    if let Some(it) = &t.integration {
        let mut queue = format!("waited to integrate {}", fmt_ms(t.integration_wait_ms));
        if let Some(sp) = &t.speculation {
            queue.push_str(&format!(
                "; speculative runs: {}",
                report::speculation_text(sp)
            ));
        }
        let _ = writeln!(
            b,
            "<h2>Integration</h2><p>Branch <code>{}</code>: {}{}{}</p><p class=\"muted\">{}</p>",
            esc(&it.branch),
            esc(&it.outcome),
            it.commit.as_deref().map_or(String::new(), |c| format!(
                ", commit <code>{}</code>",
                esc(&c[..c.len().min(12)])
            )),
            if it.conflicts.is_empty() {
                String::new()
            } else {
                format!(
                    "; conflicts: {}",
                    esc(&it
                        .conflicts
                        .iter()
                        .map(|c| c.files.join(", "))
                        .collect::<Vec<_>>()
                        .join("; "))
                )
            },
            esc(&queue)
        );
    }

    let following = !rec.state.is_terminal() && !t.state.is_terminal();
    if following {
        let _ = writeln!(
            b,
            "<p class=\"live\" data-f=\"live\"><span class=\"dot\"></span>live: the state and \
             the output follow the task while it runs</p>"
        );
    }
    let _ = writeln!(
        b,
        "<h2>Output</h2>\n<p class=\"muted\" data-f=\"log-note\">{}</p>\n<pre class=\"log\" data-f=\"log\">{}</pre>",
        if t.output_bytes == 0 && t.output_tail.is_empty() {
            "No output recorded yet.".to_string()
        } else if t.output_bytes > t.output_tail.len() as u64 {
            format!(
                "The last part of {} bytes (the last attempt's).",
                t.output_bytes
            )
        } else {
            format!("{} bytes (the last attempt's).", t.output_bytes)
        },
        esc(&clean_output(&t.output_tail))
    );
    let live = match following {
        true => Live::Job(id.clone(), Some(t.index.0)),
        false => Live::Nothing,
    };
    layout(ctx, &format!("{} · {}", t.label(), rec.name), live, &b)
}

// ---------------------------------------------------------------------------------------------
// Workers, login, errors

pub fn workers(ctx: &Context, list: &[WorkerInfo]) -> String {
    let mut b = String::from("<h1>Workers</h1>\n");
    if ctx.local {
        b.push_str(
            "<p class=\"muted\">This dashboard serves a local state directory: its jobs run in \
             the dashboard's own process, with no workers.</p>\n",
        );
    } else if list.is_empty() {
        b.push_str("<p class=\"muted\">The coordinator has heard from no worker.</p>\n");
    } else {
        let _ = writeln!(
            b,
            "<div class=\"scroll\"><table class=\"grid\"><thead><tr><th>worker</th><th>host</th>\
             <th>queues</th><th class=\"num\">slots</th><th class=\"num\">busy</th>\
             <th class=\"num\">CPUs</th><th class=\"num\">memory</th><th>last heartbeat</th></tr></thead><tbody>"
        );
        for w in list {
            let h = &w.heartbeat;
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} MB</td><td>{} ago</td></tr>",
                esc(&h.worker),
                if h.draining {
                    " <span class=\"badge\">draining</span>"
                } else {
                    ""
                },
                esc(&h.host),
                esc(&h.queues.join(", ")),
                h.slots,
                h.busy,
                h.cpus,
                h.memory_mb,
                fmt_ms(w.age_ms)
            );
        }
        let _ = writeln!(b, "</tbody></table></div>");
    }
    layout(ctx, "Workers", Live::Nothing, &b)
}

pub fn login(ctx: &Context, next: &str, problem: Option<&str>) -> String {
    let b = format!(
        "<h1>Log in</h1>\n{}<p>This dashboard needs its access token (the contents of the \
         server's <code>--token-file</code>).</p>\n<form method=\"post\" action=\"/login\" class=\"login\">{}\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><label>token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
         <button type=\"submit\">Log in</button></form>\n",
        problem.map_or(String::new(), |p| format!(
            "<p class=\"note\">{}</p>\n",
            esc(p)
        )),
        csrf_field(ctx),
        esc(next)
    );
    layout(ctx, "Log in", Live::Nothing, &b)
}

pub fn error(ctx: &Context, status: StatusCode, message: &str) -> String {
    let b = format!(
        "<h1>{} {}</h1>\n<pre class=\"error\">{}</pre>\n<p><a href=\"/\">All jobs</a></p>\n",
        status.as_u16(),
        esc(status.canonical_reason().unwrap_or("error")),
        esc(message)
    );
    layout(
        ctx,
        status.canonical_reason().unwrap_or("error"),
        Live::Nothing,
        &b,
    )
}

#[cfg(test)]
mod tests {
    use ordo_proto::wire::Heartbeat;

    use super::*;
    use crate::manage::tests::summary;

    fn ctx(read_only: bool) -> Context<'static> {
        Context {
            csrf: "c5rf",
            read_only,
            local: false,
            trace_url: None,
        }
    }

    #[test]
    fn the_jobs_list_escapes_pages_and_filters() {
        let mut list = Vec::new();
        for i in 0..120 {
            let mut s = summary(JobState::Running);
            s.name = format!("<img src=x onerror=alert({i})> \"q\"");
            list.push(s);
        }
        let q = ListQuery {
            state: Some("running".into()),
            q: Some("a&b \"c\"".into()),
            page: Some(3),
        };
        let html = jobs(&ctx(false), &list, &q, 2_000_000);
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;img src=x onerror=alert(100)&gt; &quot;q&quot;"));
        assert_eq!(
            html.matches("data-f=\"job-state\"").count(),
            20,
            "the last page"
        );
        assert!(html.contains("page 3 of 3"));
        assert!(html.contains("value=\"a&amp;b &quot;c&quot;\""));
        assert!(html.contains("href=\"/?state=running&amp;q=a%26b%20%22c%22&amp;page=2\""));
        assert!(html.contains("<option selected>running</option>"));
        assert!(html.contains("name=\"csrf\" value=\"c5rf\""));
        assert!(!html.contains(" disabled"));
        let ro = jobs_page_read_only();
        assert!(
            ro.contains("<button type=\"submit\" disabled>Submit</button>"),
            "{ro}"
        );
    }

    /// A task awaiting approval: its files, verify output and cost, and the Approve / Reject
    /// forms with the csrf field, which a read-only dashboard leaves out.
    #[test]
    fn an_awaiting_task_shows_what_is_decided_and_the_forms() {
        use ordo_proto::api::{ReportJob, ReportTask, StateAt};
        let spec = ordo_proto::JobSpec {
            name: "j".into(),
            tasks: vec![ordo_proto::TaskSpec::shell("migrate", "true")],
            ..Default::default()
        };
        let data = ReportData {
            job: ReportJob {
                summary: summary(JobState::Running),
                source: "j.toml".into(),
                spec,
                updated_ms: 0,
                default_mode: None,
                max_parallel: None,
                slots: None,
            },
            tasks: vec![ReportTask {
                state: StateAt {
                    state: TaskPhase::AwaitingApproval,
                    at: Some(1_000),
                    reason: None,
                },
                attempts: 1,
                conflicts: 0,
            }],
            attempts: Vec::new(),
            history: Vec::new(),
            ignored_results: Vec::new(),
            tails_cut_to: None,
        };
        let view = ApprovalView {
            stage: "sign-off".into(),
            since_ms: 1_000,
            files: vec![ordo_proto::FileLines {
                path: "migrations/<1>.sql".into(),
                added: 40,
                removed: 2,
            }],
            verify_output: "checked <ok>".into(),
            cost_usd: Some(0.25),
            ..Default::default()
        };
        let html = task(&ctx(false), &data, TaskIndex(0), Some(&view));
        assert!(html.contains("Awaiting approval: sign-off"), "{html}");
        assert!(
            html.contains("<code>migrations/&lt;1&gt;.sql</code>"),
            "{html}"
        );
        assert!(html.contains(">+40<") && html.contains(">-2<"), "{html}");
        assert!(html.contains("checked &lt;ok&gt;"), "{html}");
        assert!(html.contains("$0.2500"), "{html}");
        let id = data.job.summary.id;
        for verb in ["approve", "reject"] {
            let form = format!(
                "<form method=\"post\" action=\"/jobs/{id}/tasks/0/{verb}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"c5rf\">"
            );
            assert!(html.contains(&form), "{form} not in {html}");
        }
        assert!(html.contains("name=\"reason\" required"));
        let ro = task(&ctx(true), &data, TaskIndex(0), Some(&view));
        assert!(ro.contains("Awaiting approval: sign-off"));
        assert!(
            !ro.contains("/approve\"") && !ro.contains("/reject\""),
            "{ro}"
        );
        assert!(ro.contains("ordo approve"), "{ro}");
    }

    /// Proves the job page shows the spend and success of each model its agents ran.
    #[test]
    fn the_job_page_shows_spend_per_model() {
        use ordo_proto::api::{ReportJob, ReportTask, StateAt};
        use ordo_proto::{AgentRun, Attempt, Dispatch, Outcome, Program, TaskResult};
        let mut t = ordo_proto::TaskSpec::shell("impl", "true");
        t.command = None;
        t.prompt = Some("do it".into());
        let spec = ordo_proto::JobSpec {
            name: "j".into(),
            tasks: vec![t],
            ..Default::default()
        };
        let summary = summary(JobState::Succeeded);
        let d = Dispatch::new(
            summary.id,
            ordo_proto::TaskName::new("impl").unwrap(),
            TaskIndex(0),
            Attempt(1),
            Program::Argv(vec!["claude".into()]),
        );
        let mut run = TaskResult::new(&d, "local".into(), Outcome::Succeeded, 0, "");
        run.agent = Some(Box::new(AgentRun {
            model: Some("opus-<4>".into()),
            cost_usd: Some(0.5),
            input_tokens: 1000,
            ..Default::default()
        }));
        let data = ReportData {
            job: ReportJob {
                summary,
                source: "j.toml".into(),
                spec,
                updated_ms: 0,
                default_mode: None,
                max_parallel: None,
                slots: None,
            },
            tasks: vec![ReportTask {
                state: StateAt {
                    state: TaskPhase::Succeeded,
                    at: Some(1_000),
                    reason: None,
                },
                attempts: 1,
                conflicts: 0,
            }],
            attempts: vec![run],
            history: Vec::new(),
            ignored_results: Vec::new(),
            tails_cut_to: None,
        };
        let html = job(&ctx(false), &data, &[], &JobQuery::default(), 2_000);
        assert!(html.contains("<table class=\"models\">"), "{html}");
        assert!(html.contains("<td>opus-&lt;4&gt;</td>"), "{html}");
        assert!(html.contains("1/1 (100%)"), "{html}");
    }

    /// Proves the job page shows the integration queue's figures from the job's records:
    /// batches (sizes, verifies run and saved, bisections), speculative runs kept and
    /// discarded with their cost, and the time tasks waited to integrate.
    #[test]
    fn the_job_page_shows_the_integration_queue() {
        use ordo_proto::api::{HistoryChange, HistoryEntry, ReportJob, ReportTask, StateAt};
        use ordo_proto::{Attempt, Integration, IntegrationSettings, WorkspaceMode};
        let mut spec = ordo_proto::JobSpec {
            name: "j".into(),
            tasks: vec![
                ordo_proto::TaskSpec::shell("a", "true"),
                ordo_proto::TaskSpec::shell("b", "true"),
            ],
            ..Default::default()
        };
        spec.settings.workspace = Some(WorkspaceMode::Worktree);
        spec.settings.integration = Some(IntegrationSettings {
            batch: Some(2),
            speculate: Some("verified".into()),
            ..IntegrationSettings::default()
        });
        let state = |state, at| StateAt {
            state,
            at: Some(at),
            reason: None,
        };
        let entry = |at, change| HistoryEntry { at, change };
        let moved = |i, phase, at| {
            entry(
                at,
                HistoryChange::Task {
                    index: TaskIndex(i),
                    state: state(phase, at),
                },
            )
        };
        let history = vec![
            moved(0, TaskPhase::Integrating, 1_000),
            moved(1, TaskPhase::Integrating, 1_500),
            entry(
                2_000,
                HistoryChange::Batch {
                    tasks: vec![TaskIndex(0), TaskIndex(1)],
                    verified: true,
                    bisected: false,
                    voided: false,
                },
            ),
            entry(
                2_000,
                HistoryChange::Speculation {
                    index: TaskIndex(1),
                    attempt: Attempt(1),
                    on: vec![TaskIndex(0)],
                    kept: false,
                    cost_usd: Some(0.5),
                },
            ),
            entry(
                3_000,
                HistoryChange::Integrated {
                    index: TaskIndex(1),
                    attempt: Attempt(2),
                    branch: "ordo/b".into(),
                    outcome: Integration::Merged {
                        commit: "0123456789ab".into(),
                        files: vec!["b.rs".into()],
                    },
                    with: None,
                },
            ),
            moved(0, TaskPhase::Succeeded, 3_000),
            moved(1, TaskPhase::Succeeded, 3_000),
        ];
        let done = ReportTask {
            state: state(TaskPhase::Succeeded, 3_000),
            attempts: 1,
            conflicts: 0,
        };
        let data = ReportData {
            job: ReportJob {
                summary: summary(JobState::Succeeded),
                source: "j.toml".into(),
                spec,
                updated_ms: 3_000,
                default_mode: None,
                max_parallel: None,
                slots: None,
            },
            tasks: vec![done.clone(), done],
            attempts: Vec::new(),
            history,
            ignored_results: Vec::new(),
            tails_cut_to: None,
        };
        let html = job(&ctx(false), &data, &[], &JobQuery::default(), 4_000);
        assert!(html.contains("<h3>Integration queue</h3>"), "{html}");
        for line in [
            "Batches: 1 (sizes 2), 0 bisection(s); integration verifies run 1, saved 1.",
            "Speculative runs: 0 kept, 1 discarded ($0.5000).",
            "Waiting to integrate: 3.50 s in all, at most 2.00 s for one task.",
        ] {
            assert!(
                html.contains(&format!("<p>{line}</p>")),
                "{line} not in:\n{html}"
            );
        }
        // Once: the job's integration section below does not repeat it.
        assert_eq!(html.matches("Batches: ").count(), 1, "{html}");
        // The task's page: its own wait and speculative runs.
        let html = task(&ctx(false), &data, TaskIndex(1), None);
        assert!(
            html.contains("waited to integrate 1.50 s; speculative runs: 0 kept, 1 discarded"),
            "{html}"
        );
    }

    fn jobs_page_read_only() -> String {
        jobs(&ctx(true), &[], &ListQuery::default(), 0)
    }

    #[test]
    fn workers_and_errors_are_text() {
        let w = WorkerInfo {
            heartbeat: Heartbeat {
                worker: "w<1>".into(),
                host: "h\"ost".into(),
                queues: vec!["default".into(), "<gpu>".into()],
                slots: 4,
                busy: 1,
                cpus: 2.0,
                memory_mb: 512,
                draining: true,
                at_ms: 0,
                note: None,
            },
            age_ms: 1500,
        };
        let html = workers(&ctx(false), &[w]);
        assert!(html.contains("<code>w&lt;1&gt;</code>"));
        assert!(html.contains("h&quot;ost"));
        assert!(html.contains("default, &lt;gpu&gt;"));
        assert!(html.contains("draining"));
        assert!(html.contains("1.50 s ago"));
        let e = error(&ctx(false), StatusCode::NOT_FOUND, "no job '<x>'");
        assert!(e.contains("no job &#39;&lt;x&gt;&#39;"));
        let l = login(&ctx(false), "/jobs/\"><script>", Some("wrong token"));
        assert!(l.contains("value=\"/jobs/&quot;&gt;&lt;script&gt;\""));
        assert!(!l.contains("<script>"));
    }
}
