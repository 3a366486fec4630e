//! `GET /v1/plugins` (admin): per shop and step, the active plugin, and
//! what failed to load and why.

use crate::app::{App, PluginsView};
use crate::server::extract::AdminAccess;
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

pub async fn list(State(app): State<Arc<App>>, _: AdminAccess) -> Json<PluginsView> {
    Json(app.plugins())
}
