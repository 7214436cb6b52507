//! `Microsoft.Authorization/roleAssignments` at any scope (PUT, GET, DELETE, list with
//! `$filter=principalId eq '…'`) and `Microsoft.Authorization/roleDefinitions` (GET by GUID, list
//! with `$filter=roleName eq '…'`), api-version 2022-04-01 shapes (azure-reference.md §4).
//! What an assignment allows is decided in `directory.rs`, from the definitions served here.

use super::{method_not_allowed, Req};
use crate::directory::{definition_guid, scope_covers, Directory, DELETED_ASSIGNMENT_TYPE};
use crate::http::{is_guid, json, now_ms, now_rfc3339, ArmError, ArmResult};
use crate::state::Shared;
use axum::http::{Method, StatusCode};
use serde_json::{json as j, Value};

pub const TYPE: &str = crate::directory::ASSIGNMENT_TYPE;

/// The full role definition id of role definition `guid` in subscription `sub`.
pub fn role_definition_id(sub: &str, guid: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

/// Every role assignment in the subscription of `resource`.
fn assignments_in_subscription(state: &Shared, resource: &str) -> Result<Vec<Value>, ArmError> {
    Ok(state
        .db
        .resources(TYPE, &format!("/subscriptions/{}/", subscription_of(resource)))?)
}

fn subscription_of(id: &str) -> String {
    id.split('/')
        .filter(|s| !s.is_empty())
        .nth(1)
        .unwrap_or_default()
        .to_ascii_lowercase()
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
            let guid = definition_guid(definition);
            if Directory::new(state).role_definition(&guid)?.is_none() {
                return Err(ArmError::bad_request(
                    "RoleDefinitionDoesNotExist",
                    format!("The specified role definition with ID '{guid}' does not exist."),
                ));
            }
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
                    && ap["roleDefinitionId"].as_str().map(definition_guid).as_deref() == Some(guid.as_str())
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
                    "roleDefinitionId": role_definition_id(&sub, &guid), "principalId": principal,
                    "principalType": principal_type, "scope": scope, "createdOn": now, "updatedOn": now,
                    "createdBy": req.caller.object_id, "updatedBy": req.caller.object_id,
                },
            });
            state.db.put_resource(&id, TYPE, name, &doc)?;
            Ok(json(StatusCode::CREATED, doc))
        }
        // 200 with the deleted assignment, 204 when there is none (RoleAssignments_Delete.json).
        // Its effect lasts one propagation delay longer (see `directory.rs`).
        Method::DELETE => {
            let Some(doc) = existing else {
                return Ok(json(StatusCode::NO_CONTENT, Value::Null));
            };
            let mut tombstone = doc.clone();
            tombstone["kmsflowDeletedMs"] = j!(now_ms());
            let tombstone_id = format!("{id}/kmsflowDeleted/{}", crate::http::new_guid());
            state.db.tx(|tx| {
                tx.execute("DELETE FROM resources WHERE id = ?1", [id.to_ascii_lowercase()])?;
                tx.execute(
                    "INSERT INTO resources (id, type, name, doc) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        tombstone_id.to_ascii_lowercase(),
                        DELETED_ASSIGNMENT_TYPE.to_ascii_lowercase(),
                        name.to_ascii_lowercase(),
                        tombstone.to_string()
                    ],
                )?;
                Ok(())
            })?;
            Ok(json(StatusCode::OK, doc))
        }
        _ => Err(method_not_allowed(req)),
    }
}

/// `GET {scope}/providers/Microsoft.Authorization/roleDefinitions[/{guid}]`: built-in and custom
/// definitions, ids in the scope's subscription; the list honours `$filter=roleName eq '…'` and
/// `$filter=type eq 'BuiltInRole'|'CustomRole'`.
pub fn definitions(state: &Shared, req: &Req, scope: &str, name: Option<&str>) -> ArmResult {
    if req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let sub = subscription_of(scope);
    let directory = Directory::new(state);
    if let Some(guid) = name {
        return directory
            .role_definition(guid)?
            .map(|d| json(StatusCode::OK, d.to_arm(&sub)))
            .ok_or_else(|| {
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "RoleDefinitionDoesNotExist",
                    format!("The specified role definition with ID '{guid}' does not exist."),
                )
            });
    }
    let filter = req.query.get("$filter").map(String::as_str).unwrap_or_default();
    let wanted = |key: &str| {
        filter
            .split(&format!("{key} eq '"))
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .map(str::to_string)
    };
    let (role_name, role_type) = (wanted("roleName"), wanted("type"));
    let list: Vec<Value> = directory
        .role_definitions()?
        .into_iter()
        .filter(|d| role_name.as_ref().is_none_or(|n| d.role_name.eq_ignore_ascii_case(n)))
        .filter(|d| role_type.as_ref().is_none_or(|t| d.role_type.eq_ignore_ascii_case(t)))
        .map(|d| d.to_arm(&sub))
        .collect();
    Ok(json(StatusCode::OK, j!({ "value": list })))
}
