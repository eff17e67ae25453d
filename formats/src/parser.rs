//! What every parser shares: its input (`Ctx`: the text, its label, the load options and
//! positions), its output (`Converted`), and the helpers to build one.

use std::collections::HashMap;

use ordo_proto::names::MAX_NESTING;
use ordo_proto::{JobSpec, TaskName, TaskSpec};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, LineIndex, Pos};
use crate::json_positions::{JsonPositions, json_positions};
use crate::nesting::check_json_nesting;
use crate::options::LoadOptions;
use crate::write_back;

/// What a parser produces; `parse` adds the format and the default name.
pub(crate) struct Converted {
    pub spec: JobSpec,
    pub positions: HashMap<TaskName, Pos>,
    pub warnings: Vec<String>,
    /// TaskMaster only: see `Loaded::sources`.
    pub sources: Option<write_back::Sources>,
    /// See `Loaded::nothing_to_do`.
    pub nothing_to_do: Option<String>,
    /// Where each of the spec's `[[stages]]` is defined (canonical formats only).
    pub stage_positions: Vec<Option<Pos>>,
}

/// Adds `task` to `spec`, and `pos` as where it is defined unless its name already has a
/// position (the first definition of a name is the one diagnostics point at).
pub(crate) fn add_task(
    spec: &mut JobSpec,
    positions: &mut HashMap<TaskName, Pos>,
    task: TaskSpec,
    pos: Option<Pos>,
) {
    if let Some(p) = pos {
        positions.entry(task.name.clone()).or_insert(p);
    }
    spec.tasks.push(task);
}

/// A parser's result: every error it found if there is any, else the spec with its positions
/// and warnings (a spec is never returned alongside errors).
pub(crate) fn converted(
    spec: JobSpec,
    positions: HashMap<TaskName, Pos>,
    warnings: Vec<String>,
    errors: Vec<Diagnostic>,
) -> Result<Converted, Vec<Diagnostic>> {
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Converted {
        spec,
        positions,
        warnings,
        sources: None,
        nothing_to_do: None,
        stage_positions: Vec::new(),
    })
}

/// The input of a parser: text, its label, options and a line index for positions.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub opts: &'a LoadOptions,
    lines: LineIndex,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str, opts: &'a LoadOptions) -> Ctx<'a> {
        Ctx {
            file,
            text,
            opts,
            lines: LineIndex::new(text),
        }
    }

    pub fn diag(&self, pos: Option<Pos>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, pos, message)
    }

    /// A warning, formatted like a diagnostic.
    pub fn warning(&self, pos: Option<Pos>, message: impl Into<String>) -> String {
        self.diag(pos, message).to_string()
    }

    /// Line and column of a byte offset.
    pub fn pos_at(&self, offset: usize) -> Pos {
        self.lines.pos_at(self.text, offset)
    }

    /// The text as a JSON value, after the nesting cap; syntax errors carry their position.
    pub fn json_value(&self) -> Result<Value, Vec<Diagnostic>> {
        if let Some(offset) = check_json_nesting(self.text) {
            return Err(vec![self.nesting_error(offset)]);
        }
        serde_json::from_str(self.text).map_err(|e| vec![self.json_error(&e)])
    }

    pub fn json_error(&self, e: &serde_json::Error) -> Diagnostic {
        let pos = (e.line() > 0).then(|| Pos::new(e.line() as u32, e.column().max(1) as u32));
        let mut message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        if matches!(
            e.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        ) {
            message = format!("invalid JSON: {message}");
        }
        self.diag(pos, message)
    }

    pub fn nesting_error(&self, offset: usize) -> Diagnostic {
        self.diag(
            Some(self.pos_at(offset)),
            format!("nested deeper than {MAX_NESTING} levels; not accepted"),
        )
    }

    /// Positions of the interesting values of a JSON document, by JSON pointer.
    pub fn json_positions(&self) -> JsonPositions {
        json_positions(self.text)
    }
}

/// Joins the non-empty parts of a prompt with blank lines, each under its heading if any.
pub(crate) fn prompt_text(parts: &[(Option<&str>, &str)]) -> String {
    let mut out = String::new();
    for (heading, body) in parts {
        let body = body.trim_end();
        if body.trim().is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        if let Some(h) = heading {
            out.push_str(h);
            out.push_str(":\n");
        }
        out.push_str(body);
    }
    out
}
