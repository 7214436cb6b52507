//! The admin API (`/_admin/...`, authorised by the `x-localcloud-admin` header): the request log,
//! fault injection (`/_admin/faults`), settings (operation duration, RBAC propagation delay, the
//! lifetime of new tokens), token revocation (`/_admin/tokens/revoke`), subscriptions, custom
//! role definitions, group memberships, and a test-only export of key material so a test can
//! check ciphertexts with an independent RSA implementation.

use crate::faults::FaultConfig;
use crate::http::{json, new_guid, ArmError};
use crate::keyvault;
use crate::state::Shared;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::json as j;
use std::collections::HashMap;
use std::time::Duration;

pub const ADMIN_HEADER: &str = "x-localcloud-admin";

/// `Some(401 response)` unless the request carries the admin key.
fn check(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(ADMIN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    (given != state.admin_key).then(|| {
        ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AdminKeyRequired",
            format!("send the admin key in {ADMIN_HEADER}"),
        )
        .into_response()
    })
}

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/_admin/requests", get(requests))
        .route("/_admin/faults", put(set_faults).get(get_faults))
        .route("/_admin/settings", put(settings).get(get_settings))
        .route("/_admin/tokens/revoke", post(revoke_tokens))
        .route("/_admin/operations/hang", put(hang_operations))
        .route("/_admin/operations/fail-next", put(fail_next_operation))
        .route("/_admin/operations/faults", get(operation_faults))
        .route("/_admin/subscriptions", post(add_subscription))
        .route("/_admin/keys/{vault}", get(key_list))
        .route("/_admin/keys/{vault}/{name}/{version}/private", get(private_key))
        .route("/_admin/resources", get(resources))
        .route("/_admin/clusters", post(seed_cluster))
        .route("/_admin/inspect", get(inspect))
        .route("/_admin/seed-secrets", post(seed_secrets))
        .route("/_admin/restart-apiserver", post(restart_apiserver))
        .route("/_admin/roleDefinitions", put(put_role_definition))
        .route("/_admin/groups/members", put(add_member).delete(remove_member))
}

async fn requests(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let after = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    match state.db.requests_after(after) {
        Ok(list) => json(StatusCode::OK, j!({ "value": list })),
        Err(e) => ArmError::internal(e).into_response(),
    }
}

async fn set_faults(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    match serde_json::from_slice::<FaultConfig>(&body)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            c.validate().map_err(|e| e.to_string())?;
            Ok(c)
        }) {
        Ok(config) => {
            state.faults.set(config.clone());
            json(StatusCode::OK, j!(config))
        }
        Err(e) => ArmError::bad_request("InvalidFaults", e).into_response(),
    }
}

async fn get_faults(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    json(StatusCode::OK, j!(state.faults.get()))
}

/// Run-time settings; each field left out keeps its value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    operation_duration_ms: Option<u64>,
    /// The RBAC propagation delay; applies at once to every assignment, old and new.
    rbac_propagation_ms: Option<u64>,
    /// `azure-async-operation`, `location`, `provisioning-state` or `rotate`.
    lro_shape: Option<crate::arm::lro::LroShape>,
    vault_provisioning_ms: Option<u64>,
    /// Lifetime of tokens issued from now on, in seconds (at least 1).
    token_lifetime_s: Option<u64>,
}

fn current_settings(state: &Shared) -> serde_json::Value {
    j!({
        "operation_duration_ms": state.operation_duration().as_millis() as u64,
        "lro_shape": state.lro_shape(),
        "vault_provisioning_ms": state.vault_provisioning().as_millis() as u64,
        "rbac_propagation_ms": state.rbac_propagation().as_millis() as u64,
        "token_lifetime_s": state.token_lifetime().as_secs(),
        "token_generation": state.token_generation(),
    })
}

/// `PUT /_admin/settings`: changes the operation duration, the LRO shape, the vault
/// provisioning delay, the RBAC propagation delay and the lifetime of new tokens at run time;
/// answers with every setting.
async fn settings(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    match serde_json::from_slice::<Settings>(&body) {
        Ok(s) => {
            if let (Some(ms), Ok(mut d)) = (s.operation_duration_ms, state.operation_duration.write()) {
                *d = Duration::from_millis(ms);
            }
            if let (Some(ms), Ok(mut d)) = (s.rbac_propagation_ms, state.rbac_propagation.write()) {
                *d = Duration::from_millis(ms);
            }
            if let (Some(shape), Ok(mut d)) = (s.lro_shape, state.lro_shape.write()) {
                *d = shape;
            }
            if let (Some(ms), Ok(mut d)) = (s.vault_provisioning_ms, state.vault_provisioning.write()) {
                *d = Duration::from_millis(ms);
            }
            if let (Some(secs), Ok(mut d)) = (s.token_lifetime_s, state.token_lifetime.write()) {
                *d = Duration::from_secs(secs.max(1));
            }
            json(StatusCode::OK, current_settings(&state))
        }
        Err(e) => ArmError::bad_request("InvalidSettings", e.to_string()).into_response(),
    }
}

/// `POST /_admin/tokens/revoke`: every token issued so far is refused from now on (see
/// `entra::revoke_all`); answers with the new token generation.
async fn revoke_tokens(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    match crate::entra::revoke_all(&state) {
        Ok(generation) => json(StatusCode::OK, j!({"token_generation": generation})),
        Err(e) => ArmError::internal(e).into_response(),
    }
}

async fn get_settings(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    json(StatusCode::OK, current_settings(&state))
}

/// `{"resource": ID, "hang_s": 300}` (or `hang_ms`): operations on the resource stay in their
/// non-terminal state (`Updating`, `Creating`, `RegisteringDns`) for that long from now; zero
/// clears the hang.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hang {
    resource: String,
    hang_s: Option<u64>,
    hang_ms: Option<u64>,
}

async fn hang_operations(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let hang: Hang = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => return ArmError::bad_request("InvalidFault", e.to_string()).into_response(),
    };
    let duration = Duration::from_secs(hang.hang_s.unwrap_or(0)) + Duration::from_millis(hang.hang_ms.unwrap_or(0));
    match crate::arm::lro::hang(&state, &hang.resource, duration) {
        Ok(doc) => json(StatusCode::OK, j!({"resource": hang.resource, "faults": doc})),
        Err(e) => e.into_response(),
    }
}

/// `{"resource": ID, "status": "Failed"|"Canceled", "code": ..., "message": ...}`: the next
/// operation started on the resource ends so, with that ARM error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailNext {
    resource: String,
    status: String,
    code: String,
    message: String,
}

async fn fail_next_operation(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let fail: FailNext = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return ArmError::bad_request("InvalidFault", e.to_string()).into_response(),
    };
    let ending = crate::arm::lro::Ending {
        status: fail.status,
        code: fail.code,
        message: fail.message,
    };
    match crate::arm::lro::fail_next(&state, &fail.resource, &ending) {
        Ok(doc) => json(StatusCode::OK, j!({"resource": fail.resource, "faults": doc})),
        Err(e) => e.into_response(),
    }
}

/// Every armed operation fault, by (lowercased) resource id.
async fn operation_faults(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    match state.db.operation_faults() {
        Ok(list) => json(
            StatusCode::OK,
            j!({"value": list.into_iter().map(|(resource, faults)| j!({"resource": resource, "faults": faults})).collect::<Vec<_>>()}),
        ),
        Err(e) => ArmError::internal(e).into_response(),
    }
}

/// Adds a subscription (a new GUID unless `{"id": ...}` names one).
async fn add_subscription(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let wanted: serde_json::Value = serde_json::from_slice(&body).unwrap_or(j!({}));
    let id = wanted["id"].as_str().map(str::to_string).unwrap_or_else(new_guid);
    let result = crate::arm::groups::subscriptions(&state).and_then(|mut subs| {
        if !subs.iter().any(|s| s.eq_ignore_ascii_case(&id)) {
            subs.push(id.clone());
        }
        state
            .db
            .set_meta("subscriptions", &j!(subs).to_string())
            .map_err(ArmError::from)
    });
    match result {
        Ok(()) => json(StatusCode::OK, j!({"id": id})),
        Err(e) => e.into_response(),
    }
}

async fn private_key(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((vault, name, version)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    match keyvault::private_key(&state, &vault, &name, &version) {
        Ok(der) => json(StatusCode::OK, j!({"pkcs8_der": B64.encode(der)})),
        Err(e) => e.into_response(),
    }
}

/// Every version of every key in a vault, as `KeyBundle`s (public parts only), oldest first.
async fn key_list(State(state): State<Shared>, headers: HeaderMap, Path(vault): Path<String>) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let mut out = Vec::new();
    let names = match state.db.key_names(&vault) {
        Ok(n) => n,
        Err(e) => return ArmError::internal(e).into_response(),
    };
    for name in names {
        match state.db.key_versions(&vault, &name) {
            Ok(versions) => out.extend(versions.into_iter().map(|k| k.doc)),
            Err(e) => return ArmError::internal(e).into_response(),
        }
    }
    json(StatusCode::OK, j!({ "value": out }))
}

/// Every ARM resource, optionally of one `type`.
async fn resources(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let types = [
        "Microsoft.Resources/resourceGroups",
        "Microsoft.KeyVault/vaults",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.Authorization/roleAssignments",
        "Microsoft.ContainerService/managedClusters",
    ];
    let mut out = Vec::new();
    for t in types
        .iter()
        .filter(|t| q.get("type").is_none_or(|want| want.eq_ignore_ascii_case(t)))
    {
        match state.db.resources(t, "/") {
            Ok(list) => out.extend(list),
            Err(e) => return ArmError::internal(e).into_response(),
        }
    }
    json(StatusCode::OK, j!({ "value": out }))
}

/// Seeds a cluster in `Succeeded` state (see `arm::clusters::SeedCluster`).
async fn seed_cluster(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let seed: crate::arm::clusters::SeedCluster = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return ArmError::bad_request("InvalidSeed", e.to_string()).into_response(),
    };
    let default_sub = match state.db.meta("default_subscription") {
        Ok(Some(s)) => s,
        _ => return ArmError::internal("no default subscription").into_response(),
    };
    match crate::arm::clusters::seed(&state, &seed, &default_sub) {
        Ok(doc) => json(StatusCode::CREATED, doc),
        Err(e) => e.into_response(),
    }
}

fn cluster_api<'a>(state: &'a Shared, cluster: &str) -> Result<crate::k8s::ApiServer<'a>, ArmError> {
    match crate::arm::clusters::settle(state, cluster)? {
        Some(doc) => Ok(crate::k8s::ApiServer::new(state, doc)),
        None => Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("cluster {cluster} not found"),
        )),
    }
}

/// Every secret's at-rest state (never its data), and a summary.
async fn inspect(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let cluster = q.get("cluster").cloned().unwrap_or_default();
    let api = match cluster_api(&state, &cluster) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut items = Vec::new();
    let (mut current, mut stale, mut plain) = (0, 0, 0);
    let mut after = String::new();
    loop {
        let page = match state.db.etcd_list(&api.kms.cluster, "/registry/secrets/", &after, 1000) {
            Ok(p) => p,
            Err(e) => return ArmError::internal(e).into_response(),
        };
        let Some(last) = page.last() else { break };
        after = last.key.clone();
        for e in &page {
            let (at_rest, key_version, is_stale) = crate::k8s::kms::describe(&api.kms, &e.value);
            let mut parts = e.key.trim_start_matches("/registry/secrets/").splitn(2, '/');
            let (ns, name) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            if is_stale {
                stale += 1
            } else {
                current += 1
            }
            if at_rest == "plain" {
                plain += 1;
            }
            items.push(j!({"namespace": ns, "name": name, "at_rest": at_rest, "key_version": key_version, "stale": is_stale, "resource_version": e.mod_rev.to_string()}));
        }
    }
    json(
        StatusCode::OK,
        j!({
            "cluster": cluster, "kms_version": if api.kms.v2 { "v2" } else { "v1" },
            "primary_key": api.kms.primary.as_ref().map(|k| k.key_id.clone()),
            "previous_key": api.kms.previous.as_ref().map(|k| k.key_id.clone()),
            "summary": {"total": items.len(), "current": current, "stale": stale, "plain": plain},
            "secrets": items,
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedSecrets {
    cluster: String,
    count: usize,
    #[serde(default = "one")]
    namespaces: usize,
    #[serde(default = "default_size")]
    size: usize,
    /// Known data instead of random bytes: secret `i` holds `{value}-{i}` (leak tests grep for it).
    #[serde(default)]
    value: Option<String>,
}

fn one() -> usize {
    1
}
fn default_size() -> usize {
    64
}

/// Creates `count` secrets across `namespaces` namespaces (`seed-0` …) with random data of `size`
/// bytes, through the API server's write path (so they are encrypted as the cluster is configured).
async fn seed_secrets(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let seed: SeedSecrets = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return ArmError::bad_request("InvalidSeed", e.to_string()).into_response(),
    };
    let api = match cluster_api(&state, &seed.cluster) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    match crate::k8s::seed_secrets(
        &api,
        seed.count,
        seed.namespaces.max(1),
        seed.size,
        seed.value.as_deref(),
    ) {
        Ok(created) => json(StatusCode::CREATED, j!({"created": created})),
        Err(e) => e.into_response(),
    }
}

/// Restarts a cluster's API server: its in-memory data-key caches are gone, so the next read of
/// each object needs Key Vault again.
async fn restart_apiserver(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let cluster = q.get("cluster").cloned().unwrap_or_default();
    crate::k8s::kms::drop_caches(&state, &cluster);
    json(StatusCode::OK, j!({"restarted": cluster}))
}

/// A custom role definition as `PUT /_admin/roleDefinitions` takes it: the `properties` of ARM's
/// role definition, plus an optional GUID (`name`, new if absent).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CustomRole {
    name: Option<String>,
    role_name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<crate::directory::Permission>,
    #[serde(default)]
    assignable_scopes: Vec<String>,
}

/// Creates or replaces a custom role definition (any actions and data actions, wildcards
/// included); answers the definition as `GET …/roleDefinitions/{guid}` will serve it. A name
/// another definition already has is refused, as ARM does (`RoleDefinitionWithSameNameExists`).
async fn put_role_definition(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let role: CustomRole = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ArmError::bad_request("InvalidRoleDefinition", e.to_string()).into_response(),
    };
    let guid = role.name.clone().unwrap_or_else(new_guid).to_ascii_lowercase();
    if !crate::http::is_guid(&guid) {
        return ArmError::bad_request(
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{guid}' is not a GUID."),
        )
        .into_response();
    }
    if role.role_name.trim().is_empty() || role.permissions.is_empty() {
        return ArmError::bad_request("InvalidRoleDefinition", "roleName and permissions are required.")
            .into_response();
    }
    let directory = crate::directory::Directory::new(&state);
    let existing = match directory.role_definitions() {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    if existing.iter().any(|d| d.name == guid && d.role_type == "BuiltInRole") {
        return ArmError::bad_request(
            "RoleDefinitionUpdateNotPermitted",
            "Built-in role definitions cannot be changed.",
        )
        .into_response();
    }
    if existing
        .iter()
        .any(|d| d.name != guid && d.role_name.eq_ignore_ascii_case(&role.role_name))
    {
        return ArmError::conflict(
            "RoleDefinitionWithSameNameExists",
            format!(
                "A role definition cannot be updated with a name that already exists: '{}'.",
                role.role_name
            ),
        )
        .into_response();
    }
    let definition = crate::directory::RoleDefinition {
        name: guid.clone(),
        role_name: role.role_name,
        description: role.description,
        role_type: "CustomRole".into(),
        permissions: role.permissions,
        assignable_scopes: if role.assignable_scopes.is_empty() {
            vec!["/".into()]
        } else {
            role.assignable_scopes
        },
    };
    let stored = match serde_json::to_value(&definition) {
        Ok(v) => v,
        Err(e) => return ArmError::internal(e).into_response(),
    };
    if let Err(e) = state.db.put_role_definition(&guid, &stored) {
        return ArmError::internal(e).into_response();
    }
    let sub = state.db.meta("default_subscription").ok().flatten().unwrap_or_default();
    json(StatusCode::OK, definition.to_arm(&sub))
}

/// `{"group": OBJECT_ID, "member": OBJECT_ID}`: a group membership in the directory.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    group: String,
    member: String,
}

fn membership(body: &Bytes) -> Result<Membership, ArmError> {
    let m: Membership =
        serde_json::from_slice(body).map_err(|e| ArmError::bad_request("InvalidMembership", e.to_string()))?;
    if !crate::http::is_guid(&m.group) || !crate::http::is_guid(&m.member) {
        return Err(ArmError::bad_request(
            "InvalidMembership",
            "group and member must be object ids (GUIDs).",
        ));
    }
    Ok(m)
}

/// Makes `member` a member of `group`, creating the group principal (kind `Group`, no
/// credentials) on first use so role assignments can name it. Takes effect at once: only role
/// assignments have a propagation delay. Idempotent.
async fn add_member(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let m = match membership(&body) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let group = m.group.to_ascii_lowercase();
    let result = state
        .db
        .principal_by_object_id(&group)
        .and_then(|existing| match existing {
            Some(_) => Ok(()),
            None => state.db.insert_principal(&crate::db::Principal {
                object_id: group.clone(),
                client_id: group.clone(),
                secret: None,
                kind: "Group".into(),
                name: format!("group-{group}"),
                tenant_id: state.tenant_id.clone(),
            }),
        })
        .and_then(|()| state.db.add_group_member(&group, &m.member));
    match result {
        Ok(()) => json(
            StatusCode::OK,
            j!({"group": group, "member": m.member.to_ascii_lowercase()}),
        ),
        Err(e) => ArmError::internal(e).into_response(),
    }
}

/// Removes `member` from `group` (at once); 404 if it was not a member.
async fn remove_member(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let m = match membership(&body) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    match state.db.remove_group_member(&m.group, &m.member) {
        Ok(true) => json(StatusCode::OK, j!({"group": m.group, "member": m.member})),
        Ok(false) => ArmError::new(StatusCode::NOT_FOUND, "MembershipNotFound", "not a member").into_response(),
        Err(e) => ArmError::internal(e).into_response(),
    }
}
