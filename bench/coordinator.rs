//! The coordinator alone (docs/design.md, "Targets", issue 18): its CPU per task and the tasks per
//! second one core of it can carry, with simulated workers that speak the wire protocol (pull task
//! messages, publish `Finished` results to JetStream through a real worker's batching
//! `Reporter`, ack) and answer at once, so nothing but the coordinator (and the broker) limits
//! the rate. The coordinator runs on its own thread pinned to one CPU, as `ordo-coordinator` runs (one thread); nats-server and the simulated
//! workers share the other. Its CPU time is read from /proc for that thread.
//!
//! Prints, for N independent tasks (ORDO_BENCH_N, default 20,000) and a 2,000-task chain:
//! coordinator CPU per task (target ≤ 100 µs), the ceiling that implies (target ≥ 10,000
//! tasks/s), and the rate the run reached.
//!
//! Run: `cargo bench --workspace --bench coordinator` (after `scripts/test` installed nats-server).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use ordo_coordinator::service;
use ordo_coordinator::store::Store;
use ordo_proto::wire::{self, Dispatch, Heartbeat, Outcome, TaskResult, WorkerEvent};
use ordo_proto::{names, now_ms};
use ordo_worker::report::Reporter;
use tokio::sync::oneshot;

#[path = "common.rs"]
mod common;
#[path = "nats.rs"]
mod nats;

use nats::{
    connect, own_thread, pin_to, run_job, start_nats, thread_cpu, thread_id, two_cpus, wait_api,
};

/// A simulated worker: announces `slots` slots, pulls task messages and reports each
/// succeeded at once (the result stored in JetStream before the message is acked, as a real
/// worker does), until `stop` resolves.
async fn simulated_worker(url: String, id: String, slots: u32, stop: oneshot::Receiver<()>) {
    let client = connect(&url).await;
    let js = jetstream::new(client.clone());
    let hb_client = client.clone();
    let hb_id = id.clone();
    let heartbeats = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let hb = Heartbeat {
                worker: hb_id.as_str().into(),
                host: "sim".into(),
                queues: vec![names::DEFAULT_QUEUE.into()],
                slots,
                busy: 0,
                cpus: 64.0,
                memory_mb: 1 << 20,
                draining: false,
                at_ms: now_ms(),
                note: None,
            };
            let _ = hb_client
                .publish(
                    names::heartbeat_subject(&hb_id.as_str().into()),
                    wire::encode(&hb).into(),
                )
                .await;
        }
    });
    let consumer = loop {
        if let Ok(stream) = js.get_stream(names::TASK_STREAM).await
            && let Ok(c) = stream
                .get_consumer::<jetstream::consumer::pull::Config>(&names::queue_consumer(
                    names::DEFAULT_QUEUE,
                ))
                .await
        {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(slots as usize)
        .messages()
        .await
        .expect("pull");
    // A real worker's reporter: results that queue while one is stored go together.
    let reporter = Reporter::start(js.clone(), id.as_str().into());
    let work = async {
        while let Some(Ok(msg)) = messages.next().await {
            let Ok(d) = wire::decode::<Dispatch>(&msg.payload) else {
                let _ = msg.ack().await;
                continue;
            };
            let mut r = TaskResult::new(&d, id.as_str().into(), Outcome::Succeeded, now_ms(), "");
            r.exit_code = Some(0);
            r.delivery = msg.info().map_or(1, |i| i.delivered as u32);
            let reporter = reporter.clone();
            tokio::spawn(async move {
                reporter.report(WorkerEvent::Finished(r)).await;
                let _ = msg.ack().await;
            });
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
    heartbeats.abort();
}

fn report(what: &str, n: usize, cpu: Duration, took: Duration) {
    let per_task = cpu.as_secs_f64() * 1e6 / n as f64;
    println!(
        "coordinator alone, {what}: {per_task:.0} µs of coordinator CPU per task (target <= 100): \
         ceiling {:.0} tasks/s on one core (target >= 10,000); this run {:.0} tasks/s",
        1e6 / per_task.max(0.001),
        n as f64 / took.as_secs_f64()
    );
}

/// One setup measured: a fresh nats-server and coordinator, `workers` simulated workers of
/// `slots` slots each, N independent tasks and (`chain`) a 2,000-task chain.
async fn scenario(n: usize, workers: u32, slots: u32, chain: bool) {
    let (coordinator_cpu, rest) = match two_cpus() {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let nats = start_nats(rest);
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let tid = Arc::new(AtomicI32::new(0));
    let (stop_coordinator, stopped) = oneshot::channel::<()>();
    let url = nats.url.clone();
    let coordinator_tid = tid.clone();
    let coordinator = own_thread(
        "coordinator",
        service::runtime(),
        coordinator_cpu,
        async move {
            coordinator_tid.store(thread_id(), Ordering::SeqCst);
            let client = connect(&url).await;
            let shutdown = async {
                let _ = stopped.await;
            };
            service::run(client, store, service::Options::default(), shutdown)
                .await
                .expect("coordinator");
        },
    );
    let client = connect(&nats.url).await;
    wait_api(&client, 200).await;
    let mut stops = Vec::new();
    for w in 0..workers {
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(simulated_worker(
            nats.url.clone(),
            format!("sim-{w}"),
            slots,
            stopped,
        ));
    }
    // Capacity reaches the engine on the coordinator's housekeeping tick.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tid = tid.load(Ordering::SeqCst);
    let setup = format!("{workers} simulated worker(s) × {slots} slots");

    // Warm up (streams, consumers, caches), then measure.
    run_job(&client, common::job(500, "true", false)).await;
    let before = thread_cpu(tid);
    let took = run_job(&client, common::job(n, "true", false)).await;
    report(
        &format!("{n} independent tasks, {setup}"),
        n,
        thread_cpu(tid) - before,
        took,
    );
    if chain {
        let hops = 2_000;
        let before = thread_cpu(tid);
        let took = run_job(&client, common::job(hops, "true", true)).await;
        report(
            &format!("a {hops}-task chain, {setup}"),
            hops,
            thread_cpu(tid) - before,
            took,
        );
        println!(
            "coordinator alone, chain: {:.3} ms per hop",
            took.as_secs_f64() * 1000.0 / hops as f64
        );
    }
    drop(stops);
    drop(stop_coordinator);
    let _ = tokio::task::spawn_blocking(move || coordinator.join()).await;
    drop(nats);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("ORDO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    if let Some((_, rest)) = two_cpus() {
        // This thread, the simulated workers and nats-server share the CPU the coordinator
        // does not use.
        pin_to(Some(rest));
    }
    // Enough slots that the coordinator is the limit, then a worker as small as the
    // distributed bench's (4 slots), where each result is a turn of its own.
    scenario(n, 2, 256, true).await;
    scenario(n / 4, 1, 4, false).await;
}
