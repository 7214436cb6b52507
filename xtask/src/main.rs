//! The README's commands. Each first makes sure the `wasm32-wasip2` target is installed
//! (automatic rustup installs are off here; `rustup target add` is idempotent), then:
//!
//! - `cargo xtask quickstart` — builds kmsflow (plugins included) and runs `kmsflow quickstart`:
//!   the main job (`workflows/quickstart.toml`) on a fresh embedded local cloud;
//! - `cargo xtask test` — the whole suite: formatting, the library without the emulator (its
//!   dependency tree and a clippy build with `--no-default-features`), host workspace tests, guest
//!   plugin unit tests, and clippy with warnings denied. `.ci/run` calls exactly this. It first
//!   installs `kubectl` with `apt-get` when it is not on `PATH` (the kubectl compatibility test
//!   fails without it).
//! - `cargo xtask setup` — only the target install.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> ExitCode {
    let task = env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    let result = match task.as_str() {
        "setup" => setup(),
        "test" => setup().and_then(|()| test(&root)),
        "quickstart" => setup().and_then(|()| quickstart(&root)),
        _ => {
            eprintln!("usage: cargo xtask <quickstart | test | setup>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = cmd.status().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn setup() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    run(
        &format!("rustup target add {WASM_TARGET}"),
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
    )
}

/// Whether `kubectl` runs from `PATH`.
fn kubectl_runs() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes sure `kubectl` is on `PATH` for the kubectl compatibility test, which fails without it:
/// nothing to do when it is there; else `apt-get install -y kubectl` (the package this machine's
/// kubectl comes from, where its repository is configured), else Debian's `kubernetes-client`.
fn ensure_kubectl() -> Result<(), String> {
    if kubectl_runs() {
        return Ok(());
    }
    eprintln!("xtask: kubectl is not on PATH: installing it with apt-get");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let _ = apt(&["update", "-qq"]);
    for package in ["kubectl", "kubernetes-client"] {
        if apt(&["install", "-y", "-qq", package]) && kubectl_runs() {
            eprintln!("xtask: installed kubectl (apt package `{package}`)");
            return Ok(());
        }
    }
    Err(
        "kubectl is missing and apt-get could install neither `kubectl` nor `kubernetes-client` \
         (as root: `apt-get install -y kubernetes-client`); the kubectl compatibility test needs it \
         (KMSFLOW_SKIP_KUBECTL=1 skips that test on a developer machine, never in CI)"
            .into(),
    )
}

fn test(root: &Path) -> Result<(), String> {
    if env::var("KMSFLOW_SKIP_KUBECTL").as_deref() == Ok("1") {
        eprintln!("xtask: KMSFLOW_SKIP_KUBECTL=1: the kubectl compatibility test will skip");
    } else {
        ensure_kubectl()?;
    }
    run(
        "cargo fmt --check",
        cargo().current_dir(root).args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo fmt --check (plugins)",
        cargo()
            .current_dir(root.join("plugins"))
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    library_without_emulator(root)?;
    run(
        "cargo test --workspace",
        cargo().current_dir(root).args(["test", "--workspace"]),
    )?;
    run(
        "cargo test (plugin logic, on the host)",
        cargo().current_dir(root).args([
            "test",
            "--manifest-path",
            "plugins/Cargo.toml",
            "--workspace",
            "--target-dir",
            "target/plugins-host",
        ]),
    )?;
    run(
        "cargo clippy --workspace --all-targets -- -D warnings",
        cargo()
            .current_dir(root)
            .args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    )
}

/// Packages the `kmsflow` library must not link without its `local-cloud` feature: the emulator
/// and what only the emulator needs (its HTTP server, its database, RSA with an open advisory,
/// certificate generation).
const EMULATOR_ONLY: &[&str] = &["kmsflow-localcloud", "axum", "axum-server", "rusqlite", "rsa", "rcgen"];

/// `kmsflow` as an embedder takes it (`default-features = false`): its normal dependency tree holds
/// none of [`EMULATOR_ONLY`], and the library, the CLI built without the emulator and their unit
/// tests compile and lint clean (a `#[cfg]` slip shows up only in that build).
fn library_without_emulator(root: &Path) -> Result<(), String> {
    let what = "cargo tree -p kmsflow --no-default-features -e normal";
    eprintln!("xtask: {what}");
    let out = cargo()
        .current_dir(root)
        .args([
            "tree",
            "-p",
            "kmsflow",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let mut linked: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| EMULATOR_ONLY.contains(name))
        .collect();
    linked.sort_unstable();
    linked.dedup();
    if tree.lines().count() < 2 {
        return Err(format!("{what} printed no dependencies:\n{tree}"));
    }
    if !linked.is_empty() {
        return Err(format!(
            "the kmsflow library without its `local-cloud` feature links {}; only the emulator may use them",
            linked.join(", ")
        ));
    }
    run(
        "cargo clippy -p kmsflow --no-default-features --all-targets -- -D warnings",
        cargo().current_dir(root).args([
            "clippy",
            "-p",
            "kmsflow",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )
}

fn quickstart(root: &Path) -> Result<(), String> {
    run(
        "kmsflow quickstart (workflows/quickstart.toml on a fresh local cloud)",
        cargo()
            .current_dir(root)
            .args(["run", "--quiet", "-p", "kmsflow", "--", "quickstart"]),
    )
}
