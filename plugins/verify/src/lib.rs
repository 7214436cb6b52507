//! `verify`: the KMS block matches the intended key (or KMS is off when that is intended), the
//! KMS version follows the Kubernetes version, and the last complete rewrite ran under the current
//! key — the only verification AKS allows without etcd access.
use kmsflow_sdk::kms::{self, refuse};
use kmsflow_sdk::{aks, kubernetes, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt};

struct Verify;

impl Plugin for Verify {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "verify",
            env!("CARGO_PKG_VERSION"),
            "Checks the KMS configuration and the last rewrite",
        )
        .param(
            ParamSpec::text("cluster", "the managed cluster's resource id")
                .format(kmsflow_sdk::TextFormat::ClusterId)
                .required(),
        )
        .param(ParamSpec::text(
            "expect-key-id",
            "the key id the cluster should use; `none` for KMS off; empty: any",
        ))
        .param(ParamSpec::text("expect-kms-version", "v1 or v2; empty: any"))
        .output(ParamSpec::text("key-id", "the key id in use (none if off)"))
        .output(ParamSpec::text("kms-version", "v1 or v2"))
        .output(ParamSpec::text("kubernetes-version", "the control plane's version"))
        .output(ParamSpec::integer("secrets", "secrets in the cluster"))
        .grant(Action::Read, "the cluster")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster_id = params.text("cluster")?;
        let cluster = aks::get_cluster(&cluster_id).context("reading the cluster")?;
        if cluster.provisioning_state != "Succeeded" {
            return Err(refuse(
                "ClusterNotSucceeded",
                format!("cluster {} is {}", cluster.name, cluster.provisioning_state),
            ));
        }
        let key = kms::current_key(&cluster);
        if let Some(expected) = params.opt_text("expect-key-id")? {
            if key != expected {
                return Err(refuse(
                    "UnexpectedKey",
                    format!("cluster {} uses {key}, expected {expected}", cluster.name),
                ));
            }
        }
        if key != kms::NONE && !kms::is_versioned(&key) {
            return Err(refuse("KeyIdNotVersioned", format!("{key} is not a versioned key id")));
        }
        let version = kms::kms_version(&cluster);
        if let Some(expected) = params.opt_text("expect-kms-version")? {
            if key != kms::NONE && version != expected {
                return Err(refuse(
                    "UnexpectedKmsVersion",
                    format!(
                        "cluster {} runs Kubernetes {} (KMS {version}), expected KMS {expected}",
                        cluster.name, cluster.current_kubernetes_version
                    ),
                ));
            }
        }
        let state = kms::read_state(&cluster_id)?;
        match state.get(kms::REWRITTEN_KEY_ID) {
            Some(done) if *done == key => {}
            other => {
                return Err(refuse(
                    "RewriteIncomplete",
                    format!(
                        "no complete rewrite is recorded under {key} (last: {}); run workflows/rewrite-secrets.toml",
                        other.map(String::as_str).unwrap_or("never")
                    ),
                ))
            }
        }
        let secrets = kubernetes::count_secrets(&cluster_id).context("counting secrets")?;
        if version == "v1" && key != kms::NONE && secrets >= kms::KMS_V1_SECRET_LIMIT * 9 / 10 {
            log::warn(&format!(
                "{secrets} secrets on KMS v1, whose limit on AKS is {}: migrate to KMS v2 (Kubernetes 1.27+)",
                kms::KMS_V1_SECRET_LIMIT
            ));
        }
        log::info(&format!(
            "{}: KMS {} with {key}, every one of {secrets} secrets rewritten under it",
            cluster.name, version
        ));
        Ok(Outputs::new()
            .text("key-id", key)
            .text("kms-version", version)
            .text("kubernetes-version", cluster.current_kubernetes_version)
            .integer("secrets", secrets as i64))
    }
}

kmsflow_sdk::plugin!(Verify);
