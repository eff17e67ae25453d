//! ordo-coordinator: advances jobs and keeps their state.
//!
//! # Layout
//! - `engine`: the sans-IO state machine (`Engine::apply(now, Event) -> Vec<Action>`), shared
//!   by the local runner and the coordinator service.
//! - `driver`: the one driver of the engine (apply, commit rule, outbox, wake-ups), used by the
//!   coordinator service and the local runner alike.
//! - `metrics`: Prometheus metrics from engine changes and the service loop.
//! - `store`: the redb file: jobs, one record per task, attempts, history, outbox.
//! - `wal`: the state file's write-ahead log, through which the store's commits are durable.
//! - `traces`: engine changes → OpenTelemetry spans (job root span, attempt spans).
//! - `views`: job status and listings built from the store, for the API.
//! - `report`: the records a job's report is rendered from (API, `ordo report`, `ordo run`).
//! - `bus`: JetStream streams, consumers and publishing.
//! - `ha`: `--ha`: the journal, the lease, snapshots, standby and failover.
//! - `host`: one driver and one store for every job of a process, every verb written once,
//!   driving an `Executor` (JetStream here, in-process in the `ordo` binary's local mode).
//! - `notify`: `[[notify]]` webhooks: events derived from committed changes, an outbox in the
//!   store, deliveries with backoff and signatures.
//! - `service`: the `ordo-coordinator` loop: a host with the JetStream executor, reached
//!   through the NATS API; input forwarders and the worker registry.

pub mod bus;
pub mod driver;
pub mod engine;
pub mod ha;
pub mod host;
pub mod metrics;
pub mod notify;
pub mod report;
pub mod service;
pub mod store;
pub mod traces;
pub mod views;
pub mod wal;
