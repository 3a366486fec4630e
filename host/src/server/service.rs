//! Running a step for a shop: the plugin call (see `placement`), the
//! decision log, refund and revisit records, metrics, and durability
//! before the answer.

use super::App;
use super::error::ApiError;
use super::placement;
use super::quota::ShopMeter;
use super::shops::{Shop, now_ms};
use crate::runtime::CallContext;
use crate::step::{Step, StepInput, StepOutput};
use crate::storage::{Decision, DecisionError, RefundRecord, RevisitRecord};
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;

/// A successful step call, ready to be answered.
pub struct Answer {
    /// The response body, serialized once.
    pub body: Box<RawValue>,
}

/// The body of a successful step call.
#[derive(serde::Serialize)]
struct AnswerBody<'a> {
    decision_id: u64,
    shop: &'a str,
    step: Step,
    plugin: PluginInfo<'a>,
    duration_us: u64,
    output: &'a RawValue,
}

#[derive(serde::Serialize)]
struct PluginInfo<'a> {
    digest: &'a str,
    version: u64,
    source: &'a super::shops::PluginSource,
}

/// Run `step` for `shop` on `input` and answer once it is durable. On a
/// plugin failure the error is logged as a decision too, and its id is
/// returned with the error. `meter` is the shop's, for its quotas.
pub async fn run_step(
    app: &Arc<App>,
    shop: &Arc<Shop>,
    meter: &ShopMeter,
    step: Step,
    input: StepInput,
    raw_input: Box<RawValue>,
) -> Result<Answer, (ApiError, Option<u64>)> {
    run_step_with(app, shop, meter, step, input, raw_input, true).await
}

/// Like [`run_step`]; with `durable` false the caller must wait for
/// durability itself before answering (a batch waits once for all).
pub async fn run_step_with(
    app: &Arc<App>,
    shop: &Arc<Shop>,
    meter: &ShopMeter,
    step: Step,
    input: StepInput,
    raw_input: Box<RawValue>,
    durable: bool,
) -> Result<Answer, (ApiError, Option<u64>)> {
    let Some(active) = shop.steps.get(&step).cloned() else {
        let reason = shop.unavailable_reason(step).unwrap_or("not loaded");
        return Err((
            ApiError::PluginUnavailable {
                shop: shop.id.clone(),
                step: step.world().into(),
                reason: reason.into(),
            },
            None,
        ));
    };
    let now = chrono::Utc::now().timestamp();
    let ctx = CallContext {
        shop: shop.id.clone(),
        plugin: step.world().to_string(),
        config_json: active.config_json.clone(),
        now,
        state: app.storage.clone(),
    };
    let permit = meter
        .admit(&app.quotas, now_ms(), raw_input.get().len())
        .map_err(|e| (ApiError::Quota(e), None))?;
    let (outcome, input) = placement::call(app.runtime.clone(), active.clone(), ctx, input)
        .await
        .map_err(|e| (e, None))?;
    permit.charge(&app.quotas, now_ms(), outcome.duration);

    active.count(&shop.id, step, outcome.result.is_ok(), outcome.duration);
    if let Err(e) = &outcome.result {
        metrics::counter!("kefu_call_errors_total", "shop" => shop.id.clone(), "step" => step.world(), "code" => e.code()).increment(1);
        tracing::warn!(shop = %shop.id, step = %step, code = e.code(), error = %e, "plugin call failed");
    }

    let storage = app.storage.clone();
    let id = storage.next_id().map_err(|e| (e.into(), None))?;
    let at_ms = now_ms();
    let output_json = match &outcome.result {
        Ok(o) => Some(
            serde_json::value::to_raw_value(o)
                .map_err(|e| (ApiError::Storage(e.to_string()), None))?,
        ),
        Err(_) => None,
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
        output: output_json,
        error: outcome.result.as_ref().err().map(|e| DecisionError {
            code: e.code().into(),
            message: e.to_string(),
        }),
        duration_us: outcome.duration.as_micros() as u64,
    };
    let records = (|| {
        storage.record_decision(&decision)?;
        if let (StepInput::RefundPolicy(req), Ok(StepOutput::RefundPolicy(dec))) =
            (&input, &outcome.result)
        {
            storage.put_refund(&RefundRecord {
                id,
                shop: shop.id.clone(),
                order_id: req.order.id.clone(),
                buyer_id: req.order.buyer_id.clone(),
                at_ms,
                reason: serde_json::to_value(req.reason).unwrap_or(Value::Null),
                kind: serde_json::to_value(req.kind).unwrap_or(Value::Null),
                requested: req.amount,
                decision: serde_json::to_value(dec).unwrap_or(Value::Null),
                decision_id: id,
            })?;
        }
        if let (StepInput::RevisitPlanner(req), Ok(StepOutput::RevisitPlanner(plan))) =
            (&input, &outcome.result)
        {
            // A do-not-contact customer's revisits are kept, cancelled.
            let status = if storage.is_do_not_contact(&shop.id, &req.customer.id)? {
                "cancelled"
            } else {
                "planned"
            };
            let cause = match &req.trigger {
                crate::types::RevisitTrigger::ComplaintResolved(c) => Some(c.cause.clone()),
                _ => None,
            };
            let records = plan
                .revisits
                .iter()
                .map(|r| {
                    Ok(RevisitRecord {
                        id: storage.next_id()?,
                        shop: shop.id.clone(),
                        customer_id: req.customer.id.clone(),
                        due_at: r.due_at,
                        channel: serde_json::to_value(r.channel).unwrap_or(Value::Null),
                        purpose: r.purpose.clone(),
                        message: r.message.clone(),
                        max_attempts: r.attempts.max_attempts,
                        retry_after_hours: r.attempts.retry_after_hours,
                        status: status.into(),
                        decision_id: id,
                        attempts_made: 0,
                        planned_at: now,
                        cause: cause.clone(),
                        outcomes: Vec::new(),
                    })
                })
                .collect::<Result<Vec<_>, crate::storage::StorageError>>()?;
            storage.put_revisits(&records)?;
        }
        Ok::<(), crate::storage::StorageError>(())
    })();
    records.map_err(|e| (e.into(), Some(id)))?;
    if durable {
        app.committer.durable().await.map_err(|e| (e, Some(id)))?;
    }

    match outcome.result {
        Ok(_) => {
            let body = AnswerBody {
                decision_id: id,
                shop: &shop.id,
                step,
                plugin: PluginInfo {
                    digest: active.plugin.digest(),
                    version: active.version,
                    source: &active.source,
                },
                duration_us: decision.duration_us,
                output: decision
                    .output
                    .as_deref()
                    .expect("a successful call has an output"),
            };
            let body = serde_json::value::to_raw_value(&body)
                .map_err(|e| (ApiError::Storage(e.to_string()), Some(id)))?;
            Ok(Answer { body })
        }
        Err(e) => Err((ApiError::Plugin(e), Some(id))),
    }
}
