//! `AzureBackend`: the production [`CloudBackend`], built on the ARM client. The same code serves
//! Azure and the local cloud.
//!
//! Every state-changing method is an *ensure*: it reads first and writes only what differs, so a
//! retried or resumed step repeats no external effect (design.md §6). Role assignments are named by
//! a GUID derived from (scope, role, principal), so a second attempt finds the first.

use super::arm::{ArmClient, CloudError, RetryPolicy};
use super::keyvault::KeyVaultClient;
use super::kube::{KubeClients, KubeError};
use crate::backend::{Authorized, CloudBackend};
use crate::capabilities::CapabilityError;
use crate::wit::aks::{Cluster, ClusterSpec, KmsConfig, NetworkAccess};
use crate::wit::arm::{Method as ArmMethod, Response as ArmReply};
use crate::wit::identity::{Principal, PrincipalType, UserAssignedIdentity};
use crate::wit::keyvault::{AccessMechanism, BuiltinRole, Vault, VaultSpec};
use crate::wit::keyvault::{KeyType, KeyVersion};
use crate::wit::kubernetes::{Pod, RewritePage, State};
use crate::wit::types::ErrorKind;
use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// api-versions per resource type (defaults from the reference; configurable per target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    pub resource_groups: String,
    pub vaults: String,
    pub identities: String,
    pub role_assignments: String,
    pub clusters: String,
}

impl Default for ApiVersions {
    fn default() -> Self {
        ApiVersions {
            resource_groups: "2021-04-01".into(),
            vaults: "2025-05-01".into(),
            identities: "2023-01-31".into(),
            role_assignments: "2022-04-01".into(),
            clusters: "2026-01-01".into(),
        }
    }
}

/// The production backend for one target.
pub struct AzureBackend {
    arm: ArmClient,
    kv: KeyVaultClient,
    kube: KubeClients,
    versions: ApiVersions,
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

/// The role definition GUID of a built-in role.
pub fn role_guid(role: BuiltinRole) -> &'static str {
    match role {
        BuiltinRole::CryptoUser => "12338af0-0e69-4776-bea7-57ae8d297424",
        BuiltinRole::CryptoOfficer => "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        BuiltinRole::Contributor => "f25e0fa2-a7c8-4377-a976-54943a77a395",
    }
}

/// A role assignment name derived from (scope, role, principal): the same grant always has the
/// same name, so retries and resumes find the assignment they made.
pub fn assignment_name(scope: &str, role: &str, principal: &str) -> String {
    let digest = Sha256::digest(format!(
        "{}|{}|{}",
        scope.to_ascii_lowercase(),
        role.to_ascii_lowercase(),
        principal.to_ascii_lowercase()
    ));
    let h = hex::encode(&digest[..16]);
    // RFC 4122 shape (version 5-like, variant 10xx) so ARM accepts it as a GUID.
    let version = format!("5{}", &h[13..16]);
    let variant = format!(
        "{:x}{}",
        (u8::from_str_radix(&h[16..17], 16).unwrap_or(0) & 0x3) | 0x8,
        &h[17..20]
    );
    format!("{}-{}-{version}-{variant}-{}", &h[..8], &h[8..12], &h[20..32])
}

/// Whether `key_id` is a versioned Key Vault key id (`https://host/keys/name/version`).
pub fn is_versioned_key_id(key_id: &str) -> bool {
    key_id.strip_prefix("https://").is_some_and(|rest| {
        let segs: Vec<&str> = rest.split('/').collect();
        segs.len() == 4
            && segs[1] == "keys"
            && !segs[2].is_empty()
            && segs[3].len() == 32
            && segs[3].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn subscription_of(id: &str) -> String {
    id.split('/')
        .filter(|s| !s.is_empty())
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn vault_of(doc: &Value) -> Vault {
    let p = &doc["properties"];
    Vault {
        id: s(&doc["id"]),
        name: s(&doc["name"]),
        location: s(&doc["location"]),
        tenant_id: s(&p["tenantId"]),
        uri: s(&p["vaultUri"]),
        rbac_authorization: p["enableRbacAuthorization"] == json!(true),
        public_network_access: !p["publicNetworkAccess"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case("disabled")),
        firewall_restricted: p["networkAcls"]["defaultAction"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case("deny")),
        soft_delete: p["enableSoftDelete"] != json!(false),
        purge_protection: p["enablePurgeProtection"] == json!(true),
        private_endpoints: p["privateEndpointConnections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["properties"]["privateLinkServiceConnectionState"]["status"] == "Approved")
            .map(|c| s(&c["properties"]["privateEndpoint"]["id"]))
            .collect(),
    }
}

/// Whether a vault document's access policies give `principal` key permission `perm` (or `all`).
fn policy_allows(doc: &Value, principal: &str, perm: &str) -> bool {
    doc["properties"]["accessPolicies"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| {
            p["objectId"]
                .as_str()
                .is_some_and(|o| o.eq_ignore_ascii_case(principal))
                && p["permissions"]["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|k| k.eq_ignore_ascii_case(perm) || k.eq_ignore_ascii_case("all"))
        })
}

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

fn cluster_of(doc: &Value) -> Cluster {
    let p = &doc["properties"];
    let kms = &p["securityProfile"]["azureKeyVaultKms"];
    let uai = doc["identity"]["userAssignedIdentities"]
        .as_object()
        .and_then(|m| m.keys().next().cloned());
    Cluster {
        id: s(&doc["id"]),
        name: s(&doc["name"]),
        location: s(&doc["location"]),
        kubernetes_version: s(&p["kubernetesVersion"]),
        current_kubernetes_version: s(&p["currentKubernetesVersion"]),
        provisioning_state: s(&p["provisioningState"]),
        identity_type: doc["identity"]["type"].as_str().unwrap_or("None").to_string(),
        user_assigned_identity: uai,
        vnet_integration: p["apiServerAccessProfile"]["enableVnetIntegration"] == json!(true),
        kms: kms.is_object().then(|| KmsConfig {
            enabled: kms["enabled"] == json!(true),
            key_id: s(&kms["keyId"]),
            network_access: if kms["keyVaultNetworkAccess"] == "Private" {
                NetworkAccess::Private
            } else {
                NetworkAccess::Public
            },
            vault_resource_id: kms["keyVaultResourceId"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
        }),
        tenant_id: s(&doc["identity"]["tenantId"]),
    }
}

fn identity_of(doc: &Value) -> UserAssignedIdentity {
    let p = &doc["properties"];
    UserAssignedIdentity {
        id: s(&doc["id"]),
        location: s(&doc["location"]),
        principal_id: s(&p["principalId"]),
        client_id: s(&p["clientId"]),
        tenant_id: s(&p["tenantId"]),
    }
}

/// The `azureKeyVaultKms` block as `az aks update` writes it (reference §1.7).
fn kms_block(kms: &KmsConfig) -> Value {
    if !kms.enabled {
        return json!({"enabled": false});
    }
    match kms.network_access {
        NetworkAccess::Public => {
            json!({"enabled": true, "keyId": kms.key_id, "keyVaultNetworkAccess": "Public", "keyVaultResourceId": ""})
        }
        NetworkAccess::Private => json!({"enabled": true, "keyId": kms.key_id, "keyVaultNetworkAccess": "Private",
            "keyVaultResourceId": kms.vault_resource_id.clone().unwrap_or_default()}),
    }
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
        }
    }

    /// Replaces the Kubernetes clients (kubeconfig contexts, rewrite concurrency).
    pub fn with_kube(mut self, kube: KubeClients) -> Self {
        self.kube = kube;
        self
    }

    async fn vault_uri(&self, vault: &str) -> R<String> {
        let doc = self.get_doc(vault, &self.versions.vaults).await?;
        doc["properties"]["vaultUri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                CapabilityError::guest(ErrorKind::Internal, "NoVaultUri", format!("{vault} has no vaultUri"))
            })
    }

    async fn get_doc(&self, id: &str, version: &str) -> R<Value> {
        self.arm.get(id, version).await.map(|r| r.body).map_err(guest)
    }

    /// One data-plane call on `vault` whose answer is a `KeyBundle`.
    async fn key_call(&self, vault: &str, method: reqwest::Method, path: &str, body: Option<&Value>) -> R<KeyVersion> {
        let uri = self.vault_uri(vault).await?;
        let response = self.kv.call(method, &uri, path, body).await.map_err(guest)?;
        Ok(key_version_of(&response.body))
    }

    async fn cluster_put_and_wait(&self, id: &str, doc: &Value) -> R<Cluster> {
        let etag = doc["eTag"].as_str().map(|e| format!("\"{e}\""));
        let extra: Vec<(&str, &str)> = etag.iter().map(|e| ("If-Match", e.as_str())).collect();
        let first = self
            .arm
            .put(id, &self.versions.clusters, doc, &extra)
            .await
            .map_err(guest)?;
        let done = self.arm.wait(id, &self.versions.clusters, first).await.map_err(guest)?;
        Ok(cluster_of(&done.body))
    }
}

#[async_trait]
impl CloudBackend for AzureBackend {
    async fn whoami(&self, _auth: &Authorized) -> R<Principal> {
        let token = self.arm.token().await.map_err(guest)?;
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c.trim_end_matches('='))
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| {
                CapabilityError::guest(ErrorKind::Internal, "TokenUnreadable", "the access token is not a JWT")
            })?;
        let principal_type = match claims["idtyp"].as_str() {
            Some("user") => PrincipalType::User,
            _ if claims["scp"].is_string() => PrincipalType::User,
            _ => PrincipalType::ServicePrincipal,
        };
        Ok(Principal {
            object_id: s(&claims["oid"]),
            tenant_id: s(&claims["tid"]),
            principal_type,
        })
    }

    async fn get_user_assigned(&self, _auth: &Authorized, id: &str) -> R<UserAssignedIdentity> {
        Ok(identity_of(&self.get_doc(id, &self.versions.identities).await?))
    }

    async fn ensure_user_assigned(&self, _auth: &Authorized, id: &str, location: &str) -> R<UserAssignedIdentity> {
        match self.arm.get(id, &self.versions.identities).await {
            Ok(r) => Ok(identity_of(&r.body)),
            Err(e) if e.status() == Some(404) => {
                let created = self
                    .arm
                    .put(id, &self.versions.identities, &json!({"location": location}), &[])
                    .await
                    .map_err(guest)?;
                Ok(identity_of(&created.body))
            }
            Err(e) => Err(guest(e)),
        }
    }

    async fn get_vault(&self, _auth: &Authorized, vault: &str) -> R<Vault> {
        Ok(vault_of(&self.get_doc(vault, &self.versions.vaults).await?))
    }

    async fn ensure_vault(&self, auth: &Authorized, vault: &str, spec: &VaultSpec) -> R<Vault> {
        match self.arm.get(vault, &self.versions.vaults).await {
            Ok(r) => return Ok(vault_of(&r.body)),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(guest(e)),
        }
        let me = self.whoami(auth).await?;
        // Like `az keyvault create`: the creator can manage keys (never delete or purge them).
        let policies = if spec.rbac_authorization {
            json!([])
        } else {
            json!([{"tenantId": me.tenant_id, "objectId": me.object_id, "permissions": {
                "keys": ["get", "list", "create", "update", "rotate", "encrypt", "decrypt", "wrapKey", "unwrapKey"]}}])
        };
        let mut properties = json!({
            "tenantId": me.tenant_id, "sku": {"family": "A", "name": spec.sku},
            "enableRbacAuthorization": spec.rbac_authorization,
            "publicNetworkAccess": if spec.public_network_access { "Enabled" } else { "Disabled" },
            "enableSoftDelete": true, "accessPolicies": policies,
        });
        if spec.purge_protection {
            properties["enablePurgeProtection"] = json!(true);
        }
        let created = self
            .arm
            .put(
                vault,
                &self.versions.vaults,
                &json!({"location": spec.location, "properties": properties}),
                &[],
            )
            .await
            .map_err(guest)?;
        if spec.rbac_authorization {
            let principal_type = if me.principal_type == PrincipalType::User {
                "User"
            } else {
                "ServicePrincipal"
            };
            self.grant_role(auth, vault, BuiltinRole::CryptoOfficer, &me.object_id, principal_type)
                .await?;
        }
        Ok(vault_of(&created.body))
    }

    async fn set_public_network_access(&self, _auth: &Authorized, vault: &str, enabled: bool) -> R<Vault> {
        let current = vault_of(&self.get_doc(vault, &self.versions.vaults).await?);
        if current.public_network_access == enabled {
            return Ok(current);
        }
        let body = json!({"properties": {"publicNetworkAccess": if enabled { "Enabled" } else { "Disabled" }}});
        let patched = self
            .arm
            .patch(vault, &self.versions.vaults, &body)
            .await
            .map_err(guest)?;
        Ok(vault_of(&patched.body))
    }

    async fn grant_crypto_access(&self, auth: &Authorized, vault: &str, principal_id: &str) -> R<AccessMechanism> {
        let doc = self.get_doc(vault, &self.versions.vaults).await?;
        if doc["properties"]["enableRbacAuthorization"] == json!(true) {
            self.grant_role(auth, vault, BuiltinRole::CryptoUser, principal_id, "ServicePrincipal")
                .await?;
            return Ok(AccessMechanism::RoleAssignment);
        }
        let has = |perm: &str| policy_allows(&doc, principal_id, perm);
        if !(has("encrypt") && has("decrypt")) {
            let body = json!({"properties": {"accessPolicies": [{"tenantId": doc["properties"]["tenantId"], "objectId": principal_id,
                "permissions": {"keys": ["encrypt", "decrypt"]}}]}});
            self.arm
                .put(
                    &format!("{vault}/accessPolicies/add"),
                    &self.versions.vaults,
                    &body,
                    &[],
                )
                .await
                .map_err(guest)?;
        }
        Ok(AccessMechanism::AccessPolicy)
    }

    async fn grant_role(
        &self,
        _auth: &Authorized,
        scope: &str,
        role: BuiltinRole,
        principal_id: &str,
        principal_type: &str,
    ) -> R<()> {
        let guid = role_guid(role);
        let name = assignment_name(scope, guid, principal_id);
        let definition = format!(
            "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            subscription_of(scope)
        );
        let body = json!({"properties": {"roleDefinitionId": definition, "principalId": principal_id, "principalType": principal_type}});
        let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
        match self.arm.put(&path, &self.versions.role_assignments, &body, &[]).await {
            Ok(_) => Ok(()),
            Err(CloudError::Service { code, .. }) if code == "RoleAssignmentExists" => Ok(()),
            Err(e) => Err(guest(e)),
        }
    }

    async fn ensure_key(&self, _auth: &Authorized, vault: &str, name: &str, size: u32) -> R<KeyVersion> {
        let uri = self.vault_uri(vault).await?;
        match self
            .kv
            .call(reqwest::Method::GET, &uri, &format!("/keys/{name}"), None)
            .await
        {
            Ok(r) => Ok(key_version_of(&r.body)),
            Err(e) if e.status() == Some(404) => {
                let body =
                    json!({"kty": "RSA", "key_size": size, "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]});
                let created = self
                    .kv
                    .call(
                        reqwest::Method::POST,
                        &uri,
                        &format!("/keys/{name}/create"),
                        Some(&body),
                    )
                    .await
                    .map_err(guest)?;
                Ok(key_version_of(&created.body))
            }
            Err(e) => Err(guest(e)),
        }
    }

    async fn get_key(&self, _auth: &Authorized, vault: &str, name: &str, version: Option<&str>) -> R<KeyVersion> {
        let path = match version {
            Some(v) => format!("/keys/{name}/{v}"),
            None => format!("/keys/{name}"),
        };
        self.key_call(vault, reqwest::Method::GET, &path, None).await
    }

    async fn list_key_versions(&self, _auth: &Authorized, vault: &str, name: &str) -> R<Vec<KeyVersion>> {
        let uri = self.vault_uri(vault).await?;
        let items = self
            .kv
            .list(&uri, &format!("/keys/{name}/versions"))
            .await
            .map_err(guest)?;
        let mut out = Vec::new();
        for item in items {
            let version = s(&item["kid"]).rsplit('/').next().unwrap_or_default().to_string();
            let bundle = self
                .kv
                .call(reqwest::Method::GET, &uri, &format!("/keys/{name}/{version}"), None)
                .await
                .map_err(guest)?;
            out.push(key_version_of(&bundle.body));
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    async fn new_key_version(&self, auth: &Authorized, vault: &str, name: &str) -> R<KeyVersion> {
        // The version carries the run and call that made it, so a retry or a resume finds it.
        let run = auth.run_id().to_string();
        let call = format!("{}:{}", auth.step(), auth.seq());
        let existing = self.list_key_versions(auth, vault, name).await?;
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
        self.key_call(
            vault,
            reqwest::Method::POST,
            &format!("/keys/{name}/create"),
            Some(&body),
        )
        .await
    }

    async fn disable_key_version(&self, auth: &Authorized, vault: &str, name: &str, version: &str) -> R<KeyVersion> {
        let current = self.get_key(auth, vault, name, Some(version)).await?;
        if !current.enabled {
            return Ok(current);
        }
        let body = json!({"attributes": {"enabled": false}});
        self.key_call(
            vault,
            reqwest::Method::PATCH,
            &format!("/keys/{name}/{version}"),
            Some(&body),
        )
        .await
    }

    async fn can_encrypt_decrypt(&self, _auth: &Authorized, vault: &str, _name: &str, principal_id: &str) -> R<bool> {
        let doc = self.get_doc(vault, &self.versions.vaults).await?;
        if doc["properties"]["enableRbacAuthorization"] != json!(true) {
            let has = |perm: &str| policy_allows(&doc, principal_id, perm);
            return Ok(has("encrypt") && has("decrypt"));
        }
        let path = format!(
            "{vault}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20%27{principal_id}%27"
        );
        let list = self
            .arm
            .get(&path, &self.versions.role_assignments)
            .await
            .map_err(guest)?
            .body;
        const CRYPTO_ROLES: [&str; 4] = [
            "12338af0-0e69-4776-bea7-57ae8d297424",
            "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
            "00482a5a-887f-4fb3-b363-3b7fe8e74483",
            "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        ];
        Ok(list["value"].as_array().into_iter().flatten().any(|a| {
            let p = &a["properties"];
            p["principalId"]
                .as_str()
                .is_some_and(|id| id.eq_ignore_ascii_case(principal_id))
                && p["roleDefinitionId"]
                    .as_str()
                    .and_then(|d| d.rsplit('/').next())
                    .is_some_and(|g| CRYPTO_ROLES.contains(&g.to_ascii_lowercase().as_str()))
                && p["scope"]
                    .as_str()
                    .is_some_and(|sc| vault.to_ascii_lowercase().starts_with(&sc.to_ascii_lowercase()))
        }))
    }

    async fn get_cluster(&self, _auth: &Authorized, cluster: &str) -> R<Cluster> {
        Ok(cluster_of(&self.get_doc(cluster, &self.versions.clusters).await?))
    }

    async fn list_clusters(&self, _auth: &Authorized, subscription: &str) -> R<Vec<Cluster>> {
        let path = format!(
            "{}/providers/Microsoft.ContainerService/managedClusters",
            subscription.trim_end_matches('/')
        );
        let mut out = Vec::new();
        let mut page = self.arm.get(&path, &self.versions.clusters).await.map_err(guest)?.body;
        loop {
            out.extend(page["value"].as_array().into_iter().flatten().map(cluster_of));
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => {
                    page = self
                        .arm
                        .send(reqwest::Method::GET, next, None, &[])
                        .await
                        .map_err(guest)?
                        .body
                }
                _ => return Ok(out),
            }
        }
    }

    async fn set_kms(&self, _auth: &Authorized, cluster: &str, kms: &KmsConfig) -> R<Cluster> {
        if kms.enabled && !is_versioned_key_id(&kms.key_id) {
            return Err(invalid(
                "UnversionedKeyId",
                format!("`{}` is not a versioned key id (https://{{vault}}/keys/{{name}}/{{32-hex version}}); an unversioned id selects another AKS feature", kms.key_id),
            ));
        }
        if kms.enabled
            && kms.network_access == NetworkAccess::Private
            && kms.vault_resource_id.as_deref().is_none_or(str::is_empty)
        {
            return Err(invalid(
                "VaultResourceIdRequired",
                "Private network access needs the vault's resource id",
            ));
        }
        let mut doc = self.get_doc(cluster, &self.versions.clusters).await?;
        let current = cluster_of(&doc);
        if let Some(existing) = &current.kms {
            let same = existing.enabled == kms.enabled
                && (!kms.enabled || (existing.key_id == kms.key_id && existing.network_access == kms.network_access));
            if same && current.provisioning_state == "Succeeded" {
                return Ok(current);
            }
        }
        let block = if kms.enabled {
            kms_block(kms)
        } else {
            // `az aks update --disable-azure-keyvault-kms` keeps the other fields.
            let mut b = doc["properties"]["securityProfile"]["azureKeyVaultKms"].clone();
            if !b.is_object() {
                b = json!({});
            }
            b["enabled"] = json!(false);
            b
        };
        doc["properties"]["securityProfile"]["azureKeyVaultKms"] = block;
        self.cluster_put_and_wait(cluster, &doc).await
    }

    async fn create_cluster(&self, _auth: &Authorized, cluster: &str, spec: &ClusterSpec) -> R<Cluster> {
        match self.arm.get(cluster, &self.versions.clusters).await {
            Ok(existing) => return Ok(cluster_of(&existing.body)),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(guest(e)),
        }
        if let Some(kms) = spec
            .kms
            .as_ref()
            .filter(|k| k.enabled && !is_versioned_key_id(&k.key_id))
        {
            return Err(invalid(
                "UnversionedKeyId",
                format!("`{}` is not a versioned key id", kms.key_id),
            ));
        }
        let name = cluster.rsplit('/').next().unwrap_or("aks");
        let mut body = json!({
            "location": spec.location,
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {spec.identity.clone(): {}}},
            "properties": {
                "kubernetesVersion": spec.kubernetes_version, "dnsPrefix": name,
                "agentPoolProfiles": [{"name": "nodepool1", "count": spec.node_count.max(1), "vmSize": "Standard_D2s_v3", "mode": "System", "osType": "Linux"}],
                "apiServerAccessProfile": {"enableVnetIntegration": spec.vnet_integration},
            },
        });
        if let Some(kms) = &spec.kms {
            body["properties"]["securityProfile"] = json!({"azureKeyVaultKms": kms_block(kms)});
        }
        let first = self
            .arm
            .put(cluster, &self.versions.clusters, &body, &[("If-None-Match", "*")])
            .await
            .map_err(guest)?;
        let done = self
            .arm
            .wait(cluster, &self.versions.clusters, first)
            .await
            .map_err(guest)?;
        Ok(cluster_of(&done.body))
    }

    async fn count_secrets(&self, _auth: &Authorized, cluster: &str) -> R<u64> {
        self.kube.count_secrets(cluster).await.map_err(kube_err)
    }

    async fn rewrite_secrets_page(
        &self,
        _auth: &Authorized,
        cluster: &str,
        continue_token: Option<&str>,
        page_size: u32,
    ) -> R<RewritePage> {
        self.kube
            .rewrite_page(cluster, continue_token, page_size)
            .await
            .map_err(kube_err)
    }

    async fn list_pods(&self, _auth: &Authorized, cluster: &str, namespace: &str, label_selector: &str) -> R<Vec<Pod>> {
        self.kube
            .list_pods(cluster, namespace, label_selector)
            .await
            .map_err(kube_err)
    }

    async fn get_state(&self, _auth: &Authorized, cluster: &str) -> R<Option<State>> {
        self.kube.get_state(cluster).await.map_err(kube_err)
    }

    async fn put_state(
        &self,
        _auth: &Authorized,
        cluster: &str,
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
        path: &str,
        api_version: &str,
        body: Option<&str>,
    ) -> R<ArmReply> {
        let body: Option<Value> = match body {
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| invalid("InvalidJson", format!("the request body is not JSON: {e}")))?,
            ),
            None => None,
        };
        let method = match method {
            ArmMethod::Get => reqwest::Method::GET,
            ArmMethod::Put => reqwest::Method::PUT,
            ArmMethod::Patch => reqwest::Method::PATCH,
            ArmMethod::Post => reqwest::Method::POST,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}api-version={api_version}", self.arm.endpoint());
        let response = self
            .arm
            .send(method.clone(), &url, body.as_ref(), &[])
            .await
            .map_err(guest)?;
        let response = if method == reqwest::Method::GET {
            response
        } else {
            self.arm.wait(path, api_version, response).await.map_err(guest)?
        };
        Ok(ArmReply {
            status: response.status,
            body: if response.body.is_null() {
                String::new()
            } else {
                response.body.to_string()
            },
            request_id: response.request_id,
        })
    }

    async fn upgrade(&self, _auth: &Authorized, cluster: &str, version: &str) -> R<Cluster> {
        let mut doc = self.get_doc(cluster, &self.versions.clusters).await?;
        if doc["properties"]["kubernetesVersion"] == json!(version)
            && doc["properties"]["provisioningState"] == "Succeeded"
        {
            return Ok(cluster_of(&doc));
        }
        doc["properties"]["kubernetesVersion"] = json!(version);
        if let Some(pools) = doc["properties"]["agentPoolProfiles"].as_array_mut() {
            for pool in pools {
                pool["orchestratorVersion"] = json!(version);
            }
        }
        if let Some(p) = doc["properties"].as_object_mut() {
            p.remove("servicePrincipalProfile");
        }
        self.cluster_put_and_wait(cluster, &doc).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_names_are_stable_guids() {
        let a = assignment_name(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
            "12338af0",
            "p1",
        );
        assert_eq!(
            a,
            assignment_name(
                "/SUBSCRIPTIONS/s/resourcegroups/RG/providers/Microsoft.KeyVault/vaults/kv",
                "12338af0",
                "P1"
            )
        );
        assert_ne!(
            a,
            assignment_name("/subscriptions/s/resourceGroups/rg", "12338af0", "p1")
        );
        assert_eq!(a.len(), 36);
        assert_eq!(a.split('-').map(str::len).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12]);
    }

    #[test]
    fn only_versioned_key_ids_pass() {
        assert!(is_versioned_key_id(
            "https://kv.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        ));
        assert!(!is_versioned_key_id("https://kv.vault.azure.net/keys/k"));
        assert!(!is_versioned_key_id("https://kv.vault.azure.net/keys/k/"));
        assert!(!is_versioned_key_id(
            "http://kv.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        ));
    }
}
