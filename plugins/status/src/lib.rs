//! `status`: the procedure's `az aks list --query` table across subscriptions — KMS on/off, key
//! id, vault network access, Kubernetes version, KMS v1/v2 — plus a warning for KMS v1 clusters
//! near the 2,000-secret limit.
use kmsflow_sdk::kms;
use kmsflow_sdk::{aks, kubernetes, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt};

struct Status;

fn row(c: &aks::Cluster) -> String {
    let (on, key, access) = match &c.kms {
        Some(k) if k.enabled => (
            "on",
            k.key_id.as_str(),
            match k.network_access {
                aks::NetworkAccess::Public => "Public",
                aks::NetworkAccess::Private => "Private",
            },
        ),
        _ => ("off", "-", "-"),
    };
    format!(
        "{:<24} {:<4} {:<8} {:<8} {:<3} {}",
        c.name,
        on,
        access,
        c.current_kubernetes_version,
        kms::kms_version(c),
        key
    )
}

impl Plugin for Status {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "status",
            env!("CARGO_PKG_VERSION"),
            "KMS state of every cluster in the subscriptions",
        )
        .param(ParamSpec::text_list("subscriptions", "/subscriptions/{id} to list").required())
        .output(ParamSpec::integer("clusters", "clusters listed"))
        .output(ParamSpec::integer("kms-on", "clusters with KMS on"))
        .output(ParamSpec::text("table", "one line per cluster"))
        .grant(Action::Read, "the subscriptions' clusters")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let mut lines = vec![format!(
            "{:<24} {:<4} {:<8} {:<8} {:<3} {}",
            "NAME", "KMS", "ACCESS", "VERSION", "KMS", "KEY ID"
        )];
        let (mut total, mut on) = (0, 0);
        for sub in params.text_list("subscriptions")? {
            for c in aks::list_clusters(&sub).context("listing clusters")? {
                total += 1;
                let enabled = c.kms.as_ref().is_some_and(|k| k.enabled);
                if enabled {
                    on += 1;
                }
                if enabled && kms::kms_version(&c) == "v1" && c.provisioning_state == "Succeeded" {
                    match kubernetes::count_secrets(&c.id) {
                        Ok(n) if n >= kms::KMS_V1_SECRET_LIMIT * 9 / 10 => log::warn(&format!(
                            "{} holds {n} secrets on KMS v1 (limit {}): migrate it to KMS v2",
                            c.name,
                            kms::KMS_V1_SECRET_LIMIT
                        )),
                        Ok(_) => {}
                        Err(e) => log::warn(&format!("{}: cannot count secrets: {}", c.name, e.message)),
                    }
                }
                lines.push(row(&c));
            }
        }
        for l in &lines {
            log::info(l);
        }
        Ok(Outputs::new()
            .integer("clusters", total)
            .integer("kms-on", on)
            .text("table", lines.join("\n")))
    }
}

kmsflow_sdk::plugin!(Status);
