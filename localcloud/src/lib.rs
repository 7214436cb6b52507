//! The local cloud: a second Azure cloud on loopback, speaking the real wire formats, so that
//! kmsflow (or any Azure client that trusts its CA) cannot tell it from Azure except by its
//! endpoints. It runs standalone (`kmsflow local serve`) or in-process ([`LocalCloud::start`]).
//!
//! One HTTPS listener serves:
//! - Entra: `POST /{tenant}/oauth2/v2.0/token` (client credentials);
//! - Microsoft Graph: `GET /v1.0/me`;
//! - ARM: `/subscriptions/...` (resource groups, vaults, identities, role assignments and
//!   definitions);
//! - the Key Vault data plane on `{vault}.vault.localhost` (routed by the Host header);
//! - the admin API on `/_admin/...`.
//!
//! State lives in SQLite (WAL) in the state directory, with the generated CA and the cloud's
//! profile (`profile.json`: endpoints and the operator's credentials).

mod admin;
pub mod arm;
mod db;
mod directory;
mod entra;
mod error;
mod faults;
mod http;
pub mod k8s;
pub mod keyvault;
mod pki;
mod state;
mod tls;

pub use admin::ADMIN_HEADER;
pub use arm::lro::{Ending, LroShape, UnknownLroShape};
pub use db::RequestRecord;
pub use error::LocalCloudError;
pub use faults::{FaultConfig, InvalidFaults, Service as FaultService, DEFAULT_HANG_MS};
pub use state::{AKS_SERVER_APP_ID, ARM_AUDIENCE, GRAPH_AUDIENCE, VAULT_AUDIENCE, VAULT_SUFFIX};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use db::{Db, Principal};
use serde::{Deserialize, Serialize};
use state::{AppState, Shared};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tower_service::Service as _;

/// How to start a local cloud.
///
/// Two starting points: [`Config::new`] (in-process use and tests: no added delay, every
/// operation answered with `Azure-AsyncOperation`) and [`Config::realistic`] (what
/// `kmsflow local serve` starts from: LRO shapes rotated, vaults provisioned after a few
/// seconds). Every field can also be changed at run time through the admin API's settings,
/// except the state directory and the port.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    /// 0: the port this state directory used before, or a free one the first time.
    pub port: u16,
    /// Lifetime of issued tokens (default 3599 s, Entra's `expires_in`); short values make
    /// tokens expire mid-run. Changeable at run time (`token_lifetime_s` in the settings).
    pub token_lifetime: Duration,
    /// How long long-running operations take.
    pub operation_duration: Duration,
    /// How long after its `createdOn` a role assignment takes effect (and how long a deleted one
    /// keeps its effect), as Azure RBAC propagation does. Until then, data-plane calls that need
    /// it answer Key Vault's 403 `ForbiddenByRbac` and AKS's KMS check fails with
    /// `AzureKeyVaultKmsValidateIdentityPermissionCustomerError`. Zero (the default of
    /// [`Config::new`]) makes assignments effective at once. The admin API can change it at run
    /// time (`PUT /_admin/settings {"rbac_propagation_ms": N}`).
    pub rbac_propagation: Duration,
    /// How long-running operations are answered: `Azure-AsyncOperation`, `Location`,
    /// `provisioningState` only, or the three in rotation.
    pub lro_shape: LroShape,
    /// How long a new vault stays `RegisteringDns` (its data plane unreachable) before it is
    /// `Succeeded`. Zero: a vault is `Succeeded` as soon as it is created.
    pub vault_provisioning: Duration,
}

impl Config {
    /// In-process defaults: operations take 500 ms and answer with `Azure-AsyncOperation`, vaults
    /// are ready at once. Nothing here slows a test down.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Config {
            state_dir: state_dir.into(),
            port: 0,
            token_lifetime: Duration::from_secs(3599),
            operation_duration: Duration::from_millis(500),
            rbac_propagation: Duration::ZERO,
            lro_shape: LroShape::AzureAsyncOperation,
            vault_provisioning: Duration::ZERO,
        }
    }

    /// The defaults of `kmsflow local serve`: as [`Config::new`], but behaving more like Azure —
    /// long-running operations rotate through every ARM shape, and a new vault answers on its
    /// data plane only after [`Config::REALISTIC_VAULT_PROVISIONING`].
    pub fn realistic(state_dir: impl Into<PathBuf>) -> Self {
        Config {
            lro_shape: LroShape::Rotate,
            vault_provisioning: Self::REALISTIC_VAULT_PROVISIONING,
            rbac_propagation: Self::REALISTIC_RBAC_PROPAGATION,
            ..Config::new(state_dir)
        }
    }

    /// How long after their creation [`Config::realistic`] makes role assignments take effect.
    pub const REALISTIC_RBAC_PROPAGATION: Duration = Duration::from_secs(5);

    /// How long [`Config::realistic`] keeps a new vault `RegisteringDns`.
    pub const REALISTIC_VAULT_PROVISIONING: Duration = Duration::from_secs(5);
}

/// The cloud environment the local cloud publishes: what distinguishes it from AzureCloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudProfile {
    pub name: String,
    pub resource_manager: String,
    pub authority_host: String,
    pub graph: String,
    pub keyvault_dns_suffix: String,
    pub arm_audience: String,
    pub keyvault_audience: String,
    pub graph_audience: String,
    pub tenant_id: String,
    pub default_subscription: String,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub admin_key: String,
    pub operator: OperatorCredentials,
}

/// The operator principal: an app registration with a client secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub object_id: String,
}

/// A running local cloud.
pub struct LocalCloud {
    profile: CloudProfile,
    port: u16,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

/// The name of the profile file in the state directory.
pub const PROFILE_FILE: &str = "profile.json";

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Reads `k` from meta, or stores `make()` there first.
fn meta_or(db: &Db, k: &str, make: impl FnOnce() -> String) -> Result<String, LocalCloudError> {
    if let Some(v) = db.meta(k)? {
        return Ok(v);
    }
    let v = make();
    db.set_meta(k, &v)?;
    Ok(v)
}

impl LocalCloud {
    /// Starts serving on `127.0.0.1`, creating the state directory's contents on first use.
    pub async fn start(config: Config) -> Result<LocalCloud, LocalCloudError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = &config.state_dir;
        std::fs::create_dir_all(dir).map_err(|e| LocalCloudError::io(dir, e))?;
        let tls = tls::load_or_create(dir)?;
        let db = Db::open(&dir.join("localcloud.db"))?;

        let tenant_id = meta_or(&db, "tenant_id", http::new_guid)?;
        let default_sub = meta_or(&db, "default_subscription", http::new_guid)?;
        if db.meta("subscriptions")?.is_none() {
            db.set_meta("subscriptions", &serde_json::json!([default_sub]).to_string())?;
        }
        let token_key = meta_or(&db, "token_key", || random_hex(32))?;
        let admin_key = meta_or(&db, "admin_key", || random_hex(16))?;
        let operator: OperatorCredentials = serde_json::from_str(&meta_or(&db, "operator", || {
            serde_json::json!({"client_id": http::new_guid(), "client_secret": random_hex(20), "object_id": http::new_guid()}).to_string()
        })?)
        .map_err(|e| LocalCloudError::Corrupt(e.to_string()))?;
        db.insert_principal(&Principal {
            object_id: operator.object_id.clone(),
            client_id: operator.client_id.clone(),
            secret: Some(operator.client_secret.clone()),
            kind: "ServicePrincipal".into(),
            name: "kmsflow-operator".into(),
            tenant_id: tenant_id.clone(),
        })?;

        let stored_port = db.meta("port")?.and_then(|p| p.parse::<u16>().ok());
        let port = if config.port != 0 {
            config.port
        } else {
            stored_port.unwrap_or(0)
        };
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .map_err(|source| LocalCloudError::Bind { port, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| LocalCloudError::io(dir, e))?;
        let port = listener.local_addr().map_err(|e| LocalCloudError::io(dir, e))?.port();
        db.set_meta("port", &port.to_string())?;

        let token_generation = db.meta("token_generation")?.and_then(|g| g.parse().ok()).unwrap_or(0);
        let state: Shared = Arc::new(AppState {
            db,
            tenant_id: tenant_id.clone(),
            port,
            token_key: token_key.into_bytes(),
            admin_key: admin_key.clone(),
            ca_pem: tls.ca_pem.clone(),
            token_lifetime: RwLock::new(config.token_lifetime),
            token_generation: std::sync::atomic::AtomicU64::new(token_generation),
            cluster_verifiers: std::sync::Mutex::new(std::collections::HashMap::new()),
            operation_duration: RwLock::new(config.operation_duration),
            rbac_propagation: RwLock::new(config.rbac_propagation),
            lro_shape: RwLock::new(config.lro_shape),
            vault_provisioning: RwLock::new(config.vault_provisioning),
            faults: faults::Faults::default(),
            dek_caches: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let base = state.base_url();
        let profile = CloudProfile {
            name: "local".into(),
            resource_manager: format!("{base}/"),
            authority_host: format!("{base}/"),
            graph: format!("{base}/"),
            keyvault_dns_suffix: VAULT_SUFFIX.into(),
            arm_audience: ARM_AUDIENCE.into(),
            keyvault_audience: VAULT_AUDIENCE.into(),
            graph_audience: GRAPH_AUDIENCE.into(),
            tenant_id,
            default_subscription: default_sub,
            ca_pem: tls.ca_pem.clone(),
            ca_path: dir.join(tls::CA_FILE),
            admin_key,
            operator,
        };
        let profile_json =
            serde_json::to_string_pretty(&profile).map_err(|e| LocalCloudError::Corrupt(e.to_string()))?;
        std::fs::write(dir.join(PROFILE_FILE), profile_json)
            .map_err(|e| LocalCloudError::io(dir.join(PROFILE_FILE), e))?;

        let rustls_config =
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls::server_config(&tls, state.clone())?));
        let app = app(state);
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, rustls_config)
            .map_err(|source| LocalCloudError::Bind { port, source })?
            .map(|inner| pki::PeerCertAcceptor { inner })
            .handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
            {
                tracing::error!("local cloud stopped: {e}");
            }
        });
        Ok(LocalCloud {
            profile,
            port,
            handle,
            task,
        })
    }

    pub fn profile(&self) -> &CloudProfile {
        &self.profile
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        let _ = self.task.await;
    }
}

/// Reads the profile a local cloud wrote into `state_dir`.
pub fn read_profile(state_dir: &Path) -> Result<CloudProfile, LocalCloudError> {
    let path = state_dir.join(PROFILE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| LocalCloudError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| LocalCloudError::Corrupt(format!("{}: {e}", path.display())))
}

fn app(state: Shared) -> Router {
    let keyvault: Router = Router::new().fallback(any(keyvault::handle)).with_state(state.clone());
    let main: Router = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route("/v1.0/me", get(entra::me))
        .route("/subscriptions", any(arm::handle))
        .route("/subscriptions/{*rest}", any(arm::handle))
        .route("/k8s/{*rest}", any(k8s::handle))
        .merge(admin::router())
        .with_state(state.clone());
    let dispatch = move |req: Request| {
        let mut keyvault = keyvault.clone();
        let mut main = main.clone();
        async move {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let result = if keyvault::vault_of_host(host).is_some() {
                keyvault.call(req).await
            } else {
                main.call(req).await
            };
            result.unwrap_or_else(|never| match never {})
        }
    };
    Router::new()
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(state, observe))
}

/// The service a request is for, and its cluster id (lowercased) for the API servers; `None`
/// for the admin API, which is never faulted.
fn service_of(host: &str, path: &str) -> Option<(faults::Service, Option<String>)> {
    use faults::Service;
    if keyvault::vault_of_host(host).is_some() {
        return Some((Service::Keyvault, None));
    }
    if path.starts_with("/_admin") {
        return None;
    }
    if path.contains("/oauth2/") {
        return Some((Service::Entra, None));
    }
    if let Some(rest) = path.strip_prefix("/k8s/") {
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).take(8).collect();
        return Some((
            Service::Apiserver,
            Some(format!("/{}", segs.join("/")).to_ascii_lowercase()),
        ));
    }
    if path.starts_with("/v1.0/") {
        return Some((Service::Graph, None));
    }
    Some((Service::Arm, None))
}

/// The answer an injected 429 or 5xx gets, in the shape of the service it stands in for: an
/// Entra error, a Kubernetes `Status`, or ARM's / Key Vault's `{"error":{"code","message"}}`
/// (azure-reference.md §3, §5).
fn fault_answer(service: faults::Service, status: StatusCode, retry_after: Option<u32>) -> Response {
    use faults::Service;
    let throttled = status == StatusCode::TOO_MANY_REQUESTS;
    let mut r = match service {
        Service::Entra => {
            let (error, code) = if throttled {
                ("temporarily_unavailable", 50196)
            } else {
                ("temporarily_unavailable", 50000)
            };
            entra::error_response(
                status,
                error,
                code,
                "The service is temporarily unavailable. Please try again.",
            )
        }
        Service::Apiserver => {
            let (reason, message) = match (throttled, status) {
                (true, _) => ("TooManyRequests", "Too many requests, please try again later."),
                (false, StatusCode::SERVICE_UNAVAILABLE) => (
                    "ServiceUnavailable",
                    "The server is currently unable to handle the request",
                ),
                _ => (
                    "InternalError",
                    "Internal error occurred: the server encountered an unexpected condition",
                ),
            };
            k8s::K8sError::new(status.as_u16(), reason, message).into_response()
        }
        _ if throttled => {
            http::ArmError::new(status, "TooManyRequests", "The request is being throttled.").into_response()
        }
        _ => http::ArmError::new(
            status,
            "InternalServerError",
            "Encountered internal server error. Please try again.",
        )
        .into_response(),
    };
    if let Some(after) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    r
}

/// Request ids, fault injection and the request log, around every request.
///
/// Guarantees: a before-handler fault (`throttle`, `5xx`, `drop`, `hang`) never reaches the
/// handler; an after-handler fault (`5xx-after`, `drop-after`) always lets the handler finish —
/// its writes are committed — before its answer is replaced; every injected fault is in the
/// request log's `fault` column (a KMS fault under the API server request that met it). A hung
/// request is logged when the hang starts (status 0: no answer was sent), and is held by an
/// async sleep of its own, so nothing else waits.
async fn observe(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let caller = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let service = service_of(&host, &path);
    let (fault, latency) = match &service {
        Some((s, cluster)) => state.faults.decide(*s, cluster.as_deref()),
        None => (faults::Fault::None, Duration::ZERO),
    };
    let service = service.map(|(s, _)| s).unwrap_or(faults::Service::Arm);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let request_id = http::new_guid();
    let record = |status: u16, fault: &str, secret_data: bool| RequestRecord {
        seq: 0,
        at_ms: http::now_ms(),
        method: method.clone(),
        host: host.clone(),
        path: path.clone(),
        status,
        caller: caller.clone(),
        fault: fault.to_string(),
        query: query.clone(),
        secret_data,
    };
    let mut response = match fault {
        faults::Fault::None | faults::Fault::ServerErrorAfter(_) | faults::Fault::DropAfter => {
            let handled = next.run(req).await;
            match fault {
                faults::Fault::ServerErrorAfter(code) => {
                    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    fault_answer(service, status, None)
                }
                faults::Fault::DropAfter => http::dropped_connection(),
                _ => handled,
            }
        }
        faults::Fault::Throttle(after) => fault_answer(service, StatusCode::TOO_MANY_REQUESTS, Some(after)),
        faults::Fault::ServerError(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            fault_answer(service, status, None)
        }
        faults::Fault::Drop => http::dropped_connection(),
        faults::Fault::Hang(hold) => {
            if let Err(e) = state.db.log_request(&record(0, fault.label(), false)) {
                tracing::warn!("request log: {e}");
            }
            tokio::time::sleep(hold).await;
            return http::dropped_connection();
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        let h = response.headers_mut();
        h.insert("x-ms-request-id", v.clone());
        h.insert("x-ms-correlation-request-id", v.clone());
        h.insert("x-ms-routing-request-id", v);
    }
    let label = match (fault, response.extensions().get::<k8s::KmsFaulted>()) {
        (faults::Fault::None, Some(k)) => k.0,
        _ => fault.label(),
    };
    let secret_data = response.extensions().get::<k8s::SecretDataReturned>().is_some();
    if let Err(e) = state
        .db
        .log_request(&record(response.status().as_u16(), label, secret_data))
    {
        tracing::warn!("request log: {e}");
    }
    response
}
