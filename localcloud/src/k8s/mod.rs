//! Each emulated cluster's Kubernetes API server, at `https://127.0.0.1:{port}/k8s{cluster id}`
//! (the address in its admin kubeconfig): discovery, namespaces, secrets, config maps and pods,
//! with Kubernetes' `Status` errors, `resourceVersion` preconditions, paging, and metadata-only
//! lists. Secrets are stored like etcd does — `/registry/secrets/{ns}/{name}` with a global
//! revision — through the KMS encryption configuration of [`kms`].

pub mod envelope;
pub mod kms;

use crate::http::{json, new_guid, now_rfc3339};
use crate::state::Shared;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kms::ClusterKms;
use serde_json::{json as j, Map, Value};
use std::collections::HashMap;

/// KMS v1's documented ceiling on AKS.
pub const KMS_V1_SECRET_LIMIT: i64 = 2000;

/// A Kubernetes `Status` failure.
#[derive(Debug, Clone)]
pub struct K8sError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// The injected KMS fault behind this failure, if any (logged on the request; a hang is
    /// held before the answer is sent).
    pub kms_fault: Option<KmsFault>,
}

/// An injected fault on a cluster's KMS call (see `faults::Service::Kms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmsFault {
    /// The request log's label: `kms-throttle`, `kms-5xx`, `kms-drop` or `kms-hang`.
    pub label: &'static str,
    /// How long the API server waits on the hung plugin call before answering.
    pub hold: std::time::Duration,
}

/// Marks a response whose failure an injected KMS fault caused, with the fault's label, for the
/// request log.
#[derive(Debug, Clone, Copy)]
pub struct KmsFaulted(pub &'static str);

impl K8sError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        K8sError {
            code,
            reason,
            message: message.into(),
            kms_fault: None,
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(500, "InternalError", format!("Internal error occurred: {message}"))
    }
    fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
    }
    fn conflict(resource: &str, name: &str) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"))
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
}

impl From<rusqlite::Error> for K8sError {
    fn from(e: rusqlite::Error) -> Self {
        K8sError::internal(e.to_string())
    }
}

impl IntoResponse for K8sError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json(
            status,
            j!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code}),
        );
        if let Some(fault) = self.kms_fault {
            response.extensions_mut().insert(KmsFaulted(fault.label));
        }
        response
    }
}

type K8sResult = Result<Response, K8sError>;

/// The resources this API server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    ConfigMap,
    Pod,
    Namespace,
}

impl Kind {
    fn parse(plural: &str) -> Option<Kind> {
        match plural {
            "secrets" => Some(Kind::Secret),
            "configmaps" => Some(Kind::ConfigMap),
            "pods" => Some(Kind::Pod),
            "namespaces" => Some(Kind::Namespace),
            _ => None,
        }
    }
    fn plural(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::Pod => "pods",
            Kind::Namespace => "namespaces",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Pod => "Pod",
            Kind::Namespace => "Namespace",
        }
    }
    fn key(self, ns: &str, name: &str) -> String {
        match self {
            Kind::Namespace => format!("/registry/namespaces/{name}"),
            _ => format!("/registry/{}/{ns}/{name}", self.plural()),
        }
    }
    fn prefix(self, ns: Option<&str>) -> String {
        match (self, ns) {
            (Kind::Namespace, _) | (_, None) => format!("/registry/{}/", self.plural()),
            (_, Some(ns)) => format!("/registry/{}/{ns}/", self.plural()),
        }
    }
}

/// One cluster's API server for the duration of a request.
pub struct ApiServer<'a> {
    pub state: &'a Shared,
    pub doc: Value,
    pub kms: ClusterKms,
}

impl<'a> ApiServer<'a> {
    pub fn new(state: &'a Shared, doc: Value) -> Self {
        let kms = ClusterKms::of(state, &doc);
        ApiServer { state, doc, kms }
    }

    fn cluster(&self) -> &str {
        &self.kms.cluster
    }

    fn minor(&self) -> u32 {
        self.doc["properties"]["currentKubernetesVersion"]
            .as_str()
            .and_then(|v| v.split('.').nth(1))
            .and_then(|m| m.parse().ok())
            .unwrap_or(30)
    }

    /// Creates `default`, `kube-system` and `kube-public` on first use.
    fn ensure_namespaces(&self) -> Result<(), K8sError> {
        for ns in ["default", "kube-system", "kube-public"] {
            let key = Kind::Namespace.key("", ns);
            if self.state.db.etcd_get(self.cluster(), &key)?.is_none() {
                let obj = j!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": new_guid(), "creationTimestamp": now_rfc3339()}, "status": {"phase": "Active"}});
                let _ = self
                    .state
                    .db
                    .etcd_put(self.cluster(), &key, obj.to_string().as_bytes(), Some(0));
            }
        }
        Ok(())
    }

    /// The object at `key` with its `resourceVersion`, and whether it is stale.
    fn read(&self, kind: Kind, key: &str) -> Result<Option<(Value, bool)>, K8sError> {
        let Some(entry) = self.state.db.etcd_get(self.cluster(), key)? else {
            return Ok(None);
        };
        self.decode(kind, &entry).map(Some)
    }

    fn decode(&self, kind: Kind, entry: &crate::db::EtcdEntry) -> Result<(Value, bool), K8sError> {
        let (plain, stale) = if kind == Kind::Secret {
            self.kms.decrypt(self.state, &entry.key, &entry.value)?
        } else {
            (entry.value.clone(), false)
        };
        let mut obj: Value = serde_json::from_slice(&plain)
            .map_err(|e| K8sError::internal(format!("corrupt object at {}: {e}", entry.key)))?;
        obj["metadata"]["resourceVersion"] = j!(entry.mod_rev.to_string());
        Ok((obj, stale))
    }

    /// Stores `obj` at `key` if its revision is `expected`; returns the stored object.
    fn write(
        &self,
        kind: Kind,
        key: &str,
        mut obj: Value,
        expected: Option<i64>,
        name: &str,
    ) -> Result<Value, K8sError> {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        let bytes = obj.to_string().into_bytes();
        let stored = if kind == Kind::Secret {
            self.kms.encrypt(self.state, key, &bytes)?
        } else {
            bytes
        };
        let rev = self
            .state
            .db
            .etcd_put(self.cluster(), key, &stored, expected)
            .map_err(|e| match e {
                crate::db::EtcdWriteError::Conflict if expected == Some(0) => K8sError::new(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", kind.plural()),
                ),
                crate::db::EtcdWriteError::Conflict => K8sError::conflict(kind.plural(), name),
                crate::db::EtcdWriteError::Db(e) => K8sError::from(e),
            })?;
        obj["metadata"]["resourceVersion"] = j!(rev.to_string());
        Ok(obj)
    }

    /// Synthesised system pods: CoreDNS, and the Konnectivity agents on clusters without API
    /// server VNet integration.
    fn pods(&self) -> Vec<Value> {
        let vnet = self.doc["properties"]["apiServerAccessProfile"]["enableVnetIntegration"] == j!(true);
        let mut pods = vec![
            ("coredns-789789675-5xk2p", "coredns"),
            ("coredns-789789675-q8fzd", "coredns"),
            ("metrics-server-5dfc656944-7lw6b", "metrics-server"),
        ];
        if !vnet {
            pods.push(("konnectivity-agent-7f9c8d7b4-2hqzl", "konnectivity-agent"));
            pods.push(("konnectivity-agent-7f9c8d7b4-m5nrx", "konnectivity-agent"));
        }
        pods.into_iter()
            .map(|(name, app)| {
                j!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "kube-system", "labels": {"app": app, "k8s-app": app}, "uid": new_guid(), "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": {"containers": [{"name": app, "image": format!("mcr.microsoft.com/oss/kubernetes/{app}:latest")}]},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
            })
            .collect()
    }
}

fn status_ok(kind: Kind, name: &str) -> Response {
    json(
        StatusCode::OK,
        j!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": kind.plural()}}),
    )
}

/// Every request under `/k8s/...`. A failure caused by a hung KMS call is answered only after
/// the hang's hold, by an async sleep of this request alone.
pub async fn handle(
    State(state): State<Shared>,
    peer: Option<axum::Extension<crate::pki::PeerCertificates>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer.map(|axum::Extension(p)| p).unwrap_or_default();
    match route(&state, &peer, &method, &uri, &headers, &body) {
        Ok(r) => r,
        Err(e) => {
            if let Some(hold) = e.kms_fault.map(|f| f.hold).filter(|h| !h.is_zero()) {
                tokio::time::sleep(hold).await;
            }
            e.into_response()
        }
    }
}

fn unauthorized() -> K8sError {
    K8sError::new(401, "Unauthorized", "Unauthorized")
}

/// Whether the cluster was created with Entra integration (`aadProfile.managed`).
pub fn entra_integrated(doc: &Value) -> bool {
    doc["properties"]["aadProfile"]["managed"] == j!(true)
}

/// Whether the cluster refuses local accounts (`disableLocalAccounts`, only with Entra).
pub fn local_accounts_disabled(doc: &Value) -> bool {
    entra_integrated(doc) && doc["properties"]["disableLocalAccounts"] == j!(true)
}

/// Authenticates a request to a cluster's API server, as AKS's API server does:
/// - a client certificate issued by **this cluster's** CA (the admin kubeconfig), unless the
///   cluster disables local accounts;
/// - on an Entra-integrated cluster, a bearer token from this cloud's Entra for the AKS server
///   application ([`crate::state::AKS_SERVER_APP_ID`]), not expired or revoked;
/// - anything else — no credential, a certificate of another CA, a token for another audience,
///   any token on a cluster without Entra integration — is `401 Unauthorized`.
fn authenticate(
    state: &Shared,
    doc: &Value,
    cluster_id: &str,
    peer: &crate::pki::PeerCertificates,
    headers: &HeaderMap,
) -> Result<(), K8sError> {
    if !peer.0.is_empty() && !local_accounts_disabled(doc) {
        let trusted = crate::pki::verify(state, cluster_id, &peer.0).map_err(|e| K8sError::internal(e.to_string()))?;
        if trusted {
            return Ok(());
        }
    }
    if headers.contains_key(header::AUTHORIZATION) && entra_integrated(doc) {
        let caller =
            crate::entra::authenticate(state, headers, crate::state::AKS_SERVER_APP_ID).map_err(|_| unauthorized())?;
        if caller.tenant_id == state.tenant_id {
            return Ok(());
        }
    }
    Err(unauthorized())
}

fn route(
    state: &Shared,
    peer: &crate::pki::PeerCertificates,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> K8sResult {
    let path = uri.path().strip_prefix("/k8s").unwrap_or_default();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() < 8 {
        return Err(K8sError::not_found("clusters", path));
    }
    let cluster_id = format!("/{}", segs[..8].join("/"));
    let doc = crate::arm::clusters::settle(state, &cluster_id)
        .map_err(|e| K8sError::internal(e.message))?
        .ok_or_else(|| K8sError::not_found("clusters", &cluster_id))?;
    authenticate(state, &doc, &cluster_id, peer, headers)?;
    let query = crate::http::query_map(uri);
    let api = ApiServer::new(state, doc);
    api.ensure_namespaces()?;
    let rest = &segs[8..];
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match (method.clone(), rest) {
        (Method::GET, ["version"]) => {
            let minor = api.minor();
            let git = api.doc["properties"]["currentKubernetesVersion"]
                .as_str()
                .unwrap_or("1.30.0")
                .to_string();
            Ok(json(
                StatusCode::OK,
                j!({"major": "1", "minor": minor.to_string(), "gitVersion": format!("v{git}"), "platform": "linux/amd64", "goVersion": "go1.22"}),
            ))
        }
        (Method::GET, ["api"]) => Ok(json(
            StatusCode::OK,
            j!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        )),
        (Method::GET, ["openapi", "v2"]) => Ok(openapi_v2()),
        (Method::GET, ["apis"]) => Ok(json(
            StatusCode::OK,
            j!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        )),
        (Method::GET, ["api", "v1"]) => Ok(json(StatusCode::OK, resource_list())),
        (_, ["api", "v1", plural]) => {
            let kind = Kind::parse(plural).ok_or_else(|| K8sError::not_found("resources", plural))?;
            match *method {
                Method::GET => list(&api, kind, None, &query, accept),
                Method::POST if kind == Kind::Namespace => create(&api, kind, "", body, accept),
                _ => Err(K8sError::new(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        (_, ["api", "v1", "namespaces", ns]) => match *method {
            Method::GET => get(&api, Kind::Namespace, "", ns, accept),
            _ => Err(K8sError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
        },
        (_, ["api", "v1", "namespaces", ns, plural]) => {
            let kind = Kind::parse(plural)
                .filter(|k| *k != Kind::Namespace)
                .ok_or_else(|| K8sError::not_found("resources", plural))?;
            match *method {
                Method::GET => list(&api, kind, Some(ns), &query, accept),
                Method::POST if kind != Kind::Pod => create(&api, kind, ns, body, accept),
                _ => Err(K8sError::new(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        (_, ["api", "v1", "namespaces", ns, plural, name]) => {
            let kind = Kind::parse(plural)
                .filter(|k| *k != Kind::Namespace)
                .ok_or_else(|| K8sError::not_found("resources", plural))?;
            match (method.clone(), kind) {
                (Method::GET, _) => get(&api, kind, ns, name, accept),
                (_, Kind::Pod) => Err(K8sError::new(405, "MethodNotAllowed", "pods are read-only here")),
                (Method::PUT, _) => update(&api, kind, ns, name, body, false, accept),
                (Method::PATCH, _) => update(&api, kind, ns, name, body, true, accept),
                (Method::DELETE, _) => {
                    if api.state.db.etcd_delete(api.cluster(), &kind.key(ns, name))? {
                        Ok(status_ok(kind, name))
                    } else {
                        Err(K8sError::not_found(kind.plural(), name))
                    }
                }
                _ => Err(K8sError::new(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        _ => Err(K8sError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// Marks a response that carried secret data, for the request log (`requests.secret_data`):
/// tests assert that kmsflow's rewrite never receives any.
#[derive(Debug, Clone, Copy)]
pub struct SecretDataReturned;

fn carries_secret_data(kind: Kind, body: &Value) -> bool {
    let has = |o: &Value| o.get("data").is_some_and(|d| !d.is_null()) || o.get("stringData").is_some();
    kind == Kind::Secret && (has(body) || body["items"].as_array().is_some_and(|items| items.iter().any(has)))
}

/// A single object, as the client asked for it: whole, or as `PartialObjectMetadata` when the
/// `Accept` header says `as=PartialObjectMetadata` (which the real API server honours on get,
/// create, update and patch alike).
fn respond(kind: Kind, status: StatusCode, obj: Value, accept: &str) -> Response {
    let body = if accept.contains("as=PartialObjectMetadata") && !accept.contains("as=PartialObjectMetadataList") {
        j!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
    } else {
        obj
    };
    mark(kind, status, body)
}

fn mark(kind: Kind, status: StatusCode, body: Value) -> Response {
    let secret_data = carries_secret_data(kind, &body);
    let mut response = json(status, body);
    if secret_data {
        response.extensions_mut().insert(SecretDataReturned);
    }
    response
}

fn resource_list() -> Value {
    let r = |name: &str, kind: &str, namespaced: bool, verbs: &[&str], short: &[&str]| j!({"name": name, "singularName": kind.to_ascii_lowercase(), "namespaced": namespaced, "kind": kind, "verbs": verbs, "shortNames": short});
    j!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        r("namespaces", "Namespace", false, &["create", "get", "list"], &["ns"]),
        r("secrets", "Secret", true, &["create", "delete", "get", "list", "patch", "update"], &[]),
        r("configmaps", "ConfigMap", true, &["create", "delete", "get", "list", "patch", "update"], &["cm"]),
        r("pods", "Pod", true, &["get", "list"], &["po"]),
    ]})
}

fn get(api: &ApiServer<'_>, kind: Kind, ns: &str, name: &str, accept: &str) -> K8sResult {
    if kind == Kind::Pod {
        return api
            .pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] == name && ns == "kube-system")
            .map(|p| json(StatusCode::OK, p))
            .ok_or_else(|| K8sError::not_found("pods", name));
    }
    let (obj, _) = api
        .read(kind, &kind.key(ns, name))?
        .ok_or_else(|| K8sError::not_found(kind.plural(), name))?;
    Ok(respond(kind, StatusCode::OK, obj, accept))
}

fn matches_selector(obj: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k.trim_end_matches('=')] == j!(v.trim_start_matches('=')),
        None => !obj["metadata"]["labels"][term].is_null(),
    })
}

fn list(api: &ApiServer<'_>, kind: Kind, ns: Option<&str>, query: &HashMap<String, String>, accept: &str) -> K8sResult {
    let rv = api.state.db.etcd_rev(api.cluster())?;
    let selector = query.get("labelSelector");
    let (items, next, remaining) = if kind == Kind::Pod {
        let pods: Vec<Value> = api
            .pods()
            .into_iter()
            .filter(|p| ns.is_none_or(|n| p["metadata"]["namespace"] == n))
            .collect();
        (pods, None, None)
    } else {
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<i64>().ok())
            .filter(|l| *l > 0);
        let after = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| K8sError::bad("invalid continue token"))?,
            None => String::new(),
        };
        let prefix = kind.prefix(ns);
        let entries = api
            .state
            .db
            .etcd_list(api.cluster(), &prefix, &after, limit.map_or(i64::MAX, |l| l + 1))?;
        let more = limit.is_some_and(|l| entries.len() as i64 > l);
        let page = &entries[..entries.len().min(limit.map_or(usize::MAX, |l| l as usize))];
        let mut items = Vec::with_capacity(page.len());
        for e in page {
            items.push(api.decode(kind, e)?.0);
        }
        let next = if more {
            page.last().map(|e| URL_SAFE_NO_PAD.encode(e.key.as_bytes()))
        } else {
            None
        };
        let remaining = match (&next, page.last()) {
            (Some(_), Some(last)) => Some(
                api.state
                    .db
                    .etcd_list(api.cluster(), &prefix, &last.key, i64::MAX)?
                    .len(),
            ),
            _ => None,
        };
        (items, next, remaining)
    };
    let items: Vec<Value> = items.into_iter().filter(|o| matches_selector(o, selector)).collect();
    let mut metadata = j!({"resourceVersion": rv.to_string()});
    if let Some(next) = next {
        metadata["continue"] = j!(next);
        metadata["remainingItemCount"] = j!(remaining.unwrap_or(0));
    }
    if accept.contains("as=PartialObjectMetadataList") {
        let items: Vec<Value> = items
            .into_iter()
            .map(|o| j!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}))
            .collect();
        return Ok(json(
            StatusCode::OK,
            j!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items}),
        ));
    }
    let body = j!({"kind": format!("{}List", kind.kind()), "apiVersion": "v1", "metadata": metadata, "items": items});
    Ok(mark(kind, StatusCode::OK, body))
}

fn parse_body(body: &Bytes) -> Result<Value, K8sError> {
    serde_json::from_slice(body)
        .map_err(|e| K8sError::bad(format!("the body of the request was in an unknown format: {e}")))
}

/// Folds `stringData` into `data`, as the API server does on write.
fn normalize_secret(obj: &mut Value) {
    if let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
        let data = obj["data"].as_object().cloned().unwrap_or_default();
        let mut data: Map<String, Value> = data;
        for (k, v) in string_data {
            data.insert(k, j!(STANDARD.encode(v.as_str().unwrap_or_default())));
        }
        obj["data"] = Value::Object(data);
    }
    if obj["type"].is_null() {
        obj["type"] = j!("Opaque");
    }
}

fn create(api: &ApiServer<'_>, kind: Kind, ns: &str, body: &Bytes, accept: &str) -> K8sResult {
    let mut obj = parse_body(body)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| K8sError::new(422, "Invalid", "metadata.name: Required value: name is required"))?
        .to_string();
    if kind != Kind::Namespace {
        if api
            .state
            .db
            .etcd_get(api.cluster(), &Kind::Namespace.key("", ns))?
            .is_none()
        {
            return Err(K8sError::not_found("namespaces", ns));
        }
        obj["metadata"]["namespace"] = j!(ns);
    }
    if kind == Kind::Secret {
        normalize_secret(&mut obj);
        if api.kms.primary.is_some()
            && !api.kms.v2
            && api.state.db.etcd_count(api.cluster(), "/registry/secrets/")? >= KMS_V1_SECRET_LIMIT
        {
            return Err(K8sError::new(403, "Forbidden", format!("secrets \"{name}\" is forbidden: KMS v1 supports at most {KMS_V1_SECRET_LIMIT} secrets on AKS; migrate the cluster to KMS v2 (Kubernetes 1.27+)")));
        }
    }
    obj["apiVersion"] = j!("v1");
    obj["kind"] = j!(kind.kind());
    obj["metadata"]["uid"] = j!(new_guid());
    obj["metadata"]["creationTimestamp"] = j!(now_rfc3339());
    let stored = api.write(kind, &kind.key(ns, &name), obj, Some(0), &name)?;
    Ok(respond(kind, StatusCode::CREATED, stored, accept))
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = j!({});
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// PUT (replace) or JSON merge PATCH. A write that changes nothing is skipped unless the stored
/// value is stale, exactly like `GuaranteedUpdate`: that is what makes a no-op update re-encrypt.
/// Without a `resourceVersion` from the client, a concurrent write is not a conflict: like
/// `GuaranteedUpdate`, the update is re-applied to the newer object.
#[allow(clippy::too_many_arguments)]
fn update(api: &ApiServer<'_>, kind: Kind, ns: &str, name: &str, body: &Bytes, patch: bool, accept: &str) -> K8sResult {
    let given = parse_body(body)?;
    let precondition = given["metadata"]["resourceVersion"].as_str().map(str::to_string);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match update_once(api, kind, ns, name, &given, precondition.as_deref(), patch, accept) {
            Err(e) if e.code == 409 && precondition.is_none() && attempts < 10 => continue,
            other => return other,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn update_once(
    api: &ApiServer<'_>,
    kind: Kind,
    ns: &str,
    name: &str,
    given: &Value,
    precondition: Option<&str>,
    patch: bool,
    accept: &str,
) -> K8sResult {
    let key = kind.key(ns, name);
    let entry = api
        .state
        .db
        .etcd_get(api.cluster(), &key)?
        .ok_or_else(|| K8sError::not_found(kind.plural(), name))?;
    let (current, stale) = api.decode(kind, &entry)?;
    if let Some(rv) = precondition {
        if rv.parse::<i64>().ok() != Some(entry.mod_rev) {
            return Err(K8sError::conflict(kind.plural(), name));
        }
    }
    let mut next = if patch {
        let mut merged = current.clone();
        merge_patch(&mut merged, given);
        merged
    } else {
        if given["metadata"]["name"].as_str() != Some(name) {
            return Err(K8sError::bad(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                given["metadata"]["name"].as_str().unwrap_or_default()
            )));
        }
        given.clone()
    };
    next["apiVersion"] = j!("v1");
    next["kind"] = j!(kind.kind());
    next["metadata"]["namespace"] = j!(ns);
    for managed in ["uid", "creationTimestamp"] {
        next["metadata"][managed] = current["metadata"][managed].clone();
    }
    if kind == Kind::Secret {
        normalize_secret(&mut next);
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    if strip(&next) == strip(&current) && !stale {
        return Ok(respond(kind, StatusCode::OK, current, accept));
    }
    let stored = api.write(kind, &key, next, Some(entry.mod_rev), name)?;
    Ok(respond(kind, StatusCode::OK, stored, accept))
}

/// Creates `count` secrets round-robin across namespaces `seed-0..seed-{namespaces-1}`, each with
/// `size` random bytes of data (or `{value}-{i}`); returns how many were created (existing names
/// are skipped).
pub fn seed_secrets(
    api: &ApiServer<'_>,
    count: usize,
    namespaces: usize,
    size: usize,
    value: Option<&str>,
) -> Result<usize, K8sError> {
    use rand::RngCore;
    for n in 0..namespaces {
        let ns = format!("seed-{n}");
        let key = Kind::Namespace.key("", &ns);
        if api.state.db.etcd_get(api.cluster(), &key)?.is_none() {
            let obj = j!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": new_guid(), "creationTimestamp": now_rfc3339()}, "status": {"phase": "Active"}});
            api.write(Kind::Namespace, &key, obj, Some(0), &ns)?;
        }
    }
    let existing = api.state.db.etcd_count(api.cluster(), "/registry/secrets/")?;
    let mut created = 0;
    let mut data = vec![0u8; size];
    for i in 0..count {
        let ns = format!("seed-{}", i % namespaces);
        let name = format!("secret-{:06}", existing as usize + i);
        let encoded = match value {
            Some(v) => STANDARD.encode(format!("{v}-{i}")),
            None => {
                rand::thread_rng().fill_bytes(&mut data);
                STANDARD.encode(&data)
            }
        };
        let body = serde_json::to_vec(&j!({"metadata": {"name": name}, "type": "Opaque", "data": {"value": encoded}}))
            .map_err(|e| K8sError::internal(e.to_string()))?;
        match create(api, Kind::Secret, &ns, &Bytes::from(body), "") {
            Ok(_) => created += 1,
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// A minimal OpenAPI v2 document in the protobuf form kubectl asks for (gnostic `openapi_v2.Document`
/// with `swagger`, `info` and empty `paths`). kubectl validates against it before `replace`; with
/// no definitions it has no schema to reject an object with, and the server accepts or refuses
/// the object itself.
fn openapi_v2() -> Response {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Info {
        #[prost(string, tag = "1")]
        title: String,
        #[prost(string, tag = "2")]
        version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Paths {}
    #[derive(Clone, PartialEq, prost::Message)]
    struct Document {
        #[prost(string, tag = "1")]
        swagger: String,
        #[prost(message, optional, tag = "2")]
        info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        paths: Option<Paths>,
    }
    let doc = Document {
        swagger: "2.0".into(),
        info: Some(Info {
            title: "Kubernetes".into(),
            version: "v1".into(),
        }),
        paths: Some(Paths {}),
    };
    let mut response = (StatusCode::OK, prost::Message::encode_to_vec(&doc)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    );
    response
}
