//! `policies/iam.toml`: groups, users and their SMTP credentials, and the identities with owners
//! and sending authorization policies (`[[identity]]`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, line_column, parse_toml};
use crate::credentials::Login;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IamFile {
    #[serde(rename = "group")]
    pub groups: Vec<Group>,
    #[serde(rename = "user")]
    pub users: Vec<User>,
    /// Verified identities with their owner and sending authorization policies.
    #[serde(rename = "identity")]
    pub identities: Vec<Identity>,
    /// The file's text, to turn value spans into line numbers in errors.
    #[serde(skip)]
    source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Managed policies: `<dir>/<name>.json`.
    #[serde(default)]
    pub policies: Vec<Spanned<String>>,
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
    /// false: its members are report-only (unless a user says otherwise).
    #[serde(default)]
    pub enforce: Option<bool>,
    /// Recipients per second for the group's members together (SES semantics); absent or 0: none.
    #[serde(default)]
    pub max_send_rate: Option<Spanned<f64>>,
    /// Recipients in any 24 hours for the group's members together; absent or 0: none.
    #[serde(default)]
    pub max_24_hour_send: Option<u64>,
}

/// A verified identity (domain or address) with its owning account and the sending
/// authorization policies attached to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// A domain (`example.com`) or an address (`sender@example.com`).
    pub name: Spanned<String>,
    /// The 12-digit account that owns (verified) it; absent: `[account] id`.
    #[serde(default)]
    pub account: Option<Spanned<String>>,
    /// Sending authorization policies: `<dir>/identities/<name>.json`.
    #[serde(default)]
    pub policies: Vec<Spanned<String>>,
    /// Sending authorization policies written in the file: name = policy JSON text.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default = "root_path")]
    pub path: String,
    /// The 12-digit account the user belongs to; absent: `[account] id`.
    #[serde(default)]
    pub account: Option<Spanned<String>>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub policies: Vec<Spanned<String>>,
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
    #[serde(default)]
    pub permissions_boundary: Option<Spanned<String>>,
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Clients from these networks are this user without AUTH (where a listener allows it).
    #[serde(default)]
    pub networks: Vec<ipnet::IpNet>,
    /// TLS client certificates that are this user: `sha256:HEX` fingerprints of the DER leaf, or
    /// `subject:CN=..., O=...` subjects (see [`client_certificate_key`]).
    #[serde(default)]
    pub client_certificates: Vec<String>,
    /// false: decided and logged, relayed anyway (report-only). Absent: its groups', else
    /// `[iam] enforce`.
    #[serde(default)]
    pub enforce: Option<bool>,
    /// The user's own recipients per second, below the account's; absent or 0: none.
    #[serde(default)]
    pub max_send_rate: Option<Spanned<f64>>,
    /// The user's own recipients in any 24 hours; absent or 0: none.
    #[serde(default)]
    pub max_24_hour_send: Option<u64>,
}

/// A `client_certificates` entry in canonical form, the key the directory matches a client's
/// certificate by: `sha256:HEX` (lower-case, no colons) for a fingerprint of the DER leaf, or
/// `subject:TYPE=value, TYPE=value` for a subject distinguished name as written (RFC 4514
/// order, one attribute per RDN). A subject is matched only in a certificate its listener's
/// `client_ca` signed.
pub fn client_certificate_key(entry: &str) -> Result<String, String> {
    if let Some(subject) = entry.strip_prefix("subject:") {
        return canonical_subject(subject)
            .map(|subject| format!("subject:{subject}"))
            .ok_or_else(|| {
                format!(
                    "{entry:?}: a subject is TYPE=value pairs separated by commas (e.g. \"subject:CN=scanner, O=Example\"); values may not hold ',', '+', '=', '\\', '\"' or control characters"
                )
            });
    }
    let hex = entry
        .strip_prefix("sha256:")
        .or_else(|| entry.strip_prefix("SHA256:"))
        .ok_or_else(|| {
            format!(
                "{entry:?}: expected \"sha256:\" and the certificate's SHA-256 fingerprint, or \"subject:\" and its subject"
            )
        })?;
    let hex: String = hex
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{entry:?}: a SHA-256 fingerprint is 64 hex digits"));
    }
    Ok(format!("sha256:{hex}"))
}

/// `TYPE=value, TYPE=value` with each type upper-cased and the spaces around separators
/// dropped; `None` when it is not that shape or a value holds a character that could make two
/// different distinguished names print alike (so nothing ambiguous is ever matched).
pub fn canonical_subject(subject: &str) -> Option<String> {
    let mut parts = Vec::new();
    for rdn in subject.split(',') {
        let (kind, value) = rdn.split_once('=')?;
        let (kind, value) = (kind.trim(), value.trim());
        if kind.is_empty()
            || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
            || !is_plain_subject_value(value)
        {
            return None;
        }
        parts.push(format!("{}={value}", kind.to_ascii_uppercase()));
    }
    Some(parts.join(", "))
}

/// A distinguished-name value sesgate compares: non-empty, no separator, escape or control.
pub fn is_plain_subject_value(value: &str) -> bool {
    !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_control() || matches!(c, ',' | '+' | '=' | '\\' | '"'))
}

fn root_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The SMTP user name.
    pub username: Spanned<String>,
    /// argon2id PHC string of the SMTP password (spanned: a bad one is reported at its line).
    pub password_hash: Spanned<String>,
}

impl IamFile {
    /// Reads and parses the file.
    pub fn load(file: &Path) -> Result<IamFile, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        IamFile::parse(file, &text)
    }

    /// `line L, column C` of a value's span.
    pub fn position(&self, span: std::ops::Range<usize>) -> String {
        let (line, column) = line_column(&self.source, span.start);
        format!("line {line}, column {column}")
    }

    pub fn parse(file: &Path, text: &str) -> Result<IamFile, ConfigError> {
        let mut parsed: IamFile = parse_toml(file, text)?;
        parsed.source = text.to_owned();
        let mut smtp_users = std::collections::HashSet::new();
        for credential in parsed.users.iter().flat_map(|u| &u.credentials) {
            if !smtp_users.insert(credential.username.get_ref().as_str()) {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    message: format!(
                        "{}: credentials.username: SMTP user name {:?} is given twice",
                        parsed.position(credential.username.span()),
                        credential.username.get_ref()
                    ),
                });
            }
            // Checked here, where the file's positions are known; the credential store checks
            // again when it loads (it is also built from other sources).
            if let Err(e) =
                argon2::password_hash::phc::PasswordHash::new(credential.password_hash.get_ref())
            {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    message: format!(
                        "{}: credentials.password_hash of SMTP user {:?} is not an argon2 PHC \
                         string ({e}); make one with `sesgate hash-password`",
                        parsed.position(credential.password_hash.span()),
                        credential.username.get_ref()
                    ),
                });
            }
        }
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_owned(),
            message,
        };
        // A client address or certificate names one user at most: an overlap would let the
        // file's order decide who a device is.
        let mut networks: Vec<(&ipnet::IpNet, &str)> = Vec::new();
        let mut certificates = std::collections::HashMap::new();
        for user in &parsed.users {
            for net in &user.networks {
                if let Some((other, owner)) = networks.iter().find(|(other, _)| {
                    other.contains(&net.network()) || net.contains(&other.network())
                }) {
                    return Err(invalid(format!(
                        "user {:?} networks: {net} overlaps {other} of user {owner:?}",
                        user.name
                    )));
                }
                networks.push((net, &user.name));
            }
            for entry in &user.client_certificates {
                let key = client_certificate_key(entry).map_err(|e| {
                    invalid(format!("user {:?} client_certificates: {e}", user.name))
                })?;
                if let Some(owner) = certificates.insert(key, user.name.as_str()) {
                    return Err(invalid(format!(
                        "user {:?} client_certificates: {entry:?} is also user {owner:?}'s",
                        user.name
                    )));
                }
            }
        }
        let account_id = |field: &str, owner: &str, account: &Spanned<String>| {
            let id = account.get_ref();
            if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "{}: {owner} {field}: {id:?} is not a 12-digit AWS account id",
                    parsed.position(account.span())
                )))
            }
        };
        for user in &parsed.users {
            if let Some(account) = &user.account {
                account_id("account", &format!("user {:?}", user.name), account)?;
            }
        }
        for identity in &parsed.identities {
            let owner = format!("identity {:?}", identity.name.get_ref());
            if let Some(account) = &identity.account {
                account_id("account", &owner, account)?;
            }
            let count = identity.policies.len() + identity.inline_policies.len();
            if count > crate::iam::sending_authorization::MAX_POLICIES_PER_IDENTITY {
                return Err(invalid(format!(
                    "{}: {owner}: {count} policies; SES allows at most {} per identity",
                    parsed.position(identity.name.span()),
                    crate::iam::sending_authorization::MAX_POLICIES_PER_IDENTITY
                )));
            }
            let names = identity
                .policies
                .iter()
                .map(|p| (p.get_ref().as_str(), Some(p.span())))
                .chain(identity.inline_policies.keys().map(|n| (n.as_str(), None)));
            let mut seen = std::collections::HashSet::new();
            for (name, span) in names {
                let at = parsed.position(span.unwrap_or(identity.name.span()));
                if !crate::iam::sending_authorization::is_policy_name(name) {
                    return Err(invalid(format!(
                        "{at}: {owner} policies: {name:?} is not a policy name SES accepts (1 to 64 of A-Z, a-z, 0-9, _ and -)"
                    )));
                }
                if !seen.insert(name) {
                    return Err(invalid(format!(
                        "{at}: {owner} policies: {name:?} is attached twice"
                    )));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for user in &parsed.users {
            if !seen.insert(user.name.as_str()) {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    message: format!("user {:?} is defined twice", user.name),
                });
            }
            if !user.path.starts_with('/') || !user.path.ends_with('/') {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    message: format!(
                        "user {:?}: path {:?} must start and end with /",
                        user.name, user.path
                    ),
                });
            }
            // The user's ARN is built from path and name: only IAM's own names and paths, so
            // no two users can share an ARN (and a policy naming one never names the other).
            if !is_iam_name(&user.name, 64) {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    message: format!(
                        "{:?} is not a valid IAM user name (1 to 64 of A-Z, a-z, 0-9 and +=,.@_-)",
                        user.name
                    ),
                });
            }
            if !is_iam_path(&user.path) {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    message: format!(
                        "user {:?}: {:?} is not a valid IAM path (printable ASCII without spaces between two /)",
                        user.name, user.path
                    ),
                });
            }
        }
        let rates = parsed
            .users
            .iter()
            .map(|u| (&u.max_send_rate, "user", &u.name))
            .chain(
                parsed
                    .groups
                    .iter()
                    .map(|g| (&g.max_send_rate, "group", &g.name)),
            );
        for (rate, kind, name) in rates {
            if let Some(rate) = rate
                && !(rate.get_ref().is_finite() && *rate.get_ref() >= 0.0)
            {
                return Err(invalid(format!(
                    "{}: {kind} {name:?}: max_send_rate must be a number at least 0 (0: none)",
                    parsed.position(rate.span())
                )));
            }
        }
        Ok(parsed)
    }

    /// Every SMTP login, naming the IAM user it authenticates as.
    pub fn logins(&self) -> Vec<Login> {
        self.users
            .iter()
            .flat_map(|user| {
                user.credentials.iter().map(|c| Login {
                    smtp_username: c.username.get_ref().clone(),
                    iam_user: user.name.clone(),
                    password_hash: c.password_hash.get_ref().clone(),
                })
            })
            .collect()
    }
}

/// Whether `name` is a name IAM gives a user (`max` 64), a group or a policy (`max` 128): 1 to
/// `max` of `[A-Za-z0-9+=,.@_-]` (IAM API reference, pattern `[\w+=,.@-]+`). Anything else
/// is refused: a `/` or `:` in a user name would give it another user's ARN
/// (`user/apps/john` is John at `/apps/`), and `sesgate import` names policy files by policy
/// name, so a `/` would write outside its output directory.
pub fn is_iam_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Whether `path` is an IAM path: `/`, or `/` and printable ASCII without spaces ending in `/`,
/// at most 512 bytes (IAM API reference, `Path`).
pub fn is_iam_path(path: &str) -> bool {
    path.len() <= 512
        && path.starts_with('/')
        && path.ends_with('/')
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses() {
        let text = r#"
[[group]]
name = "senders"
policies = ["AllowSendingOnly"]
inline_policies = { NoNights = """{ "Statement": [] }""" }

[[user]]
name = "billing-app"
path = "/apps/"
id = "AIDAEXAMPLEBILLING01"
groups = ["senders"]
policies = ["RestrictFromAddress"]
permissions_boundary = "SendOnlyBoundary"
[[user.credentials]]
username = "AKIAEXAMPLEBILLING01"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
"#;
        let file = IamFile::parse(Path::new("iam.toml"), text).unwrap();
        assert_eq!(file.groups[0].inline_policies.len(), 1);
        assert_eq!(
            file.position(file.users[0].policies[0].span()),
            "line 12, column 13"
        );
        let logins = file.logins();
        assert_eq!(logins[0].smtp_username, "AKIAEXAMPLEBILLING01");
        assert_eq!(logins[0].iam_user, "billing-app");
    }

    #[test]
    fn errors() {
        let err = IamFile::parse(
            Path::new("iam.toml"),
            "[[user]]\nname = \"a\"\npasword = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("iam.toml: line") && err.contains("unknown field `pasword`"),
            "{err}"
        );
        let err = IamFile::parse(
            Path::new("iam.toml"),
            "[[user]]\nname = \"a\"\n[[user]]\nname = \"a\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("user \"a\" is defined twice"), "{err}");
    }
}
