//! Running a step for a shop: the quota check, parsing the input, the
//! plugin call (see `placement`), the decision log with what the decision
//! records, metrics, and durability before the answer.

use super::App;
use super::placement;
use super::quota::{QuotaExceeded, ShopMeter};
use super::registry::{PluginSource, Shop, now_ms};
use crate::error::CallError;
use crate::runtime::CallContext;
use crate::steps::{self, Recording, Step, StepInput};
use crate::storage::{Decision, DecisionError, Effects, StorageError};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Why a step call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid field `{path}`: {message}")]
    InvalidField { path: String, message: String },
    #[error("shop `{shop}` has no working plugin for step `{step}`: {reason}")]
    Unavailable {
        shop: String,
        step: Step,
        reason: String,
    },
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// The plugin failed; the failure is in the decision log.
    #[error("{error}")]
    Plugin { error: CallError, decision_id: u64 },
    /// The decision could not be kept (or made durable).
    #[error("{error}")]
    Storage {
        error: StorageError,
        decision_id: Option<u64>,
    },
    /// The task running the call died (a bug, never a plugin's doing).
    #[error("host could not run the plugin: {0}")]
    Task(String),
}

impl StepError {
    /// The decision-log entry of a failed call, when one was written.
    pub fn decision_id(&self) -> Option<u64> {
        match self {
            StepError::Plugin { decision_id, .. } => Some(*decision_id),
            StepError::Storage { decision_id, .. } => *decision_id,
            _ => None,
        }
    }

    fn storage(decision_id: Option<u64>) -> impl FnOnce(StorageError) -> StepError {
        move |error| StepError::Storage { error, decision_id }
    }
}

/// The plugin that answered.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    /// SHA-256 of the component.
    pub digest: String,
    /// Version number within the shop's step (0 for none recorded).
    pub version: u64,
    pub source: PluginSource,
}

/// A step's answer: the decision and who made it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StepAnswer {
    /// The decision-log entry of this call.
    pub decision_id: u64,
    pub shop: String,
    #[schema(value_type = String)]
    pub step: Step,
    pub plugin: PluginInfo,
    /// The plugin call alone, microseconds.
    pub duration_us: u64,
    /// The step's output (the step world's answer type).
    #[schema(value_type = Object)]
    pub output: Box<RawValue>,
    /// Revisits this call planned (revisit-planner only).
    #[serde(skip)]
    pub revisits_planned: usize,
}

/// A call of one shop's step, admitted past the shop's early quota check.
pub struct StepCall<'a> {
    app: &'a App,
    shop: Arc<Shop>,
    step: Step,
    meter: ShopMeter,
}

impl App {
    /// Start a call of `shop`'s `step`. A shop over its quota is refused
    /// here, before its body is read or parsed: under a flood of its
    /// requests, each refusal costs as little as it can.
    pub fn step_call(&self, shop: Arc<Shop>, step: Step) -> Result<StepCall<'_>, StepError> {
        let meter = self.meter.shop(&shop.id);
        meter.check(&self.config.quotas, now_ms())?;
        Ok(StepCall {
            app: self,
            shop,
            step,
            meter,
        })
    }
}

/// Parse `body` as `step`'s input; the decision log keeps the body as sent.
pub(super) fn parse(step: Step, body: &[u8]) -> Result<(StepInput, Box<RawValue>), StepError> {
    let input = step.parse_input(body).map_err(|e| {
        // A syntax error is named as such; otherwise the field's path.
        match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Err(syntax) => StepError::InvalidJson(syntax.to_string()),
            Ok(_) => StepError::InvalidField {
                path: e.path,
                message: e.message,
            },
        }
    })?;
    // Valid JSON is valid UTF-8.
    let raw = String::from_utf8(body.to_vec())
        .ok()
        .and_then(|text| RawValue::from_string(text).ok())
        .ok_or_else(|| StepError::InvalidJson("body is not UTF-8 JSON".into()))?;
    Ok((input, raw))
}

impl StepCall<'_> {
    /// Run the step on `body` and answer once the decision is durable. A
    /// plugin failure is logged as a decision too; its id comes with the
    /// error.
    pub async fn run(self, body: &[u8]) -> Result<StepAnswer, StepError> {
        let (input, raw) = parse(self.step, body)?;
        self.run_parsed(input, raw, true).await
    }

    /// Like [`StepCall::run`] on a parsed input; with `durable` false the
    /// caller waits for durability itself (a batch waits once for all).
    pub(super) async fn run_parsed(
        &self,
        input: StepInput,
        raw_input: Box<RawValue>,
        durable: bool,
    ) -> Result<StepAnswer, StepError> {
        let (app, shop, step) = (self.app, &self.shop, self.step);
        let Some(active) = shop.steps.get(&step).cloned() else {
            let reason = shop.unavailable_reason(step).unwrap_or("not loaded");
            return Err(StepError::Unavailable {
                shop: shop.id.clone(),
                step,
                reason: reason.into(),
            });
        };
        // Storage known to be failing: refuse at once, before the plugin
        // runs (its state writes would fail too) and before any write
        // that could wait on a stuck store.
        if let Some(reason) = app.storage_failing() {
            return Err(StepError::storage(None)(StorageError::Failing(reason)));
        }
        let now = chrono::Utc::now().timestamp();
        let ctx = CallContext {
            shop: shop.id.clone(),
            plugin: step.world().to_string(),
            config_json: active.config_json.clone(),
            now,
            state: app.storage.clone(),
        };
        let quotas = &app.config.quotas;
        let permit = self.meter.admit(quotas, now_ms(), raw_input.get().len())?;
        let (outcome, input) = placement::call(app.runtime.clone(), active.clone(), ctx, input)
            .await
            .map_err(StepError::Task)?;
        permit.charge(quotas, now_ms(), outcome.duration);

        active.count(&shop.id, step, outcome.result.is_ok(), outcome.duration);
        if let Err(e) = &outcome.result {
            metrics::counter!("kefu_call_errors_total", "shop" => shop.id.clone(), "step" => step.world(), "code" => e.code()).increment(1);
            tracing::warn!(shop = %shop.id, step = %step, code = e.code(), error = %e, "plugin call failed");
        }

        let storage = &app.storage;
        let id = storage.next_id().map_err(StepError::storage(None))?;
        let at_ms = now_ms();
        let output =
            match &outcome.result {
                Ok(o) => Some(serde_json::value::to_raw_value(o).map_err(|e| {
                    StepError::storage(Some(id))(StorageError::Corrupt(e.to_string()))
                })?),
                Err(_) => None,
            };
        let effects = match &outcome.result {
            Ok(output) => {
                let at = Recording {
                    shop: &shop.id,
                    decision_id: id,
                    at_ms,
                    now,
                    ids: storage.as_ref(),
                    revisits: storage.as_ref(),
                };
                steps::effects(&at, &input, output).map_err(StepError::storage(Some(id)))?
            }
            Err(_) => Effects::None,
        };
        let decision = Decision {
            id,
            shop: shop.id.clone(),
            step,
            digest: active.plugin.digest().to_string(),
            version: active.version,
            at_ms,
            now,
            input: raw_input,
            output,
            error: outcome.result.as_ref().err().map(|e| DecisionError {
                code: e.code().into(),
                message: e.to_string(),
            }),
            duration_us: outcome.duration.as_micros() as u64,
        };
        if let Err(e) = storage.record_decision(&decision, &effects) {
            app.committer.write_failed(&e);
            return Err(StepError::storage(Some(id))(e));
        }
        if durable {
            app.durable().await.map_err(StepError::storage(Some(id)))?;
        }
        match outcome.result {
            Ok(_) => Ok(StepAnswer {
                decision_id: id,
                shop: shop.id.clone(),
                step,
                plugin: PluginInfo {
                    digest: active.plugin.digest().to_string(),
                    version: active.version,
                    source: active.source.clone(),
                },
                duration_us: decision.duration_us,
                output: decision.output.expect("a successful call has an output"),
                revisits_planned: match &effects {
                    Effects::Revisits(r) => r.len(),
                    _ => 0,
                },
            }),
            Err(error) => Err(StepError::Plugin {
                error,
                decision_id: id,
            }),
        }
    }
}
