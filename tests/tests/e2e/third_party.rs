//! A platform team's own plugin: `examples/tag-cluster`, built here from its own crate against the
//! guest SDK, used by a pipeline through its path and sha256 — and refused with a wrong sha256.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::start;
use kmsflow::{Pipeline, RunOptions, Target};
use kmsflow_tests::runtime;
use reqwest::Method;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `examples/tag-cluster` for wasm32-wasip2 (sharing the plugins' target directory, so the
/// SDK's dependencies are already compiled) and returns the component's path.
fn build_example() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target/plugins");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(root.join("examples/tag-cluster/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "building examples/tag-cluster failed");
    target_dir.join("wasm32-wasip2/release/tag_cluster.wasm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_plugin_runs_by_path_and_sha256_and_a_wrong_hash_is_refused() {
    let wasm = build_example();
    let sha = kmsflow::sha256_hex(&std::fs::read(&wasm).unwrap());
    let c = start().await;
    let (status, body) = c
        .admin(
            Method::POST,
            "/_admin/clusters",
            Some(serde_json::json!({"resource_group": "rg1", "name": "aks-tags"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let cluster = c.cluster_id("aks-tags");
    let dir = tempfile::tempdir().unwrap();
    let write = |sha: &str| {
        let path = dir.path().join("tag.toml");
        std::fs::write(
            &path,
            format!(
                r#"[pipeline]
name = "tag"

[vars.cluster]
type = "text"
required = true

[[steps]]
id = "tag"
uses = "{}"
sha256 = "{sha}"
[steps.with]
cluster = "${{vars.cluster}}"
tags = ["team=platform", "kms=enabled"]
[[steps.grants]]
scope = "${{vars.cluster}}"
actions = ["write"]
"#,
                wasm.display()
            ),
        )
        .unwrap();
        path
    };
    let inputs = kmsflow::VarInputs {
        set: vec![("cluster".into(), cluster.clone())],
        ..Default::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let target = Target::local(c.dir.path()).await.unwrap();

    // A wrong sha256: refused while preparing, before any request.
    let before = c.cloud_requests().await;
    let wrong = Pipeline::load(&write(&"0".repeat(64)), &inputs).unwrap();
    let err = rt
        .prepare(&wrong)
        .await
        .err()
        .expect("a wrong hash is refused")
        .to_string();
    assert!(err.contains("refusing to run it") && err.contains(&sha), "{err}");
    assert_eq!(c.cloud_requests().await, before);

    let pipeline = Pipeline::load(&write(&sha), &inputs).unwrap();
    let report = rt.run(&pipeline, &target, &RunOptions::default()).await.unwrap();
    assert!(report.succeeded(), "{:?}", report.failure().map(|f| f.outcome.clone()));
    let (_, doc) = c.arm(Method::GET, &cluster, None).await;
    assert_eq!(doc["tags"]["team"], "platform");
    assert_eq!(doc["tags"]["kms"], "enabled");
}
