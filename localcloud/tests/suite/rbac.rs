//! Azure RBAC as the local cloud evaluates it: role definitions served with their real
//! `dataActions`, access decided from them (wildcards, `notDataActions`, custom roles, groups), and
//! the propagation delay of role assignments in the Key Vault data plane and the AKS KMS check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{cluster_body, public_kms, start, start_configured, Cloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CRYPTO_OFFICER: &str = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603";
const CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
const SERVICE_ENCRYPTION_USER: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
const KV_CONTRIBUTOR: &str = "f25e0fa2-a7c8-4377-a976-54943a77a395";

/// The propagation delay the timing tests use: long enough that the "before" request is
/// certainly early on a loaded 2-core machine, short enough for the suite.
const DELAY: Duration = Duration::from_millis(2000);

fn new_guid() -> String {
    let n: u128 = rand_u128();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    a.write_u64(1);
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u64(2);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Assigns role `guid` on `scope` to `principal`; returns the assignment's path.
async fn assign(c: &Cloud, scope: &str, guid: &str, principal: &str, principal_type: &str) -> String {
    let role = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        c.sub()
    );
    let path = format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
        new_guid()
    );
    let body =
        json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": principal_type}});
    let (status, resp) = c.arm(Method::PUT, &path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    path
}

async fn unassign(c: &Cloud, path: &str) {
    let (status, resp) = c.arm(Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
}

async fn set_propagation(c: &Cloud, delay: Duration) {
    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/settings",
            Some(json!({"rbac_propagation_ms": delay.as_millis() as u64})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rbac_propagation_ms"], delay.as_millis() as u64);
}

/// A key operation with the operator's token; `value` is base64url.
async fn op(c: &Cloud, vault: &str, kid: &str, op: &str, value: &str) -> (StatusCode, Value) {
    let version = kid.rsplit('/').next().unwrap();
    let name = kid.rsplit('/').nth(1).unwrap();
    c.kv(
        Method::POST,
        vault,
        &format!("/keys/{name}/{version}/{op}"),
        Some(json!({"alg": "RSA-OAEP-256", "value": value})),
    )
    .await
}

fn assert_forbidden_by_rbac(status: StatusCode, body: &Value, action: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "Forbidden", "{body}");
    assert_eq!(body["error"]["innererror"]["code"], "ForbiddenByRbac", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("please observe propagation time"), "{message}");
    assert!(message.contains(&format!("Action: '{action}'")), "{message}");
}

/// An RBAC vault in rg1 holding an RSA key the operator created (as Crypto Officer, then
/// removed again); returns (vault id, key id).
async fn rbac_vault_with_key(c: &Cloud, vault: &str) -> (String, String) {
    c.resource_group("rg1").await;
    let id = c.vault("rg1", vault, true, json!({})).await;
    let officer = assign(
        c,
        &id,
        CRYPTO_OFFICER,
        &c.profile.operator.object_id,
        "ServicePrincipal",
    )
    .await;
    let kid = c.key(vault, "etcd", "RSA").await;
    unassign(c, &officer).await;
    (id, kid)
}

#[tokio::test]
async fn built_in_role_definitions_are_served_with_their_data_actions() {
    let c = start().await;
    let sub = c.sub().to_string();
    let (status, cseu) = c
        .arm(
            Method::GET,
            &format!(
                "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{SERVICE_ENCRYPTION_USER}"
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cseu}");
    assert_eq!(cseu["name"], SERVICE_ENCRYPTION_USER);
    assert_eq!(cseu["type"], "Microsoft.Authorization/roleDefinitions");
    assert_eq!(
        cseu["id"],
        format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{SERVICE_ENCRYPTION_USER}")
    );
    assert_eq!(
        cseu["properties"]["roleName"],
        "Key Vault Crypto Service Encryption User"
    );
    assert_eq!(cseu["properties"]["type"], "BuiltInRole");
    assert_eq!(
        cseu["properties"]["permissions"][0]["dataActions"],
        json!([
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action"
        ])
    );
    assert_eq!(cseu["properties"]["permissions"][0]["notDataActions"], json!([]));

    // The list at a resource-group scope, filtered by name.
    c.resource_group("rg1").await;
    let (status, list) = c
        .arm(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName%20eq%20'Key%20Vault%20Crypto%20User'",
                c.rg_id("rg1")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["value"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["name"], CRYPTO_USER);
    let data = items[0]["properties"]["permissions"][0]["dataActions"]
        .as_array()
        .unwrap();
    for action in ["encrypt", "decrypt", "wrap", "unwrap"] {
        assert!(
            data.contains(&json!(format!("Microsoft.KeyVault/vaults/keys/{action}/action"))),
            "Crypto User allows {action}: {data:?}"
        );
    }

    let (_, all) = c
        .arm(
            Method::GET,
            &format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions"),
            None,
        )
        .await;
    let by_name = |name: &str| {
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["properties"]["roleName"] == name)
            .unwrap_or_else(|| panic!("{name} served"))
            .clone()
    };
    assert_eq!(
        by_name("Key Vault Crypto Officer")["properties"]["permissions"][0]["dataActions"],
        json!([
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keyrotationpolicies/*"
        ])
    );
    assert_eq!(
        by_name("Key Vault Administrator")["properties"]["permissions"][0]["dataActions"],
        json!(["Microsoft.KeyVault/vaults/*"])
    );
    let contributor = by_name("Key Vault Contributor");
    assert_eq!(contributor["name"], KV_CONTRIBUTOR);
    assert_eq!(contributor["properties"]["permissions"][0]["dataActions"], json!([]));
    assert_eq!(
        by_name("Key Vault Reader")["properties"]["permissions"][0]["dataActions"][0],
        "Microsoft.KeyVault/vaults/*/read"
    );
    for name in ["Owner", "Contributor", "Reader"] {
        assert_eq!(
            by_name(name)["properties"]["permissions"][0]["dataActions"],
            json!([]),
            "{name} has no data actions"
        );
    }

    let (status, err) = c
        .arm(
            Method::GET,
            &format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/00000000-0000-4000-8000-000000000000"),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("RoleDefinitionDoesNotExist"))
    );
}

#[tokio::test]
async fn service_encryption_user_wraps_but_cannot_encrypt_or_decrypt() {
    let c = start().await;
    let (vault, kid) = rbac_vault_with_key(&c, "kv-cseu1").await;
    assign(
        &c,
        &vault,
        SERVICE_ENCRYPTION_USER,
        &c.profile.operator.object_id,
        "ServicePrincipal",
    )
    .await;

    let (status, body) = op(&c, "kv-cseu1", &kid, "encrypt", "aGVsbG8").await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/encrypt/action");
    let (status, body) = op(&c, "kv-cseu1", &kid, "decrypt", "aGVsbG8").await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/decrypt/action");

    let (status, wrapped) = op(&c, "kv-cseu1", &kid, "wrapkey", "aGVsbG8").await;
    assert_eq!(status, StatusCode::OK, "{wrapped}");
    let (status, unwrapped) = op(&c, "kv-cseu1", &kid, "unwrapkey", wrapped["value"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{unwrapped}");
    assert_eq!(unwrapped["value"], "aGVsbG8");
    let (status, _) = c.kv(Method::GET, "kv-cseu1", "/keys/etcd", None).await;
    assert_eq!(status, StatusCode::OK, "keys/read is in the role");
    let (status, body) = c
        .kv(
            Method::POST,
            "kv-cseu1",
            "/keys/etcd/create",
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/create/action");
}

#[tokio::test]
async fn custom_roles_grant_their_data_actions_and_not_data_actions_subtract() {
    let c = start().await;
    let (vault, kid) = rbac_vault_with_key(&c, "kv-custom1").await;
    let operator = c.profile.operator.object_id.clone();

    let (status, role) = c
        .admin(
            Method::PUT,
            "/_admin/roleDefinitions",
            Some(
                json!({"roleName": "KMS Encrypt Decrypt", "description": "encrypt and decrypt only",
                "permissions": [{"dataActions": [
                    "Microsoft.KeyVault/vaults/keys/encrypt/action",
                    "Microsoft.KeyVault/vaults/keys/decrypt/action"]}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    let custom = role["name"].as_str().unwrap().to_string();
    assert_eq!(role["properties"]["type"], "CustomRole");
    let (status, served) = c
        .arm(
            Method::GET,
            &format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName%20eq%20'KMS%20Encrypt%20Decrypt'", c.sub()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served["value"][0]["name"], custom.as_str(), "{served}");

    let assignment = assign(&c, &vault, &custom, &operator, "ServicePrincipal").await;
    let (status, encrypted) = op(&c, "kv-custom1", &kid, "encrypt", "c2VjcmV0").await;
    assert_eq!(status, StatusCode::OK, "{encrypted}");
    let (status, decrypted) = op(&c, "kv-custom1", &kid, "decrypt", encrypted["value"].as_str().unwrap()).await;
    assert_eq!(
        (status, decrypted["value"].as_str()),
        (StatusCode::OK, Some("c2VjcmV0"))
    );
    let (status, body) = op(&c, "kv-custom1", &kid, "wrapkey", "c2VjcmV0").await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/wrap/action");
    unassign(&c, &assignment).await;

    // A wildcard with a hole: everything on keys except decrypt.
    let (status, role) = c
        .admin(
            Method::PUT,
            "/_admin/roleDefinitions",
            Some(json!({"roleName": "Keys but not decrypt",
                "permissions": [{"dataActions": ["Microsoft.KeyVault/vaults/keys/*"],
                    "notDataActions": ["Microsoft.KeyVault/vaults/keys/decrypt/action"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    assign(
        &c,
        &vault,
        role["name"].as_str().unwrap(),
        &operator,
        "ServicePrincipal",
    )
    .await;
    let (status, encrypted) = op(&c, "kv-custom1", &kid, "encrypt", "c2VjcmV0").await;
    assert_eq!(status, StatusCode::OK, "the wildcard allows encrypt: {encrypted}");
    let (status, body) = op(&c, "kv-custom1", &kid, "decrypt", encrypted["value"].as_str().unwrap()).await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/decrypt/action");

    // Names are unique across definitions.
    let (status, err) = c
        .admin(
            Method::PUT,
            "/_admin/roleDefinitions",
            Some(json!({"roleName": "Key Vault Crypto User", "permissions": [{"dataActions": ["*"]}]})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("RoleDefinitionWithSameNameExists"))
    );
}

#[tokio::test]
async fn group_membership_grants_in_the_data_plane_and_the_kms_check() {
    let c = start().await;
    let (vault, kid) = rbac_vault_with_key(&c, "kv-group1").await;
    let group = new_guid();
    let member = |m: &str| json!({"group": group, "member": m});
    // The first membership creates the group principal, so assignments can name it.
    let (status, body) = c
        .admin(Method::PUT, "/_admin/groups/members", Some(member(&new_guid())))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assign(&c, &vault, CRYPTO_USER, &group, "Group").await;
    let (status, _) = c
        .arm(
            Method::PUT,
            &format!("{vault}/providers/Microsoft.Authorization/roleAssignments/{}", new_guid()),
            Some(json!({"properties": {"principalId": new_guid(), "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{CRYPTO_USER}", c.sub())}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown principal is still refused");
    // Without the membership the group's role means nothing to the operator.
    let (status, body) = op(&c, "kv-group1", &kid, "encrypt", "Zm9v").await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/encrypt/action");

    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/groups/members",
            Some(member(&c.profile.operator.object_id)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = op(&c, "kv-group1", &kid, "encrypt", "Zm9v").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the group's Crypto User reaches its member: {body}"
    );

    // The KMS check: the cluster identity may use the key only through the group.
    let (identity, principal) = c.identity("rg1", "aks-kms").await;
    let kms = Some(public_kms(&kid));
    let (status, err) = c
        .arm(
            Method::PUT,
            &c.cluster_id("aks1"),
            Some(cluster_body(Some(&identity), "1.30", true, kms.clone())),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("AzureKeyVaultKmsValidateIdentityPermissionCustomerError")
        ),
        "{err}"
    );
    let (status, _) = c
        .admin(Method::PUT, "/_admin/groups/members", Some(member(&principal)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = c
        .arm(
            Method::PUT,
            &c.cluster_id("aks1"),
            Some(cluster_body(Some(&identity), "1.30", true, kms)),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let doc = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded", "{doc}");

    // Leaving the group takes the access away again.
    let (status, _) = c
        .admin(
            Method::DELETE,
            "/_admin/groups/members",
            Some(member(&c.profile.operator.object_id)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = op(&c, "kv-group1", &kid, "encrypt", "Zm9v").await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/encrypt/action");
}

#[tokio::test]
async fn data_plane_answers_forbidden_by_rbac_until_an_assignment_has_propagated() {
    let c = start().await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-prop1", true, json!({})).await;
    set_propagation(&c, DELAY).await;

    let assigned = Instant::now();
    let path = assign(
        &c,
        &vault,
        CRYPTO_OFFICER,
        &c.profile.operator.object_id,
        "ServicePrincipal",
    )
    .await;
    let (status, doc) = c.arm(Method::GET, &path, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the assignment itself reads back at once: {doc}"
    );
    let create = || {
        c.kv(
            Method::POST,
            "kv-prop1",
            "/keys/etcd/create",
            Some(json!({"kty": "RSA"})),
        )
    };
    let (status, body) = create().await;
    assert!(assigned.elapsed() < DELAY, "the early request was early");
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/create/action");

    tokio::time::sleep((DELAY + Duration::from_millis(200)).saturating_sub(assigned.elapsed())).await;
    let (status, key) = create().await;
    assert_eq!(status, StatusCode::OK, "effective after the delay: {key}");

    // A deletion propagates too: the access lasts until the delay has passed again.
    let deleted = Instant::now();
    unassign(&c, &path).await;
    let (status, body) = c.kv(Method::GET, "kv-prop1", "/keys/etcd", None).await;
    assert!(deleted.elapsed() < DELAY, "the early request was early");
    assert_eq!(
        status,
        StatusCode::OK,
        "still effective right after the deletion: {body}"
    );
    let (status, _) = c.arm(Method::GET, &path, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the deleted assignment is gone from ARM at once"
    );
    tokio::time::sleep((DELAY + Duration::from_millis(200)).saturating_sub(deleted.elapsed())).await;
    let (status, body) = c.kv(Method::GET, "kv-prop1", "/keys/etcd", None).await;
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/read");
}

#[tokio::test]
async fn the_kms_identity_check_fails_until_the_assignment_has_propagated() {
    let c = start().await;
    let (vault, kid) = rbac_vault_with_key(&c, "kv-prop2").await;
    let (identity, principal) = c.identity("rg1", "aks-kms").await;
    set_propagation(&c, DELAY).await;

    let assigned = Instant::now();
    assign(&c, &vault, CRYPTO_USER, &principal, "ServicePrincipal").await;
    let body = cluster_body(Some(&identity), "1.30", true, Some(public_kms(&kid)));
    let (status, err) = c.arm(Method::PUT, &c.cluster_id("aks1"), Some(body.clone())).await;
    assert!(assigned.elapsed() < DELAY, "the early request was early");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(
        err["error"]["code"], "AzureKeyVaultKmsValidateIdentityPermissionCustomerError",
        "{err}"
    );
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The identity does not have keys encrypt/decrypt permission on key vault kv-prop2"),
        "{message}"
    );
    let (status, _) = c.arm(Method::GET, &c.cluster_id("aks1"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the failed PUT created nothing");

    tokio::time::sleep((DELAY + Duration::from_millis(200)).saturating_sub(assigned.elapsed())).await;
    let (status, resp) = c.arm(Method::PUT, &c.cluster_id("aks1"), Some(body)).await;
    assert!(status.is_success(), "{resp}");
    let doc = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded", "{doc}");
}

#[tokio::test]
async fn a_restart_keeps_assignment_times() {
    let delay = Duration::from_millis(3000);
    let dir = tempfile::tempdir().unwrap();
    let mut c = start_configured(dir, |config| config.rbac_propagation = delay).await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-restart1", true, json!({})).await;
    let assigned = Instant::now();
    assign(
        &c,
        &vault,
        CRYPTO_OFFICER,
        &c.profile.operator.object_id,
        "ServicePrincipal",
    )
    .await;
    let list = || c.kv(Method::GET, "kv-restart1", "/keys", None);
    let (status, body) = list().await;
    assert!(assigned.elapsed() < delay);
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/read");

    // Restart halfway through the delay: if the cloud forgot the assignment's time (or counted
    // from the restart), it would still be refusing at the original deadline.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.cloud.take().unwrap().shutdown().await;
    let c = start_configured(c.dir, |config| config.rbac_propagation = delay).await;
    let (status, body) = c.kv(Method::GET, "kv-restart1", "/keys", None).await;
    assert!(assigned.elapsed() < delay, "the restart was quick enough to check");
    assert_forbidden_by_rbac(status, &body, "Microsoft.KeyVault/vaults/keys/read");

    tokio::time::sleep((delay + Duration::from_millis(200)).saturating_sub(assigned.elapsed())).await;
    let (status, body) = c.kv(Method::GET, "kv-restart1", "/keys", None).await;
    assert_eq!(status, StatusCode::OK, "effective at the original deadline: {body}");
}
