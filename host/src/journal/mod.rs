//! The run journal: an append-only file, one record per line, each line checksummed, written and
//! synced before the effect it describes is reported done (design.md §6). A torn last line — the
//! process died mid-write — is detected by its checksum and ignored.
//!
//! Line format: `{sha256 of the JSON, first 16 hex digits} {JSON}\n`.

mod hooks;
pub mod record;
pub mod runs;

pub use hooks::{outputs_from_json, outputs_json, JournalHooks};
pub use record::{CallError, Record};

use crate::limits::JOURNAL_RECORD_MAX;
use record::{Envelope, VERSION};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path}, line {line}: {message}")]
    Corrupt { path: String, line: usize, message: String },
}

fn checksum(json: &str) -> String {
    hex::encode(&Sha256::digest(json.as_bytes())[..8])
}

/// An open journal, appended to by one process.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` for appending.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and syncs it to disk before returning. A record whose line would exceed
    /// [`JOURNAL_RECORD_MAX`] has its descriptive fields cut (see [`Record`]) and is still
    /// written.
    pub fn append(&self, record: Record) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let json = bounded_json(record).map_err(|e| JournalError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        let line = format!("{} {json}\n", checksum(&json));
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }

    /// Every intact record of the journal at `path`, in order. A torn or garbled *last* line is
    /// dropped (a crash mid-append); a bad line before the end is corruption and an error.
    pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
        let text = std::fs::read(path).map_err(|source| JournalError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut records = Vec::with_capacity(lines.len());
        for (i, raw) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            match parse_line(raw) {
                Ok(r) => records.push(r),
                Err(_) if last => break,
                Err(message) => {
                    return Err(JournalError::Corrupt {
                        path: path.display().to_string(),
                        line: i + 1,
                        message,
                    })
                }
            }
        }
        Ok(records)
    }
}

/// The JSON of `record`'s line, its descriptive fields cut until the line (checksum, space and
/// newline included) fits in [`JOURNAL_RECORD_MAX`] or nothing is left to cut.
fn bounded_json(record: Record) -> Result<String, serde_json::Error> {
    const FRAME: usize = 16 + 1 + 1;
    let budget = JOURNAL_RECORD_MAX - FRAME;
    let mut envelope = Envelope { v: VERSION, record };
    loop {
        let json = serde_json::to_string(&envelope)?;
        if json.len() <= budget || !envelope.record.cut(json.len() - budget) {
            return Ok(json);
        }
    }
}

fn parse_line(raw: &str) -> Result<Record, String> {
    let line = raw
        .strip_suffix('\n')
        .ok_or_else(|| "the line is incomplete".to_string())?;
    let (sum, json) = line.split_once(' ').ok_or_else(|| "no checksum".to_string())?;
    if checksum(json) != sum {
        return Err("checksum mismatch".into());
    }
    let env: Envelope = serde_json::from_str(json).map_err(|e| format!("unreadable record: {e}"))?;
    if env.v > VERSION {
        return Err(format!(
            "record version {} is newer than this kmsflow understands ({VERSION})",
            env.v
        ));
    }
    Ok(env.record)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(ok: bool) -> Record {
        Record::RunFinished { ok, at_ms: 7 }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let j = Journal::open(&path).unwrap();
        j.append(finished(true)).unwrap();
        j.append(finished(false)).unwrap();
        assert_eq!(Journal::read(&path).unwrap(), vec![finished(true), finished(false)]);
        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"0123456789abcdef {\"v\":1,\"type\":\"run-fin").unwrap();
        assert_eq!(Journal::read(&path).unwrap().len(), 2);
    }

    #[test]
    fn an_oversize_call_record_is_cut_to_the_cap_and_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let j = Journal::open(&path).unwrap();
        let call = Record::Call {
            step: "s".into(),
            seq: 1,
            call: "arm.request".into(),
            resource: Some("/x".repeat(100_000)),
            write: false,
            // Control characters: six bytes of JSON each.
            args: "\u{1}".repeat(300_000),
            ok: false,
            error: Some(CallError {
                kind: "invalid".into(),
                code: "C".repeat(50_000),
                message: "m".repeat(1 << 20),
            }),
            duration_ms: 1,
            requests: 0,
            retries: 0,
            retry_reasons: vec!["r".into(); 100_000],
            request_ids: vec![],
        };
        j.append(call).unwrap();
        j.append(finished(true)).unwrap();
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(size <= JOURNAL_RECORD_MAX + 100, "journal of {size} bytes");
        let records = Journal::read(&path).unwrap();
        assert_eq!(records.len(), 2);
        match &records[0] {
            Record::Call {
                step, seq, args, error, ..
            } => {
                assert_eq!((step.as_str(), *seq), ("s", 1));
                assert!(args.contains("bytes cut)"), "the cut is marked");
                assert_eq!(error.as_ref().unwrap().kind, "invalid");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_line_before_the_end_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let j = Journal::open(&path).unwrap();
        j.append(finished(true)).unwrap();
        j.append(finished(false)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap().replacen("true", "fals", 1);
        std::fs::write(&path, text).unwrap();
        let err = Journal::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("checksum"), "{err}");
    }
}
