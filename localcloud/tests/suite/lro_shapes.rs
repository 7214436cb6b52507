//! Long-running operations in each ARM shape, observed on the wire: the first answer's status and
//! headers, what polling answers while the operation runs and once it is done, and the resource's
//! final state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{cluster_body, start, Cloud};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// A cloud with rg1, operations of `duration_ms`, answered in `shape`.
async fn cloud(shape: &str, duration_ms: u64) -> Cloud {
    let c = start().await;
    c.resource_group("rg1").await;
    let s = c
        .settings(json!({"lro_shape": shape, "operation_duration_ms": duration_ms}))
        .await;
    assert_eq!(s["lro_shape"], shape, "the cloud took the setting: {s}");
    c
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

fn retry_after(h: &HeaderMap) -> u64 {
    header(h, "retry-after")
        .expect("Retry-After is sent")
        .parse()
        .expect("Retry-After is whole seconds")
}

async fn create(c: &Cloud, name: &str) -> (StatusCode, HeaderMap, Value) {
    c.arm_raw(
        Method::PUT,
        &c.cluster_id(name),
        Some(cluster_body(None, "1.30", false, None)),
        &[],
    )
    .await
}

/// GETs `url` until it stops answering `while_status`, at most ~5 s; returns the last answer.
async fn poll_until_not(c: &Cloud, url: &str, while_status: StatusCode) -> (StatusCode, HeaderMap, Value) {
    for _ in 0..100 {
        let answer = c.get_or_send(Method::GET, url, None, &[]).await;
        if answer.0 != while_status {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} kept answering {while_status}");
}

#[tokio::test]
async fn azure_async_operation_shape_answers_with_a_status_document() {
    let c = cloud("azure-async-operation", 400).await;
    let (status, h, body) = create(&c, "aks1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["properties"]["provisioningState"], "Creating");
    assert!(header(&h, "location").is_none());
    assert!(retry_after(&h) >= 1);
    let op_url = header(&h, "azure-asyncoperation").unwrap().to_string();
    let (st, h2, doc) = c.get_or_send(Method::GET, &op_url, None, &[]).await;
    assert_eq!(
        (st, doc["status"].as_str()),
        (StatusCode::OK, Some("InProgress")),
        "{doc}"
    );
    assert!(retry_after(&h2) >= 1, "a running operation says when to poll again");
    let op_id = op_url.split('?').next().unwrap().rsplit('/').next().unwrap();
    assert_eq!(doc["name"], op_id, "the status document names its operation: {doc}");
    assert!(
        doc["id"].as_str().unwrap().ends_with(&format!(
            "/providers/Microsoft.ContainerService/locations/westeurope/operations/{op_id}"
        )),
        "{doc}"
    );

    let mut done = Value::Null;
    for _ in 0..100 {
        done = c.get_or_send(Method::GET, &op_url, None, &[]).await.2;
        if done["status"] != "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert!(done["endTime"].is_string(), "{done}");
    let (_, _, cluster) = c.arm_raw(Method::GET, &c.cluster_id("aks1"), None, &[]).await;
    assert_eq!(cluster["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn location_shape_answers_202_then_204_on_the_location_url() {
    let c = cloud("location", 400).await;
    let (status, h, body) = create(&c, "aks1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, Value::Null, "a 202 of the Location shape has no body");
    assert!(header(&h, "azure-asyncoperation").is_none());
    assert!(retry_after(&h) >= 1);
    let location = header(&h, "location").unwrap().to_string();
    assert!(
        location.contains("/locations/westeurope/operationresults/"),
        "{location}"
    );
    assert!(
        location.contains("api-version=2017-08-31"),
        "AKS's result URLs: {location}"
    );

    let (st, h2, _) = c.get_or_send(Method::GET, &location, None, &[]).await;
    assert_eq!(st, StatusCode::ACCEPTED, "still running");
    assert!(retry_after(&h2) >= 1);
    assert_eq!(header(&h2, "location"), Some(location.as_str()));

    let (st, _, _) = poll_until_not(&c, &location, StatusCode::ACCEPTED).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, _, cluster) = c.arm_raw(Method::GET, &c.cluster_id("aks1"), None, &[]).await;
    assert_eq!(cluster["properties"]["provisioningState"], "Succeeded");
    assert_eq!(cluster["properties"]["currentKubernetesVersion"], "1.30.12");
}

#[tokio::test]
async fn provisioning_state_shape_is_polled_on_the_resource() {
    let c = cloud("provisioning-state", 400).await;
    let (status, h, body) = create(&c, "aks1").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["properties"]["provisioningState"], "Creating");
    assert!(header(&h, "azure-asyncoperation").is_none());
    assert!(header(&h, "location").is_none());
    assert!(retry_after(&h) >= 1);

    let (st, h2, doc) = c.arm_raw(Method::GET, &c.cluster_id("aks1"), None, &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["properties"]["provisioningState"], "Creating");
    assert!(retry_after(&h2) >= 1, "the polled resource paces its poller");

    let done = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    let (_, h3, _) = c.arm_raw(Method::GET, &c.cluster_id("aks1"), None, &[]).await;
    assert!(
        header(&h3, "retry-after").is_none(),
        "a settled resource has nothing to wait for"
    );
}

#[tokio::test]
async fn rotate_cycles_through_the_three_shapes_one_operation_at_a_time() {
    let c = cloud("rotate", 100).await;
    let mut seen = Vec::new();
    for round in 0..4 {
        let (status, h, body) = if round == 0 {
            create(&c, "aks1").await
        } else {
            let (_, _, mut doc) = c.arm_raw(Method::GET, &c.cluster_id("aks1"), None, &[]).await;
            doc["tags"] = json!({"round": round});
            c.arm_raw(Method::PUT, &c.cluster_id("aks1"), Some(doc), &[]).await
        };
        assert!(status.is_success(), "{body}");
        let shape = match (
            status,
            header(&h, "azure-asyncoperation").is_some(),
            header(&h, "location").is_some(),
        ) {
            (StatusCode::ACCEPTED, false, true) => "location",
            (StatusCode::CREATED | StatusCode::OK, true, false) => "azure-async-operation",
            (StatusCode::CREATED | StatusCode::OK, false, false) => "provisioning-state",
            other => panic!("not an ARM shape: {other:?}"),
        };
        seen.push(shape);
        let done = c.wait_cluster(&c.cluster_id("aks1")).await;
        assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    }
    assert_eq!(
        seen,
        [
            "azure-async-operation",
            "location",
            "provisioning-state",
            "azure-async-operation"
        ]
    );
}

#[tokio::test]
async fn an_unknown_shape_is_refused_by_the_admin_api() {
    let c = start().await;
    let (status, body) = c
        .admin(Method::PUT, "/_admin/settings", Some(json!({"lro_shape": "Location"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, now) = c.admin(Method::GET, "/_admin/settings", None).await;
    assert_eq!(now["lro_shape"], "azure-async-operation", "the default is unchanged");
}
