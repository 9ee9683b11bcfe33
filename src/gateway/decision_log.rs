//! The decision log (`[log] decisions = PATH`): one JSON line per transaction with everything
//! needed to decide it again (user, principal, resources, the full condition context, time,
//! decision and deciding statements; never the message body), for `sesgate replay`.
//!
//! A transaction never waits for the disk: lines go through a bounded channel to a writer
//! thread, and a line that does not fit (the disk is slow) is dropped and counted. The file is
//! size-bounded: past `max_bytes` it is renamed to `PATH.1` (replacing the previous one) and a
//! new file is started.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::iam::{Context, Value};
use crate::metrics::Metrics;

/// Lines that may wait for the writer; past this, lines are dropped (and counted).
const QUEUE: usize = 4096;

/// One condition key's values as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedKey {
    pub values: Vec<String>,
    /// A multivalued key (`ses:Recipients`), which matters even with one value.
    #[serde(default)]
    pub multi: bool,
}

/// One transaction, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub time: String,
    pub session: String,
    pub user: String,
    pub identified_by: String,
    /// The account the principal belongs to (replay builds the directory with it).
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub principal: String,
    pub action: String,
    /// Empty for a refusal before policy (nothing to decide again).
    #[serde(default)]
    pub resources: Vec<String>,
    /// `None` for a refusal before policy.
    #[serde(default)]
    pub context: Option<std::collections::BTreeMap<String, RecordedKey>>,
    pub decision: String,
    #[serde(default)]
    pub statements: String,
    /// The policy types that took part (`IAM policy`, `permissions boundary`, `resource
    /// policy`); empty for a refusal before policy.
    #[serde(default)]
    pub policy_types: Vec<String>,
    pub enforced: bool,
}

/// The recorded form of a request context.
pub fn record_context(context: &Context) -> std::collections::BTreeMap<String, RecordedKey> {
    context
        .iter()
        .map(|(key, entry)| {
            (
                key.to_owned(),
                RecordedKey {
                    values: entry.values().iter().map(|v| v.text().to_owned()).collect(),
                    multi: entry.is_multi(),
                },
            )
        })
        .collect()
}

/// A recorded context, as the policy engine reads it.
pub fn replay_context(recorded: &std::collections::BTreeMap<String, RecordedKey>) -> Context {
    let mut context = Context::new();
    for (key, entry) in recorded {
        let values: Vec<Value> = entry
            .values
            .iter()
            .map(|v| Value::new(v.as_str()))
            .collect();
        if entry.multi {
            context.set_multi(key, values);
        } else if let Some(value) = values.into_iter().next() {
            context.set(key, value);
        }
    }
    context
}

/// The sending side of the log; cheap to call on every transaction.
pub struct DecisionLog {
    lines: SyncSender<String>,
    metrics: Arc<Metrics>,
}

impl DecisionLog {
    /// Opens (appends to) `path` and starts its writer thread.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<DecisionLog> {
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        let (lines, queue) = sync_channel(QUEUE);
        let writer = Writer {
            path: path.to_owned(),
            file,
            written,
            max_bytes: max_bytes.max(4096),
        };
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer.run(queue))?;
        Ok(DecisionLog { lines, metrics })
    }

    /// Queues one record; never blocks. A full queue drops it and counts the drop.
    pub fn record(&self, record: &Record) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        line.push('\n');
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.decision_log_dropped.inc();
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
}

impl Writer {
    /// Writes lines until every sender is gone; flushes whenever the queue runs dry.
    fn run(mut self, queue: Receiver<String>) {
        while let Ok(line) = queue.recv() {
            let mut pending = line.into_bytes();
            while pending.len() < 1 << 20
                && let Ok(more) = queue.try_recv()
            {
                pending.extend_from_slice(more.as_bytes());
            }
            self.write(&pending);
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.written > 0 && self.written + bytes.len() as u64 > self.max_bytes {
            self.rotate();
        }
        match self.file.write_all(bytes) {
            Ok(()) => self.written += bytes.len() as u64,
            Err(e) => warn!(path = %self.path.display(), error = %e, "decision log write failed"),
        }
    }

    /// `PATH` becomes `PATH.1` (the previous `PATH.1` goes) and a new `PATH` starts.
    fn rotate(&mut self) {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        if let Err(e) = std::fs::rename(&self.path, &old) {
            warn!(path = %self.path.display(), error = %e, "decision log rotation failed");
        }
        match open_append(&self.path) {
            Ok(file) => {
                self.file = file;
                self.written = 0;
            }
            Err(e) => warn!(path = %self.path.display(), error = %e, "decision log reopen failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str) -> Record {
        let mut context = Context::new();
        context.set("ses:FromAddress", Value::new("a@example.com"));
        context.set_multi("ses:Recipients", vec![Value::new("b@example.com")]);
        Record {
            time: "2026-11-28T00:00:00Z".into(),
            session: "s".into(),
            user: user.into(),
            identified_by: "network".into(),
            account: "123456789012".into(),
            principal: String::new(),
            action: "ses:SendRawEmail".into(),
            resources: vec!["arn:aws:ses:us-east-1:123456789012:identity/example.com".into()],
            context: Some(record_context(&context)),
            decision: "allowed".into(),
            statements: String::new(),
            policy_types: vec!["IAM policy".into()],
            enforced: true,
        }
    }

    #[test]
    fn a_recorded_context_replays_as_the_same_context() {
        let recorded = record("u").context.unwrap();
        let replayed = replay_context(&recorded);
        assert_eq!(record_context(&replayed), recorded);
        assert!(replayed.get("ses:recipients").unwrap().is_multi());
        assert!(!replayed.get("ses:FromAddress").unwrap().is_multi());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (lines, queue) = sync_channel(1);
        let metrics = Arc::new(Metrics::default());
        let log = DecisionLog {
            lines,
            metrics: Arc::clone(&metrics),
        };
        log.record(&record("first"));
        log.record(&record("second"));
        log.record(&record("third"));
        assert_eq!(metrics.decision_log_dropped.get(), 2);
        let kept: Record = serde_json::from_str(queue.try_recv().unwrap().trim_end()).unwrap();
        assert_eq!(kept.user, "first");
    }

    #[test]
    fn the_file_rotates_past_its_bound_keeping_one_old_file() {
        let dir = std::env::temp_dir().join(format!("sesgate-dlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("decisions.jsonl");
        let mut writer = Writer {
            path: path.clone(),
            file: open_append(&path).unwrap(),
            written: 0,
            max_bytes: 100,
        };
        for n in 0..3 {
            writer.write(format!("{n}{}\n", "x".repeat(58)).as_bytes());
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.join("decisions.jsonl.1")).unwrap();
        assert!(current.starts_with('2') && current.lines().count() == 1);
        assert!(old.starts_with('1') && old.lines().count() == 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
