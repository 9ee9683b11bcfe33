//! The SMTP side of the gateway: checks AUTH against the snapshot's credentials, decides each
//! transaction on the snapshot's authorizer and relays what is allowed. The client hears 250
//! only after the relay accepted the message (SPEC §7).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tracing::info;

use super::Clock;
use super::decide::{Input, Ruling};
use super::decision_log::{DecisionLog, Record, record_context};
use super::load::Snapshot;
use super::replies;
use super::request::TransactionFacts;
use super::shadow;
use crate::credentials::{Verification, VerificationGate};
use crate::metrics::Metrics;
use crate::relay::{Delivery, MessageIds, Relay, RelayError};
use crate::smtp::{
    AuthOutcome, Authenticator, Credentials, Handler, IdentifiedBy, Peer, RecipientCheck, Reply,
    Transaction,
};

/// Checks SMTP credentials against the current snapshot.
#[derive(Clone)]
pub(super) struct SnapshotCredentials {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Outlives reloads: the bound on argon2 work is the process's, not the snapshot's.
    pub gate: VerificationGate,
    pub metrics: Arc<Metrics>,
}

impl Authenticator for SnapshotCredentials {
    async fn authenticate(&self, credentials: Credentials) -> AuthOutcome {
        let snapshot = self.snapshot.load_full();
        let verification = snapshot
            .credentials
            .check(&credentials.username, &credentials.password, &self.gate)
            .await;
        self.metrics.count_verification(&verification);
        match verification {
            Verification::Valid { iam_user, .. } => AuthOutcome::Authenticated(iam_user),
            Verification::Invalid => AuthOutcome::Invalid,
            Verification::Busy => AuthOutcome::Unavailable,
        }
    }

    fn identify(&self, peer: &Peer<'_>) -> Option<(String, IdentifiedBy)> {
        self.snapshot
            .load()
            .authorizer
            .directory
            .identify(peer.client, peer.certificate)
    }
}

/// Decides and relays each transaction.
pub(super) struct Gateway {
    pub clock: Clock,
    pub hostname: String,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub relay: Relay,
    pub ids: MessageIds,
    pub metrics: Arc<Metrics>,
    /// `[log] decisions`, when set.
    pub decisions: Option<DecisionLog>,
    /// `[log] recipients`: the transaction line lists the recipients.
    pub log_recipients: bool,
    /// `[metrics] per_user`: transactions are counted per IAM user too.
    pub per_user_metrics: bool,
    /// Sending quotas and the pace after upstream throttling (`quota.rs`).
    pub quotas: Arc<super::quota::QuotaGate>,
    /// `[spool]`: allowed messages are stored and acknowledged, then delivered by workers.
    pub spool: Option<crate::relay::spool::Spool>,
}

/// How one transaction ended: its reply and what its log line and metrics say.
struct Settled {
    reply: Reply,
    /// `allowed`, `explicit-deny`, `implicit-deny` or the refusal's kind.
    decision: &'static str,
    reason: String,
    /// The From address the request was built from (empty when refused before).
    from: String,
    /// What the relay said (empty when not relayed).
    upstream: String,
    /// The upstream's own queue or message id (empty when it gave none).
    upstream_id: String,
}

/// Appends `now` as the `Received:` header's date (`Sat, 28 Nov 2026 10:54:31 +0000`). The
/// text changes once a second: each worker thread formats it once per second, not once per
/// message.
fn write_received_date(out: &mut String, now: jiff::Timestamp) {
    thread_local! {
        static DATE: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    DATE.with_borrow_mut(|(second, text)| {
        if *second != now.as_second() {
            text.clear();
            let _ = write!(text, "{}", now.strftime("%a, %d %b %Y %H:%M:%S +0000"));
            *second = now.as_second();
        }
        out.push_str(text);
    });
}

impl Gateway {
    /// The `Received:` trace header this hop adds (RFC 5321 §4.4).
    fn received_header(&self, transaction: &Transaction) -> String {
        // RFC 3848: the A is for an authenticated (AUTH) client only.
        let protocol = match (transaction.tls, transaction.identified_by) {
            (true, IdentifiedBy::Auth) => "ESMTPSA",
            (false, IdentifiedBy::Auth) => "ESMTPA",
            (true, _) => "ESMTPS",
            (false, _) => "ESMTP",
        };
        let mut header = format!(
            "Received: from {} ([{}])\r\n\tby {} (sesgate) with {protocol} id {}",
            transaction.ehlo, transaction.client, self.hostname, transaction.session_id
        );
        if let [only] = transaction.envelope.recipients.as_slice() {
            let _ = write!(header, "\r\n\tfor <{only}>");
        }
        header.push_str(";\r\n\t");
        write_received_date(&mut header, jiff::Timestamp::now());
        header.push_str("\r\n");
        header
    }

    /// Relays an allowed transaction's `message` (taken out of it, not copied): the client's
    /// reply and what the log says of it.
    async fn relay(&self, transaction: &Transaction, message: Vec<u8>) -> (Reply, String, String) {
        let id = self.ids.next_id();
        // The trace header travels apart and is written in front of the message (vectored
        // writes upstream and to disk): the body is never copied behind it.
        let header = self.received_header(transaction).into_bytes();
        let delivery = Delivery {
            id,
            session: transaction.session_id.clone(),
            user: transaction.user.clone(),
            client: transaction.client.to_string(),
            tls: transaction.tls,
            mail_from: transaction.envelope.mail_from.clone(),
            recipients: transaction.envelope.recipients.clone(),
            header,
            message: bytes::Bytes::from(message),
        };
        if let Some(spool) = &self.spool {
            return self.spool_message(spool, delivery).await;
        }
        let started = Instant::now();
        let sent = self.relay.send(delivery).await;
        let result = match &sent {
            Ok(_) => "ok",
            Err(RelayError::Deferred(_)) => "deferred",
            Err(RelayError::Throttled(_)) => "throttled",
            Err(RelayError::Rejected { .. } | RelayError::Refused(_)) => "rejected",
        };
        self.metrics
            .count_upstream(result, started.elapsed().as_secs_f64());
        match sent {
            Ok(relayed) => (
                replies::relayed(&relayed.id),
                format!("250 {}", relayed.id),
                relayed.upstream_id.unwrap_or_default(),
            ),
            // The cause (e.g. `Connection refused (os error 111)`) is for the log only.
            Err(RelayError::Deferred(why)) => (
                replies::relay_deferred(),
                format!("451 {why}"),
                String::new(),
            ),
            // SES's own throttling text, whichever side throttled (SPEC §7: never a 5xx).
            Err(RelayError::Throttled(text)) => (
                replies::upstream_throttled(&text),
                format!("454 {text}"),
                String::new(),
            ),
            // The upstream's own refusal passes on, as one bounded printable line.
            Err(RelayError::Rejected { code, text }) => {
                let text = crate::relay::reply_text(&text);
                (
                    replies::relay_refused(code, text.clone()),
                    format!("{code} {text}"),
                    String::new(),
                )
            }
            Err(RelayError::Refused(text)) => {
                let text = crate::relay::reply_text(&text);
                (
                    replies::relay_refused(554, text.clone()),
                    format!("554 {text}"),
                    String::new(),
                )
            }
        }
    }
}

impl Gateway {
    /// Logs and counts where the shadow set decides otherwise than the live one.
    fn compare_shadow(&self, transaction: &Transaction, live: &Ruling, shadow_ruling: &Ruling) {
        let Some(direction) = shadow::disagreement(live, shadow_ruling) else {
            return;
        };
        let (live_decision, live_reason) = shadow::verdict(live);
        let (shadow_decision, shadow_reason) = shadow::verdict(shadow_ruling);
        self.metrics
            .count_shadow_disagreement(&transaction.user, direction.as_str());
        info!(
            session = %transaction.session_id,
            user = %transaction.user,
            direction = direction.as_str(),
            live_decision,
            live_reason = %live_reason,
            shadow_decision,
            shadow_reason = %shadow_reason,
            "shadow disagreement"
        );
    }

    /// The decision log's line for one transaction (never the body).
    fn record(
        &self,
        transaction: &Transaction,
        snapshot: &Snapshot,
        ruling: &Ruling,
        now: jiff::Timestamp,
        enforced: bool,
    ) -> Record {
        let (decision, statements) = shadow::verdict(ruling);
        let request = match ruling {
            Ruling::Denied { request, .. } | Ruling::Allowed { request, .. } => Some(request),
            Ruling::Refused { .. } => None,
        };
        let principal = snapshot
            .authorizer
            .directory
            .user(&transaction.user)
            .map(|u| u.principal.arn.clone())
            .unwrap_or_default();
        Record {
            time: now.to_string(),
            session: transaction.session_id.clone(),
            user: transaction.user.clone(),
            identified_by: transaction.identified_by.as_str().to_owned(),
            account: snapshot.authorizer.account.id.clone(),
            principal,
            action: crate::iam::SEND_RAW_EMAIL.to_owned(),
            resources: request.map(|r| r.resources.clone()).unwrap_or_default(),
            context: request.map(|r| record_context(&r.context)),
            decision: decision.to_owned(),
            statements,
            policy_types: ruling
                .policy_types()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            enforced,
        }
    }
}

impl Handler for Gateway {
    /// A recipient past a 24-hour quota is refused at RCPT, where that is already certain.
    async fn check_recipient(&self, check: &RecipientCheck<'_>) -> Option<Reply> {
        let snapshot = self.snapshot.load_full();
        self.quotas
            .on_recipient(&snapshot.quotas, check.user, check.recipients.len())
            .await
    }

    async fn deliver(&self, mut transaction: Transaction) -> Reply {
        let started = Instant::now();
        let size = transaction.message.len();
        // This transaction is decided on the snapshot current at its end of DATA, even if a
        // reload swaps it meanwhile.
        let snapshot = self.snapshot.load_full();
        let input = Input {
            user: &transaction.user,
            facts: TransactionFacts {
                tls: transaction.tls,
                client: transaction.client,
                mail_from: &transaction.envelope.mail_from,
                recipients: &transaction.envelope.recipients,
            },
            message: &transaction.message,
        };
        let deciding = Instant::now();
        let now = (self.clock)();
        let ruling = snapshot.authorizer.decide(input, now);
        self.metrics
            .decision_latency
            .observe(deciding.elapsed().as_secs_f64());
        let enforced = snapshot.authorizer.enforced(&transaction.user);
        let (verdict, reason) = shadow::verdict(&ruling);
        let policy_types = ruling.policy_types().join(", ");
        if let Some(shadow_set) = &snapshot.shadow {
            self.compare_shadow(&transaction, &ruling, &shadow_set.decide(input, now));
        }
        if let Some(log) = &self.decisions {
            log.record(&self.record(&transaction, &snapshot, &ruling, now, enforced));
        }
        let policy_refused = matches!(ruling, Ruling::Denied { .. });
        let outcome = match ruling {
            Ruling::Refused { reply, .. } => Settled {
                reply,
                decision: verdict,
                reason,
                from: String::new(),
                upstream: String::new(),
                upstream_id: String::new(),
            },
            Ruling::Denied { request, reply, .. } if enforced => Settled {
                reply,
                decision: verdict,
                reason,
                from: request.from,
                upstream: String::new(),
                upstream_id: String::new(),
            },
            // Allowed, or report-only: a policy refusal is decided, logged and counted, and
            // relayed anyway. Refusals before policy (above) are safety, not policy: always
            // enforced.
            Ruling::Denied { request, .. } | Ruling::Allowed { request, .. } => {
                if policy_refused {
                    self.metrics.count_would_refuse(&transaction.user, verdict);
                }
                let recipients = transaction.envelope.recipients.len();
                match self
                    .admit_quotas(&snapshot.quotas, &transaction.user, recipients)
                    .await
                {
                    Err(throttled) => Settled {
                        reply: throttled.reply,
                        decision: throttled.decision,
                        reason: throttled.reason,
                        from: request.from,
                        upstream: String::new(),
                        upstream_id: String::new(),
                    },
                    Ok(admitted) => {
                        let message = std::mem::take(&mut transaction.message);
                        let (reply, upstream, upstream_id) =
                            self.relay(&transaction, message).await;
                        self.settle_quotas(admitted, &reply, &transaction.user)
                            .await;
                        Settled {
                            reply,
                            decision: verdict,
                            reason,
                            from: request.from,
                            upstream,
                            upstream_id,
                        }
                    }
                }
            }
        };
        self.metrics.count_transaction(outcome.decision);
        // Only a user of the snapshot's directory becomes a label: the series stay bounded by
        // the configuration whatever a client sends.
        if self.per_user_metrics
            && snapshot
                .authorizer
                .directory
                .user(&transaction.user)
                .is_some()
        {
            self.metrics
                .count_user_transaction(&transaction.user, outcome.decision);
        }
        // Client text, so a list whose items are quoted (a quoted local part may hold a comma);
        // the log layer then escapes it like every other field.
        let rcpt_to = self
            .log_recipients
            .then(|| format!("{:?}", transaction.envelope.recipients));
        info!(
            session = %transaction.session_id,
            client = %transaction.client,
            tls = transaction.tls,
            user = %transaction.user,
            identified_by = transaction.identified_by.as_str(),
            mail_from = %transaction.envelope.mail_from,
            from = %outcome.from,
            recipients = transaction.envelope.recipients.len(),
            rcpt_to = rcpt_to.as_deref(),
            size,
            decision = outcome.decision,
            enforced,
            reason = %outcome.reason,
            policy_types = %policy_types,
            upstream = %outcome.upstream,
            upstream_id = %outcome.upstream_id,
            reply = %outcome.reply,
            duration_ms = started.elapsed().as_millis() as u64,
            "transaction"
        );
        outcome.reply
    }
}

#[cfg(test)]
mod tests {
    use super::write_received_date;

    /// The once-a-second date is the date of the timestamp given, across second changes
    /// (forwards and back, as a clock stepped by NTP may go).
    #[test]
    fn received_date_follows_the_second() {
        for seconds in [
            1_795_000_000,
            1_795_000_000,
            1_795_000_001,
            1_700_000_000,
            0,
        ] {
            for nanos in [0, 999_999_999] {
                let now = jiff::Timestamp::new(seconds, nanos).unwrap();
                let mut out = String::from("x");
                write_received_date(&mut out, now);
                let expected = now.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string();
                assert_eq!(out, format!("x{expected}"));
            }
        }
    }
}
