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
/// The program of each agent profile when `agent_command` does not name one.
pub const CLAUDE_PROGRAM: &str = "claude";
pub const CODEX_PROGRAM: &str = "codex";
/// Iteration cap of a flow-jump job unless `allow_infinite_loops`.
pub const DEFAULT_ITERATION_CAP: u32 = 1000;
/// Integrations a task may try (conflicts and failed integration verifies re-run it).
pub const DEFAULT_MAX_INTEGRATION_ATTEMPTS: u32 = 3;

/// Which agent runs a job's prompt tasks, and so how its output is read (DESIGN §11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// Claude Code: `claude -p --output-format json [--append-system-prompt S] [--resume ID]
    /// PROMPT`, one JSON object on stdout (result, session, cost, tokens).
    #[default]
    Claude,
    /// Codex: `codex exec --json [resume ID] PROMPT`, JSON events on stdout.
    Codex,
    /// Any program: `agent_command` with the prompt as its last argument; its output is the
    /// task's output as it is.
    Command,
}

impl AgentKind {
    pub const ALL: [AgentKind; 3] = [AgentKind::Claude, AgentKind::Codex, AgentKind::Command];

    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Codex => "codex",
            AgentKind::Command => "command",
        }
    }

    /// The kind called `name` (`AgentKind::name`).
    pub fn named(name: &str) -> Option<AgentKind> {
        AgentKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

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
    /// argument. With `agent = "claude"` or `"codex"`, the program (and options) that stand
    /// for `claude` or `codex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_command: Option<Vec<String>>,
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
            system_prompt: None,
            resume_previous_session: false,
            max_cost_usd: None,
            max_tokens: None,
            pool: None,
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

    /// The agent profile of the job's prompt tasks.
    pub fn agent(&self) -> AgentKind {
        match (self.settings.agent, &self.settings.agent_command) {
            (Some(kind), _) => kind,
            (None, Some(_)) => AgentKind::Command,
            (None, None) => AgentKind::Claude,
        }
    }

    /// The agent whose output a task's attempts print, if it is a prompt task run by an agent
    /// profile that ordo reads (claude, codex).
    /// The label (`TaskSpec::label`) of the task named `name`, or the name when it has none.
    pub fn label_of(&self, name: &str) -> String {
        self.tasks
            .iter()
            .find(|t| t.name.as_str() == name)
            .map_or_else(|| name.to_string(), TaskSpec::label)
    }

    pub fn agent_of(&self, t: &TaskSpec) -> Option<AgentKind> {
        (t.is_prompt() && self.agent() != AgentKind::Command).then(|| self.agent())
    }

    /// The pool task `t` takes and its size: its own `pool`, else (a prompt task) the pool
    /// named after its agent when `settings.pools` declares one.
    pub fn pool(&self, t: &TaskSpec) -> Option<(&str, u32)> {
        let name = match &t.pool {
            Some(p) => p.as_str(),
            None if t.is_prompt() => self.agent().name(),
            None => return None,
        };
        let (name, size) = self.settings.pools.get_key_value(name)?;
        Some((name.as_str(), *size))
    }

    /// The program a task runs, or `None` if it has none (validation rejects that).
    pub fn program(&self, t: &TaskSpec) -> Option<Program> {
        self.program_with(t, None, None)
    }

    /// The program of one attempt: for a prompt task, the agent resuming `session` when given,
    /// with `prompt` instead of the task's own when given (the verify loop's next prompt).
    pub fn program_with(
        &self,
        t: &TaskSpec,
        session: Option<&str>,
        prompt: Option<&str>,
    ) -> Option<Program> {
        if let Some(c) = &t.command {
            return Some(Program::Shell(c.clone()));
        }
        if let Some(a) = &t.argv {
            return Some(Program::Argv(a.clone()));
        }
        let prompt = prompt.or(t.prompt.as_deref())?;
        let base = |program: &str| {
            self.settings
                .agent_command
                .clone()
                .unwrap_or_else(|| vec![program.to_string()])
        };
        let with_system = || match &t.system_prompt {
            Some(sys) => format!("{sys}\n\n{prompt}"),
            None => prompt.to_string(),
        };
        let argv = match self.agent() {
            AgentKind::Claude => {
                let mut argv = base(CLAUDE_PROGRAM);
                argv.extend(["-p", "--output-format", "json"].map(String::from));
                if let Some(sys) = &t.system_prompt {
                    argv.extend(["--append-system-prompt".to_string(), sys.clone()]);
                }
                if let Some(id) = session {
                    argv.extend(["--resume".to_string(), id.to_string()]);
                }
                argv.push(prompt.to_string());
                argv
            }
            AgentKind::Codex => {
                let mut argv = base(CODEX_PROGRAM);
                argv.extend(["exec", "--json"].map(String::from));
                if let Some(id) = session {
                    argv.extend(["resume".to_string(), id.to_string()]);
                }
                argv.push(with_system());
                argv
            }
            AgentKind::Command => {
                let mut argv = self.settings.agent_command.clone().unwrap_or_default();
                argv.push(with_system());
                argv
            }
        };
        Some(Program::Argv(argv))
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
        let mut job = JobSpec::default();
        assert_eq!(job.mode(ExecutionMode::Parallel), ExecutionMode::Parallel);
        job.settings.enable_parallel = Some(false);
        assert_eq!(job.mode(ExecutionMode::Parallel), ExecutionMode::Sequential);
        job.settings.execution_mode = Some(ExecutionMode::Parallel);
        assert_eq!(job.mode(ExecutionMode::Sequential), ExecutionMode::Parallel);
    }
}
