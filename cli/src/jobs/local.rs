//! The job client of a local state directory. When another process holds the directory (an
//! `ordo run --state`, `ordo ui`, `ordo mcp` running), every request goes to it through the
//! directory's socket; when nobody does, this process holds it: it opens the store and runs a
//! local host (`crate::local::Node`), serving the socket itself while it runs jobs. Either way
//! a request is a verb by name with a JSON body, answered by the host's one implementation
//! of it, as on a cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ordo_coordinator::host::Recover;
use ordo_coordinator::store::Store;
use ordo_proto::names;

use super::{Error, Open, Result};
use crate::args::{RunArgs, default_workers};
pub use crate::local::socket::path as socket_path;
use crate::local::socket::{self, Client, HoldError, Holder, Served};
use crate::local::{Node, NodeOptions};

/// A stopping server waits this long for its jobs to end.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long a directory held by a process that does not serve it (a one-shot reader, or a
/// runner starting up) is waited for.
pub const HELD_WAIT: Duration = Duration::from_secs(10);

pub struct Local {
    dir: PathBuf,
    /// Replaced when the process serving the directory stops: this one comes to it again.
    link: Arc<tokio::sync::RwLock<Link>>,
    run: RunArgs,
    open: Open,
    agent_command: Option<Vec<String>>,
}

enum Link {
    /// This process holds the directory and runs its jobs (serving the socket while `served`).
    Own { node: Node, served: Option<Served> },
    /// Another process holds it.
    Socket(Client),
}

impl Local {
    /// Opens the state directory as `open` says: through the socket of the process holding
    /// it, else in this process.
    pub async fn open(dir: &Path, run: &RunArgs, open: Open) -> Result<Local> {
        let agent_command = run.agent_argv().map_err(Error::Invalid)?;
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let link = Local::link(&dir, run, open, false).await?;
        Ok(Local {
            dir,
            link: Arc::new(tokio::sync::RwLock::new(link)),
            run: run.clone(),
            open,
            agent_command,
        })
    }

    /// Comes to the directory as `open` says; `again` when the process that served it is gone
    /// (its unfinished jobs are orphans then, taken up here unless this is a one-shot read).
    async fn link(dir: &Path, run: &RunArgs, open: Open, again: bool) -> Result<Link> {
        if open == Open::Existing
            && !dir.join(names::STATE_FILE).is_file()
            && !socket::path(dir).exists()
        {
            return Err(Error::Invalid(format!(
                "{} holds no ordo state (no {})",
                dir.display(),
                names::STATE_FILE
            )));
        }
        match socket::hold(dir, HELD_WAIT).await {
            Ok(Holder::Served(client)) => Ok(Link::Socket(client)),
            Ok(Holder::Here(store)) => Local::own(dir, store, run, open, again).await,
            // Like a coordinator that does not answer: not a failed job.
            Err(e @ HoldError::Busy { .. }) => Err(Error::Connect {
                message: e.to_string(),
                code: crate::args::exit::UNREACHABLE,
            }),
            Err(e) => Err(Error::State(e.to_string())),
        }
    }

    /// This process holds the directory: a local host runs here, and serves the socket
    /// unless this is a one-shot read.
    async fn own(dir: &Path, store: Store, run: &RunArgs, open: Open, again: bool) -> Result<Link> {
        let opts = NodeOptions {
            slots: run.workers.unwrap_or_else(default_workers),
            fixed: run.workers.is_some(),
            recover: match open {
                Open::Serve => Recover::All,
                Open::Create if again => Recover::All,
                Open::Existing | Open::Create => Recover::None,
            },
            telemetry: None,
        };
        let node = Node::start(Arc::new(store), true, opts)
            .await
            .map_err(|e| Error::State(format!("state directory {}: {e}", dir.display())))?;
        let served = match open {
            Open::Existing => None,
            Open::Create | Open::Serve => Some(socket::serve(dir, node.clone()).map_err(|e| {
                Error::State(format!(
                    "cannot serve the state directory on {}: {e}",
                    socket::path(dir).display()
                ))
            })?),
        };
        Ok(Link::Own { node, served })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node this process runs, when it holds the directory.
    pub async fn node(&self) -> Option<Node> {
        match &*self.link.read().await {
            Link::Own { node, .. } => Some(node.clone()),
            Link::Socket(_) => None,
        }
    }

    /// Sends a request to whoever holds the directory. When the process that served it has
    /// gone (an `ordo run` ended under a dashboard), this process takes the directory over and
    /// the request is sent again here: nothing was done with it over there.
    pub async fn send(&self, verb: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        // A server that goes while a new one takes the directory over can refuse once more.
        for _ in 0..3 {
            let client = match &*self.link.read().await {
                Link::Own { node, .. } => {
                    return node
                        .call(verb, body)
                        .await
                        .map_err(|e| Error::State(e.to_string()));
                }
                Link::Socket(client) => client.clone(),
            };
            match client.call(verb, &body).await {
                Ok(reply) => return Ok(reply),
                Err(e) if socket::gone(&e) => self.relink().await?,
                // The server stopped after reading the request: a read is asked again of
                // whoever holds the directory now (a change is not: it may have been made).
                Err(e)
                    if e.kind() == std::io::ErrorKind::UnexpectedEof
                        && ordo_proto::api::reads_only(verb) =>
                {
                    self.relink().await?
                }
                Err(e) => return Err(self.unanswered(e)),
            }
        }
        Err(self.unanswered(std::io::Error::other(
            "the directory changed hands three times during one request",
        )))
    }

    /// Comes to the directory again after the process serving it went. In a task of its own:
    /// a caller that stops waiting (a dashboard request whose browser went away) must not drop
    /// a host half taken over, with its socket bound and its store locked.
    async fn relink(&self) -> Result<()> {
        let (slot, dir, run, open) = (
            self.link.clone(),
            self.dir.clone(),
            self.run.clone(),
            self.open,
        );
        tokio::spawn(async move {
            let mut link = slot.write().await;
            if matches!(&*link, Link::Socket(_)) {
                *link = Local::link(&dir, &run, open, true).await?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::State(format!("taking {} over: {e}", self.dir.display())))?
    }

    fn unanswered(&self, e: std::io::Error) -> Error {
        Error::State(format!(
            "the process serving {} did not answer: {e}",
            self.dir.display()
        ))
    }

    /// The `--agent-command` this process runs agents with, for the specs it submits.
    pub fn agent_command(&self) -> Option<&[String]> {
        self.agent_command.as_deref()
    }

    /// Waits for every job this process runs to end.
    pub async fn wait_idle(&self) {
        if let Some(node) = self.node().await {
            node.ended(None).await;
        }
    }

    /// Stops serving the directory, once the requests being answered have their answers (a
    /// change made through the socket, an approval, is not told "did not answer"), then
    /// cancels the jobs this process runs and waits (a bounded time) for them to end.
    pub async fn stop(&self) {
        let served = match &mut *self.link.write().await {
            Link::Own { served, .. } => served.take(),
            Link::Socket(_) => None,
        };
        if let Some(served) = served {
            served.close(socket::ANSWER_WAIT).await;
        }
        if let Some(node) = self.node().await {
            let _ = tokio::time::timeout(STOP_WAIT, node.stop()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use ordo_proto::api::{self, ApiReply};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;

    use super::*;

    /// Serves `dir` like a process that stops while answering: it reads one request, then
    /// goes (its socket removed) before it closes that connection unanswered. Returns the
    /// request it read.
    fn stops_after_reading(dir: &Path) -> tokio::task::JoinHandle<String> {
        let path = socket::path(dir);
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).await.unwrap();
                // `Client::connect` probes with a connection that sends nothing.
                if !line.is_empty() {
                    drop(listener);
                    std::fs::remove_file(&path).unwrap();
                    return line;
                }
            }
        })
    }

    /// A process that stops (`ordo ui`, `ordo mcp` on Ctrl-C) stops serving the directory
    /// before its jobs stop: a client connected before is told nobody serves it any more
    /// (`socket::gone`: it may take the directory over), not "did not answer" by a process
    /// whose jobs are going away.
    #[tokio::test(flavor = "multi_thread")]
    async fn stopping_closes_the_socket_before_the_jobs_stop() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::open(dir.path(), &RunArgs::default(), Open::Serve)
            .await
            .unwrap();
        let client = Client::connect(dir.path()).await.expect("served");
        assert!(client.call(api::JOBS, b"{}").await.is_ok());
        local.stop().await;
        assert!(!socket::path(dir.path()).exists());
        let err = client.call(api::JOBS, b"{}").await.unwrap_err();
        assert!(socket::gone(&err), "{err}");
    }

    /// A read whose server stopped after reading it is asked again of whoever holds the
    /// directory next (here this process, which takes it over); a change is not asked again
    /// (it may have been made), its caller is told.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_read_is_asked_again_when_its_server_stops_after_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let server = stops_after_reading(dir.path());
        let local = Local::open(dir.path(), &RunArgs::default(), Open::Create)
            .await
            .unwrap();
        assert!(local.node().await.is_none(), "served by the other process");
        let reply = local.send(api::JOBS, b"{}".to_vec()).await.unwrap();
        assert_eq!(server.await.unwrap(), "jobs {}\n");
        assert!(local.node().await.is_some(), "taken over");
        let jobs: ApiReply<Vec<serde_json::Value>> = serde_json::from_slice(&reply).unwrap();
        assert!(matches!(jobs, ApiReply::Ok(j) if j.is_empty()));

        let dir = tempfile::tempdir().unwrap();
        let server = stops_after_reading(dir.path());
        let local = Local::open(dir.path(), &RunArgs::default(), Open::Create)
            .await
            .unwrap();
        let cancel = br#"{"job":"0190e5d1-3b6a-7000-8000-000000000000"}"#.to_vec();
        let err = local.send(api::CANCEL, cancel).await.unwrap_err();
        assert!(server.await.unwrap().starts_with("cancel "));
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert!(local.node().await.is_none(), "not taken over for a change");
    }
}
