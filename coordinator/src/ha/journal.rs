//! The journal (`ORDO_JOURNAL`, `--ha`): every store write of the active coordinator, appended
//! before the write commits and so before anything it describes is published, acked or
//! answered; standbys replay it into their own redb.
//!
//! Fencing: each epoch begins with one message on `ordo.journal.epoch`; every entry is published
//! with `Nats-Expected-Last-Subject-Sequence(-Subject)` naming the sequence of its writer's epoch
//! message on that subject, so once a newer coordinator bumped the epoch the server itself
//! rejects the older one's appends. Each entry also carries the journal sequence of the entry
//! before it (`Ordo-Prev`), so a reader knows it missed nothing (a purge behind a snapshot, a
//! stale disk). An entry larger than a message goes in parts (`Ordo-Part: i/n`), applied when
//! the last part arrives; an epoch message drops a partial entry (its writer was fenced midway).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use ordo_proto::{Millis, names};
use serde::{Deserialize, Serialize};

use crate::store::SavedWrite;

pub const HEADER_PREV: &str = "Ordo-Prev";
pub const HEADER_PART: &str = "Ordo-Part";

/// The payload of an epoch message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMark {
    pub epoch: u64,
    pub id: String,
    pub host: String,
    pub at_ms: Millis,
}

/// Creates the journal stream if it is missing (file storage, `replicas`).
pub async fn ensure_stream(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: names::JOURNAL_STREAM.into(),
        subjects: vec![names::JOURNAL_SUBJECTS.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("journal stream: {e}"))
}

/// Why an append failed.
#[derive(Debug)]
pub enum AppendError {
    /// The server refused it: another coordinator bumped the epoch.
    Fenced,
    /// No answer within the deadline (NATS unreachable).
    Unavailable(String),
}

/// Appends one encoded write as the holder of the epoch message at `epoch_seq`, in parts if
/// it is larger than `max_part`. `id` makes retries idempotent (`Nats-Msg-Id`). Returns the
/// sequence of its last part. Transient errors are retried while attempts start before `deadline`.
pub async fn append(
    js: &jetstream::Context,
    epoch_seq: u64,
    id: &str,
    prev: u64,
    bytes: &[u8],
    max_part: usize,
    deadline: Instant,
) -> Result<u64, AppendError> {
    let parts: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(max_part.max(1024)).collect()
    };
    let n = parts.len();
    let mut last = 0;
    for (i, part) in parts.into_iter().enumerate() {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("{id}.{i}").as_str());
        h.insert(
            "Nats-Expected-Last-Subject-Sequence",
            epoch_seq.to_string().as_str(),
        );
        h.insert(
            "Nats-Expected-Last-Subject-Sequence-Subject",
            names::JOURNAL_EPOCH,
        );
        h.insert(HEADER_PREV, prev.to_string().as_str());
        if n > 1 {
            h.insert(HEADER_PART, format!("{i}/{n}").as_str());
        }
        let payload = bytes::Bytes::copy_from_slice(part);
        let mut delay = Duration::from_millis(20);
        last = loop {
            let started = Instant::now();
            let r = match js
                .publish_with_headers(names::JOURNAL_ENTRY, h.clone(), payload.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match r {
                Ok(ack) => break ack.sequence,
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(AppendError::Fenced);
                }
                // An attempt that began before the deadline is always followed by one more,
                // even when it failed after it: a process frozen (SIGSTOP, a VM pause) in the
                // middle of a publish learns from the retry whether its epoch is over (the
                // fence) instead of timing out on the ack it slept through.
                Err(e) if started >= deadline => {
                    return Err(AppendError::Unavailable(e.to_string()));
                }
                Err(e) => {
                    tracing::warn!("journal append: {e}; retrying");
                    if Instant::now() < deadline {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_millis(500));
                    }
                }
            }
        };
    }
    Ok(last)
}

/// Reassembles entries from journal messages in order, and checks their continuity.
#[derive(Default)]
pub struct Reader {
    parts: Vec<u8>,
    /// Parts of the entry being reassembled seen so far.
    got: usize,
}

/// What one journal message means to a reader.
pub enum Read {
    /// A whole entry, written after the entry at `prev`.
    Entry { entry: SavedWrite, prev: u64 },
    /// A new epoch began.
    Epoch(EpochMark),
    /// A part of an entry still incomplete.
    Partial,
}

impl Reader {
    pub fn read(&mut self, subject: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> Read {
        if subject == names::JOURNAL_EPOCH {
            self.parts.clear();
            self.got = 0;
            return match serde_json::from_slice(payload) {
                Ok(mark) => Read::Epoch(mark),
                Err(_) => Read::Partial,
            };
        }
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let prev = header(HEADER_PREV)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let part = header(HEADER_PART).and_then(|p| {
            let (i, n) = p.split_once('/')?;
            Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?))
        });
        let bytes = match part {
            None => payload.to_vec(),
            Some((i, n)) => {
                if i == 0 {
                    self.parts.clear();
                    self.got = 0;
                }
                if i != self.got {
                    // A part out of order: the rest of a fenced writer's entry. Drop it.
                    self.parts.clear();
                    self.got = 0;
                    return Read::Partial;
                }
                self.parts.extend_from_slice(payload);
                self.got += 1;
                if self.got < n {
                    return Read::Partial;
                }
                self.got = 0;
                std::mem::take(&mut self.parts)
            }
        };
        match SavedWrite::decode(&bytes) {
            Ok(entry) => Read::Entry { entry, prev },
            Err(e) => {
                tracing::error!("{e}");
                Read::Partial
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ordo_proto::{JobId, JobSpec, TaskSpec, validate::validate};

    use super::*;
    use crate::driver::{Driver, Policy};
    use crate::engine::{ANY_QUEUE, Capacity, Event, JobOptions};
    use crate::store::{JobRecord, Journal, Store, Write};

    /// Each write's bytes and the sequence it followed.
    type Entries = Vec<(Vec<u8>, u64)>;

    /// A journal in memory.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Entries>>);

    impl Journal for Memory {
        fn append(&self, write: &Write<'_>, prev: u64) -> Result<u64, String> {
            let mut v = self.0.lock().unwrap();
            v.push((write.encode(), prev));
            Ok(v.len() as u64)
        }
    }

    /// A store replaying the journal of another ends up with the same records, outbox and
    /// journal position, and each entry names the one before it.
    #[test]
    fn a_replayed_journal_rebuilds_the_same_store() {
        let journal = Memory::default();
        let mut active = Store::in_memory().unwrap();
        active.set_journal(Box::new(journal.clone()));
        let spec = JobSpec {
            name: "j".into(),
            tasks: (0..5)
                .map(|i| TaskSpec::shell(&format!("t{i}"), "true"))
                .collect(),
            settings: ordo_proto::Settings {
                execution_mode: Some(ordo_proto::ExecutionMode::Parallel),
                ..Default::default()
            },
            ..Default::default()
        };
        let dag = validate(&spec).unwrap();
        let job = JobId::new();
        let rec = JobRecord::new(job, spec.clone(), "test", JobOptions::default(), 1);
        active.insert_job(&rec).unwrap();
        let mut driver = Driver::new(Policy::COORDINATOR);
        driver.apply(
            1,
            Event::Capacity {
                queue: ANY_QUEUE.into(),
                capacity: Capacity::machine(2, 2.0, 1 << 20),
            },
        );
        driver.apply(
            1,
            Event::Submit {
                job,
                spec: Arc::new(spec),
                dag: Arc::new(dag),
                options: JobOptions::default(),
                saved: None,
            },
        );
        let turn = driver
            .turn(
                &active,
                2,
                false,
                |_: &str| false,
                &mut Vec::new(),
                &mut Default::default(),
            )
            .unwrap();
        assert_eq!(turn.outbox.len(), 2);
        let mut sent = vec![turn.outbox[0]];
        driver
            .turn(
                &active,
                3,
                true,
                |_: &str| false,
                &mut sent,
                &mut Default::default(),
            )
            .unwrap();
        active.prune(4, 0).unwrap();

        let standby = Store::in_memory().unwrap();
        for (i, (bytes, prev)) in journal.0.lock().unwrap().iter().enumerate() {
            assert_eq!(*prev, standby.journal_seq().unwrap(), "entry {i}");
            SavedWrite::decode(bytes)
                .unwrap()
                .apply(&standby, i as u64 + 1)
                .unwrap();
        }
        assert_eq!(
            standby.journal_seq().unwrap(),
            active.journal_seq().unwrap()
        );
        assert_eq!(standby.jobs().unwrap(), active.jobs().unwrap());
        assert_eq!(standby.tasks(&job).unwrap(), active.tasks(&job).unwrap());
        assert_eq!(
            standby.history(&job).unwrap(),
            active.history(&job).unwrap()
        );
        assert_eq!(standby.outbox().unwrap(), active.outbox().unwrap());
        assert_eq!(standby.outbox().unwrap().len(), 1);
    }

    /// A refused append aborts the write: nothing of it is committed.
    #[test]
    fn a_refused_append_commits_nothing() {
        struct Refuse;
        impl Journal for Refuse {
            fn append(&self, _: &Write<'_>, _: u64) -> Result<u64, String> {
                Err("fenced".into())
            }
        }
        let mut store = Store::in_memory().unwrap();
        store.set_journal(Box::new(Refuse));
        let spec = JobSpec {
            name: "j".into(),
            tasks: vec![TaskSpec::shell("a", "true")],
            ..Default::default()
        };
        let rec = JobRecord::new(JobId::new(), spec, "test", JobOptions::default(), 1);
        let err = store.insert_job(&rec).unwrap_err();
        assert!(matches!(err, crate::store::Error::Fenced(_)), "{err}");
        assert!(store.jobs().unwrap().is_empty());
        assert_eq!(store.journal_seq().unwrap(), 0);
    }
}
