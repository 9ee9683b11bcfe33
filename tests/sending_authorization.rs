//! Sending authorization (issue 11, SPEC §4) over SMTP against a real sesgate relaying to the
//! in-repo sink: identities with owners and sending authorization policies, delegate senders of
//! other accounts, and AWS's evaluation across policy types (IAM-UG "Policy evaluation logic",
//! "Cross-account policy evaluation logic"; ses-iam-facts.md, sending-authorization addendum).
//!
//! The gateway's account is 888888888888 (the identity owner of the SES guide's examples); the
//! delegate account is 123456789012. Every refusal is checked on the wire and in the sink.

mod support;

use support::sending_authorization::*;
use support::sink::Sink;
use support::*;

/// The guide's "Specifying the Delegate Sender" grants, on example.com: account 123456789012 as
/// a whole, one same-account user by ARN, and a Deny on admin@example.com for everyone.
const EXAMPLE_COM: &str = r#"{
  "Id": "ExampleAuthorizationPolicy",
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AuthorizeDelegateAccount",
      "Effect": "Allow",
      "Resource": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
      "Principal": {"AWS": ["123456789012"]},
      "Action": ["ses:SendEmail", "ses:SendRawEmail"]
    },
    {
      "Sid": "AuthorizeNewsletterUser",
      "Effect": "Allow",
      "Resource": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
      "Principal": {"AWS": ["arn:aws:iam::888888888888:user/apps/newsletter", "arn:aws:iam::888888888888:user/intern", "arn:aws:iam::888888888888:user/boxed"]},
      "Action": "ses:SendRawEmail"
    },
    {
      "Sid": "NeverAdmin",
      "Effect": "Deny",
      "Resource": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
      "Principal": "*",
      "Action": "ses:Send*",
      "Condition": {"StringEquals": {"ses:FromAddress": "admin@example.com"}}
    }
  ]
}"#;

/// A wildcard Resource (also covering other identities) attached to wild.example only.
const WILDCARD: &str = r#"{
  "Version": "2012-10-17",
  "Statement": {
    "Effect": "Allow",
    "Resource": "arn:aws:ses:us-east-1:888888888888:identity/*",
    "Principal": {"AWS": "123456789012"},
    "Action": "ses:SendRawEmail"
  }
}"#;

fn users() -> String {
    [
        // Same account: allowed only by example.com's policy naming it.
        user("newsletter", "/apps/", ""),
        // Same account, named without its path in the policy: not that user.
        user("intern", "/apps/", ""),
        // Same account, IAM policy allowing everything.
        user("app", "/apps/", "policies = [\"AllowSendingOnly\"]"),
        // Same account, no policy at all.
        user("nobody", "/", ""),
        // Same account, named by example.com's policy, with a boundary that allows only
        // marketing@example.com.
        user(
            "boxed",
            "/",
            "policies = [\"AllowSendingOnly\"]\npermissions_boundary = \"AllowFromMarketingAddress\"",
        ),
        // Delegate account: IAM policy allows, no boundary.
        user(
            "partner",
            "/",
            &format!("account = \"{DELEGATE}\"\npolicies = [\"AllowSendingOnly\"]"),
        ),
        // Delegate account: no IAM policy of its own.
        user("partner-noiam", "/", &format!("account = \"{DELEGATE}\"")),
        // Delegate account: IAM policy and a permissions boundary that allows sending.
        user(
            "bounded",
            "/",
            &format!(
                "account = \"{DELEGATE}\"\npolicies = [\"AllowSendingOnly\"]\npermissions_boundary = \"AllowSendingOnly\""
            ),
        ),
        // A third account nobody grants anything.
        user(
            "stranger",
            "/",
            "account = \"444455556666\"\npolicies = [\"AllowSendingOnly\"]",
        ),
        // A user of the owner account of owned.example: the owner's grant to its own account
        // delegates to this user's IAM policies, of which it has none.
        user("insider", "/", "account = \"555566667777\""),
        user(
            "insider-allowed",
            "/",
            "account = \"555566667777\"\npolicies = [\"AllowSendingOnly\"]",
        ),
    ]
    .concat()
}

fn identities() -> String {
    format!(
        r#"
[[identity]]
name = "example.com"
policies = ["ExampleCom"]

[[identity]]
name = "vip.example"
inline_policies = {{ OnlyPartner = '''{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{DELEGATE}"}},"Action":"ses:SendRawEmail","Resource":"{ARN}/vip.example"}},{{"Sid":"AllButPartnerAndBounded","Effect":"Deny","NotPrincipal":{{"AWS":["arn:aws:iam::{DELEGATE}:user/partner","arn:aws:iam::{DELEGATE}:user/bounded"]}},"Action":"ses:SendRawEmail","Resource":"{ARN}/vip.example"}}]}}''' }}

[[identity]]
name = "case.example"
inline_policies = {{ Cased = '''{{"Version":"2012-10-17","Statement":[{{"Sid":"NamesPartnerWithACapital","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{DELEGATE}:user/Partner"}},"Action":"ses:SendRawEmail","Resource":"{ARN}/case.example","Condition":{{"StringEquals":{{"ses:FromAddress":"a@case.example"}}}}}},{{"Sid":"TheAccount","Effect":"Allow","Principal":{{"AWS":"{DELEGATE}"}},"Action":"ses:SendRawEmail","Resource":"{ARN}/case.example","Condition":{{"StringEquals":{{"ses:FromAddress":["ceo@case.example","ok@case.example"]}}}}}},{{"Sid":"NotThePartner","Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::{DELEGATE}:user/PARTNER"}},"Action":"ses:SendRawEmail","Resource":"{ARN}/case.example","Condition":{{"StringEquals":{{"ses:FromAddress":"ceo@case.example"}}}}}}]}}''' }}

[[identity]]
name = "wild.example"
policies = ["Wildcard"]

[[identity]]
name = "tame.example"

[[identity]]
name = "example.net"
inline_policies = {{ Partner = '''{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":"{DELEGATE}"}},"Action":"ses:SendRawEmail","Resource":"{ARN}/example.net"}}}}''' }}

[[identity]]
name = "example.net"
account = "999999999999"

[[identity]]
name = "owned.example"
account = "555566667777"
inline_policies = {{ OwnAccount = '''{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::555566667777:root"}},"Action":"ses:SendRawEmail","Resource":"arn:aws:ses:us-east-1:555566667777:identity/owned.example"}}}}''' }}
"#
    )
}

/// The users and identities of every test here.
fn iam_toml() -> String {
    format!("{}\n{}", users(), identities())
}

/// The identities' policy files; example.com and bounces.example.com are the account's verified
/// identities.
fn identity_files(setup: &mut Setup) {
    setup.files = vec![
        (
            "policies/identities/ExampleCom.json".into(),
            EXAMPLE_COM.as_bytes().to_vec(),
        ),
        (
            "policies/identities/Wildcard.json".into(),
            WILDCARD.as_bytes().to_vec(),
        ),
    ];
    setup.config.account.identities = vec!["example.com".into(), "bounces.example.com".into()];
}

async fn server(sink: &Sink) -> TestServer {
    start(sink, iam_toml(), identity_files).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_account_user_allowed_only_by_the_identity_policy() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    // No IAM policy at all: example.com's policy names the user's ARN, which suffices.
    let reply = send(
        &server,
        "newsletter",
        "bounce@example.com",
        "news@example.com",
        "",
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    assert_eq!(sink.accepted().len(), 1);
    // A same-account user the policy does not name, with no IAM policy: refused.
    let reply = send(
        &server,
        "nobody",
        "bounce@example.com",
        "news@example.com",
        "",
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::888888888888:user/nobody",
            &format!("{ARN}/example.com")
        )
    );
    // The policy names `user/intern`; this user is `user/apps/intern` (the ARN holds the path).
    let reply = send(
        &server,
        "intern",
        "bounce@example.com",
        "news@example.com",
        "",
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::888888888888:user/apps/intern",
            &format!("{ARN}/example.com")
        )
    );
    // The user is named for example.com only, not for the other verified identity.
    let reply = send(
        &server,
        "newsletter",
        "bounce@bounces.example.com",
        "news@bounces.example.com",
        "",
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::888888888888:user/apps/newsletter",
            &format!("{ARN}/bounces.example.com")
        )
    );
    // A grant naming the user is not limited by its permissions boundary (IAM-UG, permissions
    // boundaries: "permissions boundaries do not reduce the permissions granted by
    // resource-based policies")...
    let reply = send(
        &server,
        "boxed",
        "bounce@example.com",
        "news@example.com",
        "",
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    // ...while its IAM policy is, where no identity policy grants it.
    let reply = send(
        &server,
        "boxed",
        "bounce@bounces.example.com",
        "news@bounces.example.com",
        "",
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::888888888888:user/boxed",
            &format!("{ARN}/bounces.example.com")
        )
    );
    assert_eq!(sink.accepted().len(), 2, "nothing refused was relayed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_in_the_identity_policy_beats_an_identity_based_allow() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    // `app` may send anything by its IAM policy; example.com's policy denies admin@ to all.
    let reply = send(
        &server,
        "app",
        "bounce@example.com",
        "admin@example.com",
        "",
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::888888888888:user/apps/app",
            &format!("{ARN}/example.com")
        )
    );
    let reply = send(&server, "app", "bounce@example.com", "info@example.com", "").await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    // The Deny binds the delegate too.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "admin@example.com",
        &source_arn("example.com"),
    )
    .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    assert_eq!(sink.accepted().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_needs_both_sides() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    // Both sides allow: the delegate's IAM policy and example.com's grant to its account. The
    // ARN headers are relayed unchanged, for SES.
    let headers = source_arn("example.com");
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "Partner <news@example.com>",
        &headers,
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let relayed = sink.accepted();
    assert_eq!(relayed.len(), 1);
    let data = String::from_utf8_lossy(&relayed[0].data).into_owned();
    assert!(data.contains(&headers), "relayed unchanged: {data}");
    // The delegate's own account does not allow: refused.
    let reply = send(
        &server,
        "partner-noiam",
        "bounce@example.com",
        "news@example.com",
        &headers,
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::123456789012:user/partner-noiam",
            &format!("{ARN}/example.com")
        )
    );
    // The identity's policy does not grant this account: refused.
    let reply = send(
        &server,
        "stranger",
        "bounce@example.com",
        "news@example.com",
        &headers,
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::444455556666:user/stranger",
            &format!("{ARN}/example.com")
        )
    );
    // An identity with no sending authorization policy lets no other account in.
    let reply = send(
        &server,
        "partner",
        "bounce@tame.example",
        "news@tame.example",
        &source_arn("tame.example"),
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::123456789012:user/partner",
            &format!("{ARN}/tame.example")
        )
    );
    // An identity of an account the gateway has no identity of: refused the same way.
    let unknown = "arn:aws:ses:us-east-1:777777777777:identity/example.com";
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        &format!("X-SES-SOURCE-ARN: {unknown}\r\n"),
    )
    .await;
    assert_eq!(
        reply,
        denied("arn:aws:iam::123456789012:user/partner", unknown)
    );
    // Without ARN headers the delegate sends as its own account, which has no identity here.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        "",
    )
    .await;
    assert_eq!(
        reply,
        "554 5.7.1 Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: news@example.com, bounce@example.com"
    );
    assert_eq!(sink.accepted().len(), 1, "nothing refused was relayed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arn_headers_must_align_with_their_addresses() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    // The From address is not covered by the named identity.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "ceo@other.org",
        &source_arn("example.com"),
    )
    .await;
    assert_eq!(
        reply,
        format!(
            "554 5.7.1 Message rejected: The address 'ceo@other.org' does not align with the given ARN '{ARN}/example.com'"
        )
    );
    // FROM-ARN covers From, but the MAIL FROM is the delegate's to verify: it has no identity.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        &format!("X-SES-FROM-ARN: {ARN}/example.com\r\n"),
    )
    .await;
    assert!(
        reply.ends_with("failed the check in region US-EAST-1: bounce@example.com"),
        "{reply}"
    );
    // RETURN-PATH-ARN of another identity than the MAIL FROM's.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        &format!(
            "X-SES-FROM-ARN: {ARN}/example.com\r\nX-SES-RETURN-PATH-ARN: {ARN}/vip.example\r\n"
        ),
    )
    .await;
    assert!(
        reply.starts_with(
            "554 5.7.1 Message rejected: The address 'bounce@example.com' does not align"
        ),
        "{reply}"
    );
    // The right owner, another region: not an identity of this gateway's region.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        "X-SES-SOURCE-ARN: arn:aws:ses:eu-west-1:888888888888:identity/example.com\r\n",
    )
    .await;
    assert_eq!(
        reply,
        "554 5.6.0 Transaction failed: Invalid ARN 'arn:aws:ses:eu-west-1:888888888888:identity/example.com'"
    );
    // Case: the domain part of an identity is case-insensitive, the rest of the ARN is not.
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        &source_arn("EXAMPLE.COM"),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    for bad in [
        "ARN:aws:ses:us-east-1:888888888888:identity/example.com",
        "arn:AWS:ses:us-east-1:888888888888:identity/example.com",
        "arn:aws:SES:us-east-1:888888888888:identity/example.com",
        "arn:aws:ses:US-EAST-1:888888888888:identity/example.com",
        "arn:aws:ses:us-east-1:888888888888:Identity/example.com",
    ] {
        let reply = send(
            &server,
            "partner",
            "bounce@example.com",
            "news@example.com",
            &format!("X-SES-SOURCE-ARN: {bad}\r\n"),
        )
        .await;
        assert_eq!(
            reply,
            format!("554 5.6.0 Transaction failed: Invalid ARN '{bad}'"),
            "{bad}"
        );
    }
    assert_eq!(sink.accepted().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_principal_and_principal_case() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    let vip = source_arn("vip.example");
    // NotPrincipal Deny excludes exactly the partner...
    let reply = send(&server, "partner", "b@vip.example", "a@vip.example", &vip).await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    // ...so another user of the same account is denied...
    let reply = send(
        &server,
        "partner-noiam",
        "b@vip.example",
        "a@vip.example",
        &vip,
    )
    .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    // ...and (IAM-UG, permissions boundaries) a listed user with a boundary is always denied.
    let reply = send(&server, "bounded", "b@vip.example", "a@vip.example", &vip).await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::123456789012:user/bounded",
            &format!("{ARN}/vip.example")
        )
    );
    // An Allow naming `user/Partner` is not `user/partner`; a Deny naming `user/PARTNER` is
    // (IAM user names are unique ignoring case: the Deny fails closed, the Allow too).
    let case = source_arn("case.example");
    let reply = send(
        &server,
        "partner",
        "b@case.example",
        "a@case.example",
        &case,
    )
    .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    let reply = send(
        &server,
        "partner",
        "b@case.example",
        "ceo@case.example",
        &case,
    )
    .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    let reply = send(
        &server,
        "partner",
        "b@case.example",
        "ok@case.example",
        &case,
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    assert_eq!(sink.accepted().len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_stay_with_their_identity_and_owner() {
    let sink = Sink::start().await;
    let server = server(&sink).await;
    // wild.example's policy names identity/* but is attached to wild.example only.
    let reply = send(
        &server,
        "partner",
        "b@wild.example",
        "a@wild.example",
        &source_arn("wild.example"),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let reply = send(
        &server,
        "partner",
        "b@tame.example",
        "a@tame.example",
        &source_arn("tame.example"),
    )
    .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    // example.net is verified by two owners; only 888888888888's grants the partner.
    let reply = send(
        &server,
        "partner",
        "b@example.net",
        "a@example.net",
        &source_arn("example.net"),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    let other_owner = "arn:aws:ses:us-east-1:999999999999:identity/example.net";
    let reply = send(
        &server,
        "partner",
        "b@example.net",
        "a@example.net",
        &format!("X-SES-SOURCE-ARN: {other_owner}\r\n"),
    )
    .await;
    assert_eq!(
        reply,
        denied("arn:aws:iam::123456789012:user/partner", other_owner)
    );
    // A user whose `account` is the identity's owner: the owner's grant to its own account
    // delegates to the user's IAM policies, so claiming the account is no way around them.
    let owned = "X-SES-SOURCE-ARN: arn:aws:ses:us-east-1:555566667777:identity/owned.example\r\n";
    let reply = send(
        &server,
        "insider",
        "b@owned.example",
        "a@owned.example",
        owned,
    )
    .await;
    assert_eq!(
        reply,
        denied(
            "arn:aws:iam::555566667777:user/insider",
            "arn:aws:ses:us-east-1:555566667777:identity/owned.example"
        )
    );
    let reply = send(
        &server,
        "insider-allowed",
        "b@owned.example",
        "a@owned.example",
        owned,
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    // Its own account's identity is found without ARN headers too.
    let reply = send(
        &server,
        "insider-allowed",
        "b@owned.example",
        "a@owned.example",
        "",
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    assert_eq!(sink.accepted().len(), 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_decision_log_and_simulate_name_the_policy_types() {
    let sink = Sink::start().await;
    let server = start(&sink, iam_toml(), |setup| {
        identity_files(setup);
        setup.config.log.decisions = "decisions.jsonl".into();
    })
    .await;
    let headers = source_arn("example.com");
    let reply = send(
        &server,
        "partner",
        "bounce@example.com",
        "news@example.com",
        &headers,
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let reply = send(
        &server,
        "app",
        "bounce@example.com",
        "admin@example.com",
        "",
    )
    .await;
    assert!(reply.starts_with("554"), "{reply}");
    let log = server.dir.join("decisions.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{lines}");
    assert_eq!(records[0]["decision"], "allowed");
    assert_eq!(
        records[0]["policy_types"],
        serde_json::json!(["IAM policy", "resource policy"])
    );
    assert_eq!(
        records[0]["principal"],
        "arn:aws:iam::123456789012:user/partner"
    );
    assert!(
        records[0]["statements"]
            .as_str()
            .unwrap()
            .contains("ExampleCom (resource policy) Statement[0] Sid AuthorizeDelegateAccount"),
        "{}",
        records[0]
    );
    assert_eq!(records[1]["decision"], "explicit-deny");
    assert_eq!(
        records[1]["statements"],
        "explicitly denied by ExampleCom (resource policy) Statement[2] Sid NeverAdmin"
    );

    // `sesgate simulate` decides the same transaction through the same code and shows the types.
    let config = server.dir.join("sesgate.toml");
    std::fs::write(
        &config,
        format!(
            "[account]\nid = \"{OWNER}\"\nidentities = [\"example.com\", \"bounces.example.com\"]\n[iam]\ndir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n",
            server.dir.join("policies").display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args([
            "simulate",
            "--config",
            config.to_str().unwrap(),
            "--user",
            "partner",
            "--mail-from",
            "bounce@example.com",
            "--from",
            "news@example.com",
            "--rcpt",
            "x@example.org",
            "--header",
            headers.trim_end(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("decision: allowed"), "{text}");
    assert!(
        text.contains("policy types: IAM policy, resource policy"),
        "{text}"
    );
    assert!(text.contains("evaluation: cross-account: both"), "{text}");
    assert!(
        text.contains("  [resource policy] ExampleCom (resource policy) Statement[0] Sid AuthorizeDelegateAccount"),
        "{text}"
    );
    assert!(
        text.contains("  [IAM policy] AllowSendingOnly Statement[0]"),
        "{text}"
    );

    // `sesgate replay` re-decides the logged transactions with the identity's policies too: a
    // set where example.com no longer grants the partner's account refuses its message.
    let next = server.dir.join("policies.next");
    std::fs::create_dir_all(next.join("identities")).unwrap();
    for entry in std::fs::read_dir(server.dir.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, next.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        next.join("identities/ExampleCom.json"),
        EXAMPLE_COM.replace("\"123456789012\"", "\"444455556666\""),
    )
    .unwrap();
    std::fs::write(next.join("identities/Wildcard.json"), WILDCARD).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args([
            "replay",
            "--config",
            config.to_str().unwrap(),
            "--policies",
            next.to_str().unwrap(),
            log.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("user partner newly-refused: allowed -> implicit-deny"),
        "{out}"
    );
    assert!(
        out.contains("policy types: IAM policy, resource policy"),
        "{out}"
    );
    server.stop().await;
}

/// A configuration directory for `sesgate check`: sesgate.toml, `policies/` with the guide's
/// policies, `iam_toml` and the identity policy files given.
fn check_dir(name: &str, iam_toml: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = support::serve::policy_dir(&format!("sendauth-{name}"), iam_toml);
    std::fs::create_dir_all(dir.join("policies/identities")).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join("policies/identities").join(file), text).unwrap();
    }
    std::fs::write(
        dir.join("sesgate.toml"),
        format!("[account]\nid = \"{OWNER}\"\nidentities = [\"example.com\"]\n[upstream]\nurl = \"file://outbox\"\n"),
    )
    .unwrap();
    dir
}

/// `sesgate check` on `dir`: its exit code, its report (stdout: warnings, summary) and its
/// errors (stderr).
fn check(dir: &std::path::Path) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args([
            "check",
            "--config",
            dir.join("sesgate.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_what_ses_refuses_with_file_and_json_path() {
    let identity =
        |policy: &str| format!("[[identity]]\nname = \"example.com\"\npolicies = [\"{policy}\"]\n");
    let cases: &[(&str, &str, &str)] = &[
        (
            "other-identity",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"ses:SendRawEmail","Resource":"arn:aws:ses:us-east-1:888888888888:identity/other.com"}]}"#,
            "iam.toml: line 3, column 13: identity \"example.com\" policies: P (",
        ),
        (
            "no-principal",
            r#"{"Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com"}}"#,
            "identities/P.json: policy \"P\": Statement.Principal: a resource-based policy statement needs Principal or NotPrincipal",
        ),
        (
            "unknown-action",
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ses:SendRawMail","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com"}}"#,
            "Statement.Action[0]: \"ses:SendRawMail\" is not an email sending action",
        ),
    ];
    for (name, policy, want) in cases {
        let dir = check_dir(name, &identity("P"), &[("P.json", policy)]);
        let (code, _, out) = check(&dir);
        assert_eq!(code, 2, "{name}: {out}");
        assert!(out.contains(want), "{name}: {out}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The resource error names the JSON path too.
    let dir = check_dir("path", &identity("P"), &[("P.json", cases[0].1)]);
    let (_, _, out) = check(&dir);
    assert!(
        out.contains("Statement[0].Resource[0]: \"arn:aws:ses:us-east-1:888888888888:identity/other.com\" is not the ARN of the identity this policy is attached to (arn:aws:ses:us-east-1:888888888888:identity/example.com)"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Owner accounts, duplicates and policy counts.
    for (name, toml, want) in [
        (
            "bad-owner",
            "[[identity]]\nname = \"example.com\"\naccount = \"12345\"\n",
            "line 3, column 11: identity \"example.com\" account: \"12345\" is not a 12-digit AWS account id",
        ),
        (
            "twice",
            "[[identity]]\nname = \"example.com\"\n[[identity]]\nname = \"EXAMPLE.com\"\n",
            "identity \"example.com\" of account 888888888888 is defined twice",
        ),
        (
            "not-a-name",
            "[[identity]]\nname = \"not an identity\"\n",
            "is neither a domain nor an email address",
        ),
        (
            "bad-user-account",
            "[[user]]\nname = \"u\"\naccount = \"x\"\n",
            "user \"u\" account: \"x\" is not a 12-digit AWS account id",
        ),
        (
            "bad-policy-name",
            "[[identity]]\nname = \"example.com\"\npolicies = [\"a.b\"]\n",
            "\"a.b\" is not a policy name SES accepts",
        ),
    ] {
        let dir = check_dir(name, toml, &[]);
        let (code, _, out) = check(&dir);
        assert_eq!(code, 2, "{name}: {out}");
        assert!(out.contains(want), "{name}: {out}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn check_lints_identity_policies() {
    let open = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"ses:SendRawEmail","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com"}}"#;
    let dir = check_dir(
        "lints",
        "[[identity]]\nname = \"example.com\"\npolicies = [\"Open\", \"Wildcard\"]\n",
        &[
            ("Open.json", open),
            ("Wildcard.json", WILDCARD),
            ("Unused.json", EXAMPLE_COM),
        ],
    );
    let (code, out, errors) = check(&dir);
    assert_eq!(code, 0, "{out}{errors}");
    for want in [
        "identities/Open.json: Open Statement[0]: Principal \"*\" without a Condition lets every AWS account send as arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "identities/Wildcard.json: Wildcard Statement[0]: Resource \"arn:aws:ses:us-east-1:888888888888:identity/*\" also covers identities other than arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "identities/Unused.json: no [[identity]] attaches the sending authorization policy Unused",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
