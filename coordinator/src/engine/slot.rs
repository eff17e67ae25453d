//! One task's slot in its job: its state and everything else the engine keeps about it
//! (attempts, fencing, dependencies left, locks, its agent runs) in one struct, so a task's
//! data cannot drift apart across parallel vectors. `Tasks` is the read-only view of a job's
//! task states that the engine hands to the service, the views and the metrics.

use std::ops::Index;

use ordo_proto::{Attempt, Resolve, TaskIndex, WorkspaceResult};

use super::agents::AgentSlot;
use super::state::TaskState;

#[derive(Debug)]
pub(crate) struct Slot {
    /// Changed only by `Job::set_state` (which checks the transition and records it), except
    /// when a job resumes and loads its stored records.
    pub(crate) state: TaskState,
    /// Attempts started, ever: the next attempt number minus one (fencing).
    pub(crate) attempts: u32,
    /// Attempts counted against `max_attempts` (reset when a flow job re-enters the task).
    pub(crate) tries: u32,
    /// Attempts whose change conflicted at integration (they spent no attempt).
    pub(crate) conflicts: u32,
    /// Highest delivery reported started of the attempt in flight (0: none known).
    pub(crate) delivery: u32,
    /// Attempt and delivery of the last applied result, to tell stale results from
    /// duplicates (after a restart the delivery is unknown: 0).
    pub(crate) applied: Option<(Attempt, u32)>,
    /// Dependencies not yet satisfied.
    pub(crate) waiting: u32,
    /// Its locks: its own, its write-set's, and those of tasks it conflicted with.
    pub(crate) locks: Vec<String>,
    /// Its agent runs: session, next prompt, spend, rate limits.
    pub(crate) agent: AgentSlot,
    /// Awaiting approval: what its attempt left in its worktree (integrated once approved,
    /// where a revise round starts from; `None` without worktrees).
    pub(crate) held: Option<Box<WorkspaceResult>>,
    /// Rejections sent back to revise (rounds of its approvals).
    pub(crate) revisions: u32,
    /// Made ready on its dependencies' work before they integrated (`job::speculation`).
    pub(crate) speculation: Option<Box<Speculation>>,
    /// It had its speculative run: it gets one at most.
    pub(crate) speculated: bool,
    /// The work of its speculative run, discarded: removed by its next attempt.
    pub(crate) discarded: Vec<Resolve>,
}

/// A task started on a speculative base: the tip with the work of its dependencies that
/// passed their verify and stages but were not integrated yet merged in.
#[derive(Debug)]
pub(crate) struct Speculation {
    /// The dependencies still to integrate, with the attempt whose work it started on.
    pub(crate) on: Vec<(u32, Attempt)>,
    /// Every dependency it speculated on (for the record).
    pub(crate) all: Vec<TaskIndex>,
    /// Their work, merged onto the tip in this order (`Workspace::speculative`).
    pub(crate) base: Vec<Resolve>,
    /// The attempt that runs on it, once dispatched.
    pub(crate) attempt: Option<Attempt>,
    /// A dependency did not integrate as it was while the attempt ran: its result goes.
    pub(crate) doomed: bool,
    /// What the attempt spent, once it ended.
    pub(crate) cost_usd: Option<f64>,
}

impl Slot {
    pub(crate) fn new(waiting: u32, locks: Vec<String>) -> Slot {
        Slot {
            state: TaskState::Pending,
            attempts: 0,
            tries: 0,
            conflicts: 0,
            delivery: 0,
            applied: None,
            waiting,
            locks,
            agent: AgentSlot::default(),
            held: None,
            revisions: 0,
            speculation: None,
            speculated: false,
            discarded: Vec::new(),
        }
    }
}

/// A live job's task states, in task order (`Engine::tasks`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tasks<'a>(&'a [Slot]);

impl<'a> Tasks<'a> {
    pub(crate) fn new(slots: &'a [Slot]) -> Tasks<'a> {
        Tasks(slots)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&'a TaskState> {
        self.0.get(index).map(|s| &s.state)
    }

    pub fn iter(&self) -> TasksIter<'a> {
        TasksIter(self.0.iter())
    }

    pub fn to_vec(&self) -> Vec<TaskState> {
        self.iter().cloned().collect()
    }
}

impl<'a> IntoIterator for Tasks<'a> {
    type Item = &'a TaskState;
    type IntoIter = TasksIter<'a>;

    fn into_iter(self) -> TasksIter<'a> {
        self.iter()
    }
}

/// Iterator over a job's task states.
#[derive(Clone, Debug)]
pub struct TasksIter<'a>(std::slice::Iter<'a, Slot>);

impl<'a> Iterator for TasksIter<'a> {
    type Item = &'a TaskState;

    fn next(&mut self) -> Option<&'a TaskState> {
        self.0.next().map(|s| &s.state)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for TasksIter<'_> {}

impl Index<usize> for Tasks<'_> {
    type Output = TaskState;

    fn index(&self, index: usize) -> &TaskState {
        &self.0[index].state
    }
}
