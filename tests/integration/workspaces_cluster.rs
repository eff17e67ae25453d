//! Agent workspaces across machines (DESIGN §10, distributed) against real processes: a bare
//! repository reachable by path stands for the shared one, a real nats-server, coordinator and
//! two `ordo-worker`s with cache directories of their own. Each test says what it proves; the
//! faults (workers killed mid-task and mid-integration) are in the fault suite (row 10).

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

    /// A cluster of two workers, each with its own cache directory under `caches-<id>`.
    fn cluster(&self) -> Cluster {
        let mut c = Cluster::start(&["--ack-wait", "2s"]);
        for id in ["w1", "w2"] {
            let caches = self.dir(&format!("caches-{id}")).display().to_string();
            c.add_worker(id, &["--concurrency", "3", "--workspaces", &caches]);
        }
        c
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
    let job = r
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        r.code() == 0,
        "ordo submit --wait:\n{}\n{}\ncoordinator:\n{}\nworkers:\n{}",
        r.stdout,
        r.stderr,
        c.coordinator.log(),
        c.workers
            .iter()
            .map(|w| w.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
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
        c.workers
            .iter()
            .map(|w| w.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
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
