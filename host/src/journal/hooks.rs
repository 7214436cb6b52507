//! The journal at the policy point: every capability call the grants allowed (with its
//! arguments, outcome, duration, retries and request ids) and every denial, written and synced
//! before the result reaches the plugin; plus step boundaries from the run's events.

use super::record::{CallError, Record};
use super::{now_ms, Journal};
use crate::capabilities::{Call, CallHooks, CallOutcome};
use crate::events::{Event, EventSink};
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
                } => Some(Record::StepFinished {
                    step: step.clone(),
                    ok: *ok,
                    duration_ms: duration.as_millis() as u64,
                    reason: reason.clone(),
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

impl CallHooks for JournalHooks {
    fn after(&self, step: &str, call: &Call<'_>, outcome: &CallOutcome<'_>) -> Result<(), String> {
        self.journal
            .append(Record::Call {
                step: step.to_string(),
                seq: outcome.seq,
                call: call.name.to_string(),
                resource: call.resource.map(str::to_string),
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
            action: call.action.map(|a| a.to_string()).unwrap_or_default(),
            resource: call.resource.unwrap_or_default().to_string(),
        };
        if let Err(e) = self.journal.append(record) {
            tracing::error!("{e}");
        }
    }
}
