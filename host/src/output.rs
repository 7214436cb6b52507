//! Guest stdout/stderr, routed line by line into the step log as [`Event::Log`] records.
//!
//! A plugin's `println!` is as visible as its `log` calls, and bounded: at most
//! [`MAX_OUTPUT`] bytes per stream per step are kept, the rest is counted and dropped.

use crate::events::{Event, EventSink, LogLevel, LogSource};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of output kept per stream per step.
pub const MAX_OUTPUT: usize = 1 << 20;
/// A line longer than this is emitted in pieces.
const MAX_LINE: usize = 8 * 1024;

struct Inner {
    step: String,
    source: LogSource,
    events: EventSink,
    pending: Vec<u8>,
    kept: usize,
    dropped: usize,
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

    fn write(&mut self, mut buf: &[u8]) {
        let room = MAX_OUTPUT.saturating_sub(self.kept);
        if buf.len() > room {
            self.dropped += buf.len() - room;
            buf = &buf[..room];
        }
        self.kept += buf.len();
        self.pending.extend_from_slice(buf);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        while self.pending.len() >= MAX_LINE {
            let chunk: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            self.emit(&chunk);
        }
    }

    fn flush_rest(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
        if self.dropped > 0 {
            let note = format!(
                "[{} bytes of output dropped: over the {MAX_OUTPUT}-byte limit]",
                self.dropped
            );
            self.dropped = 0;
            self.emit(note.as_bytes());
        }
    }
}

/// One guest output stream (stdout or stderr) of one step.
#[derive(Clone)]
pub struct StepOutput(Arc<Mutex<Inner>>);

impl StepOutput {
    pub fn new(step: &str, source: LogSource, events: EventSink) -> Self {
        StepOutput(Arc::new(Mutex::new(Inner {
            step: step.to_string(),
            source,
            events,
            pending: Vec::new(),
            kept: 0,
            dropped: 0,
        })))
    }

    /// Emits a final unterminated line and the dropped-bytes note, if any.
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

    fn capture() -> (StepOutput, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = Arc::clone(&lines);
        let sink: EventSink = Arc::new(move |e| {
            if let Event::Log { message, .. } = e {
                sink_lines.lock().unwrap().push(message.clone());
            }
        });
        (StepOutput::new("s", LogSource::Stdout, sink), lines)
    }

    #[test]
    fn splits_lines_and_flushes_the_tail() {
        let (out, lines) = capture();
        out.0.lock().unwrap().write(b"one\ntw");
        out.0.lock().unwrap().write(b"o\nthree");
        out.finish();
        assert_eq!(*lines.lock().unwrap(), vec!["one", "two", "three"]);
    }

    #[test]
    fn output_over_the_limit_is_dropped_and_reported() {
        let (out, lines) = capture();
        let big = vec![b'x'; MAX_OUTPUT + 10];
        out.0.lock().unwrap().write(&big);
        out.finish();
        let lines = lines.lock().unwrap();
        assert!(lines.last().unwrap().contains("10 bytes of output dropped"));
        let kept: usize = lines[..lines.len() - 1].iter().map(String::len).sum();
        assert_eq!(kept, MAX_OUTPUT);
    }
}
