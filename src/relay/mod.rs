//! Where allowed messages go: the file outbox (`file://DIR`, the embedded default) or an SMTP
//! upstream. Either way a message is acknowledged only once it is safe: written durably, or
//! accepted by the upstream with a 250.

pub mod durable;
pub mod outbox;
pub mod spool;
pub mod upstream;
pub mod wire;

use std::sync::Arc;

pub use outbox::{MessageIds, Outbox};
pub use upstream::{
    RecipientFailure, SentEach, SmtpUpstream, UpstreamOptions, UpstreamUrl, UrlError,
};

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
    /// The upstream throttled it (SES's `454 Throttling failure: ...`): temporary, and a sign to
    /// slow down. Carries the upstream's text (made safe by `reply_text`), for the log and to
    /// tell a rate from a daily quota.
    #[error("throttled by the upstream: {0}")]
    Throttled(String),
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

/// One message to relay. Everything but the header and the message is what the outbox records
/// beside it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub id: String,
    pub session: String,
    pub user: String,
    pub client: String,
    pub tls: bool,
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// This hop's trace header (`Received:`), relayed and stored in front of `message`
    /// without joining them (vectored writes: the body is never copied behind it). Empty for a
    /// message read back from the spool, whose stored bytes already begin with it.
    #[serde(skip)]
    pub header: Vec<u8>,
    /// The message: the client's as the DATA reader unstuffed it, or the spool's stored bytes.
    #[serde(skip)]
    pub message: bytes::Bytes,
}

impl Delivery {
    /// What goes on the wire and to disk, in order: the header, then the message.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.header, &self.message]
    }
}

/// A relayed message: the id the client hears, and the upstream's own queue or message id
/// (logged as `upstream_id` so the logs of both sides can be joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// SES's message id when the upstream answers as SES does, else sesgate's own id.
    pub id: String,
    /// The upstream's id from its 250 reply, when it gave one.
    pub upstream_id: Option<String>,
}

/// The configured destination.
#[derive(Clone)]
pub enum Relay {
    Outbox(Arc<Outbox>),
    Smtp(SmtpUpstream),
}

impl Relay {
    /// Relays one message; on success, the ids to report and log.
    pub async fn send(&self, delivery: Delivery) -> Result<Relayed, RelayError> {
        match self {
            Relay::Outbox(outbox) => {
                let outbox = Arc::clone(outbox);
                let stored = tokio::task::spawn_blocking(move || {
                    outbox.store(&delivery).map(|()| delivery.id)
                })
                .await;
                match stored {
                    Ok(Ok(id)) => Ok(Relayed {
                        id,
                        upstream_id: None,
                    }),
                    Ok(Err(e)) => Err(RelayError::Deferred(format!("outbox write failed: {e}"))),
                    Err(e) => Err(RelayError::Deferred(format!("outbox task failed: {e}"))),
                }
            }
            Relay::Smtp(upstream) => {
                let text = upstream
                    .send_parts(&delivery.mail_from, &delivery.recipients, &delivery.parts())
                    .await?;
                Ok(relayed(&text, delivery.id))
            }
        }
    }
}

impl Relay {
    /// Relays one message for the spool: recipients the upstream refuses at RCPT come back in
    /// `failed` while the others get the message (`relayed` is `None` when none did).
    pub async fn send_each(&self, delivery: Delivery) -> Result<SentEachRelayed, RelayError> {
        match self {
            Relay::Outbox(_) => Ok(SentEachRelayed {
                relayed: Some(self.send(delivery).await?),
                failed: Vec::new(),
            }),
            Relay::Smtp(upstream) => {
                let sent = upstream
                    .send_each_parts(&delivery.mail_from, &delivery.recipients, &delivery.parts())
                    .await?;
                Ok(SentEachRelayed {
                    relayed: sent.text.map(|text| relayed(&text, delivery.id)),
                    failed: sent.failed,
                })
            }
        }
    }
}

/// What `Relay::send_each` did: the ids of the relayed message (`None` when every recipient
/// was refused) and the recipients the upstream refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEachRelayed {
    pub relayed: Option<Relayed>,
    pub failed: Vec<RecipientFailure>,
}

/// The ids of a message the upstream accepted with `text`. The id goes to the log as a field
/// and, SES's, to the client: only a bounded token of printable ASCII, never anything that
/// could fake a field.
fn relayed(text: &str, own_id: String) -> Relayed {
    let ses = ses_message_id(text).filter(|id| is_id_token(id));
    let queued = postfix_queue_id(text).filter(|id| is_id_token(id));
    Relayed {
        id: ses.map_or(own_id, str::to_owned),
        upstream_id: ses.or(queued).map(str::to_owned),
    }
}

/// Whether an upstream's id is safe to log and repeat: 1 to 128 characters of letters,
/// digits and `-._@<>`.
fn is_id_token(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._@<>".contains(c))
}

/// The queue id in a Postfix-style `250` text (`2.0.0 Ok: queued as 4Xyz`, also Exim's
/// `OK id=1abc-0002` and others that end in `queued as <id>`).
fn postfix_queue_id(text: &str) -> Option<&str> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if let Some(at) = words
        .windows(2)
        .position(|w| w[0].eq_ignore_ascii_case("queued") && w[1].eq_ignore_ascii_case("as"))
    {
        return words.get(at + 2).copied();
    }
    words.iter().find_map(|w| w.strip_prefix("id="))
}

/// The message id in an upstream's `250` text (`Ok <id>` as SES sends it, with or without an
/// enhanced code).
fn ses_message_id(text: &str) -> Option<&str> {
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
            ses_message_id("Ok 0107017033dbb64d-be13a01e-000000"),
            Some("0107017033dbb64d-be13a01e-000000")
        );
        assert_eq!(ses_message_id("2.0.0 Ok abc"), Some("abc"));
        assert_eq!(ses_message_id("2.0.0 Ok"), None);
        assert_eq!(ses_message_id("queued as 123"), None);
        assert_eq!(ses_message_id("2.0.0 Ok: queued as 4Xyz"), None);
        assert_eq!(postfix_queue_id("2.0.0 Ok: queued as 4Xyz"), Some("4Xyz"));
        assert_eq!(postfix_queue_id("Ok: Queued As 4Xyz"), Some("4Xyz"));
        assert_eq!(postfix_queue_id("OK id=1abc-0002"), Some("1abc-0002"));
        assert_eq!(postfix_queue_id("2.0.0 Ok: queued as"), None);
        assert_eq!(postfix_queue_id("2.0.0 Ok"), None);
        assert!(is_id_token("4Xyz"));
        assert!(!is_id_token("a\"b"));
        assert!(!is_id_token(""));
        assert!(!is_id_token(&"x".repeat(129)));
    }
}
