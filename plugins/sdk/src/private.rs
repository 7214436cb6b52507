//! What KMS with a private key vault needs beyond the public flavour, shared by `enable-private`
//! and `switch-mode`: API server VNet integration (Konnectivity cannot reach a private endpoint),
//! Key Vault Contributor for the identity (AKS creates the private endpoint with it), and the
//! identity's encrypt/decrypt permission — checked by us, because AKS does not check it.

use crate::bindings::kmsflow::workflow::{aks, identity, keyvault, kubernetes};
use crate::kms::refuse;
use crate::{Error, ResultExt};

/// Refuses a cluster without API server VNet integration, detected both by the cluster's
/// `enableVnetIntegration` and by `konnectivity-agent` pods in `kube-system`.
pub fn require_vnet_integration(cluster: &aks::Cluster) -> Result<(), Error> {
    let agents = kubernetes::list_pods(&cluster.id, "kube-system", "app=konnectivity-agent")
        .context("looking for konnectivity-agent pods")?;
    if !cluster.vnet_integration || !agents.is_empty() {
        return Err(refuse(
            "KonnectivityNotSupported",
            format!(
                "cluster {} reaches its nodes through Konnectivity ({} konnectivity-agent pods, VNet integration {}); \
                 KMS with a private key vault needs API server VNet integration: \
                 az aks update --enable-apiserver-vnet-integration --apiserver-subnet-id <subnet>",
                cluster.name,
                agents.len(),
                if cluster.vnet_integration { "on" } else { "off" }
            ),
        ));
    }
    Ok(())
}

/// Gives `principal` what private KMS needs on `vault`: encrypt/decrypt (access policy or Crypto
/// User, as the vault is configured) and Key Vault Contributor; then checks the permission works,
/// since AKS would accept the configuration and fail later.
///
/// Access that the vault's role assignments give only to groups cannot be verified (membership
/// is a directory question); it is refused unless `trust_group_access` says the pipeline author
/// vouches for the identity's membership.
pub fn grant_private_access(
    vault: &keyvault::Vault,
    key_name: &str,
    principal: &identity::UserAssignedIdentity,
    trust_group_access: bool,
) -> Result<keyvault::AccessMechanism, Error> {
    let mechanism =
        keyvault::grant_crypto_access(&vault.id, &principal.principal_id).context("granting encrypt/decrypt")?;
    keyvault::grant_role(
        &vault.id,
        keyvault::BuiltinRole::Contributor,
        &principal.principal_id,
        "ServicePrincipal",
    )
    .context("granting Key Vault Contributor")?;
    let permitted = match keyvault::can_encrypt_decrypt(&vault.id, key_name, &principal.principal_id) {
        Ok(p) => p,
        Err(e) if e.code == "AccessOnlyThroughGroup" && trust_group_access => {
            crate::log::warn(&format!("trusting group access: {}", e.message));
            true
        }
        Err(e) if e.code == "AccessOnlyThroughGroup" => {
            return Err(refuse(
                "AccessOnlyThroughGroup",
                format!(
                    "{}; AKS cannot check a private vault's permission, so kmsflow must: assign the role to the \
                     identity itself, or set `trust-group-access = true` on this step if you vouch for the membership",
                    e.message
                ),
            ))
        }
        Err(e) => return Err(e).context("checking the identity's key permission"),
    };
    if !permitted {
        return Err(refuse(
            "IdentityLacksKeyPermission",
            format!(
                "identity {} still cannot encrypt and decrypt with key {key_name} in {}; check the vault's access \
                 policies or role assignments",
                principal.id, vault.name
            ),
        ));
    }
    Ok(mechanism)
}

/// Everything private KMS needs on the vault side, in order: the identity's access (checked),
/// then public network access off; returns the KMS block to set (`keyVaultResourceId` included).
pub fn lock_down(
    vault: &keyvault::Vault,
    key_id: &str,
    key_name: &str,
    principal: &identity::UserAssignedIdentity,
    trust_group_access: bool,
) -> Result<aks::KmsConfig, Error> {
    grant_private_access(vault, key_name, principal, trust_group_access)?;
    if vault.public_network_access {
        keyvault::set_public_network_access(&vault.id, false).context("disabling public network access")?;
    }
    Ok(aks::KmsConfig {
        enabled: true,
        key_id: key_id.to_string(),
        network_access: aks::NetworkAccess::Private,
        vault_resource_id: Some(vault.id.clone()),
    })
}
