//! ordo's canonical TOML and JSON: serde straight into `JobSpec`, which rejects unknown fields.
//! Parse errors carry the parser's line and column; task positions are the `name` values.

use std::collections::HashMap;

use ordo_proto::{JobSpec, TaskName};
use serde::Deserialize;

use super::{Converted, Ctx, Pos, check_toml_nesting};

/// Only the task names, with their spans, of a document that already parsed as a `JobSpec`.
#[derive(Deserialize)]
struct Names {
    #[serde(default)]
    tasks: Vec<NameOnly>,
}

#[derive(Deserialize)]
struct NameOnly {
    name: toml::Spanned<String>,
}

pub(super) fn toml(ctx: &Ctx<'_>) -> Result<Converted, Vec<super::Diagnostic>> {
    if let Some(offset) = check_toml_nesting(ctx.text) {
        return Err(vec![ctx.nesting_error(offset)]);
    }
    let spec: JobSpec = toml::from_str(ctx.text).map_err(|e| vec![toml_error(ctx, &e)])?;
    let mut positions = HashMap::new();
    if let Ok(names) = toml::from_str::<Names>(ctx.text) {
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
    })
}

fn toml_error(ctx: &Ctx<'_>, e: &toml::de::Error) -> super::Diagnostic {
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

pub(super) fn json(ctx: &Ctx<'_>) -> Result<Converted, Vec<super::Diagnostic>> {
    if let Some(offset) = super::check_json_nesting(ctx.text) {
        return Err(vec![ctx.nesting_error(offset)]);
    }
    let spec: JobSpec = serde_json::from_str(ctx.text).map_err(|e| vec![ctx.json_error(&e)])?;
    let found = ctx.json_positions();
    let mut positions: HashMap<TaskName, Pos> = HashMap::new();
    for (i, t) in spec.tasks.iter().enumerate() {
        if let Some(p) = found.task(&format!("/tasks/{i}"), "name") {
            positions.entry(t.name.clone()).or_insert(p);
        }
    }
    Ok(Converted {
        spec,
        positions,
        warnings: Vec::new(),
    })
}
