//! What kind of failure an error is, for the exit code a script branches on and the `kind`
//! of a JSON error, and the error chain in words for people.
//!
//! Errors stay `anyhow` errors; a [`Failure`] somewhere in the chain says its kind, and a
//! few errors from elsewhere are recognised by type (a relay's refusal, a connection that
//! could not be made). Everything else is [`ErrorKind::Other`].

use serde::Serialize;

/// The kinds of failure, each with its exit code (`../shared/CLI.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The command line was wrong: exit 2.
    Usage,
    /// Something named does not exist: exit 3.
    NotFound,
    /// The document rules or a relay refused it: exit 4.
    Refused,
    /// No relay could be reached: exit 5.
    Unreachable,
    /// A name or prefix fits several things, or concurrent values disagree: exit 6.
    Ambiguous,
    /// Anything else: exit 1.
    Other,
}

impl ErrorKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Other => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Refused => 4,
            ErrorKind::Unreachable => 5,
            ErrorKind::Ambiguous => 6,
        }
    }

    /// The name scripts read in a JSON error.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Refused => "refused",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Ambiguous => "ambiguous",
            ErrorKind::Other => "other",
        }
    }
}

/// An error that says what kind of failure it is.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// Its kind.
    pub kind: ErrorKind,
    /// What was wrong and what to do.
    pub message: String,
}

/// An error of `kind` saying `message`.
pub fn failure(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    Failure {
        kind,
        message: message.into(),
    }
    .into()
}

/// Parses a value a person typed: a failure that has no kind of its own is a usage error,
/// told in its own words only (the causes behind them are a library's: "failed to parse
/// four digit integer as year").
pub fn typed<T>(parse: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    parse().map_err(|e| {
        if kind_of(&e) == ErrorKind::Other {
            failure(ErrorKind::Usage, e.to_string())
        } else {
            e
        }
    })
}

/// Returns early with an error of a kind: `fail!(NotFound, "no document …")`.
#[macro_export]
macro_rules! fail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::error::failure($crate::error::ErrorKind::$kind, format!($($arg)*)))
    };
}

/// The kind of an error: the first [`Failure`] in its chain, a relay's refusal, or a
/// connection that could not be made; else [`ErrorKind::Other`].
pub fn kind_of(error: &anyhow::Error) -> ErrorKind {
    // A kind given as context (`.context(Failure { … })`) is found by downcasting the error.
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return failure.kind;
    }
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.kind;
        }
        if cause
            .downcast_ref::<crate::sync::net::RefusedError>()
            .is_some()
        {
            return ErrorKind::Refused;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && unreachable(io.kind())
        {
            return ErrorKind::Unreachable;
        }
        if let Some(tokio_tungstenite::tungstenite::Error::Io(io)) =
            cause.downcast_ref::<tokio_tungstenite::tungstenite::Error>()
            && unreachable(io.kind())
        {
            return ErrorKind::Unreachable;
        }
    }
    ErrorKind::Other
}

fn unreachable(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as Io;
    matches!(
        kind,
        Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::TimedOut
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::NetworkDown
            | Io::AddrNotAvailable
    )
}

/// The error chain in words, `outer: cause: cause`, leaving out a cause its outer message
/// already says (a library error that prints its source as part of itself).
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if message.is_empty() || text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// The candidate closest to `typed` (by edit distance, ignoring case), if one is close
/// enough to be what was meant: for "did you mean …?".
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&typed, &c.to_lowercase()), c))
        .filter(|(distance, c)| *distance <= (c.chars().count() / 3).max(1))
        .min_by_key(|(distance, c)| (*distance, *c))
        .map(|(_, c)| c)
}
