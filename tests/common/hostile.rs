//! The table of hostile header sections (`tests/data/hostile_headers.txt`), shared by the
//! builder's unit test, the differential test against Python's `email` package and the
//! end-to-end SMTP test.
#![allow(dead_code)]

pub const TABLE: &str = include_str!("../data/hostile_headers.txt");

/// The decision a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Evaluated with this From address and this identity resource (after
    /// `arn:aws:ses:us-east-1:123456789012:`, or a whole ARN of another account's identity).
    Allow { from: String, resource: String },
    /// Refused before any policy; the reply contains this text.
    Refuse { reply: String },
}

#[derive(Debug, Clone)]
pub struct Case {
    /// Line number in the table, for failure messages.
    pub line: usize,
    pub expect: Expect,
    pub message: Vec<u8>,
}

/// `\r \n \t \0 \\ \xHH` to bytes.
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let escape = bytes[i + 1];
        i += 2;
        out.push(match escape {
            b'r' => b'\r',
            b'n' => b'\n',
            b't' => b'\t',
            b'0' => 0,
            b'\\' => b'\\',
            b'x' => {
                let hex = std::str::from_utf8(&bytes[i..i + 2]).unwrap();
                i += 2;
                u8::from_str_radix(hex, 16).unwrap()
            }
            other => panic!("unknown escape \\{}", other as char),
        });
    }
    out
}

pub fn cases() -> Vec<Case> {
    TABLE
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(index, line)| {
            let parts: Vec<&str> = line.splitn(4, " | ").collect();
            let [decision, what, resource, message] = parts.as_slice() else {
                panic!("line {}: four fields expected", index + 1);
            };
            let expect = match *decision {
                "allow" => Expect::Allow {
                    from: what.to_string(),
                    resource: resource.to_string(),
                },
                "refuse" => Expect::Refuse {
                    reply: what.to_string(),
                },
                other => panic!("line {}: unknown decision {other}", index + 1),
            };
            Case {
                line: index + 1,
                expect,
                message: unescape(message),
            }
        })
        .collect()
}
