//! A call outside the step's grants is refused with a typed `denied` error naming the missing
//! grant, reported as an event, and never reaches the backend.

#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use kmsflow::capabilities::CapabilityError;
use kmsflow::wit::{aks, keyvault, types::Param, types::Value};
use kmsflow::{Authorized, CloudBackend, Event, Grant, Grants, ResourceId, StepLimits, StepRun, Target};
use kmsflow_tests::{output, runtime, test_plugin, Recorder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1";

/// Counts the calls that reached it; answers `get-cluster` with a minimal cluster.
#[derive(Default)]
struct Counting {
    get_vault: AtomicUsize,
    get_cluster: AtomicUsize,
}

#[async_trait]
impl CloudBackend for Counting {
    async fn get_vault(&self, _: &Authorized, _: &ResourceId) -> Result<keyvault::Vault, CapabilityError> {
        self.get_vault.fetch_add(1, Ordering::SeqCst);
        Err(CapabilityError::guest(
            kmsflow::wit::types::ErrorKind::Internal,
            "",
            "must not be reached",
        ))
    }

    async fn get_cluster(&self, auth: &Authorized, id: &ResourceId) -> Result<aks::Cluster, CapabilityError> {
        self.get_cluster.fetch_add(1, Ordering::SeqCst);
        assert_eq!(auth.call(), "aks.get-cluster");
        Ok(aks::Cluster {
            id: id.to_string(),
            name: "aks1".into(),
            location: "westeurope".into(),
            kubernetes_version: "1.30".into(),
            current_kubernetes_version: "1.30.3".into(),
            provisioning_state: "Succeeded".into(),
            identity_type: "UserAssigned".into(),
            user_assigned_identity: None,
            vnet_integration: true,
            kms: None,
            tenant_id: String::new(),
        })
    }
}

fn text(v: &str) -> Value {
    Value::Text(v.to_string())
}

/// Runs `test-deny` with read on `RG` only, against a counting backend.
async fn probe(outside: &str, inside: &str) -> (Vec<Param>, Arc<Counting>, Recorder) {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-deny").await;
    let backend = Arc::new(Counting::default());
    let target = Target::new("counting", backend.clone());
    let recorder = Recorder::default();
    let step = StepRun {
        id: "probe".into(),
        params: vec![
            Param {
                name: "outside".into(),
                value: text(outside),
            },
            Param {
                name: "inside".into(),
                value: text(inside),
            },
        ],
        grants: Grants::new(vec![Grant::new(RG, &["read"]).unwrap()]),
        limits: StepLimits::default(),
    };
    let report = rt.run_step(&plugin, step, &target, &recorder.options()).await;
    (
        report.outcome.expect("the plugin handles the errors"),
        backend,
        recorder,
    )
}

#[tokio::test]
async fn a_call_outside_the_grants_never_reaches_the_backend() {
    let outside = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg2/providers/Microsoft.KeyVault/vaults/kv2";
    let inside = format!("{RG}/providers/Microsoft.ContainerService/managedClusters/aks1");
    let (outputs, backend, recorder) = probe(outside, &inside).await;

    assert_eq!(output(&outputs, "denied_kind"), Some(text("denied")));
    assert_eq!(output(&outputs, "denied_code"), Some(text("GrantMissing")));
    let Some(Value::Text(message)) = output(&outputs, "denied_message") else {
        panic!("no message")
    };
    assert!(
        message.contains("keyvault.get-vault needs the `read` grant on"),
        "{message}"
    );
    assert!(message.contains(outside), "{message}");
    assert_eq!(output(&outputs, "allowed"), Some(text("ok:aks1")));

    assert_eq!(
        backend.get_vault.load(Ordering::SeqCst),
        0,
        "the denied call reached the backend"
    );
    assert_eq!(backend.get_cluster.load(Ordering::SeqCst), 1);
    let denials: Vec<_> = recorder
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::CallDenied { .. }))
        .collect();
    assert_eq!(
        denials,
        vec![Event::CallDenied {
            step: "probe".into(),
            call: "keyvault.get-vault".into(),
            action: "read".into(),
            resource: outside.into(),
        }]
    );
}

#[tokio::test]
async fn a_path_that_climbs_out_of_the_scope_is_refused_before_the_backend() {
    let outside = format!("{RG}/../rg2/providers/Microsoft.KeyVault/vaults/kv2");
    let inside = format!("{RG}/../rg2/providers/Microsoft.ContainerService/managedClusters/aks1");
    let (outputs, backend, _) = probe(&outside, &inside).await;
    assert_eq!(output(&outputs, "denied_kind"), Some(text("invalid")));
    assert_eq!(output(&outputs, "allowed"), Some(text("invalid:InvalidResourceId")));
    assert_eq!(
        backend.get_vault.load(Ordering::SeqCst) + backend.get_cluster.load(Ordering::SeqCst),
        0
    );
}
