//! The shipped pipelines (`workflows/*.toml`) with the built-in plugins, from the states the AKS
//! procedure starts from, ending in the at-rest state it promises — asserted by inspecting every
//! secret in the local cloud — and every preflight refusal with its message and no write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{start, Cloud};
use kmsflow::journal::{Journal, JournalHooks};
use kmsflow::{Pipeline, RunOptions, RunReport, Runtime, Target, VarInputs};
use kmsflow_tests::runtime;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

struct Env {
    c: Cloud,
    target: Target,
    rt: Runtime,
    _cache: tempfile::TempDir,
    runs: tempfile::TempDir,
}

async fn env() -> Env {
    let c = start().await;
    // Azure on an ordinary day, briefly: operations answered in ARM's three shapes in turn, a new
    // vault provisioning for a second, role assignments taking effect after a second.
    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/settings",
            Some(json!({"lro_shape": "rotate", "vault_provisioning_ms": 1000, "rbac_propagation_ms": 1000})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    c.resource_group("rg1").await;
    let target = Target::local(c.dir.path()).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    Env {
        c,
        target,
        rt,
        _cache: cache,
        runs: tempfile::tempdir().unwrap(),
    }
}

fn workflow(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows")
        .join(name)
}

impl Env {
    fn rg(&self) -> String {
        self.c.rg_id("rg1")
    }

    /// Role assignments take effect `ms` after they are made, as on Azure (seconds to minutes).
    async fn propagation(&self, ms: u64) {
        let (status, _) = self
            .c
            .admin(
                Method::PUT,
                "/_admin/settings",
                Some(json!({"rbac_propagation_ms": ms})),
            )
            .await;
        assert!(status.is_success(), "{status}");
    }

    /// How many calls of the run in `report` waited for a role assignment to take effect,
    /// from its journal.
    fn propagation_waits(&self, report: &RunReport) -> usize {
        let journal = self.runs.path().join(&report.run_id).join("journal.ndjson");
        std::fs::read_to_string(journal)
            .unwrap()
            .matches("waiting for a role assignment to take effect")
            .count()
    }

    /// Runs `workflows/NAME` with `--set` values, journaled like the CLI does.
    async fn run(&self, name: &str, sets: &[(&str, &str)]) -> RunReport {
        let inputs = VarInputs {
            set: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..VarInputs::default()
        };
        let pipeline = Pipeline::load(&workflow(name), &inputs).unwrap_or_else(|e| panic!("{e}"));
        let run_id = kmsflow::new_run_id();
        let journal = Journal::open(&self.runs.path().join(&run_id).join("journal.ndjson")).unwrap();
        let hooks = JournalHooks::new(Arc::new(journal));
        let options = RunOptions {
            run_id,
            events: hooks.events(kmsflow::events::discard()),
            hooks: Arc::new(hooks),
            resume: None,
        };
        self.rt
            .run(&pipeline, &self.target, &options)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Seeds cluster `name` in rg1 directly (an existing cluster, as the procedure starts from).
    async fn cluster(&self, name: &str, version: &str, vnet: bool, identity: &str) -> String {
        let (status, body) = self
            .c
            .admin(
                Method::POST,
                "/_admin/clusters",
                Some(
                    json!({"resource_group": "rg1", "name": name, "kubernetes_version": version,
                    "vnet_integration": vnet, "identity": identity}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.c.cluster_id(name)
    }

    /// Every secret's (format, key version), and the summary.
    async fn at_rest(&self, name: &str) -> (Value, Vec<(String, String)>) {
        let inspect = self.c.inspect(name).await;
        let items = inspect["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["at_rest"].as_str().unwrap().to_string(),
                    s["key_version"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect();
        (inspect["summary"].clone(), items)
    }

    /// Requests after `seq` that could change something (not GETs, tokens or credential reads).
    async fn writes_since(&self, seq: i64) -> Vec<String> {
        let (_, log) = self
            .c
            .admin(Method::GET, &format!("/_admin/requests?after={seq}"), None)
            .await;
        log["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                let path = r["path"].as_str().unwrap();
                r["method"] != "GET"
                    && !path.starts_with("/_admin")
                    && !path.contains("/oauth2/")
                    && !path.ends_with("/listClusterAdminCredential")
            })
            .map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap()))
            .collect()
    }

    async fn last_seq(&self) -> i64 {
        let (_, log) = self.c.admin(Method::GET, "/_admin/requests", None).await;
        log["value"]
            .as_array()
            .unwrap()
            .last()
            .map(|r| r["seq"].as_i64().unwrap())
            .unwrap_or(0)
    }

    async fn nothing_deleted(&self) {
        let (_, log) = self.c.admin(Method::GET, "/_admin/requests", None).await;
        assert!(
            log["value"].as_array().unwrap().iter().all(|r| r["method"] != "DELETE"),
            "nothing is ever deleted"
        );
    }

    async fn key_versions(&self, vault: &str) -> Vec<Value> {
        let (_, keys) = self.c.admin(Method::GET, &format!("/_admin/keys/{vault}"), None).await;
        keys["value"].as_array().unwrap().clone()
    }
}

fn output(report: &RunReport, step: &str, name: &str) -> kmsflow::wit::types::Value {
    let s = report
        .steps
        .iter()
        .find(|s| s.id == step)
        .unwrap_or_else(|| panic!("no step {step}"));
    let outputs = s.outcome.as_ref().unwrap_or_else(|e| panic!("{step}: {e}"));
    outputs.iter().find(|p| p.name == name).unwrap().value.clone()
}

fn text(v: kmsflow::wit::types::Value) -> String {
    match v {
        kmsflow::wit::types::Value::Text(t) => t,
        other => panic!("{other:?}"),
    }
}

fn succeeded(report: &RunReport) {
    if let Some(f) = report.failure() {
        panic!("step {} failed: {}", f.id, f.outcome.as_ref().err().unwrap());
    }
}

fn failure(report: &RunReport) -> String {
    report
        .failure()
        .expect("the run fails")
        .outcome
        .as_ref()
        .err()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_rotate_twice_and_disable_an_existing_cluster() {
    let e = env().await;
    let cluster = e.cluster("aks1", "1.30", false, "UserAssigned").await;
    e.c.seed_secrets("aks1", 40, 4).await;
    let rg = e.rg();
    let base = [
        ("resource-group", rg.as_str()),
        ("cluster", cluster.as_str()),
        ("vault-name", "kv-wf1"),
    ];

    let r = e.run("enable-public.toml", &base).await;
    succeeded(&r);
    let key = text(output(&r, "enable", "key-id"));
    let version1 = key.rsplit('/').next().unwrap().to_string();
    let (summary, items) = e.at_rest("aks1").await;
    assert_eq!(summary["current"], 40, "{summary}");
    assert!(items.iter().all(|(f, v)| f == "kms-v2" && *v == version1), "{items:?}");

    let r = e.run("rotate.toml", &base).await;
    succeeded(&r);
    let rotated = text(output(&r, "rotate", "key-id"));
    let version2 = rotated.rsplit('/').next().unwrap().to_string();
    assert_ne!(version1, version2);
    let (summary, items) = e.at_rest("aks1").await;
    assert_eq!(summary["current"], 40);
    assert!(
        items.iter().all(|(f, v)| f == "kms-v2" && *v == version2),
        "every secret under the new version"
    );

    let mut retire = base.to_vec();
    retire.push(("retire-previous", "true"));
    let r = e.run("rotate.toml", &retire).await;
    succeeded(&r);
    let version3 = text(output(&r, "rotate", "key-id"))
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let versions = e.key_versions("kv-wf1").await;
    assert_eq!(versions.len(), 3, "one new version per rotation");
    let enabled = |v: &str| {
        versions
            .iter()
            .find(|k| k["key"]["kid"].as_str().unwrap().ends_with(v))
            .map(|k| k["attributes"]["enabled"] == true)
            .unwrap()
    };
    assert!(
        !enabled(&version1),
        "two rotations old: retired (disabled, not deleted)"
    );
    assert!(enabled(&version2) && enabled(&version3));
    let (_, items) = e.at_rest("aks1").await;
    assert!(items.iter().all(|(_, v)| *v == version3));

    let r = e.run("disable.toml", &[("cluster", cluster.as_str())]).await;
    succeeded(&r);
    let (summary, items) = e.at_rest("aks1").await;
    assert_eq!(summary["plain"], 40, "{summary}");
    assert!(items.iter().all(|(f, _)| f == "plain"));
    e.nothing_deleted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_public_rbac_creates_a_new_cluster_with_kms() {
    let e = env().await;
    // Crypto Officer for the operator is assigned right before the key is created, Crypto User
    // for the identity right before KMS is turned on: both wait out the propagation.
    e.propagation(2000).await;
    let rg = e.rg();
    let cluster = e.c.cluster_id("aks-new");
    let r = e
        .run(
            "enable-public-rbac.toml",
            &[
                ("resource-group", &rg),
                ("cluster", &cluster),
                ("vault-name", "kv-rbac1"),
            ],
        )
        .await;
    succeeded(&r);
    assert_eq!(
        output(&r, "enable", "access"),
        kmsflow::wit::types::Value::Text("role-assignment".into())
    );
    assert_eq!(output(&r, "enable", "created"), kmsflow::wit::types::Value::Flag(true));
    assert!(e.propagation_waits(&r) >= 2, "the run waited for both assignments");
    let (_, doc) = e.c.arm(Method::GET, &cluster, None).await;
    assert_eq!(
        doc["properties"]["securityProfile"]["azureKeyVaultKms"]["enabled"],
        true
    );
    let (_, vault) =
        e.c.arm(
            Method::GET,
            &format!("{rg}/providers/Microsoft.KeyVault/vaults/kv-rbac1"),
            None,
        )
        .await;
    assert_eq!(vault["properties"]["enableRbacAuthorization"], true);
    let (_, assignments) =
        e.c.admin(
            Method::GET,
            "/_admin/resources?type=Microsoft.Authorization/roleAssignments",
            None,
        )
        .await;
    let roles: Vec<String> = assignments["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["properties"]["roleDefinitionId"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    // Crypto Officer for the operator, Crypto User for the identity.
    assert!(
        roles.contains(&"14b46e9e-c2b7-41b4-b07b-48a6ebf60603".to_string()),
        "{roles:?}"
    );
    assert!(
        roles.contains(&"12338af0-0e69-4776-bea7-57ae8d297424".to_string()),
        "{roles:?}"
    );
    // Secrets written after the fact are encrypted too.
    e.c.seed_secrets("aks-new", 10, 2).await;
    let (summary, items) = e.at_rest("aks-new").await;
    assert_eq!(summary["current"], 10);
    assert!(items.iter().all(|(f, _)| f == "kms-v2"));
    e.nothing_deleted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_private_then_switch_to_public_and_back() {
    let e = env().await;
    // Key Vault Contributor for the identity is assigned right before KMS goes private.
    e.propagation(2000).await;
    let rg = e.rg();
    let cluster = e.cluster("aks-vnet", "1.30", true, "UserAssigned").await;
    e.c.seed_secrets("aks-vnet", 30, 3).await;
    let vars = [
        ("resource-group", rg.as_str()),
        ("cluster", cluster.as_str()),
        ("vault-name", "kv-priv1"),
    ];
    let r = e.run("enable-private.toml", &vars).await;
    succeeded(&r);
    assert!(e.propagation_waits(&r) >= 1, "the run waited for Key Vault Contributor");
    let vault_id = format!("{rg}/providers/Microsoft.KeyVault/vaults/kv-priv1");
    let (_, vault) = e.c.arm(Method::GET, &vault_id, None).await;
    assert_eq!(
        vault["properties"]["publicNetworkAccess"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        "disabled"
    );
    let (_, doc) = e.c.arm(Method::GET, &cluster, None).await;
    let kms = &doc["properties"]["securityProfile"]["azureKeyVaultKms"];
    assert_eq!(kms["keyVaultNetworkAccess"], "Private");
    assert_eq!(
        kms["keyVaultResourceId"].as_str().unwrap().to_ascii_lowercase(),
        vault_id.to_ascii_lowercase()
    );
    let (summary, _) = e.at_rest("aks-vnet").await;
    assert_eq!(summary["current"], 30, "{summary}");
    assert_eq!(summary["plain"], 0);

    // `plain-seconds` is the wall-clock time (whole Unix seconds) from `prepare` recording KMS off
    // to `apply` seeing KMS on again. Each of the two cluster updates between those instants takes
    // at least the operation duration, and both instants fall inside the run this test times.
    let (_, settings) = e.c.admin(Method::GET, "/_admin/settings", None).await;
    e.c.settings(json!({"operation_duration_ms": 1500})).await;
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let started = unix_now();
    let r = e.run("switch-to-public.toml", &vars).await;
    let finished = unix_now();
    succeeded(&r);
    let kmsflow::wit::types::Value::Integer(plain) = output(&r, "apply", "plain-seconds") else {
        panic!("plain-seconds is an integer")
    };
    assert!(
        (3..=finished - started).contains(&plain),
        "plain for {plain} s: at least the two 1.5 s cluster updates, at most the {} s the run took",
        finished - started
    );
    e.c.settings(json!({"operation_duration_ms": settings["operation_duration_ms"]}))
        .await;
    let (_, doc) = e.c.arm(Method::GET, &cluster, None).await;
    assert_eq!(
        doc["properties"]["securityProfile"]["azureKeyVaultKms"]["keyVaultNetworkAccess"],
        "Public"
    );
    let (summary, items) = e.at_rest("aks-vnet").await;
    assert_eq!(summary["current"], 30);
    assert!(items.iter().all(|(f, _)| f == "kms-v2"));

    let r = e.run("switch-to-private.toml", &vars).await;
    succeeded(&r);
    let (_, doc) = e.c.arm(Method::GET, &cluster, None).await;
    assert_eq!(
        doc["properties"]["securityProfile"]["azureKeyVaultKms"]["keyVaultNetworkAccess"],
        "Private"
    );
    let (summary, _) = e.at_rest("aks-vnet").await;
    assert_eq!(summary["current"], 30);
    assert_eq!(summary["plain"], 0);
    e.nothing_deleted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_v2_moves_a_kms_v1_cluster_and_is_a_no_op_on_v2() {
    let e = env().await;
    let rg = e.rg();
    let cluster = e.cluster("aks-old", "1.25", false, "UserAssigned").await;
    e.c.seed_secrets("aks-old", 25, 3).await;
    let r = e
        .run(
            "enable-public.toml",
            &[
                ("resource-group", &rg),
                ("cluster", &cluster),
                ("vault-name", "kv-mig1"),
            ],
        )
        .await;
    succeeded(&r);
    let (_, items) = e.at_rest("aks-old").await;
    assert!(items.iter().all(|(f, _)| f == "kms-v1"), "{items:?}");

    let r = e
        .run("migrate-v2.toml", &[("cluster", &cluster), ("target-version", "1.27")])
        .await;
    succeeded(&r);
    let (_, doc) = e.c.arm(Method::GET, &cluster, None).await;
    assert_eq!(
        doc["properties"]["currentKubernetesVersion"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1),
        Some("27")
    );
    let (summary, items) = e.at_rest("aks-old").await;
    assert_eq!(summary["current"], 25, "{summary}");
    assert!(items.iter().all(|(f, _)| f == "kms-v2"), "{items:?}");
    assert_eq!(
        output(&r, "upgrade", "upgrades"),
        kmsflow::wit::types::Value::Integer(2)
    );

    // Already on KMS v2: the prepare phase says so and every other step is skipped.
    let before = e.last_seq().await;
    let r = e.run("migrate-v2.toml", &[("cluster", &cluster)]).await;
    succeeded(&r);
    assert_eq!(output(&r, "prepare", "needed"), kmsflow::wit::types::Value::Flag(false));
    assert!(
        r.steps
            .iter()
            .filter(|s| s.status == kmsflow::StepStatus::Skipped)
            .count()
            >= 4
    );
    assert!(e.writes_since(before).await.is_empty(), "a no-op changes nothing");
    e.nothing_deleted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_cluster_with_its_kms_state() {
    let e = env().await;
    let rg = e.rg();
    let on = e.cluster("aks-on", "1.30", false, "UserAssigned").await;
    e.cluster("aks-off", "1.26", false, "UserAssigned").await;
    succeeded(
        &e.run(
            "enable-public.toml",
            &[("resource-group", &rg), ("cluster", &on), ("vault-name", "kv-st1")],
        )
        .await,
    );
    let sub = format!("/subscriptions/{}", e.c.sub());
    let r = e.run("status.toml", &[("subscription", &sub)]).await;
    succeeded(&r);
    assert_eq!(output(&r, "status", "clusters"), kmsflow::wit::types::Value::Integer(2));
    assert_eq!(output(&r, "status", "kms-on"), kmsflow::wit::types::Value::Integer(1));
    let table = text(output(&r, "status", "table"));
    let line = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap().to_string();
    assert!(
        line("aks-on").contains(" on ") && line("aks-on").contains("Public") && line("aks-on").contains("v2"),
        "{table}"
    );
    assert!(
        line("aks-off").contains(" off ") && line("aks-off").contains("v1"),
        "{table}"
    );
}

/// Runs enable-public expecting a refusal: its message, and the writes it made (none, we hope).
async fn enable_refusal(e: &Env, cluster: String, vault: &str) -> (String, Vec<String>) {
    let before = e.last_seq().await;
    let rg = e.rg();
    let r = e
        .run(
            "enable-public.toml",
            &[("resource-group", &rg), ("cluster", &cluster), ("vault-name", vault)],
        )
        .await;
    let writes = e.writes_since(before).await;
    (failure(&r), writes)
}

/// Each preflight refusal: the message names the problem and the fix, and nothing was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preflight_refusal_names_the_fix_and_writes_nothing() {
    let e = env().await;
    let rg = e.rg();

    // A system-assigned control plane identity.
    let sys = e.cluster("aks-sys", "1.30", false, "SystemAssigned").await;
    let (msg, writes) = enable_refusal(&e, sys, "kv-ref1").await;
    assert!(
        msg.contains("SystemAssignedIdentity") && msg.contains("--assign-identity"),
        "{msg}"
    );
    assert!(writes.is_empty(), "{writes:?}");

    let cluster = e.cluster("aks-ref", "1.30", false, "UserAssigned").await;
    // A vault in another tenant.
    let other_tenant =
        e.c.vault(
            "rg1",
            "kv-ref-tenant",
            false,
            json!({"tenantId": "11111111-2222-3333-4444-555555555555"}),
        )
        .await;
    assert!(other_tenant.ends_with("kv-ref-tenant"));
    let (msg, writes) = enable_refusal(&e, cluster.clone(), "kv-ref-tenant").await;
    assert!(msg.contains("CrossTenantVault") && msg.contains("one tenant"), "{msg}");
    assert!(writes.is_empty(), "{writes:?}");

    // A firewall-restricted vault in Public mode.
    e.c.vault(
        "rg1",
        "kv-ref-fw",
        false,
        json!({"networkAcls": {"defaultAction": "Deny", "bypass": "None"}}),
    )
    .await;
    let (msg, writes) = enable_refusal(&e, cluster.clone(), "kv-ref-fw").await;
    assert!(
        msg.contains("VaultFirewallRestricted") && msg.contains("enable-private"),
        "{msg}"
    );
    assert!(writes.is_empty(), "{writes:?}");

    // An EC key under the requested name.
    let ec_vault = e.c.vault("rg1", "kv-ref-ec", false, json!({})).await;
    e.c.operator_policy(&ec_vault, &["create", "get", "list"]).await;
    e.c.key("kv-ref-ec", "kms-key", "EC").await;
    let (msg, writes) = enable_refusal(&e, cluster.clone(), "kv-ref-ec").await;
    assert!(msg.contains("KeyNotRsa") && msg.contains("RSA"), "{msg}");
    assert!(writes.is_empty(), "{writes:?}");

    // KMS v1 over the 2,000-secret limit (2,000 itself is allowed: see the boundary test).
    let v1 = e.cluster("aks-full", "1.26", false, "UserAssigned").await;
    e.c.seed_secrets("aks-full", 2001, 10).await;
    let (msg, writes) = enable_refusal(&e, v1, "kv-ref-full").await;
    assert!(
        msg.contains("KmsV1SecretLimit") && msg.contains("holds 2001 secrets") && msg.contains("1.27"),
        "{msg}"
    );
    assert!(writes.is_empty(), "{writes:?}");

    // An operation already in progress on the cluster.
    e.c.admin(
        Method::PUT,
        "/_admin/settings",
        Some(json!({"operation_duration_ms": 60_000})),
    )
    .await;
    let (_, mut doc) = e.c.arm(Method::GET, &cluster, None).await;
    doc["tags"] = json!({"busy": "yes"});
    let (status, _) = e.c.arm(Method::PUT, &cluster, Some(doc)).await;
    assert!(status.is_success());
    let (msg, writes) = enable_refusal(&e, cluster.clone(), "kv-ref-busy").await;
    assert!(
        msg.contains("OperationInProgress") && msg.contains("az aks wait"),
        "{msg}"
    );
    assert!(writes.is_empty(), "{writes:?}");
    e.c.admin(
        Method::PUT,
        "/_admin/settings",
        Some(json!({"operation_duration_ms": 0})),
    )
    .await;

    // A Konnectivity cluster cannot use a private vault.
    let konn = e.cluster("aks-konn", "1.30", false, "UserAssigned").await;
    let before = e.last_seq().await;
    let r = e
        .run(
            "enable-private.toml",
            &[
                ("resource-group", &rg),
                ("cluster", &konn),
                ("vault-name", "kv-ref-priv"),
            ],
        )
        .await;
    let msg = failure(&r);
    assert!(
        msg.contains("KonnectivityNotSupported") && msg.contains("--enable-apiserver-vnet-integration"),
        "{msg}"
    );
    assert!(e.writes_since(before).await.is_empty());

    // An unversioned key id (checked by the validate-key-id plugin, and by the host before any
    // AKS call: see errors.rs).
    let p = e.rt.builtin("validate-key-id").await.unwrap();
    let step = kmsflow::StepRun {
        id: "v".into(),
        params: vec![
            kmsflow::wit::types::Param {
                name: "key_id".into(),
                value: kmsflow::wit::types::Value::Text("https://kv1.vault.azure.net/keys/k".into()),
            },
            kmsflow::wit::types::Param {
                name: "dns_suffix".into(),
                value: kmsflow::wit::types::Value::Text("vault.azure.net".into()),
            },
        ],
        grants: kmsflow::Grants::default(),
        limits: kmsflow::StepLimits::default(),
    };
    let report = e.rt.run_step(&p, step, &e.target, &RunOptions::default()).await;
    let msg = report.outcome.unwrap_err().to_string();
    assert!(msg.contains("has no version"), "{msg}");
    e.nothing_deleted().await;
}

/// "At most 2,000 secrets with KMS v1" (the reference's §7): enable-public takes a KMS v1 cluster
/// holding exactly 2,000 secrets, and the local cloud then refuses the 2,001st.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_v1_takes_exactly_2000_secrets_and_refuses_the_2001st() {
    let e = env().await;
    let rg = e.rg();
    let cluster = e.cluster("aks-2000", "1.26", false, "UserAssigned").await;
    e.c.seed_secrets("aks-2000", 2000, 10).await;
    let r = e
        .run(
            "enable-public.toml",
            &[
                ("resource-group", &rg),
                ("cluster", &cluster),
                ("vault-name", "kv-2000"),
            ],
        )
        .await;
    succeeded(&r);
    let (summary, items) = e.at_rest("aks-2000").await;
    assert_eq!(summary["current"], 2000, "{summary}");
    assert!(items.iter().all(|(f, _)| f == "kms-v1"), "{:?}", items.first());

    let (status, body) =
        e.c.admin(
            Method::POST,
            "/_admin/seed-secrets",
            Some(json!({"cluster": cluster, "count": 1, "namespaces": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("at most 2000"), "{body}");
    let (summary, _) = e.at_rest("aks-2000").await;
    assert_eq!(summary["total"], 2000, "{summary}");
}
