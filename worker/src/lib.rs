//! ordo-worker: runs task attempts as local processes, for the local runner and the
//! distributed worker.
//!
//! # Layout
//! - `agent`: reads what agent CLIs print (Claude Code's JSON result, Codex's JSON events).
//! - `daemon`: the `ordo-worker` pull loop: JetStream consumers, leases, events, drain.
//! - `git_env`: the environment of every git process ordo starts (allowed transports).
//! - `guard`: the process that kills a dead worker's task processes.
//! - `metrics`: Prometheus metrics of the worker.
//! - `report`: events on their way to JetStream, batched while a publish is in flight.
//! - `exec`: runs one `Dispatch` as a process tree (program, then verify) and reports a
//!   `TaskResult`; knows nothing about NATS or redb.
//! - `workspace`: git I/O of agent workspaces (DESIGN §10): an attempt's worktree and branch,
//!   committing its changes, integrating it into the integration branch, removing it.

pub mod agent;
pub mod daemon;
pub mod exec;
pub mod git_env;
pub mod guard;
pub mod metrics;
pub mod report;
pub mod workspace;
