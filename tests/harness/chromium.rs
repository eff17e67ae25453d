//! Headless Chromium (Debian's `chromium`, or `CHROMIUM`) driven over the DevTools protocol on
//! a pipe (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, Chromium reading fd 3
//! and writing fd 4), so tests need no WebSocket client and no browser download. A `Browser`
//! is one Chromium process with a fresh profile, killed on drop; a `Page` is a tab attached
//! with a flat session: navigate, evaluate JavaScript, collect script errors and console
//! errors, take a PNG screenshot.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Chromium binary: `CHROMIUM`, else `chromium` on PATH.
pub fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Whether Chromium can be run here (scripts/test installs it).
pub fn available() -> bool {
    Command::new(binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub struct Browser {
    child: Child,
    to: std::fs::File,
    from: Receiver<Value>,
    next_id: u64,
    /// Events received while waiting for replies, per session ("" for the browser).
    events: Arc<Mutex<Vec<Value>>>,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2 failed");
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium headless with a fresh profile, `width`×`height` pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        use std::os::fd::AsRawFd;
        let profile = tempfile::tempdir().unwrap();
        let (chrome_reads, we_write) = pipe();
        let (we_read, chrome_writes) = pipe();
        let (cr, cw) = (chrome_reads.as_raw_fd(), chrome_writes.as_raw_fd());
        let mut cmd = Command::new(binary());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--remote-debugging-pipe",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first, so neither lands on 3 or 4 before it is moved there.
                let r = libc::fcntl(cr, libc::F_DUPFD, 10);
                let w = libc::fcntl(cw, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn chromium");
        drop(chrome_reads);
        drop(chrome_writes);
        let (tx, rx) = channel();
        let mut reader = std::fs::File::from(we_read);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            to: std::fs::File::from(we_write),
            from: rx,
            next_id: 0,
            events: Arc::new(Mutex::new(Vec::new())),
            _profile: profile,
        }
    }

    /// Sends a command (to a page's session, or the browser) and waits for its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Like `call`; the protocol's error as `Err`.
    pub fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .map_err(|e| format!("cannot write to chromium: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => {
                    return match v.get("error") {
                        Some(e) => Err(e.to_string()),
                        None => Ok(v["result"].clone()),
                    };
                }
                Ok(v) => self.events.lock().unwrap().push(v),
                Err(RecvTimeoutError::Timeout) => return Err("no reply within 30s".into()),
                Err(RecvTimeoutError::Disconnected) => return Err("chromium exited".into()),
            }
        }
    }

    /// Takes in the events that arrived so far.
    fn pump(&mut self) {
        while let Ok(v) = self.from.try_recv() {
            self.events.lock().unwrap().push(v);
        }
    }

    /// Opens a new tab on `url` and waits for its load event.
    pub fn open(&mut self, url: &str) -> Page {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(Some(&session), domain, json!({}));
        }
        let page = Page { session };
        page.navigate(self, url);
        // The blank page's own load event may be the one counted: wait for the document.
        assert!(
            page.wait_for(
                self,
                "location.href !== 'about:blank' && document.readyState === 'complete'",
                Duration::from_secs(30)
            ),
            "{url} did not load"
        );
        page
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One tab, by its DevTools session.
pub struct Page {
    session: String,
}

impl Page {
    fn events_of(&self, b: &mut Browser, method: &str) -> Vec<Value> {
        b.pump();
        b.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["sessionId"] == json!(self.session) && e["method"] == method)
            .cloned()
            .collect()
    }

    /// Navigates and waits (at most 30 s) for the new document's load event.
    pub fn navigate(&self, b: &mut Browser, url: &str) {
        let before = self.loads(b);
        b.call(Some(&self.session), "Page.navigate", json!({ "url": url }));
        self.wait_load_after(b, before);
    }

    /// Makes this tab the visible one (the others become `document.hidden`).
    pub fn front(&self, b: &mut Browser) {
        b.call(Some(&self.session), "Page.bringToFront", json!({}));
    }

    /// Load events of this tab so far.
    pub fn loads(&self, b: &mut Browser) -> usize {
        self.events_of(b, "Page.loadEventFired").len()
    }

    /// Waits (at most 30 s) for a load event after the first `before` (a navigation or a form
    /// post started since they were counted).
    pub fn wait_load_after(&self, b: &mut Browser, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.loads(b) <= before {
            assert!(
                Instant::now() < deadline,
                "the page did not load within 30s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Evaluates `expr` in the page; its value (`null` if it threw or was not JSON).
    pub fn eval(&self, b: &mut Browser, expr: &str) -> Value {
        match b.try_call(
            Some(&self.session),
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true }),
        ) {
            Ok(r) if r.get("exceptionDetails").is_none() => r["result"]["value"].clone(),
            _ => Value::Null,
        }
    }

    /// Polls `expr` until it is `true` or `limit` passes; whether it became true.
    pub fn wait_for(&self, b: &mut Browser, expr: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(b, expr) == json!(true) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Uncaught exceptions, console errors and error log entries (CSP violations, failed
    /// loads) of this tab so far, as text.
    pub fn errors(&self, b: &mut Browser) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.events_of(b, "Runtime.exceptionThrown") {
            out.push(format!("Uncaught: {}", e["params"]["exceptionDetails"]));
        }
        for e in self.events_of(b, "Runtime.consoleAPICalled") {
            if matches!(e["params"]["type"].as_str(), Some("error" | "assert")) {
                out.push(format!("console.error: {}", e["params"]["args"]));
            }
        }
        for e in self.events_of(b, "Log.entryAdded") {
            if e["params"]["entry"]["level"] == "error" {
                out.push(format!("log: {}", e["params"]["entry"]));
            }
        }
        out
    }

    /// Writes a PNG screenshot of the whole page to `path`.
    pub fn screenshot(&self, b: &mut Browser, path: &Path) {
        // A tab in the background draws no frames to capture.
        b.call(Some(&self.session), "Page.bringToFront", json!({}));
        let shot = b.call(
            Some(&self.session),
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64_decode(shot["data"].as_str().unwrap_or(""));
        assert_eq!(png.get(..8), Some(&b"\x89PNG\r\n\x1a\n"[..]), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let table: HashMap<u8, u32> =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32))
            .collect();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let Some(&v) = table.get(&c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(super::base64_decode("YQ=="), b"a");
    }
}
