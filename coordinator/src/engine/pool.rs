//! Capacity: the slots, CPUs and memory that executors offer, per queue, the named locks that
//! are held while tasks run, and the counted semaphores of `settings.pools` (docs/design.md, "Task
//! states", global across jobs like locks). Reserved at dispatch, released when the attempt ends.
//! A pool whose tasks run agents grants places up to its adaptive limit (`adaptive.rs`) rather
//! than its size.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Change;
use super::adaptive::PoolLimit;
use super::state::Millis;

/// What executors of one queue offer together, and the largest single one of them (a task
/// needing more than the largest can never run).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub slots: u32,
    pub cpus: f64,
    pub memory_mb: u64,
    pub largest_cpus: f64,
    pub largest_memory_mb: u64,
}

impl Capacity {
    /// One machine offering `slots` task slots, `cpus` and `memory_mb`.
    pub fn machine(slots: u32, cpus: f64, memory_mb: u64) -> Capacity {
        Capacity {
            slots,
            cpus,
            memory_mb,
            largest_cpus: cpus,
            largest_memory_mb: memory_mb,
        }
    }
}

/// Resources a task takes while it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Need {
    pub queue: String,
    pub cpus: f64,
    pub memory_mb: u64,
    /// The `settings.pools` semaphore it takes, and its size as its job declares it.
    pub semaphore: Option<(String, u32)>,
    /// It runs an agent: its pool grants places up to the pool's adaptive limit.
    pub agent: bool,
}

#[derive(Debug, Default)]
struct Pool {
    cap: Option<Capacity>,
    slots: u32,
    cpus: f64,
    memory_mb: u64,
}

/// Why a task cannot start now.
#[derive(Debug, PartialEq)]
pub enum Fit {
    Yes,
    /// Not now; maybe later.
    Wait,
    /// Never: no executor is large enough.
    Never(String),
}

/// Pools by queue; the pool named `*` serves queues that have none of their own (local mode).
#[derive(Debug, Default)]
pub struct Pools {
    pools: HashMap<String, Pool>,
    locks: HashSet<String>,
    /// Tasks holding each semaphore.
    semaphores: HashMap<String, u32>,
    /// The adaptive limits of the pools agent runs took.
    limits: BTreeMap<String, PoolLimit>,
}

pub const ANY_QUEUE: &str = "*";

impl Pools {
    pub fn set(&mut self, queue: &str, cap: Capacity) {
        self.pools.entry(queue.to_string()).or_default().cap = Some(cap);
    }

    fn pool(&self, queue: &str) -> Option<&Pool> {
        self.pools.get(queue).or_else(|| self.pools.get(ANY_QUEUE))
    }

    fn pool_mut(&mut self, queue: &str) -> Option<&mut Pool> {
        let key = if self.pools.contains_key(queue) {
            queue
        } else {
            ANY_QUEUE
        };
        self.pools.get_mut(key)
    }

    /// Whether any slot is free for `queue`: a cheap test before looking at tasks.
    pub fn has_slot(&self, queue: &str) -> bool {
        self.pool(queue)
            .and_then(|p| p.cap.map(|c| p.slots < c.slots))
            .unwrap_or(false)
    }

    pub fn fits(&self, need: &Need, locks: &[String]) -> Fit {
        let Some(pool) = self.pool(&need.queue) else {
            return Fit::Wait;
        };
        let Some(cap) = pool.cap else {
            return Fit::Wait;
        };
        if cap.slots > 0 && need.cpus > cap.largest_cpus + 1e-9 {
            return Fit::Never(format!(
                "needs {} CPUs but the largest worker of queue '{}' offers {}",
                need.cpus, need.queue, cap.largest_cpus
            ));
        }
        if cap.slots > 0 && need.memory_mb > cap.largest_memory_mb {
            return Fit::Never(format!(
                "needs {} MB of memory but the largest worker of queue '{}' offers {} MB",
                need.memory_mb, need.queue, cap.largest_memory_mb
            ));
        }
        if pool.slots >= cap.slots
            || pool.cpus + need.cpus > cap.cpus + 1e-9
            || pool.memory_mb.saturating_add(need.memory_mb) > cap.memory_mb
            || locks.iter().any(|l| self.locks.contains(l))
            || need.semaphore.as_ref().is_some_and(|(name, size)| {
                self.semaphores.get(name).copied().unwrap_or(0) >= self.places(name, *size, need)
            })
        {
            return Fit::Wait;
        }
        Fit::Yes
    }

    pub fn take(&mut self, need: &Need, locks: &[String]) {
        if let Some(p) = self.pool_mut(&need.queue) {
            p.slots = p.slots.saturating_add(1);
            p.cpus += need.cpus;
            p.memory_mb = p.memory_mb.saturating_add(need.memory_mb);
        }
        self.locks.extend(locks.iter().cloned());
        if let Some((name, size)) = &need.semaphore {
            let held = self.semaphores.entry(name.clone()).or_default();
            *held = held.saturating_add(1);
            if need.agent && !self.limits.contains_key(name) {
                self.limits.insert(name.clone(), PoolLimit::new(*size));
            }
        }
    }

    /// The places pool `name` of `size` grants the task needing `need`: its size for a
    /// command, its limit in force for an agent run.
    fn places(&self, name: &str, size: u32, need: &Need) -> u32 {
        if !need.agent {
            return size;
        }
        PoolLimit::granted(self.limits.get(name), size)
    }

    /// An agent run in `need`'s pool that began at `began` ended at `now`, on a rate limit or
    /// an overload (`refused`) or not: the pool's limit adapts. The change to record when the
    /// limit or the refusals changed.
    pub fn ran(
        &mut self,
        need: &Need,
        began: Millis,
        refused: bool,
        now: Millis,
    ) -> Option<Change> {
        let (name, size) = need.semaphore.as_ref().filter(|_| need.agent)?;
        let limit = self
            .limits
            .entry(name.clone())
            .or_insert_with(|| PoolLimit::new(*size));
        let changed = match refused {
            true => {
                limit.refused(*size, began, now);
                true
            }
            false => limit.clean(*size, now),
        };
        changed.then(|| Change::Pool {
            name: name.clone(),
            limit: limit.clone(),
        })
    }

    /// A pool's limit as it was recorded (a restart, a failover).
    pub fn restore(&mut self, name: String, limit: PoolLimit) {
        self.limits.insert(name, limit);
    }

    /// The adaptive pools' limits, by name.
    pub fn limits(&self) -> &BTreeMap<String, PoolLimit> {
        &self.limits
    }

    pub fn release(&mut self, need: &Need, locks: &[String]) {
        if let Some(p) = self.pool_mut(&need.queue) {
            p.slots = p.slots.saturating_sub(1);
            p.cpus = (p.cpus - need.cpus).max(0.0);
            p.memory_mb = p.memory_mb.saturating_sub(need.memory_mb);
        }
        for l in locks {
            self.locks.remove(l);
        }
        if let Some((name, _)) = &need.semaphore
            && let Some(n) = self.semaphores.get_mut(name)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Slots in use across every pool.
    pub fn busy_slots(&self) -> u32 {
        self.pools
            .values()
            .fold(0u32, |sum, p| sum.saturating_add(p.slots))
    }
}
