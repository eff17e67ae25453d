//! The one driver of the engine, shared by the coordinator service and the local runner
//! (`ordo run`, `ordo mcp`, the dashboard): it applies events, sorts the engine's actions into
//! changes to record, dispatches and kills, decides when the changes must be committed, commits
//! them (with the dispatches in the outbox when the caller publishes them), and says when it
//! next needs to wake up. The callers own only their I/O: where events come from, how an attempt
//! is started or killed, what is published or acknowledged after a commit.
//!
//! The commit rule (docs/design.md, "Fencing and delivery", an outbox): with a `durable` policy
//! nothing is carried out before the changes that led to it are committed, so every dispatch, kill
//! or reply follows a commit. Only a task starting to run may wait for a later commit
//! (`max_delay`): losing that change in a crash loses nothing, the attempt is in flight either way
//! and is requeued or redelivered. A result's own changes, and dispatches to a queue that still
//! holds a task waiting for a slot (the caller's `queued`), may wait a little (`group_delay`) to
//! share a commit: nothing waits on them (the result's event is acknowledged only after the
//! commit, so a crash brings it again), and the dispatch is not carried out before it either; a
//! dispatch to a queue with nothing waiting commits at once, so a chain's hop never waits.
//! Without `durable` (an in-memory store) actions are carried out at once and changes are
//! committed in groups, by count and age, so the store stays off the hot path. Either way the
//! changes are handed back for display once committed.

use std::time::{Duration, Instant};

use ordo_plumbing::failpoint;
use ordo_proto::{Dispatch, Integrate, Kill, Millis};

use crate::engine::{Action, Change, Engine, Event, JobState, TaskState};
use crate::notify::Notifier;
use crate::store::{Batch, Store};

/// When changes are committed.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Commit before carrying anything out (a redb file, the coordinator).
    pub durable: bool,
    /// Put dispatches in the store's outbox with the commit (the coordinator publishes them).
    pub outbox: bool,
    /// Commit once this many changes wait...
    pub max_changes: usize,
    /// ...or once the oldest has waited this long.
    pub max_delay: Duration,
    /// Results and dispatches that may share a commit (module docs) wait at most this long.
    pub group_delay: Duration,
}

impl Policy {
    /// The coordinator: durable, dispatches through the outbox. Results wait for a commit up
    /// to 20 ms while their queue's workers have tasks waiting in the stream (a commit costs
    /// a few hundred µs of CPU; a queue of short tasks holds about that long of work ahead,
    /// `service::workers`); a chain's next task never waits.
    pub const COORDINATOR: Policy = Policy {
        durable: true,
        outbox: true,
        max_changes: 1000,
        max_delay: Duration::from_millis(250),
        group_delay: Duration::from_millis(20),
    };
    /// `ordo run --state`, `ordo mcp`, the dashboard: durable, attempts started in process.
    pub const LOCAL_DURABLE: Policy = Policy {
        durable: true,
        outbox: false,
        max_changes: 1000,
        max_delay: Duration::from_millis(250),
        group_delay: Duration::from_millis(5),
    };
    /// `ordo run` without a state directory: the store is memory, nothing survives a crash;
    /// changes are committed (and shown) within 50 ms.
    pub const IN_MEMORY: Policy = Policy {
        durable: false,
        outbox: false,
        max_changes: 4096,
        max_delay: Duration::from_millis(50),
        group_delay: Duration::from_millis(50),
    };
}

/// What a turn hands the caller to carry out, after the commit that allows it.
#[derive(Debug, Default)]
pub struct Turn {
    /// The changes committed in this turn, to show (progress, traces, metrics).
    pub changes: Vec<Change>,
    pub dispatches: Vec<Dispatch>,
    /// Outbox sequence of each dispatch (with `Policy::outbox`), in the same order.
    pub outbox: Vec<u64>,
    /// Attempts to kill, and (index and attempt `None`) jobs cancelled as a whole.
    pub kills: Vec<Kill>,
    /// Integrations of worktree tasks to carry out (one per repository at a time).
    pub integrations: Vec<Integrate>,
    /// A commit happened in this turn.
    pub committed: bool,
}

#[derive(Debug)]
pub struct Driver {
    engine: Engine,
    policy: Policy,
    /// Applied, not yet committed.
    pending: Vec<Change>,
    /// Some change in `pending` must be committed before anything is carried out.
    urgent: bool,
    dispatches: Vec<Dispatch>,
    /// The queues of `dispatches`, each once.
    queues: Vec<String>,
    kills: Vec<Kill>,
    integrations: Vec<Integrate>,
    /// When the oldest pending change was applied.
    oldest: Option<Instant>,
    /// Since when a result's changes or a dispatch wait to share a commit (`group_delay`).
    grouped: Option<Instant>,
}

impl Driver {
    pub fn new(policy: Policy) -> Driver {
        Driver {
            engine: Engine::new(),
            policy,
            pending: Vec::new(),
            urgent: false,
            dispatches: Vec::new(),
            queues: Vec::new(),
            kills: Vec::new(),
            integrations: Vec::new(),
            oldest: None,
            grouped: None,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Applies one event and keeps what the engine asks for until the next turn.
    pub fn apply(&mut self, now: Millis, event: Event) {
        let result = matches!(event, Event::Finished(_));
        let actions = self.engine.apply(now, event);
        self.take(actions, result);
    }

    /// Keeps actions the caller got from the engine some other way.
    pub fn absorb(&mut self, actions: Vec<Action>) {
        self.take(actions, false);
    }

    /// Keeps actions; `result`: they answer a task's result, whose own changes may share a
    /// later commit.
    fn take(&mut self, actions: Vec<Action>, result: bool) {
        for a in actions {
            match a {
                Action::Record(c)
                    if result
                        && matches!(
                            c,
                            Change::Task { .. } | Change::Attempt(_) | Change::Ignored { .. }
                        ) =>
                {
                    self.grouped.get_or_insert_with(Instant::now);
                    self.keep(c);
                }
                Action::Record(c) => self.record(c),
                Action::Dispatch(d) => {
                    if !self.queues.contains(&d.queue) {
                        self.queues.push(d.queue.clone());
                    }
                    self.dispatches.push(d)
                }
                Action::Integrate(i) => self.integrations.push(i),
                Action::Kill {
                    job,
                    index,
                    attempt,
                } => self.kills.push(Kill {
                    job,
                    index: Some(index),
                    attempt: Some(attempt),
                }),
            }
        }
    }

    /// A change to commit that the engine did not make (a retried job starting again).
    pub fn record(&mut self, c: Change) {
        // Only a task starting to run may wait for a later commit.
        self.urgent |= !matches!(
            c,
            Change::Task {
                state: TaskState::Running { .. },
                ..
            }
        );
        if let Change::Job {
            job,
            state: JobState::Cancelled,
            ..
        } = &c
        {
            self.kills.push(Kill {
                job: *job,
                index: None,
                attempt: None,
            });
        }
        self.keep(c);
    }

    fn keep(&mut self, c: Change) {
        self.oldest.get_or_insert_with(Instant::now);
        self.pending.push(c);
    }

    /// Whether the pending changes must be committed now. `force`: the caller needs a commit
    /// (a reply waits on it, the loop is stopping, a periodic flush). `queued`: whether a task
    /// handed to this queue still waits for a slot (then a dispatch to it may share a later
    /// commit: the workers have work meanwhile).
    pub fn due(&mut self, force: bool, queued: impl Fn(&str) -> bool) -> bool {
        let waiting = self.queues.iter().all(|q| queued(q));
        if !self.dispatches.is_empty() && waiting {
            self.grouped.get_or_insert_with(Instant::now);
        }
        let acting = (!self.dispatches.is_empty() && !waiting)
            || !self.kills.is_empty()
            || !self.integrations.is_empty();
        let aged = self
            .oldest
            .is_some_and(|t| t.elapsed() >= self.policy.max_delay)
            || self
                .grouped
                .is_some_and(|t| t.elapsed() >= self.policy.group_delay);
        let has = !self.pending.is_empty() || !self.dispatches.is_empty() || acting;
        has && (force
            || aged
            || self.pending.len() >= self.policy.max_changes
            || (self.policy.durable && (self.urgent || acting)))
    }

    /// Everything applied is committed (what waits on a commit, an ack or a reply, may go).
    pub fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the driver needs the loop back even if no event comes: the engine's next timer,
    /// or the deadline of changes waiting for a commit.
    pub fn next_wakeup(&self, now: Millis) -> Option<Millis> {
        let left = |since: Option<Instant>, delay: Duration| {
            since.map(|t| now + delay.saturating_sub(t.elapsed()).as_millis() as Millis)
        };
        [
            self.engine.next_wakeup(),
            left(self.oldest, self.policy.max_delay),
            left(self.grouped, self.policy.group_delay),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One turn: commits if due (outbox entries `sent` since the last commit are marked in
    /// the same transaction, and so are the notifications the changes cause and the outcomes
    /// of deliveries, `notifier`), then hands back what may be carried out. With a durable
    /// policy and nothing due, the turn is empty: kills, and dispatches to a queue with nothing
    /// `queued`, always make a commit due.
    pub fn turn(
        &mut self,
        store: &Store,
        now: Millis,
        force: bool,
        queued: impl Fn(&str) -> bool,
        sent: &mut Vec<u64>,
        notifier: &mut Notifier,
    ) -> Result<Turn, crate::store::Error> {
        let mut turn = Turn::default();
        let commit =
            self.due(force, queued) || (force && (!sent.is_empty() || notifier.has_edits()));
        if self.policy.durable && !commit {
            return Ok(turn);
        }
        let dispatches = std::mem::take(&mut self.dispatches);
        self.queues.clear();
        if commit {
            let outbox_add: &[Dispatch] = if self.policy.outbox { &dispatches } else { &[] };
            notifier.derive(now, &self.pending);
            let batch = Batch {
                now,
                changes: &self.pending,
                outbox_add,
                outbox_sent: sent,
                notify_add: &notifier.staged,
                notify_edits: &notifier.edits,
            };
            failpoint::hit(failpoint::BEFORE_COMMIT);
            turn.outbox = store.commit(&batch)?;
            sent.clear();
            let reload = !notifier.staged.is_empty();
            notifier.committed(if reload { Some(store.notices()?) } else { None });
            if reload {
                failpoint::hit(failpoint::AFTER_NOTICE_COMMIT);
            }
            turn.changes = std::mem::take(&mut self.pending);
            self.urgent = false;
            self.oldest = None;
            self.grouped = None;
            turn.committed = true;
        }
        turn.dispatches = dispatches;
        turn.kills = std::mem::take(&mut self.kills);
        turn.integrations = std::mem::take(&mut self.integrations);
        Ok(turn)
    }
}

/// Sleeps until `at` (milliseconds since the epoch), or forever for `None`.
pub async fn sleep_until(at: Option<Millis>) {
    match at {
        Some(at) => {
            let wait = at.saturating_sub(ordo_proto::now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ordo_proto::{Attempt, JobId, JobSpec, TaskIndex, TaskSpec, validate::validate};

    use super::*;
    use crate::engine::{ANY_QUEUE, Capacity, JobOptions};

    /// One turn with nothing sent and no notifier.
    fn one_turn(
        d: &mut Driver,
        store: &Store,
        now: Millis,
        force: bool,
        queued: impl Fn(&str) -> bool,
    ) -> Turn {
        d.turn(
            store,
            now,
            force,
            queued,
            &mut Vec::new(),
            &mut Default::default(),
        )
        .unwrap()
    }

    /// No task handed to any queue waits for a slot.
    fn idle(_: &str) -> bool {
        false
    }

    fn submit(driver: &mut Driver, tasks: usize) -> JobId {
        let spec = JobSpec {
            name: "j".into(),
            tasks: (0..tasks)
                .map(|i| TaskSpec::shell(&format!("t{i}"), "true"))
                .collect(),
            settings: ordo_proto::Settings {
                execution_mode: Some(ordo_proto::ExecutionMode::Parallel),
                ..Default::default()
            },
            ..Default::default()
        };
        let dag = validate(&spec).unwrap();
        let job = JobId::new();
        driver.apply(
            1,
            Event::Capacity {
                queue: ANY_QUEUE.into(),
                capacity: Capacity::machine(8, 8.0, 1 << 20),
            },
        );
        driver.apply(
            1,
            Event::Submit {
                job,
                spec: Arc::new(spec),
                dag: Arc::new(dag),
                options: JobOptions::default(),
                saved: None,
            },
        );
        job
    }

    /// A durable driver carries nothing out before the commit that records it, and puts every
    /// dispatch in the outbox of that same commit.
    #[test]
    fn durable_dispatches_follow_their_commit_through_the_outbox() {
        let store = Store::in_memory().unwrap();
        let mut d = Driver::new(Policy::COORDINATOR);
        let job = submit(&mut d, 3);
        assert!(d.due(false, idle));
        let turn = one_turn(&mut d, &store, 2, false, idle);
        assert!(turn.committed);
        assert_eq!(turn.dispatches.len(), 3);
        assert_eq!(turn.outbox.len(), 3);
        assert_eq!(store.outbox().unwrap().len(), 3);
        assert_eq!(store.tasks(&job).unwrap().len(), 3);
        // Nothing left: the next turn is empty and commits nothing.
        let turn = one_turn(&mut d, &store, 3, false, idle);
        assert!(!turn.committed && turn.dispatches.is_empty());
    }

    /// A task starting to run alone does not force a commit; its deadline is the next wakeup.
    #[test]
    fn running_alone_waits_for_a_later_commit() {
        let store = Store::in_memory().unwrap();
        let mut d = Driver::new(Policy::LOCAL_DURABLE);
        let job = submit(&mut d, 1);
        let turn = one_turn(&mut d, &store, 2, false, idle);
        let dispatch = &turn.dispatches[0];
        d.apply(
            3,
            Event::Started {
                job,
                index: TaskIndex(0),
                attempt: dispatch.attempt,
                worker: "w".into(),
                delivery: 0,
            },
        );
        assert!(
            !d.due(false, idle),
            "a running transition alone is not urgent"
        );
        let wake = d.next_wakeup(3).expect("a commit deadline");
        assert!(wake <= 3 + 250, "{wake}");
        assert!(d.due(true, idle));
        let turn = one_turn(&mut d, &store, 4, true, idle);
        assert!(turn.committed);
        assert!(matches!(
            store.task(&job, TaskIndex(0)).unwrap().unwrap().state,
            TaskState::Running {
                attempt: Attempt(1),
                ..
            }
        ));
    }

    /// In memory, dispatches go out at once and changes wait for a group commit.
    #[test]
    fn in_memory_acts_before_committing() {
        let store = Store::in_memory().unwrap();
        let mut d = Driver::new(Policy::IN_MEMORY);
        let job = submit(&mut d, 2);
        let turn = one_turn(&mut d, &store, 2, false, idle);
        assert!(!turn.committed && turn.changes.is_empty());
        assert_eq!(turn.dispatches.len(), 2);
        assert!(store.tasks(&job).unwrap().is_empty());
        assert!(d.next_wakeup(2).is_some_and(|w| w <= 2 + 50));
        let turn = one_turn(&mut d, &store, 3, true, idle);
        assert!(turn.committed && !turn.changes.is_empty());
        assert_eq!(store.tasks(&job).unwrap().len(), 2);
    }

    fn succeeded(d: &Dispatch) -> Event {
        let mut r =
            ordo_proto::TaskResult::new(d, "w".into(), ordo_proto::Outcome::Succeeded, 2, "");
        r.exit_code = Some(0);
        Event::Finished(r)
    }

    /// A result's own changes, and a dispatch to a queue whose workers still have a task
    /// waiting, share a later commit (at most `group_delay` away); a dispatch to a queue with
    /// nothing waiting commits at once, with the result that caused it.
    #[test]
    fn results_and_dispatches_ahead_share_a_commit() {
        let store = Store::in_memory().unwrap();
        let mut d = Driver::new(Policy::COORDINATOR);
        let job = submit(&mut d, 12);
        // Eight slots: eight dispatched, four tasks left.
        let first = one_turn(&mut d, &store, 2, false, idle);
        assert_eq!(first.dispatches.len(), 8);
        d.apply(3, succeeded(&first.dispatches[0]));
        let queued = |_: &str| true;
        assert!(
            !d.due(false, queued),
            "a result and the dispatch it frees wait while the queue has work"
        );
        let turn = one_turn(&mut d, &store, 3, false, queued);
        assert!(!turn.committed && turn.dispatches.is_empty() && !d.settled());
        let wake = d.next_wakeup(3).expect("a commit deadline");
        let group = Policy::COORDINATOR.group_delay.as_millis() as u64;
        assert!(wake <= 3 + group, "within group_delay: {wake}");
        // A second result joins; with nothing waiting in the queue, both go in one commit.
        d.apply(4, succeeded(&first.dispatches[1]));
        assert!(d.due(false, idle));
        let turn = one_turn(&mut d, &store, 4, false, idle);
        assert!(turn.committed && d.settled());
        assert_eq!(turn.dispatches.len(), 2, "both freed slots, in one commit");
        let done = |i: u32| {
            matches!(
                store.task(&job, TaskIndex(i)).unwrap().unwrap().state,
                TaskState::Succeeded { .. }
            )
        };
        assert!(done(0) && done(1));
        // A result alone waits at most `group_delay`.
        d.apply(5, succeeded(&first.dispatches[2]));
        assert!(!d.due(false, queued));
        std::thread::sleep(Policy::COORDINATOR.group_delay);
        assert!(d.due(false, queued), "due once group_delay passed");
    }
}
