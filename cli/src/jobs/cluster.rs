//! The job client of a cluster: JSON requests on `ordo.api.<verb>` to whichever coordinator
//! answers (proto `api`), and task output read from the `ORDO_LOGS` stream. One connection,
//! made at the first request (so input errors are found before NATS is reached, and a
//! long-running face retries the connection at its next request). A request or reply larger
//! than one NATS message goes through the object store (`ordo_plumbing::blobs`). With `--ha`
//! coordinators, a request nobody answers (a takeover under way) is sent again for up to the
//! lease's TTL plus a grace.

use std::time::Duration;

use async_nats::jetstream;
use ordo_plumbing::blobs;
use ordo_plumbing::connect::{NatsArgs, Role};
use ordo_proto::api::{
    self, ApiReply, JobRef, JobStatus, JobSummary, JobsRequest, PruneReply, PruneRequest,
    ReportData, ReportRequest, RetryRequest, StatusRequest, SubmitReply, SubmitRequest, WorkerInfo,
};
use ordo_proto::{JobId, TaskIndex, TaskPhase, names};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use super::{Error, Output, Result, redact};
use crate::args::exit;

/// Connecting to NATS fails after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An API request without a reply after this long means the coordinator is unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// ... plus this long per MiB of a request sent through the object store (a large submission
/// is validated and stored before the reply).
const REQUEST_TIMEOUT_PER_MIB: Duration = Duration::from_secs(1);
/// A report gathers every record of the job: a large one takes longer than other requests.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// With `--ha` coordinators, a request nobody answers waits for a standby to take over: it
/// is sent again for up to the lease's TTL plus this long (takeover takes about the TTL plus a
/// second).
const TAKEOVER_GRACE: Duration = Duration::from_secs(5);

/// A cluster's client: its connection options, the connection once made, and the URL (for
/// messages, credentials left out).
pub struct Cluster {
    nats: NatsArgs,
    client: OnceCell<async_nats::Client>,
    /// The object store bucket of large bodies, opened at the first large body.
    blobs: OnceCell<async_nats::jetstream::object_store::ObjectStore>,
    /// How long a request nobody answers is sent again, once the coordinators are known to
    /// run with `--ha` (their lease's bucket exists; looked up again until found).
    takeover: OnceCell<Duration>,
    /// The takeover wait was said on stderr (once per client).
    told: std::sync::atomic::AtomicBool,
    url: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The body of `workers`: `{}`.
#[derive(Serialize)]
struct Empty {}

impl Cluster {
    pub fn new(nats: &NatsArgs) -> Cluster {
        Cluster {
            nats: nats.clone(),
            client: OnceCell::new(),
            blobs: OnceCell::new(),
            takeover: OnceCell::new(),
            told: Default::default(),
            url: redact(nats.url()),
        }
    }

    /// The connection, made on first use.
    async fn client(&self) -> Result<&async_nats::Client> {
        self.client
            .get_or_try_init(|| async {
                let nats = &self.nats;
                let connecting = nats.connect(Role::Client, "ordo", CONNECT_TIMEOUT);
                // The outer timeout covers what `connection_timeout` may not (name resolution,
                // TLS).
                match tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(e)) => Err(Error::from_connect(e, nats.url())),
                    Err(_) => Err(Error::Connect {
                        message: format!(
                            "cannot reach NATS at {}: timed out after {}s",
                            self.url,
                            (CONNECT_TIMEOUT * 2).as_secs()
                        ),
                        code: exit::UNREACHABLE,
                    }),
                }
            })
            .await
    }

    /// The URL, credentials left out.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn submit(&self, req: &SubmitRequest) -> Result<JobId> {
        let what = if req.source.is_empty() || req.source == req.spec.name {
            format!("the spec of job '{}'", req.spec.name)
        } else {
            format!("the spec {} (job '{}')", req.source, req.spec.name)
        };
        let body = encode(api::SUBMIT, req)?;
        let reply: SubmitReply = self
            .exchange(api::SUBMIT, body, &what, REQUEST_TIMEOUT)
            .await?;
        Ok(reply.job)
    }

    pub async fn status(&self, job: JobId) -> Result<JobStatus> {
        self.call(api::STATUS, &StatusRequest::whole(job))
            .await
            .map_err(|e| e.for_job(job))
    }

    /// Page `page` (from 1) of a job's tasks in `states` (and named `task`), with the summary.
    pub async fn status_page(
        &self,
        job: JobId,
        page: usize,
        page_size: usize,
        states: &[TaskPhase],
        task: Option<&str>,
    ) -> Result<JobStatus> {
        let mut req = StatusRequest::page(job, page, page_size, states.to_vec());
        req.task = task.map(str::to_string);
        self.call(api::STATUS, &req)
            .await
            .map_err(|e| e.for_job(job))
    }

    pub async fn list(&self, req: &JobsRequest) -> Result<Vec<JobSummary>> {
        self.call(api::JOBS, req).await
    }

    pub async fn cancel(&self, job: JobId) -> Result<JobSummary> {
        self.call(api::CANCEL, &JobRef { job })
            .await
            .map_err(|e| e.for_job(job))
    }

    pub async fn retry(&self, req: &RetryRequest) -> Result<JobSummary> {
        self.call(api::RETRY, req)
            .await
            .map_err(|e| e.for_job(req.job))
    }

    pub async fn report(&self, job: Option<JobId>) -> Result<ReportData> {
        let body = encode(api::REPORT, &ReportRequest { job })?;
        let reply = self
            .exchange(api::REPORT, body, "a report request", REPORT_TIMEOUT)
            .await;
        match job {
            Some(j) => reply.map_err(|e| e.for_job(j)),
            None => reply,
        }
    }

    pub async fn prune(&self, older_than_ms: u64) -> Result<usize> {
        let reply: PruneReply = self
            .call(
                api::PRUNE,
                &PruneRequest {
                    older_than_ms,
                    job: None,
                },
            )
            .await?;
        Ok(reply.removed)
    }

    /// Asks the workers (through the coordinator) to remove what `job`'s attempts kept.
    pub async fn prune_job(&self, job: JobId) -> Result<()> {
        let req = PruneRequest {
            older_than_ms: 0,
            job: Some(job),
        };
        let _: PruneReply = self
            .call(api::PRUNE, &req)
            .await
            .map_err(|e| e.for_job(job))?;
        Ok(())
    }

    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.call(api::WORKERS, &Empty {}).await
    }

    /// One API request: JSON body to `ordo.api.<verb>`, `ApiReply<Rep>` back within
    /// `REQUEST_TIMEOUT`.
    async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        verb: &str,
        req: &Req,
    ) -> Result<Rep> {
        let body = encode(verb, req)?;
        self.exchange(verb, body, &format!("the {verb} request"), REQUEST_TIMEOUT)
            .await
    }

    /// Sends `body` to `ordo.api.<verb>` and decodes the reply. A body larger than one NATS
    /// message goes through the object store (`what` describes it in the coordinator's
    /// errors; it is deleted if no reply comes), and so may the reply.
    async fn exchange<Rep: DeserializeOwned>(
        &self,
        verb: &str,
        body: Vec<u8>,
        what: &str,
        timeout: Duration,
    ) -> Result<Rep> {
        let subject = names::api_subject(verb);
        let client = self.client().await?;
        let inline = blobs::inline_limit(client.server_info().max_payload);
        let mut timeout = timeout;
        let mut object = None;
        if body.len() > inline {
            let name = blobs::put(self.blobs().await?, &body, what)
                .await
                .map_err(|e| self.blob_error(&e))?;
            timeout += REQUEST_TIMEOUT_PER_MIB * (body.len() / (1 << 20)) as u32;
            object = Some(name);
        }
        let request = || {
            let r = match &object {
                Some(name) => async_nats::Request::new().headers(blobs::headers(name)),
                None => async_nats::Request::new().payload(body.clone().into()),
            };
            // The client's own timeout is lifted: the outer one decides.
            r.timeout(Some(timeout + Duration::from_secs(1)))
        };
        let started = std::time::Instant::now();
        let sent = loop {
            let sent =
                tokio::time::timeout(timeout, client.send_request(subject.clone(), request()))
                    .await;
            // Nobody answered at all (nothing was done): with `--ha`, a standby is taking over.
            if let Ok(Err(e)) = &sent
                && e.kind() == async_nats::RequestErrorKind::NoResponders
                && let Some(wait) = self.takeover_wait(client).await
                && started.elapsed() < wait
            {
                if !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "ordo: no coordinator answers on {}; waiting up to {}s for a standby to take over",
                        self.url,
                        wait.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            break sent;
        };
        let failed = |e: Error| async {
            if let Some(name) = &object
                && let Ok(store) = self.blobs().await
            {
                blobs::discard(store, name).await;
            }
            Err(e)
        };
        let msg = match sent {
            Ok(Ok(msg)) => msg,
            Ok(Err(e)) => {
                return failed(request_error(&self.url, &subject, e.kind(), &e.to_string())).await;
            }
            Err(_) => {
                return failed(Error::Unreachable {
                    url: self.url.clone(),
                    subject: subject.clone(),
                    what: format!("no reply within {}s", timeout.as_secs()),
                })
                .await;
            }
        };
        match blobs::object_of(msg.headers.as_ref()) {
            Some(name) => {
                let store = self.blobs().await?;
                let js = jetstream::new(self.client().await?.clone());
                let body = blobs::take(&js, store, &name, usize::MAX)
                    .await
                    .map_err(|e| self.blob_error(&e))?;
                decode_reply(&subject, &body)
            }
            None => decode_reply(&subject, &msg.payload),
        }
    }

    /// `Some(lease TTL + TAKEOVER_GRACE)` when the lease bucket of `--ha` coordinators exists
    /// (remembered once found; a failed lookup is tried again next time).
    async fn takeover_wait(&self, client: &async_nats::Client) -> Option<Duration> {
        self.takeover
            .get_or_try_init(|| async {
                let js = jetstream::new(client.clone());
                let lease = js
                    .get_key_value(names::LEASE_BUCKET)
                    .await
                    .map_err(|_| ())?;
                let ttl = lease.status().await.map_err(|_| ())?.max_age();
                Ok::<_, ()>(ttl + TAKEOVER_GRACE)
            })
            .await
            .ok()
            .copied()
    }

    /// The object store bucket of large bodies.
    async fn blobs(&self) -> Result<&async_nats::jetstream::object_store::ObjectStore> {
        let client = self.client().await?;
        self.blobs
            .get_or_try_init(|| async {
                blobs::bucket(&jetstream::new(client.clone()))
                    .await
                    .map_err(|e| self.blob_error(&e))
            })
            .await
    }

    fn blob_error(&self, e: &blobs::Error) -> Error {
        Error::Stream(format!(
            "a body larger than one NATS message on {}: {e} (is ordo-coordinator running, and \
             may this user use the bucket {}?)",
            self.url,
            names::BLOB_BUCKET
        ))
    }

    /// The error of a failed read of `ORDO_LOGS`.
    pub fn stream_error(&self, what: &str, e: &dyn std::fmt::Display) -> Error {
        Error::Stream(format!(
            "cannot read task output from stream {} on {}: {what}: {e}",
            names::LOG_STREAM,
            self.url
        ))
    }

    /// A reader of the stored task output of `job` (or of one task), from the start.
    pub async fn output_reader(&self, job: JobId, task: Option<TaskIndex>) -> Result<OutputReader> {
        let filter = match task {
            Some(i) => names::log_subject(&job, i),
            None => names::log_subjects(&job),
        };
        let js = jetstream::new(self.client().await?.clone());
        let stream = js
            .get_stream(names::LOG_STREAM)
            .await
            .map_err(|e| self.stream_error("cannot open the stream", &e))?;
        Ok(OutputReader {
            stream,
            filter,
            next: 0,
        })
    }

    /// The output of a job's tasks (or of one) stored in `ORDO_LOGS` so far, without waiting
    /// for more.
    pub async fn output(&self, job: JobId, task: Option<TaskIndex>, keep: usize) -> Result<Output> {
        let mut reader = self.output_reader(job, task).await?;
        let mut out = Output::new();
        while let Some(msg) = reader
            .next()
            .await
            .map_err(|e| self.stream_error("reading failed", &e))?
        {
            let index = msg.subject.as_str().rsplit('.').next();
            let Some(index) = index.and_then(|i| i.parse::<u32>().ok()) else {
                continue;
            };
            let (total, tail) = out.entry(TaskIndex(index)).or_default();
            *total += msg.payload.len() as u64;
            tail.extend_from_slice(&msg.payload);
            if tail.len() > keep {
                tail.drain(..tail.len() - keep);
            }
        }
        Ok(out)
    }
}

/// Stored task output read message by message with direct gets: a client creates no consumer
/// (a push consumer delivers wherever its creator says, so the deployed permissions allow a
/// client none).
pub struct OutputReader {
    stream: jetstream::stream::Stream,
    filter: String,
    /// The stream sequence to read from.
    next: u64,
}

impl OutputReader {
    /// The next stored message, or `None` when there is none yet.
    pub async fn next(
        &mut self,
    ) -> std::result::Result<
        Option<jetstream::message::StreamMessage>,
        jetstream::stream::DirectGetError,
    > {
        use jetstream::stream::DirectGetErrorKind;
        match self
            .stream
            .direct_get_next_for_subject(self.filter.clone(), Some(self.next))
            .await
        {
            Ok(msg) => {
                self.next = msg.sequence + 1;
                Ok(Some(msg))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A request's JSON body.
fn encode<Req: Serialize>(verb: &str, req: &Req) -> Result<Vec<u8>> {
    serde_json::to_vec(req)
        .map_err(|e| Error::Invalid(format!("cannot encode the {verb} request: {e}")))
}

fn request_error(
    url: &str,
    subject: &str,
    kind: async_nats::RequestErrorKind,
    detail: &str,
) -> Error {
    use async_nats::RequestErrorKind as K;
    let unreachable = |what: String| Error::Unreachable {
        url: url.to_string(),
        subject: subject.to_string(),
        what,
    };
    match kind {
        K::NoResponders => unreachable("no responders".into()),
        K::TimedOut => unreachable(format!("no reply within {}s", REQUEST_TIMEOUT.as_secs())),
        K::MaxPayloadExceeded => Error::Invalid(format!(
            "the request on {subject} is larger than the NATS server's max_payload"
        )),
        K::InvalidSubject | K::Other => unreachable(format!("request failed ({detail})")),
    }
}

/// Decodes `{"ok": Rep}` or `{"error": {...}}`.
pub(crate) fn decode_reply<Rep: DeserializeOwned>(subject: &str, payload: &[u8]) -> Result<Rep> {
    match serde_json::from_slice::<ApiReply<Rep>>(payload) {
        Ok(ApiReply::Ok(v)) => Ok(v),
        Ok(ApiReply::Error(e)) => Err(Error::Api(e)),
        Err(e) => {
            // An error of a kind this CLI does not know still has a message worth showing.
            let message = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
            Err(Error::Reply {
                subject: subject.to_string(),
                reason: message.unwrap_or_else(|| e.to_string()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use ordo_proto::JobState;
    use ordo_proto::api::ErrorKind;

    use super::*;
    use crate::manage::tests::{JOB, job, summary};

    #[test]
    fn replies_decode() {
        let s: JobSummary = decode_reply(
            "ordo.api.cancel",
            serde_json::to_string(&ApiReply::Ok(summary(JobState::Cancelled)))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(s, summary(JobState::Cancelled));

        let w: Vec<WorkerInfo> = decode_reply("s", br#"{"ok": []}"#).unwrap();
        assert!(w.is_empty());

        let e = decode_reply::<JobStatus>(
            "ordo.api.status",
            br#"{"error": {"kind": "not_found", "message": "no such job"}}"#,
        )
        .unwrap_err();
        assert!(matches!(&e, Error::Api(a) if a.kind == ErrorKind::NotFound));
        let e = e.for_job(job());
        assert_eq!(e.to_string(), format!("job {JOB} not found (no such job)"));
        assert_eq!(e.exit_code(), exit::INVALID);

        let e = decode_reply::<JobStatus>(
            "s",
            br#"{"error": {"kind": "invalid", "message": "cycle: a -> b -> a"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "cycle: a -> b -> a");
        assert_eq!(e.exit_code(), exit::INVALID);

        let e = decode_reply::<JobStatus>(
            "s",
            br#"{"error": {"kind": "internal", "message": "disk full"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the coordinator failed: disk full");
        assert!(e.is_transient());

        // Unknown error kinds keep their message; garbage is reported, never a panic.
        let e = decode_reply::<JobStatus>(
            "ordo.api.status",
            br#"{"error": {"kind": "busy", "message": "try later"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected reply on ordo.api.status: try later"
        );
        for junk in [&b""[..], b"null", b"{\"ok\": 3}", b"\xff\xfe", b"[]"] {
            let e = decode_reply::<JobStatus>("s", junk).unwrap_err();
            assert!(matches!(e, Error::Reply { .. }), "{junk:?}");
            assert_eq!(e.exit_code(), exit::JOB_FAILED);
        }
        // A state this client does not know is a reply it cannot read, not a panic.
        let e = decode_reply::<JobSummary>(
            "s",
            format!(
                r#"{{"ok": {{"id": "{JOB}", "name": "n", "state": "paused", "created_ms": 0,
                "finished_ms": null, "reason": null, "total": 0, "succeeded": 0, "failed": 0,
                "running": 0}}}}"#
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Reply { .. }), "{e}");
    }

    #[test]
    fn request_errors_map_to_exit_codes() {
        use async_nats::RequestErrorKind as K;
        let e = request_error(
            "nats://127.0.0.1:4222",
            "ordo.api.status",
            K::NoResponders,
            "",
        );
        assert_eq!(
            e.to_string(),
            "cannot reach the coordinator on nats://127.0.0.1:4222: no responders on \
             ordo.api.status (is ordo-coordinator running?)"
        );
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
        assert!(e.is_transient());
        let e = request_error("u", "s", K::TimedOut, "");
        assert!(e.to_string().contains("no reply within 5s on s"), "{e}");
        assert_eq!(e.exit_code(), exit::UNREACHABLE);
        assert_eq!(
            request_error("u", "s", K::Other, "x").exit_code(),
            exit::UNREACHABLE
        );
        assert_eq!(
            request_error("u", "s", K::MaxPayloadExceeded, "").exit_code(),
            exit::INVALID
        );
    }
}
