//! The step log: guest stdout/stderr routed line by line into [`Event::Log`] records, and the
//! per-step budget every log line (stdout, stderr, the `log` capability) is counted against.
//!
//! A plugin's `println!` is as visible as its `log` calls, and as bounded: at most
//! [`LOG_LINES_MAX`] lines and [`LOG_BYTES_MAX`] bytes per step pass, lines are at most
//! [`LOG_LINE_MAX`] bytes, and the rest is counted and reported by one line at the end.

use crate::events::{Event, EventSink, LogLevel, LogSource};
use crate::limits::{LOG_BYTES_MAX, LOG_LINES_MAX, LOG_LINE_MAX};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Default)]
struct Counts {
    lines: usize,
    bytes: usize,
    dropped_lines: usize,
    dropped_bytes: usize,
}

/// One step's log budget, shared by its stdout, stderr and `log` capability: the first
/// [`LOG_LINES_MAX`] lines (and [`LOG_BYTES_MAX`] bytes) pass, later ones are only counted, and
/// [`LogBudget::finish`] reports the count in one line.
#[derive(Clone)]
pub(crate) struct LogBudget {
    step: String,
    next: EventSink,
    counts: Arc<Mutex<Counts>>,
}

impl LogBudget {
    pub(crate) fn new(step: &str, next: EventSink) -> Self {
        LogBudget {
            step: step.to_string(),
            next,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// An event sink for the step: its [`Event::Log`] lines pass while the budget lasts and are
    /// counted after; every other event passes unchanged.
    pub(crate) fn sink(&self) -> EventSink {
        let budget = self.clone();
        Arc::new(move |event: &Event| {
            if let Event::Log { step, message, .. } = event {
                if *step == budget.step && !budget.admit(message.len()) {
                    return;
                }
            }
            (budget.next)(event);
        })
    }

    /// Counts one line of `len` bytes; whether it may pass.
    fn admit(&self, len: usize) -> bool {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.dropped_lines > 0 || c.lines >= LOG_LINES_MAX || c.bytes.saturating_add(len) > LOG_BYTES_MAX {
            c.dropped_lines += 1;
            c.dropped_bytes = c.dropped_bytes.saturating_add(len);
            return false;
        }
        c.lines += 1;
        c.bytes += len;
        true
    }

    /// Emits one `N lines dropped` line if any line was dropped (once).
    pub(crate) fn finish(&self) {
        let dropped = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let d = (c.dropped_lines, c.dropped_bytes);
            c.dropped_lines = 0;
            c.dropped_bytes = 0;
            d
        };
        if dropped.0 > 0 {
            (self.next)(&Event::Log {
                step: self.step.clone(),
                level: LogLevel::Warn,
                source: LogSource::Plugin,
                message: format!(
                    "{} lines dropped ({}): over the step's log limit of {LOG_LINES_MAX} lines or {}",
                    dropped.0,
                    bytesize::ByteSize(dropped.1 as u64),
                    bytesize::ByteSize(LOG_BYTES_MAX as u64)
                ),
            });
        }
    }
}

struct Inner {
    step: String,
    source: LogSource,
    events: EventSink,
    pending: Vec<u8>,
}

impl Inner {
    fn emit(&mut self, bytes: &[u8]) {
        let message = String::from_utf8_lossy(bytes).trim_end_matches('\r').to_string();
        let level = if self.source == LogSource::Stderr {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        (self.events)(&Event::Log {
            step: self.step.clone(),
            level,
            source: self.source,
            message,
        });
    }

    fn write(&mut self, buf: &[u8]) {
        let mut rest = buf;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(pos);
            self.pending.extend_from_slice(line);
            let line = std::mem::take(&mut self.pending);
            for chunk in line.chunks(LOG_LINE_MAX) {
                self.emit(chunk);
            }
            if line.is_empty() {
                self.emit(&[]);
            }
            rest = &after[1..];
        }
        self.pending.extend_from_slice(rest);
        while self.pending.len() >= LOG_LINE_MAX {
            let chunk: Vec<u8> = self.pending.drain(..LOG_LINE_MAX).collect();
            self.emit(&chunk);
        }
    }

    fn flush_rest(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }
}

/// One guest output stream (stdout or stderr) of one step; `events` should be the step's
/// [`LogBudget::sink`].
#[derive(Clone)]
pub struct StepOutput(Arc<Mutex<Inner>>);

impl StepOutput {
    pub fn new(step: &str, source: LogSource, events: EventSink) -> Self {
        StepOutput(Arc::new(Mutex::new(Inner {
            step: step.to_string(),
            source,
            events,
            pending: Vec::new(),
        })))
    }

    /// Emits a final unterminated line, if any.
    pub fn finish(&self) {
        if let Ok(mut inner) = self.0.lock() {
            inner.flush_rest();
        }
    }
}

impl IsTerminal for StepOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StepOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for StepOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.0.lock() {
            Ok(mut inner) => {
                inner.write(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Err(_) => Poll::Ready(Err(io::Error::other("step output poisoned"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture() -> (LogBudget, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = Arc::clone(&lines);
        let sink: EventSink = Arc::new(move |e| {
            if let Event::Log { message, .. } = e {
                sink_lines.lock().unwrap().push(message.clone());
            }
        });
        (LogBudget::new("s", sink), lines)
    }

    #[test]
    fn splits_lines_and_flushes_the_tail() {
        let (budget, lines) = capture();
        let out = StepOutput::new("s", LogSource::Stdout, budget.sink());
        out.0.lock().unwrap().write(b"one\ntw");
        out.0.lock().unwrap().write(b"o\n\nthree");
        out.finish();
        budget.finish();
        assert_eq!(*lines.lock().unwrap(), vec!["one", "two", "", "three"]);
    }

    #[test]
    fn a_long_line_is_split_into_pieces_of_the_line_limit() {
        let (budget, lines) = capture();
        let out = StepOutput::new("s", LogSource::Stdout, budget.sink());
        let mut big = vec![b'x'; LOG_LINE_MAX * 2 + 3];
        big.push(b'\n');
        out.0.lock().unwrap().write(&big);
        out.finish();
        let lens: Vec<usize> = lines.lock().unwrap().iter().map(String::len).collect();
        assert_eq!(lens, vec![LOG_LINE_MAX, LOG_LINE_MAX, 3]);
    }

    #[test]
    fn lines_past_the_budget_are_dropped_and_counted_once_across_streams() {
        let (budget, lines) = capture();
        let out = StepOutput::new("s", LogSource::Stdout, budget.sink());
        let err = StepOutput::new("s", LogSource::Stderr, budget.sink());
        for _ in 0..LOG_LINES_MAX {
            out.0.lock().unwrap().write(b"a\n");
        }
        err.0.lock().unwrap().write(b"b\nc\n");
        out.0.lock().unwrap().write(b"d\n");
        out.finish();
        err.finish();
        budget.finish();
        budget.finish();
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), LOG_LINES_MAX + 1);
        assert!(lines[..LOG_LINES_MAX].iter().all(|l| l == "a"));
        assert!(
            lines[LOG_LINES_MAX].starts_with("3 lines dropped (3 B)"),
            "{}",
            lines[LOG_LINES_MAX]
        );
    }

    #[test]
    fn bytes_past_the_budget_are_dropped() {
        let (budget, lines) = capture();
        let out = StepOutput::new("s", LogSource::Stdout, budget.sink());
        let line = vec![b'x'; LOG_LINE_MAX];
        for _ in 0..(LOG_BYTES_MAX / LOG_LINE_MAX + 5) {
            out.0.lock().unwrap().write(&line);
        }
        out.finish();
        budget.finish();
        let lines = lines.lock().unwrap();
        let kept: usize = lines[..lines.len() - 1].iter().map(String::len).sum();
        assert_eq!(kept, LOG_BYTES_MAX);
        assert!(
            lines.last().unwrap().starts_with("5 lines dropped"),
            "{}",
            lines.last().unwrap()
        );
    }
}
