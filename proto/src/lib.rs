//! ordo-proto: what every ordo component agrees on.
//!
//! # Layout
//! - `agents`: which agent runs a prompt task, how it is called, what a run reported.
//! - `ids`: `JobId`, `TaskName`, `TaskIndex`, `Attempt`, `WorkerId` newtypes and `AttemptRef`.
//! - `state`: task and job state names (`TaskPhase`, `JobState`), as the API and reports show
//!   them.
//! - `clock`: the wall clock in milliseconds, read in one place.
//! - `duration`: durations as job files write them (`7200`, `"90s"`, `"1h30m"`).
//! - `globs`: write-set globs (`files`): checked, and compared for possible overlap.
//! - `gates`: quality gates (`[[stages]]`), notifications (`[[notify]]`), stage records and
//!   verdicts.
//! - `spec`: the job model (`JobSpec`, `Settings`, `TaskSpec`), also the canonical file format.
//! - `validate`: every check a spec must pass, errors as data naming the tasks.
//! - `dag`: the validated graph and its analyses (levels, critical path, makespan estimate).
//! - `names`: subjects, streams, limits and file names, defined once.
//! - `api`: the coordinator's JSON API on `ordo.api.<verb>`.
//! - `wire`: `Dispatch` and `TaskResult`, what executors receive and report.
//!
//! No I/O and no process plumbing: connecting, telemetry, signals and failpoints live in
//! `ordo-plumbing`.

pub mod agents;
pub mod api;
pub mod clock;
pub mod dag;
pub mod duration;
pub mod gates;
pub mod globs;
pub mod ids;
pub mod names;
pub mod spec;
pub mod state;
pub mod validate;
pub mod wire;

pub use clock::{Millis, now_ms};
pub use dag::{Dag, Plan};
pub use duration::Dur;
pub use ids::{Attempt, AttemptRef, JobId, TaskIndex, TaskName, WorkerId};
pub use spec::{
    AgentCall, AgentKind, Deps, ExecutionMode, FlowEdge, IntegrationSettings, JobSpec, Jump,
    ModeDecision, ModeReason, Program, Settings, TaskSpec, WorkspaceMode, task_label,
};
pub use state::{Ignore, JobState, TaskPhase};
pub use wire::{
    AgentRun, BatchItem, Conflict, Dispatch, FileLines, Heartbeat, Integrate, Integration,
    IntegrationResult, ItemOutcome, Kill, Outcome, RateLimit, Resolve, TaskResult, Verify,
    WorkerEvent, Workspace, WorkspaceResult,
};
