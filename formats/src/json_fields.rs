//! Reading the fields of the JSON-based foreign formats (subtasks, TaskMaster, task lists):
//! ids, labels, text, priorities and dependency lists as each of them writes them.

use ordo_proto::TaskName;
use serde_json::Value;

/// An id as a string: strings as written (trimmed), numbers in their JSON form.
pub(crate) fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A label value: strings as they are, `null` dropped, anything else as compact JSON.
pub(crate) fn label_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A text field: strings as they are, `null` and empty strings dropped, anything else as JSON.
pub(crate) fn text_field(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A task name from an id, or the reason it is not one.
pub(crate) fn task_name(id: &str) -> Result<TaskName, String> {
    TaskName::new(id).map_err(|e| e.to_string())
}

/// A JSON object's fields.
pub(crate) type JsonObject = serde_json::Map<String, Value>;

/// `high`/`medium`/`low` (any case) as 2/1/0; integers as they are.
pub(crate) fn priority(v: &Value) -> Option<i32> {
    match v {
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "critical" | "urgent" | "highest" => Some(3),
            "high" => Some(2),
            "medium" | "normal" => Some(1),
            "low" | "lowest" => Some(0),
            _ => None,
        },
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        _ => None,
    }
}

/// A dependency list: an array of ids, a single id, or nothing. Items that are not ids are
/// returned separately.
pub(crate) fn dependency_ids(v: Option<&Value>) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    let mut one = |v: &Value| match id_string(v) {
        Some(s) if !s.is_empty() => ids.push(s),
        _ => bad.push(v.to_string()),
    };
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => items.iter().for_each(&mut one),
        Some(other) => one(other),
    }
    (ids, bad)
}
