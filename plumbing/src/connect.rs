//! Connection options shared by `ordo`, `ordo-coordinator` and `ordo-worker`: one clap struct
//! (every flag naming its environment variable) and one `connect` that applies them, so the
//! three binaries reach NATS the same way (URL, credentials file, user/password, token, TLS CA).

use std::path::PathBuf;
use std::time::Duration;

use ordo_proto::names::DEFAULT_NATS_URL;

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

    /// Connects once, failing fast (`connect_timeout`) when NATS is unreachable; afterwards the
    /// client reconnects forever.
    pub async fn connect(
        &self,
        name: &str,
        connect_timeout: Duration,
    ) -> Result<async_nats::Client, ConnectError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
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
