//! TaskMaster statuses written back into a `tasks.json` text (`ordo run --update-source`).
//!
//! The edit is surgical: only the bytes of a `"status"` value change (or a `"status"` member
//! is added after the object's last member, laid out like its first one), so every other
//! field keeps its value, its order, its formatting and its escapes. serde_json's
//! `preserve_order` is not enabled in the workspace (turning it on would reorder every JSON
//! object ordo prints), and re-serialising would reformat the user's file anyway. After the
//! edits the new text is parsed again and must equal the old document with the new statuses,
//! or nothing is returned.
//!
//! Tasks are found by id (and subtask id) under their tag, not by position, so a file whose
//! tasks were reordered or added to while the job ran is still updated correctly. `apply` does no I/O;
//! `write_file` applies edits to the file itself, replacing it atomically (`ordo run
//! --update-source` calls it from its writer thread).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use ordo_proto::TaskName;
use serde_json::Value;

use crate::json_fields::id_string;
use crate::nesting::{check_json_nesting, skip_json_string};

/// Where a job's task comes from in a TaskMaster file: the tag it is under (`None`: the
/// untagged `{"tasks":[…]}` layout), the task's id and, for an expanded subtask, its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRef {
    pub tag: Option<String>,
    pub task: String,
    pub subtask: Option<String>,
}

impl TaskRef {
    /// The id TaskMaster shows: `N` or `N.M`.
    pub fn id(&self) -> String {
        match &self.subtask {
            Some(s) => format!("{}.{s}", self.task),
            None => self.task.clone(),
        }
    }

    /// The task a subtask belongs to.
    pub fn parent(&self) -> Option<TaskRef> {
        self.subtask.as_ref().map(|_| TaskRef {
            tag: self.tag.clone(),
            task: self.task.clone(),
            subtask: None,
        })
    }
}

/// The TaskMaster task behind each task of a job read from a `tasks.json`.
pub type Sources = HashMap<TaskName, TaskRef>;

/// One status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub at: TaskRef,
    pub status: String,
    /// Only when the current status is one of these (`""`: no status member); always when
    /// empty.
    pub only_from: Vec<String>,
    /// Also every subtask whose status is not `done`/`completed`, as TaskMaster's own
    /// `set-status --status=done` does for a task with subtasks.
    pub subtasks: bool,
}

/// Statuses TaskMaster counts as finished, left alone when a task's subtasks follow it.
const DONE: &[&str] = &["done", "completed"];

/// Applies `edits` to a `tasks.json` text. Returns the new text (`None` when nothing
/// changed) and a warning for each edit whose task is no longer in the file. An error means
/// the text is not a TaskMaster file any more (or could not be edited safely); nothing is
/// changed then.
pub fn apply(text: &str, edits: &[Edit]) -> Result<(Option<String>, Vec<String>), String> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bom = &text[..text.len() - body.len()];
    if check_json_nesting(body).is_some() {
        return Err("nested too deeply to be a TaskMaster file".into());
    }
    let mut expected: Value =
        serde_json::from_str(body).map_err(|e| format!("not valid JSON any more: {e}"))?;
    if !expected.is_object() {
        return Err("not a JSON object any more".into());
    }
    let mut out = body.to_string();
    let mut warnings = Vec::new();
    let mut changed = false;
    for edit in edits {
        let path = match locate(&expected, &edit.at) {
            Ok(p) => p,
            Err(e) => {
                warnings.push(e);
                continue;
            }
        };
        let mut targets = vec![path.clone()];
        if edit.subtasks
            && let Some(Value::Array(subs)) = get(&expected, &path).and_then(|t| t.get("subtasks"))
        {
            for (j, s) in subs.iter().enumerate() {
                let status = s.get("status").and_then(Value::as_str).unwrap_or("");
                if s.is_object() && !DONE.contains(&status) {
                    let mut p = path.clone();
                    p.push(Step::Key("subtasks".into()));
                    p.push(Step::Index(j));
                    targets.push(p);
                }
            }
        }
        for (k, p) in targets.iter().enumerate() {
            let Some(Value::Object(obj)) = get_mut(&mut expected, p) else {
                continue;
            };
            let current = obj.get("status").and_then(Value::as_str).unwrap_or("");
            // The conditions are the edit's own task's; its subtasks follow it.
            if k == 0 && !edit.only_from.is_empty() && !edit.only_from.iter().any(|s| s == current)
            {
                break;
            }
            if obj.get("status").and_then(Value::as_str) == Some(edit.status.as_str()) {
                continue;
            }
            out = set_member(&out, p, "status", &Value::String(edit.status.clone()))?;
            obj.insert("status".into(), Value::String(edit.status.clone()));
            changed = true;
        }
    }
    if !changed {
        return Ok((None, warnings));
    }
    let reread: Value = serde_json::from_str(&out)
        .map_err(|e| format!("editing the statuses would break the JSON ({e}); not written"))?;
    if reread != expected {
        return Err("editing the statuses would change other fields; not written".into());
    }
    Ok((Some(format!("{bom}{out}")), warnings))
}

/// A step of the path to a value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of the object a `TaskRef` names in a parsed document.
fn locate(doc: &Value, at: &TaskRef) -> Result<Vec<Step>, String> {
    let mut path = Vec::new();
    let holder = match &at.tag {
        Some(tag) => {
            path.push(Step::Key(tag.clone()));
            doc.get(tag)
                .ok_or_else(|| format!("tag {tag:?} is no longer in the file"))?
        }
        None => doc,
    };
    let Some(Value::Array(tasks)) = holder.get("tasks") else {
        return Err("the file has no \"tasks\" array any more".into());
    };
    path.push(Step::Key("tasks".into()));
    let same = |v: &Value, id: &str| {
        v.get("id")
            .and_then(id_string)
            .is_some_and(|x| x == id && v.is_object())
    };
    let i = tasks
        .iter()
        .position(|t| same(t, &at.task))
        .ok_or_else(|| format!("task '{}' is no longer in the file", at.task))?;
    path.push(Step::Index(i));
    if let Some(sub) = &at.subtask {
        let Some(Value::Array(subs)) = tasks[i].get("subtasks") else {
            return Err(format!("task '{}' has no subtasks any more", at.task));
        };
        let j = subs
            .iter()
            .position(|s| same(s, sub))
            .ok_or_else(|| format!("subtask '{}' is no longer in the file", at.id()))?;
        path.push(Step::Key("subtasks".into()));
        path.push(Step::Index(j));
    }
    Ok(path)
}

fn get<'v>(v: &'v Value, path: &[Step]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get(k.as_str()),
        Step::Index(i) => v.get(*i),
    })
}

fn get_mut<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// Sets member `key` of the object at `path` in JSON `text` (valid JSON, as serde_json read
/// it) to `value`: the last `key` member's value is replaced, or a member is added after the
/// last one, separated and indented like the first.
fn set_member(text: &str, path: &[Step], key: &str, value: &Value) -> Result<String, String> {
    let b = text.as_bytes();
    let lost = || "could not find the task in the file's text".to_string();
    let mut i = ws(b, 0);
    for step in path {
        i = match step {
            Step::Key(k) => {
                members(text, i)?
                    .into_iter()
                    .rev()
                    .find(|m| m.key == *k)
                    .ok_or_else(lost)?
                    .value
                    .0
            }
            Step::Index(n) => *elements(b, i)?.get(*n).ok_or_else(lost)?,
        };
    }
    let members = members(text, i)?;
    let new = value.to_string();
    if let Some(m) = members.iter().rev().find(|m| m.key == key) {
        let (start, end) = m.value;
        return Ok(format!("{}{new}{}", &text[..start], &text[end..]));
    }
    let key_json = Value::String(key.to_string()).to_string();
    let (at, member) = match (members.first(), members.last()) {
        (Some(first), Some(last)) => {
            let lead = &text[i + 1..first.key_start];
            let colon = &text[first.key_end..first.value.0];
            (last.value.1, format!(",{lead}{key_json}{colon}{new}"))
        }
        _ => (i + 1, format!("{key_json}: {new}")),
    };
    Ok(format!("{}{member}{}", &text[..at], &text[at..]))
}

/// A member of an object in the text: its key, where the key starts and ends, and the span of
/// its value.
struct Member {
    key: String,
    key_start: usize,
    key_end: usize,
    value: (usize, usize),
}

fn bad() -> String {
    "the file's text is not the JSON it parsed as".to_string()
}

/// The members of the object starting at `i`.
fn members(text: &str, i: usize) -> Result<Vec<Member>, String> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'{') {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut j = ws(b, i + 1);
    if b.get(j) == Some(&b'}') {
        return Ok(out);
    }
    loop {
        if b.get(j) != Some(&b'"') {
            return Err(bad());
        }
        let key_end = skip_json_string(b, j);
        let key: String = serde_json::from_str(&text[j..key_end]).map_err(|_| bad())?;
        let colon = ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(bad());
        }
        let start = ws(b, colon + 1);
        let end = skip_value(b, start)?;
        out.push(Member {
            key,
            key_start: j,
            key_end,
            value: (start, end),
        });
        j = ws(b, end);
        match b.get(j) {
            Some(b',') => j = ws(b, j + 1),
            Some(b'}') => return Ok(out),
            _ => return Err(bad()),
        }
    }
}

/// Where each element of the array starting at `i` starts.
fn elements(b: &[u8], i: usize) -> Result<Vec<usize>, String> {
    if b.get(i) != Some(&b'[') {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut j = ws(b, i + 1);
    if b.get(j) == Some(&b']') {
        return Ok(out);
    }
    loop {
        out.push(j);
        j = ws(b, skip_value(b, j)?);
        match b.get(j) {
            Some(b',') => j = ws(b, j + 1),
            Some(b']') => return Ok(out),
            _ => return Err(bad()),
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// Index just past the value starting at `i` (iterative: brackets are counted).
fn skip_value(b: &[u8], i: usize) -> Result<usize, String> {
    match b.get(i) {
        None => Err(bad()),
        Some(b'"') => Ok(skip_json_string(b, i)),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_json_string(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(bad())
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            Ok(j)
        }
    }
}

/// Reads the file, applies `edits`, and replaces it if anything changed; returns the warnings
/// of edits whose task is gone.
pub fn write_file(file: &Path, edits: &[Edit]) -> Result<Vec<String>, String> {
    let text = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(text).map_err(|_| "not UTF-8 any more".to_string())?;
    let (new, warnings) = apply(&text, edits)?;
    if let Some(new) = new {
        replace(file, new.as_bytes()).map_err(|e| format!("cannot write: {e}"))?;
    }
    Ok(warnings)
}

/// Replaces `file` atomically: a temporary file beside it (same permissions), fsync, rename,
/// fsync of the directory.
fn replace(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tasks.json".into());
    let tmp = dir.join(format!(".{name}.ordo-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(file) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, file)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tag: Option<&str>, task: &str, sub: Option<&str>) -> TaskRef {
        TaskRef {
            tag: tag.map(String::from),
            task: task.into(),
            subtask: sub.map(String::from),
        }
    }

    fn set(at: TaskRef, status: &str) -> Edit {
        Edit {
            at,
            status: status.into(),
            only_from: vec![],
            subtasks: false,
        }
    }

    #[test]
    fn replaces_only_the_status_bytes() {
        let text = "{\n\t\"master\": {\"tasks\": [ {\"id\":1, \"status\" :\"pending\",\"title\":\"caf\\u00e9\"},\n {\"id\": \"2\", \"title\": \"b\"} ]}, \"other\": {\"tasks\": []}}\n";
        let edits = [
            set(at(Some("master"), "1", None), "in-progress"),
            set(at(Some("master"), "2", None), "done"),
        ];
        let (out, warnings) = apply(text, &edits).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            out.unwrap(),
            "{\n\t\"master\": {\"tasks\": [ {\"id\":1, \"status\" :\"in-progress\",\"title\":\"caf\\u00e9\"},\n {\"id\": \"2\", \"title\": \"b\",\"status\": \"done\"} ]}, \"other\": {\"tasks\": []}}\n"
        );
    }

    #[test]
    fn adds_a_member_laid_out_like_the_first() {
        let text = "{\n  \"tasks\": [\n    {\n      \"id\": 3,\n      \"title\": \"x\"\n    },\n    {}\n  ]\n}";
        let (out, _) = apply(text, &[set(at(None, "3", None), "done")]).unwrap();
        assert_eq!(
            out.unwrap(),
            "{\n  \"tasks\": [\n    {\n      \"id\": 3,\n      \"title\": \"x\",\n      \"status\": \"done\"\n    },\n    {}\n  ]\n}"
        );
    }

    #[test]
    fn subtasks_follow_and_conditions_hold() {
        let text = r#"{"tasks":[{"id":1,"status":"review","subtasks":[{"id":1,"status":"done"},{"id":2,"status":"pending"},{"id":3}]}]}"#;
        let mut e = set(at(None, "1", None), "done");
        e.subtasks = true;
        let (out, _) = apply(text, &[e.clone()]).unwrap();
        let v: Value = serde_json::from_str(&out.unwrap()).unwrap();
        let statuses: Vec<&str> = v["tasks"][0]["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["done", "done", "done"]);
        assert_eq!(v["tasks"][0]["status"], "done");
        // A parent is moved to in-progress only from pending.
        e.only_from = vec!["pending".into(), String::new()];
        assert_eq!(apply(text, &[e]).unwrap().0, None);
    }

    #[test]
    fn subtask_by_id_and_missing_tasks_warn() {
        let text = r#"{"tasks":[{"id":"1","subtasks":[{"id":7,"status":"pending"}]}]}"#;
        let edits = [
            set(at(None, "1", Some("7")), "in-progress"),
            set(at(None, "9", None), "done"),
            set(at(Some("feature"), "1", None), "done"),
        ];
        let (out, warnings) = apply(text, &edits).unwrap();
        assert_eq!(
            out.unwrap(),
            r#"{"tasks":[{"id":"1","subtasks":[{"id":7,"status":"in-progress"}]}]}"#
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("task '9'"));
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let e = [set(at(None, "1", None), "done")];
        for text in ["", "{", "[1]", "{\"tasks\": [{\"id\": 1,}]}", "\u{feff}"] {
            assert!(apply(text, &e).is_err(), "{text:?}");
        }
        // A byte-order mark is kept.
        let (out, _) = apply("\u{feff}{\"tasks\":[{\"id\":1}]}", &e).unwrap();
        assert_eq!(
            out.unwrap(),
            "\u{feff}{\"tasks\":[{\"id\":1,\"status\":\"done\"}]}"
        );
    }
}
