//! `sesgate import` round trip (issue 11 §6): the sample export under `tests/data/aws-export/`
//! (users, groups, managed policies with versions, inline policies, a permissions boundary, an
//! identity policy naming a same-account user and a delegate account) is imported over a
//! previous `iam.toml` holding credentials, checked, served, and every user sends over SMTP to
//! the in-repo sink with the decision AWS would make.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::sink::Sink;
use support::*;

const ACCOUNT: &str = "111122223333";

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/aws-export")
        .join(file)
}

fn sesgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args(args)
        .output()
        .expect("sesgate runs")
}

fn import(details: &str, out: &Path) -> Output {
    sesgate(&[
        "import",
        "--authorization-details",
        data(details).to_str().unwrap(),
        "--identity-policies",
        data("identity-policies").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn login(user: &str) -> String {
    format!("AKIA{}", user.to_uppercase().replace('-', ""))
}

/// The iam.toml an operator had before re-importing: credentials for the exported users, one
/// user since deleted in AWS, and a delegate of another account with its own identity.
fn previous_iam_toml() -> String {
    let mut toml = String::new();
    for (user, path) in [
        ("billing-app", "/apps/"),
        ("marketing-app", "/apps/"),
        ("newsletter", "/apps/"),
        ("auditor", "/"),
        ("legacy-app", "/legacy/"),
        ("retired", "/"),
    ] {
        // The operator's own quota for billing-app (never in an AWS export) must survive.
        let extra = if user == "billing-app" {
            "max_send_rate = 2.5\nmax_24_hour_send = 100"
        } else {
            ""
        };
        toml.push_str(&user_toml(user, path, &login(user), PASSWORD, extra));
    }
    toml.push_str(&user_toml(
        "partner",
        "/",
        &login("partner"),
        PASSWORD,
        "account = \"444455556666\"\nnetworks = [\"192.0.2.0/28\"]\ninline_policies = { Send = '{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"ses:SendRawEmail\",\"Resource\":\"*\"}}' }",
    ));
    toml.push_str("[[identity]]\nname = \"partner.example\"\naccount = \"444455556666\"\n");
    toml
}

fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for sub in [dir.to_owned(), dir.join("identities")] {
        for entry in std::fs::read_dir(&sub).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path.strip_prefix(dir).unwrap().to_owned(), text));
            }
        }
    }
    found.sort();
    found
}

async fn send(server: &TestServer, user: &str, from: &str, rcpt: &str, headers: &str) -> String {
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    client.login_as(&login(user), PASSWORD).await;
    let domain = from.rsplit_once('@').unwrap().1;
    client
        .transaction(
            &format!("bounce@{domain}"),
            &[rcpt],
            &format!("From: {from}\r\n{headers}Subject: import\r\n\r\nbody\r\n"),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_round_trip() {
    let out = std::env::temp_dir().join(format!("sesgate-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("iam.toml"), previous_iam_toml()).unwrap();
    std::fs::write(
        out.join("HandWritten.json"),
        r#"{"Statement":{"Effect":"Deny","Action":"ses:*","Resource":"*"}}"#,
    )
    .unwrap();

    let output = import("authorization-details.json", &out);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "imported 5 users, 2 groups, 4 managed policies and 2 identities of account 111122223333",
        "1 managed policies of the export are attached to no user or group: not written",
        "1 roles ignored",
        "user \"newsletter\" has no SES-relevant permission",
        "user \"auditor\" has no SES-relevant permission",
        "removed user \"retired\": not in the export (its 1 credential(s) went with it)",
        "kept user \"partner\" of account 444455556666",
        "kept identity partner.example",
        "left in place:",
    ] {
        assert!(report.contains(line), "{line:?} not in:\n{report}");
    }
    assert!(
        !report.contains("user \"billing-app\" has no SES-relevant"),
        "{report}"
    );
    assert!(
        !report.contains("user \"marketing-app\" has no SES-relevant"),
        "{report}"
    );
    assert!(
        !report.contains("no [[user.credentials]] yet"),
        "credentials kept: {report}"
    );
    let iam = std::fs::read_to_string(out.join("iam.toml")).unwrap();
    let parsed = sesgate::config::iam::IamFile::parse(Path::new("iam.toml"), &iam).unwrap();
    let logins: Vec<String> = parsed.logins().into_iter().map(|l| l.iam_user).collect();
    assert_eq!(
        logins,
        [
            "billing-app",
            "marketing-app",
            "newsletter",
            "auditor",
            "legacy-app",
            "partner"
        ]
    );
    assert!(iam.contains("networks = [\"192.0.2.0/28\"]"), "{iam}");
    let billing = parsed
        .users
        .iter()
        .find(|u| u.name == "billing-app")
        .expect("billing-app imported");
    assert_eq!(
        billing.max_send_rate.as_ref().map(|r| *r.get_ref()),
        Some(2.5),
        "{iam}"
    );
    assert_eq!(billing.max_24_hour_send, Some(100), "{iam}");
    // The default version of SesSendRawOnly (v2), not the older ses:* one.
    let send_raw = std::fs::read_to_string(out.join("SesSendRawOnly.json")).unwrap();
    assert!(
        send_raw.contains("identity/example.com") && !send_raw.contains("ses:*"),
        "{send_raw}"
    );

    // The API's URL-encoded form imports to the same files.
    let first = files(&out);
    let again = import("authorization-details-api.json", &out);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let second = files(&out);
    assert_eq!(first.len(), second.len());
    for ((path, a), (_, b)) in first.iter().zip(&second) {
        let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(a), body(b), "{}", path.display());
    }

    // check passes as serve will load it.
    std::fs::write(
        out.join("sesgate.toml"),
        format!("[account]\nid = \"{ACCOUNT}\"\n[iam]\ndir = \".\"\n[upstream]\nurl = \"file://outbox\"\n"),
    )
    .unwrap();
    let check = sesgate(&[
        "check",
        "--config",
        out.join("sesgate.toml").to_str().unwrap(),
    ]);
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{check_out}");
    assert!(!check_out.contains("error:"), "{check_out}");

    // Serve it and send as each user.
    let sink = Sink::start().await;
    let mut setup = Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    setup.config.account.id = ACCOUNT.into();
    setup.config.iam.dir = out.clone();
    let server = TestServer::start_setup(setup).await;
    let to = "customer@example.org";
    let denied = |user: &str, path: &str, resource: &str| {
        format!(
            "554 5.7.1 Access denied: User `arn:aws:iam::{ACCOUNT}:user{path}{user}' is not authorized to perform `ses:SendRawEmail' on resource `arn:aws:ses:us-east-1:{resource}'"
        )
    };
    let example_com = format!("{ACCOUNT}:identity/example.com");
    let marketing = format!("{ACCOUNT}:identity/marketing.example.com");
    let cases: Vec<(&str, &str, &str, &str, Option<String>)> = vec![
        // Group managed policy (default version) allows example.com; the inline Deny keeps it
        // to billing@; the group's inline Deny keeps competitors out.
        ("billing-app", "billing@example.com", to, "", None),
        (
            "billing-app",
            "other@example.com",
            to,
            "",
            Some(denied("billing-app", "/apps/", &example_com)),
        ),
        (
            "billing-app",
            "billing@example.com",
            "buyer@competitor.example",
            "",
            Some(denied("billing-app", "/apps/", &example_com)),
        ),
        // The same group policy; v1 (ses:* on *) would have allowed marketing.example.com.
        ("legacy-app", "info@example.com", to, "", None),
        (
            "legacy-app",
            "news@marketing.example.com",
            to,
            "",
            Some(denied("legacy-app", "/legacy/", &marketing)),
        ),
        // AmazonSESFullAccess within the SesMarketingBoundary boundary.
        ("marketing-app", "news@marketing.example.com", to, "", None),
        (
            "marketing-app",
            "info@example.com",
            to,
            "",
            Some(denied("marketing-app", "/apps/", &example_com)),
        ),
        // No IAM policy: example.com's sending authorization policy names the user.
        ("newsletter", "news@example.com", to, "", None),
        (
            "newsletter",
            "other@example.com",
            to,
            "",
            Some(denied("newsletter", "/apps/", &example_com)),
        ),
        // Read-only: imported, refused.
        (
            "auditor",
            "news@example.com",
            to,
            "",
            Some(denied("auditor", "/", &example_com)),
        ),
    ];
    let mut relayed = 0;
    for (user, from, rcpt, headers, expected) in &cases {
        let reply = send(&server, user, from, rcpt, headers).await;
        match expected {
            None => {
                assert!(reply.starts_with("250 2.0.0 Ok"), "{user} {from}: {reply}");
                relayed += 1;
            }
            Some(expected) => assert_eq!(&reply, expected, "{user} {from}"),
        }
    }
    // The delegate account kept from the previous file, granted by example.com's policy.
    let source = format!("X-SES-SOURCE-ARN: arn:aws:ses:us-east-1:{example_com}\r\n");
    let reply = send(&server, "partner", "partner-news@example.com", to, &source).await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    relayed += 1;
    let reply = send(&server, "partner", "news@example.com", to, &source).await;
    assert!(
        reply.starts_with("554 5.7.1 Access denied: User `arn:aws:iam::444455556666:user/partner'"),
        "{reply}"
    );
    assert_eq!(sink.accepted().len(), relayed);
    // The user deleted in AWS cannot log in any more.
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    let plain = base64_encode(format!("\0{}\0{PASSWORD}", login("retired")).as_bytes());
    assert_eq!(
        client.command(&format!("AUTH PLAIN {plain}")).await,
        "535 5.7.8 Authentication Credentials Invalid"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn import_refuses_what_it_cannot_import_exactly() {
    let out = std::env::temp_dir().join(format!("sesgate-import-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let export = std::fs::read_to_string(data("authorization-details.json")).unwrap();
    let cases = [
        (
            export.replace("\"IsDefaultVersion\": true,\n                    \"CreateDate\": \"2024-02-12", "\"IsDefaultVersion\": false,\n                    \"CreateDate\": \"2024-02-12"),
            "Policies[0] (SesSendRawOnly): 0 versions are marked IsDefaultVersion",
        ),
        (
            export.replace("\"Effect\": \"Deny\",\n                                \"Action\": \"ses:SendRawEmail\",\n                                \"Resource\": \"*\",\n                                \"Condition\": {\n                                    \"StringNotEquals\"", "\"Effect\": \"deny\",\n                                \"Action\": \"ses:SendRawEmail\",\n                                \"Resource\": \"*\",\n                                \"Condition\": {\n                                    \"StringNotEquals\""),
            "inline policy \"BillingFromOnly\" of \"billing-app\": policy \"billing-app/BillingFromOnly\": Statement[0].Effect",
        ),
        (
            export.replace("arn:aws:iam::aws:policy/AmazonSESFullAccess\"\n                }", "arn:aws:iam::aws:policy/AmazonSESFullAccessV2\"\n                }"),
            "user \"marketing-app\": managed policy arn:aws:iam::aws:policy/AmazonSESFullAccessV2 is not in the export's Policies",
        ),
        (
            export.replace("arn:aws:iam::111122223333:user/auditor", "arn:aws:iam::999999999999:user/auditor"),
            "the export mixes accounts 111122223333, 999999999999",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = out.join(format!("export-{i}.json"));
        std::fs::write(&file, text).unwrap();
        let output = sesgate(&[
            "import",
            "--authorization-details",
            file.to_str().unwrap(),
            "--out",
            out.join("policies").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{want}: {stderr}");
        assert!(stderr.contains(want), "{want}:\n{stderr}");
        assert!(
            !out.join("policies/iam.toml").exists(),
            "nothing written on error"
        );
    }
    // An identity export whose file name is not an identity.
    let identities = out.join("identities");
    std::fs::create_dir_all(&identities).unwrap();
    std::fs::write(identities.join("not an identity.json"), "{\"Policies\":{}}").unwrap();
    let output = sesgate(&[
        "import",
        "--authorization-details",
        data("authorization-details.json").to_str().unwrap(),
        "--identity-policies",
        identities.to_str().unwrap(),
        "--out",
        out.join("policies").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the file name must be the identity"));
    let _ = std::fs::remove_dir_all(&out);
}
