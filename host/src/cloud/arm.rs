//! The Azure Resource Manager client: bearer tokens from `azure_identity`, retries for 429, 5xx
//! and dropped connections (honouring `Retry-After`, else jittered exponential backoff) within a
//! total deadline, ARM error bodies mapped to the WIT error, `x-ms-request-id` kept, and
//! long-running operations awaited (`Azure-AsyncOperation`, `Location`, `provisioningState`).

use crate::resource_id::ResourceId;
use crate::wit::types::{Error as WitError, ErrorKind};
use azure_core::credentials::TokenCredential;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff when the service gives no `Retry-After`; doubled per attempt, jittered.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Total time for one call including retries and, for long-running operations, polling.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            deadline: Duration::from_secs(60 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1-based retry count), from `Retry-After` if given.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        let capped = exp.min(self.max_delay);
        // Full jitter in [capped/2, capped].
        let half = capped / 2;
        half + Duration::from_nanos(rand::random::<u64>() % (half.as_nanos() as u64 + 1))
    }
}

/// A failed cloud call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    /// The service answered with an error.
    #[error("{status} {code}: {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        /// The innermost `innererror.code` when the body has one (Key Vault's `ForbiddenByRbac`
        /// under `Forbidden`, reference §3).
        inner_code: Option<String>,
    },
    /// No usable answer within the retries and deadline (connections failed, 5xx, throttling).
    #[error("{0}")]
    Unavailable(String),
    /// No token could be obtained.
    #[error("cannot get a token: {0}")]
    Auth(String),
    /// The host refused to build the request (an invalid api-version, a link to another host).
    #[error("{0}")]
    Invalid(String),
    /// A long-running operation did not finish within the deadline; it goes on in the service.
    #[error("operation {operation}: {message}")]
    OperationTimedOut { operation: String, message: String },
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("operation {status}: {code}: {message}")]
    OperationFailed {
        status: String,
        code: String,
        message: String,
    },
}

impl CloudError {
    /// The WIT error a plugin sees.
    pub fn to_wit(&self) -> WitError {
        let (kind, code, message) = match self {
            CloudError::Service {
                status, code, message, ..
            } => {
                let kind = match *status {
                    400 | 422 => ErrorKind::Invalid,
                    401 | 403 => ErrorKind::Denied,
                    404 => ErrorKind::NotFound,
                    409 => ErrorKind::Conflict,
                    412 => ErrorKind::Precondition,
                    429 => ErrorKind::Throttled,
                    500..=599 => ErrorKind::Unavailable,
                    _ => ErrorKind::Internal,
                };
                (kind, code.clone(), message.clone())
            }
            CloudError::Unavailable(m) => (ErrorKind::Unavailable, String::new(), m.clone()),
            CloudError::Invalid(m) => (ErrorKind::Invalid, "InvalidRequest".to_string(), m.clone()),
            CloudError::Auth(m) => (ErrorKind::Denied, "CredentialUnavailable".to_string(), m.clone()),
            CloudError::OperationFailed { code, message, .. } => (ErrorKind::Conflict, code.clone(), message.clone()),
            CloudError::OperationTimedOut { operation, message } => (
                ErrorKind::Unavailable,
                "OperationTimedOut".to_string(),
                format!("operation {operation}: {message}"),
            ),
        };
        WitError { kind, code, message }
    }

    /// Whether this is the service saying that a role assignment has not taken effect yet:
    /// Key Vault's 403 `ForbiddenByRbac` (code or inner code), or AKS's
    /// `AzureKeyVaultKmsValidateIdentityPermissionCustomerError` (reference §1.8: one of its
    /// causes is "RBAC not yet propagated"), on the request or as the operation's failure.
    pub fn awaits_role_propagation(&self) -> bool {
        match self {
            CloudError::Service {
                status,
                code,
                inner_code,
                ..
            } => {
                (*status == 403 && (code == "ForbiddenByRbac" || inner_code.as_deref() == Some("ForbiddenByRbac")))
                    || PERMISSION_CODES.contains(&code.as_str())
            }
            CloudError::OperationFailed { code, .. } => PERMISSION_CODES.contains(&code.as_str()),
            _ => false,
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// AKS's refusals of a KMS configuration because the identity lacks a permission on the vault
/// (reference §1.8), which a just-made role assignment that has not propagated also causes.
/// The second is the local cloud's code for the private-mode Key Vault Contributor check, for
/// which the reference documents none.
const PERMISSION_CODES: [&str; 2] = [
    "AzureKeyVaultKmsValidateIdentityPermissionCustomerError",
    "AzureKeyVaultKmsPrivateEndpointPermissionMissing",
];

/// A successful answer.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
    pub request_id: Option<String>,
    /// Retries it took (0: first attempt succeeded).
    pub retries: u32,
}

/// A Resource Manager client for one cloud and credential.
#[derive(Clone)]
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: String,
    scope: String,
    credential: Arc<dyn TokenCredential>,
    policy: RetryPolicy,
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (the form ARM and Kubernetes send).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-ms-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "Canceled")
}

impl ArmClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        scope: &str,
        credential: Arc<dyn TokenCredential>,
        policy: RetryPolicy,
    ) -> Self {
        ArmClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            scope: scope.to_string(),
            credential,
            policy,
        }
    }

    /// The URL of `id` on this client's endpoint: the endpoint's path, then each segment of `id`
    /// pushed through the `url` crate's segment API (never string concatenation), then the
    /// query pairs and a checked api-version. What reaches the wire is the id the grant check saw.
    pub fn url(&self, id: &ResourceId, api_version: &str, query: &[(&str, &str)]) -> Result<Url, CloudError> {
        crate::names::api_version(api_version).map_err(|e| CloudError::Invalid(e.to_string()))?;
        let mut url = Url::parse(&self.endpoint)
            .map_err(|e| CloudError::Invalid(format!("the endpoint {} is not a URL: {e}", self.endpoint)))?;
        url.path_segments_mut()
            .map_err(|()| CloudError::Invalid(format!("the endpoint {} cannot have a path", self.endpoint)))?
            .pop_if_empty()
            .extend(id.segments());
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("api-version", api_version);
        }
        Ok(url)
    }

    /// A link the service handed back (`nextLink`, `Azure-AsyncOperation`, `Location`), accepted
    /// only on this client's own scheme, host and port, so no token is ever sent elsewhere.
    pub fn follow(&self, link: &str) -> Result<Url, CloudError> {
        let url = Url::parse(link).map_err(|e| CloudError::Invalid(format!("the service's link is not a URL: {e}")))?;
        let base = Url::parse(&self.endpoint).ok();
        let same = base.as_ref().is_some_and(|b| {
            b.scheme() == url.scheme()
                && b.host_str() == url.host_str()
                && b.port_or_known_default() == url.port_or_known_default()
        });
        if !same || !url.username().is_empty() || url.password().is_some() {
            return Err(CloudError::Invalid(format!(
                "the service linked to {}, which is not {}; refusing to follow",
                url.origin().ascii_serialization(),
                self.endpoint
            )));
        }
        Ok(url)
    }

    /// Sends one request (with retries), `extra` headers such as `If-Match` included.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Result<ArmResponse, CloudError> {
        self.send_attempts(method, url, body, extra, self.policy.max_attempts)
            .await
    }

    /// Sends one request exactly once: for a call that is not idempotent (creating a key
    /// version), whose caller must first check whether a lost attempt took effect before trying
    /// again. A 429/5xx/dropped connection is [`CloudError::Unavailable`].
    pub async fn send_once(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Result<ArmResponse, CloudError> {
        self.send_attempts(method, url, body, extra, 1).await
    }

    /// The client's retry policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    async fn send_attempts(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        extra: &[(&str, &str)],
        max_attempts: u32,
    ) -> Result<ArmResponse, CloudError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let token = match self.credential.get_token(&[&self.scope], None).await {
                Ok(token) => token,
                Err(e) => {
                    // Entra refusing the credential (`AADSTS…`) is final; a token endpoint that
                    // is throttled or down after the identity library's own retries is retried
                    // like any other call, within the same attempts and deadline.
                    let why = e.to_string();
                    attempt += 1;
                    let delay = self.policy.delay(attempt, None);
                    if why.contains("AADSTS")
                        || attempt >= max_attempts
                        || started.elapsed() + delay > self.policy.deadline
                    {
                        return Err(CloudError::Auth(why));
                    }
                    super::wire::record_retry("token unavailable");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.token.secret());
            for (name, value) in extra {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                    req = req.header(n, v);
                }
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.text().await {
                        Ok(text) => Ok((status, headers, text)),
                        Err(e) => Err(format!("reading the response failed: {e}")),
                    }
                }
                Err(e) => Err(format!("request failed: {e}")),
            };
            let (wait, last_error) = match outcome {
                Ok((status, headers, text)) if !retryable(status) => {
                    let body: Value = if text.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    };
                    let request_id = request_id(&headers);
                    super::wire::record(request_id.as_deref());
                    if status.is_success() {
                        return Ok(ArmResponse {
                            status: status.as_u16(),
                            body,
                            headers,
                            request_id,
                            retries: attempt,
                        });
                    }
                    let error = &body["error"];
                    let mut inner = &error["innererror"];
                    let mut inner_code = None;
                    while let Some(code) = inner["code"].as_str() {
                        inner_code = Some(code.to_string());
                        inner = &inner["innererror"];
                    }
                    return Err(CloudError::Service {
                        inner_code,
                        status: status.as_u16(),
                        code: error["code"].as_str().unwrap_or_default().to_string(),
                        message: error["message"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| body.to_string()),
                        request_id,
                    });
                }
                Ok((status, headers, text)) => {
                    let wait = retry_after(&headers);
                    super::wire::record_retry(&match wait {
                        Some(w) => format!("{} Retry-After {}s", status.as_u16(), w.as_secs()),
                        None => status.as_u16().to_string(),
                    });
                    (
                        wait,
                        format!("{status}: {}", text.chars().take(300).collect::<String>()),
                    )
                }
                Err(e) => {
                    super::wire::record_retry("connection failed");
                    (None, e)
                }
            };
            attempt += 1;
            let delay = self.policy.delay(attempt, wait);
            if attempt >= max_attempts || started.elapsed() + delay > self.policy.deadline {
                return Err(CloudError::Unavailable(format!(
                    "{method} {url} gave up after {attempt} attempts: {last_error}"
                )));
            }
            tracing::debug!(%method, %url, attempt, ?delay, "retrying: {last_error}");
            tokio::time::sleep(delay).await;
        }
    }

    /// The Resource Manager base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A token for Resource Manager (the caller reads its claims, e.g. `oid`).
    pub async fn token(&self) -> Result<String, CloudError> {
        let token = self
            .credential
            .get_token(&[&self.scope], None)
            .await
            .map_err(|e| CloudError::Auth(e.to_string()))?;
        Ok(token.token.secret().to_string())
    }

    /// A token from this client's credential for another resource, e.g. the AKS server
    /// application for a cluster without local accounts. It stays inside the host.
    pub async fn token_for(&self, scope: &str) -> Result<String, CloudError> {
        let token = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| CloudError::Auth(e.to_string()))?;
        Ok(token.token.secret().to_string())
    }

    pub async fn get(&self, id: &ResourceId, api_version: &str) -> Result<ArmResponse, CloudError> {
        self.send(Method::GET, self.url(id, api_version, &[])?, None, &[]).await
    }

    /// A GET with extra query pairs (a list's `$filter`), each encoded by the `url` crate.
    pub async fn get_query(
        &self,
        id: &ResourceId,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<ArmResponse, CloudError> {
        self.send(Method::GET, self.url(id, api_version, query)?, None, &[])
            .await
    }

    /// A GET of a link the service returned (`nextLink`), on this client's own host only.
    pub async fn get_link(&self, link: &str) -> Result<ArmResponse, CloudError> {
        self.send(Method::GET, self.follow(link)?, None, &[]).await
    }

    pub async fn put(
        &self,
        id: &ResourceId,
        api_version: &str,
        body: &Value,
        extra: &[(&str, &str)],
    ) -> Result<ArmResponse, CloudError> {
        self.send(Method::PUT, self.url(id, api_version, &[])?, Some(body), extra)
            .await
    }

    pub async fn patch(&self, id: &ResourceId, api_version: &str, body: &Value) -> Result<ArmResponse, CloudError> {
        self.send(Method::PATCH, self.url(id, api_version, &[])?, Some(body), &[])
            .await
    }

    pub async fn post(
        &self,
        id: &ResourceId,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<ArmResponse, CloudError> {
        self.send(Method::POST, self.url(id, api_version, &[])?, body, &[])
            .await
    }

    /// Waits for the long-running operation `first` started on `path`, then returns the resource
    /// (reference §5, "long-running operations"):
    ///
    /// - `Azure-AsyncOperation`: the status document (always 200) until its `status` is terminal;
    /// - else `202` + `Location`: the Location URL answers 202 while running, then 200/204;
    /// - else a non-terminal `properties.provisioningState` (or a bare 202): the resource itself.
    ///
    /// Each poll waits the service's `Retry-After`, else a backoff doubling from 1 s to 30 s (as
    /// the Azure SDKs' pollers do), and the whole wait is bounded by the retry policy's deadline:
    /// an operation still running then fails with [`CloudError::OperationTimedOut`], naming the
    /// operation, so a `resume` can continue waiting on it.
    pub async fn wait(
        &self,
        path: &ResourceId,
        api_version: &str,
        first: ArmResponse,
    ) -> Result<ArmResponse, CloudError> {
        let header = |name: &str| {
            first
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut poll = Poller::new(self.policy.deadline, retry_after(&first.headers));
        if let Some(status_url) = header("azure-asyncoperation") {
            let operation = operation_id(&status_url);
            loop {
                poll.sleep(path, &operation, "InProgress").await?;
                let answer = self.send(Method::GET, self.follow(&status_url)?, None, &[]).await?;
                let status = answer.body["status"].as_str().unwrap_or("InProgress").to_string();
                poll.after(&answer.headers);
                if terminal(&status) {
                    if status != "Succeeded" {
                        let error = &answer.body["error"];
                        return Err(CloudError::OperationFailed {
                            status,
                            code: error["code"].as_str().unwrap_or_default().to_string(),
                            message: format!(
                                "operation {operation}: {}",
                                error["message"].as_str().unwrap_or_default()
                            ),
                        });
                    }
                    return self.get(path, api_version).await;
                }
                poll.state = status;
            }
        }
        if let Some(location) = header("location").filter(|_| first.status == 202) {
            let operation = operation_id(&location);
            loop {
                poll.sleep(path, &operation, "InProgress").await?;
                let answer = self.send(Method::GET, self.follow(&location)?, None, &[]).await?;
                poll.after(&answer.headers);
                if answer.status != 202 {
                    return self.get(path, api_version).await;
                }
            }
        }
        let mut current = first;
        let operation = format!("{path} (provisioningState)");
        loop {
            let state = current.body["properties"]["provisioningState"]
                .as_str()
                .unwrap_or(if current.status == 202 { "Accepted" } else { "Succeeded" })
                .to_string();
            if terminal(&state) {
                return if state == "Succeeded" {
                    Ok(current)
                } else {
                    Err(CloudError::OperationFailed {
                        status: state.clone(),
                        code: String::new(),
                        message: format!("{path} ended {state}"),
                    })
                };
            }
            poll.state = state.clone();
            poll.sleep(path, &operation, &state).await?;
            current = self.get(path, api_version).await?;
            poll.after(&current.headers);
        }
    }
}

/// The id of an operation from its status or result URL (`…/operations/{id}?…`), else the URL.
fn operation_id(url: &str) -> String {
    url.split('?')
        .next()
        .and_then(|p| p.trim_end_matches('/').rsplit('/').next())
        .filter(|id| !id.is_empty())
        .unwrap_or(url)
        .to_string()
}

/// The pacing of one long-running operation's polls: `Retry-After` when the service gives one,
/// else 1 s doubling to [`MAX_POLL_INTERVAL`]; never past the deadline.
struct Poller {
    started: Instant,
    deadline: Duration,
    next: Duration,
    backoff: Duration,
    state: String,
}

/// The longest wait between two polls without a `Retry-After` (the Azure SDKs' default).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

impl Poller {
    fn new(deadline: Duration, retry_after: Option<Duration>) -> Self {
        Poller {
            started: Instant::now(),
            deadline,
            next: retry_after.unwrap_or(Duration::from_secs(1)),
            backoff: Duration::from_secs(1),
            state: String::new(),
        }
    }

    /// Sleeps until the next poll, or fails when that would pass the deadline.
    async fn sleep(&mut self, path: &ResourceId, operation: &str, default_state: &str) -> Result<(), CloudError> {
        let elapsed = self.started.elapsed();
        if elapsed + self.next > self.deadline {
            let state = if self.state.is_empty() {
                default_state
            } else {
                &self.state
            };
            return Err(CloudError::OperationTimedOut {
                operation: operation.to_string(),
                message: format!(
                    "the operation on {path} is still {state} after {}s (the target's retry deadline is {}s); \
                     it goes on in Azure: `kmsflow resume` continues waiting for it",
                    elapsed.as_secs(),
                    self.deadline.as_secs()
                ),
            });
        }
        if elapsed >= Duration::from_secs(10) {
            let state = if self.state.is_empty() {
                default_state
            } else {
                &self.state
            };
            super::wire::notice(&format!(
                "waiting for operation {operation}: {state} ({}s)",
                elapsed.as_secs()
            ));
        }
        tokio::time::sleep(self.next).await;
        Ok(())
    }

    /// Takes the next interval from a poll's answer.
    fn after(&mut self, headers: &HeaderMap) {
        self.next = match retry_after(headers) {
            Some(wait) => wait,
            None => {
                self.backoff = (self.backoff * 2).min(MAX_POLL_INTERVAL);
                self.backoff
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_and_backoff_grows_with_jitter_and_a_cap() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(3, Some(Duration::from_secs(1))), Duration::from_secs(1));
        assert_eq!(p.delay(1, Some(Duration::from_secs(600))), Duration::from_secs(2));
        for attempt in 1..6 {
            let d = p.delay(attempt, None);
            let full = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(2));
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn operation_ids_come_from_status_and_result_urls() {
        assert_eq!(
            operation_id("https://management.azure.com/subscriptions/s/providers/Microsoft.ContainerService/locations/westeurope/operations/7f3c?api-version=2017-08-31"),
            "7f3c"
        );
        assert_eq!(operation_id("https://h/x/operationresults/ab12/?t=1"), "ab12");
    }

    #[tokio::test]
    async fn polling_backs_off_to_thirty_seconds_and_stops_at_the_deadline() {
        let id = ResourceId::parse("/subscriptions/s/resourceGroups/rg").unwrap();
        let mut p = Poller::new(Duration::from_secs(3600), None);
        let empty = HeaderMap::new();
        let mut waits = Vec::new();
        for _ in 0..7 {
            p.after(&empty);
            waits.push(p.next.as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("12"));
        p.after(&headers);
        assert_eq!(p.next, Duration::from_secs(12));
        let mut late = Poller::new(Duration::from_millis(500), Some(Duration::from_secs(1)));
        late.state = "Updating".into();
        let err = late.sleep(&id, "op-1", "InProgress").await.unwrap_err();
        assert!(
            matches!(&err, CloudError::OperationTimedOut { operation, .. } if operation == "op-1"),
            "{err}"
        );
        assert!(err.to_string().contains("still Updating"), "{err}");
    }

    #[test]
    fn service_errors_map_to_wit_kinds() {
        let e = |status| {
            CloudError::Service {
                status,
                code: "C".into(),
                message: "m".into(),
                request_id: None,
                inner_code: None,
            }
            .to_wit()
            .kind
        };
        assert_eq!(e(404), ErrorKind::NotFound);
        let forbidden = |code: &str, inner: Option<&str>| CloudError::Service {
            status: 403,
            code: code.into(),
            message: String::new(),
            request_id: None,
            inner_code: inner.map(str::to_string),
        };
        assert!(forbidden("Forbidden", Some("ForbiddenByRbac")).awaits_role_propagation());
        assert!(forbidden("ForbiddenByRbac", None).awaits_role_propagation());
        assert!(!forbidden("Forbidden", Some("KeyDisabled")).awaits_role_propagation());
        assert_eq!(e(403), ErrorKind::Denied);
        assert_eq!(e(409), ErrorKind::Conflict);
        assert_eq!(e(412), ErrorKind::Precondition);
        assert_eq!(e(400), ErrorKind::Invalid);
        assert_eq!(e(429), ErrorKind::Throttled);
    }
}
