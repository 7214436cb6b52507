//! Errors of starting and running the local cloud (not the Azure error bodies it serves; those
//! are in `arm::ArmError` and `keyvault::KvError`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LocalCloudError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Tls(String),
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("state directory {0} is in use by another local cloud (pid {1})")]
    InUse(PathBuf, String),
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

impl LocalCloudError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LocalCloudError::Io {
            path: path.into(),
            source,
        }
    }
}
