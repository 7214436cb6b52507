//! The library's error type.

use std::path::PathBuf;

/// Everything that can go wrong outside a step (a failing step is a [`crate::StepFailure`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot compile plugin: {0}")]
    Compile(String),
    #[error("plugin `{name}` does not implement the kmsflow:workflow world: {reason}")]
    NotAPlugin { name: String, reason: String },
    #[error("no built-in plugin named `{0}`; `kmsflow plugins list` shows them")]
    UnknownPlugin(String),
    #[error("cannot read plugin {path}: {source}")]
    ReadPlugin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {path} has SHA-256 {actual}, but the pipeline pins {expected}; refusing to run it")]
    PluginHashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A file refused by [`crate::limits::read_file`]: not a regular file, or over its size limit.
    #[error(transparent)]
    File(crate::limits::FileError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
