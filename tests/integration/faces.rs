//! The same job through every face: `ordo run --state`, `ordo submit` to a cluster (real
//! nats-server, coordinator, two workers with default flags), the MCP server's `submit_job`
//! (`ordo mcp --state`, driven by the official Python SDK) and the dashboard's submit form in
//! Chromium (`ordo ui --state`). Each face runs the job twice at once and must give the same
//! answers: a pool and a lock shared by both jobs never exceeded, a budget that stops agents,
//! the same final task states, a failed attempt's worktree kept and pruned, and a retry with
//! a new budget that ends succeeded with the same tree on every integration branch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ordo_tests::chromium::{Browser, Page};
use ordo_tests::{Cluster, Daemon, Run, git, ordo_in, stub_agent, task, wait_until, write};
use serde_json::{Value, json};

use crate::dashboard::{Ui, browser, open_clean};
use crate::mcp::mcp_session;
use crate::workspaces_cluster::Shared;

/// The tasks of the job: four in pool `p` (two places), two of them also holding lock `L`;
/// `flaky`, which fails its first attempt in each job (marker `$MARKS/<job id>`); and three
/// agent tasks in a chain, $0.50 each, on a $0.50 budget: `a1` spends it, so `a2` and `a3`
/// end skipped. Each pool task logs its start and end (ns) to `$SPANS`; the first to start waits
/// (up to 2 s) for a second, so that two the pool lets run at once overlap however long each
/// one's worktree took to prepare on a loaded machine.
const TASKS: &str = r#"
[[tasks]]
name = "p1"
pool = "p"
command = '''SPAN'''

[[tasks]]
name = "p2"
pool = "p"
locks = ["L"]
command = '''SPAN'''

[[tasks]]
name = "p3"
pool = "p"
locks = ["L"]
command = '''SPAN'''

[[tasks]]
name = "p4"
pool = "p"
command = '''SPAN'''

[[tasks]]
name = "flaky"
command = '''echo half > flaky-half.txt
if [ -e "$MARKS/$ORDO_JOB_ID" ]; then echo ok > flaky.txt; else touch "$MARKS/$ORDO_JOB_ID"; exit 3; fi'''

[[tasks]]
name = "a1"
prompt = "write a1.txt: one"

[[tasks]]
name = "a2"
prompt = "write a2.txt: two"
depends_on = ["a1"]

[[tasks]]
name = "a3"
prompt = "write a3.txt: three"
depends_on = ["a2"]
"#;

const SPAN: &str = r#"echo "$ORDO_JOB_ID $ORDO_TASK start $(date +%s%N)" >> "$SPANS"
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  [ "$(grep -c ' start ' "$SPANS")" -ge 2 ] && break
  sleep 0.1
done
sleep 0.2
echo "$ORDO_TASK" > "$ORDO_TASK.txt"
echo "$ORDO_JOB_ID $ORDO_TASK end $(date +%s%N)" >> "$SPANS""#;

/// Final task states after the first run, and after the retry.
const FIRST: [(&str, &str); 8] = [
    ("p1", "succeeded"),
    ("p2", "succeeded"),
    ("p3", "succeeded"),
    ("p4", "succeeded"),
    ("flaky", "failed"),
    ("a1", "succeeded"),
    ("a2", "skipped"),
    ("a3", "skipped"),
];

/// What every job's integration branch holds in the end.
const TREE: [&str; 11] = [
    "README.md",
    "a1.txt",
    "a2.txt",
    "a3.txt",
    "flaky-half.txt",
    "flaky.txt",
    "p1.txt",
    "p2.txt",
    "p3.txt",
    "p4.txt",
    "shared.txt",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Face {
    Run,
    Cluster,
    Mcp,
    Dashboard,
}

/// One face's world: a shared repository (bare, as workers reach it), the job file, the
/// spans log, and what serves the jobs while the test talks to them.
struct World {
    sh: Shared,
    spec: String,
    spans: PathBuf,
    /// Where commands run.
    cwd: PathBuf,
    /// The target flags of the job commands: `--state DIR` or `--nats URL`.
    target: Vec<String>,
    cluster: Option<Cluster>,
    ui: Option<(Ui, Browser, Page)>,
    /// The MCP client's thread (its transcript), its ids file and its go-on file.
    mcp: Option<(JoinHandle<Value>, PathBuf, PathBuf)>,
}

impl World {
    fn new(face: Face) -> World {
        let sh = Shared::new();
        let cwd = sh.dir("cwd");
        let spans = sh.dir("logs").join("spans");
        let marks = sh.dir("marks");
        let settings = format!(
            r#"name = "faces"
[settings]
execution_mode = "parallel"
max_parallel_tasks = 4
workspace = "worktree"
repository = "{repo}"
agent = "claude"
agent_command = ["{stub}"]
max_cost_usd = 0.5
pools = {{ p = 2 }}
timeout = "60s"
env = {{ SPANS = "{spans}", MARKS = "{marks}", STUB_COST = "0.5", STUB_STATE = "{stub_state}" }}
"#,
            repo = sh.repo().display(),
            stub = stub_agent("claude"),
            spans = spans.display(),
            marks = marks.display(),
            stub_state = sh.dir("stub").display(),
        );
        let spec = write(
            &cwd,
            "faces.toml",
            &format!("{settings}{}", TASKS.replace("SPAN", SPAN)),
        );
        let state = sh.dir("state").display().to_string();
        let mut w = World {
            spec,
            spans,
            cwd,
            target: vec!["--state".into(), state.clone()],
            cluster: None,
            ui: None,
            mcp: None,
            sh,
        };
        match face {
            Face::Run => {}
            Face::Cluster => {
                // Workers with default flags on one host: their home and caches in here.
                let env = vec![
                    ("HOME".into(), w.sh.dir("home").display().to_string()),
                    (
                        "XDG_CACHE_HOME".into(),
                        w.sh.dir("home/.cache").display().to_string(),
                    ),
                ];
                let mut c = Cluster::start_env(&[], env);
                c.add_worker("w1", &[]);
                c.add_worker("w2", &[]);
                w.target = vec!["--nats".into(), c.nats.url()];
                w.cluster = Some(c);
            }
            Face::Mcp => {}
            Face::Dashboard => {
                let ui = Ui::start(&w.cwd, &["--state", &state]);
                let mut b = browser();
                let page = open_clean(&mut b, &ui.url("/"));
                w.ui = Some((ui, b, page));
            }
        }
        w
    }

    /// `ordo ARGS` against the face's target.
    fn ordo(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(self.target.iter().map(String::as_str));
        ordo_in(&self.cwd, &all, &[])
    }

    fn status(&self, job: &str) -> Value {
        let r = self.ordo(&["status", job, "--output", "json"]);
        assert_eq!(r.code(), 0, "ordo status {job}: {}{}", r.stdout, r.stderr);
        r.json()
    }

    fn wait_ended(&self, job: &str) -> Value {
        let mut last = Value::Null;
        let ended = wait_until(Duration::from_secs(60), || {
            last = self.status(job);
            ["succeeded", "failed", "cancelled"].contains(&last["state"].as_str().unwrap_or(""))
        });
        assert!(ended, "job {job} did not end: {last:#}\n{}", self.logs());
        last
    }

    /// What the serving processes logged, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.cluster {
            out.push_str(&c.logs());
        }
        if let Some((ui, ..)) = &self.ui {
            out.push_str(&ui.log());
        }
        out
    }

    /// Submits the job twice at once through the face; the two job ids once both ended.
    fn submit_two(&mut self, face: Face) -> Vec<String> {
        let ids: Vec<String> = match face {
            Face::Run => {
                // The first holds the directory and serves it; the second submits there.
                let state = self.target[1].clone();
                let args = ["run", self.spec.as_str(), "--state", &state];
                let mut runs = [
                    Daemon::spawn("ordo", &args, &self.cwd),
                    Daemon::spawn("ordo", &args, &self.cwd),
                ];
                for r in &mut runs {
                    let code = r.wait_exit(Duration::from_secs(60)).code();
                    assert_eq!(code, Some(1), "a failed job's run: {}", r.log());
                }
                let r = self.ordo(&["status", "--output", "json"]);
                assert_eq!(r.code(), 0, "{}", r.stderr);
                r.json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|j| j["id"].as_str().unwrap().to_string())
                    .collect()
            }
            Face::Cluster => (0..2)
                .map(|_| {
                    let r = self.ordo(&["submit", &self.spec]);
                    assert_eq!(r.code(), 0, "{}", r.stderr);
                    r.stdout.trim().to_string()
                })
                .collect(),
            Face::Mcp => {
                let ids = self.sh.dir("mcp").join("ids");
                let go = self.sh.dir("mcp").join("go");
                let ended = json!(["succeeded", "failed", "cancelled"]);
                let steps = json!([
                    {"tool": "submit_job", "arguments": {"path": self.spec}, "save": {"j1": "job"}},
                    {"tool": "submit_job", "arguments": {"path": self.spec}, "save": {"j2": "job"}},
                    {"tool": "job_status", "arguments": {"job": "${j1}"},
                     "until": {"field": "state", "in": ended}, "timeout": 60},
                    {"tool": "job_status", "arguments": {"job": "${j2}"},
                     "until": {"field": "state", "in": ended}, "timeout": 60},
                    {"write": ids, "text": "${j1} ${j2}"},
                    {"await": go, "timeout": 120},
                    {"tool": "job_status", "arguments": {"job": "${j1}"}},
                    {"tool": "job_status", "arguments": {"job": "${j2}"}},
                ]);
                let (cwd, state) = (self.cwd.clone(), self.target[1].clone());
                let session = std::thread::spawn(move || {
                    mcp_session(&cwd, &["mcp", "--state", &state], &steps)
                });
                let mut text = String::new();
                assert!(
                    wait_until(Duration::from_secs(90), || {
                        text = std::fs::read_to_string(&ids).unwrap_or_default();
                        !text.is_empty() || session.is_finished()
                    }),
                    "the MCP client never reported its jobs"
                );
                assert!(
                    !text.is_empty(),
                    "the MCP session ended early: {:?}",
                    session.join()
                );
                self.mcp = Some((session, ids, go));
                text.split_whitespace().map(String::from).collect()
            }
            Face::Dashboard => {
                let (ui, b, page) = self.ui.as_mut().unwrap();
                let spec = std::fs::read_to_string(&self.spec).unwrap();
                (0..2)
                    .map(|_| {
                        page.navigate(b, &ui.url("/"));
                        let before = page.loads(b);
                        let posted = page.eval(
                            b,
                            &format!(
                                "(() => {{ const f = document.querySelector('form[action=\"/jobs\"]'); \
                                 f.closest('details').open = true; \
                                 f.querySelector('textarea[name=\"spec\"]').value = {}; \
                                 f.querySelector('button[type=\"submit\"]').click(); return true; }})()",
                                json!(spec)
                            ),
                        );
                        assert_eq!(posted, json!(true));
                        page.wait_load_after(b, before);
                        let path = page.eval(b, "location.pathname");
                        let path = path.as_str().unwrap_or_default();
                        path.strip_prefix("/jobs/")
                            .unwrap_or_else(|| panic!("not a job page: {path}\n{}", ui.log()))
                            .to_string()
                    })
                    .collect()
            }
        };
        assert_eq!(ids.len(), 2, "{ids:?}");
        for id in &ids {
            self.wait_ended(id);
        }
        ids
    }

    /// Directories holding `flaky-half.txt` outside any branch: the worktrees failed attempts
    /// kept (in the repository's worktree root, or in the workers' cache clones).
    fn kept(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, out);
                } else if e.file_name() == "flaky-half.txt" {
                    out.push(dir.to_path_buf());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.sh.root(), &mut out);
        out
    }

    /// Retries the failed job with a new budget and waits for its end.
    fn retry(&self, job: &str) {
        let r = self.ordo(&["retry", job, "--failed-only", "--max-cost-usd", "1"]);
        // Locally the command follows the job to its end (0: it succeeded); on a cluster it
        // returns once the retry is accepted.
        assert_eq!(r.code(), 0, "{}\n{}\n{}", r.stdout, r.stderr, self.logs());
        assert_eq!(
            self.wait_ended(job)["state"],
            "succeeded",
            "{}",
            self.logs()
        );
    }

    /// Ends the face: the MCP client reads the final states through MCP.
    fn finish(&mut self, jobs: &[String]) {
        if let Some((session, _, go)) = self.mcp.take() {
            std::fs::write(&go, "").unwrap();
            let s = session.join().expect("the MCP client thread");
            let steps = s["steps"].as_array().unwrap();
            for (i, job) in jobs.iter().enumerate() {
                let st = &steps[steps.len() - 2 + i]["structured"];
                assert_eq!(st["id"], job.as_str(), "{st}");
                assert_eq!(st["state"], "succeeded", "through MCP: {st}");
            }
        }
    }
}

/// The spans of the pool tasks: (job, task) → (start, end) in ns.
fn spans(path: &Path) -> BTreeMap<(String, String), (u128, u128)> {
    let mut out: BTreeMap<(String, String), (u128, u128)> = BTreeMap::new();
    for line in ordo_tests::lines(path) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [job, task, edge, ns] = f[..] else {
            panic!("bad span line {line:?}");
        };
        let ns: u128 = ns.parse().unwrap();
        let e = out.entry((job.into(), task.into())).or_default();
        match edge {
            "start" => e.0 = ns,
            _ => e.1 = ns,
        }
    }
    out
}

/// The most spans of `tasks` (names) running at one time.
fn most_at_once(spans: &BTreeMap<(String, String), (u128, u128)>, tasks: &[&str]) -> usize {
    let of: Vec<(u128, u128)> = spans
        .iter()
        .filter(|((_, t), _)| tasks.contains(&t.as_str()))
        .map(|(_, s)| *s)
        .collect();
    of.iter()
        .map(|&(s, _)| of.iter().filter(|&&(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

fn one_face(face: Face) {
    let mut w = World::new(face);
    let jobs = w.submit_two(face);
    for job in &jobs {
        let st = w.status(job);
        assert_eq!(st["state"], "failed", "{face:?}: {st:#}");
        for (t, state) in FIRST {
            assert_eq!(task(&st, t)["state"], state, "{face:?} {t}: {st:#}");
        }
        assert_eq!(
            task(&st, "a2")["reason"],
            "budget exhausted ($0.50 of $0.50)",
            "{face:?}"
        );
    }

    // The pool's two places were used by the two jobs together, never more; the lock's one.
    let spans = spans(&w.spans);
    assert_eq!(spans.len(), 8, "{face:?}: {spans:?}");
    let pool = most_at_once(&spans, &["p1", "p2", "p3", "p4"]);
    assert_eq!(
        pool, 2,
        "{face:?}: {pool} tasks of pool p at once: {spans:?}"
    );
    let lock = most_at_once(&spans, &["p2", "p3"]);
    assert_eq!(
        lock, 1,
        "{face:?}: lock L held {lock} times at once: {spans:?}"
    );

    // Each job's failed attempt kept its worktree; pruning the jobs removes them.
    let kept = w.kept();
    assert_eq!(kept.len(), 2, "{face:?}: {kept:?}");
    for job in &jobs {
        let r = w.ordo(&["prune", "--job", job]);
        assert_eq!(r.code(), 0, "{face:?}: {}{}", r.stdout, r.stderr);
    }
    assert!(
        wait_until(Duration::from_secs(20), || w.kept().is_empty()),
        "{face:?}: still kept after prune: {:?}\n{}",
        w.kept(),
        w.logs()
    );

    // Retried with a budget of $1: a2 and a3 need it all; the job ends succeeded.
    for job in &jobs {
        w.retry(job);
        let st = w.status(job);
        for (t, _) in FIRST {
            assert_eq!(task(&st, t)["state"], "succeeded", "{face:?} {t}: {st:#}");
        }
        assert_eq!(task(&st, "flaky")["attempts"], 2, "{face:?}");
        assert_eq!(
            task(&st, "p1")["attempts"],
            1,
            "{face:?}: a success ran again"
        );
        let r = w.ordo(&["report", job, "--format", "json"]);
        assert_eq!(r.code(), 0, "{face:?}: {}", r.stderr);
        let report = r.json();
        assert_eq!(report["summary"]["cost_usd"], 1.5, "{face:?}: {report:#}");
        let branch = report["summary"]["integration"]["branch"]
            .as_str()
            .unwrap_or_else(|| panic!("{face:?}: no integration branch: {report:#}"))
            .to_string();
        let tree = git(
            &w.sh.repo(),
            &["ls-tree", "--name-only", &format!("refs/heads/{branch}")],
        );
        assert_eq!(tree.lines().collect::<Vec<_>>(), TREE, "{face:?} {branch}");
    }
    w.finish(&jobs);
}

/// One job file through `ordo run --state`, `ordo submit` to a cluster, MCP and the
/// dashboard's form. Verbs a face lacks are the CLI against the same target while the face
/// serves it: retry with a budget and prune (MCP, dashboard), and prune for `ordo run` (whose
/// process has ended by then).
#[test]
fn same_job_every_face() {
    let started = Instant::now();
    for face in [Face::Run, Face::Cluster, Face::Mcp, Face::Dashboard] {
        let t = Instant::now();
        one_face(face);
        eprintln!("{face:?}: {:?}", t.elapsed());
    }
    eprintln!("every face: {:?}", started.elapsed());
}
