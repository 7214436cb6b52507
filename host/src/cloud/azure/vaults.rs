//! The backend half of the vault functions of `keyvault`: the vault resource, its public network
//! access, and crypto access for a principal (access policy or role, by the vault's mode).

use super::{child, guest, s, AzureBackend, R};
use crate::backend::Authorized;
use crate::capabilities::CapabilityError;
use crate::resource_id::ResourceId;
use crate::wit::identity::PrincipalType;
use crate::wit::keyvault::{AccessMechanism, BuiltinRole, Vault, VaultSpec};
use crate::wit::types::ErrorKind;
use serde_json::{json, Value};
use url::Url;

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

/// Role definitions that allow encrypt and decrypt with a vault's keys.
const CRYPTO_ROLES: [&str; 4] = [
    "12338af0-0e69-4776-bea7-57ae8d297424",
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "e147488a-f6f5-4113-8e2d-b22465e65bf6",
];

impl AzureBackend {
    /// The data-plane base URL of `vault`: its `vaultUri`, checked to be this vault on this
    /// cloud's Key Vault host.
    pub(super) async fn vault_base(&self, vault: &ResourceId) -> R<Url> {
        let doc = self.get_doc(vault, &self.versions.vaults).await?;
        let uri = doc["properties"]["vaultUri"].as_str().ok_or_else(|| {
            CapabilityError::guest(ErrorKind::Internal, "NoVaultUri", format!("{vault} has no vaultUri"))
        })?;
        self.kv.vault_url(uri, vault.last()).map_err(guest)
    }

    pub(super) async fn vault(&self, vault: &ResourceId) -> R<Vault> {
        Ok(vault_of(&self.get_doc(vault, &self.versions.vaults).await?))
    }

    /// Creates the vault if missing (never changes an existing one's flavour). Like
    /// `az keyvault create`, the creator can manage keys (never delete or purge them).
    pub(super) async fn ensure_vault_doc(&self, auth: &Authorized, vault: &ResourceId, spec: &VaultSpec) -> R<Vault> {
        match self.arm.get(vault, &self.versions.vaults).await {
            Ok(r) => return Ok(vault_of(&r.body)),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(guest(e)),
        }
        let me = self.principal(auth).await?;
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
            self.assign_role(vault, BuiltinRole::CryptoOfficer, &me.object_id, principal_type)
                .await?;
        }
        Ok(vault_of(&created.body))
    }

    pub(super) async fn public_access(&self, vault: &ResourceId, enabled: bool) -> R<Vault> {
        let current = self.vault(vault).await?;
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

    /// Encrypt and decrypt for `principal_id`: Crypto User on an RBAC vault, else an access
    /// policy added only if the existing ones do not already allow both.
    pub(super) async fn crypto_access(
        &self,
        _auth: &Authorized,
        vault: &ResourceId,
        principal_id: &str,
    ) -> R<AccessMechanism> {
        let doc = self.get_doc(vault, &self.versions.vaults).await?;
        if doc["properties"]["enableRbacAuthorization"] == json!(true) {
            self.assign_role(vault, BuiltinRole::CryptoUser, principal_id, "ServicePrincipal")
                .await?;
            return Ok(AccessMechanism::RoleAssignment);
        }
        let has = |perm: &str| policy_allows(&doc, principal_id, perm);
        if !(has("encrypt") && has("decrypt")) {
            let body = json!({"properties": {"accessPolicies": [{"tenantId": doc["properties"]["tenantId"], "objectId": principal_id,
                "permissions": {"keys": ["encrypt", "decrypt"]}}]}});
            let add = child(vault, &["accessPolicies", "add"])?;
            self.arm
                .put(&add, &self.versions.vaults, &body, &[])
                .await
                .map_err(guest)?;
        }
        Ok(AccessMechanism::AccessPolicy)
    }

    /// Whether `principal_id` may encrypt and decrypt with the vault's keys, judged from its
    /// access policies or the role assignments at or above the vault.
    pub(super) async fn may_encrypt_decrypt(&self, vault: &ResourceId, principal_id: &str) -> R<bool> {
        let doc = self.get_doc(vault, &self.versions.vaults).await?;
        if doc["properties"]["enableRbacAuthorization"] != json!(true) {
            let has = |perm: &str| policy_allows(&doc, principal_id, perm);
            return Ok(has("encrypt") && has("decrypt"));
        }
        let assignments = child(vault, &["providers", "Microsoft.Authorization", "roleAssignments"])?;
        let filter = format!("principalId eq '{principal_id}'");
        let list = self
            .arm
            .get_query(&assignments, &self.versions.role_assignments, &[("$filter", &filter)])
            .await
            .map_err(guest)?
            .body;
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
                    .and_then(|sc| ResourceId::parse(sc).ok())
                    .is_some_and(|sc| vault.starts_with(&sc))
        }))
    }
}
