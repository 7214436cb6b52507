//! Pipelines: the TOML files that say which plugins run, with which parameters and grants.
//!
//! This is the minimal language of the runtime issue — `[pipeline]` and `[[steps]]` with `id`,
//! `uses`, `sha256`, `with`, `grants`, `timeout` and `limits` — parsed strictly (unknown keys are
//! errors) with every error located at a line and column. Variables, includes, retries and
//! conditions (issue 6) grow here, in this module.

mod params;
mod parse;

pub use params::resolve_params;
pub use parse::parse;

use crate::grants::Grants;
use crate::limits::StepLimits;
use std::fmt;
use std::path::PathBuf;

/// A position in a pipeline file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A pipeline that cannot run, and where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct PipelineError {
    pub location: Location,
    pub message: String,
    pub hint: Option<String>,
}

/// How a step names its plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A built-in plugin, by name.
    Builtin(String),
    /// A component file (relative paths are resolved against the pipeline's directory), pinned
    /// by its SHA-256.
    File { path: PathBuf, sha256: String },
}

/// One `with` entry, kept with its location for schema errors.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamEntry {
    pub name: String,
    pub value: toml::Value,
    pub location: Location,
}

/// One step, as written (parameters not yet checked against the plugin's schema).
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub id: String,
    pub uses: PluginRef,
    pub uses_location: Location,
    pub with: Vec<ParamEntry>,
    pub grants: Grants,
    pub limits: StepLimits,
    pub location: Location,
}

/// A parsed pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    pub steps: Vec<StepSpec>,
    /// SHA-256 of the pipeline text, recorded so a resumed run can tell it changed.
    pub sha256: String,
}

impl Pipeline {
    /// Reads and parses a pipeline file.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Pipeline, PipelineError> {
        let path = path.into();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| PipelineError {
            location: Location {
                file: name.clone(),
                line: 0,
                column: 0,
            },
            message: format!("cannot read the pipeline: {e}"),
            hint: None,
        })?;
        let base = path.parent().map(PathBuf::from).unwrap_or_default();
        parse(&text, &name, &base)
    }
}
