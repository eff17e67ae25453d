//! The state file's write-ahead log (`ordo.redb.wal`, beside `ordo.redb`): a commit is durable
//! once its entry (the write, encoded as the `--ha` journal carries it) is synced here, so redb
//! commits without an fsync of its own and the file is brought up to date by a durable redb
//! commit (a checkpoint) now and then. A redb commit writes a dozen scattered pages and syncs
//! them; an entry is one write into blocks the log allocated when it was made, whose sync
//! costs about half as much (docs/design.md, "A commit, and its log").
//!
//! Entries follow each other from the start of the file: length, checksum, the state file's
//! id, sequence, payload. After a checkpoint the log starts again at the front; what lies after
//! the last entry written is older (a lower sequence, or a torn entry whose checksum fails), so
//! reading stops where the sequence breaks. On open, the entries after the state file's last
//! durable sequence are read back in order and replayed by the store.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The log's size, allocated (written with zeros) when it is made: a write into allocated
/// blocks changes no metadata, so its sync is the data alone.
pub const LOG_BYTES: u64 = 2 << 20;
/// A write larger than this commits to redb durably instead (a job's insertion, a commit of
/// hundreds of results): the log is for the many small commits of a running job.
pub const MAX_ENTRY: usize = 256 << 10;
/// A checkpoint at least this often while writes come, so that redb's file is never far behind
/// and opening it replays little.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Length (u32), checksum (u64), state file id (u64), sequence (u64).
const HEADER: usize = 28;

/// What the log needs of its file (tests wrap it in one that fails, as a crash would).
pub trait LogFile: Send {
    fn size(&self) -> io::Result<u64>;
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
    fn write_at(&self, buf: &[u8], at: u64) -> io::Result<()>;
    fn sync(&self) -> io::Result<()>;
}

impl LogFile for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.read_exact_at(buf, at)
    }
    fn write_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        self.write_all_at(buf, at)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Entries read back from a log: sequence and payload, in order.
pub type Entries = Vec<(u64, Vec<u8>)>;

pub struct Wal {
    file: Box<dyn LogFile>,
    path: PathBuf,
    /// The state file this log belongs to (its `wal_id`): a log left beside another state file
    /// replays nothing.
    id: u64,
    /// Where the next entry goes.
    pos: u64,
    /// Entries written since the last checkpoint.
    entries: u64,
    since: Instant,
    /// redb may hold a write the log lacks (an entry is due, or its append failed): the next
    /// write commits durably (and with it everything before) before the log is used again.
    broken: bool,
}

fn checksum(id: u64, seq: u64, payload: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(id.to_le_bytes());
    h.update(seq.to_le_bytes());
    h.update(payload);
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

impl Wal {
    /// Opens (or makes) the log at `path` for the state file `id`, its file as `wrap` makes
    /// it, and reads back the entries after sequence `durable`, in order. The log starts again
    /// at the front once the caller replayed them and checkpointed (`checkpointed`).
    pub fn open(
        path: &Path,
        id: u64,
        durable: u64,
        wrap: impl Fn(File) -> Box<dyn LogFile>,
    ) -> io::Result<(Wal, Entries)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let file = wrap(file);
        let len = file.size()?;
        if len < LOG_BYTES {
            file.write_at(&vec![0u8; (LOG_BYTES - len) as usize], len)?;
            file.sync()?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut wal = Wal {
            file,
            path: path.to_path_buf(),
            id,
            pos: 0,
            entries: 0,
            since: Instant::now(),
            broken: false,
        };
        let entries = wal.read_after(durable)?;
        Ok((wal, entries))
    }

    fn read_after(&mut self, durable: u64) -> io::Result<Entries> {
        let mut out = Vec::new();
        let mut pos = 0u64;
        let mut last = None;
        let mut header = [0u8; HEADER];
        loop {
            if pos + HEADER as u64 > LOG_BYTES {
                break;
            }
            self.file.read_at(&mut header, pos)?;
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4")) as u64;
            let sum = u64::from_le_bytes(header[4..12].try_into().expect("8"));
            let id = u64::from_le_bytes(header[12..20].try_into().expect("8"));
            let seq = u64::from_le_bytes(header[20..28].try_into().expect("8"));
            // Entries follow one another; those the state file holds durably are passed over.
            if len == 0 || id != self.id || last.is_some_and(|l| seq != l + 1) {
                break;
            }
            if seq > durable && seq != durable + 1 + out.len() as u64 {
                tracing::warn!(
                    "write-ahead log {}: entry {seq} follows the state file's {durable} with a gap; not replayed",
                    self.path.display()
                );
                break;
            }
            let end = pos + HEADER as u64 + len;
            if end > LOG_BYTES {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            self.file.read_at(&mut payload, pos + HEADER as u64)?;
            if checksum(id, seq, &payload) != sum {
                break;
            }
            if seq > durable {
                out.push((seq, payload));
            }
            last = Some(seq);
            pos = end;
        }
        Ok(out)
    }

    /// Whether a write of `len` bytes must commit to redb durably instead of here: too large,
    /// no room left, or a checkpoint is due.
    pub fn wants_checkpoint(&self, len: usize) -> bool {
        self.broken
            || len > MAX_ENTRY
            || self.pos + (HEADER + len) as u64 > LOG_BYTES
            || (self.entries > 0 && self.since.elapsed() >= CHECKPOINT_EVERY)
    }

    /// redb is about to commit a write whose entry `append` then writes: until that returns,
    /// the log lacks it.
    pub fn entry_due(&mut self) {
        self.broken = true;
    }

    /// Appends entry `seq` and syncs it: once this returns, the write it carries is durable.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&checksum(self.id, seq, payload).to_le_bytes());
        buf.extend_from_slice(&self.id.to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(payload);
        let written = self
            .file
            .write_at(&buf, self.pos)
            .and_then(|()| self.file.sync());
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        self.broken = false;
        if self.entries == 0 {
            self.since = Instant::now();
        }
        self.pos += buf.len() as u64;
        self.entries += 1;
        Ok(())
    }

    /// redb holds everything durably: the log starts again at the front.
    pub fn checkpointed(&mut self) {
        self.pos = 0;
        self.entries = 0;
        self.since = Instant::now();
        self.broken = false;
    }

    /// Entries written since the last checkpoint.
    pub fn pending(&self) -> u64 {
        self.entries
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(f: File) -> Box<dyn LogFile> {
        Box::new(f)
    }

    #[test]
    fn entries_after_the_durable_sequence_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, back) = Wal::open(&path, 7, 0, plain).unwrap();
        assert!(back.is_empty());
        for seq in 1..=3u64 {
            wal.append(seq, format!("entry {seq}").as_bytes()).unwrap();
        }
        drop(wal);
        let (_, back) = Wal::open(&path, 7, 1, plain).unwrap();
        let got: Vec<(u64, String)> = back
            .into_iter()
            .map(|(s, p)| (s, String::from_utf8(p).unwrap()))
            .collect();
        assert_eq!(got, vec![(2, "entry 2".into()), (3, "entry 3".into())]);
    }

    #[test]
    fn a_torn_entry_another_files_log_and_older_entries_end_the_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, _) = Wal::open(&path, 7, 0, plain).unwrap();
        for seq in 1..=3u64 {
            wal.append(seq, b"0123456789").unwrap();
        }
        // Started again after a checkpoint at 3: entry 4 lies over entry 1, 2 and 3 follow.
        wal.checkpointed();
        wal.append(4, b"abcdefghij").unwrap();
        drop(wal);
        let read = |id, durable| {
            Wal::open(&path, id, durable, plain)
                .unwrap()
                .1
                .into_iter()
                .map(|(s, _)| s)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            read(7, 3),
            vec![4],
            "older entries after the last are not read"
        );
        assert_eq!(read(8, 3), Vec::<u64>::new(), "another state file's log");
        // Tear entry 4: its last byte never reached the disk.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"X", HEADER as u64 + 9).unwrap();
        assert_eq!(read(7, 3), Vec::<u64>::new(), "a torn entry");
    }

    #[test]
    fn a_checkpoint_is_wanted_for_large_writes_a_full_log_and_a_missing_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(&dir.path().join("log"), 1, 0, plain).unwrap();
        assert!(!wal.wants_checkpoint(1000));
        assert!(wal.wants_checkpoint(MAX_ENTRY + 1));
        wal.pos = LOG_BYTES - 100;
        assert!(wal.wants_checkpoint(1000));
        wal.checkpointed();
        assert!(!wal.wants_checkpoint(1000));
        // An entry due and never written (its writer died between redb's commit and the
        // append): the next write commits durably.
        wal.entry_due();
        assert!(wal.wants_checkpoint(1000));
        wal.append(1, b"entry").unwrap();
        assert!(!wal.wants_checkpoint(1000));
    }
}
