//! `enable-public`: the AKS procedure "KMS etcd encryption with a public key vault", as an
//! idempotent reconcile. Vault (access-policy flavour, or `rbac = true`: Crypto Officer for the
//! operator, Crypto User for the identity), RSA key, the control plane's user-assigned identity,
//! encrypt/decrypt permission for it, then the cluster: created with KMS, or updated (whole
//! document, `If-Match`, versioned key id). Secrets are rewritten by the next step
//! (`rewrite-secrets`); the key change is recorded in the cluster's state ConfigMap first.
//!
//! Every refusal happens before the first write and names the fix.
use kmsflow_sdk::kms::{self, optional, refuse};
use kmsflow_sdk::{
    aks, identity, keyvault, kubernetes, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt,
};

struct EnablePublic;

/// The facts the procedure depends on, read before any write.
struct Preflight {
    cluster: Option<aks::Cluster>,
    vault: Option<keyvault::Vault>,
}

fn preflight(params: &Params) -> Result<Preflight, Error> {
    let cluster_id = params.text("cluster")?;
    let vault_id = params.text("vault")?;
    let cluster = optional(aks::get_cluster(&cluster_id))
        .context("reading the cluster")?
        .map(kms::settled_cluster)
        .transpose()?;
    let vault = optional(keyvault::get_vault(&vault_id)).context("reading the vault")?;
    if let Some(c) = &cluster {
        kms::require_user_assigned(c)?;
        if kms::kms_version(c) == "v1" && kms::current_key(c) == kms::NONE {
            let secrets = kubernetes::count_secrets(&cluster_id).context("counting secrets")?;
            if kms::over_kms_v1_limit(secrets) {
                return Err(refuse(
                    "KmsV1SecretLimit",
                    format!(
                        "cluster {} runs Kubernetes {} (KMS v1) and holds {secrets} secrets; KMS v1 on AKS supports at \
                         most {}: upgrade the cluster to 1.27 or later first (KMS v2 has no such limit)",
                        c.name,
                        c.current_kubernetes_version,
                        kms::KMS_V1_SECRET_LIMIT
                    ),
                ));
            }
        }
        if let Some(kms) = &c.kms {
            if kms.enabled && kms.network_access == aks::NetworkAccess::Private {
                return Err(refuse(
                    "PrivateKmsEnabled",
                    "the cluster already uses KMS with a private vault; use the switch-to-public pipeline",
                ));
            }
        }
    }
    if let (Some(c), Some(v)) = (&cluster, &vault) {
        kms::require_same_tenant(c, &v.name, &v.tenant_id)?;
    }
    if let Some(v) = &vault {
        if v.firewall_restricted {
            return Err(refuse(
                "VaultFirewallRestricted",
                format!(
                    "vault {} restricts access with a firewall, which public KMS cannot pass; use the \
                     enable-private pipeline, or allow public access on the vault",
                    v.name
                ),
            ));
        }
        if !v.public_network_access {
            return Err(refuse(
                "VaultNotPublic",
                format!(
                    "vault {} has public network access disabled; use the enable-private pipeline",
                    v.name
                ),
            ));
        }
        if let Some(k) =
            optional(keyvault::get_key(&v.id, &params.text("key-name")?, None)).context("reading the key")?
        {
            if !matches!(k.key_type, keyvault::KeyType::Rsa | keyvault::KeyType::RsaHsm) {
                return Err(refuse(
                    "KeyNotRsa",
                    format!(
                        "key {} is not an RSA key; AKS KMS needs RSA (2048, 3072 or 4096 bits)",
                        k.name
                    ),
                ));
            }
        }
    }
    Ok(Preflight { cluster, vault })
}

impl Plugin for EnablePublic {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "enable-public",
            env!("CARGO_PKG_VERSION"),
            "Turns on AKS KMS with a customer-managed key in a public Key Vault",
        )
        .param(ParamSpec::text("cluster", "the managed cluster's resource id").format(kmsflow_sdk::TextFormat::ClusterId).required())
        .param(ParamSpec::text("vault", "the key vault's resource id (created if missing)").format(kmsflow_sdk::TextFormat::VaultId).required())
        .param(ParamSpec::text("key-name", "the key's name (created if missing)").format(kmsflow_sdk::TextFormat::KeyName).default_text("kms-key"))
        .param(ParamSpec::integer("key-size", "RSA key size for a new key").default_integer(2048))
        .param(ParamSpec::flag("rbac", "Azure RBAC on a new vault instead of access policies").default_flag(false))
        .param(ParamSpec::text("location", "region of new resources").default_text("westeurope"))
        .param(ParamSpec::text(
            "identity",
            "user-assigned identity for a new cluster's control plane (ignored for an existing cluster, whose own identity is used)",
        ).format(kmsflow_sdk::TextFormat::IdentityId))
        .param(ParamSpec::text("kubernetes-version", "version of a new cluster").default_text("1.30"))
        .param(ParamSpec::flag("vnet-integration", "API server VNet integration for a new cluster").default_flag(true))
        .output(ParamSpec::text("key-id", "the versioned key id the cluster now uses"))
        .output(ParamSpec::text("access", "access-policy or role-assignment"))
        .output(ParamSpec::flag("created", "whether the cluster was created"))
        .grant(Action::Read, "cluster, vault, key")
        .grant(Action::Write, "vault, identity, new cluster")
        .grant(Action::Keys, "the key")
        .grant(Action::Roles, "encrypt/decrypt for the identity")
        .grant(Action::Kms, "the cluster's KMS block and state ConfigMap")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster_id = params.text("cluster")?;
        let vault_id = params.text("vault")?;
        let key_name = params.text("key-name")?;
        let location = params.text("location")?;
        let pre = preflight(&params)?;

        // The identity whose permission matters: the existing cluster's, or the new one's.
        let identity = match &pre.cluster {
            Some(c) => {
                let id = c.user_assigned_identity.clone().unwrap_or_default();
                identity::get_user_assigned(&id).context("reading the cluster's identity")?
            }
            None => {
                let id = params.opt_text("identity")?.ok_or_else(|| {
                    Error::invalid(
                        "the cluster does not exist yet: give `identity`, the user-assigned identity to create it with",
                    )
                })?;
                identity::ensure_user_assigned(&id, &location).context("ensuring the identity")?
            }
        };
        let vault = match pre.vault {
            Some(v) => v,
            None => {
                let spec = keyvault::VaultSpec {
                    location: location.clone(),
                    rbac_authorization: params.flag("rbac")?,
                    public_network_access: true,
                    sku: "standard".into(),
                    purge_protection: true,
                };
                keyvault::ensure_vault(&vault_id, &spec).context("ensuring the vault")?
            }
        };
        let size =
            u32::try_from(params.integer("key-size")?).map_err(|_| Error::invalid("key-size is out of range"))?;
        let key = keyvault::ensure_key(&vault.id, &key_name, size).context("ensuring the key")?;
        let access =
            keyvault::grant_crypto_access(&vault.id, &identity.principal_id).context("granting encrypt/decrypt")?;
        let kms = aks::KmsConfig {
            enabled: true,
            key_id: key.key_id.clone(),
            network_access: aks::NetworkAccess::Public,
            vault_resource_id: None,
        };
        let (cluster, created) = match pre.cluster {
            Some(c) if c.kms.as_ref().is_some_and(|k| k.enabled && k.key_id == key.key_id) => {
                log::info("the cluster already uses this key; nothing to change");
                (c, false)
            }
            Some(c) => {
                let previous = kms::current_key(&c);
                if previous != kms::NONE {
                    // Switching an enabled cluster to another key is a rotation: the two-key rule.
                    kms::require_rewrite_complete(&c, Some(&key.key_id))?;
                }
                kms::write_state(
                    &cluster_id,
                    &[(kms::KEY_ID, &key.key_id), (kms::PREVIOUS_KEY_ID, &previous)],
                )?;
                kms::mark_change_started(&key.key_id)?;
                (aks::set_kms(&cluster_id, &kms).context("enabling KMS")?, false)
            }
            None => {
                let spec = aks::ClusterSpec {
                    location,
                    kubernetes_version: params.text("kubernetes-version")?,
                    identity: identity.id.clone(),
                    vnet_integration: params.flag("vnet-integration")?,
                    node_count: 1,
                    kms: Some(kms),
                };
                kms::mark_change_started("create")?;
                (
                    aks::create_cluster(&cluster_id, &spec).context("creating the cluster")?,
                    true,
                )
            }
        };
        if cluster.provisioning_state != "Succeeded" {
            return Err(Error::internal(format!(
                "the cluster ended {} after the KMS change; the docs say to rewrite secrets even so, then check the cluster",
                cluster.provisioning_state
            )));
        }
        // The rotation facts live on the cluster: the key changed, and no rewrite has finished
        // under it yet (the rewrite-secrets step records that).
        if created {
            kms::write_state(
                &cluster_id,
                &[(kms::KEY_ID, &key.key_id), (kms::REWRITTEN_KEY_ID, &key.key_id)],
            )?;
        }
        log::info(&format!("KMS is on with {}; now rewrite every secret", key.key_id));
        Ok(Outputs::new()
            .text("key-id", key.key_id)
            .text(
                "access",
                match access {
                    keyvault::AccessMechanism::AccessPolicy => "access-policy",
                    keyvault::AccessMechanism::RoleAssignment => "role-assignment",
                },
            )
            .flag("created", created))
    }
}

kmsflow_sdk::plugin!(EnablePublic);
