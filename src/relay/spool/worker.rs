//! A delivery worker: takes the next due message, claims its file (so an operator's command
//! cannot move it meanwhile), sends it to the recipients still pending through the upstream,
//! and then removes it (all delivered or bounced), reschedules it (temporary failures) or
//! bounces it (permanent refusal, expiry). One log line per attempt, with sesgate's id and the
//! upstream's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::dsn::{self, Failed};
use super::schedule::{Next, backoff};
use super::store::{Claim, Claimed, Envelope, State, now_ms};
use super::{Admission, DeliveryPace, Shared, StoreError, store_message};
use crate::relay::{Delivery, Relay, RelayError, SentEachRelayed, reply_text};

/// How soon a message is looked at again when an operator's command holds it.
const BUSY_RETRY_MS: u64 = 1000;

pub(super) async fn run(
    shared: Arc<Shared>,
    relay: Relay,
    pace: Arc<dyn DeliveryPace>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let notified = shared.queue.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match shared.queue.take(now_ms()) {
            Next::Deliver(id) => {
                let mut rest = None;
                tokio::select! {
                    again = deliver(&shared, &relay, pace.as_ref(), &id, &mut rest) => shared.queue.finish(&id, again),
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                // The pace said "not now": this worker rests as long, rather than asking the
                // quota store again for every other due message (a deep spool would turn a
                // spent rate into a loop of store calls).
                if let Some(rest) = rest {
                    tokio::select! {
                        _ = tokio::time::sleep(rest) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                }
            }
            Next::Wait(due) => {
                let wait = due.map_or(Duration::from_secs(3600), |due| {
                    Duration::from_millis(due.saturating_sub(now_ms()))
                });
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(error) => {
            warn!(%error, "spool: file task failed");
            None
        }
    }
}

/// A claimed message as read from its file.
struct Loaded {
    claim: Claim,
    envelope: Envelope,
    message: bytes::Bytes,
    state: State,
}

/// One delivery attempt of `id`; when to try it again (`None`: done with it). `rest`: how
/// long the pace asked to wait, when it did not admit the message.
async fn deliver(
    shared: &Arc<Shared>,
    relay: &Relay,
    pace: &dyn DeliveryPace,
    id: &str,
    rest: &mut Option<Duration>,
) -> Option<u64> {
    let retry_soon = Some(now_ms() + BUSY_RETRY_MS);
    let loaded = {
        let (shared, id) = (Arc::clone(shared), id.to_owned());
        blocking(move || load(&shared, &id)).await?
    };
    let Some(Loaded {
        claim,
        envelope,
        message,
        state,
    }) = (match loaded {
        Ok(loaded) => loaded,
        Err(again) => return again,
    })
    else {
        return retry_soon;
    };
    let pending = state
        .pending
        .clone()
        .unwrap_or_else(|| envelope.recipients.clone());
    let attempt = state.attempts + 1;
    // For a DSN: the stored header section, this hop's `Received:` first (a slice, no copy).
    let headers = message.slice_ref(dsn::header_section(&message));
    let expires_at = envelope
        .received_at
        .saturating_add(shared.options.max_age.as_secs() as i64);
    if jiff::Timestamp::now().as_second() >= expires_at {
        shared.counters.expired.inc();
        let last = if state.last_error.is_empty() {
            "none".to_owned()
        } else {
            state.last_error.clone()
        };
        let failed = pending
            .iter()
            .map(|recipient| Failed {
                recipient: recipient.clone(),
                status: "4.4.7".into(),
                diagnostic: format!(
                    "X-Sesgate; delivery time expired after {} attempts; last error: {last}",
                    state.attempts
                ),
            })
            .collect();
        info!(id = %envelope.id, attempts = state.attempts, recipients = pending.len(), result = "expired", "spool delivery");
        return conclude(shared, claim, envelope, headers, state, failed, Vec::new()).await;
    }
    let ticket = match pace.admit(&envelope.user, pending.len()).await {
        Admission::Now(ticket) => ticket,
        Admission::Later(wait) => {
            *rest = Some(wait);
            return Some(now_ms() + wait.as_millis() as u64);
        }
    };
    let delivery = Delivery {
        id: envelope.id.clone(),
        session: envelope.session.clone(),
        user: envelope.user.clone(),
        client: envelope.client.clone(),
        tls: envelope.tls,
        mail_from: envelope.mail_from.clone(),
        recipients: pending.clone(),
        // The stored bytes already begin with the trace header added at acceptance.
        header: Vec::new(),
        message,
    };
    let outcome = relay.send_each(delivery).await;
    // Recipients the upstream took, for the pace: what it did not take is given back.
    let mut taken = 0;
    // An upstream 454 (for the message or some recipients): the pace hears it after the
    // settlement, so what the settlement gives back does not undo the slowdown.
    let mut throttled = false;
    let (permanent, temporary, why) = match outcome {
        Ok(SentEachRelayed { relayed, failed }) => {
            let mut permanent = Vec::new();
            let mut temporary = Vec::new();
            let mut why = String::new();
            for failure in failed {
                match failure.error {
                    RelayError::Throttled(text) => {
                        throttled = true;
                        why = text;
                        temporary.push(failure.recipient);
                    }
                    RelayError::Deferred(text) => {
                        why = text;
                        temporary.push(failure.recipient);
                    }
                    RelayError::Rejected { code, text } => permanent.push(Failed {
                        recipient: failure.recipient,
                        status: dsn::status_of(&text, '5'),
                        diagnostic: format!("smtp; {code} {}", reply_text(&text)),
                    }),
                    RelayError::Refused(text) => permanent.push(Failed {
                        recipient: failure.recipient,
                        status: dsn::status_of(&text, '5'),
                        diagnostic: format!("X-Sesgate; {}", reply_text(&text)),
                    }),
                }
            }
            if let Some(relayed) = relayed {
                taken = pending.len() - permanent.len() - temporary.len();
                shared.counters.delivered.inc();
                info!(
                    id = %envelope.id,
                    upstream_id = %relayed.upstream_id.unwrap_or_default(),
                    attempt,
                    recipients = taken,
                    refused = permanent.len(),
                    deferred = temporary.len(),
                    result = "delivered",
                    "spool delivery"
                );
            }
            (permanent, temporary, why)
        }
        Err(RelayError::Deferred(why)) => (Vec::new(), pending.clone(), why),
        // SES's throttling: retried like any 4xx, and the pace slows down.
        Err(RelayError::Throttled(text)) => {
            throttled = true;
            (
                Vec::new(),
                pending.clone(),
                format!("upstream replied 454 {text}"),
            )
        }
        Err(RelayError::Rejected { code, text }) => {
            let failed = pending
                .iter()
                .map(|recipient| Failed {
                    recipient: recipient.clone(),
                    status: dsn::status_of(&text, '5'),
                    diagnostic: format!("smtp; {code} {}", reply_text(&text)),
                })
                .collect();
            (failed, Vec::new(), String::new())
        }
        Err(RelayError::Refused(text)) => {
            let failed = pending
                .iter()
                .map(|recipient| Failed {
                    recipient: recipient.clone(),
                    status: dsn::status_of(&text, '5'),
                    diagnostic: format!("X-Sesgate; {}", reply_text(&text)),
                })
                .collect();
            (failed, Vec::new(), String::new())
        }
    };
    pace.settle(ticket, &envelope.user, taken).await;
    if throttled {
        pace.throttled();
    }
    if !permanent.is_empty() {
        info!(id = %envelope.id, attempt, recipients = permanent.len(), reason = %permanent[0].diagnostic, result = "refused", "spool delivery");
    }
    let mut state = state;
    if !temporary.is_empty() {
        state.last_error = reply_text(&why);
    }
    conclude(
        shared, claim, envelope, headers, state, permanent, temporary,
    )
    .await
}

/// Claims and reads `id`. `Err(again)`: nothing to deliver (gone, busy, unreadable) and when
/// to look again; `Ok(None)`: a file error, try soon.
fn load(shared: &Shared, id: &str) -> Result<Option<Loaded>, Option<u64>> {
    let store = &shared.store;
    let mut claim = match store.claim(id) {
        Ok(Claimed::Mine(claim)) => claim,
        Ok(Claimed::Gone) => return Err(None),
        Ok(Claimed::Busy) => return Err(Some(now_ms() + BUSY_RETRY_MS)),
        Err(error) => {
            warn!(id, %error, "spool: cannot open a message; trying again");
            return Ok(None);
        }
    };
    match store.read(&mut claim) {
        Ok((envelope, message)) if envelope.id == id => {
            let state = store.state(id);
            Ok(Some(Loaded {
                claim,
                envelope,
                message,
                state,
            }))
        }
        Ok(_) | Err(_) => {
            // Not a file this spool wrote whole (edited, or the disk lost it): keep it for the
            // operator, never guess at its envelope.
            warn!(id, "spool: unreadable message moved to corrupt/");
            match store.set_aside(claim) {
                Ok(size) => {
                    shared.release_bytes(size);
                    Err(None)
                }
                Err(error) => {
                    warn!(id, %error, "spool: cannot move an unreadable message");
                    Err(Some(now_ms() + 60_000))
                }
            }
        }
    }
}

/// After an attempt: bounces `permanent` (a DSN spooled first), then removes the message or,
/// when `temporary` recipients remain, writes its retry state. When to look again.
async fn conclude(
    shared: &Arc<Shared>,
    claim: Claim,
    envelope: Envelope,
    headers: bytes::Bytes,
    state: State,
    permanent: Vec<Failed>,
    temporary: Vec<String>,
) -> Option<u64> {
    let shared = Arc::clone(shared);
    blocking(move || {
        let attempt = state.attempts + 1;
        let mut temporary = temporary;
        let mut state = state;
        if !permanent.is_empty()
            && let Err(error) = bounce(&shared, &envelope, &headers, &permanent, attempt)
        {
            // The DSN could not be spooled (the disk is full): keep those recipients too, so
            // that their failure is reported on a later attempt rather than lost.
            warn!(id = %envelope.id, %error, "spool: cannot queue a DSN; keeping the message");
            temporary.extend(permanent.iter().map(|f| f.recipient.clone()));
            state.last_error = format!("DSN not queued: {error}");
        }
        if temporary.is_empty() {
            match shared.store.remove(claim) {
                Ok(size) => {
                    shared.release_bytes(size);
                    return None;
                }
                Err(error) => {
                    warn!(id = %envelope.id, %error, "spool: cannot remove a finished message");
                    return Some(now_ms() + 60_000);
                }
            }
        }
        retry(&shared, &claim, &envelope, state, temporary)
    })
    .await
    .unwrap_or(Some(now_ms() + BUSY_RETRY_MS))
}

/// Reschedules a message for its `pending` recipients on the backoff, never past its expiry.
fn retry(
    shared: &Shared,
    claim: &Claim,
    envelope: &Envelope,
    mut state: State,
    pending: Vec<String>,
) -> Option<u64> {
    state.attempts += 1;
    let now = now_ms();
    let delay = backoff(&shared.options.retry_schedule, state.attempts);
    let expires_ms = (envelope
        .received_at
        .saturating_add(shared.options.max_age.as_secs() as i64))
    .max(0) as u64
        * 1000;
    let next = (now + delay.as_millis() as u64).min(expires_ms.max(now));
    state.next_attempt_ms = next;
    state.pending = (pending != envelope.recipients).then_some(pending);
    shared.counters.retries.inc();
    info!(
        id = %envelope.id,
        attempt = state.attempts,
        retry_in_secs = (next - now) / 1000,
        reason = %state.last_error,
        result = "deferred",
        "spool delivery"
    );
    if let Err(error) = shared.store.write_state(claim, &state) {
        warn!(id = %envelope.id, %error, "spool: cannot write the retry state");
    }
    Some(next)
}

/// Spools the DSN for `failed` recipients (none for `MAIL FROM:<>`).
fn bounce(
    shared: &Shared,
    envelope: &Envelope,
    headers: &[u8],
    failed: &[Failed],
    attempt: u32,
) -> Result<(), StoreError> {
    if envelope.mail_from.is_empty() {
        info!(id = %envelope.id, recipients = failed.len(), "spool: no DSN for MAIL FROM:<>");
        return Ok(());
    }
    // One DSN per original and attempt: a DSN spooled again after a crash replaces itself.
    let id = format!("{}.{attempt}", envelope.id);
    let now = jiff::Timestamp::now();
    let report = dsn::Report {
        hostname: &shared.options.hostname,
        bounce_from: &shared.options.bounce_from,
        id: &id,
        now,
    };
    let message = dsn::build(&report, envelope, headers, failed);
    let dsn_envelope = Envelope {
        id: id.clone(),
        session: String::new(),
        user: envelope.user.clone(),
        client: String::new(),
        tls: false,
        mail_from: String::new(),
        recipients: vec![envelope.mail_from.clone()],
        received_at: now.as_second(),
    };
    store_message(shared, &dsn_envelope, &[&message], false)?;
    shared.counters.bounces.inc();
    info!(id = %envelope.id, dsn_id = %id, recipients = failed.len(), "spool: DSN queued");
    Ok(())
}
