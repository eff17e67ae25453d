//! `ordo-coordinator`: parses flags, opens the redb store, connects to NATS and runs the
//! service until SIGTERM or Ctrl-C. With `--ha` it first follows the journal as a standby
//! (`ha`), runs the service once it holds the lease, and goes back to standby if it loses it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ordo_coordinator::bus::Delivery;
use ordo_coordinator::ha::{self, Ha};
use ordo_coordinator::service::{self, Options};
use ordo_coordinator::store::{self, Store};
use ordo_plumbing::connect::{NatsArgs, Role};
use ordo_plumbing::telemetry::{ObserveArgs, Telemetry};
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
    /// Directory of the redb state file (`ordo.redb`) and its write-ahead log (`ordo.redb.wal`).
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
    /// Tasks dispatched ahead per worker slot (0: only into free slots), twice that while a
    /// queue's runs average under 100 ms, four times under 20 ms. Hides commit and messaging
    /// latency between two tasks on a worker; while every slot has one waiting, results and
    /// the dispatches they free share a commit (at most 20 ms later).
    #[arg(long, env = "ORDO_PREFETCH", default_value_t = 1)]
    prefetch: u32,
    #[command(flatten)]
    observe: ObserveArgs,
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
    /// High availability: run as one of several coordinators on the same NATS; the one holding
    /// the lease is active, the others follow its journal as hot standbys.
    #[arg(long, env = "ORDO_HA")]
    ha: bool,
    /// `--ha`: the lease's time to live (renewed every third of it; a standby takes over this
    /// long after the active one stops renewing).
    #[arg(long, env = "ORDO_LEASE_TTL", default_value = "3s")]
    lease_ttl: Dur,
    /// `--ha`: this coordinator's id in `ordo cluster` [default: HOST-PID].
    #[arg(long, env = "ORDO_COORDINATOR_ID")]
    id: Option<String>,
    /// `--ha`: a standby stores a snapshot of its state (bounding the journal) after this many
    /// journal entries; 0: never.
    #[arg(long, env = "ORDO_SNAPSHOT_EVERY", default_value_t = 10_000)]
    snapshot_every: u64,
}

/// How long a starting coordinator waits for a predecessor's lock on the state file.
const LOCK_WAIT: Duration = Duration::from_secs(10);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// How one run of the service ended.
enum Outcome {
    Stopped,
    Failed(ExitCode),
    Service(service::Error),
}

fn main() -> ExitCode {
    let args = Args::parse();
    args.observe.init_logs();
    let opts = Options {
        delivery: Delivery {
            ack_wait: args.ack_wait.0.max(Duration::from_millis(500)),
            max_deliver: args.max_deliver.max(1),
        },
        replicas: args.replicas.max(1),
        worker_timeout: args.worker_timeout.0,
        prefetch: args.prefetch,
        metrics_addr: args.observe.metrics_addr,
        max_spec_bytes: args.max_spec_bytes,
        max_tasks: args.max_tasks as usize,
        ..Options::default()
    };
    if args.ha {
        return run_ha(&args, opts);
    }
    let store = match Store::open_waiting(&args.data_dir, LOCK_WAIT) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ordo-coordinator: {e}");
            return ExitCode::from(1);
        }
    };
    match serve(&args, store, opts, std::future::pending()) {
        Outcome::Stopped => ExitCode::SUCCESS,
        Outcome::Failed(code) => code,
        Outcome::Service(e) => fatal(&args, e),
    }
}

/// `--ha`: standby until the lease is won, active until it is lost, and again.
fn run_ha(args: &Args, opts: Options) -> ExitCode {
    let host = hostname();
    let cfg = ha::Config {
        id: args
            .id
            .clone()
            .unwrap_or_else(|| format!("{host}-{}", std::process::id())),
        host,
        ttl: args.lease_ttl.0.max(Duration::from_millis(300)),
        replicas: args.replicas.max(1),
        data_dir: args.data_dir.clone(),
        snapshot_every: args.snapshot_every,
        metrics_addr: args.observe.metrics_addr,
    };
    tracing::info!(id = %cfg.id, ttl = ?cfg.ttl, "high availability: starting as a standby");
    let ha = match Ha::start(args.nats.clone(), cfg) {
        Ok(ha) => ha,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(3);
        }
    };
    loop {
        let store = match Store::open_waiting(&args.data_dir, LOCK_WAIT) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(1);
            }
        };
        let mut store = match ha.standby(store) {
            Ok(Some(store)) => store,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("standby: {e}");
                return ExitCode::from(1);
            }
        };
        store.set_journal(ha.appender());
        // The HA thread serves the metrics, the service's included.
        let opts = Options {
            ha: Some(ha.hooks()),
            metrics_addr: None,
            ..opts.clone()
        };
        match serve(args, store, opts, ha.lost()) {
            Outcome::Stopped if ha.is_lost() => {}
            Outcome::Stopped => {
                ha.release();
                return ExitCode::SUCCESS;
            }
            Outcome::Service(service::Error::Store(store::Error::Fenced(e))) => {
                tracing::warn!("{e}: back to standby");
            }
            Outcome::Service(e) if ha.is_lost() => {
                tracing::warn!("{e}: back to standby");
            }
            Outcome::Failed(code) => {
                ha.release();
                return code;
            }
            Outcome::Service(e) => {
                ha.release();
                return fatal(args, e);
            }
        }
        tracing::info!("standby: following the journal");
    }
}

/// Runs the service on its own runtime until a signal, `stop`, or an error; everything it
/// spawned ends with it.
fn serve(
    args: &Args,
    store: Store,
    opts: Options,
    stop: impl std::future::Future<Output = ()>,
) -> Outcome {
    let runtime = match service::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ordo-coordinator: cannot start the runtime: {e}");
            return Outcome::Failed(ExitCode::from(1));
        }
    };
    let outcome = runtime.block_on(async {
        let mut opts = opts;
        // The gRPC exporter must be built inside the runtime.
        match Telemetry::from_env("ordo-coordinator") {
            Ok(t) => opts.telemetry = t.map(Arc::new),
            Err(e) => {
                tracing::error!("{e}");
                return Outcome::Failed(ExitCode::from(2));
            }
        }
        let client = match args
            .nats
            .connect(
                Role::Coordinator,
                "ordo-coordinator",
                Duration::from_secs(5),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return Outcome::Failed(ExitCode::from(3));
            }
        };
        tracing::info!(nats = %args.nats.url(), data_dir = %args.data_dir.display(), "serving");
        let shutdown = async {
            tokio::select! {
                _ = ordo_plumbing::signals::interrupted() => {}
                _ = stop => {}
            }
        };
        match service::run(client, store, opts, shutdown).await {
            Ok(()) => Outcome::Stopped,
            Err(e) => Outcome::Service(e),
        }
    });
    runtime.shutdown_background();
    outcome
}

fn fatal(args: &Args, e: service::Error) -> ExitCode {
    match e {
        service::Error::Store(e) => {
            // Nothing the failed commit covered was acked or published: restarting once
            // the cause is fixed (a full disk, say) continues where this stopped.
            let file = args.data_dir.join(names::STATE_FILE);
            tracing::error!(
                "stopping: state file {}: {e}; nothing uncommitted was acknowledged, restart once this is fixed",
                file.display()
            );
            ExitCode::from(1)
        }
        e => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}
