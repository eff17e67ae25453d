//! Speculation inside a job (docs/design.md, "Integration queue: speculation"), still without
//! I/O. With `integration.speculate = "verified"`, a pending task whose unsatisfied
//! dependencies have all passed their verify and stages (they are integrating or awaiting
//! approval, and never conflicted) starts at once on their work merged onto the tip, instead
//! of waiting for them to integrate. Its work is kept when they integrate as they were (the
//! attempt it started on, with no rework, rejection or failure between): it then integrates
//! like any task. Otherwise it is discarded (killed if it still runs) and the task waits for
//! its dependencies again, spending no attempt; a speculative attempt that fails is discarded
//! too (the run on the real tip decides). A task speculates once at most, never on a
//! dependency that had a conflict, and no more once discarded runs took `speculation_budget`
//! of the job's budget (of its runs, without a budget). Speculation is not kept across a
//! restart: a speculative task loaded from the store waits for its dependencies again.

use ordo_proto::{Attempt, Resolve, TaskIndex, TaskResult, names};

use super::super::slot::Speculation;
use super::super::state::{Millis, TaskState};
use super::super::{Action, Change};
use super::{Job, Kind};

impl Job {
    /// `d` passed its verify and stages and waits to integrate: its pending dependents may
    /// start on its work.
    pub(super) fn speculate_after(&mut self, d: u32, now: Millis, out: &mut Vec<Action>) {
        if self.speculate.is_none() {
            return;
        }
        for i in 0..self.dag.dependents[d as usize].len() {
            let s = self.dag.dependents[d as usize][i];
            self.try_speculate(s, now, out);
        }
    }

    /// Makes `s` ready on a speculative base when every dependency it still waits for may be
    /// speculated on.
    pub(super) fn try_speculate(&mut self, s: u32, now: Millis, out: &mut Vec<Action>) {
        let slot = &self.slots[s as usize];
        if !matches!(slot.state, TaskState::Pending)
            || slot.waiting == 0
            || slot.speculated
            || self.stop.is_some()
            || self.kind != (Kind::Dag { sequential: false })
            || self.blocked_by_failure(s)
            || !self.speculation_left()
        {
            return;
        }
        let mut spec = Speculation {
            on: Vec::new(),
            all: Vec::new(),
            base: Vec::new(),
            attempt: None,
            doomed: false,
            cost_usd: None,
        };
        for &d in &self.dag.deps[s as usize] {
            if self.satisfied(d) {
                continue;
            }
            let dep = &self.slots[d as usize];
            let (attempt, work) = match &dep.state {
                TaskState::Integrating { attempt, .. } => {
                    (*attempt, self.ws.as_ref().and_then(|ws| ws.work(d)))
                }
                TaskState::AwaitingApproval { attempt, .. } => (*attempt, dep.held.as_deref()),
                _ => return,
            };
            let Some(work) = work.filter(|_| dep.conflicts == 0) else {
                return;
            };
            spec.on.push((d, attempt));
            spec.all.push(TaskIndex(d));
            spec.base.push(Resolve {
                branch: work.branch.clone(),
                head: work.head.clone(),
            });
        }
        let slot = &mut self.slots[s as usize];
        slot.speculated = true;
        slot.speculation = Some(Box::new(spec));
        self.make_ready(s, now, out);
    }

    /// Whether discarded speculative runs leave room for another: under `speculation_budget`
    /// of the job's budget in dollars, or (without one) of its runs.
    fn speculation_left(&self) -> bool {
        let Some(share) = self.speculate else {
            return false;
        };
        let (runs, cost) = self.discarded;
        if runs == 0 {
            return true;
        }
        match self.spec.budget().0 {
            Some(max) => cost < share * max,
            None => {
                let all: u32 = self.slots.iter().map(|s| s.attempts).sum();
                f64::from(runs) < share * f64::from(all)
            }
        }
    }

    /// The base a speculative attempt being dispatched starts on, and the discarded work of
    /// the task's speculative run that it removes (`Workspace::speculative`, `discarded`).
    pub(super) fn speculative_base(
        &mut self,
        t: u32,
        attempt: Attempt,
    ) -> (Vec<Resolve>, Vec<Resolve>) {
        let slot = &mut self.slots[t as usize];
        let discarded = std::mem::take(&mut slot.discarded);
        match slot.speculation.as_deref_mut() {
            Some(s) => {
                s.attempt = Some(attempt);
                // Its dependencies all integrated meanwhile: it runs on the real tip.
                let base = if s.on.is_empty() {
                    Vec::new()
                } else {
                    s.base.clone()
                };
                (base, discarded)
            }
            None => (Vec::new(), discarded),
        }
    }

    /// A task's state changed from `old`: if it left the work its speculative dependents
    /// started on (reworked, rejected, failed, discarded), they are settled at the next turn.
    pub(super) fn note_left(&mut self, t: u32, old: &TaskState, new: &TaskState) {
        if self.speculate.is_none() {
            return;
        }
        let left = match old {
            TaskState::Integrating { attempt, .. }
            | TaskState::AwaitingApproval { attempt, .. } => *attempt,
            _ => return,
        };
        let kept = match new {
            TaskState::Succeeded { attempt, .. }
            | TaskState::Integrating { attempt, .. }
            | TaskState::AwaitingApproval { attempt, .. } => *attempt == left,
            _ => false,
        };
        if !kept {
            self.unsettled.push((t, left));
        }
    }

    /// `d` succeeded with `attempt`: a dependent that speculated on that work no longer waits
    /// for it, and is kept once it waits for none.
    pub(super) fn confirm(
        &mut self,
        s: u32,
        d: u32,
        attempt: Attempt,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(spec) = self.slots[s as usize].speculation.as_deref_mut() else {
            return;
        };
        let before = spec.on.len();
        spec.on.retain(|&(x, a)| !(x == d && a == attempt));
        if spec.on.len() == before || !spec.on.is_empty() {
            return;
        }
        match self.slots[s as usize].state {
            // Its attempt runs on what is now the real base: kept when it ends.
            _ if self.slots[s as usize].state.is_active() => {}
            TaskState::Integrating { .. } | TaskState::AwaitingApproval { .. } => {
                self.keep(s, now, out);
                if let Some(ws) = &mut self.ws {
                    ws.release(s);
                }
            }
            // Not run yet (or refused by a rate limit): it runs on the real tip.
            _ => self.slots[s as usize].speculation = None,
        }
    }

    fn keep(&mut self, s: u32, now: Millis, out: &mut Vec<Action>) {
        if let Some(spec) = self.slots[s as usize].speculation.take() {
            self.record(s, &spec, true, now, out);
        }
    }

    fn record(&self, s: u32, spec: &Speculation, kept: bool, now: Millis, out: &mut Vec<Action>) {
        let Some(attempt) = spec.attempt else { return };
        out.push(Action::Record(Change::Speculation {
            job: self.id,
            index: TaskIndex(s),
            attempt,
            on: spec.all.clone(),
            kept,
            cost_usd: spec.cost_usd,
            at: now,
        }));
    }

    /// A speculative attempt's result (applied, its slot released): whether it was discarded
    /// (recorded, the task waits for its dependencies again). A result kept goes on as any.
    pub(super) fn speculative_end(
        &mut self,
        t: u32,
        result: &TaskResult,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(spec) = self.slots[t as usize].speculation.as_deref_mut() else {
            return false;
        };
        spec.cost_usd = result.spend().0;
        if spec.on.is_empty() && !spec.doomed {
            // Its dependencies integrated as they were while it ran.
            self.keep(t, now, out);
            return false;
        }
        if !spec.doomed && result.outcome.is_success() {
            // It waits in the queue for its dependencies (`proceed` holds it).
            return false;
        }
        out.push(Action::Record(Change::Attempt(result.clone())));
        self.discard(t, now, out);
        true
    }

    /// Drops `t`'s speculative work: recorded with its cost, its attempt given back, and the
    /// task waits for its dependencies again (or runs, if they are all done by now).
    pub(super) fn discard(&mut self, t: u32, now: Millis, out: &mut Vec<Action>) {
        let Some(spec) = self.slots[t as usize].speculation.take() else {
            return;
        };
        self.discarded.0 += 1;
        self.discarded.1 += spec.cost_usd.unwrap_or(0.0);
        self.record(t, &spec, false, now, out);
        // Its worktree and branch (finished, failed or killed) go with the next attempt.
        if let Some(attempt) = spec.attempt {
            let name = &self.dag.names[t as usize];
            let branch = names::task_branch(&self.id, TaskIndex(t), name, attempt);
            let slot = &self.slots[t as usize];
            let work = self.ws.as_ref().and_then(|ws| ws.work(t));
            let head = work.or(slot.held.as_deref()).map(|w| w.head.clone());
            self.slots[t as usize].discarded.push(Resolve {
                branch,
                head: head.unwrap_or_default(),
            });
        }
        if let Some(ws) = &mut self.ws {
            ws.forget(t);
        }
        let slot = &mut self.slots[t as usize];
        slot.held = None;
        slot.tries = slot.tries.saturating_sub(1);
        slot.agent.drop_prompt();
        if slot.state.is_terminal() {
            return;
        }
        let waiting = slot.waiting;
        let state = match (&self.stop, waiting) {
            (Some(reason), _) => TaskState::Cancelled {
                finished: now,
                reason: reason.clone(),
            },
            _ if self.blocked_by_failure(t) => TaskState::Skipped {
                reason: self.skip_reason(t),
            },
            (None, 0) => {
                self.make_ready(t, now, out);
                return;
            }
            (None, _) => TaskState::Pending,
        };
        self.set_state(t, state, out);
    }

    /// Settles the dependents of tasks that left the work they speculated on: discarded, or
    /// (still running) killed and discarded when their result comes.
    pub(super) fn settle_speculation(&mut self, now: Millis, out: &mut Vec<Action>) {
        while let Some((d, attempt)) = self.unsettled.pop() {
            for i in 0..self.dag.dependents[d as usize].len() {
                let s = self.dag.dependents[d as usize][i];
                let on = self.slots[s as usize]
                    .speculation
                    .as_ref()
                    .is_some_and(|sp| sp.on.contains(&(d, attempt)));
                if on {
                    self.doom(s, now, out);
                }
            }
        }
    }

    fn doom(&mut self, s: u32, now: Millis, out: &mut Vec<Action>) {
        let state = self.slots[s as usize].state.clone();
        if let Some(attempt) = state.active_attempt() {
            if let Some(spec) = self.slots[s as usize].speculation.as_deref_mut()
                && !spec.doomed
            {
                spec.doomed = true;
                out.push(Action::Kill {
                    job: self.id,
                    index: TaskIndex(s),
                    attempt,
                });
            }
            return;
        }
        match state {
            // Not run yet, or waiting out a rate limit: nothing to record.
            TaskState::Ready { .. } | TaskState::RetryWait { .. } => {
                self.slots[s as usize].speculation = None;
                if self.slots[s as usize].waiting > 0 {
                    self.set_state(s, TaskState::Pending, out);
                }
            }
            _ => self.discard(s, now, out),
        }
    }
}
