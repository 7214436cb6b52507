//! Makes `calls` capability calls across ARM, Key Vault and Kubernetes — reads and writes — and
//! checks each answer against what the test set up, so faults on the wire cannot go unnoticed.
use kmsflow_sdk::{
    aks, keyvault, kubernetes, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt,
};

struct ManyCalls;

impl Plugin for ManyCalls {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "test-many-calls",
            env!("CARGO_PKG_VERSION"),
            "Many checked capability calls",
        )
        .param(ParamSpec::integer("calls", "how many calls").default_integer(200))
        .param(ParamSpec::text("cluster", "cluster id").required())
        .param(ParamSpec::text("vault", "vault id").required())
        .param(ParamSpec::integer("secrets", "secrets the cluster holds").required())
        .output(ParamSpec::integer("checked", "calls whose answer was right"))
        .grant(Action::Read, "cluster and vault")
        .grant(Action::Kms, "state ConfigMap")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let n = params.integer("calls")?;
        let cluster = params.text("cluster")?;
        let vault = params.text("vault")?;
        let secrets = params.integer("secrets")? as u64;
        let mut checked = 0;
        for i in 0..n {
            let right = match i % 5 {
                0 => aks::get_cluster(&cluster).context("get-cluster")?.provisioning_state == "Succeeded",
                1 => keyvault::get_vault(&vault)
                    .context("get-vault")?
                    .id
                    .eq_ignore_ascii_case(&vault),
                2 => !keyvault::list_key_versions(&vault, "etcd")
                    .context("versions")?
                    .is_empty(),
                3 => kubernetes::count_secrets(&cluster).context("count")? == secrets,
                _ => {
                    let data = vec![("call".to_string(), i.to_string())];
                    let written = kubernetes::put_state(&cluster, &data, None).context("put-state")?;
                    let read = kubernetes::get_state(&cluster).context("get-state")?;
                    read.is_some_and(|r| r.data == data && r.resource_version == written.resource_version)
                }
            };
            if !right {
                return Err(Error::internal(format!("call {i} returned a wrong answer")));
            }
            checked += 1;
        }
        Ok(Outputs::new().integer("checked", checked))
    }
}

kmsflow_sdk::plugin!(ManyCalls);
