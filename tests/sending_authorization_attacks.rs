//! Attacks on sending authorization (issue 11) by a hostile client: an authenticated IAM user of
//! the gateway or a delegate of another account, over SMTP against a real sesgate relaying to
//! the in-repo sink. Each test is an attack that worked before its fix (or guards one that
//! held); every refusal is checked on the wire and in the sink.
//!
//! The gateway's account is 888888888888; the delegate account is 123456789012.

mod support;

use support::sending_authorization::*;
use support::sink::Sink;
use support::*;

/// An IAM policy allowing sending everywhere except as the CEO's address identity.
const NOT_AS_CEO: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": "*"},
    {"Sid": "NeverAsCeo", "Effect": "Deny", "Action": "ses:SendRawEmail",
     "Resource": "arn:aws:ses:us-east-1:888888888888:identity/ceo@example.com"}
  ]
}"#;

fn users() -> String {
    [
        user("app", "/", "policies = [\"NotAsCeo\"]"),
        user(
            "partner",
            "/",
            &format!("account = \"{DELEGATE}\"\npolicies = [\"AllowSendingOnly\"]"),
        ),
        // A delegate at a path, whom example.com's Deny names without it.
        user(
            "pathed",
            "/team/",
            &format!("account = \"{DELEGATE}\"\npolicies = [\"AllowSendingOnly\"]"),
        ),
    ]
    .concat()
}

/// example.com lets the delegate account send; its address identity ceo@example.com (whose
/// policies "take precedence over policies that you attach to their corresponding domain
/// identities", SES-DG `sending-authorization-identity-owner-tasks-policy.md`) lets nobody
/// outside the account send.
fn identities() -> String {
    format!(
        r#"
[[identity]]
name = "example.com"
inline_policies = {{ Partner = '''{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{DELEGATE}"}},"Action":"ses:SendRawEmail","Resource":"{ARN}/example.com"}},{{"Sid":"NotPathed","Effect":"Deny","Principal":{{"AWS":["arn:aws:iam::{DELEGATE}:user/Pathed"]}},"Action":"ses:SendRawEmail","Resource":"{ARN}/example.com"}}]}}''' }}

[[identity]]
name = "ceo@example.com"
inline_policies = {{ NobodyElse = '''{{"Statement":{{"Sid":"NoDelegates","Effect":"Deny","NotPrincipal":{{"AWS":"{OWNER}"}},"Action":"ses:SendRawEmail","Resource":"{ARN}/ceo@example.com"}}}}''' }}

[[identity]]
name = "sub.example.com"
"#
    )
}

/// The users' IAM policy `NotAsCeo`.
fn not_as_ceo(setup: &mut Setup) {
    setup.policies = vec![("NotAsCeo".into(), NOT_AS_CEO.into())];
}

async fn server(sink: &Sink) -> TestServer {
    start(sink, format!("{}\n{}", users(), identities()), not_as_ceo).await
}

/// Attack: name the parent domain's identity in an `X-SES-*-ARN` header so that the address's
/// own (more specific) identity, and the Deny or the policies written on it, is never evaluated.
/// Before the fix the header replaced the resource and the message was relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_identity_arn_does_not_dodge_the_address_identity() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    let app = "arn:aws:iam::888888888888:user/app";
    let ceo = format!("{ARN}/ceo@example.com");
    // Same account, IAM only: the Deny on identity/ceo@example.com holds without a header...
    let reply = send(&server, "app", "bounce@example.com", "ceo@example.com", "").await;
    assert_eq!(reply, denied(app, &ceo));
    // ...and with each header naming the domain identity instead.
    for header in [
        "X-SES-FROM-ARN",
        "X-SES-SOURCE-ARN",
        "X-SES-RETURN-PATH-ARN",
    ] {
        let (mail_from, from) = if header == "X-SES-RETURN-PATH-ARN" {
            ("ceo@example.com", "news@example.com")
        } else {
            ("bounce@example.com", "ceo@example.com")
        };
        let reply = send(
            &server,
            "app",
            mail_from,
            from,
            &format!("{header}: {ARN}/example.com\r\n"),
        )
        .await;
        assert_eq!(reply, denied(app, &ceo), "{header}");
    }
    // Naming the address identity itself changes nothing either.
    let reply = send(
        &server,
        "app",
        "bounce@example.com",
        "ceo@example.com",
        &format!("X-SES-FROM-ARN: {ceo}\r\n"),
    )
    .await;
    assert_eq!(reply, denied(app, &ceo));

    // A delegate: example.com's policy lets its account in, ceo@example.com's denies it. The
    // address identity's policy takes precedence, whichever identity the header names.
    let partner = "arn:aws:iam::123456789012:user/partner";
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "ceo@example.com",
        &format!("X-SES-SOURCE-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert_eq!(reply, denied(partner, &ceo));
    let reply = send(
        &server,
        "partner",
        "ceo@example.com",
        "news@example.com",
        &format!("X-SES-SOURCE-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert_eq!(reply, denied(partner, &ceo));
    // A verified subdomain without any policy is the owner's alone: naming its parent does not
    // let the delegate use it.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@sub.example.com",
        &format!("X-SES-FROM-ARN: {ARN}/example.com\r\nX-SES-SOURCE-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert_eq!(reply, denied(partner, &format!("{ARN}/sub.example.com")));
    assert!(sink.accepted().is_empty(), "nothing refused was relayed");

    // What the policies allow still goes through: the delegate as news@example.com, the user
    // as anyone but the CEO.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        &format!("X-SES-SOURCE-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let reply = send(
        &server,
        "app",
        "bounce@example.com",
        "news@example.com",
        &format!("X-SES-SOURCE-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    assert_eq!(sink.accepted().len(), 2);
    server.stop().await;
}

/// Attack (China and GovCloud regions): the user's ARN was always written in the `aws`
/// partition, so a Deny naming the delegate's real ARN (`arn:aws-cn:iam::...`) never matched it
/// while a grant to its account did, and the message was relayed. The user's ARN is in the
/// region's partition, as AWS writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_arn_is_in_the_partition_of_the_region() {
    let sink = Sink::start().await;
    let arn = "arn:aws-cn:ses:cn-north-1:888888888888:identity";
    let identities = format!(
        r#"
[[identity]]
name = "example.com"
inline_policies = {{ Partner = '''{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{DELEGATE}"}},"Action":"ses:SendRawEmail","Resource":"{arn}/example.com"}},{{"Sid":"NotPartner","Effect":"Deny","Principal":{{"AWS":"arn:aws-cn:iam::{DELEGATE}:user/partner"}},"Action":"ses:SendRawEmail","Resource":"{arn}/example.com"}}]}}''' }}
"#
    );
    let server = start(&sink, format!("{}\n{identities}", users()), |setup| {
        not_as_ceo(setup);
        setup.config.account.region = "cn-north-1".into();
    })
    .await;
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        &format!("X-SES-SOURCE-ARN: {arn}/example.com\r\n"),
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws-cn:iam::123456789012:user/partner",
            &format!("{arn}/example.com")
        )
    );
    assert!(sink.accepted().is_empty());
    server.stop().await;
}

/// Attack: the identity owner denies the delegate user by ARN, written without the user's path
/// (owners of another account rarely know it) and in another case. IAM user names are unique in
/// an account whatever their path and case, so the ARN can only mean that user (AWS refuses to
/// store a principal ARN that names no user): a Deny sesgate cannot match exactly must still
/// apply. Before the fix the delegate's message was relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_naming_the_user_without_its_path_applies() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    let reply = send(
        &server,
        "pathed",
        "bounce@example.com",
        "news@example.com",
        &format!("X-SES-SOURCE-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::123456789012:user/team/pathed",
            &format!("{ARN}/example.com")
        )
    );
    assert!(sink.accepted().is_empty());
    server.stop().await;
}

/// Attack (no identities configured, so the From domain is the identity, SPEC §4): name the
/// From address as an identity of the account in `X-SES-FROM-ARN`, so that the Deny written on
/// the domain's identity is never evaluated. Before the fix the message was relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_identities_an_address_arn_does_not_dodge_the_domain() {
    let sink = Sink::start().await;
    const NOT_AS_EXAMPLE_COM: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*"},
        {"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com"}]}"#;
    let iam_toml = user("app", "/", "policies = [\"NotAsExampleCom\"]");
    let server = start(&sink, iam_toml, |setup| {
        setup.policies = vec![("NotAsExampleCom".into(), NOT_AS_EXAMPLE_COM.into())];
    })
    .await;
    for header in ["X-SES-FROM-ARN", "X-SES-SOURCE-ARN"] {
        let reply = send(
            &server,
            "app",
            "ceo@example.com",
            "ceo@example.com",
            &format!("{header}: {ARN}/ceo@example.com\r\n"),
        )
        .await;
        assert_eq!(
            reply,
            denied(
                "arn:aws:iam::888888888888:user/app",
                &format!("{ARN}/example.com")
            ),
            "{header}"
        );
    }
    assert!(sink.accepted().is_empty());
    // The domain's own ARN is what it always was: denied.
    let reply = send(
        &server,
        "app",
        "ceo@example.com",
        "ceo@example.com",
        &format!("X-SES-FROM-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::888888888888:user/app",
            &format!("{ARN}/example.com")
        )
    );
    server.stop().await;
}
