//! Approvals end to end (docs/design.md, "Quality gates: approvals"): in a worktree job only
//! the task touching `migrations/**` waits; it is approved from another process (`ordo approve
//! --state DIR` while `ordo run --state DIR` runs) and then integrates; a decision twice, an
//! unknown task and a rejection without a reason are refused. A rejection to revise resumes
//! the implementer with the reason, a timeout rejects; on a cluster an approval survives a
//! coordinator killed while the task waits, and a worker killed mid-review leaves the task to
//! the other worker.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ordo_tests::ledger::{self, Row, Tally};
use ordo_tests::{Cluster, git, ordo_in, spawn_ordo, task, wait_child, wait_until, write};
use serde_json::Value;

use crate::notify::{Receiver, Request};
use crate::workspaces_cluster::Shared;

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

/// A worktree job of one prompt task (the Claude stub as implementer, its calls logged and
/// its sessions kept in `d`) behind the approval stage `lead` with `stage` (more of its
/// fields), and a task `ui` no stage selects.
fn prompt_job(d: &Path, repo: &Path, name: &str, stage: &str) -> String {
    write(
        d,
        &format!("{name}.toml"),
        &format!(
            r#"
name = "{name}"
[settings]
workspace = "worktree"
repository = "{repo}"
timeout = "20s"
agent = "claude"
agent_command = ["{stub}"]
env = {{ STUB_LOG = "{log}", STUB_STATE = "{state}" }}
[[stages]]
name = "lead"
kind = "approval"
{stage}
[[tasks]]
name = "feature"
max_attempts = 1
prompt = """write a.txt: one
then write b.txt: helper"""
[[tasks]]
name = "ui"
command = "echo ui > ui.txt"
"#,
            repo = repo.display(),
            stub = ordo_tests::stub_agent("claude"),
            log = d.join("calls.log").display(),
            state = d.display(),
        ),
    )
}

/// The integration branch of the state directory's job `job` named `name`.
fn integration_branch(name: &str, job: &str) -> String {
    format!("ordo/{name}-{}-{}", &job[..8], &job[job.len() - 4..])
}

/// Rejected with `on_reject = "revise"` from another process, the reason goes back to the
/// implementer: its own session is resumed with a prompt carrying the reason, its fix is
/// made, the task awaits approval again (no attempt spent), and approved it integrates with
/// the fix; `status` names who approved the attempt that integrated.
#[test]
fn a_rejection_to_revise_resumes_the_implementer_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let repo = repo(d);
    let spec = prompt_job(d, &repo, "revised", "on_reject = \"revise\"");
    let calls = || ordo_tests::lines(&d.join("calls.log"));
    let mut run = spawn_ordo(d, &["run", &spec, "--state", "st", "-q"]);
    let mut seen = None;
    let awaits = |seen: &mut Option<(String, serde_json::Value)>, calls_made: usize| {
        wait_until(Duration::from_secs(30), || {
            *seen = the_job(d);
            calls().len() == calls_made
                && seen
                    .as_ref()
                    .is_some_and(|(_, st)| task(st, "feature")["state"] == "awaiting_approval")
        })
    };
    assert!(awaits(&mut seen, 1), "{seen:?} {:?}", calls());
    let (job, _) = seen.clone().unwrap();

    let r = ordo_in(
        d,
        &[
            "reject",
            &job,
            "feature",
            "--reason",
            "use the helper",
            "--state",
            "st",
        ],
        &[("USER", "rita")],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert!(awaits(&mut seen, 2), "{seen:?} {:?}", calls());
    let st = seen.clone().unwrap().1;
    assert_eq!(task(&st, "feature")["attempts"], 1, "{st}");

    // The second call resumed the implementer's session (the one the first call started)
    // with the reason.
    let calls = calls();
    assert!(calls[0].contains("resume= "), "{calls:?}");
    let session = calls[1]
        .split(' ')
        .find_map(|w| w.strip_prefix("resume="))
        .unwrap_or_default()
        .to_string();
    assert!(session.starts_with("stub-feature-"), "{calls:?}");
    let prompts = std::fs::read_to_string(d.join("ordo-stub-agent").join(&session)).unwrap();
    assert!(prompts.starts_with("write a.txt: one\n"), "{prompts}");
    assert!(
        prompts.contains("The lead stage asked for changes") && prompts.contains("use the helper"),
        "{prompts}"
    );

    let r = ordo_in(
        d,
        &["approve", &job, "feature", "--state", "st"],
        &[("USER", "dana")],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert!(wait_child(&mut run, Duration::from_secs(30)).success());
    let (_, st) = the_job(d).unwrap();
    let feature = task(&st, "feature");
    assert_eq!(feature["state"], "succeeded", "{st}");
    assert_eq!(feature["attempts"], 1, "{st}");
    let lead: Vec<&serde_json::Value> = feature["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "lead")
        .collect();
    assert_eq!(lead.len(), 1, "{feature:#}");
    assert_eq!(lead[0]["verdict"], "pass", "{feature:#}");
    assert_eq!(lead[0]["by"], "dana", "{feature:#}");

    let branch = integration_branch("revised", &job);
    assert_eq!(git(&repo, &["show", &format!("{branch}:a.txt")]), "one");
    assert_eq!(git(&repo, &["show", &format!("{branch}:b.txt")]), "helper");
}

/// An approval nobody gives within its `timeout` rejects (the default `on_timeout`): the task
/// fails with a reason naming the timeout, none of its work is integrated (the other task's
/// is), and the job fails.
#[test]
fn an_approval_timeout_rejects_and_the_job_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let repo = repo(d);
    let spec = prompt_job(d, &repo, "timed", "timeout = \"1s\"");
    let r = ordo_in(d, &["run", &spec, "--state", "st", "-q"], &[]);
    assert_eq!(r.status.code(), Some(1), "{}\n{}", r.stdout, r.stderr);
    let (job, st) = the_job(d).unwrap();
    assert_eq!(st["state"], "failed", "{st}");
    let feature = task(&st, "feature");
    assert_eq!(feature["state"], "failed", "{st}");
    assert_eq!(
        feature["reason"], "approval lead timed out after 1s",
        "{st}"
    );
    assert_eq!(feature["stages"][0]["by"], "timeout", "{st}");
    let branch = integration_branch("timed", &job);
    let files = git(&repo, &["ls-tree", "-r", "--name-only", &branch]);
    assert!(files.contains("ui.txt"), "{files}");
    assert!(!files.contains("a.txt"), "{files}");
}

/// A cluster job's status once the coordinator answers for it.
fn cluster_status(c: &Cluster, job: &str) -> Option<Value> {
    let r = c.ordo(&["status", job, "--output", "json"]);
    (r.code() == 0).then(|| r.json())
}

/// `ordo submit` on a cluster; the job's id.
pub(crate) fn submit(c: &Cluster, spec: &str) -> String {
    let r = c.ordo(&["submit", spec]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    r.first_line()
}

/// Waits (up to a minute) until the job has ended; its last status.
pub(crate) fn until_ended(c: &Cluster, job: &str) -> Value {
    let mut last = Value::Null;
    let ended = wait_until(Duration::from_secs(60), || {
        last = cluster_status(c, job).unwrap_or(Value::Null);
        matches!(
            last["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
    });
    assert!(ended, "{last:#}\n{}", c.logs());
    last
}

/// How many first-parent commits of `branch` in `repo` brought `file`.
pub(crate) fn commits_touching(repo: &Path, branch: &str, file: &str) -> usize {
    git(
        repo,
        &["log", "--first-parent", "--format=%H", branch, "--", file],
    )
    .lines()
    .count()
}

/// On a cluster a task awaiting approval is the coordinator's: the coordinator killed
/// (SIGKILL) and restarted while it waits still shows it awaiting, `ordo approve` through
/// the restarted coordinator lets it integrate exactly once, a second approval is refused,
/// and the `awaiting_approval` notification arrives under one delivery id (the restart does
/// not make a second one).
#[test]
fn a_cluster_approval_survives_a_coordinator_kill_and_integrates_once() {
    let rx = Receiver::start(0);
    let sh = Shared::new();
    let mut c = Cluster::start(&["--ack-wait", "2s"]);
    sh.add_workers(&mut c, &["w1", "w2"]);
    let spec = write(
        &sh.root(),
        "approved.toml",
        &format!(
            r#"name = "approved"
[settings]
workspace = "worktree"
repository = "{repo}"
target_branch = "approved"
timeout = "30s"
[[stages]]
name = "dba"
kind = "approval"
select = {{ gate = "*" }}
[[tasks]]
name = "db"
labels = {{ gate = "yes" }}
command = "mkdir -p migrations && echo 'create table t;' > migrations/1.sql"
[[notify]]
events = ["awaiting_approval", "job_ended"]
url = "{url}/hook"
"#,
            repo = sh.repo().display(),
            url = rx.url,
        ),
    );
    let job = submit(&c, &spec);
    let awaiting = |c: &Cluster| {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(30), || {
            last = cluster_status(c, &job);
            last.as_ref()
                .is_some_and(|st| task(st, "db")["state"] == "awaiting_approval")
        });
        assert!(ok, "{last:?}\n{}", c.logs());
    };
    awaiting(&c);
    let events = |name: &str| -> Vec<Request> {
        rx.requests()
            .into_iter()
            .filter(|r| r.event() == name)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || !events("awaiting_approval")
            .is_empty()),
        "{:?}",
        rx.requests()
    );

    c.coordinator.stop(libc::SIGKILL);
    let restarted = std::time::Instant::now();
    c.coordinator.start();
    awaiting(&c);
    let recovery = restarted.elapsed();

    let r = c.ordo(&["approve", &job, "db", "--comment", "looks right"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let st = until_ended(&c, &job);
    assert_eq!(st["state"], "succeeded", "{st:#}");
    let r = c.ordo(&["approve", &job, "db"]);
    assert_eq!(r.code(), 2, "a decision is applied once: {}", r.stderr);
    let dba = &task(&st, "db")["stages"][0];
    assert_eq!(
        (dba["name"].as_str(), dba["verdict"].as_str()),
        (Some("dba"), Some("pass")),
        "{st:#}"
    );
    assert_eq!(dba["comment"], "looks right", "{st:#}");

    assert_eq!(sh.show("approved", "migrations/1.sql"), "create table t;");
    assert_eq!(
        commits_touching(&sh.repo(), "approved", "migrations/1.sql"),
        1
    );
    assert!(
        wait_until(Duration::from_secs(30), || !events("job_ended").is_empty()),
        "{:?}",
        rx.requests()
    );
    let ids: BTreeSet<String> = events("awaiting_approval")
        .iter()
        .map(Request::delivery)
        .collect();
    assert_eq!(ids.len(), 1, "{:?}", rx.requests());
    ledger::record(
        "9zza",
        Row {
            fault: "13. quality gates: the coordinator `kill -9`ed while a task awaits approval, \
                    restarted, then approved (the task still awaits; integrated by one commit; \
                    its `awaiting_approval` notification under one delivery id)"
                .into(),
            seeds: 1,
            tally: Tally {
                tasks: 1,
                executions: commits_touching(&sh.repo(), "approved", "migrations/1.sql"),
                ..Tally::default()
            },
            recovery: Some(recovery),
        },
    );
}

/// A worker killed (SIGKILL) while its task's reviewer runs: the task's message goes to the
/// other worker, which runs the attempt and its stages again, and the task integrates once.
#[test]
fn a_worker_killed_mid_review_leaves_the_task_to_the_other_worker() {
    let sh = Shared::new();
    let mut c = Cluster::start(&["--ack-wait", "2s"]);
    sh.add_workers(&mut c, &["w1", "w2"]);
    let root = sh.root();
    let ran_on = root.join("ran-on");
    let log = root.join("calls.log");
    let spec = write(
        &root,
        "reviewed.toml",
        &format!(
            r#"name = "reviewed"
[settings]
workspace = "worktree"
repository = "{repo}"
target_branch = "reviewed"
timeout = "30s"
agent = "claude"
agent_command = ["{stub}"]
env = {{ STUB_LOG = "{log}", STUB_STATE = "{state}" }}

[[tasks]]
max_attempts = 1
name = "feature"
prompt = "write a.txt: one"

[[stages]]
name = "mark"
kind = "command"
command = "echo \"$ORDO_WORKER\" >> {marks}"

[[stages]]
name = "review"
kind = "agent"
prompt = """sleep 4
answer: {{"verdict": "pass"}}"""
"#,
            repo = sh.repo().display(),
            stub = ordo_tests::stub_agent("claude"),
            log = log.display(),
            state = root.display(),
            marks = ran_on.display(),
        ),
    );
    let job = submit(&c, &spec);
    let reviews = || {
        ordo_tests::lines(&log)
            .iter()
            .filter(|l| l.contains("prompt=sleep 4"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || reviews() == 1
            && ordo_tests::lines(&ran_on).len() == 1),
        "{:?}\n{}",
        ordo_tests::lines(&log),
        c.logs()
    );
    let victim = ordo_tests::lines(&ran_on)[0].clone();
    let i = ["w1", "w2"].iter().position(|w| *w == victim).unwrap();
    c.workers[i].stop(libc::SIGKILL);
    let killed = std::time::Instant::now();
    let recovery = wait_until(Duration::from_secs(30), || {
        ordo_tests::lines(&ran_on).len() == 2
    })
    .then(|| killed.elapsed());

    let st = until_ended(&c, &job);
    assert_eq!(st["state"], "succeeded", "{st:#}\n{}", c.logs());
    let other = if victim == "w1" { "w2" } else { "w1" };
    assert_eq!(
        ordo_tests::lines(&ran_on),
        [victim.as_str(), other],
        "the stages ran again on the other worker"
    );
    let feature = task(&st, "feature");
    assert_eq!(feature["worker"], other, "{st:#}");
    let review = feature["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "review")
        .cloned()
        .unwrap_or_default();
    assert_eq!(review["verdict"], "pass", "{st:#}");
    assert_eq!(sh.show("reviewed", "a.txt"), "one");
    assert_eq!(commits_touching(&sh.repo(), "reviewed", "a.txt"), 1);
    ledger::record(
        "9zzb",
        Row {
            fault: "13. quality gates: a worker `kill -9`ed while its task's review stage runs \
                    (the attempt and its stages run again on the other worker; one commit)"
                .into(),
            seeds: 1,
            tally: Tally {
                tasks: 1,
                executions: reviews(),
                ..Tally::default()
            },
            recovery,
        },
    );
}
