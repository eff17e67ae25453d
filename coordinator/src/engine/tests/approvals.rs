//! Approvals in the engine (docs/design.md, "Quality gates: approvals"): a task awaiting
//! approval holds no slot and its dependents wait; approve, reject (fail or revise), timeouts,
//! several approval stages, a decision applied once, and a restart while a task awaits.

use ordo_proto::Dur;
use ordo_proto::gates::{OnReject, OnTimeout, StageKind, StageSpec, Verdict};

use super::*;

/// An approval stage for every task labelled `gate`, waiting for tasks that changed
/// `when_files` (all without).
fn approval(name: &str, when_files: &[&str]) -> StageSpec {
    StageSpec {
        name: name.into(),
        kind: Some(StageKind::Approval),
        select: BTreeMap::from([("gate".to_string(), "*".to_string())]),
        when_files: when_files.iter().map(|f| f.to_string()).collect(),
        ..StageSpec::default()
    }
}

fn gated(name: &str, deps: &[&str]) -> TaskSpec {
    let mut t = task(name, deps);
    t.labels.insert("gate".into(), "yes".into());
    t
}

fn decision(approve: bool, comment: Option<&str>) -> Decision {
    Decision {
        approve,
        by: "alice".into(),
        comment: comment.map(String::from),
    }
}

impl Harness {
    fn decide(&mut self, name: &str, d: Decision) -> Vec<Action> {
        let index = self.index(name);
        self.apply(Event::Decide {
            job: self.job,
            index,
            decision: d,
        })
    }

    fn index(&self, name: &str) -> TaskIndex {
        let spec = self.engine.spec(&self.job).expect("live job");
        TaskIndex(
            spec.tasks
                .iter()
                .position(|t| t.name.as_str() == name)
                .unwrap() as u32,
        )
    }

    fn awaiting(&self, name: &str) -> Result<String, String> {
        self.engine.awaiting(&self.job, self.index(name))
    }
}

fn stage_records(actions: &[Action]) -> Vec<&ordo_proto::gates::StageRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(Change::Stage { record, .. }) => Some(record),
            _ => None,
        })
        .collect()
}

/// Only the task that touched `migrations/**` waits; while it waits, its slot runs another
/// task and its dependent waits; approved, it integrates and its dependent runs. The decision
/// is recorded (who, the commit) and a second one is refused.
#[test]
fn a_task_awaiting_approval_holds_no_slot_and_its_dependents_wait() {
    let mut s = worktree_spec(vec![
        gated("db", &[]),
        gated("ui", &[]),
        gated("after", &["db"]),
    ]);
    s.stages = vec![approval("sign-off", &["migrations/**"])];
    let mut h = Harness::new(s, 1);
    assert_eq!(h.running(), vec!["db"]);
    h.finish_in_worktree("db", &["migrations/1.sql"]);
    assert!(matches!(
        h.state(0),
        TaskState::AwaitingApproval { stage: 0, .. }
    ));
    // Its one slot went to the other task at once; nothing is integrated yet.
    assert_eq!(h.running(), vec!["ui"]);
    assert!(h.integrations.is_empty());
    h.finish_in_worktree("ui", &["src/ui.rs"]);
    // `ui` changed no migration: straight to integration.
    assert!(matches!(h.state(1), TaskState::Integrating { .. }));
    h.integrated(merged(&["src/ui.rs"]));
    assert_eq!(h.state(1).phase(), TaskPhase::Succeeded);
    assert_eq!(
        h.engine.tasks(&h.job).unwrap()[2],
        TaskState::Pending,
        "its dependent waits"
    );
    assert_eq!(h.awaiting("db").as_deref(), Ok("sign-off"));

    let actions = h.decide("db", decision(true, Some("looks right")));
    let records = stage_records(&actions);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].verdict, Some(Verdict::Pass));
    assert_eq!(records[0].by.as_deref(), Some("alice"));
    assert_eq!(records[0].comment.as_deref(), Some("looks right"));
    assert_eq!(records[0].commit.as_deref(), Some("head-of-db"));
    assert!(matches!(h.state(0), TaskState::Integrating { .. }));
    let err = h.awaiting("db").unwrap_err();
    assert!(
        err.contains("task db of job")
            && err.contains("is not awaiting approval (it is integrating)"),
        "{err}"
    );
    // A second decision changes nothing.
    assert!(stage_records(&h.decide("db", decision(false, Some("no")))).is_empty());
    h.integrated(merged(&["migrations/1.sql"]));
    assert_eq!(h.state(0).phase(), TaskPhase::Succeeded);
    assert_eq!(h.running(), vec!["after"]);
}

/// A job without worktrees has no file list: `when_files` cannot spare a task, it waits.
/// Rejected (`on_reject = "fail"`), the task fails for good, however many attempts it has
/// left, and its dependent is skipped.
#[test]
fn a_rejection_fails_the_task_and_skips_its_dependents() {
    let mut s = spec(vec![gated("a", &[]), gated("b", &["a"])]);
    s.tasks[0].max_attempts = Some(3);
    s.stages = vec![approval("sign-off", &["migrations/**"])];
    let mut h = Harness::new(s, 2);
    h.finish("a", Outcome::Succeeded);
    assert!(matches!(h.state(0), TaskState::AwaitingApproval { .. }));
    let actions = h.decide("a", decision(false, Some("wrong table")));
    assert_eq!(stage_records(&actions)[0].verdict, Some(Verdict::Fail));
    match h.state(0) {
        TaskState::Failed { reason, .. } => {
            assert_eq!(
                reason,
                "rejected at approval sign-off by alice: wrong table"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state(1).phase(), TaskPhase::Skipped);
    assert_eq!(h.job_state, Some(JobState::Failed));
    assert_eq!(h.dispatched, vec!["a"]);
}

/// Rejected to revise: a new round starts from the task's work (`Workspace.revise`) without
/// spending an attempt, then waits for approval again.
#[test]
fn a_rejection_to_revise_is_a_round_from_the_tasks_work() {
    let mut s = worktree_spec(vec![gated("a", &[])]);
    let mut stage = approval("sign-off", &[]);
    stage.on_reject = Some(OnReject::Revise);
    s.stages = vec![stage];
    let mut h = Harness::new(s, 1);
    h.finish_in_worktree("a", &["x.txt"]);
    let actions = h.decide("a", decision(false, Some("rename the column")));
    assert_eq!(stage_records(&actions)[0].verdict, Some(Verdict::Changes));
    let d = h.in_flight[0].clone();
    assert_eq!(d.attempt, Attempt(2));
    let revise = d.workspace.as_ref().unwrap().revise.clone().unwrap();
    assert_eq!(revise.head, "head-of-a");
    // No attempt spent: two started, one of them unspent (attempts shown: 1).
    let rec = actions.iter().rev().find_map(|a| match a {
        Action::Record(Change::Task {
            attempts,
            conflicts,
            ..
        }) => Some((*attempts, *conflicts)),
        _ => None,
    });
    assert_eq!(rec, Some((2, 1)));
    h.finish_in_worktree("a", &["x.txt"]);
    assert!(matches!(h.state(0), TaskState::AwaitingApproval { .. }));
    let actions = h.decide("a", decision(true, None));
    assert_eq!(stage_records(&actions)[0].round, 2);
    assert!(matches!(h.state(0), TaskState::Integrating { .. }));
    // Its next attempt, had there been one, would start from the tip again.
    assert!(h.in_flight.is_empty());
}

/// An approval's timeout rejects by default (the task fails, naming it); `on_timeout =
/// "approve"` lets it go on. Several approval stages come one after another.
#[test]
fn an_approval_times_out_and_stages_come_one_after_another() {
    let mut s = spec(vec![gated("a", &[]), gated("b", &[])]);
    let mut first = approval("sign-off", &[]);
    first.timeout = Some(Dur(std::time::Duration::from_secs(1)));
    s.stages = vec![first];
    let mut h = Harness::new(s, 2);
    h.finish("a", Outcome::Succeeded);
    let deadline = match h.state(0) {
        TaskState::AwaitingApproval { deadline, .. } => deadline,
        other => panic!("{other:?}"),
    };
    assert_eq!(deadline, Some(h.now + 1000));
    assert_eq!(h.engine.next_wakeup(), deadline);
    let actions = h.advance(999);
    assert!(stage_records(&actions).is_empty());
    let actions = h.advance(1);
    assert_eq!(stage_records(&actions)[0].by.as_deref(), Some("timeout"));
    match h.state(0) {
        TaskState::Failed { reason, .. } => {
            assert_eq!(reason, "approval sign-off timed out after 1s")
        }
        other => panic!("{other:?}"),
    }

    let mut s = spec(vec![gated("a", &[])]);
    let mut first = approval("sign-off", &[]);
    first.timeout = Some(Dur(std::time::Duration::from_secs(1)));
    first.on_timeout = Some(OnTimeout::Approve);
    s.stages = vec![first, approval("security", &[])];
    let mut h = Harness::new(s, 1);
    h.finish("a", Outcome::Succeeded);
    h.advance(1000);
    assert!(matches!(
        h.state(0),
        TaskState::AwaitingApproval {
            stage: 1,
            deadline: None,
            ..
        }
    ));
    assert_eq!(h.awaiting("a").as_deref(), Ok("security"));
    h.decide("a", decision(true, None));
    assert_eq!(h.state(0).phase(), TaskPhase::Succeeded);
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// A restarted engine puts a task awaiting approval back, its deadline and worktree result
/// kept: approved, it integrates once.
#[test]
fn a_task_awaiting_approval_resumes_awaiting() {
    let make = || {
        let mut s = worktree_spec(vec![gated("a", &[])]);
        let mut stage = approval("sign-off", &[]);
        stage.timeout = Some(Dur(std::time::Duration::from_secs(3600)));
        s.stages = vec![stage];
        s
    };
    let mut h = Harness::new(make(), 1);
    let d = h.in_flight[0].clone();
    let actions = h.finish_in_worktree("a", &["m.sql"]);
    let stored = attempt_results(&actions);
    let state = h.state(0);
    assert!(matches!(state, TaskState::AwaitingApproval { .. }));
    let saved = saved_of(vec![(state.clone(), d.attempt.0)], stored);
    let mut again = Harness::resumed(make(), 1, saved);
    assert!(again.in_flight.is_empty(), "it does not run again");
    assert_eq!(again.engine.tasks(&again.job).unwrap()[0], state);
    let TaskState::AwaitingApproval { deadline, .. } = state else {
        unreachable!()
    };
    assert_eq!(again.engine.next_wakeup(), deadline);
    again.recorded.insert(0, state);
    again.decide("a", decision(true, None));
    assert_eq!(again.integrations.len(), 1);
    assert_eq!(again.integrations[0].head, "head-of-a");
    again.integrated(merged(&["m.sql"]));
    assert_eq!(again.state(0).phase(), TaskPhase::Succeeded);
    assert_eq!(again.integrations.len(), 0);
}
