//! Lifecycle: start (load, bind, serve), reload (swap the snapshot) and drain (stop accepting,
//! let transactions in flight finish).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::decision_log::DecisionLog;
use super::handler::{Gateway, SnapshotCredentials};
use super::load::{Effects, Snapshot, load};
use super::quota::QuotaGate;
use super::{Clock, StartError};
use crate::config::Config;
use crate::credentials::VerificationGate;
use crate::metrics::Metrics;
use crate::relay::MessageIds;
use crate::relay::spool::{Spool, Unlimited};
use crate::smtp::{Server, TlsSource};

/// A started gateway.
pub struct Running {
    /// The bound address of each listener, in configuration order.
    pub addresses: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// The accept loops (SMTP and metrics).
    listeners: JoinSet<()>,
    server: Server<Gateway, SnapshotCredentials>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub metrics_address: Option<SocketAddr>,
    /// The configuration started with, to tell which changes a reload cannot apply.
    started: Config,
    /// The quota store and pace, which outlive reloads.
    quotas: Arc<QuotaGate>,
    /// `[spool]`, when configured.
    spool: Option<Spool>,
}

/// The sections of `new` that differ from `old` and that only a restart applies. Compared by
/// their `Debug` text: these types hold addresses, durations and CIDRs, all printed in full,
/// and a spurious "differs" costs only a log line.
fn unapplied_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut changed = Vec::new();
    if differs(&old.listeners, &new.listeners) {
        changed.push("listener");
    }
    if differs(&old.limits, &new.limits) {
        changed.push("limits");
    }
    if differs(&old.upstream, &new.upstream) {
        changed.push("upstream");
    }
    if old.hostname != new.hostname {
        changed.push("hostname");
    }
    if old.metrics.listen != new.metrics.listen {
        changed.push("metrics");
    }
    // The limits themselves reload (they are the snapshot's); the store and its handling do not.
    let (o, n) = (&old.quotas, &new.quotas);
    if (
        &o.store,
        o.store_timeout_ms,
        o.on_store_error,
        o.max_rate_wait_ms,
    ) != (
        &n.store,
        n.store_timeout_ms,
        n.on_store_error,
        n.max_rate_wait_ms,
    ) || o.upstream_recovery_secs != n.upstream_recovery_secs
    {
        changed.push("quotas");
    }
    if differs(&old.spool, &new.spool) {
        changed.push("spool");
    }
    changed
}

impl Running {
    /// The metrics, as the `/metrics` endpoint would show them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Loads `config` (or takes the error reading it) and swaps in its users, policies,
    /// credentials and certificate with one store. On any error nothing changes and the error
    /// is returned. Listeners, limits and the upstream are read at start only: the sections
    /// that changed but were not applied are returned, for the log. Counted in the metrics.
    pub fn reload(
        &self,
        config: Result<Config, crate::config::ConfigError>,
    ) -> Result<Vec<&'static str>, StartError> {
        let loaded = config
            .map_err(StartError::from)
            .and_then(|config| Ok((load(&config, Effects::Create)?, config)));
        match loaded {
            Ok((loaded, config)) => {
                log_principals(&loaded.snapshot);
                seed_quotas(&self.quotas, &loaded.snapshot);
                self.snapshot.store(Arc::new(loaded.snapshot));
                let unapplied = unapplied_changes(&self.started, &config);
                self.metrics.count_reload(true, unapplied.len());
                Ok(unapplied)
            }
            Err(error) => {
                self.metrics.count_reload(false, 0);
                Err(error)
            }
        }
    }

    /// The spool's current figures (`None` without `[spool]`).
    pub fn spool_stats(&self) -> Option<crate::relay::spool::SpoolStats> {
        self.spool.as_ref().map(Spool::stats)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.server.open_connections()
    }

    /// Stops accepting, lets transactions in flight finish (idle sessions get `421` at once),
    /// and returns when every connection has closed or `grace` has passed.
    pub async fn stop_within(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        while self.listeners.join_next().await.is_some() {}
        if !self.server.drained_within(grace).await {
            warn!(
                connections = self.server.open_connections(),
                "grace period over; closing the remaining connections"
            );
        }
    }

    /// `stop_within` with a short grace, for tests.
    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(5)).await;
    }
}

/// Never silent: every report-only principal and every principal identified without AUTH is
/// named at start and on each reload.
fn log_principals(snapshot: &Snapshot) {
    let report_only = snapshot.authorizer.not_enforced();
    if !report_only.is_empty() {
        warn!(users = %report_only.join(","), "report-only (enforce = false): policy refusals of these users are logged and relayed anyway");
    }
    for (user, networks, certificates) in snapshot.authorizer.directory.principals_without_auth() {
        let networks: Vec<String> = networks.iter().map(ToString::to_string).collect();
        info!(user = %user, networks = %networks.join(","), certificates, "principal identified without AUTH");
    }
    if let Some(shadow) = &snapshot.shadow {
        info!(users = shadow.directory.len(), "shadow policy set loaded");
    }
}

/// Raises the account's 24-hour count to SES's `SentLast24Hours`, in the background.
fn seed_quotas(quotas: &Arc<QuotaGate>, snapshot: &Snapshot) {
    if snapshot.quotas.sent_last_24_hours.is_some() {
        let (quotas, plan) = (Arc::clone(quotas), snapshot.quotas.clone());
        tokio::spawn(async move { quotas.seed(&plan).await });
    }
}

/// The quota store and the gate in front of it.
fn quota_gate(config: &Config, metrics: &Arc<Metrics>) -> Result<Arc<QuotaGate>, StartError> {
    let quotas = &config.quotas;
    let store = crate::quota::QuotaStore::open(
        &quotas.store,
        &config.account.id,
        Duration::from_millis(quotas.store_timeout_ms),
    )
    .map_err(StartError::QuotaStore)?;
    info!(store = store.kind(), on_store_error = ?quotas.on_store_error, "quota store");
    Ok(Arc::new(QuotaGate {
        store: Arc::new(store),
        pace: crate::quota::AdaptivePace::new(
            Duration::from_secs(quotas.upstream_recovery_secs),
            quotas.max_send_rate,
        ),
        on_store_error: quotas.on_store_error,
        max_rate_wait: Duration::from_millis(quotas.max_rate_wait_ms),
        metrics: Arc::clone(metrics),
        per_user_metrics: config.metrics.per_user,
    }))
}

/// Loads everything the configuration names and starts listening.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_with_clock(config, Arc::new(jiff::Timestamp::now)).await
}

/// `start`, with the clock requests are stamped with.
pub async fn start_with_clock(config: &Config, clock: Clock) -> Result<Running, StartError> {
    let loaded = load(config, Effects::Create)?;
    let relay = loaded
        .relay
        .expect("Effects::Create always opens the relay");
    log_principals(&loaded.snapshot);
    let snapshot = Arc::new(ArcSwap::from_pointee(loaded.snapshot));
    let metrics = Arc::new(Metrics::default());
    metrics.set_certificate(loaded.certificate_pem.as_deref());
    let decisions = if config.log.decisions.as_os_str().is_empty() {
        None
    } else {
        let path = config.path(&config.log.decisions);
        Some(
            DecisionLog::open(&path, config.log.decisions_max_bytes, Arc::clone(&metrics))
                .map_err(|e| StartError::DecisionLog(format!("{}: {e}", path.display())))?,
        )
    };
    let quotas = quota_gate(config, &metrics)?;
    seed_quotas(&quotas, &snapshot.load());
    // The spool opens before the listeners: what a crash left is recovered and scheduled
    // before the first new message is accepted. Nothing here touches the upstream, so a
    // gateway with a spool starts (and accepts mail) while the upstream is unreachable.
    let spool = super::spooling::open(config, &metrics)?;
    let users = snapshot.load().authorizer.directory.len();
    let tls: TlsSource = {
        let snapshot = Arc::clone(&snapshot);
        Arc::new(move || snapshot.load().tls.clone())
    };
    let limits = &config.limits;
    let server = Server::new(
        config.hostname.clone(),
        limits.smtp.clone(),
        tls,
        Gateway {
            clock,
            hostname: config.hostname.clone(),
            snapshot: Arc::clone(&snapshot),
            relay: relay.clone(),
            spool: spool.clone(),
            ids: MessageIds::default(),
            metrics: Arc::clone(&metrics),
            decisions,
            log_recipients: config.log.recipients,
            per_user_metrics: config.metrics.per_user,
            quotas: Arc::clone(&quotas),
        },
        SnapshotCredentials {
            snapshot: Arc::clone(&snapshot),
            gate: VerificationGate::new(
                limits.max_auth_verifications,
                limits.max_auth_queue,
                limits.auth_queue_timeout,
            ),
            metrics: Arc::clone(&metrics),
        },
    );
    let mut bound = Vec::new();
    for listener in &config.listeners {
        let bind_error = |source| StartError::Bind {
            address: listener.address,
            source,
        };
        let socket = TcpListener::bind(listener.address)
            .await
            .map_err(bind_error)?;
        let address = socket.local_addr().map_err(bind_error)?;
        let mut settings = listener.settings();
        if !listener.client_ca.as_os_str().is_empty() {
            let (snapshot, ca) = (Arc::clone(&snapshot), listener.client_ca.clone());
            // Read from the current snapshot, so a reload reaches the CA and the certificate;
            // it always holds this CA (both come from one configuration).
            let source: TlsSource = Arc::new(move || {
                let current = snapshot.load();
                current
                    .client_tls
                    .get(&ca)
                    .cloned()
                    .unwrap_or_else(|| current.tls.clone())
            });
            settings.tls_source = Some(source);
        }
        bound.push((socket, address, settings));
    }
    let (shutdown, stop) = watch::channel(false);
    if let Some(spool) = &spool {
        // The pace is the quotas' seam: unlimited until the quota module is connected.
        spool.start(relay, Arc::new(Unlimited), stop.clone());
    }
    let mut listeners = JoinSet::new();
    let mut addresses = Vec::new();
    for (socket, address, settings) in bound {
        info!(address = %address, tls = ?settings.tls, plaintext_auth = settings.allow_plaintext_auth, auth = ?settings.auth, client_certificates = settings.tls_source.is_some(), "listening");
        let server = server.clone();
        let stop = stop.clone();
        listeners.spawn(async move { server.serve(socket, settings, stop).await });
        addresses.push(address);
    }
    let metrics_address = if config.metrics.listen.is_empty() {
        None
    } else {
        let address: SocketAddr = config
            .metrics
            .listen
            .parse()
            .map_err(|e| StartError::Metrics(format!("{:?}: {e}", config.metrics.listen)))?;
        let socket = TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        let bound = socket
            .local_addr()
            .map_err(|source| StartError::Bind { address, source })?;
        let connections = server.clone();
        let pace = Arc::clone(&quotas);
        let spooled = spool.clone();
        let refresh: Arc<dyn Fn(&Metrics) + Send + Sync> = Arc::new(move |m: &Metrics| {
            m.open_connections
                .set(connections.open_connections() as i64);
            pace.refresh_metrics();
            if let Some(spool) = &spooled {
                m.set_spool(&spool.stats());
            }
        });
        // Served once every listener is bound and the configuration loaded, until the drain:
        // what remains to ask is the quota store.
        let store = Arc::clone(&quotas);
        let ready: crate::metrics::Readiness = Arc::new(move || {
            let store = Arc::clone(&store);
            Box::pin(async move { store.ready().await })
        });
        listeners.spawn(crate::metrics::serve_with_ready(
            socket,
            Arc::clone(&metrics),
            refresh,
            Some(ready),
            stop.clone(),
        ));
        Some(bound)
    };
    info!(upstream = %config.upstream.url, users, "sesgate ready");
    Ok(Running {
        addresses,
        shutdown,
        listeners,
        server,
        snapshot,
        metrics,
        metrics_address,
        started: config.clone(),
        quotas,
        spool,
    })
}
