//! TaskMaster `tasks.json`: tagged `{"master":{"tasks":[…],"metadata":{…}}, …}` (the tag is
//! `LoadOptions::tag`, `master` by default) or untagged `{"tasks":[…]}`.
//!
//! Tags: when the tag asked for is `master` (the default) and the file has none, its only tag
//! is read, else the project's current tag (`currentTag` of `.taskmaster/state.json`,
//! `LoadOptions::current_tag`) when the file has it, with a warning saying which; otherwise
//! the error lists the tags. A tag (or an untagged file) with no tasks is nothing to do.
//!
//! The job is parallel: its order is in the dependencies.
//!
//! Ids are integers or strings; dependencies are integers, `"N.M"` strings (subtask M of task
//! N) or slugs.
//!
//! - By default each top-level task becomes one prompt task named by its id. The prompt holds
//!   its title, description, details, test strategy and its subtasks as a checklist
//!   (`- [ ] N.M title`). A dependency on subtask `N.M` means task `N` (self-references are
//!   dropped).
//! - A subtask id already qualified by its task's (`"1.1"` or `29.1` under task `1` or `29`)
//!   is read as the part after the task's id (`1`), so it is not qualified twice.
//! - Two subtasks of one task with the same id (TaskMaster tolerates them) are kept: the first
//!   keeps it, the k-th (k ≥ 2) becomes `M-k` (`27.3-2`), with a warning; a dependency on `M`
//!   means the first.
//! - With `expand_subtasks`, subtask `M` of task `N` becomes the prompt task `N.M`; it depends
//!   on task `N`'s dependencies and on its own, where an integer or slug names a sibling
//!   (`N.k`) and an `"N.M"` string names that subtask. Task `N` stays a prompt task and
//!   depends on all its subtasks.
//!
//! Priority `high`/`medium`/`low` becomes 2/1/0, and stays a label with `complexity` (a
//! subtask inherits both from its task): `settings.models` picks a task's model by them.
//! Fields ordo has no place for (`title`,
//! `status`, `agentHint`, `assignee`, …) are kept as labels, non-strings as JSON text.
//! Dependencies on tasks that do not exist are dropped with a warning naming both tasks, as
//! TaskMaster itself tolerates them.
//!
//! `Converted::sources` says which task or subtask of the file each task is, for
//! `--update-source` (`write_back`).
//!
//! Statuses: unless `LoadOptions::include_done`, tasks whose `status` is `done` (counted as
//! succeeded), `cancelled` or `deferred` are left out of the job with a warning (one a status:
//! a lone task is named with its position, several are listed on one line) (an expanded
//! subtask takes its parent's status when the parent's is one of those); a dependency on a
//! done task is dropped, and a task that depends on a cancelled or deferred one is left out
//! too (with a warning), as it could not run. When that leaves no task, the file is nothing
//! to do (`Converted::nothing_to_do`, with the counts), not an invalid job.

use std::collections::{HashMap, HashSet};

use ordo_proto::spec::{COMPLEXITY_LABEL, PRIORITY_LABEL};
use ordo_proto::{Deps, ExecutionMode, JobSpec, TaskName, TaskSpec};
use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostic, Pos};
use crate::json_fields::{dependency_ids, id_string, label_value, priority, task_name, text_field};
use crate::json_positions::pointer_key;
use crate::parser::{Converted, Ctx, add_task, converted, prompt_text};
use crate::write_back::{Sources, TaskRef};

/// The tag read when none is asked for.
const DEFAULT_TAG: &str = "master";

/// Fields turned into something other than a label.
const CONSUMED: &[&str] = &[
    "id",
    "description",
    "details",
    "testStrategy",
    "dependencies",
    "subtasks",
];

struct Top<'a> {
    id: String,
    name: TaskName,
    fields: &'a Map<String, Value>,
    pos: Option<Pos>,
    ptr: String,
    subs: Vec<Sub<'a>>,
}

struct Sub<'a> {
    /// The id as the file gives it (unqualified), before duplicates are told apart.
    raw_id: Option<String>,
    id: String,
    fields: &'a Map<String, Value>,
    pos: Option<Pos>,
    ptr: String,
}

pub(crate) fn parse(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
    let value = ctx.json_value()?;
    let at = ctx.json_positions();
    let Value::Object(root) = &value else {
        return Err(vec![
            ctx.diag(at.get(""), "expected a TaskMaster tasks.json object"),
        ]);
    };
    let mut warnings = Vec::new();
    // The tag read (`None`: the untagged layout), for `Sources`.
    let mut read_tag = None;
    let (base, holder) = match root.get("tasks") {
        Some(Value::Array(_)) => {
            if let Some(tag) = ctx.opts.tag.as_deref().filter(|t| *t != "master") {
                warnings.push(
                    ctx.warning(None, format!("the file has no tags; --tag {tag:?} ignored")),
                );
            }
            (String::new(), root)
        }
        _ => {
            let tag =
                pick_tag(ctx, root, &mut warnings).map_err(|m| vec![ctx.diag(at.get(""), m)])?;
            let Some(Value::Object(h)) = root.get(tag) else {
                unreachable!("pick_tag returns a tag of the file");
            };
            read_tag = Some(tag.to_string());
            (format!("/{}", pointer_key(tag)), h)
        }
    };
    let Some(Value::Array(tasks)) = holder.get("tasks") else {
        return Err(vec![ctx.diag(at.get(""), "expected a \"tasks\" array")]);
    };

    let expand = ctx.opts.expand_subtasks;
    let mut errors = Vec::new();
    let mut tops: Vec<Top<'_>> = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let ptr = format!("{base}/tasks/{i}");
        let pos = at.task(&ptr, "id");
        let Value::Object(fields) = t else {
            errors.push(ctx.diag(pos, format!("task #{} is not an object", i + 1)));
            continue;
        };
        let Some(id) = fields
            .get("id")
            .and_then(id_string)
            .filter(|s| !s.is_empty())
        else {
            errors.push(ctx.diag(
                pos,
                format!("task #{} needs an \"id\" (number or string)", i + 1),
            ));
            continue;
        };
        let name = match task_name(&id) {
            Ok(n) => n,
            Err(e) => {
                errors.push(ctx.diag(pos, e));
                continue;
            }
        };
        let mut subs: Vec<Sub<'_>> = Vec::new();
        match fields.get("subtasks") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                let ids = subtask_ids(&id, items);
                for (j, s) in items.iter().enumerate() {
                    let sptr = format!("{ptr}/subtasks/{j}");
                    let spos = at.task(&sptr, "id");
                    let Value::Object(sfields) = s else {
                        errors.push(ctx.diag(
                            spos,
                            format!("subtask #{} of task '{id}' is not an object", j + 1),
                        ));
                        continue;
                    };
                    let sid = match &ids[j] {
                        Some(s) => s.clone(),
                        None if !expand => (j + 1).to_string(),
                        None => {
                            errors.push(ctx.diag(
                                spos,
                                format!(
                                    "subtask #{} of task '{id}' needs an \"id\" to become a task",
                                    j + 1
                                ),
                            ));
                            continue;
                        }
                    };
                    let raw = raw_id(&id, sfields);
                    if let Some(first) = subs.iter().find(|s| raw.is_some() && s.raw_id == raw)
                        && first.id != sid
                    {
                        warnings.push(ctx.warning(
                            spos,
                            format!(
                                "task '{id}' has more than one subtask with id {}: this one \
                                 (#{}) is '{id}.{sid}'",
                                first.id,
                                j + 1
                            ),
                        ));
                    }
                    subs.push(Sub {
                        raw_id: raw,
                        id: sid,
                        fields: sfields,
                        pos: spos,
                        ptr: sptr,
                    });
                }
            }
            Some(_) => errors.push(ctx.diag(
                at.get(&format!("{ptr}/subtasks")).or(pos),
                format!("task '{id}': subtasks must be an array"),
            )),
        }
        tops.push(Top {
            id,
            name,
            fields,
            pos,
            ptr,
            subs,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let top_index: HashMap<&str, usize> = {
        let mut m = HashMap::new();
        for (i, t) in tops.iter().enumerate() {
            m.entry(t.id.as_str()).or_insert(i);
        }
        m
    };
    let sub_ids: Vec<HashSet<&str>> = tops
        .iter()
        .map(|t| t.subs.iter().map(|s| s.id.as_str()).collect())
        .collect();

    let mut spec = JobSpec {
        description: holder
            .get("metadata")
            .and_then(|m| text_field(m.get("description"))),
        ..JobSpec::default()
    };
    let mut positions = HashMap::new();
    let mut sources = Sources::new();
    let source = |task: &str, subtask: Option<&str>| TaskRef {
        tag: read_tag.clone(),
        task: task.to_string(),
        subtask: subtask.map(String::from),
    };
    let mut deps_out = DepReport {
        ctx,
        warnings: &mut warnings,
        errors: &mut errors,
    };

    for (ti, top) in tops.iter().enumerate() {
        let (dep_ids, bad) = dependency_ids(top.fields.get("dependencies"));
        deps_out.bad(&top.name, top.pos, bad);
        // Resolved dependencies of the task itself.
        let mut own: Vec<String> = Vec::new();
        for (k, d) in dep_ids.iter().enumerate() {
            let dpos = at.get(&format!("{}/dependencies/{k}", top.ptr)).or(top.pos);
            let resolved = if top_index.contains_key(d.as_str())
                || (expand && is_subtask_name(d, &top_index, &tops))
            {
                Some(d.clone())
            } else {
                parent_of_subtask(d, &top_index, &sub_ids).map(|p| tops[p].id.clone())
            };
            match resolved {
                Some(r) if r == top.id => {
                    if d == &top.id {
                        deps_out.warn(
                            dpos,
                            format!("task '{}' depends on itself; dependency dropped", top.id),
                        );
                    }
                }
                Some(r) => push_unique(&mut own, r),
                None => deps_out.dangling(dpos, &top.id, d),
            }
        }

        if expand {
            let own_subs: HashSet<String> = top
                .subs
                .iter()
                .map(|s| format!("{}.{}", top.id, s.id))
                .collect();
            for sub in &top.subs {
                let sname = format!("{}.{}", top.id, sub.id);
                let name = match task_name(&sname) {
                    Ok(n) => n,
                    Err(e) => {
                        deps_out.errors.push(ctx.diag(sub.pos, e));
                        continue;
                    }
                };
                let mut task = TaskSpec::empty(name.clone());
                fill(&mut task, sub.fields);
                if !sub.fields.contains_key("priority") {
                    task.priority = top.fields.get("priority").and_then(priority).unwrap_or(0);
                }
                // A subtask is as complex and urgent as its task unless it says.
                for key in [COMPLEXITY_LABEL, PRIORITY_LABEL] {
                    if !sub.fields.contains_key(key)
                        && let Some(v) = top.fields.get(key).and_then(label_value)
                    {
                        task.labels.insert(key.into(), v);
                    }
                }
                task.labels.insert("parent".into(), top.id.clone());
                let parent_title = text_field(top.fields.get("title"));
                let context = match &parent_title {
                    Some(t) => format!("Part of task {}: {t}", top.id),
                    None => format!("Part of task {}", top.id),
                };
                task.prompt = Some(prompt(&sname, sub.fields, Some(&context)));
                let mut deps: Vec<String> = own
                    .iter()
                    .filter(|d| !own_subs.contains(*d))
                    .cloned()
                    .collect();
                let (sdeps, bad) = dependency_ids(sub.fields.get("dependencies"));
                deps_out.bad(&name, sub.pos, bad);
                for (k, d) in sdeps.iter().enumerate() {
                    let dpos = at.get(&format!("{}/dependencies/{k}", sub.ptr)).or(sub.pos);
                    let sibling = format!("{}.{}", top.id, d);
                    let sibling_ok = sub_ids[ti].contains(d.as_str());
                    let full_ok = is_subtask_name(d, &top_index, &tops);
                    let top_ok = top_index.contains_key(d.as_str());
                    let resolved = if !d.contains('.') {
                        if sibling_ok {
                            Some(sibling)
                        } else if top_ok {
                            Some(d.clone())
                        } else {
                            None
                        }
                    } else if full_ok || top_ok {
                        Some(d.clone())
                    } else if sibling_ok {
                        Some(sibling)
                    } else {
                        None
                    };
                    match resolved {
                        // The parent runs after its subtasks anyway.
                        Some(r) if r == top.id => {}
                        Some(r) if r == sname => deps_out.warn(
                            dpos,
                            format!("task '{sname}' depends on itself; dependency dropped"),
                        ),
                        Some(r) => push_unique(&mut deps, r),
                        None => deps_out.dangling(dpos, &sname, d),
                    }
                }
                task.depends_on = to_names(deps);
                sources
                    .entry(name)
                    .or_insert_with(|| source(&top.id, Some(&sub.id)));
                add_task(&mut spec, &mut positions, task, sub.pos);
            }
            for s in &top.subs {
                push_unique(&mut own, format!("{}.{}", top.id, s.id));
            }
        }

        let mut task = TaskSpec::empty(top.name.clone());
        fill(&mut task, top.fields);
        task.prompt = Some(prompt(&top.id, top.fields, None));
        task.depends_on = to_names(own);
        sources
            .entry(top.name.clone())
            .or_insert_with(|| source(&top.id, None));
        add_task(&mut spec, &mut positions, task, top.pos);
    }
    let mut nothing = None;
    if tasks.is_empty() {
        nothing = Some(match &read_tag {
            Some(tag) => format!("nothing to do: tag {tag:?} has no tasks"),
            None => "nothing to do: the file has no tasks".to_string(),
        });
    } else if !ctx.opts.include_done {
        let counts = omit_finished(ctx, &mut spec, &mut positions, &mut warnings);
        if spec.tasks.is_empty() && counts.iter().sum::<usize>() > 0 {
            nothing = Some(nothing_to_do(counts));
        }
    }
    // Its order is in the dependencies (none declared: all at once).
    spec.settings.execution_mode = Some(ExecutionMode::Parallel);
    sources.retain(|name, _| spec.tasks.iter().any(|t| &t.name == name));
    let mut conv = converted(spec, positions, warnings, errors)?;
    conv.sources = Some(sources);
    conv.nothing_to_do = nothing;
    Ok(conv)
}

/// The tag to read: the one asked for; for `master` (the default) missing, the file's only tag,
/// else the project's current tag; a warning says which was read instead. The error lists the
/// tags.
fn pick_tag<'v>(
    ctx: &Ctx<'_>,
    root: &'v Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<&'v str, String> {
    let asked = ctx.opts.tag.as_deref().unwrap_or(DEFAULT_TAG);
    let mut tags: Vec<&str> = root
        .iter()
        .filter(|(_, v)| matches!(v.get("tasks"), Some(Value::Array(_))))
        .map(|(k, _)| k.as_str())
        .collect();
    tags.sort_unstable();
    if let Some(&t) = tags.iter().find(|t| **t == asked) {
        return Ok(t);
    }
    if tags.is_empty() {
        return Err(
            "no TaskMaster tasks found: expected {\"tasks\":[…]} or tags such as \
                    {\"master\":{\"tasks\":[…]}}"
                .to_string(),
        );
    }
    let current = ctx.opts.current_tag.as_deref();
    if asked == DEFAULT_TAG {
        if let [only] = tags[..] {
            warnings.push(ctx.warning(
                None,
                format!("the file has no tag {DEFAULT_TAG:?}; reading its only tag {only:?}"),
            ));
            return Ok(only);
        }
        if let Some(&t) = tags.iter().find(|t| Some(**t) == current) {
            warnings.push(ctx.warning(
                None,
                format!(
                    "the file has no tag {DEFAULT_TAG:?}; reading {t:?}, the project's current \
                     tag (.taskmaster/state.json)"
                ),
            ));
            return Ok(t);
        }
    }
    let current = match current {
        Some(c) => format!(" (the project's current tag is {c:?})"),
        None => String::new(),
    };
    Err(format!(
        "TaskMaster tag {asked:?} not found; available tags: {}{current}",
        tags.join(", ")
    ))
}

/// The project's current tag: `currentTag` of the `.taskmaster/state.json` that TaskMaster
/// keeps beside `tasks/tasks.json`, if the file at `path` sits there.
pub(crate) fn current_tag(path: &std::path::Path) -> Option<String> {
    let state = path.parent()?.parent()?.join("state.json");
    let meta = std::fs::metadata(&state).ok()?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return None;
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(state).ok()?).ok()?;
    let tag = v.get("currentTag")?.as_str()?.trim();
    (!tag.is_empty()).then(|| tag.to_string())
}

/// Why a TaskMaster status means the task is not to run, if it does.
fn finished(status: &str) -> Option<&'static str> {
    match status.trim().to_ascii_lowercase().as_str() {
        "done" | "completed" | "complete" => Some(DONE),
        "cancelled" | "canceled" => Some(REASONS[1]),
        "deferred" => Some(REASONS[2]),
        _ => None,
    }
}

/// Leaves out the tasks whose status (or, for an expanded subtask, whose parent's status) is
/// done, cancelled or deferred, and the tasks that depend on a cancelled or deferred one (or
/// on a task left out for that reason), with a warning each; drops the dependencies on done
/// tasks, which count as succeeded.
/// Returns how many tasks were left out for each reason, in the order of `REASONS`.
fn omit_finished(
    ctx: &Ctx<'_>,
    spec: &mut JobSpec,
    positions: &mut HashMap<TaskName, Pos>,
    warnings: &mut Vec<String>,
) -> [usize; 4] {
    let status = |t: &TaskSpec| t.labels.get("status").and_then(|s| finished(s));
    let by_name: HashMap<&str, &TaskSpec> =
        spec.tasks.iter().map(|t| (t.name.as_str(), t)).collect();
    // Task → (why, the task that makes it so when it is not itself).
    let mut gone: HashMap<TaskName, (&'static str, Option<TaskName>)> = HashMap::new();
    for t in &spec.tasks {
        let parent = ctx
            .opts
            .expand_subtasks
            .then(|| t.labels.get("parent"))
            .flatten()
            .and_then(|p| by_name.get(p.as_str()))
            .and_then(|p| status(p));
        if let Some(why) = parent.or_else(|| status(t)) {
            gone.insert(t.name.clone(), (why, None));
        }
    }
    loop {
        let mut more = Vec::new();
        for t in &spec.tasks {
            if gone.contains_key(&t.name) {
                continue;
            }
            if let Some(d) = t
                .depends_on
                .iter()
                .find(|d| gone.get(*d).is_some_and(|(why, _)| *why != DONE))
            {
                more.push((t.name.clone(), d.clone()));
            }
        }
        if more.is_empty() {
            break;
        }
        for (t, d) in more {
            gone.insert(t, (LEFT_OUT, Some(d)));
        }
    }
    // One warning a reason, in file order: a lone task with its position, several listed.
    let mut counts = [0; 4];
    for (r, reason) in REASONS.iter().enumerate() {
        let group: Vec<&TaskSpec> = spec
            .tasks
            .iter()
            .filter(|t| gone.get(&t.name).is_some_and(|(why, _)| why == reason))
            .collect();
        counts[r] = group.len();
        let message = match (&group[..], *reason) {
            ([], _) => continue,
            ([t], LEFT_OUT) => {
                let d = gone[&t.name].1.as_ref().expect("left out for a dependency");
                let what = gone.get(d).map(|(w, _)| *w).unwrap_or(LEFT_OUT);
                format!(
                    "task '{}' depends on task '{d}', which is {what}: not run",
                    t.name
                )
            }
            ([t], why) => format!(
                "task '{}' is {why}: not run (--include-done runs it)",
                t.name
            ),
            (many, LEFT_OUT) => format!(
                "{} tasks depend on a cancelled or deferred task: {}: not run",
                many.len(),
                listing(many.iter().map(|t| {
                    let d = gone[&t.name].1.as_ref().expect("left out for a dependency");
                    format!("{} (on {d})", t.name)
                }))
            ),
            (many, why) => format!(
                "{} tasks {why}: {}: not run (--include-done runs them)",
                many.len(),
                listing(many.iter().map(|t| t.name.to_string()))
            ),
        };
        let pos = match &group[..] {
            [t] => positions.get(&t.name).copied(),
            _ => None,
        };
        warnings.push(ctx.warning(pos, message));
    }
    spec.tasks.retain(|t| !gone.contains_key(&t.name));
    positions.retain(|name, _| !gone.contains_key(name));
    for t in &mut spec.tasks {
        t.depends_on.retain(|d| !gone.contains_key(d));
    }
    counts
}

const DONE: &str = "already done";
const LEFT_OUT: &str = "left out";
/// Why a task is not run, as warnings and the nothing-to-do line say it.
const REASONS: [&str; 4] = [DONE, "cancelled", "deferred", LEFT_OUT];

/// At most ten names, then `…`.
fn listing(names: impl Iterator<Item = String>) -> String {
    const SHOWN: usize = 10;
    let mut out: Vec<String> = names.take(SHOWN + 1).collect();
    if out.len() > SHOWN {
        out.truncate(SHOWN);
        out.push("…".into());
    }
    out.join(", ")
}

/// What a file that leaves nothing to run says: all its tasks done, or the counts of each
/// reason (`REASONS`).
fn nothing_to_do(counts: [usize; 4]) -> String {
    let total: usize = counts.iter().sum();
    if counts[0] == total {
        return match total {
            1 => "nothing to do: its only task is done (--include-done runs it)".to_string(),
            n => format!("nothing to do: all {n} tasks are done (--include-done runs them)"),
        };
    }
    let parts: Vec<String> = REASONS
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(why, n)| match *why {
            DONE => format!("{n} done"),
            LEFT_OUT => format!("{n} waiting on those"),
            why => format!("{n} {why}"),
        })
        .collect();
    format!(
        "nothing to do: none of the {total} tasks is to run ({}; --include-done runs them)",
        parts.join(", ")
    )
}

/// Where dependency problems are reported.
struct DepReport<'a, 'c> {
    ctx: &'a Ctx<'c>,
    warnings: &'a mut Vec<String>,
    errors: &'a mut Vec<Diagnostic>,
}

impl DepReport<'_, '_> {
    fn warn(&mut self, pos: Option<Pos>, message: String) {
        self.warnings.push(self.ctx.warning(pos, message));
    }

    fn dangling(&mut self, pos: Option<Pos>, task: &str, dep: &str) {
        self.warn(
            pos,
            format!("task '{task}' depends on unknown task '{dep}'; dependency dropped"),
        );
    }

    fn bad(&mut self, task: &TaskName, pos: Option<Pos>, bad: Vec<String>) {
        for b in bad {
            self.warn(
                pos,
                format!("task '{task}': dependency {b} is not a task id; dropped"),
            );
        }
    }
}

/// Whether `d` is `N.M`, subtask M of task N.
fn is_subtask_name(d: &str, top_index: &HashMap<&str, usize>, tops: &[Top<'_>]) -> bool {
    split_points(d).any(|(p, s)| {
        top_index
            .get(p)
            .is_some_and(|&i| tops[i].subs.iter().any(|x| x.id == s))
    })
}

/// The task whose subtask `d` (`N.M`) is.
fn parent_of_subtask(
    d: &str,
    top_index: &HashMap<&str, usize>,
    sub_ids: &[HashSet<&str>],
) -> Option<usize> {
    split_points(d).find_map(|(p, s)| {
        top_index
            .get(p)
            .copied()
            .filter(|&i| sub_ids[i].contains(s))
    })
}

/// Every split of `d` at a dot into (parent, subtask).
fn split_points(d: &str) -> impl Iterator<Item = (&str, &str)> {
    d.match_indices('.')
        .map(move |(k, _)| (&d[..k], &d[k + 1..]))
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn to_names(deps: Vec<String>) -> Deps {
    // Every name here is an existing task's name, so it is valid.
    deps.into_iter()
        .filter_map(|d| TaskName::new(d).ok())
        .collect()
}

/// Description, priority and labels of a task or subtask.
fn fill(task: &mut TaskSpec, fields: &Map<String, Value>) {
    task.description = text_field(fields.get("description"));
    for (key, v) in fields {
        if CONSUMED.contains(&key.as_str()) {
            continue;
        }
        if key == PRIORITY_LABEL
            && let Some(p) = priority(v)
        {
            task.priority = p;
            // The word stays too: it picks a model (`ordo_proto::spec::level`).
            if !v.is_string() {
                continue;
            }
        }
        if let Some(v) = label_value(v) {
            task.labels.insert(key.clone(), v);
        }
    }
}

/// A subtask's id as the file gives it, unqualified: `"1.1"` or `1.1` under task `1` is `1`.
fn raw_id(parent: &str, fields: &Map<String, Value>) -> Option<String> {
    let id = fields
        .get("id")
        .and_then(id_string)
        .filter(|s| !s.is_empty())?;
    match id.strip_prefix(parent).and_then(|r| r.strip_prefix('.')) {
        Some(rest) if !rest.is_empty() => Some(rest.to_string()),
        _ => Some(id),
    }
}

/// The ids of a task's subtasks (`None` where one has none): unqualified (`raw_id`), and
/// unique: the k-th (k ≥ 2) subtask with an id already taken gets `id-k`, or the next free
/// `id-k` after it.
fn subtask_ids(parent: &str, items: &[Value]) -> Vec<Option<String>> {
    let raws: Vec<Option<String>> = items
        .iter()
        .map(|s| s.as_object().and_then(|f| raw_id(parent, f)))
        .collect();
    let given: HashSet<&str> = raws.iter().flatten().map(String::as_str).collect();
    let mut taken: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(raws.len());
    for raw in &raws {
        let Some(r) = raw else {
            out.push(None);
            continue;
        };
        let mut id = r.clone();
        let mut k = 2;
        while taken.contains(&id) {
            id = format!("{r}-{k}");
            if given.contains(id.as_str()) {
                id = r.clone();
            }
            k += 1;
        }
        taken.insert(id.clone());
        out.push(Some(id));
    }
    out
}

/// The prompt of a task: heading, context, description, details, test strategy, subtasks.
fn prompt(number: &str, fields: &Map<String, Value>, context: Option<&str>) -> String {
    let heading = match text_field(fields.get("title")) {
        Some(t) => format!("Task {number}: {t}"),
        None => format!("Task {number}"),
    };
    let description = text_field(fields.get("description")).unwrap_or_default();
    let details = text_field(fields.get("details")).unwrap_or_default();
    let strategy = text_field(fields.get("testStrategy")).unwrap_or_default();
    let mut list = String::new();
    if let Some(Value::Array(subs)) = fields.get("subtasks") {
        checklist(number, subs, 0, &mut list);
    }
    prompt_text(&[
        (None, &heading),
        (None, context.unwrap_or_default()),
        (None, &description),
        (Some("Details"), &details),
        (Some("Test strategy"), &strategy),
        (Some("Subtasks"), &list),
    ])
}

/// `- [ ] N.M title` lines for subtasks, nested ones indented.
fn checklist(prefix: &str, subs: &[Value], depth: usize, out: &mut String) {
    let ids = subtask_ids(prefix, subs);
    for (j, s) in subs.iter().enumerate() {
        let Value::Object(f) = s else { continue };
        let id = ids[j].clone().unwrap_or_else(|| (j + 1).to_string());
        let number = format!("{prefix}.{id}");
        let title = text_field(f.get("title"))
            .or_else(|| text_field(f.get("description")))
            .unwrap_or_default();
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&"  ".repeat(depth));
        out.push_str("- [ ] ");
        out.push_str(&number);
        if !title.is_empty() {
            out.push(' ');
            out.push_str(title.trim());
        }
        if let Some(Value::Array(nested)) = f.get("subtasks") {
            checklist(&number, nested, depth + 1, out);
        }
    }
}
