//! Fault injection switched at run time through the admin API, and the request log tests read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::start;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A fresh client per request: a dropped connection must not poison the next request's pool.
async fn get(c: &crate::common::Cloud, url: &str) -> reqwest::Response {
    crate::common::http_client(&c.profile)
        .get(url)
        .bearer_auth(&c.arm_token)
        .send()
        .await
        .unwrap()
}

async fn faults(c: &crate::common::Cloud, config: serde_json::Value) {
    let admin = format!("{}/_admin/faults", c.profile.resource_manager.trim_end_matches('/'));
    let resp = crate::common::http_client(&c.profile)
        .put(admin)
        .header(kmsflow_localcloud::ADMIN_HEADER, &c.profile.admin_key)
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn faults_are_injected_deterministically_and_logged() {
    let c = start().await;
    c.resource_group("rg1").await;
    let url = format!(
        "{}{}?api-version=2021-04-01",
        c.profile.resource_manager.trim_end_matches('/'),
        c.rg_id("rg1")
    );

    faults(&c, json!({"seed": 1, "throttle_percent": 100, "retry_after_s": 3})).await;
    let resp = get(&c, &url).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "3");

    faults(&c, json!({"seed": 1, "drop_percent": 100})).await;
    let dropped = match crate::common::http_client(&c.profile)
        .get(&url)
        .bearer_auth(&c.arm_token)
        .send()
        .await
    {
        Ok(resp) => resp.text().await.is_err(),
        Err(_) => true,
    };
    assert!(dropped, "a dropped connection fails the request");

    faults(&c, json!({"seed": 1, "error_percent": 100})).await;
    assert!(get(&c, &url).await.status().is_server_error());

    faults(&c, json!({})).await;
    assert_eq!(get(&c, &url).await.status(), StatusCode::OK);

    let (_, log) = crate::common::http_client(&c.profile)
        .get(format!(
            "{}/_admin/requests",
            c.profile.resource_manager.trim_end_matches('/')
        ))
        .header(kmsflow_localcloud::ADMIN_HEADER, &c.profile.admin_key)
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    let log: serde_json::Value = log.json().await.unwrap();
    let seen: Vec<&str> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == c.rg_id("rg1").as_str())
        .map(|r| r["fault"].as_str().unwrap())
        .collect();
    assert_eq!(seen, vec!["", "throttle", "drop", "5xx", ""]);
    assert!(log["value"].as_array().unwrap().iter().all(|r| r.get("body").is_none()));
}

#[tokio::test]
async fn slow_operations_are_a_runtime_setting() {
    let c = start().await;
    let s = c.kms_setup("kv-slow1").await;
    c.admin(
        Method::PUT,
        "/_admin/settings",
        Some(json!({"operation_duration_ms": 1500})),
    )
    .await;
    let (status, _) = c
        .arm(
            Method::PUT,
            &c.cluster_id("aks1"),
            Some(crate::common::cluster_body(Some(&s.identity), "1.30", false, None)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (_, doc) = c.arm(Method::GET, &c.cluster_id("aks1"), None).await;
    assert_eq!(doc["properties"]["provisioningState"], "Creating");
    assert_eq!(
        c.wait_cluster(&c.cluster_id("aks1")).await["properties"]["provisioningState"],
        "Succeeded"
    );
}

#[tokio::test]
async fn a_disabled_key_cannot_be_put_on_a_cluster() {
    let c = start().await;
    let s = c.kms_setup("kv-dis1").await;
    c.operator_policy(&s.vault, &["update"]).await;
    let version = s.key_id.rsplit('/').next().unwrap();
    let (status, _) = c
        .kv(
            Method::PATCH,
            "kv-dis1",
            &format!("/keys/etcd/{version}"),
            Some(json!({"attributes": {"enabled": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = c
        .arm(
            Method::PUT,
            &c.cluster_id("aks1"),
            Some(crate::common::cluster_body(
                Some(&s.identity),
                "1.30",
                false,
                Some(crate::common::public_kms(&s.key_id)),
            )),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("AzureKeyVaultKmsKeyDisabled"))
    );
}
