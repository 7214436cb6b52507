//! The procedure's own commands, unchanged, with the `kubectl` on this machine's `PATH` and the
//! kubeconfig from `listClusterAdminCredential`. A missing kubectl FAILS the test (`cargo xtask
//! test` installs it); only `KMSFLOW_SKIP_KUBECTL=1` skips it, for a developer machine without
//! one. CI must not set it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{public_kms, start};
use reqwest::{Method, StatusCode};
use std::path::PathBuf;
use std::process::Command;

/// The first executable file named `kubectl` in a directory of `PATH`, as a shell finds it.
fn kubectl_on_path() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// kubectl from `PATH`; `None` only when it is missing and `KMSFLOW_SKIP_KUBECTL=1`, else a panic
/// that says how to install it.
fn kubectl() -> Option<String> {
    if let Some(k) = kubectl_on_path() {
        return Some(k.display().to_string());
    }
    if std::env::var("KMSFLOW_SKIP_KUBECTL").as_deref() == Ok("1") {
        eprintln!("SKIPPED (KMSFLOW_SKIP_KUBECTL=1): kubectl is not on PATH");
        return None;
    }
    panic!(
        "kubectl is not on PATH: install it (`cargo xtask test` does: `apt-get install -y kubectl`, else \
         Debian's `kubernetes-client`), or set KMSFLOW_SKIP_KUBECTL=1 to skip this test on a machine \
         without it (never in CI)"
    );
}

// kubectl runs as a blocking child process while the local cloud serves it from this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_pods_and_replaces_every_secret() {
    let Some(kubectl) = kubectl() else {
        return;
    };
    let c = start().await;
    let s = c.kms_setup("kv-kubectl1").await;
    c.operator_policy(&s.vault, &["rotate"]).await;
    let (status, body) = c
        .arm(
            Method::PUT,
            &c.cluster_id("aks1"),
            Some(crate::common::cluster_body(
                Some(&s.identity),
                "1.30",
                false,
                Some(public_kms(&s.key_id)),
            )),
        )
        .await;
    assert!(status.is_success(), "{body}");
    c.wait_cluster(&c.cluster_id("aks1")).await;
    let (status, creds) = c
        .arm(
            Method::POST,
            &format!("{}/listClusterAdminCredential", c.cluster_id("aks1")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    use base64::Engine;
    let kubeconfig = c.dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        base64::engine::general_purpose::STANDARD
            .decode(creds["kubeconfigs"][0]["value"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();

    let pods = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "po", "-n", "kube-system"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&pods.stdout);
    assert!(pods.status.success(), "{}", String::from_utf8_lossy(&pods.stderr));
    assert!(stdout.contains("konnectivity-agent-"), "{stdout}");

    c.seed_secrets("aks1", 1000, 10).await;
    let (status, rotated) = c.kv(Method::POST, "kv-kubectl1", "/keys/etcd/rotate", None).await;
    assert_eq!(status, StatusCode::OK);
    c.set_kms("aks1", public_kms(rotated["key"]["kid"].as_str().unwrap()))
        .await;
    let inspected = c.inspect("aks1").await;
    assert_eq!(inspected["summary"]["stale"], 1000);

    let script = format!(
        "{kubectl} --kubeconfig {kc} get secrets --all-namespaces -o json | {kubectl} --kubeconfig {kc} replace -f -",
        kc = kubeconfig.display()
    );
    let replaced = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        replaced.status.success(),
        "{}",
        String::from_utf8_lossy(&replaced.stderr)
    );
    let inspected = c.inspect("aks1").await;
    assert_eq!(inspected["summary"]["current"], 1000, "{}", inspected["summary"]);
    assert_eq!(inspected["summary"]["stale"], 0);
}
