//! An attacker's plugin: sends each of `targets` through the capability `mode` names, and reports
//! for each what came back (`ok:…` or `kind:code`), one line per target in the output `results`.
//! Tests hand it traversals, encodings, credential actions and malformed names, then check the
//! local cloud's request log for what reached the wire.
use kmsflow_sdk::{
    aks, arm, identity, keyvault, kubernetes, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo,
};

struct Hostile;

fn outcome<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => format!("ok:{}", ok(v)),
        Err(e) => format!("{}:{}", e.kind, e.code),
    }
}

impl Plugin for Hostile {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-hostile", env!("CARGO_PKG_VERSION"), "Hostile capability calls")
            .param(ParamSpec::text("mode", "which capability to call").required())
            .param(ParamSpec::text_list("targets", "what to send, one call each").required())
            .param(ParamSpec::text("path", "a fixed resource id for modes that vary another argument").default_text(""))
            .param(ParamSpec::text("body", "a request body for arm writes").default_text(""))
            .param(ParamSpec::text("api-version", "the api-version for arm modes").default_text("2026-01-01"))
            .output(ParamSpec::text("results", "one line per target"))
            .grant(Action::Read, "whatever the test grants")
            .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let mode = params.text("mode")?;
        let path = params.opt_text("path")?.unwrap_or_default();
        let body = params.opt_text("body")?.unwrap_or_default();
        let api = params.opt_text("api-version")?.unwrap_or_else(|| "2026-01-01".into());
        let body = (!body.is_empty()).then_some(body.as_str());
        let mut lines = Vec::new();
        for t in params.text_list("targets")? {
            let arm = |m: arm::Method, p: &str, v: &str| outcome(arm::request(m, p, v, body), |r| r.status.to_string());
            let line = match mode.as_str() {
                "arm-get" => arm(arm::Method::Get, &t, &api),
                "arm-post" => arm(arm::Method::Post, &t, &api),
                "arm-put" => arm(arm::Method::Put, &t, &api),
                "arm-patch" => arm(arm::Method::Patch, &t, &api),
                "arm-api-version" => arm(arm::Method::Get, &path, &t),
                "aks-get" => outcome(aks::get_cluster(&t), |c| c.name),
                "aks-set-kms" => outcome(
                    aks::set_kms(
                        &t,
                        &aks::KmsConfig {
                            enabled: false,
                            key_id: String::new(),
                            network_access: aks::NetworkAccess::Public,
                            vault_resource_id: None,
                        },
                    ),
                    |c| c.name,
                ),
                "kv-ensure-vault-rbac" => outcome(
                    keyvault::ensure_vault(
                        &t,
                        &keyvault::VaultSpec {
                            location: "westeurope".into(),
                            rbac_authorization: true,
                            public_network_access: true,
                            sku: "standard".into(),
                            purge_protection: false,
                        },
                    ),
                    |v| v.name,
                ),
                "aks-create-kms" => outcome(
                    aks::create_cluster(
                        &t,
                        &aks::ClusterSpec {
                            location: "westeurope".into(),
                            kubernetes_version: "1.30".into(),
                            identity: path.clone(),
                            vnet_integration: false,
                            node_count: 1,
                            kms: Some(aks::KmsConfig {
                                enabled: true,
                                key_id: "https://kv-hostile.vault.localhost/keys/k1/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
                                    .into(),
                                network_access: aks::NetworkAccess::Public,
                                vault_resource_id: None,
                            }),
                        },
                    ),
                    |c| c.name,
                ),
                "kube-count" => outcome(kubernetes::count_secrets(&t), |n| n.to_string()),
                "kube-put-state" => outcome(
                    kubernetes::put_state(&t, &[("hostile".to_string(), "1".to_string())], None),
                    |s| s.resource_version,
                ),
                "kube-pods" => outcome(kubernetes::list_pods(&path, &t, ""), |p| p.len().to_string()),
                "kv-get-vault" => outcome(keyvault::get_vault(&t), |v| v.name),
                "kv-key-name" => outcome(keyvault::get_key(&path, &t, None), |k| k.name),
                "kv-key-version" => outcome(keyvault::get_key(&path, "k1", Some(&t)), |k| k.version),
                "kv-new-version" => outcome(keyvault::new_key_version(&path, &t), |k| k.version),
                "kv-can-encrypt" => outcome(keyvault::can_encrypt_decrypt(&path, "k1", &t), |b| b.to_string()),
                "identity-get" => outcome(identity::get_user_assigned(&t), |i| i.id),
                other => {
                    return Err(kmsflow_sdk::error(
                        kmsflow_sdk::ErrorKind::Invalid,
                        "UnknownMode",
                        other,
                    ))
                }
            };
            lines.push(line);
        }
        Ok(Outputs::new().text("results", lines.join("\n")))
    }
}

kmsflow_sdk::plugin!(Hostile);
