//! The embeddable runtime: load plugins, run pipelines or single steps against a target, observe
//! events. The `kmsflow` CLI is a thin user of this API.

use crate::backend::Unavailable;
use crate::builtin;
use crate::capabilities::{CallHooks, NoHooks, StepContext};
use crate::engine::{new_engine, ComponentCache};
use crate::error::Error;
use crate::events::{discard, Event, EventSink};
use crate::grants::Grants;
use crate::limits::{read_file, FileError, StepLimits, PLUGIN_FILE_MAX};
use crate::pipeline::params_to_toml as to_toml;
use crate::pipeline::{check_params, resolve_params, Pipeline, PluginRef, Ref, StepSpec};
use crate::plugin::{sha256_hex, Plugin, PluginOrigin};
use crate::step::{run_step, StepFailure, StepState};
use crate::target::Target;
use crate::wit::types::{Param, ParamSpec};
use crate::wit::{Workflow, WorkflowPre};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

/// Limits for calling `describe()`, which must be quick and call nothing.
const DESCRIBE_LIMITS: StepLimits = StepLimits {
    timeout: Duration::from_secs(5),
    memory_bytes: 64 << 20,
    instances: 64,
    tables: 64,
    table_elements: 100_000,
};

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    cache_dir: Option<PathBuf>,
}

impl RuntimeBuilder {
    /// Caches compiled components under `dir` (default: the user's cache directory).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Compiles every component on load; nothing is written to disk.
    pub fn no_cache(mut self) -> Self {
        self.cache_dir = None;
        self
    }

    pub fn build(self) -> Result<Runtime, Error> {
        let engine = new_engine()?;
        let mut linker = Linker::<StepState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| Error::Engine(e.to_string()))?;
        Workflow::add_to_linker::<StepState, HasSelf<StepContext>>(&mut linker, |s| &mut s.ctx)
            .map_err(|e| Error::Engine(e.to_string()))?;
        Ok(Runtime {
            engine,
            linker,
            cache: ComponentCache::new(self.cache_dir),
            loaded: Mutex::new(HashMap::new()),
        })
    }
}

/// One shared engine, its linker, the component cache, and the plugins loaded so far.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache: ComponentCache,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
}

/// What to run: one step of one plugin.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub id: String,
    pub params: Vec<Param>,
    pub grants: Grants,
    pub limits: StepLimits,
}

/// How a run reports and identifies itself.
#[derive(Clone)]
pub struct RunOptions {
    pub run_id: String,
    pub events: EventSink,
    pub hooks: Arc<dyn CallHooks>,
    /// What an interrupted run of the same id already did.
    pub resume: Option<Arc<ResumeState>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_id: new_run_id(),
            events: discard(),
            hooks: Arc::new(NoHooks),
            resume: None,
        }
    }
}

/// The result of one step.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub id: String,
    pub plugin: String,
    pub sha256: String,
    pub outcome: Result<Vec<Param>, StepFailure>,
    pub duration: Duration,
    pub status: StepStatus,
}

/// Whether a step ran in this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Ran,
    /// Its `when` condition did not hold.
    Skipped,
    /// A resumed run found it finished.
    AlreadyDone,
}

/// The result of a run: the steps that ran, in order (a failed step ends the run).
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// Whether every step succeeded.
    pub fn succeeded(&self) -> bool {
        self.steps.iter().all(|s| s.outcome.is_ok())
    }

    /// The first failed step, if any.
    pub fn failure(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.outcome.is_err())
    }
}

/// A fresh run id: time-ordered, unique on this machine.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let salt = sha256_hex(
        format!(
            "{}{}{:?}",
            now.as_nanos(),
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    format!("r{}-{}", now.as_secs(), &salt[..8])
}

impl Runtime {
    /// A runtime with the default component cache.
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            cache_dir: ComponentCache::default_dir(),
        }
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Names of the built-in plugins.
    pub fn builtin_names() -> Vec<&'static str> {
        builtin::names().collect()
    }

    /// Loads built-in plugin `name`.
    pub async fn builtin(&self, name: &str) -> Result<Arc<Plugin>, Error> {
        let bytes = builtin::bytes(name).ok_or_else(|| Error::UnknownPlugin(name.to_string()))?;
        self.load(name, bytes, PluginOrigin::Builtin).await
    }

    /// Loads a component file; with `expected_sha256`, refuses a file whose hash differs. A path
    /// that is not a regular file, or a file over [`PLUGIN_FILE_MAX`], is refused before it is
    /// read or hashed.
    pub async fn plugin_from_file(&self, path: &Path, expected_sha256: Option<&str>) -> Result<Arc<Plugin>, Error> {
        let bytes = read_plugin_file(path)?;
        let actual = sha256_hex(&bytes);
        if let Some(expected) = expected_sha256 {
            if !expected.eq_ignore_ascii_case(&actual) {
                return Err(Error::PluginHashMismatch {
                    path: path.to_path_buf(),
                    expected: expected.to_ascii_lowercase(),
                    actual,
                });
            }
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.load(&name, &bytes, PluginOrigin::File(path.to_path_buf())).await
    }

    /// Loads a component handed over in memory.
    pub async fn plugin_from_bytes(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, Error> {
        self.load(name, bytes, PluginOrigin::Bytes).await
    }

    async fn load(&self, name: &str, bytes: &[u8], origin: PluginOrigin) -> Result<Arc<Plugin>, Error> {
        let sha256 = sha256_hex(bytes);
        if let Some(p) = self.loaded.lock().ok().and_then(|m| m.get(&sha256).cloned()) {
            return Ok(p);
        }
        let started = Instant::now();
        let not_a_plugin = |reason: String| Error::NotAPlugin {
            name: name.to_string(),
            reason,
        };
        // A file or bytes that do not compile are bad input (a core module, a truncated file);
        // only a built-in that does not compile is the host's fault.
        let (component, cache) = self.cache.load(&self.engine, bytes, &sha256).map_err(|e| match e {
            Error::Compile(reason) if origin != PluginOrigin::Builtin => not_a_plugin(not_a_component(bytes, &reason)),
            other => other,
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| not_a_plugin(format!("{e:#}")))?;
        let pre = WorkflowPre::new(pre).map_err(|e| not_a_plugin(format!("{e:#}")))?;
        let load_time = started.elapsed();
        let info = describe(&pre, &sha256)
            .await
            .map_err(|e| not_a_plugin(format!("describe() failed: {e}")))?;
        let plugin = Arc::new(Plugin {
            name: if origin == PluginOrigin::Builtin {
                name.to_string()
            } else {
                info.name.clone()
            },
            sha256: sha256.clone(),
            origin,
            info,
            pre,
            cache,
            load_time,
        });
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(sha256, Arc::clone(&plugin));
        }
        Ok(plugin)
    }

    /// Resolves a step's plugin reference.
    pub async fn resolve_plugin(&self, uses: &PluginRef) -> Result<Arc<Plugin>, Error> {
        match uses {
            PluginRef::Builtin(name) => self.builtin(name).await,
            PluginRef::File { path, sha256 } => self.plugin_from_file(path, Some(sha256)).await,
        }
    }

    /// Runs one step of `plugin` against `target` (with its checkpoints restored when
    /// `options.resume` has them).
    pub async fn run_step(&self, plugin: &Plugin, step: StepRun, target: &Target, options: &RunOptions) -> StepReport {
        let checkpoint = options
            .resume
            .as_ref()
            .and_then(|r| r.checkpoints.get(&step.id).cloned())
            .unwrap_or_default();
        self.run_step_from(plugin, step, target, options, checkpoint).await.0
    }

    /// One attempt of a step starting from `checkpoint`; returns the map as the attempt left it.
    async fn run_step_from(
        &self,
        plugin: &Plugin,
        step: StepRun,
        target: &Target,
        options: &RunOptions,
        checkpoint: BTreeMap<String, String>,
    ) -> (StepReport, BTreeMap<String, String>) {
        let started = Instant::now();
        (options.events)(&Event::StepStarted {
            step: step.id.clone(),
            plugin: plugin.name.clone(),
            sha256: plugin.sha256.clone(),
        });
        let mut ctx = StepContext::new(
            options.run_id.clone(),
            step.id.clone(),
            step.grants,
            target.backend(),
            Arc::clone(&options.hooks),
            options.events.clone(),
        );
        ctx.checkpoint = checkpoint;
        let (outcome, ctx) = run_step(&plugin.pre, ctx, step.limits, step.params).await;
        let duration = started.elapsed();
        (options.events)(&Event::StepFinished {
            step: step.id.clone(),
            ok: outcome.is_ok(),
            duration,
            reason: outcome.as_ref().err().map(ToString::to_string),
            outputs: outcome.as_ref().ok().cloned().unwrap_or_default(),
        });
        let report = StepReport {
            id: step.id,
            plugin: plugin.name.clone(),
            sha256: plugin.sha256.clone(),
            outcome,
            duration,
            status: StepStatus::Ran,
        };
        (report, ctx.checkpoint)
    }

    /// Loads every step's plugin and checks every step's parameters (step-output references
    /// included), before anything runs.
    pub async fn prepare(&self, pipeline: &Pipeline) -> Result<Vec<PreparedStep>, Error> {
        let mut prepared = Vec::new();
        let mut earlier: HashMap<String, Vec<ParamSpec>> = HashMap::new();
        for step in &pipeline.steps {
            let plugin = self.resolve_plugin(&step.uses).await.map_err(|e| match e {
                Error::UnknownPlugin(_)
                | Error::ReadPlugin { .. }
                | Error::File(_)
                | Error::PluginHashMismatch { .. }
                | Error::NotAPlugin { .. } => {
                    let hint = matches!(e, Error::UnknownPlugin(_)).then(|| {
                        format!(
                            "built-in plugins: {}; a file needs a path ending in .wasm and its sha256",
                            Runtime::builtin_names().join(", ")
                        )
                    });
                    Error::Pipeline(crate::pipeline::PipelineError {
                        location: step.uses_location.clone(),
                        message: e.to_string(),
                        hint,
                    })
                }
                other => other,
            })?;
            check_params(step, &plugin.info, &earlier, &pipeline.unknown)?;
            earlier.insert(step.id.clone(), plugin.info.outputs.clone());
            prepared.push(PreparedStep {
                plugin,
                spec: step.clone(),
            });
        }
        Ok(prepared)
    }

    /// Runs `pipeline` against `target`: every step in order, stopping at the first failure.
    /// Nothing runs unless every step's plugin loads and its parameters check out.
    pub async fn run(&self, pipeline: &Pipeline, target: &Target, options: &RunOptions) -> Result<RunReport, Error> {
        let prepared = self.prepare(pipeline).await?;
        Ok(self.run_prepared(pipeline, prepared, target, options).await)
    }

    /// Runs steps that [`Runtime::prepare`] returned: skips those `options.resume` says are done,
    /// evaluates `when`, substitutes earlier steps' outputs, and retries as each step says.
    pub async fn run_prepared(
        &self,
        pipeline: &Pipeline,
        prepared: Vec<PreparedStep>,
        target: &Target,
        options: &RunOptions,
    ) -> RunReport {
        let mut report = RunReport {
            run_id: options.run_id.clone(),
            pipeline: pipeline.name.clone(),
            steps: Vec::new(),
        };
        let mut outputs: HashMap<String, Vec<Param>> = HashMap::new();
        let resume = options.resume.clone().unwrap_or_default();
        for PreparedStep { plugin, spec } in prepared {
            let done = |status: StepStatus, outcome: Vec<Param>| StepReport {
                id: spec.id.clone(),
                plugin: plugin.name.clone(),
                sha256: plugin.sha256.clone(),
                outcome: Ok(outcome),
                duration: Duration::ZERO,
                status,
            };
            if let Some(out) = resume.finished.get(&spec.id) {
                (options.events)(&Event::StepResumed { step: spec.id.clone() });
                outputs.insert(spec.id.clone(), out.clone());
                report.steps.push(done(StepStatus::AlreadyDone, out.clone()));
                continue;
            }
            let lookup = |r: &Ref| match r {
                Ref::Output { step, output } => outputs
                    .get(step)
                    .and_then(|o| o.iter().find(|p| p.name == *output))
                    .map(|p| to_toml(&p.value)),
                Ref::Var(_) => None,
            };
            let failed = |reason: String| StepReport {
                id: spec.id.clone(),
                plugin: plugin.name.clone(),
                sha256: plugin.sha256.clone(),
                outcome: Err(StepFailure::Setup(reason)),
                duration: Duration::ZERO,
                status: StepStatus::Ran,
            };
            if let Some((condition, _)) = &spec.when {
                match condition.eval(&lookup) {
                    Ok(true) => {}
                    Ok(false) => {
                        (options.events)(&Event::StepSkipped {
                            step: spec.id.clone(),
                            condition: condition.source.clone(),
                        });
                        report.steps.push(done(StepStatus::Skipped, Vec::new()));
                        continue;
                    }
                    Err(e) => {
                        report
                            .steps
                            .push(failed(format!("`when = \"{}\"`: {e}", condition.source)));
                        break;
                    }
                }
            }
            let params = match resolve_params(&spec, &plugin.info, &lookup) {
                Ok(p) => p,
                Err(e) => {
                    report.steps.push(failed(e.to_string()));
                    break;
                }
            };
            let mut checkpoint = resume.checkpoints.get(&spec.id).cloned().unwrap_or_default();
            let mut attempt = 1;
            let step_report = loop {
                let run = StepRun {
                    id: spec.id.clone(),
                    params: params.clone(),
                    grants: spec.grants.clone(),
                    limits: spec.limits,
                };
                let (step_report, left) = self.run_step_from(&plugin, run, target, options, checkpoint).await;
                checkpoint = left;
                match &step_report.outcome {
                    Err(StepFailure::Plugin(e)) if attempt < spec.retry.attempts && spec.retry.on.contains(&e.kind) => {
                        let wait = spec.retry.backoff.saturating_mul(1 << (attempt - 1).min(10));
                        (options.events)(&Event::Log {
                            step: spec.id.clone(),
                            level: crate::events::LogLevel::Warn,
                            source: crate::events::LogSource::Plugin,
                            message: format!(
                                "attempt {attempt} of {} failed ({e}); retrying in {}",
                                spec.retry.attempts,
                                humantime::format_duration(wait)
                            ),
                        });
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    _ => break step_report,
                }
            };
            let failed = step_report.outcome.is_err();
            if let Ok(out) = &step_report.outcome {
                outputs.insert(spec.id.clone(), out.clone());
            }
            report.steps.push(step_report);
            if failed {
                break;
            }
        }
        report
    }
}

/// A step ready to run: its plugin loaded and its parameters checked.
#[derive(Clone)]
pub struct PreparedStep {
    pub plugin: Arc<Plugin>,
    pub spec: StepSpec,
}

/// What an interrupted run had finished, for `kmsflow resume`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumeState {
    /// Steps that finished, with their outputs: not run again.
    pub finished: HashMap<String, Vec<Param>>,
    /// Each step's checkpoint map as it was last written.
    pub checkpoints: HashMap<String, BTreeMap<String, String>>,
}

/// Why `bytes` did not compile, in words a plugin author can act on.
fn not_a_component(bytes: &[u8], reason: &str) -> String {
    const CORE_MODULE: [u8; 8] = *b"\0asm\x01\0\0\0";
    if bytes.starts_with(&CORE_MODULE) {
        "it is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it \
         with `wasm-tools component new`)"
            .to_string()
    } else {
        format!("not a valid WebAssembly component (truncated or corrupt?): {reason}")
    }
}

/// The bytes of the plugin component at `path`, at most [`PLUGIN_FILE_MAX`] of them: a device,
/// FIFO or directory, or a larger file, is refused before it is read (an I/O failure is
/// [`Error::ReadPlugin`]).
pub(crate) fn read_plugin_file(path: &Path) -> Result<Vec<u8>, Error> {
    read_file(path, PLUGIN_FILE_MAX, "plugin components").map_err(|e| match e {
        FileError::Io { path, source } => Error::ReadPlugin { path, source },
        refused => Error::File(refused),
    })
}

/// Calls `describe()` in a throwaway store with no grants and no backend.
async fn describe(pre: &WorkflowPre<StepState>, sha256: &str) -> Result<crate::wit::types::PluginInfo, StepFailure> {
    let ctx = StepContext::new(
        String::new(),
        format!("describe:{}", &sha256[..12]),
        Grants::default(),
        Arc::new(Unavailable),
        Arc::new(NoHooks),
        discard(),
    );
    crate::step::describe(pre, ctx, DESCRIBE_LIMITS).await
}
