//! The redb store: jobs, one record per task (never one blob per job), every attempt's result,
//! an append-only history of every change (the audit trail), each job's agent cost in all, and
//! an outbox of dispatches not yet handed over, and the outbox of `[[notify]]` notifications
//! (each written in the commit of the change that caused it, removed by a stored change once
//! delivered or given up) with each job's delivery failures.
//!
//! `commit` writes one batch of engine changes and outbox edits in ONE write transaction: callers
//! group many events per commit, so throughput is not bound by one fsync per task, and the store
//! is always a prefix of the engine's history. Values are MessagePack; keys are fixed-width
//! tuples so ranges per job are cheap.
//!
//! With `--ha` every write (`Write`: a job inserted, a batch committed, a prune) is handed to a
//! `Journal` inside its transaction, before the transaction commits: the journal append is the
//! point of no return, and the journal sequence it returns is recorded in the same transaction
//! (`journal_seq`). A standby replays the same writes with `apply`, so its file is the same
//! prefix of the journal.
//!
//! A store on a file commits through its write-ahead log (`wal`): a write is durable once its
//! entry is synced there, redb commits it without a sync, and a durable redb commit (a
//! checkpoint) follows at least every second, for a large write, or when the log is full.
//! Opening the file replays the log's entries after the last checkpoint (`wal_seq`). Writes
//! that go to the `--ha` journal, and a standby's replay of it, commit durably as before.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ordo_proto::api::NotifyHealth;
use ordo_proto::gates::StageRecord;
use ordo_proto::{Attempt, Dispatch, JobId, JobSpec, TaskIndex, TaskResult};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::wal::{LogFile, Wal};

/// The records' types, as the engine makes them: what readers of the store (views, reports,
/// the CLI) need without reaching into the engine.
pub use crate::engine::{Change, JobOptions, PoolLimit, Saved, SavedTask, TaskState};
use crate::engine::{JobState, Millis};
use crate::notify::{Edit, Notice, Outcome as Delivery};

const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("jobs");
/// (job, task index) → SavedTask
const TASKS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("tasks");
/// (job, task index, attempt) → TaskResult
const ATTEMPTS: TableDefinition<(u128, u32, u32), &[u8]> = TableDefinition::new("attempts");
/// (job, task index, history sequence) → (attempt, StageRecord): the engine's stage records
/// (`Change::Stage`: approval decisions, timeouts), also in the history, kept per task so
/// `status` shows who decided without reading a job's whole history.
const STAGES: TableDefinition<(u128, u32, u64), &[u8]> = TableDefinition::new("stages");
/// (job, sequence) → HistoryEntry
const HISTORY: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("history");
/// job → what its agent runs cost in all, in US dollars (applied and ignored executions of
/// dispatched attempts), so a job's summary carries it without reading its attempts.
const COSTS: TableDefinition<u128, f64> = TableDefinition::new("costs");
/// sequence → Dispatch
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// pool name → PoolLimit: the adaptive pools' limits (`Change::Pool`), global across jobs.
const POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("pools");
/// delivery id → Notice: `[[notify]]` notifications not yet delivered (UUIDv7: oldest first).
const NOTIFY: TableDefinition<&str, &[u8]> = TableDefinition::new("notify");
/// job → NotifyHealth: its deliveries that failed.
const NOTIFY_HEALTH: TableDefinition<u128, &[u8]> = TableDefinition::new("notify_health");
/// name → counter (`--ha`: the journal sequence applied). History and outbox sequences come
/// from their own rows (`write_batch`); files written before that also hold their old counters
/// here, unused.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// redb's page cache. Its default (1 GiB) fills with pages of the append-only history that
/// nothing reads while a job runs: a 100,000-task job left the coordinator at 184 MiB RSS with
/// it and 86 MiB with 16 MiB (bench/distributed, big job); reads are pages of one job.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Journal sequence of the last write applied (`--ha`).
const JOURNAL_SEQ: &str = "journal_seq";
/// Sequence of the last write, in the write-ahead log's numbering (`wal`).
const WAL_SEQ: &str = "wal_seq";
/// This state file's id in the entries of its write-ahead log.
const WAL_ID: &str = "wal_id";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("state file {0} is in use by another ordo process")]
    InUse(PathBuf),
    #[error("cannot open state file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("state store: {0}")]
    Db(#[from] redb::Error),
    #[error("state store: corrupt record: {0}")]
    Codec(String),
    /// The journal refused the write (`--ha`: another coordinator took over); nothing of it
    /// was committed.
    #[error("journal append refused: {0}")]
    Fenced(String),
    #[error("state file's write-ahead log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<redb::TransactionError> for Error {
    fn from(e: redb::TransactionError) -> Self {
        Error::Db(e.into())
    }
}
impl From<redb::TableError> for Error {
    fn from(e: redb::TableError) -> Self {
        Error::Db(e.into())
    }
}
impl From<redb::StorageError> for Error {
    fn from(e: redb::StorageError) -> Self {
        Error::Db(e.into())
    }
}
impl From<redb::CommitError> for Error {
    fn from(e: redb::CommitError) -> Self {
        Error::Db(e.into())
    }
}
impl From<redb::SetDurabilityError> for Error {
    fn from(e: redb::SetDurabilityError) -> Self {
        Error::Db(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything about a job except its tasks' records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub name: String,
    /// Where the spec came from (a file path, `mcp`, ...).
    pub source: String,
    pub spec: JobSpec,
    pub options: JobOptions,
    pub state: JobState,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    pub finished_ms: Option<Millis>,
    pub reason: Option<String>,
    /// When the job's current run started, once it was retried (`ordo retry`); its submission
    /// before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_started_ms: Option<Millis>,
    /// Times it was retried: it has run `retries + 1` times.
    #[serde(default)]
    pub retries: u32,
}

impl JobRecord {
    /// When its current run started: its submission, or its last retry.
    pub fn run_start(&self) -> Millis {
        self.run_started_ms.unwrap_or(self.created_ms)
    }

    /// A job just submitted at `now`: pending, no reason, not finished.
    pub fn new(
        id: JobId,
        spec: JobSpec,
        source: impl Into<String>,
        options: JobOptions,
        now: Millis,
    ) -> JobRecord {
        JobRecord {
            id,
            name: spec.name.clone(),
            source: source.into(),
            spec,
            options,
            state: JobState::Pending,
            created_ms: now,
            updated_ms: now,
            finished_ms: None,
            reason: None,
            run_started_ms: None,
            retries: 0,
        }
    }
}

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: Millis,
    pub change: Change,
}

/// What one `commit` writes.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub now: Millis,
    pub changes: &'a [Change],
    /// Dispatches to remember until they are handed over.
    pub outbox_add: &'a [Dispatch],
    /// Outbox entries handed over since the last commit.
    pub outbox_sent: &'a [u64],
    /// Notifications the changes caused (`[[notify]]`).
    pub notify_add: &'a [Notice],
    /// What delivery attempts made of notifications.
    pub notify_edits: &'a [Edit],
}

/// Where a write comes from: made here, or replayed from the journal or the write-ahead log
/// at a sequence.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Live,
    Journal(u64),
    Log(u64),
}

/// One write to the store, as the journal (`--ha`) and the write-ahead log carry it.
#[derive(Debug)]
pub enum Write<'a> {
    Insert(&'a JobRecord),
    Commit(&'a Batch<'a>),
    Prune { now: Millis, older_than_ms: u64 },
}

/// A write as the journal and the write-ahead log carry it (MessagePack), borrowed for
/// encoding.
#[derive(Serialize)]
enum WriteRef<'a> {
    Insert(&'a JobRecord),
    Commit {
        now: Millis,
        changes: &'a [Change],
        outbox_add: &'a [Dispatch],
        outbox_sent: &'a [u64],
        notify_add: &'a [Notice],
        notify_edits: &'a [Edit],
    },
    Prune {
        now: Millis,
        older_than_ms: u64,
    },
}

/// A write read back from the journal or the write-ahead log.
#[derive(Debug, Deserialize)]
pub enum SavedWrite {
    Insert(Box<JobRecord>),
    Commit {
        now: Millis,
        changes: Vec<Change>,
        outbox_add: Vec<Dispatch>,
        outbox_sent: Vec<u64>,
        #[serde(default)]
        notify_add: Vec<Notice>,
        #[serde(default)]
        notify_edits: Vec<Edit>,
    },
    Prune {
        now: Millis,
        older_than_ms: u64,
    },
}

impl Write<'_> {
    /// The write as the journal and the write-ahead log carry it (`SavedWrite::decode`).
    pub fn encode(&self) -> Vec<u8> {
        let e = match self {
            Write::Insert(j) => WriteRef::Insert(j),
            Write::Commit(b) => WriteRef::Commit {
                now: b.now,
                changes: b.changes,
                outbox_add: b.outbox_add,
                outbox_sent: b.outbox_sent,
                notify_add: b.notify_add,
                notify_edits: b.notify_edits,
            },
            Write::Prune { now, older_than_ms } => WriteRef::Prune {
                now: *now,
                older_than_ms: *older_than_ms,
            },
        };
        rmp_serde::to_vec_named(&e).expect("store writes always serialise")
    }
}

impl SavedWrite {
    pub fn decode(bytes: &[u8]) -> Result<SavedWrite, String> {
        rmp_serde::from_slice(bytes).map_err(|e| format!("corrupt saved write: {e}"))
    }

    /// Applies the entry to `store`, recording `seq` as its journal sequence.
    pub fn apply(&self, store: &Store, seq: u64) -> Result<()> {
        self.with_write(|w| store.apply(w, seq))
    }

    /// Calls `f` with the entry as the store's `Write`.
    pub fn with_write<R>(&self, f: impl FnOnce(&Write<'_>) -> R) -> R {
        match self {
            SavedWrite::Insert(j) => f(&Write::Insert(j.as_ref())),
            SavedWrite::Commit {
                now,
                changes,
                outbox_add,
                outbox_sent,
                notify_add,
                notify_edits,
            } => {
                let batch = Batch {
                    now: *now,
                    changes,
                    outbox_add,
                    outbox_sent,
                    notify_add,
                    notify_edits,
                };
                f(&Write::Commit(&batch))
            }
            SavedWrite::Prune { now, older_than_ms } => f(&Write::Prune {
                now: *now,
                older_than_ms: *older_than_ms,
            }),
        }
    }
}

/// Where writes go before they commit (`--ha`): `append` returns the write's journal sequence
/// once the journal holds it, or an error that aborts the write (the caller steps down).
/// `prev` is the journal sequence of the write before this one (`journal_seq`), so a reader
/// can tell that it missed nothing.
pub trait Journal: Send + Sync {
    fn append(&self, write: &Write<'_>, prev: u64) -> std::result::Result<u64, String>;
}

/// What a write produced: outbox sequences (commit), removed jobs (prune).
#[derive(Default)]
struct Written {
    outbox: Vec<u64>,
    pruned: Vec<JobRecord>,
}

pub struct Store {
    db: Database,
    durability: Durability,
    journal: Option<Box<dyn Journal>>,
    /// The write-ahead log of a store on a file.
    wal: Option<std::sync::Mutex<Wal>>,
    /// Writes committed (each one redb transaction, fsynced when durable): the benches count
    /// them per task.
    commits: Arc<AtomicU64>,
}

/// A store closed cleanly leaves its log with nothing to replay.
impl Drop for Store {
    fn drop(&mut self) {
        let pending = self.wal.as_ref().is_some_and(|w| {
            w.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pending()
                > 0
        });
        if pending && let Err(e) = self.checkpoint() {
            tracing::warn!("closing the state file: {e}; its log is replayed when it opens");
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("engine types always serialise")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Codec(e.to_string()))
}

fn key(job: &JobId) -> u128 {
    job.0.as_u128()
}

impl Store {
    /// Opens (or creates) `dir/ordo.redb` and its write-ahead log; commits are durable (synced)
    /// when they return.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, redb::backends::FileBackend::new, |f| Box::new(f))
    }

    /// `open`, with the redb backend made from the file by `backend` and the write-ahead
    /// log's file by `log` (tests make ones that fail).
    fn open_with<B: redb::StorageBackend>(
        dir: &Path,
        backend: impl Fn(File) -> Result<B, redb::DatabaseError>,
        log: impl Fn(File) -> Box<dyn LogFile>,
    ) -> Result<Store> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| Error::Open {
                path,
                source: redb::StorageError::from(e).into(),
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(ordo_proto::names::STATE_FILE);
        if !path.exists() {
            Store::create(dir, &path, &backend)?;
        }
        let db_error = |e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse(path.clone()),
            e => Error::Open {
                path: path.clone(),
                source: e.into(),
            },
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend(file).map_err(db_error)?)
            .map_err(db_error)?;
        let mut store = Store::init(db, Durability::Immediate)?;
        store.open_log(&dir.join(ordo_proto::names::STATE_LOG_FILE), log)?;
        Ok(store)
    }

    /// Opens the write-ahead log beside the state file and replays what it holds after the
    /// file's last checkpoint, then checkpoints.
    fn open_log(&mut self, path: &Path, log: impl Fn(File) -> Box<dyn LogFile>) -> Result<()> {
        let (id, durable) = {
            let tx = self.db.begin_read()?;
            let meta = tx.open_table(META)?;
            let id = meta.get(WAL_ID)?.map(|v| v.value());
            let seq = meta.get(WAL_SEQ)?.map_or(0, |v| v.value());
            (id, seq)
        };
        let id = match id {
            Some(id) => id,
            None => {
                // A file from before the log, or a new one: its id, durably, before any entry.
                let id = uuid::Uuid::new_v4().as_u64_pair().0;
                let tx = self.begin()?;
                tx.open_table(META)?.insert(WAL_ID, id)?;
                tx.commit()?;
                id
            }
        };
        let log_error = |source| Error::Log {
            path: path.to_path_buf(),
            source,
        };
        let (wal, entries) = Wal::open(path, id, durable, log).map_err(log_error)?;
        self.wal = Some(std::sync::Mutex::new(wal));
        if entries.is_empty() {
            return Ok(());
        }
        let n = entries.len();
        for (seq, payload) in entries {
            let entry = SavedWrite::decode(&payload)
                .map_err(|e| Error::Codec(format!("{} entry {seq}: {e}", path.display())))?;
            entry.with_write(|w| self.write(w, Origin::Log(seq)).map(drop))?;
        }
        self.checkpoint()?;
        tracing::info!(
            entries = n,
            "replayed the state file's write-ahead log {}",
            path.display()
        );
        Ok(())
    }

    /// Commits durably everything the write-ahead log holds, which then starts again.
    fn checkpoint(&self) -> Result<()> {
        let Some(wal) = &self.wal else { return Ok(()) };
        let mut wal = wal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.checkpoint_with(&mut wal)
    }

    /// `checkpoint`, with the log's lock held.
    fn checkpoint_with(&self, wal: &mut Wal) -> Result<()> {
        let tx = self.begin()?;
        {
            let mut meta = tx.open_table(META)?;
            let seq = meta.get(WAL_SEQ)?.map_or(0, |v| v.value());
            meta.insert(WAL_SEQ, seq)?;
        }
        tx.commit()?;
        wal.checkpointed();
        Ok(())
    }

    /// Makes a new state file aside and links it into place once redb has initialised it and
    /// its tables are committed: redb cannot open a file whose creation was cut short, so a
    /// crash must leave either no state file or a whole one. A link, unlike a rename, never
    /// replaces a state file another process made meanwhile. A crash between link and unlink
    /// leaves a second name of the state file, removed by the next creation under that pid.
    fn create<B: redb::StorageBackend>(
        dir: &Path,
        path: &Path,
        backend: &impl Fn(File) -> Result<B, redb::DatabaseError>,
    ) -> Result<()> {
        let name = ordo_proto::names::STATE_FILE;
        let new = dir.join(format!("{name}.{}.new", std::process::id()));
        let io = |e: std::io::Error| Error::Open {
            path: new.clone(),
            source: redb::StorageError::from(e).into(),
        };
        // Unlink, never truncate: a stale name may be a link to a live state file.
        match std::fs::remove_file(&new) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&new)
            .map_err(io)?;
        let db_error = |e: redb::DatabaseError| Error::Open {
            path: new.clone(),
            source: e.into(),
        };
        let db = Database::builder()
            .create_with_backend(backend(file).map_err(db_error)?)
            .map_err(db_error)?;
        drop(Store::init(db, Durability::Immediate)?);
        // A log left beside a state file that is gone stays: its entries name that file's id,
        // so none is replayed into this one (removing it here could pull it from under another
        // process that created the file a moment before).
        match std::fs::hard_link(&new, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(e)),
            _ => {}
        }
        std::fs::remove_file(&new).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    }

    /// A store in memory: nothing survives the process; commits cost no fsync.
    pub fn in_memory() -> Result<Store> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(redb::Error::from)?;
        Store::init(db, Durability::None)
    }

    fn init(db: Database, durability: Durability) -> Result<Store> {
        let tx = db.begin_write()?;
        tx.open_table(JOBS)?;
        tx.open_table(TASKS)?;
        tx.open_table(ATTEMPTS)?;
        tx.open_table(HISTORY)?;
        tx.open_table(STAGES)?;
        tx.open_table(COSTS)?;
        tx.open_table(OUTBOX)?;
        tx.open_table(META)?;
        tx.open_table(POOLS)?;
        tx.open_table(NOTIFY)?;
        tx.open_table(NOTIFY_HEALTH)?;
        tx.commit()?;
        Ok(Store {
            db,
            durability,
            journal: None,
            wal: None,
            commits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// `open`, waiting up to `wait` for a predecessor that still holds the file (a process
    /// killed a moment ago whose lock the kernel has not released yet).
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Store> {
        let start = std::time::Instant::now();
        let mut told = false;
        loop {
            match Store::open(dir) {
                Err(Error::InUse(path)) if start.elapsed() < wait => {
                    if !told {
                        tracing::warn!(
                            "state file {} is in use (a previous coordinator still exiting?); \
                             waiting up to {wait:?} for it to be released",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }

    /// Sends every later write to `journal` before it commits (`--ha`, the active coordinator).
    pub fn set_journal(&mut self, journal: Box<dyn Journal>) {
        self.journal = Some(journal);
    }

    /// Journal sequence of the last write applied or appended (0: none).
    pub fn journal_seq(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(JOURNAL_SEQ)?.map_or(0, |v| v.value()))
    }

    /// Replays a write read from the journal at `seq` (a standby following the active one).
    pub fn apply(&self, write: &Write<'_>, seq: u64) -> Result<()> {
        self.write(write, Origin::Journal(seq)).map(drop)
    }

    /// Does one write in one transaction; the journal (if any) gets it before the commit, or
    /// `origin` gives its sequence in the journal or the write-ahead log it is replayed from.
    /// Without a journal, a write to a file is durable once its log entry is synced.
    fn write(&self, write: &Write<'_>, origin: Origin) -> Result<Written> {
        let mut tx = self.begin()?;
        let written = match write {
            Write::Insert(job) => {
                write_insert(&tx, job)?;
                Written::default()
            }
            Write::Commit(batch) => Written {
                outbox: write_batch(&tx, batch)?,
                pruned: Vec::new(),
            },
            Write::Prune { now, older_than_ms } => Written {
                outbox: Vec::new(),
                pruned: write_prune(&tx, *now, *older_than_ms)?,
            },
        };
        let seq = match (origin, &self.journal) {
            (Origin::Journal(seq), _) => Some(seq),
            (Origin::Log(_), _) => None,
            (Origin::Live, Some(journal)) => match journal.append(write, journal_seq(&tx)?) {
                Ok(seq) => Some(seq),
                Err(e) => {
                    let _ = tx.abort();
                    return Err(Error::Fenced(e));
                }
            },
            (Origin::Live, None) => None,
        };
        if let Some(seq) = seq {
            tx.open_table(META)?.insert(JOURNAL_SEQ, seq)?;
        }
        let mut wal = self
            .wal
            .as_ref()
            .map(|w| w.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut logged = None;
        if let Some(wal) = &wal {
            let mut meta = tx.open_table(META)?;
            let seq = match origin {
                Origin::Log(seq) => Some(seq),
                Origin::Live => Some(meta.get(WAL_SEQ)?.map_or(0, |v| v.value()) + 1),
                Origin::Journal(_) => None,
            };
            if let Some(seq) = seq {
                meta.insert(WAL_SEQ, seq)?;
            }
            drop(meta);
            match origin {
                // Replayed from the log: durable there already.
                Origin::Log(_) => tx.set_durability(Durability::None)?,
                Origin::Live if self.journal.is_none() => {
                    let entry = write.encode();
                    if !wal.wants_checkpoint(entry.len()) {
                        tx.set_durability(Durability::None)?;
                        logged = seq.map(|s| (s, entry));
                    }
                }
                _ => {}
            }
        }
        if let (Some(wal), Some(_)) = (&mut wal, &logged) {
            // Until its entry is synced, a write redb holds is missing from the log: if this
            // thread dies between the two, the next write must commit durably.
            wal.entry_due();
        }
        tx.commit()?;
        if let Some(wal) = &mut wal {
            match (logged, origin) {
                (Some((seq, entry)), _) => {
                    if let Err(source) = wal.append(seq, &entry) {
                        // redb holds the write: made durable there, it stands; if that fails
                        // too, whether it stands is unknown (as a failed sync leaves it).
                        tracing::warn!(
                            "state file's write-ahead log {}: {source}; committing to the file instead",
                            wal.path().display()
                        );
                        self.checkpoint_with(wal).map_err(|e| Error::Log {
                            path: wal.path().to_path_buf(),
                            source: std::io::Error::other(format!(
                                "{source}; committing to the state file instead: {e}"
                            )),
                        })?;
                    }
                }
                (None, Origin::Log(_)) => {}
                // Committed durably: the log holds nothing redb does not.
                (None, _) => wal.checkpointed(),
            }
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(written)
    }

    /// The count of writes committed so far, as a handle that outlives moving the store.
    pub fn commits(&self) -> Arc<AtomicU64> {
        self.commits.clone()
    }

    fn begin(&self) -> Result<redb::WriteTransaction> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(self.durability)?;
        Ok(tx)
    }

    /// Stores a new job and a pending record for each of its tasks, atomically.
    pub fn insert_job(&self, job: &JobRecord) -> Result<()> {
        self.write(&Write::Insert(job), Origin::Live).map(drop)
    }

    /// Writes a batch of changes and outbox edits in one transaction. Returns the outbox
    /// sequence numbers given to `outbox_add`, in order.
    pub fn commit(&self, batch: &Batch<'_>) -> Result<Vec<u64>> {
        Ok(self.write(&Write::Commit(batch), Origin::Live)?.outbox)
    }

    pub fn job(&self, id: &JobId) -> Result<Option<JobRecord>> {
        let tx = self.db.begin_read()?;
        let jobs = tx.open_table(JOBS)?;
        jobs.get(key(id))?.map(|v| decode(v.value())).transpose()
    }

    /// Every job, oldest first (ids are UUIDv7).
    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        let tx = self.db.begin_read()?;
        let jobs = tx.open_table(JOBS)?;
        jobs.iter()?.map(|r| decode(r?.1.value())).collect()
    }

    pub fn tasks(&self, id: &JobId) -> Result<Vec<SavedTask>> {
        let tx = self.db.begin_read()?;
        let tasks = tx.open_table(TASKS)?;
        let k = key(id);
        tasks
            .range((k, 0)..=(k, u32::MAX))?
            .map(|r| decode(r?.1.value()))
            .collect()
    }

    /// What job `job` resumes from (`engine::Saved`): its task records and, when it has agent
    /// tasks or integrating ones, what it rebuilds from, in one pass over its history: the
    /// agent runs and charged ignored results since it last started (a retry starts sessions
    /// and the budget afresh), and each integrating task's attempt.
    pub fn saved(&self, job: &JobRecord) -> Result<Saved> {
        let tasks = self.tasks(&job.id)?;
        let integrating: HashMap<u32, Attempt> = tasks
            .iter()
            .enumerate()
            .filter_map(|(t, s)| match s.state {
                // Awaiting approval too: its worktree result is integrated once approved.
                TaskState::Integrating { attempt, .. }
                | TaskState::AwaitingApproval { attempt, .. } => Some((t as u32, attempt)),
                _ => None,
            })
            .collect();
        let has_agents = job
            .spec
            .tasks
            .iter()
            .any(|t| job.spec.agent_of(t).is_some())
            || !job.spec.stages.is_empty();
        let mut saved = Saved {
            tasks,
            ..Saved::default()
        };
        if !has_agents && integrating.is_empty() {
            return Ok(saved);
        }
        let mut ended = false;
        for h in self.history(&job.id)? {
            match h.change {
                Change::Job { state, .. } if state.is_terminal() => ended = true,
                Change::Job {
                    state: JobState::Running,
                    ..
                } if ended => {
                    // Retried: what came before no longer counts.
                    ended = false;
                    saved.results.clear();
                    saved.ignored.clear();
                    saved.integrations.clear();
                    saved.bisected.clear();
                }
                // Races lost (conflicts) do not count against the limit.
                Change::Integrated { index, outcome, .. }
                    if integrating.contains_key(&index.0)
                        && !matches!(outcome, ordo_proto::Integration::Conflict { .. }) =>
                {
                    *saved.integrations.entry(index.0).or_default() += 1;
                }
                Change::Batch {
                    tasks,
                    bisected: true,
                    ..
                } => saved.bisected.extend(
                    tasks
                        .iter()
                        .map(|t| t.0)
                        .filter(|t| integrating.contains_key(t)),
                ),
                Change::Attempt(r)
                    if (has_agents && r.ran_agents())
                        || integrating.get(&r.index.0) == Some(&r.attempt) =>
                {
                    saved.results.push(r)
                }
                Change::Ignored {
                    result,
                    kind,
                    charged,
                    ..
                } if kind.counts_spend(charged) && result.ran_agents() => {
                    saved.ignored.push(result)
                }
                _ => {}
            }
        }
        Ok(saved)
    }

    /// The adaptive pools' limits as last recorded, by name (a restarted host goes on from
    /// them).
    pub fn pool_limits(&self) -> Result<Vec<(String, PoolLimit)>> {
        let tx = self.db.begin_read()?;
        tx.open_table(POOLS)?
            .iter()?
            .map(|r| {
                let (k, v) = r?;
                Ok((k.value().to_string(), decode(v.value())?))
            })
            .collect()
    }

    /// What a job's agent runs cost in all, if any reported a cost.
    pub fn job_cost(&self, id: &JobId) -> Result<Option<f64>> {
        let tx = self.db.begin_read()?;
        let costs = tx.open_table(COSTS)?;
        Ok(costs.get(key(id))?.map(|v| v.value()))
    }

    /// How many task records a job has (its task count), without decoding them.
    pub fn task_count(&self, id: &JobId) -> Result<usize> {
        let tx = self.db.begin_read()?;
        let tasks = tx.open_table(TASKS)?;
        let k = key(id);
        Ok(tasks.range((k, 0)..=(k, u32::MAX))?.count())
    }

    /// One task's record.
    pub fn task(&self, id: &JobId, index: TaskIndex) -> Result<Option<SavedTask>> {
        let tx = self.db.begin_read()?;
        let tasks = tx.open_table(TASKS)?;
        tasks
            .get((key(id), index.0))?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// The records of tasks `indexes` of a job and each one's attempts (ordered), in one read
    /// (a page of `status`); a task without a record is left out.
    pub fn task_page(
        &self,
        id: &JobId,
        indexes: &[u32],
    ) -> Result<Vec<(u32, SavedTask, Vec<TaskResult>)>> {
        let tx = self.db.begin_read()?;
        let tasks = tx.open_table(TASKS)?;
        let attempts = tx.open_table(ATTEMPTS)?;
        let k = key(id);
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let Some(rec) = tasks.get((k, i))? else {
                continue;
            };
            let rec: SavedTask = decode(rec.value())?;
            let results = attempts
                .range((k, i, 0)..=(k, i, u32::MAX))?
                .map(|r| decode(r?.1.value()))
                .collect::<Result<Vec<TaskResult>>>()?;
            out.push((i, rec, results));
        }
        Ok(out)
    }

    /// The engine's stage records (approval decisions, timeouts: `Change::Stage`) of tasks
    /// `indexes` of a job (all its tasks when `None`), each with its attempt, in the order
    /// they were made, by task index; one range read per task (or one for the job).
    pub fn stage_records(
        &self,
        id: &JobId,
        indexes: Option<&[u32]>,
    ) -> Result<HashMap<u32, Vec<(Attempt, StageRecord)>>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STAGES)?;
        let k = key(id);
        let mut out: HashMap<u32, Vec<(Attempt, StageRecord)>> = HashMap::new();
        let mut read = |from: u32, to: u32| -> Result<()> {
            for row in t.range((k, from, 0)..=(k, to, u64::MAX))? {
                let (key, v) = row?;
                let entry = decode(v.value())?;
                out.entry(key.value().1).or_default().push(entry);
            }
            Ok(())
        };
        match indexes {
            None => read(0, u32::MAX)?,
            Some(indexes) => {
                for &i in indexes {
                    read(i, i)?;
                }
            }
        }
        Ok(out)
    }

    pub fn attempts(&self, id: &JobId) -> Result<Vec<TaskResult>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ATTEMPTS)?;
        let k = key(id);
        t.range((k, 0, 0)..=(k, u32::MAX, u32::MAX))?
            .map(|r| decode(r?.1.value()))
            .collect()
    }

    pub fn history(&self, id: &JobId) -> Result<Vec<HistoryEntry>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(HISTORY)?;
        let k = key(id);
        t.range((k, 0)..=(k, u64::MAX))?
            .map(|r| decode(r?.1.value()))
            .collect()
    }

    /// Dispatches committed but not yet marked handed over, oldest first.
    pub fn outbox(&self) -> Result<Vec<(u64, Dispatch)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OUTBOX)?;
        t.iter()?
            .map(|r| {
                let (k, v) = r?;
                Ok((k.value(), decode(v.value())?))
            })
            .collect()
    }

    /// The `[[notify]]` outbox: notifications not yet delivered nor given up, oldest first.
    pub fn notices(&self) -> Result<Vec<Notice>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NOTIFY)?;
        t.iter()?.map(|r| decode(r?.1.value())).collect()
    }

    /// How a job's notifications fared, once a delivery failed.
    pub fn notify_health(&self, id: &JobId) -> Result<Option<NotifyHealth>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NOTIFY_HEALTH)?;
        t.get(key(id))?.map(|v| decode(v.value())).transpose()
    }

    /// Removes finished jobs that ended more than `older_than_ms` before `now`, with all their
    /// rows (job, tasks, attempts, history, any outbox entry), in one transaction; unfinished
    /// jobs are never removed. Returns their records.
    pub fn prune(&self, now: Millis, older_than_ms: u64) -> Result<Vec<JobRecord>> {
        Ok(self
            .write(&Write::Prune { now, older_than_ms }, Origin::Live)?
            .pruned)
    }
}

fn journal_seq(tx: &redb::WriteTransaction) -> Result<u64> {
    let meta = tx.open_table(META)?;
    let seq = meta.get(JOURNAL_SEQ)?.map_or(0, |v| v.value());
    Ok(seq)
}

/// The rows of a new job (`Store::insert_job`).
fn write_insert(tx: &redb::WriteTransaction, job: &JobRecord) -> Result<()> {
    {
        let mut jobs = tx.open_table(JOBS)?;
        jobs.insert(key(&job.id), encode(job).as_slice())?;
        let mut tasks = tx.open_table(TASKS)?;
        let pending = encode(&SavedTask {
            state: TaskState::Pending,
            attempts: 0,
            conflicts: 0,
        });
        for i in 0..job.spec.tasks.len() as u32 {
            tasks.insert((key(&job.id), i), pending.as_slice())?;
        }
    }
    Ok(())
}

/// Adds what `r`'s agent run cost to its job's total.
fn add_cost(costs: &mut redb::Table<'_, u128, f64>, r: &TaskResult) -> Result<()> {
    let Some(c) = r.agent.as_ref().and_then(|a| a.cost_usd) else {
        return Ok(());
    };
    if !c.is_finite() || c <= 0.0 {
        return Ok(());
    }
    let k = key(&r.job);
    let before = costs.get(k)?.map_or(0.0, |v| v.value());
    costs.insert(k, before + c)?;
    Ok(())
}

/// The rows of one batch (`Store::commit`); returns the new outbox sequences.
fn write_batch(tx: &redb::WriteTransaction, batch: &Batch<'_>) -> Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(batch.outbox_add.len());
    {
        // Sequences come from the rows they follow, not from counters of their own: one table
        // fewer written per commit, and the same numbers wherever the writes are replayed.
        let mut last_seq: HashMap<u128, u64> = HashMap::new();
        let mut jobs = tx.open_table(JOBS)?;
        let mut tasks = tx.open_table(TASKS)?;
        let mut attempts = tx.open_table(ATTEMPTS)?;
        let mut history = tx.open_table(HISTORY)?;
        let mut stages = tx.open_table(STAGES)?;
        let mut outbox = tx.open_table(OUTBOX)?;
        let mut outbox_seq = outbox.last()?.map_or(0, |(k, _)| k.value());
        let mut costs = tx.open_table(COSTS)?;
        let mut pools = tx.open_table(POOLS)?;
        for change in batch.changes {
            let job = match change {
                Change::Pool { name, limit } => {
                    // No job's history: the pool's record is its last state.
                    pools.insert(name.as_str(), encode(limit).as_slice())?;
                    continue;
                }
                Change::Task {
                    job,
                    index,
                    attempts: n,
                    state,
                    conflicts,
                } => {
                    let rec = SavedTask {
                        state: state.clone(),
                        attempts: *n,
                        conflicts: *conflicts,
                    };
                    tasks.insert((key(job), index.0), encode(&rec).as_slice())?;
                    *job
                }
                Change::Attempt(r) => {
                    attempts.insert((key(&r.job), r.index.0, r.attempt.0), encode(r).as_slice())?;
                    add_cost(&mut costs, r)?;
                    r.job
                }
                Change::Ignored {
                    result,
                    kind,
                    charged,
                    ..
                } => {
                    if kind.counts_spend(*charged) {
                        add_cost(&mut costs, result)?;
                    }
                    result.job
                }
                Change::Stage {
                    job,
                    index,
                    attempt,
                    record,
                } => {
                    let seq = next_history_seq(&history, &mut last_seq, key(job))?;
                    let row = (key(job), index.0, seq);
                    stages.insert(row, encode(&(attempt, record)).as_slice())?;
                    *job
                }
                Change::Integrated { job, .. }
                | Change::Batch { job, .. }
                | Change::Speculation { job, .. } => *job,
                Change::Budget {
                    job,
                    max_cost_usd,
                    max_tokens,
                } => {
                    let current = jobs.get(key(job))?.map(|v| v.value().to_vec());
                    if let Some(bytes) = current {
                        let mut rec: JobRecord = decode(&bytes)?;
                        let s = &mut rec.spec.settings;
                        s.max_cost_usd = max_cost_usd.or(s.max_cost_usd);
                        s.max_tokens = max_tokens.or(s.max_tokens);
                        jobs.insert(key(job), encode(&rec).as_slice())?;
                    }
                    *job
                }
                Change::Job {
                    job,
                    state,
                    at,
                    reason,
                } => {
                    let current = jobs.get(key(job))?.map(|v| v.value().to_vec());
                    if let Some(bytes) = current {
                        let mut rec: JobRecord = decode(&bytes)?;
                        if rec.state.is_terminal() && !state.is_terminal() {
                            // Retried: a new run starts.
                            rec.retries += 1;
                            rec.run_started_ms = Some(*at);
                            rec.finished_ms = None;
                        }
                        rec.state = *state;
                        rec.updated_ms = *at;
                        if state.is_terminal() {
                            rec.finished_ms = Some(*at);
                        }
                        rec.reason = reason.clone().or(rec.reason);
                        jobs.insert(key(job), encode(&rec).as_slice())?;
                    }
                    *job
                }
            };
            let seq = next_history_seq(&history, &mut last_seq, key(&job))?;
            last_seq.insert(key(&job), seq);
            let entry = HistoryEntry {
                at: batch.now,
                change: change.clone(),
            };
            history.insert((key(&job), seq), encode(&entry).as_slice())?;
        }
        for d in batch.outbox_add {
            outbox_seq += 1;
            outbox.insert(outbox_seq, encode(d).as_slice())?;
            seqs.push(outbox_seq);
        }
        for seq in batch.outbox_sent {
            outbox.remove(*seq)?;
        }
        if !batch.notify_add.is_empty() || !batch.notify_edits.is_empty() {
            write_notify(tx, batch, &costs)?;
        }
    }
    Ok(seqs)
}

/// The sequence of a job's next history entry: one after its last (`last` keeps what this
/// batch wrote).
fn next_history_seq(
    history: &redb::Table<'_, (u128, u64), &[u8]>,
    last: &mut HashMap<u128, u64>,
    job: u128,
) -> Result<u64> {
    if let Some(seq) = last.get(&job) {
        return Ok(seq + 1);
    }
    let seq = match history.range((job, 0)..=(job, u64::MAX))?.next_back() {
        Some(row) => row?.0.value().1,
        None => 0,
    };
    last.insert(job, seq);
    Ok(seq + 1)
}

/// The `[[notify]]` outbox's part of a batch: new notifications (with the job's cost as
/// committed by the same batch) and what delivery attempts made of others.
fn write_notify(
    tx: &redb::WriteTransaction,
    batch: &Batch<'_>,
    costs: &redb::Table<'_, u128, f64>,
) -> Result<()> {
    let mut notify = tx.open_table(NOTIFY)?;
    let mut health = tx.open_table(NOTIFY_HEALTH)?;
    for n in batch.notify_add {
        let mut n = n.clone();
        n.cost_usd = costs.get(key(&n.job))?.map(|v| v.value());
        notify.insert(n.id.as_str(), encode(&n).as_slice())?;
    }
    for e in batch.notify_edits {
        let current = notify.get(e.id.as_str())?.map(|v| v.value().to_vec());
        let Some(bytes) = current else { continue };
        match &e.outcome {
            Delivery::Sent => {
                notify.remove(e.id.as_str())?;
            }
            Delivery::Failed { error, next_ms } => {
                let mut n: Notice = decode(&bytes)?;
                let k = key(&n.job);
                let mut h: NotifyHealth = match health.get(k)? {
                    Some(v) => decode(v.value())?,
                    None => NotifyHealth::default(),
                };
                h.failures += 1;
                h.last_error = Some(format!("{} to {}: {error}", n.event.name(), n.hook.url));
                match next_ms {
                    Some(next) => {
                        n.attempts += 1;
                        n.next_ms = *next;
                        n.last_error = Some(error.clone());
                        notify.insert(e.id.as_str(), encode(&n).as_slice())?;
                    }
                    None => {
                        h.given_up += 1;
                        notify.remove(e.id.as_str())?;
                    }
                }
                health.insert(k, encode(&h).as_slice())?;
            }
        }
    }
    Ok(())
}

/// Removes finished jobs (`Store::prune`); returns their records.
fn write_prune(
    tx: &redb::WriteTransaction,
    now: Millis,
    older_than_ms: u64,
) -> Result<Vec<JobRecord>> {
    let cutoff = now.saturating_sub(older_than_ms);
    let mut pruned = Vec::new();
    let victims = {
        let mut jobs = tx.open_table(JOBS)?;
        let mut victims = Vec::new();
        for row in jobs.iter()? {
            let (k, v) = row?;
            let rec: JobRecord = decode(v.value())?;
            let ended = rec.finished_ms.unwrap_or(rec.updated_ms);
            if rec.state.is_terminal() && ended < cutoff {
                victims.push(k.value());
                pruned.push(rec);
            }
        }
        let mut tasks = tx.open_table(TASKS)?;
        let mut attempts = tx.open_table(ATTEMPTS)?;
        let mut history = tx.open_table(HISTORY)?;
        let mut stages = tx.open_table(STAGES)?;
        let mut costs = tx.open_table(COSTS)?;
        let mut health = tx.open_table(NOTIFY_HEALTH)?;
        for &k in &victims {
            jobs.remove(k)?;
            costs.remove(k)?;
            health.remove(k)?;
            tasks.retain_in((k, 0)..=(k, u32::MAX), |_, _| false)?;
            attempts.retain_in((k, 0, 0)..=(k, u32::MAX, u32::MAX), |_, _| false)?;
            history.retain_in((k, 0)..=(k, u64::MAX), |_, _| false)?;
            stages.retain_in((k, 0, 0)..=(k, u32::MAX, u64::MAX), |_, _| false)?;
        }
        if !victims.is_empty() {
            let mut outbox = tx.open_table(OUTBOX)?;
            outbox.retain(|_, v| match rmp_serde::from_slice::<Dispatch>(v) {
                Ok(d) => !victims.contains(&key(&d.job)),
                Err(_) => true,
            })?;
            let mut notify = tx.open_table(NOTIFY)?;
            notify.retain(|_, v| match rmp_serde::from_slice::<Notice>(v) {
                Ok(n) => !victims.contains(&key(&n.job)),
                Err(_) => true,
            })?;
        }
        victims
    };
    debug_assert_eq!(pruned.len(), victims.len());
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

    use super::*;
    use ordo_proto::{Attempt, Outcome, TaskSpec};

    /// A pool's limit is kept as its last record, across reopening the file, with no job's
    /// history.
    #[test]
    fn pool_limits_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut limit = PoolLimit::new(8);
        limit.refused(8, 1, 2);
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.pool_limits().unwrap().is_empty());
            for l in [PoolLimit::new(8), limit.clone()] {
                let changes = [Change::Pool {
                    name: "claude".into(),
                    limit: l,
                }];
                let batch = Batch {
                    now: 1,
                    changes: &changes,
                    ..Default::default()
                };
                store.commit(&batch).unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.pool_limits().unwrap(),
            vec![("claude".to_string(), limit)]
        );
    }

    fn record(n: usize) -> JobRecord {
        let spec = JobSpec {
            name: "j".into(),
            tasks: (0..n)
                .map(|i| TaskSpec::shell(&format!("t{i}"), "true"))
                .collect(),
            ..Default::default()
        };
        JobRecord::new(JobId::new(), spec, "test", JobOptions::default(), 1)
    }

    /// Task `index` of `job` succeeded (its first attempt).
    fn succeeded(job: &JobRecord, index: u32) -> Change {
        Change::Task {
            job: job.id,
            index: TaskIndex(index),
            attempts: 1,
            conflicts: 0,
            state: TaskState::Succeeded {
                attempt: Attempt(1),
                finished: 7,
            },
        }
    }

    /// A copy of the state file in `dir` (and of its write-ahead log) as they are now, as a
    /// process killed now would leave them.
    fn copied(dir: &Path, with_log: bool) -> tempfile::TempDir {
        let to = tempfile::tempdir().unwrap();
        let mut names = vec![ordo_proto::names::STATE_FILE];
        if with_log {
            names.push(ordo_proto::names::STATE_LOG_FILE);
        }
        for name in names {
            std::fs::copy(dir.join(name), to.path().join(name)).unwrap();
        }
        to
    }

    #[test]
    fn records_survive_reopen_and_history_is_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let job = record(3);
        {
            let store = Store::open(dir.path()).unwrap();
            store.insert_job(&job).unwrap();
            let changes = vec![
                Change::Task {
                    job: job.id,
                    index: TaskIndex(1),
                    attempts: 1,
                    conflicts: 0,
                    state: TaskState::Succeeded {
                        attempt: Attempt(1),
                        finished: 7,
                    },
                },
                Change::Job {
                    job: job.id,
                    state: JobState::Running,
                    at: 7,
                    reason: None,
                },
            ];
            store
                .commit(&Batch {
                    now: 7,
                    changes: &changes,
                    ..Default::default()
                })
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let tasks = store.tasks(&job.id).unwrap();
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[0].state, TaskState::Pending);
        assert!(matches!(tasks[1].state, TaskState::Succeeded { .. }));
        assert_eq!(
            store.job(&job.id).unwrap().unwrap().state,
            JobState::Running
        );
        let history = store.history(&job.id).unwrap();
        assert_eq!(history.len(), 2);
        assert!(matches!(history[1].change, Change::Job { .. }));
    }

    /// A commit is durable once it returns although redb did not sync it: a process killed
    /// then (its files as it left them, copied while it still runs) opens with every commit,
    /// replayed from the write-ahead log; the state file alone holds only its last
    /// checkpoint. A later open starts the log again and numbers on from the replayed writes,
    /// and a store closed cleanly leaves every commit in the file.
    #[test]
    fn commits_come_back_from_the_log_after_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let job = record(2);
        let done = |index: u32| succeeded(&job, index);
        let store = Store::open(dir.path()).unwrap();
        store.insert_job(&job).unwrap();
        store
            .commit(&Batch {
                now: 7,
                changes: &[done(0)],
                ..Default::default()
            })
            .unwrap();
        let (killed, bare) = (copied(dir.path(), true), copied(dir.path(), false));
        drop(store);

        let alone = Store::open(bare.path()).unwrap();
        assert_eq!(
            alone.job(&job.id).unwrap(),
            None,
            "the file alone: its checkpoint"
        );

        let reopened = Store::open(killed.path()).unwrap();
        let tasks = reopened.tasks(&job.id).unwrap();
        assert!(matches!(tasks[0].state, TaskState::Succeeded { .. }));
        assert_eq!(tasks[1].state, TaskState::Pending);
        // Written after the replay, kept after another kill, and numbered after it.
        reopened
            .commit(&Batch {
                now: 8,
                changes: &[done(1)],
                ..Default::default()
            })
            .unwrap();
        let again = copied(killed.path(), true);
        let store = Store::open(again.path()).unwrap();
        assert!(
            store
                .tasks(&job.id)
                .unwrap()
                .iter()
                .all(|t| matches!(t.state, TaskState::Succeeded { .. }))
        );
        assert_eq!(store.history(&job.id).unwrap().len(), 2);

        // Closed cleanly, the file alone holds every commit (a backup copies just the file).
        drop(store);
        let store = Store::open(copied(again.path(), false).path()).unwrap();
        assert_eq!(store.history(&job.id).unwrap().len(), 2);
    }

    /// A log left beside a state file that was removed belongs to that file: a new state file
    /// made there replays none of it.
    #[test]
    fn a_log_left_by_a_removed_state_file_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let job = record(1);
        let store = Store::open(dir.path()).unwrap();
        store.insert_job(&job).unwrap();
        let killed = copied(dir.path(), true);
        drop(store);
        std::fs::remove_file(killed.path().join(ordo_proto::names::STATE_FILE)).unwrap();
        let fresh = Store::open(killed.path()).unwrap();
        assert!(fresh.jobs().unwrap().is_empty());
    }

    /// A log whose `fail_at`-th write fails and every other works.
    struct FlakyLog {
        inner: File,
        writes: Arc<AtomicU64>,
        fail_at: u64,
    }

    impl LogFile for FlakyLog {
        fn size(&self) -> std::io::Result<u64> {
            self.inner.size()
        }
        fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
            self.inner.read_at(buf, at)
        }
        fn write_at(&self, buf: &[u8], at: u64) -> std::io::Result<()> {
            if 1 + self.writes.fetch_add(1, SeqCst) == self.fail_at {
                return Err(std::io::Error::other("simulated write error"));
            }
            self.inner.write_at(buf, at)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.inner.sync()
        }
    }

    /// A commit whose log entry could not be written is made durable in the state file itself
    /// and returns as committed; the log goes on after it without a gap.
    #[test]
    fn a_failed_append_commits_to_the_state_file_instead() {
        let dir = tempfile::tempdir().unwrap();
        let job = record(2);
        let writes = Arc::new(AtomicU64::new(0));
        let store = Store::open_with(dir.path(), redb::backends::FileBackend::new, |f| {
            Box::new(FlakyLog {
                inner: f,
                writes: writes.clone(),
                // The log's creation, the job's insertion, then the first commit.
                fail_at: 3,
            })
        })
        .unwrap();
        store.insert_job(&job).unwrap();
        let done = |index: u32| succeeded(&job, index);
        let commit = |i: u32| {
            store.commit(&Batch {
                now: 7,
                changes: &[done(i)],
                ..Default::default()
            })
        };
        commit(0).unwrap();
        let copy = Store::open(copied(dir.path(), false).path()).unwrap();
        assert_eq!(copy.history(&job.id).unwrap().len(), 1, "the file alone");
        commit(1).unwrap();
        let copy = Store::open(copied(dir.path(), true).path()).unwrap();
        assert_eq!(
            copy.history(&job.id).unwrap().len(),
            2,
            "the file and its log"
        );
    }

    #[test]
    fn outbox_entries_stay_until_marked_sent() {
        let store = Store::in_memory().unwrap();
        let job = record(1);
        store.insert_job(&job).unwrap();
        let d = Dispatch::new(
            job.id,
            job.spec.tasks[0].name.clone(),
            TaskIndex(0),
            Attempt(1),
            ordo_proto::Program::Shell("true".into()),
        );
        let seqs = store
            .commit(&Batch {
                outbox_add: std::slice::from_ref(&d),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(store.outbox().unwrap(), vec![(seqs[0], d.clone())]);
        store
            .commit(&Batch {
                outbox_sent: &seqs,
                ..Default::default()
            })
            .unwrap();
        assert!(store.outbox().unwrap().is_empty());
    }

    #[test]
    fn attempts_are_kept_per_task_and_attempt() {
        let store = Store::in_memory().unwrap();
        let job = record(2);
        store.insert_job(&job).unwrap();
        let result = |index: u32, attempt: u32| TaskResult {
            job: job.id,
            task: job.spec.tasks[index as usize].name.clone(),
            index: TaskIndex(index),
            attempt: Attempt(attempt),
            outcome: Outcome::Failed,
            exit_code: Some(1),
            signal: None,
            verify_exit_code: None,
            started_at_ms: 0,
            duration_ms: 0,
            command_ms: 0,
            verify_started_ms: None,
            output_tail: "boom".into(),
            output_bytes: 4,
            worker: "local".into(),
            delivery: 0,
            abandoned: false,
            message: "exit code 1".into(),
            workspace: None,
            agent: None,
            stages: Vec::new(),
            rounds: 0,
        };
        let changes = [
            Change::Attempt(result(1, 1)),
            Change::Attempt(result(0, 1)),
            Change::Attempt(result(1, 2)),
        ];
        store
            .commit(&Batch {
                changes: &changes,
                ..Default::default()
            })
            .unwrap();
        let got: Vec<(u32, u32)> = store
            .attempts(&job.id)
            .unwrap()
            .iter()
            .map(|r| (r.index.0, r.attempt.0))
            .collect();
        assert_eq!(got, vec![(0, 1), (1, 1), (1, 2)]);
    }

    #[test]
    fn prune_removes_old_finished_jobs_and_all_their_rows() {
        let store = Store::in_memory().unwrap();
        let old = record(2);
        let recent = record(1);
        let running = record(1);
        for j in [&old, &recent, &running] {
            store.insert_job(j).unwrap();
        }
        let result = |job: &JobRecord| TaskResult {
            job: job.id,
            task: job.spec.tasks[0].name.clone(),
            index: TaskIndex(0),
            attempt: Attempt(1),
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            signal: None,
            verify_exit_code: None,
            started_at_ms: 0,
            duration_ms: 0,
            command_ms: 0,
            verify_started_ms: None,
            output_tail: String::new(),
            output_bytes: 0,
            worker: "local".into(),
            delivery: 0,
            abandoned: false,
            message: String::new(),
            workspace: None,
            agent: None,
            stages: Vec::new(),
            rounds: 0,
        };
        let end = |job: &JobRecord, at: Millis| Change::Job {
            job: job.id,
            state: JobState::Succeeded,
            at,
            reason: None,
        };
        let mut costly = result(&old);
        costly.agent = Some(Box::new(ordo_proto::AgentRun {
            cost_usd: Some(0.5),
            ..Default::default()
        }));
        let decided = |job: &JobRecord| Change::Stage {
            job: job.id,
            index: TaskIndex(0),
            attempt: Attempt(1),
            record: StageRecord::default(),
        };
        let changes = [
            Change::Attempt(costly),
            decided(&old),
            end(&old, 1_000),
            Change::Attempt(result(&recent)),
            end(&recent, 9_000),
            Change::Attempt(result(&running)),
            Change::Job {
                job: running.id,
                state: JobState::Running,
                at: 10,
                reason: None,
            },
        ];
        let d = Dispatch::new(
            old.id,
            old.spec.tasks[1].name.clone(),
            TaskIndex(1),
            Attempt(1),
            ordo_proto::Program::Shell("true".into()),
        );
        store
            .commit(&Batch {
                now: 1,
                changes: &changes,
                outbox_add: &[d],
                ..Default::default()
            })
            .unwrap();

        // Nothing finished more than 5 s before t = 5.5 s except `old`; `running` never goes.
        assert_eq!(store.prune(5_500, 30_000).unwrap().len(), 0);
        assert_eq!(store.prune(5_500, 4_000).unwrap().len(), 1);
        assert!(store.job(&old.id).unwrap().is_none());
        assert_eq!(store.job_cost(&old.id).unwrap(), None);
        assert!(store.tasks(&old.id).unwrap().is_empty());
        assert!(store.attempts(&old.id).unwrap().is_empty());
        assert!(store.history(&old.id).unwrap().is_empty());
        assert!(store.stage_records(&old.id, None).unwrap().is_empty());
        assert!(store.outbox().unwrap().is_empty());
        for kept in [&recent, &running] {
            assert!(store.job(&kept.id).unwrap().is_some());
            assert_eq!(store.tasks(&kept.id).unwrap().len(), 1);
            assert_eq!(store.attempts(&kept.id).unwrap().len(), 1);
            assert_eq!(store.history(&kept.id).unwrap().len(), 2);
        }
        // Age 0: every finished job, still never a running one.
        assert_eq!(store.prune(10_000, 0).unwrap().len(), 1);
        let left: Vec<JobId> = store.jobs().unwrap().iter().map(|j| j.id).collect();
        assert_eq!(left, vec![running.id]);
    }

    /// A result of task 0 of `job` whose agent run cost `usd`.
    fn agent_result(job: &JobRecord, attempt: u32, usd: f64) -> TaskResult {
        let d = Dispatch::new(
            job.id,
            job.spec.tasks[0].name.clone(),
            TaskIndex(0),
            Attempt(attempt),
            ordo_proto::Program::Shell("true".into()),
        );
        let mut r = TaskResult::new(&d, "w".into(), Outcome::Succeeded, 0, "");
        r.agent = Some(Box::new(ordo_proto::AgentRun {
            cost_usd: Some(usd),
            ..Default::default()
        }));
        r
    }

    /// A job's cost counts every run that spent: applied attempts and the stale or duplicate
    /// executions the engine charged; a result reported again or forged counts for nothing.
    #[test]
    fn job_cost_sums_applied_and_ignored_runs() {
        let store = Store::in_memory().unwrap();
        let job = record(1);
        store.insert_job(&job).unwrap();
        assert_eq!(store.job_cost(&job.id).unwrap(), None);
        let run = |usd: f64| agent_result(&job, 1, usd);
        let ignored = |usd: f64, kind: crate::engine::Ignore, charged: bool| Change::Ignored {
            result: run(usd),
            why: "test".into(),
            kind,
            charged: Some(charged),
        };
        let changes = [
            Change::Attempt(run(0.25)),
            ignored(0.5, crate::engine::Ignore::Stale, true),
            ignored(0.125, crate::engine::Ignore::Duplicate, true),
            // Reported again (or forged): the engine did not charge it.
            ignored(2.0, crate::engine::Ignore::Duplicate, false),
            ignored(100.0, crate::engine::Ignore::Unknown, false),
        ];
        store
            .commit(&Batch {
                now: 1,
                changes: &changes,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(store.job_cost(&job.id).unwrap(), Some(0.875));
    }

    /// What a resumed job rebuilds from starts at its last retry: sessions and the budget
    /// start afresh there, as they did when it was retried.
    #[test]
    fn saved_agent_runs_start_at_the_last_retry() {
        let store = Store::in_memory().unwrap();
        let mut job = record(1);
        job.spec.tasks[0].command = None;
        job.spec.tasks[0].prompt = Some("do it".into());
        store.insert_job(&job).unwrap();
        let run = |attempt: u32, usd: f64| agent_result(&job, attempt, usd);
        let state = |state: JobState| Change::Job {
            job: job.id,
            state,
            at: 1,
            reason: None,
        };
        let commit = |changes: &[Change]| {
            store
                .commit(&Batch {
                    now: 1,
                    changes,
                    ..Default::default()
                })
                .unwrap();
        };
        commit(&[
            state(JobState::Running),
            Change::Attempt(run(1, 0.5)),
            Change::Ignored {
                result: run(1, 0.25),
                why: "stale".into(),
                kind: crate::engine::Ignore::Stale,
                charged: Some(true),
            },
            state(JobState::Failed),
        ]);
        let before = store.saved(&store.job(&job.id).unwrap().unwrap()).unwrap();
        assert_eq!(before.results.len(), 1);
        assert_eq!(before.ignored.len(), 1);
        // Retried: what came before no longer counts.
        commit(&[state(JobState::Running), Change::Attempt(run(2, 0.125))]);
        let after = store.saved(&store.job(&job.id).unwrap().unwrap()).unwrap();
        assert_eq!(after.results, vec![run(2, 0.125)]);
        assert!(after.ignored.is_empty());
        // The job's total still counts every run.
        assert_eq!(store.job_cost(&job.id).unwrap(), Some(0.875));
    }

    #[test]
    fn job_records_without_slots_still_decode() {
        // A record as written before `JobOptions::slots` existed.
        #[derive(Serialize)]
        struct OldOptions {
            default_mode: ordo_proto::ExecutionMode,
            max_parallel: Option<u32>,
            seed: u64,
        }
        #[derive(Serialize)]
        struct OldRecord<'a> {
            id: JobId,
            name: &'a str,
            source: &'a str,
            spec: &'a JobSpec,
            options: OldOptions,
            state: JobState,
            created_ms: Millis,
            updated_ms: Millis,
            finished_ms: Option<Millis>,
            reason: Option<String>,
        }
        let rec = record(1);
        let old = OldRecord {
            id: rec.id,
            name: &rec.name,
            source: &rec.source,
            spec: &rec.spec,
            options: OldOptions {
                default_mode: ordo_proto::ExecutionMode::Parallel,
                max_parallel: None,
                seed: 7,
            },
            state: JobState::Pending,
            created_ms: 1,
            updated_ms: 1,
            finished_ms: None,
            reason: None,
        };
        let back: JobRecord = decode(&encode(&old)).unwrap();
        assert_eq!(back.options.slots, None);
        assert_eq!(back.options.seed, 7);
        // The mode old records always carried reads as asked for: they keep running as before.
        assert_eq!(
            back.options.default_mode,
            Some(ordo_proto::ExecutionMode::Parallel)
        );
    }

    /// A coordinator restarted while its predecessor still holds the file waits for it; one
    /// whose predecessor never lets go gets the clear error after the wait.
    #[test]
    fn opening_waits_for_a_predecessor_to_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let dying = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        let started = std::time::Instant::now();
        let second = Store::open_waiting(dir.path(), std::time::Duration::from_secs(10)).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
        dying.join().unwrap();
        let err =
            Store::open_waiting(dir.path(), std::time::Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(second);
    }

    #[test]
    fn a_second_opener_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
    }

    /// A disk that works until its `fail_at`-th write (writes, length changes and syncs of
    /// every file it backs all count), fails that one and every operation after it: a process
    /// killed mid-write, whose writes so far reached the files. redb's fuzzer wraps its file
    /// backend the same way.
    #[derive(Clone, Debug)]
    struct Disk {
        writes: Arc<AtomicU64>,
        dead: Arc<AtomicBool>,
        fail_at: u64,
    }

    impl Disk {
        fn new(fail_at: u64) -> Disk {
            Disk {
                writes: Default::default(),
                dead: Default::default(),
                fail_at,
            }
        }

        fn backend(&self, file: File) -> Result<FailingBackend, redb::DatabaseError> {
            Ok(FailingBackend {
                inner: redb::backends::FileBackend::new(file)?,
                disk: self.clone(),
            })
        }

        fn alive(&self) -> std::io::Result<()> {
            match self.dead.load(SeqCst) {
                true => Err(std::io::Error::other("simulated crash")),
                false => Ok(()),
            }
        }

        fn write_op(&self) -> std::io::Result<()> {
            self.alive()?;
            if 1 + self.writes.fetch_add(1, SeqCst) >= self.fail_at {
                self.dead.store(true, SeqCst);
            }
            self.alive()
        }

        /// The write-ahead log's file on this disk.
        fn log(&self, file: File) -> Box<dyn LogFile> {
            Box::new(FailingLog {
                inner: file,
                disk: self.clone(),
            })
        }
    }

    struct FailingLog {
        inner: File,
        disk: Disk,
    }

    impl LogFile for FailingLog {
        fn size(&self) -> std::io::Result<u64> {
            self.disk.alive()?;
            self.inner.size()
        }
        fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
            self.disk.alive()?;
            self.inner.read_at(buf, at)
        }
        fn write_at(&self, buf: &[u8], at: u64) -> std::io::Result<()> {
            self.disk.write_op()?;
            self.inner.write_at(buf, at)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.disk.write_op()?;
            self.inner.sync()
        }
    }

    #[derive(Debug)]
    struct FailingBackend {
        inner: redb::backends::FileBackend,
        disk: Disk,
    }

    impl redb::StorageBackend for FailingBackend {
        fn len(&self) -> std::io::Result<u64> {
            self.disk.alive()?;
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.disk.alive()?;
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.disk.write_op()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.disk.write_op()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.disk.write_op()?;
            self.inner.write(offset, data)
        }
        // A killed process's locks go with it: closing always works.
        fn close(&self) -> std::io::Result<()> {
            self.inner.close()
        }
        fn try_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner.try_lock_range(start, end)
        }
        fn try_lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner.try_lock_shared_range(start, end)
        }
        fn lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner.lock_range(start, end)
        }
        fn lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner.lock_shared_range(start, end)
        }
        fn unlock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.inner.unlock_range(start, end)
        }
        fn query_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.inner.query_lock_range(start, end)
        }
    }

    /// Everything the store holds, as its readers see it.
    #[derive(Debug, PartialEq)]
    struct Snapshot {
        jobs: Vec<JobRecord>,
        tasks: Vec<Vec<SavedTask>>,
        attempts: Vec<Vec<TaskResult>>,
        history: Vec<Vec<HistoryEntry>>,
        outbox: Vec<(u64, Dispatch)>,
    }

    fn snapshot(store: &Store) -> Snapshot {
        let jobs = store.jobs().unwrap();
        Snapshot {
            tasks: jobs.iter().map(|j| store.tasks(&j.id).unwrap()).collect(),
            attempts: jobs
                .iter()
                .map(|j| store.attempts(&j.id).unwrap())
                .collect(),
            history: jobs.iter().map(|j| store.history(&j.id).unwrap()).collect(),
            outbox: store.outbox().unwrap(),
            jobs,
        }
    }

    /// One loop turn: the changes to record and the dispatches to put in the outbox.
    type Turn = (Vec<Change>, Vec<Dispatch>);

    /// The writes of a coordinator running one job, a diamond `a → b, c → d`, as the service
    /// makes them: insert the job, then per turn the engine's changes with the dispatches to
    /// publish and the outbox entries published since the last turn. Always the same bytes.
    fn turns() -> (JobRecord, Vec<Turn>) {
        use crate::engine::{ANY_QUEUE, Action, Capacity, Engine, Event};
        use ordo_proto::TaskName;
        let mut job = record(0);
        job.id = JobId(uuid::Uuid::from_u128(
            0x0123_4567_89ab_7def_8123_4567_89ab_cdef,
        ));
        job.spec.tasks = ["a", "b", "c", "d"]
            .iter()
            .map(|n| TaskSpec::shell(n, "true"))
            .collect();
        let dep = |n: &str| TaskName::new(n).unwrap();
        job.spec.tasks[1].depends_on = vec![dep("a")].into();
        job.spec.tasks[2].depends_on = vec![dep("a")].into();
        job.spec.tasks[3].depends_on = vec![dep("b"), dep("c")].into();
        let dag = ordo_proto::validate::validate(&job.spec).unwrap();
        let mut engine = Engine::new();
        let split = |actions: Vec<Action>| {
            let mut turn = (Vec::new(), Vec::new());
            for a in actions {
                match a {
                    Action::Record(c) => turn.0.push(c),
                    Action::Dispatch(d) => turn.1.push(d),
                    Action::Kill { .. } | Action::Integrate(_) => {}
                }
            }
            turn
        };
        let capacity = Event::Capacity {
            queue: ANY_QUEUE.into(),
            capacity: Capacity::machine(4, 4.0, 1024),
        };
        engine.apply(10, capacity);
        let submit = Event::Submit {
            job: job.id,
            spec: Arc::new(job.spec.clone()),
            dag: Arc::new(dag),
            options: job.options.clone(),
            saved: None,
        };
        let mut turns = vec![split(engine.apply(10, submit))];
        let mut now = 10;
        while let Some(running) = turns.last().map(|t| t.1.clone()).filter(|d| !d.is_empty()) {
            now += 10;
            let mut actions = Vec::new();
            for d in running {
                let result = TaskResult {
                    job: d.job,
                    task: d.task.clone(),
                    index: d.index,
                    attempt: d.attempt,
                    outcome: Outcome::Succeeded,
                    exit_code: Some(0),
                    signal: None,
                    verify_exit_code: None,
                    started_at_ms: now - 5,
                    duration_ms: 5,
                    command_ms: 5,
                    verify_started_ms: None,
                    output_tail: format!("{} done\n", d.task),
                    output_bytes: 8,
                    worker: "w1".into(),
                    delivery: 1,
                    abandoned: false,
                    message: String::new(),
                    workspace: None,
                    agent: None,
                    stages: Vec::new(),
                    rounds: 0,
                };
                actions.extend(engine.apply(now, Event::Finished(result)));
            }
            turns.push(split(actions));
        }
        assert!(engine.is_idle(), "the diamond ran to its end");
        (job, turns)
    }

    /// Step `i` of the workload: insert the job, then commit turn `i`, marking sent what the
    /// previous turn added to the outbox.
    fn step(
        store: &Store,
        job: &JobRecord,
        turns: &[Turn],
        i: usize,
        unsent: &mut Vec<u64>,
    ) -> Result<()> {
        if i == 0 {
            return store.insert_job(job);
        }
        let (changes, dispatches) = &turns[i - 1];
        *unsent = store.commit(&Batch {
            now: 100 + i as u64,
            changes,
            outbox_add: dispatches,
            outbox_sent: unsent,
            ..Default::default()
        })?;
        Ok(())
    }

    /// Proves every write of the store is atomic across a crash: for every N, a backend that
    /// dies at its N-th write (opening the file, inserting the job, any commit, closing) leaves
    /// a file that `Store::open` opens again, holding exactly the state before the step that
    /// was cut or exactly the state after it (job, every task record, attempts, history,
    /// outbox), never a mix, and a store that numbers new history and outbox entries after the
    /// ones it holds. It fails if `insert_job` or `commit` spread a step over two transactions
    /// or numbered new rows apart from the rows already there.
    #[test]
    fn a_crash_at_any_write_leaves_the_state_before_or_after_each_step() {
        let (job, turns) = turns();
        assert!(turns.len() >= 4, "a few turns: {}", turns.len());
        let steps = 1 + turns.len();
        // A healthy run: the state after opening and after each step, and how many writes
        // everything takes, closing included.
        let dir = tempfile::tempdir().unwrap();
        let healthy = Disk::new(u64::MAX);
        let mut states = Vec::new();
        {
            let store =
                Store::open_with(dir.path(), |f| healthy.backend(f), |f| healthy.log(f)).unwrap();
            states.push(snapshot(&store));
            let mut unsent = Vec::new();
            for i in 0..steps {
                step(&store, &job, &turns, i, &mut unsent).unwrap();
                states.push(snapshot(&store));
            }
        }
        let total = healthy.writes.load(SeqCst);
        assert!(total > 2 * steps as u64, "{total} writes");
        for w in states.windows(2) {
            assert_ne!(w[0], w[1], "every step changes something");
        }

        // Which steps a cut landed in: each must be cut somewhere.
        let mut cut = std::collections::BTreeSet::new();
        for n in 1..=total {
            let dir = tempfile::tempdir().unwrap();
            let disk = Disk::new(n);
            // `done`: steps known complete, counting the open as one.
            let mut done = 0;
            if let Ok(store) = Store::open_with(dir.path(), |f| disk.backend(f), |f| disk.log(f)) {
                done = 1;
                let mut unsent = Vec::new();
                for i in 0..steps {
                    if step(&store, &job, &turns, i, &mut unsent).is_err() {
                        break;
                    }
                    done += 1;
                }
            }
            cut.insert(done);
            let store = Store::open(dir.path())
                .unwrap_or_else(|e| panic!("write {n} of {total} cut: cannot reopen: {e}"));
            let got = snapshot(&store);
            // Before the cut step (nothing before the open: the empty store), or after it.
            let before = &states[done.max(1) - 1];
            let after = states.get(done);
            assert!(
                got == *before || Some(&got) == after,
                "write {n} of {total} cut after {done} steps: neither the state before the cut step \
                 nor the one after it: {got:#?}"
            );
            // New entries go after the old ones.
            let probe = Change::Job {
                job: job.id,
                state: JobState::Cancelled,
                at: 999,
                reason: Some("probe".into()),
            };
            let d = turns[0].1[0].clone();
            let seqs = store
                .commit(&Batch {
                    now: 999,
                    changes: std::slice::from_ref(&probe),
                    outbox_add: std::slice::from_ref(&d),
                    outbox_sent: &[],
                    ..Default::default()
                })
                .unwrap();
            let history = store.history(&job.id).unwrap();
            let old = got.history.first().map_or(&[][..], |h| &h[..]);
            assert_eq!(&history[..old.len()], old, "write {n}: history overwritten");
            assert_eq!(
                history.len(),
                old.len() + 1,
                "write {n}: history overwritten"
            );
            assert!(
                got.outbox.iter().all(|(s, _)| *s < seqs[0]),
                "write {n}: outbox reused"
            );
            assert_eq!(store.outbox().unwrap().len(), got.outbox.len() + 1);
        }
        // Steps 0..=steps, and the close after them.
        assert_eq!(cut, (0..=steps + 1).collect(), "{total} writes");
    }
}
