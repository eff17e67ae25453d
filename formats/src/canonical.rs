//! ordo's canonical TOML and JSON: serde straight into `JobSpec`, which rejects unknown fields.
//! `to_json` and `to_toml` write it (`ordo convert`). Parse errors carry the parser's line and column; task positions are the `name` values.
//!
//! Prompter's dialect: a TOML file with no top-level `name` is read as Prompter's, and may use
//! the settings Prompter has and ordo names otherwise: `claude_command` (the agent program)
//! becomes `agent_command` with `agent = "claude"`. A file that names its job is ordo's own,
//! where such a key is an error saying ordo's name for it.

use std::collections::HashMap;

use ordo_proto::{JobSpec, TaskName};
use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Pos};
use crate::json_positions::{Seg, scan_json};
use crate::nesting::{check_json_nesting, check_toml_nesting, skip_toml_string};
use crate::parser::{Converted, Ctx};

/// Only the task and stage names, with their spans, of a document that already parsed as a
/// `JobSpec`.
#[derive(Deserialize)]
struct Names {
    #[serde(default)]
    tasks: Vec<NameOnly>,
    #[serde(default)]
    stages: Vec<NameOnly>,
}

#[derive(Deserialize)]
struct NameOnly {
    name: toml::Spanned<String>,
}

pub(crate) fn toml(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
    if let Some(offset) = check_toml_nesting(ctx.text) {
        return Err(vec![ctx.nesting_error(offset)]);
    }
    let mut spec: JobSpec = toml::from_str(ctx.text).map_err(|e| vec![toml_error(ctx, &e)])?;
    // Whether the text names the job at the top level (before any table).
    let named = ctx
        .text
        .lines()
        .map(str::trim_start)
        .take_while(|l| !l.starts_with('['))
        .any(|l| l.starts_with("name") && l[4..].trim_start().starts_with('='));
    prompter_settings(ctx, &mut spec, !named)?;
    let mut positions = HashMap::new();
    let offsets = toml_task_offsets(ctx.text);
    // Stages are few: their names' spans come from the parser, read again only when there are.
    let names = (!spec.stages.is_empty() || offsets.len() != spec.tasks.len())
        .then(|| toml::from_str::<Names>(ctx.text).ok())
        .flatten();
    let stage_positions = names.as_ref().map_or_else(Vec::new, |n| {
        n.stages
            .iter()
            .map(|s| Some(ctx.pos_at(s.name.span().start)))
            .collect()
    });
    if offsets.len() == spec.tasks.len() {
        for (t, offset) in spec.tasks.iter().zip(offsets) {
            positions
                .entry(t.name.clone())
                .or_insert_with(|| ctx.pos_at(offset));
        }
    } else if let Some(names) = names {
        // Tasks written some other way (`tasks = [{…}]`): ask the parser for the spans.
        for n in names.tasks {
            if let Ok(name) = TaskName::new(n.name.get_ref().as_str()) {
                positions
                    .entry(name)
                    .or_insert_with(|| ctx.pos_at(n.name.span().start));
            }
        }
    }
    Ok(Converted {
        spec,
        positions,
        warnings: Vec::new(),
        sources: None,
        nothing_to_do: None,
        stage_positions,
    })
}

/// Maps Prompter's settings in a Prompter file (`prompter`), or rejects them in an ordo file.
fn prompter_settings(
    ctx: &Ctx<'_>,
    spec: &mut JobSpec,
    prompter: bool,
) -> Result<(), Vec<Diagnostic>> {
    let Some(program) = spec.settings.claude_command.take() else {
        return Ok(());
    };
    if !prompter {
        return Err(vec![ctx.diag(
            None,
            "settings.claude_command is Prompter's setting, read only from Prompter files (no \
             top-level name); ordo's is agent_command, e.g. agent_command = [\"claude\"]",
        )]);
    }
    let argv: Vec<String> = program.split_whitespace().map(String::from).collect();
    if argv.is_empty() {
        return Err(vec![ctx.diag(None, "settings.claude_command is empty")]);
    }
    if spec.settings.agent_command.is_none() {
        spec.settings.agent_command = Some(argv);
        spec.settings
            .agent
            .get_or_insert(ordo_proto::AgentKind::Claude);
    }
    Ok(())
}

fn toml_error(ctx: &Ctx<'_>, e: &toml::de::Error) -> Diagnostic {
    let pos = e.span().map(|s| ctx.pos_at(s.start));
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let message = if message.is_empty() {
        "invalid TOML".to_string()
    } else {
        message
    };
    ctx.diag(pos, message)
}

pub(crate) fn json(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
    if let Some(offset) = check_json_nesting(ctx.text) {
        return Err(vec![ctx.nesting_error(offset)]);
    }
    let mut spec: JobSpec = serde_json::from_str(ctx.text).map_err(|e| vec![ctx.json_error(&e)])?;
    prompter_settings(ctx, &mut spec, false)?;
    // Where each task's `name` value (else the task) starts.
    let n = spec.tasks.len();
    let mut found: Vec<Option<Pos>> = vec![None; n];
    let mut stage_positions: Vec<Option<Pos>> = vec![None; spec.stages.len()];
    scan_json(ctx.text, |path, pos| {
        if let [Seg::Key(k), Seg::Index(i), rest @ ..] = path {
            let list = match &**k {
                "tasks" => &mut found,
                "stages" => &mut stage_positions,
                _ => return,
            };
            let Some(slot) = list.get_mut(*i) else {
                return;
            };
            match rest {
                [] => {
                    slot.get_or_insert(pos);
                }
                [Seg::Key(f)] if f == "name" => *slot = Some(pos),
                _ => {}
            }
        }
    });
    let mut positions: HashMap<TaskName, Pos> = HashMap::new();
    for (t, p) in spec.tasks.iter().zip(found) {
        if let Some(p) = p {
            positions.entry(t.name.clone()).or_insert(p);
        }
    }
    Ok(Converted {
        spec,
        positions,
        warnings: Vec::new(),
        sources: None,
        nothing_to_do: None,
        stage_positions,
    })
}

/// Byte offsets of each `[[tasks]]` table's `name` value (else of its header), in order, found
/// by a line scan that skips multi-line strings: much cheaper than a second TOML parse.
fn toml_task_offsets(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut out: Vec<(usize, bool)> = Vec::new();
    let mut in_task_root = false;
    let mut line_start = 0;
    while line_start < b.len() {
        let line_end = b[line_start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |k| line_start + k);
        let mut i = line_start;
        while i < line_end && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let t = &b[i..line_end];
        if t.starts_with(b"[[") {
            let inner: Vec<u8> = t[2..]
                .iter()
                .take_while(|&&c| c != b']')
                .copied()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            in_task_root = inner == b"tasks";
            if in_task_root {
                out.push((i, false));
            }
        } else if t.starts_with(b"[") {
            in_task_root = false;
        } else if in_task_root && t.starts_with(b"name") {
            let mut j = i + 4;
            while j < line_end && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
            if j < line_end && b[j] == b'=' {
                j += 1;
                while j < line_end && (b[j] == b' ' || b[j] == b'\t') {
                    j += 1;
                }
                if let Some(last) = out.last_mut()
                    && !last.1
                {
                    *last = (j, true);
                }
            }
        }
        // A multi-line string opened on this line: continue after its end.
        let mut k = i;
        let mut next_line = line_end + 1;
        while k < line_end {
            match b[k] {
                b'#' => break,
                b'"' | b'\'' => {
                    let end = skip_toml_string(b, k);
                    if end > line_end {
                        next_line = b[end.min(b.len())..]
                            .iter()
                            .position(|&c| c == b'\n')
                            .map_or(b.len(), |p| end + p + 1);
                        break;
                    }
                    k = end.max(k + 1);
                }
                _ => k += 1,
            }
        }
        line_start = next_line;
    }
    out.into_iter().map(|(offset, _)| offset).collect()
}

/// Canonical JSON of a spec (what `ordo convert --to json` writes), newline-terminated.
pub fn to_json(spec: &JobSpec) -> String {
    let mut s = serde_json::to_string_pretty(spec)
        .expect("a JobSpec has only string map keys and always serialises");
    s.push('\n');
    s
}

/// Canonical TOML of a spec (what `ordo convert --to toml` writes).
pub fn to_toml(spec: &JobSpec) -> Result<String, toml::ser::Error> {
    toml::to_string_pretty(spec)
}
