//! The DATA reader (`sesgate::smtp::data::DataReader`) against a reference model that reads the
//! whole stream at once, written straight from SPEC §6, fed in arbitrary chunkings.
//!
//! Input: `[max_line, max_bytes/4, chunk seed, stream...]`. Checked: no panic; the reader finds
//! the end exactly where the model does (consumed byte count included) and then returns the same
//! message or the same error; without an end it never claims one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesgate::smtp::data::{DataError, DataReader};

/// The end of data: CR LF `.` CR LF, where the CR LF that ended the DATA command counts as the
/// first. Returns (message bytes before the end, bytes consumed), in `stream` coordinates.
fn model_end(stream: &[u8]) -> Option<(usize, usize)> {
    let prefixed = [b"\r\n".as_slice(), stream].concat();
    let at = prefixed.windows(5).position(|w| w == b"\r\n.\r\n")?;
    // prefixed[at..at + 5] is the terminator; stream = prefixed[2..].
    Some((at, at + 3))
}

/// The stored message for the bytes before the end: lines split at LF; first error wins in line
/// order (a line too long, terminator included, before a bare CR in it); a bare-LF line ending is
/// stored as CR LF; one leading dot is removed; the stored size may not exceed `max_bytes`.
fn model_message(body: &[u8], max_bytes: usize, max_line: usize) -> Result<Vec<u8>, DataError> {
    let mut message = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\n"), "the body ends with a line end");
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap();
        if line.len() > max_line {
            return Err(DataError::LineTooLong);
        }
        if content.contains(&b'\r') {
            return Err(DataError::BareCr);
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        message.extend_from_slice(content);
        message.extend_from_slice(b"\r\n");
        if message.len() > max_bytes {
            return Err(DataError::TooLarge);
        }
    }
    Ok(message)
}

fuzz_target!(|input: &[u8]| {
    let [max_line, max_quarter_kb, seed, stream @ ..] = input else {
        return;
    };
    // The terminator line `.\r\n` is 3 bytes: a line limit below that can never end a message
    // (config refuses anything under 80).
    let max_line = 3 + *max_line as usize;
    let max_bytes = *max_quarter_kb as usize * 4;

    let mut reader = DataReader::new(max_bytes, max_line);
    let mut state = u32::from(*seed) | 0x9e37_7900;
    let mut offset = 0;
    let mut consumed = None;
    while offset < stream.len() {
        // xorshift: chunk sizes 1..=32, occasionally 0 (an empty read must be harmless).
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = (state % 33) as usize;
        let end = (offset + size).min(stream.len());
        let chunk = &stream[offset..end];
        if let Some(n) = reader.ingest(chunk) {
            assert!(n <= chunk.len(), "consumed more than was given");
            assert!(n > 0, "an end needs at least one byte of this chunk");
            consumed = Some(offset + n);
            break;
        }
        offset = end;
    }

    match model_end(stream) {
        None => assert_eq!(
            consumed, None,
            "the reader found an end the model does not see"
        ),
        Some((body_len, model_consumed)) => {
            assert_eq!(consumed, Some(model_consumed), "end of data differs");
            let expected = model_message(&stream[..body_len], max_bytes, max_line);
            let got = reader.finish();
            assert_eq!(
                got, expected,
                "message differs (max_bytes {max_bytes}, max_line {max_line})"
            );
        }
    }
});
