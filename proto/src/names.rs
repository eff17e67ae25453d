//! One place for names: NATS subjects, streams and consumers, limits, and file names.
//!
//! Subject tokens are never user text: jobs appear as their UUID, tasks as their index in the
//! job, workers as their generated id. Queue names are the one user-chosen token; validation
//! restricts them to `[A-Za-z0-9_-]`.

use crate::ids::{AttemptRef, JobId, TaskIndex, WorkerId};

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

/// Default NATS URL of every binary (`--nats`, `ORDO_NATS_URL`).
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Work-queue stream of task messages, `ordo.task.<queue>`.
pub const TASK_STREAM: &str = "ORDO_TASKS";
/// Results and events from workers, `ordo.event.<job>`.
pub const EVENT_STREAM: &str = "ORDO_EVENTS";
/// Task output, `ordo.log.<job>.<task index>` (limits retention).
pub const LOG_STREAM: &str = "ORDO_LOGS";
/// The coordinator's durable consumer of `EVENT_STREAM`.
pub const EVENT_CONSUMER: &str = "ordo-coordinator";

pub const TASK_SUBJECTS: &str = "ordo.task.>";
pub const EVENT_SUBJECTS: &str = "ordo.event.>";
pub const LOG_SUBJECTS: &str = "ordo.log.>";
/// Output of one attempt streamed to its log subject; beyond this only the result's tail
/// keeps it (a task writing gigabytes must not flood the broker).
pub const MAX_STREAMED_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// `Started` notices (core NATS, best effort: a lost one only delays the `running` display),
/// `ordo.started.<job>`.
pub const STARTED_SUBJECTS: &str = "ordo.started.*";
/// Worker heartbeats (core NATS), `ordo.heartbeat.<worker>`.
pub const HEARTBEAT_SUBJECTS: &str = "ordo.heartbeat.*";
/// Kill requests from the coordinator to every worker (core NATS).
pub const CONTROL_KILL: &str = "ordo.control.kill";
/// The coordinator's API: `ordo.api.<verb>`, JSON request and reply.
pub const API_SUBJECTS: &str = "ordo.api.*";
/// Queue group of coordinator API subscribers.
pub const API_QUEUE_GROUP: &str = "ordo-coordinator";

pub fn task_subject(queue: &str) -> String {
    format!("ordo.task.{queue}")
}

/// Durable pull consumer shared by every worker of a queue.
pub fn queue_consumer(queue: &str) -> String {
    format!("ordo-queue-{queue}")
}

pub fn event_subject(job: &JobId) -> String {
    format!("ordo.event.{job}")
}

pub fn log_subject(job: &JobId, index: TaskIndex) -> String {
    format!("ordo.log.{job}.{index}")
}

/// Every task's output of a job.
pub fn log_subjects(job: &JobId) -> String {
    format!("ordo.log.{job}.*")
}

pub fn started_subject(job: &JobId) -> String {
    format!("ordo.started.{job}")
}

pub fn heartbeat_subject(worker: &WorkerId) -> String {
    format!("ordo.heartbeat.{worker}")
}

pub fn api_subject(verb: &str) -> String {
    format!("ordo.api.{verb}")
}

/// The advisories JetStream sends when a task message of any queue ran out of deliveries.
pub fn max_deliveries_advisories() -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{TASK_STREAM}.*")
}

/// `Nats-Msg-Id` of a dispatch: replays of the same attempt are de-duplicated by JetStream.
pub fn dispatch_msg_id(attempt: &AttemptRef) -> String {
    format!("{}.{}.{}", attempt.job, attempt.index, attempt.attempt)
}

/// Whether a queue name is a safe subject token.
pub fn valid_queue(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= 64
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
