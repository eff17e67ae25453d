//! The worker's Prometheus metrics: busy and total slots, attempts run by outcome, and their
//! durations. Served at `--metrics-addr`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use ordo_proto::TaskResult;

#[derive(Clone)]
pub struct Metrics {
    pub busy_slots: Gauge,
    pub total_slots: Gauge,
    tasks: Family<Vec<(String, String)>, Counter>,
    duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(slots: u32) -> (Metrics, Registry) {
        let m = Metrics {
            busy_slots: Gauge::default(),
            total_slots: Gauge::default(),
            tasks: Family::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 24)),
        };
        m.total_slots.set(slots as i64);
        let mut r = Registry::with_prefix("ordo_worker");
        r.register("busy_slots", "Slots running a task", m.busy_slots.clone());
        r.register(
            "total_slots",
            "Task slots of this worker",
            m.total_slots.clone(),
        );
        r.register("tasks", "Attempts run, by outcome", m.tasks.clone());
        r.register(
            "task_duration_seconds",
            "Duration of attempts",
            m.duration.clone(),
        );
        (m, r)
    }

    pub fn finished(&self, r: &TaskResult) {
        let outcome = format!("{:?}", r.outcome).to_lowercase();
        self.tasks
            .get_or_create(&vec![("outcome".to_string(), outcome)])
            .inc();
        self.duration.observe(r.duration_ms as f64 / 1000.0);
    }
}
