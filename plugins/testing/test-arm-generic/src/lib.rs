//! Creates a cluster, tags it with the generic `arm` capability, and tries to read its admin
//! credential (which the host refuses: credentials never cross into a plugin).
use kmsflow_sdk::{aks, arm, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt};

struct ArmGeneric;

impl Plugin for ArmGeneric {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-arm-generic", env!("CARGO_PKG_VERSION"), "Generic ARM calls")
            .param(ParamSpec::text("cluster", "cluster id").required())
            .param(ParamSpec::text("identity", "user-assigned identity id").required())
            .grant(Action::Write, "create and tag the cluster")
            .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster = params.text("cluster")?;
        let spec = aks::ClusterSpec {
            location: "westeurope".into(),
            kubernetes_version: "1.30".into(),
            identity: params.text("identity")?,
            vnet_integration: false,
            node_count: 1,
            kms: None,
        };
        let created = aks::create_cluster(&cluster, &spec).context("create")?;
        let tagged = arm::request(
            arm::Method::Patch,
            &cluster,
            "2026-01-01",
            Some(r#"{"tags":{"team":"platform"}}"#),
        )
        .context("tag")?;
        let creds = match arm::request(
            arm::Method::Post,
            &format!("{cluster}/listClusterAdminCredential"),
            "2026-01-01",
            None,
        ) {
            Ok(r) => format!("leaked:{}", r.status),
            Err(e) => format!("{}:{}", e.kind, e.code),
        };
        Ok(Outputs::new()
            .text("state", created.provisioning_state)
            .integer("tag_status", i64::from(tagged.status))
            .text("credentials", creds))
    }
}

kmsflow_sdk::plugin!(ArmGeneric);
