//! Read-side views of stored jobs for the API (`status`, `jobs`): built from the store's
//! records only, so they are the same before and after a coordinator restart.

use std::collections::{BTreeMap, HashSet};

use ordo_proto::api::{
    ApprovalView, BatchSummary, JobStatus, JobSummary, JobsRequest, Page, PoolStatus,
    SpeculationSummary, TaskStatus,
};
use ordo_proto::gates::{StageKind, StageRecord};
use ordo_proto::wire::FileLines;
use ordo_proto::{Attempt, JobId, JobSpec, TaskIndex, TaskPhase, TaskResult, TaskSpec};

use crate::engine::{Change, PoolLimit, SavedTask, TaskState, Tasks};
use crate::store::{JobRecord, Result, Store};

/// Job `id`'s integration queue so far, from its history: its batches (the `Change::Batch`
/// records) when its `spec` has `integration.batch` above 1, and its speculative runs (the
/// `Change::Speculation` records) when it had any.
pub fn queue(
    store: &Store,
    spec: &JobSpec,
    id: &JobId,
) -> Result<(Option<BatchSummary>, Option<SpeculationSummary>)> {
    let batched = spec.integration_batch() > 1;
    if !batched && spec.speculation().is_none() {
        return Ok((None, None));
    }
    let mut b = BatchSummary::default();
    let mut s = SpeculationSummary::default();
    for h in store.history(id)? {
        match &h.change {
            Change::Batch {
                tasks,
                verified,
                bisected,
                voided,
                ..
            } => b.add(tasks.len(), *verified, *bisected, *voided),
            Change::Speculation { kept, cost_usd, .. } => s.add(*kept, *cost_usd),
            _ => {}
        }
    }
    Ok((batched.then_some(b), s.any().then_some(s)))
}

/// The pools of `spec`'s `settings.pools` that its tasks take, with the adaptive limits the
/// engine holds (`Engine::pool_limits`): a pool taken by an agent run adapts.
pub fn pools(spec: &JobSpec, limits: &BTreeMap<String, PoolLimit>) -> Vec<PoolStatus> {
    if spec.settings.pools.is_empty() {
        return Vec::new();
    }
    let mut taken = HashSet::new();
    let mut adaptive = HashSet::new();
    for t in &spec.tasks {
        if let Some((name, _)) = spec.pool(t) {
            taken.insert(name);
            if t.is_prompt() {
                adaptive.insert(name);
            }
        }
    }
    spec.settings
        .pools
        .iter()
        .filter(|(name, _)| taken.contains(name.as_str()))
        .map(|(name, &size)| {
            let adaptive = adaptive.contains(name.as_str());
            let limit = limits.get(name).filter(|_| adaptive);
            PoolStatus {
                name: name.clone(),
                size,
                limit: match adaptive {
                    true => PoolLimit::granted(limit, size),
                    false => size,
                },
                adaptive,
                limited_at_ms: limit.and_then(|l| l.limited_at),
                refused_total: limit.map_or(0, |l| l.refused_total),
            }
        })
        .collect()
}

/// A job's summary from its records (without its cost: `costed` adds it).
pub fn summary(job: &JobRecord, tasks: &[SavedTask]) -> JobSummary {
    let (total, succeeded, failed, running) = counts(tasks.iter().map(|t| &t.state));
    JobSummary {
        id: job.id,
        name: job.name.clone(),
        state: job.state,
        created_ms: job.created_ms,
        finished_ms: job.finished_ms,
        reason: job.reason.clone(),
        total,
        succeeded,
        failed,
        running,
        cost_usd: None,
        run_started_ms: job.run_started_ms,
        retries: job.retries,
        notify: None,
    }
}

/// `summary` with what the job's agent runs cost (the store keeps the total).
fn costed(store: &Store, mut summary: JobSummary) -> Result<JobSummary> {
    summary.cost_usd = store.job_cost(&summary.id)?;
    summary.notify = store.notify_health(&summary.id)?;
    Ok(summary)
}

/// Tasks in all, succeeded, failed (or timed out) and in flight.
pub fn counts<'a>(states: impl Iterator<Item = &'a TaskState>) -> (usize, usize, usize, usize) {
    let (mut total, mut succeeded, mut failed, mut running) = (0, 0, 0, 0);
    for t in states {
        total += 1;
        match t {
            TaskState::Succeeded { .. } => succeeded += 1,
            TaskState::Failed { .. } | TaskState::TimedOut { .. } => failed += 1,
            t if t.is_active() => running += 1,
            _ => {}
        }
    }
    (total, succeeded, failed, running)
}

/// What a live job's summary needs of its record, read once.
#[derive(Clone, Debug)]
pub struct Header {
    pub name: String,
    pub created_ms: u64,
    pub run_started_ms: Option<u64>,
    pub retries: u32,
}

impl Header {
    pub fn of(job: &JobRecord) -> Header {
        Header {
            name: job.name.clone(),
            created_ms: job.created_ms,
            run_started_ms: job.run_started_ms,
            retries: job.retries,
        }
    }
}

/// The summary alone: from memory while the job runs (`live`: its tasks and state in the
/// engine, its name and creation time), else from the stored task records (no attempts).
pub fn summary_of(
    store: &Store,
    id: &JobId,
    live: Option<(Tasks<'_>, crate::engine::JobState, &Header)>,
) -> Result<Option<JobSummary>> {
    if let Some((tasks, state, header)) = live {
        let (total, succeeded, failed, running) = counts(tasks.iter());
        return Ok(Some(JobSummary {
            id: *id,
            name: header.name.clone(),
            state,
            created_ms: header.created_ms,
            finished_ms: None,
            reason: None,
            total,
            succeeded,
            failed,
            running,
            cost_usd: store.job_cost(id)?,
            run_started_ms: header.run_started_ms,
            retries: header.retries,
            notify: store.notify_health(id)?,
        }));
    }
    let Some(job) = store.job(id)? else {
        return Ok(None);
    };
    Ok(Some(costed(store, summary(&job, &store.tasks(id)?))?))
}

pub fn status(store: &Store, id: &JobId) -> Result<Option<JobStatus>> {
    let Some(job) = store.job(id)? else {
        return Ok(None);
    };
    let tasks = store.tasks(id)?;
    let attempts = store.attempts(id)?;
    // Attempts come ordered by (task, attempt): the last one per task wins.
    let mut last: Vec<Option<&TaskResult>> = vec![None; tasks.len()];
    let mut cost: Vec<Option<f64>> = vec![None; tasks.len()];
    for r in &attempts {
        if let Some(slot) = last.get_mut(r.index.get()) {
            *slot = Some(r);
        }
        if let Some(c) = r.agent.as_ref().and_then(|a| a.cost_usd)
            && let Some(sum) = cost.get_mut(r.index.get())
        {
            *sum = Some(sum.unwrap_or(0.0) + c);
        }
    }
    let mut decided = match has_approvals(&job.spec) {
        true => store.stage_records(id, None)?,
        false => Default::default(),
    };
    let task_status = job
        .spec
        .tasks
        .iter()
        .zip(&tasks)
        .enumerate()
        .map(|(i, (spec, saved))| {
            let mut t = task_status(i as u32, Some(spec), &saved.state, saved, last[i], cost[i]);
            t.approval = approval(&job.spec, &saved.state, last[i], cost[i]);
            add_decisions(&mut t, last[i], decided.remove(&(i as u32)));
            t
        })
        .collect();
    Ok(Some(JobStatus {
        pools: Vec::new(),
        batches: None,
        speculation: None,
        summary: costed(store, summary(&job, &tasks))?,
        tasks: task_status,
        omitted: 0,
        page: None,
    }))
}

/// One task's line of `status`: its name and title, its state, and what its last attempt
/// (`last`) said.
fn task_status(
    index: u32,
    spec: Option<&ordo_proto::TaskSpec>,
    state: &TaskState,
    rec: &SavedTask,
    last: Option<&TaskResult>,
    cost_usd: Option<f64>,
) -> TaskStatus {
    let worker = match state {
        TaskState::Running { worker, .. } => Some(worker.clone()),
        _ => last.map(|r| r.worker.clone()),
    };
    TaskStatus {
        index: TaskIndex(index),
        name: spec.map_or(String::new(), |t| t.name.to_string()),
        title: spec.and_then(|t| t.title()),
        state: state.phase(),
        attempts: rec.spent(),
        conflicts: rec.conflicts,
        worker,
        exit_code: last.and_then(|r| r.exit_code),
        duration_ms: last.map(|r| r.duration_ms),
        reason: state.reason().map(String::from),
        output_tail: last.map(|r| r.output_tail.clone()),
        cost_usd,
        stages: last.map(|r| r.stages.clone()).unwrap_or_default(),
        approval: None,
    }
}

/// Whether a task of `spec` may wait for an approval: only then are the engine's stage
/// records read for `status`.
fn has_approvals(spec: &JobSpec) -> bool {
    spec.stages.iter().any(|s| s.kind() == StageKind::Approval)
}

/// Whether `task` goes through an approval stage of `spec`.
fn approved(spec: &JobSpec, task: &TaskSpec) -> bool {
    spec.stages_of(task)
        .any(|s| s.kind() == StageKind::Approval)
}

/// Adds to a task's stages (its last attempt's agent and command stages) the engine's records
/// of the same attempt (`Change::Stage`: approval decisions and timeouts, who and when), in
/// the order they were made. Without a result, the records of the last attempt that has any.
fn add_decisions(
    t: &mut TaskStatus,
    last: Option<&TaskResult>,
    records: Option<Vec<(Attempt, StageRecord)>>,
) {
    let Some(records) = records else { return };
    let Some(attempt) = last
        .map(|r| r.attempt)
        .or_else(|| records.last().map(|(a, _)| *a))
    else {
        return;
    };
    t.stages.extend(
        records
            .into_iter()
            .filter(|(a, _)| *a == attempt)
            .map(|(_, r)| r),
    );
}

/// What the person deciding on a task awaiting approval sees (docs/design.md, "Quality
/// gates: approvals"): the stage, since when and until when, the commit, the files changed
/// with their line counts (0/0 when the executor did not count them), the verify output and
/// the cost so far. `None` for a task not awaiting approval.
fn approval(
    spec: &JobSpec,
    state: &TaskState,
    last: Option<&TaskResult>,
    cost_usd: Option<f64>,
) -> Option<Box<ApprovalView>> {
    let TaskState::AwaitingApproval {
        since,
        stage,
        deadline,
        ..
    } = state
    else {
        return None;
    };
    let work = last.and_then(|r| r.workspace.as_deref());
    let files = work.map_or_else(Vec::new, |w| {
        w.files
            .iter()
            .map(|f| {
                w.lines
                    .iter()
                    .find(|l| &l.path == f)
                    .cloned()
                    .unwrap_or_else(|| FileLines {
                        path: f.clone(),
                        ..FileLines::default()
                    })
            })
            .collect()
    });
    Some(Box::new(ApprovalView {
        stage: spec
            .stages
            .get(*stage as usize)
            .map_or_else(String::new, |s| s.name.clone()),
        since_ms: *since,
        deadline_ms: *deadline,
        commit: work.map(|w| w.head.clone()),
        files,
        verify_output: last.map_or_else(String::new, |r| r.output_tail.clone()),
        cost_usd,
    }))
}

/// A live job as the engine holds it: its tasks' current states, its spec and its summary.
pub type Live<'a> = (Tasks<'a>, &'a JobSpec, JobSummary);

/// Page `page` (from 1) of a job's task list, `page_size` tasks in index order among those in
/// `states` (all when empty) and named `task` (when given), with the summary. A live job's states and spec come from memory,
/// so only the page's records are read; an ended job's come from the store.
pub fn status_page(
    store: &Store,
    id: &JobId,
    live: Option<Live<'_>>,
    page: usize,
    page_size: usize,
    states: &[TaskPhase],
    task: Option<&str>,
) -> Result<Option<JobStatus>> {
    let page = page.max(1);
    let page_size = page_size.max(1);
    let stored;
    let (current, spec, summary): (Vec<&TaskState>, &JobSpec, JobSummary) = match live {
        Some((tasks, spec, summary)) => (tasks.iter().collect(), spec, costed(store, summary)?),
        None => {
            let Some(job) = store.job(id)? else {
                return Ok(None);
            };
            let tasks = store.tasks(id)?;
            let summary = costed(store, summary(&job, &tasks))?;
            stored = (job, tasks);
            let current = stored.1.iter().map(|t| &t.state).collect();
            (current, &stored.0.spec, summary)
        }
    };
    let matching: Vec<u32> = current
        .iter()
        .enumerate()
        .filter(|(_, t)| states.is_empty() || states.contains(&t.phase()))
        .filter(|(i, _)| {
            task.is_none_or(|n| spec.tasks.get(*i).is_some_and(|t| t.name.as_str() == n))
        })
        .map(|(i, _)| i as u32)
        .collect();
    let pages = matching.len().div_ceil(page_size).max(1);
    let from = (page - 1).saturating_mul(page_size).min(matching.len());
    let to = from.saturating_add(page_size).min(matching.len());
    let shown = &matching[from..to];
    let waiting: Vec<u32> = shown
        .iter()
        .copied()
        .filter(|&i| {
            spec.tasks
                .get(i as usize)
                .is_some_and(|t| approved(spec, t))
        })
        .collect();
    let mut decided = match waiting.is_empty() {
        true => Default::default(),
        false => store.stage_records(id, Some(&waiting))?,
    };
    let tasks: Vec<TaskStatus> = store
        .task_page(id, shown)?
        .into_iter()
        .map(|(i, rec, results)| {
            let cost = results
                .iter()
                .filter_map(|r| r.agent.as_ref().and_then(|a| a.cost_usd))
                .fold(None, |sum: Option<f64>, c| Some(sum.unwrap_or(0.0) + c));
            let task = spec.tasks.get(i as usize);
            // A live task's state is the engine's (the store may lag it by one commit).
            let state = current.get(i as usize).copied().unwrap_or(&rec.state);
            let mut t = task_status(i, task, state, &rec, results.last(), cost);
            t.approval = approval(spec, state, results.last(), cost);
            add_decisions(&mut t, results.last(), decided.remove(&i));
            t
        })
        .collect();
    Ok(Some(JobStatus {
        pools: Vec::new(),
        batches: None,
        speculation: None,
        omitted: summary.total.saturating_sub(tasks.len()),
        summary,
        tasks,
        page: Some(Page {
            page,
            page_size,
            pages,
            matching: matching.len(),
            states: states.to_vec(),
        }),
    }))
}

/// Fewest bytes a task takes in `status` JSON (every field present, short name, no output):
/// a job with more tasks than `MAX_REPLY_BYTES / MIN_TASK_JSON` never fits one message whole.
pub const MIN_TASK_JSON: usize = 120;

/// A status cut to fit `limit` bytes of JSON: output tails go first, then succeeded and
/// pending tasks (counted in `omitted`), so failures and running tasks are always shown.
pub fn fit(mut status: JobStatus, limit: usize) -> JobStatus {
    let size = |s: &JobStatus| serde_json::to_vec(s).map_or(usize::MAX, |v| v.len());
    if size(&status) > limit {
        for t in &mut status.tasks {
            t.output_tail = None;
        }
    }
    if size(&status) > limit {
        let before = status.tasks.len();
        status
            .tasks
            .retain(|t| !matches!(t.state, TaskPhase::Succeeded | TaskPhase::Pending));
        status.omitted = before - status.tasks.len();
    }
    while size(&status) > limit && !status.tasks.is_empty() {
        let keep = status.tasks.len() / 2;
        status.omitted += status.tasks.len() - keep;
        status.tasks.truncate(keep);
    }
    status
}

/// Jobs matching a request, newest first.
pub fn jobs(store: &Store, req: &JobsRequest) -> Result<Vec<JobSummary>> {
    let mut out = Vec::new();
    let search = req.search.as_deref().map(str::to_lowercase);
    for job in store.jobs()?.into_iter().rev() {
        if req.state.is_some_and(|s| s != job.state) {
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
        out.push(costed(store, summary(&job, &tasks))?);
        if req.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_status_keeps_failures_and_counts_what_it_omits() {
        let task = |i: u32, state: TaskPhase| TaskStatus {
            index: TaskIndex(i),
            name: format!("t{i}"),
            title: None,
            state,
            attempts: 1,
            conflicts: 0,
            worker: Some("w".into()),
            exit_code: Some(0),
            duration_ms: Some(1),
            reason: None,
            output_tail: Some("x".repeat(100)),
            cost_usd: None,
            stages: Vec::new(),
            approval: None,
        };
        let mut tasks: Vec<TaskStatus> = (0..1000).map(|i| task(i, TaskPhase::Succeeded)).collect();
        tasks[500] = task(500, TaskPhase::Failed);
        let status = JobStatus {
            pools: Vec::new(),
            batches: None,
            speculation: None,
            summary: JobSummary {
                id: JobId::new(),
                name: "big".into(),
                state: ordo_proto::JobState::Failed,
                created_ms: 0,
                finished_ms: Some(1),
                reason: None,
                total: 1000,
                succeeded: 999,
                failed: 1,
                running: 0,
                cost_usd: None,
                run_started_ms: None,
                retries: 0,
                notify: None,
            },
            tasks,
            omitted: 0,
            page: None,
        };
        let bytes = serde_json::to_vec(&fit(status, 20_000)).unwrap();
        assert!(bytes.len() <= 20_000);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["omitted"], 999);
        assert_eq!(v["tasks"][0]["name"], "t500");
        assert_eq!(v["succeeded"], 999, "the summary still counts every task");
    }

    /// A task's stages in `status` (whole and paged) are its last attempt's agent and command
    /// stages followed by the engine's approval records of that same attempt, who decided
    /// included; an earlier attempt's decision (a rejection sent back to revise) is not shown,
    /// and a task no approval stage selects gets none.
    #[test]
    fn status_shows_who_approved_the_last_attempt() {
        use crate::engine::JobOptions;
        use crate::store::{Batch, Change, JobRecord};
        use ordo_proto::gates::{StageSpec, Verdict};
        use ordo_proto::{Outcome, TaskSpec};

        let store = Store::in_memory().unwrap();
        let mut gated = TaskSpec::shell("gated", "true");
        gated.labels.insert("gate".into(), "yes".into());
        let spec = JobSpec {
            name: "approved".into(),
            tasks: vec![gated, TaskSpec::shell("plain", "true")],
            stages: vec![StageSpec {
                name: "sign-off".into(),
                kind: Some(StageKind::Approval),
                select: BTreeMap::from([("gate".to_string(), "*".to_string())]),
                ..StageSpec::default()
            }],
            ..Default::default()
        };
        let rec = JobRecord::new(JobId::new(), spec, "test", JobOptions::default(), 1);
        store.insert_job(&rec).unwrap();
        let stage = |name: &str, kind, verdict, by: Option<&str>| StageRecord {
            name: name.into(),
            kind: Some(kind),
            round: 1,
            verdict: Some(verdict),
            by: by.map(String::from),
            ..StageRecord::default()
        };
        let result = |index: u32, attempt: u32| {
            let d = ordo_proto::Dispatch::new(
                rec.id,
                rec.spec.tasks[index as usize].name.clone(),
                TaskIndex(index),
                Attempt(attempt),
                ordo_proto::Program::Shell("true".into()),
            );
            let mut r = TaskResult::new(&d, "local".into(), Outcome::Succeeded, 0, "");
            r.exit_code = Some(0);
            r.rounds = 1;
            if index == 0 {
                r.stages = vec![stage("lint", StageKind::Command, Verdict::Pass, None)];
            }
            r
        };
        let decision = |attempt: u32, verdict, by: &str| Change::Stage {
            job: rec.id,
            index: TaskIndex(0),
            attempt: Attempt(attempt),
            record: stage("sign-off", StageKind::Approval, verdict, Some(by)),
        };
        let changes = vec![
            Change::Attempt(result(0, 1)),
            decision(1, Verdict::Changes, "bob"),
            Change::Attempt(result(0, 2)),
            decision(2, Verdict::Pass, "alice"),
            Change::Attempt(result(1, 1)),
        ];
        store
            .commit(&Batch {
                now: 2,
                changes: &changes,
                ..Default::default()
            })
            .unwrap();

        let whole = status(&store, &rec.id).unwrap().unwrap();
        let paged = status_page(&store, &rec.id, None, 1, 10, &[], None)
            .unwrap()
            .unwrap();
        for st in [whole, paged] {
            let shown: Vec<(&str, Option<&str>)> = st.tasks[0]
                .stages
                .iter()
                .map(|s| (s.name.as_str(), s.by.as_deref()))
                .collect();
            assert_eq!(shown, vec![("lint", None), ("sign-off", Some("alice"))]);
            assert_eq!(st.tasks[0].stages[1].verdict, Some(Verdict::Pass));
            assert!(st.tasks[1].stages.is_empty());
        }
    }

    /// A job with `integration.batch` above 1 shows its batches so far from its history: a
    /// passing batch of three (two verifies saved), a failing batch of two (bisected: one
    /// verify more) and its halves; with speculation, its speculative runs kept and discarded
    /// (with what the discarded ones cost); a job with neither shows none.
    #[test]
    fn the_queue_is_counted_from_the_history() {
        use crate::engine::JobOptions;
        use crate::store::{Batch, JobRecord};
        use ordo_proto::{Attempt, IntegrationSettings, TaskSpec, WorkspaceMode};

        let store = Store::in_memory().unwrap();
        let mut spec = JobSpec {
            name: "batched".into(),
            tasks: (0..5)
                .map(|i| TaskSpec::shell(&format!("t{i}"), "true"))
                .collect(),
            ..Default::default()
        };
        spec.settings.workspace = Some(WorkspaceMode::Worktree);
        let plain = JobRecord::new(JobId::new(), spec.clone(), "test", JobOptions::default(), 1);
        spec.settings.integration = Some(IntegrationSettings {
            batch: Some(4),
            speculate: Some("verified".into()),
            ..IntegrationSettings::default()
        });
        let rec = JobRecord::new(JobId::new(), spec, "test", JobOptions::default(), 1);
        store.insert_job(&rec).unwrap();
        let batch = |tasks: &[u32], verified, bisected| Change::Batch {
            job: rec.id,
            tasks: tasks.iter().map(|&i| TaskIndex(i)).collect(),
            verified,
            bisected,
            voided: false,
            at: 1,
        };
        let void = Change::Batch {
            job: rec.id,
            tasks: vec![TaskIndex(4)],
            verified: true,
            bisected: false,
            voided: true,
            at: 1,
        };
        let speculation = |index: u32, kept, cost_usd| Change::Speculation {
            job: rec.id,
            index: TaskIndex(index),
            attempt: Attempt(1),
            on: vec![TaskIndex(0)],
            kept,
            cost_usd,
            at: 1,
        };
        let changes = vec![
            batch(&[0, 1, 2], true, false),
            batch(&[3, 4], true, true),
            batch(&[3], true, false),
            void,
            batch(&[4], true, false),
            speculation(1, true, Some(9.0)),
            speculation(2, false, Some(0.25)),
            speculation(3, false, None),
            speculation(3, false, Some(0.5)),
        ];
        store
            .commit(&Batch {
                now: 2,
                changes: &changes,
                ..Default::default()
            })
            .unwrap();

        let (b, s) = queue(&store, &rec.spec, &rec.id).unwrap();
        assert_eq!(
            b.unwrap(),
            BatchSummary {
                batches: 2,
                sizes: vec![3, 2],
                bisections: 1,
                verifies_run: 5,
                verifies_saved: 0,
                voided: 1,
            }
        );
        assert_eq!(
            s.unwrap(),
            SpeculationSummary {
                kept: 1,
                discarded: 3,
                discarded_cost_usd: Some(0.75),
            }
        );
        assert_eq!(queue(&store, &plain.spec, &plain.id).unwrap(), (None, None));
    }

    /// Pages follow index order among the tasks asked for; the summary counts every task; a
    /// live job's states come from memory even where the store lags; a name finds one task.
    #[test]
    fn pages_filter_by_state_and_name() {
        use crate::engine::JobOptions;
        use crate::store::{Batch, Change, JobRecord};
        use ordo_proto::{Attempt, TaskSpec};

        let store = Store::in_memory().unwrap();
        let spec = JobSpec {
            name: "paged".into(),
            tasks: (0..25)
                .map(|i| TaskSpec::shell(&format!("t{i}"), "true"))
                .collect(),
            ..Default::default()
        };
        let rec = JobRecord::new(JobId::new(), spec, "test", JobOptions::default(), 1);
        store.insert_job(&rec).unwrap();
        // Every third task failed, the rest succeeded.
        let changes: Vec<Change> = (0..25u32)
            .map(|i| Change::Task {
                job: rec.id,
                index: TaskIndex(i),
                attempts: 1,
                conflicts: 0,
                state: if i % 3 == 0 {
                    TaskState::Failed {
                        attempt: Attempt(1),
                        finished: 2,
                        reason: "exit code 1".into(),
                    }
                } else {
                    TaskState::Succeeded {
                        attempt: Attempt(1),
                        finished: 2,
                    }
                },
            })
            .collect();
        store
            .commit(&Batch {
                now: 2,
                changes: &changes,
                ..Default::default()
            })
            .unwrap();

        let page = |page, size, states: &[TaskPhase], task| {
            status_page(&store, &rec.id, None, page, size, states, task)
                .unwrap()
                .unwrap()
        };
        let p = page(3, 10, &[], None);
        let idx: Vec<u32> = p.tasks.iter().map(|t| t.index.0).collect();
        assert_eq!(idx, vec![20, 21, 22, 23, 24]);
        let info = p.page.unwrap();
        assert_eq!((info.page, info.pages, info.matching), (3, 3, 25));
        assert_eq!((p.summary.total, p.summary.failed, p.omitted), (25, 9, 20));

        let failed = page(2, 5, &[TaskPhase::Failed], None);
        let idx: Vec<u32> = failed.tasks.iter().map(|t| t.index.0).collect();
        assert_eq!(idx, vec![15, 18, 21, 24]);
        assert_eq!(failed.page.unwrap().matching, 9);
        assert_eq!(failed.tasks[0].reason.as_deref(), Some("exit code 1"));

        let beyond = page(9, 10, &[], None);
        assert!(beyond.tasks.is_empty());
        assert_eq!(beyond.page.unwrap().pages, 3);

        let named = page(1, 1, &[], Some("t7"));
        assert_eq!(named.tasks.len(), 1);
        assert_eq!(named.tasks[0].index, TaskIndex(7));
        assert!(page(1, 1, &[], Some("nope")).tasks.is_empty());

        // Live: the engine's states win over the stored ones (with no capacity, every task
        // of the engine's job is ready).
        let mut engine = crate::engine::Engine::new();
        engine.apply(
            3,
            crate::engine::Event::Submit {
                job: rec.id,
                spec: std::sync::Arc::new(rec.spec.clone()),
                dag: std::sync::Arc::new(ordo_proto::validate::validate(&rec.spec).unwrap()),
                options: JobOptions::default(),
                saved: None,
            },
        );
        let states = engine.tasks(&rec.id).unwrap();
        let summary = summary(&rec, &[]);
        let live = status_page(
            &store,
            &rec.id,
            Some((states, &rec.spec, summary)),
            1,
            100,
            &[TaskPhase::Ready],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(live.tasks.len(), 25);
        assert_eq!(live.tasks[3].state, TaskPhase::Ready);
        assert_eq!(live.tasks[3].attempts, 1, "attempts come from the store");
    }
}
