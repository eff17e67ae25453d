//! Speculation (docs/design.md, "Integration queue: speculation"): a dependent starts on its
//! dependencies' work before they integrate; the work is kept when they integrate as they
//! were, discarded (no attempt spent) when one of them is reworked, and speculation stops
//! once discarded runs took their share.

use ordo_proto::{Attempt, Integration, IntegrationSettings};

use super::*;

fn speculating(tasks: Vec<TaskSpec>, share: Option<f64>) -> JobSpec {
    let mut s = worktree_spec(tasks);
    s.settings.integration = Some(IntegrationSettings {
        speculate: Some("verified".into()),
        speculation_budget: share,
        ..Default::default()
    });
    s
}

/// The speculation records among `actions`: (task, kept).
fn speculations(actions: &[Action]) -> Vec<(u32, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(Change::Speculation { index, kept, .. }) => Some((index.0, *kept)),
            _ => None,
        })
        .collect()
}

fn conflict(files: &[&str]) -> Integration {
    Integration::Conflict {
        files: files.iter().map(|f| f.to_string()).collect(),
    }
}

/// `a` passed its verify and waits to integrate: `b` starts at once on a's work, finishes,
/// and waits for `a`; once `a` integrated as it was, b's work is kept and integrates without
/// running again.
#[test]
fn a_dependent_starts_on_verified_work_and_is_kept() {
    let spec = speculating(vec![task("a", &[]), task("b", &["a"])], None);
    let mut h = Harness::new(spec, 2);
    h.finish_in_worktree("a", &["a.txt"]);
    assert_eq!(h.running(), ["b"], "b speculates on a's work");
    let base = h.speculative_base();
    assert_eq!(base.len(), 1);
    assert_eq!(base[0].head, "head-of-a");
    h.finish_in_worktree("b", &["b.txt"]);
    assert_eq!(h.integrations.len(), 1, "b waits for a to integrate");
    assert_eq!(h.integrations[0].task.as_str(), "a");

    let done = h.integrated(merged(&["a.txt"]));
    assert_eq!(speculations(&done), [(1, true)]);
    assert_eq!(h.integrations.len(), 1);
    assert_eq!(h.integrations[0].task.as_str(), "b");
    assert_eq!(h.integrations[0].head, "head-of-b");
    h.integrated(merged(&["b.txt"]));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
    assert_eq!(h.dispatched, ["a", "b"], "b ran once");
}

/// `a`'s integration conflicts (it is reworked): b's speculative work, finished meanwhile, is
/// discarded without spending an attempt; b runs again once `a` integrated, on the real tip.
#[test]
fn a_dependent_on_reworked_work_is_discarded_and_runs_again() {
    let spec = speculating(
        vec![task("z", &[]), task("a", &[]), task("b", &["a"])],
        None,
    );
    let mut h = Harness::new(spec, 3);
    h.finish_in_worktree("z", &["shared.txt"]);
    h.finish_in_worktree("a", &["shared.txt"]);
    assert_eq!(h.running(), ["b"]);
    h.finish_in_worktree("b", &["b.txt"]);
    h.integrated(merged(&["shared.txt"]));
    let done = h.integrated(conflict(&["shared.txt"]));
    assert_eq!(speculations(&done), [(2, false)]);
    assert_eq!(h.state(2), TaskState::Pending, "b waits for a again");
    assert_eq!(h.running(), ["a"], "a is reworked");
    h.finish_in_worktree("a", &["shared.txt"]);
    assert!(
        h.running().is_empty(),
        "never speculated on a task that conflicted"
    );
    h.integrated(merged(&["shared.txt"]));
    assert_eq!(h.running(), ["b"]);
    let ws = h.in_flight[0].workspace.as_ref().unwrap();
    assert!(ws.speculative.is_empty());
    assert_eq!(ws.discarded.len(), 1, "its discarded work goes: {ws:?}");
    assert!(ws.discarded[0].branch.ends_with("/1"), "{ws:?}");
    assert_eq!(h.in_flight[0].attempt, Attempt(2));
    h.finish_in_worktree("b", &["b.txt"]);
    h.integrated(merged(&["b.txt"]));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
    let tries = match h.state(2) {
        TaskState::Succeeded { attempt, .. } => attempt,
        other => panic!("{other:?}"),
    };
    assert_eq!(tries, Attempt(2));
}

/// A speculative attempt still running when its dependency is reworked is killed, and its
/// result discarded; a failed speculative attempt is discarded too (the run on the real tip
/// decides), spending no attempt.
#[test]
fn a_running_speculation_is_killed_and_a_failed_one_discarded() {
    let spec = speculating(
        vec![task("z", &[]), task("a", &[]), task("b", &["a"])],
        Some(1.0),
    );
    let mut h = Harness::new(spec, 3);
    h.finish_in_worktree("z", &["shared.txt"]);
    h.finish_in_worktree("a", &["shared.txt"]);
    assert_eq!(h.running(), ["b"]);
    h.integrated(merged(&["shared.txt"]));
    h.integrated(conflict(&["shared.txt"]));
    assert_eq!(h.killed, [2], "b's speculative run is killed");
    let done = h.finish("b", Outcome::Cancelled);
    assert_eq!(speculations(&done), [(2, false)]);
    assert_eq!(h.state(2), TaskState::Pending);

    // One speculation per task: c fails on its speculative base, is discarded, then runs
    // for real once `y` integrated.
    let spec = speculating(vec![task("y", &[]), task("c", &["y"])], Some(1.0));
    let mut h = Harness::new(spec, 2);
    h.finish_in_worktree("y", &["y.txt"]);
    let done = h.finish("c", Outcome::Failed);
    assert_eq!(speculations(&done), [(1, false)]);
    assert_eq!(h.state(1), TaskState::Pending);
    h.integrated(merged(&["y.txt"]));
    assert_eq!(h.running(), ["c"]);
    assert!(h.speculative_base().is_empty());
}

/// Once discarded runs reach `speculation_budget` of the job's runs (no budget in dollars),
/// no task speculates any more.
#[test]
fn speculation_stops_once_discarded_runs_took_their_share() {
    let spec = speculating(
        vec![
            task("z", &[]),
            task("a", &[]),
            task("b", &["a"]),
            task("p", &[]),
            task("q", &["p"]),
        ],
        Some(0.2),
    );
    let mut h = Harness::new(spec, 5);
    h.finish_in_worktree("z", &["shared.txt"]);
    h.finish_in_worktree("a", &["shared.txt"]);
    h.finish_in_worktree("b", &["b.txt"]);
    h.integrated(merged(&["shared.txt"]));
    let done = h.integrated(conflict(&["shared.txt"]));
    assert_eq!(speculations(&done), [(2, false)], "1 of 4 runs discarded");
    h.finish_in_worktree("p", &["p.txt"]);
    assert!(
        !h.running().contains(&"q"),
        "q does not speculate: {:?}",
        h.running()
    );
}

/// A restarted engine does not keep speculation: a task that ran on its dependency's work
/// before the restart waits for that dependency again.
#[test]
fn a_speculative_task_waits_again_after_a_restart() {
    let tasks = || vec![task("a", &[]), task("b", &["a"])];
    let mut h = Harness::new(speculating(tasks(), None), 2);
    let stored = attempt_results(&h.finish_in_worktree("a", &["a.txt"]));
    assert_eq!(h.running(), ["b"]);
    let saved = saved_of(vec![(h.state(0), 1), (h.state(1), 1)], stored);
    let mut again = Harness::resumed(speculating(tasks(), None), 2, saved);
    assert!(again.dispatched.is_empty(), "{:?}", again.dispatched);
    assert_eq!(again.state(1), TaskState::Pending);
    again.integrated(merged(&["a.txt"]));
    assert_eq!(again.running(), ["b"]);
    assert!(again.speculative_base().is_empty());
}

/// A speculative attempt whose worker is lost is discarded like one that failed: no attempt
/// spent, the task waits for its dependency, then runs on the real tip.
#[test]
fn a_lost_speculative_attempt_is_discarded() {
    let spec = speculating(vec![task("y", &[]), task("c", &["y"])], None);
    let mut h = Harness::new(spec, 2);
    h.finish_in_worktree("y", &["y.txt"]);
    let d = h.in_flight.remove(0);
    assert_eq!(d.task.as_str(), "c");
    let done = h.apply(Event::Lost {
        job: d.job,
        index: d.index,
        attempt: d.attempt,
        reason: "worker gone".into(),
    });
    assert_eq!(speculations(&done), [(1, false)]);
    assert_eq!(h.state(1), TaskState::Pending);
    h.integrated(merged(&["y.txt"]));
    assert_eq!(h.running(), ["c"]);
    h.finish_in_worktree("c", &["c.txt"]);
    h.integrated(merged(&["c.txt"]));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
    match h.state(1) {
        TaskState::Succeeded { attempt, .. } => assert_eq!(attempt, Attempt(2)),
        other => panic!("{other:?}"),
    }
}
