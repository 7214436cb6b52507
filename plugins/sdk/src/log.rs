//! Step log and progress. Never log secret values: lines are journaled.

use crate::bindings::kmsflow::workflow::log as wit;

/// Writes an info line to the step log.
pub fn info(message: &str) {
    wit::log(wit::Level::Info, message);
}

/// Writes a warning to the step log.
pub fn warn(message: &str) {
    wit::log(wit::Level::Warn, message);
}

/// Writes a debug line to the step log (shown with `-v`).
pub fn debug(message: &str) {
    wit::log(wit::Level::Debug, message);
}

/// Writes an error line to the step log.
pub fn error(message: &str) {
    wit::log(wit::Level::Error, message);
}

/// Reports progress of long work.
pub fn progress(label: &str, done: u64, total: Option<u64>) {
    wit::progress(label, done, total);
}
