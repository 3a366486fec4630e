//! The `log` interface and the plugin's stdout and stderr: one bounded
//! log per call, returned with its outcome.

use crate::bindings::log;
use crate::runtime::output::CapturedOutput;
use serde::{Deserialize, Serialize};
use wasmtime::component::HasSelf;

/// Severity of a plugin log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// A line the plugin printed to stdout.
    Stdout,
    /// A line the plugin printed to stderr.
    Stderr,
}

/// One line of a plugin's log for a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// A call's log: lines up to a byte budget, then counted as dropped.
pub struct LogCtx {
    pub(crate) lines: Vec<LogLine>,
    budget: usize,
    room: usize,
    pub(crate) dropped: usize,
    pub(super) stdout: CapturedOutput,
    pub(super) stderr: CapturedOutput,
}

/// [`wasmtime::component::HasData`] marker for the `log` interface.
pub type LogData = HasSelf<LogCtx>;

impl LogCtx {
    /// An empty log of `budget` bytes (stdout and stderr have one each).
    pub fn new(budget: usize) -> Self {
        LogCtx {
            lines: Vec::new(),
            budget,
            room: budget,
            dropped: 0,
            stdout: CapturedOutput::new(budget),
            stderr: CapturedOutput::new(budget),
        }
    }

    /// Empty it for the next call of a reused instance.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.dropped = 0;
        self.room = self.budget;
        let _ = self.stdout.take();
        let _ = self.stderr.take();
    }

    /// Add a line, cut to the room left.
    pub fn push(&mut self, level: LogLevel, mut message: String) {
        if message.len() > self.room {
            self.dropped += message.len() - self.room;
            let mut cut = self.room;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if message.is_empty() {
            return;
        }
        self.room -= message.len();
        self.lines.push(LogLine { level, message });
    }

    /// Move captured stdout/stderr into the log, line by line. Each pipe
    /// has its own cap (the log budget), separate from log calls.
    pub fn collect_output(&mut self) {
        for (level, pipe) in [
            (LogLevel::Stdout, self.stdout.clone()),
            (LogLevel::Stderr, self.stderr.clone()),
        ] {
            let (text, dropped) = pipe.take();
            self.dropped += dropped;
            self.lines
                .extend(text.lines().filter(|l| !l.is_empty()).map(|l| LogLine {
                    level,
                    message: l.to_string(),
                }));
        }
    }
}

impl log::Host for LogCtx {
    fn write(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.push(level, message);
    }
}
