//! The Markdown converter's JSON (`tests/fixtures/json/log-report.json`):
//! `{"metadata":{task_id,title,…}, "objective", "subtasks":[{id,title,description,steps,
//! dependencies,executionMode?}]}`.
//!
//! The job is named by `metadata.task_id` and described by `objective`. Each subtask becomes
//! the task named by its id: it runs its `command` (and `verify`) when it has one, else it is
//! a prompt task whose prompt is its title, description and steps as a checklist.
//! `executionMode` is kept as the label `execution_mode`, `title`, `status` and any other
//! field as labels of their own name.

use std::collections::HashMap;

use ordo_proto::{ExecutionMode, JobSpec, TaskName, TaskSpec};
use serde_json::Value;

use super::{
    Converted, Ctx, Diagnostic, add_task, converted, dependency_ids, id_string, label_value,
    prompt_text, text_field,
};

/// Top-level fields the converter writes that have no place in a `JobSpec`.
const IGNORED: &[&str] = &[
    "requirements",
    "overview",
    "resources",
    "usage_examples",
    "research",
    "notes",
];

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
            "metadata" => {
                if let Some(id) = v.get("task_id").and_then(id_string) {
                    spec.name = id;
                }
            }
            "objective" => spec.description = text_field(Some(v)),
            "executionMode" | "execution_mode" => {
                match v.as_str().map(str::parse::<ExecutionMode>) {
                    Some(Ok(mode)) => spec.settings.execution_mode = Some(mode),
                    Some(Err(e)) => errors.push(ctx.diag(at.get(&format!("/{key}")), e)),
                    None => errors.push(ctx.diag(
                        at.get(&format!("/{key}")),
                        "executionMode must be \"sequential\" or \"parallel\"",
                    )),
                }
            }
            k if IGNORED.contains(&k) => {}
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
        let title = text_field(fields.get("title"));
        let mut steps = Vec::new();
        for (key, v) in fields {
            let field_pos = at
                .get(&format!("{element}/{}", super::pointer_key(key)))
                .or(pos);
            let mut string = |slot: &mut Option<String>| match v {
                Value::String(s) => *slot = Some(s.clone()),
                Value::Null => {}
                _ => errors.push(ctx.diag(
                    field_pos,
                    format!("subtask '{name}': {key} must be a string"),
                )),
            };
            match key.as_str() {
                "id" | "title" => {}
                "description" => task.description = text_field(Some(v)),
                "command" => string(&mut task.command),
                "verify" | "verify_command" | "verifyCommand" => string(&mut task.verify_command),
                "steps" => match v {
                    Value::Array(items) => steps.extend(items.iter().filter_map(label_value)),
                    other => steps.extend(label_value(other)),
                },
                "dependencies" | "depends_on" | "dependsOn" => {
                    let (ids, bad) = dependency_ids(Some(v));
                    for b in bad {
                        errors.push(ctx.diag(
                            field_pos,
                            format!("subtask '{name}': dependency {b} is not a task id"),
                        ));
                    }
                    for d in ids {
                        match TaskName::new(d) {
                            Ok(d) if !task.depends_on.contains(&d) => task.depends_on.push(d),
                            Ok(_) => {}
                            Err(e) => {
                                errors.push(ctx.diag(field_pos, format!("subtask '{name}': {e}")))
                            }
                        }
                    }
                }
                "executionMode" | "execution_mode" => {
                    if let Some(m) = label_value(v) {
                        task.labels.insert("execution_mode".into(), m);
                    }
                }
                other => {
                    if let Some(v) = label_value(v) {
                        task.labels.insert(other.to_string(), v);
                    }
                }
            }
        }
        if let Some(t) = &title {
            task.labels.insert("title".into(), t.clone());
        }
        if task.command.is_none() {
            let checklist = steps
                .iter()
                .map(|s| checklist_item(s))
                .collect::<Vec<_>>()
                .join("\n");
            let prompt = prompt_text(&[
                (None, title.as_deref().unwrap_or_default()),
                (None, task.description.as_deref().unwrap_or_default()),
                (Some("Steps"), &checklist),
            ]);
            if !prompt.is_empty() {
                task.prompt = Some(prompt);
            }
        }
        add_task(&mut spec, &mut positions, task, pos);
    }
    converted(spec, positions, warnings, errors)
}

/// A step as a checklist line; steps already written as one are kept.
pub(crate) fn checklist_item(step: &str) -> String {
    let s = step.trim();
    if s.starts_with("- [") {
        s.to_string()
    } else if s.starts_with("[ ]") || s.starts_with("[x]") || s.starts_with("[X]") {
        format!("- {s}")
    } else {
        format!("- [ ] {s}")
    }
}
