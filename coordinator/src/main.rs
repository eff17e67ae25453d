//! `ordo-coordinator`: parses flags, opens the redb store, connects to NATS and runs the
//! service until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ordo_coordinator::bus::Delivery;
use ordo_coordinator::service::{self, Options};
use ordo_coordinator::store::Store;
use ordo_plumbing::connect::NatsArgs;
use ordo_plumbing::telemetry::{self, LogFormat, Telemetry};
use ordo_proto::{Dur, names};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "ordo-coordinator",
    version,
    about = "Keep ordo jobs in redb and dispatch their tasks over NATS JetStream"
)]
struct Args {
    #[command(flatten)]
    nats: NatsArgs,
    /// Directory of the redb state file.
    #[arg(long, env = "ORDO_DATA_DIR")]
    data_dir: PathBuf,
    /// Redeliver a task message after this long without an ack or in-progress ack.
    #[arg(long, env = "ORDO_ACK_WAIT", default_value = "30s")]
    ack_wait: Dur,
    /// Deliveries of a task message before its attempt counts as lost.
    #[arg(long, env = "ORDO_MAX_DELIVER", default_value_t = 5)]
    max_deliver: i64,
    /// Stream replicas (3 on a three-node cluster).
    #[arg(long, env = "ORDO_REPLICAS", default_value_t = 1)]
    replicas: usize,
    /// Tasks dispatched ahead per worker slot (0: only into free slots). Hides commit and
    /// messaging latency between two tasks on a worker.
    #[arg(long, env = "ORDO_PREFETCH", default_value_t = 1)]
    prefetch: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, env = "ORDO_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Log format on stderr.
    #[arg(long, env = "ORDO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (RUST_LOG wins when set).
    #[arg(long, env = "ORDO_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// A worker silent this long counts as gone.
    #[arg(long, env = "ORDO_WORKER_TIMEOUT", default_value = "5s")]
    worker_timeout: Dur,
    /// Largest submitted spec accepted, in bytes (as the client sends it, JSON); larger
    /// submissions are refused and nothing of them is kept.
    #[arg(long, env = "ORDO_MAX_SPEC_BYTES", default_value_t = names::MAX_SPEC_BYTES)]
    max_spec_bytes: usize,
    /// Most tasks in one submitted job (at most 1,000,000).
    #[arg(long, env = "ORDO_MAX_TASKS", default_value_t = names::MAX_TASKS as u64,
          value_parser = clap::value_parser!(u64).range(1..=names::MAX_TASKS as u64))]
    max_tasks: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init_logs(args.log_format, &args.log_level);
    let store = match Store::open(&args.data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ordo-coordinator: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = Options {
        delivery: Delivery {
            ack_wait: args.ack_wait.0.max(Duration::from_millis(500)),
            max_deliver: args.max_deliver.max(1),
        },
        replicas: args.replicas.max(1),
        worker_timeout: args.worker_timeout.0,
        prefetch: args.prefetch,
        metrics_addr: args.metrics_addr,
        max_spec_bytes: args.max_spec_bytes,
        max_tasks: args.max_tasks as usize,
        ..Options::default()
    };
    let runtime = match service::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ordo-coordinator: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let mut opts = opts;
        // The gRPC exporter must be built inside the runtime.
        match Telemetry::from_env("ordo-coordinator") {
            Ok(t) => opts.telemetry = t.map(Arc::new),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        }
        let client = match args
            .nats
            .connect("ordo-coordinator", Duration::from_secs(5))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(3);
            }
        };
        tracing::info!(nats = %args.nats.url(), data_dir = %args.data_dir.display(), "serving");
        match service::run(client, store, opts, ordo_plumbing::signals::interrupted()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(service::Error::Store(e)) => {
                // Nothing the failed commit covered was acked or published: restarting once
                // the cause is fixed (a full disk, say) continues where this stopped.
                let file = args.data_dir.join(names::STATE_FILE);
                tracing::error!(
                    "stopping: state file {}: {e}; nothing uncommitted was acknowledged, restart once this is fixed",
                    file.display()
                );
                ExitCode::from(1)
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(1)
            }
        }
    })
}
