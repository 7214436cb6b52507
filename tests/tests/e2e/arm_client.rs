//! The production ARM client against the local cloud over HTTPS: retries through injected
//! throttling, 5xx and dropped connections; error mapping; long-running operations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmsflow::cloud::{credential, http, ArmClient, CloudError, CloudProfile, RetryPolicy};
use kmsflow::wit::types::ErrorKind;
use kmsflow_localcloud::{Config, LocalCloud, ADMIN_HEADER};
use serde_json::json;
use std::time::Duration;

struct Setup {
    _dir: tempfile::TempDir,
    cloud: LocalCloud,
    arm: ArmClient,
    http: reqwest::Client,
}

async fn setup(policy: RetryPolicy) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.operation_duration = Duration::from_millis(300);
    let cloud = LocalCloud::start(config).await.unwrap();
    let p = cloud.profile().clone();
    let profile = CloudProfile::from_local(&p);
    let http = http::client(&profile).unwrap();
    let cred = credential::client_secret(
        &profile,
        &http,
        &p.tenant_id,
        &p.operator.client_id,
        &p.operator.client_secret,
    )
    .unwrap();
    let arm = ArmClient::new(
        http.clone(),
        &profile.resource_manager,
        &profile.arm_scope(),
        cred,
        policy,
    );
    Setup {
        _dir: dir,
        cloud,
        arm,
        http,
    }
}

impl Setup {
    fn rg(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/rg1",
            self.cloud.profile().default_subscription
        )
    }

    async fn faults(&self, config: serde_json::Value) {
        let url = format!("{}_admin/faults", self.cloud.profile().resource_manager);
        let resp = self
            .http
            .put(url)
            .header(ADMIN_HEADER, &self.cloud.profile().admin_key)
            .json(&config)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        deadline: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn two_hundred_calls_complete_through_throttling_5xx_and_dropped_connections() {
    let s = setup(fast()).await;
    s.arm
        .put(&id(&s.rg()), "2021-04-01", &json!({"location": "westeurope"}), &[])
        .await
        .unwrap();
    s.faults(json!({"seed": 42, "throttle_percent": 20, "retry_after_s": 0, "error_percent": 5, "drop_percent": 5}))
        .await;
    let mut retried = 0;
    for i in 0..200 {
        let resp = s
            .arm
            .get(&id(&s.rg()), "2021-04-01")
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(resp.body["name"], "rg1");
        assert!(resp.request_id.is_some());
        retried += resp.retries;
    }
    assert!(retried >= 40, "with 30 % faults, 200 calls need retries; saw {retried}");
}

#[tokio::test]
async fn service_errors_keep_azures_code_and_map_to_wit_kinds() {
    let s = setup(fast()).await;
    let err = s
        .arm
        .get(
            &id(&format!("{}/providers/Microsoft.KeyVault/vaults/kv1", s.rg())),
            "2025-05-01",
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    let wit = err.to_wit();
    assert_eq!(
        (wit.kind, wit.code.as_str()),
        (ErrorKind::NotFound, "ResourceGroupNotFound")
    );
    if let CloudError::Service { request_id, .. } = err {
        assert!(request_id.is_some());
    }
}

#[tokio::test]
async fn long_running_operations_are_awaited_to_the_final_state() {
    let s = setup(fast()).await;
    s.arm
        .put(&id(&s.rg()), "2021-04-01", &json!({"location": "westeurope"}), &[])
        .await
        .unwrap();
    let identity = format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1",
        s.rg()
    );
    s.arm
        .put(&id(&identity), "2023-01-31", &json!({"location": "westeurope"}), &[])
        .await
        .unwrap();
    let cluster = format!("{}/providers/Microsoft.ContainerService/managedClusters/aks1", s.rg());
    let body = json!({"location": "westeurope", "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}},
        "properties": {"kubernetesVersion": "1.29", "dnsPrefix": "aks1",
            "agentPoolProfiles": [{"name": "nodepool1", "count": 1, "vmSize": "Standard_D2s_v3", "mode": "System"}]}});
    let first = s.arm.put(&id(&cluster), "2025-10-01", &body, &[]).await.unwrap();
    assert_eq!(first.body["properties"]["provisioningState"], "Creating");
    let done = s.arm.wait(&id(&cluster), "2025-10-01", first).await.unwrap();
    assert_eq!(done.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(done.body["properties"]["currentKubernetesVersion"], "1.29.14");
}

fn id(text: &str) -> kmsflow::ResourceId {
    kmsflow::ResourceId::parse(text).unwrap()
}
