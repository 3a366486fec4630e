//! `POST /v1/shops/{shop}/{step}`: run one step of a shop's workflow.
//! Steps: greeting, order-confirmation, refund-decision, revisit-plan.

use super::shop_for;
use crate::server::App;
use crate::server::error::ApiError;
use crate::server::service::run_step;
use crate::server::shops::now_ms;
use crate::step::Step;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use std::sync::Arc;

/// The step an endpoint name stands for.
pub fn step_of(endpoint: &str) -> Option<Step> {
    match endpoint {
        "greeting" => Some(Step::Greeting),
        "order-confirmation" => Some(Step::OrderConfirmation),
        "refund-decision" => Some(Step::RefundPolicy),
        "revisit-plan" => Some(Step::RevisitPlanner),
        _ => None,
    }
}

pub async fn call(
    State(app): State<Arc<App>>,
    Path((shop_id, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let Some(step) = step_of(&endpoint) else {
        return ApiError::UnknownStep(endpoint).response(serde_json::json!({}));
    };
    let response = match handle(&app, &shop_id, step, &headers, body).await {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err((error, decision_id)) => {
            let extra = match decision_id {
                Some(id) => serde_json::json!({ "decision_id": id }),
                None => serde_json::json!({}),
            };
            error.response(extra)
        }
    };
    // The whole answer as the server sees it: checks, the plugin call, the
    // decision log and the wait for its flush (not the time in the kernel
    // or in hyper before the handler runs).
    app.answer_duration(step).record(started.elapsed());
    response
}

async fn handle(
    app: &Arc<App>,
    shop_id: &str,
    step: Step,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Box<RawValue>, (ApiError, Option<u64>)> {
    let (shop, _) = shop_for(app, headers, shop_id, false).map_err(|e| (e, None))?;
    // A shop over its quota is refused before its body is parsed: under a
    // flood of its requests, each refusal costs as little as it can.
    let meter = app.meter.shop(&shop.id);
    meter
        .check(&app.quotas, now_ms())
        .map_err(|e| (ApiError::Quota(e), None))?;
    let body = body.map_err(|e| {
        let error = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(app.max_body / 1024)
        } else {
            ApiError::BadRequest(e.body_text())
        };
        (error, None)
    })?;
    let input = step.parse_input(&body).map_err(|e| {
        // A syntax error is named as such; otherwise the field's path.
        let error = match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            Err(syntax) => ApiError::InvalidJson(syntax.to_string()),
            Ok(_) => ApiError::InvalidField {
                path: e.path,
                message: e.message,
            },
        };
        (error, None)
    })?;
    // Valid JSON is valid UTF-8: the decision log keeps the body as sent.
    let raw = String::from_utf8(body.to_vec())
        .ok()
        .and_then(|text| RawValue::from_string(text).ok())
        .ok_or_else(|| (ApiError::InvalidJson("body is not UTF-8 JSON".into()), None))?;
    run_step(app, &shop, &meter, step, input, raw)
        .await
        .map(|answer| answer.body)
}
