//! Drives identity, Key Vault (management plane) and AKS capabilities in the order the enable
//! procedure uses them, twice, to prove the backend's ensures are idempotent.
use kmsflow_sdk::{aks, identity, keyvault, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt};

struct ArmCalls;

impl Plugin for ArmCalls {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "test-arm-calls",
            env!("CARGO_PKG_VERSION"),
            "Exercises ARM-backed capabilities",
        )
        .param(ParamSpec::text("identity", "user-assigned identity id").required())
        .param(ParamSpec::text("vault", "vault id").required())
        .param(ParamSpec::text("cluster", "cluster id").required())
        .param(ParamSpec::flag("rbac", "create an RBAC vault"))
        .grant(Action::Write, "identity and vault")
        .grant(Action::Roles, "crypto access")
        .grant(Action::Read, "cluster")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let me = identity::whoami()?;
        let mut mechanism = String::new();
        let mut principal = String::new();
        let mut uri = String::new();
        for _ in 0..2 {
            let uai = identity::ensure_user_assigned(&params.text("identity")?, "westeurope").context("identity")?;
            let spec = keyvault::VaultSpec {
                location: "westeurope".into(),
                rbac_authorization: params.flag("rbac")?,
                public_network_access: true,
                sku: "standard".into(),
                purge_protection: true,
            };
            let vault = keyvault::ensure_vault(&params.text("vault")?, &spec).context("vault")?;
            let m = keyvault::grant_crypto_access(&vault.id, &uai.principal_id).context("grant")?;
            mechanism = match m {
                keyvault::AccessMechanism::AccessPolicy => "access-policy",
                keyvault::AccessMechanism::RoleAssignment => "role-assignment",
            }
            .to_string();
            principal = uai.principal_id;
            uri = vault.uri;
        }
        let vault = params.text("vault")?;
        let first = keyvault::ensure_key(&vault, "etcd", 2048).context("key")?;
        let again = keyvault::ensure_key(&vault, "etcd", 2048).context("key again")?;
        if first.key_id != again.key_id {
            return Err(Error::internal("ensure-key made a second version"));
        }
        let rotated = keyvault::new_key_version(&vault, "etcd").context("new version")?;
        let versions = keyvault::list_key_versions(&vault, "etcd").context("versions")?;
        let cluster = match aks::get_cluster(&params.text("cluster")?) {
            Ok(c) => c.provisioning_state,
            Err(e) => format!("{}:{}", e.kind, e.code),
        };
        Ok(Outputs::new()
            .text("oid", me.object_id)
            .text("principal", principal)
            .text("vault_uri", uri)
            .text("mechanism", mechanism)
            .text("cluster", cluster)
            .text("rotated", rotated.key_id)
            .integer("versions", versions.len() as i64))
    }
}

kmsflow_sdk::plugin!(ArmCalls);
