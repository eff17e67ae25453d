//! Validation: turns a `JobSpec` into a `Dag` or into every error it has.
//!
//! Errors are data naming the job's tasks (`Cycle { path }`, `UnknownDependency { task, dep }`);
//! the CLI adds file, line and column. Validation is pure and all-or-nothing: a spec that fails
//! it is never stored or run.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::dag::Dag;
use crate::ids::TaskName;
use crate::names::MAX_TASKS;
use crate::spec::{JobSpec, Jump};

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
            Error::NoTasks | Error::TooManyTasks { .. } | Error::BadSetting { .. } => None,
        }
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
    check_settings(spec, &mut errors);

    let mut index: HashMap<&str, u32> = HashMap::with_capacity(n);
    for (i, t) in spec.tasks.iter().enumerate() {
        if index.insert(t.name.as_str(), i as u32).is_some() {
            errors.push(Error::DuplicateTask {
                task: t.name.clone(),
            });
        }
    }

    let mut deps: Vec<Vec<u32>> = Vec::with_capacity(n);
    for t in &spec.tasks {
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

fn check_settings(spec: &JobSpec, errors: &mut Vec<Error>) {
    let s = &spec.settings;
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
    if t.max_attempts == Some(0) {
        errors.push(Error::BadValue {
            task: task(),
            message: "max_attempts counts every attempt and must be at least 1".into(),
        });
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

/// Finds a cycle among `deps` (task index → its dependencies), returned in execution order
/// starting at its lowest index, or `None` if the graph is acyclic. Uses Tarjan's SCCs.
pub(crate) fn find_cycle(deps: &[Vec<u32>]) -> Option<Vec<u32>> {
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(deps.len(), 0);
    for _ in 0..deps.len() {
        g.add_node(());
    }
    for (t, ds) in deps.iter().enumerate() {
        for &d in ds {
            g.add_edge(NodeIndex::new(d as usize), NodeIndex::new(t), ());
        }
    }
    let scc = petgraph::algo::tarjan_scc(&g)
        .into_iter()
        .find(|c| c.len() > 1 || deps[c[0].index()].contains(&(c[0].index() as u32)))?;
    let members: std::collections::HashSet<usize> = scc.iter().map(|n| n.index()).collect();
    let start = *members.iter().min()?;
    // Breadth-first search from `start` along execution edges, inside the component, back to
    // `start`: the shortest cycle through it.
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for v in g.neighbors(NodeIndex::new(u)).map(|x| x.index()) {
            if !members.contains(&v) {
                continue;
            }
            if v == start {
                let mut path = vec![u as u32];
                let mut cur = u;
                while cur != start {
                    cur = prev[&cur];
                    path.push(cur as u32);
                }
                path.reverse();
                return Some(path);
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(v) {
                e.insert(u);
                queue.push_back(v);
            }
        }
    }
    None
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
}
