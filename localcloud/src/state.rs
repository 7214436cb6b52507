//! What every handler shares: the database, the cloud's identity (tenant, endpoints), the token
//! signing key, and run-time switches (operation duration, faults).

use crate::db::Db;
use crate::faults::Faults;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The well-known audiences of the local cloud (the `aud` of its tokens, and the scopes clients
/// request with `/.default` appended).
pub const ARM_AUDIENCE: &str = "https://management.localhost";
pub const VAULT_AUDIENCE: &str = "https://vault.localhost";
pub const GRAPH_AUDIENCE: &str = "https://graph.localhost";
/// The AKS server application (the same id in every cloud): Entra-integrated clusters' API
/// servers take tokens issued for it, requested with scope `{id}/.default` (azure-reference.md
/// §1.9: with local accounts disabled, this is the only way in).
pub const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
/// The DNS suffix of vault hosts: `{vault}.vault.localhost`.
pub const VAULT_SUFFIX: &str = "vault.localhost";

pub struct AppState {
    pub db: Db,
    pub tenant_id: String,
    pub port: u16,
    pub token_key: Vec<u8>,
    pub admin_key: String,
    /// PEM of the local CA (written into the kubeconfigs the clusters hand out).
    pub ca_pem: String,
    /// Lifetime of tokens issued from now on (a run-time setting).
    pub token_lifetime: RwLock<Duration>,
    /// Tokens minted with a lower generation are refused as expired; persisted in `meta`.
    pub token_generation: std::sync::atomic::AtomicU64,
    /// Each cluster's client-certificate verifier, by lowercased cluster id (built from the
    /// cluster's CA in the database on first use).
    pub cluster_verifiers: std::sync::Mutex<std::collections::HashMap<String, crate::pki::Verifier>>,
    pub operation_duration: RwLock<Duration>,
    /// How long a role assignment (or its deletion) takes to take effect; see `directory.rs`.
    pub rbac_propagation: RwLock<Duration>,
    /// How long-running operations are answered (see [`crate::arm::lro`]).
    pub lro_shape: RwLock<crate::arm::lro::LroShape>,
    /// How long a new vault stays `RegisteringDns` before its data plane answers.
    pub vault_provisioning: RwLock<Duration>,
    pub faults: Faults,
    /// Each cluster API server's in-memory data-key cache, by lowercased cluster id.
    pub dek_caches: std::sync::Mutex<std::collections::HashMap<String, crate::k8s::kms::DekCache>>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// `https://localhost:{port}`: ARM, Entra, Graph and the admin API.
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// `https://{vault}.vault.localhost:{port}`.
    pub fn vault_url(&self, vault: &str) -> String {
        format!("https://{}.{VAULT_SUFFIX}:{}", vault.to_ascii_lowercase(), self.port)
    }

    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.base_url(), self.tenant_id)
    }

    pub fn operation_duration(&self) -> Duration {
        self.operation_duration.read().map(|d| *d).unwrap_or_default()
    }

    /// The current RBAC propagation delay (the `Config` value, or the admin API's last setting).
    pub fn rbac_propagation(&self) -> Duration {
        self.rbac_propagation.read().map(|d| *d).unwrap_or_default()
    }

    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime.read().map(|d| *d).unwrap_or_default()
    }

    pub fn token_generation(&self) -> u64 {
        self.token_generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn lro_shape(&self) -> crate::arm::lro::LroShape {
        self.lro_shape.read().map(|d| *d).unwrap_or_default()
    }

    pub fn vault_provisioning(&self) -> Duration {
        self.vault_provisioning.read().map(|d| *d).unwrap_or_default()
    }
}
