//! `[[notify]]` hooks (docs/design.md, "Notifications"): which changes are events a hook wants
//! (`Notifier::derive`, run by the driver on the changes it is about to commit, so a
//! notification is stored in the same commit as its cause), the stored notification (`Notice`,
//! the store's `notify` outbox) and what a delivery attempt made of it (`Edit`, a stored change
//! too), the retry schedule, and the deliveries in flight. `deliver` holds the HTTP side.

pub mod deliver;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ordo_proto::gates::{NotifyEvent, NotifySpec};
use ordo_proto::state::TaskPhase;
use ordo_proto::{JobId, JobSpec, Millis, TaskIndex, names};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::engine::{BUDGET_EXHAUSTED, Change, TaskState};

/// One notification waiting in the outbox: what the body says, where it goes, and how its
/// delivery went so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The delivery id (`Ordo-Delivery`): the same on every attempt.
    pub id: String,
    pub event: NotifyEvent,
    pub job: JobId,
    pub job_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The task's state (or the job's, for `job_ended`).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the job's agent runs cost so far (the store fills it in when it commits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub hook: NotifySpec,
    /// When the event happened: retries stop `NOTIFY_GIVE_UP_MS` after.
    pub at: Millis,
    #[serde(default)]
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What a delivery attempt made of a notification: a stored change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    pub id: String,
    pub job: JobId,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The receiver answered 2xx: the notification leaves the outbox.
    Sent,
    /// It failed; tried again at `next_ms`, or (`None`) given up after 24 hours.
    Failed {
        error: String,
        next_ms: Option<Millis>,
    },
}

/// The first retry's delay; each failure doubles it, up to `MAX_BACKOFF_MS`.
pub const FIRST_BACKOFF_MS: Millis = 1000;
pub const MAX_BACKOFF_MS: Millis = 60 * 60 * 1000;

/// When a notification that failed `attempts` times (counting this one) at `now` is tried
/// again, or `None` once 24 hours passed since its event (the last try falls at that limit).
pub fn retry_at(at: Millis, attempts: u32, now: Millis) -> Option<Millis> {
    let give_up = at.saturating_add(names::NOTIFY_GIVE_UP_MS);
    if now >= give_up {
        return None;
    }
    let shift = attempts.saturating_sub(1).min(32);
    let delay = FIRST_BACKOFF_MS
        .saturating_mul(1u64 << shift)
        .min(MAX_BACKOFF_MS);
    Some(now.saturating_add(delay).min(give_up))
}

/// A delivery attempt's end, sent back to the host's loop.
#[derive(Debug)]
pub struct Delivered {
    pub id: String,
    pub result: Result<(), String>,
}

/// The host's side of notifications: the jobs with hooks, the notifications to store with the
/// next commit, the outbox as the store holds it, and the deliveries in flight. Without any
/// hooked job, `derive` returns at once: jobs without `[[notify]]` pay nothing per change.
pub struct Notifier {
    /// Specs of live jobs that have `[[notify]]` hooks.
    hooks: HashMap<JobId, Arc<JobSpec>>,
    /// Jobs whose budget exhaustion was told (once per run).
    budget_told: HashSet<JobId>,
    /// Derived, to be stored with the commit being made.
    pub(crate) staged: Vec<Notice>,
    /// Delivery outcomes to store with the next commit.
    pub(crate) edits: Vec<Edit>,
    /// The outbox (committed notifications), by delivery id.
    queue: BTreeMap<String, Notice>,
    in_flight: HashSet<String>,
    /// Deliveries that ended, and the wake-up of the loop that takes them.
    tx: mpsc::UnboundedSender<Delivered>,
    rx: mpsc::UnboundedReceiver<Delivered>,
    wake: Arc<Notify>,
}

impl Default for Notifier {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Notifier {
            hooks: HashMap::new(),
            budget_told: HashSet::new(),
            staged: Vec::new(),
            edits: Vec::new(),
            queue: BTreeMap::new(),
            in_flight: HashSet::new(),
            tx,
            rx,
            wake: Arc::new(Notify::new()),
        }
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("hooked", &self.hooks.len())
            .field("queued", &self.queue.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// What delivery counted, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
}

impl Notifier {
    /// A job (submitted, resumed or retried) whose hooks fire from now on.
    pub fn watch(&mut self, job: JobId, spec: &Arc<JobSpec>) {
        if !spec.notify.is_empty() {
            self.hooks.insert(job, spec.clone());
            self.budget_told.remove(&job);
        }
    }

    /// Notifications the changes about to be committed cause, staged for that commit.
    pub fn derive(&mut self, now: Millis, changes: &[Change]) {
        if self.hooks.is_empty() {
            return;
        }
        // Tasks whose integration ended in this batch: a failure right then is an escalation.
        let integrated: HashSet<(JobId, TaskIndex)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Integrated { job, index, .. } => Some((*job, *index)),
                _ => None,
            })
            .collect();
        for c in changes {
            match c {
                Change::Task {
                    job, index, state, ..
                } => {
                    let Some(spec) = self.hooks.get(job).cloned() else {
                        continue;
                    };
                    let (candidates, reason): (Vec<NotifyEvent>, Option<&String>) = match state {
                        TaskState::Failed { reason, .. } | TaskState::TimedOut { reason, .. } => {
                            let mut c = Vec::with_capacity(2);
                            if integrated.contains(&(*job, *index))
                                || reason.contains("integration attempt")
                            {
                                c.push(NotifyEvent::ConflictEscalated);
                            } else if reason.contains(BUDGET_EXHAUSTED)
                                && !self.budget_told.contains(job)
                            {
                                c.push(NotifyEvent::BudgetExhausted);
                            }
                            c.push(NotifyEvent::TaskFailed);
                            (c, Some(reason))
                        }
                        TaskState::Skipped { reason }
                            if reason.starts_with(BUDGET_EXHAUSTED)
                                && !self.budget_told.contains(job) =>
                        {
                            (vec![NotifyEvent::BudgetExhausted], Some(reason))
                        }
                        s if s.phase() == TaskPhase::AwaitingApproval => {
                            (vec![NotifyEvent::AwaitingApproval], None)
                        }
                        _ => continue,
                    };
                    if candidates.contains(&NotifyEvent::BudgetExhausted) {
                        self.budget_told.insert(*job);
                    }
                    let task = spec.tasks.get(index.get()).map(|t| t.name.to_string());
                    for hook in &spec.notify {
                        let Some(event) = candidates.iter().find(|e| hook.events.contains(e))
                        else {
                            continue;
                        };
                        self.staged.push(Notice {
                            id: uuid::Uuid::now_v7().to_string(),
                            event: *event,
                            job: *job,
                            job_name: spec.name.clone(),
                            task: task.clone(),
                            index: Some(index.0),
                            state: state.name().to_string(),
                            reason: reason.cloned(),
                            cost_usd: None,
                            hook: hook.clone(),
                            at: now,
                            attempts: 0,
                            next_ms: now,
                            last_error: None,
                        });
                    }
                }
                Change::Job {
                    job, state, reason, ..
                } if state.is_terminal() => {
                    let Some(spec) = self.hooks.remove(job) else {
                        continue;
                    };
                    for hook in spec
                        .notify
                        .iter()
                        .filter(|h| h.events.contains(&NotifyEvent::JobEnded))
                    {
                        self.staged.push(Notice {
                            id: uuid::Uuid::now_v7().to_string(),
                            event: NotifyEvent::JobEnded,
                            job: *job,
                            job_name: spec.name.clone(),
                            task: None,
                            index: None,
                            state: state.name().to_string(),
                            reason: reason.clone(),
                            cost_usd: None,
                            hook: hook.clone(),
                            at: now,
                            attempts: 0,
                            next_ms: now,
                            last_error: None,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Something to store with the next commit (outcomes of deliveries).
    pub fn has_edits(&self) -> bool {
        !self.edits.is_empty()
    }

    /// Staged notifications were committed (and so were the edits): `outbox` is the store's
    /// outbox afterwards when notifications were added.
    pub(crate) fn committed(&mut self, outbox: Option<Vec<Notice>>) {
        self.staged.clear();
        self.edits.clear();
        if let Some(outbox) = outbox {
            self.queue = outbox.into_iter().map(|n| (n.id.clone(), n)).collect();
        }
    }

    /// Takes up the outbox a previous process left (the next process on a state directory, a
    /// coordinator taking over): each is tried at once, then on its schedule.
    pub fn load(&mut self, outbox: Vec<Notice>, now: Millis) {
        self.queue = outbox
            .into_iter()
            .map(|mut n| {
                n.next_ms = n.next_ms.min(now);
                (n.id.clone(), n)
            })
            .collect();
    }

    /// Whether any notification waits in the outbox this process should not leave behind.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Notifications waiting, with their last error, for a process about to exit.
    pub fn waiting(&self) -> Vec<&Notice> {
        self.queue.values().collect()
    }

    /// Whether waiting until `deadline` can deliver nothing more: none in flight, none due
    /// before it.
    pub fn idle_until(&self, deadline: Millis) -> bool {
        self.in_flight.is_empty() && self.queue.values().all(|n| n.next_ms > deadline)
    }

    /// What wakes the host's loop when a delivery ended.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// When the next notification not in flight is due.
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.queue
            .values()
            .filter(|n| !self.in_flight.contains(&n.id))
            .map(|n| n.next_ms)
            .min()
    }

    /// Takes the deliveries that ended: their outcomes become edits for the next commit.
    pub fn collect(&mut self, now: Millis) -> Counts {
        let mut counts = Counts::default();
        while let Ok(d) = self.rx.try_recv() {
            self.in_flight.remove(&d.id);
            let Some(n) = self.queue.get_mut(&d.id) else {
                continue;
            };
            let outcome = match d.result {
                Ok(()) => {
                    counts.sent += 1;
                    Outcome::Sent
                }
                Err(error) => {
                    counts.failed += 1;
                    n.attempts += 1;
                    let next_ms = retry_at(n.at, n.attempts, now);
                    tracing::warn!(
                        job = %n.job, event = n.event.name(), url = %n.hook.url,
                        delivery = %n.id, attempts = n.attempts,
                        "notification not delivered: {error}{}",
                        if next_ms.is_some() { "; it is retried" } else { "; given up after 24 hours" }
                    );
                    Outcome::Failed { error, next_ms }
                }
            };
            let job = n.job;
            match &outcome {
                Outcome::Failed {
                    error,
                    next_ms: Some(next),
                } => {
                    n.next_ms = *next;
                    n.last_error = Some(error.clone());
                }
                _ => {
                    self.queue.remove(&d.id);
                }
            }
            self.edits.push(Edit {
                id: d.id,
                job,
                outcome,
            });
        }
        counts
    }

    /// Starts the deliveries that are due (each a task of its own; its end comes back through
    /// `collect`). Needs a tokio runtime.
    pub fn start_due(&mut self, now: Millis) {
        for n in self.queue.values() {
            if n.next_ms > now || self.in_flight.contains(&n.id) {
                continue;
            }
            self.in_flight.insert(n.id.clone());
            let (n, tx, wake) = (n.clone(), self.tx.clone(), self.wake.clone());
            tokio::spawn(async move {
                let result = deliver::send(&n).await;
                let _ = tx.send(Delivered { id: n.id, result });
                wake.notify_one();
            });
        }
    }
}

#[cfg(test)]
mod tests;
