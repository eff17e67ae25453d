//! Connection options shared by `ordo`, `ordo-coordinator` and `ordo-worker`: one clap struct
//! (every flag naming its environment variable) and one `connect` that applies them, so the
//! three binaries reach NATS the same way (URL, credentials file, user/password, token, TLS CA).
//! Connecting to a server on another machine without credentials or TLS is logged as a loud
//! warning: whoever can publish to an open server runs commands on every worker.

use std::path::PathBuf;
use std::time::Duration;

use ordo_proto::names::{self, DEFAULT_NATS_URL};

/// Who connects: each role receives its replies under an inbox prefix of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Worker,
    /// `ordo` (CLI, MCP, dashboard) and anything else that uses the API.
    Client,
}

impl Role {
    pub fn inbox_prefix(self) -> &'static str {
        match self {
            Role::Coordinator => names::INBOX_COORDINATOR,
            Role::Worker => names::INBOX_WORKER,
            Role::Client => names::INBOX_CLIENT,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (`tls://` for TLS) [default:
    /// nats://127.0.0.1:4222].
    #[arg(long = "nats", env = "ORDO_NATS_URL", value_name = "URL")]
    pub url: Option<String>,
    /// NATS credentials file (JWT + nkey).
    #[arg(long, env = "ORDO_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    #[arg(long, env = "ORDO_NATS_USER")]
    pub user: Option<String>,
    #[arg(long, env = "ORDO_NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    #[arg(long, env = "ORDO_NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for TLS.
    #[arg(long, env = "ORDO_NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach NATS at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot read NATS credentials {path}: {source}")]
    Creds {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--user and --password go together")]
    Incomplete,
}

impl NatsArgs {
    pub fn with_url(url: impl Into<String>) -> NatsArgs {
        NatsArgs {
            url: Some(url.into()),
            creds: None,
            user: None,
            password: None,
            token: None,
            tls_ca: None,
        }
    }

    /// The URL(s) given, or the default.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_NATS_URL)
    }

    /// Why this connection is unsafe, if it is: a server on another machine reached without
    /// credentials (anyone could publish tasks) or without TLS (passwords and task commands in
    /// clear). `None` for loopback servers and for credentials over TLS.
    pub fn insecure(&self) -> Option<String> {
        let addrs: Vec<async_nats::ServerAddr> = self
            .url()
            .split(',')
            .filter_map(|u| u.trim().parse().ok())
            .collect();
        let remote: Vec<String> = addrs
            .iter()
            .filter(|a| !is_loopback(a.host()))
            .map(|a| format!("{}:{}", a.host(), a.port()))
            .collect();
        if remote.is_empty() {
            return None;
        }
        let creds = self.has_credentials(&addrs);
        let tls = self.tls_ca.is_some() || addrs.iter().all(|a| a.tls_required());
        let missing = match (creds, tls) {
            (true, true) => return None,
            (false, false) => "credentials or TLS",
            (false, true) => "credentials",
            (true, false) => "TLS",
        };
        Some(format!(
            "INSECURE: connecting to {} without {missing}: anyone who can reach this NATS server \
             can read task commands or publish tasks that every worker runs; use the \
             authenticated configuration in deploy/nats (see README, \"Across machines\")",
            remote.join(", ")
        ))
    }

    /// What a worker says when it serves an open server on this machine: a server on loopback
    /// reached without credentials, where any account of the machine can publish a task that
    /// the worker runs. `None` with credentials, or for a remote server (`insecure` speaks of
    /// that one).
    pub fn open_local(&self) -> Option<String> {
        let addrs: Vec<async_nats::ServerAddr> = self
            .url()
            .split(',')
            .filter_map(|u| u.trim().parse().ok())
            .collect();
        let local = !addrs.is_empty() && addrs.iter().all(|a| is_loopback(a.host()));
        if !local || self.has_credentials(&addrs) {
            return None;
        }
        Some(format!(
            "OPEN SERVER: {} takes no credentials: anyone with an account on this machine can \
             publish a task that this worker runs. Fine for a trial on your own machine; \
             otherwise start NATS with scripts/local-nats (one command, a password of its own) \
             or the configuration in deploy/nats",
            self.url()
        ))
    }

    fn has_credentials(&self, addrs: &[async_nats::ServerAddr]) -> bool {
        self.creds.is_some()
            || self.user.is_some()
            || self.token.is_some()
            || addrs.iter().any(|a| a.has_user_pass())
    }

    /// Connects once as `role` (connection `name`), failing fast (`connect_timeout`) when NATS
    /// is unreachable; afterwards the client reconnects forever.
    pub async fn connect(
        &self,
        role: Role,
        name: &str,
        connect_timeout: Duration,
    ) -> Result<async_nats::Client, ConnectError> {
        if let Some(why) = self.insecure() {
            tracing::warn!("{why}");
        }
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .custom_inbox_prefix(role.inbox_prefix())
            .connection_timeout(connect_timeout)
            .max_reconnects(None);
        if let Some(path) = &self.creds {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Creds {
                    path: path.clone(),
                    source,
                })?;
        }
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => opts = opts.user_and_password(u.clone(), p.clone()),
            (None, None) => {}
            _ => return Err(ConnectError::Incomplete),
        }
        if let Some(t) = &self.token {
            opts = opts.token(t.clone());
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        let urls: Vec<String> = self
            .url()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let addrs: Vec<async_nats::ServerAddr> =
            urls.iter().filter_map(|u| u.parse().ok()).collect();
        opts.connect(addrs)
            .await
            .map_err(|source| ConnectError::Unreachable {
                url: self.url().to_string(),
                source,
            })
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_server_on_this_machine_is_named() {
        let open = NatsArgs::with_url("nats://127.0.0.1:4222")
            .open_local()
            .unwrap();
        assert!(
            open.contains("anyone with an account on this machine"),
            "{open}"
        );
        assert!(open.contains("scripts/local-nats"), "{open}");
        assert!(
            NatsArgs::with_url("nats://localhost:4222")
                .open_local()
                .is_some()
        );
        assert!(
            NatsArgs::with_url("nats://u:p@127.0.0.1:4222")
                .open_local()
                .is_none()
        );
        let mut with_user = NatsArgs::with_url("nats://127.0.0.1:4222");
        with_user.user = Some("ordo".into());
        assert!(with_user.open_local().is_none());
        // A remote one is `insecure`'s business.
        assert!(
            NatsArgs::with_url("nats://10.0.0.1:4222")
                .open_local()
                .is_none()
        );
    }

    #[test]
    fn remote_servers_without_credentials_or_tls_are_insecure() {
        let args = |url: &str| NatsArgs::with_url(url);
        assert!(args("nats://127.0.0.1:4222").insecure().is_none());
        assert!(args("nats://localhost:4222").insecure().is_none());
        let open = args("nats://10.0.0.5:4222").insecure().unwrap();
        assert!(open.contains("credentials or TLS"), "{open}");
        let mut with_user = args("nats://10.0.0.5:4222");
        with_user.user = Some("u".into());
        with_user.password = Some("p".into());
        assert!(with_user.insecure().unwrap().contains("without TLS"));
        let mut safe = args("tls://nats.example:4222");
        safe.creds = Some("x.creds".into());
        assert!(safe.insecure().is_none());
        assert!(
            args("tls://nats.example:4222")
                .insecure()
                .unwrap()
                .contains("without credentials")
        );
    }
}
