//! Compiled artifacts on disk: written paced ([`crate::files`]), so that
//! a deploy's tens of megabytes (a Python component compiles to ~35 MB)
//! never queue ahead of the decision log's fsync; read back into the
//! engine, checked.

use crate::files::{Keep, write_paced};
use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Write a compiled component's artifact; failures only cost a recompile
/// later, so they are logged, not returned.
pub fn store(component: &Component, path: &Path) {
    let result = component
        .serialize()
        .map_err(|e| e.to_string())
        .and_then(|bytes| write_paced(path, &bytes, Keep::Cache).map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write compiled artifact");
    }
}

/// A cached artifact, or `None` when it is missing or unusable (then the
/// caller recompiles and overwrites it).
pub fn load(engine: &Engine, path: &Path) -> Option<Component> {
    // Read, not mmap: a cache file truncated by someone else must not be
    // able to crash the host with SIGBUS.
    let bytes = std::fs::read(path).ok()?;
    // SAFETY: artifacts are only ever written by kefu (`store`, or a
    // compile worker of this executable) into the host's own cache
    // directory, named by the digest of the source and the engine's
    // compatibility fingerprint; wasmtime still checks the header.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => {
            // Its time of last use, for `CompileCache::sweep`.
            if let Ok(file) = std::fs::File::options().write(true).open(path) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
            Some(component)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled artifact");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}
