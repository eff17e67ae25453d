//! The verbs by name, JSON in and JSON out (proto `api`): what every transport hands a host,
//! the NATS API (`ordo.api.<verb>`), a state directory's Unix socket and a call from the same
//! process alike. Every reply is an `ApiReply`: `{"ok": ...}` or `{"error": ...}`.

use ordo_proto::Millis;
use ordo_proto::api::{self, ApiError, ApiReply, ErrorKind};
use serde::Serialize;

use super::{Executor, Host};

/// The verbs, parsed once from a request's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Submit,
    Status,
    Jobs,
    Cancel,
    Retry,
    Workers,
    Report,
    Prune,
    Output,
    Approve,
    Reject,
}

impl Verb {
    pub fn parse(name: &str) -> Option<Verb> {
        Some(match name {
            api::SUBMIT => Verb::Submit,
            api::STATUS => Verb::Status,
            api::JOBS => Verb::Jobs,
            api::CANCEL => Verb::Cancel,
            api::RETRY => Verb::Retry,
            api::WORKERS => Verb::Workers,
            api::REPORT => Verb::Report,
            api::PRUNE => Verb::Prune,
            api::OUTPUT => Verb::Output,
            api::APPROVE => Verb::Approve,
            api::REJECT => Verb::Reject,
            _ => return None,
        })
    }
}

/// Largest reply a transport carries: a report cuts its output tails to fit.
#[derive(Clone, Copy, Debug)]
pub struct ReplyLimit(pub usize);

/// Answers one request; the reply body is `ApiReply` JSON.
pub async fn handle<E: Executor>(
    host: &mut Host<E>,
    now: Millis,
    name: &str,
    body: &[u8],
    limit: ReplyLimit,
) -> Vec<u8> {
    let verb = Verb::parse(name);
    // What waits for a commit is committed before a read (a result may wait a few
    // milliseconds to share one): a task the engine shows ended has its attempt's record
    // (worker, exit code, output) beside it.
    if matches!(verb, Some(Verb::Status | Verb::Report | Verb::Output))
        && let Err(e) = host.turn(now, true).await
    {
        let e = ApiError::new(ErrorKind::Internal, e.to_string());
        return serde_json::to_vec(&ApiReply::<()>::Error(e)).unwrap_or_default();
    }
    let result = match verb {
        Some(Verb::Submit) => match parse(body) {
            Ok(req) => host.submit(now, req).await.map(to_json),
            Err(e) => Err(e),
        },
        Some(Verb::Status) => parse(body).and_then(|r| host.status(&r)).map(to_json),
        Some(Verb::Jobs) => {
            let req = if body.is_empty() {
                Ok(api::JobsRequest::default())
            } else {
                parse(body)
            };
            req.and_then(|r| host.jobs(&r)).map(to_json)
        }
        Some(Verb::Cancel) => parse::<api::JobRef>(body)
            .and_then(|r| host.cancel(now, r.job))
            .map(to_json),
        Some(Verb::Retry) => parse(body).and_then(|r| host.retry(now, &r)).map(to_json),
        Some(Verb::Workers) => Ok(to_json(host.workers())),
        Some(Verb::Report) => parse(body).and_then(|r| host.report(&r)).and_then(|data| {
            // Larger than one message, it goes through the object store on NATS.
            let job = data.job.summary.id;
            data.to_json_within(limit.0).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Internal,
                    format!(
                        "the report of job {job} is larger than {} bytes even without task \
                         output",
                        limit.0
                    ),
                )
            })
        }),
        Some(Verb::Prune) => match parse(body) {
            Ok(r) => host.prune(now, &r).await.map(to_json),
            Err(e) => Err(e),
        },
        Some(Verb::Output) => parse(body).and_then(|r| host.output(&r)).map(to_json),
        Some(v @ (Verb::Approve | Verb::Reject)) => parse(body)
            .and_then(|r| host.decide(now, &r, v == Verb::Approve))
            .map(to_json),
        None => Err(ApiError::new(
            ErrorKind::Invalid,
            format!("unknown API verb '{name}'"),
        )),
    };
    match result {
        Ok(ok) => {
            let mut body = Vec::with_capacity(ok.len() + 8);
            body.extend_from_slice(br#"{"ok":"#);
            body.extend_from_slice(&ok);
            body.push(b'}');
            body
        }
        Err(e) => serde_json::to_vec(&ApiReply::<()>::Error(e)).unwrap_or_default(),
    }
}

fn to_json<T: Serialize>(v: T) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_else(|_| b"null".to_vec())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorKind::Invalid, format!("bad request: {e}")))
}
