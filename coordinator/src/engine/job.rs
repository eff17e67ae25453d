//! One job inside the engine: its task states, the ready set, retries, failure propagation,
//! cancellation and, for Prompter flow-jump jobs, the state-machine cursor.
//!
//! Each task's data is one `Slot`; every state change goes through `set_state`, which checks
//! the transition (`state::legal`), keeps the terminal count and emits the `Change` that the
//! caller persists, so the store can never miss a transition. Agent runs (sessions, prompts,
//! spend, rate limits) are `agents`'s.

mod approvals;
mod speculation;

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use ordo_proto::{
    Attempt, Dag, Dispatch, ExecutionMode, Integrate, Integration, ItemOutcome, JobId, JobSpec,
    Jump, Outcome, TaskIndex, TaskResult, TaskSpec, Verify, WorkerId, names,
};

use super::agents::Agents;
use super::pool::{Fit, Need, Pools};
use super::slot::{Slot, Tasks};
use super::state::{JobState, Millis, TaskPhase, TaskState, legal};
use super::workspace::{Verdict, Workspaces, write_set_locks};
use super::{Action, Change, Ignore, JobOptions, MAX_BACKOFF, Saved};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// The DAG, bounded by `max_parallel`; sequential mode is this with one slot and
    /// declaration order.
    Dag { sequential: bool },
    /// Prompter state machine: one task at a time, following `on_success` / `on_failure`.
    Flow,
}

/// Ready-set order: higher priority, then longer remaining critical path, then declaration.
type ReadyKey = (Reverse<i32>, Reverse<u32>, u32);

#[derive(Debug)]
pub(crate) struct Job {
    id: JobId,
    spec: Arc<JobSpec>,
    dag: Arc<Dag>,
    kind: Kind,
    /// Per task, in declaration order.
    slots: Vec<Slot>,
    ready: BTreeSet<ReadyKey>,
    timers: BTreeSet<(Millis, u32)>,
    /// Distinct queues of this job, to stop scanning once all are full.
    queues: usize,
    active: u32,
    exclusive_active: bool,
    max_parallel: u32,
    pub(crate) state: JobState,
    terminal: usize,
    /// First reason the job failed.
    failure: Option<String>,
    /// Set when no further task may start (cancel, fail-fast, flow stop, iteration cap).
    stop: Option<String>,
    cancelled: bool,
    iterations: u32,
    rng: u64,
    /// Jobs with `workspace = "worktree"`: integration.
    ws: Option<Workspaces>,
    /// The job's agent runs (docs/design.md, agents); each task's are in its slot.
    agents: Agents,
    /// Tasks awaiting approval (`approvals`).
    awaiting: u32,
    /// `integration.speculate = "verified"`: the share of the budget (or of the runs)
    /// discarded speculative runs may take (`speculation`).
    speculate: Option<f64>,
    /// Tasks that left the work their speculative dependents started on, with that attempt:
    /// those dependents are settled at the next turn.
    unsettled: Vec<(u32, Attempt)>,
    /// Speculative runs discarded, and what they spent.
    discarded: (u32, f64),
}

impl Job {
    pub(crate) fn new(
        id: JobId,
        spec: Arc<JobSpec>,
        dag: Arc<Dag>,
        options: &JobOptions,
        saved: Option<Saved>,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Job {
        let n = spec.tasks.len();
        let kind = if spec.uses_flow_jumps() {
            Kind::Flow
        } else {
            Kind::Dag {
                sequential: spec.mode(options.default_mode) == ExecutionMode::Sequential,
            }
        };
        let max_parallel = match kind {
            Kind::Flow | Kind::Dag { sequential: true } => 1,
            Kind::Dag { sequential: false } => options
                .max_parallel
                .or(spec.settings.max_parallel_tasks)
                .unwrap_or(u32::MAX)
                .max(1),
        };
        let queues = spec
            .tasks
            .iter()
            .map(|t| spec.queue(t))
            .collect::<HashSet<_>>()
            .len();
        let mut job = Job {
            id,
            kind,
            slots: dag
                .deps
                .iter()
                .zip(write_set_locks(&id, &spec))
                .map(|(d, locks)| Slot::new(d.len() as u32, locks))
                .collect(),
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            queues,
            active: 0,
            exclusive_active: false,
            max_parallel,
            state: JobState::Pending,
            terminal: 0,
            failure: None,
            stop: None,
            cancelled: false,
            iterations: 0,
            rng: options.seed ^ u64::from_le_bytes(id.as_bytes()[8..].try_into().unwrap()) | 1,
            ws: Workspaces::new(&id, &spec),
            agents: Agents::default(),
            awaiting: 0,
            speculate: spec.speculation(),
            unsettled: Vec::new(),
            discarded: (0, 0.0),
            spec,
            dag,
        };
        match saved {
            Some(saved) if saved.tasks.len() == n => {
                for r in &saved.results {
                    job.replay_agent_run(r);
                }
                for r in &saved.ignored {
                    job.spend_ignored(Ignore::Stale, r);
                }
                job.restore(&saved, now, out)
            }
            _ => job.start(now, out),
        }
        job
    }

    fn start(&mut self, now: Millis, out: &mut Vec<Action>) {
        match self.kind {
            Kind::Flow => {
                self.iterations = 1;
                self.make_ready(0, now, out);
            }
            Kind::Dag { .. } => {
                for t in 0..self.slots.len() as u32 {
                    if self.slots[t as usize].waiting == 0 {
                        self.make_ready(t, now, out);
                    }
                }
            }
        }
    }

    /// Resumes from stored records. Attempts in flight stay in flight (a worker may still
    /// report them; the local runner requeues them); an integrating task's stored worktree
    /// result goes back in the integration queue (an integration already made merges as
    /// nothing new); the rest is recomputed from the DAG.
    fn restore(&mut self, saved: &Saved, now: Millis, out: &mut Vec<Action>) {
        let results = &saved.results;
        let mut integrating = Vec::new();
        // Speculation is not kept across a restart: a task that started before its
        // dependencies were done waits for them again (an attempt of it still running is
        // stale now; its spend still counts).
        let done: Vec<bool> = saved
            .tasks
            .iter()
            .enumerate()
            .map(|(d, s)| match s.state {
                TaskState::Succeeded { .. } => true,
                TaskState::Failed { .. } | TaskState::TimedOut { .. } => {
                    self.tolerates_failure(d as u32)
                }
                _ => false,
            })
            .collect();
        let mut waits_again = Vec::new();
        for (t, mut s) in saved.tasks.iter().cloned().enumerate() {
            if self.speculate.is_some()
                && !s.state.is_terminal()
                && s.state != TaskState::Pending
                && self.dag.deps[t].iter().any(|&d| !done[d as usize])
            {
                s.state = TaskState::Pending;
                waits_again.push(TaskIndex(t as u32));
            }
            if let TaskState::Integrating { attempt, since } = s.state {
                let found = results
                    .iter()
                    .find(|r| r.index.get() == t && r.attempt == attempt);
                match (
                    found.and_then(|r| Some((r, r.workspace.clone()?))),
                    &self.ws,
                ) {
                    (Some((r, w)), Some(_)) => {
                        self.slots[t].applied = Some((attempt, r.delivery));
                        integrating.push((since, t as u32, attempt, w));
                        self.state = JobState::Running;
                    }
                    // Its worktree result is not at hand: the task runs again.
                    _ => s.state = TaskState::Pending,
                }
            }
            self.slots[t].attempts = s.attempts;
            self.slots[t].conflicts = s.conflicts;
            // A task started over (`ordo retry`) gets its whole retry budget again; conflicts
            // spent none.
            self.slots[t].tries = if s.state == TaskState::Pending {
                0
            } else {
                s.spent()
            };
            if s.state.is_terminal() {
                self.terminal += 1;
            }
            // The applied attempt is known; its delivery is not (0 orders before any).
            if let TaskState::Succeeded { attempt, .. }
            | TaskState::Failed { attempt, .. }
            | TaskState::TimedOut { attempt, .. }
            | TaskState::RetryWait { attempt, .. } = s.state
            {
                self.slots[t].applied = Some((attempt, 0));
            }
            if s.state.is_active() {
                self.active += 1;
                self.state = JobState::Running;
                // The attempt in flight took the verify loop's prompt when it was dispatched.
                self.slots[t].agent.drop_prompt();
            }
            if let TaskState::RetryWait { until, .. } = s.state {
                self.timers.insert((until, t as u32));
            }
            // Loaded, not a transition: the stored record is the state it was in.
            self.slots[t].state = s.state;
            if let TaskState::AwaitingApproval { attempt, .. } = self.slots[t].state {
                let held = results
                    .iter()
                    .find(|r| r.index.get() == t && r.attempt == attempt);
                if self.restore_awaiting(t as u32, held) {
                    self.state = JobState::Running;
                } else {
                    // Its worktree result is not at hand: the task runs again.
                    self.slots[t].state = TaskState::Pending;
                }
            }
        }
        for index in waits_again {
            let slot = &self.slots[index.get()];
            out.push(Action::Record(Change::Task {
                job: self.id,
                index,
                attempts: slot.attempts,
                state: TaskState::Pending,
                conflicts: slot.conflicts,
            }));
        }
        // Queued again in the order they finished, as before the restart.
        integrating.sort_by_key(|(since, t, _, _)| (*since, *t));
        if let Some(ws) = &mut self.ws {
            for (_, t, attempt, w) in integrating {
                let tried = saved.integrations.get(&t).copied().unwrap_or(0);
                // A bisected task's requests were carried out while it stayed integrating:
                // the ones made now take a step of this start's own, so JetStream's
                // de-duplication takes none of them for one of those (it would never run).
                let step = match saved.bisected.contains(&t) {
                    true => resume_step(now),
                    false => 0,
                };
                ws.resume(t, attempt, tried, w, step);
            }
        }
        if self.terminal > 0 {
            self.state = JobState::Running;
        }
        for t in 0..self.slots.len() {
            match &self.slots[t].state {
                TaskState::Succeeded { .. } => {}
                TaskState::Failed { .. } | TaskState::TimedOut { .. }
                    if !self.tolerates_failure(t as u32) =>
                {
                    self.failure
                        .get_or_insert_with(|| format!("task '{}' failed", self.dag.names[t]));
                }
                TaskState::Cancelled { reason, .. } => {
                    self.cancelled = true;
                    self.stop.get_or_insert_with(|| reason.clone());
                }
                _ => {}
            }
        }
        for t in 0..self.slots.len() as u32 {
            let unsatisfied = self.dag.deps[t as usize]
                .iter()
                .filter(|&&d| !self.satisfied(d))
                .count() as u32;
            self.slots[t as usize].waiting = unsatisfied;
        }
        match self.kind {
            Kind::Flow => {
                let busy = self.slots.iter().any(|s| {
                    s.state.is_active()
                        || matches!(
                            s.state,
                            TaskState::Ready { .. } | TaskState::RetryWait { .. }
                        )
                });
                if !busy
                    && let Some(t) = self
                        .slots
                        .iter()
                        .position(|s| matches!(s.state, TaskState::Pending))
                {
                    self.make_ready(t as u32, now, out);
                }
                for t in 0..self.slots.len() as u32 {
                    if matches!(self.slots[t as usize].state, TaskState::Ready { .. }) {
                        self.ready.insert(self.key(t));
                    }
                }
            }
            Kind::Dag { .. } => {
                for t in 0..self.slots.len() as u32 {
                    match self.slots[t as usize].state {
                        TaskState::Pending if self.blocked_by_failure(t) => {
                            let reason = self.skip_reason(t);
                            self.set_state(t, TaskState::Skipped { reason }, out);
                        }
                        TaskState::Pending if self.slots[t as usize].waiting == 0 => {
                            self.make_ready(t, now, out)
                        }
                        TaskState::Ready { .. } => {
                            self.ready.insert(self.key(t));
                        }
                        _ => {}
                    }
                }
            }
        }
        self.check_done(now, out);
    }

    /// The spec the job runs (read by the API's views).
    pub(crate) fn spec(&self) -> &JobSpec {
        &self.spec
    }

    pub(crate) fn finished(&self) -> bool {
        self.state.is_terminal()
    }

    /// The current state of each task.
    pub(crate) fn tasks(&self) -> Tasks<'_> {
        Tasks::new(&self.slots)
    }

    /// The executions whose agent spend was counted, for late results once the job ended.
    pub(crate) fn take_charged(&mut self) -> HashSet<super::Execution> {
        self.agents.take_charged()
    }

    /// What fencing needs to remember of each task once the job has ended.
    pub(crate) fn fences(&self) -> Vec<super::Fence> {
        self.slots
            .iter()
            .map(|s| super::Fence {
                phase: s.state.phase(),
                attempts: s.attempts,
                applied: s.applied,
            })
            .collect()
    }

    pub(crate) fn next_wakeup(&self) -> Option<Millis> {
        self.timers.first().map(|&(at, _)| at)
    }

    fn task(&self, t: u32) -> &TaskSpec {
        &self.spec.tasks[t as usize]
    }

    /// The attempt of task `t` in flight, if any (and if the task exists).
    fn active_attempt(&self, t: u32) -> Option<Attempt> {
        self.slots.get(t as usize)?.state.active_attempt()
    }

    fn key(&self, t: u32) -> ReadyKey {
        match self.kind {
            Kind::Dag { sequential: false } => (
                Reverse(self.task(t).priority),
                Reverse(self.dag.rank[t as usize]),
                t,
            ),
            Kind::Dag { sequential: true } | Kind::Flow => (Reverse(0), Reverse(0), t),
        }
    }

    /// Sequential jobs and flow jobs run one task at a time.
    fn one_at_a_time(&self) -> bool {
        matches!(self.kind, Kind::Dag { sequential: true } | Kind::Flow)
    }

    /// A task of the job has started and not ended: it runs, waits to retry, or waits for
    /// (or is in) integration.
    fn unsettled(&self) -> bool {
        self.active > 0
            || self.awaiting > 0
            || !self.timers.is_empty()
            || self.ws.as_ref().is_some_and(|w| !w.idle())
    }

    fn tolerates_failure(&self, t: u32) -> bool {
        let task = self.task(t);
        task.allow_failure || (self.kind != Kind::Flow && task.on_failure == Some(Jump::Next))
    }

    /// A dependency is satisfied when it succeeded or failed with permission.
    fn satisfied(&self, d: u32) -> bool {
        match self.slots[d as usize].state {
            TaskState::Succeeded { .. } => true,
            TaskState::Failed { .. } | TaskState::TimedOut { .. } => self.tolerates_failure(d),
            _ => false,
        }
    }

    fn blocked_by_failure(&self, t: u32) -> bool {
        self.dag.deps[t as usize]
            .iter()
            .any(|&d| self.slots[d as usize].state.is_terminal() && !self.satisfied(d))
    }

    fn skip_reason(&self, t: u32) -> String {
        let dep = self.dag.deps[t as usize]
            .iter()
            .find(|&&d| self.slots[d as usize].state.is_terminal() && !self.satisfied(d))
            .map(|&d| self.dag.names[d as usize].to_string())
            .unwrap_or_default();
        format!("dependency '{dep}' did not succeed")
    }

    /// The one place task states change (`state::legal` says which changes are).
    fn set_state(&mut self, t: u32, state: TaskState, out: &mut Vec<Action>) {
        let key = self.key(t);
        let old = std::mem::replace(&mut self.slots[t as usize].state, state.clone());
        debug_assert!(
            legal(&old, &state) && (!old.is_terminal() || self.kind == Kind::Flow),
            "job {} task {t}: {} -> {} is not a legal transition",
            self.id,
            old.name(),
            state.name()
        );
        match (old.is_terminal(), state.is_terminal()) {
            (false, true) => {
                self.terminal += 1;
                if let Some(ws) = &mut self.ws {
                    ws.settled(t);
                }
            }
            (true, false) => self.terminal -= 1,
            _ => {}
        }
        match old {
            TaskState::Ready { .. } => {
                self.ready.remove(&key);
            }
            TaskState::RetryWait { until, .. } => {
                self.timers.remove(&(until, t));
            }
            _ => {}
        }
        if let TaskState::RetryWait { until, .. } = state {
            self.timers.insert((until, t));
        }
        self.track_awaiting(&old, &state, t);
        self.note_left(t, &old, &state);
        let slot = &self.slots[t as usize];
        out.push(Action::Record(Change::Task {
            job: self.id,
            index: TaskIndex(t),
            attempts: slot.attempts,
            state,
            conflicts: slot.conflicts,
        }));
    }

    fn set_job_state(
        &mut self,
        state: JobState,
        now: Millis,
        reason: Option<String>,
        out: &mut Vec<Action>,
    ) {
        if self.state != state {
            self.state = state;
            out.push(Action::Record(Change::Job {
                job: self.id,
                state,
                at: now,
                reason,
            }));
        }
    }

    fn make_ready(&mut self, t: u32, now: Millis, out: &mut Vec<Action>) {
        self.set_state(t, TaskState::Ready { since: now }, out);
        self.ready.insert(self.key(t));
    }

    pub(crate) fn fire_timers(&mut self, now: Millis, out: &mut Vec<Action>) {
        while let Some(&(at, t)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match self.slots[t as usize].state {
                TaskState::RetryWait { .. } => self.make_ready(t, now, out),
                TaskState::AwaitingApproval { .. } => self.approval_timed_out(t, now, out),
                _ => {}
            }
        }
    }

    pub(crate) fn schedule(&mut self, now: Millis, pools: &mut Pools, out: &mut Vec<Action>) {
        self.settle_speculation(now, out);
        if self.stop.is_some() || self.state.is_terminal() {
            return;
        }
        if self.one_at_a_time() && self.unsettled() {
            // Sequential is strict: the next task waits until the one before has ended, its
            // retry waits and its integration included.
            return;
        }
        let mut full_queues: HashSet<String> = HashSet::new();
        let mut cursor: Option<ReadyKey> = None;
        loop {
            if self.active >= self.max_parallel || self.exclusive_active {
                break;
            }
            let next = match cursor {
                None => self.ready.first().copied(),
                Some(k) => self
                    .ready
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                    .next()
                    .copied(),
            };
            let Some(key) = next else { break };
            cursor = Some(key);
            let t = key.2;
            let task = self.task(t);
            // A barrier: nothing else of this job starts until the exclusive task has run, whether
            // it waits for the job's tasks in flight or for a slot, resources or a lock.
            let barrier = task.exclusive;
            if barrier && self.active > 0 {
                break;
            }
            let need = need_of(&self.spec, task);
            if full_queues.contains(&need.queue) {
                if barrier {
                    break;
                }
                continue;
            }
            if !pools.has_slot(&need.queue) {
                full_queues.insert(need.queue.clone());
                if barrier || full_queues.len() >= self.queues {
                    break;
                }
                continue;
            }
            if task.is_prompt()
                && let Some(reason) = self.agents.exhausted().map(String::from)
            {
                // No further agent attempt starts once the budget is spent.
                self.failure.get_or_insert_with(|| reason.clone());
                self.set_state(t, TaskState::Skipped { reason }, out);
                self.skip_dependents(t, out);
                cursor = None;
                continue;
            }
            match pools.fits(&need, &self.slots[t as usize].locks) {
                Fit::Yes => self.dispatch(t, need, now, pools, out),
                Fit::Wait if barrier => break,
                Fit::Wait => continue,
                Fit::Never(why) => {
                    let max = self.spec.max_attempts(self.task(t));
                    let slot = &mut self.slots[t as usize];
                    slot.attempts += 1;
                    slot.tries = max;
                    let reason = format!("cannot run: {why}");
                    self.end_for_good(t, Outcome::Failed, reason, now, out);
                    // Its end may have made ready a dependent that sorts before it (allowed
                    // failure, higher priority): scan again from the top, or that dependent
                    // waits for an unrelated event.
                    cursor = None;
                }
            }
        }
        self.check_done(now, out);
    }

    fn dispatch(
        &mut self,
        t: u32,
        need: Need,
        now: Millis,
        pools: &mut Pools,
        out: &mut Vec<Action>,
    ) {
        let spec = Arc::clone(&self.spec);
        let task = &spec.tasks[t as usize];
        if let Some(ws) = &mut self.ws {
            self.slots[t as usize].agent.keep_resolving(t, ws);
        }
        let previous = match self.dag.deps[t as usize].last() {
            Some(&d) => Some(d),
            None => t.checked_sub(1),
        };
        let session = self.slots[t as usize]
            .agent
            .session_to_resume(task, previous.map(|p| &self.slots[p as usize].agent));
        let prompt = self.slots[t as usize].agent.take_prompt();
        // The attempt budget counts this attempt: the escalation ladder climbs with it, and
        // with every run again after the first whose change did not integrate (a repeated
        // conflict, a revision an approval asked for).
        let slot = &self.slots[t as usize];
        let rung = slot.tries + 1 + slot.conflicts.saturating_sub(1);
        let model = spec.model(task, rung);
        let Some(program) = spec.program_with(task, session.as_deref(), prompt.as_deref(), model)
        else {
            self.end_for_good(t, Outcome::Failed, "nothing to run".into(), now, out);
            return;
        };
        pools.take(&need, &self.slots[t as usize].locks);
        let need = need.clone();
        if task.exclusive {
            self.exclusive_active = true;
        }
        self.active += 1;
        let slot = &mut self.slots[t as usize];
        slot.attempts += 1;
        slot.tries += 1;
        slot.delivery = 0;
        let attempt = Attempt(slot.attempts);
        let mut dispatch = Dispatch {
            job: self.id,
            task: task.name.clone(),
            index: TaskIndex(t),
            attempt,
            program,
            verify: task.verify_command.as_ref().map(|c| Verify {
                command: c.clone(),
                success_code: task.verify_success_code,
            }),
            env: self.spec.env(task),
            working_dir: self.spec.working_dir(task),
            timeout: self.spec.timeout(task),
            verify_delay: if task.is_prompt() {
                self.spec.settings.check_interval.map(|d| d.0)
            } else {
                None
            },
            queue: need.queue,
            cpus: need.cpus,
            memory_mb: need.memory_mb,
            workspace: None,
            agent: self.spec.agent_of(task),
            model: model.map(String::from),
            stages: Vec::new(),
            implementer: None,
            brief: None,
        };
        dispatch.set_stages(&self.spec, task, rung);
        if let Some(ws) = &self.ws {
            ws.decorate(&mut dispatch, task.is_prompt(), task.title());
        }
        let (base, discarded) = self.speculative_base(t, attempt);
        if let Some(w) = dispatch.workspace.as_mut() {
            w.speculative = base;
            w.discarded = discarded;
        }
        self.set_job_state(JobState::Running, now, None, out);
        self.set_state(t, TaskState::Dispatched { attempt, at: now }, out);
        out.push(Action::Dispatch(dispatch));
    }

    /// An execution began. A later delivery of the attempt already running takes it over (the
    /// first worker went silent for a whole ack wait); the older delivery's result is stale.
    pub(crate) fn started(
        &mut self,
        t: u32,
        attempt: Attempt,
        worker: WorkerId,
        delivery: u32,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(slot) = self.slots.get_mut(t as usize) else {
            return;
        };
        let take = match &slot.state {
            TaskState::Dispatched { attempt: a, .. } => *a == attempt,
            TaskState::Running { attempt: a, .. } => *a == attempt && delivery > slot.delivery,
            _ => false,
        };
        if take {
            slot.delivery = delivery;
            let state = TaskState::Running {
                attempt,
                worker,
                started: now,
            };
            self.set_state(t, state, out);
        }
    }

    /// Why a result that will not be applied changed nothing.
    fn ignored(&self, result: &TaskResult) -> (Ignore, String) {
        let t = result.index.get();
        let (a, d) = (result.attempt, result.delivery);
        let Some(slot) = self.slots.get(t) else {
            return (Ignore::Unknown, format!("task index {t} does not exist"));
        };
        let state = &slot.state;
        if self.dag.names[t] != result.task {
            return (
                Ignore::Unknown,
                format!("task {t} is not named {}", result.task),
            );
        }
        if result.abandoned {
            return (
                Ignore::Stale,
                format!("delivery {d} of attempt {a} abandoned: its worker lost the lease"),
            );
        }
        if let Some(current) = state.active_attempt() {
            return match a.cmp(&current) {
                std::cmp::Ordering::Less => (
                    Ignore::Stale,
                    format!("stale attempt {a} (current is {current})"),
                ),
                std::cmp::Ordering::Equal => (
                    Ignore::Stale,
                    format!(
                        "stale delivery {d} of attempt {a} (delivery {} took over)",
                        slot.delivery
                    ),
                ),
                std::cmp::Ordering::Greater => {
                    (Ignore::Unknown, format!("attempt {a} was never dispatched"))
                }
            };
        }
        settled(result, state.phase(), slot.applied, slot.attempts)
    }

    /// Releases what an attempt held.
    fn release(&mut self, t: u32, pools: &mut Pools) {
        let spec = Arc::clone(&self.spec);
        let task = &spec.tasks[t as usize];
        let need = need_of(&spec, task);
        pools.release(&need, &self.slots[t as usize].locks);
        if task.exclusive {
            self.exclusive_active = false;
        }
        self.active -= 1;
    }

    pub(crate) fn finished_attempt(
        &mut self,
        result: TaskResult,
        now: Millis,
        pools: &mut Pools,
        out: &mut Vec<Action>,
    ) {
        let t = result.index.0;
        let fresh = self.slots.get(t as usize).is_some_and(|s| {
            s.state.active_attempt() == Some(result.attempt)
                && (result.delivery == 0 || result.delivery >= s.delivery)
        }) && self.dag.names[t as usize] == result.task
            && !result.abandoned;
        if !fresh {
            let (kind, why) = self.ignored(&result);
            let charged = self.spend_ignored(kind, &result);
            out.push(Action::Record(Change::Ignored {
                result,
                why,
                kind,
                charged: Some(charged),
            }));
            return;
        }
        let slot = &mut self.slots[t as usize];
        let began = match slot.state {
            TaskState::Dispatched { at, .. } => at,
            TaskState::Running { started, .. } => started,
            _ => now,
        };
        slot.applied = Some((result.attempt, result.delivery));
        slot.delivery = 0;
        self.release(t, pools);
        if let Some(run) = result.agent.as_deref() {
            let refused = !result.outcome.is_success() && run.rate_limited.is_some();
            let need = need_of(&self.spec, self.task(t));
            if let Some(change) = pools.ran(&need, began, refused, now) {
                out.push(Action::Record(change));
            }
            let agent = &mut self.slots[t as usize].agent;
            self.agents.note_run(agent, &self.spec, &result, run);
            if refused
                && let Some(limit) = &run.rate_limited
                && self.rate_limited(t, limit.retry_after_ms, &result, now, out)
            {
                return;
            }
        } else if result.ran_agents() {
            // A task without an agent of its own still pays for its stages' reviewers.
            let agent = &mut self.slots[t as usize].agent;
            self.agents.charge(agent, &self.spec, &result);
        }
        self.slots[t as usize].agent.not_rate_limited();
        if self.speculative_end(t, &result, now, out) {
            return;
        }
        if self.left_markers(t, &result, now, out) {
            return;
        }
        if let Some(ws) = &mut self.ws {
            ws.revised(t);
            if !result.outcome.is_success() {
                // A resolve round that failed otherwise: its next attempt is a plain one, from
                // the tip.
                ws.no_resolve(t);
            }
        }
        if result.outcome == Outcome::VerifyFailed {
            let task = &self.spec.tasks[t as usize];
            self.slots[t as usize].agent.verify_failed(task, &result);
        }
        let outcome = result.outcome;
        let message = result.message.clone();
        let attempt = result.attempt;
        self.slots[t as usize].held = result.workspace.clone();
        out.push(Action::Record(Change::Attempt(result)));
        if outcome.is_success() {
            // Its approvals first (`approvals`), then integration or success.
            if self.cancelled || !self.await_approval(t, attempt, 0, now, out) {
                self.proceed(t, attempt, now, out);
            } else {
                self.speculate_after(t, now, out);
            }
            return;
        }
        self.slots[t as usize].held = None;
        self.end_attempt(t, outcome, message, now, out);
    }

    /// Attempt `attempt` of `t` passed its verify, stages and approvals: in a worktree job its
    /// change (`held`) waits for integration, else it succeeded.
    fn proceed(&mut self, t: u32, attempt: Attempt, now: Millis, out: &mut Vec<Action>) {
        let held = self.slots[t as usize].held.take();
        let speculative = self.slots[t as usize].speculation.is_some();
        let Some(ws) = &mut self.ws else {
            self.end_attempt(t, Outcome::Succeeded, String::new(), now, out);
            return;
        };
        // Succeeded in its worktree: it is done once its change is integrated.
        let message = match held {
            _ if self.cancelled => "cancelled before it was integrated".to_string(),
            Some(w) => {
                ws.finished(t, w);
                if speculative {
                    ws.hold(t);
                }
                let state = TaskState::Integrating {
                    attempt,
                    since: now,
                };
                self.set_state(t, state, out);
                self.speculate_after(t, now, out);
                return;
            }
            None => "the executor reported no worktree for this attempt".to_string(),
        };
        self.end_attempt(t, Outcome::Failed, message, now, out);
    }

    /// After a conflict: a resolve round or a run from the new tip (`AgentSlot::rework`).
    fn plan_rework(&mut self, t: u32) {
        let prompt = self.task(t).is_prompt();
        if let Some(ws) = &mut self.ws {
            self.slots[t as usize].agent.rework(t, prompt, ws);
        }
    }

    /// The task's change was not integrated (a conflict, or a resolve round that left markers):
    /// it runs again without spending an attempt, unless its job is stopping.
    fn again_unspent(&mut self, t: u32, now: Millis, out: &mut Vec<Action>) {
        let slot = &mut self.slots[t as usize];
        slot.tries = slot.tries.saturating_sub(1);
        slot.conflicts += 1;
        match self.stop.clone() {
            Some(reason) => {
                let state = TaskState::Cancelled {
                    finished: now,
                    reason,
                };
                self.set_state(t, state, out);
            }
            None => self.make_ready(t, now, out),
        }
    }

    /// A resolve round that left conflict markers: the task runs again from the tip (no
    /// attempt spent), or fails once `max_integration_attempts` such rounds did not mend it.
    /// Whether the result was handled so.
    fn left_markers(
        &mut self,
        t: u32,
        result: &TaskResult,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(unresolved) = result
            .workspace
            .as_ref()
            .map(|w| &w.unresolved)
            .filter(|u| !u.is_empty())
        else {
            return false;
        };
        let Some(ws) = &mut self.ws else { return false };
        if ws.resolving(t).is_none() {
            return false;
        }
        let go_on = ws.unresolved(t);
        self.slots[t as usize].agent.drop_prompt();
        out.push(Action::Record(Change::Attempt(result.clone())));
        if !go_on {
            let reason = format!(
                "conflict markers left in {} after resolving (max_integration_attempts reached)",
                unresolved.join(", ")
            );
            self.slots[t as usize].tries = self.spec.max_attempts(self.task(t));
            self.end_for_good(t, Outcome::Failed, reason, now, out);
            return true;
        }
        self.again_unspent(t, now, out);
        true
    }

    /// The next integration of this job to start, if its repository is free (`busy`).
    pub(crate) fn next_integration(&mut self) -> Option<Integrate> {
        let slots = &self.slots;
        self.ws
            .as_mut()?
            .next(self.id, &self.spec, |t| Attempt(slots[t as usize].attempts))
    }

    /// A stacked integration to start beside the one in flight (`Workspaces::next_stacked`).
    pub(crate) fn next_stacked(&mut self) -> Option<Integrate> {
        let slots = &self.slots;
        self.ws
            .as_mut()?
            .next_stacked(self.id, &self.spec, |t| Attempt(slots[t as usize].attempts))
    }

    /// The locks task `name` takes (tests).
    #[cfg(test)]
    pub(crate) fn locks_of(&self, name: &str) -> &[String] {
        let t = self
            .dag
            .names
            .iter()
            .position(|n| n.as_str() == name)
            .unwrap();
        &self.slots[t].locks
    }

    /// The repository this job integrates into, if it uses worktrees.
    pub(crate) fn repository(&self) -> Option<&str> {
        self.ws.as_ref().map(Workspaces::repository)
    }

    /// An integration ended: the outcome of its first task and (a batch) of the others. A
    /// batch whose verify failed with more than one task merged is bisected (`Workspaces::
    /// bisect`); every other outcome is its task's, as for one task alone. A stacked
    /// integration on top of it stands if it landed, and is settled once both are known.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn integrated(
        &mut self,
        t: u32,
        attempt: Attempt,
        step: u32,
        outcome: Integration,
        batch: Vec<ItemOutcome>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(ws) = &mut self.ws else { return };
        if !ws.batches() {
            self.integrated_one(t, attempt, outcome, now, out);
            return;
        }
        let run: Vec<(u32, Attempt)> = ws.in_flight().to_vec();
        if run.first() == Some(&(t, attempt)) && step != ws.step(t) {
            // An earlier step's integration of the same attempt, carried out again.
            return;
        }
        if run.first() != Some(&(t, attempt)) {
            // Not the integration in flight (a request made before a restart): task by task.
            self.integrated_one(t, attempt, outcome, now, out);
            for b in batch {
                self.integrated_one(b.index.0, b.attempt, b.outcome, now, out);
            }
            return;
        }
        let outcomes = run_outcomes(&run, outcome, batch);
        let landed = outcomes.iter().all(|(_, _, o)| {
            matches!(
                o,
                Integration::Merged { .. }
                    | Integration::Unchanged { .. }
                    | Integration::Conflict { .. }
            )
        });
        let stacked = ws.ahead_ended(landed);
        self.run_ended(&run, outcomes, self.verified(t), now, out);
        match stacked {
            Some(s) if s.void => self.record_void(&s.outcomes, now, out),
            Some(s) => self.settle_stacked(s.outcomes, now, out),
            None => {}
        }
    }

    /// A stacked integration made void: its verify, if it ran, counted (`Change::Batch`).
    fn record_void(
        &mut self,
        outcomes: &[(u32, Attempt, Integration)],
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let ran = outcomes.iter().any(|(_, _, o)| {
            matches!(
                o,
                Integration::Verified { .. } | Integration::VerifyFailed { .. }
            )
        });
        out.push(Action::Record(Change::Batch {
            job: self.id,
            tasks: outcomes.iter().map(|&(x, _, _)| TaskIndex(x)).collect(),
            verified: ran,
            bisected: false,
            voided: true,
            at: now,
        }));
    }

    /// A stacked integration ended (`Workspaces::next_stacked`): settled now if the
    /// integration ahead landed, kept until it ends otherwise; a late outcome of one voided
    /// is dropped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stacked_integrated(
        &mut self,
        t: u32,
        attempt: Attempt,
        step: u32,
        outcome: Integration,
        batch: Vec<ItemOutcome>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(ws) = &mut self.ws else { return };
        if !ws.stacked_accepts(t, attempt, step) {
            if ws.was_voided(t, attempt, step) {
                let outcomes: Vec<(u32, Attempt, Integration)> =
                    std::iter::once((t, attempt, outcome))
                        .chain(batch.into_iter().map(|b| (b.index.0, b.attempt, b.outcome)))
                        .collect();
                self.record_void(&outcomes, now, out);
            }
            return;
        }
        let outcomes = run_outcomes(ws.stacked_tasks(), outcome, batch);
        if let Some(outcomes) = ws.stacked_came(outcomes) {
            self.settle_stacked(outcomes, now, out);
        }
    }

    /// A stacked integration's outcomes, on top of the integration that landed before it: as
    /// if its tasks had been integrated now, except that those verified are not integrated
    /// yet: they land next, with the tree verified (that landing's record counts the verify
    /// the stacked integration ran). Failed as a whole, it tells nothing: its tasks are
    /// integrated anew.
    fn settle_stacked(
        &mut self,
        outcomes: Vec<(u32, Attempt, Integration)>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(ws) = &mut self.ws else { return };
        let tasks: Vec<(u32, Attempt)> = outcomes.iter().map(|&(x, a, _)| (x, a)).collect();
        if outcomes
            .iter()
            .all(|(_, _, o)| matches!(o, Integration::Failed { .. }))
        {
            ws.stacked_void(&tasks);
            return;
        }
        let tree = outcomes.iter().find_map(|(_, _, o)| match o {
            Integration::Verified { tree } => Some(tree.clone()),
            _ => None,
        });
        // With the verify passed, every task that did not conflict lands with the tree.
        let landing: Vec<(u32, Attempt)> = outcomes
            .iter()
            .filter(|(_, _, o)| tree.is_some() && !matches!(o, Integration::Conflict { .. }))
            .map(|&(x, a, _)| (x, a))
            .collect();
        let passed = tree.is_some();
        ws.settle_stacked(&tasks, &landing, tree);
        if !passed {
            // A verify ran unless every task was left out (conflicts) or there already.
            let verified = outcomes
                .iter()
                .any(|(_, _, o)| matches!(o, Integration::VerifyFailed { .. }));
            self.run_ended(&tasks, outcomes, verified, now, out);
            return;
        }
        for (x, a, o) in outcomes {
            if !landing.contains(&(x, a)) {
                self.integrated_one(x, a, o, now, out);
            }
        }
        self.check_done(now, out);
    }

    /// The integration of `run` ended with `outcomes` (each task's, in merge order; `verified`:
    /// an integration verify ran): a batch whose verify failed with several tasks merged is
    /// bisected, every other outcome is its task's.
    fn run_ended(
        &mut self,
        run: &[(u32, Attempt)],
        outcomes: Vec<(u32, Attempt, Integration)>,
        verified: bool,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(ws) = &mut self.ws else { return };
        let failed: Vec<u32> = outcomes
            .iter()
            .filter(|(_, _, o)| matches!(o, Integration::VerifyFailed { .. }))
            .map(|&(x, _, _)| x)
            .collect();
        let bisected = ws.bisect(&failed);
        out.push(Action::Record(Change::Batch {
            job: self.id,
            tasks: run.iter().map(|&(x, _)| TaskIndex(x)).collect(),
            verified,
            bisected,
            voided: false,
            at: now,
        }));
        for (x, a, o) in outcomes {
            if bisected && failed.contains(&x) {
                continue;
            }
            self.integrated_one(x, a, o, now, out);
        }
        self.check_done(now, out);
    }

    /// Whether the integration of task `t` runs an integration verify.
    fn verified(&self, t: u32) -> bool {
        self.spec.integration_verify(self.task(t)).is_some()
    }

    /// One task's integration ended (fenced: only the one in flight for the attempt
    /// integrating).
    fn integrated_one(
        &mut self,
        t: u32,
        attempt: Attempt,
        outcome: Integration,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(ws) = &mut self.ws else { return };
        if !ws.accepts(t, attempt) {
            return;
        }
        let names = &self.dag.names;
        let current = matches!(
            self.slots.get(t as usize).map(|s| &s.state),
            Some(TaskState::Integrating { attempt: a, .. }) if *a == attempt
        );
        let (verdict, with) = ws.ended(t, &outcome, names);
        let branch = names::task_branch(&self.id, TaskIndex(t), &names[t as usize], attempt);
        out.push(Action::Record(Change::Integrated {
            job: self.id,
            index: TaskIndex(t),
            attempt,
            branch,
            outcome,
            with,
            at: now,
        }));
        if !current {
            // Cancelled while it integrated: the outcome is recorded, nothing else changes.
            return;
        }
        match verdict {
            Verdict::Done => {
                let state = TaskState::Succeeded {
                    attempt,
                    finished: now,
                };
                self.set_state(t, state, out);
                self.after_end(t, true, now, out);
            }
            Verdict::Again { with } => {
                if let Some(w) = with {
                    let lock = format!("{}/conflict/{}/{}", self.id, t.min(w), t.max(w));
                    for x in [t, w] {
                        if !self.slots[x as usize].locks.contains(&lock) {
                            self.slots[x as usize].locks.push(lock.clone());
                        }
                    }
                }
                self.plan_rework(t);
                self.again_unspent(t, now, out);
            }
            Verdict::Fail { reason } => {
                self.slots[t as usize].tries = self.spec.max_attempts(self.task(t));
                self.end_for_good(t, Outcome::Failed, reason, now, out);
            }
        }
        self.check_done(now, out);
    }

    pub(crate) fn lost(
        &mut self,
        t: u32,
        attempt: Attempt,
        reason: String,
        now: Millis,
        pools: &mut Pools,
        out: &mut Vec<Action>,
    ) {
        if !self.take_back(t, attempt, pools) {
            return;
        }
        if self.slots[t as usize].speculation.is_some() {
            // A speculative attempt lost: discarded like one that failed (no attempt spent).
            self.discard(t, now, out);
            self.check_done(now, out);
            return;
        }
        self.end_attempt(t, Outcome::Failed, format!("lost: {reason}"), now, out);
    }

    /// Releases what `attempt` of task `t` holds when it is the task's active attempt; false
    /// for a stale report (an older attempt, an ended task), which changes nothing.
    fn take_back(&mut self, t: u32, attempt: Attempt, pools: &mut Pools) -> bool {
        let active = self.active_attempt(t) == Some(attempt);
        if active {
            self.release(t, pools);
        }
        active
    }

    /// Hands an attempt back without counting it (the runner restarted, a worker drained).
    pub(crate) fn requeue(
        &mut self,
        t: u32,
        attempt: Attempt,
        now: Millis,
        pools: &mut Pools,
        out: &mut Vec<Action>,
    ) {
        if !self.take_back(t, attempt, pools) {
            return;
        }
        let slot = &mut self.slots[t as usize];
        slot.tries = slot.tries.saturating_sub(1);
        if self.stop.is_some() {
            let reason = self.stop.clone().unwrap_or_default();
            self.set_state(
                t,
                TaskState::Cancelled {
                    finished: now,
                    reason,
                },
                out,
            );
            self.check_done(now, out);
        } else {
            self.make_ready(t, now, out);
        }
    }

    fn end_attempt(
        &mut self,
        t: u32,
        outcome: Outcome,
        message: String,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let attempt = Attempt(self.slots[t as usize].attempts);
        if outcome.is_success() {
            self.set_state(
                t,
                TaskState::Succeeded {
                    attempt,
                    finished: now,
                },
                out,
            );
            self.after_end(t, true, now, out);
        } else if self.cancelled || outcome == Outcome::Cancelled {
            let reason = self.stop.clone().unwrap_or(message);
            self.set_state(
                t,
                TaskState::Cancelled {
                    finished: now,
                    reason,
                },
                out,
            );
        } else if let Some(reason) = self.slots[t as usize].agent.budget_spent(self.task(t)) {
            self.end_for_good(t, outcome, format!("{message}; {reason}"), now, out);
        } else if self.slots[t as usize].tries < self.spec.max_attempts(self.task(t))
            && self.stop.is_none()
        {
            let until = now + self.backoff(t);
            let state = TaskState::RetryWait {
                attempt,
                until,
                reason: message,
            };
            self.set_state(t, state, out);
        } else {
            self.end_for_good(t, outcome, message, now, out);
        }
        self.check_done(now, out);
    }

    /// A task failed with no attempt left (or can never run).
    fn end_for_good(
        &mut self,
        t: u32,
        outcome: Outcome,
        reason: String,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let attempt = Attempt(self.slots[t as usize].attempts);
        let state = if outcome == Outcome::TimedOut {
            TaskState::TimedOut {
                attempt,
                finished: now,
                reason: reason.clone(),
            }
        } else {
            TaskState::Failed {
                attempt,
                finished: now,
                reason: reason.clone(),
            }
        };
        self.set_state(t, state, out);
        self.after_end(t, false, now, out);
    }

    /// What follows a task's final end: dependents, fail-fast, flow jumps.
    fn after_end(&mut self, t: u32, success: bool, now: Millis, out: &mut Vec<Action>) {
        let name = self.dag.names[t as usize].clone();
        if self.kind == Kind::Flow {
            self.flow_jump(t, success, now, out);
            return;
        }
        if success || self.tolerates_failure(t) {
            let attempt = match self.slots[t as usize].state {
                TaskState::Succeeded { attempt, .. } => Some(attempt),
                _ => None,
            };
            for i in 0..self.dag.dependents[t as usize].len() {
                let s = self.dag.dependents[t as usize][i];
                self.slots[s as usize].waiting -= 1;
                if let Some(a) = attempt.filter(|_| self.speculate.is_some()) {
                    self.confirm(s, t, a, now, out);
                    if self.slots[s as usize].waiting != 0 {
                        self.try_speculate(s, now, out);
                    }
                }
                if self.slots[s as usize].waiting != 0
                    || !matches!(self.slots[s as usize].state, TaskState::Pending)
                    || self.blocked_by_failure(s)
                {
                    continue;
                }
                match self.stop.clone() {
                    // The job is stopping: what would have become ready never starts.
                    Some(reason) => {
                        let state = TaskState::Cancelled {
                            finished: now,
                            reason,
                        };
                        self.set_state(s, state, out);
                    }
                    None => self.make_ready(s, now, out),
                }
            }
            return;
        }
        self.failure
            .get_or_insert_with(|| format!("task '{name}' failed"));
        self.skip_dependents(t, out);
        if self.spec.settings.fail_fast {
            self.halt(format!("fail_fast: task '{name}' failed"), now, out);
        }
    }

    /// Marks every pending task downstream of `t` skipped.
    fn skip_dependents(&mut self, t: u32, out: &mut Vec<Action>) {
        let mut queue: VecDeque<u32> = self.dag.dependents[t as usize].iter().copied().collect();
        let root = self.dag.names[t as usize].to_string();
        while let Some(s) = queue.pop_front() {
            if self.slots[s as usize].state.is_terminal()
                || self.slots[s as usize].state.is_active()
            {
                continue;
            }
            let reason = if self.dag.deps[s as usize].contains(&t) {
                format!("dependency '{root}' did not succeed")
            } else {
                self.skip_reason(s)
            };
            self.set_state(s, TaskState::Skipped { reason }, out);
            queue.extend(self.dag.dependents[s as usize].iter().copied());
        }
    }

    fn flow_jump(&mut self, t: u32, success: bool, now: Millis, out: &mut Vec<Action>) {
        let task = self.task(t);
        let name = task.name.clone();
        let jump = if success {
            task.on_success.clone().unwrap_or(Jump::Next)
        } else {
            task.on_failure.clone().unwrap_or(Jump::Stop)
        };
        let stops_on_failure = !success && matches!(jump, Jump::Stop | Jump::Retry);
        let next = match jump {
            Jump::Next => Some(t + 1).filter(|&n| (n as usize) < self.slots.len()),
            Jump::Stop => None,
            Jump::Retry | Jump::Repeat if success => Some(t),
            // `retry` after the last attempt failed: attempts are spent, so stop.
            Jump::Retry => None,
            Jump::Repeat => Some(t),
            Jump::Task(target) => self
                .dag
                .names
                .iter()
                .position(|n| n.as_str() == target)
                .map(|i| i as u32),
        };
        if stops_on_failure {
            self.failure
                .get_or_insert_with(|| format!("task '{name}' failed"));
        }
        match next {
            None => {
                let reason = format!("not reached: the flow stopped after '{name}'");
                self.skip_rest(reason, out);
            }
            Some(n) => {
                self.iterations += 1;
                if let Some(cap) = self.spec.iteration_cap()
                    && self.iterations > cap
                {
                    let why = format!(
                        "iteration cap of {cap} task runs reached (set allow_infinite_loops to lift it)"
                    );
                    self.failure.get_or_insert_with(|| why.clone());
                    self.skip_rest(why, out);
                    return;
                }
                self.slots[n as usize].tries = 0;
                self.make_ready(n, now, out);
            }
        }
    }

    /// Flow end: every task that is not terminal is skipped with `reason`.
    fn skip_rest(&mut self, reason: String, out: &mut Vec<Action>) {
        self.stop.get_or_insert_with(|| reason.clone());
        for s in 0..self.slots.len() as u32 {
            let st = &self.slots[s as usize].state;
            if !st.is_terminal() && !st.is_active() {
                self.set_state(
                    s,
                    TaskState::Skipped {
                        reason: reason.clone(),
                    },
                    out,
                );
            }
        }
    }

    /// Stops the job: nothing new starts, attempts in flight are killed, the rest cancelled.
    fn halt(&mut self, reason: String, now: Millis, out: &mut Vec<Action>) {
        self.stop.get_or_insert_with(|| reason.clone());
        for s in 0..self.slots.len() as u32 {
            let st = &self.slots[s as usize].state;
            if let Some(attempt) = st.active_attempt() {
                out.push(Action::Kill {
                    job: self.id,
                    index: TaskIndex(s),
                    attempt,
                });
            } else if !st.is_terminal() {
                if let Some(ws) = &mut self.ws {
                    ws.forget(s);
                }
                let state = TaskState::Cancelled {
                    finished: now,
                    reason: reason.clone(),
                };
                self.set_state(s, state, out);
            }
        }
    }

    pub(crate) fn cancel(&mut self, reason: String, now: Millis, out: &mut Vec<Action>) {
        if self.state.is_terminal() {
            return;
        }
        self.cancelled = true;
        self.halt(reason, now, out);
        self.check_done(now, out);
    }

    fn check_done(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.terminal < self.slots.len() || self.active > 0 || self.state.is_terminal() {
            return;
        }
        let (state, reason) = if self.cancelled {
            (JobState::Cancelled, self.stop.clone())
        } else if let Some(f) = &self.failure {
            (JobState::Failed, Some(f.clone()))
        } else {
            (JobState::Succeeded, None)
        };
        self.set_job_state(state, now, reason, out);
    }

    /// A stale or duplicate execution of a dispatched attempt (a worker that lost its lease, a
    /// redelivery) changes nothing, but what its agent spent was spent: it counts against the
    /// budgets. A result for an attempt never dispatched (`Unknown`), or one already counted,
    /// counts for nothing. Whether it was counted.
    pub(crate) fn spend_ignored(&mut self, kind: Ignore, result: &TaskResult) -> bool {
        if kind == Ignore::Unknown {
            return false;
        }
        match self.slots.get_mut(result.index.get()) {
            Some(slot) if result.ran_agents() => {
                self.agents.charge(&mut slot.agent, &self.spec, result)
            }
            _ => false,
        }
    }

    /// A stored result of an applied attempt, replayed when the job resumes (before its task
    /// records are loaded): `Agents::replay`.
    fn replay_agent_run(&mut self, result: &TaskResult) {
        let t = result.index.get();
        if let (Some(run), Some(slot)) = (result.agent.as_deref(), self.slots.get_mut(t)) {
            let task = &self.spec.tasks[t];
            self.agents
                .replay(&mut slot.agent, &self.spec, task, result, run);
        } else if let Some(slot) = self.slots.get_mut(t).filter(|_| result.ran_agents()) {
            self.agents.charge(&mut slot.agent, &self.spec, result);
        }
    }

    /// A run that ended on a rate limit: not a failed attempt. The task waits
    /// (`AgentSlot::rate_limit_wait`) and runs again. False when it has been rate limited too
    /// often in a row or its job is stopping (it then ends as usual).
    fn rate_limited(
        &mut self,
        t: u32,
        retry_after_ms: Option<u64>,
        result: &TaskResult,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> bool {
        let stopping = self.stop.is_some() || self.cancelled;
        let rng = &mut self.rng;
        let slot = &mut self.slots[t as usize];
        let Some((n, wait)) = slot
            .agent
            .rate_limit_wait(retry_after_ms, stopping, || jitter(rng))
        else {
            return false;
        };
        // Not spent: the attempt did not fail.
        slot.tries = slot.tries.saturating_sub(1);
        let reason = format!(
            "waiting on a rate limit for {}s (run {} in a row): {}",
            wait.as_secs().max(1),
            n,
            result.message
        );
        let attempt = result.attempt;
        let state = TaskState::RetryWait {
            attempt,
            until: now + wait.as_millis() as Millis,
            reason,
        };
        out.push(Action::Record(Change::Attempt(result.clone())));
        self.set_state(t, state, out);
        true
    }

    /// Exponential backoff from the task's `retry_backoff`, capped, with ±20% jitter.
    fn backoff(&mut self, t: u32) -> Millis {
        let base = self.spec.retry_backoff(self.task(t));
        let exp = self.slots[t as usize].tries.saturating_sub(1).min(20);
        let raw = base.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
        (raw.as_secs_f64() * jitter(&mut self.rng) * 1000.0) as Millis
    }
}

/// The first bisection step of a task resumed at `now` (ms since the epoch): the millisecond
/// it resumed at, modulo 2^31 so the steps after it never overflow, never 0 (a batch's first
/// request). Restarts come at least milliseconds apart, and JetStream's de-duplication window
/// (minutes) is far shorter than the 24.8 days the steps take to wrap, so no two starts share
/// a step; a step counted in seconds was shared by two restarts within one second.
pub(super) fn resume_step(now: Millis) -> u32 {
    (now % (1 << 31)) as u32 + 1
}

/// A factor in [0.8, 1.2) from the job's seeded generator.
fn jitter(rng: &mut u64) -> f64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    0.8 + (*rng % 1000) as f64 / 2500.0
}

fn need_of(spec: &JobSpec, task: &TaskSpec) -> Need {
    Need {
        queue: spec.queue(task).to_string(),
        cpus: task.cpu_required.unwrap_or(0.0),
        memory_mb: task.memory_required.unwrap_or(0),
        semaphore: spec.pool(task).map(|(name, size)| (name.to_string(), size)),
        agent: task.is_prompt(),
    }
}

/// Why a result for a task no longer in flight changed nothing, from the task's state name,
/// the attempt and delivery whose result was applied (if known) and the attempts started.
/// The coordinator uses it too, for results of jobs that already ended.
pub fn settled(
    result: &TaskResult,
    state: TaskPhase,
    applied: Option<(Attempt, u32)>,
    started: u32,
) -> (Ignore, String) {
    let (a, d) = (result.attempt, result.delivery);
    let settled = format!("task already {state}");
    match applied {
        Some((pa, pd)) if a < pa || (a == pa && d < pd) => (
            Ignore::Stale,
            format!(
                "{settled}; stale attempt {a} delivery {d} (applied: attempt {pa} delivery {pd})"
            ),
        ),
        Some((pa, _)) if a == pa => (
            Ignore::Duplicate,
            format!("{settled}; duplicate of attempt {a}"),
        ),
        Some(_) => (
            Ignore::Unknown,
            format!("{settled}; attempt {a} was never dispatched"),
        ),
        None if a.0 < started => (Ignore::Stale, format!("{settled}; stale attempt {a}")),
        // Started but never applied (cancelled, or a flow job's jump): a late report.
        None if a.0 == started => (
            Ignore::Stale,
            format!("{settled}; late result of attempt {a}"),
        ),
        None => (
            Ignore::Unknown,
            format!("{settled}; attempt {a} was never dispatched"),
        ),
    }
}

/// Each task of an integration of `run` with its outcome: the first's `outcome`, the others'
/// from `batch`; one the result does not name shares a failure of the whole.
fn run_outcomes(
    run: &[(u32, Attempt)],
    outcome: Integration,
    batch: Vec<ItemOutcome>,
) -> Vec<(u32, Attempt, Integration)> {
    let Some(&(t, attempt)) = run.first() else {
        return Vec::new();
    };
    let mut outcomes: Vec<(u32, Attempt, Integration)> = vec![(t, attempt, outcome)];
    for &(x, a) in &run[1..] {
        let named = batch.iter().find(|b| b.index.0 == x && b.attempt == a);
        let o = match (named, &outcomes[0].2) {
            (Some(b), _) => b.outcome.clone(),
            (None, failed @ Integration::Failed { .. }) => failed.clone(),
            (None, _) => Integration::Failed {
                message: "the batch's integration did not report this task".into(),
            },
        };
        outcomes.push((x, a, o));
    }
    outcomes
}
