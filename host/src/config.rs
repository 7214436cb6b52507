//! `kmsflow.toml`: named targets (cloud + credential + client settings) and where runs are kept.
//! Looked up in the working directory, then the user's config directory; `--config` overrides.
//!
//! ```toml
//! default-target = "prod"
//! runs-dir = ".kmsflow/runs"
//!
//! [targets.prod]
//! cloud = "AzureCloud"            # AzureChinaCloud, AzureUSGovernment, local
//! credential = "azure-cli"        # environment, client-secret, managed-identity, workload-identity
//! rewrite-concurrency = 32
//! [targets.prod.api-versions]
//! clusters = "2026-01-01"
//! [targets.prod.retry]
//! max-attempts = 10
//! deadline = "1h"
//! [[targets.prod.kubeconfig]]
//! cluster = "/subscriptions/…/managedClusters/aks1"
//! path = "/home/me/.kube/config"
//! context = "aks1-admin"
//! ```

use crate::cloud::credential::{CredentialSource, CredentialSpec};
use crate::cloud::{ApiVersions, KubeContext, RetryPolicy};
use crate::limits::{read_text_file, FileError, CONFIG_FILE_MAX};
use crate::target::TargetSettings;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name looked up.
pub const FILE_NAME: &str = "kmsflow.toml";

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file, or over [`CONFIG_FILE_MAX`].
    #[error(transparent)]
    File(FileError),
    /// The TOML parser's message names the line and column.
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: target `{target}`: {message}")]
    Invalid {
        path: String,
        target: String,
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The target used when `--target` is not given (else `local`).
    pub default_target: Option<String>,
    /// Where run journals are kept (relative to the file's directory).
    pub runs_dir: Option<PathBuf>,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// The file it came from.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// One `[targets.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetConfig {
    /// `AzureCloud`, `AzureChinaCloud`, `AzureUSGovernment` or `local`.
    pub cloud: String,
    /// Default `azure-cli`; for `cloud = "local"`, the local cloud's operator unless given.
    pub credential: Option<CredentialSource>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// Name of the environment variable holding the client secret (`client-secret` credential).
    pub client_secret_env: Option<String>,
    /// For `cloud = "local"`: the local cloud's state directory.
    pub state_dir: Option<PathBuf>,
    /// The subscription short resource names (`--cluster aks1`) expand against.
    pub subscription: Option<String>,
    #[serde(default)]
    pub api_versions: ApiVersionsConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    pub rewrite_concurrency: Option<usize>,
    /// `humantime` text, e.g. `10m`.
    pub rbac_propagation_window: Option<String>,
    #[serde(default)]
    pub kubeconfig: Vec<KubeconfigConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiVersionsConfig {
    pub resource_groups: Option<String>,
    pub vaults: Option<String>,
    pub identities: Option<String>,
    pub role_assignments: Option<String>,
    pub clusters: Option<String>,
    /// The Key Vault data-plane api-version (`7.5`).
    pub keyvault: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryConfig {
    pub max_attempts: Option<u32>,
    /// Durations as `humantime` text: `500ms`, `30s`, `1h`.
    pub base_delay: Option<String>,
    pub max_delay: Option<String>,
    pub deadline: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubeconfigConfig {
    pub cluster: String,
    pub path: PathBuf,
    pub context: Option<String>,
}

impl Config {
    /// `explicit`, else `./kmsflow.toml`, else `{config dir}/kmsflow/kmsflow.toml`, else empty.
    /// The file must be a regular file of at most [`CONFIG_FILE_MAX`] bytes.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => {
                let mut c = vec![PathBuf::from(FILE_NAME)];
                if let Some(dir) = dirs::config_dir() {
                    c.push(dir.join("kmsflow").join(FILE_NAME));
                }
                c
            }
        };
        for path in candidates {
            // A candidate that exists but is no regular file is refused, not skipped.
            if explicit.is_some() || path.exists() {
                let text = read_text_file(&path, CONFIG_FILE_MAX, "configuration files").map_err(|e| match e {
                    FileError::Io { path, source } => ConfigError::Read {
                        path: path.display().to_string(),
                        source,
                    },
                    refused => ConfigError::File(refused),
                })?;
                return Config::parse(&text, &path);
            }
        }
        Ok(Config::default())
    }

    /// Parses the text of a file at `path` (used for messages and relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        config.path = Some(path.to_path_buf());
        for name in config.targets.keys() {
            config.settings(name)?;
        }
        Ok(config)
    }

    fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn invalid(&self, target: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| FILE_NAME.to_string()),
            target: target.to_string(),
            message,
        }
    }

    /// The runs directory: `runs-dir` from the file, else `.kmsflow/runs`.
    pub fn runs_dir(&self) -> PathBuf {
        match &self.runs_dir {
            Some(d) => self.base_dir().join(d),
            None => PathBuf::from(".kmsflow").join("runs"),
        }
    }

    /// The name `--target` defaults to.
    pub fn default_target(&self) -> &str {
        self.default_target.as_deref().unwrap_or("local")
    }

    /// The client settings of target `name`.
    pub fn settings(&self, name: &str) -> Result<TargetSettings, ConfigError> {
        let t = self
            .targets
            .get(name)
            .ok_or_else(|| self.invalid(name, "no such target".into()))?;
        let duration = |field: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(text) => {
                humantime::parse_duration(text).map_err(|e| self.invalid(name, format!("{field} = \"{text}\": {e}")))
            }
        };
        let d = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: t.retry.max_attempts.unwrap_or(d.max_attempts).max(1),
            base_delay: duration("retry.base-delay", &t.retry.base_delay, d.base_delay)?,
            max_delay: duration("retry.max-delay", &t.retry.max_delay, d.max_delay)?,
            deadline: duration("retry.deadline", &t.retry.deadline, d.deadline)?,
        };
        let v = ApiVersions::default();
        let a = &t.api_versions;
        let api_versions = ApiVersions {
            resource_groups: a.resource_groups.clone().unwrap_or(v.resource_groups),
            vaults: a.vaults.clone().unwrap_or(v.vaults),
            identities: a.identities.clone().unwrap_or(v.identities),
            role_assignments: a.role_assignments.clone().unwrap_or(v.role_assignments),
            clusters: a.clusters.clone().unwrap_or(v.clusters),
            keyvault: a.keyvault.clone().unwrap_or(v.keyvault),
        };
        crate::names::keyvault_api_version(&api_versions.keyvault)
            .map_err(|e| self.invalid(name, format!("api-versions.keyvault: {e}")))?;
        for (field, version) in [
            ("resource-groups", &api_versions.resource_groups),
            ("vaults", &api_versions.vaults),
            ("identities", &api_versions.identities),
            ("role-assignments", &api_versions.role_assignments),
            ("clusters", &api_versions.clusters),
        ] {
            crate::names::api_version(version).map_err(|e| self.invalid(name, format!("api-versions.{field}: {e}")))?;
        }
        for k in &t.kubeconfig {
            if crate::resource_id::ResourceId::parse(&k.cluster).is_err() {
                return Err(self.invalid(name, format!("kubeconfig.cluster `{}` is not a resource id", k.cluster)));
            }
        }
        if t.rewrite_concurrency == Some(0) {
            return Err(self.invalid(name, "rewrite-concurrency must be at least 1".into()));
        }
        if t.cloud != "local" {
            crate::cloud::CloudProfile::builtin(&t.cloud).map_err(|e| self.invalid(name, e.to_string()))?;
        }
        Ok(TargetSettings {
            api_versions,
            retry,
            kube_contexts: t
                .kubeconfig
                .iter()
                .map(|k| KubeContext {
                    cluster: k.cluster.clone(),
                    kubeconfig: self.base_dir().join(&k.path),
                    context: k.context.clone(),
                })
                .collect(),
            rewrite_concurrency: t.rewrite_concurrency.unwrap_or(crate::cloud::kube::DEFAULT_CONCURRENCY),
            propagation_window: duration(
                "rbac-propagation-window",
                &t.rbac_propagation_window,
                crate::cloud::azure::DEFAULT_PROPAGATION_WINDOW,
            )?,
        })
    }

    /// The credential of target `name`; `None` for a local target that names none (it then
    /// uses the local cloud's operator).
    pub fn credential(&self, name: &str) -> Option<CredentialSpec> {
        let t = self.targets.get(name)?;
        if t.cloud == "local" && t.credential.is_none() {
            return None;
        }
        Some(t).map(|t| CredentialSpec {
            source: t.credential.unwrap_or_default(),
            tenant_id: t.tenant_id.clone(),
            client_id: t.client_id.clone(),
            client_secret_env: t.client_secret_env.clone(),
        })
    }

    /// The local cloud state directory of target `name`, when it is a `local` one.
    /// The subscription short resource names expand against for target `name`: its
    /// `subscription`, else — for a local target — the local cloud's default subscription (from
    /// `profile.json` in its state directory, `local_dir` for the built-in `local`). Reads one
    /// small file; sends nothing.
    pub fn subscription_for(&self, name: &str, local_dir: &Path) -> Option<String> {
        if let Some(sub) = self.targets.get(name).and_then(|t| t.subscription.clone()) {
            return Some(sub);
        }
        let dir = match self.local_state_dir(name) {
            Some(dir) => dir.unwrap_or_else(|| local_dir.to_path_buf()),
            None if name == "local" && !self.targets.contains_key(name) => local_dir.to_path_buf(),
            None => return None,
        };
        crate::cloud::profile::LocalProfile::read(&dir)
            .ok()
            .map(|p| p.default_subscription)
    }

    pub fn local_state_dir(&self, name: &str) -> Option<Option<PathBuf>> {
        let t = self.targets.get(name)?;
        (t.cloud == "local").then(|| t.state_dir.as_ref().map(|d| self.base_dir().join(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_target_parses_into_settings() {
        let text = r#"
default-target = "prod"
[targets.prod]
cloud = "AzureUSGovernment"
credential = "client-secret"
tenant-id = "t"
client-id = "c"
rewrite-concurrency = 8
[targets.prod.api-versions]
clusters = "2025-10-01"
keyvault = "7.6-preview.1"
[targets.prod.retry]
max-attempts = 3
deadline = "5m"
[[targets.prod.kubeconfig]]
cluster = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a"
path = "kube.yaml"
context = "a-admin"
"#;
        let c = Config::parse(text, Path::new("/etc/k/kmsflow.toml")).unwrap();
        assert_eq!(c.default_target(), "prod");
        let s = c.settings("prod").unwrap();
        assert_eq!(s.rewrite_concurrency, 8);
        assert_eq!(s.api_versions.clusters, "2025-10-01");
        assert_eq!(s.api_versions.keyvault, "7.6-preview.1");
        assert_eq!(s.retry.max_attempts, 3);
        assert_eq!(s.retry.deadline, Duration::from_secs(300));
        assert_eq!(s.kube_contexts[0].kubeconfig, PathBuf::from("/etc/k/kube.yaml"));
        assert_eq!(c.credential("prod").unwrap().source, CredentialSource::ClientSecret);
    }

    #[test]
    fn mistakes_name_the_line_or_the_target() {
        let e = Config::parse(
            "[targets.x]\ncloud = \"AzureCloud\"\ncredentials = \"azure-cli\"\n",
            Path::new("k.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3") && e.contains("credentials"), "{e}");
        let e = Config::parse("[targets.x]\ncloud = \"Mars\"\n", Path::new("k.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("target `x`") && e.contains("Mars"), "{e}");
        let e = Config::parse(
            "[targets.x]\ncloud = \"local\"\n[targets.x.retry]\ndeadline = \"soon\"\n",
            Path::new("k.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("retry.deadline"), "{e}");
        for (field, value) in [("clusters", "2024-01-01&$expand=x"), ("keyvault", "7.5/../x")] {
            let text = format!("[targets.x]\ncloud = \"local\"\n[targets.x.api-versions]\n{field} = \"{value}\"\n");
            let e = Config::parse(&text, Path::new("k.toml"))
                .and_then(|c| c.settings("x"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("api-versions.{field}")), "{e}");
        }
    }
}
