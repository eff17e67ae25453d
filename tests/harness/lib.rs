//! Test harness shared by the integration tests: finds the real binaries built by
//! `cargo build --workspace --bins`, runs them with a deadline, writes job files into temporary
//! directories, and polls for conditions instead of sleeping. Example job files are the
//! repository's `tests/fixtures`, plus `../shared/examples` as a conformance set when present.

pub mod chromium;
pub mod deploy;
pub mod ledger;
pub mod otlp;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Directory holding the workspace's binaries (`ORDO_BIN_DIR` overrides).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORDO_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/integration-<hash> → target/<profile>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// The repository's own example job files, one directory per format (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A fixture by its path under `tests/fixtures`, e.g. `json/subtasks_parallel.json`.
pub fn fixture(rel: &str) -> PathBuf {
    let path = fixtures_dir().join(rel);
    assert!(path.is_file(), "fixture {} is missing", path.display());
    path
}

/// `examples/stub-agent/<tool>` (`claude` or `codex`): the stand-in agent CLIs. The directory
/// is canonical, the tool not: the stub tells claude from codex by the name it is called by.
pub fn stub_agent(tool: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/stub-agent")
        .canonicalize()
        .expect("the stub agent")
        .join(tool)
        .display()
        .to_string()
}

/// The real job files of `../shared/examples` beside the repository (`ORDO_SHARED_EXAMPLES`
/// overrides the place): an extra conformance set, used when the directory exists. When it
/// does not, says so once on stderr and returns `None`.
pub fn shared_examples_dir() -> Option<PathBuf> {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    let dir = std::env::var_os("ORDO_SHARED_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples"));
    if dir.is_dir() {
        return Some(dir);
    }
    SKIPPED.call_once(|| {
        // Straight to stderr: the test harness would capture `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "note: shared example set not found at {}: skipped, tests use tests/fixtures only",
            dir.display()
        );
    });
    None
}

/// A file of the shared conformance set, if the set is there.
pub fn shared_example(rel: &str) -> Option<PathBuf> {
    shared_examples_dir().map(|d| d.join(rel))
}

/// Every example job file: the fixtures, then the shared conformance set when present; each
/// sorted by its path under its directory (`json/…`, `markdown/…`, `prompter/…`,
/// `taskmaster/…`).
pub fn all_examples() -> Vec<PathBuf> {
    let mut out = example_files(&fixtures_dir());
    if let Some(shared) = shared_examples_dir() {
        out.extend(example_files(&shared));
    }
    out
}

fn example_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["json", "markdown", "prompter", "taskmaster"] {
        let dir = root.join(sub);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            // Files only: a directory there is a project layout (`.taskmaster/`).
            let path = e.unwrap().path();
            if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The Python of the repository's `.venv` (where `scripts/test` installs the Python packages
/// tests use: `what` names them for the error), or `ORDO_PYTHON`.
pub fn venv_python(what: &str) -> PathBuf {
    let p = std::env::var_os("ORDO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it installs {what} into .venv)",
        p.display()
    );
    p
}

/// TaskMaster's own CLI (`task-master`, the npm package `task-master-ai` that `scripts/test`
/// installs into `.venv/node`), or `ORDO_TASKMASTER`.
pub fn taskmaster_cli() -> PathBuf {
    let p = std::env::var_os("ORDO_TASKMASTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.venv/node/node_modules/.bin/task-master")
        });
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it installs task-master-ai into .venv/node)",
        p.display()
    );
    p
}

/// A finished process: status and captured output as text.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// The first line of stdout, trimmed: the job id `ordo submit` prints first.
    pub fn first_line(&self) -> String {
        self.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs a command to completion, killing it (and failing the test) after `limit`.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// `ordo ARGS...` in `dir`, with a two-minute deadline.
pub fn ordo_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin("ordo"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("ORDO_EXECUTION_MODE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_deadline(cmd, Duration::from_secs(120))
}

pub fn ordo(args: &[&str]) -> Run {
    ordo_in(&std::env::temp_dir(), args, &[])
}

/// Spawns `ordo ARGS...` without waiting (for signals and kills).
pub fn spawn_ordo(dir: &Path, args: &[&str]) -> Child {
    Command::new(bin("ordo"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ordo")
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a child with a deadline; panics if it does not exit.
pub fn wait_child(child: &mut Child, limit: Duration) -> ExitStatus {
    let mut status = None;
    let ok = wait_until(limit, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    if !ok {
        let _ = child.kill();
        panic!("process did not exit within {limit:?}");
    }
    status.unwrap()
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Lines of a file, empty if it does not exist.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(String::from).collect())
        .unwrap_or_default()
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Pids of live processes whose environment holds `KEY=VALUE`.
pub fn pids_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes())
        {
            // Zombies have no environment; a readable one is alive.
            out.push(pid);
        }
    }
    out
}

/// The coordinators `ordo cluster --output json` printed: (id, role, journal lag; `u64::MAX`
/// when not given). Nothing when it printed no list.
pub fn cluster_members(stdout: &str) -> Vec<(String, String, u64)> {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_string(),
                s["role"].as_str().unwrap_or_default().to_string(),
                s["lag"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// The task named `name` in a JSON document with a `tasks` list (a status, a run summary, a
/// report); fails the test naming the document when there is none.
pub fn task<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tasks list in {doc}"))
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {doc}"))
}

/// The `[[tasks]]` of the hot-file job: `n` prompt tasks for the stub agent, each sleeping
/// `sleep` seconds and writing `t<i>.txt`, one in three also inserting `- change <i>` under the
/// `## Unreleased` header of `CHANGELOG.md`.
pub fn hot_file_tasks(n: usize, sleep: &str) -> String {
    let mut text = String::new();
    for i in 0..n {
        let mut prompt = format!("sleep {sleep}\nwrite t{i}.txt: {i}");
        if i % 3 == 0 {
            prompt.push_str(&format!(
                "\ninsert CHANGELOG.md after ## Unreleased: - change {i}"
            ));
        }
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i}\"\nprompt = \"\"\"\n{prompt}\n\"\"\"\n"
        ));
    }
    text
}

/// The `[[tasks]]` of a same-line conflict in a worktree job whose `env` sets `MARKS` (a
/// directory): `late` starts (its worktree cut from the empty branch), then `early` changes
/// line 1 of `shared.txt` and integrates; only then does `late` change line 1 too, so it
/// conflicts once, runs again from the new tip, and both changes land. `show` is the shell
/// command that prints `shared.txt` as the integration branch holds it (e.g. `git show
/// it:shared.txt` in a worktree of the repository itself).
pub fn conflicting_pair(show: &str) -> String {
    format!(
        r#"
[[tasks]]
name = "early"
command = """
until [ -e "$MARKS/late-started" ]; do sleep 0.01; done
sed -i '1s/$/ early/' shared.txt
"""

[[tasks]]
name = "late"
command = """
touch "$MARKS/late-started"
until {show} 2>/dev/null | grep -q early; do sleep 0.01; done
sed -i '1s/$/ late/' shared.txt
"""
"#
    )
}

/// Runs `git ARGS` in `dir` (author and committer fixed, no global or system configuration
/// that could sign or hook), returning the finished process.
pub fn git_run(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    Run::from(out)
}

/// `git ARGS` in `dir`, which must succeed; its stdout without the final newline.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let r = git_run(dir, args);
    assert_eq!(
        r.code(),
        0,
        "git {args:?} in {}: {}{}",
        dir.display(),
        r.stdout,
        r.stderr
    );
    r.stdout.trim_end_matches('\n').to_string()
}

/// A real `nats-server` with JetStream on a random port and a temporary store, killed on drop.
/// `restart` keeps the port and the store. The binary comes from `NATS_SERVER_BIN` (set by
/// `scripts/test`), else `nats-server` on PATH.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// fsync every JetStream write before acking it (`sync_interval: always`, as the
    /// single-node config in deploy/ has): what survives a `kill -9` of the server.
    sync_always: bool,
}

fn nats_server_bin() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = NatsServer {
            child: None,
            port: 0,
            dir,
            sync_always: false,
        };
        s.spawn(None);
        s
    }

    /// Like `start`, fsyncing every JetStream write before acking it.
    pub fn start_synced() -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = NatsServer {
            child: None,
            port: 0,
            dir,
            sync_always: true,
        };
        s.spawn(None);
        s
    }

    fn spawn(&mut self, port: Option<u16>) {
        let store = self.dir.path().join("js");
        let ports = self.dir.path().join("ports");
        let _ = std::fs::create_dir_all(&ports);
        for e in std::fs::read_dir(&ports).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let log = std::fs::File::create(self.dir.path().join("nats.log")).unwrap();
        let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-a", "127.0.0.1", "-p", &port_arg]);
        if self.sync_always {
            let conf = self.dir.path().join("nats.conf");
            let text = format!(
                "jetstream {{ store_dir: {:?}, sync_interval: always }}\n",
                store.display().to_string()
            );
            std::fs::write(&conf, text).unwrap();
            cmd.arg("-c").arg(&conf);
        } else {
            cmd.arg("-js").arg("-sd").arg(&store);
        }
        let child = cmd
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (scripts/test installs nats-server 2.15 and sets NATS_SERVER_BIN)",
                    nats_server_bin().display()
                )
            });
        let pid = child.id();
        self.child = Some(child);
        let file = ports.join(format!("nats-server_{pid}.ports"));
        let mut found = None;
        assert!(
            wait_until(Duration::from_secs(20), || {
                found = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .and_then(|v| {
                        let url = v["nats"][0].as_str()?.to_string();
                        url.rsplit(':').next()?.parse::<u16>().ok()
                    });
                found.is_some()
            }),
            "nats-server did not write its ports file"
        );
        self.port = found.unwrap();
        // Ready when it accepts connections.
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        }));
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// What the server logged (its errors: a client it disconnected, and why).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Stops the server with `sig` (SIGTERM or SIGKILL) and waits for it to exit.
    pub fn stop(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), sig);
            wait_child(&mut c, Duration::from_secs(20));
        }
    }

    /// Stops the server with `sig` and starts it again on the same port and store.
    pub fn restart(&mut self, sig: i32) {
        self.stop(sig);
        let port = self.port;
        self.spawn(Some(port));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A real `ordo-coordinator` or `ordo-worker` process, killed on drop; its stderr goes to a
/// log file that `log()` returns for failure messages.
pub struct Daemon {
    child: Option<Child>,
    bin: String,
    args: Vec<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `bin_name ARGS` in `cwd` (workers run tasks in their current directory).
    pub fn spawn(bin_name: &str, args: &[&str], cwd: &Path) -> Daemon {
        Daemon::spawn_env(bin_name, args, cwd, &[])
    }

    /// Like `spawn`, with extra environment variables.
    pub fn spawn_env(
        bin_name: &str,
        args: &[&str],
        cwd: &Path,
        env: &[(String, String)],
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Daemon {
            child: None,
            bin: bin_name.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.to_path_buf(),
            env: env.to_vec(),
            log_path: dir.path().join("daemon.log"),
            _dir: dir,
        };
        d.start();
        d
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(bin(&self.bin))
            .args(&self.args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sets (or with `None` removes) a variable for the next `start`.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Waits for the process to exit by itself (a failpoint, a fatal error).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        wait_child(&mut c, limit)
    }

    /// Sends `sig` and waits for the process to exit; returns its status.
    pub fn stop(&mut self, sig: i32) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(c.id(), sig);
        wait_child(&mut c, Duration::from_secs(60))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A cluster for one test: nats-server, a coordinator with its own data dir, and workers.
pub struct Cluster {
    pub nats: NatsServer,
    pub coordinator: Daemon,
    pub workers: Vec<Daemon>,
    pub data: tempfile::TempDir,
    pub work: tempfile::TempDir,
    /// Extra environment of the coordinator and every worker.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts nats, a coordinator (`extra` flags appended) and no workers.
    pub fn start(coordinator_flags: &[&str]) -> Cluster {
        Cluster::start_env(coordinator_flags, Vec::new())
    }

    /// Like `start`, with extra environment for the coordinator and the workers.
    pub fn start_env(coordinator_flags: &[&str], env: Vec<(String, String)>) -> Cluster {
        Cluster::start_on(NatsServer::start(), coordinator_flags, env)
    }

    /// Like `start_env`, on a given nats-server.
    pub fn start_on(
        nats: NatsServer,
        coordinator_flags: &[&str],
        env: Vec<(String, String)>,
    ) -> Cluster {
        let data = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let url = nats.url();
        let data_dir = data.path().to_string_lossy().into_owned();
        let mut args = vec!["--nats", &url, "--data-dir", &data_dir];
        args.extend_from_slice(coordinator_flags);
        let coordinator = Daemon::spawn_env("ordo-coordinator", &args, work.path(), &env);
        let c = Cluster {
            nats,
            coordinator,
            workers: Vec::new(),
            data,
            work,
            env,
        };
        // Ready when its API answers.
        assert!(
            wait_until(Duration::from_secs(30), || c.ordo(&["workers"]).code() == 0),
            "coordinator did not come up:\n{}",
            c.coordinator.log()
        );
        c
    }

    /// Starts a worker with `flags` and waits until the coordinator lists it.
    pub fn add_worker(&mut self, id: &str, flags: &[&str]) {
        self.add_worker_env(id, flags, &[]);
    }

    /// Like `add_worker`, with extra environment for this worker only.
    pub fn add_worker_env(&mut self, id: &str, flags: &[&str], env: &[(&str, &str)]) {
        let url = self.nats.url();
        let mut args = vec!["--nats", url.as_str(), "--id", id];
        args.extend_from_slice(flags);
        let mut all = self.env.clone();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let worker = Daemon::spawn_env("ordo-worker", &args, self.work.path(), &all);
        self.workers.push(worker);
        assert!(
            wait_until(Duration::from_secs(30), || {
                self.ordo(&["workers", "--output", "json"])
                    .stdout
                    .contains(id)
            }),
            "worker {id} never appeared"
        );
    }

    /// Every worker's log, one after another, for failure messages.
    pub fn workers_log(&self) -> String {
        self.workers
            .iter()
            .map(|w| w.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// The coordinator's log and every worker's, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "coordinator:\n{}\nworkers:\n{}",
            self.coordinator.log(),
            self.workers_log()
        )
    }

    /// `ordo ARGS --nats URL` in the cluster's work directory.
    pub fn ordo(&self, args: &[&str]) -> Run {
        let url = self.nats.url();
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--nats", &url]);
        ordo_in(self.work.path(), &all, &[])
    }
}
