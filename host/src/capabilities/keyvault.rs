//! `kmsflow:workflow/keyvault`: vaults, keys and crypto access.

use super::{capability_call, CapabilityError, StepContext};
use crate::grants::Action;
use crate::wit::keyvault::{self, AccessMechanism, BuiltinRole, KeyVersion, Vault, VaultSpec};

impl keyvault::Host for StepContext {
    async fn ensure_vault(&mut self, vault: String, spec: VaultSpec) -> Result<Vault, CapabilityError> {
        capability_call!(
            self,
            "keyvault.ensure-vault",
            Some(Action::Write),
            Some(&vault),
            |b, auth| { b.ensure_vault(auth, &vault, &spec) }
        )
    }

    async fn get_vault(&mut self, vault: String) -> Result<Vault, CapabilityError> {
        capability_call!(
            self,
            "keyvault.get-vault",
            Some(Action::Read),
            Some(&vault),
            |b, auth| { b.get_vault(auth, &vault) }
        )
    }

    async fn set_public_network_access(&mut self, vault: String, enabled: bool) -> Result<Vault, CapabilityError> {
        capability_call!(
            self,
            "keyvault.set-public-network-access",
            Some(Action::Write),
            Some(&vault),
            |b, auth| { b.set_public_network_access(auth, &vault, enabled) }
        )
    }

    async fn ensure_key(&mut self, vault: String, name: String, size: u32) -> Result<KeyVersion, CapabilityError> {
        capability_call!(
            self,
            "keyvault.ensure-key",
            Some(Action::Keys),
            Some(&vault),
            |b, auth| { b.ensure_key(auth, &vault, &name, size) }
        )
    }

    async fn get_key(
        &mut self,
        vault: String,
        name: String,
        version: Option<String>,
    ) -> Result<KeyVersion, CapabilityError> {
        capability_call!(self, "keyvault.get-key", Some(Action::Read), Some(&vault), |b, auth| {
            b.get_key(auth, &vault, &name, version.as_deref())
        })
    }

    async fn list_key_versions(&mut self, vault: String, name: String) -> Result<Vec<KeyVersion>, CapabilityError> {
        capability_call!(
            self,
            "keyvault.list-key-versions",
            Some(Action::Read),
            Some(&vault),
            |b, auth| { b.list_key_versions(auth, &vault, &name) }
        )
    }

    async fn new_key_version(&mut self, vault: String, name: String) -> Result<KeyVersion, CapabilityError> {
        capability_call!(
            self,
            "keyvault.new-key-version",
            Some(Action::Keys),
            Some(&vault),
            |b, auth| { b.new_key_version(auth, &vault, &name) }
        )
    }

    async fn disable_key_version(
        &mut self,
        vault: String,
        name: String,
        version: String,
    ) -> Result<KeyVersion, CapabilityError> {
        capability_call!(
            self,
            "keyvault.disable-key-version",
            Some(Action::Keys),
            Some(&vault),
            |b, auth| { b.disable_key_version(auth, &vault, &name, &version) }
        )
    }

    async fn grant_crypto_access(
        &mut self,
        vault: String,
        principal_id: String,
    ) -> Result<AccessMechanism, CapabilityError> {
        capability_call!(
            self,
            "keyvault.grant-crypto-access",
            Some(Action::Roles),
            Some(&vault),
            |b, auth| { b.grant_crypto_access(auth, &vault, &principal_id) }
        )
    }

    async fn grant_role(
        &mut self,
        scope: String,
        role: BuiltinRole,
        principal_id: String,
        principal_type: String,
    ) -> Result<(), CapabilityError> {
        capability_call!(
            self,
            "keyvault.grant-role",
            Some(Action::Roles),
            Some(&scope),
            |b, auth| { b.grant_role(auth, &scope, role, &principal_id, &principal_type) }
        )
    }

    async fn can_encrypt_decrypt(
        &mut self,
        vault: String,
        name: String,
        principal_id: String,
    ) -> Result<bool, CapabilityError> {
        capability_call!(
            self,
            "keyvault.can-encrypt-decrypt",
            Some(Action::Read),
            Some(&vault),
            |b, auth| { b.can_encrypt_decrypt(auth, &vault, &name, &principal_id) }
        )
    }
}
