//! Entra tokens through `azure_identity`, and ARM's authentication, error shapes and resource rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::start;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn azure_identity_tokens_carry_the_operator_object_id_and_work_on_arm_and_key_vault() {
    let c = start().await;
    let claims_b64 = c.arm_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims_b64)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["oid"], c.profile.operator.object_id);
    assert_eq!(claims["tid"], c.profile.tenant_id);
    assert_eq!(claims["aud"], c.profile.arm_audience);

    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-entra1", false, json!({})).await;
    c.operator_policy(&vault, &["create", "get"]).await;
    let (status, key) = c
        .kv(
            Method::POST,
            "kv-entra1",
            "/keys/k1/create",
            Some(json!({"kty": "RSA", "key_size": 2048})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{key}");
}

#[tokio::test]
async fn a_bad_client_secret_gets_entras_error_body() {
    let c = start().await;
    let credential = crate::common::credential(&c.profile, &c.http, "not-the-secret");
    let scope = format!("{}/.default", c.profile.arm_audience);
    use azure_core::credentials::TokenCredential;
    assert!(credential.get_token(&[&scope], None).await.is_err());

    let url = format!("{}{}/oauth2/v2.0/token", c.profile.authority_host, c.profile.tenant_id);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.profile.operator.client_id.as_str()),
        ("client_secret", "wrong"),
        ("scope", scope.as_str()),
    ];
    let resp = c.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS7000215"));
    assert_eq!(body["error_codes"], json!([7000215]));

    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", c.profile.operator.client_id.as_str()),
        ("client_secret", c.profile.operator.client_secret.as_str()),
        ("scope", scope.as_str()),
    ];
    let body: serde_json::Value = c
        .http
        .post(&url)
        .form(&good)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["expires_in"].is_number(),
        "expires_in must be a JSON number: {body}"
    );
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn graph_me_refuses_app_only_tokens_as_documented() {
    let c = start().await;
    let credential = crate::common::credential(&c.profile, &c.http, &c.profile.operator.client_secret);
    let token = crate::common::token(&credential, &c.profile.graph_audience).await;
    let resp = c
        .http
        .get(format!("{}v1.0/me", c.profile.graph))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "/me request is only valid with delegated authentication flow."
    );
}

#[tokio::test]
async fn arm_rejects_missing_wrong_audience_and_versionless_requests() {
    let c = start().await;
    let url = format!(
        "{}subscriptions/{}/resourceGroups/rg1?api-version=2021-04-01",
        c.profile.resource_manager,
        c.sub()
    );
    let resp = c.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("x-ms-request-id"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");

    let (status, body) = c.arm_with(&c.kv_token, Method::GET, &c.rg_id("rg1"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenAudience");

    let no_version = format!(
        "{}subscriptions/{}/resourceGroups/rg1",
        c.profile.resource_manager,
        c.sub()
    );
    let resp = c.http.get(&no_version).bearer_auth(&c.arm_token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");

    let (status, body) = c
        .arm(
            Method::GET,
            "/subscriptions/00000000-0000-0000-0000-00000000dead/resourceGroups/rg1",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("SubscriptionNotFound"))
    );
    let (status, body) = c.arm(Method::GET, &c.rg_id("nope"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ResourceGroupNotFound"))
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = kmsflow_localcloud::Config::new(dir.path());
    config.token_lifetime = std::time::Duration::from_secs(1);
    let cloud = kmsflow_localcloud::LocalCloud::start(config).await.unwrap();
    let profile = cloud.profile().clone();
    let http = crate::common::http_client(&profile);
    let credential = crate::common::credential(&profile, &http, &profile.operator.client_secret);
    let token = crate::common::token(&credential, &profile.arm_audience).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let url = format!(
        "{}subscriptions/{}?api-version=2021-04-01",
        profile.resource_manager, profile.default_subscription
    );
    let resp = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ExpiredAuthenticationToken");
}

#[tokio::test]
async fn vault_names_are_validated_and_globally_unique() {
    let c = start().await;
    c.resource_group("rg1").await;
    c.resource_group("rg2").await;
    let props = json!({"tenantId": c.profile.tenant_id, "sku": {"family": "A", "name": "standard"}});
    let (status, body) = c
        .arm(
            Method::PUT,
            &format!("{}/providers/Microsoft.KeyVault/vaults/k--v", c.rg_id("rg1")),
            Some(json!({"location": "westeurope", "properties": props})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VaultNameNotValid"))
    );

    c.vault("rg1", "kv-unique1", false, json!({})).await;
    let (status, body) = c
        .arm(
            Method::PUT,
            &format!("{}/providers/Microsoft.KeyVault/vaults/KV-UNIQUE1", c.rg_id("rg2")),
            Some(json!({"location": "westeurope", "properties": props})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("VaultAlreadyExists"))
    );

    let (status, body) = c
        .arm(
            Method::POST,
            &format!(
                "/subscriptions/{}/providers/Microsoft.KeyVault/checkNameAvailability",
                c.sub()
            ),
            Some(json!({"name": "kv-unique1", "type": "Microsoft.KeyVault/vaults"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["nameAvailable"], false);
}

#[tokio::test]
async fn purge_protection_and_soft_delete_cannot_be_turned_off() {
    let c = start().await;
    c.resource_group("rg1").await;
    let id = c
        .vault("rg1", "kv-purge1", false, json!({"enablePurgeProtection": true}))
        .await;
    let (status, body) = c
        .arm(
            Method::PATCH,
            &id,
            Some(json!({"properties": {"enablePurgeProtection": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = c
        .arm(
            Method::PATCH,
            &id,
            Some(json!({"properties": {"enableSoftDelete": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = c
        .arm(
            Method::PATCH,
            &id,
            Some(json!({"properties": {"publicNetworkAccess": "disabled"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["properties"]["publicNetworkAccess"], "Disabled");
    assert_eq!(body["properties"]["enablePurgeProtection"], true);
}

#[tokio::test]
async fn identities_are_principals_and_duplicate_role_assignments_conflict() {
    let c = start().await;
    c.resource_group("rg1").await;
    let identity = format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aks-kms",
        c.rg_id("rg1")
    );
    let (status, created) = c
        .arm(Method::PUT, &identity, Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let principal = created["properties"]["principalId"].as_str().unwrap().to_string();
    let (status, again) = c
        .arm(Method::PUT, &identity, Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["properties"]["principalId"],
        principal.as_str(),
        "a re-PUT keeps the principal"
    );

    let vault = c.vault("rg1", "kv-roles1", true, json!({})).await;
    let role = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/12338af0-0e69-4776-bea7-57ae8d297424",
        c.sub()
    );
    let body = json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}});
    let first =
        format!("{vault}/providers/Microsoft.Authorization/roleAssignments/5b1a6c1e-8d1f-4c5e-9c55-3c0a1d2e3f40");
    let (status, _) = c.arm(Method::PUT, &first, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let second =
        format!("{vault}/providers/Microsoft.Authorization/roleAssignments/6c2b7d2f-9e2a-4d6f-8d66-4d1b2e3f4a51");
    let (status, err) = c.arm(Method::PUT, &second, Some(body.clone())).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("RoleAssignmentExists"))
    );
    let (status, err) = c
        .arm(
            Method::PUT,
            &format!("{vault}/providers/Microsoft.Authorization/roleAssignments/not-a-guid"),
            Some(body),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidRoleAssignmentId"))
    );
    let stranger =
        json!({"properties": {"roleDefinitionId": role, "principalId": "99999999-9999-9999-9999-999999999999"}});
    let (status, err) = c.arm(Method::PUT, &second, Some(stranger)).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("PrincipalNotFound"))
    );
}

/// What `az account list` and `az group exists` (the SDKs' `check_existence`) ask: the list of
/// subscriptions, and `HEAD` on a resource group — 204 when it exists, 404 when not, no body.
#[tokio::test]
async fn subscriptions_are_listed_and_resource_groups_answer_head() {
    let c = start().await;
    let (status, list) = c.arm(Method::GET, "/subscriptions?api-version=2022-12-01", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["subscriptionId"].as_str())
        .collect();
    assert_eq!(ids, [c.sub()], "{list}");
    let rg = c.rg_id("rg-head");
    let (status, body) = c.arm(Method::HEAD, &rg, None).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, serde_json::Value::Null));
    c.resource_group("rg-head").await;
    let (status, body) = c.arm(Method::HEAD, &rg, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, serde_json::Value::Null));
}
