//! `Microsoft.KeyVault/vaults`: create/get/patch, access policies, network settings, private
//! endpoint connections, name rules and global name uniqueness, soft-delete and purge protection.
//!
//! Creation is a long-running operation, as on Azure (reference §2: `provisioningState` is
//! `Succeeded|RegisteringDns`): with a non-zero [`crate::Config::vault_provisioning`] a new vault
//! answers 201 with `provisioningState: RegisteringDns` and `Retry-After`, and turns `Succeeded`
//! once the delay has passed (the client polls the vault, the `provisioningState` shape of
//! reference §5). Until then its data-plane host does not answer (see [`dns_registered`]).
//! Updates of a vault that is already `Succeeded` are synchronous: its DNS name exists.
//! Like clusters, vaults settle lazily on every read (no background task), and a hang armed on
//! the vault's id (admin API) keeps it `RegisteringDns` for the hang's duration.

use super::{location_of, lro, method_not_allowed, tracked, Req, Scope};
use crate::http::{is_guid, json, now_ms, ArmError, ArmResult};
use crate::state::Shared;
use axum::http::{HeaderValue, Method, StatusCode};
use serde_json::{json as j, Map, Value};

pub const TYPE: &str = "Microsoft.KeyVault/vaults";

/// The emulator's private field: when (ms since the epoch) the vault's DNS name exists.
const DNS_READY_AT: &str = "kmsflowDnsReadyAtMs";

/// Turns a `RegisteringDns` vault `Succeeded` once its time has come and no hang holds it
/// (persisting the change); returns the settled document.
fn settle(state: &Shared, mut doc: Value) -> Result<Value, ArmError> {
    if doc["properties"]["provisioningState"] != "RegisteringDns" {
        return Ok(doc);
    }
    let id = doc["id"].as_str().unwrap_or_default().to_string();
    let due = doc["properties"][DNS_READY_AT].as_i64().unwrap_or(0) <= now_ms();
    if !due || lro::hung_until(state, &id)?.is_some() {
        return Ok(doc);
    }
    doc["properties"]["provisioningState"] = j!("Succeeded");
    if let Some(p) = doc["properties"].as_object_mut() {
        p.remove(DNS_READY_AT);
    }
    let name = doc["name"].as_str().unwrap_or_default().to_string();
    state.db.put_resource(&id, TYPE, &name, &doc)?;
    Ok(doc)
}

/// The document as ARM returns it: without the emulator's private fields.
fn public(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Some(p) = d["properties"].as_object_mut() {
        p.remove(DNS_READY_AT);
    }
    d
}

/// Whether vault `name`'s data-plane host answers: `None` when no such vault exists, otherwise
/// whether it has left `RegisteringDns` (settling it first).
///
/// On Azure the host `{vault}.vault.azure.net` of a vault still `RegisteringDns` does not
/// resolve, so a client fails before any HTTP exchange. Every `*.vault.localhost` name resolves
/// to loopback here, so the local cloud refuses the TLS handshake for that host name instead
/// (see `tls::VaultDns`): the client again fails at connection level, with no HTTP status.
pub fn dns_registered(state: &Shared, name: &str) -> Result<Option<bool>, ArmError> {
    Ok(by_name(state, name)?.map(|v| v["properties"]["provisioningState"] != "RegisteringDns"))
}

/// Key Vault's name rule: 3-24 characters of letters, digits and hyphens, starting with a
/// letter, ending with a letter or digit, without consecutive hyphens.
pub fn name_is_valid(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        && !name.contains("--")
}

fn invalid_name(name: &str) -> ArmError {
    ArmError::bad_request(
        "VaultNameNotValid",
        format!("The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens. Follow this link for more information: https://go.microsoft.com/fwlink/?linkid=2147742"),
    )
}

fn bad(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("BadRequest", message)
}

/// Validates merged vault properties and fills in defaults; `previous` are the stored ones.
fn normalize(
    state: &Shared,
    name: &str,
    mut p: Map<String, Value>,
    previous: Option<&Value>,
) -> Result<Value, ArmError> {
    p.remove(DNS_READY_AT);
    let tenant = p.get("tenantId").and_then(Value::as_str).unwrap_or_default();
    if !is_guid(tenant) {
        return Err(bad("The 'tenantId' property is required and must be a GUID."));
    }
    let sku_ok = p["sku"]["family"].as_str().is_some_and(|f| f.eq_ignore_ascii_case("A"))
        && p["sku"]["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("standard") || n.eq_ignore_ascii_case("premium"));
    if !sku_ok {
        return Err(bad(
            "The 'sku' property is required: {\"family\":\"A\",\"name\":\"standard\"|\"premium\"}.",
        ));
    }
    let sku_name = p["sku"]["name"].as_str().unwrap_or("standard").to_ascii_lowercase();
    p.insert("sku".into(), j!({"family": "A", "name": sku_name}));

    let was = |k: &str| previous.and_then(|prev| prev[k].as_bool());
    match p.get("enablePurgeProtection") {
        Some(Value::Bool(false)) => {
            return Err(bad("The property \"enablePurgeProtection\" cannot be set to false. Enabling the purge protection for a vault is an irreversible action."))
        }
        None | Some(Value::Null) if was("enablePurgeProtection") == Some(true) => {
            p.insert("enablePurgeProtection".into(), j!(true));
        }
        _ => {}
    }
    match p.get("enableSoftDelete") {
        Some(Value::Bool(false)) if was("enableSoftDelete") != Some(false) => {
            return Err(bad("The property \"enableSoftDelete\" cannot be set to false. Soft delete is on for every vault and cannot be turned off."))
        }
        None | Some(Value::Null) => {
            p.insert("enableSoftDelete".into(), j!(true));
        }
        _ => {}
    }
    let days = p.get("softDeleteRetentionInDays").and_then(Value::as_i64).unwrap_or(90);
    if !(7..=90).contains(&days) {
        return Err(bad("softDeleteRetentionInDays must be between 7 and 90."));
    }
    p.insert("softDeleteRetentionInDays".into(), j!(days));
    for flag in [
        "enableRbacAuthorization",
        "enabledForDeployment",
        "enabledForDiskEncryption",
        "enabledForTemplateDeployment",
    ] {
        if !p.get(flag).is_some_and(Value::is_boolean) {
            p.insert(flag.into(), j!(false));
        }
    }
    let access = p
        .get("publicNetworkAccess")
        .and_then(Value::as_str)
        .unwrap_or("Enabled");
    let access = if access.eq_ignore_ascii_case("enabled") {
        "Enabled"
    } else if access.eq_ignore_ascii_case("disabled") {
        "Disabled"
    } else {
        return Err(bad(format!(
            "publicNetworkAccess '{access}' is invalid; use Enabled or Disabled."
        )));
    };
    p.insert("publicNetworkAccess".into(), j!(access));
    let acls = p.get("networkAcls").cloned().filter(Value::is_object).unwrap_or(j!({}));
    let default_action = acls["defaultAction"].as_str().unwrap_or("Allow");
    if !default_action.eq_ignore_ascii_case("allow") && !default_action.eq_ignore_ascii_case("deny") {
        return Err(bad("networkAcls.defaultAction must be Allow or Deny."));
    }
    p.insert(
        "networkAcls".into(),
        j!({
            "bypass": acls["bypass"].as_str().unwrap_or("AzureServices"),
            "defaultAction": if default_action.eq_ignore_ascii_case("deny") { "Deny" } else { "Allow" },
            "ipRules": acls.get("ipRules").cloned().unwrap_or(j!([])),
            "virtualNetworkRules": acls.get("virtualNetworkRules").cloned().unwrap_or(j!([])),
        }),
    );
    let policies = p.get("accessPolicies").cloned().unwrap_or(j!([]));
    let policies = policies
        .as_array()
        .cloned()
        .ok_or_else(|| bad("accessPolicies must be an array."))?;
    if policies.len() > 1024 {
        return Err(bad("A vault holds at most 1024 access policies."));
    }
    for policy in &policies {
        validate_policy(policy)?;
    }
    p.insert("accessPolicies".into(), j!(policies));
    p.insert("vaultUri".into(), j!(format!("{}/", state.vault_url(name))));
    p.insert("provisioningState".into(), j!("Succeeded"));
    let connections = previous
        .and_then(|prev| prev.get("privateEndpointConnections").cloned())
        .unwrap_or(j!([]));
    p.insert("privateEndpointConnections".into(), connections);
    Ok(Value::Object(p))
}

fn validate_policy(policy: &Value) -> Result<(), ArmError> {
    if !policy["tenantId"].as_str().is_some_and(is_guid) || policy["objectId"].as_str().is_none_or(str::is_empty) {
        return Err(bad("Each access policy needs a tenantId (GUID) and an objectId."));
    }
    if !policy["permissions"].is_object() {
        return Err(bad("Each access policy needs a permissions object."));
    }
    Ok(())
}

/// The vault document for `vault_id`, settled, if it exists.
pub fn get(state: &Shared, vault_id: &str) -> Result<Option<Value>, ArmError> {
    state.db.resource(vault_id)?.map(|d| settle(state, d)).transpose()
}

/// Finds a vault by name anywhere in this cloud (names are global), settled.
pub fn by_name(state: &Shared, name: &str) -> Result<Option<Value>, ArmError> {
    state
        .db
        .resources_named(TYPE, name)?
        .into_iter()
        .next()
        .map(|d| settle(state, d))
        .transpose()
}

pub fn check_name(state: &Shared, req: &Req) -> ArmResult {
    if req.method != Method::POST {
        return Err(method_not_allowed(req));
    }
    let body = req.json()?;
    let name = body["name"].as_str().unwrap_or_default();
    let answer = if !name_is_valid(name) {
        j!({"nameAvailable": false, "reason": "AccountNameInvalid", "message": invalid_name(name).message})
    } else if by_name(state, name)?.is_some() {
        j!({"nameAvailable": false, "reason": "AlreadyExists", "message": format!("The vault name '{name}' is already in use.")})
    } else {
        j!({"nameAvailable": true})
    };
    Ok(json(StatusCode::OK, answer))
}

pub async fn handle(state: &Shared, req: &Req, scope: &Scope<'_>, name: Option<&str>, rest: &[String]) -> ArmResult {
    let Some(name) = name else {
        if req.method != Method::GET {
            return Err(method_not_allowed(req));
        }
        let prefix = format!(
            "/subscriptions/{}/resourcegroups/{}/providers/{TYPE}/",
            scope.sub, scope.rg
        );
        let mut out = Vec::new();
        for doc in state.db.resources(TYPE, &prefix)? {
            out.push(public(&settle(state, doc)?));
        }
        return Ok(json(StatusCode::OK, j!({ "value": out })));
    };
    let id = scope.resource_id(TYPE, name);
    let existing = get(state, &id)?;
    let not_found = || ArmError::not_found(TYPE, name, scope.rg);
    match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {}
        ["accesspolicies", kind] => {
            let existing = existing.ok_or_else(not_found)?;
            return access_policies(state, req, &id, existing, kind);
        }
        ["privateendpointconnections"] if req.method == Method::GET => {
            let existing = existing.ok_or_else(not_found)?;
            return Ok(json(
                StatusCode::OK,
                j!({"value": existing["properties"]["privateEndpointConnections"]}),
            ));
        }
        _ => return Err(method_not_allowed(req)),
    }
    match req.method {
        Method::GET => existing
            .map(|d| {
                let mut r = json(StatusCode::OK, public(&d));
                if d["properties"]["provisioningState"] == "RegisteringDns" {
                    r.headers_mut()
                        .insert("retry-after", HeaderValue::from(lro::retry_after(state)));
                }
                r
            })
            .ok_or_else(not_found),
        Method::PUT => {
            if !name_is_valid(name) {
                return Err(invalid_name(name));
            }
            if existing.is_none() && by_name(state, name)?.is_some() {
                return Err(ArmError::conflict(
                    "VaultAlreadyExists",
                    format!("The vault name '{name}' is already in use. Vault names are globally unique so it is possible that the name is already taken. If you are sure that the vault name was not taken then it is possible that a vault with the same name was recently deleted but not purged after being placed in a recoverable state."),
                ));
            }
            let body = req.json()?;
            let location = location_of(&body)?;
            let props = body["properties"]
                .as_object()
                .cloned()
                .ok_or_else(|| bad("The 'properties' object is required."))?;
            let mut properties = normalize(state, name, props, existing.as_ref().map(|e| &e["properties"]))?;
            let pending = match &existing {
                // Still registering: the update keeps the pending registration.
                Some(e) if e["properties"]["provisioningState"] == "RegisteringDns" => {
                    Some(e["properties"][DNS_READY_AT].clone())
                }
                Some(_) => None,
                None => {
                    let delay = state.vault_provisioning();
                    (!delay.is_zero()).then(|| j!(now_ms() + delay.as_millis() as i64))
                }
            };
            if let Some(ready_at) = pending.clone() {
                properties["provisioningState"] = j!("RegisteringDns");
                properties[DNS_READY_AT] = ready_at;
            }
            let stored_name = existing
                .as_ref()
                .and_then(|e| e["name"].as_str().map(str::to_string))
                .unwrap_or_else(|| name.to_string());
            let doc = tracked(
                &id,
                &stored_name,
                TYPE,
                &location,
                body.get("tags").unwrap_or(&j!({})),
                properties,
            );
            state.db.put_resource(&id, TYPE, name, &doc)?;
            let mut response = json(
                if existing.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                public(&doc),
            );
            if pending.is_some() {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(lro::retry_after(state)));
            }
            Ok(response)
        }
        Method::PATCH => {
            let mut doc = existing.ok_or_else(not_found)?;
            let body = req.json()?;
            let mut props = doc["properties"].as_object().cloned().unwrap_or_default();
            if let Some(patch) = body["properties"].as_object() {
                for (k, v) in patch {
                    props.insert(k.clone(), v.clone());
                }
            }
            let registering = doc["properties"]["provisioningState"] == "RegisteringDns";
            let ready_at = doc["properties"][DNS_READY_AT].clone();
            doc["properties"] = normalize(state, name, props, Some(&doc["properties"]))?;
            if registering {
                doc["properties"]["provisioningState"] = j!("RegisteringDns");
                doc["properties"][DNS_READY_AT] = ready_at;
            }
            if let Some(tags) = body.get("tags") {
                doc["tags"] = tags.clone();
            }
            state.db.put_resource(&id, TYPE, name, &doc)?;
            Ok(json(StatusCode::OK, public(&doc)))
        }
        _ => Err(method_not_allowed(req)),
    }
}

/// `PUT .../accessPolicies/{add|replace|remove}`.
fn access_policies(state: &Shared, req: &Req, id: &str, mut doc: Value, kind: &str) -> ArmResult {
    if req.method != Method::PUT {
        return Err(method_not_allowed(req));
    }
    let body = req.json()?;
    let given = body["properties"]["accessPolicies"]
        .as_array()
        .cloned()
        .ok_or_else(|| bad("properties.accessPolicies is required."))?;
    for p in &given {
        validate_policy(p)?;
    }
    let mut policies = doc["properties"]["accessPolicies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let same = |a: &Value, b: &Value| {
        a["objectId"].as_str().map(str::to_ascii_lowercase) == b["objectId"].as_str().map(str::to_ascii_lowercase)
            && a["tenantId"].as_str().map(str::to_ascii_lowercase)
                == b["tenantId"].as_str().map(str::to_ascii_lowercase)
    };
    for g in &given {
        let pos = policies.iter().position(|p| same(p, g));
        match (kind, pos) {
            ("add", Some(i)) => {
                for list in ["keys", "secrets", "certificates", "storage"] {
                    let mut merged: Vec<String> = policies[i]["permissions"][list]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .chain(g["permissions"][list].as_array().into_iter().flatten())
                        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                        .collect();
                    merged.sort();
                    merged.dedup();
                    policies[i]["permissions"][list] = j!(merged);
                }
            }
            ("add", None) | ("replace", None) => policies.push(g.clone()),
            ("replace", Some(i)) => policies[i] = g.clone(),
            ("remove", Some(i)) => {
                for list in ["keys", "secrets", "certificates", "storage"] {
                    let drop: Vec<String> = g["permissions"][list]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                        .collect();
                    let kept: Vec<Value> = policies[i]["permissions"][list]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|v| v.as_str().is_none_or(|s| !drop.contains(&s.to_ascii_lowercase())))
                        .cloned()
                        .collect();
                    policies[i]["permissions"][list] = j!(kept);
                }
                let empty = ["keys", "secrets", "certificates", "storage"]
                    .iter()
                    .all(|l| policies[i]["permissions"][*l].as_array().is_none_or(Vec::is_empty));
                if empty {
                    policies.remove(i);
                }
            }
            ("remove", None) => {}
            _ => {
                return Err(bad(format!(
                    "Unknown access policy operation '{kind}'; use add, replace or remove."
                )))
            }
        }
    }
    doc["properties"]["accessPolicies"] = j!(policies);
    let name = doc["name"].as_str().unwrap_or_default().to_string();
    state.db.put_resource(id, TYPE, &name, &doc)?;
    Ok(json(
        StatusCode::OK,
        j!({
            "id": format!("{id}/accessPolicies/"), "name": kind, "type": "Microsoft.KeyVault/vaults/accessPolicies",
            "location": doc["location"], "properties": {"accessPolicies": given},
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::name_is_valid;

    #[test]
    fn vault_names_follow_the_documented_rule() {
        for ok in ["kv1", "kv-etcd-01", "A23456789012345678901234"] {
            assert!(name_is_valid(ok), "{ok}");
        }
        for bad in ["kv", "1kv", "kv-", "k--v", "kv_1", "A234567890123456789012345"] {
            assert!(!name_is_valid(bad), "{bad}");
        }
    }
}
