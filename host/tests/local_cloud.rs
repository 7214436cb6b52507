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
    serve_with(state, &[])
}

/// `kmsflow local serve` with extra flags (its realism settings).
fn serve_with(state: &Path, flags: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["local", "serve", "--output", "json", "--state"])
        .arg(state)
        .args(flags)
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
        // Each resource type has its own api-versions (vaults here; a resource group otherwise).
        let version = if path.contains("Microsoft.ContainerService") {
            "2026-01-01"
        } else if path.contains("/providers/") {
            "2025-05-01"
        } else {
            "2021-04-01"
        };
        let url = format!(
            "{}{}?api-version={version}",
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
    let kid = new_key(&c, "kv-durable1", "etcd").await;
    let vault_uri = kid.split("/keys/").next().unwrap().to_string();
    let (status, key) = c
        .kv(reqwest::Method::GET, &format!("{vault_uri}/keys/etcd"), None)
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
    assert_eq!(status, 200, "{cluster}");
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
    let profile = profile_of(&state);
    let rg = rg1(&profile);
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
    // The admin credential is the client key of the cluster's admin kubeconfig.
    let admin_key = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let c = client(&state, "unused").await;
        let url = format!(
            "{}{cluster}/listClusterAdminCredential?api-version=2026-01-01",
            c.profile["resource_manager"].as_str().unwrap().trim_end_matches('/')
        );
        let creds: Value = c
            .http
            .post(url)
            .bearer_auth(&c.arm)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let yaml = base64::engine::general_purpose::STANDARD
            .decode(creds["kubeconfigs"][0]["value"].as_str().unwrap())
            .unwrap();
        String::from_utf8(yaml)
            .unwrap()
            .lines()
            .find_map(|l| l.trim().strip_prefix("client-key-data:").map(|v| v.trim().to_string()))
            .unwrap()
    });
    let admin_key_pem =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&admin_key).unwrap()).unwrap();
    let admin_key_body = admin_key_pem.lines().nth(1).unwrap().to_string();
    assert!(admin_key_body.len() >= 16);
    let mut forbidden = vec![
        profile["operator"]["client_secret"].as_str().unwrap().to_string(),
        admin_key,
        admin_key_body,
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
    let profile = profile_of(&state);
    let rg = rg1(&profile);
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

/// Every file in `tests/pipelines/invalid/NN-*.toml` starts with `# expect: FILE:LINE:COL: TEXT`
/// (FILE is the fixture, or the file it includes where the mistake is); the run must fail with
/// exit 2 and print exactly that after the fixture directory, without a single request to the
/// (serving) local cloud.
#[test]
fn malformed_pipelines_are_refused_with_their_location_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let _served = serve(&state);
    let requests = || {
        let out = kmsflow(&[
            "local",
            "requests",
            "--state",
            state.to_str().unwrap(),
            "--output",
            "json",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| !r["path"].as_str().unwrap_or("").starts_with("/_admin"))
                    .count()
            })
            .unwrap()
    };
    let before = requests();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pipelines/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .chars()
                .next()
                .unwrap()
                .is_ascii_digit()
        })
        .collect();
    files.sort();
    assert!(files.len() >= 15, "at least 15 malformed pipelines: {}", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expect = text.lines().next().unwrap().strip_prefix("# expect: ").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
            .arg("run")
            .arg(file)
            .env("KMSFLOW_LOCAL_STATE", &state)
            .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
            .env("KMSFLOW_RUNS_DIR", dir.path().join("runs"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", file.display());
        let wanted = format!("{}/{expect}", fixtures.display());
        assert!(
            stderr.contains(&wanted),
            "{}:\n  wanted: {wanted}\n  got: {stderr}",
            file.display()
        );
    }
    assert_eq!(requests(), before, "no malformed pipeline reached the cloud");
    assert!(!dir.path().join("runs").exists(), "no run was started");
}

/// Seeds cluster `name` in rg1 (Kubernetes 1.30, user-assigned identity) with `secrets` secrets
/// across three namespaces.
fn seed_cluster(dir: &Path, state: &Path, name: &str, secrets: usize) {
    let st = state.to_str().unwrap();
    let out = kmsflow_in(dir, state, &["local", "seed-cluster", "--state", st, "--name", name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if secrets > 0 {
        let n = secrets.to_string();
        let out = kmsflow_in(
            dir,
            state,
            &["local", "seed", "--state", st, name, "--count", &n, "--namespaces", "3"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The local cloud's published profile in `state`.
fn profile_of(state: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("profile.json")).unwrap()).unwrap()
}

/// Resource group `rg1` of the default subscription.
fn rg1(profile: &Value) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg1",
        profile["default_subscription"].as_str().unwrap()
    )
}

/// Waits for a run directory under `runs` that is not in `before`; returns its journal path.
fn new_journal(runs: &Path, before: &std::collections::BTreeSet<std::path::PathBuf>) -> std::path::PathBuf {
    loop {
        let new: Vec<_> = std::fs::read_dir(runs)
            .map(|d| d.map(|e| e.unwrap().path()).filter(|p| !before.contains(p)).collect())
            .unwrap_or_default();
        if let Some(p) = new.first() {
            return p.join("journal.ndjson");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `kmsflow ARGS…` with the state, cache and runs directories of one test.
fn kmsflow_in(dir: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(args)
        .env("KMSFLOW_LOCAL_STATE", state)
        .env("KMSFLOW_CACHE_DIR", dir.join("cache"))
        .env("KMSFLOW_RUNS_DIR", dir.join("runs"))
        .output()
        .unwrap()
}

fn journal_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

/// The single run directory created since `before` (run ids sort by time).
fn newest_run(runs: &Path) -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(runs).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs.pop().unwrap()
}

/// The end state the enable + rewrite pipeline promises for cluster `name`, checked from the
/// local cloud: KMS on with the vault's one key version, one access policy for the cluster's
/// identity, every secret current.
fn assert_enabled(dir: &Path, state: &Path, name: &str, vault: &str, secrets: usize) {
    let st = state.to_str().unwrap();
    let keys = kmsflow_in(dir, state, &["local", "keys", "--state", st, vault, "--output", "json"]);
    let keys: Value = serde_json::from_slice(&keys.stdout).unwrap();
    let keys = keys["value"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{name}: exactly one key version: {keys:?}");
    let kid = keys[0]["key"]["kid"].as_str().unwrap().to_string();
    let out = kmsflow_in(dir, state, &["local", "resources", "--state", st, "--output", "json"]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = all["value"].as_array().unwrap();
    let cluster = all
        .iter()
        .find(|r| {
            r["id"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .ends_with(&format!("/managedclusters/{name}"))
        })
        .unwrap();
    let kms = &cluster["properties"]["securityProfile"]["azureKeyVaultKms"];
    assert_eq!(kms["enabled"], true, "{name}: {kms}");
    assert_eq!(kms["keyId"], kid.as_str(), "{name}");
    let identity = cluster["identity"]["userAssignedIdentities"].as_object().unwrap();
    let principal = identity.values().next().unwrap()["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let vault_doc = all
        .iter()
        .find(|r| {
            r["id"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .ends_with(&format!("/vaults/{vault}"))
        })
        .unwrap();
    let policies = vault_doc["properties"]["accessPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["objectId"] == principal.as_str())
        .count();
    assert_eq!(policies, 1, "{name}: one access policy for the cluster identity");
    let inspect = kmsflow_in(dir, state, &["local", "inspect", "--state", st, name]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert_eq!(
        text.lines().last(),
        Some(format!("current: {secrets}, stale: 0, plain: 0").as_str()),
        "{name}: every secret under the new key"
    );
}

/// design.md §6 and issue 6: SIGKILL the runner at many points of an enable + rewrite run, resume,
/// and the end state is the uninterrupted one, with no repeated side effect.
#[test]
fn a_run_killed_at_any_point_and_resumed_ends_like_an_uninterrupted_one() {
    const SECRETS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let _served = serve(&state);
    let st = state.to_str().unwrap();
    let profile = profile_of(&state);
    let rg = rg1(&profile);
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/enable-public.toml");
    let prepare = |name: &str| seed_cluster(dir.path(), &state, name, SECRETS);
    let run_args = |name: &str, vault: &str| -> Vec<String> {
        vec![
            "run".into(),
            pipeline.display().to_string(),
            "--set".into(),
            format!("resource-group={rg}"),
            "--set".into(),
            format!("cluster={rg}/providers/Microsoft.ContainerService/managedClusters/{name}"),
            "--set".into(),
            format!("vault-name={vault}"),
            "--set".into(),
            "page-size=4".into(),
        ]
    };
    let command = |args: &[String]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kmsflow"));
        c.args(args)
            .env("KMSFLOW_LOCAL_STATE", &state)
            .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
            .env("KMSFLOW_RUNS_DIR", dir.path().join("runs"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };

    // The uninterrupted run: how many journal records a whole run writes.
    prepare("crash0");
    let out = command(&run_args("crash0", "kv-crash0")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let baseline = journal_lines(&newest_run(&dir.path().join("runs")).join("journal.ndjson"));
    assert_enabled(dir.path(), &state, "crash0", "kv-crash0", SECRETS);
    assert!(baseline >= 24, "a whole run journals {baseline} records");
    eprintln!("an uninterrupted run journals {baseline} records");

    let mut killed_at = std::collections::BTreeSet::new();
    // 22 kill points spread over the whole run (every journaled record when the run is short).
    let points: std::collections::BTreeSet<usize> = (0..22).map(|i| 2 + i * (baseline - 3) / 21).collect();
    for point in points {
        let name = format!("crash{point}");
        let vault = format!("kv-crash{point}");
        prepare(&name);
        let before: std::collections::BTreeSet<_> = std::fs::read_dir(dir.path().join("runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let mut child = command(&run_args(&name, &vault)).spawn().unwrap();
        // Wait for the run's journal to appear, then for `point` records, then SIGKILL.
        let journal = new_journal(&dir.path().join("runs"), &before);
        while journal_lines(&journal) < point && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        killed_at.insert(journal_lines(&journal));
        let run_id = journal
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let resumed = kmsflow_in(dir.path(), &state, &["resume", &run_id]);
        assert!(
            resumed.status.success(),
            "resume after record {point}: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_enabled(dir.path(), &state, &name, &vault, SECRETS);
        let show = kmsflow_in(dir.path(), &state, &["runs", "show", &run_id]);
        assert!(show.status.success(), "{}", String::from_utf8_lossy(&show.stderr));
    }
    assert!(
        killed_at.len() >= 20,
        "killed at {} distinct points: {killed_at:?}",
        killed_at.len()
    );
    eprintln!(
        "killed after {} distinct journal records: {killed_at:?}",
        killed_at.len()
    );
    // Nothing was ever deleted.
    let log = kmsflow_in(
        dir.path(),
        &state,
        &["local", "requests", "--state", st, "--output", "json"],
    );
    let log: Value = serde_json::from_slice(&log.stdout).unwrap();
    assert!(log["value"].as_array().unwrap().iter().all(|r| r["method"] != "DELETE"));
}

/// The two-key rule across runs: a rotation whose rewrite was interrupted blocks the next one
/// (which creates nothing) until the first is resumed and completed.
#[test]
fn a_second_rotation_is_refused_until_the_interrupted_first_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let _served = serve(&state);
    let st = state.to_str().unwrap();
    let profile = profile_of(&state);
    let rg = rg1(&profile);
    let cluster = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks-rot");
    seed_cluster(dir.path(), &state, "aks-rot", 40);
    let workflows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let args = |file: &str| -> Vec<String> {
        vec![
            "run".into(),
            workflows.join(file).display().to_string(),
            "--set".into(),
            format!("resource-group={rg}"),
            "--set".into(),
            format!("cluster={cluster}"),
            "--set".into(),
            "vault-name=kv-rot1".into(),
            "--set".into(),
            "page-size=2".into(),
        ]
    };
    let run = |file: &str| {
        let a = args(file);
        kmsflow_in(dir.path(), &state, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let versions = || {
        let out = kmsflow_in(
            dir.path(),
            &state,
            &["local", "keys", "--state", st, "kv-rot1", "--output", "json"],
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["value"].as_array().unwrap().len()
    };
    let summary = || {
        let out = kmsflow_in(dir.path(), &state, &["local", "inspect", "--state", st, "aks-rot"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    let enabled = run("enable-public.toml");
    assert!(enabled.status.success(), "{}", String::from_utf8_lossy(&enabled.stderr));
    assert_eq!(versions(), 1);

    // The first rotation, killed while it rewrites.
    let runs = dir.path().join("runs");
    let before: std::collections::BTreeSet<_> = std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().path()).collect();
    let a = args("rotate.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(&a)
        .env("KMSFLOW_LOCAL_STATE", &state)
        .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
        .env("KMSFLOW_RUNS_DIR", &runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = new_journal(&runs, &before);
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.lines().any(|l| l.contains("kubernetes.rewrite-secrets-page")) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the rotation finished before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(versions(), 2);
    let interrupted = summary();
    assert!(
        !interrupted.contains("stale: 0"),
        "the rewrite was cut short: {interrupted}"
    );

    // A second rotation refuses before creating anything.
    let second = run("rotate.toml");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("RotationNotCompleted") || stderr.contains("RotationNotCompleted"),
        "{stdout}{stderr}"
    );
    assert_eq!(versions(), 2, "the refused rotation made no key version");

    // Resuming the first completes it; then the next rotation goes through.
    let run_id = journal
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let resumed = kmsflow_in(dir.path(), &state, &["resume", &run_id]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(summary(), "current: 40, stale: 0, plain: 0");
    let third = run("rotate.toml");
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    assert_eq!(versions(), 3);
    assert_eq!(summary(), "current: 40, stale: 0, plain: 0");
}

/// `plan` changes nothing and says what each step would change; `runs list|show` read the
/// journal; `resume` refuses a pipeline that changed since the run started.
#[test]
fn plan_history_and_a_changed_pipeline_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let _served = serve(&state);
    let st = state.to_str().unwrap();
    let profile = profile_of(&state);
    let rg = rg1(&profile);
    let cluster = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks-plan");
    seed_cluster(dir.path(), &state, "aks-plan", 0);
    // A copy of the shipped pipeline (and its fragments) that the test may edit.
    let wf = dir.path().join("workflows");
    std::fs::create_dir_all(wf.join("fragments")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    for f in [
        "enable-public.toml",
        "fragments/enable-public-vars.toml",
        "fragments/rewrite.toml",
        "fragments/cluster-vars.toml",
    ] {
        std::fs::copy(src.join(f), wf.join(f)).unwrap();
    }
    let pipeline = wf.join("enable-public.toml");
    let sets = [
        format!("resource-group={rg}"),
        format!("cluster={cluster}"),
        "vault-name=kv-plan1".to_string(),
    ];
    let with_sets = |cmd: &str| {
        let mut a = vec![cmd.to_string(), pipeline.display().to_string()];
        for s in &sets {
            a.push("--set".into());
            a.push(s.clone());
        }
        a
    };
    let call = |args: Vec<String>| kmsflow_in(dir.path(), &state, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let writes = || {
        let out = kmsflow_in(
            dir.path(),
            &state,
            &["local", "requests", "--state", st, "--output", "json"],
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                let p = r["path"].as_str().unwrap();
                r["method"] != "GET"
                    && !p.starts_with("/_admin")
                    && !p.contains("/oauth2/")
                    && !p.ends_with("/listClusterAdminCredential")
            })
            .count()
    };

    let before = writes();
    let plan = call(with_sets("plan"));
    let text = String::from_utf8_lossy(&plan.stdout);
    // Exit 0: every step could be planned; `verify` runs with `enable`'s key id, known after apply.
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stderr));
    assert!(
        text.contains("enable (enable-public): would change: keyvault.ensure-vault"),
        "{text}"
    );
    assert!(
        text.contains("rewrite (rewrite-secrets): would change: kubernetes.rewrite-secrets-page"),
        "{text}"
    );
    assert!(
        text.contains("verify (verify): runs after apply, with values known only then"),
        "{text}"
    );
    assert!(
        text.contains("expect-key-id ← steps.enable.outputs.key-id (known after apply)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("cluster = {cluster}")),
        "the known values are listed: {text}"
    );
    assert_eq!(writes(), before, "plan wrote nothing");

    // A whole run, then its history.
    assert!(kmsflow_in(
        dir.path(),
        &state,
        &["local", "seed-cluster", "--state", st, "--name", "aks-other"]
    )
    .status
    .success());
    let failed = call(with_sets("run"));
    assert!(failed.status.success(), "{}", String::from_utf8_lossy(&failed.stderr));
    let list = kmsflow_in(dir.path(), &state, &["runs", "list", "--output", "json"]);
    let runs: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[0]["pipeline"], "enable-public");
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let show = kmsflow_in(dir.path(), &state, &["runs", "show", &id]);
    let timeline = String::from_utf8_lossy(&show.stdout);
    assert!(
        timeline.contains("▶ enable (enable-public)") && timeline.contains("aks.set-kms"),
        "{timeline}"
    );
    let resumed = kmsflow_in(dir.path(), &state, &["resume", &id]);
    assert!(resumed.status.success());
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("nothing to resume"));

    // Interrupt a run (its lock dies with it), change the pipeline, and resume: refused.
    let mut args = with_sets("run");
    args.push("--set".into());
    args.push(format!(
        "cluster={rg}/providers/Microsoft.ContainerService/managedClusters/aks-other"
    ));
    let runs_dir = dir.path().join("runs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(&args)
        .env("KMSFLOW_LOCAL_STATE", &state)
        .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
        .env("KMSFLOW_RUNS_DIR", &runs_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = loop {
        let dirs: Vec<_> = std::fs::read_dir(&runs_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with(&id))
            .collect();
        if let Some(d) = dirs.first() {
            break d.join("journal.ndjson");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    while journal_lines(&journal) < 4 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let second = journal
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, text.replace("timeout = \"1h\"", "timeout = \"2h\"")).unwrap();
    let refused = kmsflow_in(dir.path(), &state, &["resume", &second]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("changed since run") && stderr.contains("--allow-changed"),
        "{stderr}"
    );
    let allowed = kmsflow_in(dir.path(), &state, &["resume", &second, "--allow-changed"]);
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
}

/// A pipeline of hostile `test-hostile` steps (pinned), one per class of issue 11, each with
/// narrow grants: encoded traversal through every capability that takes an id, credential
/// actions spelled every way, writes that need more than `write`, and unchecked URL parts.
fn hostile_pipeline(dir: &Path, rg1: &str, rg2: &str) -> std::path::PathBuf {
    let wasm = std::path::PathBuf::from(kmsflow::test_plugin("test-hostile").unwrap());
    let sha = kmsflow::sha256_hex(&std::fs::read(&wasm).unwrap());
    let aks1 = format!("{rg1}/providers/Microsoft.ContainerService/managedClusters/aks1");
    let aks2 = format!("{rg2}/providers/Microsoft.ContainerService/managedClusters/aks2");
    let vault = format!("{rg1}/providers/Microsoft.KeyVault/vaults/kv-hostile");
    let climb = format!("{aks1}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/rg2/providers/Microsoft.ContainerService/managedClusters/aks2");
    let climb_trailing = format!("{aks1}/x/%2e%2e/");
    let step = |id: &str, mode: &str, targets: &[String], extra: &str, scope: &str, actions: &str| {
        let list = targets.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
        format!(
            "[[steps]]\nid = \"{id}\"\nuses = \"{}\"\nsha256 = \"{sha}\"\n[steps.with]\nmode = \"{mode}\"\n\
             targets = [{list}]\n{extra}\n[[steps.grants]]\nscope = \"{scope}\"\nactions = [{actions}]\n\n",
            wasm.display()
        )
    };
    let mut toml = String::from("[pipeline]\nname = \"hostile\"\n\n");
    // 1. Encoded traversal, with grants on aks1 only.
    // The last target is aks1 itself: allowed, so the wire has something to check.
    let climbs = [
        climb.clone(),
        climb_trailing.clone(),
        format!("{aks1}/.."),
        aks2.clone(),
        aks1.clone(),
    ];
    for (id, mode) in [
        ("traversal-arm", "arm-get"),
        ("traversal-aks", "aks-get"),
        ("traversal-kms", "aks-set-kms"),
        ("traversal-kube", "kube-put-state"),
    ] {
        let targets = if mode == "aks-set-kms" {
            &climbs[..4]
        } else {
            &climbs[..]
        };
        toml += &step(id, mode, targets, "", &aks1, "\"read\", \"kms\"");
    }
    // 2. Credentials, with every action on the whole resource group.
    let credentials = vec![
        format!("{aks1}/listClusterAdminCredential/"),
        format!("{aks1}/x/%2e%2e/listClusterAdminCredential"),
        format!("{aks1}/listClusterAdminCredential"),
        format!("{aks1}/listClusterUserCredential"),
        format!("{aks1}/runCommand"),
        format!("{aks1}/accessProfiles/clusterAdmin/listCredential"),
        format!("{rg1}/providers/Microsoft.Storage/storageAccounts/sa1/listKeys"),
        format!("{rg1}/providers/Microsoft.DocumentDB/databaseAccounts/db1/listConnectionStrings"),
    ];
    let all = "\"read\", \"write\", \"keys\", \"roles\", \"kms\", \"upgrade\", \"secrets.rewrite\"";
    toml += &step("credentials-post", "arm-post", &credentials, "", rg1, all);
    let reads = vec![
        format!("{aks1}/accessProfiles/clusterAdmin"),
        format!("{vault}/secrets/s1"),
    ];
    toml += &step("credentials-get", "arm-get", &reads, "", rg1, all);
    // 3. `write` alone: a role assignment, the KMS block, a vault's access policies.
    let assignment =
        format!("{aks1}/providers/Microsoft.Authorization/roleAssignments/5c4a4f6e-5c49-4b6f-9d5e-0c6c2c1b0a11");
    let body = r#"body = '{"properties":{"roleDefinitionId":"x","principalId":"y"}}'"#;
    toml += &step(
        "write-roles",
        "arm-put",
        &[assignment],
        body,
        rg1,
        "\"read\", \"write\"",
    );
    let kms = r#"body = '{"properties":{"securityProfile":{"azureKeyVaultKms":{"enabled":false}}}}'"#;
    toml += &step(
        "write-kms",
        "arm-patch",
        std::slice::from_ref(&aks1),
        kms,
        rg1,
        "\"read\", \"write\"",
    );
    let policies = r#"body = '{"properties":{"accessPolicies":[]}}'"#;
    toml += &step(
        "write-policies",
        "arm-patch",
        std::slice::from_ref(&vault),
        policies,
        rg1,
        "\"read\", \"write\"",
    );
    // The dedicated capabilities too: an RBAC vault makes its creator Crypto Officer (`roles`),
    // a cluster created with KMS on sets the KMS block (`kms`).
    let rw = "\"read\", \"write\"";
    toml += &step(
        "write-rbac-vault",
        "kv-ensure-vault-rbac",
        std::slice::from_ref(&vault),
        "",
        rg1,
        rw,
    );
    let identity = format!("path = \"{rg1}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aks3\"");
    let aks3 = format!("{rg1}/providers/Microsoft.ContainerService/managedClusters/aks3");
    toml += &step("write-kms-cluster", "aks-create-kms", &[aks3], &identity, rg1, rw);
    // 6. URL parts: api-versions, key names and versions.
    let versions = vec![
        "2024-01-01&$expand=x#".to_string(),
        "2024-01-01/../x".to_string(),
        "latest".to_string(),
    ];
    toml += &step(
        "api-version",
        "arm-api-version",
        &versions,
        &format!("path = \"{aks1}\""),
        rg1,
        "\"read\"",
    );
    let key_names = vec![
        "../keys/other".to_string(),
        "k1/versions".to_string(),
        "k%2f1".to_string(),
        "k1?x=1".to_string(),
    ];
    toml += &step(
        "key-names",
        "kv-key-name",
        &key_names,
        &format!("path = \"{vault}\""),
        rg1,
        "\"read\"",
    );
    let key_versions = vec![
        "../../x".to_string(),
        "ffff".to_string(),
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0/x".to_string(),
    ];
    toml += &step(
        "key-versions",
        "kv-key-version",
        &key_versions,
        &format!("path = \"{vault}\""),
        rg1,
        "\"read\"",
    );
    let path = dir.join("hostile.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn hostile_plugins_reach_nothing_outside_their_grants_and_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let _served = serve(&state);
    seed_cluster(dir.path(), &state, "aks1", 0);
    let st = state.to_str().unwrap();
    let out = kmsflow_in(
        dir.path(),
        &state,
        &[
            "local",
            "seed-cluster",
            "--state",
            st,
            "--name",
            "aks2",
            "--resource-group",
            "rg2",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profile = profile_of(&state);
    let rg1 = rg1(&profile);
    let rg2 = rg1.replace("/rg1", "/rg2");
    let log = |after: i64| -> Vec<Value> {
        let out = kmsflow_in(
            dir.path(),
            &state,
            &[
                "local",
                "requests",
                "--state",
                st,
                "--after",
                &after.to_string(),
                "--output",
                "json",
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["value"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| doc.as_array().cloned().unwrap_or_default())
    };
    let before = log(0).iter().filter_map(|r| r["seq"].as_i64()).max().unwrap_or(0);

    let pipeline = hostile_pipeline(dir.path(), &rg1, &rg2);
    let out = kmsflow_in(
        dir.path(),
        &state,
        &["run", pipeline.to_str().unwrap(), "--output", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let results = |id: &str| -> Vec<String> {
        let step = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap();
        step["outputs"]["results"]
            .as_str()
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    for id in ["traversal-arm", "traversal-aks", "traversal-kms", "traversal-kube"] {
        let r = results(id);
        // Encoded, trailing and dot-segment climbs are not resource ids; aks2 is simply not granted.
        assert_eq!(&r[..3], ["invalid:InvalidResourceId"; 3], "{id}");
        assert_eq!(r[3], "denied:GrantMissing", "{id}");
        if id != "traversal-kms" {
            assert!(r[4].starts_with("ok:"), "{id}: the granted cluster itself: {}", r[4]);
        }
    }
    for r in results("credentials-post").iter().chain(&results("credentials-get")) {
        assert!(
            r == "denied:CredentialsNotExposed" || r == "invalid:InvalidResourceId",
            "a credential request was not refused: {r}"
        );
    }
    assert_eq!(results("credentials-post")[2], "denied:CredentialsNotExposed");
    for id in [
        "write-roles",
        "write-kms",
        "write-policies",
        "write-rbac-vault",
        "write-kms-cluster",
    ] {
        assert_eq!(results(id), ["denied:GrantMissing"], "{id}");
    }
    for id in ["api-version", "key-names", "key-versions"] {
        assert!(
            results(id).iter().all(|r| r == "invalid:InvalidArgument"),
            "{id}: {:?}",
            results(id)
        );
    }

    // The oracle: what reached the wire. Nothing outside rg1 (Kubernetes: outside aks1), nothing
    // non-canonical, no smuggled query, no credential but the host's own fetch of aks1's admin
    // credential (which stays in the host), and no write but the state ConfigMap of aks1.
    let sent = log(before);
    let rg1_lower = rg1.to_ascii_lowercase();
    let aks1 = format!("{rg1_lower}/providers/microsoft.containerservice/managedclusters/aks1");
    let mut reads_of_aks1 = 0;
    for r in &sent {
        let path = r["path"].as_str().unwrap_or_default();
        let method = r["method"].as_str().unwrap_or_default();
        if path.starts_with("/_admin") || path.contains("/oauth2/") {
            continue;
        }
        let lower = path.to_ascii_lowercase();
        assert!(
            !lower.contains('%') && !lower.contains("/../") && !lower.ends_with("/..") && !lower.contains("//"),
            "non-canonical path on the wire: {method} {path}"
        );
        let query = r["query"].as_str().unwrap_or_default();
        assert!(!query.contains("expand"), "a smuggled query reached the wire: {query}");
        if let Some(k8s) = lower.strip_prefix("/k8s") {
            assert!(
                k8s.starts_with(&format!("{aks1}/")),
                "Kubernetes call to another cluster: {path}"
            );
            if method != "GET" {
                assert!(
                    k8s.contains("/namespaces/kube-system/configmaps"),
                    "a Kubernetes write: {method} {path}"
                );
            }
            continue;
        }
        assert!(
            lower.starts_with(&rg1_lower),
            "a request left the grant: {method} {path}"
        );
        if lower == format!("{aks1}/listclusteradmincredential") && method == "POST" {
            continue;
        }
        for word in [
            "credential",
            "runcommand",
            "listkeys",
            "accessprofiles",
            "connectionstrings",
            "/secrets/",
        ] {
            assert!(
                !lower.contains(word),
                "a credential request reached the wire: {method} {path}"
            );
        }
        assert_eq!(method, "GET", "a write reached the wire: {path}");
        if lower == aks1 {
            reads_of_aks1 += 1;
        }
    }
    assert!(
        reads_of_aks1 >= 2,
        "the allowed reads of aks1 should be on the wire ({reads_of_aks1})"
    );
}

/// An AKS operation stuck in `Updating` (a known AKS failure mode) fails the step when the
/// target's retry deadline passes, naming the operation; once it is unstuck, `resume` finishes.
#[test]
fn a_stuck_operation_fails_at_the_deadline_and_resume_finishes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let _served = serve_with(&state, &["--vault-provisioning", "1s", "--rbac-propagation", "1s"]);
    seed_cluster(dir.path(), &state, "aks1", 12);
    let profile = profile_of(&state);
    let rg = rg1(&profile);
    let cluster = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks1");
    std::fs::write(
        dir.path().join("kmsflow.toml"),
        "default-target = \"lab\"\n[targets.lab]\ncloud = \"local\"\nstate-dir = \"cloud\"\n\
         [targets.lab.retry]\ndeadline = \"6s\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kmsflow"))
            .args(args)
            .current_dir(dir.path())
            .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
            .env("KMSFLOW_RUNS_DIR", dir.path().join("runs"))
            .env("KMSFLOW_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap()
    };
    // Shipped pipelines by name and resources by name, from a directory holding only
    // kmsflow.toml: the subscription is the local target's.
    let out = run(&[
        "run",
        "enable-public",
        "-g",
        "rg1",
        "--cluster",
        "aks1",
        "--vault",
        "kv-stuck1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let st = state.to_str().unwrap();
    let hang = |duration: &str| {
        let out = kmsflow_in(
            dir.path(),
            &state,
            &[
                "local",
                "hang",
                "--state",
                st,
                "--resource",
                &cluster,
                "--for",
                duration,
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let plan = run(&[
        "plan",
        "rotate",
        "-g",
        "rg1",
        "--cluster",
        "aks1",
        "--vault",
        "kv-stuck1",
    ]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stderr));
    assert!(
        plan_text.contains(&format!("cluster = {cluster}")),
        "names expanded to ids: {plan_text}"
    );
    assert!(plan_text.contains("(known after apply)"), "{plan_text}");

    let out = run(&[
        "run",
        "rotate",
        "-g",
        "rg1",
        "--cluster",
        "aks1",
        "--vault",
        "kv-stuck1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    hang("300s");
    // The shipped pipeline by name, from a directory holding only kmsflow.toml.
    let started = std::time::Instant::now();
    let out = run(&["run", "disable", "-g", "rg1", "--cluster", "aks1"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("OperationTimedOut") && stderr.contains("is still"),
        "{stderr}"
    );
    assert!(
        stderr.contains("operation "),
        "the message names the operation: {stderr}"
    );
    assert!(
        took < std::time::Duration::from_secs(120),
        "failed at the deadline, not the hang: {took:?}"
    );
    let run_id = stderr
        .split("kmsflow resume ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no resume command: {stderr}"))
        .to_string();

    hang("0s");
    let out = run(&["resume", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(
        &kmsflow_in(
            dir.path(),
            &state,
            &["local", "resources", "--state", st, "--output", "json"],
        )
        .stdout,
    )
    .unwrap();
    let text = doc.to_string();
    assert!(text.contains("aks1"), "{text}");
    let summary = kmsflow_in(
        dir.path(),
        &state,
        &["local", "inspect", "--state", st, "aks1", "--summary"],
    );
    let summary = String::from_utf8_lossy(&summary.stdout);
    assert!(
        summary.contains("plain: 12"),
        "KMS is off and every secret rewritten: {summary}"
    );
}

/// `kmsflow local inspect --output json | head -1`: the reader goes away after one line of a
/// document larger than a pipe holds; kmsflow stops quietly with exit code 141 (no panic).
#[test]
fn local_inspect_into_a_pipe_closed_after_one_line_exits_141_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _served = serve(&state);
    seed_cluster(dir.path(), &state, "aks-pipe", 2000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["local", "inspect", "--output", "json", "--state"])
        .arg(&state)
        .arg("aks-pipe")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "{\n");
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

/// A vault `name` in rg1 with the operator allowed to create keys, provisioned; then key `key`
/// created in it. Returns the key's versioned id, as the local cloud minted it.
async fn new_key(c: &Client, name: &str, key: &str) -> String {
    let sub = c.profile["default_subscription"].as_str().unwrap().to_string();
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg1");
    let (status, doc) = c
        .arm(reqwest::Method::PUT, &rg, json!({"location": "westeurope"}))
        .await;
    assert!(status == 200 || status == 201, "{doc}");
    let vault = format!("{rg}/providers/Microsoft.KeyVault/vaults/{name}");
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
    for _ in 0..300 {
        let (_, doc) = c.arm(reqwest::Method::GET, &vault, json!({})).await;
        if doc["properties"]["provisioningState"] == "Succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, created) = c
        .kv(
            reqwest::Method::POST,
            &format!("{vault_uri}/keys/{key}/create"),
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    created["key"]["kid"].as_str().unwrap().to_string()
}

/// `workflows/check-key.toml` on the id of a key the local cloud created: the version it reports
/// is the one Key Vault minted, not a value written in the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_key_reports_the_version_the_local_cloud_minted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cloud");
    let _served = serve(&state);
    let c = client(&state, "kv-check1").await;
    let kid = new_key(&c, "kv-check1", "etcd-kek").await;
    let (rest, version) = kid.rsplit_once('/').unwrap();
    assert!(rest.ends_with("/keys/etcd-kek"), "{kid}");
    assert_eq!(version.len(), 32, "{kid}");
    let suffix = c.profile["keyvault_dns_suffix"].as_str().unwrap();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    let key_id = format!("key-id={kid}");
    let dns_suffix = format!("dns-suffix={suffix}");
    let out = kmsflow_in(
        dir.path(),
        &state,
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--target",
            "offline",
            "--output",
            "json",
            "--set",
            &key_id,
            "--set",
            &dns_suffix,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["steps"][0]["outputs"]["key_version"], version, "{doc}");
    assert_eq!(doc["steps"][0]["outputs"]["vault_name"], "kv-check1", "{doc}");
    assert_eq!(doc["steps"][0]["outputs"]["key_name"], "etcd-kek", "{doc}");
}
