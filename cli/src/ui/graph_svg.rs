//! A job's DAG as SVG, drawn on the server in the levels layout: one column per level (tasks
//! whose dependencies all sit in earlier columns), edges from a dependency to its dependent.
//! What keeps a big job's graph small enough for a browser:
//! - tasks of one level with the same dependencies form a group; a group of more than
//!   `COLLAPSE` tasks is one box with its count and a bar of its tasks' states;
//! - a level shows at most `MAX_PER_LEVEL` boxes, the rest one "+N more" box;
//! - at most `MAX_LEVELS` columns: the first and last halves, one gap column between.
//!
//! So a 10,000-task fan-out is three boxes, and the SVG's size is bounded whatever the job.
//!
//! Boxes of single tasks link to the task's page and carry `data-task`, so the live script
//! recolours them; the critical path's boxes and the edges between them are outlined bold.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use ordo_proto::{Dag, TaskPhase};

use ordo_report::cut;
use ordo_report::html::{esc, phase_class};

/// Groups larger than this are drawn as one box.
const COLLAPSE: usize = 4;
const MAX_PER_LEVEL: usize = 24;
const MAX_LEVELS: usize = 40;
const COL_W: f64 = 190.0;
const BOX_W: f64 = 150.0;
const ROW_H: f64 = 34.0;
const BOX_H: f64 = 24.0;
const PAD: f64 = 10.0;

/// One box: a task, or several (a collapsed group, the overflow of a level, a gap of levels).
struct Node {
    tasks: Vec<u32>,
    kind: Kind,
}

#[derive(PartialEq)]
enum Kind {
    Task,
    Group,
    More,
    Gap { levels: usize },
}

/// The SVG of `dag`, each task named by `labels` (its name and title), coloured by `phases`
/// (both indexed like the spec's tasks) and `critical` ones outlined.
pub fn render(
    job: &str,
    dag: &Dag,
    labels: &[String],
    phases: &[TaskPhase],
    critical: &[bool],
) -> String {
    let label_of = |t: u32| {
        labels
            .get(t as usize)
            .map_or_else(|| dag.names[t as usize].as_str(), String::as_str)
    };
    let levels = dag.levels();
    let phase = |t: u32| {
        phases
            .get(t as usize)
            .copied()
            .unwrap_or(TaskPhase::Pending)
    };
    let crit = |t: u32| critical.get(t as usize).copied().unwrap_or(false);

    // Columns: every level, or the first and last halves with a gap column between.
    let mut columns: Vec<Vec<Node>> = Vec::new();
    let shown: Vec<Option<&Vec<u32>>> = if levels.len() > MAX_LEVELS {
        let half = MAX_LEVELS / 2;
        let mut v: Vec<Option<&Vec<u32>>> = levels[..half].iter().map(Some).collect();
        v.push(None);
        v.extend(levels[levels.len() - half..].iter().map(Some));
        v
    } else {
        levels.iter().map(Some).collect()
    };
    for col in &shown {
        match col {
            Some(level) => columns.push(level_nodes(dag, level)),
            None => {
                let half = MAX_LEVELS / 2;
                let hidden = &levels[half..levels.len() - half];
                columns.push(vec![Node {
                    tasks: hidden.iter().flatten().copied().collect(),
                    kind: Kind::Gap {
                        levels: hidden.len(),
                    },
                }]);
            }
        }
    }

    // Where each task is drawn.
    let mut at: HashMap<u32, (usize, usize)> = HashMap::new();
    for (c, nodes) in columns.iter().enumerate() {
        for (r, n) in nodes.iter().enumerate() {
            for &t in &n.tasks {
                at.insert(t, (c, r));
            }
        }
    }
    // Edges between boxes, once each; bold where consecutive critical tasks meet.
    let mut edges: HashSet<((usize, usize), (usize, usize))> = HashSet::new();
    let mut crit_edges: HashSet<((usize, usize), (usize, usize))> = HashSet::new();
    for (t, deps) in dag.deps.iter().enumerate() {
        let Some(&to) = at.get(&(t as u32)) else {
            continue;
        };
        for &d in deps {
            let Some(&from) = at.get(&d) else { continue };
            if from == to {
                continue;
            }
            edges.insert((from, to));
            if crit(d) && crit(t as u32) {
                crit_edges.insert((from, to));
            }
        }
    }

    let rows = columns.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let width = PAD * 2.0 + columns.len().max(1) as f64 * COL_W - (COL_W - BOX_W);
    let height = PAD * 2.0 + rows as f64 * ROW_H - (ROW_H - BOX_H);
    let pos = |(c, r): (usize, usize)| (PAD + c as f64 * COL_W, PAD + r as f64 * ROW_H);
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "<svg class=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\" aria-label=\"graph of {} tasks in {} levels\">",
        dag.len(),
        levels.len()
    );
    let mut sorted: Vec<_> = edges.iter().copied().collect();
    sorted.sort_unstable();
    for (from, to) in sorted {
        let (x1, y1) = pos(from);
        let (x2, y2) = pos(to);
        let (x1, y1, x2, y2) = (x1 + BOX_W, y1 + BOX_H / 2.0, x2, y2 + BOX_H / 2.0);
        let mid = (x1 + x2) / 2.0;
        let class = if crit_edges.contains(&(from, to)) {
            "edge crit"
        } else {
            "edge"
        };
        let _ = writeln!(
            out,
            "<path class=\"{class}\" d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\"/>"
        );
    }
    for (c, nodes) in columns.iter().enumerate() {
        for (r, n) in nodes.iter().enumerate() {
            let (x, y) = pos((c, r));
            let any_crit = n.tasks.iter().any(|&t| crit(t));
            let crit_class = if any_crit { " crit" } else { "" };
            match n.kind {
                Kind::Task => {
                    let t = n.tasks[0];
                    let name = label_of(t);
                    let p = phase(t);
                    let _ = writeln!(
                        out,
                        "<a href=\"/jobs/{job}/tasks/{t}\"><g class=\"node\" data-task=\"{t}\">\
                         <title>{} — {}</title><rect class=\"box {}{crit_class}\" data-f=\"node\" x=\"{x:.1}\" y=\"{y:.1}\" \
                         width=\"{BOX_W}\" height=\"{BOX_H}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g></a>",
                        esc(name),
                        p.name(),
                        phase_class(p),
                        x + 6.0,
                        y + BOX_H / 2.0 + 4.0,
                        esc(&cut(name, 22))
                    );
                }
                _ => {
                    // A bar of the tasks' states, in a fixed order, under the count.
                    let mut counts: Vec<(TaskPhase, usize)> = Vec::new();
                    for &t in &n.tasks {
                        let p = phase(t);
                        match counts.iter_mut().find(|(q, _)| *q == p) {
                            Some((_, k)) => *k += 1,
                            None => counts.push((p, 1)),
                        }
                    }
                    counts.sort_by_key(|(p, _)| *p);
                    let total = n.tasks.len();
                    let label = match n.kind {
                        Kind::Gap { levels } => format!("… {levels} levels, {total} tasks …"),
                        Kind::More => format!("+{total} more"),
                        _ => format!("{total} tasks"),
                    };
                    let first = n.tasks.first().map_or("", |&t| label_of(t));
                    let title: Vec<String> = counts
                        .iter()
                        .map(|(p, k)| format!("{k} {}", p.name()))
                        .collect();
                    let _ = write!(
                        out,
                        "<g class=\"node group\"><title>{} (first: {}): {}</title>\
                         <rect class=\"box group{crit_class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BOX_W}\" height=\"{BOX_H}\"/>",
                        esc(&label),
                        esc(first),
                        esc(&title.join(", "))
                    );
                    let mut bx = x + 2.0;
                    let inner = BOX_W - 4.0;
                    for (p, k) in &counts {
                        let w = inner * *k as f64 / total as f64;
                        let _ = write!(
                            out,
                            "<rect class=\"seg {}\" x=\"{bx:.1}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"4\"/>",
                            phase_class(*p),
                            y + BOX_H - 6.0
                        );
                        bx += w;
                    }
                    let _ = writeln!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
                        x + 6.0,
                        y + BOX_H / 2.0 + 2.0,
                        esc(&label)
                    );
                }
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// One level's boxes: groups by dependencies (collapsed when large), then the level's cap.
fn level_nodes(dag: &Dag, level: &[u32]) -> Vec<Node> {
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let mut by_deps: HashMap<&[u32], usize> = HashMap::new();
    for &t in level {
        let deps = dag.deps[t as usize].as_slice();
        match by_deps.get(deps) {
            Some(&g) => groups[g].push(t),
            None => {
                by_deps.insert(deps, groups.len());
                groups.push(vec![t]);
            }
        }
    }
    let mut nodes: Vec<Node> = Vec::new();
    for g in groups {
        if g.len() > COLLAPSE {
            nodes.push(Node {
                tasks: g,
                kind: Kind::Group,
            });
        } else {
            nodes.extend(g.into_iter().map(|t| Node {
                tasks: vec![t],
                kind: Kind::Task,
            }));
        }
    }
    if nodes.len() > MAX_PER_LEVEL {
        let rest: Vec<u32> = nodes
            .drain(MAX_PER_LEVEL - 1..)
            .flat_map(|n| n.tasks)
            .collect();
        nodes.push(Node {
            tasks: rest,
            kind: Kind::More,
        });
    }
    nodes
}

#[cfg(test)]
mod tests {
    use ordo_proto::TaskName;

    use super::*;

    fn dag(n: usize, deps: impl Fn(usize) -> Vec<u32>) -> Dag {
        let names = (0..n)
            .map(|i| TaskName::new(format!("t{i}")).unwrap())
            .collect();
        Dag::build(names, (0..n).map(deps).collect()).unwrap()
    }

    #[test]
    fn a_wide_fan_out_is_three_boxes() {
        // root → 10,000 → sink
        let n = 10_002;
        let d = dag(n, |i| match i {
            0 => vec![],
            i if i == n - 1 => (1..(n - 1) as u32).collect(),
            _ => vec![0],
        });
        let phases = vec![TaskPhase::Succeeded; n];
        let svg = render("j", &d, &[], &phases, &vec![false; n]);
        assert_eq!(svg.matches("<g class=\"node").count(), 3, "{svg}");
        assert!(svg.contains("10000 tasks"));
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.len() < 5_000, "{} bytes", svg.len());
    }

    #[test]
    fn long_chains_and_wide_levels_are_bounded() {
        let chain = dag(5_000, |i| if i == 0 { vec![] } else { vec![i as u32 - 1] });
        let svg = render("j", &chain, &[], &[], &vec![true; 5_000]);
        assert!(svg.contains("levels, 4960 tasks"), "gap column");
        assert_eq!(svg.matches("<g class=\"node").count(), MAX_LEVELS + 1);
        assert!(svg.contains("edge crit"));
        // 200 independent chains of 2: distinct dependencies, so the level is capped.
        let wide = dag(400, |i| {
            if i < 200 {
                vec![]
            } else {
                vec![i as u32 - 200]
            }
        });
        let svg = render("j", &wide, &[], &[], &[]);
        assert!(
            svg.contains(&format!("+{} more", 200 - (MAX_PER_LEVEL - 1))),
            "{svg}"
        );
    }

    #[test]
    fn names_are_escaped() {
        let names = vec![TaskName::new("<script>alert(1)</script>").unwrap()];
        let d = Dag::build(names, vec![vec![]]).unwrap();
        let svg = render("j", &d, &[], &[TaskPhase::Running], &[true]);
        assert!(!svg.contains("<script"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("o-running crit"));
    }
}
