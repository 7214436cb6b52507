//! `Microsoft.ContainerService/managedClusters`: create, GET, whole-document PUT with `eTag` /
//! `If-Match`, tags PATCH, `listClusterAdminCredential` (a client certificate of the cluster's
//! own CA) and `listClusterUserCredential`, Entra integration with `disableLocalAccounts`, upgrades one minor version at a time,
//! long-running operations, and the AKS rules of the KMS feature (azure-reference.md §1, §7).
//!
//! Operations complete lazily: every access first settles operations whose time has come, so
//! nothing runs in the background and a restart of the local cloud loses nothing. They are
//! answered in the configured ARM shape and obey the operation faults (see [`super::lro`]).
//!
//! Strictness, as AKS:
//! - `If-Match` is compared byte for byte with the `eTag` of the stored document (the body's
//!   `eTag`, which is what a client sends back, reference §1.10); `*` matches any existing
//!   cluster. A quoted copy of an unquoted `eTag` is a different value and gets 412. No `ETag`
//!   header is sent: the body's `eTag` is the only one, so there is no second spelling to confuse.
//! - A PUT is validated as AKS validates it: `location`; `dnsPrefix` or `fqdnSubdomain` (one of
//!   them, immutable after creation); at least one agent pool, each with `name`, `count`,
//!   `vmSize` and `mode`, at least one of them `System`. On an update an omitted `dnsPrefix` or
//!   `agentPoolProfiles` keeps the stored ones. Read-only fields in the body are ignored.
//! - An empty or missing `kubernetesVersion` means [`DEFAULT_KUBERNETES_VERSION`] on create and
//!   the current version on update.

use super::lro;
use super::{location_of, method_not_allowed, tracked, Req, Scope};
use crate::http::{json, new_guid, now_ms, now_rfc3339, ArmError, ArmResult};
use crate::keyvault::{self, KvCaller, Origin};
use crate::state::{Shared, VAULT_SUFFIX};
use axum::http::{HeaderValue, Method, StatusCode};
use base64::Engine;
use serde_json::{json as j, Value};

pub const TYPE: &str = "Microsoft.ContainerService/ManagedClusters";
const STORE_TYPE: &str = "Microsoft.ContainerService/managedClusters";

/// Kubernetes minor versions this cloud offers, with their latest patch.
pub const VERSIONS: &[(u32, u32)] = &[
    (25, 16),
    (26, 15),
    (27, 16),
    (28, 15),
    (29, 14),
    (30, 12),
    (31, 8),
    (32, 4),
    (33, 1),
];

/// The version a cluster created without `kubernetesVersion` (or with `""`) gets: this cloud's
/// default, a GA minor below the newest as AKS's default is.
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.30";

/// Whether `state` is terminal.
fn terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "Canceled")
}

/// `(minor, patch)` of a `1.x[.y]` version this cloud supports.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    if parts.next()? != "1" {
        return None;
    }
    let minor: u32 = parts.next()?.parse().ok()?;
    let latest = VERSIONS.iter().find(|(m, _)| *m == minor)?.1;
    let patch = match parts.next() {
        Some(p) => p.parse().ok().filter(|p| *p <= latest)?,
        None => latest,
    };
    parts.next().is_none().then_some((minor, patch))
}

fn bad(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("BadRequest", message)
}

/// `(vault, key, version)` of a versioned key id on this cloud, per `az aks`'s validator plus
/// the legacy feature's need for a version.
fn parse_key_id(state: &Shared, key_id: &str) -> Result<(String, String, String), ArmError> {
    let invalid = || {
        ArmError::bad_request(
            "AzureKeyVaultKmsInvalidKeyId",
            format!("The key id '{key_id}' is not a valid versioned Key Vault key id: expected https://{{vault}}.{VAULT_SUFFIX}:{}/keys/{{name}}/{{version}}.", state.port),
        )
    };
    let rest = key_id.strip_prefix("https://").ok_or_else(invalid)?;
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.len() != 4 || segs[1] != "keys" || segs[3].is_empty() {
        return Err(invalid());
    }
    let vault = keyvault::vault_of_host(segs[0]).ok_or_else(invalid)?;
    Ok((vault, segs[2].to_string(), segs[3].to_string()))
}

/// Settles the cluster's operation if its time has come; returns the current document.
pub fn settle(state: &Shared, id: &str) -> Result<Option<Value>, ArmError> {
    let Some(mut doc) = state.db.resource(id)? else {
        return Ok(None);
    };
    let Some(op_id) = doc["properties"]["kmsflowOperation"].as_str().map(str::to_string) else {
        return Ok(Some(doc));
    };
    let Some(mut op) = state.db.operation(&op_id)? else {
        return Ok(Some(doc));
    };
    if !lro::is_due(state, &op)? {
        return Ok(Some(doc));
    }
    let outcome = lro::finish(&mut op);
    let p = &mut doc["properties"];
    p["provisioningState"] = j!(outcome);
    if outcome == "Succeeded" {
        let version = p["kubernetesVersion"].clone();
        p["currentKubernetesVersion"] = resolve_patch(&version);
        if let Some(pools) = p["agentPoolProfiles"].as_array_mut() {
            for pool in pools {
                pool["currentOrchestratorVersion"] = resolve_patch(&pool["orchestratorVersion"]);
            }
        }
    }
    if let Some(pools) = p["agentPoolProfiles"].as_array_mut() {
        for pool in pools {
            pool["provisioningState"] = j!(outcome);
        }
    }
    if let Some(obj) = p.as_object_mut() {
        obj.remove("kmsflowOperation");
    }
    state.db.tx(|tx| {
        tx.execute(
            "UPDATE operations SET doc = ?2 WHERE id = ?1",
            rusqlite::params![op_id, op.to_string()],
        )?;
        tx.execute(
            "UPDATE resources SET doc = ?2 WHERE id = ?1",
            rusqlite::params![id.to_ascii_lowercase(), doc.to_string()],
        )?;
        Ok(())
    })?;
    Ok(Some(doc))
}

fn resolve_patch(version: &Value) -> Value {
    version
        .as_str()
        .and_then(|v| parse_version(v).map(|(m, p)| j!(format!("1.{m}.{p}"))))
        .unwrap_or_else(|| version.clone())
}

/// The operation's status URL (`operations/{id}`, with the api-version of the request that
/// started it) or result URL (`operationresults/{id}`, with AKS's `2017-08-31`), reference §1.2.
fn operation_url(state: &Shared, sub: &str, location: &str, op_id: &str, kind: &str, api_version: &str) -> String {
    let version = if kind == "operationresults" {
        super::api_versions::AKS_OPERATION_RESULTS
    } else {
        api_version
    };
    format!("{}/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}/{kind}/{op_id}?api-version={version}", state.base_url())
}

/// GET of an operation's status (`operations/{id}`) or result (`operationresults/{id}`), after
/// settling the operation's cluster.
pub fn operation(state: &Shared, req: &Req, kind: &str, op_id: &str) -> ArmResult {
    if req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let op = state.db.operation(op_id)?.ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Operation {op_id} not found."),
        )
    })?;
    let op = match op["resourceId"].as_str() {
        Some(id) => {
            settle(state, id)?;
            state.db.operation(op_id)?.unwrap_or(op)
        }
        None => op,
    };
    let sub = req.segs.get(1).map(String::as_str).unwrap_or_default();
    let location = req.segs.get(5).map(String::as_str).unwrap_or_default();
    if kind == "operationresults" {
        let self_url = operation_url(state, sub, location, op_id, kind, "");
        return Ok(lro::result_answer(state, &op, &self_url));
    }
    let id_path =
        format!("/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}/operations/{op_id}");
    Ok(lro::status_document(state, &op, &id_path, op_id))
}

fn in_progress(current: &str) -> ArmError {
    ArmError::conflict(
        "OperationNotAllowed",
        format!("Operation is not allowed: Another operation ({current}) is in progress, please wait for it to finish before starting a new operation. See https://aka.ms/aks-pending-operation for more details"),
    )
}

pub async fn handle(state: &Shared, req: &Req, scope: &Scope<'_>, name: Option<&str>, rest: &[String]) -> ArmResult {
    let Some(name) = name else {
        return if req.method == Method::GET {
            let prefix = format!(
                "/subscriptions/{}/resourcegroups/{}/providers/{STORE_TYPE}/",
                scope.sub, scope.rg
            );
            list(state, &prefix)
        } else {
            Err(method_not_allowed(req))
        };
    };
    let id = scope.resource_id(STORE_TYPE, name);
    let existing = settle(state, &id)?;
    let not_found = || ArmError::not_found(STORE_TYPE, name, scope.rg);
    match (
        rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        &req.method,
    ) {
        ([], &Method::GET) => {
            let doc = existing.ok_or_else(not_found)?;
            let mut response = json(StatusCode::OK, public(&doc));
            if !terminal(doc["properties"]["provisioningState"].as_str().unwrap_or("Succeeded")) {
                // The provisioning-state shape polls here; it gets the same pacing as the others.
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(lro::retry_after(state)));
            }
            Ok(response)
        }
        ([], &Method::PUT) => put(state, req, scope, name, &id, existing).await,
        ([], &Method::PATCH) => {
            let mut doc = existing.ok_or_else(not_found)?;
            let body = req.json()?;
            if let Some(tags) = body.get("tags") {
                doc["tags"] = tags.clone();
            }
            doc["eTag"] = j!(new_guid());
            state.db.put_resource(&id, STORE_TYPE, name, &doc)?;
            Ok(json(StatusCode::OK, public(&doc)))
        }
        (["listclusteradmincredential"], &Method::POST) => {
            let doc = existing.ok_or_else(not_found)?;
            if crate::k8s::local_accounts_disabled(&doc) {
                return Err(bad(LOCAL_ACCOUNTS_DISABLED));
            }
            Ok(json(
                StatusCode::OK,
                j!({"kubeconfigs": [{"name": "clusterAdmin", "value": kubeconfig(state, &doc, Credential::Admin)?}]}),
            ))
        }
        (["listclusterusercredential"], &Method::POST) => {
            let doc = existing.ok_or_else(not_found)?;
            let user = if crate::k8s::entra_integrated(&doc) {
                Credential::Entra
            } else {
                Credential::User
            };
            Ok(json(
                StatusCode::OK,
                j!({"kubeconfigs": [{"name": "clusterUser", "value": kubeconfig(state, &doc, user)?}]}),
            ))
        }
        _ => Err(method_not_allowed(req)),
    }
}

/// Clusters under `prefix` (a subscription or resource group), settled.
pub fn list(state: &Shared, prefix: &str) -> ArmResult {
    let mut out = Vec::new();
    for doc in state.db.resources(STORE_TYPE, prefix)? {
        let id = doc["id"].as_str().unwrap_or_default().to_string();
        if let Some(settled) = settle(state, &id)? {
            out.push(public(&settled));
        }
    }
    Ok(json(StatusCode::OK, j!({ "value": out })))
}

/// The document without the emulator's private fields.
fn public(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Some(p) = d["properties"].as_object_mut() {
        p.remove("kmsflowOperation");
        // The bearer admin credential of state directories from before client certificates.
        p.remove("kmsflowAdminToken");
        p.remove("kmsflowPreviousKeyId");
    }
    d
}

/// AKS's answer to `listClusterAdminCredential` on a cluster with `disableLocalAccounts`
/// (400 `BadRequest`; the wording is AKS's as users report it — the reference has no entry).
pub const LOCAL_ACCOUNTS_DISABLED: &str =
    "Getting static credential is not allowed because this cluster is set to disable local accounts.";

/// Which user a kubeconfig carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    /// `clusterAdmin_{rg}_{name}`: the admin client certificate of the cluster's CA.
    Admin,
    /// `clusterUser_{rg}_{name}` on a cluster without Entra integration: the same certificate,
    /// as AKS hands local-account clusters' users a static credential.
    User,
    /// `clusterUser_{rg}_{name}` on an Entra-integrated cluster: an exec (kubelogin) stub for the
    /// AKS server application; a client gets the token itself (reference §1.9).
    Entra,
}

/// A kubeconfig for the cluster's API server, base64 as `CredentialResults` carries it
/// (azure-reference.md §1.9). `certificate-authority-data` is the CA of the local cloud's
/// server certificate (what a client must trust); the client certificate is issued by the
/// cluster's own CA ([`crate::pki`]), which only that cluster's API server accepts.
fn kubeconfig(state: &Shared, doc: &Value, credential: Credential) -> Result<String, ArmError> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let id = doc["id"].as_str().unwrap_or_default();
    let name = doc["name"].as_str().unwrap_or_default();
    let rg = id.split('/').nth(4).unwrap_or_default();
    let server = format!("https://127.0.0.1:{}/k8s{}", state.port, id.to_ascii_lowercase());
    let ca = b64(&state.ca_pem);
    let (user, context, auth) = match credential {
        Credential::Admin | Credential::User => {
            let pki = crate::pki::for_cluster(state, id).map_err(ArmError::internal)?;
            let (user, context) = if credential == Credential::Admin {
                (format!("clusterAdmin_{rg}_{name}"), format!("{name}-admin"))
            } else {
                (format!("clusterUser_{rg}_{name}"), name.to_string())
            };
            let auth = format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(&pki.admin_cert_pem),
                b64(&pki.admin_key_pem)
            );
            (user, context, auth)
        }
        Credential::Entra => {
            let auth = format!(
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: kubelogin\n      args:\n      - get-token\n      - --environment\n      - AzurePublicCloud\n      - --server-id\n      - {}\n      - --client-id\n      - 80faf920-1908-4b52-b5ef-a8e7bedfc67a\n      - --tenant-id\n      - {}\n      - --login\n      - devicecode\n      env: null\n      installHint: |\n        kubelogin is not installed which is required to connect to AAD enabled cluster.\n      provideClusterInfo: false\n      interactiveMode: IfAvailable\n",
                crate::state::AKS_SERVER_APP_ID,
                state.tenant_id
            );
            (format!("clusterUser_{rg}_{name}"), name.to_string(), auth)
        }
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {context}\n  context:\n    cluster: {name}\n    user: {user}\ncurrent-context: {context}\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n{auth}"
    );
    Ok(base64::engine::general_purpose::STANDARD.encode(yaml))
}

/// AKS's rule for local accounts: `disableLocalAccounts: true` needs managed Entra integration
/// (`aadProfile.managed: true`), since nothing else could sign in. The message is this cloud's
/// wording (the reference has none).
fn validate_local_accounts(p: &Value) -> Result<(), ArmError> {
    if p["disableLocalAccounts"] == j!(true) && p["aadProfile"]["managed"] != j!(true) {
        return Err(bad(
            "disableLocalAccounts can only be set on a cluster with managed Azure AD integration (aadProfile.managed = true).",
        ));
    }
    Ok(())
}

/// The `azureKeyVaultKms` block, if enabled.
fn kms_of(doc: &Value) -> Option<&Value> {
    let kms = &doc["properties"]["securityProfile"]["azureKeyVaultKms"];
    (kms["enabled"] == j!(true)).then_some(kms)
}

async fn put(state: &Shared, req: &Req, scope: &Scope<'_>, name: &str, id: &str, existing: Option<Value>) -> ArmResult {
    if let Some(doc) = &existing {
        let current = doc["properties"]["provisioningState"].as_str().unwrap_or("Succeeded");
        if !terminal(current) {
            return Err(in_progress(current));
        }
    }
    // Literal comparison (no unquoting): the eTag must come back exactly as the body carried it.
    let if_match = req
        .headers
        .get("if-match")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let if_none_match = req.headers.get("if-none-match").and_then(|v| v.to_str().ok());
    match (&existing, if_match.as_deref(), if_none_match) {
        (Some(_), _, Some("*")) => return Err(precondition("The cluster already exists (If-None-Match: *).")),
        (Some(doc), Some(tag), _) if tag != "*" && doc["eTag"].as_str() != Some(tag) => {
            return Err(precondition(
                "The If-Match value does not equal the cluster's current eTag byte for byte; GET the cluster again and send its eTag exactly as returned.",
            ))
        }
        (None, Some(_), _) => return Err(precondition("If-Match was given but the cluster does not exist.")),
        _ => {}
    }
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid_name {
        return Err(ArmError::bad_request("InvalidResourceName", format!("Resource name {name} is invalid: 1-63 letters, digits, '-' and '_', starting and ending with a letter or digit.")));
    }
    let body = req.json()?;
    let location = location_of(&body)?;
    let p = &body["properties"];
    let old_props = existing.as_ref().map(|d| &d["properties"]);
    let dns = dns_names(p, old_props)?;
    let version = match (p["kubernetesVersion"].as_str().filter(|v| !v.is_empty()), old_props) {
        (Some(v), _) => v.to_string(),
        (None, Some(old)) => old["kubernetesVersion"]
            .as_str()
            .unwrap_or(DEFAULT_KUBERNETES_VERSION)
            .to_string(),
        (None, None) => DEFAULT_KUBERNETES_VERSION.to_string(),
    };
    let (minor, _) = parse_version(&version).ok_or_else(|| {
        ArmError::bad_request("VersionNotSupported", format!("Version {version} is not supported in this region. Please use [az aks get-versions] command to get the supported version list in this region."))
    })?;
    let pools = agent_pools(p, old_props, &version)?;
    validate_local_accounts(p)?;
    let identity = identity_of(state, &body)?;
    if let Some(old) = &existing {
        let current = old["properties"]["currentKubernetesVersion"].as_str().unwrap_or("1.30");
        let (old_minor, _) = parse_version(current).unwrap_or((30, 0));
        if minor < old_minor {
            return Err(ArmError::bad_request(
                "NotAllowedDowngrade",
                format!("Downgrading from {current} to {version} is not allowed."),
            ));
        }
        if minor > old_minor + 1 {
            return Err(ArmError::bad_request(
                "UpgradeFailed",
                format!("Upgrading Kubernetes version {current} to {version} is not allowed. Available upgrades: 1.{}. Minor versions cannot be skipped.", old_minor + 1),
            ));
        }
        if minor >= 27 && old_minor < 27 && kms_of(old).is_some() {
            return Err(ArmError::bad_request(
                "UpgradeBlockedByKmsV1",
                format!("Upgrading a cluster with Azure Key Vault KMS enabled from {current} to {version} is blocked: disable KMS, rewrite all secrets, upgrade, then enable KMS again (KMS v2 starts at 1.27)."),
            ));
        }
    }
    let vnet = p["apiServerAccessProfile"]["enableVnetIntegration"] == j!(true);
    if let Some(old) = &existing {
        if old["properties"]["apiServerAccessProfile"]["enableVnetIntegration"] == j!(true) && !vnet {
            return Err(bad("API Server VNet Integration cannot be disabled once enabled."));
        }
    }
    let kms = &p["securityProfile"]["azureKeyVaultKms"];
    if kms["enabled"] == j!(true) {
        validate_kms(state, kms, &identity, vnet, existing.as_ref().and_then(kms_of)).await?;
    }

    let op_id = new_guid();
    let creating = existing.is_none();
    let in_flight = if creating { "Creating" } else { "Updating" };
    let mut properties = p.clone();
    if !properties.is_object() {
        properties = j!({});
    }
    if let Some(obj) = properties.as_object_mut() {
        for read_only in READ_ONLY_PROPERTIES {
            obj.remove(*read_only);
        }
        obj.remove("dnsPrefix");
        obj.remove("fqdnSubdomain");
        for (k, v) in dns {
            obj.insert(k.to_string(), j!(v));
        }
    }
    properties["kubernetesVersion"] = j!(version);
    properties["provisioningState"] = j!(in_flight);
    properties["powerState"] = j!({"code": "Running"});
    properties["currentKubernetesVersion"] = existing
        .as_ref()
        .map(|d| d["properties"]["currentKubernetesVersion"].clone())
        .unwrap_or_else(|| resolve_patch(&j!(version)));
    properties["agentPoolProfiles"] = pools;
    if let Some(pools) = properties["agentPoolProfiles"].as_array_mut() {
        for pool in pools {
            pool["provisioningState"] = j!(in_flight);
        }
    }
    properties["servicePrincipalProfile"] = j!({"clientId": "msi"});
    properties["nodeResourceGroup"] = j!(format!("MC_{}_{name}_{location}", scope.rg_name));
    properties["fqdn"] = j!(format!("{name}-dns.hcp.{location}.localhost"));
    properties["kmsflowOperation"] = j!(op_id);
    if properties["aadProfile"]["managed"] == j!(true) && properties["aadProfile"]["tenantID"].is_null() {
        properties["aadProfile"]["tenantID"] = j!(state.tenant_id);
    }
    let (previous, fail_with) = rotation(state, existing.as_ref(), kms)?;
    properties["kmsflowPreviousKeyId"] = previous;
    let mut doc = tracked(
        id,
        name,
        TYPE,
        &location,
        body.get("tags").unwrap_or(&j!({})),
        properties,
    );
    doc["identity"] = identity.doc.clone();
    doc["sku"] = body.get("sku").cloned().unwrap_or(j!({"name": "Base", "tier": "Free"}));
    doc["eTag"] = j!(new_guid());

    let shape = lro::next_shape(state)?;
    let completes = now_ms() + state.operation_duration().as_millis() as i64;
    let mut op = j!({"id": op_id, "name": op_id, "status": "InProgress", "startTime": now_rfc3339(),
        "completesAtMs": completes, "resourceId": id, "shape": shape.as_str()});
    // An armed fault is consumed by this operation even when the KMS rotation already fails it.
    let ending = lro::take_ending(state, id)?;
    match (fail_with, ending) {
        (Some(error), _) => op["failWith"] = error,
        (None, Some(e)) => {
            op["failWith"] = j!({"code": e.code, "message": e.message});
            op["endStatus"] = j!(e.status);
        }
        (None, None) => {}
    }
    if kms["enabled"] == j!(true) && kms["keyVaultNetworkAccess"] == "Private" {
        approve_private_endpoint(state, kms, id)?;
    }
    state.db.put_operation(&op_id, &op)?;
    state.db.put_resource(id, STORE_TYPE, name, &doc)?;
    let api_version = req.query.get("api-version").map(String::as_str).unwrap_or_default();
    Ok(lro::accepted(
        state,
        shape,
        creating,
        public(&doc),
        &operation_url(state, scope.sub, &location, &op_id, "operations", api_version),
        &operation_url(state, scope.sub, &location, &op_id, "operationresults", api_version),
    ))
}

/// Properties a client cannot set: ignored when a PUT carries them (the GET document a
/// read-modify-write sends back has them all), and the emulator's private fields.
const READ_ONLY_PROPERTIES: &[&str] = &[
    "provisioningState",
    "powerState",
    "currentKubernetesVersion",
    "fqdn",
    "azurePortalFQDN",
    "privateFQDN",
    "maxAgentPools",
    "resourceUID",
    "kmsflowOperation",
    "kmsflowAdminToken",
    "kmsflowPreviousKeyId",
];

/// Read-only fields of an agent pool profile.
const READ_ONLY_POOL_FIELDS: &[&str] = &[
    "provisioningState",
    "powerState",
    "currentOrchestratorVersion",
    "nodeImageVersion",
];

fn invalid_parameter(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("InvalidParameter", message)
}

/// `dnsPrefix` / `fqdnSubdomain` of a PUT: exactly one on create (AKS requires one and refuses
/// both); on update an omitted one keeps the stored one, and neither may change.
fn dns_names(p: &Value, old: Option<&Value>) -> Result<Vec<(&'static str, String)>, ArmError> {
    let given = |k: &str| p[k].as_str().filter(|v| !v.is_empty()).map(str::to_string);
    let (prefix, sub) = (given("dnsPrefix"), given("fqdnSubdomain"));
    if prefix.is_some() && sub.is_some() {
        return Err(invalid_parameter(
            "Only one of dnsPrefix and fqdnSubdomain can be specified.",
        ));
    }
    let stored = |k: &str| old.and_then(|o| o[k].as_str()).filter(|v| !v.is_empty());
    for (k, v) in [("dnsPrefix", &prefix), ("fqdnSubdomain", &sub)] {
        if let (Some(new), Some(old)) = (v, stored(k)) {
            if new != old {
                return Err(ArmError::bad_request(
                    "PropertyChangeNotAllowed",
                    format!("Changing property '{k}' is not allowed."),
                ));
            }
        }
    }
    let chosen = match (prefix, sub) {
        (Some(v), None) => ("dnsPrefix", v),
        (None, Some(v)) => ("fqdnSubdomain", v),
        _ => match (stored("dnsPrefix"), stored("fqdnSubdomain")) {
            (Some(v), _) => ("dnsPrefix", v.to_string()),
            (None, Some(v)) => ("fqdnSubdomain", v.to_string()),
            (None, None) => {
                return Err(invalid_parameter(
                    "Required parameter dnsPrefix or fqdnSubdomain is missing (null).",
                ))
            }
        },
    };
    let v = &chosen.1;
    let valid = (1..=54).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid {
        return Err(ArmError::bad_request(
            "InvalidDnsPrefix",
            format!("The {} '{v}' is invalid: 1-54 letters, digits and hyphens, starting and ending with a letter or digit.", chosen.0),
        ));
    }
    Ok(vec![chosen])
}

/// The agent pools of a PUT, validated as AKS does, with read-only fields taken from the stored
/// pool of the same name; an update without `agentPoolProfiles` keeps the stored pools.
fn agent_pools(p: &Value, old: Option<&Value>, version: &str) -> Result<Value, ArmError> {
    let stored: Vec<Value> = old
        .and_then(|o| o["agentPoolProfiles"].as_array().cloned())
        .unwrap_or_default();
    let given = match p.get("agentPoolProfiles") {
        None | Some(Value::Null) if !stored.is_empty() => return Ok(j!(stored)),
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(pools)) => pools.clone(),
        Some(_) => return Err(invalid_parameter("agentPoolProfiles must be an array.")),
    };
    if given.is_empty() {
        return Err(invalid_parameter(
            "Required parameter agentPoolProfiles is missing (null): a managed cluster needs at least one agent pool.",
        ));
    }
    let mut out = Vec::with_capacity(given.len());
    let mut names = std::collections::HashSet::new();
    for (i, pool) in given.into_iter().enumerate() {
        let field = |k: &str| format!("agentPoolProfiles[{i}].{k}");
        let name = pool["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(invalid_parameter(format!(
                "Required parameter {} is missing (null).",
                field("name")
            )));
        }
        let valid_name = name.len() <= 12
            && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_name {
            return Err(ArmError::bad_request(
                "InvalidAgentPoolName",
                format!(
                    "Agent pool name '{name}' is invalid: 1-12 lowercase letters and digits, starting with a letter."
                ),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(invalid_parameter(format!("Agent pool name '{name}' is used twice.")));
        }
        let count = pool["count"]
            .as_i64()
            .ok_or_else(|| invalid_parameter(format!("Required parameter {} is missing (null).", field("count"))))?;
        if !(0..=1000).contains(&count) {
            return Err(invalid_parameter(format!(
                "{} must be between 0 and 1000.",
                field("count")
            )));
        }
        if pool["vmSize"].as_str().is_none_or(str::is_empty) {
            return Err(invalid_parameter(format!(
                "Required parameter {} is missing (null).",
                field("vmSize")
            )));
        }
        match pool["mode"].as_str() {
            Some("System") if count < 1 => {
                return Err(invalid_parameter(format!(
                    "System agent pool '{name}' needs a count of at least 1."
                )))
            }
            Some("System" | "User") => {}
            Some(other) => {
                return Err(invalid_parameter(format!(
                    "{} '{other}' is invalid; use System or User.",
                    field("mode")
                )))
            }
            None => {
                return Err(invalid_parameter(format!(
                    "Required parameter {} is missing (null).",
                    field("mode")
                )))
            }
        }
        let mut pool = pool;
        let previous = stored.iter().find(|s| s["name"] == j!(name));
        if let Some(obj) = pool.as_object_mut() {
            for k in READ_ONLY_POOL_FIELDS {
                obj.remove(*k);
            }
        }
        if pool["orchestratorVersion"].as_str().is_none_or(str::is_empty) {
            pool["orchestratorVersion"] = j!(version);
        }
        pool["currentOrchestratorVersion"] = previous
            .map(|s| s["currentOrchestratorVersion"].clone())
            .unwrap_or_else(|| resolve_patch(&pool["orchestratorVersion"]));
        out.push(pool);
    }
    if !out.iter().any(|pool| pool["mode"] == "System") {
        return Err(ArmError::bad_request(
            "MustDefineAtLeastOneSystemPool",
            "Must define at least one system pool.",
        ));
    }
    Ok(j!(out))
}

fn precondition(message: &str) -> ArmError {
    ArmError::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailed", message)
}

/// The cluster identity as given, resolved against the identity resources.
struct ClusterIdentity {
    doc: Value,
    /// `(resource id, principal id)` of the user-assigned identity.
    user_assigned: Option<(String, String)>,
}

fn identity_of(state: &Shared, body: &Value) -> Result<ClusterIdentity, ArmError> {
    let identity = &body["identity"];
    let kind = identity["type"].as_str().unwrap_or("SystemAssigned");
    match kind {
        "UserAssigned" => {
            let map = identity["userAssignedIdentities"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if map.len() != 1 {
                return Err(bad(
                    "Exactly one user-assigned identity is allowed for the cluster identity.",
                ));
            }
            let (uai_id, _) = map.into_iter().next().ok_or_else(|| bad("missing identity"))?;
            let uai = state.db.resource(&uai_id)?.ok_or_else(|| {
                ArmError::bad_request(
                    "CustomerUserAssignedIdentityNotFound",
                    format!("The user-assigned identity {uai_id} was not found."),
                )
            })?;
            let principal = uai["properties"]["principalId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let client = uai["properties"]["clientId"].clone();
            let canonical = uai["id"].as_str().unwrap_or(&uai_id).to_string();
            Ok(ClusterIdentity {
                doc: j!({"type": "UserAssigned", "userAssignedIdentities": {canonical.clone(): {"principalId": principal, "clientId": client}}}),
                user_assigned: Some((canonical, principal)),
            })
        }
        "SystemAssigned" => Ok(ClusterIdentity {
            doc: j!({"type": "SystemAssigned", "principalId": new_guid(), "tenantId": state.tenant_id}),
            user_assigned: None,
        }),
        other => Err(bad(format!(
            "Identity type '{other}' is not supported; use UserAssigned or SystemAssigned."
        ))),
    }
}

/// The KMS rules AKS enforces when the block is enabled.
async fn validate_kms(
    state: &Shared,
    kms: &Value,
    identity: &ClusterIdentity,
    vnet: bool,
    previous: Option<&Value>,
) -> Result<(), ArmError> {
    let Some((_, principal)) = &identity.user_assigned else {
        return Err(bad("AzureKeyVaultKms feature does not support cluster identity type SystemAssigned, supported value is 'UserAssigned'."));
    };
    let key_id = kms["keyId"].as_str().unwrap_or_default();
    if key_id.is_empty() {
        return Err(bad("KeyId is required when Azure Key Vault KMS is enabled."));
    }
    let access = kms["keyVaultNetworkAccess"]
        .as_str()
        .ok_or_else(|| bad("KeyVault network access is unspecified for Azure Key Vault KMS."))?;
    let resource_id = kms["keyVaultResourceId"].as_str().unwrap_or_default();
    let private = match access {
        "Private" => true,
        "Public" => false,
        other => {
            return Err(bad(format!(
                "KeyVault network access '{other}' is invalid; use Public or Private."
            )))
        }
    };
    if private && resource_id.is_empty() {
        return Err(bad(
            "KeyVault resource ID is empty when KeyVault network access is Private.",
        ));
    }
    if !private && !resource_id.is_empty() {
        return Err(bad(
            "KeyVault resource ID must be empty when KeyVault network access is Public.",
        ));
    }
    if private && !vnet {
        return Err(bad(
            "Vnet integration should be enabled when KeyVault network access is Private.",
        ));
    }
    let (vault_name, key_name, version) = parse_key_id(state, key_id)?;
    let vault = super::vaults::by_name(state, &vault_name)?.ok_or_else(|| {
        ArmError::bad_request(
            "AzureKeyVaultKmsKeyVaultNotFound",
            format!("The key vault '{vault_name}' of key id {key_id} was not found."),
        )
    })?;
    if private
        && !vault["id"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(resource_id))
    {
        return Err(bad(format!(
            "keyVaultResourceId {resource_id} is not the vault of key id {key_id}."
        )));
    }
    let vp = &vault["properties"];
    if !vp["tenantId"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(&state.tenant_id))
    {
        return Err(ArmError::bad_request(
            "AzureKeyVaultKmsCrossTenantNotSupported",
            format!("The key vault '{vault_name}' belongs to tenant {}; Azure Key Vault KMS does not support a vault from another tenant.", vp["tenantId"].as_str().unwrap_or_default()),
        ));
    }
    let firewalled = vp["networkAcls"]["defaultAction"] == "Deny" || vp["publicNetworkAccess"] == "Disabled";
    if !private && firewalled {
        return Err(ArmError::bad_request(
            "AzureKeyVaultKmsVaultFirewallNotSupported",
            format!("The key vault '{vault_name}' restricts network access (firewall or public access disabled), which is not supported with keyVaultNetworkAccess Public. Use Private mode with API server VNet integration, or allow public access."),
        ));
    }
    if private && !firewalled {
        return Err(bad(format!("keyVaultNetworkAccess is Private but vault '{vault_name}' allows public network access; disable public network access on the vault first.")));
    }
    if let Some(prev) = previous {
        let same_vault =
            parse_key_id(state, prev["keyId"].as_str().unwrap_or_default()).is_ok_and(|(v, _, _)| v == vault_name);
        if same_vault && prev["keyVaultNetworkAccess"].as_str() != Some(access) {
            return Err(bad("The network access mode of the key vault can't be changed while KMS is enabled. Disable KMS, rewrite all secrets, change the vault, then enable KMS in the new mode."));
        }
    }
    let versions = state.db.key_versions(&vault_name, &key_name)?;
    let key = versions
        .iter()
        .find(|k| k.version.eq_ignore_ascii_case(&version))
        .ok_or_else(|| {
            ArmError::bad_request(
                "AzureKeyVaultKmsKeyNotFound",
                format!("The key {key_id} was not found in key vault '{vault_name}'."),
            )
        })?;
    if !key.doc["key"]["kty"].as_str().is_some_and(|k| k.starts_with("RSA")) {
        return Err(ArmError::bad_request(
            "AzureKeyVaultKmsValidateIdentityPermissionCustomerError",
            format!("The identity does not have keys encrypt/decrypt permission on key vault {vault_name}: key {key_name} is not an RSA key."),
        ));
    }
    if key.doc["attributes"]["enabled"] == j!(false) {
        return Err(ArmError::bad_request(
            "AzureKeyVaultKmsKeyDisabled",
            format!("The key {key_id} is disabled."),
        ));
    }
    if private {
        // AKS cannot reach a private vault to validate; it only needs to create the private endpoint.
        let vault_id = vault["id"].as_str().unwrap_or_default();
        // azure-reference.md §1.8: the identity needs `PrivateEndpointConnectionsApproval/action`
        // (in Key Vault Contributor), through an assignment that has propagated.
        let approve = "Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action";
        if !crate::directory::Directory::new(state)
            .check_action(principal, vault_id, approve)?
            .allowed()
        {
            return Err(ArmError::bad_request(
                "AzureKeyVaultKmsPrivateEndpointPermissionMissing",
                format!("The cluster identity needs Key Vault Contributor on {vault_id} to create and approve the private endpoint connection."),
            ));
        }
        return Ok(());
    }
    let caller = KvCaller {
        object_id: principal.clone(),
        tenant_id: state.tenant_id.clone(),
        origin: Origin::Public("aks".into()),
    };
    let probe = keyvault::KeyRef {
        vault: &vault_name,
        name: &key_name,
        version: Some(&version),
    };
    let check = keyvault::key_operation(
        state,
        &caller,
        probe,
        keyvault::CryptoOp::Encrypt,
        "RSA-OAEP-256",
        b"healthcheck",
    )
    .and_then(|(_, c)| keyvault::key_operation(state, &caller, probe, keyvault::CryptoOp::Decrypt, "RSA-OAEP-256", &c));
    check.map(drop).map_err(|e| {
        ArmError::bad_request(
            "AzureKeyVaultKmsValidateIdentityPermissionCustomerError",
            format!(
                "The identity does not have keys encrypt/decrypt permission on key vault {vault_name}: {}",
                e.message
            ),
        )
    })
}

/// Creates (or keeps) the approved private endpoint connection AKS makes for a Private vault.
fn approve_private_endpoint(state: &Shared, kms: &Value, cluster_id: &str) -> Result<(), ArmError> {
    let vault_id = kms["keyVaultResourceId"].as_str().unwrap_or_default();
    let mut vault = state.db.resource(vault_id)?.ok_or_else(|| bad("vault vanished"))?;
    let endpoint = format!(
        "{cluster_id}/privateEndpoints/kms-{}",
        vault["name"].as_str().unwrap_or_default()
    )
    .to_ascii_lowercase();
    let connections = vault["properties"]["privateEndpointConnections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if connections
        .iter()
        .any(|c| c["properties"]["privateEndpoint"]["id"] == j!(endpoint))
    {
        return Ok(());
    }
    let mut connections = connections;
    connections.push(j!({
        "id": format!("{vault_id}/privateEndpointConnections/{}", new_guid()),
        "properties": {
            "privateEndpoint": {"id": endpoint},
            "privateLinkServiceConnectionState": {"status": "Approved", "description": "Auto-approved by AKS for KMS", "actionsRequired": "None"},
            "provisioningState": "Succeeded",
        },
    }));
    vault["properties"]["privateEndpointConnections"] = j!(connections);
    let name = vault["name"].as_str().unwrap_or_default().to_string();
    state.db.put_resource(vault_id, super::vaults::TYPE, &name, &vault)?;
    Ok(())
}

/// What the admin API's cluster seeding creates.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCluster {
    pub subscription: Option<String>,
    pub resource_group: String,
    pub name: String,
    #[serde(default = "default_location")]
    pub location: String,
    #[serde(default = "default_version")]
    pub kubernetes_version: String,
    #[serde(default)]
    pub vnet_integration: bool,
    /// `UserAssigned` (an identity `{name}-identity` is created) or `SystemAssigned`.
    #[serde(default = "default_identity")]
    pub identity: String,
    /// Entra integration (`aadProfile.managed`, `enableAzureRBAC`) with `disableLocalAccounts`:
    /// no admin credential; the API server takes Entra tokens for the AKS server application.
    #[serde(default)]
    pub disable_local_accounts: bool,
}

fn default_location() -> String {
    "westeurope".into()
}
fn default_version() -> String {
    "1.30".into()
}
fn default_identity() -> String {
    "UserAssigned".into()
}

/// Creates a resource group (if needed), an identity and a cluster in `Succeeded` state directly,
/// the starting point of the procedure's "existing cluster" jobs.
pub fn seed(state: &Shared, seed: &SeedCluster, default_sub: &str) -> Result<Value, ArmError> {
    let sub = seed.subscription.clone().unwrap_or_else(|| default_sub.to_string());
    if !super::groups::subscription_exists(state, &sub)? {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    }
    let (minor, _) = parse_version(&seed.kubernetes_version).ok_or_else(|| {
        ArmError::bad_request(
            "VersionNotSupported",
            format!("Version {} is not supported.", seed.kubernetes_version),
        )
    })?;
    let rg_id = format!("/subscriptions/{sub}/resourceGroups/{}", seed.resource_group);
    if state.db.resource(&rg_id)?.is_none() {
        let doc = j!({"id": rg_id, "name": seed.resource_group, "type": "Microsoft.Resources/resourceGroups", "location": seed.location, "tags": {}, "properties": {"provisioningState": "Succeeded"}});
        state
            .db
            .put_resource(&rg_id, "Microsoft.Resources/resourceGroups", &seed.resource_group, &doc)?;
    }
    let identity = match seed.identity.as_str() {
        "UserAssigned" => {
            let name = format!("{}-identity", seed.name);
            let id = format!("{rg_id}/providers/{}/{name}", super::identities::TYPE);
            let props = super::identities::put(state, &id, &name, &seed.location, &j!({}))?["properties"].clone();
            j!({"type": "UserAssigned", "userAssignedIdentities": {id: {"principalId": props["principalId"], "clientId": props["clientId"]}}})
        }
        "SystemAssigned" => j!({"type": "SystemAssigned", "principalId": new_guid(), "tenantId": state.tenant_id}),
        other => {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!("identity must be UserAssigned or SystemAssigned, not {other}"),
            ))
        }
    };
    let id = format!("{rg_id}/providers/{STORE_TYPE}/{}", seed.name);
    let version = format!("1.{minor}");
    let properties = j!({
        "provisioningState": "Succeeded", "powerState": {"code": "Running"},
        "kubernetesVersion": version, "currentKubernetesVersion": resolve_patch(&j!(version)),
        "dnsPrefix": seed.name, "fqdn": format!("{}-dns.hcp.{}.localhost", seed.name, seed.location),
        "agentPoolProfiles": [{"name": "nodepool1", "count": 1, "vmSize": "Standard_D2s_v3", "mode": "System", "osType": "Linux",
            "orchestratorVersion": version, "currentOrchestratorVersion": resolve_patch(&j!(version)), "provisioningState": "Succeeded"}],
        "apiServerAccessProfile": {"enableVnetIntegration": seed.vnet_integration},
        "servicePrincipalProfile": {"clientId": "msi"},
        "nodeResourceGroup": format!("MC_{}_{}_{}", seed.resource_group, seed.name, seed.location),
    });
    let mut properties = properties;
    if seed.disable_local_accounts {
        properties["aadProfile"] =
            j!({"managed": true, "enableAzureRBAC": true, "tenantID": state.tenant_id, "adminGroupObjectIDs": []});
        properties["disableLocalAccounts"] = j!(true);
    }
    let mut doc = tracked(&id, &seed.name, TYPE, &seed.location, &j!({}), properties);
    doc["identity"] = identity;
    doc["sku"] = j!({"name": "Base", "tier": "Free"});
    doc["eTag"] = j!(new_guid());
    state.db.put_resource(&id, STORE_TYPE, &seed.name, &doc)?;
    Ok(public(&doc))
}

/// The key the API server keeps for reads after this PUT, and the failure AKS ends in when a
/// key changes again before every secret was rewritten under the current one (it caches exactly
/// two keys; the oldest-key secrets become unreadable).
fn rotation(state: &Shared, existing: Option<&Value>, new_kms: &Value) -> Result<(Value, Option<Value>), ArmError> {
    let Some(old) = existing else {
        return Ok((Value::Null, None));
    };
    let old_kms = &old["properties"]["securityProfile"]["azureKeyVaultKms"];
    let old_key = (old_kms["enabled"] == j!(true))
        .then(|| old_kms["keyId"].as_str())
        .flatten();
    let new_key = (new_kms["enabled"] == j!(true))
        .then(|| new_kms["keyId"].as_str())
        .flatten();
    let kept = old["properties"]["kmsflowPreviousKeyId"].clone();
    if old_key == new_key || old_key.is_none() {
        return Ok((kept, None));
    }
    // The key changes: the old primary becomes the previous key; the one before is dropped.
    let mut failure = None;
    // (The old primary is not dropped: it becomes the previous key.)
    if let Some(dropped) = kept.as_str().filter(|k| Some(*k) != new_key && Some(*k) != old_key) {
        let api = crate::k8s::ApiServer::new(state, old.clone());
        let dropped_version = dropped.rsplit('/').next().unwrap_or_default();
        let mut still_under_dropped = 0;
        let mut after = String::new();
        loop {
            let page = state
                .db
                .etcd_list(&api.kms.cluster, "/registry/secrets/", &after, 500)?;
            let Some(last) = page.last() else { break };
            after = last.key.clone();
            still_under_dropped += page
                .iter()
                .filter(|e| crate::k8s::kms::describe(&api.kms, &e.value).1.as_deref() == Some(dropped_version))
                .count();
        }
        if still_under_dropped > 0 {
            failure = Some(j!({
                "code": "KMSKeyRotationNotCompleted",
                "message": format!("The KMS key was changed again before all secrets were re-encrypted: {still_under_dropped} secret(s) are still encrypted with {dropped}, which the API server no longer has. Rewrite all secrets after every key change before the next one."),
            }));
        }
    }
    Ok((old_key.map_or(Value::Null, |k| j!(k)), failure))
}
