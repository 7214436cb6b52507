//! Everything the CLI writes goes through here, so that two promises hold for every command:
//!
//! - **A closed stdout is quiet.** When the reader of stdout goes away (`kmsflow … | head -1`),
//!   the next write fails with `BrokenPipe`; the process then exits at once with code
//!   [`CLOSED_STDOUT_EXIT`] (141 = 128 + SIGPIPE, what a shell reports for a process SIGPIPE
//!   killed), printing nothing: no panic, no backtrace, no error text. Rust ignores SIGPIPE, so
//!   `println!` would panic instead. A run's journal is synced record by record and its lock is
//!   an OS lock, so a run stopped this way can be resumed like an interrupted one.
//! - **One JSON document.** With `--output json`, [`json`] prints a command's document and
//!   remembers it, so `main` prints an error document only when nothing was printed yet.
//!
//! Writes to stderr ([`errln!`]) ignore errors: a closed stderr must not stop a run.

use serde::Serialize;
use std::fmt;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code when stdout is closed under the process, as a shell reports a SIGPIPE death.
pub const CLOSED_STDOUT_EXIT: i32 = 141;

static DOCUMENT_PRINTED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout and flushes; a closed stdout ends the process quietly (exit 141),
/// any other write error ends it with exit 3 and one line on stderr.
pub fn write(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        fail(e)
    }
}

fn fail(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(CLOSED_STDOUT_EXIT);
    }
    let _ = writeln!(io::stderr(), "error: cannot write to stdout: {e}");
    std::process::exit(3)
}

/// Prints `doc` as the command's one JSON document (pretty, with a final newline).
pub fn json<T: Serialize + ?Sized>(doc: &T) {
    let text = serde_json::to_string_pretty(doc).unwrap_or_else(|e| {
        serde_json::json!({"error": {"code": "Internal", "message": format!("cannot serialize the output: {e}"), "location": null}})
            .to_string()
    });
    DOCUMENT_PRINTED.store(true, Ordering::SeqCst);
    write(format_args!("{text}\n"));
}

/// Prints `doc` as the command's one JSON document, on one line (for a document a reader
/// waits for line by line, as `local serve`'s "ready").
#[cfg_attr(not(feature = "local-cloud"), allow(dead_code))]
pub fn json_line(doc: &serde_json::Value) {
    DOCUMENT_PRINTED.store(true, Ordering::SeqCst);
    write(format_args!("{doc}\n"));
}

/// Whether [`json`] has printed a document.
pub fn document_printed() -> bool {
    DOCUMENT_PRINTED.load(Ordering::SeqCst)
}

/// Writes `args` and a newline to stderr, ignoring errors.
pub fn err(args: fmt::Arguments<'_>) {
    let mut e = io::stderr().lock();
    let _ = e.write_fmt(args).and_then(|()| e.write_all(b"\n"));
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::cli::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*)) };
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::out::err(format_args!($($arg)*)) };
}

pub(crate) use {errln, out, outln};
