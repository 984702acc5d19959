//! Random 16-byte identifiers for workspaces, documents, comments and lifecycle entries,
//! shown as hex and accepted by unique prefix, like git's object ids.

use std::fmt;

use anyhow::{Result, bail};

/// Number of hex digits shown for an id in lists and messages.
pub const SHORT_LEN: usize = 8;

/// A 16-byte random identifier.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub [u8; 16]);

impl Id {
    /// A fresh random id.
    pub fn random() -> Id {
        Id(random_bytes())
    }

    /// The full hex form.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The short prefix shown to people.
    pub fn short(&self) -> String {
        self.hex()[..SHORT_LEN].to_string()
    }

    /// Parses the full 32-digit hex form.
    pub fn parse(text: &str) -> Result<Id> {
        let mut bytes = [0; 16];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) => Ok(Id(bytes)),
            Err(_) => bail!("`{text}` is not a full id (32 hex digits)"),
        }
    }

    /// Parses a full id from bytes of any length, as found in untrusted input.
    pub fn from_slice(bytes: &[u8]) -> Option<Id> {
        bytes.try_into().ok().map(Id)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// The first `n` characters of `text` (ids read from documents may be any string, so
/// byte slicing could split a character or run past the end).
pub fn prefix(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Fills an array from the operating system's random source (or the simulation's: see
/// [`meridian_relay::determinism`]).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    meridian_relay::determinism::fill(&mut bytes)
        .expect("the operating system has no random source");
    bytes
}

/// Finds the one candidate whose hex form starts with `prefix`.
///
/// `what` names the kind of thing for the error message ("document", "comment").
pub fn resolve_prefix<T: Clone>(
    what: &str,
    prefix: &str,
    candidates: impl IntoIterator<Item = (String, T)>,
) -> Result<T> {
    resolve_prefix_or(what, prefix, candidates, |_| None)
}

/// [`resolve_prefix`], with `describe` naming a candidate for people (`proposal "Store
/// workspaces in redb"`) in the errors: the candidates an ambiguous prefix fits, and the
/// likely one a mistyped prefix meant.
pub fn resolve_prefix_or<T: Clone>(
    what: &str,
    prefix: &str,
    candidates: impl IntoIterator<Item = (String, T)>,
    describe: impl Fn(&T) -> Option<String>,
) -> Result<T> {
    use crate::error::ErrorKind::{Ambiguous, NotFound, Usage};
    use crate::error::failure;
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(failure(
            Usage,
            format!(
                "`{prefix}` is not a {what} id: ids are hex digits, as shown by the list commands"
            ),
        ));
    }
    let all: Vec<(String, T)> = candidates.into_iter().collect();
    let mut found: Vec<&(String, T)> = all
        .iter()
        .filter(|(hex, _)| hex.starts_with(&prefix))
        .collect();
    // A whole id names its record even when another id extends it.
    if let Some(exact) = found.iter().position(|(hex, _)| *hex == prefix) {
        return Ok(found.swap_remove(exact).1.clone());
    }
    let named = |(hex, value): &(String, T)| match describe(value) {
        Some(text) => format!("{} {text}", self::prefix(hex, 8)),
        None => self::prefix(hex, 12).to_string(),
    };
    match found.len() {
        0 => {
            // One digit off (mistyped or swapped) from the start of a real id.
            let near = all.iter().find(|(hex, _)| {
                let start = self::prefix(hex, prefix.chars().count());
                strsim::damerau_levenshtein(start, &prefix) == 1
            });
            let hint = near
                .map(|candidate| format!(": did you mean {}?", named(candidate)))
                .unwrap_or_default();
            Err(failure(
                NotFound,
                format!("no {what} has an id starting with `{prefix}`{hint}"),
            ))
        }
        1 => Ok(found.remove(0).1.clone()),
        n => {
            found.sort_by(|a, b| a.0.cmp(&b.0));
            let names: Vec<String> = found.iter().take(5).map(|c| named(c)).collect();
            Err(failure(
                Ambiguous,
                format!(
                    "`{prefix}` is ambiguous: {n} {what}s start with it ({}{}); type more digits",
                    names.join(", "),
                    if n > 5 { ", …" } else { "" }
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_uniquely_or_explain() {
        let ids = || vec![("abcd01".to_string(), 1), ("abce02".to_string(), 2)];
        assert_eq!(resolve_prefix("document", "abcd", ids()).unwrap(), 1);
        assert_eq!(resolve_prefix("document", "ABCE", ids()).unwrap(), 2);
        let ambiguous = resolve_prefix("document", "abc", ids())
            .unwrap_err()
            .to_string();
        assert!(ambiguous.contains("ambiguous"), "{ambiguous}");
        let missing = resolve_prefix("document", "ff", ids())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no document"), "{missing}");
        // A whole id names its own record even when another id extends it.
        let extended = || vec![("abcd".to_string(), 1), ("abcd0".to_string(), 2)];
        assert_eq!(resolve_prefix("concern", "abcd", extended()).unwrap(), 1);
        assert!(resolve_prefix("concern", "abc", extended()).is_err());
        let bad = resolve_prefix("document", "xyz", ids())
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not a document id"), "{bad}");
    }
}
