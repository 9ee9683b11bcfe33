//! Quota counters in this process (`[quotas] store = "memory"`): right for one instance, lost on
//! restart (`[quotas] from_upstream` can seed the 24-hour count from SES's own figure). One
//! mutex over every scope makes a check of several scopes and its consumption one step, as the
//! Redis script is; it is held for microseconds and never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::window::{DailyWindow, RateBucket, minute_of};
use super::{Limit, Reservation, Scope, Verdict};

/// Milliseconds since the Unix epoch; tests set their own.
pub type MillisClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock in milliseconds since the Unix epoch.
pub fn system_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Default)]
struct Counters {
    rate: Option<RateBucket>,
    daily: DailyWindow,
}

pub struct MemoryStore {
    scopes: Mutex<HashMap<Scope, Counters>>,
    clock: MillisClock,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_clock(Arc::new(system_millis))
    }
}

impl MemoryStore {
    pub fn with_clock(clock: MillisClock) -> MemoryStore {
        MemoryStore {
            scopes: Mutex::default(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, Counters>> {
        self.scopes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every 24-hour quota, then every rate, then (when all admit) the consumption.
    pub fn check_and_consume(&self, limits: &[Limit], recipients: u32) -> Verdict {
        let now = (self.clock)();
        let minute = minute_of(now);
        let n = u64::from(recipients);
        let mut scopes = self.lock();
        let mut totals = Vec::with_capacity(limits.len());
        for limit in limits {
            let counters = scopes.entry(limit.scope.clone()).or_default();
            let total = counters.daily.trim(minute);
            if limit.max_24_hour_send > 0 && total + n > limit.max_24_hour_send {
                return Verdict::DailyExceeded {
                    scope: limit.scope.clone(),
                };
            }
            totals.push(total);
        }
        let mut slowest: Option<(u64, &Scope)> = None;
        for limit in limits.iter().filter(|l| l.max_send_rate > 0.0) {
            let rate = limit.max_send_rate;
            let counters = scopes.entry(limit.scope.clone()).or_default();
            let bucket = counters.rate.get_or_insert(RateBucket::full(rate, now));
            bucket.rebase(now);
            if let Err(wait) = bucket.admits(rate, recipients, now)
                && slowest.is_none_or(|(w, _)| wait > w)
            {
                slowest = Some((wait, &limit.scope));
            }
        }
        if let Some((wait, scope)) = slowest {
            return Verdict::RateExceeded {
                scope: scope.clone(),
                retry_after: std::time::Duration::from_millis(wait),
            };
        }
        let mut used = Vec::with_capacity(limits.len());
        for (limit, total) in limits.iter().zip(totals) {
            let counters = scopes.entry(limit.scope.clone()).or_default();
            if limit.max_send_rate > 0.0 {
                let rate = limit.max_send_rate;
                counters
                    .rate
                    .get_or_insert(RateBucket::full(rate, now))
                    .take(rate, recipients, now);
            }
            if limit.max_24_hour_send > 0 {
                counters.daily.add(minute, n);
                used.push((limit.scope.clone(), Some(total + n)));
            } else {
                used.push((limit.scope.clone(), None));
            }
        }
        Verdict::Allowed(Reservation {
            limits: limits.to_vec(),
            recipients,
            minute,
            used_24h: used,
        })
    }

    /// Gives back what a reservation took.
    pub fn refund(&self, reservation: &Reservation) {
        let now = (self.clock)();
        let mut scopes = self.lock();
        for limit in &reservation.limits {
            let Some(counters) = scopes.get_mut(&limit.scope) else {
                continue;
            };
            if limit.max_send_rate > 0.0
                && let Some(bucket) = &mut counters.rate
            {
                bucket.give_back(limit.max_send_rate, reservation.recipients, now);
            }
            if limit.max_24_hour_send > 0 {
                counters
                    .daily
                    .remove(reservation.minute, u64::from(reservation.recipients));
            }
        }
    }

    /// The first scope whose 24-hour quota `recipients` more would exceed.
    pub fn daily_exceeded(&self, limits: &[Limit], recipients: u32) -> Option<Scope> {
        let minute = minute_of((self.clock)());
        let mut scopes = self.lock();
        limits
            .iter()
            .filter(|l| l.max_24_hour_send > 0)
            .find(|l| {
                let counters = scopes.entry(l.scope.clone()).or_default();
                counters.daily.trim(minute) + u64::from(recipients) > l.max_24_hour_send
            })
            .map(|l| l.scope.clone())
    }

    /// Raises a scope's 24-hour count to at least `total`; the count after.
    pub fn raise_daily(&self, scope: &Scope, total: u64) -> u64 {
        let minute = minute_of((self.clock)());
        let mut scopes = self.lock();
        let counters = scopes.entry(scope.clone()).or_default();
        counters.daily.raise_to(minute, total);
        counters.daily.total()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    fn store() -> (MemoryStore, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1_000_000_000_000));
        let clock = Arc::clone(&now);
        (
            MemoryStore::with_clock(Arc::new(move || clock.load(Ordering::Relaxed))),
            now,
        )
    }

    fn limit(scope: Scope, rate: f64, daily: u64) -> Limit {
        Limit {
            scope,
            max_send_rate: rate,
            max_24_hour_send: daily,
        }
    }

    #[test]
    fn the_daily_quota_counts_recipients_and_refuses_the_one_past_it() {
        let (store, _) = store();
        let limits = [limit(Scope::Account, 0.0, 5)];
        assert!(matches!(
            store.check_and_consume(&limits, 3),
            Verdict::Allowed(_)
        ));
        assert!(matches!(
            store.check_and_consume(&limits, 3),
            Verdict::DailyExceeded {
                scope: Scope::Account
            }
        ));
        let Verdict::Allowed(reservation) = store.check_and_consume(&limits, 2) else {
            panic!("2 more fit")
        };
        assert_eq!(reservation.used_24h, vec![(Scope::Account, Some(5))]);
        assert_eq!(store.daily_exceeded(&limits, 1), Some(Scope::Account));
    }

    #[test]
    fn a_refusal_by_one_scope_consumes_nothing_anywhere() {
        let (store, _) = store();
        let user = Scope::User("app".into());
        let limits = [limit(Scope::Account, 0.0, 10), limit(user.clone(), 0.0, 2)];
        assert!(matches!(
            store.check_and_consume(&limits, 2),
            Verdict::Allowed(_)
        ));
        assert!(matches!(
            store.check_and_consume(&limits, 1),
            Verdict::DailyExceeded { scope } if scope == user
        ));
        // The account counted only the relayed two.
        let account = [limit(Scope::Account, 0.0, 10)];
        let Verdict::Allowed(r) = store.check_and_consume(&account, 8) else {
            panic!("8 more fit the account")
        };
        assert_eq!(r.used_24h, vec![(Scope::Account, Some(10))]);
    }

    #[test]
    fn a_rate_refusal_says_when_to_retry_and_takes_nothing() {
        let (store, now) = store();
        let limits = [limit(Scope::Account, 2.0, 100)];
        for _ in 0..2 {
            assert!(matches!(
                store.check_and_consume(&limits, 1),
                Verdict::Allowed(_)
            ));
        }
        let Verdict::RateExceeded { retry_after, .. } = store.check_and_consume(&limits, 1) else {
            panic!("the third in the same instant waits")
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        now.fetch_add(500, Ordering::Relaxed);
        let Verdict::Allowed(r) = store.check_and_consume(&limits, 1) else {
            panic!("allowed after the wait")
        };
        // The refused attempt did not count towards the day.
        assert_eq!(r.used_24h, vec![(Scope::Account, Some(3))]);
    }

    #[test]
    fn a_refund_gives_back_tokens_and_recipients() {
        let (store, _) = store();
        let limits = [limit(Scope::Account, 1.0, 1)];
        let Verdict::Allowed(r) = store.check_and_consume(&limits, 1) else {
            panic!()
        };
        assert!(!matches!(
            store.check_and_consume(&limits, 1),
            Verdict::Allowed(_)
        ));
        store.refund(&r);
        assert!(matches!(
            store.check_and_consume(&limits, 1),
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn the_window_slides() {
        let (store, now) = store();
        let limits = [limit(Scope::Account, 0.0, 1)];
        assert!(matches!(
            store.check_and_consume(&limits, 1),
            Verdict::Allowed(_)
        ));
        now.fetch_add(24 * 3600 * 1000, Ordering::Relaxed);
        assert!(matches!(
            store.check_and_consume(&limits, 1),
            Verdict::DailyExceeded { .. }
        ));
        now.fetch_add(60 * 1000, Ordering::Relaxed);
        assert!(matches!(
            store.check_and_consume(&limits, 1),
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn a_clock_stepping_back_does_not_stop_the_rate() {
        let (store, now) = store();
        let limits = [limit(Scope::Account, 10.0, 0)];
        for _ in 0..10 {
            assert!(matches!(
                store.check_and_consume(&limits, 1),
                Verdict::Allowed(_)
            ));
        }
        now.fetch_sub(3600 * 1000, Ordering::Relaxed);
        assert!(matches!(
            store.check_and_consume(&limits, 1),
            Verdict::RateExceeded { retry_after, .. } if retry_after == Duration::from_millis(100)
        ));
        now.fetch_add(100, Ordering::Relaxed);
        assert!(matches!(
            store.check_and_consume(&limits, 1),
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn raising_seeds_the_count() {
        let (store, _) = store();
        assert_eq!(store.raise_daily(&Scope::Account, 7), 7);
        assert_eq!(store.raise_daily(&Scope::Account, 3), 7);
        assert_eq!(
            store.daily_exceeded(&[limit(Scope::Account, 0.0, 8)], 2),
            Some(Scope::Account)
        );
    }
}
