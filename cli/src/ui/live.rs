//! `/events?job=ID[&task=N]`: server-sent events while a job runs. The server asks the job
//! client for the job's status every `POLL` (and, following one task, for its output) and
//! sends only what changed since the last answer, one `data:` line of JSON per change set:
//!
//! ```text
//! data: {"job":{"state":"running",...,"succeeded":3,"total":10},"tasks":[{"i":4,"state":"running",...}],"log":null}
//! ```
//!
//! The first message carries every task that is no longer pending (the page may have been
//! rendered a moment before), later ones only tasks whose state, attempts, worker, duration or
//! exit changed. `log` is `{"append": TEXT}` or `{"reset": TEXT}` (cleaned of ANSI escapes
//! and control characters). When the job (or the followed task) has ended, one `end` event is
//! sent and the stream closes: nothing is polled for an ended job, and a request about a job
//! that has already ended gets its final states in one message, then the `end` event (the
//! page may have been rendered just before it ended).
//!
//! `/events/jobs` follows the jobs list the same way (`jobs_events`), for as long as the page
//! is open.
//!
//! A local state directory keeps a task's output when its attempt ends, so there the log
//! follows attempt by attempt; on a cluster it follows the `ORDO_LOGS` stream as it grows.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use ordo_proto::api::{JobSummary, JobsRequest, TaskStatus};
use ordo_proto::{JobId, TaskIndex};
use serde::Deserialize;
use serde_json::{Value, json};

use super::pages::{JOBS_PER_PAGE, duration, job_class, job_cost, running_note};
use super::{ListQuery, Ui};
use crate::jobs;
use crate::manage::render::run_note;
use ordo_report::html::{mark_class, phase_class};
use ordo_report::{Mark, clean_output, fmt_ms};

/// How often a running job's status is asked for.
const POLL: Duration = Duration::from_millis(500);
/// The most of a task's output sent at once.
const LOG_KEEP: usize = 64 * 1024;
/// Give up on a job whose status cannot be read for this many polls in a row.
const MAX_FAILURES: u32 = 120;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    job: String,
    #[serde(default)]
    task: Option<u32>,
}

/// What a page shows of a task; a change in any of it is sent.
#[derive(Clone, PartialEq)]
struct Shown {
    state: ordo_proto::TaskPhase,
    attempts: u32,
    worker: Option<String>,
    duration_ms: Option<u64>,
    exit_code: Option<i32>,
}

impl Shown {
    fn of(t: &TaskStatus) -> Shown {
        Shown {
            state: t.state,
            attempts: t.attempts,
            worker: t.worker.as_ref().map(|w| w.to_string()),
            duration_ms: t.duration_ms,
            exit_code: t.exit_code,
        }
    }

    fn json(&self, index: TaskIndex) -> Value {
        let mark = Mark::of(self.state);
        json!({
            "i": index.0,
            "state": self.state.name(),
            "class": phase_class(self.state),
            "mark": mark.symbol(),
            "markClass": mark_class(mark),
            "attempts": self.attempts,
            "worker": self.worker.as_deref().unwrap_or("-"),
            "duration": self.duration_ms.map_or("-".into(), fmt_ms),
            "exit": self.exit_code.map_or("-".into(), |c| c.to_string()),
        })
    }
}

fn job_json(j: &JobSummary) -> Value {
    let mark = match j.state {
        ordo_proto::JobState::Succeeded => Mark::Pass,
        ordo_proto::JobState::Failed => Mark::Fail,
        ordo_proto::JobState::Cancelled => Mark::Cancelled,
        _ => Mark::Pending,
    };
    json!({
        "state": j.state.name(),
        "class": job_class(j.state),
        "mark": mark.symbol(),
        "markClass": mark_class(mark),
        "succeeded": j.succeeded,
        "failed": j.failed,
        "running": j.running,
        "total": j.total,
    })
}

/// Following one job (and maybe one task of it).
struct Follow {
    ui: Arc<Ui>,
    job: JobId,
    task: Option<TaskIndex>,
    shown: HashMap<TaskIndex, Shown>,
    job_shown: Option<Value>,
    log_total: Option<u64>,
    first: bool,
    ended: bool,
    closed: bool,
    failures: u32,
}

pub async fn events(State(ui): State<Arc<Ui>>, Query(q): Query<EventsQuery>) -> Response {
    let job = match ui.jobs.resolve(&q.job).await {
        Ok(j) => j,
        Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    };
    let status = match ui.jobs.status(job).await {
        Ok(s) => s,
        Err(e) => {
            let code = match e {
                jobs::Error::NotFound { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return (code, e.to_string()).into_response();
        }
    };
    let task = q.task.map(TaskIndex);
    let task_ended = task.is_some_and(|i| {
        status
            .tasks
            .iter()
            .any(|t| t.index == i && t.state.is_terminal())
    });
    let follow = Follow {
        ui,
        job,
        task,
        shown: HashMap::new(),
        job_shown: None,
        log_total: None,
        first: true,
        ended: status.summary.state.is_terminal() || task_ended,
        closed: false,
        failures: 0,
    };
    Sse::new(stream(follow))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn stream(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    })
}

impl Follow {
    /// The next event: a change set, a problem, or the end (then `None`).
    async fn next(&mut self) -> Option<Event> {
        if self.closed {
            return None;
        }
        loop {
            // A job that had ended when the page asked still gets its final states once.
            if self.ended && !self.first {
                self.closed = true;
                let state = match self.ui.jobs.status(self.job).await {
                    Ok(s) => s.summary.state.name(),
                    Err(_) => "unknown",
                };
                return Some(
                    Event::default()
                        .event("end")
                        .data(json!({ "state": state }).to_string()),
                );
            }
            if !self.first {
                tokio::time::sleep(POLL).await;
            }
            let status = match self.ui.jobs.status(self.job).await {
                Ok(s) => s,
                Err(e) => {
                    self.failures += 1;
                    if matches!(e, jobs::Error::NotFound { .. }) || self.failures >= MAX_FAILURES {
                        self.ended = true;
                    }
                    self.first = false;
                    return Some(
                        Event::default()
                            .event("problem")
                            .data(json!({ "message": e.to_string() }).to_string()),
                    );
                }
            };
            self.failures = 0;
            let first = std::mem::take(&mut self.first);
            let mut tasks = Vec::new();
            for t in &status.tasks {
                if self.task.is_some_and(|i| i != t.index) {
                    continue;
                }
                let now = Shown::of(t);
                let changed = match self.shown.get(&t.index) {
                    Some(before) => *before != now,
                    None => !first || t.state != ordo_proto::TaskPhase::Pending,
                };
                if changed {
                    tasks.push(now.json(t.index));
                }
                self.shown.insert(t.index, now);
            }
            let job = job_json(&status.summary);
            let job_changed = self.job_shown.as_ref() != Some(&job);
            self.job_shown = Some(job.clone());
            let log = match self.task {
                Some(i) => self.log(i).await,
                None => Value::Null,
            };
            let task_ended = self
                .task
                .is_some_and(|i| self.shown.get(&i).is_some_and(|s| s.state.is_terminal()));
            self.ended = status.summary.state.is_terminal() || task_ended;
            if tasks.is_empty() && !job_changed && log.is_null() {
                continue;
            }
            let data = json!({ "job": job, "tasks": tasks, "log": log });
            return Some(Event::default().data(data.to_string()));
        }
    }

    /// New output of the followed task since the last look, if any.
    async fn log(&mut self, task: TaskIndex) -> Value {
        let out = match self.ui.jobs.output(self.job, Some(task), LOG_KEEP).await {
            Ok(o) => o,
            Err(_) => return Value::Null,
        };
        let Some((total, bytes)) = out.get(&task) else {
            return Value::Null;
        };
        let before = self.log_total.replace(*total);
        match before {
            Some(b) if b == *total => Value::Null,
            Some(b) if b < *total && ((*total - b) as usize) <= bytes.len() => {
                let new = &bytes[bytes.len() - (*total - b) as usize..];
                json!({ "append": clean_output(&String::from_utf8_lossy(new)) })
            }
            _ => json!({ "reset": clean_output(&String::from_utf8_lossy(bytes)) }),
        }
    }
}

/// `/events/jobs?state=&q=&page=`: the jobs list while the page is open (the script pauses it
/// while the tab is hidden). Every `JOBS_POLL` the job client's list, with the page's filter,
/// is read and the rows that changed are sent (`{"jobs":[{"id":..,"created":..,"state":..,
/// ..}]}`); the first message carries every row. The page counts as new the jobs created
/// after the newest it was rendered with. The stream lasts as long as the page.
pub async fn jobs_events(State(ui): State<Arc<Ui>>, Query(q): Query<ListQuery>) -> Response {
    let mut request = match q.request() {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    // Newest first: the page's rows, and room for jobs submitted since.
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    request.limit = Some(page.saturating_mul(JOBS_PER_PAGE).saturating_add(100));
    let follow = FollowJobs {
        ui,
        request,
        shown: HashMap::new(),
        listed: false,
        failures: 0,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        let event = f.next().await;
        Some((Ok::<_, Infallible>(event), f))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// How often the jobs list is read for an open jobs page.
const JOBS_POLL: Duration = Duration::from_secs(1);

struct FollowJobs {
    ui: Arc<Ui>,
    /// The page's filter.
    request: JobsRequest,
    /// What each job's row shows, by id.
    shown: HashMap<JobId, Value>,
    /// The list was read once (the first message carries every row).
    listed: bool,
    failures: u32,
}

impl FollowJobs {
    async fn next(&mut self) -> Event {
        loop {
            if self.listed || self.failures > 0 {
                tokio::time::sleep(JOBS_POLL * (1 + self.failures.min(10))).await;
            }
            let list = match self.ui.jobs.list(&self.request).await {
                Ok(l) => l,
                Err(e) => {
                    self.failures += 1;
                    return Event::default()
                        .event("problem")
                        .data(json!({ "message": e.to_string() }).to_string());
                }
            };
            self.failures = 0;
            let first = !std::mem::replace(&mut self.listed, true);
            let now = ordo_proto::now_ms();
            let mut rows = Vec::new();
            let mut show = |j: &JobSummary, shown: &mut HashMap<JobId, Value>| {
                let mut row = job_json(j);
                row["id"] = json!(j.id.to_string());
                row["created"] = json!(j.created_ms);
                row["count"] = json!(format!("{}/{}", j.succeeded, j.total));
                row["runningNote"] = json!(running_note(j.running));
                row["duration"] =
                    json!(duration(j.run_start(), j.finished_ms, now) + &run_note(j.retries));
                row["cost"] = json!(job_cost(j));
                if shown.get(&j.id) != Some(&row) {
                    rows.push(row.clone());
                }
                shown.insert(j.id, row);
            };
            for j in &list {
                show(j, &mut self.shown);
            }
            // A job that left the filter (`?state=running`, and it ended): its row shows how
            // it stands now, once, and it is followed no more.
            let listed: std::collections::HashSet<JobId> = list.iter().map(|j| j.id).collect();
            let gone: Vec<JobId> = self
                .shown
                .keys()
                .filter(|id| !listed.contains(id))
                .copied()
                .collect();
            for id in gone {
                if let Ok(j) = self.ui.jobs.summary(id).await {
                    show(&j, &mut self.shown);
                }
                self.shown.remove(&id);
            }
            if rows.is_empty() && !first {
                continue;
            }
            return Event::default().data(json!({ "jobs": rows }).to_string());
        }
    }
}
