//! `kmsflow:workflow/identity`: who the runner is, and user-assigned managed identities.

use super::{capability_call, CapabilityError, StepContext, IDENTITY};
use crate::grants::Action;
use crate::names::{self, MAX_TEXT_ARG_BYTES};
use crate::wit::identity::{self, Principal, UserAssignedIdentity};

impl identity::Host for StepContext {
    async fn whoami(&mut self) -> Result<Principal, CapabilityError> {
        capability_call!(self, "identity.whoami", Vec::<Action>::new(), None, |b, auth| b
            .whoami(auth))
    }

    async fn get_user_assigned(&mut self, id: String) -> Result<UserAssignedIdentity, CapabilityError> {
        let id = self.resource_arg("identity.get-user-assigned", &[Action::Read], &id, IDENTITY)?;
        capability_call!(
            self,
            "identity.get-user-assigned",
            [Action::Read],
            Some(&id),
            |b, auth| b.get_user_assigned(auth, &id)
        )
    }

    async fn ensure_user_assigned(
        &mut self,
        id: String,
        location: String,
    ) -> Result<UserAssignedIdentity, CapabilityError> {
        let id = self.resource_arg("identity.ensure-user-assigned", &[Action::Write], &id, IDENTITY)?;
        self.arg(
            "identity.ensure-user-assigned",
            names::text("location", &location, MAX_TEXT_ARG_BYTES),
        )?;
        capability_call!(
            self,
            "identity.ensure-user-assigned",
            [Action::Write],
            Some(&id),
            |b, auth| b.ensure_user_assigned(auth, &id, &location)
        )
    }
}
