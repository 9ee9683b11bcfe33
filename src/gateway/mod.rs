//! The gateway: the only place where SMTP and IAM meet. Every authenticated transaction becomes
//! one `ses:SendRawEmail` request (`request.rs`), is decided by the user's policies
//! (`decide.rs`, `directory.rs`, `iam`), and only when allowed is relayed; the client hears 250
//! only after the relay accepted the message (SPEC §7). Users, policies, credentials and the
//! certificate are one snapshot, swapped whole on reload.

mod address;
pub mod decide;
mod directory;
pub mod headers;
pub mod request;
pub mod simulate;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use decide::{Input, Policies, Ruling};
pub use directory::{Directory, UserEntry};
use request::Account;

use crate::config::iam::IamFile;
use crate::config::{Config, ConfigError};
use crate::credentials::{CredentialError, CredentialStore, Verification, VerificationGate};
use crate::iam::Outcome;
use crate::metrics::Metrics;
use crate::relay::{
    Delivery, MessageIds, Outbox, Relay, RelayError, SmtpUpstream, UpstreamOptions, UpstreamUrl,
};
use crate::smtp::{
    self, AuthOutcome, Authenticator, Credentials, Handler, Reply, Server, Transaction,
};

/// Why the gateway could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: {source}")]
    Credentials {
        file: PathBuf,
        source: CredentialError,
    },
    #[error(transparent)]
    Tls(#[from] smtp::tls::TlsError),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("outbox {dir}: {source}")]
    Outbox {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("listener {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("[metrics] listen {0}")]
    Metrics(String),
}

/// Where the gateway reads the time of a request (`aws:CurrentTime`); tests set it.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The account as the decision needs it: identities in canonical form.
pub fn account_of(config: &Config) -> Account {
    Account {
        id: config.account.id.clone(),
        region: config.account.region.clone(),
        identities: config
            .account
            .identities
            .iter()
            .map(|i| request::canonical_identity(i))
            .collect(),
        default_configuration_sets: config
            .account
            .default_configuration_sets
            .iter()
            .map(|(identity, set)| (request::canonical_identity(identity), set.clone()))
            .collect(),
        sandbox: config.account.sandbox,
    }
}

/// Users and policies from `[iam] dir`.
pub fn load_policies(config: &Config) -> Result<(Policies, IamFile, PathBuf), StartError> {
    let iam_dir = config.path(&config.iam.dir);
    let iam_file = iam_dir.join("iam.toml");
    let iam = IamFile::load(&iam_file)?;
    let directory = Directory::load(&iam, &iam_file, &iam_dir, &config.account.id)?;
    Ok((
        Policies {
            account: account_of(config),
            directory,
            header_limits: config.limits.headers(),
        },
        iam,
        iam_file,
    ))
}

/// Everything reloadable, loaded and checked as one.
struct Snapshot {
    policies: Policies,
    credentials: CredentialStore,
    tls: Arc<rustls::ServerConfig>,
}

fn load_snapshot(config: &Config) -> Result<Snapshot, StartError> {
    let (policies, iam, iam_file) = load_policies(config)?;
    let logins = iam.logins();
    if !config.allow_demo_password
        && let Some(user) = crate::credentials::demo_password_users(&logins)
            .into_iter()
            .next()
    {
        return Err(StartError::Credentials {
            file: iam_file,
            source: CredentialError::DemoPassword(user),
        });
    }
    let credentials = CredentialStore::new(logins).map_err(|source| StartError::Credentials {
        file: iam_file.clone(),
        source,
    })?;
    let (cert, key) = (
        config.path(&config.tls.certificate),
        config.path(&config.tls.private_key),
    );
    let names = vec![config.hostname.clone(), "localhost".to_owned()];
    let (tls, source) = smtp::tls::load_or_generate(&cert, &key, &names)?;
    if source == smtp::tls::CertificateSource::Generated {
        info!(certificate = %cert.display(), key = %key.display(), "generated a self-signed TLS certificate");
    }
    Ok(Snapshot {
        policies,
        credentials,
        tls,
    })
}

/// The credential store of the current snapshot.
#[derive(Clone)]
struct CurrentCredentials {
    store: Arc<ArcSwap<CredentialStore>>,
    /// Outlives reloads: the bound on argon2 work is the process's, not the snapshot's.
    gate: VerificationGate,
    metrics: Arc<Metrics>,
}

impl Authenticator for CurrentCredentials {
    async fn authenticate(&self, credentials: Credentials) -> AuthOutcome {
        let store = self.store.load_full();
        let verification = store
            .check(&credentials.username, &credentials.password, &self.gate)
            .await;
        self.metrics.count_verification(&verification);
        match verification {
            Verification::Valid { iam_user, .. } => AuthOutcome::Authenticated(iam_user),
            Verification::Invalid => AuthOutcome::Invalid,
            Verification::Busy => AuthOutcome::Unavailable,
        }
    }
}

/// Decides and relays each transaction.
struct Gateway {
    clock: Clock,
    hostname: String,
    policies: Arc<ArcSwap<Policies>>,
    relay: Relay,
    ids: MessageIds,
    metrics: Arc<Metrics>,
}

impl Gateway {
    /// The `Received:` trace header this hop adds (RFC 5321 §4.4).
    fn received_header(&self, transaction: &Transaction) -> String {
        let protocol = if transaction.tls { "ESMTPSA" } else { "ESMTPA" };
        let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S +0000");
        let mut header = format!(
            "Received: from {} ([{}])\r\n\tby {} (sesgate) with {protocol} id {}",
            transaction.ehlo, transaction.client, self.hostname, transaction.session_id
        );
        if let [only] = transaction.envelope.recipients.as_slice() {
            let _ = write!(header, "\r\n\tfor <{only}>");
        }
        let _ = write!(header, ";\r\n\t{date}\r\n");
        header
    }

    async fn relay(&self, transaction: &Transaction) -> (Reply, String) {
        let id = self.ids.next_id();
        let mut message = self.received_header(transaction).into_bytes();
        message.extend_from_slice(&transaction.message);
        let delivery = Delivery {
            id,
            session: transaction.session_id.clone(),
            user: transaction.user.clone(),
            client: transaction.client.to_string(),
            tls: transaction.tls,
            mail_from: transaction.envelope.mail_from.clone(),
            recipients: transaction.envelope.recipients.clone(),
            message,
        };
        let started = Instant::now();
        let sent = self.relay.send(delivery).await;
        let result = match &sent {
            Ok(_) => "ok",
            Err(RelayError::Deferred(_)) => "deferred",
            Err(RelayError::Rejected { .. } | RelayError::Refused(_)) => "rejected",
        };
        self.metrics
            .count_upstream(result, started.elapsed().as_secs_f64());
        match sent {
            Ok(id) => (
                Reply::new(250, format!("2.0.0 Ok {id}")),
                format!("250 {id}"),
            ),
            // The cause (e.g. `Connection refused (os error 111)`) is for the log only.
            Err(RelayError::Deferred(why)) => (
                Reply::new(451, crate::relay::TEMPORARY_FAILURE),
                format!("451 {why}"),
            ),
            // The upstream's own refusal passes on, as one bounded printable line.
            Err(RelayError::Rejected { code, text }) => {
                let text = crate::relay::reply_text(&text);
                (Reply::new(code, text.clone()), format!("{code} {text}"))
            }
            Err(RelayError::Refused(text)) => {
                let text = crate::relay::reply_text(&text);
                (Reply::new(554, text.clone()), format!("554 {text}"))
            }
        }
    }
}

impl Handler for Gateway {
    async fn deliver(&self, transaction: Transaction) -> Reply {
        let started = Instant::now();
        // This transaction is decided on the snapshot current at its end of DATA, even if a
        // reload swaps it meanwhile.
        let policies = self.policies.load_full();
        let input = Input {
            user: &transaction.user,
            tls: transaction.tls,
            client: transaction.client,
            mail_from: &transaction.envelope.mail_from,
            recipients: &transaction.envelope.recipients,
            message: &transaction.message,
        };
        let deciding = Instant::now();
        let ruling = policies.decide(input, (self.clock)());
        self.metrics
            .decision_latency
            .observe(deciding.elapsed().as_secs_f64());
        let (reply, decision, reason, from, upstream) = match ruling {
            Ruling::Refused { kind, why, reply } => {
                (reply, kind, why, String::new(), String::new())
            }
            Ruling::Denied {
                request,
                decision,
                reply,
                ..
            } => {
                let kind = if decision.outcome == Outcome::ExplicitDeny {
                    "explicit-deny"
                } else {
                    "implicit-deny"
                };
                (reply, kind, decision.reason(), request.from, String::new())
            }
            Ruling::Allowed { request, decision } => {
                let (reply, upstream) = self.relay(&transaction).await;
                (reply, "allowed", decision.reason(), request.from, upstream)
            }
        };
        self.metrics.count_transaction(decision);
        info!(
            session = %transaction.session_id,
            client = %transaction.client,
            tls = transaction.tls,
            user = %transaction.user,
            mail_from = %transaction.envelope.mail_from,
            from = %from,
            recipients = transaction.envelope.recipients.len(),
            size = transaction.message.len(),
            decision,
            reason = %reason,
            upstream = %upstream,
            reply = %reply,
            duration_ms = started.elapsed().as_millis() as u64,
            "transaction"
        );
        reply
    }
}

/// A started gateway.
pub struct Running {
    /// The bound address of each listener, in configuration order.
    pub addresses: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    server: Server<Gateway, CurrentCredentials>,
    policies: Arc<ArcSwap<Policies>>,
    credentials: Arc<ArcSwap<CredentialStore>>,
    metrics: Arc<Metrics>,
    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub metrics_address: Option<SocketAddr>,
}

impl Running {
    /// The metrics, as the `/metrics` endpoint would show them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    /// Loads the configuration's users, policies, credentials and certificate again and swaps
    /// them in at once. On any error nothing changes and the error is returned. Listeners,
    /// limits and the upstream are read at start only.
    pub fn reload(&self, config: &Config) -> Result<(), StartError> {
        let snapshot = load_snapshot(config)?;
        self.policies.store(Arc::new(snapshot.policies));
        self.credentials.store(Arc::new(snapshot.credentials));
        self.server.set_tls(snapshot.tls);
        Ok(())
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.server.open_connections()
    }

    /// Stops accepting, lets transactions in flight finish (idle sessions get `421` at once),
    /// and returns when every connection has closed or `grace` has passed.
    pub async fn stop_within(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let deadline = tokio::time::Instant::now() + grace;
        while self.server.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.server.open_connections();
        if left > 0 {
            warn!(
                connections = left,
                "grace period over; closing the remaining connections"
            );
        }
    }

    /// `stop_within` with a short grace, for tests.
    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(5)).await;
    }
}

/// Loads everything the configuration names and starts listening.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_with_clock(config, Arc::new(jiff::Timestamp::now)).await
}

/// `start`, with the clock requests are stamped with.
pub async fn start_with_clock(config: &Config, clock: Clock) -> Result<Running, StartError> {
    let snapshot = load_snapshot(config)?;
    let relay = match config.upstream.url.strip_prefix("file://") {
        Some(dir) => {
            let dir = config.path(dir.as_ref());
            let outbox = Outbox::open(&dir).map_err(|source| StartError::Outbox { dir, source })?;
            Relay::Outbox(Arc::new(outbox))
        }
        None => Relay::Smtp(smtp_upstream(config)?),
    };
    let policies = Arc::new(ArcSwap::from_pointee(snapshot.policies));
    let metrics = Arc::new(Metrics::default());
    let credentials = Arc::new(ArcSwap::from_pointee(snapshot.credentials));
    let users = policies.load().directory.len();
    let server = Server::new(
        config.hostname.clone(),
        config.limits.to_smtp(),
        snapshot.tls,
        Gateway {
            clock,
            hostname: config.hostname.clone(),
            policies: Arc::clone(&policies),
            relay,
            ids: MessageIds::default(),
            metrics: Arc::clone(&metrics),
        },
        CurrentCredentials {
            store: Arc::clone(&credentials),
            gate: VerificationGate::new(
                config.limits.max_auth_verifications,
                config.limits.max_auth_queue,
                Duration::from_millis(config.limits.auth_queue_timeout_ms),
            ),
            metrics: Arc::clone(&metrics),
        },
    );
    let mut bound = Vec::new();
    for listener in &config.listeners {
        let socket = TcpListener::bind(listener.address)
            .await
            .map_err(|source| StartError::Bind {
                address: listener.address,
                source,
            })?;
        let address = socket.local_addr().map_err(|source| StartError::Bind {
            address: listener.address,
            source,
        })?;
        bound.push((socket, address, listener.settings()));
    }
    let (shutdown, stop) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut addresses = Vec::new();
    for (socket, address, settings) in bound {
        info!(address = %address, tls = ?settings.tls, plaintext_auth = settings.allow_plaintext_auth, "listening");
        let server = server.clone();
        let stop = stop.clone();
        tasks.spawn(async move { server.serve(socket, settings, stop).await });
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
        let refresh: Arc<dyn Fn(&Metrics) + Send + Sync> = Arc::new(move |m: &Metrics| {
            m.open_connections
                .set(connections.open_connections() as i64);
        });
        tasks.spawn(crate::metrics::serve(
            socket,
            Arc::clone(&metrics),
            refresh,
            stop.clone(),
        ));
        Some(bound)
    };
    info!(upstream = %config.upstream.url, users, "sesgate ready");
    Ok(Running {
        addresses,
        shutdown,
        tasks,
        server,
        policies,
        credentials,
        metrics,
        metrics_address,
    })
}

/// The SMTP upstream from `[upstream]`, with its password from the environment or a file.
fn smtp_upstream(config: &Config) -> Result<SmtpUpstream, StartError> {
    let upstream = &config.upstream;
    let url = UpstreamUrl::parse(&upstream.url)
        .map_err(|e| StartError::Upstream(format!("url {:?}: {e}", upstream.url)))?;
    let password = if !upstream.password_env.is_empty() {
        Some(std::env::var(&upstream.password_env).map_err(|_| {
            StartError::Upstream(format!(
                "password_env: environment variable {} is not set",
                upstream.password_env
            ))
        })?)
    } else if !upstream.password_file.as_os_str().is_empty() {
        let file = config.path(&upstream.password_file);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| StartError::Upstream(format!("password_file {}: {e}", file.display())))?;
        Some(text.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    let credentials = match (upstream.username.is_empty(), password) {
        (true, None) => None,
        (false, Some(password)) => Some((upstream.username.clone(), password)),
        (false, None) => {
            return Err(StartError::Upstream(
                "username is set but neither password_env nor password_file".into(),
            ));
        }
        (true, Some(_)) => {
            return Err(StartError::Upstream(
                "a password is configured but no username".into(),
            ));
        }
    };
    let extra_root_pem =
        if upstream.ca_certificate.as_os_str().is_empty() {
            None
        } else {
            let file = config.path(&upstream.ca_certificate);
            Some(std::fs::read(&file).map_err(|e| {
                StartError::Upstream(format!("ca_certificate {}: {e}", file.display()))
            })?)
        };
    if url.tls == crate::relay::upstream::UpstreamTls::None {
        warn!(url = %upstream.url, "the upstream connection is not encrypted; use it only for a relay on this host");
    }
    SmtpUpstream::new(
        &url,
        UpstreamOptions {
            credentials,
            extra_root_pem,
            pool_size: upstream.pool_size as u32,
            timeout: Duration::from_secs(upstream.timeout_secs),
            hello_name: config.hostname.clone(),
        },
    )
    .map_err(StartError::Upstream)
}
