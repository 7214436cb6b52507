//! `migrate-v2`: a cluster below Kubernetes 1.27 with KMS on cannot be upgraded; this moves it to
//! KMS v2 in the procedure's order, one phase per pipeline step with rewrites between:
//! `prepare` (turn KMS off, remembering the key) → rewrite → `upgrade` (one minor version at a
//! time up to the target) → `enable` (the same key, now KMS v2) → rewrite → verify. On a cluster
//! already at 1.27 or later every phase is a no-op that says so.
use kmsflow_sdk::kms::{self, refuse};
use kmsflow_sdk::{aks, checkpoint, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt};

struct MigrateV2;

fn version_minor(c: &aks::Cluster) -> u32 {
    let v = if c.current_kubernetes_version.is_empty() {
        &c.kubernetes_version
    } else {
        &c.current_kubernetes_version
    };
    kms::minor(v).unwrap_or(0)
}

fn prepare(cluster_id: &str) -> Result<Outputs, Error> {
    let cluster = kms::settled_cluster(aks::get_cluster(cluster_id).context("reading the cluster")?)?;
    let state = kms::read_state(cluster_id)?;
    if let Some(key) = state
        .get(kms::MIGRATE_KEY_ID)
        .filter(|_| cluster.kms.as_ref().is_none_or(|k| !k.enabled))
    {
        log::info("KMS is already off for the migration (a resumed run)");
        return Ok(Outputs::new().flag("needed", true).text("key-id", key.clone()));
    }
    if version_minor(&cluster) >= 27 {
        log::info(&format!(
            "{} runs Kubernetes {}: KMS v2 already, nothing to migrate",
            cluster.name, cluster.current_kubernetes_version
        ));
        return Ok(Outputs::new()
            .flag("needed", false)
            .text("key-id", kms::current_key(&cluster)));
    }
    let Some(current) = cluster.kms.clone().filter(|k| k.enabled) else {
        log::info("KMS is off: the cluster can be upgraded directly (az aks upgrade); nothing to migrate");
        return Ok(Outputs::new().flag("needed", false).text("key-id", kms::NONE));
    };
    kms::require_rewrite_complete(&cluster, Some(kms::NONE))?;
    kms::turn_off(
        cluster_id,
        &current,
        &[(kms::MIGRATE_KEY_ID, &current.key_id)],
        "turning KMS off for the upgrade",
    )?;
    log::info("KMS is off; rewrite every secret, then upgrade");
    Ok(Outputs::new().flag("needed", true).text("key-id", current.key_id))
}

fn upgrade(cluster_id: &str, target: u32) -> Result<Outputs, Error> {
    let mut cluster = kms::settled_cluster(aks::get_cluster(cluster_id).context("reading the cluster")?)?;
    if cluster.kms.as_ref().is_some_and(|k| k.enabled) && version_minor(&cluster) < 27 {
        return Err(refuse(
            "UpgradeBlockedByKmsV1",
            "KMS is still on: run the prepare phase and the rewrite first",
        ));
    }
    // The secrets must be plain before the control plane changes KMS versions.
    kms::require_rewrite_complete(&cluster, None)?;
    let mut steps = 0;
    while version_minor(&cluster) < target {
        let next = format!("1.{}", version_minor(&cluster) + 1);
        log::info(&format!(
            "upgrading {} from {} to {next}",
            cluster.name, cluster.current_kubernetes_version
        ));
        kms::mark_change_started(&next)?;
        cluster = aks::upgrade(cluster_id, &next).context("upgrading one minor version")?;
        if cluster.provisioning_state != "Succeeded" {
            return Err(Error::internal(format!(
                "the upgrade to {next} ended {}",
                cluster.provisioning_state
            )));
        }
        checkpoint::put("upgraded-to", &next)?;
        steps += 1;
    }
    Ok(Outputs::new()
        .text("kubernetes-version", cluster.current_kubernetes_version)
        .integer("upgrades", steps))
}

fn enable(cluster_id: &str) -> Result<Outputs, Error> {
    let cluster = kms::settled_cluster(aks::get_cluster(cluster_id).context("reading the cluster")?)?;
    let state = kms::read_state(cluster_id)?;
    let Some(key) = state.get(kms::MIGRATE_KEY_ID).cloned() else {
        return Err(refuse("NoMigrationInProgress", "run the prepare phase first"));
    };
    if version_minor(&cluster) < 27 {
        return Err(refuse(
            "NotYetUpgraded",
            format!(
                "the cluster runs {}; run the upgrade phase first",
                cluster.current_kubernetes_version
            ),
        ));
    }
    if kms::current_key(&cluster) == key {
        log::info("KMS is already back on with the same key");
        return Ok(Outputs::new().text("key-id", key));
    }
    kms::require_rewrite_complete(&cluster, Some(&key))?;
    let base = cluster
        .kms
        .clone()
        .ok_or_else(|| refuse("NoKmsBlock", "the cluster lost its KMS block"))?;
    kms::write_state(cluster_id, &[(kms::KEY_ID, &key), (kms::PREVIOUS_KEY_ID, kms::NONE)])?;
    let on = aks::KmsConfig {
        enabled: true,
        key_id: key.clone(),
        ..base
    };
    kms::mark_change_started(&key)?;
    let after = aks::set_kms(cluster_id, &on).context("turning KMS on again")?;
    log::info(&format!(
        "KMS {} is on with {key}; now rewrite every secret",
        kms::kms_version(&after)
    ));
    Ok(Outputs::new().text("key-id", key))
}

impl Plugin for MigrateV2 {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "migrate-v2",
            env!("CARGO_PKG_VERSION"),
            "Moves a KMS v1 cluster to KMS v2 (prepare, rewrite, upgrade, enable, rewrite)",
        )
        .param(
            ParamSpec::text("cluster", "the managed cluster's resource id")
                .format(kmsflow_sdk::TextFormat::ClusterId)
                .required(),
        )
        .param(ParamSpec::text("phase", "prepare, upgrade or enable").required())
        .param(
            ParamSpec::text("target-version", "the minor version to reach (at least 1.27)")
                .format(kmsflow_sdk::TextFormat::KubernetesVersion)
                .default_text("1.27"),
        )
        .output(ParamSpec::flag(
            "needed",
            "prepare: whether the cluster needs the migration",
        ))
        .output(ParamSpec::text("key-id", "the KMS key (kept across the migration)"))
        .output(ParamSpec::text("kubernetes-version", "upgrade: the version reached"))
        .output(ParamSpec::integer("upgrades", "upgrade: minor versions upgraded"))
        .grant(Action::Read, "the cluster")
        .grant(Action::Kms, "the cluster's KMS block and state ConfigMap")
        .grant(Action::Upgrade, "the minor-version upgrades")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster = params.text("cluster")?;
        match params.text("phase")?.as_str() {
            "prepare" => prepare(&cluster),
            "upgrade" => {
                let target = kms::minor(&params.text("target-version")?)
                    .filter(|m| *m >= 27)
                    .ok_or_else(|| Error::invalid("target-version must be 1.27 or later"))?;
                upgrade(&cluster, target)
            }
            "enable" => enable(&cluster),
            other => Err(Error::invalid(format!(
                "`phase` must be prepare, upgrade or enable, not `{other}`"
            ))),
        }
    }
}

kmsflow_sdk::plugin!(MigrateV2);
