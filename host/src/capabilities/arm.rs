//! `kmsflow:workflow/arm`: generic, grant-scoped ARM requests for teams' own plugins.

use super::{capability_call, CapabilityError, StepContext};
use crate::grants::Action;
use crate::wit::arm::{self, Method, Response};
use crate::wit::types::ErrorKind;

/// Actions whose responses carry credentials; they never cross into a plugin.
const CREDENTIAL_ACTIONS: [&str; 3] = [
    "/listclusteradmincredential",
    "/listclusterusercredential",
    "/listclustermonitoringusercredential",
];

impl arm::Host for StepContext {
    async fn request(
        &mut self,
        method: Method,
        path: String,
        api_version: String,
        body: Option<String>,
    ) -> Result<Response, CapabilityError> {
        let lower = path.to_ascii_lowercase();
        if CREDENTIAL_ACTIONS.iter().any(|a| lower.ends_with(a))
            || lower.contains("/listkeys")
            || lower.contains("/secrets/")
        {
            return Err(CapabilityError::guest(
                ErrorKind::Denied,
                "CredentialsNotExposed",
                format!("arm.request: `{path}` returns credentials or secrets, which plugins may not read"),
            ));
        }
        let action = match method {
            Method::Get => Action::Read,
            Method::Put | Method::Patch | Method::Post => Action::Write,
        };
        capability_call!(self, "arm.request", Some(action), Some(&path), |b, auth| {
            b.arm_request(auth, method, &path, &api_version, body.as_deref())
        })
    }
}
