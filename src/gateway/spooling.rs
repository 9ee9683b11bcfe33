//! The gateway's side of `[spool]`: checks at load (the DSN sender is a verified identity, the
//! directory can be made), opens the spool at start, and stores allowed messages in it instead
//! of relaying them while the client waits.
//!
//! It is also where the quotas meet the spool (SPEC §6, §7): acceptance consumes only the
//! 24-hour quotas (a day's quota is never over-accepted, and a burst is not refused for its
//! rate: the spool exists to absorb it); the delivery workers consume the rates and follow
//! the instance's adaptive pace ([`QuotaPace`]), so the spool drains at the account's rate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::StartError;
use super::handler::Gateway;
use super::load::Snapshot;
use super::quota::{Admitted, Paced, QuotaGate, QuotaPlan, Throttled};
use super::replies;
use super::request::{self, Account};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::relay::spool::{Admission, DeliveryPace, Spool, SpoolOptions, StoreError, Ticket};
use crate::relay::{Delivery, reply_text};
use crate::smtp::Reply;

/// What `serve` and `check` both refuse in `[spool]`: a DSN sender that no configured
/// identity covers (SES would refuse every DSN), or a directory that cannot be created.
pub(super) fn check(config: &Config, account: &Account) -> Result<(), StartError> {
    let Some(spool) = &config.spool else {
        return Ok(());
    };
    let bounce_from = request::canonical_address(&spool.bounce_from(&config.hostname));
    if !account.identities.is_empty()
        && !account
            .identities
            .iter()
            .any(|identity| request::covers(identity, &bounce_from))
    {
        return Err(StartError::Spool(format!(
            "bounce_from {bounce_from:?} is not covered by [account] identities: SES would refuse every DSN. Fix: set [spool] bounce_from to a MAILER-DAEMON address of a verified identity"
        )));
    }
    let dir = config.path(&spool.dir);
    super::load::check_outbox_dir(&dir)
        .map_err(|e| StartError::Spool(format!("dir {}: {e}", dir.display())))
}

/// The spool `[spool]` names, opened (recovered and scheduled); `None` without `[spool]`.
pub(super) fn open(config: &Config, metrics: &Metrics) -> Result<Option<Spool>, StartError> {
    let Some(spool) = &config.spool else {
        return Ok(None);
    };
    let dir = config.path(&spool.dir);
    let options = SpoolOptions {
        dir: dir.clone(),
        max_bytes: spool.max_bytes,
        max_age: Duration::from_secs(spool.max_age_secs),
        retry_schedule: spool
            .retry_schedule_secs
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect(),
        workers: if spool.workers == 0 {
            config.upstream.pool_size.max(1)
        } else {
            spool.workers
        },
        bounce_from: spool.bounce_from(&config.hostname),
        hostname: config.hostname.clone(),
        rescan_interval: Duration::from_secs(spool.rescan_interval_secs),
    };
    Spool::open(options, metrics.spool.clone())
        .map(Some)
        .map_err(|e| StartError::Spool(format!("dir {}: {e}", dir.display())))
}

impl Gateway {
    /// Stores an allowed message in the spool: `250 2.0.0 Ok <id>` once it is on disk,
    /// `452 4.3.1` when the disk or the spool is full, `451 4.3.0` on any other failure. The
    /// client's reply, and what the transaction's log line says of it.
    pub(super) async fn spool_message(
        &self,
        spool: &Spool,
        delivery: Delivery,
    ) -> (Reply, String, String) {
        let id = delivery.id.clone();
        let started = Instant::now();
        let stored = spool.accept(delivery).await;
        let result = if stored.is_ok() {
            "spooled"
        } else {
            "spool-failed"
        };
        self.metrics
            .count_upstream(result, started.elapsed().as_secs_f64());
        match stored {
            Ok(()) => (
                replies::relayed(&id),
                format!("250 spooled {id}"),
                String::new(),
            ),
            Err(StoreError::Full(why)) => (
                replies::insufficient_storage(),
                format!("452 {}", reply_text(&why)),
                String::new(),
            ),
            Err(StoreError::Failed(why)) => (
                replies::internal_failure(),
                format!("451 {}", reply_text(&why)),
                String::new(),
            ),
        }
    }
}

impl Gateway {
    /// The quotas at the end of DATA: every rate and 24-hour quota (and the pace) when the
    /// client waits for the upstream; only the 24-hour quotas when a spool takes the message.
    pub(super) async fn admit_quotas(
        &self,
        plan: &QuotaPlan,
        user: &str,
        recipients: usize,
    ) -> Result<Admitted, Throttled> {
        if self.spool.is_some() {
            self.quotas.admit_to_spool(plan, user, recipients).await
        } else {
            self.quotas.admit(plan, user, recipients).await
        }
    }

    /// After the relay or the spool answered the client with `reply`.
    pub(super) async fn settle_quotas(&self, admitted: Admitted, reply: &Reply, user: &str) {
        if self.spool.is_some() {
            self.quotas.settle_spooled(admitted, reply, user).await;
        } else {
            self.quotas.settle(admitted, reply, user).await;
        }
    }
}

/// The spool's delivery workers paced by the quotas: each delivery takes its recipients from
/// its user's rates (on the current snapshot's plan, so reloads apply) and the instance's
/// adaptive pace, and gives them back when the upstream took none.
pub(super) struct QuotaPace {
    pub quotas: Arc<QuotaGate>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

impl DeliveryPace for QuotaPace {
    fn admit<'a>(
        &'a self,
        user: &'a str,
        recipients: usize,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>> {
        Box::pin(async move {
            let snapshot = self.snapshot.load_full();
            match self
                .quotas
                .admit_delivery(&snapshot.quotas, user, recipients)
                .await
            {
                Paced::Now(admitted) => Admission::Now(Box::new(admitted)),
                Paced::Later(wait) => Admission::Later(wait),
            }
        })
    }

    fn settle<'a>(
        &'a self,
        ticket: Ticket,
        user: &'a str,
        relayed: usize,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            // Always ours: this pace made every ticket it is handed back.
            let Ok(admitted) = ticket.downcast::<Admitted>() else {
                return;
            };
            let snapshot = self.snapshot.load_full();
            self.quotas
                .settle_delivery(&snapshot.quotas, *admitted, user, relayed)
                .await;
        })
    }

    fn throttled(&self) {
        self.quotas.delivery_throttled();
    }
}
