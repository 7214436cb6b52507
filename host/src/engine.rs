//! The one shared `wasmtime::Engine`, its epoch ticker, and the on-disk cache of compiled
//! components.
//!
//! Compiling a component takes ~100 ms; loading a precompiled one from disk takes well under a
//! millisecond. The cache key is the component's SHA-256 under a directory named after the
//! engine's compatibility hash and wasmtime's version, so a new wasmtime or other engine settings
//! never load stale machine code.
//!
//! **Invariant: this module is the one place where compiled code is trusted.** Native code is
//! only ever deserialized here, and only from
//! - bytes `Engine::precompile_component` produced in this process, or
//! - a cache entry read (once, into memory, at most [`MAX_CACHE_ENTRY_BYTES`]) from a directory
//!   tree only the current user can write — the cache directory, its engine subdirectory and the
//!   entry are owned by the effective uid and not writable by group or others, and the entry is a
//!   regular file, checked the way ssh checks `~/.ssh` — whose header records the SHA-256 of the
//!   very component being loaded and the SHA-256 of the compiled bytes that follow it.
//!
//! Anything else (an unsafe directory, a foreign, swapped, truncated or corrupt entry) is never
//! deserialized: the component is compiled from its `.wasm` bytes instead. The hashes carry no
//! secret: they tie an entry to its component and catch corruption and swaps; what keeps other
//! users from forging an entry is the ownership check.
//!
//! ## Entry format
//!
//! `DIR/wasmtime-<version>-<engine hash>/<component sha256>.cwasm`, one file per component, written
//! with mode 0600 to a uniquely named temporary file in the same directory and renamed into place
//! (directories are created with mode 0700):
//!
//! | bytes | content |
//! |---|---|
//! | 0..16 | magic `kmsflow-cwasm-1\n` |
//! | 16..48 | SHA-256 of the component (`.wasm`) the code was compiled from |
//! | 48..80 | SHA-256 of the compiled bytes (everything after the header) |
//! | 80..88 | length of the compiled bytes, little-endian `u64` |
//! | 88.. | the output of `Engine::precompile_component` |

use crate::error::Error;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    /// Compiled now (and written to the cache when there is a trusted one).
    Compiled,
    /// Loaded precompiled from a cache entry that passed every check in this module.
    Cached,
}

/// The largest cache entry that is read back; a bigger file is not read at all, and the component
/// is recompiled (its entry rewritten). Compiled kmsflow plugins are a few MiB.
pub const MAX_CACHE_ENTRY_BYTES: u64 = 256 << 20;

/// The first bytes of every cache entry (format version 1).
const ENTRY_MAGIC: &[u8; 16] = b"kmsflow-cwasm-1\n";
/// Magic, source SHA-256, compiled SHA-256, compiled length.
const HEADER_LEN: usize = 16 + 32 + 32 + 8;

/// Compiled components on disk, keyed by content hash and engine.
///
/// Guarantees: [`ComponentCache::load`] returns a component compiled from exactly the bytes it
/// was given, whatever the cache directory holds; a directory another user could write is never
/// read from or written to (a warning with the fix is logged once per cache).
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    /// Whether the "not using the cache" warning was already logged.
    warned: Arc<AtomicBool>,
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

/// Why a cache directory or entry is not used.
#[derive(Debug, thiserror::Error)]
enum Untrusted {
    #[error("{path} is a symbolic link; point --cache-dir at a real directory")]
    Symlink { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is owned by uid {owner}, not by you (uid {uid}); use a directory of your own (--cache-dir) or `chown {uid} {path}`")]
    Owner { path: PathBuf, owner: u32, uid: u32 },
    #[error("{path} is writable by group or others (mode {mode:o}); run `chmod go-w {path}`")]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path} is larger than {MAX_CACHE_ENTRY_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} was replaced while it was being opened")]
    Replaced { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(not(unix))]
    #[error("the compiled-code cache is only supported on Unix")]
    Unsupported,
}

/// Why the bytes of a cache entry are not used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum BadEntry {
    #[error("shorter than its header ({0} bytes)")]
    ShortHeader(usize),
    #[error("not a kmsflow cache entry (unknown header)")]
    Magic,
    #[error("compiled from a different component (sha256 {0})")]
    OtherSource(String),
    #[error("truncated or padded: {actual} bytes of compiled code, the header says {recorded}")]
    Length { recorded: u64, actual: u64 },
    #[error("the compiled bytes do not match their recorded SHA-256")]
    CompiledHash,
}

impl ComponentCache {
    /// A cache under `dir`; `None` compiles every time, in memory, and writes nothing.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache {
            dir,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The default location: `$XDG_CACHE_HOME/kmsflow/components` (or the platform's equivalent).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|d| d.join("kmsflow").join("components"))
    }

    fn engine_dir(dir: &Path, engine: &Engine) -> PathBuf {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let key = format!("wasmtime-{}-{:016x}", wasmtime_version(), hasher.finish());
        dir.join(key)
    }

    /// The engine's entry directory, created (mode 0700) if missing, when it and the cache
    /// directory are private to the current user; otherwise `None`, after one warning.
    fn trusted_engine_dir(&self, engine: &Engine) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let engine_dir = Self::engine_dir(dir, engine);
        let checked = private_dir(dir).and_then(|()| private_dir(&engine_dir));
        match checked {
            Ok(()) => Some(engine_dir),
            Err(problem) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("not using the compiled-plugin cache, compiling in memory: {problem}");
                } else {
                    tracing::debug!("not using the compiled-plugin cache: {problem}");
                }
                None
            }
        }
    }

    /// Loads the component whose bytes are `bytes` and whose SHA-256 (hex) is `sha256`, from the
    /// cache when a trusted entry for exactly these bytes exists, else by compiling `bytes` (and
    /// then writing the entry). `sha256` is checked against `bytes`; a mismatch is an error.
    pub fn load(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> Result<(Component, CacheOutcome), Error> {
        let source: [u8; 32] = Sha256::digest(bytes).into();
        if !hex::encode(source).eq_ignore_ascii_case(sha256) {
            return Err(Error::Compile(format!(
                "the component's bytes have SHA-256 {}, not {sha256}",
                hex::encode(source)
            )));
        }
        let entry = self
            .trusted_engine_dir(engine)
            .map(|dir| (dir.join(format!("{}.cwasm", hex::encode(source))), dir));
        if let Some((path, _)) = &entry {
            match read_entry(path) {
                Ok(None) => {}
                Ok(Some(contents)) => match verify_entry(&contents, &source) {
                    Ok(compiled) => match deserialize_cached(engine, compiled) {
                        Ok(c) => {
                            tracing::debug!(path = %path.display(), "loaded compiled component from the cache");
                            return Ok((c, CacheOutcome::Cached));
                        }
                        Err(e) => tracing::warn!(path = %path.display(), "cached component unusable, recompiling: {e}"),
                    },
                    Err(e) => tracing::warn!(path = %path.display(), "cached component rejected, recompiling: {e}"),
                },
                Err(e) => tracing::warn!("cached component rejected, recompiling: {e}"),
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| Error::Compile(format!("{e:#}")))?;
        if let Some((path, dir)) = &entry {
            match write_entry(dir, path, &source, &compiled) {
                Ok(()) => tracing::debug!(path = %path.display(), "compiled component, cache entry written"),
                Err(e) => tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}"),
            }
        }
        let component = deserialize_fresh(engine, &compiled)?;
        Ok((component, CacheOutcome::Compiled))
    }
}

fn wasmtime_version() -> &'static str {
    // The `wasmtime` dependency is pinned to one major version in the workspace manifest.
    "48"
}

/// The effective uid of this process.
#[cfg(unix)]
fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses metadata not owned by the current user or writable by group or others.
#[cfg(unix)]
fn owned_and_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = current_uid();
    if meta.uid() != uid {
        return Err(Untrusted::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Untrusted::Writable {
            path: path.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Checks that `dir` is a real directory (not a symlink) private to the current user, creating
/// it (and missing parents) with mode 0700 first if it does not exist.
#[cfg(unix)]
fn private_dir(dir: &Path) -> Result<(), Untrusted> {
    use std::os::unix::fs::DirBuilderExt as _;
    let io = |source| Untrusted::Io {
        path: dir.to_path_buf(),
        source,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
            std::fs::symlink_metadata(dir).map_err(io)?
        }
        other => other.map_err(io)?,
    };
    if meta.file_type().is_symlink() {
        return Err(Untrusted::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(Untrusted::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    owned_and_private(dir, &meta)
}

#[cfg(not(unix))]
fn private_dir(_: &Path) -> Result<(), Untrusted> {
    Err(Untrusted::Unsupported)
}

/// Reads a cache entry into memory: `None` if there is none; an error if it is not a regular
/// file private to the current user, is larger than [`MAX_CACHE_ENTRY_BYTES`], or was swapped
/// between the check and the open.
#[cfg(unix)]
fn read_entry(path: &Path) -> Result<Option<Vec<u8>>, Untrusted> {
    use std::os::unix::fs::MetadataExt as _;
    let io = |source| Untrusted::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(io)?,
    };
    if !meta.file_type().is_file() {
        return Err(Untrusted::NotAFile {
            path: path.to_path_buf(),
        });
    }
    owned_and_private(path, &meta)?;
    if meta.len() > MAX_CACHE_ENTRY_BYTES {
        return Err(Untrusted::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let opened = file.metadata().map_err(io)?;
    if opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err(Untrusted::Replaced {
            path: path.to_path_buf(),
        });
    }
    let mut contents = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    file.take(MAX_CACHE_ENTRY_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(io)?;
    if contents.len() as u64 > MAX_CACHE_ENTRY_BYTES {
        return Err(Untrusted::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(Some(contents))
}

#[cfg(not(unix))]
fn read_entry(_: &Path) -> Result<Option<Vec<u8>>, Untrusted> {
    Err(Untrusted::Unsupported)
}

/// The header of an entry for `compiled`, which was compiled from a component with SHA-256
/// `source`.
fn entry_header(source: &[u8; 32], compiled: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(ENTRY_MAGIC);
    header.extend_from_slice(source);
    header.extend_from_slice(&Sha256::digest(compiled));
    header.extend_from_slice(&(compiled.len() as u64).to_le_bytes());
    header
}

/// The compiled bytes of `entry`, if its header names `source` and matches the bytes after it.
fn verify_entry<'a>(entry: &'a [u8], source: &[u8; 32]) -> Result<&'a [u8], BadEntry> {
    let (header, compiled) = entry
        .split_at_checked(HEADER_LEN)
        .ok_or(BadEntry::ShortHeader(entry.len()))?;
    let (magic, rest) = header.split_at(ENTRY_MAGIC.len());
    if magic != ENTRY_MAGIC {
        return Err(BadEntry::Magic);
    }
    let (recorded_source, rest) = rest.split_at(32);
    let (recorded_compiled, recorded_len) = rest.split_at(32);
    if recorded_source != source {
        return Err(BadEntry::OtherSource(hex::encode(recorded_source)));
    }
    let recorded = u64::from_le_bytes(
        recorded_len
            .try_into()
            .map_err(|_| BadEntry::ShortHeader(entry.len()))?,
    );
    let actual = compiled.len() as u64;
    if recorded != actual {
        return Err(BadEntry::Length { recorded, actual });
    }
    if Sha256::digest(compiled).as_slice() != recorded_compiled {
        return Err(BadEntry::CompiledHash);
    }
    Ok(compiled)
}

/// Writes an entry atomically: a uniquely named 0600 temporary file in `dir`, renamed to `path`.
fn write_entry(dir: &Path, path: &Path, source: &[u8; 32], compiled: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".cwasm.tmp")
        .tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(&entry_header(source, compiled))?;
    tmp.write_all(compiled)?;
    tmp.flush()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Loads machine code from a cache entry that passed [`read_entry`] and [`verify_entry`].
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, compiled: &[u8]) -> Result<Component, Error> {
    // SAFETY: `compiled` is in memory (no file can change under it), was read from an entry in a
    // directory tree only the current user can write, and its header ties it to the SHA-256 of
    // the component being loaded and to its own SHA-256: it is what `write_entry` stored after
    // `precompile_component` of these component bytes on an engine with the same compatibility
    // hash (the directory's name). wasmtime also checks its own header and the engine settings.
    unsafe { Component::deserialize(engine, compiled) }.map_err(|e| Error::Compile(format!("{e:#}")))
}

/// Loads machine code that `engine.precompile_component` produced in this process.
#[allow(unsafe_code)]
fn deserialize_fresh(engine: &Engine, compiled: &[u8]) -> Result<Component, Error> {
    // SAFETY: `compiled` was produced by `engine.precompile_component` just before this call.
    unsafe { Component::deserialize(engine, compiled) }.map_err(|e| Error::Compile(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(source: &[u8; 32], compiled: &[u8]) -> Vec<u8> {
        let mut e = entry_header(source, compiled);
        e.extend_from_slice(compiled);
        e
    }

    #[test]
    fn an_entry_verifies_only_for_its_own_component_and_bytes() {
        let source = [7u8; 32];
        let compiled = b"compiled code".as_slice();
        let good = entry(&source, compiled);
        assert_eq!(verify_entry(&good, &source), Ok(compiled));

        assert_eq!(
            verify_entry(&good, &[8u8; 32]),
            Err(BadEntry::OtherSource(hex::encode(source)))
        );
        assert_eq!(
            verify_entry(&good[..good.len() - 1], &source),
            Err(BadEntry::Length {
                recorded: compiled.len() as u64,
                actual: compiled.len() as u64 - 1
            })
        );
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verify_entry(&flipped, &source), Err(BadEntry::CompiledHash));
        let mut magic = good.clone();
        magic[0] = b'K';
        assert_eq!(verify_entry(&magic, &source), Err(BadEntry::Magic));
        assert_eq!(
            verify_entry(&good[..HEADER_LEN - 1], &source),
            Err(BadEntry::ShortHeader(HEADER_LEN - 1))
        );
    }

    #[test]
    fn load_refuses_a_hash_that_is_not_the_hash_of_the_bytes() {
        let engine = Engine::default();
        let cache = ComponentCache::new(None);
        let err = cache.load(&engine, b"bytes", &"0".repeat(64)).err().unwrap();
        assert!(err.to_string().contains("not 0000"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn cache_directories_are_created_private_and_refused_when_others_can_write() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        for unsafe_mode in [0o720, 0o702, 0o777] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(unsafe_mode)).unwrap();
            let err = private_dir(&dir).unwrap_err();
            assert!(matches!(err, Untrusted::Writable { .. }), "{err}");
            assert!(
                err.to_string().contains(&format!("chmod go-w {}", dir.display())),
                "{err}"
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        private_dir(&dir).unwrap();

        // Someone else's directory or entry (only root can hand a file to another uid; elsewhere
        // the ownership arm is exercised by nothing but review).
        let entry = dir.join("e.cwasm");
        std::fs::write(&entry, b"x").unwrap();
        assert!(read_entry(&entry).unwrap().is_some());
        if std::os::unix::fs::chown(&entry, Some(54321), None).is_ok() {
            assert!(matches!(read_entry(&entry), Err(Untrusted::Owner { owner: 54321, .. })));
            std::os::unix::fs::chown(&dir, Some(54321), None).unwrap();
            let err = private_dir(&dir).unwrap_err();
            assert!(matches!(err, Untrusted::Owner { owner: 54321, .. }), "{err}");
        }

        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(private_dir(&file), Err(Untrusted::NotADirectory { .. })));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(private_dir(&link), Err(Untrusted::Symlink { .. })));
        assert!(matches!(read_entry(&link), Err(Untrusted::NotAFile { .. })));
        assert!(read_entry(&tmp.path().join("absent")).unwrap().is_none());
    }
}
