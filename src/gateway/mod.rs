//! The gateway: configuration in, listeners running. It joins the SMTP front end (`smtp`),
//! the credentials and the relay, and is the only place where they meet.
//!
//! This build delivers every authenticated transaction to the file outbox; evaluating the
//! user's IAM policies on each transaction (SPEC §2–4) is the next issue, and until then
//! `serve` accepts no upstream other than `file://`, so nothing leaves the machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::iam::IamFile;
use crate::config::{Config, ConfigError};
use crate::credentials::{CredentialError, CredentialStore};
use crate::relay::Outbox;
use crate::relay::outbox::StoredEnvelope;
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
    #[error("upstream.url {0:?}: this build relays only to a file outbox (file://DIR)")]
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

/// Stores each transaction in the outbox and answers with its id.
struct Gateway {
    outbox: Arc<Outbox>,
}

impl Handler for Gateway {
    async fn deliver(&self, transaction: Transaction) -> Reply {
        let started = Instant::now();
        let outbox = Arc::clone(&self.outbox);
        let id = outbox.next_id();
        let stored_id = id.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let received_at = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let envelope = StoredEnvelope {
                id: &stored_id,
                session: &transaction.session_id,
                user: &transaction.user,
                client: transaction.client.to_string(),
                tls: transaction.tls,
                mail_from: &transaction.envelope.mail_from,
                recipients: &transaction.envelope.recipients,
                received_at,
            };
            outbox
                .store(&envelope, &transaction.message)
                .map(|()| transaction)
        })
        .await;
        match stored {
            Ok(Ok(transaction)) => {
                info!(
                    session = %transaction.session_id,
                    client = %transaction.client,
                    tls = transaction.tls,
                    user = %transaction.user,
                    mail_from = %transaction.envelope.mail_from,
                    recipients = transaction.envelope.recipients.len(),
                    size = transaction.message.len(),
                    decision = "stored",
                    outbox_id = %id,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "transaction"
                );
                Reply::new(250, format!("2.0.0 Ok {id}"))
            }
            Ok(Err(e)) => {
                warn!(outbox_id = %id, error = %e, "outbox write failed");
                reply::temporary_failure()
            }
            Err(e) => {
                warn!(outbox_id = %id, error = %e, "outbox task failed");
                reply::temporary_failure()
            }
        }
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
    let outbox_dir = match config.upstream.url.strip_prefix("file://") {
        Some(dir) => config.path(dir.as_ref()),
        None => return Err(StartError::Upstream(config.upstream.url.clone())),
    };
    let outbox = Outbox::open(&outbox_dir).map_err(|source| StartError::Outbox {
        dir: outbox_dir.clone(),
        source,
    })?;
    let iam_file = config.path(&config.iam.dir).join("iam.toml");
    let iam = IamFile::load(&iam_file)?;
    let store = CredentialStore::new(iam.logins()).map_err(|source| StartError::Credentials {
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
    let server = Server::new(
        config.hostname.clone(),
        config.limits.to_smtp(),
        tls,
        Gateway {
            outbox: Arc::new(outbox),
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
    info!(outbox = %outbox_dir.display(), users = iam.users.len(), "sesgate ready (file outbox; IAM enforcement is not in this build)");
    Ok(Running {
        addresses,
        shutdown,
        tasks,
    })
}
