//! ordo-proto: what every ordo component agrees on.
//!
//! # Layout
//! - `ids`: `JobId`, `TaskName`, `Attempt` newtypes.
//! - `duration`: durations as job files write them (`7200`, `"90s"`, `"1h30m"`).
//! - `spec`: the job model (`JobSpec`, `Settings`, `TaskSpec`), also the canonical file format.
//! - `validate`: every check a spec must pass, errors as data naming the tasks.
//! - `failpoint`: crash points for the fault suite (debug builds only).
//! - `dag`: the validated graph and its analyses (levels, critical path, makespan estimate).
//! - `names`: subjects, streams, limits and file names, defined once.
//! - `connect` (feature `client`): NATS connection flags and `connect()` for the binaries.
//! - `signals` (feature `client`): waiting for Ctrl-C or SIGTERM.
//! - `telemetry` (feature `telemetry`): OTLP traces with ids derived from jobs, logs setup.
//! - `api`: the coordinator's JSON API on `ordo.api.<verb>`.
//! - `wire`: `Dispatch` and `TaskResult`, what executors receive and report.

pub mod api;
#[cfg(feature = "client")]
pub mod connect;
pub mod dag;
pub mod duration;
pub mod failpoint;
pub mod ids;
pub mod names;
#[cfg(feature = "client")]
pub mod signals;
pub mod spec;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod validate;
pub mod wire;

pub use dag::{Dag, Plan};
pub use duration::Dur;
pub use ids::{Attempt, JobId, TaskName};
pub use spec::{ExecutionMode, JobSpec, Jump, Program, Settings, TaskSpec};
pub use wire::{Dispatch, Heartbeat, Kill, Outcome, TaskResult, Verify, WorkerEvent};
