//! Facts and rules of the AKS KMS procedure that every KMS plugin shares: the rotation facts kept
//! on the cluster (the `kube-system/kmsflow-kms-state` ConfigMap), the two-key rule, settled
//! operations, Kubernetes versions and KMS v1/v2.

use crate::bindings::kmsflow::workflow::{aks, kubernetes};
use crate::{Error, ErrorKind, ResultExt};
use std::collections::BTreeMap;

/// State keys. `key-id` is the KMS key the cluster was last switched to (`none` when disabled);
/// `rewritten-key-id` the key every secret was last rewritten under. They differ exactly while a
/// key change waits for its rewrite — when no other key change may start.
pub const KEY_ID: &str = "key-id";
pub const REWRITTEN_KEY_ID: &str = "rewritten-key-id";
/// The key before `key-id`: still needed to read secrets until the rewrite completes.
pub const PREVIOUS_KEY_ID: &str = "previous-key-id";
/// Unix seconds when KMS was switched off (a mode switch reports how long secrets were plain).
pub const DISABLED_AT: &str = "disabled-at";
/// The key a KMS v2 migration switches back on.
pub const MIGRATE_KEY_ID: &str = "migrate-key-id";

/// `none`: the value of `key-id` while KMS is off.
pub const NONE: &str = "none";

/// A precondition refusal with the service-style `code`, before any write.
pub fn refuse(code: &str, message: impl Into<String>) -> Error {
    Error::precondition(code, message)
}

/// `Ok(None)` for not-found, the value otherwise.
pub fn optional<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The state ConfigMap's data (empty if there is none).
pub fn read_state(cluster: &str) -> Result<BTreeMap<String, String>, Error> {
    Ok(kubernetes::get_state(cluster)
        .context("reading the kmsflow state ConfigMap")?
        .map(|s| s.data.into_iter().collect())
        .unwrap_or_default())
}

/// Sets `updates` in the state ConfigMap (read-modify-write), keeping the other keys.
pub fn write_state(cluster: &str, updates: &[(&str, &str)]) -> Result<(), Error> {
    let mut data = read_state(cluster)?;
    let before = data.clone();
    for (k, v) in updates {
        data.insert((*k).to_string(), (*v).to_string());
    }
    if data != before {
        let list: Vec<(String, String)> = data.into_iter().collect();
        kubernetes::put_state(cluster, &list, None).context("writing the kmsflow state ConfigMap")?;
    }
    Ok(())
}

/// The KMS key the cluster uses now (`none` when KMS is off).
pub fn current_key(cluster: &aks::Cluster) -> String {
    cluster
        .kms
        .as_ref()
        .filter(|k| k.enabled)
        .map(|k| k.key_id.clone())
        .unwrap_or_else(|| NONE.to_string())
}

/// Refuses while the last key change has not been followed by a complete rewrite: AKS keeps two
/// keys, and a second change before the rewrite wedges the cluster (`KMSKeyRotationNotCompleted`).
/// `own` is a key change this very run made (a resumed step may continue its own change).
pub fn require_rewrite_complete(cluster: &aks::Cluster, own: Option<&str>) -> Result<(), Error> {
    let state = read_state(&cluster.id)?;
    let current = current_key(cluster);
    let changed_to = state.get(KEY_ID).cloned().unwrap_or_else(|| current.clone());
    if own.is_some_and(|o| o == changed_to || o == current) {
        return Ok(());
    }
    match state.get(REWRITTEN_KEY_ID) {
        Some(done) if *done == changed_to && changed_to == current => Ok(()),
        Some(done) => Err(refuse(
            "RotationNotCompleted",
            format!(
                "the last key change (to {changed_to}) has not been followed by a complete rewrite \
                 (the last one finished under {done}); finish it first — resume the run that made the \
                 change, or run workflows/rewrite-secrets.toml — then run this again"
            ),
        )),
        None => Err(refuse(
            "RotationNotCompleted",
            format!(
                "there is no record that every secret of {} was rewritten under its current key; \
                 run workflows/rewrite-secrets.toml first, then run this again",
                cluster.name
            ),
        )),
    }
}

/// Checkpoint key: this step started a cluster operation (a KMS change or an upgrade).
const CHANGE_STARTED: &str = "cluster-change-started";

/// Records, before a cluster operation starts, that this step started it: if the step is resumed
/// while the operation is still running, it waits for its own operation instead of refusing.
pub fn mark_change_started(what: &str) -> Result<(), Error> {
    crate::checkpoint::put(CHANGE_STARTED, what)
}

fn settled(cluster: &aks::Cluster) -> bool {
    matches!(cluster.provisioning_state.as_str(), "Succeeded" | "Failed" | "Canceled")
}

/// The cluster once no operation is in progress: a resumed step waits (up to an hour) for the
/// operation it started itself; anyone else's operation is a refusal.
pub fn settled_cluster(cluster: aks::Cluster) -> Result<aks::Cluster, Error> {
    if settled(&cluster) || crate::checkpoint::get(CHANGE_STARTED).is_none() {
        require_settled(&cluster)?;
        return Ok(cluster);
    }
    crate::log::info(&format!(
        "waiting for the {} operation this step started before it was interrupted",
        cluster.provisioning_state
    ));
    let deadline = now_secs() + 3600;
    let mut current = cluster;
    while !settled(&current) && now_secs() < deadline {
        std::thread::sleep(std::time::Duration::from_secs(1));
        current = aks::get_cluster(&current.id).context("reading the cluster")?;
    }
    require_settled(&current)?;
    Ok(current)
}

/// Turns KMS off (a key change to `none`): records it in the state ConfigMap first (with the
/// time, for mode switches), marks the operation as this step's, then sets `enabled: false`
/// keeping the rest of the block. `extra` state keys are recorded along.
pub fn turn_off(
    cluster_id: &str,
    current: &aks::KmsConfig,
    extra: &[(&str, &str)],
    why: &str,
) -> Result<aks::Cluster, Error> {
    let now = now_secs().to_string();
    let mut updates = vec![
        (KEY_ID, NONE),
        (PREVIOUS_KEY_ID, current.key_id.as_str()),
        (DISABLED_AT, now.as_str()),
    ];
    updates.extend_from_slice(extra);
    write_state(cluster_id, &updates)?;
    let off = aks::KmsConfig {
        enabled: false,
        ..current.clone()
    };
    mark_change_started("disable")?;
    aks::set_kms(cluster_id, &off).context(why)
}

/// The cluster's tenant: from its identity, else the subscription's — the caller's home tenant.
pub fn cluster_tenant(cluster: &aks::Cluster) -> Result<String, Error> {
    if !cluster.tenant_id.is_empty() {
        return Ok(cluster.tenant_id.clone());
    }
    Ok(crate::bindings::kmsflow::workflow::identity::whoami()
        .context("reading the caller's tenant")?
        .tenant_id)
}

/// Refuses a vault in another tenant than the cluster: AKS KMS cannot use it.
pub fn require_same_tenant(cluster: &aks::Cluster, vault_name: &str, vault_tenant: &str) -> Result<(), Error> {
    let tenant = cluster_tenant(cluster)?;
    if vault_tenant.is_empty() || tenant.eq_ignore_ascii_case(vault_tenant) {
        Ok(())
    } else {
        Err(refuse(
            "CrossTenantVault",
            format!(
                "vault {vault_name} is in tenant {vault_tenant} but the cluster is in {tenant}; AKS KMS needs both in one tenant"
            ),
        ))
    }
}

/// Refuses while an operation is in progress on the cluster.
pub fn require_settled(cluster: &aks::Cluster) -> Result<(), Error> {
    if settled(cluster) {
        Ok(())
    } else {
        Err(refuse(
            "OperationInProgress",
            format!(
                "cluster {} is {}; wait for that operation to finish (az aks wait --updated), then run again",
                cluster.name, cluster.provisioning_state
            ),
        ))
    }
}

/// Refuses a cluster without a user-assigned control plane identity.
pub fn require_user_assigned(cluster: &aks::Cluster) -> Result<String, Error> {
    match (&cluster.identity_type[..], &cluster.user_assigned_identity) {
        ("UserAssigned", Some(id)) => Ok(id.clone()),
        _ => Err(refuse(
            "SystemAssignedIdentity",
            format!(
                "cluster {} uses a {} control plane identity; KMS needs a user-assigned one: \
                 az aks update --enable-managed-identity --assign-identity <identity id>",
                cluster.name, cluster.identity_type
            ),
        )),
    }
}

/// The minor version of `1.x[.y]`.
pub fn minor(version: &str) -> Option<u32> {
    let mut parts = version.trim_start_matches('v').split('.');
    match (parts.next(), parts.next()) {
        (Some("1"), Some(m)) => m.parse().ok(),
        _ => None,
    }
}

/// KMS v2 starts at Kubernetes 1.27.
pub fn kms_version(cluster: &aks::Cluster) -> &'static str {
    let v = if cluster.current_kubernetes_version.is_empty() {
        &cluster.kubernetes_version
    } else {
        &cluster.current_kubernetes_version
    };
    match minor(v) {
        Some(m) if m >= 27 => "v2",
        _ => "v1",
    }
}

/// KMS v1 clusters hold at most 2,000 secrets on AKS (the reference's §7, "at most 2,000 secrets
/// with KMS v1"): 2,000 is allowed, the 2,001st is not.
pub const KMS_V1_SECRET_LIMIT: u64 = 2000;

/// Whether a KMS v1 cluster holding `secrets` secrets is over [`KMS_V1_SECRET_LIMIT`]; exactly
/// the limit is within it.
pub fn over_kms_v1_limit(secrets: u64) -> bool {
    secrets > KMS_V1_SECRET_LIMIT
}

/// Whether `key_id` is `https://{vault}.{suffix}/keys/{name}/{version}`.
pub fn is_versioned(key_id: &str) -> bool {
    key_id
        .strip_prefix("https://")
        .map(|rest| rest.split('/').filter(|s| !s.is_empty()).count() == 4 && rest.contains("/keys/"))
        .unwrap_or(false)
}

/// Seconds since the Unix epoch (WASI wall clock).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kms_v1_limit_allows_2000_secrets_and_refuses_2001() {
        assert!(!over_kms_v1_limit(1999));
        assert!(!over_kms_v1_limit(2000));
        assert!(over_kms_v1_limit(2001));
    }

    #[test]
    fn versions_and_key_ids() {
        assert_eq!(minor("1.26.3"), Some(26));
        assert_eq!(minor("v1.30"), Some(30));
        assert_eq!(minor("2.0"), None);
        assert!(is_versioned(
            "https://kv1.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef"
        ));
        assert!(!is_versioned("https://kv1.vault.azure.net/keys/k"));
    }
}
