//! The subtasks JSON of MCP requests:
//! `{"subtasks":[{"id","description","command","dependencies"?}], "executionMode"}`.
//!
//! Each subtask becomes the task named by its id running its command; `executionMode` sets
//! the job's mode; any other field of a subtask is kept as a label. Dependencies are kept as
//! written, so validation rejects dangling ones (this is a request, not a foreign file).
//!
//! `parse_subtasks` reads both subtasks dialects (this one and `markdown_json`'s, through
//! `SubtasksDialect`); `Mcp` says what is this one's own.

use std::collections::HashMap;

use ordo_proto::{ExecutionMode, JobSpec, TaskName, TaskSpec};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, Pos};
use crate::json_fields::{
    JsonObject, dependency_ids, id_string, label_value, task_name, text_field,
};
use crate::json_positions::{JsonPositions, pointer_key};
use crate::parser::{Converted, Ctx, add_task, converted};

/// The MCP request's dialect: the job's name and description are top-level fields, and every
/// subtask field other than those all dialects read is a label.
pub(crate) struct Mcp;

impl SubtasksDialect for Mcp {
    fn root_field(&self, spec: &mut JobSpec, key: &str, v: &Value) -> bool {
        match key {
            "name" | "title" if spec.name.is_empty() => {
                spec.name = text_field(Some(v)).unwrap_or_default();
            }
            "description" => spec.description = text_field(Some(v)),
            _ => return false,
        }
        true
    }
}

/// What sets one subtasks dialect (the MCP request, the Markdown converter's JSON) apart from
/// the other: the fields they do not read alike.
pub(crate) trait SubtasksDialect {
    /// Reads the top-level field `key` (not `subtasks` or `executionMode`) into `spec`; false
    /// when it means nothing in this dialect, so that it is warned about as ignored.
    fn root_field(&self, spec: &mut JobSpec, key: &str, v: &Value) -> bool;

    /// What the subtask field `key` is, when it is none of `id`, `description`, `command` and
    /// the dependencies; by default a label of its own name.
    fn subtask_field<'k>(&self, key: &'k str) -> SubtaskField<'k> {
        SubtaskField::Label(key)
    }

    /// Completes the task of a subtask once all its fields are read.
    fn finish_task(&self, _task: &mut TaskSpec, _fields: &JsonObject) {}
}

/// A subtask field that a dialect reads its own way.
pub(crate) enum SubtaskField<'k> {
    /// Not read here (`finish_task` may read it).
    Skip,
    /// The verify command, a string or null like `command`.
    Verify,
    /// A label of this name (null drops it, a non-string is kept as JSON).
    Label(&'k str),
}

/// Reads a subtasks document `{"subtasks":[…], "executionMode"?, …}` in `dialect`: the
/// top-level `executionMode` sets the job's mode, each subtask becomes the task named by its
/// `id`, and every error is reported (positions at the field concerned, else the subtask).
pub(crate) fn parse_subtasks(
    ctx: &Ctx<'_>,
    dialect: &impl SubtasksDialect,
) -> Result<Converted, Vec<Diagnostic>> {
    let value = ctx.json_value()?;
    let at = ctx.json_positions();
    let (root, subtasks) = subtasks_root(ctx, &at, &value)?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut spec = JobSpec::default();
    for (key, v) in root {
        match key.as_str() {
            "subtasks" => {}
            "executionMode" | "execution_mode" => {
                let pos = at.get(&format!("/{key}"));
                match v.as_str().map(str::parse::<ExecutionMode>) {
                    Some(Ok(mode)) => spec.settings.execution_mode = Some(mode),
                    Some(Err(e)) => errors.push(ctx.diag(pos, e)),
                    None => errors.push(
                        ctx.diag(pos, "executionMode must be \"sequential\" or \"parallel\""),
                    ),
                }
            }
            other if dialect.root_field(&mut spec, other, v) => {}
            other => warnings.push(ctx.warning(
                at.get(&format!("/{}", pointer_key(other))),
                format!("ignored field {other:?}"),
            )),
        }
    }
    let mut positions = HashMap::new();
    for (i, sub) in subtasks.iter().enumerate() {
        match subtask_task(ctx, &at, dialect, i, sub, &mut errors) {
            Ok((task, pos)) => add_task(&mut spec, &mut positions, task, pos),
            Err(e) => errors.push(e),
        }
    }
    converted(spec, positions, warnings, errors)
}

/// The top-level object of a subtasks document (both JSON dialects) and its `subtasks` array.
fn subtasks_root<'v>(
    ctx: &Ctx<'_>,
    at: &JsonPositions,
    value: &'v Value,
) -> Result<(&'v JsonObject, &'v [Value]), Vec<Diagnostic>> {
    let Value::Object(root) = value else {
        return Err(vec![ctx.diag(
            at.get(""),
            "expected a JSON object with a \"subtasks\" array",
        )]);
    };
    let Some(Value::Array(subtasks)) = root.get("subtasks") else {
        return Err(vec![ctx.diag(
            at.get("/subtasks").or(at.get("")),
            "expected a \"subtasks\" array",
        )]);
    };
    Ok((root, subtasks))
}

/// The task of the `i`-th element of a `subtasks` array and where it is defined (its `id`), or
/// the error that leaves it without a name; errors in its other fields go to `errors`.
fn subtask_task(
    ctx: &Ctx<'_>,
    at: &JsonPositions,
    dialect: &impl SubtasksDialect,
    i: usize,
    sub: &Value,
    errors: &mut Vec<Diagnostic>,
) -> Result<(TaskSpec, Option<Pos>), Diagnostic> {
    let element = format!("/subtasks/{i}");
    let pos = at.task(&element, "id");
    let Value::Object(fields) = sub else {
        return Err(ctx.diag(pos, format!("subtask #{} is not an object", i + 1)));
    };
    let Some(id) = fields.get("id").and_then(id_string) else {
        return Err(ctx.diag(
            pos,
            format!("subtask #{} needs an \"id\" (string or number)", i + 1),
        ));
    };
    let name = task_name(&id).map_err(|e| ctx.diag(pos, e))?;
    let mut task = TaskSpec::empty(name.clone());
    for (key, v) in fields {
        let field_pos = || at.get(&format!("{element}/{}", pointer_key(key))).or(pos);
        let mut string = |slot: &mut Option<String>| match v {
            Value::String(s) => *slot = Some(s.clone()),
            Value::Null => {}
            _ => errors.push(ctx.diag(
                field_pos(),
                format!("subtask '{name}': {key} must be a string"),
            )),
        };
        match key.as_str() {
            "id" => {}
            "description" => task.description = text_field(Some(v)),
            "command" => string(&mut task.command),
            "dependencies" | "depends_on" | "dependsOn" => {
                // Written, even empty: the subtasks follow their graph (the job is parallel).
                task.depends_on.declare();
                let (ids, bad) = dependency_ids(Some(v));
                for b in bad {
                    errors.push(ctx.diag(
                        field_pos(),
                        format!("subtask '{name}': dependency {b} is not a task id"),
                    ));
                }
                for d in ids {
                    match TaskName::new(d) {
                        Ok(d) if !task.depends_on.contains(&d) => task.depends_on.push(d),
                        Ok(_) => {}
                        Err(e) => {
                            errors.push(ctx.diag(field_pos(), format!("subtask '{name}': {e}")))
                        }
                    }
                }
            }
            other => match dialect.subtask_field(other) {
                SubtaskField::Skip => {}
                SubtaskField::Verify => string(&mut task.verify_command),
                SubtaskField::Label(label) => {
                    if let Some(v) = label_value(v) {
                        task.labels.insert(label.to_string(), v);
                    }
                }
            },
        }
    }
    dialect.finish_task(&mut task, fields);
    Ok((task, pos))
}
