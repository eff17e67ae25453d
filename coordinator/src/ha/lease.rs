//! The lease (`--ha`): one key in a JetStream KV bucket whose max age is the lease's TTL. The
//! active coordinator renews it every TTL/3 with a compare-and-set on its revision; when it
//! stops renewing, the key expires and a standby's `create` (a compare-and-set on "absent")
//! wins it. Ownership is decided only by the result of a compare-and-set, never by a read (a
//! KV read may be served by a follower). The lease is for liveness; safety comes from the
//! journal's fence.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use ordo_proto::{Millis, names, now_ms};
use serde::{Deserialize, Serialize};

/// What the key holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub id: String,
    pub host: String,
    /// Epoch of the holder once it bumped it (0 while it catches up).
    pub epoch: u64,
    /// This process (pid and start time): only the same process may take back a lease that
    /// still bears its name, never another one configured with the same id.
    #[serde(default)]
    pub instance: String,
    pub at_ms: Millis,
}

pub struct Lease {
    kv: kv::Store,
}

/// What a standby sees of the lease.
pub enum Seen {
    /// Nobody holds it: try to take it.
    Free,
    /// Held at `revision`; last renewed this long ago (as the server stamped it).
    Held {
        holder: Holder,
        age: Duration,
        revision: u64,
    },
}

impl Lease {
    /// The bucket, created with `ttl` as its max age if missing (an existing bucket keeps its
    /// own TTL: the first coordinator's decides).
    pub async fn open(
        js: &jetstream::Context,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Lease, String> {
        if let Ok(kv) = js.get_key_value(names::LEASE_BUCKET).await {
            return Ok(Lease { kv });
        }
        let kv = js
            .create_key_value(kv::Config {
                bucket: names::LEASE_BUCKET.into(),
                history: 1,
                max_age: ttl,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("lease bucket: {e}"))?;
        Ok(Lease { kv })
    }

    pub async fn seen(&self) -> Result<Seen, String> {
        match self.kv.entry(names::LEASE_KEY).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                let holder: Holder =
                    serde_json::from_slice(&e.value).map_err(|e| format!("lease value: {e}"))?;
                let written = e.created.unix_timestamp_nanos() / 1_000_000;
                let age = (now_ms() as i128 - written).max(0) as u64;
                Ok(Seen::Held {
                    holder,
                    age: Duration::from_millis(age),
                    revision: e.revision,
                })
            }
            Ok(_) => Ok(Seen::Free),
            Err(e) => Err(format!("lease: {e}")),
        }
    }

    /// Takes the lease if nobody holds it; its revision on success.
    pub async fn take(&self, holder: &Holder) -> Option<u64> {
        let value = serde_json::to_vec(holder).unwrap_or_default();
        self.kv.create(names::LEASE_KEY, value.into()).await.ok()
    }

    /// Renews the lease held at `revision`. `Ok(None)`: someone else holds it now.
    pub async fn renew(&self, holder: &Holder, revision: u64) -> Result<Option<u64>, String> {
        let value = serde_json::to_vec(holder).unwrap_or_default();
        match self
            .kv
            .update(names::LEASE_KEY, value.into(), revision)
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Gives the lease up (a clean stop), if still held at `revision`.
    pub async fn release(&self, revision: u64) {
        let _ = self
            .kv
            .delete_expect_revision(names::LEASE_KEY, Some(revision))
            .await;
    }
}
