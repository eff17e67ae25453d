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
//! - `workspace`: git I/O of agent workspaces (docs/design.md, "Agent workspaces"): the one
//!   attempt path (`run_attempt`) and the one integration (`integrate`), with the worktree's
//!   source (the user's repository, or a worker's cache clone) behind `workspace::Source`.

pub mod agent;
pub mod daemon;
pub mod exec;
pub mod git_env;
pub mod guard;
pub mod metrics;
pub mod report;
pub mod workspace;
