//! What one capability call cost on the wire — requests sent, retries and their reasons, the
//! services' request ids — collected without threading a context through every client method:
//! the policy point runs the backend future inside [`collect`], and the clients [`record`] into
//! whatever collection is current (none outside a capability call).

use std::future::Future;
use std::sync::{Arc, Mutex};

/// Request ids kept per call; a 10,000-secret rewrite page does not need all of them.
const MAX_REQUEST_IDS: usize = 16;
const MAX_RETRY_REASONS: usize = 8;

/// The wire-level facts of one capability call, for the journal and `-v`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireReport {
    /// HTTP requests sent, retries included.
    pub requests: u32,
    /// Requests that were retried (429, 5xx, dropped connections).
    pub retries: u32,
    /// Why, for the first few retries (`429 Retry-After 1s`, `503`, `connection dropped`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_reasons: Vec<String>,
    /// `x-ms-request-id` (Azure) or `Audit-Id` (Kubernetes) of the first answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
}

tokio::task_local! {
    static CURRENT: Arc<Mutex<WireReport>>;
    static NOTICES: Notices;
}

/// Where a client's "still waiting, and why" lines go during a capability call (the step's
/// progress display).
pub type Notices = Arc<dyn Fn(&str) + Send + Sync>;

/// Tells the user what a call is waiting for (a role assignment to propagate, an operation to
/// finish); nothing outside a call that [`collect_noticing`] runs.
pub fn notice(message: &str) {
    let _ = NOTICES.try_with(|n| n(message));
}

fn with(f: impl FnOnce(&mut WireReport)) {
    let _ = CURRENT.try_with(|r| {
        let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r);
    });
}

/// One request answered (successfully or not) with this request id.
pub fn record(request_id: Option<&str>) {
    with(|r| {
        r.requests += 1;
        if let Some(id) = request_id {
            if r.request_ids.len() < MAX_REQUEST_IDS {
                r.request_ids.push(id.to_string());
            }
        }
    });
}

/// One request that will be retried, and why (never a body: bodies may carry secrets).
pub fn record_retry(reason: &str) {
    with(|r| {
        r.requests += 1;
        r.retries += 1;
        if r.retry_reasons.len() < MAX_RETRY_REASONS {
            r.retry_reasons.push(reason.chars().take(120).collect());
        }
    });
}

/// [`collect`], with the clients' [`notice`]s going to `notices`.
pub async fn collect_noticing<F: Future>(fut: F, notices: Notices) -> (F::Output, WireReport) {
    NOTICES.scope(notices, collect(fut)).await
}

/// Runs `fut`, collecting what the clients record meanwhile.
pub async fn collect<F: Future>(fut: F) -> (F::Output, WireReport) {
    let report = Arc::new(Mutex::new(WireReport::default()));
    let out = CURRENT.scope(Arc::clone(&report), fut).await;
    let report = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_only_inside_a_collection() {
        record(Some("outside"));
        let ((), report) = collect(async {
            record(Some("a"));
            record_retry("503");
            record(None);
        })
        .await;
        assert_eq!(report.requests, 3);
        assert_eq!(report.retries, 1);
        assert_eq!(report.request_ids, vec!["a".to_string()]);
        assert_eq!(report.retry_reasons, vec!["503".to_string()]);
    }
}
