//! Prometheus metrics on `[metrics] listen`: transactions by decision, AUTH results, upstream
//! results and latency, open connections, and policy decision latency. Served by a small HTTP
//! responder (`GET /metrics`), so no web framework is needed for one text endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::accept::{AcceptBackoff, accept_with_backoff};

// Label values are `&'static str` (a fixed set, written in the code) or an interned name
// (`Names`): finding an existing series allocates nothing, so the per-message updates cost no
// allocation (benches/metrics.rs).

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserDecisionLabel {
    pub user: Arc<str>,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabel {
    pub user: Arc<str>,
    pub direction: &'static str,
}

/// Names used as label values (IAM users, groups), each allocated once: a label then holds a
/// shared reference. Callers pass only names of the configuration, never client text, so the
/// set is bounded as the series are.
#[derive(Debug, Default)]
pub struct Names(std::sync::RwLock<std::collections::HashSet<Arc<str>>>);

impl Names {
    /// The shared copy of `name`, made on its first use.
    pub fn get(&self, name: &str) -> Arc<str> {
        if let Some(known) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Arc::clone(known);
        }
        let mut names = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = names.get(name) {
            return Arc::clone(known);
        }
        let new: Arc<str> = Arc::from(name);
        names.insert(Arc::clone(&new));
        new
    }
}

/// Every metric sesgate exports.
pub struct Metrics {
    registry: Registry,
    pub transactions: Family<DecisionLabel, Counter>,
    pub auth: Family<ResultLabel, Counter>,
    /// argon2 verifications run (a cached credential runs none).
    pub auth_verifications: Counter,
    pub upstream: Family<ResultLabel, Counter>,
    pub upstream_latency: Histogram,
    pub decision_latency: Histogram,
    pub open_connections: Gauge,
    /// Policy refusals of report-only principals, relayed anyway.
    pub would_refuse: Family<UserDecisionLabel, Counter>,
    /// Transactions by IAM user and decision (`[metrics] per_user`): only configured user names
    /// are labels, never client text, so its cardinality is that of `iam.toml`.
    pub user_transactions: Family<UserDecisionLabel, Counter>,
    /// Transactions the shadow policy set decides otherwise, by user and direction.
    pub shadow_disagreements: Family<ShadowLabel, Counter>,
    /// Decision log lines dropped because the writer fell behind.
    pub decision_log_dropped: Counter,
    /// Reloads by result (success, failure).
    pub reloads: Family<ResultLabel, Counter>,
    /// When the last successful reload happened, in Unix seconds (0: none yet).
    pub last_reload: Gauge,
    /// Changed sections the last successful reload could not apply (a restart applies them).
    pub reload_unapplied: Gauge,
    /// When the serving certificate expires, in Unix seconds.
    pub certificate_expiry: Gauge,
    /// Sending quotas, throttling and the quota store.
    pub quota: QuotaMetrics,
    /// `[spool]` counters (retries, expiries, deliveries, DSNs), owned by the spool.
    pub spool: crate::relay::spool::SpoolCounters,
    /// `[spool]` gauges, set from the spool at each scrape.
    pub spool_messages: Gauge,
    pub spool_held: Gauge,
    pub spool_bytes: Gauge,
    pub spool_oldest_age: Gauge,
    /// The user names of the per-user series.
    names: Names,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sesgate");
        let transactions = Family::<DecisionLabel, Counter>::default();
        let auth = Family::<ResultLabel, Counter>::default();
        let auth_verifications = Counter::default();
        let upstream = Family::<ResultLabel, Counter>::default();
        // 1 ms .. ~33 s
        let upstream_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        // 0.25 µs .. ~1 ms
        let decision_latency = Histogram::new(exponential_buckets(0.000_000_25, 2.0, 13));
        let open_connections = Gauge::default();
        registry.register(
            "transactions",
            "SMTP transactions by decision",
            transactions.clone(),
        );
        registry.register("auth", "AUTH attempts by result", auth.clone());
        registry.register(
            "auth_verifications",
            "argon2 password verifications run",
            auth_verifications.clone(),
        );
        registry.register(
            "upstream",
            "Relay attempts by result (ok, deferred, rejected)",
            upstream.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time to relay one message",
            upstream_latency.clone(),
        );
        registry.register(
            "decision_latency_seconds",
            "Time to build and decide one request",
            decision_latency.clone(),
        );
        registry.register(
            "open_connections",
            "SMTP connections open",
            open_connections.clone(),
        );
        let would_refuse = Family::<UserDecisionLabel, Counter>::default();
        let shadow_disagreements = Family::<ShadowLabel, Counter>::default();
        let decision_log_dropped = Counter::default();
        let user_transactions = Family::<UserDecisionLabel, Counter>::default();
        registry.register(
            "user_transactions",
            "SMTP transactions by IAM user and decision (only with [metrics] per_user = true)",
            user_transactions.clone(),
        );
        registry.register(
            "would_refuse",
            "Policy refusals of report-only principals (relayed anyway), by user and decision",
            would_refuse.clone(),
        );
        registry.register(
            "shadow_disagreements",
            "Transactions the shadow policy set decides otherwise, by user and direction",
            shadow_disagreements.clone(),
        );
        registry.register(
            "decision_log_dropped",
            "Decision log lines dropped because the writer fell behind",
            decision_log_dropped.clone(),
        );
        let build_info = Family::<BuildLabel, Gauge>::default();
        build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("build_info", "sesgate version (value 1)", build_info);
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register("reloads", "Reloads (SIGHUP) by result", reloads.clone());
        let last_reload = Gauge::default();
        registry.register(
            "last_reload_timestamp_seconds",
            "Unix time of the last successful reload",
            last_reload.clone(),
        );
        let reload_unapplied = Gauge::default();
        registry.register(
            "reload_unapplied_sections",
            "Changed sections (listener, limits, upstream, ...) the last reload could not apply; restart to apply",
            reload_unapplied.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Unix time at which the TLS certificate expires",
            certificate_expiry.clone(),
        );
        let quota = QuotaMetrics::register(&mut registry);
        let spool = crate::relay::spool::SpoolCounters::default();
        registry.register(
            "spool_retries",
            "Spooled delivery attempts that failed temporarily and were rescheduled",
            spool.retries.clone(),
        );
        registry.register(
            "spool_expired",
            "Spooled messages that expired ([spool] max_age_secs) and were bounced",
            spool.expired.clone(),
        );
        registry.register(
            "spool_delivered",
            "Spooled messages the upstream accepted",
            spool.delivered.clone(),
        );
        registry.register(
            "spool_bounces",
            "Delivery status notifications generated",
            spool.bounces.clone(),
        );
        let (spool_messages, spool_held, spool_bytes, spool_oldest_age) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        registry.register(
            "spool_messages",
            "Spooled messages waiting for delivery or in flight (the queue depth)",
            spool_messages.clone(),
        );
        registry.register(
            "spool_held",
            "Spooled messages on hold (sesgate queue hold)",
            spool_held.clone(),
        );
        registry.register("spool_bytes", "Bytes in the spool", spool_bytes.clone());
        registry.register(
            "spool_oldest_age_seconds",
            "Age of the oldest spooled message waiting for delivery",
            spool_oldest_age.clone(),
        );
        Metrics {
            names: Names::default(),
            quota,
            spool,
            spool_messages,
            spool_held,
            spool_bytes,
            spool_oldest_age,
            registry,
            reloads,
            last_reload,
            reload_unapplied,
            certificate_expiry,
            would_refuse,
            user_transactions,
            shadow_disagreements,
            decision_log_dropped,
            transactions,
            auth,
            auth_verifications,
            upstream,
            upstream_latency,
            decision_latency,
            open_connections,
        }
    }
}

impl Metrics {
    pub fn count_transaction(&self, decision: &'static str) {
        self.transactions
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    pub fn count_auth(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.auth.get_or_create(&ResultLabel { result }).inc();
    }

    /// One checked AUTH: `success`, `failure` or `unavailable` (verifier saturated), and
    /// whether argon2 ran.
    pub fn count_verification(&self, verification: &crate::credentials::Verification) {
        use crate::credentials::Verification;
        let (result, ran_argon2) = match verification {
            Verification::Valid { ran_argon2, .. } => ("success", *ran_argon2),
            Verification::Invalid => ("failure", true),
            Verification::Busy => ("unavailable", false),
        };
        self.auth.get_or_create(&ResultLabel { result }).inc();
        if ran_argon2 {
            self.auth_verifications.inc();
        }
    }

    pub fn count_upstream(&self, result: &'static str, seconds: f64) {
        self.upstream.get_or_create(&ResultLabel { result }).inc();
        self.upstream_latency.observe(seconds);
    }

    /// One transaction of a configured IAM user (`[metrics] per_user`), by decision.
    pub fn count_user_transaction(&self, user: &str, decision: &'static str) {
        self.user_transactions
            .get_or_create(&UserDecisionLabel {
                user: self.names.get(user),
                decision,
            })
            .inc();
    }

    /// A policy refusal of a report-only principal, relayed anyway.
    pub fn count_would_refuse(&self, user: &str, decision: &'static str) {
        self.would_refuse
            .get_or_create(&UserDecisionLabel {
                user: self.names.get(user),
                decision,
            })
            .inc();
    }

    /// A transaction the shadow set decides otherwise (`direction`: which way).
    pub fn count_shadow_disagreement(&self, user: &str, direction: &'static str) {
        self.shadow_disagreements
            .get_or_create(&ShadowLabel {
                user: self.names.get(user),
                direction,
            })
            .inc();
    }

    /// One reload: whether it loaded, and how many changed sections it could not apply.
    pub fn count_reload(&self, ok: bool, unapplied: usize) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        if ok {
            self.last_reload.set(jiff::Timestamp::now().as_second());
            self.reload_unapplied.set(unapplied as i64);
        }
    }

    /// The spool's gauges from its current figures.
    pub fn set_spool(&self, stats: &crate::relay::spool::SpoolStats) {
        self.spool_messages.set(stats.messages as i64);
        self.spool_held.set(stats.held as i64);
        self.spool_bytes.set(stats.bytes as i64);
        self.spool_oldest_age.set(stats.oldest_age_secs as i64);
    }

    /// The serving certificate's expiry, from its PEM text.
    pub fn set_certificate(&self, pem: Option<&str>) {
        if let Some(expiry) = pem.and_then(crate::certificate::not_after) {
            self.certificate_expiry.set(expiry.as_second());
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    /// `account`, `group` or `user`.
    pub scope: &'static str,
    /// The group's or user's name from the configuration; empty for the account.
    pub name: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabel {
    /// `rcpt`, `data`, `refund`, `seed` or `ready`.
    pub operation: &'static str,
    /// What the client got: `refused` (451), `allowed` (uncounted), or `none`.
    pub outcome: &'static str,
}

/// The quota metrics. Group and user series exist only with `[metrics] per_user` and only for
/// names from the configuration, as `sesgate_user_transactions_total`.
pub struct QuotaMetrics {
    /// Recipients relayed, counted against each scope.
    pub recipients: Family<ScopeLabel, Counter>,
    /// Recipients left in each scope's 24-hour quota, as this instance last saw it.
    pub remaining_24h: Family<ScopeLabel, Gauge>,
    /// 454 replies by cause: `rate`, `daily`, `pace` (this instance's pace after upstream
    /// throttling) and `upstream` (the upstream's own 454).
    pub throttled: Family<CauseLabel, Counter>,
    /// Quota store calls that failed or timed out.
    pub store_errors: Family<StoreErrorLabel, Counter>,
    pub store_latency: Histogram,
    /// This instance's adaptive pace in recipients per second; 0 when not pacing.
    pub pace: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The group and user names of the per-scope series.
    names: Names,
}

impl QuotaMetrics {
    fn register(registry: &mut Registry) -> QuotaMetrics {
        let metrics = QuotaMetrics {
            recipients: Family::default(),
            remaining_24h: Family::default(),
            throttled: Family::default(),
            store_errors: Family::default(),
            // 50 µs .. ~1.6 s
            store_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            pace: Gauge::default(),
            names: Names::default(),
        };
        registry.register(
            "quota_recipients",
            "Recipients relayed, counted against each quota scope (account; group and user with [metrics] per_user)",
            metrics.recipients.clone(),
        );
        registry.register(
            "quota_remaining_24h",
            "Recipients left in a scope's 24-hour quota, as this instance last saw it",
            metrics.remaining_24h.clone(),
        );
        registry.register(
            "throttled",
            "454 throttling replies by cause (rate, daily, pace, upstream)",
            metrics.throttled.clone(),
        );
        registry.register(
            "quota_store_errors",
            "Quota store calls that failed or timed out, by operation and what the client got",
            metrics.store_errors.clone(),
        );
        registry.register(
            "quota_store_latency_seconds",
            "Time of one quota store call",
            metrics.store_latency.clone(),
        );
        registry.register(
            "upstream_pace",
            "This instance's pace after upstream throttling, in recipients per second (0: not pacing)",
            metrics.pace.clone(),
        );
        metrics
    }

    pub fn count_throttled(&self, cause: &'static str) {
        self.throttled.get_or_create(&CauseLabel { cause }).inc();
    }

    /// `recipients` relayed, counted against a quota scope (`kind`: account, group or user).
    pub fn count_recipients(&self, kind: &'static str, name: &str, recipients: u64) {
        self.recipients
            .get_or_create(&ScopeLabel {
                scope: kind,
                name: self.names.get(name),
            })
            .inc_by(recipients);
    }

    /// What is left of a scope's 24-hour quota, as this instance last saw it.
    pub fn set_remaining_24h(&self, kind: &'static str, name: &str, remaining: i64) {
        self.remaining_24h
            .get_or_create(&ScopeLabel {
                scope: kind,
                name: self.names.get(name),
            })
            .set(remaining);
    }

    pub fn count_store_error(&self, operation: &'static str, outcome: &'static str) {
        self.store_errors
            .get_or_create(&StoreErrorLabel { operation, outcome })
            .inc();
    }
}

/// Serves `GET /metrics` (OpenMetrics when the `Accept` header asks for it, else the classic
/// text format) and `GET /health` (and `GET /ready`, always ready) on `listener` until `shutdown` turns true; `before_scrape` refreshes
/// gauges.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    before_scrape: Arc<dyn Fn(&Metrics) + Send + Sync>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_ready(listener, metrics, before_scrape, None, shutdown).await;
}

/// What `GET /ready` asks: `Ok` when the instance can take traffic, else why not.
pub type Readiness = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// `serve`, with `GET /ready` answering `200 ready` when `ready` says so (always, without one)
/// and `503` with the reason otherwise: for a load balancer's health check. The endpoint exists
/// only while the listeners are up (it is served from start to drain).
pub async fn serve_with_ready(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    before_scrape: Arc<dyn Fn(&Metrics) + Send + Sync>,
    ready: Option<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(address) = listener.local_addr() {
        info!(address = %address, "metrics listening");
    }
    let mut backoff = AcceptBackoff::default();
    loop {
        let (mut stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = accept_with_backoff("metrics", &mut backoff, || listener.accept()) => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (metrics, before_scrape) = (Arc::clone(&metrics), Arc::clone(&before_scrape));
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            })
            .await;
            if read != Ok(true) {
                return;
            }
            let response = match route(&request) {
                Route::Metrics { openmetrics } => {
                    before_scrape(&metrics);
                    let body = metrics.render();
                    let (content_type, body) = if openmetrics {
                        (OPENMETRICS, body)
                    } else {
                        (CLASSIC, to_classic_text(&body))
                    };
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                Route::Ready => {
                    let verdict = match &ready {
                        Some(ready) => ready().await,
                        None => Ok(()),
                    };
                    let (status, body) = match verdict {
                        Ok(()) => ("200 OK", "ready\n".to_owned()),
                        // The reason is sesgate's own text (never a client's), one line.
                        Err(why) => ("503 Service Unavailable", format!("not ready: {}\n", why.replace(['\r', '\n'], " "))),
                    };
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                Route::Health => "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n".to_owned(),
                Route::NotFound => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            debug!(peer = %peer, "metrics scraped");
        });
    }
}

/// The OpenMetrics content type, served when the scraper asks for it (Prometheus does).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for every other client.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

enum Route {
    Metrics {
        openmetrics: bool,
    },
    /// Liveness: the process answers.
    Health,
    /// Readiness: listeners up, configuration loaded, quota store reachable.
    Ready,
    NotFound,
}

/// The endpoint a request asks for, and for `/metrics` whether its `Accept` names OpenMetrics.
fn route(request: &[u8]) -> Route {
    let text = String::from_utf8_lossy(request);
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => Route::Metrics {
            openmetrics: lines.any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("accept")
                        && value.contains("application/openmetrics-text")
                })
            }),
        },
        "/health" => Route::Health,
        "/ready" => Route::Ready,
        _ => Route::NotFound,
    }
}

/// The classic text format of an OpenMetrics exposition: a counter family is named with its
/// `_total` suffix (as its samples are), and `# UNIT` and `# EOF` lines go. Histograms and
/// gauges are written the same in both formats.
fn to_classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_as_their_samples() {
        let metrics = Metrics::default();
        metrics.count_transaction("allowed");
        let classic = to_classic_text(&metrics.render());
        assert!(
            classic.contains("# TYPE sesgate_transactions_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP sesgate_transactions_total "),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"));
        // Every sample belongs to a family declared by # TYPE (histograms by their suffixes).
        let families: Vec<&str> = classic
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for sample in classic.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
                .unwrap_or(name);
            assert!(
                families.contains(&family),
                "{sample} has no # TYPE in\n{classic}"
            );
        }
    }

    #[test]
    fn names_are_shared_and_series_render_as_before() {
        let names = Names::default();
        let first = names.get("demo");
        assert!(Arc::ptr_eq(&first, &names.get("demo")));
        assert!(!Arc::ptr_eq(&first, &names.get("other")));
        let metrics = Metrics::default();
        for _ in 0..2 {
            metrics.count_user_transaction("demo", "allowed");
            metrics.quota.count_recipients("account", "", 3);
            metrics.quota.count_recipients("user", "demo", 3);
        }
        let text = metrics.render();
        for expected in [
            "sesgate_user_transactions_total{user=\"demo\",decision=\"allowed\"} 2\n",
            "sesgate_quota_recipients_total{scope=\"account\",name=\"\"} 6\n",
            "sesgate_quota_recipients_total{scope=\"user\",name=\"demo\"} 6\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
    }

    #[test]
    fn routes() {
        assert!(matches!(
            route(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n"),
            Route::Metrics { openmetrics: true }
        ));
        assert!(matches!(
            route(b"GET /metrics?x HTTP/1.1\r\nAccept: text/plain\r\n\r\n"),
            Route::Metrics { openmetrics: false }
        ));
        assert!(matches!(
            route(b"GET /health HTTP/1.1\r\n\r\n"),
            Route::Health
        ));
        assert!(matches!(
            route(b"GET /ready HTTP/1.0\r\n\r\n"),
            Route::Ready
        ));
        assert!(matches!(
            route(b"GET /other HTTP/1.1\r\n\r\n"),
            Route::NotFound
        ));
    }
}
