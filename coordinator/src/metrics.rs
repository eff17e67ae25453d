//! The coordinator's Prometheus metrics, fed by the engine's `Change`s and the service loop:
//! task transitions by state, tasks per state in running jobs, ready tasks (queue depth),
//! dispatch-to-start latency, task duration, busy and total slots, redb commit latency, and
//! results applied versus ignored (stale or duplicate), and what agent runs cost (dollars and
//! tokens, as the agents reported them), each adaptive pool's limit in force and refused
//! runs, stage runs and approval decisions by stage and verdict, `[[notify]]` deliveries
//! sent and failed, and the integration queue's batches, bisections and verifies run and saved,
//! and its speculative runs kept and discarded (with what the discarded ones cost).

use std::collections::HashMap;
use std::time::Duration;

use ordo_proto::gates::{StageRecord, Verdict};
use ordo_proto::{JobId, TaskIndex};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::{Change, Engine, Millis, TaskPhase, TaskState};

type Labels = Vec<(String, String)>;

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

pub struct Metrics {
    transitions: Family<Labels, Counter>,
    tasks: Family<Labels, Gauge>,
    queue_depth: Gauge,
    dispatch_to_start: Histogram,
    task_duration: Histogram,
    busy_slots: Gauge,
    total_slots: Gauge,
    commit_latency: Histogram,
    results: Family<Labels, Counter>,
    integrations: Family<Labels, Counter>,
    batches: Counter,
    bisections: Counter,
    batch_verifies: Counter,
    verifies_saved: Counter,
    speculation: Family<Labels, Counter>,
    speculation_discarded_cost: Counter<f64, std::sync::atomic::AtomicU64>,
    resolve_rounds: Family<Labels, Counter>,
    agent_cost: Counter<f64, std::sync::atomic::AtomicU64>,
    agent_tokens: Family<Labels, Counter>,
    pool_limit: Family<Labels, Gauge>,
    pool_limited: Family<Labels, Gauge>,
    stages: Family<Labels, Counter>,
    notify_sent: Counter,
    notify_failures: Counter,
    dispatched_at: HashMap<(JobId, TaskIndex), Millis>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics and the registry that exposes them.
    pub fn new() -> (Metrics, Registry) {
        let m = Metrics {
            transitions: Family::default(),
            tasks: Family::default(),
            queue_depth: Gauge::default(),
            dispatch_to_start: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            task_duration: Histogram::new(exponential_buckets(0.001, 2.0, 24)),
            busy_slots: Gauge::default(),
            total_slots: Gauge::default(),
            commit_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            results: Family::default(),
            integrations: Family::default(),
            batches: Counter::default(),
            bisections: Counter::default(),
            batch_verifies: Counter::default(),
            verifies_saved: Counter::default(),
            speculation: Family::default(),
            speculation_discarded_cost: Counter::default(),
            resolve_rounds: Family::default(),
            agent_cost: Counter::default(),
            agent_tokens: Family::default(),
            pool_limit: Family::default(),
            pool_limited: Family::default(),
            stages: Family::default(),
            notify_sent: Counter::default(),
            notify_failures: Counter::default(),
            dispatched_at: HashMap::new(),
        };
        let mut r = Registry::with_prefix("ordo");
        r.register(
            "task_transitions",
            "Task state transitions, by new state",
            m.transitions.clone(),
        );
        r.register("tasks", "Tasks of running jobs, by state", m.tasks.clone());
        r.register(
            "queue_depth",
            "Ready tasks waiting for a slot",
            m.queue_depth.clone(),
        );
        r.register(
            "dispatch_to_start_seconds",
            "Time from dispatch to a worker starting the task",
            m.dispatch_to_start.clone(),
        );
        r.register(
            "task_duration_seconds",
            "Duration of task attempts",
            m.task_duration.clone(),
        );
        r.register(
            "busy_slots",
            "Slots running or reserved for dispatched tasks",
            m.busy_slots.clone(),
        );
        r.register(
            "total_slots",
            "Slots (plus prefetch) of live workers",
            m.total_slots.clone(),
        );
        r.register(
            "redb_commit_seconds",
            "Latency of redb write transactions",
            m.commit_latency.clone(),
        );
        r.register(
            "agent_cost_usd",
            "US dollars agent runs reported spending",
            m.agent_cost.clone(),
        );
        r.register(
            "agent_tokens",
            "Tokens agent runs reported, by kind (input, output)",
            m.agent_tokens.clone(),
        );
        r.register(
            "pool_limit",
            "The limit in force of an adaptive pool (agent runs), by pool",
            m.pool_limit.clone(),
        );
        // A gauge read from the stored count, so it carries on across a restart or failover.
        r.register(
            "pool_limited_total",
            "Agent runs of an adaptive pool that ended on a rate limit or an overload, by pool",
            m.pool_limited.clone(),
        );
        r.register(
            "integrations",
            "Integrations of worktree tasks, by outcome (merged, unchanged, conflict, ...)",
            m.integrations.clone(),
        );
        r.register(
            "integration_batches",
            "Integrations that merged several tasks and verified them once (integration.batch)",
            m.batches.clone(),
        );
        r.register(
            "integration_bisections",
            "Batched integrations whose verify failed with several tasks merged (split in halves)",
            m.bisections.clone(),
        );
        r.register(
            "integration_verifies",
            "Integration verifies run by jobs with integration.batch above 1",
            m.batch_verifies.clone(),
        );
        r.register(
            "integration_verifies_saved",
            "Verifies one-at-a-time integration would have run in addition (the tasks of each \
             passing batch beyond its first; each bisection costs one: subtract \
             ordo_integration_bisections_total)",
            m.verifies_saved.clone(),
        );
        r.register(
            "speculation",
            "Speculative runs ended, by outcome (kept: their dependencies integrated as they \
             were; discarded: run again on the real tip)",
            m.speculation.clone(),
        );
        r.register(
            "speculation_discarded_cost_usd",
            "US dollars the agents of discarded speculative runs reported spending",
            m.speculation_discarded_cost.clone(),
        );
        r.register(
            "resolve_rounds",
            "Conflicts reworked in the task's own session, by result (resolved, markers_left)",
            m.resolve_rounds.clone(),
        );
        r.register(
            "stage",
            "Stage runs and approval decisions applied, by stage and verdict \
             (pass, changes, fail, none)",
            m.stages.clone(),
        );
        r.register(
            "results",
            "Worker results, applied or ignored",
            m.results.clone(),
        );
        r.register(
            "notify_sent",
            "[[notify]] notifications delivered (answered 2xx)",
            m.notify_sent.clone(),
        );
        r.register(
            "notify_failures",
            "[[notify]] delivery attempts that failed (each retry counts)",
            m.notify_failures.clone(),
        );
        (m, r)
    }

    /// Deliveries of notifications that ended: `sent` delivered, `failed` not.
    pub fn notified(&self, sent: u64, failed: u64) {
        if sent > 0 {
            self.notify_sent.inc_by(sent);
        }
        if failed > 0 {
            self.notify_failures.inc_by(failed);
        }
    }

    pub fn observe(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Task {
                    job, index, state, ..
                } => {
                    self.transitions
                        .get_or_create(&label("state", state.name()))
                        .inc();
                    match state {
                        TaskState::Dispatched { at, .. } => {
                            self.dispatched_at.insert((*job, *index), *at);
                        }
                        TaskState::Running { started, .. } => {
                            if let Some(at) = self.dispatched_at.remove(&(*job, *index)) {
                                let secs = started.saturating_sub(at) as f64 / 1000.0;
                                self.dispatch_to_start.observe(secs);
                            }
                        }
                        s if s.is_terminal() => {
                            self.dispatched_at.remove(&(*job, *index));
                        }
                        _ => {}
                    }
                }
                Change::Attempt(r) => {
                    for s in &r.stages {
                        self.stage(s);
                    }
                    if let Some(w) = r.workspace.as_deref().filter(|w| w.resolve_round()) {
                        let result = if w.unresolved.is_empty() {
                            "resolved"
                        } else {
                            "markers_left"
                        };
                        self.resolve_rounds
                            .get_or_create(&label("result", result))
                            .inc();
                    }
                    if let Some(a) = &r.agent {
                        if let Some(c) = a.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
                            self.agent_cost.inc_by(c);
                        }
                        for (kind, n) in [("input", a.input_tokens), ("output", a.output_tokens)] {
                            self.agent_tokens
                                .get_or_create(&label("kind", kind))
                                .inc_by(n);
                        }
                    }
                    // No `running` transition came (the task ended before the worker's
                    // `Started` delay): the result tells when it started (worker's clock).
                    if let Some(at) = self.dispatched_at.remove(&(r.job, r.index)) {
                        let secs = r.started_at_ms.saturating_sub(at) as f64 / 1000.0;
                        self.dispatch_to_start.observe(secs);
                    }
                    self.results.get_or_create(&label("kind", "applied")).inc();
                    self.task_duration.observe(r.duration_ms as f64 / 1000.0);
                }
                Change::Ignored { .. } => {
                    self.results.get_or_create(&label("kind", "ignored")).inc();
                }
                Change::Integrated { outcome, .. } => {
                    self.integrations
                        .get_or_create(&label("outcome", outcome.name()))
                        .inc();
                }
                Change::Batch {
                    tasks,
                    verified,
                    bisected,
                    voided,
                    ..
                } => self.batch(tasks.len(), *verified, *bisected, *voided),
                Change::Speculation { kept, cost_usd, .. } => {
                    let outcome = if *kept { "kept" } else { "discarded" };
                    self.speculation
                        .get_or_create(&label("outcome", outcome))
                        .inc();
                    if let Some(c) = cost_usd.filter(|c| !*kept && c.is_finite() && *c > 0.0) {
                        self.speculation_discarded_cost.inc_by(c);
                    }
                }
                Change::Stage { record, .. } => self.stage(record),
                Change::Job { .. } | Change::Budget { .. } | Change::Pool { .. } => {}
            }
        }
    }

    /// Gauges sampled from the engine (live jobs only) and the live capacity.
    pub fn sample(&self, engine: &Engine, total_slots: u32) {
        let mut counts: HashMap<&'static str, i64> =
            TaskPhase::ALL.iter().map(|s| (s.name(), 0)).collect();
        for job in engine.job_ids() {
            for t in engine.tasks(&job).unwrap_or_default() {
                *counts.entry(t.name()).or_default() += 1;
            }
        }
        for (state, n) in &counts {
            self.tasks.get_or_create(&label("state", state)).set(*n);
        }
        self.queue_depth.set(counts["ready"]);
        self.busy_slots.set(engine.busy_slots() as i64);
        self.total_slots.set(total_slots as i64);
        for (name, limit) in engine.pool_limits() {
            let pool = label("pool", name);
            self.pool_limit.get_or_create(&pool).set(limit.limit.into());
            let refused = i64::try_from(limit.refused_total).unwrap_or(i64::MAX);
            self.pool_limited.get_or_create(&pool).set(refused);
        }
    }

    /// One integration of a job with batches on (`Change::Batch`): as the report counts it
    /// (`BatchSummary::add`), the saving before bisections' cost.
    fn batch(&self, tasks: usize, verified: bool, bisected: bool, voided: bool) {
        if voided {
            if verified {
                self.batch_verifies.inc();
            }
            return;
        }
        if tasks > 1 {
            self.batches.inc();
        }
        if !verified {
            return;
        }
        self.batch_verifies.inc();
        if bisected {
            self.bisections.inc();
        } else {
            self.verifies_saved.inc_by(tasks as u64 - 1);
        }
    }

    /// One stage record applied (`ordo_stage_total{stage,verdict}`).
    fn stage(&self, s: &StageRecord) {
        let labels = vec![
            ("stage".to_string(), s.name.clone()),
            (
                "verdict".to_string(),
                Verdict::name_or_none(s.verdict).to_string(),
            ),
        ];
        self.stages.get_or_create(&labels).inc();
    }

    pub fn commit(&self, took: Duration) {
        self.commit_latency.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use ordo_proto::gates::{StageKind, StageRecord, Verdict};
    use ordo_proto::{Attempt, Dispatch, JobId, Outcome, Program, TaskIndex, TaskResult};

    use super::*;

    /// Every stage record applied counts once, by stage and verdict: the result's and the
    /// engine's (an approval decision).
    #[test]
    fn stage_records_are_counted_by_stage_and_verdict() {
        let (mut m, registry) = Metrics::new();
        let job = JobId::new();
        let record = |name: &str, verdict| StageRecord {
            name: name.into(),
            kind: Some(StageKind::Agent),
            round: 1,
            verdict,
            ..Default::default()
        };
        let d = Dispatch::new(
            job,
            ordo_proto::TaskName::new("a").unwrap(),
            TaskIndex(0),
            Attempt(1),
            Program::Shell("true".into()),
        );
        let mut r = TaskResult::new(&d, "w1".into(), Outcome::Succeeded, 0, "");
        r.stages = vec![
            record("review", Some(Verdict::Changes)),
            record("review", Some(Verdict::Pass)),
            record("lint", None),
        ];
        m.observe(&[
            Change::Attempt(r),
            Change::Stage {
                job,
                index: TaskIndex(0),
                attempt: Attempt(1),
                record: record("sign-off", Some(Verdict::Pass)),
            },
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"ordo_stage_total{stage="review",verdict="changes"} 1"#,
            r#"ordo_stage_total{stage="review",verdict="pass"} 1"#,
            r#"ordo_stage_total{stage="lint",verdict="none"} 1"#,
            r#"ordo_stage_total{stage="sign-off",verdict="pass"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }

    /// Each integration record of a job with batches counts: batches of several tasks, verifies
    /// run, bisections, and the verifies a passing batch saved.
    #[test]
    fn batches_are_counted() {
        let (mut m, registry) = Metrics::new();
        let job = JobId::new();
        let batch = |tasks: &[u32], verified, bisected| Change::Batch {
            job,
            tasks: tasks.iter().map(|&i| TaskIndex(i)).collect(),
            verified,
            bisected,
            voided: false,
            at: 0,
        };
        let void = Change::Batch {
            job,
            tasks: vec![TaskIndex(6), TaskIndex(7)],
            verified: true,
            bisected: false,
            voided: true,
            at: 0,
        };
        m.observe(&[
            batch(&[0, 1, 2, 3], true, false),
            batch(&[4, 5], true, true),
            void,
            batch(&[4], true, false),
            batch(&[5], false, false),
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "ordo_integration_batches_total 2",
            "ordo_integration_verifies_total 4",
            "ordo_integration_bisections_total 1",
            "ordo_integration_verifies_saved_total 3",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }

    /// Each speculative run's end counts once by outcome; what the discarded ones spent adds
    /// up (a kept run's cost is not discarded).
    #[test]
    fn speculation_is_counted() {
        let (mut m, registry) = Metrics::new();
        let job = JobId::new();
        let speculation = |index: u32, kept, cost_usd| Change::Speculation {
            job,
            index: TaskIndex(index),
            attempt: Attempt(1),
            on: vec![TaskIndex(0)],
            kept,
            cost_usd,
            at: 0,
        };
        m.observe(&[
            speculation(1, true, Some(4.0)),
            speculation(2, false, Some(0.25)),
            speculation(3, false, None),
            speculation(4, false, Some(0.5)),
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"ordo_speculation_total{outcome="kept"} 1"#,
            r#"ordo_speculation_total{outcome="discarded"} 3"#,
            "ordo_speculation_discarded_cost_usd_total 0.75",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
