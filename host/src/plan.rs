//! `kmsflow plan`: validation is the run stopped before the first write. Every step runs against
//! the real target with a policy hook that refuses the first state-changing call; that call (name,
//! resource, arguments) is what the step would change. Steps that need the outputs of a step that
//! stopped cannot be planned further and say so.

use crate::capabilities::{Call, CallHooks};
use crate::pipeline::{Pipeline, Ref};
use crate::runtime::{PreparedStep, ResumeState, RunOptions, Runtime};
use crate::step::StepFailure;
use crate::target::Target;
use crate::wit::types::{Error as WitError, ErrorKind};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The error code a refused write carries, so plugins and the plan can tell it from a failure.
pub const PLAN_STOP: &str = "PlanStopsBeforeWrite";

/// What one step would do.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepPlan {
    pub step: String,
    pub plugin: String,
    /// The first change the step would make: `call resource args`; `None` if it made none.
    pub change: Option<String>,
    /// Why the step could not be planned (it failed before any write, or depends on a step
    /// that would change something first).
    pub blocked: Option<String>,
    /// Its `when` did not hold.
    pub skipped: bool,
}

#[derive(Default)]
struct StopAtFirstWrite {
    first: Mutex<Option<String>>,
}

impl CallHooks for StopAtFirstWrite {
    fn before(&self, _step: &str, call: &Call<'_>) -> Result<(), WitError> {
        if !call.writes() {
            return Ok(());
        }
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| {
            let resource = call.resource.map(ToString::to_string).unwrap_or_default();
            format!("{} {resource} {}", call.name, call.args)
        });
        Err(WitError {
            kind: ErrorKind::Precondition,
            code: PLAN_STOP.to_string(),
            message: format!(
                "plan: {} would change {}",
                call.name,
                call.resource
                    .map_or_else(|| "something".to_string(), ToString::to_string)
            ),
        })
    }
}

fn depends_on(step: &PreparedStep, stopped: &HashSet<String>) -> Option<String> {
    let mut refs = Vec::new();
    for p in &step.spec.with {
        refs.extend(crate::pipeline::template::refs(&p.value).unwrap_or_default());
    }
    if let Some((c, _)) = &step.spec.when {
        refs.extend(c.refs().unwrap_or_default());
    }
    refs.into_iter().find_map(|r| match r {
        Ref::Output { step, .. } if stopped.contains(&step) => Some(step),
        _ => None,
    })
}

/// Plans `prepared` against `target`, in order: each step sees the outputs of the earlier steps
/// that finished without changing anything.
pub async fn plan(
    runtime: &Runtime,
    pipeline: &Pipeline,
    prepared: Vec<PreparedStep>,
    target: &Target,
) -> Vec<StepPlan> {
    let mut out = Vec::new();
    let mut stopped: HashSet<String> = HashSet::new();
    let mut done = ResumeState::default();
    let mut earlier: Vec<PreparedStep> = Vec::new();
    for step in prepared {
        let id = step.spec.id.clone();
        let plugin = step.plugin.name.clone();
        if let Some(dep) = depends_on(&step, &stopped) {
            stopped.insert(id.clone());
            out.push(StepPlan {
                step: id,
                plugin,
                change: None,
                blocked: Some(format!(
                    "needs the outputs of `{dep}`, which would change something first"
                )),
                skipped: false,
            });
            continue;
        }
        let hooks = Arc::new(StopAtFirstWrite::default());
        let options = RunOptions {
            run_id: format!("plan-{}", crate::runtime::new_run_id()),
            hooks: hooks.clone(),
            resume: Some(Arc::new(done.clone())),
            ..RunOptions::default()
        };
        let mut steps: Vec<PreparedStep> = earlier
            .iter()
            .filter(|e| done.finished.contains_key(&e.spec.id))
            .cloned()
            .collect();
        steps.push(step.clone());
        let partial = Pipeline {
            steps: steps.iter().map(|s| s.spec.clone()).collect(),
            ..pipeline.clone()
        };
        let report = runtime.run_prepared(&partial, steps, target, &options).await;
        let change = hooks.first.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = report.steps.iter().find(|r| r.id == id);
        let skipped = result.is_some_and(|r| r.status == crate::runtime::StepStatus::Skipped);
        let blocked = match result.map(|r| &r.outcome) {
            Some(Err(StepFailure::Plugin(e))) if e.code == PLAN_STOP => None,
            Some(Err(e)) if change.is_none() => Some(e.to_string()),
            _ => None,
        };
        match (result.map(|r| &r.outcome), &change) {
            (Some(Ok(outputs)), None) => {
                done.finished.insert(id.clone(), outputs.clone());
            }
            _ => {
                stopped.insert(id.clone());
            }
        }
        earlier.push(step);
        out.push(StepPlan {
            step: id,
            plugin,
            change,
            blocked,
            skipped,
        });
    }
    out
}
