//! sesgate's own strict reader of a message's header section (SPEC §3). Everything the decision
//! reads from the message comes through here, once, so that what is evaluated is what every
//! strict RFC 5322 reader (the upstream MTA, a mail client) will read from the relayed bytes.
//!
//! The rules: the header section runs up to the first empty line (or the end of a message that
//! has no body). Every line in it ends with CRLF and is either a field `name:value`, whose name
//! is one or more printable ASCII characters other than `:` (so no space, tab or control), or a
//! continuation line (starting with space or tab) of the field before it. The first line is
//! never a continuation, no line holds a NUL, a bare CR or a bare LF, and a continuation line is
//! never blank (some readers end the header section there, others do not). Anything else is
//! refused, never read around. 8-bit bytes are allowed in values here (8BITMIME clients send raw
//! 8-bit Subjects); the fields sesgate reads refuse them (`request.rs`).
//!
//! Cost: one pass over the header section, bounded by `Limits`; one small struct per field
//! pointing into the message, no copies.

/// Bounds on the header section (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole header section, including its ending empty line.
    pub max_header_bytes: usize,
    pub max_header_fields: usize,
    /// One field with its continuation lines (Postfix's `header_size_limit`).
    pub max_header_field_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 1024 * 1024,
            max_header_fields: 10_000,
            max_header_field_bytes: 100 * 1024,
        }
    }
}

/// One header field as it stands in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, as sent (compare case-insensitively).
    pub name: &'a [u8],
    /// Everything after the colon up to the field's final CRLF, folding CRLFs included.
    pub raw_value: &'a [u8],
}

impl<'a> Field<'a> {
    /// The name as text (always printable ASCII).
    pub fn name_str(&self) -> &'a str {
        std::str::from_utf8(self.name).unwrap_or_default()
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded (RFC 5322 §2.2.3: each CRLF before a space or tab removed) and
    /// trimmed of surrounding spaces and tabs.
    pub fn unfolded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw_value.len());
        for piece in self.raw_value.split(|&b| b == b'\n') {
            out.extend_from_slice(piece.strip_suffix(b"\r").unwrap_or(piece));
        }
        let start = out
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(out.len());
        let end = out
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(start, |i| i + 1);
        out.truncate(end);
        out.drain(..start);
        out
    }
}

/// A well-formed header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    pub fields: Vec<Field<'a>>,
    /// Where the body starts (after the empty line), or the message length when it has none.
    pub body_offset: usize,
}

impl<'a> Section<'a> {
    /// Every field named `name` (case-insensitive), in order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Field<'a>> + 's {
        self.fields.iter().filter(move |f| f.is(name))
    }
}

/// Why a header section is refused; the text goes into `554 5.6.0 Transaction failed: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// Reads the header section of `message` (line ends already CRLF), strictly.
pub fn read<'a>(message: &'a [u8], limits: &Limits) -> Result<Section<'a>, Malformed> {
    let refuse = |why: String| Err(Malformed(why));
    // Room for a typical message's fields up front (a field is 32 bytes): no regrowth below 32.
    let mut fields: Vec<Field<'a>> = Vec::with_capacity(limits.max_header_fields.min(32));
    // The field being read: (start of its name, end of its name, start and end of its value).
    let mut current: Option<(usize, usize, usize, usize)> = None;
    let mut at = 0;
    // Never look past the size limit, so a huge header-less message costs nothing extra.
    let window = &message[..message.len().min(limits.max_header_bytes)];
    let body_offset = loop {
        if at == message.len() {
            // A message with no body: the header section is the whole message.
            break at;
        }
        // The line's end and any NUL in it, in one search: NUL stops the search once, after
        // which only CR and LF are looked for (so many NULs cost no more than one).
        let mut nul = false;
        let mut search = at;
        let end = loop {
            let found = if nul {
                memchr::memchr2(b'\r', b'\n', &window[search..])
            } else {
                memchr::memchr3(b'\r', b'\n', 0, &window[search..])
            };
            let Some(found) = found else {
                if window.len() < message.len() {
                    return refuse(too_large(limits));
                }
                return refuse("the last header line does not end with CRLF".into());
            };
            if window[search + found] == 0 {
                nul = true;
                search += found + 1;
            } else {
                break search + found;
            }
        };
        if message[end] != b'\r' || message.get(end + 1) != Some(&b'\n') {
            return refuse("bare CR or LF in the header section".into());
        }
        if end + 2 > limits.max_header_bytes {
            return refuse(too_large(limits));
        }
        let line = &message[at..end];
        if line.is_empty() {
            break end + 2;
        }
        if nul {
            return refuse("NUL in the header section".into());
        }
        if matches!(line[0], b' ' | b'\t') {
            let Some((name_start, _, _, ref mut value_end)) = current else {
                return refuse("the header section starts with a continuation line".into());
            };
            if line.iter().all(|b| matches!(b, b' ' | b'\t')) {
                return refuse("blank continuation line in the header section".into());
            }
            if end - name_start > limits.max_header_field_bytes {
                return refuse(format!(
                    "header field longer than {} bytes",
                    limits.max_header_field_bytes
                ));
            }
            *value_end = end;
        } else {
            if let Some((name_start, name_end, value_start, value_end)) = current.take() {
                fields.push(Field {
                    name: &message[name_start..name_end],
                    raw_value: &message[value_start..value_end],
                });
            }
            // The name is read up to the first byte that cannot be in one (the colon is one
            // such byte). Stopped anywhere but at a colon, the line is refused for the reason
            // the whole line gives: no colon at all, else a bad character before it.
            let name_len = line
                .iter()
                .position(|&b| b == b':' || !(0x21..=0x7e).contains(&b))
                .unwrap_or(line.len());
            if line.get(name_len) != Some(&b':') {
                if memchr::memchr(b':', line).is_none() {
                    return refuse("header line without a colon".into());
                }
                return refuse("invalid character in a header field name".into());
            }
            let colon = name_len;
            if colon == 0 {
                return refuse("header field with an empty name".into());
            }
            if fields.len() + 1 > limits.max_header_fields {
                return refuse(format!(
                    "more than {} header fields",
                    limits.max_header_fields
                ));
            }
            if end - at > limits.max_header_field_bytes {
                return refuse(format!(
                    "header field longer than {} bytes",
                    limits.max_header_field_bytes
                ));
            }
            current = Some((at, at + colon, at + colon + 1, end));
        }
        at = end + 2;
    };
    if let Some((name_start, name_end, value_start, value_end)) = current {
        fields.push(Field {
            name: &message[name_start..name_end],
            raw_value: &message[value_start..value_end],
        });
    }
    Ok(Section {
        fields,
        body_offset,
    })
}

fn too_large(limits: &Limits) -> String {
    format!(
        "header section larger than {} bytes",
        limits.max_header_bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_default(message: &[u8]) -> Result<Section<'_>, Malformed> {
        read(message, &Limits::default())
    }

    fn names(section: &Section<'_>) -> Vec<String> {
        section
            .fields
            .iter()
            .map(|f| f.name_str().to_owned())
            .collect()
    }

    #[test]
    fn fields_and_folding() {
        let message =
            b"From: a@example.com\r\nSubject: one\r\n two\r\n\tthree\r\nX-Empty:\r\n\r\nbody\r\n";
        let section = read_default(message).unwrap();
        assert_eq!(names(&section), ["From", "Subject", "X-Empty"]);
        assert_eq!(section.fields[1].raw_value, b" one\r\n two\r\n\tthree");
        assert_eq!(section.fields[1].unfolded(), b"one two\tthree");
        assert_eq!(section.fields[2].unfolded(), b"");
        assert_eq!(&message[section.body_offset..], b"body\r\n");
    }

    #[test]
    fn a_message_without_body() {
        let section = read_default(b"From: a@example.com\r\nTo: b\r\n").unwrap();
        assert_eq!(names(&section), ["From", "To"]);
        assert_eq!(section.fields[1].raw_value, b" b");
        let section = read_default(b"From: a@example.com\r\n\r\n").unwrap();
        assert_eq!(section.fields[0].raw_value, b" a@example.com");
        assert_eq!(read_default(b"").unwrap().fields, []);
    }

    #[test]
    fn malformed_sections_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (
                b" From: x@allowed.com\r\n\r\n",
                "starts with a continuation",
            ),
            (
                b"\tFrom: x@allowed.com\r\n\r\n",
                "starts with a continuation",
            ),
            (b"junk\r\nFrom: a@b.c\r\n\r\n", "without a colon"),
            (b"Fr om: a@b.c\r\n\r\n", "invalid character"),
            (b"From : a@b.c\r\n\r\n", "invalid character"),
            (b"\x0cFrom: a@b.c\r\n\r\n", "invalid character"),
            (b"Fr\xc3\xb6m: a@b.c\r\n\r\n", "invalid character"),
            (b":From: a@b.c\r\nFrom: a@b.c\r\n\r\n", "empty name"),
            (b"From: a@b.c\r\nX: a\0b\r\n\r\n", "NUL"),
            (b"From: a@b.c\nX: y\r\n\r\n", "bare CR or LF"),
            (b"From: a@b.c\rX: y\r\n\r\n", "bare CR or LF"),
            (b"From: a@b.c\r\n \r\n\r\n", "blank continuation"),
            (b"From: a@b.c", "does not end with CRLF"),
        ];
        for (message, why) in cases {
            match read_default(message) {
                Err(Malformed(reason)) => {
                    assert!(reason.contains(why), "{message:?}: {reason}")
                }
                Ok(section) => panic!("{message:?} accepted: {section:?}"),
            }
        }
    }

    #[test]
    fn limits_hold() {
        let limits = Limits {
            max_header_bytes: 64,
            max_header_fields: 3,
            max_header_field_bytes: 20,
        };
        assert!(read(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", &limits).is_ok());
        assert_eq!(
            read(b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", &limits),
            Err(Malformed("more than 3 header fields".into()))
        );
        assert!(read(b"A: 123456789012345\r\n\r\n", &limits).is_ok());
        assert_eq!(
            read(b"A: 1234567890123456789\r\n\r\n", &limits),
            Err(Malformed("header field longer than 20 bytes".into()))
        );
        assert_eq!(
            read(b"A: 12345\r\n 6789012345\r\n 1\r\n\r\n", &limits),
            Err(Malformed("header field longer than 20 bytes".into()))
        );
        let big = format!("{}\r\n\r\n", "A: 1\r\n".repeat(2).repeat(6));
        let limits = Limits {
            max_header_fields: 100,
            ..limits
        };
        assert_eq!(
            read(big.as_bytes(), &limits),
            Err(Malformed("header section larger than 64 bytes".into()))
        );
        // A header line never ending inside the window is refused without reading further.
        let mut huge = b"A: ".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 1000));
        assert_eq!(
            read(&huge, &limits),
            Err(Malformed("header section larger than 64 bytes".into()))
        );
    }

    #[test]
    fn nul_floods_keep_their_reasons() {
        // A line of NULs is refused as NUL, found by one search; a bare LF or a missing CRLF
        // after NULs keeps its own reason, as before the scans were merged.
        let mut message = b"From: a@b.c\r\nX: ".to_vec();
        message.extend(std::iter::repeat_n(0u8, 100_000));
        let mut nul = message.clone();
        nul.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            read_default(&nul),
            Err(Malformed("NUL in the header section".into()))
        );
        let mut bare = message.clone();
        bare.extend_from_slice(b"\nY: z\r\n\r\n");
        assert_eq!(
            read_default(&bare),
            Err(Malformed("bare CR or LF in the header section".into()))
        );
        assert_eq!(
            read_default(&message),
            Err(Malformed(
                "the last header line does not end with CRLF".into()
            ))
        );
        let limits = Limits {
            max_header_bytes: 1000,
            ..Limits::default()
        };
        assert_eq!(
            read(&nul, &limits),
            Err(Malformed("header section larger than 1000 bytes".into()))
        );
    }

    /// The reader as it was before its line scan was merged (one memchr each for the line end,
    /// NUL and the colon): the rules must not change by a single byte.
    fn reference_read<'a>(message: &'a [u8], limits: &Limits) -> Result<Section<'a>, Malformed> {
        let refuse = |why: String| Err(Malformed(why));
        let mut fields: Vec<Field<'a>> = Vec::new();
        // The field being read: (start of its name, end of its name, start and end of its value).
        let mut current: Option<(usize, usize, usize, usize)> = None;
        let mut at = 0;
        // Never look past the size limit, so a huge header-less message costs nothing extra.
        let window = &message[..message.len().min(limits.max_header_bytes)];
        let body_offset = loop {
            if at == message.len() {
                // A message with no body: the header section is the whole message.
                break at;
            }
            let Some(found) = memchr::memchr2(b'\r', b'\n', &window[at..]) else {
                if window.len() < message.len() {
                    return refuse(too_large(limits));
                }
                return refuse("the last header line does not end with CRLF".into());
            };
            let end = at + found;
            if message[end] != b'\r' || message.get(end + 1) != Some(&b'\n') {
                return refuse("bare CR or LF in the header section".into());
            }
            if end + 2 > limits.max_header_bytes {
                return refuse(too_large(limits));
            }
            let line = &message[at..end];
            if line.is_empty() {
                break end + 2;
            }
            if memchr::memchr(0, line).is_some() {
                return refuse("NUL in the header section".into());
            }
            if matches!(line[0], b' ' | b'\t') {
                let Some((name_start, _, _, ref mut value_end)) = current else {
                    return refuse("the header section starts with a continuation line".into());
                };
                if line.iter().all(|b| matches!(b, b' ' | b'\t')) {
                    return refuse("blank continuation line in the header section".into());
                }
                if end - name_start > limits.max_header_field_bytes {
                    return refuse(format!(
                        "header field longer than {} bytes",
                        limits.max_header_field_bytes
                    ));
                }
                *value_end = end;
            } else {
                if let Some((name_start, name_end, value_start, value_end)) = current.take() {
                    fields.push(Field {
                        name: &message[name_start..name_end],
                        raw_value: &message[value_start..value_end],
                    });
                }
                let Some(colon) = memchr::memchr(b':', line) else {
                    return refuse("header line without a colon".into());
                };
                if colon == 0 {
                    return refuse("header field with an empty name".into());
                }
                if !line[..colon].iter().all(|b| (0x21..=0x7e).contains(b)) {
                    return refuse("invalid character in a header field name".into());
                }
                if fields.len() + 1 > limits.max_header_fields {
                    return refuse(format!(
                        "more than {} header fields",
                        limits.max_header_fields
                    ));
                }
                if end - at > limits.max_header_field_bytes {
                    return refuse(format!(
                        "header field longer than {} bytes",
                        limits.max_header_field_bytes
                    ));
                }
                current = Some((at, at + colon, at + colon + 1, end));
            }
            at = end + 2;
        };
        if let Some((name_start, name_end, value_start, value_end)) = current {
            fields.push(Field {
                name: &message[name_start..name_end],
                raw_value: &message[value_start..value_end],
            });
        }
        Ok(Section {
            fields,
            body_offset,
        })
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_reference_reader(
            message in proptest::collection::vec(
                proptest::sample::select(b"\r\n\0: \tAbX-\x0c\x7f\x80".to_vec()),
                0..48,
            ),
            fields in 1usize..6,
            field_bytes in 4usize..24,
            header_bytes in 8usize..64,
        ) {
            let limits = Limits {
                max_header_bytes: header_bytes,
                max_header_fields: fields,
                max_header_field_bytes: field_bytes,
            };
            proptest::prop_assert_eq!(read(&message, &limits), reference_read(&message, &limits));
            let roomy = Limits::default();
            proptest::prop_assert_eq!(read(&message, &roomy), reference_read(&message, &roomy));
        }

        #[test]
        fn agrees_on_well_formed_lines(
            lines in proptest::collection::vec(
                ("[A-Za-z:\x00 -]{0,6}", "[ a-z:\t\x00]{0,8}", proptest::bool::ANY),
                0..8,
            ),
        ) {
            // Mostly CRLF-terminated lines, so that the rules past the first line are reached.
            let mut message = Vec::new();
            for (name, value, fold) in &lines {
                if *fold {
                    message.push(b' ');
                }
                message.extend_from_slice(name.as_bytes());
                message.extend_from_slice(value.as_bytes());
                message.extend_from_slice(b"\r\n");
            }
            message.extend_from_slice(b"\r\nbody");
            let limits = Limits::default();
            proptest::prop_assert_eq!(read(&message, &limits), reference_read(&message, &limits));
        }
    }
}
