//! Markdown task documents (`markdown/*.md`, both dialects).
//!
//! - The job is named by the first `# ` heading (status marks such as `⏳ Not Started`
//!   removed) and described by the `**Objective**:` line; an `Execution mode: …` line before
//!   the first task sets the job's mode.
//! - Each `### Task N: Title` section (any heading level from 2, at the start of a line and
//!   outside fenced code) becomes task `task-N`. Status marks and a trailing `(Sequential)`-style
//!   note are not part of the title; a mode named there is used when the section has no
//!   `Execution mode:` line. The section ends at the next heading of its level or above.
//! - In a section: `Depends on: Task 1, Task 2` → dependencies `task-1`, `task-2`;
//!   `Execution mode: parallel` → label `execution_mode`; `- [ ] N.M step` lines (and the
//!   bullets of an `Implementation Steps:` block) → steps, with deeper-indented bullets kept
//!   under their step; the bullets of a `Verification …:` block → verification text;
//!   `command:` / `verify:` lines and fenced `sh`/`bash`/`shell`/`zsh` blocks → `command` and
//!   `verify_command` (a fence goes to verify when it follows a line mentioning verification
//!   or sits in a verification block; further command fences are appended to the command);
//!   `**Key**: value | **Other**: value` lines → labels (`priority` also sets the priority);
//!   `**Description**:` and any other line or bullet → description; other fenced code is kept
//!   in the description.
//! - A task without a command becomes a prompt task: its title, description, steps and
//!   verification text.
//! - A document without task sections is read as a checklist (`checklist`).

use std::collections::{BTreeMap, HashMap};

use ordo_proto::{ExecutionMode, JobSpec, TaskName, TaskSpec};

use crate::checklist;
use crate::diagnostic::{Diagnostic, Pos};
use crate::json_fields::priority;
use crate::markdown_syntax::{
    Fence, checkbox, fence_closes, fence_open, heading, key_value, list_item, split_status,
};
use crate::parser::{Converted, Ctx, add_task, converted, prompt_text};

/// A parsed `### Task N: Title` heading.
#[derive(Debug, PartialEq)]
pub(crate) struct TaskHeading {
    pub level: usize,
    pub id: String,
    pub title: String,
    /// Trailing parenthesised text, e.g. `Sequential`.
    pub note: Option<String>,
    /// Text after a status mark, e.g. `Not Started`.
    pub status: Option<String>,
}

/// A task heading: level 2 or deeper, text `Task <id>[:] Title` where the id starts with a
/// digit (`Task 1`, `Task 004`, `Task 2.1`).
pub(crate) fn task_heading(line: &str) -> Option<TaskHeading> {
    let (level, text) = heading(line)?;
    if level < 2 {
        return None;
    }
    let word = text.get(..4)?;
    if !word.eq_ignore_ascii_case("task") {
        return None;
    }
    let rest = &text[4..];
    let rest = rest.strip_prefix(['s', 'S']).unwrap_or(rest);
    if !rest.starts_with([' ', '\t', '#', '-']) {
        return None;
    }
    let rest = rest.trim_start_matches([' ', '\t', '#', '-']);
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let id_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-' || c == '_'))
        .unwrap_or(rest.len());
    let id = rest[..id_len].trim_end_matches(['.', '-', '_']);
    let after = &rest[id.len()..];
    let after = after.trim_start_matches(['.', '-', '_']);
    if !(after.is_empty() || after.starts_with([':', ' ', '\t', '—', '–', ')'])) {
        return None;
    }
    let title = after.trim_start_matches([':', ' ', '\t', '—', '–', '-', ')']);
    let (title, status) = split_status(title);
    let (title, note) = split_note(&title);
    Some(TaskHeading {
        level,
        id: id.to_string(),
        title,
        note,
        status,
    })
}

/// Splits a trailing parenthesised note: `Calculate Sum (Parallel)` → (`Calculate Sum`,
/// `Parallel`).
fn split_note(s: &str) -> (String, Option<String>) {
    let s = s.trim();
    if !s.ends_with(')') {
        return (s.to_string(), None);
    }
    let mut depth = 0i32;
    for (k, c) in s.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth -= 1;
                if depth == 0 {
                    let title = s[..k].trim();
                    if title.is_empty() {
                        return (s.to_string(), None);
                    }
                    let note = s[k + 1..s.len() - 1].trim();
                    return (title.to_string(), Some(note.to_string()));
                }
            }
            _ => {}
        }
    }
    (s.to_string(), None)
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Description,
    Steps,
    Verification,
}

struct Section {
    id: String,
    title: String,
    line: u32,
    level: usize,
    note: Option<String>,
    status: Option<String>,
    deps: Vec<String>,
    mode: Option<String>,
    desc: Vec<String>,
    steps: Vec<String>,
    step_indent: usize,
    verification: Vec<String>,
    command: Option<String>,
    verify: Option<String>,
    labels: BTreeMap<String, String>,
    block: Block,
    /// The last line of text, to tell what a fenced block that follows it is for.
    last_text: String,
}

impl Section {
    fn new(h: TaskHeading, line: u32) -> Section {
        Section {
            id: h.id,
            title: h.title,
            line,
            level: h.level,
            note: h.note,
            status: h.status,
            deps: Vec::new(),
            mode: None,
            desc: Vec::new(),
            steps: Vec::new(),
            step_indent: 0,
            verification: Vec::new(),
            command: None,
            verify: None,
            labels: BTreeMap::new(),
            block: Block::Description,
            last_text: String::new(),
        }
    }

    fn text_line(&mut self, s: String) {
        match self.block {
            Block::Verification => self.verification.push(s),
            _ => self.desc.push(s),
        }
    }
}

/// Ids named by a `Depends on:` value: `Task 1, Task 2`, `1 and 2`, `task-3`; `None` → none.
fn dependency_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let v = value.trim().trim_matches(['*', '_', '`']).trim();
    let lower = v.to_ascii_lowercase();
    if matches!(lower.as_str(), "" | "none" | "n/a" | "-" | "—" | "nothing") {
        return out;
    }
    for item in lower
        .replace(" and ", ",")
        .split([',', ';', '&', '/'])
        .map(str::trim)
    {
        let item = item
            .trim_matches(['`', '*', '_', '[', ']', '"', '\''])
            .trim();
        let item = item
            .strip_prefix("tasks")
            .or_else(|| item.strip_prefix("task"))
            .unwrap_or(item);
        let item = item.trim_start_matches([' ', '\t', '#', '-', '_']);
        let len = item
            .find(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-' || c == '_'))
            .unwrap_or(item.len());
        let id = item[..len].trim_end_matches(['.', '-', '_']);
        if !id.is_empty() && id != "none" && !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
    }
    out
}

/// Inline code unwrapped: `` `make test` `` → `make test`.
fn strip_code(s: &str) -> String {
    let t = s.trim();
    let n = t.bytes().take_while(|&b| b == b'`').count();
    if n > 0 && t.len() > 2 * n && t.ends_with(&"`".repeat(n)) {
        t[n..t.len() - n].trim().to_string()
    } else {
        t.to_string()
    }
}

fn is_shell(info: &str) -> bool {
    let lang = info
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches(['{', '.'])
        .trim_end_matches('}')
        .to_ascii_lowercase();
    matches!(lang.as_str(), "sh" | "bash" | "shell" | "zsh")
}

fn label_key(key: &str) -> String {
    key.replace(' ', "_")
}

pub(crate) fn parse(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut job_title: Option<String> = None;
    let mut objective: Option<String> = None;
    let mut collecting_objective = false;
    let mut job_mode: Option<ExecutionMode> = None;
    let mut sections: Vec<Section> = Vec::new();
    let mut in_section = false;
    let mut fence: Option<Fence> = None;

    for (idx, raw) in ctx.text.split('\n').enumerate() {
        let line_no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let line = raw.strip_suffix('\r').unwrap_or(raw);

        if let Some(f) = &mut fence {
            if fence_closes(f, line) {
                let f = fence.take().expect("fence is open");
                if in_section && let Some(s) = sections.last_mut() {
                    close_fence(s, f);
                }
            } else {
                f.push_line(line);
            }
            continue;
        }
        if let Some(f) = fence_open(line) {
            fence = Some(f);
            collecting_objective = false;
            continue;
        }

        if let Some((level, text)) = heading(line) {
            collecting_objective = false;
            if in_section && let Some(s) = sections.last_mut() {
                if level > s.level {
                    // A sub-heading of the task: switches block like a `**Key**:` line.
                    let key = text.to_lowercase();
                    if key.contains("step") {
                        s.block = Block::Steps;
                    } else if key.contains("verif") {
                        s.block = Block::Verification;
                    } else {
                        s.block = Block::Description;
                        s.desc.push(format!("{text}:"));
                    }
                    s.last_text = text.to_string();
                    continue;
                }
                in_section = false;
            }
            if let Some(h) = task_heading(line) {
                sections.push(Section::new(h, line_no));
                in_section = true;
            } else if level == 1 && job_title.is_none() && sections.is_empty() {
                let (title, _status) = split_status(text);
                job_title = Some(title);
            }
            continue;
        }

        let (indent, bullet, content) = list_item(line);
        if content.is_empty() {
            if collecting_objective && objective.is_some() {
                collecting_objective = false;
            }
            continue;
        }

        if !in_section {
            // The preamble: objective and job-wide mode.
            if collecting_objective {
                let o = objective.get_or_insert_with(String::new);
                if !o.is_empty() {
                    o.push('\n');
                }
                o.push_str(content);
                continue;
            }
            if let Some((key, value, _)) = key_value(content) {
                match key.as_str() {
                    "objective" if objective.is_none() && sections.is_empty() => {
                        if value.is_empty() {
                            collecting_objective = true;
                        } else {
                            objective = Some(value);
                        }
                    }
                    "execution mode" if sections.is_empty() => {
                        match value.trim_matches(['*', '`']).parse::<ExecutionMode>() {
                            Ok(m) => job_mode = Some(m),
                            Err(e) => errors.push(ctx.diag(Some(Pos::new(line_no, 1)), e)),
                        }
                    }
                    _ => {}
                }
            }
            continue;
        }
        let Some(s) = sections.last_mut() else {
            continue;
        };

        if bullet && let Some((mark, text)) = checkbox(content) {
            s.steps.push(format!("- [{mark}] {text}"));
            s.step_indent = indent;
            s.last_text = text.to_string();
            continue;
        }
        if let Some((key, value, bold)) = key_value(content) {
            let handled = match key.as_str() {
                "depends on" | "depends" | "dependencies" | "dependency" | "depends upon" => {
                    for d in dependency_ids(&value) {
                        if !s.deps.contains(&d) {
                            s.deps.push(d);
                        }
                    }
                    true
                }
                "execution mode" => {
                    let m = value.trim_matches(['*', '`', '_']).trim().to_lowercase();
                    if !m.is_empty() {
                        s.mode = Some(m);
                    }
                    true
                }
                "command" | "cmd" | "run" => {
                    let c = strip_code(&value);
                    if !c.is_empty() {
                        s.command = Some(c);
                    }
                    true
                }
                "verify" | "verify command" | "verification command" => {
                    let c = strip_code(&value);
                    if !c.is_empty() {
                        s.verify = Some(c);
                    }
                    true
                }
                "description" => {
                    s.block = Block::Description;
                    if !value.is_empty() {
                        s.desc.push(value.clone());
                    }
                    true
                }
                k if k.contains("step") && value.is_empty() => {
                    s.block = Block::Steps;
                    true
                }
                k if k.starts_with("verification")
                    || k.contains("acceptance criteria")
                    || k.contains("success criteria") =>
                {
                    s.block = Block::Verification;
                    if !value.is_empty() {
                        s.verification.push(value.clone());
                    }
                    true
                }
                _ if bold && !bullet => {
                    // `**Priority**: HIGH | **Complexity**: LOW` → labels; `**Notes**:` → a block.
                    if value.is_empty() {
                        s.block = Block::Description;
                        s.desc.push(content.replace("**", ""));
                    } else {
                        for part in content.split('|') {
                            if let Some((k, v, _)) = key_value(part.trim())
                                && !v.is_empty()
                            {
                                s.labels.insert(label_key(&k), v);
                            }
                        }
                    }
                    true
                }
                _ => false,
            };
            if handled {
                s.last_text = content.to_string();
                continue;
            }
        }
        s.last_text = content.to_string();
        if bullet && s.block == Block::Steps {
            if indent > s.step_indent
                && let Some(last) = s.steps.last_mut()
            {
                last.push('\n');
                last.push_str(&" ".repeat(indent.min(16)));
                last.push_str("- ");
                last.push_str(content);
            } else {
                s.steps.push(format!("- [ ] {content}"));
                s.step_indent = indent;
            }
        } else if s.block == Block::Verification && bullet {
            s.verification.push(format!("- {content}"));
        } else {
            s.text_line(content.to_string());
        }
    }
    if let Some(f) = fence.take()
        && in_section
        && let Some(s) = sections.last_mut()
    {
        close_fence(s, f);
    }

    if sections.is_empty() {
        // No task sections: a checklist, or nothing to do.
        return checklist::parse(ctx);
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut spec = JobSpec {
        name: job_title.unwrap_or_default(),
        description: objective.filter(|o| !o.trim().is_empty()),
        ..JobSpec::default()
    };
    spec.settings.execution_mode = job_mode;
    let mut positions = HashMap::new();
    for s in sections {
        let pos = Pos::new(s.line, 1);
        let name = match TaskName::new(format!("task-{}", s.id)) {
            Ok(n) => n,
            Err(e) => {
                errors.push(ctx.diag(Some(pos), e.to_string()));
                continue;
            }
        };
        let mut task = TaskSpec::empty(name.clone());
        for d in &s.deps {
            match TaskName::new(format!("task-{d}")) {
                Ok(d) => task.depends_on.push(d),
                Err(e) => errors.push(ctx.diag(Some(pos), format!("task '{name}': {e}"))),
            }
        }
        let description = s.desc.join("\n").trim().to_string();
        if !description.is_empty() {
            task.description = Some(description.clone());
        }
        task.labels = s.labels;
        if let Some(p) = task
            .labels
            .get("priority")
            .and_then(|p| priority(&serde_json::Value::String(p.clone())))
        {
            task.priority = p;
        }
        if !s.title.is_empty() {
            task.labels.insert("title".into(), s.title.clone());
        }
        if let Some(status) = s.status {
            task.labels.entry("status".into()).or_insert(status);
        }
        let mode = s.mode.or_else(|| {
            s.note
                .map(|n| n.to_ascii_lowercase())
                .filter(|n| n == "sequential" || n == "parallel")
        });
        if let Some(m) = mode {
            task.labels.insert("execution_mode".into(), m);
        }
        task.verify_command = s.verify;
        task.command = s.command;
        if task.command.is_none() {
            let heading = if s.title.is_empty() {
                format!("Task {}", s.id)
            } else {
                format!("Task {}: {}", s.id, s.title)
            };
            task.prompt = Some(prompt_text(&[
                (None, &heading),
                (None, &description),
                (Some("Steps"), &s.steps.join("\n")),
                (Some("Verification"), &s.verification.join("\n")),
            ]));
        }
        add_task(&mut spec, &mut positions, task, Some(pos));
    }
    converted(spec, positions, Vec::new(), errors)
}

/// A fenced block of a task: a shell block is its command (or verify command), anything else
/// is kept as text.
fn close_fence(s: &mut Section, f: Fence) {
    let body = f.body.join("\n");
    if is_shell(&f.info) {
        let script = body.trim_matches('\n').trim_end().to_string();
        if script.trim().is_empty() {
            return;
        }
        let verify_context =
            s.block == Block::Verification || s.last_text.to_lowercase().contains("verif");
        if verify_context && s.verify.is_none() {
            s.verify = Some(script);
        } else if let Some(c) = &mut s.command {
            c.push('\n');
            c.push_str(&script);
        } else {
            s.command = Some(script);
        }
    } else {
        let fence = f.marker();
        let text = format!("{fence}{}\n{body}\n{fence}", f.info);
        match s.block {
            Block::Verification => s.verification.push(text),
            _ => s.desc.push(text),
        }
    }
}
