//! Sending authorization over SMTP (issue 11): a gateway of the identity owner's account
//! relaying to the in-repo sink, users logged in as `AKIA<name>`, and the reply SES gives a
//! refused principal.

use super::sink::Sink;
use super::{IMPLICIT, PASSWORD, Setup, TestServer, user_toml};

/// The gateway's account: the identity owner of the SES guide's examples.
pub const OWNER: &str = "888888888888";
/// The delegate sender's account.
pub const DELEGATE: &str = "123456789012";
/// The owner's identities in the default region, without the identity's name.
pub const ARN: &str = "arn:aws:ses:us-east-1:888888888888:identity";

/// A `[[user]]` table whose SMTP user name is `AKIA<name>` and whose password is `PASSWORD`.
pub fn user(name: &str, path: &str, extra: &str) -> String {
    user_toml(name, path, &format!("AKIA{name}"), PASSWORD, extra)
}

/// A gateway of account `OWNER` relaying to `sink`, with `iam_toml` as its users and
/// identities; `adjust` sets the rest.
pub async fn start(sink: &Sink, iam_toml: String, adjust: impl FnOnce(&mut Setup)) -> TestServer {
    let mut setup = Setup {
        users: Some(iam_toml),
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    setup.config.account.id = OWNER.into();
    adjust(&mut setup);
    TestServer::start_setup(setup).await
}

/// One message as `user`: the reply to its end of data.
pub async fn send(
    server: &TestServer,
    user: &str,
    mail_from: &str,
    from: &str,
    headers: &str,
) -> String {
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    client.login_as(&format!("AKIA{user}"), PASSWORD).await;
    client
        .transaction(
            mail_from,
            &["rcpt@example.org"],
            &format!("From: {from}\r\n{headers}Subject: test\r\n\r\nbody\r\n"),
        )
        .await
}

/// SES's reply when `user_arn` may not send as `resource`.
pub fn denied(user_arn: &str, resource: &str) -> String {
    format!(
        "554 5.7.1 Access denied: User `{user_arn}' is not authorized to perform `ses:SendRawEmail' on resource `{resource}'"
    )
}

/// An `X-SES-SOURCE-ARN` header naming the owner's `identity`.
pub fn source_arn(identity: &str) -> String {
    format!("X-SES-SOURCE-ARN: {ARN}/{identity}\r\n")
}
