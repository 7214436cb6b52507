//! `kmsflow:workflow/log`: step log lines and progress, as events and `tracing` records. Lines
//! are cut to [`LOG_LINE_MAX`] and count against the step's log budget; progress labels are cut
//! to [`PROGRESS_LABEL_MAX`].

use super::StepContext;
use crate::events::{Event, LogLevel, LogSource};
use crate::limits::{truncate, LOG_LINE_MAX, PROGRESS_LABEL_MAX};
use crate::wit::log::{self, Level};

impl log::Host for StepContext {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        // Cut here; the step's log budget (`output::LogBudget`) counts the line.
        // No `tracing` record here: the event is rendered (and budgeted) once, by the sink.
        let message = truncate(&message, LOG_LINE_MAX);
        (self.events)(&Event::Log {
            step: self.step.clone(),
            level,
            source: LogSource::Plugin,
            message,
        });
        Ok(())
    }

    async fn progress(&mut self, label: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        (self.events)(&Event::Progress {
            step: self.step.clone(),
            label: truncate(&label, PROGRESS_LABEL_MAX),
            done,
            total,
        });
        Ok(())
    }
}
