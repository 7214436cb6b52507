//! Entra ID: the client-credentials token endpoint, and validation of the bearer tokens it
//! issues (HS256 JWTs whose claims follow Entra's v2 access tokens: `aud`, `iss`, `tid`, `oid`,
//! `appid`, `exp`), so that a client can read its own object id from the `oid` claim exactly as
//! it would against Azure.
//!
//! Tokens expiring mid-run: the lifetime of new tokens is a run-time setting
//! ([`crate::state::AppState::token_lifetime`]), and an admin call revokes every token issued so
//! far by raising the token generation (a private `xms_kmsflow_gen` claim): a token of an older
//! generation is refused as expired, so the next call with it gets the service's 401 and a new
//! token works.

use crate::state::{Shared, AKS_SERVER_APP_ID, ARM_AUDIENCE, GRAPH_AUDIENCE, VAULT_AUDIENCE};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;

use crate::http::{json as json_response, new_guid, now_rfc3339, now_s};

/// Who made a request, from a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub object_id: String,
    pub client_id: String,
    pub tenant_id: String,
}

/// Why a request's token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
    Expired,
    WrongAudience(String),
}

type HmacSha256 = Hmac<Sha256>;

fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Mints an access token for `principal` with audience `aud`.
pub fn mint(state: &Shared, object_id: &str, client_id: &str, aud: &str) -> (String, i64) {
    let now = now_s();
    let lifetime = state.token_lifetime().as_secs() as i64;
    let header = json!({"typ": "JWT", "alg": "HS256", "kid": "localcloud"});
    let claims = json!({
        "aud": aud, "iss": state.issuer(), "iat": now, "nbf": now, "exp": now + lifetime,
        "oid": object_id, "sub": object_id, "tid": state.tenant_id, "appid": client_id,
        "azp": client_id, "idtyp": "app", "ver": "2.0", "uti": new_guid(),
        "xms_kmsflow_gen": state.token_generation(),
    });
    let body = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = B64.encode(sign(&state.token_key, body.as_bytes()));
    (format!("{body}.{sig}"), lifetime)
}

/// Validates the bearer token in `headers` for `audience`.
pub fn authenticate(state: &Shared, headers: &HeaderMap, audience: &str) -> Result<Caller, AuthFailure> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthFailure::Missing)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthFailure::Invalid)?;
    let mut parts = token.rsplitn(2, '.');
    let (sig, body) = (
        parts.next().ok_or(AuthFailure::Invalid)?,
        parts.next().ok_or(AuthFailure::Invalid)?,
    );
    let expected = sign(&state.token_key, body.as_bytes());
    let given = B64.decode(sig).map_err(|_| AuthFailure::Invalid)?;
    if !constant_time_eq(&expected, &given) {
        return Err(AuthFailure::Invalid);
    }
    let claims_b64 = body.split('.').nth(1).ok_or(AuthFailure::Invalid)?;
    let claims: Value = serde_json::from_slice(&B64.decode(claims_b64).map_err(|_| AuthFailure::Invalid)?)
        .map_err(|_| AuthFailure::Invalid)?;
    let exp = claims["exp"].as_i64().ok_or(AuthFailure::Invalid)?;
    if exp <= now_s() {
        return Err(AuthFailure::Expired);
    }
    // A token minted before the last revocation is refused as an expired one would be.
    if claims["xms_kmsflow_gen"].as_u64().unwrap_or(0) < state.token_generation() {
        return Err(AuthFailure::Expired);
    }
    let aud = claims["aud"].as_str().unwrap_or_default();
    if aud.trim_end_matches('/') != audience.trim_end_matches('/') {
        return Err(AuthFailure::WrongAudience(aud.to_string()));
    }
    let field = |k: &str| claims[k].as_str().map(str::to_string).ok_or(AuthFailure::Invalid);
    Ok(Caller {
        object_id: field("oid")?,
        client_id: field("appid")?,
        tenant_id: field("tid")?,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

/// Entra's error body (azure-reference.md §5: `error`, `error_description` with the AADSTS code,
/// `error_codes`, `timestamp`, `trace_id`, `correlation_id`).
pub(crate) fn error_response(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = new_guid();
    let correlation = new_guid();
    json_response(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {}", now_rfc3339()),
            "error_codes": [code],
            "timestamp": now_rfc3339(),
            "trace_id": trace,
            "correlation_id": correlation,
        }),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`.
pub async fn token(State(state): State<Shared>, Path(tenant): Path<String>, Form(req): Form<TokenRequest>) -> Response {
    if tenant != state.tenant_id && tenant != "organizations" {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    if req.grant_type.as_deref() != Some("client_credentials") {
        return error_response(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let client_id = req.client_id.unwrap_or_default();
    let principal = match state.db.principal_by_client_id(&client_id) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
            )
        }
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "temporarily_unavailable",
                50000,
                &e.to_string(),
            )
        }
    };
    match (&principal.secret, &req.client_secret) {
        (Some(expected), Some(given)) if constant_time_eq(expected.as_bytes(), given.as_bytes()) => {}
        _ => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            )
        }
    }
    let scope = req.scope.unwrap_or_default();
    let audience = scope.strip_suffix("/.default").unwrap_or(&scope).trim_end_matches('/');
    let known: HashMap<&str, ()> = [ARM_AUDIENCE, VAULT_AUDIENCE, GRAPH_AUDIENCE, AKS_SERVER_APP_ID]
        .into_iter()
        .map(|a| (a, ()))
        .collect();
    if !scope.ends_with("/.default") || !known.contains_key(audience) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        );
    }
    let (access_token, expires_in) = mint(&state, &principal.object_id, &principal.client_id, audience);
    json_response(
        StatusCode::OK,
        json!({ "token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": access_token }),
    )
}

/// Graph `GET /v1.0/me`: only delegated (user) tokens may call it, as in Microsoft Graph.
pub async fn me(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let request_id = new_guid();
    let inner = json!({"date": now_rfc3339(), "request-id": request_id, "client-request-id": request_id});
    match authenticate(&state, &headers, GRAPH_AUDIENCE) {
        Ok(_) => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "BadRequest", "message": "/me request is only valid with delegated authentication flow.", "innerError": inner}}),
        ),
        Err(_) => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid.", "innerError": inner}}),
        ),
    }
}

/// Revokes every token issued so far: each is refused from now on as an expired token is (the
/// next call with it gets its service's 401), while new tokens work. Survives a restart.
/// Returns the new token generation.
pub fn revoke_all(state: &Shared) -> Result<u64, rusqlite::Error> {
    let generation = state
        .token_generation
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        .saturating_add(1);
    state.db.set_meta("token_generation", &generation.to_string())?;
    Ok(generation)
}
