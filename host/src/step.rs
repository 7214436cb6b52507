//! Running one step: a fresh `Store` holding only that step's context, limits enforced by a
//! resource limiter, epoch yields, and a wall-clock timeout around the whole call (guest code
//! and host calls alike).

use crate::capabilities::StepContext;
use crate::events::LogSource;
use crate::limits::{
    truncate, StepLimits, PLUGIN_ERROR_CODE_MAX, PLUGIN_ERROR_MESSAGE_MAX, STEP_OUTPUTS_MAX, STEP_OUTPUT_BYTES_MAX,
};
use crate::output::{LogBudget, StepOutput};
use crate::wit::types::{Error as WitError, Param, PluginInfo, Value};
use crate::wit::WorkflowPre;
use std::fmt;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of a step's store.
pub struct StepState {
    pub(crate) ctx: StepContext,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: StepLimiter,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Enforces [`StepLimits`] and remembers which limit was hit, so the failure can say so.
struct StepLimiter {
    limits: StepLimits,
    hit: Option<LimitHit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitHit {
    Memory,
    Table,
}

impl ResourceLimiter for StepLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.hit = Some(LimitHit::Memory);
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.limits.memory_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limits.table_elements {
            self.hit = Some(LimitHit::Table);
            wasmtime::bail!("table limit of {} elements exceeded", self.limits.table_elements);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.tables
    }

    fn memories(&self) -> usize {
        self.limits.instances
    }
}

/// Why a step did not succeed. `Display` is the one-line reason the CLI prints.
#[derive(Debug, Clone, PartialEq)]
pub enum StepFailure {
    /// The wall-clock timeout expired (guest code or host calls).
    Timeout(Duration),
    /// The plugin tried to grow its memory past the cap.
    MemoryLimit(usize),
    /// The plugin trapped (panic, unreachable, out-of-bounds access, a host fault).
    Trap(String),
    /// The plugin returned an error.
    Plugin(WitError),
    /// The plugin returned more outputs than [`STEP_OUTPUTS_MAX`] or more bytes of them than
    /// [`STEP_OUTPUT_BYTES_MAX`]; none of them is kept.
    OutputsTooLarge { outputs: usize, bytes: usize },
    /// The step could not start (instantiation failed).
    Setup(String),
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepFailure::Timeout(d) => write!(f, "timed out after {}", humantime::format_duration(*d)),
            StepFailure::MemoryLimit(bytes) => write!(
                f,
                "exceeded its memory limit of {} (raise `limits.memory` if this is expected)",
                bytesize::ByteSize(*bytes as u64)
            ),
            StepFailure::Trap(msg) => write!(f, "plugin trapped: {msg}"),
            StepFailure::Plugin(e) => {
                if e.code.is_empty() {
                    write!(f, "{}: {}", e.kind, e.message)
                } else {
                    write!(f, "{} ({}): {}", e.kind, e.code, e.message)
                }
            }
            StepFailure::OutputsTooLarge { outputs, bytes } => write!(
                f,
                "returned {outputs} outputs of {} in all, over the limit of {STEP_OUTPUTS_MAX} outputs and {}; none was kept",
                bytesize::ByteSize(*bytes as u64),
                bytesize::ByteSize(STEP_OUTPUT_BYTES_MAX as u64)
            ),
            StepFailure::Setup(msg) => write!(f, "could not start: {msg}"),
        }
    }
}

/// Runs `run(params)` of a pre-instantiated plugin in a fresh store.
pub(crate) async fn run_step(
    pre: &WorkflowPre<StepState>,
    ctx: StepContext,
    limits: StepLimits,
    params: Vec<Param>,
) -> (Result<Vec<Param>, StepFailure>, StepContext) {
    let (result, ctx) = invoke(pre, ctx, limits, Invocation::Run(params)).await;
    let result = result.and_then(|r| match r {
        Returned::Outputs(o) => bounded_outputs(o),
        Returned::Info(_) => Err(StepFailure::Setup("describe answered a run".into())),
    });
    (result, ctx)
}

/// What [`STEP_OUTPUT_BYTES_MAX`] counts of one output: its name, a text's bytes, 8 for an
/// integer or a flag, each list item's bytes plus one.
fn output_bytes(p: &Param) -> usize {
    let value = match &p.value {
        Value::Text(t) => t.len(),
        Value::Integer(_) | Value::Flag(_) => 8,
        Value::TextList(items) => items.iter().fold(0usize, |n, i| n.saturating_add(i.len() + 1)),
    };
    p.name.len().saturating_add(value)
}

/// `outputs` if they are within [`STEP_OUTPUTS_MAX`] and [`STEP_OUTPUT_BYTES_MAX`]; else the
/// failure, and they are dropped here, before any event, journal record or report sees them.
fn bounded_outputs(outputs: Vec<Param>) -> Result<Vec<Param>, StepFailure> {
    let bytes = outputs.iter().fold(0usize, |n, p| n.saturating_add(output_bytes(p)));
    if outputs.len() > STEP_OUTPUTS_MAX || bytes > STEP_OUTPUT_BYTES_MAX {
        return Err(StepFailure::OutputsTooLarge {
            outputs: outputs.len(),
            bytes,
        });
    }
    Ok(outputs)
}

/// A plugin's error with its code and message cut to [`PLUGIN_ERROR_CODE_MAX`] and
/// [`PLUGIN_ERROR_MESSAGE_MAX`] (cut, not refused: the reason the step failed is still shown).
fn bounded_error(e: WitError) -> WitError {
    WitError {
        kind: e.kind,
        code: truncate(&e.code, PLUGIN_ERROR_CODE_MAX),
        message: truncate(&e.message, PLUGIN_ERROR_MESSAGE_MAX),
    }
}

/// Calls `describe()` in a fresh store under `limits`.
pub(crate) async fn describe(
    pre: &WorkflowPre<StepState>,
    ctx: StepContext,
    limits: StepLimits,
) -> Result<PluginInfo, StepFailure> {
    match invoke(pre, ctx, limits, Invocation::Describe).await.0? {
        Returned::Info(info) => {
            let entries = info.params.len() + info.outputs.len() + info.grants.len();
            let spec_bytes = |p: &crate::wit::types::ParamSpec| {
                p.name.len() + p.description.len() + p.default.as_ref().map_or(0, |d| format!("{d:?}").len())
            };
            let bytes = info.name.len()
                + info.version.len()
                + info.description.len()
                + info.params.iter().chain(&info.outputs).map(spec_bytes).sum::<usize>()
                + info.grants.iter().map(|g| g.description.len()).sum::<usize>();
            if entries > crate::limits::DESCRIBE_ENTRIES_MAX || bytes > crate::limits::DESCRIBE_BYTES_MAX {
                return Err(StepFailure::Setup(format!(
                    "describe() answered {entries} parameters, outputs and grants in {bytes} bytes; the limits are \
                     {} and {} bytes",
                    crate::limits::DESCRIBE_ENTRIES_MAX,
                    crate::limits::DESCRIBE_BYTES_MAX
                )));
            }
            if info.name.is_empty() || info.name.len() > 64 || info.name.chars().any(|c| c.is_control()) {
                return Err(StepFailure::Setup(
                    "describe() answered a name that is empty, over 64 bytes or has control characters".into(),
                ));
            }
            Ok(info)
        }
        Returned::Outputs(_) => Err(StepFailure::Setup("run answered a describe".into())),
    }
}

/// Which export to call.
enum Invocation {
    Describe,
    Run(Vec<Param>),
}

/// What the export returned.
enum Returned {
    Info(PluginInfo),
    Outputs(Vec<Param>),
}

async fn invoke(
    pre: &WorkflowPre<StepState>,
    mut ctx: StepContext,
    limits: StepLimits,
    invocation: Invocation,
) -> (Result<Returned, StepFailure>, StepContext) {
    // Every log line of this attempt — stdout, stderr, `log.log` — goes through one budget.
    let budget = LogBudget::new(&ctx.step, ctx.events.clone());
    let events = std::mem::replace(&mut ctx.events, budget.sink());
    let (mut store, stdout, stderr) = new_store(pre, ctx, limits);
    let call = async {
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| StepFailure::Setup(format!("{e:#}")))?;
        match invocation {
            Invocation::Describe => match instance.call_describe(&mut store).await {
                Ok(info) => Ok(Returned::Info(info)),
                Err(trap) => Err(StepFailure::Trap(trap_reason(&trap))),
            },
            Invocation::Run(params) => match instance.call_run(&mut store, &params).await {
                Ok(Ok(outputs)) => Ok(Returned::Outputs(outputs)),
                Ok(Err(e)) => Err(StepFailure::Plugin(bounded_error(e))),
                Err(trap) => Err(StepFailure::Trap(trap_reason(&trap))),
            },
        }
    };
    let result = match tokio::time::timeout(limits.timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(StepFailure::Timeout(limits.timeout)),
    };
    let result = match (result, store.data().limiter.hit) {
        (Err(StepFailure::Trap(_)), Some(LimitHit::Memory)) => Err(StepFailure::MemoryLimit(limits.memory_bytes)),
        (r, _) => r,
    };
    stdout.finish();
    stderr.finish();
    budget.finish();
    let mut ctx = store.into_data().ctx;
    ctx.events = events;
    (result, ctx)
}

/// A fresh store for one step: its context, WASI deny-by-default, limits and epoch yields.
fn new_store(
    pre: &WorkflowPre<StepState>,
    ctx: StepContext,
    limits: StepLimits,
) -> (Store<StepState>, StepOutput, StepOutput) {
    let stdout = StepOutput::new(&ctx.step, LogSource::Stdout, ctx.events.clone());
    let stderr = StepOutput::new(&ctx.step, LogSource::Stderr, ctx.events.clone());
    // Deny by default: no preopened directories, no sockets (the builder denies every address),
    // no environment, no arguments; only stdout/stderr, into the step log.
    let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).build();
    let mut store = Store::new(
        pre.engine(),
        StepState {
            ctx,
            wasi,
            table: ResourceTable::new(),
            limiter: StepLimiter { limits, hit: None },
        },
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    (store, stdout, stderr)
}

/// Creates a store and instantiates the plugin, nothing more: the per-step fixed cost.
pub(crate) async fn instantiate_only(
    pre: &WorkflowPre<StepState>,
    ctx: StepContext,
    limits: StepLimits,
) -> Result<(), StepFailure> {
    let (mut store, _, _) = new_store(pre, ctx, limits);
    pre.instantiate_async(&mut store)
        .await
        .map(drop)
        .map_err(|e| StepFailure::Setup(format!("{e:#}")))
}

/// The first line of a trap's cause chain, without wasmtime's backtrace.
fn trap_reason(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    error
        .chain()
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| error.to_string())
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
