//! The subtasks JSON of MCP requests:
//! `{"subtasks":[{"id","description","command","dependencies"?}], "executionMode"}`.
//!
//! Each subtask becomes the task named by its id running its command; `executionMode` sets
//! the job's mode; any other field of a subtask is kept as a label. Dependencies are kept as
//! written, so validation rejects dangling ones (this is a request, not a foreign file).
//!
//! `super::parse_subtasks` reads both subtasks dialects; `Mcp` says what is this one's own.

use ordo_proto::JobSpec;
use serde_json::Value;

use super::{SubtasksDialect, text_field};

/// The MCP request's dialect: the job's name and description are top-level fields, and every
/// subtask field other than those all dialects read is a label.
pub(super) struct Mcp;

impl SubtasksDialect for Mcp {
    fn root_field(&self, spec: &mut JobSpec, key: &str, v: &Value) -> bool {
        match key {
            "name" | "title" if spec.name.is_empty() => {
                spec.name = text_field(Some(v)).unwrap_or_default();
            }
            "description" => spec.description = text_field(Some(v)),
            _ => return false,
        }
        true
    }
}
