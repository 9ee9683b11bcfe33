//! `sesgate check`: load everything `serve` would load, then lint. Errors are what would stop
//! `serve` (or a reload); warnings are policies and settings that load but probably do not do
//! what their author meant.

use crate::config::Config;
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

/// Checks the configuration `config` (read from `file`, or the embedded default): loads it
/// through the very path `serve` and SIGHUP use (writing nothing), so an error here is exactly
/// what would stop them, then lints.
pub fn check(config: &Config) -> Report {
    let mut report = Report::default();
    let loaded = match gateway::load(config, gateway::Effects::ReadOnly) {
        Ok(loaded) => loaded,
        Err(error) => {
            if let gateway::StartError::Upstream(message) = &error
                && message.starts_with("password_file")
            {
                report.notes.extend(credential_note(config));
            }
            report.errors.push(error.to_string());
            return report;
        }
    };
    let (iam, iam_file) = (&loaded.iam, &loaded.iam_file);
    let found = crate::commands::principals::review(config, loaded.authorizer());
    report.notes.extend(found.notes);
    report.warnings.extend(found.warnings);
    report.errors.extend(found.errors);
    report.users = iam.users.len();
    check_tls(config, &loaded, &mut report);
    check_exposure(config, &mut report);
    if let Some(dir) = config.upstream.url.strip_prefix("file://") {
        report.warnings.push(format!(
            "[upstream] url: messages go to the file outbox {dir}, not to SES. Fix: set url = \"smtp://email-smtp.REGION.amazonaws.com:587?tls=required\" to relay."
        ));
    }

    // Every policy file in the directory, attached or not, and every inline policy.
    for (file, policy) in &loaded.policy_files {
        lint_policy(
            policy,
            &file.display().to_string(),
            config,
            loaded.authorizer(),
            &mut report,
        );
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
                loaded.authorizer(),
                &mut report,
            );
        }
    }
    lint_identity_policies(&loaded, &mut report);
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

/// The identities' sending authorization policies: the general lints, and who each lets in and
/// what else it names (`iam::lint_identity_policy`). A file nothing attaches is only linted.
fn lint_identity_policies(loaded: &gateway::Loaded, report: &mut Report) {
    let identities = &loaded.authorizer().identities;
    for attached in &identities.attached {
        report.policies += 1;
        let warnings = iam::lint(&attached.policy)
            .into_iter()
            .chain(iam::lint_identity_policy(
                &attached.policy,
                &attached.identity_arn,
            ));
        for warning in warnings {
            report
                .warnings
                .push(format!("{}: {warning}", attached.source));
        }
    }
    for (file, _, policy) in &loaded.identity_policy_files {
        let used = identities
            .attached
            .iter()
            .any(|a| a.policy.name == policy.name);
        if !used {
            report.policies += 1;
            report.warnings.push(format!(
                "{}: no [[identity]] attaches the sending authorization policy {}, so it applies to nothing. Fix: add it to an identity's policies, or remove the file.",
                file.display(),
                policy.name
            ));
        }
    }
}

fn lint_policy(
    policy: &Policy,
    file: &str,
    config: &Config,
    authorizer: &gateway::Authorizer,
    report: &mut Report,
) {
    report.policies += 1;
    for warning in iam::lint(policy) {
        report.warnings.push(format!("{file}: {warning}"));
    }
    let prefix = format!(
        "arn:aws:ses:{}:{}:identity/",
        config.account.region, config.account.id
    );
    // `[account] identities` and this account's `[[identity]]`s, canonical.
    let identities = &authorizer.account.identities;
    for statement in &policy.statements {
        for resource in &statement.resources.patterns {
            let Some(arn) = resource.literal() else {
                continue;
            };
            let Some(rest) = arn.strip_prefix("arn:aws:ses:") else {
                continue;
            };
            // Another account's identity configured with its owner (sending authorization).
            if authorizer.identities.is_configured(arn) {
                continue;
            }
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

fn check_tls(config: &Config, loaded: &gateway::Loaded, report: &mut Report) {
    let cert = config.path(&config.tls.certificate);
    match (&loaded.certificate, &loaded.certificate_pem) {
        (gateway::Certificate::WouldGenerate, _) => report.warnings.push(format!(
            "[tls]: {} and {} do not exist; serve will generate a self-signed pair, which clients will not trust. Fix: install a certificate for the listener's name.",
            cert.display(),
            config.path(&config.tls.private_key).display()
        )),
        (_, Some(pem)) => {
            for warning in crate::certificate::warnings(pem, &config.hostname, jiff::Timestamp::now()) {
                report.warnings.push(format!("[tls] {}: {warning}", cert.display()));
            }
        }
        (_, None) => {}
    }
}

/// Settings that load but expose more than the operator probably meant.
fn check_exposure(config: &Config, report: &mut Report) {
    if config.account.identities.is_empty() {
        report.warnings.push(
            "[account] identities is empty, so every From and MAIL FROM domain counts as verified. Fix: list the identities verified in SES.".into(),
        );
    }
    for listener in &config.listeners {
        if listener.allow_plaintext_auth && !listener.address.ip().is_loopback() {
            report.warnings.push(format!(
                "[[listener]] {}: allow_plaintext_auth on an address that is not loopback lets passwords cross the network unencrypted. Fix: set allow_plaintext_auth = false, or listen on loopback only.",
                listener.address
            ));
        }
    }
}

/// A `password_file` under `/run/credentials/` is a systemd credential (`LoadCredential=`, as in
/// the packaged configuration): it exists only inside the running unit, so `check` run by hand
/// cannot read it, while the unit's own `ExecStartPre=sesgate check` can.
fn credential_note(config: &Config) -> Option<String> {
    let file = config.path(&config.upstream.password_file);
    (file.starts_with("/run/credentials/") && !file.exists()).then(|| {
        format!(
            "{} is a systemd credential (LoadCredential), present only inside the running service: `systemctl start sesgate` runs this check with it as ExecStartPre (output in `journalctl -u sesgate`).",
            file.display()
        )
    })
}
