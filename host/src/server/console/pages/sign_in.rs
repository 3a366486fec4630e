//! Sign-in with a key, sign-out, and the language switch.

use crate::app::App;
use crate::server::console::error::ConsoleError;
use crate::server::console::page;
use crate::server::console::session::{
    LANG_COOKIE, Language, SESSION_COOKIE, SESSION_TTL, SIGN_IN_COOKIE, Sessions, Signed,
    check_csrf, cookie, random_hex, set_cookie,
};
use crate::server::console::text::Lang;
use crate::server::console::{PageForm, PageQuery};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
    #[serde(default)]
    out: bool,
}

/// Where to go after signing in: a console path only (never elsewhere),
/// its bytes beyond ASCII percent-encoded for the `Location` header.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.chars().any(char::is_control) => n
            .bytes()
            .map(|b| match b {
                0x21..=0x7e => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect(),
        _ => "/console".to_string(),
    }
}

fn form_page(lang: Lang, headers: &HeaderMap, next: &str, failed: bool, out: bool) -> Response {
    let t = lang.texts();
    let csrf = random_hex(16);
    let body = page::bare(
        lang,
        t.sign_in_title,
        html! {
            div.card {
                h1 { (t.sign_in_title) }
                @if out { div.notice { (t.signed_out) } }
                p.muted { (t.sign_in_intro) }
                @if failed { div.card.error role="alert" { (t.sign_in_failed) } }
                form.stack method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label {
                        (t.key_label)
                        input type="password" name="key" autocomplete="current-password" required autofocus;
                    }
                    div { button type="submit" { (t.sign_in_button) } }
                }
            }
        },
    );
    let status = match failed {
        true => StatusCode::UNAUTHORIZED,
        false => StatusCode::OK,
    };
    (
        status,
        [(
            header::SET_COOKIE,
            set_cookie(headers, SIGN_IN_COOKIE, &csrf, 3600),
        )],
        body,
    )
        .into_response()
}

/// `GET /console/sign-in`.
pub async fn form(
    Language(lang): Language,
    headers: HeaderMap,
    PageQuery(q): PageQuery<Next>,
) -> Response {
    form_page(lang, &headers, &safe_next(q.next.as_deref()), false, q.out)
}

#[derive(Deserialize)]
pub struct SignIn {
    key: String,
    csrf: String,
    next: Option<String>,
}

/// `POST /console/sign-in`: the key opens a session, or the form again.
pub async fn submit(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Language(lang): Language,
    headers: HeaderMap,
    PageForm(form): PageForm<SignIn>,
) -> Result<Response, ConsoleError> {
    check_csrf(
        cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default(),
        &form.csrf,
    )?;
    let next = safe_next(form.next.as_deref());
    let Some(owner) = app.key_owner(&form.key) else {
        tracing::warn!("console sign-in with an unknown key");
        return Ok(form_page(lang, &headers, &next, true, false));
    };
    app.audit_session(&owner, true);
    let (token, _) = sessions.open(owner);
    Ok((
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                set_cookie(&headers, SESSION_COOKIE, &token, SESSION_TTL.as_secs()),
            ),
            (header::LOCATION, next.parse().expect("a console path")),
        ],
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct Csrf {
    csrf: String,
}

/// `POST /console/sign-out`.
pub async fn sign_out(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    signed: Signed,
    headers: HeaderMap,
    PageForm(form): PageForm<Csrf>,
) -> Result<Response, ConsoleError> {
    check_csrf(&signed.session.csrf, &form.csrf)?;
    sessions.close(&signed.token);
    app.audit_session(&signed.session.owner, false);
    Ok((
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                set_cookie(&headers, SESSION_COOKIE, "", 0),
            ),
            (
                header::LOCATION,
                "/console/sign-in?out=true".parse().expect("path"),
            ),
        ],
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct Back {
    back: Option<String>,
}

/// `GET /console/lang/{zh|en}?back=`: remember the language, go back.
pub async fn language(
    Path(code): Path<String>,
    headers: HeaderMap,
    PageQuery(q): PageQuery<Back>,
) -> Response {
    let lang = Lang::from_code(Some(code.as_str()));
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                set_cookie(&headers, LANG_COOKIE, lang.code(), 365 * 86_400),
            ),
            (
                header::LOCATION,
                safe_next(q.back.as_deref())
                    .parse()
                    .expect("a console path"),
            ),
        ],
    )
        .into_response()
}
