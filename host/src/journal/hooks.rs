//! The journal at the policy point: every capability call the grants allowed (with its
//! arguments, outcome, duration, retries and request ids) and every denial, written and synced
//! before the result reaches the plugin; plus step boundaries from the run's events.

use super::record::{CallError, Record};
use super::{now_ms, Journal};
use crate::capabilities::{Call, CallHooks, CallOutcome};
use crate::events::{Event, EventSink};
use crate::wit::types::{Param, Value};
use std::sync::Arc;

/// Journals a run's calls and steps into one [`Journal`].
#[derive(Debug, Clone)]
pub struct JournalHooks {
    journal: Arc<Journal>,
}

impl JournalHooks {
    pub fn new(journal: Arc<Journal>) -> Self {
        JournalHooks { journal }
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// An event sink that journals step boundaries, then forwards every event to `next`.
    pub fn events(&self, next: EventSink) -> EventSink {
        let journal = Arc::clone(&self.journal);
        Arc::new(move |event: &Event| {
            let record = match event {
                Event::StepStarted { step, plugin, sha256 } => Some(Record::StepStarted {
                    step: step.clone(),
                    plugin: plugin.clone(),
                    sha256: sha256.clone(),
                    at_ms: now_ms(),
                }),
                Event::StepFinished {
                    step,
                    ok,
                    duration,
                    reason,
                    outputs,
                } => Some(Record::StepFinished {
                    step: step.clone(),
                    ok: *ok,
                    duration_ms: duration.as_millis() as u64,
                    reason: reason.clone(),
                    outputs: outputs_json(outputs),
                }),
                Event::StepSkipped { step, condition } => Some(Record::StepSkipped {
                    step: step.clone(),
                    condition: condition.clone(),
                }),
                _ => None,
            };
            if let Some(record) = record {
                if let Err(e) = journal.append(record) {
                    tracing::error!("{e}");
                }
            }
            next(event);
        })
    }
}

/// Step outputs as the journal keeps them.
pub fn outputs_json(outputs: &[Param]) -> serde_json::Map<String, serde_json::Value> {
    outputs
        .iter()
        .map(|p| {
            let v = match &p.value {
                Value::Text(t) => serde_json::Value::from(t.clone()),
                Value::Integer(i) => serde_json::Value::from(*i),
                Value::Flag(b) => serde_json::Value::from(*b),
                Value::TextList(l) => serde_json::Value::from(l.clone()),
            };
            (p.name.clone(), v)
        })
        .collect()
}

/// The inverse of [`outputs_json`].
pub fn outputs_from_json(map: &serde_json::Map<String, serde_json::Value>) -> Vec<Param> {
    map.iter()
        .filter_map(|(name, v)| {
            let value = match v {
                serde_json::Value::String(s) => Value::Text(s.clone()),
                serde_json::Value::Bool(b) => Value::Flag(*b),
                serde_json::Value::Number(n) => Value::Integer(n.as_i64()?),
                serde_json::Value::Array(items) => Value::TextList(
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<_>>()?,
                ),
                _ => return None,
            };
            Some(Param {
                name: name.clone(),
                value,
            })
        })
        .collect()
}

impl CallHooks for JournalHooks {
    fn checkpoint(&self, step: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        self.journal
            .append(Record::Checkpoint {
                step: step.to_string(),
                key: key.to_string(),
                value: value.map(str::to_string),
            })
            .map_err(|e| e.to_string())
    }

    fn after(&self, step: &str, call: &Call<'_>, outcome: &CallOutcome<'_>) -> Result<(), String> {
        self.journal
            .append(Record::Call {
                step: step.to_string(),
                seq: outcome.seq,
                call: call.name.to_string(),
                resource: call.resource.map(ToString::to_string),
                write: call.writes(),
                args: call.args.clone(),
                ok: outcome.error.is_none() && !outcome.trapped,
                error: outcome.error.map(|e| CallError {
                    kind: e.kind.to_string(),
                    code: e.code.clone(),
                    message: e.message.clone(),
                }),
                duration_ms: outcome.duration.as_millis() as u64,
                requests: outcome.wire.requests,
                retries: outcome.wire.retries,
                retry_reasons: outcome.wire.retry_reasons.clone(),
                request_ids: outcome.wire.request_ids.clone(),
            })
            .map_err(|e| e.to_string())
    }

    fn denied(&self, step: &str, call: &Call<'_>) {
        let record = Record::CallDenied {
            step: step.to_string(),
            call: call.name.to_string(),
            action: call.actions_text(),
            // A refused (unparsable) id is recorded shortened, in `args`.
            resource: call
                .resource
                .map(ToString::to_string)
                .unwrap_or_else(|| call.args.clone()),
        };
        if let Err(e) = self.journal.append(record) {
            tracing::error!("{e}");
        }
    }
}
