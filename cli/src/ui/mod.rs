//! `ordo ui`: the web dashboard (docs/design.md, "Dashboard"), a third face of the job client
//! (`jobs`) beside the job commands and the MCP server. This file holds the flags, the HTTP server
//! (axum), its routes and the rules every request passes: the bearer token or session cookie, the
//! loopback `Host` check without a token, `--read-only`, and the CSRF field of every form.
//!
//! # Layout
//! - `pages`: the HTML of every page, rendered on the server from the client's answers.
//! - `graph_svg`: a job's DAG as SVG in the levels layout (critical path, collapsed fan-outs).
//! - `live`: server-sent events: task state changes and a task's log (`/events`), polled
//!   from the client only while the job runs, and the jobs list's rows (`/events/jobs`).
//! - `assets/`: the stylesheet and the small live-update script, embedded in the binary.
//!
//! Security in one place: pages escape every piece of job data (`report::html::esc`); the
//! script only ever sets `textContent` and class names the server chose; a Content Security
//! Policy allows nothing but this origin's own script and stylesheet. Without `--token-file`
//! the server listens on loopback only and answers only requests whose `Host` is a loopback
//! name (so a DNS-rebinding page cannot read it, nor its CSRF token).

mod graph_svg;
mod live;
mod pages;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ordo_formats::prepare::env_mode;
use ordo_formats::{Format, LoadOptions, Overrides, Source, With};
use ordo_proto::api::{DecideRequest, JobsRequest, RetryRequest, SubmitRequest};
use ordo_proto::{JobId, JobState, TaskIndex, TaskPhase};
use serde::Deserialize;

use crate::args::{RunTarget, exit};
use crate::jobs::{self, Jobs, Open};

/// The session cookie set by the login form.
const COOKIE: &str = "ordo_session";
/// Shortest access token accepted: a shorter one could be guessed through the login form.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Failed logins one client may make per `LOGIN_WINDOW`; beyond, the form refuses it (429)
/// without looking at the token until the window has passed.
const MAX_FAILED_LOGINS: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Event streams one client may hold open at once (a browser opens one per tab).
const MAX_STREAMS_PER_CLIENT: u32 = 16;
/// Largest form body: a spec of `names::MAX_SPEC_BYTES`, as `ordo submit` takes, fits even
/// when every byte is percent-encoded.
const MAX_FORM_BYTES: usize = 3 * ordo_proto::names::MAX_SPEC_BYTES + 64 * 1024;
const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Where jobs live: `--state DIR` (jobs submitted here run in this process) or `--nats URL`
    /// for a cluster (the default when neither is given).
    #[command(flatten)]
    pub place: RunTarget,
    /// Address to listen on. Any address but loopback needs --token-file.
    #[arg(
        long,
        value_name = "ADDR",
        env = "ORDO_UI_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// Refuse every action (cancel, retry, re-run, submit); show them disabled.
    #[arg(long, env = "ORDO_UI_READ_ONLY", value_parser = clap::builder::BoolishValueParser::new())]
    pub read_only: bool,
    /// A file holding the access token: requests need `Authorization: Bearer TOKEN` or the
    /// session cookie the login form sets.
    #[arg(long, value_name = "FILE", env = "ORDO_UI_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Link trace ids here, e.g. 'http://jaeger:16686/trace/{trace_id}'.
    #[arg(long, value_name = "TEMPLATE", env = "ORDO_UI_TRACE_URL")]
    pub trace_url: Option<String>,
}

/// The dashboard's settings once checked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub read_only: bool,
    /// Required from every client when set.
    pub token: Option<String>,
    /// Contains `{trace_id}`.
    pub trace_url: Option<String>,
}

/// Checks the flags: the addresses to listen on and the options; a message naming the flag
/// or file otherwise (exit 2).
pub fn check(args: &UiArgs) -> Result<(Vec<SocketAddr>, Options), String> {
    let addrs: Vec<SocketAddr> = match args.listen.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => args
            .listen
            .to_socket_addrs()
            .map_err(|e| format!("--listen {}: not an address (HOST:PORT): {e}", args.listen))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("--listen {}: no address", args.listen));
    }
    let token = match &args.token_file {
        None => None,
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--token-file {}: cannot read it: {e}", f.display()))?;
            let t = text.trim();
            if t.is_empty() {
                return Err(format!("--token-file {}: the file is empty", f.display()));
            }
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "--token-file {}: the token must be one line without spaces",
                    f.display()
                ));
            }
            let n = t.chars().count();
            if n < MIN_TOKEN_CHARS {
                return Err(format!(
                    "--token-file {}: the token has {n} characters; at least {MIN_TOKEN_CHARS} \
                     are needed. Make a good one with: head -c 24 /dev/urandom | base64 > {}",
                    f.display(),
                    f.display()
                ));
            }
            Some(t.to_string())
        }
    };
    if token.is_none()
        && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback())
    {
        return Err(format!(
            "--listen {}: {} is not a loopback address; anyone who can reach it could run and \
             cancel jobs, so serving it needs --token-file FILE (or listen on 127.0.0.1)",
            args.listen,
            a.ip()
        ));
    }
    if let Some(t) = &args.trace_url
        && (!t.contains("{trace_id}") || !(t.starts_with("http://") || t.starts_with("https://")))
    {
        return Err(format!(
            "--trace-url {t}: expected an http(s) URL containing {{trace_id}}, e.g. \
             'http://jaeger:16686/trace/{{trace_id}}'"
        ));
    }
    args.place.run.agent_argv()?;
    Ok((
        addrs,
        Options {
            read_only: args.read_only,
            token,
            trace_url: args.trace_url.clone(),
        },
    ))
}

/// `ordo ui`: serves until SIGINT/SIGTERM; returns the exit code.
pub fn serve(args: UiArgs) -> anyhow::Result<u8> {
    let (addrs, opts) = match check(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ordo ui: {e}");
            return Ok(exit::INVALID);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let target = args.place.target(None);
    let code = runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addrs.as_slice()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("ordo ui: cannot listen on {}: {e}", args.listen);
                return exit::JOB_FAILED;
            }
        };
        let jobs = match Jobs::open(&target, Open::Serve).await {
            Ok(j) => j,
            Err(e) => {
                eprintln!("ordo ui: {e}");
                return e.exit_code();
            }
        };
        let place = match &jobs {
            Jobs::Local(l) => format!("jobs in {} (run here)", l.dir().display()),
            Jobs::Cluster(c) => format!("the cluster at {}", c.url()),
        };
        let bound = listener
            .local_addr()
            .map_or(args.listen.clone(), |a| a.to_string());
        // The URL alone on stdout (scripts and tests read it); words on stderr.
        println!("http://{bound}/");
        eprintln!(
            "ordo ui: serving {place} on http://{bound}/{}{}",
            if opts.token.is_some() {
                " (token required)"
            } else {
                ""
            },
            if opts.read_only { " (read-only)" } else { "" }
        );
        let jobs = Arc::new(jobs);
        let served = run(
            listener,
            jobs.clone(),
            opts,
            ordo_plumbing::signals::interrupted(),
        )
        .await;
        jobs.stop().await;
        match served {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("ordo ui: the server failed: {e}");
                exit::JOB_FAILED
            }
        }
    });
    // The NATS client's background tasks and open event streams do not hold the exit up.
    runtime.shutdown_background();
    Ok(code)
}

/// Serves the dashboard on `listener` until `shutdown` resolves (then open event streams are
/// dropped rather than waited for).
pub async fn run(
    listener: tokio::net::TcpListener,
    jobs: Arc<Jobs>,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app =
        router(Arc::new(Ui::new(jobs, opts))).into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx;
    tokio::select! {
        r = server => r,
        // Event streams keep connections open: after the stop request, give the others a
        // moment, then go.
        () = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

/// What every request shares.
pub(crate) struct Ui {
    pub jobs: Arc<Jobs>,
    pub opts: Options,
    /// The hidden `csrf` field of every form: random per process, only readable by pages of
    /// this origin.
    pub csrf: String,
    /// Login sessions (random ids in the cookie), when a token is required.
    sessions: Mutex<HashSet<String>>,
    /// Failed logins per client: how many, since when.
    failed_logins: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Event streams open per client.
    streams: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Ui {
    fn new(jobs: Arc<Jobs>, opts: Options) -> Ui {
        Ui {
            jobs,
            opts,
            csrf: random_hex(),
            sessions: Mutex::new(HashSet::new()),
            failed_logins: Mutex::new(HashMap::new()),
            streams: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn page_context(&self) -> pages::Context<'_> {
        pages::Context {
            csrf: &self.csrf,
            read_only: self.opts.read_only,
            local: matches!(*self.jobs, Jobs::Local(_)),
            trace_url: self.opts.trace_url.as_deref(),
        }
    }
}

/// 128 random bits as hex.
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Equal strings, compared in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(jobs_page))
        .route(
            "/jobs",
            post(submit).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/tasks/{index}", get(task_page))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/tasks/{index}/retry", post(retry_task))
        .route("/jobs/{id}/tasks/{index}/approve", post(approve))
        .route("/jobs/{id}/tasks/{index}/reject", post(reject))
        .route("/jobs/{id}/rerun", post(rerun))
        .route("/workers", get(workers_page))
        .route("/events", get(live::events))
        .route("/events/jobs", get(live::jobs_events))
        .route("/login", get(login_page).post(login))
        .route("/assets/ui.css", get(css))
        .route("/assets/ui.js", get(js))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(ui.clone(), guard))
        .with_state(ui)
}

/// The rules every request passes before its handler; security headers on every answer.
async fn guard(State(ui): State<Arc<Ui>>, req: Request, next: Next) -> Response {
    let mut resp = match check_request(&ui, &req) {
        Some(refused) => refused,
        None if req.uri().path().starts_with("/events") => {
            match StreamSlot::take(&ui.streams, client(&req)) {
                Some(slot) => slot.hold(next.run(req).await),
                None => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "{MAX_STREAMS_PER_CLIENT} event streams are already open from this \
                         address: close a tab\n"
                    ),
                )
                    .into_response(),
            }
        }
        None => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The address a request came from (unspecified when the server was not given it).
fn client(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// One open event stream of a client, counted while its response body lives.
struct StreamSlot {
    streams: Arc<Mutex<HashMap<IpAddr, u32>>>,
    client: IpAddr,
}

impl StreamSlot {
    fn take(streams: &Arc<Mutex<HashMap<IpAddr, u32>>>, client: IpAddr) -> Option<StreamSlot> {
        let mut open = streams.lock().unwrap();
        let n = open.entry(client).or_default();
        if *n >= MAX_STREAMS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            streams: streams.clone(),
            client,
        })
    }

    /// `resp` with this slot released when its body ends or is dropped.
    fn hold(self, resp: Response) -> Response {
        use futures::StreamExt;
        let (parts, body) = resp.into_parts();
        let body = body.into_data_stream().map(move |chunk| {
            let _held = &self;
            chunk
        });
        Response::from_parts(parts, Body::from_stream(body))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock().unwrap();
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// `next` when it is a path on this site, else `/`: it must start with one `/`, and hold no
/// backslash, whitespace or control character (browsers drop tabs and newlines from URLs, so
/// `/\t/evil.example` would become `//evil.example`, another site).
fn same_site(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control());
    if ok { next } else { "/" }
}

/// `None` when the request may go on; else the answer refusing it.
fn check_request(ui: &Ui, req: &Request) -> Option<Response> {
    let path = req.uri().path();
    let public = path.starts_with("/assets/") || path == "/login" || path == "/favicon.ico";
    match &ui.opts.token {
        None => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !loopback_host(host) {
                return Some(
                    (
                        StatusCode::MISDIRECTED_REQUEST,
                        "this dashboard answers only to a loopback Host (localhost, 127.0.0.1, \
                         [::1]); serve it with --token-file to reach it by another name\n",
                    )
                        .into_response(),
                );
            }
        }
        Some(token) if !public && !authorized(ui, token, req.headers()) => {
            if req.method() == Method::GET && !path.starts_with("/events") {
                let next = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                // A browser goes to the login form; anything else gets the 401 (with the form).
                let browser = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"));
                if browser {
                    return Some(
                        Redirect::to(&format!("/login?next={}", pages::url_encode(&next)))
                            .into_response(),
                    );
                }
                return Some(html(
                    StatusCode::UNAUTHORIZED,
                    pages::login(&ui.page_context(), &next, None),
                ));
            }
            return Some(
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "a token is required: Authorization: Bearer TOKEN, or log in at /login\n",
                )
                    .into_response(),
            );
        }
        Some(_) => {}
    }
    if req.method() == Method::POST && path != "/login" && ui.opts.read_only {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "this dashboard is read-only (--read-only): actions are refused\n",
            )
                .into_response(),
        );
    }
    None
}

fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn authorized(ui: &Ui, token: &str, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim(), token));
    bearer || cookie(headers, COOKIE).is_some_and(|s| ui.sessions.lock().unwrap().contains(&s))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// An error page for a failed request to the job client.
fn failed(ui: &Ui, e: &jobs::Error) -> Response {
    let status = match e {
        jobs::Error::NotFound { .. } => StatusCode::NOT_FOUND,
        jobs::Error::Spec(_) | jobs::Error::Invalid(_) => StatusCode::BAD_REQUEST,
        jobs::Error::Api(a) if a.kind == ordo_proto::api::ErrorKind::NotFound => {
            StatusCode::NOT_FOUND
        }
        jobs::Error::Api(a) if a.kind == ordo_proto::api::ErrorKind::Invalid => {
            StatusCode::BAD_REQUEST
        }
        jobs::Error::Connect { .. } | jobs::Error::Unreachable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_page(ui, status, &e.to_string())
}

fn error_page(ui: &Ui, status: StatusCode, message: &str) -> Response {
    html(status, pages::error(&ui.page_context(), status, message))
}

async fn not_found(State(ui): State<Arc<Ui>>) -> Response {
    error_page(&ui, StatusCode::NOT_FOUND, "no such page")
}

/// The report's shared styles (state colours, marks, the Gantt), then the dashboard's own.
async fn css() -> Response {
    static ALL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{}\n{CSS}", ordo_report::html::SHARED_CSS));
    asset("text/css; charset=utf-8", ALL.as_str())
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A job id in a path: the full id (the pages link with it) or a unique start of one.
async fn job_id(ui: &Ui, text: &str) -> Result<JobId, Response> {
    ui.jobs.resolve(text).await.map_err(|e| match e {
        jobs::Error::Invalid(m) => error_page(ui, StatusCode::NOT_FOUND, &m),
        e => failed(ui, &e),
    })
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub page: Option<usize>,
}

impl ListQuery {
    /// The job client's request for the list's filter (a message naming `state` if bad).
    pub(crate) fn request(&self) -> Result<JobsRequest, String> {
        let state = match self
            .state
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(s) => Some(s.parse::<JobState>().map_err(|e| format!("state: {e}"))?),
        };
        let search = self
            .q
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from);
        Ok(JobsRequest {
            state,
            search,
            limit: None,
        })
    }
}

async fn jobs_page(State(ui): State<Arc<Ui>>, Query(q): Query<ListQuery>) -> Response {
    let req = match q.request() {
        Ok(r) => r,
        Err(e) => return error_page(&ui, StatusCode::BAD_REQUEST, &e),
    };
    match ui.jobs.list(&req).await {
        Ok(list) => html(
            StatusCode::OK,
            pages::jobs(&ui.page_context(), &list, &q, ordo_proto::now_ms()),
        ),
        Err(e) => failed(&ui, &e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobQuery {
    /// Grid page, from 1.
    #[serde(default)]
    pub page: Option<usize>,
    /// Only tasks in this state.
    #[serde(default)]
    pub state: Option<String>,
}

/// A job's report data, the error page when it cannot be read.
async fn report_of(ui: &Ui, job: JobId) -> Result<ordo_proto::api::ReportData, Response> {
    ui.jobs.report(Some(job)).await.map_err(|e| failed(ui, &e))
}

async fn job_page(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    Query(q): Query<JobQuery>,
) -> Result<Response, Response> {
    let job = job_id(&ui, &id).await?;
    // The pools its tasks take, as they stand now (a page of one task carries them).
    let pools = match ui.jobs.status_where(job, 1, 1, &[], None).await {
        Ok(st) => st.pools,
        Err(e) => return Err(failed(&ui, &e)),
    };
    let data = report_of(&ui, job).await?;
    Ok(html(
        StatusCode::OK,
        pages::job(&ui.page_context(), &data, &pools, &q, ordo_proto::now_ms()),
    ))
}

async fn task_page(
    State(ui): State<Arc<Ui>>,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, Response> {
    let job = job_id(&ui, &id).await?;
    let data = report_of(&ui, job).await?;
    let index = match index.parse::<u32>() {
        Ok(i) if (i as usize) < data.job.spec.tasks.len() => TaskIndex(i),
        _ => {
            return Err(error_page(
                &ui,
                StatusCode::NOT_FOUND,
                &format!(
                    "job {job} has no task {} (it has {})",
                    jobs::plain(&index),
                    data.job.spec.tasks.len()
                ),
            ));
        }
    };
    // A task awaiting approval: what the person deciding sees, from its status.
    let waits =
        data.tasks.get(index.get()).map(|t| t.state.state) == Some(TaskPhase::AwaitingApproval);
    let approval = if waits {
        let name = data.job.spec.tasks[index.get()].name.to_string();
        ui.jobs
            .status_where(job, 1, 1, &[], Some(&name))
            .await
            .map_err(|e| failed(&ui, &e))?
            .tasks
            .into_iter()
            .find(|t| t.index == index)
            .and_then(|t| t.approval)
    } else {
        None
    };
    Ok(html(
        StatusCode::OK,
        pages::task(&ui.page_context(), &data, index, approval.as_deref()),
    ))
}

async fn workers_page(State(ui): State<Arc<Ui>>) -> Response {
    match ui.jobs.workers().await {
        Ok(w) => html(StatusCode::OK, pages::workers(&ui.page_context(), &w)),
        Err(e) => failed(&ui, &e),
    }
}

/// The fields of an action's form.
#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

/// The refusal of a form whose `csrf` field is not this server's.
fn csrf_refused(ui: &Ui, given: &str) -> Option<Response> {
    if same(given, &ui.csrf) {
        None
    } else {
        Some((
            StatusCode::FORBIDDEN,
            "refused: the form's csrf field is missing or wrong (reload the page and try again)\n",
        )
            .into_response())
    }
}

/// The job an action's form acts on, once its csrf field is this server's.
async fn acting_on(ui: &Ui, id: &str, f: &ActionForm) -> Result<JobId, Response> {
    if let Some(r) = csrf_refused(ui, &f.csrf) {
        return Err(r);
    }
    job_id(ui, id).await
}

fn to_job(job: JobId) -> Response {
    Redirect::to(&format!("/jobs/{job}")).into_response()
}

async fn cancel(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, Response> {
    let job = acting_on(&ui, &id, &f).await?;
    ui.jobs.cancel(job).await.map_err(|e| failed(&ui, &e))?;
    Ok(to_job(job))
}

/// Runs a failed job's unsuccessful tasks again (the failed ones and those they held back),
/// exactly as `ordo retry --failed-only` does: succeeded tasks keep their results.
async fn retry(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, Response> {
    let job = acting_on(&ui, &id, &f).await?;
    let state = ui
        .jobs
        .status(job)
        .await
        .map_err(|e| failed(&ui, &e))?
        .summary
        .state;
    if state != JobState::Failed {
        return Err(error_page(
            &ui,
            StatusCode::CONFLICT,
            &format!(
                "job {job} is {state}: only a failed job is retried (re-run runs any ended job \
                 again)"
            ),
        ));
    }
    let req = RetryRequest::failed_only(job);
    ui.jobs.retry(&req).await.map_err(|e| failed(&ui, &e))?;
    Ok(to_job(job))
}

/// The ended job an action's form acts on, with its report data; a running job is refused.
async fn ended_job(
    ui: &Ui,
    id: &str,
    f: &ActionForm,
) -> Result<(JobId, ordo_proto::api::ReportData), Response> {
    let job = acting_on(ui, id, f).await?;
    let data = report_of(ui, job).await?;
    if !data.job.summary.state.is_terminal() {
        return Err(error_page(
            ui,
            StatusCode::CONFLICT,
            &format!(
                "job {job} is still {}: cancel it or wait for it to end",
                data.job.summary.state
            ),
        ));
    }
    Ok((job, data))
}

/// Runs one task of an ended job again, with the tasks it held back (`ordo retry --task`).
async fn retry_task(
    State(ui): State<Arc<Ui>>,
    Path((id, index)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, Response> {
    let (job, data) = ended_job(&ui, &id, &f).await?;
    let Some(task) = index
        .parse::<usize>()
        .ok()
        .and_then(|i| data.job.spec.tasks.get(i))
    else {
        return Err(error_page(
            &ui,
            StatusCode::NOT_FOUND,
            &format!("job {job} has no task {}", jobs::plain(&index)),
        ));
    };
    let req = RetryRequest {
        task: Some(task.name.to_string()),
        failed_only: false,
        ..RetryRequest::failed_only(job)
    };
    ui.jobs.retry(&req).await.map_err(|e| failed(&ui, &e))?;
    Ok(Redirect::to(&format!("/jobs/{job}/tasks/{index}")).into_response())
}

/// The fields of the Approve and Reject forms.
#[derive(Debug, Default, Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    reason: String,
}

async fn approve(
    State(ui): State<Arc<Ui>>,
    Path((id, index)): Path<(String, String)>,
    Form(f): Form<DecideForm>,
) -> Result<Response, Response> {
    decide(&ui, &id, &index, f, true).await
}

async fn reject(
    State(ui): State<Arc<Ui>>,
    Path((id, index)): Path<(String, String)>,
    Form(f): Form<DecideForm>,
) -> Result<Response, Response> {
    decide(&ui, &id, &index, f, false).await
}

/// Approves or rejects a task awaiting approval, by `dashboard` (docs/design.md, "Quality
/// gates"): the host's `approve`/`reject` verbs through the job client; a rejection needs its
/// reason.
async fn decide(
    ui: &Ui,
    id: &str,
    index: &str,
    f: DecideForm,
    approve: bool,
) -> Result<Response, Response> {
    if let Some(r) = csrf_refused(ui, &f.csrf) {
        return Err(r);
    }
    let job = job_id(ui, id).await?;
    let text = if approve { f.comment } else { f.reason };
    let text = text.trim();
    let req = DecideRequest {
        job,
        task: index.to_string(),
        by: "dashboard".into(),
        comment: (!text.is_empty()).then(|| text.to_string()),
    };
    ui.jobs
        .decide(&req, approve)
        .await
        .map_err(|e| failed(ui, &e))?;
    Ok(Redirect::to(&format!("/jobs/{job}/tasks/{}", pages::url_encode(index))).into_response())
}

/// Submits an ended job's stored spec again, as a new job.
async fn rerun(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, Response> {
    let (job, data) = ended_job(&ui, &id, &f).await?;
    let record = data.job;
    let dag = ordo_proto::validate::validate(&record.spec).map_err(|_| {
        error_page(
            &ui,
            StatusCode::CONFLICT,
            &format!("the stored spec of job {job} no longer validates"),
        )
    })?;
    let req = SubmitRequest {
        spec: record.spec,
        source: record.source,
        default_mode: record.default_mode,
        max_parallel: record.max_parallel,
    };
    let new = ui
        .jobs
        .submit(req, dag)
        .await
        .map_err(|e| failed(&ui, &e))?;
    Ok(to_job(new))
}

#[derive(Debug, Default, Deserialize)]
struct SubmitForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    spec: String,
    /// Empty: detected from the text.
    #[serde(default)]
    format: String,
    /// A settings overlay (TOML `[settings]`), as `--with FILE` gives one; may be empty.
    #[serde(default)]
    with: String,
}

/// Submits spec text from the form (any format ordo reads).
async fn submit(State(ui): State<Arc<Ui>>, Form(mut f): Form<SubmitForm>) -> Response {
    if let Some(r) = csrf_refused(&ui, &f.csrf) {
        return r;
    }
    // A browser sends a textarea's lines ending in CRLF (HTML form encoding): take the text as
    // it was typed, or every multi-line command would end its lines with a carriage return.
    f.spec = f.spec.replace("\r\n", "\n");
    f.with = f.with.replace("\r\n", "\n");
    if f.spec.trim().is_empty() {
        return error_page(
            &ui,
            StatusCode::BAD_REQUEST,
            "the spec is empty: paste a job spec",
        );
    }
    let format = match f.format.trim() {
        "" => None,
        s => match s.parse::<Format>() {
            Ok(f) => Some(f),
            Err(e) => return error_page(&ui, StatusCode::BAD_REQUEST, &e.to_string()),
        },
    };
    let opts = LoadOptions {
        format,
        tag: Some("master".into()),
        ..Default::default()
    };
    let overrides = Overrides {
        with: Some(With::Text(f.with)),
        env_mode: env_mode(),
        ..Overrides::default()
    };
    let source = Source::Text {
        text: &f.spec,
        origin: "ui",
    };
    let (req, dag) = match ordo_formats::prepare(source, &opts, &overrides) {
        Ok(p) => (p.request, p.dag),
        Err(e) => match e.diagnostics() {
            Some(diags) => {
                let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
                return error_page(
                    &ui,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("the spec is not valid:\n{}", text.join("\n")),
                );
            }
            None => return failed(&ui, &jobs::Error::Invalid(e.to_string())),
        },
    };
    match ui.jobs.submit(req, dag).await {
        Ok(job) => to_job(job),
        Err(e) => failed(&ui, &e),
    }
}

async fn login_page(State(ui): State<Arc<Ui>>, Query(q): Query<LoginQuery>) -> Response {
    html(
        StatusCode::OK,
        pages::login(
            &ui.page_context(),
            same_site(q.next.as_deref().unwrap_or("/")),
            None,
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(ui): State<Arc<Ui>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Some(r) = csrf_refused(&ui, &f.csrf) {
        return r;
    }
    // Only a path on this site: never an open redirect.
    let next = same_site(&f.next);
    let Some(token) = &ui.opts.token else {
        return Redirect::to(next).into_response();
    };
    if let Some(wait) = login_blocked(&ui, peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
            format!(
                "too many failed logins from this address: try again in {} s\n",
                wait.as_secs().max(1)
            ),
        )
            .into_response();
    }
    if !same(f.token.trim(), token) {
        login_failed(&ui, peer.ip());
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(&ui.page_context(), next, Some("wrong token")),
        );
    }
    let session = random_hex();
    ui.sessions.lock().unwrap().insert(session.clone());
    let mut resp = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/"
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// How long `client` must wait before trying the login form again, if it must.
fn login_blocked(ui: &Ui, client: IpAddr) -> Option<Duration> {
    let failed = ui.failed_logins.lock().unwrap();
    let (n, since) = failed.get(&client)?;
    let left = LOGIN_WINDOW.checked_sub(since.elapsed())?;
    (*n >= MAX_FAILED_LOGINS).then_some(left)
}

fn login_failed(ui: &Ui, client: IpAddr) {
    let mut failed = ui.failed_logins.lock().unwrap();
    failed.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
    let (n, _) = failed.entry(client).or_insert((0, Instant::now()));
    *n += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        ui: UiArgs,
    }

    fn args(listen: &str, token: Option<&std::path::Path>) -> UiArgs {
        use clap::Parser;
        let mut argv = vec!["ordo".to_string(), "--listen".into(), listen.into()];
        if let Some(t) = token {
            argv.push("--token-file".into());
            argv.push(t.display().to_string());
        }
        Cli::try_parse_from(argv).unwrap().ui
    }

    #[test]
    fn non_loopback_needs_a_token() {
        assert!(check(&args("127.0.0.1:0", None)).is_ok());
        assert!(check(&args("[::1]:0", None)).is_ok());
        let e = check(&args("0.0.0.0:8080", None)).unwrap_err();
        assert!(e.contains("--token-file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "s3cret\n").unwrap();
        let e = check(&args("0.0.0.0:8080", Some(&f))).unwrap_err();
        assert!(
            e.contains("6 characters; at least 16") && e.contains("/dev/urandom"),
            "{e}"
        );
        std::fs::write(&f, "s3cret-but-long-enough\n").unwrap();
        let (_, o) = check(&args("0.0.0.0:8080", Some(&f))).unwrap();
        assert_eq!(o.token.as_deref(), Some("s3cret-but-long-enough"));
        std::fs::write(&f, " \n").unwrap();
        assert!(
            check(&args("0.0.0.0:8080", Some(&f)))
                .unwrap_err()
                .contains("empty")
        );
        let missing = dir.path().join("none");
        assert!(
            check(&args("127.0.0.1:1", Some(&missing)))
                .unwrap_err()
                .contains(&missing.display().to_string())
        );
        assert!(check(&args("nonsense", None)).is_err());
    }

    #[test]
    fn only_same_site_paths_are_redirected_to() {
        for good in ["/", "/jobs/1?x=%2F%2F", "/workers"] {
            assert_eq!(same_site(good), good);
        }
        for bad in [
            "//evil.example/",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil.example",
            "/ /evil.example",
            "",
        ] {
            assert_eq!(same_site(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn hosts() {
        for h in [
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1:80",
            "",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn comparisons() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ordo_session=xyz"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("xyz"));
    }
}
