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
//! - `130` interrupted by Ctrl-C (the run can be resumed).

#[cfg(feature = "local-cloud")]
mod local;
#[cfg(feature = "local-cloud")]
mod quickstart;
mod render;
mod runs;
mod state_dir;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kmsflow::{Error, Runtime};
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
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
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

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let cache = cli.cache();
    match cli.command {
        Command::Run {
            pipeline,
            inputs,
            runs_dir,
        } => {
            runs::run(
                &pipeline,
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
            runs::plan(&pipeline, inputs, cli.config.as_deref(), cache, cli.output).await
        }
        Command::Validate { pipeline, inputs } => runs::validate(&pipeline, inputs, cache, cli.output).await,
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
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&figures.to_json()).unwrap_or_default()
                ),
                Output::Text => print!("{figures}"),
            }
            Ok(0)
        }
    }
}
