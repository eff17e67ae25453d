//! Ground truth for the fault suite (issue 5). Every test task appends one line when it starts
//! and one when it ends to a ledger file opened with O_APPEND (`>>`), so the file's line order
//! is the real order of those moments. After the system goes quiet, `check` compares the ledger
//! with the coordinator's record (`ordo report --format json`) and asserts docs/design.md, "Fencing
//! and delivery":
//! - each task has exactly one terminal record, and it is a success;
//! - every execution whose result was published is in the record: applied, or ignored as stale
//!   or duplicate (an execution on a worker killed mid-task may have no published result);
//! - every applied success comes from an execution the ledger saw end with exit code 0;
//! - no task started before the applied execution of each of its dependencies ended;
//! - no process of a finished task is alive 2 s after the job ended.
//!
//! Jobs have three shapes (`Shape`): a chain, a fan-out (one root, many leaves, one join) and
//! a lattice. `Table` collects what each fault test measured into `docs/reliability.md`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{lines, pids_with_env, wait_until};

/// The variable every test task carries, to find its processes.
pub const MARK_VAR: &str = "ORDO_FAULT_MARK";

/// A job's graph.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// t0 → t1 → … → t(n-1).
    Chain(usize),
    /// root → n-2 leaves → join.
    FanOut(usize),
    /// r×c grid: each cell depends on the cell above and the cell to its left.
    Lattice(usize, usize),
}

/// The three shapes of issue 5.
pub const SHAPES: [Shape; 3] = [Shape::Chain(50), Shape::FanOut(200), Shape::Lattice(20, 20)];

impl Shape {
    pub fn name(&self) -> String {
        match self {
            Shape::Chain(n) => format!("chain-{n}"),
            Shape::FanOut(n) => format!("fanout-{n}"),
            Shape::Lattice(r, c) => format!("lattice-{r}x{c}"),
        }
    }

    /// Task names and their dependencies, in declaration order.
    pub fn tasks(&self) -> Vec<(String, Vec<String>)> {
        match *self {
            Shape::Chain(n) => (0..n)
                .map(|i| {
                    let deps = if i == 0 {
                        vec![]
                    } else {
                        vec![format!("t{}", i - 1)]
                    };
                    (format!("t{i}"), deps)
                })
                .collect(),
            Shape::FanOut(n) => {
                let leaves: Vec<String> = (1..n - 1).map(|i| format!("leaf{i}")).collect();
                let mut out = vec![("root".to_string(), vec![])];
                out.extend(leaves.iter().map(|l| (l.clone(), vec!["root".to_string()])));
                out.push(("join".to_string(), leaves));
                out
            }
            Shape::Lattice(rows, cols) => {
                let mut out = Vec::new();
                for r in 0..rows {
                    for c in 0..cols {
                        let mut deps = Vec::new();
                        if r > 0 {
                            deps.push(format!("r{}c{c}", r - 1));
                        }
                        if c > 0 {
                            deps.push(format!("r{r}c{}", c - 1));
                        }
                        out.push((format!("r{r}c{c}"), deps));
                    }
                }
                out
            }
        }
    }
}

/// One ledger file and the mark its tasks carry.
pub struct Ledger {
    pub path: PathBuf,
    pub mark: String,
}

/// One execution of a task, as the ledger saw it.
#[derive(Clone, Debug)]
pub struct Execution {
    pub job: String,
    pub task: String,
    pub attempt: u32,
    pub delivery: u32,
    pub worker: String,
    /// Line numbers of its start and (if it ended) its end, with the exit code.
    pub start: usize,
    pub end: Option<(usize, i32)>,
}

/// What `check` counted, for the reliability table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub tasks: usize,
    pub executions: usize,
    pub stale: usize,
    pub duplicates: usize,
    /// Results for attempts never dispatched (only forged ones should be).
    pub unknown: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.tasks += o.tasks;
        self.executions += o.executions;
        self.stale += o.stale;
        self.duplicates += o.duplicates;
        self.unknown += o.unknown;
    }
}

impl Ledger {
    pub fn new(dir: &Path) -> Ledger {
        let mark = format!(
            "{}-{}",
            std::process::id(),
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        Ledger {
            path: dir.join("ledger"),
            mark,
        }
    }

    /// A TOML job of `shape` whose every task runs `work` (sh) between its two ledger lines.
    pub fn spec(&self, shape: Shape, work: &str) -> String {
        let path = self.path.display();
        let fields = "$ORDO_JOB_ID $ORDO_TASK $ORDO_ATTEMPT $ORDO_DELIVERY $ORDO_WORKER $$";
        let command = format!(
            "echo \"S {fields}\" >> {path}; {work}\nrc=$?; echo \"E {fields} $rc\" >> {path}; exit $rc"
        );
        let mut toml = format!(
            "name = \"fault-{}\"\n[settings]\nenv = {{ {MARK_VAR} = \"{}\" }}\n",
            shape.name(),
            self.mark
        );
        for (name, deps) in shape.tasks() {
            let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
            toml.push_str(&format!(
                "[[tasks]]\nname = \"{name}\"\ncommand = '''\n{command}'''\ndepends_on = [{}]\n",
                deps.join(", ")
            ));
        }
        toml
    }

    /// Every execution recorded so far, in start order.
    pub fn executions(&self) -> Vec<Execution> {
        let mut out: Vec<Execution> = Vec::new();
        let mut open: HashMap<(String, String, u32, u32, String, String), usize> = HashMap::new();
        for (n, line) in lines(&self.path).iter().enumerate() {
            // A task killed (SIGKILL) while appending its line across a page boundary leaves
            // the part before the boundary: the line is torn, and the next append may be glued
            // to it. The torn record is lost (its execution stays open, as a killed one is);
            // a record glued after it is read from where it starts.
            let Some(line) = whole_record(line) else {
                continue;
            };
            let f: Vec<&str> = line.split(' ').collect();
            let key = (
                f[1].to_string(),
                f[2].to_string(),
                f[3].parse().unwrap_or(0),
                f[4].parse().unwrap_or(0),
                f[5].to_string(),
                f[6].to_string(),
            );
            match f[0] {
                "S" => {
                    open.insert(key.clone(), out.len());
                    out.push(Execution {
                        job: key.0,
                        task: key.1,
                        attempt: key.2,
                        delivery: key.3,
                        worker: key.4,
                        start: n,
                        end: None,
                    });
                }
                "E" => {
                    let i = open.remove(&key).unwrap_or_else(|| {
                        panic!("ledger line {n} ends what never started: {line}")
                    });
                    out[i].end = Some((n, f.get(7).and_then(|c| c.parse().ok()).unwrap_or(-1)));
                }
                other => panic!("ledger line {n}: unknown kind {other:?}"),
            }
        }
        out
    }

    /// Executions started so far (polled by tests to time faults).
    pub fn starts(&self) -> usize {
        lines(&self.path)
            .iter()
            .filter(|l| l.starts_with("S "))
            .count()
    }

    /// Asserts the invariants for `job` of `shape` against its `report`. Executions on
    /// `lossy` workers (killed mid-task) may lack a published result.
    pub fn check(&self, job: &str, shape: Shape, report: &Value, lossy: &[String]) -> Tally {
        let context = || format!("job {job} ({})", shape.name());
        let execs: Vec<Execution> = self
            .executions()
            .into_iter()
            .filter(|e| e.job == job)
            .collect();
        let tasks = report["tasks"].as_array().expect("report tasks");
        let shape_tasks = shape.tasks();
        assert_eq!(tasks.len(), shape_tasks.len(), "{}", context());
        assert_eq!(
            report["summary"]["outcome"],
            "succeeded",
            "{}: {}",
            context(),
            report["summary"]
        );

        // Which execution each task's record applied.
        let mut applied: BTreeMap<String, (u32, u32, String)> = BTreeMap::new();
        let mut tally = Tally {
            tasks: tasks.len(),
            executions: execs.len(),
            ..Tally::default()
        };
        for t in tasks {
            let name = t["name"].as_str().unwrap().to_string();
            assert_eq!(t["state"], "succeeded", "{}: task {name}: {t}", context());
            let runs = t["runs"].as_array().unwrap();
            let wins: Vec<&Value> = runs
                .iter()
                .filter(|r| r["outcome"] == "succeeded")
                .collect();
            assert_eq!(
                wins.len(),
                1,
                "{}: task {name} has {} successes: {runs:?}",
                context(),
                wins.len()
            );
            for r in runs {
                let key = (
                    name.clone(),
                    r["attempt"].as_u64().unwrap() as u32,
                    r["delivery"].as_u64().unwrap() as u32,
                    r["worker"].as_str().unwrap().to_string(),
                );
                if r["outcome"] == "succeeded" {
                    // Applied successes come from an execution that ended with 0.
                    assert!(
                        execs.iter().any(|e| (
                            e.task.as_str(),
                            e.attempt,
                            e.delivery,
                            e.worker.as_str()
                        ) == (key.0.as_str(), key.1, key.2, key.3.as_str())
                            && matches!(e.end, Some((_, 0)))),
                        "{}: task {name}: applied run {r} has no ledger end",
                        context()
                    );
                    applied.insert(name.clone(), (key.1, key.2, key.3.clone()));
                }
            }
            for i in t["ignored"].as_array().unwrap() {
                match i["kind"].as_str() {
                    Some("stale") => tally.stale += 1,
                    Some("duplicate") => tally.duplicates += 1,
                    Some("unknown") => tally.unknown += 1,
                    other => panic!("{}: task {name}: result of kind {other:?}: {i}", context()),
                }
            }
        }

        // Every ended execution is reflected, unless its worker was killed.
        let missing = self.unreflected(job, report, lossy);
        assert!(
            missing.is_empty(),
            "{}: executions ended but their results are not in the record: {missing:?}",
            context()
        );

        // Order: a task starts only after its dependencies' applied executions ended.
        let end_of = |task: &str| -> usize {
            let (a, d, w) = &applied[task];
            execs
                .iter()
                .find(|e| e.task == task && e.attempt == *a && e.delivery == *d && &e.worker == w)
                .and_then(|e| e.end)
                .map(|(line, _)| line)
                .expect("applied execution ended")
        };
        for (name, deps) in &shape_tasks {
            for e in execs.iter().filter(|e| &e.task == name) {
                for d in deps {
                    assert!(
                        e.start > end_of(d),
                        "{}: {name} started (ledger line {}) before {d} ended (line {})",
                        context(),
                        e.start,
                        end_of(d)
                    );
                }
            }
        }
        tally
    }

    /// Executions of `job` that ended, on workers not in `lossy`, whose result the record
    /// lacks (neither applied nor ignored).
    pub fn unreflected(&self, job: &str, report: &Value, lossy: &[String]) -> Vec<Execution> {
        let mut reflected = Vec::new();
        for t in report["tasks"].as_array().into_iter().flatten() {
            let name = t["name"].as_str().unwrap_or_default();
            for r in t["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(t["ignored"].as_array().into_iter().flatten())
            {
                reflected.push((
                    name.to_string(),
                    r["attempt"].as_u64().unwrap_or(0) as u32,
                    r["delivery"].as_u64().unwrap_or(0) as u32,
                    r["worker"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        self.executions()
            .into_iter()
            .filter(|e| e.job == job && e.end.is_some() && !lossy.contains(&e.worker))
            .filter(|e| {
                !reflected.contains(&(e.task.clone(), e.attempt, e.delivery, e.worker.clone()))
            })
            .collect()
    }

    /// Asserts that no process of these tasks is alive 2 s from now at the latest.
    pub fn assert_no_leftovers(&self) {
        let mut left = Vec::new();
        let gone = wait_until(Duration::from_secs(2), || {
            left = pids_with_env(MARK_VAR, &self.mark);
            left.is_empty()
        });
        let described: Vec<String> = left.iter().map(|&pid| describe_process(pid)).collect();
        assert!(
            gone,
            "task processes still alive 2 s after the end: {described:?}"
        );
    }
}

/// The last whole ledger record in `line` (`S` or `E` and at least six fields), if any: the
/// line itself, or a record glued after a torn one.
fn whole_record(line: &str) -> Option<&str> {
    let mut starts = line
        .char_indices()
        .filter(|&(i, c)| (c == 'S' || c == 'E') && line[i + 1..].starts_with(' '))
        .map(|(i, _)| i);
    starts
        .rfind(|&i| line[i..].split(' ').count() >= 7)
        .map(|i| &line[i..])
}

/// Tasks a job's `ordo status --output json` counts as succeeded (from its summary, which
/// counts every task even when the list leaves some out).
pub fn succeeded(status: &Value) -> Option<usize> {
    status["succeeded"].as_u64().map(|n| n as usize)
}

/// One row of docs/reliability.md.
pub struct Row {
    /// The fault's number in issue 5 and what was done.
    pub fault: String,
    pub seeds: usize,
    pub tally: Tally,
    /// Longest time from a fault until the record advanced (or the tasks ran elsewhere).
    pub recovery: Option<Duration>,
}

const TABLE_HEAD: &str = "# Reliability: what the fault suite measured

Written by the fault suite (`tests/integration/fault_suite.rs`, row 9 by
`tests/integration/deploy.rs`) each time it runs; the numbers below are from the last run on the
machine that committed this file. Rows 1–4, 8, 9, 12 and 14 ran the three job shapes of issue 5 at once
(a 50-task chain, a 200-task fan-out, a 20×20 lattice: 650 tasks) for each seed and checked the
ledger invariants listed in `tests/harness/ledger.rs` after each; row 7 ran the chain alone,
rows 5, 6 and 10 jobs of their own (row 10: a worktree job on a shared repository, whose ledger
is the integration branch: each task's change there, brought by exactly one commit). Row 13
(`tests/integration/approvals.rs`, `notify.rs`, `queue.rs`, `speculation.rs`) puts quality
gates, notifications, integration batches and speculation under faults: its ledgers are the
integration branch and the webhook receiver's delivery ids.
*Executions* counts task processes started (the ledger's start lines); more than the tasks
means work ran again after a fault. *Stale* and *duplicate* count results the coordinator
recorded and ignored. *Recovery* is the longest time from a fault until the coordinator's record
advanced again (for a worker fault: until the dead or frozen worker's tasks started elsewhere,
which waits out the ack wait of 2 s). Run it longer with
`ORDO_SOAK=1` (see README).

| fault | seeds | tasks | executions | stale | duplicate | recovery |
|---|---|---|---|---|---|---|
";

/// Stores `row` and rewrites docs/reliability.md from every row stored so far.
pub fn record(key: &str, row: Row) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = crate::bin_dir().join("reliability");
    std::fs::create_dir_all(&dir).unwrap();
    let recovery = row
        .recovery
        .map_or("–".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    let t = row.tally;
    let line = format!(
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        row.fault, row.seeds, t.tasks, t.executions, t.stale, t.duplicates, recovery
    );
    std::fs::write(dir.join(key), line).unwrap();
    let mut rows: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    rows.sort();
    let mut doc = TABLE_HEAD.to_string();
    for (_, r) in rows {
        doc.push_str(&r);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reliability.md");
    // The sections after the table (security) are written by hand: kept as they are.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(at) = old.find(HAND_WRITTEN) {
        doc.push('\n');
        doc.push_str(&old[at + 1..]);
    }
    std::fs::write(path, doc).unwrap();
}

/// Where the hand-written part of docs/reliability.md starts.
const HAND_WRITTEN: &str = "\n## Security";

/// A process for a failure message: pid, command line, and the ordo variables it runs under.
fn describe_process(pid: u32) -> String {
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let cmd = std::fs::read(proc.join("cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default();
    let env: Vec<String> = std::fs::read(proc.join("environ"))
        .map(|e| {
            e.split(|&b| b == 0)
                .map(|kv| String::from_utf8_lossy(kv).into_owned())
                .filter(|kv| kv.starts_with("ORDO_WORKER=") || kv.starts_with("ORDO_DELIVERY="))
                .collect()
        })
        .unwrap_or_default();
    format!("{pid} {} [{}]", cmd.trim(), env.join(" "))
}
