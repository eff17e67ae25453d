//! Engine tests: each semantic of docs/design.md, "Task states" on a small job, then model-based
//! runs over random DAGs with a simulated executor that starts, finishes, duplicates, replays stale
//! attempts and reorders results, checking the module invariants after every step. No sleeps: time
//! is data.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ordo_proto::{
    AgentRun, Attempt, Deps, Dispatch, ExecutionMode, JobId, JobSpec, Jump, Outcome, RateLimit,
    TaskIndex, TaskName, TaskResult, TaskSpec, validate::validate,
};

use super::adaptive::COOL_DOWN_MS;
use super::state::legal;
use super::*;

fn spec(tasks: Vec<TaskSpec>) -> JobSpec {
    JobSpec {
        name: "test".into(),
        tasks,
        ..Default::default()
    }
}

fn task(name: &str, deps: &[&str]) -> TaskSpec {
    let mut t = TaskSpec::shell(name, "true");
    // Declared, even when empty: these jobs are parallel (`JobSpec::mode_decision`).
    t.depends_on = Deps::declared(deps.iter().map(|d| TaskName::new(*d).unwrap()).collect());
    t
}

/// What a simulated executor reports for `d`: exit 0 or 1, 1 ms, no output.
fn sim_result(
    d: &Dispatch,
    worker: ordo_proto::WorkerId,
    delivery: u32,
    outcome: Outcome,
    now: Millis,
) -> TaskResult {
    let mut r = TaskResult::new(d, worker, outcome, now, format!("{outcome:?}"));
    r.exit_code = Some(if outcome.is_success() { 0 } else { 1 });
    r.duration_ms = 1;
    r.command_ms = 1;
    r.delivery = delivery;
    r
}

/// Drives one job through the engine and remembers everything it said.
struct Harness {
    engine: Engine,
    job: JobId,
    now: Millis,
    in_flight: Vec<Dispatch>,
    dispatched: Vec<String>,
    killed: Vec<u32>,
    integrations: Vec<ordo_proto::Integrate>,
    job_state: Option<JobState>,
    /// Each task's last recorded state (kept after the engine drops a finished job).
    recorded: HashMap<u32, TaskState>,
}

impl Harness {
    fn new(spec: JobSpec, slots: u32) -> Harness {
        Harness::with(spec, slots, JobOptions::default())
    }

    fn with(spec: JobSpec, slots: u32, options: JobOptions) -> Harness {
        Harness::starting(spec, slots, options, None)
    }

    /// A job resumed from `saved` (a restarted engine).
    fn resumed(spec: JobSpec, slots: u32, saved: Saved) -> Harness {
        Harness::starting(spec, slots, JobOptions::default(), Some(saved))
    }

    fn starting(spec: JobSpec, slots: u32, options: JobOptions, saved: Option<Saved>) -> Harness {
        let dag = validate(&spec).expect("valid spec");
        let mut h = Harness {
            engine: Engine::new(),
            job: JobId::new(),
            now: 1_000,
            in_flight: Vec::new(),
            dispatched: Vec::new(),
            killed: Vec::new(),
            integrations: Vec::new(),
            job_state: None,
            recorded: HashMap::new(),
        };
        h.apply(Event::Capacity {
            queue: ANY_QUEUE.into(),
            capacity: Capacity::machine(slots, 4.0, 8192),
        });
        h.apply(Event::Submit {
            job: h.job,
            spec: Arc::new(spec),
            dag: Arc::new(dag),
            options,
            saved,
        });
        h
    }

    fn apply(&mut self, e: Event) -> Vec<Action> {
        let actions = self.engine.apply(self.now, e);
        for a in &actions {
            match a {
                Action::Dispatch(d) => {
                    self.dispatched.push(d.task.to_string());
                    self.in_flight.push(d.clone());
                }
                Action::Kill { index, .. } => self.killed.push(index.0),
                Action::Integrate(i) => self.integrations.push(i.clone()),
                Action::Record(Change::Job { state, .. }) => self.job_state = Some(*state),
                Action::Record(Change::Task { index, state, .. }) => {
                    self.recorded.insert(index.0, state.clone());
                }
                Action::Record(_) => {}
            }
        }
        actions
    }

    fn result(&self, d: &Dispatch, outcome: Outcome) -> TaskResult {
        sim_result(d, "sim".into(), 0, outcome, self.now)
    }

    /// Finishes the in-flight attempt of `name` with `outcome`.
    fn finish(&mut self, name: &str, outcome: Outcome) -> Vec<Action> {
        let pos = self
            .in_flight
            .iter()
            .position(|d| d.task.as_str() == name)
            .unwrap_or_else(|| panic!("{name} is not in flight: {:?}", self.in_flight));
        let d = self.in_flight.remove(pos);
        let r = self.result(&d, outcome);
        self.apply(Event::Finished(r))
    }

    fn running(&self) -> Vec<&str> {
        self.in_flight.iter().map(|d| d.task.as_str()).collect()
    }

    fn state(&self, i: usize) -> TaskState {
        let live = self.engine.tasks(&self.job).map(|t| t[i].clone());
        let recorded = self.recorded.get(&(i as u32)).cloned();
        if let Some(live) = &live {
            assert_eq!(
                Some(live),
                recorded.as_ref(),
                "store and engine disagree on task {i}"
            );
        }
        recorded.unwrap_or(TaskState::Pending)
    }

    fn advance(&mut self, ms: Millis) -> Vec<Action> {
        self.now += ms;
        self.apply(Event::Tick)
    }
}

fn last_task_states(actions: &[Action]) -> HashMap<u32, TaskState> {
    let mut m = HashMap::new();
    for a in actions {
        if let Action::Record(Change::Task { index, state, .. }) = a {
            m.insert(index.0, state.clone());
        }
    }
    m
}

#[test]
fn dependencies_run_in_order_and_job_succeeds() {
    let mut h = Harness::new(
        spec(vec![task("a", &[]), task("b", &["a"]), task("c", &["a"])]),
        4,
    );
    assert_eq!(h.running(), vec!["a"]);
    h.finish("a", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["b", "c"]);
    h.finish("c", Outcome::Succeeded);
    assert_eq!(h.job_state, Some(JobState::Running));
    h.finish("b", Outcome::Succeeded);
    assert_eq!(h.job_state, Some(JobState::Succeeded));
    assert!(h.engine.is_idle());
}

#[test]
fn failure_skips_dependents_and_independent_branches_go_on() {
    let mut h = Harness::new(
        spec(vec![
            task("a", &[]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("x", &[]),
        ]),
        4,
    );
    let actions = h.finish("a", Outcome::Failed);
    let states = last_task_states(&actions);
    assert!(matches!(&states[&1], TaskState::Skipped { reason } if reason.contains("'a'")));
    assert!(matches!(states[&2], TaskState::Skipped { .. }));
    assert_eq!(h.running(), vec!["x"]);
    h.finish("x", Outcome::Succeeded);
    assert_eq!(h.job_state, Some(JobState::Failed));
}

#[test]
fn allow_failure_lets_dependents_run_and_job_succeed() {
    let mut a = task("a", &[]);
    a.allow_failure = true;
    let mut h = Harness::new(spec(vec![a, task("b", &["a"])]), 4);
    h.finish("a", Outcome::Failed);
    assert_eq!(h.running(), vec!["b"]);
    h.finish("b", Outcome::Succeeded);
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

#[test]
fn fail_fast_kills_running_and_cancels_the_rest() {
    let mut s = spec(vec![task("a", &[]), task("b", &[]), task("c", &["b"])]);
    s.settings.fail_fast = true;
    let mut h = Harness::new(s, 4);
    // b heads the longer path, so it is dispatched first.
    assert_eq!(h.running(), vec!["b", "a"]);
    h.finish("a", Outcome::Failed);
    assert_eq!(h.killed, vec![1]);
    assert!(matches!(h.state(2), TaskState::Cancelled { .. }));
    h.finish("b", Outcome::Cancelled);
    assert_eq!(h.job_state, Some(JobState::Failed));
}

#[test]
fn retries_back_off_exponentially_up_to_max_attempts() {
    let mut a = task("a", &[]);
    a.max_attempts = Some(3);
    a.retry_backoff = Some(ordo_proto::Dur::secs(10));
    let mut h = Harness::new(spec(vec![a]), 1);
    h.finish("a", Outcome::Failed);
    let TaskState::RetryWait { until, .. } = h.state(0) else {
        panic!("expected retry_wait, got {:?}", h.state(0))
    };
    let first = until - h.now;
    assert!((8_000..=12_000).contains(&first), "backoff {first} ms");
    assert_eq!(h.engine.next_wakeup(), Some(until));
    h.advance(first - 1);
    assert!(h.running().is_empty(), "retried before the backoff expired");
    h.advance(1);
    assert_eq!(h.running(), vec!["a"]);
    assert_eq!(h.in_flight[0].attempt, Attempt(2));
    h.finish("a", Outcome::VerifyFailed);
    let TaskState::RetryWait { until, .. } = h.state(0) else {
        panic!()
    };
    let second = until - h.now;
    assert!(
        (16_000..=24_000).contains(&second),
        "second backoff {second} ms"
    );
    h.advance(second);
    h.finish("a", Outcome::TimedOut);
    assert_eq!(h.job_state, Some(JobState::Failed));
    assert_eq!(h.dispatched.len(), 3);
}

/// The single `Ignored` record in `actions`, if that is all they are.
fn ignored(actions: &[Action]) -> Option<(Ignore, &str)> {
    match actions {
        [Action::Record(Change::Ignored { kind, why, .. })] => Some((*kind, why.as_str())),
        _ => None,
    }
}

#[test]
fn a_later_delivery_takes_over_and_the_older_ones_result_is_stale() {
    let mut h = Harness::new(spec(vec![task("a", &[]), task("b", &["a"])]), 1);
    let d = h.in_flight[0].clone();
    let started = |worker: &str, delivery| Event::Started {
        job: d.job,
        index: TaskIndex(0),
        attempt: d.attempt,
        worker: worker.into(),
        delivery,
    };
    h.apply(started("w1", 1));
    assert!(matches!(h.state(0), TaskState::Running { ref worker, .. } if worker == "w1"));
    // w1 went silent for a whole ack wait: JetStream gave the message to w2.
    h.apply(started("w2", 2));
    assert!(matches!(h.state(0), TaskState::Running { ref worker, .. } if worker == "w2"));
    // An older delivery's start changes nothing.
    assert!(h.apply(started("w1", 1)).is_empty());
    // w1 wakes up and reports: stale, and the task is still running on w2.
    let mut late = h.result(&d, Outcome::Succeeded);
    late.worker = "w1".into();
    late.delivery = 1;
    let actions = h.apply(Event::Finished(late.clone()));
    assert_eq!(
        ignored(&actions).map(|i| i.0),
        Some(Ignore::Stale),
        "{actions:?}"
    );
    assert!(matches!(h.state(0), TaskState::Running { .. }));
    // w2's result is applied.
    let mut fresh = late.clone();
    fresh.worker = "w2".into();
    fresh.delivery = 2;
    h.in_flight.clear();
    h.apply(Event::Finished(fresh.clone()));
    assert!(matches!(h.state(0), TaskState::Succeeded { .. }));
    assert_eq!(h.running(), ["b"]);
    // Afterwards: the same result again is a duplicate, the older delivery's stale.
    let again = h.apply(Event::Finished(fresh));
    assert_eq!(
        ignored(&again).map(|i| i.0),
        Some(Ignore::Duplicate),
        "{again:?}"
    );
    let older = h.apply(Event::Finished(late));
    assert_eq!(
        ignored(&older).map(|i| i.0),
        Some(Ignore::Stale),
        "{older:?}"
    );
}

#[test]
fn a_result_whose_start_was_missed_is_applied_and_an_abandoned_one_never_is() {
    let mut h = Harness::new(spec(vec![task("a", &[]), task("b", &[])]), 2);
    // No `Started` arrived (a best-effort notice): a later delivery's result still counts.
    let a = h.in_flight[0].clone();
    let mut r = h.result(&a, Outcome::Succeeded);
    r.delivery = 3;
    h.apply(Event::Finished(r));
    assert!(matches!(h.state(0), TaskState::Succeeded { .. }));
    // A worker that lost its lease killed its task and says so: the message is delivered
    // again, so the task stays in flight.
    let b = h.in_flight[1].clone();
    let mut r = h.result(&b, Outcome::Cancelled);
    r.delivery = 1;
    r.abandoned = true;
    let actions = h.apply(Event::Finished(r));
    let (kind, why) = ignored(&actions).expect("ignored");
    assert_eq!(kind, Ignore::Stale);
    assert!(why.contains("abandoned"), "{why}");
    assert!(h.state(1).is_active());
}

#[test]
fn stale_and_duplicate_results_change_nothing() {
    let mut a = task("a", &[]);
    a.max_attempts = Some(2);
    a.retry_backoff = Some(ordo_proto::Dur::secs(0));
    let mut h = Harness::new(spec(vec![a, task("b", &["a"])]), 1);
    let first = h.in_flight[0].clone();
    h.finish("a", Outcome::Failed);
    h.advance(0);
    assert_eq!(h.in_flight[0].attempt, Attempt(2));
    // A late success of attempt 1 must not complete the task.
    let stale = h.result(&first, Outcome::Succeeded);
    let actions = h.apply(Event::Finished(stale));
    assert!(
        matches!(&actions[..], [Action::Record(Change::Ignored { why, .. })] if why.contains("stale"))
    );
    assert!(matches!(h.state(0), TaskState::Dispatched { .. }));
    let second = h.in_flight[0].clone();
    h.finish("a", Outcome::Succeeded);
    let dup = h.result(&second, Outcome::Failed);
    let actions = h.apply(Event::Finished(dup));
    assert!(
        matches!(&actions[..], [Action::Record(Change::Ignored { why, .. })] if why.contains("already succeeded"))
    );
    assert!(matches!(h.state(0), TaskState::Succeeded { .. }));
}

#[test]
fn priority_then_critical_path_orders_ready_tasks() {
    // With one slot: `p` has priority; then `long` heads a chain of 3, before `short`.
    let mut p = task("p", &[]);
    p.priority = 5;
    let tasks = vec![
        task("short", &[]),
        task("long", &[]),
        task("long2", &["long"]),
        task("long3", &["long2"]),
        p,
    ];
    let mut h = Harness::new(spec(tasks), 1);
    assert_eq!(h.running(), vec!["p"]);
    h.finish("p", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["long"]);
}

#[test]
fn sequential_mode_runs_one_at_a_time_in_declared_order() {
    let mut s = spec(vec![
        task("b", &[]),
        task("a", &[]),
        task("c", &["d"]),
        task("d", &[]),
    ]);
    s.settings.execution_mode = Some(ExecutionMode::Sequential);
    let mut h = Harness::new(s, 8);
    for expected in ["b", "a", "d", "c"] {
        assert_eq!(h.running(), vec![expected]);
        h.finish(expected, Outcome::Succeeded);
    }
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// Sequential is strict: a task waiting to retry holds the next one back (a review step
/// never starts on a draft that has not passed its verify).
#[test]
fn sequential_mode_waits_for_a_retry() {
    let mut draft = task("draft", &[]);
    draft.max_attempts = Some(2);
    draft.retry_backoff = Some(ordo_proto::Dur::secs(5));
    let mut s = spec(vec![draft, task("review", &[])]);
    s.settings.enable_parallel = Some(false);
    let mut h = Harness::new(s, 8);
    assert_eq!(h.running(), vec!["draft"]);
    h.finish("draft", Outcome::VerifyFailed);
    assert!(
        matches!(h.recorded[&0], TaskState::RetryWait { .. }),
        "{:?}",
        h.recorded[&0]
    );
    assert!(
        h.running().is_empty(),
        "review started during draft's retry wait"
    );
    h.advance(5_000);
    h.advance(2_000);
    assert_eq!(h.running(), vec!["draft"]);
    h.finish("draft", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["review"]);
}

/// Proves `max_parallel_tasks` holds at every step of a whole job, through retries, requeues
/// and lost attempts (each frees the job's slot and takes it again), and that the engine keeps
/// the job at exactly its bound while tasks are left: an off-by-one either way, or a bound
/// honoured only for the first batch, fails. The pool (8 slots) is never the limit.
#[test]
fn max_parallel_bounds_a_job() {
    for bound in 1..=3u32 {
        let mut tasks: Vec<TaskSpec> = (0..9).map(|i| task(&format!("t{i}"), &[])).collect();
        tasks.push(task("after", &["t0", "t4"]));
        for t in &mut tasks {
            t.max_attempts = Some(3);
            t.retry_backoff = Some(ordo_proto::Dur::secs(0));
        }
        let n = tasks.len();
        let mut s = spec(tasks);
        s.settings.max_parallel_tasks = Some(bound);
        let mut h = Harness::new(s, 8);
        let mut peak = 0;
        let mut step = 0u32;
        while !h.in_flight.is_empty() {
            let flying = h.running().len();
            let live = h.engine.tasks(&h.job).unwrap();
            assert_eq!(live.iter().filter(|s| s.is_active()).count(), flying);
            assert!(flying as u32 <= bound, "bound {bound}: {flying} in flight");
            // Every task whose dependencies are done is in flight, up to the bound.
            let startable = live
                .iter()
                .filter(|s| matches!(s, TaskState::Ready { .. }) || s.is_active())
                .count();
            assert_eq!(
                flying,
                startable.min(bound as usize),
                "bound {bound}: slots left idle at step {step}"
            );
            peak = peak.max(flying);
            // Oldest first, so every task ends some time; some attempts fail, vanish or are
            // handed back, and each must give its place to the next dispatch.
            let d = h.in_flight.remove(0);
            let event = match step % 7 {
                2 => Event::Finished(h.result(&d, Outcome::Failed)),
                4 => Event::Lost {
                    job: d.job,
                    index: d.index,
                    attempt: d.attempt,
                    reason: "worker died".into(),
                },
                5 => Event::Requeue {
                    job: d.job,
                    index: d.index,
                    attempt: d.attempt,
                },
                _ => Event::Finished(h.result(&d, Outcome::Succeeded)),
            };
            h.apply(event);
            step += 1;
        }
        assert_eq!(peak, bound as usize, "the bound was never reached");
        assert!(h.engine.is_idle(), "bound {bound}: {:?}", h.job_state);
        assert!(h.dispatched.len() > n, "retries and requeues ran");
    }
}

#[test]
fn exclusive_tasks_run_alone() {
    let mut x = task("x", &[]);
    x.exclusive = true;
    x.priority = 1;
    let mut h = Harness::new(spec(vec![task("a", &[]), x, task("b", &[])]), 8);
    // x has priority and nothing runs yet, so it starts alone.
    assert_eq!(h.running(), vec!["x"]);
    h.finish("x", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["a", "b"]);
}

#[test]
fn exclusive_waits_for_running_tasks_and_holds_back_others() {
    let mut x = task("x", &["a"]);
    x.exclusive = true;
    x.priority = 1;
    let mut h = Harness::new(
        spec(vec![task("a", &[]), task("b", &[]), x, task("c", &["a"])]),
        8,
    );
    assert_eq!(h.running(), vec!["a", "b"]);
    h.finish("a", Outcome::Succeeded);
    // x is ready with b still running: neither x nor c may start.
    assert_eq!(h.running(), vec!["b"]);
    h.finish("b", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["x"]);
    h.finish("x", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["c"]);
}

/// Proves an exclusive task at the head of its job's ready order is a barrier also while it
/// waits for something outside its job (here a lock another job holds): nothing else of its job
/// starts before it has run (docs/design.md, Scheduling). Otherwise the job's other tasks start
/// past it and, once they run, it must wait for them too.
#[test]
fn an_exclusive_task_waiting_for_a_lock_holds_back_its_job() {
    let mut holder = task("holder", &[]);
    holder.locks = vec!["L".into()];
    let mut h = Harness::new(spec(vec![holder]), 8);
    let mut x = task("x", &[]);
    x.exclusive = true;
    x.priority = 1;
    x.locks = vec!["L".into()];
    let s = spec(vec![x, task("b", &[])]);
    let dag = validate(&s).unwrap();
    h.apply(Event::Submit {
        job: JobId::new(),
        spec: Arc::new(s),
        dag: Arc::new(dag),
        options: JobOptions::default(),
        saved: None,
    });
    assert_eq!(h.running(), vec!["holder"]);
    h.finish("holder", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["x"]);
    h.finish("x", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["b"]);
}

#[test]
fn tasks_sharing_a_lock_never_overlap() {
    let locked = |n: &str| {
        let mut t = task(n, &[]);
        t.locks = vec!["src/main.rs".into()];
        t
    };
    let mut h = Harness::new(spec(vec![locked("a"), locked("b"), task("c", &[])]), 8);
    assert_eq!(h.running(), vec!["a", "c"]);
    h.finish("a", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["c", "b"]);
}

#[test]
fn resources_bound_concurrency_and_impossible_tasks_fail_with_a_reason() {
    let heavy = |n: &str, cpu: f64| {
        let mut t = task(n, &[]);
        t.cpu_required = Some(cpu);
        t
    };
    // Capacity: 4 CPUs. Two tasks of 3 CPUs cannot overlap; one of 16 can never run.
    let mut h = Harness::new(
        spec(vec![heavy("a", 3.0), heavy("b", 3.0), heavy("huge", 16.0)]),
        8,
    );
    assert_eq!(h.running(), vec!["a"]);
    assert!(
        matches!(h.state(2), TaskState::Failed { reason, .. } if reason.contains("needs 16 CPUs"))
    );
    h.finish("a", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["b"]);
}

/// Proves a task that can never run, allowed to fail, lets its dependents start at once, even
/// one that sorts before it in the ready order: the scan that failed it must look again from the
/// top, or (with nothing else in flight, no timer set) the job waits forever for an event that
/// never comes, and `ordo run` hangs.
#[test]
fn an_unrunnable_task_allowed_to_fail_starts_its_dependents_at_once() {
    let mut x = task("x", &[]);
    x.cpu_required = Some(16.0);
    x.allow_failure = true;
    let mut y = task("y", &["x"]);
    y.priority = 1;
    let mut h = Harness::new(spec(vec![x, y]), 4);
    assert!(
        matches!(h.state(0), TaskState::Failed { reason, .. } if reason.contains("cannot run"))
    );
    assert_eq!(h.running(), vec!["y"]);
    h.finish("y", Outcome::Succeeded);
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

#[test]
fn cancel_kills_running_and_nothing_starts_afterwards() {
    let mut h = Harness::new(
        spec(vec![task("a", &[]), task("b", &["a"]), task("c", &[])]),
        1,
    );
    assert_eq!(h.running(), vec!["a"]);
    h.apply(Event::Cancel {
        job: h.job,
        reason: "cancelled by user".into(),
    });
    assert_eq!(h.killed, vec![0]);
    assert!(matches!(h.state(2), TaskState::Cancelled { .. }));
    h.finish("a", Outcome::Cancelled);
    assert_eq!(h.dispatched, vec!["a"]);
    assert_eq!(h.job_state, Some(JobState::Cancelled));
}

#[test]
fn requeue_does_not_count_an_attempt() {
    let mut h = Harness::new(spec(vec![task("a", &[])]), 1);
    let d = h.in_flight.remove(0);
    h.apply(Event::Requeue {
        job: h.job,
        index: TaskIndex(0),
        attempt: d.attempt,
    });
    assert_eq!(h.running(), vec!["a"]);
    assert_eq!(h.in_flight[0].attempt, Attempt(2));
    h.finish("a", Outcome::Succeeded);
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

#[test]
fn resume_keeps_finished_tasks() {
    let s = spec(vec![task("a", &[]), task("b", &["a"]), task("c", &["b"])]);
    let dag = Arc::new(validate(&s).unwrap());
    let saved = vec![
        SavedTask {
            state: TaskState::Succeeded {
                attempt: Attempt(1),
                finished: 5,
            },
            attempts: 1,
            conflicts: 0,
        },
        SavedTask {
            state: TaskState::Running {
                attempt: Attempt(1),
                worker: "local".into(),
                started: 6,
            },
            attempts: 1,
            conflicts: 0,
        },
        SavedTask {
            state: TaskState::Pending,
            attempts: 0,
            conflicts: 0,
        },
    ];
    let mut engine = Engine::new();
    engine.apply(
        0,
        Event::Capacity {
            queue: ANY_QUEUE.into(),
            capacity: Capacity::machine(4, 4.0, 1024),
        },
    );
    let job = JobId::new();
    let actions = engine.apply(
        10,
        Event::Submit {
            job,
            spec: Arc::new(s),
            dag,
            options: JobOptions::default(),
            saved: Some(saved.into()),
        },
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Dispatch(_))));
    let actions = engine.apply(
        11,
        Event::Requeue {
            job,
            index: TaskIndex(1),
            attempt: Attempt(1),
        },
    );
    let dispatched: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch(d) => Some((d.task.to_string(), d.attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(dispatched, vec![("b".to_string(), Attempt(2))]);
}

#[test]
fn retry_records_start_over_what_the_retry_names() {
    let done = |attempts| SavedTask {
        state: TaskState::Succeeded {
            attempt: Attempt(attempts),
            finished: 1,
        },
        attempts,
        conflicts: 0,
    };
    let skipped = SavedTask {
        state: TaskState::Skipped {
            reason: "dep".into(),
        },
        attempts: 0,
        conflicts: 0,
    };
    // a ✓, b ✗ (after a), c skipped (after b), d skipped (after c), e ✓ (after a),
    // f cancelled, g ✗ (independent).
    let s = spec(vec![
        task("a", &[]),
        task("b", &["a"]),
        task("c", &["b"]),
        task("d", &["c"]),
        task("e", &["a"]),
        task("f", &[]),
        task("g", &[]),
    ]);
    let dag = validate(&s).unwrap();
    let failed = SavedTask {
        state: TaskState::Failed {
            attempt: Attempt(1),
            finished: 1,
            reason: "x".into(),
        },
        attempts: 1,
        conflicts: 0,
    };
    let saved = vec![
        done(1),
        failed.clone(),
        skipped.clone(),
        skipped,
        done(1),
        SavedTask {
            state: TaskState::Cancelled {
                finished: 1,
                reason: "c".into(),
            },
            attempts: 0,
            conflicts: 0,
        },
        failed,
    ];
    let pending = |r: &[SavedTask]| -> Vec<bool> {
        r.iter().map(|s| s.state == TaskState::Pending).collect()
    };
    let again = retry_records(&saved, &dag, Again::Unsuccessful);
    assert_eq!(
        pending(&again),
        [false, true, true, true, false, true, true],
        "succeeded tasks keep their records"
    );
    assert_eq!(again[1].attempts, 1, "attempt numbers keep counting");
    assert_eq!(again[0], saved[0]);
    let one = retry_records(&saved, &dag, Again::Task(1));
    assert_eq!(
        pending(&one),
        [false, true, true, true, false, false, false],
        "b and what it held back; g stays failed, e (succeeded) is kept"
    );
    let skipped_one = retry_records(&saved, &dag, Again::Task(2));
    assert_eq!(
        pending(&skipped_one),
        [false, true, true, true, false, false, false],
        "a skipped task takes along the failed dependency that held it back"
    );
    let all = retry_records(&saved, &dag, Again::All);
    assert!(all.iter().all(|s| s.state == TaskState::Pending));
}

#[test]
fn a_retry_request_names_one_scope() {
    let s = spec(vec![task("a", &[]), task("b", &["a"])]);
    let dag = validate(&s).unwrap();
    let job = JobId::new();
    let mut req = ordo_proto::api::RetryRequest::failed_only(job);
    assert_eq!(Again::of(&req, &dag), Ok(Again::Unsuccessful));
    req.task = Some("b".into());
    assert!(Again::of(&req, &dag).unwrap_err().contains("not both"));
    req.failed_only = false;
    assert_eq!(Again::of(&req, &dag), Ok(Again::Task(1)));
    req.task = Some("zz".into());
    let e = Again::of(&req, &dag).unwrap_err();
    assert!(e.contains("no task named \"zz\""), "{e}");
    req.task = None;
    assert_eq!(Again::of(&req, &dag), Ok(Again::All));
}

fn flow(tasks: Vec<(&str, Option<Jump>, Option<Jump>)>) -> JobSpec {
    spec(
        tasks
            .into_iter()
            .map(|(n, ok, fail)| {
                let mut t = task(n, &[]);
                t.on_success = ok;
                t.on_failure = fail;
                t
            })
            .collect(),
    )
}

#[test]
fn flow_jumps_follow_on_success_and_on_failure() {
    // a → (fail) → c → (success: jump to a) → a → (success: stop); b never runs.
    let s = flow(vec![
        ("a", Some(Jump::Stop), Some(Jump::Task("c".into()))),
        ("b", None, None),
        ("c", Some(Jump::Task("a".into())), None),
    ]);
    let mut h = Harness::new(s, 8);
    assert_eq!(h.running(), vec!["a"]);
    h.finish("a", Outcome::Failed);
    assert_eq!(h.running(), vec!["c"]);
    h.finish("c", Outcome::Succeeded);
    assert_eq!(h.running(), vec!["a"]);
    h.finish("a", Outcome::Succeeded);
    assert!(
        matches!(h.state(1), TaskState::Skipped { .. }),
        "{:?}",
        h.state(1)
    );
    assert_eq!(h.job_state, Some(JobState::Succeeded));
    assert_eq!(h.dispatched, vec!["a", "c", "a"]);
}

#[test]
fn flow_repeat_is_bounded_by_the_iteration_cap() {
    let s = flow(vec![("a", Some(Jump::Repeat), None), ("b", None, None)]);
    let mut h = Harness::new(s, 8);
    let mut runs = 0;
    while !h.running().is_empty() {
        runs += 1;
        h.finish("a", Outcome::Succeeded);
    }
    assert_eq!(runs, 1000);
    assert_eq!(h.job_state, Some(JobState::Failed));
    // With allow_infinite_loops the cap is lifted.
    let mut s = flow(vec![("a", Some(Jump::Repeat), None)]);
    s.settings.allow_infinite_loops = true;
    let mut h = Harness::new(s, 8);
    for _ in 0..1500 {
        h.finish("a", Outcome::Succeeded);
    }
    assert_eq!(h.running(), vec!["a"]);
}

#[test]
fn flow_failure_defaults_to_stop_and_fails_the_job() {
    let s = flow(vec![
        ("a", Some(Jump::Next), None),
        ("b", Some(Jump::Stop), None),
        ("c", None, None),
    ]);
    let mut h = Harness::new(s, 8);
    h.finish("a", Outcome::Succeeded);
    h.finish("b", Outcome::Failed);
    assert!(
        matches!(h.state(2), TaskState::Skipped { .. }),
        "{:?}",
        h.state(2)
    );
    assert_eq!(h.job_state, Some(JobState::Failed));
}

// ---------------------------------------------------------------------------------------------
// Model-based: several jobs at once over random DAGs and policies, sharing slots, CPUs, memory
// and locks, against an adversarial executor and cluster: results in any order, duplicates,
// stale attempts and deliveries, abandoned executions, lost and handed-back attempts, capacity
// that grows and shrinks (one `*` pool as `ordo run` sets it, or a pool per queue as the
// coordinator does), cancels, jobs arriving mid-round. A model built only from the engine's
// actions checks, at every action:
// - a dispatch: its dependencies succeeded or failed with permission; its job is not stopping
//   (cancel, fail-fast); its attempt number is the last plus one; attempts counted against
//   `max_attempts` (dispatched minus handed back by `Requeue`; a `Lost` one counts) stay within
//   it; its pool has fewer attempts in flight than the slots in force and room for its CPUs and
//   memory (the engine never revokes: capacity that shrinks below what is in flight only stops
//   new dispatches; the coordinator folds `--prefetch` into the slots it reports, so the
//   engine's rule is exactly this); its job has fewer than `max_parallel_tasks` in flight (1
//   when sequential); no attempt in flight, of any job, holds one of its locks; an exclusive
//   task starts with nothing of its job in flight, nothing starts beside one, and nothing
//   starts past a ready exclusive task of its job that sorts before it (the barrier);
// - a task record: none after a terminal one; the attempt count; a retry only with attempts
//   left in a job not stopping, a failure for good only with none left (or the job stopping,
//   or no executor could ever fit the task);
// - an applied result: for the attempt in flight, from its latest execution, at most once;
// - a job's end: once, with every task terminal and nothing in flight, cancelled / failed /
//   succeeded as docs/design.md, "Task states" says;
// and after every event: the engine's task states are the recorded ones, the attempts in
// flight are those the executor holds, busy slots are the attempts in flight, replayed results
// and stale `Lost`/`Requeue` change nothing, and a `Tick` at the same instant does nothing (no
// event leaves work undone for a later, unrelated one). Each round ends with capacity back, the
// executor reporting everything and time running to every retry: every job must end, every
// task exactly once.

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Queues of the model. On the coordinator each has a pool of its own; locally `*` serves all.
const QUEUES: [&str; 3] = [ordo_proto::names::DEFAULT_QUEUE, "a", "b"];

fn random_spec(rng: &mut Rng) -> JobSpec {
    let n = 1 + rng.below(25) as usize;
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut t = TaskSpec::shell(&format!("t{i}"), "true");
        for j in 0..i {
            if rng.chance(15) {
                t.depends_on.push(TaskName::new(format!("t{j}")).unwrap());
            }
        }
        t.max_attempts = Some(1 + rng.below(3) as u32);
        t.retry_backoff = Some(ordo_proto::Dur(std::time::Duration::from_millis(
            rng.below(50),
        )));
        t.allow_failure = rng.chance(15);
        t.priority = rng.below(3) as i32;
        t.exclusive = rng.chance(5);
        // Lock names are shared by every job of a round.
        if rng.chance(20) {
            t.locks = vec![format!("l{}", rng.below(2))];
        }
        if rng.chance(5) {
            t.locks = vec!["l0".into(), "l1".into()];
        }
        if rng.chance(25) {
            t.cpu_required = Some(rng.below(4) as f64);
        }
        if rng.chance(10) {
            t.memory_required = Some(512 * rng.below(3));
        }
        if rng.chance(30) {
            t.queue = Some(rng.pick(&QUEUES[1..]).to_string());
        }
        tasks.push(t);
    }
    let mut s = spec(tasks);
    s.settings.fail_fast = rng.chance(10);
    if rng.chance(20) {
        s.settings.execution_mode = Some(ExecutionMode::Sequential);
    }
    if rng.chance(30) {
        s.settings.max_parallel_tasks = Some(1 + rng.below(3) as u32);
    }
    s
}

/// What the model knows of one job: its spec, and what the engine's actions said.
struct JobModel {
    deps: Vec<Vec<usize>>,
    tolerated: Vec<bool>,
    max_attempts: Vec<u32>,
    exclusive: Vec<bool>,
    locks: Vec<Vec<String>>,
    /// The ready order: priority, then remaining critical path, then declaration; declaration
    /// alone when sequential.
    order: Vec<(Reverse<i32>, Reverse<u32>, u32)>,
    /// `max_parallel_tasks` as the engine must apply it: 1 when sequential.
    max_parallel: usize,
    fail_fast: bool,
    states: Vec<TaskState>,
    terminal_changes: Vec<u32>,
    dispatched: Vec<u32>,
    /// Attempts handed back by `Requeue`: they do not count against `max_attempts`.
    requeued: Vec<u32>,
    /// Tasks failed at once because no executor could ever fit them (an attempt, never run).
    unfit: Vec<u32>,
    /// A cancel was applied, or fail-fast fired: nothing may start any more.
    stopped: bool,
    cancelled: bool,
    ended: Option<JobState>,
}

impl JobModel {
    /// Attempts counted against `max_attempts`.
    fn tries(&self, i: usize) -> u32 {
        self.dispatched[i] - self.requeued[i]
    }

    fn satisfied(&self, dep: usize) -> bool {
        match &self.states[dep] {
            TaskState::Succeeded { .. } => true,
            TaskState::Failed { .. } | TaskState::TimedOut { .. } => self.tolerated[dep],
            _ => false,
        }
    }
}

/// An attempt in flight (it holds a slot, its resources and its locks), from the engine's
/// actions.
struct Flight {
    attempt: Attempt,
    pool: String,
    cpus: f64,
    memory_mb: u64,
    locks: Vec<String>,
    exclusive: bool,
}

/// An attempt the simulated executor holds and has not reported.
struct Held {
    d: Dispatch,
    /// JetStream delivery running it (0: the local runner, which has none).
    delivery: u32,
    killed: bool,
}

struct Sim {
    round: u64,
    rng: Rng,
    engine: Engine,
    now: Millis,
    /// One `*` pool (local mode) or a pool per queue (the coordinator).
    local: bool,
    caps: BTreeMap<String, Capacity>,
    jobs: BTreeMap<JobId, JobModel>,
    flights: BTreeMap<(JobId, TaskIndex), Flight>,
    executor: Vec<Held>,
    /// Results already reported, and the results of executions that were replaced (lost,
    /// handed back, taken over by a later delivery): replayed at random, never to be applied.
    replays: Vec<TaskResult>,
    applied: HashSet<(JobId, TaskIndex, Attempt)>,
    submitted: u64,
}

impl Sim {
    fn new(round: u64, seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let local = rng.chance(40);
        let mut sim = Sim {
            round,
            rng,
            engine: Engine::new(),
            now: 1_000,
            local,
            caps: BTreeMap::new(),
            jobs: BTreeMap::new(),
            flights: BTreeMap::new(),
            executor: Vec::new(),
            replays: Vec::new(),
            applied: HashSet::new(),
            submitted: 0,
        };
        for pool in sim.pools() {
            let cap = sim.random_capacity();
            sim.set_capacity(&pool, cap);
        }
        sim
    }

    fn pools(&self) -> Vec<String> {
        if self.local {
            vec![ANY_QUEUE.to_string()]
        } else {
            QUEUES.iter().map(|q| q.to_string()).collect()
        }
    }

    fn pool_of(&self, queue: &str) -> String {
        if self.local { ANY_QUEUE } else { queue }.to_string()
    }

    fn random_capacity(&mut self) -> Capacity {
        let slots = self.rng.below(5) as u32;
        if slots == 0 {
            // A queue with no live worker.
            return Capacity {
                slots: 0,
                cpus: 0.0,
                memory_mb: 0,
                largest_cpus: 0.0,
                largest_memory_mb: 0,
            };
        }
        let cpus = *self.rng.pick(&[1.0, 2.0, 4.0, 4.0]);
        let memory = *self.rng.pick(&[1024, 4096]);
        Capacity::machine(slots, cpus, memory)
    }

    fn set_capacity(&mut self, pool: &str, capacity: Capacity) {
        self.caps.insert(pool.to_string(), capacity);
        self.apply(Event::Capacity {
            queue: pool.to_string(),
            capacity,
        });
    }

    fn submit(&mut self) {
        let s = random_spec(&mut self.rng);
        let dag = validate(&s).expect("valid spec");
        let mode = *self
            .rng
            .pick(&[ExecutionMode::Parallel, ExecutionMode::Sequential]);
        let override_bound = self.rng.chance(15).then(|| 1 + self.rng.below(3) as u32);
        let options = JobOptions {
            default_mode: Some(mode),
            max_parallel: override_bound,
            seed: self.round * 100 + self.submitted,
            slots: None,
        };
        let n = s.tasks.len();
        let sequential = s.mode(Some(mode)) == ExecutionMode::Sequential;
        let order = (0..n)
            .map(|i| match sequential {
                true => (Reverse(0), Reverse(0), i as u32),
                false => (Reverse(s.tasks[i].priority), Reverse(dag.rank[i]), i as u32),
            })
            .collect();
        let max_parallel = if sequential {
            1
        } else {
            override_bound
                .or(s.settings.max_parallel_tasks)
                .map_or(usize::MAX, |b| b.max(1) as usize)
        };
        // Ids sort by submission like UUIDv7s, and are the same every run (the engine seeds
        // retry jitter from them), so a failing round replays exactly.
        let id = (u128::from(self.round) << 64) | (u128::from(self.submitted) << 56);
        let job = JobId(uuid::Uuid::from_u128(id | u128::from(self.rng.next() >> 8)));
        self.jobs.insert(
            job,
            JobModel {
                deps: dag
                    .deps
                    .iter()
                    .map(|d| d.iter().map(|&x| x as usize).collect())
                    .collect(),
                tolerated: s.tasks.iter().map(|t| t.allow_failure).collect(),
                max_attempts: s.tasks.iter().map(|t| s.max_attempts(t)).collect(),
                exclusive: s.tasks.iter().map(|t| t.exclusive).collect(),
                locks: s.tasks.iter().map(|t| t.locks.clone()).collect(),
                order,
                max_parallel,
                fail_fast: s.settings.fail_fast,
                states: vec![TaskState::Pending; n],
                terminal_changes: vec![0; n],
                dispatched: vec![0; n],
                requeued: vec![0; n],
                unfit: vec![0; n],
                stopped: false,
                cancelled: false,
                ended: None,
            },
        );
        self.submitted += 1;
        self.apply(Event::Submit {
            job,
            spec: Arc::new(s),
            dag: Arc::new(dag),
            options,
            saved: None,
        });
    }

    /// Applies one event, checks every action as it comes and the whole state afterwards,
    /// then checks the engine reached a fixpoint: a tick at the same instant does nothing.
    fn apply(&mut self, event: Event) -> Vec<Action> {
        let actions = self.apply_checked(event);
        let again = self.apply_checked(Event::Tick);
        assert!(
            again.is_empty(),
            "round {}: a tick right after an event did something, so the event left work \
             undone: {again:?}",
            self.round
        );
        actions
    }

    fn apply_checked(&mut self, event: Event) -> Vec<Action> {
        let actions = self.engine.apply(self.now, event);
        for a in &actions {
            self.observe(a);
        }
        self.check_state();
        actions
    }

    fn observe(&mut self, action: &Action) {
        let round = self.round;
        match action {
            Action::Record(Change::Task {
                job,
                index,
                attempts,
                state,
                ..
            }) => {
                let i = index.get();
                let m = self.jobs.get_mut(job).expect("a submitted job");
                let old = &m.states[i];
                assert!(
                    !old.is_terminal(),
                    "round {round}: task {i} changed after terminal: {old:?} → {state:?}"
                );
                if old.is_active() && !state.is_active() {
                    let f = self.flights.remove(&(*job, *index));
                    let f = f.unwrap_or_else(|| panic!("round {round}: task {i} not in flight"));
                    assert_eq!(Some(f.attempt), old.active_attempt());
                }
                if let TaskState::Running { attempt, .. } = state {
                    let f = self.flights.get(&(*job, *index));
                    assert_eq!(
                        f.map(|f| f.attempt),
                        Some(*attempt),
                        "round {round}: task {i} runs an attempt not in flight"
                    );
                }
                if let TaskState::Failed { reason, .. } = state
                    && reason.starts_with("cannot run")
                {
                    m.unfit[i] += 1;
                }
                // A dispatch is recorded just before its `Dispatch` action comes.
                let dispatching = matches!(state, TaskState::Dispatched { .. }) as u32;
                assert_eq!(
                    *attempts,
                    m.dispatched[i] + m.unfit[i] + dispatching,
                    "round {round}: task {i} records the wrong attempt count"
                );
                match state {
                    TaskState::RetryWait { .. } => assert!(
                        m.tries(i) < m.max_attempts[i] && !m.stopped,
                        "round {round}: task {i} retries with no attempt left, or in a stopped job"
                    ),
                    TaskState::Failed { reason, .. } | TaskState::TimedOut { reason, .. } => {
                        assert!(
                            m.tries(i) == m.max_attempts[i]
                                || m.stopped
                                || reason.starts_with("cannot run"),
                            "round {round}: task {i} failed for good with attempts left: {reason}"
                        );
                        if m.fail_fast && !m.tolerated[i] {
                            m.stopped = true;
                        }
                    }
                    _ => {}
                }
                if state.is_terminal() {
                    m.terminal_changes[i] += 1;
                }
                m.states[i] = state.clone();
            }
            Action::Dispatch(d) => self.observe_dispatch(d),
            Action::Kill {
                job,
                index,
                attempt,
            } => {
                let held = self
                    .executor
                    .iter_mut()
                    .find(|h| (h.d.job, h.d.index, h.d.attempt) == (*job, *index, *attempt));
                let held = held.unwrap_or_else(|| {
                    panic!("round {round}: kill of attempt {attempt} not in flight")
                });
                held.killed = true;
            }
            Action::Record(Change::Attempt(r)) => {
                let f = self.flights.get(&(r.job, r.index));
                assert_eq!(
                    f.map(|f| f.attempt),
                    Some(r.attempt),
                    "round {round}: applied a result for an attempt not in flight"
                );
                assert!(
                    !r.worker.starts_with("zombie"),
                    "round {round}: applied the result of a replaced execution: {r:?}"
                );
                assert!(
                    self.applied.insert((r.job, r.index, r.attempt)),
                    "round {round}: applied an attempt's result twice: {r:?}"
                );
            }
            Action::Record(
                Change::Ignored { .. }
                | Change::Budget { .. }
                | Change::Pool { .. }
                | Change::Stage { .. },
            ) => {}
            Action::Integrate(_)
            | Action::Record(
                Change::Integrated { .. } | Change::Batch { .. } | Change::Speculation { .. },
            ) => {
                panic!("round {round}: the model's jobs use no worktrees")
            }
            Action::Record(Change::Job { job, state, .. }) => {
                let flying = self.flights.keys().any(|(j, _)| j == job);
                let m = self.jobs.get_mut(job).unwrap();
                if !state.is_terminal() {
                    return;
                }
                assert_eq!(m.ended, None, "round {round}: job ended twice");
                m.ended = Some(*state);
                assert!(
                    m.states.iter().all(TaskState::is_terminal) && !flying,
                    "round {round}: job ended with tasks open: {:?}",
                    m.states
                );
                let failed = (0..m.states.len()).any(|i| {
                    matches!(
                        m.states[i],
                        TaskState::Failed { .. } | TaskState::TimedOut { .. }
                    ) && !m.tolerated[i]
                });
                let expected = if m.cancelled {
                    JobState::Cancelled
                } else if failed {
                    JobState::Failed
                } else {
                    JobState::Succeeded
                };
                assert_eq!(*state, expected, "round {round}: {:?}", m.states);
                if *state == JobState::Succeeded {
                    assert!((0..m.states.len()).all(|i| m.satisfied(i)));
                }
            }
        }
    }

    /// A dispatch must respect the DAG, the attempt budget, the capacity in force, the job's
    /// bound, exclusivity and every lock.
    fn observe_dispatch(&mut self, d: &Dispatch) {
        let round = self.round;
        let (i, key) = (d.index.get(), (d.job, d.index));
        let pool = self.pool_of(&d.queue);
        let m = self.jobs.get_mut(&d.job).expect("a submitted job");
        assert!(
            !m.stopped,
            "round {round}: task {i} started in a stopped job"
        );
        assert_eq!(
            m.states[i],
            TaskState::Dispatched {
                attempt: d.attempt,
                at: self.now
            },
            "round {round}: dispatch not recorded"
        );
        for &dep in &m.deps[i] {
            assert!(
                m.satisfied(dep),
                "round {round}: task {i} dispatched before dependency {dep} ({:?})",
                m.states[dep]
            );
        }
        m.dispatched[i] += 1;
        assert_eq!(
            d.attempt.0,
            m.dispatched[i] + m.unfit[i],
            "round {round}: attempt numbers of task {i} skip or repeat"
        );
        assert!(
            m.tries(i) <= m.max_attempts[i],
            "round {round}: task {i} exceeded max_attempts ({} tries)",
            m.tries(i)
        );
        let mine: Vec<&Flight> = self
            .flights
            .iter()
            .filter(|((j, _), _)| *j == d.job)
            .map(|(_, f)| f)
            .collect();
        assert!(
            mine.len() < m.max_parallel,
            "round {round}: job exceeds max_parallel_tasks {}",
            m.max_parallel
        );
        assert!(
            !m.exclusive[i] || mine.is_empty(),
            "round {round}: exclusive task {i} started beside others of its job"
        );
        assert!(
            !mine.iter().any(|f| f.exclusive),
            "round {round}: task {i} started beside an exclusive task of its job"
        );
        let barrier = (0..m.states.len()).find(|&e| {
            m.exclusive[e]
                && matches!(m.states[e], TaskState::Ready { .. })
                && m.order[e] < m.order[i]
        });
        assert_eq!(
            barrier, None,
            "round {round}: task {i} started past a ready exclusive task that sorts before it"
        );
        let cap = self.caps[&pool];
        let in_pool: Vec<&Flight> = self.flights.values().filter(|f| f.pool == pool).collect();
        let cpus: f64 = in_pool.iter().map(|f| f.cpus).sum::<f64>() + d.cpus;
        let memory: u64 = in_pool.iter().map(|f| f.memory_mb).sum::<u64>() + d.memory_mb;
        assert!(
            in_pool.len() < cap.slots as usize,
            "round {round}: pool {pool} over its {} slots",
            cap.slots
        );
        assert!(
            cpus <= cap.cpus + 1e-9 && memory <= cap.memory_mb,
            "round {round}: pool {pool} over its CPUs or memory"
        );
        let locks = m.locks[i].clone();
        let exclusive = m.exclusive[i];
        for f in self.flights.values() {
            assert!(
                !f.locks.iter().any(|l| locks.contains(l)),
                "round {round}: task {i} took a lock held by a task in flight"
            );
        }
        let flight = Flight {
            attempt: d.attempt,
            pool,
            cpus: d.cpus,
            memory_mb: d.memory_mb,
            locks,
            exclusive,
        };
        assert!(self.flights.insert(key, flight).is_none());
        self.executor.push(Held {
            d: d.clone(),
            delivery: 0,
            killed: false,
        });
    }

    /// The engine's view agrees with the model's: every live job's task states are exactly the
    /// recorded ones (the store cannot miss a transition), the attempts in flight are the ones
    /// the executor holds, the slots in use are the attempts in flight, and a job leaves the
    /// engine exactly when it ended.
    fn check_state(&self) {
        let round = self.round;
        for (job, m) in &self.jobs {
            match self.engine.tasks(job) {
                Some(live) => {
                    assert_eq!(m.ended, None, "round {round}: an ended job is still live");
                    assert_eq!(
                        live.to_vec(),
                        m.states,
                        "round {round}: engine and records differ"
                    );
                }
                None => assert!(m.ended.is_some(), "round {round}: a job vanished"),
            }
        }
        let held: BTreeMap<(JobId, TaskIndex), Attempt> = self
            .executor
            .iter()
            .map(|h| ((h.d.job, h.d.index), h.d.attempt))
            .collect();
        let flying: BTreeMap<(JobId, TaskIndex), Attempt> =
            self.flights.iter().map(|(k, f)| (*k, f.attempt)).collect();
        assert_eq!(
            held.len(),
            self.executor.len(),
            "round {round}: the executor holds two attempts of one task"
        );
        assert_eq!(
            held, flying,
            "round {round}: in flight ≠ held by the executor"
        );
        assert_eq!(
            self.engine.busy_slots() as usize,
            self.flights.len(),
            "round {round}: slots in use ≠ attempts in flight"
        );
    }

    fn result(&self, h: &Held, outcome: Outcome) -> TaskResult {
        let worker = format!("w{}", h.delivery).into();
        sim_result(&h.d, worker, h.delivery, outcome, self.now)
    }

    fn random_outcome(&mut self) -> Outcome {
        match self.rng.below(10) {
            0..=5 => Outcome::Succeeded,
            6 => Outcome::VerifyFailed,
            7 => Outcome::TimedOut,
            _ => Outcome::Failed,
        }
    }

    /// Takes a random attempt off the executor.
    fn take_held(&mut self) -> Option<Held> {
        if self.executor.is_empty() {
            return None;
        }
        let k = self.rng.below(self.executor.len() as u64) as usize;
        Some(self.executor.swap_remove(k))
    }

    /// The executor reports an attempt (a killed one mostly as cancelled), sometimes after a
    /// `Started` notice.
    fn finish_one(&mut self) {
        if self.executor.is_empty() {
            return;
        }
        let k = self.rng.below(self.executor.len() as u64) as usize;
        if self.rng.chance(30) {
            let h = &self.executor[k];
            self.apply(Event::Started {
                job: h.d.job,
                index: h.d.index,
                attempt: h.d.attempt,
                worker: format!("w{}", h.delivery).into(),
                delivery: h.delivery,
            });
        }
        let h = self.executor.swap_remove(k);
        let outcome = if h.killed && self.rng.chance(80) {
            Outcome::Cancelled
        } else {
            self.random_outcome()
        };
        let r = self.result(&h, outcome);
        self.replays.push(r.clone());
        let actions = self.apply(Event::Finished(r));
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Record(Change::Attempt(_)))),
            "round {}: the result of the attempt in flight was not applied: {actions:?}",
            self.round
        );
    }

    /// One random event of the adversarial executor and cluster.
    fn step(&mut self) {
        let choice = self.rng.below(100);
        match choice {
            0..=39 => self.finish_one(),
            40..=51 if !self.replays.is_empty() => {
                // A duplicate, a stale attempt or delivery, an abandoned execution.
                let mut r = self.rng.pick(&self.replays).clone();
                if self.rng.chance(50) {
                    r.outcome = Outcome::Succeeded;
                }
                let before: Vec<Option<Vec<TaskState>>> = self
                    .jobs
                    .keys()
                    .map(|j| self.engine.tasks(j).map(|t| t.to_vec()))
                    .collect();
                let actions = self.apply(Event::Finished(r));
                assert!(
                    matches!(&actions[..], [Action::Record(Change::Ignored { .. })]),
                    "round {}: a replayed result did something: {actions:?}",
                    self.round
                );
                let after: Vec<Option<Vec<TaskState>>> = self
                    .jobs
                    .keys()
                    .map(|j| self.engine.tasks(j).map(|t| t.to_vec()))
                    .collect();
                assert_eq!(
                    before, after,
                    "round {}: an ignored result changed state",
                    self.round
                );
            }
            52..=56 => {
                // The worker died: the attempt is lost, but it may still report later.
                let Some(h) = self.take_held() else { return };
                let outcome = *self.rng.pick(&[Outcome::Succeeded, Outcome::Failed]);
                let mut zombie = self.result(&h, outcome);
                zombie.worker = "zombie".into();
                self.replays.push(zombie);
                self.apply(Event::Lost {
                    job: h.d.job,
                    index: h.d.index,
                    attempt: h.d.attempt,
                    reason: "worker died".into(),
                });
            }
            57..=61 => {
                // Handed back (a draining worker, a restarted runner): not counted.
                let Some(h) = self.take_held() else { return };
                let mut zombie = self.result(&h, Outcome::Succeeded);
                zombie.worker = "zombie".into();
                self.replays.push(zombie);
                self.jobs.get_mut(&h.d.job).unwrap().requeued[h.d.index.get()] += 1;
                self.apply(Event::Requeue {
                    job: h.d.job,
                    index: h.d.index,
                    attempt: h.d.attempt,
                });
            }
            62..=64 => {
                // Lost or Requeue of an attempt no longer in flight: nothing happens.
                let gone: Vec<&TaskResult> = self
                    .replays
                    .iter()
                    .filter(|r| match self.flights.get(&(r.job, r.index)) {
                        Some(f) => f.attempt != r.attempt,
                        None => true,
                    })
                    .collect();
                if gone.is_empty() {
                    return;
                }
                let r = (*self.rng.pick(&gone)).clone();
                let event = if self.rng.chance(50) {
                    Event::Lost {
                        job: r.job,
                        index: r.index,
                        attempt: r.attempt,
                        reason: "late".into(),
                    }
                } else {
                    Event::Requeue {
                        job: r.job,
                        index: r.index,
                        attempt: r.attempt,
                    }
                };
                let actions = self.apply(event);
                assert!(actions.is_empty(), "round {}: {actions:?}", self.round);
            }
            65..=69 if !self.local && !self.executor.is_empty() => {
                // A worker went silent for a whole ack wait: JetStream delivers the attempt
                // to another, whose start takes it over; the first one's result is stale.
                let k = self.rng.below(self.executor.len() as u64) as usize;
                let h = &self.executor[k];
                if h.delivery > 0 {
                    let mut zombie = self.result(h, Outcome::Succeeded);
                    zombie.worker = "zombie".into();
                    zombie.abandoned = self.rng.chance(50);
                    self.replays.push(zombie.clone());
                    if zombie.abandoned && self.rng.chance(50) {
                        // The silent worker noticed first, killed its task and said so, before
                        // the new delivery started: its delivery is still the latest.
                        let actions = self.apply(Event::Finished(zombie));
                        assert!(
                            matches!(&actions[..], [Action::Record(Change::Ignored { .. })]),
                            "round {}: an abandoned execution's result did something: {actions:?}",
                            self.round
                        );
                    }
                }
                let h = &mut self.executor[k];
                h.delivery += 1;
                let started = Event::Started {
                    job: h.d.job,
                    index: h.d.index,
                    attempt: h.d.attempt,
                    worker: format!("w{}", h.delivery).into(),
                    delivery: h.delivery,
                };
                self.apply(started);
            }
            70..=74 => {
                let pools = self.pools();
                let pool = self.rng.pick(&pools).clone();
                let cap = self.random_capacity();
                self.set_capacity(&pool, cap);
            }
            75..=76 => {
                let live: Vec<JobId> = self.engine.job_ids();
                if live.is_empty() || !self.rng.chance(30) {
                    return;
                }
                let job = *self.rng.pick(&live);
                let m = self.jobs.get_mut(&job).unwrap();
                m.cancelled = true;
                m.stopped = true;
                self.apply(Event::Cancel {
                    job,
                    reason: "test".into(),
                });
            }
            77..=79 if self.submitted < 6 => self.submit(),
            _ => {
                self.now += self.rng.below(40);
                self.apply(Event::Tick);
            }
        }
    }

    /// With capacity back, the executor reports everything and time runs to every retry: the
    /// engine must end every job. Stuck means a job waits with nothing in flight, no timer set
    /// and room to run.
    fn drain(&mut self) {
        for pool in self.pools() {
            let slots = 1 + self.rng.below(4) as u32;
            self.set_capacity(&pool, Capacity::machine(slots, 4.0, 8192));
        }
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 100_000, "round {}: no progress", self.round);
            if !self.executor.is_empty() {
                self.finish_one();
            } else if let Some(at) = self.engine.next_wakeup() {
                self.now = self.now.max(at);
                self.apply(Event::Tick);
            } else {
                break;
            }
        }
        assert!(
            self.engine.is_idle(),
            "round {}: stuck with nothing in flight: {:?}",
            self.round,
            self.jobs
                .values()
                .filter(|m| m.ended.is_none())
                .map(|m| &m.states)
                .collect::<Vec<_>>()
        );
        for m in self.jobs.values() {
            assert!(m.ended.is_some(), "round {}: a job never ended", self.round);
            for (i, n) in m.terminal_changes.iter().enumerate() {
                assert_eq!(*n, 1, "round {}: task {i} ended {n} times", self.round);
            }
        }
        assert!(self.flights.is_empty());
    }
}

/// Proves the engine's invariants hold under several jobs sharing capacity and locks, whatever
/// the executor and the cluster do (see the section comment), and that every round ends with
/// every job and task terminal.
#[test]
fn model_random_jobs_and_adversarial_cluster_keep_every_invariant() {
    for round in 0..300 {
        let mut sim = Sim::new(
            round,
            0xDEAD_BEEF_CAFE_F00D ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let jobs = 1 + sim.rng.below(4);
        for _ in 0..jobs {
            sim.submit();
        }
        let events = 50 + sim.rng.below(300);
        for _ in 0..events {
            sim.step();
        }
        sim.drain();
    }
}

/// Results for a job that already ended are fenced by the engine too: from what it kept of the
/// job when it ended, or, after a restart, from the records `Event::Ended` hands it. Without
/// either the job is unknown.
#[test]
fn results_for_ended_jobs_are_classified_from_the_engines_own_fences() {
    let mut h = Harness::new(spec(vec![task("a", &[])]), 1);
    let d = h.in_flight[0].clone();
    let done = h.result(&d, Outcome::Succeeded);
    h.in_flight.clear();
    h.apply(Event::Finished(done.clone()));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
    assert!(!h.engine.has_job(&h.job));
    // The same execution's result again, after the job ended: a duplicate.
    let again = h.apply(Event::Finished(done.clone()));
    assert_eq!(ignored(&again).map(|i| i.0), Some(Ignore::Duplicate));
    // An older delivery of the same attempt: stale.
    let mut older = done.clone();
    older.delivery = 0;
    let mut newer = done.clone();
    newer.delivery = 2;
    let mut e = Engine::new();
    e.apply(
        h.now,
        Event::Ended {
            job: h.job,
            saved: vec![SavedTask {
                state: h.state(0),
                attempts: 1,
                conflicts: 0,
            }],
        },
    );
    // A restarted engine knows attempts only: the started attempt's result is a late one.
    let late = e.apply(h.now, Event::Finished(newer));
    assert_eq!(ignored(&late).map(|i| i.0), Some(Ignore::Stale), "{late:?}");
    let mut never = done.clone();
    never.attempt = Attempt(5);
    let forged = e.apply(h.now, Event::Finished(never));
    assert_eq!(ignored(&forged).map(|i| i.0), Some(Ignore::Unknown));
    // A job the engine never heard of.
    let fresh = Engine::new().apply(h.now, Event::Finished(older));
    assert_eq!(ignored(&fresh).map(|i| i.0), Some(Ignore::Unknown));
}

// ---------------------------------------------------------------------------------------------
// Agent runs (docs/design.md, "Agent runs"): budgets count every execution's spend.

/// Two prompt tasks, b after a, on a $1 budget.
fn budget_spec() -> JobSpec {
    let prompt = |name: &str, deps: &[&str]| {
        let mut t = task(name, deps);
        t.command = None;
        t.prompt = Some(format!("do {name}"));
        t
    };
    let mut s = spec(vec![prompt("a", &[]), prompt("b", &["a"])]);
    s.settings.max_cost_usd = Some(1.0);
    s
}

/// What `budget_spec` resumes from once a succeeded with `result` and b has not started.
fn a_done_b_pending(result: TaskResult) -> Saved {
    Saved {
        tasks: vec![
            SavedTask {
                state: TaskState::Succeeded {
                    attempt: Attempt(1),
                    finished: 1,
                },
                attempts: 1,
                conflicts: 0,
            },
            SavedTask {
                state: TaskState::Pending,
                attempts: 0,
                conflicts: 0,
            },
        ],
        results: vec![result],
        ..Saved::default()
    }
}

fn costing(mut r: TaskResult, usd: f64) -> TaskResult {
    r.agent = Some(Box::new(ordo_proto::AgentRun {
        cost_usd: Some(usd),
        ..Default::default()
    }));
    r
}

/// A stale execution's result changes nothing, but its agent's spend counts against the
/// budget: $0.60 stale + $0.50 applied is over $1, so b never starts. A restarted engine
/// counts the stale spend again from the stored ignored result.
#[test]
fn stale_executions_spend_the_budget_too() {
    let mut h = Harness::new(budget_spec(), 2);
    assert_eq!(h.running(), ["a"]);
    let d = h.in_flight.remove(0);
    // Delivery 2 took the attempt over; delivery 1's result comes in late.
    h.apply(Event::Started {
        job: h.job,
        index: d.index,
        attempt: d.attempt,
        worker: "w2".into(),
        delivery: 2,
    });
    let stale = costing(
        sim_result(&d, "w1".into(), 1, Outcome::Succeeded, h.now),
        0.6,
    );
    let actions = h.apply(Event::Finished(stale.clone()));
    let ignored = actions.iter().find_map(|a| match a {
        Action::Record(Change::Ignored { kind, .. }) => Some(*kind),
        _ => None,
    });
    assert_eq!(ignored, Some(Ignore::Stale));
    let fresh = costing(
        sim_result(&d, "w2".into(), 2, Outcome::Succeeded, h.now),
        0.5,
    );
    h.apply(Event::Finished(fresh.clone()));
    assert!(h.running().is_empty(), "{:?}", h.running());
    assert_eq!(
        h.state(1),
        TaskState::Skipped {
            reason: "budget exhausted ($1.10 of $1.00)".into()
        }
    );

    let saved = |ignored: Vec<TaskResult>| Saved {
        ignored,
        ..a_done_b_pending(fresh.clone())
    };
    let again = Harness::resumed(budget_spec(), 2, saved(vec![stale.clone()]));
    assert!(again.running().is_empty(), "{:?}", again.running());
    assert!(matches!(again.state(1), TaskState::Skipped { .. }));
    // Without the stale spend, $0.50 of $1: b runs.
    let forgetful = Harness::resumed(budget_spec(), 2, saved(Vec::new()));
    assert_eq!(forgetful.running(), ["b"]);
}

/// What an attempt's stage reviewers spent counts against the budget with the attempt's own
/// agent run (`TaskResult::spend`): $0.40 of the implementer plus $0.70 of a reviewer is over
/// $1, so b never starts; a result with only a reviewer's spend (no agent of its own) counts
/// too, after a restart as well.
#[test]
fn stage_reviewers_spend_the_budget_too() {
    let reviewed = |r: TaskResult, usd: f64| TaskResult {
        stages: vec![ordo_proto::gates::StageRecord {
            name: "review".into(),
            agent: Some(ordo_proto::AgentRun {
                cost_usd: Some(usd),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..r
    };
    let mut h = Harness::new(budget_spec(), 2);
    let d = h.in_flight.remove(0);
    let done = sim_result(&d, "w1".into(), 1, Outcome::Succeeded, h.now);
    h.apply(Event::Finished(reviewed(costing(done.clone(), 0.4), 0.7)));
    assert!(h.running().is_empty(), "{:?}", h.running());
    assert_eq!(
        h.state(1),
        TaskState::Skipped {
            reason: "budget exhausted ($1.10 of $1.00)".into()
        }
    );

    let mut h = Harness::new(budget_spec(), 2);
    let d = h.in_flight.remove(0);
    let only_review = reviewed(
        sim_result(&d, "w1".into(), 1, Outcome::Succeeded, h.now),
        1.2,
    );
    h.apply(Event::Finished(only_review.clone()));
    assert!(h.running().is_empty(), "{:?}", h.running());
    let again = Harness::resumed(budget_spec(), 2, a_done_b_pending(only_review));
    assert!(again.running().is_empty(), "{:?}", again.running());
    assert!(matches!(again.state(1), TaskState::Skipped { .. }));
}

/// The same execution reported again (its event redelivered after a lost ack) is a
/// duplicate that is not charged again: $0.60 of $1 spent, b still runs. Nor after a restart,
/// where the stored result is replayed first.
#[test]
fn a_result_reported_again_is_not_charged_twice() {
    let mut h = Harness::new(budget_spec(), 2);
    let d = h.in_flight.remove(0);
    let done = costing(
        sim_result(&d, "w1".into(), 1, Outcome::Succeeded, h.now),
        0.6,
    );
    h.apply(Event::Finished(done.clone()));
    assert_eq!(h.running(), ["b"]);
    let again = h.apply(Event::Finished(done.clone()));
    let charged = again.iter().find_map(|a| match a {
        Action::Record(Change::Ignored { kind, charged, .. }) => Some((*kind, *charged)),
        _ => None,
    });
    assert_eq!(charged, Some((Ignore::Duplicate, Some(false))));

    let mut resumed = Harness::resumed(budget_spec(), 2, a_done_b_pending(done.clone()));
    assert_eq!(resumed.running(), ["b"]);
    let late = resumed.apply(Event::Finished(done));
    assert!(
        late.iter().any(|a| matches!(
            a,
            Action::Record(Change::Ignored {
                charged: Some(false),
                ..
            })
        )),
        "{late:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Agent workspaces (docs/design.md, "Agent workspaces"): integration order, conflicts, write-sets.

fn worktree_spec(tasks: Vec<TaskSpec>) -> JobSpec {
    let mut s = spec(tasks);
    s.settings.workspace = Some(ordo_proto::WorkspaceMode::Worktree);
    s.settings.repository = Some("/repo".into());
    s
}

impl Harness {
    /// Finishes `name` successfully in its worktree, having changed `files`.
    fn finish_in_worktree(&mut self, name: &str, files: &[&str]) -> Vec<Action> {
        let pos = self
            .in_flight
            .iter()
            .position(|d| d.task.as_str() == name)
            .unwrap_or_else(|| panic!("{name} is not in flight: {:?}", self.in_flight));
        let d = self.in_flight.remove(pos);
        let ws = d
            .workspace
            .clone()
            .expect("a worktree job's dispatch names its worktree");
        let mut r = self.result(&d, Outcome::Succeeded);
        r.workspace = Some(Box::new(ordo_proto::WorkspaceResult {
            branch: ws.task_branch,
            base_commit: "base".into(),
            head: format!("head-of-{name}"),
            files: files.iter().map(|f| f.to_string()).collect(),
            worktree: format!("/wt/{name}"),
            unresolved: Vec::new(),
            resolved: false,
            lines: Vec::new(),
        }));
        self.apply(Event::Finished(r))
    }

    /// Ends the integration in flight (the oldest one not yet ended) with `outcome`.
    fn integrated(&mut self, outcome: ordo_proto::Integration) -> Vec<Action> {
        let i = self.integrations.remove(0);
        self.apply(Event::Integrated {
            job: i.job,
            index: i.index,
            attempt: i.attempt,
            outcome,
            batch: Vec::new(),
            step: i.step,
            stacked: i.stacked(),
        })
    }
}

/// The attempt results `actions` recorded (what a store keeps for a resumed job).
fn attempt_results(actions: &[Action]) -> Vec<TaskResult> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(Change::Attempt(r)) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// What a job resumes from: each task's stored state and attempts (no conflicts), and the
/// stored results.
fn saved_of(tasks: Vec<(TaskState, u32)>, results: Vec<TaskResult>) -> Saved {
    Saved {
        tasks: tasks
            .into_iter()
            .map(|(state, attempts)| SavedTask {
                state,
                attempts,
                conflicts: 0,
            })
            .collect(),
        results,
        ..Saved::default()
    }
}

impl Harness {
    /// The speculative base of the first attempt in flight.
    fn speculative_base(&self) -> &[ordo_proto::Resolve] {
        let ws = self.in_flight[0].workspace.as_ref();
        &ws.expect("a worktree attempt").speculative
    }
}

fn merged(files: &[&str]) -> ordo_proto::Integration {
    ordo_proto::Integration::Merged {
        commit: "c0ffee".into(),
        files: files.iter().map(|f| f.to_string()).collect(),
    }
}

/// A restarted engine resumes an integrating task from its stored attempt: its integration
/// is queued again and the task does not run again. Without the stored worktree result it
/// does run again.
#[test]
fn an_integrating_task_resumes_its_integration_not_its_run() {
    let tasks = || vec![task("a", &[]), task("b", &["a"])];
    let mut h = Harness::new(worktree_spec(tasks()), 2);
    let stored: Vec<TaskResult> = h
        .finish_in_worktree("a", &["a.txt"])
        .into_iter()
        .filter_map(|a| match a {
            Action::Record(Change::Attempt(r)) => Some(r),
            _ => None,
        })
        .collect();
    let integrating = h.state(0);
    assert!(matches!(integrating, TaskState::Integrating { .. }));
    let saved = |results: Vec<TaskResult>| Saved {
        tasks: vec![
            SavedTask {
                state: integrating.clone(),
                attempts: 1,
                conflicts: 0,
            },
            SavedTask {
                state: TaskState::Pending,
                attempts: 0,
                conflicts: 0,
            },
        ],
        results,
        ignored: Vec::new(),
        integrations: Default::default(),
        bisected: Default::default(),
    };

    let stored_again = stored.clone();
    let stored_bisected = stored.clone();
    let mut again = Harness::resumed(worktree_spec(tasks()), 2, saved(stored));
    assert!(again.dispatched.is_empty(), "{:?}", again.dispatched);
    assert_eq!(again.integrations.len(), 1);
    assert_eq!(again.integrations[0].head, "head-of-a");
    assert_eq!(again.integrations[0].attempt, Attempt(1));
    again.integrated(merged(&["a.txt"]));
    assert!(matches!(again.state(0), TaskState::Succeeded { .. }));
    assert_eq!(again.running(), ["b"]);

    let rerun = Harness::resumed(worktree_spec(tasks()), 2, saved(Vec::new()));
    assert!(rerun.integrations.is_empty());
    assert_eq!(rerun.running(), ["a"]);
    assert_eq!(rerun.in_flight[0].attempt, Attempt(2));

    // Two integrations tried before the restart (of 3): the one sent now is the last, and an
    // outcome for another attempt than the one integrating is not taken for it.
    let mut tried = saved(stored_again);
    tried.integrations.insert(0, 2);
    let mut last = Harness::resumed(worktree_spec(tasks()), 2, tried);
    assert!(last.integrations[0].last, "{:?}", last.integrations[0]);
    last.apply(Event::Integrated {
        job: last.job,
        index: TaskIndex(0),
        attempt: Attempt(7),
        outcome: merged(&["a.txt"]),
        batch: Vec::new(),
        step: 0,
        stacked: false,
    });
    assert!(matches!(
        last.engine.tasks(&last.job).unwrap()[0],
        TaskState::Integrating { .. }
    ));
    last.integrated(ordo_proto::Integration::VerifyFailed {
        exit_code: Some(1),
        output_tail: String::new(),
    });
    assert!(
        matches!(last.state(0), TaskState::Failed { .. }),
        "{:?}",
        last.state(0)
    );

    // In a bisected batch before the restart: requests of its attempt were carried out while
    // it stayed integrating, so the one made now has a step (a message id) of its own.
    let mut bisected = saved(stored_bisected);
    bisected.bisected.insert(0);
    let resumed = Harness::resumed(worktree_spec(tasks()), 2, bisected);
    assert_eq!(resumed.integrations[0].attempt, Attempt(1));
    assert_ne!(
        resumed.integrations[0].step, 0,
        "{:?}",
        resumed.integrations[0]
    );
    assert_eq!(
        resumed.integrations[0].step,
        super::job::resume_step(resumed.now)
    );
}

/// Two restarts within one second (a crash loop) give a bisected task's requests different
/// steps, hence message ids: JetStream would drop the second start's request as a duplicate of
/// the first's, already carried out, and the task would wait forever. The steps after a
/// resumed one never overflow.
#[test]
fn restarts_within_a_second_resume_bisected_tasks_at_different_steps() {
    use super::job::resume_step;
    let at = 1_765_000_000_123;
    assert_ne!(resume_step(at), resume_step(at + 400));
    for now in [0, at, u64::MAX] {
        let step = resume_step(now);
        assert!(step >= 1 && step.checked_add(1 << 30).is_some(), "{step}");
    }
}

/// Two tasks integrating when the engine stopped resume in the order they finished (b, then
/// a), and an outcome for the one still queued (a request made before the restart, carried
/// out by a worker meanwhile) is accepted rather than dropped: the request made again would
/// carry the same message id and be de-duplicated, so the task would wait forever.
#[test]
fn resumed_integrations_keep_their_order_and_accept_an_earlier_request() {
    let tasks = || vec![task("a", &[]), task("b", &[]), task("c", &["a", "b"])];
    let mut h = Harness::new(worktree_spec(tasks()), 2);
    let mut stored = Vec::new();
    h.now += 10;
    for name in ["b", "a"] {
        stored.extend(attempt_results(
            &h.finish_in_worktree(name, &[&format!("{name}.txt")]),
        ));
        h.now += 10;
    }
    let saved = saved_of(
        vec![(h.state(0), 1), (h.state(1), 1), (TaskState::Pending, 0)],
        stored,
    );

    let mut again = Harness::resumed(worktree_spec(tasks()), 2, saved);
    assert_eq!(again.integrations.len(), 1);
    assert_eq!(again.integrations[0].task.as_str(), "b", "b finished first");
    // An outcome for another attempt of a is not taken for it.
    again.apply(Event::Integrated {
        job: again.job,
        index: TaskIndex(0),
        attempt: Attempt(9),
        outcome: merged(&["a.txt"]),
        batch: Vec::new(),
        step: 0,
        stacked: false,
    });
    assert!(matches!(
        again.engine.tasks(&again.job).unwrap()[0],
        TaskState::Integrating { .. }
    ));
    // a's outcome arrives while b's integration is in flight.
    again.apply(Event::Integrated {
        job: again.job,
        index: TaskIndex(0),
        attempt: Attempt(1),
        outcome: merged(&["a.txt"]),
        batch: Vec::new(),
        step: 0,
        stacked: false,
    });
    assert!(matches!(again.state(0), TaskState::Succeeded { .. }));
    again.integrated(merged(&["b.txt"]));
    assert!(matches!(again.state(1), TaskState::Succeeded { .. }));
    assert_eq!(again.running(), ["c"]);
    assert!(again.integrations.is_empty(), "a is not integrated twice");
}

/// A task that succeeded in its worktree is `integrating`, not succeeded: its dependents wait
/// for its integration, and integrations go one at a time, in the order tasks finished.
#[test]
fn worktree_tasks_integrate_one_at_a_time_before_their_dependents_start() {
    let mut h = Harness::new(
        worktree_spec(vec![task("a", &[]), task("b", &[]), task("c", &["a"])]),
        4,
    );
    assert_eq!(h.running(), ["a", "b"]);
    let ws = h.in_flight[0].workspace.clone().unwrap();
    assert_eq!(ws.repository, "/repo");
    assert!(ws.integration_branch.starts_with("ordo/test-"), "{ws:?}");
    assert!(ws.task_branch.ends_with("/0-a/1"), "{ws:?}");

    h.finish_in_worktree("b", &["b.txt"]);
    h.finish_in_worktree("a", &["a.txt"]);
    assert!(matches!(h.state(0), TaskState::Integrating { .. }));
    assert!(matches!(h.state(1), TaskState::Integrating { .. }));
    assert!(h.running().is_empty(), "c waits for a's integration");
    assert_eq!(h.integrations.len(), 1, "one integration at a time");
    assert_eq!(
        h.integrations[0].task.as_str(),
        "b",
        "in the order tasks finished"
    );
    assert_eq!(h.integrations[0].head, "head-of-b");

    h.integrated(merged(&["b.txt"]));
    assert!(matches!(h.state(1), TaskState::Succeeded { .. }));
    assert_eq!(h.integrations.len(), 1);
    assert_eq!(h.integrations[0].task.as_str(), "a");
    assert!(h.running().is_empty());
    h.integrated(merged(&["a.txt"]));
    assert_eq!(h.running(), ["c"], "c starts once a is integrated");
    h.finish_in_worktree("c", &[]);
    h.integrated(ordo_proto::Integration::Unchanged {
        commit: "c0ffee".into(),
    });
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// A conflict sends the task back without spending an attempt (it had one), tells its next
/// attempt the files and the task it collided with, and keeps the two apart from then on;
/// past `max_integration_attempts` failed integration verifies it fails naming both.
#[test]
fn a_conflict_reruns_the_task_and_past_the_bound_it_fails_naming_files_and_task() {
    let mut s = worktree_spec(vec![task("a", &[]), task("b", &[])]);
    s.settings.max_integration_attempts = Some(2);
    s.tasks[1].prompt = Some("edit it".into());
    s.tasks[1].command = None;
    s.settings.agent_command = Some(vec!["agent".into()]);
    let mut h = Harness::new(s, 4);
    h.finish_in_worktree("a", &["same.txt"]);
    h.integrated(merged(&["same.txt"]));
    h.finish_in_worktree("b", &["same.txt"]);
    h.integrated(ordo_proto::Integration::Conflict {
        files: vec!["same.txt".into()],
    });
    assert_eq!(
        h.running(),
        ["b"],
        "b runs again although max_attempts is 1"
    );
    let d = h.in_flight[0].clone();
    assert_eq!(d.attempt, Attempt(2));
    assert_eq!(
        d.env.get("ORDO_CONFLICT_FILES").map(String::as_str),
        Some("same.txt")
    );
    let conflict = d.workspace.as_ref().unwrap().conflict.clone().unwrap();
    assert_eq!(conflict.with.as_ref().map(|n| n.as_str()), Some("a"));
    let ordo_proto::Program::Argv(argv) = &d.program else {
        panic!("a prompt runs as argv")
    };
    let prompt = argv.last().unwrap();
    assert!(
        prompt.starts_with("edit it") && prompt.contains("same.txt") && prompt.contains("'a'"),
        "{prompt}"
    );
    // A race lost does not count against the bound; what a rework cannot mend does.
    for _ in 0..2 {
        h.finish_in_worktree("b", &["same.txt"]);
        h.integrated(ordo_proto::Integration::VerifyFailed {
            exit_code: Some(1),
            output_tail: String::new(),
        });
    }
    match h.state(1) {
        TaskState::Failed { reason, .. } => {
            assert!(
                reason.contains("same.txt") && reason.contains("'a'") && reason.contains('2'),
                "{reason}"
            );
        }
        other => panic!("b should have failed: {other:?}"),
    }
    assert_eq!(h.job_state, Some(JobState::Failed));
}

/// No task starves on a hot file: a task that lost an integration race keeps its place while
/// it is reworked; a task that finished after it and touches the same file waits for it (else
/// it could move the tip under the rework again and again), one that touches other files does
/// not. Races lost do not count against `max_integration_attempts`.
#[test]
fn a_task_that_lost_a_race_keeps_its_place_while_reworked() {
    let mut s = worktree_spec(vec![
        task("a", &[]),
        task("b", &[]),
        task("c", &[]),
        task("d", &[]),
    ]);
    s.settings.max_integration_attempts = Some(1);
    let mut h = Harness::new(s, 4);
    h.finish_in_worktree("a", &["hot.md"]);
    h.finish_in_worktree("b", &["hot.md", "b.rs"]);
    h.finish_in_worktree("c", &["hot.md"]);
    h.finish_in_worktree("d", &["d.rs"]);
    h.integrated(merged(&["hot.md"])); // a
    h.integrated(ordo_proto::Integration::Conflict {
        files: vec!["hot.md".into()],
    }); // b lost the race to a
    assert_eq!(h.running(), ["b"], "b is reworked");
    assert_eq!(
        h.integrations
            .iter()
            .map(|i| i.task.as_str())
            .collect::<Vec<_>>(),
        ["d"],
        "c waits for b (both touch hot.md); d touches other files"
    );
    h.integrated(merged(&["d.rs"]));
    assert!(h.integrations.is_empty(), "c still waits for b");
    h.finish_in_worktree("b", &["hot.md", "b.rs"]);
    assert_eq!(
        h.integrations[0].task.as_str(),
        "b",
        "b before c: its place"
    );
    h.integrated(merged(&["hot.md", "b.rs"]));
    h.integrated(ordo_proto::Integration::Conflict {
        files: vec!["hot.md".into()],
    }); // c lost the race to b
    h.finish_in_worktree("c", &["hot.md"]);
    h.integrated(merged(&["hot.md"]));
    for t in 0..4 {
        assert!(
            matches!(h.state(t), TaskState::Succeeded { .. }),
            "{t}: {:?}",
            h.state(t)
        );
    }
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// A prompt task that lost a race resolves it in its own session: the next attempt starts from
/// its conflicted commit with the tip merged in (`conflict.resolve`), resumes its session with
/// a prompt naming the files; spending no attempt. A resolve round that leaves markers sends
/// it back to the tip as a plain re-run (no resolve, the conflict note in the prompt).
#[test]
fn a_prompt_task_resolves_a_conflict_in_its_own_session() {
    let mut s = worktree_spec(vec![task("a", &[]), task("b", &[])]);
    s.tasks[1].prompt = Some("edit it".into());
    s.tasks[1].command = None;
    s.settings.agent = Some(ordo_proto::AgentKind::Claude);
    let mut h = Harness::new(s, 4);
    h.finish_in_worktree("a", &["same.txt"]);
    h.integrated(merged(&["same.txt"]));
    // b's first run reports a session.
    let pos = h
        .in_flight
        .iter()
        .position(|d| d.task.as_str() == "b")
        .unwrap();
    let d = h.in_flight.remove(pos);
    let mut r = h.result(&d, Outcome::Succeeded);
    r.agent = Some(Box::new(ordo_proto::AgentRun {
        session_id: Some("sess-b".into()),
        ..Default::default()
    }));
    r.workspace = Some(Box::new(ordo_proto::WorkspaceResult {
        branch: d.workspace.clone().unwrap().task_branch,
        base_commit: "base".into(),
        head: "head-of-b".into(),
        files: vec!["same.txt".into()],
        worktree: "/wt/b".into(),
        unresolved: Vec::new(),
        resolved: false,
        lines: Vec::new(),
    }));
    h.apply(Event::Finished(r));
    h.integrated(ordo_proto::Integration::Conflict {
        files: vec!["same.txt".into()],
    });
    let d = h.in_flight[0].clone();
    assert_eq!(d.attempt, Attempt(2));
    let conflict = d.workspace.as_ref().unwrap().conflict.clone().unwrap();
    let resolve = conflict.resolve.expect("a resolve round");
    assert_eq!(resolve.head, "head-of-b");
    let ordo_proto::Program::Argv(argv) = &d.program else {
        panic!("a prompt runs as argv")
    };
    assert!(
        argv.windows(2).any(|w| w == ["--resume", "sess-b"]),
        "{argv:?}"
    );
    let prompt = argv.last().unwrap();
    assert!(
        prompt.contains("Resolve each conflict")
            && prompt.contains("same.txt")
            && prompt.contains("'a'"),
        "{prompt}"
    );

    // The round leaves markers: b runs again from the tip, still no attempt spent.
    h.in_flight.remove(0);
    let mut r = h.result(&d, Outcome::Failed);
    r.workspace = Some(Box::new(ordo_proto::WorkspaceResult {
        branch: d.workspace.clone().unwrap().task_branch,
        base_commit: "base".into(),
        head: "head-of-b".into(),
        files: vec!["same.txt".into()],
        worktree: "/wt/b".into(),
        unresolved: vec!["same.txt".into()],
        resolved: false,
        lines: Vec::new(),
    }));
    h.apply(Event::Finished(r));
    let d = h.in_flight[0].clone();
    assert_eq!(d.attempt, Attempt(3));
    let conflict = d.workspace.as_ref().unwrap().conflict.clone().unwrap();
    assert!(conflict.resolve.is_none(), "a plain re-run: {conflict:?}");
    let ordo_proto::Program::Argv(argv) = &d.program else {
        panic!()
    };
    assert!(argv.last().unwrap().starts_with("edit it"), "{argv:?}");
    h.finish_in_worktree("b", &["same.txt"]);
    h.integrated(merged(&["same.txt"]));
    assert_eq!(h.job_state, Some(JobState::Succeeded));
}

/// Two tasks that once conflicted share a lock from then on, so they never run at the same
/// time again in this job (if either runs again); nothing else is locked.
#[test]
fn a_conflict_locks_the_two_tasks_together() {
    let mut h = Harness::new(
        worktree_spec(vec![task("a", &[]), task("b", &[]), task("c", &[])]),
        4,
    );
    h.finish_in_worktree("a", &["x"]);
    h.finish_in_worktree("b", &["x"]);
    h.finish_in_worktree("c", &["y"]);
    h.integrated(merged(&["x"])); // a
    h.integrated(ordo_proto::Integration::Conflict {
        files: vec!["x".into()],
    }); // b, against a
    let job = h.engine.jobs.values().next().unwrap();
    let (a, b, c) = (job.locks_of("a"), job.locks_of("b"), job.locks_of("c"));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a, b, "a and b share the lock");
    assert!(c.is_empty(), "c conflicted with nobody: {c:?}");
    assert_eq!(h.running(), ["b"], "b runs again, alone");
}

/// Tasks whose `files` may overlap never run at the same time; disjoint ones run together.
#[test]
fn overlapping_write_sets_serialise_and_disjoint_ones_run_together() {
    let mut s = spec(vec![
        task("api", &[]),
        task("api-tests", &[]),
        task("docs", &[]),
    ]);
    s.tasks[0].files = vec!["src/api/**".into()];
    s.tasks[1].files = vec!["src/api/tests.rs".into()];
    s.tasks[2].files = vec!["docs/*.md".into()];
    let mut h = Harness::new(s, 4);
    assert_eq!(h.running(), ["api", "docs"], "api-tests waits for api");
    h.finish("api", Outcome::Succeeded);
    let mut running = h.running();
    running.sort();
    assert_eq!(running, ["api-tests", "docs"]);
}

/// `legal` is the task-state diagram: the changes the engine makes pass, and a change outside
/// it (a task going back, skipping a step, or ending twice) is refused, so `set_state`'s
/// assertion stops it in every test run.
#[test]
fn legal_allows_the_diagram_and_refuses_the_rest() {
    let a = Attempt(1);
    let pending = TaskState::Pending;
    let ready = TaskState::Ready { since: 1 };
    let dispatched = TaskState::Dispatched { attempt: a, at: 1 };
    let running = TaskState::Running {
        attempt: a,
        worker: WorkerId::from("w"),
        started: 1,
    };
    let integrating = TaskState::Integrating {
        attempt: a,
        since: 1,
    };
    let retry_wait = TaskState::RetryWait {
        attempt: a,
        until: 2,
        reason: "r".into(),
    };
    let succeeded = TaskState::Succeeded {
        attempt: a,
        finished: 2,
    };
    let failed = TaskState::Failed {
        attempt: a,
        finished: 2,
        reason: "r".into(),
    };
    let timed_out = TaskState::TimedOut {
        attempt: a,
        finished: 2,
        reason: "r".into(),
    };
    let cancelled = TaskState::Cancelled {
        finished: 2,
        reason: "r".into(),
    };
    let skipped = TaskState::Skipped { reason: "r".into() };
    for (from, to) in [
        (&pending, &ready),
        (&ready, &dispatched),
        (&dispatched, &running),
        (&running, &running),
        (&running, &succeeded),
        (&running, &timed_out),
        (&dispatched, &failed),
        (&running, &retry_wait),
        (&retry_wait, &ready),
        (&running, &integrating),
        (&integrating, &succeeded),
        (&integrating, &ready),
        (&dispatched, &ready),
        (&ready, &failed),
        (&pending, &skipped),
        (&retry_wait, &cancelled),
        (&succeeded, &ready),
        // A speculative task discarded waits for its dependencies again.
        (&running, &pending),
        (&integrating, &pending),
    ] {
        assert!(legal(from, to), "{} -> {}", from.name(), to.name());
    }
    for (from, to) in [
        (&succeeded, &pending),
        (&pending, &pending),
        (&pending, &running),
        (&pending, &dispatched),
        (&ready, &running),
        (&ready, &ready),
        (&running, &dispatched),
        (&pending, &succeeded),
        (&ready, &timed_out),
        (&integrating, &timed_out),
        (&retry_wait, &running),
        (&running, &skipped),
        (&failed, &cancelled),
        (&cancelled, &skipped),
        (&skipped, &ready),
        (&cancelled, &ready),
        (&succeeded, &failed),
    ] {
        assert!(!legal(from, to), "{} -> {}", from.name(), to.name());
    }
}

/// A prompt task of agent `claude`, which takes the pool named `claude`.
fn prompt_task(name: &str) -> TaskSpec {
    let mut t = task(name, &[]);
    t.command = None;
    t.prompt = Some(format!("do {name}"));
    t
}

/// What an agent run reports: clean, or refused by its provider (429, asking for 1 s).
fn agent_result(h: &Harness, d: &Dispatch, refused: bool) -> TaskResult {
    let outcome = match refused {
        true => Outcome::Failed,
        false => Outcome::Succeeded,
    };
    let mut r = h.result(d, outcome);
    r.agent = Some(Box::new(AgentRun {
        rate_limited: refused.then_some(RateLimit {
            retry_after_ms: Some(1_000),
        }),
        ..AgentRun::default()
    }));
    r
}

fn pool_changes(actions: &[Action]) -> Vec<PoolLimit> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(Change::Pool { name, limit }) if name == "claude" => Some(limit.clone()),
            _ => None,
        })
        .collect()
}

/// A pool of 8 agent runs under a provider that refuses a run beyond 3 at once: the limit
/// starts at 2, rises by one a round, comes down on the first refusal (once for one burst),
/// and, within the cool-down, never probes 4 again; every refused run waits out its rate
/// limit holding no place of the pool and no slot, and every task succeeds. A command task
/// of the same pool is bounded by the size alone.
#[test]
fn an_agent_pool_adapts_to_its_providers_limit() {
    const CAP: usize = 3;
    let mut s = spec((0..30).map(|i| prompt_task(&format!("p{i}"))).collect());
    s.settings.pools.insert("claude".into(), 8);
    let mut h = Harness::new(s, 16);
    let (mut admitted, mut most, mut refused_runs) = (Vec::<Dispatch>::new(), 0, 0);
    let mut limits = Vec::new();
    let mut after_first_refusal = None;
    for _ in 0..10_000 {
        let at_once = admitted.len() + h.in_flight.len();
        most = most.max(at_once);
        if let Some(at) = after_first_refusal
            && h.now < at + COOL_DOWN_MS
        {
            assert!(at_once <= CAP, "4 was probed again within the cool-down");
        }
        // The provider: runs beyond its cap are refused at once.
        let fresh: Vec<Dispatch> = h
            .in_flight
            .drain(..)
            .filter(|d| !admitted.iter().any(|a| a.index == d.index))
            .collect();
        for d in fresh {
            if admitted.len() < CAP {
                admitted.push(d);
                continue;
            }
            refused_runs += 1;
            let r = agent_result(&h, &d, true);
            let actions = h.apply(Event::Finished(r));
            limits.extend(pool_changes(&actions));
            after_first_refusal.get_or_insert(h.now);
        }
        if admitted.is_empty() && h.in_flight.is_empty() {
            if h.job_state.is_some_and(|s| s.is_terminal()) {
                break;
            }
            // Only rate-limited tasks wait: nothing of the pool is held meanwhile.
            assert_eq!(h.engine.busy_slots(), 0);
            h.advance(100);
            continue;
        }
        h.now += 500;
        let d = admitted.remove(0);
        let r = agent_result(&h, &d, false);
        let actions = h.apply(Event::Finished(r));
        limits.extend(pool_changes(&actions));
    }
    assert_eq!(h.job_state, Some(JobState::Succeeded), "nothing is lost");
    assert_eq!(most, 4, "the limit rose past the provider's cap once");
    assert_eq!(refused_runs, 1, "one refusal found the cap: {limits:?}");
    let last = limits.last().expect("the limit was recorded");
    assert_eq!(last.refused_total, 1);
    assert_eq!(last.limit, 3, "settled at the provider's cap: {limits:?}");
    assert_eq!(h.engine.pool_limits()["claude"].limit, 3);

    // A restarted engine goes on from the recorded limit rather than from 2.
    let mut s = spec((0..8).map(|i| prompt_task(&format!("q{i}"))).collect());
    s.settings.pools.insert("claude".into(), 8);
    let mut engine = Engine::new();
    let capacity = Capacity::machine(16, 4.0, 8192);
    engine.apply(
        0,
        Event::Capacity {
            queue: ANY_QUEUE.into(),
            capacity,
        },
    );
    engine.apply(
        0,
        Event::Pool {
            name: "claude".into(),
            limit: last.clone(),
        },
    );
    let dag = validate(&s).unwrap();
    let submit = Event::Submit {
        job: JobId::new(),
        spec: Arc::new(s),
        dag: Arc::new(dag),
        options: JobOptions::default(),
        saved: None,
    };
    let actions = engine.apply(0, submit);
    let dispatched = actions
        .iter()
        .filter(|a| matches!(a, Action::Dispatch(_)))
        .count();
    assert_eq!(dispatched, 3);
}

/// Commands in a pool stay bounded by its size, whatever an agent pool's limit is.
#[test]
fn a_pool_of_commands_stays_fixed() {
    let mut tasks: Vec<TaskSpec> = (0..6).map(|i| task(&format!("c{i}"), &[])).collect();
    for t in &mut tasks {
        t.pool = Some("claude".into());
    }
    let mut s = spec(tasks);
    s.settings.pools.insert("claude".into(), 5);
    let h = Harness::new(s, 16);
    assert_eq!(h.running().len(), 5);
    assert!(h.engine.pool_limits().is_empty());
}

/// Proves the escalation ladder climbs with the attempts: attempt 1 of a task with
/// `escalate = ["a", "b"]` asks for `a`, attempt 2 (after a failed verify) and any later one
/// for `b`; the model is both in the agent's argv and in the dispatch.
#[test]
fn a_failed_verify_escalates_to_the_next_model() {
    let mut t = prompt_task("p");
    t.verify_command = Some("false".into());
    t.max_attempts = Some(3);
    t.escalate = Some(vec!["a".into(), "b".into()]);
    let mut h = Harness::new(spec(vec![t]), 1);
    let mut models = Vec::new();
    for _ in 0..3 {
        let d = h.in_flight[0].clone();
        let ordo_proto::Program::Argv(argv) = &d.program else {
            panic!("an agent's argv, got {:?}", d.program)
        };
        let flag = argv.iter().position(|a| a == "--model").expect("--model");
        assert_eq!(d.model.as_deref(), Some(argv[flag + 1].as_str()));
        models.push((d.attempt, argv[flag + 1].clone()));
        h.finish("p", Outcome::VerifyFailed);
        h.advance(60_000);
    }
    assert_eq!(
        models,
        [
            (Attempt(1), "a".to_string()),
            (Attempt(2), "b".to_string()),
            (Attempt(3), "b".to_string()),
        ]
    );
}

/// The ladder climbs with repeated conflicts too (the first conflict re-runs on the same rung),
/// and a dispatch with stages carries the rungs above its own for its revision rounds.
#[test]
fn repeated_conflicts_and_revision_rounds_climb_the_ladder() {
    let mut t = prompt_task("p");
    t.escalate = Some(vec!["a".into(), "b".into(), "c".into()]);
    let mut s = worktree_spec(vec![t]);
    s.stages = vec![ordo_proto::gates::StageSpec {
        name: "lint".into(),
        command: Some("true".into()),
        ..Default::default()
    }];
    let mut h = Harness::new(s, 1);
    let mut models = Vec::new();
    for _ in 0..3 {
        let d = h.in_flight[0].clone();
        let revisions = d.implementer.as_ref().map(|c| c.escalate.clone());
        models.push((d.model.clone().unwrap(), revisions.unwrap_or_default()));
        h.finish_in_worktree("p", &["hot.md"]);
        h.integrated(ordo_proto::Integration::Conflict {
            files: vec!["hot.md".into()],
        });
    }
    let v = |m: &str, r: &[&str]| (m.to_string(), r.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        models,
        [v("a", &["b", "c"]), v("a", &["b", "c"]), v("b", &["c"])]
    );
}

mod approvals;
mod batches;
mod speculation;
