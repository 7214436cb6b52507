//! `kmsflow quickstart`: the README's main job on a fresh embedded local cloud — seed a Kubernetes
//! 1.26 cluster with secrets (through the local cloud's admin API: no secret data crosses the WIT),
//! run `workflows/quickstart.toml` (enable KMS v1 → migrate to v2 → rotate twice → switch to a
//! private vault → status → verify), then print the status table and the at-rest summary.

use super::out::{errln, outln};
use super::{local, runs, Cache, Failure, Output};
use anyhow::Context as _;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `kmsflow quickstart`.
#[derive(clap::Args)]
pub struct QuickstartArgs {
    /// Keep the local cloud's state here (default: a temporary directory, removed afterwards).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Secrets to seed.
    #[arg(long, default_value_t = 300)]
    secrets: usize,
    /// Run the lifecycle through a storm of faults on every service (Entra, ARM, Key Vault, the
    /// API server and its KMS calls), deterministic from this seed: 20 % throttling, 5 % 5xx
    /// (half of them after the request took effect), 5 % dropped connections (half of them
    /// after it took effect).
    #[arg(long)]
    storm: Option<u64>,
    /// Seed the cluster with Entra integration and `disableLocalAccounts`: kmsflow reaches its
    /// API server with Entra tokens for the AKS server application instead of the admin
    /// credential (which such a cluster refuses).
    #[arg(long)]
    no_local_accounts: bool,
}

pub async fn run(args: QuickstartArgs, cache: Cache, output: Output) -> Result<u8, Failure> {
    let started = Instant::now();
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let state = args.state.clone().unwrap_or_else(|| temp.path().join("localcloud"));
    // As realistic as `kmsflow local serve`: role assignments take effect after 5 s, a new vault
    // provisions for 5 s, long-running operations rotate through ARM's three shapes. Only the
    // operations themselves are quick, to keep the tour short.
    let mut config = kmsflow_localcloud::Config::realistic(&state);
    config.operation_duration = Duration::from_millis(100);
    let cloud = kmsflow_localcloud::LocalCloud::start(config)
        .await
        .context("cannot start the local cloud")?;
    let profile = cloud.profile().clone();
    let sub = format!("/subscriptions/{}", profile.default_subscription);
    let rg = format!("{sub}/resourceGroups/rg-quickstart");
    let cluster = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks-quickstart");
    errln!(
        "local cloud at {} (state {})",
        profile.resource_manager,
        state.display()
    );

    local::admin(
        &state,
        reqwest::Method::POST,
        "/_admin/clusters",
        Some(
            json!({"resource_group": "rg-quickstart", "name": "aks-quickstart", "kubernetes_version": "1.26",
            "vnet_integration": true, "identity": "UserAssigned", "disable_local_accounts": args.no_local_accounts}),
        ),
    )
    .await?;
    local::admin(
        &state,
        reqwest::Method::POST,
        "/_admin/seed-secrets",
        Some(json!({"cluster": cluster, "count": args.secrets, "namespaces": 5, "size": 48})),
    )
    .await?;
    errln!(
        "seeded aks-quickstart (Kubernetes 1.26, API server VNet integration) with {} secrets",
        args.secrets
    );
    if let Some(seed) = args.storm {
        let storm = json!({"seed": seed, "throttle_percent": 20, "retry_after_s": 1,
            "error_percent": 3, "error_after_percent": 2, "drop_percent": 3, "lost_response_percent": 2,
            "services": ["entra", "arm", "graph", "keyvault", "apiserver", "kms"]});
        local::admin(&state, reqwest::Method::PUT, "/_admin/faults", Some(storm)).await?;
        errln!("storm on (seed {seed}): 20 % throttling, 5 % 5xx, 5 % dropped connections on every service");
    }

    let quickstart = kmsflow::shipped::materialize(temp.path(), "quickstart").context("cannot write the pipeline")?;
    let inputs = runs::RunInputs {
        target: Some("local".into()),
        set: vec![
            ("resource-group".into(), rg.clone()),
            ("cluster".into(), cluster.clone()),
            ("vault-name".into(), "kv-quickstart".into()),
            ("subscription".into(), sub.clone()),
            ("page-size".into(), "100".into()),
        ],
        vars: Vec::new(),
        resource_group: None,
        cluster: None,
        vault: None,
    };
    // The runner reaches this in-process cloud through the `local` target of its state directory.
    let code = runs::run(
        &quickstart,
        inputs,
        Some(temp.path().join("runs")),
        None,
        cache,
        output,
        Some(&state),
    )
    .await?;
    let summary = local::admin(
        &state,
        reqwest::Method::GET,
        &format!("/_admin/inspect?cluster={cluster}"),
        None,
    )
    .await?;
    if output == Output::Text {
        let s = &summary["summary"];
        outln!(
            "at rest in aks-quickstart: {} secrets, KMS {} — current: {}, stale: {}, plain: {} (e.g. {})",
            s["total"],
            summary["kms_version"].as_str().unwrap_or("?"),
            s["current"],
            s["stale"],
            s["plain"],
            summary["secrets"][0]["at_rest"].as_str().unwrap_or("?")
        );
        outln!("quickstart finished in {:.1} s", started.elapsed().as_secs_f64());
    }
    // The cloud stops before its (temporary) state directory goes.
    drop(cloud);
    drop(temp);
    Ok(code)
}
