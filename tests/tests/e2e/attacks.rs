//! The grant promise tried as an attacker would (issue 11): generated resource ids that mix case,
//! percent-encodings of every byte, dot segments, repeated and trailing slashes, backslashes,
//! Unicode look-alikes and over-long inputs, sent by a hostile plugin through every capability
//! that takes a resource id.
//!
//! The oracle is the local cloud's request log, not the parser: after the run, every request
//! that reached the cloud must be for a resource the step's grant covers, read the way a lenient
//! server would read its path (percent-decoded, dot segments resolved, case ignored).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{start, Cloud};
use kmsflow::wit::types::{Param, Value};
use kmsflow::{Grant, Grants, StepLimits, StepRun, Target, TargetSettings};
use kmsflow_tests::{output, runtime, test_plugin, Recorder};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::Method;

/// Generated ids per capability mode; the CI run sends `CASES * MODES.len()` of them.
const CASES: usize = 1000;
/// The capability modes of `test-hostile` that take a resource id.
const MODES: [&str; 5] = ["arm-get", "aks-get", "kube-count", "kv-get-vault", "identity-get"];

/// Pieces an attacker appends to (or splices into) a granted id.
fn piece() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "/..",
        "/.",
        "/%2e%2e",
        "/%2E%2E",
        "/.%2e",
        "/%2e.",
        "/%2e",
        "/..%2f",
        "%2f..",
        "/%252e%252e",
        "/..\\",
        "\\..",
        "\\",
        "//",
        "/",
        "/%00",
        "/%2f",
        "/%5c",
        "/%3f",
        "?",
        "#",
        ";",
        "/\u{ff0e}\u{ff0e}",
        "/\u{2025}",
        "/\u{2215}..",
        "/\u{ff0f}..",
        "/r\u{0261}2",
        "/rg2",
        "/resourceGroups/rg2",
        "/aks2",
        "/providers/Microsoft.ContainerService/managedClusters/aks2",
        "/listClusterAdminCredential",
        "/x",
        "/X",
        "/%41ks1",
        "/ ",
        "/\t",
        "/\u{0}",
    ])
    .prop_map(str::to_string);
    let encoded_byte = any::<u8>().prop_map(|b| format!("/%{b:02x}"));
    let raw_char = any::<char>().prop_map(|c| format!("/{c}"));
    prop_oneof![6 => fixed, 2 => encoded_byte, 1 => raw_char]
}

/// A granted or neighbouring id with attacker pieces, random case, and sometimes huge.
fn hostile_id(granted: String, rg1: String) -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![granted, rg1]);
    (base, prop::collection::vec(piece(), 0..6), any::<u64>(), 0u8..20).prop_map(|(base, pieces, flips, size)| {
        let mut id: String = base
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if flips >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for p in pieces {
            id.push_str(&p);
        }
        if size == 0 {
            id.push_str(&"/a".repeat(40_000));
        }
        id
    })
}

/// `count` generated ids, the same every run (a fixed seed), so a failure reproduces.
fn generate(count: usize, granted: &str, rg1: &str) -> Vec<String> {
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = hostile_id(granted.to_string(), rg1.to_string());
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// How a lenient server reads a logged path: the segments after percent-decoding and resolving
/// dot segments (`.`, `..`, `%2e%2e`), lowercase. `None` when decoding shows more structure
/// (an encoded `/`, `\` or a dot segment after decoding) — treated as escaping.
fn as_server_reads(path: &str) -> Option<Vec<String>> {
    let url = url::Url::parse(&format!("https://host{path}")).ok()?;
    let mut out = Vec::new();
    for seg in url.path_segments()? {
        let decoded = percent_encoding::percent_decode_str(seg)
            .decode_utf8_lossy()
            .to_lowercase();
        if decoded.contains('/') || decoded.contains('\\') || decoded == ".." || decoded == "." {
            return None;
        }
        out.push(decoded);
    }
    Some(out)
}

/// Whether `path`, as a server reads it, lies under `scope` (on whole segments).
fn covered(path: &str, scope: &str) -> bool {
    let scope: Vec<String> = scope
        .trim_start_matches('/')
        .split('/')
        .map(str::to_lowercase)
        .collect();
    as_server_reads(path).is_some_and(|segs| segs.len() >= scope.len() && segs[..scope.len()] == scope[..])
}

/// The local cloud's request log after entry `after`: (method, host, path).
async fn requests_after(c: &Cloud, after: i64) -> Vec<(String, String, String)> {
    let (_, log) = c
        .admin(Method::GET, &format!("/_admin/requests?after={after}"), None)
        .await;
    log["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_string(),
                r["host"].as_str().unwrap_or_default().to_string(),
                r["path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(_, _, path)| !path.starts_with("/_admin") && !path.contains("/oauth2/"))
        .collect()
}

async fn last_seq(c: &Cloud) -> i64 {
    let (_, log) = c.admin(Method::GET, "/_admin/requests", None).await;
    log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["seq"].as_i64())
        .max()
        .unwrap_or(0)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// The local cloud as a target, a runtime with a private cache, and the `test-hostile` plugin.
async fn attacker(
    c: &Cloud,
) -> (
    Target,
    tempfile::TempDir,
    kmsflow::Runtime,
    std::sync::Arc<kmsflow::Plugin>,
) {
    let target = Target::local_with(c.dir.path(), &TargetSettings::default())
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-hostile").await;
    (target, cache, rt, plugin)
}

/// A `test-hostile` step in `mode` over `targets`.
fn hostile_step(id: &str, mode: &str, targets: Vec<String>, grants: Grants, limits: StepLimits) -> StepRun {
    StepRun {
        id: id.into(),
        params: vec![
            Param {
                name: "mode".into(),
                value: text(mode),
            },
            Param {
                name: "targets".into(),
                value: Value::TextList(targets),
            },
        ],
        grants,
        limits,
    }
}

/// Runs `test-hostile` in `mode` over `targets` with `grants`; returns one result line per target.
async fn hostile(c: &Cloud, mode: &str, targets: &[String], extra: &[(&str, &str)], grants: Grants) -> Vec<String> {
    let (target, _cache, rt, plugin) = attacker(c).await;
    let mut step = hostile_step("attack", mode, targets.to_vec(), grants, StepLimits::default());
    for (name, value) in extra {
        step.params.push(Param {
            name: (*name).into(),
            value: text(value),
        });
    }
    let report = rt
        .run_step(&plugin, step, &target, &Recorder::default().options())
        .await;
    let outputs = report
        .outcome
        .unwrap_or_else(|e| panic!("{mode}: the step failed: {e}"));
    let Some(Value::Text(results)) = output(&outputs, "results") else {
        panic!("no results")
    };
    results.lines().map(str::to_string).collect()
}

#[test]
fn the_oracle_sees_through_encodings() {
    let scope = "/subscriptions/s/resourceGroups/rg1";
    assert!(covered("/subscriptions/s/resourceGroups/RG1/providers/x", scope));
    for escaping in [
        "/subscriptions/s/resourceGroups/rg1/../rg2",
        "/subscriptions/s/resourceGroups/rg1/%2e%2e/rg2",
        "/subscriptions/s/resourceGroups/rg1%2f..%2frg2",
        "/subscriptions/s/resourceGroups/rg10",
    ] {
        assert!(!covered(escaping, scope), "{escaping}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_ids_are_refused_or_reach_only_what_the_grant_covers() {
    let c = start().await;
    for rg in ["rg1", "rg2"] {
        c.resource_group(rg).await;
    }
    let rg1 = c.rg_id("rg1");
    let granted = format!("{rg1}/providers/Microsoft.ContainerService/managedClusters/aks1");
    let grants = Grants::new(vec![Grant::new(&granted, &["read"]).unwrap()]);
    let ids = generate(CASES, &granted, &rg1);

    let mut refused = 0;
    let mut sent = 0;
    for mode in MODES {
        let before = last_seq(&c).await;
        // In steps of 250: a step refused more than 1,024 times is stopped (tested below).
        let mut results = Vec::new();
        for batch in ids.chunks(250) {
            results.extend(hostile(&c, mode, batch, &[], grants.clone()).await);
        }
        assert_eq!(results.len(), ids.len(), "{mode}");
        refused += results
            .iter()
            .filter(|r| r.starts_with("invalid:") || r.starts_with("denied:"))
            .count();
        let log = requests_after(&c, before).await;
        sent += log.len();
        for (method, host, path) in &log {
            // Key Vault hosts are not granted here: no vault call may reach the wire at all.
            assert!(
                !host.contains(".vault."),
                "{mode}: a request reached vault host {host}: {method} {path}"
            );
            let k8s = path.strip_prefix("/k8s");
            let ok = match k8s {
                Some(rest) => covered(rest, &granted),
                None => covered(path, &granted),
            };
            assert!(ok, "{mode}: {method} {path} is outside the grant {granted}");
        }
    }
    eprintln!(
        "{} generated ids x {} modes: {refused} refused before any call, {sent} requests reached the cloud",
        ids.len(),
        MODES.len()
    );
    // Neither vacuous direction: many ids were refused, and some calls did reach the cloud.
    assert!(refused > ids.len(), "only {refused} refusals");
    assert!(sent > 0, "no request reached the local cloud");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_id_of_millions_of_segments_is_refused_at_once_and_recorded_short() {
    let c = start().await;
    let (target, _cache, rt, plugin) = attacker(&c).await;
    let huge = format!("{}{}", c.rg_id("rg1"), "/a".repeat(2_000_000));
    let granted = c.rg_id("rg1");
    let before = last_seq(&c).await;
    let recorder = Recorder::default();
    // A parse that did per-segment work on millions of segments would run into the timeout.
    let step = hostile_step(
        "huge",
        "arm-get",
        vec![huge.clone(), huge.replace("/a", "/%2e"), huge],
        Grants::new(vec![Grant::new(&granted, &["read"]).unwrap()]),
        StepLimits {
            timeout: std::time::Duration::from_secs(20),
            ..StepLimits::default()
        },
    );
    let report = rt.run_step(&plugin, step, &target, &recorder.options()).await;
    let outputs = report.outcome.unwrap_or_else(|e| panic!("the step failed: {e}"));
    let Some(Value::Text(results)) = output(&outputs, "results") else {
        panic!("no results")
    };
    assert_eq!(results.lines().collect::<Vec<_>>(), ["invalid:InvalidResourceId"; 3]);
    assert!(requests_after(&c, before).await.is_empty(), "nothing is sent");
    let denials: Vec<String> = recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            kmsflow::Event::CallDenied { resource, .. } => Some(resource),
            _ => None,
        })
        .collect();
    assert_eq!(denials.len(), 3, "each refusal is reported");
    for d in denials {
        assert!(
            d.len() < 400,
            "a refused id is recorded shortened, not {} bytes",
            d.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_probing_is_stopped_after_1024_refusals() {
    let c = start().await;
    let (target, _cache, rt, plugin) = attacker(&c).await;
    let probes: Vec<String> = (0..1100).map(|i| format!("{}/%2e%2e/rg{i}", c.rg_id("rg1"))).collect();
    let recorder = Recorder::default();
    let grants = Grants::new(vec![Grant::new(&c.rg_id("rg1"), &["read"]).unwrap()]);
    let step = hostile_step("probe", "arm-get", probes, grants, StepLimits::default());
    let report = rt.run_step(&plugin, step, &target, &recorder.options()).await;
    let failure = report.outcome.expect_err("the probing step fails").to_string();
    assert!(failure.contains("more than 1024 refused calls"), "{failure}");
    let denials = recorder
        .events()
        .iter()
        .filter(|e| matches!(e, kmsflow::Event::CallDenied { .. }))
        .count();
    assert_eq!(denials, 1024, "every refusal up to the limit is reported, none past it");
}

#[tokio::test]
async fn a_describe_that_declares_too_much_is_not_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let path = kmsflow::test_plugin("test-huge-describe").unwrap();
    let err = match rt.plugin_from_file(std::path::Path::new(path), None).await {
        Ok(_) => panic!("a plugin declaring 2,000 parameters was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("describe() answered 2000 parameters"), "{err}");
    assert!(err.contains("the limits are 256"), "{err}");
}

/// Key access in private mode is judged from role definitions, not role names: a role that only
/// wraps keys is not enough, a custom role with encrypt and decrypt is, and access only a group
/// gives cannot be verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_access_is_judged_from_the_role_definitions_data_actions() {
    let c = start().await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-judge1", true, serde_json::json!({})).await;
    let mut ids = Vec::new();
    for n in 1..=6 {
        ids.push(c.identity("rg1", &format!("id{n}")).await.1);
    }
    let group = "00000000-0000-4000-8000-000000000005".to_string();
    let principal = |n: u32| {
        if n == 5 {
            group.clone()
        } else {
            ids[n as usize - 1].clone()
        }
    };
    let name = |n: u32| format!("00000000-0000-4000-8000-{:012}", 900 + n);
    let assign = |role: String, who: String, kind: &'static str, n: u32| {
        let c = &c;
        let vault = vault.clone();
        async move {
            let definition = format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}",
                c.sub()
            );
            let body = serde_json::json!({"properties": {"roleDefinitionId": definition, "principalId": who, "principalType": kind}});
            let path = format!("{vault}/providers/Microsoft.Authorization/roleAssignments/{}", name(n));
            let (status, resp) = c.arm(Method::PUT, &path, Some(body)).await;
            assert!(status.is_success(), "{resp}");
        }
    };
    // 1: Crypto Service Encryption User (wrap/unwrap only). 2: Crypto User. 3: a custom role
    // with encrypt and decrypt. 4: only through group 5's Crypto User. 6: nothing.
    assign(
        "e147488a-f6f5-4113-8e2d-b22465e65bf6".into(),
        principal(1),
        "ServicePrincipal",
        1,
    )
    .await;
    assign(
        "12338af0-0e69-4776-bea7-57ae8d297424".into(),
        principal(2),
        "ServicePrincipal",
        2,
    )
    .await;
    let (status, role) = c
        .admin(
            Method::PUT,
            "/_admin/roleDefinitions",
            Some(
                serde_json::json!({"roleName": "KMS only", "permissions": [{"dataActions": [
                "Microsoft.KeyVault/vaults/keys/encrypt/action", "Microsoft.KeyVault/vaults/keys/decrypt/action"]}]}),
            ),
        )
        .await;
    assert!(status.is_success(), "{role}");
    assign(
        role["name"].as_str().unwrap().to_string(),
        principal(3),
        "ServicePrincipal",
        3,
    )
    .await;
    let grants = Grants::new(vec![Grant::new(&vault, &["read"]).unwrap()]);
    let who: Vec<String> = [1, 2, 3, 4, 6].into_iter().map(principal).collect();
    let results = hostile(&c, "kv-can-encrypt", &who, &[("path", &vault)], grants.clone()).await;
    assert_eq!(results, ["ok:false", "ok:true", "ok:true", "ok:false", "ok:false"]);

    // Once a group holds Crypto User, whoever lacks a role of their own might be a member.
    let (status, _) = c
        .admin(
            Method::PUT,
            "/_admin/groups/members",
            Some(serde_json::json!({"group": principal(5), "member": principal(4)})),
        )
        .await;
    assert!(status.is_success());
    assign("12338af0-0e69-4776-bea7-57ae8d297424".into(), principal(5), "Group", 5).await;
    let who: Vec<String> = [2, 4].into_iter().map(principal).collect();
    let results = hostile(&c, "kv-can-encrypt", &who, &[("path", &vault)], grants).await;
    assert_eq!(results, ["ok:true", "precondition:AccessOnlyThroughGroup"]);
}

/// On a bad day the answer to "create a key version" can be lost after the version was made. A
/// retry must find that version, not make another: under lost answers and after-the-fact 5xx on
/// Key Vault, one `new-key-version` call leaves exactly one new version, for every seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_never_makes_a_second_key_version() {
    let c = start().await;
    c.resource_group("rg1").await;
    let s = c.kms_setup("kv-lost1").await;
    let key_name = s.key_id.split('/').nth(4).unwrap().to_string();
    let versions_path = format!("/keys/{key_name}/versions");
    let grants = Grants::new(vec![Grant::new(&s.vault, &["read", "keys"]).unwrap()]);
    for seed in 1..=5u64 {
        let before = key_versions(&c, "kv-lost1", &versions_path).await;
        let (status, _) = c
            .admin(
                Method::PUT,
                "/_admin/faults",
                Some(
                    serde_json::json!({"seed": seed, "lost_response_percent": 30, "error_after_percent": 20,
                    "services": ["keyvault"]}),
                ),
            )
            .await;
        assert!(status.is_success());
        let results = hostile(
            &c,
            "kv-new-version",
            std::slice::from_ref(&key_name),
            &[("path", &s.vault)],
            grants.clone(),
        )
        .await;
        c.admin(Method::PUT, "/_admin/faults", Some(serde_json::json!({"seed": 0})))
            .await;
        assert!(results[0].starts_with("ok:"), "seed {seed}: {results:?}");
        let (_, log) = c.admin(Method::GET, "/_admin/requests", None).await;
        let after_faults = log["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["fault"].as_str().is_some_and(|f| f.ends_with("-after")))
            .count();
        assert!(
            after_faults > 0,
            "seed {seed}: no after-the-fact fault happened, the test proves nothing"
        );
        let now = key_versions(&c, "kv-lost1", &versions_path).await;
        assert_eq!(now, before + 1, "seed {seed}: exactly one new version");
    }
}

/// How many versions the local cloud holds at `path` (`/keys/{name}/versions`) of `vault`.
async fn key_versions(c: &Cloud, vault: &str, path: &str) -> usize {
    let (_, list) = c.kv(Method::GET, vault, path, None).await;
    list["value"].as_array().map_or(0, Vec::len)
}

/// Token requests are retried by the identity library under throttling; each attempt is on the
/// call's wire report, so the journal counts token retries like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_retries_are_recorded_on_the_call() {
    let c = start().await;
    c.resource_group("rg1").await;
    let (status, _) = c
        .admin(
            Method::PUT,
            "/_admin/faults",
            Some(serde_json::json!({"seed": 3, "throttle_percent": 35, "retry_after_s": 0, "services": ["entra"]})),
        )
        .await;
    assert!(status.is_success());
    let (target, _cache, rt, plugin) = attacker(&c).await;
    let rg = c.rg_id("rg1");
    let recorder = Recorder::default();
    let mut step = hostile_step(
        "token",
        "arm-get",
        vec![rg.clone()],
        Grants::new(vec![Grant::new(&rg, &["read"]).unwrap()]),
        StepLimits::default(),
    );
    step.params.push(Param {
        name: "api-version".into(),
        value: text("2021-04-01"),
    });
    let report = rt.run_step(&plugin, step, &target, &recorder.options()).await;
    let outputs = report.outcome.unwrap_or_else(|e| panic!("{e}"));
    let results = output(&outputs, "results");
    assert!(matches!(&results, Some(Value::Text(t)) if t == "ok:200"), "{results:?}");
    let (_, log) = c.admin(Method::GET, "/_admin/requests", None).await;
    let throttled_tokens = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/oauth2/")) && r["status"] == 429)
        .count();
    assert!(
        throttled_tokens > 0,
        "the storm hit no token request; the test proves nothing"
    );
    let retries: u32 = recorder
        .events()
        .iter()
        .filter_map(|e| match e {
            kmsflow::Event::Call { retries, .. } => Some(*retries),
            _ => None,
        })
        .sum();
    assert!(
        retries as usize >= throttled_tokens,
        "{throttled_tokens} throttled token requests, {retries} retries recorded"
    );
}
