//! What an operator needs to know about the serving certificate: when it expires, whether it is
//! self-signed, and whether it names the gateway's `hostname`. Read from PEM, no I/O.

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

/// Warn when the certificate expires within this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// The first certificate of `pem`'s expiry.
pub fn not_after(pem: &str) -> Option<jiff::Timestamp> {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// Warnings about the first certificate of `pem` at time `now`, for `check`.
pub fn warnings(pem: &str, hostname: &str, now: jiff::Timestamp) -> Vec<String> {
    let Ok((_, pem)) = parse_x509_pem(pem.as_bytes()) else {
        return vec!["the certificate file holds no readable PEM certificate".into()];
    };
    let Ok(cert) = pem.parse_x509() else {
        return vec!["the certificate does not parse as X.509".into()];
    };
    let mut warnings = Vec::new();
    if cert.issuer().as_raw() == cert.subject().as_raw() {
        warnings.push("the certificate is self-signed, so clients that verify (as they should) refuse it. Fix: install a certificate from a CA the clients trust.".to_owned());
    }
    let expiry = cert.validity().not_after.timestamp();
    let left_days = (expiry - now.as_second()).div_euclid(86_400);
    if expiry <= now.as_second() {
        warnings.push(format!(
            "the certificate expired {} day(s) ago. Fix: renew it, then reload (SIGHUP).",
            -left_days
        ));
    } else if left_days < EXPIRY_WARNING_DAYS {
        warnings.push(format!(
            "the certificate expires in {left_days} day(s). Fix: renew it, then reload (SIGHUP)."
        ));
    }
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    if names.is_empty() {
        // Only without DNS SANs do clients look at the common name.
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
        );
    }
    if !names.iter().any(|name| name_matches(name, hostname)) {
        warnings.push(format!(
            "the certificate names {names:?}, not the hostname {hostname:?}, so clients that verify refuse it. Fix: set hostname to the certificate's name, or install one for {hostname:?}."
        ));
    }
    warnings
}

/// A certificate name (possibly `*.example.com`, one leftmost label) matching a host name.
fn name_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        assert!(name_matches("Mail.Example.com", "mail.example.com"));
        assert!(name_matches("*.example.com", "mail.example.com"));
        assert!(!name_matches("*.example.com", "a.mail.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
    }
}
