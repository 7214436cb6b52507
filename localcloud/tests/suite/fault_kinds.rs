//! Faults of every kind, scoped by service (issue 12): after the handler (the effect stays, the
//! answer is lost), per service and per cluster, hung connections released after their hold,
//! tokens expiring and revoked mid-run, and the clusters' own KMS calls failing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{http_client, public_kms, start, Cloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn faults(c: &Cloud, config: Value) {
    let (status, body) = c.admin(Method::PUT, "/_admin/faults", Some(config)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The request log's rows for `path` (on any host), as `(fault, status)`.
async fn logged(c: &Cloud, path: &str) -> Vec<(String, u64)> {
    let (_, log) = c.admin(Method::GET, "/_admin/requests", None).await;
    log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == path)
        .map(|r| (r["fault"].as_str().unwrap().to_string(), r["status"].as_u64().unwrap()))
        .collect()
}

/// One Key Vault request on a fresh connection: `Err` when the connection broke.
async fn kv_once(
    c: &Cloud,
    method: Method,
    vault: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let url = format!(
        "https://{vault}.{}:{}{path}?api-version=7.5",
        c.profile.keyvault_dns_suffix,
        c.port()
    );
    let mut req = http_client(&c.profile).request(method, url).bearer_auth(&c.kv_token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn versions(c: &Cloud, vault: &str, key: &str) -> usize {
    let (status, list) = c.kv(Method::GET, vault, &format!("/keys/{key}/versions"), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["value"].as_array().unwrap().len()
}

#[tokio::test]
async fn an_after_handler_fault_on_a_key_create_leaves_the_version_the_client_never_saw() {
    let c = start().await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-after1", false, json!({})).await;
    c.operator_policy(&vault, &["create", "get", "list"]).await;

    faults(
        &c,
        json!({"seed": 5, "lost_response_percent": 100, "services": ["keyvault"]}),
    )
    .await;
    let lost = kv_once(
        &c,
        Method::POST,
        "kv-after1",
        "/keys/k1/create",
        Some(json!({"kty": "RSA"})),
    )
    .await;
    assert!(lost.is_err(), "the answer was lost: {lost:?}");

    faults(
        &c,
        json!({"seed": 5, "error_after_percent": 100, "services": ["keyvault"]}),
    )
    .await;
    let (status, body) = kv_once(
        &c,
        Method::POST,
        "kv-after1",
        "/keys/k1/create",
        Some(json!({"kty": "RSA"})),
    )
    .await
    .unwrap();
    assert!(status.is_server_error(), "{status} {body}");
    assert!(body["error"]["code"].is_string(), "Key Vault's error shape: {body}");

    faults(&c, json!({})).await;
    assert_eq!(
        versions(&c, "kv-after1", "k1").await,
        2,
        "both creates took effect though the client saw two failures"
    );
    assert_eq!(
        logged(&c, "/keys/k1/create").await,
        vec![
            ("drop-after".to_string(), 200),
            ("5xx-after".to_string(), status.as_u16() as u64)
        ]
    );
}

#[tokio::test]
async fn faults_hit_only_the_services_and_clusters_they_are_scoped_to() {
    let c = start().await;
    let s = c.kms_setup("kv-scope1").await;
    let kube1 = c.kms_cluster(&s, "aks1", "1.30", None).await;
    let kube2 = c.kms_cluster(&s, "aks2", "1.30", None).await;

    faults(&c, json!({"seed": 1, "error_percent": 100, "services": ["arm"]})).await;
    let (status, _) = c.arm(Method::GET, &c.rg_id("rg1"), None).await;
    assert!(status.is_server_error(), "ARM is faulted: {status}");
    let (status, _) = c.kv(Method::GET, "kv-scope1", "/keys", None).await;
    assert_eq!(status, StatusCode::OK, "Key Vault is not");
    assert_eq!(
        kube1
            .request(Method::GET, "/api/v1/namespaces/default/secrets", None)
            .await
            .0,
        StatusCode::OK
    );

    faults(
        &c,
        json!({"seed": 1, "throttle_percent": 100, "retry_after_s": 7, "services": ["apiserver"], "clusters": [c.cluster_id("aks1").to_uppercase()]}),
    )
    .await;
    let (status, body) = kube1
        .request(Method::GET, "/api/v1/namespaces/default/secrets", None)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        (body["kind"].as_str(), body["reason"].as_str()),
        (Some("Status"), Some("TooManyRequests")),
        "a Kubernetes Status: {body}"
    );
    assert_eq!(
        kube2
            .request(Method::GET, "/api/v1/namespaces/default/secrets", None)
            .await
            .0,
        StatusCode::OK,
        "the other cluster's API server is not faulted"
    );
    assert_eq!(c.arm(Method::GET, &c.rg_id("rg1"), None).await.0, StatusCode::OK);

    faults(&c, json!({"seed": 1, "error_percent": 100, "services": ["entra"]})).await;
    let url = format!("{}{}/oauth2/v2.0/token", c.profile.authority_host, c.profile.tenant_id);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.profile.operator.client_id.as_str()),
        ("client_secret", c.profile.operator.client_secret.as_str()),
        ("scope", &format!("{}/.default", c.profile.arm_audience)),
    ];
    let resp = c.http.post(&url).form(&form).send().await.unwrap();
    assert!(resp.status().is_server_error());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "Entra's error shape: {body}");
    assert_eq!(c.arm(Method::GET, &c.rg_id("rg1"), None).await.0, StatusCode::OK);

    // Without `services`, a config means what it always meant: Entra is never faulted.
    faults(&c, json!({"seed": 1, "error_percent": 100})).await;
    assert_eq!(
        c.http.post(&url).form(&form).send().await.unwrap().status(),
        StatusCode::OK
    );
    faults(&c, json!({})).await;

    let (status, refused) = c
        .admin(
            Method::PUT,
            "/_admin/faults",
            Some(json!({"error_percent": 60, "lost_response_percent": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, refused) = c
        .admin(Method::PUT, "/_admin/faults", Some(json!({"services": ["dns"]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_connection_is_released_after_its_hold_and_blocks_nothing_else() {
    let c = start().await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-hang1", false, json!({})).await;
    c.operator_policy(&vault, &["get", "list"]).await;
    faults(
        &c,
        json!({"seed": 2, "hang_percent": 100, "hang_ms": 1500, "services": ["arm"]}),
    )
    .await;

    let url = format!(
        "{}{}?api-version=2021-04-01",
        c.profile.resource_manager.trim_end_matches('/'),
        c.rg_id("rg1")
    );
    let hung = {
        let (http, url, token) = (http_client(&c.profile), url.clone(), c.arm_token.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = match http
                .get(url)
                .bearer_auth(token)
                .timeout(Duration::from_secs(20))
                .send()
                .await
            {
                Ok(resp) => resp.text().await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (outcome, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, _) = c.kv(Method::GET, "kv-hang1", "/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "Key Vault answered while ARM hung"
    );

    // A client whose timeout is shorter than the hold gives up first.
    let short = http_client(&c.profile)
        .get(&url)
        .bearer_auth(&c.arm_token)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(short.as_ref().err().is_some_and(|e| e.is_timeout()), "{short:?}");

    let (outcome, waited) = hung.await.unwrap();
    assert!(outcome.is_err(), "a hung connection ends dropped, with no answer");
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(6),
        "held for its hold, then released: {waited:?}"
    );
    faults(&c, json!({})).await;
    let rows = logged(&c, &c.rg_id("rg1")).await;
    assert!(
        rows.iter().filter(|r| *r == &("hang".to_string(), 0)).count() >= 2,
        "each hang is logged, with no status: {rows:?}"
    );
}

async fn token_for(c: &Cloud, audience: &str) -> (StatusCode, Value) {
    let url = format!("{}{}/oauth2/v2.0/token", c.profile.authority_host, c.profile.tenant_id);
    let scope = format!("{audience}/.default");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.profile.operator.client_id.as_str()),
        ("client_secret", c.profile.operator.client_secret.as_str()),
        ("scope", scope.as_str()),
    ];
    let resp = c.http.post(url).form(&form).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn expired_and_revoked_tokens_get_401_and_a_new_token_works() {
    let c = start().await;
    c.resource_group("rg1").await;
    let (status, settings) = c
        .admin(Method::PUT, "/_admin/settings", Some(json!({"token_lifetime_s": 1})))
        .await;
    assert_eq!(
        (status, settings["token_lifetime_s"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (_, short) = token_for(&c, &c.profile.arm_audience).await;
    assert_eq!(short["expires_in"], 1);
    let short = short["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        c.arm_with(&short, Method::GET, &c.rg_id("rg1"), None).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let url = format!(
        "{}{}?api-version=2021-04-01",
        c.profile.resource_manager.trim_end_matches('/'),
        c.rg_id("rg1")
    );
    let resp = c.http.get(&url).bearer_auth(&short).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ExpiredAuthenticationToken");

    // Revocation: every token issued so far (long-lived ones included) stops working at once.
    c.admin(Method::PUT, "/_admin/settings", Some(json!({"token_lifetime_s": 3599})))
        .await;
    let (_, long) = token_for(&c, &c.profile.arm_audience).await;
    let long = long["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        c.arm_with(&long, Method::GET, &c.rg_id("rg1"), None).await.0,
        StatusCode::OK
    );
    let (status, revoked) = c.admin(Method::POST, "/_admin/tokens/revoke", None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    let (status, body) = c.arm_with(&long, Method::GET, &c.rg_id("rg1"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("ExpiredAuthenticationToken"))
    );
    let (_, fresh) = token_for(&c, &c.profile.arm_audience).await;
    let fresh = fresh["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        c.arm_with(&fresh, Method::GET, &c.rg_id("rg1"), None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_revoked_key_vault_token_gets_the_challenge_and_a_new_one_works() {
    let c = start().await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-revoke1", false, json!({})).await;
    c.operator_policy(&vault, &["get", "list"]).await;
    assert_eq!(c.kv(Method::GET, "kv-revoke1", "/keys", None).await.0, StatusCode::OK);
    c.admin(Method::POST, "/_admin/tokens/revoke", None).await;
    let ((status, body), headers) = c
        .kv_with(Some(&c.kv_token), Method::GET, "kv-revoke1", "/keys", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthorized"))
    );
    assert!(
        headers["www-authenticate"].to_str().unwrap().contains("resource="),
        "the Key Vault challenge"
    );
    let (_, fresh) = token_for(&c, &c.profile.keyvault_audience).await;
    let ((status, _), _) = c
        .kv_with(fresh["access_token"].as_str(), Method::GET, "kv-revoke1", "/keys", None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_kms_fault_fails_a_secret_write_with_the_api_servers_error_while_arm_is_fine() {
    let c = start().await;
    let s = c.kms_setup("kv-kmsf1").await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    // A fresh API server has no data key cached: the next write must call Key Vault.
    c.restart_apiserver("aks1").await;
    faults(&c, json!({"seed": 9, "error_percent": 100, "services": ["kms"]})).await;

    let (status, body) = kube.create_secret("default", "s1", "v").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["reason"], "InternalError");
    assert!(
        body["message"].as_str().unwrap().contains("rpc error"),
        "the KMS plugin's failure, as the API server reports it: {body}"
    );
    assert_eq!(
        kube.request(Method::GET, "/api/v1/namespaces/default/secrets/s1", None)
            .await
            .0,
        StatusCode::NOT_FOUND,
        "the failed write stored nothing"
    );
    let (status, doc) = c.arm(Method::GET, &c.cluster_id("aks1"), None).await;
    assert_eq!(
        (status, doc["properties"]["provisioningState"].as_str()),
        (StatusCode::OK, Some("Succeeded"))
    );
    assert_eq!(
        c.kv(Method::GET, "kv-kmsf1", "/keys", None).await.0,
        StatusCode::OK,
        "the vault answers its callers"
    );

    let path = format!(
        "/k8s{}/api/v1/namespaces/default/secrets",
        c.cluster_id("aks1").to_ascii_lowercase()
    );
    assert_eq!(logged(&c, &path).await, vec![("kms-5xx".to_string(), 500)]);

    faults(&c, json!({})).await;
    assert_eq!(kube.create_secret("default", "s1", "v").await.0, StatusCode::CREATED);
}
