//! One place for names: NATS subjects, streams and consumers, limits, and file names.
//!
//! Task names are user text and never appear raw in a subject token: `subject_token` encodes
//! them.

/// Queue of tasks that do not name one.
pub const DEFAULT_QUEUE: &str = "default";

/// Largest spec file accepted, in bytes.
pub const MAX_SPEC_BYTES: usize = 64 * 1024 * 1024;
/// Most tasks in one job.
pub const MAX_TASKS: usize = 200_000;
/// Deepest nesting accepted in JSON/TOML specs (serde_json's own limit is 128).
pub const MAX_NESTING: usize = 128;

/// The redb file inside a `--state` / `--data-dir` directory.
pub const STATE_FILE: &str = "ordo.redb";
