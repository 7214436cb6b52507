//! A loaded plugin: its identity (name + SHA-256 of the component bytes), its self-description,
//! and its pre-instantiated form, ready for a fresh store per step.

use crate::engine::CacheOutcome;
use crate::wit::types::{PluginInfo, ValueType};
use crate::wit::WorkflowPre;
use crate::StepState;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

/// Where a plugin's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginOrigin {
    /// Embedded in the binary.
    Builtin,
    /// Loaded from a `.wasm` file.
    File(PathBuf),
    /// Handed over by an embedding program.
    Bytes,
}

/// A plugin ready to run.
pub struct Plugin {
    pub(crate) name: String,
    pub(crate) sha256: String,
    pub(crate) origin: PluginOrigin,
    pub(crate) info: PluginInfo,
    pub(crate) pre: WorkflowPre<StepState>,
    pub(crate) cache: CacheOutcome,
    pub(crate) load_time: Duration,
}

impl Plugin {
    /// The name it is referred to by (built-in name, or the name it declares).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lowercase hex SHA-256 of the component bytes: the plugin's identity in journals and pins.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn origin(&self) -> &PluginOrigin {
        &self.origin
    }

    /// What `describe()` returned.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Whether this load compiled the component or used the on-disk cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Time to obtain the compiled component (compile or cache load) and pre-instantiate it.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The pipeline spelling of a value type.
pub fn type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::Text => "string",
        ValueType::Integer => "integer",
        ValueType::Flag => "boolean",
        ValueType::TextList => "list of strings",
    }
}
