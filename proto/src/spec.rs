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

use crate::duration::Dur;
use crate::ids::TaskName;

/// Default attempts when neither the task nor the settings say: one, no retries (as Airflow).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1;
/// Default first retry delay; doubled for each further attempt.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Default agent for prompt tasks: the prompt is passed as one extra argument.
pub const DEFAULT_AGENT_COMMAND: &[&str] = &["claude", "-p"];
/// Iteration cap of a flow-jump job unless `allow_infinite_loops`.
pub const DEFAULT_ITERATION_CAP: u32 = 1000;
/// Integrations a task may try (conflicts and failed integration verifies re-run it).
pub const DEFAULT_MAX_INTEGRATION_ATTEMPTS: u32 = 3;

/// Where a job's attempts run (DESIGN §10).
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
    /// argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_command: Option<Vec<String>>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_command: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verify_success_code: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TaskName>,
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

/// What a task runs, resolved from `command` / `argv` / `prompt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Program {
    Shell(String),
    Argv(Vec<String>),
}

impl TaskSpec {
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
            system_prompt: None,
            verify_command: None,
            verify_success_code: 0,
            depends_on: Vec::new(),
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
    /// Sequential when the spec says so (either spelling), else `default_mode`.
    pub fn mode(&self, default_mode: ExecutionMode) -> ExecutionMode {
        match (self.settings.execution_mode, self.settings.enable_parallel) {
            (Some(m), _) => m,
            (None, Some(false)) => ExecutionMode::Sequential,
            (None, Some(true)) => ExecutionMode::Parallel,
            (None, None) => default_mode,
        }
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

    /// Attempts run in git worktrees (DESIGN §10).
    pub fn uses_worktrees(&self) -> bool {
        self.settings.workspace == Some(WorkspaceMode::Worktree)
    }

    pub fn max_integration_attempts(&self) -> u32 {
        self.settings
            .max_integration_attempts
            .unwrap_or(DEFAULT_MAX_INTEGRATION_ATTEMPTS)
            .max(1)
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

    /// The program a task runs, or `None` if it has none (validation rejects that).
    pub fn program(&self, t: &TaskSpec) -> Option<Program> {
        if let Some(c) = &t.command {
            return Some(Program::Shell(c.clone()));
        }
        if let Some(a) = &t.argv {
            return Some(Program::Argv(a.clone()));
        }
        let prompt = t.prompt.as_ref()?;
        let mut argv: Vec<String> = match &self.settings.agent_command {
            Some(a) => a.clone(),
            None => DEFAULT_AGENT_COMMAND
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let text = match &t.system_prompt {
            Some(sys) => format!("{sys}\n\n{prompt}"),
            None => prompt.clone(),
        };
        argv.push(text);
        Some(Program::Argv(argv))
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
        let mut job = JobSpec::default();
        assert_eq!(job.mode(ExecutionMode::Parallel), ExecutionMode::Parallel);
        job.settings.enable_parallel = Some(false);
        assert_eq!(job.mode(ExecutionMode::Parallel), ExecutionMode::Sequential);
        job.settings.execution_mode = Some(ExecutionMode::Parallel);
        assert_eq!(job.mode(ExecutionMode::Sequential), ExecutionMode::Parallel);
    }
}
