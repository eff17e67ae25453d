//! How to read a spec (`LoadOptions`): the format when it is not detected, and TaskMaster's tag
//! and subtask choices. Every parser gets them through `parser::Ctx`.

use crate::format::Format;

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
