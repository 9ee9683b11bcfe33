//! The SMTP upstream (the SES SMTP endpoint in production), through sesgate's own pipelining
//! client (`wire.rs`) and a small pool. TLS is STARTTLS-required
//! (`smtp://host:587?tls=required`) or implicit (`smtps://host:465`); an opportunistic mode,
//! which an attacker can downgrade, does not exist. A plain `smtp://host:port` is accepted for
//! local relays only (SPEC §7) and logged as such.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::Address;
use tokio::sync::Semaphore;

use super::RelayError;
use super::wire::{Connection, Reply, Settings, TransferError, WireError};

/// How the upstream URL asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTls {
    None,
    Starttls,
    Implicit,
}

/// Why an `upstream.url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("expected scheme://host[:port]")]
    NoScheme,
    #[error("no host")]
    NoHost,
    #[error("an IPv6 host needs its closing bracket: [::1]:25")]
    Unclosed,
    #[error("bad port {0:?} (an IPv6 host is written in brackets: [::1]:25)")]
    Port(String),
    #[error("unsupported query {0:?} (only tls=required)")]
    Query(String),
    #[error("unsupported scheme {0:?} (smtp, smtps or file)")]
    Scheme(String),
}

/// The parsed `upstream.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    pub tls: UpstreamTls,
}

impl UpstreamUrl {
    /// `smtp://host[:port][?tls=required]` or `smtps://host[:port]`; an IPv6 host is written
    /// in brackets, `smtp://[::1]:25`.
    pub fn parse(url: &str) -> Result<UpstreamUrl, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::NoScheme)?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or(UrlError::Unclosed)?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').unwrap_or(after))),
                }
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = port
            .map(|port| {
                port.parse::<u16>()
                    .map_err(|_| UrlError::Port(port.to_owned()))
            })
            .transpose()?;
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let tls = match (scheme, query) {
            ("smtps", "") => UpstreamTls::Implicit,
            ("smtp", "tls=required") => UpstreamTls::Starttls,
            ("smtp", "") => UpstreamTls::None,
            ("smtp", other) => return Err(UrlError::Query(other.to_owned())),
            (other, _) => return Err(UrlError::Scheme(other.to_owned())),
        };
        let default_port = match tls {
            UpstreamTls::Implicit => 465,
            UpstreamTls::Starttls => 587,
            UpstreamTls::None => 25,
        };
        Ok(UpstreamUrl {
            host: host.to_owned(),
            port: port.unwrap_or(default_port),
            tls,
        })
    }
}

/// Settings beyond the URL.
#[derive(Clone, Default)]
pub struct UpstreamOptions {
    pub credentials: Option<(String, String)>,
    /// An extra trusted root (PEM), for upstreams with a private CA.
    pub extra_root_pem: Option<Vec<u8>>,
    /// The most connections open to the upstream at once.
    pub pool_size: u32,
    /// How long one message may take, connection set-up included.
    pub timeout: Duration,
    /// The name sent in EHLO.
    pub hello_name: String,
}

/// An idle connection and when it last finished a message.
struct Pooled {
    conn: Connection,
    since: tokio::time::Instant,
}

/// An idle connection used within this long is reused without a NOOP check first; if it turns
/// out dead, the failure comes before any reply to MAIL FROM was read (so nothing of the
/// message can have been accepted), and the message is retried once on a fresh connection.
const TRUST_RECENT: Duration = Duration::from_secs(2);

/// A recipient the upstream refused at RCPT (`send_each`): `Rejected` for a 5xx, `Deferred`
/// for a 4xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientFailure {
    pub recipient: String,
    pub error: RelayError,
}

/// What `send_each` got done: the upstream's reply to the message (`None` when every
/// recipient was refused, so no message was sent) and each recipient it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEach {
    pub text: Option<String>,
    pub failed: Vec<RecipientFailure>,
}

/// A pooled SMTP upstream.
#[derive(Clone)]
pub struct SmtpUpstream {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    timeout: Duration,
    /// Connections not in use, most recently used last.
    idle: Mutex<Vec<Pooled>>,
    /// One permit per connection that may be open.
    permits: Semaphore,
}

/// The TLS client configuration: the system's roots, plus `extra_root_pem` if given.
fn tls_config(extra_root_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot parse is skipped, as lettre did.
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_root_pem {
        use rustls_pki_types::pem::PemObject;
        let mut found = false;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad CA certificate: {e}"))?;
            found = true;
        }
        if !found {
            return Err("the CA file holds no CERTIFICATE block".into());
        }
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

impl SmtpUpstream {
    pub fn new(url: &UpstreamUrl, options: UpstreamOptions) -> Result<SmtpUpstream, String> {
        let tls = match url.tls {
            UpstreamTls::None => None,
            UpstreamTls::Starttls | UpstreamTls::Implicit => {
                Some(tls_config(options.extra_root_pem.as_deref())?)
            }
        };
        Ok(SmtpUpstream {
            inner: Arc::new(Inner {
                settings: Settings {
                    host: url.host.clone(),
                    port: url.port,
                    tls,
                    implicit_tls: url.tls == UpstreamTls::Implicit,
                    credentials: options.credentials,
                    hello: options.hello_name,
                },
                timeout: options.timeout,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(options.pool_size.max(1) as usize),
            }),
        })
    }

    /// Opens, secures and authenticates a new connection.
    async fn connect(&self) -> Result<Connection, RelayError> {
        Connection::open(&self.inner.settings)
            .await
            .map_err(|e| classify(&e))
    }

    /// A connection ready to send, and whether it was reused without a NOOP check: a recently
    /// used idle one; an older idle one that still answers NOOP (a stale one is dropped and
    /// replaced); else a new one.
    async fn checkout(&self) -> Result<(Connection, bool), RelayError> {
        loop {
            let idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let Some(Pooled { mut conn, since }) = idle else {
                return Ok((self.connect().await?, false));
            };
            if since.elapsed() < TRUST_RECENT {
                return Ok((conn, true));
            }
            if conn.is_alive().await {
                return Ok((conn, false));
            }
        }
    }

    /// Sends one message; the upstream's reply text on success. One recipient refused fails
    /// the whole message (SES's all-or-nothing rule).
    pub async fn send(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<String, RelayError> {
        self.send_parts(mail_from, recipients, &[message]).await
    }

    /// `send` for a message in parts (a trace header and the client's message), written
    /// one after the other without joining them.
    pub async fn send_parts(
        &self,
        mail_from: &str,
        recipients: &[String],
        parts: &[&[u8]],
    ) -> Result<String, RelayError> {
        self.send_with(mail_from, recipients, parts, false)
            .await
            .map(|sent| sent.text.unwrap_or_default())
    }

    /// Sends one message to the recipients the upstream accepts, as an MTA's queue does: a
    /// recipient refused at RCPT is returned in `failed` (the spool bounces or retries it)
    /// instead of failing the whole message.
    pub async fn send_each(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<SentEach, RelayError> {
        self.send_each_parts(mail_from, recipients, &[message])
            .await
    }

    /// `send_each` for a message in parts (see `send_parts`).
    pub async fn send_each_parts(
        &self,
        mail_from: &str,
        recipients: &[String],
        parts: &[&[u8]],
    ) -> Result<SentEach, RelayError> {
        self.send_with(mail_from, recipients, parts, true).await
    }

    async fn send_with(
        &self,
        mail_from: &str,
        recipients: &[String],
        parts: &[&[u8]],
        per_recipient: bool,
    ) -> Result<SentEach, RelayError> {
        check_envelope(mail_from, recipients)?;
        // The wait for a pool slot counts inside the timeout: with a hung upstream every slot
        // is held until its own timeout, and a message queued behind them must not wait for
        // all of those in turn.
        let attempt = async {
            let _permit = self
                .inner
                .permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let (mut conn, unchecked) = self.checkout().await?;
            let mut outcome = conn
                .transfer(mail_from, recipients, parts, per_recipient)
                .await;
            if unchecked && matches!(outcome, Err(TransferError::BeforeMail(_))) {
                // The reused connection was dead (or held a reply nobody asked for); nothing
                // was accepted on it. Once, on a fresh one.
                conn = self.connect().await?;
                outcome = conn
                    .transfer(mail_from, recipients, parts, per_recipient)
                    .await;
            }
            match outcome {
                Ok(accepted) => {
                    let pooled = Pooled {
                        conn,
                        since: tokio::time::Instant::now(),
                    };
                    self.inner
                        .idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(pooled);
                    Ok((Some(accepted.reply), accepted.refused))
                }
                // Every other outcome leaves the connection in a state not tracked (a 354 not
                // followed by a message, replies not read): it is dropped, never reused.
                Err(TransferError::NoRecipient(refused)) => Ok((None, refused)),
                Err(TransferError::BeforeMail(error) | TransferError::Later(error)) => {
                    Err(classify(&error))
                }
                Err(TransferError::Refused(text)) => {
                    conn.quit().await;
                    Err(RelayError::Refused(text))
                }
            }
        };
        match tokio::time::timeout(self.inner.timeout, attempt).await {
            Err(_) => Err(RelayError::Deferred(format!(
                "upstream timed out after {:?}",
                self.inner.timeout
            ))),
            Ok(Ok((reply, refused))) => Ok(SentEach {
                text: reply.map(|r| r.text()),
                failed: refused
                    .into_iter()
                    .map(|(index, reply)| RecipientFailure {
                        recipient: recipients[index].clone(),
                        error: classify(&WireError::Reply(reply)),
                    })
                    .collect(),
            }),
            Ok(Err(error)) => Err(error),
        }
    }
}

/// Refuses what cannot be put in a MAIL or RCPT command: an address lettre's parser refuses
/// (as before this client was sesgate's own), and anything that could end or extend the command
/// line (CR, LF, `>`, controls), whatever the parser allows.
fn check_envelope(mail_from: &str, recipients: &[String]) -> Result<(), RelayError> {
    let check = |a: &str| {
        let unsafe_byte = a
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'>' || b == b'<');
        match a.parse::<Address>() {
            Ok(_) if !unsafe_byte => Ok(()),
            other => {
                // The parser's reason goes to the log only.
                let error = other.err().map(|e| e.to_string()).unwrap_or_default();
                tracing::info!(address = %a, error = %error, "the upstream client refuses an address");
                Err(RelayError::Refused(format!(
                    "5.1.3 <{}> address cannot be relayed",
                    super::reply_text(a)
                )))
            }
        }
    };
    if !mail_from.is_empty() {
        check(mail_from)?;
    }
    if recipients.is_empty() {
        tracing::info!("the upstream client refuses an envelope without recipients");
        return Err(RelayError::Refused(
            "5.5.1 Transaction failed: the envelope cannot be relayed".into(),
        ));
    }
    recipients.iter().try_for_each(|r| check(r))
}

/// Maps a wire failure to what the client is told: the upstream's 5xx passes through, anything
/// else (4xx, unreachable, TLS, timeout, connection lost mid-DATA) is temporary.
fn classify(error: &WireError) -> RelayError {
    match error {
        WireError::Reply(Reply { code, .. }) if (500..600).contains(code) => RelayError::Rejected {
            code: *code,
            text: super::reply_text(&reply_of(error)),
        },
        WireError::Reply(reply) if reply.code == 454 && is_throttling_text(&reply.text()) => {
            RelayError::Throttled(super::reply_text(&reply.text()))
        }
        WireError::Reply(reply) => {
            RelayError::Deferred(format!("upstream replied {}: {}", reply.code, reply.text()))
        }
        other => RelayError::Deferred(format!("upstream unavailable: {other}")),
    }
}

fn reply_of(error: &WireError) -> String {
    match error {
        WireError::Reply(reply) => reply.text(),
        other => other.to_string(),
    }
}

/// SES's throttling replies: `454 Throttling failure: Maximum sending rate exceeded` and
/// `... Daily message quota exceeded` (also the SigV2 variant). Its other 454s ("Temporary
/// authentication failure", "Temporary service failure") are not about pace.
fn is_throttling_text(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("throttl") || text.contains("rate exceeded") || text.contains("quota exceeded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_texts() {
        for text in [
            "Throttling failure: Maximum sending rate exceeded",
            "4.7.0 Throttling failure: Daily message quota exceeded.",
            "Throttling failure: Maximum SigV2 SMTP sending rate exceeded",
        ] {
            assert!(is_throttling_text(text), "{text}");
        }
        for text in [
            "Temporary authentication failure",
            "4.3.0 Temporary service failure",
        ] {
            assert!(!is_throttling_text(text), "{text}");
        }
    }

    #[test]
    fn urls() {
        let parse = |u: &str| UpstreamUrl::parse(u);
        assert_eq!(
            parse("smtp://email-smtp.us-east-1.amazonaws.com:587?tls=required").unwrap(),
            UpstreamUrl {
                host: "email-smtp.us-east-1.amazonaws.com".into(),
                port: 587,
                tls: UpstreamTls::Starttls
            }
        );
        assert_eq!(
            parse("smtps://mx.example:465").unwrap().tls,
            UpstreamTls::Implicit
        );
        assert_eq!(parse("smtps://mx.example").unwrap().port, 465);
        assert_eq!(
            parse("smtp://127.0.0.1:2525").unwrap().tls,
            UpstreamTls::None
        );
        assert_eq!(parse("smtp://[::1]:2525").unwrap().host, "::1");
        assert_eq!(
            parse("smtp://[::1]:25").unwrap(),
            UpstreamUrl {
                host: "::1".into(),
                port: 25,
                tls: UpstreamTls::None
            }
        );
        assert_eq!(parse("smtps://[2001:db8::1]").unwrap().port, 465);
        assert_eq!(parse("smtp://[::1"), Err(UrlError::Unclosed));
        assert_eq!(parse("smtp://::1:25"), Err(UrlError::Port(":1:25".into())));
        assert_eq!(parse("smtp://[::1]x"), Err(UrlError::Port("x".into())));
        assert_eq!(
            parse("smtp://mx.example?tls=opportunistic"),
            Err(UrlError::Query("tls=opportunistic".into()))
        );
        assert_eq!(
            parse("http://mx.example"),
            Err(UrlError::Scheme("http".into()))
        );
        assert_eq!(parse("smtp://:25"), Err(UrlError::NoHost));
        assert_eq!(parse("mx.example:25"), Err(UrlError::NoScheme));
    }
}
