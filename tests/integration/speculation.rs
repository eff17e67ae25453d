//! Speculation (docs/design.md, "Integration queue: speculation") end to end: `ordo run` (and a
//! cluster of two workers) of worktree jobs with `integration = { speculate = "verified" }` on
//! real git repositories. A dependent starts on its dependency's verified work while the
//! dependency's integration verify is still running (the verify waits for the dependent's
//! run to show, a bounded wait, so without speculation the order shows in the marks), and is
//! kept when the dependency integrates as it was, or discarded and run again when the
//! dependency's integration conflicts.

use std::path::Path;
use std::time::{Duration, Instant};

use ordo_tests::ledger::{self, Row, Tally};
use ordo_tests::{Cluster, git, lines, task, wait_until, write};

use crate::approvals::{commits_touching, submit, until_ended};
use crate::fault_suite::ignored;
use crate::workspaces::{Sandbox, assert_ok, default_branch};
use crate::workspaces_cluster::Shared;

/// The integration verify: the first one (the first integration of the run) waits, up to
/// 15 s, for `b` to have run, notes whether it had, and holds while `$MARKS/hold` exists.
const VERIFY: &str = r#"integration_verify = '''
if [ ! -e "$MARKS/first-verify" ]; then
  touch "$MARKS/first-verify"
  n=0
  until [ -e "$MARKS/b-runs" ] || [ "$n" -ge 300 ]; do sleep 0.05; n=$((n + 1)); done
  if [ -e "$MARKS/b-runs" ]; then touch "$MARKS/b-before-first-integration"; fi
  n=0
  while [ -e "$MARKS/hold" ] && [ "$n" -lt 1200 ]; do sleep 0.05; n=$((n + 1)); done
fi
'''"#;

/// A speculating worktree job of `tasks` (TOML), integrating as `settings` say.
fn speculating(settings: &str, tasks: &str) -> String {
    format!(
        r#"
name = "speculate"
[settings]
workspace = "worktree"
integration = {{ speculate = "verified" }}
{settings}
{VERIFY}
{tasks}"#
    )
}

/// `a`, then `b` on a's work (it copies a.txt): `a` integrates as it was.
fn kept_job(settings: &str) -> String {
    speculating(
        settings,
        r#"
[[tasks]]
name = "a"
command = "echo a > a.txt"

[[tasks]]
name = "b"
depends_on = ["a"]
command = "echo run >> \"$MARKS/b-runs\"; cp a.txt b.txt"
"#,
    )
}

/// `z` and `a` write shared.txt; `a` finishes only once z's integration verify started, so
/// it integrates after `z` and conflicts; `b` speculated on a's first work meanwhile.
fn discarded_job(settings: &str) -> String {
    speculating(
        settings,
        r#"
[[tasks]]
name = "z"
command = "echo z > shared.txt"

[[tasks]]
name = "a"
command = "until [ -e \"$MARKS/first-verify\" ]; do sleep 0.05; done; echo a > shared.txt"

[[tasks]]
name = "b"
depends_on = ["a"]
command = "echo run >> \"$MARKS/b-runs\"; cp shared.txt b.txt"
"#,
    )
}

fn env(marks: &Path) -> String {
    format!("env = {{ MARKS = \"{}\" }}", marks.display())
}

/// `b` ran on a's work before a's integration verify ended, once, and is kept.
#[test]
fn a_dependent_runs_on_verified_work_and_is_kept() {
    let sb = Sandbox::new();
    let marks = sb.dir("marks");
    let spec = sb.job("speculate.toml", &kept_job(&env(&marks)));
    let r = sb.run(&spec, &[]);
    assert_ok(&r, "ordo run");
    assert!(
        marks.join("b-before-first-integration").exists(),
        "b did not start before a integrated"
    );
    assert_eq!(lines(&marks.join("b-runs")).len(), 1, "b ran once");
    let report = sb.report_json();
    let branch = default_branch("speculate", &report);
    assert_eq!(sb.show(&branch, "b.txt"), "a");
    assert_eq!(task(&report, "b")["integration"]["outcome"], "merged");
    assert_eq!(task(&report, "b")["attempts"], 1, "{report:#}");
    // The report counts the run kept, and the time both waited to integrate (b held back
    // until a integrated).
    let queue = &report["summary"]["integration"];
    assert_eq!(queue["speculation"]["kept"], 1, "{queue:#}");
    assert_eq!(queue["speculation"]["discarded"], 0, "{queue:#}");
    assert_eq!(task(&report, "b")["speculation"]["kept"], 1);
    for t in ["a", "b"] {
        let waited = task(&report, t)["integration_wait_ms"]
            .as_u64()
            .unwrap_or(0);
        assert!(waited > 0, "{t} waited to integrate: {queue:#}");
    }
}

/// a's integration conflicts with z's: b's speculative run is discarded, b runs again on the
/// real tip (it sees a's reworked shared.txt), spending no attempt.
#[test]
fn a_dependent_on_conflicting_work_is_discarded_and_runs_again() {
    let sb = Sandbox::new();
    let marks = sb.dir("marks");
    let spec = sb.job("speculate.toml", &discarded_job(&env(&marks)));
    let r = sb.run(&spec, &[]);
    assert_ok(&r, "ordo run");
    assert!(
        r.stdout.contains("speculative run is discarded"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(lines(&marks.join("b-runs")).len(), 2, "b ran again");
    let report = sb.report_json();
    let branch = default_branch("speculate", &report);
    assert_eq!(sb.show(&branch, "shared.txt"), "a");
    assert_eq!(
        sb.show(&branch, "b.txt"),
        "a",
        "b's kept run saw a's integrated work"
    );
    let conflicts = &task(&report, "a")["integration"]["conflicts"];
    assert_eq!(conflicts.as_array().map(Vec::len), Some(1), "{report:#}");
    // The discarded run's worktree and branch are gone with the rest.
    let repo = sb.repo();
    assert_eq!(
        git(&repo, &["worktree", "list"]).lines().count(),
        1,
        "{}",
        git(&repo, &["worktree", "list"])
    );
    assert_eq!(git(&repo, &["for-each-ref", "refs/heads/ordo/*/*/*"]), "");
    // The report counts the run discarded (command tasks: no agent cost to add up).
    let queue = &report["summary"]["integration"];
    assert_eq!(queue["speculation"]["discarded"], 1, "{queue:#}");
    assert_eq!(queue["speculation"]["kept"], 0, "{queue:#}");
    assert!(queue["speculation"].get("discarded_cost_usd").is_none());
    assert_eq!(task(&report, "b")["speculation"]["discarded"], 1);
}

/// A cluster of two workers on a shared repository (branch `it`) and `job` written for it:
/// the repository, the job's marks, the cluster and the spec.
fn on_a_cluster(job: fn(&str) -> String) -> (Shared, std::path::PathBuf, Cluster, String) {
    let sh = Shared::new();
    let repo = sh.repo();
    let marks = sh.dir("marks");
    let settings = format!(
        "repository = \"{repo}\"\ntarget_branch = \"it\"\nenv = {{ MARKS = \"{marks}\" }}",
        repo = repo.display(),
        marks = marks.display()
    );
    let spec = write(&sh.root(), "speculate.toml", &job(&settings));
    let mut c = Cluster::start(&[]);
    sh.add_workers(&mut c, &["w1", "w2"]);
    (sh, marks, c, spec)
}

/// The same two cases on a cluster of two workers integrating into a shared repository: the
/// speculative base comes from the dependency's pushed task branch.
#[test]
fn speculation_on_a_cluster_is_kept_or_discarded() {
    for (job, runs) in [(kept_job as fn(&str) -> String, 1), (discarded_job, 2)] {
        let (sh, marks, c, spec) = on_a_cluster(job);
        let r = c.ordo(&["submit", &spec, "--wait"]);
        assert_eq!(
            r.code(),
            0,
            "ordo submit --wait:\n{}\n{}\n{}",
            r.stdout,
            r.stderr,
            c.logs()
        );
        assert!(marks.join("b-before-first-integration").exists());
        assert_eq!(lines(&marks.join("b-runs")).len(), runs);
        assert_eq!(sh.show("it", "b.txt"), "a");
        // `ordo status` shows the speculative run, kept or discarded, in text and JSON.
        let (kept, discarded) = if runs == 1 { (1, 0) } else { (0, 1) };
        let job = r.first_line();
        let st = c.ordo(&["status", &job]);
        let line = format!("Speculative runs: {kept} kept, {discarded} discarded.");
        assert!(st.stdout.contains(&line), "{}{}", st.stdout, st.stderr);
        let st = c.ordo(&["status", &job, "--output", "json"]).json();
        assert_eq!(st["speculation"]["kept"], kept, "{st:#}");
        assert_eq!(st["speculation"]["discarded"], discarded, "{st:#}");
    }
}

/// The coordinator killed (SIGKILL) while `b`, run speculatively on a's work, waits for a's
/// integration (whose verify is held): restarted, it does not keep the speculation, so `b`
/// waits for `a` again and runs on the real tip; each change is on the branch once.
#[test]
fn the_coordinator_killed_during_a_speculation_leaves_each_change_integrated_once() {
    let (sh, marks, mut c, spec) = on_a_cluster(kept_job);
    std::fs::write(marks.join("hold"), "").unwrap();
    let job = submit(&c, &spec);
    let state = |c: &Cluster, t: &str| {
        let r = c.ordo(&["status", &job, "--output", "json"]);
        (r.code() == 0).then(|| task(&r.json(), t)["state"].as_str().map(str::to_string))
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            state(&c, "b").flatten().as_deref() == Some("integrating")
        }),
        "b did not finish on its speculative base\n{}",
        c.logs()
    );
    c.coordinator.stop(libc::SIGKILL);
    let killed = Instant::now();
    c.coordinator.start();
    let recovery = wait_until(Duration::from_secs(30), || {
        state(&c, "b").flatten().as_deref() == Some("pending")
    })
    .then(|| killed.elapsed());
    assert!(recovery.is_some(), "b is not waiting again\n{}", c.logs());
    std::fs::remove_file(marks.join("hold")).unwrap();
    let st = until_ended(&c, &job);
    assert_eq!(st["state"], "succeeded", "{st:#}\n{}", c.logs());
    assert_eq!(lines(&marks.join("b-runs")).len(), 2, "b ran again");
    let repo = sh.repo();
    assert_eq!(sh.show("it", "b.txt"), "a");
    for file in ["a.txt", "b.txt"] {
        assert_eq!(commits_touching(&repo, "it", file), 1, "{file} once");
    }
    let report = c.ordo(&["report", &job, "--format", "json"]).json();
    let (stale, duplicates) = ignored(&report);
    ledger::record(
        "9zze",
        Row {
            fault: "13. speculation: the coordinator `kill -9`ed while a task run on its \
                    dependency's verified work waits for that dependency's integration (it waits \
                    again after the restart and runs on the real tip; each change on the branch \
                    once)"
                .into(),
            seeds: 1,
            tally: Tally {
                tasks: 2,
                executions: lines(&marks.join("b-runs")).len() + 1,
                stale,
                duplicates,
                unknown: 0,
            },
            recovery,
        },
    );
}

/// Agent tasks (the stub speaking Claude Code's JSON): b's speculative run on a's first work
/// is discarded when a conflicts with z, and what it cost is reported as discarded, in the
/// report and in `ordo status`.
#[test]
fn a_discarded_agent_run_reports_its_cost() {
    let sb = Sandbox::new();
    let marks = sb.dir("marks");
    let log = marks.join("agent-runs");
    // The first integration (z's) holds until the three first agent runs were made and b's
    // has had a moment to end (bounded).
    let spec = sb.job(
        "speculate.toml",
        &format!(
            r#"
name = "speculate"
[settings]
workspace = "worktree"
agent = "claude"
agent_command = ["{agent}"]
env = {{ STUB_LOG = "{log}" }}
integration = {{ speculate = "verified" }}
integration_verify = '''
if [ ! -e "{marks}/first" ]; then
  touch "{marks}/first"
  n=0
  while [ "$(cat "{log}" 2>/dev/null | wc -l)" -lt 3 ] && [ "$n" -lt 300 ]; do sleep 0.05; n=$((n + 1)); done
  sleep 1
fi
'''

[[tasks]]
name = "z"
prompt = "write shared.txt: z"

[[tasks]]
name = "a"
prompt = """sleep 1
write shared.txt: a"""

[[tasks]]
name = "b"
depends_on = ["a"]
prompt = "write b.txt: b"
"#,
            agent = ordo_tests::stub_agent("claude"),
            log = log.display(),
            marks = marks.display(),
        ),
    );
    let r = sb.run(&spec, &[]);
    assert_ok(&r, "ordo run");
    let report = sb.report_json();
    let speculation = &report["summary"]["integration"]["speculation"];
    assert_eq!(speculation["discarded"], 1, "{report:#}");
    // The stub reports $0.01 a run.
    assert_eq!(speculation["discarded_cost_usd"], 0.01, "{speculation}");
    let job = report["job"]["id"].as_str().unwrap().to_string();
    let st = ordo_tests::ordo_in(&sb.repo(), &["status", &job, "--state", &sb.state()], &[]);
    assert!(
        st.stdout
            .contains("Speculative runs: 0 kept, 1 discarded ($0.0100)."),
        "{}{}",
        st.stdout,
        st.stderr
    );
}
