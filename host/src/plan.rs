//! `kmsflow plan`: validation is the run stopped before the first write. Every step runs against
//! the real target with a policy hook that refuses the first state-changing call; that call (name,
//! resource, arguments) is what the step would change. A step that needs an output only a write
//! would produce is not run: its parameters are listed, those values "known after apply" (as
//! Terraform says) and the rest known, and the plan goes on — such a step is not a failure.

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
    /// Why the step could not be planned: it failed before any write.
    pub blocked: Option<String>,
    /// Its `when` did not hold.
    pub skipped: bool,
    /// Its parameters whose values are known now (`name`, value as the pipeline gives it).
    pub known: Vec<(String, String)>,
    /// Its parameters (or its `when`) whose values only an earlier step's write would produce:
    /// `name ← steps.ID.outputs.NAME`. Non-empty means the step was not run by the plan.
    pub after_apply: Vec<String>,
}

/// Splits a step's parameters into known values and values known only after apply (those that
/// refer to the outputs of a step in `stopped`).
fn values(step: &PreparedStep, stopped: &HashSet<String>) -> (Vec<(String, String)>, Vec<String>) {
    let mut known = Vec::new();
    let mut after = Vec::new();
    let unknown_refs = |refs: Vec<Ref>| -> Vec<String> {
        refs.into_iter()
            .filter_map(|r| match r {
                Ref::Output { step, output } if stopped.contains(&step) => {
                    Some(format!("steps.{step}.outputs.{output}"))
                }
                _ => None,
            })
            .collect()
    };
    for p in &step.spec.with {
        let unknown = unknown_refs(crate::pipeline::template::refs(&p.value).unwrap_or_default());
        if unknown.is_empty() {
            let text = match &p.value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            known.push((p.name.clone(), text));
        } else {
            after.push(format!("{} ← {}", p.name, unknown.join(", ")));
        }
    }
    if let Some((c, _)) = &step.spec.when {
        let unknown = unknown_refs(c.refs().unwrap_or_default());
        if !unknown.is_empty() {
            after.push(format!("when ← {}", unknown.join(", ")));
        }
    }
    (known, after)
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
        let (known, after_apply) = values(&step, &stopped);
        if !after_apply.is_empty() {
            // Its own outputs are unknown too: later steps that use them wait for apply as well.
            stopped.insert(id.clone());
            out.push(StepPlan {
                step: id,
                plugin,
                change: None,
                blocked: None,
                skipped: false,
                known,
                after_apply,
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
            known,
            after_apply: Vec::new(),
        });
    }
    out
}
