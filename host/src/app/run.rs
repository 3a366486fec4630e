//! Running a step for a shop: the quota check, parsing the input, the
//! plugin call (see `placement`), the decision log with what the decision
//! records, metrics, and durability before the answer.

use super::App;
use super::placement;
use super::quota::{QuotaExceeded, ShopMeter};
use super::registry::{ActivePlugin, PluginSource, Shop, now_ms};
use super::replay::state::Recorder;
use super::rollout::{self, Canary, OnFailure, analysis::Verdict};
use crate::error::CallError;
use crate::runtime::{CallContext, CallOutcome};
use crate::steps::{self, Recording, Step, StepInput};
use crate::storage::{Decision, DecisionError, Effects, Fallback, StorageError};
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
    /// The customer is in the step's canary: its version was called.
    pub canary: bool,
    /// The version called failed and `plugin` answered instead: which
    /// failed and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// The plugin call alone, microseconds (with a fallback, both calls).
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
        let decided = self.decide(input, raw_input, None).await?;
        let app = self.app;
        let id = decided.decision.id;
        if let Err(e) = app
            .storage
            .record_decision(&decided.decision, &decided.effects)
        {
            app.committer.write_failed(&e);
            return Err(StepError::storage(Some(id))(e));
        }
        if durable {
            app.durable().await.map_err(StepError::storage(Some(id)))?;
        }
        self.recorded(&decided);
        decided.answer()
    }

    /// After a decision is kept: a shadow of the step decides it again,
    /// off the request path.
    pub(super) fn recorded(&self, decided: &Decided) {
        if let Some(shadow) = self.shop.shadows.get(&self.step) {
            shadow.offer(&decided.decision);
        }
    }

    /// Call the step's plugin (with its canary and fallbacks) and make the
    /// decision-log entry and what it records, without writing them: the
    /// caller keeps them, alone ([`StepCall::run_parsed`]) or with an
    /// event's other effects (`events`). The call's clock is `clock` when
    /// given (a simulation's), else now.
    pub(super) async fn decide(
        &self,
        input: StepInput,
        raw_input: Box<RawValue>,
        clock: Option<i64>,
    ) -> Result<Decided, StepError> {
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
        let now = clock.unwrap_or_else(|| chrono::Utc::now().timestamp());
        // Each call's state reads are noted, for a faithful replay.
        let context = |plugin: &ActivePlugin| {
            let recorder = Arc::new(Recorder::new(app.storage.clone()));
            let ctx = CallContext {
                shop: shop.id.clone(),
                plugin: step.world().to_string(),
                config_json: plugin.config_json.clone(),
                now,
                state: recorder.clone(),
            };
            (ctx, recorder)
        };
        // A customer in the step's canary gets the canary's version.
        let canary = shop.canaries.get(&step);
        let in_canary = canary.is_some_and(|c| c.takes(&shop.id, step, input.customer()));
        let serving = match canary {
            Some(c) if in_canary => c.plugin.clone(),
            _ => active.clone(),
        };
        let quotas = &app.config.quotas;
        let permit = self.meter.admit(quotas, now_ms(), raw_input.get().len())?;
        let (ctx, mut recorded) = context(&serving);
        let (mut outcome, mut input) =
            placement::call(app.runtime.clone(), serving.clone(), ctx, input)
                .await
                .map_err(StepError::Task)?;
        permit.charge(quotas, now_ms(), outcome.duration);

        serving.count(&shop.id, step, outcome.result.is_ok(), outcome.duration);
        if let Err(e) = &outcome.result {
            metrics::counter!("kefu_call_errors_total", "shop" => shop.id.clone(), "step" => step.world(), "code" => e.code()).increment(1);
            tracing::warn!(shop = %shop.id, step = %step, version = serving.version, canary = in_canary, code = e.code(), error = %e, "plugin call failed");
        }
        if let Some(canary) = canary {
            self.analyse(canary, in_canary, &outcome);
        }

        // The serving version failed: the next in the step's chain answers.
        let mut answered_by = serving.clone();
        let mut fallback = None;
        if let Err(error) = &outcome.result
            && rollout::falls_back(error)
        {
            let first = Fallback {
                from_version: serving.version,
                code: error.code().into(),
                message: error.to_string(),
            };
            for next in self.fallbacks(in_canary, &active).await {
                if next.plugin.digest() == serving.plugin.digest()
                    && next.config_json == serving.config_json
                {
                    continue;
                }
                let (ctx, noted) = context(&next);
                let (again, back) = placement::call(app.runtime.clone(), next.clone(), ctx, input)
                    .await
                    .map_err(StepError::Task)?;
                input = back;
                next.count(&shop.id, step, again.result.is_ok(), again.duration);
                if again.result.is_ok() {
                    metrics::counter!("kefu_fallbacks_total", "shop" => shop.id.clone(), "step" => step.world(), "reason" => first.code.clone()).increment(1);
                    tracing::info!(shop = %shop.id, step = %step, from = serving.version, to = next.version, reason = %first.code, "answered by the fallback");
                    outcome.result = again.result;
                    outcome.logs.extend(again.logs);
                    outcome.duration += again.duration;
                    answered_by = next;
                    fallback = Some(first);
                    recorded = noted;
                    break;
                }
            }
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
            digest: answered_by.plugin.digest().to_string(),
            version: answered_by.version,
            at_ms,
            now,
            input: raw_input,
            output,
            error: outcome.result.as_ref().err().map(|e| DecisionError {
                code: e.code().into(),
                message: e.to_string(),
            }),
            duration_us: outcome.duration.as_micros() as u64,
            canary: in_canary,
            fallback,
            state_reads: recorded.take(),
            customer: input.customer().to_string(),
            order: input.order().map(str::to_string),
            logs: std::mem::take(&mut outcome.logs),
            event: None,
        };
        Ok(Decided {
            decision,
            effects,
            error: outcome.result.err(),
            source: answered_by.source.clone(),
        })
    }
}

/// A decision made and not yet kept: its log entry, what it records, and
/// the plugin's error when it failed.
pub(super) struct Decided {
    pub decision: Decision,
    pub effects: Effects,
    pub error: Option<CallError>,
    source: PluginSource,
}

impl Decided {
    /// The answer to the caller, once the decision is kept.
    pub fn answer(self) -> Result<StepAnswer, StepError> {
        let d = self.decision;
        match self.error {
            None => Ok(StepAnswer {
                decision_id: d.id,
                shop: d.shop,
                step: d.step,
                plugin: PluginInfo {
                    digest: d.digest,
                    version: d.version,
                    source: self.source,
                },
                canary: d.canary,
                fallback: d.fallback,
                duration_us: d.duration_us,
                output: d.output.expect("a successful call has an output"),
                revisits_planned: match &self.effects {
                    Effects::Revisits(r) => r.len(),
                    _ => 0,
                },
            }),
            Some(error) => Err(StepError::Plugin {
                error,
                decision_id: d.id,
            }),
        }
    }
}

impl StepCall<'_> {
    /// Count a call of a step with a canary on its side, and abort the
    /// canary off the request path when the analysis finds it regressed.
    fn analyse(&self, canary: &Arc<Canary>, in_canary: bool, outcome: &CallOutcome) {
        let share = outcome.result.as_ref().ok().map(|o| o.share());
        if !canary.stats.record(in_canary, share, outcome.duration) {
            return;
        }
        let thresholds = &self.shop.policy(self.step).analysis;
        if let Verdict::Regressed(evidence) = canary.stats.verdict(thresholds)
            && canary.stats.claim_end()
        {
            let deployer = self.app.deployer.clone();
            let (shop, step) = (self.shop.id.clone(), self.step);
            let started = canary.record.started_at_ms;
            tokio::task::spawn_blocking(move || {
                deployer.abort_on_evidence(&shop, step, started, evidence)
            });
        }
    }

    /// Who answers, in order, when the version called fails: for a
    /// canary customer the stable version, else the version before; then
    /// the bundled default, when the step says so.
    async fn fallbacks(
        &self,
        in_canary: bool,
        stable: &Arc<ActivePlugin>,
    ) -> Vec<Arc<ActivePlugin>> {
        let policy = self.shop.policy(self.step);
        let mut chain = Vec::new();
        if policy.on_failure == OnFailure::Error {
            return chain;
        }
        match in_canary {
            true => chain.push(stable.clone()),
            false => chain.extend(self.shop.previous.get(&self.step).cloned()),
        }
        if policy.on_failure == OnFailure::Default {
            let deployer = self.app.deployer.clone();
            let step = self.step;
            if let Ok(Some(bundled)) =
                tokio::task::spawn_blocking(move || deployer.bundled(step)).await
            {
                chain.push(bundled);
            }
        }
        chain
    }
}
