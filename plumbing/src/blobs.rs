//! API bodies larger than one NATS message: a request or reply whose JSON exceeds the server's
//! max_payload travels through JetStream's object store (bucket `names::BLOB_BUCKET`), and its
//! NATS message carries only the object's name in the `names::HEADER_BODY_OBJECT` header. The
//! reader deletes the object once read (or refused); the bucket's max age removes what a
//! crashed peer left behind. The client (`ordo`) and the coordinator both go through here, so
//! the two ends agree on the bucket, the header and the limits (docs/design.md, "Large
//! requests and replies").

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, object_store};
use ordo_proto::names;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the object store bucket {bucket} is not available: {detail}")]
    Bucket { bucket: String, detail: String },
    #[error("cannot store a {size}-byte body in the object store bucket {bucket}: {detail}")]
    Put {
        bucket: String,
        size: usize,
        detail: String,
    },
    #[error("cannot read object {name} of the object store bucket {bucket}: {detail}")]
    Get {
        bucket: String,
        name: String,
        detail: String,
    },
    /// Refused before use: the name a peer gave is not one `put` makes.
    #[error("the {header} header must name an object by its UUID, not {name:?} ({len} bytes)")]
    BadName {
        header: &'static str,
        name: String,
        len: usize,
    },
    /// Refused before reading: the object is deleted, `what` is the description its writer gave.
    #[error("{what} is {size} bytes; at most {max} bytes are accepted")]
    TooLarge {
        what: String,
        size: usize,
        max: usize,
    },
}

/// The largest body sent inline to a server with this max_payload.
pub fn inline_limit(max_payload: usize) -> usize {
    max_payload.saturating_sub(names::INLINE_HEADROOM)
}

/// The bucket, created if missing (the coordinator, at start, with its streams' replicas).
pub async fn create_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<object_store::ObjectStore, Error> {
    if let Ok(store) = js.get_object_store(names::BLOB_BUCKET).await {
        return Ok(store);
    }
    js.create_object_store(object_store::Config {
        bucket: names::BLOB_BUCKET.into(),
        description: Some("ordo API bodies larger than one NATS message".into()),
        max_age: Duration::from_secs(names::BLOB_MAX_AGE_SECS),
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| bucket_error(&e))
}

/// The bucket the coordinator made (clients: they may not create streams).
pub async fn bucket(js: &jetstream::Context) -> Result<object_store::ObjectStore, Error> {
    js.get_object_store(names::BLOB_BUCKET)
        .await
        .map_err(|e| bucket_error(&e))
}

fn bucket_error(e: &dyn std::fmt::Display) -> Error {
    Error::Bucket {
        bucket: names::BLOB_BUCKET.into(),
        detail: e.to_string(),
    }
}

/// Stores `body` under a fresh random name and returns the name. `what` describes it for the
/// reader's messages (e.g. "the spec big.toml (job 'big')").
pub async fn put(
    store: &object_store::ObjectStore,
    body: &[u8],
    what: &str,
) -> Result<String, Error> {
    let name = uuid::Uuid::new_v4().to_string();
    let meta = object_store::ObjectMetadata {
        name: name.clone(),
        description: Some(what.to_string()),
        // Chunks of 512 KiB: fewer acks than the default 128 KiB, still under any max_payload.
        chunk_size: Some(512 * 1024),
        ..Default::default()
    };
    let mut reader = body;
    store.put(meta, &mut reader).await.map_err(|e| Error::Put {
        bucket: names::BLOB_BUCKET.into(),
        size: body.len(),
        detail: e.to_string(),
    })?;
    Ok(name)
}

/// Reads object `name` and deletes it; one larger than `max` bytes is deleted unread. Its
/// chunks are read by direct gets, not through a consumer: clients may create none.
pub async fn take(
    js: &jetstream::Context,
    store: &object_store::ObjectStore,
    name: &str,
    max: usize,
) -> Result<Vec<u8>, Error> {
    let get_error = |detail: String| Error::Get {
        bucket: names::BLOB_BUCKET.into(),
        name: name.to_string(),
        detail,
    };
    // The name comes from a peer's header and becomes part of a subject: anything but the
    // UUID `put` makes (a 5,000-byte name would exceed the server's control line and cost this
    // connection) is refused before it is used.
    if uuid::Uuid::try_parse(name).is_err() {
        return Err(Error::BadName {
            header: names::HEADER_BODY_OBJECT,
            name: shown(name),
            len: name.len(),
        });
    }
    let info = store
        .info(name)
        .await
        .map_err(|e| get_error(e.to_string()))?;
    if info.size > max {
        let _ = store.delete(name).await;
        return Err(Error::TooLarge {
            what: info
                .description
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "the request".into()),
            size: info.size,
            max,
        });
    }
    let read = async {
        let stream = js
            .get_stream(format!("OBJ_{}", names::BLOB_BUCKET))
            .await
            .map_err(|e| e.to_string())?;
        let chunks = format!("$O.{}.C.{}", names::BLOB_BUCKET, info.nuid);
        let mut body = Vec::with_capacity(info.size);
        let mut seq = 0;
        while body.len() < info.size {
            let chunk = stream
                .direct_get_next_for_subject(chunks.clone(), Some(seq))
                .await
                .map_err(|e| format!("chunk after sequence {seq}: {e}"))?;
            seq = chunk.sequence + 1;
            body.extend_from_slice(&chunk.payload);
        }
        if body.len() != info.size {
            return Err(format!("{} bytes read of {}", body.len(), info.size));
        }
        Ok::<_, String>(body)
    }
    .await;
    // Deleted whether it could be read or not: nothing stays behind a request.
    let _ = store.delete(name).await;
    read.map_err(get_error)
}

/// A peer's object name as messages show it: at most 64 characters.
fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_string(),
    }
}

/// Deletes an object nobody will read (a request whose reply never came), best effort.
pub async fn discard(store: &object_store::ObjectStore, name: &str) {
    let _ = store.delete(name).await;
}

/// The headers of a message whose body is object `name`.
pub fn headers(name: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(names::HEADER_BODY_OBJECT, name);
    h
}

/// The object holding a message's body, if its headers name one.
pub fn object_of(headers: Option<&HeaderMap>) -> Option<String> {
    headers
        .and_then(|h| h.get(names::HEADER_BODY_OBJECT))
        .map(|v| v.as_str().to_string())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_and_inline_bodies_leave_room() {
        let h = headers("abc");
        assert_eq!(object_of(Some(&h)).as_deref(), Some("abc"));
        assert_eq!(object_of(None), None);
        assert_eq!(object_of(Some(&HeaderMap::new())), None);
        assert_eq!(inline_limit(1024 * 1024), 1024 * 1024 - 4096);
        assert_eq!(inline_limit(10), 0);
    }
}
