//! Building and propagating the WIT `error` record.

use crate::{Error, ErrorKind};
use std::fmt;

/// An error of `kind` with an optional service `code`.
pub fn error(kind: ErrorKind, code: &str, message: impl Into<String>) -> Error {
    Error {
        kind,
        code: code.to_string(),
        message: message.into(),
    }
}

impl Error {
    /// A parameter or precondition the plugin itself rejects.
    pub fn invalid(message: impl Into<String>) -> Self {
        error(ErrorKind::Invalid, "", message)
    }

    /// The world is not in a state the step can proceed from; the message names the fix.
    pub fn precondition(code: &str, message: impl Into<String>) -> Self {
        error(ErrorKind::Precondition, code, message)
    }

    /// A bug in the plugin.
    pub fn internal(message: impl Into<String>) -> Self {
        error(ErrorKind::Internal, "", message)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Denied => "denied",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Precondition => "precondition",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        };
        f.write_str(s)
    }
}

/// Adds context to a capability error while keeping its kind and code.
pub trait ResultExt<T> {
    /// Prefixes the error message with `context`.
    fn context(self, context: &str) -> Result<T, Error>;
    /// Maps a `not-found` error to `Ok(None)`.
    fn optional(self) -> Result<Option<T>, Error>;
}

impl<T> ResultExt<T> for Result<T, Error> {
    fn context(self, context: &str) -> Result<T, Error> {
        self.map_err(|e| Error {
            message: format!("{context}: {}", e.message),
            ..e
        })
    }

    fn optional(self) -> Result<Option<T>, Error> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
