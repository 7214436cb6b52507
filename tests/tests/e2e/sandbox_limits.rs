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

#[tokio::test]
async fn wasi_is_deny_by_default() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-sandbox").await;
    let report = rt
        .run_step(
            &plugin,
            step("probe", StepLimits::default()),
            &Target::offline(),
            &Recorder::default().options(),
        )
        .await;
    let outputs = report.outcome.expect("the probe itself succeeds");
    use kmsflow::wit::types::Value;
    for key in ["read_file", "list_dir", "write_file", "connect"] {
        match kmsflow_tests::output(&outputs, key) {
            Some(Value::Text(t)) => assert!(t.starts_with("refused"), "{key}: {t}"),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert_eq!(kmsflow_tests::output(&outputs, "env_vars"), Some(Value::Integer(0)));
    assert_eq!(kmsflow_tests::output(&outputs, "args"), Some(Value::Integer(0)));
    assert!(!std::path::Path::new("/tmp/kmsflow-sandbox-escape").exists());
}
