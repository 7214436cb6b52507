//! The Key Vault data plane for keys, routed by host name (`{vault}.vault.localhost`): create,
//! get, versions, rotate, update attributes and tags, and real RSA encrypt/decrypt/wrap/unwrap.
//!
//! Authorisation follows the vault: access policies, or Azure RBAC roles when
//! `enableRbacAuthorization` is on; network rules follow `publicNetworkAccess` and `networkAcls`.
//! [`key_operation`] is also what the clusters' API servers call (issue 4), as their identity and
//! from their own network origin, so permissions and key state have their real effect there too.

use crate::arm;
use crate::db::KeyRecord;
use crate::directory::Directory;
use crate::entra::{authenticate, AuthFailure};
use crate::http::{json, new_guid, now_s};
use crate::state::{Shared, VAULT_AUDIENCE, VAULT_SUFFIX};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey};
use serde_json::{json as j, Value};
use sha2::Sha256;
use std::collections::HashMap;

/// Key Vault's error: `{"error":{"code","message","innererror"?}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub inner: Option<String>,
}

impl KvError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        KvError {
            status,
            code: code.into(),
            message: message.into(),
            inner: None,
        }
    }
    fn inner(mut self, code: &str) -> Self {
        self.inner = Some(code.into());
        self
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }
    fn forbidden(message: impl Into<String>, inner: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message).inner(inner)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", e.to_string())
    }
}

impl From<rusqlite::Error> for KvError {
    fn from(e: rusqlite::Error) -> Self {
        KvError::internal(e)
    }
}

impl From<crate::http::ArmError> for KvError {
    fn from(e: crate::http::ArmError) -> Self {
        KvError::new(e.status, &e.code, e.message)
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        let mut error = j!({"code": self.code, "message": self.message});
        if let Some(inner) = self.inner {
            error["innererror"] = j!({"code": inner});
        }
        (self.status, axum::Json(j!({ "error": error }))).into_response()
    }
}

/// Where a data-plane call comes from, for the vault's network rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The public internet (every HTTP client of the local cloud): its address.
    Public(String),
    /// Through a private endpoint of the vault (a cluster in Private mode): the endpoint's id.
    PrivateEndpoint(String),
}

/// Who calls, from where.
#[derive(Debug, Clone)]
pub struct KvCaller {
    pub object_id: String,
    pub tenant_id: String,
    pub origin: Origin,
}

/// The crypto operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoOp {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
}

impl CryptoOp {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "encrypt" => Some(CryptoOp::Encrypt),
            "decrypt" => Some(CryptoOp::Decrypt),
            "wrapkey" => Some(CryptoOp::WrapKey),
            "unwrapkey" => Some(CryptoOp::UnwrapKey),
            _ => None,
        }
    }
    /// The access-policy permission and `key_ops` entry it needs.
    pub fn permission(self) -> &'static str {
        match self {
            CryptoOp::Encrypt => "encrypt",
            CryptoOp::Decrypt => "decrypt",
            CryptoOp::WrapKey => "wrapKey",
            CryptoOp::UnwrapKey => "unwrapKey",
        }
    }
    fn protects(self) -> bool {
        matches!(self, CryptoOp::Encrypt | CryptoOp::WrapKey)
    }
}

/// The vault name in a `{vault}.vault.localhost[:port]` host.
pub fn vault_of_host(host: &str) -> Option<String> {
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    host.strip_suffix(&format!(".{VAULT_SUFFIX}"))
        .filter(|v| !v.is_empty() && !v.contains('.'))
        .map(str::to_string)
}

/// The vault's document, or 404; also 404 while the vault is `RegisteringDns` (for in-cloud
/// callers such as AKS and the API servers' KMS plugin, whose lookup of the name fails as any
/// client's does).
fn vault_doc(state: &Shared, vault: &str) -> Result<Value, KvError> {
    let doc = arm::vaults::by_name(state, vault)?.ok_or_else(|| {
        KvError::new(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("Vault '{vault}' does not exist."),
        )
    })?;
    if doc["properties"]["provisioningState"] == "RegisteringDns" {
        return Err(KvError::new(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("The host name of vault '{vault}' does not resolve yet: the vault is still RegisteringDns."),
        ));
    }
    Ok(doc)
}

/// Network, tenant and permission checks for `permission` on `vault`.
fn authorize(state: &Shared, caller: &KvCaller, vault: &Value, permission: &str) -> Result<(), KvError> {
    let p = &vault["properties"];
    let name = vault["name"].as_str().unwrap_or_default();
    match &caller.origin {
        Origin::Public(addr) => {
            if p["publicNetworkAccess"]
                .as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case("disabled"))
            {
                return Err(KvError::forbidden(
                    "Public network access is disabled and request is not from a trusted service nor via an approved private link.",
                    "ForbiddenByConnection",
                ));
            }
            if p["networkAcls"]["defaultAction"]
                .as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case("deny"))
            {
                let allowed = p["networkAcls"]["ipRules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["value"].as_str())
                    .any(|v| v.split('/').next() == Some(addr.as_str()));
                if !allowed {
                    return Err(KvError::forbidden(
                        format!("Client address is not authorized and caller is not a trusted service.\r\nClient address: {addr}\r\nCaller: oid={}\r\nVault: {name};location={}", caller.object_id, vault["location"].as_str().unwrap_or_default()),
                        "ForbiddenByFirewall",
                    ));
                }
            }
        }
        Origin::PrivateEndpoint(endpoint) => {
            let approved = p["privateEndpointConnections"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["properties"]["privateEndpoint"]["id"]
                        .as_str()
                        .is_some_and(|id| id.eq_ignore_ascii_case(endpoint))
                        && c["properties"]["privateLinkServiceConnectionState"]["status"] == "Approved"
                });
            if !approved {
                return Err(KvError::forbidden(
                    "The private endpoint connection is not approved.",
                    "ForbiddenByConnection",
                ));
            }
        }
    }
    let vault_tenant = p["tenantId"].as_str().unwrap_or_default();
    if !vault_tenant.eq_ignore_ascii_case(&caller.tenant_id) {
        return Err(KvError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!("AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{vault_tenant}/, found https://sts.windows.net/{}/.", caller.tenant_id),
        ));
    }
    let rbac = p["enableRbacAuthorization"].as_bool().unwrap_or(false);
    if rbac {
        let id = vault["id"].as_str().unwrap_or_default();
        let action = data_action(permission);
        // A decision still waiting for propagation answers exactly like a denial (as on Azure).
        if Directory::new(state)
            .check_data_action(&caller.object_id, id, &action)?
            .allowed()
        {
            return Ok(());
        }
        return Err(forbidden_by_rbac(caller, vault, &action));
    }
    let allowed = p["accessPolicies"].as_array().into_iter().flatten().any(|policy| {
        policy["objectId"]
            .as_str()
            .is_some_and(|o| o.eq_ignore_ascii_case(&caller.object_id))
            && policy["permissions"]["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|k| k.eq_ignore_ascii_case(permission) || k.eq_ignore_ascii_case("all"))
    });
    if allowed {
        return Ok(());
    }
    Err(KvError::forbidden(
        format!("The user, group or application 'oid={};' does not have keys {} permission on key vault '{name};location={}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287", caller.object_id, permission.to_ascii_lowercase(), vault["location"].as_str().unwrap_or_default()),
        "ForbiddenByPolicy",
    ))
}

/// The RBAC data action a key permission needs, as the Key Vault roles name them
/// (MicrosoftDocs/azure-docs `articles/role-based-access-control/permissions/security.md`,
/// `Microsoft.KeyVault/vaults/keys/...`): reads and lists are `keys/read`; `wrapKey` and
/// `unwrapKey` are `keys/wrap/action` and `keys/unwrap/action`; the rest `keys/{op}/action`.
/// The service checks them literally: that page's remark that public-key operations (encrypt,
/// wrap) "can be performed by principals with read access" is about clients doing them locally
/// with the public key they read, not about the service's `/encrypt` endpoint.
pub fn data_action(permission: &str) -> String {
    let op = match permission {
        "get" | "list" => return "Microsoft.KeyVault/vaults/keys/read".into(),
        "wrapKey" => "wrap",
        "unwrapKey" => "unwrap",
        other => other,
    };
    format!("Microsoft.KeyVault/vaults/keys/{op}/action")
}

/// Key Vault's 403 for a caller whose role assignments do not (yet) allow `action`:
/// `{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on
/// resource.\r\nIf role assignments, deny assignments or role definitions were changed recently,
/// please observe propagation time.\r\n…","innererror":{"code":"ForbiddenByRbac"}}}` — the
/// same answer before an assignment has propagated as without one.
fn forbidden_by_rbac(caller: &KvCaller, vault: &Value, action: &str) -> KvError {
    let name = vault["name"].as_str().unwrap_or_default();
    KvError::forbidden(
        format!("Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: oid={}\r\nAction: '{action}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {name};location={}\r\n", caller.object_id, vault["id"].as_str().unwrap_or_default().to_ascii_lowercase(), vault["location"].as_str().unwrap_or_default()),
        "ForbiddenByRbac",
    )
}

fn key_name_is_valid(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn key_not_found(name: &str, version: Option<&str>) -> KvError {
    let what = match version {
        Some(v) => format!("A key with (name/id) {name}/{v} was not found in this key vault."),
        None => format!("A key with (name/id) {name} was not found in this key vault."),
    };
    KvError::new(StatusCode::NOT_FOUND, "KeyNotFound", format!("{what} If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"))
}

/// The stored version `version` of key `name`, or the newest.
fn find_key(state: &Shared, vault: &str, name: &str, version: Option<&str>) -> Result<KeyRecord, KvError> {
    let versions = state.db.key_versions(vault, name)?;
    match version.filter(|v| !v.is_empty()) {
        Some(v) => versions
            .into_iter()
            .find(|k| k.version.eq_ignore_ascii_case(v))
            .ok_or_else(|| key_not_found(name, Some(v))),
        None => versions.into_iter().last().ok_or_else(|| key_not_found(name, None)),
    }
}

/// Creates a new version of key `name` from `params` (`kty`, `key_size`, `key_ops`, attributes, tags).
fn create_version(state: &Shared, vault: &Value, name: &str, params: &Value) -> Result<KeyRecord, KvError> {
    let vault_name = vault["name"].as_str().unwrap_or_default().to_ascii_lowercase();
    let kty = params["kty"]
        .as_str()
        .ok_or_else(|| KvError::bad("The parameter kty is required."))?;
    let premium = vault["properties"]["sku"]["name"] == "premium";
    let (doc_key, private_der) = match kty {
        "RSA" | "RSA-HSM" => {
            if kty == "RSA-HSM" && !premium {
                return Err(KvError::bad("RSA-HSM keys require a premium vault."));
            }
            let bits = params["key_size"].as_u64().unwrap_or(2048);
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(KvError::bad(format!(
                    "Invalid key size {bits}; RSA keys are 2048, 3072 or 4096 bits."
                )));
            }
            let key = RsaPrivateKey::new(&mut rand::thread_rng(), bits as usize).map_err(KvError::internal)?;
            let der = key.to_pkcs8_der().map_err(KvError::internal)?.as_bytes().to_vec();
            (
                j!({"kty": kty, "n": B64.encode(key.n().to_bytes_be()), "e": B64.encode(key.e().to_bytes_be())}),
                der,
            )
        }
        "EC" | "EC-HSM" => {
            let crv = params["crv"].as_str().unwrap_or("P-256");
            if crv != "P-256" {
                return Err(KvError::bad(format!(
                    "The local cloud supports EC curve P-256 only, not {crv}."
                )));
            }
            let pair = rcgen::KeyPair::generate().map_err(KvError::internal)?;
            let raw = pair.public_key_raw();
            let (x, y) = raw
                .get(1..)
                .map(|p| p.split_at(32))
                .ok_or_else(|| KvError::internal("bad EC point"))?;
            (
                j!({"kty": kty, "crv": crv, "x": B64.encode(x), "y": B64.encode(y)}),
                pair.serialize_der(),
            )
        }
        other => {
            return Err(KvError::bad(format!(
                "Key type '{other}' is not supported; use RSA, RSA-HSM, EC or EC-HSM."
            )))
        }
    };
    let default_ops: &[&str] = if kty.starts_with("RSA") {
        &["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
    } else {
        &["sign", "verify"]
    };
    let ops = params
        .get("key_ops")
        .cloned()
        .filter(Value::is_array)
        .unwrap_or(j!(default_ops));
    let version = new_guid().replace('-', "");
    let kid = format!("{}/keys/{name}/{version}", state.vault_url(&vault_name));
    let now = now_s();
    let attrs = &params["attributes"];
    let purge_protected = vault["properties"]["enablePurgeProtection"].as_bool().unwrap_or(false);
    let mut key = doc_key;
    key["kid"] = j!(kid);
    key["key_ops"] = ops;
    let mut attributes = j!({
        "enabled": attrs["enabled"].as_bool().unwrap_or(true), "created": now, "updated": now,
        "recoveryLevel": if purge_protected { "Recoverable" } else { "Recoverable+Purgeable" },
        "recoverableDays": vault["properties"]["softDeleteRetentionInDays"].as_i64().unwrap_or(90),
        "exportable": false,
    });
    for k in ["exp", "nbf"] {
        if let Some(v) = attrs[k].as_i64() {
            attributes[k] = j!(v);
        }
    }
    let doc = j!({"key": key, "attributes": attributes, "tags": params.get("tags").cloned().unwrap_or(j!({}))});
    let record = KeyRecord {
        vault: vault_name,
        name: name.to_string(),
        version,
        seq: state.db.next_key_seq()?,
        doc,
        private_der: Some(private_der),
    };
    state.db.put_key(&record)?;
    Ok(record)
}

/// A key version: `version` none means the newest.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub vault: &'a str,
    pub name: &'a str,
    pub version: Option<&'a str>,
}

/// Encrypts, decrypts, wraps or unwraps `value` with a key version, as `caller`; returns the
/// versioned key id and the result.
pub fn key_operation(
    state: &Shared,
    caller: &KvCaller,
    key: KeyRef<'_>,
    op: CryptoOp,
    alg: &str,
    value: &[u8],
) -> Result<(String, Vec<u8>), KvError> {
    let KeyRef { vault, name, version } = key;
    let vault_doc = vault_doc(state, vault)?;
    authorize(state, caller, &vault_doc, op.permission())?;
    let key = find_key(state, vault, name, version)?;
    let attrs = &key.doc["attributes"];
    let verb = op.permission().to_ascii_lowercase();
    if attrs["enabled"] == j!(false) {
        return Err(KvError::forbidden(
            format!("Operation {verb} is not allowed on a disabled key."),
            "KeyDisabled",
        ));
    }
    let now = now_s();
    if op.protects() {
        if attrs["exp"].as_i64().is_some_and(|exp| now >= exp) {
            return Err(KvError::forbidden(
                format!("Operation {verb} is not allowed on an expired key."),
                "KeyExpired",
            ));
        }
        if attrs["nbf"].as_i64().is_some_and(|nbf| now < nbf) {
            return Err(KvError::forbidden(
                format!("Operation {verb} is not allowed on a key that is not yet valid."),
                "KeyNotYetValid",
            ));
        }
    }
    let allowed_ops = key.doc["key"]["key_ops"].as_array().cloned().unwrap_or_default();
    if !allowed_ops
        .iter()
        .any(|o| o.as_str().is_some_and(|o| o.eq_ignore_ascii_case(op.permission())))
    {
        return Err(KvError::bad(format!(
            "Operation {verb} is not allowed by the key's key_ops."
        )));
    }
    let der = key
        .private_der
        .as_deref()
        .ok_or_else(|| KvError::internal("key material missing"))?;
    let kty = key.doc["key"]["kty"].as_str().unwrap_or_default();
    if !kty.starts_with("RSA") {
        return Err(KvError::bad(format!(
            "Operation {verb} is not supported for key type {kty}."
        )));
    }
    let private = RsaPrivateKey::from_pkcs8_der(der).map_err(KvError::internal)?;
    let mut rng = rand::thread_rng();
    let out = match (op.protects(), alg) {
        (true, "RSA-OAEP-256") => private.to_public_key().encrypt(&mut rng, Oaep::new::<Sha256>(), value),
        (true, "RSA1_5") => private.to_public_key().encrypt(&mut rng, Pkcs1v15Encrypt, value),
        (false, "RSA-OAEP-256") => private.decrypt(Oaep::new::<Sha256>(), value),
        (false, "RSA1_5") => private.decrypt(Pkcs1v15Encrypt, value),
        (_, other) => {
            return Err(KvError::bad(format!(
                "Algorithm '{other}' is not supported; use RSA-OAEP-256 or RSA1_5."
            )))
        }
    }
    .map_err(|e| KvError::bad(format!("The {verb} operation failed: {e}")))?;
    Ok((key.doc["key"]["kid"].as_str().unwrap_or_default().to_string(), out))
}

fn challenge(state: &Shared) -> HeaderValue {
    let value = format!(
        "Bearer authorization=\"{}/{}\", resource=\"{VAULT_AUDIENCE}\"",
        state.base_url(),
        state.tenant_id
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// Every request on a vault host.
pub async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(vault) = vault_of_host(&host) else {
        return KvError::new(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("No vault at host '{host}'."),
        )
        .into_response();
    };
    // A vault still `RegisteringDns` has no DNS name yet: the TLS handshake for its host is
    // refused (`tls::VaultDns`); a request that arrives anyway (no SNI) loses its connection too.
    if arm::vaults::dns_registered(&state, &vault).ok().flatten() == Some(false) {
        return crate::http::dropped_connection();
    }
    let caller = match authenticate(&state, &headers, VAULT_AUDIENCE) {
        Ok(c) => c,
        Err(failure) => {
            let message = match failure {
                AuthFailure::Missing => "Request is missing a Bearer or PoP token.".to_string(),
                AuthFailure::Expired => "AKV10022: Invalid audience or the token has expired.".to_string(),
                AuthFailure::WrongAudience(aud) => {
                    format!("AKV10022: Invalid audience. Expected {VAULT_AUDIENCE}, found: {aud}.")
                }
                AuthFailure::Invalid => {
                    "AKV10000: Request is missing a Bearer or PoP token, or the token is invalid.".to_string()
                }
            };
            let mut response = KvError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge(&state));
            return response;
        }
    };
    let caller = KvCaller {
        object_id: caller.object_id,
        tenant_id: caller.tenant_id,
        origin: Origin::Public("127.0.0.1".into()),
    };
    let query = crate::http::query_map(&uri);
    let mut response = match route(&state, &caller, &vault, &method, uri.path(), &query, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let h = response.headers_mut();
    h.insert("x-ms-keyvault-service-version", HeaderValue::from_static("1.9.0.0"));
    h.insert("x-ms-keyvault-region", HeaderValue::from_static("local"));
    response
}

fn route(
    state: &Shared,
    caller: &KvCaller,
    vault: &str,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, KvError> {
    if !query.contains_key("api-version") {
        return Err(KvError::bad("The 'api-version' parameter is missing."));
    }
    let body_json = || -> Result<Value, KvError> {
        if body.is_empty() {
            Ok(j!({}))
        } else {
            serde_json::from_slice(body).map_err(|e| KvError::bad(format!("The request body is not valid JSON: {e}")))
        }
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let vault_doc = vault_doc(state, vault)?;
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (method.clone(), l.as_slice()) {
        (Method::GET, ["keys"]) => {
            authorize(state, caller, &vault_doc, "list")?;
            let items: Vec<Value> = state
                .db
                .key_names(vault)?
                .iter()
                .filter_map(|n| state.db.key_versions(vault, n).ok().and_then(|v| v.into_iter().last()))
                .map(|k| item(&k, false))
                .collect();
            Ok(json(StatusCode::OK, j!({"value": items, "nextLink": null})))
        }
        (Method::POST, ["keys", _, "create"]) => {
            let name = segs[1];
            if !key_name_is_valid(name) {
                return Err(KvError::bad(format!(
                    "The key name '{name}' is invalid: use 1-127 letters, digits and hyphens."
                )));
            }
            authorize(state, caller, &vault_doc, "create")?;
            let record = create_version(state, &vault_doc, name, &body_json()?)?;
            Ok(json(StatusCode::OK, record.doc))
        }
        (Method::POST, ["keys", _, "rotate"]) => {
            authorize(state, caller, &vault_doc, "rotate")?;
            let latest = find_key(state, vault, segs[1], None)?;
            let params = j!({
                "kty": latest.doc["key"]["kty"], "key_ops": latest.doc["key"]["key_ops"],
                "key_size": latest.doc["key"]["n"].as_str().map(|n| B64.decode(n).map(|b| b.len() * 8).unwrap_or(2048)),
                "crv": latest.doc["key"]["crv"], "tags": latest.doc["tags"],
            });
            let record = create_version(state, &vault_doc, segs[1], &params)?;
            Ok(json(StatusCode::OK, record.doc))
        }
        (Method::GET, ["keys", _, "versions"]) => {
            authorize(state, caller, &vault_doc, "list")?;
            let versions = state.db.key_versions(vault, segs[1])?;
            if versions.is_empty() {
                return Err(key_not_found(segs[1], None));
            }
            let max = query
                .get("maxresults")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(25)
                .clamp(1, 25);
            let skip = query
                .get("$skiptoken")
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(0);
            let page: Vec<Value> = versions.iter().skip(skip).take(max).map(|k| item(k, true)).collect();
            let next = (skip + max < versions.len()).then(|| {
                format!(
                    "{}/keys/{}/versions?api-version={}&maxresults={max}&$skiptoken={}",
                    state.vault_url(vault),
                    segs[1],
                    query["api-version"],
                    skip + max
                )
            });
            Ok(json(StatusCode::OK, j!({"value": page, "nextLink": next})))
        }
        (Method::GET, ["keys", _]) | (Method::GET, ["keys", _, _]) => {
            authorize(state, caller, &vault_doc, "get")?;
            Ok(json(
                StatusCode::OK,
                find_key(state, vault, segs[1], segs.get(2).copied())?.doc,
            ))
        }
        (Method::PATCH, ["keys", _]) | (Method::PATCH, ["keys", _, _]) => {
            authorize(state, caller, &vault_doc, "update")?;
            let mut key = find_key(state, vault, segs[1], segs.get(2).copied())?;
            let patch = body_json()?;
            for k in ["enabled", "exp", "nbf"] {
                if let Some(v) = patch["attributes"].get(k) {
                    key.doc["attributes"][k] = v.clone();
                }
            }
            if let Some(tags) = patch.get("tags") {
                key.doc["tags"] = tags.clone();
            }
            if let Some(ops) = patch.get("key_ops").filter(|o| o.is_array()) {
                key.doc["key"]["key_ops"] = ops.clone();
            }
            key.doc["attributes"]["updated"] = j!(now_s());
            state.db.put_key(&key)?;
            Ok(json(StatusCode::OK, key.doc))
        }
        (Method::POST, ["keys", _, _, op]) => {
            let op =
                CryptoOp::parse(op).ok_or_else(|| KvError::bad(format!("Unknown key operation '{}'.", segs[3])))?;
            let req = body_json()?;
            let alg = req["alg"]
                .as_str()
                .ok_or_else(|| KvError::bad("The parameter alg is required."))?;
            let value = req["value"]
                .as_str()
                .and_then(|v| B64.decode(v.trim_end_matches('=')).ok())
                .ok_or_else(|| KvError::bad("The parameter value is required and must be base64url."))?;
            let key = KeyRef {
                vault,
                name: segs[1],
                version: Some(segs[2]),
            };
            let (kid, out) = key_operation(state, caller, key, op, alg, &value)?;
            Ok(json(StatusCode::OK, j!({"kid": kid, "value": B64.encode(out)})))
        }
        _ => Err(KvError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No route for {method} {path}"),
        )),
    }
}

/// A `KeyItem` of a list: `kid` (versioned in version lists), attributes, tags.
fn item(k: &KeyRecord, versioned: bool) -> Value {
    let kid = k.doc["key"]["kid"].as_str().unwrap_or_default();
    let kid = if versioned {
        kid.to_string()
    } else {
        kid.rsplit_once('/').map_or(kid, |(base, _)| base).to_string()
    };
    j!({"kid": kid, "attributes": k.doc["attributes"], "tags": k.doc["tags"]})
}

/// The private key of a version, PKCS#8 DER (for the admin API's test-only export).
pub fn private_key(state: &Shared, vault: &str, name: &str, version: &str) -> Result<Vec<u8>, KvError> {
    find_key(state, vault, name, Some(version))?
        .private_der
        .ok_or_else(|| KvError::internal("no key material"))
}
