//! Pipelines: the TOML files that say which plugins run, with which parameters and grants.
//!
//! `[pipeline]`, `[vars]`, `include`, and `[[steps]]` with `id`, `uses`, `sha256`, `with`
//! (interpolating `${vars.x}` and `${steps.ID.outputs.y}`), `grants`, `timeout`, `limits`,
//! `retry` and `when` — parsed strictly (unknown keys are errors), every error located at a file,
//! line and column with a hint, before anything runs.

mod load;
mod params;
mod parse;
pub mod template;

pub use params::{check_params, resolve_params, to_toml as params_to_toml};
pub use template::{Condition, Ref};

use crate::grants::Grants;
use crate::limits::StepLimits;
use crate::wit::types::{ErrorKind, ValueType};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A position in a pipeline file, 1-based; line 0 means the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    /// `file:line:column`, or just `file` for the file as a whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
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
    /// Where the variables in the value got theirs, when not from the pipeline itself
    /// (`--set vault-name`, `vars.toml:3:1`), for messages about the value.
    pub from: Option<String>,
}

/// A declared variable.
#[derive(Debug, Clone, PartialEq)]
pub struct VarSpec {
    pub name: String,
    pub ty: ValueType,
    /// For the resource types (`resource-group`, `cluster`, `vault`, `resource-id`): what the
    /// text names. Such a value may be a name, `GROUP/NAME` or a full id; it is expanded to the
    /// full id against the target's subscription before grants are bound.
    pub resource: Option<ResourceKind>,
    pub default: Option<toml::Value>,
    pub required: bool,
    pub description: String,
    pub location: Location,
}

/// What a resource-typed variable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    ResourceGroup,
    Cluster,
    Vault,
    /// Any ARM resource id (given in full).
    Any,
}

impl ResourceKind {
    /// The pipeline spelling of the type.
    pub fn type_name(self) -> &'static str {
        match self {
            ResourceKind::ResourceGroup => "resource-group",
            ResourceKind::Cluster => "cluster",
            ResourceKind::Vault => "vault",
            ResourceKind::Any => "resource-id",
        }
    }

    /// The provider type of a named resource (`Microsoft.ContainerService/managedClusters`).
    fn provider_type(self) -> Option<&'static str> {
        match self {
            ResourceKind::Cluster => Some("Microsoft.ContainerService/managedClusters"),
            ResourceKind::Vault => Some("Microsoft.KeyVault/vaults"),
            _ => None,
        }
    }

    /// `text` as a full resource id: a full id is checked to be of this kind; `GROUP/NAME` and
    /// `NAME` expand against `subscription` (and, for a bare cluster or vault name, the resource
    /// group id `group`).
    pub fn expand(self, text: &str, subscription: Option<&str>, group: Option<&str>) -> Result<String, String> {
        use crate::resource_id::ResourceId;
        let kind = self.type_name();
        let id = if text.starts_with('/') {
            ResourceId::parse(text).map_err(|e| e.to_string())?
        } else {
            let need_sub = || {
                subscription.ok_or_else(|| {
                    format!(
                        "`{text}` is a short {kind} name; give the full id, or name the subscription it is in \
                         (`subscription` of the target in kmsflow.toml)"
                    )
                })
            };
            let built = match (self, text.split_once('/')) {
                (ResourceKind::ResourceGroup, None) => format!("/subscriptions/{}/resourceGroups/{text}", need_sub()?),
                (ResourceKind::Cluster | ResourceKind::Vault, Some((rg, name))) => format!(
                    "/subscriptions/{}/resourceGroups/{rg}/providers/{}/{name}",
                    need_sub()?,
                    self.provider_type().unwrap_or_default()
                ),
                (ResourceKind::Cluster | ResourceKind::Vault, None) => {
                    let group = group.ok_or_else(|| {
                        format!("`{text}` is a {kind} name without its resource group; write GROUP/{text}, or set the resource group")
                    })?;
                    format!("{group}/providers/{}/{text}", self.provider_type().unwrap_or_default())
                }
                _ => return Err(format!("`{text}` is not a {kind}: give a full resource id")),
            };
            ResourceId::parse(&built).map_err(|e| e.to_string())?
        };
        let ok = match self {
            ResourceKind::ResourceGroup => {
                id.segments().len() == 4 && id.segments()[2].eq_ignore_ascii_case("resourceGroups")
            }
            ResourceKind::Cluster | ResourceKind::Vault => id.is_resource_of(self.provider_type().unwrap_or_default()),
            ResourceKind::Any => true,
        };
        if !ok {
            return Err(format!("`{id}` is not a {kind} id"));
        }
        if self == ResourceKind::Vault {
            crate::names::vault_name(id.last()).map_err(|e| e.to_string())?;
        }
        Ok(id.to_string())
    }
}

/// Where variable values come from besides the defaults: `--vars FILE` (in order), then
/// `--set NAME=VALUE`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VarInputs {
    pub files: Vec<PathBuf>,
    pub set: Vec<(String, String)>,
    /// Typed values applied last (a resumed run's recorded values).
    pub values: BTreeMap<String, toml::Value>,
    /// `validate`: a required variable without a value is an *unknown* (listed in
    /// [`Pipeline::unknown`]) instead of an error; what depends on it is checked by type only.
    /// `run` and `plan` leave this off: they need every value.
    pub allow_unknown: bool,
    /// The subscription short resource names (`aks1`, `rg1/aks1`) expand against.
    pub subscription: Option<String>,
    /// The resource group `-g` named: the value of a `resource-group` variable the pipeline
    /// declares (unless set otherwise), and the group bare cluster and vault names are in.
    pub group: Option<String>,
}

/// When a failed step runs again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt, doubled for each further one.
    pub backoff: Duration,
    /// The plugin error kinds that are retried; traps, timeouts and limits never are.
    pub on: Vec<ErrorKind>,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            attempts: 1,
            backoff: Duration::from_secs(1),
            on: vec![ErrorKind::Throttled, ErrorKind::Unavailable],
        }
    }
}

/// One step with its variables bound (step-output references are resolved when it runs).
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub id: String,
    pub uses: PluginRef,
    pub uses_location: Location,
    pub with: Vec<ParamEntry>,
    pub grants: Grants,
    pub limits: StepLimits,
    pub retry: RetrySpec,
    /// Run only if this holds (evaluated with the outputs of earlier steps).
    pub when: Option<(Condition, Location)>,
    pub location: Location,
}

/// A loaded pipeline, bound to its variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    pub version: Option<String>,
    pub vars: Vec<VarSpec>,
    /// The variables' values this pipeline was bound with.
    pub values: BTreeMap<String, toml::Value>,
    /// Required variables left without a value (only with [`VarInputs::allow_unknown`]), with
    /// their types.
    pub unknown: BTreeMap<String, ValueType>,
    pub steps: Vec<StepSpec>,
    /// SHA-256 over every file's name and text (includes too), recorded so a resumed run can
    /// tell the pipeline changed.
    pub sha256: String,
    /// The files it was read from, includes first.
    pub files: Vec<PathBuf>,
}

impl Pipeline {
    /// Reads a pipeline file (and its includes) with variables at their defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Pipeline, PipelineError> {
        Pipeline::load(path.as_ref(), &VarInputs::default())
    }

    /// Reads a pipeline file (and its includes) and binds its variables.
    pub fn load(path: &Path, inputs: &VarInputs) -> Result<Pipeline, PipelineError> {
        load::load(path, inputs)
    }
}

#[cfg(test)]
mod resource_kind_tests {
    use super::ResourceKind::*;

    const SUB: Option<&str> = Some("0000");
    const RG: Option<&str> = Some("/subscriptions/0000/resourceGroups/rg1");

    #[test]
    fn names_expand_against_the_subscription_and_the_resource_group() {
        assert_eq!(
            ResourceGroup.expand("rg1", SUB, None).unwrap(),
            "/subscriptions/0000/resourceGroups/rg1"
        );
        assert_eq!(
            Cluster.expand("aks1", SUB, RG).unwrap(),
            "/subscriptions/0000/resourceGroups/rg1/providers/Microsoft.ContainerService/managedClusters/aks1"
        );
        assert_eq!(
            Cluster.expand("rg2/aks1", SUB, RG).unwrap(),
            "/subscriptions/0000/resourceGroups/rg2/providers/Microsoft.ContainerService/managedClusters/aks1"
        );
        let id = "/subscriptions/9/resourceGroups/x/providers/Microsoft.KeyVault/vaults/kv-1";
        assert_eq!(Vault.expand(id, None, None).unwrap(), id);
    }

    #[test]
    fn wrong_kinds_and_missing_context_are_refused() {
        assert!(Cluster
            .expand("rg1/aks1", None, None)
            .unwrap_err()
            .contains("subscription"));
        assert!(Cluster
            .expand("aks1", SUB, None)
            .unwrap_err()
            .contains("resource group"));
        let vault = "/subscriptions/9/resourceGroups/x/providers/Microsoft.KeyVault/vaults/kv-1";
        assert!(Cluster.expand(vault, SUB, RG).unwrap_err().contains("not a cluster"));
        assert!(Vault.expand("rg1/k_v", SUB, RG).is_err(), "vault name rules");
        assert!(ResourceGroup.expand("rg1/../x", SUB, None).is_err());
        assert!(Cluster.expand("rg1/%2e%2e", SUB, RG).is_err());
    }
}
