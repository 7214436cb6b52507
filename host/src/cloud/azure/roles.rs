//! The backend half of `keyvault.grant-role`: built-in role assignments under a name derived
//! from (scope, role, principal), so a retried or resumed call finds the assignment it made.

use super::{child, guest, AzureBackend, R};
use crate::cloud::arm::CloudError;
use crate::resource_id::ResourceId;
use crate::wit::keyvault::BuiltinRole;
use serde_json::json;
use sha2::{Digest, Sha256};

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

impl AzureBackend {
    /// Assigns `role` at `scope` to `principal_id`; `RoleAssignmentExists` counts as done.
    pub(super) async fn assign_role(
        &self,
        scope: &ResourceId,
        role: BuiltinRole,
        principal_id: &str,
        principal_type: &str,
    ) -> R<()> {
        let guid = role_guid(role);
        let name = assignment_name(&scope.to_string(), guid, principal_id);
        let definition = format!(
            "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            scope.subscription()
        );
        let body = json!({"properties": {"roleDefinitionId": definition, "principalId": principal_id, "principalType": principal_type}});
        let id = child(
            scope,
            &["providers", "Microsoft.Authorization", "roleAssignments", &name],
        )?;
        match self.arm.put(&id, &self.versions.role_assignments, &body, &[]).await {
            Ok(_) => {
                self.granted();
                Ok(())
            }
            // Possibly made moments ago by an interrupted attempt: it may still be propagating.
            Err(CloudError::Service { code, .. }) if code == "RoleAssignmentExists" => {
                self.granted();
                Ok(())
            }
            Err(e) => Err(guest(e)),
        }
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
}
