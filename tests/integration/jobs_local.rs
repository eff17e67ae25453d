//! The job commands on a local state directory (`--state DIR`), through the same job client
//! as the coordinator's API: a job left by `ordo run --state` is listed, shown, its output
//! read and retried here to its end; a job submitted with `--state` runs in the submitting
//! process; bad ids and missing directories are input errors (exit 2) that change nothing.

use std::path::Path;

use ordo_tests::{git, ordo_in, task, write};

/// A job whose `flaky` task fails until `ok` exists, and a dependent that is skipped then.
const FLAKY: &str = r#"
name = "flaky"
[[tasks]]
name = "setup"
command = "echo setting up"

[[tasks]]
name = "flaky"
command = "echo trying; test -e ok"
depends_on = ["setup"]

[[tasks]]
name = "after"
command = "echo after"
depends_on = ["flaky"]
"#;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn status(dir: &Path, job: &str) -> serde_json::Value {
    let r = ordo_in(
        dir,
        &["status", job, "--state", "st", "--output", "json"],
        &[],
    );
    assert!(r.status.success(), "{}", r.stderr);
    json(&r.stdout)
}

#[test]
fn a_failed_local_job_is_shown_read_and_retried_to_success_from_its_state_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let spec = write(d, "job.toml", FLAKY);
    let r = ordo_in(d, &["run", &spec, "--state", "st", "-q"], &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);

    // Listed (status without a job), by its state, newest first.
    let r = ordo_in(d, &["status", "--state", "st", "--output", "json"], &[]);
    assert!(r.status.success(), "{}", r.stderr);
    let list = json(&r.stdout);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["state"], "failed");
    let id = list[0]["id"].as_str().unwrap().to_string();

    // Shown by the start of its id, as the coordinator shows a job.
    let st = status(d, &id[..8]);
    assert_eq!(st["id"], id.as_str());
    assert_eq!(task(&st, "setup")["state"], "succeeded");
    assert_eq!(task(&st, "flaky")["state"], "failed");
    assert_eq!(task(&st, "after")["state"], "skipped");

    // One task's output, raw.
    let r = ordo_in(d, &["logs", &id, "flaky", "--state", "st"], &[]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "trying\n");

    // Retried here: only what did not succeed runs again, to the end, and the exit says how.
    std::fs::write(d.join("ok"), "").unwrap();
    let r = ordo_in(d, &["retry", &id, "--failed-only", "--state", "st"], &[]);
    assert_eq!(r.status.code(), Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("✓ flaky succeeded"), "{}", r.stderr);
    let st = status(d, &id);
    assert_eq!(st["state"], "succeeded");
    assert_eq!(
        task(&st, "setup")["attempts"],
        1,
        "a success is not run again"
    );
    assert_eq!(task(&st, "flaky")["attempts"], 2);
    assert_eq!(task(&st, "after")["state"], "succeeded");

    // The report of the state directory tells the same story.
    let r = ordo_in(
        d,
        &["report", &id, "--state", "st", "--format", "json"],
        &[],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(json(&r.stdout)["summary"]["outcome"], "succeeded");
}

#[test]
fn a_job_submitted_to_a_state_directory_runs_in_the_submitting_process() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("ok"), "").unwrap();
    let spec = write(d, "job.toml", FLAKY);
    let r = ordo_in(d, &["submit", &spec, "--state", "st"], &[]);
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    assert!(
        id.parse::<uuid_like::Id>().is_ok(),
        "only the id on stdout: {:?}",
        r.stdout
    );
    // The process returned after the job ended: every task is recorded as done.
    let st = status(d, &id);
    assert_eq!(st["state"], "succeeded", "{st}");
    assert_eq!(st["succeeded"], 3);
}

#[test]
fn bad_ids_and_missing_directories_are_input_errors_that_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = ordo_in(d, &["status", "--state", "nowhere"], &[]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("holds no ordo state"), "{}", r.stderr);
    assert!(
        !d.join("nowhere").exists(),
        "a reading command created a state directory"
    );

    let spec = write(d, "job.toml", FLAKY);
    ordo_in(d, &["run", &spec, "--state", "st", "-q"], &[]);
    for (args, says) in [
        (&["status", "zzz", "--state", "st"][..], "no job 'zzz'"),
        (
            &["logs", "0000", "--state", "st"][..],
            "no job '0000' in the state directory",
        ),
        (&["cancel", "-", "--state", "st"][..], "no job"),
    ] {
        let r = ordo_in(d, args, &[]);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    // A job that ended cannot be cancelled again, and nothing changed.
    let r = ordo_in(d, &["status", "--state", "st", "--output", "json"], &[]);
    let id = json(&r.stdout)[0]["id"].as_str().unwrap().to_string();
    let before = status(d, &id);
    let r = ordo_in(
        d,
        &["cancel", &id, "--state", "st", "--output", "json"],
        &[],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(json(&r.stdout)["state"], "failed");
    assert_eq!(status(d, &id), before);
}

/// Just enough of a UUID check for "only the id on stdout".
mod uuid_like {
    pub struct Id;
    impl std::str::FromStr for Id {
        type Err = ();
        fn from_str(s: &str) -> Result<Id, ()> {
            let hex = s.chars().filter(|c| *c != '-').count();
            let ok =
                s.len() == 36 && hex == 32 && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
            if ok { Ok(Id) } else { Err(()) }
        }
    }
}

/// `ordo prune` removes the worktrees and task branches that a pruned worktree job kept (a
/// task that failed to integrate keeps its worktree); the integration branch, the job's
/// result, stays.
#[test]
fn prune_removes_the_worktrees_a_pruned_job_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let repo = d.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "t@example.com"]);
    git(&repo, &["config", "user.name", "t"]);
    std::fs::write(repo.join("same.txt"), "one\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "init"]);
    let spec = write(
        d,
        "job.toml",
        &format!(
            r#"
name = "clash"
[settings]
workspace = "worktree"
repository = "{}"
max_integration_attempts = 1
integration_verify = "! test -e other.txt"
[[tasks]]
name = "first"
command = "echo first > same.txt"
[[tasks]]
name = "second"
command = "echo second > other.txt"
"#,
            repo.display()
        ),
    );
    let r = ordo_in(d, &["run", &spec, "--state", "st", "-q"], &[]);
    assert_eq!(r.status.code(), Some(1), "{}\n{}", r.stdout, r.stderr);
    let worktrees = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees.matches("worktree ").count(),
        2,
        "the failed task's worktree is kept: {worktrees}"
    );
    let branches = git(&repo, &["branch", "--list", "ordo/*"]);
    assert_eq!(branches.lines().count(), 2, "{branches}");

    let r = ordo_in(d, &["prune", "--older-than", "0s", "--state", "st"], &[]);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(r.stdout.contains("removed 1"), "{}", r.stdout);
    let worktrees = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 1, "{worktrees}");
    let branches = git(&repo, &["branch", "--list", "ordo/*"]);
    assert_eq!(
        branches.lines().count(),
        1,
        "only the integration branch stays: {branches}"
    );
    assert!(branches.contains("ordo/clash-"), "{branches}");
}

/// `ordo retry JOB --task T` runs T and the tasks it held back, nothing else: an unrelated
/// failed task stays failed (and so does the job); an unknown task or `--task` with
/// `--failed-only` is an input error that changes nothing.
#[test]
fn retry_of_one_task_runs_it_and_what_it_held_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let spec = write(
        d,
        "job.toml",
        r#"
name = "two-failures"
[[tasks]]
name = "a"
command = "test -e ok-a"
depends_on = []

[[tasks]]
name = "b"
command = "echo b"
depends_on = ["a"]

[[tasks]]
name = "c"
command = "test -e ok-c"
depends_on = []
"#,
    );
    let r = ordo_in(d, &["run", &spec, "--state", "st", "-q"], &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    let r = ordo_in(d, &["status", "--state", "st", "--output", "json"], &[]);
    let id = json(&r.stdout)[0]["id"].as_str().unwrap().to_string();
    std::fs::write(d.join("ok-a"), "").unwrap();
    std::fs::write(d.join("ok-c"), "").unwrap();

    for (args, says) in [
        (vec!["--task", "zz"], "no task named \"zz\""),
        (vec!["--task", "a", "--failed-only"], "cannot be used with"),
    ] {
        let mut all = vec!["retry", id.as_str(), "--state", "st"];
        all.extend(args);
        let r = ordo_in(d, &all, &[]);
        assert_eq!(r.status.code(), Some(2), "{all:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{all:?}: {}", r.stderr);
    }
    assert_eq!(
        status(d, &id)["state"],
        "failed",
        "a refused retry changes nothing"
    );

    let r = ordo_in(d, &["retry", &id, "--task", "a", "--state", "st"], &[]);
    assert_eq!(r.status.code(), Some(1), "c is still failed: {}", r.stderr);
    let st = status(d, &id);
    assert_eq!(task(&st, "a")["state"], "succeeded");
    assert_eq!(task(&st, "a")["attempts"], 2);
    assert_eq!(task(&st, "b")["state"], "succeeded");
    assert_eq!(task(&st, "c")["state"], "failed");
    assert_eq!(task(&st, "c")["attempts"], 1, "c was not asked for");
}
