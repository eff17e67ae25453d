//! `ordo ui`, the web dashboard, as a real process: its pages rendered in headless Chromium
//! (driven over the DevTools protocol, `ordo_tests::chromium`) with no script errors; a
//! running job's page and task page following the job without a reload; cancel, retry and
//! re-run through the forms; CSRF, `--read-only` and the token rules; hostile task names and
//! output shown as text; and the dashboard of a cluster. Screenshots of the pages go to
//! `target/dashboard-screenshots/` for people to look at.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

use ordo_tests::chromium::{self, Browser, Page};
use ordo_tests::{Cluster, bin, bin_dir, git, ordo_in, run_with_deadline, wait_until, write};
use serde_json::json;

/// A running `ordo ui`, killed on drop.
pub(crate) struct Ui {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    base: String,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Ui {
    /// `ordo ui ARGS` in `cwd` (`--listen 127.0.0.1:0` unless ARGS say otherwise); waits for
    /// the URL it prints.
    pub(crate) fn start(cwd: &Path, args: &[&str]) -> Ui {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("ui.log");
        let mut all = vec!["ui"];
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        all.extend_from_slice(args);
        let mut child = Command::new(bin("ordo"))
            .args(&all)
            .current_dir(cwd)
            .env_remove("ORDO_EXECUTION_MODE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ordo ui");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "ordo ui printed no URL:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let url = line.trim().trim_end_matches('/').to_string();
        assert!(
            url.starts_with("http://"),
            "not a URL: {line:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Listening on every address: reach it on loopback.
        let base = url.replace("0.0.0.0", "127.0.0.1");
        Ui {
            child,
            base,
            log,
            _logdir: logdir,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (within 30 s).
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        ordo_tests::signal(self.child.id(), libc::SIGTERM);
        ordo_tests::wait_child(&mut self.child, Duration::from_secs(30))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    fn post(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        self.request("POST", path, headers, Some(form(fields)))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Resp {
        http(&self.base, method, path, headers, body)
    }

    /// The hidden CSRF field of the page at `path` (every form has the same).
    fn csrf(&self, path: &str) -> String {
        let page = self.get(path);
        field(&page.body, "name=\"csrf\" value=\"", "\"")
            .unwrap_or_else(|| panic!("no csrf field on {path}:\n{}", page.body))
    }

    /// Submits spec text through the jobs page's form; the new job's id.
    fn submit(&self, spec: &str) -> String {
        let csrf = self.csrf("/");
        let r = self.post("/jobs", &[("csrf", &csrf), ("spec", spec)], &[]);
        assert_eq!(r.status, 303, "submit: {}\n{}", r.body, self.log());
        let to = r.header("location").expect("a redirect");
        to.strip_prefix("/jobs/").expect("to the job").to_string()
    }

    /// The job's state as its page shows it.
    pub(crate) fn job_state(&self, job: &str) -> String {
        let page = self.get(&format!("/jobs/{job}"));
        assert_eq!(page.status, 200, "{}", page.body);
        let chip = &page.body[page.body.find("data-f=\"job-state\"").expect("chip")..];
        field(chip, "<i>", "</i>").unwrap()
    }

    pub(crate) fn wait_state(&self, job: &str, state: &str, limit: Duration) {
        let mut last = String::new();
        assert!(
            wait_until(limit, || {
                last = self.job_state(job);
                last == state
            }),
            "job {job} is {last}, not {state}, after {limit:?}\n{}",
            self.log()
        );
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    head: String,
    pub(crate) body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One HTTP/1.1 request (`Connection: close`); a `Host` header in `headers` replaces the
/// default.
fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Resp {
    let authority = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(authority).unwrap_or_else(|e| panic!("{base}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {authority}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if method == "POST" {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The text between `start` and the next `end` in `s`.
fn field(s: &str, start: &str, end: &str) -> Option<String> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(s[from..to].to_string())
}

fn screenshots() -> PathBuf {
    bin_dir()
        .parent()
        .map_or_else(bin_dir, Path::to_path_buf)
        .join("dashboard-screenshots")
}

pub(crate) fn browser() -> Browser {
    assert!(
        chromium::available(),
        "chromium is not installed: scripts/test installs it (apt-get install chromium)"
    );
    Browser::start(1280, 900)
}

/// Opens `url` in a new tab and checks it loaded with no script or console error.
pub(crate) fn open_clean(b: &mut Browser, url: &str) -> Page {
    let page = b.open(url);
    assert_no_errors(b, &page, url);
    page
}

pub(crate) fn assert_no_errors(b: &mut Browser, page: &Page, what: &str) {
    let errors = page.errors(b);
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

/// The text of the first element matching `selector`, as a JS expression.
pub(crate) fn text_of(selector: &str) -> String {
    format!(
        "(document.querySelector({}) || {{}}).textContent",
        json!(selector)
    )
}

const HOSTILE_NAME: &str = r#"evil <script>window.__pwned=1</script> "dq" 'sq'"#;

#[test]
fn pages_render_in_chromium_and_hostile_names_and_output_stay_text() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let ui = Ui::start(dir.path(), &["--state", state.to_str().unwrap()]);
    let spec = format!(
        "name = \"hostile <b>job</b>\"\n\
         [[tasks]]\nname = '''{HOSTILE_NAME}'''\n\
         command = '''printf '\\033[31mRED\\033[0m <img src=x onerror=\"window.__pwned=2\"> \"dq\" \\377\\376 end\\n' '''\n\
         [[tasks]]\nname = \"after\"\ncommand = \"echo fine\"\nverify_command = \"true\"\n\
         depends_on = ['''{HOSTILE_NAME}''']\n"
    );
    let job = ui.submit(&spec);
    ui.wait_state(&job, "succeeded", Duration::from_secs(60));

    // As served: escaped markup, never raw.
    let page = ui.get(&format!("/jobs/{job}/tasks/0"));
    assert!(!page.body.contains("<script>window"), "{}", page.body);
    assert!(!page.body.contains("<img"), "{}", page.body);
    assert!(
        page.body
            .contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;")
    );
    assert!(!page.body.contains('\u{1b}'), "ANSI escapes are dropped");
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    // An ended job's events: its final states once, then the end; nothing polled.
    let ev = ui.get(&format!("/events?job={job}"));
    assert_eq!(ev.status, 200);
    assert_eq!(ev.body.matches("data: {\"job\"").count(), 1, "{}", ev.body);
    assert!(
        ev.body
            .trim_end()
            .ends_with("data: {\"state\":\"succeeded\"}"),
        "{}",
        ev.body
    );
    assert!(ev.body.contains("event: end"), "{}", ev.body);

    let shots = screenshots();
    let mut b = browser();
    let pages = [
        ("/", Some("jobs.png")),
        (&*format!("/jobs/{job}"), Some("job.png")),
        (&*format!("/jobs/{job}/tasks/0"), Some("task.png")),
        (&*format!("/jobs/{job}/tasks/1"), None),
        ("/workers", None),
        ("/?state=failed&q=nothing", None),
    ];
    for (path, shot) in pages {
        let p = open_clean(&mut b, &ui.url(path));
        assert_eq!(
            p.eval(&mut b, "window.__pwned === undefined"),
            json!(true),
            "{path}"
        );
        assert_eq!(
            p.eval(&mut b, "document.scripts.length"),
            json!(1),
            "{path}: only the dashboard's own script"
        );
        if let Some(name) = shot {
            p.screenshot(&mut b, &shots.join(name));
        }
    }

    // The job: its name as text, the graph, the grid, the timeline.
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    let h1 = p.eval(&mut b, &text_of("h1"));
    assert!(h1.as_str().unwrap().contains("hostile <b>job</b>"), "{h1}");
    assert_eq!(
        p.eval(&mut b, "document.querySelectorAll('svg.dag g.node').length"),
        json!(2)
    );
    assert_eq!(
        p.eval(
            &mut b,
            "document.querySelectorAll('svg.gantt rect.bar').length"
        ),
        json!(2)
    );
    assert_eq!(
        p.eval(&mut b, &text_of("tr[data-task=\"0\"] a")),
        json!(HOSTILE_NAME)
    );
    assert_eq!(
        p.eval(&mut b, &text_of("tr[data-task=\"1\"] [data-f=\"state\"] i")),
        json!("succeeded")
    );

    // The task: name and output as text; no escape sequence; invalid UTF-8 replaced.
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}/tasks/0")));
    let h1 = p.eval(&mut b, &text_of("h1"));
    assert!(h1.as_str().unwrap().contains(HOSTILE_NAME), "{h1}");
    let log = p.eval(&mut b, &text_of("pre.log"));
    let log = log.as_str().unwrap();
    assert!(
        log.contains("RED <img src=x onerror=\"window.__pwned=2\"> \"dq\" \u{fffd}"),
        "{log:?}"
    );
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert_eq!(
        p.eval(
            &mut b,
            "document.querySelectorAll('main img, main script').length"
        ),
        json!(0)
    );
    // Pages without JavaScript need no script: every link and form is plain HTML.
    let task1 = ui.get(&format!("/jobs/{job}/tasks/1"));
    assert!(task1.body.contains("<h2>Verify</h2>"), "{}", task1.body);
    assert!(task1.body.contains("passed"), "{}", task1.body);
    drop(b);

    // On a phone: nothing wider than the screen but what scrolls inside its own box.
    let mut phone = Browser::start(390, 844);
    for (path, shot) in [
        ("/".to_string(), "phone-jobs.png"),
        (format!("/jobs/{job}"), "phone-job.png"),
        (format!("/jobs/{job}/tasks/0"), "phone-task.png"),
    ] {
        let p = open_clean(&mut phone, &ui.url(&path));
        assert_eq!(
            p.eval(
                &mut phone,
                "document.documentElement.scrollWidth <= window.innerWidth + 1"
            ),
            json!(true),
            "{path} is wider than a phone: {} > {}",
            p.eval(&mut phone, "document.documentElement.scrollWidth"),
            p.eval(&mut phone, "window.innerWidth")
        );
        p.screenshot(&mut phone, &shots.join(shot));
    }

    // SIGTERM: the server stops, exit 0.
    let mut ui = ui;
    assert!(ui.stop().success(), "{}", ui.log());
}

#[test]
fn a_large_jobs_page_is_paged_and_its_fan_out_collapsed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // root → 300 tasks → sink
    let mut spec = String::from("name = \"fan\"\n[[tasks]]\nname = \"root\"\ncommand = \"true\"\n");
    for i in 0..300 {
        spec.push_str(&format!(
            "[[tasks]]\nname = \"leaf-{i}\"\ncommand = \"true\"\ndepends_on = [\"root\"]\n"
        ));
    }
    let leaves: Vec<String> = (0..300).map(|i| format!("\"leaf-{i}\"")).collect();
    spec.push_str(&format!(
        "[[tasks]]\nname = \"sink\"\ncommand = \"true\"\ndepends_on = [{}]\n",
        leaves.join(", ")
    ));
    let file = write(dir.path(), "fan.toml", &spec);
    let run = ordo_in(
        dir.path(),
        &[
            "run",
            &file,
            "--state",
            state.to_str().unwrap(),
            "--workers",
            "2",
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let ui = Ui::start(dir.path(), &["--state", state.to_str().unwrap()]);
    let list = ui.get("/");
    let job = field(&list.body, "<a href=\"/jobs/", "\"").expect("the job is listed");

    let mut b = browser();
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    p.screenshot(&mut b, &screenshots().join("job-large.png"));
    assert_eq!(
        p.eval(
            &mut b,
            "document.querySelectorAll('table.grid tbody tr').length"
        ),
        json!(100),
        "a page of the grid"
    );
    assert_eq!(
        p.eval(&mut b, &text_of("nav.pager span")),
        json!("page 1 of 4")
    );
    assert_eq!(
        p.eval(&mut b, "document.querySelectorAll('svg.dag g.node').length"),
        json!(3),
        "root, one box for the 300 leaves, sink"
    );
    assert!(
        p.eval(&mut b, &text_of("svg.dag g.group text"))
            .as_str()
            .unwrap()
            .contains("300 tasks")
    );
    assert_eq!(
        p.eval(
            &mut b,
            "document.querySelectorAll('svg.gantt rect.bar').length"
        ),
        json!(100),
        "the timeline of the page's tasks"
    );
    // The last page, through its link.
    let before = p.loads(&mut b);
    p.eval(
        &mut b,
        "[...document.querySelectorAll('nav.pager a')].find(a => a.textContent.startsWith('last')).click(); true",
    );
    p.wait_load_after(&mut b, before);
    assert_eq!(
        p.eval(
            &mut b,
            "document.querySelectorAll('table.grid tbody tr').length"
        ),
        json!(2)
    );
    assert_eq!(
        p.eval(&mut b, &text_of("table.grid tbody tr:last-child a")),
        json!("sink")
    );
    assert_no_errors(&mut b, &p, "last page");
    // Filtered by state.
    let failed = ui.get(&format!("/jobs/{job}?state=failed"));
    assert!(failed.body.contains("0 of 302 tasks"), "{}", failed.body);
}

#[test]
fn a_running_jobs_pages_and_the_jobs_list_follow_it_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let gate = dir.path().join("go");
    let ui = Ui::start(dir.path(), &["--state", state.to_str().unwrap()]);
    let spec = format!(
        "name = \"live\"\n[[tasks]]\nname = \"gate\"\n\
         command = \"while [ ! -f '{}' ]; do sleep 0.05; done; echo released-output\"\n\
         [[tasks]]\nname = \"after\"\ncommand = \"echo after\"\ndepends_on = [\"gate\"]\n",
        gate.display()
    );
    let job = ui.submit(&spec);
    let mut b = browser();
    let page = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    let task = open_clean(&mut b, &ui.url(&format!("/jobs/{job}/tasks/0")));
    let list = open_clean(&mut b, &ui.url("/"));
    let row = |f: &str| text_of(&format!("tr[data-job=\"{job}\"] [data-f=\"{f}\"]"));
    let gate_state = text_of("tr[data-task=\"0\"] [data-f=\"state\"] i");
    assert!(
        page.wait_for(
            &mut b,
            &format!("['dispatched', 'running'].includes({gate_state})"),
            Duration::from_secs(20)
        ),
        "the gate task never ran: {}",
        page.eval(&mut b, &gate_state)
    );
    assert_eq!(
        page.eval(&mut b, &text_of("[data-f=\"job-state\"] i")),
        json!("running")
    );
    page.screenshot(&mut b, &screenshots().join("job-running.png"));
    // Marks in the documents: a reload would lose them.
    page.eval(&mut b, "window.__marker = 42");
    task.eval(&mut b, "window.__marker = 43");
    list.eval(&mut b, "window.__marker = 44");
    let loads = (page.loads(&mut b), task.loads(&mut b));
    let list_loads = list.loads(&mut b);
    assert_eq!(list.eval(&mut b, &row("count")), json!("0/2"));

    std::fs::write(&gate, "").unwrap();
    let done = format!(
        "{} === 'succeeded' && {} === 'succeeded'",
        text_of("tr[data-task=\"1\"] [data-f=\"state\"] i"),
        text_of("[data-f=\"job-state\"] i")
    );
    assert!(
        page.wait_for(&mut b, &done, Duration::from_secs(30)),
        "the page did not follow the job: gate {}, after {}\n{}",
        page.eval(&mut b, &gate_state),
        page.eval(&mut b, &text_of("tr[data-task=\"1\"] [data-f=\"state\"] i")),
        ui.log()
    );
    assert_eq!(page.eval(&mut b, "window.__marker"), json!(42), "no reload");
    assert_eq!(page.loads(&mut b), loads.0, "no reload");
    assert_eq!(
        page.eval(&mut b, &text_of("[data-f=\"succeeded\"]")),
        json!("2")
    );
    assert_eq!(
        page.eval(
            &mut b,
            "document.querySelector('g[data-task=\"0\"] rect').getAttribute('class')"
        ),
        json!("box o-succeeded crit"),
        "the graph node is recoloured"
    );
    assert!(page.wait_for(
        &mut b,
        "document.body.dataset.liveEnded === 'succeeded'",
        Duration::from_secs(10)
    ));
    page.screenshot(&mut b, &screenshots().join("job-followed.png"));

    // The jobs list: the job's row, then a job submitted since the page opened. It follows
    // while its tab is the visible one.
    list.front(&mut b);
    assert!(
        list.wait_for(
            &mut b,
            &format!(
                "{} === 'succeeded' && {} === '2/2'",
                text_of(&format!("tr[data-job=\"{job}\"] [data-f=\"job-state\"] i")),
                row("count")
            ),
            Duration::from_secs(20)
        ),
        "the jobs list did not follow: {}",
        list.eval(&mut b, &row("count"))
    );
    let other = ui.submit("name = \"another\"\n[[tasks]]\nname = \"t\"\ncommand = \"true\"\n");
    assert!(
        list.wait_for(
            &mut b,
            &format!(
                "{}.startsWith('1 new job')",
                text_of("[data-f=\"new-jobs\"]")
            ),
            Duration::from_secs(20)
        ),
        "no note of {other}: {}",
        list.eval(&mut b, &text_of("[data-f=\"new-jobs\"]"))
    );
    assert_eq!(list.eval(&mut b, "window.__marker"), json!(44), "no reload");
    assert_eq!(list.loads(&mut b), list_loads, "no reload");
    list.screenshot(&mut b, &screenshots().join("jobs-followed.png"));

    // The task page: its state and its log, live.
    assert!(
        task.wait_for(
            &mut b,
            &format!(
                "{}.includes('released-output') && {} === 'succeeded'",
                text_of("pre.log"),
                text_of("h1 [data-f=\"state\"] i")
            ),
            Duration::from_secs(30)
        ),
        "the task page did not follow: {}",
        task.eval(&mut b, &text_of("pre.log"))
    );
    assert_eq!(task.eval(&mut b, "window.__marker"), json!(43), "no reload");
    assert_eq!(task.loads(&mut b), loads.1, "no reload");
    assert_no_errors(&mut b, &page, "job page");
    assert_no_errors(&mut b, &task, "task page");
    assert_no_errors(&mut b, &list, "jobs page");
}

/// Clicks the button of the form posting to `.../{action}` and waits for the page it leads to.
fn click(b: &mut Browser, page: &Page, action: &str) {
    let before = page.loads(b);
    let clicked = page.eval(
        b,
        &format!(
            "(() => {{ const x = document.querySelector('form[action$=\"/{action}\"] button'); \
             if (!x || x.disabled) return false; x.click(); return true; }})()"
        ),
    );
    assert_eq!(clicked, json!(true), "no enabled {action} button");
    page.wait_load_after(b, before);
}

#[test]
fn cancel_retry_and_rerun_through_the_forms_change_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mark = dir.path().join("second-time");
    let ui = Ui::start(dir.path(), &["--state", state.to_str().unwrap()]);
    let mut b = browser();

    // Cancel a running job.
    let long =
        ui.submit("name = \"long\"\n[[tasks]]\nname = \"sleeper\"\ncommand = \"sleep 60\"\n");
    let page = open_clean(&mut b, &ui.url(&format!("/jobs/{long}")));
    // Without the form's csrf field (or with a wrong one) a POST changes nothing.
    let path = format!("/jobs/{long}/cancel");
    assert_eq!(ui.post(&path, &[], &[]).status, 403);
    assert_eq!(ui.post(&path, &[("csrf", "0123")], &[]).status, 403);
    assert_eq!(ui.job_state(&long), "running");
    click(&mut b, &page, "cancel");
    assert!(
        page.wait_for(
            &mut b,
            &format!("{} === 'cancelled'", text_of("[data-f=\"job-state\"] i")),
            Duration::from_secs(30)
        ),
        "{}",
        page.eval(&mut b, &text_of("[data-f=\"job-state\"] i"))
    );
    assert_eq!(ui.job_state(&long), "cancelled");
    assert_no_errors(&mut b, &page, "after cancel");

    // Retry a failed job: its task fails the first time only.
    let flaky = ui.submit(&format!(
        "name = \"flaky\"\n[[tasks]]\nname = \"once\"\n\
         command = \"if [ -f '{m}' ]; then echo second; else touch '{m}'; exit 3; fi\"\n",
        m = mark.display()
    ));
    ui.wait_state(&flaky, "failed", Duration::from_secs(30));
    let page = open_clean(&mut b, &ui.url(&format!("/jobs/{flaky}")));
    assert_eq!(
        page.eval(
            &mut b,
            "document.querySelector('form[action$=\"/cancel\"] button').disabled"
        ),
        json!(true),
        "an ended job cannot be cancelled"
    );
    click(&mut b, &page, "retry");
    assert!(
        page.wait_for(
            &mut b,
            &format!(
                "{} === 'succeeded' && {} === '2'",
                text_of("[data-f=\"job-state\"] i"),
                text_of("tr[data-task=\"0\"] [data-f=\"attempts\"]")
            ),
            Duration::from_secs(30)
        ),
        "retry: {} {}",
        page.eval(&mut b, &text_of("[data-f=\"job-state\"] i")),
        ui.log()
    );
    assert_eq!(ui.job_state(&flaky), "succeeded");
    // Retry is for failed jobs only.
    let csrf = ui.csrf("/");
    let again = ui.post(&format!("/jobs/{flaky}/retry"), &[("csrf", &csrf)], &[]);
    assert_eq!(again.status, 409, "{}", again.body);

    // Re-run: the same spec as a new job.
    page.navigate(&mut b, &ui.url(&format!("/jobs/{flaky}")));
    click(&mut b, &page, "rerun");
    let path = page.eval(&mut b, "location.pathname");
    let path = path.as_str().unwrap().to_string();
    assert_ne!(path, format!("/jobs/{flaky}"), "a new job");
    let rerun = path.strip_prefix("/jobs/").unwrap().to_string();
    ui.wait_state(&rerun, "succeeded", Duration::from_secs(30));
    let list = ui.get("/");
    assert_eq!(list.body.matches("data-f=\"job-state\"").count(), 3);
    assert!(list.body.contains(&rerun));
    assert_no_errors(&mut b, &page, "after re-run");
}

#[test]
fn read_only_refuses_every_post_and_shows_actions_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let spec = write(
        dir.path(),
        "fails.toml",
        "name = \"fails\"\n[[tasks]]\nname = \"bad\"\ncommand = \"exit 4\"\n",
    );
    let run = ordo_in(
        dir.path(),
        &["run", &spec, "--state", state.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr);
    let ui = Ui::start(
        dir.path(),
        &["--state", state.to_str().unwrap(), "--read-only"],
    );
    let list = ui.get("/");
    let job = field(&list.body, "<a href=\"/jobs/", "\"").expect("the job is listed");
    let page = ui.get(&format!("/jobs/{job}"));
    let actions = field(&page.body, "<div class=\"actions\">", "</div>").unwrap();
    assert_eq!(actions.matches(" disabled").count(), 3, "{actions}");
    assert!(page.body.contains("read-only"));
    let csrf = ui.csrf("/");
    for path in [
        format!("/jobs/{job}/retry"),
        format!("/jobs/{job}/rerun"),
        format!("/jobs/{job}/cancel"),
    ] {
        let r = ui.post(&path, &[("csrf", &csrf)], &[]);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("read-only"), "{}", r.body);
    }
    let spec = "[[tasks]]\nname = \"x\"\ncommand = \"true\"\n";
    let r = ui.post("/jobs", &[("csrf", &csrf), ("spec", spec)], &[]);
    assert_eq!(r.status, 403);
    assert_eq!(ui.get("/").body.matches("data-f=\"job-state\"").count(), 1);
    assert_eq!(ui.job_state(&job), "failed");

    let mut b = browser();
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    assert_eq!(
        p.eval(
            &mut b,
            "[...document.querySelectorAll('.actions button')].every(x => x.disabled)"
        ),
        json!(true)
    );
    let p = open_clean(&mut b, &ui.url("/"));
    assert_eq!(
        p.eval(
            &mut b,
            "document.querySelector('textarea[name=spec]').disabled"
        ),
        json!(true)
    );
}

#[test]
fn tokens_guard_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    // Every address but loopback needs a token.
    let mut cmd = Command::new(bin("ordo"));
    cmd.args(["ui", "--state", state, "--listen", "0.0.0.0:0"])
        .current_dir(dir.path());
    let r = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a loopback address") && r.stderr.contains("--token-file"),
        "{}",
        r.stderr
    );
    let mut cmd = Command::new(bin("ordo"));
    let empty = write(dir.path(), "empty", "\n");
    cmd.args(["ui", "--state", state, "--token-file", &empty])
        .current_dir(dir.path());
    let r = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&empty) && r.stderr.contains("empty"),
        "{}",
        r.stderr
    );
    // A token that could be guessed is refused at start, with the command that makes one.
    let short = write(dir.path(), "short", "s3cret-token-42\n");
    let mut cmd = Command::new(bin("ordo"));
    cmd.args(["ui", "--state", state, "--token-file", &short])
        .current_dir(dir.path());
    let r = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("15 characters; at least 16")
            && r.stderr.contains("head -c 24 /dev/urandom | base64 >"),
        "{}",
        r.stderr
    );

    // Without a token, only loopback Host names are answered (DNS rebinding).
    {
        let ui = Ui::start(dir.path(), &["--state", state]);
        assert_eq!(ui.get("/").status, 200);
        let r = ui.request("GET", "/", &[("Host", "evil.example:8080")], None);
        assert_eq!(r.status, 421, "{}", r.body);
    }

    let token = "s3cret-token-4242";
    let file = write(dir.path(), "token", &format!("{token}\n"));
    let ui = Ui::start(
        dir.path(),
        &[
            "--state",
            state,
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            &file,
        ],
    );
    let r = ui.get("/");
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("action=\"/login\""),
        "the login form: {}",
        r.body
    );
    let bearer = format!("Bearer {token}");
    let ok = ui.request("GET", "/", &[("Authorization", &bearer)], None);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("<h1>Jobs</h1>"));
    let wrong = ui.request("GET", "/", &[("Authorization", "Bearer nope")], None);
    assert_eq!(wrong.status, 401);
    assert_eq!(ui.get("/workers").status, 401);
    assert_eq!(ui.get("/events?job=0").status, 401);
    let csrf = ui.csrf("/login");
    let spec = "[[tasks]]\nname = \"x\"\ncommand = \"true\"\n";
    assert_eq!(
        ui.post("/jobs", &[("csrf", &csrf), ("spec", spec)], &[])
            .status,
        401
    );
    // With the bearer, POSTs still need the csrf field.
    let r = ui.post("/jobs", &[("spec", spec)], &[("Authorization", &bearer)]);
    assert_eq!(r.status, 403);

    // The login form: a wrong token, no csrf, then the right one and its cookie.
    let r = ui.post(
        "/login",
        &[("csrf", &csrf), ("token", "nope"), ("next", "/")],
        &[],
    );
    assert_eq!(r.status, 401);
    let r = ui.post("/login", &[("token", token), ("next", "/")], &[]);
    assert_eq!(r.status, 403);
    let r = ui.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("token", token),
            ("next", "//evil.example/"),
        ],
        &[],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location").as_deref(),
        Some("/"),
        "no open redirect"
    );
    // Browsers drop a tab from a URL: "/\t/evil.example" would lead to //evil.example.
    for next in ["/\t/evil.example", "/\n/evil.example", "/\\evil.example"] {
        let r = ui.post(
            "/login",
            &[("csrf", &csrf), ("token", token), ("next", next)],
            &[],
        );
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location").as_deref(), Some("/"), "{next:?}");
    }
    let cookie = r.header("set-cookie").expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.contains(token), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap();
    let r = ui.request("GET", "/workers", &[("Cookie", session)], None);
    assert_eq!(r.status, 200, "{}", r.body);

    // In a browser: the login page reached with a next= that would leave the site, then the
    // jobs page of this site.
    let mut b = browser();
    let p = b.open(&ui.url("/login?next=/%09/evil.example"));
    assert_eq!(p.eval(&mut b, &text_of("h1")), json!("Log in"));
    let before = p.loads(&mut b);
    p.eval(
        &mut b,
        &format!(
            "document.querySelector('input[name=token]').value = {}; \
             document.querySelector('form.login').submit(); true",
            json!(token)
        ),
    );
    p.wait_load_after(&mut b, before);
    assert!(p.wait_for(
        &mut b,
        &format!("{} === 'Jobs'", text_of("h1")),
        Duration::from_secs(10)
    ));
    assert_eq!(
        p.eval(&mut b, "location.href"),
        json!(ui.url("/")),
        "the login stayed on this site"
    );
    assert_no_errors(&mut b, &p, "login");

    // Failed logins are limited per client: five a minute, then even the right token waits.
    let mut refused = 1; // the wrong token above
    while refused < 5 {
        let r = ui.post(
            "/login",
            &[("csrf", &csrf), ("token", "guess"), ("next", "/")],
            &[],
        );
        assert_eq!(r.status, 401, "{}", r.body);
        refused += 1;
    }
    let r = ui.post(
        "/login",
        &[("csrf", &csrf), ("token", token), ("next", "/")],
        &[],
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some(), "{}", r.head);
    // Bearer requests do not go through the form and are not held up.
    let ok = ui.request("GET", "/", &[("Authorization", &bearer)], None);
    assert_eq!(ok.status, 200);
}

#[test]
fn event_streams_are_capped_per_client_and_large_specs_are_submitted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let ui = Ui::start(dir.path(), &["--state", state.to_str().unwrap()]);
    let authority = ui.base.trim_start_matches("http://").to_string();
    let open_stream = || {
        let mut s = TcpStream::connect(&authority).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("GET /events/jobs HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        let status: u16 = String::from_utf8_lossy(&head[9..12]).parse().unwrap();
        (s, status)
    };
    let mut open = Vec::new();
    for i in 0..16 {
        let (s, status) = open_stream();
        assert_eq!(status, 200, "stream {i}");
        open.push(s);
    }
    let (_, status) = open_stream();
    assert_eq!(status, 429, "a 17th stream from one client");
    // Pages still load while the streams are open.
    assert_eq!(ui.get("/").status, 200);
    drop(open);

    // A spec over the 2 MB a form body used to be allowed, under the CLI's 64 MiB.
    let spec = format!(
        "[[tasks]]\nname = \"big\"\ncommand = \"true\"\ndescription = \"{}\"\n",
        "x".repeat(3 << 20)
    );
    let job = ui.submit(&spec);
    ui.wait_state(&job, "succeeded", Duration::from_secs(60));
}

#[test]
fn the_dashboard_of_a_cluster() {
    let mut c = Cluster::start(&[]);
    c.add_worker("w-ui", &["--concurrency", "2"]);
    let ui = Ui::start(c.work.path(), &["--nats", &c.nats.url()]);
    let job = ui.submit(
        "name = \"on the cluster\"\n[[tasks]]\nname = \"one\"\ncommand = \"echo from-the-worker\"\n\
         [[tasks]]\nname = \"two\"\ncommand = \"echo two\"\ndepends_on = [\"one\"]\n",
    );
    ui.wait_state(&job, "succeeded", Duration::from_secs(60));
    let workers = ui.get("/workers");
    assert!(workers.body.contains("w-ui"), "{}", workers.body);
    let mut b = browser();
    open_clean(&mut b, &ui.url("/"));
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    assert_eq!(
        p.eval(&mut b, &text_of("tr[data-task=\"0\"] [data-f=\"worker\"]")),
        json!("w-ui")
    );
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}/tasks/0")));
    let log = p.eval(&mut b, &text_of("pre.log"));
    assert!(log.as_str().unwrap().contains("from-the-worker"), "{log}");
    let p = open_clean(&mut b, &ui.url("/workers"));
    p.screenshot(&mut b, &screenshots().join("workers.png"));
    assert_eq!(
        p.eval(&mut b, &text_of("table.grid td code")),
        json!("w-ui")
    );

    // A running task's log follows the worker's output as it streams, not only at the end.
    let gate = c.work.path().join("go");
    let job = ui.submit(&format!(
        "name = \"streaming\"\n[[tasks]]\nname = \"talker\"\n\
         command = \"echo first-line; while [ ! -f '{}' ]; do sleep 0.05; done; echo last-line\"\n",
        gate.display()
    ));
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}/tasks/0")));
    p.eval(&mut b, "window.__marker = 7");
    assert!(
        p.wait_for(
            &mut b,
            &format!("{}.includes('first-line')", text_of("pre.log")),
            Duration::from_secs(30)
        ),
        "the log did not follow the running task: {:?}\n{}",
        p.eval(&mut b, &text_of("pre.log")),
        ui.log()
    );
    assert_eq!(
        p.eval(&mut b, &text_of("h1 [data-f=\"state\"] i")),
        json!("running")
    );
    std::fs::write(&gate, "").unwrap();
    assert!(
        p.wait_for(
            &mut b,
            &format!(
                "{}.includes('last-line') && {} === 'succeeded'",
                text_of("pre.log"),
                text_of("h1 [data-f=\"state\"] i")
            ),
            Duration::from_secs(30)
        ),
        "{:?}",
        p.eval(&mut b, &text_of("pre.log"))
    );
    assert_eq!(p.eval(&mut b, "window.__marker"), json!(7), "no reload");
    assert_no_errors(&mut b, &p, "cluster task page");
}

#[test]
fn a_worktree_jobs_page_shows_its_integration_branch_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&marks).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Ordo Test"]);
    git(&repo, &["config", "user.email", "test@ordo.invalid"]);
    git(&repo, &["config", "commit.gpgsign", "false"]);
    write(&repo, "shared.txt", "line1\nline2\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    // `late` starts from the empty branch; `early` changes line 1 and integrates first; then
    // `late` changes line 1 too: a conflict, re-run, both changes land.
    let spec = write(
        dir.path(),
        "conflict.toml",
        &format!(
            r#"
name = "conflict"
[settings]
workspace = "worktree"
target_branch = "it"
timeout = "20s"
env = {{ MARKS = "{marks}" }}
{pair}"#,
            marks = marks.display(),
            pair = ordo_tests::conflicting_pair("git show it:shared.txt")
        ),
    );
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let r = ordo_in(
        &repo,
        &["run", &spec, "--state", state, "--workers", "4"],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr);

    let ui = Ui::start(&repo, &["--state", state]);
    let list = ui.get("/");
    let job = field(&list.body, "<a href=\"/jobs/", "\"").expect("the job is listed");
    let page = ui.get(&format!("/jobs/{job}"));
    let section = page
        .body
        .split("<h2>Integration</h2>")
        .nth(1)
        .unwrap_or_else(|| panic!("no Integration section:\n{}", page.body));
    assert!(section.contains("Branch <code>it</code>"), "{section}");
    assert!(section.contains("shared.txt with early"), "{section}");
    let late = ui.get(&format!("/jobs/{job}/tasks/1"));
    assert!(late.body.contains("conflicts: shared.txt"), "{}", late.body);

    let mut b = browser();
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    assert_eq!(
        p.eval(
            &mut b,
            &text_of("tr[data-task=\"1\"] [data-f=\"attempts\"]")
        ),
        json!("1"),
        "the conflicting task ran again, and a conflict is no attempt spent"
    );
    assert!(
        late.body.contains("o-conflict"),
        "the conflicted run: {}",
        late.body
    );
    open_clean(&mut b, &ui.url(&format!("/jobs/{job}/tasks/1")));
}

/// The job page's "Retry failed" does what `ordo retry --failed-only` does, and the task page's
/// "Retry this task" what `ordo retry --task` does: in a worktree job of agent tasks, a task
/// that succeeded never runs again (1 attempt, its change on the integration branch once, its
/// cost paid once); only the retried runs add to the job's cost.
#[test]
fn retry_failed_and_retry_one_task_run_only_what_did_not_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&marks).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Ordo Test"]);
    git(&repo, &["config", "user.email", "test@ordo.invalid"]);
    write(&repo, "lib.py", "# helpers\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    // `flaky`'s verify fails the first two times it runs (once per retry), then passes.
    let spec = format!(
        r#"name = "retry-failed"
[settings]
workspace = "worktree"
target_branch = "it"
agent = "claude"
agent_command = ["{stub}"]
env = {{ STUB_COST = "0.25", STUB_STATE = "{marks}" }}

[[tasks]]
name = "helper"
prompt = "append lib.py: def helper(): pass"

[[tasks]]
name = "flaky"
prompt = "append notes.txt: flaky was here"
max_attempts = 1
verify_command = "n=$(cat '{marks}/n' 2>/dev/null || echo 0); echo $((n+1)) > '{marks}/n'; [ $n -ge 2 ]"

[[tasks]]
name = "after"
depends_on = ["flaky"]
command = "echo after"
"#,
        stub = ordo_tests::stub_agent("claude"),
        marks = marks.display(),
    );
    let state = dir.path().join("state");
    let mut ui = Ui::start(&repo, &["--state", state.to_str().unwrap()]);
    let job = ui.submit(&spec);
    ui.wait_state(&job, "failed", Duration::from_secs(60));

    let mut b = browser();
    let page = open_clean(&mut b, &ui.url(&format!("/jobs/{job}")));
    click(&mut b, &page, "retry");
    ui.wait_state(&job, "failed", Duration::from_secs(60));
    // One task and what it held back, from its own page.
    let page = open_clean(&mut b, &ui.url(&format!("/jobs/{job}/tasks/1")));
    click(&mut b, &page, "retry");
    ui.wait_state(&job, "succeeded", Duration::from_secs(60));
    assert_no_errors(&mut b, &page, "after a task's retry");
    assert!(ui.stop().success(), "{}", ui.log());

    let r = ordo_in(
        &repo,
        &[
            "report",
            &job,
            "--format",
            "json",
            "--state",
            state.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let report = r.json();
    let helper = ordo_tests::task(&report, "helper");
    assert_eq!(helper["attempts"], 1, "helper ran again: {helper:#}");
    assert_eq!(ordo_tests::task(&report, "flaky")["attempts"], 3);
    assert_eq!(ordo_tests::task(&report, "after")["attempts"], 1);
    // helper once, flaky three times.
    assert_eq!(
        report["summary"]["cost_usd"], 1.0,
        "{:#}",
        report["summary"]
    );
    let lib = git(&repo, &["show", "it:lib.py"]);
    assert_eq!(lib.matches("def helper").count(), 1, "{lib}");
    assert_eq!(git(&repo, &["show", "it:notes.txt"]), "flaky was here");
}

/// TaskMaster tasks are named by id ("2"): wherever a task is shown, its title goes next to
/// the id: `ordo graph`, the progress lines of `ordo run`, `ordo status`, the report, and the
/// dashboard's grid, graph and task page (whose position column is not taken for the id).
#[test]
fn taskmaster_titles_are_shown_next_to_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tasks = json!({"tasks": [
        {"id": 1, "title": "Set up the database", "description": "Create the schema.",
         "status": "pending", "dependencies": [], "priority": "high"},
        {"id": 2, "title": "Write the API", "description": "Serve the schema.",
         "status": "pending", "dependencies": [1], "priority": "medium"},
    ]});
    let file = write(d, "tasks.json", &tasks.to_string());
    let env = [("ORDO_AGENT_COMMAND", "echo"), ("ORDO_CHECK_INTERVAL", "0")];

    let dot = ordo_in(d, &["graph", &file], &env);
    assert_eq!(dot.code(), 0, "{}", dot.stderr);
    assert!(
        dot.stdout.contains("label=\"2 (Write the API)\""),
        "{}",
        dot.stdout
    );
    let mermaid = ordo_in(d, &["graph", &file, "--format", "mermaid"], &env);
    // Parentheses as Mermaid entity codes.
    assert!(
        mermaid
            .stdout
            .contains("(\"1 #40;Set up the database#41;\")"),
        "{}",
        mermaid.stdout
    );

    let run = ordo_in(d, &["run", &file, "--state", "st"], &env);
    assert_eq!(run.code(), 0, "{}{}", run.stdout, run.stderr);
    let lines = format!("{}{}", run.stdout, run.stderr);
    assert!(lines.contains("✓ 2 (Write the API) succeeded"), "{lines}");
    let list = ordo_in(d, &["status", "--state", "st", "--output", "json"], &[]).json();
    let job = list[0]["id"].as_str().unwrap().to_string();
    let status = ordo_in(d, &["status", &job, "--state", "st"], &[]);
    assert!(
        status.stdout.contains("1 (Set up the database)"),
        "{}",
        status.stdout
    );
    let json = ordo_in(
        d,
        &["status", &job, "--state", "st", "--output", "json"],
        &[],
    )
    .json();
    assert_eq!(json["tasks"][1]["title"], "Write the API", "{json}");
    let md = ordo_in(d, &["report", &job, "--state", "st"], &[]).stdout;
    assert!(md.contains("| 1 | 2 (Write the API)"), "{md}");

    let ui = Ui::start(d, &["--state", d.join("st").to_str().unwrap()]);
    let page = ui.get(&format!("/jobs/{job}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let grid = &page.body[page.body.find("<table class=\"grid\">").expect("the grid")..];
    assert!(grid.contains(">pos</th>"), "{grid}");
    assert!(
        grid.contains(&format!(
            "<a href=\"/jobs/{job}/tasks/1\">2 (Write the API)</a>"
        )),
        "{grid}"
    );
    let svg = &page.body[page.body.find("<h2>Graph</h2>").expect("the graph")..];
    assert!(
        svg.contains("<title>2 (Write the API) — succeeded</title>"),
        "{svg}"
    );
    let task = ui.get(&format!("/jobs/{job}/tasks/1"));
    assert!(task.body.contains("2 (Write the API)"), "{}", task.body);
    assert!(task.body.contains("position in the job"), "{}", task.body);
}

/// A retried job's duration on the dashboard is its last run's, said to be so (`run 2 of 2`),
/// in the jobs list and on its page, whose timeline folds the earlier run away.
#[test]
fn a_retried_jobs_duration_is_its_last_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = write(
        d,
        "again.toml",
        "name = \"again\"\n[[tasks]]\nname = \"check\"\ncommand = \"test -e ok\"\n",
    );
    let r = ordo_in(d, &["run", &spec, "--state", "st", "-q"], &[]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    // Long enough that a duration counted from the submission would show it.
    std::thread::sleep(Duration::from_millis(2100));
    std::fs::write(d.join("ok"), "").unwrap();
    let job = ordo_in(d, &["status", "--state", "st", "--output", "json"], &[]).json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ordo_in(d, &["retry", &job, "--state", "st"], &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr);

    let ui = Ui::start(d, &["--state", d.join("st").to_str().unwrap()]);
    let list = ui.get("/");
    let row = &list.body[list.body.find(&job).expect("the job's row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    // The cell: `<duration> (run 2 of 2)`, the duration under the 2.1 s the user waited.
    let cell = &row[..row.find(" (run 2 of 2)").unwrap_or_else(|| panic!("{row}"))];
    let shown = &cell[cell.rfind('>').unwrap() + 1..];
    let ms = match shown.split_once(' ') {
        Some((n, "ms")) => n.parse::<f64>().unwrap(),
        Some((n, "s")) => n.parse::<f64>().unwrap() * 1000.0,
        _ => panic!("{shown}"),
    };
    assert!(ms < 2100.0, "{shown}");
    let page = ui.get(&format!("/jobs/{job}"));
    assert!(
        page.body.contains("<span>duration (run 2 of 2)</span>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<details class=\"run\"><summary>Run 1 (earlier)"),
        "{}",
        page.body
    );
    // The task page fades the earlier run's attempt and says which run each is.
    let task = ui.get(&format!("/jobs/{job}/tasks/0"));
    assert!(
        task.body.contains("<tr class=\"muted\" title=\"an earlier run of the job\"><td class=\"num\">1 <span class=\"muted\">(run 1)</span>"),
        "{}",
        task.body
    );
    assert!(
        task.body
            .contains("<tr><td class=\"num\">2 <span class=\"muted\">(run 2)</span>"),
        "{}",
        task.body
    );
}
