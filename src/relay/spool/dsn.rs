//! Delivery status notifications (RFC 3464): a `multipart/report` with a human part, a
//! `message/delivery-status` part (Reporting-MTA, then per recipient Final-Recipient,
//! Action: failed, Status, Diagnostic-Code) and the original message's header section
//! (`text/rfc822-headers`: the body is not sent back). Sent with `MAIL FROM:<>` from the
//! configured `bounce_from`, to the failed message's MAIL FROM.

use std::fmt::Write as _;

use super::store::Envelope;

/// One recipient that will not get the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub recipient: String,
    /// RFC 3463 status, e.g. `5.1.1` or `4.4.7`.
    pub status: String,
    /// `smtp; 550 5.1.1 ...` for an upstream's reply, `X-Sesgate; ...` for sesgate's own.
    pub diagnostic: String,
}

/// The most of the original header section sent back; longer ones are cut at a line.
const MAX_HEADERS: usize = 64 * 1024;

/// The status an upstream reply text carries (`5.1.1 user unknown` -> `5.1.1`), when its class
/// is `class`; else `class.0.0`.
pub fn status_of(text: &str, class: char) -> String {
    let word = text.split_whitespace().next().unwrap_or_default();
    let mut parts = word.split('.');
    let well_formed = word.starts_with(class)
        && word.split('.').count() == 3
        && parts.all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if well_formed {
        word.to_owned()
    } else {
        format!("{class}.0.0")
    }
}

/// A value fit for one header line: printable ASCII, at most `max` bytes.
fn field(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    out.truncate(max);
    out
}

/// The header section of `message` (up to its empty line), at most `MAX_HEADERS` bytes cut
/// after a whole line.
pub fn header_section(message: &[u8]) -> &[u8] {
    let end = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |at| at + 2);
    let headers = &message[..end];
    if headers.len() <= MAX_HEADERS {
        return headers;
    }
    let cut = memchr::memrchr(b'\n', &headers[..MAX_HEADERS]).map_or(0, |at| at + 1);
    &headers[..cut]
}

/// A MIME boundary: random, and checked not to occur in the headers sent back (they are the
/// client's text, and the client could otherwise close a part and forge another).
fn boundary(headers: &[u8]) -> String {
    loop {
        let mut random = [0u8; 12];
        let _ = getrandom::fill(&mut random);
        let mut boundary = String::from("=_sesgate_");
        for byte in random {
            let _ = write!(boundary, "{byte:02x}");
        }
        if memchr::memmem::find(headers, boundary.as_bytes()).is_none() {
            return boundary;
        }
    }
}

/// What a DSN says and where it comes from.
pub struct Report<'a> {
    /// This host's name (Reporting-MTA, Message-ID).
    pub hostname: &'a str,
    pub bounce_from: &'a str,
    /// The DSN's own spool id.
    pub id: &'a str,
    pub now: jiff::Timestamp,
}

/// The DSN for `failed` recipients of the message `envelope`/`message`: CRLF lines, ASCII
/// except for the original headers when they are 8-bit.
pub fn build(
    report: &Report<'_>,
    envelope: &Envelope,
    message: &[u8],
    failed: &[Failed],
) -> Vec<u8> {
    let headers = header_section(message);
    let boundary = boundary(headers);
    let date = |t: jiff::Timestamp| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string();
    let hostname = field(report.hostname, 255);
    let arrival = jiff::Timestamp::from_second(envelope.received_at).unwrap_or(report.now);
    let mut text = String::new();
    let mut line = |s: &str| {
        text.push_str(s);
        text.push_str("\r\n");
    };
    line(&format!(
        "From: Mail Delivery System <{}>",
        field(report.bounce_from, 320)
    ));
    line(&format!("To: <{}>", field(&envelope.mail_from, 320)));
    line("Subject: Undelivered Mail Returned to Sender");
    line(&format!("Date: {}", date(report.now)));
    line(&format!("Message-ID: <{}@{hostname}>", report.id));
    line("Auto-Submitted: auto-replied");
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\""
    ));
    line("");
    line("This is a MIME-encapsulated message.");
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: text/plain; charset=us-ascii");
    line("");
    line(&format!("This is the mail system at host {hostname}."));
    line("");
    line("Your message could not be delivered to one or more recipients. It is");
    line("attached below (its headers only).");
    line("");
    for failure in failed {
        line(&format!(
            "<{}>: {}",
            field(&failure.recipient, 320),
            field(&failure.diagnostic, 900)
        ));
    }
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: message/delivery-status");
    line("");
    line(&format!("Reporting-MTA: dns; {hostname}"));
    line(&format!("X-Sesgate-Queue-ID: {}", field(&envelope.id, 80)));
    line(&format!("Arrival-Date: {}", date(arrival)));
    for failure in failed {
        line("");
        line(&format!(
            "Final-Recipient: rfc822; {}",
            field(&failure.recipient, 320)
        ));
        line("Action: failed");
        line(&format!("Status: {}", field(&failure.status, 16)));
        line(&format!(
            "Diagnostic-Code: {}",
            field(&failure.diagnostic, 900)
        ));
        line(&format!("Last-Attempt-Date: {}", date(report.now)));
    }
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: text/rfc822-headers");
    line("");
    let mut out = text.into_bytes();
    out.extend_from_slice(headers);
    if !headers.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            id: "1.2.3.4".into(),
            session: "s".into(),
            user: "u".into(),
            client: "127.0.0.1".into(),
            tls: true,
            mail_from: "sender@example.com".into(),
            recipients: vec!["gone@example.net".into()],
            received_at: 1_700_000_000,
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(status_of("5.1.1 user unknown", '5'), "5.1.1");
        assert_eq!(status_of("user unknown", '5'), "5.0.0");
        assert_eq!(status_of("4.2.2 full", '5'), "5.0.0");
        assert_eq!(status_of("5.1.1111 x", '5'), "5.0.0");
    }

    #[test]
    fn a_report_with_the_original_headers_and_no_body() {
        let message =
            b"Received: x\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n\r\nsecret body\r\n";
        let dsn = build(
            &Report {
                hostname: "gw.example.com",
                bounce_from: "MAILER-DAEMON@example.com",
                id: "1.2.3.4.1",
                now: jiff::Timestamp::from_second(1_700_000_100).unwrap(),
            },
            &envelope(),
            message,
            &[Failed {
                recipient: "gone@example.net".into(),
                status: "5.1.1".into(),
                diagnostic: "smtp; 550 5.1.1 no such user".into(),
            }],
        );
        let text = String::from_utf8(dsn).unwrap();
        for expected in [
            "From: Mail Delivery System <MAILER-DAEMON@example.com>\r\n",
            "To: <sender@example.com>\r\n",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"=_sesgate_",
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; gw.example.com\r\n",
            "Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nReceived: x\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n\r\n--=_sesgate_",
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        assert!(!text.contains("secret body"));
        assert!(text.ends_with("--\r\n"));
        assert!(text.lines().all(|l| !l.contains('\n') && l.len() <= 998));
    }

    #[test]
    fn client_text_cannot_add_lines_or_parts() {
        let mut envelope = envelope();
        envelope.mail_from = "a@example.com\r\nBcc: victim@example.org".into();
        let dsn = build(
            &Report {
                hostname: "gw",
                bounce_from: "MAILER-DAEMON@example.com",
                id: "1.1",
                now: jiff::Timestamp::now(),
            },
            &envelope,
            b"Subject: x\r\n--=_sesgate_00: forged\r\n\r\n",
            &[Failed {
                recipient: "r@x\r\nAction: delivered".into(),
                status: "5.0.0".into(),
                diagnostic: "smtp; 550 \r\nX: y".into(),
            }],
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(!text.contains("\r\nBcc:"));
        assert!(!text.contains("\r\nAction: delivered"));
        assert!(!text.contains("\r\nX: y"));
        let huge = format!("Subject: x\r\n{}\r\n\r\n", "X-Long: y\r\n".repeat(10_000));
        let report = Report {
            hostname: "gw",
            bounce_from: "b@example.com",
            id: "1.1",
            now: jiff::Timestamp::now(),
        };
        assert!(build(&report, &envelope, huge.as_bytes(), &[]).len() < MAX_HEADERS + 4096);
    }
}
