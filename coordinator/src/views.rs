//! Read-side views of stored jobs for the API (`status`, `jobs`): built from the store's
//! records only, so they are the same before and after a coordinator restart.

use ordo_proto::api::{JobStatus, JobSummary, JobsRequest, TaskStatus};
use ordo_proto::{JobId, TaskResult};

use crate::engine::{SavedTask, TaskState};
use crate::store::{JobRecord, Result, Store};

pub fn summary(job: &JobRecord, tasks: &[SavedTask]) -> JobSummary {
    let count = |f: fn(&TaskState) -> bool| tasks.iter().filter(|t| f(&t.state)).count();
    JobSummary {
        id: job.id,
        name: job.name.clone(),
        state: job.state.name().to_string(),
        created_ms: job.created_ms,
        finished_ms: job.finished_ms,
        reason: job.reason.clone(),
        total: tasks.len(),
        succeeded: count(|s| matches!(s, TaskState::Succeeded { .. })),
        failed: count(|s| matches!(s, TaskState::Failed { .. } | TaskState::TimedOut { .. })),
        running: count(TaskState::is_active),
    }
}

pub fn status(store: &Store, id: &JobId) -> Result<Option<JobStatus>> {
    let Some(job) = store.job(id)? else {
        return Ok(None);
    };
    let tasks = store.tasks(id)?;
    let attempts = store.attempts(id)?;
    let last = |i: u32| -> Option<&TaskResult> {
        attempts
            .iter()
            .filter(|r| r.index == i)
            .max_by_key(|r| r.attempt)
    };
    let task_status = job
        .spec
        .tasks
        .iter()
        .zip(&tasks)
        .enumerate()
        .map(|(i, (spec, saved))| {
            let last = last(i as u32);
            let worker = match &saved.state {
                TaskState::Running { worker, .. } => Some(worker.clone()),
                _ => last.map(|r| r.worker.clone()),
            };
            TaskStatus {
                index: i as u32,
                name: spec.name.to_string(),
                state: saved.state.name().to_string(),
                attempts: saved.attempts,
                worker,
                exit_code: last.and_then(|r| r.exit_code),
                duration_ms: last.map(|r| r.duration_ms),
                reason: saved.state.reason().map(String::from),
                output_tail: last.map(|r| r.output_tail.clone()),
            }
        })
        .collect();
    Ok(Some(JobStatus {
        summary: summary(&job, &tasks),
        tasks: task_status,
    }))
}

/// Jobs matching a request, newest first.
pub fn jobs(store: &Store, req: &JobsRequest) -> Result<Vec<JobSummary>> {
    let mut out = Vec::new();
    let search = req.search.as_deref().map(str::to_lowercase);
    for job in store.jobs()?.into_iter().rev() {
        if req.state.as_deref().is_some_and(|s| s != job.state.name()) {
            continue;
        }
        if let Some(text) = &search {
            let hit = job.name.to_lowercase().contains(text)
                || job.state.name().contains(text.as_str())
                || job.id.to_string().starts_with(text.as_str())
                || job
                    .spec
                    .tasks
                    .iter()
                    .any(|t| t.name.as_str().to_lowercase().contains(text));
            if !hit {
                continue;
            }
        }
        let tasks = store.tasks(&job.id)?;
        out.push(summary(&job, &tasks));
        if req.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}
