//! `kmsflow:workflow/identity`: who the runner is, and user-assigned managed identities.

use super::{capability_call, CapabilityError, StepContext};
use crate::grants::Action;
use crate::wit::identity::{self, Principal, UserAssignedIdentity};

impl identity::Host for StepContext {
    async fn whoami(&mut self) -> Result<Principal, CapabilityError> {
        capability_call!(self, "identity.whoami", None, None, |b, auth| b.whoami(auth))
    }

    async fn get_user_assigned(&mut self, id: String) -> Result<UserAssignedIdentity, CapabilityError> {
        capability_call!(
            self,
            "identity.get-user-assigned",
            Some(Action::Read),
            Some(&id),
            |b, auth| { b.get_user_assigned(auth, &id) }
        )
    }

    async fn ensure_user_assigned(
        &mut self,
        id: String,
        location: String,
    ) -> Result<UserAssignedIdentity, CapabilityError> {
        capability_call!(
            self,
            "identity.ensure-user-assigned",
            Some(Action::Write),
            Some(&id),
            |b, auth| { b.ensure_user_assigned(auth, &id, &location) }
        )
    }
}
