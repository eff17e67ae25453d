//! JetStream plumbing of the coordinator: creates or updates ordo's streams and consumers (names
//! from `proto::names`), publishes dispatches with `Nats-Msg-Id = job.task.attempt` and
//! integration requests (`Ordo-Kind: integrate`) on the same task subjects, and fetches a task
//! message back by sequence. Nothing here decides anything.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use ordo_proto::names;
use ordo_proto::wire::{self, Dispatch, Integrate};

#[derive(Debug, thiserror::Error)]
#[error("JetStream {what}: {message}")]
pub struct Error {
    what: &'static str,
    message: String,
}

fn err(what: &'static str) -> impl FnOnce(String) -> Error {
    move |message| Error { what, message }
}

/// Consumer settings the coordinator applies to every queue consumer.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    /// Redelivery after this long without an ack or in-progress ack.
    pub ack_wait: Duration,
    /// Deliveries before the max-deliveries advisory (then the task's attempt counts as lost).
    pub max_deliver: i64,
}

pub struct Bus {
    pub js: jetstream::Context,
    delivery: Delivery,
    tasks: stream::Stream,
}

impl Bus {
    /// Creates or updates the three streams (file storage).
    pub async fn setup(
        client: async_nats::Client,
        delivery: Delivery,
        replicas: usize,
    ) -> Result<Bus, Error> {
        let js = jetstream::new(client);
        let on_file = |name: &str, subjects: &str| stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        // Tasks and events are work queues (a message lives until it is acked), de-duplicated
        // over ten minutes of re-publishing.
        let queue = |name: &str, subjects: &str| stream::Config {
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(600),
            ..on_file(name, subjects)
        };
        let streams = [
            (
                "task stream",
                queue(names::TASK_STREAM, names::TASK_SUBJECTS),
            ),
            (
                "event stream",
                queue(names::EVENT_STREAM, names::EVENT_SUBJECTS),
            ),
            (
                "log stream",
                stream::Config {
                    retention: stream::RetentionPolicy::Limits,
                    max_age: Duration::from_secs(7 * 24 * 3600),
                    max_bytes: 1 << 30,
                    // Clients read output by direct gets: they may create no consumer (a push
                    // consumer delivers wherever its creator says).
                    allow_direct: true,
                    ..on_file(names::LOG_STREAM, names::LOG_SUBJECTS)
                },
            ),
        ];
        // `create_or_update_stream` answers the stream's info, not a handle to it: the handle
        // the consumers and deletes go through is taken once all three streams exist.
        for (what, config) in streams {
            js.create_or_update_stream(config)
                .await
                .map_err(|e| err(what)(e.to_string()))?;
        }
        let tasks = js
            .get_stream(names::TASK_STREAM)
            .await
            .map_err(|e| err("task stream")(e.to_string()))?;
        Ok(Bus {
            js,
            delivery,
            tasks,
        })
    }

    /// The durable pull consumer all workers of `queue` share (created once, idempotent).
    pub async fn ensure_queue(&self, queue: &str) -> Result<(), Error> {
        let name = names::queue_consumer(queue);
        self.tasks
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name),
                filter_subject: names::task_subject(queue),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.delivery.ack_wait,
                max_deliver: self.delivery.max_deliver,
                max_ack_pending: -1,
                ..Default::default()
            })
            .await
            .map_err(|e| err("queue consumer")(e.to_string()))?;
        Ok(())
    }

    /// The coordinator's durable consumer of worker events, created afresh at each start: the
    /// events a previous (crashed) coordinator received but never acked would otherwise wait
    /// out their ack wait before coming back; a new consumer on the work-queue stream gets
    /// every unacked event at once. Only the coordinator consumes events.
    pub async fn events(&self) -> Result<consumer::PullConsumer, Error> {
        let stream = self
            .js
            .get_stream(names::EVENT_STREAM)
            .await
            .map_err(|e| err("event stream")(e.to_string()))?;
        // Not found (first start) is the usual answer.
        let _ = stream.delete_consumer(names::EVENT_CONSUMER).await;
        stream
            .get_or_create_consumer(
                names::EVENT_CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(names::EVENT_CONSUMER.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err("event consumer")(e.to_string()))
    }

    /// Publishes a dispatch and returns its stream sequence once JetStream stored it. A replay
    /// of the same attempt is de-duplicated by its message id.
    pub async fn publish(&self, d: &Dispatch) -> Result<u64, Error> {
        let mut headers = async_nats::HeaderMap::new();
        // The attempt's span is this message's parent on the worker (ids derive from the job).
        headers.insert(
            "traceparent",
            ordo_plumbing::telemetry::traceparent(&d.attempt_ref()).as_str(),
        );
        headers.insert(
            "Nats-Msg-Id",
            names::dispatch_msg_id(&d.attempt_ref()).as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(
                names::task_subject(&d.queue),
                headers,
                wire::encode(d).into(),
            )
            .await
            .map_err(|e| err("publish")(e.to_string()))?;
        let ack = ack.await.map_err(|e| err("publish ack")(e.to_string()))?;
        Ok(ack.sequence)
    }

    /// Publishes an integration request to the task's queue (a worker of that queue carries it
    /// out) and returns its stream sequence once stored; a replay is de-duplicated.
    pub async fn publish_integration(&self, req: &Integrate) -> Result<u64, Error> {
        let key = ordo_proto::AttemptRef {
            job: req.job,
            index: req.index,
            attempt: req.attempt,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            names::integrate_msg_id(&key, req.step).as_str(),
        );
        headers.insert(names::HEADER_KIND, names::KIND_INTEGRATE);
        let ack = self
            .js
            .publish_with_headers(
                names::task_subject(&req.queue),
                headers,
                wire::encode(req).into(),
            )
            .await
            .map_err(|e| err("publish")(e.to_string()))?;
        let ack = ack.await.map_err(|e| err("publish ack")(e.to_string()))?;
        Ok(ack.sequence)
    }

    /// Removes a task message that must not run (cancelled job, lost attempt).
    pub async fn delete_task(&self, seq: u64) {
        let _ = self.tasks.delete_message(seq).await;
    }

    /// Reads a task message back by sequence (for max-deliveries advisories after a restart).
    pub async fn task_at(&self, seq: u64) -> Option<TaskMessage> {
        let msg = self.tasks.get_raw_message(seq).await.ok()?;
        let integrate = msg
            .headers
            .get(names::HEADER_KIND)
            .is_some_and(|v| v.as_str() == names::KIND_INTEGRATE);
        if integrate {
            wire::decode(&msg.payload).ok().map(TaskMessage::Integrate)
        } else {
            wire::decode(&msg.payload).ok().map(TaskMessage::Run)
        }
    }
}

/// A message of the task stream: an attempt to run, or an integration to carry out.
// A dispatch is the common case and is moved, not copied around: boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum TaskMessage {
    Run(Dispatch),
    Integrate(Integrate),
}
