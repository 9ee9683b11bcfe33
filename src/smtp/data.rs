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
#[derive(Debug)]
pub struct DataReader {
    max_bytes: usize,
    max_line: usize,
    message: Vec<u8>,
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

    /// Handles the complete line in `self.line`; returns true at the end of data.
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
}
