//! The API server's encryption configuration for secrets, derived from the cluster's KMS block
//! and Kubernetes version, and the transformer that applies it: a primary provider for writes,
//! the previous key's provider kept for reads (AKS's two keys), DEK caches, and Key Vault calls
//! made as the cluster's identity from the cluster's network origin.

use super::envelope::{self, AtRest};
use super::K8sError;
use crate::keyvault::{self, CryptoOp, KeyRef, KvCaller, Origin};
use crate::state::Shared;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A key version the API server has a provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    pub key_id: String,
    pub vault: String,
    pub name: String,
    pub version: String,
}

impl KmsKey {
    fn parse(key_id: &str) -> Option<KmsKey> {
        let rest = key_id.strip_prefix("https://")?;
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.len() != 4 || segs[1] != "keys" {
            return None;
        }
        Some(KmsKey {
            key_id: key_id.to_string(),
            vault: keyvault::vault_of_host(segs[0])?,
            name: segs[2].to_string(),
            version: segs[3].to_string(),
        })
    }

    /// The provider name in the envelope prefix: one provider per key version, as AKS runs one
    /// plugin instance per key during a rotation.
    pub fn provider(&self) -> String {
        format!("azurekmsprovider-{}", &self.version[..self.version.len().min(8)])
    }

    /// KMS v2 `keyID`: lowercase hex SHA-256 of the versioned key URL, as the Azure plugin reports.
    pub fn v2_key_id(&self) -> String {
        hex::encode(Sha256::digest(self.key_id.as_bytes()))
    }
}

/// The encryption configuration of one cluster's API server.
#[derive(Debug, Clone)]
pub struct ClusterKms {
    /// Lowercased cluster id: the cluster's namespace in the etcd table.
    pub cluster: String,
    /// KMS v2 from Kubernetes 1.27 on.
    pub v2: bool,
    /// The key new writes use; none when KMS is off.
    pub primary: Option<KmsKey>,
    /// The previous key, still readable.
    pub previous: Option<KmsKey>,
    caller: Option<KvCaller>,
}

/// Decrypted data keys the API server keeps in memory (lost when the local cloud restarts, like
/// the real API server's caches).
#[derive(Default)]
pub struct DekCache {
    deks: HashMap<Vec<u8>, [u8; 32]>,
    /// The v2 seed in use for writes: (keyID, seed, its Key Vault encryption).
    write_seed: Option<(String, [u8; 32], Vec<u8>)>,
}

/// Most data keys cached per cluster (the API server's default `cachesize`).
const CACHE_SIZE: usize = 1000;

impl ClusterKms {
    pub fn of(state: &Shared, doc: &Value) -> ClusterKms {
        let p = &doc["properties"];
        let kms = &p["securityProfile"]["azureKeyVaultKms"];
        let minor = p["currentKubernetesVersion"]
            .as_str()
            .and_then(|v| v.split('.').nth(1))
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(30);
        let primary = (kms["enabled"] == Value::Bool(true))
            .then(|| kms["keyId"].as_str().and_then(KmsKey::parse))
            .flatten();
        let previous = p["kmsflowPreviousKeyId"].as_str().and_then(KmsKey::parse);
        let principal = doc["identity"]["userAssignedIdentities"]
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(|v| v["principalId"].as_str())
            .map(str::to_string);
        let cluster = doc["id"].as_str().unwrap_or_default().to_ascii_lowercase();
        let origin = if kms["keyVaultNetworkAccess"] == "Private" {
            let vault = primary
                .as_ref()
                .or(previous.as_ref())
                .map(|k| k.vault.clone())
                .unwrap_or_default();
            Origin::PrivateEndpoint(format!("{cluster}/privateendpoints/kms-{vault}"))
        } else {
            Origin::Public("aks".into())
        };
        ClusterKms {
            cluster,
            v2: minor >= 27,
            primary,
            previous,
            caller: principal.map(|object_id| KvCaller {
                object_id,
                tenant_id: state.tenant_id.clone(),
                origin,
            }),
        }
    }

    fn kv(&self, state: &Shared, key: &KmsKey, op: CryptoOp, alg: &str, data: &[u8]) -> Result<Vec<u8>, K8sError> {
        let caller = self
            .caller
            .as_ref()
            .ok_or_else(|| K8sError::internal("the cluster has no user-assigned identity for KMS"))?;
        let key_ref = KeyRef {
            vault: &key.vault,
            name: &key.name,
            version: Some(&key.version),
        };
        self.injected_fault(state, key, op)?;
        keyvault::key_operation(state, caller, key_ref, op, alg, data)
            .map(|(_, out)| out)
            .map_err(|e| {
                K8sError::internal(format!(
                    "rpc error: code = Unknown desc = failed to {} using key {}: {} {} ({})",
                    op.permission().to_ascii_lowercase(),
                    key.key_id,
                    e.status.as_u16(),
                    e.message,
                    e.inner.as_deref().unwrap_or(&e.code)
                ))
            })
    }

    /// The fault injected on this KMS call, if any (`faults::Service::Kms`), as the failure the
    /// API server reports when its KMS plugin's call to Key Vault fails: throttled (429), a
    /// 500/503, a broken connection, or — for a hang — the plugin's deadline exceeded, answered
    /// after the hang's hold (the wait happens in [`super::handle`], not here, so no lock or
    /// thread is held). An encrypt or decrypt has no lasting effect, so the after-handler kinds
    /// fail the call like their before-handler twins.
    fn injected_fault(&self, state: &Shared, key: &KmsKey, op: CryptoOp) -> Result<(), K8sError> {
        use crate::faults::Fault;
        let (fault, _) = state.faults.decide(crate::faults::Service::Kms, Some(&self.cluster));
        let op_name = op.permission().to_ascii_lowercase();
        let desc = match fault {
            Fault::None => return Ok(()),
            Fault::Throttle(_) => format!(
                "code = Unknown desc = failed to {op_name} using key {}: 429 Too Many Requests (Throttled)",
                key.key_id
            ),
            Fault::ServerError(c) | Fault::ServerErrorAfter(c) => format!(
                "code = Unknown desc = failed to {op_name} using key {}: {c} Encountered internal server error. Please try again. (InternalServerError)",
                key.key_id
            ),
            Fault::Drop | Fault::DropAfter => format!(
                "code = Unavailable desc = failed to {op_name} using key {}: read: connection reset by peer",
                key.key_id
            ),
            Fault::Hang(_) => "code = DeadlineExceeded desc = context deadline exceeded".to_string(),
        };
        let hold = match fault {
            Fault::Hang(hold) => hold,
            _ => std::time::Duration::ZERO,
        };
        let mut e = K8sError::internal(format!("rpc error: {desc}"));
        e.kms_fault = Some(super::KmsFault {
            label: fault.kms_label(),
            hold,
        });
        Err(e)
    }

    /// Transforms an object for storage under `etcd_key`.
    pub fn encrypt(&self, state: &Shared, etcd_key: &str, plaintext: &[u8]) -> Result<Vec<u8>, K8sError> {
        let Some(key) = &self.primary else {
            return Ok(plaintext.to_vec());
        };
        let mut caches = state.dek_caches.lock().unwrap_or_else(|p| p.into_inner());
        let cache = caches.entry(self.cluster.clone()).or_default();
        if !self.v2 {
            let dek = envelope::new_key();
            let encrypted = base64_text(&self.kv(state, key, CryptoOp::Encrypt, "RSA1_5", &dek)?);
            remember(cache, encrypted.clone(), dek);
            return Ok(envelope::seal_v1(
                &key.provider(),
                &dek,
                &encrypted,
                etcd_key,
                plaintext,
            ));
        }
        let key_id = key.v2_key_id();
        let (seed, encrypted) = match &cache.write_seed {
            Some((id, seed, enc)) if *id == key_id => (*seed, enc.clone()),
            _ => {
                let seed = envelope::new_key();
                let encrypted = base64_text(&self.kv(state, key, CryptoOp::Encrypt, "RSA-OAEP-256", &seed)?);
                cache.write_seed = Some((key_id.clone(), seed, encrypted.clone()));
                remember(cache, encrypted.clone(), seed);
                (seed, encrypted)
            }
        };
        let annotations: [(&str, &[u8]); 2] = [
            ("version.azure.akv.io", b"1"),
            ("algorithm.azure.akv.io", b"RSA-OAEP-256"),
        ];
        Ok(envelope::seal_v2(
            &key.provider(),
            &key_id,
            &seed,
            &encrypted,
            &annotations,
            etcd_key,
            plaintext,
        ))
    }

    /// Reads a stored value: the plaintext, and whether it is stale (written under anything but
    /// the primary provider, so a no-op write must rewrite it).
    pub fn decrypt(&self, state: &Shared, etcd_key: &str, stored: &[u8]) -> Result<(Vec<u8>, bool), K8sError> {
        let parsed = envelope::parse(stored)
            .map_err(|e| K8sError::internal(format!("unable to transform key \"{etcd_key}\": {e}")))?;
        let keys: Vec<&KmsKey> = self.primary.iter().chain(self.previous.iter()).collect();
        let no_provider = || {
            K8sError::internal(format!(
                "unable to transform key \"{etcd_key}\": no matching prefix found"
            ))
        };
        let (key, encrypted, v2) = match &parsed {
            AtRest::Plain => return Ok((stored.to_vec(), self.primary.is_some())),
            AtRest::V1 {
                provider,
                encrypted_dek,
                ..
            } => (
                *keys
                    .iter()
                    .find(|k| k.provider() == *provider)
                    .ok_or_else(no_provider)?,
                encrypted_dek.clone(),
                false,
            ),
            AtRest::V2 { object, .. } => (
                *keys
                    .iter()
                    .find(|k| k.v2_key_id() == object.key_id)
                    .ok_or_else(no_provider)?,
                object.encrypted_dek_source.clone(),
                true,
            ),
        };
        let cached = {
            let caches = state.dek_caches.lock().unwrap_or_else(|p| p.into_inner());
            caches.get(&self.cluster).and_then(|c| c.deks.get(&encrypted).copied())
        };
        let dek = match cached {
            Some(dek) => dek,
            None => {
                let alg = if v2 { "RSA-OAEP-256" } else { "RSA1_5" };
                let raw =
                    base64_decode(&encrypted).ok_or_else(|| K8sError::internal("malformed encrypted data key"))?;
                let plain = self.kv(state, key, CryptoOp::Decrypt, alg, &raw)?;
                let dek: [u8; 32] = plain
                    .try_into()
                    .map_err(|_| K8sError::internal("data key of the wrong length"))?;
                let mut caches = state.dek_caches.lock().unwrap_or_else(|p| p.into_inner());
                remember(caches.entry(self.cluster.clone()).or_default(), encrypted.clone(), dek);
                dek
            }
        };
        let plaintext = match &parsed {
            AtRest::V1 { data, .. } => envelope::open_v1(&dek, data, etcd_key),
            AtRest::V2 { object, .. } => envelope::open_v2(&dek, object, etcd_key),
            AtRest::Plain => unreachable!("returned above"),
        }
        .map_err(|e| K8sError::internal(format!("unable to transform key \"{etcd_key}\": {e}")))?;
        let stale = self.primary.as_ref() != Some(key) || v2 != self.v2;
        Ok((plaintext, stale))
    }
}

fn remember(cache: &mut DekCache, encrypted: Vec<u8>, dek: [u8; 32]) {
    if cache.deks.len() >= CACHE_SIZE {
        cache.deks.clear();
    }
    cache.deks.insert(encrypted, dek);
}

/// Key Vault's base64url text, as the bytes the Azure plugin stores.
fn base64_text(raw: &[u8]) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(raw)
        .into_bytes()
}

fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// Forgets every cached data key of `cluster` (what an API server restart does).
pub fn drop_caches(state: &Shared, cluster: &str) {
    let mut caches = state.dek_caches.lock().unwrap_or_else(|p| p.into_inner());
    caches.remove(&cluster.to_ascii_lowercase());
}

/// What inspection reports about one stored value, without decrypting it.
pub fn describe(kms: &ClusterKms, stored: &[u8]) -> (String, Option<String>, bool) {
    let keys: Vec<&KmsKey> = kms.primary.iter().chain(kms.previous.iter()).collect();
    match envelope::parse(stored) {
        Ok(AtRest::Plain) => ("plain".into(), None, kms.primary.is_some()),
        Ok(AtRest::V1 { provider, .. }) => {
            let key = keys.iter().find(|k| k.provider() == provider);
            let version = key.map(|k| k.version.clone());
            let stale = kms.v2 || kms.primary.as_ref().map(KmsKey::provider).as_ref() != Some(&provider);
            (
                "kms-v1".into(),
                version.or(Some(format!("unknown ({provider})"))),
                stale,
            )
        }
        Ok(AtRest::V2 { object, .. }) => {
            let key = keys.iter().find(|k| k.v2_key_id() == object.key_id);
            let stale = !kms.v2 || kms.primary.as_ref().map(KmsKey::v2_key_id) != Some(object.key_id.clone());
            (
                "kms-v2".into(),
                key.map(|k| k.version.clone())
                    .or(Some(format!("unknown ({})", object.key_id))),
                stale,
            )
        }
        Err(_) => ("corrupt".into(), None, true),
    }
}
