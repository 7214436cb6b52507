//! What a run reports while it happens. The CLI renders these as progress and log lines; an
//! embedding program receives them through an [`EventSink`].

use std::sync::Arc;
use std::time::Duration;

/// Severity of a step log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Where a step log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The plugin's `log` import.
    Plugin,
    /// The guest's WASI stdout.
    Stdout,
    /// The guest's WASI stderr.
    Stderr,
}

/// One observable moment of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StepStarted {
        step: String,
        plugin: String,
        sha256: String,
    },
    Log {
        step: String,
        level: LogLevel,
        source: LogSource,
        message: String,
    },
    Progress {
        step: String,
        label: String,
        done: u64,
        total: Option<u64>,
    },
    /// A capability call refused by the step's grants; it never left the host.
    CallDenied {
        step: String,
        call: String,
        action: String,
        resource: String,
    },
    /// A capability call that was performed (allowed by the grants), with its outcome.
    Call {
        step: String,
        call: String,
        resource: Option<String>,
        ok: bool,
        duration: Duration,
        /// Requests retried on the wire (throttling, 5xx, dropped connections).
        retries: u32,
    },
    StepFinished {
        step: String,
        ok: bool,
        duration: Duration,
        /// One line: why the step failed.
        reason: Option<String>,
        /// What the step returned (empty when it failed).
        outputs: Vec<crate::wit::types::Param>,
    },
    /// The step's `when` condition did not hold; it did not run.
    StepSkipped { step: String, condition: String },
    /// A resumed run found the step finished; its recorded outputs are used.
    StepResumed { step: String },
}

/// Receives events; called from the runtime's tasks, so it must be cheap and thread-safe.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink that drops everything.
pub fn discard() -> EventSink {
    Arc::new(|_| {})
}
