//! `POST /v1/shops/{shop}/{step}`: run one step of a shop's workflow.
//! Steps: greeting, order-confirmation, refund-decision, revisit-plan (or
//! the step's world name).

use crate::app::{App, StepAnswer};
use crate::server::error::ApiError;
use crate::server::extract::{AppBody, ShopKey, StepParam};
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

pub async fn call(
    State(app): State<Arc<App>>,
    StepParam(step): StepParam,
    ShopKey(shop): ShopKey,
    body: Result<AppBody, ApiError>,
) -> Result<Json<StepAnswer>, ApiError> {
    let started = std::time::Instant::now();
    let answer = async {
        // Over quota: refused before the body is looked at.
        let call = app.step_call(shop, step)?;
        let AppBody(body, _) = body?;
        Ok(call.run(&body).await?)
    }
    .await;
    // The answer as the server sees it: checks, the plugin call, the
    // decision log and the wait for its flush.
    app.answer_duration(step).record(started.elapsed());
    // For the request's span, when it is exported (a no-op otherwise).
    let span = tracing::Span::current();
    span.record("step", step.world());
    if let Ok(answer) = &answer {
        span.record("shop", answer.shop.as_str());
        span.record("version", answer.plugin.version);
        span.record("decision_id", answer.decision_id);
    }
    answer.map(Json)
}
