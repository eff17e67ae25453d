//! Integration batches and their bisection (docs/design.md, "Integration queue: batches"):
//! which waiting tasks one integration takes, what a failed batch's verify leads to, and that
//! `batch = 1` is the one-at-a-time queue unchanged.

use ordo_proto::{Integrate, Integration, IntegrationSettings, ItemOutcome};

use super::*;

fn batch_spec(names: &[&str], batch: Option<u32>) -> JobSpec {
    let mut s = worktree_spec(names.iter().map(|n| task(n, &[])).collect());
    s.settings.integration_verify = Some("make test".into());
    s.settings.integration = batch.map(|b| IntegrationSettings {
        batch: Some(b),
        ..Default::default()
    });
    s
}

/// The tasks of an integration, in merge order.
fn names(i: &Integrate) -> Vec<&str> {
    std::iter::once(i.task.as_str())
        .chain(i.batch.iter().map(|b| b.task.as_str()))
        .collect()
}

/// `z` integrated alone, then `a`, `b`, `c` and `d` (each its own file) sent as one batch.
fn batch_of_four() -> Harness {
    let mut h = Harness::new(batch_spec(&["z", "a", "b", "c", "d"], Some(4)), 5);
    h.finish_in_worktree("z", &["z.txt"]);
    for t in ["a", "b", "c", "d"] {
        h.finish_in_worktree(t, &[&format!("{t}.txt")]);
    }
    h.integrated(merged(&["z.txt"]));
    h
}

fn verify_failed() -> Integration {
    Integration::VerifyFailed {
        exit_code: Some(1),
        output_tail: String::new(),
    }
}

/// The tree every passing stacked integration reports verifying.
const TREE: &str = "5eeded";

impl Harness {
    /// Ends the oldest integration in flight, each task with `outcome(task)`.
    fn integrated_each(&mut self, outcome: impl Fn(&str) -> Integration) -> Vec<Action> {
        self.integrated_at(0, outcome)
    }

    /// Ends the `k`-th oldest integration in flight, each task with `outcome(task)`; a
    /// stacked one's `Merged` is `Verified` (with `TREE`): it moves nothing.
    fn integrated_at(&mut self, k: usize, outcome: impl Fn(&str) -> Integration) -> Vec<Action> {
        let i = self.integrations.remove(k);
        let outcome = |t: &str| match outcome(t) {
            Integration::Merged { .. } if i.stacked() => {
                Integration::Verified { tree: TREE.into() }
            }
            o => o,
        };
        let batch = i
            .batch
            .iter()
            .map(|b| ItemOutcome {
                index: b.index,
                attempt: b.attempt,
                outcome: outcome(b.task.as_str()),
            })
            .collect();
        self.apply(Event::Integrated {
            job: i.job,
            index: i.index,
            attempt: i.attempt,
            outcome: outcome(i.task.as_str()),
            batch,
            step: i.step,
            stacked: i.stacked(),
        })
    }

    fn succeeded(&self, i: usize) -> bool {
        matches!(self.state(i), TaskState::Succeeded { .. })
    }
}

/// The integrations `actions` recorded (tasks, bisected), void ones aside.
fn batches(actions: &[Action]) -> Vec<(usize, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(Change::Batch {
                tasks,
                bisected,
                voided: false,
                ..
            }) => Some((tasks.len(), *bisected)),
            _ => None,
        })
        .collect()
}

/// The void stacked integrations `actions` recorded (tasks, whether their verify ran).
fn voided(actions: &[Action]) -> Vec<(usize, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(Change::Batch {
                tasks,
                verified,
                voided: true,
                ..
            }) => Some((tasks.len(), *verified)),
            _ => None,
        })
        .collect()
}

/// An idle integrator takes the first waiting task at once (no batch is held back to fill
/// it); the next integration takes up to `batch` waiting tasks in queue order whose files do
/// not overlap those before them; a passing batch makes every task in it succeed.
#[test]
fn a_batch_takes_waiting_tasks_whose_files_do_not_overlap() {
    let mut h = Harness::new(batch_spec(&["a", "b", "c", "d", "e"], Some(3)), 5);
    h.finish_in_worktree("a", &["a.txt"]);
    assert_eq!(h.integrations.len(), 1);
    assert_eq!(
        names(&h.integrations[0]),
        ["a"],
        "not held back to fill a batch"
    );
    h.finish_in_worktree("b", &["b.txt", "shared.txt"]);
    h.finish_in_worktree("c", &["shared.txt"]);
    h.finish_in_worktree("d", &["d.txt"]);
    h.finish_in_worktree("e", &["e.txt"]);
    assert_eq!(h.integrations.len(), 1, "one integration at a time");

    let done = h.integrated(merged(&["a.txt"]));
    assert_eq!(batches(&done), [(1, false)]);
    assert!(h.succeeded(0));
    assert_eq!(h.integrations.len(), 1);
    assert_eq!(
        names(&h.integrations[0]),
        ["b", "d", "e"],
        "c overlaps b; three at most"
    );
    assert_eq!(
        h.integrations[0].verify.as_ref().unwrap().command,
        "make test"
    );

    let done = h.integrated_each(|t| merged(&[&format!("{t}.txt")]));
    assert_eq!(batches(&done), [(3, false)]);
    for t in [1, 3, 4] {
        assert!(h.succeeded(t), "task {t}: {:?}", h.state(t));
    }
    let integrated = done
        .iter()
        .filter(|a| matches!(a, Action::Record(Change::Integrated { .. })))
        .count();
    assert_eq!(integrated, 3, "each task's integration is recorded");
    assert_eq!(names(&h.integrations[0]), ["c"]);
    h.integrated_each(|_| merged(&["shared.txt"]));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// A batch of four whose verify fails with the fourth task the culprit: the first half is
/// integrated (passes) with the second verified on top of it (fails), then the second's
/// halves the same way; the culprit's failed verify is its own (it runs again, no attempt
/// spent, one integration tried), the other three succeed.
#[test]
fn a_failed_batch_is_bisected_to_its_culprit() {
    let mut h = batch_of_four();
    assert_eq!(names(&h.integrations[0]), ["a", "b", "c", "d"]);

    // The culprit fails every verify it is in.
    let culprit = |names: &[&str]| names.contains(&"d");
    let mut steps = Vec::new();
    let mut records = Vec::new();
    let mut ids = Vec::new();
    while let Some(i) = h.integrations.first() {
        ids.push((i.index.0, i.step));
        let tasks: Vec<String> = names(i).iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = tasks.iter().map(String::as_str).collect();
        let fails = culprit(&refs);
        let done = h.integrated_each(|t| {
            if fails {
                verify_failed()
            } else {
                merged(&[&format!("{t}.txt")])
            }
        });
        records.extend(batches(&done));
        steps.push((tasks.join(""), fails));
        if steps.len() > 10 {
            panic!("bisection does not end: {steps:?}");
        }
    }
    assert_eq!(
        steps,
        [
            ("abcd".to_string(), true),
            ("ab".into(), false),
            ("cd".into(), true),
            ("c".into(), false),
            ("d".into(), true),
        ]
    );
    // A bisection step integrates an attempt again: its message ids differ by the step.
    assert_eq!(ids, [(1, 0), (1, 1), (3, 1), (3, 3), (4, 3)]);
    assert_eq!(
        records,
        [(4, true), (2, false), (2, true), (1, false), (1, false)]
    );
    for t in 1..=3 {
        assert!(h.succeeded(t), "task {t}: {:?}", h.state(t));
    }
    // The culprit runs again from the new tip, its attempt not spent.
    assert_eq!(h.running(), ["d"]);
    assert_eq!(h.in_flight[0].attempt, Attempt(2));
    let conflict = h.in_flight[0].workspace.as_ref().unwrap().conflict.clone();
    assert_eq!(conflict.unwrap().files, ["d.txt"]);
    h.finish_in_worktree("d", &["d.txt"]);
    assert_eq!(names(&h.integrations[0]), ["d"]);
    assert!(
        !h.integrations[0].last,
        "bisection spent no integration attempt"
    );
    h.integrated_each(|_| merged(&["d.txt"]));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// A text conflict of one task in a batch is that task's conflict; the others' outcomes stand.
#[test]
fn a_conflict_in_a_batch_is_its_own_task_s() {
    let mut h = Harness::new(batch_spec(&["z", "a", "b"], Some(4)), 3);
    h.finish_in_worktree("z", &["z.txt"]);
    h.finish_in_worktree("a", &["a.txt"]);
    h.finish_in_worktree("b", &["b.txt"]);
    h.integrated(merged(&["z.txt"]));
    h.integrated_each(|t| match t {
        "a" => Integration::Conflict {
            files: vec!["a.txt".into()],
        },
        _ => merged(&["b.txt"]),
    });
    assert!(h.succeeded(2));
    assert_eq!(h.running(), ["a"], "a runs again");
    assert!(h.integrations.is_empty());
}

/// `batch = 1` (or no setting) is the one-at-a-time queue: one task per integration, no batch
/// records, the same sequence as without the setting.
#[test]
fn batch_one_is_one_at_a_time() {
    let run = |batch: Option<u32>| {
        let mut h = Harness::new(batch_spec(&["a", "b", "c"], batch), 3);
        let mut actions = Vec::new();
        actions.extend(h.finish_in_worktree("a", &["a.txt"]));
        actions.extend(h.finish_in_worktree("b", &["b.txt"]));
        actions.extend(h.finish_in_worktree("c", &["c.txt"]));
        let mut order = Vec::new();
        while let Some(i) = h.integrations.first() {
            order.push(names(i).join(""));
            actions.extend(h.integrated_each(|t| merged(&[&format!("{t}.txt")])));
        }
        assert_eq!(h.job_state, Some(JobState::Succeeded));
        assert!(batches(&actions).is_empty(), "{batch:?}");
        order
    };
    assert_eq!(run(None), ["a", "b", "c"]);
    assert_eq!(run(Some(1)), ["a", "b", "c"]);
}

/// An outcome of a bisected batch carried out again (a redelivery) while its first half is
/// integrating names the same attempt as the half's first task: its step tells it apart, and
/// it changes nothing.
#[test]
fn a_late_outcome_of_a_bisected_batch_is_not_the_next_step_s() {
    let mut h = batch_of_four();
    let whole = h.integrations[0].clone();
    h.integrated_each(|_| verify_failed());
    assert_eq!(names(&h.integrations[0]), ["a", "b"]);
    assert_eq!(
        (whole.index, whole.attempt),
        (h.integrations[0].index, h.integrations[0].attempt)
    );

    h.integrations.insert(0, whole);
    let late = h.integrated_each(|t| merged(&[&format!("{t}.txt")]));
    assert!(late.is_empty(), "{late:?}");
    assert!(matches!(h.state(1), TaskState::Integrating { .. }));
    h.integrated_each(|t| merged(&[&format!("{t}.txt")]));
    assert!(h.succeeded(1) && h.succeeded(2));
    assert_eq!(names(&h.integrations[0]), ["c", "d"]);
}

/// The tasks an integration merges first, beneath its own (`Integrate::onto`).
fn onto(i: &Integrate) -> Vec<&str> {
    i.onto.iter().map(|b| b.task.as_str()).collect()
}

/// A bisected batch's second half does not wait for the first: it is verified on top of it
/// while the first's verify runs (a stacked integration, moving nothing). Its outcome may come
/// first; once the first half landed, the second lands with the tree it verified, and one
/// record counts each half's verify.
#[test]
fn the_second_half_is_verified_on_top_of_the_first_while_it_runs() {
    let mut h = batch_of_four();
    let done = h.integrated_each(|_| verify_failed());
    assert_eq!(batches(&done), [(4, true)]);
    assert_eq!(h.integrations.len(), 2, "both halves at once");
    let (first, second) = (&h.integrations[0], &h.integrations[1]);
    assert_eq!((names(first), onto(first)), (vec!["a", "b"], vec![]));
    assert_eq!(
        (names(second), onto(second)),
        (vec!["c", "d"], vec!["a", "b"])
    );
    assert!(second.verified.is_none());
    let stacked_step = second.step;

    // The second half's verify passes first: nothing is integrated, nothing else starts.
    let early = h.integrated_at(1, |t| merged(&[&format!("{t}.txt")]));
    assert!(batches(&early).is_empty(), "{early:?}");
    assert!(
        !early.iter().any(|a| matches!(
            a,
            Action::Record(Change::Integrated { .. }) | Action::Integrate(_)
        )),
        "{early:?}"
    );
    assert!(matches!(h.state(3), TaskState::Integrating { .. }));

    // The first half lands: the second lands next, with the tree it verified.
    let done = h.integrated_each(|t| merged(&[&format!("{t}.txt")]));
    assert_eq!(batches(&done), [(2, false)]);
    assert!(h.succeeded(1) && h.succeeded(2));
    assert_eq!(h.integrations.len(), 1);
    let landing = &h.integrations[0];
    assert_eq!((names(landing), onto(landing)), (vec!["c", "d"], vec![]));
    assert_eq!(landing.verified.as_deref(), Some(TREE));
    assert_ne!(
        landing.step, stacked_step,
        "another message than the stacked one's"
    );
    let done = h.integrated_each(|t| merged(&[&format!("{t}.txt")]));
    assert_eq!(
        batches(&done),
        [(2, false)],
        "the stacked verify, counted once"
    );
    assert!(h.succeeded(3) && h.succeeded(4));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// A half stacked on one that then fails was verified on top of what never lands: its outcome
/// is void (a late one changes nothing) and it is integrated anew after the failing half's
/// own bisection, again on top of the step in flight.
#[test]
fn a_half_stacked_on_a_failing_half_is_integrated_anew() {
    let mut h = batch_of_four();
    h.integrated_each(|_| verify_failed());
    let fails = |t: &str| match t {
        "a" => verify_failed(),
        t => merged(&[&format!("{t}.txt")]),
    };
    // The first half fails (a is the culprit): it is split, and cd waits behind its halves.
    let done = h.integrated_each(|_| verify_failed());
    assert_eq!(batches(&done), [(2, true)]);
    assert_eq!(
        h.integrations.len(),
        2,
        "one stacked integration out at a time"
    );
    assert_eq!(names(&h.integrations[1]), ["a"]);
    // cd's stacked outcome comes late: void, it changes nothing but is counted; b is stacked
    // on a now.
    assert_eq!(names(&h.integrations[0]), ["c", "d"]);
    let late = h.integrated_each(fails);
    assert_eq!((batches(&late), voided(&late)), (vec![], vec![(2, true)]));
    assert!(matches!(h.state(3), TaskState::Integrating { .. }));
    let b = &h.integrations[1];
    assert_eq!((names(b), onto(b)), (vec!["b"], vec!["a"]));

    // a fails alone (the culprit, run again); b was stacked on it: integrated anew, with cd
    // stacked on top of it.
    h.integrated_each(fails);
    assert_eq!(h.running(), ["a"]);
    assert_eq!(
        names(&h.integrations[0]),
        ["b"],
        "the void stacked b, still out"
    );
    let b = &h.integrations[1];
    assert_eq!(
        (names(b), onto(b), b.verified.clone()),
        (vec!["b"], vec![], None)
    );
    let void = h.integrated_each(fails);
    assert_eq!((batches(&void), voided(&void)), (vec![], vec![(1, true)]));
    let cd = &h.integrations[1];
    assert_eq!((names(cd), onto(cd)), (vec!["c", "d"], vec!["b"]));
    h.integrated_each(fails);
    h.integrated_each(fails);
    assert_eq!(names(&h.integrations[0]), ["c", "d"]);
    assert_eq!(h.integrations[0].verified.as_deref(), Some(TREE));
    h.integrated_each(fails);
    for t in 2..=4 {
        assert!(h.succeeded(t), "task {t}: {:?}", h.state(t));
    }
}
