//! The Markdown converter's JSON (`tests/fixtures/json/log-report.json`):
//! `{"metadata":{task_id,title,…}, "objective", "subtasks":[{id,title,description,steps,
//! dependencies,executionMode?}]}`.
//!
//! The job is named by `metadata.task_id` and described by `objective`. Each subtask becomes
//! the task named by its id: it runs its `command` (and `verify`) when it has one, else it is
//! a prompt task whose prompt is its title, description and steps as a checklist.
//! `executionMode` is kept as the label `execution_mode`, `title`, `status` and any other
//! field as labels of their own name.
//!
//! `subtasks::parse_subtasks` reads both subtasks dialects; `Converter` says what is this one's
//! own.

use ordo_proto::{JobSpec, TaskSpec};
use serde_json::Value;

use crate::json_fields::{JsonObject, id_string, label_value, text_field};
use crate::parser::prompt_text;
use crate::subtasks::{SubtaskField, SubtasksDialect};

/// Top-level fields the converter writes that have no place in a `JobSpec`.
const IGNORED: &[&str] = &[
    "requirements",
    "overview",
    "resources",
    "usage_examples",
    "research",
    "notes",
];

/// The Markdown converter's dialect: the job is named by `metadata.task_id`, and a subtask
/// has a title, steps and a verify command.
pub(crate) struct Converter;

impl SubtasksDialect for Converter {
    fn root_field(&self, spec: &mut JobSpec, key: &str, v: &Value) -> bool {
        match key {
            "metadata" => {
                if let Some(id) = v.get("task_id").and_then(id_string) {
                    spec.name = id;
                }
            }
            "objective" => spec.description = text_field(Some(v)),
            k => return IGNORED.contains(&k),
        }
        true
    }

    fn subtask_field<'k>(&self, key: &'k str) -> SubtaskField<'k> {
        match key {
            "title" | "steps" => SubtaskField::Skip,
            "verify" | "verify_command" | "verifyCommand" => SubtaskField::Verify,
            "executionMode" | "execution_mode" => SubtaskField::Label("execution_mode"),
            other => SubtaskField::Label(other),
        }
    }

    /// The title as a label; without a command, the prompt: title, description and steps.
    fn finish_task(&self, task: &mut TaskSpec, fields: &JsonObject) {
        let title = text_field(fields.get("title"));
        if let Some(t) = &title {
            task.labels.insert("title".into(), t.clone());
        }
        if task.command.is_none() {
            let steps: Vec<String> = match fields.get("steps") {
                Some(Value::Array(items)) => items.iter().filter_map(label_value).collect(),
                Some(other) => label_value(other).into_iter().collect(),
                None => Vec::new(),
            };
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
    }
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
