//! Where allowed messages go: the file outbox (`file://DIR`, the embedded default) or an SMTP
//! upstream. Either way a message is acknowledged only once it is safe: written durably, or
//! accepted by the upstream with a 250.

pub mod outbox;
pub mod upstream;

use std::sync::Arc;

pub use outbox::{MessageIds, Outbox};
pub use upstream::{SmtpUpstream, UpstreamOptions, UpstreamUrl, UrlError};

/// Why a message was not relayed. `Deferred` carries detail for the log only (it may hold
/// internal detail such as `Connection refused (os error 111)`); the client hears
/// `gateway::replies::relay_deferred`. `Rejected` and `Refused` texts go to the client:
/// `Rejected` holds the upstream's own reply made safe by `reply_text`, `Refused` a fixed text
/// of sesgate's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// Try again later (upstream 4xx, unreachable, lost mid-transfer, outbox write failed).
    #[error("deferred: {0}")]
    Deferred(String),
    /// The upstream refused it for good: its code (5xx) and text.
    #[error("rejected by the upstream: {code} {text}")]
    Rejected { code: u16, text: String },
    /// sesgate cannot hand it to the upstream (an address lettre refuses).
    #[error("refused: {0}")]
    Refused(String),
}

/// The longest upstream text passed on to a client (an SMTP reply line is at most 512 bytes
/// with its code and CR LF, RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_TEXT: usize = 400;

/// An upstream's reply text as it may be passed on to a client: printable ASCII only (anything
/// else, CR and LF included, becomes a space, so the upstream cannot add lines to our reply),
/// spaces collapsed, at most `MAX_REPLY_TEXT` characters.
pub fn reply_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_REPLY_TEXT));
    for c in text.chars() {
        if out.len() >= MAX_REPLY_TEXT {
            break;
        }
        let c = if c.is_ascii_graphic() { c } else { ' ' };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_end().to_owned();
    if out.is_empty() {
        "5.0.0 Transaction failed".to_owned()
    } else {
        out
    }
}

/// One message to relay. Everything but the message is what the outbox records beside it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub id: String,
    pub session: String,
    pub user: String,
    pub client: String,
    pub tls: bool,
    pub mail_from: String,
    pub recipients: Vec<String>,
    #[serde(skip)]
    pub message: Vec<u8>,
}

/// The configured destination.
#[derive(Clone)]
pub enum Relay {
    Outbox(Arc<Outbox>),
    Smtp(SmtpUpstream),
}

impl Relay {
    /// Relays one message; on success, the id to report (the upstream's when it gave one).
    pub async fn send(&self, delivery: Delivery) -> Result<String, RelayError> {
        match self {
            Relay::Outbox(outbox) => {
                let outbox = Arc::clone(outbox);
                let stored = tokio::task::spawn_blocking(move || {
                    outbox.store(&delivery).map(|()| delivery.id)
                })
                .await;
                match stored {
                    Ok(Ok(id)) => Ok(id),
                    Ok(Err(e)) => Err(RelayError::Deferred(format!("outbox write failed: {e}"))),
                    Err(e) => Err(RelayError::Deferred(format!("outbox task failed: {e}"))),
                }
            }
            Relay::Smtp(upstream) => {
                let text = upstream
                    .send(&delivery.mail_from, &delivery.recipients, &delivery.message)
                    .await?;
                Ok(upstream_id(&text).map_or(delivery.id, str::to_owned))
            }
        }
    }
}

/// The message id in an upstream's `250` text (`Ok <id>` as SES sends it, with or without an
/// enhanced code).
fn upstream_id(text: &str) -> Option<&str> {
    let mut words = text.split_whitespace();
    let mut word = words.next()?;
    if word.starts_with("2.") {
        word = words.next()?;
    }
    if !word.eq_ignore_ascii_case("ok") {
        return None;
    }
    words.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_texts_are_one_bounded_printable_line() {
        assert_eq!(
            reply_text("5.6.1 rejected\r\n250 2.0.0 Ok fake\t\u{e9}"),
            "5.6.1 rejected 250 2.0.0 Ok fake"
        );
        assert_eq!(reply_text("\r\n\0"), "5.0.0 Transaction failed");
        assert_eq!(reply_text(&"x".repeat(5000)).len(), MAX_REPLY_TEXT);
    }

    #[test]
    fn upstream_ids() {
        assert_eq!(
            upstream_id("Ok 0107017033dbb64d-be13a01e-000000"),
            Some("0107017033dbb64d-be13a01e-000000")
        );
        assert_eq!(upstream_id("2.0.0 Ok abc"), Some("abc"));
        assert_eq!(upstream_id("2.0.0 Ok"), None);
        assert_eq!(upstream_id("queued as 123"), None);
    }
}
