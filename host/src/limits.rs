//! Every limit kmsflow puts on a step or on what a pipeline or plugin hands it, in one place.
//!
//! Pipeline and plugin authors are untrusted (design.md §5a), so everything they send is bounded
//! before it is processed: the files the host reads, what a plugin's `run` returns, its error
//! message, its checkpoint map, its log volume, and the size of one journal record. Each bound is
//! a named constant here with its default; the code that enforces it refers to it by name.
//!
//! [`StepLimits`] are the per-step sandbox limits a pipeline may tune (`timeout`, `[steps.limits]`);
//! the constants below are fixed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The limits one step runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Wall-clock bound on the whole step, including time spent inside host calls.
    pub timeout: Duration,
    /// Cap on each linear memory of the plugin, in bytes.
    pub memory_bytes: usize,
    /// Cap on instances (a component counts each core instance inside it).
    pub instances: usize,
    /// Cap on tables.
    pub tables: usize,
    /// Cap on the elements of any one table.
    pub table_elements: usize,
}

impl StepLimits {
    /// Default wall-clock timeout: long enough for a KMS update's long-running operation.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
    /// Default memory cap (built-in plugins use under 2 MiB).
    pub const DEFAULT_MEMORY: usize = 256 << 20;
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits {
            timeout: Self::DEFAULT_TIMEOUT,
            memory_bytes: Self::DEFAULT_MEMORY,
            instances: 64,
            tables: 64,
            table_elements: 100_000,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files the host reads. Each is checked with `metadata()` first (a regular file, after following
// symlinks, no larger than its cap) and then read through `take(cap + 1)`, so a file that grows
// between the check and the read still cannot exceed the cap.

/// Largest pipeline file, and largest included file: 1 MiB.
pub const PIPELINE_FILE_MAX: u64 = 1 << 20;
/// Largest `--vars` file: 1 MiB.
pub const VARS_FILE_MAX: u64 = 1 << 20;
/// Largest `kmsflow.toml`: 1 MiB.
/// What a plugin's `describe()` may answer: 256 parameters, outputs and grants together, in
/// 64 KiB of names, descriptions and defaults; more fails the plugin's load.
pub const DESCRIBE_ENTRIES_MAX: usize = 256;
pub const DESCRIBE_BYTES_MAX: usize = 64 * 1024;
/// Refused calls (denied by the grants, invalid ids or names, unclassifiable `arm` requests) one
/// step attempt may make before it fails: 1,024. Each is a synced journal record, so a probing
/// plugin is stopped rather than allowed to flood the journal; no built-in plugin is ever refused.
pub const REFUSED_CALLS_MAX: u64 = 1024;
pub const CONFIG_FILE_MAX: u64 = 1 << 20;
/// Largest plugin component file: 64 MiB (the built-in plugins are under 1 MiB each). Checked
/// before the file is read or hashed.
pub const PLUGIN_FILE_MAX: u64 = 64 << 20;

// ---------------------------------------------------------------------------------------------
// What a plugin's `run` hands back.

/// Most outputs one step may return: 64. More fails the step; none of them is kept.
pub const STEP_OUTPUTS_MAX: usize = 64;
/// Most bytes one step's outputs may hold in all: 64 KiB, counting each output's name, a text's
/// bytes, 8 for an integer or a flag, and each list item's bytes plus one. More fails the step;
/// none of them is kept (not on stdout, not in the journal).
pub const STEP_OUTPUT_BYTES_MAX: usize = 64 << 10;
/// Longest message of a plugin's error kept: 4 KiB. A longer one is cut (not refused) and ends
/// with `… (N bytes cut)`.
pub const PLUGIN_ERROR_MESSAGE_MAX: usize = 4 << 10;
/// Longest code of a plugin's error kept: 128 bytes, cut like the message.
pub const PLUGIN_ERROR_CODE_MAX: usize = 128;

// ---------------------------------------------------------------------------------------------
// The checkpoint map (`kmsflow:workflow/checkpoint`), per step. A `put` over a limit fails with
// an `invalid` error and changes nothing.

/// Longest checkpoint key: 256 bytes (and at least 1).
pub const CHECKPOINT_KEY_MAX: usize = 256;
/// Longest checkpoint value: 64 KiB.
pub const CHECKPOINT_VALUE_MAX: usize = 64 << 10;
/// Most keys one step's checkpoint map may hold: 1024.
pub const CHECKPOINT_KEYS_MAX: usize = 1024;
/// Most bytes (keys and values) one step's checkpoint map may hold: 1 MiB.
pub const CHECKPOINT_BYTES_MAX: usize = 1 << 20;
/// Most bytes of checkpoint keys and values the journal records for one step, rewrites and
/// removals included: 64 MiB. Every `put` is a journal record, so this bounds the journal a step
/// can write through its checkpoint (a `put` past it fails the step); a rewrite checkpointing a
/// few hundred bytes per page stays far below it.
pub const CHECKPOINT_WRITTEN_MAX: u64 = 64 << 20;

// ---------------------------------------------------------------------------------------------
// The step log: guest stdout and stderr and the `log` capability together, per step attempt.

/// Most log lines one step may write, stdout, stderr and `log.log` together: 10,000. The rest are
/// counted, and one `N lines dropped` line ends the step's log instead.
pub const LOG_LINES_MAX: usize = 10_000;
/// Most log bytes one step may write, all sources together: 4 MiB; past it, lines are dropped as
/// past [`LOG_LINES_MAX`].
pub const LOG_BYTES_MAX: usize = 4 << 20;
/// Longest log line: 8 KiB. A longer `log.log` message is cut with a marker; longer stdout or
/// stderr output is split into lines of this size.
pub const LOG_LINE_MAX: usize = 8 << 10;
/// Longest `log.progress` label: 256 bytes, cut with a marker.
pub const PROGRESS_LABEL_MAX: usize = 256;

// ---------------------------------------------------------------------------------------------
// The journal.

/// Largest journal record (one line, checksum included): 64 KiB. The fields of a larger record
/// that describe (a call's arguments, its error, a step's failure reason, a denied resource, retry
/// reasons, request ids) are cut with a marker until it fits; the record is still written. Fields
/// a resume needs are never cut, and are bounded where they come from instead: step outputs by
/// [`STEP_OUTPUT_BYTES_MAX`], checkpoint entries by [`CHECKPOINT_VALUE_MAX`], a run's start by
/// the file limits above.
pub const JOURNAL_RECORD_MAX: usize = 64 << 10;

/// `text` cut to at most `max` bytes (on a character boundary), followed by `… (N bytes cut)`
/// when anything was cut; unchanged otherwise.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..cut], text.len() - cut)
}

/// Why a file was not read. `Display` names the file; [`FileError::reason`] does not.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be opened or read (missing, permissions, I/O).
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file once symlinks are followed: a device, a FIFO, a socket or a directory.
    #[error("{}: {}", path.display(), self.reason())]
    NotRegular { path: PathBuf, kind: &'static str },
    /// Larger than the limit for files of its kind (`size` is `None` when it grew while read).
    #[error("{}: {}", path.display(), self.reason())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        limit: u64,
        size: Option<u64>,
    },
}

impl FileError {
    /// Why, without the file's name (for messages that are already located at the file).
    pub fn reason(&self) -> String {
        match self {
            FileError::Io { source, .. } => format!("cannot read: {source}"),
            FileError::NotRegular { kind, .. } => format!("{kind}, not a regular file; refusing to read it"),
            FileError::TooLarge { what, limit, size, .. } => {
                let limit = bytesize::ByteSize(*limit);
                match size {
                    Some(size) => format!("{}, over the {limit} limit for {what}", bytesize::ByteSize(*size)),
                    None => format!("more than {limit}, over the limit for {what}"),
                }
            }
        }
    }
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let ty = meta.file_type();
    if ty.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_char_device() {
            return "a character device";
        }
        if ty.is_block_device() {
            return "a block device";
        }
        if ty.is_fifo() {
            return "a FIFO";
        }
        if ty.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Reads the regular file at `path` (symlinks followed) if it holds at most `limit` bytes;
/// `what` names its kind in the error (`"pipeline files"`). A device, FIFO, socket or directory is
/// refused before it is opened; a file over the limit is refused before a byte is read, and one
/// that grows past it while being read is refused after reading at most `limit + 1` bytes.
pub fn read_file(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let check = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(FileError::NotRegular {
                path: path.to_path_buf(),
                kind: kind_of(meta),
            });
        }
        if meta.len() > limit {
            return Err(FileError::TooLarge {
                path: path.to_path_buf(),
                what,
                limit,
                size: Some(meta.len()),
            });
        }
        Ok(())
    };
    check(&std::fs::metadata(path).map_err(io)?)?;
    let file = File::open(path).map_err(io)?;
    // The path may have been swapped between the check and the open: check what was opened.
    check(&file.metadata().map_err(io)?)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            what,
            limit,
            size: None,
        });
    }
    Ok(bytes)
}

/// [`read_file`] for a text file: invalid UTF-8 is an [`FileError::Io`] of kind `InvalidData`.
pub fn read_text_file(path: &Path, limit: u64, what: &'static str) -> Result<String, FileError> {
    let bytes = read_file(path, limit, what)?;
    String::from_utf8(bytes).map_err(|e| FileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// The limits on what reaches a URL or a request body, defined beside their rules.
pub use crate::names::{
    MAX_CONTINUE_TOKEN_BYTES, MAX_LABEL_SELECTOR_BYTES, MAX_REQUEST_BODY_BYTES, MAX_STATE_BYTES, MAX_STATE_ENTRIES,
    MAX_TEXT_ARG_BYTES,
};
pub use crate::resource_id::{MAX_RESOURCE_ID_BYTES, MAX_RESOURCE_ID_SEGMENTS, MAX_SEGMENT_BYTES};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_on_a_char_boundary_and_says_how_much() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdef", 3), "abc… (3 bytes cut)");
        // `é` is two bytes: the cut backs off to the boundary before it.
        assert_eq!(truncate("aé", 2), "a… (2 bytes cut)");
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_before_any_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_file(Path::new("/dev/zero"), 10, "test files").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::NotRegular {
                    kind: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        let e = read_file(dir.path(), 10, "test files").unwrap_err();
        assert!(
            e.to_string()
                .ends_with(": a directory, not a regular file; refusing to read it"),
            "{e}"
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Opening a FIFO with no writer would block forever: it must not be opened.
            let e = read_file(&fifo, 10, "test files").unwrap_err();
            assert!(matches!(e, FileError::NotRegular { kind: "a FIFO", .. }), "{e}");
        }
    }

    #[test]
    fn a_file_over_the_limit_is_refused_with_its_size_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 2048]).unwrap();
        let e = read_file(&path, 1024, "test files").unwrap_err().to_string();
        assert!(
            e.ends_with("big: 2.0 KiB, over the 1.0 KiB limit for test files"),
            "{e}"
        );
        assert_eq!(read_file(&path, 2048, "test files").unwrap().len(), 2048);
    }
}
