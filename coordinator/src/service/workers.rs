//! The workers the coordinator has heard from (heartbeats) and what they offer: per queue, the
//! capacity the engine may dispatch into, the slots a new job could use, and the `workers`
//! listing. A worker silent for `timeout` offers nothing; one silent twelve times as long is
//! forgotten. Each queue's capacity holds `prefetch` waiting tasks per slot, twice that while
//! its tasks run short (`SHORT_RUN_MS`), four times while they run in milliseconds
//! (`names::QUICK_RUN_MS`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ordo_proto::api::WorkerInfo;
use ordo_proto::{Heartbeat, WorkerId, names};

use crate::engine::Capacity;

/// Most workers remembered at once.
const MAX_WORKERS: usize = 10_000;

/// A queue whose recent runs average less than this is one of short tasks: its stream then
/// holds twice `prefetch` waiting tasks per slot. A slot of short tasks frees every few
/// milliseconds, and a dispatch that cannot wait to share a commit (its queue has too few
/// tasks waiting) costs a commit of its own; the deeper stream lets more results share one
/// (docs/design.md, "Where a task's time goes"). A task of a higher priority queued behind the
/// extra ones waits at most `prefetch` runs of this length more.
const SHORT_RUN_MS: u64 = 100;

#[derive(Debug)]
pub(crate) struct Registry {
    workers: HashMap<WorkerId, (Heartbeat, Instant)>,
    timeout: Duration,
    /// Tasks dispatched ahead per slot, waiting in the stream for a slot to free.
    prefetch: u32,
    /// Per queue, the moving average of its recent runs' durations in milliseconds.
    pace: HashMap<String, u64>,
}

impl Registry {
    pub(crate) fn new(timeout: Duration, prefetch: u32) -> Registry {
        Registry {
            workers: HashMap::new(),
            timeout,
            prefetch,
            pace: HashMap::new(),
        }
    }

    /// A run of `queue` took `ms` (its result came).
    pub(crate) fn ran(&mut self, queue: &str, ms: u64) {
        match self.pace.get_mut(queue) {
            Some(avg) => *avg = names::pace_after(Some(*avg), ms),
            None => {
                self.pace
                    .insert(queue.to_string(), names::pace_after(None, ms));
            }
        }
    }

    /// Waiting tasks per slot the stream of `queue` may hold (module docs).
    fn ahead(&self, queue: &str) -> u32 {
        match self.pace.get(queue) {
            // Results then share a commit for about as long as the driver lets them wait
            // (`Policy::COORDINATOR`'s `group_delay`); a task of a higher priority waits at
            // most three more quick runs per slot.
            Some(ms) if *ms < names::QUICK_RUN_MS => self.prefetch.saturating_mul(4),
            Some(ms) if *ms < SHORT_RUN_MS => self.prefetch.saturating_mul(2),
            _ => self.prefetch,
        }
    }

    /// Records a worker's heartbeat; a new worker beyond `MAX_WORKERS` is refused (heartbeats
    /// come from the network: a flood of invented ids must not grow this without bound).
    pub(crate) fn heartbeat(&mut self, hb: Heartbeat) -> Result<(), String> {
        if self.workers.len() >= MAX_WORKERS && !self.workers.contains_key(&hb.worker) {
            return Err(format!(
                "worker {} refused: {MAX_WORKERS} workers are already known",
                hb.worker
            ));
        }
        self.workers.insert(hb.worker.clone(), (hb, Instant::now()));
        Ok(())
    }

    /// Forgets workers long gone.
    pub(crate) fn expire(&mut self) {
        let forget = self.timeout * 12;
        self.workers.retain(|_, (_, seen)| seen.elapsed() < forget);
    }

    fn live(&self) -> impl Iterator<Item = &Heartbeat> {
        self.workers
            .values()
            .filter(|(hb, seen)| seen.elapsed() < self.timeout && !hb.draining)
            .map(|(hb, _)| hb)
    }

    /// What the live workers of `queue` offer. Each slot also gets `prefetch` queued tasks
    /// (two or four times that for short tasks), so a worker never waits for a commit between
    /// two tasks; the stream holds at most that many.
    pub(crate) fn capacity(&self, queue: &str) -> Capacity {
        let ahead = self.ahead(queue);
        let mut cap = Capacity {
            slots: 0,
            cpus: 0.0,
            memory_mb: 0,
            largest_cpus: 0.0,
            largest_memory_mb: 0,
        };
        for hb in self
            .live()
            .filter(|hb| hb.queues.iter().any(|q| q == queue))
        {
            // Heartbeats are bounded when they arrive; the sums saturate all the same.
            let offered = hb.slots.saturating_mul(ahead.saturating_add(1));
            cap.slots = cap.slots.saturating_add(offered);
            cap.cpus += hb.cpus;
            cap.memory_mb = cap.memory_mb.saturating_add(hb.memory_mb);
            cap.largest_cpus = cap.largest_cpus.max(hb.cpus);
            cap.largest_memory_mb = cap.largest_memory_mb.max(hb.memory_mb);
        }
        cap
    }

    /// With `in_flight` attempts handed to `queue` and no result yet, whether every slot of
    /// its live workers still has a task waiting for it in the stream (more than twice their
    /// slots in flight): a dispatch to it may then wait to share a commit, and no slot runs dry
    /// before that commit's dispatches arrive.
    pub(crate) fn every_slot_has_one_waiting(&self, queue: &str, in_flight: usize) -> bool {
        let slots = self
            .live()
            .filter(|hb| hb.queues.iter().any(|q| q == queue))
            .fold(0usize, |slots, hb| slots.saturating_add(hb.slots as usize));
        in_flight > slots.saturating_mul(2)
    }

    /// Slots of the live workers serving any of `queues`.
    pub(crate) fn slots(&self, queues: &BTreeSet<String>) -> u32 {
        self.live()
            .filter(|hb| hb.queues.iter().any(|q| queues.contains(q)))
            .fold(0u32, |sum, hb| sum.saturating_add(hb.slots))
    }

    /// Every worker heard from, by id.
    pub(crate) fn list(&self) -> Vec<WorkerInfo> {
        let mut list: Vec<_> = self
            .workers
            .values()
            .map(|(hb, seen)| WorkerInfo {
                heartbeat: hb.clone(),
                age_ms: seen.elapsed().as_millis() as u64,
            })
            .collect();
        list.sort_by(|a, b| a.heartbeat.worker.cmp(&b.heartbeat.worker));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, slots: u32) -> Heartbeat {
        Heartbeat {
            worker: WorkerId::new(id),
            host: "h".into(),
            queues: vec!["default".into()],
            slots,
            busy: 0,
            cpus: 2.0,
            memory_mb: 1024,
            draining: false,
            at_ms: 0,
            note: None,
        }
    }

    #[test]
    fn short_tasks_get_a_deeper_stream() {
        let mut r = Registry::new(Duration::from_secs(10), 1);
        r.heartbeat(worker("w", 4)).unwrap();
        // Nothing ran yet: one waiting task per slot.
        assert_eq!(r.capacity("default").slots, 8);
        // Runs of milliseconds: four waiting per slot; of some tens: two.
        for _ in 0..20 {
            r.ran("default", 3);
        }
        assert_eq!(r.capacity("default").slots, 20);
        for _ in 0..20 {
            r.ran("default", 50);
        }
        assert_eq!(r.capacity("default").slots, 12);
        // Runs grow long: back to one per slot once the average passes the bound.
        let mut n = 0;
        while r.capacity("default").slots != 8 {
            r.ran("default", 60_000);
            n += 1;
            assert!(n < 5, "the average follows the recent runs");
        }
        // A duration no run takes (the worker's word for it) neither wraps nor sticks.
        r.ran("default", u64::MAX);
        r.ran("default", u64::MAX);
        assert_eq!(r.capacity("default").slots, 8);
        // `--prefetch 0` stays 0.
        let mut none = Registry::new(Duration::from_secs(10), 0);
        none.heartbeat(worker("w", 4)).unwrap();
        none.ran("default", 1);
        assert_eq!(none.capacity("default").slots, 4);
    }

    /// A dispatch may wait for a commit only while every slot, not just every worker, has a
    /// task waiting: with one waiting per worker its other slots run dry before the commit's
    /// dispatches arrive.
    #[test]
    fn results_wait_for_a_commit_while_every_slot_has_a_task_waiting() {
        let mut r = Registry::new(Duration::from_secs(10), 4);
        r.heartbeat(worker("a", 4)).unwrap();
        r.heartbeat(worker("b", 2)).unwrap();
        assert!(r.every_slot_has_one_waiting("default", 13));
        assert!(!r.every_slot_has_one_waiting("default", 12));
        assert!(
            !r.every_slot_has_one_waiting("default", 9),
            "one waiting per worker, and one more: the other slots have none"
        );
        assert!(!r.every_slot_has_one_waiting("gpu", 0), "no workers");
    }
}
