//! Approvals end to end (docs/design.md, "Quality gates: approvals"): in a worktree job only
//! the task touching `migrations/**` waits; it is approved from another process (`ordo approve
//! --state DIR` while `ordo run --state DIR` runs) and then integrates; a decision twice, an
//! unknown task and a rejection without a reason are refused.

use std::path::Path;
use std::time::Duration;

use ordo_tests::{git, ordo_in, spawn_ordo, task, wait_child, wait_until, write};

fn repo(d: &Path) -> std::path::PathBuf {
    let repo = d.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "t@example.com"]);
    git(&repo, &["config", "user.name", "t"]);
    std::fs::write(repo.join("README"), "x\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "init"]);
    repo
}

/// The state directory's job and its status, once a job is there.
fn the_job(d: &Path) -> Option<(String, serde_json::Value)> {
    let r = ordo_in(d, &["status", "--state", "st", "--output", "json"], &[]);
    let list: serde_json::Value = serde_json::from_str(r.stdout.trim()).ok()?;
    let id = list.as_array()?.first()?["id"].as_str()?.to_string();
    let r = ordo_in(
        d,
        &["status", &id, "--state", "st", "--output", "json"],
        &[],
    );
    Some((id, serde_json::from_str(r.stdout.trim()).ok()?))
}

#[test]
fn only_the_migration_waits_and_is_approved_from_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let repo = repo(d);
    let spec = write(
        d,
        "job.toml",
        &format!(
            r#"
name = "gated"
[settings]
workspace = "worktree"
repository = "{}"
max_parallel_tasks = 2
[[stages]]
name = "dba"
kind = "approval"
select = {{ gate = "*" }}
when_files = ["migrations/**"]
[[tasks]]
name = "db"
labels = {{ gate = "yes" }}
command = "mkdir -p migrations && echo 'create table t;' > migrations/1.sql"
[[tasks]]
name = "ui"
labels = {{ gate = "yes" }}
command = "echo ui > ui.txt"
[[tasks]]
name = "after"
depends_on = ["db"]
command = "test -e migrations/1.sql"
"#,
            repo.display()
        ),
    );
    let mut run = spawn_ordo(d, &["run", &spec, "--state", "st", "-q"]);
    let mut seen = None;
    let waiting = wait_until(Duration::from_secs(30), || {
        seen = the_job(d);
        seen.as_ref().is_some_and(|(_, st)| {
            task(st, "db")["state"] == "awaiting_approval" && task(st, "ui")["state"] == "succeeded"
        })
    });
    let (job, st) = seen.clone().unwrap_or_default();
    assert!(waiting, "{st}");
    // Only the migration waits; its dependent waits with it.
    assert_eq!(task(&st, "after")["state"], "pending", "{st}");
    let view = &task(&st, "db")["approval"];
    assert_eq!(view["stage"], "dba", "{st}");
    assert_eq!(view["files"][0]["path"], "migrations/1.sql", "{st}");
    // What `ordo status` prints says how to approve it.
    let r = ordo_in(d, &["status", &job, "--state", "st"], &[]);
    assert!(
        r.stdout.contains(&format!("ordo approve {job} db")),
        "{}",
        r.stdout
    );

    // Bad decisions are refused, naming what is wrong, and change nothing.
    let r = ordo_in(d, &["approve", &job, "nope", "--state", "st"], &[]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("no task 'nope'"), "{}", r.stderr);
    let r = ordo_in(
        d,
        &["reject", &job, "db", "--reason", " ", "--state", "st"],
        &[],
    );
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("needs a reason"), "{}", r.stderr);
    let r = ordo_in(d, &["approve", &job, "ui", "--state", "st"], &[]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "task ui of job {job} is not awaiting approval (it is succeeded)"
        )),
        "{}",
        r.stderr
    );

    let r = ordo_in(
        d,
        &[
            "approve",
            &job,
            "db",
            "--comment",
            "reviewed",
            "--state",
            "st",
        ],
        &[("USER", "dana")],
    );
    assert!(r.status.success(), "{}", r.stderr);
    let status = wait_child(&mut run, Duration::from_secs(30));
    assert!(status.success(), "the run ends once approved");
    let r = ordo_in(d, &["approve", &job, "db", "--state", "st"], &[]);
    assert_eq!(
        r.status.code(),
        Some(2),
        "a decision is applied once: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("is not awaiting approval (it is succeeded)"),
        "{}",
        r.stderr
    );

    let branch = git(&repo, &["branch", "--list", "ordo/gated-*"]);
    let branch = branch
        .trim()
        .trim_start_matches(['*', '+', ' '])
        .to_string();
    let files = git(&repo, &["ls-tree", "-r", "--name-only", &branch]);
    assert!(
        files.contains("migrations/1.sql") && files.contains("ui.txt"),
        "{files}"
    );
}
