//! Notification tests: which changes are events a hook wants, the outbox rows written in the
//! same commit as their cause and edited by deliveries, the backoff schedule, the bodies and the
//! signature (RFC 4231 vectors). No network: deliveries are driven by hand.

use std::sync::Arc;

use ordo_proto::gates::{NotifyEvent, NotifyFormat, NotifySpec};
use ordo_proto::{Attempt, JobId, JobSpec, TaskIndex, TaskSpec};

use super::deliver::{body, hmac_sha256, signature, slack_text};
use super::*;
use crate::engine::{Change, JobState, TaskState};
use crate::store::{Batch, Store};

fn hook(events: &[NotifyEvent]) -> NotifySpec {
    NotifySpec {
        events: events.to_vec(),
        url: "http://127.0.0.1:9/hook".into(),
        ..NotifySpec::default()
    }
}

fn spec(hooks: Vec<NotifySpec>) -> Arc<JobSpec> {
    let mut s = JobSpec {
        name: "nightly".into(),
        ..JobSpec::default()
    };
    s.tasks = vec![
        TaskSpec::shell("build", "true"),
        TaskSpec::shell("test", "false"),
    ];
    s.notify = hooks;
    Arc::new(s)
}

fn failed(job: JobId, index: u32, reason: &str) -> Change {
    Change::Task {
        job,
        index: TaskIndex(index),
        attempts: 1,
        conflicts: 0,
        state: TaskState::Failed {
            attempt: Attempt(1),
            finished: 5,
            reason: reason.into(),
        },
    }
}

fn ended(job: JobId) -> Change {
    Change::Job {
        job,
        state: JobState::Failed,
        at: 6,
        reason: Some("task 'test' failed".into()),
    }
}

fn events(n: &Notifier) -> Vec<&'static str> {
    n.staged.iter().map(|n| n.event.name()).collect()
}

/// RFC 4231, test case 2, and a key longer than a block (test case 6).
#[test]
fn hmac_matches_the_rfc_4231_vectors() {
    let hex = |b: [u8; 32]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

/// The signature signs `<t>.<body>`, as Stripe's scheme: t and v1, no spaces.
#[test]
fn the_signature_is_t_and_the_hmac_of_t_dot_body() {
    let sig = signature(b"Jefe", 1764979200, b"{}");
    let expected = hmac_sha256(b"Jefe", b"1764979200.{}");
    let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sig, format!("t=1764979200,v1={hex}"));
}

/// Each failure doubles the delay from one second, at most an hour, and nothing is tried
/// 24 hours after the event (the last try falls at that limit).
#[test]
fn retries_back_off_and_stop_after_24_hours() {
    let at = 1_000_000;
    assert_eq!(retry_at(at, 1, at), Some(at + 1000));
    assert_eq!(retry_at(at, 2, at + 1000), Some(at + 3000));
    assert_eq!(retry_at(at, 4, at), Some(at + 8000));
    assert_eq!(retry_at(at, 30, at), Some(at + MAX_BACKOFF_MS));
    let day = ordo_proto::names::NOTIFY_GIVE_UP_MS;
    assert_eq!(retry_at(at, 30, at + day - 10), Some(at + day));
    assert_eq!(retry_at(at, 31, at + day), None);
}

/// A hook gets exactly the events it subscribed to; a failure past the integration bound is
/// `conflict_escalated` for a hook that wants it and `task_failed` for one that does not.
#[test]
fn hooks_get_the_events_they_subscribed_to() {
    let job = JobId::new();
    let mut n = Notifier::default();
    n.derive(1, &[failed(job, 1, "exit 1")]);
    assert!(
        n.staged.is_empty(),
        "a job that was not watched has no hooks"
    );
    n.watch(
        job,
        &spec(vec![hook(&[
            NotifyEvent::TaskFailed,
            NotifyEvent::JobEnded,
        ])]),
    );
    n.derive(1, &[failed(job, 1, "exit 1"), ended(job)]);
    assert_eq!(events(&n), ["task_failed", "job_ended"]);
    let first = &n.staged[0];
    assert_eq!(
        (first.task.as_deref(), first.state.as_str()),
        (Some("test"), "failed")
    );
    assert_ne!(n.staged[0].id, n.staged[1].id);

    let job = JobId::new();
    let mut n = Notifier::default();
    n.watch(
        job,
        &spec(vec![
            hook(&[NotifyEvent::ConflictEscalated, NotifyEvent::TaskFailed]),
            hook(&[NotifyEvent::TaskFailed]),
            hook(&[NotifyEvent::AwaitingApproval]),
        ]),
    );
    n.derive(
        1,
        &[failed(
            job,
            0,
            "conflict after 2 integration attempt(s) in a.txt",
        )],
    );
    assert_eq!(events(&n), ["conflict_escalated", "task_failed"]);
}

/// The budget is told once per job, for the task that stopped and not for the ones skipped.
#[test]
fn budget_exhaustion_is_told_once() {
    let job = JobId::new();
    let mut n = Notifier::default();
    n.watch(
        job,
        &spec(vec![hook(&[
            NotifyEvent::BudgetExhausted,
            NotifyEvent::TaskFailed,
        ])]),
    );
    let skipped = Change::Task {
        job,
        index: TaskIndex(1),
        attempts: 0,
        conflicts: 0,
        state: TaskState::Skipped {
            reason: "budget exhausted ($1.10 of $1.00)".into(),
        },
    };
    n.derive(
        1,
        &[
            failed(job, 0, "exit 1; budget exhausted ($1.10 of $1.00)"),
            skipped,
        ],
    );
    assert_eq!(events(&n), ["budget_exhausted"]);
}

/// The JSON body carries the facts and the dashboard link; Slack's is one line with the link.
#[test]
fn bodies_carry_the_facts_and_the_link() {
    let job = JobId::new();
    let mut n = Notifier::default();
    let mut h = hook(&[NotifyEvent::TaskFailed]);
    h.dashboard_url = Some("https://ordo.example/".into());
    n.watch(job, &spec(vec![h]));
    n.derive(1, &[failed(job, 1, "exit 1")]);
    let mut notice = n.staged[0].clone();
    notice.cost_usd = Some(0.25);
    let v: serde_json::Value = serde_json::from_slice(&body(&notice)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "event": "task_failed",
            "job": job.to_string(),
            "job_name": "nightly",
            "task": "test",
            "state": "failed",
            "reason": "exit 1",
            "cost_usd": 0.25,
            "url": format!("https://ordo.example/jobs/{job}/tasks/1"),
        })
    );
    notice.hook.format = NotifyFormat::Slack;
    let v: serde_json::Value = serde_json::from_slice(&body(&notice)).unwrap();
    let text = v["text"].as_str().unwrap();
    assert_eq!(text, slack_text(&notice));
    for part in [
        "task_failed",
        "nightly",
        "test",
        "failed",
        "exit 1",
        "$0.25",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(text.contains(&format!("https://ordo.example/jobs/{job}/tasks/1")));
    assert!(!text.contains('\n'));
}

/// A notification is stored by the commit of the change that caused it (with the job's
/// cost), and a delivery's outcome is a stored change: a failure keeps it with its next try
/// and counts in the job's health, a success removes it.
#[test]
fn notices_are_committed_with_their_cause_and_edited_by_deliveries() {
    let store = Store::in_memory().unwrap();
    let job = JobId::new();
    let mut n = Notifier::default();
    n.watch(job, &spec(vec![hook(&[NotifyEvent::TaskFailed])]));
    let changes = [failed(job, 1, "exit 1")];
    n.derive(1, &changes);
    store
        .commit(&Batch {
            now: 1,
            changes: &changes,
            notify_add: &n.staged,
            ..Default::default()
        })
        .unwrap();
    let stored = store.notices().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, n.staged[0].id);
    n.committed(Some(stored.clone()));
    assert_eq!(n.next_wakeup(), Some(1));

    let id = stored[0].id.clone();
    n.tx.send(Delivered {
        id: id.clone(),
        result: Err("refused".into()),
    })
    .unwrap();
    let counts = n.collect(10);
    assert_eq!((counts.sent, counts.failed), (0, 1));
    store
        .commit(&Batch {
            now: 10,
            notify_edits: &n.edits,
            ..Default::default()
        })
        .unwrap();
    let stored = store.notices().unwrap();
    assert_eq!(
        (stored[0].attempts, stored[0].next_ms),
        (1, 10 + FIRST_BACKOFF_MS)
    );
    let health = store.notify_health(&job).unwrap().unwrap();
    assert_eq!(health.failures, 1);
    assert!(health.last_error.unwrap().contains("refused"));
    n.committed(None);

    n.tx.send(Delivered { id, result: Ok(()) }).unwrap();
    n.collect(2000);
    store
        .commit(&Batch {
            now: 2000,
            notify_edits: &n.edits,
            ..Default::default()
        })
        .unwrap();
    assert!(store.notices().unwrap().is_empty());
    assert_eq!(n.queued(), 0);
}

/// A secret variable that is not set fails the delivery with a reason naming it (nothing is
/// sent unsigned), never a panic.
#[tokio::test]
async fn a_missing_secret_fails_the_delivery_naming_the_variable() {
    let job = JobId::new();
    let mut n = Notifier::default();
    let mut h = hook(&[NotifyEvent::TaskFailed]);
    h.secret_env = Some("ORDO_TEST_NOTIFY_SECRET_THAT_IS_NOT_SET".into());
    n.watch(job, &spec(vec![h]));
    n.derive(1, &[failed(job, 1, "exit 1")]);
    let err = deliver::send(&n.staged[0]).await.unwrap_err();
    assert!(
        err.contains("ORDO_TEST_NOTIFY_SECRET_THAT_IS_NOT_SET"),
        "{err}"
    );
}

/// A task entering `awaiting_approval` is told to a hook that wants it, with the task's name.
#[test]
fn a_task_awaiting_approval_is_told() {
    let job = JobId::new();
    let mut n = Notifier::default();
    n.watch(
        job,
        &spec(vec![
            hook(&[NotifyEvent::AwaitingApproval]),
            hook(&[NotifyEvent::TaskFailed]),
        ]),
    );
    let waiting = Change::Task {
        job,
        index: TaskIndex(0),
        attempts: 1,
        conflicts: 0,
        state: TaskState::AwaitingApproval {
            attempt: Attempt(1),
            since: 3,
            stage: 0,
            deadline: None,
        },
    };
    n.derive(3, &[waiting]);
    assert_eq!(events(&n), ["awaiting_approval"]);
    assert_eq!(n.staged[0].task.as_deref(), Some("build"));
    assert_eq!(n.staged[0].state, "awaiting_approval");
}
