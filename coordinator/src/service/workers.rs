//! The workers the coordinator has heard from (heartbeats) and what they offer: per queue, the
//! capacity the engine may dispatch into, the slots a new job could use, and the `workers`
//! listing. A worker silent for `timeout` offers nothing; one silent twelve times as long is
//! forgotten.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ordo_proto::api::WorkerInfo;
use ordo_proto::{Heartbeat, WorkerId};

use crate::engine::Capacity;

/// Most workers remembered at once.
const MAX_WORKERS: usize = 10_000;

#[derive(Debug)]
pub(crate) struct Registry {
    workers: HashMap<WorkerId, (Heartbeat, Instant)>,
    timeout: Duration,
    /// Tasks dispatched ahead per slot, waiting in the stream for a slot to free.
    prefetch: u32,
}

impl Registry {
    pub(crate) fn new(timeout: Duration, prefetch: u32) -> Registry {
        Registry {
            workers: HashMap::new(),
            timeout,
            prefetch,
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

    /// What the live workers of `queue` offer. Each slot also gets `prefetch` queued tasks, so
    /// a worker never waits for a commit between two tasks; the stream holds at most that many.
    pub(crate) fn capacity(&self, queue: &str) -> Capacity {
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
            let offered = hb.slots.saturating_mul(self.prefetch.saturating_add(1));
            cap.slots = cap.slots.saturating_add(offered);
            cap.cpus += hb.cpus;
            cap.memory_mb = cap.memory_mb.saturating_add(hb.memory_mb);
            cap.largest_cpus = cap.largest_cpus.max(hb.cpus);
            cap.largest_memory_mb = cap.largest_memory_mb.max(hb.memory_mb);
        }
        cap
    }

    /// The slots of the live workers serving `queue`, and how many they are.
    pub(crate) fn serving(&self, queue: &str) -> (u32, u32) {
        self.live()
            .filter(|hb| hb.queues.iter().any(|q| q == queue))
            .fold((0u32, 0u32), |(slots, n), hb| {
                (slots.saturating_add(hb.slots), n + 1)
            })
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
