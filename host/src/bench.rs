//! `kmsflow bench runtime` (and `cargo bench -p kmsflow`): the runtime's cost figures.
//! Benchmarks print; they never fail a build.

use crate::backend::Unavailable;
use crate::capabilities::{NoHooks, StepContext};
use crate::engine::{CacheOutcome, ComponentCache};
use crate::error::Error;
use crate::events::discard;
use crate::grants::Grants;
use crate::limits::StepLimits;
use crate::runtime::{RunOptions, Runtime, StepRun};
use crate::target::Target;
use crate::wit::types::{Param, Value};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The figures `kmsflow bench runtime` prints.
#[derive(Debug, Clone)]
pub struct RuntimeFigures {
    pub plugin_bytes: usize,
    /// `Component` from wasm bytes, no cache.
    pub compile_cold: Duration,
    /// `Component` from the on-disk cache (median).
    pub load_cached: Duration,
    /// New store + instantiate through `InstancePre` (median).
    pub instantiate: Duration,
    /// A whole step with an empty `run`: store, instantiate, call, outputs (median).
    pub empty_step: Duration,
    /// One guest → host → guest call (`checkpoint.get`), averaged over many.
    pub host_call: Duration,
    pub iterations: u32,
}

impl RuntimeFigures {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "plugin_bytes": self.plugin_bytes,
            "compile_cold_us": self.compile_cold.as_secs_f64() * 1e6,
            "load_cached_us": self.load_cached.as_secs_f64() * 1e6,
            "instantiate_us": self.instantiate.as_secs_f64() * 1e6,
            "empty_step_us": self.empty_step.as_secs_f64() * 1e6,
            "host_call_ns": self.host_call.as_secs_f64() * 1e9,
            "iterations": self.iterations,
        })
    }
}

impl fmt::Display for RuntimeFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        writeln!(
            f,
            "plugin: test-calls ({} bytes), {} iterations",
            self.plugin_bytes, self.iterations
        )?;
        writeln!(f, "component compile (cold)      {:>10.1} µs", us(self.compile_cold))?;
        writeln!(
            f,
            "component load (cached)       {:>10.1} µs   target ≤ 1000 µs",
            us(self.load_cached)
        )?;
        writeln!(
            f,
            "instantiate per step          {:>10.1} µs   target ≤ 100 µs",
            us(self.instantiate)
        )?;
        writeln!(f, "empty step (store+run)        {:>10.1} µs", us(self.empty_step))?;
        writeln!(
            f,
            "guest→host call round trip    {:>10.3} µs   target ≤ 1 µs",
            us(self.host_call)
        )
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ctx() -> StepContext {
    StepContext::new(
        "bench".into(),
        "bench".into(),
        Grants::default(),
        Arc::new(Unavailable),
        Arc::new(NoHooks),
        discard(),
    )
}

fn calls_step(calls: i64) -> StepRun {
    StepRun {
        id: "bench".into(),
        params: vec![Param {
            name: "calls".into(),
            value: Value::Integer(calls),
        }],
        grants: Grants::default(),
        limits: StepLimits::default(),
    }
}

/// Measures the runtime with the `test-calls` plugin.
pub async fn runtime(iterations: u32) -> Result<RuntimeFigures, Error> {
    let iterations = iterations.max(1);
    let path = crate::builtin::test_plugin("test-calls").ok_or_else(|| Error::UnknownPlugin("test-calls".into()))?;
    let bytes = crate::runtime::read_plugin_file(std::path::Path::new(path))?;
    let sha = crate::sha256_hex(&bytes);
    let cache_dir = std::env::temp_dir().join(format!("kmsflow-bench-{}", std::process::id()));
    let runtime = Runtime::builder().cache_dir(&cache_dir).build()?;
    let cache = ComponentCache::new(Some(cache_dir.clone()));

    let started = Instant::now();
    let (_, outcome) = cache.load(runtime.engine(), &bytes, &sha)?;
    let compile_cold = started.elapsed();
    debug_assert_eq!(outcome, CacheOutcome::Compiled);

    let mut loads = Vec::new();
    for _ in 0..iterations.min(50) {
        let started = Instant::now();
        cache.load(runtime.engine(), &bytes, &sha)?;
        loads.push(started.elapsed());
    }

    let plugin = runtime.plugin_from_bytes("test-calls", &bytes).await?;
    let mut instantiations = Vec::new();
    for _ in 0..iterations {
        let started = Instant::now();
        crate::step::instantiate_only(&plugin.pre, ctx(), StepLimits::default())
            .await
            .map_err(|e| Error::Engine(e.to_string()))?;
        instantiations.push(started.elapsed());
    }

    let target = Target::offline();
    let options = RunOptions::default();
    let mut steps = Vec::new();
    for _ in 0..iterations {
        let started = Instant::now();
        runtime.run_step(&plugin, calls_step(0), &target, &options).await;
        steps.push(started.elapsed());
    }
    let empty_step = median(steps);

    let calls: i64 = 1_000_000;
    let started = Instant::now();
    let report = runtime.run_step(&plugin, calls_step(calls), &target, &options).await;
    let elapsed = started.elapsed();
    if let Err(e) = report.outcome {
        return Err(Error::Engine(format!("host-call benchmark failed: {e}")));
    }
    let host_call = elapsed.saturating_sub(empty_step) / calls as u32;

    let _ = std::fs::remove_dir_all(&cache_dir);
    Ok(RuntimeFigures {
        plugin_bytes: bytes.len(),
        compile_cold,
        load_cached: median(loads),
        instantiate: median(instantiations),
        empty_step,
        host_call,
        iterations,
    })
}

/// The figures `kmsflow bench journal` prints.
#[derive(Debug, Clone)]
pub struct JournalFigures {
    pub appends: u32,
    /// Appends per second, each synced to disk before the next.
    pub appends_per_sec: f64,
    /// One synced append (median).
    pub append: Duration,
    /// From the start of a run (runtime, pipeline load, plugin from the warm cache, validation)
    /// to the plugin's first output line (median of `runs`).
    pub start_to_first_instruction: Duration,
    pub runs: u32,
}

impl JournalFigures {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "appends": self.appends,
            "appends_per_sec": self.appends_per_sec,
            "append_us": self.append.as_secs_f64() * 1e6,
            "start_to_first_instruction_ms": self.start_to_first_instruction.as_secs_f64() * 1e3,
            "runs": self.runs,
        })
    }
}

impl fmt::Display for JournalFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "journal append + fsync        {:>10.1} µs   {:.0} records/s over {} appends",
            self.append.as_secs_f64() * 1e6,
            self.appends_per_sec,
            self.appends
        )?;
        writeln!(
            f,
            "run start → first plugin line {:>10.2} ms   median of {} runs (warm cache)",
            self.start_to_first_instruction.as_secs_f64() * 1e3,
            self.runs
        )
    }
}

/// Measures journal appends (in the system temp directory: the disk the runs directory usually
/// shares) and the start-up of a one-step pipeline of the `test-stdout` plugin.
pub async fn journal(appends: u32, runs: u32) -> Result<JournalFigures, Error> {
    use crate::journal::{Journal, Record};
    let dir = std::env::temp_dir().join(format!("kmsflow-bench-journal-{}", std::process::id()));
    let path = dir.join("journal.ndjson");
    let journal = Journal::open(&path)?;
    let mut samples = Vec::with_capacity(appends as usize);
    let started = Instant::now();
    for i in 0..appends.max(1) {
        let t = Instant::now();
        journal.append(Record::Checkpoint {
            step: "bench".into(),
            key: "continue".into(),
            value: Some(format!("token-{i}")),
        })?;
        samples.push(t.elapsed());
    }
    let total = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);

    let plugin =
        crate::builtin::test_plugin("test-stdout").ok_or_else(|| Error::UnknownPlugin("test-stdout".into()))?;
    let wasm = crate::runtime::read_plugin_file(std::path::Path::new(plugin))?;
    let pipeline_dir = std::env::temp_dir().join(format!("kmsflow-bench-start-{}", std::process::id()));
    let io = |what: &str| {
        let what = what.to_string();
        move |source| Error::Io { what, source }
    };
    std::fs::create_dir_all(&pipeline_dir).map_err(io("bench directory"))?;
    let pipeline_path = pipeline_dir.join("start.toml");
    std::fs::write(
        &pipeline_path,
        format!(
            "[pipeline]\nname = \"start\"\n[[steps]]\nid = \"s\"\nuses = \"{}\"\nsha256 = \"{}\"\n",
            plugin,
            crate::sha256_hex(&wasm)
        ),
    )
    .map_err(io("bench pipeline"))?;
    let cache_dir = pipeline_dir.join("cache");
    let mut starts = Vec::new();
    for i in 0..=runs.max(1) {
        let t0 = Instant::now();
        let first: Arc<std::sync::Mutex<Option<Duration>>> = Arc::default();
        let seen = Arc::clone(&first);
        let runtime = Runtime::builder().cache_dir(&cache_dir).build()?;
        let pipeline = crate::pipeline::Pipeline::from_file(&pipeline_path)?;
        let options = RunOptions {
            events: Arc::new(move |e: &crate::events::Event| {
                if let crate::events::Event::Log { .. } = e {
                    let mut f = seen.lock().unwrap_or_else(|p| p.into_inner());
                    f.get_or_insert_with(|| t0.elapsed());
                }
            }),
            ..RunOptions::default()
        };
        runtime.run(&pipeline, &Target::offline(), &options).await?;
        let at = *first.lock().unwrap_or_else(|p| p.into_inner());
        // The first run fills the component cache; it is not a warm start.
        if let (Some(at), true) = (at, i > 0) {
            starts.push(at);
        }
    }
    let _ = std::fs::remove_dir_all(&pipeline_dir);
    Ok(JournalFigures {
        appends,
        appends_per_sec: f64::from(appends.max(1)) / total.as_secs_f64().max(1e-9),
        append: median(samples),
        start_to_first_instruction: median(starts),
        runs,
    })
}
