//! What a host needs from whatever runs the attempts: start one, kill one (or a whole job's),
//! integrate a worktree task, remove what a job's attempts kept, and say what it offers. Two
//! implement it: the JetStream executor of `ordo-coordinator` (`service::jetstream`: workers
//! on any machine) and the in-process executor of local mode (the `ordo` binary: attempts as
//! child processes, through the worker's one attempt path).

use std::collections::BTreeSet;

use ordo_proto::api::WorkerInfo;
use ordo_proto::{Dispatch, Integrate, JobSpec, Kill};

use crate::engine::Capacity;
use crate::store::JobRecord;

/// Runs attempts for a host. Calls come from the host's loop after the commit that allows
/// them (docs/design.md, "the commit rule"); none may block it for long: slow work goes to a
/// task of its own, and its outcome comes back to the loop as an engine event.
#[allow(async_fn_in_trait)]
pub trait Executor {
    /// Attempts in flight when the host stopped still run (workers elsewhere), rather than
    /// having died with it: a restarted host waits for their results instead of running them
    /// again.
    fn attempts_outlive_host(&self) -> bool;

    /// The queues a new job uses are ready to take its tasks (a JetStream consumer each).
    async fn open_queues(&mut self, queues: &BTreeSet<String>) -> Result<(), String>;

    /// Task slots a job submitted now could use (the denominator of its report's parallel
    /// efficiency). Local mode may grow its offer to what the job asks for (a job asking for
    /// six agents gets six whatever the CPUs): the new offer is in the next `capacity`.
    fn slots(
        &mut self,
        queues: &BTreeSet<String>,
        spec: &JobSpec,
        max_parallel: Option<u32>,
    ) -> u32;

    /// What is offered per queue now (slots, CPUs, memory), for the engine.
    fn capacity(&mut self) -> Vec<(String, Capacity)>;

    /// Whether a task handed to `queue` still waits for a slot there: then its workers have
    /// work while the next dispatch waits to share a commit (`driver`). Attempts started in
    /// this process start at once.
    fn queued(&self, _queue: &str) -> bool {
        false
    }

    /// Starts an attempt. `outbox`: its outbox entry, when the host keeps one; the executor
    /// reports it handed over (`Host::sent`).
    fn start(&mut self, dispatch: Dispatch, outbox: Option<u64>);

    /// Kills an attempt, or every attempt of a job (`index` and `attempt` `None`).
    async fn kill(&mut self, kill: Kill);

    /// Integrates a worktree task's attempt; the outcome comes back as `Event::Integrated`.
    fn integrate(&mut self, req: Integrate);

    /// Removes the worktrees and task branches a finished job's attempts kept.
    async fn prune(&mut self, job: &JobRecord);

    /// The workers and what they run (local mode has none: attempts run in its process).
    fn workers(&self) -> Vec<WorkerInfo>;
}
