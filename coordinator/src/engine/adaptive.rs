//! The adaptive limit of a pool whose tasks run agents (docs/design.md, agent runs): the pool's
//! size is a ceiling, the limit in force starts at min(size, 2), is halved (at least 1) when a
//! run ends on a rate limit or an overload, and rises by 1 after as many clean runs as the limit
//! in force; a level that was refused is probed again only after a cool-down (30 s, doubled
//! while it keeps being refused). Pure: the engine's clock is an argument. `Pools` holds one
//! per pool name, and records it (`Change::Pool`) whenever the limit or the refusals change.

use serde::{Deserialize, Serialize};

use super::state::Millis;

/// First cool-down before a refused level is probed again.
pub const COOL_DOWN_MS: u64 = 30_000;
/// Longest cool-down, however often a level was refused.
const MAX_COOL_DOWN_MS: u64 = 3_600_000;

/// Where an adaptive pool stands. Stored as it is (the `pools` table), so the limit in force
/// survives a restart and a failover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolLimit {
    /// The limit in force, before the ceiling of the size a job declares.
    pub limit: u32,
    /// Clean runs since the limit last changed.
    #[serde(default)]
    pub clean: u32,
    /// When the limit last came down.
    #[serde(default)]
    pub limited_at: Option<Millis>,
    /// Runs that ended on a rate limit or an overload, ever.
    #[serde(default)]
    pub refused_total: u64,
    /// The lowest level refused since the limit last rose past one, and until when it is not
    /// probed again.
    #[serde(default)]
    pub refused_level: Option<u32>,
    #[serde(default)]
    pub probe_after: Millis,
    /// The cool-down given to the last refusal.
    #[serde(default)]
    pub cool_down_ms: u64,
}

impl PoolLimit {
    /// A pool of `size` places, before any run.
    pub fn new(size: u32) -> PoolLimit {
        PoolLimit {
            limit: size.min(2),
            clean: 0,
            limited_at: None,
            refused_total: 0,
            refused_level: None,
            probe_after: 0,
            cool_down_ms: 0,
        }
    }

    /// The places a pool of `size` grants now.
    pub fn in_force(&self, size: u32) -> u32 {
        self.limit.min(size)
    }

    /// The places a pool of `size` grants agent runs, given its limit if it has one yet.
    pub fn granted(limit: Option<&PoolLimit>, size: u32) -> u32 {
        limit.map_or(size.min(2), |l| l.in_force(size))
    }

    /// A run that began at `began` ended on a rate limit or an overload at `now`: the limit is
    /// halved, unless the run began before the limit last came down (the same burst, already
    /// answered). Whether the limit changed.
    pub fn refused(&mut self, size: u32, began: Millis, now: Millis) -> bool {
        self.refused_total += 1;
        self.clean = 0;
        if self.limited_at.is_some_and(|at| began <= at) {
            return false;
        }
        let level = self.in_force(size).max(1);
        self.cool_down_ms = match self.refused_level {
            Some(refused) if level >= refused => self
                .cool_down_ms
                .saturating_mul(2)
                .clamp(COOL_DOWN_MS, MAX_COOL_DOWN_MS),
            _ => COOL_DOWN_MS,
        };
        self.refused_level = Some(level);
        self.probe_after = now.saturating_add(self.cool_down_ms);
        self.limit = (level / 2).max(1);
        self.limited_at = Some(now);
        true
    }

    /// A run ended without a rate limit at `now`: after as many as the limit in force, the
    /// limit rises by one, up to `size`, and to a refused level only once its cool-down is
    /// over. Whether the limit changed.
    pub fn clean(&mut self, size: u32, now: Millis) -> bool {
        let level = self.in_force(size);
        self.limit = level;
        self.clean = self.clean.saturating_add(1).min(level);
        if self.clean < level || level >= size {
            return false;
        }
        let next = level + 1;
        if self
            .refused_level
            .is_some_and(|refused| next >= refused && now < self.probe_after)
        {
            return false;
        }
        if self.refused_level.is_some_and(|refused| next > refused) {
            // The refused level held a whole round: the provider's cap has moved.
            self.refused_level = None;
            self.cool_down_ms = 0;
        }
        self.limit = next;
        self.clean = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clean runs until the limit changes (at most 100).
    fn grow(p: &mut PoolLimit, size: u32, now: Millis) -> u32 {
        for n in 1..=100 {
            if p.clean(size, now) {
                return n;
            }
        }
        panic!("the limit never rose: {p:?}");
    }

    #[test]
    fn starts_at_two_and_grows_by_one_per_round_up_to_the_size() {
        let mut p = PoolLimit::new(8);
        assert_eq!(p.in_force(8), 2);
        assert_eq!(PoolLimit::new(1).in_force(1), 1);
        for level in 2..8 {
            assert_eq!(grow(&mut p, 8, 0), level, "a round of {level} clean runs");
            assert_eq!(p.in_force(8), level + 1);
        }
        for _ in 0..20 {
            assert!(!p.clean(8, 0), "the size is the ceiling");
        }
        assert_eq!(p.in_force(8), 8);
        // A job declaring a smaller size sees its own ceiling.
        assert_eq!(p.in_force(3), 3);
    }

    #[test]
    fn a_refusal_halves_once_per_burst_and_counts_every_refused_run() {
        let mut p = PoolLimit::new(8);
        grow(&mut p, 8, 0);
        grow(&mut p, 8, 0);
        assert_eq!(p.in_force(8), 4);
        assert!(p.refused(8, 100, 1_000));
        assert_eq!(p.in_force(8), 2);
        assert_eq!(p.limited_at, Some(1_000));
        // Runs that began before the cut were of the same burst: counted, not halved again.
        assert!(!p.refused(8, 900, 1_100));
        assert!(!p.refused(8, 1_000, 1_200));
        assert_eq!(p.in_force(8), 2);
        assert_eq!(p.refused_total, 3);
        // A run that began after the cut halves again, never below 1.
        assert!(p.refused(8, 1_300, 1_400));
        assert!(p.refused(8, 1_500, 1_600));
        assert_eq!(p.in_force(8), 1);
    }

    #[test]
    fn a_refused_level_waits_for_its_cool_down_which_doubles_while_refused() {
        let mut p = PoolLimit::new(8);
        grow(&mut p, 8, 0);
        grow(&mut p, 8, 0);
        // The provider refuses a fourth run: down to 2, then 3, then held below 4.
        assert!(p.refused(8, 10, 100));
        grow(&mut p, 8, 200);
        assert_eq!(p.in_force(8), 3);
        for _ in 0..50 {
            assert!(!p.clean(8, 100 + COOL_DOWN_MS - 1), "4 is cooling down");
        }
        assert_eq!(p.in_force(8), 3);
        // Once the cool-down is over, 4 is probed; refused again, it waits twice as long.
        assert!(p.clean(8, 100 + COOL_DOWN_MS));
        assert_eq!(p.in_force(8), 4);
        let again = 200 + COOL_DOWN_MS;
        assert!(p.refused(8, again - 1, again));
        assert_eq!(p.in_force(8), 2);
        assert_eq!(p.cool_down_ms, 2 * COOL_DOWN_MS);
        grow(&mut p, 8, again);
        assert!(!p.clean(8, again + 2 * COOL_DOWN_MS - 1));
        assert!(!p.clean(8, again + 2 * COOL_DOWN_MS - 1));
        assert!(!p.clean(8, again + 2 * COOL_DOWN_MS - 1));
        assert_eq!(p.in_force(8), 3);
        assert!(p.clean(8, again + 2 * COOL_DOWN_MS));
        assert_eq!(p.in_force(8), 4);
        // Level 4 held a whole round: 5 is tried without waiting, and the next refusal starts
        // the cool-down afresh.
        assert_eq!(grow(&mut p, 8, again + 2 * COOL_DOWN_MS), 4);
        assert_eq!(p.in_force(8), 5);
        assert_eq!(p.refused_level, None);
        let later = again + 3 * COOL_DOWN_MS;
        assert!(p.refused(8, later - 1, later));
        assert_eq!(p.cool_down_ms, COOL_DOWN_MS);
    }

    #[test]
    fn stored_and_read_back_as_it_was() {
        let mut p = PoolLimit::new(8);
        grow(&mut p, 8, 0);
        p.refused(8, 1, 2);
        let bytes = serde_json::to_vec(&p).unwrap();
        assert_eq!(serde_json::from_slice::<PoolLimit>(&bytes).unwrap(), p);
    }
}
