//! The DATA phase as a state machine fed raw bytes: framing, dot-unstuffing, normalisation and
//! limits, with no I/O.
//!
//! Rules (SPEC §6), chosen so that nothing can be smuggled past the upstream:
//! - the message ends only at the exact bytes CR LF `.` CR LF (the CR LF that ended the DATA
//!   command counts as the first); `\n.\n`, `\r\n.\n` and `\n.\r\n` are not ends;
//! - a line ending in a bare LF is stored as if it ended in CR LF (Postfix's "normalize");
//! - a CR anywhere but before LF (a bare CR) fails the message;
//! - a leading dot is removed from every line (RFC 5321 §4.5.2);
//! - the size limit counts the stored bytes and is enforced while reading: past it nothing more
//!   is kept, and the rest is only read to find the end;
//! - a line longer than the line limit (terminator included) fails the message.
//!
//! smtp-proto's `DataReceiver` is not used here: it frames correctly (with a priming
//! work-around) but passes bare CR and bare LF through untouched, and those are exactly the bytes
//! this reader must judge.

/// Why a message was refused after its end was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    TooLarge,
    BareCr,
    LineTooLong,
}

/// Reads one message.
///
/// A line that arrives whole in one `ingest` is judged where it lies, in the caller's buffer,
/// and its content is copied once, into the message. Only a line split across two reads is
/// gathered in `line` first (bounded by the line limit).
#[derive(Debug)]
pub struct DataReader {
    max_bytes: usize,
    max_line: usize,
    message: Vec<u8>,
    /// The start of a line whose end has not arrived yet (at most `max_line` bytes).
    line: Vec<u8>,
    line_overflow: bool,
    previous_ended_crlf: bool,
    error: Option<DataError>,
}

impl DataReader {
    /// `max_bytes`: the largest message kept; `max_line`: the longest line, CR LF included.
    pub fn new(max_bytes: usize, max_line: usize) -> Self {
        DataReader {
            max_bytes,
            max_line,
            message: Vec::new(),
            line: Vec::new(),
            line_overflow: false,
            previous_ended_crlf: true,
            error: None,
        }
    }

    /// Feeds bytes. Returns how many were consumed when the end of data is among them (what
    /// follows belongs to the next command), or `None` when all were consumed and more is needed.
    pub fn ingest(&mut self, bytes: &[u8]) -> Option<usize> {
        self.reserve_for(bytes.len());
        let mut at = 0;
        // Plain lines already judged but not yet copied: `bytes[run..at]`. A plain line (CR LF
        // ended, no other CR, no leading dot, within both limits, no error yet) is stored
        // exactly as it arrived, so consecutive ones are copied into the message together,
        // before anything else reads or changes it.
        let mut run = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            if self.line.is_empty() && !self.line_overflow {
                // The common case, a line that arrives whole: one search for its first CR or
                // LF. A CR LF or a LF there ends a line with no CR inside it, judged in place.
                match memchr::memchr2(b'\r', b'\n', rest) {
                    Some(end)
                        if rest[end] == b'\r'
                            && rest.get(end + 1) == Some(&b'\n')
                            && rest[0] != b'.'
                            && end + 2 <= self.max_line
                            && self.error.is_none()
                            && self.message.len() + (at - run) + end + 2 <= self.max_bytes =>
                    {
                        // What `end_line` would do with it: not the end (no dot), no error,
                        // the line appended unchanged.
                        self.previous_ended_crlf = true;
                        at += end + 2;
                        continue;
                    }
                    Some(end) if rest[end] == b'\n' => {
                        self.message.extend_from_slice(&bytes[run..at]);
                        at += end + 1;
                        run = at;
                        if self.end_line(&rest[..=end], end + 1 > self.max_line, false) {
                            return Some(at);
                        }
                        continue;
                    }
                    Some(end) if rest.get(end + 1) == Some(&b'\n') => {
                        self.message.extend_from_slice(&bytes[run..at]);
                        at += end + 2;
                        run = at;
                        if self.end_line(&rest[..end + 2], end + 2 > self.max_line, false) {
                            return Some(at);
                        }
                        continue;
                    }
                    // A bare CR, or a CR that may be the first half of a CR LF split across
                    // reads: the general path below.
                    Some(_) => {}
                    None => {
                        self.message.extend_from_slice(&bytes[run..at]);
                        self.push_partial(rest);
                        return None;
                    }
                }
            }
            self.message.extend_from_slice(&bytes[run..at]);
            let Some(newline) = memchr::memchr(b'\n', rest) else {
                self.push_partial(rest);
                return None;
            };
            let whole = &rest[..=newline];
            at += newline + 1;
            run = at;
            let end = if self.line.is_empty() && !self.line_overflow {
                // Whole, but with a CR that is not its terminator's: judged in place.
                self.end_line(whole, whole.len() > self.max_line, true)
            } else {
                // The end of a line that straddles two reads.
                self.push_partial(whole);
                let line = std::mem::take(&mut self.line);
                let overflow = std::mem::replace(&mut self.line_overflow, false);
                let end = self.end_line(&line, overflow, true);
                self.line = line;
                self.line.clear();
                end
            };
            if end {
                return Some(at);
            }
        }
        self.message.extend_from_slice(&bytes[run..at]);
        None
    }

    /// The message, once `ingest` has found the end.
    pub fn finish(self) -> Result<Vec<u8>, DataError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.message),
        }
    }

    /// Bytes kept so far.
    pub fn len(&self) -> usize {
        self.message.len()
    }

    /// True before any byte is kept.
    pub fn is_empty(&self) -> bool {
        self.message.is_empty()
    }

    /// Makes room in the message for what `arrived` bytes can add, so that it grows by what
    /// was read rather than line by line. Only bytes that actually arrived count (never a
    /// declared SIZE), capped by the size limit: a client's memory stays bounded by what it
    /// sent. Growth doubles, as `Vec`'s own does, but never past the size limit. (Normalising
    /// bare LFs can add a byte per line; `Vec` grows for those as usual.)
    fn reserve_for(&mut self, arrived: usize) {
        if self.error.is_some() {
            return;
        }
        let length = self.message.len();
        let needed = arrived.min(self.max_bytes.saturating_sub(length));
        if self.message.capacity() - length >= needed {
            return;
        }
        let doubled = self
            .message
            .capacity()
            .saturating_mul(2)
            .min(self.max_bytes);
        let target = doubled.max(length + needed);
        self.message.reserve_exact(target - length);
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        // Room for the longest allowed line, terminator included; beyond it the line is only
        // counted as too long, never buffered.
        let room = self.max_line.saturating_sub(self.line.len());
        if bytes.len() > room {
            self.line_overflow = true;
            // Keep only the last bytes of the line, enough to see how it ends.
            self.line
                .extend_from_slice(&bytes[bytes.len().saturating_sub(3)..]);
            let excess = self.line.len().saturating_sub(3);
            self.line.drain(..excess);
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// Judges one complete line (its terminator included; `overflow`: it was longer than the
    /// line limit, and `line` may then be only its last bytes; `may_hold_cr`: false when the
    /// caller has seen that no CR precedes the terminator); returns true at the end of data.
    fn end_line(&mut self, line: &[u8], overflow: bool, may_hold_cr: bool) -> bool {
        let ends_crlf = line.ends_with(b"\r\n");
        let content = &line[..line.len() - if ends_crlf { 2 } else { 1 }];
        if !overflow && self.previous_ended_crlf && ends_crlf && content == b"." {
            return true;
        }
        self.previous_ended_crlf = ends_crlf;
        if self.error.is_none() {
            if overflow {
                self.error = Some(DataError::LineTooLong);
            } else if may_hold_cr && memchr::memchr(b'\r', content).is_some() {
                self.error = Some(DataError::BareCr);
            }
        }
        if self.error.is_none() {
            let content = content.strip_prefix(b".").unwrap_or(content);
            if self.message.len() + content.len() + 2 > self.max_bytes {
                self.error = Some(DataError::TooLarge);
                self.message = Vec::new();
            } else {
                self.message.extend_from_slice(content);
                self.message.extend_from_slice(b"\r\n");
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of every size and checks each gives the same result.
    fn read(input: &[u8]) -> (Option<usize>, Result<Vec<u8>, DataError>) {
        let mut results = Vec::new();
        for chunk in 1..=input.len().max(1) {
            let mut reader = DataReader::new(1000, 100);
            let mut consumed = None;
            let mut offset = 0;
            for piece in input.chunks(chunk) {
                if let Some(n) = reader.ingest(piece) {
                    consumed = Some(offset + n);
                    break;
                }
                offset += piece.len();
            }
            results.push((consumed, reader.finish()));
        }
        let first = results[0].clone();
        assert!(
            results.iter().all(|r| *r == first),
            "chunking changed the result for {input:?}"
        );
        first
    }

    #[test]
    fn framing_table() {
        /// (input, bytes consumed, message or error)
        type Case = (
            &'static [u8],
            Option<usize>,
            Result<&'static [u8], DataError>,
        );
        let cases: &[Case] = &[
            (b".\r\n", Some(3), Ok(b"")),
            (
                b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
                Some(23),
                Ok(b"Subject: x\r\n\r\nbody\r\n"),
            ),
            (b"..x\r\n.\r\n", Some(8), Ok(b".x\r\n")),
            (b"a\r\n..\r\n.\r\n", Some(10), Ok(b"a\r\n.\r\n")),
            (b"a\nb\r\n.\r\n", Some(8), Ok(b"a\r\nb\r\n")),
            // The end needs a real CR LF before the dot (Postfix's "normalize").
            (b"a\nb\n.\r\n", None, Ok(b"a\r\nb\r\n\r\n")),
            // Not ends: the smuggling forms.
            (b"a\r\n.\nb\r\n.\r\n", Some(11), Ok(b"a\r\n\r\nb\r\n")),
            (b"a\n.\r\nb\r\n.\r\n", Some(11), Ok(b"a\r\n\r\nb\r\n")),
            (b"a\r\n.\n", None, Ok(b"a\r\n\r\n")),
            // Bare CR fails the message, after its end is found.
            (b"a\rb\r\n.\r\n", Some(8), Err(DataError::BareCr)),
            (b"a\r\r\n.\r\n", Some(7), Err(DataError::BareCr)),
            (b"a\r\n.\r\r\n.\r\n", Some(10), Err(DataError::BareCr)),
        ];
        for (input, consumed, message) in cases {
            let (got_consumed, got_message) = read(input);
            assert_eq!(
                got_consumed,
                *consumed,
                "consumed for {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                got_message.as_deref().map_err(|e| *e),
                *message,
                "message for {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn size_limit_is_enforced_while_streaming() {
        let mut reader = DataReader::new(10, 100);
        assert_eq!(reader.ingest(b"0123456789\r\n"), None);
        assert!(reader.is_empty(), "nothing is kept past the limit");
        assert_eq!(reader.ingest(b"more\r\n.\r\n"), Some(9));
        assert_eq!(reader.finish(), Err(DataError::TooLarge));
        let mut exact = DataReader::new(10, 100);
        assert_eq!(exact.ingest(b"01234567\r\n.\r\n"), Some(13));
        assert_eq!(exact.finish().unwrap().len(), 10);
    }

    #[test]
    fn line_limit_counts_the_terminator() {
        let ok = [vec![b'x'; 98], b"\r\n.\r\n".to_vec()].concat();
        assert!(read(&ok).1.is_ok());
        let long = [vec![b'x'; 99], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(read(&long).1, Err(DataError::LineTooLong));
        // A long line is never buffered whole, and the end is still found after it.
        let mut reader = DataReader::new(1 << 20, 100);
        assert_eq!(reader.ingest(&vec![b'y'; 100_000]), None);
        assert!(reader.line.len() <= 100);
        assert_eq!(reader.ingest(b"\r\n.\r\n"), Some(5));
    }

    /// The reader as it was before lines were judged in place (every line copied into `line`
    /// first): the new one must agree with it on every input and every way of splitting it.
    mod reference {
        use super::DataError;

        pub struct Reader {
            max_bytes: usize,
            max_line: usize,
            message: Vec<u8>,
            line: Vec<u8>,
            line_overflow: bool,
            previous_ended_crlf: bool,
            error: Option<DataError>,
        }

        impl Reader {
            pub fn new(max_bytes: usize, max_line: usize) -> Self {
                Reader {
                    max_bytes,
                    max_line,
                    message: Vec::new(),
                    line: Vec::new(),
                    line_overflow: false,
                    previous_ended_crlf: true,
                    error: None,
                }
            }

            pub fn ingest(&mut self, bytes: &[u8]) -> Option<usize> {
                let mut at = 0;
                while at < bytes.len() {
                    let rest = &bytes[at..];
                    let Some(newline) = memchr::memchr(b'\n', rest) else {
                        self.push_partial(rest);
                        return None;
                    };
                    self.push_partial(&rest[..=newline]);
                    at += newline + 1;
                    if self.end_line() {
                        return Some(at);
                    }
                }
                None
            }

            pub fn finish(self) -> Result<Vec<u8>, DataError> {
                match self.error {
                    Some(error) => Err(error),
                    None => Ok(self.message),
                }
            }

            fn push_partial(&mut self, bytes: &[u8]) {
                let room = self.max_line.saturating_sub(self.line.len());
                if bytes.len() > room {
                    self.line_overflow = true;
                    self.line
                        .extend_from_slice(&bytes[bytes.len().saturating_sub(3)..]);
                    let excess = self.line.len().saturating_sub(3);
                    self.line.drain(..excess);
                } else {
                    self.line.extend_from_slice(bytes);
                }
            }

            fn end_line(&mut self) -> bool {
                let line = std::mem::take(&mut self.line);
                let overflow = std::mem::replace(&mut self.line_overflow, false);
                let ends_crlf = line.ends_with(b"\r\n");
                let content = &line[..line.len() - if ends_crlf { 2 } else { 1 }];
                if !overflow && self.previous_ended_crlf && ends_crlf && content == b"." {
                    return true;
                }
                self.previous_ended_crlf = ends_crlf;
                if self.error.is_none() {
                    if overflow {
                        self.error = Some(DataError::LineTooLong);
                    } else if content.contains(&b'\r') {
                        self.error = Some(DataError::BareCr);
                    }
                }
                let content = content.strip_prefix(b".").unwrap_or(content);
                if self.error.is_none() {
                    if self.message.len() + content.len() + 2 > self.max_bytes {
                        self.error = Some(DataError::TooLarge);
                        self.message = Vec::new();
                    } else {
                        self.message.extend_from_slice(content);
                        self.message.extend_from_slice(b"\r\n");
                    }
                }
                self.line = line;
                self.line.clear();
                false
            }
        }
    }

    type Outcome = (Option<usize>, Result<Vec<u8>, DataError>);

    /// Feeds `pieces` in order as the connection does (stopping at the end of data) and
    /// returns the bytes consumed in all and the result.
    fn feed<'a>(
        reader: &mut DataReader,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<usize> {
        let mut offset = 0;
        for piece in pieces {
            if let Some(n) = reader.ingest(piece) {
                return Some(offset + n);
            }
            offset += piece.len();
        }
        None
    }

    fn whole(input: &[u8], max_bytes: usize, max_line: usize) -> Outcome {
        let mut reader = DataReader::new(max_bytes, max_line);
        let consumed = feed(&mut reader, [input]);
        (consumed, reader.finish())
    }

    fn old_whole(input: &[u8], max_bytes: usize, max_line: usize) -> Outcome {
        let mut reader = reference::Reader::new(max_bytes, max_line);
        let consumed = reader.ingest(input);
        (consumed, reader.finish())
    }

    /// Checks `input` split at every byte boundary, in 1-byte reads and in three pieces
    /// against one whole read, and the whole read against the old reader.
    fn check_every_split(input: &[u8], max_bytes: usize, max_line: usize) {
        let expected = whole(input, max_bytes, max_line);
        assert_eq!(
            expected,
            old_whole(input, max_bytes, max_line),
            "differs from the old reader for {input:?} (max_bytes {max_bytes}, max_line {max_line})"
        );
        for split in 0..=input.len() {
            let mut reader = DataReader::new(max_bytes, max_line);
            let consumed = feed(&mut reader, [&input[..split], &input[split..]]);
            assert_eq!(
                (consumed, reader.finish()),
                expected,
                "split at {split} changed the outcome for {input:?}"
            );
        }
        let mut reader = DataReader::new(max_bytes, max_line);
        let consumed = feed(&mut reader, input.chunks(1));
        assert_eq!(
            (consumed, reader.finish()),
            expected,
            "1-byte reads changed the outcome for {input:?}"
        );
        for first in 0..=input.len() {
            for second in first..=input.len().min(first + 3) {
                let mut reader = DataReader::new(max_bytes, max_line);
                let pieces = [&input[..first], &input[first..second], &input[second..]];
                let consumed = feed(&mut reader, pieces);
                assert_eq!(
                    (consumed, reader.finish()),
                    expected,
                    "pieces split at {first} and {second} changed the outcome for {input:?}"
                );
            }
        }
    }

    /// Every input of up to 6 bytes over `.`, CR, LF, NUL and `a`, after the CR LF that ended
    /// DATA (so `.` CR LF at the start is an end), with a limits small enough to be hit: the
    /// smuggling forms (`\n.\n`, `\r.\r`, `\n.\r\n`), bare CR and LF, NUL, long lines and
    /// large messages all occur.
    #[test]
    fn every_short_input_and_every_split_agree_with_one_read_and_the_old_reader() {
        const ALPHABET: &[u8] = b".\r\n\0a";
        let mut input = Vec::new();
        for length in 0..=6u32 {
            for mut n in 0..ALPHABET.len().pow(length) {
                input.clear();
                for _ in 0..length {
                    input.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                // Followed by a real end, so most inputs are complete messages.
                for tail in [&b""[..], b"\r\n.\r\nQUIT\r\n"] {
                    let full = [&input[..], tail].concat();
                    for (max_bytes, max_line) in [(1000, 1000), (6, 4), (3, 3)] {
                        check_every_split(&full, max_bytes, max_line);
                    }
                }
            }
        }
    }

    /// NUL bytes are content like any other here (the strict header read judges them).
    #[test]
    fn nul_is_kept_as_content() {
        assert_eq!(
            whole(b"a\0b\r\n.\r\n", 1000, 100),
            (Some(8), Ok(b"a\0b\r\n".to_vec()))
        );
    }

    /// Larger random messages (long lines, dots, bare CR and LF, ends in odd places), split at
    /// random places, against one read and the old reader.
    #[test]
    fn random_messages_split_anywhere_agree_with_one_read_and_the_old_reader() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let piece = prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b".".to_vec()),
            Just(b"\r\n.\r\n".to_vec()),
            Just(b"\r\n..\r\n".to_vec()),
            Just(b"\n.\n".to_vec()),
            Just(b"\r.\r".to_vec()),
            Just(b"\n.\r\n".to_vec()),
            Just(b"\0".to_vec()),
            proptest::collection::vec(b'a'..=b'z', 0..40),
            proptest::collection::vec(Just(b'x'), 60..200),
        ];
        let strategy = (
            proptest::collection::vec(piece, 0..40),
            proptest::collection::vec(0usize..2000, 0..6),
            prop_oneof![Just(1usize << 20), Just(300usize), Just(50usize)],
            prop_oneof![Just(1000usize), Just(100usize), Just(10usize)],
        );
        let mut runner = TestRunner::new(Config {
            cases: 400,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, |(pieces, cuts, max_bytes, max_line)| {
                let input = pieces.concat();
                let expected = whole(&input, max_bytes, max_line);
                prop_assert_eq!(&expected, &old_whole(&input, max_bytes, max_line));
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
                cuts.sort_unstable();
                let mut pieces = Vec::new();
                let mut from = 0;
                for cut in cuts.into_iter().chain([input.len()]) {
                    pieces.push(&input[from..cut]);
                    from = cut;
                }
                let mut reader = DataReader::new(max_bytes, max_line);
                let consumed = feed(&mut reader, pieces);
                prop_assert_eq!(&(consumed, reader.finish()), &expected);
                let mut reader = DataReader::new(max_bytes, max_line);
                let consumed = feed(&mut reader, input.chunks(1));
                prop_assert_eq!(&(consumed, reader.finish()), &expected);
                Ok(())
            })
            .unwrap();
    }

    /// The message grows with what arrived, never with a limit or a declared size: a client
    /// that sent little holds little, and the capacity never passes the size limit by
    /// reservation.
    #[test]
    fn memory_follows_what_arrived() {
        let mut reader = DataReader::new(50 << 20, 1000);
        assert_eq!(reader.ingest(b"Subject: x\r\n"), None);
        assert!(
            reader.message.capacity() < 1024,
            "{}",
            reader.message.capacity()
        );
        let line = [vec![b'y'; 998], b"\r\n".to_vec()].concat();
        let mut sent = 12;
        for _ in 0..100 {
            reader.ingest(&line);
            sent += line.len();
            assert!(
                reader.message.capacity() <= 2 * sent,
                "{} for {sent}",
                reader.message.capacity()
            );
        }
        let mut capped = DataReader::new(5000, 1000);
        let input = line.repeat(4);
        capped.ingest(&input);
        capped.ingest(&line[..500]);
        assert!(
            capped.message.capacity() <= 5000,
            "{}",
            capped.message.capacity()
        );
        assert_eq!(capped.ingest(&line[500..]), None);
        assert_eq!(capped.ingest(b".\r\n"), Some(3));
        assert_eq!(capped.finish().unwrap().len(), 5000);
    }

    /// A line that arrives whole is not copied into the side buffer; one split across reads is,
    /// and the side buffer is emptied once the line is judged.
    #[test]
    fn only_a_split_line_goes_through_the_side_buffer() {
        let mut reader = DataReader::new(1 << 20, 1000);
        assert_eq!(reader.ingest(b"whole line\r\nsplit "), None);
        assert_eq!(reader.line, b"split ");
        assert_eq!(reader.ingest(b"line\r\n.\r"), None);
        assert_eq!(reader.line, b".\r");
        assert_eq!(reader.ingest(b"\n"), Some(1));
        assert_eq!(reader.finish().unwrap(), b"whole line\r\nsplit line\r\n");
    }

    /// A hostile client's reads: a line far past the limit, dripped a byte at a time or sent in
    /// large reads, holds no more than the line limit in the side buffer and no more than one
    /// read in the message's reservation; bare CRs by the thousand in one line, or one per
    /// line, are judged in one pass each (refused, nothing kept); the message stops growing
    /// at the first error.
    #[test]
    fn hostile_reads_keep_memory_and_work_bounded() {
        let mut dripped = DataReader::new(40 << 20, 1000);
        for _ in 0..200_000 {
            assert_eq!(dripped.ingest(b"x"), None);
        }
        // The side buffer grows as a `Vec` does, so at most twice the line limit.
        assert!(
            dripped.line.capacity() <= 2000,
            "{}",
            dripped.line.capacity()
        );
        assert!(
            dripped.message.capacity() <= 64,
            "{}",
            dripped.message.capacity()
        );
        assert_eq!(dripped.ingest(b"\r"), None);
        assert_eq!(dripped.ingest(b"\n"), None);
        assert_eq!(dripped.ingest(b"."), None);
        assert_eq!(dripped.ingest(b"\r"), None);
        assert_eq!(dripped.ingest(b"\n"), Some(1));
        assert_eq!(dripped.finish(), Err(DataError::LineTooLong));

        let read = vec![b'y'; 64 * 1024];
        let mut large = DataReader::new(40 << 20, 1000);
        for _ in 0..64 {
            assert_eq!(large.ingest(&read), None);
        }
        assert!(large.line.len() <= 1000);
        assert!(
            large.message.capacity() <= 64 * 1024,
            "{}",
            large.message.capacity()
        );
        assert_eq!(large.ingest(b"\r\nafter\r\n.\r\n"), Some(12));
        assert_eq!(large.finish(), Err(DataError::LineTooLong));

        let mut crs = b"a".repeat(10).to_vec();
        crs.extend(std::iter::repeat_n(b'\r', 500_000));
        crs.extend_from_slice(b"\r\n");
        crs.extend(b"b\rc\r\n".repeat(100_000));
        crs.extend_from_slice(b"ok\r\n.\r\n");
        let mut reader = DataReader::new(40 << 20, 1 << 20);
        let started = std::time::Instant::now();
        assert_eq!(reader.ingest(&crs), Some(crs.len()));
        assert!(reader.message.is_empty(), "nothing kept after the error");
        assert_eq!(reader.finish(), Err(DataError::BareCr));
        // Linear: well under a second even unoptimised (a quadratic scan would take minutes).
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        // At the size limit exactly in one read of many plain lines, then one byte more.
        let line = b"0123456789abcd\r\n";
        let mut exact = DataReader::new(line.len() * 100, 1000);
        assert_eq!(exact.ingest(&line.repeat(100)), None);
        assert!(exact.message.capacity() <= line.len() * 100);
        assert_eq!(exact.ingest(b".\r\n"), Some(3));
        assert_eq!(exact.finish().unwrap().len(), line.len() * 100);
        let mut over = DataReader::new(line.len() * 100, 1000);
        assert_eq!(
            over.ingest(&[&line.repeat(100)[..], b"z\r\n"].concat()),
            None
        );
        assert!(over.message.is_empty(), "freed at the limit");
        assert_eq!(over.ingest(b".\r\n"), Some(3));
        assert_eq!(over.finish(), Err(DataError::TooLarge));
    }
}
