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

#[test]
fn the_check_key_pipeline_runs_and_reports_outputs() {
    let cache = tempfile::tempdir().unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/check-key.toml");
    let out = kmsflow(cache.path(), &["run", p.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        doc["steps"][0]["outputs"]["key_version"],
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    );
    assert_eq!(doc["steps"][0]["outputs"]["vault_name"], "kv-etcd01");
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
