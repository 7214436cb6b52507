//! Operation faults: an operation stuck in `Updating` until its hang is cleared (also across a
//! restart), and operations ending `Failed` or `Canceled` with the ARM error the fault names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{cluster_body, start, start_in, Cloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn settled_cluster(c: &Cloud, name: &str) -> Value {
    let (status, _, body) = c
        .arm_raw(
            Method::PUT,
            &c.cluster_id(name),
            Some(cluster_body(None, "1.30", false, None)),
            &[],
        )
        .await;
    assert!(status.is_success(), "{body}");
    let doc = c.wait_cluster(&c.cluster_id(name)).await;
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded");
    doc
}

/// PUTs the cluster back with a new tag; returns the `Azure-AsyncOperation` URL.
async fn update(c: &Cloud, name: &str, tag: &str) -> String {
    let (_, _, mut doc) = c.arm_raw(Method::GET, &c.cluster_id(name), None, &[]).await;
    doc["tags"] = json!({"t": tag});
    let (status, h, body) = c.arm_raw(Method::PUT, &c.cluster_id(name), Some(doc), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["properties"]["provisioningState"], "Updating");
    h["azure-asyncoperation"].to_str().unwrap().to_string()
}

async fn hang(c: &Cloud, resource: &str, body: Value) {
    let mut body = body;
    body["resource"] = json!(resource);
    let (status, resp) = c.admin(Method::PUT, "/_admin/operations/hang", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
}

async fn provisioning_state(c: &Cloud, name: &str) -> String {
    let (_, _, doc) = c.arm_raw(Method::GET, &c.cluster_id(name), None, &[]).await;
    doc["properties"]["provisioningState"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_hung_operation_stays_updating_until_the_hang_is_cleared() {
    let c = start().await;
    c.settings(json!({"operation_duration_ms": 200})).await;
    c.resource_group("rg1").await;
    settled_cluster(&c, "aks1").await;
    hang(&c, &c.cluster_id("aks1"), json!({"hang_s": 300})).await;
    let op_url = update(&c, "aks1", "one").await;

    // Well past the operation's duration, it is still running.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(provisioning_state(&c, "aks1").await, "Updating");
    let (st, h, op) = c.get_or_send(Method::GET, &op_url, None, &[]).await;
    assert_eq!(
        (st, op["status"].as_str()),
        (StatusCode::OK, Some("InProgress")),
        "{op}"
    );
    assert!(h.contains_key("retry-after"));
    let (st, _, refused) = c
        .arm_raw(
            Method::PUT,
            &c.cluster_id("aks1"),
            Some(cluster_body(None, "1.30", false, None)),
            &[],
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "a stuck operation blocks the next: {refused}");
    let (_, faults) = c.admin(Method::GET, "/_admin/operations/faults", None).await;
    assert_eq!(faults["value"].as_array().unwrap().len(), 1, "{faults}");

    hang(&c, &c.cluster_id("aks1"), json!({"hang_s": 0})).await;
    let (_, faults) = c.admin(Method::GET, "/_admin/operations/faults", None).await;
    assert_eq!(faults["value"], json!([]), "clearing the hang leaves no fault behind");
    let (_, _, op) = c.get_or_send(Method::GET, &op_url, None, &[]).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    assert_eq!(provisioning_state(&c, "aks1").await, "Succeeded");
}

#[tokio::test]
async fn a_hang_survives_a_restart_and_ends_by_itself() {
    let mut c = start().await;
    c.settings(json!({"operation_duration_ms": 100})).await;
    c.resource_group("rg1").await;
    settled_cluster(&c, "aks1").await;
    hang(&c, &c.cluster_id("aks1"), json!({"hang_ms": 2500})).await;
    update(&c, "aks1", "one").await;
    c.cloud.take().unwrap().shutdown().await;

    let again = start_in(c.dir).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provisioning_state(&again, "aks1").await, "Updating");
    let done = again.wait_cluster(&again.cluster_id("aks1")).await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn the_next_operation_fails_with_the_armed_error_and_the_one_after_succeeds() {
    let c = start().await;
    c.settings(json!({"operation_duration_ms": 100})).await;
    c.resource_group("rg1").await;
    settled_cluster(&c, "aks1").await;
    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/operations/fail-next",
            Some(json!({"resource": c.cluster_id("aks1"), "status": "Failed",
                "code": "InternalOperationError", "message": "Internal server error"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let op_url = update(&c, "aks1", "one").await;
    let done = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(done["properties"]["provisioningState"], "Failed");
    let (_, _, op) = c.get_or_send(Method::GET, &op_url, None, &[]).await;
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["error"]["code"], "InternalOperationError", "{op}");
    assert_eq!(op["error"]["message"], "Internal server error");

    // The fault applied to one operation only.
    update(&c, "aks1", "two").await;
    let done = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn a_canceled_operation_answers_its_error_on_the_location_url() {
    let c = start().await;
    c.settings(json!({"operation_duration_ms": 100})).await;
    c.resource_group("rg1").await;
    settled_cluster(&c, "aks1").await;
    c.settings(json!({"lro_shape": "location"})).await;
    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/operations/fail-next",
            Some(json!({"resource": c.cluster_id("aks1"), "status": "Canceled",
                "code": "OperationCanceled", "message": "The operation was canceled."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, mut doc) = c.arm_raw(Method::GET, &c.cluster_id("aks1"), None, &[]).await;
    doc["tags"] = json!({"t": "cancel"});
    let (status, h, _) = c.arm_raw(Method::PUT, &c.cluster_id("aks1"), Some(doc), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let location = h["location"].to_str().unwrap().to_string();
    let mut answer = (StatusCode::ACCEPTED, Value::Null);
    for _ in 0..100 {
        let (st, _, body) = c.get_or_send(Method::GET, &location, None, &[]).await;
        answer = (st, body);
        if st != StatusCode::ACCEPTED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer.0, StatusCode::CONFLICT, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], "OperationCanceled");
    assert_eq!(provisioning_state(&c, "aks1").await, "Canceled");
}

#[tokio::test]
async fn only_failed_or_canceled_can_be_armed() {
    let c = start().await;
    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/operations/fail-next",
            Some(json!({"resource": "/subscriptions/x", "status": "Succeeded", "code": "C", "message": "m"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
