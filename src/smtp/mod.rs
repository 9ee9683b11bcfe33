//! The SMTP front end: listeners, TLS, AUTH, the session and the DATA phase. Protocol only: it
//! knows users as names an [`Authenticator`] returned and hands every completed transaction to a
//! [`Handler`], whose reply it writes back. Nothing about policy lives here.
//!
//! ```text
//! TcpListener -> [PROXY header] -> [TLS] -> Connection (conn.rs, awaits)
//!                                             |  line in
//!                                             v
//!                                          Session (session.rs, pure) -> Step
//!                                             |  DATA bytes: DataReader (data.rs, pure)
//!                                             v
//!                                          Handler::deliver(Transaction) -> Reply
//! ```

mod conn;
pub mod data;
mod limits;
pub mod reply;
// Public for the fuzz targets (fuzz/), which drive AUTH through the pure session.
pub mod sasl;
pub mod session;
pub mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use proxy_header::ParseConfig;
use proxy_header::io::ProxiedStream;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::accept::{AcceptBackoff, accept_with_backoff};

pub use reply::Reply;
pub use sasl::Credentials;
pub use session::{AuthMode, Envelope, IdentifiedBy, SessionConfig, TlsMode, Transaction};

use conn::{Connection, Io};
use limits::{AuthThrottle, AuthThrottleSettings, PerIpConnections};
use session::Session;

/// Receives every completed transaction and decides the reply to DATA. The reply is written
/// as given: a handler must not return 250 before the message is safe (SPEC §7).
pub trait Handler: Send + Sync + 'static {
    fn deliver(&self, transaction: Transaction) -> impl Future<Output = Reply> + Send;

    /// Asked for each RCPT the session would accept, before its `250`: `None` accepts it, a
    /// reply refuses this recipient only (the transaction goes on with the others). For the
    /// refusals that are certain at RCPT whatever the message says (SPEC §2), such as a 24-hour
    /// quota with no room for one more recipient. The default accepts every recipient.
    fn check_recipient(
        &self,
        _recipient: &RecipientCheck<'_>,
    ) -> impl Future<Output = Option<Reply>> + Send {
        async { None }
    }
}

/// A recipient about to be accepted, with the transaction so far.
#[derive(Debug, Clone, Copy)]
pub struct RecipientCheck<'a> {
    pub session_id: &'a str,
    /// Who sends, as the authenticator named them.
    pub user: &'a str,
    pub identified_by: IdentifiedBy,
    pub client: IpAddr,
    pub mail_from: &'a str,
    /// Every recipient of the transaction, the new one last.
    pub recipients: &'a [String],
}

/// Where connections get the TLS acceptor when they start TLS: the caller's current one (the
/// gateway reads it from its reloadable snapshot), so a reload reaches new handshakes without
/// this module knowing where certificates come from.
pub type TlsSource = Arc<dyn Fn() -> TlsAcceptor + Send + Sync>;

/// Checks SMTP credentials, and names clients that do not authenticate.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, credentials: Credentials) -> impl Future<Output = AuthOutcome> + Send;

    /// Who a client is without AUTH, from what the connection proves: its address and, under
    /// TLS on a listener that asks for one, its verified client certificate. Asked only on
    /// listeners whose `auth` is not `required`. `None` (the default): nobody, and MAIL gets
    /// `530 5.7.0 Authentication required`.
    fn identify(&self, _peer: &Peer<'_>) -> Option<(String, IdentifiedBy)> {
        None
    }
}

/// What a connection proves about its client without AUTH.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The client's address (from the PROXY header when the peer is a trusted proxy).
    pub client: IpAddr,
    /// The DER leaf certificate the client presented, verified against the listener's CA.
    pub certificate: Option<&'a [u8]>,
}

/// The leaf certificate a TLS client presented (rustls has verified it when it asked for one).
fn peer_certificate<S>(tls: &tokio_rustls::server::TlsStream<S>) -> Option<Vec<u8>> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.as_ref().to_vec())
}

/// What an [`Authenticator`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Right: the name the session is then known by.
    Authenticated(String),
    /// Wrong user name or password.
    Invalid,
    /// Not checked now (the verifier is saturated); says nothing about the credentials.
    Unavailable,
}

/// One listening socket's protocol settings (`[[listener]]`).
#[derive(Clone)]
pub struct ListenerSettings {
    pub tls: TlsMode,
    pub allow_plaintext_auth: bool,
    /// Peers whose PROXY v1/v2 header is trusted; from them a header is required.
    pub proxy_protocol_from: Vec<IpNet>,
    pub auth: AuthMode,
    /// This listener's own TLS acceptor (e.g. one that requests client certificates); `None`:
    /// the server's.
    pub tls_source: Option<TlsSource>,
}

impl std::fmt::Debug for ListenerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSettings")
            .field("tls", &self.tls)
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .field("proxy_protocol_from", &self.proxy_protocol_from)
            .field("auth", &self.auth)
            .field("client_certificates", &self.tls_source.is_some())
            .finish()
    }
}

/// Limits shared by all listeners (`[limits]`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub max_errors: u32,
    pub max_auth_failures: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Per read: the longest silence while a command line is awaited.
    pub idle_timeout: Duration,
    /// Per read: the longest silence inside DATA.
    pub data_timeout: Duration,
    /// A whole TLS handshake or PROXY header, from accept (or STARTTLS) to its end.
    pub handshake_timeout: Duration,
    /// A whole command line (or SASL response), from the moment it is awaited.
    pub command_timeout: Duration,
    /// A whole message: from the 354 reply to the final `.`.
    pub message_timeout: Duration,
    /// A whole connection, from accept to close.
    pub session_timeout: Duration,
    /// AUTH failures from one address within `auth_failure_window` before it is refused.
    /// AUTH failures per (address, user name) within `auth_failure_window` before that user
    /// name is refused from that address.
    pub auth_failures_per_user: u32,
    /// AUTH failures per address (all user names) within the window before it is refused.
    pub auth_failures_per_ip: u32,
    pub auth_failure_window: Duration,
    /// AUTH checks one address may have running or waiting at once.
    pub auth_in_flight_per_ip: u32,
    /// Clients never throttled for AUTH failures.
    pub auth_throttle_exempt: Vec<IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 41_943_040,
            max_recipients: 50,
            max_line_length: 1000,
            max_errors: 10,
            max_auth_failures: 3,
            max_connections: 1000,
            max_connections_per_ip: 100,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(1800),
            session_timeout: Duration::from_secs(3600),
            auth_failures_per_user: 10,
            auth_failures_per_ip: 100,
            auth_failure_window: Duration::from_secs(300),
            auth_in_flight_per_ip: 8,
            auth_throttle_exempt: Vec::new(),
        }
    }
}

/// The most client addresses whose AUTH failures are remembered at once (about 100 bytes each,
/// plus their user names' counters).
const AUTH_THROTTLE_MAX_ADDRESSES: usize = 100_000;

/// State shared by every connection of a server.
pub struct Shared<H, A> {
    hostname: String,
    limits: Arc<Limits>,
    handler: H,
    authenticator: A,
    tls: TlsSource,
    connections: Arc<Semaphore>,
    /// Every connection task, so that a drain can wait for the last one to end.
    tracker: TaskTracker,
    per_ip: Arc<PerIpConnections>,
    throttle: AuthThrottle,
    next_session: AtomicU64,
}

impl<H, A> Shared<H, A> {
    fn tls_acceptor(&self) -> TlsAcceptor {
        (self.tls)()
    }
}

/// An SMTP server: any number of listeners sharing limits, TLS, handler and authenticator.
pub struct Server<H, A> {
    shared: Arc<Shared<H, A>>,
}

impl<H, A> Clone for Server<H, A> {
    fn clone(&self) -> Self {
        Server {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<H: Handler, A: Authenticator> Server<H, A> {
    pub fn new(
        hostname: String,
        limits: Limits,
        tls: TlsSource,
        handler: H,
        authenticator: A,
    ) -> Self {
        Server {
            shared: Arc::new(Shared {
                hostname,
                connections: Arc::new(Semaphore::new(limits.max_connections)),
                per_ip: PerIpConnections::new(limits.max_connections_per_ip),
                throttle: AuthThrottle::new(AuthThrottleSettings {
                    per_user: limits.auth_failures_per_user,
                    per_address: limits.auth_failures_per_ip,
                    in_flight_per_address: limits.auth_in_flight_per_ip,
                    window: limits.auth_failure_window,
                    exempt: limits.auth_throttle_exempt.clone(),
                    max_addresses: AUTH_THROTTLE_MAX_ADDRESSES,
                }),
                limits: Arc::new(limits),
                handler,
                authenticator,
                tls,
                tracker: TaskTracker::new(),
                next_session: AtomicU64::new(1),
            }),
        }
    }

    /// Connections open now (accepted and not yet closed).
    pub fn open_connections(&self) -> usize {
        self.shared.limits.max_connections - self.shared.connections.available_permits()
    }

    /// Waits until every connection has ended, or `grace` has passed; true if they all ended.
    /// Call it once every `serve` has returned: no connection starts after that.
    pub async fn drained_within(&self, grace: Duration) -> bool {
        self.shared.tracker.close();
        timeout(grace, self.shared.tracker.wait()).await.is_ok()
    }

    /// Accepts connections on `listener` until `shutdown` turns true.
    pub async fn serve(
        &self,
        listener: TcpListener,
        settings: ListenerSettings,
        shutdown: watch::Receiver<bool>,
    ) {
        let settings = Arc::new(settings);
        let mut stop = shutdown.clone();
        // EMFILE and friends: back off instead of spinning.
        let mut backoff = AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                accepted = accept_with_backoff("smtp", &mut backoff, || listener.accept()) => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let (stream, peer) = accepted;
            let server = self.clone();
            let settings = Arc::clone(&settings);
            let shutdown = shutdown.clone();
            self.shared.tracker.spawn(async move {
                server
                    .on_connection(stream, peer, &settings, shutdown)
                    .await
            });
        }
    }

    async fn on_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        settings: &ListenerSettings,
        shutdown: watch::Receiver<bool>,
    ) {
        let shared = &self.shared;
        // The session id exists before any check or handshake, so every refusal and failure
        // of this connection is logged with the id its transaction lines would carry.
        let id = format!(
            "{:08x}",
            shared.next_session.fetch_add(1, Ordering::Relaxed)
        );
        let Ok(_permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            info!(session = %id, peer = %peer.ip(), reply = "421 4.7.0", "refused: too many connections");
            refuse(stream, settings.tls, reply::too_many_connections()).await;
            return;
        };
        let _ = stream.set_nodelay(true);
        let started = Instant::now();
        let handshake_deadline = started + shared.limits.handshake_timeout;
        let peer_ip = peer.ip().to_canonical();
        let trusted_proxy = settings
            .proxy_protocol_from
            .iter()
            .any(|net| net.contains(&peer_ip));
        // The per-address cap is taken before any work a silent client could stretch out (the
        // PROXY header, the TLS handshake), so a flood from one address cannot hold every slot.
        // A trusted proxy carries many clients: its connections are capped by the real client
        // address from the header, which it must send within the handshake deadline.
        let (io, client, slot): (Box<dyn Io>, IpAddr, _) = if trusted_proxy {
            match timeout_at(
                handshake_deadline,
                ProxiedStream::create_from_tokio(stream, ParseConfig::default()),
            )
            .await
            {
                Ok(Ok(proxied)) => {
                    let client = proxied
                        .proxy_header()
                        .proxied_address()
                        .map_or(peer_ip, |a| a.source.ip().to_canonical());
                    let slot = shared.per_ip.acquire(client);
                    (Box::new(proxied), client, slot)
                }
                Ok(Err(e)) => {
                    info!(session = %id, peer = %peer_ip, error = %e, "invalid or missing PROXY header from a trusted proxy");
                    return;
                }
                Err(_) => {
                    info!(session = %id, peer = %peer_ip, "no PROXY header from a trusted proxy in time");
                    return;
                }
            }
        } else {
            let slot = shared.per_ip.acquire(peer_ip);
            (Box::new(stream), peer_ip, slot)
        };
        let Some(_slot) = slot else {
            info!(session = %id, client = %client, reply = "421 4.7.0", "refused: too many connections from this address");
            // On an implicit-TLS port the client cannot read a plaintext reply: only close.
            refuse(io, settings.tls, reply::too_many_connections()).await;
            return;
        };
        let acceptor = settings
            .tls_source
            .as_ref()
            .map_or_else(|| shared.tls_acceptor(), |tls| tls());
        let mut certificate = None;
        let (io, tls) = if settings.tls == TlsMode::Implicit {
            match timeout_at(handshake_deadline, acceptor.accept(io)).await {
                Ok(Ok(tls)) => {
                    certificate = peer_certificate(&tls);
                    (Box::new(tls) as Box<dyn Io>, true)
                }
                Ok(Err(e)) => {
                    info!(session = %id, client = %client, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    info!(session = %id, client = %client, "TLS handshake timed out");
                    return;
                }
            }
        } else {
            (io, false)
        };
        let session = Session::new(
            SessionConfig {
                hostname: shared.hostname.clone(),
                tls_mode: settings.tls,
                allow_plaintext_auth: settings.allow_plaintext_auth,
                auth: settings.auth,
                limits: Arc::clone(&shared.limits),
            },
            tls,
        );
        debug!(session = %id, client = %client, tls, "connection");
        let session_deadline = started + shared.limits.session_timeout;
        let mut connection = Connection::new(io, session, Arc::clone(shared), client, id, shutdown)
            .with_session_deadline(session_deadline)
            .with_tls_source(settings.tls_source.clone());
        connection.identify_peer(certificate.as_deref());
        connection.run().await;
    }
}

/// Refuses a connection before any TLS: on an implicit-TLS port the client cannot read a
/// plaintext reply, so it is only closed.
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, mode: TlsMode, reply: Reply) {
    if mode != TlsMode::Implicit {
        let _ = timeout(REFUSAL_WRITE_TIMEOUT, stream.write_all(&reply.to_wire())).await;
    }
    let _ = timeout(REFUSAL_WRITE_TIMEOUT, stream.shutdown()).await;
}

/// A refused client gets this long to take its one-line reply.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
