//! The subtasks JSON of MCP requests:
//! `{"subtasks":[{"id","description","command","dependencies"?}], "executionMode"}`.
//!
//! Each subtask becomes the task named by its id running its command; `executionMode` sets
//! the job's mode; any other field of a subtask is kept as a label. Dependencies are kept as
//! written, so validation rejects dangling ones (this is a request, not a foreign file).

use std::collections::HashMap;

use ordo_proto::{ExecutionMode, JobSpec, TaskName, TaskSpec};
use serde_json::Value;

use super::{
    Converted, Ctx, Diagnostic, add_task, converted, dependency_ids, label_value, text_field,
};

pub(super) fn parse(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
    let value = ctx.json_value()?;
    let at = ctx.json_positions();
    let (root, subtasks) = super::subtasks_root(ctx, &at, &value)?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut spec = JobSpec::default();
    for (key, v) in root {
        match key.as_str() {
            "subtasks" => {}
            "executionMode" | "execution_mode" => {
                match v.as_str().map(str::parse::<ExecutionMode>) {
                    Some(Ok(mode)) => spec.settings.execution_mode = Some(mode),
                    Some(Err(e)) => errors.push(ctx.diag(at.get("/executionMode"), e)),
                    None => errors.push(ctx.diag(
                        at.get(&format!("/{key}")),
                        "executionMode must be \"sequential\" or \"parallel\"",
                    )),
                }
            }
            "name" | "title" if spec.name.is_empty() => {
                spec.name = text_field(Some(v)).unwrap_or_default();
            }
            "description" => spec.description = text_field(Some(v)),
            other => warnings.push(ctx.warning(
                at.get(&format!("/{}", super::pointer_key(other))),
                format!("ignored field {other:?}"),
            )),
        }
    }
    let mut positions = HashMap::new();
    for (i, sub) in subtasks.iter().enumerate() {
        let element = format!("/subtasks/{i}");
        let (fields, name, pos) = match super::subtask_head(ctx, &at, i, sub) {
            Ok(head) => head,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut task = TaskSpec::empty(name.clone());
        for (key, v) in fields {
            match key.as_str() {
                "id" => {}
                "description" => task.description = text_field(Some(v)),
                "command" => match v {
                    Value::String(c) => task.command = Some(c.clone()),
                    Value::Null => {}
                    _ => errors.push(ctx.diag(
                        at.get(&format!("{element}/command")).or(pos),
                        format!("subtask '{name}': command must be a string"),
                    )),
                },
                "dependencies" | "depends_on" | "dependsOn" => {
                    let (ids, bad) = dependency_ids(Some(v));
                    for b in bad {
                        errors.push(ctx.diag(
                            at.get(&format!("{element}/{key}")).or(pos),
                            format!("subtask '{name}': dependency {b} is not a task id"),
                        ));
                    }
                    for d in ids {
                        match TaskName::new(d) {
                            Ok(d) => {
                                if !task.depends_on.contains(&d) {
                                    task.depends_on.push(d)
                                }
                            }
                            Err(e) => errors.push(ctx.diag(pos, format!("subtask '{name}': {e}"))),
                        }
                    }
                }
                other => {
                    if let Some(v) = label_value(v) {
                        task.labels.insert(other.to_string(), v);
                    }
                }
            }
        }
        add_task(&mut spec, &mut positions, task, pos);
    }
    converted(spec, positions, warnings, errors)
}
