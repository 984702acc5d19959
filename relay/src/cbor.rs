//! Reading CBOR from untrusted bytes with errors a person can read.
//!
//! ciborium's errors print as their `Debug` form (`Io(Error { kind: UnexpectedEof, .. })`);
//! everything that decodes frames, envelopes, bundles or invite codes goes through
//! [`from_slice`] instead, so a bad input is named in words.

use serde::de::DeserializeOwned;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CborError(String);

/// The scratch space ciborium reads text and byte strings into: 4 KiB, as its own default.
const SCRATCH: usize = 4096;

std::thread_local! {
    /// One scratch buffer per thread, reused: `ciborium::from_reader` zeroes a fresh 4 KiB
    /// buffer for every value, which was a fifth of the instructions of a `thread list`
    /// decoding 10,000 index summaries.
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; SCRATCH]);
}

/// Decodes one CBOR value from `bytes` (trailing bytes are ignored, as ciborium does).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CborError> {
    let decoded = BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut scratch) => ciborium::de::from_reader_with_buffer(bytes, &mut scratch),
        // A value decoded while another is (a visitor decoding nested bytes): a buffer of
        // its own.
        Err(_) => ciborium::de::from_reader_with_buffer(bytes, &mut [0; SCRATCH]),
    });
    decoded.map_err(|error| CborError(describe(&error)))
}

fn describe<E>(error: &ciborium::de::Error<E>) -> String {
    use ciborium::de::Error;
    match error {
        Error::Io(_) => "the data ends too early: it is truncated".into(),
        Error::Syntax(offset) => format!("the data is not valid CBOR (at byte {offset})"),
        Error::Semantic(Some(offset), message) => format!("{} (at byte {offset})", said(message)),
        Error::Semantic(None, message) => said(message),
        Error::RecursionLimitExceeded => "the data nests too deeply".into(),
    }
}

/// Longest part of a sender's bytes an error message repeats.
const ECHO: usize = 64;

/// A serde message in words: serde quotes a string it did not expect with Debug escapes
/// (`invalid type: string "a\"b\0", expected …`) and names an unknown field or variant as
/// it came (escaped, in places), both the sender's bytes of any length. The quoted string is
/// left out, the rest cut to [`ECHO`] characters a piece, control characters and
/// backslashes shown as `?`.
fn said(message: &str) -> String {
    let message = match (message.find(" \""), message.rfind('"')) {
        (Some(start), Some(end)) if end > start => {
            let before = message[..start].trim_end_matches(" string");
            let what = if before.len() < start {
                " a string"
            } else {
                " a value"
            };
            format!("{before}{what}{}", &message[end + 1..])
        }
        _ => message.to_string(),
    };
    let mut out = String::new();
    for (i, piece) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let mut shown: String = piece
            .chars()
            .take(ECHO)
            .map(|c| if c.is_control() || c == '\\' { '?' } else { c })
            .collect();
        if piece.chars().count() > ECHO {
            shown.push('…');
        }
        out.push_str(&shown);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An enum with a struct variant, as frames are.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    enum Tagged {
        A { x: u8 },
    }

    #[test]
    fn errors_are_words_not_debug_dumps() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "truncated"),
            (&[0x1c], "not valid CBOR"),
            (&[0x62, b'h', b'i'], "invalid type"),
            (&[0x81; 1000], "nests too deeply"),
            // A string holding a quote and NUL bytes where it is not expected, which serde
            // quoted with Debug escapes (found by cargo-fuzz in a frame).
            (
                &[0xa1, 0x61, b'A', 0x64, b'a', b'"', 0, 0],
                "invalid type: a string, expected struct variant",
            ),
            // An unknown variant named with a newline: named, the newline shown as `?`.
            (
                &[0xa1, 0x62, b'B', b'\n', 0xa0],
                "unknown variant `B?`, expected `A`",
            ),
            // One holding a quote, which came escaped (found by cargo-fuzz too).
            (&[0xa1, 0x62, b'"', b'B', 0xa0], "unknown variant `"),
        ];
        for (bytes, expected) in cases {
            let error = match expected {
                "invalid type" => from_slice::<u64>(bytes).unwrap_err(),
                e if e.starts_with("invalid type") || e.starts_with("unknown") => {
                    from_slice::<Tagged>(bytes).unwrap_err()
                }
                _ => from_slice::<ciborium::Value>(bytes).unwrap_err(),
            }
            .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(
                !error.contains("Error {") && !error.contains("Semantic("),
                "{error}"
            );
            assert!(
                !error.contains('\\') && !error.chars().any(char::is_control),
                "{error}"
            );
            if !expected.starts_with("unknown variant `") {
                assert!(!error.contains('"'), "{error}");
            }
        }
    }
}
