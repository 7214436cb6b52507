//! Long-running operations in each of ARM's shapes, and the operation faults (a hang in a
//! non-terminal state, an ending in `Failed` or `Canceled`).
//!
//! The shapes follow azure-reference.md §5 ("Long-running operations") and §1.2 (AKS's
//! operation-status and operation-result URLs):
//! - [`LroShape::AzureAsyncOperation`]: 201/200 with the resource (non-terminal
//!   `provisioningState`), `Azure-AsyncOperation` naming `…/locations/{loc}/operations/{id}`,
//!   whose status document answers 200 `{id, name, status, startTime, endTime?, error?}`;
//! - [`LroShape::Location`]: 202 with no body and `Location` naming
//!   `…/locations/{loc}/operationresults/{id}`, which answers 202 while running, 204 once the
//!   operation succeeded (as AKS does, §1.2), and the operation's error with a 4xx once it failed
//!   or was canceled;
//! - [`LroShape::ProvisioningState`]: 201/200 with the resource and nothing else; the client polls
//!   the resource until `provisioningState` is terminal.
//!
//! Every shape carries `Retry-After` (integer seconds, §5). [`LroShape::Rotate`] cycles through the
//! three, one operation after the other, from a counter kept in the database: the same sequence of
//! requests on the same state directory gives the same shapes, restarts included.
//!
//! **Architecture invariant:** nothing runs in the background. An operation records when it is
//! due; every read of its resource or of its status settles it lazily, so a restart loses nothing.
//! Faults are stored in the database too, and are read at settle time.

use crate::http::{json, now_ms, ArmError};
use crate::state::Shared;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json as j, Value};
use std::time::Duration;

/// How long-running operations are answered on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LroShape {
    /// `Azure-AsyncOperation` + `Retry-After` on a 201/200 carrying the resource (what AKS
    /// declares for its PUT; the default of an in-process [`crate::Config`]).
    #[default]
    AzureAsyncOperation,
    /// 202 + `Location` + `Retry-After`, no body.
    Location,
    /// 201/200 with the resource in a non-terminal `provisioningState` + `Retry-After` only.
    ProvisioningState,
    /// The three above in turn, one per operation, deterministically.
    Rotate,
}

/// The shapes [`LroShape::Rotate`] cycles through, in order.
const ROTATION: [LroShape; 3] = [
    LroShape::AzureAsyncOperation,
    LroShape::Location,
    LroShape::ProvisioningState,
];

impl LroShape {
    /// The setting's spelling (`azure-async-operation`, `location`, `provisioning-state`, `rotate`).
    pub fn as_str(self) -> &'static str {
        match self {
            LroShape::AzureAsyncOperation => "azure-async-operation",
            LroShape::Location => "location",
            LroShape::ProvisioningState => "provisioning-state",
            LroShape::Rotate => "rotate",
        }
    }
}

impl std::fmt::Display for LroShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A long-running-operation shape that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown long-running operation shape '{0}': use azure-async-operation, location, provisioning-state or rotate"
)]
pub struct UnknownLroShape(pub String);

impl std::str::FromStr for LroShape {
    type Err = UnknownLroShape;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ROTATION.as_slice(), &[LroShape::Rotate]]
            .concat()
            .into_iter()
            .find(|shape| shape.as_str() == s)
            .ok_or_else(|| UnknownLroShape(s.to_string()))
    }
}

/// How an operation ends when a fault says so: `Failed` or `Canceled`, with ARM's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ending {
    /// `Failed` or `Canceled`.
    pub status: String,
    pub code: String,
    pub message: String,
}

impl Ending {
    /// Checks that `status` is a terminal failure state.
    pub fn validate(&self) -> Result<(), ArmError> {
        match self.status.as_str() {
            "Failed" | "Canceled" => Ok(()),
            other => Err(ArmError::bad_request(
                "InvalidFault",
                format!("an operation can be made to end Failed or Canceled, not '{other}'"),
            )),
        }
    }
}

/// The shape the next operation is answered in: the configured one, or for
/// [`LroShape::Rotate`] the next of the rotation (the counter survives restarts).
pub fn next_shape(state: &Shared) -> Result<LroShape, ArmError> {
    let configured = state.lro_shape();
    if configured != LroShape::Rotate {
        return Ok(configured);
    }
    let n: usize = state.db.meta("lro_rotation")?.and_then(|v| v.parse().ok()).unwrap_or(0);
    state.db.set_meta("lro_rotation", &(n + 1).to_string())?;
    Ok(ROTATION[n % ROTATION.len()])
}

/// Arms a hang on `resource`: its operations stay in their non-terminal state until `for_`
/// from now has passed. A zero duration clears the hang.
pub fn hang(state: &Shared, resource: &str, for_: Duration) -> Result<Value, ArmError> {
    let mut doc = state.db.operation_fault(resource)?.unwrap_or(j!({}));
    if for_.is_zero() {
        if let Some(o) = doc.as_object_mut() {
            o.remove("hangUntilMs");
        }
    } else {
        doc["hangUntilMs"] = j!(now_ms() + for_.as_millis() as i64);
    }
    store(state, resource, doc)
}

/// Arms an ending: the next operation started on `resource` ends as `ending` says.
pub fn fail_next(state: &Shared, resource: &str, ending: &Ending) -> Result<Value, ArmError> {
    ending.validate()?;
    let mut doc = state.db.operation_fault(resource)?.unwrap_or(j!({}));
    doc["failNext"] = j!(ending);
    store(state, resource, doc)
}

fn store(state: &Shared, resource: &str, doc: Value) -> Result<Value, ArmError> {
    let empty = doc.as_object().is_none_or(|o| o.is_empty());
    state.db.set_operation_fault(resource, (!empty).then_some(&doc))?;
    Ok(doc)
}

/// Until when (ms since the epoch) operations on `resource` hang, if a hang is in force now.
pub fn hung_until(state: &Shared, resource: &str) -> Result<Option<i64>, ArmError> {
    let until = state
        .db
        .operation_fault(resource)?
        .and_then(|d| d["hangUntilMs"].as_i64());
    Ok(until.filter(|u| *u > now_ms()))
}

/// Takes the armed ending of `resource` (it applies to one operation only).
pub fn take_ending(state: &Shared, resource: &str) -> Result<Option<Ending>, ArmError> {
    let Some(mut doc) = state.db.operation_fault(resource)? else {
        return Ok(None);
    };
    let ending = doc
        .as_object_mut()
        .and_then(|o| o.remove("failNext"))
        .and_then(|e| serde_json::from_value::<Ending>(e).ok());
    if ending.is_some() {
        store(state, resource, doc)?;
    }
    Ok(ending)
}

/// `Retry-After` for operations: the operation duration in whole seconds, at least 1, at most
/// 600 (the RPC's bound, §5).
pub fn retry_after(state: &Shared) -> u64 {
    state.operation_duration().as_secs().clamp(1, 600)
}

/// Whether `op` (an operation document) is due to end: still `InProgress`, its time has come,
/// and no hang holds its resource.
pub fn is_due(state: &Shared, op: &Value) -> Result<bool, ArmError> {
    if op["status"] != "InProgress" || op["completesAtMs"].as_i64().unwrap_or(0) > now_ms() {
        return Ok(false);
    }
    let resource = op["resourceId"].as_str().unwrap_or_default();
    Ok(hung_until(state, resource)?.is_none())
}

/// Ends `op`: `Succeeded`, or the armed ending (`endStatus` + `failWith`) it was started with.
/// Returns the terminal status.
pub fn finish(op: &mut Value) -> String {
    let failure = op.get("failWith").cloned().filter(Value::is_object);
    let outcome = match (&failure, op["endStatus"].as_str()) {
        (None, _) => "Succeeded".to_string(),
        (Some(_), Some(s @ ("Failed" | "Canceled"))) => s.to_string(),
        (Some(_), _) => "Failed".to_string(),
    };
    op["status"] = j!(outcome);
    op["endTime"] = j!(crate::http::now_rfc3339());
    if let Some(error) = failure {
        op["error"] = error;
    }
    outcome
}

/// The first answer to a request that started operation `op_id` in `shape`: `created` selects
/// 201 over 200 for the shapes that carry the resource, `body` is the resource document.
pub fn accepted(
    state: &Shared,
    shape: LroShape,
    created: bool,
    body: Value,
    status_url: &str,
    result_url: &str,
) -> Response {
    let with_body = |b: Value| json(if created { StatusCode::CREATED } else { StatusCode::OK }, b);
    let mut response = match shape {
        LroShape::Location => {
            let mut r = json(StatusCode::ACCEPTED, Value::Null);
            *r.body_mut() = axum::body::Body::empty();
            r.headers_mut().remove(header::CONTENT_TYPE);
            if let Ok(v) = HeaderValue::from_str(result_url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        LroShape::AzureAsyncOperation | LroShape::Rotate => {
            let mut r = with_body(body);
            if let Ok(v) = HeaderValue::from_str(status_url) {
                r.headers_mut().insert("azure-asyncoperation", v);
            }
            r
        }
        LroShape::ProvisioningState => with_body(body),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(state)));
    response
}

/// The operation-status document (`Azure-AsyncOperation` URL): always 200 while the operation is
/// readable; `Retry-After` while it runs. `id` is the status URL's path, `name` the operation id,
/// as ARM's documents carry them (§1.2, §5).
pub fn status_document(state: &Shared, op: &Value, id_path: &str, op_id: &str) -> Response {
    let mut body = j!({"id": id_path, "name": op_id, "status": op["status"], "startTime": op["startTime"]});
    for k in ["endTime", "error"] {
        if !op[k].is_null() {
            body[k] = op[k].clone();
        }
    }
    let mut response = json(StatusCode::OK, body);
    if op["status"] == "InProgress" {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(state)));
    }
    response
}

/// The operation-result answer (`Location` URL): 202 + `Location` + `Retry-After` while running,
/// 204 after success, and after a failure or cancellation the operation's error in ARM's shape
/// with 400 (`Failed`) or 409 (`Canceled`): the status a client's poller turns into an error.
pub fn result_answer(state: &Shared, op: &Value, self_url: &str) -> Response {
    match op["status"].as_str().unwrap_or("InProgress") {
        "InProgress" => {
            let mut r = json(StatusCode::ACCEPTED, Value::Null);
            *r.body_mut() = axum::body::Body::empty();
            r.headers_mut().remove(header::CONTENT_TYPE);
            if let Ok(v) = HeaderValue::from_str(self_url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(state)));
            r
        }
        "Succeeded" => {
            let mut r = json(StatusCode::NO_CONTENT, Value::Null);
            *r.body_mut() = axum::body::Body::empty();
            r.headers_mut().remove(header::CONTENT_TYPE);
            r
        }
        status => {
            let http = if status == "Canceled" {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            let error = &op["error"];
            let e = ArmError::new(
                http,
                error["code"].as_str().unwrap_or(status),
                error["message"].as_str().unwrap_or("The operation did not succeed."),
            );
            axum::response::IntoResponse::into_response(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_from_their_spelling_and_nothing_else() {
        for shape in [
            LroShape::AzureAsyncOperation,
            LroShape::Location,
            LroShape::ProvisioningState,
            LroShape::Rotate,
        ] {
            assert_eq!(shape.as_str().parse::<LroShape>(), Ok(shape));
            assert_eq!(
                serde_json::to_value(shape).ok(),
                Some(j!(shape.as_str())),
                "serde and FromStr agree"
            );
        }
        assert!("Location".parse::<LroShape>().is_err());
    }

    #[test]
    fn an_armed_ending_decides_the_outcome() {
        let mut op = j!({"status": "InProgress"});
        assert_eq!(finish(&mut op), "Succeeded");
        let mut op = j!({"status": "InProgress", "failWith": {"code": "X", "message": "m"}, "endStatus": "Canceled"});
        assert_eq!(finish(&mut op), "Canceled");
        assert_eq!(op["error"]["code"], "X");
        let mut op = j!({"status": "InProgress", "failWith": {"code": "X", "message": "m"}});
        assert_eq!(finish(&mut op), "Failed");
    }
}
