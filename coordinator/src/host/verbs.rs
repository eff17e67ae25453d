//! The verbs, once for every executor and transport: typed requests in, typed replies out.
//! What a verb changes (a submitted job, a cancel, a retry) goes through the driver; its
//! transport sends the reply only after the commit that records it (`Host::settled`).

use std::collections::BTreeSet;
use std::sync::Arc;

use ordo_proto::api::{
    self, ApiError, DecideRequest, ErrorKind, JobStatus, JobSummary, JobsRequest, OutputReply,
    OutputRequest, PruneReply, PruneRequest, ReportData, ReportRequest, RetryRequest,
    StatusRequest, SubmitReply, SubmitRequest, TaskOutput, WorkerInfo,
};
use ordo_proto::validate::validate;
use ordo_proto::{JobId, JobState, Millis, TaskIndex, TaskPhase, names};

use super::{Executor, Host};
use crate::engine::{Again, Change, Decision, Event, JobOptions, retry_records};

use crate::store::JobRecord;
use crate::views;

/// The reason recorded for jobs cancelled through the API.
pub const CANCEL_REASON: &str = "cancelled by user";

type Reply<T> = Result<T, ApiError>;

impl<E: Executor> Host<E> {
    /// Records a new job and starts it. The spec's workspace settings are definite already
    /// (the client resolved the repository from where it runs).
    pub async fn submit(&mut self, now: Millis, req: SubmitRequest) -> Reply<SubmitReply> {
        let tasks = req.spec.tasks.len();
        let max = self.limits.max_tasks.min(names::MAX_TASKS);
        if tasks > max {
            return Err(invalid(format!(
                "{}: {tasks} tasks; this coordinator accepts at most {max} tasks per job \
                 (ordo-coordinator --max-tasks)",
                spec_label(&req)
            )));
        }
        if req.spec.uses_worktrees() && req.spec.settings.repository.is_none() {
            return Err(invalid(format!(
                "{}: settings.repository: workspace = \"worktree\" needs the repository, a \
                 path (or on a cluster a URL) every worker can reach",
                req.spec.name
            )));
        }
        let dag = validate(&req.spec).map_err(|errs| {
            let text: Vec<String> = errs
                .iter()
                .map(|e| format!("{}: {e}", req.spec.name))
                .collect();
            invalid(text.join("\n"))
        })?;
        let queues: BTreeSet<String> = req
            .spec
            .tasks
            .iter()
            .map(|t| req.spec.queue(t).to_string())
            .collect();
        self.executor
            .open_queues(&queues)
            .await
            .map_err(|e| ApiError::new(ErrorKind::Internal, e))?;
        let slots = self.executor.slots(&queues, &req.spec, req.max_parallel);
        self.refresh_capacity(now);
        let options = JobOptions {
            default_mode: req.default_mode,
            max_parallel: req.max_parallel,
            seed: now,
            slots: (slots > 0).then_some(slots),
        };
        let rec = JobRecord::new(JobId::new(), req.spec, req.source, options, now);
        self.store.insert_job(&rec).map_err(internal)?;
        self.traces.job(rec.id, &rec.name, now, &rec.spec);
        let spec = Arc::new(rec.spec);
        self.notifier.watch(rec.id, &spec);
        self.driver.apply(
            now,
            Event::Submit {
                job: rec.id,
                spec,
                dag: Arc::new(dag),
                options: rec.options,
                saved: None,
            },
        );
        Ok(SubmitReply { job: rec.id })
    }

    /// A job's summary and tasks: one page of them, or (no page asked) the whole list trimmed
    /// to one API message.
    pub fn status(&mut self, r: &StatusRequest) -> Reply<JobStatus> {
        let mut status = self.task_status(r)?;
        let engine = self.driver.engine();
        let record;
        let spec = match engine.spec(&r.job) {
            Some(spec) => spec,
            // An ended job's spec is in its record, read only when its tasks are asked for.
            None if r.summary_only => return Ok(status),
            None => {
                record = self.record(&r.job)?;
                &record.spec
            }
        };
        status.pools = views::pools(spec, engine.pool_limits());
        (status.batches, status.speculation) =
            views::queue(&self.store, spec, &r.job).map_err(internal)?;
        Ok(status)
    }

    /// `status` without the pools and the integration queue.
    fn task_status(&mut self, r: &StatusRequest) -> Reply<JobStatus> {
        if r.summary_only {
            let summary = self.summary(&r.job)?;
            let omitted = summary.total;
            return Ok(JobStatus {
                pools: Vec::new(),
                batches: None,
                speculation: None,
                summary,
                tasks: Vec::new(),
                omitted,
                page: None,
            });
        }
        let (page, page_size, states) = match r.page {
            Some(page) => {
                let size = r.page_size.unwrap_or(api::DEFAULT_PAGE_SIZE);
                (page, size.clamp(1, api::MAX_PAGE_SIZE), r.states.clone())
            }
            None => {
                // The whole list, trimmed to one message (the MCP server, the dashboard,
                // `watch`). A job too large to list whole even without output loses its
                // succeeded and pending tasks in `fit` anyway: read only the others.
                let total = match self.driver.engine().tasks(&r.job) {
                    Some(tasks) => tasks.len(),
                    None => self.store.task_count(&r.job).map_err(internal)?,
                };
                if total.saturating_mul(views::MIN_TASK_JSON) <= api::MAX_REPLY_BYTES {
                    let status = views::status(&self.store, &r.job)
                        .map_err(internal)?
                        .ok_or_else(|| not_found(&r.job))?;
                    return Ok(views::fit(status, api::MAX_REPLY_BYTES));
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
            // As `fit` makes it: no output tails, no page.
            status.page = None;
            for t in &mut status.tasks {
                t.output_tail = None;
            }
            return Ok(views::fit(status, api::MAX_REPLY_BYTES));
        }
        Ok(status)
    }

    /// Jobs matching `req`, newest first.
    pub fn jobs(&self, req: &JobsRequest) -> Reply<Vec<JobSummary>> {
        views::jobs(&self.store, req).map_err(internal)
    }

    /// Cancels a job: its running attempts are killed, the rest never start. A job that ended
    /// is left as it is.
    pub fn cancel(&mut self, now: Millis, job: JobId) -> Reply<JobSummary> {
        let rec = self.record(&job)?;
        if self.driver.engine().has_job(&job) {
            self.driver.apply(
                now,
                Event::Cancel {
                    job,
                    reason: CANCEL_REASON.into(),
                },
            );
        } else if !rec.state.is_terminal() {
            return Err(invalid(format!(
                "job {job} is not running: the process that ran it stopped (running the same \
                 `ordo run --state` again resumes it)"
            )));
        }
        let tasks = self.store.tasks(&job).map_err(internal)?;
        Ok(views::summary(&rec, &tasks))
    }

    /// Runs an ended job's tasks again as `req` says (all, the unsuccessful ones, one task
    /// and what it held back), with a new budget when given.
    pub fn retry(&mut self, now: Millis, req: &RetryRequest) -> Reply<JobSummary> {
        let job = req.job;
        let rec = self.record(&job)?;
        if self.driver.engine().has_job(&job) || !rec.state.is_terminal() {
            return Err(invalid(format!("job {job} is still {}", rec.state)));
        }
        req.check_budget().map_err(invalid)?;
        let dag = validate(&rec.spec)
            .map_err(|_| ApiError::new(ErrorKind::Internal, "stored spec no longer validates"))?;
        let scope = Again::of(req, &dag).map_err(invalid)?;
        let queues: BTreeSet<String> = rec
            .spec
            .tasks
            .iter()
            .map(|t| rec.spec.queue(t).to_string())
            .collect();
        // Queues are ready already (the job ran); a local executor may grow its offer.
        self.executor
            .slots(&queues, &rec.spec, rec.options.max_parallel);
        self.refresh_capacity(now);
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
        self.traces.job(job, &rec.name, rec.created_ms, &spec);
        let spec = Arc::new(spec);
        self.notifier.watch(job, &spec);
        self.driver.apply(
            now,
            Event::Submit {
                job,
                spec,
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
        Ok(summary)
    }

    /// `approve` and `reject` (docs/design.md, "Quality gates: approvals"): a person's
    /// decision on a task awaiting approval, a stored change like every other (its reply is
    /// sent once it is committed). A rejection needs a reason (`comment`). A task that is not
    /// awaiting approval (decided already, never stopped for one) is refused, so a decision
    /// is never applied twice.
    pub fn decide(&mut self, now: Millis, req: &DecideRequest, approve: bool) -> Reply<JobSummary> {
        let job = req.job;
        let rec = self.record(&job)?;
        let index = rec
            .spec
            .tasks
            .iter()
            .position(|t| t.name.as_str() == req.task)
            .or_else(|| {
                // Else a task's index.
                req.task
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < rec.spec.tasks.len())
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("job {job} has no task named {:?}", req.task),
                )
            })?;
        if req.by.trim().is_empty() {
            return Err(invalid("a decision names who makes it (`by`)"));
        }
        if !approve && req.comment.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return Err(invalid(format!(
                "rejecting task {} of job {job} needs a reason (--reason)",
                req.task
            )));
        }
        let name = rec.spec.tasks[index].name.to_string();
        let index = TaskIndex(index as u32);
        if !self.driver.engine().has_job(&job) {
            let state = self
                .store
                .tasks(&job)
                .map_err(internal)?
                .get(index.get())
                .map(|s| s.state.phase());
            return Err(invalid(match state {
                Some(TaskPhase::AwaitingApproval) => format!(
                    "job {job} is not running: the process that ran it stopped (running the \
                     same `ordo run --state` again resumes it)"
                ),
                state => format!(
                    "task {name} of job {job} is not awaiting approval (it is {})",
                    state.map_or("unknown", |s| s.name())
                ),
            }));
        }
        self.driver
            .engine()
            .awaiting(&job, index)
            .map_err(invalid)?;
        self.driver.apply(
            now,
            Event::Decide {
                job,
                index,
                decision: Decision {
                    approve,
                    by: req.by.clone(),
                    comment: req.comment.clone(),
                },
            },
        );
        self.summary(&job)
    }

    /// A job's records, for `ordo report` (`None`: the newest job).
    pub fn report(&self, r: &ReportRequest) -> Reply<ReportData> {
        let job = match r.job {
            Some(job) => job,
            None => crate::report::latest(&self.store)
                .map_err(internal)?
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "no jobs yet"))?,
        };
        crate::report::gather(&self.store, &job)
            .map_err(internal)?
            .ok_or_else(|| not_found(&job))
    }

    /// The output kept with each task's last attempt (the last `keep` bytes of each).
    pub fn output(&self, r: &OutputRequest) -> Reply<OutputReply> {
        self.record(&r.job)?;
        let attempts = self.store.attempts(&r.job).map_err(internal)?;
        let mut reply = OutputReply::default();
        for a in attempts {
            if r.task.is_some_and(|t| t != a.index) {
                continue;
            }
            let tail = &a.output_tail;
            let mut cut = tail.len().saturating_sub(r.keep);
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            let out = TaskOutput {
                index: a.index,
                bytes: a.output_bytes,
                tail: tail[cut..].to_string(),
            };
            // Attempts come in order: a later one replaces an earlier one of its task.
            match reply.tasks.last_mut() {
                Some(last) if last.index == a.index => *last = out,
                _ => reply.tasks.push(out),
            }
        }
        Ok(reply)
    }

    /// Removes old finished jobs and what their attempts kept, or (`job`) only what one
    /// finished job's attempts kept (its worktrees and task branches; its records stay).
    pub async fn prune(&mut self, now: Millis, r: &PruneRequest) -> Reply<PruneReply> {
        let pruned = match r.job {
            Some(job) => {
                let rec = self.record(&job)?;
                if rec.finished_ms.is_none() || self.driver.engine().has_job(&job) {
                    return Err(invalid(format!(
                        "job {job} has not finished: its worktrees are in use"
                    )));
                }
                self.executor.prune(&rec).await;
                return Ok(PruneReply { removed: 0 });
            }
            None => block_in_place_store(|| self.store.prune(now, r.older_than_ms))?,
        };
        for rec in &pruned {
            self.executor.prune(rec).await;
        }
        Ok(PruneReply {
            removed: pruned.len(),
        })
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.executor.workers()
    }

    fn record(&self, job: &JobId) -> Reply<JobRecord> {
        self.store
            .job(job)
            .map_err(internal)?
            .ok_or_else(|| not_found(job))
    }

    /// A job's summary for cheap polling: a live job's comes from the engine's memory (its
    /// name and creation time read once), so polling a large job costs no store reads.
    fn summary(&mut self, id: &JobId) -> Reply<JobSummary> {
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

fn block_in_place_store<T>(f: impl FnOnce() -> crate::store::Result<T>) -> Reply<T> {
    super::block_in_place(f).map_err(internal)
}

/// How errors name a submitted spec: its file and job, or the job alone.
fn spec_label(req: &SubmitRequest) -> String {
    if req.source.is_empty() || req.source == req.spec.name {
        format!("job '{}'", req.spec.name)
    } else {
        format!("{} (job '{}')", req.source, req.spec.name)
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Invalid, message)
}

fn internal(e: crate::store::Error) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

fn not_found(job: &JobId) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no job {job}"))
}
