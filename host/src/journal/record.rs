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
    },
    RunFinished {
        ok: bool,
        at_ms: u64,
    },
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
