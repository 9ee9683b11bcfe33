//! The optional spool (`[spool]`): store and forward. The gateway still decides at the end of
//! DATA; an allowed message is written durably here (`store.rs`) and only then answered
//! `250 2.0.0 Ok <id>`. Delivery workers (`worker.rs`) take due messages from the schedule
//! (`schedule.rs`), pace them (`DeliveryPace`, the quotas' seam), send them through the same
//! upstream client as the hot path, retry temporary failures on a backoff, and turn permanent
//! refusals and expiry into DSNs (`dsn.rs`), which are spooled like any message. A message
//! file is deleted only after the upstream's 250: at-least-once, even under SIGKILL.

pub mod dsn;
pub mod schedule;
pub mod store;
mod worker;

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Delivery, Relay};
use schedule::Queue;
pub use store::{Envelope, OperatorError, Place, State, Store, valid_id};

/// How the spool is run (`[spool]`).
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    /// The most bytes the spool holds; past it new messages get `452 4.3.1`. 0: no cap but
    /// the disk's.
    pub max_bytes: u64,
    /// How long a message is retried before it expires (and bounces).
    pub max_age: Duration,
    /// The delays after the 1st, 2nd, ... failed attempt; the last one repeats.
    pub retry_schedule: Vec<Duration>,
    /// Delivery workers (messages in flight upstream at once).
    pub workers: usize,
    /// The DSN sender.
    pub bounce_from: String,
    /// This host's name, in DSNs.
    pub hostname: String,
    /// How often the spool is re-read for changes made by `sesgate queue` without a request.
    pub rescan_interval: Duration,
}

/// Why a message was not spooled; nothing was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk is full or the spool is at `max_bytes`: `452 4.3.1`.
    #[error("spool full: {0}")]
    Full(String),
    /// Any other write failure: `451 4.3.0`.
    #[error("spool write failed: {0}")]
    Failed(String),
}

/// What a pace hands a delivery it admitted, given back to it after the attempt: opaque here,
/// so that the relay (a leaf) knows nothing of the quota types behind it.
pub type Ticket = Box<dyn Any + Send>;

/// The quotas' seam: each delivery asks before it sends (SES counts recipients) and reports
/// after. The gateway connects it to the quotas (`gateway/spooling.rs`); [`Unlimited`] admits
/// everything.
pub trait DeliveryPace: Send + Sync {
    /// Waits until `recipients` more of `user`'s may be sent, or says when to come back.
    fn admit<'a>(
        &'a self,
        user: &'a str,
        recipients: usize,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>>;
    /// After the attempt an admission allowed: `relayed` recipients were taken by the upstream
    /// (0: none, so what the admission took may be given back).
    fn settle<'a>(
        &'a self,
        _ticket: Ticket,
        _user: &'a str,
        _relayed: usize,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(std::future::ready(()))
    }
    /// The upstream answered 454 (SES throttling): the pace may slow down.
    fn throttled(&self) {}
}

/// A pace's answer.
pub enum Admission {
    /// Send now; the ticket goes back to [`DeliveryPace::settle`] after the attempt.
    Now(Ticket),
    /// Not now (the rate has no room, or the quota store does not answer): the message is
    /// tried again after this long, without counting as a failed attempt.
    Later(Duration),
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admission::Now(_) => f.write_str("Now"),
            Admission::Later(wait) => f.debug_tuple("Later").field(wait).finish(),
        }
    }
}

/// No pacing.
pub struct Unlimited;

impl DeliveryPace for Unlimited {
    fn admit<'a>(
        &'a self,
        _user: &'a str,
        _recipients: usize,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>> {
        Box::pin(std::future::ready(Admission::Now(Box::new(()))))
    }
}

/// The spool's counters, registered by `metrics.rs`.
#[derive(Debug, Clone, Default)]
pub struct SpoolCounters {
    /// Failed attempts rescheduled.
    pub retries: Counter,
    /// Messages that expired (bounced for age).
    pub expired: Counter,
    /// Messages delivered to every recipient that was not refused.
    pub delivered: Counter,
    /// DSNs generated.
    pub bounces: Counter,
}

/// The spool's size now, for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Messages to deliver (scheduled or in flight).
    pub messages: usize,
    /// Messages on hold (as of the last rescan).
    pub held: usize,
    pub bytes: u64,
    /// Age of the oldest message to deliver, seconds.
    pub oldest_age_secs: u64,
}

pub(crate) struct Shared {
    pub store: Store,
    pub options: SpoolOptions,
    pub queue: Queue,
    /// Bytes on disk as this process counts them; reset from the disk on every rescan.
    pub bytes: AtomicU64,
    pub held: AtomicU64,
    pub counters: SpoolCounters,
    /// This gateway's lock on the spool, held for the life of the process.
    _lock: std::fs::File,
}

impl Shared {
    /// A message file of `size` bytes is gone: its space is free for new messages.
    pub(crate) fn release_bytes(&self, size: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(size))
            });
    }
}

/// The open spool of a running gateway.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

impl Spool {
    /// Opens the spool: creates its directories, takes its lock (one gateway per spool),
    /// discards what a crash left half-written and schedules every message found. Blocking.
    pub fn open(options: SpoolOptions, counters: SpoolCounters) -> io::Result<Spool> {
        let store = Store::create(&options.dir)?;
        let lock = store.lock_for_gateway()?;
        let discarded = store.recover()?;
        if discarded > 0 {
            warn!(
                discarded,
                "spool: discarded half-written files of a crash (never acknowledged)"
            );
        }
        let spool = Spool {
            shared: Arc::new(Shared {
                store,
                options,
                queue: Queue::default(),
                bytes: AtomicU64::new(0),
                held: AtomicU64::new(0),
                counters,
                _lock: lock,
            }),
        };
        spool.rescan()?;
        let (messages, _) = spool.shared.queue.depth();
        info!(
            dir = %spool.shared.options.dir.display(),
            messages,
            held = spool.shared.held.load(Ordering::Relaxed),
            bytes = spool.shared.bytes.load(Ordering::Relaxed),
            "spool opened"
        );
        Ok(spool)
    }

    /// Re-reads the spool: schedules every active message at its state's time, forgets what
    /// an operator held or deleted, recounts bytes. Blocking.
    pub fn rescan(&self) -> io::Result<()> {
        let shared = &self.shared;
        let mark = shared.queue.mark();
        let active = shared.store.list(Place::Active)?;
        let held = shared.store.list(Place::Hold)?;
        let mut present = HashSet::with_capacity(active.len());
        for listed in &active {
            let due = shared.store.state(&listed.id).next_attempt_ms;
            shared.queue.schedule(&listed.id, due, listed.written_at);
            present.insert(listed.id.clone());
        }
        shared.queue.forget_absent(&present, mark);
        let bytes = active.iter().chain(&held).map(|l| l.bytes).sum();
        shared.bytes.store(bytes, Ordering::Relaxed);
        shared.held.store(held.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Stores an allowed message durably (the hot path); `Ok` means it may be acknowledged.
    pub async fn accept(&self, delivery: Delivery) -> Result<(), StoreError> {
        let shared = Arc::clone(&self.shared);
        let envelope = Envelope {
            id: delivery.id,
            session: delivery.session,
            user: delivery.user,
            client: delivery.client,
            tls: delivery.tls,
            mail_from: delivery.mail_from,
            recipients: delivery.recipients,
            received_at: jiff::Timestamp::now().as_second(),
        };
        let (header, message) = (delivery.header, delivery.message);
        // The header and the message in one vectored write: the file holds the same bytes as
        // when they were one buffer (a spool written by an earlier release reads the same).
        tokio::task::spawn_blocking(move || {
            store_message(&shared, &envelope, &[&header, &message], true)
        })
        .await
        .map_err(|e| StoreError::Failed(format!("spool task failed: {e}")))?
    }

    /// Starts the delivery workers and the rescan watcher; they stop when `shutdown` turns
    /// true (a delivery cut short is simply tried again later: nothing is removed before the
    /// upstream's 250).
    pub fn start(
        &self,
        relay: Relay,
        pace: Arc<dyn DeliveryPace>,
        shutdown: watch::Receiver<bool>,
    ) {
        for _ in 0..self.shared.options.workers.max(1) {
            tokio::spawn(worker::run(
                Arc::clone(&self.shared),
                relay.clone(),
                Arc::clone(&pace),
                shutdown.clone(),
            ));
        }
        tokio::spawn(watch_for_rescans(self.clone(), shutdown));
    }

    pub fn stats(&self) -> SpoolStats {
        let (messages, oldest) = self.shared.queue.depth();
        let now = jiff::Timestamp::now().as_second();
        SpoolStats {
            messages,
            held: self.shared.held.load(Ordering::Relaxed) as usize,
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            oldest_age_secs: oldest.map_or(0, |t| now.saturating_sub(t).max(0) as u64),
        }
    }
}

/// Writes a message (`parts`, one after the other) into `active/` and schedules it now.
/// `capped`: refused past `max_bytes` (a client's message); a DSN is not, so a full spool
/// still reports failures.
pub(crate) fn store_message(
    shared: &Shared,
    envelope: &Envelope,
    parts: &[&[u8]],
    capped: bool,
) -> Result<(), StoreError> {
    let line = store::encode_envelope(envelope).map_err(|e| StoreError::Failed(e.to_string()))?;
    // Reserve first, so concurrent writers cannot pass the cap together.
    let reserved = (line.len() + parts.iter().map(|p| p.len()).sum::<usize>()) as u64;
    let before = shared.bytes.fetch_add(reserved, Ordering::Relaxed);
    let cap = shared.options.max_bytes;
    if capped && cap > 0 && before + reserved > cap {
        shared.bytes.fetch_sub(reserved, Ordering::Relaxed);
        return Err(StoreError::Full(format!(
            "{before} bytes spooled, {reserved} more would pass max_bytes {cap}"
        )));
    }
    match shared.store.write_encoded(envelope, &line, parts) {
        Ok(_) => {
            let now = store::now_ms();
            shared
                .queue
                .schedule(&envelope.id, now, (now / 1000) as i64);
            Ok(())
        }
        Err(error) => {
            shared.bytes.fetch_sub(reserved, Ordering::Relaxed);
            if is_full(&error) {
                Err(StoreError::Full(error.to_string()))
            } else {
                Err(StoreError::Failed(error.to_string()))
            }
        }
    }
}

/// Every second: a rescan when `sesgate queue` asked for one, and every `rescan_interval`
/// anyway.
async fn watch_for_rescans(spool: Spool, mut shutdown: watch::Receiver<bool>) {
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let asked = spool.shared.store.take_rescan_request();
        if !asked && since.elapsed() < spool.shared.options.rescan_interval {
            continue;
        }
        since = tokio::time::Instant::now();
        let spool = spool.clone();
        match tokio::task::spawn_blocking(move || spool.rescan()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "spool rescan failed"),
            Err(error) => warn!(%error, "spool rescan task failed"),
        }
    }
}
