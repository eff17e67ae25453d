//! ordo's spec formats: every input format → one `JobSpec`, with source positions for
//! diagnostics; the settings overlay (`--with FILE`); the one way to prepare a submit
//! (`prepare`), which the CLI, the MCP server and the dashboard all call; and the renderings of
//! a spec (canonical JSON/TOML, Graphviz and Mermaid graphs). No process, network or store here:
//! only files are read (the spec, `--with`, TaskMaster's `state.json`). See docs/design.md,
//! "Pieces".
//!
//! # Formats
//! - `toml` / `json`: ordo's canonical format (serde straight into `JobSpec`, unknown fields
//!   rejected); the TOML one is a superset of Prompter's.
//! - `subtasks`: the MCP request shape `{"subtasks":[{id,description,command}],"executionMode"}`.
//! - `markdown-json`: the Markdown converter's JSON (`metadata`, `objective`, `subtasks`).
//! - `taskmaster`: TaskMaster's `tasks.json`, tagged or untagged.
//! - `task-list`: claude-code-mcp task lists, a top-level JSON array of tasks with `command` /
//!   `prompt` subtasks.
//! - `markdown`: Markdown task documents (`### Task N: Title` sections), or checklists
//!   (top-level `- [ ]` items under headings) when a document has no task sections.
//!
//! `detect` picks a format from the file's extension and, for JSON and unknown extensions,
//! its content; `LoadOptions::format` overrides. Every parser is total: any input yields a
//! spec or diagnostics, never a panic, and sizes and nesting are capped before a parser runs.
//!
//! # Positions
//! `Loaded::positions` maps each task to where it is defined (the TOML `name = …` value, the
//! JSON `"id"`/`"name"` value, the Markdown heading) so `check` can put `file:line:col` on the
//! validation errors that name a task.
//!
//! # Layout
//! - `load`: reading a file or text (size and UTF-8 checks), the dispatch to a format's parser,
//!   and `check` (validation, errors at their task's position); `options`: how to read one.
//! - `sniff`: `detect`, a format from the file name and the content.
//! - `format`: `Format`, the formats by name.
//! - `diagnostic`: `Pos`, `Diagnostic` and line/column lookup.
//! - `prepare`: spec source + load options + overrides → the submit request, its DAG and the
//!   warnings.
//! - `overlay`: `--with FILE` and the setting flags laid over a loaded spec.
//! - `parser`, `nesting`, `json_positions`, `json_fields`, `markdown_syntax`: what the parsers
//!   share; one module per format beside them.
//! - `write_back`: TaskMaster statuses written back into a `tasks.json`.
//! - `graph`: a validated job's DAG as Graphviz dot or Mermaid.

mod canonical;
mod checklist;
mod diagnostic;
mod format;
pub mod graph;
mod json_fields;
mod json_positions;
mod load;
mod markdown;
mod markdown_json;
mod markdown_syntax;
mod nesting;
mod options;
pub mod overlay;
mod parser;
pub mod prepare;
mod sniff;
mod subtasks;
mod task_list;
mod taskmaster;
pub mod write_back;

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;

pub use canonical::{to_json, to_toml};
pub use diagnostic::{Diagnostic, Pos};
pub use format::Format;
pub use load::{Loaded, check, load, parse};
pub use options::LoadOptions;
pub use overlay::Overlay;
pub use prepare::{NotPrepared, Overrides, Prepared, Source, With, prepare};
pub use sniff::detect;
