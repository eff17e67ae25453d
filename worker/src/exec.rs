//! The process executor: runs one attempt of a `Dispatch` (the program, then its verify command)
//! as a local process tree and reports a `TaskResult`. The local runner and the distributed
//! worker both call `run`; it knows only processes, pipes and time, nothing of NATS or redb.
//! Killing (timeout, cancel, or dropping the future) reaches the whole tree: the attempt's
//! process group, plus descendants that left it, found by the attempt's `ORDO_ATTEMPT_TOKEN`.
//! An attempt that ends normally has its group killed at once; descendants that left the group
//! (`setsid`, `nohup`, a double fork) are killed by one background sweep of `/proc` shared by
//! all attempts, within `SWEEP_PERIOD` of the end.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ordo_proto::{Dispatch, Outcome, Program, TaskResult, WorkerId, now_ms};

use crate::agent;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Unique per attempt; every process of the attempt inherits it, so escaped descendants
/// (`setsid`, double fork) can be found in `/proc/*/environ` and killed.
pub const ENV_ATTEMPT_TOKEN: &str = "ORDO_ATTEMPT_TOKEN";
pub const ENV_JOB_ID: &str = "ORDO_JOB_ID";
pub const ENV_TASK: &str = "ORDO_TASK";
pub const ENV_ATTEMPT: &str = "ORDO_ATTEMPT";
/// Set by the worker daemon: its id, which delivery of the task message this is, and a token
/// its guard process uses to find the worker's task processes once the worker is gone.
pub const ENV_WORKER: &str = "ORDO_WORKER";
pub const ENV_DELIVERY: &str = "ORDO_DELIVERY";
pub const ENV_WORKER_TOKEN: &str = "ORDO_WORKER_TOKEN";

/// Most bytes of an agent's stdout kept to read its result.
const MAX_AGENT_STDOUT: usize = 64 * 1024 * 1024;
/// Read size per pipe.
const READ_BUF: usize = 16 * 1024;
/// How long output is still read after the program's group was killed: a descendant that
/// escaped the group may hold the pipe open forever, and must never hang the attempt.
const DRAIN_BOUND: Duration = Duration::from_millis(500);
/// How long to wait for a SIGKILLed leader to be reaped (only a process stuck in the kernel
/// takes longer; it is then left to tokio's orphan reaper).
const REAP_BOUND: Duration = Duration::from_secs(5);
/// Poll interval for "has the whole group exited" during the kill grace.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// Bound on /proc rescans while escaped descendants keep forking.
const TOKEN_SCAN_ROUNDS: usize = 50;
/// How often the sweeper looks for descendants of attempts that ended normally.
const SWEEP_PERIOD: Duration = Duration::from_millis(500);

/// How attempts are run; the same for every attempt of a worker.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Reported as `TaskResult::worker`.
    pub worker: WorkerId,
    /// Time between SIGTERM and SIGKILL when a tree is killed.
    pub kill_grace: Duration,
    /// Raw bytes of interleaved stdout/stderr kept for `TaskResult::output_tail`.
    pub tail_bytes: usize,
    /// Variables every process of the attempt gets after the task's own (ordo's names).
    pub env: Vec<(String, String)>,
}

impl ExecOptions {
    pub fn new(worker: impl Into<WorkerId>) -> Self {
        ExecOptions {
            worker: worker.into(),
            ..ExecOptions::default()
        }
    }
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            worker: "local".into(),
            kill_grace: Duration::from_secs(2),
            tail_bytes: 16 * 1024,
            env: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A piece of output as it was read, for live display or logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// Runs one attempt: the program, then (if it exited 0) after `verify_delay` the verify command
/// via `sh -c` with the same environment and working directory. The timeout covers all of it.
///
/// Never panics on any input: anything that prevents running is a `Failed` result with a
/// message. When `cancel` resolves the tree is killed and the result is `Cancelled`; dropping
/// the returned future SIGKILLs the tree at once. `output`, if given, receives chunks as they
/// are read; chunks are dropped while its channel is full (see `Collector::push`).
pub async fn run(
    d: &Dispatch,
    opts: &ExecOptions,
    cancel: impl Future<Output = ()>,
    output: Option<mpsc::Sender<OutputChunk>>,
) -> TaskResult {
    let started_at_ms = now_ms();
    let start = Instant::now();
    let mut col = Collector::new(opts.tail_bytes, output);
    if d.agent.is_some() {
        col.capture = Some(Vec::new());
    }
    let report = attempt(d, opts, start, std::pin::pin!(cancel), &mut col).await;
    let mut result = TaskResult::new(
        d,
        opts.worker.clone(),
        report.outcome,
        started_at_ms,
        report.message,
    );
    result.exit_code = report.exit_code;
    result.signal = report.signal;
    result.verify_exit_code = report.verify_exit_code;
    result.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    result.command_ms = report.command_ms;
    result.verify_started_ms = report.verify_started_ms;
    result.output_tail = match &report.agent {
        // An agent's output is its result text (and what the verify command printed).
        Some(reading) => {
            let mut tail = Tail::new(opts.tail_bytes);
            tail.push(reading.result.as_bytes());
            if let Some(verify) = &col.verify_tail {
                if !reading.result.is_empty() && !reading.result.ends_with('\n') {
                    tail.push(b"\n");
                }
                tail.push(&verify.bytes());
            }
            tail.decode()
        }
        None => col.tail.decode(),
    };
    result.output_bytes = col.total;
    result.agent = report.agent.map(|r| {
        let mut run = r.run;
        // The model the agent names, else the one it was asked for.
        run.model = run.model.or_else(|| d.model.clone());
        Box::new(run)
    });
    result
}

/// The parts of a `TaskResult` an attempt decides.
struct Report {
    outcome: Outcome,
    exit_code: Option<i32>,
    signal: Option<i32>,
    verify_exit_code: Option<i32>,
    message: String,
    /// Time the program itself took; the rest of the attempt is verify delay and command.
    command_ms: u64,
    verify_started_ms: Option<u64>,
    /// What the agent printed, read (agent profiles only).
    agent: Option<agent::Reading>,
}

impl Report {
    fn new(outcome: Outcome, message: impl Into<String>) -> Report {
        Report {
            outcome,
            exit_code: None,
            signal: None,
            verify_exit_code: None,
            message: message.into(),
            command_ms: 0,
            verify_started_ms: None,
            agent: None,
        }
    }
}

async fn attempt<C: Future<Output = ()>>(
    d: &Dispatch,
    opts: &ExecOptions,
    start: Instant,
    mut cancel: Pin<&mut C>,
    col: &mut Collector,
) -> Report {
    // An overflowing timeout (absurdly large) means no deadline.
    let deadline = d.timeout.and_then(|t| start.checked_add(t));
    let timed_out = || {
        Report::new(
            Outcome::TimedOut,
            format!("timed out after {:?}", d.timeout.unwrap_or_default()),
        )
    };

    let setup = match Setup::new(d, opts).await {
        Ok(s) => s,
        Err(msg) => return Report::new(Outcome::Failed, msg),
    };
    // `program` names what was started, for messages.
    let (cmd, program) = match &d.program {
        Program::Shell(script) => (
            setup.command("sh", &["-c", script.as_str()]),
            "\"sh\"".to_string(),
        ),
        Program::Argv(argv) => match argv.split_first() {
            Some((prog, args)) => (setup.command(prog, args), format!("{prog:?}")),
            None => return Report::new(Outcome::Failed, "argv is empty: nothing to run"),
        },
    };
    let ended = match run_process(cmd, &setup.token, deadline, cancel.as_mut(), opts, col).await {
        Ok(e) => e,
        Err(e) => return Report::new(Outcome::Failed, format!("failed to start {program}: {e}")),
    };

    let mut report = Report::new(Outcome::Failed, "");
    report.command_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.exit_code = ended.status.and_then(|s| s.code());
    report.signal = ended.status.and_then(|s| s.signal());
    match ended.stop {
        Some(Stop::TimedOut) => return timed_out_with(report, timed_out()),
        Some(Stop::Cancelled) => return cancelled(report),
        Some(Stop::WaitFailed(e)) => {
            report.message = format!("waiting for {program} failed: {e}");
            return report;
        }
        None => {}
    }
    if let Some(kind) = d.agent {
        let printed = col.capture.take().unwrap_or_default();
        let exited_ok = ended.status.is_some_and(|s| s.success());
        match agent::read(kind, &printed) {
            Ok(reading) => {
                let error = reading.error.clone();
                report.agent = Some(reading);
                if let Some(error) = error {
                    report.message = match ended.status.filter(|s| !s.success()) {
                        Some(s) => format!("{error} ({})", describe(s)),
                        None => error,
                    };
                    return report;
                }
            }
            // Not what the profile prints: say what came back (a failed exit says more).
            Err(why) if exited_ok => {
                report.message = why;
                return report;
            }
            Err(_) => {}
        }
    }
    match ended.status {
        Some(s) if s.success() => {}
        Some(s) => {
            report.message = describe(s);
            return report;
        }
        None => {
            report.message = format!("{program} ended with an unknown status");
            return report;
        }
    }

    let Some(verify) = &d.verify else {
        report.outcome = Outcome::Succeeded;
        return report;
    };
    if let Some(delay) = d.verify_delay.filter(|t| !t.is_zero()) {
        tokio::select! {
            () = sleep_until_opt(Instant::now().checked_add(delay)) => {}
            () = sleep_until_opt(deadline) => return timed_out_with(report, timed_out()),
            () = cancel.as_mut() => return cancelled(report),
        }
    }
    report.verify_started_ms = Some(now_ms());
    col.verify_tail = Some(Tail::new(opts.tail_bytes));
    let cmd = setup.command("sh", &["-c", verify.command.as_str()]);
    let ended = match run_process(cmd, &setup.token, deadline, cancel.as_mut(), opts, col).await {
        Ok(e) => e,
        Err(e) => {
            report.outcome = Outcome::VerifyFailed;
            report.message = format!("failed to start verify command \"sh\": {e}");
            return report;
        }
    };
    report.verify_exit_code = ended.status.and_then(|s| s.code());
    match ended.stop {
        Some(Stop::TimedOut) => return timed_out_with(report, timed_out()),
        Some(Stop::Cancelled) => return cancelled(report),
        Some(Stop::WaitFailed(e)) => {
            report.outcome = Outcome::VerifyFailed;
            report.message = format!("waiting for the verify command failed: {e}");
            return report;
        }
        None => {}
    }
    match ended.status {
        Some(s) if s.code() == Some(verify.success_code) => report.outcome = Outcome::Succeeded,
        Some(s) => {
            report.outcome = Outcome::VerifyFailed;
            report.message = match s.code() {
                Some(c) => format!(
                    "verify command exited {c}, expected {}",
                    verify.success_code
                ),
                None => format!("verify command {}", describe(s)),
            };
        }
        None => {
            report.outcome = Outcome::VerifyFailed;
            report.message = "verify command ended with an unknown status".into();
        }
    }
    report
}

/// Keeps the exit details gathered so far and takes outcome and message from `t`.
/// `report`, with what was measured so far, as a cancelled attempt.
fn cancelled(mut report: Report) -> Report {
    report.outcome = Outcome::Cancelled;
    report.message = "cancelled".into();
    report
}

fn timed_out_with(mut report: Report, t: Report) -> Report {
    report.outcome = t.outcome;
    report.message = t.message;
    report
}

fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("ended with {s}"),
    }
}

/// What every process of an attempt shares: environment, working directory and kill token.
struct Setup {
    env: Vec<(String, String)>,
    dir: Option<PathBuf>,
    token: String,
}

impl Setup {
    /// Checks what `spawn` would report badly or ambiguously: a missing working directory
    /// fails with the same ENOENT as a missing program, and `=` in a variable name is silently
    /// misread.
    async fn new(d: &Dispatch, opts: &ExecOptions) -> Result<Setup, String> {
        for (k, v) in &d.env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(format!("invalid environment variable name {k:?}"));
            }
            if v.contains('\0') {
                return Err(format!("environment variable {k} contains a NUL byte"));
            }
        }
        let dir = match &d.working_dir {
            None => None,
            Some(dir) => {
                // Relative to our current directory, resolved once so the verify command
                // runs in the same place.
                let path = std::path::absolute(dir)
                    .map_err(|e| format!("working directory {dir:?}: {e}"))?;
                match tokio::fs::metadata(&path).await {
                    Ok(m) if m.is_dir() => Some(path),
                    Ok(_) => return Err(format!("working directory {dir:?} is not a directory")),
                    Err(e) => return Err(format!("working directory {dir:?}: {e}")),
                }
            }
        };
        let token = new_token();
        let mut env: Vec<(String, String)> =
            d.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // Ours come last so a task cannot override them (the token must stay unique).
        env.push((ENV_JOB_ID.into(), d.job.to_string()));
        env.push((ENV_TASK.into(), d.task.to_string()));
        env.push((ENV_ATTEMPT.into(), d.attempt.0.to_string()));
        env.extend(opts.env.iter().cloned());
        env.push((ENV_ATTEMPT_TOKEN.into(), token.clone()));
        Ok(Setup { env, dir, token })
    }

    fn command<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own group: the whole tree can be signalled at once, and a terminal's Ctrl-C
            // reaches ordo, which then decides, instead of every task.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// The attempt is over (the verify command shares the token, so not before): whatever still
/// carries its token is left for the sweeper.
impl Drop for Setup {
    fn drop(&mut self) {
        sweep_later(std::mem::take(&mut self.token));
    }
}

/// Unique on this host: pid and clock tell processes apart, the counter attempts within one.
fn new_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// Why a process was stopped from outside (or could not be watched).
enum Stop {
    TimedOut,
    Cancelled,
    WaitFailed(io::Error),
}

struct Ended {
    /// `None` only if the process could not be reaped in time after being killed.
    status: Option<ExitStatus>,
    stop: Option<Stop>,
}

/// Attempts whose processes this process is spawning or supervising now (`run_process`).
static SUPERVISING: AtomicUsize = AtomicUsize::new(0);

/// When (`now_ms`) a spawn last found other attempts' processes running.
static CROWDED_AT_MS: AtomicU64 = AtomicU64::new(0);

/// For this long after a spawn found others running, spawns stay off the caller's thread.
const CROWDED_FOR_MS: u64 = 1_000;

/// Counts one attempt in `SUPERVISING` while it lives.
struct Supervising;

impl Supervising {
    fn enter() -> Supervising {
        SUPERVISING.fetch_add(1, Ordering::SeqCst);
        Supervising
    }
}

impl Drop for Supervising {
    fn drop(&mut self) {
        SUPERVISING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spawns `cmd`, on a blocking thread while other attempts' processes run (or did, within
/// `CROWDED_FOR_MS`). A spawn holds its thread until the child has called exec (`posix_spawn`
/// is a vfork), most of a millisecond once the CPUs are busy: on the worker's one runtime thread
/// that was three quarters of its time with four slots of `true`, every other task's result,
/// pull and ack waiting behind it. Alone (a chain's steps), it spawns on the caller's thread:
/// nothing waits behind it there, and a hand-off to another thread and back would add to every
/// step (docs/design.md, "Where a task's time goes"). If the caller is dropped meanwhile, the
/// child is killed as it comes (`kill_on_drop`), and what it started carries the attempt's
/// token for the sweeper.
async fn spawn(mut cmd: Command) -> io::Result<tokio::process::Child> {
    let now = now_ms();
    let alone = if SUPERVISING.load(Ordering::SeqCst) > 1 {
        CROWDED_AT_MS.store(now, Ordering::SeqCst);
        false
    } else {
        now.saturating_sub(CROWDED_AT_MS.load(Ordering::SeqCst)) >= CROWDED_FOR_MS
    };
    if alone {
        return cmd.spawn();
    }
    tokio::task::spawn_blocking(move || cmd.spawn())
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Spawns `cmd` and supervises it to the end: reads its output, kills its tree on timeout or
/// cancel, and on every path SIGKILLs its group afterwards so no group member outlives it.
/// Returns the spawn error, if any.
async fn run_process<C: Future<Output = ()>>(
    cmd: Command,
    token: &str,
    deadline: Option<Instant>,
    mut cancel: Pin<&mut C>,
    opts: &ExecOptions,
    col: &mut Collector,
) -> io::Result<Ended> {
    let _supervising = Supervising::enter();
    let mut child = spawn(cmd).await?;
    // process_group(0): the group id is the child's pid.
    let Some(pgid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        // Unreachable for a child that was just spawned and not yet waited for.
        let _ = child.start_kill();
        return Err(io::Error::other("spawned process has no pid"));
    };
    let mut guard = TreeGuard {
        pgid,
        token,
        armed: true,
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = vec![0u8; READ_BUF];
    let mut err_buf = vec![0u8; READ_BUF];
    let mut status: Option<ExitStatus> = None;
    let mut stop: Option<Stop> = None;
    // One timer: the deadline while running, then the end of the kill grace.
    let timer = tokio::time::sleep_until(deadline.unwrap_or_else(far_future));
    tokio::pin!(timer);
    let mut timer_armed = deadline.is_some();

    loop {
        if stop.is_none() && status.is_some() {
            break;
        }
        // Read branches are always enabled (a closed pipe reads as pending), so `select!`
        // never sees every branch disabled.
        tokio::select! {
            r = read_some(&mut stdout, &mut out_buf) => {
                col.absorb(Stream::Stdout, r, &out_buf, &mut stdout);
            }
            r = read_some(&mut stderr, &mut err_buf) => {
                col.absorb(Stream::Stderr, r, &err_buf, &mut stderr);
            }
            w = child.wait(), if status.is_none() => match w {
                Ok(s) => status = Some(s),
                Err(e) => {
                    stop = Some(Stop::WaitFailed(e));
                    break;
                }
            },
            () = &mut timer, if timer_armed => {
                if stop.is_some() {
                    break; // grace is over
                }
                stop = Some(Stop::TimedOut);
                signal_group(pgid, libc::SIGTERM);
                timer.as_mut().reset(after(opts.kill_grace));
            }
            // Polled only until it first resolves: `stop` is then set and stays set.
            () = cancel.as_mut(), if stop.is_none() => {
                stop = Some(Stop::Cancelled);
                signal_group(pgid, libc::SIGTERM);
                timer.as_mut().reset(after(opts.kill_grace));
                timer_armed = true;
            }
            // The leader is gone; the grace also lets the rest of its group finish.
            () = tokio::time::sleep(GROUP_POLL), if stop.is_some() && status.is_some() => {
                if !group_exists(pgid) {
                    break;
                }
            }
        }
    }

    // Clean up the group even after a normal exit: background children would otherwise keep
    // running and hold our pipes open. ESRCH (group already empty) is the usual answer. The
    // leader may already be reaped here; its pid cannot name a new group before the pid space
    // wraps, the race every supervisor accepts.
    signal_group(pgid, libc::SIGKILL);
    if stop.is_some() {
        kill_token_holders(token.to_string()).await;
    }
    guard.armed = false;
    if status.is_none() && !matches!(stop, Some(Stop::WaitFailed(_))) {
        status = tokio::time::timeout(REAP_BOUND, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
    }
    let _ = tokio::time::timeout(DRAIN_BOUND, async {
        while stdout.is_some() || stderr.is_some() {
            tokio::select! {
                r = read_some(&mut stdout, &mut out_buf) => {
                    col.absorb(Stream::Stdout, r, &out_buf, &mut stdout);
                }
                r = read_some(&mut stderr, &mut err_buf) => {
                    col.absorb(Stream::Stderr, r, &err_buf, &mut stderr);
                }
            }
        }
    })
    .await;
    Ok(Ended { status, stop })
}

/// Kills the tree if the supervising future is dropped before it finished (no grace: a drop
/// cannot wait).
struct TreeGuard<'a> {
    pgid: i32,
    token: &'a str,
    armed: bool,
}

impl Drop for TreeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
            kill_token_holders_sync(ENV_ATTEMPT_TOKEN, self.token);
        }
    }
}

fn after(t: Duration) -> Instant {
    Instant::now().checked_add(t).unwrap_or_else(far_future)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(30 * 365 * 86_400)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads from the pipe, or never completes once it is closed (`None`). Cancel-safe.
async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Sends `sig` to process group `pgid`; errors (ESRCH: already gone) are ignored.
fn signal_group(pgid: i32, sig: libc::c_int) {
    // killpg(0) would signal our own group and killpg(1) init's: never valid targets here.
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg takes two integers and touches no memory of ours.
    unsafe { libc::killpg(pgid, sig) };
}

/// True while any process (zombies included) is in group `pgid`.
fn group_exists(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill takes two integers and touches no memory of ours; signal 0 only probes.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn signal_pid(pid: i32, sig: libc::c_int) {
    // kill(0 or negative) addresses groups, kill(1) init: never valid targets here.
    if pid <= 1 {
        return;
    }
    // SAFETY: kill takes two integers and touches no memory of ours.
    unsafe { libc::kill(pid, sig) };
}

/// Pids, other than ours, whose environment holds exactly `<var>=<token>`.
/// Unreadable entries (other users, processes that just exited) are skipped. A process that
/// exec'd with a scrubbed environment (`env -i`) is not found: the known limit of this scheme.
fn token_holders(var: &str, token: &str) -> Vec<i32> {
    let needle = format!("{var}={token}").into_bytes();
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle))
        })
        .collect()
}

/// SIGKILLs every process whose environment holds `<var>=<token>`, rescanning while new ones
/// appear (a holder may fork between the scan and the kill). A killed process reads as an
/// empty environ once it is a zombie. Returns how many were killed.
pub fn kill_token_holders_sync(var: &str, token: &str) -> usize {
    let mut killed = HashSet::new();
    for _ in 0..TOKEN_SCAN_ROUNDS {
        let fresh: Vec<i32> = token_holders(var, token)
            .into_iter()
            .filter(|&pid| killed.insert(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            signal_pid(pid, libc::SIGKILL);
        }
    }
    killed.len()
}

/// Tokens of attempts that ended normally, for the sweeper.
static ENDED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Has the sweeper kill whatever still carries `token` (a scan per attempt would cost as much
/// as a spawn; one scan per period costs nothing measurable).
fn sweep_later(token: String) {
    static SWEEPER: std::sync::Once = std::sync::Once::new();
    ENDED.lock().unwrap_or_else(|e| e.into_inner()).push(token);
    SWEEPER.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("ordo-sweeper".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(SWEEP_PERIOD);
                    sweep_once();
                }
            });
    });
}

/// One scan: kills holders of ended attempts' tokens; a token whose holders were found is kept
/// for the next scan (a holder may have forked meanwhile), the others are forgotten.
fn sweep_once() {
    let tokens: HashSet<String> =
        std::mem::take(&mut *ENDED.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect();
    if tokens.is_empty() {
        return;
    }
    let prefix = format!("{ENV_ATTEMPT_TOKEN}=").into_bytes();
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut found = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
    {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let held = env
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_slice()))
            .and_then(|t| std::str::from_utf8(t).ok())
            .filter(|t| tokens.contains(*t));
        if let Some(t) = held {
            signal_pid(pid, libc::SIGKILL);
            found.insert(t.to_string());
        }
    }
    ENDED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(found);
}

async fn kill_token_holders(token: String) {
    // Reading /proc is blocking I/O; a failed join (runtime shutting down) changes nothing.
    let _ = tokio::task::spawn_blocking(move || kill_token_holders_sync(ENV_ATTEMPT_TOKEN, &token))
        .await;
}

/// Everything the attempt's processes wrote: the tail, the count, and the live forward.
struct Collector {
    tail: Tail,
    total: u64,
    sink: Option<mpsc::Sender<OutputChunk>>,
    /// An agent's stdout, kept whole (up to `MAX_AGENT_STDOUT`) to be read once it exits.
    capture: Option<Vec<u8>>,
    /// What the verify command printed, once it runs.
    verify_tail: Option<Tail>,
}

impl Collector {
    fn new(tail_bytes: usize, sink: Option<mpsc::Sender<OutputChunk>>) -> Collector {
        Collector {
            tail: Tail::new(tail_bytes),
            total: 0,
            sink,
            capture: None,
            verify_tail: None,
        }
    }

    /// Takes one read result; end of file or a read error closes the pipe.
    fn absorb<R>(
        &mut self,
        stream: Stream,
        r: io::Result<usize>,
        buf: &[u8],
        pipe: &mut Option<R>,
    ) {
        match r {
            Ok(n) if n > 0 => self.push(stream, &buf[..n.min(buf.len())]),
            _ => *pipe = None,
        }
    }

    fn push(&mut self, stream: Stream, data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        self.tail.push(data);
        if let Some(v) = &mut self.verify_tail {
            v.push(data);
        }
        if stream == Stream::Stdout
            && let Some(c) = &mut self.capture
        {
            let room = MAX_AGENT_STDOUT.saturating_sub(c.len());
            c.extend_from_slice(&data[..data.len().min(room)]);
        }
        if let Some(tx) = &self.sink {
            // Never wait for the consumer: a slow one must neither stall the program (its
            // pipe would fill) nor make us buffer without bound. While the channel is full,
            // chunks are dropped; the tail and byte count stay exact.
            let closed = match tx.try_reserve() {
                Ok(permit) => {
                    permit.send(OutputChunk {
                        stream,
                        data: data.to_vec(),
                    });
                    false
                }
                Err(mpsc::error::TrySendError::Full(())) => false,
                Err(mpsc::error::TrySendError::Closed(())) => true,
            };
            if closed {
                self.sink = None;
            }
        }
    }
}

/// The last `cap` bytes written, in arrival order: a fixed ring, so memory is bounded whatever
/// the program writes.
struct Tail {
    buf: Vec<u8>,
    cap: usize,
    /// Index of the oldest byte once `buf` is full.
    start: usize,
    /// Bytes were dropped, so the first kept byte may be mid-character.
    truncated: bool,
}

impl Tail {
    fn new(cap: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            cap,
            start: 0,
            truncated: false,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        if data.len() > self.cap {
            self.truncated = true;
            data = &data[data.len() - self.cap..];
        }
        if self.buf.len() < self.cap {
            let n = (self.cap - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        // Full: overwrite the oldest bytes, wrapping at most once (data.len() <= cap).
        while !data.is_empty() {
            self.truncated = true;
            let n = (self.cap - self.start).min(data.len());
            self.buf[self.start..self.start + n].copy_from_slice(&data[..n]);
            self.start = (self.start + n) % self.cap;
            data = &data[n..];
        }
    }

    /// The kept bytes, oldest first.
    fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.buf.len());
        bytes.extend_from_slice(&self.buf[self.start..]);
        bytes.extend_from_slice(&self.buf[..self.start]);
        bytes
    }

    fn decode(&self) -> String {
        let bytes = self.bytes();
        // Skip a character cut by truncation (at most 3 continuation bytes) rather than show
        // a replacement for it; invalid UTF-8 elsewhere is replaced, never a panic.
        let skip = if self.truncated {
            bytes
                .iter()
                .take(3)
                .take_while(|&&b| b & 0xC0 == 0x80)
                .count()
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[skip..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ordo_proto::{Attempt, JobId, TaskIndex, TaskName, Verify};

    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn dispatch(program: Program) -> Dispatch {
        Dispatch {
            // Keeps a broken test from hanging the suite.
            timeout: Some(Duration::from_secs(60)),
            ..Dispatch::new(
                JobId::new(),
                TaskName::new("t 1").unwrap(),
                TaskIndex(3),
                Attempt(2),
                program,
            )
        }
    }

    fn sh(script: &str) -> Dispatch {
        dispatch(Program::Shell(script.into()))
    }

    fn argv(args: &[&str]) -> Dispatch {
        dispatch(Program::Argv(args.iter().map(|s| s.to_string()).collect()))
    }

    fn verify(command: &str, success_code: i32) -> Option<Verify> {
        Some(Verify {
            command: command.into(),
            success_code,
        })
    }

    fn opts() -> ExecOptions {
        ExecOptions {
            kill_grace: Duration::from_millis(300),
            ..ExecOptions::new("w1")
        }
    }

    async fn exec(d: &Dispatch) -> TaskResult {
        run(d, &opts(), std::future::pending(), None).await
    }

    /// The token a test script printed as `token=<token>`.
    fn printed_token(tail: &str) -> String {
        let rest = &tail[tail.find("token=").expect("token printed") + "token=".len()..];
        let token = rest.lines().next().unwrap().to_string();
        assert!(!token.is_empty());
        token
    }

    async fn wait_no_holders(token: &str) {
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            let left = token_holders(ENV_ATTEMPT_TOKEN, token);
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "processes with the token remain: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn success_captures_output_and_fills_result() {
        let d = sh("echo hello; echo oops >&2");
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.signal, None);
        assert_eq!(r.verify_exit_code, None);
        assert!(r.output_tail.contains("hello\n") && r.output_tail.contains("oops\n"));
        assert_eq!(r.output_bytes, 11);
        assert_eq!(
            (r.job, &r.task, r.index, r.attempt),
            (d.job, &d.task, TaskIndex(3), Attempt(2))
        );
        assert_eq!(r.worker, "w1");
        assert!(r.started_at_ms > 1_600_000_000_000, "{}", r.started_at_ms);
        assert!(r.duration_ms < BOUND.as_millis() as u64);
        assert_eq!(r.message, "");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn output_is_forwarded_by_stream() {
        let (tx, mut rx) = mpsc::channel(64);
        let r = run(
            &sh("echo out; echo err >&2"),
            &opts(),
            std::future::pending(),
            Some(tx),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(c) = rx.recv().await {
            match c.stream {
                Stream::Stdout => out.extend(c.data),
                Stream::Stderr => err.extend(c.data),
            }
        }
        assert_eq!(
            (out.as_slice(), err.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nonzero_exit_fails() {
        let r = exec(&sh("echo bad >&2; exit 3")).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.message, "exit code 3");
        assert!(r.output_tail.contains("bad"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn killed_by_signal_fails() {
        let r = exec(&sh("kill -9 $$")).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!((r.exit_code, r.signal), (None, Some(9)));
        assert_eq!(r.message, "killed by signal 9");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn verify_success_with_custom_code() {
        let mut d = sh("echo built");
        d.verify = verify("echo checking; exit 3", 3);
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
        assert_eq!((r.exit_code, r.verify_exit_code), (Some(0), Some(3)));
        assert!(r.output_tail.contains("built\n") && r.output_tail.contains("checking\n"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn verify_failure() {
        let mut d = sh("true");
        d.verify = verify("exit 1", 0);
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::VerifyFailed);
        assert_eq!((r.exit_code, r.verify_exit_code), (Some(0), Some(1)));
        assert_eq!(r.message, "verify command exited 1, expected 0");

        d.verify = verify("exit 0", 2);
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::VerifyFailed);
        assert_eq!(r.message, "verify command exited 0, expected 2");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn verify_skipped_when_program_fails() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("verified");
        let mut d = sh("exit 2");
        d.verify = verify(&format!("touch '{}'", marker.display()), 0);
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.verify_exit_code, None);
        assert!(!marker.exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn timeout_kills_the_whole_tree() {
        // Everything ignores SIGTERM, so only the SIGKILL after the grace ends it; the setsid
        // children left the group and can only be found by their token.
        let mut d = sh(r#"
            trap '' TERM
            echo "token=$ORDO_ATTEMPT_TOKEN"
            setsid sleep 1000 &
            setsid sh -c 'sleep 1000 & sleep 1000' &
            sh -c 'trap "" TERM; while :; do sleep 1; done' &
            echo ready
            sleep 1000
        "#);
        d.timeout = Some(Duration::from_secs(2));
        let t0 = std::time::Instant::now();
        let r = exec(&d).await;
        assert!(t0.elapsed() < BOUND, "took {:?}", t0.elapsed());
        assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
        assert_eq!(r.message, "timed out after 2s");
        assert!(r.output_tail.contains("ready"), "{r:?}");
        wait_no_holders(&printed_token(&r.output_tail)).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn timeout_covers_verify() {
        let mut d = sh("true");
        d.verify = verify("sleep 100", 0);
        d.timeout = Some(Duration::from_millis(1500));
        let t0 = std::time::Instant::now();
        let r = exec(&d).await;
        assert!(t0.elapsed() < BOUND);
        assert_eq!(r.outcome, Outcome::TimedOut);
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.message, "timed out after 1.5s");

        // The pause before verify counts as well.
        d.verify = verify("true", 0);
        d.verify_delay = Some(Duration::from_secs(100));
        let t0 = std::time::Instant::now();
        let r = exec(&d).await;
        assert!(t0.elapsed() < BOUND);
        assert_eq!(r.outcome, Outcome::TimedOut);
    }

    /// Reads a timestamp a script wrote from `/proc/uptime` (seconds with two decimals, a
    /// monotonic clock) as centiseconds.
    fn uptime_cs(path: &Path) -> u64 {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let (secs, cs) = text.trim().split_once('.').expect("seconds.centiseconds");
        secs.parse::<u64>().unwrap() * 100 + cs.parse::<u64>().unwrap()
    }

    /// Proves the verify command starts no earlier than `verify_delay` after the program
    /// ended: the program's last act and the verify command's first act each write the
    /// monotonic clock, and the gap must reach the delay (less one tick of the clock's 10 ms
    /// resolution). Without the delay the gap is a process spawn, far below the bound; the bound
    /// is a lower one only, so a slow machine cannot make it flake.
    #[tokio::test(flavor = "multi_thread")]
    async fn verify_runs_after_delay() {
        const DELAY: Duration = Duration::from_millis(1000);
        let dir = tempfile::tempdir().unwrap();
        let (ended, verified) = (dir.path().join("ended"), dir.path().join("verified"));
        let stamp = |file: &Path| {
            format!(
                "read t _ < /proc/uptime; echo \"$t\" > '{}'",
                file.display()
            )
        };
        let mut d = sh(&stamp(&ended));
        d.verify = verify(&format!("{}; echo verified", stamp(&verified)), 0);
        d.verify_delay = Some(DELAY);
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
        assert_eq!(r.output_tail, "verified\n");
        let gap_ms = 10 * uptime_cs(&verified).saturating_sub(uptime_cs(&ended));
        let bound_ms = DELAY.as_millis() as u64 - 10;
        assert!(
            gap_ms >= bound_ms,
            "verify ran {gap_ms} ms after the program ended; the delay is {DELAY:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cancel_terminates() {
        let d = sh("echo started; exec sleep 100");
        let (tx, mut rx) = mpsc::channel(16);
        let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
        let t0 = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let cancel = async {
                let _ = cancel_rx.await;
            };
            run(&d, &opts(), cancel, Some(tx)).await
        });
        let first = rx.recv().await.expect("output before the end");
        assert_eq!(first.data, b"started\n");
        cancel_tx.send(()).unwrap();
        let r = task.await.unwrap();
        assert!(t0.elapsed() < BOUND);
        assert_eq!(r.outcome, Outcome::Cancelled);
        assert_eq!(r.message, "cancelled");
        // SIGTERM was enough: the grace was used.
        assert_eq!(r.signal, Some(libc::SIGTERM));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dropping_the_future_kills_the_tree() {
        let d = sh(r#"echo "token=$ORDO_ATTEMPT_TOKEN"; setsid sleep 1000 & sleep 1000"#);
        let (tx, mut rx) = mpsc::channel(16);
        let task =
            tokio::spawn(async move { run(&d, &opts(), std::future::pending(), Some(tx)).await });
        let mut seen = Vec::new();
        while !seen.ends_with(b"\n") {
            seen.extend(rx.recv().await.expect("token line").data);
        }
        // Give setsid a moment to start; the check below is the real assertion.
        let token = printed_token(&String::from_utf8_lossy(&seen));
        let deadline = std::time::Instant::now() + BOUND;
        while token_holders(ENV_ATTEMPT_TOKEN, &token).len() < 2
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        wait_no_holders(&token).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn background_children_do_not_hold_the_attempt() {
        // In the group: killed when the leader exits.
        let r = exec(&sh(
            r#"echo "token=$ORDO_ATTEMPT_TOKEN"; sleep 1000 & echo done"#,
        ))
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert!(r.output_tail.ends_with("done\n"));
        wait_no_holders(&printed_token(&r.output_tail)).await;

        // Escaped the group but holds the pipe: the bounded drain lets us go, and the sweeper
        // kills it soon after.
        let t0 = std::time::Instant::now();
        let r = exec(&sh(
            r#"echo "token=$ORDO_ATTEMPT_TOKEN"; setsid sleep 1000 & echo done"#,
        ))
        .await;
        assert!(t0.elapsed() < BOUND);
        assert_eq!(r.outcome, Outcome::Succeeded);
        wait_no_holders(&printed_token(&r.output_tail)).await;

        // Escaped with nohup and a double fork, holding no pipe: the sweeper finds them too.
        let r = exec(&sh(
            r#"echo "token=$ORDO_ATTEMPT_TOKEN"; nohup sleep 1000 >/dev/null 2>&1 & (setsid sh -c 'sleep 1000 &' </dev/null >/dev/null 2>&1 &); echo done"#,
        ))
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded);
        wait_no_holders(&printed_token(&r.output_tail)).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn missing_program_fails_with_its_name() {
        let r = exec(&argv(&["ordo-no-such-program-x1", "a"])).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.exit_code, None);
        assert!(
            r.message.contains("ordo-no-such-program-x1"),
            "{}",
            r.message
        );

        let r = exec(&argv(&[])).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.message.contains("empty"), "{}", r.message);

        let r = exec(&argv(&["nul\0byte"])).await;
        assert_eq!(r.outcome, Outcome::Failed);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bad_working_dir_or_env_fails_with_a_message() {
        let mut d = sh("true");
        d.working_dir = Some("/nonexistent/ordo-dir".into());
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.message.contains("/nonexistent/ordo-dir"), "{}", r.message);

        let file = tempfile::NamedTempFile::new().unwrap();
        d.working_dir = Some(file.path().display().to_string());
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.message.contains("not a directory"), "{}", r.message);

        let mut d = sh("true");
        d.env.insert("A=B".into(), "x".into());
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.message.contains("A=B"), "{}", r.message);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn argv_is_passed_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("x");
        let arg = format!("$(touch {}); ;id `id` | * \"'", marker.display());
        let r = exec(&argv(&["printf", "%s", &arg])).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
        assert_eq!(r.output_tail, arg);
        assert!(!marker.exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn invalid_utf8_is_decoded_lossily() {
        let r = exec(&argv(&["printf", "\\377\\376abc\\n"])).await;
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.output_bytes, 6);
        assert_eq!(r.output_tail, "\u{FFFD}\u{FFFD}abc\n");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn large_output_stays_bounded() {
        // A consumer that never reads: its channel fills and chunks are dropped.
        let (tx, mut rx) = mpsc::channel(4);
        let t0 = std::time::Instant::now();
        let r = run(
            &sh("head -c 200000000 /dev/zero"),
            &opts(),
            std::future::pending(),
            Some(tx),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
        assert_eq!(r.output_bytes, 200_000_000);
        assert_eq!(r.output_tail.len(), opts().tail_bytes);
        assert!(r.output_tail.bytes().all(|b| b == 0));
        let mut forwarded = 0;
        while rx.recv().await.is_some() {
            forwarded += 1;
        }
        assert!(forwarded <= 4);
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "took {:?}",
            t0.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn env_and_working_dir_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = sh(r#"
            pwd -P
            printf '%s|' "$FOO" "$ORDO_TASK" "$ORDO_ATTEMPT" "$ORDO_JOB_ID"
            test -n "$ORDO_ATTEMPT_TOKEN"
        "#);
        d.env.insert("FOO".into(), "bar baz".into());
        // A task cannot replace the attempt's identity.
        d.env.insert(ENV_ATTEMPT.into(), "99".into());
        d.working_dir = Some(dir.path().display().to_string());
        d.verify = verify(
            &format!(
                r#"test "$FOO" = "bar baz" && test "$(pwd -P)" = '{}'"#,
                dir.path().canonicalize().unwrap().display()
            ),
            0,
        );
        let r = exec(&d).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
        let want = format!(
            "{}\nbar baz|t 1|2|{}|",
            dir.path().canonicalize().unwrap().display(),
            d.job
        );
        assert_eq!(r.output_tail, want);

        // Relative to the current directory (the crate's, under cargo test).
        let mut d = sh("pwd -P");
        d.working_dir = Some("src".into());
        let r = exec(&d).await;
        let want = Path::new("src").canonicalize().unwrap();
        assert_eq!(r.output_tail.trim_end(), want.display().to_string());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stdin_is_empty() {
        let t0 = std::time::Instant::now();
        let r = exec(&argv(&["cat"])).await;
        assert!(t0.elapsed() < BOUND);
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.output_bytes, 0);
    }

    #[test]
    fn tail_keeps_the_last_bytes_in_order() {
        let mut t = Tail::new(5);
        t.push(b"abc");
        assert_eq!(t.decode(), "abc");
        t.push(b"de");
        assert_eq!(t.decode(), "abcde");
        t.push(b"fg");
        assert_eq!(t.decode(), "cdefg");
        t.push(b"hijklmn");
        assert_eq!(t.decode(), "jklmn");
        t.push(b"o");
        assert_eq!(t.decode(), "klmno");

        // A character cut by truncation is skipped, not replaced.
        let mut t = Tail::new(4);
        t.push("xé€".as_bytes()); // 1 + 2 + 3 bytes: keeps the last byte of é, then €
        assert_eq!(t.decode(), "€");

        let mut t = Tail::new(0);
        t.push(b"abc");
        assert_eq!(t.decode(), "");
    }
}
