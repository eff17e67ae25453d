//! Snapshots (`--ha`): a standby's redb file, put in the JetStream object store as
//! `state-<journal sequence>` between two applied entries (no write in progress, so the bytes
//! are a committed state), bound the journal: entries up to the newest snapshot are purged. A
//! coordinator whose disk is empty or older than the newest snapshot starts from it and replays
//! the journal after it. The newest two snapshots are kept.

use std::path::Path;

use async_nats::jetstream::{self, object_store};
use futures::StreamExt;
use ordo_proto::names;
use tokio::io::AsyncReadExt;

pub struct Snapshots {
    os: object_store::ObjectStore,
}

fn name(seq: u64) -> String {
    format!("{}-{seq:020}", names::SNAPSHOT_OBJECT)
}

fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix(names::SNAPSHOT_OBJECT)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

impl Snapshots {
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Snapshots, String> {
        if let Ok(os) = js.get_object_store(names::SNAPSHOT_BUCKET).await {
            return Ok(Snapshots { os });
        }
        let os = js
            .create_object_store(object_store::Config {
                bucket: names::SNAPSHOT_BUCKET.into(),
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("snapshot bucket: {e}"))?;
        Ok(Snapshots { os })
    }

    /// Journal sequences of the stored snapshots, newest first.
    pub async fn list(&self) -> Result<Vec<u64>, String> {
        let mut list = self
            .os
            .list()
            .await
            .map_err(|e| format!("snapshots: {e}"))?;
        let mut seqs = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| format!("snapshots: {e}"))?;
            if !info.deleted
                && let Some(s) = seq_of(&info.name)
            {
                seqs.push(s);
            }
        }
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(seqs)
    }

    /// Stores the state file `file` as the state after journal entry `seq`; drops all but the
    /// newest two.
    pub async fn put(&self, file: &Path, seq: u64) -> Result<(), String> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        self.os
            .put(name(seq).as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| format!("storing the snapshot: {e}"))?;
        for old in self.list().await?.into_iter().skip(2) {
            let _ = self.os.delete(name(old)).await;
        }
        Ok(())
    }

    /// Writes snapshot `seq` to `file` (replacing it atomically).
    pub async fn restore(&self, seq: u64, file: &Path) -> Result<(), String> {
        let mut obj = self
            .os
            .get(name(seq))
            .await
            .map_err(|e| format!("fetching snapshot {seq}: {e}"))?;
        let mut bytes = Vec::new();
        obj.read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("fetching snapshot {seq}: {e}"))?;
        let tmp = file.with_extension("snapshot");
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        tokio::fs::rename(&tmp, file)
            .await
            .map_err(|e| format!("replacing {}: {e}", file.display()))?;
        Ok(())
    }
}
