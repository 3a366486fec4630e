//! The application's replays, as the transports call them: start one
//! (a recorded version, or an uploaded component, over the logged
//! decisions of a shop step), follow it, read its examples. The engine is
//! `replay`; `kefu replay` runs it on a data directory directly.

use super::replay::jobs::JobView;
use super::replay::shadow::{Shadow, ShadowView};
use super::replay::{self, Candidate, Filters, ReplayExample};
use super::{App, DeployError};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::steps::Step;
use crate::storage::{Actor, AuditAction, AuditEvent, Storage, VersionSource};

/// What a replay runs.
pub enum ReplaySource {
    /// A recorded version, with its own config.
    Version(u64),
    /// An uploaded component, with a config or (none) each decision's
    /// version's.
    Upload {
        component: Vec<u8>,
        config_json: Option<String>,
    },
}

impl App {
    /// Start a replay of `source` over `shop`'s logged `step` decisions
    /// (blocking: an upload compiles); it goes on in the background.
    pub fn start_replay(
        &self,
        shop: &str,
        step: Step,
        source: ReplaySource,
        filters: Filters,
        actor: Actor,
    ) -> Result<JobView, DeployError> {
        let runtime = self.background_runtime()?;
        let candidate = self.candidate(&runtime, shop, step, source)?;
        let what = format!(
            "replay of {} over {} decisions{}",
            candidate.label,
            step,
            describe(&filters)
        );
        audit(
            self.storage.as_ref(),
            shop,
            step,
            AuditAction::ReplayStarted,
            actor,
            &what,
        );
        let storage = self.storage.clone();
        let (shop_id, finished_storage) = (shop.to_string(), self.storage.clone());
        let job = self
            .replays
            .start(
                shop,
                step,
                candidate.label.clone(),
                move |progress| {
                    replay::run(
                        &runtime,
                        storage.as_ref(),
                        &shop_id,
                        step,
                        &candidate,
                        &filters,
                        progress,
                        Some(replay::jobs::spend),
                    )
                },
                move |job| {
                    let view = job.view();
                    let summary = match &view.report {
                        Some(r) => format!(
                            "replay {} of {}: {} replayed, {} changed, {} candidate errors",
                            job.id,
                            job.candidate,
                            r.replayed,
                            r.changed,
                            r.candidate_errors.values().sum::<u64>()
                        ),
                        None => format!(
                            "replay {} of {} failed: {}",
                            job.id,
                            job.candidate,
                            view.error.unwrap_or_default()
                        ),
                    };
                    audit(
                        finished_storage.as_ref(),
                        &job.shop,
                        job.step,
                        AuditAction::ReplayFinished,
                        actor,
                        &summary,
                    );
                },
            )
            .map_err(|e| {
                crate::storage::StorageError::Backend(format!("cannot start the replay: {e}"))
            })?;
        Ok(job.view())
    }

    /// The runtime replays and shadows run on: an engine of their own, so
    /// that their idle-class threads never hold a lock of the serving
    /// engine (its instance pool's) while the serving threads wait for it.
    /// Made on first use; compiled components come from the same disk
    /// cache.
    fn background_runtime(&self) -> Result<std::sync::Arc<Runtime>, DeployError> {
        if let Some(runtime) = self.background.get() {
            return Ok(runtime.clone());
        }
        let runtime = std::sync::Arc::new(Runtime::new(RuntimeConfig {
            cache_dir: Some(self.config.cache_dir()),
            limits: self.config.limits.clone(),
            compile_worker: self.config.compile_worker.clone(),
        })?);
        Ok(self.background.get_or_init(|| runtime).clone())
    }

    /// What a replay or shadow runs, loaded on `runtime` (blocking: it may
    /// compile).
    fn candidate(
        &self,
        runtime: &Runtime,
        shop: &str,
        step: Step,
        source: ReplaySource,
    ) -> Result<Candidate, DeployError> {
        if self.registry.get(shop).is_none() {
            return Err(DeployError::UnknownShop(shop.into()));
        }
        Ok(match source {
            ReplaySource::Version(version) => {
                let history = self.storage.versions(shop, step)?;
                let record = history.iter().find(|v| v.version == version).ok_or(
                    DeployError::UnknownVersion {
                        shop: shop.into(),
                        step,
                        version,
                    },
                )?;
                let bytes = self.storage.version_component(&record.digest)?;
                Candidate {
                    plugin: runtime.load(&bytes, step)?,
                    config_json: Some(record.config_json.clone()),
                    label: format!("version {version}"),
                }
            }
            ReplaySource::Upload {
                component,
                config_json,
            } => Candidate::upload(runtime, step, &component, config_json)?,
        })
    }

    /// Start a shadow of `source` on `shop`'s live `step` traffic
    /// (blocking: an upload compiles).
    pub fn start_shadow(
        &self,
        shop: &str,
        step: Step,
        source: ReplaySource,
        actor: Actor,
    ) -> Result<ShadowView, DeployError> {
        let runtime = self.background_runtime()?;
        let candidate = self.candidate(&runtime, shop, step, source)?;
        let configs = self
            .storage
            .versions(shop, step)?
            .into_iter()
            .map(|v| (v.version, v.config_json))
            .collect();
        let shadow = Shadow::start(runtime, shop, step, candidate, configs).map_err(|e| {
            crate::storage::StorageError::Backend(format!("cannot start the shadow: {e}"))
        })?;
        let view = shadow.view();
        self.deployer.start_shadow(shop, step, shadow, actor)?;
        Ok(view)
    }

    /// The shadow of `shop`'s `step` and what it found so far.
    pub fn shadow(&self, shop: &str, step: Step) -> Result<ShadowView, DeployError> {
        self.running_shadow(shop, step).map(|s| s.view())
    }

    /// One example decision of a running shadow, side by side.
    pub fn shadow_example(
        &self,
        shop: &str,
        step: Step,
        decision: u64,
    ) -> Result<Option<ReplayExample>, DeployError> {
        self.running_shadow(shop, step).map(|s| s.example(decision))
    }

    /// Stop the shadow of `shop`'s `step`; what it found.
    pub fn stop_shadow(
        &self,
        shop: &str,
        step: Step,
        actor: Actor,
    ) -> Result<ShadowView, DeployError> {
        self.deployer
            .stop_shadow(shop, step, actor)
            .map(|s| s.view())
    }

    fn running_shadow(
        &self,
        shop: &str,
        step: Step,
    ) -> Result<std::sync::Arc<Shadow>, DeployError> {
        let running = self
            .registry
            .get(shop)
            .ok_or_else(|| DeployError::UnknownShop(shop.into()))?;
        running
            .shadows
            .get(&step)
            .cloned()
            .ok_or_else(|| DeployError::NoShadow {
                shop: shop.into(),
                step,
            })
    }

    /// The replays of `shop`'s `step` this process keeps, newest first.
    pub fn replays(&self, shop: &str, step: Step) -> Vec<JobView> {
        self.replays
            .of(shop, step)
            .iter()
            .map(|j| j.view())
            .collect()
    }

    /// A replay of `shop`'s `step`, running or done.
    pub fn replay(&self, shop: &str, step: Step, id: u64) -> Option<JobView> {
        self.replays.get(shop, step, id).map(|j| j.view())
    }

    /// One example decision of a finished replay, side by side.
    pub fn replay_example(
        &self,
        shop: &str,
        step: Step,
        id: u64,
        decision: u64,
    ) -> Option<ReplayExample> {
        self.replays.get(shop, step, id)?.example(decision)
    }
}

fn describe(f: &Filters) -> String {
    let mut out = String::new();
    if let Some(s) = f.since_ms {
        out += &format!(" since {s}");
    }
    if let Some(u) = f.until_ms {
        out += &format!(" until {u}");
    }
    if let Some(l) = f.limit {
        out += &format!(" (at most {l})");
    }
    out
}

/// Note a replay in the audit; a failure is logged, never fatal.
fn audit(
    storage: &dyn Storage,
    shop: &str,
    step: Step,
    action: AuditAction,
    actor: Actor,
    reason: &str,
) {
    let written = storage.next_id().and_then(|id| {
        storage.append_audit(&AuditEvent {
            id,
            at_ms: super::now_ms(),
            shop: shop.into(),
            step: Some(step),
            action,
            version: None,
            digest: None,
            source: VersionSource::Api,
            actor,
            reason: reason.into(),
        })
    });
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write the replay audit");
    }
}

/// Why `kefu replay` could not replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayDirError {
    // `cause`, not `source`: the message says it once.
    #[error("cannot open the data directory {path}: {cause}{}", locked_hint(.cause))]
    Open {
        path: String,
        cause: crate::storage::StorageError,
    },
    #[error("candidate rejected: {0}")]
    Candidate(#[from] crate::error::LoadError),
    /// The candidate's config or the runtime could not be set up.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
}

/// What to do about a store a running server holds.
fn locked_hint(e: &crate::storage::StorageError) -> &'static str {
    match e {
        crate::storage::StorageError::Locked(_) => {
            " (replay through the running server's API, or on a copy)"
        }
        _ => "",
    }
}

/// Replay a component over `shop`'s logged `step` decisions in the data
/// directory `dir` (`kefu replay`): the store is opened, read and closed;
/// nothing in it changes.
#[allow(clippy::too_many_arguments)]
pub fn replay_dir(
    dir: &std::path::Path,
    runtime: &crate::runtime::Runtime,
    shop: &str,
    step: Step,
    component: &[u8],
    config_json: Option<String>,
    filters: &Filters,
    progress: &replay::Progress,
) -> Result<replay::ReplayReport, ReplayDirError> {
    let storage = crate::storage::SledStorage::open(dir).map_err(|cause| ReplayDirError::Open {
        path: dir.display().to_string(),
        cause,
    })?;
    let candidate = Candidate::upload(runtime, step, component, config_json)?;
    let outcome = replay::run(
        runtime, &storage, shop, step, &candidate, filters, progress, None,
    )?;
    Ok(outcome.report)
}
