//! The gateway's side of `[spool]`: checks at load (the DSN sender is a verified identity, the
//! directory can be made), opens the spool at start, and stores allowed messages in it instead
//! of relaying them while the client waits.

use std::time::{Duration, Instant};

use super::StartError;
use super::handler::Gateway;
use super::replies;
use super::request::{self, Account};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::relay::spool::{Spool, SpoolOptions, StoreError};
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
