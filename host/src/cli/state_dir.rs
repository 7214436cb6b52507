//! Where the local cloud keeps its state: shared by `kmsflow local …` (which needs the
//! `local-cloud` feature) and the `local` target (which only needs to read its profile).

use anyhow::Context as _;
use std::path::PathBuf;

/// `KMSFLOW_LOCAL_STATE`, else the default state directory.
pub fn default_state_dir_or_env() -> anyhow::Result<PathBuf> {
    match std::env::var_os("KMSFLOW_LOCAL_STATE") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => default_state_dir(),
    }
}

/// `$XDG_DATA_HOME/kmsflow/localcloud` (or the platform's equivalent).
pub fn default_state_dir() -> anyhow::Result<PathBuf> {
    dirs::data_local_dir()
        .map(|d| d.join("kmsflow").join("localcloud"))
        .context("no data directory for this user; pass --state DIR")
}
