//! The seam between capabilities and the outside world.
//!
//! A [`CloudBackend`] performs capability calls that the step's grants already allowed: the
//! production one (issue 5) speaks to Azure and Kubernetes over HTTP; the default
//! [`Unavailable`] answers every call with `unavailable`. Every method takes an [`Authorized`]
//! token, which only the policy point in [`crate::capabilities`] can mint, so a backend cannot be
//! reached by a call that skipped the grant check.

use crate::capabilities::CapabilityError;
use crate::resource_id::ResourceId;
use crate::wit::{aks, arm, identity, keyvault, kubernetes, types};
use async_trait::async_trait;

/// Proof that a call passed the step's grant check, with what a backend needs to make the call
/// idempotent across retries and resumes (e.g. tagging a new key version with the run and call).
#[derive(Debug, Clone)]
pub struct Authorized {
    pub(crate) run_id: String,
    pub(crate) step: String,
    pub(crate) call: &'static str,
    pub(crate) seq: u64,
}

impl Authorized {
    /// The run this call belongs to.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }
    /// The step making the call.
    pub fn step(&self) -> &str {
        &self.step
    }
    /// The call's stable name, e.g. `keyvault.new-key-version`.
    pub fn call(&self) -> &'static str {
        self.call
    }
    /// The call's sequence number within the step (1-based), stable when a step is re-run.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

type R<T> = Result<T, CapabilityError>;

fn unavailable<T>(auth: &Authorized) -> R<T> {
    Err(CapabilityError::guest(
        types::ErrorKind::Unavailable,
        "NoBackend",
        format!("{} is not available: this target has no cloud backend", auth.call),
    ))
}

/// Performs authorised capability calls. Resources arrive as parsed [`ResourceId`]s — the very
/// values the grant check approved — and every other argument has passed the checks of
/// [`crate::names`]. Every method defaults to `unavailable`, so a backend
/// (or a test double) implements only what it supports.
#[async_trait]
#[allow(unused_variables)]
pub trait CloudBackend: Send + Sync {
    async fn whoami(&self, auth: &Authorized) -> R<identity::Principal> {
        unavailable(auth)
    }
    async fn get_user_assigned(&self, auth: &Authorized, id: &ResourceId) -> R<identity::UserAssignedIdentity> {
        unavailable(auth)
    }
    async fn ensure_user_assigned(
        &self,
        auth: &Authorized,
        id: &ResourceId,
        location: &str,
    ) -> R<identity::UserAssignedIdentity> {
        unavailable(auth)
    }

    async fn ensure_vault(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        spec: &keyvault::VaultSpec,
    ) -> R<keyvault::Vault> {
        unavailable(auth)
    }
    async fn get_vault(&self, auth: &Authorized, vault: &ResourceId) -> R<keyvault::Vault> {
        unavailable(auth)
    }
    async fn set_public_network_access(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        enabled: bool,
    ) -> R<keyvault::Vault> {
        unavailable(auth)
    }
    async fn ensure_key(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        name: &str,
        size: u32,
    ) -> R<keyvault::KeyVersion> {
        unavailable(auth)
    }
    async fn get_key(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        name: &str,
        version: Option<&str>,
    ) -> R<keyvault::KeyVersion> {
        unavailable(auth)
    }
    async fn list_key_versions(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        name: &str,
    ) -> R<Vec<keyvault::KeyVersion>> {
        unavailable(auth)
    }
    async fn new_key_version(&self, auth: &Authorized, vault: &ResourceId, name: &str) -> R<keyvault::KeyVersion> {
        unavailable(auth)
    }
    async fn disable_key_version(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        name: &str,
        version: &str,
    ) -> R<keyvault::KeyVersion> {
        unavailable(auth)
    }
    async fn grant_crypto_access(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        principal_id: &str,
    ) -> R<keyvault::AccessMechanism> {
        unavailable(auth)
    }
    async fn grant_role(
        &self,
        auth: &Authorized,
        scope: &ResourceId,
        role: keyvault::BuiltinRole,
        principal_id: &str,
        principal_type: &str,
    ) -> R<()> {
        unavailable(auth)
    }
    async fn can_encrypt_decrypt(
        &self,
        auth: &Authorized,
        vault: &ResourceId,
        name: &str,
        principal_id: &str,
    ) -> R<bool> {
        unavailable(auth)
    }

    async fn get_cluster(&self, auth: &Authorized, cluster: &ResourceId) -> R<aks::Cluster> {
        unavailable(auth)
    }
    async fn create_cluster(
        &self,
        auth: &Authorized,
        cluster: &ResourceId,
        spec: &aks::ClusterSpec,
    ) -> R<aks::Cluster> {
        unavailable(auth)
    }
    async fn set_kms(&self, auth: &Authorized, cluster: &ResourceId, kms: &aks::KmsConfig) -> R<aks::Cluster> {
        unavailable(auth)
    }
    async fn upgrade(&self, auth: &Authorized, cluster: &ResourceId, version: &str) -> R<aks::Cluster> {
        unavailable(auth)
    }
    async fn list_clusters(&self, auth: &Authorized, subscription: &ResourceId) -> R<Vec<aks::Cluster>> {
        unavailable(auth)
    }

    async fn count_secrets(&self, auth: &Authorized, cluster: &ResourceId) -> R<u64> {
        unavailable(auth)
    }
    async fn rewrite_secrets_page(
        &self,
        auth: &Authorized,
        cluster: &ResourceId,
        continue_token: Option<&str>,
        page_size: u32,
    ) -> R<kubernetes::RewritePage> {
        unavailable(auth)
    }
    async fn list_pods(
        &self,
        auth: &Authorized,
        cluster: &ResourceId,
        namespace: &str,
        label_selector: &str,
    ) -> R<Vec<kubernetes::Pod>> {
        unavailable(auth)
    }
    async fn get_state(&self, auth: &Authorized, cluster: &ResourceId) -> R<Option<kubernetes::State>> {
        unavailable(auth)
    }
    async fn put_state(
        &self,
        auth: &Authorized,
        cluster: &ResourceId,
        data: &[(String, String)],
        resource_version: Option<&str>,
    ) -> R<kubernetes::State> {
        unavailable(auth)
    }

    async fn arm_request(
        &self,
        auth: &Authorized,
        method: arm::Method,
        path: &ResourceId,
        api_version: &str,
        body: Option<&serde_json::Value>,
    ) -> R<arm::Response> {
        unavailable(auth)
    }
}

/// The backend of a target without a cloud: every call is `unavailable`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unavailable;

impl CloudBackend for Unavailable {}
