//! The spool's files: plain files, one per message, in one directory per state. The gateway
//! and the `sesgate queue` command (another process) share them; a message is only moved,
//! rewritten or removed by whoever holds the `flock` on its file, so an operator's `hold` or
//! `delete` never races a delivery.
//!
//! ```text
//! DIR/lock            flock'ed by the running gateway: one gateway per spool
//! DIR/tmp/ID          being written: never acknowledged, removed at start
//! DIR/active/ID       a message to deliver: one JSON envelope line, then the message
//! DIR/hold/ID         a message on hold (`sesgate queue hold`): not delivered
//! DIR/state/ID.json   the retry state of a message that had a failed attempt
//! DIR/corrupt/ID      a committed file that cannot be read, kept for the operator
//! DIR/rescan          the `queue` command's request that the gateway re-read the spool
//! ```
//!
//! A message is acknowledged (250) only once `active/ID` was renamed into place and the
//! directory synced: before that it is in `tmp/`, which start empties.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::relay::durable::{self, create_dir, write_atomically};

/// The envelope, written as the first line of the message file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    /// The SMTP session it arrived in (empty for a DSN sesgate generated).
    pub session: String,
    pub user: String,
    pub client: String,
    pub tls: bool,
    /// Empty for `MAIL FROM:<>` (a DSN never gets a DSN).
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// When the 250 was given, Unix seconds: the message expires `max_age` after it.
    pub received_at: i64,
}

/// What the spool remembers between attempts (absent before the first failed one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Failed attempts so far.
    pub attempts: u32,
    /// When to try next, Unix milliseconds (0: now).
    pub next_attempt_ms: u64,
    /// The recipients still to deliver to; `None`: all of the envelope's.
    pub pending: Option<Vec<String>>,
    /// Why the last attempt failed (for `queue list` and the DSN).
    pub last_error: String,
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Active,
    Hold,
}

impl Place {
    fn dir(self) -> &'static str {
        match self {
            Place::Active => "active",
            Place::Hold => "hold",
        }
    }

    pub fn as_str(self) -> &'static str {
        self.dir()
    }
}

/// Whether `id` is a spool id as sesgate makes them: dot-separated runs of 1 to 20 ASCII
/// digits, 2 to 6 of them, at most 80 bytes. Nothing else is ever joined to a path, so an
/// operator's argument cannot name a file outside the spool (`../x`, `/etc/passwd`, `.`).
pub fn valid_id(id: &str) -> bool {
    let parts = id.split('.').count();
    (1..=80).contains(&id.len())
        && (2..=6).contains(&parts)
        && id
            .split('.')
            .all(|part| (1..=20).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The result of trying to take a message for delivery or an operator's change.
pub enum Claimed {
    /// It is no longer in `active/` (delivered, held or deleted meanwhile).
    Gone,
    /// Someone else holds it (a delivery in progress, or an operator's command).
    Busy,
    Mine(Claim),
}

/// A message whose lock this process holds; the lock goes with the value.
#[derive(Debug)]
pub struct Claim {
    pub id: String,
    file: File,
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// One message as `list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub place: Place,
    /// The message file's size, envelope line included.
    pub bytes: u64,
    /// When it was written (its mtime), Unix seconds.
    pub written_at: i64,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The largest envelope line read (50 recipients of 320 bytes are about 17 KB).
const MAX_ENVELOPE_LINE: u64 = 1 << 20;

impl Store {
    /// The spool at `root`, as it is (nothing created).
    pub fn at(root: &Path) -> Store {
        Store {
            root: root.to_owned(),
        }
    }

    /// The spool at `root`, creating its directories.
    pub fn create(root: &Path) -> io::Result<Store> {
        for dir in ["tmp", "active", "hold", "state", "corrupt"] {
            create_dir(&root.join(dir))?;
        }
        Ok(Store::at(root))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, place: Place, id: &str) -> PathBuf {
        debug_assert!(valid_id(id));
        self.root.join(place.dir()).join(id)
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.root.join("state").join(format!("{id}.json"))
    }

    /// Takes the lock that makes this process the spool's one gateway.
    pub fn lock_for_gateway(&self) -> io::Result<File> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "another sesgate process is using this spool (its lock file is held)",
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Removes what a crash left half-written in `tmp/` (never acknowledged) and state files
    /// whose message is gone. Only the gateway holding the lock calls it, before it serves.
    pub fn recover(&self) -> io::Result<usize> {
        let mut discarded = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            fs::remove_file(entry.path())?;
            discarded += 1;
        }
        for entry in fs::read_dir(self.root.join("state"))? {
            let entry = entry?;
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| n.strip_suffix(".json"));
            let orphan = match id {
                Some(id) if valid_id(id) => {
                    !self.path(Place::Active, id).exists() && !self.path(Place::Hold, id).exists()
                }
                _ => false,
            };
            if orphan {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(discarded)
    }

    /// Writes one message durably into `active/`: envelope line and message in one file,
    /// fsynced, renamed, directory fsynced. Returns its size. Blocking.
    pub fn write(&self, envelope: &Envelope, message: &[u8]) -> io::Result<u64> {
        self.write_encoded(envelope, &encode_envelope(envelope)?, &[message])
    }

    /// `write`, with the envelope line already encoded (`encode_envelope`) and the message in
    /// parts (this hop's trace header, then the client's message), written one after the
    /// other in one vectored write: the file is the same as for the joined message.
    pub fn write_encoded(
        &self,
        envelope: &Envelope,
        line: &[u8],
        parts: &[&[u8]],
    ) -> io::Result<u64> {
        let temporary = self.root.join("tmp").join(&envelope.id);
        let target = self.path(Place::Active, &envelope.id);
        let mut all = Vec::with_capacity(parts.len() + 1);
        all.push(line);
        all.extend_from_slice(parts);
        write_atomically(&temporary, &target, &all)?;
        durable::sync_dir(&self.root.join("active"))?;
        Ok(all.iter().map(|p| p.len() as u64).sum())
    }

    /// Tries to lock `active/ID`. The lock is checked to be on the file still at that path:
    /// an operator may have moved it between the open and the lock.
    pub fn claim(&self, id: &str) -> io::Result<Claimed> {
        let path = self.path(Place::Active, id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claimed::Gone),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(Claimed::Busy),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let locked = file.metadata()?;
        match fs::metadata(&path) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {
                Ok(Claimed::Mine(Claim {
                    id: id.to_owned(),
                    file,
                }))
            }
            Ok(_) => Ok(Claimed::Gone),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Claimed::Gone),
            Err(e) => Err(e),
        }
    }

    /// `claim`, waiting up to `patience` while a delivery holds the message.
    pub fn claim_waiting(&self, id: &str, patience: Duration) -> io::Result<Claimed> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.claim(id)? {
                Claimed::Busy if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return Ok(other),
            }
        }
    }

    /// Reads a claimed message: its envelope and the message (everything after the envelope
    /// line, trace header included, as one buffer: a slice of the file's bytes, not a copy).
    pub fn read(&self, claim: &mut Claim) -> io::Result<(Envelope, bytes::Bytes)> {
        use std::io::Seek;
        claim.file.rewind()?;
        let size = claim.file.metadata().map_or(0, |m| m.len() as usize);
        let mut content = Vec::with_capacity(size);
        claim.file.read_to_end(&mut content)?;
        let content = bytes::Bytes::from(content);
        let (envelope, start) = split_envelope(&content)?;
        Ok((envelope, content.slice(start..)))
    }

    /// The envelope of a message, without reading the message (for `list`).
    pub fn envelope(&self, place: Place, id: &str) -> io::Result<Envelope> {
        let file = File::open(self.path(place, id))?;
        let mut line = Vec::new();
        BufReader::new(file.take(MAX_ENVELOPE_LINE)).read_until(b'\n', &mut line)?;
        parse_envelope(&line)
    }

    /// The whole message file of an unclaimed message (for `show`).
    pub fn read_unclaimed(&self, place: Place, id: &str) -> io::Result<(Envelope, Vec<u8>)> {
        split_message(fs::read(self.path(place, id))?)
    }

    /// The retry state of `id` (default when it never failed or the file is unreadable: a
    /// lost state only means an earlier retry).
    pub fn state(&self, id: &str) -> State {
        fs::read(self.state_path(id))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the retry state of a claimed message. The directory is not synced: a state
    /// lost in a crash means one earlier (or repeated) attempt, which at-least-once allows.
    pub fn write_state(&self, claim: &Claim, state: &State) -> io::Result<()> {
        let json = serde_json::to_vec(state).map_err(io::Error::other)?;
        let temporary = self.root.join("tmp").join(format!("{}.state", claim.id));
        write_atomically(&temporary, &self.state_path(&claim.id), &[&json])
    }

    /// Removes a claimed message (delivered, bounced or expired). The message file goes
    /// first: once it is gone the message is done, whatever happens to its state file.
    /// Returns the size of the message file removed.
    pub fn remove(&self, claim: Claim) -> io::Result<u64> {
        let size = claim.file.metadata().map_or(0, |m| m.len());
        fs::remove_file(self.path(Place::Active, &claim.id))?;
        match fs::remove_file(self.state_path(&claim.id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(size),
        }
    }

    /// Moves a claimed message that cannot be read to `corrupt/`, for the operator.
    /// Returns its size (no longer counted as spooled).
    pub fn set_aside(&self, claim: Claim) -> io::Result<u64> {
        let size = claim.file.metadata().map_or(0, |m| m.len());
        fs::rename(
            self.path(Place::Active, &claim.id),
            self.root.join("corrupt").join(&claim.id),
        )?;
        Ok(size)
    }

    /// The messages in `place`, with their sizes and write times. Names that are not spool
    /// ids are passed over.
    pub fn list(&self, place: Place) -> io::Result<Vec<Listed>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(self.root.join(place.dir()))? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_id(&id) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue; // removed meanwhile
            };
            found.push(Listed {
                id,
                place,
                bytes: meta.len(),
                written_at: meta.mtime(),
            });
        }
        found.sort_by(|a, b| (a.written_at, &a.id).cmp(&(b.written_at, &b.id)));
        Ok(found)
    }

    /// Where `id` is, if anywhere.
    pub fn find(&self, id: &str) -> Option<Place> {
        [Place::Active, Place::Hold]
            .into_iter()
            .find(|place| self.path(*place, id).exists())
    }

    /// Asks a running gateway to re-read the spool (it looks for the file every second).
    pub fn request_rescan(&self) -> io::Result<()> {
        fs::write(self.root.join("rescan"), b"")
    }

    /// Whether a rescan was asked for; the request is taken (removed).
    pub fn take_rescan_request(&self) -> bool {
        fs::remove_file(self.root.join("rescan")).is_ok()
    }

    /// `sesgate queue hold ID`: moves the message out of delivery, waiting for a delivery in
    /// progress to end.
    pub fn hold(&self, id: &str, patience: Duration) -> Result<(), OperatorError> {
        let claim = self.operator_claim(id, patience)?;
        fs::rename(self.path(Place::Active, id), self.path(Place::Hold, id))?;
        durable::sync_dir(&self.root.join("hold"))?;
        durable::sync_dir(&self.root.join("active"))?;
        drop(claim);
        Ok(())
    }

    /// `sesgate queue release ID`: back into delivery, due now.
    pub fn release(&self, id: &str) -> Result<(), OperatorError> {
        check_id(id)?;
        match fs::rename(self.path(Place::Hold, id), self.path(Place::Active, id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OperatorError::NotFound(id.to_owned()));
            }
            other => other?,
        }
        durable::sync_dir(&self.root.join("active"))?;
        durable::sync_dir(&self.root.join("hold"))?;
        // Due now; if a delivery claims it first, it writes its own state anyway.
        if let Ok(Claimed::Mine(claim)) = self.claim(id) {
            let state = State {
                next_attempt_ms: 0,
                ..self.state(id)
            };
            self.write_state(&claim, &state)?;
        }
        self.request_rescan()?;
        Ok(())
    }

    /// `sesgate queue delete ID`: removed without a DSN (as `postsuper -d`).
    pub fn delete(&self, id: &str, patience: Duration) -> Result<(), OperatorError> {
        check_id(id)?;
        let held = self.path(Place::Hold, id);
        if held.exists() {
            fs::remove_file(&held)?;
            let _ = fs::remove_file(self.state_path(id));
            durable::sync_dir(&self.root.join("hold"))?;
            return Ok(());
        }
        let claim = self.operator_claim(id, patience)?;
        self.remove(claim)?;
        durable::sync_dir(&self.root.join("active"))?;
        self.request_rescan()?;
        Ok(())
    }

    /// `sesgate queue flush`: every active message due now. Returns how many were set due
    /// (a message being delivered right now is left to its delivery).
    pub fn flush(&self) -> Result<usize, OperatorError> {
        let mut due = 0;
        for listed in self.list(Place::Active)? {
            if let Claimed::Mine(claim) = self.claim(&listed.id)? {
                let state = self.state(&listed.id);
                if state.next_attempt_ms != 0 {
                    self.write_state(
                        &claim,
                        &State {
                            next_attempt_ms: 0,
                            ..state
                        },
                    )?;
                }
                due += 1;
            }
        }
        self.request_rescan()?;
        Ok(due)
    }

    fn operator_claim(&self, id: &str, patience: Duration) -> Result<Claim, OperatorError> {
        check_id(id)?;
        match self.claim_waiting(id, patience)? {
            Claimed::Mine(claim) => Ok(claim),
            Claimed::Busy => Err(OperatorError::Busy(id.to_owned())),
            Claimed::Gone => Err(OperatorError::NotFound(id.to_owned())),
        }
    }
}

/// Why an operator's command on a message failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0:?} is not a queue id (digits and dots, as `sesgate queue list` shows them)")]
    InvalidId(String),
    #[error("no message {0} in the queue")]
    NotFound(String),
    #[error("message {0} is being delivered; try again")]
    Busy(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn check_id(id: &str) -> Result<(), OperatorError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(OperatorError::InvalidId(id.to_owned()))
    }
}

/// The envelope line of a message file (JSON escapes every line break, so it is one line).
pub fn encode_envelope(envelope: &Envelope) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(envelope).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

fn parse_envelope(line: &[u8]) -> io::Result<Envelope> {
    let line = line
        .strip_suffix(b"\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no complete envelope line"))?;
    serde_json::from_slice(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn split_message(mut content: Vec<u8>) -> io::Result<(Envelope, Vec<u8>)> {
    let (envelope, start) = split_envelope(&content)?;
    content.drain(..start);
    Ok((envelope, content))
}

/// The envelope of a message file's content, and where the message starts.
fn split_envelope(content: &[u8]) -> io::Result<(Envelope, usize)> {
    let end = memchr::memchr(b'\n', content)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no envelope line"))?;
    Ok((parse_envelope(&content[..=end])?, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sesgate-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            session: "s1".into(),
            user: "u".into(),
            client: "127.0.0.1".into(),
            tls: false,
            mail_from: "a@example.com".into(),
            recipients: vec!["b@example.com".into()],
            received_at: 1,
        }
    }

    #[test]
    fn ids_are_strict() {
        assert!(valid_id("1700000000.123456.42.7"));
        assert!(valid_id("1700000000.123456.42.7.1"));
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "1",
            "1..2",
            ".1.2",
            "1.2.",
            "a.b",
            "1.2/3",
            "1.2.3.4.5.6.7",
            "1.2\n",
            "1.2 ",
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(!valid_id(&format!("{}.1", "1".repeat(21))));
    }

    #[test]
    fn write_claim_read_remove() {
        let dir = temp("cycle");
        let store = Store::create(&dir).unwrap();
        let size = store
            .write(&envelope("1.2.3.4"), b"Subject: x\r\n\r\nbody\r\n")
            .unwrap();
        assert_eq!(
            fs::metadata(dir.join("active/1.2.3.4")).unwrap().len(),
            size
        );
        let Claimed::Mine(mut claim) = store.claim("1.2.3.4").unwrap() else {
            panic!("not claimed")
        };
        // A second claim (another open file description) sees it busy.
        assert!(matches!(store.claim("1.2.3.4").unwrap(), Claimed::Busy));
        let (read, message) = store.read(&mut claim).unwrap();
        assert_eq!(read, envelope("1.2.3.4"));
        assert_eq!(&message[..], b"Subject: x\r\n\r\nbody\r\n");
        store
            .write_state(
                &claim,
                &State {
                    attempts: 2,
                    ..State::default()
                },
            )
            .unwrap();
        assert_eq!(store.state("1.2.3.4").attempts, 2);
        store.remove(claim).unwrap();
        assert!(matches!(store.claim("1.2.3.4").unwrap(), Claimed::Gone));
        assert_eq!(store.state("1.2.3.4"), State::default());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_message_in_parts_is_stored_as_one_and_old_files_still_read() {
        let dir = temp("parts");
        let store = Store::create(&dir).unwrap();
        let header = b"Received: from c ([127.0.0.1])\r\n\tby gw (sesgate);\r\n\tdate\r\n";
        let message = b".dot first\r\nSubject: x\r\n\r\nbody";
        let line = encode_envelope(&envelope("1.1.1.1")).unwrap();
        store
            .write_encoded(&envelope("1.1.1.1"), &line, &[header, message])
            .unwrap();
        // The file a release that joined the header and the message wrote (one buffer).
        let mut joined = line.clone();
        joined.extend_from_slice(header);
        joined.extend_from_slice(message);
        assert_eq!(fs::read(dir.join("active/1.1.1.1")).unwrap(), joined);
        let mut old = encode_envelope(&envelope("2.2.2.2")).unwrap();
        old.extend_from_slice(&joined[line.len()..]);
        fs::write(dir.join("active/2.2.2.2"), &old).unwrap();
        for id in ["1.1.1.1", "2.2.2.2"] {
            let Claimed::Mine(mut claim) = store.claim(id).unwrap() else {
                panic!("not claimed")
            };
            let (read, body) = store.read(&mut claim).unwrap();
            assert_eq!(read, envelope(id));
            assert_eq!(&body[..], &joined[line.len()..], "{id}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recovery_discards_half_written_files_and_orphan_states() {
        let dir = temp("recover");
        let store = Store::create(&dir).unwrap();
        fs::write(dir.join("tmp/9.9.9.9"), b"half").unwrap();
        fs::write(dir.join("state/8.8.8.8.json"), b"{}").unwrap();
        store.write(&envelope("1.1.1.1"), b"m").unwrap();
        fs::write(dir.join("state/1.1.1.1.json"), b"{}").unwrap();
        assert_eq!(store.recover().unwrap(), 1);
        assert!(!dir.join("tmp/9.9.9.9").exists());
        assert!(!dir.join("state/8.8.8.8.json").exists());
        assert!(dir.join("state/1.1.1.1.json").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_gateway_per_spool() {
        let dir = temp("lock");
        let store = Store::create(&dir).unwrap();
        let held = store.lock_for_gateway().unwrap();
        assert!(store.lock_for_gateway().is_err());
        drop(held);
        store.lock_for_gateway().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn operator_commands_wait_for_a_delivery_and_refuse_bad_ids() {
        let dir = temp("operator");
        let store = Store::create(&dir).unwrap();
        store.write(&envelope("1.1.1.1"), b"m").unwrap();
        let Claimed::Mine(claim) = store.claim("1.1.1.1").unwrap() else {
            panic!()
        };
        assert!(matches!(
            store.hold("1.1.1.1", Duration::from_millis(50)),
            Err(OperatorError::Busy(_))
        ));
        drop(claim);
        store.hold("1.1.1.1", Duration::from_millis(50)).unwrap();
        assert_eq!(store.find("1.1.1.1"), Some(Place::Hold));
        assert!(matches!(store.claim("1.1.1.1").unwrap(), Claimed::Gone));
        store.release("1.1.1.1").unwrap();
        assert_eq!(store.find("1.1.1.1"), Some(Place::Active));
        assert!(store.take_rescan_request());
        assert!(!store.take_rescan_request());
        assert!(matches!(
            store.delete("../lock", Duration::ZERO),
            Err(OperatorError::InvalidId(_))
        ));
        assert!(matches!(
            store.release("2.2.2.2"),
            Err(OperatorError::NotFound(_))
        ));
        store.delete("1.1.1.1", Duration::ZERO).unwrap();
        assert_eq!(store.find("1.1.1.1"), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
