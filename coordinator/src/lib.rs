//! ordo-coordinator: advances jobs and keeps their state.
//!
//! # Layout
//! - `engine`: the sans-IO state machine (`Engine::apply(now, Event) -> Vec<Action>`), shared
//!   by the local runner and the coordinator service.
//! - `store`: the redb file: jobs, one record per task, attempts, history, outbox.

pub mod engine;
pub mod store;
