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

/// A failed assertion must not leave the server running (it holds the test's stderr open).
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// The canary value seeded into every secret of the leak test.
const CANARY: &str = "kmsflow-leak-canary";

#[test]
fn no_secret_value_token_or_client_secret_reaches_the_logs_or_the_journal() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let mut served = serve(&state);
    let st = state.to_str().unwrap();
    let seeded = kmsflow(&["local", "seed-cluster", "--state", st, "--name", "aks1"]);
    assert!(seeded.status.success());
    let seeded = kmsflow(&[
        "local",
        "seed",
        "--state",
        st,
        "aks1",
        "--count",
        "30",
        "--namespaces",
        "3",
        "--value",
        CANARY,
    ]);
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(state.join("profile.json")).unwrap()).unwrap();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/rg1",
        profile["default_subscription"].as_str().unwrap()
    );
    let cluster = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks1");
    let wasm = |name: &str| {
        let path = std::path::PathBuf::from(kmsflow::test_plugin(name).unwrap());
        let sha = kmsflow::sha256_hex(&std::fs::read(&path).unwrap());
        (path.display().to_string(), sha)
    };
    let (arm_calls, arm_sha) = wasm("test-arm-calls");
    let (kube, kube_sha) = wasm("test-kube");
    let pipeline = dir.path().join("leak.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"[pipeline]
name = "leak"

[[steps]]
id = "arm"
uses = "{arm_calls}"
sha256 = "{arm_sha}"
[steps.with]
identity = "{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kms"
vault = "{rg}/providers/Microsoft.KeyVault/vaults/kv-leak1"
cluster = "{cluster}"
[[steps.grants]]
scope = "{rg}"
actions = ["read", "write", "roles", "keys"]

[[steps]]
id = "rewrite"
uses = "rewrite-secrets"
[steps.with]
cluster = "{cluster}"
page-size = 7
[[steps.grants]]
scope = "{cluster}"
actions = ["read", "secrets.rewrite"]

[[steps]]
id = "kube"
uses = "{kube}"
sha256 = "{kube_sha}"
[steps.with]
cluster = "{cluster}"
[[steps.grants]]
scope = "{cluster}"
actions = ["read", "kms"]
"#
        ),
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let out = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["run", "-vvv", "--output", "json"])
        .arg(&pipeline)
        .env("KMSFLOW_LOCAL_STATE", &state)
        .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
        .env("KMSFLOW_RUNS_DIR", &runs)
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
    assert_eq!(doc["steps"][1]["outputs"]["listed"], 30, "{stdout}");
    assert_eq!(doc["steps"][2]["outputs"]["count"], "ok:30", "{stdout}");
    assert!(
        stderr.contains("kmsflow.keyvault.ensure-vault") && stderr.contains("kmsflow.kubernetes.rewrite-secrets-page"),
        "trace logs show the capability spans"
    );
    let run_dir = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let journal = std::fs::read_to_string(run_dir.join("journal.ndjson")).unwrap();
    let records = kmsflow::journal::Journal::read(&run_dir.join("journal.ndjson")).unwrap();
    let pages = records
        .iter()
        .filter(|r| {
            matches!(r, kmsflow::journal::Record::Call { call, write: true, ok: true, .. }
            if call == "kubernetes.rewrite-secrets-page")
        })
        .count();
    assert_eq!(pages, 5, "30 secrets in pages of 7, each page journaled");
    assert!(journal.contains("\"request_ids\""), "request ids are journaled");

    // What must never appear: the operator's client secret, any token, the admin credential of
    // the cluster, and any secret's value (plain or base64, as the API carries it).
    let clusters: Value = {
        let out = kmsflow(&[
            "local",
            "resources",
            "--state",
            st,
            "--type",
            "Microsoft.ContainerService/managedClusters",
            "--output",
            "json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let admin_token = clusters.to_string();
    let admin_token = admin_token
        .split("\"kmsflowAdminToken\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(admin_token.len() >= 16);
    let mut forbidden = vec![
        profile["operator"]["client_secret"].as_str().unwrap().to_string(),
        admin_token,
        CANARY.to_string(),
    ];
    for i in 0..30 {
        forbidden.push(base64::engine::general_purpose::STANDARD.encode(format!("{CANARY}-{i}")));
    }
    for (name, text) in [("stdout", &*stdout), ("stderr", &*stderr), ("the journal", &*journal)] {
        for f in &forbidden {
            assert!(!text.contains(f.as_str()), "{f} leaked into {name}");
        }
        assert!(!text.contains("eyJ"), "a bearer token (JWT) leaked into {name}");
        assert!(
            !text.to_ascii_lowercase().contains("bearer "),
            "an Authorization header leaked into {name}"
        );
    }
    served.child.kill().unwrap();
    served.child.wait().unwrap();
}

/// A one-step pipeline of `test-arm-calls` (pinned) against resource group `rg`.
fn arm_calls_pipeline(dir: &Path, rg: &str) -> std::path::PathBuf {
    let wasm = std::path::PathBuf::from(kmsflow::test_plugin("test-arm-calls").unwrap());
    let sha = kmsflow::sha256_hex(&std::fs::read(&wasm).unwrap());
    let path = dir.join("arm-calls.toml");
    let toml = format!(
        "[pipeline]\nname = \"arm-calls\"\n\n[[steps]]\nid = \"step\"\nuses = \"{}\"\nsha256 = \"{sha}\"\n\
         [steps.with]\nidentity = \"{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kms\"\n\
         vault = \"{rg}/providers/Microsoft.KeyVault/vaults/kv-config1\"\n\
         cluster = \"{rg}/providers/Microsoft.ContainerService/managedClusters/none\"\n\
         [[steps.grants]]\nscope = \"{rg}\"\nactions = [\"read\", \"write\", \"roles\", \"keys\"]\n",
        wasm.display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn targets_come_from_kmsflow_toml_with_their_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let mut served = serve(&state);
    let seeded = kmsflow(&[
        "local",
        "seed-cluster",
        "--state",
        state.to_str().unwrap(),
        "--name",
        "aks1",
    ]);
    assert!(seeded.status.success(), "the seeded cluster brings resource group rg1");
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(state.join("profile.json")).unwrap()).unwrap();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/rg1",
        profile["default_subscription"].as_str().unwrap()
    );
    let pipeline = arm_calls_pipeline(dir.path(), &rg);
    std::fs::write(
        dir.path().join("kmsflow.toml"),
        "default-target = \"lab\"\nruns-dir = \"journals\"\n\n[targets.lab]\ncloud = \"local\"\nstate-dir = \"cloud\"\ncredential = \"environment\"\n",
    )
    .unwrap();
    let run = |secret: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kmsflow"))
            .current_dir(dir.path())
            .arg("run")
            .arg(&pipeline)
            .args(extra)
            .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
            .env_remove("KMSFLOW_RUNS_DIR")
            .env("AZURE_TENANT_ID", profile["tenant_id"].as_str().unwrap())
            .env("AZURE_CLIENT_ID", profile["operator"]["client_id"].as_str().unwrap())
            .env("AZURE_CLIENT_SECRET", secret)
            .output()
            .unwrap()
    };
    // The default target of the file, with the environment's client secret.
    let ok = run(profile["operator"]["client_secret"].as_str().unwrap(), &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let run_dir = std::fs::read_dir(dir.path().join("journals"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records = kmsflow::journal::Journal::read(&run_dir.join("journal.ndjson")).unwrap();
    assert!(matches!(&records[0], kmsflow::journal::Record::RunStarted { target, .. } if target == "lab"));

    // A wrong secret: the step fails on the credential (exit 1), and the message does not echo it.
    let bad = run("not-the-secret-0123456789", &[]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains("AADSTS7000215") || stderr.contains("AADSTS7000215"),
        "{stdout}{stderr}"
    );
    assert!(!stdout.contains("not-the-secret") && !stderr.contains("not-the-secret"));

    // An unknown target is refused before anything runs, naming the known ones.
    let unknown = run("x", &["--target", "prod"]);
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("unknown target `prod`") && stderr.contains("lab"),
        "{stderr}"
    );

    // A mistake in the file points at its line.
    std::fs::write(
        dir.path().join("kmsflow.toml"),
        "[targets.lab]\ncloud = \"local\"\nretries = 3\n",
    )
    .unwrap();
    let broken = run("x", &[]);
    assert_eq!(broken.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("line 3") && stderr.contains("retries"), "{stderr}");
    served.child.kill().unwrap();
    served.child.wait().unwrap();
}
