//! What a journal line holds. Records are versioned (`"v": 1`) and separate from the runtime's
//! own types, so the runtime can change without making old journals unreadable.

use serde::{Deserialize, Serialize};

/// The current record version; readers accept this and older ones.
pub const VERSION: u32 = 1;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    RunStarted {
        run_id: String,
        pipeline: String,
        target: String,
        /// Milliseconds since the Unix epoch.
        at_ms: u64,
        /// The pipeline file (absolute), to load again on resume.
        #[serde(default)]
        pipeline_path: String,
        /// SHA-256 over the pipeline's files: a resume refuses a changed pipeline.
        #[serde(default)]
        pipeline_sha256: String,
        /// The variables' values, as JSON.
        #[serde(default)]
        vars: serde_json::Map<String, serde_json::Value>,
        /// `step id → plugin SHA-256`: a resume refuses a changed plugin.
        #[serde(default)]
        plugins: std::collections::BTreeMap<String, String>,
    },
    /// `kmsflow resume` took over the run.
    Resumed {
        at_ms: u64,
        allow_changed: bool,
    },
    StepStarted {
        step: String,
        plugin: String,
        sha256: String,
        at_ms: u64,
    },
    /// A capability call the grants allowed, and how it ended.
    Call {
        step: String,
        seq: u64,
        call: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
        /// Whether the call may change something (everything but `read` and grant-free calls).
        write: bool,
        /// The call's arguments (`Debug` text; the WIT cannot carry a secret value).
        args: String,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<CallError>,
        duration_ms: u64,
        requests: u32,
        retries: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        retry_reasons: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        request_ids: Vec<String>,
    },
    /// A call the grants refused; nothing was sent.
    CallDenied {
        step: String,
        call: String,
        action: String,
        resource: String,
    },
    StepFinished {
        step: String,
        ok: bool,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The step's outputs (plugin-chosen text, integers, flags, lists).
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        outputs: serde_json::Map<String, serde_json::Value>,
    },
    /// The step's `when` did not hold.
    StepSkipped {
        step: String,
        condition: String,
    },
    /// A checkpoint `put` (`value`) or `remove` (`None`), durable before the plugin goes on.
    Checkpoint {
        step: String,
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
    RunFinished {
        ok: bool,
        at_ms: u64,
    },
}

impl Record {
    /// Shortens the descriptive fields by about `excess` bytes (a call's arguments, resource and
    /// error, retry reasons and request ids, a denied resource, a failure reason, a skip
    /// condition), each cut with a `… (N bytes cut)` marker, largest first; `false` when none is
    /// left to shorten. Fields a resume reads (outputs, checkpoint entries, a run's start) are
    /// never touched.
    pub(crate) fn cut(&mut self, excess: usize) -> bool {
        /// Fields this short are left alone (a marker would not make them shorter).
        const KEEP: usize = 64;
        let longest = self.texts().iter().map(|t| t.len()).max().unwrap_or(0);
        // A long list of short items weighing more than any text: keep half, say how many went.
        if let Record::Call {
            retry_reasons,
            request_ids,
            ..
        } = self
        {
            let size = |l: &Vec<String>| l.iter().map(|i| i.len() + 3).sum::<usize>();
            let list = [retry_reasons, request_ids]
                .into_iter()
                .filter(|l| l.len() > 8)
                .max_by_key(|l| size(l));
            if let Some(list) = list.filter(|l| size(l) >= longest) {
                let cut = list.len() - list.len() / 2;
                list.truncate(list.len() / 2);
                list.push(format!("… ({cut} more cut)"));
                return true;
            }
        }
        let Some(text) = self
            .texts()
            .into_iter()
            .filter(|t| t.len() > KEEP)
            .max_by_key(|t| t.len())
        else {
            return false;
        };
        // The marker adds under 32 bytes; every byte cut removes at least one byte of JSON.
        let keep = text.len().saturating_sub(excess.saturating_add(32)).max(KEEP / 2);
        *text = crate::limits::truncate(text, keep);
        true
    }

    /// The descriptive text fields, list items included.
    fn texts(&mut self) -> Vec<&mut String> {
        let mut texts: Vec<&mut String> = Vec::new();
        match self {
            Record::Call {
                args,
                resource,
                error,
                retry_reasons,
                request_ids,
                ..
            } => {
                texts.push(args);
                texts.extend(resource.as_mut());
                if let Some(e) = error.as_mut() {
                    texts.push(&mut e.code);
                    texts.push(&mut e.message);
                }
                texts.extend(retry_reasons.iter_mut());
                texts.extend(request_ids.iter_mut());
            }
            Record::CallDenied {
                call, action, resource, ..
            } => {
                texts.push(call);
                texts.push(action);
                texts.push(resource);
            }
            Record::StepFinished { reason, .. } => texts.extend(reason.as_mut()),
            Record::StepSkipped { condition, .. } => texts.push(condition),
            Record::RunStarted { .. }
            | Record::Resumed { .. }
            | Record::StepStarted { .. }
            | Record::Checkpoint { .. }
            | Record::RunFinished { .. } => {}
        }
        texts
    }
}

/// The WIT error of a failed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    pub kind: String,
    pub code: String,
    pub message: String,
}

/// A record with its version, as written on one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub record: Record,
}
