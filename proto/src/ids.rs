//! Identifiers: job ids, task names and indexes, attempt numbers and worker ids as newtypes,
//! never bare strings or integers; `AttemptRef` names one attempt of one task of one job.
//!
//! A `TaskName` is user text. It is checked once, here, when it is parsed: it is never empty,
//! has no control or bidirectional-override characters (which could disguise it on a terminal
//! or a page) and is at most `MAX_TASK_NAME` bytes. It may contain anything else
//! (`2.1`, `../x`, `$(id)`), so code that puts a name into a shell, a file path or a NATS subject
//! must encode it (see `names`), never splice it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest task name accepted, in bytes.
pub const MAX_TASK_NAME: usize = 200;

/// A job's id: a UUIDv7, so ids sort by submission time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    pub fn new() -> Self {
        JobId(uuid::Uuid::now_v7())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// The name of a task, unique within its job.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("task name is empty")]
    Empty,
    #[error("task name {0:?} is longer than {MAX_TASK_NAME} bytes")]
    TooLong(String),
    #[error("task name {0:?} contains a control character")]
    Control(String),
    #[error(
        "task name {0:?} contains a bidirectional control character, which can disguise it on a \
         terminal or a page"
    )]
    Bidi(String),
}

/// Whether `c` changes the direction text is shown in (embeddings, overrides, isolates, marks):
/// such characters make a name read differently from what it is.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl TaskName {
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_TASK_NAME {
            let mut short = name;
            short.truncate(short.floor_char_boundary(40));
            return Err(NameError::TooLong(short + "…"));
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::Control(name));
        }
        if name.chars().any(is_bidi_control) {
            return Err(NameError::Bidi(name));
        }
        Ok(TaskName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        TaskName::new(s)
    }
}

impl From<TaskName> for String {
    fn from(n: TaskName) -> String {
        n.0
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for TaskName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Attempt number of a task, starting at 1. Every dispatch carries one and every result echoes
/// it: this is the fencing token that lets stale results be recognised.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Attempt(pub u32);

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Position of a task in its job's spec (and in every per-task table): what travels on the
/// wire and keys the store, where the name would be long and not a valid subject token.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct TaskIndex(pub u32);

impl TaskIndex {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

impl From<usize> for TaskIndex {
    fn from(i: usize) -> Self {
        TaskIndex(i as u32)
    }
}

impl fmt::Display for TaskIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who ran an attempt: a worker's id (`--id`, default host and pid), or `local` for `ordo run`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl WorkerId {
    pub fn new(id: impl Into<String>) -> Self {
        WorkerId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for WorkerId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for WorkerId {
    fn from(s: &str) -> Self {
        WorkerId(s.to_string())
    }
}

impl From<String> for WorkerId {
    fn from(s: String) -> Self {
        WorkerId(s)
    }
}

impl PartialEq<str> for WorkerId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for WorkerId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::borrow::Borrow<str> for WorkerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// One attempt of one task: the key of a dispatch, a kill, a published message and a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttemptRef {
    pub job: JobId,
    pub index: TaskIndex,
    pub attempt: Attempt,
}

impl fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.job, self.index, self.attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(TaskName::new("2.1").is_ok());
        assert!(TaskName::new("$(touch /tmp/x)").is_ok());
        assert_eq!(TaskName::new("  "), Err(NameError::Empty));
        assert!(matches!(TaskName::new("a\0b"), Err(NameError::Control(_))));
        for c in [
            '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}',
        ] {
            let name = format!("build{c}exe.txt");
            assert!(
                matches!(TaskName::new(name), Err(NameError::Bidi(_))),
                "{c:?} accepted"
            );
        }
        assert!(
            TaskName::new("שלום-build").is_ok(),
            "right-to-left text itself is fine"
        );
        assert!(matches!(
            TaskName::new("x".repeat(300)),
            Err(NameError::TooLong(_))
        ));
    }
}
