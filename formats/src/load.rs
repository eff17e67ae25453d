//! Reading a spec: `load` (a file, with its size capped and its UTF-8 checked before any
//! parser runs), `parse` (text, dispatched to its format's parser), `check` (validation, each
//! error at the task it names), and the result of a load (`Loaded`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use ordo_proto::names::MAX_SPEC_BYTES;
use ordo_proto::{Dag, JobSpec, TaskName};

use crate::diagnostic::{Diagnostic, LineIndex, Pos};
use crate::format::Format;
use crate::options::LoadOptions;
use crate::parser::Ctx;
use crate::sniff::detect;
use crate::subtasks::parse_subtasks;
use crate::{canonical, markdown, markdown_json, subtasks, task_list, taskmaster, write_back};

/// A parsed spec and where its tasks are defined.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub spec: JobSpec,
    /// The format it was read as.
    pub format: Format,
    /// Where each task is defined (first definition when a name repeats).
    pub positions: HashMap<TaskName, Pos>,
    /// Things that were tolerated, e.g. dropped dangling TaskMaster dependencies, already
    /// formatted as `file:line:col: message`.
    pub warnings: Vec<String>,
    /// TaskMaster: the task or subtask of the file behind each task (`--update-source`);
    /// `None` for every other format.
    pub sources: Option<write_back::Sources>,
    /// Why a job with no task is nothing to do rather than invalid (a TaskMaster file whose
    /// tasks are all done, an empty tag): `nothing to do: …`. `check` still rejects the empty
    /// job (with this message); the commands say it and exit 0.
    pub nothing_to_do: Option<String>,
    /// Where each of the spec's `[[stages]]` is defined: the file (the spec's, or the `--with`
    /// file that added it) and the position of its `name` when known. One per stage.
    pub stage_positions: Vec<(String, Option<Pos>)>,
}

impl Loaded {
    /// `nothing_to_do`, when the job indeed has no task.
    pub fn nothing_to_do(&self) -> Option<&str> {
        self.nothing_to_do
            .as_deref()
            .filter(|_| self.spec.tasks.is_empty())
    }
}

/// Reads and parses a spec file. The job name defaults to the file stem.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, Vec<Diagnostic>> {
    let label = path.display().to_string();
    let err = |msg: String| vec![Diagnostic::new(&label, None, msg)];
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    if let Ok(meta) = file.metadata() {
        if meta.is_dir() {
            return Err(err("is a directory, not a spec file".into()));
        }
        if meta.len() > MAX_SPEC_BYTES as u64 {
            return Err(err(too_big(meta.len())));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(err(too_big(bytes.len() as u64)));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            // Position of the first invalid byte, from the valid prefix.
            let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let pos = LineIndex::new(prefix).pos_at(prefix, valid);
            return Err(vec![Diagnostic::new(
                &label,
                Some(pos),
                "file is not valid UTF-8",
            )]);
        }
    };
    if opts.current_tag.is_none()
        && let Some(tag) = taskmaster::current_tag(path)
    {
        let opts = LoadOptions {
            current_tag: Some(tag),
            ..opts.clone()
        };
        return parse(&label, &text, &opts);
    }
    parse(&label, &text, opts)
}

fn too_big(len: u64) -> String {
    format!("spec is {len} bytes; at most {MAX_SPEC_BYTES} bytes are accepted")
}

/// Parses spec text. `file_label` names the source in diagnostics and, through its stem,
/// gives the job a name when the spec has none.
pub fn parse(file_label: &str, text: &str, opts: &LoadOptions) -> Result<Loaded, Vec<Diagnostic>> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(vec![Diagnostic::new(
            file_label,
            None,
            too_big(text.len() as u64),
        )]);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = opts.format.unwrap_or_else(|| detect(file_label, text));
    let ctx = Ctx::new(file_label, text, opts);
    let conv = match format {
        Format::Toml => canonical::toml(&ctx),
        Format::Json => canonical::json(&ctx),
        Format::Subtasks => parse_subtasks(&ctx, &subtasks::Mcp),
        Format::MarkdownJson => parse_subtasks(&ctx, &markdown_json::Converter),
        Format::TaskMaster => taskmaster::parse(&ctx),
        Format::TaskList => task_list::parse(&ctx),
        Format::Markdown => markdown::parse(&ctx),
    }?;
    let mut spec = conv.spec;
    if spec.name.trim().is_empty() {
        spec.name = default_name(file_label);
    }
    let stage_positions = (0..spec.stages.len())
        .map(|i| {
            let pos = conv.stage_positions.get(i).copied().flatten();
            (file_label.to_string(), pos)
        })
        .collect();
    Ok(Loaded {
        spec,
        format,
        positions: conv.positions,
        warnings: conv.warnings,
        sources: conv.sources,
        nothing_to_do: conv.nothing_to_do,
        stage_positions,
    })
}

/// The job name of a spec that has none: the file stem.
fn default_name(file_label: &str) -> String {
    let stem = Path::new(file_label)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem.trim().is_empty() || stem == "-" {
        "job".to_string()
    } else {
        stem
    }
}

/// Validates a loaded spec, locating each error at the task or stage it names (a stage in the
/// file that defines it: the spec, or a `--with` file).
pub fn check(loaded: &Loaded, file_label: &str) -> Result<Dag, Vec<Diagnostic>> {
    if let Some(nothing) = loaded.nothing_to_do() {
        return Err(vec![Diagnostic::new(file_label, None, nothing)]);
    }
    ordo_proto::validate::validate(&loaded.spec).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| {
                let (file, pos) = match e.stage() {
                    Some(i) => loaded.stage_place(i, file_label),
                    None => (
                        file_label,
                        e.task().and_then(|t| loaded.positions.get(t).copied()),
                    ),
                };
                Diagnostic::new(file, pos, e.to_string())
            })
            .collect()
    })
}

impl Loaded {
    /// The file and position of stage `i` (`file_label` and none when unknown).
    fn stage_place<'a>(&'a self, i: usize, file_label: &'a str) -> (&'a str, Option<Pos>) {
        match self.stage_positions.get(i) {
            Some((file, pos)) => (file.as_str(), *pos),
            None => (file_label, None),
        }
    }

    /// What is suspicious in a valid spec (a stage that selects no task), as
    /// `file:line:col: message`.
    pub fn stage_warnings(&self, file_label: &str) -> Vec<String> {
        ordo_proto::validate::stage_warnings(&self.spec)
            .into_iter()
            .map(|(i, message)| {
                let (file, pos) = self.stage_place(i, file_label);
                Diagnostic::new(file, pos, message).to_string()
            })
            .collect()
    }
}
