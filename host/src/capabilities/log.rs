//! `kmsflow:workflow/log`: step log lines and progress, as events and `tracing` records.

use super::StepContext;
use crate::events::{Event, LogLevel, LogSource};
use crate::wit::log::{self, Level};

/// Longest log line kept; longer ones are cut so a plugin cannot flood the journal.
const MAX_LINE: usize = 8 * 1024;

fn truncated(mut s: String) -> String {
    if s.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" …[truncated]");
    }
    s
}

impl log::Host for StepContext {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let message = truncated(message);
        tracing::debug!(step = %self.step, ?level, "{message}");
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
            label: truncated(label),
            done,
            total,
        });
        Ok(())
    }
}
