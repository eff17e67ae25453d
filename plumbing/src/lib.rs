//! ordo-plumbing: what ordo's processes (`ordo`, `ordo-coordinator`, `ordo-worker`) need around
//! the vocabulary of `ordo-proto` to run: reaching NATS, exporting traces and metrics, stopping
//! on a signal, crashing on purpose for the fault suite.
//!
//! # Layout
//! - `blobs`: API bodies larger than one NATS message, through JetStream's object store.
//! - `connect`: NATS connection flags (every flag naming its environment variable) and
//!   `connect()`.
//! - `signals`: waiting for Ctrl-C or SIGTERM.
//! - `telemetry`: OTLP traces with ids derived from jobs, the Prometheus endpoint, logs setup.
//! - `failpoint`: crash points of the delivery protocol (debug builds only).
//! - `one_thread_runtime`: the tokio runtime the coordinator and the worker run on.

pub mod blobs;
pub mod connect;
pub mod failpoint;
pub mod signals;
pub mod telemetry;

/// A tokio runtime on the calling thread, with I/O and timers: what `ordo-coordinator` and
/// `ordo-worker` run on (each says why in its own `runtime()`). Its blocking calls
/// (`spawn_blocking`) run on threads given the name `blocking` (at most 15 bytes, the kernel's
/// limit), so a profile or `/proc` tells them apart.
pub fn one_thread_runtime(blocking: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .thread_name(blocking)
        .enable_all()
        .build()
}
