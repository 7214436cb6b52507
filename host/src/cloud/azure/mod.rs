//! `AzureBackend`: the production [`CloudBackend`], built on the ARM, Key Vault and Kubernetes
//! clients. The same code serves Azure and the local cloud.
//!
//! One file per capability, as `capabilities/` is split: `identity.rs`, `vaults.rs` (the vault
//! resource and crypto access), `keys.rs` (the data plane), `roles.rs`, `clusters.rs`,
//! `generic.rs` (the `arm` capability); the Kubernetes calls delegate to [`KubeClients`].
//!
//! Every method receives resources as [`ResourceId`]s — the values the grant check approved —
//! and builds URLs only from their segments (see [`ArmClient::url`]), so the resource on the wire
//! is the resource that was authorised.
//!
//! Every state-changing method is an *ensure*: it reads first and writes only what differs, so a
//! retried or resumed step repeats no external effect (design.md §6). Role assignments are named by
//! a GUID derived from (scope, role, principal), so a second attempt finds the first.

mod clusters;
mod generic;
mod identity;
mod keys;
mod roles;
mod vaults;

pub use roles::{assignment_name, role_guid};

use super::arm::{ArmClient, CloudError, RetryPolicy};
use super::keyvault::KeyVaultClient;
use super::kube::{KubeClients, KubeError};
use crate::backend::{Authorized, CloudBackend};
use crate::capabilities::CapabilityError;
use crate::resource_id::ResourceId;
use crate::wit::aks::{Cluster, ClusterSpec, KmsConfig};
use crate::wit::arm::{Method as ArmMethod, Response as ArmReply};
use crate::wit::identity::{Principal, UserAssignedIdentity};
use crate::wit::keyvault::{AccessMechanism, BuiltinRole, KeyVersion, Vault, VaultSpec};
use crate::wit::kubernetes::{Pod, RewritePage, State};
use crate::wit::types::ErrorKind;
use async_trait::async_trait;
use serde_json::Value;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// api-versions per resource type (defaults from the reference; configurable per target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    pub resource_groups: String,
    pub vaults: String,
    pub identities: String,
    pub role_assignments: String,
    pub clusters: String,
    /// The Key Vault data plane (`7.5`).
    pub keyvault: String,
}

impl Default for ApiVersions {
    fn default() -> Self {
        ApiVersions {
            resource_groups: "2021-04-01".into(),
            vaults: "2025-05-01".into(),
            identities: "2023-01-31".into(),
            role_assignments: "2022-04-01".into(),
            clusters: "2026-01-01".into(),
            keyvault: super::keyvault::DEFAULT_API_VERSION.into(),
        }
    }
}

/// How long after kmsflow made a role assignment a "not permitted" answer is taken for
/// propagation and retried: Azure documents up to 10 minutes for role assignments to take effect.
pub const DEFAULT_PROPAGATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The production backend for one target.
pub struct AzureBackend {
    arm: ArmClient,
    kv: KeyVaultClient,
    kube: KubeClients,
    versions: ApiVersions,
    /// See [`DEFAULT_PROPAGATION_WINDOW`].
    propagation_window: Duration,
    /// When this backend last made (or found made) a role assignment.
    last_grant: Mutex<Option<Instant>>,
}

type R<T> = Result<T, CapabilityError>;

fn guest(e: CloudError) -> CapabilityError {
    CapabilityError::Guest(e.to_wit())
}

fn kube_err(e: KubeError) -> CapabilityError {
    CapabilityError::Guest(e.to_wit())
}

fn invalid(code: &str, message: impl Into<String>) -> CapabilityError {
    CapabilityError::guest(ErrorKind::Invalid, code, message)
}

/// `id` with `tail` appended (a child resource or an action), as a guest error if it breaks the
/// resource id rules.
fn child(id: &ResourceId, tail: &[&str]) -> R<ResourceId> {
    id.child(tail).map_err(|e| invalid("InvalidResourceId", e.to_string()))
}

/// A string field of a JSON document ("" when absent).
fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

impl AzureBackend {
    /// A backend whose Kubernetes clients use each cluster's admin credential.
    pub fn new(arm: ArmClient, kv: KeyVaultClient, versions: ApiVersions) -> Self {
        let kube = KubeClients::new(arm.clone(), &versions.clusters, Vec::new(), RetryPolicy::default());
        AzureBackend {
            arm,
            kv,
            kube,
            versions,
            propagation_window: DEFAULT_PROPAGATION_WINDOW,
            last_grant: Mutex::new(None),
        }
    }

    /// Sets how long after its own role assignments the backend waits out propagation.
    pub fn with_propagation_window(mut self, window: Duration) -> Self {
        self.propagation_window = window;
        self
    }

    /// Notes that a role assignment was just made (or found already made).
    fn granted(&self) {
        *self.last_grant.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Runs `op`, and while it fails because a role assignment kmsflow made has not taken effect
    /// yet (see [`CloudError::awaits_role_propagation`]) and the propagation window since that
    /// assignment is open, runs it again after a pause (2 s doubling to 30 s). Each wait is a
    /// retry on the call's wire report (so in the journal) and an info line. Any other failure,
    /// or the same one with no recent assignment, is returned at once.
    async fn through_propagation<T, F, Fut>(&self, what: &str, op: F) -> Result<T, CloudError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let mut pause = Duration::from_secs(2);
        loop {
            match op().await {
                Err(e) if e.awaits_role_propagation() => {
                    let since = *self.last_grant.lock().unwrap_or_else(|p| p.into_inner());
                    let open = since.is_some_and(|t| t.elapsed() + pause < self.propagation_window);
                    if !open {
                        return Err(e);
                    }
                    let waited = since.map(|t| t.elapsed().as_secs()).unwrap_or_default();
                    super::wire::record_retry(&format!("{what}: waiting for a role assignment to take effect"));
                    super::wire::notice(&format!(
                        "waiting for a role assignment to take effect ({waited}s so far, up to {}s)",
                        self.propagation_window.as_secs()
                    ));
                    tracing::info!(
                        "{what}: the role assignment made {waited}s ago has not taken effect yet; retrying in {}s \
                         (up to {}s after it)",
                        pause.as_secs(),
                        self.propagation_window.as_secs()
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                other => return other,
            }
        }
    }

    /// Replaces the Kubernetes clients (kubeconfig contexts, rewrite concurrency).
    pub fn with_kube(mut self, kube: KubeClients) -> Self {
        self.kube = kube;
        self
    }

    async fn get_doc(&self, id: &ResourceId, version: &str) -> R<Value> {
        self.arm.get(id, version).await.map(|r| r.body).map_err(guest)
    }
}

#[async_trait]
impl CloudBackend for AzureBackend {
    async fn whoami(&self, auth: &Authorized) -> R<Principal> {
        self.principal(auth).await
    }
    async fn get_user_assigned(&self, _auth: &Authorized, id: &ResourceId) -> R<UserAssignedIdentity> {
        self.user_assigned(id).await
    }
    async fn ensure_user_assigned(
        &self,
        _auth: &Authorized,
        id: &ResourceId,
        location: &str,
    ) -> R<UserAssignedIdentity> {
        self.ensure_identity(id, location).await
    }

    async fn ensure_vault(&self, auth: &Authorized, vault: &ResourceId, spec: &VaultSpec) -> R<Vault> {
        self.ensure_vault_doc(auth, vault, spec).await
    }
    async fn get_vault(&self, _auth: &Authorized, vault: &ResourceId) -> R<Vault> {
        self.vault(vault).await
    }
    async fn set_public_network_access(&self, _auth: &Authorized, vault: &ResourceId, enabled: bool) -> R<Vault> {
        self.public_access(vault, enabled).await
    }
    async fn grant_crypto_access(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        principal_id: &str,
    ) -> R<AccessMechanism> {
        self.crypto_access(auth, vault, principal_id).await
    }
    async fn grant_role(
        &self,
        _auth: &Authorized,
        scope: &ResourceId,
        role: BuiltinRole,
        principal_id: &str,
        principal_type: &str,
    ) -> R<()> {
        self.assign_role(scope, role, principal_id, principal_type).await
    }
    async fn can_encrypt_decrypt(
        &self,
        _auth: &Authorized,
        vault: &ResourceId,
        _name: &str,
        principal_id: &str,
    ) -> R<bool> {
        self.may_encrypt_decrypt(vault, principal_id).await
    }

    async fn ensure_key(&self, _auth: &Authorized, vault: &ResourceId, name: &str, size: u32) -> R<KeyVersion> {
        self.ensure_rsa_key(vault, name, size).await
    }
    async fn get_key(
        &self,
        _auth: &Authorized,
        vault: &ResourceId,
        name: &str,
        version: Option<&str>,
    ) -> R<KeyVersion> {
        self.key(vault, name, version).await
    }
    async fn list_key_versions(&self, _auth: &Authorized, vault: &ResourceId, name: &str) -> R<Vec<KeyVersion>> {
        self.key_versions(vault, name).await
    }
    async fn new_key_version(&self, auth: &Authorized, vault: &ResourceId, name: &str) -> R<KeyVersion> {
        self.rotate_key(auth, vault, name).await
    }
    async fn disable_key_version(
        &self,
        _auth: &Authorized,
        vault: &ResourceId,
        name: &str,
        version: &str,
    ) -> R<KeyVersion> {
        self.disable_key(vault, name, version).await
    }

    async fn get_cluster(&self, _auth: &Authorized, cluster: &ResourceId) -> R<Cluster> {
        self.cluster(cluster).await
    }
    async fn list_clusters(&self, _auth: &Authorized, subscription: &ResourceId) -> R<Vec<Cluster>> {
        self.clusters(subscription).await
    }
    async fn set_kms(&self, _auth: &Authorized, cluster: &ResourceId, kms: &KmsConfig) -> R<Cluster> {
        self.put_kms(cluster, kms).await
    }
    async fn create_cluster(&self, _auth: &Authorized, cluster: &ResourceId, spec: &ClusterSpec) -> R<Cluster> {
        self.new_cluster(cluster, spec).await
    }
    async fn upgrade(&self, _auth: &Authorized, cluster: &ResourceId, version: &str) -> R<Cluster> {
        self.upgrade_to(cluster, version).await
    }

    async fn count_secrets(&self, _auth: &Authorized, cluster: &ResourceId) -> R<u64> {
        self.kube.count_secrets(cluster).await.map_err(kube_err)
    }
    async fn rewrite_secrets_page(
        &self,
        _auth: &Authorized,
        cluster: &ResourceId,
        continue_token: Option<&str>,
        page_size: u32,
    ) -> R<RewritePage> {
        self.kube
            .rewrite_page(cluster, continue_token, page_size)
            .await
            .map_err(kube_err)
    }
    async fn list_pods(
        &self,
        _auth: &Authorized,
        cluster: &ResourceId,
        namespace: &str,
        label_selector: &str,
    ) -> R<Vec<Pod>> {
        self.kube
            .list_pods(cluster, namespace, label_selector)
            .await
            .map_err(kube_err)
    }
    async fn get_state(&self, _auth: &Authorized, cluster: &ResourceId) -> R<Option<State>> {
        self.kube.get_state(cluster).await.map_err(kube_err)
    }
    async fn put_state(
        &self,
        _auth: &Authorized,
        cluster: &ResourceId,
        data: &[(String, String)],
        resource_version: Option<&str>,
    ) -> R<State> {
        self.kube
            .put_state(cluster, data, resource_version)
            .await
            .map_err(kube_err)
    }

    async fn arm_request(
        &self,
        _auth: &Authorized,
        method: ArmMethod,
        path: &ResourceId,
        api_version: &str,
        body: Option<&Value>,
    ) -> R<ArmReply> {
        self.generic(method, path, api_version, body).await
    }
}
