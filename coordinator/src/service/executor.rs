//! The JetStream executor: attempts go to the workers of any machine as messages on their
//! queue's stream (from the outbox, `Nats-Msg-Id = job.task.attempt`), kills and prunes on
//! core NATS, integrations of worktree tasks to the task's queue like a task (`Ordo-Kind:
//! integrate`). Publishing happens in tasks of its own; the loop learns of a stored outbox
//! entry through `Input::Published`. Capacity is what live workers' heartbeats offer.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ordo_proto::api::WorkerInfo;
use ordo_proto::wire::{self, Dispatch, Integrate, Kill};
use ordo_proto::{AttemptRef, JobSpec, names};
use tokio::sync::mpsc;

use super::inputs::Input;
use super::workers::Registry;
use crate::bus::Bus;
use crate::engine::Capacity;
use crate::host::Executor;
use crate::store::JobRecord;

pub(crate) struct JetStream {
    pub(crate) client: async_nats::Client,
    pub(crate) bus: Arc<Bus>,
    /// The loop's own input channel, for background publishers.
    tx: mpsc::Sender<Input>,
    pub(crate) workers: Registry,
    queues: BTreeSet<String>,
    /// Stream sequence of each published attempt, to delete messages that must not run.
    pub(crate) published: HashMap<AttemptRef, u64>,
    /// Attempts handed to a queue whose result has not come (`queued`).
    handed: Handed,
}

impl JetStream {
    pub(crate) fn new(
        client: async_nats::Client,
        bus: Arc<Bus>,
        tx: mpsc::Sender<Input>,
        workers: Registry,
    ) -> JetStream {
        JetStream {
            client,
            bus,
            tx,
            workers,
            queues: BTreeSet::new(),
            published: HashMap::new(),
            handed: Handed::default(),
        }
    }

    /// Keeps, of the attempts handed over, those still in flight.
    pub(crate) fn keep_handed(&mut self, in_flight: impl Fn(&AttemptRef) -> bool) {
        self.handed.retain(in_flight);
    }

    /// An attempt's result came: its queue's pace is noted and its message forgotten.
    pub(crate) fn finished(&mut self, r: &ordo_proto::TaskResult) {
        let key = r.attempt_ref();
        if let Some(queue) = self.handed.queue_of.get(&key) {
            self.workers.ran(queue, r.duration_ms);
        }
        self.forget(&key);
    }

    /// An attempt will not be carried out: its message is forgotten.
    pub(crate) fn forget(&mut self, key: &AttemptRef) {
        self.published.remove(key);
        self.handed.remove(key);
    }

    /// Creates the queue's consumer once.
    pub(crate) async fn ensure_queue(&mut self, queue: &str) -> Result<(), crate::bus::Error> {
        if !self.queues.contains(queue) {
            self.bus.ensure_queue(queue).await?;
            self.queues.insert(queue.to_string());
        }
        Ok(())
    }
}

/// Attempts handed to a queue whose result has not come, with their count per queue.
#[derive(Default)]
struct Handed {
    queue_of: HashMap<AttemptRef, String>,
    per_queue: HashMap<String, usize>,
}

impl Handed {
    fn insert(&mut self, key: AttemptRef, queue: &str) {
        if self.queue_of.insert(key, queue.to_string()).is_some() {
            return;
        }
        match self.per_queue.get_mut(queue) {
            Some(n) => *n += 1,
            None => {
                self.per_queue.insert(queue.to_string(), 1);
            }
        }
    }

    fn remove(&mut self, key: &AttemptRef) {
        if let Some(q) = self.queue_of.remove(key) {
            uncount(&mut self.per_queue, &q);
        }
    }

    fn retain(&mut self, keep: impl Fn(&AttemptRef) -> bool) {
        let per_queue = &mut self.per_queue;
        self.queue_of.retain(|key, q| {
            let kept = keep(key);
            if !kept {
                uncount(per_queue, q);
            }
            kept
        });
    }

    fn on(&self, queue: &str) -> usize {
        self.per_queue.get(queue).copied().unwrap_or(0)
    }
}

fn uncount(per_queue: &mut HashMap<String, usize>, queue: &str) {
    if let Some(n) = per_queue.get_mut(queue) {
        *n = n.saturating_sub(1);
    }
}

impl Executor for JetStream {
    fn attempts_outlive_host(&self) -> bool {
        true
    }

    async fn open_queues(&mut self, queues: &BTreeSet<String>) -> Result<(), String> {
        for q in queues {
            self.ensure_queue(q).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn slots(&mut self, queues: &BTreeSet<String>, _: &JobSpec, _: Option<u32>) -> u32 {
        self.workers.slots(queues)
    }

    fn capacity(&mut self) -> Vec<(String, Capacity)> {
        self.workers.expire();
        self.queues
            .iter()
            .map(|q| (q.clone(), self.workers.capacity(q)))
            .collect()
    }

    /// Every slot of the queue's workers still has a task waiting for it in the stream
    /// (`--prefetch`; `Registry::every_slot_has_one_waiting`). Attempts in flight are counted
    /// from results, which free a slot, rather than from `Started` notices, which come after
    /// the pull that starts the next task.
    fn queued(&self, queue: &str) -> bool {
        self.workers
            .every_slot_has_one_waiting(queue, self.handed.on(queue))
    }

    /// Publishes an outbox entry in the background, retrying until JetStream stores it.
    /// Retries carry the same message id, so JetStream stores one copy.
    fn start(&mut self, d: Dispatch, outbox: Option<u64>) {
        self.handed.insert(d.attempt_ref(), &d.queue);
        let bus = self.bus.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                match bus.publish(&d).await {
                    Ok(stream_seq) => {
                        if let Some(outbox_seq) = outbox {
                            let key = d.attempt_ref();
                            let _ = tx
                                .send(Input::Published {
                                    outbox_seq,
                                    key,
                                    stream_seq,
                                })
                                .await;
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job = %d.job, task = %d.task, attempt = d.attempt.0, "publishing: {e}; retrying")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// Sends a kill to every worker; a cancelled job's undelivered messages never run.
    async fn kill(&mut self, k: Kill) {
        if k.index.is_none() {
            let gone: Vec<_> = self
                .published
                .iter()
                .filter(|(key, _)| key.job == k.job)
                .map(|(key, seq)| (*key, *seq))
                .collect();
            for (key, seq) in gone {
                self.bus.delete_task(seq).await;
                self.forget(&key);
            }
            self.handed.retain(|key| key.job != k.job);
        }
        let _ = self
            .client
            .publish(names::CONTROL_KILL, wire::encode(&k).into())
            .await;
    }

    /// Publishes an integration request in the background, retrying until JetStream stores
    /// it. Not kept in the outbox: a restarted coordinator queues an integrating task's
    /// integration again from its stored attempt (the same message id: a request still in
    /// the stream is de-duplicated, one already carried out merges as nothing new).
    fn integrate(&mut self, req: Integrate) {
        let bus = self.bus.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                match bus.publish_integration(&req).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(job = %req.job, task = %req.task, attempt = req.attempt.0, "publishing the integration: {e}; retrying")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// Asks every worker to remove what the job's attempts kept, if it is a worktree job
    /// (`ordo.control.prune`, best effort: a worker that is down keeps its cache's until the
    /// next prune).
    async fn prune(&mut self, rec: &JobRecord) {
        let Some(repository) = rec.spec.settings.repository.clone() else {
            return;
        };
        if !rec.spec.uses_worktrees() {
            return;
        }
        let msg = wire::Prune {
            job: rec.id,
            repository,
        };
        let _ = self
            .client
            .publish(names::CONTROL_PRUNE, wire::encode(&msg).into())
            .await;
    }

    fn workers(&self) -> Vec<WorkerInfo> {
        self.workers.list()
    }
}

#[cfg(test)]
mod tests {
    use ordo_proto::{Attempt, JobId, TaskIndex};

    use super::*;

    /// The count per queue follows every way an attempt stops being handed over.
    #[test]
    fn handed_attempts_are_counted_per_queue() {
        let job = JobId::new();
        let key = |i| AttemptRef {
            job,
            index: TaskIndex(i),
            attempt: Attempt(1),
        };
        let mut h = Handed::default();
        for i in 0..3 {
            h.insert(key(i), "default");
        }
        h.insert(key(0), "default");
        h.insert(key(9), "gpu");
        assert_eq!((h.on("default"), h.on("gpu"), h.on("none")), (3, 1, 0));
        h.remove(&key(1));
        h.remove(&key(1));
        assert_eq!(h.on("default"), 2);
        h.retain(|k| k.index != TaskIndex(9));
        assert_eq!((h.on("default"), h.on("gpu")), (2, 0));
    }
}
