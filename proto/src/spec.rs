//! The job model every input format parses into: `JobSpec`, its `Settings` and `TaskSpec`s.
//!
//! These structs are also ordo's canonical TOML/JSON format (a superset of Prompter's TOML), so
//! they reject unknown fields. Foreign formats (TaskMaster, subtasks JSON, Markdown) are
//! converted into them by the CLI; fields those formats have and ordo does not are kept as
//! `labels`. Effective values (attempts, mode, timeouts) are computed by the methods here, in
//! one place, so the engine and every report agree.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::agents::{AgentCall, AgentKind};
use crate::duration::Dur;
use crate::ids::TaskName;

/// Default attempts when neither the task nor the settings say: one, no retries (as Airflow).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1;
/// Default first retry delay; doubled for each further attempt.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// The program of each agent profile when `agent_command` does not name one.
pub const CLAUDE_PROGRAM: &str = "claude";
pub const CODEX_PROGRAM: &str = "codex";
/// The values of `effort`.
pub const EFFORTS: [&str; 3] = ["low", "medium", "high"];
/// The keys of `settings.models`: a task's level, from its complexity or priority.
pub const MODEL_LEVELS: [&str; 3] = ["high", "medium", "low"];
/// Labels a task's level is read from (`spec::level`), the first that gives one.
pub const COMPLEXITY_LABEL: &str = "complexity";
pub const PRIORITY_LABEL: &str = "priority";
/// Iteration cap of a flow-jump job unless `allow_infinite_loops`.
pub const DEFAULT_ITERATION_CAP: u32 = 1000;
/// Integrations a task may try (conflicts and failed integration verifies re-run it).
pub const DEFAULT_MAX_INTEGRATION_ATTEMPTS: u32 = 3;

/// Where a job's attempts run (docs/design.md, "Agent workspaces").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// In the working directory, as they are.
    #[default]
    None,
    /// Each attempt in a git worktree of its own, integrated one at a time.
    Worktree,
}

impl std::str::FromStr for WorkspaceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(WorkspaceMode::None),
            "worktree" => Ok(WorkspaceMode::Worktree),
            other => Err(format!(
                "unknown workspace {other:?} (expected worktree or none)"
            )),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name; loaders default it to the file stem.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub tasks: Vec<TaskSpec>,
    /// Quality gates every prompt task (or every task they `select`) goes through before it
    /// is integrated (docs/design.md, "Quality gates").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::gates::StageSpec>,
    /// Webhooks told of the events a person must act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::gates::NotifySpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    Parallel,
    Sequential,
}

impl std::str::FromStr for ExecutionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "parallel" => Ok(ExecutionMode::Parallel),
            "sequential" => Ok(ExecutionMode::Sequential),
            other => Err(format!(
                "unknown execution mode {other:?} (expected parallel or sequential)"
            )),
        }
    }
}

impl ExecutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Parallel => "parallel",
            ExecutionMode::Sequential => "sequential",
        }
    }
}

impl std::fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transition of a flow-jump job (`JobSpec::flow_edges`): task indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEdge {
    pub from: usize,
    pub to: usize,
    /// After success (`on_success`), else after failure (`on_failure`).
    pub success: bool,
    /// Written in the spec, not the default `next`.
    pub declared: bool,
}

/// A job's mode and the reason for it (`JobSpec::mode_decision`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeDecision {
    pub mode: ExecutionMode,
    pub reason: ModeReason,
}

/// Why a job runs in its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeReason {
    /// A task jumps to a task, `stop` or `repeat`: a state machine, one task at a time.
    FlowJumps,
    /// `execution_mode` in the spec (or `--mode`, which sets it).
    ExecutionMode,
    /// `enable_parallel = false`.
    ParallelDisabled,
    /// The command line or API asked for it.
    Requested,
    /// This task (the first such) declares `depends_on`.
    DependsOn(TaskName),
    /// `max_parallel_tasks` above 1.
    MaxParallel(u32),
    /// No dependencies declared and no parallelism asked for.
    NoDependencies,
}

impl std::fmt::Display for ModeDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            ModeReason::FlowJumps => f.write_str(
                "tasks jump with on_success/on_failure: one task at a time, following the jumps",
            ),
            ModeReason::ExecutionMode => write!(f, "execution_mode = \"{}\"", self.mode),
            ModeReason::ParallelDisabled => f.write_str("enable_parallel = false"),
            ModeReason::Requested => write!(
                f,
                "asked for on the command line (--mode, --workers/--max-parallel, \
                 ORDO_EXECUTION_MODE)"
            ),
            ModeReason::DependsOn(t) => write!(f, "task '{t}' declares depends_on"),
            ModeReason::MaxParallel(n) => write!(f, "max_parallel_tasks = {n}"),
            ModeReason::NoDependencies => f.write_str(
                "no task declares depends_on and no parallelism is asked for: file order",
            ),
        }
    }
}

/// `[settings] integration = { batch = 4 }`: how the integration queue integrates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSettings {
    /// Up to this many waiting tasks whose changed files do not overlap are merged onto the
    /// tip together and verified once (default 1: one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// `"off"` (default) or `"verified"`: a task may start on its dependencies' work once
    /// they passed their verify and stages, before they are integrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculate: Option<String>,
    /// The share of the job's budget speculative runs may discard (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculation_budget: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Upper bound on tasks of this job running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tasks: Option<u32>,
    /// Prompter's switch: `false` means sequential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_parallel: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<ExecutionMode>,
    /// Working directory for every task without its own `working_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Prompter: pause between a prompt task's agent finishing and its verify command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<Dur>,
    /// Prompter: retries for tasks that do not set `max_attempts` (attempts = retries + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_infinite_loops: bool,
    /// Cancel the rest of the job when a task fails for good.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fail_fast: bool,
    /// argv that runs prompt tasks, e.g. `["claude", "-p"]`; the prompt is appended as one
    /// argument. With `agent = "claude"` or `"codex"`, the program (and options) that stand
    /// for `claude` or `codex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_command: Option<Vec<String>>,
    /// Prompter's own name for the agent program (its mid-2025 versions): read only from
    /// Prompter files (no top-level `name`), where the loader turns it into `agent_command`
    /// with `agent = "claude"`; never written.
    #[serde(default, skip_serializing)]
    pub claude_command: Option<String>,
    /// How prompt tasks run: `claude` (the default), `codex`, or `command` (the default when
    /// only `agent_command` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentKind>,
    /// Budget of the whole job in US dollars, as agents report their cost: once spent, no
    /// further agent attempt starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Budget of the whole job in agent tokens (input and output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Counted semaphores, global across jobs: at most N tasks of a pool run at once. Prompt
    /// tasks use the pool named after their agent when one is declared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, u32>,
    /// Default timeout of tasks that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<Dur>,
    /// Environment added to every task (a task's own `env` wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `worktree`: every attempt in a git worktree of its own, integrated in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceMode>,
    /// The git repository the job changes (default: the working directory's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The integration branch (default `ordo/<job name>-<job8>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_branch: Option<String>,
    /// What the integration branch starts from (default `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Run at each new integration head (default: the task's `verify_command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_verify: Option<String>,
    /// Integrations a task may try (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_integration_attempts: Option<u32>,
    /// The integration queue: batches (`{ batch = 4 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<IntegrationSettings>,
    /// The model of prompt tasks that name none (the agent's own default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model of a task by its level (`high`, `medium`, `low`; `MODEL_LEVELS`), the level
    /// coming from its `complexity` or `priority` label (`spec::level`): how a TaskMaster
    /// file picks models without edits. A task's own `model` wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, String>,
    /// The reasoning effort of prompt tasks that name none: one of `EFFORTS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Where control goes after a task ends (Prompter's `on_success` / `on_failure`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Jump {
    Next,
    Stop,
    Retry,
    Repeat,
    /// Any other word names a task; validation rejects names that do not exist.
    Task(String),
}

impl From<String> for Jump {
    fn from(s: String) -> Jump {
        match s.as_str() {
            "next" => Jump::Next,
            "stop" => Jump::Stop,
            "retry" => Jump::Retry,
            "repeat" => Jump::Repeat,
            _ => Jump::Task(s),
        }
    }
}

impl From<Jump> for String {
    fn from(j: Jump) -> String {
        match j {
            Jump::Next => "next".into(),
            Jump::Stop => "stop".into(),
            Jump::Retry => "retry".into(),
            Jump::Repeat => "repeat".into(),
            Jump::Task(t) => t,
        }
    }
}

/// A task's `depends_on`: its dependencies, and whether the spec declared the field (an empty
/// list is a declaration too). Reads and writes like the `Vec` it wraps.
#[derive(Clone, Debug, Default, Eq)]
pub struct Deps {
    names: Vec<TaskName>,
    declared: bool,
}

impl Deps {
    /// Declared, possibly empty: `depends_on = []`.
    pub fn declared(names: Vec<TaskName>) -> Deps {
        Deps {
            names,
            declared: true,
        }
    }

    /// Whether the task says what it depends on (any dependency, or an empty list written).
    pub fn is_declared(&self) -> bool {
        self.declared || !self.names.is_empty()
    }

    /// Marks the (possibly empty) list as written by the spec.
    pub fn declare(&mut self) {
        self.declared = true;
    }

    fn is_absent(&self) -> bool {
        !self.is_declared()
    }
}

/// Equal when they name the same tasks and both are declared or both not.
impl PartialEq for Deps {
    fn eq(&self, other: &Deps) -> bool {
        self.names == other.names && self.is_declared() == other.is_declared()
    }
}

impl std::ops::Deref for Deps {
    type Target = Vec<TaskName>;
    fn deref(&self) -> &Vec<TaskName> {
        &self.names
    }
}

impl std::ops::DerefMut for Deps {
    fn deref_mut(&mut self) -> &mut Vec<TaskName> {
        &mut self.names
    }
}

impl From<Vec<TaskName>> for Deps {
    fn from(names: Vec<TaskName>) -> Deps {
        Deps {
            names,
            declared: false,
        }
    }
}

impl FromIterator<TaskName> for Deps {
    fn from_iter<I: IntoIterator<Item = TaskName>>(iter: I) -> Deps {
        Deps::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Deps {
    type Item = &'a TaskName;
    type IntoIter = std::slice::Iter<'a, TaskName>;
    fn into_iter(self) -> Self::IntoIter {
        self.names.iter()
    }
}

impl Serialize for Deps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Deps {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Deps, D::Error> {
        Vec::<TaskName>::deserialize(d).map(Deps::declared)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: TaskName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Run by `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Exec'd directly, no shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Given to `settings.agent_command` as one argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The agent that runs this prompt task (`settings.agent` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Prompter: continue the agent session of the task that ran before this one (its last
    /// dependency, else the task before it in the file).
    #[serde(default, skip_serializing_if = "is_false")]
    pub resume_previous_session: bool,
    /// This task's own budget (dollars, tokens) over all its attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The `settings.pools` semaphore it takes while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The agent's model (`claude --model`, `codex -m`); `settings.model` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Reasoning effort, one of `EFFORTS` (Codex's `model_reasoning_effort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Escalation ladder: attempt n runs model n of the list (the last one stays); wins over
    /// `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_command: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verify_success_code: i32,
    /// Remembers whether the field was written at all: an empty list still declares that the
    /// task depends on nothing, which makes the job parallel (`JobSpec::mode`).
    #[serde(default, skip_serializing_if = "Deps::is_absent")]
    pub depends_on: Deps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Retries after the first attempt; `max_attempts` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Every attempt counted: 3 = the first and two retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<Dur>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub exclusive: bool,
    /// Named mutexes: tasks sharing a lock never overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_required: Option<f64>,
    /// Megabytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_required: Option<u64>,
    /// Worker pool; `default` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_failure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Jump>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Jump>,
    /// Free-form metadata; foreign formats keep their extra fields here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Write-set: globs of the files it may change; tasks whose sets may overlap never run at
    /// the same time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// A task's level for `settings.models` (one of `MODEL_LEVELS`): from a numeric `complexity`
/// label (TaskMaster's score: 7 and above `high`, 4 to 6 `medium`, 3 and below `low`), else
/// from its `priority` label's word (`critical`/`urgent`/`highest` count as `high`, `normal` as
/// `medium`, `lowest` as `low`); `None` when neither says.
pub fn level(t: &TaskSpec) -> Option<&'static str> {
    let score = t
        .labels
        .get(COMPLEXITY_LABEL)
        .and_then(|c| c.trim().parse::<f64>().ok())
        .filter(|c| c.is_finite());
    if let Some(c) = score {
        return Some(if c >= 7.0 {
            "high"
        } else if c >= 4.0 {
            "medium"
        } else {
            "low"
        });
    }
    let word = t.labels.get(PRIORITY_LABEL)?.trim().to_ascii_lowercase();
    match word.as_str() {
        "critical" | "urgent" | "highest" | "high" => Some("high"),
        "medium" | "normal" => Some("medium"),
        "low" | "lowest" => Some("low"),
        _ => None,
    }
}

/// What a task runs, resolved from `command` / `argv` / `prompt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Program {
    Shell(String),
    Argv(Vec<String>),
}

/// Label holding a task's title (TaskMaster's `title`), shown next to its name.
pub const TITLE_LABEL: &str = "title";

/// Titles longer than this many characters are cut (with `…`) where a task is named.
const TITLE_MAX: usize = 80;

/// How people see a task: its name, and its title when it has one (`3 (Set up the database)`).
pub fn task_label(name: &str, title: Option<&str>) -> String {
    match title {
        Some(t) => format!("{name} ({t})"),
        None => name.to_string(),
    }
}

impl TaskSpec {
    /// The task's title, when its format gave one apart from its name (a TaskMaster task's
    /// `title`: its name is the id): one line, at most 80 characters.
    pub fn title(&self) -> Option<String> {
        let t = self.labels.get(TITLE_LABEL)?;
        let line: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() || line == self.name.as_str() {
            return None;
        }
        Some(if line.chars().count() > TITLE_MAX {
            let mut cut: String = line.chars().take(TITLE_MAX - 1).collect();
            cut.push('…');
            cut
        } else {
            line
        })
    }

    /// The task's name with its title: `3 (Set up the database)`, or the name alone.
    pub fn label(&self) -> String {
        task_label(self.name.as_str(), self.title().as_deref())
    }

    /// A task running `sh -c command` with every other field at its default.
    pub fn shell(name: &str, command: &str) -> TaskSpec {
        TaskSpec {
            name: TaskName::new(name).expect("valid task name"),
            command: Some(command.to_string()),
            ..TaskSpec::empty(TaskName::new(name).expect("valid task name"))
        }
    }

    pub fn empty(name: TaskName) -> TaskSpec {
        TaskSpec {
            name,
            description: None,
            command: None,
            argv: None,
            prompt: None,
            agent: None,
            system_prompt: None,
            resume_previous_session: false,
            max_cost_usd: None,
            max_tokens: None,
            pool: None,
            model: None,
            effort: None,
            escalate: None,
            verify_command: None,
            verify_success_code: 0,
            depends_on: Deps::default(),
            timeout: None,
            retries: None,
            max_attempts: None,
            retry_backoff: None,
            priority: 0,
            exclusive: false,
            locks: Vec::new(),
            cpu_required: None,
            memory_required: None,
            queue: None,
            env: BTreeMap::new(),
            working_dir: None,
            allow_failure: false,
            on_success: None,
            on_failure: None,
            labels: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    pub fn is_prompt(&self) -> bool {
        self.prompt.is_some()
    }
}

impl JobSpec {
    /// The mode this job runs in; see `mode_decision`.
    pub fn mode(&self, requested: Option<ExecutionMode>) -> ExecutionMode {
        self.mode_decision(requested).mode
    }

    /// The mode this job runs in and why, the one rule the engine, `ordo plan` and `ordo
    /// validate` share. `requested` is what the command line or API asked for when it asked
    /// (`--workers`/`--max-parallel` above 1, `ORDO_EXECUTION_MODE`; `--mode` sets the spec's
    /// `execution_mode`). In order: flow jumps run one task at a time; the spec's
    /// `execution_mode`; `enable_parallel = false`; any task declaring `depends_on` (an empty
    /// list counts) or `max_parallel_tasks` above 1 make it parallel; then the request; else
    /// sequential, in file order (Prompter's rule: parallel only when dependencies are
    /// defined; `enable_parallel = true` alone does not change it).
    pub fn mode_decision(&self, requested: Option<ExecutionMode>) -> ModeDecision {
        use ExecutionMode::{Parallel, Sequential};
        let (mode, reason) = if self.uses_flow_jumps() {
            (Sequential, ModeReason::FlowJumps)
        } else if let Some(m) = self.settings.execution_mode {
            (m, ModeReason::ExecutionMode)
        } else if self.settings.enable_parallel == Some(false) {
            (Sequential, ModeReason::ParallelDisabled)
        } else if let Some(t) = self.tasks.iter().find(|t| t.depends_on.is_declared()) {
            (Parallel, ModeReason::DependsOn(t.name.clone()))
        } else if let Some(n) = self.settings.max_parallel_tasks.filter(|&n| n > 1) {
            (Parallel, ModeReason::MaxParallel(n))
        } else if let Some(m) = requested {
            (m, ModeReason::Requested)
        } else {
            (Sequential, ModeReason::NoDependencies)
        };
        ModeDecision { mode, reason }
    }

    /// A job runs as a Prompter state machine (one task at a time, following jumps) when any
    /// task jumps somewhere other than the DAG's natural flow: to a task, `stop` or `repeat`.
    pub fn uses_flow_jumps(&self) -> bool {
        self.tasks.iter().any(|t| {
            [&t.on_success, &t.on_failure]
                .into_iter()
                .flatten()
                .any(|j| matches!(j, Jump::Task(_) | Jump::Stop | Jump::Repeat))
        })
    }

    /// The transitions of a flow-jump job, as `plan` and `graph` draw them: for each task, where
    /// control goes after it succeeds (`on_success`, default the next task) and after it fails
    /// for good (`on_failure` when it names a task, `next` or `repeat`; `stop` and `retry`
    /// end the job). `declared` tells a written jump from the default.
    pub fn flow_edges(&self) -> Vec<FlowEdge> {
        let n = self.tasks.len();
        let target = |from: usize, jump: &Jump| match jump {
            Jump::Next => Some(from + 1).filter(|&t| t < n),
            Jump::Stop | Jump::Retry => None,
            Jump::Repeat => Some(from),
            Jump::Task(name) => self.tasks.iter().position(|t| t.name.as_str() == name),
        };
        let mut out = Vec::new();
        for (from, t) in self.tasks.iter().enumerate() {
            let success = t.on_success.clone().unwrap_or(Jump::Next);
            if let Some(to) = target(from, &success) {
                let declared = t.on_success.is_some();
                out.push(FlowEdge {
                    from,
                    to,
                    success: true,
                    declared,
                });
            }
            if let Some(failure) = &t.on_failure
                && let Some(to) = target(from, failure)
            {
                out.push(FlowEdge {
                    from,
                    to,
                    success: false,
                    declared: true,
                });
            }
        }
        out
    }

    pub fn max_attempts(&self, t: &TaskSpec) -> u32 {
        t.max_attempts
            .or(t.retries.map(|r| r.saturating_add(1)))
            .or(self.settings.max_retries.map(|r| r.saturating_add(1)))
            .unwrap_or(DEFAULT_MAX_ATTEMPTS)
            .max(1)
    }

    pub fn timeout(&self, t: &TaskSpec) -> Option<Duration> {
        t.timeout.or(self.settings.timeout).map(|d| d.0)
    }

    pub fn retry_backoff(&self, t: &TaskSpec) -> Duration {
        t.retry_backoff
            .or(self.settings.retry_backoff)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_RETRY_BACKOFF)
    }

    /// Attempts run in git worktrees (docs/design.md, "Agent workspaces").
    pub fn uses_worktrees(&self) -> bool {
        self.settings.workspace == Some(WorkspaceMode::Worktree)
    }

    pub fn max_integration_attempts(&self) -> u32 {
        self.settings
            .max_integration_attempts
            .unwrap_or(DEFAULT_MAX_INTEGRATION_ATTEMPTS)
            .max(1)
    }

    /// Tasks one integration may take (`integration.batch`, default 1).
    pub fn integration_batch(&self) -> usize {
        let batch = self.settings.integration.as_ref().and_then(|i| i.batch);
        batch.unwrap_or(1).max(1) as usize
    }

    /// `integration.speculate = "verified"`: the share of the job's budget (of its runs,
    /// without a budget) that discarded speculative runs may take (`speculation_budget`,
    /// default 0.2). `None`: no speculation.
    pub fn speculation(&self) -> Option<f64> {
        let i = self.settings.integration.as_ref()?;
        (i.speculate.as_deref() == Some("verified") && self.uses_worktrees())
            .then(|| i.speculation_budget.unwrap_or(0.2))
    }

    /// The command run at a new integration head for task `t`, if any.
    pub fn integration_verify(&self, t: &TaskSpec) -> Option<String> {
        self.settings
            .integration_verify
            .clone()
            .or_else(|| t.verify_command.clone())
    }

    pub fn iteration_cap(&self) -> Option<u32> {
        (!self.settings.allow_infinite_loops).then_some(DEFAULT_ITERATION_CAP)
    }

    /// The agent profile of the job's prompt tasks.
    pub fn agent(&self) -> AgentKind {
        match (self.settings.agent, &self.settings.agent_command) {
            (Some(kind), _) => kind,
            (None, Some(_)) => AgentKind::Command,
            (None, None) => AgentKind::Claude,
        }
    }

    /// The label (`TaskSpec::label`) of the task named `name`, or the name when it has none.
    pub fn label_of(&self, name: &str) -> String {
        self.tasks
            .iter()
            .find(|t| t.name.as_str() == name)
            .map_or_else(|| name.to_string(), TaskSpec::label)
    }

    /// The agent whose output a task's attempts print, if it is a prompt task run by an agent
    /// profile that ordo reads (claude, codex).
    pub fn agent_of(&self, t: &TaskSpec) -> Option<AgentKind> {
        let kind = self.agent_for(t);
        (t.is_prompt() && kind != AgentKind::Command).then_some(kind)
    }

    /// The agent profile that runs prompt task `t`: its own `agent`, else the job's.
    pub fn agent_for(&self, t: &TaskSpec) -> AgentKind {
        t.agent.unwrap_or_else(|| self.agent())
    }

    /// The pool task `t` takes and its size: its own `pool`, else (a prompt task) the pool
    /// named after its agent when `settings.pools` declares one.
    pub fn pool(&self, t: &TaskSpec) -> Option<(&str, u32)> {
        let name = match &t.pool {
            Some(p) => p.as_str(),
            None if t.is_prompt() => self.agent_for(t).name(),
            None => return None,
        };
        let (name, size) = self.settings.pools.get_key_value(name)?;
        Some((name.as_str(), *size))
    }

    /// The program a task runs, or `None` if it has none (validation rejects that).
    pub fn program(&self, t: &TaskSpec) -> Option<Program> {
        self.program_with(t, None, None, self.model(t, 1))
    }

    /// The model attempt `n` (from 1) of prompt task `t` asks for: the `escalate` ladder's
    /// n-th (its last past the end), else the task's `model`, else `settings.models` at the
    /// task's level (`level`), else the job's `model`; `None` for the agent's default, and for
    /// tasks that run no agent.
    pub fn model<'a>(&'a self, t: &'a TaskSpec, n: u32) -> Option<&'a str> {
        if !t.is_prompt() {
            return None;
        }
        if let Some(ladder) = t.escalate.as_deref().filter(|l| !l.is_empty()) {
            let i = (n.max(1) - 1) as usize;
            return Some(ladder[i.min(ladder.len() - 1)].as_str());
        }
        t.model
            .as_deref()
            .or_else(|| {
                let level = level(t)?;
                self.settings.models.get(level).map(String::as_str)
            })
            .or(self.settings.model.as_deref())
    }

    /// The reasoning effort of prompt task `t`: its own, else the job's.
    pub fn effort<'a>(&'a self, t: &'a TaskSpec) -> Option<&'a str> {
        t.effort.as_deref().or(self.settings.effort.as_deref())
    }

    /// The program of one attempt: for a prompt task, the agent running `model` (its default
    /// when `None`), resuming `session` when given, with `prompt` instead of the task's own when
    /// given (the verify loop's next prompt).
    pub fn program_with(
        &self,
        t: &TaskSpec,
        session: Option<&str>,
        prompt: Option<&str>,
        model: Option<&str>,
    ) -> Option<Program> {
        if let Some(c) = &t.command {
            return Some(Program::Shell(c.clone()));
        }
        if let Some(a) = &t.argv {
            return Some(Program::Argv(a.clone()));
        }
        let prompt = prompt.or(t.prompt.as_deref())?;
        Some(Program::Argv(
            self.agent_call(t, model).argv(session, prompt),
        ))
    }

    /// How prompt task `t` calls its agent running `model`: what an executor resumes the
    /// implementer's session with after a stage asks for changes.
    pub fn agent_call(&self, t: &TaskSpec, model: Option<&str>) -> AgentCall {
        let kind = self.agent_for(t);
        AgentCall {
            kind,
            base: self.agent_base(kind),
            model: model.map(str::to_string),
            effort: self.effort(t).map(str::to_string),
            system: t.system_prompt.clone(),
            escalate: Vec::new(),
        }
    }

    /// How an agent stage calls its reviewer: its own agent, model and effort, else the job's.
    pub fn stage_call(&self, stage: &crate::gates::StageSpec) -> AgentCall {
        let kind = stage.agent.unwrap_or_else(|| self.agent());
        AgentCall {
            kind,
            base: self.agent_base(kind),
            model: stage.model.clone().or_else(|| self.settings.model.clone()),
            effort: stage
                .effort
                .clone()
                .or_else(|| self.settings.effort.clone()),
            system: None,
            escalate: Vec::new(),
        }
    }

    /// The program (and options) that stand for agent `kind`: `agent_command` for the job's
    /// own agent, else the agent's program.
    fn agent_base(&self, kind: AgentKind) -> Vec<String> {
        match (&self.settings.agent_command, kind) {
            (Some(c), k) if k == self.agent() => c.clone(),
            (_, AgentKind::Claude) => vec![CLAUDE_PROGRAM.to_string()],
            (_, AgentKind::Codex) => vec![CODEX_PROGRAM.to_string()],
            (c, AgentKind::Command) => c.clone().unwrap_or_default(),
        }
    }

    /// The stages task `t` goes through, in the order the spec gives them.
    pub fn stages_of<'a>(
        &'a self,
        t: &'a TaskSpec,
    ) -> impl Iterator<Item = &'a crate::gates::StageSpec> + 'a {
        self.stages
            .iter()
            .filter(|s| s.selects(&t.labels, t.is_prompt()))
    }

    /// The budgets of a job: dollars and tokens, each when set.
    pub fn budget(&self) -> (Option<f64>, Option<u64>) {
        (self.settings.max_cost_usd, self.settings.max_tokens)
    }

    /// Environment of a task: the job's, then the task's own.
    pub fn env(&self, t: &TaskSpec) -> BTreeMap<String, String> {
        let mut env = self.settings.env.clone();
        env.extend(t.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    pub fn working_dir(&self, t: &TaskSpec) -> Option<String> {
        t.working_dir
            .clone()
            .or_else(|| self.settings.working_directory.clone())
    }

    pub fn queue<'a>(&self, t: &'a TaskSpec) -> &'a str {
        t.queue.as_deref().unwrap_or(crate::names::DEFAULT_QUEUE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_title_label() {
        let mut t = TaskSpec::shell("3", "true");
        assert_eq!((t.title(), t.label()), (None, "3".to_string()));
        t.labels
            .insert(TITLE_LABEL.into(), "  Set up\n the   database ".into());
        assert_eq!(t.title().as_deref(), Some("Set up the database"));
        assert_eq!(t.label(), "3 (Set up the database)");
        t.labels.insert(TITLE_LABEL.into(), "3".into());
        assert_eq!(t.title(), None);
        t.labels.insert(TITLE_LABEL.into(), "x".repeat(100));
        assert_eq!(t.title().unwrap().chars().count(), 80);
    }

    #[test]
    fn canonical_rejects_unknown_fields() {
        let err = serde_json::from_str::<JobSpec>(
            r#"{"tasks":[{"name":"a","command":"true","comand":"x"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("comand"), "{err}");
    }

    #[test]
    fn attempts_follow_precedence() {
        let mut job = JobSpec::default();
        let mut t = TaskSpec::shell("a", "true");
        assert_eq!(job.max_attempts(&t), 1);
        job.settings.max_retries = Some(3);
        assert_eq!(job.max_attempts(&t), 4);
        t.retries = Some(1);
        assert_eq!(job.max_attempts(&t), 2);
        t.max_attempts = Some(5);
        assert_eq!(job.max_attempts(&t), 5);
    }

    #[test]
    fn prompt_is_one_argument() {
        let mut job = JobSpec::default();
        job.settings.agent_command = Some(vec!["agent".into(), "-p".into()]);
        let mut t = TaskSpec::empty(TaskName::new("p").unwrap());
        t.prompt = Some("fix it; rm -rf / $(x)".into());
        assert_eq!(
            job.program(&t),
            Some(Program::Argv(vec![
                "agent".into(),
                "-p".into(),
                "fix it; rm -rf / $(x)".into()
            ]))
        );
    }

    #[test]
    fn mode_precedence() {
        use ExecutionMode::{Parallel, Sequential};
        let mut job = JobSpec {
            tasks: vec![TaskSpec::shell("a", "true"), TaskSpec::shell("b", "true")],
            ..JobSpec::default()
        };
        // Nothing declared, nothing asked: sequential, even with Prompter's default switch.
        assert_eq!(job.mode(None), Sequential);
        job.settings.enable_parallel = Some(true);
        assert_eq!(job.mode(None), Sequential);
        assert_eq!(job.mode_decision(None).reason, ModeReason::NoDependencies);
        // The command line asks.
        assert_eq!(job.mode(Some(Parallel)), Parallel);
        // An empty depends_on declares.
        let mut declared = job.clone();
        declared.tasks[1].depends_on = Deps::declared(Vec::new());
        assert_eq!(
            declared.mode_decision(None).reason,
            ModeReason::DependsOn(TaskName::new("b").unwrap())
        );
        // A request is a default: the spec's own declaration wins.
        assert_eq!(declared.mode(Some(Sequential)), Parallel);
        let mut wide = job.clone();
        wide.settings.max_parallel_tasks = Some(1);
        assert_eq!(wide.mode(None), Sequential);
        wide.settings.max_parallel_tasks = Some(3);
        assert_eq!(wide.mode(None), Parallel);
        // enable_parallel = false forces sequential over requests and dependencies.
        declared.settings.enable_parallel = Some(false);
        assert_eq!(declared.mode(Some(Parallel)), Sequential);
        declared.settings.execution_mode = Some(Parallel);
        assert_eq!(declared.mode(Some(Sequential)), Parallel);
        // Flow jumps: a state machine.
        declared.tasks[0].on_success = Some(Jump::Stop);
        assert_eq!(declared.mode_decision(None).reason, ModeReason::FlowJumps);
        assert_eq!(declared.mode(None), Sequential);
    }

    #[test]
    fn a_task_s_own_agent_wins_over_the_job_s() {
        let mut job = JobSpec::default();
        job.settings.agent_command = Some(vec!["/stub/claude".into()]);
        job.settings.agent = Some(AgentKind::Claude);
        job.settings.pools = [("codex".to_string(), 1), ("claude".to_string(), 4)].into();
        let mut a = TaskSpec::empty(TaskName::new("a").unwrap());
        a.prompt = Some("p".into());
        let mut b = a.clone();
        b.agent = Some(AgentKind::Codex);
        assert_eq!(job.agent_of(&a), Some(AgentKind::Claude));
        assert_eq!(job.agent_of(&b), Some(AgentKind::Codex));
        assert_eq!(job.pool(&a), Some(("claude", 4)));
        assert_eq!(job.pool(&b), Some(("codex", 1)));
        assert_eq!(job.agent_call(&a, None).base, ["/stub/claude"]);
        let call = job.agent_call(&b, Some("o3"));
        assert_eq!(
            (call.kind, call.base),
            (AgentKind::Codex, vec!["codex".into()])
        );
        assert_eq!(
            job.program(&b),
            Some(Program::Argv(
                ["codex", "exec", "--json", "p"].map(String::from).to_vec()
            ))
        );
        // A command task runs no agent whatever it says.
        let sh = TaskSpec {
            agent: Some(AgentKind::Codex),
            ..TaskSpec::shell("sh", "true")
        };
        assert_eq!(job.agent_of(&sh), None);
    }

    #[test]
    fn complexity_then_priority_pick_a_model_from_the_mapping() {
        let mut job = JobSpec::default();
        job.settings.model = Some("default".into());
        job.settings.models = [
            ("high".to_string(), "opus".to_string()),
            ("medium".to_string(), "sonnet".to_string()),
            ("low".to_string(), "haiku".to_string()),
        ]
        .into();
        let with = |labels: &[(&str, &str)]| {
            let mut t = TaskSpec::empty(TaskName::new("t").unwrap());
            t.prompt = Some("p".into());
            t.labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            t
        };
        let model = |t: &TaskSpec| job.model(t, 1).map(str::to_string);
        for (c, m) in [
            ("10", "opus"),
            ("7", "opus"),
            ("6", "sonnet"),
            ("4", "sonnet"),
        ] {
            assert_eq!(
                model(&with(&[("complexity", c)])).as_deref(),
                Some(m),
                "{c}"
            );
        }
        for (c, m) in [("3", "haiku"), ("1", "haiku")] {
            assert_eq!(
                model(&with(&[("complexity", c)])).as_deref(),
                Some(m),
                "{c}"
            );
        }
        // The score wins over the priority; a priority word alone picks too.
        let both = with(&[("complexity", "2"), ("priority", "high")]);
        assert_eq!(model(&both).as_deref(), Some("haiku"));
        assert_eq!(
            model(&with(&[("priority", "High")])).as_deref(),
            Some("opus")
        );
        assert_eq!(
            model(&with(&[("priority", "medium")])).as_deref(),
            Some("sonnet")
        );
        assert_eq!(
            model(&with(&[("complexity", "n/a")])).as_deref(),
            Some("default")
        );
        assert_eq!(model(&with(&[])).as_deref(), Some("default"));
        // A task's own model wins; a ladder wins over it.
        let mut own = with(&[("complexity", "9")]);
        own.model = Some("mine".into());
        assert_eq!(model(&own).as_deref(), Some("mine"));
        own.escalate = Some(vec!["a".into(), "b".into()]);
        assert_eq!(job.model(&own, 2), Some("b"));
        // A level the mapping lacks falls back to the job's model.
        job.settings.models.remove("low");
        let low = with(&[("priority", "low")]);
        assert_eq!(job.model(&low, 1), Some("default"));
    }

    #[test]
    fn declared_dependencies_survive_a_round_trip() {
        let job: JobSpec = serde_json::from_str(
            r#"{"tasks":[{"name":"a","command":"true","depends_on":[]},
                         {"name":"b","command":"true"}]}"#,
        )
        .unwrap();
        assert!(job.tasks[0].depends_on.is_declared());
        assert!(!job.tasks[1].depends_on.is_declared());
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(json.matches("depends_on").count(), 1, "{json}");
        let back: JobSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, job);
        let packed = rmp_serde::to_vec_named(&job).unwrap();
        assert_eq!(rmp_serde::from_slice::<JobSpec>(&packed).unwrap(), job);
    }

    #[test]
    fn revision_rounds_take_the_rungs_above_the_attempts() {
        let call = AgentCall {
            kind: AgentKind::Claude,
            base: vec!["claude".into()],
            model: Some("a".into()),
            effort: None,
            system: None,
            escalate: vec!["b".into(), "c".into()],
        };
        let model = |r| call.for_round(r).model.unwrap();
        assert_eq!(
            (model(1), model(2), model(5)),
            ("b".into(), "c".into(), "c".into())
        );
        let flat = AgentCall {
            escalate: Vec::new(),
            ..call.clone()
        };
        assert_eq!(flat.for_round(3).model.as_deref(), Some("a"));
    }
}
