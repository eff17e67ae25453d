//! The task graph of a validated job and its analyses: a topological order, levels (tasks that
//! can run together), each task's remaining critical path (the scheduling rank), the critical
//! path, and an estimated makespan for N workers.
//!
//! Tasks are indices into `JobSpec::tasks`; durations are unknown before a run, so analyses
//! count hops (every task weighs 1).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};

use serde::Serialize;

use crate::ids::TaskName;
use crate::spec::{ExecutionMode, ModeDecision};

#[derive(Debug, Clone)]
pub struct Dag {
    pub names: Vec<TaskName>,
    /// Dependencies of each task.
    pub deps: Vec<Vec<u32>>,
    /// Tasks that depend on each task.
    pub dependents: Vec<Vec<u32>>,
    /// A topological order (dependencies first), stable with respect to declaration order.
    pub order: Vec<u32>,
    /// Length in tasks of the longest path from each task to the end, itself included.
    pub rank: Vec<u32>,
}

/// What `ordo plan` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub tasks: usize,
    pub edges: usize,
    pub levels: Vec<Vec<TaskName>>,
    pub critical_path: Vec<TaskName>,
    pub workers: u32,
    /// The mode the job runs in (`JobSpec::mode_decision`) and why.
    pub mode: ExecutionMode,
    pub mode_reason: String,
    /// Estimated makespan in task-lengths (hops) with `workers` running at once.
    pub estimated_makespan: u32,
    /// Sequential makespan (the number of tasks) divided by the estimated one.
    pub estimated_speedup: f64,
}

impl Dag {
    /// Builds the graph; on a cycle returns its task indices in execution order.
    pub fn build(names: Vec<TaskName>, deps: Vec<Vec<u32>>) -> Result<Dag, Vec<u32>> {
        let n = names.len();
        let mut dependents = vec![Vec::new(); n];
        let mut indegree = vec![0u32; n];
        for (t, ds) in deps.iter().enumerate() {
            indegree[t] = ds.len() as u32;
            for &d in ds {
                dependents[d as usize].push(t as u32);
            }
        }
        // Kahn's algorithm with a min-heap on the index keeps declaration order among peers.
        let mut ready: BinaryHeap<Reverse<u32>> = (0..n as u32)
            .filter(|&t| indegree[t as usize] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(t)) = ready.pop() {
            order.push(t);
            for &s in &dependents[t as usize] {
                indegree[s as usize] -= 1;
                if indegree[s as usize] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        if order.len() < n {
            return Err(find_cycle(&deps).unwrap_or_default());
        }
        let mut rank = vec![1u32; n];
        for &t in order.iter().rev() {
            let best = dependents[t as usize]
                .iter()
                .map(|&s| rank[s as usize])
                .max()
                .unwrap_or(0);
            rank[t as usize] = best + 1;
        }
        Ok(Dag {
            names,
            deps,
            dependents,
            order,
            rank,
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Level of each task: 0 without dependencies, else one more than its deepest dependency.
    pub fn level_of(&self) -> Vec<u32> {
        let mut level = vec![0u32; self.len()];
        for &t in &self.order {
            level[t as usize] = self.deps[t as usize]
                .iter()
                .map(|&d| level[d as usize] + 1)
                .max()
                .unwrap_or(0);
        }
        level
    }

    /// Sets of tasks that can run together, in declaration order within each level.
    pub fn levels(&self) -> Vec<Vec<u32>> {
        let level = self.level_of();
        let depth = level.iter().max().map_or(0, |m| m + 1) as usize;
        let mut out = vec![Vec::new(); depth];
        for (t, &l) in level.iter().enumerate() {
            out[l as usize].push(t as u32);
        }
        out
    }

    /// A longest path through the graph (ties broken by declaration order).
    pub fn critical_path(&self) -> Vec<u32> {
        let Some(mut cur) = (0..self.len() as u32)
            .filter(|&t| self.deps[t as usize].is_empty())
            .max_by_key(|&t| (self.rank[t as usize], Reverse(t)))
        else {
            return Vec::new();
        };
        let mut path = vec![cur];
        while let Some(next) = self.dependents[cur as usize]
            .iter()
            .copied()
            .filter(|&s| self.rank[s as usize] + 1 == self.rank[cur as usize])
            .min()
        {
            path.push(next);
            cur = next;
        }
        path
    }

    /// List-schedules unit-length tasks on `workers` slots, longest remaining path first, and
    /// returns the number of rounds: the estimated makespan in task-lengths.
    pub fn estimate_makespan(&self, workers: u32) -> u32 {
        let workers = workers.max(1) as usize;
        let mut indegree: Vec<u32> = self.deps.iter().map(|d| d.len() as u32).collect();
        let mut ready: BinaryHeap<(u32, Reverse<u32>)> = (0..self.len() as u32)
            .filter(|&t| indegree[t as usize] == 0)
            .map(|t| (self.rank[t as usize], Reverse(t)))
            .collect();
        let mut rounds = 0;
        let mut batch = Vec::with_capacity(workers);
        while !ready.is_empty() {
            rounds += 1;
            batch.clear();
            while batch.len() < workers {
                match ready.pop() {
                    Some((_, Reverse(t))) => batch.push(t),
                    None => break,
                }
            }
            for &t in &batch {
                for &s in &self.dependents[t as usize] {
                    indegree[s as usize] -= 1;
                    if indegree[s as usize] == 0 {
                        ready.push((self.rank[s as usize], Reverse(s)));
                    }
                }
            }
        }
        rounds
    }

    /// What `ordo plan` says of a job in `mode` on `workers` slots. A sequential job runs one
    /// task at a time in `order`: one task a level, the whole order as its critical path, on
    /// one slot, so its speedup is 1.
    pub fn plan(&self, workers: u32, mode: &ModeDecision) -> Plan {
        let names = |ts: &[u32]| -> Vec<TaskName> {
            ts.iter().map(|&t| self.names[t as usize].clone()).collect()
        };
        let sequential = mode.mode == ExecutionMode::Sequential;
        let (levels, critical_path, workers, makespan) = if sequential {
            let levels = self.order.iter().map(|&t| names(&[t])).collect();
            (levels, names(&self.order), 1, self.len() as u32)
        } else {
            let levels = self.levels().iter().map(|l| names(l)).collect();
            let makespan = self.estimate_makespan(workers);
            (
                levels,
                names(&self.critical_path()),
                workers.max(1),
                makespan,
            )
        };
        Plan {
            tasks: self.len(),
            edges: self.deps.iter().map(Vec::len).sum(),
            levels,
            critical_path,
            workers,
            mode: mode.mode,
            mode_reason: mode.to_string(),
            estimated_makespan: makespan,
            estimated_speedup: if makespan == 0 {
                1.0
            } else {
                self.len() as f64 / makespan as f64
            },
        }
    }
}

/// Finds a cycle among `deps` (task index → its dependencies), returned in execution order
/// starting at its lowest index, or `None` if the graph is acyclic. Of several cycles, the one
/// through the earliest-declared task is named. Uses Kosaraju's SCCs, which are iterative:
/// petgraph's Tarjan recurses once per task of a path and overflowed the stack on a cycle
/// 100,000 tasks long.
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
    let scc = petgraph::algo::kosaraju_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1 || deps[c[0].index()].contains(&(c[0].index() as u32)))
        .min_by_key(|c| c.iter().map(|n| n.index()).min())?;
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

    /// A tiny deterministic generator so property tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    fn random_dag(rng: &mut Rng) -> Dag {
        let n = 1 + rng.below(60) as usize;
        // Edges only from lower to higher positions of a random permutation: acyclic.
        let mut perm: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            perm.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut deps = vec![Vec::new(); n];
        let density = 1 + rng.below(4);
        for j in 1..n {
            for i in 0..j {
                if rng.below(10) < density {
                    deps[perm[j] as usize].push(perm[i]);
                }
            }
        }
        let names = (0..n)
            .map(|i| TaskName::new(format!("t{i}")).unwrap())
            .collect();
        Dag::build(names, deps).unwrap()
    }

    /// Longest path by brute force over the topological order, for comparison.
    fn longest_path_len(dag: &Dag) -> u32 {
        let mut best = vec![1u32; dag.len()];
        for &t in &dag.order {
            for &d in &dag.deps[t as usize] {
                best[t as usize] = best[t as usize].max(best[d as usize] + 1);
            }
        }
        best.into_iter().max().unwrap_or(0)
    }

    #[test]
    fn levels_respect_edges_and_critical_path_is_longest() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..500 {
            let dag = random_dag(&mut rng);
            let level = dag.level_of();
            for (t, ds) in dag.deps.iter().enumerate() {
                for &d in ds {
                    assert!(level[d as usize] < level[t], "edge {d}->{t} within a level");
                }
            }
            let levels = dag.levels();
            assert_eq!(levels.iter().map(Vec::len).sum::<usize>(), dag.len());
            let path = dag.critical_path();
            assert_eq!(path.len() as u32, longest_path_len(&dag));
            assert_eq!(path.len(), levels.len());
            for w in path.windows(2) {
                assert!(
                    dag.deps[w[1] as usize].contains(&w[0]),
                    "path is not a chain"
                );
            }
            // The estimate lies between the critical path and the sequential time.
            for workers in [1, 2, 4, 64] {
                let m = dag.estimate_makespan(workers) as usize;
                assert!(m >= path.len() && m <= dag.len());
                if workers == 1 {
                    assert_eq!(m, dag.len());
                }
            }
        }
    }

    #[test]
    fn order_is_topological_and_stable() {
        let names = ["a", "b", "c", "d"]
            .map(|n| TaskName::new(n).unwrap())
            .to_vec();
        let dag = Dag::build(names, vec![vec![2], vec![], vec![], vec![0, 1]]).unwrap();
        assert_eq!(dag.order, vec![1, 2, 0, 3]);
        assert_eq!(dag.levels(), vec![vec![1, 2], vec![0], vec![3]]);
        assert_eq!(dag.critical_path(), vec![2, 0, 3]);
    }
}
