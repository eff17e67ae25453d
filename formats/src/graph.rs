//! `ordo graph`: a validated job's DAG as Graphviz DOT or a Mermaid flowchart.
//!
//! Task names are arbitrary user text (`$(x)`, `a"b`, `2.1`, `<script>`), so both renderers
//! give nodes generated ids (`t0`, `t1`, … in declaration order) and put names only into
//! quoted, escaped labels: the name and, when the task has one, its title (`3 (Set up the
//! database)`). Edges point from a dependency to its dependent (execution order). A flow-jump
//! job (one task at a time, following `on_success`/`on_failure`) also gets its transitions,
//! dashed and labelled with what they follow (`JobSpec::flow_edges`).

use std::fmt::Write as _;

use ordo_proto::{Dag, FlowEdge, JobSpec, TaskSpec};

/// Graphviz DOT: `dot -Tsvg` renders it. Prompt tasks are notes, exclusive tasks bold, tasks
/// allowed to fail dashed.
pub fn dot(spec: &JobSpec, dag: &Dag) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&spec.name));
    out.push_str("  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    for (i, name) in dag.names.iter().enumerate() {
        let label = spec
            .tasks
            .get(i)
            .map_or_else(|| name.to_string(), TaskSpec::label);
        let mut attrs = format!("label=\"{}\"", dot_escape(&label));
        if let Some(t) = spec.tasks.get(i) {
            let styles = styles(t);
            if t.is_prompt() {
                attrs.push_str(", shape=note");
            }
            if !styles.is_empty() {
                let _ = write!(attrs, ", style=\"{}\"", styles.join(","));
            }
            if let Some(d) = &t.description {
                let _ = write!(attrs, ", tooltip=\"{}\"", dot_escape(d));
            }
        }
        let _ = writeln!(out, "  t{i} [{attrs}];");
    }
    for (t, deps) in dag.deps.iter().enumerate() {
        for d in deps {
            let _ = writeln!(out, "  t{d} -> t{t};");
        }
    }
    for e in transitions(spec) {
        let _ = writeln!(
            out,
            "  t{} -> t{} [style=dashed, label=\"{}\"];",
            e.from,
            e.to,
            edge_label(&e)
        );
    }
    out.push_str("}\n");
    out
}

/// The transitions drawn: those of a flow-jump job, none for a DAG.
fn transitions(spec: &JobSpec) -> Vec<FlowEdge> {
    if spec.uses_flow_jumps() {
        spec.flow_edges()
    } else {
        Vec::new()
    }
}

fn edge_label(e: &FlowEdge) -> &'static str {
    match (e.success, e.declared) {
        (true, true) => "on_success",
        (true, false) => "next",
        (false, _) => "on_failure",
    }
}

/// The jumps a flow-jump job declares, as `ordo plan` lists them: `a on_success → c`,
/// `b on_failure → stop`; empty for a DAG.
pub fn jumps(spec: &JobSpec) -> Vec<String> {
    if !spec.uses_flow_jumps() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for t in &spec.tasks {
        for (field, jump) in [("on_success", &t.on_success), ("on_failure", &t.on_failure)] {
            if let Some(j) = jump {
                out.push(format!("{} {field} → {}", t.name, String::from(j.clone())));
            }
        }
    }
    out
}

fn styles(t: &TaskSpec) -> Vec<&'static str> {
    let mut s = Vec::new();
    if t.exclusive {
        s.push("bold");
    }
    if t.allow_failure {
        s.push("dashed");
    }
    s
}

/// Escapes text for a double-quoted DOT string: quotes and backslashes escaped (so no DOT
/// escape such as `\N` or `\l` is formed), newlines as `\n`, other control characters dropped.
pub fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A Mermaid flowchart (`flowchart LR`), e.g. for Markdown reports.
pub fn mermaid(spec: &JobSpec, dag: &Dag) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "%% {}", mermaid_comment(&spec.name));
    out.push_str("flowchart LR\n");
    for (i, name) in dag.names.iter().enumerate() {
        let label = mermaid_escape(
            &spec
                .tasks
                .get(i)
                .map_or_else(|| name.to_string(), TaskSpec::label),
        );
        match spec.tasks.get(i) {
            // A prompt task is drawn as a rounded box.
            Some(t) if t.is_prompt() => {
                let _ = writeln!(out, "  t{i}(\"{label}\")");
            }
            _ => {
                let _ = writeln!(out, "  t{i}[\"{label}\"]");
            }
        }
    }
    for (t, deps) in dag.deps.iter().enumerate() {
        for d in deps {
            let _ = writeln!(out, "  t{d} --> t{t}");
        }
    }
    for e in transitions(spec) {
        let _ = writeln!(out, "  t{} -. {} .-> t{}", e.from, edge_label(&e), e.to);
    }
    out
}

/// Escapes text for a quoted Mermaid label: everything that Mermaid or the HTML it renders
/// could read as syntax becomes an entity code (`#quot;`, `#35;`, …).
pub fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' | '<' | '>' | '&' | '`' | '\\' | ';' | '|' | '{' | '}' | '[' | ']' | '(' | ')'
            | '%' | '*' | '~' | '=' => {
                let _ = write!(out, "#{};", c as u32);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text for a `%%` comment line: one line, no directive (`%%{`).
fn mermaid_comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '{' || c == '}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::TaskSpec;

    fn spec(names: &[&str]) -> (JobSpec, Dag) {
        let mut spec = JobSpec {
            name: "job \"x\"\n%%{init}".into(),
            ..Default::default()
        };
        for (i, n) in names.iter().enumerate() {
            let mut t = TaskSpec::shell(n, "true");
            if i > 0 {
                t.depends_on.push(spec.tasks[i - 1].name.clone());
            }
            spec.tasks.push(t);
        }
        let dag = ordo_proto::validate::validate(&spec).unwrap();
        (spec, dag)
    }

    const NASTY: &[&str] = &[
        "$(x)",
        "a\"b",
        "2.1",
        "back\\slash\\N",
        "<b>#1;</b>",
        "end",
        "a];b",
    ];

    #[test]
    fn dot_escapes_names() {
        let (spec, dag) = spec(NASTY);
        let out = dot(&spec, &dag);
        assert!(
            out.starts_with("digraph \"job \\\"x\\\"\\n%%{init}\" {"),
            "{out}"
        );
        assert!(out.contains("t1 [label=\"a\\\"b\"]"), "{out}");
        assert!(out.contains("t3 [label=\"back\\\\slash\\\\N\"]"), "{out}");
        assert!(out.contains("t0 -> t1;"));
        // Every line is a statement; no quote is left unbalanced.
        for line in out.lines() {
            let unescaped = line.replace("\\\\", "").replace("\\\"", "");
            assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
        }
    }

    #[test]
    fn flow_jump_jobs_draw_their_transitions() {
        let mut spec = JobSpec {
            name: "flow".into(),
            ..Default::default()
        };
        for n in ["draft", "review", "publish"] {
            spec.tasks.push(TaskSpec::shell(n, "true"));
        }
        spec.tasks[1].on_failure = Some(ordo_proto::Jump::Task("draft".into()));
        spec.tasks[2].on_success = Some(ordo_proto::Jump::Stop);
        let dag = ordo_proto::validate::validate(&spec).unwrap();
        let out = dot(&spec, &dag);
        assert!(
            out.contains("t0 -> t1 [style=dashed, label=\"next\"];"),
            "{out}"
        );
        assert!(
            out.contains("t1 -> t0 [style=dashed, label=\"on_failure\"];"),
            "{out}"
        );
        assert!(!out.contains("t2 ->"), "publish stops: {out}");
        let out = mermaid(&spec, &dag);
        assert!(out.contains("t1 -. on_failure .-> t0"), "{out}");
        assert_eq!(
            jumps(&spec),
            ["review on_failure → draft", "publish on_success → stop"]
        );
        // A DAG draws no transitions.
        spec.tasks[1].on_failure = None;
        spec.tasks[2].on_success = None;
        assert!(!dot(&spec, &dag).contains("dashed"));
    }

    #[test]
    fn mermaid_uses_ids_and_entity_codes() {
        let (spec, dag) = spec(NASTY);
        let out = mermaid(&spec, &dag);
        assert!(out.contains("t1[\"a#quot;b\"]"), "{out}");
        assert!(
            out.contains("t4[\"#60;b#62;#35;1#59;#60;/b#62;\"]"),
            "{out}"
        );
        assert!(out.contains("t0[\"$#40;x#41;\"]"), "{out}");
        assert!(out.contains("t5[\"end\"]"));
        assert!(out.contains("t6[\"a#93;#59;b\"]"), "{out}");
        assert!(out.contains("t5 --> t6"));
        assert!(
            out.lines()
                .next()
                .unwrap()
                .starts_with("%% job \"x\" %% init "),
            "{out}"
        );
        for line in out.lines().skip(2) {
            assert_eq!(line.matches('"').count() % 2, 0, "{line}");
        }
    }
}
