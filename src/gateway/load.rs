//! Loading: everything `serve` reads from files, checked as one before anything runs. The
//! reloadable part is one [`Snapshot`]; the relay and listeners are read at start only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tracing::info;

use super::StartError;
use super::decide::Authorizer;
use super::directory::Directory;
use super::identities::{Identities, IdentityPolicyFile};
use super::request::{self, Account};
use crate::config::iam::IamFile;
use crate::config::{Config, ConfigError, embedded};
use crate::credentials::{CredentialError, CredentialStore};
use crate::iam::Policy;
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
    /// Which sending quotas hold for whom (`[quotas]`, `iam.toml`, `from_upstream`).
    pub quotas: super::quota::QuotaPlan,
}

/// The account as the decision needs it: identities in canonical form, `[[identity]]`s of this
/// account joining `[account] identities`, those of other accounts by owner.
fn account_of(config: &Config, identities: &Identities) -> Account {
    let mut own: Vec<String> = config
        .account
        .identities
        .iter()
        .map(|i| request::canonical_identity(i))
        .collect();
    for identity in &identities.own {
        if !own.contains(identity) {
            own.push(identity.clone());
        }
    }
    Account {
        others: identities.others.clone(),
        id: config.account.id.clone(),
        region: config.account.region.clone(),
        identities: own,
        default_configuration_sets: config
            .account
            .default_configuration_sets
            .iter()
            .map(|(identity, set)| (request::canonical_identity(identity), set.clone()))
            .collect(),
        sandbox: config.account.sandbox,
    }
}

/// Whether loading may create what is missing. `serve` (and a reload) generates the self-signed
/// certificate and creates the outbox; `check` runs the same loading but only looks: it builds
/// the certificate it would generate in memory and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effects {
    Create,
    ReadOnly,
}

/// Where the TLS certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certificate {
    /// The configured files.
    Files,
    /// Generated self-signed into the configured paths now (`Effects::Create`).
    Generated,
    /// The files are absent, so `serve` would generate a self-signed pair (`Effects::ReadOnly`).
    WouldGenerate,
}

/// Everything `serve` loads, loaded by the one path `serve`, SIGHUP and `check` share, so that
/// `check` passes exactly when `serve` would start.
pub struct Loaded {
    pub(super) snapshot: Snapshot,
    /// `None` only for a file outbox under `Effects::ReadOnly` (checked, not created).
    pub(super) relay: Option<Relay>,
    pub iam: IamFile,
    pub iam_file: PathBuf,
    /// Every policy file of `[iam] dir` (or embedded), attached or not, parsed.
    pub policy_files: Vec<(PathBuf, Policy)>,
    /// Every sending authorization policy file of `[iam] dir`/identities, attached or not.
    pub identity_policy_files: Vec<IdentityPolicyFile>,
    pub certificate: Certificate,
    /// The certificate's PEM text (for `check`'s expiry and name warnings).
    pub certificate_pem: Option<String>,
}

impl Loaded {
    /// The users and policies that would decide.
    pub fn authorizer(&self) -> &Authorizer {
        &self.snapshot.authorizer
    }
}

/// `iam.toml` and every policy beside it, read from `[iam] dir` or the embedded default.
struct IamSource {
    iam: IamFile,
    iam_file: PathBuf,
    dir: PathBuf,
    policies: Vec<(PathBuf, Policy)>,
    /// `dir/identities/*.json`, the identities' sending authorization policies.
    identity_policies: Vec<IdentityPolicyFile>,
}

fn read_iam(config: &Config) -> Result<IamSource, ConfigError> {
    if config.iam.embedded {
        let dir = PathBuf::from("(embedded)");
        let iam_file = dir.join("iam.toml");
        let iam = IamFile::parse(&iam_file, embedded::IAM_TOML)?;
        let mut policies = Vec::new();
        for (name, text) in embedded::POLICIES {
            let file = dir.join(format!("{name}.json"));
            let policy = Policy::parse(name, text).map_err(|e| ConfigError::Invalid {
                file: file.clone(),
                message: e.to_string(),
            })?;
            policies.push((file, policy));
        }
        return Ok(IamSource {
            iam,
            iam_file,
            dir,
            policies,
            identity_policies: Vec::new(),
        });
    }
    let dir = config.path(&config.iam.dir);
    let iam_file = dir.join("iam.toml");
    let iam = IamFile::load(&iam_file)?;
    let policies = read_policy_dir(&dir)?;
    let identity_policies = read_identity_policy_dir(&dir.join("identities"))?;
    Ok(IamSource {
        iam,
        iam_file,
        dir,
        policies,
        identity_policies,
    })
}

/// Every `*.json` of `dir` (`[iam] dir`/identities), parsed as a resource-based policy, in
/// name order; no directory: none. As for managed policies, a file that does not parse is an
/// error even when nothing attaches it. SES's own checks (its resource is the identity's ARN...)
/// need the identity, so they run where a policy is attached (`Identities::load`).
pub(crate) fn read_identity_policy_dir(dir: &Path) -> Result<Vec<IdentityPolicyFile>, ConfigError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let read_error = |file: &Path| {
        let file = file.to_owned();
        move |source| ConfigError::Read { file, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let file = entry.map_err(read_error(dir))?.path();
        if file.extension().is_some_and(|e| e == "json") {
            files.push(file);
        }
    }
    files.sort();
    let mut policies = Vec::new();
    for file in files {
        let invalid = |message: String| ConfigError::Invalid {
            file: file.clone(),
            message,
        };
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| invalid("a policy file name must be UTF-8".into()))?
            .to_owned();
        if !crate::iam::sending_authorization::is_policy_name(&name) {
            return Err(invalid(format!(
                "{name:?} is not a policy name SES accepts (1 to 64 of A-Z, a-z, 0-9, _ and -)"
            )));
        }
        let text = std::fs::read_to_string(&file).map_err(read_error(&file))?;
        let policy = Policy::parse_resource(&name, &text).map_err(|e| invalid(e.to_string()))?;
        policies.push((file, text, policy));
    }
    Ok(policies)
}

/// Every `*.json` of `dir`, parsed, in name order. A file that does not parse is an error even
/// when nothing attaches it: it is most likely the policy someone meant to attach.
pub(crate) fn read_policy_dir(dir: &Path) -> Result<Vec<(PathBuf, Policy)>, ConfigError> {
    let read_error = |file: &Path| {
        let file = file.to_owned();
        move |source| ConfigError::Read { file, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let file = entry.map_err(read_error(dir))?.path();
        if file.extension().is_some_and(|e| e == "json") {
            files.push(file);
        }
    }
    files.sort();
    let mut policies = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| ConfigError::Invalid {
                file: file.clone(),
                message: "a policy file name must be UTF-8".into(),
            })?
            .to_owned();
        let text = std::fs::read_to_string(&file).map_err(read_error(&file))?;
        let policy = Policy::parse(&name, &text).map_err(|e| ConfigError::Invalid {
            file: file.clone(),
            message: e.to_string(),
        })?;
        policies.push((file, policy));
    }
    Ok(policies)
}

fn authorizer_of(config: &Config, source: &IamSource) -> Result<Authorizer, StartError> {
    let managed: HashMap<String, Arc<Policy>> = source
        .policies
        .iter()
        .map(|(_, policy)| (policy.name.to_string(), Arc::new(policy.clone())))
        .collect();
    let directory = Directory::load(
        &source.iam,
        &source.iam_file,
        &source.dir,
        &managed,
        &config.account.id,
        &config.account.region,
    )?;
    let identities = Identities::load(
        &source.iam,
        &source.iam_file,
        &source.dir,
        &source.identity_policies,
        &config.account.id,
        &config.account.region,
    )?;
    Ok(Authorizer {
        account: account_of(config, &identities),
        identities,
        directory,
        header_limits: config.limits.headers,
        enforce: config.iam.enforce,
    })
}

/// Users and policies, with the parsed `iam.toml` and its path (for `simulate`, which reads
/// logins from it).
pub fn load_authorizer(config: &Config) -> Result<(Authorizer, IamFile, PathBuf), StartError> {
    let source = read_iam(config)?;
    let authorizer = authorizer_of(config, &source)?;
    Ok((authorizer, source.iam, source.iam_file))
}

/// Loads everything `serve` needs: the snapshot, the relay, and what `check` lints.
pub fn load(config: &Config, effects: Effects) -> Result<Loaded, StartError> {
    let source = read_iam(config)?;
    let authorizer = authorizer_of(config, &source)?;
    let iam_file = source.iam_file.clone();
    let logins = source.iam.logins();
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
    let names = certificate_names(config);
    let (server_config, certificate) = match effects {
        Effects::Create => {
            let (server_config, source) = tls::load_or_generate(&cert, &key, &names)?;
            if source == CertificateSource::Generated {
                info!(certificate = %cert.display(), key = %key.display(), "generated a self-signed TLS certificate");
                (server_config, Certificate::Generated)
            } else {
                (server_config, Certificate::Files)
            }
        }
        Effects::ReadOnly if !cert.exists() && !key.exists() => (
            Arc::new(tls::self_signed(&names)?),
            Certificate::WouldGenerate,
        ),
        // The pair exists, or half of it does: load_or_generate only reads (or refuses) then.
        Effects::ReadOnly => (
            tls::load_or_generate(&cert, &key, &names)?.0,
            Certificate::Files,
        ),
    };
    let certificate_pem = match certificate {
        Certificate::WouldGenerate => None,
        _ => std::fs::read_to_string(&cert).ok(),
    };
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
    let quotas = super::quota::QuotaPlan::load(config, &source.iam)?;
    let relay = load_relay(config, effects)?;
    super::spooling::check(config, &authorizer.account)?;
    Ok(Loaded {
        snapshot: Snapshot {
            authorizer,
            credentials,
            tls: TlsAcceptor::from(server_config),
            client_tls,
            shadow,
            quotas,
        },
        relay,
        iam: source.iam,
        iam_file,
        policy_files: source.policies,
        identity_policy_files: source.identity_policies,
        certificate,
        certificate_pem,
    })
}

/// The names a generated certificate holds: the hostname, `localhost` and the loopback
/// addresses, each once.
fn certificate_names(config: &Config) -> Vec<String> {
    let mut names = vec![config.hostname.clone()];
    for name in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    names
}

/// The relay `[upstream] url` names: the file outbox or an SMTP upstream.
fn load_relay(config: &Config, effects: Effects) -> Result<Option<Relay>, StartError> {
    Ok(match config.upstream.url.strip_prefix("file://") {
        Some(dir) => {
            let dir = config.path(dir.as_ref());
            if effects == Effects::ReadOnly {
                check_outbox_dir(&dir).map_err(|source| StartError::Outbox { dir, source })?;
                return Ok(None);
            }
            let outbox = Outbox::open(&dir).map_err(|source| StartError::Outbox { dir, source })?;
            Some(Relay::Outbox(Arc::new(outbox)))
        }
        None => Some(Relay::Smtp(smtp_upstream(config)?)),
    })
}

/// What `Outbox::open` would refuse, without creating anything: the path, or the nearest
/// existing ancestor it would be created in, must be a directory.
pub(super) fn check_outbox_dir(dir: &Path) -> std::io::Result<()> {
    let mut path = dir;
    loop {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => path = parent,
                _ => return Ok(()),
            },
            Err(e) => return Err(e),
        }
    }
}

/// Whether an upstream host is this machine, where plaintext SMTP does not cross a network.
fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    if url.tls == UpstreamTls::None && !is_local_host(&url.host) {
        return Err(StartError::Upstream(format!(
            "url {:?}: plain smtp:// to a host that is not this machine sends mail (and any password) unencrypted. Fix: add ?tls=required, or use smtps://",
            upstream.url
        )));
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
