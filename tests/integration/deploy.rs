//! The files under `deploy/`, exercised for real: nats-server accepts every configuration; the
//! per-role users of `deploy/nats/auth.conf` can each do what ordo needs (a full job runs with
//! the coordinator, a worker and the CLI each on its own user, over TLS) and nothing more
//! (violations observed on the client connection and in the server log); a job runs over TLS
//! with a CA made in the test; a three-node cluster from `cluster.conf` runs jobs and survives
//! losing a node; the YAML manifests parse and agree with the configs; the systemd units pass
//! `systemd-analyze verify` and carry their hardening.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::GetStreamErrorKind;
use ordo_proto::names;
use ordo_tests::deploy::{
    Certs, ConfiguredNats, deploy_dir, make_certs, nats_server_check, nats_server_path,
    python_with_yaml,
};
use ordo_tests::ledger::{self, Ledger, Row, SHAPES, Tally};
use ordo_tests::{Daemon, Run, bin, ordo_in, run_with_deadline, wait_until, write};
use serde_json::Value;

const COORDINATOR_PASSWORD: &str = "pCoordinatorSecret1";
const WORKER_PASSWORD: &str = "pWorkerSecret2";
const CLIENT_PASSWORD: &str = "pClientSecret3";

/// The environment `deploy/nats/*.conf` reads: passwords and certificate paths (and, for
/// `cluster.conf`, the node's name and routes).
fn nats_env(certs: &Certs) -> Vec<(String, String)> {
    [
        ("ORDO_COORDINATOR_PASSWORD", COORDINATOR_PASSWORD),
        ("ORDO_WORKER_PASSWORD", WORKER_PASSWORD),
        ("ORDO_CLIENT_PASSWORD", CLIENT_PASSWORD),
        ("NATS_SYSTEM_PASSWORD", "pSystemSecret4"),
        ("NATS_ROUTE_PASSWORD", "pRouteSecret5"),
        ("NATS_SERVER_NAME", "nats-0"),
        (
            "NATS_ROUTE_0",
            "nats-route://route:pRouteSecret5@nats-0.nats-headless:6222",
        ),
        (
            "NATS_ROUTE_1",
            "nats-route://route:pRouteSecret5@nats-1.nats-headless:6222",
        ),
        (
            "NATS_ROUTE_2",
            "nats-route://route:pRouteSecret5@nats-2.nats-headless:6222",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([
        ("NATS_TLS_CERT".to_string(), path_str(&certs.cert)),
        ("NATS_TLS_KEY".to_string(), path_str(&certs.key)),
    ])
    .collect()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn nats_configs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("nats"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    out.sort();
    out
}

#[test]
fn nats_server_accepts_every_deploy_config() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = make_certs(tmp.path(), &["localhost", "127.0.0.1"]);
    let env = nats_env(&certs);
    let configs = nats_configs();
    let names: Vec<String> = configs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["nats.conf", "cluster.conf", "auth.conf", "tls.conf"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for conf in &configs {
        let r = nats_server_check(conf, &env);
        assert_eq!(
            r.code(),
            0,
            "nats-server -t rejects {}:\n{}{}",
            conf.display(),
            r.stdout,
            r.stderr
        );
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains("is valid"),
            "{}{}",
            r.stdout,
            r.stderr
        );
    }

    // The check is real: a missing secret is refused and named.
    let without: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "ORDO_WORKER_PASSWORD")
        .cloned()
        .collect();
    let r = nats_server_check(&deploy_dir().join("nats/nats.conf"), &without);
    assert_ne!(r.code(), 0, "accepted without a worker password");
    assert!(
        r.stderr.contains("ORDO_WORKER_PASSWORD"),
        "error should name the variable: {}",
        r.stderr
    );

    // The sync_interval choice is made and both measured figures are written down.
    let single = std::fs::read_to_string(deploy_dir().join("nats/nats.conf")).unwrap();
    assert!(single.contains("\n  sync_interval: always\n"), "{single}");
    assert!(
        single.contains("default (2m):") && single.contains("always:") && single.contains("msg/s"),
        "nats.conf should record both measured figures"
    );
    let cluster = std::fs::read_to_string(deploy_dir().join("nats/cluster.conf")).unwrap();
    assert!(cluster.contains("sync_interval:"), "{cluster}");
}

/// Errors the server sent one connection (`-ERR`), as text.
type Errors = Arc<Mutex<Vec<String>>>;

async fn connect_as(
    url: &str,
    ca: &Path,
    user: &str,
    password: &str,
) -> (async_nats::Client, Errors) {
    let errors: Errors = Arc::default();
    let sink = errors.clone();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .custom_inbox_prefix(inbox_prefix(user))
        .add_root_certificates(ca.to_path_buf())
        .require_tls(true)
        .event_callback(move |event| {
            let sink = sink.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    sink.lock().unwrap().push(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{user} cannot connect to {url}: {e}"));
    (client, errors)
}

/// The inbox prefix of the role a user of `deploy/nats/auth.conf` holds.
fn inbox_prefix(user: &str) -> &'static str {
    match user {
        "coordinator" => names::INBOX_COORDINATOR,
        "worker" => names::INBOX_WORKER,
        _ => names::INBOX_CLIENT,
    }
}

/// Waits until the server reported a permissions violation naming `subject` to this
/// connection.
async fn expect_violation(errors: &Errors, subject: &str, what: &str) {
    let needle = format!("\"{}\"", subject.to_lowercase());
    for _ in 0..250 {
        if errors.lock().unwrap().iter().any(|e| {
            let e = e.to_lowercase();
            e.contains("permissions violation") && e.contains(&needle)
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{what}: no permissions violation for {subject}; errors: {:?}",
        errors.lock().unwrap()
    );
}

/// A TLS nats-server from `deploy/nats/nats.conf` and the three roles' connection flags.
struct Deployed {
    nats: ConfiguredNats,
    certs: Certs,
    work: tempfile::TempDir,
    data: tempfile::TempDir,
    _tmp: tempfile::TempDir,
}

impl Deployed {
    fn start() -> Deployed {
        let tmp = tempfile::tempdir().unwrap();
        let certs = make_certs(tmp.path(), &["localhost", "127.0.0.1"]);
        let nats = ConfiguredNats::start(&deploy_dir().join("nats/nats.conf"), &nats_env(&certs));
        assert_eq!(nats.scheme, "tls", "nats.conf requires TLS");
        Deployed {
            nats,
            certs,
            work: tempfile::tempdir().unwrap(),
            data: tempfile::tempdir().unwrap(),
            _tmp: tmp,
        }
    }

    fn flags(&self, user: &str, password: &str) -> Vec<String> {
        vec![
            "--nats".into(),
            self.nats.url(),
            "--tls-ca".into(),
            path_str(&self.certs.ca),
            "--user".into(),
            user.into(),
            "--password".into(),
            password.into(),
        ]
    }

    fn daemon(&self, bin_name: &str, user: &str, password: &str, extra: &[&str]) -> Daemon {
        let mut args = self.flags(user, password);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::spawn(bin_name, &args, self.work.path())
    }

    /// `ordo ARGS` as the client user.
    fn client(&self, args: &[&str]) -> Run {
        let flags = self.flags("client", CLIENT_PASSWORD);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        ordo_in(self.work.path(), &all, &[])
    }

    fn violations(&self) -> Vec<String> {
        self.nats
            .log()
            .lines()
            .filter(|l| l.contains("Violation"))
            .map(String::from)
            .collect()
    }
}

const TWO_TASKS: &str = r#"name = "deployed"
[[tasks]]
name = "hello"
command = "echo hello from a deployed worker"
[[tasks]]
name = "after"
command = "echo after"
depends_on = ["hello"]
"#;

#[test]
fn each_role_can_do_what_it_needs_and_nothing_more() {
    let d = Deployed::start();
    let data_dir = path_str(d.data.path());
    let coordinator = d.daemon(
        "ordo-coordinator",
        "coordinator",
        COORDINATOR_PASSWORD,
        &["--data-dir", &data_dir],
    );
    assert!(
        wait_until(Duration::from_secs(30), || d.client(&["workers"]).code()
            == 0),
        "coordinator did not answer the client:\n{}\nnats:\n{}",
        coordinator.log(),
        d.nats.log()
    );
    let worker = d.daemon(
        "ordo-worker",
        "worker",
        WORKER_PASSWORD,
        &["--id", "deployed-worker"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.client(&["workers", "--output", "json"])
                .stdout
                .contains("deployed-worker")
        }),
        "worker never appeared:\n{}",
        worker.log()
    );

    // A full job: submit --wait, status, logs, each as the client user.
    let spec = write(d.work.path(), "job.toml", TWO_TASKS);
    let r = d.client(&["submit", &spec, "--wait"]);
    assert_eq!(
        r.code(),
        0,
        "job failed with role users: {}{}\ncoordinator:\n{}\nworker:\n{}\nnats:\n{}",
        r.stdout,
        r.stderr,
        coordinator.log(),
        worker.log(),
        d.nats.log()
    );
    let job = r.stdout.trim().to_string();
    let status = d.client(&["status", &job, "--output", "json"]).json();
    assert_eq!(status["state"], "succeeded", "{status}");
    let logs = d.client(&["logs", &job, "hello"]);
    assert_eq!(logs.code(), 0, "{}{:#?}", logs.stderr, d.violations());
    assert!(
        logs.stdout.contains("hello from a deployed worker"),
        "{}",
        logs.stdout
    );
    // A spec and a report each over max_payload go through the object store ORDO_BLOBS.
    let pad = "x".repeat(900);
    let mut big = String::from("name = \"big\"\n");
    for i in 0..1_200 {
        big.push_str(&format!(
            "[[tasks]]\nname = \"t{i}\"\ncommand = \"true # {pad}\"\n"
        ));
    }
    let big = write(d.work.path(), "big.toml", &big);
    let r = d.client(&["submit", &big, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}{:#?}", r.stdout, r.stderr, d.violations());
    let big_job = r.stdout.trim().to_string();
    let report = d.client(&["report", &big_job, "--format", "json"]);
    assert_eq!(report.code(), 0, "{}{:#?}", report.stderr, d.violations());
    assert!(
        report.stdout.len() > 1 << 20,
        "{} bytes",
        report.stdout.len()
    );
    let jobs = d.client(&["jobs", "--output", "json"]).json();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    // Everything above was allowed: the server reported no violation at all.
    assert_eq!(
        d.violations(),
        Vec::<String>::new(),
        "roles lack a permission"
    );
    // A wrong password cannot connect (exit 3, as for an unreachable server).
    let mut wrong = vec!["workers".to_string()];
    wrong.extend(d.flags("client", "pWrongPassword"));
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let r = ordo_in(d.work.path(), &wrong, &[]);
    assert_eq!(r.code(), 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.to_lowercase().contains("authorization"),
        "{}",
        r.stderr
    );

    // ... and nothing more.
    let url = d.nats.url();
    let ca = d.certs.ca.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (admin, _) = connect_as(&url, &ca, "coordinator", COORDINATOR_PASSWORD).await;
        let admin_js = jetstream::new(admin);
        let mut tasks = admin_js.get_stream("ORDO_TASKS").await.unwrap();
        let tasks_before = tasks.info().await.unwrap().state.last_sequence;
        let mut logs_stream = admin_js.get_stream("ORDO_LOGS").await.unwrap();
        let logs_before = logs_stream.info().await.unwrap().state.messages;
        assert!(logs_before > 0, "the job's output should be in ORDO_LOGS");

        // The client: no task publishing (core or JetStream), no internal traffic, no other
        // stream than the logs.
        let (client, errors) = connect_as(&url, &ca, "client", CLIENT_PASSWORD).await;
        client
            .publish("ordo.task.default", "forged".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        expect_violation(&errors, "ordo.task.default", "client publishing a task").await;
        let mut client_js = jetstream::new(client.clone());
        client_js.set_timeout(Duration::from_secs(1));
        let acked = match client_js
            .publish("ordo.task.default", "forged".into())
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        assert!(!acked, "JetStream stored a task published by the client");
        client
            .publish(
                "ordo.event.00000000-0000-0000-0000-000000000000",
                "forged".into(),
            )
            .await
            .unwrap();
        client.flush().await.unwrap();
        expect_violation(
            &errors,
            "ordo.event.00000000-0000-0000-0000-000000000000",
            "client publishing a result",
        )
        .await;
        let _sub = client.subscribe("ordo.heartbeat.*").await.unwrap();
        client.flush().await.unwrap();
        expect_violation(
            &errors,
            "ordo.heartbeat.*",
            "client listening to heartbeats",
        )
        .await;
        assert!(client_js.get_stream("ORDO_TASKS").await.is_err());
        expect_violation(
            &errors,
            "$JS.API.STREAM.INFO.ORDO_TASKS",
            "client reading the task stream",
        )
        .await;

        // The worker: no stream management, no forged tasks, no impersonating the
        // coordinator's API.
        let (worker, errors) = connect_as(&url, &ca, "worker", WORKER_PASSWORD).await;
        let mut worker_js = jetstream::new(worker.clone());
        worker_js.set_timeout(Duration::from_secs(1));
        assert!(worker_js.delete_stream("ORDO_TASKS").await.is_err());
        expect_violation(
            &errors,
            "$JS.API.STREAM.DELETE.ORDO_TASKS",
            "worker deleting the task stream",
        )
        .await;
        assert!(worker_js.delete_stream("ORDO_EVENTS").await.is_err());
        expect_violation(
            &errors,
            "$JS.API.STREAM.DELETE.ORDO_EVENTS",
            "worker deleting the event stream",
        )
        .await;
        let worker_tasks = worker_js.get_stream("ORDO_TASKS").await.unwrap();
        assert!(worker_tasks.purge().await.is_err());
        expect_violation(
            &errors,
            "$JS.API.STREAM.PURGE.ORDO_TASKS",
            "worker purging the task stream",
        )
        .await;
        // Purge through the raw API subject too, on the stream it can otherwise never read.
        worker
            .publish("$JS.API.STREAM.PURGE.ORDO_LOGS", "{}".into())
            .await
            .unwrap();
        worker.flush().await.unwrap();
        expect_violation(
            &errors,
            "$JS.API.STREAM.PURGE.ORDO_LOGS",
            "worker purging the log stream",
        )
        .await;
        assert!(
            worker_js
                .create_stream(jetstream::stream::Config {
                    name: "ROGUE".into(),
                    subjects: vec!["rogue.>".into()],
                    ..Default::default()
                })
                .await
                .is_err()
        );
        expect_violation(
            &errors,
            "$JS.API.STREAM.CREATE.ROGUE",
            "worker creating a stream",
        )
        .await;
        assert!(
            worker_tasks
                .delete_consumer("ordo-queue-default")
                .await
                .is_err()
        );
        expect_violation(
            &errors,
            "$JS.API.CONSUMER.DELETE.ORDO_TASKS.ordo-queue-default",
            "worker deleting its queue consumer",
        )
        .await;
        worker
            .publish("ordo.task.default", "forged".into())
            .await
            .unwrap();
        worker.flush().await.unwrap();
        expect_violation(&errors, "ordo.task.default", "worker publishing a task").await;
        let _api = worker.subscribe("ordo.api.*").await.unwrap();
        worker.flush().await.unwrap();
        expect_violation(&errors, "ordo.api.*", "worker answering the API").await;

        // Even the coordinator cannot delete its streams (no stream deletion at all).
        let (coord, errors) = connect_as(&url, &ca, "coordinator", COORDINATOR_PASSWORD).await;
        let mut coord_js = jetstream::new(coord);
        coord_js.set_timeout(Duration::from_secs(1));
        assert!(coord_js.delete_stream("ORDO_TASKS").await.is_err());
        expect_violation(
            &errors,
            "$JS.API.STREAM.DELETE.ORDO_TASKS",
            "coordinator deleting a stream",
        )
        .await;

        // Nothing changed: no forged task stored, the output still there, the consumer too.
        assert_eq!(
            tasks.info().await.unwrap().state.last_sequence,
            tasks_before,
            "a forged task reached ORDO_TASKS"
        );
        assert_eq!(
            logs_stream.info().await.unwrap().state.messages,
            logs_before
        );
        // (The worker may read its consumer; the coordinator only creates it.)
        assert!(
            worker_tasks
                .consumer_info("ordo-queue-default")
                .await
                .is_ok()
        );
        assert!(admin_js.get_stream("ORDO_EVENTS").await.is_ok());
        assert!(admin_js.get_stream("ROGUE").await.is_err());
    });
    let logged = d.violations();
    for subject in [
        "ordo.task.default",
        "$JS.API.STREAM.DELETE.ORDO_TASKS",
        "$JS.API.STREAM.PURGE.ORDO_TASKS",
    ] {
        assert!(
            logged.iter().any(|l| l.contains(subject)),
            "server log has no violation for {subject}: {logged:#?}"
        );
    }

    // The system still works after all that.
    let r = d.client(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
}

const ROLES: [(&str, &str); 3] = [
    ("coordinator", COORDINATOR_PASSWORD),
    ("worker", WORKER_PASSWORD),
    ("client", CLIENT_PASSWORD),
];

/// The role matrix: while a job whose `env` holds a secret runs, every role tries to read the
/// inboxes of every other (and all inboxes at once), to publish into them, and the client to
/// make JetStream deliver into someone else's subjects; none of it is allowed, and the secret
/// reaches nobody but the worker that runs the task.
#[test]
fn no_role_reads_or_runs_what_is_not_its_own() {
    let d = Deployed::start();
    let data_dir = path_str(d.data.path());
    let coordinator = d.daemon(
        "ordo-coordinator",
        "coordinator",
        COORDINATOR_PASSWORD,
        &["--data-dir", &data_dir],
    );
    let worker = d.daemon(
        "ordo-worker",
        "worker",
        WORKER_PASSWORD,
        &["--id", "w-matrix"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.client(&["workers", "--output", "json"])
                .stdout
                .contains("w-matrix")
        }),
        "coordinator:\n{}\nworker:\n{}",
        coordinator.log(),
        worker.log()
    );
    const SECRET: &str = "s3cr3t-env-value-9f1c";
    let url = d.nats.url();
    let ca = d.certs.ca.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (seen, errors) = rt.block_on(async {
        use futures::StreamExt;
        // Every role listens wherever it can; whatever it receives is kept.
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let mut all_errors = Vec::new();
        let mut clients = Vec::new();
        for (user, password) in ROLES {
            let (client, errors) = connect_as(&url, &ca, user, password).await;
            let mut tries: Vec<String> = vec!["_INBOX.>".into(), ">".into()];
            tries.extend(
                ROLES
                    .iter()
                    .filter(|(other, _)| *other != user)
                    .map(|(other, _)| format!("{}.>", inbox_prefix(other))),
            );
            for subject in tries {
                let mut sub = client.subscribe(subject.clone()).await.unwrap();
                let seen = seen.clone();
                let who = user.to_string();
                tokio::spawn(async move {
                    while let Some(m) = sub.next().await {
                        let text = String::from_utf8_lossy(&m.payload).into_owned();
                        seen.lock()
                            .unwrap()
                            .push((format!("{who} on {}", m.subject), text));
                    }
                });
                client.flush().await.unwrap();
                expect_violation(
                    &errors,
                    &subject,
                    &format!("{user} subscribing to {subject}"),
                )
                .await;
            }
            // Nobody may publish into another role's inbox (only the server delivers there).
            for (other, _) in ROLES.iter().filter(|(other, _)| *other != user) {
                let subject = format!("{}.forged", inbox_prefix(other));
                client
                    .publish(subject.clone(), "forged".into())
                    .await
                    .unwrap();
                client.flush().await.unwrap();
                expect_violation(
                    &errors,
                    &subject,
                    &format!("{user} publishing to {subject}"),
                )
                .await;
            }
            all_errors.push(errors);
            clients.push(client);
        }
        // The client cannot make JetStream deliver anything anywhere: no consumer of its own
        // on any stream (a push consumer delivers to any subject it names).
        let client = clients[2].clone();
        let errors = all_errors[2].clone();
        for stream in [names::LOG_STREAM, "OBJ_ORDO_BLOBS", names::TASK_STREAM] {
            let create = format!("$JS.API.CONSUMER.CREATE.{stream}");
            let body = serde_json::json!({
                "stream_name": stream,
                "config": {"deliver_subject": "ordo.task.default", "ack_policy": "none"},
            });
            let body = serde_json::to_vec(&body).unwrap();
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                client.request(create.clone(), body.into()),
            )
            .await;
            if let Ok(Ok(answer)) = answer {
                panic!(
                    "the server answered {create}: {}",
                    String::from_utf8_lossy(&answer.payload)
                );
            }
            expect_violation(&errors, &create, "client creating a push consumer").await;
        }
        (seen, all_errors)
    });
    drop(errors);

    // A job with a secret runs while they listen; `ordo logs` still reads its output.
    let spec = write(
        d.work.path(),
        "secret.toml",
        &format!(
            "name = \"secret\"\n[[tasks]]\nname = \"uses-it\"\n\
             command = \"test \\\"$TOKEN\\\" = {SECRET} && echo used\"\nenv = {{ TOKEN = \"{SECRET}\" }}\n"
        ),
    );
    let r = d.client(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}\n{}", r.stdout, r.stderr, worker.log());
    let job = r.stdout.trim().to_string();
    let logs = d.client(&["logs", &job, "uses-it"]);
    assert_eq!(logs.code(), 0, "{}", logs.stderr);
    assert!(logs.stdout.contains("used"), "{}", logs.stdout);
    let seen = seen.lock().unwrap();
    assert!(
        seen.is_empty(),
        "a role received traffic that is not its own: {seen:#?}"
    );
    drop(rt);
}

#[test]
fn a_job_runs_over_tls_with_a_ca_made_in_the_test() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = make_certs(&tmp.path().join("certs"), &["localhost", "127.0.0.1"]);
    // deploy/nats/tls.conf, no users: TLS alone.
    let conf_dir = tmp.path().join("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::copy(
        deploy_dir().join("nats/tls.conf"),
        conf_dir.join("tls.conf"),
    )
    .unwrap();
    let conf = write(
        &conf_dir,
        "tls-only.conf",
        "jetstream { store_dir: /var/lib/nats }\ninclude tls.conf\n",
    );
    let env = vec![
        ("NATS_TLS_CERT".to_string(), path_str(&certs.cert)),
        ("NATS_TLS_KEY".to_string(), path_str(&certs.key)),
    ];
    let nats = ConfiguredNats::start(Path::new(&conf), &env);
    assert_eq!(nats.scheme, "tls");
    let url = nats.url();
    assert!(url.starts_with("tls://"), "{url}");
    let ca = path_str(&certs.ca);
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = path_str(data.path());
    let coordinator = Daemon::spawn(
        "ordo-coordinator",
        &["--nats", &url, "--tls-ca", &ca, "--data-dir", &data_dir],
        work.path(),
    );
    let ordo = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--nats", &url]);
        ordo_in(work.path(), &all, env)
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            ordo(&["workers", "--tls-ca", &ca], &[]).code() == 0
        }),
        "coordinator did not come up over TLS:\n{}",
        coordinator.log()
    );
    let worker = Daemon::spawn(
        "ordo-worker",
        &["--nats", &url, "--tls-ca", &ca, "--id", "tls-worker"],
        work.path(),
    );
    let spec = write(work.path(), "job.toml", TWO_TASKS);
    // The CA through its environment variable this time.
    let r = ordo(&["submit", &spec, "--wait"], &[("ORDO_NATS_TLS_CA", &ca)]);
    assert_eq!(
        r.code(),
        0,
        "{}{}\ncoordinator:\n{}\nworker:\n{}",
        r.stdout,
        r.stderr,
        coordinator.log(),
        worker.log()
    );
    let job = r.stdout.trim().to_string();
    let status = ordo(&["status", &job, "--output", "json", "--tls-ca", &ca], &[]).json();
    assert_eq!(status["state"], "succeeded");
    let tasks = status["tasks"].as_array().unwrap();
    assert!(
        tasks.iter().all(|t| t["worker"] == "tls-worker"),
        "{status}"
    );

    // The certificate is really checked: no CA, or another CA, cannot connect (exit 3).
    let r = ordo(&["workers"], &[]);
    assert_eq!(
        r.code(),
        3,
        "connected without the CA: {}{}",
        r.stdout,
        r.stderr
    );
    let other = make_certs(&tmp.path().join("other"), &["localhost", "127.0.0.1"]);
    let r = ordo(&["workers", "--tls-ca", &path_str(&other.ca)], &[]);
    assert_eq!(
        r.code(),
        3,
        "connected with a foreign CA: {}{}",
        r.stdout,
        r.stderr
    );
}

/// Free TCP ports on 127.0.0.1 (bound then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[test]
fn three_node_cluster_config_runs_jobs_and_survives_losing_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = make_certs(tmp.path(), &["localhost", "127.0.0.1"]);
    let route_ports = free_ports(3);
    let mut nodes: Vec<ConfiguredNats> = Vec::new();
    for i in 0..3 {
        let mut env = nats_env(&certs);
        env.retain(|(k, _)| !k.starts_with("NATS_ROUTE_") || k == "NATS_ROUTE_PASSWORD");
        env.push(("NATS_SERVER_NAME".into(), format!("nats-{i}")));
        for (j, port) in route_ports.iter().enumerate() {
            env.push((
                format!("NATS_ROUTE_{j}"),
                format!("nats-route://route:pRouteSecret5@127.0.0.1:{port}"),
            ));
        }
        let listen = format!("nats://127.0.0.1:{}", route_ports[i]);
        nodes.push(ConfiguredNats::start_with_args(
            &deploy_dir().join("nats/cluster.conf"),
            &env,
            &["--cluster", &listen],
        ));
    }
    let urls = nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let ca = path_str(&certs.ca);
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = path_str(data.path());
    let flags = |user: &str, password: &str| -> Vec<String> {
        [
            "--nats",
            &urls,
            "--tls-ca",
            &ca,
            "--user",
            user,
            "--password",
            password,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let spawn = |bin_name: &str, user: &str, password: &str, extra: &[&str]| {
        let mut args = flags(user, password);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::spawn(bin_name, &args, work.path())
    };
    let client = |args: &[&str]| {
        let f = flags("client", CLIENT_PASSWORD);
        let mut all = args.to_vec();
        all.extend(f.iter().map(String::as_str));
        ordo_in(work.path(), &all, &[])
    };
    // Streams need the JetStream meta leader, elected once a quorum of the three nodes has
    // met; until then requests time out (and the coordinator exits to be restarted by its
    // supervisor). Wait for the leader like a deployment's readiness probe would.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = nodes[0].url();
    rt.block_on(async {
        let (c, _) = connect_as(&first, &certs.ca, "coordinator", COORDINATOR_PASSWORD).await;
        let mut js = jetstream::new(c);
        js.set_timeout(Duration::from_secs(1));
        for _ in 0..60 {
            match js.get_stream("ORDO_TASKS").await {
                Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(_)) => return,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        panic!("the cluster never elected a JetStream meta leader");
    });
    let coordinator = spawn(
        "ordo-coordinator",
        "coordinator",
        COORDINATOR_PASSWORD,
        &["--data-dir", &data_dir, "--replicas", "3"],
    );
    let logs = |nodes: &[ConfiguredNats]| {
        nodes
            .iter()
            .map(|n| n.log())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    };
    assert!(
        wait_until(Duration::from_secs(60), || client(&["workers"]).code() == 0),
        "coordinator did not come up on the cluster:\n{}\nnats:\n{}",
        coordinator.log(),
        logs(&nodes)
    );
    let worker = spawn(
        "ordo-worker",
        "worker",
        WORKER_PASSWORD,
        &["--id", "cluster-worker", "--concurrency", "8"],
    );
    let spec = write(work.path(), "job.toml", TWO_TASKS);
    let r = client(&["submit", &spec, "--wait"]);
    assert_eq!(
        r.code(),
        0,
        "{}{}\ncoordinator:\n{}\nworker:\n{}",
        r.stdout,
        r.stderr,
        coordinator.log(),
        worker.log()
    );

    // The streams are replicated on all three nodes.
    let replicas = rt.block_on(async {
        let (c, _) = connect_as(&first, &certs.ca, "coordinator", COORDINATOR_PASSWORD).await;
        let js = jetstream::new(c);
        let mut s = js.get_stream("ORDO_TASKS").await.unwrap();
        let info = s.info().await.unwrap();
        (
            info.config.num_replicas,
            info.cluster.as_ref().map_or(0, |c| c.replicas.len()),
        )
    });
    assert_eq!(replicas, (3, 2), "ORDO_TASKS: (configured, followers)");

    // One node dies (kill -9) mid-job: two of three keep JetStream going and the three job
    // shapes of the fault suite complete with every ledger invariant.
    let ledger = Ledger::new(work.path());
    let mut jobs = Vec::new();
    for shape in SHAPES {
        let path = write(
            work.path(),
            &format!("{}.toml", shape.name()),
            &ledger.spec(shape, "sleep 0.01"),
        );
        let r = client(&["submit", &path]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        jobs.push((shape, r.stdout.trim().to_string()));
    }
    assert!(wait_until(Duration::from_secs(60), || ledger.starts() >= 100));
    // Tasks the coordinator has recorded as succeeded, over the three jobs.
    let recorded = || -> Option<usize> {
        let mut n = 0;
        for (_, job) in &jobs {
            let r = client(&["status", job, "--output", "json"]);
            if r.code() != 0 {
                return None;
            }
            n += ledger::succeeded(&r.json())?;
        }
        Some(n)
    };
    let before = recorded().expect("status before the fault");
    let fault = std::time::Instant::now();
    nodes[0].stop(9);
    assert!(wait_until(Duration::from_secs(60), || recorded()
        .is_some_and(|n| n > before)));
    let recovery = fault.elapsed();
    let mut tally = Tally::default();
    for (shape, job) in &jobs {
        let done = wait_until(Duration::from_secs(180), || {
            let r = client(&["status", job, "--output", "json"]);
            r.code() == 0 && r.json()["state"] != "running" && r.json()["state"] != "pending"
        });
        assert!(
            done,
            "{} did not finish after losing a node\ncoordinator:\n{}\nworker:\n{}\nnats:\n{}",
            shape.name(),
            coordinator.log(),
            worker.log(),
            logs(&nodes[1..])
        );
        let report = client(&["report", job, "--format", "json"]);
        assert_eq!(report.code(), 0, "{}", report.stderr);
        tally += ledger.check(job, *shape, &report.json(), &[]);
    }
    ledger.assert_no_leftovers();
    ledger::record(
        "9",
        Row {
            fault: "9. one node of a three-node nats cluster (R3 streams) killed mid-job".into(),
            seeds: 1,
            tally,
            recovery: Some(recovery),
        },
    );
}

/// Every YAML document under deploy/, as JSON, by path relative to deploy/.
fn yaml_documents() -> BTreeMap<String, Vec<Value>> {
    let python = python_with_yaml().expect(
        "no Python with PyYAML (scripts/test installs it into .venv; ORDO_TEST_PYTHON overrides)",
    );
    let mut files = Vec::new();
    let mut dirs = vec![deploy_dir()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 5, "too few YAML files: {files:?}");
    let script = "import json, sys, yaml\n\
                  out = {}\n\
                  for p in sys.argv[1:]:\n\
                  \x20   with open(p) as f:\n\
                  \x20       out[p] = list(yaml.safe_load_all(f))\n\
                  print(json.dumps(out, default=str))\n";
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(script).args(&files);
    let r = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(r.code(), 0, "YAML does not parse:\n{}", r.stderr);
    let all: BTreeMap<String, Vec<Value>> = serde_json::from_str(&r.stdout).unwrap();
    let root = path_str(&deploy_dir());
    all.into_iter()
        .map(|(k, v)| {
            (
                k.trim_start_matches(&root)
                    .trim_start_matches('/')
                    .to_string(),
                v,
            )
        })
        .collect()
}

/// Environment variables a nats config and its includes read (`$NAME` not defined in them).
fn config_variables(conf: &str) -> BTreeSet<String> {
    let dir = deploy_dir().join("nats");
    let mut texts = vec![std::fs::read_to_string(dir.join(conf)).unwrap()];
    for line in texts[0].clone().lines() {
        if let Some(inc) = line.trim().strip_prefix("include ") {
            texts.push(std::fs::read_to_string(dir.join(inc.trim())).unwrap());
        }
    }
    let mut used = BTreeSet::new();
    let mut defined = BTreeSet::new();
    for text in &texts {
        for line in text.lines() {
            let line = line.split('#').next().unwrap();
            if let Some((name, _)) = line.split_once('=')
                && !name.trim().is_empty()
                && name
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
            {
                defined.insert(name.trim().to_string());
            }
            for part in line.split('$').skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `$JS.`, `$SYS.`, `$O.`: subjects, not variables.
                let subject = part[name.len()..].starts_with('.');
                if !name.is_empty() && !subject {
                    used.insert(name);
                }
            }
        }
    }
    used.retain(|v| !defined.contains(v));
    used
}

fn kinds(docs: &[Value]) -> Vec<(String, String)> {
    docs.iter()
        .filter(|d| !d.is_null())
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or("?").to_string(),
                d["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn find<'a>(docs: &'a BTreeMap<String, Vec<Value>>, kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .filter(|(p, _)| p.starts_with("k8s/"))
        .flat_map(|(_, d)| d.iter())
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

/// `env` of a container, name → the document's entry.
fn container_env(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn yaml_manifests_parse_and_agree_with_the_configs() {
    let docs = yaml_documents();

    // Compose: nats with the deploy config, a coordinator with a volume, two workers, Jaeger
    // wired to both binaries.
    let compose = &docs["compose.yaml"][0];
    let services = &compose["services"];
    for s in ["nats", "coordinator", "worker", "jaeger"] {
        assert!(services[s].is_object(), "compose has no {s}");
    }
    assert!(
        services["nats"]["command"]
            .to_string()
            .contains("/etc/nats/nats.conf")
    );
    let nats_env: BTreeSet<String> = services["nats"]["environment"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let needed = config_variables("nats.conf");
    assert!(
        needed.is_subset(&nats_env),
        "compose's nats lacks {:?}",
        needed.difference(&nats_env).collect::<Vec<_>>()
    );
    assert!(
        services["coordinator"]["volumes"]
            .to_string()
            .contains(":/var/lib/ordo"),
        "coordinator has no data volume"
    );
    assert_eq!(services["worker"]["deploy"]["replicas"], 2);
    for s in ["coordinator", "worker"] {
        let env = &services[s]["environment"];
        assert!(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"]
                .as_str()
                .is_some_and(|u| u.contains("jaeger")),
            "{s} is not wired to Jaeger: {env}"
        );
        assert!(env["ORDO_NATS_URL"].as_str().unwrap().starts_with("tls://"));
        assert!(env["ORDO_NATS_TLS_CA"].is_string());
        assert_eq!(env["ORDO_NATS_USER"], s);
    }
    assert_eq!(
        services["coordinator"]["build"]["dockerfile"],
        "deploy/Dockerfile"
    );

    // Kubernetes: the objects the deployment needs.
    let k8s: Vec<(String, String)> = docs
        .iter()
        .filter(|(p, _)| p.starts_with("k8s/"))
        .flat_map(|(_, d)| kinds(d))
        .collect();
    for (kind, name) in [
        ("StatefulSet", "nats"),
        ("StatefulSet", "ordo-coordinator"),
        ("Deployment", "ordo-worker"),
        ("HorizontalPodAutoscaler", "ordo-worker"),
        ("Secret", "ordo-nats-users"),
        ("Secret", "nats-tls"),
        ("Secret", "nats-ca"),
        ("Kustomization", "?"),
    ] {
        assert!(
            k8s.iter().any(|(k, n)| k == kind && n == name),
            "deploy/k8s has no {kind} {name}: {k8s:?}"
        );
    }
    let coordinator = find(&docs, "StatefulSet", "ordo-coordinator");
    assert_eq!(coordinator["spec"]["replicas"], 1);
    assert!(
        coordinator["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].is_string(),
        "coordinator has no PersistentVolumeClaim"
    );
    let nats = find(&docs, "StatefulSet", "nats");
    assert_eq!(nats["spec"]["replicas"], 3);
    let nats_container = &nats["spec"]["template"]["spec"]["containers"][0];
    assert!(nats_container["args"].to_string().contains("cluster.conf"));
    let nats_env: BTreeSet<String> = container_env(nats_container).into_keys().collect();
    let needed = config_variables("cluster.conf");
    assert!(
        needed.is_subset(&nats_env),
        "the nats StatefulSet lacks {:?}",
        needed.difference(&nats_env).collect::<Vec<_>>()
    );
    let hpa = find(&docs, "HorizontalPodAutoscaler", "ordo-worker");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "ordo-worker");

    // Every secret key a pod reads is one the example Secrets define.
    let mut defined = BTreeSet::new();
    for d in &docs["k8s/secrets.example.yaml"] {
        for key in d["stringData"].as_object().unwrap().keys() {
            defined.insert((
                d["metadata"]["name"].as_str().unwrap().to_string(),
                key.clone(),
            ));
        }
    }
    let mut refs = BTreeSet::new();
    for (kind, name) in [
        ("StatefulSet", "nats"),
        ("StatefulSet", "ordo-coordinator"),
        ("Deployment", "ordo-worker"),
    ] {
        let pod = &find(&docs, kind, name)["spec"]["template"]["spec"];
        for c in pod["containers"].as_array().unwrap() {
            for e in container_env(c).values() {
                let r = &e["valueFrom"]["secretKeyRef"];
                if r.is_object() {
                    refs.insert((
                        r["name"].as_str().unwrap().to_string(),
                        r["key"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
        for v in pod["volumes"].as_array().unwrap() {
            if let Some(s) = v["secret"]["secretName"].as_str() {
                assert!(
                    defined.iter().any(|(n, _)| n == s),
                    "{name} mounts undefined Secret {s}"
                );
            }
        }
    }
    assert!(refs.len() >= 4, "{refs:?}");
    let missing: Vec<_> = refs.difference(&defined).collect();
    assert!(
        missing.is_empty(),
        "secret keys not in secrets.example.yaml: {missing:?}"
    );

    // kubectl renders the kustomization when it is installed (no cluster needed).
    match Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
    {
        Ok(o) if o.status.success() => {
            let mut cmd = Command::new("kubectl");
            cmd.arg("kustomize").arg(deploy_dir().join("k8s"));
            let r = run_with_deadline(cmd, Duration::from_secs(60));
            assert_eq!(r.code(), 0, "kubectl kustomize: {}", r.stderr);
            assert!(r.stdout.contains("kind: HorizontalPodAutoscaler"));
            assert!(r.stdout.contains("namespace: ordo"));
        }
        _ => eprintln!("note: kubectl not installed; kustomization rendered by PyYAML only"),
    }
}

/// The Dockerfile's stages: `FROM ... AS name` and its instructions, continuation lines joined.
fn dockerfile_stages(text: &str) -> Vec<(String, Vec<String>)> {
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = line.trim();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => logical.push_str(part),
            None => {
                logical.push_str(line);
                let instruction = std::mem::take(&mut logical);
                if let Some(from) = instruction.strip_prefix("FROM ") {
                    let name = from.split_once(" AS ").map_or("", |(_, n)| n.trim());
                    stages.push((name.to_string(), Vec::new()));
                } else if let Some((_, body)) = stages.last_mut() {
                    body.push(instruction);
                }
            }
        }
    }
    stages
}

/// Whether `path` (relative, `/`-separated) matches a `.dockerignore` pattern as Docker reads
/// one: `*` and `?` within a path segment, `**` across segments, `[...]` classes, `\` escapes.
fn docker_glob(p: &[char], s: &[char]) -> bool {
    match p {
        [] => s.is_empty(),
        ['*', '*', '/', rest @ ..] => {
            docker_glob(rest, s)
                || (0..s.len()).any(|i| s[i] == '/' && docker_glob(rest, &s[i + 1..]))
        }
        ['*', '*', rest @ ..] => (0..=s.len()).any(|i| docker_glob(rest, &s[i..])),
        ['*', rest @ ..] => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != '/')
            .any(|i| docker_glob(rest, &s[i..])),
        ['?', rest @ ..] => s.first().is_some_and(|&c| c != '/') && docker_glob(rest, &s[1..]),
        ['[', rest @ ..] => {
            let Some(close) = rest.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                return s.first() == Some(&'[') && docker_glob(rest, &s[1..]);
            };
            let (class, after) = (&rest[..close], &rest[close + 1..]);
            let (negated, class) = match class {
                ['^' | '!', c @ ..] => (true, c),
                c => (false, c),
            };
            let Some(&c) = s.first() else { return false };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= (class[i]..=class[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            c != '/' && hit != negated && docker_glob(after, &s[1..])
        }
        ['\\', c, rest @ ..] | [c, rest @ ..] => s.first() == Some(c) && docker_glob(rest, &s[1..]),
    }
}

/// Whether a `.dockerignore` keeps `path` out of the build context: the last pattern that
/// matches the path or one of its parent directories decides (`!` patterns put it back).
fn docker_ignores(ignore: &str, path: &str) -> bool {
    let path: Vec<char> = path.chars().collect();
    let mut ignored = false;
    for line in ignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keep, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, line),
        };
        let pattern: Vec<char> = pattern
            .trim_start_matches('/')
            .trim_end_matches('/')
            .trim_start_matches("./")
            .chars()
            .collect();
        let matches = std::iter::once(path.len())
            .chain((0..path.len()).filter(|&i| path[i] == '/'))
            .any(|end| docker_glob(&pattern, &path[..end]));
        if matches {
            ignored = !keep;
        }
    }
    ignored
}

/// `path` relative to `root`, `..` resolved (cargo reports `cli/../bench/x.rs`).
fn relative(root: &Path, path: &Path) -> String {
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            c => clean.push(c),
        }
    }
    clean.strip_prefix(root).unwrap().display().to_string()
}

/// Files below `dir`, relative to `root`.
fn files_below(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            files_below(root, &path, out);
        } else {
            out.push(relative(root, &path));
        }
    }
}

/// What is wrong with building the image from `dockerfile` in a context filtered by `ignore`,
/// for the workspace `metadata` (`cargo metadata` of the repository at `root`) describes.
fn dockerfile_problems(
    dockerfile: &str,
    ignore: &str,
    metadata: &Value,
    root: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let stages = dockerfile_stages(dockerfile);
    let Some((_, build)) = stages.iter().find(|(name, _)| name == "build") else {
        return vec![format!("no stage named build: {stages:?}")];
    };
    let Some((_, runtime)) = stages.last().filter(|(name, _)| name != "build") else {
        return vec!["the image's last stage is the build stage".into()];
    };
    if !build.iter().any(|i| i == "COPY . .") {
        problems.push("the build stage does not copy the build context (COPY . .)".into());
    }
    // The build stage's shell commands, without the `RUN` flags (cache mounts).
    let commands: Vec<Vec<&str>> = build
        .iter()
        .filter_map(|i| i.strip_prefix("RUN "))
        .flat_map(|run| run.split("&&"))
        .map(|c| {
            c.split_whitespace()
                .skip_while(|w| w.starts_with("--mount="))
                .collect()
        })
        .collect();
    let Some(cargo) = commands.iter().find(|c| c.starts_with(&["cargo", "build"])) else {
        return vec![format!("no cargo build in the build stage: {commands:?}")];
    };
    for flag in ["--release", "--locked", "--bins"] {
        if !cargo.contains(&flag) {
            problems.push(format!("cargo build without {flag}: {cargo:?}"));
        }
    }
    let selected: Vec<&str> = cargo
        .windows(2)
        .filter(|w| w[0] == "-p" || w[0] == "--package")
        .map(|w| w[1])
        .collect();

    // The packages it selects are workspace members; the binaries they build are the ones
    // copied out of target/release/.
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
        .collect();
    let mut bins = BTreeSet::new();
    for name in &selected {
        match packages.iter().find(|p| p["name"] == *name) {
            Some(p) => bins.extend(
                p["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
                    .filter_map(|t| t["name"].as_str()),
            ),
            None => problems.push(format!("cargo build -p {name}: no such workspace package")),
        }
    }
    let Some(cp) = commands.iter().find(|c| c.first() == Some(&"cp")) else {
        return vec![format!(
            "the build stage copies no binary out: {commands:?}"
        )];
    };
    let (out_dir, copied) = cp[1..].split_last().unwrap();
    let copied: BTreeSet<&str> = copied
        .iter()
        .map(|c| match c.strip_prefix("target/release/") {
            Some(b) => b,
            None => {
                problems.push(format!("cp {c}: not a release binary"));
                c
            }
        })
        .collect();
    if copied != bins {
        problems.push(format!(
            "the image copies {copied:?}, cargo build -p {selected:?} --bins builds {bins:?}"
        ));
    }
    if !(copied.len() == 3
        && ["ordo", "ordo-coordinator", "ordo-worker"]
            .iter()
            .all(|b| copied.contains(b)))
    {
        problems.push(format!(
            "the image does not hold the three binaries: {copied:?}"
        ));
    }

    // The runtime stage takes them from where the build stage put them.
    let from_build: Vec<Vec<&str>> = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("COPY --from=build "))
        .map(|c| c.split_whitespace().collect())
        .collect();
    let norm = |d: &str| d.trim_end_matches('/').to_string();
    if !from_build
        .iter()
        .any(|c| c.len() == 2 && norm(c[0]) == norm(out_dir))
    {
        problems.push(format!(
            "the runtime stage copies {from_build:?} from the build stage, which put the \
             binaries in {out_dir}"
        ));
    }
    let user = runtime.iter().rev().find_map(|i| i.strip_prefix("USER "));
    if user.is_none_or(|u| u.starts_with("root") || u.starts_with("0")) {
        problems.push(format!(
            "the runtime stage runs as {user:?}, not as a non-root user"
        ));
    }

    // The build context (`COPY . .`) holds every member's manifest and sources, the lock file,
    // and neither target/ nor .venv/.
    for out in ["target/release/ordo", ".venv/bin/nats-server"] {
        if !docker_ignores(ignore, out) {
            problems.push(format!("the build context includes {out}"));
        }
    }
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    for p in &packages {
        let manifest = Path::new(p["manifest_path"].as_str().unwrap());
        files_below(root, manifest.parent().unwrap(), &mut needed);
        for t in p["targets"].as_array().unwrap() {
            needed.push(relative(root, Path::new(t["src_path"].as_str().unwrap())));
        }
    }
    for path in needed.iter().filter(|p| docker_ignores(ignore, p)) {
        problems.push(format!("the build context leaves out {path}"));
    }
    problems
}

/// No Docker daemon here: the Dockerfile is checked against the workspace it builds. Its
/// `cargo build` selects packages that exist and `--locked` holds (the lock file is current);
/// the binaries it copies out are those packages' binaries, and the runtime stage takes them
/// from there; the ignore file keeps target/ and .venv/ out of the context and every member's
/// manifest and sources in. A renamed binary or a member the ignore file drops fails it.
#[test]
fn dockerfile_builds_the_three_binaries_in_stages() {
    let root = deploy_dir().parent().unwrap().to_path_buf();
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(deploy_dir().join("Dockerfile.dockerignore")).unwrap();
    // The whole resolve, as `cargo build --locked` checks it (`--no-deps` would not read the
    // lock file), offline and for this platform: the packages the workspace builds here are
    // already downloaded.
    let rustc = run_with_deadline(
        {
            let mut c = Command::new("rustc");
            c.arg("-vV");
            c
        },
        Duration::from_secs(60),
    );
    let host = rustc
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("rustc -vV names no host: {rustc:?}"));
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
    cmd.args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", host])
        .current_dir(&root);
    let run = run_with_deadline(cmd, Duration::from_secs(120));
    assert_eq!(
        run.code(),
        0,
        "cargo metadata --locked (the Dockerfile's --locked would fail): {}",
        run.stderr
    );
    let metadata = run.json();
    let problems = dockerfile_problems(&dockerfile, &ignore, &metadata, &root);
    assert!(problems.is_empty(), "deploy/Dockerfile: {problems:#?}");

    // The checks see what they are for: a binary renamed in the Dockerfile, the runtime stage
    // copying from elsewhere, a member crate (or all of target/'s siblings) left out of the
    // context, target/ let in.
    let broken = [
        (
            dockerfile.replace("target/release/ordo-worker", "target/release/ordo-workerd"),
            ignore.clone(),
            "ordo-workerd",
        ),
        (
            dockerfile.replace("COPY --from=build /out/", "COPY --from=build /bin/"),
            ignore.clone(),
            "the runtime stage copies",
        ),
        (
            dockerfile.replace("--locked ", ""),
            ignore.clone(),
            "without --locked",
        ),
        (
            dockerfile.clone(),
            format!("{ignore}report\n"),
            "leaves out report/Cargo.toml",
        ),
        (
            dockerfile.clone(),
            format!("{ignore}**/*.rs\n"),
            "leaves out cli/src/main.rs",
        ),
        (
            dockerfile.clone(),
            format!("{ignore}!target/release\n"),
            "includes target/release/ordo",
        ),
    ];
    for (dockerfile, ignore, expected) in broken {
        let problems = dockerfile_problems(&dockerfile, &ignore, &metadata, &root);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "a broken Dockerfile or ignore file passes (expected {expected:?}): {problems:#?}"
        );
    }
}

/// `KEY=value` lines per `[Section]` of a unit file (repeated keys keep every value).
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(format!("{section}.{k}"))
                .or_default()
                .push(v.to_string());
        }
    }
    out
}

#[test]
fn systemd_units_are_hardened_and_pass_systemd_analyze_verify() {
    let dir = deploy_dir().join("systemd");
    let mut units: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    units.sort();
    let names: Vec<String> = units
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "nats-server.service",
            "ordo-coordinator.service",
            "ordo-worker.service"
        ]
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut rewritten = Vec::new();
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        let keys = unit_keys(&text);
        let one = |k: &str| -> &str {
            keys.get(k)
                .and_then(|v| v.last())
                .map(String::as_str)
                .unwrap_or_else(|| panic!("{} has no {k}", unit.display()))
        };
        assert!(!one("Unit.Description").is_empty());
        assert_eq!(one("Install.WantedBy"), "multi-user.target");
        let user = one("Service.User");
        assert!(user != "root" && !user.is_empty(), "runs as {user}");
        for (k, v) in [
            ("Service.NoNewPrivileges", "yes"),
            ("Service.ProtectSystem", "strict"),
            ("Service.ProtectHome", "yes"),
            ("Service.PrivateTmp", "yes"),
            ("Service.PrivateDevices", "yes"),
            ("Service.CapabilityBoundingSet", ""),
            ("Service.RestrictSUIDSGID", "yes"),
        ] {
            assert_eq!(one(k), v, "{}: {k}", unit.display());
        }
        // ProtectSystem=strict: the one writable place is the state directory.
        let state = format!("/var/lib/{}", one("Service.StateDirectory"));
        assert_eq!(one("Service.ReadWritePaths"), state);
        let exec = one("Service.ExecStart");
        match unit.file_name().unwrap().to_str().unwrap() {
            "ordo-coordinator.service" => {
                assert!(
                    exec.contains("ordo-coordinator") && exec.contains(&state),
                    "{exec}"
                )
            }
            "ordo-worker.service" => {
                assert!(exec.contains("ordo-worker"), "{exec}");
                assert_eq!(one("Service.WorkingDirectory"), state);
                // Longer than the worker's default drain grace (30s).
                let stop: u64 = one("Service.TimeoutStopSec")
                    .trim_end_matches('s')
                    .parse()
                    .unwrap();
                assert!(stop > 30, "TimeoutStopSec {stop}s cuts the drain short");
            }
            _ => assert!(
                exec.contains("nats-server -c /etc/nats/nats.conf"),
                "{exec}"
            ),
        }
        // verify checks that ExecStart's binary exists: point it at the real ones.
        let text = text
            .replace(
                "/usr/local/bin/nats-server",
                &path_str(
                    &nats_server_path()
                        .canonicalize()
                        .unwrap_or(nats_server_path()),
                ),
            )
            .replace(
                "/usr/local/bin/ordo-coordinator",
                &path_str(&bin("ordo-coordinator")),
            )
            .replace("/usr/local/bin/ordo-worker", &path_str(&bin("ordo-worker")));
        rewritten.push(write(
            tmp.path(),
            unit.file_name().unwrap().to_str().unwrap(),
            &text,
        ));
    }

    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let mut cmd = Command::new("systemd-analyze");
            cmd.arg("verify").args(&rewritten);
            let r = run_with_deadline(cmd, Duration::from_secs(60));
            // verify exits 0 on unknown keys and bad values, printing them: demand silence.
            assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
            let complaints = format!("{}{}", r.stdout, r.stderr);
            assert!(
                complaints.trim().is_empty(),
                "systemd-analyze verify complains:\n{complaints}"
            );
        }
        _ => eprintln!(
            "note: systemd-analyze is not installed; checked the units' keys and hardening only"
        ),
    }
}

/// `--ha` under the deployed permissions: two coordinators as the `coordinator` user, the
/// active one killed with its disk deleted and restarted on an empty disk (so standbys took
/// snapshots, and it starts from one); `ordo cluster` as the client. Jobs run before and after,
/// and the server reports no permission violation.
#[test]
fn ha_coordinators_work_with_the_deployed_permissions() {
    let d = Deployed::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let coordinator = |i: usize| {
        let data = path_str(dirs[i].path());
        let id = format!("c{}", i + 1);
        d.daemon(
            "ordo-coordinator",
            "coordinator",
            COORDINATOR_PASSWORD,
            &[
                "--data-dir",
                &data,
                "--ha",
                "--lease-ttl",
                "2s",
                "--id",
                &id,
                "--snapshot-every",
                "2",
            ],
        )
    };
    let mut c1 = coordinator(0);
    assert!(
        wait_until(Duration::from_secs(30), || d.client(&["workers"]).code()
            == 0),
        "c1 did not answer:\n{}\nnats:\n{}",
        c1.log(),
        d.nats.log()
    );
    let c2 = coordinator(1);
    let roles = || -> Vec<(String, String)> {
        let r = d.client(&["cluster", "--output", "json"]);
        ordo_tests::cluster_members(&r.stdout)
            .into_iter()
            .map(|(id, role, _)| (id, role))
            .collect()
    };
    let pair = |a: &str, b: &str| {
        vec![
            (a.to_string(), "active".to_string()),
            (b.to_string(), "standby".to_string()),
        ]
    };
    assert!(
        wait_until(Duration::from_secs(30), || roles() == pair("c1", "c2")),
        "{:?}\nc2:\n{}\n{:#?}",
        roles(),
        c2.log(),
        d.violations()
    );
    let _worker = d.daemon("ordo-worker", "worker", WORKER_PASSWORD, &["--id", "w"]);
    let spec = write(d.work.path(), "job.toml", TWO_TASKS);
    let r = d.client(&["submit", &spec, "--wait"]);
    assert_eq!(
        r.code(),
        0,
        "{}{}\n{:#?}",
        r.stdout,
        r.stderr,
        d.violations()
    );

    c1.stop(libc::SIGKILL);
    std::fs::remove_dir_all(dirs[0].path()).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || roles()
            == vec![("c2".to_string(), "active".to_string())]),
        "c2 did not take over: {:?}\n{}",
        roles(),
        c2.log()
    );
    c1.start();
    assert!(
        wait_until(Duration::from_secs(30), || roles() == pair("c2", "c1")),
        "c1 did not rejoin: {:?}\n{}",
        roles(),
        c1.log()
    );
    assert!(
        c1.log().contains("state restored from the snapshot"),
        "{}",
        c1.log()
    );
    let r = d.client(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 0, "{}{}\n{}", r.stdout, r.stderr, c2.log());
    let jobs = d.client(&["jobs", "--output", "json"]).json();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    assert_eq!(
        d.violations(),
        Vec::<String>::new(),
        "the coordinator or client role lacks a permission --ha needs"
    );
}

/// Row 11 on the three-node cluster (`cluster.conf`, R3 journal): two `--ha` coordinators
/// (`--replicas 3`); mid-job the active one is `kill -9`ed with its disk deleted, then the NATS
/// node leading `ORDO_JOURNAL` is killed. The three shapes finish with every ledger invariant.
#[test]
fn ha_on_a_three_node_cluster_survives_the_active_coordinator_and_the_journal_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = make_certs(tmp.path(), &["localhost", "127.0.0.1"]);
    let route_ports = free_ports(3);
    let mut nodes: Vec<ConfiguredNats> = Vec::new();
    for i in 0..3 {
        let mut env = nats_env(&certs);
        env.retain(|(k, _)| !k.starts_with("NATS_ROUTE_") || k == "NATS_ROUTE_PASSWORD");
        env.push(("NATS_SERVER_NAME".into(), format!("nats-{i}")));
        for (j, port) in route_ports.iter().enumerate() {
            env.push((
                format!("NATS_ROUTE_{j}"),
                format!("nats-route://route:pRouteSecret5@127.0.0.1:{port}"),
            ));
        }
        let listen = format!("nats://127.0.0.1:{}", route_ports[i]);
        nodes.push(ConfiguredNats::start_with_args(
            &deploy_dir().join("nats/cluster.conf"),
            &env,
            &["--cluster", &listen],
        ));
    }
    let urls = nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let ca = path_str(&certs.ca);
    let work = tempfile::tempdir().unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let flags = |user: &str, password: &str| -> Vec<String> {
        [
            "--nats",
            &urls,
            "--tls-ca",
            &ca,
            "--user",
            user,
            "--password",
            password,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let spawn = |bin_name: &str, user: &str, password: &str, extra: &[&str]| {
        let mut args = flags(user, password);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::spawn(bin_name, &args, work.path())
    };
    let client = |args: &[&str]| {
        let f = flags("client", CLIENT_PASSWORD);
        let mut all = args.to_vec();
        all.extend(f.iter().map(String::as_str));
        ordo_in(work.path(), &all, &[])
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = nodes[0].url();
    rt.block_on(async {
        let (c, _) = connect_as(&first, &certs.ca, "coordinator", COORDINATOR_PASSWORD).await;
        let mut js = jetstream::new(c);
        js.set_timeout(Duration::from_secs(1));
        for _ in 0..60 {
            match js.get_stream("ORDO_TASKS").await {
                Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(_)) => return,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        panic!("the cluster never elected a JetStream meta leader");
    });
    let coordinator = |i: usize| {
        let data = path_str(dirs[i].path());
        let id = format!("c{}", i + 1);
        spawn(
            "ordo-coordinator",
            "coordinator",
            COORDINATOR_PASSWORD,
            &[
                "--data-dir",
                &data,
                "--replicas",
                "3",
                "--ha",
                "--lease-ttl",
                "3s",
                "--id",
                &id,
                "--ack-wait",
                "5s",
            ],
        )
    };
    let mut c1 = coordinator(0);
    assert!(
        wait_until(Duration::from_secs(60), || client(&["workers"]).code() == 0),
        "c1 did not come up:\n{}",
        c1.log()
    );
    let c2 = coordinator(1);
    let roles = || -> Vec<(String, String)> {
        let r = client(&["cluster", "--output", "json"]);
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or_default().to_string(),
                    s["role"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || roles().len() == 2),
        "{:?}\n{}",
        roles(),
        c2.log()
    );
    let _workers: Vec<Daemon> = ["w1", "w2"]
        .iter()
        .map(|id| {
            spawn(
                "ordo-worker",
                "worker",
                WORKER_PASSWORD,
                &["--id", id, "--concurrency", "4"],
            )
        })
        .collect();
    let ledger = Ledger::new(work.path());
    let mut jobs = Vec::new();
    for shape in SHAPES {
        let path = write(
            work.path(),
            &format!("{}.toml", shape.name()),
            &ledger.spec(shape, "sleep 0.1"),
        );
        let r = client(&["submit", &path]);
        assert_eq!(r.code(), 0, "{}", r.stderr);
        jobs.push((shape, r.stdout.trim().to_string()));
    }
    let recorded = || -> Option<usize> {
        let mut n = 0;
        for (_, job) in &jobs {
            let r = client(&["status", job, "--output", "json"]);
            if r.code() != 0 {
                return None;
            }
            n += ledger::succeeded(&r.json())?;
        }
        Some(n)
    };
    let mut recovery = Duration::ZERO;
    // 1. The active coordinator dies with its disk.
    assert!(wait_until(Duration::from_secs(60), || ledger.starts() >= 100));
    let before = recorded();
    let fault = std::time::Instant::now();
    c1.stop(9);
    std::fs::remove_dir_all(dirs[0].path()).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || recorded()
            .zip(before)
            .is_some_and(|(n, b)| n > b)),
        "c2 did not take over:\n{}",
        c2.log()
    );
    recovery = recovery.max(fault.elapsed());
    assert_eq!(roles(), vec![("c2".to_string(), "active".to_string())]);
    // 2. The node leading the journal dies.
    let leader = rt.block_on(async {
        let (c, _) = connect_as(&first, &certs.ca, "coordinator", COORDINATOR_PASSWORD).await;
        let js = jetstream::new(c);
        let mut s = js.get_stream("ORDO_JOURNAL").await.unwrap();
        let info = s.info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3);
        info.cluster
            .clone()
            .and_then(|c| c.leader)
            .expect("a journal leader")
    });
    let i: usize = leader.trim_start_matches("nats-").parse().unwrap();
    assert!(wait_until(Duration::from_secs(60), || ledger.starts() >= 300));
    let before = recorded();
    let fault = std::time::Instant::now();
    nodes[i].stop(9);
    assert!(
        wait_until(Duration::from_secs(60), || recorded()
            .zip(before)
            .is_some_and(|(n, b)| n > b)),
        "no progress after losing the journal's leader {leader}:\n{}",
        c2.log()
    );
    recovery = recovery.max(fault.elapsed());
    let mut tally = Tally::default();
    for (shape, job) in &jobs {
        let done = wait_until(Duration::from_secs(180), || {
            let r = client(&["status", job, "--output", "json"]);
            r.code() == 0 && r.json()["state"] != "running" && r.json()["state"] != "pending"
        });
        assert!(done, "{} did not finish\nc2:\n{}", shape.name(), c2.log());
        let report = client(&["report", job, "--format", "json"]);
        assert_eq!(report.code(), 0, "{}", report.stderr);
        tally += ledger.check(job, *shape, &report.json(), &[]);
    }
    ledger.assert_no_leftovers();
    ledger::record(
        "9z",
        Row {
            fault: format!(
                "11. `--ha` on a three-node nats cluster (R3 journal): the active coordinator \
                 `kill -9`ed with its disk deleted, then the node leading the journal ({leader}) \
                 killed mid-job"
            ),
            seeds: 1,
            tally,
            recovery: Some(recovery),
        },
    );
}

/// Kills the process on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn scripts_local_nats_starts_a_server_only_its_user_can_use() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("nats");
    let port = free_ports(1)[0];
    let script = deploy_dir().join("../scripts/local-nats");
    let _server = Killed(
        Command::new(&script)
            .arg(&state)
            .arg(port.to_string())
            .env("NATS_SERVER_BIN", nats_server_path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "scripts/local-nats did not start a server"
    );
    for file in ["env", "nats.conf"] {
        let mode = std::fs::metadata(state.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
    }
    let text = std::fs::read_to_string(state.join("env")).unwrap();
    let env: Vec<(String, String)> = text
        .trim()
        .trim_start_matches("export ")
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let url = format!("nats://127.0.0.1:{port}");
    assert!(
        env.contains(&("ORDO_NATS_URL".into(), url.clone())),
        "{env:?}"
    );

    // Without the password nobody gets in (another account of the machine has only the URL).
    let work = tempfile::tempdir().unwrap();
    let r = ordo_in(work.path(), &["workers", "--nats", &url], &[]);
    assert_eq!(r.code(), 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.to_lowercase().contains("authorization"),
        "{}",
        r.stderr
    );

    // With what the script wrote, the three programs work and no OPEN SERVER warning is given.
    let data = tempfile::tempdir().unwrap();
    let _coordinator = Daemon::spawn_env(
        "ordo-coordinator",
        &["--data-dir", &path_str(data.path())],
        work.path(),
        &env,
    );
    let worker = Daemon::spawn_env("ordo-worker", &["--id", "w-local"], work.path(), &env);
    let with: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(
        wait_until(Duration::from_secs(30), || {
            ordo_in(work.path(), &["workers"], &with)
                .stdout
                .contains("w-local")
        }),
        "{}",
        worker.log()
    );
    let spec = write(work.path(), "job.toml", TWO_TASKS);
    let r = ordo_in(work.path(), &["submit", &spec, "--wait"], &with);
    assert_eq!(r.code(), 0, "{}{}\n{}", r.stdout, r.stderr, worker.log());
    assert!(!worker.log().contains("OPEN SERVER"), "{}", worker.log());
}
