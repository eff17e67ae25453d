//! Engine tests: each semantic of DESIGN §3 on a small job, then model-based runs over random
//! DAGs with a simulated executor that starts, finishes, duplicates, replays stale attempts and
//! reorders results, checking the module invariants after every step. No sleeps: time is data.

use std::collections::HashMap;
use std::sync::Arc;

use ordo_proto::{
    Attempt, Dispatch, ExecutionMode, JobId, JobSpec, Jump, Outcome, TaskName, TaskResult,
    TaskSpec, validate::validate,
};

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
    t.depends_on = deps.iter().map(|d| TaskName::new(*d).unwrap()).collect();
    t
}

/// Drives one job through the engine and remembers everything it said.
struct Harness {
    engine: Engine,
    job: JobId,
    now: Millis,
    in_flight: Vec<Dispatch>,
    dispatched: Vec<String>,
    killed: Vec<u32>,
    job_state: Option<JobState>,
    /// Each task's last recorded state (kept after the engine drops a finished job).
    recorded: HashMap<u32, TaskState>,
}

impl Harness {
    fn new(spec: JobSpec, slots: u32) -> Harness {
        Harness::with(spec, slots, JobOptions::default())
    }

    fn with(spec: JobSpec, slots: u32, options: JobOptions) -> Harness {
        let dag = validate(&spec).expect("valid spec");
        let mut h = Harness {
            engine: Engine::new(),
            job: JobId::new(),
            now: 1_000,
            in_flight: Vec::new(),
            dispatched: Vec::new(),
            killed: Vec::new(),
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
            saved: None,
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
                Action::Kill { index, .. } => self.killed.push(*index),
                Action::Record(Change::Job { state, .. }) => self.job_state = Some(*state),
                Action::Record(Change::Task { index, state, .. }) => {
                    self.recorded.insert(*index, state.clone());
                }
                Action::Record(_) => {}
            }
        }
        actions
    }

    fn result(&self, d: &Dispatch, outcome: Outcome) -> TaskResult {
        TaskResult {
            job: d.job,
            task: d.task.clone(),
            index: d.index,
            attempt: d.attempt,
            outcome,
            exit_code: Some(if outcome.is_success() { 0 } else { 1 }),
            signal: None,
            verify_exit_code: None,
            started_at_ms: self.now,
            duration_ms: 1,
            command_ms: 1,
            verify_started_ms: None,
            output_tail: String::new(),
            output_bytes: 0,
            worker: "sim".into(),
            delivery: 0,
            abandoned: false,
            message: format!("{outcome:?}"),
        }
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
            m.insert(*index, state.clone());
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
        index: 0,
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
        index: 0,
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
        },
        SavedTask {
            state: TaskState::Running {
                attempt: Attempt(1),
                worker: "local".into(),
                started: 6,
            },
            attempts: 1,
        },
        SavedTask {
            state: TaskState::Pending,
            attempts: 0,
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
            saved: Some(saved),
        },
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Dispatch(_))));
    let actions = engine.apply(
        11,
        Event::Requeue {
            job,
            index: 1,
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
fn retry_records_reset_failed_tasks_only() {
    let saved = vec![
        SavedTask {
            state: TaskState::Succeeded {
                attempt: Attempt(1),
                finished: 1,
            },
            attempts: 1,
        },
        SavedTask {
            state: TaskState::Failed {
                attempt: Attempt(1),
                finished: 1,
                reason: "x".into(),
            },
            attempts: 1,
        },
        SavedTask {
            state: TaskState::Skipped {
                reason: "dep".into(),
            },
            attempts: 0,
        },
        SavedTask {
            state: TaskState::Cancelled {
                finished: 1,
                reason: "c".into(),
            },
            attempts: 0,
        },
    ];
    let again = retry_records(&saved, true);
    assert!(matches!(again[0].state, TaskState::Succeeded { .. }));
    assert_eq!(again[1].state, TaskState::Pending);
    assert_eq!(again[1].attempts, 1, "attempt numbers keep counting");
    assert_eq!(again[2].state, TaskState::Pending);
    assert_eq!(again[3].state, TaskState::Pending);
    let all = retry_records(&saved, false);
    assert!(all.iter().all(|s| s.state == TaskState::Pending));
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
// Model-based: random DAGs, random policies, a random adversarial executor.

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
}

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
        t.allow_failure = rng.chance(10);
        t.priority = rng.below(3) as i32;
        t.exclusive = rng.chance(5);
        if rng.chance(20) {
            t.locks = vec![format!("l{}", rng.below(2))];
        }
        if rng.chance(20) {
            t.cpu_required = Some(rng.below(3) as f64);
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

#[test]
fn model_random_dags_and_adversarial_executor_keep_every_invariant() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for round in 0..400 {
        let s = random_spec(&mut rng);
        let max_attempts: Vec<u32> = s.tasks.iter().map(|t| s.max_attempts(t)).collect();
        let tolerated: Vec<bool> = s.tasks.iter().map(|t| t.allow_failure).collect();
        let deps: Vec<Vec<usize>> = {
            let dag = validate(&s).unwrap();
            dag.deps
                .iter()
                .map(|d| d.iter().map(|&x| x as usize).collect())
                .collect()
        };
        let n = s.tasks.len();
        let slots = 1 + rng.below(4) as u32;
        let mut h = Harness::with(
            s,
            slots,
            JobOptions {
                seed: round,
                ..Default::default()
            },
        );
        let mut states: Vec<TaskState> = vec![TaskState::Pending; n];
        let mut terminal_changes = vec![0u32; n];
        let mut dispatch_count = vec![0u32; n];
        let mut done_results: Vec<TaskResult> = Vec::new();
        let mut job_ends = 0;
        let mut pending_actions = std::mem::take(&mut h.in_flight)
            .into_iter()
            .inspect(|d| dispatch_count[d.index as usize] += 1)
            .collect::<Vec<_>>();
        // Seed the model with what Submit already recorded.
        let check = |actions: &[Action],
                     states: &mut Vec<TaskState>,
                     terminal_changes: &mut Vec<u32>,
                     dispatch_count: &mut Vec<u32>,
                     job_ends: &mut u32,
                     flight: &mut Vec<Dispatch>| {
            for a in actions {
                match a {
                    Action::Record(Change::Task { index, state, .. }) => {
                        let i = *index as usize;
                        assert!(
                            !states[i].is_terminal(),
                            "round {round}: task {i} changed after terminal: {:?} → {state:?}",
                            states[i]
                        );
                        if state.is_terminal() {
                            terminal_changes[i] += 1;
                        }
                        states[i] = state.clone();
                    }
                    Action::Dispatch(d) => {
                        let i = d.index as usize;
                        for &dep in &deps[i] {
                            let ok = match &states[dep] {
                                TaskState::Succeeded { .. } => true,
                                TaskState::Failed { .. } | TaskState::TimedOut { .. } => {
                                    tolerated[dep]
                                }
                                _ => false,
                            };
                            assert!(
                                ok,
                                "round {round}: task {i} dispatched before dependency {dep} ({:?})",
                                states[dep]
                            );
                        }
                        dispatch_count[i] += 1;
                        assert!(
                            dispatch_count[i] <= max_attempts[i],
                            "round {round}: task {i} exceeded max_attempts"
                        );
                        flight.push(d.clone());
                    }
                    Action::Record(Change::Job { state, .. }) if state.is_terminal() => {
                        *job_ends += 1;
                        assert!(
                            states.iter().all(TaskState::is_terminal),
                            "round {round}: job ended with tasks open: {states:?}"
                        );
                    }
                    _ => {}
                }
            }
        };
        // Replay Submit's records from the engine's view.
        for (i, st) in h
            .engine
            .tasks(&h.job)
            .map(|t| t.to_vec())
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            states[i] = st;
        }
        let mut steps = 0;
        while !h.engine.is_idle() {
            steps += 1;
            assert!(steps < 10_000, "round {round}: no progress");
            let choice = rng.below(100);
            let actions = if !pending_actions.is_empty() && choice < 55 {
                let k = rng.below(pending_actions.len() as u64) as usize;
                let d = pending_actions.swap_remove(k);
                let outcome = match rng.below(10) {
                    0..=5 => Outcome::Succeeded,
                    6 => Outcome::VerifyFailed,
                    7 => Outcome::TimedOut,
                    _ => Outcome::Failed,
                };
                if rng.chance(30) {
                    let started = Event::Started {
                        job: d.job,
                        index: d.index,
                        attempt: d.attempt,
                        worker: "w".into(),
                        delivery: 0,
                    };
                    let a = h.engine.apply(h.now, started);
                    check(
                        &a,
                        &mut states,
                        &mut terminal_changes,
                        &mut dispatch_count,
                        &mut job_ends,
                        &mut pending_actions,
                    );
                }
                let r = h.result(&d, outcome);
                done_results.push(r.clone());
                h.engine.apply(h.now, Event::Finished(r))
            } else if !done_results.is_empty() && choice < 70 {
                // A duplicate or stale replay of something already reported.
                let k = rng.below(done_results.len() as u64) as usize;
                let mut r = done_results[k].clone();
                if rng.chance(50) {
                    r.outcome = Outcome::Succeeded;
                }
                let before = h.engine.tasks(&h.job).map(|t| t.to_vec());
                let a = h.engine.apply(h.now, Event::Finished(r));
                let changed = a
                    .iter()
                    .any(|x| matches!(x, Action::Record(Change::Attempt(_))));
                assert!(!changed, "round {round}: a replayed result was applied");
                let after = h.engine.tasks(&h.job).map(|t| t.to_vec());
                if a.iter()
                    .all(|x| matches!(x, Action::Record(Change::Ignored { .. })))
                {
                    assert_eq!(
                        before, after,
                        "round {round}: an ignored result changed state"
                    );
                }
                a
            } else if choice < 72 && rng.chance(20) {
                h.engine.apply(
                    h.now,
                    Event::Cancel {
                        job: h.job,
                        reason: "test".into(),
                    },
                )
            } else {
                h.now += rng.below(40);
                h.engine.apply(h.now, Event::Tick)
            };
            let mut flight = Vec::new();
            check(
                &actions,
                &mut states,
                &mut terminal_changes,
                &mut dispatch_count,
                &mut job_ends,
                &mut flight,
            );
            pending_actions.extend(flight);
            // Kills are honoured by the simulated executor as cancelled results.
            for a in &actions {
                if let Action::Kill { index, attempt, .. } = a
                    && let Some(p) = pending_actions
                        .iter()
                        .position(|d| d.index == *index && d.attempt == *attempt)
                {
                    let d = pending_actions.swap_remove(p);
                    let r = h.result(&d, Outcome::Cancelled);
                    let a = h.engine.apply(h.now, Event::Finished(r));
                    let mut flight = Vec::new();
                    check(
                        &a,
                        &mut states,
                        &mut terminal_changes,
                        &mut dispatch_count,
                        &mut job_ends,
                        &mut flight,
                    );
                    pending_actions.extend(flight);
                }
            }
        }
        assert_eq!(job_ends, 1, "round {round}: job ended {job_ends} times");
        for (i, ended) in terminal_changes.iter().enumerate() {
            assert_eq!(*ended, 1, "round {round}: task {i} ended {ended} times");
        }
    }
}
