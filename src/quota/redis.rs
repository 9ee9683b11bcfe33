//! Quota counters in Redis or Valkey (`[quotas] store = "redis://..."`), shared by every
//! instance. Each operation is one Lua script (`redis.lua`), so a check of several scopes and its
//! consumption are one atomic step on the server: two instances can never both take the last
//! recipients of a quota, and no update is lost. Scripts go by EVALSHA (redis-rs reloads them
//! after a restart of the server), so a check is one round trip.
//!
//! The connection is redis-rs's `ConnectionManager`: one multiplexed connection (pipelined
//! requests from every session), re-established in the background after the server restarts
//! or the network drops. Every call is bounded by `timeout`; a call that fails or times out is a
//! [`StoreError`], and what the client hears then is `[quotas] on_store_error`'s choice.
//!
//! Keys: one hash per scope, `sesgate:{ACCOUNT}:SCOPE`, where SCOPE is `account`, `user:NAME`
//! or `group:NAME`. The `{ACCOUNT}` hash tag keeps one account's keys in one Redis Cluster slot.
//! Each reservation also writes a short-lived record, `sesgate:{ACCOUNT}:reservation:ID`, so that
//! one whose reply timed out can be cancelled (`CANCEL` in `redis.lua`): a failed call takes nothing.
//! A key with a 24-hour quota expires a minute after its newest bucket leaves the window, one
//! with a rate only once its bucket would be full again: nothing is left behind for users who
//! no longer send.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::{Limit, Reservation, Scope, StoreError, Verdict};

const SOURCE: &str = include_str!("redis.lua");

/// 64 random bits from the operating system.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    u64::from_le_bytes(bytes)
}

/// One `--@NAME` section of `redis.lua`, after the prelude every script shares.
fn script_source(name: &str) -> String {
    let section = |name: &str| -> &'static str {
        let marker = format!("--@{name}\n");
        let start = SOURCE.find(&marker).expect("redis.lua has every section") + marker.len();
        let end = SOURCE[start..]
            .find("\n--@")
            .map_or(SOURCE.len(), |e| start + e + 1);
        &SOURCE[start..end]
    };
    format!("{}\n{}", section("PRELUDE"), section(name))
}

fn script(name: &str) -> Script {
    Script::new(&script_source(name))
}

pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    reserve: Script,
    refund: Script,
    /// CANCEL's source: sent whole with EVAL, never EVALSHA, since a server that did not
    /// answer may have lost its scripts, and EVALSHA's NOSCRIPT retry would come too late.
    cancel: Box<str>,
    exceeds: Script,
    raise: Script,
    /// Names each reservation's record: a counter from a random start, so that instances
    /// sharing Redis never name the same one.
    reservations: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `url` (`redis://[user:password@]host:port/db`) for `account`'s keys. Does not
    /// connect yet: the first call does, so sesgate starts (and reports not ready) while Redis
    /// is down. Must be called inside a tokio runtime.
    pub fn open(url: &str, account: &str, timeout: Duration) -> Result<RedisStore, String> {
        let client = Client::open(url).map_err(|e| e.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnection is retried in the background with a short backoff; a request made
            // meanwhile fails at once (then `on_store_error` decides) instead of waiting.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())?;
        Ok(RedisStore {
            connection,
            prefix: format!("sesgate:{{{account}}}:"),
            timeout,
            reserve: script("RESERVE"),
            refund: script("REFUND"),
            cancel: script_source("CANCEL").into(),
            exceeds: script("EXCEEDS"),
            raise: script("RAISE"),
            reservations: std::sync::atomic::AtomicU64::new(random_u64()),
        })
    }

    fn key(&self, scope: &Scope) -> String {
        format!("{}{}", self.prefix, scope.key())
    }

    /// KEYS and ARGV for `limits` (see `redis.lua`).
    fn invocation<'a>(
        &self,
        script: &'a Script,
        limits: &[Limit],
        recipients: u32,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(recipients);
        for limit in limits {
            invocation
                .key(self.key(&limit.scope))
                .arg(format!("{}", limit.max_send_rate.max(0.0)))
                .arg(limit.max_24_hour_send);
        }
        invocation
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection)).await {
            Err(_) => Err(StoreError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// A new reservation's record key.
    fn record_key(&self) -> String {
        let id = self
            .reservations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}reservation:{id:016x}", self.prefix)
    }

    pub async fn check_and_consume(
        &self,
        limits: &[Limit],
        recipients: u32,
    ) -> Result<Verdict, StoreError> {
        let record = self.record_key();
        let mut invocation = self.invocation(&self.reserve, limits, recipients);
        invocation.key(&record);
        let reply: Vec<i64> = match self.run(invocation).await {
            Ok(reply) => reply,
            Err(error) => {
                // A timed-out script still runs once the server answers again (a frozen or
                // overloaded Redis works through its backlog): it would take recipients for a
                // message that was refused (451), and a stall during which clients retry
                // would use up the day's quota. A failed call takes nothing: CANCEL, queued
                // behind it on the same connection, gives back what it took, or stops it.
                self.cancel(limits, recipients, record);
                return Err(error);
            }
        };
        let field = |i: usize| {
            reply
                .get(i)
                .copied()
                .ok_or_else(|| StoreError::Unavailable("short reply from the quota script".into()))
        };
        let scope = |index: i64| {
            usize::try_from(index - 1)
                .ok()
                .and_then(|i| limits.get(i))
                .map(|l| l.scope.clone())
                .ok_or_else(|| {
                    StoreError::Unavailable("bad scope in the quota script reply".into())
                })
        };
        match field(0)? {
            0 => Ok(Verdict::DailyExceeded {
                scope: scope(field(1)?)?,
            }),
            1 => Ok(Verdict::RateExceeded {
                scope: scope(field(1)?)?,
                retry_after: Duration::from_millis(field(2)?.max(1) as u64),
            }),
            2 => Ok(Verdict::Allowed(Reservation {
                limits: limits.to_vec(),
                recipients,
                minute: field(3)? as u64,
                used_24h: limits
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let total = reply.get(4 + i).copied().unwrap_or(-1);
                        (l.scope.clone(), u64::try_from(total).ok())
                    })
                    .collect(),
            })),
            3 => Err(StoreError::Unavailable(
                "the reservation was cancelled before it ran".into(),
            )),
            other => Err(StoreError::Unavailable(format!(
                "unknown status {other} from the quota script"
            ))),
        }
    }

    /// Sends CANCEL for the reservation named `record` without waiting for it: it is queued on
    /// the connection now, behind the RESERVE, and runs when the server does.
    fn cancel(&self, limits: &[Limit], recipients: u32, record: String) {
        let mut command = redis::cmd("EVAL");
        command.arg(&*self.cancel).arg(limits.len() + 1);
        for limit in limits {
            command.arg(self.key(&limit.scope));
        }
        command.arg(record).arg(recipients);
        for limit in limits {
            command
                .arg(format!("{}", limit.max_send_rate.max(0.0)))
                .arg(limit.max_24_hour_send);
        }
        let mut connection = self.connection.clone();
        let timeout = self.timeout;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // Bounded like every call: the request is queued on its first poll and runs when
            // the server does; its reply is not needed.
            let cancelled = command.query_async::<i64>(&mut connection);
            if let Ok(Err(error)) = tokio::time::timeout(timeout, cancelled).await {
                tracing::warn!(%error, "quota store: a timed-out reservation could not be cancelled");
            }
        });
    }

    pub async fn refund(&self, reservation: &Reservation) -> Result<(), StoreError> {
        let mut invocation =
            self.invocation(&self.refund, &reservation.limits, reservation.recipients);
        invocation.arg(reservation.minute);
        self.run::<i64>(invocation).await.map(|_| ())
    }

    pub async fn daily_exceeded(
        &self,
        limits: &[Limit],
        recipients: u32,
    ) -> Result<Option<Scope>, StoreError> {
        let index: i64 = self
            .run(self.invocation(&self.exceeds, limits, recipients))
            .await?;
        Ok(usize::try_from(index - 1)
            .ok()
            .and_then(|i| limits.get(i))
            .map(|l| l.scope.clone()))
    }

    pub async fn raise_daily(&self, scope: &Scope, total: u64) -> Result<u64, StoreError> {
        let mut invocation = self.raise.prepare_invoke();
        invocation.key(self.key(scope)).arg(total);
        let total: i64 = self.run(invocation).await?;
        Ok(total.max(0) as u64)
    }

    /// Whether the server answers, within the timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(self.timeout, ping).await {
            Err(_) => Err(StoreError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_the_prelude_and_its_own_section_only() {
        for name in ["RESERVE", "REFUND", "CANCEL", "EXCEEDS", "RAISE"] {
            let source = script_source(name);
            assert!(source.contains("local function trim"), "{name}");
            let others = [
                "--@RESERVE",
                "--@REFUND",
                "--@CANCEL",
                "--@EXCEEDS",
                "--@RAISE",
                "--@PRELUDE",
            ];
            assert!(
                !others.iter().any(|o| source.contains(o)),
                "{name}: {source}"
            );
        }
        assert!(script_source("RESERVE").contains("HINCRBY', KEYS[i], tostring(minute), n"));
        assert!(script_source("RAISE").contains("target - total"));
    }
}
