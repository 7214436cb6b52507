//! `Microsoft.ManagedIdentity/userAssignedIdentities`. Each identity is also a service principal
//! (object id = `principalId`) that access policies and role assignments can name, and as which
//! clusters call Key Vault. Identities cannot obtain tokens from the token endpoint (they have no
//! secret), as in Azure.

use super::{location_of, method_not_allowed, tracked, Req, Scope};
use crate::db::Principal;
use crate::http::{json, new_guid, ArmError, ArmResult};
use crate::state::Shared;
use axum::http::{Method, StatusCode};
use serde_json::json as j;

pub const TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

pub async fn handle(state: &Shared, req: &Req, scope: &Scope<'_>, name: Option<&str>, rest: &[String]) -> ArmResult {
    let Some(name) = name else {
        return super::list_in_group(state, req, scope, TYPE);
    };
    if !rest.is_empty() {
        return Err(method_not_allowed(req));
    }
    let id = scope.resource_id(TYPE, name);
    let existing = state.db.resource(&id)?;
    match req.method {
        Method::GET => existing
            .map(|doc| json(StatusCode::OK, doc))
            .ok_or_else(|| ArmError::not_found(TYPE, name, scope.rg)),
        Method::PUT => {
            let body = req.json()?;
            let location = location_of(&body)?;
            let valid = (3..=128).contains(&name.len())
                && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(ArmError::bad_request(
                    "InvalidResourceName",
                    format!("Resource name {name} is invalid. The name can be 3-128 characters long, start with a letter or number, and contain letters, numbers, hyphens and underscores."),
                ));
            }
            let tags = body.get("tags").cloned().unwrap_or(j!({}));
            let doc = put(state, &id, name, &location, &tags)?;
            Ok(json(
                if existing.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                doc,
            ))
        }
        _ => Err(method_not_allowed(req)),
    }
}

/// Creates or updates identity `id`; a new identity gets a fresh service principal (object id =
/// `principalId`), an existing one keeps its own. Returns the stored document.
pub fn put(
    state: &Shared,
    id: &str,
    name: &str,
    location: &str,
    tags: &serde_json::Value,
) -> Result<serde_json::Value, ArmError> {
    let properties = match state.db.resource(id)? {
        Some(doc) => doc["properties"].clone(),
        None => {
            let principal = Principal {
                object_id: new_guid(),
                client_id: new_guid(),
                secret: None,
                kind: "ServicePrincipal".into(),
                name: name.to_string(),
                tenant_id: state.tenant_id.clone(),
            };
            state.db.insert_principal(&principal)?;
            j!({"tenantId": state.tenant_id, "principalId": principal.object_id, "clientId": principal.client_id})
        }
    };
    let doc = tracked(id, name, TYPE, location, tags, properties);
    state.db.put_resource(id, TYPE, name, &doc)?;
    Ok(doc)
}
