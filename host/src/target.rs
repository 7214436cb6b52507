//! Where a run's capability calls go.
//!
//! A target pairs a name with a [`CloudBackend`]: [`Target::offline`] answers every cloud call
//! with `unavailable`, [`Target::azure`] goes to an Azure cloud through the production clients,
//! [`Target::local`] to the local cloud, and an embedding program may bring its own backend.
//!
//! The local cloud is reached through the profile it publishes in its state directory
//! ([`crate::cloud::LocalProfile`]: endpoints, CA, operator), which needs none of the emulator's
//! code. Only starting one in-process needs the `local-cloud` feature (on by default; an embedder
//! builds with `default-features = false` and links no emulator).

use crate::backend::{CloudBackend, Unavailable};
use std::sync::Arc;

/// A named destination for capability calls.
#[derive(Clone)]
pub struct Target {
    name: String,
    backend: Arc<dyn CloudBackend>,
    /// An in-process local cloud this target started, kept alive as long as the target.
    _local: Option<LocalGuard>,
}

/// What keeps an in-process local cloud serving. Without the `local-cloud` feature none can
/// start, and the type has no values.
#[cfg(feature = "local-cloud")]
type LocalGuard = Arc<kmsflow_localcloud::LocalCloud>;
#[cfg(not(feature = "local-cloud"))]
type LocalGuard = std::convert::Infallible;

/// How a target's clients behave: what `kmsflow.toml` can tune per target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSettings {
    pub api_versions: crate::cloud::ApiVersions,
    pub retry: crate::cloud::RetryPolicy,
    /// Kubeconfig contexts to use instead of clusters' admin credentials.
    pub kube_contexts: Vec<crate::cloud::KubeContext>,
    /// No-op updates in flight during a secret rewrite.
    pub rewrite_concurrency: usize,
    /// How long after its own role assignments kmsflow takes "not permitted" for propagation
    /// and retries (`rbac-propagation-window`; default 10 minutes).
    pub propagation_window: std::time::Duration,
}

impl Default for TargetSettings {
    fn default() -> Self {
        TargetSettings {
            api_versions: crate::cloud::ApiVersions::default(),
            retry: crate::cloud::RetryPolicy::default(),
            kube_contexts: Vec::new(),
            rewrite_concurrency: crate::cloud::kube::DEFAULT_CONCURRENCY,
            propagation_window: crate::cloud::azure::DEFAULT_PROPAGATION_WINDOW,
        }
    }
}

/// Why a target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot start the local cloud in {dir}: {reason}")]
    LocalCloud { dir: String, reason: String },
    /// No local cloud serves in `dir`, and this build cannot start one: kmsflow was built without
    /// the `local-cloud` feature.
    #[error(
        "no local cloud is serving in {dir} ({reason}), and this kmsflow was built without the \
         `local-cloud` feature: start `kmsflow local serve --state {dir}`, or build with the \
         `local-cloud` feature"
    )]
    LocalCloudNotServing { dir: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("cannot create the credential: {0}")]
    Credential(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("unknown target `{name}`; {hint}")]
    Unknown { name: String, hint: String },
}

impl Target {
    /// A target with no cloud: plugins that only compute (or only log) run; cloud calls fail
    /// with `unavailable`.
    pub fn offline() -> Self {
        Target::new("offline", Arc::new(Unavailable))
    }

    /// A target served by `backend`.
    pub fn new(name: impl Into<String>, backend: Arc<dyn CloudBackend>) -> Self {
        Target {
            name: name.into(),
            backend,
            _local: None,
        }
    }

    /// The local cloud whose state lives in `state_dir`: connects to one that is serving there, or
    /// starts one in-process for as long as this target lives. Calls go through the production
    /// clients, as the operator the local cloud created.
    ///
    /// Built without the `local-cloud` feature it only connects: when nothing serves in
    /// `state_dir` it returns [`TargetError::LocalCloudNotServing`], which names the fix (start
    /// `kmsflow local serve`, or build with the feature).
    pub async fn local(state_dir: &std::path::Path) -> Result<Self, TargetError> {
        Target::local_with(state_dir, &TargetSettings::default()).await
    }

    /// [`Target::local`] with explicit client settings (retries, api-versions, rewrite concurrency).
    pub async fn local_with(state_dir: &std::path::Path, settings: &TargetSettings) -> Result<Self, TargetError> {
        Target::local_as(state_dir, settings, None).await
    }

    /// [`Target::local_with`] as the principal `credential` describes (default: the operator).
    pub async fn local_as(
        state_dir: &std::path::Path,
        settings: &TargetSettings,
        credential: Option<&crate::cloud::credential::CredentialSpec>,
    ) -> Result<Self, TargetError> {
        use crate::cloud::{credential, LocalProfile};
        let (profile, guard) = match LocalProfile::read(state_dir) {
            Ok(p) if p.is_serving() => (p, None),
            Ok(p) => {
                let why = match p.port() {
                    Some(port) => format!("nothing answers on its port {port}"),
                    None => format!("its endpoint {} has no port", p.resource_manager),
                };
                Target::start_local(state_dir, why).await?
            }
            Err(e) => Target::start_local(state_dir, e.to_string()).await?,
        };
        let cloud = profile.cloud();
        let client = crate::cloud::http::client(&cloud).map_err(|e| TargetError::Http(e.to_string()))?;
        let cred = match credential {
            Some(spec) => {
                credential::from_spec(&cloud, &client, spec).map_err(|e| TargetError::Credential(e.to_string()))?
            }
            None => credential::client_secret(
                &cloud,
                &client,
                &profile.tenant_id,
                &profile.operator.client_id,
                &profile.operator.client_secret,
            )
            .map_err(|e| TargetError::Credential(e.to_string()))?,
        };
        let mut target = Target::azure("local", &cloud, client, cred, settings);
        target._local = guard;
        Ok(target)
    }

    /// Starts a local cloud in `state_dir` in this process (none serves there: `why_not_serving`),
    /// returning its profile and the handle that keeps it serving.
    #[cfg(feature = "local-cloud")]
    async fn start_local(
        state_dir: &std::path::Path,
        _why_not_serving: String,
    ) -> Result<(crate::cloud::LocalProfile, Option<LocalGuard>), TargetError> {
        let cloud = kmsflow_localcloud::LocalCloud::start(kmsflow_localcloud::Config::new(state_dir))
            .await
            .map_err(|e| TargetError::LocalCloud {
                dir: state_dir.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok((crate::cloud::LocalProfile::from(cloud.profile()), Some(Arc::new(cloud))))
    }

    /// Without the `local-cloud` feature no local cloud can start in-process: the error names
    /// the two ways out.
    #[cfg(not(feature = "local-cloud"))]
    async fn start_local(
        state_dir: &std::path::Path,
        why_not_serving: String,
    ) -> Result<(crate::cloud::LocalProfile, Option<LocalGuard>), TargetError> {
        Err(TargetError::LocalCloudNotServing {
            dir: state_dir.display().to_string(),
            reason: why_not_serving,
        })
    }

    /// A target on an Azure cloud (or the local one) through the production clients.
    pub fn azure(
        name: &str,
        cloud: &crate::cloud::CloudProfile,
        client: reqwest::Client,
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
        settings: &TargetSettings,
    ) -> Self {
        use crate::cloud::{ArmClient, AzureBackend, KeyVaultClient, KubeClients};
        let arm = ArmClient::new(
            client.clone(),
            &cloud.resource_manager,
            &cloud.arm_scope(),
            credential.clone(),
            settings.retry,
        );
        let kv = KeyVaultClient::new(client, credential, settings.retry)
            .with_dns_suffix(&cloud.keyvault_dns_suffix)
            .with_api_version(&settings.api_versions.keyvault);
        let kube = KubeClients::new(
            arm.clone(),
            &settings.api_versions.clusters,
            settings.kube_contexts.clone(),
            settings.retry,
        )
        .with_concurrency(settings.rewrite_concurrency);
        let backend = AzureBackend::new(arm, kv, settings.api_versions.clone())
            .with_kube(kube)
            .with_propagation_window(settings.propagation_window);
        Target::new(name, Arc::new(backend))
    }

    /// Target `name` from `config`: one of its `[targets.NAME]`, or the built-in `local` (the
    /// local cloud in `local_dir`) and `offline` when the file does not redefine them.
    pub async fn from_config(
        name: &str,
        config: &crate::config::Config,
        local_dir: &std::path::Path,
    ) -> Result<Self, TargetError> {
        use crate::cloud::{credential, CloudProfile};
        if !config.targets.contains_key(name) {
            return match name {
                "local" => Target::local(local_dir).await,
                "offline" => Ok(Target::offline()),
                _ => {
                    let mut known: Vec<&str> = config.targets.keys().map(String::as_str).collect();
                    known.extend(["local", "offline"]);
                    Err(TargetError::Unknown {
                        name: name.to_string(),
                        hint: format!(
                            "known targets: {}; define others in {}",
                            known.join(", "),
                            crate::config::FILE_NAME
                        ),
                    })
                }
            };
        }
        let settings = config.settings(name)?;
        if let Some(dir) = config.local_state_dir(name) {
            let spec = config.credential(name);
            let mut target = Target::local_as(dir.as_deref().unwrap_or(local_dir), &settings, spec.as_ref()).await?;
            target.name = name.to_string();
            return Ok(target);
        }
        let cloud_name = config.targets.get(name).map(|t| t.cloud.as_str()).unwrap_or_default();
        let cloud = CloudProfile::builtin(cloud_name).map_err(|e| TargetError::Unknown {
            name: name.to_string(),
            hint: e.to_string(),
        })?;
        let client = crate::cloud::http::client(&cloud).map_err(|e| TargetError::Http(e.to_string()))?;
        let spec = config.credential(name).unwrap_or_default();
        let cred = credential::from_spec(&cloud, &client, &spec).map_err(|e| TargetError::Credential(e.to_string()))?;
        Ok(Target::azure(name, &cloud, client, cred, &settings))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn backend(&self) -> Arc<dyn CloudBackend> {
        Arc::clone(&self.backend)
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    /// Built without the `local-cloud` feature, a state directory where nothing serves is an
    /// error that names both ways out, not an attempt to start an emulator that is not linked.
    #[cfg(not(feature = "local-cloud"))]
    #[tokio::test]
    async fn without_the_feature_a_local_target_only_connects() {
        #![allow(clippy::unwrap_used)]
        let dir = tempfile::tempdir().unwrap();
        let err = super::Target::local(dir.path()).await.unwrap_err();
        assert!(matches!(err, super::TargetError::LocalCloudNotServing { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("kmsflow local serve"), "{message}");
        assert!(message.contains("`local-cloud` feature"), "{message}");
    }
}
