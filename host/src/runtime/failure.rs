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

/// Frames of one function in a row that make an out-of-bounds access a
/// stack overflow.
const RECURSION_FRAMES: usize = 32;

/// Whether the trap happened deep in a recursion: the shadow stack of a
/// Rust or C guest (where its arrays and other locals whose address is
/// taken live, in linear memory, growing down from its top) ran out below
/// address 0, which wasm reports as an out-of-bounds access, while
/// wasm's own call stack still had room.
fn deep_recursion(err: &wasmtime::Error) -> bool {
    let Some(trace) = err.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let mut run = 0;
    let mut last = None;
    for frame in trace.frames() {
        let this = (frame.module().name().map(str::to_owned), frame.func_index());
        run = if last.as_ref() == Some(&this) {
            run + 1
        } else {
            1
        };
        if run >= RECURSION_FRAMES {
            return true;
        }
        last = Some(this);
    }
    false
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
            Trap::MemoryOutOfBounds if deep_recursion(&err) => CallError::StackOverflow,
            other => CallError::Trap(other.to_string()),
        };
    }
    if let Some(e) = err.downcast_ref::<super::host::StateUnavailable>() {
        return CallError::Host(format!("the plugin's state could not be read: {e}"));
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return CallError::Host(format!("too many plugin instances at once: {err}"));
    }
    CallError::Trap(format!("{err:#}"))
}
