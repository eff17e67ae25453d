//! The worker's guard: a small process, started once per worker (and per `ordo run`), that
//! outlives it. Every task process of the worker carries `ORDO_WORKER_TOKEN=<token>` in its
//! environment; the guard holds the read end of a pipe whose write end only the worker has.
//! When the worker dies (even by SIGKILL) the pipe reaches end-of-file and the guard kills
//! every process still carrying the token: children that escaped the process group with
//! `setsid` or a double fork included. A worker that exits normally has no such processes left,
//! so the guard finds none.
//!
//! The guard is the running binary itself (`ordo-worker` or `ordo`), run with
//! `--guard <token>` in its own session, so a terminal's Ctrl-C aimed at the worker does not
//! stop it first.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::exec::{ENV_WORKER_TOKEN, kill_token_holders_sync};

/// The flag that turns `ordo-worker` (or `ordo`) into a guard.
pub const GUARD_FLAG: &str = "--guard";

/// Set by `main_hook`: this binary can be re-run as a guard. Other programs that embed the
/// executor (benchmarks, tests) get no guard rather than a copy of themselves.
static CAN_GUARD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// First thing in the `main` of a binary that can serve as its own guard: if this process was
/// started as a guard, guards and returns true (main should then exit); otherwise notes that
/// `start` may re-run this binary as a guard, and returns false.
pub fn main_hook() -> bool {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() == 3 && argv[1] == GUARD_FLAG {
        watch(&argv[2]);
        return true;
    }
    CAN_GUARD.store(true, std::sync::atomic::Ordering::SeqCst);
    false
}

/// A running guard; dropping it (or the worker dying) sets it off.
pub struct Guard {
    pub token: String,
    _pipe: ChildStdin,
    _child: Child,
}

/// Starts a guard for a new token (only in a binary whose `main` called `main_hook`).
pub fn start() -> io::Result<Guard> {
    if !CAN_GUARD.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::other("this program cannot act as its own guard"));
    }
    let token = format!(
        "{:x}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let mut child = Command::new(std::env::current_exe()?)
        .args([GUARD_FLAG, &token])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("guard has no stdin"))?;
    Ok(Guard {
        token,
        _pipe: pipe,
        _child: child,
    })
}

/// The guard's whole life: wait for the worker to go, then kill what it left behind.
pub fn watch(token: &str) {
    // Ignore the terminal's signals: only the pipe ends the wait.
    // SAFETY: setting a signal disposition to SIG_IGN touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut buf = [0u8; 64];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let killed = kill_token_holders_sync(ENV_WORKER_TOKEN, token);
    if killed > 0 {
        eprintln!(
            "ordo-worker guard: the worker is gone; killed {killed} task process(es) it left"
        );
    }
}
