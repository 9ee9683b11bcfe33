//! The gateway: the only place where SMTP and IAM meet. Every authenticated transaction becomes
//! one `ses:SendRawEmail` request (`request.rs`), is decided by the user's policies
//! (`decide.rs`, `directory.rs`, `iam`), and only when allowed is relayed (`handler.rs`); the
//! client hears 250 only after the relay accepted the message (SPEC §7). Users, policies,
//! credentials and the certificate are one snapshot (`load.rs`), swapped whole on reload
//! (`lifecycle.rs`). Every SES reply text is in `replies.rs`.

mod address;
mod decide;
pub mod decision_log;
mod directory;
mod handler;
pub mod headers;
pub mod identities;
mod lifecycle;
mod load;
mod quota;
pub mod replies;
pub mod request;
pub mod shadow;
mod spooling;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use decide::{Authorizer, Input, Ruling};
pub use lifecycle::{Running, start, start_with_clock};
pub use load::{Certificate, Effects, Loaded, load, load_authorizer};

use crate::config::ConfigError;
use crate::credentials::CredentialError;
use crate::smtp;

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
    #[error("[log] decisions {0}")]
    DecisionLog(String),
    #[error("[quotas] store {0}")]
    QuotaStore(String),
    #[error("[spool] {0}")]
    Spool(String),
}

/// Where the gateway reads the time of a request (`aws:CurrentTime`); tests set it.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;
