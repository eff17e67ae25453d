//! Markdown checklists (`tests/fixtures/markdown/checklist.md`): documents without
//! `### Task N:` sections whose work is top-level `- [ ]` items under headings.
//!
//! - The job is named by the first `# ` heading before any item and described by an
//!   `**Objective**:` line; an `Execution mode: parallel` line before the first item makes
//!   the items independent.
//! - Each top-level checkbox item (`- [ ]`, `* [ ]`, `1. [ ]`, indented less than two columns)
//!   becomes the prompt task `item-N`, N counting every top-level checkbox item from 1 in
//!   document order (done ones included, so names do not move when an item is ticked). Its
//!   prompt is the item's text, the headings it is under (also the label `section`), the
//!   indented text below it, and its indented sub-items as steps (kept as written, `[x]`
//!   included); the item's text is also the label `title`.
//! - Items run in document order, each depending on the one before (as a checklist is
//!   worked), unless the document says `Execution mode: parallel`.
//! - `- [x]` items are already done: they are left out of the job, with a warning each, and
//!   the next item depends on the last item that is not done (a done item counts as
//!   succeeded). A checklist whose items are all done is a job without tasks.
//! - Fenced code indented under an item is kept in its prompt; other fenced code, paragraphs
//!   and plain bullets between items belong to no task and end the item before them.

use std::collections::HashMap;

use ordo_proto::{ExecutionMode, JobSpec, TaskName, TaskSpec};

use crate::diagnostic::{Diagnostic, Pos};
use crate::markdown_syntax::{
    Fence, checkbox, fence_closes, fence_open, heading, key_value, list_item, split_status,
};
use crate::parser::{Converted, Ctx, add_task, converted, prompt_text};

/// Whether a line is a top-level checkbox item (for detection).
pub(crate) fn top_level_item(line: &str) -> bool {
    let (indent, bullet, content) = list_item(line);
    indent < 2 && bullet && checkbox(content).is_some()
}

/// One top-level item being read.
struct Item {
    n: usize,
    pos: Pos,
    done: bool,
    text: String,
    section: String,
    indent: usize,
    details: Vec<String>,
    steps: Vec<String>,
}

pub(crate) fn parse(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut job_title: Option<String> = None;
    let mut objective: Option<String> = None;
    let mut mode: Option<ExecutionMode> = None;
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    // Whether the last item still takes indented lines.
    let mut open = false;
    let mut fence: Option<(Fence, bool)> = None;

    for (idx, raw) in ctx.text.split('\n').enumerate() {
        let line_no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let line = raw.strip_suffix('\r').unwrap_or(raw);

        if let Some((f, in_item)) = &mut fence {
            if fence_closes(f, line) {
                let (f, in_item) = fence.take().expect("fence is open");
                if in_item && let Some(item) = items.last_mut() {
                    let marks = "```";
                    item.details
                        .push(format!("{marks}{}\n{}\n{marks}", f.info, f.body.join("\n")));
                }
            } else if *in_item {
                f.push_line(line);
            }
            continue;
        }
        if let Some(f) = fence_open(line) {
            let in_item = open && items.last().is_some_and(|i| f.indent > i.indent);
            open &= in_item;
            fence = Some((f, in_item));
            continue;
        }
        if let Some((level, text)) = heading(line) {
            open = false;
            let (text, _status) = split_status(text);
            if level == 1 && job_title.is_none() && items.is_empty() {
                job_title = Some(text);
                continue;
            }
            headings.retain(|(l, _)| *l < level);
            if !text.is_empty() {
                headings.push((level, text));
            }
            continue;
        }
        let (indent, bullet, content) = list_item(line);
        if content.is_empty() {
            continue;
        }
        if indent < 2 {
            if bullet && let Some((mark, text)) = checkbox(content) {
                let section = headings
                    .iter()
                    .map(|(_, h)| h.as_str())
                    .collect::<Vec<_>>()
                    .join(" > ");
                items.push(Item {
                    n: items.len() + 1,
                    pos: Pos::new(line_no, indent as u32 + 1),
                    done: mark == 'x',
                    text: text.to_string(),
                    section,
                    indent,
                    details: Vec::new(),
                    steps: Vec::new(),
                });
                open = true;
                continue;
            }
            open = false;
            if items.is_empty()
                && let Some((key, value, _)) = key_value(content)
            {
                match key.as_str() {
                    "objective" if objective.is_none() && !value.is_empty() => {
                        objective = Some(value);
                    }
                    "execution mode" => {
                        match value.trim_matches(['*', '`', '_']).parse::<ExecutionMode>() {
                            Ok(m) => mode = Some(m),
                            Err(e) => errors.push(ctx.diag(Some(Pos::new(line_no, 1)), e)),
                        }
                    }
                    _ => {}
                }
            }
            continue;
        }
        // Indented: part of the open item.
        let Some(item) = items.last_mut().filter(|_| open) else {
            continue;
        };
        let depth = indent.saturating_sub(2).min(16);
        if bullet {
            item.steps.push(format!("{}- {content}", " ".repeat(depth)));
        } else if let Some(last) = item.steps.last_mut() {
            last.push(' ');
            last.push_str(content);
        } else {
            item.details.push(content.to_string());
        }
    }

    if items.is_empty() {
        errors.push(ctx.diag(
            None,
            "no task sections found: expected headings such as `### Task 1: Title`, or \
             top-level checklist items such as `- [ ] Do it`",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut spec = JobSpec {
        name: job_title.unwrap_or_default(),
        description: objective,
        ..JobSpec::default()
    };
    let sequential = mode != Some(ExecutionMode::Parallel);
    spec.settings.execution_mode = mode;
    let mut positions = HashMap::new();
    let mut warnings = Vec::new();
    let mut previous: Option<TaskName> = None;
    for item in items {
        let name = match TaskName::new(format!("item-{}", item.n)) {
            Ok(n) => n,
            Err(e) => {
                errors.push(ctx.diag(Some(item.pos), e.to_string()));
                continue;
            }
        };
        if item.done {
            warnings.push(ctx.warning(
                Some(item.pos),
                format!(
                    "checklist item '{name}' ({:?}) is already done ([x]): not run",
                    item.text
                ),
            ));
            continue;
        }
        let mut task = TaskSpec::empty(name.clone());
        if !item.text.is_empty() {
            task.labels.insert("title".into(), item.text.clone());
        }
        if !item.section.is_empty() {
            task.labels.insert("section".into(), item.section.clone());
        }
        let details = item.details.join("\n");
        if !details.trim().is_empty() {
            task.description = Some(details.clone());
        }
        let section = if item.section.is_empty() {
            String::new()
        } else {
            format!("Section: {}", item.section)
        };
        let prompt = prompt_text(&[
            (None, &item.text),
            (None, &section),
            (None, &details),
            (Some("Steps"), &item.steps.join("\n")),
        ]);
        task.prompt = Some(if prompt.is_empty() {
            format!("Checklist item {}", item.n)
        } else {
            prompt
        });
        if sequential && let Some(p) = &previous {
            task.depends_on.push(p.clone());
        }
        previous = Some(name);
        add_task(&mut spec, &mut positions, task, Some(item.pos));
    }
    converted(spec, positions, warnings, errors)
}
