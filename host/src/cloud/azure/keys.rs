//! The backend half of the key functions of `keyvault`: the Key Vault data plane. Key names and
//! versions were checked at the WIT boundary and are checked again here before they become URL
//! segments; the vault's base URL comes from [`AzureBackend::vault_base`].

use super::{guest, invalid, s, AzureBackend, R};
use crate::backend::Authorized;
use crate::capabilities::CapabilityError;
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
    /// One data-plane call on `vault` at `segments` whose answer is a `KeyBundle`.
    async fn key_call(
        &self,
        vault: &ResourceId,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> R<KeyVersion> {
        let base = self.vault_base(vault).await?;
        let response = self.kv.call(method, &base, segments, body).await.map_err(guest)?;
        Ok(key_version_of(&response.body))
    }

    /// The newest version of key `name`, creating an RSA key of `size` bits if none exists.
    pub(super) async fn ensure_rsa_key(&self, vault: &ResourceId, name: &str, size: u32) -> R<KeyVersion> {
        checked(name, None)?;
        let base = self.vault_base(vault).await?;
        match self.kv.call(Method::GET, &base, &["keys", name], None).await {
            Ok(r) => Ok(key_version_of(&r.body)),
            Err(e) if e.status() == Some(404) => {
                let body =
                    json!({"kty": "RSA", "key_size": size, "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]});
                let created = self
                    .kv
                    .call(Method::POST, &base, &["keys", name, "create"], Some(&body))
                    .await
                    .map_err(guest)?;
                Ok(key_version_of(&created.body))
            }
            Err(e) => Err(guest(e)),
        }
    }

    pub(super) async fn key(&self, vault: &ResourceId, name: &str, version: Option<&str>) -> R<KeyVersion> {
        checked(name, version)?;
        match version {
            Some(v) => self.key_call(vault, Method::GET, &["keys", name, v], None).await,
            None => self.key_call(vault, Method::GET, &["keys", name], None).await,
        }
    }

    /// Every version of key `name`, oldest first.
    pub(super) async fn key_versions(&self, vault: &ResourceId, name: &str) -> R<Vec<KeyVersion>> {
        checked(name, None)?;
        let base = self.vault_base(vault).await?;
        let items = self.kv.list(&base, &["keys", name, "versions"]).await.map_err(guest)?;
        let mut out = Vec::new();
        for item in items {
            let version = s(&item["kid"]).rsplit('/').next().unwrap_or_default().to_string();
            // The version comes from the service's listing; it still must be a version.
            checked(name, Some(&version))?;
            let bundle = self
                .kv
                .call(Method::GET, &base, &["keys", name, &version], None)
                .await
                .map_err(guest)?;
            out.push(key_version_of(&bundle.body));
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// A new version of key `name`, tagged with the run and call that made it, so a retry or a
    /// resume finds it instead of creating another.
    pub(super) async fn rotate_key(&self, auth: &Authorized, vault: &ResourceId, name: &str) -> R<KeyVersion> {
        let run = auth.run_id().to_string();
        let call = format!("{}:{}", auth.step(), auth.seq());
        let existing = self.key_versions(vault, name).await?;
        let tagged = |k: &KeyVersion, tag: &str, value: &str| k.tags.iter().any(|(t, v)| t == tag && v == value);
        if let Some(found) = existing
            .iter()
            .find(|k| tagged(k, "kmsflow-run", &run) && tagged(k, "kmsflow-call", &call))
        {
            return Ok(found.clone());
        }
        let latest = existing.last().ok_or_else(|| {
            CapabilityError::guest(
                ErrorKind::NotFound,
                "KeyNotFound",
                format!("key {name} has no versions to rotate"),
            )
        })?;
        let body = json!({"kty": "RSA", "key_size": latest.key_size.unwrap_or(2048), "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
            "tags": {"kmsflow-run": run, "kmsflow-call": call}});
        self.key_call(vault, Method::POST, &["keys", name, "create"], Some(&body))
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
