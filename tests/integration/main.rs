//! ordo's integration tests: one test binary driving the real binaries.
//!
//! - `cli`: validate, plan, graph and convert on every shared example and on bad input.
//! - `run_local`: `ordo run` end to end: examples, every execution semantic, Ctrl-C, resume.

mod cli;
mod run_local;
