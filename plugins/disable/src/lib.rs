//! `disable`: `enabled: false` on the cluster's KMS block; the next step rewrites every secret back
//! to plain storage. The identity's key permission is kept (the rewrite still reads old secrets).
use kmsflow_sdk::kms::{self, refuse};
use kmsflow_sdk::{aks, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt};

struct Disable;

impl Plugin for Disable {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "disable",
            env!("CARGO_PKG_VERSION"),
            "Turns KMS off (rewrite afterwards)",
        )
        .param(
            ParamSpec::text("cluster", "the managed cluster's resource id")
                .format(kmsflow_sdk::TextFormat::ClusterId)
                .required(),
        )
        .output(ParamSpec::text(
            "previous-key-id",
            "the key KMS used (none if it was off)",
        ))
        .output(ParamSpec::flag("changed", "whether KMS was on"))
        .grant(Action::Read, "the cluster")
        .grant(Action::Kms, "the cluster's KMS block and state ConfigMap")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster_id = params.text("cluster")?;
        let cluster = kms::settled_cluster(aks::get_cluster(&cluster_id).context("reading the cluster")?)?;
        let Some(current) = cluster.kms.clone().filter(|k| k.enabled) else {
            log::info("KMS is already off");
            let state = kms::read_state(&cluster_id)?;
            let previous = state
                .get(kms::PREVIOUS_KEY_ID)
                .cloned()
                .unwrap_or_else(|| kms::NONE.into());
            return Ok(Outputs::new().text("previous-key-id", previous).flag("changed", false));
        };
        // Turning KMS off is a key change too: it must not start while a rewrite is pending.
        // (A resumed step whose state already says `none` may continue.)
        kms::require_rewrite_complete(&cluster, Some(kms::NONE))?;
        let after = kms::turn_off(&cluster_id, &current, &[], "turning KMS off")?;
        if after.provisioning_state != "Succeeded" {
            return Err(refuse(
                "UpdateFailed",
                format!(
                    "the cluster ended {}; rewrite the secrets anyway, then check it",
                    after.provisioning_state
                ),
            ));
        }
        log::info("KMS is off; now rewrite every secret (they return to plain storage)");
        Ok(Outputs::new()
            .text("previous-key-id", current.key_id)
            .flag("changed", true))
    }
}

kmsflow_sdk::plugin!(Disable);
