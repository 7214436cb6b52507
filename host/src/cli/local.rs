//! `kmsflow local …`: run the local cloud and drive its admin API.

use super::out::{self, out, outln};
use super::state_dir::default_state_dir;
use super::Output;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use kmsflow_localcloud::{read_profile, CloudProfile, Config, LocalCloud, ADMIN_HEADER};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct StateArg {
    /// The local cloud's state directory.
    #[arg(long, env = "KMSFLOW_LOCAL_STATE")]
    state: Option<PathBuf>,
}

impl StateArg {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.state {
            Some(d) => Ok(d.clone()),
            None => default_state_dir(),
        }
    }
}

#[derive(Subcommand)]
pub enum LocalCommand {
    /// Serve the local cloud until interrupted (Ctrl-C); prints its endpoints and CA path.
    Serve {
        #[command(flatten)]
        state: StateArg,
        /// Port on 127.0.0.1; 0 reuses the state directory's port, or picks a free one the first time.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// How long long-running operations (cluster updates) take.
        #[arg(long, default_value = "500ms")]
        operation_duration: humantime::Duration,
        /// How long a role assignment takes to take effect (and a deleted one to lose it), as
        /// Azure RBAC propagation does; until then Key Vault answers 403 `ForbiddenByRbac` and
        /// AKS's KMS check fails. `0s` makes assignments effective at once.
        #[arg(long, default_value = "5s")]
        rbac_propagation: humantime::Duration,
        /// How long-running operations are answered: azure-async-operation, location (202 +
        /// Location), provisioning-state (poll the resource), or rotate (the three in turn).
        #[arg(long, default_value = "rotate")]
        lro_shape: kmsflow_localcloud::LroShape,
        /// How long a new key vault stays `RegisteringDns`, its data-plane host unreachable.
        #[arg(long, default_value = "5s")]
        vault_provisioning: humantime::Duration,
        /// Lifetime of the Entra tokens it issues (Entra's is about an hour); short values make
        /// tokens expire mid-run.
        #[arg(long, default_value = "3599s")]
        token_lifetime: humantime::Duration,
    },
    /// Tokens expiring mid-run: change the lifetime of new Entra tokens, and/or revoke every
    /// token issued so far (the next call with one gets 401; a new token works).
    Tokens {
        #[command(flatten)]
        state: StateArg,
        /// Lifetime of tokens issued from now on.
        #[arg(long)]
        lifetime: Option<humantime::Duration>,
        /// Revoke every token issued so far.
        #[arg(long)]
        revoke: bool,
    },
    /// Make operations on a resource hang in their non-terminal state (`Updating`, …) for a while;
    /// `--for 0s` clears the hang.
    Hang {
        #[command(flatten)]
        state: StateArg,
        /// The resource's full id.
        #[arg(long)]
        resource: String,
        #[arg(long = "for")]
        duration: humantime::Duration,
    },
    /// Make the next operation on a resource end `Failed` or `Canceled` with an ARM error.
    FailNext {
        #[command(flatten)]
        state: StateArg,
        /// The resource's full id.
        #[arg(long)]
        resource: String,
        #[arg(long, default_value = "Failed", value_parser = ["Failed", "Canceled"])]
        status: String,
        #[arg(long, default_value = "InternalOperationError")]
        code: String,
        #[arg(long, default_value = "The operation failed (injected by the local cloud).")]
        message: String,
    },
    /// Create a cluster in `Succeeded` state (the procedure's "existing cluster").
    SeedCluster {
        #[command(flatten)]
        state: StateArg,
        #[arg(long, default_value = "rg1")]
        resource_group: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "1.30")]
        kubernetes_version: String,
        /// API server VNet integration (without it the cluster uses Konnectivity).
        #[arg(long)]
        vnet_integration: bool,
        #[arg(long, default_value = "UserAssigned", value_parser = ["UserAssigned", "SystemAssigned"])]
        identity: String,
        #[arg(long)]
        subscription: Option<String>,
        /// Entra integration with local accounts disabled: no admin credential; the API server
        /// takes Entra tokens for the AKS server application only.
        #[arg(long)]
        disable_local_accounts: bool,
    },
    /// Inject faults (deterministic from --seed), by default into ARM, Graph, Key Vault and the
    /// clusters' API servers; all zero turns them off. The percentages add up to at most 100.
    Faults {
        #[command(flatten)]
        state: StateArg,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 0)]
        throttle_percent: u32,
        #[arg(long, default_value_t = 1)]
        retry_after: u32,
        #[arg(long, default_value_t = 0)]
        error_percent: u32,
        #[arg(long, default_value_t = 0)]
        drop_percent: u32,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Connections that get no answer for --hang, then are dropped.
        #[arg(long, default_value_t = 0)]
        hang_percent: u32,
        /// How long a hung connection is held.
        #[arg(long = "hang", default_value = "30s")]
        hang_for: humantime::Duration,
        /// After the handler: the request takes effect, then its answer is lost (dropped).
        #[arg(long, default_value_t = 0)]
        lost_response_percent: u32,
        /// After the handler: the request takes effect, then a 500/503 replaces its answer.
        #[arg(long, default_value_t = 0)]
        error_after_percent: u32,
        /// Services to fault, comma-separated: entra, arm, graph, keyvault, apiserver, kms, or
        /// all. Default: arm, graph, keyvault, apiserver.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Limit apiserver and kms faults to these cluster ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        clusters: Vec<String>,
    },
    /// Change run-time settings of a running local cloud (until it restarts).
    Settings {
        #[command(flatten)]
        state: StateArg,
        /// The RBAC propagation delay, for every role assignment old and new.
        #[arg(long)]
        rbac_propagation: Option<humantime::Duration>,
        /// How long long-running operations take.
        #[arg(long)]
        operation_duration: Option<humantime::Duration>,
    },
    /// Add (or replace, with --name) a custom role definition; prints its id.
    RoleDefinition {
        #[command(flatten)]
        state: StateArg,
        /// The role's display name (unique).
        #[arg(long)]
        role_name: String,
        /// The definition's GUID (default: a new one).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Management-plane actions (repeatable; `*` wildcards).
        #[arg(long = "action")]
        actions: Vec<String>,
        #[arg(long = "not-action")]
        not_actions: Vec<String>,
        /// Data-plane actions, e.g. Microsoft.KeyVault/vaults/keys/encrypt/action (repeatable).
        #[arg(long = "data-action")]
        data_actions: Vec<String>,
        #[arg(long = "not-data-action")]
        not_data_actions: Vec<String>,
    },
    /// Make a principal a member of a group (role assignments to the group then apply to it).
    GroupMember {
        #[command(flatten)]
        state: StateArg,
        /// The group's object id (created on first use).
        #[arg(long)]
        group: String,
        /// The member's object id.
        #[arg(long)]
        member: String,
        /// Remove the membership instead.
        #[arg(long)]
        remove: bool,
    },
    /// The request log (method, host, path, status; never bodies).
    Requests {
        #[command(flatten)]
        state: StateArg,
        /// Only requests after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// Every secret's at-rest state in a cluster (plain / kms-v1 / kms-v2, key version, current or
    /// stale) — never its data — and a summary line.
    Inspect {
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        cluster: ClusterArg,
        /// Print only the summary line.
        #[arg(long)]
        summary: bool,
    },
    /// Create N secrets across M namespaces with random data, through the cluster's API server.
    Seed {
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        cluster: ClusterArg,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 5)]
        namespaces: usize,
        /// Bytes of random data per secret.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Known data instead: secret i holds `VALUE-i`.
        #[arg(long)]
        value: Option<String>,
    },
    /// Every version of every key in a vault (public parts only).
    Keys {
        #[command(flatten)]
        state: StateArg,
        /// The vault's name.
        vault: String,
    },
    /// Every resource the local cloud holds.
    Resources {
        #[command(flatten)]
        state: StateArg,
        /// Only this type, e.g. Microsoft.KeyVault/vaults.
        #[arg(long = "type")]
        rtype: Option<String>,
    },
}

/// A cluster by name (in the default subscription) or by resource id.
#[derive(Args)]
pub struct ClusterArg {
    /// The cluster's name, or its full resource id.
    cluster: String,
    #[arg(long, default_value = "rg1")]
    resource_group: String,
    #[arg(long)]
    subscription: Option<String>,
}

impl ClusterArg {
    fn id(&self, dir: &std::path::Path) -> anyhow::Result<String> {
        if self.cluster.starts_with("/subscriptions/") {
            return Ok(self.cluster.clone());
        }
        let sub = match &self.subscription {
            Some(s) => s.clone(),
            None => read_profile(dir)?.default_subscription,
        };
        Ok(format!(
            "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.resource_group, self.cluster
        ))
    }
}

pub async fn run(command: LocalCommand, output: Output) -> anyhow::Result<u8> {
    match command {
        LocalCommand::Inspect {
            state,
            cluster,
            summary,
        } => {
            let dir = state.dir()?;
            let id = cluster.id(&dir)?;
            let doc = admin(
                &dir,
                reqwest::Method::GET,
                &format!("/_admin/inspect?cluster={id}"),
                None,
            )
            .await?;
            print_value(output, &doc, |d| {
                let mut out = String::new();
                if !summary {
                    for s in d["secrets"].as_array().into_iter().flatten() {
                        out.push_str(&format!(
                            "{}/{}  {}  {}  {}\n",
                            s["namespace"].as_str().unwrap_or_default(),
                            s["name"].as_str().unwrap_or_default(),
                            s["at_rest"].as_str().unwrap_or_default(),
                            s["key_version"].as_str().unwrap_or("-"),
                            if s["stale"] == true { "stale" } else { "current" },
                        ));
                    }
                }
                let sum = &d["summary"];
                out.push_str(&format!(
                    "current: {}, stale: {}, plain: {}\n",
                    sum["current"], sum["stale"], sum["plain"]
                ));
                out
            });
            Ok(0)
        }
        LocalCommand::Seed {
            state,
            cluster,
            count,
            namespaces,
            size,
            value,
        } => {
            let dir = state.dir()?;
            let body = json!({"cluster": cluster.id(&dir)?, "count": count, "namespaces": namespaces, "size": size, "value": value});
            let doc = admin(&dir, reqwest::Method::POST, "/_admin/seed-secrets", Some(body)).await?;
            print_value(output, &doc, |d| format!("created {} secrets\n", d["created"]));
            Ok(0)
        }
        LocalCommand::Serve {
            state,
            port,
            operation_duration,
            rbac_propagation,
            lro_shape,
            vault_provisioning,
            token_lifetime,
        } => {
            let mut config = Config::realistic(state.dir()?);
            config.port = port;
            config.operation_duration = operation_duration.into();
            config.lro_shape = lro_shape;
            config.vault_provisioning = vault_provisioning.into();
            config.rbac_propagation = rbac_propagation.into();
            config.token_lifetime = token_lifetime.into();
            serve(config, output).await
        }
        LocalCommand::Tokens {
            state,
            lifetime,
            revoke,
        } => {
            let dir = state.dir()?;
            if let Some(lifetime) = lifetime {
                let secs = Duration::from(lifetime).as_secs().max(1);
                admin(
                    &dir,
                    reqwest::Method::PUT,
                    "/_admin/settings",
                    Some(json!({"token_lifetime_s": secs})),
                )
                .await?;
            }
            if revoke {
                admin(&dir, reqwest::Method::POST, "/_admin/tokens/revoke", None).await?;
            }
            let doc = admin(&dir, reqwest::Method::GET, "/_admin/settings", None).await?;
            print_value(output, &doc, |d| {
                format!(
                    "new tokens live {} s; token generation {}\n",
                    d["token_lifetime_s"], d["token_generation"]
                )
            });
            Ok(0)
        }
        LocalCommand::Hang {
            state,
            resource,
            duration,
        } => {
            let ms = Duration::from(duration).as_millis() as u64;
            let body = json!({"resource": resource, "hang_ms": ms});
            let doc = admin(
                &state.dir()?,
                reqwest::Method::PUT,
                "/_admin/operations/hang",
                Some(body),
            )
            .await?;
            print_value(output, &doc, |d| format!("{}: {}\n", resource, d["faults"]));
            Ok(0)
        }
        LocalCommand::FailNext {
            state,
            resource,
            status,
            code,
            message,
        } => {
            let body = json!({"resource": resource, "status": status, "code": code, "message": message});
            let doc = admin(
                &state.dir()?,
                reqwest::Method::PUT,
                "/_admin/operations/fail-next",
                Some(body),
            )
            .await?;
            print_value(output, &doc, |d| format!("{}: {}\n", resource, d["faults"]));
            Ok(0)
        }
        LocalCommand::SeedCluster {
            state,
            resource_group,
            name,
            kubernetes_version,
            vnet_integration,
            identity,
            subscription,
            disable_local_accounts,
        } => {
            let body = json!({"resource_group": resource_group, "name": name, "kubernetes_version": kubernetes_version,
                "vnet_integration": vnet_integration, "identity": identity, "subscription": subscription,
                "disable_local_accounts": disable_local_accounts});
            let doc = admin(&state.dir()?, reqwest::Method::POST, "/_admin/clusters", Some(body)).await?;
            print_value(output, &doc, |d| format!("{}\n", d["id"].as_str().unwrap_or_default()));
            Ok(0)
        }
        LocalCommand::Faults {
            state,
            seed,
            throttle_percent,
            retry_after,
            error_percent,
            drop_percent,
            latency_ms,
            hang_percent,
            hang_for,
            lost_response_percent,
            error_after_percent,
            services,
            clusters,
        } => {
            let services: Vec<String> = if services.iter().any(|s| s == "all") {
                kmsflow_localcloud::FaultService::ALL
                    .iter()
                    .map(|s| s.name().to_string())
                    .collect()
            } else {
                services
            };
            let body = json!({"seed": seed, "throttle_percent": throttle_percent, "retry_after_s": retry_after,
                "error_percent": error_percent, "drop_percent": drop_percent, "latency_ms": latency_ms,
                "hang_percent": hang_percent, "hang_ms": Duration::from(hang_for).as_millis() as u64,
                "lost_response_percent": lost_response_percent, "error_after_percent": error_after_percent,
                "services": services, "clusters": clusters});
            let doc = admin(&state.dir()?, reqwest::Method::PUT, "/_admin/faults", Some(body)).await?;
            print_value(output, &doc, |d| format!("faults: {d}\n"));
            Ok(0)
        }
        LocalCommand::Settings {
            state,
            rbac_propagation,
            operation_duration,
        } => {
            let ms = |d: Option<humantime::Duration>| d.map(|d| Duration::from(d).as_millis() as u64);
            let body =
                json!({"rbac_propagation_ms": ms(rbac_propagation), "operation_duration_ms": ms(operation_duration)});
            let doc = admin(&state.dir()?, reqwest::Method::PUT, "/_admin/settings", Some(body)).await?;
            print_value(output, &doc, |d| {
                format!(
                    "rbac propagation: {} ms, operation duration: {} ms\n",
                    d["rbac_propagation_ms"], d["operation_duration_ms"]
                )
            });
            Ok(0)
        }
        LocalCommand::RoleDefinition {
            state,
            role_name,
            name,
            description,
            actions,
            not_actions,
            data_actions,
            not_data_actions,
        } => {
            let body = json!({"name": name, "roleName": role_name, "description": description,
                "permissions": [{"actions": actions, "notActions": not_actions,
                    "dataActions": data_actions, "notDataActions": not_data_actions}]});
            let doc = admin(
                &state.dir()?,
                reqwest::Method::PUT,
                "/_admin/roleDefinitions",
                Some(body),
            )
            .await?;
            print_value(output, &doc, |d| format!("{}\n", d["id"].as_str().unwrap_or_default()));
            Ok(0)
        }
        LocalCommand::GroupMember {
            state,
            group,
            member,
            remove,
        } => {
            let method = if remove {
                reqwest::Method::DELETE
            } else {
                reqwest::Method::PUT
            };
            let body = json!({"group": group, "member": member});
            let doc = admin(&state.dir()?, method, "/_admin/groups/members", Some(body)).await?;
            print_value(output, &doc, |d| {
                format!(
                    "{} {} group {}\n",
                    d["member"].as_str().unwrap_or_default(),
                    if remove { "left" } else { "is in" },
                    d["group"].as_str().unwrap_or_default()
                )
            });
            Ok(0)
        }
        LocalCommand::Keys { state, vault } => {
            let doc = admin(
                &state.dir()?,
                reqwest::Method::GET,
                &format!("/_admin/keys/{vault}"),
                None,
            )
            .await?;
            print_value(output, &doc, |d| {
                d["value"]
                    .as_array()
                    .map(|keys| {
                        keys.iter()
                            .map(|k| {
                                format!(
                                    "{}  enabled: {}\n",
                                    k["key"]["kid"].as_str().unwrap_or_default(),
                                    k["attributes"]["enabled"]
                                )
                            })
                            .collect::<String>()
                    })
                    .unwrap_or_default()
            });
            Ok(0)
        }
        LocalCommand::Requests { state, after } => {
            let doc = admin(
                &state.dir()?,
                reqwest::Method::GET,
                &format!("/_admin/requests?after={after}"),
                None,
            )
            .await?;
            print_value(output, &doc, |d| {
                d["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        format!(
                            "{:>6} {:>3} {:6} {}{} {}\n",
                            r["seq"],
                            r["status"],
                            r["method"].as_str().unwrap_or_default(),
                            r["host"].as_str().unwrap_or_default(),
                            r["path"].as_str().unwrap_or_default(),
                            r["fault"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            });
            Ok(0)
        }
        LocalCommand::Resources { state, rtype } => {
            let path = match rtype {
                Some(t) => format!("/_admin/resources?type={t}"),
                None => "/_admin/resources".to_string(),
            };
            let doc = admin(&state.dir()?, reqwest::Method::GET, &path, None).await?;
            print_value(output, &doc, |d| {
                d["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| format!("{}\n", r["id"].as_str().unwrap_or_default()))
                    .collect()
            });
            Ok(0)
        }
    }
}

fn print_value(output: Output, doc: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => out::json(doc),
        Output::Text => out!("{}", text(doc)),
    }
}

async fn serve(config: Config, output: Output) -> anyhow::Result<u8> {
    let dir = config.state_dir.clone();
    let rbac_propagation = config.rbac_propagation;
    let realism = format!(
        "operations {} answered {}, vaults provisioned in {}, tokens live {}",
        humantime::format_duration(config.operation_duration),
        config.lro_shape,
        humantime::format_duration(config.vault_provisioning),
        humantime::format_duration(config.token_lifetime)
    );
    let cloud = LocalCloud::start(config)
        .await
        .with_context(|| format!("cannot start the local cloud in {}", dir.display()))?;
    let p = cloud.profile();
    match output {
        Output::Json => {
            let doc = json!({
                "status": "ready", "resource_manager": p.resource_manager, "authority_host": p.authority_host,
                "graph": p.graph, "keyvault_dns_suffix": p.keyvault_dns_suffix, "tenant_id": p.tenant_id,
                "default_subscription": p.default_subscription, "ca_path": p.ca_path,
                "profile_path": dir.join(kmsflow_localcloud::PROFILE_FILE), "port": cloud.port(),
                "rbac_propagation_ms": rbac_propagation.as_millis() as u64,
                "realism": realism,
            });
            out::json_line(&doc);
        }
        Output::Text => {
            outln!("local cloud ready on {}", p.resource_manager);
            outln!("  resource manager   {}", p.resource_manager);
            outln!("  entra authority    {}", p.authority_host);
            outln!("  graph              {}", p.graph);
            outln!(
                "  key vault          https://{{vault}}.{}:{}",
                p.keyvault_dns_suffix,
                cloud.port()
            );
            outln!("  tenant             {}", p.tenant_id);
            outln!("  subscription       {}", p.default_subscription);
            outln!(
                "  operator client id {} (secret in {})",
                p.operator.client_id,
                dir.join(kmsflow_localcloud::PROFILE_FILE).display()
            );
            outln!("  CA certificate     {}", p.ca_path.display());
            outln!("  RBAC propagation   {}", humantime::format_duration(rbac_propagation));
            outln!("  realism            {realism}");
        }
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    cloud.shutdown().await;
    Ok(0)
}

/// An HTTPS client that trusts the local cloud's CA and resolves `*.localhost` to loopback.
pub fn client(profile: &CloudProfile) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(profile.ca_pem.as_bytes()).context("the local cloud's CA is unreadable")?;
    Ok(reqwest::Client::builder().add_root_certificate(ca).build()?)
}

pub(super) async fn admin(
    dir: &std::path::Path,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let profile = read_profile(dir).with_context(|| {
        format!(
            "no local cloud state in {}; start one with `kmsflow local serve`",
            dir.display()
        )
    })?;
    let url = format!("{}{}", profile.resource_manager.trim_end_matches('/'), path);
    let mut req = client(&profile)?
        .request(method, &url)
        .header(ADMIN_HEADER, &profile.admin_key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.with_context(|| {
        format!(
            "the local cloud at {} is not answering; is `kmsflow local serve` running?",
            profile.resource_manager
        )
    })?;
    let status = resp.status();
    let doc: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            doc["error"]["message"].as_str().unwrap_or("request failed")
        );
    }
    Ok(doc)
}
