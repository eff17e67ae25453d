//! `ordo-worker`: a stateless worker. Parses flags, connects to NATS and runs the daemon
//! until SIGTERM or Ctrl-C, then drains (see `daemon`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ordo_plumbing::connect::{NatsArgs, Role};
use ordo_plumbing::telemetry::{self, ObserveArgs, Telemetry};
use ordo_proto::{names, wire};
use ordo_worker::daemon::{self, Options};
use ordo_worker::guard;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "ordo-worker",
    version,
    about = "Pull ordo tasks from NATS JetStream and run them"
)]
struct Args {
    #[command(flatten)]
    nats: NatsArgs,
    /// Task slots: tasks run at once.
    #[arg(long, env = "ORDO_CONCURRENCY", default_value_t = cpus() as u32)]
    concurrency: u32,
    /// Queues to pull from (repeat the flag for several).
    #[arg(long = "queue", env = "ORDO_QUEUES", value_delimiter = ',', default_value = names::DEFAULT_QUEUE)]
    queues: Vec<String>,
    /// CPUs this worker offers to tasks that declare cpu_required.
    #[arg(long, env = "ORDO_CPUS", default_value_t = cpus())]
    cpus: f64,
    /// Memory (MB) this worker offers to tasks that declare memory_required.
    #[arg(long, env = "ORDO_MEMORY_MB", default_value_t = memory_mb())]
    memory: u64,
    /// Worker id (default: host-pid).
    #[arg(long, env = "ORDO_WORKER_ID")]
    id: Option<String>,
    #[command(flatten)]
    observe: ObserveArgs,
    /// Grace period for running tasks after SIGTERM before they are handed back.
    #[arg(long, env = "ORDO_DRAIN_GRACE", default_value = "30s")]
    drain_grace: ordo_proto::Dur,
    /// Where worktree jobs' repositories are cloned (one cache clone each, fetched before every
    /// attempt) [default: $XDG_CACHE_HOME/ordo/workspaces, else ~/.cache/ordo/workspaces].
    #[arg(long, env = "ORDO_WORKSPACES")]
    workspaces: Option<std::path::PathBuf>,
}

/// The default cache directory of worktree jobs' repositories.
fn default_workspaces() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("ordo").join("workspaces")
}

fn cpus() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

fn memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn main() -> ExitCode {
    // This binary is also its own guard process (see `guard`).
    if guard::main_hook() {
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    args.observe.init_logs();
    for q in &args.queues {
        if !names::valid_queue(q) {
            eprintln!("ordo-worker: queue {q:?} must be 1 to 64 letters, digits, '_' or '-'");
            return ExitCode::from(2);
        }
    }
    if args.concurrency > wire::MAX_WORKER_SLOTS
        || !(args.cpus.is_finite() && (0.0..=wire::MAX_WORKER_CPUS).contains(&args.cpus))
        || args.memory > wire::MAX_WORKER_MEMORY_MB
    {
        eprintln!(
            "ordo-worker: a worker offers at most {} slots, {} CPUs and {} MB of memory",
            wire::MAX_WORKER_SLOTS,
            wire::MAX_WORKER_CPUS,
            wire::MAX_WORKER_MEMORY_MB
        );
        return ExitCode::from(2);
    }
    let host = hostname();
    // Subject tokens cannot hold dots: the id is sanitised once here.
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{host}-{}", std::process::id()))
        .replace(
            |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "-",
        );
    let opts = Options {
        id: id.into(),
        host,
        queues: args.queues.clone(),
        slots: args.concurrency.max(1),
        cpus: args.cpus,
        memory_mb: args.memory,
        drain_grace: args.drain_grace.0,
        heartbeat: Duration::from_secs(1),
        telemetry: None,
        metrics: None,
        guard_token: None,
        workspaces: args.workspaces.clone().unwrap_or_else(default_workspaces),
    };
    // Kills this worker's task processes if it dies; held until main returns.
    let guard = match guard::start() {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("ordo-worker: no guard process ({e}); task processes may outlive a crash");
            None
        }
    };
    let opts = Options {
        guard_token: guard.as_ref().map(|g| g.token.clone()),
        ..opts
    };
    let runtime = match daemon::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ordo-worker: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let mut opts = opts;
        // The gRPC exporter must be built inside the runtime.
        match Telemetry::from_env("ordo-worker") {
            Ok(t) => opts.telemetry = t.map(Arc::new),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        }
        let telemetry = opts.telemetry.clone();
        if let Some(addr) = args.observe.metrics_addr {
            let (metrics, registry) = ordo_worker::metrics::Metrics::new(opts.slots);
            match telemetry::serve_metrics(addr, Arc::new(registry)).await {
                Ok(bound) => tracing::info!(addr = %bound, "metrics at /metrics"),
                Err(e) => {
                    tracing::error!("cannot serve metrics on {addr}: {e}");
                    return ExitCode::from(2);
                }
            }
            opts.metrics = Some(metrics);
        }
        let client = match args
            .nats
            .connect(Role::Worker, "ordo-worker", Duration::from_secs(5))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(3);
            }
        };
        tracing::info!(worker = %opts.id, slots = opts.slots, queues = ?opts.queues, "started");
        if let Some(open) = args.nats.open_local() {
            tracing::warn!("{open}");
        }
        let code = match daemon::run(client, opts, ordo_plumbing::signals::interrupted()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(1)
            }
        };
        if let Some(t) = telemetry {
            let _ = tokio::task::spawn_blocking(move || t.flush()).await;
        }
        code
    })
}
