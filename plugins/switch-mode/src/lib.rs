//! `switch-mode`: KMS from a public to a private key vault or back, in the procedure's order —
//! `phase = "prepare"` turns KMS off (then the pipeline rewrites every secret to plain storage),
//! `phase = "apply"` flips the vault's public network access and turns KMS on in the new mode
//! (then the pipeline rewrites again). Switching to a *different* vault goes directly: `prepare`
//! changes nothing and `apply` switches. `apply` reports how long secrets were stored without KMS.
use kmsflow_sdk::kms::{self, optional, refuse};
use kmsflow_sdk::private::{lock_down, require_vnet_integration};
use kmsflow_sdk::{
    aks, identity, keyvault, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt,
};

struct SwitchMode;

/// The vault host of a key id (`kv1.vault.azure.net`), lowercased.
fn vault_host(key_id: &str) -> String {
    key_id
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn key_name(key_id: &str) -> Option<String> {
    let mut it = key_id.strip_prefix("https://")?.split('/').skip(1);
    match (it.next(), it.next()) {
        (Some("keys"), Some(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn mode(to: &str) -> Result<aks::NetworkAccess, Error> {
    match to {
        "private" => Ok(aks::NetworkAccess::Private),
        "public" => Ok(aks::NetworkAccess::Public),
        other => Err(Error::invalid(format!("`to` must be private or public, not `{other}`"))),
    }
}

fn prepare(cluster_id: &str, vault: &keyvault::Vault, to: aks::NetworkAccess) -> Result<Outputs, Error> {
    let cluster = kms::settled_cluster(aks::get_cluster(cluster_id).context("reading the cluster")?)?;
    let state = kms::read_state(cluster_id)?;
    let Some(current) = cluster.kms.clone().filter(|k| k.enabled) else {
        // Off already: either a resumed prepare, or KMS was never on.
        return match state.get(kms::PREVIOUS_KEY_ID) {
            Some(previous) if previous != kms::NONE => Ok(Outputs::new().flag("disabled", true).flag("direct", false)),
            _ => Err(refuse(
                "KmsNotEnabled",
                format!("KMS is off on {}; use enable-public or enable-private", cluster.name),
            )),
        };
    };
    let same_vault = vault.uri.to_ascii_lowercase().contains(&vault_host(&current.key_id));
    if current.network_access == to && same_vault {
        log::info("the cluster already uses this vault in this mode; nothing to switch");
        return Ok(Outputs::new().flag("disabled", false).flag("direct", true));
    }
    if !same_vault {
        log::info("a different vault: the switch goes directly, without turning KMS off");
        return Ok(Outputs::new().flag("disabled", false).flag("direct", true));
    }
    kms::require_rewrite_complete(&cluster, Some(kms::NONE))?;
    kms::turn_off(cluster_id, &current, &[], "turning KMS off for the switch")?;
    log::info("KMS is off; rewrite every secret, then run the apply phase");
    Ok(Outputs::new().flag("disabled", true).flag("direct", false))
}

fn apply(
    cluster_id: &str,
    vault: keyvault::Vault,
    to: aks::NetworkAccess,
    key: Option<String>,
    trust_group_access: bool,
) -> Result<Outputs, Error> {
    let cluster = kms::settled_cluster(aks::get_cluster(cluster_id).context("reading the cluster")?)?;
    let identity_id = kms::require_user_assigned(&cluster)?;
    let state = kms::read_state(cluster_id)?;
    // The key: the one in use (direct switch), the one used before `prepare`, or a given name.
    let key_id = match (
        &key,
        cluster.kms.as_ref().filter(|k| k.enabled),
        state.get(kms::PREVIOUS_KEY_ID),
    ) {
        (Some(name), _, _) => {
            keyvault::get_key(&vault.id, name, None)
                .context("reading the key")?
                .key_id
        }
        (None, Some(k), _) if vault.uri.to_ascii_lowercase().contains(&vault_host(&k.key_id)) => k.key_id.clone(),
        (None, _, Some(previous)) if previous != kms::NONE => previous.clone(),
        _ => return Err(Error::invalid("no key to switch to: give `key-name`")),
    };
    if cluster
        .kms
        .as_ref()
        .is_some_and(|k| k.enabled && k.key_id == key_id && k.network_access == to)
    {
        log::info("already switched");
        return Ok(Outputs::new().text("key-id", key_id).integer("plain-seconds", 0));
    }
    // Turning KMS on is a key change: the rewrite after `prepare` (or after the last change) must
    // have completed. A resumed apply recognises its own change.
    kms::require_rewrite_complete(&cluster, Some(&key_id))?;
    let principal = identity::get_user_assigned(&identity_id).context("reading the cluster's identity")?;
    let name = key_name(&key_id).ok_or_else(|| refuse("KeyIdNotVersioned", format!("{key_id} is not a key id")))?;
    let config = match to {
        aks::NetworkAccess::Private => {
            require_vnet_integration(&cluster)?;
            lock_down(&vault, &key_id, &name, &principal, trust_group_access)?
        }
        aks::NetworkAccess::Public => {
            if vault.firewall_restricted {
                return Err(refuse(
                    "VaultFirewallRestricted",
                    format!(
                        "vault {} restricts access with a firewall, which public KMS cannot pass",
                        vault.name
                    ),
                ));
            }
            if !vault.public_network_access {
                keyvault::set_public_network_access(&vault.id, true).context("making the vault public")?;
            }
            keyvault::grant_crypto_access(&vault.id, &principal.principal_id).context("granting encrypt/decrypt")?;
            aks::KmsConfig {
                enabled: true,
                key_id: key_id.clone(),
                network_access: aks::NetworkAccess::Public,
                vault_resource_id: None,
            }
        }
    };
    let previous = kms::current_key(&cluster);
    kms::write_state(cluster_id, &[(kms::KEY_ID, &key_id), (kms::PREVIOUS_KEY_ID, &previous)])?;
    kms::mark_change_started(&key_id)?;
    let after = aks::set_kms(cluster_id, &config).context("turning KMS on in the new mode")?;
    if after.provisioning_state != "Succeeded" {
        return Err(Error::internal(format!(
            "the cluster ended {}",
            after.provisioning_state
        )));
    }
    let plain = state
        .get(kms::DISABLED_AT)
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|_| previous == kms::NONE)
        .map(|t| (kms::now_secs() - t).max(0))
        .unwrap_or(0);
    log::info(&format!(
        "KMS is on in {} mode with {key_id}; secrets were stored without KMS for {plain} s; now rewrite every secret",
        if to == aks::NetworkAccess::Private {
            "private"
        } else {
            "public"
        }
    ));
    Ok(Outputs::new().text("key-id", key_id).integer("plain-seconds", plain))
}

impl Plugin for SwitchMode {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "switch-mode",
            env!("CARGO_PKG_VERSION"),
            "Moves KMS between a public and a private key vault (prepare, rewrite, apply, rewrite)",
        )
        .param(
            ParamSpec::text("cluster", "the managed cluster's resource id")
                .format(kmsflow_sdk::TextFormat::ClusterId)
                .required(),
        )
        .param(
            ParamSpec::text("vault", "the key vault KMS should use afterwards")
                .format(kmsflow_sdk::TextFormat::VaultId)
                .required(),
        )
        .param(ParamSpec::text("to", "private or public").required())
        .param(
            ParamSpec::flag(
                "trust-group-access",
                "accept encrypt/decrypt that only a group's role assignment gives (membership cannot be verified)",
            )
            .default_flag(false),
        )
        .param(ParamSpec::text("phase", "prepare (turn KMS off) or apply (flip the vault, turn KMS on)").required())
        .param(
            ParamSpec::text("key-name", "a key in the new vault (default: the key in use)")
                .format(kmsflow_sdk::TextFormat::KeyName),
        )
        .output(ParamSpec::flag(
            "disabled",
            "prepare: KMS was turned off (rewrite before apply)",
        ))
        .output(ParamSpec::flag("direct", "prepare: the switch needs no off phase"))
        .output(ParamSpec::text("key-id", "apply: the key KMS uses now"))
        .output(ParamSpec::integer(
            "plain-seconds",
            "apply: how long secrets were stored without KMS",
        ))
        .grant(Action::Read, "cluster, vault, identity")
        .grant(Action::Write, "the vault's public network access")
        .grant(
            Action::Roles,
            "encrypt/decrypt and Key Vault Contributor for the identity",
        )
        .grant(Action::Kms, "the cluster's KMS block and state ConfigMap")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster_id = params.text("cluster")?;
        let to = mode(&params.text("to")?)?;
        let vault = optional(keyvault::get_vault(&params.text("vault")?))
            .context("reading the vault")?
            .ok_or_else(|| {
                refuse(
                    "VaultNotFound",
                    "the target vault does not exist; create it and its key first",
                )
            })?;
        match params.text("phase")?.as_str() {
            "prepare" => prepare(&cluster_id, &vault, to),
            "apply" => apply(
                &cluster_id,
                vault,
                to,
                params.opt_text("key-name")?,
                params.flag("trust-group-access").unwrap_or(false),
            ),
            other => Err(Error::invalid(format!(
                "`phase` must be prepare or apply, not `{other}`"
            ))),
        }
    }
}

kmsflow_sdk::plugin!(SwitchMode);
