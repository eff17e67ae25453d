//! The integration queue's batches (docs/design.md, "Integration queue: batches") end to end:
//! `ordo run` of worktree jobs with `integration = { batch = 4 }` on real git repositories,
//! checked with `git` itself and the integration verify's own log. One of them puts bisection
//! under a fault (a worker killed mid-step) and records its row of docs/reliability.md.
//!
//! An idle integrator never holds a batch back, so the four tasks meant to form one batch must
//! all wait while the integrator is busy: a `gate` task integrates first, and its integration
//! verify (the first verify of the run) waits until the four have committed their work.

use std::path::Path;
use std::time::{Duration, Instant};

use ordo_tests::ledger::{self, Row, Tally};
use ordo_tests::{Cluster, git, git_run, lines, task, wait_until, write};

use crate::approvals::{commits_touching, submit, until_ended};
use crate::fault_suite::{assert_worker_tasks_gone, ignored};
use crate::workspaces::{Sandbox, assert_ok, default_branch};
use crate::workspaces_cluster::Shared;

/// The job: `gate`, then `t1`..`t4` writing files of their own once the gate's integration
/// verify started; `t4` runs `t4_command`. The integration verify logs each run to
/// `$MARKS/verifies`, holds the first (the gate's) until the four task branches have their
/// commit, then runs `check`. The third (a bisection's first step) waits up to 10 s for the
/// fourth to start, and marks `$MARKS/overlapped` if it did: the two halves verified at once.
/// `settings` are the job's environment (`MARKS`; `SHARED`, the shared repository holding the
/// task branches on a cluster) and where it integrates.
fn job(settings: &str, t4_command: &str, check: &str) -> String {
    format!(
        r#"
name = "batches"
[settings]
workspace = "worktree"
timeout = "20s"
integration = {{ batch = 4 }}
{settings}
integration_verify = '''
echo "run $$" >> "$MARKS/verifies"
if [ "$(grep -n "^run $$\$" "$MARKS/verifies" | cut -d: -f1)" = 3 ]; then
  i=0
  while [ "$(wc -l < "$MARKS/verifies")" -lt 4 ] && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
  if [ "$(wc -l < "$MARKS/verifies")" -ge 4 ]; then touch "$MARKS/overlapped"; fi
fi
if [ ! -e "$MARKS/gate-verifying" ]; then
  touch "$MARKS/gate-verifying"
  n=0
  while [ "$n" -lt 4 ]; do
    sleep 0.05
    n=0
    for b in $(git ${{SHARED:+--git-dir=$SHARED}} for-each-ref --format='%(refname)' 'refs/heads/ordo/*/*-t*/*'); do
      git ${{SHARED:+--git-dir=$SHARED}} merge-base --is-ancestor "$b" main || n=$((n + 1))
    done
  done
  # The results follow their commits within milliseconds; this leaves them ample time.
  sleep 1
fi
{check}
'''

[[tasks]]
depends_on = []
name = "gate"
command = "echo gate > gate.txt"

[[tasks]]
depends_on = []
name = "t1"
command = "until [ -e \"$MARKS/gate-verifying\" ]; do sleep 0.05; done; echo one > t1.txt; echo t1 >> \"$MARKS/ran\""

[[tasks]]
depends_on = []
name = "t2"
command = "until [ -e \"$MARKS/gate-verifying\" ]; do sleep 0.05; done; echo two > t2.txt; echo t2 >> \"$MARKS/ran\""

[[tasks]]
depends_on = []
name = "t3"
command = "until [ -e \"$MARKS/gate-verifying\" ]; do sleep 0.05; done; echo three > t3.txt; echo t3 >> \"$MARKS/ran\""

[[tasks]]
depends_on = []
name = "t4"
command = "until [ -e \"$MARKS/gate-verifying\" ]; do sleep 0.05; done; echo t4 >> \"$MARKS/ran\"; {t4_command}"
"#,
    )
}

/// `t4`'s command that breaks the integration verify (`NOT_BROKEN`) on its first run only.
const CULPRIT: &str = "if [ -e \\\"$MARKS/t4-once\\\" ]; then echo four > t4.txt; \
                       else touch \\\"$MARKS/t4-once\\\"; echo BROKEN > t4.txt; fi";
const NOT_BROKEN: &str = "! grep -rq BROKEN --exclude-dir=.git .";

/// The job's environment on one machine.
fn env(marks: &Path) -> String {
    format!("env = {{ MARKS = \"{}\" }}", marks.display())
}

/// The integration branch's ref updates, newest first (its reflog).
fn ref_updates(repo: &Path, branch: &str) -> Vec<String> {
    git(
        repo,
        &[
            "reflog",
            "show",
            "--format=%H",
            &format!("refs/heads/{branch}"),
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Four clean tasks waiting together: one integration verify for the four, four successes,
/// the branch moved once for them (one ref update brings all four files).
#[test]
fn a_batch_of_four_clean_tasks_is_verified_once_and_moves_the_branch_once() {
    let sb = Sandbox::new();
    let marks = sb.dir("marks");
    let spec = sb.job(
        "batches.toml",
        &job(&env(&marks), "echo four > t4.txt", "true"),
    );
    let r = sb.run(&spec, &[]);
    assert_ok(&r, "ordo run");
    let report = sb.report_json();
    assert_eq!(report["summary"]["outcome"], "succeeded", "{report:#}");
    for t in ["gate", "t1", "t2", "t3", "t4"] {
        assert_eq!(task(&report, t)["integration"]["outcome"], "merged", "{t}");
    }
    assert_eq!(
        lines(&marks.join("verifies")).len(),
        2,
        "one verify for the gate, one for the batch of four"
    );

    let repo = sb.repo();
    let branch = default_branch("batches", &report);
    let updates = ref_updates(&repo, &branch);
    // Made at `main` when the first worktree was cut, moved by the gate, then once more.
    assert_eq!(updates.len(), 3, "moved once for the four: {updates:?}");
    assert_eq!(updates[2], git(&repo, &["rev-parse", "main"]));
    let files = |commit: &str| git(&repo, &["ls-tree", "--name-only", commit]);
    for t in ["t1.txt", "t2.txt", "t3.txt", "t4.txt"] {
        assert!(files(&updates[0]).lines().any(|f| f == t), "{t} at the tip");
        assert!(!files(&updates[1]).lines().any(|f| f == t), "{t} before");
    }
    // Each change reached the branch once: its own merge on the first-parent line.
    let merges = git(
        &repo,
        &["log", "--first-parent", "--merges", "--format=%s", &branch],
    );
    for t in ["t1", "t2", "t3", "t4"] {
        let n = merges
            .lines()
            .filter(|s| s.contains(&format!("integrate {t} ")))
            .count();
        assert_eq!(n, 1, "{t}: {merges}");
    }

    let batches = &report["summary"]["integration"]["batches"];
    assert_eq!(batches["batches"], 1, "{batches}");
    assert_eq!(batches["sizes"], serde_json::json!([4]));
    assert_eq!(batches["bisections"], 0);
    assert_eq!(batches["verifies_run"], 2);
    assert_eq!(batches["verifies_saved"], 3);
}

/// A batch of four in which `t4` merges cleanly but breaks the integration verify (its first
/// run writes `BROKEN`): the batch is bisected until `t4` is known, the other three integrate,
/// and `t4` runs again on the new tip (writing a clean file) and integrates.
#[test]
fn a_failed_batch_is_bisected_and_its_culprit_reruns() {
    let sb = Sandbox::new();
    let marks = sb.dir("marks");
    let spec = sb.job("batches.toml", &job(&env(&marks), CULPRIT, NOT_BROKEN));
    let r = sb.run(&spec, &[]);
    assert_ok(&r, "ordo run");
    let report = sb.report_json();
    assert_eq!(report["summary"]["outcome"], "succeeded", "{report:#}");

    let mut ran = lines(&marks.join("ran"));
    ran.sort();
    assert_eq!(
        ran,
        ["t1", "t2", "t3", "t4", "t4"],
        "only the culprit ran again"
    );
    let repo = sb.repo();
    let branch = default_branch("batches", &report);
    assert_eq!(sb.show(&branch, "t4.txt"), "four");
    for (t, text) in [("t1", "one"), ("t2", "two"), ("t3", "three")] {
        assert_eq!(sb.show(&branch, &format!("{t}.txt")), text);
        let touching = git(
            &repo,
            &[
                "log",
                "--format=%H",
                &format!("main..{branch}"),
                "--",
                &format!("{t}.txt"),
            ],
        );
        assert_eq!(touching.lines().count(), 1, "{t}'s change once: {touching}");
    }
    let t4_report = task(&report, "t4");
    assert_eq!(t4_report["integration"]["outcome"], "merged");
    assert_eq!(t4_report["attempts"], 1, "no attempt spent: {t4_report:#}");

    assert_bisected(&marks, &report);
}

/// The bisection of the four to `t4`: each step's halves verified at once, and the verifies:
/// the gate's; the four's (fails); the half with t4 (fails) and the other half (passes); t4
/// alone (fails) and its neighbour (passes); t4's again after its rerun. A half verified on
/// top of a half that then fails (t4's) is void: one verify more for each.
fn assert_bisected(marks: &Path, report: &serde_json::Value) {
    assert!(
        marks.join("overlapped").exists(),
        "the halves were not verified at once: {:?}",
        lines(&marks.join("verifies"))
    );
    let batches = &report["summary"]["integration"]["batches"];
    assert_eq!(batches["bisections"], 2, "{batches}");
    assert_eq!(batches["sizes"], serde_json::json!([4, 2, 2]));
    let voided = batches["voided"].as_u64().unwrap() as usize;
    assert!(voided <= 2, "{batches}");
    let verifies = lines(&marks.join("verifies")).len();
    assert_eq!(verifies, 7 + voided, "{batches}");
    assert_eq!(batches["verifies_run"], verifies, "{batches}");
}

/// The batch of four clean tasks on a cluster of two workers, integrating into a shared
/// repository: one integration verify for the four, the branch moved once for them.
#[test]
fn a_batch_on_a_cluster_is_verified_once_and_moves_the_branch_once() {
    let (sh, marks, report) = on_a_cluster("echo four > t4.txt", "true");
    let repo = sh.repo();
    assert_eq!(
        lines(&marks.join("verifies")).len(),
        2,
        "one verify for the gate, one for the batch of four: {:#}",
        report["summary"]["integration"],
    );
    for (t, text) in [
        ("t1", "one"),
        ("t2", "two"),
        ("t3", "three"),
        ("t4", "four"),
    ] {
        assert_eq!(sh.show("it", &format!("{t}.txt")), text);
    }
    let updates = ref_updates(&repo, "it");
    let files = |commit: &str| git(&repo, &["ls-tree", "--name-only", commit]);
    assert!(files(&updates[0]).lines().any(|f| f == "t1.txt"));
    assert!(
        !files(&updates[1])
            .lines()
            .any(|f| f == "t4.txt" || f == "t1.txt"),
        "the four came with one update: {updates:?}"
    );
    assert!(files(&updates[1]).lines().any(|f| f == "gate.txt"));
}

/// The batch of four on a cluster with the worker that integrates it killed (SIGKILL) the
/// moment the shared branch takes the batch, before it reports: the request goes to the other
/// worker, which finds the four merges on the branch and reports them; no verify runs again,
/// the branch moves once for the four, each change on it once.
#[test]
fn a_worker_killed_after_moving_the_branch_for_a_batch_leaves_it_integrated_once() {
    let (sh, marks, mut c, spec) = cluster_with_job("echo four > t4.txt", "true");
    let repo = sh.repo();
    // The shared repository kills the worker pushing the batch (the first update bringing
    // t1.txt) once the update is committed: the process whose name is ordo-worker up the
    // chain from `git push`.
    let hooks = repo.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("reference-transaction");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
[ "$1" = committed ] || exit 0
while read -r old new ref; do
  [ "$ref" = refs/heads/it ] || continue
  git cat-file -e "$new:t1.txt" 2>/dev/null || continue
  mkdir "{marks}/killed" 2>/dev/null || continue
  p=$$
  while [ "$p" -gt 1 ]; do
    if [ "$(cat /proc/$p/comm)" = ordo-worker ]; then echo $p > "{marks}/killed/pid"; kill -9 $p; break; fi
    p=$(awk '{{print $4}}' /proc/$p/stat)
  done
done
"#,
            marks = marks.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let job = submit(&c, &spec);
    // The hook makes the directory, then writes the pid: an empty file is not yet a pid.
    let killed = || {
        std::fs::read_to_string(marks.join("killed/pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
    };
    assert!(
        wait_until(Duration::from_secs(30), || killed().is_some()),
        "the batch was not pushed\n{}",
        c.logs()
    );
    let at = Instant::now();
    let pid = killed().unwrap();
    let i = c
        .workers
        .iter()
        .position(|w| w.pid() == pid)
        .expect("a worker was killed");
    let victim = ["w1", "w2"][i];
    c.workers[i].stop(libc::SIGKILL);
    assert_worker_tasks_gone(victim);
    let st = until_ended(&c, &job);
    let recovery = Some(at.elapsed());
    assert_eq!(st["state"], "succeeded", "{st:#}\n{}", c.logs());
    let report = c.ordo(&["report", &job, "--format", "json"]).json();
    assert_integrated_once(&sh, &marks, false);
    for t in ["t1", "t2", "t3", "t4"] {
        assert_eq!(task(&report, t)["integration"]["outcome"], "merged");
    }
    let updates = ref_updates(&repo, "it");
    let files = |commit: &str| git(&repo, &["ls-tree", "--name-only", commit]);
    assert!(
        files(&updates[1])
            .lines()
            .all(|f| f != "t1.txt" && f != "t4.txt"),
        "the four came with one update: {updates:?}"
    );
    assert_eq!(
        lines(&marks.join("verifies")).len(),
        2,
        "the redone integration found the batch on the branch and verified nothing again"
    );
    record(
        "9zzdc",
        "13. integration batches: a worker `kill -9`ed right after the shared branch \
         took its batch of four, before reporting (the other worker finds the four \
         merges; each change on the branch once; executions: integration verifies)",
        &report,
        lines(&marks.join("verifies")).len(),
        recovery,
    );
}

/// The failed batch on a cluster: bisected across the workers (each step an integration
/// message), the culprit found and run again, every change on the branch once.
#[test]
fn a_failed_batch_is_bisected_on_a_cluster() {
    let (sh, marks, report) = on_a_cluster(CULPRIT, NOT_BROKEN);
    assert_eq!(report["summary"]["outcome"], "succeeded", "{report:#}");
    assert_bisected(&marks, &report);
    assert_integrated_once(&sh, &marks, true);
}

/// The failed batch on a cluster with the worker carrying out a step of its first split (one
/// of the two halves verified at once) killed (SIGKILL) while that step's integration verify
/// runs: the step goes to the other worker, the
/// bisection goes on from there, the culprit reruns and integrates, and every task's change is on
/// the branch exactly once (one first-parent commit each; none twice, none lost).
#[test]
fn a_worker_killed_mid_bisection_leaves_every_change_integrated_once() {
    // Bisection steps start after the gate's verify and the batch's: from the third verify
    // on. Each step logs its worker; the first to take `held` holds, naming its worker.
    let check = format!(
        r#"n=$(wc -l < "$MARKS/verifies")
if [ $n -ge 3 ]; then
  echo "$ORDO_WORKER" >> "$MARKS/steps"
  if mkdir "$MARKS/held" 2>/dev/null; then echo "$ORDO_WORKER" > "$MARKS/held/by"; sleep 60; fi
fi
{NOT_BROKEN}"#
    );
    let (sh, marks, mut c, spec) = cluster_with_job(CULPRIT, &check);
    let job = submit(&c, &spec);
    let held_by = || lines(&marks.join("held/by"));
    // Both halves' steps logged (one holds): a step logged after the kill is a rerun.
    assert!(
        wait_until(Duration::from_secs(30), || {
            held_by().len() == 1 && lines(&marks.join("steps")).len() == 2
        }),
        "no bisection step started: {:?}\n{}",
        lines(&marks.join("verifies")),
        c.logs()
    );
    let victim = held_by()[0].clone();
    let i = ["w1", "w2"].iter().position(|w| *w == victim).unwrap();
    c.workers[i].stop(libc::SIGKILL);
    let killed = Instant::now();
    let before = lines(&marks.join("steps")).len();
    assert_worker_tasks_gone(&victim);
    let other = if victim == "w1" { "w2" } else { "w1" };
    let steps_after = || lines(&marks.join("steps")).split_off(before);
    let recovery =
        wait_until(Duration::from_secs(30), || !steps_after().is_empty()).then(|| killed.elapsed());
    assert!(recovery.is_some(), "the step never ran again\n{}", c.logs());
    assert_eq!(
        steps_after()[0],
        other,
        "the step went to the surviving worker"
    );

    let st = until_ended(&c, &job);
    assert_eq!(st["state"], "succeeded", "{st:#}\n{}", c.logs());
    let report = c.ordo(&["report", &job, "--format", "json"]).json();
    assert_integrated_once(&sh, &marks, true);
    let repo = sh.repo();
    assert_eq!(git(&repo, &["for-each-ref", "refs/heads/ordo/"]), "");
    let t4 = task(&report, "t4");
    assert_eq!(t4["integration"]["outcome"], "merged", "{t4:#}");
    assert_eq!(t4["attempts"], 1, "no attempt spent: {t4:#}");
    let batches = &report["summary"]["integration"]["batches"];
    assert_eq!(batches["bisections"], 2, "{batches}");
    // The verifies of the bisection without a fault (seven and the void ones), and the killed
    // step's once more (its sibling's too, if it was on the killed worker and not done).
    let verifies = lines(&marks.join("verifies")).len();
    let unfaulted = 7 + batches["voided"].as_u64().unwrap() as usize;
    assert!(
        (unfaulted + 1..=unfaulted + 2).contains(&verifies),
        "{verifies} verifies: {batches}"
    );

    record(
        "9zzd",
        "13. integration batches: a worker `kill -9`ed mid-bisection, while its step's \
         integration verify runs (the step runs again on the other worker; the culprit \
         reruns; each change on the branch once; executions: integration verifies)",
        &report,
        verifies,
        recovery,
    );
}

/// The failed batch on a cluster with the coordinator killed (SIGKILL) while the first split's
/// two halves are verified at once, and started again: the restarted coordinator knows the
/// tasks are integrating but not where the bisection was; it integrates them anew (requests
/// of their own, not taken for the ones made before), the requests made before end and
/// count or are dropped, and every change is on the branch exactly once, the culprit's after
/// its rerun.
#[test]
fn the_coordinator_killed_mid_bisection_leaves_every_change_integrated_once() {
    // The two halves' verifies (the third and fourth) hold while `$MARKS/hold` is there.
    let check = format!(
        r#"n=$(wc -l < "$MARKS/verifies")
if [ $n -ge 3 ] && [ $n -le 4 ]; then
  echo "$ORDO_WORKER" >> "$MARKS/holding"
  while [ -e "$MARKS/hold" ]; do sleep 0.05; done
fi
{NOT_BROKEN}"#
    );
    let (sh, marks, mut c, spec) = cluster_with_job(CULPRIT, &check);
    std::fs::write(marks.join("hold"), "").unwrap();
    let job = submit(&c, &spec);
    assert!(
        wait_until(Duration::from_secs(30), || lines(&marks.join("holding"))
            .len()
            == 2),
        "the halves are not verified at once: {:?}\n{}",
        lines(&marks.join("verifies")),
        c.logs()
    );
    c.coordinator.stop(libc::SIGKILL);
    let killed = Instant::now();
    c.coordinator.start();
    std::fs::remove_file(marks.join("hold")).unwrap();
    let verifies_at_kill = 4;
    let recovery = wait_until(Duration::from_secs(30), || {
        lines(&marks.join("verifies")).len() > verifies_at_kill
    })
    .then(|| killed.elapsed());
    assert!(
        recovery.is_some(),
        "nothing verified after the restart\n{}",
        c.logs()
    );

    let st = until_ended(&c, &job);
    assert_eq!(st["state"], "succeeded", "{st:#}\n{}", c.logs());
    let report = c.ordo(&["report", &job, "--format", "json"]).json();
    assert_integrated_once(&sh, &marks, true);

    record(
        "9zzdb",
        "13. integration batches: the coordinator `kill -9`ed while a failed batch's \
         halves are verified at once (integrated anew after the restart; the culprit \
         reruns; each change on the branch once; executions: integration verifies)",
        &report,
        lines(&marks.join("verifies")).len(),
        recovery,
    );
}

/// Records a row of docs/reliability.md for this file's job (five tasks; the executions
/// counted are integration verifies).
fn record(
    key: &str,
    fault: &str,
    report: &serde_json::Value,
    verifies: usize,
    recovery: Option<Duration>,
) {
    let (stale, duplicates) = ignored(report);
    ledger::record(
        key,
        Row {
            fault: fault.into(),
            seeds: 1,
            tally: Tally {
                tasks: 5,
                executions: verifies,
                stale,
                duplicates,
                unknown: 0,
            },
            recovery,
        },
    );
}

/// Every task's change on the shared repository's branch `it` exactly once (one first-parent
/// commit touching its file), as its last run wrote it, nothing broken there, and the tasks'
/// runs: each once, and the culprit's twice (`rerun`).
fn assert_integrated_once(sh: &Shared, marks: &Path, rerun: bool) {
    let repo = sh.repo();
    for (t, text) in [
        ("t1", "one"),
        ("t2", "two"),
        ("t3", "three"),
        ("t4", "four"),
    ] {
        let file = format!("{t}.txt");
        assert_eq!(sh.show("it", &file), text);
        assert_eq!(
            commits_touching(&repo, "it", &file),
            1,
            "{t}'s change once: {}",
            git(&repo, &["log", "--first-parent", "--oneline", "it"])
        );
    }
    assert_eq!(git_run(&repo, &["grep", "-q", "BROKEN", "it"]).code(), 1);
    let mut ran = lines(&marks.join("ran"));
    ran.sort();
    let once = ["t1", "t2", "t3", "t4"];
    match rerun {
        true => assert_eq!(
            ran,
            [&once[..], &["t4"]].concat(),
            "only the culprit ran again"
        ),
        false => assert_eq!(ran, once, "each task ran once"),
    }
}

/// Runs the job (`t4`, `check`) on a cluster of two workers integrating into a shared
/// repository (branch `it`, its reflog kept); the job's marks and report.
fn on_a_cluster(t4: &str, check: &str) -> (Shared, std::path::PathBuf, serde_json::Value) {
    let (sh, marks, c, spec) = cluster_with_job(t4, check);
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_eq!(
        r.code(),
        0,
        "ordo submit --wait:\n{}\n{}\ncoordinator:\n{}",
        r.stdout,
        r.stderr,
        c.coordinator.log()
    );
    let job_id = r.first_line();
    let report = c.ordo(&["report", &job_id, "--format", "json"]).json();
    (sh, marks, report)
}

/// A cluster of two workers (`w1`, `w2`, ack wait 2 s) on a shared repository (branch `it`,
/// its reflog kept) and the job (`t4`, `check`) written for it, not yet submitted: the
/// repository, the job's marks, the cluster and the job's spec.
fn cluster_with_job(t4: &str, check: &str) -> (Shared, std::path::PathBuf, Cluster, String) {
    let sh = Shared::new();
    let repo = sh.repo();
    git(&repo, &["config", "core.logAllRefUpdates", "always"]);
    let marks = sh.dir("marks");
    let settings = format!(
        "repository = \"{repo}\"\ntarget_branch = \"it\"\n\
         env = {{ MARKS = \"{marks}\", SHARED = \"{repo}\" }}",
        repo = repo.display(),
        marks = marks.display()
    );
    let spec = write(&sh.root(), "batches.toml", &job(&settings, t4, check));
    let mut c = Cluster::start(&["--ack-wait", "2s"]);
    sh.add_workers(&mut c, &["w1", "w2"]);
    (sh, marks, c, spec)
}
