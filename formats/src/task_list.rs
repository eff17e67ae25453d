//! claude-code-mcp task lists: a top-level JSON array of tasks,
//! `[{"id","title","description","executionMode"?,"subtasks":[{"command"} | {"prompt",
//! "expected_answer"?}]}]` (`tests/fixtures/json/claude-code-mcp_tasks.json`).
//!
//! - The `n`-th subtask (from 1) of the task with id `T` becomes the ordo task `T.n`: a
//!   command task for `{"command"}`, a prompt task for `{"prompt"}`; `expected_answer` and any
//!   other subtask field are kept as labels, and the task's `title` as the label `title`, its
//!   id as the label `task`, its `description` as the description of each of its subtasks
//!   (unless the subtask has one).
//! - A task's `executionMode` (default `sequential`) orders its own subtasks: sequential, each
//!   depends on the one before; parallel, none on another; `mixed`, each subtask says with its
//!   own `executionMode` (default `sequential`): consecutive `parallel` subtasks form a group
//!   that runs together, a `sequential` one runs after everything before it and before
//!   everything after it (the rule of the Markdown documents' mixed mode).
//! - So a task's subtasks are a row of groups, each group after the whole of the one before;
//!   the tasks run in list order, each after the whole of the one before: the first group of
//!   a task depends on the last group of the task before.
//! - A task without subtasks becomes one prompt task named by its id: its title and
//!   description (or its own `command`/`prompt` when it has one).
//! - The job's mode is set to parallel: the order is in the dependencies.
//!
//! Positions: a task's subtasks at their element of the array, a task without subtasks at its
//! `id`.

use std::collections::HashMap;

use ordo_proto::{ExecutionMode, JobSpec, TaskName, TaskSpec};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, Pos};
use crate::json_fields::{JsonObject, id_string, label_value, task_name, text_field};
use crate::json_positions::{JsonPositions, pointer_key};
use crate::parser::{Converted, Ctx, add_task, converted, prompt_text};

/// Task fields read here; any other is kept as a label of each of its subtasks.
const TASK_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "executionMode",
    "execution_mode",
    "subtasks",
    "command",
    "prompt",
];

pub(crate) fn parse(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
    let value = ctx.json_value()?;
    let at = ctx.json_positions();
    let Value::Array(tasks) = &value else {
        return Err(vec![ctx.diag(at.get(""), "expected a JSON array of tasks")]);
    };
    if tasks.is_empty() {
        return Err(vec![ctx.diag(at.get(""), "the task list is empty")]);
    }
    let mut errors = Vec::new();
    let mut spec = JobSpec::default();
    spec.settings.execution_mode = Some(ExecutionMode::Parallel);
    let mut positions = HashMap::new();
    // What the next task waits for: the exits of the task before.
    let mut before: Vec<TaskName> = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        match list_task(ctx, &at, i, t, &before, &mut errors) {
            Ok(made) => {
                before = made.exits;
                for (task, pos) in made.tasks {
                    add_task(&mut spec, &mut positions, task, pos);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    converted(spec, positions, Vec::new(), errors)
}

/// The ordo tasks of one task of the list, and which of them the next task waits for.
struct Made {
    tasks: Vec<(TaskSpec, Option<Pos>)>,
    exits: Vec<TaskName>,
}

fn list_task(
    ctx: &Ctx<'_>,
    at: &JsonPositions,
    i: usize,
    t: &Value,
    before: &[TaskName],
    errors: &mut Vec<Diagnostic>,
) -> Result<Made, Diagnostic> {
    let element = format!("/{i}");
    let pos = at.task(&element, "id");
    let Value::Object(fields) = t else {
        return Err(ctx.diag(pos, format!("task #{} is not an object", i + 1)));
    };
    let Some(id) = fields
        .get("id")
        .and_then(id_string)
        .filter(|s| !s.is_empty())
    else {
        return Err(ctx.diag(
            pos,
            format!("task #{} needs an \"id\" (string or number)", i + 1),
        ));
    };
    let field_pos = |key: &str| at.get(&format!("{element}/{}", pointer_key(key))).or(pos);
    let mode = order(fields, true)
        .map_err(|e| ctx.diag(field_pos("executionMode"), format!("task '{id}': {e}")))?;
    let title = text_field(fields.get("title"));
    let description = text_field(fields.get("description"));
    // Labels every task made from this one carries.
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("task".to_string(), id.clone());
    if let Some(t) = &title {
        labels.insert("title".to_string(), t.clone());
    }
    for (key, v) in fields {
        if !TASK_FIELDS.contains(&key.as_str())
            && let Some(v) = label_value(v)
        {
            labels.insert(key.clone(), v);
        }
    }
    let subtasks = match fields.get("subtasks") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => &items[..],
        Some(_) => {
            return Err(ctx.diag(
                field_pos("subtasks"),
                format!("task '{id}': subtasks must be an array"),
            ));
        }
    };

    if subtasks.is_empty() {
        // The task itself is the work.
        let name = task_name(&id).map_err(|e| ctx.diag(pos, e))?;
        let mut task = TaskSpec::empty(name.clone());
        task.labels = labels;
        task.description = description.clone();
        task.depends_on = before.to_vec().into();
        task.command = text_field(fields.get("command"));
        task.prompt = text_field(fields.get("prompt"));
        if task.command.is_none() && task.prompt.is_none() {
            let prompt = prompt_text(&[
                (None, title.as_deref().unwrap_or_default()),
                (None, description.as_deref().unwrap_or_default()),
            ]);
            if prompt.is_empty() {
                return Err(ctx.diag(
                    pos,
                    format!("task '{id}' has no subtasks, command, prompt, title or description"),
                ));
            }
            task.prompt = Some(prompt);
        }
        return Ok(Made {
            tasks: vec![(task, pos)],
            exits: vec![name],
        });
    }

    let mut made = Vec::new();
    // The groups so far; each runs after the whole of the one before (`before` for the first).
    let mut groups: Vec<Vec<TaskName>> = Vec::new();
    // Whether the last group takes further parallel subtasks.
    let mut open = false;
    for (n, sub) in subtasks.iter().enumerate() {
        let sub_element = format!("{element}/subtasks/{n}");
        let sub_pos = at.get(&sub_element).or(pos);
        let name = task_name(&format!("{id}.{}", n + 1)).map_err(|e| ctx.diag(pos, e))?;
        let Value::Object(sf) = sub else {
            errors.push(ctx.diag(
                sub_pos,
                format!("task '{id}': subtask #{} is not an object", n + 1),
            ));
            continue;
        };
        let mut task = TaskSpec::empty(name.clone());
        task.labels = labels.clone();
        let own = match mode {
            Order::Mixed => order(sf, false).unwrap_or_else(|e| {
                let key = ["executionMode", "execution_mode"]
                    .into_iter()
                    .find(|k| sf.contains_key(*k))
                    .unwrap_or("executionMode");
                errors.push(ctx.diag(
                    at.get(&format!("{sub_element}/{key}")).or(sub_pos),
                    format!("task '{name}': {e}"),
                ));
                Order::Sequential
            }),
            other => other,
        };
        let mut string = |key: &str, v: &Value, slot: &mut Option<String>| match v {
            Value::String(s) if !s.trim().is_empty() => *slot = Some(s.clone()),
            Value::Null => {}
            _ => errors.push(
                ctx.diag(
                    at.get(&format!("{sub_element}/{}", pointer_key(key)))
                        .or(sub_pos),
                    format!("task '{name}': {key} must be a non-empty string"),
                ),
            ),
        };
        for (key, v) in sf {
            match key.as_str() {
                "command" => string(key, v, &mut task.command),
                "prompt" => string(key, v, &mut task.prompt),
                "description" => task.description = text_field(Some(v)),
                other => {
                    if let Some(v) = label_value(v) {
                        task.labels.insert(other.to_string(), v);
                    }
                }
            }
        }
        if task.description.is_none() {
            task.description = description.clone();
        }
        if task.command.is_none() && task.prompt.is_none() {
            errors.push(ctx.diag(
                sub_pos,
                format!("task '{name}': a subtask needs a \"command\" or a \"prompt\""),
            ));
        }
        let parallel = own == Order::Parallel;
        if !(parallel && open) {
            groups.push(Vec::new());
        }
        open = parallel;
        let k = groups.len() - 1;
        let after = if k == 0 { before } else { &groups[k - 1][..] };
        task.depends_on = after.to_vec().into();
        groups[k].push(name);
        made.push((task, sub_pos));
    }
    let exits = groups.pop().unwrap_or_default();
    Ok(Made { tasks: made, exits })
}

/// How a task orders its subtasks (`executionMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Sequential,
    Parallel,
    /// Each subtask says (tasks only).
    Mixed,
}

/// The `executionMode` (or `execution_mode`) of a task (`mixed` allowed) or of a subtask of a
/// mixed task; `sequential` when it has none.
fn order(fields: &JsonObject, task: bool) -> Result<Order, String> {
    let expected = if task {
        "executionMode must be \"sequential\", \"parallel\" or \"mixed\""
    } else {
        "executionMode must be \"sequential\" or \"parallel\""
    };
    match fields
        .get("executionMode")
        .or_else(|| fields.get("execution_mode"))
    {
        None | Some(Value::Null) => Ok(Order::Sequential),
        Some(Value::String(s)) if task && s.trim().eq_ignore_ascii_case("mixed") => {
            Ok(Order::Mixed)
        }
        Some(Value::String(s)) => match s.parse::<ExecutionMode>() {
            Ok(ExecutionMode::Sequential) => Ok(Order::Sequential),
            Ok(ExecutionMode::Parallel) => Ok(Order::Parallel),
            Err(_) => Err(format!("{expected}, not {s:?}")),
        },
        Some(_) => Err(expected.to_string()),
    }
}
