//! `sesgate check`'s view of principals without AUTH, report-only users and the shadow set:
//! who can send without a password, through which listeners, and what is not enforced.

use crate::config::Config;
use crate::gateway::{Authorizer, load_authorizer};
use crate::smtp::{AuthMode, TlsMode};

/// Notes (facts an operator must know), warnings and errors about `authorizer`'s principals.
#[derive(Debug, Default)]
pub struct Findings {
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

fn auth_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Required => "required",
        AuthMode::Optional => "optional",
        AuthMode::None => "none",
    }
}

pub fn review(config: &Config, authorizer: &Authorizer) -> Findings {
    let mut found = Findings::default();
    let open: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.auth != AuthMode::Required)
        .collect();
    let describe = |ls: &[&crate::config::Listener]| {
        ls.iter()
            .map(|l| format!("{} (auth = \"{}\")", l.address, auth_name(l.auth)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (user, networks, certificates) in authorizer.directory.principals_without_auth() {
        if !networks.is_empty() {
            let networks: Vec<String> = networks.iter().map(ToString::to_string).collect();
            if open.is_empty() {
                found.warnings.push(format!(
                    "user {user:?} has networks {} but every listener has auth = \"required\": it cannot send without AUTH. Fix: set auth = \"optional\" or \"none\" on the listener its devices use.",
                    networks.join(", ")
                ));
            } else {
                found.notes.push(format!(
                    "user {user:?} sends without AUTH from {} through {}",
                    networks.join(", "),
                    describe(&open)
                ));
            }
        }
        if certificates > 0 {
            let with_ca: Vec<_> = open
                .iter()
                .copied()
                .filter(|l| !l.client_ca.as_os_str().is_empty() && l.tls != TlsMode::None)
                .collect();
            if with_ca.is_empty() {
                found.warnings.push(format!(
                    "user {user:?} has client_certificates but no listener with auth other than \"required\" sets client_ca: the certificates are never asked for."
                ));
            } else {
                found.notes.push(format!(
                    "user {user:?} sends without AUTH with a client certificate ({certificates}) through {}",
                    describe(&with_ca)
                ));
            }
        }
    }
    for listener in &config.listeners {
        if !listener.client_ca.as_os_str().is_empty() && listener.tls == TlsMode::None {
            found.warnings.push(format!(
                "listener {}: client_ca is set but tls = \"none\": no certificate can be presented.",
                listener.address
            ));
        }
    }
    let report_only = authorizer.not_enforced();
    if !report_only.is_empty() {
        found.notes.push(format!(
            "report-only (enforce = false; policy refusals are logged and relayed anyway): {}",
            report_only.join(", ")
        ));
    }
    if !config.iam.shadow_dir.as_os_str().is_empty() {
        let mut shadow = config.clone();
        shadow.iam.dir = config.iam.shadow_dir.clone();
        match load_authorizer(&shadow) {
            Ok((set, ..)) => found.notes.push(format!(
                "shadow set {}: {} user(s), decided beside the live set",
                config.path(&config.iam.shadow_dir).display(),
                set.directory.len()
            )),
            Err(e) => found.errors.push(format!("[iam] shadow_dir: {e}")),
        }
    }
    found
}
