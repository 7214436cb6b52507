//! Calls `keyvault.get-vault` on `outside` (not granted), then `aks.get-cluster` on `inside`
//! (granted), and reports what each returned.
use kmsflow_sdk::{aks, keyvault, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct Deny;

impl Plugin for Deny {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-deny", env!("CARGO_PKG_VERSION"), "Calls outside its grants")
            .param(ParamSpec::text("outside", "a vault id the step is not granted").required())
            .param(ParamSpec::text("inside", "a cluster id the step may read").required())
            .grant(Action::Read, "reads the cluster `inside`")
            .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let denied = match keyvault::get_vault(&params.text("outside")?) {
            Ok(_) => return Err(Error::internal("reading outside the grants succeeded")),
            Err(e) => e,
        };
        let allowed = match aks::get_cluster(&params.text("inside")?) {
            Ok(c) => format!("ok:{}", c.name),
            Err(e) => format!("{}:{}", e.kind, e.code),
        };
        Ok(Outputs::new()
            .text("denied_kind", denied.kind.to_string())
            .text("denied_code", denied.code)
            .text("denied_message", denied.message)
            .text("allowed", allowed))
    }
}

kmsflow_sdk::plugin!(Deny);
