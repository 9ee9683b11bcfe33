//! SES sending quotas, enforced before the upstream enforces them (SPEC §6, §7, §8 `[quotas]`):
//! the account's maximum send rate and 24-hour quota, and optional ones per user and per group,
//! all counted in recipients as SES counts them. Protocol-free: the gateway (`gateway/quota.rs`)
//! decides when to ask and what the client hears; a spool's delivery workers can use the same
//! API to pace deliveries.
//!
//! ```text
//! Limit[] (account, groups, user) --check_and_consume(limits, recipients)--> QuotaStore
//!     Allowed(Reservation) -> relay -> failed? refund(reservation)
//!     RateExceeded { retry_after }   (nothing taken; consume_waiting sleeps and retries)
//!     DailyExceeded { scope }        (nothing taken)
//! ```
//!
//! - A check is all-or-nothing over every limit it is given: each 24-hour quota, then each rate,
//!   and only when all admit are the recipients taken from each (`window.rs` has the rules).
//! - What a refused or failed message took is given back ([`QuotaStore::refund`]): the count is
//!   taken before relaying, so two instances racing for the last recipients cannot both relay,
//!   and given back when the relay fails. A crash between the two leaves the count a little
//!   high, never low.
//! - Stores: `memory` for one instance, `redis://` (Redis or Valkey) shared by several
//!   (`memory.rs`, `redis.rs`). Every store call is bounded; a failed call is a [`StoreError`].
//! - `pace.rs` is separate and local: the instance's own pace, lowered when the upstream
//!   throttles. `send_quota.rs` reads SES's own figures (`from_upstream`).
//!
//! A spool worker paces a delivery with:
//!
//! ```ignore
//! match store.consume_waiting(&limits, recipients, max_wait).await? {
//!     Verdict::Allowed(reservation) => { /* deliver; on failure store.refund(&reservation) */ }
//!     Verdict::RateExceeded { retry_after, .. } => { /* requeue after retry_after */ }
//!     Verdict::DailyExceeded { .. } => { /* requeue until the window frees recipients */ }
//! }
//! ```

pub mod memory;
pub mod pace;
pub mod redis;
pub mod send_quota;
pub mod window;

use std::time::Duration;

pub use memory::MemoryStore;
pub use pace::AdaptivePace;
pub use redis::RedisStore;
pub use send_quota::SendQuota;

/// Whose quota a limit is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The AWS account (`[quotas]`).
    Account,
    /// An `iam.toml` group: its members' recipients together.
    Group(String),
    /// An `iam.toml` user.
    User(String),
}

impl Scope {
    /// `account`, `group:NAME` or `user:NAME`: its name in store keys.
    pub fn key(&self) -> String {
        match self {
            Scope::Account => "account".into(),
            Scope::Group(name) => format!("group:{name}"),
            Scope::User(name) => format!("user:{name}"),
        }
    }

    /// `account`, `group` or `user`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Group(_) => "group",
            Scope::User(_) => "user",
        }
    }

    /// The group's or user's name; empty for the account.
    pub fn name(&self) -> &str {
        match self {
            Scope::Account => "",
            Scope::Group(name) | Scope::User(name) => name,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

/// One scope's limits; 0 means none.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub scope: Scope,
    /// Recipients per second.
    pub max_send_rate: f64,
    /// Recipients in any 24 hours.
    pub max_24_hour_send: u64,
}

impl Limit {
    /// Whether the limit limits anything.
    pub fn is_set(&self) -> bool {
        self.max_send_rate > 0.0 || self.max_24_hour_send > 0
    }
}

/// Recipients taken from every limit of a check, to give back if the message is not relayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    limits: Vec<Limit>,
    recipients: u32,
    /// The minute they were counted in (the store's clock).
    minute: u64,
    /// Each scope's 24-hour count including these recipients (`None`: no 24-hour quota).
    pub used_24h: Vec<(Scope, Option<u64>)>,
}

impl Reservation {
    pub fn recipients(&self) -> u32 {
        self.recipients
    }

    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Taken from every limit.
    Allowed(Reservation),
    /// `scope`'s rate has no room now; it may in `retry_after`. Nothing was taken.
    RateExceeded { scope: Scope, retry_after: Duration },
    /// `scope`'s 24-hour quota has no room for the recipients. Nothing was taken.
    DailyExceeded { scope: Scope },
}

/// A store call that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("quota store timed out after {0:?}")]
    Timeout(Duration),
    #[error("quota store unavailable: {0}")]
    Unavailable(String),
}

/// Where the counters live.
#[derive(Debug)]
pub enum QuotaStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl QuotaStore {
    /// `memory` or a `redis://` URL; `account` names the Redis keys; `timeout` bounds each call.
    pub fn open(store: &str, account: &str, timeout: Duration) -> Result<QuotaStore, String> {
        if store == "memory" {
            return Ok(QuotaStore::Memory(MemoryStore::default()));
        }
        if store.starts_with("redis://") {
            return RedisStore::open(store, account, timeout).map(QuotaStore::Redis);
        }
        Err(format!(
            "{store:?}: expected \"memory\" or a redis:// URL (redis://host:6379/0)"
        ))
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            QuotaStore::Memory(_) => "memory",
            QuotaStore::Redis(_) => "redis",
        }
    }

    /// Checks `recipients` against every limit and takes them from all, or from none.
    pub async fn check_and_consume(
        &self,
        limits: &[Limit],
        recipients: u32,
    ) -> Result<Verdict, StoreError> {
        match self {
            QuotaStore::Memory(store) => Ok(store.check_and_consume(limits, recipients)),
            QuotaStore::Redis(store) => store.check_and_consume(limits, recipients).await,
        }
    }

    /// `check_and_consume`, waiting out a rate while the wait fits in `max_wait` (another
    /// instance may take the room meanwhile: then it waits again, within the same budget).
    pub async fn consume_waiting(
        &self,
        limits: &[Limit],
        recipients: u32,
        max_wait: Duration,
    ) -> Result<Verdict, StoreError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let verdict = self.check_and_consume(limits, recipients).await?;
            match &verdict {
                Verdict::RateExceeded { retry_after, .. }
                    if tokio::time::Instant::now() + *retry_after <= deadline =>
                {
                    tokio::time::sleep(*retry_after).await;
                }
                _ => return Ok(verdict),
            }
        }
    }

    /// Gives back what `reservation` took (its message was not relayed).
    pub async fn refund(&self, reservation: &Reservation) -> Result<(), StoreError> {
        match self {
            QuotaStore::Memory(store) => {
                store.refund(reservation);
                Ok(())
            }
            QuotaStore::Redis(store) => store.refund(reservation).await,
        }
    }

    /// The first scope whose 24-hour quota `recipients` more would exceed; takes nothing.
    pub async fn daily_exceeded(
        &self,
        limits: &[Limit],
        recipients: u32,
    ) -> Result<Option<Scope>, StoreError> {
        match self {
            QuotaStore::Memory(store) => Ok(store.daily_exceeded(limits, recipients)),
            QuotaStore::Redis(store) => store.daily_exceeded(limits, recipients).await,
        }
    }

    /// Raises `scope`'s 24-hour count to at least `total` (SES's `SentLast24Hours`); the count.
    pub async fn raise_daily(&self, scope: &Scope, total: u64) -> Result<u64, StoreError> {
        match self {
            QuotaStore::Memory(store) => Ok(store.raise_daily(scope, total)),
            QuotaStore::Redis(store) => store.raise_daily(scope, total).await,
        }
    }

    /// Whether the store answers (`/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            QuotaStore::Memory(_) => Ok(()),
            QuotaStore::Redis(store) => store.ping().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_named_by_url() {
        let open = |s: &str| QuotaStore::open(s, "123456789012", Duration::from_millis(100));
        assert_eq!(open("memory").unwrap().kind(), "memory");
        assert!(open("memcached://x").is_err());
        assert!(open("").is_err());
    }

    #[tokio::test]
    async fn redis_urls_open_without_connecting() {
        let store = QuotaStore::open(
            "redis://127.0.0.1:1/0",
            "123456789012",
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(store.kind(), "redis");
        // Nothing listens on port 1: the call fails, bounded, instead of hanging.
        assert!(store.ping().await.is_err());
    }

    #[tokio::test]
    async fn consume_waiting_waits_out_a_short_rate_only() {
        let store = QuotaStore::Memory(MemoryStore::default());
        let limits = [Limit {
            scope: Scope::Account,
            max_send_rate: 20.0,
            max_24_hour_send: 0,
        }];
        // Twenty go at once; the 21st needs 50 ms.
        for _ in 0..20 {
            assert!(matches!(
                store.check_and_consume(&limits, 1).await,
                Ok(Verdict::Allowed(_))
            ));
        }
        assert!(matches!(
            store.consume_waiting(&limits, 1, Duration::ZERO).await,
            Ok(Verdict::RateExceeded { .. })
        ));
        assert!(matches!(
            store
                .consume_waiting(&limits, 1, Duration::from_secs(5))
                .await,
            Ok(Verdict::Allowed(_))
        ));
    }
}
