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
use std::collections::HashMap;
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
            // A vault an interrupted run created may still be provisioning: wait for it.
            Ok(r) => {
                let done = self.arm.wait(vault, &self.versions.vaults, r).await.map_err(guest)?;
                return Ok(vault_of(&done.body));
            }
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
        let first = self
            .arm
            .put(
                vault,
                &self.versions.vaults,
                &json!({"location": spec.location, "properties": properties}),
                &[],
            )
            .await
            .map_err(guest)?;
        // Creation is a long-running operation (`RegisteringDns` → `Succeeded`, reference §2),
        // and the data plane answers only once the vault's name resolves.
        let created = self
            .arm
            .wait(vault, &self.versions.vaults, first)
            .await
            .map_err(guest)?;
        if let Some(uri) = created.body["properties"]["vaultUri"].as_str() {
            let base = self.kv.vault_url(uri, vault.last()).map_err(guest)?;
            self.kv.wait_until_answering(&base).await.map_err(guest)?;
        }
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
    /// access policies, or from the role assignments at or above the vault and their role
    /// definitions' `dataActions` (both `keys/encrypt/action` and `keys/decrypt/action`, minus
    /// `notDataActions`; custom roles count as built-in ones do). Access that could only come
    /// through a group assignment cannot be verified (group membership is a directory question)
    /// and is a `precondition` error `AccessOnlyThroughGroup`, which a step may choose to trust.
    pub(super) async fn may_encrypt_decrypt(&self, vault: &ResourceId, principal_id: &str) -> R<bool> {
        let doc = self.get_doc(vault, &self.versions.vaults).await?;
        if doc["properties"]["enableRbacAuthorization"] != json!(true) {
            let has = |perm: &str| policy_allows(&doc, principal_id, perm);
            return Ok(has("encrypt") && has("decrypt"));
        }
        let assignments = child(vault, &["providers", "Microsoft.Authorization", "roleAssignments"])?;
        let list = self
            .arm
            .get(&assignments, &self.versions.role_assignments)
            .await
            .map_err(guest)?
            .body;
        let mut through_group = Vec::new();
        let mut definitions: HashMap<String, bool> = HashMap::new();
        for a in list["value"].as_array().into_iter().flatten() {
            let p = &a["properties"];
            let direct = p["principalId"]
                .as_str()
                .is_some_and(|id| id.eq_ignore_ascii_case(principal_id));
            let group = p["principalType"] == "Group";
            let covers = p["scope"]
                .as_str()
                .and_then(|sc| ResourceId::parse(sc).ok())
                .is_some_and(|sc| vault.starts_with(&sc));
            if !(direct || group) || !covers {
                continue;
            }
            let Some(definition) = p["roleDefinitionId"].as_str() else {
                continue;
            };
            let key = definition.to_ascii_lowercase();
            let allows = match definitions.get(&key) {
                Some(a) => *a,
                None => {
                    let a = self.role_allows_encrypt_decrypt(definition).await?;
                    definitions.insert(key, a);
                    a
                }
            };
            if allows && direct {
                return Ok(true);
            }
            if allows {
                through_group.push(s(&p["principalId"]));
            }
        }
        if !through_group.is_empty() {
            return Err(CapabilityError::guest(
                ErrorKind::Precondition,
                "AccessOnlyThroughGroup",
                format!(
                    "{principal_id} has no role on {vault} that allows encrypt and decrypt, but group(s) {} do; \
                     whether it is a member cannot be verified here",
                    through_group.join(", ")
                ),
            ));
        }
        Ok(false)
    }

    /// Whether role definition `id` (`/subscriptions/…/roleDefinitions/{guid}`) allows both
    /// `Microsoft.KeyVault/vaults/keys/encrypt/action` and `…/decrypt/action`.
    async fn role_allows_encrypt_decrypt(&self, id: &str) -> R<bool> {
        let id = ResourceId::parse(id)
            .map_err(|e| CapabilityError::guest(ErrorKind::Internal, "InvalidRoleDefinitionId", e.to_string()))?;
        let definition = self.get_doc(&id, &self.versions.role_assignments).await?;
        let permissions = definition["properties"]["permissions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let allows = |action: &str| {
            permissions.iter().any(|p| {
                let matches = |field: &str| {
                    p[field]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .any(|pattern| action_matches(pattern, action))
                };
                matches("dataActions") && !matches("notDataActions")
            })
        };
        Ok(allows(ENCRYPT) && allows(DECRYPT))
    }
}

const ENCRYPT: &str = "Microsoft.KeyVault/vaults/keys/encrypt/action";
const DECRYPT: &str = "Microsoft.KeyVault/vaults/keys/decrypt/action";

/// Azure RBAC action matching: case-insensitive, `*` matches any run of characters.
fn action_matches(pattern: &str, action: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let action = action.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == action;
    }
    let mut rest = action.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_actions_match_with_wildcards_ignoring_case() {
        assert!(action_matches("Microsoft.KeyVault/vaults/keys/*", ENCRYPT));
        assert!(action_matches("microsoft.keyvault/vaults/keys/encrypt/action", ENCRYPT));
        assert!(action_matches("*", DECRYPT));
        assert!(action_matches("Microsoft.KeyVault/*/decrypt/action", DECRYPT));
        assert!(!action_matches("Microsoft.KeyVault/vaults/keys/wrap/action", ENCRYPT));
        assert!(!action_matches("Microsoft.KeyVault/vaults/secrets/*", DECRYPT));
        assert!(!action_matches("Microsoft.KeyVault/vaults/keys/read", ENCRYPT));
    }
}
