//! Agent workspaces (docs/design.md, "Agent workspaces") end to end: the real `ordo run` on real
//! git repositories made in temporary directories, checked with `git` itself. Each test says what
//! it proves.
//!
//! Orders that matter (which of two tasks integrates first) are forced, not hoped for: the
//! task meant to lose waits (in its own worktree, so after its worktree was cut) until the
//! other's change is on the integration branch, and the winner waits until the loser has
//! started. Every job has a task timeout (20 s) so a broken wait fails the test instead of hanging it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ordo_tests::{Run, git, git_run, ordo_in, task, write};
use serde_json::Value;

/// A test's directory: `repo/` (a git repository on `main` with one commit: `README.md` and
/// `shared.txt` of two lines) and, beside it, room for job files, state and logs, outside the
/// repository so they never show in its status.
pub(crate) struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "Ordo Test"]);
        git(&repo, &["config", "user.email", "test@ordo.invalid"]);
        git(&repo, &["config", "commit.gpgsign", "false"]);
        write(&repo, "README.md", "# demo\n");
        write(&repo, "shared.txt", "line1\nline2\n");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
        Sandbox { tmp }
    }

    pub(crate) fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub(crate) fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    /// A directory beside the repository (created), e.g. for the tasks' logs.
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Writes a job file beside the repository; returns its path.
    pub(crate) fn job(&self, name: &str, text: &str) -> String {
        write(self.root(), name, text)
    }

    pub(crate) fn state(&self) -> String {
        self.root().join("state").display().to_string()
    }

    /// `ordo run SPEC --state <state> EXTRA...` in the repository.
    pub(crate) fn run(&self, spec: &str, extra: &[&str]) -> Run {
        let state = self.state();
        let mut args = vec!["run", spec, "--state", state.as_str()];
        args.extend_from_slice(extra);
        ordo_in(&self.repo(), &args, &[])
    }

    /// The newest job's report from the state directory, in `format`.
    pub(crate) fn report(&self, format: &str) -> Run {
        let state = self.state();
        let r = ordo_in(
            &self.repo(),
            &["report", "--state", &state, "--format", format],
            &[],
        );
        assert_eq!(r.code(), 0, "ordo report: {}", r.stderr);
        r
    }

    pub(crate) fn report_json(&self) -> Value {
        self.report("json").json()
    }

    /// `git show BRANCH:PATH` in the repository.
    pub(crate) fn show(&self, branch: &str, path: &str) -> String {
        git(&self.repo(), &["show", &format!("{branch}:{path}")])
    }

    /// What a run must leave alone in the user's checkout (and what bad input must not create).
    fn checkout(&self) -> Checkout {
        let repo = self.repo();
        let bytes = |name: &str| std::fs::read(repo.join(name)).ok();
        Checkout {
            head: git(&repo, &["rev-parse", "HEAD"]),
            symbolic: git(&repo, &["symbolic-ref", "HEAD"]),
            status: git(&repo, &["status", "--porcelain", "--untracked-files=all"]),
            staged: git(&repo, &["diff", "--cached"]),
            stash: git(&repo, &["stash", "list"]),
            files: ["README.md", "shared.txt", "notes.txt"]
                .into_iter()
                .map(|f| (f.to_string(), bytes(f)))
                .collect(),
        }
    }

    /// Every ref and worktree of the repository, and whether ordo's worktree root exists.
    fn refs_and_worktrees(&self) -> (String, String, bool) {
        let repo = self.repo();
        (
            git(&repo, &["for-each-ref"]),
            git(&repo, &["worktree", "list", "--porcelain"]),
            repo.join(".git/ordo-worktrees").exists(),
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Checkout {
    head: String,
    symbolic: String,
    status: String,
    staged: String,
    stash: String,
    files: BTreeMap<String, Option<Vec<u8>>>,
}

/// The integration branch ordo names by default: `ordo/<job name>-<first 8 of the id>-<last 4>`.
pub(crate) fn default_branch(job_name: &str, report: &Value) -> String {
    let id = report["job"]["id"].as_str().expect("job id");
    format!("ordo/{job_name}-{}-{}", &id[..8], &id[id.len() - 4..])
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Asserts no file on `branch` holds a conflict marker.
fn assert_no_conflict_markers(repo: &Path, branch: &str) {
    for marker in ["<<<<<<<", ">>>>>>>"] {
        let r = git_run(repo, &["grep", "-n", "-F", marker, branch]);
        assert_eq!(
            r.code(),
            1,
            "conflict marker {marker} on {branch}:\n{}{}",
            r.stdout,
            r.stderr
        );
    }
}

/// The branches under `ordo/`.
fn ordo_branches(repo: &Path) -> Vec<String> {
    git(
        repo,
        &["branch", "--list", "ordo/*", "--format=%(refname:short)"],
    )
    .lines()
    .map(String::from)
    .collect()
}

/// The paths of the repository's worktrees, its own checkout first.
fn worktrees(repo: &Path) -> Vec<PathBuf> {
    git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(PathBuf::from)
        .collect()
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(crate) fn assert_ok(r: &Run, what: &str) {
    assert_eq!(r.code(), 0, "{what}:\n{}\n{}", r.stdout, r.stderr);
}

/// Tasks that change different files run in worktrees of their own and all merge: each file is
/// on the integration branch `ordo/<job name>-<tag>` (and not in the user's checkout), and
/// afterwards no worktree is left but the user's checkout and no branch under `ordo/` but the
/// integration branch (the task branches were deleted once merged).
#[test]
fn different_files_merge_cleanly_and_leave_nothing_behind() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let spec = sb.job(
        "disjoint.toml",
        r#"
name = "disjoint"
[settings]
workspace = "worktree"
timeout = "20s"

[[tasks]]
name = "alpha"
command = "echo alpha > alpha.txt"

[[tasks]]
name = "beta"
command = "mkdir -p src && echo beta > src/beta.txt"

[[tasks]]
name = "gamma"
command = "echo gamma >> README.md"

[[tasks]]
name = "delta"
command = "echo delta > delta.txt"
"#,
    );
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_ok(&r, "ordo run");
    let report = sb.report_json();
    let branch = default_branch("disjoint", &report);

    assert_eq!(sb.show(&branch, "alpha.txt"), "alpha");
    assert_eq!(sb.show(&branch, "src/beta.txt"), "beta");
    assert_eq!(sb.show(&branch, "README.md"), "# demo\ngamma");
    assert_eq!(sb.show(&branch, "delta.txt"), "delta");
    // Everything from `main` is still there, and main itself did not move.
    assert_eq!(sb.show(&branch, "shared.txt"), "line1\nline2");
    git(&repo, &["merge-base", "--is-ancestor", "main", &branch]);
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]), "1");
    assert!(
        !repo.join("alpha.txt").exists(),
        "a task wrote the checkout"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "# demo\n"
    );

    assert_eq!(worktrees(&repo), vec![canonical(&repo)]);
    assert_eq!(ordo_branches(&repo), vec![branch.clone()]);
    for t in ["alpha", "beta", "gamma", "delta"] {
        assert_eq!(task(&report, t)["integration"]["outcome"], "merged", "{t}");
    }
    let summary = &report["summary"]["integration"];
    assert_eq!(summary["branch"], branch.as_str());
    assert_eq!(summary["integrations"], 4);
    assert_eq!(summary["conflicts"], 0);
}

/// `ordo run --state` killed while a task integrates, then run again: the integration is
/// carried out from the stored attempt (its worktree, kept until integrated) and the task
/// does not run again. Its command ran once, its change is on the branch once.
#[test]
fn a_run_killed_mid_integration_resumes_the_integration() {
    let sb = Sandbox::new();
    let marks = sb.dir("marks");
    let spec = sb.job(
        "held.toml",
        &format!(
            r#"
name = "held"
[settings]
workspace = "worktree"
timeout = "20s"
env = {{ MARKS = "{marks}" }}
# The first integration hangs until the run is killed; the resumed one passes.
integration_verify = "if [ ! -e \"$MARKS/held\" ]; then touch \"$MARKS/held\"; sleep 30; fi"

[[tasks]]
name = "alpha"
command = "echo ran >> \"$MARKS/ledger\" && echo alpha > alpha.txt"
"#,
            marks = marks.display()
        ),
    );
    let state = sb.state();
    let mut first = ordo_tests::spawn_ordo(&sb.repo(), &["run", &spec, "--state", &state]);
    assert!(
        ordo_tests::wait_until(std::time::Duration::from_secs(30), || marks
            .join("held")
            .exists()),
        "the integration never started"
    );
    ordo_tests::signal(first.id(), libc::SIGKILL);
    ordo_tests::wait_child(&mut first, std::time::Duration::from_secs(10));

    let r = sb.run(&spec, &[]);
    assert_ok(&r, "the resumed run");
    let report = sb.report_json();
    assert_eq!(report["summary"]["outcome"], "succeeded", "{report:#}");
    assert_eq!(
        ordo_tests::lines(&marks.join("ledger")),
        ["ran"],
        "alpha ran again"
    );
    let branch = default_branch("held", &report);
    assert_eq!(sb.show(&branch, "alpha.txt"), "alpha");
    let repo = sb.repo();
    let touching = git(
        &repo,
        &[
            "log",
            "--format=%H",
            &format!("main..{branch}"),
            "--",
            "alpha.txt",
        ],
    );
    assert_eq!(
        touching.lines().count(),
        1,
        "alpha's change once: {touching}"
    );
    assert_eq!(task(&report, "alpha")["integration"]["outcome"], "merged");
    assert_eq!(worktrees(&repo), vec![canonical(&repo)]);
}

/// Many tasks starting at once all get their worktree: 16 tasks on 8 slots, each writing its
/// own file, all succeed on their first attempt and all their files are on the branch. (Git
/// does not lock its worktree list: concurrent `git worktree add`s read each other's half
/// written admin files and fail unless ordo serialises them.)
#[test]
fn many_tasks_make_their_worktrees_at_once() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let mut spec =
        String::from("name = \"many\"\n[settings]\nworkspace = \"worktree\"\ntimeout = \"20s\"\n");
    for i in 0..16 {
        spec.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i}\"\ncommand = \"echo {i} > f{i}.txt\"\n"
        ));
    }
    let spec = sb.job("many.toml", &spec);
    let r = sb.run(&spec, &["--workers", "8"]);
    assert_ok(&r, "ordo run");
    let report = sb.report_json();
    let branch = default_branch("many", &report);
    for i in 0..16 {
        let t = task(&report, &format!("t{i}"));
        assert_eq!(t["runs"].as_array().unwrap().len(), 1, "{t:#}");
        assert_eq!(sb.show(&branch, &format!("f{i}.txt")), i.to_string());
    }
    assert_eq!(worktrees(&repo), vec![canonical(&repo)]);
    assert_eq!(ordo_branches(&repo), vec![branch]);
}

/// Two parallel tasks change the same line: the second to integrate conflicts, runs again from
/// the new tip (the other's change in its worktree) and then integrates, so the job succeeds
/// with both changes on the branch and no conflict marker anywhere; the reports count the
/// conflict and name the file and the other task.
#[test]
fn same_line_conflict_reruns_and_both_changes_land() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let marks = sb.dir("marks");
    // `late` starts (its worktree cut from the empty branch), then `early` changes line 1 and
    // integrates; only then does `late` change line 1 too.
    let spec = sb.job(
        "conflict.toml",
        &format!(
            r#"
name = "conflict"
[settings]
workspace = "worktree"
target_branch = "it"
timeout = "20s"
env = {{ MARKS = "{marks}" }}
{pair}"#,
            marks = marks.display(),
            pair = ordo_tests::conflicting_pair("git show it:shared.txt")
        ),
    );
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_ok(&r, "ordo run");

    assert_eq!(sb.show("it", "shared.txt"), "line1 early late\nline2");
    assert_no_conflict_markers(&repo, "it");

    let report = sb.report_json();
    let late = task(&report, "late");
    assert_eq!(late["state"], "succeeded", "{late:#}");
    assert_eq!(late["runs"].as_array().unwrap().len(), 2, "{late:#}");
    // The conflicted run shows as a conflict, with the other task and the files, and is no
    // attempt spent.
    let first = &late["runs"][0];
    assert_eq!(first["outcome"], "conflict", "{late:#}");
    assert_eq!(first["conflict"]["task"], "early", "{first:#}");
    assert_eq!(strings(&first["conflict"]["files"]), ["shared.txt"]);
    assert_eq!(late["runs"][1]["outcome"], "succeeded");
    assert_eq!(late["attempts"], 1, "{late:#}");
    assert_eq!(report["summary"]["retries"], 0, "{:#}", report["summary"]);
    let conflicts = late["integration"]["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{late:#}");
    assert_eq!(conflicts[0]["task"], "early");
    assert_eq!(strings(&conflicts[0]["files"]), ["shared.txt"]);
    assert_eq!(late["integration"]["outcome"], "merged");
    assert_eq!(task(&report, "early")["runs"].as_array().unwrap().len(), 1);
    let summary = &report["summary"]["integration"];
    assert_eq!(summary["branch"], "it");
    assert!(summary["conflicts"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(summary["integrations"], 2);

    let md = sb.report("md").stdout;
    let section = md
        .split("\n## Integration\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Integration section in the Markdown report:\n{md}"));
    assert!(section.contains("`it`"), "{section}");
    assert!(section.contains("shared.txt with early"), "{section}");

    assert_eq!(worktrees(&repo), vec![canonical(&repo)]);
    assert_eq!(ordo_branches(&repo), Vec::<String>::new());
}

/// A dependent task runs in a worktree cut from the integration branch after its dependency
/// was integrated, so it sees the file the dependency wrote (it fails otherwise).
#[test]
fn dependent_task_sees_its_dependency_change() {
    let sb = Sandbox::new();
    let spec = sb.job(
        "chain.toml",
        r#"
name = "chain"
[settings]
workspace = "worktree"
timeout = "20s"

[[tasks]]
name = "produce"
command = "echo 'made by produce' > made.txt"

[[tasks]]
name = "consume"
depends_on = ["produce"]
command = "cat made.txt && test \"$(cat made.txt)\" = 'made by produce' && cp made.txt seen.txt"
"#,
    );
    let r = sb.run(&spec, &[]);
    assert_ok(&r, "ordo run");
    let report = sb.report_json();
    let branch = default_branch("chain", &report);
    assert_eq!(
        task(&report, "consume")["output_tail"],
        "made by produce\n",
        "{report:#}"
    );
    assert_eq!(sb.show(&branch, "seen.txt"), "made by produce");
    assert!(!sb.repo().join("made.txt").exists());
}

/// The user's checkout is never touched, even with uncommitted, staged and untracked changes
/// in it and a job that changes the same files: HEAD, the current branch, the status, the
/// staged diff, the bytes of the files and the stash are the same before and after.
#[test]
fn user_checkout_is_untouched() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    // A stash entry, a staged change, an unstaged change to a tracked file, an untracked file.
    write(&repo, "README.md", "# stashed\n");
    git(&repo, &["stash", "push", "-q", "-m", "user stash"]);
    write(&repo, "shared.txt", "line1 staged\nline2\n");
    git(&repo, &["add", "shared.txt"]);
    write(&repo, "README.md", "# demo\nuser edit, not committed\n");
    write(&repo, "notes.txt", "user's untracked notes\n");
    let before = sb.checkout();
    assert!(before.status.contains(" M README.md"), "{before:?}");
    assert!(before.status.contains("M  shared.txt"), "{before:?}");
    assert!(before.status.contains("?? notes.txt"), "{before:?}");
    assert!(before.stash.contains("user stash"), "{before:?}");

    let spec = sb.job(
        "touchy.toml",
        r#"
name = "touchy"
[settings]
workspace = "worktree"
timeout = "20s"

[[tasks]]
name = "readme"
command = "echo 'by the job' >> README.md"

[[tasks]]
name = "shared"
command = "sed -i '2s/$/ job/' shared.txt"

[[tasks]]
name = "notes"
command = "echo 'job notes' > notes.txt"
"#,
    );
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_ok(&r, "ordo run");
    let after = sb.checkout();
    assert_eq!(before, after);

    // The job did its work, on its own branch, from the committed HEAD.
    let branch = default_branch("touchy", &sb.report_json());
    assert_eq!(sb.show(&branch, "README.md"), "# demo\nby the job");
    assert_eq!(sb.show(&branch, "shared.txt"), "line1\nline2 job");
    assert_eq!(sb.show(&branch, "notes.txt"), "job notes");
}

/// A stand-in for a coding agent, called as `sh stub-agent.sh PROMPT`. The prompt's first line
/// says what to do: "append 'TEXT' to FILE". Every call is recorded in `$CALLS/<task>.<pid>`
/// (its attempt, `ORDO_CONFLICT_FILES` and the whole prompt). `AFTER_START=<task>` makes it
/// wait until that task has started; `AFTER_LINE=<text>` until the integration branch
/// (`$BRANCH`) holds that text in FILE.
const STUB_AGENT: &str = r#"
[ "$#" -eq 1 ] || { echo "stub-agent: expected the prompt as one argument, got $#" >&2; exit 64; }
prompt=$1
first=$(printf '%s\n' "$prompt" | head -n 1)
text=$(printf '%s' "$first" | sed -n "s/^append '\(.*\)' to \(.*\)$/\1/p")
file=$(printf '%s' "$first" | sed -n "s/^append '\(.*\)' to \(.*\)$/\2/p")
[ -n "$file" ] || { echo "stub-agent: cannot read the prompt: $first" >&2; exit 64; }
call="$CALLS/$ORDO_TASK.$$"
{
  echo "attempt=$ORDO_ATTEMPT"
  echo "conflict_files=${ORDO_CONFLICT_FILES-<unset>}"
  echo "prompt:"
  printf '%s\n' "$prompt"
} > "$call"
touch "$CALLS/started-$ORDO_TASK"
if [ -n "${AFTER_START:-}" ]; then
  until [ -e "$CALLS/started-$AFTER_START" ]; do sleep 0.01; done
fi
if [ -n "${AFTER_LINE:-}" ]; then
  until git show "$BRANCH:$file" 2>/dev/null | grep -qxF "$AFTER_LINE"; do sleep 0.01; done
fi
printf '%s\n' "$text" >> "$file"
echo "stub-agent: appended '$text' to $file"
"#;

/// One recorded call of the stub agent.
#[derive(Debug)]
struct AgentCall {
    task: String,
    attempt: String,
    conflict_files: String,
    prompt: String,
}

fn agent_calls(dir: &Path) -> Vec<AgentCall> {
    let mut calls = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("started-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, prompt) = text.split_once("prompt:\n").unwrap();
        let field = |k: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing in {text}"))
                .to_string()
        };
        calls.push(AgentCall {
            task: name.split('.').next().unwrap().to_string(),
            attempt: field("attempt"),
            conflict_files: field("conflict_files"),
            prompt: prompt.to_string(),
        });
    }
    calls.sort_by(|a, b| (&a.task, &a.attempt).cmp(&(&b.task, &b.attempt)));
    calls
}

/// Prompt tasks run by an agent in parallel worktrees, two of them appending to the same file:
/// as with commands, the second to integrate conflicts and runs again from the new tip, and
/// both lines end up on the branch. That re-run is told why: `ORDO_CONFLICT_FILES` names the
/// file and its prompt ends with ordo's note naming the file and the other task; first runs
/// get neither.
#[test]
fn agent_prompts_conflict_rerun_with_the_conflict_named() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let calls = sb.dir("calls");
    let agent = write(sb.root(), "stub-agent.sh", STUB_AGENT);
    let spec = sb.job(
        "agents.toml",
        &format!(
            r#"
name = "agents"
[settings]
workspace = "worktree"
target_branch = "agents"
agent_command = ["sh", "{agent}"]
timeout = "20s"
env = {{ CALLS = "{calls}", BRANCH = "agents" }}

[[tasks]]
name = "first-note"
prompt = "append 'first note' to notes.md"
env = {{ AFTER_START = "second-note" }}

[[tasks]]
name = "second-note"
prompt = "append 'second note' to notes.md"
env = {{ AFTER_LINE = "first note" }}

[[tasks]]
name = "changelog"
prompt = "append 'changed' to CHANGELOG.md"

[[tasks]]
name = "readme"
prompt = "append 'more docs' to README.md"
"#,
            calls = calls.display()
        ),
    );
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_ok(&r, "ordo run");

    assert_eq!(sb.show("agents", "notes.md"), "first note\nsecond note");
    assert_eq!(sb.show("agents", "CHANGELOG.md"), "changed");
    assert_eq!(sb.show("agents", "README.md"), "# demo\nmore docs");
    assert_no_conflict_markers(&repo, "agents");

    let calls = agent_calls(&calls);
    let names: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.task.as_str(), c.attempt.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("changelog", "1"),
            ("first-note", "1"),
            ("readme", "1"),
            ("second-note", "1"),
            ("second-note", "2"),
        ],
        "{calls:#?}"
    );
    for c in &calls[..4] {
        assert_eq!(c.conflict_files, "<unset>", "{c:#?}");
        assert!(!c.prompt.contains("Note from ordo"), "{c:#?}");
    }
    let rerun = &calls[4];
    assert_eq!(rerun.conflict_files, "notes.md", "{rerun:#?}");
    assert!(
        rerun
            .prompt
            .starts_with("append 'second note' to notes.md\n"),
        "{rerun:#?}"
    );
    let note = rerun
        .prompt
        .split_once("Note from ordo")
        .unwrap_or_else(|| panic!("no note in the re-run's prompt: {rerun:#?}"))
        .1;
    assert!(note.contains("notes.md"), "{rerun:#?}");
    assert!(note.contains("'first-note'"), "{rerun:#?}");

    let report = sb.report_json();
    let second = &task(&report, "second-note")["integration"];
    assert_eq!(second["conflicts"][0]["task"], "first-note", "{second:#}");
    assert_eq!(strings(&second["conflicts"][0]["files"]), ["notes.md"]);
    assert_eq!(report["summary"]["integration"]["conflicts"], 1);
}

/// Start and end times (ns) each task of a write-set job recorded.
fn spans(dir: &Path, names: &[&str]) -> BTreeMap<String, (u128, u128)> {
    names
        .iter()
        .map(|n| {
            let read = |what: &str| -> u128 {
                let p = dir.join(format!("{n}.{what}"));
                let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
                s.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{p:?}: {s:?}: {e}"))
            };
            (n.to_string(), (read("start"), read("end")))
        })
        .collect()
}

fn overlap(a: (u128, u128), b: (u128, u128)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Runs three `sleep 0.5` tasks with write-sets, two of them overlapping (`src/api/**` and
/// `src/api/x.rs`), one disjoint (`docs/**`), on 4 slots; returns when each ran.
fn write_set_job(worktree: bool) -> BTreeMap<String, (u128, u128)> {
    let sb = Sandbox::new();
    let times = sb.dir("times");
    let task = |name: &str, files: &str, path: &str| {
        format!(
            r#"
[[tasks]]
name = "{name}"
files = [{files}]
command = """
date +%s%N > "$TIMES/{name}.start"
sleep 0.5
mkdir -p "$(dirname {path})" && echo {name} > {path}
date +%s%N > "$TIMES/{name}.end"
"""
"#
        )
    };
    let mut spec = format!(
        "name = \"writesets\"\n[settings]\ntimeout = \"20s\"\nenv = {{ TIMES = \"{}\" }}\n",
        times.display()
    );
    if worktree {
        spec.push_str("workspace = \"worktree\"\n");
    }
    spec.push_str(&task("api", "\"src/api/**\"", "src/api/mod.rs"));
    spec.push_str(&task("api-x", "\"src/api/x.rs\"", "src/api/x.rs"));
    spec.push_str(&task("docs", "\"docs/**\", \"README.md\"", "docs/guide.md"));
    let spec = sb.job("writesets.toml", &spec);
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_ok(&r, "ordo run");
    if worktree {
        let branch = default_branch("writesets", &sb.report_json());
        assert_eq!(sb.show(&branch, "src/api/mod.rs"), "api");
        assert_eq!(sb.show(&branch, "src/api/x.rs"), "api-x");
        assert_eq!(sb.show(&branch, "docs/guide.md"), "docs");
    } else {
        assert!(sb.repo().join("src/api/x.rs").is_file());
    }
    spans(&times, &["api", "api-x", "docs"])
}

/// `files` write-sets: tasks whose globs may overlap never run at the same time, while a task
/// with a disjoint set runs beside them; in a plain job and in a worktree job alike.
#[test]
fn overlapping_write_sets_never_run_together() {
    for worktree in [false, true] {
        let s = write_set_job(worktree);
        let (api, x, docs) = (s["api"], s["api-x"], s["docs"]);
        assert!(
            !overlap(api, x),
            "worktree={worktree}: src/api/** and src/api/x.rs ran at the same time: {s:?}"
        );
        assert!(
            overlap(docs, api) || overlap(docs, x),
            "worktree={worktree}: the disjoint task ran alone: {s:?}"
        );
    }
}

/// A conflict is a race lost: it does not count against `max_integration_attempts`, but what a
/// rework cannot mend does. With a limit of 1, `second` conflicts (and runs again from the new
/// tip), then its clean merge fails the integration verify: that is final. The job fails
/// (exit 1), the task's reason names the file and the task it collided with, and its worktree
/// is kept, with its path in the report, for a person to look at.
#[test]
fn integration_failure_past_the_limit_fails_and_keeps_the_worktree() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let marks = sb.dir("marks");
    let spec = sb.job(
        "once.toml",
        &format!(
            r#"
name = "once"
[settings]
workspace = "worktree"
target_branch = "once"
max_integration_attempts = 1
integration_verify = "! grep -q second shared.txt"
timeout = "20s"
env = {{ MARKS = "{marks}" }}

[[tasks]]
name = "first"
command = """
until [ -e "$MARKS/second-started" ]; do sleep 0.01; done
sed -i '1s/$/ first/' shared.txt
"""

[[tasks]]
name = "second"
command = """
touch "$MARKS/second-started"
until git show once:shared.txt | grep -q first; do sleep 0.01; done
sed -i '1s/$/ second/' shared.txt
"""
"#,
            marks = marks.display()
        ),
    );
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(sb.show("once", "shared.txt"), "line1 first\nline2");

    let report = sb.report_json();
    let second = task(&report, "second");
    assert_eq!(second["state"], "failed", "{second:#}");
    let reason = second["reason"].as_str().unwrap();
    assert!(reason.contains("shared.txt"), "{reason}");
    assert!(reason.contains("'first'"), "{reason}");
    assert!(reason.contains("integration verify failed"), "{reason}");
    let runs = second["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{second:#}");
    assert_eq!(runs[0]["outcome"], "conflict", "{second:#}");
    let kept = PathBuf::from(
        second["integration"]["worktree"]
            .as_str()
            .unwrap_or_else(|| panic!("no worktree in {second:#}")),
    );
    assert!(kept.is_dir(), "{} is gone", kept.display());
    // The kept worktree holds the task's own change (made again on the new tip), on its task
    // branch.
    assert_eq!(
        std::fs::read_to_string(kept.join("shared.txt")).unwrap(),
        "line1 first second\nline2\n"
    );
    assert!(worktrees(&repo).contains(&canonical(&kept)));
    let task_branch = second["integration"]["branch"].as_str().unwrap();
    assert_eq!(
        git(&kept, &["symbolic-ref", "--short", "HEAD"]),
        task_branch
    );
}

/// Bad workspace settings are refused before anything runs or is created: exit 2, a message
/// naming the setting, and the repository's refs and worktrees as they were.
#[test]
fn bad_workspace_settings_are_refused_up_front() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let before = sb.refs_and_worktrees();
    let job = |settings: &str, task_extra: &str| {
        format!(
            "name = \"bad\"\n[settings]\n{settings}\n\n[[tasks]]\nname = \"a\"\ncommand = \"echo a > a.txt\"\n{task_extra}\n"
        )
    };
    let refused = |spec: &str, needles: &[&str]| {
        let r = sb.run(spec, &[]);
        assert_eq!(
            r.code(),
            2,
            "{spec}: expected exit 2:\n{}\n{}",
            r.stdout,
            r.stderr
        );
        for n in needles {
            assert!(r.stderr.contains(n), "{spec}: {n:?} not in:\n{}", r.stderr);
        }
        assert_eq!(
            sb.refs_and_worktrees(),
            before,
            "{spec} changed the repository"
        );
        assert!(!repo.join("a.txt").exists());
    };

    let spec = sb.job(
        "missing.toml",
        &job(
            "workspace = \"worktree\"\nrepository = \"/nonexistent\"",
            "",
        ),
    );
    refused(
        &spec,
        &["settings.repository", "/nonexistent", "does not exist"],
    );
    assert!(!Path::new("/nonexistent").exists());

    // A URL is refused at once (remote repositories come with distributed workspaces): no
    // clone, no network.
    let spec = sb.job(
        "remote.toml",
        &job(
            "workspace = \"worktree\"\nrepository = \"https://example.invalid/x.git\"",
            "",
        ),
    );
    refused(
        &spec,
        &[
            "settings.repository",
            "https://example.invalid/x.git",
            "needs a cluster",
        ],
    );

    // The integration branch may not be the branch the user has checked out.
    let spec = sb.job(
        "clash.toml",
        &job("workspace = \"worktree\"\ntarget_branch = \"main\"", ""),
    );
    refused(
        &spec,
        &["settings.target_branch", "\"main\"", "checked out"],
    );

    let spec = sb.job(
        "glob.toml",
        &job("workspace = \"worktree\"", "files = [\"src/[a\"]"),
    );
    refused(&spec, &["files", "src/[a"]);

    let spec = sb.job(
        "noworktree.toml",
        &job(&format!("repository = \"{}\"", repo.display()), ""),
    );
    refused(&spec, &["repository", "workspace = \"worktree\""]);

    // Outside any git repository (the ceiling keeps git from looking above the directory).
    let plain = sb.dir("plain");
    let spec = sb.job("outside.toml", &job("workspace = \"worktree\"", ""));
    let state = sb.root().join("plain-state").display().to_string();
    let ceiling = sb.root().display().to_string();
    let r = ordo_in(
        &plain,
        &["run", &spec, "--state", &state],
        &[("GIT_CEILING_DIRECTORIES", &ceiling)],
    );
    assert_eq!(r.code(), 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("settings.repository"), "{}", r.stderr);
    assert!(r.stderr.contains("not a git repository"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0);
    assert_eq!(sb.refs_and_worktrees(), before);
}

/// `ordo run --workspace worktree` puts a spec that has no way to say so (a subtasks JSON) in
/// worktrees: its change lands on `ordo/<job name>-<tag>`, not in the checkout.
#[test]
fn workspace_flag_runs_a_foreign_spec_in_worktrees() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let spec = sb.job(
        "tasks.json",
        r#"{"subtasks":[{"id":"a","description":"a","command":"echo a > a.txt"}],"executionMode":"parallel"}"#,
    );
    let r = sb.run(&spec, &["--workspace", "worktree"]);
    assert_ok(&r, "ordo run --workspace worktree");
    let report = sb.report_json();
    let branch = default_branch("tasks", &report);
    assert_eq!(sb.show(&branch, "a.txt"), "a");
    assert!(!repo.join("a.txt").exists());
    assert_eq!(ordo_branches(&repo), vec![branch]);
    assert_eq!(worktrees(&repo), vec![canonical(&repo)]);
}

/// A task that breaks its worktree (deletes its `.git`, or switches it to another branch)
/// fails with a message saying its work cannot be committed, without harming the user's
/// repository (fsck clean, same HEAD, status and files), and the other tasks' work is still
/// integrated.
#[test]
fn a_task_that_breaks_its_worktree_fails_alone() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    write(&repo, "notes.txt", "untracked\n");
    let before = sb.checkout();
    let spec = sb.job(
        "vandal.toml",
        r#"
name = "vandal"
[settings]
workspace = "worktree"
target_branch = "vandal"
timeout = "20s"

[[tasks]]
name = "no-git"
max_attempts = 1
command = "echo lost > lost.txt && echo clobbered > README.md && rm -rf .git"

[[tasks]]
name = "switch"
max_attempts = 1
command = "git checkout -q -b other && echo elsewhere > elsewhere.txt"

[[tasks]]
name = "good"
command = "echo good > good.txt"
"#,
    );
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);

    let report = sb.report_json();
    for (name, why) in [("no-git", ".git is gone"), ("switch", "switched branches")] {
        let t = task(&report, name);
        assert_eq!(t["state"], "failed", "{t:#}");
        let reason = t["reason"].as_str().unwrap();
        assert!(reason.contains("cannot commit"), "{name}: {reason}");
        assert!(reason.contains(why), "{name}: {reason}");
    }
    assert_eq!(task(&report, "good")["state"], "succeeded");
    assert_eq!(sb.show("vandal", "good.txt"), "good");
    for absent in ["lost.txt", "elsewhere.txt"] {
        let r = git_run(&repo, &["cat-file", "-e", &format!("vandal:{absent}")]);
        assert_ne!(r.code(), 0, "{absent} reached the integration branch");
    }
    assert_eq!(sb.show("vandal", "README.md"), "# demo");

    assert_eq!(sb.checkout(), before);
    git(&repo, &["fsck", "--no-progress"]);
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]), "1");
}

/// A failed task's worktree and branch are named, with the command that removes them, by
/// `ordo status` and the report; `ordo prune --job` removes them (and only them: the job's
/// record and integration branch stay, and so does the user's checkout).
#[test]
fn kept_worktrees_are_reported_and_pruned() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let spec = sb.job(
        "kept.toml",
        r#"
name = "kept"
[settings]
workspace = "worktree"
target_branch = "kept"

[[tasks]]
name = "broken"
command = "echo half > half.txt && exit 3"

[[tasks]]
name = "fine"
command = "echo fine > fine.txt"
"#,
    );
    let r = sb.run(&spec, &["--workers", "2"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let state = sb.state();
    let jobs = ordo_in(
        &repo,
        &["status", "--state", &state, "--output", "json"],
        &[],
    );
    let job = jobs.json()[0]["id"].as_str().unwrap().to_string();
    let kept_branch = ordo_branches(&repo)
        .into_iter()
        .find(|b| b.contains("broken"))
        .expect("the failed task's branch is kept");
    let kept_tree = worktrees(&repo)
        .into_iter()
        .nth(1)
        .expect("the failed task's worktree is kept");
    assert!(kept_tree.join("half.txt").exists());

    let status = ordo_in(&repo, &["status", &job, "--state", &state], &[]);
    assert_ok(&status, "ordo status");
    let command = format!("ordo prune --job {job}");
    for named in [
        command.as_str(),
        kept_branch.as_str(),
        &kept_tree.display().to_string(),
    ] {
        assert!(status.stdout.contains(named), "{named}:\n{}", status.stdout);
    }
    let md = sb.report("md");
    assert!(md.stdout.contains(&command), "{}", md.stdout);

    let before = sb.checkout();
    let r = ordo_in(&repo, &["prune", "--job", &job, "--state", &state], &[]);
    assert_ok(&r, "ordo prune --job");
    assert_eq!(ordo_branches(&repo), Vec::<String>::new());
    assert_eq!(worktrees(&repo), vec![canonical(&repo)]);
    assert!(!kept_tree.exists());
    assert_eq!(git(&repo, &["branch", "--list", "kept"]).trim(), "kept");
    assert_eq!(sb.checkout(), before);
    let status = ordo_in(&repo, &["status", &job, "--state", &state], &[]);
    assert_ok(&status, "ordo status after prune");
    assert!(!status.stdout.contains(&command), "{}", status.stdout);
}

/// `ordo run`s side by side in one repository, each making and removing many worktrees at
/// once, never read each other's half-written worktree entries: every task of both jobs
/// succeeds with one attempt and both integration branches hold all their files.
#[test]
fn ordo_runs_side_by_side_share_one_repository() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let names: Vec<String> = (0..3).map(|i| format!("side{i}")).collect();
    let runs: Vec<std::thread::JoinHandle<Run>> = names
        .iter()
        .map(|name| {
            let mut text = format!(
                "name = \"{name}\"\n[settings]\nworkspace = \"worktree\"\ntarget_branch = \
                 \"{name}\"\nmax_parallel_tasks = 8\n"
            );
            for t in 0..8 {
                text.push_str(&format!(
                    "\n[[tasks]]\nname = \"t{t}\"\ncommand = \"echo {t} > f{t}.txt\"\n"
                ));
            }
            let spec = sb.job(&format!("{name}.toml"), &text);
            let state = sb.dir(&format!("state-{name}")).display().to_string();
            let repo = repo.clone();
            std::thread::spawn(move || {
                ordo_in(
                    &repo,
                    &["run", &spec, "--state", &state, "--workers", "8"],
                    &[],
                )
            })
        })
        .collect();
    for (name, run) in names.iter().zip(runs) {
        let r = run.join().unwrap();
        assert_ok(&r, name);
        for t in 0..8 {
            assert_eq!(sb.show(name, &format!("f{t}.txt")), t.to_string(), "{name}");
        }
    }
    assert_eq!(worktrees(&repo), vec![canonical(&repo)]);
    assert_eq!(ordo_branches(&repo), Vec::<String>::new());
}

/// A worktree `ordo run` cannot make is not the task's failure: the attempt is tried again
/// without counting (here three times, the worktree root being a file) and only then fails,
/// saying how many tries it took; the task spent its one attempt, and its command never ran.
#[test]
fn a_worktree_that_cannot_be_made_is_tried_again_before_failing() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    write(&repo.join(".git"), "ordo-worktrees", "not a directory\n");
    let marks = sb.dir("marks");
    let spec = sb.job(
        "unmade.toml",
        &format!(
            "name = \"unmade\"\n[settings]\nworkspace = \"worktree\"\ntarget_branch = \
             \"unmade\"\n\n[[tasks]]\nname = \"t\"\ncommand = \"touch {}/ran\"\n",
            marks.display()
        ),
    );
    let r = sb.run(&spec, &[]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let report = sb.report_json();
    let t = task(&report, "t");
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");
    let reason = t["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("(3 tries)"), "{reason}");
    assert!(!marks.join("ran").exists());
}

/// The repository's merge drivers apply to integration merges as they would to `git merge`:
/// with `shared.txt merge=union` in the `.gitattributes` of the branch the job integrates
/// onto, two tasks changing the same line merge without a conflict (both lines kept) and
/// nobody runs again. The user's checkout has no such file (it is on another branch), so the
/// attributes are read from the integration branch, not from the checkout.
#[test]
fn merge_drivers_of_the_integration_branch_apply() {
    let sb = Sandbox::new();
    let repo = sb.repo();
    let marks = sb.dir("marks");
    git(&repo, &["checkout", "-q", "-b", "with-union"]);
    write(&repo, ".gitattributes", "shared.txt merge=union\n");
    git(&repo, &["add", ".gitattributes"]);
    git(&repo, &["commit", "-q", "-m", "union driver"]);
    git(&repo, &["checkout", "-q", "main"]);
    let spec = sb.job(
        "union.toml",
        &format!(
            r#"
name = "union"
[settings]
workspace = "worktree"
target_branch = "it"
base = "with-union"
timeout = "20s"
env = {{ MARKS = "{marks}" }}
{pair}"#,
            marks = marks.display(),
            pair = ordo_tests::conflicting_pair("git show it:shared.txt")
        ),
    );
    let r = sb.run(&spec, &["--workers", "4"]);
    assert_ok(&r, "ordo run");
    assert_eq!(
        sb.show("it", "shared.txt"),
        "line1 early\nline1 late\nline2"
    );
    let report = sb.report_json();
    assert_eq!(
        report["summary"]["integration"]["conflicts"], 0,
        "{report:#}"
    );
    assert_eq!(task(&report, "late")["runs"].as_array().unwrap().len(), 1);
    assert!(
        !repo.join(".gitattributes").exists(),
        "the checkout is untouched"
    );
}

/// The hot-file job: 24 agent tasks (the stand-in speaking Claude Code's JSON) on 4 slots, one
/// in three inserting a line under the one header of `CHANGELOG.md`. With default settings
/// the job succeeds: every change and all 8 changelog lines are on the branch, no marker
/// anywhere. A conflict is resolved in the task's own session (the tip merged into its work),
/// so agent runs beyond the 24 are at most one per conflict; none starves.
#[test]
fn a_hot_file_starves_no_task_and_conflicts_are_resolved_in_session() {
    let (r, sb, log) = hot_file_job(&[]);
    assert_ok(&r, "ordo run");
    let repo = sb.repo();
    for i in 0..24 {
        assert_eq!(sb.show("it", &format!("t{i}.txt")), format!("{i}"));
    }
    let changelog = sb.show("it", "CHANGELOG.md");
    let lines: Vec<&str> = changelog
        .lines()
        .filter(|l| l.starts_with("- change"))
        .collect();
    assert_eq!(lines.len(), 8, "{changelog}");
    assert_no_conflict_markers(&repo, "it");
    let report = sb.report_json();
    let conflicts = report["summary"]["integration"]["conflicts"]
        .as_u64()
        .unwrap();
    let calls = std::fs::read_to_string(log).unwrap();
    let runs = calls.lines().count() as u64;
    assert!(runs >= 24, "{runs}");
    // t0 and t3 start together from the same tip: t3 loses the race and resolves it.
    assert!(conflicts >= 1, "{report:#}");
    assert!(
        calls
            .lines()
            .any(|l| !l.contains("resume= ") && l.contains("prompt=Your change conflicts")),
        "no resolve round resumed a session:
{calls}"
    );
    assert!(
        runs - 24 <= conflicts,
        "{runs} agent runs for 24 tasks and {conflicts} conflicts"
    );
    // The report tells how the races were reworked, and which file was hot.
    let ji = &report["summary"]["integration"];
    assert!(ji["resolve_rounds"].as_u64().unwrap() >= 1, "{ji:#}");
    assert_eq!(ji["hot_files"][0]["file"], "CHANGELOG.md", "{ji:#}");
    let resolved = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["runs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["resolve"] == true)
        })
        .count();
    assert!(resolved >= 1, "no run marked as a resolve round");
    let md = sb.report("md").stdout;
    assert!(md.contains("Hot files: CHANGELOG.md ("), "{md}");
}

/// A resolve round whose agent leaves the markers in: the task is run again from the new tip
/// instead (no attempt spent), never integrated with markers.
#[test]
fn a_resolve_round_that_leaves_markers_runs_the_task_again() {
    let (r, sb, _) = hot_file_job(&[("STUB_LEAVE_MARKERS", "1")]);
    assert_ok(&r, "ordo run");
    assert_no_conflict_markers(&sb.repo(), "it");
    let changelog = sb.show("it", "CHANGELOG.md");
    assert_eq!(
        changelog
            .lines()
            .filter(|l| l.starts_with("- change"))
            .count(),
        8,
        "{changelog}"
    );
}

/// Runs the hot-file job (see above) with the stub agent's `env` extended; the run, the
/// sandbox and the stub's call log.
fn hot_file_job(env: &[(&str, &str)]) -> (Run, Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let repo = sb.repo();
    write(&repo, "CHANGELOG.md", "# Changelog\n\n## Unreleased\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "changelog"]);
    let log = sb.dir("logs").join("calls.log");
    let mut vars = format!(
        "STUB_LOG = \"{}\", STUB_STATE = \"{}\"",
        log.display(),
        sb.dir("stub").display()
    );
    for (k, v) in env {
        vars.push_str(&format!(", {k} = \"{v}\""));
    }
    let mut text = format!(
        "name = \"hot\"\n[settings]\nworkspace = \"worktree\"\ntarget_branch = \"it\"\n\
         max_parallel_tasks = 4\nagent = \"claude\"\nagent_command = [\"{}\"]\nenv = {{ {vars} }}\n",
        ordo_tests::stub_agent("claude")
    );
    text.push_str(&ordo_tests::hot_file_tasks(24, "0.2"));
    let spec = sb.job("hot.toml", &text);
    let r = sb.run(&spec, &[]);
    (r, sb, log)
}

/// A TaskMaster tasks.json in worktrees (`--workspace worktree`, its agent from `--with`): the
/// commits name each task by its id and title, as every other place shows it.
#[test]
fn taskmaster_commits_carry_the_task_title() {
    let sb = Sandbox::new();
    let tasks = sb.job(
        "tasks.json",
        r#"{"master": {"tasks": [
  {"id": 1, "title": "Plan the work", "description": "write plan.txt: the plan", "status": "pending", "dependencies": []},
  {"id": 2, "title": "Build it", "description": "write build.txt: built", "status": "pending", "dependencies": [1]}
]}}"#,
    );
    let with = sb.job(
        "with.toml",
        &format!(
            "[settings]\ntarget_branch = \"it\"\nagent = \"claude\"\nagent_command = [\"{}\"]\n\
             env = {{ STUB_STATE = \"{}\" }}\n",
            ordo_tests::stub_agent("claude"),
            sb.dir("stub").display()
        ),
    );
    let r = sb.run(&tasks, &["--workspace", "worktree", "--with", &with]);
    assert_ok(&r, "ordo run");
    assert_eq!(sb.show("it", "build.txt"), "built");
    let subjects = git(&sb.repo(), &["log", "it", "--format=%s"]);
    for want in [
        "ordo: 1 (Plan the work) (attempt 1)",
        "ordo: 2 (Build it) (attempt 1)",
    ] {
        assert!(
            subjects.lines().any(|l| l == want),
            "no {want:?} in:\n{subjects}"
        );
    }
}
