//! The file outbox: each accepted message is written atomically (temporary file, fsync, rename,
//! fsync of the directory) as `ID.eml`, after its envelope `ID.json`, so a reader that sees the
//! message also sees its envelope, and nothing acknowledged is lost in a crash.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Delivery;
use super::durable::{self, create_dir, write_atomically};
#[cfg(test)]
use super::durable::{DIR_MODE, FILE_MODE};

/// Message ids: time, process and sequence, unique per process and sortable by arrival.
#[derive(Debug, Default)]
pub struct MessageIds {
    sequence: AtomicU64,
}

impl MessageIds {
    pub fn next_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.{:06}.{}.{sequence}",
            now.as_secs(),
            now.subsec_micros(),
            process_id()
        )
    }
}

/// The process id, read once: `std::process::id()` is a system call each time.
fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A directory of delivered messages.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Outbox {
    /// Opens (creating) the outbox directory. Directories it creates are mode 0750 and files
    /// 0640 (before the umask): messages and envelopes are the senders' mail, not for every
    /// local user. An existing directory keeps the mode its owner gave it.
    pub fn open(dir: &Path) -> io::Result<Outbox> {
        let tmp = dir.join("tmp");
        create_dir(&tmp)?;
        Ok(Outbox {
            dir: dir.to_owned(),
            tmp,
        })
    }

    /// Stores one message durably. Blocking: call it off the async threads.
    pub fn store(&self, delivery: &Delivery) -> io::Result<()> {
        let mut envelope = serde_json::to_value(delivery).map_err(io::Error::other)?;
        envelope["received_at"] = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
            .into();
        let json = serde_json::to_vec_pretty(&envelope).map_err(io::Error::other)?;
        let message = delivery.parts();
        for (name, contents) in [
            (format!("{}.json", delivery.id), &[json.as_slice()][..]),
            (format!("{}.eml", delivery.id), &message[..]),
        ] {
            write_atomically(&self.tmp.join(&name), &self.dir.join(&name), contents)?;
        }
        durable::sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn stores_envelope_and_message() {
        let dir = std::env::temp_dir().join(format!("sesgate-outbox-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let outbox = Outbox::open(&dir).unwrap();
        let ids = MessageIds::default();
        let id = ids.next_id();
        assert_ne!(id, ids.next_id());
        let delivery = Delivery {
            id: id.clone(),
            session: "s1".into(),
            user: "demo".into(),
            client: "127.0.0.1".into(),
            tls: true,
            mail_from: "a@example.com".into(),
            recipients: vec!["b@example.com".into()],
            header: b"Received: by gw\r\n".to_vec(),
            message: bytes::Bytes::from_static(b"Subject: x\r\n\r\nbody\r\n"),
        };
        outbox.store(&delivery).unwrap();
        assert_eq!(
            fs::read(dir.join(format!("{id}.eml"))).unwrap(),
            b"Received: by gw\r\nSubject: x\r\n\r\nbody\r\n"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(format!("{id}.json"))).unwrap()).unwrap();
        assert_eq!(json["recipients"][0], "b@example.com");
        assert!(json["received_at"].as_str().unwrap().ends_with('Z'));
        assert!(
            json.get("message").is_none(),
            "the body is not in the envelope"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for file in [format!("{id}.eml"), format!("{id}.json")] {
            assert_eq!(mode(&dir.join(file)) & !FILE_MODE, 0, "no bit beyond 0640");
        }
        assert_eq!(mode(&dir) & !DIR_MODE, 0, "no bit beyond 0750");
        assert_eq!(mode(&dir.join("tmp")) & !DIR_MODE, 0);
        assert_eq!(
            fs::read_dir(dir.join("tmp")).unwrap().count(),
            0,
            "no temporary file is left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
