//! Bounds seen by an embedder: a flooding plugin's outputs never reach an event, and its log lines
//! stop at the step's budget with one `N lines dropped` line, whatever stream they came through.

#![allow(clippy::unwrap_used)]

use kmsflow::limits::{LOG_LINES_MAX, STEP_OUTPUTS_MAX};
use kmsflow::wit::types::{Param, Value};
use kmsflow::{Event, StepFailure, StepLimits, Target};
use kmsflow_tests::{runtime, step, test_plugin, Recorder};
use std::time::{Duration, Instant};

fn flood(mode: &str, count: i64, size: i64) -> kmsflow::StepRun {
    let mut run = step("flood", StepLimits::default());
    run.params = vec![
        Param {
            name: "mode".into(),
            value: Value::Text(mode.into()),
        },
        Param {
            name: "count".into(),
            value: Value::Integer(count),
        },
        Param {
            name: "size".into(),
            value: Value::Integer(size),
        },
    ];
    run
}

#[tokio::test]
async fn too_many_outputs_fail_the_step_and_no_event_carries_them() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-flood").await;
    let recorder = Recorder::default();
    let report = rt
        .run_step(
            &plugin,
            flood("outputs-count", STEP_OUTPUTS_MAX as i64 + 1, 1),
            &Target::offline(),
            &recorder.options(),
        )
        .await;
    match report.outcome {
        Err(StepFailure::OutputsTooLarge { outputs, .. }) => assert_eq!(outputs, STEP_OUTPUTS_MAX + 1),
        other => panic!("expected OutputsTooLarge, got {other:?}"),
    }
    for e in recorder.events() {
        if let Event::StepFinished { outputs, ok, .. } = e {
            assert!(!ok && outputs.is_empty());
        }
    }
    // Exactly at the limit is fine.
    let report = rt
        .run_step(
            &plugin,
            flood("outputs-count", STEP_OUTPUTS_MAX as i64, 1),
            &Target::offline(),
            &Recorder::default().options(),
        )
        .await;
    assert_eq!(report.outcome.unwrap().len(), STEP_OUTPUTS_MAX);
}

#[tokio::test]
async fn a_log_flood_stops_at_the_budget_and_ends_with_one_dropped_line() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(&cache);
    let plugin = test_plugin(&rt, "test-flood").await;
    let recorder = Recorder::default();
    let started = Instant::now();
    let report = rt
        .run_step(
            &plugin,
            flood("log-flood", 3 * LOG_LINES_MAX as i64, 10),
            &Target::offline(),
            &recorder.options(),
        )
        .await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    assert!(started.elapsed() < Duration::from_secs(60));
    let logs: Vec<String> = recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Log { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), LOG_LINES_MAX + 1);
    assert!(logs[..LOG_LINES_MAX].iter().all(|l| l == "xxxxxxxxxx"));
    assert!(
        logs[LOG_LINES_MAX].starts_with(&format!("{} lines dropped", 2 * LOG_LINES_MAX)),
        "{}",
        logs[LOG_LINES_MAX]
    );

    // A 100 KB progress label and log line are cut; the stdout/stderr ones are split into lines.
    let recorder = Recorder::default();
    let report = rt
        .run_step(
            &plugin,
            flood("log-flood", 3, 100_000),
            &Target::offline(),
            &recorder.options(),
        )
        .await;
    assert!(report.outcome.is_ok());
    let events = recorder.events();
    let labels: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { label, .. } => Some(label),
            _ => None,
        })
        .collect();
    assert_eq!(labels.len(), 3);
    assert!(
        labels.iter().all(|l| l.len() < 300 && l.ends_with("(99744 bytes cut)")),
        "{labels:?}"
    );
    assert!(events.iter().all(|e| match e {
        Event::Log { message, .. } => message.len() <= kmsflow::limits::LOG_LINE_MAX + 32,
        _ => true,
    }));
}
