//! The `ordo` command line as a library, so benches and tests reach the same code.
//!
//! # Layout
//! - `formats`: every input format → `JobSpec`, with file positions for errors.
//! - `graph`: Graphviz dot and Mermaid renderings of a job's DAG.
//! - `run`: the local runner (engine + store + executor in one process).
//! - `remote`: submit, status, jobs, watch, logs, cancel, retry, workers over NATS.
//! - `progress`: what a run shows while it goes (bars, lines, nothing).
//! - `summary`: the table or JSON a run prints at the end.
//! - `report`: job reports (Markdown, JSON, JUnit XML, HTML), `ordo report` and `ordo prune`.
//! - `mcp`: `ordo mcp`, the Model Context Protocol server on stdio (tools for AI agents).

pub mod formats;
pub mod graph;
pub mod mcp;
pub mod progress;
pub mod remote;
pub mod report;
pub mod run;
pub mod summary;
