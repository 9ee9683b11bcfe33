//! Files to typed values: `sesgate.toml` and `policies/iam.toml` (SPEC §8). Every field has a
//! default; an unknown field or a value of the wrong type is an error naming the file, the line
//! and the field. Relative paths in a config file are relative to that file's directory; in the
//! embedded default, to the working directory.

pub mod aws_export;
pub mod embedded;
pub mod iam;
pub mod locate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::smtp::{self, ListenerSettings, TlsMode};

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: line {line}, column {column}: {message}")]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

/// The 1-based line and column of a byte offset in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses TOML text, turning errors into file:line:column messages.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = line_column(text, e.span().map_or(0, |span| span.start));
        ConfigError::Parse {
            file: file.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

/// `sesgate.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    pub account: Account,
    pub iam: Iam,
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
    pub tls: Tls,
    pub upstream: Upstream,
    pub limits: Limits,
    pub log: Log,
    pub metrics: Metrics,
    pub quotas: Quotas,
    /// `[spool]`: store and forward; absent: pass-through.
    pub spool: Option<Spool>,
    /// Where relative paths start; not a TOML field.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Whether a credential may have the demo password published in the README: only in the
    /// embedded default (`serve` with no `--config`); not a TOML field.
    #[serde(skip)]
    pub allow_demo_password: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            account: Account::default(),
            iam: Iam::default(),
            listeners: vec![
                Listener {
                    address: "127.0.0.1:2587".parse().expect("literal address"),
                    tls: TlsMode::Starttls,
                    ..Listener::default()
                },
                Listener {
                    address: "127.0.0.1:2465".parse().expect("literal address"),
                    tls: TlsMode::Implicit,
                    ..Listener::default()
                },
            ],
            tls: Tls::default(),
            upstream: Upstream::default(),
            limits: Limits::default(),
            log: Log::default(),
            metrics: Metrics::default(),
            quotas: Quotas::default(),
            spool: None,
            base_dir: PathBuf::new(),
            allow_demo_password: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Account {
    pub id: String,
    pub region: String,
    pub identities: Vec<String>,
    pub sandbox: bool,
    pub default_configuration_sets: std::collections::BTreeMap<String, String>,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            id: "123456789012".into(),
            region: "us-east-1".into(),
            identities: Vec::new(),
            sandbox: false,
            default_configuration_sets: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Iam {
    /// Holds `iam.toml` and one policy JSON per file.
    pub dir: PathBuf,
    /// The embedded default's users and policies, compiled in ([`embedded`]); `dir` is unused.
    #[serde(skip)]
    pub embedded: bool,
    /// A second users/policies set decided beside the live one (never deciding); empty: none.
    pub shadow_dir: PathBuf,
    /// false: every principal without its own `enforce` is report-only.
    pub enforce: bool,
}

impl Default for Iam {
    fn default() -> Self {
        Iam {
            dir: "policies".into(),
            embedded: false,
            shadow_dir: PathBuf::new(),
            enforce: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listener {
    #[serde(with = "listener_address")]
    pub address: SocketAddr,
    #[serde(with = "tls_mode")]
    pub tls: TlsMode,
    pub allow_plaintext_auth: bool,
    pub proxy_protocol_from: Vec<IpNet>,
    /// `required` (default), `optional` or `none`: see [`smtp::AuthMode`].
    #[serde(with = "auth_mode")]
    pub auth: smtp::AuthMode,
    /// CA file (PEM) client certificates are verified against; empty: none are requested.
    pub client_ca: PathBuf,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            address: "127.0.0.1:2587".parse().expect("literal address"),
            tls: TlsMode::Starttls,
            allow_plaintext_auth: false,
            proxy_protocol_from: Vec::new(),
            auth: smtp::AuthMode::Required,
            client_ca: PathBuf::new(),
        }
    }
}

impl Listener {
    pub fn settings(&self) -> ListenerSettings {
        ListenerSettings {
            tls: self.tls,
            allow_plaintext_auth: self.allow_plaintext_auth,
            proxy_protocol_from: self.proxy_protocol_from.clone(),
            auth: self.auth,
            tls_source: None,
        }
    }
}

/// `auth = "required" | "optional" | "none"`.
mod auth_mode {
    use serde::{Deserialize, Deserializer};

    use crate::smtp::AuthMode;

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Name {
        Required,
        Optional,
        None,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AuthMode, D::Error> {
        Ok(match Name::deserialize(deserializer)? {
            Name::Required => AuthMode::Required,
            Name::Optional => AuthMode::Optional,
            Name::None => AuthMode::None,
        })
    }
}

/// `address = "IP:port"`: a listener binds an address, so a host name (`localhost:4465`) is
/// refused with a message that says so, rather than serde's bare "invalid socket address".
mod listener_address {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            D::Error::custom(format!(
                "{text:?} is not an IP:port address: a listener binds an IP address and a port, \
                 e.g. \"127.0.0.1:4465\", \"[::1]:4465\" or \"0.0.0.0:4465\" (host names are not \
                 resolved)"
            ))
        })
    }
}

/// `tls = "none" | "starttls" | "implicit"`: the file's names of [`TlsMode`], which as a
/// protocol type knows nothing of files.
mod tls_mode {
    use serde::{Deserialize, Deserializer};

    use crate::smtp::TlsMode;

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Name {
        None,
        Starttls,
        Implicit,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TlsMode, D::Error> {
        Ok(match Name::deserialize(deserializer)? {
            Name::None => TlsMode::None,
            Name::Starttls => TlsMode::Starttls,
            Name::Implicit => TlsMode::Implicit,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            certificate: "certs/sesgate.crt".into(),
            private_key: "certs/sesgate.key".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    pub url: String,
    pub username: String,
    pub password_env: String,
    pub password_file: PathBuf,
    pub pool_size: usize,
    /// An extra trusted root certificate (PEM) for an upstream with a private CA.
    pub ca_certificate: PathBuf,
    /// How long one message may take upstream, the wait for a pool connection included.
    pub timeout_secs: u64,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            url: "file://./outbox".into(),
            username: String::new(),
            password_env: String::new(),
            password_file: PathBuf::new(),
            pool_size: 8,
            ca_certificate: PathBuf::new(),
            timeout_secs: 60,
        }
    }
}

/// `[limits]` as the running server uses it: the SMTP front end's limits, the header-section
/// bounds, the AUTH verification gate and the drain. Each part's defaults are its owner's; the
/// file only overrides (see [`LimitsFile`], the one place file fields meet runtime fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "LimitsFile")]
pub struct Limits {
    pub smtp: smtp::Limits,
    pub headers: crate::gateway::headers::Limits,
    /// argon2 verifications running at once; 0: one per core.
    pub max_auth_verifications: usize,
    /// AUTH checks waiting for a verification slot; past it, `454` at once.
    pub max_auth_queue: usize,
    /// How long an AUTH check waits for a slot before `454`.
    pub auth_queue_timeout: Duration,
    /// On SIGTERM, how long transactions in flight may take to finish.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            smtp: smtp::Limits::default(),
            headers: crate::gateway::headers::Limits::default(),
            max_auth_verifications: 0,
            max_auth_queue: 64,
            auth_queue_timeout: Duration::from_millis(5000),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The `[limits]` table as written: every field optional, durations in whole seconds (or
/// milliseconds) as their names say. Only `From<LimitsFile> for Limits` reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_message_bytes: Option<usize>,
    max_recipients: Option<usize>,
    max_line_length: Option<usize>,
    max_errors: Option<u32>,
    max_auth_failures: Option<u32>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    idle_timeout_secs: Option<u64>,
    data_timeout_secs: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    command_timeout_secs: Option<u64>,
    message_timeout_secs: Option<u64>,
    session_timeout_secs: Option<u64>,
    auth_failures_per_user: Option<u32>,
    auth_failures_per_ip: Option<u32>,
    auth_failure_window_secs: Option<u64>,
    auth_in_flight_per_ip: Option<u32>,
    auth_throttle_exempt: Option<Vec<IpNet>>,
    max_auth_verifications: Option<usize>,
    max_auth_queue: Option<usize>,
    auth_queue_timeout_ms: Option<u64>,
    drain_timeout_secs: Option<u64>,
    max_header_bytes: Option<usize>,
    max_header_fields: Option<usize>,
    max_header_field_bytes: Option<usize>,
}

impl From<LimitsFile> for Limits {
    fn from(file: LimitsFile) -> Limits {
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        fn set_secs(target: &mut Duration, secs: Option<u64>) {
            set(target, secs.map(Duration::from_secs));
        }
        let mut limits = Limits::default();
        let (smtp, headers) = (&mut limits.smtp, &mut limits.headers);
        set(&mut smtp.max_message_bytes, file.max_message_bytes);
        set(&mut smtp.max_recipients, file.max_recipients);
        set(&mut smtp.max_line_length, file.max_line_length);
        set(&mut smtp.max_errors, file.max_errors);
        set(&mut smtp.max_auth_failures, file.max_auth_failures);
        set(&mut smtp.max_connections, file.max_connections);
        set(
            &mut smtp.max_connections_per_ip,
            file.max_connections_per_ip,
        );
        set_secs(&mut smtp.idle_timeout, file.idle_timeout_secs);
        set_secs(&mut smtp.data_timeout, file.data_timeout_secs);
        set_secs(&mut smtp.handshake_timeout, file.handshake_timeout_secs);
        set_secs(&mut smtp.command_timeout, file.command_timeout_secs);
        set_secs(&mut smtp.message_timeout, file.message_timeout_secs);
        set_secs(&mut smtp.session_timeout, file.session_timeout_secs);
        set(
            &mut smtp.auth_failures_per_user,
            file.auth_failures_per_user,
        );
        set(&mut smtp.auth_failures_per_ip, file.auth_failures_per_ip);
        set_secs(&mut smtp.auth_failure_window, file.auth_failure_window_secs);
        set(&mut smtp.auth_in_flight_per_ip, file.auth_in_flight_per_ip);
        set(&mut smtp.auth_throttle_exempt, file.auth_throttle_exempt);
        set(&mut headers.max_header_bytes, file.max_header_bytes);
        set(&mut headers.max_header_fields, file.max_header_fields);
        set(
            &mut headers.max_header_field_bytes,
            file.max_header_field_bytes,
        );
        set(
            &mut limits.max_auth_verifications,
            file.max_auth_verifications,
        );
        set(&mut limits.max_auth_queue, file.max_auth_queue);
        set(
            &mut limits.auth_queue_timeout,
            file.auth_queue_timeout_ms.map(Duration::from_millis),
        );
        set_secs(&mut limits.drain_timeout, file.drain_timeout_secs);
        limits
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// JSONL decision log for `sesgate replay`; empty: off.
    pub decisions: PathBuf,
    /// The decision log is rotated (one old file kept) past this size.
    pub decisions_max_bytes: u64,
    /// The transaction log line lists the envelope recipients (escaped); off: only their count.
    pub recipients: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::default(),
            decisions: PathBuf::new(),
            decisions_max_bytes: 64 << 20,
            recipients: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub listen: String,
    /// Transactions counted per IAM user too (`sesgate_user_transactions_total`): opt-in, as
    /// each configured user adds series.
    pub per_user: bool,
}

/// `[quotas]`: SES's sending quotas, counted in recipients as SES counts them (SPEC §6, §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// The account's recipients per second; 0: unlimited.
    pub max_send_rate: f64,
    /// The account's recipients in any 24 hours; 0: unlimited.
    pub max_24_hour_send: u64,
    /// `memory` (one instance) or a `redis://` URL shared by every instance.
    pub store: String,
    /// What a message gets when the store does not answer: `refuse` (451) or `allow`.
    pub on_store_error: OnStoreError,
    /// The longest one store call may take.
    pub store_timeout_ms: u64,
    /// A `GetSendQuota` JSON file with SES's own limits, read at start and on SIGHUP.
    pub from_upstream: PathBuf,
    /// How long a message may wait for room in a rate before `454`.
    pub max_rate_wait_ms: u64,
    /// After an upstream 454, how long the instance's pace takes to climb back.
    pub upstream_recovery_secs: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_send_rate: 0.0,
            max_24_hour_send: 0,
            store: "memory".into(),
            on_store_error: OnStoreError::Refuse,
            store_timeout_ms: 250,
            from_upstream: PathBuf::new(),
            max_rate_wait_ms: 2000,
            upstream_recovery_secs: 30,
        }
    }
}

/// `[spool]`: accept once decided and stored, deliver with retries (SPEC §7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spool {
    /// The spool directory (one gateway per directory).
    pub dir: PathBuf,
    /// Past this many bytes spooled, new messages get `452 4.3.1`; 0: the disk is the limit.
    pub max_bytes: u64,
    /// How long a message is retried before it bounces (Postfix's maximal_queue_lifetime).
    pub max_age_secs: u64,
    /// Delays after the 1st, 2nd, ... failed attempt; the last one repeats.
    pub retry_schedule_secs: Vec<u64>,
    /// Messages delivered at once; 0: `[upstream] pool_size`.
    pub workers: usize,
    /// The sender of DSNs; empty: `MAILER-DAEMON@` + `hostname`.
    pub bounce_from: String,
    /// How often the spool is re-read for changes made by `sesgate queue`.
    pub rescan_interval_secs: u64,
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            dir: "/var/spool/sesgate".into(),
            max_bytes: 0,
            max_age_secs: 5 * 24 * 3600,
            // SES's advice for 4xx replies: 5 s, 10 s, 30 s, then every 20 minutes.
            retry_schedule_secs: vec![5, 10, 30, 1200],
            workers: 0,
            bounce_from: String::new(),
            rescan_interval_secs: 300,
        }
    }
}

/// `[quotas] on_store_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// `451 4.3.0 Temporary service failure`: the client retries (fail closed).
    #[default]
    Refuse,
    /// Relay without counting (fail open).
    Allow,
}

impl Spool {
    /// The DSN sender: `bounce_from`, else `MAILER-DAEMON@hostname`.
    pub fn bounce_from(&self, hostname: &str) -> String {
        if self.bounce_from.is_empty() {
            format!("MAILER-DAEMON@{hostname}")
        } else {
            self.bounce_from.clone()
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.dir.as_os_str().is_empty() {
            return Err("spool.dir must be set".into());
        }
        if self.max_age_secs == 0 || self.rescan_interval_secs == 0 {
            return Err(
                "spool.max_age_secs and spool.rescan_interval_secs must be at least 1".into(),
            );
        }
        if self.retry_schedule_secs.is_empty() || self.retry_schedule_secs.contains(&0) {
            return Err(
                "spool.retry_schedule_secs needs at least one delay, each at least 1".into(),
            );
        }
        if !self.bounce_from.is_empty() {
            let well_formed = self
                .bounce_from
                .split_once('@')
                .is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !domain.contains('@')
                        && self
                            .bounce_from
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
                });
            if !well_formed {
                return Err(format!(
                    "spool.bounce_from {:?} is not an address (e.g. \"MAILER-DAEMON@example.com\")",
                    self.bounce_from
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The embedded default configuration, the one place the demo credential serves. Its users
    /// and policies are compiled in; what it creates (certificate, outbox) goes under `state_dir`
    /// ([`locate::state_dir`]), never into the working directory.
    pub fn embedded_default(state_dir: PathBuf) -> Config {
        Config {
            allow_demo_password: true,
            iam: Iam {
                embedded: true,
                ..Iam::default()
            },
            base_dir: state_dir,
            ..Config::default()
        }
    }

    /// Reads `sesgate.toml`.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let mut config = Config::parse(file, &text)?;
        config.base_dir = file.parent().map(Path::to_owned).unwrap_or_default();
        Ok(config)
    }

    /// Parses `sesgate.toml` text (`file` names it in errors).
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = parse_toml(file, text)?;
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_owned(),
            message,
        };
        if config.listeners.is_empty() {
            return Err(invalid("at least one [[listener]] is needed".into()));
        }
        let (l, h) = (&config.limits.smtp, &config.limits.headers);
        if l.max_recipients == 0 || l.max_connections == 0 {
            return Err(invalid(
                "limits.max_recipients and limits.max_connections must be at least 1".into(),
            ));
        }
        if [l.handshake_timeout, l.command_timeout]
            .into_iter()
            .chain([l.message_timeout, l.session_timeout])
            .any(|timeout| timeout.is_zero())
        {
            return Err(invalid("limits.*_timeout_secs must be at least 1".into()));
        }
        if l.auth_failures_per_user == 0
            || l.auth_failures_per_ip == 0
            || l.auth_in_flight_per_ip == 0
        {
            return Err(invalid(
                "limits.auth_failures_per_user, auth_failures_per_ip and auth_in_flight_per_ip must be at least 1".into(),
            ));
        }
        if h.max_header_bytes == 0 || h.max_header_fields == 0 || h.max_header_field_bytes == 0 {
            return Err(invalid(
                "limits.max_header_bytes, max_header_fields and max_header_field_bytes must be at least 1".into(),
            ));
        }
        if l.max_line_length < 80 {
            return Err(invalid("limits.max_line_length must be at least 80".into()));
        }
        let q = &config.quotas;
        if !(q.max_send_rate.is_finite() && q.max_send_rate >= 0.0) {
            return Err(invalid(
                "quotas.max_send_rate must be a number at least 0 (0: unlimited)".into(),
            ));
        }
        if q.store_timeout_ms == 0 {
            return Err(invalid("quotas.store_timeout_ms must be at least 1".into()));
        }
        if q.store != "memory" && !q.store.starts_with("redis://") {
            return Err(invalid(format!(
                "quotas.store {:?}: expected \"memory\" or a redis:// URL, e.g. \"redis://127.0.0.1:6379/0\"",
                q.store
            )));
        }
        if let Some(spool) = &config.spool {
            spool.validate().map_err(invalid)?;
        }
        Ok(config)
    }

    /// A path from the config, made absolute against the config's directory.
    pub fn path(&self, path: &Path) -> PathBuf {
        if path.is_absolute()
            || self.base_dir.as_os_str().is_empty()
            || self.base_dir == Path::new(".")
        {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses() {
        let text = r#"
[account]
id = "123456789012"
region = "us-east-1"
identities = ["example.com", "marketing@example.com"]
sandbox = false
[account.default_configuration_sets]
"example.com" = "marketing"

[iam]
dir = "policies"

[[listener]]
address = "127.0.0.1:2587"
tls = "starttls"
allow_plaintext_auth = false
proxy_protocol_from = []

[[listener]]
address = "[::1]:2465"
tls = "implicit"
proxy_protocol_from = ["10.0.0.0/8"]

[tls]
certificate = "certs/sesgate.crt"
private_key = "certs/sesgate.key"

[upstream]
url = "file://./outbox"
username = ""
password_env = ""
pool_size = 8

[limits]
max_message_bytes = 41943040
max_recipients = 50
max_connections = 1000
max_connections_per_ip = 100
idle_timeout_secs = 300
data_timeout_secs = 600
handshake_timeout_secs = 10
command_timeout_secs = 300
message_timeout_secs = 1800
session_timeout_secs = 3600

[log]
format = "text"

[metrics]
listen = ""
"#;
        let config = Config::parse(Path::new("sesgate.toml"), text).unwrap();
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[1].tls, TlsMode::Implicit);
        assert_eq!(
            config.account.default_configuration_sets["example.com"],
            "marketing"
        );
    }

    #[test]
    fn quotas_are_checked_when_parsed() {
        let parse = |text: &str| Config::parse(Path::new("s.toml"), text);
        let config = parse("[quotas]\nmax_send_rate = 14\nmax_24_hour_send = 50000\nstore = \"redis://127.0.0.1:6379/0\"\non_store_error = \"allow\"\n").unwrap();
        assert_eq!(config.quotas.max_send_rate, 14.0);
        assert_eq!(config.quotas.on_store_error, OnStoreError::Allow);
        assert_eq!(parse("").unwrap().quotas.store, "memory");
        for bad in [
            "[quotas]\nmax_send_rate = -1\n",
            "[quotas]\nmax_send_rate = nan\n",
            "[quotas]\nstore = \"memcached://x\"\n",
            "[quotas]\nstore_timeout_ms = 0\n",
            "[quotas]\non_store_error = \"maybe\"\n",
            "[quotas]\nmax_24_hour_send = -5\n",
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.starts_with("s.toml:"), "{bad}: {error}");
        }
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let config = Config::parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.upstream.url, "file://./outbox");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = Config::parse(
            Path::new("sesgate.toml"),
            "[limits]\nmax_recipients = 5\nmax_recipent = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("sesgate.toml: line 3, column 1: unknown field `max_recipent`"),
            "{err}"
        );
        let err = Config::parse(
            Path::new("sesgate.toml"),
            "[[listener]]\ntls = \"sometimes\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("sesgate.toml: line 2, column 7:") && err.contains("sometimes"),
            "{err}"
        );
    }
}
