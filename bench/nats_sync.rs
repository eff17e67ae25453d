//! JetStream publish-ack throughput with nats-server's default file-store sync (fsync every two
//! minutes) versus `sync_interval: always` (fsync before every ack), the choice documented in
//! `deploy/nats/nats.conf` and `docs/operations.md`.
//!
//! For each setting: a fresh nats-server (file storage in a temporary directory on the same disk
//! as `TMPDIR`), one R1 stream, and N 256-byte messages published (a) one at a time, awaiting
//! each ack (the coordinator's and workers' pattern for a single message: latency-bound), and
//! (b) with 256 acks in flight (the coordinator's pipelined outbox: throughput-bound). Prints
//! messages per second and the ratio `always / default`.
//!
//! Run: `cargo bench -p ordo-tests --bench nats_sync` (the server is the test harness's: the
//! binary `NATS_SERVER_BIN` names, else `nats-server` on PATH; ORDO_BENCH_N sets the 5,000
//! messages per run).

use std::time::Instant;

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ordo_tests::NatsServer;

/// Messages per second: (one at a time, 256 in flight).
async fn measure(sync_always: bool, n: usize) -> (f64, f64) {
    // A fresh server each time, with its JetStream store in a temporary directory.
    let nats = if sync_always {
        NatsServer::start_synced()
    } else {
        NatsServer::start()
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = vec![b'x'; 256];

    let t = Instant::now();
    for _ in 0..n {
        js.publish("bench.one", payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let one = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut in_flight: FuturesUnordered<
        <jetstream::context::PublishAckFuture as IntoFuture>::IntoFuture,
    > = FuturesUnordered::new();
    for _ in 0..n {
        if in_flight.len() >= 256 {
            in_flight.next().await.unwrap().unwrap();
        }
        let ack = js
            .publish("bench.many", payload.clone().into())
            .await
            .unwrap();
        in_flight.push(ack.into_future());
    }
    while let Some(r) = in_flight.next().await {
        r.unwrap();
    }
    let many = n as f64 / t.elapsed().as_secs_f64();
    (one, many)
}

fn main() {
    let n: usize = std::env::var("ORDO_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "JetStream publish-ack throughput, {n} x 256 B, file storage under {}",
        std::env::temp_dir().display()
    );
    let (d1, dn) = rt.block_on(measure(false, n));
    let (a1, an) = rt.block_on(measure(true, n));
    println!(
        "sync_interval default (2m): one at a time {d1:>9.0} msg/s   256 in flight {dn:>9.0} msg/s"
    );
    println!(
        "sync_interval: always:      one at a time {a1:>9.0} msg/s   256 in flight {an:>9.0} msg/s"
    );
    println!(
        "always / default:           one at a time {:>9.3}         256 in flight {:>9.3}",
        a1 / d1,
        an / dn
    );
}
