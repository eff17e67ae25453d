//! Agent workspaces in the engine (docs/design.md, agent workspaces), still without I/O: which
//! attempt runs in which worktree branch, the integration queue of a job (one integration at a
//! time per repository, in the order tasks first finished), what a conflict does (the task is
//! reworked: a resolve round on its own work, or a run from the new tip; the two tasks never
//! run together again), and the write-set locks
//! that keep tasks whose `files` may overlap apart. The git work itself is the executor's
//! (`worker::workspace`).
//!
//! No task starves on a hot file: a task that lost an integration race keeps its place in the
//! queue while it is reworked, and tasks that finished after it and touch the files it changed
//! wait for it. So a task can lose a race only to tasks that finished before it, and every
//! change is integrated in the end; `max_integration_attempts` bounds what a rework cannot
//! mend (a failed integration verify), not races lost.
//!
//! Batches (`integration.batch` above 1): an idle integrator takes up to that many waiting
//! tasks, in queue order, whose changed files do not overlap, and one integration merges and
//! verifies them together. When the verify fails with more than one task merged, the batch is
//! bisected: its halves are integrated in turn (on top of each other), and a half that fails is
//! split again, until the culprit is a single task, whose failed verify counts as today's.
//! Bisection steps go before the queue and spend no integration attempt.
//!
//! The second half does not wait for the first: a stacked integration (`next_stacked`) merges
//! it on top of the first half's tasks and runs its verify while the first half's runs,
//! moving nothing. If the first half lands (`ahead_ended`), the stacked outcome stands: a
//! verified half lands next with the tree it verified (its integrator skips the verify when
//! the merge comes to that tree), a failed one is split or is the culprit. If the first half
//! does not land, the stacked outcome is void and the second half is integrated anew.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use ordo_proto::{
    Attempt, BatchItem, Conflict, Dispatch, Integrate, Integration, JobId, JobSpec, Resolve,
    TaskIndex, TaskName, Verify, Workspace, WorkspaceResult, globs, names,
};

/// Tasks declaring `files` beyond this many are all serialised with one lock (the pairwise
/// comparison is quadratic).
const MAX_PAIRWISE_WRITE_SETS: usize = 2000;

/// Locks that keep apart the tasks whose write-sets may overlap: one per overlapping pair,
/// named after the job so they never meet another job's.
pub(crate) fn write_set_locks(job: &JobId, spec: &JobSpec) -> Vec<Vec<String>> {
    let mut locks: Vec<Vec<String>> = spec.tasks.iter().map(|t| t.locks.clone()).collect();
    let declared: Vec<usize> = (0..spec.tasks.len())
        .filter(|&i| !spec.tasks[i].files.is_empty())
        .collect();
    if declared.len() > MAX_PAIRWISE_WRITE_SETS {
        for &i in &declared {
            locks[i].push(format!("{job}/files"));
        }
        return locks;
    }
    for (n, &i) in declared.iter().enumerate() {
        for &j in &declared[n + 1..] {
            let (a, b) = (&spec.tasks[i].files, &spec.tasks[j].files);
            if a.iter().any(|x| b.iter().any(|y| globs::may_overlap(x, y))) {
                let lock = format!("{job}/files/{i}/{j}");
                locks[i].push(lock.clone());
                locks[j].push(lock);
            }
        }
    }
    locks
}

/// What a job with `workspace = "worktree"` keeps about integration.
#[derive(Debug)]
pub(crate) struct Workspaces {
    repository: String,
    integration_branch: String,
    base: String,
    max_tries: u32,
    /// Per task: the worktree result waiting for (or in) integration.
    pending: Vec<Option<Box<WorkspaceResult>>>,
    /// Per task: integrations tried that count against `max_integration_attempts`.
    tries: Vec<u32>,
    /// Per task: integration races lost (text conflicts).
    races: Vec<u32>,
    /// Per task: the last conflict, told to its next attempt.
    conflict: Vec<Option<Conflict>>,
    /// Per task: its place in the integration queue, given when it first finished and kept
    /// while it is reworked.
    place: Vec<Option<u64>>,
    next_place: u64,
    /// Tasks waiting for integration, by place.
    queue: BTreeSet<(u64, u32)>,
    /// Tasks reworked after a lost race, with their place and the files their change touched:
    /// later tasks touching those files wait for them.
    reworking: BTreeMap<u32, (u64, Vec<String>)>,
    /// The tasks being integrated (one, or a batch in merge order), with their attempts.
    in_flight: Vec<(u32, Attempt)>,
    /// Tasks integrated at most together (`integration.batch`).
    batch: usize,
    /// Groups of a failed batch still to integrate, next first (bisection).
    bisect: VecDeque<Group>,
    /// The stacked integration in flight on top of `in_flight` (bisection's next half).
    stacked: Option<Stacked>,
    /// Stacked integrations made void before their outcome came (first task, attempt, step):
    /// the outcome is only counted (`Change::Batch::voided`).
    voided: Vec<(u32, Attempt, u32)>,
    /// Per task: integrations of it that were bisected (`Integrate::step`).
    steps: Vec<u32>,
    /// Tasks queued again when the job resumed, with the attempt integrating: its integration
    /// may have been requested before the restart, and its outcome may still come (`accepts`).
    restored: HashMap<u32, Attempt>,
    /// The files each integrated task changed on the branch, oldest first.
    integrated: Vec<(u32, Vec<String>)>,
    /// Per task: a revise round's start (an approval rejected to revise), until a result of
    /// it is applied.
    revise: Vec<Option<Resolve>>,
    /// Speculative tasks whose dependencies are not integrated yet: queued at their place,
    /// not integrated before they are (`hold`, `release`).
    held: BTreeSet<u32>,
}

/// Tasks to integrate together, next in line: a half of a bisected batch.
#[derive(Debug)]
struct Group {
    tasks: Vec<u32>,
    /// The tree a stacked integration of these tasks verified on top of the group that landed
    /// before them (`Integrate::verified`).
    verified: Option<String>,
}

/// A stacked integration in flight (`Integrate::onto`).
#[derive(Debug)]
struct Stacked {
    /// Its tasks, first first.
    tasks: Vec<(u32, Attempt)>,
    /// Its outcomes, once they came before the integration ahead ended.
    outcomes: Option<Vec<(u32, Attempt, Integration)>>,
    /// The integration ahead landed; the outcomes are awaited.
    ahead_landed: bool,
}

/// A stacked integration's outcomes, once the integration ahead of it ended: to settle, or
/// `void` (it was verified on top of what did not land; only counted).
pub(crate) struct StackedEnd {
    pub(crate) outcomes: Vec<(u32, Attempt, Integration)>,
    pub(crate) void: bool,
}

/// What an integration outcome means for its task.
pub(crate) enum Verdict {
    /// On the branch: the task succeeded.
    Done,
    /// Rework the task (without spending an attempt): a resolve round in its own session when
    /// the job can give it one (`Conflict::resolve`), else a run from the new tip; keep it
    /// apart from `with` from now on.
    Again { with: Option<u32> },
    /// No integration attempt left.
    Fail { reason: String },
}

impl Workspaces {
    pub(crate) fn new(job: &JobId, spec: &JobSpec) -> Option<Workspaces> {
        if !spec.uses_worktrees() {
            return None;
        }
        let s = &spec.settings;
        let n = spec.tasks.len();
        Some(Workspaces {
            // The CLI resolves the default (the working directory's repository) before
            // submitting; "." is what is left when nothing did.
            repository: s.repository.clone().unwrap_or_else(|| ".".into()),
            integration_branch: s
                .target_branch
                .clone()
                .unwrap_or_else(|| names::integration_branch(&spec.name, job)),
            base: s.base.clone().unwrap_or_else(|| "HEAD".into()),
            max_tries: spec.max_integration_attempts(),
            pending: vec![None; n],
            tries: vec![0; n],
            races: vec![0; n],
            conflict: vec![None; n],
            place: vec![None; n],
            next_place: 0,
            queue: BTreeSet::new(),
            reworking: BTreeMap::new(),
            in_flight: Vec::new(),
            batch: spec.integration_batch(),
            bisect: VecDeque::new(),
            stacked: None,
            voided: Vec::new(),
            steps: vec![0; n],
            restored: HashMap::new(),
            integrated: Vec::new(),
            revise: vec![None; n],
            held: BTreeSet::new(),
        })
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    /// Puts the attempt in its worktree: branch, and what its last conflict was (in
    /// `ORDO_CONFLICT_FILES` and, for a prompt, a note at the end of the prompt).
    pub(crate) fn decorate(&self, d: &mut Dispatch, prompt: bool, title: Option<String>) {
        let t = d.index.get();
        let conflict = self.conflict[t].clone();
        if let Some(c) = &conflict {
            d.env
                .insert(names::ENV_CONFLICT_FILES.into(), c.files.join("\n"));
            // A resolve round's prompt is about the conflict already (`resolve_prompt`).
            if prompt
                && c.resolve.is_none()
                && let ordo_proto::Program::Argv(argv) = &mut d.program
                && let Some(last) = argv.last_mut()
            {
                last.push_str(&conflict_note(c));
            }
        }
        d.workspace = Some(Workspace {
            repository: self.repository.clone(),
            integration_branch: self.integration_branch.clone(),
            base: self.base.clone(),
            task_branch: names::task_branch(&d.job, d.index, &d.task, d.attempt),
            conflict,
            title,
            revise: self.revise[t].clone(),
            speculative: Vec::new(),
            discarded: Vec::new(),
        });
    }

    /// The next attempt of `t` is a revise round: it starts from `work` (its branch and
    /// head) rather than from the tip.
    pub(crate) fn revise(&mut self, t: u32, work: &WorkspaceResult) {
        self.revise[t as usize] = Some(Resolve {
            branch: work.branch.clone(),
            head: work.head.clone(),
        });
    }

    /// A result of `t` was applied: its revise round, if it was one, is over.
    pub(crate) fn revised(&mut self, t: u32) {
        self.revise[t as usize] = None;
    }

    /// An attempt succeeded in its worktree: its change waits for integration, at the place
    /// the task took when it first finished.
    pub(crate) fn finished(&mut self, t: u32, result: Box<WorkspaceResult>) {
        self.pending[t as usize] = Some(result);
        self.reworking.remove(&t);
        let place = *self.place[t as usize].get_or_insert_with(|| {
            self.next_place += 1;
            self.next_place
        });
        self.queue.insert((place, t));
    }

    /// The work `t` finished with, while it waits for (or is in) integration.
    pub(crate) fn work(&self, t: u32) -> Option<&WorkspaceResult> {
        self.pending[t as usize].as_deref()
    }

    /// `t` is speculative: it keeps its place in the queue but is not integrated before the
    /// dependencies it started on are (`release`).
    pub(crate) fn hold(&mut self, t: u32) {
        self.held.insert(t);
    }

    /// The dependencies `t` speculated on integrated as they were: it integrates in its turn.
    pub(crate) fn release(&mut self, t: u32) {
        self.held.remove(&t);
    }

    /// The task ended for good (or its job stops): nobody waits for its rework any more.
    pub(crate) fn settled(&mut self, t: u32) {
        self.reworking.remove(&t);
    }

    /// Whether `t`'s change must wait for a task reworked after a lost race: one that finished
    /// before it and whose change touched the same files.
    fn held_back(&self, place: u64, t: u32) -> bool {
        let Some(mine) = self.pending[t as usize].as_ref() else {
            return false;
        };
        self.reworking.iter().any(|(&r, (p, files))| {
            r != t && *p < place && files.iter().any(|f| mine.files.contains(f))
        })
    }

    /// A resumed job's integrating task, queued again (in the order they finished), the
    /// integrations it had tried, and the step its integrations start from (`Integrate::step`;
    /// above 0 for a task integrated before in a bisected batch, whose request ids of before
    /// are used up).
    pub(crate) fn resume(
        &mut self,
        t: u32,
        attempt: Attempt,
        tried: u32,
        result: Box<WorkspaceResult>,
        step: u32,
    ) {
        self.finished(t, result);
        self.restored.insert(t, attempt);
        self.tries[t as usize] = tried;
        self.steps[t as usize] = step;
    }

    /// The next integration to start, if none is in flight: a group of a bisected batch first,
    /// else the first queued task that waits for no earlier one, with (batches) the queued
    /// tasks after it that could join it.
    pub(crate) fn next(
        &mut self,
        job: JobId,
        spec: &JobSpec,
        attempt: impl Fn(u32) -> Attempt,
    ) -> Option<Integrate> {
        // A stacked integration whose ahead landed: what lands next depends on its outcome.
        if !self.in_flight.is_empty() || self.stacked.as_ref().is_some_and(|s| s.ahead_landed) {
            return None;
        }
        while let Some(group) = self.bisect.pop_front() {
            let tasks = self.waiting(group.tasks);
            if !tasks.is_empty() {
                let mut req = self.start(job, spec, &tasks, attempt, group.verified.is_none())?;
                req.verified = group.verified;
                return Some(req);
            }
        }
        let ready = self.ready(spec);
        for &t in &ready {
            if let Some(place) = self.place[t as usize] {
                self.queue.remove(&(place, t));
            }
            self.restored.remove(&t);
        }
        if ready.is_empty() {
            return None;
        }
        self.start(job, spec, &ready, attempt, true)
    }

    /// Of `tasks`, those still waiting to integrate (a task whose job stopped is not).
    fn waiting(&self, tasks: Vec<u32>) -> Vec<u32> {
        tasks
            .into_iter()
            .filter(|&t| self.pending[t as usize].is_some())
            .collect()
    }

    /// A stacked integration to start beside the one in flight, when that one is a step of a
    /// bisection and the next step is waiting: the next half, merged on top of the tasks in
    /// flight, verified without moving anything (`Integrate::onto`). It counts as the half's
    /// integration, as `next` would have started it after the one in flight.
    pub(crate) fn next_stacked(
        &mut self,
        job: JobId,
        spec: &JobSpec,
        attempt: impl Fn(u32) -> Attempt,
    ) -> Option<Integrate> {
        if self.in_flight.is_empty() || self.stacked.is_some() {
            return None;
        }
        let tasks = loop {
            if self.bisect.front()?.verified.is_some() {
                return None;
            }
            let group = self.bisect.pop_front()?;
            let tasks = self.waiting(group.tasks);
            if !tasks.is_empty() {
                break tasks;
            }
        };
        let onto: Vec<BatchItem> = self
            .in_flight
            .iter()
            .filter_map(|&(t, a)| self.item(spec, t, a))
            .collect();
        let ahead = std::mem::take(&mut self.in_flight);
        let mut req = self.start(job, spec, &tasks, attempt, true);
        let run = std::mem::replace(&mut self.in_flight, ahead);
        if let Some(req) = &mut req {
            req.onto = onto;
            self.stacked = Some(Stacked {
                tasks: run,
                outcomes: None,
                ahead_landed: false,
            });
        }
        req
    }

    /// Whether a stacked outcome (of the integration whose first task is `t`, at `step`) is
    /// the stacked integration's in flight.
    pub(crate) fn stacked_accepts(&self, t: u32, attempt: Attempt, step: u32) -> bool {
        self.stacked
            .as_ref()
            .is_some_and(|s| s.tasks.first() == Some(&(t, attempt)))
            && self.steps[t as usize] == step
    }

    /// The tasks of the stacked integration in flight, first first.
    pub(crate) fn stacked_tasks(&self) -> &[(u32, Attempt)] {
        self.stacked.as_ref().map_or(&[], |s| &s.tasks)
    }

    /// The stacked integration's outcomes came: they are returned to be settled when the
    /// integration ahead landed already, else kept until it ends.
    pub(crate) fn stacked_came(
        &mut self,
        outcomes: Vec<(u32, Attempt, Integration)>,
    ) -> Option<Vec<(u32, Attempt, Integration)>> {
        let s = self.stacked.as_mut()?;
        if !s.ahead_landed {
            s.outcomes = Some(outcomes);
            return None;
        }
        self.take_stacked();
        Some(outcomes)
    }

    /// The integration in flight ended, its tasks integrated (or left out with a conflict:
    /// `landed`) or not. The stacked one on top of it stands if it landed: its outcomes are
    /// returned to be settled if they came (else they are awaited). If it did not land, the
    /// stacked outcome is void (returned as such if it came, to be counted) and its tasks go
    /// back in front, integrated anew.
    pub(crate) fn ahead_ended(&mut self, landed: bool) -> Option<StackedEnd> {
        let s = self.stacked.as_mut()?;
        if landed && s.outcomes.is_none() {
            s.ahead_landed = true;
            return None;
        }
        let &(t, attempt) = s.tasks.first()?;
        let step = self.steps[t as usize];
        let s = self.take_stacked()?;
        if !landed {
            self.requeue(&s.tasks);
            if s.outcomes.is_none() {
                self.voided.push((t, attempt, step));
            }
        }
        s.outcomes.map(|outcomes| StackedEnd {
            outcomes,
            void: !landed,
        })
    }

    /// Whether an outcome (of the integration whose first task is `t`, at `step`) is that of
    /// a stacked integration made void before it came; it is not awaited any more.
    pub(crate) fn was_voided(&mut self, t: u32, attempt: Attempt, step: u32) -> bool {
        let before = self.voided.len();
        self.voided.retain(|&v| v != (t, attempt, step));
        self.voided.len() < before
    }

    /// A stacked integration came to nothing that tells (it failed as a whole): its tasks go
    /// back in front, integrated anew.
    pub(crate) fn stacked_void(&mut self, tasks: &[(u32, Attempt)]) {
        self.requeue(tasks);
    }

    /// The stacked integration's tasks as the integration just ended (its outcomes are
    /// settled as that one's, `Verdict`s and bisection alike); those whose merge `tree`
    /// verified (`landing`) go first in line, to land with it (`Integrate::verified`).
    pub(crate) fn settle_stacked(
        &mut self,
        tasks: &[(u32, Attempt)],
        landing: &[(u32, Attempt)],
        tree: Option<String>,
    ) {
        self.in_flight = tasks.to_vec();
        if let Some(tree) = tree {
            self.in_flight.retain(|x| !landing.contains(x));
            let tasks = landing.iter().map(|&(t, _)| t).collect();
            self.bisect.push_front(Group {
                tasks,
                verified: Some(tree),
            });
        }
    }

    /// Ends the stacked integration: its tasks' next integration is another step (a new
    /// message id; a late outcome of this one is told apart).
    fn take_stacked(&mut self) -> Option<Stacked> {
        let s = self.stacked.take()?;
        for &(t, _) in &s.tasks {
            self.steps[t as usize] += 1;
        }
        Some(s)
    }

    /// Puts `tasks` first in line again, not counting the integration they had.
    fn requeue(&mut self, tasks: &[(u32, Attempt)]) {
        for &(t, _) in tasks {
            self.tries[t as usize] = self.tries[t as usize].saturating_sub(1);
        }
        self.bisect.push_front(Group {
            tasks: tasks.iter().map(|&(t, _)| t).collect(),
            verified: None,
        });
    }

    /// The queued tasks to integrate next, in place order: the first that waits for no earlier
    /// one (neither for a task reworked after a lost race nor for a queued task held back
    /// itself, transitively), then up to `batch` in all whose files overlap none of those
    /// before them and that verify alike.
    fn ready(&self, spec: &JobSpec) -> Vec<u32> {
        let mut waiting: Vec<&String> = Vec::new();
        let mut ready: Vec<u32> = Vec::new();
        for &(place, t) in &self.queue {
            let files = self.pending[t as usize]
                .as_ref()
                .map_or(&[][..], |w| w.files.as_slice());
            let joins = ready
                .first()
                .is_none_or(|&first| integrated_alike(spec, first, t));
            if !joins
                || self.held.contains(&t)
                || self.held_back(place, t)
                || files.iter().any(|f| waiting.contains(&f))
            {
                waiting.extend(files);
                continue;
            }
            waiting.extend(files);
            ready.push(t);
            if ready.len() >= self.batch {
                break;
            }
        }
        ready
    }

    /// Task `t`'s attempt `a`, waiting to integrate, as a task of a batch.
    fn item(&self, spec: &JobSpec, t: u32, a: Attempt) -> Option<BatchItem> {
        let ws = self.pending[t as usize].as_deref()?;
        let task = &spec.tasks[t as usize];
        Some(BatchItem {
            task: task.name.clone(),
            index: TaskIndex(t),
            attempt: a,
            task_branch: ws.branch.clone(),
            head: ws.head.clone(),
            worktree: ws.worktree.clone(),
            last: self.tries[t as usize] >= self.max_tries,
            title: task.title(),
        })
    }

    /// Starts the integration of `tasks` (the first's fields, the others as its batch); it
    /// counts against `max_integration_attempts` when `counted` (not for the landing of a
    /// group a stacked integration verified: that integration counted).
    fn start(
        &mut self,
        job: JobId,
        spec: &JobSpec,
        tasks: &[u32],
        attempt: impl Fn(u32) -> Attempt,
        counted: bool,
    ) -> Option<Integrate> {
        let mut items: Vec<(u32, Attempt, &WorkspaceResult)> = Vec::new();
        for &t in tasks {
            if let Some(ws) = self.pending[t as usize].as_deref() {
                items.push((t, attempt(t), ws));
            }
        }
        let &(t, first_attempt, ws) = items.first()?;
        let task = &spec.tasks[t as usize];
        let mut req = Integrate {
            job,
            task: task.name.clone(),
            index: TaskIndex(t),
            attempt: first_attempt,
            repository: self.repository.clone(),
            integration_branch: self.integration_branch.clone(),
            base: self.base.clone(),
            task_branch: ws.branch.clone(),
            head: ws.head.clone(),
            worktree: ws.worktree.clone(),
            verify: spec.integration_verify(task).map(|command| Verify {
                command,
                success_code: if spec.settings.integration_verify.is_some() {
                    0
                } else {
                    task.verify_success_code
                },
            }),
            env: spec.env(task),
            timeout: spec.timeout(task),
            last: false,
            queue: spec.queue(task).to_string(),
            title: task.title(),
            batch: Vec::new(),
            step: self.steps[t as usize],
            onto: Vec::new(),
            verified: None,
        };
        self.in_flight = items.iter().map(|&(x, a, _)| (x, a)).collect();
        if counted {
            for (x, _) in self.in_flight.clone() {
                self.tries[x as usize] += 1;
            }
        }
        req.batch = self.in_flight[1..]
            .iter()
            .filter_map(|&(x, a)| self.item(spec, x, a))
            .collect();
        req.last = self.tries[t as usize] >= self.max_tries;
        for b in &mut req.batch {
            b.last = self.tries[b.index.get()] >= self.max_tries;
        }
        Some(req)
    }

    /// The step of `t`'s next or current integration (`Integrate::step`).
    pub(crate) fn step(&self, t: u32) -> u32 {
        self.steps[t as usize]
    }

    /// Whether batches are on (`integration.batch` above 1).
    pub(crate) fn batches(&self) -> bool {
        self.batch > 1
    }

    /// The tasks of the integration in flight, first first.
    pub(crate) fn in_flight(&self) -> &[(u32, Attempt)] {
        &self.in_flight
    }

    /// A batch's integration verify failed with more than one task merged (`failed`, in merge
    /// order): they go back as two halves, integrated next, the first half first; no
    /// integration attempt is spent. False (nothing done) for a single task: the culprit.
    pub(crate) fn bisect(&mut self, failed: &[u32]) -> bool {
        if failed.len() < 2 {
            return false;
        }
        let (first, second) = failed.split_at(failed.len().div_ceil(2));
        for half in [second, first] {
            self.bisect.push_front(Group {
                tasks: half.to_vec(),
                verified: None,
            });
        }
        for &t in failed {
            self.in_flight.retain(|&(f, _)| f != t);
            self.tries[t as usize] = self.tries[t as usize].saturating_sub(1);
            self.steps[t as usize] += 1;
        }
        true
    }

    /// Whether an outcome of this attempt's integration is awaited: it is the one in flight,
    /// or the task was queued again when the job resumed (a request made before the restart
    /// may still be carried out; its outcome counts, and its message id would de-duplicate the
    /// request made again). Fencing: across machines a request may be carried out twice, and
    /// the second outcome may come after the task moved on.
    pub(crate) fn accepts(&self, t: u32, attempt: Attempt) -> bool {
        self.in_flight.contains(&(t, attempt)) || self.restored.get(&t) == Some(&attempt)
    }

    /// No task of the job waits for integration or is being integrated.
    pub(crate) fn idle(&self) -> bool {
        self.queue.is_empty()
            && self.in_flight.is_empty()
            && self.bisect.is_empty()
            && self.stacked.is_none()
    }

    /// The next attempt of `t` runs again from the tip rather than resolving its conflict
    /// (a command task, no session to resume, or a resolve round that left markers).
    pub(crate) fn no_resolve(&mut self, t: u32) {
        if let Some(c) = &mut self.conflict[t as usize] {
            c.resolve = None;
        }
    }

    /// The conflict `t`'s next attempt is to resolve, if it is a resolve round.
    pub(crate) fn resolving(&self, t: u32) -> Option<&Conflict> {
        self.conflict[t as usize]
            .as_ref()
            .filter(|c| c.resolve.is_some())
    }

    /// A resolve round left conflict markers: it counts against `max_integration_attempts`
    /// (a conflict of content the rework could not mend). Whether the task may go on.
    pub(crate) fn unresolved(&mut self, t: u32) -> bool {
        self.no_resolve(t);
        self.tries[t as usize] += 1;
        self.tries[t as usize] < self.max_tries
    }

    /// Drops a task from the queue (its job is stopping, or its speculative work is
    /// discarded).
    pub(crate) fn forget(&mut self, t: u32) {
        self.dequeue(t);
        self.pending[t as usize] = None;
        self.reworking.remove(&t);
        self.held.remove(&t);
    }

    fn dequeue(&mut self, t: u32) {
        if let Some(place) = self.place[t as usize] {
            self.queue.remove(&(place, t));
        }
    }

    /// An integration ended: what it means for the task, and (for a conflict) the task it
    /// collided with.
    pub(crate) fn ended(
        &mut self,
        t: u32,
        outcome: &Integration,
        names: &[TaskName],
    ) -> (Verdict, Option<TaskName>) {
        self.in_flight.retain(|&(f, _)| f != t);
        self.dequeue(t);
        if self.restored.remove(&t).is_some() {
            // A request made before the restart, carried out: one more integration tried.
            self.tries[t as usize] += 1;
        }
        let ws = self.pending[t as usize].take();
        if matches!(outcome, Integration::Conflict { .. }) {
            // A race lost: the tip moved under the task. It keeps its place; it is bounded by
            // the tasks that finished before it, not by the limit (a safety cap stays).
            self.races[t as usize] += 1;
            self.tries[t as usize] = self.tries[t as usize].saturating_sub(1);
            if self.races[t as usize] <= self.pending.len() as u32 + self.max_tries {
                let place = self.place[t as usize].unwrap_or(u64::MAX);
                let files = ws.as_ref().map(|w| w.files.clone()).unwrap_or_default();
                self.reworking.insert(t, (place, files));
            } else {
                self.tries[t as usize] = self.max_tries;
            }
        }
        let tries = self.tries[t as usize];
        let (files, why) = match outcome {
            Integration::Merged { files, .. } => {
                self.integrated.push((t, files.clone()));
                self.conflict[t as usize] = None;
                return (Verdict::Done, None);
            }
            Integration::Unchanged { .. } => {
                self.conflict[t as usize] = None;
                return (Verdict::Done, None);
            }
            Integration::Conflict { files } => (files.clone(), "conflicts".to_string()),
            Integration::VerifyFailed { exit_code, .. } => (
                ws.as_ref().map(|w| w.files.clone()).unwrap_or_default(),
                match exit_code {
                    Some(c) => format!("the integration verify failed (exit code {c})"),
                    None => "the integration verify failed".into(),
                },
            ),
            Integration::Failed { message } => {
                (Vec::new(), format!("integration failed: {message}"))
            }
            // Only a stacked integration says so, and its outcomes are not a task's end.
            Integration::Verified { .. } => (
                Vec::new(),
                "integration failed: verified but not integrated".to_string(),
            ),
        };
        // The task it collided with: the latest integrated one that changed those files.
        let with = self
            .integrated
            .iter()
            .rev()
            .find(|(_, changed)| changed.iter().any(|f| files.contains(f)))
            .map(|(other, _)| *other);
        let with_name = with.map(|w| names[w as usize].clone());
        // A text conflict can be resolved where the work was done (the job decides whether
        // this task gets a resolve round: `no_resolve`).
        let resolve = match (outcome, &ws) {
            (Integration::Conflict { .. }, Some(w)) => Some(Resolve {
                branch: w.branch.clone(),
                head: w.head.clone(),
            }),
            _ => None,
        };
        self.conflict[t as usize] = Some(Conflict {
            files: files.clone(),
            with: with_name.clone(),
            resolve,
        });
        if tries >= self.max_tries {
            let mut reason = format!("{why} after {tries} integration attempt(s)");
            if !files.is_empty() {
                reason.push_str(&format!(" in {}", files.join(", ")));
            }
            if let Some(w) = &with_name {
                reason.push_str(&format!(" (with task '{w}')"));
            }
            return (Verdict::Fail { reason }, with_name);
        }
        (Verdict::Again { with }, with_name)
    }
}

/// Whether tasks `a` and `b` can share an integration: the same integration verify, with the
/// same environment, timeout and queue (a batch runs one verify, as its first task's).
fn integrated_alike(spec: &JobSpec, a: u32, b: u32) -> bool {
    let (ta, tb) = (&spec.tasks[a as usize], &spec.tasks[b as usize]);
    spec.integration_verify(ta) == spec.integration_verify(tb)
        && ta.verify_success_code == tb.verify_success_code
        && spec.env(ta) == spec.env(tb)
        && spec.timeout(ta) == spec.timeout(tb)
        && spec.queue(ta) == spec.queue(tb)
}

/// What a prompt is told after its last integration conflicted.
fn conflict_note(c: &Conflict) -> String {
    let with = match &c.with {
        Some(t) => format!(" with task '{t}'"),
        None => String::new(),
    };
    format!(
        "\n\nNote from ordo: your previous attempt's changes conflicted{with} in {}. The \
         integration branch now holds that work; make your change again on top of it.",
        if c.files.is_empty() {
            "the integration verify".to_string()
        } else {
            c.files.join(", ")
        }
    )
}
