//! `kmsflow local serve` as a separate process: it survives `kill -9` with every resource and key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Served {
    child: Child,
    ready: Value,
}

fn serve(state: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["local", "serve", "--output", "json", "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        .spawn()
        .expect("kmsflow local serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(ready["status"], "ready");
    Served { child, ready }
}

fn kmsflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kmsflow")).args(args).output().unwrap()
}

struct Client {
    http: reqwest::Client,
    profile: Value,
    arm: String,
    kv: String,
}

async fn client(state: &Path, vault: &str) -> Client {
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(state.join("profile.json")).unwrap()).unwrap();
    let port: u16 = profile["resource_manager"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(profile["ca_pem"].as_str().unwrap().as_bytes()).unwrap())
        .resolve(&format!("{vault}.vault.localhost"), ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let token = |aud: String| {
        let http = http.clone();
        let profile = profile.clone();
        async move {
            let url = format!(
                "{}{}/oauth2/v2.0/token",
                profile["authority_host"].as_str().unwrap(),
                profile["tenant_id"].as_str().unwrap()
            );
            let scope = format!("{aud}/.default");
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", profile["operator"]["client_id"].as_str().unwrap()),
                ("client_secret", profile["operator"]["client_secret"].as_str().unwrap()),
                ("scope", scope.as_str()),
            ];
            let body: Value = http.post(url).form(&form).send().await.unwrap().json().await.unwrap();
            body["access_token"].as_str().unwrap().to_string()
        }
    };
    let arm = token(profile["arm_audience"].as_str().unwrap().to_string()).await;
    let kv = token(profile["keyvault_audience"].as_str().unwrap().to_string()).await;
    Client { http, profile, arm, kv }
}

impl Client {
    async fn arm(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let url = format!(
            "{}{}?api-version=2025-05-01",
            self.profile["resource_manager"].as_str().unwrap().trim_end_matches('/'),
            path
        );
        let mut req = self.http.request(method.clone(), url).bearer_auth(&self.arm);
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn kv(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{url}?api-version=7.5"))
            .bearer_auth(&self.kv);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_local_cloud_survives_kill_9_with_resources_and_keys_intact() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let mut first = serve(&state);
    let port = first.ready["port"].as_u64().unwrap();
    let c = client(&state, "kv-durable1").await;
    let sub = c.profile["default_subscription"].as_str().unwrap().to_string();
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg1");
    assert_eq!(
        c.arm(reqwest::Method::PUT, &rg, json!({"location": "westeurope"}))
            .await
            .0,
        201
    );
    let vault = format!("{rg}/providers/Microsoft.KeyVault/vaults/kv-durable1");
    let props = json!({"tenantId": c.profile["tenant_id"], "sku": {"family": "A", "name": "standard"},
        "accessPolicies": [{"tenantId": c.profile["tenant_id"], "objectId": c.profile["operator"]["object_id"], "permissions": {"keys": ["create", "get"]}}]});
    let (status, doc) = c
        .arm(
            reqwest::Method::PUT,
            &vault,
            json!({"location": "westeurope", "properties": props}),
        )
        .await;
    assert_eq!(status, 201, "{doc}");
    let vault_uri = doc["properties"]["vaultUri"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let (status, key) = c
        .kv(
            reqwest::Method::POST,
            &format!("{vault_uri}/keys/etcd/create"),
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    let seeded = kmsflow(&[
        "local",
        "seed-cluster",
        "--state",
        state.to_str().unwrap(),
        "--name",
        "aks-old",
        "--kubernetes-version",
        "1.26",
    ]);
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));

    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let mut second = serve(&state);
    assert_eq!(
        second.ready["port"].as_u64(),
        Some(port),
        "same port, so key ids stay valid"
    );
    let c = client(&state, "kv-durable1").await;
    let (status, again) = c
        .kv(reqwest::Method::GET, &format!("{vault_uri}/keys/etcd"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["key"]["kid"], key["key"]["kid"]);
    assert_eq!(again["key"]["n"], key["key"]["n"]);
    let (status, cluster) = c
        .arm(
            reqwest::Method::GET,
            &format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks-old"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(cluster["properties"]["currentKubernetesVersion"], "1.26.15");
    let listed = kmsflow(&[
        "local",
        "resources",
        "--state",
        state.to_str().unwrap(),
        "--type",
        "Microsoft.KeyVault/vaults",
    ]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("/vaults/kv-durable1"));
    let st = state.to_str().unwrap();
    let seeded = kmsflow(&[
        "local",
        "seed",
        "--state",
        st,
        "aks-old",
        "--count",
        "20",
        "--namespaces",
        "3",
    ]);
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let inspect = kmsflow(&["local", "inspect", "--state", st, "aks-old"]);
    let out = String::from_utf8_lossy(&inspect.stdout);
    assert_eq!(out.lines().count(), 21, "{out}");
    assert_eq!(out.lines().last(), Some("current: 20, stale: 0, plain: 20"));
    assert!(out.lines().next().unwrap().ends_with("plain  -  current"), "{out}");
    second.child.kill().unwrap();
    second.child.wait().unwrap();
}

/// Writes a one-step pipeline of test plugin `name` (pinned) with `extra` TOML appended.
fn pinned_pipeline(dir: &Path, name: &str, extra: &str) -> std::path::PathBuf {
    let wasm = std::path::PathBuf::from(kmsflow::test_plugin(name).unwrap());
    let sha = kmsflow::sha256_hex(&std::fs::read(&wasm).unwrap());
    let path = dir.join(format!("{name}.toml"));
    let toml = format!(
        "[pipeline]\nname = \"{name}\"\n\n[[steps]]\nid = \"step\"\nuses = \"{}\"\nsha256 = \"{sha}\"\n{extra}\n",
        wasm.display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn no_token_or_client_secret_reaches_the_logs_at_maximum_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let mut served = serve(&state);
    let st = state.to_str().unwrap();
    let seeded = kmsflow(&["local", "seed-cluster", "--state", st, "--name", "aks1"]);
    assert!(seeded.status.success());
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(state.join("profile.json")).unwrap()).unwrap();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/rg1",
        profile["default_subscription"].as_str().unwrap()
    );
    let extra = format!(
        "[steps.with]\nidentity = \"{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kms\"\nvault = \"{rg}/providers/Microsoft.KeyVault/vaults/kv-leak1\"\ncluster = \"{rg}/providers/Microsoft.ContainerService/managedClusters/aks1\"\n[[steps.grants]]\nscope = \"{rg}\"\nactions = [\"read\", \"write\", \"roles\", \"keys\"]"
    );
    let pipeline = pinned_pipeline(dir.path(), "test-arm-calls", &extra);
    let out = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["run", "-vvv", "--output", "json"])
        .arg(&pipeline)
        .env("KMSFLOW_LOCAL_STATE", &state)
        .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        doc["steps"][0]["outputs"]["cluster"], "Succeeded",
        "the step talked to the serving local cloud"
    );
    assert!(
        stderr.contains("kmsflow.keyvault.ensure-vault"),
        "trace logs show the capability spans"
    );
    let secret = profile["operator"]["client_secret"].as_str().unwrap();
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(secret), "the client secret leaked into {name}");
        assert!(!text.contains("eyJ"), "a bearer token (JWT) leaked into {name}");
        assert!(
            !text.to_ascii_lowercase().contains("bearer "),
            "an Authorization header leaked into {name}"
        );
    }
    served.child.kill().unwrap();
    served.child.wait().unwrap();
}
