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
        Error::Semantic(Some(offset), message) => format!("{message} (at byte {offset})"),
        Error::Semantic(None, message) => message.clone(),
        Error::RecursionLimitExceeded => "the data nests too deeply".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_words_not_debug_dumps() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "truncated"),
            (&[0x1c], "not valid CBOR"),
            (&[0x62, b'h', b'i'], "invalid type"),
            (&[0x81; 1000], "nests too deeply"),
        ];
        for (bytes, expected) in cases {
            let error = match expected {
                "invalid type" => from_slice::<u64>(bytes).unwrap_err(),
                _ => from_slice::<ciborium::Value>(bytes).unwrap_err(),
            }
            .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(
                !error.contains("Error {") && !error.contains("Semantic("),
                "{error}"
            );
        }
    }
}
