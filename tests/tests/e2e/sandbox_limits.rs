//! A plugin that loops, exhausts memory or traps fails its step, not the runner: the next step
//! on the same runtime still works.

#![allow(clippy::unwrap_used)]

use kmsflow::{StepFailure, StepLimits, Target};
use kmsflow_tests::{runtime, step, test_plugin, Recorder};
use std::time::{Duration, Instant};

fn limits(timeout: Duration, memory: usize) -> StepLimits {
    StepLimits {
        timeout,
        memory_bytes: memory,
        ..StepLimits::default()
    }
}

async fn next_step_still_works(rt: &kmsflow::Runtime) {
    let ok = test_plugin(rt, "test-stdout").await;
    let report = rt
        .run_step(
            &ok,
            step("after", StepLimits::default()),
            &Target::offline(),
            &Recorder::default().options(),
        )
        .await;
    assert!(
        report.outcome.is_ok(),
        "the step after a failed one must run: {:?}",
        report.outcome
    );
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_step_timeout() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-loop").await;
    let started = Instant::now();
    let report = rt
        .run_step(
            &plugin,
            step("spin", limits(Duration::from_secs(2), 64 << 20)),
            &Target::offline(),
            &Recorder::default().options(),
        )
        .await;
    let elapsed = started.elapsed();
    assert_eq!(report.outcome, Err(StepFailure::Timeout(Duration::from_secs(2))));
    assert_eq!(report.outcome.unwrap_err().to_string(), "timed out after 2s");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(3),
        "stopped after {elapsed:?}"
    );
    next_step_still_works(&rt).await;
}

#[tokio::test]
async fn unbounded_memory_growth_hits_the_cap() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-oom").await;
    let report = rt
        .run_step(
            &plugin,
            step("hungry", limits(Duration::from_secs(30), 64 << 20)),
            &Target::offline(),
            &Recorder::default().options(),
        )
        .await;
    let failure = report.outcome.unwrap_err();
    assert_eq!(failure, StepFailure::MemoryLimit(64 << 20));
    assert!(failure.to_string().contains("memory limit of 64.0 MiB"), "{failure}");
    next_step_still_works(&rt).await;
}

#[tokio::test]
async fn a_trap_fails_only_its_step_and_its_panic_reaches_the_log() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-trap").await;
    let recorder = Recorder::default();
    let report = rt
        .run_step(
            &plugin,
            step("trap", StepLimits::default()),
            &Target::offline(),
            &recorder.options(),
        )
        .await;
    match report.outcome {
        Err(StepFailure::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    let panicked = recorder.events().iter().any(|e| {
        matches!(e, kmsflow::Event::Log { source: kmsflow::LogSource::Stderr, message, .. } if message.contains("index out of bounds"))
    });
    assert!(panicked, "the guest's panic message should be in the step log");
    next_step_still_works(&rt).await;
}

/// The probe gets real targets — a file with content, its directory, a path the test itself can
/// write, a port listening on 127.0.0.1 — so each refusal is the sandbox's denial: no preopened
/// directory (`ENOENT` for a file that exists) and no network (`access-denied` for a port that
/// listens), and nothing reached them.
#[tokio::test]
async fn wasi_is_deny_by_default() {
    use kmsflow::wit::types::{Param, Value};
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-sandbox").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, "host-only").unwrap();
    let escape = dir.path().join("escape");
    std::fs::write(dir.path().join("probe"), "").unwrap();
    std::fs::remove_file(dir.path().join("probe")).unwrap(); // the test can write there
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the port listens"
    );
    let _ = listener.accept().unwrap();
    listener.set_nonblocking(true).unwrap();

    let text = |name: &str, value: &std::path::Path| Param {
        name: name.into(),
        value: Value::Text(value.display().to_string()),
    };
    let mut probe = step("probe", StepLimits::default());
    probe.params = vec![
        text("read_file", &file),
        text("list_dir", dir.path()),
        text("write_file", &escape),
        Param {
            name: "port".into(),
            value: Value::Integer(i64::from(port)),
        },
    ];
    let report = rt
        .run_step(&plugin, probe, &Target::offline(), &Recorder::default().options())
        .await;
    let outputs = report.outcome.expect("the probe itself succeeds");
    let out = |key: &str| match kmsflow_tests::output(&outputs, key) {
        Some(Value::Text(t)) => t,
        other => panic!("{key}: {other:?}"),
    };
    for key in ["read_file", "list_dir", "write_file"] {
        assert_eq!(out(key), NO_PREOPEN, "{key}");
    }
    assert_eq!(out("connect"), ACCESS_DENIED);
    assert_eq!(kmsflow_tests::output(&outputs, "env_vars"), Some(Value::Integer(0)));
    assert_eq!(kmsflow_tests::output(&outputs, "args"), Some(Value::Integer(0)));
    assert!(!escape.exists(), "nothing was written");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "host-only");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("no connection may reach the host's port: {other:?}"),
    }
}

/// What a path outside every preopened directory gives a wasip2 guest: wasi-libc finds no preopen
/// to resolve it against and answers `ENOENT` (WASI errno 44) — for a file that exists.
const NO_PREOPEN: &str = "refused: No such file or directory (os error 44) [NotFound]";
/// What `connect` gives a guest the host allows no socket address: wasi:sockets `access-denied`,
/// `EACCES` (WASI errno 2) — for a port that listens.
const ACCESS_DENIED: &str = "refused: Permission denied (os error 2) [PermissionDenied]";
