//! Test helpers: a local cloud in a temporary directory, and clients that reach it the way an
//! Azure client would — HTTPS trusting its CA, `*.localhost` resolved to loopback, tokens from
//! its Entra endpoint through `azure_identity`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use kmsflow_localcloud::{CloudProfile, Config, LocalCloud, ADMIN_HEADER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;

/// Resolves every `*.localhost` name (and `localhost`) to 127.0.0.1, as RFC 6761 allows.
struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let ok = name.as_str() == "localhost" || name.as_str().ends_with(".localhost");
        Box::pin(async move {
            if ok {
                let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
                Ok(addrs)
            } else {
                Err("only *.localhost resolves in tests".into())
            }
        })
    }
}

/// The api-version a request on `path` carries: the one kmsflow's host uses for that type (the
/// local cloud checks api-versions per resource type, as ARM does).
pub fn api_version_for(path: &str) -> &'static str {
    let p = path.to_ascii_lowercase();
    if p.contains("/microsoft.authorization/") {
        "2022-04-01"
    } else if p.contains("/microsoft.containerservice/") {
        "2026-01-01"
    } else if p.contains("/microsoft.keyvault/") {
        "2025-05-01"
    } else if p.contains("/microsoft.managedidentity/") {
        "2023-01-31"
    } else {
        "2021-04-01"
    }
}

pub fn http_client(profile: &CloudProfile) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(profile.ca_pem.as_bytes()).unwrap())
        .dns_resolver(Arc::new(Loopback))
        .build()
        .unwrap()
}

pub struct Cloud {
    pub dir: tempfile::TempDir,
    pub cloud: Option<LocalCloud>,
    pub profile: CloudProfile,
    pub http: reqwest::Client,
    pub arm_token: String,
    pub kv_token: String,
}

pub async fn start() -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir).await
}

pub async fn start_in(dir: tempfile::TempDir) -> Cloud {
    start_configured(dir, |_| {}).await
}

/// A local cloud in `dir` whose `Config` (from `Config::new`: no RBAC propagation delay, so the
/// suite stays fast) `configure` may change first.
pub async fn start_configured(dir: tempfile::TempDir, configure: impl FnOnce(&mut Config)) -> Cloud {
    let mut config = Config::new(dir.path());
    configure(&mut config);
    let cloud = LocalCloud::start(config).await.expect("local cloud starts");
    let profile = cloud.profile().clone();
    let http = http_client(&profile);
    let credential = credential(&profile, &http, &profile.operator.client_secret);
    let arm_token = token(&credential, &profile.arm_audience).await;
    let kv_token = token(&credential, &profile.keyvault_audience).await;
    Cloud {
        dir,
        cloud: Some(cloud),
        profile,
        http,
        arm_token,
        kv_token,
    }
}

/// The production credential type, pointed at the local cloud's Entra endpoint.
pub fn credential(profile: &CloudProfile, http: &reqwest::Client, secret: &str) -> Arc<ClientSecretCredential> {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = profile.authority_host.clone();
    let client_options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..Default::default()
    };
    let options = ClientSecretCredentialOptions { client_options };
    ClientSecretCredential::new(
        &profile.tenant_id,
        profile.operator.client_id.clone(),
        Secret::new(secret.to_string()),
        Some(options),
    )
    .unwrap()
}

pub async fn token(credential: &Arc<ClientSecretCredential>, audience: &str) -> String {
    let scope = format!("{audience}/.default");
    credential
        .get_token(&[&scope], None)
        .await
        .expect("token")
        .token
        .secret()
        .to_string()
}

impl Cloud {
    pub fn sub(&self) -> &str {
        &self.profile.default_subscription
    }

    pub fn rg_id(&self, rg: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{rg}", self.sub())
    }

    /// An ARM request with the operator's token; returns status and JSON body.
    pub async fn arm(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.arm_with(&self.arm_token, method, path, body).await
    }

    pub async fn arm_with(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if path.contains("api-version=") {
            format!("{}{}", self.profile.resource_manager.trim_end_matches('/'), path)
        } else {
            format!(
                "{}{}{sep}api-version={}",
                self.profile.resource_manager.trim_end_matches('/'),
                path,
                api_version_for(path)
            )
        };
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An ARM request with extra headers; returns status, headers and the JSON body (`Null` when
    /// there is none). `path` may carry its own `api-version`.
    pub async fn arm_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let base = self.profile.resource_manager.trim_end_matches('/');
        let url = if path.contains("api-version=") {
            format!("{base}{path}")
        } else {
            format!("{base}{path}{sep}api-version={}", api_version_for(path))
        };
        self.get_or_send(method, &url, body, headers).await
    }

    /// A request with the operator's ARM token to a full URL (an operation URL the cloud handed out).
    pub async fn get_or_send(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, url).bearer_auth(&self.arm_token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Changes run-time settings through the admin API; returns every setting.
    pub async fn settings(&self, settings: Value) -> Value {
        let (status, body) = self.admin(Method::PUT, "/_admin/settings", Some(settings)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A Key Vault data-plane request on `vault` with the operator's vault token.
    pub async fn kv(&self, method: Method, vault: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.kv_with(Some(&self.kv_token), method, vault, path, body).await.0
    }

    pub async fn kv_with(
        &self,
        token: Option<&str>,
        method: Method,
        vault: &str,
        path: &str,
        body: Option<Value>,
    ) -> ((StatusCode, Value), reqwest::header::HeaderMap) {
        let url = format!(
            "https://{vault}.{}:{}{path}?api-version=7.5",
            self.profile.keyvault_dns_suffix,
            self.port()
        );
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        ((status, serde_json::from_str(&text).unwrap_or(Value::Null)), headers)
    }

    /// Requests the cloud logged, the admin API's own excluded.
    pub async fn cloud_requests(&self) -> usize {
        self.admin(Method::GET, "/_admin/requests", None).await.1["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["path"].as_str().unwrap().starts_with("/_admin"))
            .count()
    }

    pub fn port(&self) -> u16 {
        self.profile
            .resource_manager
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{}", self.profile.resource_manager.trim_end_matches('/'), path);
        let mut req = self
            .http
            .request(method, url)
            .header(ADMIN_HEADER, &self.profile.admin_key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn resource_group(&self, rg: &str) {
        let (status, _) = self
            .arm(
                Method::PUT,
                &self.rg_id(rg),
                Some(serde_json::json!({"location": "westeurope"})),
            )
            .await;
        assert!(status.is_success(), "create rg {rg}: {status}");
    }

    /// Creates a vault (access-policy flavour unless `rbac`) and returns its id.
    pub async fn vault(&self, rg: &str, name: &str, rbac: bool, extra: Value) -> String {
        let id = format!("{}/providers/Microsoft.KeyVault/vaults/{name}", self.rg_id(rg));
        let mut props = serde_json::json!({
            "tenantId": self.profile.tenant_id, "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": rbac, "accessPolicies": [],
        });
        if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                p.insert(k.clone(), v.clone());
            }
        }
        let (status, body) = self
            .arm(
                Method::PUT,
                &id,
                Some(serde_json::json!({"location": "westeurope", "properties": props})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create vault {name}: {body}");
        // A new vault provisions (`RegisteringDns`) before its data plane answers, when the
        // cloud is set up so: wait for `Succeeded`, as a client of Azure must.
        let mut state = body["properties"]["provisioningState"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for _ in 0..600 {
            if state == "Succeeded" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let (_, doc) = self.arm(Method::GET, &id, None).await;
            state = doc["properties"]["provisioningState"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        assert_eq!(state, "Succeeded", "vault {name} never finished provisioning");
        id
    }

    /// Gives the operator every key permission on an access-policy vault.
    pub async fn operator_policy(&self, vault_id: &str, keys: &[&str]) {
        let body = serde_json::json!({"properties": {"accessPolicies": [{
            "tenantId": self.profile.tenant_id, "objectId": self.profile.operator.object_id,
            "permissions": {"keys": keys},
        }]}});
        let (status, resp) = self
            .arm(Method::PUT, &format!("{vault_id}/accessPolicies/add"), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{resp}");
    }
}

/// What a KMS-ready resource group holds: an identity with encrypt/decrypt on a public vault key.
pub struct KmsSetup {
    pub identity: String,
    pub principal: String,
    pub vault: String,
    pub key_id: String,
}

impl Cloud {
    pub async fn identity(&self, rg: &str, name: &str) -> (String, String) {
        let id = format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            self.rg_id(rg)
        );
        let (status, body) = self
            .arm(Method::PUT, &id, Some(serde_json::json!({"location": "westeurope"})))
            .await;
        assert!(status.is_success(), "{body}");
        (id, body["properties"]["principalId"].as_str().unwrap().to_string())
    }

    /// Creates a key in `vault_name` (operator needs create) and returns its versioned id.
    pub async fn key(&self, vault_name: &str, key: &str, kty: &str) -> String {
        let (status, body) = self
            .kv(
                Method::POST,
                vault_name,
                &format!("/keys/{key}/create"),
                Some(serde_json::json!({"kty": kty})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["key"]["kid"].as_str().unwrap().to_string()
    }

    /// rg1 with an identity that may encrypt/decrypt with an RSA key of a public vault.
    pub async fn kms_setup(&self, vault_name: &str) -> KmsSetup {
        self.resource_group("rg1").await;
        let (identity, principal) = self.identity("rg1", "aks-kms").await;
        let vault = self.vault("rg1", vault_name, false, serde_json::json!({})).await;
        self.operator_policy(&vault, &["create", "get", "list"]).await;
        let key_id = self.key(vault_name, "etcd", "RSA").await;
        self.policy(&vault, &principal, &["encrypt", "decrypt"]).await;
        KmsSetup {
            identity,
            principal,
            vault,
            key_id,
        }
    }

    pub async fn policy(&self, vault_id: &str, object_id: &str, keys: &[&str]) {
        let body = serde_json::json!({"properties": {"accessPolicies": [{
            "tenantId": self.profile.tenant_id, "objectId": object_id, "permissions": {"keys": keys}}]}});
        let (status, resp) = self
            .arm(Method::PUT, &format!("{vault_id}/accessPolicies/add"), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{resp}");
    }

    pub fn cluster_id(&self, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.ContainerService/managedClusters/{name}",
            self.rg_id("rg1")
        )
    }

    /// Polls the cluster until its provisioning state is terminal; returns the final document.
    pub async fn wait_cluster(&self, id: &str) -> Value {
        for _ in 0..100 {
            let (status, doc) = self.arm(Method::GET, id, None).await;
            assert_eq!(status, StatusCode::OK, "{doc}");
            let state = doc["properties"]["provisioningState"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if ["Succeeded", "Failed", "Canceled"].contains(&state.as_str()) {
                return doc;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("cluster {id} never settled");
    }
}

/// A cluster PUT body.
pub fn cluster_body(identity: Option<&str>, version: &str, vnet: bool, kms: Option<Value>) -> Value {
    let mut body = serde_json::json!({
        "location": "westeurope",
        "properties": {"kubernetesVersion": version, "dnsPrefix": "aks",
            "agentPoolProfiles": [{"name": "nodepool1", "count": 1, "vmSize": "Standard_D2s_v3", "mode": "System", "osType": "Linux"}],
            "apiServerAccessProfile": {"enableVnetIntegration": vnet}},
    });
    body["identity"] = match identity {
        Some(id) => serde_json::json!({"type": "UserAssigned", "userAssignedIdentities": {id: {}}}),
        None => serde_json::json!({"type": "SystemAssigned"}),
    };
    if let Some(kms) = kms {
        body["properties"]["securityProfile"] = serde_json::json!({"azureKeyVaultKms": kms});
    }
    body
}

pub fn public_kms(key_id: &str) -> Value {
    serde_json::json!({"enabled": true, "keyId": key_id, "keyVaultNetworkAccess": "Public", "keyVaultResourceId": ""})
}

/// A client of one cluster's Kubernetes API, built from its admin kubeconfig (the client
/// certificate is in `http`), or holding an Entra token in `token`.
pub struct Kube {
    pub http: reqwest::Client,
    pub server: String,
    /// A bearer token sent with every request (Entra-integrated clusters), if any.
    pub token: Option<String>,
    pub cluster_id: String,
}

/// The decoded kubeconfig YAML of a `CredentialResults` answer.
pub fn kubeconfig_yaml(creds: &Value) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(creds["kubeconfigs"][0]["value"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// The value of the first `key:` line of a kubeconfig.
pub fn kubeconfig_field(yaml: &str, key: &str) -> Option<String> {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().to_string())
}

/// An HTTP client trusting the cloud's CA that presents the client certificate of `yaml` (a
/// kubeconfig with `client-certificate-data` / `client-key-data`).
pub fn client_with_certificate(profile: &CloudProfile, yaml: &str) -> reqwest::Client {
    use base64::Engine;
    let decode = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(kubeconfig_field(yaml, k).unwrap_or_else(|| panic!("kubeconfig has no {k}")))
            .unwrap()
    };
    let mut pem = decode("client-certificate-data:");
    pem.extend(decode("client-key-data:"));
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(profile.ca_pem.as_bytes()).unwrap())
        .dns_resolver(Arc::new(Loopback))
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

impl Cloud {
    /// Creates cluster `name` (in rg1, identity from `s`) with `kms` and waits for it.
    pub async fn kms_cluster(&self, s: &KmsSetup, name: &str, version: &str, kms: Option<Value>) -> Kube {
        let (status, body) = self
            .arm(
                Method::PUT,
                &self.cluster_id(name),
                Some(cluster_body(Some(&s.identity), version, true, kms)),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let doc = self.wait_cluster(&self.cluster_id(name)).await;
        assert_eq!(doc["properties"]["provisioningState"], "Succeeded", "{doc}");
        self.kube(name).await
    }

    /// A client of cluster `name` with its admin kubeconfig's client certificate.
    pub async fn kube(&self, name: &str) -> Kube {
        let (status, creds) = self
            .arm(
                Method::POST,
                &format!("{}/listClusterAdminCredential", self.cluster_id(name)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{creds}");
        let yaml = kubeconfig_yaml(&creds);
        Kube {
            http: client_with_certificate(&self.profile, &yaml),
            server: kubeconfig_field(&yaml, "server:").unwrap(),
            token: None,
            cluster_id: self.cluster_id(name),
        }
    }

    /// Changes the cluster's KMS block by read-modify-write with If-Match, then waits.
    pub async fn set_kms(&self, name: &str, kms: Value) -> Value {
        let (_, mut doc) = self.arm(Method::GET, &self.cluster_id(name), None).await;
        doc["properties"]["securityProfile"] = serde_json::json!({"azureKeyVaultKms": kms});
        let (status, body) = self.arm(Method::PUT, &self.cluster_id(name), Some(doc)).await;
        assert!(status.is_success(), "{body}");
        self.wait_cluster(&self.cluster_id(name)).await
    }

    pub async fn inspect(&self, name: &str) -> Value {
        let (status, body) = self
            .admin(
                Method::GET,
                &format!("/_admin/inspect?cluster={}", self.cluster_id(name)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn seed_secrets(&self, name: &str, count: usize, namespaces: usize) {
        let body =
            serde_json::json!({"cluster": self.cluster_id(name), "count": count, "namespaces": namespaces, "size": 32});
        let (status, resp) = self.admin(Method::POST, "/_admin/seed-secrets", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
    }

    pub async fn restart_apiserver(&self, name: &str) {
        let (status, _) = self
            .admin(
                Method::POST,
                &format!("/_admin/restart-apiserver?cluster={}", self.cluster_id(name)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    /// The raw value the database holds for a key of a cluster, read from the file directly.
    pub fn raw(&self, cluster: &str, key: &str) -> Vec<u8> {
        let db = rusqlite::Connection::open_with_flags(
            self.dir.path().join("localcloud.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row(
            "SELECT value FROM etcd WHERE cluster = ?1 AND key = ?2",
            [self.cluster_id(cluster).to_ascii_lowercase(), key.to_string()],
            |r| r.get(0),
        )
        .unwrap()
    }
}

impl Kube {
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.server));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_secret(&self, ns: &str, name: &str, value: &str) -> (StatusCode, Value) {
        use base64::Engine;
        let body = serde_json::json!({"metadata": {"name": name}, "data": {"v": base64::engine::general_purpose::STANDARD.encode(value)}});
        self.request(Method::POST, &format!("/api/v1/namespaces/{ns}/secrets"), Some(body))
            .await
    }

    /// A no-op merge patch carrying the resourceVersion precondition: what the rewrite engine sends.
    pub async fn touch(&self, ns: &str, name: &str, rv: &str) -> (StatusCode, Value) {
        let body = serde_json::json!({"metadata": {"resourceVersion": rv}});
        let url = format!("{}/api/v1/namespaces/{ns}/secrets/{name}", self.server);
        let mut req = self.http.patch(url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Rewrites every secret with no-op updates (metadata-only list, then one touch each).
    pub async fn rewrite_all(&self) -> usize {
        let mut req = self.http.get(format!("{}/api/v1/secrets", self.server));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .header(
                "accept",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            )
            .send()
            .await
            .unwrap();
        let list: Value = resp.json().await.unwrap();
        let items = list["items"].as_array().unwrap().clone();
        for item in &items {
            let m = &item["metadata"];
            let (status, body) = self
                .touch(
                    m["namespace"].as_str().unwrap(),
                    m["name"].as_str().unwrap(),
                    m["resourceVersion"].as_str().unwrap(),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        items.len()
    }
}

impl Cloud {
    /// Assigns built-in role `role_guid` on `scope` to `principal` under assignment `name`.
    pub async fn assign_role(&self, scope: &str, role_guid: &str, principal: &str, name: &str) {
        let role = format!(
            "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}",
            self.sub()
        );
        let body = serde_json::json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}});
        let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
        let (status, resp) = self.arm(Method::PUT, &path, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
    }
}
