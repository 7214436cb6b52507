//! The `kmsflow` binary as a user runs it: exit codes, one-line reasons, listings, JSON.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn kmsflow(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(args)
        .env("KMSFLOW_CACHE_DIR", cache)
        .env("KMSFLOW_LOCAL_STATE", cache.join("localcloud"))
        .output()
        .expect("kmsflow starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn plugin_path(name: &str) -> PathBuf {
    PathBuf::from(kmsflow::test_plugin(name).expect("test plugin built"))
}

fn sha_of(path: &Path) -> String {
    kmsflow::sha256_hex(&std::fs::read(path).expect("read wasm"))
}

/// Writes a one-step pipeline using test plugin `name` pinned by its hash.
fn pipeline(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let wasm = plugin_path(name);
    let toml = format!(
        "[pipeline]\nname = \"{name}\"\n\n[[steps]]\nid = \"{name}\"\nuses = \"{}\"\nsha256 = \"{}\"\n{extra}\n",
        wasm.display(),
        sha_of(&wasm)
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write pipeline");
    path
}

#[test]
fn plugins_list_shows_each_builtin_with_the_sha256_of_its_component() {
    let cache = tempfile::tempdir().unwrap();
    let out = kmsflow(cache.path(), &["plugins", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let built =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/wasm32-wasip2/release/validate_key_id.wasm");
    let line = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("validate-key-id "))
        .map(str::to_string)
        .expect("validate-key-id is listed");
    assert!(line.contains(&sha_of(&built)), "{line}");

    let json = kmsflow(cache.path(), &["plugins", "list", "--output", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "validate-key-id")
        .expect("validate-key-id in the JSON list");
    assert_eq!(entry["sha256"], sha_of(&built));
    assert!(list.as_array().unwrap().iter().any(|p| p["name"] == "rewrite-secrets"));
}

#[test]
fn plugins_describe_prints_parameters_outputs_and_grants() {
    let cache = tempfile::tempdir().unwrap();
    let out = kmsflow(cache.path(), &["plugins", "describe", "validate-key-id"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("key_id (string, required)"), "{stdout}");
    assert!(
        stdout.contains("dns_suffix (string, default \"vault.azure.net\")"),
        "{stdout}"
    );
    assert!(stdout.contains("key_version (string)"), "{stdout}");

    let deny = plugin_path("test-deny");
    let out = kmsflow(
        cache.path(),
        &["plugins", "describe", deny.to_str().unwrap(), "--output", "json"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["grants"][0]["action"], "read");
    assert_eq!(doc["params"][0]["name"], "outside");

    let missing = kmsflow(cache.path(), &["plugins", "describe", "no-such-plugin"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no built-in plugin named `no-such-plugin`"));
}

#[test]
fn an_infinite_loop_with_a_2s_timeout_fails_in_under_3s_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-loop", "timeout = \"2s\"");
    let started = Instant::now();
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("run r") && last.ends_with("failed: step `test-loop` timed out after 2s"),
        "{stdout}"
    );
}

#[test]
fn a_memory_hungry_plugin_with_a_64mib_cap_fails_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-oom", "[steps.limits]\nmemory = \"64MiB\"");
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["status"], "failed");
    let error = doc["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("exceeded its memory limit of 64.0 MiB"), "{error}");
    assert!(!error.contains('\n'));
}

#[test]
fn a_wrong_sha256_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin_path("test-stdout");
    let toml = format!(
        "[pipeline]\nname = \"pinned\"\n\n[[steps]]\nid = \"s\"\nuses = \"{}\"\nsha256 = \"{}\"\n",
        wasm.display(),
        "0".repeat(64)
    );
    let p = dir.path().join("pinned.toml");
    std::fs::write(&p, toml).unwrap();
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("pinned.toml:6:8:"), "{stderr}");
    assert!(stderr.contains(&format!("has SHA-256 {}", sha_of(&wasm))), "{stderr}");
    assert!(!text(&out.stdout).contains("run r"), "no run may start");
    assert!(!stderr.contains("hello from stdout"));
}

#[test]
fn malformed_pipelines_point_at_the_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"validate-key-id\"\nwhith = {}\n", "6:1: unknown field `whith`"),
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"nope\"\n", "5:8: no built-in plugin named `nope`"),
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"validate-key-id\"\n", "3:1: step `a` is missing required parameter `key_id`"),
        ("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"validate-key-id\"\n[steps.with]\nkey_id = \"k\"\nkeyid = \"k\"\n", "8:1: plugin `validate-key-id` has no parameter `keyid`"),
    ];
    for (toml, expected) in cases {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, toml).unwrap();
        let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("bad.toml:{expected}")),
            "expected `{expected}` in:\n{stderr}"
        );
    }
}

/// The shipped `check-key` with its default key id (the same check on a key the local cloud
/// minted: `local_cloud.rs`).
#[test]
fn the_check_key_pipeline_runs_offline_with_its_default_key_id() {
    let cache = tempfile::tempdir().unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    let out = kmsflow(
        cache.path(),
        &["run", p.to_str().unwrap(), "--target", "offline", "--output", "json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["status"], "succeeded", "{doc}");
}

#[test]
fn an_unversioned_key_id_fails_the_step_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("unversioned.toml");
    std::fs::write(
        &p,
        "[pipeline]\nname = \"x\"\n[[steps]]\nid = \"check\"\nuses = \"validate-key-id\"\n[steps.with]\nkey_id = \"https://kv1.vault.azure.net/keys/etcd\"\n",
    )
    .unwrap();
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout)
        .contains("failed: step `check` invalid: `https://kv1.vault.azure.net/keys/etcd` has no version"));
}

#[test]
fn run_reaches_the_local_cloud_by_default_and_nothing_with_target_offline() {
    let dir = tempfile::tempdir().unwrap();
    let sub = "/subscriptions/00000000-0000-0000-0000-000000000001";
    let extra = format!(
        "[steps.with]\noutside = \"{sub}/resourceGroups/other/providers/Microsoft.KeyVault/vaults/kv1\"\ninside = \"{sub}/resourceGroups/rg1/providers/Microsoft.ContainerService/managedClusters/aks1\"\n[[steps.grants]]\nscope = \"{sub}/resourceGroups/rg1\"\nactions = [\"read\"]"
    );
    let p = pipeline(dir.path(), "test-deny", &extra);
    let out = kmsflow(dir.path(), &["run", p.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        doc["steps"][0]["outputs"]["allowed"], "not-found:SubscriptionNotFound",
        "the call went to the local cloud over HTTPS"
    );
    assert_eq!(doc["steps"][0]["outputs"]["denied_code"], "GrantMissing");
    assert!(
        dir.path().join("localcloud/profile.json").is_file(),
        "the local cloud was started in-process in KMSFLOW_LOCAL_STATE"
    );

    let out = kmsflow(
        dir.path(),
        &["run", p.to_str().unwrap(), "--output", "json", "--target", "offline"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["steps"][0]["outputs"]["allowed"], "unavailable:NoBackend");
}

/// The README's main job: `kmsflow quickstart` ends with every secret current under KMS v2.
#[test]
fn quickstart_enables_migrates_rotates_and_switches_a_seeded_cluster() {
    let cache = tempfile::tempdir().unwrap();
    let out = kmsflow(cache.path(), &["quickstart", "--secrets", "60"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("60 secrets, KMS v2 — current: 60, stale: 0, plain: 0 (e.g. kms-v2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("aks-quickstart") && stdout.contains("Private"),
        "the status table: {stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// The compiled-code cache: only a private directory, only an entry tied to the pinned component.

/// `plugins describe PATH --output json` with the cache in `cache` (at -v): the plugin's own
/// name as its `describe()` reports it, and stderr.
fn describe_with_cache(cache: &Path, wasm: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "-v",
        "--cache-dir",
        cache.to_str().unwrap(),
        "plugins",
        "describe",
        wasm.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = kmsflow(cache, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    (doc["name"].as_str().unwrap_or_default().to_string(), text(&out.stderr))
}

/// Every compiled-code entry under `cache` (any engine subdirectory).
fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    let mut entries = Vec::new();
    for engine_dir in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(engine_dir.path()).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "cwasm") {
                entries.push(entry.path());
            }
        }
    }
    entries
}

/// The cache entry of the component at `wasm`.
fn entry_of(cache: &Path, wasm: &Path) -> PathBuf {
    let name = format!("{}.cwasm", sha_of(wasm));
    cache_entries(cache)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .unwrap_or_else(|| panic!("no cache entry {name} under {}", cache.display()))
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_swapped_cache_entry_is_recompiled_and_the_plugin_stays_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let a = plugin_path("test-deny");
    let b = plugin_path("test-stdout");
    assert_eq!(describe_with_cache(&cache, &a, &[]).0, "test-deny");
    assert_eq!(describe_with_cache(&cache, &b, &[]).0, "test-stdout");
    let entry_a = entry_of(&cache, &a);
    let entry_b = entry_of(&cache, &b);
    assert_eq!(mode_of(&cache), 0o700, "the cache directory is created private");
    assert_eq!(mode_of(entry_a.parent().unwrap()), 0o700);
    assert_eq!(mode_of(&entry_a), 0o600, "entries are written private");
    let good_a = std::fs::read(&entry_a).unwrap();

    // B's compiled code under A's name: loading it would make A behave as B.
    std::fs::copy(&entry_b, &entry_a).unwrap();
    let (name, stderr) = describe_with_cache(&cache, &a, &[]);
    assert_eq!(name, "test-deny", "A ran as itself, not as B\n{stderr}");
    assert!(stderr.contains("compiled from a different component"), "{stderr}");
    assert!(!stderr.contains("loaded compiled component from the cache"), "{stderr}");
    assert_eq!(std::fs::read(&entry_a).unwrap().len(), good_a.len(), "entry rewritten");

    // B's compiled bytes with A's header copied in front: the compiled hash does not match.
    let raw_b = std::fs::read(&entry_b).unwrap();
    let mut forged = good_a[..88].to_vec();
    forged.extend_from_slice(&raw_b[88..]);
    std::fs::write(&entry_a, &forged).unwrap();
    let (name, stderr) = describe_with_cache(&cache, &a, &[]);
    assert_eq!(name, "test-deny", "{stderr}");
    assert!(stderr.contains("rejected"), "{stderr}");

    // Garbage.
    std::fs::write(&entry_a, b"\x7fELF not a cache entry at all").unwrap();
    let (name, stderr) = describe_with_cache(&cache, &a, &[]);
    assert_eq!(name, "test-deny", "{stderr}");
    assert!(
        stderr.contains("not a kmsflow cache entry") || stderr.contains("shorter than its header"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&entry_a).unwrap().len(), good_a.len(), "entry rewritten");

    // A symlink to B's entry in the right place is not followed.
    std::fs::remove_file(&entry_a).unwrap();
    std::os::unix::fs::symlink(&entry_b, &entry_a).unwrap();
    let (name, stderr) = describe_with_cache(&cache, &a, &[]);
    assert_eq!(name, "test-deny", "{stderr}");
    assert!(stderr.contains("is not a regular file"), "{stderr}");
    assert!(
        std::fs::symlink_metadata(&entry_a).unwrap().file_type().is_file(),
        "replaced by a file"
    );

    // And the rewritten entry is used again.
    let (name, stderr) = describe_with_cache(&cache, &a, &[]);
    assert_eq!(name, "test-deny");
    assert!(stderr.contains("loaded compiled component from the cache"), "{stderr}");
}

#[test]
fn a_truncated_cache_entry_is_recompiled_and_rewritten_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let a = plugin_path("test-deny");
    describe_with_cache(&cache, &a, &[]);
    let entry = entry_of(&cache, &a);
    let whole = std::fs::metadata(&entry).unwrap().len();
    for keep in [whole / 2, 40] {
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, &bytes[..keep as usize]).unwrap();
        let (name, stderr) = describe_with_cache(&cache, &a, &[]);
        assert_eq!(name, "test-deny", "{stderr}");
        assert!(stderr.contains("rejected, recompiling"), "{stderr}");
        assert!(
            stderr.contains("truncated") || stderr.contains("shorter than its header"),
            "{stderr}"
        );
        assert_eq!(
            std::fs::metadata(&entry).unwrap().len(),
            whole,
            "rewritten with its full size"
        );
    }
    let (_, stderr) = describe_with_cache(&cache, &a, &[]);
    assert!(stderr.contains("loaded compiled component from the cache"), "{stderr}");
}

#[test]
fn a_cache_directory_others_can_write_is_neither_read_nor_written() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let a = plugin_path("test-deny");
    describe_with_cache(&cache, &a, &[]);
    let entry = entry_of(&cache, &a);
    let engine_dir = entry.parent().unwrap().to_path_buf();
    let before = std::fs::metadata(&entry).unwrap().modified().unwrap();

    // A valid entry in a group-writable directory: not loaded (someone else could have put it
    // there), not rewritten, and the warning says how to fix the directory.
    for (unsafe_dir, mode) in [(&cache, 0o770), (&cache, 0o707), (&engine_dir, 0o720)] {
        set_mode(unsafe_dir, mode);
        let (name, stderr) = describe_with_cache(&cache, &a, &[]);
        assert_eq!(name, "test-deny");
        assert!(
            stderr.contains("not using the compiled-plugin cache")
                && stderr.contains(&format!("chmod go-w {}", unsafe_dir.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("loaded compiled component from the cache"), "{stderr}");
        assert_eq!(
            std::fs::metadata(&entry).unwrap().modified().unwrap(),
            before,
            "not rewritten"
        );
        set_mode(unsafe_dir, 0o700);
    }

    // Nothing is written into an unsafe directory either.
    std::fs::remove_file(&entry).unwrap();
    set_mode(&cache, 0o775);
    let (_, stderr) = describe_with_cache(&cache, &a, &[]);
    assert!(stderr.contains("chmod go-w"), "{stderr}");
    assert!(cache_entries(&cache).is_empty(), "no entry written");
    set_mode(&cache, 0o700);

    // A symlinked cache directory is refused as well.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&cache, &link).unwrap();
    let (_, stderr) = describe_with_cache(&link, &a, &[]);
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert!(cache_entries(&cache).is_empty(), "no entry written");

    // Once private again, the cache works.
    describe_with_cache(&cache, &a, &[]);
    assert_eq!(cache_entries(&cache).len(), 1);
}

#[test]
fn no_cache_compiles_in_memory_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let a = plugin_path("test-deny");
    let (name, stderr) = describe_with_cache(&cache, &a, &["--no-cache"]);
    assert_eq!(name, "test-deny");
    assert!(!cache.exists(), "--no-cache created {}: {stderr}", cache.display());

    // Not even a valid entry is read.
    describe_with_cache(&cache, &a, &[]);
    assert_eq!(cache_entries(&cache).len(), 1);
    let (_, stderr) = describe_with_cache(&cache, &a, &["--no-cache"]);
    assert!(!stderr.contains("loaded compiled component from the cache"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Exit codes: one table (README, "The journal"), every command.

/// Like [`kmsflow`], with run journals kept in `dir/runs`.
fn kmsflow_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(args)
        .env("KMSFLOW_CACHE_DIR", dir.join("cache"))
        .env("KMSFLOW_LOCAL_STATE", dir.join("localcloud"))
        .env("KMSFLOW_RUNS_DIR", dir.join("runs"))
        .env("KMSFLOW_DATA_DIR", dir.join("data"))
        .output()
        .expect("kmsflow starts")
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A one-step pipeline using the component file `wasm`, pinned by its real hash.
fn pinned_pipeline(dir: &Path, file: &str, wasm: &Path) -> PathBuf {
    write(
        dir,
        file,
        format!(
            "[pipeline]\nname = \"x\"\n\n[[steps]]\nid = \"s\"\nuses = \"{}\"\nsha256 = \"{}\"\n",
            wasm.display(),
            sha_of(wasm)
        ),
    )
}

/// Exit 2, the message in stderr, and no run started (nothing sent).
fn assert_refused(out: &Output, expected: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected `{e}` in:\n{stderr}");
    }
    assert!(!text(&out.stdout).contains("run r"), "no run may start");
}

#[test]
fn exit_0_when_every_step_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    let out = kmsflow_in(dir.path(), &["run", p.to_str().unwrap(), "--target", "offline"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = kmsflow_in(dir.path(), &["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `validate` needs no values: every shipped workflow validates with no `--set`, naming its
/// unknowns; a literal that is wrong is still refused with its location; `run` still needs them.
#[test]
fn validate_checks_structure_without_values_and_run_still_needs_them() {
    let workflows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&workflows).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = kmsflow_in(dir.path(), &["validate", path.to_str().unwrap(), "--output", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", path.display(), text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["valid"], true);
        checked += 1;
    }
    assert!(checked >= 10, "{checked} shipped workflows");
    let rotate = workflows.join("rotate.toml");
    let out = kmsflow_in(dir.path(), &["validate", rotate.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("unknown until run") && stdout.contains("cluster"),
        "{stdout}"
    );
    // A literal is still checked: a wildcard scope through a variable is refused, located.
    let out = kmsflow_in(
        dir.path(),
        &[
            "validate",
            rotate.to_str().unwrap(),
            "--set",
            "resource-group=/subscriptions/*",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("rotate.toml:"), "{}", text(&out.stderr));
    // Declared formats: a vault name that breaks Key Vault's rules, a cluster parameter given a
    // vault's id — refused before anything runs, located.
    let out = kmsflow_in(
        dir.path(),
        &["validate", rotate.to_str().unwrap(), "--set", "vault-name=my_vault!!"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("rotate.toml:") && text(&out.stderr).contains("my_vault!!"));
    let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1";
    let out = kmsflow_in(
        dir.path(),
        &[
            "validate",
            rotate.to_str().unwrap(),
            "--set",
            &format!("cluster={vault}"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a cluster id"), "{}", text(&out.stderr));
    let bad = write(
        dir.path(),
        "bad-format.toml",
        format!(
            "[pipeline]\nname = \"bad\"\n\n[[steps]]\nid = \"r\"\nuses = \"rewrite-secrets\"\n[steps.with]\n\
             cluster = \"{vault}\"\n"
        ),
    );
    let out = kmsflow_in(dir.path(), &["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bad-format.toml:8:") && text(&out.stderr).contains("not a managed cluster id"),
        "{}",
        text(&out.stderr)
    );
    // A value given on the command line is named in the error.
    let out = kmsflow_in(dir.path(), &["validate", "migrate-v2", "--set", "target-version=v1.27"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("from --set target-version"),
        "{}",
        text(&out.stderr)
    );
    // `run` needs every value.
    let out = kmsflow_in(dir.path(), &["run", rotate.to_str().unwrap(), "--target", "offline"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is required and has no value"),
        "{}",
        text(&out.stderr)
    );
}

/// The shipped pipelines run by name from anywhere; an unknown name says where to look.
#[test]
fn shipped_pipelines_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let list = kmsflow_in(dir.path(), &["workflows", "list", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert!(
        names.contains(&"rotate") && names.contains(&"enable-private"),
        "{names:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["validate", "rotate", "--output", "json"])
        .current_dir(dir.path())
        .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
        .env("KMSFLOW_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["pipeline"], "rotate");
    let out = kmsflow_in(dir.path(), &["validate", "rotat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("kmsflow workflows list"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exit_1_when_a_step_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-trap", "");
    let out = kmsflow_in(dir.path(), &["run", p.to_str().unwrap(), "--target", "offline"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("failed: step `test-trap`"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn exit_2_for_a_core_module_given_as_a_plugin_with_a_correct_pin() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest valid core module: magic and version 1, no sections.
    let core = write(dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    let p = pinned_pipeline(dir.path(), "core.toml", &core);
    for command in ["run", "validate", "plan"] {
        let out = kmsflow_in(dir.path(), &[command, p.to_str().unwrap()]);
        assert_refused(&out, &["core.toml:6:8:", "core WebAssembly module, not a component"]);
    }
    let out = kmsflow_in(dir.path(), &["plugins", "describe", core.to_str().unwrap()]);
    assert_refused(&out, &["core WebAssembly module"]);
}

#[test]
fn exit_2_for_a_truncated_component_with_a_correct_pin() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(plugin_path("test-stdout")).unwrap();
    let cut = write(dir.path(), "cut.wasm", &whole[..whole.len() / 2]);
    let p = pinned_pipeline(dir.path(), "cut.toml", &cut);
    let out = kmsflow_in(dir.path(), &["run", p.to_str().unwrap()]);
    assert_refused(&out, &["cut.toml:6:8:", "not a valid WebAssembly component"]);
    assert!(!text(&out.stderr).contains("hello from stdout"));
    let out = kmsflow_in(dir.path(), &["plugins", "describe", cut.to_str().unwrap()]);
    assert_refused(&out, &["not a valid WebAssembly component"]);
}

#[test]
fn exit_2_for_a_bad_pipeline_an_unknown_grant_action_or_a_missing_plugin_file() {
    let dir = tempfile::tempdir().unwrap();
    let syntax = write(dir.path(), "syntax.toml", "[pipeline\nname = \"x\"\n");
    assert_refused(
        &kmsflow_in(dir.path(), &["run", syntax.to_str().unwrap()]),
        &["syntax.toml:1:"],
    );

    let action = pipeline(
        dir.path(),
        "test-stdout",
        "[[steps.grants]]\nscope = \"/subscriptions/00000000-0000-0000-0000-000000000001\"\nactions = [\"delete-everything\"]",
    );
    assert_refused(
        &kmsflow_in(dir.path(), &["run", action.to_str().unwrap()]),
        &["test-stdout.toml:", "unknown action `delete-everything`"],
    );

    let missing = dir.path().join("missing.wasm");
    assert_refused(
        &kmsflow_in(dir.path(), &["plugins", "describe", missing.to_str().unwrap()]),
        &["cannot read plugin"],
    );
    assert_refused(
        &kmsflow_in(dir.path(), &["run", "--no-such-flag", "x.toml"]),
        &["--no-such-flag"],
    );
}

/// Grants are resource ids, not patterns: `*` is refused, not taken as a literal segment.
#[test]
fn exit_2_for_a_wildcard_grant_scope() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "test-stdout",
        "[[steps.grants]]\nscope = \"/subscriptions/*\"\nactions = [\"read\"]",
    );
    let out = kmsflow_in(dir.path(), &["run", p.to_str().unwrap()]);
    assert_refused(&out, &["test-stdout.toml:", "/subscriptions/*"]);
    assert!(!text(&out.stderr).contains("hello from stdout"));
}

#[test]
fn exit_3_when_the_runs_directory_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-stdout", "");
    let not_a_dir = write(dir.path(), "runs", "a file where the runs directory should be");
    let out = kmsflow_in(
        dir.path(),
        &[
            "run",
            p.to_str().unwrap(),
            "--target",
            "offline",
            "--runs-dir",
            not_a_dir.to_str().unwrap(),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot create the run directory"), "{stderr}");
}

#[test]
fn exit_130_when_a_run_is_interrupted_by_ctrl_c() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-loop", "timeout = \"60s\"");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["run", p.to_str().unwrap(), "--target", "offline"])
        .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
        .env("KMSFLOW_RUNS_DIR", dir.path().join("runs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first stdout line is printed as the run starts, right before the step.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("run r"), "{line}");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; resume with: kmsflow resume r"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bounds (issue 11, class 5): files that are not regular files or too large are refused before
// they are read, and a plugin flooding the host with outputs, error text, log lines or checkpoint
// entries fails (or is cut) quickly, with the journal and stdout staying small.

/// Runs `kmsflow args…` and kills it if it has not finished within `limit` (a FIFO opened for
/// reading would block forever): the test then fails instead of hanging.
fn kmsflow_within(cache: &Path, args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(args)
        .env("KMSFLOW_CACHE_DIR", cache)
        .env("KMSFLOW_LOCAL_STATE", cache.join("localcloud"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kmsflow starts");
    let pid = child.id().to_string();
    // Drain stdout and stderr while waiting, so a chatty child never blocks on a full pipe.
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match wait.recv_timeout(limit) {
        Ok(out) => (out.expect("kmsflow ran"), started.elapsed()),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("kmsflow {args:?} still running after {limit:?}");
        }
    }
}

const QUICK: Duration = Duration::from_secs(20);

#[test]
fn uses_dev_zero_and_include_dev_zero_are_refused_quickly_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let uses = dir.path().join("uses.toml");
    std::fs::write(
        &uses,
        format!(
            "[pipeline]\nname = \"x\"\n\n[[steps]]\nid = \"s\"\nuses = \"/dev/zero\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let (out, took) = kmsflow_within(dir.path(), &["validate", uses.to_str().unwrap()], QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("uses.toml:6:8: /dev/zero: a character device, not a regular file"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let include = dir.path().join("include.toml");
    std::fs::write(
        &include,
        "include = [\"/dev/zero\"]\n[pipeline]\nname = \"x\"\n[[steps]]\nid = \"s\"\nuses = \"validate-key-id\"\n",
    )
    .unwrap();
    let (out, took) = kmsflow_within(dir.path(), &["validate", include.to_str().unwrap()], QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("include.toml:1:12: /dev/zero: a character device, not a regular file"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_2mib_pipeline_and_a_2mib_include_are_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Valid TOML all the way: only its size is wrong.
    let filler = "# padding\n".repeat((2 << 20) / 10);
    let big = dir.path().join("big.toml");
    std::fs::write(&big, format!("[pipeline]\nname = \"x\"\n{filler}")).unwrap();
    let (out, _) = kmsflow_within(dir.path(), &["validate", big.to_str().unwrap()], QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("big.toml: 2.0 MiB, over the 1.0 MiB limit for pipeline files"),
        "{stderr}"
    );

    let main = dir.path().join("main.toml");
    std::fs::write(
        &main,
        "[pipeline]\nname = \"x\"\ninclude = [\"big.toml\"]\n[[steps]]\nid = \"s\"\nuses = \"validate-key-id\"\n",
    )
    .unwrap();
    let (out, _) = kmsflow_within(dir.path(), &["validate", main.to_str().unwrap()], QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("main.toml:3:12: ") && stderr.contains("big.toml: 2.0 MiB, over the 1.0 MiB limit"),
        "{stderr}"
    );
}

#[test]
fn a_3gib_plugin_file_is_refused_without_being_read_or_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.wasm");
    // Sparse: 3 GiB long, no disk used. Reading or hashing it would take many seconds.
    std::fs::File::create(&huge).unwrap().set_len(3 << 30).unwrap();
    let p = dir.path().join("huge.toml");
    std::fs::write(
        &p,
        format!(
            "[pipeline]\nname = \"x\"\n[[steps]]\nid = \"s\"\nuses = \"huge.wasm\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let (out, took) = kmsflow_within(dir.path(), &["validate", p.to_str().unwrap()], QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("huge.toml:5:8: ")
            && stderr.contains("huge.wasm: 3.0 GiB, over the 64.0 MiB limit for plugin components"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let (out, took) = kmsflow_within(dir.path(), &["plugins", "describe", huge.to_str().unwrap()], QUICK);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("over the 64.0 MiB limit"));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_vars_file_that_is_a_fifo_or_dev_zero_and_a_config_that_is_dev_zero_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    let fifo = dir.path().join("vars.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (vars, what) in [(fifo.to_str().unwrap(), "a FIFO"), ("/dev/zero", "a character device")] {
        let (out, took) = kmsflow_within(dir.path(), &["validate", p.to_str().unwrap(), "--vars", vars], QUICK);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{vars}: the variables file is {what}, not a regular file")),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }

    let (out, _) = kmsflow_within(dir.path(), &["runs", "list", "--config", "/dev/zero"], QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/dev/zero: a character device, not a regular file"),
        "{stderr}"
    );
}

/// Runs test plugin `test-flood` in `mode` through the binary (offline, journal in `dir/runs`);
/// returns the output, the time it took and the journal's bytes.
fn flood(dir: &Path, mode: &str, count: i64, size: i64) -> (Output, Duration, Vec<u8>) {
    let p = pipeline(
        dir,
        "test-flood",
        &format!("[steps.with]\nmode = \"{mode}\"\ncount = {count}\nsize = {size}\n"),
    );
    let runs = dir.join("runs");
    let (out, took) = kmsflow_within(
        dir,
        &[
            "run",
            p.to_str().unwrap(),
            "--target",
            "offline",
            "--runs-dir",
            runs.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("journal.ndjson").is_file())
        .expect("a run directory");
    let journal = std::fs::read(run.join("journal.ndjson")).unwrap();
    std::fs::remove_dir_all(&runs).unwrap();
    (out, took, journal)
}

#[test]
fn a_flood_of_outputs_fails_the_step_and_none_reaches_stdout_or_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, count, size, reason) in [
        ("outputs-count", 100_000, 1, "returned 100000 outputs of "),
        ("outputs-bytes", 1, 32 << 20, "returned 1 outputs of 32.0 MiB in all"),
    ] {
        let (out, took, journal) = flood(dir.path(), mode, count, size);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{mode}: {stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains(reason) && stdout.contains("over the limit of 64 outputs and 64.0 KiB; none was kept"),
            "{mode}: {stdout}"
        );
        assert!(out.stdout.len() < 1024, "{mode}: {} bytes on stdout", out.stdout.len());
        assert!(journal.len() < 4096, "{mode}: a journal of {} bytes", journal.len());
        assert!(
            !String::from_utf8_lossy(&journal).contains("\"o99999\"")
                && !journal.windows(64).any(|w| w.iter().all(|b| *b == b'x'))
        );
        assert!(took < Duration::from_secs(60), "{mode}: took {took:?}");
    }
}

#[test]
fn a_10mib_error_message_is_cut_to_4kib_with_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (out, took, journal) = flood(dir.path(), "error-flood", 1, 10 << 20);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("failed: step `test-flood` internal (")
            && last.contains(&format!("… ({} bytes cut)): ", (10 << 20) - 128))
            && last.ends_with(&format!("… ({} bytes cut)", (10 << 20) - 4096)),
        "{}",
        &last[..last.len().min(300)]
    );
    assert!(out.stdout.len() < 8 << 10, "{} bytes on stdout", out.stdout.len());
    assert!(journal.len() < 16 << 10, "a journal of {} bytes", journal.len());
    assert!(String::from_utf8_lossy(&journal).contains("bytes cut)"));
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_log_flood_is_cut_at_10000_lines_and_reported_by_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (out, took, journal) = flood(dir.path(), "log-flood", 100_000, 100);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
    let logged = stderr
        .lines()
        .filter(|l| {
            l.starts_with("  test-flood [info] x")
                || l.starts_with("  test-flood [stdout] x")
                || l.starts_with("  test-flood [stderr] x")
        })
        .count();
    assert_eq!(logged, 10_000, "stdout, stderr and log.log share one budget");
    let dropped: Vec<&str> = stderr.lines().filter(|l| l.contains("lines dropped")).collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(
        dropped[0].contains("90000 lines dropped (") && dropped[0].contains("over the step's log limit of 10000 lines"),
        "{}",
        dropped[0]
    );
    assert!(stderr.len() < 2 << 20, "{} bytes on stderr", stderr.len());
    assert!(out.stdout.len() < 1024 && journal.len() < 4096);
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // Long lines: `log.log` cuts them, stdout/stderr split them; the byte budget holds either way.
    let (out, _, _) = flood(dir.path(), "log-flood", 30, 1 << 20);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.len() < (4 << 20) + (64 << 10),
        "{} bytes on stderr",
        stderr.len()
    );
    assert!(
        stderr.lines().all(|l| l.len() < (8 << 10) + 64),
        "no line over the line limit"
    );
    assert_eq!(stderr.lines().filter(|l| l.contains("lines dropped")).count(), 1);
}

#[test]
fn a_checkpoint_flood_is_refused_at_1024_keys_and_at_1mib() {
    let dir = tempfile::tempdir().unwrap();
    let (out, took, journal) = flood(dir.path(), "checkpoint-flood", 100_000, 10);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("invalid (CheckpointFull): put 1024 refused: a step's checkpoint holds at most 1024 keys"),
        "{stdout}"
    );
    let journal = text(&journal);
    assert_eq!(
        journal
            .lines()
            .filter(|l| l.contains("\"type\":\"checkpoint\""))
            .count(),
        1024
    );
    assert!(journal.len() < 1024 * 200, "a journal of {} bytes", journal.len());
    assert!(took < Duration::from_secs(60), "took {took:?}");

    let (out, _, journal) = flood(dir.path(), "checkpoint-flood", 100, 64 << 10);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("put 15 refused: a step's checkpoint holds at most 1048576 bytes of keys and values"),
        "{stdout}"
    );
    assert!(
        journal.len() < (1 << 20) + (64 << 10),
        "a journal of {} bytes",
        journal.len()
    );
}

// ---------------------------------------------------------------------------------------------
// `--output json`: one document on stdout for every command, failures included, with the README's
// exit codes; a closed stdout ends the process quietly with exit code 141.

/// The one JSON document on stdout (fails on none, on two, or on anything after it).
fn one_document(out: &Output) -> serde_json::Value {
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&out.stdout)));
    assert_eq!(docs.len(), 1, "exactly one document:\n{}", text(&out.stdout));
    docs.into_iter().next().unwrap()
}

/// `code`, `location` of the error document of a failed command, after checking its exit code.
fn json_error(out: &Output, exit: i32) -> (String, serde_json::Value) {
    assert_eq!(out.status.code(), Some(exit), "{}", text(&out.stderr));
    let doc = one_document(out);
    let error = &doc["error"];
    assert_eq!(error.as_object().map(|o| o.len()), Some(3), "{doc}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{doc}");
    (error["code"].as_str().unwrap().to_string(), error["location"].clone())
}

#[test]
fn json_failures_print_one_error_document_with_the_exit_code_of_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let json = ["--output", "json"];
    let with = |args: &[&str]| kmsflow_in(d, &[args, &json[..]].concat());

    let syntax = write(d, "syntax.toml", "[pipeline]\nname = \"x\"\n[[steps]]\nid = \n");
    for command in ["run", "validate", "plan"] {
        let (code, location) = json_error(&with(&[command, syntax.to_str().unwrap()]), 2);
        assert_eq!(code, "PipelineInvalid");
        let location = location.as_str().unwrap().to_string();
        assert!(location.starts_with(&format!("{}:4:", syntax.display())), "{location}");
    }
    let (code, location) = json_error(&with(&["validate", d.join("absent.toml").to_str().unwrap()]), 2);
    assert_eq!((code.as_str(), location), ("PipelineInvalid", serde_json::Value::Null));

    let core = write(d, "core.wasm", b"\0asm\x01\0\0\0");
    let (code, _) = json_error(&with(&["plugins", "describe", core.to_str().unwrap()]), 2);
    assert_eq!(code, "PluginInvalid");
    let (code, _) = json_error(&with(&["plugins", "describe", "no-such-plugin"]), 2);
    assert_eq!(code, "PluginUnknown");

    let ok = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    let (code, _) = json_error(&with(&["run", ok.to_str().unwrap(), "--target", "nowhere"]), 2);
    assert_eq!(code, "TargetUnknown");
    let (code, _) = json_error(&with(&["run", "--no-such-flag", "x.toml"]), 2);
    assert_eq!(code, "UsageInvalid");
    let (code, _) = json_error(&with(&["runs", "show", "r-none"]), 2);
    assert_eq!(code, "RunNotFound");

    let not_a_dir = write(d, "not-a-dir", "a file");
    let out = with(&[
        "run",
        ok.to_str().unwrap(),
        "--target",
        "offline",
        "--runs-dir",
        not_a_dir.to_str().unwrap(),
    ]);
    let (code, _) = json_error(&out, 3);
    assert_eq!(code, "JournalFailed", "{}", text(&out.stdout));

    std::fs::write(d.join("kmsflow.toml"), "default-target = \n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
        .args(["runs", "list", "--output", "json"])
        .current_dir(d)
        .env("KMSFLOW_RUNS_DIR", d.join("runs"))
        .output()
        .unwrap();
    let (code, location) = json_error(&out, 2);
    assert_eq!(code, "ConfigInvalid");
    assert_eq!(location, "kmsflow.toml:1:18");
}

#[test]
fn a_failed_run_prints_its_report_as_the_one_json_document_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "test-trap", "");
    let out = kmsflow_in(
        dir.path(),
        &["run", p.to_str().unwrap(), "--target", "offline", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = one_document(&out);
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(report["steps"][0]["status"], "failed", "{report}");
    assert!(report.get("error").is_none(), "{report}");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_with_exit_141() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    for args in [
        &["runs", "list", "--output", "json"][..],
        &["plugins", "list"],
        &["validate", ok.to_str().unwrap()],
        &["runs", "show", "r-none", "--output", "json"],
    ] {
        // A pipe whose reader is gone before the command writes: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_kmsflow"))
            .args(args)
            .env("KMSFLOW_CACHE_DIR", dir.path().join("cache"))
            .env("KMSFLOW_RUNS_DIR", dir.path().join("runs"))
            .env("RUST_BACKTRACE", "1")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: nothing on stderr, got:\n{stderr}");
    }
}
