//! The Kubernetes side of the `kubernetes` capability: one `kube` client per cluster, built from
//! the cluster's admin credential (`listClusterAdminCredential`) or from a kubeconfig context the
//! target names, and the operations the WIT offers — none of which reads a secret's data.
//!
//! Requests go through `kube::Client::send`, not the typed `Api`, because the rewrite needs what
//! the typed layer drops: the continue token inside a `410 Expired` status, `Retry-After` on 429s
//! from API priority and fairness, and the `Audit-Id` of every answer for the journal.

use super::arm::{retry_after, ArmClient, CloudError, RetryPolicy};
use super::wire;
use crate::resource_id::ResourceId;
use crate::wit::kubernetes::{Pod, RewritePage, State};
use crate::wit::types::{Error as WitError, ErrorKind};
use base64::Engine;
use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod as KPod};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::params::{GetParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ObjectList, PartialObjectMeta, Request};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Name and namespace of the rotation-facts ConfigMap (design.md §6).
pub const STATE_NAMESPACE: &str = "kube-system";
pub const STATE_NAME: &str = "kmsflow-kms-state";

/// No-op updates in flight during a rewrite, unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Page size when the plugin passes 0; the API server caps what it returns anyway.
const DEFAULT_PAGE: u32 = 500;
const MAX_PAGE: u32 = 5000;

/// A kubeconfig context to use for one cluster instead of its admin credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeContext {
    /// The cluster's ARM resource id.
    pub cluster: String,
    pub kubeconfig: PathBuf,
    /// The context in that file; its current context when `None`.
    pub context: Option<String>,
}

/// A failed Kubernetes call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeError {
    /// The API server answered with a `Status` failure.
    #[error("{status} {reason}: {message}")]
    Api {
        status: u16,
        reason: String,
        message: String,
        /// `metadata.continue` of a `410 Expired` status: where a listing can restart.
        continue_token: Option<String>,
    },
    /// No usable answer within the retries and deadline.
    #[error("{0}")]
    Unavailable(String),
    /// No client could be built (credential, kubeconfig).
    #[error("{0}")]
    Client(String),
    /// The admin credential could not be fetched from ARM.
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

impl KubeError {
    /// The WIT error a plugin sees.
    pub fn to_wit(&self) -> WitError {
        match self {
            KubeError::Api {
                status,
                reason,
                message,
                ..
            } => {
                let kind = match *status {
                    400 | 422 => ErrorKind::Invalid,
                    401 | 403 => ErrorKind::Denied,
                    404 => ErrorKind::NotFound,
                    409 => ErrorKind::Conflict,
                    410 | 412 => ErrorKind::Precondition,
                    429 => ErrorKind::Throttled,
                    500..=599 => ErrorKind::Unavailable,
                    _ => ErrorKind::Internal,
                };
                WitError {
                    kind,
                    code: reason.clone(),
                    message: message.clone(),
                }
            }
            KubeError::Unavailable(m) => WitError {
                kind: ErrorKind::Unavailable,
                code: "KubernetesUnavailable".into(),
                message: m.clone(),
            },
            KubeError::Client(m) => WitError {
                kind: ErrorKind::Unavailable,
                code: "KubernetesClient".into(),
                message: m.clone(),
            },
            KubeError::Cloud(e) => e.to_wit(),
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            KubeError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type KResult<T> = Result<T, KubeError>;

/// One request, rebuilt for every attempt (an `http::Request` cannot be cloned).
#[derive(Debug, Clone)]
struct Plan {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Plan {
    fn from_request(req: http::Request<Vec<u8>>) -> Self {
        let (parts, body) = req.into_parts();
        Plan {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        }
    }

    fn request(&self) -> KResult<http::Request<Body>> {
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Body::from(self.body.clone()))
            .map_err(|e| KubeError::Client(format!("cannot build the request: {e}")))
    }
}

fn status_error(status: u16, body: &[u8]) -> KubeError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let reason = v["reason"].as_str().map(str::to_string).unwrap_or_else(|| {
        v["error"]["code"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.to_string())
    });
    let message = v["message"]
        .as_str()
        .or_else(|| v["error"]["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("the API server answered {status}"));
    KubeError::Api {
        status,
        reason,
        message,
        continue_token: v["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    }
}

/// The scope of the AKS server application (Entra-integrated clusters' API servers accept its
/// tokens; the application id is the same in every tenant).
pub const AKS_SERVER_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// A cluster's client plus the shared "slow down until" of its API server: a 429 seen by one
/// request pauses all of them, which is what API priority and fairness asks of a client.
#[derive(Clone)]
struct Cluster {
    client: kube::Client,
    not_before: Arc<Mutex<Instant>>,
}

/// Kubernetes clients for every cluster of one target.
pub struct KubeClients {
    arm: ArmClient,
    api_version: String,
    contexts: Vec<KubeContext>,
    policy: RetryPolicy,
    concurrency: usize,
    cache: tokio::sync::Mutex<HashMap<String, Cluster>>,
}

impl KubeClients {
    /// Clients that fetch each cluster's admin credential through `arm` (managed clusters
    /// api-version `api_version`), unless `contexts` names a kubeconfig for it.
    pub fn new(arm: ArmClient, api_version: &str, contexts: Vec<KubeContext>, policy: RetryPolicy) -> Self {
        KubeClients {
            arm,
            api_version: api_version.to_string(),
            contexts,
            policy,
            concurrency: DEFAULT_CONCURRENCY,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// No-op updates in flight during a rewrite (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    async fn config_for(&self, cluster: &ResourceId) -> KResult<kube::Config> {
        if let Some(ctx) = self
            .contexts
            .iter()
            .find(|c| ResourceId::parse(&c.cluster).is_ok_and(|id| id == *cluster))
        {
            // The runner's own file, still read through the bounded reader (regular file, size cap).
            let bytes = crate::limits::read_file(&ctx.kubeconfig, crate::limits::CONFIG_FILE_MAX, "kubeconfig files")
                .map_err(|e| KubeError::Client(e.to_string()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| KubeError::Client(format!("kubeconfig {} is not UTF-8", ctx.kubeconfig.display())))?;
            let kubeconfig = Kubeconfig::from_yaml(&text)
                .map_err(|e| KubeError::Client(format!("cannot read {}: {e}", ctx.kubeconfig.display())))?;
            let options = KubeConfigOptions {
                context: ctx.context.clone(),
                ..Default::default()
            };
            return kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| KubeError::Client(format!("kubeconfig {}: {e}", ctx.kubeconfig.display())));
        }
        // A cluster with Entra integration and `disableLocalAccounts` refuses the admin
        // credential; its API server takes Entra tokens for the AKS server application.
        let doc = self.arm.get(cluster, &self.api_version).await?.body;
        if doc["properties"]["disableLocalAccounts"] == json!(true) {
            return self.entra_config(cluster).await;
        }
        let kubeconfig = self
            .credential_kubeconfig(cluster, "listClusterAdminCredential")
            .await?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|_| KubeError::Client(format!("{cluster}: the admin kubeconfig has no usable context")))
    }

    /// The kubeconfig `action` (`listClusterAdminCredential`, `listClusterUserCredential`)
    /// returns. It holds credentials: errors name the cluster, never its content.
    async fn credential_kubeconfig(&self, cluster: &ResourceId, action: &str) -> KResult<Kubeconfig> {
        let id = cluster.child(&[action]).map_err(|e| KubeError::Client(e.to_string()))?;
        let credential = self.arm.post(&id, &self.api_version, None).await?;
        let encoded = credential.body["kubeconfigs"][0]["value"]
            .as_str()
            .ok_or_else(|| KubeError::Client(format!("{cluster}: {action} returned no kubeconfig")))?;
        let yaml = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| KubeError::Client(format!("{cluster}: the kubeconfig of {action} is not base64 UTF-8")))?;
        Kubeconfig::from_yaml(&yaml).map_err(|_| {
            KubeError::Client(format!(
                "{cluster}: the kubeconfig of {action} is not a valid kubeconfig"
            ))
        })
    }

    /// The API server and CA from the user kubeconfig (whose exec/kubelogin user is dropped),
    /// with an Entra token for the AKS server application obtained by kmsflow itself (no
    /// kubelogin). A token that expires makes a 401, after which the client is rebuilt with a
    /// fresh one.
    async fn entra_config(&self, cluster: &ResourceId) -> KResult<kube::Config> {
        let kubeconfig = self.credential_kubeconfig(cluster, "listClusterUserCredential").await?;
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|_| KubeError::Client(format!("{cluster}: the user kubeconfig has no usable context")))?;
        let token = self.arm.token_for(AKS_SERVER_SCOPE).await?;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        Ok(config)
    }

    async fn cluster(&self, cluster: &ResourceId) -> KResult<Cluster> {
        let key = cluster.to_string().to_ascii_lowercase();
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let mut config = self.config_for(cluster).await?;
        // One retry policy, ours (`execute`): kube's own layer would retry 429/503/504 below it
        // (up to 15 times, with waits up to 1000 s), multiplying budgets, hiding attempts from
        // the journal and bypassing the per-cluster Retry-After pause.
        config.default_retry = false;
        let client = kube::Client::try_from(config)
            .map_err(|e| KubeError::Client(format!("{cluster}: cannot build the Kubernetes client: {e}")))?;
        let c = Cluster {
            client,
            not_before: Arc::new(Mutex::new(Instant::now())),
        };
        cache.insert(key, c.clone());
        Ok(c)
    }

    /// Forgets a cluster's client, e.g. after a 401 (rotated credential, moved API server).
    async fn forget(&self, cluster: &ResourceId) {
        self.cache
            .lock()
            .await
            .remove(&cluster.to_string().to_ascii_lowercase());
    }

    /// Sends `req` with retries for 429 (honouring `Retry-After`, pausing every request to this
    /// cluster), 5xx and dropped connections, within the policy's attempts and deadline. Returns
    /// the body of a 2xx answer; any other answer becomes [`KubeError::Api`].
    async fn execute(&self, cluster: &Cluster, req: http::Request<Vec<u8>>) -> KResult<Vec<u8>> {
        let plan = Plan::from_request(req);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let pause = {
                let nb = *cluster.not_before.lock().unwrap_or_else(|p| p.into_inner());
                nb.saturating_duration_since(Instant::now())
            };
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let outcome = match cluster.client.send(plan.request()?).await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.into_body().collect_bytes().await {
                        Ok(bytes) => Ok((status, headers, bytes)),
                        Err(e) => Err(format!("reading the answer failed: {e}")),
                    }
                }
                Err(e) => Err(format!("request failed: {e}")),
            };
            let (wait, reason, wire_reason) = match outcome {
                Ok((status, headers, bytes))
                    if status != http::StatusCode::TOO_MANY_REQUESTS && !matches!(status.as_u16(), 500 | 502..=504) =>
                {
                    let audit = headers.get("audit-id").and_then(|v| v.to_str().ok());
                    wire::record(audit.or_else(|| headers.get("x-ms-request-id").and_then(|v| v.to_str().ok())));
                    if status.is_success() {
                        return Ok(bytes.to_vec());
                    }
                    return Err(status_error(status.as_u16(), &bytes));
                }
                Ok((status, headers, _)) => {
                    let wait = retry_after(&headers);
                    if let (true, Some(w)) = (status == http::StatusCode::TOO_MANY_REQUESTS, wait) {
                        let mut nb = cluster.not_before.lock().unwrap_or_else(|p| p.into_inner());
                        *nb = (*nb).max(Instant::now() + w.min(self.policy.max_delay));
                    }
                    let reason = match wait {
                        Some(w) => format!("{} Retry-After {}s", status.as_u16(), w.as_secs()),
                        None => status.as_u16().to_string(),
                    };
                    (wait, reason.clone(), reason)
                }
                Err(e) => (None, e, "connection failed".to_string()),
            };
            attempt += 1;
            let delay = self.policy.delay(attempt, wait);
            if attempt >= self.policy.max_attempts || started.elapsed() + delay > self.policy.deadline {
                return Err(KubeError::Unavailable(format!(
                    "{} {} gave up after {attempt} attempts: {reason}",
                    plan.method,
                    plan.uri.path()
                )));
            }
            wire::record_retry(&wire_reason);
            tracing::debug!(method = %plan.method, path = plan.uri.path(), attempt, ?delay, "retrying: {reason}");
            tokio::time::sleep(delay).await;
        }
    }

    /// Runs `op` on the cluster's client; after a 401 it rebuilds the client once (the admin
    /// credential may have been rotated) and tries again.
    async fn with_cluster<T, F, Fut>(&self, cluster: &ResourceId, op: F) -> KResult<T>
    where
        F: Fn(Cluster) -> Fut,
        Fut: std::future::Future<Output = KResult<T>>,
    {
        let c = self.cluster(cluster).await?;
        match op(c).await {
            Err(e) if e.status() == Some(401) => {
                self.forget(cluster).await;
                let c = self.cluster(cluster).await?;
                op(c).await
            }
            other => other,
        }
    }

    async fn list_secret_metadata(
        &self,
        c: &Cluster,
        limit: u32,
        token: Option<&str>,
    ) -> KResult<ObjectList<PartialObjectMeta<k8s_openapi::api::core::v1::Secret>>> {
        let mut lp = ListParams::default().limit(limit);
        if let Some(t) = token {
            lp = lp.continue_token(t);
        }
        let req = Request::new("/api/v1/secrets")
            .list_metadata(&lp)
            .map_err(|e| KubeError::Client(e.to_string()))?;
        let bytes = self.execute(c, req).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| KubeError::Unavailable(format!("the secret listing could not be parsed: {e}")))
    }

    /// Secrets in all namespaces, from metadata-only lists.
    pub async fn count_secrets(&self, cluster: &ResourceId) -> KResult<u64> {
        self.with_cluster(cluster, |c| async move {
            let mut total = 0u64;
            let mut token: Option<String> = None;
            loop {
                let page = self.list_secret_metadata(&c, DEFAULT_PAGE, token.as_deref()).await?;
                total += page.items.len() as u64;
                if let Some(rest) = page.metadata.remaining_item_count {
                    return Ok(total + rest.max(0) as u64);
                }
                match page.metadata.continue_.filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t),
                    None => return Ok(total),
                }
            }
        })
        .await
    }

    /// One page of the rewrite (design.md §7): list metadata from `token`, then a no-op merge
    /// patch with each item's `resourceVersion` as precondition, `concurrency` in flight. The API
    /// server re-encrypts the stale ones; the answers are metadata only.
    pub async fn rewrite_page(
        &self,
        cluster: &ResourceId,
        token: Option<&str>,
        page_size: u32,
    ) -> KResult<RewritePage> {
        let limit = match page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        self.with_cluster(cluster, |c| async move {
            let page = match self.list_secret_metadata(&c, limit, token).await {
                // 410: the snapshot behind the token expired; continue from where the server says,
                // or from the start (a second no-op update is harmless).
                Err(KubeError::Api {
                    status: 410,
                    continue_token,
                    ..
                }) => self.list_secret_metadata(&c, limit, continue_token.as_deref()).await?,
                other => other?,
            };
            let next = page.metadata.continue_.clone().filter(|t| !t.is_empty());
            let listed = page.items.len() as u32;
            let mut result = RewritePage {
                listed,
                rewritten: 0,
                conflicts: 0,
                gone: 0,
                next,
            };
            let targets: Vec<(String, String, String)> = page
                .items
                .into_iter()
                .filter_map(|item| {
                    let m = item.metadata;
                    Some((m.namespace?, m.name?, m.resource_version?))
                })
                .collect();
            let mut outcomes = stream::iter(targets)
                .map(|(ns, name, rv)| {
                    let c = c.clone();
                    async move { self.touch_secret(&c, &ns, &name, &rv).await }
                })
                .buffer_unordered(self.concurrency);
            let mut first_error = None;
            while let Some(outcome) = outcomes.next().await {
                match outcome {
                    Ok(()) => result.rewritten += 1,
                    Err(e) if e.status() == Some(409) => result.conflicts += 1,
                    Err(e) if e.status() == Some(404) => result.gone += 1,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(result),
            }
        })
        .await
    }

    /// The no-op update of one secret: `{"metadata":{"resourceVersion":rv}}` as a merge patch,
    /// answered as `PartialObjectMetadata` so no secret data comes back.
    async fn touch_secret(&self, c: &Cluster, ns: &str, name: &str, rv: &str) -> KResult<()> {
        // Names come from the server's listing; still, none may reshape the request path.
        let plain = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
        if !plain(ns) || !plain(name) {
            return Err(KubeError::Client(format!(
                "the API server listed a secret `{}/{}` that is not a Kubernetes name",
                crate::resource_id::shorten(ns),
                crate::resource_id::shorten(name)
            )));
        }
        let patch = Patch::Merge(json!({"metadata": {"resourceVersion": rv}}));
        let req = Request::new(format!("/api/v1/namespaces/{ns}/secrets"))
            .patch_metadata(name, &PatchParams::default(), &patch)
            .map_err(|e| KubeError::Client(e.to_string()))?;
        self.execute(c, req).await.map(drop)
    }

    /// Pods in `namespace` matching `selector`.
    pub async fn list_pods(&self, cluster: &ResourceId, namespace: &str, selector: &str) -> KResult<Vec<Pod>> {
        crate::names::namespace(namespace).map_err(|e| KubeError::Client(e.to_string()))?;
        crate::names::label_selector(selector).map_err(|e| KubeError::Client(e.to_string()))?;
        self.with_cluster(cluster, |c| async move {
            let mut lp = ListParams::default();
            if !selector.is_empty() {
                lp = lp.labels(selector);
            }
            let req = Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
                .list(&lp)
                .map_err(|e| KubeError::Client(e.to_string()))?;
            let bytes = self.execute(&c, req).await?;
            let list: ObjectList<KPod> = serde_json::from_slice(&bytes)
                .map_err(|e| KubeError::Unavailable(format!("the pod listing could not be parsed: {e}")))?;
            Ok(list
                .items
                .into_iter()
                .map(|p| Pod {
                    namespace: p.metadata.namespace.unwrap_or_default(),
                    name: p.metadata.name.unwrap_or_default(),
                    phase: p.status.and_then(|s| s.phase).unwrap_or_default(),
                })
                .collect())
        })
        .await
    }

    async fn read_state(&self, c: &Cluster) -> KResult<Option<ConfigMap>> {
        let req = Request::new(format!("/api/v1/namespaces/{STATE_NAMESPACE}/configmaps"))
            .get(STATE_NAME, &GetParams::default())
            .map_err(|e| KubeError::Client(e.to_string()))?;
        match self.execute(c, req).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| KubeError::Unavailable(format!("the state ConfigMap could not be parsed: {e}"))),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The `kube-system/kmsflow-kms-state` ConfigMap, if any.
    pub async fn get_state(&self, cluster: &ResourceId) -> KResult<Option<State>> {
        self.with_cluster(cluster, |c| async move { Ok(self.read_state(&c).await?.map(state_of)) })
            .await
    }

    /// Writes the state ConfigMap. With `resource_version`, a changed map fails with 409 (the
    /// capability reports `precondition`); without, the write replaces whatever is there.
    pub async fn put_state(
        &self,
        cluster: &ResourceId,
        data: &[(String, String)],
        resource_version: Option<&str>,
    ) -> KResult<State> {
        self.with_cluster(cluster, |c| async move {
            let data: BTreeMap<String, String> = data.iter().cloned().collect();
            let base = Request::new(format!("/api/v1/namespaces/{STATE_NAMESPACE}/configmaps"));
            let body = |rv: Option<&str>| {
                let mut cm = json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": STATE_NAME,
                        "namespace": STATE_NAMESPACE,
                        "labels": {"app.kubernetes.io/managed-by": "kmsflow"},
                    },
                    "data": data,
                });
                if let Some(rv) = rv {
                    cm["metadata"]["resourceVersion"] = json!(rv);
                }
                serde_json::to_vec(&cm).map_err(|e| KubeError::Client(e.to_string()))
            };
            let parse = |bytes: Vec<u8>| {
                serde_json::from_slice::<ConfigMap>(&bytes)
                    .map(state_of)
                    .map_err(|e| KubeError::Unavailable(format!("the state ConfigMap could not be parsed: {e}")))
            };
            if let Some(rv) = resource_version {
                let req = base
                    .replace(STATE_NAME, &PostParams::default(), body(Some(rv))?)
                    .map_err(|e| KubeError::Client(e.to_string()))?;
                return match self.execute(&c, req).await {
                    Ok(bytes) => parse(bytes),
                    Err(KubeError::Api { status: 409, .. }) | Err(KubeError::Api { status: 404, .. }) => {
                        Err(KubeError::Api {
                            status: 412,
                            reason: "Conflict".into(),
                            message: format!(
                                "{STATE_NAMESPACE}/{STATE_NAME} changed since resourceVersion {rv}; read it again"
                            ),
                            continue_token: None,
                        })
                    }
                    Err(e) => Err(e),
                };
            }
            // Unconditional: create, or replace the current version (retrying if it moves).
            for _ in 0..5 {
                let req = match self.read_state(&c).await? {
                    None => base.create(&PostParams::default(), body(None)?),
                    Some(current) => base.replace(
                        STATE_NAME,
                        &PostParams::default(),
                        body(current.metadata.resource_version.as_deref())?,
                    ),
                }
                .map_err(|e| KubeError::Client(e.to_string()))?;
                match self.execute(&c, req).await {
                    Ok(bytes) => return parse(bytes),
                    Err(e) if e.status() == Some(409) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(KubeError::Api {
                status: 409,
                reason: "Conflict".into(),
                message: format!("{STATE_NAMESPACE}/{STATE_NAME} kept changing during the write"),
                continue_token: None,
            })
        })
        .await
    }
}

fn state_of(cm: ConfigMap) -> State {
    State {
        data: cm.data.unwrap_or_default().into_iter().collect(),
        resource_version: cm.metadata.resource_version.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_map_to_wit_kinds() {
        let e = status_error(
            410,
            br#"{"kind":"Status","status":"Failure","reason":"Expired","code":410,"message":"too old","metadata":{"continue":"abc"}}"#,
        );
        match &e {
            KubeError::Api { continue_token, .. } => assert_eq!(continue_token.as_deref(), Some("abc")),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(e.to_wit().kind, ErrorKind::Precondition);
        assert_eq!(e.to_wit().code, "Expired");
        let e = status_error(429, br#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#);
        assert_eq!(e.to_wit().kind, ErrorKind::Throttled);
        assert_eq!(e.to_wit().code, "TooManyRequests");
        assert_eq!(status_error(403, b"not json").to_wit().kind, ErrorKind::Denied);
    }
}
