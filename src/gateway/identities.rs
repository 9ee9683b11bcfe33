//! Identities with owners and sending authorization policies (`[[identity]]` in `iam.toml`,
//! policy files in `policies/identities/`), compiled once per load: which identities each
//! account has verified, and the resource-based policies attached to each identity ARN.
//!
//! Loading refuses what SES would refuse of an identity policy (`iam::sending_authorization`),
//! naming `iam.toml`'s line, the policy file and the JSON path. The same identity may be
//! verified by several accounts (each is its own resource, `arn:...:OWNER:identity/NAME`); the
//! same owner and name twice is an error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::request;
use crate::config::ConfigError;
use crate::config::iam::IamFile;
use crate::iam::{Policy, ResourceSide, sending_authorization};

/// A parsed `policies/identities/NAME.json`: its file, its text (SES's size limit is checked
/// against it) and the policy.
pub type IdentityPolicyFile = (PathBuf, String, Policy);

/// One policy attached to one identity, for `sesgate check`'s lints.
#[derive(Debug, Clone)]
pub struct Attached {
    pub identity_arn: String,
    pub policy: Arc<Policy>,
    /// Where the policy was written: its file, or `iam.toml (inline NAME of IDENTITY)`.
    pub source: String,
}

/// The identities of every owner and their sending authorization policies.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    /// Identity ARN -> the policies attached to it (possibly none).
    policies: HashMap<String, Arc<[Arc<Policy>]>>,
    /// `[[identity]]`s of `[account] id`, canonical (they join `[account] identities`).
    pub own: Vec<String>,
    /// `[[identity]]`s of other accounts, by owner, canonical.
    pub others: BTreeMap<String, Vec<String>>,
    /// Every attachment, in file order.
    pub attached: Vec<Attached>,
}

impl Identities {
    /// Compiles `iam`'s `[[identity]]` entries (read from `iam_file`), finding managed policies
    /// among `files` (every file of `dir/identities/`, parsed).
    pub fn load(
        iam: &IamFile,
        iam_file: &Path,
        dir: &Path,
        files: &[IdentityPolicyFile],
        account_id: &str,
        region: &str,
    ) -> Result<Identities, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: iam_file.to_owned(),
            message,
        };
        let by_name: HashMap<&str, &IdentityPolicyFile> =
            files.iter().map(|file| (&*file.2.name, file)).collect();
        let mut identities = Identities::default();
        for entry in &iam.identities {
            let at = iam.position(entry.name.span());
            let written = entry.name.get_ref();
            let name = request::parse_identity_name(written).ok_or_else(|| {
                invalid(format!(
                    "{at}: identity {written:?} is neither a domain nor an email address"
                ))
            })?;
            let owner = entry
                .account
                .as_ref()
                .map_or(account_id, |a| a.get_ref().as_str());
            let arn = format!(
                "arn:{}:ses:{region}:{owner}:identity/{name}",
                request::partition(region)
            );
            let listed = if owner == account_id {
                &mut identities.own
            } else {
                identities.others.entry(owner.to_owned()).or_default()
            };
            if listed.contains(&name) {
                return Err(invalid(format!(
                    "{at}: identity {name:?} of account {owner} is defined twice"
                )));
            }
            listed.push(name.clone());
            let mut attached = Vec::new();
            for policy_name in &entry.policies {
                let field = format!(
                    "{}: identity {name:?} policies",
                    iam.position(policy_name.span())
                );
                let (file, text, policy) =
                    by_name.get(policy_name.get_ref().as_str()).ok_or_else(|| {
                        invalid(format!(
                            "{field}: policy {:?}: no file {}",
                            policy_name.get_ref(),
                            dir.join("identities")
                                .join(format!("{}.json", policy_name.get_ref()))
                                .display()
                        ))
                    })?;
                sending_authorization::check(policy, text, &arn).map_err(|e| {
                    invalid(format!(
                        "{field}: {} ({}): {e}",
                        policy.name,
                        file.display()
                    ))
                })?;
                let policy = Arc::new(policy.clone());
                identities.attached.push(Attached {
                    identity_arn: arn.clone(),
                    policy: Arc::clone(&policy),
                    source: file.display().to_string(),
                });
                attached.push(policy);
            }
            for (policy_name, text) in &entry.inline_policies {
                let field = format!("{at}: identity {name:?} inline policy {policy_name:?}");
                let policy = Policy::parse_resource(&format!("{name}/{policy_name}"), text)
                    .map_err(|e| invalid(format!("{field}: {e}")))?;
                sending_authorization::check(&policy, text, &arn)
                    .map_err(|e| invalid(format!("{field}: {e}")))?;
                let policy = Arc::new(policy);
                identities.attached.push(Attached {
                    identity_arn: arn.clone(),
                    policy: Arc::clone(&policy),
                    source: format!("{} (inline {policy_name} of {name})", iam_file.display()),
                });
                attached.push(policy);
            }
            identities.policies.insert(arn, attached.into());
        }
        Ok(identities)
    }

    /// The resource-based side of `resource` for a caller of `caller_account`: a configured
    /// identity's policies; nothing to consult for the caller's own account's other resources;
    /// for another account's resource without configured policies, no policy at all, so nobody
    /// outside that account is let in and the client hears SES's access-denied reply ("The IAM
    /// policy, or the SES sending authorization policy, of the user who owns the SMTP credentials
    /// doesn't allow the call", ses-iam-facts.md §A5): fail closed.
    pub fn side<'a>(&'a self, resource: &'a str, caller_account: &str) -> Option<ResourceSide<'a>> {
        let owner = resource.split(':').nth(4).unwrap_or_default();
        match self.policies.get(resource) {
            Some(policies) => Some(ResourceSide { owner, policies }),
            None if owner == caller_account => None,
            None => Some(ResourceSide {
                owner,
                policies: &[],
            }),
        }
    }

    /// Whether `arn` is a configured identity's ARN (of any owner).
    pub fn is_configured(&self, arn: &str) -> bool {
        self.policies.contains_key(arn)
    }
}
