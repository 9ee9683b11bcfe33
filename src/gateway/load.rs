//! Loading: everything `serve` reads from files, checked as one before anything runs. The
//! reloadable part is one [`Snapshot`]; the relay and listeners are read at start only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::StartError;
use super::decide::Authorizer;
use super::directory::Directory;
use super::request::{self, Account};
use crate::config::Config;
use crate::config::iam::IamFile;
use crate::credentials::{CredentialError, CredentialStore};
use crate::relay::upstream::UpstreamTls;
use crate::relay::{Outbox, Relay, SmtpUpstream, UpstreamOptions, UpstreamUrl};
use crate::smtp::tls::{self, CertificateSource};

/// Everything reloadable (users and policies, account, credentials, certificate), loaded and
/// checked as one and swapped as one. Each use loads the snapshot current at that moment: an
/// AUTH check its credentials, a TLS handshake its acceptor, a transaction's decision its
/// authorizer, which it keeps to the end even if a reload swaps the snapshot meanwhile.
pub(super) struct Snapshot {
    pub authorizer: Authorizer,
    pub credentials: CredentialStore,
    pub tls: TlsAcceptor,
    /// Acceptors that request client certificates, by listener `client_ca` path.
    pub client_tls: std::collections::HashMap<PathBuf, TlsAcceptor>,
    /// `[iam] shadow_dir`'s users and policies, decided beside the live ones; never deciding.
    pub shadow: Option<Authorizer>,
}

/// The account as the decision needs it: identities in canonical form.
fn account_of(config: &Config) -> Account {
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

/// Users and policies from `[iam] dir`, with the parsed `iam.toml` and its path (for `check`
/// and `simulate`, which read logins from it).
pub fn load_authorizer(config: &Config) -> Result<(Authorizer, IamFile, PathBuf), StartError> {
    let iam_dir = config.path(&config.iam.dir);
    let iam_file = iam_dir.join("iam.toml");
    let iam = IamFile::load(&iam_file)?;
    let directory = Directory::load(&iam, &iam_file, &iam_dir, &config.account.id)?;
    Ok((
        Authorizer {
            account: account_of(config),
            directory,
            header_limits: config.limits.headers,
            enforce: config.iam.enforce,
        },
        iam,
        iam_file,
    ))
}

pub(super) fn load_snapshot(config: &Config) -> Result<Snapshot, StartError> {
    let (authorizer, iam, iam_file) = load_authorizer(config)?;
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
    let (server_config, source) = tls::load_or_generate(&cert, &key, &names)?;
    if source == CertificateSource::Generated {
        info!(certificate = %cert.display(), key = %key.display(), "generated a self-signed TLS certificate");
    }
    let mut client_tls = std::collections::HashMap::new();
    for listener in &config.listeners {
        if !listener.client_ca.as_os_str().is_empty() {
            let ca = config.path(&listener.client_ca);
            let server_config = tls::load_with_client_ca(&cert, &key, &ca)?;
            client_tls.insert(
                listener.client_ca.clone(),
                TlsAcceptor::from(Arc::new(server_config)),
            );
        }
    }
    let shadow = super::shadow::load_shadow(config)?;
    Ok(Snapshot {
        authorizer,
        credentials,
        tls: TlsAcceptor::from(server_config),
        client_tls,
        shadow,
    })
}

/// The relay `[upstream] url` names: the file outbox or an SMTP upstream.
pub(super) fn load_relay(config: &Config) -> Result<Relay, StartError> {
    Ok(match config.upstream.url.strip_prefix("file://") {
        Some(dir) => {
            let dir = config.path(dir.as_ref());
            let outbox = Outbox::open(&dir).map_err(|source| StartError::Outbox { dir, source })?;
            Relay::Outbox(Arc::new(outbox))
        }
        None => Relay::Smtp(smtp_upstream(config)?),
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
    if url.tls == UpstreamTls::None {
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
