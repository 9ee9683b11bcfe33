//! Sending quotas in the gateway (SPEC §6, §7): which limits hold for a user (the plan, part of
//! the reloadable snapshot), and the gate a transaction passes between its policy decision and
//! the relay. SES's replies, at the earliest point the outcome is certain:
//!
//! - RCPT: a recipient that would take a 24-hour quota past its limit gets
//!   `454 4.7.0 Throttling failure: Daily message quota exceeded` (the transaction goes on with
//!   the recipients already accepted, as Postfix does with a 4xx RCPT).
//! - End of DATA, once the policy allowed the message: the instance's pace (after upstream
//!   454s), then every rate and 24-hour quota in one atomic store call; a rate without room
//!   waits up to `max_rate_wait_ms`, then `454 ... Maximum sending rate exceeded`.
//! - After the relay: a message the upstream did not take gives its recipients back, so only
//!   what was relayed counts. An upstream 454 lowers the pace.
//!
//! With a spool the end of DATA takes only the 24-hour quotas (`admit_to_spool`): a burst is
//! stored, not refused for its rate; the spool's delivery workers take the rates and the pace
//! (`admit_delivery`, through `spooling.rs`), so the spool drains at the account's rate.
//!
//! A store that does not answer within `store_timeout_ms` is `on_store_error`'s case: `refuse`
//! (451, the default: fail closed) or `allow` (relay uncounted). At RCPT a store error accepts
//! the recipient: the end of DATA decides.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::replies;
use crate::config::iam::IamFile;
use crate::config::{Config, ConfigError, OnStoreError};
use crate::metrics::Metrics;
use crate::quota::{AdaptivePace, Limit, QuotaStore, Reservation, Scope, SendQuota, Verdict};
use crate::smtp::Reply;

/// Which limits hold for whom: the account's (`[quotas]`, lowered to SES's own figures from
/// `from_upstream`), each group's and each user's (`iam.toml`).
#[derive(Debug, Clone)]
pub struct QuotaPlan {
    pub account: Limit,
    groups: HashMap<String, Limit>,
    /// A user's own limit (if any) and its groups with limits.
    users: HashMap<String, (Option<Limit>, Vec<String>)>,
    /// SES's `SentLast24Hours` from `from_upstream`, to raise the account's count to.
    pub sent_last_24_hours: Option<u64>,
}

/// The stricter of two limits where 0 means none.
fn stricter_rate(a: f64, b: f64) -> f64 {
    match (a > 0.0, b > 0.0) {
        (true, true) => a.min(b),
        (true, false) => a,
        _ => b,
    }
}

fn stricter_count(a: u64, b: u64) -> u64 {
    match (a > 0, b > 0) {
        (true, true) => a.min(b),
        (true, false) => a,
        _ => b,
    }
}

/// `from_upstream` is read for its limits whatever its age; its `SentLast24Hours` only while
/// it is less than this old (an older figure says nothing about the last 24 hours).
const SENT_FIGURE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

impl QuotaPlan {
    /// The plan of `config` and `iam` (the `from_upstream` file read now).
    pub fn load(config: &Config, iam: &IamFile) -> Result<QuotaPlan, ConfigError> {
        let quotas = &config.quotas;
        let mut account = Limit {
            scope: Scope::Account,
            max_send_rate: quotas.max_send_rate,
            max_24_hour_send: quotas.max_24_hour_send,
        };
        let mut sent_last_24_hours = None;
        if !quotas.from_upstream.as_os_str().is_empty() {
            let file = config.path(&quotas.from_upstream);
            let (ses, fresh) = read_send_quota(&file)?;
            account.max_send_rate = stricter_rate(account.max_send_rate, ses.max_send_rate);
            account.max_24_hour_send =
                stricter_count(account.max_24_hour_send, ses.max_24_hour_send);
            if fresh {
                sent_last_24_hours = Some(ses.sent_last_24_hours);
            } else {
                warn!(file = %file.display(), "from_upstream is more than 24 hours old: its SentLast24Hours is not used (refresh it with `aws ses get-send-quota`)");
            }
        }
        let limit = |scope: Scope, rate: Option<f64>, daily: Option<u64>| Limit {
            scope,
            max_send_rate: rate.unwrap_or(0.0),
            max_24_hour_send: daily.unwrap_or(0),
        };
        let groups: HashMap<String, Limit> = iam
            .groups
            .iter()
            .map(|g| {
                let rate = g.max_send_rate.as_ref().map(|r| *r.get_ref());
                let group = limit(Scope::Group(g.name.clone()), rate, g.max_24_hour_send);
                (g.name.clone(), group)
            })
            .filter(|(_, l)| l.is_set())
            .collect();
        let users = iam
            .users
            .iter()
            .map(|u| {
                let rate = u.max_send_rate.as_ref().map(|r| *r.get_ref());
                let own = limit(Scope::User(u.name.clone()), rate, u.max_24_hour_send);
                let mut member_of: Vec<String> = Vec::new();
                for group in u.groups.iter().map(|g| g.get_ref()) {
                    // A group listed twice is one limit: given twice, one check would count
                    // its recipients twice in memory, and in Redis once in the window's total
                    // but twice in its minute, so the window later gave back more than it took.
                    if groups.contains_key(group) && !member_of.contains(group) {
                        member_of.push(group.clone());
                    }
                }
                (u.name.clone(), (own.is_set().then_some(own), member_of))
            })
            .collect();
        Ok(QuotaPlan {
            account,
            groups,
            users,
            sent_last_24_hours,
        })
    }

    /// Every limit that holds for `user`, widest first: the account, its groups, its own.
    pub fn limits_for(&self, user: &str) -> Vec<Limit> {
        let mut limits = Vec::new();
        if self.account.is_set() {
            limits.push(self.account.clone());
        }
        if let Some((own, groups)) = self.users.get(user) {
            limits.extend(groups.iter().filter_map(|g| self.groups.get(g)).cloned());
            limits.extend(own.iter().cloned());
        }
        limits
    }

    /// `user`'s 24-hour quotas alone (rates zeroed): what a spool's acceptance consumes.
    pub fn daily_quotas_for(&self, user: &str) -> Vec<Limit> {
        let mut limits = self.daily_limits_for(user);
        for limit in &mut limits {
            limit.max_send_rate = 0.0;
        }
        limits
    }

    /// `user`'s rates alone (24-hour quotas zeroed): what a spooled delivery consumes.
    pub fn rates_for(&self, user: &str) -> Vec<Limit> {
        let mut limits = self.limits_for(user);
        limits.retain(|l| l.max_send_rate > 0.0);
        for limit in &mut limits {
            limit.max_24_hour_send = 0;
        }
        limits
    }

    /// The limits with a 24-hour quota that hold for `user` (the RCPT-time check).
    fn daily_limits_for(&self, user: &str) -> Vec<Limit> {
        let mut limits = self.limits_for(user);
        limits.retain(|l| l.max_24_hour_send > 0);
        limits
    }
}

/// SES's figures from `file`, and whether the file is fresh enough for `SentLast24Hours`.
fn read_send_quota(file: &Path) -> Result<(SendQuota, bool), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    let quota = crate::quota::send_quota::parse(&text).map_err(|message| ConfigError::Invalid {
        file: file.to_owned(),
        message,
    })?;
    let fresh = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_none_or(|age| age < SENT_FIGURE_MAX_AGE);
    Ok((quota, fresh))
}

/// Where a transaction is held to its quotas; one per process (the store and the pace outlive
/// reloads, the plan is the snapshot's).
pub struct QuotaGate {
    pub store: Arc<QuotaStore>,
    pub pace: AdaptivePace,
    pub on_store_error: OnStoreError,
    pub max_rate_wait: Duration,
    pub metrics: Arc<Metrics>,
    /// `[metrics] per_user`: group and user series too.
    pub per_user_metrics: bool,
}

/// A transaction the gate let through: what to give back if it is not relayed.
pub struct Admitted {
    reservation: Option<Reservation>,
    recipients: u32,
}

/// What the pace of a spooled delivery says.
pub enum Paced {
    /// Send now; settle after the attempt.
    Now(Admitted),
    /// The rate (or the store) has no room: try again after this long.
    Later(Duration),
}

/// How soon a spooled delivery asks again when a rate has no room: the store's own estimate,
/// within these bounds (never a busy loop, never long enough to idle a rate that has room).
const RATE_RETRY_MIN: Duration = Duration::from_millis(100);
const RATE_RETRY_MAX: Duration = Duration::from_secs(1);
/// How soon a spooled delivery asks again when the store did not answer (`refuse`).
const STORE_RETRY: Duration = Duration::from_secs(5);

/// A transaction the gate refused: the reply and what the log says.
pub struct Throttled {
    pub reply: Reply,
    /// `throttled` or `quota-unavailable`.
    pub decision: &'static str,
    pub reason: String,
}

impl QuotaGate {
    /// One store call, timed.
    async fn timed<T>(&self, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .quota
            .store_latency
            .observe(started.elapsed().as_secs_f64());
        result
    }

    fn labelled(&self, scope: &Scope) -> bool {
        *scope == Scope::Account || self.per_user_metrics
    }

    /// The RCPT-time check: `recipients` (the new one included) against every 24-hour quota
    /// of `user`. A refusal is certain: the message cannot be relayed to them all.
    pub async fn on_recipient(
        &self,
        plan: &QuotaPlan,
        user: &str,
        recipients: usize,
    ) -> Option<Reply> {
        let limits = plan.daily_limits_for(user);
        if limits.is_empty() {
            return None;
        }
        let recipients = u32::try_from(recipients).unwrap_or(u32::MAX);
        match self
            .timed(self.store.daily_exceeded(&limits, recipients))
            .await
        {
            Ok(None) => None,
            Ok(Some(scope)) => {
                self.metrics.quota.count_throttled("daily");
                info!(user = %user, scope = %scope, "recipient refused: 24-hour quota");
                Some(replies::throttled_daily())
            }
            Err(error) => {
                // Not decided here: the end of DATA asks again and applies on_store_error.
                self.metrics.quota.count_store_error("rcpt", "none");
                warn!(user = %user, %error, "quota store: recipient accepted unchecked");
                None
            }
        }
    }

    /// The end-of-DATA check of an allowed message: the pace, then every limit of `user`.
    pub async fn admit(
        &self,
        plan: &QuotaPlan,
        user: &str,
        recipients: usize,
    ) -> Result<Admitted, Throttled> {
        let recipients = u32::try_from(recipients).unwrap_or(u32::MAX);
        let deadline = tokio::time::Instant::now() + self.max_rate_wait;
        loop {
            match self.pace.admit(recipients, Instant::now()) {
                Ok(()) => break,
                Err(wait) if tokio::time::Instant::now() + wait <= deadline => {
                    tokio::time::sleep(wait).await;
                }
                Err(_) => {
                    self.metrics.quota.count_throttled("pace");
                    return Err(Throttled {
                        reply: replies::throttled_rate(),
                        decision: "throttled",
                        reason: "this instance's pace after upstream throttling".into(),
                    });
                }
            }
        }
        let limits = plan.limits_for(user);
        if limits.is_empty() {
            return Ok(Admitted {
                reservation: None,
                recipients,
            });
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let verdict = self
            .timed(self.store.consume_waiting(&limits, recipients, left))
            .await;
        self.judged(verdict, user, recipients, true)
    }

    /// What the store's `verdict` means for a message of `user`'s: admitted, or the reply.
    /// `paced`: the pace took the recipients too (given back on a refusal).
    fn judged(
        &self,
        verdict: Result<Verdict, crate::quota::StoreError>,
        user: &str,
        recipients: u32,
        paced: bool,
    ) -> Result<Admitted, Throttled> {
        let give_back = || {
            if paced {
                self.pace.give_back(recipients, Instant::now());
            }
        };
        let refused = |cause: &'static str, reply: Reply, reason: String| {
            give_back();
            self.metrics.quota.count_throttled(cause);
            Err(Throttled {
                reply,
                decision: "throttled",
                reason,
            })
        };
        match verdict {
            Ok(Verdict::Allowed(reservation)) => {
                for (limit, (scope, used)) in reservation.limits().iter().zip(&reservation.used_24h)
                {
                    if let Some(used) = used
                        && self.labelled(scope)
                    {
                        let remaining = limit.max_24_hour_send.saturating_sub(*used);
                        self.metrics.quota.set_remaining_24h(
                            scope.kind(),
                            scope.name(),
                            i64::try_from(remaining).unwrap_or(i64::MAX),
                        );
                    }
                }
                Ok(Admitted {
                    reservation: Some(reservation),
                    recipients,
                })
            }
            Ok(Verdict::RateExceeded { scope, .. }) => refused(
                "rate",
                replies::throttled_rate(),
                format!("maximum send rate of {scope}"),
            ),
            Ok(Verdict::DailyExceeded { scope }) => refused(
                "daily",
                replies::throttled_daily(),
                format!("24-hour quota of {scope}"),
            ),
            Err(error) => match self.on_store_error {
                OnStoreError::Refuse => {
                    give_back();
                    self.metrics.quota.count_store_error("data", "refused");
                    warn!(user = %user, %error, "quota store: message refused (on_store_error = refuse)");
                    Err(Throttled {
                        reply: replies::quota_unavailable(),
                        decision: "quota-unavailable",
                        reason: error.to_string(),
                    })
                }
                OnStoreError::Allow => {
                    self.metrics.quota.count_store_error("data", "allowed");
                    warn!(user = %user, %error, "quota store: message relayed uncounted (on_store_error = allow)");
                    Ok(Admitted {
                        reservation: None,
                        recipients,
                    })
                }
            },
        }
    }

    /// After the relay (`reply` is what the client hears): counts what was relayed, gives back
    /// what was not, and slows down after an upstream 454.
    pub async fn settle(&self, admitted: Admitted, reply: &Reply, user: &str) {
        let now = Instant::now();
        if reply.code == 250 {
            self.pace.on_relayed(admitted.recipients, now);
            let limits = admitted.reservation.iter().flat_map(|r| r.limits());
            self.count_relayed(limits, admitted.recipients);
            return;
        }
        if reply.code == 454 {
            let limit = self.pace.on_throttled(now);
            self.metrics.quota.count_throttled("upstream");
            warn!(user = %user, pace = limit, "upstream throttled: this instance slows down");
        } else {
            self.pace.give_back(admitted.recipients, now);
        }
        self.refund(&admitted, user).await;
    }

    /// The end-of-DATA check of an allowed message with a spool: its recipients against
    /// `user`'s 24-hour quotas only, so a day's quota is never over-accepted. No rate and no
    /// pace: the spool's delivery workers are paced (`admit_delivery`), the client is not.
    pub async fn admit_to_spool(
        &self,
        plan: &QuotaPlan,
        user: &str,
        recipients: usize,
    ) -> Result<Admitted, Throttled> {
        let recipients = u32::try_from(recipients).unwrap_or(u32::MAX);
        let limits = plan.daily_quotas_for(user);
        if limits.is_empty() {
            return Ok(Admitted {
                reservation: None,
                recipients,
            });
        }
        let verdict = self
            .timed(self.store.check_and_consume(&limits, recipients))
            .await;
        self.judged(verdict, user, recipients, false)
    }

    /// After the spool answered (`reply`): a message it did not store gives its recipients
    /// back to the 24-hour quotas. A stored one keeps them: it will be delivered.
    pub async fn settle_spooled(&self, admitted: Admitted, reply: &Reply, user: &str) {
        if reply.code != 250 {
            self.refund(&admitted, user).await;
        }
    }

    /// A spooled delivery's check: the instance's pace, then `user`'s rates (24-hour quotas
    /// zeroed: acceptance took those). Waits up to `max_rate_wait_ms`; past that, `Later`.
    pub async fn admit_delivery(&self, plan: &QuotaPlan, user: &str, recipients: usize) -> Paced {
        let recipients = u32::try_from(recipients).unwrap_or(u32::MAX);
        let deadline = tokio::time::Instant::now() + self.max_rate_wait;
        loop {
            match self.pace.admit(recipients, Instant::now()) {
                Ok(()) => break,
                Err(wait) if tokio::time::Instant::now() + wait <= deadline => {
                    tokio::time::sleep(wait).await;
                }
                Err(wait) => return Paced::Later(wait.clamp(RATE_RETRY_MIN, RATE_RETRY_MAX)),
            }
        }
        let limits = plan.rates_for(user);
        if limits.is_empty() {
            return Paced::Now(Admitted {
                reservation: None,
                recipients,
            });
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let verdict = self
            .timed(self.store.consume_waiting(&limits, recipients, left))
            .await;
        let later = |wait: Duration| {
            self.pace.give_back(recipients, Instant::now());
            Paced::Later(wait)
        };
        match verdict {
            Ok(Verdict::Allowed(reservation)) => Paced::Now(Admitted {
                reservation: Some(reservation),
                recipients,
            }),
            Ok(Verdict::RateExceeded { retry_after, .. }) => {
                later(retry_after.clamp(RATE_RETRY_MIN, RATE_RETRY_MAX))
            }
            // Not asked (24-hour quotas are zeroed here); if a store says so anyway, wait.
            Ok(Verdict::DailyExceeded { .. }) => later(STORE_RETRY),
            Err(error) => match self.on_store_error {
                OnStoreError::Refuse => {
                    self.metrics.quota.count_store_error("delivery", "deferred");
                    warn!(user = %user, %error, "quota store: spooled delivery deferred (on_store_error = refuse)");
                    later(STORE_RETRY)
                }
                OnStoreError::Allow => {
                    self.metrics.quota.count_store_error("delivery", "allowed");
                    warn!(user = %user, %error, "quota store: spooled delivery sent uncounted (on_store_error = allow)");
                    Paced::Now(Admitted {
                        reservation: None,
                        recipients,
                    })
                }
            },
        }
    }

    /// After a spooled delivery's attempt: `relayed` recipients were taken by the upstream.
    /// None taken gives the rate and the pace back; an upstream 454 is the pace's
    /// `on_throttled`, which the worker calls after this.
    pub async fn settle_delivery(
        &self,
        plan: &QuotaPlan,
        admitted: Admitted,
        user: &str,
        relayed: usize,
    ) {
        if relayed == 0 {
            self.pace.give_back(admitted.recipients, Instant::now());
            self.refund(&admitted, user).await;
            return;
        }
        let relayed = u32::try_from(relayed).unwrap_or(u32::MAX);
        self.pace.on_relayed(relayed, Instant::now());
        self.count_relayed(plan.limits_for(user).iter(), relayed);
    }

    /// An upstream 454 for a spooled delivery: this instance slows down.
    pub fn delivery_throttled(&self) {
        let limit = self.pace.on_throttled(Instant::now());
        self.metrics.quota.count_throttled("upstream");
        warn!(
            pace = limit,
            "upstream throttled a spooled delivery: this instance slows down"
        );
    }

    /// `recipients` relayed, counted for the account and (per-user metrics) `limits`' scopes.
    fn count_relayed<'a>(&self, limits: impl Iterator<Item = &'a Limit>, recipients: u32) {
        let recipients = u64::from(recipients);
        self.metrics
            .quota
            .count_recipients("account", "", recipients);
        if self.per_user_metrics {
            for limit in limits {
                if limit.scope != Scope::Account {
                    self.metrics.quota.count_recipients(
                        limit.scope.kind(),
                        limit.scope.name(),
                        recipients,
                    );
                }
            }
        }
    }

    /// Gives back what `admitted` took from the store.
    async fn refund(&self, admitted: &Admitted, user: &str) {
        if let Some(reservation) = &admitted.reservation
            && let Err(error) = self.timed(self.store.refund(reservation)).await
        {
            // Over-counted, never under: the recipients come back when the window slides.
            self.metrics.quota.count_store_error("refund", "none");
            warn!(user = %user, %error, recipients = admitted.recipients, "quota store: could not give back a failed message's recipients");
        }
    }

    /// Raises the account's 24-hour count to SES's `SentLast24Hours` (at start and reload).
    pub async fn seed(&self, plan: &QuotaPlan) {
        let Some(sent) = plan.sent_last_24_hours else {
            return;
        };
        match self
            .timed(self.store.raise_daily(&Scope::Account, sent))
            .await
        {
            Ok(total) => info!(
                sent_last_24_hours = sent,
                counted = total,
                "24-hour count raised to SES's figure"
            ),
            Err(error) => {
                self.metrics.quota.count_store_error("seed", "none");
                warn!(%error, "quota store: SES's SentLast24Hours not applied");
            }
        }
    }

    /// `/ready`'s question about the store.
    pub async fn ready(&self) -> Result<(), String> {
        self.timed(self.store.ping()).await.map_err(|error| {
            self.metrics.quota.count_store_error("ready", "none");
            error.to_string()
        })
    }

    /// The pace gauge, before a scrape.
    pub fn refresh_metrics(&self) {
        let pace = self.pace.limit(Instant::now()).unwrap_or(0.0);
        self.metrics.quota.pace.set(pace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(iam: &str, quotas: &str) -> QuotaPlan {
        let config = Config::parse(Path::new("s.toml"), &format!("[quotas]\n{quotas}")).unwrap();
        let iam = IamFile::parse(Path::new("iam.toml"), iam).unwrap();
        QuotaPlan::load(&config, &iam).unwrap()
    }

    const IAM: &str = r#"
[[group]]
name = "bulk"
max_24_hour_send = 100
[[group]]
name = "plain"
[[user]]
name = "app"
groups = ["bulk", "plain"]
max_send_rate = 2
[[user]]
name = "free"
"#;

    #[test]
    fn limits_are_the_account_then_groups_then_the_user() {
        let plan = plan(IAM, "max_24_hour_send = 1000\n");
        let scopes: Vec<Scope> = plan
            .limits_for("app")
            .into_iter()
            .map(|l| l.scope)
            .collect();
        assert_eq!(
            scopes,
            [
                Scope::Account,
                Scope::Group("bulk".into()),
                Scope::User("app".into())
            ]
        );
        assert_eq!(plan.limits_for("app")[2].max_send_rate, 2.0);
        assert_eq!(plan.limits_for("free").len(), 1);
        assert_eq!(plan.daily_limits_for("app").len(), 2);
        assert_eq!(plan.limits_for("nobody").len(), 1);
    }

    #[test]
    fn a_spool_splits_the_limits_into_daily_at_acceptance_and_rates_at_delivery() {
        let plan = plan(IAM, "max_24_hour_send = 1000\nmax_send_rate = 14\n");
        let daily = plan.daily_quotas_for("app");
        assert_eq!(daily.len(), 2);
        assert!(
            daily
                .iter()
                .all(|l| l.max_send_rate == 0.0 && l.max_24_hour_send > 0)
        );
        let rates = plan.rates_for("app");
        let scopes: Vec<&Scope> = rates.iter().map(|l| &l.scope).collect();
        assert_eq!(scopes, [&Scope::Account, &Scope::User("app".into())]);
        assert!(
            rates
                .iter()
                .all(|l| l.max_24_hour_send == 0 && l.max_send_rate > 0.0)
        );
        assert_eq!(rates[1].max_send_rate, 2.0);
        let plan = super::tests::plan("", "");
        assert!(plan.daily_quotas_for("free").is_empty() && plan.rates_for("free").is_empty());
    }

    #[test]
    fn a_negative_rate_in_iam_toml_is_an_error_with_its_line() {
        let error = IamFile::parse(
            Path::new("iam.toml"),
            "[[user]]\nname = \"app\"\nmax_send_rate = -3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("line 3") && error.contains("max_send_rate"),
            "{error}"
        );
    }

    #[test]
    fn no_quota_means_no_limits() {
        let plan = plan("[[user]]\nname = \"free\"\n", "");
        assert!(plan.limits_for("free").is_empty());
    }

    #[test]
    fn ses_figures_lower_the_account_limits() {
        let dir = std::env::temp_dir().join(format!("sesgate-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("quota.json");
        std::fs::write(
            &file,
            r#"{"Max24HourSend": 500.0, "MaxSendRate": 14.0, "SentLast24Hours": 42.0}"#,
        )
        .unwrap();
        let plan = plan(
            "",
            &format!(
                "max_send_rate = 10\nmax_24_hour_send = 1000\nfrom_upstream = {:?}\n",
                file.display()
            ),
        );
        assert_eq!(plan.account.max_send_rate, 10.0);
        assert_eq!(plan.account.max_24_hour_send, 500);
        assert_eq!(plan.sent_last_24_hours, Some(42));
        std::fs::write(&file, "{").unwrap();
        let config = Config::parse(
            Path::new("s.toml"),
            &format!("[quotas]\nfrom_upstream = {:?}\n", file.display()),
        )
        .unwrap();
        let error = QuotaPlan::load(&config, &IamFile::default()).unwrap_err();
        assert!(error.to_string().contains("GetSendQuota"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
