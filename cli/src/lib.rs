//! The `ordo` command line as a library, so benches and tests reach the same code. The spec
//! formats, the settings overlay and the preparing of a submit are the `ordo-formats` crate.
//!
//! # Layout
//! - `args`: what several commands take alike (spec file, target, run options, output, exit
//!   codes).
//! - `local`: local mode: the coordinator's host with the in-process executor, its loop, and
//!   the Unix socket a state directory is served on.
//! - `run`: `ordo run`: one job run by a local host, shown in the terminal.
//! - `jobs`: the one job client (submit, status, list, cancel, retry, output, report, prune,
//!   workers), against a local state directory or a cluster.
//! - `manage`: the job commands (submit, status, jobs, watch, logs, cancel, retry, workers), a
//!   face of `jobs` for people.
//! - `mcp`: `ordo mcp`, the Model Context Protocol server on stdio, a face of `jobs` for agents.
//! - `mcp_stdio`: its line framing, which answers every line (parse and size errors).
//! - `progress`: what a run shows while it goes (bars, lines, nothing).
//! - `summary`: the table or JSON a run prints at the end.
//! - `update_source`: `ordo run --update-source`, TaskMaster statuses written back into
//!   `tasks.json` as the job runs.
//! - `ui`: `ordo ui`, the web dashboard, a face of `jobs` for people with a browser.
//! - `report`: `ordo report` and `ordo prune` (rendering is the `ordo-report` crate's).

pub mod args;
pub mod jobs;
pub mod local;
pub mod manage;
pub mod mcp;
pub mod mcp_stdio;
pub mod progress;
pub mod report;
pub mod run;
pub mod summary;
pub mod ui;
pub mod update_source;
