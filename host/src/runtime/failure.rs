//! Why a call failed: a wasmtime error turned into the typed error the
//! host reports, with the plugin's stderr appended to a trap.

use super::LogLine;
use super::limits::MemoryExceeded;
use crate::error::CallError;
use std::time::Duration;
use wasmtime::Trap;

/// Append the plugin's stderr (its panic message, usually) to a trap.
pub(super) fn with_stderr(msg: String, logs: &[LogLine]) -> String {
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.level == super::LogLevel::Stderr)
        .map(|l| l.message.as_str())
        .collect();
    if stderr.is_empty() {
        return msg;
    }
    let mut text = stderr.join(" ");
    if text.len() > 500 {
        let mut cut = 500;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    format!("{msg}; plugin stderr: {text}")
}

/// Turn a wasmtime error into the typed error the host reports.
pub(super) fn classify(err: wasmtime::Error, timeout: Duration) -> CallError {
    if let Some(m) = err.downcast_ref::<MemoryExceeded>() {
        return CallError::MemoryLimit {
            limit: m.limit,
            requested: m.requested,
        };
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => CallError::Timeout(timeout),
            Trap::StackOverflow => CallError::StackOverflow,
            other => CallError::Trap(other.to_string()),
        };
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return CallError::Host(format!("too many plugin instances at once: {err}"));
    }
    CallError::Trap(format!("{err:#}"))
}
