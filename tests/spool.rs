//! `[spool]` end to end (issue 13): a real sesgate on loopback relaying to a real SMTP sink
//! that a test stops, restarts and scripts. A message is answered `250 2.0.0 Ok <id>` once it
//! is on disk, `452 4.3.1` when the spool or the disk is full, delivered with retries,
//! bounced (RFC 3464) when refused or expired, never for `MAIL FROM:<>`; and `sesgate queue`
//! works on the running gateway's spool.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sesgate::config;
use support::sink::{DataReply, Sink};
use support::*;

/// A server relaying to `sink` through a spool in `spool/` of its directory.
async fn start(sink: &Sink, adjust: impl FnOnce(&mut config::Spool)) -> TestServer {
    let mut setup = Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    let mut spool = config::Spool {
        dir: "spool".into(),
        retry_schedule_secs: vec![1],
        ..config::Spool::default()
    };
    adjust(&mut spool);
    setup.config.spool = Some(spool);
    TestServer::start_setup(setup).await
}

async fn client(server: &TestServer) -> Client {
    let mut client = server.connect(PLAINTEXT_AUTH).await;
    client.hello(false).await;
    client.login().await;
    client
}

/// One message with `subject` and a body naming it.
async fn send(client: &mut Client, mail_from: &str, recipients: &[&str], subject: &str) -> String {
    client
        .transaction(
            mail_from,
            recipients,
            &format!("From: a@example.com\r\nSubject: {subject}\r\n\r\nBODY-{subject}\r\n"),
        )
        .await
}

/// The id in `250 2.0.0 Ok <id>`.
fn acked_id(reply: &str) -> String {
    let id = reply
        .strip_prefix("250 2.0.0 Ok ")
        .unwrap_or_else(|| panic!("not acknowledged: {reply}"));
    assert!(sesgate::relay::spool::valid_id(id), "{id}");
    id.to_owned()
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Half-written messages in `tmp/`. A worker's retry state passes through `tmp/ID.state`
/// (written, then renamed) while the test looks: that is no message.
fn messages_in_tmp(spool: &Path) -> Vec<String> {
    let mut names = files(&spool.join("tmp"));
    names.retain(|name| !name.ends_with(".state"));
    names
}

fn subject_of(data: &[u8]) -> Option<String> {
    String::from_utf8_lossy(data)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
}

fn subjects(sink: &Sink) -> Vec<String> {
    let mut subjects: Vec<String> = sink
        .accepted()
        .iter()
        .filter_map(|a| subject_of(&a.data))
        .collect();
    subjects.sort();
    subjects
}

#[tokio::test]
async fn acknowledged_once_stored_and_delivered_when_the_upstream_comes_back() {
    let sink = Sink::start().await;
    // The upstream is down before sesgate starts: it starts and accepts anyway.
    sink.stop();
    let server = start(&sink, |_| {}).await;
    let spool = server.dir.join("spool");
    let mut client = client(&server).await;
    let id = acked_id(&send(&mut client, "a@example.com", &["b@example.com"], "hello").await);
    assert_eq!(files(&spool.join("active")), std::slice::from_ref(&id));
    assert!(messages_in_tmp(&spool).is_empty());
    // The first attempt fails (connection refused) and is rescheduled.
    let state = spool.join(format!("state/{id}.json"));
    wait_until("a failed attempt", Duration::from_secs(10), || {
        state.exists()
    })
    .await;
    let sink = sink.restart().await;
    wait_until("delivery", Duration::from_secs(10), || {
        sink.accepted().len() == 1 && files(&spool.join("active")).is_empty()
    })
    .await;
    let accepted = &sink.accepted()[0];
    assert_eq!(accepted.mail_from, "a@example.com");
    assert_eq!(accepted.recipients, ["b@example.com"]);
    assert!(String::from_utf8_lossy(&accepted.data).contains("BODY-hello"));
    assert!(!state.exists(), "the state goes with the message");
    let metrics = server.running.as_ref().unwrap().metrics().render();
    assert!(
        metrics.contains("sesgate_spool_delivered_total 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("sesgate_spool_retries_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sesgate_upstream_total{result=\"spooled\"} 1"),
        "{metrics}"
    );
    let running = server.running.as_ref().unwrap();
    wait_until("an empty schedule", Duration::from_secs(5), || {
        running.spool_stats().unwrap().messages == 0
    })
    .await;
    assert_eq!(running.spool_stats().unwrap().held, 0);
    server.stop().await;
}

#[tokio::test]
async fn over_max_bytes_is_452_and_nothing_is_accepted() {
    let sink = Sink::start().await;
    sink.stop();
    let server = start(&sink, |spool| spool.max_bytes = 4000).await;
    let spool = server.dir.join("spool");
    let mut client = client(&server).await;
    let small = acked_id(&send(&mut client, "a@example.com", &["b@example.com"], "small-1").await);
    let big = format!(
        "From: a@example.com\r\nSubject: big\r\n\r\n{}\r\n",
        format!("{}\r\n", "x".repeat(98)).repeat(34)
    );
    assert_eq!(
        client
            .transaction("a@example.com", &["b@example.com"], &big)
            .await,
        "452 4.3.1 Insufficient system storage"
    );
    // The session goes on; a message that fits is still taken.
    let second = acked_id(&send(&mut client, "a@example.com", &["b@example.com"], "small-2").await);
    let mut expected = vec![small, second];
    expected.sort();
    assert_eq!(files(&spool.join("active")), expected);
    assert!(messages_in_tmp(&spool).is_empty());
    let sink = sink.restart().await;
    wait_until("delivery", Duration::from_secs(10), || {
        files(&spool.join("active")).is_empty()
    })
    .await;
    assert_eq!(subjects(&sink), ["small-1", "small-2"]);
    // Delivered messages give their space back: the big one fits now.
    let running = server.running.as_ref().unwrap();
    wait_until("an empty schedule", Duration::from_secs(5), || {
        running.spool_stats().unwrap().messages == 0
    })
    .await;
    assert_eq!(running.spool_stats().unwrap().bytes, 0);
    acked_id(
        &client
            .transaction("a@example.com", &["b@example.com"], &big)
            .await,
    );
    server.stop().await;
}

/// A real full disk: a 160 KiB tmpfs (root only; skipped elsewhere unless CI requires it).
#[tokio::test]
async fn a_full_disk_is_452_and_nothing_half_written_stays() {
    let mount = std::env::temp_dir().join(format!("sesgate-tmpfs-{}", std::process::id()));
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160k", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var_os("SESGATE_REQUIRE_INTEROP").is_none(),
            "mounting a tmpfs is required (SESGATE_REQUIRE_INTEROP is set) but failed"
        );
        eprintln!("notice: cannot mount a tmpfs (not root?); skipping the full-disk test");
        return;
    }
    let _unmount = Unmount(mount.clone());
    let sink = Sink::start().await;
    sink.stop();
    let dir = mount.join("spool");
    let server = start(&sink, |spool| spool.dir = dir.clone()).await;
    let mut client = client(&server).await;
    let body = format!(
        "From: a@example.com\r\nSubject: fill\r\n\r\n{}\r\n",
        format!("{}\r\n", "y".repeat(98)).repeat(300)
    );
    let mut acked = Vec::new();
    let mut full = None;
    for _ in 0..20 {
        let reply = client
            .transaction("a@example.com", &["b@example.com"], &body)
            .await;
        if reply.starts_with("250") {
            acked.push(acked_id(&reply));
        } else {
            full = Some(reply);
            break;
        }
    }
    server.stop().await;
    assert_eq!(
        full.as_deref(),
        Some("452 4.3.1 Insufficient system storage")
    );
    assert!(!acked.is_empty());
    acked.sort();
    assert_eq!(
        files(&dir.join("active")),
        acked,
        "exactly the acknowledged"
    );
    assert!(files(&dir.join("tmp")).is_empty(), "nothing half-written");
}

/// Unmounts the test's tmpfs however the test ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_refused_recipient_gets_a_dsn_and_the_others_the_message() {
    let sink = Sink::start().await;
    sink.refuse_recipient(
        "nobody@example.net",
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown",
    );
    let server = start(&sink, |_| {}).await;
    let mut client = client(&server).await;
    let id = acked_id(
        &send(
            &mut client,
            "sender@example.com",
            &["ok@example.net", "nobody@example.net"],
            "report-me",
        )
        .await,
    );
    wait_until("the message and its DSN", Duration::from_secs(10), || {
        sink.accepted().len() == 2
    })
    .await;
    let accepted = sink.accepted();
    let message = accepted.iter().find(|a| !a.mail_from.is_empty()).unwrap();
    assert_eq!(message.recipients, ["ok@example.net"]);
    let dsn = accepted
        .iter()
        .find(|a| a.mail_from.is_empty())
        .expect("a DSN from <>");
    assert_eq!(dsn.recipients, ["sender@example.com"]);
    let text = String::from_utf8_lossy(&dsn.data);
    for expected in [
        "From: Mail Delivery System <MAILER-DAEMON@gw.test>\r\n",
        "To: <sender@example.com>\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; gw.test\r\n",
        &format!("X-Sesgate-Queue-ID: {id}\r\n"),
        "Final-Recipient: rfc822; nobody@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown\r\n",
        // The original headers as relayed: this hop's trace header first.
        "Content-Type: text/rfc822-headers\r\n\r\nReceived: from client.test ([127.0.0.1])\r\n\tby gw.test (sesgate) with ESMTPA id ",
        "Subject: report-me\r\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    assert!(
        !text.contains("ok@example.net"),
        "only the refused recipient"
    );
    assert!(
        !text.contains("BODY-report-me"),
        "headers only, never the body"
    );
    wait_until("an empty spool", Duration::from_secs(10), || {
        files(&server.dir.join("spool/active")).is_empty()
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_message_refused_at_data_bounces_but_never_to_the_null_sender() {
    let sink = Sink::start().await;
    sink.set_reply(DataReply::Reply(
        "554 5.6.1 Message content rejected".into(),
    ));
    let server = start(&sink, |_| {}).await;
    let mut client = client(&server).await;
    acked_id(&send(&mut client, "sender@example.com", &["b@example.com"], "one").await);
    acked_id(&send(&mut client, "", &["b@example.com"], "null-sender").await);
    let running = server.running.as_ref().unwrap();
    // Both messages are refused; one DSN is made (to sender@), none for <>; the DSN is refused
    // too (the sink refuses everything) and, sent from <>, gets no DSN itself: no loop.
    wait_until(
        "both refusals and the DSN's",
        Duration::from_secs(10),
        || {
            files(&server.dir.join("spool/active")).is_empty()
                && running
                    .metrics()
                    .render()
                    .contains("sesgate_spool_bounces_total 1")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = running.metrics().render();
    assert!(
        metrics.contains("sesgate_spool_bounces_total 1\n"),
        "{metrics}"
    );
    assert!(sink.accepted().is_empty());
    assert!(files(&server.dir.join("spool/active")).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_expired_message_bounces_with_4_4_7() {
    let sink = Sink::start().await;
    sink.set_reply(DataReply::Reply("451 4.3.0 Try again later".into()));
    let server = start(&sink, |spool| spool.max_age_secs = 2).await;
    let mut client = client(&server).await;
    let id = acked_id(
        &send(
            &mut client,
            "sender@example.com",
            &["b@example.com"],
            "late",
        )
        .await,
    );
    let running = server.running.as_ref().unwrap();
    wait_until("expiry", Duration::from_secs(10), || {
        running
            .metrics()
            .render()
            .contains("sesgate_spool_expired_total 1")
    })
    .await;
    // The upstream recovers: the DSN (sent from <>) goes out.
    sink.set_reply(DataReply::Accept);
    wait_until("the DSN", Duration::from_secs(10), || {
        !sink.accepted().is_empty()
    })
    .await;
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1, "the expired message itself is not sent");
    let dsn = &accepted[0];
    assert_eq!(
        (dsn.mail_from.as_str(), dsn.recipients.as_slice()),
        ("", &["sender@example.com".to_owned()][..])
    );
    let text = String::from_utf8_lossy(&dsn.data);
    for expected in [
        "Final-Recipient: rfc822; b@example.com\r\nAction: failed\r\nStatus: 4.4.7\r\n",
        "Diagnostic-Code: X-Sesgate; delivery time expired after",
        "451",
        &format!("X-Sesgate-Queue-ID: {id}"),
        "Subject: late\r\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn recovery_delivers_what_was_spooled_and_discards_what_was_half_written() {
    let sink = Sink::start().await;
    let envelope = serde_json::json!({
        "id": "1700000000.000001.1.0", "session": "s0", "user": "test-app",
        "client": "127.0.0.1", "tls": false, "mail_from": "a@example.com",
        "recipients": ["b@example.com"], "received_at": jiff::Timestamp::now().as_second(),
    });
    let committed = format!("{envelope}\nFrom: a@example.com\r\nSubject: survived\r\n\r\nx\r\n");
    let setup = Setup {
        upstream: Some(sink.clone()),
        config: sesgate::config::Config {
            spool: Some(config::Spool {
                dir: "spool".into(),
                ..config::Spool::default()
            }),
            ..sesgate::config::Config::default()
        },
        files: vec![
            (
                "spool/active/1700000000.000001.1.0".into(),
                committed.into_bytes(),
            ),
            // Half-written at the crash: never acknowledged, so never delivered.
            (
                "spool/tmp/1700000000.000002.1.0".into(),
                b"{\"id\":\"17000".to_vec(),
            ),
            // Committed but unreadable (edited by hand): kept aside, not guessed at.
            (
                "spool/active/1700000000.000003.1.0".into(),
                b"not an envelope".to_vec(),
            ),
        ],
        ..Setup::default()
    };
    let server = TestServer::start_setup(setup).await;
    let spool = server.dir.join("spool");
    assert!(files(&spool.join("tmp")).is_empty());
    wait_until("recovered delivery", Duration::from_secs(10), || {
        sink.accepted().len() == 1 && files(&spool.join("active")).is_empty()
    })
    .await;
    assert_eq!(subjects(&sink), ["survived"]);
    assert_eq!(files(&spool.join("corrupt")), ["1700000000.000003.1.0"]);
    server.stop().await;
}

#[test]
fn a_second_gateway_cannot_open_the_same_spool() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sink = Sink::start().await;
        let server = start(&sink, |_| {}).await;
        let mut config = sesgate::config::Config {
            spool: Some(config::Spool {
                dir: server.dir.join("spool"),
                ..config::Spool::default()
            }),
            base_dir: server.dir.clone(),
            ..sesgate::config::Config::default()
        };
        config.iam.dir = server.dir.join("policies");
        config.listeners.truncate(0);
        config.listeners.push(sesgate::config::Listener {
            address: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
        let error = sesgate::gateway::start(&config)
            .await
            .err()
            .expect("refused");
        assert!(
            error
                .to_string()
                .contains("another sesgate process is using this spool"),
            "{error}"
        );
        server.stop().await;
    });
}

#[tokio::test]
async fn bounce_from_must_be_a_verified_identity() {
    let mut config = sesgate::config::Config::default();
    config.account.identities = vec!["example.com".into()];
    config.hostname = "gw.test".into();
    config.spool = Some(config::Spool {
        dir: std::env::temp_dir().join("sesgate-never-created"),
        ..config::Spool::default()
    });
    config.iam.dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = std::env::temp_dir().join(format!("sesgate-bounce-from-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("iam.toml"), "").unwrap();
    copy_guide_policies(&dir);
    config.iam.dir = dir.clone();
    config.base_dir = dir.clone();
    let error = sesgate::gateway::load(&config, sesgate::gateway::Effects::ReadOnly)
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains(
            "bounce_from \"MAILER-DAEMON@gw.test\" is not covered by [account] identities"
        ),
        "{error}"
    );
    config.spool.as_mut().unwrap().bounce_from = "MAILER-DAEMON@mail.example.com".into();
    assert!(sesgate::gateway::load(&config, sesgate::gateway::Effects::ReadOnly).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

fn queue(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .arg("queue")
        .args(args)
        .arg("--config")
        .arg(dir.join("sesgate.toml"))
        .output()
        .expect("sesgate runs")
}

fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn every_queue_verb_on_a_running_gateway() {
    let sink = Sink::start().await;
    sink.stop();
    // Retries far apart: only the operator's flush and release make the next attempt.
    let server = start(&sink, |spool| spool.retry_schedule_secs = vec![600]).await;
    let dir: PathBuf = server.dir.clone();
    std::fs::write(dir.join("sesgate.toml"), "[spool]\ndir = \"spool\"\n").unwrap();
    let spool = dir.join("spool");
    let mut client = client(&server).await;
    let mut ids = Vec::new();
    for subject in ["q1", "q2", "q3"] {
        ids.push(acked_id(
            &send(&mut client, "a@example.com", &["b@example.com"], subject).await,
        ));
    }
    wait_until("the first attempts", Duration::from_secs(10), || {
        ids.iter()
            .all(|id| spool.join(format!("state/{id}.json")).exists())
    })
    .await;

    let list = queue(&dir, &["list"]);
    assert!(list.status.success(), "{}", out(&list));
    let text = out(&list);
    for id in &ids {
        assert!(text.contains(id.as_str()), "{text}");
    }
    assert!(
        text.contains("deferred") && text.contains("from: <a@example.com>"),
        "{text}"
    );
    assert!(
        text.contains("to: <b@example.com>") && text.contains("last error: "),
        "{text}"
    );
    assert!(text.contains("3 message(s)"), "{text}");

    let show = queue(&dir, &["show", &ids[0]]);
    assert!(show.status.success(), "{}", out(&show));
    let text = out(&show);
    assert!(
        text.contains("mail from: <a@example.com>") && text.contains("Subject: q1"),
        "{text}"
    );
    assert!(
        !text.contains("BODY-q1"),
        "show prints no body by default: {text}"
    );
    let body = queue(&dir, &["show", "--body", &ids[0]]);
    assert!(out(&body).contains("BODY-q1"), "{}", out(&body));

    let hold = queue(&dir, &["hold", &ids[0]]);
    assert!(hold.status.success(), "{}", out(&hold));
    assert!(out(&queue(&dir, &["list"])).contains("held"));
    assert_eq!(files(&spool.join("hold")), [ids[0].clone()]);

    let delete = queue(&dir, &["delete", &ids[2]]);
    assert!(delete.status.success(), "{}", out(&delete));
    assert_eq!(files(&spool.join("active")), [ids[1].clone()]);

    let sink = sink.restart().await;
    let flush = queue(&dir, &["flush"]);
    assert!(flush.status.success(), "{}", out(&flush));
    wait_until("the flushed message", Duration::from_secs(10), || {
        subjects(&sink) == ["q2"]
    })
    .await;
    let release = queue(&dir, &["release", &ids[0]]);
    assert!(release.status.success(), "{}", out(&release));
    wait_until("the released message", Duration::from_secs(10), || {
        subjects(&sink) == ["q1", "q2"]
    })
    .await;
    wait_until("an empty spool", Duration::from_secs(10), || {
        files(&spool.join("active")).is_empty()
    })
    .await;
    assert!(out(&queue(&dir, &["list"])).contains("0 message(s)"));

    // Hostile or mistaken ids: never a path outside the spool.
    for bad in ["../../etc/passwd", "/etc/passwd", "..", "1.2/../../x", ""] {
        let output = queue(&dir, &["show", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}: {}", out(&output));
        assert!(
            out(&output).contains("is not a queue id"),
            "{}",
            out(&output)
        );
        let output = queue(&dir, &["delete", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}: {}", out(&output));
    }
    let missing = queue(&dir, &["hold", "1.2.3.4"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        out(&missing).contains("no message 1.2.3.4"),
        "{}",
        out(&missing)
    );
    std::fs::write(dir.join("sesgate.toml"), "").unwrap();
    let none = queue(&dir, &["list"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(out(&none).contains("no [spool]"), "{}", out(&none));
    assert_eq!(
        subjects(&sink),
        ["q1", "q2"],
        "the deleted message never went out"
    );
    server.stop().await;
}

/// Attack: many clients at once cannot pass `max_bytes` together (the space is reserved before
/// the write), and every one of them hears 250 or 452, nothing else.
#[tokio::test]
async fn concurrent_clients_cannot_overrun_max_bytes() {
    let sink = Sink::start().await;
    sink.stop();
    let server = start(&sink, |spool| spool.max_bytes = 12_000).await;
    let body = format!(
        "From: a@example.com\r\nSubject: race\r\n\r\n{}",
        format!("{}\r\n", "z".repeat(98)).repeat(30)
    );
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let mut client = client(&server).await;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            client
                .transaction("a@example.com", &["b@example.com"], &body)
                .await
        }));
    }
    let mut acked = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.starts_with("250 2.0.0 Ok ") {
            acked += 1;
        } else {
            assert_eq!(reply, "452 4.3.1 Insufficient system storage");
        }
    }
    let spool = server.dir.join("spool/active");
    let on_disk: u64 = files(&spool)
        .iter()
        .map(|f| std::fs::metadata(spool.join(f)).unwrap().len())
        .sum();
    assert!(on_disk <= 12_000, "{on_disk} bytes spooled past the cap");
    assert_eq!(files(&spool).len(), acked);
    assert!((1..12).contains(&acked), "{acked}");
    server.stop().await;
}

/// Attack: an address with control characters (a terminal escape) is either refused at RCPT or
/// shown escaped by `sesgate queue list`; it never reaches the operator's terminal raw.
#[tokio::test]
async fn queue_output_escapes_what_clients_wrote() {
    let sink = Sink::start().await;
    sink.stop();
    let server = start(&sink, |spool| spool.retry_schedule_secs = vec![600]).await;
    let dir = server.dir.clone();
    std::fs::write(dir.join("sesgate.toml"), "[spool]\ndir = \"spool\"\n").unwrap();
    let mut client = client(&server).await;
    // The SMTP front end refuses control characters in an address outright.
    let reply = client
        .command("RCPT TO:<\"x\u{1b}[2Jy\"@example.com>")
        .await;
    assert!(reply.starts_with("50"), "{reply}");
    client.command("RSET").await;
    // A header is the client's text too: `show` prints it escaped.
    let reply = client
        .transaction(
            "a@example.com",
            &["b@example.com"],
            "From: a@example.com\r\nSubject: \u{1b}]0;owned\u{7}\r\n\r\nx\r\n",
        )
        .await;
    eprintln!("a Subject with escape characters: {reply}");
    if reply.starts_with("250") {
        let id = acked_id(&reply);
        for args in [vec!["list"], vec!["show", id.as_str()]] {
            let output = queue(&dir, &args);
            assert!(output.status.success(), "{}", out(&output));
            assert!(
                !output.stdout.contains(&0x1b) && !output.stdout.contains(&0x07),
                "raw control characters in {args:?}: {}",
                out(&output)
            );
        }
        assert!(out(&queue(&dir, &["show", &id])).contains("Subject: \\u{1b}]0;owned\\u{7}"));
    } else {
        assert!(!reply.starts_with('2'), "{reply}");
        assert!(files(&dir.join("spool/active")).is_empty());
    }
    server.stop().await;
}
