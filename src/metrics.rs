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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserDecisionLabel {
    pub user: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabel {
    pub user: String,
    pub direction: String,
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
    /// Transactions the shadow policy set decides otherwise, by user and direction.
    pub shadow_disagreements: Family<ShadowLabel, Counter>,
    /// Decision log lines dropped because the writer fell behind.
    pub decision_log_dropped: Counter,
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
        Metrics {
            registry,
            would_refuse,
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
    pub fn count_transaction(&self, decision: &str) {
        self.transactions
            .get_or_create(&DecisionLabel {
                decision: decision.to_owned(),
            })
            .inc();
    }

    pub fn count_auth(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.auth
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
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
        self.auth
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
        if ran_argon2 {
            self.auth_verifications.inc();
        }
    }

    pub fn count_upstream(&self, result: &str, seconds: f64) {
        self.upstream
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
        self.upstream_latency.observe(seconds);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true; `before_scrape` refreshes
/// gauges.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    before_scrape: Arc<dyn Fn(&Metrics) + Send + Sync>,
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
            let response = if request.starts_with(b"GET /metrics ")
                || request.starts_with(b"GET /metrics?")
            {
                before_scrape(&metrics);
                let body = metrics.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            debug!(peer = %peer, "metrics scraped");
        });
    }
}
