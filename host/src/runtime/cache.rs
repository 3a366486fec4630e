//! Compiled components, keyed by the SHA-256 of their bytes, in memory and
//! on disk so that a restart does not recompile.

use super::artifact;
use super::functions::FunctionCache;
use crate::error::LoadError;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Magic of every WebAssembly binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer of a core module.
const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];

pub struct CompileCache {
    dir: Option<PathBuf>,
    /// Engine settings fingerprint: artifacts of another build or config
    /// are never mixed up with ours.
    fingerprint: String,
    memory: Mutex<HashMap<String, Component>>,
    compilations: AtomicU64,
    /// Where compiles run: at idle priority, a bounded number at once.
    lane: super::lane::Lane,
    /// Compiled functions the engine keeps (swept with the artifacts).
    functions: Option<Arc<FunctionCache>>,
}

/// Hex SHA-256 of a component's bytes: its identity everywhere in kefu.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CompileCache {
    pub fn new(
        engine: &Engine,
        dir: Option<PathBuf>,
        worker: Option<super::lane::Worker>,
        functions: Option<Arc<FunctionCache>>,
    ) -> Result<Self, LoadError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|source| LoadError::Io {
                path: dir.display().to_string(),
                message: source.to_string(),
            })?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache {
            dir,
            fingerprint: format!("{:016x}", hasher.finish()),
            memory: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
            lane: super::lane::Lane::new(worker, functions.clone()),
            functions,
        })
    }

    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// The compiled component for `bytes`, whose SHA-256 is `digest`.
    pub fn get_or_compile_known(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, LoadError> {
        sniff(bytes)?;
        if let Some(component) = self.lock().get(digest) {
            return Ok(component.clone());
        }
        let path = self.artifact_path(digest);
        let cached = path.as_deref().and_then(|p| artifact::load(engine, p));
        let component = match cached {
            Some(component) => component,
            None => self.compile(engine, bytes, path.as_deref())?,
        };
        self.lock().insert(digest.to_string(), component.clone());
        Ok(component)
    }

    /// Compiles running and waiting.
    pub fn compiles(&self) -> (usize, usize) {
        self.lane.counts()
    }

    /// Compile, and keep the artifact at `artifact` if given.
    fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        artifact: Option<&Path>,
    ) -> Result<Component, LoadError> {
        self.compilations.fetch_add(1, Ordering::Relaxed);
        self.lane.compile(engine, bytes, artifact)
    }

    /// Forget `digest`'s compiled component: in memory, and its artifact
    /// on disk. Plugins loaded from it keep working.
    pub fn evict(&self, digest: &str) {
        self.lock().remove(digest);
        if let Some(path) = self.artifact_path(digest) {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(%digest, "compiled artifact evicted"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot evict"),
            }
        }
    }

    /// Delete the artifacts on disk that no digest in `keep` names (or
    /// that another build or engine config made) and that were not used
    /// for `unused_for`: a cache directory another server shares keeps
    /// what that server uses. How many were deleted.
    pub fn sweep(&self, keep: &std::collections::HashSet<String>, unused_for: Duration) -> usize {
        if let Some(functions) = &self.functions {
            functions.sweep(unused_for);
        }
        let Some(dir) = &self.dir else { return 0 };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut deleted = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // An artifact a compile killed mid-write left a part of.
            if crate::files::is_leftover(&name) && std::fs::remove_file(entry.path()).is_ok() {
                deleted += 1;
                continue;
            }
            let Some(stem) = name.strip_suffix(".cwasm") else {
                continue;
            };
            let kept = stem
                .rsplit_once('-')
                .is_some_and(|(digest, fp)| fp == self.fingerprint && keep.contains(digest));
            let idle = super::functions::untouched_for(entry.metadata(), unused_for);
            if !kept && idle && std::fs::remove_file(entry.path()).is_ok() {
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, dir = %dir.display(), "unused compiled artifacts deleted");
        }
        deleted
    }

    fn artifact_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.fingerprint)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reject what is plainly not a component before compiling it.
fn sniff(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        let what = if bytes.is_empty() {
            "the file is empty".to_string()
        } else if bytes.len() < 8 && WASM_MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            format!("the file is truncated ({} bytes)", bytes.len())
        } else {
            "missing the `\\0asm` header".to_string()
        };
        return Err(LoadError::NotWasm(what));
    }
    if bytes[4..8] == CORE_MODULE {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_names_the_problem() {
        assert!(matches!(sniff(b""), Err(LoadError::NotWasm(m)) if m.contains("empty")));
        assert!(matches!(sniff(b"\0asm"), Err(LoadError::NotWasm(m)) if m.contains("truncated")));
        assert!(
            matches!(sniff(b"hello world"), Err(LoadError::NotWasm(m)) if m.contains("header"))
        );
        assert!(matches!(
            sniff(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(sniff(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
