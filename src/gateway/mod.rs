//! The gateway: the only place where SMTP and IAM meet. Every authenticated transaction becomes
//! one `ses:SendRawEmail` request (`request.rs`), is decided by the user's policies
//! (`directory.rs`, `iam`), and only when allowed is relayed; the client hears 250 only after the
//! relay accepted the message (SPEC §7).

mod directory;
pub mod request;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use directory::{Directory, UserEntry};
use request::{Account, Connection, Refusal};

use crate::config::iam::IamFile;
use crate::config::{Config, ConfigError};
use crate::credentials::{CredentialError, CredentialStore};
use crate::iam::{Decision, Outcome, SEND_RAW_EMAIL};
use crate::relay::{
    Delivery, MessageIds, Outbox, Relay, RelayError, SmtpUpstream, UpstreamOptions, UpstreamUrl,
};
use crate::smtp::{self, Handler, Reply, Server, Transaction, reply};

/// Why the gateway could not start.
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
}

/// Where the gateway reads the time of a request (`aws:CurrentTime`); tests set it.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// Decides and relays each transaction.
struct Gateway {
    clock: Clock,
    hostname: String,
    account: Account,
    directory: Directory,
    relay: Relay,
    ids: MessageIds,
}

/// The outcome of one transaction, for its log line.
enum Verdict {
    Refused(&'static str, String),
    Decided(Decision, Option<String>),
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

    async fn decide_and_relay(
        &self,
        transaction: &Transaction,
    ) -> (Reply, Verdict, Option<String>) {
        let Some(user) = self.directory.user(&transaction.user) else {
            // Credentials and users come from one file; a gap means a broken reload. Fail closed.
            return (
                reply::temporary_failure(),
                Verdict::Refused("no-iam-user", format!("no IAM user {:?}", transaction.user)),
                None,
            );
        };
        let connection = Connection {
            tls: transaction.tls,
            client: transaction.client,
            mail_from: &transaction.envelope.mail_from,
            recipients: &transaction.envelope.recipients,
        };
        let request = match request::build(
            &transaction.message,
            connection,
            &user.principal,
            &self.account,
            (self.clock)(),
        ) {
            Ok(request) => request,
            Err(Refusal::Ambiguous(why)) => {
                return (
                    Reply::new(554, format!("5.6.0 Transaction failed: {why}")),
                    Verdict::Refused("ambiguous", why),
                    None,
                );
            }
            Err(Refusal::Unverified(addresses)) => {
                let text = format!(
                    "5.7.1 Message rejected: Email address is not verified. The following identities failed the check in region {}: {}",
                    self.account.region.to_uppercase(),
                    addresses.join(", ")
                );
                return (
                    Reply::new(554, text),
                    Verdict::Refused("unverified", addresses.join(", ")),
                    None,
                );
            }
        };
        let authorization =
            user.policies
                .authorize(SEND_RAW_EMAIL, &request.resources, &request.context);
        let from = Some(request.from.clone());
        if let Some((resource, decision)) = authorization.first_denied() {
            let text = format!(
                "5.7.1 Access denied: User `{}' is not authorized to perform `{SEND_RAW_EMAIL}' on resource `{resource}'",
                user.principal.arn
            );
            return (
                Reply::new(554, text),
                Verdict::Decided(decision.clone(), None),
                from,
            );
        }
        let decision = authorization
            .resources
            .into_iter()
            .next()
            .map(|(_, d)| d)
            .expect("at least one resource");
        let id = self.ids.next_id();
        let mut message = self.received_header(transaction).into_bytes();
        message.extend_from_slice(&transaction.message);
        let delivery = Delivery {
            id: &id,
            session: &transaction.session_id,
            user: &transaction.user,
            client: transaction.client.to_string(),
            tls: transaction.tls,
            mail_from: &transaction.envelope.mail_from,
            recipients: &transaction.envelope.recipients,
            message,
        };
        let (reply, upstream) = match self.relay.send(delivery).await {
            Ok(id) => (
                Reply::new(250, format!("2.0.0 Ok {id}")),
                format!("250 {id}"),
            ),
            Err(RelayError::Deferred(why)) => (
                Reply::new(451, format!("4.4.1 {why}")),
                format!("451 {why}"),
            ),
            Err(RelayError::Rejected { code, text }) => {
                (Reply::new(code, text.clone()), format!("{code} {text}"))
            }
            Err(RelayError::Refused(text)) => {
                (Reply::new(554, text.clone()), format!("554 {text}"))
            }
        };
        (reply, Verdict::Decided(decision, Some(upstream)), from)
    }
}

impl Handler for Gateway {
    async fn deliver(&self, transaction: Transaction) -> Reply {
        let started = Instant::now();
        let (reply, verdict, from) = self.decide_and_relay(&transaction).await;
        let (decision, reason, upstream) = match &verdict {
            Verdict::Refused(kind, why) => (*kind, why.clone(), String::new()),
            Verdict::Decided(decision, upstream) => (
                match decision.outcome {
                    Outcome::Allowed => "allowed",
                    Outcome::ExplicitDeny => "explicit-deny",
                    Outcome::ImplicitDeny => "implicit-deny",
                },
                decision.reason(),
                upstream.clone().unwrap_or_default(),
            ),
        };
        info!(
            session = %transaction.session_id,
            client = %transaction.client,
            tls = transaction.tls,
            user = %transaction.user,
            mail_from = %transaction.envelope.mail_from,
            from = %from.unwrap_or_default(),
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
}

impl Running {
    /// Stops accepting and waits for the listeners to end.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Loads everything the configuration names and starts listening.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_with_clock(config, Arc::new(jiff::Timestamp::now)).await
}

/// `start`, with the clock requests are stamped with.
pub async fn start_with_clock(config: &Config, clock: Clock) -> Result<Running, StartError> {
    let iam_dir = config.path(&config.iam.dir);
    let iam_file = iam_dir.join("iam.toml");
    let iam = IamFile::load(&iam_file)?;
    let directory = Directory::load(&iam, &iam_file, &iam_dir, &config.account.id)?;
    let store = CredentialStore::new(iam.logins()).map_err(|source| StartError::Credentials {
        file: iam_file.clone(),
        source,
    })?;
    let relay = match config.upstream.url.strip_prefix("file://") {
        Some(dir) => {
            let dir = config.path(dir.as_ref());
            let outbox = Outbox::open(&dir).map_err(|source| StartError::Outbox { dir, source })?;
            Relay::Outbox(Arc::new(outbox))
        }
        None => Relay::Smtp(smtp_upstream(config)?),
    };
    let (cert, key) = (
        config.path(&config.tls.certificate),
        config.path(&config.tls.private_key),
    );
    let names = vec![config.hostname.clone(), "localhost".to_owned()];
    let (tls, source) = smtp::tls::load_or_generate(&cert, &key, &names)?;
    if source == smtp::tls::CertificateSource::Generated {
        info!(certificate = %cert.display(), key = %key.display(), "generated a self-signed TLS certificate");
    }
    let account = Account {
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
    };
    let server = Server::new(
        config.hostname.clone(),
        config.limits.to_smtp(),
        tls,
        Gateway {
            clock,
            hostname: config.hostname.clone(),
            account,
            directory,
            relay,
            ids: MessageIds::default(),
        },
        Arc::new(store),
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
    info!(upstream = %config.upstream.url, users = iam.users.len(), "sesgate ready");
    Ok(Running {
        addresses,
        shutdown,
        tasks,
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
