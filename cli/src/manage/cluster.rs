//! `ordo cluster`: the coordinators of an `--ha` deployment, gathered by one request on
//! `ordo.ha.info` that every coordinator answers (active or standby): id, host, role, epoch,
//! lease age and journal lag. Separate from the job client: standbys do not serve the job API.

use std::time::Duration;

use futures::StreamExt;
use ordo_plumbing::connect::NatsArgs;
use ordo_proto::api::{HaRole, HaStatus};
use ordo_proto::names;

use super::render::{print, print_json, table, warn};
use crate::args::{Output, exit};
use crate::jobs::Error;

/// How long replies are gathered after the request.
const GATHER: Duration = Duration::from_millis(500);

pub async fn cluster(nats: &NatsArgs, output: Output) -> Result<u8, Error> {
    let client = nats
        .connect(
            ordo_plumbing::connect::Role::Client,
            "ordo",
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| Error::Connect {
            message: e.to_string(),
            code: exit::UNREACHABLE,
        })?;
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::Invalid(format!("cannot subscribe: {e}")))?;
    client
        .publish_with_reply(names::HA_INFO, inbox, Default::default())
        .await
        .map_err(|e| Error::Invalid(format!("cannot ask the coordinators: {e}")))?;
    let mut all: Vec<HaStatus> = Vec::new();
    let deadline = tokio::time::sleep(GATHER);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            m = sub.next() => match m {
                Some(m) => {
                    if let Ok(s) = serde_json::from_slice::<HaStatus>(&m.payload) {
                        all.push(s);
                    }
                }
                None => break,
            },
        }
    }
    // The active one first, then by id.
    all.sort_by_key(|s| (s.role != HaRole::Active, s.id.clone()));
    match output {
        Output::Json => print_json(&all)?,
        Output::Text if all.is_empty() => {
            warn("(no coordinator answered: none runs with --ha on this NATS)")
        }
        Output::Text => {
            let mut rows = vec![
                ["ID", "HOST", "ROLE", "EPOCH", "LEASE AGE", "JOURNAL", "LAG"]
                    .map(String::from)
                    .to_vec(),
            ];
            for s in &all {
                rows.push(vec![
                    s.id.clone(),
                    s.host.clone(),
                    s.role.to_string(),
                    s.epoch.to_string(),
                    s.lease_age_ms
                        .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                    s.applied.to_string(),
                    s.lag.to_string(),
                ]);
            }
            print(&table(&rows))?;
        }
    }
    Ok(exit::OK)
}
