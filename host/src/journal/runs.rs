//! The runs directory: one folder per run (`RUNS_DIR/RUN_ID/`) with its journal and its lock, and
//! what a journal says about the run — its state, and what a resume must skip and restore.

use super::record::Record;
use super::{outputs_from_json, Journal, JournalError};
use crate::runtime::ResumeState;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A run's folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

/// Why a run cannot be driven.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("no run `{id}` in {dir}")]
    NotFound { id: String, dir: String },
    #[error("run `{id}` is being driven by {holder}; wait for it, or if that process is gone, pass --force")]
    Locked { id: String, holder: String },
    #[error("cannot lock run `{id}`: {source}")]
    Lock {
        id: String,
        #[source]
        source: std::io::Error,
    },
}

/// Holds a run's lock until dropped (the OS releases it if the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunDir {
    /// The folder of run `id` under `runs_dir` (created if `create`).
    pub fn open(runs_dir: &Path, id: &str, create: bool) -> Result<RunDir, RunError> {
        let path = runs_dir.join(id);
        if create {
            std::fs::create_dir_all(&path).map_err(|source| {
                RunError::Journal(JournalError::Io {
                    path: path.display().to_string(),
                    source,
                })
            })?;
        } else if !path.join("journal.ndjson").is_file() {
            return Err(RunError::NotFound {
                id: id.to_string(),
                dir: runs_dir.display().to_string(),
            });
        }
        Ok(RunDir {
            id: id.to_string(),
            path,
        })
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path.join("journal.ndjson")
    }

    /// Takes the run's lock so that no other process drives it meanwhile. A held lock is refused
    /// with the holder's description, unless `force` (for a holder on another machine that is
    /// gone: a lock on a network file system can outlive it).
    pub fn lock(&self, force: bool) -> Result<RunLock, RunError> {
        let path = self.path.join("lock");
        let lock_err = |source| RunError::Lock {
            id: self.id.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) if !force => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(RunError::Locked {
                    id: self.id.clone(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
        file.set_len(0).map_err(lock_err)?;
        file.rewind().map_err(lock_err)?;
        writeln!(
            file,
            "process {} on {host} since {}",
            std::process::id(),
            super::now_ms()
        )
        .map_err(lock_err)?;
        Ok(RunLock { _file: file })
    }

    pub fn records(&self) -> Result<Vec<Record>, RunError> {
        Ok(Journal::read(&self.journal_path())?)
    }
}

/// Every run under `runs_dir`, oldest first (run ids sort by time).
pub fn list(runs_dir: &Path) -> Vec<RunDir> {
    let mut runs: Vec<RunDir> = std::fs::read_dir(runs_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("journal.ndjson").is_file())
                .map(|e| RunDir {
                    id: e.file_name().to_string_lossy().into_owned(),
                    path: e.path(),
                })
                .collect()
        })
        .unwrap_or_default();
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    runs
}

/// Where a run stands, from its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Succeeded,
    Failed,
    /// Started and never finished: killed, or still running.
    Interrupted,
}

/// The facts `runs list` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub id: String,
    pub pipeline: String,
    pub target: String,
    pub started_ms: u64,
    pub state: RunState,
    pub steps_done: usize,
    pub calls: usize,
    pub retries: u64,
    pub denials: usize,
}

/// Summarises a run's records.
pub fn summarize(id: &str, records: &[Record]) -> RunSummary {
    let mut s = RunSummary {
        id: id.to_string(),
        pipeline: String::new(),
        target: String::new(),
        started_ms: 0,
        state: RunState::Interrupted,
        steps_done: 0,
        calls: 0,
        retries: 0,
        denials: 0,
    };
    for r in records {
        match r {
            Record::RunStarted {
                pipeline,
                target,
                at_ms,
                ..
            } => {
                s.pipeline = pipeline.clone();
                s.target = target.clone();
                s.started_ms = *at_ms;
            }
            Record::Resumed { .. } => s.state = RunState::Interrupted,
            Record::StepFinished { ok: true, .. } | Record::StepSkipped { .. } => s.steps_done += 1,
            Record::Call { retries, .. } => {
                s.calls += 1;
                s.retries += u64::from(*retries);
            }
            Record::CallDenied { .. } => s.denials += 1,
            Record::RunFinished { ok, .. } => s.state = if *ok { RunState::Succeeded } else { RunState::Failed },
            _ => {}
        }
    }
    s
}

/// What a resume skips (finished steps, with their outputs) and restores (checkpoints).
pub fn resume_state(records: &[Record]) -> ResumeState {
    let mut state = ResumeState::default();
    let mut checkpoints: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in records {
        match r {
            Record::StepFinished {
                step,
                ok: true,
                outputs,
                ..
            } => {
                state.finished.insert(step.clone(), outputs_from_json(outputs));
            }
            Record::Checkpoint { step, key, value } => {
                let map = checkpoints.entry(step.clone()).or_default();
                match value {
                    Some(v) => map.insert(key.clone(), v.clone()),
                    None => map.remove(key),
                };
            }
            _ => {}
        }
    }
    state.checkpoints = checkpoints.into_iter().collect();
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path(), "r1", true).unwrap();
        let held = run.lock(false).unwrap();
        let err = run.lock(false).unwrap_err().to_string();
        assert!(err.contains(&format!("process {}", std::process::id())), "{err}");
        assert!(err.contains("--force"), "{err}");
        drop(held);
        run.lock(false).unwrap();
    }

    #[test]
    fn resume_state_keeps_finished_steps_and_the_last_checkpoints() {
        let records = vec![
            Record::StepFinished {
                step: "a".into(),
                ok: true,
                duration_ms: 1,
                reason: None,
                outputs: serde_json::json!({"key": "k1", "n": 3}).as_object().unwrap().clone(),
            },
            Record::Checkpoint {
                step: "b".into(),
                key: "continue".into(),
                value: Some("t1".into()),
            },
            Record::Checkpoint {
                step: "b".into(),
                key: "continue".into(),
                value: Some("t2".into()),
            },
            Record::Checkpoint {
                step: "b".into(),
                key: "gone".into(),
                value: Some("x".into()),
            },
            Record::Checkpoint {
                step: "b".into(),
                key: "gone".into(),
                value: None,
            },
        ];
        let s = resume_state(&records);
        assert_eq!(s.finished["a"].len(), 2);
        assert_eq!(s.checkpoints["b"].get("continue").map(String::as_str), Some("t2"));
        assert!(!s.checkpoints["b"].contains_key("gone"));
        assert!(!s.finished.contains_key("b"));
    }
}
