//! `sesgate queue list | show ID | flush | hold ID | release ID | delete ID`: the spool as
//! Postfix's `mailq`, `postqueue -f`, `postsuper -h/-H/-d` and `postcat` show and change it,
//! safe on the spool of a running gateway: a message is changed only under the lock a
//! delivery holds while it sends (`relay::spool::store`), and the gateway is asked to re-read
//! the spool (a `rescan` file it looks for every second) rather than signalled.
//!
//! `list` and `show` print the envelope and state; `show` adds the header section; only
//! `show --body` prints the message itself (mail content, for the operator who may read the
//! spool anyway). Every client-supplied string is escaped, so an address cannot move the
//! terminal's cursor or fake a line.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Config;
use crate::logging::escaped;
use crate::relay::spool::dsn::header_section;
use crate::relay::spool::store::{Listed, valid_id};
use crate::relay::spool::{OperatorError, Place, Store};

/// How long `hold` and `delete` wait for a delivery in progress to end.
const PATIENCE: Duration = Duration::from_secs(10);

/// One `queue` verb.
#[derive(Debug, Clone)]
pub enum Verb {
    List,
    Show { id: String, body: bool },
    Flush,
    Hold { id: String },
    Release { id: String },
    Delete { id: String },
}

/// Why a `queue` command failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no [spool] in the configuration: sesgate relays without a queue")]
    NoSpool,
    #[error(transparent)]
    Operator(#[from] OperatorError),
}

impl QueueError {
    /// 1 when trying again may work (a delivery holds the message, a file error), else 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            QueueError::Operator(OperatorError::Busy(_) | OperatorError::Io(_)) => 1,
            _ => 2,
        }
    }
}

/// Runs `verb` on the spool of `config`; what to print.
pub fn run(config: &Config, verb: &Verb) -> Result<Vec<u8>, QueueError> {
    let spool = config.spool.as_ref().ok_or(QueueError::NoSpool)?;
    let store = Store::at(&config.path(&spool.dir));
    if !store.root().join("active").is_dir() {
        return Err(OperatorError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a spool (no active/)", store.root().display()),
        ))
        .into());
    }
    let check = |id: &str| {
        if valid_id(id) {
            Ok(())
        } else {
            Err(OperatorError::InvalidId(id.to_owned()))
        }
    };
    Ok(match verb {
        Verb::List => list(&store)?.into_bytes(),
        Verb::Show { id, body } => {
            check(id)?;
            show(&store, id, *body)?
        }
        Verb::Flush => {
            let due = store.flush()?;
            format!(
                "{due} message(s) due now; the running gateway re-reads the spool within a second\n"
            )
            .into_bytes()
        }
        Verb::Hold { id } => {
            store.hold(id, PATIENCE)?;
            format!("{id}: on hold\n").into_bytes()
        }
        Verb::Release { id } => {
            store.release(id)?;
            format!("{id}: released, due now\n").into_bytes()
        }
        Verb::Delete { id } => {
            store.delete(id, PATIENCE)?;
            format!("{id}: deleted (no DSN)\n").into_bytes()
        }
    })
}

fn time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "-".into())
}

fn angle_list(addresses: &[String]) -> String {
    addresses
        .iter()
        .map(|a| format!("<{}>", escaped(a)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One message's lines, as `list` prints them.
fn describe(store: &Store, listed: &Listed, out: &mut String) {
    let state = store.state(&listed.id);
    let status = match (listed.place, state.attempts) {
        (Place::Hold, _) => "held",
        (Place::Active, 0) => "queued",
        (Place::Active, _) => "deferred",
    };
    let next = match (listed.place, state.next_attempt_ms) {
        (Place::Hold, _) => "-".to_owned(),
        (_, 0) => "now".to_owned(),
        (_, ms) => time((ms / 1000) as i64),
    };
    let _ = writeln!(
        out,
        "{:<28} {:>9}  {}  {:<8}  attempts {:<3}  next {next}",
        listed.id,
        listed.bytes,
        time(listed.written_at),
        status,
        state.attempts,
    );
    match store.envelope(listed.place, &listed.id) {
        Ok(envelope) => {
            let from = if envelope.mail_from.is_empty() {
                "<> (a DSN)".to_owned()
            } else {
                format!("<{}>", escaped(&envelope.mail_from))
            };
            let _ = writeln!(out, "    from: {from}  user: {}", escaped(&envelope.user));
            let pending = state.pending.as_deref().unwrap_or(&envelope.recipients);
            let _ = writeln!(out, "    to: {}", angle_list(pending));
        }
        Err(error) => {
            let _ = writeln!(out, "    (envelope unreadable: {error})");
        }
    }
    if !state.last_error.is_empty() {
        let _ = writeln!(out, "    last error: {}", escaped(&state.last_error));
    }
}

fn list(store: &Store) -> Result<String, OperatorError> {
    let mut all = store.list(Place::Active)?;
    all.extend(store.list(Place::Hold)?);
    all.sort_by(|a, b| (a.written_at, &a.id).cmp(&(b.written_at, &b.id)));
    let mut out = String::new();
    for listed in &all {
        describe(store, listed, &mut out);
    }
    let held = all.iter().filter(|l| l.place == Place::Hold).count();
    let bytes: u64 = all.iter().map(|l| l.bytes).sum();
    let _ = writeln!(
        out,
        "{} message(s), {bytes} bytes, {held} on hold",
        all.len()
    );
    Ok(out)
}

fn show(store: &Store, id: &str, body: bool) -> Result<Vec<u8>, OperatorError> {
    let place = store
        .find(id)
        .ok_or_else(|| OperatorError::NotFound(id.to_owned()))?;
    let (envelope, message) = match store.read_unclaimed(place, id) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OperatorError::NotFound(id.to_owned()));
        }
        Err(e) => return Err(e.into()),
    };
    if body {
        return Ok(message);
    }
    let state = store.state(id);
    let mut out = String::new();
    let _ = writeln!(out, "id: {id}");
    let _ = writeln!(out, "place: {}", place.as_str());
    let _ = writeln!(out, "received: {}", time(envelope.received_at));
    let _ = writeln!(out, "session: {}", escaped(&envelope.session));
    let _ = writeln!(out, "user: {}", escaped(&envelope.user));
    let _ = writeln!(out, "client: {}", escaped(&envelope.client));
    let _ = writeln!(out, "tls: {}", envelope.tls);
    let _ = writeln!(out, "mail from: <{}>", escaped(&envelope.mail_from));
    let _ = writeln!(out, "recipients: {}", angle_list(&envelope.recipients));
    if let Some(pending) = &state.pending {
        let _ = writeln!(out, "pending: {}", angle_list(pending));
    }
    let _ = writeln!(out, "attempts: {}", state.attempts);
    if !state.last_error.is_empty() {
        let _ = writeln!(out, "last error: {}", escaped(&state.last_error));
    }
    let _ = writeln!(out, "size: {} bytes", message.len());
    let _ = writeln!(
        out,
        "--- headers (the body: sesgate queue show --body {id})"
    );
    for line in String::from_utf8_lossy(header_section(&message)).split("\r\n") {
        if !line.is_empty() {
            let _ = writeln!(out, "{}", escaped(line));
        }
    }
    Ok(out.into_bytes())
}
