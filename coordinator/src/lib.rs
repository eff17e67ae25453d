//! ordo-coordinator: advances jobs and keeps their state.
//!
//! # Layout
//! - `engine`: the sans-IO state machine (`Engine::apply(now, Event) -> Vec<Action>`), shared
//!   by the local runner and the coordinator service.
//! - `store`: the redb file: jobs, one record per task, attempts, history, outbox.
//! - `views`: job status and listings built from the store, for the API.
//! - `bus`: JetStream streams, consumers and publishing.
//! - `service`: the `ordo-coordinator` loop: commit, ack, reply, publish.

pub mod bus;
pub mod engine;
pub mod service;
pub mod store;
pub mod views;
