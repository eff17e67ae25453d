//! Messages between the engine and whatever executes tasks: a `Dispatch` says what to run, a
//! `TaskResult` says what happened. The local runner passes them in memory; the coordinator and
//! workers send them over NATS as MessagePack.
//!
//! Fencing: every dispatch carries its attempt and every result echoes it. The engine applies a
//! result only if it is for the task's current attempt; anything else is recorded as stale or
//! duplicate and changes nothing. JetStream may deliver one attempt's message more than once
//! (its worker went silent for a whole ack wait): `delivery` numbers those executions, and a
//! result of an older delivery than the one now running is stale too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agents::{AgentCall, AgentKind};
pub use crate::agents::{AgentRun, RateLimit};
use crate::gates::{StageRecord, StageRun};
use crate::ids::{Attempt, AttemptRef, JobId, TaskIndex, TaskName, WorkerId};
use crate::spec::{JobSpec, Program, TaskSpec};

/// One attempt of one task, fully resolved: the executor needs nothing else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub job: JobId,
    pub task: TaskName,
    /// Index of the task in its job's spec.
    pub index: TaskIndex,
    pub attempt: Attempt,
    pub program: Program,
    #[serde(default)]
    pub verify: Option<Verify>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Pause between the program's success and the verify command (Prompter's
    /// `check_interval`, for prompt tasks).
    #[serde(default)]
    pub verify_delay: Option<Duration>,
    /// Worker pool the task is routed to (`ordo.task.<queue>`).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// CPUs and memory (MB) the task declared; a worker takes it only if they fit.
    #[serde(default)]
    pub cpus: f64,
    #[serde(default)]
    pub memory_mb: u64,
    /// Jobs with `workspace = "worktree"`: the git worktree the attempt runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// A prompt task run by an agent profile: how to read what the program prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentKind>,
    /// The model the attempt asked its agent for (already in `program`): recorded as the
    /// attempt's model when the agent does not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The agent and command stages the attempt goes through after its verify
    /// (docs/design.md, "Quality gates"), in the spec's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageRun>,
    /// A prompt task with stages: how to resume its agent's session with a stage's findings
    /// (a round of the same attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementer: Option<Box<AgentCall>>,
    /// A task with stages: its own prompt and title, for the `{prompt}` and `{title}` of an
    /// agent stage's prompt (set by `JobSpec::stage_runs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brief: Option<Box<TaskBrief>>,
}

/// What an agent stage's prompt may quote of its task besides its name and its work.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskBrief {
    /// The task's own prompt (not a verify loop's or a resolve round's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Where an attempt of a job with `workspace = "worktree"` runs (docs/design.md, "Agent
/// workspaces"): a fresh worktree of `repository` on its own branch, cut from the integration
/// branch as it stands when the attempt starts (the branch is created from `base` when it does not
/// exist yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// A path (or, across machines, a URL) every executor can reach.
    pub repository: String,
    pub integration_branch: String,
    /// A commit (or anything `git rev-parse` resolves) the integration branch starts from.
    pub base: String,
    /// `ordo/<job8>/<task index>-<sanitised name>/<attempt>`.
    pub task_branch: String,
    /// The task's last integration conflicted: the files, and the task it collided with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<Conflict>,
    /// The task's title, when its format gave one (a TaskMaster task's): for commit messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A revise round (an approval rejected with `on_reject = "revise"`): the attempt starts
    /// from this branch and head, the task's work as it was, instead of from the tip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revise: Option<Resolve>,
    /// A speculative attempt (docs/design.md, "Integration queue: speculation"): the work of
    /// its dependencies that passed their verify but are not integrated yet, merged in this
    /// order onto the tip before the attempt starts. Its change is counted from there (its
    /// files are its own); a merge that does not go cleanly fails the attempt (the engine
    /// discards it, no attempt spent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speculative: Vec<Resolve>,
    /// Work of this task's earlier speculative attempts that was discarded (their task
    /// branches; `head` is empty for a run that committed nothing, killed or failed): their
    /// worktrees and branches (on a cluster, in the shared repository too) are removed before
    /// this attempt starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discarded: Vec<Resolve>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub files: Vec<String>,
    /// The task whose integrated change touched those files, when known.
    #[serde(default)]
    pub with: Option<TaskName>,
    /// A resolve round (a prompt task with a session to resume): the attempt starts from the
    /// conflicted attempt's commit with the integration tip merged in, conflict markers left
    /// in `files` for the agent to resolve, instead of from the tip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<Resolve>,
}

/// Where a resolve round starts: the conflicted attempt's task branch and its head commit
/// (across machines, pushed to the shared repository).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolve {
    pub branch: String,
    pub head: String,
}

/// What an attempt in a workspace left behind once it succeeded: its branch and head commit
/// (its changes committed), the commit it was cut from, the files it changed since, and the
/// worktree (kept until the task is integrated, and on failure).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceResult {
    pub branch: String,
    pub base_commit: String,
    pub head: String,
    pub files: Vec<String>,
    pub worktree: String,
    /// A resolve round that left conflict markers: the files that still hold them (the
    /// attempt failed; the task runs again from the tip instead, spending no attempt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
    /// The attempt was a resolve round (its conflict resolved in the task's own session).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolved: bool,
    /// Lines added and removed per file of `files` (what an approval shows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<FileLines>,
}

/// Lines a task added to and removed from one file (`git diff --numstat`; binary files count
/// none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLines {
    pub path: String,
    pub added: u64,
    pub removed: u64,
}

impl WorkspaceResult {
    /// Whether the attempt was a resolve round, whether it mended the conflict or not.
    pub fn resolve_round(&self) -> bool {
        self.resolved || !self.unresolved.is_empty()
    }
}

/// One integration (docs/design.md, "Agent workspaces"): merge `head` onto the integration branch's
/// tip if it merges cleanly, run the verify command at the merge in a worktree of its own, and only
/// then move the branch (compare-and-swap on the tip it merged onto).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Integrate {
    pub job: JobId,
    pub task: TaskName,
    pub index: TaskIndex,
    pub attempt: Attempt,
    pub repository: String,
    pub integration_branch: String,
    /// Where the integration branch starts when it does not exist yet (across machines, the
    /// first integration creates it in the shared repository).
    #[serde(default)]
    pub base: String,
    pub task_branch: String,
    pub head: String,
    /// The worktree the attempt ran in, removed (with its branch) once integrated; empty when
    /// its worker removed it already (across machines: the task branch was pushed).
    pub worktree: String,
    /// The task's queue: across machines, a worker of that queue integrates (and runs the
    /// integration verify).
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default)]
    pub verify: Option<Verify>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// The task has no integration attempt left: keep its worktree if this one fails.
    #[serde(default)]
    pub last: bool,
    /// The task's title, when its format gave one: for the merge commit's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A batch (docs/design.md, "Integration queue: batches"): the tasks merged on top of this
    /// one, in order, before the one integration verify; the branch moves once for all.
    /// Empty: this task alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<BatchItem>,
    /// How many times the first task's attempt was integrated before in a batch whose verify
    /// failed (bisection integrates it again): part of the request's and the result's message
    /// ids, so a bisection step is not taken for a replay. 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step: u32,
    /// A stacked integration (docs/design.md, "Integration queue: batches", halves verified
    /// at once): the tasks of the integration in flight ahead of this one, merged first in
    /// their order, so that this one's verify runs on top of them while theirs runs. Nothing is integrated: the branch
    /// does not move, and a task whose merge verified is `Integration::Verified` (it lands
    /// later, once those ahead did). Empty: an ordinary integration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub onto: Vec<BatchItem>,
    /// The tree a stacked integration of these tasks verified (`Integration::Verified`): when
    /// the merge onto the tip comes to that tree, the verify is not run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
}

/// A task of a batch after the first (whose fields are `Integrate`'s own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub task: TaskName,
    pub index: TaskIndex,
    pub attempt: Attempt,
    pub task_branch: String,
    pub head: String,
    pub worktree: String,
    #[serde(default)]
    pub last: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// What became of one task of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemOutcome {
    pub index: TaskIndex,
    pub attempt: Attempt,
    pub outcome: Integration,
}

impl Integrate {
    /// Every task of this integration as an integration of its own (the first is `self`
    /// without its batch), in merge order.
    pub fn items(&self) -> Vec<Integrate> {
        let first = self.alone();
        let rest = self.batch.iter().map(|b| first.with(b));
        std::iter::once(first.clone()).chain(rest).collect()
    }

    /// The tasks a stacked integration merges first (`onto`), each as an integration of its
    /// own, in merge order.
    pub fn onto_items(&self) -> Vec<Integrate> {
        let first = self.alone();
        self.onto.iter().map(|b| first.with(b)).collect()
    }

    /// This integration's first task alone.
    fn alone(&self) -> Integrate {
        Integrate {
            batch: Vec::new(),
            onto: Vec::new(),
            ..self.clone()
        }
    }

    /// This integration (alone) for task `b` instead.
    fn with(&self, b: &BatchItem) -> Integrate {
        Integrate {
            task: b.task.clone(),
            index: b.index,
            attempt: b.attempt,
            task_branch: b.task_branch.clone(),
            head: b.head.clone(),
            worktree: b.worktree.clone(),
            last: b.last,
            title: b.title.clone(),
            ..self.clone()
        }
    }

    /// Whether this is a stacked integration (`onto`): verified on top of the one in flight,
    /// never moving the branch.
    pub fn stacked(&self) -> bool {
        !self.onto.is_empty()
    }
}

impl Integration {
    pub fn name(&self) -> &'static str {
        match self {
            Integration::Merged { .. } => "merged",
            Integration::Unchanged { .. } => "unchanged",
            Integration::Conflict { .. } => "conflict",
            Integration::VerifyFailed { .. } => "verify_failed",
            Integration::Failed { .. } => "failed",
            Integration::Verified { .. } => "verified",
        }
    }
}

/// How an integration ended. The branch moved only for `Merged`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Integration {
    /// The merge is the new tip; `files` are those it changed on the integration branch.
    Merged { commit: String, files: Vec<String> },
    /// The task's changes are already on the branch (nothing to merge).
    Unchanged { commit: String },
    /// The merge would conflict in these files.
    Conflict { files: Vec<String> },
    /// The merge was clean but the verify command failed at it.
    VerifyFailed {
        exit_code: Option<i32>,
        output_tail: String,
    },
    /// Something else went wrong (git failed, the repository is gone): the message says what.
    Failed { message: String },
    /// A stacked integration's task (`Integrate::onto`): merged cleanly on top of the tasks
    /// ahead, and the integration verify passed at `tree`; the branch did not move.
    Verified { tree: String },
}

impl Dispatch {
    /// An attempt of `program` with nothing else set: no verify, environment, timeout or
    /// workspace, the default queue, no resources.
    pub fn new(
        job: JobId,
        task: TaskName,
        index: TaskIndex,
        attempt: Attempt,
        program: Program,
    ) -> Dispatch {
        Dispatch {
            job,
            task,
            index,
            attempt,
            program,
            verify: None,
            env: BTreeMap::new(),
            working_dir: None,
            timeout: None,
            verify_delay: None,
            queue: default_queue(),
            cpus: 0.0,
            memory_mb: 0,
            workspace: None,
            agent: None,
            model: None,
            stages: Vec::new(),
            implementer: None,
            brief: None,
        }
    }

    /// Sets the agent and command stages of this dispatch of task `t` of `spec` (its `n`-th rung, from 1:
    /// `JobSpec::model`), how to resume its implementer when a stage asks for changes (climbing
    /// its `escalate` ladder round by round), and what a stage's prompt may quote of the task
    /// (`brief`).
    pub fn set_stages(&mut self, spec: &JobSpec, t: &TaskSpec, n: u32) {
        use crate::gates::{StageKind, StageProgram};
        let (d, model) = (self, spec.model(t, n));
        d.stages = spec
            .stages_of(t)
            .filter_map(|s| {
                let run = match s.kind() {
                    StageKind::Agent => StageProgram::Agent {
                        call: spec.stage_call(s),
                        prompt: s.prompt.clone().unwrap_or_default(),
                    },
                    StageKind::Command => StageProgram::Command {
                        command: s.command.clone().unwrap_or_default(),
                    },
                    StageKind::Approval => return None,
                };
                Some(StageRun {
                    name: s.name.clone(),
                    run,
                    group: s.group.clone(),
                    read_only: s.read_only,
                    max_rounds: s.max_rounds(),
                    timeout: s.timeout.map(|d| d.0),
                })
            })
            .collect();
        d.implementer =
            (t.is_prompt() && !d.stages.is_empty() && spec.agent_for(t) != AgentKind::Command)
                .then(|| {
                    let mut call = spec.agent_call(t, model);
                    let ladder = t.escalate.as_deref().unwrap_or_default();
                    call.escalate = ladder.iter().skip(n as usize).cloned().collect();
                    Box::new(call)
                });
        if !d.stages.is_empty() {
            d.brief = Some(Box::new(TaskBrief {
                prompt: t.prompt.clone(),
                title: t.title(),
            }));
        }
    }

    pub fn attempt_ref(&self) -> AttemptRef {
        AttemptRef {
            job: self.job,
            index: self.index,
            attempt: self.attempt,
        }
    }
}

fn default_queue() -> String {
    crate::names::DEFAULT_QUEUE.to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    pub command: String,
    pub success_code: i32,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit 0 and, if there is one, the verify command returned its success code.
    Succeeded,
    /// Non-zero exit, killed by a signal, or the program could not be started.
    Failed,
    /// The program succeeded but the verify command did not return its success code.
    VerifyFailed,
    /// The timeout expired; the process tree was killed.
    TimedOut,
    /// Cancelled from outside; the process tree was killed.
    Cancelled,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        self == Outcome::Succeeded
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::VerifyFailed => "verify_failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one attempt did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub job: JobId,
    pub task: TaskName,
    pub index: TaskIndex,
    pub attempt: Attempt,
    pub outcome: Outcome,
    /// Exit code of the program, if it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended the program, if any.
    pub signal: Option<i32>,
    /// Exit code of the verify command, if it ran.
    pub verify_exit_code: Option<i32>,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    /// How long the program itself ran (the rest is the verify delay and command).
    #[serde(default)]
    pub command_ms: u64,
    /// When the verify command started, if it ran.
    #[serde(default)]
    pub verify_started_ms: Option<u64>,
    /// Last bytes of stdout and stderr interleaved, lossily decoded as UTF-8.
    pub output_tail: String,
    /// Total bytes the program and verify command wrote.
    pub output_bytes: u64,
    /// Who ran it (worker id, or `local`).
    pub worker: WorkerId,
    /// Which delivery of the attempt's task message ran (1, 2, ... on a cluster; 0 locally or
    /// when unknown).
    #[serde(default)]
    pub delivery: u32,
    /// The worker lost its lease (cut off from NATS for a whole ack wait) and killed the
    /// task: JetStream delivers the message again, so this result is stale by definition.
    #[serde(default)]
    pub abandoned: bool,
    /// Human-readable reason when not succeeded (`exit code 3`, `timed out after 5s`, ...).
    pub message: String,
    /// Jobs with workspaces: what the attempt left in its worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Box<WorkspaceResult>>,
    /// Agent runs: the session, cost and tokens the agent reported (of every round of the
    /// implementer, its last session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<AgentRun>>,
    /// Each run of each stage, round by round (docs/design.md, "Quality gates").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageRecord>,
    /// `changes` verdicts sent back to the implementer in this attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rounds: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaskResult {
    /// The result of `d` run by `worker`, starting at `started_at_ms`, with nothing measured
    /// yet (no exit code, no output, no time): executors fill in what their attempt decided.
    pub fn new(
        d: &Dispatch,
        worker: WorkerId,
        outcome: Outcome,
        started_at_ms: u64,
        message: impl Into<String>,
    ) -> TaskResult {
        TaskResult {
            job: d.job,
            task: d.task.clone(),
            index: d.index,
            attempt: d.attempt,
            outcome,
            exit_code: None,
            signal: None,
            verify_exit_code: None,
            started_at_ms,
            duration_ms: 0,
            command_ms: 0,
            verify_started_ms: None,
            output_tail: String::new(),
            output_bytes: 0,
            worker,
            delivery: 0,
            abandoned: false,
            message: message.into(),
            workspace: None,
            agent: None,
            stages: Vec::new(),
            rounds: 0,
        }
    }

    /// Whether an agent ran in the attempt: its own, or a stage's reviewer (what it spent
    /// counts, `spend`).
    pub fn ran_agents(&self) -> bool {
        self.agent.is_some() || self.stages.iter().any(|s| s.agent.is_some())
    }

    /// What the attempt spent on agents, its stages' reviewers included: dollars (when any
    /// run said) and tokens.
    pub fn spend(&self) -> (Option<f64>, u64) {
        let runs = self
            .agent
            .as_deref()
            .into_iter()
            .chain(self.stages.iter().filter_map(|s| s.agent.as_ref()));
        let (mut cost, mut tokens) = (None, 0u64);
        for r in runs {
            if let Some(c) = r.cost_usd {
                cost = Some(cost.unwrap_or(0.0) + c);
            }
            tokens = tokens.saturating_add(r.tokens());
        }
        (cost, tokens)
    }

    pub fn attempt_ref(&self) -> AttemptRef {
        AttemptRef {
            job: self.job,
            index: self.index,
            attempt: self.attempt,
        }
    }
}

/// What workers publish: `Finished` durably on `ordo.event.<job>` (JetStream), `Started` as a
/// best-effort notice on `ordo.started.<job>` (core NATS).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkerEvent {
    Started {
        job: JobId,
        index: TaskIndex,
        attempt: Attempt,
        worker: WorkerId,
        #[serde(default)]
        delivery: u32,
    },
    Finished(TaskResult),
    /// A worker integrated an attempt (the coordinator dispatched an `Integrate`).
    Integrated(IntegrationResult),
}

/// What a worker reports for an `Integrate` it carried out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntegrationResult {
    pub job: JobId,
    pub index: TaskIndex,
    pub attempt: Attempt,
    pub worker: WorkerId,
    /// JetStream's delivery count of the integration request (a redelivery is another try).
    #[serde(default)]
    pub delivery: u32,
    pub outcome: Integration,
    /// For a batch: what became of its other tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<ItemOutcome>,
    /// The request's `Integrate::step`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step: u32,
    /// The request was stacked (`Integrate::onto`): its outcomes are about the tasks on top
    /// of the ones ahead, not about the branch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stacked: bool,
}

impl WorkerEvent {
    pub fn job(&self) -> JobId {
        match self {
            WorkerEvent::Started { job, .. } => *job,
            WorkerEvent::Finished(r) => r.job,
            WorkerEvent::Integrated(r) => r.job,
        }
    }

    /// `Nats-Msg-Id`: a re-published event of the same execution is de-duplicated; another
    /// delivery of the same attempt is another execution.
    pub fn msg_id(&self) -> String {
        match self {
            WorkerEvent::Started {
                job,
                index,
                attempt,
                worker,
                delivery,
            } => format!("{job}.{index}.{attempt}.{delivery}.started.{worker}"),
            WorkerEvent::Finished(r) => format!(
                "{}.{}.{}.{}.finished.{}",
                r.job, r.index, r.attempt, r.delivery, r.worker
            ),
            WorkerEvent::Integrated(r) => format!(
                "{}.{}.{}.{}.integrated{}.{}",
                r.job,
                r.index,
                r.attempt,
                r.delivery,
                crate::names::step_suffix(r.step),
                r.worker
            ),
        }
    }
}

/// Reads an event-stream message: several events when its `Ordo-Kind` header is
/// `names::KIND_EVENTS` (a worker reporting what queued while its last publish was in
/// flight), one otherwise.
pub fn decode_events(kind: Option<&str>, bytes: &[u8]) -> Result<Vec<WorkerEvent>, DecodeError> {
    if kind == Some(crate::names::KIND_EVENTS) {
        decode(bytes)
    } else {
        decode(bytes).map(|e| vec![e])
    }
}

/// A worker announcing itself, every second, on `ordo.heartbeat.<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker: WorkerId,
    pub host: String,
    pub queues: Vec<String>,
    pub slots: u32,
    pub busy: u32,
    pub cpus: f64,
    pub memory_mb: u64,
    /// Set while the worker drains after SIGTERM: it takes no new tasks.
    pub draining: bool,
    pub at_ms: u64,
    /// What the worker wants its operator to know, e.g. why it takes no worktree tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Most task slots one worker may offer. Heartbeats come from the network: one claiming more
/// is refused, so a forged heartbeat cannot make the coordinator's sums wrap or stall a queue.
pub const MAX_WORKER_SLOTS: u32 = 65_536;
/// Most CPUs one worker may offer.
pub const MAX_WORKER_CPUS: f64 = 65_536.0;
/// Most memory one worker may offer, in MB (a pebibyte).
pub const MAX_WORKER_MEMORY_MB: u64 = 1 << 30;
/// Most queues one worker may serve, and the longest host name it may give.
pub const MAX_WORKER_QUEUES: usize = 1024;
const MAX_HOST: usize = 255;

impl Heartbeat {
    /// Why this offer is not believable, if it is not: every number is bounded, so sums over
    /// workers stay far from overflow.
    pub fn check(&self) -> Result<(), String> {
        let worker = &self.worker;
        if self.slots > MAX_WORKER_SLOTS {
            return Err(format!(
                "worker {worker} claims {} slots; at most {MAX_WORKER_SLOTS} are believed",
                self.slots
            ));
        }
        if !(self.cpus.is_finite() && (0.0..=MAX_WORKER_CPUS).contains(&self.cpus)) {
            return Err(format!(
                "worker {worker} claims {} CPUs; 0 to {MAX_WORKER_CPUS} are believed",
                self.cpus
            ));
        }
        if self.memory_mb > MAX_WORKER_MEMORY_MB {
            return Err(format!(
                "worker {worker} claims {} MB of memory; at most {MAX_WORKER_MEMORY_MB} are believed",
                self.memory_mb
            ));
        }
        if let Some(q) = self.queues.iter().find(|q| !crate::names::valid_queue(q)) {
            return Err(format!("worker {worker} names an invalid queue {q:?}"));
        }
        if self.queues.len() > MAX_WORKER_QUEUES || self.host.len() > MAX_HOST {
            return Err(format!(
                "worker {worker} names {} queues and a host of {} bytes; at most \
                 {MAX_WORKER_QUEUES} and {MAX_HOST} are believed",
                self.queues.len(),
                self.host.len()
            ));
        }
        Ok(())
    }
}

/// From the coordinator to every worker on `ordo.control.kill`: stop these attempts now and
/// never start a task of a listed job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub job: JobId,
    /// `None`: every attempt of the job.
    pub index: Option<TaskIndex>,
    pub attempt: Option<Attempt>,
}

/// From the coordinator to every worker on `ordo.control.prune`: remove the worktrees and task
/// branches job `job` kept in `repository` (its cache clone and the shared repository).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prune {
    pub job: JobId,
    pub repository: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decode message: {0}")]
pub struct DecodeError(String);

/// Internal messages are MessagePack (with field names, so fields can be added).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("wire types always serialise")
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))
}
