//! The coordinator's API verbs (`ordo.api.<verb>`, JSON bodies, proto `api`): one handler per
//! verb. Handlers run on the loop between two turns; what they change (a submitted job, a
//! cancel, a retry) goes through the driver, and their reply is sent only after the commit that
//! records it.

use std::collections::BTreeSet;
use std::sync::Arc;

use ordo_proto::api::{self, ApiError, ApiReply, ErrorKind};
use ordo_proto::validate::validate;
use ordo_proto::{JobId, JobState, Millis, TaskPhase, names, wire};
use serde::Serialize;

use super::Service;
use crate::engine::{Again, Change, Event, JobOptions, retry_records};
use crate::store::JobRecord;
use crate::views;

/// The verbs, parsed once from the request's subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Submit,
    Status,
    Jobs,
    Cancel,
    Retry,
    Workers,
    Report,
    Prune,
}

impl Verb {
    pub(crate) fn parse(name: &str) -> Option<Verb> {
        Some(match name {
            api::SUBMIT => Verb::Submit,
            api::STATUS => Verb::Status,
            api::JOBS => Verb::Jobs,
            api::CANCEL => Verb::Cancel,
            api::RETRY => Verb::Retry,
            api::WORKERS => Verb::Workers,
            api::REPORT => Verb::Report,
            api::PRUNE => Verb::Prune,
            _ => return None,
        })
    }
}

/// A handler's answer: the JSON of what goes under `ok` (kept as bytes: a large reply is never
/// built as a `serde_json::Value` tree), or the error.
type Reply = Result<Vec<u8>, ApiError>;

impl Service {
    /// Answers one request; the reply body is `ApiReply` JSON.
    pub(super) async fn api(
        &mut self,
        now: Millis,
        verb: Option<Verb>,
        name: &str,
        body: &[u8],
    ) -> Vec<u8> {
        let result = match verb {
            Some(Verb::Submit) => self.submit(now, body).await,
            Some(Verb::Status) => self.status(body),
            Some(Verb::Jobs) => self.jobs(body),
            Some(Verb::Cancel) => self.cancel(now, body),
            Some(Verb::Retry) => self.retry(now, body),
            Some(Verb::Workers) => Ok(to_json(self.workers.list())),
            Some(Verb::Report) => self.report(body),
            Some(Verb::Prune) => self.prune(now, body).await,
            None => Err(ApiError::new(
                ErrorKind::Invalid,
                format!("unknown API verb '{name}'"),
            )),
        };
        match result {
            Ok(ok) => {
                let mut body = Vec::with_capacity(ok.len() + 8);
                body.extend_from_slice(br#"{"ok":"#);
                body.extend_from_slice(&ok);
                body.push(b'}');
                body
            }
            Err(e) => serde_json::to_vec(&ApiReply::<()>::Error(e)).unwrap_or_default(),
        }
    }

    async fn submit(&mut self, now: Millis, body: &[u8]) -> Reply {
        let req: api::SubmitRequest = parse(body)?;
        let tasks = req.spec.tasks.len();
        let max = self.opts.max_tasks.min(names::MAX_TASKS);
        if tasks > max {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                format!(
                    "{}: {tasks} tasks; this coordinator accepts at most {max} tasks per job \
                     (ordo-coordinator --max-tasks)",
                    spec_label(&req)
                ),
            ));
        }
        if req.spec.uses_worktrees() && req.spec.settings.repository.is_none() {
            // The coordinator has no working directory to find a repository from; the CLI
            // fills this in from where it runs.
            return Err(ApiError::new(
                ErrorKind::Invalid,
                format!(
                    "{}: settings.repository: workspace = \"worktree\" on a cluster needs the \
                     repository, a path or URL every worker can reach",
                    req.spec.name
                ),
            ));
        }
        let dag = validate(&req.spec).map_err(|errs| {
            let text: Vec<String> = errs
                .iter()
                .map(|e| format!("{}: {e}", req.spec.name))
                .collect();
            ApiError::new(ErrorKind::Invalid, text.join("\n"))
        })?;
        let queues: BTreeSet<String> = req
            .spec
            .tasks
            .iter()
            .map(|t| req.spec.queue(t).to_string())
            .collect();
        for q in &queues {
            self.ensure_queue(q)
                .await
                .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        }
        let slots = self.workers.slots(&queues);
        let options = JobOptions {
            default_mode: req.default_mode,
            max_parallel: req.max_parallel,
            seed: now,
            slots: (slots > 0).then_some(slots),
        };
        let rec = JobRecord::new(JobId::new(), req.spec, req.source, options, now);
        self.store.insert_job(&rec).map_err(internal)?;
        self.traces.job(rec.id, &rec.name, now, &rec.spec);
        self.driver.apply(
            now,
            Event::Submit {
                job: rec.id,
                spec: Arc::new(rec.spec),
                dag: Arc::new(dag),
                options: rec.options,
                saved: None,
            },
        );
        Ok(to_json(api::SubmitReply { job: rec.id }))
    }

    fn status(&mut self, body: &[u8]) -> Reply {
        let r: api::StatusRequest = parse(body)?;
        if r.summary_only {
            let summary = self.summary(&r.job)?;
            let omitted = summary.total;
            return Ok(to_json(api::JobStatus {
                summary,
                tasks: Vec::new(),
                omitted,
                page: None,
            }));
        }
        let (page, page_size, states) = match r.page {
            Some(page) => {
                let size = r.page_size.unwrap_or(api::DEFAULT_PAGE_SIZE);
                (page, size.clamp(1, api::MAX_PAGE_SIZE), r.states)
            }
            None => {
                // The whole list, trimmed to one message (older clients, the MCP server, the
                // dashboard, `watch`). A job too large to list whole even without output
                // loses its succeeded and pending tasks in `status_within` anyway: read only
                // the others.
                let total = match self.driver.engine().tasks(&r.job) {
                    Some(tasks) => tasks.len(),
                    None => self.store.task_count(&r.job).map_err(internal)?,
                };
                if total.saturating_mul(views::MIN_TASK_JSON) <= api::MAX_REPLY_BYTES {
                    let status = views::status(&self.store, &r.job)
                        .map_err(internal)?
                        .ok_or_else(|| not_found(&r.job))?;
                    return Ok(views::status_within(status, api::MAX_REPLY_BYTES));
                }
                let shown = TaskPhase::ALL
                    .into_iter()
                    .filter(|p| !matches!(p, TaskPhase::Succeeded | TaskPhase::Pending))
                    .collect();
                (1, usize::MAX, shown)
            }
        };
        let whole = r.page.is_none();
        // A live job's summary, states and spec are in memory: only the page is read.
        let live_summary = match self.driver.engine().has_job(&r.job) {
            true => Some(self.summary(&r.job)?),
            false => None,
        };
        let engine = self.driver.engine();
        let live = match (engine.tasks(&r.job), engine.spec(&r.job), live_summary) {
            (Some(tasks), Some(spec), Some(summary)) => Some((tasks, spec, summary)),
            _ => None,
        };
        let mut status = views::status_page(
            &self.store,
            &r.job,
            live,
            page,
            page_size,
            &states,
            r.task.as_deref(),
        )
        .map_err(internal)?
        .ok_or_else(|| not_found(&r.job))?;
        if whole {
            // As `status_within` makes it: no output tails, no page.
            status.page = None;
            for t in &mut status.tasks {
                t.output_tail = None;
            }
            return Ok(views::status_within(status, api::MAX_REPLY_BYTES));
        }
        Ok(to_json(status))
    }

    fn jobs(&self, body: &[u8]) -> Reply {
        let req = if body.is_empty() {
            api::JobsRequest::default()
        } else {
            parse::<api::JobsRequest>(body)?
        };
        views::jobs(&self.store, &req)
            .map(to_json)
            .map_err(internal)
    }

    fn cancel(&mut self, now: Millis, body: &[u8]) -> Reply {
        let job = parse::<api::JobRef>(body)?.job;
        let rec = self.record(&job)?;
        if self.driver.engine().has_job(&job) {
            self.driver.apply(
                now,
                Event::Cancel {
                    job,
                    reason: "cancelled by user".into(),
                },
            );
        }
        let tasks = self.store.tasks(&job).map_err(internal)?;
        Ok(to_json(views::summary(&rec, &tasks)))
    }

    fn retry(&mut self, now: Millis, body: &[u8]) -> Reply {
        let req: api::RetryRequest = parse(body)?;
        let job = req.job;
        let rec = self.record(&job)?;
        if self.driver.engine().has_job(&job) {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                format!("job {job} is still {}", rec.state),
            ));
        }
        req.check_budget()
            .map_err(|why| ApiError::new(ErrorKind::Invalid, why))?;
        let dag = validate(&rec.spec)
            .map_err(|_| ApiError::new(ErrorKind::Internal, "stored spec no longer validates"))?;
        let scope = Again::of(&req, &dag).map_err(|why| ApiError::new(ErrorKind::Invalid, why))?;
        let saved = self.store.tasks(&job).map_err(internal)?;
        let again = retry_records(&saved, &dag, scope);
        self.driver.record(Change::Job {
            job,
            state: JobState::Running,
            at: now,
            reason: None,
        });
        // Its live summary counts from this run's start (as the store will).
        self.headers.insert(
            job,
            views::Header {
                run_started_ms: Some(now),
                retries: rec.retries + 1,
                ..views::Header::of(&rec)
            },
        );
        let mut spec = rec.spec.clone();
        if req.max_cost_usd.is_some() || req.max_tokens.is_some() {
            // A new budget from now on: recorded in the stored spec too.
            self.driver.record(Change::Budget {
                job,
                max_cost_usd: req.max_cost_usd,
                max_tokens: req.max_tokens,
            });
            spec.settings.max_cost_usd = req.max_cost_usd.or(spec.settings.max_cost_usd);
            spec.settings.max_tokens = req.max_tokens.or(spec.settings.max_tokens);
        }
        self.driver.apply(
            now,
            Event::Submit {
                job,
                spec: Arc::new(spec),
                dag: Arc::new(dag),
                options: rec.options.clone(),
                saved: Some(again.into()),
            },
        );
        let mut summary = views::summary(&rec, &saved);
        summary.state = JobState::Running;
        summary.run_started_ms = Some(now);
        summary.retries = rec.retries + 1;
        summary.finished_ms = None;
        Ok(to_json(summary))
    }

    /// A job's records for `ordo report`, output tails cut only if the reply would be larger
    /// than `api::MAX_LARGE_REPLY_BYTES`.
    fn report(&self, body: &[u8]) -> Reply {
        let r: api::ReportRequest = parse(body)?;
        let job = match r.job {
            Some(job) => job,
            None => crate::report::latest(&self.store)
                .map_err(internal)?
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "no jobs yet"))?,
        };
        let data = crate::report::gather(&self.store, &job)
            .map_err(internal)?
            .ok_or_else(|| not_found(&job))?;
        // Larger than one message, it goes through the object store (`Service::reply`).
        let limit = api::MAX_LARGE_REPLY_BYTES;
        data.to_json_within(limit).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                format!(
                    "the report of job {job} is larger than {limit} bytes even without task \
                     output"
                ),
            )
        })
    }

    /// Removes old finished jobs, or (`job`) only what one finished job's attempts kept; the
    /// workers remove the worktrees and task branches (`ordo.control.prune`, best effort: a
    /// worker that is down keeps its cache's until the next prune).
    async fn prune(&self, now: Millis, body: &[u8]) -> Reply {
        let r: api::PruneRequest = parse(body)?;
        let pruned = match r.job {
            Some(job) => {
                let rec = self.record(&job)?;
                if rec.finished_ms.is_none() {
                    return Err(ApiError::new(
                        ErrorKind::Invalid,
                        format!("job {job} has not finished: its worktrees are in use"),
                    ));
                }
                self.prune_worktrees(&rec).await;
                return Ok(to_json(api::PruneReply { removed: 0 }));
            }
            None => self.store.prune(now, r.older_than_ms).map_err(internal)?,
        };
        for rec in &pruned {
            self.prune_worktrees(rec).await;
        }
        Ok(to_json(api::PruneReply {
            removed: pruned.len(),
        }))
    }

    /// Asks every worker to remove what `rec`'s attempts kept, if it is a worktree job.
    async fn prune_worktrees(&self, rec: &JobRecord) {
        let Some(repository) = rec.spec.settings.repository.clone() else {
            return;
        };
        if !rec.spec.uses_worktrees() {
            return;
        }
        let msg = wire::Prune {
            job: rec.id,
            repository,
        };
        let _ = self
            .client
            .publish(names::CONTROL_PRUNE, wire::encode(&msg).into())
            .await;
    }

    fn record(&self, job: &JobId) -> Result<JobRecord, ApiError> {
        self.store
            .job(job)
            .map_err(internal)?
            .ok_or_else(|| not_found(job))
    }

    /// A job's summary for cheap polling: a live job's comes from the engine's memory (its
    /// name and creation time read once), so polling a large job costs no store reads.
    fn summary(&mut self, id: &JobId) -> Result<api::JobSummary, ApiError> {
        let engine = self.driver.engine();
        self.headers.retain(|job, _| engine.has_job(job));
        if let (Some(_), None) = (engine.tasks(id), self.headers.get(id))
            && let Some(job) = self.store.job(id).map_err(internal)?
        {
            self.headers.insert(*id, views::Header::of(&job));
        }
        let engine = self.driver.engine();
        let live = match (engine.tasks(id), engine.job_state(id), self.headers.get(id)) {
            (Some(tasks), Some(state), Some(header)) => Some((tasks, state, header)),
            _ => None,
        };
        views::summary_of(&self.store, id, live)
            .map_err(internal)?
            .ok_or_else(|| not_found(id))
    }
}

/// How errors name a submitted spec: its file and job, or the job alone.
fn spec_label(req: &api::SubmitRequest) -> String {
    if req.source.is_empty() || req.source == req.spec.name {
        format!("job '{}'", req.spec.name)
    } else {
        format!("{} (job '{}')", req.source, req.spec.name)
    }
}

fn to_json<T: Serialize>(v: T) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_else(|_| b"null".to_vec())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorKind::Invalid, format!("bad request: {e}")))
}

fn internal(e: crate::store::Error) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

fn not_found(job: &JobId) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no job {job}"))
}
