//! Argument parsing, dispatch, and exit codes.
//!
//! Exit codes scripts can branch on (the README's table; every command uses it):
//! - `0` success;
//! - `1` a step failed (the run report says which and why);
//! - `2` bad input, nothing sent: arguments, pipeline, grants, parameters, or a plugin file that
//!   cannot be read, is not a component (a core module, truncated), has the wrong world or does
//!   not match its pinned hash;
//! - `3` the environment: engine creation, target unreachable, run directory or journal, or an
//!   internal error (a built-in plugin that does not compile);
//! - `130` interrupted by Ctrl-C (the run can be resumed);
//! - `141` stdout was closed under the process (`| head -1`): it stops quietly ([`out`]).
//!
//! With `--output json` every command prints exactly one JSON document on stdout: its result
//! (a failed run's report included), or, when it printed none, `{"error": {"code", "message",
//! "location"}}` ([`error_document`]).

mod out;

#[cfg(feature = "local-cloud")]
mod local;
#[cfg(feature = "local-cloud")]
mod quickstart;
mod render;
mod runs;
mod state_dir;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kmsflow::config::ConfigError;
use kmsflow::journal::runs::RunError;
use kmsflow::journal::JournalError;
use kmsflow::target::TargetError;
use kmsflow::{Error, PipelineError, Runtime};
use out::{errln, out};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kmsflow",
    version,
    about = "Encrypt AKS secrets at rest with your own Key Vault key, and keep them that way"
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace), on stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// `json` prints one machine-readable document on stdout.
    #[arg(long, value_enum, default_value = "text", global = true)]
    output: Output,
    /// Where compiled plugins are cached (default: the user's cache directory). It must belong
    /// to you and not be writable by group or others, or it is not used.
    #[arg(long, global = true, env = "KMSFLOW_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile plugins in memory: read and write no compiled code on disk (wins over --cache-dir).
    #[arg(long, global = true)]
    no_cache: bool,
    /// The configuration file (default: ./kmsflow.toml, then the user's config directory).
    #[arg(long, global = true, env = "KMSFLOW_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where compiled plugins are cached, as the global flags say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cache {
    /// The user's cache directory.
    Default,
    /// `--cache-dir` or `KMSFLOW_CACHE_DIR`.
    Dir(PathBuf),
    /// `--no-cache`: compile in memory.
    Off,
}

impl Cli {
    fn cache(&self) -> Cache {
        match (&self.cache_dir, self.no_cache) {
            (_, true) => Cache::Off,
            (Some(dir), false) => Cache::Dir(dir.clone()),
            (None, false) => Cache::Default,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (prints the run id first; a failed run prints its resume command).
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        #[command(flatten)]
        inputs: runs::RunInputs,
        /// Where run journals are kept (default: the file's `runs-dir`, else `.kmsflow/runs`).
        #[arg(long, env = "KMSFLOW_RUNS_DIR")]
        runs_dir: Option<PathBuf>,
    },
    /// Continue an interrupted or failed run where it stopped.
    Resume {
        run_id: String,
        /// Resume even though the pipeline or a plugin changed since the run started.
        #[arg(long)]
        allow_changed: bool,
        /// Take the run's lock even though another process seems to hold it.
        #[arg(long)]
        force: bool,
        #[arg(long, env = "KMSFLOW_RUNS_DIR")]
        runs_dir: Option<PathBuf>,
    },
    /// Show what each step would change, without changing anything.
    Plan {
        pipeline: PathBuf,
        #[command(flatten)]
        inputs: runs::RunInputs,
    },
    /// Check a pipeline and its plugins offline (no target).
    Validate {
        pipeline: PathBuf,
        #[command(flatten)]
        inputs: runs::RunInputs,
    },
    /// The main job on a fresh local cloud: seed a 1.26 cluster, enable KMS, migrate to v2, rotate
    /// twice, switch to private, print the status and the secrets' at-rest summary.
    #[cfg(feature = "local-cloud")]
    Quickstart(quickstart::QuickstartArgs),
    /// Past runs, from their journals.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// List and inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// The pipelines kmsflow ships (`kmsflow run NAME` runs one).
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Print performance figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The local cloud: an Azure + AKS emulator on loopback.
    #[cfg(feature = "local-cloud")]
    #[command(subcommand)]
    Local(local::LocalCommand),
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Every run with its state.
    List {
        #[arg(long, env = "KMSFLOW_RUNS_DIR")]
        runs_dir: Option<PathBuf>,
    },
    /// A run's timeline: steps, calls with durations, retries and denials.
    Show {
        run_id: String,
        #[arg(long, env = "KMSFLOW_RUNS_DIR")]
        runs_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum WorkflowsCommand {
    /// Every shipped pipeline with its one-line summary.
    List,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// The built-in plugins with their SHA-256.
    List,
    /// A plugin's parameters, outputs and the grants it needs.
    Describe {
        /// A built-in plugin name, or the path of a `.wasm` component.
        plugin: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Component compile vs cached load, per-step instantiation, guest-to-host call cost.
    Runtime {
        /// Repetitions for the per-step and per-call figures.
        #[arg(long, default_value_t = 200)]
        iterations: u32,
    },
    /// Journal append cost (with fsync) and run start-up to the plugin's first instruction.
    Journal {
        #[arg(long, default_value_t = 1000)]
        appends: u32,
        #[arg(long, default_value_t = 20)]
        runs: u32,
    },
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        let code = match error.downcast_ref::<Error>() {
            Some(
                Error::Pipeline(_)
                | Error::UnknownPlugin(_)
                | Error::ReadPlugin { .. }
                | Error::PluginHashMismatch { .. }
                | Error::NotAPlugin { .. }
                | Error::File(_),
            ) => 2,
            // `Error::Compile` only comes from a built-in plugin (a user's file that does not
            // compile is `NotAPlugin`): a broken build, not bad input.
            _ => 3,
        };
        Failure { code, error }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && json_requested() => {
            let message = e.render().to_string();
            let message = message.trim().trim_start_matches("error: ");
            out::json(&json!({"error": {"code": "UsageInvalid", "message": message, "location": null}}));
            return ExitCode::from(2);
        }
        // `--help`, `--version`, and usage errors in text mode: as clap prints them (exit 0 / 2).
        Err(e) => e.exit(),
    };
    let output = cli.output;
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                output,
                Failure {
                    code: 3,
                    error: anyhow::Error::from(e).context("cannot start the async runtime"),
                },
            )
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => fail(output, failure),
    }
}

/// Reports `failure` (text: `error: …` on stderr; JSON: the error document on stdout, unless the
/// command already printed its document) and returns its exit code.
fn fail(output: Output, failure: Failure) -> ExitCode {
    match output {
        Output::Json if !out::document_printed() => out::json(&error_document(&failure)),
        _ => errln!("error: {:#}", failure.error),
    }
    ExitCode::from(failure.code)
}

/// Whether the raw arguments ask for `--output json` (for errors clap finds before it parses).
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--output=json") || args.windows(2).any(|w| w[0] == "--output" && w[1] == "json")
}

/// `{"error": {"code", "message", "location"}}`: `code` is stable per failure class (what a
/// script branches on), `message` the text mode's message, `location` `file:line:column` when
/// the failure is at a place in a file, else null.
fn error_document(failure: &Failure) -> serde_json::Value {
    let (code, location) = classify(failure);
    json!({"error": {"code": code, "message": format!("{:#}", failure.error), "location": location}})
}

/// The failure class and location of a failure, from the first error in its chain kmsflow knows;
/// else from its exit code.
fn classify(failure: &Failure) -> (&'static str, Option<String>) {
    for cause in failure.error.chain() {
        if let Some(e) = cause.downcast_ref::<PipelineError>() {
            return ("PipelineInvalid", pipeline_location(e));
        }
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::Pipeline(e) => ("PipelineInvalid", pipeline_location(e)),
                Error::UnknownPlugin(_) => ("PluginUnknown", None),
                Error::ReadPlugin { .. } => ("PluginUnreadable", None),
                Error::PluginHashMismatch { .. } => ("PluginHashMismatch", None),
                Error::NotAPlugin { .. } => ("PluginInvalid", None),
                Error::File(_) => ("FileRefused", None),
                Error::Compile(_) => ("PluginCompileFailed", None),
                Error::Engine(_) => ("EngineUnavailable", None),
                Error::Journal(_) => ("JournalFailed", None),
                Error::Io { .. } => ("IoFailed", None),
            };
        }
        if let Some(e) = cause.downcast_ref::<TargetError>() {
            return match e {
                TargetError::Unknown { .. } => ("TargetUnknown", None),
                TargetError::Config(e) => ("ConfigInvalid", config_location(e)),
                TargetError::LocalCloud { .. } | TargetError::LocalCloudNotServing { .. } => {
                    ("LocalCloudUnavailable", None)
                }
                TargetError::Http(_) | TargetError::Credential(_) => ("TargetUnavailable", None),
            };
        }
        if let Some(e) = cause.downcast_ref::<ConfigError>() {
            return ("ConfigInvalid", config_location(e));
        }
        if let Some(e) = cause.downcast_ref::<RunError>() {
            return match e {
                RunError::NotFound { .. } => ("RunNotFound", None),
                RunError::Locked { .. } => ("RunLocked", None),
                RunError::Lock { .. } => ("RunLockFailed", None),
                RunError::Journal(_) => ("JournalFailed", None),
            };
        }
        if cause.downcast_ref::<JournalError>().is_some() {
            return ("JournalFailed", None);
        }
    }
    let code = match failure.code {
        1 => "StepFailed",
        2 => "InputInvalid",
        130 => "Interrupted",
        _ => "EnvironmentFailed",
    };
    (code, None)
}

fn pipeline_location(e: &PipelineError) -> Option<String> {
    (e.location.line > 0).then(|| e.location.to_string())
}

/// `path:line:column` of a TOML syntax error in `kmsflow.toml` (the parser says "at line L, column C").
fn config_location(e: &ConfigError) -> Option<String> {
    let ConfigError::Parse { path, message } = e else {
        return None;
    };
    let rest = &message[message.find("at line ")? + "at line ".len()..];
    let (line, rest) = rest.split_once(", column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let line: usize = line.trim().parse().ok()?;
    (!column.is_empty()).then(|| format!("{path}:{line}:{column}"))
}

fn init_tracing(verbose: u8) {
    // kube's trace layer logs every non-2xx answer at ERROR; kmsflow retries those itself and
    // records each attempt (journal, `-v`), so kube's lines only show at `-vv`.
    let level = match verbose {
        0 => "warn,kube_client=off",
        1 => "kmsflow=debug,info,kube_client=off",
        _ => "kmsflow=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KMSFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn build_runtime(cache: Cache) -> Result<Runtime, Failure> {
    let builder = match cache {
        Cache::Default => Runtime::builder(),
        Cache::Dir(dir) => Runtime::builder().cache_dir(dir),
        Cache::Off => Runtime::builder().no_cache(),
    };
    Ok(builder.build().context("cannot start the plugin runtime")?)
}

/// A pipeline argument: a file, else the name of a shipped pipeline (`rotate`), written with its
/// fragments under the user's data directory (`KMSFLOW_DATA_DIR` overrides it) so a resume finds
/// it again.
fn pipeline_file(arg: PathBuf) -> Result<PathBuf, Failure> {
    let name = arg.to_string_lossy().to_string();
    let bare = !name.contains(['/', '\\']) && !name.ends_with(".toml");
    if arg.exists() || (!kmsflow::shipped::is_shipped(&name) && !bare) || name.contains(['/', '\\']) {
        return Ok(arg);
    }
    if !kmsflow::shipped::is_shipped(&name) {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "`{name}` is neither a pipeline file nor a shipped pipeline; `kmsflow workflows list` shows those"
            ),
        });
    }
    let base = std::env::var_os("KMSFLOW_DATA_DIR")
        .map(PathBuf::from)
        .or_else(kmsflow::shipped::default_base)
        .ok_or_else(|| anyhow::anyhow!("no data directory for the shipped pipelines; set KMSFLOW_DATA_DIR"))?;
    Ok(kmsflow::shipped::materialize(&base, &name)
        .with_context(|| format!("cannot write the shipped pipeline {name} under {}", base.display()))?)
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let cache = cli.cache();
    match cli.command {
        Command::Workflows(WorkflowsCommand::List) => {
            render::workflows(cli.output, &kmsflow::shipped::list());
            Ok(0)
        }
        Command::Run {
            pipeline,
            inputs,
            runs_dir,
        } => {
            runs::run(
                &pipeline_file(pipeline)?,
                inputs,
                runs_dir,
                cli.config.as_deref(),
                cache,
                cli.output,
                None,
            )
            .await
        }
        Command::Resume {
            run_id,
            allow_changed,
            force,
            runs_dir,
        } => {
            runs::resume(
                &run_id,
                allow_changed,
                force,
                runs_dir,
                cli.config.as_deref(),
                cache,
                cli.output,
            )
            .await
        }
        Command::Plan { pipeline, inputs } => {
            runs::plan(
                &pipeline_file(pipeline)?,
                inputs,
                cli.config.as_deref(),
                cache,
                cli.output,
            )
            .await
        }
        Command::Validate { pipeline, inputs } => {
            runs::validate(
                &pipeline_file(pipeline)?,
                inputs,
                cli.config.as_deref(),
                cache,
                cli.output,
            )
            .await
        }
        #[cfg(feature = "local-cloud")]
        Command::Quickstart(args) => quickstart::run(args, cache, cli.output).await,
        Command::Runs(RunsCommand::List { runs_dir }) => runs::list(runs_dir, cli.config.as_deref(), cli.output),
        Command::Runs(RunsCommand::Show { run_id, runs_dir }) => {
            runs::show(&run_id, runs_dir, cli.config.as_deref(), cli.output)
        }
        Command::Plugins(PluginsCommand::List) => {
            let runtime = build_runtime(cache)?;
            let mut plugins = Vec::new();
            for name in Runtime::builtin_names() {
                plugins.push(runtime.builtin(name).await.map_err(anyhow::Error::from)?);
            }
            render::plugin_list(cli.output, &plugins);
            Ok(0)
        }
        Command::Plugins(PluginsCommand::Describe { plugin }) => {
            let runtime = build_runtime(cache)?;
            let loaded = if plugin.ends_with(".wasm") || plugin.contains('/') {
                runtime.plugin_from_file(std::path::Path::new(&plugin), None).await
            } else {
                runtime.builtin(&plugin).await
            }
            .map_err(anyhow::Error::from)?;
            render::plugin_describe(cli.output, &loaded);
            Ok(0)
        }
        #[cfg(feature = "local-cloud")]
        Command::Local(command) => local::run(command, cli.output).await.map_err(Failure::from),
        Command::Bench(BenchCommand::Runtime { iterations }) => {
            let figures = kmsflow::bench::runtime(iterations).await.map_err(anyhow::Error::from)?;
            render::bench(cli.output, &figures);
            Ok(0)
        }
        Command::Bench(BenchCommand::Journal { appends, runs }) => {
            let figures = kmsflow::bench::journal(appends, runs)
                .await
                .map_err(anyhow::Error::from)?;
            match cli.output {
                Output::Json => out::json(&figures.to_json()),
                Output::Text => out!("{figures}"),
            }
            Ok(0)
        }
    }
}
