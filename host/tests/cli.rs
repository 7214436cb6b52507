//! The `kmsflow` binary as a user runs it: exit codes, one-line reasons, listings, JSON.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn kmsflow(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(args)
        .env("KMSFLOW_CACHE_DIR", cache)
        .env("KMSFLOW_LOCAL_STATE", cache.join("localcloud"))
        .output()
        .expect("kmsflow starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn plugin_path(name: &str) -> PathBuf {
    PathBuf::from(kmsflow::test_plugin(name).expect("test plugin built"))
}

fn sha_of(path: &Path) -> String {
    kmsflow::sha256_hex(&std::fs::read(path).expect("read wasm"))
}

/// Writes a one-step pipeline using test plugin `name` pinned by its hash.
fn pipeline(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let wasm = plugin_path(name);
    let toml = format!(
        "[pipeline]\nname = \"{name}\"\n\n[[steps]]\nid = \"{name}\"\nuses = \"{}\"\nsha256 = \"{}\"\n{extra}\n",
        wasm.display(),
        sha_of(&wasm)
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write pipeline");
    path
}

#[test]
fn plugins_list_shows_each_builtin_with_the_sha256_of_its_component() {
    let cache = tempfile::tempdir().unwrap();
    let out = kmsflow(cache.path(), &["plugins", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let built =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/wasm32-wasip2/release/validate_key_id.wasm");
    let line = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("validate-key-id "))
        .map(str::to_string)
        .expect("validate-key-id is listed");
    assert!(line.contains(&sha_of(&built)), "{line}");

    let json = kmsflow(cache.path(), &["plugins", "list", "--output", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "validate-key-id")
        .expect("validate-key-id in the JSON list");
    assert_eq!(entry["sha256"], sha_of(&built));
    assert!(list.as_array().unwrap().iter().any(|p| p["name"] == "rewrite-secrets"));
}

#[test]
fn plugins_describe_prints_parameters_outputs_and_grants() {
    let cache = tempfile::tempdir().unwrap();
    let out = kmsflow(cache.path(), &["plugins", "describe", "validate-key-id"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("key_id (string, required)"), "{stdout}");
    assert!(
        stdout.contains("dns_suffix (string, default \"vault.azure.net\")"),
        "{stdout}"
    );
    assert!(stdout.contains("key_version (string)"), "{stdout}");

    let deny = plugin_path("test-deny");
    let out = kmsflow(
        cache.path(),
        &["plugins", "describe", deny.to_str().unwrap(), "--output", "json"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["grants"][0]["action"], "read");
    assert_eq!(doc["params"][0]["name"], "outside");

    let missing = kmsflow(cache.path(), &["plugins", "describe", "no-such-plugin"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no built-in plugin named `no-such-plugin`"));
}

#[test]
fn an_infinite_loop_with_a_2s_timeout_fails_in_under_3s_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-loop", "timeout = \"2s\"");
    let started = Instant::now();
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("run r") && last.ends_with("failed: step `test-loop` timed out after 2s"),
        "{stdout}"
    );
}

#[test]
fn a_memory_hungry_plugin_with_a_64mib_cap_fails_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-oom", "[steps.limits]\nmemory = \"64MiB\"");
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["status"], "failed");
    let error = doc["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("exceeded its memory limit of 64.0 MiB"), "{error}");
    assert!(!error.contains('\n'));
}

#[test]
fn a_wrong_sha256_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin_path("test-stdout");
    let toml = format!(
        "[pipeline]\nname = \"pinned\"\n\n[[steps]]\nid = \"s\"\nuses = \"{}\"\nsha256 = \"{}\"\n",
        wasm.display(),
        "0".repeat(64)
    );
    let p = dir.path().join("pinned.toml");
    std::fs::write(&p, toml).unwrap();
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("pinned.toml:6:8:"), "{stderr}");
    assert!(stderr.contains(&format!("has SHA-256 {}", sha_of(&wasm))), "{stderr}");
    assert!(!text(&out.stdout).contains("run r"), "no run may start");
    assert!(!stderr.contains("hello from stdout"));
}

#[test]
fn malformed_pipelines_point_at_the_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"validate-key-id\"\nwhith = {}\n", "6:1: unknown field `whith`"),
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"nope\"\n", "5:8: no built-in plugin named `nope`"),
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"validate-key-id\"\n", "3:1: step `a` is missing required parameter `key_id`"),
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"validate-key-id\"\n[steps.with]\nkey_id = \"k\"\nkeyid = \"k\"\n", "8:1: plugin `validate-key-id` has no parameter `keyid`"),
    ];
    for (toml, expected) in cases {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, toml).unwrap();
        let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("bad.toml:{expected}")),
            "expected `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn the_check_key_pipeline_runs_and_reports_outputs() {
    let cache = tempfile::tempdir().unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    let out = kmsflow(cache.path(), &["run", p.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        doc["steps"][0]["outputs"]["key_version"],
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    );
    assert_eq!(doc["steps"][0]["outputs"]["vault_name"], "kv-etcd01");
}

#[test]
fn an_unversioned_key_id_fails_the_step_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("unversioned.toml");
    std::fs::write(
        &p,
        "[pipeline]\nname = \"x\"\n[[steps]]\nid = \"check\"\nuses = \"validate-key-id\"\n[steps.with]\nkey_id = \"https://kv1.vault.azure.net/keys/etcd\"\n",
    )
    .unwrap();
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout)
        .contains("failed: step `check` invalid: `https://kv1.vault.azure.net/keys/etcd` has no version"));
}

#[test]
fn run_reaches_the_local_cloud_by_default_and_nothing_with_target_offline() {
    let dir = tempfile::tempdir().unwrap();
    let sub = "/subscriptions/00000000-0000-0000-0000-000000000001";
    let extra = format!(
        "[steps.with]\noutside = \"{sub}/resourceGroups/other/providers/Microsoft.KeyVault/vaults/kv1\"\ninside = \"{sub}/resourceGroups/rg1/providers/Microsoft.ContainerService/managedClusters/aks1\"\n[[steps.grants]]\nscope = \"{sub}/resourceGroups/rg1\"\nactions = [\"read\"]"
    );
    let p = pipeline(dir.path(), "test-deny", &extra);
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        doc["steps"][0]["outputs"]["allowed"], "not-found:SubscriptionNotFound",
        "the call went to the local cloud over HTTPS"
    );
    assert_eq!(doc["steps"][0]["outputs"]["denied_code"], "GrantMissing");
    assert!(
        dir.path().join("localcloud/profile.json").is_file(),
        "the local cloud was started in-process in KMSFLOW_LOCAL_STATE"
    );

    let out = kmsflow(
        dir.path(),
        &["run", p.to_str().unwrap(), "--output", "json", "--target", "offline"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["steps"][0]["outputs"]["allowed"], "unavailable:NoBackend");
}

/// The README's main job: `kmsflow quickstart` ends with every secret current under KMS v2.
#[test]
fn quickstart_enables_migrates_rotates_and_switches_a_seeded_cluster() {
    let cache = tempfile::tempdir().unwrap();
    let out = kmsflow(cache.path(), &["quickstart", "--secrets", "60"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("60 secrets, KMS v2 — current: 60, stale: 0, plain: 0 (e.g. kms-v2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("aks-quickstart") && stdout.contains("Private"),
        "the status table: {stdout}"
    );
}
