//! Helpers for the files under `deploy/`: nats-server started from a deploy configuration on a
//! random port, `nats-server -t`, a certificate authority made with openssl, and the Python that
//! reads YAML.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Run, run_with_deadline, signal, wait_child, wait_until};

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .canonicalize()
        .expect("deploy/ beside tests/")
}

/// The nats-server binary the tests use (`NATS_SERVER_BIN`, else `nats-server` on PATH).
pub fn nats_server_path() -> PathBuf {
    super::nats_server_bin()
}

/// `nats-server -t -c CONFIG` with `env` added: whether the server accepts the file.
pub fn nats_server_check(config: &Path, env: &[(String, String)]) -> Run {
    let mut cmd = Command::new(nats_server_path());
    cmd.arg("-t").arg("-c").arg(config);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    run_with_deadline(cmd, Duration::from_secs(30))
}

/// Where the deploy configurations keep JetStream data; replaced by a temporary directory.
const STORE_DIR: &str = "/var/lib/nats";

/// A nats-server running a configuration from `deploy/nats/` (the whole directory is copied, so
/// includes resolve; only the JetStream store path is replaced by a temporary one), listening
/// on 127.0.0.1 on a random port with monitoring on another. Killed on drop.
pub struct ConfiguredNats {
    child: Option<Child>,
    pub port: u16,
    /// `nats` or `tls`, from the server's ports file.
    pub scheme: String,
    dir: tempfile::TempDir,
}

impl ConfiguredNats {
    /// Starts `nats-server -c CONFIG` (a copy) with `env` (passwords, certificate paths, ...).
    pub fn start(config: &Path, env: &[(String, String)]) -> ConfiguredNats {
        ConfiguredNats::start_with_args(config, env, &[])
    }

    /// Like `start`, with more command-line flags (they override the file, e.g. `--cluster`).
    pub fn start_with_args(
        config: &Path,
        env: &[(String, String)],
        args: &[&str],
    ) -> ConfiguredNats {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("conf");
        std::fs::create_dir_all(&conf_dir).unwrap();
        let store = dir.path().join("js");
        let src_dir = config.parent().expect("config in a directory");
        for e in std::fs::read_dir(src_dir).unwrap().flatten() {
            if !e.file_type().unwrap().is_file() {
                continue;
            }
            let text = std::fs::read(e.path()).unwrap();
            let text = match String::from_utf8(text) {
                Ok(s) => s.replace(STORE_DIR, &store.to_string_lossy()).into_bytes(),
                Err(e) => e.into_bytes(),
            };
            std::fs::write(conf_dir.join(e.file_name()), text).unwrap();
        }
        let conf = conf_dir.join(config.file_name().unwrap());
        let ports = dir.path().join("ports");
        std::fs::create_dir_all(&ports).unwrap();
        let log = std::fs::File::create(dir.path().join("nats.log")).unwrap();
        let child = Command::new(nats_server_path())
            .arg("-c")
            .arg(&conf)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "-m",
                "-1",
                "--ports_file_dir",
            ])
            .arg(&ports)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (scripts/test sets NATS_SERVER_BIN)",
                    nats_server_path().display()
                )
            });
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let mut s = ConfiguredNats {
            child: Some(child),
            port: 0,
            scheme: String::new(),
            dir,
        };
        let mut found = None;
        let started = wait_until(Duration::from_secs(20), || {
            found = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| {
                    let url = v["nats"][0].as_str()?.to_string();
                    let (scheme, rest) = url.split_once("://")?;
                    Some((
                        scheme.to_string(),
                        rest.rsplit(':').next()?.parse::<u16>().ok()?,
                    ))
                });
            found.is_some()
        });
        assert!(
            started,
            "nats-server did not start with {}:\n{}",
            config.display(),
            s.log()
        );
        let (scheme, port) = found.unwrap();
        s.scheme = scheme;
        s.port = port;
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok()
        }));
        s
    }

    /// `tls://127.0.0.1:PORT` or `nats://127.0.0.1:PORT`, as the server announces itself.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// The server's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Stops the server with `sig` and waits for it to exit.
    pub fn stop(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), sig);
            wait_child(&mut c, Duration::from_secs(20));
        }
    }
}

impl Drop for ConfiguredNats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A CA and a server certificate for `names`, made by `deploy/nats/gen-certs.sh` (openssl) in
/// `dir`: `ca.pem`, `ca-key.pem`, `server.pem`, `server-key.pem`.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certs(dir: &Path, names: &[&str]) -> Certs {
    assert!(
        Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "the TLS tests make their certificates with the openssl CLI, which is not installed"
    );
    let mut cmd = Command::new(deploy_dir().join("nats/gen-certs.sh"));
    cmd.arg(dir).args(names);
    let r = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(r.code(), 0, "gen-certs.sh failed: {}{}", r.stdout, r.stderr);
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    }
}

/// A Python 3 that can `import yaml`: `ORDO_TEST_PYTHON`, else the repository's `.venv`
/// (scripts/test installs PyYAML there), else `python3` on PATH.
pub fn python_with_yaml() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("ORDO_TEST_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3"));
    candidates.push(PathBuf::from("python3"));
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import yaml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}
