//! Issue 10 end to end: principals without AUTH (network, certificate), AUTH winning over the
//! network, report-only enforcement, the shadow policy set and the decision log with replay.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sesgate::config::Listener;
use sesgate::smtp::{AuthMode, TlsMode};
use support::{Client, PASSWORD, Setup, TestServer, USER, connect_from, tool_available, user_toml};

/// Listener indexes past the four standard ones.
const OPTIONAL: usize = 4;
const OPTIONAL_CERT: usize = 5;
const NO_AUTH: usize = 6;

const MARKETING: &str = "From: marketing@example.com\r\n\r\nx\r\n";
const OTHER: &str = "From: a@example.com\r\n\r\nx\r\n";

/// A CA, client certificates it signed (DER and key: one bound by fingerprint, one by subject,
/// one whose subject only looks like it), and a certificate from another CA.
struct Pki {
    ca_pem: String,
    client: (Vec<u8>, Vec<u8>),
    badge: (Vec<u8>, Vec<u8>),
    lookalike: (Vec<u8>, Vec<u8>),
    stranger: (Vec<u8>, Vec<u8>),
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf_named = |issuer: &CertifiedIssuer<'_, KeyPair>, dn: &[(DnType, &str)]| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["scanner.test".to_owned()]).unwrap();
        for (kind, value) in dn {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    };
    let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>| {
        leaf_named(issuer, &[(DnType::CommonName, "scanner")])
    };
    let (trusted, other) = (ca("test CA"), ca("other CA"));
    Pki {
        ca_pem: trusted.pem(),
        client: leaf(&trusted),
        badge: leaf_named(
            &trusted,
            &[
                (DnType::CommonName, "badge-reader"),
                (DnType::OrganizationName, "Example Devices"),
            ],
        ),
        // One common name that prints like the bound two-part subject: never matched.
        lookalike: leaf_named(
            &trusted,
            &[(DnType::CommonName, "badge-reader, O=Example Devices")],
        ),
        stranger: leaf(&other),
    }
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn users(pki: &Pki) -> String {
    format!(
        r#"{}
[[group]]
name = "pilot"
policies = ["AllowFromMarketingAddress"]
enforce = false

[[user]]
name = "printer"
networks = ["127.0.0.2/32"]
policies = ["AllowSendingOnly"]

[[user]]
name = "scanner"
client_certificates = ["sha256:{}"]
policies = ["AllowSendingOnly"]

[[user]]
name = "badge"
client_certificates = ["subject:CN=badge-reader,O=Example Devices"]
policies = ["AllowSendingOnly"]

[[user]]
name = "legacy"
networks = ["127.0.0.4/32"]
policies = ["AllowFromMarketingAddress"]
enforce = false

[[user]]
name = "strict"
networks = ["127.0.0.5/32"]
policies = ["AllowFromMarketingAddress"]

[[user]]
name = "piloted"
networks = ["127.0.0.6/32"]
groups = ["pilot"]
"#,
        user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"AllowSendingOnly\"]"
        ),
        sha256_hex(&pki.client.0)
    )
}

fn listeners() -> Vec<Listener> {
    let listener = |tls, auth, client_ca: &str| Listener {
        address: "127.0.0.1:0".parse().unwrap(),
        tls,
        allow_plaintext_auth: true,
        auth,
        client_ca: client_ca.into(),
        ..Listener::default()
    };
    vec![
        listener(TlsMode::None, AuthMode::Optional, ""),
        listener(TlsMode::Implicit, AuthMode::Optional, "client-ca.pem"),
        listener(TlsMode::None, AuthMode::None, ""),
    ]
}

fn setup(pki: &Pki) -> Setup {
    let mut setup = Setup {
        users: Some(users(pki)),
        extra_listeners: listeners(),
        files: vec![("client-ca.pem".into(), pki.ca_pem.clone().into_bytes())],
        ..Setup::default()
    };
    setup.config.log.decisions = "decisions.jsonl".into();
    setup
}

async fn plain_from(server: &TestServer, source: &str, listener: usize) -> Client {
    let stream = connect_from(source, server.port(listener)).await;
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.hello(false).await;
    client
}

/// A TLS client on the implicit-TLS listener, presenting `certificate` if given.
async fn tls_client(
    server: &TestServer,
    certificate: Option<&(Vec<u8>, Vec<u8>)>,
) -> Result<Client, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&server.cert_pem()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match certificate {
        Some((der, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(der.clone())],
                PrivateKeyDer::try_from(key.clone()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port(OPTIONAL_CERT)))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await?;
    let mut client = Client::new(Box::new(tls), server.cert_pem());
    let greeting = client.reply().await;
    if greeting.is_empty() {
        // TLS 1.3: a refused client certificate shows at the first read.
        return Err(std::io::Error::other("closed after the handshake"));
    }
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    Ok(client)
}

fn last_user(server: &TestServer) -> String {
    let outbox = server.outbox_raw();
    let (message, envelope) = outbox.last().expect("a relayed message");
    let trace = String::from_utf8_lossy(&message[..80.min(message.len())]).into_owned();
    format!(
        "{} {}",
        envelope["user"].as_str().unwrap_or_default(),
        trace
    )
}

/// The decision log's lines, once the writer has caught up with `count` of them.
async fn decision_lines(server: &TestServer, count: usize) -> Vec<serde_json::Value> {
    let path = server.dir.join("decisions.jsonl");
    for _ in 0..200 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the decision log did not reach {count} lines");
}

#[tokio::test]
async fn a_bound_network_sends_without_auth_and_others_get_530() {
    let pki = pki();
    let server = TestServer::start_setup(setup(&pki)).await;
    let mut printer = plain_from(&server, "127.0.0.2", OPTIONAL).await;
    assert_eq!(printer.send_plain().await.get(..3), Some("250"));
    let relayed = last_user(&server);
    assert!(relayed.starts_with("printer "), "{relayed}");
    assert!(relayed.contains("with ESMTP id"), "not ESMTPA: {relayed}");
    // An address bound to nobody.
    let mut stranger = plain_from(&server, "127.0.0.3", OPTIONAL).await;
    assert_eq!(
        stranger.command("MAIL FROM:<a@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    // The same bound address on a listener that requires AUTH.
    let mut required = plain_from(&server, "127.0.0.2", support::PLAINTEXT_AUTH).await;
    assert_eq!(
        required.command("MAIL FROM:<a@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    // `auth = "none"`: identified by network only; AUTH neither offered nor accepted.
    let stream = connect_from("127.0.0.2", server.port(NO_AUTH)).await;
    let mut device = Client::new(Box::new(stream), server.cert_pem());
    assert!(device.reply().await.starts_with("220"));
    let ehlo = device.command("EHLO client.test").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let plain = support::base64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
    assert!(
        device
            .command(&format!("AUTH PLAIN {plain}"))
            .await
            .starts_with("502")
    );
    assert_eq!(device.send_plain().await.get(..3), Some("250"));
    let mut stranger = plain_from(&server, "127.0.0.3", NO_AUTH).await;
    assert_eq!(
        stranger.command("MAIL FROM:<a@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    let lines = decision_lines(&server, 2).await;
    assert!(
        lines
            .iter()
            .all(|l| l["user"] == "printer" && l["identified_by"] == "network")
    );
    server.stop().await;
}

#[tokio::test]
async fn auth_wins_over_network_identity() {
    let pki = pki();
    let server = TestServer::start_setup(setup(&pki)).await;
    let mut client = plain_from(&server, "127.0.0.2", OPTIONAL).await;
    client.login().await;
    assert_eq!(client.send_plain().await.get(..3), Some("250"));
    let relayed = last_user(&server);
    assert!(relayed.starts_with("test-app "), "{relayed}");
    assert!(relayed.contains("with ESMTPA id"), "{relayed}");
    let lines = decision_lines(&server, 1).await;
    assert_eq!(lines[0]["identified_by"], "auth");
    server.stop().await;
}

#[tokio::test]
async fn a_client_certificate_is_its_user() {
    let pki = pki();
    let server = TestServer::start_setup(setup(&pki)).await;
    let mut scanner = tls_client(&server, Some(&pki.client)).await.unwrap();
    assert_eq!(scanner.send_plain().await.get(..3), Some("250"));
    let relayed = last_user(&server);
    assert!(relayed.starts_with("scanner "), "{relayed}");
    assert!(relayed.contains("with ESMTPS id"), "{relayed}");
    let lines = decision_lines(&server, 1).await;
    assert_eq!(lines[0]["identified_by"], "certificate");
    // No certificate (from an unbound address): nobody.
    let mut anonymous = tls_client(&server, None).await.unwrap();
    assert_eq!(
        anonymous.command("MAIL FROM:<a@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    // A certificate from another CA is refused by the handshake itself.
    match tls_client(&server, Some(&pki.stranger)).await {
        Err(_) => {}
        Ok(mut client) => assert!(
            !client
                .command("MAIL FROM:<a@example.com>")
                .await
                .starts_with("250")
        ),
    }
    server.stop().await;
}

/// swaks without AUTH from `source`: its exit status and transcript.
async fn swaks_from(server: &TestServer, source: &str) -> (bool, String) {
    let args: Vec<String> = [
        "--server",
        "127.0.0.1",
        "--port",
        &server.port(OPTIONAL).to_string(),
        "--local-interface",
        source,
        "--from",
        "marketing@example.com",
        "--to",
        "rcpt@example.com",
        "--header",
        "Subject: printer job",
        "--body",
        "scanned page",
    ]
    .map(str::to_owned)
    .to_vec();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("swaks")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_without_auth_from_a_bound_and_an_unbound_network() {
    if !tool_available("swaks", &["--version"]) {
        return;
    }
    let pki = pki();
    let server = TestServer::start_setup(setup(&pki)).await;
    let (ok, transcript) = swaks_from(&server, "127.0.0.2").await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("<-  250 2.0.0 Ok"), "{transcript}");
    assert!(last_user(&server).starts_with("printer "));
    let (ok, transcript) = swaks_from(&server, "127.0.0.3").await;
    assert!(!ok, "{transcript}");
    assert!(
        transcript.contains("<** 530 5.7.0 Authentication required"),
        "{transcript}"
    );
    assert_eq!(
        server.outbox_raw().len(),
        1,
        "nothing relayed for 127.0.0.3"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_certificate_subject_is_its_user() {
    let pki = pki();
    let server = TestServer::start_setup(setup(&pki)).await;
    let mut badge = tls_client(&server, Some(&pki.badge)).await.unwrap();
    assert_eq!(badge.send_plain().await.get(..3), Some("250"));
    assert!(last_user(&server).starts_with("badge "));
    let lines = decision_lines(&server, 1).await;
    assert_eq!(lines[0]["identified_by"], "certificate");
    // A common name holding the separator is not the two-part subject.
    let mut lookalike = tls_client(&server, Some(&pki.lookalike)).await.unwrap();
    assert_eq!(
        lookalike.command("MAIL FROM:<a@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    // A subject entry with a separator inside a value is a config error.
    for bad in [
        "subject:CN=a\\, O=b",
        "subject:CN=",
        "subject:CN=a+O=b",
        "subject:",
    ] {
        assert!(
            sesgate::config::iam::client_certificate_key(bad).is_err(),
            "{bad}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn overlapping_networks_of_two_users_are_a_config_error() {
    let pki = pki();
    let mut setup = setup(&pki);
    setup.users = Some(format!(
        "{}\n[[user]]\nname = \"overlap\"\nnetworks = [\"127.0.0.0/24\"]\n",
        users(&pki)
    ));
    let dir = std::env::temp_dir().join(format!("sesgate-overlap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("iam.toml"), setup.users.unwrap()).unwrap();
    let err = sesgate::config::iam::IamFile::load(&dir.join("iam.toml")).unwrap_err();
    assert!(
        err.to_string().contains(
            "user \"overlap\" networks: 127.0.0.0/24 overlaps 127.0.0.2/32 of user \"printer\""
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn report_only_relays_and_records_a_would_be_refusal() {
    let pki = pki();
    let server = TestServer::start_setup(setup(&pki)).await;
    // Enforced: the same policy refuses.
    let mut strict = plain_from(&server, "127.0.0.5", OPTIONAL).await;
    let refused = strict
        .transaction("a@example.com", &["b@example.com"], OTHER)
        .await;
    assert!(refused.starts_with("554 5.7.1 Access denied"), "{refused}");
    // Report-only user, and a user report-only through its group.
    for source in ["127.0.0.4", "127.0.0.6"] {
        let mut legacy = plain_from(&server, source, OPTIONAL).await;
        let reply = legacy
            .transaction("a@example.com", &["b@example.com"], OTHER)
            .await;
        assert!(reply.starts_with("250 2.0.0 Ok"), "{source}: {reply}");
        let allowed = legacy
            .transaction("marketing@example.com", &["b@example.com"], MARKETING)
            .await;
        assert!(allowed.starts_with("250"), "{allowed}");
    }
    assert_eq!(server.outbox().len(), 4);
    let lines = decision_lines(&server, 5).await;
    let would: Vec<_> = lines.iter().filter(|l| l["enforced"] == false).collect();
    assert_eq!(would.len(), 4);
    assert_eq!(
        would
            .iter()
            .filter(|l| l["decision"] == "implicit-deny")
            .count(),
        2
    );
    let strict_line = lines.iter().find(|l| l["user"] == "strict").unwrap();
    assert_eq!(strict_line["enforced"], true);
    assert_eq!(strict_line["decision"], "implicit-deny");
    let metrics = server.running.as_ref().unwrap().metrics().render();
    for user in ["legacy", "piloted"] {
        assert!(
            metrics.contains(&format!(
                "sesgate_would_refuse_total{{user=\"{user}\",decision=\"implicit-deny\"}} 1"
            )),
            "{metrics}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn refusals_before_policy_stay_enforced_for_report_only_users() {
    let pki = pki();
    let server = TestServer::start_setup(setup(&pki)).await;
    let mut legacy = plain_from(&server, "127.0.0.4", OPTIONAL).await;
    let reply = legacy
        .transaction(
            "a@example.com",
            &["b@example.com"],
            "From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("554"), "{reply}");
    assert!(server.outbox().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn shadow_disagreements_are_counted_by_user_and_direction() {
    let pki = pki();
    let mut setup = setup(&pki);
    setup.config.iam.shadow_dir = "policies.next".into();
    // The shadow set swaps the two: printer tightened, strict loosened.
    let shadow = users(&pki)
        .replace(
            "name = \"printer\"\nnetworks = [\"127.0.0.2/32\"]\npolicies = [\"AllowSendingOnly\"]",
            "name = \"printer\"\nnetworks = [\"127.0.0.2/32\"]\npolicies = [\"AllowFromMarketingAddress\"]",
        )
        .replace(
            "name = \"strict\"\nnetworks = [\"127.0.0.5/32\"]\npolicies = [\"AllowFromMarketingAddress\"]",
            "name = \"strict\"\nnetworks = [\"127.0.0.5/32\"]\npolicies = [\"AllowSendingOnly\"]",
        );
    assert_ne!(shadow, users(&pki));
    setup
        .files
        .push(("policies.next/iam.toml".into(), shadow.into_bytes()));
    for entry in
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            setup.files.push((
                format!("policies.next/{name}"),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
    let server = TestServer::start_setup(setup).await;
    for source in ["127.0.0.2", "127.0.0.5"] {
        let mut client = plain_from(&server, source, OPTIONAL).await;
        client
            .transaction("a@example.com", &["b@example.com"], OTHER)
            .await;
        client
            .transaction("marketing@example.com", &["b@example.com"], MARKETING)
            .await;
    }
    // Only the live set decided: printer's mail went, strict's non-marketing mail did not.
    assert_eq!(server.outbox().len(), 3);
    let metrics = server.running.as_ref().unwrap().metrics().render();
    for (user, direction) in [("printer", "newly-refused"), ("strict", "newly-allowed")] {
        assert!(
            metrics.contains(&format!(
                "sesgate_shadow_disagreements_total{{user=\"{user}\",direction=\"{direction}\"}} 1"
            )),
            "{metrics}"
        );
    }
    assert_eq!(
        metrics
            .matches("sesgate_shadow_disagreements_total{")
            .count(),
        2
    );
    server.stop().await;
}
