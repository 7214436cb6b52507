//! `Microsoft.Authorization/roleAssignments` at any scope, with the built-in roles the KMS
//! procedure uses, and the lookup Key Vault's RBAC mode authorises data-plane calls with.

use super::{method_not_allowed, Req};
use crate::http::{is_guid, json, now_rfc3339, ArmError, ArmResult};
use crate::state::Shared;
use axum::http::{Method, StatusCode};
use serde_json::{json as j, Value};

pub const TYPE: &str = "Microsoft.Authorization/roleAssignments";

/// What a built-in role lets its holder do with a vault's keys (data plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// No data-plane access (management-plane roles such as Key Vault Contributor).
    None,
    /// Read keys, encrypt/decrypt/wrap/unwrap (Key Vault Crypto User).
    Use,
    /// Everything on keys (Crypto Officer, Administrator).
    Manage,
}

/// `(role definition GUID, name, key access)` of the built-in roles this cloud knows.
pub const BUILTIN_ROLES: &[(&str, &str, KeyAccess)] = &[
    (
        "12338af0-0e69-4776-bea7-57ae8d297424",
        "Key Vault Crypto User",
        KeyAccess::Use,
    ),
    (
        "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        "Key Vault Crypto Officer",
        KeyAccess::Manage,
    ),
    (
        "f25e0fa2-a7c8-4377-a976-54943a77a395",
        "Key Vault Contributor",
        KeyAccess::None,
    ),
    (
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "Key Vault Administrator",
        KeyAccess::Manage,
    ),
    (
        "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        "Key Vault Crypto Service Encryption User",
        KeyAccess::Use,
    ),
    (
        "21090545-7ca7-4776-b22c-e363652d74d2",
        "Key Vault Reader",
        KeyAccess::None,
    ),
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner", KeyAccess::None),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor", KeyAccess::None),
    ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", KeyAccess::None),
];

/// The full role definition id of built-in role `guid` in subscription `sub`.
pub fn role_definition_id(sub: &str, guid: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

fn role_guid(definition_id: &str) -> Option<&'static str> {
    let guid = definition_id.rsplit('/').next()?;
    BUILTIN_ROLES
        .iter()
        .find(|(id, _, _)| id.eq_ignore_ascii_case(guid))
        .map(|(id, _, _)| *id)
}

/// Whether scope `outer` contains resource id `inner` (segment-wise, case-insensitive).
pub fn scope_covers(outer: &str, inner: &str) -> bool {
    let o: Vec<String> = outer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let i: Vec<String> = inner
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    i.len() >= o.len() && i[..o.len()] == o[..]
}

fn subscription_of(id: &str) -> String {
    id.split('/')
        .filter(|s| !s.is_empty())
        .nth(1)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Every role assignment in the subscription of `resource`.
fn assignments_in_subscription(state: &Shared, resource: &str) -> Result<Vec<Value>, ArmError> {
    Ok(state
        .db
        .resources(TYPE, &format!("/subscriptions/{}/", subscription_of(resource)))?)
}

/// The strongest key access `principal` has on `resource` through role assignments.
pub fn key_access(state: &Shared, principal: &str, resource: &str) -> Result<KeyAccess, ArmError> {
    let mut best = KeyAccess::None;
    for a in assignments_in_subscription(state, resource)? {
        let p = &a["properties"];
        if !p["principalId"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(principal))
        {
            continue;
        }
        if !p["scope"].as_str().is_some_and(|s| scope_covers(s, resource)) {
            continue;
        }
        let access = p["roleDefinitionId"]
            .as_str()
            .and_then(role_guid)
            .and_then(|g| BUILTIN_ROLES.iter().find(|(id, _, _)| *id == g))
            .map_or(KeyAccess::None, |(_, _, a)| *a);
        best = match (best, access) {
            (KeyAccess::Manage, _) | (_, KeyAccess::Manage) => KeyAccess::Manage,
            (KeyAccess::Use, _) | (_, KeyAccess::Use) => KeyAccess::Use,
            _ => KeyAccess::None,
        };
    }
    Ok(best)
}

/// Whether `principal` holds built-in role `guid` at a scope covering `resource`.
pub fn has_role(state: &Shared, principal: &str, guid: &str, resource: &str) -> Result<bool, ArmError> {
    Ok(assignments_in_subscription(state, resource)?.iter().any(|a| {
        let p = &a["properties"];
        p["principalId"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(principal))
            && p["scope"].as_str().is_some_and(|s| scope_covers(s, resource))
            && p["roleDefinitionId"].as_str().and_then(role_guid) == Some(guid)
    }))
}

pub async fn handle(state: &Shared, req: &Req, scope: &str, name: Option<&str>) -> ArmResult {
    let Some(name) = name else {
        if req.method != Method::GET {
            return Err(method_not_allowed(req));
        }
        // `$filter=principalId eq '{id}'` (query parameters arrive percent-decoded).
        let filter_principal = req
            .query
            .get("$filter")
            .and_then(|f| f.split("principalId eq '").nth(1))
            .map(|s| s.trim_end_matches('\'').to_ascii_lowercase());
        let list: Vec<Value> = assignments_in_subscription(state, scope)?
            .into_iter()
            .filter(|a| {
                a["properties"]["scope"]
                    .as_str()
                    .is_some_and(|s| scope_covers(scope, s) || scope_covers(s, scope))
            })
            .filter(|a| {
                filter_principal.as_ref().is_none_or(|p| {
                    a["properties"]["principalId"]
                        .as_str()
                        .is_some_and(|id| id.eq_ignore_ascii_case(p))
                })
            })
            .collect();
        return Ok(json(StatusCode::OK, j!({ "value": list })));
    };
    let id = format!("{scope}/providers/{TYPE}/{name}");
    let existing = state.db.resource(&id)?;
    match req.method {
        Method::GET => existing.map(|d| json(StatusCode::OK, d)).ok_or_else(|| {
            ArmError::new(
                StatusCode::NOT_FOUND,
                "RoleAssignmentNotFound",
                format!("The role assignment '{name}' is not found."),
            )
        }),
        Method::PUT => {
            if !is_guid(name) {
                return Err(ArmError::bad_request(
                    "InvalidRoleAssignmentId",
                    format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
                ));
            }
            let body = req.json()?;
            let p = &body["properties"];
            let definition = p["roleDefinitionId"].as_str().unwrap_or_default();
            let guid = role_guid(definition).ok_or_else(|| {
                ArmError::bad_request(
                    "RoleDefinitionDoesNotExist",
                    format!(
                        "The specified role definition with ID '{}' does not exist.",
                        definition.rsplit('/').next().unwrap_or_default()
                    ),
                )
            })?;
            let principal = p["principalId"].as_str().unwrap_or_default().to_ascii_lowercase();
            if state.db.principal_by_object_id(&principal)?.is_none() {
                return Err(ArmError::bad_request(
                    "PrincipalNotFound",
                    format!("Principal {} does not exist in the directory {}. Check that you have the correct principal ID.", principal.replace('-', ""), state.tenant_id),
                ));
            }
            let principal_type = p["principalType"].as_str().unwrap_or("ServicePrincipal");
            let same = |a: &Value| {
                let ap = &a["properties"];
                ap["principalId"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(&principal))
                    && ap["roleDefinitionId"].as_str().and_then(role_guid) == Some(guid)
                    && ap["scope"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(scope))
            };
            if let Some(existing) = &existing {
                return if same(existing) {
                    Ok(json(StatusCode::CREATED, existing.clone()))
                } else {
                    Err(ArmError::conflict(
                        "RoleAssignmentUpdateNotPermitted",
                        "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                    ))
                };
            }
            if assignments_in_subscription(state, scope)?.iter().any(same) {
                return Err(ArmError::conflict(
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                ));
            }
            let sub = subscription_of(scope);
            let now = now_rfc3339();
            let doc = j!({
                "id": id, "name": name, "type": TYPE,
                "properties": {
                    "roleDefinitionId": role_definition_id(&sub, guid), "principalId": principal,
                    "principalType": principal_type, "scope": scope, "createdOn": now, "updatedOn": now,
                    "createdBy": req.caller.object_id, "updatedBy": req.caller.object_id,
                },
            });
            state.db.put_resource(&id, TYPE, name, &doc)?;
            Ok(json(StatusCode::CREATED, doc))
        }
        _ => Err(method_not_allowed(req)),
    }
}

#[cfg(test)]
mod tests {
    use super::scope_covers;

    #[test]
    fn scopes_cover_descendants_only() {
        let rg = "/subscriptions/s/resourceGroups/RG1";
        assert!(scope_covers(
            rg,
            "/subscriptions/s/resourcegroups/rg1/providers/Microsoft.KeyVault/vaults/kv"
        ));
        assert!(!scope_covers(rg, "/subscriptions/s/resourcegroups/rg10"));
        assert!(!scope_covers(rg, "/subscriptions/s"));
    }
}
