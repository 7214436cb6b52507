//! `rotate`: a new key version (or a given new key), then `keyId` on the cluster; secrets are
//! rewritten by the next step. Refuses to start while the previous key change's rewrite has not
//! completed (AKS keeps two keys; a second change wedges the cluster). With `retire-previous`,
//! versions two rotations old that nothing references any more are disabled — never deleted.
use kmsflow_sdk::kms::{self, refuse};
use kmsflow_sdk::{
    aks, checkpoint, keyvault, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt,
};

struct Rotate;

/// The key this run is moving to, checkpointed before the change so a resumed step recognises
/// its own rotation (and the two-key rule does not stop it halfway).
const ROTATING_TO: &str = "rotating-to";

/// `https://{vault}.{suffix}/keys/{name}/{version}` → `(vault host, name, version)`.
fn parts(key_id: &str) -> Option<(&str, &str, &str)> {
    let rest = key_id.strip_prefix("https://")?;
    let mut it = rest.split('/');
    let host = it.next()?;
    match (it.next(), it.next(), it.next()) {
        (Some("keys"), Some(name), Some(version)) => Some((host, name, version)),
        _ => None,
    }
}

impl Plugin for Rotate {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "rotate",
            env!("CARGO_PKG_VERSION"),
            "Rotates the KMS key: a new version (or a given new key), then the cluster's keyId",
        )
        .param(
            ParamSpec::text("cluster", "the managed cluster's resource id")
                .format(kmsflow_sdk::TextFormat::ClusterId)
                .required(),
        )
        .param(
            ParamSpec::text("vault", "the key vault's resource id")
                .format(kmsflow_sdk::TextFormat::VaultId)
                .required(),
        )
        .param(ParamSpec::text(
            "new-key-name",
            "rotate to this key (created if missing) instead of a new version of the current key",
        ))
        .param(
            ParamSpec::flag(
                "retire-previous",
                "disable versions two rotations old that nothing uses",
            )
            .default_flag(false),
        )
        .output(ParamSpec::text("key-id", "the versioned key id the cluster now uses"))
        .output(ParamSpec::text("previous-key-id", "the key id it used before"))
        .output(ParamSpec::integer("retired", "key versions disabled"))
        .grant(Action::Read, "cluster, vault, key")
        .grant(Action::Keys, "the new key version (and retiring old ones)")
        .grant(Action::Kms, "the cluster's KMS block and state ConfigMap")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster_id = params.text("cluster")?;
        let vault = params.text("vault")?;
        let cluster = kms::settled_cluster(aks::get_cluster(&cluster_id).context("reading the cluster")?)?;
        let Some(current) = cluster.kms.clone().filter(|k| k.enabled) else {
            return Err(refuse(
                "KmsNotEnabled",
                format!(
                    "KMS is off on {}; enable it first (enable-public or enable-private)",
                    cluster.name
                ),
            ));
        };
        let own = checkpoint::get(ROTATING_TO);
        kms::require_rewrite_complete(&cluster, own.as_deref())?;
        let (_, key_name, _) = parts(&current.key_id).ok_or_else(|| {
            refuse(
                "KeyIdNotVersioned",
                format!("{} is not a versioned key id", current.key_id),
            )
        })?;
        let key_name = key_name.to_string();
        let previous = match &own {
            // A resumed step: the previous key is what the state recorded before the change.
            Some(_) => kms::read_state(&cluster_id)?
                .get(kms::PREVIOUS_KEY_ID)
                .cloned()
                .unwrap_or_else(|| current.key_id.clone()),
            None => current.key_id.clone(),
        };

        let new_key = match (&own, params.opt_text("new-key-name")?) {
            (Some(kid), _) => kid.clone(),
            (None, Some(name)) => {
                let k = keyvault::ensure_key(&vault, &name, 2048).context("ensuring the new key")?;
                if k.key_id == current.key_id {
                    return Err(refuse("SameKey", "the new key is the one the cluster already uses"));
                }
                k.key_id
            }
            // Tagged with this run and call: a retried call finds the version it made.
            (None, None) => {
                keyvault::new_key_version(&vault, &key_name)
                    .context("creating a new key version")?
                    .key_id
            }
        };
        checkpoint::put(ROTATING_TO, &new_key)?;
        kms::mark_change_started(&new_key)?;
        kms::write_state(
            &cluster_id,
            &[(kms::KEY_ID, &new_key), (kms::PREVIOUS_KEY_ID, &previous)],
        )?;
        let target = aks::KmsConfig {
            key_id: new_key.clone(),
            ..current
        };
        let after = if kms::current_key(&cluster) == new_key {
            cluster
        } else {
            aks::set_kms(&cluster_id, &target).context("switching the cluster to the new key")?
        };
        if after.provisioning_state != "Succeeded" {
            return Err(Error::internal(format!(
                "the cluster ended {} after the key change; rewrite the secrets anyway (the procedure says so), then check it",
                after.provisioning_state
            )));
        }
        log::info(&format!("rotated {previous} → {new_key}; now rewrite every secret"));

        let mut retired = 0;
        if params.flag("retire-previous")? {
            // Versions other than the new and the previous one are unreferenced: the previous
            // rotation's rewrite completed (checked above), so nothing is stored under them.
            for v in keyvault::list_key_versions(&vault, &key_name).context("listing key versions")? {
                if v.enabled && v.key_id != new_key && v.key_id != previous {
                    keyvault::disable_key_version(&vault, &key_name, &v.version).context("retiring an old version")?;
                    log::info(&format!("disabled {} (two rotations old, unreferenced)", v.key_id));
                    retired += 1;
                }
            }
        }
        // ROTATING_TO stays: if this step is resumed after this point, it still recognises its own
        // rotation (a new run starts with an empty checkpoint map).
        Ok(Outputs::new()
            .text("key-id", new_key)
            .text("previous-key-id", previous)
            .integer("retired", retired))
    }
}

kmsflow_sdk::plugin!(Rotate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_split_into_vault_name_and_version() {
        assert_eq!(
            parts("https://kv1.vault.azure.net/keys/etcd/0123"),
            Some(("kv1.vault.azure.net", "etcd", "0123"))
        );
        assert_eq!(parts("https://kv1.vault.azure.net/secrets/etcd/0123"), None);
    }
}
