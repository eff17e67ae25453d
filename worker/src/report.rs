//! What a worker tells the coordinator, on its way to JetStream: one publisher per worker takes
//! every event queued while its last publish was in flight and stores them as one message per
//! job (`Ordo-Kind: events`, read by `wire::decode_events`), then wakes each event's sender,
//! which only then acks its task message. Nothing waits to fill a batch: an event that finds
//! the publisher idle goes out alone at once (as a plain `WorkerEvent`). Batches form when
//! results come faster than one publish round trip, which is when they save the most: one
//! stored message, one ack and one coordinator turn for many results.
//!
//! Killing the worker while it holds a batch loses nothing: none of the batch's task messages
//! is acked before the batch is stored, so JetStream delivers each again (fault row 12).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use ordo_proto::wire::{self, Integration, WorkerEvent};
use ordo_proto::{JobId, WorkerId, names, now_ms};
use tokio::sync::{mpsc, oneshot};

/// At most this many events in one message.
const MAX_EVENTS: usize = 256;
/// A batch encoding to more than this is split (NATS refuses payloads over its
/// `max_payload`, 1 MiB by default; a result carries its output's tail).
const MAX_BYTES: usize = 512 * 1024;

type Queued = (WorkerEvent, oneshot::Sender<bool>);

/// The sending end: cheap to clone, one per worker process.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<Queued>,
}

impl Reporter {
    /// Starts the publisher of worker `id` on the current runtime.
    pub fn start(js: jetstream::Context, id: WorkerId) -> Reporter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(publish_loop(js, id, rx));
        Reporter { tx }
    }

    /// Returns once JetStream stored `event` (retrying through outages, as long as it takes):
    /// true. False when it cannot be stored (larger than the server takes even cut down, or
    /// the publisher is gone): the caller must not ack its task message, which JetStream then
    /// delivers again.
    pub async fn report(&self, event: WorkerEvent) -> bool {
        let (done, stored) = oneshot::channel();
        if self.tx.send((event, done)).is_err() {
            return false;
        }
        stored.await.unwrap_or(false)
    }
}

async fn publish_loop(
    js: jetstream::Context,
    id: WorkerId,
    mut rx: mpsc::UnboundedReceiver<Queued>,
) {
    let started_ms = now_ms();
    let mut batches = 0u64;
    while let Some(first) = rx.recv().await {
        let mut by_job: BTreeMap<JobId, Vec<Queued>> = BTreeMap::new();
        by_job.entry(first.0.job()).or_default().push(first);
        let mut n = 1;
        while n < MAX_EVENTS {
            let Ok(next) = rx.try_recv() else { break };
            by_job.entry(next.0.job()).or_default().push(next);
            n += 1;
        }
        // Every message of this round is sent before any ack is awaited.
        let mut sends = Vec::new();
        for (job, queued) in by_job {
            for chunk in split(queued) {
                if chunk.len() > 1 {
                    ordo_plumbing::failpoint::hit(ordo_plumbing::failpoint::HOLDING_A_BATCH);
                }
                batches += 1;
                let batch_id = names::events_msg_id(&id, started_ms, batches);
                sends.push(store(&js, job, chunk, batch_id));
            }
        }
        futures::future::join_all(sends).await;
    }
}

/// `queued` as payloads NATS takes: halves until each encodes within `MAX_BYTES` (one event
/// alone goes as it is).
fn split(queued: Vec<Queued>) -> Vec<Vec<Queued>> {
    let size = |q: &[Queued]| {
        let events: Vec<&WorkerEvent> = q.iter().map(|(e, _)| e).collect();
        wire::encode(&events).len()
    };
    if queued.len() > 1 && size(&queued) > MAX_BYTES {
        let mut first = queued;
        let second = first.split_off(first.len() / 2);
        let mut out = split(first);
        out.extend(split(second));
        out
    } else {
        vec![queued]
    }
}

/// Stores one chunk and tells each waiter whether its event is stored. A chunk the server
/// finds too large goes one event at a time, and an event alone too large is cut down
/// (`shrink`) once.
async fn store(js: &jetstream::Context, job: JobId, chunk: Vec<Queued>, batch_id: String) {
    let (events, waiting): (Vec<WorkerEvent>, Vec<oneshot::Sender<bool>>) =
        chunk.into_iter().unzip();
    if publish(js, &job, &events, batch_id).await {
        for w in waiting {
            let _ = w.send(true);
        }
        return;
    }
    for (event, w) in events.into_iter().zip(waiting) {
        let mut stored = publish(js, &job, std::slice::from_ref(&event), String::new()).await;
        if !stored {
            let cut = shrink(event);
            stored = publish(js, &job, std::slice::from_ref(&cut), String::new()).await;
            if !stored {
                tracing::error!(job = %job, "an event is larger than the server takes even cut down; its task will be delivered again");
            }
        }
        let _ = w.send(stored);
    }
}

/// What an event keeps when it is too large for one message: the last 4 KiB of its output
/// and message, its first 1,000 files.
fn shrink(event: WorkerEvent) -> WorkerEvent {
    const KEEP: usize = 4096;
    const FILES: usize = 1000;
    let tail = |s: &mut String| {
        if s.len() > KEEP {
            let mut from = s.len() - KEEP;
            while !s.is_char_boundary(from) {
                from += 1;
            }
            *s = s[from..].to_string();
        }
    };
    match event {
        WorkerEvent::Finished(mut r) => {
            tail(&mut r.output_tail);
            tail(&mut r.message);
            if let Some(w) = &mut r.workspace {
                w.files.truncate(FILES);
            }
            WorkerEvent::Finished(r)
        }
        WorkerEvent::Integrated(mut r) => {
            match &mut r.outcome {
                Integration::Merged { files, .. } | Integration::Conflict { files } => {
                    files.truncate(FILES)
                }
                Integration::VerifyFailed { output_tail, .. } => tail(output_tail),
                Integration::Failed { message } => tail(message),
                Integration::Unchanged { .. } | Integration::Verified { .. } => {}
            }
            WorkerEvent::Integrated(r)
        }
        started => started,
    }
}

/// Stores one message of `events` and waits for its ack, retrying through outages; false
/// only when the server refuses it as larger than its `max_payload`. One event goes as a
/// plain `WorkerEvent` under its own id (a re-executed attempt's duplicate is de-duplicated as
/// before); several under the batch's id.
async fn publish(
    js: &jetstream::Context,
    job: &JobId,
    events: &[WorkerEvent],
    batch_id: String,
) -> bool {
    let subject = names::event_subject(job);
    let (payload, msg_id, batch) = match events {
        [one] => (wire::encode(one), one.msg_id(), false),
        _ => (wire::encode(&events), batch_id, true),
    };
    let mut delay = Duration::from_millis(50);
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        if batch {
            headers.insert(names::HEADER_KIND, names::KIND_EVENTS);
        }
        let sent = js
            .publish_with_headers(subject.clone(), headers, payload.clone().into())
            .await;
        match sent {
            Ok(ack) => match ack.await {
                Ok(_) => return true,
                Err(e) => tracing::warn!(job = %job, "events not stored yet: {e}; retrying"),
            },
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => return false,
            Err(e) => tracing::warn!(job = %job, "cannot publish events: {e}; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use ordo_proto::spec::Program;
    use ordo_proto::wire::{Dispatch, Outcome, TaskResult};
    use ordo_proto::{Attempt, TaskIndex, TaskName};

    use super::*;

    fn event(job: JobId, i: u32, tail: usize) -> WorkerEvent {
        let d = Dispatch::new(
            job,
            TaskName::new(format!("t{i}")).unwrap(),
            TaskIndex(i),
            Attempt(1),
            Program::Shell("true".into()),
        );
        let mut r = TaskResult::new(&d, "w".into(), Outcome::Succeeded, 0, "");
        r.output_tail = "x".repeat(tail);
        WorkerEvent::Finished(r)
    }

    #[test]
    fn batches_split_to_fit_and_keep_their_order() {
        let job = JobId::new();
        let queued = |events: &[WorkerEvent]| -> Vec<Queued> {
            events
                .iter()
                .map(|e| (e.clone(), oneshot::channel().0))
                .collect()
        };
        let events_of = |chunks: Vec<Vec<Queued>>| -> Vec<Vec<WorkerEvent>> {
            chunks
                .into_iter()
                .map(|c| c.into_iter().map(|(e, _)| e).collect())
                .collect()
        };
        let big: Vec<WorkerEvent> = (0..40).map(|i| event(job, i, 64 * 1024)).collect();
        let chunks = events_of(split(queued(&big)));
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(c.len() == 1 || wire::encode(c).len() <= MAX_BYTES);
        }
        assert_eq!(chunks.concat(), big);

        let small: Vec<WorkerEvent> = (0..40).map(|i| event(job, i, 10)).collect();
        assert_eq!(events_of(split(queued(&small))), vec![small.clone()]);
        // What the coordinator reads back, batch or single.
        let read = wire::decode_events(Some(names::KIND_EVENTS), &wire::encode(&small)).unwrap();
        assert_eq!(read, small);
        let one = wire::decode_events(None, &wire::encode(&small[0])).unwrap();
        assert_eq!(one, vec![small[0].clone()]);
    }

    #[test]
    fn a_result_too_large_is_cut_down_to_its_tail() {
        let WorkerEvent::Finished(r) = shrink(event(JobId::new(), 1, 2 << 20)) else {
            panic!("a result stays a result");
        };
        assert_eq!(r.output_tail.len(), 4096);
        assert!(wire::encode(&WorkerEvent::Finished(r)).len() < 8192);
    }
}
