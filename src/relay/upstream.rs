//! The SMTP upstream (the SES SMTP endpoint in production), through lettre's SMTP client.
//! TLS is STARTTLS-required (`smtp://host:587?tls=required`) or implicit (`smtps://host:465`);
//! lettre's opportunistic mode, which an attacker can downgrade, is never used. A plain
//! `smtp://host:port` is accepted for local relays only (SPEC §7) and logged as such.

use std::time::Duration;

use std::sync::{Arc, Mutex};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::RelayError;

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
    conn: AsyncSmtpConnection,
    since: tokio::time::Instant,
}

/// An idle connection used within this long is reused without a NOOP check first; if it turns
/// out dead, the failure comes at MAIL FROM, before any DATA, and the message is retried once on
/// a fresh connection.
const TRUST_RECENT: Duration = Duration::from_secs(2);

/// How far a transfer got before it failed.
enum Failure {
    /// MAIL FROM did not get an SMTP reply: nothing of the message was sent.
    BeforeMail(lettre::transport::smtp::Error),
    /// Anything else.
    Later(lettre::transport::smtp::Error),
    /// The upstream cannot take this message at all.
    Refused(String),
    /// Every recipient was refused at RCPT (only when refusals are tolerated per recipient).
    NoRecipient(Vec<(usize, lettre::transport::smtp::Error)>),
}

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

/// A pooled SMTP upstream on lettre's connection API. lettre's own pooled transport is not
/// used because it cannot set TCP_NODELAY: it writes the final `.` of DATA separately, and
/// Nagle's algorithm then holds it until the server's delayed ACK, about 40 ms per message.
#[derive(Clone)]
pub struct SmtpUpstream {
    inner: Arc<Inner>,
}

struct Inner {
    url: UpstreamUrl,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    /// Connections not in use, most recently used last.
    idle: Mutex<Vec<Pooled>>,
    /// One permit per connection that may be open.
    permits: Semaphore,
}

impl SmtpUpstream {
    pub fn new(url: &UpstreamUrl, options: UpstreamOptions) -> Result<SmtpUpstream, String> {
        let tls = match url.tls {
            UpstreamTls::None => None,
            UpstreamTls::Starttls | UpstreamTls::Implicit => {
                let mut builder = TlsParameters::builder(url.host.clone());
                if let Some(pem) = &options.extra_root_pem {
                    builder = builder.add_root_certificate(
                        Certificate::from_pem(pem).map_err(|e| e.to_string())?,
                    );
                }
                Some(builder.build_rustls().map_err(|e| e.to_string())?)
            }
        };
        Ok(SmtpUpstream {
            inner: Arc::new(Inner {
                url: url.clone(),
                tls,
                credentials: options
                    .credentials
                    .map(|(user, password)| Credentials::new(user, password)),
                hello: ClientId::Domain(options.hello_name),
                timeout: options.timeout,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(options.pool_size.max(1) as usize),
            }),
        })
    }

    /// Opens and authenticates a new connection.
    async fn connect(&self) -> Result<AsyncSmtpConnection, RelayError> {
        let inner = &self.inner;
        let address = (inner.url.host.as_str(), inner.url.port);
        let mut conn = if inner.url.tls == UpstreamTls::Implicit {
            // lettre wraps TLS itself here; this path keeps Nagle's delay (see the type's doc).
            AsyncSmtpConnection::connect_tokio1(
                address,
                Some(inner.timeout),
                &inner.hello,
                inner.tls.clone(),
                None,
            )
            .await
            .map_err(|e| classify(&e))?
        } else {
            let unavailable =
                |e: std::io::Error| RelayError::Deferred(format!("upstream unavailable: {e}"));
            let stream = TcpStream::connect(address).await.map_err(unavailable)?;
            stream.set_nodelay(true).map_err(unavailable)?;
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &inner.hello)
                    .await
                    .map_err(|e| classify(&e))?;
            if let Some(tls) = &inner.tls {
                // STARTTLS is required: lettre fails when the server does not offer it.
                conn.starttls(tls.clone(), &inner.hello)
                    .await
                    .map_err(|e| classify(&e))?;
            }
            conn
        };
        if let Some(credentials) = &inner.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| classify(&e))?;
        }
        Ok(conn)
    }

    /// A connection ready to send, and whether it was reused without a NOOP check: a recently
    /// used idle one; an older idle one that still answers NOOP (a stale one is dropped and
    /// replaced); else a new one.
    async fn checkout(&self) -> Result<(AsyncSmtpConnection, bool), RelayError> {
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
            if conn.test_connected().await {
                return Ok((conn, false));
            }
            conn.abort().await;
        }
    }

    /// One transaction on `conn`, as lettre's `send` does it, but telling whether it failed
    /// before anything of the message was sent.
    /// With `per_recipient`, a recipient the upstream refuses at RCPT (4xx or 5xx) is set
    /// aside and the message goes to the others; the refused ones come back by index.
    async fn transfer(
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        body: &[u8],
        per_recipient: bool,
    ) -> Result<(Response, Vec<(usize, lettre::transport::smtp::Error)>), Failure> {
        let mut options = Vec::new();
        if !body.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(Failure::Refused(
                    "5.6.3 the message has 8-bit content and the upstream does not offer 8BITMIME"
                        .into(),
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        match conn
            .command(Mail::new(envelope.from().cloned(), options))
            .await
        {
            Ok(_) => {}
            Err(error) if !error.is_permanent() && !error.is_transient() => {
                return Err(Failure::BeforeMail(error));
            }
            Err(error) => return Err(Failure::Later(error)),
        }
        let mut refused = Vec::new();
        for (index, recipient) in envelope.to().iter().enumerate() {
            match conn.command(Rcpt::new(recipient.clone(), vec![])).await {
                Ok(_) => {}
                Err(error) if per_recipient && (error.is_permanent() || error.is_transient()) => {
                    refused.push((index, error));
                }
                Err(error) => return Err(Failure::Later(error)),
            }
        }
        if !refused.is_empty() && refused.len() == envelope.to().len() {
            return Err(Failure::NoRecipient(refused));
        }
        conn.command(Data).await.map_err(Failure::Later)?;
        let response = conn.message(body).await.map_err(Failure::Later)?;
        Ok((response, refused))
    }

    /// Sends one message; the upstream's reply text on success.
    pub async fn send(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<String, RelayError> {
        self.send_with(mail_from, recipients, message, false)
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
        self.send_with(mail_from, recipients, message, true).await
    }

    async fn send_with(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
        per_recipient: bool,
    ) -> Result<SentEach, RelayError> {
        let address = |a: &str| {
            a.parse::<Address>().map_err(|e| {
                // lettre's reason goes to the log only.
                tracing::info!(address = %a, error = %e, "the upstream client refuses an address");
                RelayError::Refused(format!(
                    "5.1.3 <{}> address cannot be relayed",
                    super::reply_text(a)
                ))
            })
        };
        let from = if mail_from.is_empty() {
            None
        } else {
            Some(address(mail_from)?)
        };
        let to = recipients
            .iter()
            .map(|r| address(r))
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(from, to).map_err(|e| {
            tracing::info!(error = %e, "the upstream client refuses the envelope");
            RelayError::Refused("5.5.1 Transaction failed: the envelope cannot be relayed".into())
        })?;
        // lettre always ends DATA with CR LF . CR LF; without this the upstream would receive
        // one extra empty line at the end of every message.
        let body = message.strip_suffix(b"\r\n").unwrap_or(message);
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
            let mut outcome = Self::transfer(&mut conn, &envelope, body, per_recipient).await;
            if unchecked && matches!(outcome, Err(Failure::BeforeMail(_))) {
                // The reused connection was dead; nothing was sent on it. Once, on a fresh one.
                conn.abort().await;
                conn = self.connect().await?;
                outcome = Self::transfer(&mut conn, &envelope, body, per_recipient).await;
            }
            match outcome {
                Ok((response, refused)) => {
                    let pooled = Pooled {
                        conn,
                        since: tokio::time::Instant::now(),
                    };
                    self.inner
                        .idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(pooled);
                    Ok((Some(response), refused))
                }
                Err(Failure::NoRecipient(refused)) => {
                    conn.abort().await;
                    Ok((None, refused))
                }
                Err(Failure::BeforeMail(error) | Failure::Later(error)) => {
                    // A failed transaction leaves the connection half-way; never reuse it.
                    conn.abort().await;
                    Err(classify(&error))
                }
                Err(Failure::Refused(text)) => {
                    conn.abort().await;
                    Err(RelayError::Refused(text))
                }
            }
        };
        match tokio::time::timeout(self.inner.timeout, attempt).await {
            Err(_) => Err(RelayError::Deferred(format!(
                "upstream timed out after {:?}",
                self.inner.timeout
            ))),
            Ok(Ok((response, refused))) => Ok(SentEach {
                text: response.map(|r| r.message().collect::<Vec<_>>().join(" ")),
                failed: refused
                    .into_iter()
                    .map(|(index, error)| RecipientFailure {
                        recipient: recipients[index].clone(),
                        error: classify(&error),
                    })
                    .collect(),
            }),
            Ok(Err(error)) => Err(error),
        }
    }
}

/// Maps lettre's error to what the client is told: the upstream's 5xx passes through, anything
/// else (4xx, unreachable, TLS, timeout, connection lost mid-DATA) is temporary.
fn classify(error: &lettre::transport::smtp::Error) -> RelayError {
    let text = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_else(|| error.to_string());
    if error.is_permanent() {
        let code = error
            .status()
            .and_then(|c| c.to_string().parse().ok())
            .filter(|code| (500..600).contains(code))
            .unwrap_or(554);
        RelayError::Rejected {
            code,
            text: super::reply_text(&text),
        }
    } else if error.is_transient() && is_throttling(error, &text) {
        RelayError::Throttled(super::reply_text(&text))
    } else if error.is_transient() {
        RelayError::Deferred(format!(
            "upstream replied {}: {text}",
            error.status().map(|c| c.to_string()).unwrap_or_default()
        ))
    } else {
        RelayError::Deferred(format!("upstream unavailable: {error}"))
    }
}

/// SES's throttling replies: `454 Throttling failure: Maximum sending rate exceeded` and
/// `... Daily message quota exceeded` (also the SigV2 variant). Its other 454s ("Temporary
/// authentication failure", "Temporary service failure") are not about pace.
fn is_throttling(error: &lettre::transport::smtp::Error, text: &str) -> bool {
    let code = error.status().map(|c| c.to_string());
    code.as_deref() == Some("454") && is_throttling_text(text)
}

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
