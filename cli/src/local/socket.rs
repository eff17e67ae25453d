//! A state directory served: the process that holds `DIR` (its redb file is locked by it)
//! listens on `DIR/ordo.sock` (mode 0600: only its owner may talk to it), so `ordo status`,
//! `watch`, `logs`, `report`, `cancel`, `retry`, `submit`, `ui` and `mcp` started meanwhile
//! reach the jobs it runs rather than finding the directory in use. One request per line,
//! `VERB JSON`, answered by one line of `ApiReply` JSON (the NATS API's bodies). A socket
//! left by a process that died is removed by the next holder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::Node;

/// The socket's name in a state directory.
pub const SOCKET_FILE: &str = "ordo.sock";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_FILE)
}

/// Serves `node` on `DIR/ordo.sock` until the returned guard is dropped (which removes it).
/// The caller holds the directory's store: a socket already there is stale.
pub fn serve(dir: &Path, node: Node) -> std::io::Result<Served> {
    let path = path(dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let answering = Arc::new(Answering::default());
    let counted = answering.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, node.clone(), counted.clone()));
        }
    });
    Ok(Served {
        path,
        task,
        answering,
    })
}

/// How long the requests being answered on the socket may take once its process stops
/// serving it (`Served::close`): the requests are short calls, so this bounds a stuck one.
pub const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The socket while it is served; dropped, it is closed and removed (`close` first lets the
/// requests being answered have their answers).
pub struct Served {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    answering: Arc<Answering>,
}

impl Served {
    /// Stops taking connections and waits (up to `limit`) until every request read is
    /// answered: a change that ended the job this process runs, and so its serving, still
    /// gets its answer before the process exits.
    pub async fn close(self, limit: std::time::Duration) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
        let answering = self.answering.clone();
        let _ = tokio::time::timeout(limit, answering.idle()).await;
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Requests read and not yet answered, over every connection.
#[derive(Default)]
struct Answering {
    count: AtomicUsize,
    done: tokio::sync::Notify,
}

impl Answering {
    /// Counts a request until the guard is dropped.
    fn begin(&self) -> Answer<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Answer(self)
    }

    /// Resolves once no request is being answered.
    async fn idle(&self) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }
}

/// A request being answered (`Answering::begin`).
struct Answer<'a>(&'a Answering);

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

/// Answers one connection's requests, one line each, until it closes.
async fn connection(stream: UnixStream, node: Node, answering: Arc<Answering>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _answer = answering.begin();
        let (verb, body) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let Ok(mut reply) = node.call(verb, body.as_bytes().to_vec()).await else {
            return;
        };
        reply.push(b'\n');
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// What a process that ran its own job to its end says while it still serves `others` jobs
/// that other processes submitted to `dir` (it serves them to their end before it exits).
pub fn waiting_note(others: usize, dir: &Path) -> String {
    format!(
        "ordo: waiting for {others} job{} other processes submitted to {} (Ctrl-C cancels them)",
        if others == 1 { "" } else { "s" },
        dir.display()
    )
}

/// Whether a failed request means nobody serves the directory any more and the request was
/// not taken: the socket is gone or refuses connections, or the connection was reset (a Unix
/// stream is reset only when its server closed it with the request unread, or closed its
/// listener before accepting it: the serving process was stopping).
pub fn gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        NotFound | ConnectionRefused | ConnectionReset | BrokenPipe
    )
}

/// Who holds a state directory, once `hold` has looked.
pub enum Holder {
    /// Another process serves it.
    Served(Client),
    /// Nobody did: this process holds it now (its redb file is locked by this store).
    Here(ordo_coordinator::store::Store),
}

/// Why a state directory could not be held or reached.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// Held by a process that does not answer on the socket, for longer than the wait.
    #[error(
        "{} is held by another ordo process that does not answer on {} (waited {}s)",
        .dir.display(), path(.dir).display(), .waited.as_secs()
    )]
    Busy {
        dir: PathBuf,
        waited: std::time::Duration,
    },
    #[error("cannot use the state directory {}: {source}", .dir.display())]
    Store {
        dir: PathBuf,
        source: ordo_coordinator::store::Error,
    },
}

/// Reaches the process serving `dir`, or holds `dir` here when nobody does. A directory held
/// by a process that does not serve it (a one-shot reader, a runner starting up) is waited for
/// up to `wait`.
pub async fn hold(dir: &Path, wait: std::time::Duration) -> Result<Holder, HoldError> {
    use ordo_coordinator::store::{Error, Store};
    let started = std::time::Instant::now();
    loop {
        if let Some(client) = Client::connect(dir).await {
            return Ok(Holder::Served(client));
        }
        match tokio::task::block_in_place(|| Store::open(dir)) {
            Ok(store) => return Ok(Holder::Here(store)),
            Err(Error::InUse(_)) if started.elapsed() < wait => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(Error::InUse(_)) => {
                return Err(HoldError::Busy {
                    dir: dir.to_path_buf(),
                    waited: wait,
                });
            }
            Err(source) => {
                return Err(HoldError::Store {
                    dir: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// The client of a served state directory.
#[derive(Clone, Debug)]
pub struct Client {
    path: PathBuf,
}

impl Client {
    /// Connects to the process serving `dir`, if one does (`None`: nobody answers; a socket
    /// file left by a dead process is left for the next holder to remove).
    pub async fn connect(dir: &Path) -> Option<Client> {
        let path = path(dir);
        UnixStream::connect(&path).await.ok()?;
        Some(Client { path })
    }

    /// One request: `ApiReply` JSON back.
    pub async fn call(&self, verb: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
        let stream = UnixStream::connect(&self.path).await?;
        let (read, mut write) = stream.into_split();
        let mut line = Vec::with_capacity(verb.len() + body.len() + 2);
        line.extend_from_slice(verb.as_bytes());
        line.push(b' ');
        line.extend_from_slice(body);
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut reply = Vec::new();
        BufReader::new(read).read_until(b'\n', &mut reply).await?;
        if reply.pop() != Some(b'\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the serving process closed the connection without answering (did it stop?)",
            ));
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose connection the stopping server never accepted reads as not taken, so
    /// the client comes to the directory again rather than failing (the kernel's own error:
    /// the listener is closed with the connection still waiting in it).
    #[tokio::test]
    async fn a_connection_the_server_never_accepted_counts_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(path(dir.path())).unwrap();
        let client = Client::connect(dir.path()).await.expect("served");
        let mut call = Box::pin(client.call("status", b"{}"));
        // One poll connects and writes the request (a Unix connection is queued at once) and
        // waits for the answer; then the listener goes with the connection unaccepted.
        assert!(futures::poll!(&mut call).is_pending());
        drop(listener);
        let err = call.await.expect_err("nobody answered");
        assert!(gone(&err), "{err:?} ({:?})", err.kind());
    }

    /// Closing waits for the requests being answered, and only for them: `idle` resolves
    /// once the last one is answered, at once when there is none.
    #[tokio::test]
    async fn closing_waits_for_the_answers_being_written() {
        let answering = Answering::default();
        assert!(futures::poll!(Box::pin(answering.idle())).is_ready());
        let first = answering.begin();
        let second = answering.begin();
        let mut idle = Box::pin(answering.idle());
        assert!(futures::poll!(&mut idle).is_pending());
        drop(first);
        assert!(futures::poll!(&mut idle).is_pending(), "one still answered");
        drop(second);
        assert!(futures::poll!(&mut idle).is_ready());
    }
}
