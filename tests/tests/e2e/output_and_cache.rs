//! Guest stdout/stderr reach the step log; compiled components are cached on disk by hash.

#![allow(clippy::unwrap_used)]

use kmsflow::engine::CacheOutcome;
use kmsflow::{Event, LogSource, StepLimits, Target};
use kmsflow_tests::{runtime, step, test_plugin, Recorder};

#[tokio::test]
async fn guest_output_is_routed_to_the_step_log() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-stdout").await;
    let recorder = Recorder::default();
    let report = rt
        .run_step(
            &plugin,
            step("chatty", StepLimits::default()),
            &Target::offline(),
            &recorder.options(),
        )
        .await;
    assert!(report.outcome.is_ok());
    let lines: Vec<(LogSource, String)> = recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Log {
                step, source, message, ..
            } if step == "chatty" => Some((source, message)),
            _ => None,
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (LogSource::Stdout, "hello from stdout".to_string()),
            (LogSource::Stdout, "second line".to_string()),
            (LogSource::Stderr, "warning from stderr".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_second_runtime_loads_the_compiled_component_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let first = runtime(&cache);
    let cold = first.builtin("validate-key-id").await.unwrap();
    assert_eq!(cold.cache_outcome(), CacheOutcome::Compiled);

    let cached_files: Vec<_> = walk(cache.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy() == format!("{}.cwasm", cold.sha256()))
        })
        .collect();
    assert_eq!(cached_files.len(), 1, "one cache entry named by the SHA-256");

    let second = runtime(&cache);
    let warm = second.builtin("validate-key-id").await.unwrap();
    assert_eq!(warm.cache_outcome(), CacheOutcome::Cached);
    assert_eq!(warm.sha256(), cold.sha256());
    assert_eq!(warm.info(), cold.info());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
