//! Every input format → one `JobSpec`, with source positions for diagnostics.
//!
//! # Formats (shared/DESIGN.md §2)
//! - `toml` / `json`: ordo's canonical format (serde straight into `JobSpec`, unknown fields
//!   rejected); the TOML one is a superset of Prompter's.
//! - `subtasks`: the MCP request shape `{"subtasks":[{id,description,command}],"executionMode"}`.
//! - `markdown-json`: the Markdown converter's JSON (`metadata`, `objective`, `subtasks`).
//! - `taskmaster`: TaskMaster's `tasks.json`, tagged or untagged.
//! - `task-list`: claude-code-mcp task lists, a top-level JSON array of tasks with `command` /
//!   `prompt` subtasks.
//! - `markdown`: Markdown task documents (`### Task N: Title` sections), or checklists
//!   (top-level `- [ ]` items under headings) when a document has no task sections.
//!
//! `detect` picks a format from the file's extension and, for JSON and unknown extensions,
//! its content; `LoadOptions::format` overrides. Every parser is total: any input yields a
//! spec or diagnostics, never a panic, and sizes and nesting are capped before a parser runs.
//!
//! # Positions
//! `Loaded::positions` maps each task to where it is defined (the TOML `name = …` value, the
//! JSON `"id"`/`"name"` value, the Markdown heading) so `check` can put `file:line:col` on the
//! validation errors that name a task.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use ordo_proto::names::{MAX_NESTING, MAX_SPEC_BYTES};
use ordo_proto::{Dag, ExecutionMode, JobSpec, TaskName, TaskSpec};
use serde_json::Value;

mod canonical;
mod checklist;
mod markdown;
mod markdown_json;
mod sniff;
mod subtasks;
mod task_list;
mod taskmaster;
pub mod write_back;

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;

/// An input format, as `--format` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// ordo canonical TOML, a superset of Prompter's.
    Toml,
    /// ordo canonical JSON (same schema as the TOML).
    Json,
    /// `{"subtasks":[{"id","description","command","dependencies"?}],"executionMode"}`.
    Subtasks,
    /// The Markdown converter's JSON: `metadata`, `objective`, `subtasks` with steps.
    MarkdownJson,
    /// TaskMaster `tasks.json`, tagged (`{"master":{"tasks":[…]}}`) or untagged.
    TaskMaster,
    /// claude-code-mcp task list: `[{"id","title","executionMode","subtasks":[…]}]`.
    TaskList,
    /// Markdown task document with `### Task N: Title` sections.
    Markdown,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Toml,
        Format::Json,
        Format::Subtasks,
        Format::MarkdownJson,
        Format::TaskMaster,
        Format::TaskList,
        Format::Markdown,
    ];

    /// The name `--format` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Json => "json",
            Format::Subtasks => "subtasks",
            Format::MarkdownJson => "markdown-json",
            Format::TaskMaster => "taskmaster",
            Format::TaskList => "task-list",
            Format::Markdown => "markdown",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "toml" | "prompter" => Ok(Format::Toml),
            "json" => Ok(Format::Json),
            "subtasks" => Ok(Format::Subtasks),
            "markdown-json" | "markdown_json" | "md-json" => Ok(Format::MarkdownJson),
            "taskmaster" | "task-master" => Ok(Format::TaskMaster),
            "task-list" | "task_list" | "claude-code-mcp" => Ok(Format::TaskList),
            "markdown" | "md" => Ok(Format::Markdown),
            other => Err(format!(
                "unknown format {other:?} (expected one of: toml, json, subtasks, markdown-json, \
                 taskmaster, task-list, markdown)"
            )),
        }
    }
}

/// How to read a spec file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Forces a format; `None` detects it.
    pub format: Option<Format>,
    /// TaskMaster tag to read from a tagged `tasks.json`; `master` when `None`.
    pub tag: Option<String>,
    /// TaskMaster: turn subtasks into tasks of their own (`parent.sub`).
    pub expand_subtasks: bool,
    /// TaskMaster: keep the tasks whose status is done, cancelled or deferred (left out by
    /// default).
    pub include_done: bool,
    /// TaskMaster: the project's current tag, read when `tag` is `master` (or unset) and the
    /// file has several tags but no `master`; `load` fills it from `.taskmaster/state.json`.
    pub current_tag: Option<String>,
}

/// A place in a source file, 1-based; `col` counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

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
}

impl Loaded {
    /// `nothing_to_do`, when the job indeed has no task.
    pub fn nothing_to_do(&self) -> Option<&str> {
        self.nothing_to_do
            .as_deref()
            .filter(|_| self.spec.tasks.is_empty())
    }
}

/// An error located in a file: `file:line:col: message`, or `file: message` without a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &str, pos: Option<Pos>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            pos,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

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
    Ok(Loaded {
        spec,
        format,
        positions: conv.positions,
        warnings: conv.warnings,
        sources: conv.sources,
        nothing_to_do: conv.nothing_to_do,
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

/// Picks the format of a file: by extension (`.toml`, `.md`), else by content.
pub fn detect(path_or_label: &str, text: &str) -> Format {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ext = Path::new(path_or_label)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "toml" => return Format::Toml,
        "md" | "markdown" => return Format::Markdown,
        "json" => return sniff_json(text),
        _ => {}
    }
    let start = text.trim_start();
    if start.starts_with('{') {
        return sniff_json(text);
    }
    // `[` also opens TOML (`[[tasks]]`, `[settings]`): a task list only if it reads as JSON.
    if start.starts_with('[') && sniff_json(text) == Format::TaskList {
        return Format::TaskList;
    }
    // Unknown extension and not JSON: Markdown if it has task headings or top-level checklist
    // items, and no TOML tables.
    let mut task_heading = false;
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with("[[tasks]]") || l.starts_with("[settings]") {
            return Format::Toml;
        }
        if !task_heading && l.starts_with("##") {
            task_heading = markdown::task_heading(l).is_some();
        }
        if !task_heading && checklist::top_level_item(line) {
            task_heading = true;
        }
    }
    if task_heading {
        Format::Markdown
    } else {
        Format::Toml
    }
}

/// Which JSON dialect a document is, from its top-level shape.
fn sniff_json(text: &str) -> Format {
    if check_json_nesting(text).is_some() {
        return Format::Json;
    }
    sniff::json_format(text)
}

/// Validates a loaded spec, locating each error at the task it names.
pub fn check(loaded: &Loaded, file_label: &str) -> Result<Dag, Vec<Diagnostic>> {
    if let Some(nothing) = loaded.nothing_to_do() {
        return Err(vec![Diagnostic::new(file_label, None, nothing)]);
    }
    ordo_proto::validate::validate(&loaded.spec).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| {
                let pos = e.task().and_then(|t| loaded.positions.get(t).copied());
                Diagnostic::new(file_label, pos, e.to_string())
            })
            .collect()
    })
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

// ---------------------------------------------------------------------------------------------
// Shared machinery of the parsers.

/// What a parser produces; `parse` adds the format and the default name.
pub(crate) struct Converted {
    pub spec: JobSpec,
    pub positions: HashMap<TaskName, Pos>,
    pub warnings: Vec<String>,
    /// TaskMaster only: see `Loaded::sources`.
    pub sources: Option<write_back::Sources>,
    /// See `Loaded::nothing_to_do`.
    pub nothing_to_do: Option<String>,
}

/// Adds `task` to `spec`, and `pos` as where it is defined unless its name already has a
/// position (the first definition of a name is the one diagnostics point at).
pub(crate) fn add_task(
    spec: &mut JobSpec,
    positions: &mut HashMap<TaskName, Pos>,
    task: TaskSpec,
    pos: Option<Pos>,
) {
    if let Some(p) = pos {
        positions.entry(task.name.clone()).or_insert(p);
    }
    spec.tasks.push(task);
}

/// A parser's result: every error it found if there is any, else the spec with its positions
/// and warnings (a spec is never returned alongside errors).
pub(crate) fn converted(
    spec: JobSpec,
    positions: HashMap<TaskName, Pos>,
    warnings: Vec<String>,
    errors: Vec<Diagnostic>,
) -> Result<Converted, Vec<Diagnostic>> {
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Converted {
        spec,
        positions,
        warnings,
        sources: None,
        nothing_to_do: None,
    })
}

/// The input of a parser: text, its label, options and a line index for positions.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub opts: &'a LoadOptions,
    lines: LineIndex,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str, text: &'a str, opts: &'a LoadOptions) -> Ctx<'a> {
        Ctx {
            file,
            text,
            opts,
            lines: LineIndex::new(text),
        }
    }

    pub fn diag(&self, pos: Option<Pos>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, pos, message)
    }

    /// A warning, formatted like a diagnostic.
    pub fn warning(&self, pos: Option<Pos>, message: impl Into<String>) -> String {
        self.diag(pos, message).to_string()
    }

    /// Line and column of a byte offset.
    pub fn pos_at(&self, offset: usize) -> Pos {
        self.lines.pos_at(self.text, offset)
    }

    /// The text as a JSON value, after the nesting cap; syntax errors carry their position.
    pub fn json_value(&self) -> Result<Value, Vec<Diagnostic>> {
        if let Some(offset) = check_json_nesting(self.text) {
            return Err(vec![self.nesting_error(offset)]);
        }
        serde_json::from_str(self.text).map_err(|e| vec![self.json_error(&e)])
    }

    pub fn json_error(&self, e: &serde_json::Error) -> Diagnostic {
        let pos = (e.line() > 0).then(|| Pos::new(e.line() as u32, e.column().max(1) as u32));
        let mut message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        if matches!(
            e.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        ) {
            message = format!("invalid JSON: {message}");
        }
        self.diag(pos, message)
    }

    pub fn nesting_error(&self, offset: usize) -> Diagnostic {
        self.diag(
            Some(self.pos_at(offset)),
            format!("nested deeper than {MAX_NESTING} levels; not accepted"),
        )
    }

    /// Positions of the interesting values of a JSON document, by JSON pointer.
    pub fn json_positions(&self) -> JsonPositions {
        json_positions(self.text)
    }
}

/// Offsets of line starts, for turning byte offsets into line and column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    fn pos_at(&self, text: &str, offset: usize) -> Pos {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0).min(offset);
        let col = text.as_bytes()[start..offset]
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count()
            + 1;
        Pos::new(line as u32, col as u32)
    }
}

/// The byte offset where JSON brackets nest deeper than `MAX_NESTING`, if they do.
fn check_json_nesting(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_json_string(b, i),
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Index just past the JSON string starting at `i` (at its opening quote).
fn skip_json_string(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The byte offset where TOML nests deeper than `MAX_NESTING`, if it does: arrays and inline
/// tables outside strings and comments, plus the tables implied by dotted keys and headers.
/// Run before the TOML parser so that no input can make it recurse deeply.
fn check_toml_nesting(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    // Open brackets with what each adds to the depth (1 + dots of the key it is the value of).
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut sum = 0usize;
    // Depth of the current `[table]`.
    let mut base = 0usize;
    // Dots of the key being read or whose value is being read.
    let mut key_dots = 0usize;
    let mut in_key = true;
    let mut line_has_content = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                if stack.is_empty() {
                    in_key = true;
                    key_dots = 0;
                }
                line_has_content = false;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let first_on_line = !line_has_content;
        line_has_content = true;
        match c {
            b'"' | b'\'' => i = skip_toml_string(b, i),
            b'[' if stack.is_empty()
                && first_on_line
                && !(b.get(i + 1) == Some(&b'[') && b.get(i + 2) == Some(&b'[')) =>
            {
                // A `[table]` or `[[array.of.tables]]` header: its depth is its dotted key's.
                let array = b.get(i + 1) == Some(&b'[');
                let mut j = i + if array { 2 } else { 1 };
                let mut dots = 0usize;
                while j < b.len() && b[j] != b']' && b[j] != b'\n' {
                    match b[j] {
                        b'"' | b'\'' => j = skip_toml_string(b, j),
                        b'.' => {
                            dots += 1;
                            j += 1;
                        }
                        _ => j += 1,
                    }
                }
                base = dots + 1 + array as usize;
                if base > MAX_NESTING {
                    return Some(i);
                }
                while j < b.len() && b[j] == b']' {
                    j += 1;
                }
                i = j;
                in_key = true;
                key_dots = 0;
            }
            b'[' | b'{' => {
                let add = 1 + key_dots;
                stack.push((c, add));
                sum += add;
                if base + sum > MAX_NESTING {
                    return Some(i);
                }
                key_dots = 0;
                in_key = c == b'{';
                i += 1;
            }
            b']' | b'}' => {
                if let Some((_, add)) = stack.pop() {
                    sum -= add;
                }
                key_dots = 0;
                in_key = false;
                i += 1;
            }
            b',' => {
                key_dots = 0;
                in_key = matches!(stack.last(), Some((b'{', _)));
                i += 1;
            }
            b'=' => {
                in_key = false;
                i += 1;
            }
            b'.' if in_key => {
                key_dots += 1;
                if base + sum + key_dots > MAX_NESTING {
                    return Some(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Index just past the TOML string starting at `i` (basic or literal, single- or multi-line).
/// Unterminated single-line strings end at the newline.
fn skip_toml_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let multi = b.get(i + 1) == Some(&q) && b.get(i + 2) == Some(&q);
    let mut j = if multi { i + 3 } else { i + 1 };
    while j < b.len() {
        let c = b[j];
        if c == b'\\' && q == b'"' {
            j += 2;
        } else if multi {
            if c == q && b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q) {
                j += 3;
                // Up to two more quotes belong to the content.
                while j < b.len() && b[j] == q {
                    j += 1;
                }
                return j;
            }
            j += 1;
        } else if c == q {
            return j + 1;
        } else if c == b'\n' {
            return j;
        } else {
            j += 1;
        }
    }
    b.len()
}

// ---------------------------------------------------------------------------------------------
// Positions of values in JSON text.

/// Positions of a JSON document's values by JSON pointer (`/master/tasks/0/id`): top-level
/// members and their children, elements of `tasks`/`subtasks` arrays and their members, and
/// elements of `dependencies` arrays.
pub(crate) struct JsonPositions(HashMap<String, Pos>);

impl JsonPositions {
    pub fn get(&self, pointer: &str) -> Option<Pos> {
        self.0.get(pointer).copied()
    }

    /// Position of a task's id value, else of the task itself.
    pub fn task(&self, element: &str, id_key: &str) -> Option<Pos> {
        self.get(&format!("{element}/{id_key}"))
            .or_else(|| self.get(element))
    }
}

/// Escapes a key for use in a JSON pointer.
pub(crate) fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A step of the path to a JSON value: an object key or an array index.
pub(crate) enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

fn wanted(path: &[Seg<'_>]) -> bool {
    let n = path.len();
    if n <= 2 {
        return true;
    }
    let list = |s: &Seg<'_>| matches!(s, Seg::Key(k) if k == "tasks" || k == "subtasks");
    match (&path[n - 3], &path[n - 2], &path[n - 1]) {
        (_, l, Seg::Index(_)) if list(l) => true,
        (l, Seg::Index(_), Seg::Key(_)) if list(l) => true,
        (_, Seg::Key(k), Seg::Index(_)) => k == "dependencies",
        _ => false,
    }
}

fn pointer(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        s.push('/');
        match seg {
            Seg::Key(k) => s.push_str(&pointer_key(k)),
            Seg::Index(i) => s.push_str(&i.to_string()),
        }
    }
    s
}

/// Positions of the `wanted` values of a JSON document.
fn json_positions(text: &str) -> JsonPositions {
    let mut out = HashMap::new();
    scan_json(text, |path, pos| {
        if wanted(path) {
            out.entry(pointer(path)).or_insert(pos);
        }
    });
    JsonPositions(out)
}

/// Scans JSON text (meant for text serde_json accepted; tolerant of anything), calling `found`
/// with the path and position of every value's first character. Iterative, so nesting costs
/// no stack; keys are borrowed from the text unless they hold escapes.
pub(crate) fn scan_json<'a>(text: &'a str, mut found: impl FnMut(&[Seg<'a>], Pos)) {
    let b = text.as_bytes();
    let mut path: Vec<Seg<'a>> = Vec::new();
    let mut stack: Vec<u8> = Vec::new();
    let mut expect_key = false;
    let (mut line, mut col) = (1u32, 1u32);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = match c {
            b' ' | b'\t' | b'\r' | b'\n' => i + 1,
            b':' => {
                expect_key = false;
                i + 1
            }
            b',' => {
                match stack.last() {
                    Some(b'{') => expect_key = true,
                    Some(_) => {
                        if let Some(Seg::Index(n)) = path.last_mut() {
                            *n += 1;
                        }
                    }
                    None => {}
                }
                i + 1
            }
            b'{' | b'[' => {
                found(&path, Pos::new(line, col));
                if stack.len() > MAX_NESTING + 8 {
                    return;
                }
                stack.push(c);
                expect_key = c == b'{';
                path.push(if c == b'{' {
                    Seg::Key(Cow::Borrowed(""))
                } else {
                    Seg::Index(0)
                });
                i + 1
            }
            b'}' | b']' => {
                stack.pop();
                path.pop();
                expect_key = false;
                i + 1
            }
            b'"' => {
                let end = skip_json_string(b, i);
                if expect_key && stack.last() == Some(&b'{') {
                    let raw = text.get(i..end).unwrap_or("\"\"");
                    let key = if raw.contains('\\') {
                        Cow::Owned(serde_json::from_str::<String>(raw).unwrap_or_default())
                    } else {
                        Cow::Borrowed(raw.get(1..raw.len().saturating_sub(1)).unwrap_or(""))
                    };
                    if let Some(last) = path.last_mut() {
                        *last = Seg::Key(key);
                    }
                    expect_key = false;
                } else {
                    found(&path, Pos::new(line, col));
                }
                end
            }
            _ => {
                found(&path, Pos::new(line, col));
                let mut j = i + 1;
                while j < b.len()
                    && !matches!(
                        b[j],
                        b',' | b']'
                            | b'}'
                            | b':'
                            | b' '
                            | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'"'
                            | b'{'
                            | b'['
                    )
                {
                    j += 1;
                }
                j
            }
        };
        // Line and column of `next`.
        for &c in &b[i..next.min(b.len())] {
            if c == b'\n' {
                line += 1;
                col = 1;
            } else if (c & 0xC0) != 0x80 {
                col += 1;
            }
        }
        i = next;
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers for the JSON-based foreign formats.

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

/// What sets one subtasks dialect (the MCP request, the Markdown converter's JSON) apart from
/// the other: the fields they do not read alike.
pub(crate) trait SubtasksDialect {
    /// Reads the top-level field `key` (not `subtasks` or `executionMode`) into `spec`; false
    /// when it means nothing in this dialect, so that it is warned about as ignored.
    fn root_field(&self, spec: &mut JobSpec, key: &str, v: &Value) -> bool;

    /// What the subtask field `key` is, when it is none of `id`, `description`, `command` and
    /// the dependencies; by default a label of its own name.
    fn subtask_field<'k>(&self, key: &'k str) -> SubtaskField<'k> {
        SubtaskField::Label(key)
    }

    /// Completes the task of a subtask once all its fields are read.
    fn finish_task(&self, _task: &mut TaskSpec, _fields: &JsonObject) {}
}

/// A subtask field that a dialect reads its own way.
pub(crate) enum SubtaskField<'k> {
    /// Not read here (`finish_task` may read it).
    Skip,
    /// The verify command, a string or null like `command`.
    Verify,
    /// A label of this name (null drops it, a non-string is kept as JSON).
    Label(&'k str),
}

/// Reads a subtasks document `{"subtasks":[…], "executionMode"?, …}` in `dialect`: the
/// top-level `executionMode` sets the job's mode, each subtask becomes the task named by its
/// `id`, and every error is reported (positions at the field concerned, else the subtask).
pub(crate) fn parse_subtasks(
    ctx: &Ctx<'_>,
    dialect: &impl SubtasksDialect,
) -> Result<Converted, Vec<Diagnostic>> {
    let value = ctx.json_value()?;
    let at = ctx.json_positions();
    let (root, subtasks) = subtasks_root(ctx, &at, &value)?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut spec = JobSpec::default();
    for (key, v) in root {
        match key.as_str() {
            "subtasks" => {}
            "executionMode" | "execution_mode" => {
                let pos = at.get(&format!("/{key}"));
                match v.as_str().map(str::parse::<ExecutionMode>) {
                    Some(Ok(mode)) => spec.settings.execution_mode = Some(mode),
                    Some(Err(e)) => errors.push(ctx.diag(pos, e)),
                    None => errors.push(
                        ctx.diag(pos, "executionMode must be \"sequential\" or \"parallel\""),
                    ),
                }
            }
            other if dialect.root_field(&mut spec, other, v) => {}
            other => warnings.push(ctx.warning(
                at.get(&format!("/{}", pointer_key(other))),
                format!("ignored field {other:?}"),
            )),
        }
    }
    let mut positions = HashMap::new();
    for (i, sub) in subtasks.iter().enumerate() {
        match subtask_task(ctx, &at, dialect, i, sub, &mut errors) {
            Ok((task, pos)) => add_task(&mut spec, &mut positions, task, pos),
            Err(e) => errors.push(e),
        }
    }
    converted(spec, positions, warnings, errors)
}

/// The top-level object of a subtasks document (both JSON dialects) and its `subtasks` array.
fn subtasks_root<'v>(
    ctx: &Ctx<'_>,
    at: &JsonPositions,
    value: &'v Value,
) -> Result<(&'v JsonObject, &'v [Value]), Vec<Diagnostic>> {
    let Value::Object(root) = value else {
        return Err(vec![ctx.diag(
            at.get(""),
            "expected a JSON object with a \"subtasks\" array",
        )]);
    };
    let Some(Value::Array(subtasks)) = root.get("subtasks") else {
        return Err(vec![ctx.diag(
            at.get("/subtasks").or(at.get("")),
            "expected a \"subtasks\" array",
        )]);
    };
    Ok((root, subtasks))
}

/// The task of the `i`-th element of a `subtasks` array and where it is defined (its `id`), or
/// the error that leaves it without a name; errors in its other fields go to `errors`.
fn subtask_task(
    ctx: &Ctx<'_>,
    at: &JsonPositions,
    dialect: &impl SubtasksDialect,
    i: usize,
    sub: &Value,
    errors: &mut Vec<Diagnostic>,
) -> Result<(TaskSpec, Option<Pos>), Diagnostic> {
    let element = format!("/subtasks/{i}");
    let pos = at.task(&element, "id");
    let Value::Object(fields) = sub else {
        return Err(ctx.diag(pos, format!("subtask #{} is not an object", i + 1)));
    };
    let Some(id) = fields.get("id").and_then(id_string) else {
        return Err(ctx.diag(
            pos,
            format!("subtask #{} needs an \"id\" (string or number)", i + 1),
        ));
    };
    let name = task_name(&id).map_err(|e| ctx.diag(pos, e))?;
    let mut task = TaskSpec::empty(name.clone());
    for (key, v) in fields {
        let field_pos = || at.get(&format!("{element}/{}", pointer_key(key))).or(pos);
        let mut string = |slot: &mut Option<String>| match v {
            Value::String(s) => *slot = Some(s.clone()),
            Value::Null => {}
            _ => errors.push(ctx.diag(
                field_pos(),
                format!("subtask '{name}': {key} must be a string"),
            )),
        };
        match key.as_str() {
            "id" => {}
            "description" => task.description = text_field(Some(v)),
            "command" => string(&mut task.command),
            "dependencies" | "depends_on" | "dependsOn" => {
                // Written, even empty: the subtasks follow their graph (the job is parallel).
                task.depends_on.declare();
                let (ids, bad) = dependency_ids(Some(v));
                for b in bad {
                    errors.push(ctx.diag(
                        field_pos(),
                        format!("subtask '{name}': dependency {b} is not a task id"),
                    ));
                }
                for d in ids {
                    match TaskName::new(d) {
                        Ok(d) if !task.depends_on.contains(&d) => task.depends_on.push(d),
                        Ok(_) => {}
                        Err(e) => {
                            errors.push(ctx.diag(field_pos(), format!("subtask '{name}': {e}")))
                        }
                    }
                }
            }
            other => match dialect.subtask_field(other) {
                SubtaskField::Skip => {}
                SubtaskField::Verify => string(&mut task.verify_command),
                SubtaskField::Label(label) => {
                    if let Some(v) = label_value(v) {
                        task.labels.insert(label.to_string(), v);
                    }
                }
            },
        }
    }
    dialect.finish_task(&mut task, fields);
    Ok((task, pos))
}

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

/// Joins the non-empty parts of a prompt with blank lines, each under its heading if any.
pub(crate) fn prompt_text(parts: &[(Option<&str>, &str)]) -> String {
    let mut out = String::new();
    for (heading, body) in parts {
        let body = body.trim_end();
        if body.trim().is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        if let Some(h) = heading {
            out.push_str(h);
            out.push_str(":\n");
        }
        out.push_str(body);
    }
    out
}
