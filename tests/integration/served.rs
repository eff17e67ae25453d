//! A state directory served by the process holding it (`DIR/ordo.sock`): while `ordo run
//! --state S` runs a long job, `ordo status`, `ordo ui` (the job page in Chromium, live) and
//! `ordo cancel` from other processes reach it and the run ends cancelled; the socket is
//! private and removed at the end; a socket left by a killed run is taken over, also by a run
//! that was following its job there; and `ordo run` on a directory a dashboard serves runs its
//! job in the dashboard's process and follows it.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use ordo_tests::{Daemon, Run, ordo_in, task, wait_until, write};
use serde_json::{Value, json};

use crate::dashboard::{Ui, assert_no_errors, browser, open_clean, text_of};

/// Two tasks that run side by side: `gate` waits for the file `$GO`, `sleeper` (its pid in
/// `$PIDS/sleeper`) for `$STOP`, so nothing outlives the test; each polls every 50 ms.
const LONG_TASKS: &str = r#"
[[tasks]]
name = "gate"
command = "until [ -e \"$GO\" ]; do sleep 0.05; done; echo released"

[[tasks]]
name = "sleeper"
command = "echo $$ > \"$PIDS/sleeper\"; until [ -e \"$STOP\" ]; do sleep 0.05; done"
"#;

/// A test's directory: the job file (its `GO`, `STOP` and `PIDS` in here) and the state
/// directory `st`.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir(d.join("pids")).unwrap();
        let text = format!(
            "name = \"long\"\n[settings]\nexecution_mode = \"parallel\"\n\
             env = {{ GO = \"{}\", STOP = \"{}\", PIDS = \"{}\" }}\n{LONG_TASKS}",
            d.join("go").display(),
            d.join("stop").display(),
            d.join("pids").display()
        );
        write(d, "long.toml", &text);
        Dir { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn state(&self) -> String {
        self.path().join("st").display().to_string()
    }

    fn socket(&self) -> std::path::PathBuf {
        self.path().join("st/ordo.sock")
    }

    fn spec(&self) -> String {
        self.path().join("long.toml").display().to_string()
    }

    /// `ordo ARGS --state st`, to completion.
    fn ordo(&self, args: &[&str]) -> Run {
        let state = self.state();
        let mut all = args.to_vec();
        all.extend(["--state", state.as_str()]);
        ordo_in(self.path(), &all, &[])
    }

    /// `ordo run long.toml --state st --workers 3`, running.
    fn spawn_run(&self) -> Daemon {
        let (spec, state) = (self.spec(), self.state());
        Daemon::spawn(
            "ordo",
            &["run", &spec, "--state", &state, "--workers", "3"],
            self.path(),
        )
    }

    /// The status of `job` as JSON; the command must succeed.
    fn status(&self, job: &str) -> Value {
        let r = self.ordo(&["status", job, "--output", "json"]);
        assert_eq!(r.code(), 0, "ordo status {job}: {}{}", r.stdout, r.stderr);
        r.json()
    }

    /// The one job of the state directory, once `ordo status` lists it.
    fn the_job(&self, run: &Daemon) -> String {
        let mut id = String::new();
        assert!(
            wait_until(Duration::from_secs(30), || {
                let r = self.ordo(&["status", "--output", "json"]);
                if r.code() != 0 {
                    return false;
                }
                id = r.json()[0]["id"].as_str().unwrap_or_default().to_string();
                !id.is_empty()
            }),
            "no job listed:\n{}",
            run.log()
        );
        id
    }

    /// Waits until every named task of `job` is running.
    fn wait_running(&self, job: &str, tasks: &[&str], run: &Daemon) {
        let mut last = Value::Null;
        assert!(
            wait_until(Duration::from_secs(30), || {
                last = self.status(job);
                tasks.iter().all(|t| task(&last, t)["state"] == "running")
            }),
            "not all of {tasks:?} running: {last:#}\n{}",
            run.log()
        );
    }

    /// Ends whatever still waits on `$STOP`.
    fn release(&self) {
        let _ = std::fs::write(self.path().join("stop"), "");
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        self.release();
    }
}

/// `ordo run --state S` of a long job, and meanwhile from other processes: `ordo status`
/// shows its running tasks (it used to fail "in use"), the dashboard's job page follows a
/// task to its end without a reload, `ordo cancel` ends the job, and the run exits 1 with the
/// job cancelled. The socket is its owner's only (0600). Once the run has exited, the
/// dashboard holds the directory itself, and its socket is gone when the dashboard stops.
#[test]
fn served_state_dir_is_watched_and_cancelled_from_other_processes() {
    let d = Dir::new();
    let mut run = d.spawn_run();
    let job = d.the_job(&run);
    d.wait_running(&job, &["gate", "sleeper"], &run);

    let meta = std::fs::metadata(d.socket()).expect("the run serves st/ordo.sock");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{meta:?}");

    let text = d.ordo(&["status", &job]);
    assert_eq!(text.code(), 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("gate") && text.stdout.contains("running"),
        "{}",
        text.stdout
    );

    // The dashboard, from another process, on the job page: the gate task changes state live.
    let state = d.state();
    let mut ui = Ui::start(d.path(), &["--state", &state]);
    let mut b = browser();
    let page = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    let gate = text_of("tr[data-task=\"0\"] [data-f=\"state\"] i");
    assert_eq!(page.eval(&mut b, &gate), json!("running"), "{}", ui.log());
    page.eval(&mut b, "window.__marker = 7");
    let loads = page.loads(&mut b);
    std::fs::write(d.path().join("go"), "").unwrap();
    assert!(
        page.wait_for(
            &mut b,
            &format!("{gate} === 'succeeded'"),
            Duration::from_secs(30)
        ),
        "the page did not follow the gate task: {}\n{}\n{}",
        page.eval(&mut b, &gate),
        ui.log(),
        run.log()
    );
    assert_eq!(page.eval(&mut b, "window.__marker"), json!(7), "no reload");
    assert_eq!(page.loads(&mut b), loads, "no reload");

    let r = d.ordo(&["cancel", &job, "--output", "json"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stderr, run.log());
    assert_eq!(r.json()["state"], "cancelled", "{}", r.stdout);
    let status = run.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "a cancelled run: {}", run.log());
    let st = d.status(&job);
    assert_eq!(st["state"], "cancelled", "{st:#}");
    assert_eq!(task(&st, "gate")["state"], "succeeded");
    assert_eq!(task(&st, "sleeper")["state"], "cancelled", "{st:#}");
    assert!(
        page.wait_for(
            &mut b,
            &format!("{} === 'cancelled'", text_of("[data-f=\"job-state\"] i")),
            Duration::from_secs(30)
        ),
        "the page did not show the cancel: {}",
        ui.log()
    );
    assert_no_errors(&mut b, &page, "job page");
    // The run is gone: the dashboard, which reached the job through the run's socket, comes to
    // the directory again and holds it now; a page loaded afresh still shows the job.
    assert_eq!(ui.job_state(&job), "cancelled", "{}", ui.log());
    assert!(
        std::os::unix::net::UnixStream::connect(d.socket()).is_ok(),
        "the dashboard serves the directory now: {}",
        ui.log()
    );
    drop(b);
    ui.stop();
    assert!(!d.socket().exists(), "the socket outlived its server");
}

/// A run killed with SIGKILL leaves its socket behind, answering nobody: `ordo status` reads
/// the directory anyway (exit 0, the job still running as recorded), and the next `ordo run`
/// of the same job takes the directory over, serves it again and resumes the job to its end.
#[test]
fn served_state_dir_left_by_a_killed_run_is_taken_over() {
    let d = Dir::new();
    let mut run = d.spawn_run();
    let job = d.the_job(&run);
    d.wait_running(&job, &["sleeper"], &run);
    run.stop(libc::SIGKILL);
    // The killed run's task is an orphan now: end it and wait for it to go.
    let pid: i32 = std::fs::read_to_string(d.path().join("pids/sleeper"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    d.release();
    assert!(wait_until(Duration::from_secs(10), || {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) != 0 }
    }));
    std::fs::remove_file(d.path().join("stop")).unwrap();
    assert!(d.socket().exists(), "SIGKILL leaves the socket file");

    let r = d.ordo(&["status", &job, "--output", "json"]);
    assert_eq!(r.code(), 0, "a stale socket: {}", r.stderr);
    assert_eq!(r.json()["state"], "running", "{}", r.stdout);

    // The store still says running (nobody runs it): wait for the new run's socket first.
    let mut again = d.spawn_run();
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(d.socket()).is_ok()
        }),
        "the new run does not serve the directory: {}",
        again.log()
    );
    d.wait_running(&job, &["gate", "sleeper"], &again);
    std::fs::write(d.path().join("go"), "").unwrap();
    d.release();
    let status = again.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", again.log());
    let log = again.log();
    assert!(
        !log.contains("error") && !log.contains("in use"),
        "an error on taking over: {log}"
    );
    let st = d.status(&job);
    assert_eq!(st["state"], "succeeded", "{st:#}");
    assert!(!d.socket().exists());
}

/// `ordo ui --state S` first, then `ordo run --state S job.toml` in a terminal: the job runs in
/// the dashboard's process (its task is a descendant of it, not of the run), the run follows
/// it and exits 0 when it succeeds; the dashboard still serves the directory afterwards.
#[test]
fn served_state_dir_of_a_dashboard_runs_a_terminals_job() {
    let d = Dir::new();
    let state = d.state();
    let ui = Ui::start(d.path(), &["--state", &state]);
    assert!(
        wait_until(Duration::from_secs(10), || d.socket().exists()),
        "the dashboard does not serve st/ordo.sock: {}",
        ui.log()
    );
    let mut run = d.spawn_run();
    let job = d.the_job(&run);
    d.wait_running(&job, &["sleeper"], &run);
    let pid: u32 = std::fs::read_to_string(d.path().join("pids/sleeper"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ancestors = ancestors(pid);
    assert!(
        ancestors.contains(&ui.pid()) && !ancestors.contains(&run.pid()),
        "the task {pid} runs under {ancestors:?}, not the dashboard {}",
        ui.pid()
    );
    assert_eq!(ui.job_state(&job), "running");
    std::fs::write(d.path().join("go"), "").unwrap();
    d.release();
    let status = run.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}\n{}", run.log(), ui.log());
    assert!(run.log().contains("runs there"), "{}", run.log());
    assert_eq!(d.status(&job)["state"], "succeeded");
    ui.wait_state(&job, "succeeded", Duration::from_secs(10));
    assert!(
        d.socket().exists(),
        "the dashboard still serves the directory"
    );
}

/// `ordo run --state S other.toml` while a run serves S follows its job there; when the serving
/// run is killed, the follower comes to the directory itself and takes up the jobs the killed
/// process ran (its own and the killed run's), serves them both to their end, and exits 0.
#[test]
fn served_state_dir_follower_takes_over_when_its_server_is_killed() {
    let d = Dir::new();
    let mut server = d.spawn_run();
    let long = d.the_job(&server);
    d.wait_running(&long, &["sleeper"], &server);
    let other = write(
        d.path(),
        "other.toml",
        &format!(
            "name = \"other\"\n[[tasks]]\nname = \"wait\"\n\
             command = \"until [ -e '{}' ]; do sleep 0.05; done\"\n",
            d.path().join("go2").display()
        ),
    );
    let state = d.state();
    let mut follower = Daemon::spawn("ordo", &["run", &other, "--state", &state], d.path());
    let mut job = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let r = d.ordo(&["status", "--output", "json"]);
            job = r
                .json()
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["name"] == "other")
                .map(|j| j["id"].as_str().unwrap().to_string())
                .unwrap_or_default();
            !job.is_empty()
        }),
        "{}",
        follower.log()
    );
    d.wait_running(&job, &["wait"], &follower);
    assert!(follower.log().contains("runs there"), "{}", follower.log());

    server.stop(libc::SIGKILL);
    // Its own job runs on in the follower, which then serves the killed run's job to its end.
    std::fs::write(d.path().join("go2"), "").unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || d.status(&job)["state"]
            == "succeeded"),
        "{}",
        follower.log()
    );
    d.wait_running(&long, &["gate", "sleeper"], &follower);
    assert!(
        wait_until(Duration::from_secs(10), || follower
            .log()
            .contains("waiting for 1 job")),
        "{}",
        follower.log()
    );
    std::fs::write(d.path().join("go"), "").unwrap();
    d.release();
    let status = follower.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", follower.log());
    assert_eq!(d.status(&long)["state"], "succeeded");
    assert!(!d.socket().exists());
}

/// The parent, grandparent, ... of a process, from `/proc`.
fn ancestors(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = pid;
    while pid > 1 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        pid = after.split_whitespace().nth(1).unwrap().parse().unwrap();
        out.push(pid);
    }
    out
}
