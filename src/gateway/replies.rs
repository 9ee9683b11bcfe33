//! Every SES reply text the gateway writes, in one place: the refusals before any policy, the
//! access-denied reply of a policy, and the relay's outcomes. SES's wording is kept to the byte
//! (SPEC §4, §6, §7) because legacy applications match on it. The protocol's own replies (AUTH,
//! syntax, limits) are `smtp::reply`'s.

use crate::iam::SEND_RAW_EMAIL;
use crate::smtp::Reply;
use crate::smtp::reply::{echo, printable};

/// The message cannot be read unambiguously (`why` is sesgate's own text).
pub fn transaction_failed(why: &str) -> Reply {
    Reply::new(554, format!("5.6.0 Transaction failed: {}", echo(why)))
}

/// A malformed `X-SES-*-ARN` header (SPEC §4).
pub fn invalid_arn(arn: &str) -> Reply {
    Reply::new(
        554,
        format!("5.6.0 Transaction failed: Invalid ARN '{}'", echo(arn)),
    )
}

/// An address an `X-SES-*-ARN` identity does not cover (SPEC §4).
pub fn misaligned(address: &str, arn: &str) -> Reply {
    Reply::new(
        554,
        format!(
            "5.7.1 Message rejected: The address '{}' does not align with the given ARN '{}'",
            echo(address),
            echo(arn)
        ),
    )
}

/// Addresses no configured identity covers, in `region` (SPEC §4).
pub fn unverified(region: &str, addresses: &str) -> Reply {
    Reply::new(
        554,
        format!(
            "5.7.1 Message rejected: Email address is not verified. The following identities failed the check in region {}: {}",
            region.to_uppercase(),
            // Strictly read addresses, each at most 320 bytes; the list is never cut.
            printable(addresses, usize::MAX)
        ),
    )
}

/// A policy did not allow the request on `resource` (SPEC §6).
pub fn access_denied(user_arn: &str, resource: &str) -> Reply {
    Reply::new(
        554,
        format!(
            "5.7.1 Access denied: User `{user_arn}' is not authorized to perform `{SEND_RAW_EMAIL}' on resource `{resource}'"
        ),
    )
}

/// sesgate cannot decide (an authenticated name without an IAM user: a bug). Fails closed.
pub fn internal_failure() -> Reply {
    Reply::new(451, "4.3.0 Temporary service failure")
}

/// The spool cannot take the message: the disk is full or `[spool] max_bytes` is reached
/// (RFC 3463 4.3.1; a client retries, an MTA keeps it queued).
pub fn insufficient_storage() -> Reply {
    Reply::new(452, "4.3.1 Insufficient system storage")
}

/// The upstream accepted the message under `id` (SPEC §6).
pub fn relayed(id: &str) -> Reply {
    Reply::new(250, format!("2.0.0 Ok {id}"))
}

/// What `simulate` shows for an allowed transaction: the reply it gets once relayed.
pub const SIMULATED_ALLOWED: &str = "250 2.0.0 Ok <id> (once the upstream accepts the message)";

/// The upstream deferred the message or could not be reached (SPEC §7). Never the cause.
pub fn relay_deferred() -> Reply {
    Reply::new(451, "4.4.1 Temporary service failure")
}

/// The upstream (or sesgate, for a message it cannot hand on) refused for good: `text` is
/// already one bounded printable line (`relay::reply_text`).
pub fn relay_refused(code: u16, text: String) -> Reply {
    Reply::new(code, text)
}

/// A rate has no room for the message now (SPEC §6; SES's text, ses-iam-facts A4).
pub fn throttled_rate() -> Reply {
    Reply::new(
        454,
        "4.7.0 Throttling failure: Maximum sending rate exceeded",
    )
}

/// A 24-hour quota has no room for the recipient or the message (SPEC §6).
pub fn throttled_daily() -> Reply {
    Reply::new(
        454,
        "4.7.0 Throttling failure: Daily message quota exceeded",
    )
}

/// The upstream's own throttling (its text already one bounded line): SES's reply for the same
/// cause, so the client reads the same text whichever side throttled (SPEC §7).
pub fn upstream_throttled(text: &str) -> Reply {
    if text.to_ascii_lowercase().contains("daily") {
        throttled_daily()
    } else {
        throttled_rate()
    }
}

/// The quota store did not answer and `[quotas] on_store_error = "refuse"`: SES's text for a
/// local processing error; the client retries.
pub fn quota_unavailable() -> Reply {
    Reply::new(451, "4.3.0 Temporary service failure")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: Reply) -> String {
        String::from_utf8(reply.to_wire()).unwrap()
    }

    #[test]
    fn transaction_failed_is_ses_5_6_0() {
        assert_eq!(
            wire(transaction_failed("two From fields")),
            "554 5.6.0 Transaction failed: two From fields\r\n"
        );
    }

    #[test]
    fn invalid_arn_is_spec_4() {
        assert_eq!(
            wire(invalid_arn("arn:bad")),
            "554 5.6.0 Transaction failed: Invalid ARN 'arn:bad'\r\n"
        );
    }

    #[test]
    fn misaligned_is_spec_4() {
        assert_eq!(
            wire(misaligned(
                "a@b.com",
                "arn:aws:ses:us-east-1:123456789012:identity/c.com"
            )),
            "554 5.7.1 Message rejected: The address 'a@b.com' does not align with the given ARN 'arn:aws:ses:us-east-1:123456789012:identity/c.com'\r\n"
        );
    }

    #[test]
    fn unverified_is_spec_4_with_the_region_upper_case() {
        assert_eq!(
            wire(unverified("us-east-1", "a@x.com, b@y.com")),
            "554 5.7.1 Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: a@x.com, b@y.com\r\n"
        );
    }

    #[test]
    fn access_denied_is_spec_6() {
        assert_eq!(
            wire(access_denied(
                "arn:aws:iam::123456789012:user/app",
                "arn:aws:ses:us-east-1:123456789012:identity/example.com"
            )),
            "554 5.7.1 Access denied: User `arn:aws:iam::123456789012:user/app' is not authorized to perform `ses:SendRawEmail' on resource `arn:aws:ses:us-east-1:123456789012:identity/example.com'\r\n"
        );
    }

    #[test]
    fn internal_failure_is_temporary() {
        assert_eq!(
            wire(internal_failure()),
            "451 4.3.0 Temporary service failure\r\n"
        );
    }

    #[test]
    fn relayed_carries_the_id_as_spec_6() {
        assert_eq!(wire(relayed("0107-abc")), "250 2.0.0 Ok 0107-abc\r\n");
        assert!(SIMULATED_ALLOWED.starts_with("250 2.0.0 Ok "));
    }

    #[test]
    fn relay_deferred_is_spec_7_4_4_1() {
        assert_eq!(
            wire(relay_deferred()),
            "451 4.4.1 Temporary service failure\r\n"
        );
    }

    #[test]
    fn throttling_is_spec_6() {
        assert_eq!(
            wire(throttled_rate()),
            "454 4.7.0 Throttling failure: Maximum sending rate exceeded\r\n"
        );
        assert_eq!(
            wire(throttled_daily()),
            "454 4.7.0 Throttling failure: Daily message quota exceeded\r\n"
        );
        assert_eq!(
            upstream_throttled("Throttling failure: Daily message quota exceeded"),
            throttled_daily()
        );
        assert_eq!(
            upstream_throttled("4.7.0 Throttling failure: Maximum sending rate exceeded"),
            throttled_rate()
        );
        assert_eq!(
            wire(quota_unavailable()),
            "451 4.3.0 Temporary service failure\r\n"
        );
    }

    #[test]
    fn relay_refused_passes_the_upstream_code_and_text() {
        assert_eq!(
            wire(relay_refused(550, "5.1.1 no such user".into())),
            "550 5.1.1 no such user\r\n"
        );
    }
}
