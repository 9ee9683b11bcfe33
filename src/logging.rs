//! Log output (SPEC §9). Two guarantees hold whatever `RUST_LOG` asks for:
//!
//! - Below INFO only sesgate's own events are written. lettre writes the whole conversation with
//!   the upstream at DEBUG (the `AUTH PLAIN` blob, every message body); rustls, tokio-rustls and
//!   others log connection internals at DEBUG/TRACE. sesgate's own debug and trace events carry
//!   no credential and no body. The cap is a filter of its own, checked after the user's
//!   `RUST_LOG` filter, so no directive can lift it.
//! - Every field value in the text format is escaped: control characters, DEL and non-ASCII as
//!   `\n`, `\r`, `\t` or `\u{..}`, quotes and backslashes with a backslash, and a value that is
//!   not one plain token is quoted. A client-chosen user name, address or header can therefore
//!   neither start a line nor fake a field. The JSON format escapes by construction (one JSON
//!   object per line).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;

/// Whether an event may be written at all: INFO and above from anyone, DEBUG and TRACE only from
/// sesgate itself (see the module doc).
pub fn wire_safe(metadata: &Metadata<'_>) -> bool {
    if *metadata.level() <= Level::INFO {
        return true;
    }
    let target = metadata.target();
    target == "sesgate" || target.starts_with("sesgate::")
}

/// The subscriber `serve` logs through: `filter` (from `RUST_LOG`) and the dependency cap, then
/// the text (escaped) or JSON format, written to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer: Box<dyn Layer<Layered<EnvFilter, Registry>> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(EscapedFields)
            .with_writer(writer)
            .with_ansi(ansi)
            .with_filter(filter_fn(wire_safe))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .with_ansi(false)
            .with_filter(filter_fn(wire_safe))
            .boxed(),
    };
    // The user's filter is global; the cap is the output layer's own filter, so an event must
    // pass both, in this order.
    Box::new(Registry::default().with(filter).with(layer))
}

/// Writes `text` with every character that is not printable ASCII escaped, and `"` and `\`
/// escaped, so that it can neither end a line nor a quoted value.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    // Runs of printable ASCII other than `"` and `\` (nearly every value) are written whole;
    // only the characters between them go one by one.
    let mut rest = text;
    while !rest.is_empty() {
        let plain = rest
            .bytes()
            .position(|b| !matches!(b, b' '..=b'~') || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        if plain > 0 {
            out.write_str(&rest[..plain])?;
        }
        let Some(c) = rest[plain..].chars().next() else {
            break;
        };
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            other => write!(out, "\\u{{{:x}}}", other as u32)?,
        }
        rest = &rest[plain + c.len_utf8()..];
    }
    Ok(())
}

/// `write_escaped` as it was written first, one character at a time: the reference the faster
/// one is tested against.
#[cfg(test)]
fn write_escaped_by_char(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            ' '..='~' => out.write_char(c)?,
            other => write!(out, "\\u{{{:x}}}", other as u32)?,
        }
    }
    Ok(())
}

/// `text` escaped as `write_escaped` does.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = write_escaped(&mut out, text);
    out
}

/// A value that is one plain token (`127.0.0.1`, `42`, `a@example.com`) is written bare; any
/// other is quoted, so spaces and `=` inside a value cannot fake a `key=value` pair.
fn is_plain_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'='))
}

/// The text format's fields: `message key=value key="quoted value"`, every value escaped.
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
            scratch: String::new(),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
    /// Where a `%x`/`?x` value is rendered before it is escaped: one buffer for every field of
    /// the line, not an allocation per field.
    scratch: String,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str, always_quote: bool) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // tracing-log's metadata fields; the formatter prints the normalized target instead.
        if name.starts_with("log.") {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.writer.write_char(' ')?;
            }
            self.first = false;
            if name == "message" {
                return write_escaped(&mut self.writer, value);
            }
            // Plain writes: `write!` would run the formatting machinery for every field.
            self.writer
                .write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.writer.write_char('=')?;
            if !always_quote && is_plain_token(value) {
                self.writer.write_str(value)
            } else {
                self.writer.write_char('"')?;
                write_escaped(&mut self.writer, value)?;
                self.writer.write_char('"')
            }
        })();
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // String fields are quoted, as tracing's default format does (`decision="allowed"`).
        self.write(field, value, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` and `?x` values both arrive here (numbers and booleans too): render, then
        // escape.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // A `Debug` that fails leaves what it wrote; the line is still written.
        let _ = write!(scratch, "{value:?}");
        self.write(field, &scratch, false);
        self.scratch = scratch;
    }
}

/// `serve`'s log output: each formatted line is appended to a buffer in memory, and a thread
/// writes the buffer to stderr in one `write` `LOG_BATCH_DELAY` (20 ms) after its first line,
/// so a busy gateway pays one system call per batch of lines instead of one per transaction,
/// and no connection task waits on the log's pipe. Only the first line of a batch wakes the
/// thread: a batch costs the process four system calls (the wake-up, the thread's return from
/// its wait, its sleep, the write) however many lines it holds.
/// Past `LOG_MAX_BUFFER` the logging task writes the buffer itself (a line is never dropped).
/// [`flush_batched`] writes out what is buffered (`serve` calls it before the process exits).
#[derive(Clone)]
pub struct BatchedStderr {
    shared: std::sync::Arc<LogBuffer>,
}

struct LogBuffer {
    lines: std::sync::Mutex<Vec<u8>>,
    first_line: std::sync::Condvar,
    /// Held while a batch is taken and written, so batches reach stderr in order.
    out: std::sync::Mutex<Box<dyn std::io::Write + Send>>,
}

static BATCHED: std::sync::OnceLock<BatchedStderr> = std::sync::OnceLock::new();

/// How long the writer thread collects lines after the first one of a batch. 20 ms: nobody
/// reading `journalctl -f` can tell, and at a few thousand transactions a second a batch holds
/// tens of lines (at 1 ms, the batches cost about one system call per relayed message). The
/// lines of the last batch are written when `serve` returns ([`flush_batched`]); a process
/// killed with SIGKILL loses at most this long of log.
const LOG_BATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(20);
/// Buffered bytes past which a logging task writes them out itself.
const LOG_MAX_BUFFER: usize = 4 << 20;

impl BatchedStderr {
    /// The process's batched writer, its thread started on first use.
    pub fn get() -> BatchedStderr {
        BATCHED
            .get_or_init(|| {
                let writer = BatchedStderr::to(Box::new(std::io::stderr()));
                let shared = std::sync::Arc::clone(&writer.shared);
                std::thread::Builder::new()
                    .name("sesgate-log".into())
                    .spawn(move || {
                        loop {
                            shared.wait_for_lines();
                            std::thread::sleep(LOG_BATCH_DELAY);
                            shared.write_out();
                        }
                    })
                    .expect("the log writer thread starts");
                writer
            })
            .clone()
    }

    fn to(out: Box<dyn std::io::Write + Send>) -> BatchedStderr {
        BatchedStderr {
            shared: std::sync::Arc::new(LogBuffer {
                lines: std::sync::Mutex::new(Vec::with_capacity(64 * 1024)),
                first_line: std::sync::Condvar::new(),
                out: std::sync::Mutex::new(out),
            }),
        }
    }
}

impl LogBuffer {
    fn wait_for_lines(&self) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        while lines.is_empty() {
            lines = self
                .first_line
                .wait(lines)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes what is buffered, in order with every other batch.
    fn write_out(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let batch = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
        // The buffer's capacity is reused for the next batch.
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() && lines.capacity() < batch.capacity() {
            let mut batch = batch;
            batch.clear();
            *lines = batch;
        }
    }
}

/// Writes out every line logged so far through [`BatchedStderr`].
pub fn flush_batched() {
    if let Some(writer) = BATCHED.get() {
        writer.shared.write_out();
    }
}

impl std::io::Write for BatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut lines = self.shared.lines.lock().unwrap_or_else(|p| p.into_inner());
        let first = lines.is_empty();
        lines.extend_from_slice(bytes);
        let full = lines.len() >= LOG_MAX_BUFFER;
        drop(lines);
        if full {
            self.shared.write_out();
        } else if first {
            self.shared.first_line.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, directives: &str, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(
            format,
            EnvFilter::new(directives),
            move || writer.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    const FORGED: &str =
        "x\n2026-01-01T00:00:00Z  INFO sesgate::gateway: transaction decision=\"allowed\"";

    #[test]
    fn escapes() {
        assert_eq!(
            escaped("a\r\nb\"c\\d\x1b\x7f\u{e9}\u{202e}"),
            "a\\r\\nb\\\"c\\\\d\\u{1b}\\u{7f}\\u{e9}\\u{202e}"
        );
        assert!(is_plain_token("a@example.com"));
        assert!(!is_plain_token("a b") && !is_plain_token("a=b") && !is_plain_token(""));
    }

    /// The run-at-a-time escaping writes exactly what the character-at-a-time one did.
    #[test]
    fn escaping_by_runs_equals_escaping_by_characters() {
        use proptest::test_runner::{Config, TestRunner};
        let check = |text: &str| {
            let mut by_char = String::new();
            write_escaped_by_char(&mut by_char, text).unwrap();
            assert_eq!(escaped(text), by_char, "{text:?}");
        };
        for text in [
            "",
            "a",
            "\"",
            "\\",
            "a\"b",
            "\r\n",
            "é",
            "aé",
            "éa",
            "\u{202e}x\u{7f}",
            "\t \0~",
        ] {
            check(text);
        }
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&"(\\PC|[\\x00-\\x1f\\x7f\"\\\\ ~]){0,24}", |text| {
                check(&text);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn text_fields_cannot_start_a_line_or_fake_a_field() {
        let log = capture(LogFormat::Text, "info", || {
            tracing::info!(smtp_user = %FORGED, from = "a b=c", client = %"127.0.0.1", size = 3, "authentication failed");
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains(r#"smtp_user="x\n2026-01-01T00:00:00Z  INFO sesgate::gateway: transaction decision=\"allowed\"""#),
            "{log}"
        );
        assert!(log.contains(r#"from="a b=c""#), "{log}");
        assert!(log.contains(" client=127.0.0.1 size=3"), "{log}");
        assert!(log.contains("authentication failed smtp_user="), "{log}");
    }

    /// Everything a terminal, a journal reader or a log shipper may take for a line break
    /// (CR, VT, FF, NEL, U+2028/2029), escape sequences, bidi overrides and the replacement
    /// characters of invalid UTF-8 come out escaped: the text line holds printable ASCII only,
    /// one `\n` at its end. Several `%`/`?` fields of one line (rendered in one reused buffer)
    /// never carry a byte of the field before.
    #[test]
    fn text_lines_hold_printable_ascii_only_and_fields_do_not_bleed() {
        let hostile = format!(
            "a\rb\x0bc\x0cd\u{85}e\u{2028}f\u{2029}g\x1b[2Jh\u{202e}i{}j\u{feff}",
            String::from_utf8_lossy(b"\xff\xfe\xc3")
        );
        let log = capture(LogFormat::Text, "info", || {
            tracing::info!(
                first = %hostile,
                second = %"y",
                third = ?"z\n",
                fourth = %format!("{hostile} decision=allowed"),
                "{hostile}"
            );
        });
        let body = log.strip_suffix('\n').expect("one line");
        assert!(body.bytes().all(|b| matches!(b, b' '..=b'~')), "{log:?}");
        assert!(body.contains(" second=y third="), "{log}");
        assert!(body.contains(r#"third="\"z\\n\"""#), "{log}");
        assert!(
            body.contains(r"\u{2028}") && body.contains(r"\u{fffd}"),
            "{log}"
        );
        assert_eq!(body.matches("decision=").count(), 1, "{log}");
    }

    #[test]
    fn json_is_one_object_per_line() {
        let log = capture(LogFormat::Json, "info", || {
            tracing::info!(smtp_user = %FORGED, "authentication failed");
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        let line: serde_json::Value = serde_json::from_str(log.trim_end()).unwrap();
        assert_eq!(line["smtp_user"], FORGED);
    }

    #[test]
    fn dependencies_never_log_below_info_whatever_the_filter() {
        for directives in [
            "trace",
            "sesgate=debug,lettre=trace,rustls=trace",
            "lettre::transport::smtp=trace,trace",
        ] {
            let log = capture(LogFormat::Text, directives, || {
                tracing::debug!(target: "lettre::transport::smtp::client::async_connection", "Wrote: AUTH PLAIN c2VjcmV0");
                tracing::trace!(target: "rustls::conn", "secret handshake detail");
                tracing::warn!(target: "lettre::transport::smtp::pool", "couldn't create idle connection");
                tracing::debug!("own debug line");
            });
            assert!(
                !log.contains("c2VjcmV0") && !log.contains("secret handshake"),
                "{directives}: {log}"
            );
            assert!(log.contains("couldn't create idle connection"), "{log}");
            assert!(log.contains("own debug line"), "{directives}: {log}");
        }
    }

    #[test]
    fn batched_lines_are_written_in_order_and_whole() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let log = BatchedStderr::to(Box::new(out.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..500 {
                        std::io::Write::write_all(&mut log, format!("t{t} line {n}\n").as_bytes())
                            .unwrap();
                        if n % 100 == 0 {
                            log.shared.write_out();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        log.shared.write_out();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2000, "every line, whole");
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("t{t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..500).collect::<Vec<_>>(), "in order");
        }
    }
}
