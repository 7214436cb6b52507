//! The backend half of `identity`: who the runner is, and user-assigned identities.

use super::{guest, s, AzureBackend, R};
use crate::backend::Authorized;
use crate::capabilities::CapabilityError;
use crate::resource_id::ResourceId;
use crate::wit::identity::{Principal, PrincipalType, UserAssignedIdentity};
use crate::wit::types::ErrorKind;
use base64::Engine;
use serde_json::{json, Value};

fn identity_of(doc: &Value) -> UserAssignedIdentity {
    let p = &doc["properties"];
    UserAssignedIdentity {
        id: s(&doc["id"]),
        location: s(&doc["location"]),
        principal_id: s(&p["principalId"]),
        client_id: s(&p["clientId"]),
        tenant_id: s(&p["tenantId"]),
    }
}

impl AzureBackend {
    /// The runner's principal, from the claims of its Resource Manager token (never the token).
    pub(super) async fn principal(&self, _auth: &Authorized) -> R<Principal> {
        let token = self.arm.token().await.map_err(guest)?;
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c.trim_end_matches('='))
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| {
                CapabilityError::guest(ErrorKind::Internal, "TokenUnreadable", "the access token is not a JWT")
            })?;
        let principal_type = match claims["idtyp"].as_str() {
            Some("user") => PrincipalType::User,
            _ if claims["scp"].is_string() => PrincipalType::User,
            _ => PrincipalType::ServicePrincipal,
        };
        Ok(Principal {
            object_id: s(&claims["oid"]),
            tenant_id: s(&claims["tid"]),
            principal_type,
        })
    }

    pub(super) async fn user_assigned(&self, id: &ResourceId) -> R<UserAssignedIdentity> {
        Ok(identity_of(&self.get_doc(id, &self.versions.identities).await?))
    }

    /// Creates the identity if missing; never changes one that exists.
    pub(super) async fn ensure_identity(&self, id: &ResourceId, location: &str) -> R<UserAssignedIdentity> {
        match self.arm.get(id, &self.versions.identities).await {
            Ok(r) => Ok(identity_of(&r.body)),
            Err(e) if e.status() == Some(404) => {
                let created = self
                    .arm
                    .put(id, &self.versions.identities, &json!({"location": location}), &[])
                    .await
                    .map_err(guest)?;
                Ok(identity_of(&created.body))
            }
            Err(e) => Err(guest(e)),
        }
    }
}
