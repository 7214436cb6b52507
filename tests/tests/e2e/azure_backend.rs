//! The production backend behind the WIT contract: a plugin's capability calls go through the
//! policy point, the ARM client and HTTPS to the local cloud, and the local cloud holds the result.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmsflow::cloud::{
    credential, http, ApiVersions, ArmClient, AzureBackend, CloudProfile, KeyVaultClient, RetryPolicy,
};
use kmsflow::wit::types::{Param, Value};
use kmsflow::{Grant, Grants, StepLimits, StepRun, Target};
use kmsflow_localcloud::{Config, LocalCloud, ADMIN_HEADER};
use kmsflow_tests::{output, runtime, test_plugin, Recorder};
use std::sync::Arc;

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// A local cloud with resource group `rg1`, the production clients for it, and a target.
struct Local {
    _dir: tempfile::TempDir,
    _cloud: LocalCloud,
    p: kmsflow_localcloud::CloudProfile,
    client: reqwest::Client,
    arm: ArmClient,
    target: Target,
    rg: String,
}

async fn local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let cloud = LocalCloud::start(Config::new(dir.path().join("cloud"))).await.unwrap();
    let p = cloud.profile().clone();
    let profile = CloudProfile::from_local(&p);
    let client = http::client(&profile).unwrap();
    let cred = credential::client_secret(
        &profile,
        &client,
        &p.tenant_id,
        &p.operator.client_id,
        &p.operator.client_secret,
    )
    .unwrap();
    let arm = ArmClient::new(
        client.clone(),
        &profile.resource_manager,
        &profile.arm_scope(),
        cred.clone(),
        RetryPolicy::default(),
    );
    let kv = KeyVaultClient::new(client.clone(), cred, RetryPolicy::default());
    let rg = format!("/subscriptions/{}/resourceGroups/rg1", p.default_subscription);
    arm.put(
        &id(&rg),
        "2021-04-01",
        &serde_json::json!({"location": "westeurope"}),
        &[],
    )
    .await
    .unwrap();
    let target = Target::new(
        "local",
        Arc::new(AzureBackend::new(arm.clone(), kv, ApiVersions::default())),
    );
    Local {
        _dir: dir,
        _cloud: cloud,
        p,
        client,
        arm,
        target,
        rg,
    }
}

async fn run(rbac: bool) {
    let Local {
        _dir,
        _cloud,
        p,
        client,
        arm,
        target,
        rg,
    } = local().await;

    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-arm-calls").await;
    let vault = format!("{rg}/providers/Microsoft.KeyVault/vaults/kv-backend{}", u8::from(rbac));
    let identity = format!("{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aks-kms");
    let cluster = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/missing");
    let step = StepRun {
        id: "enable".into(),
        params: vec![
            Param {
                name: "identity".into(),
                value: text(&identity),
            },
            Param {
                name: "vault".into(),
                value: text(&vault),
            },
            Param {
                name: "cluster".into(),
                value: text(&cluster),
            },
            Param {
                name: "rbac".into(),
                value: Value::Flag(rbac),
            },
        ],
        grants: Grants::new(vec![Grant::new(&rg, &["read", "write", "roles", "keys"]).unwrap()]),
        limits: StepLimits::default(),
    };
    let options = Recorder::default().options();
    let report = rt.run_step(&plugin, step.clone(), &target, &options).await;
    let outputs = report.outcome.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output(&outputs, "versions"), Some(Value::Integer(2)));
    // The same run again (a resume): the tagged version is found, no third version is made.
    let again = rt
        .run_step(&plugin, step.clone(), &target, &options)
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output(&again, "versions"), Some(Value::Integer(2)));
    assert_eq!(output(&again, "rotated"), output(&outputs, "rotated"));
    // A new run rotates again.
    let other = rt
        .run_step(&plugin, step, &target, &Recorder::default().options())
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output(&other, "versions"), Some(Value::Integer(3)));
    assert_eq!(
        output(&outputs, "oid"),
        Some(text(&p.operator.object_id)),
        "whoami reads the token's oid"
    );
    assert_eq!(output(&outputs, "cluster"), Some(text("not-found:ResourceNotFound")));
    let Some(Value::Text(principal)) = output(&outputs, "principal") else {
        panic!("no principal")
    };
    let Some(Value::Text(uri)) = output(&outputs, "vault_uri") else {
        panic!("no uri")
    };
    assert!(
        uri.starts_with("https://kv-backend") && uri.contains(".vault.localhost:"),
        "{uri}"
    );

    let vault_doc = arm.get(&id(&vault), "2025-05-01").await.unwrap().body;
    assert_eq!(vault_doc["properties"]["enablePurgeProtection"], true);
    let admin = |path: &str| {
        let url = format!("{}{path}", p.resource_manager.trim_end_matches('/'));
        client.get(url).header(ADMIN_HEADER, &p.admin_key).send()
    };
    let assignments: serde_json::Value = admin("/_admin/resources?type=Microsoft.Authorization/roleAssignments")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine = assignments["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["properties"]["principalId"] == principal.as_str())
        .count();
    if rbac {
        assert_eq!(output(&outputs, "mechanism"), Some(text("role-assignment")));
        assert_eq!(mine, 1, "six ensures over three runs, one role assignment");
        assert!(vault_doc["properties"]["accessPolicies"].as_array().unwrap().is_empty());
    } else {
        assert_eq!(output(&outputs, "mechanism"), Some(text("access-policy")));
        assert_eq!(mine, 0);
        let policies: Vec<_> = vault_doc["properties"]["accessPolicies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["objectId"] == principal.as_str())
            .collect();
        assert_eq!(policies.len(), 1, "six ensures over three runs, one access policy");
        assert_eq!(
            policies[0]["permissions"]["keys"],
            serde_json::json!(["encrypt", "decrypt"])
        );
    }
    let log: serde_json::Value = admin("/_admin/requests").await.unwrap().json().await.unwrap();
    assert!(
        log["value"].as_array().unwrap().iter().all(|r| r["method"] != "DELETE"),
        "nothing is ever deleted"
    );
    let identity_puts = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "PUT" && r["path"].as_str().unwrap().ends_with("/aks-kms"))
        .count();
    assert_eq!(identity_puts, 1, "the second ensure only reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_calls_reach_the_local_cloud_once_with_access_policies() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_calls_reach_the_local_cloud_once_with_rbac() {
    run(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_arm_capability_tags_a_created_cluster_but_never_reads_credentials() {
    let Local {
        _dir,
        _cloud,
        p,
        client,
        arm,
        target,
        rg,
    } = local().await;
    let identity = format!("{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aks1");
    arm.put(
        &id(&identity),
        "2023-01-31",
        &serde_json::json!({"location": "westeurope"}),
        &[],
    )
    .await
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-arm-generic").await;
    let cluster = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks1");
    let step = StepRun {
        id: "generic".into(),
        params: vec![
            Param {
                name: "cluster".into(),
                value: text(&cluster),
            },
            Param {
                name: "identity".into(),
                value: text(&identity),
            },
        ],
        grants: Grants::new(vec![Grant::new(&rg, &["write"]).unwrap()]),
        limits: StepLimits::default(),
    };
    let outputs = rt
        .run_step(&plugin, step, &target, &Recorder::default().options())
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output(&outputs, "state"), Some(text("Succeeded")));
    assert_eq!(output(&outputs, "tag_status"), Some(Value::Integer(200)));
    assert_eq!(
        output(&outputs, "credentials"),
        Some(text("denied:CredentialsNotExposed"))
    );
    let doc = arm.get(&id(&cluster), "2026-01-01").await.unwrap().body;
    assert_eq!(doc["tags"]["team"], "platform");
    let log: serde_json::Value = client
        .get(format!("{}_admin/requests", p.resource_manager))
        .header(ADMIN_HEADER, &p.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        log["value"].as_array().unwrap().iter().all(|r| !r["path"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("credential")),
        "the credential request never left the host"
    );
}

fn id(text: &str) -> kmsflow::ResourceId {
    kmsflow::ResourceId::parse(text).unwrap()
}
