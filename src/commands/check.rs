//! `sesgate check`: load everything `serve` would load, then lint. Errors are what would stop
//! `serve` (or a reload); warnings are policies and settings that load but probably do not do
//! what their author meant.

use std::path::Path;

use crate::config::Config;
use crate::credentials::{CredentialError, CredentialStore};
use crate::gateway;
use crate::iam::{self, Policy};

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub policies: usize,
    pub users: usize,
    /// Facts the operator must know (principals without AUTH, report-only users).
    pub notes: Vec<String>,
}

/// Checks the configuration `config` (read from `file`, or the embedded default).
pub fn check(config: &Config) -> Report {
    let mut report = Report::default();
    let (authorizer, iam, iam_file) = match gateway::load_authorizer(config) {
        Ok(loaded) => loaded,
        Err(error) => {
            report.errors.push(error.to_string());
            return report;
        }
    };
    let found = crate::commands::principals::review(config, &authorizer);
    report.notes.extend(found.notes);
    report.warnings.extend(found.warnings);
    report.errors.extend(found.errors);
    report.users = iam.users.len();
    let logins = iam.logins();
    if !config.allow_demo_password {
        for user in crate::credentials::demo_password_users(&logins) {
            report.errors.push(format!(
                "{}: {}",
                iam_file.display(),
                CredentialError::DemoPassword(user)
            ));
        }
    }
    if let Err(error) = CredentialStore::new(logins) {
        report
            .errors
            .push(format!("{}: {error}", iam_file.display()));
    }
    check_tls(config, &mut report);
    if let Some(dir) = config.upstream.url.strip_prefix("file://") {
        report.warnings.push(format!(
            "[upstream] url: messages go to the file outbox {dir}, not to SES. Fix: set url = \"smtp://email-smtp.REGION.amazonaws.com:587?tls=required\" to relay."
        ));
    } else if let Err(e) = crate::relay::UpstreamUrl::parse(&config.upstream.url) {
        report
            .errors
            .push(format!("[upstream] url {:?}: {e}", config.upstream.url));
    }

    // Every policy file in the directory, attached or not, and every inline policy.
    let dir = config.path(&config.iam.dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
    {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                report.errors.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        match Policy::parse(name, &text) {
            Ok(policy) => lint_policy(&policy, &file.display().to_string(), config, &mut report),
            Err(e) => report.errors.push(format!("{}: {e}", file.display())),
        }
    }
    let inline = iam
        .groups
        .iter()
        .flat_map(|g| {
            g.inline_policies
                .iter()
                .map(move |(n, t)| (format!("{}/{n}", g.name), t))
        })
        .chain(iam.users.iter().flat_map(|u| {
            u.inline_policies
                .iter()
                .map(move |(n, t)| (format!("{}/{n}", u.name), t))
        }));
    for (name, text) in inline {
        if let Ok(policy) = Policy::parse(&name, text) {
            lint_policy(
                &policy,
                &format!("{} (inline {name})", iam_file.display()),
                config,
                &mut report,
            );
        }
    }
    for user in &iam.users {
        if user.credentials.is_empty() {
            report.warnings.push(format!(
                "{}: user {:?} has no [[user.credentials]], so nobody can send as it. Fix: add a credential (sesgate hash-password), or remove the user.",
                iam_file.display(),
                user.name
            ));
        }
    }
    report
}

fn lint_policy(policy: &Policy, file: &str, config: &Config, report: &mut Report) {
    report.policies += 1;
    for warning in iam::lint(policy) {
        report.warnings.push(format!("{file}: {warning}"));
    }
    let prefix = format!(
        "arn:aws:ses:{}:{}:identity/",
        config.account.region, config.account.id
    );
    let identities: Vec<String> = config
        .account
        .identities
        .iter()
        .map(|i| gateway::request::canonical_identity(i))
        .collect();
    for statement in &policy.statements {
        for resource in &statement.resources.patterns {
            let Some(arn) = resource.literal() else {
                continue;
            };
            let Some(rest) = arn.strip_prefix("arn:aws:ses:") else {
                continue;
            };
            if !arn.starts_with(&prefix) && rest.contains(":identity/") {
                report.warnings.push(format!(
                    "{file}: {} Statement[{}]: resource {arn} is not in this account and region ({}, {}). Fix: use {prefix}NAME.",
                    policy.name, statement.index, config.account.id, config.account.region
                ));
            } else if let Some(name) = arn.strip_prefix(&prefix)
                && !identities.is_empty()
                && !identities.contains(&gateway::request::canonical_identity(name))
            {
                report.warnings.push(format!(
                    "{file}: {} Statement[{}]: resource {arn} names no configured identity, so it never matches a request. Fix: add {name:?} to [account] identities, or correct the ARN.",
                    policy.name, statement.index
                ));
            }
        }
    }
}

fn check_tls(config: &Config, report: &mut Report) {
    let (cert, key) = (
        config.path(&config.tls.certificate),
        config.path(&config.tls.private_key),
    );
    match (Path::new(&cert).exists(), Path::new(&key).exists()) {
        (false, false) => report.warnings.push(format!(
            "[tls]: {} and {} do not exist; serve will generate a self-signed pair, which clients will not trust. Fix: install a certificate for the listener's name.",
            cert.display(),
            key.display()
        )),
        _ => {
            if let Err(e) = crate::smtp::tls::load_or_generate(&cert, &key, &[]) {
                report.errors.push(e.to_string());
            }
        }
    }
}
