//! Coordinator high availability (`ordo-coordinator --ha`; the design and its failure cases are
//! in docs/design.md, "High availability").
//!
//! One HA thread per process, with its own tokio runtime and NATS connection, so that neither
//! the loop's commits nor its stalls hold up the lease. It
//! - follows the journal while standby (`standby`): replays every entry into the local redb,
//!   takes snapshots, watches the lease and, once it wins it, catches up to the journal's end,
//!   bumps the epoch and hands the store back to `main`, which runs the service as usual;
//! - while active, appends every store write to the journal before it commits (`Appender`, the
//!   store's `Journal`: the loop thread blocks on it), renews the lease every TTL/3, and says
//!   when the lease is lost (`lost`): the caller then stops the service and calls `standby`
//!   again;
//! - answers `ordo.ha.info` (`ordo cluster`) with this coordinator's role, epoch, lease age and
//!   journal lag.
//!
//! # Layout
//! - `journal`: entries, the fenced append, the reader.
//! - `lease`: the KV lease.
//! - `metrics`: `/metrics` with HA gauges, standby or active.
//! - `snapshot`: the redb file in the object store.

pub mod journal;
pub mod lease;
pub(crate) mod metrics;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use futures::StreamExt;
use ordo_plumbing::connect::NatsArgs;
use ordo_proto::api::{HaRole, HaStatus};
use ordo_proto::{names, now_ms};
use tokio::sync::{mpsc, watch};

use crate::store::{Journal, Store, Write};
use journal::{AppendError, EpochMark, Read, Reader};
use lease::{Holder, Lease, Seen};
use snapshot::Snapshots;

#[derive(Clone, Debug)]
pub struct Config {
    /// This coordinator's id (`ordo cluster`, the lease's value).
    pub id: String,
    pub host: String,
    /// Lease time to live; renewed every third of it.
    pub ttl: Duration,
    /// Replicas of the journal, the lease bucket and the snapshot bucket.
    pub replicas: usize,
    /// Directory of the redb state file.
    pub data_dir: PathBuf,
    /// A standby stores a snapshot after this many journal entries (0: never).
    pub snapshot_every: u64,
    /// Serve `/metrics` here (HA gauges, and the service's metrics while active).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The active side: what the renewer and the appender share.
#[derive(Default)]
struct Held {
    /// Lease revision and value while we hold (or are taking) the lease.
    lease: Option<(u64, Holder)>,
    last_renew: Option<Instant>,
    /// The epoch and the sequence of its message, once bumped (active).
    epoch: Option<(u64, u64)>,
    appends: u64,
}

/// Debug builds: `ORDO_HA_IGNORE_LEASE=1` makes this coordinator blind to losing its lease
/// (renewals refused or late, a frozen process), so that only the journal's fence can stop it:
/// the fault suite's way of showing that the server itself rejects a stale coordinator.
fn ignore_lease() -> bool {
    cfg!(debug_assertions) && std::env::var_os("ORDO_HA_IGNORE_LEASE").is_some_and(|v| v == "1")
}

/// What the service calls with `--ha`: whether this coordinator is still sure to be the active
/// one (checked before answering a request: a stale coordinator must not answer from its
/// state), and where its metrics registry goes (served by the HA thread).
#[derive(Clone)]
pub struct Hooks {
    check: Arc<dyn Fn() -> bool + Send + Sync>,
    slot: metrics::Slot,
}

impl Hooks {
    pub fn holds(&self) -> bool {
        (self.check)()
    }

    /// Serves the service's registry beside the HA gauges until the service stops.
    pub fn metrics(&self, registry: prometheus_client::registry::Registry) {
        *self.slot.lock().unwrap() = Some(Arc::new(registry));
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

pub(crate) struct Shared {
    /// This process, in the lease's value (`Holder::instance`).
    instance: String,
    ignore_lease: bool,
    /// The service's metrics registry while it runs.
    slot: metrics::Slot,
    cfg: Config,
    status: Mutex<HaStatus>,
    held: Mutex<Held>,
    lost: watch::Sender<bool>,
}

impl Shared {
    fn set_role(&self, role: HaRole) {
        let mut s = self.status.lock().unwrap();
        if s.role != role {
            s.role = role;
            s.since_ms = now_ms();
        }
    }

    /// Active, with a lease renewed within its TTL.
    fn is_active(&self) -> bool {
        let h = self.held.lock().unwrap();
        let fresh = self.ignore_lease || h.last_renew.is_some_and(|t| t.elapsed() < self.cfg.ttl);
        h.epoch.is_some() && fresh && !*self.lost.borrow()
    }

    /// Gives up being active: nothing more is appended; the service is told to stop.
    fn lose(&self, why: &str) {
        let was = {
            let mut h = self.held.lock().unwrap();
            let was = h.epoch.is_some() || h.lease.is_some();
            h.epoch = None;
            h.lease = None;
            was
        };
        if was {
            tracing::warn!("stepping down: {why}");
        }
        self.set_role(HaRole::SteppingDown);
        self.lost.send_replace(true);
    }
}

enum Cmd {
    Standby {
        store: Store,
        reply: std::sync::mpsc::SyncSender<Result<Option<Store>, String>>,
    },
    Append {
        bytes: Vec<u8>,
        prev: u64,
        reply: std::sync::mpsc::SyncSender<Result<u64, String>>,
    },
    Release {
        reply: std::sync::mpsc::SyncSender<()>,
    },
}

/// The handle `main` holds.
pub struct Ha {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl Ha {
    /// Starts the HA thread: connects (with its own connection), creates the journal stream,
    /// the lease bucket and the snapshot bucket if missing, and answers `ordo.ha.info`.
    pub fn start(nats: NatsArgs, cfg: Config) -> Result<Ha, String> {
        let (lost, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            instance: format!("{}-{}", std::process::id(), now_ms()),
            ignore_lease: ignore_lease(),
            slot: Default::default(),
            status: Mutex::new(HaStatus {
                id: cfg.id.clone(),
                host: cfg.host.clone(),
                role: HaRole::Standby,
                since_ms: now_ms(),
                ..HaStatus::default()
            }),
            cfg,
            held: Mutex::new(Held::default()),
            lost,
        });
        let (cmd, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("ordo-ha".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("HA runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(thread_main(nats, sh, rx, ready_tx));
            })
            .map_err(|e| format!("HA thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "the HA thread ended".to_string())??;
        Ok(Ha { shared, cmd })
    }

    /// Follows the journal into `store` until this coordinator wins the lease and holds the
    /// new epoch (then the store, caught up, comes back), or until SIGTERM/Ctrl-C (`None`).
    pub fn standby(&self, store: Store) -> Result<Option<Store>, String> {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.cmd
            .send(Cmd::Standby { store, reply })
            .map_err(|_| "the HA thread ended".to_string())?;
        rx.recv().map_err(|_| "the HA thread ended".to_string())?
    }

    /// The store's journal while active.
    pub fn appender(&self) -> Box<dyn Journal> {
        Box::new(Appender {
            cmd: self.cmd.clone(),
        })
    }

    /// Resolves once the lease is lost or an append was refused.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut rx = self.shared.lost.subscribe();
        async move {
            let _ = rx.wait_for(|l| *l).await;
        }
    }

    /// The service's hooks.
    pub fn hooks(&self) -> Hooks {
        let shared = self.shared.clone();
        let slot = self.shared.slot.clone();
        Hooks {
            slot,
            check: Arc::new(move || {
                let active = shared.is_active();
                if !active {
                    shared.lose("the lease was not renewed within its TTL");
                }
                active
            }),
        }
    }

    pub fn is_lost(&self) -> bool {
        *self.shared.lost.borrow()
    }

    /// Gives the lease up at a clean stop, so a standby takes over at once.
    pub fn release(&self) {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        if self.cmd.send(Cmd::Release { reply }).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }

    pub fn status(&self) -> HaStatus {
        self.shared.status.lock().unwrap().clone()
    }
}

/// The store's `Journal` while active: hands each write to the HA thread and blocks until the
/// journal holds it (or refused it).
struct Appender {
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl Journal for Appender {
    fn append(&self, write: &Write<'_>, prev: u64) -> Result<u64, String> {
        let bytes = write.encode();
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.cmd
            .send(Cmd::Append { bytes, prev, reply })
            .map_err(|_| "the HA thread ended".to_string())?;
        rx.recv().map_err(|_| "the HA thread ended".to_string())?
    }
}

/// What the HA thread works with.
struct Ctx {
    shared: Arc<Shared>,
    js: jetstream::Context,
    journal: stream::Stream,
    lease: Lease,
    snapshots: Snapshots,
    /// Largest journal message part.
    max_part: usize,
}

async fn thread_main(
    nats: NatsArgs,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    ready: std::sync::mpsc::SyncSender<Result<(), String>>,
) {
    let client = match nats
        .connect(
            ordo_plumbing::connect::Role::Coordinator,
            "ordo-coordinator-ha",
            Duration::from_secs(5),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let js = jetstream::new(client.clone());
    let cfg = shared.cfg.clone();
    // JetStream may still be electing leaders: keep trying.
    let mut delay = Duration::from_millis(250);
    let (journal, lease, snapshots) = loop {
        let setup = async {
            let journal = journal::ensure_stream(&js, cfg.replicas).await?;
            let lease = Lease::open(&js, cfg.ttl, cfg.replicas).await?;
            let snapshots = Snapshots::open(&js, cfg.replicas).await?;
            Ok::<_, String>((journal, lease, snapshots))
        };
        match setup.await {
            Ok(x) => break x,
            Err(e) => tracing::warn!("HA setup: {e}; retrying in {delay:?}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    };
    let max_part = (client.server_info().max_payload).saturating_sub(8 * 1024);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        js,
        journal,
        lease,
        snapshots,
        max_part,
    });
    if let Some(addr) = cfg.metrics_addr {
        match metrics::serve(addr, shared.clone(), shared.slot.clone()).await {
            Ok(bound) => tracing::info!(addr = %bound, "metrics at /metrics"),
            Err(e) => {
                let _ = ready.send(Err(format!("cannot serve metrics on {addr}: {e}")));
                return;
            }
        }
    }
    tokio::spawn(answer_info(client.clone(), shared.clone()));
    tokio::spawn(renew(ctx.clone()));
    let _ = ready.send(Ok(()));
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Standby { store, reply } => {
                let r = ctx.standby(store).await;
                let _ = reply.send(r);
            }
            Cmd::Append { bytes, prev, reply } => {
                let _ = reply.send(ctx.append(&bytes, prev).await);
            }
            Cmd::Release { reply } => {
                let lease = {
                    let mut h = shared.held.lock().unwrap();
                    h.epoch = None;
                    h.lease.take()
                };
                if let Some((rev, _)) = lease {
                    ctx.lease.release(rev).await;
                }
                let _ = client.flush().await;
                let _ = reply.send(());
            }
        }
    }
}

/// Answers `ordo.ha.info` requests with this coordinator's status (every coordinator answers;
/// the client gathers the replies).
async fn answer_info(client: async_nats::Client, shared: Arc<Shared>) {
    loop {
        let Ok(mut sub) = client.subscribe(names::HA_INFO).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply else { continue };
            let status = current_status(&shared);
            let body = serde_json::to_vec(&status).unwrap_or_default();
            let _ = client.publish(reply, body.into()).await;
        }
    }
}

pub(crate) fn current_status(shared: &Shared) -> HaStatus {
    let mut s = shared.status.lock().unwrap().clone();
    let h = shared.held.lock().unwrap();
    if let (Some((epoch, _)), Some(at)) = (h.epoch, h.last_renew) {
        s.epoch = epoch;
        s.lease_age_ms = Some(at.elapsed().as_millis() as u64);
        s.lag = 0;
    } else {
        s.lag = s.journal_last.saturating_sub(s.applied);
    }
    s
}

/// Renews the lease every TTL/3 while held; loses it on a refused renewal, or when no renewal
/// went through for a whole TTL.
async fn renew(ctx: Arc<Ctx>) {
    let ttl = ctx.shared.cfg.ttl;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let held = {
            let h = ctx.shared.held.lock().unwrap();
            h.lease.clone().map(|l| (l, h.last_renew))
        };
        let Some(((rev, holder), last)) = held else {
            continue;
        };
        match ctx.lease.renew(&holder, rev).await {
            Ok(Some(new)) => {
                let mut h = ctx.shared.held.lock().unwrap();
                if let Some(l) = h.lease.as_mut()
                    && l.0 == rev
                {
                    l.0 = new;
                    h.last_renew = Some(Instant::now());
                }
            }
            Ok(None) if ctx.shared.ignore_lease => {}
            Ok(None) => ctx.shared.lose("another coordinator holds the lease"),
            Err(_) if ctx.shared.ignore_lease => {}
            Err(e) => {
                if last.is_none_or(|t| t.elapsed() >= ttl) {
                    ctx.shared
                        .lose(&format!("the lease could not be renewed for {ttl:?}: {e}"));
                } else {
                    tracing::warn!("renewing the lease: {e}");
                }
            }
        }
    }
}

impl Ctx {
    /// One append as the active coordinator (refused when this one is no longer sure to be).
    async fn append(&self, bytes: &[u8], prev: u64) -> Result<u64, String> {
        let ttl = self.shared.cfg.ttl;
        let (epoch, epoch_seq, n) = {
            let mut h = self.shared.held.lock().unwrap();
            let fresh = self.shared.ignore_lease || h.last_renew.is_some_and(|t| t.elapsed() < ttl);
            match h.epoch {
                Some((e, s)) if fresh => {
                    h.appends += 1;
                    (e, s, h.appends)
                }
                Some(_) => {
                    drop(h);
                    self.shared.lose("the lease was not renewed within its TTL");
                    return Err("the lease expired".into());
                }
                None => return Err("not the active coordinator".into()),
            }
        };
        let id = format!("{}-e{epoch}-{n}", self.shared.cfg.id);
        let deadline = Instant::now() + ttl;
        match journal::append(
            &self.js,
            epoch_seq,
            &id,
            prev,
            bytes,
            self.max_part,
            deadline,
        )
        .await
        {
            Ok(seq) => {
                let mut s = self.shared.status.lock().unwrap();
                s.applied = seq;
                s.journal_last = seq;
                Ok(seq)
            }
            Err(AppendError::Fenced) => {
                self.shared
                    .lose("the journal refused an append: another coordinator bumped the epoch");
                Err(format!(
                    "epoch {epoch} is over: another coordinator took over"
                ))
            }
            Err(AppendError::Unavailable(e)) => {
                self.shared
                    .lose(&format!("the journal could not be reached for {ttl:?}"));
                Err(e)
            }
        }
    }

    /// The standby loop (see `Ha::standby`).
    async fn standby(&self, mut store: Store) -> Result<Option<Store>, String> {
        {
            let mut h = self.shared.held.lock().unwrap();
            h.epoch = None;
            h.lease = None;
        }
        self.shared.set_role(HaRole::Standby);
        self.shared.lost.send_replace(false);
        *self.shared.slot.lock().unwrap() = None;
        let interrupted = ordo_plumbing::signals::interrupted();
        tokio::pin!(interrupted);
        let poll =
            (self.shared.cfg.ttl / 10).clamp(Duration::from_millis(50), Duration::from_millis(250));
        // Snapshots are looked at only with an empty disk or after a gap in the journal: a
        // coordinator that just stepped down is up to date, and listing the object store can
        // hang while a cluster elects its leader.
        let mut check_snapshots = store.journal_seq().map_err(|e| e.to_string())? == 0;
        loop {
            if std::mem::take(&mut check_snapshots) {
                store = self.restore_if_behind(store).await?;
            }
            let local = store.journal_seq().map_err(|e| e.to_string())?;
            let mut follower = match Follower::new(&self.journal, local).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("following the journal: {e}; retrying");
                    tokio::select! {
                        _ = &mut interrupted => return Ok(None),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let mut tick = tokio::time::interval(poll);
            let mut since_snapshot = 0u64;
            let outcome: Result<(), String> = loop {
                tokio::select! {
                    _ = &mut interrupted => return Ok(None),
                    m = follower.next() => match m {
                        Ok(()) => {}
                        Err(e) => break Err(e),
                    },
                    _ = tick.tick() => {
                        // The lease first: a status read must not delay a takeover (reads
                        // of a stream without a leader wait for their timeout).
                        let won = self.try_take().await;
                        if won.is_none() {
                            let refresh = self.refresh_lag(&follower);
                            let _ = tokio::time::timeout(poll * 4, refresh).await;
                        }
                        if let Some(won) = won {
                            match self.promote(&mut store, &mut follower, won).await {
                                Ok(true) => return Ok(Some(store)),
                                Ok(false) => continue,
                                Err(e) => break Err(e),
                            }
                        }
                        continue;
                    }
                }
                // One message read: apply what it completes.
                match follower.apply(&store, &self.shared) {
                    Ok(applied) => since_snapshot += applied,
                    Err(e) => break Err(e),
                }
                let every = self.shared.cfg.snapshot_every;
                if every > 0 && since_snapshot >= every && follower.idle() {
                    since_snapshot = 0;
                    self.snapshot(&store).await;
                }
            };
            if let Err(e) = outcome {
                check_snapshots = true;
                tracing::warn!("standby: {e}; following the journal again");
                tokio::select! {
                    _ = &mut interrupted => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    async fn refresh_lag(&self, follower: &Follower) {
        let last = self.last_seq().await.unwrap_or(0);
        let age = match self.lease.seen().await {
            Ok(Seen::Held { age, .. }) => Some(age.as_millis() as u64),
            _ => None,
        };
        let mut s = self.shared.status.lock().unwrap();
        s.journal_last = last.max(follower.seen);
        s.applied = follower.seen;
        s.lease_age_ms = age;
    }

    /// Takes the lease if it is free, or if it still holds this coordinator's own name (it
    /// stepped down because NATS was unavailable for a TTL, say a cluster electing a new
    /// leader: it need not wait for its own lease to expire). Both are compare-and-set: if
    /// anyone else wrote the key meanwhile, nothing is taken. Its revision.
    async fn try_take(&self) -> Option<u64> {
        let holder = self.holder(0);
        let rev = match self.lease.seen().await {
            Ok(Seen::Free) => self.lease.take(&holder).await?,
            Ok(Seen::Held {
                holder: h,
                revision,
                ..
            }) if h.id == self.shared.cfg.id && h.instance == self.shared.instance => {
                self.lease.renew(&holder, revision).await.ok().flatten()?
            }
            _ => return None,
        };
        let mut h = self.shared.held.lock().unwrap();
        h.lease = Some((rev, holder));
        h.last_renew = Some(Instant::now());
        Some(rev)
    }

    fn holder(&self, epoch: u64) -> Holder {
        Holder {
            id: self.shared.cfg.id.clone(),
            host: self.shared.cfg.host.clone(),
            epoch,
            instance: self.shared.instance.clone(),
            at_ms: now_ms(),
        }
    }

    async fn last_seq(&self) -> Result<u64, String> {
        let mut s = self.journal.clone();
        s.info()
            .await
            .map(|i| i.state.last_sequence)
            .map_err(|e| format!("journal info: {e}"))
    }

    /// With the lease won: reads the journal to its end, then bumps the epoch on the condition
    /// that nothing was appended since (`Nats-Expected-Last-Sequence`); retries while an old
    /// active one still appends. `Ok(true)`: active.
    async fn promote(
        &self,
        store: &mut Store,
        follower: &mut Follower,
        _rev: u64,
    ) -> Result<bool, String> {
        let started = Instant::now();
        for _ in 0..50 {
            if self.shared.held.lock().unwrap().lease.is_none() {
                return Ok(false);
            }
            let last = self.last_seq().await?;
            while follower.seen < last {
                tokio::time::timeout(Duration::from_secs(10), follower.next())
                    .await
                    .map_err(|_| "timed out catching up on the journal".to_string())??;
                follower.apply(store, &self.shared)?;
            }
            let previous = match self
                .journal
                .get_last_raw_message_by_subject(names::JOURNAL_EPOCH)
                .await
            {
                Ok(m) => serde_json::from_slice::<EpochMark>(&m.payload)
                    .map(|m| m.epoch)
                    .unwrap_or(0),
                Err(_) => 0,
            };
            let mark = EpochMark {
                epoch: previous + 1,
                id: self.shared.cfg.id.clone(),
                host: self.shared.cfg.host.clone(),
                at_ms: now_ms(),
            };
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Expected-Last-Sequence", last.to_string().as_str());
            let body = serde_json::to_vec(&mark).unwrap_or_default();
            let r = match self
                .js
                .publish_with_headers(names::JOURNAL_EPOCH, h, body.into())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match r {
                Ok(ack) => {
                    {
                        let mut h = self.shared.held.lock().unwrap();
                        h.epoch = Some((mark.epoch, ack.sequence));
                        h.appends = 0;
                        if let Some(l) = h.lease.as_mut() {
                            l.1.epoch = mark.epoch;
                        }
                    }
                    {
                        let mut s = self.shared.status.lock().unwrap();
                        s.epoch = mark.epoch;
                        s.applied = ack.sequence;
                        s.journal_last = ack.sequence;
                    }
                    self.shared.set_role(HaRole::Active);
                    tracing::info!(
                        epoch = mark.epoch,
                        journal = store.journal_seq().unwrap_or(0),
                        took_ms = started.elapsed().as_millis() as u64,
                        "won the lease: active"
                    );
                    return Ok(true);
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    tracing::info!("the journal moved while taking over; catching up again");
                }
                Err(e) => {
                    tracing::warn!("bumping the epoch: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let lease = self.shared.held.lock().unwrap().lease.take();
        if let Some((rev, _)) = lease {
            self.lease.release(rev).await;
        }
        Ok(false)
    }

    /// Replaces the local state with the newest snapshot when it is ahead of it (an empty or
    /// old disk: the journal before that snapshot may be gone).
    async fn restore_if_behind(&self, store: Store) -> Result<Store, String> {
        let local = store.journal_seq().map_err(|e| e.to_string())?;
        let list = tokio::time::timeout(Duration::from_secs(3), self.snapshots.list()).await;
        let newest = match list {
            Ok(Ok(list)) => list.first().copied(),
            Ok(Err(e)) => {
                tracing::warn!("{e}");
                None
            }
            Err(_) => {
                tracing::warn!("listing the snapshots timed out; following the journal as is");
                None
            }
        };
        let Some(newest) = newest.filter(|n| *n > local) else {
            return Ok(store);
        };
        drop(store);
        let dir = &self.shared.cfg.data_dir;
        let file = dir.join(names::STATE_FILE);
        // The log of the file replaced is not the snapshot's: gone before the snapshot is in
        // place, so that a crash between the two cannot replay it onto the snapshot.
        let log = dir.join(names::STATE_LOG_FILE);
        let gone = match std::fs::remove_file(&log) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::fs::File::open(dir).and_then(|d| d.sync_all()),
        };
        gone.map_err(|e| format!("removing the state file's log {}: {e}", log.display()))?;
        self.snapshots.restore(newest, &file).await?;
        tracing::info!(
            journal = newest,
            "state restored from the snapshot (local state was at {local})"
        );
        Store::open_waiting(dir, Duration::from_secs(10)).map_err(|e| e.to_string())
    }

    /// Stores the local state as a snapshot and purges the journal entries it covers.
    async fn snapshot(&self, store: &Store) {
        let Ok(seq) = store.journal_seq() else { return };
        let file = self.shared.cfg.data_dir.join(names::STATE_FILE);
        if let Err(e) = self.snapshots.put(&file, seq).await {
            tracing::warn!("{e}");
            return;
        }
        // Only what the newest stored snapshot covers goes.
        let newest = self
            .snapshots
            .list()
            .await
            .ok()
            .and_then(|l| l.first().copied());
        let Some(upto) = newest.map(|n| n.min(seq)) else {
            return;
        };
        match self
            .journal
            .purge()
            .filter(names::JOURNAL_ENTRY)
            .sequence(upto + 1)
            .await
        {
            Ok(p) => tracing::info!(
                journal = seq,
                purged = p.purged,
                "snapshot stored; journal purged up to it"
            ),
            Err(e) => tracing::warn!("purging the journal: {e}"),
        }
    }
}

/// An ordered consumer of the journal from a sequence on, and the entry being reassembled.
struct Follower {
    messages: consumer::pull::Ordered,
    reader: Reader,
    /// The last message read (any subject).
    seen: u64,
    /// The last message read, not yet applied.
    pending: Option<jetstream::Message>,
    /// Parts of an entry are waiting for the rest.
    partial: bool,
}

impl Follower {
    async fn new(journal: &stream::Stream, after: u64) -> Result<Follower, String> {
        let consumer = journal
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| format!("journal consumer: {e}"))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| format!("journal consumer: {e}"))?;
        Ok(Follower {
            messages,
            reader: Reader::default(),
            seen: after,
            pending: None,
            partial: false,
        })
    }

    /// Waits for the next message.
    async fn next(&mut self) -> Result<(), String> {
        match self.messages.next().await {
            Some(Ok(m)) => {
                self.pending = Some(m);
                Ok(())
            }
            Some(Err(e)) => Err(format!("journal consumer: {e}")),
            None => Err("journal consumer ended".into()),
        }
    }

    fn idle(&self) -> bool {
        !self.partial
    }

    /// Applies the message `next` read; how many entries that completed (0 or 1).
    fn apply(&mut self, store: &Store, shared: &Shared) -> Result<u64, String> {
        let Some(m) = self.pending.take() else {
            return Ok(0);
        };
        let seq = m
            .info()
            .map(|i| i.stream_sequence)
            .map_err(|e| format!("journal message: {e}"))?;
        let mut applied = 0;
        match self
            .reader
            .read(m.subject.as_str(), m.headers.as_ref(), &m.payload)
        {
            Read::Entry { entry, prev } => {
                let local = store.journal_seq().map_err(|e| e.to_string())?;
                if prev != local {
                    return Err(format!(
                        "journal entry {seq} follows entry {prev}, the local state is at {local}: \
                         entries are missing (purged behind a snapshot?)"
                    ));
                }
                entry.apply(store, seq).map_err(|e| e.to_string())?;
                self.partial = false;
                applied = 1;
            }
            Read::Epoch(mark) => {
                self.partial = false;
                shared.status.lock().unwrap().epoch = mark.epoch;
            }
            Read::Partial => self.partial = true,
        }
        self.seen = seq;
        shared.status.lock().unwrap().applied = seq;
        Ok(applied)
    }
}
