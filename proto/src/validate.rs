//! Validation: turns a `JobSpec` into a `Dag` or into every error it has.
//!
//! Errors are data naming the job's tasks (`Cycle { path }`, `UnknownDependency { task, dep }`);
//! the CLI adds file, line and column. Validation is pure and all-or-nothing: a spec that fails
//! it is never stored or run.

use std::collections::HashMap;

use crate::dag::Dag;
use crate::ids::TaskName;
use crate::names::{MAX_ATTEMPTS, MAX_STAGE_ROUNDS, MAX_TASKS};
use crate::spec::{AgentKind, JobSpec, Jump, MODEL_LEVELS};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("job has no tasks")]
    NoTasks,
    #[error("job has {count} tasks; at most {max} are accepted")]
    TooManyTasks { count: usize, max: usize },
    #[error("task '{task}' is defined more than once")]
    DuplicateTask { task: TaskName },
    #[error("task '{task}' depends on unknown task '{dep}'")]
    UnknownDependency { task: TaskName, dep: String },
    #[error("dependency cycle: {} (each must finish before the next)", join_path(.path))]
    Cycle { path: Vec<TaskName> },
    #[error("task '{task}' has nothing to run: give it a command, argv or prompt")]
    NoProgram { task: TaskName },
    #[error("task '{task}' sets more than one of command, argv and prompt")]
    ConflictingProgram { task: TaskName },
    #[error("task '{task}' has an empty {field}")]
    Empty { task: TaskName, field: &'static str },
    #[error("task '{task}' jumps {on} to unknown task '{target}'")]
    UnknownJump {
        task: TaskName,
        on: &'static str,
        target: String,
    },
    #[error("task '{task}': {message}")]
    BadValue { task: TaskName, message: String },
    #[error("settings: {message}")]
    BadSetting { message: String },
    #[error("job name {name:?}: {message}")]
    BadJobName { name: String, message: &'static str },
    /// A `[[stages]]` entry (`index` in the spec's list, from 0) that cannot run.
    #[error("stage {}: {message}", stage_label(.stage, *.index))]
    BadStage {
        index: usize,
        stage: String,
        message: String,
    },
}

impl Error {
    /// The task an error is about, for locating it in the source file.
    pub fn task(&self) -> Option<&TaskName> {
        match self {
            Error::DuplicateTask { task }
            | Error::UnknownDependency { task, .. }
            | Error::NoProgram { task }
            | Error::ConflictingProgram { task }
            | Error::Empty { task, .. }
            | Error::UnknownJump { task, .. }
            | Error::BadValue { task, .. } => Some(task),
            Error::Cycle { path } => path.first(),
            Error::NoTasks
            | Error::TooManyTasks { .. }
            | Error::BadSetting { .. }
            | Error::BadJobName { .. }
            | Error::BadStage { .. } => None,
        }
    }

    /// The stage an error is about (its index in `JobSpec::stages`), for locating it.
    pub fn stage(&self) -> Option<usize> {
        match self {
            Error::BadStage { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// How an error names a stage: `'review'`, or `#2` (from 1) when it has no name.
fn stage_label(name: &str, index: usize) -> String {
    if name.trim().is_empty() {
        format!("#{}", index + 1)
    } else {
        format!("'{name}'")
    }
}

fn join_path(path: &[TaskName]) -> String {
    let mut names: Vec<&str> = path.iter().map(TaskName::as_str).collect();
    if let Some(first) = names.first().copied() {
        names.push(first);
    }
    names.join(" → ")
}

/// Checks everything about a spec that does not need I/O and builds its graph.
pub fn validate(spec: &JobSpec) -> Result<Dag, Vec<Error>> {
    let mut errors = Vec::new();
    let n = spec.tasks.len();
    if n == 0 {
        return Err(vec![Error::NoTasks]);
    }
    if n > MAX_TASKS {
        return Err(vec![Error::TooManyTasks {
            count: n,
            max: MAX_TASKS,
        }]);
    }
    check_job_name(&spec.name, &mut errors);
    check_settings(spec, &mut errors);
    check_notify(spec, &mut errors);
    check_stages(spec, &mut errors);

    let mut index: HashMap<&str, u32> = HashMap::with_capacity(n);
    for (i, t) in spec.tasks.iter().enumerate() {
        if index.insert(t.name.as_str(), i as u32).is_some() {
            errors.push(Error::DuplicateTask {
                task: t.name.clone(),
            });
        }
    }

    let mut deps: Vec<Vec<u32>> = Vec::with_capacity(n);
    for (i, t) in spec.tasks.iter().enumerate() {
        check_task(spec, t, &index, &mut errors);
        let mut ds: Vec<u32> = Vec::with_capacity(t.depends_on.len());
        for d in &t.depends_on {
            match index.get(d.as_str()) {
                Some(&j) => {
                    if !ds.contains(&j) {
                        ds.push(j)
                    }
                }
                None => errors.push(Error::UnknownDependency {
                    task: t.name.clone(),
                    dep: d.to_string(),
                }),
            }
        }
        if t.resume_previous_session && ds.is_empty() && i > 0 {
            // It continues the session of the task before it in the file, so it runs after
            // that task: an implicit dependency, drawn like any other.
            ds.push(i as u32 - 1);
        }
        deps.push(ds);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match Dag::build(spec.tasks.iter().map(|t| t.name.clone()).collect(), deps) {
        Ok(dag) => Ok(dag),
        Err(cycle) => Err(vec![Error::Cycle {
            path: cycle
                .into_iter()
                .map(|i| spec.tasks[i as usize].name.clone())
                .collect(),
        }]),
    }
}

/// Job names are shown on terminals and pages like task names: no bidirectional control
/// character may disguise them. (Other control characters are escaped wherever a job name is
/// shown, as formats derive names from titles.)
fn check_job_name(name: &str, errors: &mut Vec<Error>) {
    if name.chars().any(crate::ids::is_bidi_control) {
        errors.push(Error::BadJobName {
            name: name.to_string(),
            message: "contains a bidirectional control character, which can disguise it on a \
                      terminal or a page",
        });
    }
}

/// The `[[notify]]` hooks: an http(s) URL, at least one event (unknown ones are refused when
/// the file is read), a secret variable name that can be set (`[A-Za-z_][A-Za-z0-9_]*`).
fn check_notify(spec: &JobSpec, errors: &mut Vec<Error>) {
    for (i, n) in spec.notify.iter().enumerate() {
        let mut bad = |message: String| {
            errors.push(Error::BadSetting {
                message: format!("[[notify]] #{} ({}): {message}", i + 1, n.url),
            })
        };
        let rest = n
            .url
            .strip_prefix("http://")
            .or_else(|| n.url.strip_prefix("https://"));
        match rest {
            None => bad("url must start with http:// or https://".into()),
            Some(r) if r.is_empty() || r.starts_with('/') => bad("url names no host".into()),
            Some(r) if r.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                bad("url contains a space or a control character".into())
            }
            Some(_) => {}
        }
        if n.events.is_empty() {
            let known: Vec<&str> = crate::gates::NotifyEvent::ALL
                .iter()
                .map(|e| e.name())
                .collect();
            bad(format!(
                "events is empty; give one or more of {}",
                known.join(", ")
            ));
        }
        if let Some(var) = &n.secret_env
            && !valid_env_name(var)
        {
            bad(format!(
                "secret_env {var:?} is not an environment variable name (letters, digits and _, \
                 not starting with a digit)"
            ));
        }
        if let Some(d) = &n.dashboard_url
            && !(d.starts_with("http://") || d.starts_with("https://"))
        {
            bad(format!(
                "dashboard_url {d:?} must start with http:// or https://"
            ));
        }
    }
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why an `env` key cannot be given to a program: the C environment is `KEY=VALUE` strings, so
/// an empty key or one holding `=` would be cut or refused only when the task runs.
fn bad_env_key(key: &str) -> Option<String> {
    if key.is_empty() {
        Some("env has an empty variable name".into())
    } else if key.contains('=') {
        Some(format!("env variable name {key:?} contains '='"))
    } else {
        None
    }
}

/// Why a timeout cannot be used: zero would fail every attempt before it starts.
fn bad_timeout(timeout: Option<crate::duration::Dur>) -> Option<String> {
    timeout
        .is_some_and(|t| t.0.is_zero())
        .then(|| "timeout must be longer than 0 (leave it out for none)".into())
}

/// Why a count of attempts (retries + 1 where `retries` is given) cannot be used.
fn bad_attempts(field: &str, attempts: Option<u64>) -> Option<String> {
    attempts
        .is_some_and(|a| a > u64::from(MAX_ATTEMPTS))
        .then(|| format!("{field} allows at most {MAX_ATTEMPTS} attempts in all"))
}

fn check_settings(spec: &JobSpec, errors: &mut Vec<Error>) {
    let s = &spec.settings;
    let setting = |message| Error::BadSetting { message };
    errors.extend(s.env.keys().filter_map(|k| bad_env_key(k)).map(setting));
    errors.extend(bad_timeout(s.timeout).map(setting));
    errors
        .extend(bad_attempts("max_retries", s.max_retries.map(|r| u64::from(r) + 1)).map(setting));
    if s.max_parallel_tasks == Some(0) {
        errors.push(Error::BadSetting {
            message: "max_parallel_tasks must be at least 1".into(),
        });
    }
    if let Some(agent) = &s.agent_command
        && agent.first().is_none_or(|a| a.trim().is_empty())
    {
        errors.push(Error::BadSetting {
            message: "agent_command must name a program".into(),
        });
    }
    let fields = [
        (
            "agent_command",
            s.agent_command.iter().flatten().any(|a| has_nul(a)),
        ),
        (
            "working_directory",
            s.working_directory.as_deref().is_some_and(has_nul),
        ),
        ("env", s.env.iter().any(|(k, v)| has_nul(k) || has_nul(v))),
    ];
    for (field, _) in fields.into_iter().filter(|(_, nul)| *nul) {
        errors.push(Error::BadSetting {
            message: format!("{field} {NUL_MESSAGE}"),
        });
    }
    errors.extend(bad_effort(s.effort.as_deref()).map(setting));
    if s.max_integration_attempts == Some(0) {
        errors.push(Error::BadSetting {
            message: "max_integration_attempts must be at least 1".into(),
        });
    }
    if let Some(i) = &s.integration {
        errors.extend(bad_integration(i).map(setting));
    }
    if s.agent == Some(crate::spec::AgentKind::Command) && s.agent_command.is_none() {
        errors.push(Error::BadSetting {
            message: "agent = \"command\" needs agent_command, the program that takes the prompt"
                .into(),
        });
    }
    for (level, model) in &s.models {
        if !MODEL_LEVELS.contains(&level.as_str()) {
            errors.push(setting(format!(
                "models: {level:?} is not one of {}",
                quoted(&MODEL_LEVELS)
            )));
        } else if model.trim().is_empty() || has_nul(model) {
            errors.push(setting(format!("models: {level:?} names no model")));
        }
    }
    if let Some(why) = bad_budget(s.max_cost_usd, s.max_tokens) {
        errors.push(Error::BadSetting { message: why });
    }
    for (name, size) in &s.pools {
        if *size == 0 || name.trim().is_empty() {
            errors.push(Error::BadSetting {
                message: format!("pools: {name:?} must be named and hold at least 1 task"),
            });
        }
    }
    if let Some(b) = &s.target_branch {
        if !valid_branch(b) {
            errors.push(Error::BadSetting {
                message: format!("target_branch {b:?} is not a valid git branch name"),
            });
        } else if b.starts_with("refs/") {
            errors.push(Error::BadSetting {
                message: format!(
                    "target_branch {b:?} starts with 'refs/': name the branch alone (a branch \
                     named so would shadow the ref it spells)"
                ),
            });
        }
    }
    let worktree_only = [
        ("repository", s.repository.is_some()),
        ("target_branch", s.target_branch.is_some()),
        ("base", s.base.is_some()),
        ("integration_verify", s.integration_verify.is_some()),
        (
            "max_integration_attempts",
            s.max_integration_attempts.is_some(),
        ),
        ("integration", s.integration.is_some()),
    ];
    if !spec.uses_worktrees() {
        for (field, _) in worktree_only.into_iter().filter(|(_, set)| *set) {
            errors.push(Error::BadSetting {
                message: format!("{field} needs workspace = \"worktree\""),
            });
        }
    }
}

/// Why a budget cannot be used: a cost that is not a positive number of dollars, or no tokens.
fn bad_budget(cost: Option<f64>, tokens: Option<u64>) -> Option<String> {
    if let Some(c) = cost
        && !(c.is_finite() && c > 0.0)
    {
        return Some(format!(
            "max_cost_usd must be a positive number of dollars, not {c} (a budget of 0 would \
             start nothing)"
        ));
    }
    if tokens == Some(0) {
        return Some("max_tokens must be at least 1 (a budget of 0 would start nothing)".into());
    }
    None
}

/// What `git check-ref-format --branch` would refuse, checked without git.
fn valid_branch(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with('-')
        && !b.starts_with('/')
        && !b.ends_with('/')
        && !b.ends_with('.')
        && !b.contains("..")
        && !b.contains("@{")
        && !b.contains("//")
        && b != "@"
        && !b
            .chars()
            .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c))
        && b.split('/')
            .all(|p| !p.starts_with('.') && !p.ends_with(".lock"))
}

/// Why an `effort` cannot be used: it is none of `EFFORTS`.
fn bad_effort(effort: Option<&str>) -> Option<String> {
    use crate::spec::EFFORTS;
    effort
        .filter(|e| !EFFORTS.contains(e))
        .map(|e| format!("effort {e:?} is not one of {}", quoted(&EFFORTS)))
}

/// `"a", "b", "c"`.
fn quoted(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("{w:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a task or stage cannot name `agent = "command"`: the program of that profile is
/// `agent_command`, which stands for the job's own agent unless the job's agent is `command`.
fn bad_command_agent(spec: &JobSpec, agent: Option<AgentKind>) -> Option<String> {
    (agent == Some(AgentKind::Command) && spec.agent() != AgentKind::Command).then(|| {
        format!(
            "agent = \"command\" runs settings.agent_command, which this job has {}: set \
             settings.agent = \"command\" with agent_command, or name claude or codex",
            match &spec.settings.agent_command {
                Some(_) => format!("for its {} agent", spec.agent().name()),
                None => "not".to_string(),
            }
        )
    })
}

/// Checks every `[[stages]]` entry: a unique name, fields that fit its kind, known
/// placeholders, usable globs and limits (docs/design.md, "Quality gates").
fn check_stages(spec: &JobSpec, errors: &mut Vec<Error>) {
    use crate::gates::{STAGE_PLACEHOLDERS, StageKind, placeholders};
    let mut seen = std::collections::HashSet::new();
    for (index, st) in spec.stages.iter().enumerate() {
        let mut bad = |message: String| {
            errors.push(Error::BadStage {
                index,
                stage: st.name.clone(),
                message,
            })
        };
        if st.name.trim().is_empty() {
            bad("needs a name".into());
        } else if !seen.insert(st.name.as_str()) {
            bad("is defined more than once (stage names are unique)".into());
        } else if st
            .name
            .chars()
            .any(|c| c.is_control() || crate::ids::is_bidi_control(c))
        {
            bad("its name contains a control character".into());
        }
        let kind = st.kind();
        let set = |v: bool, field: &'static str| v.then_some(field);
        // Fields each kind does not take.
        let foreign: Vec<&str> = match kind {
            StageKind::Agent => vec![set(st.command.is_some(), "command")],
            StageKind::Command => vec![
                set(st.prompt.is_some(), "prompt"),
                set(st.agent.is_some(), "agent"),
                set(st.model.is_some(), "model"),
                set(st.effort.is_some(), "effort"),
            ],
            StageKind::Approval => vec![
                set(st.prompt.is_some(), "prompt"),
                set(st.command.is_some(), "command"),
                set(st.agent.is_some(), "agent"),
                set(st.model.is_some(), "model"),
                set(st.effort.is_some(), "effort"),
                set(st.read_only, "read_only"),
                set(st.group.is_some(), "group"),
                set(st.max_rounds.is_some(), "max_rounds"),
            ],
        }
        .into_iter()
        .flatten()
        .collect();
        if !foreign.is_empty() {
            bad(format!(
                "{} not taken by a stage of kind {}",
                foreign.join(", "),
                kind.name()
            ));
        }
        if kind != StageKind::Approval {
            let only: Vec<&str> = [
                set(!st.when_files.is_empty(), "when_files"),
                set(st.on_reject.is_some(), "on_reject"),
                set(st.on_timeout.is_some(), "on_timeout"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !only.is_empty() {
                bad(format!(
                    "{} only for kind = \"approval\" (this stage is of kind {})",
                    only.join(", "),
                    kind.name()
                ));
            }
        }
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|p| p.trim().is_empty());
        match kind {
            StageKind::Agent if blank(&st.prompt) => {
                bad("kind agent needs a prompt, what the reviewer is asked".into())
            }
            StageKind::Command if blank(&st.command) => {
                bad("kind command needs a command, run with sh -c".into())
            }
            _ => {}
        }
        if [&st.prompt, &st.command, &st.model]
            .into_iter()
            .any(|v| v.as_deref().is_some_and(has_nul))
        {
            bad(format!("prompt, command or model {NUL_MESSAGE}"));
        }
        if let Some(prompt) = &st.prompt {
            for p in placeholders(prompt) {
                if !STAGE_PLACEHOLDERS.contains(&p) {
                    let known: Vec<String> = STAGE_PLACEHOLDERS
                        .iter()
                        .map(|k| format!("{{{k}}}"))
                        .collect();
                    bad(format!(
                        "prompt uses unknown placeholder {{{p}}}; known: {}",
                        known.join(", ")
                    ));
                }
            }
        }
        if kind == StageKind::Agent {
            errors_of(bad_command_agent(spec, st.agent), &mut bad);
        }
        errors_of(bad_effort(st.effort.as_deref()), &mut bad);
        errors_of(bad_timeout(st.timeout), &mut bad);
        if let Some(r) = st.max_rounds.filter(|&r| r > MAX_STAGE_ROUNDS) {
            bad(format!("max_rounds is {r}; at most {MAX_STAGE_ROUNDS}"));
        }
        for glob in &st.when_files {
            if let Err(why) = crate::globs::check(glob) {
                bad(format!("when_files: {why}"));
            }
        }
        if st.select.keys().any(|k| k.trim().is_empty()) {
            bad("select has an empty label name".into());
        }
    }
}

fn errors_of(why: Option<String>, bad: &mut impl FnMut(String)) {
    if let Some(why) = why {
        bad(why);
    }
}

/// What is suspicious about a valid spec's stages but not wrong: a stage that no task goes
/// through. Each with the index of its stage.
pub fn stage_warnings(spec: &JobSpec) -> Vec<(usize, String)> {
    spec.stages
        .iter()
        .enumerate()
        .filter(|(_, st)| {
            !spec
                .tasks
                .iter()
                .any(|t| st.selects(&t.labels, t.is_prompt()))
        })
        .map(|(i, st)| {
            let why = if st.select.is_empty() {
                "no prompt task"
            } else {
                "no task with those labels"
            };
            (
                i,
                format!(
                    "stage {}: selects no task ({why}), so it never runs",
                    stage_label(&st.name, i)
                ),
            )
        })
        .collect()
}

/// What is said of a field holding a NUL byte.
const NUL_MESSAGE: &str = "contains a NUL byte, which no program can be given";

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

fn check_task(
    spec: &JobSpec,
    t: &crate::spec::TaskSpec,
    index: &HashMap<&str, u32>,
    errors: &mut Vec<Error>,
) {
    let task = || t.name.clone();
    let programs = t.command.is_some() as u8 + t.argv.is_some() as u8 + t.prompt.is_some() as u8;
    match programs {
        0 => errors.push(Error::NoProgram { task: task() }),
        1 => {}
        _ => errors.push(Error::ConflictingProgram { task: task() }),
    }
    let empty = |s: &Option<String>| s.as_ref().is_some_and(|c| c.trim().is_empty());
    if empty(&t.command) {
        errors.push(Error::Empty {
            task: task(),
            field: "command",
        });
    }
    if empty(&t.prompt) {
        errors.push(Error::Empty {
            task: task(),
            field: "prompt",
        });
    }
    if empty(&t.verify_command) {
        errors.push(Error::Empty {
            task: task(),
            field: "verify_command",
        });
    }
    if let Some(argv) = &t.argv
        && argv.first().is_none_or(|a| a.is_empty())
    {
        errors.push(Error::Empty {
            task: task(),
            field: "argv",
        });
    }
    // Programs, their arguments and environments are C strings: a NUL byte cannot reach them.
    let fields = [
        ("command", t.command.as_deref().is_some_and(has_nul)),
        ("argv", t.argv.iter().flatten().any(|a| has_nul(a))),
        ("prompt", t.prompt.as_deref().is_some_and(has_nul)),
        (
            "system_prompt",
            t.system_prompt.as_deref().is_some_and(has_nul),
        ),
        (
            "verify_command",
            t.verify_command.as_deref().is_some_and(has_nul),
        ),
        ("working_dir", t.working_dir.as_deref().is_some_and(has_nul)),
        ("env", t.env.iter().any(|(k, v)| has_nul(k) || has_nul(v))),
    ];
    for (field, _) in fields.into_iter().filter(|(_, nul)| *nul) {
        errors.push(Error::BadValue {
            task: task(),
            message: format!("{field} {NUL_MESSAGE}"),
        });
    }
    errors.extend(
        bad_effort(t.effort.as_deref())
            .into_iter()
            .chain(t.escalate.as_ref().and_then(|l| {
                (l.is_empty() || l.iter().any(|m| m.trim().is_empty()))
                    .then(|| "escalate must list at least one model, none of them empty".into())
            }))
            .map(|message| Error::BadValue {
                task: task(),
                message,
            }),
    );
    for glob in &t.files {
        if let Err(why) = crate::globs::check(glob) {
            errors.push(Error::BadValue {
                task: task(),
                message: format!("files: {why}"),
            });
        }
    }
    if t.max_attempts == Some(0) {
        errors.push(Error::BadValue {
            task: task(),
            message: "max_attempts counts every attempt and must be at least 1".into(),
        });
    }
    let value = |message| Error::BadValue {
        task: task(),
        message,
    };
    errors.extend(bad_attempts("max_attempts", t.max_attempts.map(u64::from)).map(value));
    errors.extend(bad_attempts("retries", t.retries.map(|r| u64::from(r) + 1)).map(value));
    errors.extend(bad_timeout(t.timeout).map(value));
    errors.extend(t.env.keys().filter_map(|k| bad_env_key(k)).map(value));
    if !(0..=255).contains(&t.verify_success_code) {
        errors.push(value(format!(
            "verify_success_code {} can never match: exit codes are 0 to 255",
            t.verify_success_code
        )));
    }
    if let Some(cpu) = t.cpu_required
        && !(cpu.is_finite() && cpu >= 0.0)
    {
        errors.push(Error::BadValue {
            task: task(),
            message: format!("cpu_required must be a non-negative number, not {cpu}"),
        });
    }
    if let Some(q) = &t.queue
        && !crate::names::valid_queue(q)
    {
        errors.push(Error::BadValue {
            task: task(),
            message: format!("queue {q:?} must be 1 to 64 letters, digits, '_' or '-'"),
        });
    }
    if let Some(why) = bad_budget(t.max_cost_usd, t.max_tokens) {
        errors.push(Error::BadValue {
            task: task(),
            message: why,
        });
    }
    if let Some(why) = t
        .agent
        .and_then(|_| bad_command_agent(spec, t.agent))
        .or_else(|| {
            (t.agent.is_some() && !t.is_prompt())
                .then(|| "agent is for prompt tasks; this one runs a command".to_string())
        })
    {
        errors.push(Error::BadValue {
            task: task(),
            message: why,
        });
    }
    if let Some(p) = &t.pool
        && !spec.settings.pools.contains_key(p)
    {
        errors.push(Error::BadValue {
            task: task(),
            message: format!("pool {p:?} is not declared in settings.pools"),
        });
    }
    if t.locks.iter().any(|l| l.trim().is_empty()) {
        errors.push(Error::Empty {
            task: task(),
            field: "lock name",
        });
    }
    for (on, jump) in [("on_success", &t.on_success), ("on_failure", &t.on_failure)] {
        if let Some(Jump::Task(target)) = jump
            && !index.contains_key(target.as_str())
        {
            errors.push(Error::UnknownJump {
                task: task(),
                on,
                target: target.clone(),
            });
        }
    }
    let _ = spec;
}

/// What is wrong with `[settings] integration`, if anything.
fn bad_integration(i: &crate::spec::IntegrationSettings) -> Option<String> {
    if i.batch == Some(0) {
        return Some("integration.batch must be at least 1".into());
    }
    match i.speculate.as_deref() {
        None | Some("off" | "verified") => {}
        Some(other) => {
            return Some(format!(
                "integration.speculate {other:?} is not one of \"off\", \"verified\""
            ));
        }
    }
    match i.speculation_budget {
        Some(b) if !(0.0..=1.0).contains(&b) => Some(format!(
            "integration.speculation_budget {b} must be between 0 and 1"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskSpec;

    fn job(tasks: &[(&str, &[&str])]) -> JobSpec {
        JobSpec {
            name: "t".into(),
            tasks: tasks
                .iter()
                .map(|(n, ds)| {
                    let mut t = TaskSpec::shell(n, "true");
                    t.depends_on = ds.iter().map(|d| TaskName::new(*d).unwrap()).collect();
                    t
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn integration_settings_are_checked() {
        let check = |batch, speculate: Option<&str>, budget| {
            let mut spec = job(&[("a", &[])]);
            spec.settings.workspace = Some(crate::spec::WorkspaceMode::Worktree);
            spec.settings.integration = Some(crate::spec::IntegrationSettings {
                batch,
                speculate: speculate.map(str::to_string),
                speculation_budget: budget,
            });
            validate(&spec)
                .err()
                .map(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(check(Some(4), Some("off"), Some(0.2)), None);
        let err = |b, s, f| check(b, s, f).unwrap().join("; ");
        assert!(err(Some(0), None, None).contains("integration.batch must be at least 1"));
        assert_eq!(check(None, Some("verified"), Some(0.5)), None);
        assert!(err(None, Some("always"), None).contains("is not one of"));
        assert!(err(None, None, Some(1.5)).contains("between 0 and 1"));
        let mut spec = job(&[("a", &[])]);
        spec.settings.integration = Some(Default::default());
        let e = validate(&spec).unwrap_err();
        assert!(
            e[0].to_string().contains("integration needs workspace"),
            "{e:?}"
        );
    }

    #[test]
    fn cycle_names_the_whole_path() {
        let errs = validate(&job(&[
            ("a", &["c"]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &[]),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "dependency cycle: a → b → c → a (each must finish before the next)"
        );
    }

    #[test]
    fn resuming_the_previous_session_orders_after_that_task() {
        let mut spec = job(&[
            ("plan", &[]),
            ("other", &[]),
            ("build", &[]),
            ("b2", &["plan"]),
        ]);
        spec.tasks[2].resume_previous_session = true;
        spec.tasks[3].resume_previous_session = true;
        let dag = validate(&spec).unwrap();
        assert_eq!(dag.deps[2], vec![1], "the task before it in the file");
        assert_eq!(dag.deps[3], vec![0], "its last dependency, nothing added");
        assert_eq!(dag.levels().len(), 2);
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let errs = validate(&job(&[("a", &["a"])])).unwrap_err();
        assert!(matches!(&errs[0], Error::Cycle { path } if path.len() == 1));
    }

    #[test]
    fn dangling_dependency_names_both_tasks() {
        let errs = validate(&job(&[("a", &[]), ("b", &["zzz"])])).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "task 'b' depends on unknown task 'zzz'"
        );
    }

    #[test]
    fn duplicates_empty_commands_and_jumps() {
        let mut spec = job(&[("a", &[]), ("a", &[])]);
        spec.tasks[1].command = Some("  ".into());
        spec.tasks[0].on_failure = Some(Jump::Task("nowhere".into()));
        let errs = validate(&spec).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.contains(&"task 'a' is defined more than once".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"task 'a' has an empty command".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"task 'a' jumps on_failure to unknown task 'nowhere'".to_string()),
            "{text:?}"
        );
    }

    #[test]
    fn programs_are_exclusive() {
        let mut spec = job(&[("a", &[])]);
        spec.tasks[0].argv = Some(vec!["true".into()]);
        assert!(matches!(
            validate(&spec).unwrap_err()[0],
            Error::ConflictingProgram { .. }
        ));
        spec.tasks[0].command = None;
        spec.tasks[0].argv = None;
        assert!(matches!(
            validate(&spec).unwrap_err()[0],
            Error::NoProgram { .. }
        ));
    }

    /// Every message of a spec that fails, in order.
    fn messages(spec: &JobSpec) -> Vec<String> {
        validate(spec)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn values_that_could_only_fail_at_run_time_are_refused() {
        use crate::duration::Dur;
        let mut spec = job(&[("a", &[]), ("b", &[])]);
        spec.settings.env.insert(String::new(), "x".into());
        spec.settings.timeout = Some(Dur::secs(0));
        spec.settings.max_retries = Some(u32::MAX);
        spec.tasks[0].env.insert("A=B".into(), "x".into());
        spec.tasks[0].timeout = Some(Dur::secs(0));
        spec.tasks[0].verify_success_code = 256;
        spec.tasks[1].retries = Some(4_294_967_295);
        spec.tasks[1].max_attempts = Some(1001);
        spec.tasks[1].verify_success_code = -1;
        assert_eq!(
            messages(&spec),
            [
                "settings: env has an empty variable name",
                "settings: timeout must be longer than 0 (leave it out for none)",
                "settings: max_retries allows at most 1000 attempts in all",
                "task 'a': timeout must be longer than 0 (leave it out for none)",
                "task 'a': env variable name \"A=B\" contains '='",
                "task 'a': verify_success_code 256 can never match: exit codes are 0 to 255",
                "task 'b': max_attempts allows at most 1000 attempts in all",
                "task 'b': retries allows at most 1000 attempts in all",
                "task 'b': verify_success_code -1 can never match: exit codes are 0 to 255",
            ]
        );
        let mut fine = job(&[("a", &[])]);
        fine.tasks[0].retries = Some(999);
        fine.tasks[0].max_attempts = Some(1000);
        fine.tasks[0].verify_success_code = 255;
        fine.tasks[0].timeout = Some(Dur::secs(1));
        fine.tasks[0].env.insert("PATH_2".into(), "a=b".into());
        assert!(validate(&fine).is_ok());
    }

    #[test]
    fn a_target_branch_spelling_a_ref_is_refused() {
        let mut spec = job(&[("a", &[])]);
        spec.settings.workspace = Some(crate::spec::WorkspaceMode::Worktree);
        spec.settings.target_branch = Some("refs/tags/v1".into());
        assert_eq!(
            messages(&spec),
            [
                "settings: target_branch \"refs/tags/v1\" starts with 'refs/': name the branch \
              alone (a branch named so would shadow the ref it spells)"
            ]
        );
        spec.settings.target_branch = Some("release/refs".into());
        assert!(validate(&spec).is_ok());
    }

    #[test]
    fn bidi_controls_in_a_job_name_are_refused() {
        let mut spec = job(&[("a", &[])]);
        spec.name = "invoice\u{202E}fdp.exe".into();
        assert_eq!(
            messages(&spec),
            [
                "job name \"invoice\\u{202e}fdp.exe\": contains a bidirectional control character, \
              which can disguise it on a terminal or a page"
            ]
        );
        spec.name = "ليلي".into();
        assert!(validate(&spec).is_ok());
    }
}

/// `[[stages]]`, per-task agents and the models mapping.
#[cfg(test)]
mod gates {
    use super::*;
    use crate::duration::Dur;
    use crate::gates::{OnReject, StageKind, StageSpec};
    use crate::spec::TaskSpec;

    fn prompt_job() -> JobSpec {
        let mut t = TaskSpec::empty(TaskName::new("a").unwrap());
        t.prompt = Some("do it".into());
        JobSpec {
            name: "g".into(),
            tasks: vec![t],
            ..Default::default()
        }
    }

    fn stage(name: &str, kind: StageKind) -> StageSpec {
        StageSpec {
            name: name.into(),
            kind: Some(kind),
            ..Default::default()
        }
    }

    fn review(prompt: &str) -> StageSpec {
        StageSpec {
            prompt: Some(prompt.into()),
            ..stage("review", StageKind::Agent)
        }
    }

    fn messages(spec: &JobSpec) -> Vec<String> {
        match validate(spec) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn one(st: StageSpec) -> Vec<String> {
        let mut spec = prompt_job();
        spec.stages.push(st);
        messages(&spec)
    }

    #[test]
    fn a_valid_pipeline_passes_with_json_braces_in_its_prompt() {
        let mut spec = prompt_job();
        spec.stages = vec![
            review(
                "Review {task} ({title}): {diff}\n{verify_output}\n{prompt}\nEnd with \
                 {\"verdict\": \"pass\", \"findings\": []} or { \"verdict\" : 1 } {}",
            ),
            StageSpec {
                command: Some("cargo test".into()),
                read_only: true,
                group: Some("checks".into()),
                max_rounds: Some(10),
                timeout: Some(Dur::secs(60)),
                ..stage("lint", StageKind::Command)
            },
            StageSpec {
                when_files: vec!["migrations/**".into()],
                on_reject: Some(OnReject::Revise),
                timeout: Some(Dur::secs(3600)),
                ..stage("sign-off", StageKind::Approval)
            },
        ];
        assert_eq!(messages(&spec), Vec::<String>::new());
    }

    #[test]
    fn names_are_required_and_unique() {
        let mut spec = prompt_job();
        spec.stages = vec![review("x"), review("y"), stage(" ", StageKind::Approval)];
        assert_eq!(
            messages(&spec),
            [
                "stage 'review': is defined more than once (stage names are unique)",
                "stage #3: needs a name",
            ]
        );
    }

    #[test]
    fn each_kind_takes_its_own_fields() {
        assert_eq!(
            one(stage("review", StageKind::Agent)),
            ["stage 'review': kind agent needs a prompt, what the reviewer is asked"]
        );
        assert_eq!(
            one(StageSpec {
                prompt: Some("{diff}".into()),
                model: Some("opus".into()),
                ..stage("lint", StageKind::Command)
            }),
            [
                "stage 'lint': prompt, model not taken by a stage of kind command",
                "stage 'lint': kind command needs a command, run with sh -c",
            ]
        );
        assert_eq!(
            one(StageSpec {
                command: Some("true".into()),
                read_only: true,
                group: Some("g".into()),
                max_rounds: Some(1),
                ..stage("ok", StageKind::Approval)
            }),
            [
                "stage 'ok': command, read_only, group, max_rounds not taken by a stage of kind \
                 approval"
            ]
        );
        assert_eq!(
            one(StageSpec {
                when_files: vec!["a/**".into()],
                on_reject: Some(OnReject::Fail),
                on_timeout: Some(crate::gates::OnTimeout::Approve),
                ..review("{diff}")
            }),
            [
                "stage 'review': when_files, on_reject, on_timeout only for kind = \"approval\" \
                 (this stage is of kind agent)"
            ]
        );
        // Without `kind`, a command makes a command stage: a prompt beside it is refused.
        let both = StageSpec {
            kind: None,
            command: Some("true".into()),
            ..review("x")
        };
        assert_eq!(
            one(both),
            ["stage 'review': prompt not taken by a stage of kind command"]
        );
    }

    #[test]
    fn unknown_placeholders_are_named_with_the_known_ones() {
        assert_eq!(
            one(review("Review {task}: {diff_stat} and {the_tests}")),
            [
                "stage 'review': prompt uses unknown placeholder {diff_stat}; known: {task}, \
                 {title}, {prompt}, {diff}, {verify_output}",
                "stage 'review': prompt uses unknown placeholder {the_tests}; known: {task}, \
                 {title}, {prompt}, {diff}, {verify_output}",
            ]
        );
    }

    #[test]
    fn globs_efforts_rounds_timeouts_and_select_are_checked() {
        let mut spec = prompt_job();
        spec.stages = vec![
            StageSpec {
                effort: Some("max".into()),
                max_rounds: Some(11),
                timeout: Some(Dur::secs(0)),
                select: [(String::new(), "x".into())].into(),
                ..review("{diff}")
            },
            StageSpec {
                when_files: vec!["/etc/**".into(), String::new()],
                ..stage("sign-off", StageKind::Approval)
            },
        ];
        let m = messages(&spec);
        assert_eq!(
            m[..4],
            [
                "stage 'review': effort \"max\" is not one of \"low\", \"medium\", \"high\"",
                "stage 'review': timeout must be longer than 0 (leave it out for none)",
                "stage 'review': max_rounds is 11; at most 10",
                "stage 'review': select has an empty label name",
            ]
        );
        assert_eq!(m.len(), 6, "{m:?}");
        assert!(m[4].starts_with("stage 'sign-off': when_files: "), "{m:?}");
        assert_eq!(m[5], "stage 'sign-off': when_files: an empty glob");
        let e = validate(&spec).unwrap_err();
        assert_eq!(e[5].stage(), Some(1));
        assert_eq!(e[5].task(), None);
    }

    #[test]
    fn a_stage_selecting_no_task_is_a_warning_not_an_error() {
        let mut spec = prompt_job();
        spec.stages = vec![
            StageSpec {
                select: [("team".to_string(), "db".to_string())].into(),
                ..review("{diff}")
            },
            review("{diff}"),
        ];
        spec.stages[1].name = "all".into();
        assert!(validate(&spec).is_ok());
        assert_eq!(
            stage_warnings(&spec),
            [(
                0,
                "stage 'review': selects no task (no task with those labels), so it never runs"
                    .to_string()
            )]
        );
        spec.tasks[0].labels.insert("team".into(), "db".into());
        assert_eq!(stage_warnings(&spec), []);
    }

    #[test]
    fn command_agents_need_a_command_job() {
        let mut spec = prompt_job();
        spec.tasks[0].agent = Some(AgentKind::Command);
        spec.stages = vec![StageSpec {
            agent: Some(AgentKind::Command),
            ..review("{diff}")
        }];
        spec.tasks.push(TaskSpec {
            agent: Some(AgentKind::Codex),
            ..TaskSpec::shell("sh", "true")
        });
        assert_eq!(
            messages(&spec),
            [
                "stage 'review': agent = \"command\" runs settings.agent_command, which this job \
                 has not: set settings.agent = \"command\" with agent_command, or name claude or \
                 codex",
                "task 'a': agent = \"command\" runs settings.agent_command, which this job has \
                 not: set settings.agent = \"command\" with agent_command, or name claude or codex",
                "task 'sh': agent is for prompt tasks; this one runs a command",
            ]
        );
        spec.tasks.pop();
        spec.settings.agent_command = Some(vec!["my-agent".into()]);
        assert_eq!(messages(&spec), Vec::<String>::new());
    }

    #[test]
    fn the_models_mapping_has_levels_only() {
        let mut spec = prompt_job();
        spec.settings.models = [
            ("high".to_string(), "opus".to_string()),
            ("hard".to_string(), "opus".to_string()),
            ("low".to_string(), " ".to_string()),
        ]
        .into();
        assert_eq!(
            messages(&spec),
            [
                "settings: models: \"hard\" is not one of \"high\", \"medium\", \"low\"",
                "settings: models: \"low\" names no model",
            ]
        );
    }
}

/// Hostile graphs: arbitrary dependency lists, and paths longer than any stack.
#[cfg(test)]
mod hostile {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::TaskSpec;

    /// A job of `n` tasks `t0…`, each depending on the listed indices (`n` and above name
    /// tasks that do not exist).
    fn job(deps: &[Vec<usize>]) -> JobSpec {
        JobSpec {
            name: "h".into(),
            tasks: deps
                .iter()
                .enumerate()
                .map(|(i, ds)| {
                    let mut t = TaskSpec::shell(&format!("t{i}"), "true");
                    t.depends_on = ds
                        .iter()
                        .map(|d| TaskName::new(format!("t{d}")).unwrap())
                        .collect();
                    t
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Runs `f` on a thread with the default 2 MiB stack, whatever RUST_MIN_STACK says: a deep
    /// recursion would overflow it.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn index(name: &TaskName) -> usize {
        name.as_str()[1..].parse().unwrap()
    }

    proptest! {
        /// Validation never panics; an accepted graph's order and plan respect every edge, and
        /// a rejected cycle is a real one.
        #[test]
        fn validation_is_total_and_cycles_are_real(
            deps in prop::collection::vec(prop::collection::vec(0usize..45, 0..4), 1..40),
            workers in 0u32..8,
        ) {
            let spec = job(&deps);
            match validate(&spec) {
                Ok(dag) => {
                    let mut seen = vec![false; dag.len()];
                    for &t in &dag.order {
                        for &d in &dag.deps[t as usize] {
                            prop_assert!(seen[d as usize], "t{d} after its dependent t{t}");
                        }
                        seen[t as usize] = true;
                    }
                    let plan = dag.plan(workers, &spec.mode_decision(None));
                    prop_assert_eq!(plan.tasks, deps.len());
                    prop_assert!(plan.estimated_makespan as usize >= plan.critical_path.len());
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    for e in &errors {
                        let Error::Cycle { path } = e else {
                            prop_assert!(
                                matches!(e, Error::UnknownDependency { .. }),
                                "unexpected error {e}"
                            );
                            continue;
                        };
                        // Each task of the path depends on the one before it, around the loop.
                        for (k, t) in path.iter().enumerate() {
                            let prev = &path[(k + path.len() - 1) % path.len()];
                            prop_assert!(deps[index(t)].contains(&index(prev)), "{e}");
                        }
                        let text = e.to_string();
                        prop_assert!(text.starts_with("dependency cycle: "), "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_chain_of_100_000_tasks_needs_no_deep_stack() {
        on_small_stack(|| {
            let n = 100_000;
            let deps: Vec<Vec<usize>> = (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                .collect();
            let spec = job(&deps);
            let dag = validate(&spec).unwrap();
            let plan = dag.plan(4, &spec.mode_decision(None));
            assert_eq!(plan.levels.len(), n);
            assert_eq!(plan.critical_path.len(), n);
            assert_eq!(plan.estimated_makespan as usize, n);
        });
    }

    #[test]
    fn a_cycle_of_100_000_tasks_is_named_without_a_deep_stack() {
        on_small_stack(|| {
            let n = 100_000;
            // t0 ← t1 ← … ← t99999 ← t0, plus a long acyclic tail hanging off the cycle.
            let mut deps: Vec<Vec<usize>> = (0..n)
                .map(|i| vec![if i == 0 { n - 1 } else { i - 1 }])
                .collect();
            deps.extend((n..2 * n).map(|i| vec![i - 1]));
            let errors = validate(&job(&deps)).unwrap_err();
            let Error::Cycle { path } = &errors[0] else {
                panic!("{:?}", errors[0]);
            };
            assert_eq!(path.len(), n);
            assert_eq!(path[0].as_str(), "t0");
            assert_eq!(path[1].as_str(), "t1");
            assert!(
                errors[0]
                    .to_string()
                    .ends_with("t99999 → t0 (each must finish before the next)")
            );
        });
    }

    /// `[[notify]]` hooks are checked at submit: the URL's scheme, events, the secret's name.
    #[test]
    fn bad_notify_hooks_are_refused_naming_the_hook() {
        use crate::gates::{NotifyEvent, NotifySpec};
        let mut spec = job(&[vec![]]);
        let hook = |url: &str, events: Vec<NotifyEvent>, secret: Option<&str>| NotifySpec {
            events,
            url: url.into(),
            secret_env: secret.map(String::from),
            ..NotifySpec::default()
        };
        spec.notify = vec![
            hook(
                "https://hooks.example/x",
                vec![NotifyEvent::JobEnded],
                Some("HOOK_SECRET"),
            ),
            hook("ftp://hooks.example/x", vec![NotifyEvent::JobEnded], None),
            hook("http://h.example", vec![], None),
            hook(
                "http://h.example",
                vec![NotifyEvent::TaskFailed],
                Some("1-bad name"),
            ),
        ];
        let errors: Vec<String> = validate(&spec)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("settings: [[notify]] #2 (ftp://hooks.example/x): url must start with http:// or https://"), "{errors:?}");
        assert!(
            errors[1].contains("[[notify]] #3")
                && errors[1].contains("events is empty")
                && errors[1].contains("task_failed"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("[[notify]] #4") && errors[2].contains("secret_env \"1-bad name\""),
            "{errors:?}"
        );
        // An unknown event is refused when the file is read, naming the known ones.
        let e =
            serde_json::from_str::<NotifySpec>(r#"{"events": ["job_done"], "url": "http://x"}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("job_done") && e.contains("job_ended"), "{e}");
    }

    #[test]
    fn the_cycle_through_the_earliest_task_is_named() {
        let errors = validate(&job(&[vec![], vec![2], vec![1], vec![0, 4], vec![3]])).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "dependency cycle: t1 → t2 → t1 (each must finish before the next)"
        );
    }

    #[test]
    fn nul_bytes_in_what_a_program_receives_are_rejected() {
        let mut spec = job(&[vec![], vec![]]);
        spec.tasks[0].command = Some("echo a\0b".into());
        spec.tasks[1].env.insert("K".into(), "v\0".into());
        spec.settings.agent_command = Some(vec!["agent\0".into()]);
        spec.tasks[0].description = Some("NUL\0 in a description is harmless".into());
        let text: Vec<String> = validate(&spec)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "settings: agent_command contains a NUL byte, which no program can be given",
                "task 't0': command contains a NUL byte, which no program can be given",
                "task 't1': env contains a NUL byte, which no program can be given",
            ]
        );
    }

    #[test]
    fn unknown_efforts_and_empty_escalation_ladders_are_refused() {
        let mut spec = job(&[vec![], vec![]]);
        spec.tasks[0].effort = Some("max".into());
        spec.tasks[1].effort = Some("high".into());
        spec.tasks[1].escalate = Some(vec![]);
        spec.settings.effort = Some("extreme".into());
        let text: Vec<String> = validate(&spec)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "settings: effort \"extreme\" is not one of \"low\", \"medium\", \"high\"",
                "task 't0': effort \"max\" is not one of \"low\", \"medium\", \"high\"",
                "task 't1': escalate must list at least one model, none of them empty",
            ]
        );
        spec.tasks[0].effort = Some("low".into());
        spec.tasks[1].escalate = Some(vec!["a".into(), "b".into()]);
        spec.settings.effort = None;
        assert!(validate(&spec).is_ok());
    }
}
