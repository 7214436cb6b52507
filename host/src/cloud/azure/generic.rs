//! The backend half of `arm`: one request the capability already classified and authorised,
//! sent to the URL built from the parsed id's segments.

use super::{guest, AzureBackend, R};
use crate::resource_id::ResourceId;
use crate::wit::arm::{Method as ArmMethod, Response as ArmReply};
use serde_json::Value;

impl AzureBackend {
    pub(super) async fn generic(
        &self,
        method: ArmMethod,
        id: &ResourceId,
        api_version: &str,
        body: Option<&Value>,
    ) -> R<ArmReply> {
        let url = self.arm.url(id, api_version, &[]).map_err(guest)?;
        let method = match method {
            ArmMethod::Get => reqwest::Method::GET,
            ArmMethod::Put => reqwest::Method::PUT,
            ArmMethod::Patch => reqwest::Method::PATCH,
            ArmMethod::Post => reqwest::Method::POST,
        };
        let response = self.arm.send(method.clone(), url, body, &[]).await.map_err(guest)?;
        let response = if method == reqwest::Method::GET {
            response
        } else {
            // An action's operation ends in the state of the resource it acted on.
            let resource = match method {
                reqwest::Method::POST => id.parent().unwrap_or_else(|| id.clone()),
                _ => id.clone(),
            };
            self.arm.wait(&resource, api_version, response).await.map_err(guest)?
        };
        Ok(ArmReply {
            status: response.status,
            body: if response.body.is_null() {
                String::new()
            } else {
                response.body.to_string()
            },
            request_id: response.request_id,
        })
    }
}
