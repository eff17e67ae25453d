//! `ordo run --update-source`: TaskMaster statuses written back into the `tasks.json` the job
//! was read from while it runs. A `Progress` decorator: it sees the same committed changes
//! the progress display does, passes them on, and turns task starts and ends into status
//! edits for one writer thread, which applies them to the file (`ordo_formats::write_back`,
//! which replaces it atomically: a temporary file in the same directory, fsync, rename). One thread writes,
//! so updates from tasks finishing together are applied in order and none is lost; edits
//! queued meanwhile are written together. The run loop never waits on the disk, except for the
//! last write when the job ends.
//!
//! Statuses (TaskMaster's own vocabulary): a task that starts is `in-progress` (and so is the
//! task of an expanded subtask, when it was `pending`); one that succeeds is `done` (with its
//! subtasks, as `task-master set-status --status=done` does); one that fails, times out or is
//! cancelled goes back to the status it had when the job was read, as nobody is working on it
//! any more. Tasks that never start are left alone.
//!
//! A file that cannot be read, parsed or written is a warning naming it; the edits stay queued
//! for the next write and the job goes on. Whatever is still unwritten at the end is listed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ordo_coordinator::store::{Change, JobRecord, TaskState};
use ordo_proto::JobSpec;

use crate::progress::Progress;
use crate::run::RunReport;
use ordo_formats::write_back::{self, Edit, Sources, TaskRef};

const IN_PROGRESS: &str = "in-progress";
const DONE: &str = "done";

/// The decorator: wraps what a run shows.
pub struct UpdateSource {
    inner: Box<dyn Progress>,
    sources: Sources,
    /// By task index: the TaskMaster task and the status it had when the job was read.
    tasks: Vec<Option<(TaskRef, String)>>,
    writer: Option<Writer>,
}

impl UpdateSource {
    /// Writes back into `file`, where `sources` (from `Loaded::sources`) says each task is.
    pub fn new(inner: Box<dyn Progress>, file: PathBuf, sources: Sources) -> Self {
        // Through a symbolic link to the file itself, which the rename then replaces.
        let file = std::fs::canonicalize(&file).unwrap_or(file);
        UpdateSource {
            inner,
            sources,
            tasks: Vec::new(),
            writer: Some(Writer::start(file)),
        }
    }

    fn send(&self, edit: Edit) {
        if let Some(w) = &self.writer {
            let _ = w.tx.send(edit);
        }
    }
}

impl Progress for UpdateSource {
    fn start(&mut self, job: &JobRecord, spec: &JobSpec, resumed: bool) {
        self.tasks = spec
            .tasks
            .iter()
            .map(|t| {
                let at = self.sources.get(&t.name)?.clone();
                let was = t.labels.get("status").map_or("pending", String::as_str);
                Some((at, was.to_string()))
            })
            .collect();
        self.inner.start(job, spec, resumed);
    }

    fn changes(&mut self, changes: &[Change], spec: &JobSpec) {
        for c in changes {
            let Change::Task { index, state, .. } = c else {
                continue;
            };
            let Some(Some((at, was))) = self.tasks.get(index.get()) else {
                continue;
            };
            let edit = |status: &str| Edit {
                at: at.clone(),
                status: status.to_string(),
                only_from: Vec::new(),
                subtasks: false,
            };
            match state {
                TaskState::Running { .. } => {
                    self.send(edit(IN_PROGRESS));
                    if let Some(parent) = at.parent() {
                        self.send(Edit {
                            at: parent,
                            status: IN_PROGRESS.into(),
                            only_from: vec!["pending".into(), String::new()],
                            subtasks: false,
                        });
                    }
                }
                TaskState::Succeeded { .. } => self.send(Edit {
                    subtasks: true,
                    ..edit(DONE)
                }),
                TaskState::Failed { .. }
                | TaskState::TimedOut { .. }
                | TaskState::Cancelled { .. } => self.send(Edit {
                    // Only if this run moved it.
                    only_from: vec![IN_PROGRESS.into()],
                    ..edit(was)
                }),
                _ => {}
            }
        }
        self.inner.changes(changes, spec);
    }

    fn finish(&mut self, report: &RunReport) {
        if let Some(w) = self.writer.take() {
            w.finish();
        }
        self.inner.finish(report);
    }
}

impl Drop for UpdateSource {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.finish();
        }
    }
}

/// The one thread that writes the file.
struct Writer {
    tx: mpsc::Sender<Edit>,
    thread: JoinHandle<()>,
}

impl Writer {
    fn start(file: PathBuf) -> Writer {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || write_loop(&file, rx));
        Writer { tx, thread }
    }

    /// Writes what is queued and waits for it.
    fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn write_loop(file: &Path, rx: mpsc::Receiver<Edit>) {
    let mut pending: Vec<Edit> = Vec::new();
    let mut last_error: Option<String> = None;
    let mut open = true;
    while open {
        // Block for the next edit, then take every one already queued.
        match rx.recv() {
            Ok(e) => pending.push(e),
            Err(_) => open = false,
        }
        loop {
            match rx.try_recv() {
                Ok(e) => pending.push(e),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if pending.is_empty() {
            continue;
        }
        match write_back::write_file(file, &pending) {
            Ok(warnings) => {
                for w in warnings {
                    warn(file, &w);
                }
                pending.clear();
                last_error = None;
            }
            Err(e) => {
                // Said once while it lasts; the edits are tried again with the next ones.
                if last_error.as_deref() != Some(e.as_str()) {
                    warn(file, &format!("{e}; the job goes on"));
                }
                last_error = Some(e);
            }
        }
    }
    if !pending.is_empty() {
        let mut last: HashMap<String, &str> = HashMap::new();
        for e in &pending {
            last.insert(e.at.id(), &e.status);
        }
        let mut list: Vec<String> = last.iter().map(|(id, s)| format!("{id} → {s}")).collect();
        list.sort();
        warn(file, &format!("statuses not written: {}", list.join(", ")));
    }
}

fn warn(file: &Path, message: &str) {
    // Straight to stderr, one line, whatever the progress display does.
    let _ = writeln!(
        std::io::stderr(),
        "warning: --update-source: {}: {message}",
        file.display()
    );
}
