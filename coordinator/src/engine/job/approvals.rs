//! Approvals inside a job (docs/design.md, "Quality gates: approvals"), still without I/O: an
//! attempt that passed its verify and stages waits in `awaiting_approval` for each approval
//! stage that applies to its task (holding no slot, pool or lock; its dependents wait), until a
//! person decides (`Event::Decide`) or its `timeout` decides for nobody. Approved, it goes on
//! (integration, or succeeded); rejected, it fails, or (`on_reject = "revise"`) the reason goes
//! back to its implementer as a new round that spends no attempt.

use ordo_proto::gates::{OnReject, OnTimeout, StageKind, StageRecord, Verdict};
use ordo_proto::{Attempt, Outcome, TaskIndex, TaskPhase};

use super::super::state::{Millis, TaskState};
use super::super::{Action, Change, Decision};
use super::Job;

/// Who a timeout's record names.
const BY_TIMEOUT: &str = "timeout";

impl Job {
    /// The first approval stage (its index in `[[stages]]`) at or after `from` that task `t`
    /// waits for, given the files its attempt changed (`None`: not known, a job without
    /// worktrees, so `when_files` cannot spare it).
    fn next_approval(&self, t: u32, from: usize, files: Option<&[String]>) -> Option<usize> {
        let task = self.task(t);
        self.spec
            .stages
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, s)| {
                s.kind() == StageKind::Approval
                    && s.selects(&task.labels, task.is_prompt())
                    && files.is_none_or(|f| s.wants(f))
            })
            .map(|(i, _)| i)
    }

    /// Attempt `attempt` of `t` passed (its worktree result, if any, in `held`): whether an
    /// approval stage from `from` on holds it now.
    pub(super) fn await_approval(
        &mut self,
        t: u32,
        attempt: Attempt,
        from: usize,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> bool {
        let files = self.slots[t as usize]
            .held
            .as_ref()
            .map(|w| w.files.clone());
        let Some(i) = self.next_approval(t, from, files.as_deref()) else {
            return false;
        };
        let deadline = self.spec.stages[i]
            .timeout
            .map(|d| now.saturating_add(d.0.as_millis() as Millis));
        let state = TaskState::AwaitingApproval {
            attempt,
            since: now,
            stage: i as u32,
            deadline,
        };
        self.set_state(t, state, out);
        true
    }

    /// Whether task `t` awaits a decision: the approval stage's name, else why not.
    pub(crate) fn awaiting(&self, t: u32) -> Result<String, String> {
        let name = self
            .dag
            .names
            .get(t as usize)
            .ok_or_else(|| format!("job {} has no task {t}", self.id))?;
        match &self.slots[t as usize].state {
            TaskState::AwaitingApproval { stage, .. } => {
                Ok(self.spec.stages[*stage as usize].name.clone())
            }
            other => Err(format!(
                "task {name} of job {} is not awaiting approval (it is {})",
                self.id,
                other.name()
            )),
        }
    }

    /// A person's decision: applied only while `t` awaits approval (never twice).
    pub(crate) fn decide(&mut self, t: u32, d: Decision, now: Millis, out: &mut Vec<Action>) {
        if self.awaiting(t).is_err() {
            return;
        }
        let verdict = match (d.approve, self.on_reject(t)) {
            (true, _) => Verdict::Pass,
            (false, OnReject::Revise) => Verdict::Changes,
            (false, OnReject::Fail) => Verdict::Fail,
        };
        self.settle(t, verdict, d.by, d.comment, String::new(), now, out);
    }

    /// An approval's deadline passed: `on_timeout` decides (a rejection fails the task).
    pub(super) fn approval_timed_out(&mut self, t: u32, now: Millis, out: &mut Vec<Action>) {
        let TaskState::AwaitingApproval {
            stage,
            since,
            deadline: Some(deadline),
            ..
        } = self.slots[t as usize].state
        else {
            return;
        };
        if deadline > now {
            return;
        }
        let s = &self.spec.stages[stage as usize];
        let after = s
            .timeout
            .map_or_else(|| format!("{}ms", now - since), |d| d.to_string());
        let (verdict, message) = match s.on_timeout.unwrap_or_default() {
            OnTimeout::Approve => (Verdict::Pass, format!("approved on timeout after {after}")),
            OnTimeout::Reject => (
                Verdict::Fail,
                format!("approval {} timed out after {after}", s.name),
            ),
        };
        self.settle(t, verdict, BY_TIMEOUT.into(), None, message, now, out);
    }

    fn on_reject(&self, t: u32) -> OnReject {
        match self.slots[t as usize].state {
            TaskState::AwaitingApproval { stage, .. } => self.spec.stages[stage as usize]
                .on_reject
                .unwrap_or_default(),
            _ => OnReject::Fail,
        }
    }

    /// Records the decision (`Change::Stage`) and carries it out: `Pass` goes on to the next
    /// approval stage or on with the task, `Changes` sends the task back to revise, `Fail`
    /// fails it for good (a person's rejection is not a flaky failure: no retry).
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        t: u32,
        verdict: Verdict,
        by: String,
        comment: Option<String>,
        message: String,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let TaskState::AwaitingApproval {
            attempt,
            since,
            stage,
            ..
        } = self.slots[t as usize].state
        else {
            return;
        };
        let slot = &self.slots[t as usize];
        let name = self.spec.stages[stage as usize].name.clone();
        let record = StageRecord {
            name: name.clone(),
            kind: Some(StageKind::Approval),
            round: slot.revisions + 1,
            verdict: Some(verdict),
            message: message.clone(),
            started_at_ms: now,
            duration_ms: now.saturating_sub(since),
            by: Some(by.clone()),
            comment: comment.clone(),
            commit: slot.held.as_ref().map(|w| w.head.clone()),
            ..StageRecord::default()
        };
        out.push(Action::Record(Change::Stage {
            job: self.id,
            index: TaskIndex(t),
            attempt,
            record,
        }));
        match verdict {
            Verdict::Pass => {
                if !self.await_approval(t, attempt, stage as usize + 1, now, out) {
                    self.proceed(t, attempt, now, out);
                }
            }
            Verdict::Changes => {
                let reason = comment.unwrap_or_default();
                let prompt = ordo_proto::gates::revise_prompt(&name, &[], Some(&reason));
                let slot = &mut self.slots[t as usize];
                slot.revisions += 1;
                slot.agent.revise(prompt);
                if let (Some(ws), Some(work)) = (&mut self.ws, slot.held.take()) {
                    ws.revise(t, &work);
                }
                self.again_unspent(t, now, out);
            }
            Verdict::Fail => {
                let reason = match (message.is_empty(), comment) {
                    (false, _) => message,
                    (true, Some(c)) => format!("rejected at approval {name} by {by}: {c}"),
                    (true, None) => format!("rejected at approval {name} by {by}"),
                };
                self.slots[t as usize].held = None;
                self.slots[t as usize].tries = self.spec.max_attempts(self.task(t));
                self.end_for_good(t, Outcome::Failed, reason, now, out);
                self.check_done(now, out);
            }
        }
    }

    /// A resumed job's task awaiting approval: its timer again, and (worktree jobs) the
    /// stored worktree result of its attempt. False when that result is not at hand (it runs
    /// again).
    pub(super) fn restore_awaiting(
        &mut self,
        t: u32,
        held: Option<&ordo_proto::TaskResult>,
    ) -> bool {
        let TaskState::AwaitingApproval {
            attempt, deadline, ..
        } = self.slots[t as usize].state
        else {
            return true;
        };
        let work = held.and_then(|r| r.workspace.clone());
        if self.ws.is_some() && work.is_none() {
            return false;
        }
        let slot = &mut self.slots[t as usize];
        slot.held = work;
        slot.applied = held.map(|r| (attempt, r.delivery));
        if let Some(at) = deadline {
            self.timers.insert((at, t));
        }
        self.awaiting += 1;
        true
    }

    /// Tasks awaiting approval (`TaskPhase::AwaitingApproval`), counted by `set_state`.
    pub(super) fn track_awaiting(&mut self, old: &TaskState, new: &TaskState, t: u32) {
        if old.phase() == TaskPhase::AwaitingApproval {
            self.awaiting -= 1;
            if let TaskState::AwaitingApproval {
                deadline: Some(at), ..
            } = old
            {
                self.timers.remove(&(*at, t));
            }
        }
        if let TaskState::AwaitingApproval { deadline, .. } = new {
            self.awaiting += 1;
            if let Some(at) = deadline {
                self.timers.insert((*at, t));
            }
        }
    }
}
