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
use super::load::Snapshot;
use super::replies;
use super::request::TransactionFacts;
use crate::credentials::{Verification, VerificationGate};
use crate::iam::Outcome;
use crate::metrics::Metrics;
use crate::relay::{Delivery, MessageIds, Relay, RelayError};
use crate::smtp::{AuthOutcome, Authenticator, Credentials, Handler, Reply, Transaction};

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
}

/// Decides and relays each transaction.
pub(super) struct Gateway {
    pub clock: Clock,
    pub hostname: String,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub relay: Relay,
    pub ids: MessageIds,
    pub metrics: Arc<Metrics>,
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
}

impl Gateway {
    /// The `Received:` trace header this hop adds (RFC 5321 §4.4).
    fn received_header(&self, transaction: &Transaction) -> String {
        let protocol = if transaction.tls { "ESMTPSA" } else { "ESMTPA" };
        let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S +0000");
        let mut header = format!(
            "Received: from {} ([{}])\r\n\tby {} (sesgate) with {protocol} id {}",
            transaction.ehlo, transaction.client, self.hostname, transaction.session_id
        );
        if let [only] = transaction.envelope.recipients.as_slice() {
            let _ = write!(header, "\r\n\tfor <{only}>");
        }
        let _ = write!(header, ";\r\n\t{date}\r\n");
        header
    }

    /// Relays an allowed transaction: the client's reply and what the log says of it.
    async fn relay(&self, transaction: &Transaction) -> (Reply, String) {
        let id = self.ids.next_id();
        let mut message = self.received_header(transaction).into_bytes();
        message.extend_from_slice(&transaction.message);
        let delivery = Delivery {
            id,
            session: transaction.session_id.clone(),
            user: transaction.user.clone(),
            client: transaction.client.to_string(),
            tls: transaction.tls,
            mail_from: transaction.envelope.mail_from.clone(),
            recipients: transaction.envelope.recipients.clone(),
            message,
        };
        let started = Instant::now();
        let sent = self.relay.send(delivery).await;
        let result = match &sent {
            Ok(_) => "ok",
            Err(RelayError::Deferred(_)) => "deferred",
            Err(RelayError::Rejected { .. } | RelayError::Refused(_)) => "rejected",
        };
        self.metrics
            .count_upstream(result, started.elapsed().as_secs_f64());
        match sent {
            Ok(id) => (replies::relayed(&id), format!("250 {id}")),
            // The cause (e.g. `Connection refused (os error 111)`) is for the log only.
            Err(RelayError::Deferred(why)) => (replies::relay_deferred(), format!("451 {why}")),
            // The upstream's own refusal passes on, as one bounded printable line.
            Err(RelayError::Rejected { code, text }) => {
                let text = crate::relay::reply_text(&text);
                (
                    replies::relay_refused(code, text.clone()),
                    format!("{code} {text}"),
                )
            }
            Err(RelayError::Refused(text)) => {
                let text = crate::relay::reply_text(&text);
                (
                    replies::relay_refused(554, text.clone()),
                    format!("554 {text}"),
                )
            }
        }
    }
}

impl Handler for Gateway {
    async fn deliver(&self, transaction: Transaction) -> Reply {
        let started = Instant::now();
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
        let ruling = snapshot.authorizer.decide(input, (self.clock)());
        self.metrics
            .decision_latency
            .observe(deciding.elapsed().as_secs_f64());
        let outcome = match ruling {
            Ruling::Refused { kind, why, reply } => Settled {
                reply,
                decision: kind,
                reason: why,
                from: String::new(),
                upstream: String::new(),
            },
            Ruling::Denied {
                request,
                decision,
                reply,
                ..
            } => Settled {
                reply,
                decision: if decision.outcome == Outcome::ExplicitDeny {
                    "explicit-deny"
                } else {
                    "implicit-deny"
                },
                reason: decision.reason(),
                from: request.from,
                upstream: String::new(),
            },
            Ruling::Allowed { request, decision } => {
                let (reply, upstream) = self.relay(&transaction).await;
                Settled {
                    reply,
                    decision: "allowed",
                    reason: decision.reason(),
                    from: request.from,
                    upstream,
                }
            }
        };
        self.metrics.count_transaction(outcome.decision);
        info!(
            session = %transaction.session_id,
            client = %transaction.client,
            tls = transaction.tls,
            user = %transaction.user,
            mail_from = %transaction.envelope.mail_from,
            from = %outcome.from,
            recipients = transaction.envelope.recipients.len(),
            size = transaction.message.len(),
            decision = outcome.decision,
            reason = %outcome.reason,
            upstream = %outcome.upstream,
            reply = %outcome.reply,
            duration_ms = started.elapsed().as_millis() as u64,
            "transaction"
        );
        outcome.reply
    }
}
