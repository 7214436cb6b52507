//! The `kubernetes` capability through the WIT contract: the `kube` client built from the cluster's
//! admin credential, over HTTPS to the local cloud's API server, and the rewrite engine over
//! 10,000 secrets with another client editing some of them meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{public_kms, start, Cloud, KmsSetup};
use kmsflow::wit::types::{Param, Value};
use kmsflow::{Event, Grant, Grants, Plugin, StepLimits, StepRun, Target, TargetSettings};
use kmsflow_tests::{output, runtime, test_plugin, Recorder};
use reqwest::{Method, StatusCode};
use std::sync::Arc;

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn param(name: &str, value: Value) -> Param {
    Param {
        name: name.into(),
        value,
    }
}

fn out_text(outputs: &[Param], name: &str) -> String {
    match output(outputs, name) {
        Some(Value::Text(t)) => t,
        other => panic!("output {name}: {other:?}"),
    }
}

/// A KMS v2 cluster `name` in rg1 with `secrets` seeded secrets across `namespaces`.
async fn kms_cluster(c: &Cloud, name: &str, secrets: usize, namespaces: usize) -> KmsSetup {
    let s = c.kms_setup(&format!("kv-{name}")).await;
    c.kms_cluster(&s, name, "1.30", Some(public_kms(&s.key_id))).await;
    if secrets > 0 {
        c.seed_secrets(name, secrets, namespaces).await;
    }
    s
}

async fn target(c: &Cloud) -> Target {
    Target::local_with(c.dir.path(), &TargetSettings::default())
        .await
        .unwrap()
}

fn step(id: &str, mut params: Vec<Param>, grants: Grants) -> StepRun {
    for (name, default) in [("state", "1"), ("stale-version", "")] {
        if id == "kube" && !params.iter().any(|p| p.name == name) {
            params.push(param(name, text(default)));
        }
    }
    StepRun {
        id: id.into(),
        params,
        grants,
        limits: StepLimits::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubernetes_call_succeeds_or_maps_its_error() {
    let c = start().await;
    kms_cluster(&c, "aks1", 25, 3).await;
    let cluster = c.cluster_id("aks1");
    let target = target(&c).await;
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-kube").await;
    let rg = c.rg_id("rg1");
    // read + kms, but not secrets.rewrite: the rewrite is refused by the policy point.
    let grants = Grants::new(vec![Grant::new(&rg, &["read", "kms"]).unwrap()]);
    let recorder = Recorder::default();
    let run = |stale: &str| {
        step(
            "kube",
            vec![
                param("cluster", text(&cluster)),
                param("state", text("1")),
                param("stale-version", text(stale)),
            ],
            grants.clone(),
        )
    };
    let outputs = rt
        .run_step(&plugin, run("1"), &target, &recorder.options())
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out_text(&outputs, "count"), "ok:25");
    assert_eq!(
        out_text(&outputs, "pods"),
        "ok:0",
        "VNet-integrated: no konnectivity-agent"
    );
    assert_eq!(out_text(&outputs, "before"), "ok:none");
    assert!(out_text(&outputs, "put").starts_with("ok:"));
    assert_eq!(
        out_text(&outputs, "conditional"),
        "precondition:Conflict",
        "a write with an old resourceVersion fails"
    );
    assert_eq!(out_text(&outputs, "after"), "ok:rotation=1");
    assert_eq!(out_text(&outputs, "rewrite"), "denied:GrantMissing");
    assert!(recorder.events().iter().any(|e| matches!(e,
        Event::CallDenied { call, .. } if call == "kubernetes.rewrite-secrets-page")));

    // The state ConfigMap is on the cluster, where the test's own client reads it.
    let kube = c.kube("aks1").await;
    let (status, cm) = kube
        .request(
            Method::GET,
            "/api/v1/namespaces/kube-system/configmaps/kmsflow-kms-state",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cm["data"]["rotation"], "1");
    assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kmsflow");
    let rv = cm["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    // A second run: the map exists, the conditional write with its current version succeeds.
    let again = rt
        .run_step(&plugin, run(&rv), &target, &recorder.options())
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out_text(&again, "before"), format!("ok:{rv}"));
    assert!(out_text(&again, "conditional").starts_with("ok:"));

    // A cluster without VNet integration runs konnectivity-agent pods.
    let (status, body) = c
        .admin(
            Method::POST,
            "/_admin/clusters",
            Some(serde_json::json!({"resource_group": "rg1", "name": "aks-konn", "kubernetes_version": "1.30"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let konn = rt
        .run_step(
            &plugin,
            step(
                "kube",
                vec![param("cluster", text(&c.cluster_id("aks-konn")))],
                grants.clone(),
            ),
            &target,
            &recorder.options(),
        )
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out_text(&konn, "pods"), "ok:2");

    // A cluster that does not exist: ARM's 404 while fetching the admin credential.
    let missing = rt
        .run_step(
            &plugin,
            step(
                "kube",
                vec![param("cluster", text(&c.cluster_id("nope")))],
                grants.clone(),
            ),
            &target,
            &recorder.options(),
        )
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out_text(&missing, "count"), "not-found:ResourceNotFound");
    // Outside the grants: nothing is sent.
    let before = c.cloud_requests().await;
    let other_rg = format!("/subscriptions/{}/resourceGroups/other", c.sub());
    let denied = rt
        .run_step(
            &plugin,
            step(
                "kube",
                vec![param(
                    "cluster",
                    text(&format!(
                        "{other_rg}/providers/Microsoft.ContainerService/managedClusters/x"
                    )),
                )],
                grants,
            ),
            &target,
            &recorder.options(),
        )
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out_text(&denied, "count"), "denied:GrantMissing");
    let after = c.cloud_requests().await;
    assert_eq!(before, after, "a denied call sends no request");
}

/// Rotates the cluster's key to a new version, so that every secret becomes stale.
async fn rotate(c: &Cloud, s: &KmsSetup, name: &str) -> String {
    let vault = s.vault.rsplit('/').next().unwrap().to_string();
    let (status, body) = c
        .kv(
            Method::POST,
            &vault,
            "/keys/etcd/create",
            Some(serde_json::json!({"kty": "RSA", "key_size": 2048})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key_id = body["key"]["kid"].as_str().unwrap().to_string();
    let doc = c.set_kms(name, public_kms(&key_id)).await;
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded", "{doc}");
    key_id
}

async fn rewrite_plugin(rt: &kmsflow::Runtime) -> Arc<Plugin> {
    rt.builtin("rewrite-secrets").await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_of_10000_secrets_reads_no_data_and_loses_no_concurrent_edit() {
    let c = start().await;
    let s = kms_cluster(&c, "big", 10_000, 50).await;
    rotate(&c, &s, "big").await;
    let before = c.inspect("big").await;
    assert_eq!(before["summary"]["stale"], 10_000, "{}", before["summary"]);
    let seq_before = c.admin(Method::GET, "/_admin/requests", None).await.1["value"]
        .as_array()
        .unwrap()
        .last()
        .map(|r| r["seq"].as_i64().unwrap())
        .unwrap_or(0);

    let target = target(&c).await;
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = rewrite_plugin(&rt).await;
    let cluster = c.cluster_id("big");
    let grants = Grants::new(vec![Grant::new(&cluster, &["read", "secrets.rewrite"]).unwrap()]);
    let rewrite = step(
        "rewrite",
        vec![
            param("cluster", text(&cluster)),
            param("page-size", Value::Integer(500)),
        ],
        grants,
    );

    // Another client edits 200 secrets while the rewrite runs (a merge patch of one new key,
    // answered as metadata only, so it reads no data either).
    let kube = c.kube("big").await;
    let editor = tokio::spawn(async move {
        let mut edited = Vec::new();
        for i in (0..10_000).step_by(50).take(200) {
            let (ns, name) = (format!("seed-{}", i % 50), format!("secret-{i:06}"));
            let url = format!("{}/api/v1/namespaces/{ns}/secrets/{name}", kube.server);
            let resp = kube
                .http
                .patch(url)
                .header("content-type", "application/merge-patch+json")
                .header("accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
                .body(serde_json::json!({"data": {"edited": "eWVz"}}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
            edited.push((ns, name));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        (kube, edited)
    });
    let started = std::time::Instant::now();
    let report = rt
        .run_step(&plugin, rewrite, &target, &Recorder::default().options())
        .await;
    let took = started.elapsed();
    let outputs = report.outcome.unwrap_or_else(|e| panic!("{e}"));
    let (kube, edited) = editor.await.unwrap();

    let int = |name: &str| match output(&outputs, name) {
        Some(Value::Integer(n)) => n,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(int("listed"), 10_000);
    assert_eq!(int("gone"), 0);
    assert_eq!(int("rewritten") + int("conflicts"), 10_000);
    eprintln!(
        "rewrite of 10,000 secrets: {took:?}, {} rewritten, {} conflicts with the concurrent editor",
        int("rewritten"),
        int("conflicts")
    );

    let after = c.inspect("big").await;
    assert_eq!(after["summary"]["current"], 10_000, "{}", after["summary"]);
    assert_eq!(after["summary"]["stale"], 0);

    // No request during the rewrite — list, patch, anything — answered with secret data.
    let (_, log) = c
        .admin(Method::GET, &format!("/_admin/requests?after={seq_before}"), None)
        .await;
    let log = log["value"].as_array().unwrap();
    let k8s: Vec<_> = log
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/k8s/"))
        .collect();
    assert!(
        k8s.len() > 10_000,
        "a list per page and a patch per secret: {}",
        k8s.len()
    );
    assert!(
        k8s.iter().all(|r| r["secret_data"] == false),
        "no response carried secret data"
    );
    assert!(k8s
        .iter()
        .any(|r| r["method"] == "GET" && r["query"].as_str().unwrap().contains("continue=")));

    // Every concurrent edit survived the rewrite.
    for (ns, name) in &edited {
        let (status, secret) = kube
            .request(Method::GET, &format!("/api/v1/namespaces/{ns}/secrets/{name}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(secret["data"]["edited"], "eWVz", "{ns}/{name} lost its edit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_capability_calls_survive_throttling_5xx_and_dropped_connections() {
    use kmsflow::journal::{Journal, JournalHooks, Record};
    let c = start().await;
    let s = kms_cluster(&c, "faulty", 12, 2).await;
    let settings = TargetSettings {
        retry: kmsflow::cloud::RetryPolicy {
            max_attempts: 12,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(200),
            deadline: std::time::Duration::from_secs(60),
        },
        ..TargetSettings::default()
    };
    let target = Target::local_with(c.dir.path(), &settings).await.unwrap();
    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/faults",
            Some(
                serde_json::json!({"seed": 42, "throttle_percent": 20, "retry_after_s": 0,
                "error_percent": 5, "drop_percent": 5}),
            ),
        )
        .await;
    assert!(status.is_success(), "{body}");

    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-many-calls").await;
    let journal_path = cache.path().join("runs/r1/journal.ndjson");
    let hooks = JournalHooks::new(Arc::new(Journal::open(&journal_path).unwrap()));
    let options = kmsflow::RunOptions {
        run_id: "r1".into(),
        events: hooks.events(kmsflow::events::discard()),
        hooks: Arc::new(hooks),
        resume: None,
    };
    let cluster = c.cluster_id("faulty");
    let grants = Grants::new(vec![Grant::new(&c.rg_id("rg1"), &["read", "kms"]).unwrap()]);
    let run = step(
        "many",
        vec![
            param("calls", Value::Integer(200)),
            param("cluster", text(&cluster)),
            param("vault", text(&s.vault)),
            param("secrets", Value::Integer(12)),
        ],
        grants,
    );
    let outputs = rt
        .run_step(&plugin, run, &target, &options)
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output(&outputs, "checked"), Some(Value::Integer(200)));

    let records = Journal::read(&journal_path).unwrap();
    let calls: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Call {
                ok,
                retries,
                retry_reasons,
                requests,
                ..
            } => Some((*ok, *retries, retry_reasons.clone(), *requests)),
            _ => None,
        })
        .collect();
    // 40 rounds of five: four single calls and a put+get pair.
    assert_eq!(calls.len(), 240);
    assert!(calls.iter().all(|(ok, ..)| *ok), "every call completed");
    let retries: u32 = calls.iter().map(|(_, r, ..)| r).sum();
    assert!(retries >= 40, "with 30 % faults the journal shows retries: {retries}");
    eprintln!("240 calls, {retries} retries: {:?}", reasons_summary(&calls));
    fn reasons_summary(calls: &[(bool, u32, Vec<String>, u32)]) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for r in calls.iter().flat_map(|c| c.2.iter()) {
            *m.entry(r.clone()).or_insert(0) += 1;
        }
        m
    }
    let reasons: Vec<String> = calls.iter().flat_map(|(_, _, reasons, _)| reasons.clone()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("429")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("50")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "connection failed"), "{reasons:?}");
    assert!(calls.iter().all(|(_, r, _, requests)| requests > r));
}

/// A cluster with Entra integration and `disableLocalAccounts` refuses the admin credential; the
/// host reaches its API server with an Entra token for the AKS server application, which it
/// obtains itself (no kubelogin), and the credential request never happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_local_accounts_is_reached_with_entra_tokens() {
    let c = start().await;
    let (status, seeded) = c
        .admin(
            Method::POST,
            "/_admin/clusters",
            Some(
                serde_json::json!({"resource_group": "rg1", "name": "aks-entra", "kubernetes_version": "1.30",
                "identity": "UserAssigned", "disable_local_accounts": true}),
            ),
        )
        .await;
    assert!(status.is_success(), "{seeded}");
    c.seed_secrets("aks-entra", 7, 1).await;
    let cluster = c.cluster_id("aks-entra");
    let target = target(&c).await;
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-hostile").await;
    let (_, before) = c.admin(Method::GET, "/_admin/requests", None).await;
    let after = before["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["seq"].as_i64())
        .max()
        .unwrap_or(0);
    let step = StepRun {
        id: "count".into(),
        params: vec![
            param("mode", text("kube-count")),
            param("targets", Value::TextList(vec![cluster.clone()])),
        ],
        grants: Grants::new(vec![Grant::new(&cluster, &["read"]).unwrap()]),
        limits: StepLimits::default(),
    };
    let outputs = rt
        .run_step(&plugin, step, &target, &Recorder::default().options())
        .await
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out_text(&outputs, "results"), "ok:7");
    let (_, log) = c
        .admin(Method::GET, &format!("/_admin/requests?after={after}"), None)
        .await;
    let paths: Vec<String> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_ascii_lowercase())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("/listclusterusercredential")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("/listclusteradmincredential")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("/k8s/")),
        "the API server was reached: {paths:?}"
    );
}
