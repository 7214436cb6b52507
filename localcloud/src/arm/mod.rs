//! Azure Resource Manager: one handler for every `/subscriptions/...` path, which parses the path
//! case-insensitively (as ARM does) and hands it to the resource provider that owns it.

pub mod api_versions;
pub mod clusters;
pub mod groups;
pub mod identities;
pub mod lro;
pub mod roles;
pub mod vaults;

pub use roles::role_definition_id;

use crate::entra::{authenticate, AuthFailure, Caller};
use crate::http::{json, ArmError, ArmResult};
use crate::state::{Shared, ARM_AUDIENCE};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json as j, Value};
use std::collections::HashMap;

/// One ARM request, parsed.
pub struct Req {
    pub method: Method,
    /// Path segments in the caller's casing.
    pub segs: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub caller: Caller,
}

impl Req {
    /// The JSON body, or ARM's error for a missing or malformed one.
    pub fn json(&self) -> Result<Value, ArmError> {
        if self.body.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'empty body'.",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        })
    }
}

/// Scope parts of a resource-group-level resource.
pub struct Scope<'a> {
    pub sub: &'a str,
    pub rg: &'a str,
    /// The resource group's canonical casing, from its document.
    pub rg_name: String,
    pub location: String,
}

impl Scope<'_> {
    pub fn resource_id(&self, provider: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{provider}/{name}",
            self.sub, self.rg_name
        )
    }
}

fn auth_error(failure: AuthFailure) -> ArmError {
    let (code, message) = match failure {
        AuthFailure::Missing => ("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.".to_string()),
        AuthFailure::Invalid => ("InvalidAuthenticationToken", "The access token is invalid.".to_string()),
        AuthFailure::Expired => ("ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.".to_string()),
        AuthFailure::WrongAudience(aud) => (
            "InvalidAuthenticationTokenAudience",
            format!("The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences '{ARM_AUDIENCE}'."),
        ),
    };
    ArmError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Every `/subscriptions/...` request.
pub async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match route(&state, method, &uri, headers, body).await {
        Ok(r) => r,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            // ARM names the token problem in a challenge too, so a client can tell an expired
            // token (get a new one) from a missing one (non-authoritative: the form seen in
            // `az --debug` output; the reference only asks for ARM's 401 body).
            let value = format!(
                "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\", error_description=\"{}\"",
                state.base_url(),
                state.tenant_id,
                e.message.replace('"', "'")
            );
            let mut response = e.into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, v);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn route(state: &Shared, method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> ArmResult {
    let caller = authenticate(state, &headers, ARM_AUDIENCE).map_err(auth_error)?;
    let query = crate::http::query_map(uri);
    if !query.contains_key("api-version") {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let req = Req {
        method,
        segs,
        query,
        headers,
        body,
        caller,
    };
    if req.segs.len() == 1 {
        return groups::list_subscriptions(state, &req);
    }
    let sub = req.segs.get(1).cloned().unwrap_or_default();
    if !groups::subscription_exists(state, &sub)? {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    }
    let lower: Vec<String> = req.segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let version = req.query.get("api-version").map(String::as_str).unwrap_or_default();
    if api_versions::check(&l, version, "").is_err() {
        // The refusal names the region the way ARM does: the resource group's, or the one in the path.
        let location = match l.as_slice() {
            ["subscriptions", _, "resourcegroups", _, ..] => groups::get(state, &sub, &req.segs[3])
                .ok()
                .and_then(|g| g["location"].as_str().map(str::to_string)),
            ["subscriptions", _, "providers", _, "locations", loc, ..] => Some(loc.to_string()),
            _ => None,
        };
        api_versions::check(&l, version, location.as_deref().unwrap_or("global"))?;
    }
    if let Some(i) = lower
        .windows(3)
        .position(|w| w == ["providers", "microsoft.authorization", "roleassignments"])
    {
        let scope = format!("/{}", req.segs[..i].join("/"));
        return roles::handle(state, &req, &scope, req.segs.get(i + 3).map(String::as_str)).await;
    }
    if let Some(i) = lower
        .windows(3)
        .position(|w| w == ["providers", "microsoft.authorization", "roledefinitions"])
    {
        let scope = format!("/{}", req.segs[..i].join("/"));
        return roles::definitions(state, &req, &scope, req.segs.get(i + 3).map(String::as_str));
    }
    match l.as_slice() {
        ["subscriptions", _] if req.method == Method::GET => Ok(json(
            StatusCode::OK,
            j!({"id": format!("/subscriptions/{sub}"), "subscriptionId": sub, "tenantId": state.tenant_id, "displayName": "local", "state": "Enabled"}),
        )),
        ["subscriptions", _, "resourcegroups"] => groups::list(state, &req, &sub),
        ["subscriptions", _, "resourcegroups", _] => groups::handle(state, &req, &sub, &req.segs[3]),
        ["subscriptions", _, "providers", "microsoft.containerservice", "managedclusters"]
            if req.method == Method::GET =>
        {
            clusters::list(state, &format!("/subscriptions/{sub}/"))
        }
        ["subscriptions", _, "providers", "microsoft.containerservice", "locations", _, kind @ ("operations" | "operationresults"), _] => {
            clusters::operation(state, &req, kind, &req.segs[7])
        }
        ["subscriptions", _, "providers", "microsoft.keyvault", "checknameavailability"] => {
            vaults::check_name(state, &req)
        }
        ["subscriptions", _, "resourcegroups", _, "providers", ns, ty, ..] => {
            let rg = req.segs[3].clone();
            let group = groups::get(state, &sub, &rg)?;
            let scope = Scope {
                sub: &sub,
                rg: &rg,
                rg_name: group["name"].as_str().unwrap_or(&rg).to_string(),
                location: group["location"].as_str().unwrap_or_default().to_string(),
            };
            let name = req.segs.get(7).cloned();
            let rest: Vec<String> = lower.iter().skip(8).cloned().collect();
            match (*ns, *ty) {
                ("microsoft.keyvault", "vaults") => vaults::handle(state, &req, &scope, name.as_deref(), &rest).await,
                ("microsoft.containerservice", "managedclusters") => {
                    clusters::handle(state, &req, &scope, name.as_deref(), &rest).await
                }
                ("microsoft.managedidentity", "userassignedidentities") => {
                    identities::handle(state, &req, &scope, name.as_deref(), &rest).await
                }
                _ => Err(ArmError::bad_request(
                    "InvalidResourceType",
                    format!(
                        "The resource type '{}' could not be found in the namespace '{}'.",
                        req.segs[6], req.segs[5]
                    ),
                )),
            }
        }
        _ => Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!("No route for {} {}", req.method, uri.path()),
        )),
    }
}

/// The common envelope of a tracked ARM resource.
pub fn tracked(id: &str, name: &str, rtype: &str, location: &str, tags: &Value, properties: Value) -> Value {
    j!({
        "id": id, "name": name, "type": rtype, "location": location,
        "tags": if tags.is_object() { tags.clone() } else { j!({}) },
        "properties": properties,
    })
}

/// `location` from a PUT body, lowercased without spaces as ARM normalises it.
pub fn location_of(body: &Value) -> Result<String, ArmError> {
    body["location"]
        .as_str()
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase().replace(' ', ""))
        .ok_or_else(|| {
            ArmError::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            )
        })
}

/// `GET` of every resource of `rtype` in the scope's resource group (any other method: 405).
pub fn list_in_group(state: &Shared, req: &Req, scope: &Scope<'_>, rtype: &str) -> ArmResult {
    if req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let prefix = format!(
        "/subscriptions/{}/resourcegroups/{}/providers/{rtype}/",
        scope.sub, scope.rg
    );
    Ok(json(
        StatusCode::OK,
        j!({ "value": state.db.resources(rtype, &prefix)? }),
    ))
}

/// 405 for a method a resource does not support.
pub fn method_not_allowed(req: &Req) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The requested method '{}' is not allowed on this resource.", req.method),
    )
}
