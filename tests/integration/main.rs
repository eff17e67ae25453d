//! ordo's integration tests: one test binary driving the real binaries.
//!
//! - `cli`: validate, plan, graph and convert on every shared example and on bad input.
//! - `distributed`: coordinator, workers and the CLI over a real nats-server.
//! - `run_local`: `ordo run` end to end: examples, every execution semantic, Ctrl-C, resume.

mod cli;
mod distributed;
mod run_local;
