//! Subscriptions (seeded, read-only) and `Microsoft.Resources/resourceGroups`.

use super::{location_of, method_not_allowed, Req};
use crate::http::{json, ArmError, ArmResult};
use crate::state::Shared;
use axum::http::{Method, StatusCode};
use serde_json::{json as j, Value};

const RG_TYPE: &str = "Microsoft.Resources/resourceGroups";

/// The subscriptions this cloud has (a JSON list in `meta`).
pub fn subscriptions(state: &Shared) -> Result<Vec<String>, ArmError> {
    let raw = state.db.meta("subscriptions")?.unwrap_or_else(|| "[]".into());
    serde_json::from_str(&raw).map_err(ArmError::internal)
}

pub fn subscription_exists(state: &Shared, sub: &str) -> Result<bool, ArmError> {
    Ok(subscriptions(state)?.iter().any(|s| s.eq_ignore_ascii_case(sub)))
}

fn rg_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

/// The resource group document, or ARM's `ResourceGroupNotFound`.
pub fn get(state: &Shared, sub: &str, rg: &str) -> Result<Value, ArmError> {
    state.db.resource(&rg_id(sub, rg))?.ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    })
}

pub fn list(state: &Shared, req: &Req, sub: &str) -> ArmResult {
    if req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let groups = state
        .db
        .resources(RG_TYPE, &format!("/subscriptions/{sub}/resourcegroups/"))?;
    Ok(json(StatusCode::OK, j!({ "value": groups })))
}

/// `GET /subscriptions`: every subscription of this cloud, in ARM's list shape.
pub fn list_subscriptions(state: &Shared, req: &Req) -> ArmResult {
    if req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let value: Vec<Value> = subscriptions(state)?
        .into_iter()
        .map(|sub| {
            j!({"id": format!("/subscriptions/{sub}"), "subscriptionId": sub, "tenantId": state.tenant_id,
                "displayName": "local", "state": "Enabled"})
        })
        .collect();
    Ok(json(StatusCode::OK, j!({ "value": value })))
}

pub fn handle(state: &Shared, req: &Req, sub: &str, rg: &str) -> ArmResult {
    match req.method {
        Method::GET => Ok(json(StatusCode::OK, get(state, sub, rg)?)),
        // `az group exists`, the SDKs' `check_existence`: 204 or 404, no body.
        Method::HEAD => {
            let status = if state.db.resource(&rg_id(sub, rg))?.is_some() {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            };
            Ok(axum::response::IntoResponse::into_response(status))
        }
        Method::PUT => {
            let body = req.json()?;
            let location = location_of(&body)?;
            let valid = !rg.is_empty()
                && rg.len() <= 90
                && !rg.ends_with('.')
                && rg.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c));
            if !valid {
                return Err(ArmError::bad_request(
                    "InvalidResourceGroup",
                    format!("The provided resource group name '{rg}' has these invalid characters: ... The name can only be a letter, digit, '-', '.', '(', ')' or '_'."),
                ));
            }
            let existing = state.db.resource(&rg_id(sub, rg))?;
            if let Some(existing) = &existing {
                if existing["location"] != j!(location) {
                    return Err(ArmError::conflict(
                        "InvalidResourceGroupLocation",
                        format!("Invalid resource group location '{location}'. The Resource group already exists in location '{}'.", existing["location"].as_str().unwrap_or_default()),
                    ));
                }
            }
            let name = existing
                .as_ref()
                .and_then(|e| e["name"].as_str().map(str::to_string))
                .unwrap_or_else(|| rg.to_string());
            let id = rg_id(sub, &name);
            let doc = j!({
                "id": id, "name": name, "type": RG_TYPE, "location": location,
                "tags": body.get("tags").cloned().unwrap_or(j!({})),
                "properties": {"provisioningState": "Succeeded"},
            });
            state.db.put_resource(&id, RG_TYPE, &name, &doc)?;
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
