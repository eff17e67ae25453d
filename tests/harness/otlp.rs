//! A real OTLP trace receiver for tests, over HTTP/protobuf (`POST /v1/traces`, axum + prost)
//! and over gRPC (opentelemetry-proto's generated `TraceService` on tonic). It runs on its own
//! thread and runtime and keeps every span it receives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

/// One received span, flattened for assertions.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
    pub events: Vec<String>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Protocol {
    Http,
    Grpc,
}

pub struct OtlpReceiver {
    pub endpoint: String,
    pub protocol: Protocol,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn collect(req: ExportTraceServiceRequest, into: &Mutex<Vec<ReceivedSpan>>) {
    let mut out = into.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| value(&a.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), value(&a.value)))
                        .collect(),
                    events: s.events.iter().map(|e| e.name.clone()).collect(),
                });
            }
        }
    }
}

struct Grpc(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        collect(request.into_inner(), &self.0);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl OtlpReceiver {
    pub fn start(protocol: Protocol) -> OtlpReceiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
        let store = spans.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let stop = async {
                    let _ = stop_rx.await;
                };
                match protocol {
                    Protocol::Http => {
                        let app = axum::Router::new().route(
                            "/v1/traces",
                            axum::routing::post(move |body: axum::body::Bytes| {
                                let store = store.clone();
                                async move {
                                    match ExportTraceServiceRequest::decode(body) {
                                        Ok(req) => {
                                            collect(req, &store);
                                            (axum::http::StatusCode::OK, Vec::new())
                                        }
                                        Err(_) => (axum::http::StatusCode::BAD_REQUEST, Vec::new()),
                                    }
                                }
                            }),
                        );
                        let _ = axum::serve(listener, app)
                            .with_graceful_shutdown(stop)
                            .await;
                    }
                    Protocol::Grpc => {
                        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                        let _ = tonic::transport::Server::builder()
                            .add_service(TraceServiceServer::new(Grpc(store)))
                            .serve_with_incoming_shutdown(incoming, stop)
                            .await;
                    }
                }
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receiver port");
        OtlpReceiver {
            endpoint: format!("http://127.0.0.1:{port}"),
            protocol,
            spans,
            _stop: stop_tx,
        }
    }

    /// Environment that points an ordo binary at this receiver.
    pub fn env(&self, service: &str) -> Vec<(String, String)> {
        let protocol = match self.protocol {
            Protocol::Http => "http/protobuf",
            Protocol::Grpc => "grpc",
        };
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), self.endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into()),
            ("OTEL_SERVICE_NAME".into(), service.into()),
            // Export promptly: the batch processor otherwise waits up to 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        ]
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}
