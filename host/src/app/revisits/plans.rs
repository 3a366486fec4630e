//! Bulk revisit plans: the planner run for many customers at once (a
//! holiday or the shop's anniversary for a customer list), answered once
//! every plan is durable.

use crate::app::run::{StepError, parse};
use crate::app::{App, Shop};
use crate::steps::Step;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Largest batch of one bulk plan.
pub const MAX_BATCH: usize = 20_000;

/// One request's result in a bulk plan, in request order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanResult {
    /// The decision-log entry, if the call got that far.
    pub decision_id: Option<u64>,
    /// Why this request planned nothing (the others go on).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
}

/// What a bulk plan did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlansReport {
    pub shop: String,
    /// Revisits planned in all.
    pub planned: usize,
    pub results: Vec<PlanResult>,
}

impl App {
    /// Plan revisits for each of `requests` (revisit-planner inputs). A
    /// request that is not a valid input refuses the whole batch before any
    /// runs, naming it (`requests[i].field`); a plugin failure is reported
    /// for that request alone. `describe` turns a failure into its report (the
    /// transport's error format).
    pub async fn plan_revisits(
        &self,
        shop: Arc<Shop>,
        requests: Vec<Box<RawValue>>,
        describe: impl Fn(&StepError) -> serde_json::Value,
    ) -> Result<PlansReport, StepError> {
        if requests.len() > MAX_BATCH {
            return Err(StepError::InvalidField {
                path: "requests".into(),
                message: format!("at most {MAX_BATCH} requests per batch"),
            });
        }
        // Every request is checked before any runs: a batch refused for a
        // bad request has planned nothing.
        let inputs = requests
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                parse(Step::RevisitPlanner, raw.get().as_bytes()).map_err(|e| match e {
                    StepError::InvalidField { path, message } => StepError::InvalidField {
                        path: format!("requests[{i}].{path}"),
                        message,
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let call = self.step_call(shop.clone(), Step::RevisitPlanner)?;
        let mut results = Vec::with_capacity(inputs.len());
        let mut planned = 0;
        for (input, raw) in inputs {
            match call.run_parsed(input, raw, false).await {
                Ok(answer) => {
                    planned += answer.revisits_planned;
                    results.push(PlanResult {
                        decision_id: Some(answer.decision_id),
                        error: None,
                    });
                }
                Err(e) => results.push(PlanResult {
                    decision_id: e.decision_id(),
                    error: Some(describe(&e)),
                }),
            }
        }
        self.durable().await.map_err(|error| StepError::Storage {
            error,
            decision_id: None,
        })?;
        Ok(PlansReport {
            shop: shop.id.clone(),
            planned,
            results,
        })
    }
}
