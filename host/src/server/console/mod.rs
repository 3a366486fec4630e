//! The operator console at `/console`: server-rendered pages in Simplified
//! Chinese (English on a switch) that read without JavaScript, plain forms
//! for the actions, each action the same application call as the API's.
//! One file per page in `pages/`; sessions, texts, the page frame, charts
//! and the console's error type beside them. See docs/console.md.

mod charts;
mod error;
mod page;
mod pages;
mod session;
mod text;

use crate::app::App;
use crate::server::MAX_COMPONENT_BYTES;
use axum::extract::{DefaultBodyLimit, Form, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Extension, Router};
use error::ConsoleError;
use serde::de::DeserializeOwned;
use session::{LANG_COOKIE as LANG, Sessions, cookie};
use std::sync::Arc;
use text::Lang;

/// The console's routes, merged into the API's router.
pub fn router() -> Router<Arc<App>> {
    let sessions = Arc::new(Sessions::default());
    Router::new()
        .route("/console", get(pages::overview::show))
        .route("/console/", get(pages::overview::show))
        .route("/console/style.css", get(pages::style))
        .route(
            "/console/sign-in",
            get(pages::sign_in::form).post(pages::sign_in::submit),
        )
        .route("/console/sign-out", post(pages::sign_in::sign_out))
        .route("/console/lang/{code}", get(pages::sign_in::language))
        .route("/console/audit", get(pages::audit::show))
        .route("/console/shops/{shop}", get(pages::shop::show))
        .route("/console/shops/{shop}/steps/{step}", get(pages::step::show))
        .route(
            "/console/shops/{shop}/steps/{step}/deploy",
            post(pages::step::deploy).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/console/shops/{shop}/steps/{step}/rollback",
            post(pages::step::rollback),
        )
        .route(
            "/console/shops/{shop}/decisions",
            get(pages::decisions::list),
        )
        .route(
            "/console/shops/{shop}/decisions/{key}",
            get(pages::decisions::show),
        )
        .route("/console/shops/{shop}/timeline", get(pages::timeline::show))
        .route("/console/shops/{shop}/revisits", get(pages::revisits::show))
        .route(
            "/console/shops/{shop}/revisits/{id}/outcome",
            post(pages::revisits::outcome),
        )
        .route("/console/shops/{shop}/kpis", get(pages::kpis::show))
        .route(
            "/console/shops/{shop}/steps/{step}/replays",
            post(pages::replays::start),
        )
        .route(
            "/console/shops/{shop}/steps/{step}/replays/{id}",
            get(pages::replays::show),
        )
        .route(
            "/console/shops/{shop}/steps/{step}/replays/{id}/examples/{decision}",
            get(pages::replays::example),
        )
        .route(
            "/console/shops/{shop}/steps/{step}/shadow/examples/{decision}",
            get(pages::replays::shadow_example),
        )
        .layer(Extension(sessions))
}

/// The `{step}` of a path, by its name or endpoint.
fn step_of(lang: Lang, name: &str) -> Result<crate::steps::Step, ConsoleError> {
    crate::steps::Step::from_name_or_endpoint(name).ok_or(ConsoleError::NotFound(lang))
}

/// Run a blocking application call (it may compile, or read much of the
/// store) off the async threads; its error shown as the API's.
async fn blocking<T, E>(
    lang: Lang,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ConsoleError>
where
    T: Send + 'static,
    E: Into<crate::server::ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ConsoleError::Api(lang, crate::server::ApiError::Internal))?
        .map_err(|e| ConsoleError::api(lang, e))
}

/// The language of a request, for an error before the page knows it.
fn lang_of(parts: &Parts) -> Lang {
    Lang::from_code(cookie(&parts.headers, LANG))
}

/// A query string; a bad one is a form error on the page.
pub struct PageQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| PageQuery(t))
            .map_err(|e| ConsoleError::BadForm(lang_of(parts), e.body_text()))
    }
}

/// A posted form; a bad one is a form error on the page.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ConsoleError> {
        let lang = Lang::from_code(cookie(req.headers(), LANG));
        Form::<T>::from_request(req, state)
            .await
            .map(|Form(t)| PageForm(t))
            .map_err(|e| ConsoleError::BadForm(lang, e.body_text()))
    }
}
