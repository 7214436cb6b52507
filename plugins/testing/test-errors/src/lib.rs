//! Makes one capability call chosen by `op` and returns its outcome as text (`ok:…` or
//! `kind:code`), so tests can drive each error path of the AKS and Key Vault capabilities.
use kmsflow_sdk::{aks, keyvault, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct Errors;

fn outcome<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => format!("ok:{}", ok(v)),
        Err(e) => format!("{}:{}", e.kind, e.code),
    }
}

impl Plugin for Errors {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "test-errors",
            env!("CARGO_PKG_VERSION"),
            "One capability call, its outcome",
        )
        .param(ParamSpec::text("op", "set-kms | get-key | upgrade | new-key-version").required())
        .param(ParamSpec::text("target", "the resource id the call is about").required())
        .param(ParamSpec::text("arg", "key id, key name or version").required())
        .output(ParamSpec::text("result", "ok:… or kind:code"))
        .grant(Action::Read, "read")
        .grant(Action::Kms, "set-kms")
        .grant(Action::Upgrade, "upgrade")
        .grant(Action::Keys, "new-key-version")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let target = params.text("target")?;
        let arg = params.text("arg")?;
        let result = match params.text("op")?.as_str() {
            "set-kms" => {
                let kms = aks::KmsConfig {
                    enabled: true,
                    key_id: arg,
                    network_access: aks::NetworkAccess::Public,
                    vault_resource_id: None,
                };
                outcome(aks::set_kms(&target, &kms), |c| c.provisioning_state)
            }
            "get-key" => outcome(keyvault::get_key(&target, &arg, None), |k| k.key_id),
            "new-key-version" => outcome(keyvault::new_key_version(&target, &arg), |k| k.key_id),
            "upgrade" => outcome(aks::upgrade(&target, &arg), |c| c.kubernetes_version),
            other => return Err(Error::invalid(format!("unknown op {other}"))),
        };
        Ok(Outputs::new().text("result", result))
    }
}

kmsflow_sdk::plugin!(Errors);
