//! Each error path of the AKS and Key Vault capabilities as a plugin sees it: the WIT kind and the
//! service's code, through the production clients against the local cloud.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{public_kms, start};
use kmsflow::wit::types::{Param, Value};
use kmsflow::{Grant, Grants, Plugin, Runtime, StepLimits, StepRun, Target};
use kmsflow_tests::{output, runtime, test_plugin, Recorder};
use reqwest::{Method, StatusCode};

async fn call(
    rt: &Runtime,
    plugin: &Plugin,
    target: &Target,
    grants: &Grants,
    op: &str,
    on: &str,
    arg: &str,
) -> String {
    let params = [("op", op), ("target", on), ("arg", arg)]
        .iter()
        .map(|(n, v)| Param {
            name: (*n).into(),
            value: Value::Text((*v).into()),
        })
        .collect();
    let step = StepRun {
        id: "errors".into(),
        params,
        grants: grants.clone(),
        limits: StepLimits::default(),
    };
    let outputs = rt
        .run_step(plugin, step, target, &Recorder::default().options())
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    match output(&outputs, "result") {
        Some(Value::Text(t)) => t,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aks_and_key_vault_errors_reach_the_plugin_with_their_kind_and_code() {
    let c = start().await;
    let s = c.kms_setup("kv-errors").await;
    c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    let cluster = c.cluster_id("aks1");
    let target = Target::local(c.dir.path()).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-errors").await;
    let grants = Grants::new(vec![
        Grant::new(&c.rg_id("rg1"), &["read", "kms", "upgrade", "keys"]).unwrap()
    ]);

    // Invalid, before any request: an unversioned key id selects another AKS feature.
    let unversioned = s.key_id.rsplit_once('/').unwrap().0.to_string();
    let before = c.cloud_requests().await;
    let r = call(&rt, &plugin, &target, &grants, "set-kms", &cluster, &unversioned).await;
    assert!(r.starts_with("invalid:"), "{r}");
    assert_eq!(c.cloud_requests().await, before, "rejected before any call");

    // Invalid, from AKS: minor versions cannot be skipped.
    let r = call(&rt, &plugin, &target, &grants, "upgrade", &cluster, "1.32").await;
    assert!(r.starts_with("invalid:"), "{r}");

    // Not found: a key that does not exist.
    let r = call(&rt, &plugin, &target, &grants, "get-key", &s.vault, "missing").await;
    assert_eq!(r, "not-found:KeyNotFound");

    // Denied by Azure: a vault whose access policies do not include the operator.
    let locked = c.vault("rg1", "kv-locked", false, serde_json::json!({})).await;
    let r = call(&rt, &plugin, &target, &grants, "get-key", &locked, "etcd").await;
    assert_eq!(r, "denied:Forbidden");

    // Conflict: another operation on the cluster is in progress.
    let (status, _) = c
        .admin(
            Method::PUT,
            "/_admin/settings",
            Some(serde_json::json!({"operation_duration_ms": 30_000})),
        )
        .await;
    assert!(status.is_success());
    let (_, mut doc) = c.arm(Method::GET, &cluster, None).await;
    doc["tags"] = serde_json::json!({"changed": "by someone else"});
    let (status, body) = c.arm(Method::PUT, &cluster, Some(doc)).await;
    assert!(status.is_success(), "{body}");
    let r = call(&rt, &plugin, &target, &grants, "set-kms", &cluster, &s.key_id).await;
    assert_eq!(r, "conflict:OperationNotAllowed");
    let (_, doc) = c.arm(Method::GET, &cluster, None).await;
    assert_eq!(
        doc["properties"]["provisioningState"], "Updating",
        "the other operation is untouched"
    );
    let (status, _) = c
        .admin(
            Method::PUT,
            "/_admin/settings",
            Some(serde_json::json!({"operation_duration_ms": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
