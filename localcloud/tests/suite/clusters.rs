//! The AKS control plane: long-running operations, optimistic concurrency, and each rule of the
//! KMS feature with its status code and error code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{cluster_body, public_kms, start, Cloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Key Vault Contributor.
const CONTRIBUTOR: &str = "f25e0fa2-a7c8-4377-a976-54943a77a395";

async fn put(c: &Cloud, name: &str, body: Value) -> (StatusCode, Value) {
    c.arm(Method::PUT, &c.cluster_id(name), Some(body)).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn creating_a_kms_cluster_is_a_long_running_operation() {
    let c = start().await;
    let s = c.kms_setup("kv-lro1").await;
    let url = format!(
        "{}{}?api-version=2025-10-01",
        c.profile.resource_manager.trim_end_matches('/'),
        c.cluster_id("aks1")
    );
    let resp = c
        .http
        .put(&url)
        .bearer_auth(&c.arm_token)
        .json(&cluster_body(
            Some(&s.identity),
            "1.30",
            false,
            Some(public_kms(&s.key_id)),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let op_url = resp.headers()["azure-asyncoperation"].to_str().unwrap().to_string();
    assert!(
        op_url.contains("/providers/Microsoft.ContainerService/locations/westeurope/operations/"),
        "{op_url}"
    );
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Creating");

    let status: Value = c
        .http
        .get(&op_url)
        .bearer_auth(&c.arm_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "InProgress", "{status}");

    // A second PUT while the operation runs is refused.
    let (st, err) = put(&c, "aks1", cluster_body(Some(&s.identity), "1.30", false, None)).await;
    assert_eq!((st, code(&err)), (StatusCode::CONFLICT, "OperationNotAllowed"));
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Another operation (Creating) is in progress"));

    let done = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    assert_eq!(done["properties"]["currentKubernetesVersion"], "1.30.12");
    assert_eq!(
        done["properties"]["securityProfile"]["azureKeyVaultKms"]["keyId"],
        s.key_id.as_str()
    );
    let status: Value = c
        .http
        .get(&op_url)
        .bearer_auth(&c.arm_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "Succeeded");
}

#[tokio::test]
async fn a_stale_etag_gets_412_and_the_current_one_succeeds() {
    let c = start().await;
    let s = c.kms_setup("kv-etag1").await;
    put(&c, "aks1", cluster_body(Some(&s.identity), "1.30", false, None)).await;
    let doc = c.wait_cluster(&c.cluster_id("aks1")).await;
    let etag = doc["eTag"].as_str().unwrap().to_string();
    let url = format!(
        "{}{}?api-version=2025-10-01",
        c.profile.resource_manager.trim_end_matches('/'),
        c.cluster_id("aks1")
    );
    let mut updated = doc.clone();
    updated["properties"]["securityProfile"] = json!({"azureKeyVaultKms": public_kms(&s.key_id)});
    let stale = c
        .http
        .put(&url)
        .bearer_auth(&c.arm_token)
        .header("if-match", "\"not-the-etag\"")
        .json(&updated)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let fresh = c
        .http
        .put(&url)
        .bearer_auth(&c.arm_token)
        .header("if-match", &etag)
        .json(&updated)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    let done = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_ne!(done["eTag"].as_str().unwrap(), etag);
    assert_eq!(
        done["properties"]["securityProfile"]["azureKeyVaultKms"]["enabled"],
        true
    );
}

#[tokio::test]
async fn kms_needs_a_user_assigned_identity() {
    let c = start().await;
    let s = c.kms_setup("kv-sys1").await;
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(None, "1.30", false, Some(public_kms(&s.key_id))),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not support cluster identity type SystemAssigned"));
}

#[tokio::test]
async fn the_key_id_must_be_versioned_rsa_and_usable_by_the_identity() {
    let c = start().await;
    let s = c.kms_setup("kv-key1").await;
    let unversioned = s.key_id.rsplit_once('/').unwrap().0.to_string();
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.30", false, Some(public_kms(&unversioned))),
    )
    .await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::BAD_REQUEST, "AzureKeyVaultKmsInvalidKeyId")
    );

    let ec = c.key("kv-key1", "ec", "EC").await;
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.30", false, Some(public_kms(&ec))),
    )
    .await;
    assert_eq!(
        (st, code(&err)),
        (
            StatusCode::BAD_REQUEST,
            "AzureKeyVaultKmsValidateIdentityPermissionCustomerError"
        )
    );

    let (other, _) = c.identity("rg1", "no-access").await;
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&other), "1.30", false, Some(public_kms(&s.key_id))),
    )
    .await;
    assert_eq!(
        (st, code(&err)),
        (
            StatusCode::BAD_REQUEST,
            "AzureKeyVaultKmsValidateIdentityPermissionCustomerError"
        )
    );
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not have keys encrypt/decrypt permission"));

    let (st, _) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.30", false, Some(public_kms(&s.key_id))),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

#[tokio::test]
async fn network_access_and_resource_id_must_agree() {
    let c = start().await;
    let s = c.kms_setup("kv-mode1").await;
    let cases = [
        (
            json!({"enabled": true, "keyId": s.key_id}),
            false,
            "KeyVault network access is unspecified",
        ),
        (
            json!({"enabled": true, "keyId": s.key_id, "keyVaultNetworkAccess": "Private", "keyVaultResourceId": ""}),
            true,
            "KeyVault resource ID is empty when KeyVault network access is Private.",
        ),
        (
            json!({"enabled": true, "keyId": s.key_id, "keyVaultNetworkAccess": "Private", "keyVaultResourceId": s.vault}),
            false,
            "Vnet integration should be enabled when KeyVault network access is Private.",
        ),
        (
            json!({"enabled": true, "keyId": s.key_id, "keyVaultNetworkAccess": "Public", "keyVaultResourceId": s.vault}),
            false,
            "must be empty when KeyVault network access is Public",
        ),
    ];
    for (kms, vnet, message) in cases {
        let (st, err) = put(&c, "aks1", cluster_body(Some(&s.identity), "1.30", vnet, Some(kms))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(err["error"]["message"].as_str().unwrap().contains(message), "{err}");
    }
}

#[tokio::test]
async fn a_firewalled_vault_is_refused_in_public_mode() {
    let c = start().await;
    let s = c.kms_setup("kv-fw1").await;
    c.arm(
        Method::PATCH,
        &s.vault,
        Some(json!({"properties": {"networkAcls": {"defaultAction": "Deny"}}})),
    )
    .await;
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.30", false, Some(public_kms(&s.key_id))),
    )
    .await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::BAD_REQUEST, "AzureKeyVaultKmsVaultFirewallNotSupported")
    );
}

#[tokio::test]
async fn a_vault_of_another_tenant_is_refused() {
    let c = start().await;
    let s = c.kms_setup("kv-home1").await;
    let foreign = c
        .vault(
            "rg1",
            "kv-foreign1",
            false,
            json!({"tenantId": "99999999-8888-7777-6666-555555555555"}),
        )
        .await;
    c.policy(&foreign, &c.profile.operator.object_id, &["create"]).await;
    // The operator cannot use a vault of another tenant either, so the key id is made up.
    let key_id = s.key_id.replace("kv-home1", "kv-foreign1");
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.30", false, Some(public_kms(&key_id))),
    )
    .await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::BAD_REQUEST, "AzureKeyVaultKmsCrossTenantNotSupported")
    );
}

#[tokio::test]
async fn private_mode_needs_contributor_then_creates_an_approved_private_endpoint() {
    let c = start().await;
    let s = c.kms_setup("kv-priv1").await;
    c.arm(
        Method::PATCH,
        &s.vault,
        Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
    )
    .await;
    let kms =
        json!({"enabled": true, "keyId": s.key_id, "keyVaultNetworkAccess": "Private", "keyVaultResourceId": s.vault});
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.30", true, Some(kms.clone())),
    )
    .await;
    assert_eq!(
        (st, code(&err)),
        (
            StatusCode::BAD_REQUEST,
            "AzureKeyVaultKmsPrivateEndpointPermissionMissing"
        )
    );

    c.assign_role(
        &s.vault,
        CONTRIBUTOR,
        &s.principal,
        "1d1d1d1d-0000-4000-8000-000000000001",
    )
    .await;
    let (st, body) = put(&c, "aks1", cluster_body(Some(&s.identity), "1.30", true, Some(kms))).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (_, vault) = c.arm(Method::GET, &s.vault, None).await;
    let connections = vault["properties"]["privateEndpointConnections"].as_array().unwrap();
    assert_eq!(connections.len(), 1);
    assert_eq!(
        connections[0]["properties"]["privateLinkServiceConnectionState"]["status"],
        "Approved"
    );
}

#[tokio::test]
async fn the_vault_mode_cannot_change_while_kms_is_on_with_it() {
    let c = start().await;
    let s = c.kms_setup("kv-switch1").await;
    put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.30", true, Some(public_kms(&s.key_id))),
    )
    .await;
    c.wait_cluster(&c.cluster_id("aks1")).await;
    c.arm(
        Method::PATCH,
        &s.vault,
        Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
    )
    .await;
    c.assign_role(
        &s.vault,
        CONTRIBUTOR,
        &s.principal,
        "2d2d2d2d-0000-4000-8000-000000000001",
    )
    .await;
    let kms =
        json!({"enabled": true, "keyId": s.key_id, "keyVaultNetworkAccess": "Private", "keyVaultResourceId": s.vault});
    let (st, err) = put(&c, "aks1", cluster_body(Some(&s.identity), "1.30", true, Some(kms))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("can't be changed while KMS is enabled"),
        "{err}"
    );
}

#[tokio::test]
async fn upgrades_go_one_minor_at_a_time_and_kms_v1_blocks_1_27() {
    let c = start().await;
    let s = c.kms_setup("kv-upg1").await;
    put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.26", false, Some(public_kms(&s.key_id))),
    )
    .await;
    c.wait_cluster(&c.cluster_id("aks1")).await;
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.28", false, Some(public_kms(&s.key_id))),
    )
    .await;
    assert_eq!((st, code(&err)), (StatusCode::BAD_REQUEST, "UpgradeFailed"));
    let (st, err) = put(
        &c,
        "aks1",
        cluster_body(Some(&s.identity), "1.27", false, Some(public_kms(&s.key_id))),
    )
    .await;
    assert_eq!((st, code(&err)), (StatusCode::BAD_REQUEST, "UpgradeBlockedByKmsV1"));

    put(&c, "aks2", cluster_body(Some(&s.identity), "1.26", false, None)).await;
    c.wait_cluster(&c.cluster_id("aks2")).await;
    let (st, _) = put(&c, "aks2", cluster_body(Some(&s.identity), "1.27", false, None)).await;
    assert_eq!(st, StatusCode::OK);
    let done = c.wait_cluster(&c.cluster_id("aks2")).await;
    assert_eq!(done["properties"]["currentKubernetesVersion"], "1.27.16");
}

#[tokio::test]
async fn admin_credentials_are_a_kubeconfig_and_clusters_list_by_subscription() {
    let c = start().await;
    let s = c.kms_setup("kv-cred1").await;
    put(&c, "aks1", cluster_body(Some(&s.identity), "1.30", false, None)).await;
    let (st, creds) = c
        .arm(
            Method::POST,
            &format!("{}/listClusterAdminCredential", c.cluster_id("aks1")),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(creds["kubeconfigs"][0]["name"], "clusterAdmin");
    use base64::Engine;
    let yaml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(creds["kubeconfigs"][0]["value"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        yaml.contains(&format!("server: https://127.0.0.1:{}/k8s/", c.port())),
        "{yaml}"
    );
    assert!(yaml.contains("certificate-authority-data: "));
    let (_, list) = c
        .arm(
            Method::GET,
            &format!(
                "/subscriptions/{}/providers/Microsoft.ContainerService/managedClusters",
                c.sub()
            ),
            None,
        )
        .await;
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1), "{list}");
    assert!(
        list["value"][0]["properties"].get("kmsflowAdminToken").is_none(),
        "no credentials in GET"
    );
}
