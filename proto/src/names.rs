//! One place for names: NATS subjects, streams and consumers, limits, and file names.
//!
//! Subject tokens are never user text: jobs appear as their UUID, tasks as their index in the
//! job, workers as their generated id. Queue names are the one user-chosen token; validation
//! restricts them to `[A-Za-z0-9_-]`.

use crate::ids::{Attempt, AttemptRef, JobId, TaskIndex, TaskName, WorkerId};

/// Queue of tasks that do not name one.
pub const DEFAULT_QUEUE: &str = "default";

/// Largest spec file accepted, in bytes.
pub const MAX_SPEC_BYTES: usize = 64 * 1024 * 1024;
/// Most tasks in one job (the coordinator's `--max-tasks` may lower it, never raise it).
pub const MAX_TASKS: usize = 1_000_000;
/// Most attempts one task may be given (`max_attempts`, or `retries` + 1): more is a typo, and
/// would keep a failing task busy for years.
pub const MAX_ATTEMPTS: u32 = 1000;
/// Most `changes` rounds a quality-gate stage may send back (`max_rounds`).
pub const MAX_STAGE_ROUNDS: u32 = 10;
/// Deepest nesting accepted in JSON/TOML specs (serde_json's own limit is 128).
pub const MAX_NESTING: usize = 128;

/// Inbox prefixes, one per role: every reply a role receives (API replies, JetStream API
/// answers, publish acks, pulled messages) arrives under its own prefix, and the deployed
/// permissions (deploy/nats/auth.conf) let only that role subscribe there, so no role reads
/// another's replies, task messages or secrets.
pub const INBOX_COORDINATOR: &str = "_INBOX_coordinator";
pub const INBOX_WORKER: &str = "_INBOX_worker";
pub const INBOX_CLIENT: &str = "_INBOX_client";

/// The redb file inside a `--state` / `--data-dir` directory.
pub const STATE_FILE: &str = "ordo.redb";
/// The state file's write-ahead log, beside it.
pub const STATE_LOG_FILE: &str = "ordo.redb.wal";

/// Default NATS URL of every binary (`--nats`, `ORDO_NATS_URL`).
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Work-queue stream of task messages, `ordo.task.<queue>`.
pub const TASK_STREAM: &str = "ORDO_TASKS";
/// Results and events from workers, `ordo.event.<job>`.
pub const EVENT_STREAM: &str = "ORDO_EVENTS";
/// Task output, `ordo.log.<job>.<task index>` (limits retention).
pub const LOG_STREAM: &str = "ORDO_LOGS";
/// Headers of a `LOG_STREAM` message: the attempt that wrote it, `stdout` or `stderr`, and,
/// for an agent's prompt task, the agent (`claude`, `codex`) whose JSON it is.
pub const LOG_ATTEMPT_HEADER: &str = "Ordo-Attempt";
pub const LOG_STREAM_HEADER: &str = "Ordo-Stream";
pub const LOG_AGENT_HEADER: &str = "Ordo-Agent";
/// The coordinator's durable consumer of `EVENT_STREAM`.
pub const EVENT_CONSUMER: &str = "ordo-coordinator";

pub const TASK_SUBJECTS: &str = "ordo.task.>";
pub const EVENT_SUBJECTS: &str = "ordo.event.>";
pub const LOG_SUBJECTS: &str = "ordo.log.>";
/// Runs averaging less than this are quick: the coordinator keeps four tasks per slot waiting
/// in their queue's stream, and a worker holds one task beyond its free slots while none of
/// its running tasks has run that long (docs/design.md, "Where a task's time goes through the
/// cluster").
pub const QUICK_RUN_MS: u64 = 20;

/// The moving average of run durations in milliseconds (the coordinator's per queue, a
/// worker's own) after a run of `ms`; durations come from the network, so it saturates.
pub fn pace_after(avg: Option<u64>, ms: u64) -> u64 {
    match avg {
        Some(avg) => avg.saturating_mul(7).saturating_add(ms) / 8,
        None => ms,
    }
}

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
/// Requests from the coordinator to every worker to remove what a job's failed attempts kept
/// (worktrees in their caches, task branches in the shared repository) (core NATS).
pub const CONTROL_PRUNE: &str = "ordo.control.prune";
/// The coordinator's API: `ordo.api.<verb>`, JSON request and reply.
pub const API_SUBJECTS: &str = "ordo.api.*";
/// Queue group of coordinator API subscribers.
pub const API_QUEUE_GROUP: &str = "ordo-coordinator";

/// Object store bucket of API bodies larger than one NATS message (stream `OBJ_ORDO_BLOBS`):
/// a request or reply too large for the server's max_payload is put here and its message
/// carries the object's name in `HEADER_BODY_OBJECT` instead of a body.
pub const BLOB_BUCKET: &str = "ORDO_BLOBS";
/// Header naming the object of `BLOB_BUCKET` that holds a message's body.
pub const HEADER_BODY_OBJECT: &str = "Ordo-Body-Object";
/// Objects older than this are removed by the server: what a crashed client or coordinator
/// left behind (readers delete what they read).
pub const BLOB_MAX_AGE_SECS: u64 = 15 * 60;
/// Bytes kept free below max_payload for the subject and headers of a message whose body is
/// sent inline.
pub const INLINE_HEADROOM: usize = 4 * 1024;

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

/// Header of a task-stream message saying what it asks for: absent for a task attempt (a
/// `Dispatch`), `KIND_INTEGRATE` for an integration (an `Integrate`). On the event stream:
/// absent for one `WorkerEvent`, `KIND_EVENTS` for several (`wire::decode_events`).
pub const HEADER_KIND: &str = "Ordo-Kind";
pub const KIND_INTEGRATE: &str = "integrate";
pub const KIND_EVENTS: &str = "events";

/// `Nats-Msg-Id` of a batch of events: the worker, its process start and the batch's number,
/// so a batch republished after a lost ack is de-duplicated and no two batches share an id.
pub fn events_msg_id(worker: &WorkerId, started_ms: u64, batch: u64) -> String {
    format!("events.{worker}.{started_ms}.{batch}")
}

/// `Nats-Msg-Id` of an attempt's integration request: one per attempt (a conflict makes a new
/// attempt), so a republished request is de-duplicated.
/// A bisection step (`Integrate::step`) integrates the same attempt again: its id has the step.
pub fn integrate_msg_id(attempt: &AttemptRef, step: u32) -> String {
    format!(
        "{}.integrate{}",
        dispatch_msg_id(attempt),
        step_suffix(step)
    )
}

/// Environment of an attempt in a workspace: the worktree it runs in.
pub const ENV_WORKSPACE: &str = "ORDO_WORKSPACE";
/// Environment of an attempt re-run after a conflict: the conflicting files, one per line.
pub const ENV_CONFLICT_FILES: &str = "ORDO_CONFLICT_FILES";

/// A job's tag in branch and worktree names: the first 8 characters of its id (what people
/// type to name a job) and its last 4. The first 8 of a UUIDv7 are the top of its timestamp
/// and stay the same for about a minute, so they alone would let two jobs started together on
/// one repository share branches; the last 4 are random.
pub fn job_tag(job: &JobId) -> String {
    let id = job.to_string();
    format!("{}-{}", &id[..8], &id[id.len() - 4..])
}

/// Longest task or job name kept in a branch name, in bytes.
pub const MAX_NAME_IN_BRANCH: usize = 40;

/// A name reduced to one safe ref-name component: `[A-Za-z0-9._-]` kept, anything else `-`,
/// runs of `-` and of `.` collapsed (so never `..`), no `-` or `.` at either end, at most
/// `MAX_NAME_IN_BRANCH` bytes, never ending in `.lock`; `fallback` when nothing is left.
fn sanitise(name: &str, fallback: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_NAME_IN_BRANCH * 2));
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        if (c == '-' || c == '.') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    let trim = |s: &str| s.trim_matches(['-', '.']).to_string();
    let mut out = trim(&out);
    // ASCII only from here, so any byte index is a char boundary.
    out.truncate(MAX_NAME_IN_BRANCH);
    let mut out = trim(&out);
    if let Some(stem) = out.strip_suffix(".lock") {
        out = format!("{stem}-lock");
    }
    if out.is_empty() {
        fallback.to_string()
    } else {
        out
    }
}

/// The branch of one attempt (docs/design.md, "Agent workspaces"): `ordo/<job
/// tag>/<index>-<sanitised name>/<attempt>`, a valid git branch name whatever the task is called
/// (an unusable name becomes `task`).
pub fn task_branch(job: &JobId, index: TaskIndex, name: &TaskName, attempt: Attempt) -> String {
    format!(
        "ordo/{}/{}-{}/{}",
        job_tag(job),
        index.0,
        sanitise(name.as_str(), "task"),
        attempt.0
    )
}

/// The default integration branch of a job (docs/design.md, "Agent workspaces"): `ordo/<sanitised
/// job name>-<job tag>`, a valid git branch name whatever the job is called (an unusable name
/// becomes `job`).
pub fn integration_branch(job_name: &str, job: &JobId) -> String {
    format!("ordo/{}-{}", sanitise(job_name, "job"), job_tag(job))
}

/// Whether a queue name is a safe subject token.
pub fn valid_queue(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= 64
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

// Coordinator high availability (`ordo-coordinator --ha`, docs/design.md, "High availability").

/// The journal: every commit of the active coordinator, before anything it describes is done.
pub const JOURNAL_STREAM: &str = "ORDO_JOURNAL";
/// Journal subjects (`ordo.journal.entry` and `ordo.journal.epoch`).
pub const JOURNAL_SUBJECTS: &str = "ordo.journal.>";
/// One commit (or a part of one too large for a message).
pub const JOURNAL_ENTRY: &str = "ordo.journal.entry";
/// One message per epoch: appends are fenced on this subject's last sequence.
pub const JOURNAL_EPOCH: &str = "ordo.journal.epoch";
/// The KV bucket holding the lease (its max age is the lease's TTL).
pub const LEASE_BUCKET: &str = "ordo-lease";
/// The lease's key: whoever holds it is the active coordinator.
pub const LEASE_KEY: &str = "active";
/// The object store bucket of state snapshots.
pub const SNAPSHOT_BUCKET: &str = "ordo-snapshots";
/// The snapshot's object name.
pub const SNAPSHOT_OBJECT: &str = "state";
/// Core request: every `--ha` coordinator answers with its role, epoch and lag (`ordo cluster`).
pub const HA_INFO: &str = "ordo.ha.info";

/// `[[notify]]` deliveries: the header carrying the delivery's id (the same on every retry, for
/// de-duplication) and the one carrying its signature (`t=<unix secs>,v1=<hex HMAC-SHA256>`).
pub const NOTIFY_DELIVERY_HEADER: &str = "Ordo-Delivery";
pub const NOTIFY_SIGNATURE_HEADER: &str = "Ordo-Signature";
/// How long a notification is retried after its event before it is given up.
pub const NOTIFY_GIVE_UP_MS: u64 = 24 * 60 * 60 * 1000;

/// `.<step>` for a bisection step's message ids, nothing for the first integration (ids as
/// before batches).
pub fn step_suffix(step: u32) -> String {
    match step {
        0 => String::new(),
        n => format!(".{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes of branch names; that they are valid refs for any name is checked against
    /// git itself in `worker::workspace`'s tests.
    #[test]
    fn branch_names_have_their_shape() {
        let job: JobId = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
        assert_eq!(job_tag(&job), "01890a5d-8057");
        let tb = |n: &str| task_branch(&job, TaskIndex(1), &TaskName::new(n).unwrap(), Attempt(2));
        assert_eq!(tb("fix the API"), "ordo/01890a5d-8057/1-fix-the-API/2");
        assert_eq!(tb("??"), "ordo/01890a5d-8057/1-task/2");
        assert_eq!(tb("ends.lock"), "ordo/01890a5d-8057/1-ends-lock/2");
        assert_eq!(tb("a..b"), "ordo/01890a5d-8057/1-a.b/2");
        assert_eq!(
            integration_branch("play plan", &job),
            "ordo/play-plan-01890a5d-8057"
        );
        assert_eq!(integration_branch("", &job), "ordo/job-01890a5d-8057");
    }
}
