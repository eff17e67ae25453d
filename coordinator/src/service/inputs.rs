//! Everything the coordinator's loop hears, as one `Input` channel: API requests, worker
//! events (JetStream, one or a worker's batch per message, acked by the loop after the commit
//! that applies them), `Started` notices and heartbeats (core NATS), max-deliveries
//! advisories, and the loop's own publishers reporting an outbox entry stored. Each forwarder
//! resubscribes if its subscription ends; what it cannot read is logged and dropped (a bad
//! event is terminated, never redelivered). An API request whose body is in the object store
//! (`ordo_plumbing::blobs`) is read (and the object deleted) by a task of its own before it
//! reaches the loop, so a large submission does not hold the loop up while it downloads.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use ordo_plumbing::blobs;
use ordo_proto::api::{ApiError, ApiReply, ErrorKind};
use ordo_proto::wire::{self, Heartbeat, WorkerEvent};
use ordo_proto::{AttemptRef, names};
use tokio::sync::mpsc;

pub(crate) enum Input {
    Api {
        /// The verb's name (one this coordinator does not know is answered with an error).
        name: String,
        body: bytes::Bytes,
        reply: Option<async_nats::Subject>,
    },
    /// One event-stream message: one event, or a worker's batch of them.
    Events(Vec<WorkerEvent>, Box<jetstream::Message>),
    Heartbeat(Heartbeat),
    /// A worker began an attempt (best effort, core NATS).
    Started(WorkerEvent),
    /// A task message ran out of deliveries.
    Exhausted {
        stream_seq: u64,
    },
    /// An outbox entry is stored in JetStream.
    Published {
        outbox_seq: u64,
        key: AttemptRef,
        stream_seq: u64,
    },
}

/// API requests on `ordo.api.<verb>` (a queue group: one coordinator answers each). A body
/// in the object store larger than `max_body` bytes is deleted unread and refused here.
pub(crate) async fn forward_api(
    client: async_nats::Client,
    store: super::Blobs,
    max_body: usize,
    tx: mpsc::Sender<Input>,
) {
    loop {
        let Ok(mut sub) = client
            .queue_subscribe(names::API_SUBJECTS, names::API_QUEUE_GROUP.into())
            .await
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(msg) = sub.next().await {
            let name = msg
                .subject
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_string();
            if let Some(object) = blobs::object_of(msg.headers.as_ref()) {
                let (client, store, tx) = (client.clone(), store.clone(), tx.clone());
                tokio::spawn(async move {
                    let taken = match store.get() {
                        Some(store) => {
                            let js = async_nats::jetstream::new(client.clone());
                            blobs::take(&js, store, &object, max_body).await
                        }
                        None => Err(blobs::Error::Bucket {
                            bucket: names::BLOB_BUCKET.into(),
                            detail: "not created yet".into(),
                        }),
                    };
                    match taken {
                        Ok(body) => {
                            let input = Input::Api {
                                name,
                                body: body.into(),
                                reply: msg.reply,
                            };
                            let _ = tx.send(input).await;
                        }
                        Err(e) => {
                            // Nothing was recorded: the refusal needs no commit before it.
                            let (kind, message) = match e {
                                blobs::Error::TooLarge { .. } => (
                                    ErrorKind::Invalid,
                                    format!("{e} (ordo-coordinator --max-spec-bytes)"),
                                ),
                                blobs::Error::BadName { .. } => (ErrorKind::Invalid, e.to_string()),
                                _ => (ErrorKind::Internal, e.to_string()),
                            };
                            tracing::warn!("refusing a request on {}: {message}", msg.subject);
                            if let Some(reply) = msg.reply {
                                let body = ApiReply::<()>::Error(ApiError::new(kind, message));
                                let body = serde_json::to_vec(&body).unwrap_or_default();
                                let _ = client.publish(reply, body.into()).await;
                            }
                        }
                    }
                });
                continue;
            }
            let input = Input::Api {
                name,
                body: msg.payload,
                reply: msg.reply,
            };
            if tx.send(input).await.is_err() {
                return;
            }
        }
    }
}

/// Forwards every message on a core-NATS `subject` that `to_input` understands.
pub(crate) async fn forward(
    client: async_nats::Client,
    subject: String,
    tx: mpsc::Sender<Input>,
    to_input: fn(&[u8]) -> Result<Input, String>,
) {
    loop {
        let Ok(mut sub) = client.subscribe(subject.clone()).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(msg) = sub.next().await {
            match to_input(&msg.payload) {
                Ok(input) => {
                    if tx.send(input).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("ignoring a message on {}: {e}", msg.subject),
            }
        }
    }
}

/// A heartbeat whose numbers are believable (`Heartbeat::check`); any other is refused here.
pub(crate) fn heartbeat(payload: &[u8]) -> Result<Input, String> {
    let hb = wire::decode::<Heartbeat>(payload).map_err(|e| e.to_string())?;
    hb.check()?;
    Ok(Input::Heartbeat(hb))
}

pub(crate) fn started(payload: &[u8]) -> Result<Input, String> {
    wire::decode::<WorkerEvent>(payload)
        .map(Input::Started)
        .map_err(|e| e.to_string())
}

#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
}

pub(crate) fn advisory(payload: &[u8]) -> Result<Input, String> {
    serde_json::from_slice::<MaxDeliveries>(payload)
        .map(|a| Input::Exhausted {
            stream_seq: a.stream_seq,
        })
        .map_err(|e| e.to_string())
}

/// Worker events from the coordinator's durable consumer.
pub(crate) async fn forward_events(
    consumer: jetstream::consumer::PullConsumer,
    tx: mpsc::Sender<Input>,
) {
    let mut seen_bad: HashSet<u64> = HashSet::new();
    loop {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("event consumer: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(m) = messages.next().await {
            let Ok(msg) = m else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Results count only when JetStream delivered them from ORDO_EVENTS through this
            // consumer: anything else reaching its inbox is ignored, and never acked.
            match msg.info() {
                Ok(i) if i.stream == names::EVENT_STREAM && i.consumer == names::EVENT_CONSUMER => {
                }
                other => {
                    let from = other.map_or_else(
                        |e| format!("not delivered by JetStream ({e})"),
                        |i| format!("stream {}, consumer {}", i.stream, i.consumer),
                    );
                    tracing::warn!("ignoring a message on the event inbox: {from}");
                    continue;
                }
            }
            let kind = msg.headers.as_ref().and_then(|h| h.get(names::HEADER_KIND));
            match wire::decode_events(kind.map(|k| k.as_str()), &msg.payload) {
                Ok(events) => {
                    if tx.send(Input::Events(events, Box::new(msg))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Undecodable: logged once and terminated, never redelivered in a loop.
                    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                    if seen_bad.insert(seq) {
                        tracing::warn!("dropping an undecodable event on {}: {e}", msg.subject);
                    }
                    let _ = msg.ack_with(AckKind::Term).await;
                }
            }
        }
    }
}
