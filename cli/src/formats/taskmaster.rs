//! TaskMaster `tasks.json`: tagged `{"master":{"tasks":[…],"metadata":{…}}, …}` (the tag is
//! `LoadOptions::tag`, `master` by default) or untagged `{"tasks":[…]}`.
//!
//! Ids are integers or strings; dependencies are integers, `"N.M"` strings (subtask M of task
//! N) or slugs.
//!
//! - By default each top-level task becomes one prompt task named by its id. The prompt holds
//!   its title, description, details, test strategy and its subtasks as a checklist
//!   (`- [ ] N.M title`). A dependency on subtask `N.M` means task `N` (self-references are
//!   dropped).
//! - With `expand_subtasks`, subtask `M` of task `N` becomes the prompt task `N.M`; it depends
//!   on task `N`'s dependencies and on its own, where an integer or slug names a sibling
//!   (`N.k`) and an `"N.M"` string names that subtask. Task `N` stays a prompt task and
//!   depends on all its subtasks.
//!
//! Priority `high`/`medium`/`low` becomes 2/1/0. Fields ordo has no place for (`title`,
//! `status`, `agentHint`, `assignee`, …) are kept as labels, non-strings as JSON text.
//! Dependencies on tasks that do not exist are dropped with a warning naming both tasks, as
//! TaskMaster itself tolerates them.
//!
//! `Converted::sources` says which task or subtask of the file each task is, for
//! `--update-source` (`write_back`).
//!
//! Statuses: unless `LoadOptions::include_done`, tasks whose `status` is `done` (counted as
//! succeeded), `cancelled` or `deferred` are left out of the job with a warning each (an
//! expanded subtask takes its parent's status when the parent's is one of those); a
//! dependency on a done task is dropped, and a task that depends on a cancelled or deferred
//! one is left out too (with a warning), as it could not run.

use std::collections::{HashMap, HashSet};

use ordo_proto::{JobSpec, TaskName, TaskSpec};
use serde_json::{Map, Value};

use super::write_back::{Sources, TaskRef};
use super::{
    Converted, Ctx, Diagnostic, Pos, add_task, converted, dependency_ids, id_string, label_value,
    pointer_key, priority, prompt_text, task_name, text_field,
};

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
    id: String,
    fields: &'a Map<String, Value>,
    pos: Option<Pos>,
    ptr: String,
}

pub(super) fn parse(ctx: &Ctx<'_>) -> Result<Converted, Vec<Diagnostic>> {
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
            let tag = ctx.opts.tag.as_deref().unwrap_or("master");
            match root.get(tag) {
                Some(Value::Object(h)) if matches!(h.get("tasks"), Some(Value::Array(_))) => {
                    read_tag = Some(tag.to_string());
                    (format!("/{}", pointer_key(tag)), h)
                }
                _ => {
                    let mut tags: Vec<&str> = root
                        .iter()
                        .filter(|(_, v)| matches!(v.get("tasks"), Some(Value::Array(_))))
                        .map(|(k, _)| k.as_str())
                        .collect();
                    tags.sort_unstable();
                    let message = if tags.is_empty() {
                        "no TaskMaster tasks found: expected {\"tasks\":[…]} or tags such as \
                         {\"master\":{\"tasks\":[…]}}"
                            .to_string()
                    } else {
                        format!(
                            "TaskMaster tag {tag:?} not found; available tags: {}",
                            tags.join(", ")
                        )
                    };
                    return Err(vec![ctx.diag(at.get(""), message)]);
                }
            }
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
        let mut subs = Vec::new();
        match fields.get("subtasks") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
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
                    let sid = match sfields.get("id").and_then(id_string) {
                        Some(s) if !s.is_empty() => s,
                        _ if !expand => (j + 1).to_string(),
                        _ => {
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
                    subs.push(Sub {
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
    let mut deps_out = Deps {
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
    if !ctx.opts.include_done {
        omit_finished(ctx, &mut spec, &mut positions, &mut warnings);
    }
    sources.retain(|name, _| spec.tasks.iter().any(|t| &t.name == name));
    let mut conv = converted(spec, positions, warnings, errors)?;
    conv.sources = Some(sources);
    Ok(conv)
}

/// Why a TaskMaster status means the task is not to run, if it does.
fn finished(status: &str) -> Option<&'static str> {
    match status.trim().to_ascii_lowercase().as_str() {
        "done" | "completed" | "complete" => Some("already done"),
        "cancelled" | "canceled" => Some("cancelled"),
        "deferred" => Some("deferred"),
        _ => None,
    }
}

/// Leaves out the tasks whose status (or, for an expanded subtask, whose parent's status) is
/// done, cancelled or deferred, and the tasks that depend on a cancelled or deferred one (or
/// on a task left out for that reason), with a warning each; drops the dependencies on done
/// tasks, which count as succeeded.
fn omit_finished(
    ctx: &Ctx<'_>,
    spec: &mut JobSpec,
    positions: &mut HashMap<TaskName, Pos>,
    warnings: &mut Vec<String>,
) {
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
                .find(|d| gone.get(*d).is_some_and(|(why, _)| *why != "already done"))
            {
                more.push((t.name.clone(), d.clone()));
            }
        }
        if more.is_empty() {
            break;
        }
        for (t, d) in more {
            gone.insert(t, ("left out", Some(d)));
        }
    }
    for t in &spec.tasks {
        let Some((why, by)) = gone.get(&t.name) else {
            continue;
        };
        let message = match by {
            None => format!(
                "task '{}' is {why}: not run (--include-done runs it)",
                t.name
            ),
            Some(d) => {
                let what = gone.get(d).map(|(w, _)| *w).unwrap_or("left out");
                format!(
                    "task '{}' depends on task '{d}', which is {what}: not run",
                    t.name
                )
            }
        };
        warnings.push(ctx.warning(positions.get(&t.name).copied(), message));
    }
    spec.tasks.retain(|t| !gone.contains_key(&t.name));
    positions.retain(|name, _| !gone.contains_key(name));
    for t in &mut spec.tasks {
        t.depends_on.retain(|d| !gone.contains_key(d));
    }
}

/// Where dependency problems are reported.
struct Deps<'a, 'c> {
    ctx: &'a Ctx<'c>,
    warnings: &'a mut Vec<String>,
    errors: &'a mut Vec<Diagnostic>,
}

impl Deps<'_, '_> {
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

fn to_names(deps: Vec<String>) -> Vec<TaskName> {
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
        if key == "priority"
            && let Some(p) = priority(v)
        {
            task.priority = p;
            continue;
        }
        if let Some(v) = label_value(v) {
            task.labels.insert(key.clone(), v);
        }
    }
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
    for (j, s) in subs.iter().enumerate() {
        let Value::Object(f) = s else { continue };
        let id = f
            .get("id")
            .and_then(id_string)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| (j + 1).to_string());
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
