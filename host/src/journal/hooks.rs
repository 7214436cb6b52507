//! The journal at the policy point: every capability call the grants allowed (with its
//! arguments, outcome, duration, retries and request ids) and every denial, written and synced
//! before the result reaches the plugin; plus step boundaries from the run's events.

use super::record::{CallError, Record};
use super::{now_ms, Journal};
use crate::capabilities::{Call, CallHooks, CallOutcome};
use crate::events::{Event, EventSink};
use crate::limits::CHECKPOINT_WRITTEN_MAX;
use crate::wit::types::{Param, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Journals a run's calls and steps into one [`Journal`]. A step's checkpoint records are
/// bounded: past [`CHECKPOINT_WRITTEN_MAX`] bytes of keys and values journaled for one step, a
/// further `put` or `remove` is refused (and fails the step).
#[derive(Debug, Clone)]
pub struct JournalHooks {
    journal: Arc<Journal>,
    checkpointed: Arc<Mutex<HashMap<String, u64>>>,
}

impl JournalHooks {
    pub fn new(journal: Arc<Journal>) -> Self {
        JournalHooks {
            journal,
            checkpointed: Arc::default(),
        }
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
        {
            let mut written = self.checkpointed.lock().unwrap_or_else(|p| p.into_inner());
            let total = written.entry(step.to_string()).or_default();
            let adding = (key.len() + value.map_or(0, str::len)) as u64;
            if total.saturating_add(adding) > CHECKPOINT_WRITTEN_MAX {
                return Err(format!(
                    "step `{step}` has journaled {} of checkpoint writes, the most a step may",
                    bytesize::ByteSize(CHECKPOINT_WRITTEN_MAX)
                ));
            }
            *total += adding;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_writes_past_the_per_step_cap_are_refused_and_not_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let hooks = JournalHooks::new(Arc::new(Journal::open(&path).unwrap()));
        // As if the step had already rewritten its checkpoint up to 10 bytes short of the cap.
        hooks
            .checkpointed
            .lock()
            .unwrap()
            .insert("s".into(), CHECKPOINT_WRITTEN_MAX - 10);
        hooks.checkpoint("s", "k", Some("12345678")).unwrap();
        let e = hooks.checkpoint("s", "k", Some("x")).unwrap_err();
        assert!(e.contains("has journaled 64.0 MiB of checkpoint writes"), "{e}");
        hooks.checkpoint("other", "k", Some("x")).unwrap();
        assert_eq!(
            Journal::read(&path).unwrap().len(),
            2,
            "the refused write left no record"
        );
    }
}
