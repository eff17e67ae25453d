//! Metrics with `--ha`: the HA thread serves `--metrics-addr` for the whole life of the
//! process (standby or active), so its gauges (`ordo_ha_active`, `ordo_ha_epoch`,
//! `ordo_ha_lease_age_seconds`, `ordo_ha_journal_applied`, `ordo_ha_journal_lag`) can be scraped
//! from standbys too; while active, the service's own registry (handed over through `Slot`
//! instead of being served by the service) is appended to the same page.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Shared;

/// Where the service puts its registry while it runs.
pub type Slot = Arc<Mutex<Option<Arc<Registry>>>>;

struct Gauges {
    active: Gauge,
    epoch: Gauge,
    lease_age: Gauge<f64, AtomicU64>,
    applied: Gauge,
    lag: Gauge,
}

/// Serves `/metrics` on `addr` (plain HTTP/1.1, one response per connection).
pub(crate) async fn serve(
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    slot: Slot,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let g = Arc::new(Gauges {
        active: Gauge::default(),
        epoch: Gauge::default(),
        lease_age: Gauge::default(),
        applied: Gauge::default(),
        lag: Gauge::default(),
    });
    let mut r = Registry::with_prefix("ordo_ha");
    r.register(
        "active",
        "1 if this coordinator is the active one",
        g.active.clone(),
    );
    r.register(
        "epoch",
        "Epoch held (active) or last seen (standby)",
        g.epoch.clone(),
    );
    r.register(
        "lease_age_seconds",
        "Time since the lease was last renewed",
        g.lease_age.clone(),
    );
    r.register(
        "journal_applied",
        "Journal sequence applied to the local state",
        g.applied.clone(),
    );
    r.register(
        "journal_lag",
        "Journal messages not applied yet",
        g.lag.clone(),
    );
    let r = Arc::new(r);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let (shared, slot, g, r) = (shared.clone(), slot.clone(), g.clone(), r.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() {
                    match conn.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let ok = head.starts_with("GET /metrics");
                let body = if ok {
                    page(&shared, &slot, &g, &r)
                } else {
                    String::new()
                };
                let status = if ok { "200 OK" } else { "404 Not Found" };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; \
                     version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: \
                     close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(bound)
}

fn page(shared: &Shared, slot: &Slot, g: &Gauges, r: &Registry) -> String {
    let s = super::current_status(shared);
    g.active
        .set(i64::from(s.role == ordo_proto::api::HaRole::Active));
    g.epoch.set(s.epoch as i64);
    g.lease_age
        .set(s.lease_age_ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0));
    g.applied.set(s.applied as i64);
    g.lag.set(s.lag as i64);
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, r);
    let service = slot.lock().unwrap().clone();
    if let Some(service) = service {
        // One page: the first part's end-of-page marker goes.
        if let Some(stripped) = text.strip_suffix("# EOF\n") {
            text = stripped.to_string();
        }
        let _ = prometheus_client::encoding::text::encode(&mut text, &service);
    }
    text
}
