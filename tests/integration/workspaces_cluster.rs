//! Agent workspaces across machines (docs/design.md, "Agent workspaces", distributed) against real
//! processes: a bare repository reachable by path stands for the shared one, a real nats-server,
//! coordinator and two `ordo-worker`s on one host with default flags (one home, one cache
//! directory), as the README starts them. Each test says what it proves; the faults (workers killed
//! mid-task and mid-integration) are in the fault suite (row 10).

use std::path::{Path, PathBuf};

use ordo_tests::{Cluster, Run, git, git_run, ordo_in, task, write};
use serde_json::Value;

/// A source repository on `main` (`README.md`, `shared.txt` of two lines) and `shared.git`, a
/// bare clone of it: the repository every worker reaches (the fault suite uses it too).
pub(crate) struct Shared {
    tmp: tempfile::TempDir,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        git(&src, &["config", "user.name", "Ordo Test"]);
        git(&src, &["config", "user.email", "test@ordo.invalid"]);
        write(&src, "README.md", "# demo\n");
        write(&src, "shared.txt", "line1\nline2\n");
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", "initial"]);
        git(tmp.path(), &["clone", "-q", "--bare", "src", "shared.git"]);
        Shared { tmp }
    }

    /// The test's directory: the repositories and everything made with `dir`.
    pub(crate) fn root(&self) -> PathBuf {
        self.tmp.path().to_path_buf()
    }

    pub(crate) fn repo(&self) -> PathBuf {
        self.tmp.path().join("shared.git")
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub(crate) fn show(&self, branch: &str, path: &str) -> String {
        git(&self.repo(), &["show", &format!("{branch}:{path}")])
    }

    /// The job of these tests, integrating into `branch`: two tasks on different files, a
    /// task that needs its dependency's file, and two tasks changing the same line, ordered so
    /// that `late` is cut before `early` lands and therefore conflicts once.
    fn job(&self, branch: &str, marks: &Path) -> String {
        let repo = self.repo();
        write(
            self.tmp.path(),
            &format!("{branch}.toml"),
            &format!(
                r#"
name = "shared-repo"
[settings]
workspace = "worktree"
repository = "{repo}"
target_branch = "{branch}"
timeout = "30s"
env = {{ MARKS = "{marks}", SHARED = "{repo}", BRANCH = "{branch}" }}

[[tasks]]
name = "alpha"
command = "echo alpha > alpha.txt"

[[tasks]]
name = "beta"
command = "mkdir -p src && echo beta > src/beta.txt"

[[tasks]]
name = "uses-alpha"
depends_on = ["alpha"]
command = "test \"$(cat alpha.txt)\" = alpha && cp alpha.txt seen-alpha.txt"

{pair}"#,
                repo = repo.display(),
                marks = marks.display(),
                pair = ordo_tests::conflicting_pair(
                    r#"git --git-dir="$SHARED" show "$BRANCH:shared.txt""#
                ),
            ),
        )
    }

    /// A cluster of two workers on one host, started as the README shows: default flags (no
    /// `--workspaces`), one home and cache directory between them.
    fn cluster(&self) -> Cluster {
        let mut c = Cluster::start(&["--ack-wait", "2s"]);
        self.add_workers(&mut c, &["w1", "w2"]);
        c
    }

    /// The environment of workers on this test's one host: its home and cache directories.
    fn host_env(&self) -> [(String, String); 2] {
        let home = self.dir("home").display().to_string();
        let cache = self.dir("home/.cache").display().to_string();
        [("HOME".into(), home), ("XDG_CACHE_HOME".into(), cache)]
    }

    /// Starts workers `ids` on this test's host with default flags (three slots each).
    pub(crate) fn add_workers(&self, c: &mut Cluster, ids: &[&str]) {
        let env = self.host_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for id in ids {
            c.add_worker_env(id, &["--concurrency", "3"], &env);
        }
    }

    /// The default cache directory of this host's workers.
    fn caches(&self) -> PathBuf {
        self.tmp.path().join("home/.cache/ordo/workspaces")
    }
}

fn assert_ok(r: &Run, what: &str) {
    assert_eq!(r.code(), 0, "{what}:\n{}\n{}", r.stdout, r.stderr);
}

fn report(c: &Cluster, job: &str) -> Value {
    let r = c.ordo(&["report", job, "--format", "json"]);
    assert_ok(&r, "ordo report");
    r.json()
}

/// The same worktree job on a cluster (two workers, each with its own cache clone) ends as on
/// one machine: every change on the integration branch of the shared repository, the
/// dependent task saw its dependency's file, the same-line pair conflicted once, re-ran from
/// the new tip and both changes landed without markers; the tree equals the one `ordo run`
/// makes from the same job, the task branches pushed to the shared repository were deleted
/// once merged, and no worktree was ever made in it (workers work in their caches).
#[test]
fn cluster_integrates_like_one_machine() {
    let sh = Shared::new();
    let repo = sh.repo();
    let c = sh.cluster();
    let spec = sh.job("it", &sh.dir("marks-cluster"));
    let r = c.ordo(&["submit", &spec, "--wait"]);
    let job = r.first_line();
    assert!(
        r.code() == 0,
        "ordo submit --wait:\n{}\n{}\n{}",
        r.stdout,
        r.stderr,
        c.logs()
    );

    assert_eq!(sh.show("it", "alpha.txt"), "alpha");
    assert_eq!(sh.show("it", "src/beta.txt"), "beta");
    assert_eq!(sh.show("it", "seen-alpha.txt"), "alpha");
    assert_eq!(sh.show("it", "shared.txt"), "line1 early late\nline2");
    for marker in ["<<<<<<<", ">>>>>>>"] {
        assert_eq!(git_run(&repo, &["grep", "-F", marker, "it"]).code(), 1);
    }
    // Only the integration branch is left of what ordo pushed; main did not move.
    assert_eq!(
        git(
            &repo,
            &["for-each-ref", "--format=%(refname)", "refs/heads/"]
        ),
        "refs/heads/it\nrefs/heads/main",
        "{}",
        c.workers_log()
    );
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]), "1");
    assert_eq!(
        git(&repo, &["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1,
        "a worktree was made in the shared repository"
    );

    let rep = report(&c, &job);
    let late = task(&rep, "late");
    assert_eq!(late["runs"].as_array().unwrap().len(), 2, "{late:#}");
    assert_eq!(late["integration"]["conflicts"][0]["task"], "early");
    assert_eq!(late["integration"]["outcome"], "merged");
    for t in ["alpha", "beta", "uses-alpha", "early", "late"] {
        let ran_on = task(&rep, t)["runs"][0]["worker"].as_str().unwrap_or("");
        assert!(ran_on == "w1" || ran_on == "w2", "{t} ran on {ran_on:?}");
    }
    assert_eq!(rep["summary"]["integration"]["integrations"], 5);

    // The same job on one machine (in the same bare repository), onto another branch.
    let local = sh.job("it-local", &sh.dir("marks-local"));
    let state = sh.dir("state").display().to_string();
    let r = ordo_in(
        &sh.dir("cwd"),
        &["run", &local, "--state", &state, "--workers", "4"],
        &[],
    );
    assert_ok(&r, "ordo run");
    assert_eq!(
        git(&repo, &["rev-parse", "it^{tree}"]),
        git(&repo, &["rev-parse", "it-local^{tree}"]),
        "the cluster and one machine ended with different trees"
    );
}

/// A cluster refuses a worktree job whose repository it cannot use, before anything is
/// recorded: a path that does not exist and a URL nothing answers at exit 2 naming the setting
/// and the repository; nothing is created in the shared repository.
#[test]
fn unreachable_repositories_are_refused_at_submit() {
    let sh = Shared::new();
    let c = Cluster::start(&[]);
    let refs_before = git(&sh.repo(), &["for-each-ref"]);
    for (repository, says) in [
        ("/nonexistent/repo.git", "does not exist"),
        ("file:///nonexistent/repo.git", "cannot be reached"),
    ] {
        let spec = write(
            sh.tmp.path(),
            "bad.toml",
            &format!(
                "name = \"bad\"\n[settings]\nworkspace = \"worktree\"\nrepository = \"{repository}\"\n\n[[tasks]]\nname = \"a\"\ncommand = \"true\"\n"
            ),
        );
        let r = c.ordo(&["submit", &spec]);
        assert_eq!(r.code(), 2, "{repository}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("settings.repository") && r.stderr.contains(says),
            "{repository}: {}",
            r.stderr
        );
    }
    let jobs = c.ordo(&["jobs", "--output", "json"]);
    assert_ok(&jobs, "ordo jobs");
    assert_eq!(jobs.json().as_array().map(Vec::len), Some(0));
    assert_eq!(git(&sh.repo(), &["for-each-ref"]), refs_before);
}

/// A job of six independent worktree tasks, all at once.
fn six_at_once(sh: &Shared, name: &str) -> String {
    let mut spec = format!(
        "name = \"{name}\"\n[settings]\nworkspace = \"worktree\"\nrepository = \"{}\"\n\
         max_parallel_tasks = 6\ntimeout = \"30s\"\n",
        sh.repo().display()
    );
    for t in ["a", "b", "c", "d", "e", "f"] {
        spec.push_str(&format!(
            "\n[[tasks]]\nname = \"{t}\"\ncommand = \"echo {t} > {t}.txt\"\n"
        ));
    }
    write(sh.tmp.path(), &format!("{name}.toml"), &spec)
}

/// Workers on one host with default flags (one cache directory) share no cache clone: two
/// jobs of six tasks at once on three fresh workers (every worker makes its clone while the
/// others make theirs, which failed tasks with "Directory not empty" and "'origin' does not
/// appear to be a git repository" when they shared one) succeed with one attempt per task,
/// and each worker has a slot of its own in the cache directory.
#[test]
fn workers_on_one_host_with_default_flags_share_no_cache() {
    let sh = Shared::new();
    let mut c = Cluster::start(&["--ack-wait", "2s"]);
    sh.add_workers(&mut c, &["w1", "w2", "w3"]);
    for round in ["one", "two"] {
        let spec = six_at_once(&sh, round);
        let r = c.ordo(&["submit", &spec, "--wait"]);
        assert!(
            r.code() == 0,
            "{round}:\n{}\n{}\nworkers:\n{}",
            r.stdout,
            r.stderr,
            c.workers_log()
        );
        let job = r.first_line();
        let rep = report(&c, &job);
        for t in ["a", "b", "c", "d", "e", "f"] {
            let runs = task(&rep, t)["runs"].as_array().unwrap().len();
            assert_eq!(runs, 1, "{round}: {t} ran {runs} times:\n{rep:#}");
        }
    }
    let slots: Vec<String> = std::fs::read_dir(sh.caches())
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_type()
                .unwrap()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into())
        })
        .collect();
    assert!(
        slots.len() >= 2 && slots.len() <= 3,
        "cache slots: {slots:?}"
    );
}

/// A workspace a worker cannot prepare (its cache directory is a file) is the worker's
/// failure, not the task's: a task of one attempt handed back by that worker is never failed
/// for it; the worker says in `ordo workers` that it takes no worktree tasks and why; once a
/// worker that can prepare it joins, the task succeeds there with its one attempt.
#[test]
fn a_workspace_that_cannot_be_prepared_costs_no_attempt() {
    let sh = Shared::new();
    let mut c = Cluster::start(&["--ack-wait", "2s", "--max-deliver", "1000"]);
    let not_a_dir = write(sh.tmp.path(), "not-a-directory", "");
    c.add_worker("bad", &["--workspaces", &not_a_dir]);
    let spec = write(
        sh.tmp.path(),
        "one.toml",
        &format!(
            "name = \"one\"\n[settings]\nworkspace = \"worktree\"\ntarget_branch = \"one\"\nrepository = \"{}\"\n\n\
             [[tasks]]\nname = \"only\"\ncommand = \"echo x > x.txt\"\n",
            sh.repo().display()
        ),
    );
    let r = c.ordo(&["submit", &spec]);
    assert_ok(&r, "ordo submit");
    let job = r.stdout.trim().to_string();
    let mut note = String::new();
    let said = ordo_tests::wait_until(std::time::Duration::from_secs(30), || {
        let w = c.ordo(&["workers", "--output", "json"]);
        note = w.json()[0]["note"].as_str().unwrap_or_default().to_string();
        !note.is_empty()
    });
    assert!(said, "the worker never said why:\n{}", c.workers_log());
    assert!(
        note.contains("takes no worktree tasks") && note.contains("not-a-directory"),
        "{note}"
    );
    let text = c.ordo(&["workers"]);
    assert!(
        text.stdout.contains("takes no worktree tasks"),
        "{}",
        text.stdout
    );
    let status = c.ordo(&["status", &job, "--output", "json"]);
    assert_ok(&status, "ordo status");
    assert_eq!(status.json()["state"], "running", "{}", status.stdout);

    sh.add_workers(&mut c, &["good"]);
    let r = c.ordo(&["watch", &job]);
    assert!(
        r.code() == 0,
        "ordo watch:\n{}\n{}\nworkers:\n{}",
        r.stdout,
        r.stderr,
        c.workers_log()
    );
    let rep = report(&c, &job);
    let runs = task(&rep, "only")["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "{rep:#}");
    assert_eq!(runs[0]["worker"], "good");
    assert_eq!(runs[0]["outcome"], "succeeded");
    assert_eq!(sh.show("one", "x.txt"), "x");
}

/// On a cluster a failed attempt keeps its worktree in its worker's cache; `ordo status`
/// names the command that removes it, and `ordo prune --job` has the workers remove it (a
/// control message), while the job's record stays.
#[test]
fn prune_job_removes_what_failed_attempts_kept_in_the_caches() {
    let sh = Shared::new();
    let c = sh.cluster();
    let spec = write(
        sh.tmp.path(),
        "kept.toml",
        &format!(
            "name = \"kept\"\n[settings]\nworkspace = \"worktree\"\ntarget_branch = \"kept\"\n\
             repository = \"{}\"\n\n[[tasks]]\nname = \"broken\"\n\
             command = \"echo half > half.txt && exit 3\"\n",
            sh.repo().display()
        ),
    );
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let job = r.first_line();
    let kept = || -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(slots) = std::fs::read_dir(sh.caches()) else {
            return found;
        };
        for slot in slots.flatten().filter(|e| e.path().is_dir()) {
            for clone in std::fs::read_dir(slot.path()).unwrap().flatten() {
                let trees = clone.path().join("ordo-worktrees");
                for tag in std::fs::read_dir(trees).into_iter().flatten().flatten() {
                    found.extend(
                        std::fs::read_dir(tag.path())
                            .unwrap()
                            .flatten()
                            .map(|e| e.path()),
                    );
                }
            }
        }
        found
    };
    let left = kept();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].join("half.txt").exists());

    let status = c.ordo(&["status", &job]);
    assert_ok(&status, "ordo status");
    let command = format!("ordo prune --job {job}");
    assert!(status.stdout.contains(&command), "{}", status.stdout);

    let r = c.ordo(&["prune", "--job", &job]);
    assert_ok(&r, "ordo prune --job");
    assert!(
        ordo_tests::wait_until(std::time::Duration::from_secs(20), || kept().is_empty()),
        "still kept: {:?}\n{}",
        kept(),
        c.workers_log()
    );
    assert_ok(&c.ordo(&["status", &job]), "ordo status after prune");
}

/// The hot-file job on a cluster (two workers on one host): agent tasks (the stand-in for
/// Claude Code), one in three inserting under the one header of `CHANGELOG.md`. Every change
/// lands once, no marker, and a lost race is resolved in the task's own session on whichever
/// worker runs the round (its conflicted branch is fetched from the shared repository).
#[test]
fn a_hot_file_starves_no_task_on_a_cluster() {
    let sh = Shared::new();
    let src = sh.tmp.path().join("src");
    write(&src, "CHANGELOG.md", "# Changelog\n\n## Unreleased\n");
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "changelog"]);
    git(&src, &["push", "-q", sh.repo().to_str().unwrap(), "main"]);
    let c = sh.cluster();
    let log = sh.dir("logs").join("calls.log");
    let mut text = format!(
        "name = \"hot\"\n[settings]\nworkspace = \"worktree\"\nrepository = \"{}\"\n\
         target_branch = \"it\"\nmax_parallel_tasks = 6\nagent = \"claude\"\n\
         agent_command = [\"{}\"]\nenv = {{ STUB_LOG = \"{}\", STUB_STATE = \"{}\" }}\n",
        sh.repo().display(),
        ordo_tests::stub_agent("claude"),
        log.display(),
        sh.dir("stub").display()
    );
    text.push_str(&ordo_tests::hot_file_tasks(12, "0.3"));
    let spec = write(sh.tmp.path(), "hot.toml", &text);
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_ok(&r, "ordo submit --wait");
    for i in 0..12 {
        assert_eq!(sh.show("it", &format!("t{i}.txt")), format!("{i}"));
    }
    let changelog = sh.show("it", "CHANGELOG.md");
    assert_eq!(
        changelog
            .lines()
            .filter(|l| l.starts_with("- change"))
            .count(),
        4,
        "{changelog}"
    );
    for marker in ["<<<<<<<", ">>>>>>>"] {
        assert_eq!(git_run(&sh.repo(), &["grep", "-F", marker, "it"]).code(), 1);
    }
    let job = r.first_line();
    let report = report(&c, &job);
    let ji = &report["summary"]["integration"];
    let conflicts = ji["conflicts"].as_u64().unwrap();
    let runs = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
    assert!(
        runs - 12 <= conflicts,
        "{runs} runs, {conflicts} conflicts: {ji:#}"
    );
}
