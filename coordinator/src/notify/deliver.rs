//! One delivery of a notification: its body (JSON, or Slack's `{"text": ...}`), its signature
//! (`Ordo-Signature: t=<unix secs>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, as Stripe signs), and
//! the HTTP POST (http, or https through rustls with the system's roots). Any answer but 2xx,
//! a timeout, or a missing secret is an error that says what went wrong.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ordo_proto::gates::NotifyFormat;
use ordo_proto::names;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::Notice;

/// A delivery that takes longer than this failed (it is retried).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The dashboard page of the notification's task (or job), when the hook names a dashboard.
pub fn link(n: &Notice) -> Option<String> {
    let base = n.hook.dashboard_url.as_deref()?.trim_end_matches('/');
    Some(match n.index {
        Some(i) => format!("{base}/jobs/{}/tasks/{i}", n.job),
        None => format!("{base}/jobs/{}", n.job),
    })
}

/// The request body the hook's format asks for.
pub fn body(n: &Notice) -> Vec<u8> {
    let value = match n.hook.format {
        NotifyFormat::Json => json!({
            "event": n.event.name(),
            "job": n.job.to_string(),
            "job_name": n.job_name,
            "task": n.task,
            "state": n.state,
            "reason": n.reason,
            "cost_usd": n.cost_usd,
            "url": link(n),
        }),
        NotifyFormat::Slack => json!({ "text": slack_text(n) }),
    };
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

/// The same facts as the JSON body, in one line a person reads.
pub fn slack_text(n: &Notice) -> String {
    let mut text = format!("ordo: {} in job {} ({})", n.event.name(), n.job_name, n.job);
    if let Some(task) = &n.task {
        text.push_str(&format!(", task {task}"));
    }
    text.push_str(&format!(": {}", n.state));
    if let Some(reason) = &n.reason {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(cost) = n.cost_usd {
        text.push_str(&format!(", cost ${cost:.2}"));
    }
    if let Some(url) = link(n) {
        text.push_str(&format!(" <{url}|open>"));
    }
    text
}

/// HMAC-SHA256 (RFC 2104) of `message` with `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The `Ordo-Signature` value of `body` sent at unix time `t` (seconds).
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let mac = hmac_sha256(secret, &signed);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// POSTs the notification once. `Err` says why it did not arrive.
pub async fn send(n: &Notice) -> Result<(), String> {
    let body = body(n);
    let signature = match &n.hook.secret_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(secret) if !secret.is_empty() => {
                let t = ordo_proto::now_ms() / 1000;
                Some(signature(secret.as_bytes(), t, &body))
            }
            _ => {
                return Err(format!(
                    "the secret variable {var} (secret_env) is not set in the environment of \
                     the process that delivers"
                ));
            }
        },
    };
    match tokio::time::timeout(TIMEOUT, post(&n.hook.url, &n.id, signature, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
    }
}

async fn post(
    url: &str,
    delivery: &str,
    signature: Option<String>,
    body: Vec<u8>,
) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("url {url} is not http or https")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("url {url} names no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| host.clone());
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let mut req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "ordo")
        .header(names::NOTIFY_DELIVERY_HEADER, delivery);
    if let Some(sig) = signature {
        req = req.header(names::NOTIFY_SIGNATURE_HEADER, sig);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let status = if https {
        let tls = tls_connect(&host, tcp).await?;
        exchange(TokioIo::new(tls), req).await?
    } else {
        exchange(TokioIo::new(tcp), req).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

/// One request on a fresh HTTP/1.1 connection; the answer's status.
async fn exchange<T>(io: T, req: hyper::Request<Full<Bytes>>) -> Result<hyper::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(conn);
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = res.status();
    // Read the answer to its end (small); its content does not matter.
    let _ = res.into_body().collect().await;
    Ok(status)
}

async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS: bad server name {host}: {e}"))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {host} failed: {e}"))
}
