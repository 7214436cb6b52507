//! `kmsflow run`, `resume`, `plan`, `validate` and `runs list|show`.

use super::out::{self, errln};
use super::{build_runtime, render, state_dir, Cache, Failure, Output};
use anyhow::Context as _;
use clap::Args;
use kmsflow::config::Config;
use kmsflow::journal::runs::{self, RunDir, RunError, RunState};
use kmsflow::journal::{now_ms, Journal, JournalHooks, Record};
use kmsflow::{Pipeline, RunOptions, RunReport, Runtime, Target, VarInputs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Variables and target, shared by `run` and `plan`.
#[derive(Args)]
pub struct RunInputs {
    /// Where capability calls go: a target of kmsflow.toml, `local` (the local cloud in
    /// `KMSFLOW_LOCAL_STATE`, started in-process unless one is serving there) or `offline`
    /// (every cloud call is unavailable). Default: the file's `default-target`, else `local`.
    #[arg(long)]
    pub target: Option<String>,
    /// Sets a pipeline variable (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// Reads pipeline variables from a TOML file of `name = value` lines (repeatable).
    #[arg(long = "vars", value_name = "FILE")]
    pub vars: Vec<PathBuf>,
    /// The resource group: a name (in the target's subscription) or an id; sets `resource-group`
    /// if the pipeline has it, and is where bare cluster and vault names are.
    #[arg(short = 'g', long = "resource-group", value_name = "GROUP")]
    pub resource_group: Option<String>,
    /// The cluster: a name (in the resource group), GROUP/NAME or an id; sets `cluster`.
    #[arg(long, value_name = "CLUSTER")]
    pub cluster: Option<String>,
    /// The key vault's name; sets `vault-name`.
    #[arg(long, value_name = "NAME")]
    pub vault: Option<String>,
}

impl RunInputs {
    /// `--set` values, with `--cluster` and `--vault` as the variables they stand for (`-g` is
    /// `VarInputs::group`).
    fn sets(&self) -> Vec<(String, String)> {
        let mut set = Vec::new();
        for (name, value) in [("cluster", &self.cluster), ("vault-name", &self.vault)] {
            if let Some(v) = value {
                set.push((name.to_string(), v.clone()));
            }
        }
        set.extend(self.set.iter().cloned());
        set
    }
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

fn invalid(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    Config::load(path).map_err(invalid)
}

/// The subscription short resource names expand against (see `Config::subscription_for`).
fn subscription(config: &Config, target: &str, local_dir: Option<&Path>) -> Result<Option<String>, Failure> {
    let local_dir = match local_dir {
        Some(d) => d.to_path_buf(),
        None => state_dir::default_state_dir_or_env()?,
    };
    Ok(config.subscription_for(target, &local_dir))
}

async fn target(name: &str, config: &Config, local_dir: Option<&Path>) -> Result<Target, Failure> {
    let local_dir = match local_dir {
        Some(d) => d.to_path_buf(),
        None => state_dir::default_state_dir_or_env()?,
    };
    Target::from_config(name, config, &local_dir)
        .await
        .map_err(|e| Failure {
            code: match e {
                kmsflow::target::TargetError::Unknown { .. } | kmsflow::target::TargetError::Config(_) => 2,
                _ => 3,
            },
            error: e.into(),
        })
}

fn runs_dir(explicit: Option<PathBuf>, config: &Config) -> PathBuf {
    explicit.unwrap_or_else(|| config.runs_dir())
}

/// The command that resumes `run_id`, as the user should type it.
fn resume_command(run_id: &str, runs_dir: &Path, config: &Config) -> String {
    let mut cmd = format!("kmsflow resume {run_id}");
    if runs_dir != config.runs_dir() {
        cmd.push_str(&format!(" --runs-dir {}", runs_dir.display()));
    }
    cmd
}

fn vars_json(values: &BTreeMap<String, toml::Value>) -> serde_json::Map<String, serde_json::Value> {
    values
        .iter()
        .filter_map(|(k, v)| serde_json::to_value(v).ok().map(|v| (k.clone(), v)))
        .collect()
}

fn vars_from_json(map: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, toml::Value> {
    map.iter()
        .filter_map(|(k, v)| toml::Value::try_from(v).ok().map(|v| (k.clone(), v)))
        .collect()
}

/// Loads a pipeline with its variables and prepares every step (plugins, parameters): all the
/// checks that need no target.
async fn load_and_prepare(
    runtime: &Runtime,
    pipeline_path: &Path,
    inputs: &RunInputs,
    subscription: Option<String>,
    allow_unknown: bool,
) -> Result<(Pipeline, Vec<kmsflow::PreparedStep>), Failure> {
    let var_inputs = VarInputs {
        files: inputs.vars.clone(),
        set: inputs.sets(),
        values: BTreeMap::new(),
        allow_unknown,
        subscription,
        group: inputs.resource_group.clone(),
    };
    let pipeline = Pipeline::load(pipeline_path, &var_inputs).map_err(invalid)?;
    let prepared = runtime
        .prepare(&pipeline)
        .await
        .map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    Ok((pipeline, prepared))
}

/// Drives a prepared pipeline with a journal in `run`, rendering as it goes; returns the exit code.
#[allow(clippy::too_many_arguments)]
async fn drive(
    runtime: &Runtime,
    pipeline: &Pipeline,
    prepared: Vec<kmsflow::PreparedStep>,
    target: &Target,
    run: &RunDir,
    journal: Arc<Journal>,
    resume: Option<Arc<kmsflow::ResumeState>>,
    output: Output,
    resume_cmd: &str,
) -> Result<u8, Failure> {
    let hooks = JournalHooks::new(Arc::clone(&journal));
    let renderer = Arc::new(render::RunRenderer::new(output));
    let sink = Arc::clone(&renderer);
    let options = RunOptions {
        run_id: run.id.clone(),
        events: hooks.events(Arc::new(move |e| sink.event(e))),
        hooks: Arc::new(hooks),
        resume,
    };
    renderer.started(&run.id, &pipeline.name);
    let work = runtime.run_prepared(pipeline, prepared, target, &options);
    let report: RunReport = tokio::select! {
        report = work => report,
        _ = tokio::signal::ctrl_c() => {
            if output == Output::Json {
                return Err(Failure {
                    code: 130,
                    error: anyhow::anyhow!("interrupted; resume with: {resume_cmd}"),
                });
            }
            errln!("interrupted; resume with: {resume_cmd}");
            return Ok(130);
        }
    };
    journal
        .append(Record::RunFinished {
            ok: report.succeeded(),
            at_ms: now_ms(),
        })
        .context("cannot write the run journal")?;
    renderer.finished(&report);
    if report.succeeded() {
        Ok(0)
    } else {
        errln!("resume with: {resume_cmd}");
        Ok(1)
    }
}

/// `kmsflow run PIPELINE` (`local_dir`: the local cloud's state directory, if not the default).
pub async fn run(
    pipeline_path: &Path,
    inputs: RunInputs,
    runs_dir_arg: Option<PathBuf>,
    config_path: Option<&Path>,
    cache: Cache,
    output: Output,
    local_dir: Option<&Path>,
) -> Result<u8, Failure> {
    let config = load_config(config_path)?;
    let runtime = build_runtime(cache)?;
    let target_name = inputs
        .target
        .clone()
        .unwrap_or_else(|| config.default_target().to_string());
    let subscription = subscription(&config, &target_name, local_dir)?;
    let (pipeline, prepared) = load_and_prepare(&runtime, pipeline_path, &inputs, subscription, false).await?;
    let target = target(&target_name, &config, local_dir).await?;
    let run_id = kmsflow::new_run_id();
    let runs_dir = runs_dir(runs_dir_arg, &config);
    let run = RunDir::open(&runs_dir, &run_id, true).context("cannot create the run directory")?;
    let _lock = run.lock(false).context("cannot lock the new run")?;
    let journal = Arc::new(Journal::open(&run.journal_path()).context("cannot create the run journal")?);
    let absolute = std::fs::canonicalize(pipeline_path).unwrap_or_else(|_| pipeline_path.to_path_buf());
    journal
        .append(Record::RunStarted {
            run_id: run_id.clone(),
            pipeline: pipeline.name.clone(),
            target: target.name().to_string(),
            at_ms: now_ms(),
            pipeline_path: absolute.display().to_string(),
            pipeline_sha256: pipeline.sha256.clone(),
            vars: vars_json(&pipeline.values),
            plugins: prepared
                .iter()
                .map(|p| (p.spec.id.clone(), p.plugin.sha256().to_string()))
                .collect(),
        })
        .context("cannot write the run journal")?;
    if output == Output::Text {
        errln!("run {run_id} (journal: {})", run.journal_path().display());
    }
    let cmd = resume_command(&run_id, &runs_dir, &config);
    drive(
        &runtime, &pipeline, prepared, &target, &run, journal, None, output, &cmd,
    )
    .await
}

/// `kmsflow resume RUN_ID`.
pub async fn resume(
    run_id: &str,
    allow_changed: bool,
    force: bool,
    runs_dir_arg: Option<PathBuf>,
    config_path: Option<&Path>,
    cache: Cache,
    output: Output,
) -> Result<u8, Failure> {
    let config = load_config(config_path)?;
    let runs_dir = runs_dir(runs_dir_arg, &config);
    let run = RunDir::open(&runs_dir, run_id, false).map_err(invalid)?;
    let _lock = run.lock(force).map_err(|e| match e {
        RunError::Locked { .. } => invalid(e),
        other => Failure::from(anyhow::Error::from(other)),
    })?;
    let records = run.records().map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    let Some(Record::RunStarted {
        target: target_name,
        pipeline_path,
        pipeline_sha256,
        vars,
        plugins,
        ..
    }) = records.first().cloned()
    else {
        return Err(invalid(anyhow::anyhow!(
            "run {run_id}: the journal does not start with the run"
        )));
    };
    if matches!(records.last(), Some(Record::RunFinished { ok: true, .. })) {
        match output {
            Output::Json => out::json(&serde_json::json!({
                "run_id": run_id, "status": "succeeded", "resumed": false,
            })),
            Output::Text => errln!("run {run_id} already succeeded; nothing to resume"),
        }
        return Ok(0);
    }
    let runtime = build_runtime(cache)?;
    let var_inputs = VarInputs {
        values: vars_from_json(&vars),
        ..VarInputs::default()
    };
    let pipeline = Pipeline::load(Path::new(&pipeline_path), &var_inputs).map_err(invalid)?;
    if pipeline.sha256 != pipeline_sha256 && !allow_changed {
        return Err(invalid(anyhow::anyhow!(
            "the pipeline {pipeline_path} changed since run {run_id} started; resuming would mix two \
             pipelines. Restore it, or pass --allow-changed if the change is intended"
        )));
    }
    let prepared = runtime
        .prepare(&pipeline)
        .await
        .map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    for p in &prepared {
        if let Some(recorded) = plugins.get(&p.spec.id) {
            if *recorded != p.plugin.sha256() && !allow_changed {
                return Err(invalid(anyhow::anyhow!(
                    "the plugin of step `{}` changed since run {run_id} started (sha256 {} → {}); \
                     pass --allow-changed if the change is intended",
                    p.spec.id,
                    &recorded[..12.min(recorded.len())],
                    &p.plugin.sha256()[..12]
                )));
            }
        }
    }
    let target = target(&target_name, &config, None).await?;
    let journal = Arc::new(Journal::open(&run.journal_path()).context("cannot open the run journal")?);
    journal
        .append(Record::Resumed {
            at_ms: now_ms(),
            allow_changed,
        })
        .context("cannot write the run journal")?;
    let state = runs::resume_state(&records);
    if output == Output::Text {
        errln!(
            "resuming run {run_id}: {} step(s) already finished",
            state.finished.len()
        );
    }
    let cmd = resume_command(run_id, &runs_dir, &config);
    drive(
        &runtime,
        &pipeline,
        prepared,
        &target,
        &run,
        journal,
        Some(Arc::new(state)),
        output,
        &cmd,
    )
    .await
}

/// `kmsflow validate PIPELINE`: load, check every step against its plugin; no target.
pub async fn validate(
    pipeline_path: &Path,
    inputs: RunInputs,
    config_path: Option<&Path>,
    cache: Cache,
    output: Output,
) -> Result<u8, Failure> {
    let runtime = build_runtime(cache)?;
    // Offline: the configuration only names the subscription short names expand against; an
    // unreadable one leaves them unexpanded rather than failing the lint.
    let config = load_config(config_path).ok();
    let subscription = config.as_ref().and_then(|c| {
        let name = inputs.target.clone().unwrap_or_else(|| c.default_target().to_string());
        subscription(c, &name, None).ok().flatten()
    });
    let (pipeline, prepared) = load_and_prepare(&runtime, pipeline_path, &inputs, subscription, true).await?;
    render::validated(output, &pipeline, &prepared);
    Ok(0)
}

/// `kmsflow plan PIPELINE`: validation, then every step run against the target until its first
/// write, which is refused and reported as what the step would change.
pub async fn plan(
    pipeline_path: &Path,
    inputs: RunInputs,
    config_path: Option<&Path>,
    cache: Cache,
    output: Output,
) -> Result<u8, Failure> {
    let config = load_config(config_path)?;
    let runtime = build_runtime(cache)?;
    let target_name = inputs
        .target
        .clone()
        .unwrap_or_else(|| config.default_target().to_string());
    let subscription = subscription(&config, &target_name, None)?;
    let (pipeline, prepared) = load_and_prepare(&runtime, pipeline_path, &inputs, subscription, false).await?;
    let target = target(&target_name, &config, None).await?;
    let plan = kmsflow::plan::plan(&runtime, &pipeline, prepared, &target).await;
    render::plan(output, &pipeline, &plan);
    Ok(if plan.iter().any(|s| s.blocked.is_some()) { 1 } else { 0 })
}

/// `kmsflow runs list`.
pub fn list(runs_dir_arg: Option<PathBuf>, config_path: Option<&Path>, output: Output) -> Result<u8, Failure> {
    let config = load_config(config_path)?;
    let dir = runs_dir(runs_dir_arg, &config);
    let mut summaries = Vec::new();
    for run in runs::list(&dir) {
        match run.records() {
            Ok(records) => summaries.push(runs::summarize(&run.id, &records)),
            Err(e) => errln!("warning: {e}"),
        }
    }
    render::runs_list(output, &summaries);
    Ok(0)
}

/// `kmsflow runs show RUN_ID`.
pub fn show(
    run_id: &str,
    runs_dir_arg: Option<PathBuf>,
    config_path: Option<&Path>,
    output: Output,
) -> Result<u8, Failure> {
    let config = load_config(config_path)?;
    let dir = runs_dir(runs_dir_arg, &config);
    let run = RunDir::open(&dir, run_id, false).map_err(invalid)?;
    let records = run.records().map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    let summary = runs::summarize(run_id, &records);
    render::run_show(output, &summary, &records);
    Ok(match summary.state {
        RunState::Succeeded => 0,
        _ => 1,
    })
}
