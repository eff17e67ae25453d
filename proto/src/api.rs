//! The coordinator's API on `ordo.api.<verb>`: JSON requests and replies, so the CLI (and the
//! MCP server) need only a NATS URL. Every reply is an `ApiReply`: `{"ok": ...}` or
//! `{"error": {"kind": ..., "message": ...}}`.

mod report;

use serde::{Deserialize, Serialize};

pub use report::{
    HistoryChange, HistoryEntry, IgnoredResult, ReportData, ReportJob, ReportTask, StateAt,
};

use crate::clock::Millis;
use crate::gates::StageRecord;
use crate::ids::{JobId, TaskIndex, WorkerId};
use crate::spec::{ExecutionMode, JobSpec};
use crate::state::{JobState, TaskPhase};
use crate::wire::{FileLines, Heartbeat};

pub const SUBMIT: &str = "submit";
pub const STATUS: &str = "status";
pub const JOBS: &str = "jobs";
pub const CANCEL: &str = "cancel";
pub const RETRY: &str = "retry";
pub const WORKERS: &str = "workers";
/// `ReportRequest` → `ReportData`, the job's records, rendered by `ordo-report`.
pub const REPORT: &str = "report";
/// `PruneRequest` → `PruneReply`: removes old finished jobs.
pub const PRUNE: &str = "prune";
/// Approve or reject a task awaiting approval (docs/design.md, "Quality gates").
pub const APPROVE: &str = "approve";
pub const REJECT: &str = "reject";

/// Whether verb `name` only reads: asking it twice changes nothing, so a transport may ask
/// again when it cannot tell whether the first request was carried out.
pub fn reads_only(name: &str) -> bool {
    [STATUS, JOBS, WORKERS, REPORT, OUTPUT].contains(&name)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiReply<T> {
    Ok(T),
    Error(ApiError),
}

#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request or the spec is invalid (exit 2).
    Invalid,
    NotFound,
    /// The coordinator failed (store error).
    Internal,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    pub spec: JobSpec,
    /// Where the spec came from (a path, `mcp`).
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub default_mode: Option<ExecutionMode>,
    #[serde(default)]
    pub max_parallel: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitReply {
    pub job: JobId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRef {
    pub job: JobId,
}

/// `status` request: a `JobRef`, optionally asking for the summary alone or for one page of
/// the task list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusRequest {
    pub job: JobId,
    /// Leave out the per-task list (cheap polling of large jobs).
    #[serde(default)]
    pub summary_only: bool,
    /// One page of the task list, from 1: `page_size` tasks (default `DEFAULT_PAGE_SIZE`) in
    /// index order among those in `states`. Absent (older clients): the whole list, trimmed to
    /// `MAX_REPLY_BYTES` (`omitted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<usize>,
    /// Only tasks in one of these states (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<TaskPhase>,
    /// Only the task of this name (finding one task of a large job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

impl StatusRequest {
    /// The whole task list (trimmed to one message), as older clients ask.
    pub fn whole(job: JobId) -> StatusRequest {
        StatusRequest {
            job,
            summary_only: false,
            page: None,
            page_size: None,
            states: Vec::new(),
            task: None,
        }
    }

    /// Page `page` (from 1) of the tasks in `states`.
    pub fn page(job: JobId, page: usize, page_size: usize, states: Vec<TaskPhase>) -> Self {
        StatusRequest {
            page: Some(page),
            page_size: Some(page_size),
            states,
            ..StatusRequest::whole(job)
        }
    }
}

/// Tasks per page of `status` when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// Most tasks on one page of `status`.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Where a page of `status` is in the task list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Page {
    /// This page, from 1.
    pub page: usize,
    pub page_size: usize,
    /// Pages in all (at least 1, even when no task matches).
    pub pages: usize,
    /// Tasks in the states asked for (every task when `states` is empty).
    pub matching: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<TaskPhase>,
}

/// Largest API reply body sent inline in one message: below NATS's default 1 MiB payload
/// limit. Larger ones go through the object store, up to `MAX_LARGE_REPLY_BYTES`.
pub const MAX_REPLY_BYTES: usize = 900 * 1024;
/// Largest reply through the object store (a report cuts output tails to fit).
pub const MAX_LARGE_REPLY_BYTES: usize = 256 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetryRequest {
    pub job: JobId,
    /// Only the tasks that did not succeed (else every task).
    #[serde(default)]
    pub failed_only: bool,
    /// Only this task and the tasks it held back (its dependents that did not succeed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// A new budget for the job from now on (docs/design.md, "Agent runs"), each when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

impl RetryRequest {
    /// A request to run the job's tasks that did not succeed again, as the dashboard's
    /// "Retry failed" and `ordo retry --failed-only` do.
    pub fn failed_only(job: JobId) -> RetryRequest {
        RetryRequest {
            job,
            failed_only: true,
            task: None,
            max_cost_usd: None,
            max_tokens: None,
        }
    }

    /// Why the new budget cannot be used, if it cannot.
    pub fn check_budget(&self) -> Result<(), String> {
        if let Some(c) = self.max_cost_usd
            && !(c.is_finite() && c > 0.0)
        {
            return Err(format!(
                "--max-cost-usd must be a positive number of dollars, not {c}"
            ));
        }
        if self.max_tokens == Some(0) {
            return Err("--max-tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// `approve` and `reject`: a person's decision on a task awaiting approval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DecideRequest {
    pub job: JobId,
    pub task: String,
    /// Who decides: the NATS user on a cluster, the OS user locally, `dashboard` or `mcp`.
    pub by: String,
    /// `approve --comment`, or `reject --reason` (required to reject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReportRequest {
    /// `None`: the newest job.
    #[serde(default)]
    pub job: Option<JobId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PruneRequest {
    /// Remove finished jobs that ended more than this long ago.
    pub older_than_ms: u64,
    /// Instead: keep every record, and remove only the worktrees and task branches this
    /// finished job's failed attempts kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobId>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PruneReply {
    /// Jobs removed, with all their records.
    pub removed: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobsRequest {
    /// Only jobs in this state.
    #[serde(default)]
    pub state: Option<JobState>,
    /// Only jobs whose name, a task name, or state contains this text.
    #[serde(default)]
    pub search: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobSummary {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub reason: Option<String>,
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub running: usize,
    /// What the job's agent runs cost in all, in US dollars (every execution that ran,
    /// stale and duplicate ones included), when an agent reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// When its current run started, once it was retried (`ordo retry`): its duration counts
    /// from there (`JobSummary::run_start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_started_ms: Option<u64>,
    /// Times it was retried: it has run `retries + 1` times.
    #[serde(default, skip_serializing_if = "no_retries")]
    pub retries: u32,
    /// Its `[[notify]]` deliveries that failed, once one did (docs/design.md, "Notifications").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyHealth>,
}

/// How a job's `[[notify]]` deliveries fare: failed attempts (each retry counts) and the last
/// error; `given_up`: notifications dropped after 24 hours of retries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NotifyHealth {
    pub failures: u32,
    #[serde(default)]
    pub given_up: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn no_retries(n: &u32) -> bool {
    *n == 0
}

impl JobSummary {
    /// When its current run started: its submission, or its last retry.
    pub fn run_start(&self) -> u64 {
        self.run_started_ms.unwrap_or(self.created_ms)
    }

    /// How long its current run took (or has taken by `now`).
    pub fn run_duration(&self, now: u64) -> u64 {
        self.finished_ms
            .unwrap_or(now)
            .saturating_sub(self.run_start())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskStatus {
    pub index: TaskIndex,
    pub name: String,
    /// Its title, when its format gave one apart from the name (`TaskSpec::title`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub state: TaskPhase,
    /// Attempts spent (conflicts left out).
    pub attempts: u32,
    /// Runs whose change conflicted at integration and ran again from the new tip.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub conflicts: u32,
    pub worker: Option<WorkerId>,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
    pub reason: Option<String>,
    pub output_tail: Option<String>,
    /// What its agent runs cost, in US dollars, when the agent reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Its last attempt's stages, round by round, and the decisions of its approvals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageRecord>,
    /// `awaiting_approval`: what the person deciding sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Box<ApprovalView>>,
}

/// A task awaiting approval as the person deciding sees it (docs/design.md, "Quality gates").
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ApprovalView {
    /// The approval stage waiting.
    pub stage: String,
    pub since_ms: Millis,
    /// When `timeout` decides for nobody (`on_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<Millis>,
    /// The commit approved or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The files the task changed, with their line counts.
    #[serde(default)]
    pub files: Vec<FileLines>,
    /// What its verify command printed last.
    #[serde(default)]
    pub verify_output: String,
    /// What the task cost so far (its attempts and stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl TaskStatus {
    /// Its name with its title (`crate::task_label`).
    pub fn label(&self) -> String {
        crate::task_label(&self.name, self.title.as_deref())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobStatus {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub tasks: Vec<TaskStatus>,
    /// Tasks left out of `tasks` (other pages, other states, or, unpaged, to keep the reply
    /// under `MAX_REPLY_BYTES`: succeeded and pending ones first); the summary counts them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
    /// The page `tasks` is, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Page>,
    /// The pools of `settings.pools` its tasks take, as they stand now (global across jobs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolStatus>,
    /// With `integration.batch` above 1: its integration batches so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<BatchSummary>,
    /// Its speculative runs so far, when it had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculation: Option<SpeculationSummary>,
}

/// The integration queue's batches of a job (docs/design.md, "Integration queue: batches"),
/// as status and the report show them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchSummary {
    /// Integrations that took more than one task.
    pub batches: usize,
    /// Their sizes, in order.
    pub sizes: Vec<usize>,
    /// Integrations whose verify failed with several tasks merged (split in halves).
    pub bisections: usize,
    /// Integration verifies run, every integration of the job counted.
    pub verifies_run: usize,
    /// Verifies one-at-a-time integration would have run in addition: the tasks of each
    /// passing integration beyond its first, less the verifies of bisected ones (negative when
    /// bisection cost more than batches saved).
    pub verifies_saved: i64,
    /// Verifies of a bisection's half stacked on the half before it, made void when that one
    /// failed (counted in `verifies_run`, not saved).
    #[serde(default)]
    pub voided: usize,
}

impl BatchSummary {
    /// Counts one integration's record: how many tasks it merged, whether a verify ran,
    /// whether it failed with several tasks merged (bisected), and whether it was a stacked
    /// one made void (its verify, if it ran, was spent for nothing).
    pub fn add(&mut self, tasks: usize, verified: bool, bisected: bool, voided: bool) {
        if voided {
            self.voided += 1;
            if verified {
                self.verifies_run += 1;
                self.verifies_saved -= 1;
            }
            return;
        }
        if tasks > 1 {
            self.batches += 1;
            self.sizes.push(tasks);
        }
        if !verified {
            return;
        }
        self.verifies_run += 1;
        if bisected {
            self.bisections += 1;
            self.verifies_saved -= 1;
        } else {
            self.verifies_saved += tasks as i64 - 1;
        }
    }
}

/// The speculative runs of a job, or of one task (docs/design.md, "Integration queue:
/// speculation"), as status and the report show them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SpeculationSummary {
    /// Runs whose dependencies integrated as they were: their work was kept.
    pub kept: usize,
    /// Runs that ran again on the real tip.
    pub discarded: usize,
    /// What the discarded runs' agents spent, when any reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_cost_usd: Option<f64>,
}

impl SpeculationSummary {
    /// Counts one speculative run's end (`HistoryChange::Speculation`): kept, or discarded
    /// with what it spent.
    pub fn add(&mut self, kept: bool, cost_usd: Option<f64>) {
        if kept {
            self.kept += 1;
            return;
        }
        self.discarded += 1;
        if let Some(c) = cost_usd {
            *self.discarded_cost_usd.get_or_insert(0.0) += c;
        }
    }

    /// Whether any speculative run ended.
    pub fn any(&self) -> bool {
        self.kept + self.discarded > 0
    }
}

/// A pool as it stands: its size as the job declares it and, for a pool of agent runs, the
/// limit in force (docs/design.md, agent runs: adaptive pools).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PoolStatus {
    pub name: String,
    pub size: u32,
    /// The places it grants now: its size for commands, the adaptive limit for agent runs.
    pub limit: u32,
    /// Its tasks run agents: the limit adapts to the provider's rate limits.
    #[serde(default)]
    pub adaptive: bool,
    /// When the limit last came down (a rate limit or an overload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_at_ms: Option<u64>,
    /// Agent runs in it that ended on a rate limit or an overload, ever.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub refused_total: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerInfo {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    /// Milliseconds since the last heartbeat.
    pub age_ms: u64,
}

/// `OutputRequest` → `OutputReply`: the output kept with each task's last attempt, in a state
/// directory (a cluster's output is read from the `ORDO_LOGS` stream instead).
pub const OUTPUT: &str = "output";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputRequest {
    pub job: JobId,
    /// Only this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskIndex>,
    /// The last this-many bytes of each.
    pub keep: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OutputReply {
    pub tasks: Vec<TaskOutput>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskOutput {
    pub index: TaskIndex,
    /// Bytes the attempt's output had in all.
    pub bytes: u64,
    /// The last of them kept.
    pub tail: String,
}

/// A coordinator's part in an `--ha` deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaRole {
    /// Follows the journal, ready to take over.
    #[default]
    Standby,
    /// Holds the lease and serves the API.
    Active,
    /// Lost (or gave up) the lease; stops its service, then stands by again.
    SteppingDown,
}

impl HaRole {
    /// As `ordo cluster` and the JSON show it: `standby`, `active`, `stepping-down`.
    pub fn name(self) -> &'static str {
        match self {
            HaRole::Standby => "standby",
            HaRole::Active => "active",
            HaRole::SteppingDown => "stepping-down",
        }
    }
}

impl std::fmt::Display for HaRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One `--ha` coordinator's answer on `names::HA_INFO`, as `ordo cluster` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HaStatus {
    pub id: String,
    pub host: String,
    pub role: HaRole,
    /// The epoch this coordinator holds (active) or last saw (standby).
    pub epoch: u64,
    /// Since the lease was last renewed (by this one if active, else by the active one).
    pub lease_age_ms: Option<u64>,
    /// Journal sequence applied to the local store (or appended, when active).
    pub applied: u64,
    /// Last sequence of the journal stream, as last looked at.
    pub journal_last: u64,
    /// Journal messages not applied yet.
    pub lag: u64,
    /// When this coordinator took its current role.
    pub since_ms: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only reads may be asked twice: every verb that changes a job is not one.
    #[test]
    fn only_reads_may_be_asked_again() {
        for verb in [STATUS, JOBS, WORKERS, REPORT, OUTPUT] {
            assert!(reads_only(verb), "{verb}");
        }
        for verb in [SUBMIT, CANCEL, RETRY, PRUNE, APPROVE, REJECT] {
            assert!(!reads_only(verb), "{verb}");
        }
    }

    #[test]
    fn ha_roles_keep_their_wire_names() {
        for (role, name) in [
            (HaRole::Standby, "standby"),
            (HaRole::Active, "active"),
            (HaRole::SteppingDown, "stepping-down"),
        ] {
            assert_eq!(serde_json::to_value(role).unwrap(), name);
            assert_eq!(role.to_string(), name);
        }
        // What a coordinator of the previous release answers still reads.
        let old = r#"{"id":"c1","host":"h","role":"stepping-down","epoch":3,
            "lease_age_ms":null,"applied":7,"journal_last":9,"lag":2,"since_ms":5}"#;
        let s: HaStatus = serde_json::from_str(old).unwrap();
        assert_eq!((s.role, s.epoch, s.lag), (HaRole::SteppingDown, 3, 2));
    }
}
