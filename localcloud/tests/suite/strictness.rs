//! ARM's and AKS's strictness: `If-Match` compared byte for byte, api-versions checked per
//! resource type, and a cluster PUT validated (required fields, read-only fields ignored, an
//! empty `kubernetesVersion` meaning the default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{cluster_body, start, Cloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn cloud() -> Cloud {
    let c = start().await;
    c.settings(json!({"operation_duration_ms": 100})).await;
    c.resource_group("rg1").await;
    c
}

#[tokio::test]
async fn if_match_is_compared_literally_with_the_stored_etag() {
    let c = cloud().await;
    let id = c.cluster_id("aks1");
    c.arm(Method::PUT, &id, Some(cluster_body(None, "1.30", false, None)))
        .await;
    let doc = c.wait_cluster(&id).await;
    let etag = doc["eTag"].as_str().unwrap().to_string();
    assert!(!etag.starts_with('"'), "AKS's eTag is returned unquoted: {etag}");

    let quoted = format!("\"{etag}\"");
    let (st, _, err) = c
        .arm_raw(Method::PUT, &id, Some(doc.clone()), &[("if-match", &quoted)])
        .await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::PRECONDITION_FAILED, "PreconditionFailed"),
        "a quoted copy of an unquoted eTag is another value: {err}"
    );
    let (st, _, err) = c
        .arm_raw(
            Method::PUT,
            &id,
            Some(doc.clone()),
            &[("if-match", &etag.to_ascii_uppercase())],
        )
        .await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "case matters too: {err}");
    let (_, _, still) = c.arm_raw(Method::GET, &id, None, &[]).await;
    assert_eq!(still["eTag"], etag.as_str(), "a refused PUT changes nothing");

    let (st, h, body) = c
        .arm_raw(Method::PUT, &id, Some(doc.clone()), &[("if-match", &etag)])
        .await;
    assert_eq!(st, StatusCode::OK, "the eTag exactly as returned: {body}");
    assert!(h.get("etag").is_none(), "the body's eTag is the only one");
    let done = c.wait_cluster(&id).await;
    let new_etag = done["eTag"].as_str().unwrap().to_string();
    assert_ne!(new_etag, etag);

    let (st, _, body) = c.arm_raw(Method::PUT, &id, Some(done), &[("if-match", "*")]).await;
    assert_eq!(st, StatusCode::OK, "* matches an existing cluster: {body}");
}

#[tokio::test]
async fn an_unknown_api_version_is_refused_with_the_supported_ones() {
    let c = cloud().await;
    let cluster = format!("{}?api-version=2025-05-01", c.cluster_id("aks1"));
    let (st, _, err) = c
        .arm_raw(
            Method::PUT,
            &cluster,
            Some(cluster_body(None, "1.30", false, None)),
            &[],
        )
        .await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::BAD_REQUEST, "NoRegisteredProviderFound"),
        "{err}"
    );
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'2025-05-01'") && message.contains("'managedClusters'"),
        "{message}"
    );
    assert!(
        message.contains("2026-01-01") && message.contains("2026-10-01"),
        "{message}"
    );
    assert!(message.contains("location 'westeurope'"), "{message}");
    let (st, _, _) = c.arm_raw(Method::GET, &c.cluster_id("aks1"), None, &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "nothing was created");

    let rg = format!("{}?api-version=2025-05-01", c.rg_id("rg1"));
    let (st, _, err) = c.arm_raw(Method::GET, &rg, None, &[]).await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter"),
        "{err}"
    );
    assert!(
        err["error"]["message"].as_str().unwrap().contains("2021-04-01"),
        "{err}"
    );

    let vault = format!(
        "{}/providers/Microsoft.KeyVault/vaults/kv1?api-version=2026-01-01",
        c.rg_id("rg1")
    );
    let (st, _, err) = c.arm_raw(Method::GET, &vault, None, &[]).await;
    assert_eq!((st, code(&err)), (StatusCode::BAD_REQUEST, "NoRegisteredProviderFound"));
    assert!(
        err["error"]["message"].as_str().unwrap().contains("2025-05-01"),
        "{err}"
    );

    let role = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2099-01-01",
        c.rg_id("rg1"),
        uuid_like()
    );
    let (st, _, err) = c.arm_raw(Method::GET, &role, None, &[]).await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::BAD_REQUEST, "NoRegisteredProviderFound"),
        "{err}"
    );
}

fn uuid_like() -> &'static str {
    "00000000-0000-0000-0000-000000000001"
}

/// The versions kmsflow's host sends by default are served.
#[tokio::test]
async fn the_hosts_api_versions_are_served() {
    let c = cloud().await;
    for (path, version) in [
        (c.rg_id("rg1"), "2021-04-01"),
        (
            format!(
                "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1",
                c.rg_id("rg1")
            ),
            "2023-01-31",
        ),
    ] {
        let (st, _, body) = c
            .arm_raw(
                Method::PUT,
                &format!("{path}?api-version={version}"),
                Some(json!({"location": "westeurope"})),
                &[],
            )
            .await;
        assert!(st.is_success(), "{path} {version}: {body}");
    }
    let cluster = format!("{}?api-version=2026-01-01", c.cluster_id("aks1"));
    let (st, _, body) = c
        .arm_raw(
            Method::PUT,
            &cluster,
            Some(cluster_body(None, "1.30", false, None)),
            &[],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_cluster_put_needs_a_dns_prefix_and_a_system_agent_pool() {
    let c = cloud().await;
    let id = c.cluster_id("aks1");
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "no dnsPrefix",
            Box::new(|b: &mut Value| {
                b["properties"].as_object_mut().unwrap().remove("dnsPrefix");
            }),
            "InvalidParameter",
        ),
        (
            "no agent pools",
            Box::new(|b: &mut Value| {
                b["properties"].as_object_mut().unwrap().remove("agentPoolProfiles");
            }),
            "InvalidParameter",
        ),
        (
            "an empty agent pool list",
            Box::new(|b: &mut Value| b["properties"]["agentPoolProfiles"] = json!([])),
            "InvalidParameter",
        ),
        (
            "a pool without vmSize",
            Box::new(|b: &mut Value| {
                b["properties"]["agentPoolProfiles"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("vmSize");
            }),
            "InvalidParameter",
        ),
        (
            "a pool without count",
            Box::new(|b: &mut Value| {
                b["properties"]["agentPoolProfiles"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("count");
            }),
            "InvalidParameter",
        ),
        (
            "only a User pool",
            Box::new(|b: &mut Value| b["properties"]["agentPoolProfiles"][0]["mode"] = json!("User")),
            "MustDefineAtLeastOneSystemPool",
        ),
        (
            "no location",
            Box::new(|b: &mut Value| {
                b.as_object_mut().unwrap().remove("location");
            }),
            "LocationRequired",
        ),
    ];
    for (what, change, expected) in cases {
        let mut body = cluster_body(None, "1.30", false, None);
        change(&mut body);
        let (st, _, err) = c.arm_raw(Method::PUT, &id, Some(body), &[]).await;
        assert_eq!((st, code(&err)), (StatusCode::BAD_REQUEST, expected), "{what}: {err}");
    }
    let (st, _, _) = c.arm_raw(Method::GET, &id, None, &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "no refused PUT created the cluster");

    // fqdnSubdomain stands in for dnsPrefix.
    let mut body = cluster_body(None, "1.30", false, None);
    body["properties"].as_object_mut().unwrap().remove("dnsPrefix");
    body["properties"]["fqdnSubdomain"] = json!("aks-sub");
    let (st, _, created) = c.arm_raw(Method::PUT, &id, Some(body), &[]).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["properties"]["fqdnSubdomain"], "aks-sub");
}

#[tokio::test]
async fn an_update_keeps_omitted_pools_and_refuses_a_new_dns_prefix() {
    let c = cloud().await;
    let id = c.cluster_id("aks1");
    c.arm(Method::PUT, &id, Some(cluster_body(None, "1.30", false, None)))
        .await;
    let doc = c.wait_cluster(&id).await;

    let mut update = doc.clone();
    update["properties"]
        .as_object_mut()
        .unwrap()
        .remove("agentPoolProfiles");
    update["properties"].as_object_mut().unwrap().remove("dnsPrefix");
    let (st, _, body) = c.arm_raw(Method::PUT, &id, Some(update), &[]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["properties"]["agentPoolProfiles"][0]["name"], "nodepool1");
    assert_eq!(body["properties"]["dnsPrefix"], "aks");
    let doc = c.wait_cluster(&id).await;

    let mut update = doc.clone();
    update["properties"]["dnsPrefix"] = json!("other");
    let (st, _, err) = c.arm_raw(Method::PUT, &id, Some(update), &[]).await;
    assert_eq!(
        (st, code(&err)),
        (StatusCode::BAD_REQUEST, "PropertyChangeNotAllowed"),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_or_missing_kubernetes_version_means_the_default() {
    let c = cloud().await;
    let mut body = cluster_body(None, "", false, None);
    let (st, _, created) = c
        .arm_raw(Method::PUT, &c.cluster_id("aks1"), Some(body.clone()), &[])
        .await;
    assert_eq!(st, StatusCode::CREATED, "an empty version is not an error: {created}");
    let done = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(done["properties"]["kubernetesVersion"], "1.30");
    assert_eq!(done["properties"]["currentKubernetesVersion"], "1.30.12");
    assert_eq!(
        done["properties"]["agentPoolProfiles"][0]["currentOrchestratorVersion"],
        "1.30.12"
    );

    body["properties"].as_object_mut().unwrap().remove("kubernetesVersion");
    let (st, _, created) = c.arm_raw(Method::PUT, &c.cluster_id("aks2"), Some(body), &[]).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let done = c.wait_cluster(&c.cluster_id("aks2")).await;
    assert_eq!(done["properties"]["currentKubernetesVersion"], "1.30.12");
}

#[tokio::test]
async fn read_only_fields_in_a_put_are_ignored() {
    let c = cloud().await;
    let mut body = cluster_body(None, "1.29", false, None);
    let p = &mut body["properties"];
    p["provisioningState"] = json!("Succeeded");
    p["currentKubernetesVersion"] = json!("1.33.1");
    p["fqdn"] = json!("evil.example.com");
    p["kmsflowAdminToken"] = json!("chosen-by-the-client");
    p["agentPoolProfiles"][0]["currentOrchestratorVersion"] = json!("1.33.1");
    p["agentPoolProfiles"][0]["provisioningState"] = json!("Succeeded");
    let (st, _, created) = c.arm_raw(Method::PUT, &c.cluster_id("aks1"), Some(body), &[]).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let p = &created["properties"];
    assert_eq!(p["provisioningState"], "Creating");
    assert_eq!(p["currentKubernetesVersion"], "1.29.14");
    assert_ne!(p["fqdn"], "evil.example.com");
    assert_eq!(p["agentPoolProfiles"][0]["currentOrchestratorVersion"], "1.29.14");
    assert_eq!(p["agentPoolProfiles"][0]["provisioningState"], "Creating");
    c.wait_cluster(&c.cluster_id("aks1")).await;
    let kube = c.kube("aks1").await;
    assert_ne!(kube.token.as_deref(), Some("chosen-by-the-client"));
}
