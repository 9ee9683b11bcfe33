//! Issue 15 §4: TLS session resumption is offered to clients (stateless tickets), so an MTA
//! that opens a connection per message skips the full handshake after its first one, however
//! many other clients came meanwhile.

mod support;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use support::TestServer;
use tokio::io::AsyncReadExt;

async fn handshake(
    server: &TestServer,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::HandshakeKind {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port(1)))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // Reading the greeting also reads the tickets TLS 1.3 sends after the handshake.
    let mut greeting = [0u8; 64];
    let n = tls.read(&mut greeting).await.unwrap();
    assert!(greeting[..n].starts_with(b"220 "));
    tls.get_ref().1.handshake_kind().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_client_resumes_its_tls_session() {
    let server = TestServer::start().await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&server.cert_pem()) {
        roots.add(cert.unwrap()).unwrap();
    }
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let client = || {
            Arc::new(
                rustls::ClientConfig::builder_with_protocol_versions(versions)
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth(),
            )
        };
        let config = client();
        assert_eq!(
            handshake(&server, &config).await,
            rustls::HandshakeKind::Full
        );
        // Many other clients meanwhile: a server-side session cache (256 entries by default)
        // forgets the first session; a stateless ticket is still valid.
        for _ in 0..300 {
            handshake(&server, &client()).await;
        }
        assert_eq!(
            handshake(&server, &config).await,
            rustls::HandshakeKind::Resumed,
            "{versions:?}"
        );
    }
    server.stop().await;
}
