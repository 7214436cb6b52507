//! `kmsflow:workflow/keyvault`: vaults (management plane) and their keys (data plane).
//!
//! Every vault is named by its ARM resource id; key names and versions are checked against Key
//! Vault's rules here, before the grant check, so nothing a plugin sends can reshape a URL.

use super::{capability_call, CapabilityError, Expect, StepContext, VAULT};
use crate::grants::Action;
use crate::names::{self, MAX_TEXT_ARG_BYTES};
use crate::wit::keyvault::{self, AccessMechanism, BuiltinRole, KeyVersion, Vault, VaultSpec};
use crate::wit::types::ErrorKind;

/// Principal types a role assignment may name.
const PRINCIPAL_TYPES: [&str; 4] = ["User", "Group", "ServicePrincipal", "ForeignGroup"];

impl keyvault::Host for StepContext {
    async fn ensure_vault(&mut self, vault: String, spec: VaultSpec) -> Result<Vault, CapabilityError> {
        // Creating an RBAC vault also makes the creator Crypto Officer (as `az keyvault create`
        // does): a role assignment, so it needs `roles` as well.
        let actions: &[Action] = if spec.rbac_authorization {
            &[Action::Write, Action::Roles]
        } else {
            &[Action::Write]
        };
        let vault = self.resource_arg("keyvault.ensure-vault", actions, &vault, VAULT)?;
        self.arg("keyvault.ensure-vault", names::vault_name(vault.last()))?;
        self.arg(
            "keyvault.ensure-vault",
            names::text("location", &spec.location, MAX_TEXT_ARG_BYTES),
        )?;
        if !["standard", "premium"].contains(&spec.sku.as_str()) {
            return Err(CapabilityError::guest(
                ErrorKind::Invalid,
                "InvalidArgument",
                format!(
                    "keyvault.ensure-vault: sku `{}` is not standard or premium",
                    crate::resource_id::shorten(&spec.sku)
                ),
            ));
        }
        capability_call!(self, "keyvault.ensure-vault", actions, Some(&vault), |b, auth| b
            .ensure_vault(auth, &vault, &spec))
    }

    async fn get_vault(&mut self, vault: String) -> Result<Vault, CapabilityError> {
        let vault = self.resource_arg("keyvault.get-vault", &[Action::Read], &vault, VAULT)?;
        capability_call!(self, "keyvault.get-vault", [Action::Read], Some(&vault), |b, auth| b
            .get_vault(auth, &vault))
    }

    async fn set_public_network_access(&mut self, vault: String, enabled: bool) -> Result<Vault, CapabilityError> {
        let vault = self.resource_arg("keyvault.set-public-network-access", &[Action::Write], &vault, VAULT)?;
        capability_call!(
            self,
            "keyvault.set-public-network-access",
            [Action::Write],
            Some(&vault),
            |b, auth| b.set_public_network_access(auth, &vault, enabled)
        )
    }

    async fn ensure_key(&mut self, vault: String, name: String, size: u32) -> Result<KeyVersion, CapabilityError> {
        let vault = self.resource_arg("keyvault.ensure-key", &[Action::Keys], &vault, VAULT)?;
        self.arg("keyvault.ensure-key", names::key_name(&name))?;
        capability_call!(self, "keyvault.ensure-key", [Action::Keys], Some(&vault), |b, auth| b
            .ensure_key(auth, &vault, &name, size))
    }

    async fn get_key(
        &mut self,
        vault: String,
        name: String,
        version: Option<String>,
    ) -> Result<KeyVersion, CapabilityError> {
        let vault = self.resource_arg("keyvault.get-key", &[Action::Read], &vault, VAULT)?;
        self.arg("keyvault.get-key", names::key_name(&name))?;
        if let Some(v) = &version {
            self.arg("keyvault.get-key", names::key_version(v))?;
        }
        capability_call!(self, "keyvault.get-key", [Action::Read], Some(&vault), |b, auth| b
            .get_key(auth, &vault, &name, version.as_deref()))
    }

    async fn list_key_versions(&mut self, vault: String, name: String) -> Result<Vec<KeyVersion>, CapabilityError> {
        let vault = self.resource_arg("keyvault.list-key-versions", &[Action::Read], &vault, VAULT)?;
        self.arg("keyvault.list-key-versions", names::key_name(&name))?;
        capability_call!(
            self,
            "keyvault.list-key-versions",
            [Action::Read],
            Some(&vault),
            |b, auth| b.list_key_versions(auth, &vault, &name)
        )
    }

    async fn new_key_version(&mut self, vault: String, name: String) -> Result<KeyVersion, CapabilityError> {
        let vault = self.resource_arg("keyvault.new-key-version", &[Action::Keys], &vault, VAULT)?;
        self.arg("keyvault.new-key-version", names::key_name(&name))?;
        capability_call!(
            self,
            "keyvault.new-key-version",
            [Action::Keys],
            Some(&vault),
            |b, auth| b.new_key_version(auth, &vault, &name)
        )
    }

    async fn disable_key_version(
        &mut self,
        vault: String,
        name: String,
        version: String,
    ) -> Result<KeyVersion, CapabilityError> {
        let vault = self.resource_arg("keyvault.disable-key-version", &[Action::Keys], &vault, VAULT)?;
        self.arg("keyvault.disable-key-version", names::key_name(&name))?;
        self.arg("keyvault.disable-key-version", names::key_version(&version))?;
        capability_call!(
            self,
            "keyvault.disable-key-version",
            [Action::Keys],
            Some(&vault),
            |b, auth| b.disable_key_version(auth, &vault, &name, &version)
        )
    }

    async fn grant_crypto_access(
        &mut self,
        vault: String,
        principal_id: String,
    ) -> Result<AccessMechanism, CapabilityError> {
        let vault = self.resource_arg("keyvault.grant-crypto-access", &[Action::Roles], &vault, VAULT)?;
        self.arg(
            "keyvault.grant-crypto-access",
            names::guid("principal id", &principal_id),
        )?;
        capability_call!(
            self,
            "keyvault.grant-crypto-access",
            [Action::Roles],
            Some(&vault),
            |b, auth| b.grant_crypto_access(auth, &vault, &principal_id)
        )
    }

    async fn grant_role(
        &mut self,
        scope: String,
        role: BuiltinRole,
        principal_id: String,
        principal_type: String,
    ) -> Result<(), CapabilityError> {
        let scope = self.resource_arg("keyvault.grant-role", &[Action::Roles], &scope, Expect::Any)?;
        self.arg("keyvault.grant-role", names::guid("principal id", &principal_id))?;
        if !PRINCIPAL_TYPES.contains(&principal_type.as_str()) {
            return Err(CapabilityError::guest(
                ErrorKind::Invalid,
                "InvalidArgument",
                format!(
                    "keyvault.grant-role: principal type `{}` is not one of {}",
                    crate::resource_id::shorten(&principal_type),
                    PRINCIPAL_TYPES.join(", ")
                ),
            ));
        }
        capability_call!(self, "keyvault.grant-role", [Action::Roles], Some(&scope), |b, auth| b
            .grant_role(auth, &scope, role, &principal_id, &principal_type))
    }

    async fn can_encrypt_decrypt(
        &mut self,
        vault: String,
        name: String,
        principal_id: String,
    ) -> Result<bool, CapabilityError> {
        let vault = self.resource_arg("keyvault.can-encrypt-decrypt", &[Action::Read], &vault, VAULT)?;
        self.arg("keyvault.can-encrypt-decrypt", names::key_name(&name))?;
        self.arg(
            "keyvault.can-encrypt-decrypt",
            names::guid("principal id", &principal_id),
        )?;
        capability_call!(
            self,
            "keyvault.can-encrypt-decrypt",
            [Action::Read],
            Some(&vault),
            |b, auth| b.can_encrypt_decrypt(auth, &vault, &name, &principal_id)
        )
    }
}
