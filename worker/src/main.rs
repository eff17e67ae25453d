//! `ordo-worker`: a stateless worker. Parses flags, connects to NATS and runs the daemon
//! until SIGTERM or Ctrl-C, then drains (see `daemon`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ordo_proto::connect::NatsArgs;
use ordo_proto::names;
use ordo_worker::daemon::{self, Options};

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
    /// Grace period for running tasks after SIGTERM before they are handed back.
    #[arg(long, env = "ORDO_DRAIN_GRACE", default_value = "30s")]
    drain_grace: ordo_proto::Dur,
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
    let args = Args::parse();
    for q in &args.queues {
        if !names::valid_queue(q) {
            eprintln!("ordo-worker: queue {q:?} must be 1 to 64 letters, digits, '_' or '-'");
            return ExitCode::from(2);
        }
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
        id,
        host,
        queues: args.queues.clone(),
        slots: args.concurrency.max(1),
        cpus: args.cpus,
        memory_mb: args.memory,
        drain_grace: args.drain_grace.0,
        heartbeat: Duration::from_secs(1),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ordo-worker: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let client = match args
            .nats
            .connect("ordo-worker", Duration::from_secs(5))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ordo-worker: {e}");
                return ExitCode::from(3);
            }
        };
        eprintln!(
            "ordo-worker {}: {} slots on queues {:?}",
            opts.id, opts.slots, opts.queues
        );
        match daemon::run(client, opts, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ordo-worker: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
