//! The one shared `wasmtime::Engine`, its epoch ticker, and the on-disk cache of compiled
//! components.
//!
//! Compiling a component takes ~100 ms; loading a precompiled one from disk takes well under a
//! millisecond. The cache key is the component's SHA-256 under a directory named after the
//! engine's compatibility hash and wasmtime's version, so a new wasmtime or other engine settings
//! never load stale machine code.

use crate::error::Error;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances: the granularity at which a spinning guest yields to the
/// executor (and so at which step timeouts are noticed).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine every step shares: component model, async host calls, epoch interruption.
pub fn new_engine() -> Result<Engine, Error> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("kmsflow-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the epoch ticker: {e}"));
}

/// Where a component came from on this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Loaded precompiled from the cache.
    Cached,
}

/// Compiled components on disk, keyed by content hash and engine.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// A `Hasher` over SHA-256, to turn the engine's compatibility hash into a stable name.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// A cache under `dir`; `None` compiles every time.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache { dir }
    }

    /// The default location: `$XDG_CACHE_HOME/kmsflow/components` (or the platform's equivalent).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|d| d.join("kmsflow").join("components"))
    }

    fn engine_dir(&self, engine: &Engine) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let key = format!("wasmtime-{}-{:016x}", wasmtime_version(), hasher.finish());
        Some(dir.join(key))
    }

    /// Loads the component with content hash `sha256`, from the cache when possible.
    pub fn load(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> Result<(Component, CacheOutcome), Error> {
        let path = self.engine_dir(engine).map(|d| d.join(format!("{sha256}.cwasm")));
        if let Some(path) = &path {
            if path.is_file() {
                match deserialize(engine, path) {
                    Ok(c) => return Ok((c, CacheOutcome::Cached)),
                    Err(e) => tracing::debug!(path = %path.display(), "cached component unusable, recompiling: {e}"),
                }
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| Error::Compile(format!("{e:#}")))?;
        if let Some(path) = &path {
            if let Err(e) = write_atomically(path, &compiled) {
                tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
            }
        }
        // Same engine, bytes just produced by it.
        let component = deserialize_bytes(engine, &compiled)?;
        Ok((component, CacheOutcome::Compiled))
    }
}

fn wasmtime_version() -> &'static str {
    // The `wasmtime` dependency is pinned to one major version in the workspace manifest.
    "48"
}

/// Loads machine code produced by `precompile_component` on an engine with the same settings.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component, Error> {
    // SAFETY: the file is one this cache wrote (atomically, via rename) under a directory keyed by
    // the engine's compatibility hash; wasmtime additionally checks the header and engine settings
    // and refuses an incompatible file. The cache directory belongs to the user running kmsflow.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| Error::Compile(format!("{e:#}")))
}

#[allow(unsafe_code)]
fn deserialize_bytes(engine: &Engine, compiled: &[u8]) -> Result<Component, Error> {
    // SAFETY: `compiled` was produced by `engine.precompile_component` just before this call.
    unsafe { Component::deserialize(engine, compiled) }.map_err(|e| Error::Compile(format!("{e:#}")))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
