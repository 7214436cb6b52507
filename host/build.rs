//! Builds every guest crate in `../plugins` for `wasm32-wasip2` and embeds the components.
//!
//! The pattern of wasmtime's `crates/test-programs/artifacts/build.rs`: one nested `cargo build`
//! of the whole guest workspace (so shared dependencies compile once), in its own target
//! directory (so it never waits on the outer build's lock), then a generated `plugins.rs` that
//! `include_bytes!`s the built-in plugins and lists the paths of the test-only ones.
//!
//! Built-ins are the crates directly under `plugins/` (except `sdk`); test plugins are the crates
//! under `plugins/testing/`. A crate's directory name must equal its package name.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ has a parent").to_path_buf();
    let plugins_dir = root.join("plugins");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    println!("cargo:rerun-if-changed={}", plugins_dir.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=KMSFLOW_SKIP_TARGET_INSTALL");

    ensure_target_installed();

    let builtin = crates_in(&plugins_dir, &["sdk", "testing", "target"]);
    let testing = crates_in(&plugins_dir.join("testing"), &[]);

    let target_dir = root.join("target").join("plugins");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(plugins_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--workspace");
    // The outer build's flags and wrappers (clippy, coverage) are for the host, not the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for the plugins");
    if !status.success() {
        panic!(
            "building the plugins in {} failed (see the output above)",
            plugins_dir.display()
        );
    }

    let wasm_dir = target_dir.join(TARGET).join("release");
    let mut src = String::new();
    src.push_str("/// Built-in plugins: `(name, component bytes)`, embedded at build time.\n");
    src.push_str("pub static BUILTIN: &[(&str, &[u8])] = &[\n");
    for name in &builtin {
        let file = copy_artifact(&wasm_dir, &out_dir, name);
        writeln!(src, "    ({name:?}, include_bytes!({:?})),", file.display()).expect("write to a String");
    }
    src.push_str("];\n\n");
    src.push_str("/// Test-only plugins: `(name, path of the component)`.\n");
    src.push_str("pub static TEST_PLUGINS: &[(&str, &str)] = &[\n");
    for name in &testing {
        let file = copy_artifact(&wasm_dir, &out_dir, name);
        writeln!(src, "    ({name:?}, {:?}),", file.display()).expect("write to a String");
    }
    src.push_str("];\n");
    fs::write(out_dir.join("plugins.rs"), src).expect("write plugins.rs");
}

/// Adds the wasm target when it is missing: `RUSTUP_AUTO_INSTALL=0` here means a
/// `rust-toolchain.toml` alone does not. `rustup target add` is idempotent.
fn ensure_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = &sysroot {
        if sysroot.join("lib/rustlib").join(TARGET).is_dir() {
            return;
        }
    }
    if env::var_os("KMSFLOW_SKIP_TARGET_INSTALL").is_some() {
        panic!("the {TARGET} target is not installed; run `rustup target add {TARGET}`");
    }
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            panic!("the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and build again")
        }
    }
}

/// Package names of the crates directly under `dir`, sorted, skipping `exclude`.
fn crates_in(dir: &Path, exclude: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return names;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if exclude.contains(&name.as_str()) || !path.join("Cargo.toml").is_file() {
            continue;
        }
        let manifest = fs::read_to_string(path.join("Cargo.toml")).expect("read Cargo.toml");
        let declared = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')));
        if declared != Some(name.as_str()) {
            panic!("plugins/{name}: the package name must equal the directory name");
        }
        names.push(name);
    }
    names.sort();
    names
}

fn copy_artifact(wasm_dir: &Path, out_dir: &Path, name: &str) -> PathBuf {
    let built = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
    let dest = out_dir.join(format!("{name}.wasm"));
    fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), dest.display()));
    dest
}
