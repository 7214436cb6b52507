//! Shared helpers for kmsflow's end-to-end tests.

use kmsflow::{Event, EventSink, Grants, Plugin, RunOptions, Runtime, StepLimits, StepRun};
use std::sync::{Arc, Mutex};

/// A runtime with a private component cache, so tests never share or pollute the user's cache.
pub fn runtime(cache: &tempfile::TempDir) -> Runtime {
    Runtime::builder()
        .cache_dir(cache.path())
        .build()
        .expect("the runtime starts")
}

/// Loads a test plugin (`plugins/testing/NAME`).
pub async fn test_plugin(runtime: &Runtime, name: &str) -> Arc<Plugin> {
    let path = kmsflow::test_plugin(name).unwrap_or_else(|| panic!("test plugin {name} was not built"));
    runtime
        .plugin_from_file(std::path::Path::new(path), None)
        .await
        .unwrap_or_else(|e| panic!("load {name}: {e}"))
}

/// A step with no grants, no parameters and the given limits.
pub fn step(id: &str, limits: StepLimits) -> StepRun {
    StepRun {
        id: id.to_string(),
        params: Vec::new(),
        grants: Grants::default(),
        limits,
    }
}

/// Records every event of a run.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub fn sink(&self) -> EventSink {
        let events = Arc::clone(&self.0);
        Arc::new(move |e: &Event| events.lock().expect("recorder lock").push(e.clone()))
    }

    pub fn options(&self) -> RunOptions {
        RunOptions {
            events: self.sink(),
            ..RunOptions::default()
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("recorder lock").clone()
    }
}

/// The text value of output `name`.
pub fn output(outputs: &[kmsflow::wit::types::Param], name: &str) -> Option<kmsflow::wit::types::Value> {
    outputs.iter().find(|p| p.name == name).map(|p| p.value.clone())
}
