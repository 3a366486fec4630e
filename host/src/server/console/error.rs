//! The console's one error type: an HTML page in the user's language with
//! the status the API would answer, or a redirect to the sign-in page.

use super::page;
use super::text::Lang;
use crate::server::ApiError;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum ConsoleError {
    /// Not signed in (or the session ended): to the sign-in page, and
    /// back to `next` after.
    SignIn {
        next: String,
    },
    /// The key may not see this (another shop's page).
    Forbidden(Lang),
    NotFound(Lang),
    /// A form's CSRF token is missing or wrong.
    Csrf,
    /// A form field is wrong: what.
    BadForm(Lang, String),
    /// The application refused: the API's error, shown with its message.
    Api(Lang, ApiError),
}

impl ConsoleError {
    pub fn api(lang: Lang, e: impl Into<ApiError>) -> Self {
        ConsoleError::Api(lang, e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, lang, detail) = match self {
            ConsoleError::SignIn { next } => {
                let to = format!("/console/sign-in?next={}", page::query_escape(&next));
                return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
            }
            ConsoleError::Forbidden(lang) => (
                StatusCode::FORBIDDEN,
                lang,
                lang.texts().forbidden.to_string(),
            ),
            ConsoleError::NotFound(lang) => (
                StatusCode::NOT_FOUND,
                lang,
                lang.texts().not_found.to_string(),
            ),
            // A forged form has no language to trust: Chinese first.
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                Lang::Zh,
                format!(
                    "{} / {}",
                    Lang::Zh.texts().csrf_failed,
                    Lang::En.texts().csrf_failed
                ),
            ),
            ConsoleError::BadForm(lang, what) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                lang,
                format!("{} {what}", lang.texts().bad_form),
            ),
            ConsoleError::Api(lang, e) => {
                let message = match lang {
                    Lang::Zh => crate::server::language::message(&e),
                    Lang::En => e.to_string(),
                };
                (e.status(), lang, message)
            }
        };
        let t = lang.texts();
        let body = page::bare(
            lang,
            t.error_title,
            maud::html! {
                div.card.error {
                    h1 { (t.error_title) }
                    p { (detail) }
                    p { a href="/console" { (t.back) } }
                }
            },
        );
        (status, body).into_response()
    }
}
