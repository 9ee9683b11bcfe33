//! Users and their policies: `iam.toml` plus the policy files beside it, compiled into one
//! [`PolicySet`] per user (user and group policies, inline and managed, and the permissions
//! boundary). Anything missing or refused is an error naming the file and the field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::request::Principal;
use crate::config::ConfigError;
use crate::config::iam::IamFile;
use crate::iam::{Policy, PolicySet};
use crate::smtp::IdentifiedBy;

/// One IAM user as the gateway needs it.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub principal: Principal,
    pub policies: PolicySet,
    /// The user's own `enforce`, else false when one of its groups says false; `None`: the
    /// global `[iam] enforce` applies.
    pub enforce: Option<bool>,
}

/// The subject of a DER certificate as `TYPE=value, ...` in the form
/// `config::iam::canonical_subject` gives; `None` when the certificate does not parse or its
/// subject holds anything that could print ambiguously (a multi-valued RDN, an unknown
/// attribute type, a non-string value, a separator or escape inside a value).
fn certificate_subject(der: &[u8]) -> Option<String> {
    use x509_parser::objects::{oid_registry, oid2abbrev};
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut parts = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return None;
        };
        let kind = oid2abbrev(attribute.attr_type(), oid_registry()).ok()?;
        let value = attribute.as_str().ok()?;
        if !crate::config::iam::is_plain_subject_value(value) {
            return None;
        }
        parts.push(format!("{kind}={value}"));
    }
    crate::config::iam::canonical_subject(&parts.join(", "))
}

/// Every user by name, and who clients that do not AUTH are.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: HashMap<String, UserEntry>,
    /// Source networks bound to users (no two overlap: checked when `iam.toml` is parsed).
    networks: Vec<(IpNet, String)>,
    /// Client certificates bound to users, by `sha256:HEX` fingerprint or `subject:DN` key
    /// (`config::iam::client_certificate_key`).
    certificates: HashMap<String, String>,
}

impl Directory {
    /// Who a client that did not AUTH is: its certificate's user, else its network's.
    pub fn identify(
        &self,
        client: IpAddr,
        certificate: Option<&[u8]>,
    ) -> Option<(String, IdentifiedBy)> {
        if let Some(der) = certificate {
            let fingerprint: String = Sha256::digest(der)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let by_subject = || {
                certificate_subject(der)
                    .and_then(|s| self.certificates.get(&format!("subject:{s}")))
            };
            if let Some(user) = self
                .certificates
                .get(&format!("sha256:{fingerprint}"))
                .or_else(by_subject)
            {
                return Some((user.clone(), IdentifiedBy::Certificate));
            }
        }
        let client = client.to_canonical();
        self.networks
            .iter()
            .find(|(net, _)| net.contains(&client))
            .map(|(_, user)| (user.clone(), IdentifiedBy::Network))
    }

    /// Users reachable without AUTH: (user, networks, number of certificates), sorted by name.
    pub fn principals_without_auth(&self) -> Vec<(String, Vec<IpNet>, usize)> {
        let mut out: Vec<(String, Vec<IpNet>, usize)> = Vec::new();
        for name in self.users.keys() {
            let networks: Vec<IpNet> = self
                .networks
                .iter()
                .filter(|(_, user)| user == name)
                .map(|(net, _)| *net)
                .collect();
            let certificates = self
                .certificates
                .values()
                .filter(|user| *user == name)
                .count();
            if !networks.is_empty() || certificates > 0 {
                out.push((name.clone(), networks, certificates));
            }
        }
        out.sort();
        out
    }

    /// Every user, by name order.
    pub fn users(&self) -> Vec<&UserEntry> {
        let mut users: Vec<&UserEntry> = self.users.values().collect();
        users.sort_by(|a, b| a.principal.name.cmp(&b.principal.name));
        users
    }

    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Compiles every user of `iam` (read from `iam_file`), resolving managed policy names
    /// in `managed`, every policy file of `dir` already parsed.
    pub fn load(
        iam: &IamFile,
        iam_file: &Path,
        dir: &Path,
        managed: &HashMap<String, Arc<Policy>>,
        account_id: &str,
        region: &str,
    ) -> Result<Directory, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: iam_file.to_owned(),
            message,
        };
        let load_managed = |name: &str, field: &str| -> Result<Arc<Policy>, ConfigError> {
            managed.get(name).cloned().ok_or_else(|| {
                let file: PathBuf = dir.join(format!("{name}.json"));
                invalid(format!(
                    "{field}: policy {name:?}: no file {}",
                    file.display()
                ))
            })
        };
        let inline = |owner: &str, name: &str, text: &str| -> Result<Arc<Policy>, ConfigError> {
            Policy::parse(&format!("{owner}/{name}"), text)
                .map(Arc::new)
                .map_err(|e| invalid(format!("inline policy {name:?} of {owner:?}: {e}")))
        };
        let mut groups: HashMap<&str, Vec<Arc<Policy>>> = HashMap::new();
        let group_enforce: HashMap<&str, Option<bool>> = iam
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.enforce))
            .collect();
        for group in &iam.groups {
            let mut policies = Vec::new();
            for name in &group.policies {
                let field = format!(
                    "{}: group {:?} policies",
                    iam.position(name.span()),
                    group.name
                );
                policies.push(load_managed(name.get_ref(), &field)?);
            }
            for (name, text) in &group.inline_policies {
                policies.push(inline(&group.name, name, text)?);
            }
            if groups.insert(group.name.as_str(), policies).is_some() {
                return Err(invalid(format!("group {:?} is defined twice", group.name)));
            }
        }
        let mut users = HashMap::new();
        let mut networks = Vec::new();
        let mut certificates = HashMap::new();
        for user in &iam.users {
            networks.extend(
                user.networks
                    .iter()
                    .map(|net| (net.trunc(), user.name.clone())),
            );
            for entry in &user.client_certificates {
                let key = crate::config::iam::client_certificate_key(entry).map_err(|e| {
                    invalid(format!("user {:?} client_certificates: {e}", user.name))
                })?;
                certificates.insert(key, user.name.clone());
            }
            // The most specific word wins: the user's own, else any group's "false".
            let enforce = user.enforce.or_else(|| {
                user.groups
                    .iter()
                    .any(|g| group_enforce.get(g.get_ref().as_str()) == Some(&Some(false)))
                    .then_some(false)
            });
            let mut policies = Vec::new();
            for name in &user.policies {
                let field = format!(
                    "{}: user {:?} policies",
                    iam.position(name.span()),
                    user.name
                );
                policies.push(load_managed(name.get_ref(), &field)?);
            }
            for (name, text) in &user.inline_policies {
                policies.push(inline(&user.name, name, text)?);
            }
            for group in &user.groups {
                let group_policies = groups.get(group.get_ref().as_str()).ok_or_else(|| {
                    invalid(format!(
                        "{}: user {:?} groups: no group named {:?}",
                        iam.position(group.span()),
                        user.name,
                        group.get_ref()
                    ))
                })?;
                policies.extend(group_policies.iter().cloned());
            }
            let boundary = match &user.permissions_boundary {
                Some(name) => {
                    let field = format!(
                        "{}: user {:?} permissions_boundary",
                        iam.position(name.span()),
                        user.name
                    );
                    Some(load_managed(name.get_ref(), &field)?)
                }
                None => None,
            };
            let account = user
                .account
                .as_ref()
                .map_or(account_id, |a| a.get_ref().as_str());
            let principal = Principal {
                name: user.name.clone(),
                // In the region's partition, as AWS writes it: an `arn:aws:` ARN in China or
                // GovCloud never matches the Deny naming the user's real ARN.
                arn: format!(
                    "arn:{}:iam::{account}:user{}{}",
                    super::request::partition(region),
                    user.path,
                    user.name
                ),
                id: user.id.clone(),
                account: account.to_owned(),
            };
            users.insert(
                user.name.clone(),
                UserEntry {
                    principal,
                    policies: PolicySet::new(policies, boundary),
                    enforce,
                },
            );
        }
        Ok(Directory {
            users,
            networks,
            certificates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(toml: &str) -> Result<Directory, String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let iam = IamFile::parse(Path::new("iam.toml"), toml).map_err(|e| e.to_string())?;
        let managed = crate::gateway::load::read_policy_dir(&dir)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, policy)| (policy.name.to_string(), Arc::new(policy)))
            .collect();
        Directory::load(
            &iam,
            Path::new("iam.toml"),
            &dir,
            &managed,
            "123456789012",
            "us-east-1",
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn users_get_user_group_and_boundary_policies() {
        let dir = directory(
            r#"
[[group]]
name = "senders"
policies = ["AllowSendingOnly"]
inline_policies = { NoAdmin = '{"Statement":{"Effect":"Deny","Action":"ses:*","Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":"admin@example.com"}}}}' }
[[user]]
name = "app"
path = "/apps/"
groups = ["senders"]
policies = ["AllowFromMarketingAddress"]
permissions_boundary = "AllowRecipientsAtExampleCom"
"#,
        )
        .unwrap();
        let user = dir.user("app").unwrap();
        assert_eq!(
            user.principal.arn,
            "arn:aws:iam::123456789012:user/apps/app"
        );
        let names: Vec<&str> = user.policies.identity().iter().map(|p| &*p.name).collect();
        assert_eq!(
            names,
            [
                "AllowFromMarketingAddress",
                "AllowSendingOnly",
                "senders/NoAdmin"
            ]
        );
        assert_eq!(
            &*user.policies.boundary().unwrap().name,
            "AllowRecipientsAtExampleCom"
        );
    }

    #[test]
    fn missing_names_are_errors() {
        let err = directory("[[user]]\nname = \"a\"\ngroups = [\"nobody\"]\n").unwrap_err();
        assert!(
            err.contains(
                "iam.toml: line 3, column 11: user \"a\" groups: no group named \"nobody\""
            ),
            "{err}"
        );
        let err = directory("[[user]]\nname = \"a\"\npolicies = [\"NoSuchPolicy\"]\n").unwrap_err();
        assert!(
            err.contains(
                "iam.toml: line 3, column 13: user \"a\" policies: policy \"NoSuchPolicy\""
            ),
            "{err}"
        );
        let err = directory("[[user]]\nname = \"a\"\ninline_policies = { Bad = '{\"Statement\":{\"Effect\":\"allow\",\"Action\":\"ses:*\",\"Resource\":\"*\"}}' }\n")
            .unwrap_err();
        assert!(
            err.contains("inline policy \"Bad\" of \"a\"") && err.contains("Statement.Effect"),
            "{err}"
        );
    }
}
