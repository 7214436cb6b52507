//! The backend half of the key functions of `keyvault`: the Key Vault data plane. Key names and
//! versions were checked at the WIT boundary and are checked again here before they become URL
//! segments; the vault's base URL comes from [`AzureBackend::vault_base`].

use super::{guest, invalid, s, AzureBackend, R};
use crate::backend::Authorized;
use crate::capabilities::CapabilityError;
use crate::cloud::arm::CloudError;
use crate::names;
use crate::resource_id::ResourceId;
use crate::wit::keyvault::{KeyType, KeyVersion};
use crate::wit::types::ErrorKind;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

fn key_version_of(bundle: &Value) -> KeyVersion {
    let key = &bundle["key"];
    let kid = s(&key["kid"]);
    let mut parts = kid.rsplit('/');
    let version = parts.next().unwrap_or_default().to_string();
    let name = parts.next().unwrap_or_default().to_string();
    let attrs = &bundle["attributes"];
    let key_type = match key["kty"].as_str().unwrap_or_default() {
        "RSA-HSM" => KeyType::RsaHsm,
        "EC" => KeyType::Ec,
        "EC-HSM" => KeyType::EcHsm,
        "oct" => KeyType::Oct,
        "oct-HSM" => KeyType::OctHsm,
        _ => KeyType::Rsa,
    };
    let key_size = key["n"]
        .as_str()
        .and_then(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).ok())
        .map(|b| (b.len() * 8) as u32);
    KeyVersion {
        key_id: kid,
        name,
        version,
        key_type,
        key_size,
        enabled: attrs["enabled"] != json!(false),
        expires: attrs["exp"].as_i64(),
        not_before: attrs["nbf"].as_i64(),
        created: attrs["created"].as_i64().unwrap_or(0),
        tags: bundle["tags"]
            .as_object()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), s(v))).collect())
            .unwrap_or_default(),
    }
}

fn checked(name: &str, version: Option<&str>) -> R<()> {
    names::key_name(name).map_err(|e| invalid("InvalidArgument", e.to_string()))?;
    if let Some(v) = version {
        names::key_version(v).map_err(|e| invalid("InvalidArgument", e.to_string()))?;
    }
    Ok(())
}

impl AzureBackend {
    /// One data-plane call, waited through role propagation (see `through_propagation`).
    async fn kv_call(
        &self,
        method: Method,
        base: &url::Url,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<crate::cloud::ArmResponse, CloudError> {
        self.through_propagation("Key Vault", || self.kv.call(method.clone(), base, segments, body))
            .await
    }

    /// One data-plane call on `vault` at `segments` whose answer is a `KeyBundle`.
    async fn key_call(
        &self,
        vault: &ResourceId,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> R<KeyVersion> {
        let base = self.vault_base(vault).await?;
        let response = self.kv_call(method, &base, segments, body).await.map_err(guest)?;
        Ok(key_version_of(&response.body))
    }

    /// The newest version of key `name`, creating an RSA key of `size` bits if none exists.
    pub(super) async fn ensure_rsa_key(&self, vault: &ResourceId, name: &str, size: u32) -> R<KeyVersion> {
        checked(name, None)?;
        let base = self.vault_base(vault).await?;
        let find = || async {
            match self.kv_call(Method::GET, &base, &["keys", name], None).await {
                Ok(r) => Ok(Some(key_version_of(&r.body))),
                Err(e) if e.status() == Some(404) => Ok(None),
                Err(e) => Err(guest(e)),
            }
        };
        let body = || async {
            Ok(json!({"kty": "RSA", "key_size": size, "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]}))
        };
        self.create_checked("keyvault.ensure-key", &base, name, find, body)
            .await
    }

    /// Creates a key or key version with one POST per attempt, looking (`find`) before every
    /// attempt for what an earlier one made: creating is not idempotent, so a POST retried after
    /// its answer was lost would make a second one. `body` is computed per attempt.
    async fn create_checked<F, FFut, B, BFut>(
        &self,
        what: &'static str,
        base: &url::Url,
        name: &str,
        find: F,
        body: B,
    ) -> R<KeyVersion>
    where
        F: Fn() -> FFut,
        FFut: std::future::Future<Output = R<Option<KeyVersion>>>,
        B: Fn() -> BFut,
        BFut: std::future::Future<Output = R<Value>>,
    {
        let policy = self.arm.policy();
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            if let Some(found) = find().await? {
                return Ok(found);
            }
            let body = body().await?;
            let path = ["keys", name, "create"];
            let create = || self.kv.call_once(Method::POST, base, &path, Some(&body));
            match self.through_propagation(what, create).await {
                Ok(created) => return Ok(key_version_of(&created.body)),
                Err(CloudError::Unavailable(why)) => {
                    attempt += 1;
                    let delay = policy.delay(attempt, None);
                    if attempt >= policy.max_attempts || started.elapsed() + delay > policy.deadline {
                        return Err(guest(CloudError::Unavailable(why)));
                    }
                    crate::cloud::wire::record_retry(&format!("{what}: checking the last attempt"));
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(guest(e)),
            }
        }
    }

    pub(super) async fn key(&self, vault: &ResourceId, name: &str, version: Option<&str>) -> R<KeyVersion> {
        checked(name, version)?;
        match version {
            Some(v) => self.key_call(vault, Method::GET, &["keys", name, v], None).await,
            None => self.key_call(vault, Method::GET, &["keys", name], None).await,
        }
    }

    /// Every version of key `name`, oldest first, from the version listing alone (its
    /// `KeyItem`s carry the id, attributes and tags; reference §3) plus one GET of the current
    /// version for the key type and size, which the listing does not carry — not a GET per version.
    pub(super) async fn key_versions(&self, vault: &ResourceId, name: &str) -> R<Vec<KeyVersion>> {
        checked(name, None)?;
        let base = self.vault_base(vault).await?;
        let path = ["keys", name, "versions"];
        let items = self
            .through_propagation("keyvault.list-key-versions", || self.kv.list(&base, &path))
            .await
            .map_err(guest)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let current = self
            .kv_call(Method::GET, &base, &["keys", name], None)
            .await
            .map_err(guest)?;
        let current = key_version_of(&current.body);
        let mut out = Vec::new();
        for item in items {
            let kid = s(&item["kid"]);
            let version = kid.rsplit('/').next().unwrap_or_default().to_string();
            // The version comes from the service's listing; it still must be a version.
            checked(name, Some(&version))?;
            let mut v =
                key_version_of(&json!({"key": {"kid": kid}, "attributes": item["attributes"], "tags": item["tags"]}));
            v.key_type = current.key_type;
            v.key_size = current.key_size;
            out.push(v);
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// A new version of key `name`, tagged with the run and call that made it, of the current
    /// version's type, size and operations (an `RSA-HSM` key stays `RSA-HSM`).
    ///
    /// Creating a version is not idempotent: a retried POST after a lost answer would make a
    /// second one. So each attempt is one POST, and before every attempt the versions are listed
    /// again and a version carrying this run's and call's tags is returned instead.
    pub(super) async fn rotate_key(&self, auth: &Authorized, vault: &ResourceId, name: &str) -> R<KeyVersion> {
        checked(name, None)?;
        let run = auth.run_id().to_string();
        let call = format!("{}:{}", auth.step(), auth.seq());
        let tagged = |k: &KeyVersion, tag: &str, value: &str| k.tags.iter().any(|(t, v)| t == tag && v == value);
        let base = self.vault_base(vault).await?;
        let find = || async {
            let existing = self.key_versions(vault, name).await?;
            if existing.is_empty() {
                return Err(CapabilityError::guest(
                    ErrorKind::NotFound,
                    "KeyNotFound",
                    format!("key {name} has no versions to rotate"),
                ));
            }
            Ok(existing
                .into_iter()
                .find(|k| tagged(k, "kmsflow-run", &run) && tagged(k, "kmsflow-call", &call)))
        };
        let body = || async {
            let current = self
                .kv_call(Method::GET, &base, &["keys", name], None)
                .await
                .map_err(guest)?
                .body;
            let key = &current["key"];
            let kty = key["kty"].as_str().filter(|k| k.starts_with("RSA")).unwrap_or("RSA");
            let size = key["n"]
                .as_str()
                .and_then(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).ok())
                .map_or(2048, |b| b.len() * 8);
            let ops = match key["key_ops"].as_array() {
                Some(ops) if !ops.is_empty() => Value::Array(ops.clone()),
                _ => json!(["encrypt", "decrypt", "wrapKey", "unwrapKey"]),
            };
            Ok(json!({"kty": kty, "key_size": size, "key_ops": ops,
                "tags": {"kmsflow-run": run, "kmsflow-call": call}}))
        };
        self.create_checked("keyvault.new-key-version", &base, name, find, body)
            .await
    }

    /// Disables one version (never deletes it).
    pub(super) async fn disable_key(&self, vault: &ResourceId, name: &str, version: &str) -> R<KeyVersion> {
        let current = self.key(vault, name, Some(version)).await?;
        if !current.enabled {
            return Ok(current);
        }
        let body = json!({"attributes": {"enabled": false}});
        self.key_call(vault, Method::PATCH, &["keys", name, version], Some(&body))
            .await
    }
}
