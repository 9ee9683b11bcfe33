//! `sesgate import --authorization-details FILE [--identity-policies DIR] [--out DIR]`: the
//! account's real IAM, from `aws iam get-account-authorization-details` (users, groups, managed
//! policies at their default version, inline policies, permissions boundaries) and
//! `aws sesv2 get-email-identity-policies` output per identity (`DIR/IDENTITY[.json]`), written as
//! `OUT/iam.toml`, `OUT/NAME.json` (managed policies) and `OUT/identities/NAME.json` (sending
//! authorization policies).
//!
//! Re-importing updates everything from the export but keeps what never comes from AWS: each
//! user's `[[user.credentials]]` (secrets are never in an export), `networks`,
//! `client_certificates`, `enforce` and quotas, groups' `enforce` and quotas, users of other accounts (delegates
//! configured by hand) and `[[identity]]`s not in this import. Every policy is checked as `serve`
//! would load it before anything is written; `iam.toml` is written last, atomically. Users
//! without SES-relevant permission are imported and reported, never dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::aws_export::{AuthorizationDetails, Document, ExportedUser};
use crate::config::iam::{Group, IamFile, Identity, User};
use crate::gateway::request::parse_identity_name;
use crate::iam::{Effect, Policy, PolicySet, SEND_RAW_EMAIL, sending_authorization};

/// The command's arguments.
#[derive(Debug, Clone)]
pub struct Options {
    pub authorization_details: PathBuf,
    pub identity_policies: Option<PathBuf>,
    pub out: PathBuf,
}

/// The account of an IAM ARN (`arn:aws:iam::ACCOUNT:...`); `None` for AWS managed policies
/// (`arn:aws:iam::aws:policy/...`).
fn arn_account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// A TOML string: basic, escaped.
fn q(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|i| q(i.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A policy document as a TOML value: a multi-line literal string where it can be one (every
/// policy sesgate writes), else an escaped basic string.
fn policy_value(document: &str) -> String {
    let literal_safe = !document.contains("'''")
        && !document.ends_with('\'')
        && document
            .chars()
            .all(|c| c == '\n' || c == '\t' || !c.is_control());
    if literal_safe {
        format!("'''\n{document}'''")
    } else {
        q(document)
    }
}

/// Writes `text` to `path` through a temporary file renamed over it.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".import-tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text).map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// What one user keeps from the previous `iam.toml`.
fn kept_fields(previous: Option<&User>) -> String {
    let mut out = String::new();
    let Some(user) = previous else {
        return out;
    };
    if !user.networks.is_empty() {
        let networks: Vec<String> = user.networks.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "networks = {}", list(&networks));
    }
    if !user.client_certificates.is_empty() {
        let _ = writeln!(
            out,
            "client_certificates = {}",
            list(&user.client_certificates)
        );
    }
    if let Some(enforce) = user.enforce {
        let _ = writeln!(out, "enforce = {enforce}");
    }
    out.push_str(&kept_quotas(
        user.max_send_rate.as_ref(),
        user.max_24_hour_send,
    ));
    out
}

/// The per-user or per-group quotas of the previous `iam.toml`: they are the operator's, not
/// AWS's (an export has no SES quotas), so a re-import keeps them.
fn kept_quotas(
    max_send_rate: Option<&toml::Spanned<f64>>,
    max_24_hour_send: Option<u64>,
) -> String {
    let mut out = String::new();
    if let Some(rate) = max_send_rate {
        let _ = writeln!(out, "max_send_rate = {:?}", rate.get_ref());
    }
    if let Some(daily) = max_24_hour_send {
        let _ = writeln!(out, "max_24_hour_send = {daily}");
    }
    out
}

fn credentials(user: Option<&User>) -> String {
    let mut out = String::new();
    for credential in user.map(|u| u.credentials.as_slice()).unwrap_or_default() {
        let _ = writeln!(
            out,
            "[[user.credentials]]\nusername = {}\npassword_hash = {}",
            q(credential.username.get_ref()),
            q(credential.password_hash.get_ref())
        );
    }
    out
}

fn inline_table(table: &str, policies: &[(String, Document)]) -> String {
    let mut out = String::new();
    if policies.is_empty() {
        return out;
    }
    let _ = writeln!(out, "[{table}.inline_policies]");
    for (name, document) in policies {
        let _ = writeln!(out, "{} = {}", q(name), policy_value(document));
    }
    out
}

/// A previous user (of another account) written back as it was.
fn user_as_was(user: &User) -> String {
    let mut out = format!(
        "[[user]]\nname = {}\npath = {}\n",
        q(&user.name),
        q(&user.path)
    );
    if let Some(id) = &user.id {
        let _ = writeln!(out, "id = {}", q(id));
    }
    if let Some(account) = &user.account {
        let _ = writeln!(out, "account = {}", q(account.get_ref()));
    }
    let names = |items: &[toml::Spanned<String>]| -> Vec<String> {
        items.iter().map(|i| i.get_ref().clone()).collect()
    };
    if !user.groups.is_empty() {
        let _ = writeln!(out, "groups = {}", list(&names(&user.groups)));
    }
    if !user.policies.is_empty() {
        let _ = writeln!(out, "policies = {}", list(&names(&user.policies)));
    }
    if let Some(boundary) = &user.permissions_boundary {
        let _ = writeln!(out, "permissions_boundary = {}", q(boundary.get_ref()));
    }
    out.push_str(&kept_fields(Some(user)));
    let inline: Vec<(String, Document)> = user
        .inline_policies
        .iter()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    out.push_str(&inline_table("user", &inline));
    out.push_str(&credentials(Some(user)));
    out
}

/// A previous identity written back as it was.
fn identity_as_was(identity: &Identity) -> String {
    let mut out = format!("[[identity]]\nname = {}\n", q(identity.name.get_ref()));
    if let Some(account) = &identity.account {
        let _ = writeln!(out, "account = {}", q(account.get_ref()));
    }
    if !identity.policies.is_empty() {
        let names: Vec<String> = identity
            .policies
            .iter()
            .map(|p| p.get_ref().clone())
            .collect();
        let _ = writeln!(out, "policies = {}", list(&names));
    }
    let inline: Vec<(String, Document)> = identity
        .inline_policies
        .iter()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    out.push_str(&inline_table("identity", &inline));
    out
}

/// Whether `user`'s policies can allow `ses:SendRawEmail` at all (some Allow covers the action,
/// and the boundary's too when one is set).
fn can_send(policies: &PolicySet) -> bool {
    let allows = |policy: &Policy| {
        policy
            .statements
            .iter()
            .any(|s| s.effect == Effect::Allow && s.matches_action(SEND_RAW_EMAIL))
    };
    policies.identity().iter().any(|p| allows(p)) && policies.boundary().is_none_or(|b| allows(b))
}

/// Managed policies written so far, by name: (ARN, document).
type Used = BTreeMap<String, (String, Document)>;

/// The managed policy `arn` for `who`: checked as `serve` loads it, recorded in `used` under its
/// name (the file stem), compiled.
fn use_policy(
    used: &mut Used,
    by_arn: &HashMap<&str, &crate::config::aws_export::ManagedPolicy>,
    arn: &str,
    who: &str,
) -> Result<(String, Arc<Policy>), String> {
    let policy = by_arn.get(arn).ok_or_else(|| {
        format!(
            "{who}: managed policy {arn} is not in the export's Policies (export with the default --filter, which includes LocalManagedPolicy and AWSManagedPolicy)"
        )
    })?;
    if let Some((other, _)) = used.get(&policy.name)
        && other != arn
    {
        return Err(format!(
            "{who}: managed policies {other} and {arn} have the same name {:?}; sesgate names policy files by name, so rename one in AWS",
            policy.name
        ));
    }
    let compiled = Policy::parse(&policy.name, &policy.document).map_err(|e| {
        format!(
            "managed policy {arn} (version {}): {e}",
            policy.default_version
        )
    })?;
    used.insert(
        policy.name.clone(),
        (arn.to_owned(), policy.document.clone()),
    );
    Ok((policy.name.clone(), Arc::new(compiled)))
}

/// One identity's policies as read from the `--identity-policies` directory.
struct IdentityExport {
    name: String,
    policies: Vec<(String, Document)>,
}

fn read_identity_exports(dir: &Path) -> Result<Vec<IdentityExport>, String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if path.is_file() && !file.starts_with('.') {
            files.push(path);
        }
    }
    files.sort();
    let mut identities = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let written = file.strip_suffix(".json").unwrap_or(file);
        let name = parse_identity_name(written).ok_or_else(|| {
            format!(
                "{}: the file name must be the identity (a domain or an address, optionally with .json), not {written:?}",
                path.display()
            )
        })?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let policies =
            crate::config::aws_export::parse_identity_policies(&text, &path.display().to_string())
                .map_err(|e| e.to_string())?;
        for (policy, document) in &policies {
            if !sending_authorization::is_policy_name(policy) {
                return Err(format!(
                    "{}: {policy:?} is not a policy name SES accepts",
                    path.display()
                ));
            }
            Policy::parse_resource(policy, document)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if policies.len() > sending_authorization::MAX_POLICIES_PER_IDENTITY {
            return Err(format!(
                "{}: {} policies; SES allows at most {} per identity",
                path.display(),
                policies.len(),
                sending_authorization::MAX_POLICIES_PER_IDENTITY
            ));
        }
        identities.push(IdentityExport { name, policies });
    }
    Ok(identities)
}

/// Runs the import; the report to print.
pub fn import(options: &Options) -> Result<String, String> {
    let source = &options.authorization_details;
    let text = std::fs::read_to_string(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let details =
        AuthorizationDetails::parse(&text).map_err(|e| format!("{}: {e}", source.display()))?;
    let identities = match &options.identity_policies {
        Some(dir) => read_identity_exports(dir)?,
        None => Vec::new(),
    };

    // The account: every user, group and customer managed policy must agree on it.
    let mut accounts: Vec<&str> = details
        .users
        .iter()
        .map(|u| u.arn.as_str())
        .chain(details.groups.iter().map(|g| g.arn.as_str()))
        .chain(details.policies.iter().map(|p| p.arn.as_str()))
        .filter_map(arn_account)
        .collect();
    accounts.sort();
    accounts.dedup();
    let account = match accounts.as_slice() {
        [one] => (*one).to_owned(),
        [] => {
            return Err(format!(
                "{}: no ARN in the export names an account",
                source.display()
            ));
        }
        several => {
            return Err(format!(
                "{}: the export mixes accounts {}; import one account at a time",
                source.display(),
                several.join(", ")
            ));
        }
    };

    // Managed policies: each used one once, by name (the file stem), checked as serve loads it.
    let by_arn: HashMap<&str, &crate::config::aws_export::ManagedPolicy> = details
        .policies
        .iter()
        .map(|p| (p.arn.as_str(), p))
        .collect();
    let mut used: BTreeMap<String, (String, Document)> = BTreeMap::new();
    let check_inline = |owner: &str, inline: &[(String, Document)]| -> Result<(), String> {
        for (name, document) in inline {
            Policy::parse(&format!("{owner}/{name}"), document)
                .map_err(|e| format!("inline policy {name:?} of {owner:?}: {e}"))?;
        }
        Ok(())
    };

    let previous_file = options.out.join("iam.toml");
    let previous = if previous_file.exists() {
        Some(IamFile::load(&previous_file).map_err(|e| {
            format!("{e} (the previous iam.toml must load for its credentials to be kept; fix or remove it)")
        })?)
    } else {
        None
    };
    let previous_user =
        |name: &str| -> Option<&User> { previous.as_ref()?.users.iter().find(|u| u.name == name) };
    let previous_group = |name: &str| -> Option<&Group> {
        previous.as_ref()?.groups.iter().find(|g| g.name == name)
    };

    let mut report = Vec::new();
    let mut toml = format!(
        "# Written by `sesgate import` from {} (account {account}).\n# Re-importing rewrites this file but keeps every [[user.credentials]], networks,\n# client_certificates, enforce and quotas, users of other accounts and identities not re-imported.\n",
        source
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("the export")
    );

    let mut group_policies: HashMap<&str, Vec<Arc<Policy>>> = HashMap::new();
    for group in &details.groups {
        let who = format!("group {:?}", group.name);
        let mut names = Vec::new();
        let mut compiled = Vec::new();
        for attached in &group.attached {
            let (name, policy) = use_policy(&mut used, &by_arn, &attached.arn, &who)?;
            compiled.push(policy);
            names.push(name);
        }
        check_inline(&group.name, &group.inline)?;
        for (name, document) in &group.inline {
            compiled.push(Arc::new(Policy::parse(name, document).expect("checked")));
        }
        group_policies.insert(&group.name, compiled);
        let _ = write!(toml, "\n[[group]]\nname = {}\n", q(&group.name));
        if !names.is_empty() {
            let _ = writeln!(toml, "policies = {}", list(&names));
        }
        if let Some(previous) = previous_group(&group.name) {
            if let Some(enforce) = previous.enforce {
                let _ = writeln!(toml, "enforce = {enforce}");
            }
            toml.push_str(&kept_quotas(
                previous.max_send_rate.as_ref(),
                previous.max_24_hour_send,
            ));
        }
        toml.push_str(&inline_table("group", &group.inline));
    }

    let mut without_credentials = Vec::new();
    for user in &details.users {
        let who = format!("user {:?}", user.name);
        if arn_account(&user.arn) != Some(account.as_str()) {
            return Err(format!(
                "{who}: ARN {} is not in account {account}",
                user.arn
            ));
        }
        let ExportedUser {
            name,
            path,
            id,
            groups,
            attached,
            inline,
            boundary,
            ..
        } = user;
        let mut names = Vec::new();
        let mut compiled = Vec::new();
        for policy in attached {
            let (policy_name, policy) = use_policy(&mut used, &by_arn, &policy.arn, &who)?;
            compiled.push(policy);
            names.push(policy_name);
        }
        check_inline(name, inline)?;
        for (policy_name, document) in inline {
            compiled.push(Arc::new(
                Policy::parse(policy_name, document).expect("checked"),
            ));
        }
        for group in groups {
            let members = group_policies.get(group.as_str()).ok_or_else(|| {
                format!("{who}: group {group:?} is not in the export's GroupDetailList")
            })?;
            compiled.extend(members.iter().cloned());
        }
        let (boundary_name, boundary_policy) = match boundary {
            Some(arn) => {
                let (name, policy) = use_policy(
                    &mut used,
                    &by_arn,
                    arn,
                    &format!("{who} permissions boundary"),
                )?;
                (Some(name), Some(policy))
            }
            None => (None, None),
        };
        if !can_send(&PolicySet::new(compiled, boundary_policy)) {
            report.push(format!(
                "user {name:?} has no SES-relevant permission: no policy allows ses:SendRawEmail{}. Imported; it can send only where an identity's sending authorization policy names it.",
                if boundary_name.is_some() { " within its permissions boundary" } else { "" }
            ));
        }
        let _ = write!(
            toml,
            "\n[[user]]\nname = {}\npath = {}\naccount = {}\n",
            q(name),
            q(path),
            q(&account)
        );
        if let Some(id) = id {
            let _ = writeln!(toml, "id = {}", q(id));
        }
        if !groups.is_empty() {
            let _ = writeln!(toml, "groups = {}", list(groups));
        }
        if !names.is_empty() {
            let _ = writeln!(toml, "policies = {}", list(&names));
        }
        if let Some(boundary) = &boundary_name {
            let _ = writeln!(toml, "permissions_boundary = {}", q(boundary));
        }
        let kept = previous_user(name);
        toml.push_str(&kept_fields(kept));
        toml.push_str(&inline_table("user", inline));
        let credentials = credentials(kept);
        if credentials.is_empty() {
            without_credentials.push(name.clone());
        }
        toml.push_str(&credentials);
    }
    if !without_credentials.is_empty() {
        report.push(format!(
            "no [[user.credentials]] yet for {}: add them (sesgate hash-password), then re-import keeps them.",
            without_credentials.join(", ")
        ));
    }

    // Users of the previous file: of another account kept as they were, of this one gone from
    // the export dropped.
    let exported: HashSet<&str> = details.users.iter().map(|u| u.name.as_str()).collect();
    for user in previous.iter().flat_map(|p| &p.users) {
        if exported.contains(user.name.as_str()) {
            continue;
        }
        match user.account.as_ref().map(|a| a.get_ref().as_str()) {
            Some(other) if other != account => {
                toml.push('\n');
                toml.push_str(&user_as_was(user));
                report.push(format!(
                    "kept user {:?} of account {other} (not in this account's export)",
                    user.name
                ));
            }
            _ => report.push(format!(
                "removed user {:?}: not in the export{}",
                user.name,
                if user.credentials.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (its {} credential(s) went with it)",
                        user.credentials.len()
                    )
                }
            )),
        }
    }

    // Identities: a policy name used by one identity becomes identities/NAME.json; a name two
    // identities use is written inline in each but the first.
    let mut identity_files: BTreeMap<String, Document> = BTreeMap::new();
    let mut imported_identities = HashSet::new();
    for identity in &identities {
        imported_identities.insert(identity.name.clone());
        let _ = write!(
            toml,
            "\n[[identity]]\nname = {}\naccount = {}\n",
            q(&identity.name),
            q(&account)
        );
        let mut files = Vec::new();
        let mut inline = Vec::new();
        for (name, document) in &identity.policies {
            if identity_files.contains_key(name) {
                inline.push((name.clone(), document.clone()));
            } else {
                identity_files.insert(name.clone(), document.clone());
                files.push(name.clone());
            }
        }
        if !files.is_empty() {
            let _ = writeln!(toml, "policies = {}", list(&files));
        }
        toml.push_str(&inline_table("identity", &inline));
        report.push(format!(
            "identity {} of account {account}: {} sending authorization policies",
            identity.name,
            identity.policies.len()
        ));
    }
    for identity in previous.iter().flat_map(|p| &p.identities) {
        let name = parse_identity_name(identity.name.get_ref()).unwrap_or_default();
        let owner = identity.account.as_ref().map(|a| a.get_ref().as_str());
        if imported_identities.contains(&name) && owner.is_none_or(|o| o == account) {
            continue;
        }
        toml.push('\n');
        toml.push_str(&identity_as_was(identity));
        report.push(format!("kept identity {name} (not in this import)"));
    }

    // The new file must load before anything is written (its TOML and every check of iam.toml).
    IamFile::parse(&previous_file, &toml)
        .map_err(|e| format!("sesgate import wrote an iam.toml that does not load (a bug): {e}"))?;

    std::fs::create_dir_all(options.out.join("identities"))
        .map_err(|e| format!("{}: {e}", options.out.display()))?;
    let mut written = HashSet::new();
    for (name, (_, document)) in &used {
        let file = options.out.join(format!("{name}.json"));
        write_atomically(&file, &format!("{document}\n"))?;
        written.insert(file);
    }
    for (name, document) in &identity_files {
        let file = options.out.join("identities").join(format!("{name}.json"));
        write_atomically(&file, &format!("{document}\n"))?;
        written.insert(file);
    }
    write_atomically(&previous_file, &toml)?;

    let unattached = details.policies.len() - used.len();
    let mut out = format!(
        "imported {} users, {} groups, {} managed policies and {} identities of account {account} into {}\n",
        details.users.len(),
        details.groups.len(),
        used.len(),
        identities.len(),
        options.out.display()
    );
    if unattached > 0 {
        let _ = writeln!(
            out,
            "{unattached} managed policies of the export are attached to no user or group: not written"
        );
    }
    if details.roles > 0 {
        let _ = writeln!(
            out,
            "{} roles ignored: sesgate authenticates IAM users",
            details.roles
        );
    }
    for line in report {
        let _ = writeln!(out, "{line}");
    }
    for dir in [options.out.clone(), options.out.join("identities")] {
        let mut stale: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json") && !written.contains(p))
            .map(|p| p.display().to_string())
            .collect();
        stale.sort();
        for file in stale {
            let _ = writeln!(
                out,
                "left in place: {file} (not written by this import; sesgate still loads it)"
            );
        }
    }
    let _ = write!(
        out,
        "next: set [account] id = \"{account}\" (or keep each user's account) and run `sesgate check`"
    );
    Ok(out)
}
