//! The input formats by name (`--input-format`, MCP's and the dashboard's `format`): `Format`,
//! what each is called and parsed from, and the extension of spec text read as one.

use std::fmt;

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

impl Format {
    /// The file extension of spec text read as this format, for naming text in diagnostics
    /// (`spec.toml`, `spec.md`, `spec.json`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Markdown => "md",
            Format::Json
            | Format::Subtasks
            | Format::MarkdownJson
            | Format::TaskMaster
            | Format::TaskList => "json",
        }
    }
}
