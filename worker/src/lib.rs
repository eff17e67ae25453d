//! ordo-worker: runs task attempts as local processes, for the local runner now and the
//! distributed worker later.
//!
//! # Layout
//! - `daemon`: the `ordo-worker` pull loop: JetStream consumers, leases, events, drain.
//! - `metrics`: Prometheus metrics of the worker.
//! - `exec`: runs one `Dispatch` as a process tree (program, then verify) and reports a
//!   `TaskResult`; knows nothing about NATS or redb.

pub mod daemon;
pub mod exec;
pub mod metrics;
