//! Traces and logs for the three binaries (feature `telemetry`).
//!
//! Spans are emitted when what they describe has ended, with their real start and end times,
//! so no span object outlives a turn of a loop and a coordinator restart loses nothing but the
//! events it had not yet attached. Their ids are derived from the job, so every process agrees
//! without coordination: the trace id IS the job id, the job's root span id and each attempt's
//! span id are hashes of (job, task, attempt). The coordinator puts the attempt's W3C
//! `traceparent` into the task message's NATS headers; the worker's execution span is its
//! child. Export is OTLP (gRPC or HTTP/protobuf) configured by the standard `OTEL_*`
//! variables; with no endpoint set there is no exporter and no cost.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider, Tracer};

use ordo_proto::TaskResult;
use ordo_proto::gates::{StageRecord, Verdict};
use ordo_proto::{AttemptRef, JobId};

thread_local! {
    /// Ids the next span built on this thread must take (see `DerivedIds`).
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Hands out the ids set in `NEXT_IDS`, random ones otherwise.
#[derive(Debug, Default)]
struct DerivedIds(RandomIdGenerator);

impl IdGenerator for DerivedIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_IDS
            .with(|c| c.get())
            .map_or_else(|| self.0.new_trace_id(), |(t, _)| t)
    }
    fn new_span_id(&self) -> SpanId {
        NEXT_IDS
            .with(|c| c.get())
            .map_or_else(|| self.0.new_span_id(), |(_, s)| s)
    }
}

fn mix(mut h: u64, v: u64) -> u64 {
    // splitmix64 step: cheap, well distributed, stable across builds.
    h ^= v
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

pub fn trace_id(job: &JobId) -> TraceId {
    TraceId::from_bytes(*job.as_bytes())
}

fn job_seed(job: &JobId) -> u64 {
    let b = job.as_bytes();
    mix(
        u64::from_le_bytes(b[..8].try_into().unwrap()),
        u64::from_le_bytes(b[8..].try_into().unwrap()),
    )
}

fn nonzero(v: u64) -> SpanId {
    SpanId::from_bytes(v.max(1).to_be_bytes())
}

pub fn root_span_id(job: &JobId) -> SpanId {
    nonzero(mix(job_seed(job), 0x0BD0))
}

pub fn attempt_span_id(a: &AttemptRef) -> SpanId {
    nonzero(mix(
        mix(job_seed(&a.job), a.index.0 as u64 + 1),
        a.attempt.0 as u64,
    ))
}

/// W3C `traceparent` of an attempt's span.
pub fn traceparent(a: &AttemptRef) -> String {
    format!("00-{}-{}-01", trace_id(&a.job), attempt_span_id(a))
}

/// Parses a W3C `traceparent`; `None` for anything malformed.
pub fn parse_traceparent(s: &str) -> Option<(TraceId, SpanId)> {
    let mut parts = s.trim().split('-');
    let (version, trace, span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || parts.next().is_some() {
        return None;
    }
    let t = TraceId::from_hex(trace).ok()?;
    let sp = SpanId::from_hex(span).ok()?;
    (t != TraceId::INVALID && sp != SpanId::INVALID).then_some((t, sp))
}

fn remote_parent(trace: TraceId, span: SpanId) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        trace,
        span,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

pub fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// An OTLP tracer, present only when an endpoint is configured.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: Tracer,
}

/// Error setting up the exporter.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter: {0}")]
pub struct InitError(String);

impl Telemetry {
    /// Reads the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` /
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (none set: `Ok(None)`),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` or `http/protobuf`, the default), `OTEL_SERVICE_NAME`
    /// (default `service`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`. The gRPC exporter
    /// must be built inside a Tokio runtime.
    pub fn from_env(service: &str) -> Result<Option<Telemetry>, InitError> {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return Ok(None);
        }
        let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_default();
        let exporter = match protocol.trim() {
            "grpc" => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build(),
            "" | "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build(),
            other => {
                return Err(InitError(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (use grpc or http/protobuf)"
                )));
            }
        }
        .map_err(|e| InitError(e.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if !set("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name(service.to_string());
        }
        let provider = SdkTracerProvider::builder()
            .with_id_generator(DerivedIds::default())
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("ordo");
        Ok(Some(Telemetry { provider, tracer }))
    }

    /// Exports everything emitted so far (blocks; call from a blocking context).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// Flushes and stops the exporter (blocks; call from a blocking context).
    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }

    /// Builds a span with the given ids (`None`: random), parent, times and attributes.
    fn span(
        &self,
        ids: Option<(TraceId, SpanId)>,
        parent: &Context,
        name: String,
        start: SystemTime,
        attrs: Vec<KeyValue>,
    ) -> opentelemetry_sdk::trace::Span {
        NEXT_IDS.with(|c| c.set(ids));
        let span = self.tracer.build_with_context(
            SpanBuilder::from_name(name)
                .with_start_time(start)
                .with_attributes(attrs),
            parent,
        );
        NEXT_IDS.with(|c| c.set(None));
        span
    }

    /// The job's root span, from submission to its final state, with its transitions.
    pub fn job_span(
        &self,
        job: &JobId,
        name: &str,
        start_ms: u64,
        end_ms: u64,
        state: &str,
        events: &[(u64, String, Vec<KeyValue>)],
    ) {
        let attrs = vec![
            KeyValue::new("ordo.job.id", job.to_string()),
            KeyValue::new("ordo.job.name", name.to_string()),
            KeyValue::new("ordo.job.state", state.to_string()),
        ];
        let mut span = self.span(
            Some((trace_id(job), root_span_id(job))),
            &Context::new(),
            format!("job {name}"),
            at(start_ms),
            attrs,
        );
        for (t, e, a) in events {
            span.add_event_with_timestamp(e.clone(), at(*t), a.clone());
        }
        span.end_with_timestamp(at(end_ms));
    }

    /// One attempt as the coordinator saw it: dispatch to result, child of the job span, with
    /// a child span per stage record: the result's (agent and command stages) and `approvals`
    /// (the engine's records of approval decisions).
    /// Agent runs carry `ordo.agent.session_id`, `ordo.agent.cost_usd`,
    /// `ordo.agent.input_tokens`, `ordo.agent.output_tokens` (and `ordo.agent.rate_limited`).
    pub fn attempt_span(
        &self,
        result: &TaskResult,
        dispatched_ms: u64,
        end_ms: u64,
        final_state: &str,
        events: &[(u64, String)],
        approvals: &[StageRecord],
    ) {
        let job = &result.job;
        let mut attrs = vec![
            KeyValue::new("ordo.job.id", job.to_string()),
            KeyValue::new("ordo.task.name", result.task.to_string()),
            KeyValue::new("ordo.task.index", result.index.0 as i64),
            KeyValue::new("ordo.task.attempt", result.attempt.0 as i64),
            KeyValue::new("ordo.worker", result.worker.to_string()),
            KeyValue::new("ordo.task.state", final_state.to_string()),
        ];
        if let Some(code) = result.exit_code {
            attrs.push(KeyValue::new("ordo.exit_code", code as i64));
        }
        attrs.extend(agent_attributes(result));
        let parent = remote_parent(trace_id(job), root_span_id(job));
        let mut span = self.span(
            Some((trace_id(job), attempt_span_id(&result.attempt_ref()))),
            &parent,
            format!("task {}", result.task),
            at(dispatched_ms.min(result.started_at_ms)),
            attrs,
        );
        for (t, e) in events {
            span.add_event_with_timestamp(e.clone(), at(*t), vec![]);
        }
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        for s in result.stages.iter().chain(approvals) {
            self.stage_span(&cx, s);
        }
        span.end_with_timestamp(at(end_ms.max(result.started_at_ms + result.duration_ms)));
    }

    /// One stage run or approval decision, from its recorded start for its duration:
    /// `ordo.stage.name`, `.kind`, `.verdict` (`none` without one), `.round`, its agent's
    /// session, cost and tokens, and who decided an approval.
    fn stage_span(&self, parent: &Context, s: &StageRecord) {
        let mut attrs = vec![
            KeyValue::new("ordo.stage.name", s.name.clone()),
            KeyValue::new("ordo.stage.verdict", Verdict::name_or_none(s.verdict)),
            KeyValue::new("ordo.stage.round", i64::from(s.round)),
        ];
        if let Some(k) = s.kind {
            attrs.push(KeyValue::new("ordo.stage.kind", k.name()));
        }
        if let Some(by) = &s.by {
            attrs.push(KeyValue::new("ordo.stage.by", by.clone()));
        }
        if let Some(a) = &s.agent {
            attrs.extend(agent_run_attributes(a));
        }
        let mut span = self.span(
            None,
            parent,
            format!("stage {}", s.name),
            at(s.started_at_ms),
            attrs,
        );
        span.end_with_timestamp(at(s.started_at_ms + s.duration_ms));
    }

    /// The worker's execution of an attempt, child of the span named by `traceparent`, with
    /// child spans for the command and the verify command.
    pub fn execution_span(&self, traceparent: Option<&str>, r: &TaskResult) {
        let Some((trace, parent_span)) = traceparent.and_then(parse_traceparent) else {
            return;
        };
        let parent = remote_parent(trace, parent_span);
        let start = r.started_at_ms;
        let end = start + r.duration_ms;
        let mut attrs = vec![
            KeyValue::new("ordo.job.id", r.job.to_string()),
            KeyValue::new("ordo.task.name", r.task.to_string()),
            KeyValue::new("ordo.task.attempt", r.attempt.0 as i64),
            KeyValue::new("ordo.worker", r.worker.to_string()),
            KeyValue::new("ordo.outcome", format!("{:?}", r.outcome).to_lowercase()),
        ];
        if let Some(code) = r.exit_code {
            attrs.push(KeyValue::new("ordo.exit_code", code as i64));
        }
        attrs.extend(agent_attributes(r));
        let span = self.span(
            None,
            &parent,
            format!("execute {}", r.task),
            at(start),
            attrs,
        );
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        let command_end = start + r.command_ms.min(r.duration_ms);
        let mut command = self.span(None, &cx, "command".into(), at(start), vec![]);
        command.end_with_timestamp(at(command_end));
        if let Some(v) = r.verify_started_ms {
            let attrs = r
                .verify_exit_code
                .map(|c| vec![KeyValue::new("ordo.exit_code", c as i64)])
                .unwrap_or_default();
            let mut verify = self.span(None, &cx, "verify".into(), at(v.max(start)), attrs);
            verify.end_with_timestamp(at(end));
        }
        let mut span = span;
        span.end_with_timestamp(at(end));
    }
}

/// Log output format for `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The metrics and log flags of `ordo-coordinator` and `ordo-worker`.
#[derive(Clone, Debug, clap::Args)]
pub struct ObserveArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, env = "ORDO_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Log format on stderr.
    #[arg(long, env = "ORDO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level (RUST_LOG wins when set).
    #[arg(long, env = "ORDO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl ObserveArgs {
    /// Structured logs on stderr, as the flags say.
    pub fn init_logs(&self) {
        init_logs(self.log_format, &self.log_level);
    }
}

/// Structured logs on stderr: `RUST_LOG` wins over `level`.
pub fn init_logs(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Serves `registry` in the Prometheus text format at `GET /metrics` on `addr` until the
/// process ends; returns the bound address (port 0 picks one).
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        axum::http::StatusCode::OK,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    ),
                    Err(_) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [(axum::http::header::CONTENT_TYPE, "text/plain")],
                        String::new(),
                    ),
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

/// The attributes of an agent run on its spans (docs/design.md, "Agent runs").
fn agent_attributes(r: &TaskResult) -> Vec<KeyValue> {
    r.agent
        .as_deref()
        .map(agent_run_attributes)
        .unwrap_or_default()
}

fn agent_run_attributes(a: &ordo_proto::AgentRun) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("ordo.agent.input_tokens", a.input_tokens as i64),
        KeyValue::new("ordo.agent.output_tokens", a.output_tokens as i64),
    ];
    if let Some(s) = &a.session_id {
        attrs.push(KeyValue::new("ordo.agent.session_id", s.clone()));
    }
    if let Some(c) = a.cost_usd {
        attrs.push(KeyValue::new("ordo.agent.cost_usd", c));
    }
    if a.rate_limited.is_some() {
        attrs.push(KeyValue::new("ordo.agent.rate_limited", true));
    }
    attrs
}

#[cfg(test)]
mod tests {
    use ordo_proto::{Attempt, TaskIndex};

    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let job = JobId::new();
        let at = |attempt| AttemptRef {
            job,
            index: TaskIndex(3),
            attempt: Attempt(attempt),
        };
        let tp = traceparent(&at(2));
        let (t, s) = parse_traceparent(&tp).unwrap();
        assert_eq!(t, trace_id(&job));
        assert_eq!(s, attempt_span_id(&at(2)));
        assert_ne!(s, attempt_span_id(&at(1)));
        assert_ne!(s, root_span_id(&job));
        for bad in [
            "",
            "00-xyz",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
