//! `enable-private`: KMS with a key in a key vault whose public network access is disabled. On top
//! of the public flavour: API server VNet integration is required (Konnectivity cannot reach the
//! private endpoint AKS creates), the identity gets Key Vault Contributor (AKS creates that
//! endpoint with it), `keyVaultResourceId` is set, and the identity's encrypt/decrypt permission is
//! checked here because AKS does not check it.
//!
//! Creating a key needs the data plane, which a private vault only answers through a private
//! endpoint. `key-creation` chooses how:
//! - `public-then-lock` (default): a new or still-public vault gets its key while public, then
//!   public network access is disabled — the runner needs no private network path;
//! - `private-endpoint`: the runner reaches the vault through a private endpoint of its own, so the
//!   key is created (or found) with the vault already private.
use kmsflow_sdk::kms::{self, optional, refuse};
use kmsflow_sdk::private::{lock_down, require_vnet_integration};
use kmsflow_sdk::{
    aks, checkpoint, identity, keyvault, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt,
};

struct EnablePrivate;

/// The key this step switches an existing cluster to, checkpointed before the change.
const CHANGING_TO: &str = "changing-to";

impl Plugin for EnablePrivate {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "enable-private",
            env!("CARGO_PKG_VERSION"),
            "Turns on AKS KMS with a customer-managed key in a private Key Vault",
        )
        .param(
            ParamSpec::text("cluster", "the managed cluster's resource id")
                .format(kmsflow_sdk::TextFormat::ClusterId)
                .required(),
        )
        .param(
            ParamSpec::text("vault", "the key vault's resource id (created if missing)")
                .format(kmsflow_sdk::TextFormat::VaultId)
                .required(),
        )
        .param(
            ParamSpec::text("key-name", "the key's name (created if missing)")
                .format(kmsflow_sdk::TextFormat::KeyName)
                .default_text("kms-key"),
        )
        .param(ParamSpec::integer("key-size", "RSA key size for a new key").default_integer(2048))
        .param(ParamSpec::flag("rbac", "Azure RBAC on a new vault instead of access policies").default_flag(false))
        .param(
            ParamSpec::flag(
                "trust-group-access",
                "accept encrypt/decrypt that only a group's role assignment gives (membership cannot be verified)",
            )
            .default_flag(false),
        )
        .param(ParamSpec::text("location", "region of new resources").default_text("westeurope"))
        .param(
            ParamSpec::text("identity", "user-assigned identity for a new cluster's control plane")
                .format(kmsflow_sdk::TextFormat::IdentityId),
        )
        .param(ParamSpec::text("kubernetes-version", "version of a new cluster").default_text("1.30"))
        .param(
            ParamSpec::text(
                "key-creation",
                "public-then-lock or private-endpoint (see the plugin's documentation)",
            )
            .default_text("public-then-lock"),
        )
        .output(ParamSpec::text("key-id", "the versioned key id the cluster now uses"))
        .output(ParamSpec::flag("created", "whether the cluster was created"))
        .grant(Action::Read, "cluster, vault, key, pods")
        .grant(Action::Write, "vault, identity, new cluster")
        .grant(Action::Keys, "the key")
        .grant(
            Action::Roles,
            "encrypt/decrypt and Key Vault Contributor for the identity",
        )
        .grant(Action::Kms, "the cluster's KMS block and state ConfigMap")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster_id = params.text("cluster")?;
        let vault_id = params.text("vault")?;
        let key_name = params.text("key-name")?;
        let location = params.text("location")?;
        let lock_after = match params.text("key-creation")?.as_str() {
            "public-then-lock" => true,
            "private-endpoint" => false,
            other => {
                return Err(Error::invalid(format!(
                    "key-creation must be public-then-lock or private-endpoint, not `{other}`"
                )))
            }
        };
        // Preflight: everything that can refuse, before the first write.
        let cluster = optional(aks::get_cluster(&cluster_id))
            .context("reading the cluster")?
            .map(kms::settled_cluster)
            .transpose()?;
        if let Some(c) = &cluster {
            kms::require_user_assigned(c)?;
            require_vnet_integration(c)?;
            if kms::current_key(c) != kms::NONE {
                // Another key is in use: this is a key change, under the two-key rule (a resumed
                // step recognises the change it checkpointed).
                kms::require_rewrite_complete(c, checkpoint::get(CHANGING_TO).as_deref())?;
            }
        }
        let vault = optional(keyvault::get_vault(&vault_id)).context("reading the vault")?;
        if let (Some(c), Some(v)) = (&cluster, &vault) {
            kms::require_same_tenant(c, &v.name, &v.tenant_id)?;
        }
        if let Some(v) = &vault {
            if !v.public_network_access && lock_after {
                // Fine if the key already exists: nothing needs the data plane but the check below.
                log::info("the vault is already private; its key must exist (key-creation = public-then-lock)");
            }
        }
        let principal = match &cluster {
            Some(c) => identity::get_user_assigned(c.user_assigned_identity.as_deref().unwrap_or_default())
                .context("reading the cluster's identity")?,
            None => {
                let id = params
                    .opt_text("identity")?
                    .ok_or_else(|| Error::invalid("the cluster does not exist yet: give `identity`"))?;
                identity::ensure_user_assigned(&id, &location).context("ensuring the identity")?
            }
        };
        let vault = match vault {
            Some(v) => v,
            None => keyvault::ensure_vault(
                &vault_id,
                &keyvault::VaultSpec {
                    location: location.clone(),
                    rbac_authorization: params.flag("rbac")?,
                    // Public until the key exists (public-then-lock), else private from the start.
                    public_network_access: lock_after,
                    sku: "standard".into(),
                    purge_protection: true,
                },
            )
            .context("ensuring the vault")?,
        };
        let size =
            u32::try_from(params.integer("key-size")?).map_err(|_| Error::invalid("key-size is out of range"))?;
        let key = keyvault::ensure_key(&vault.id, &key_name, size)
            .context("ensuring the key (needs a data-plane path to the vault)")?;
        if !matches!(key.key_type, keyvault::KeyType::Rsa | keyvault::KeyType::RsaHsm) {
            return Err(refuse("KeyNotRsa", format!("key {key_name} is not an RSA key")));
        }
        let trust_group_access = params.flag("trust-group-access").unwrap_or(false);
        let config = lock_down(&vault, &key.key_id, &key_name, &principal, trust_group_access)?;
        let (after, created) = match cluster {
            Some(c)
                if c.kms.as_ref().is_some_and(|k| {
                    k.enabled && k.key_id == config.key_id && k.network_access == aks::NetworkAccess::Private
                }) =>
            {
                (c, false)
            }
            Some(c) => {
                let previous = kms::current_key(&c);
                checkpoint::put(CHANGING_TO, &key.key_id)?;
                kms::write_state(
                    &cluster_id,
                    &[(kms::KEY_ID, &key.key_id), (kms::PREVIOUS_KEY_ID, &previous)],
                )?;
                kms::mark_change_started(&key.key_id)?;
                (aks::set_kms(&cluster_id, &config).context("enabling KMS")?, false)
            }
            None => {
                let spec = aks::ClusterSpec {
                    location,
                    kubernetes_version: params.text("kubernetes-version")?,
                    identity: principal.id.clone(),
                    vnet_integration: true,
                    node_count: 1,
                    kms: Some(config),
                };
                kms::mark_change_started("create")?;
                let c = aks::create_cluster(&cluster_id, &spec).context("creating the cluster")?;
                kms::write_state(
                    &cluster_id,
                    &[(kms::KEY_ID, &key.key_id), (kms::REWRITTEN_KEY_ID, &key.key_id)],
                )?;
                (c, true)
            }
        };
        if after.provisioning_state != "Succeeded" {
            return Err(Error::internal(format!(
                "the cluster ended {}; rewrite the secrets anyway, then check it",
                after.provisioning_state
            )));
        }
        log::info(&format!(
            "KMS is on with {} through a private endpoint; now rewrite every secret",
            key.key_id
        ));
        Ok(Outputs::new().text("key-id", key.key_id).flag("created", created))
    }
}

kmsflow_sdk::plugin!(EnablePrivate);
