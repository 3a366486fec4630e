//! `GET /console/shops/{shop}/steps/{step}`: a step's versions (who, when,
//! source, digest, what changed), the canary or shadow running, and for
//! the admin: deploy by upload, roll back, promote or abort a canary —
//! each the application call the API makes, in the audit as the console.

use crate::app::config::{ConfigFormat, plugin_config};
use crate::app::{App, DeployRequest, KeyOwner};
use crate::server::console::error::ConsoleError;
use crate::server::console::page::{self, percent};
use crate::server::console::session::{ShopView, check_csrf};
use crate::server::console::{PageForm, PageQuery, blocking, step_of};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Done {
    /// What the last action did: `deployed`, `compiling`, `rolled-back`,
    /// `promoted`, `aborted`.
    done: Option<String>,
    v: Option<u64>,
    format: Option<String>,
}

pub async fn show(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, step)): Path<(String, String)>,
    PageQuery(done): PageQuery<Done>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let t = lang.texts();
    let step = step_of(lang, &step)?;
    let versions = app
        .versions(&shop.id, step)
        .map_err(|e| ConsoleError::api(lang, e))?;
    if done.format.as_deref() == Some("csv") {
        let rows = versions
            .versions
            .iter()
            .map(|v| {
                vec![
                    v.version.to_string(),
                    v.status.to_string(),
                    v.actor.to_string(),
                    page::time_ms(v.at_ms),
                    v.source.to_string(),
                    v.digest.clone(),
                    v.changes.join("; "),
                ]
            })
            .collect();
        return Ok(page::csv(
            "versions.csv",
            &[
                "version", "status", "actor", "at", "source", "digest", "changes",
            ],
            rows,
        ));
    }
    let canary = app.canary(&shop.id, step).ok();
    let shadow = app.shadow(&shop.id, step).ok();
    let replays = app.replays(&shop.id, step);
    let admin = signed.session.owner == KeyOwner::Admin;
    let base = format!("/console/shops/{}/steps/{}", shop.id, step.world());
    let csrf = &signed.session.csrf;
    let v = done.v.map(|v| format!(" v{v}")).unwrap_or_default();
    let notice = done.done.as_deref().map(|d| match d {
        "deployed" => format!("{}{v}", t.deployed),
        "compiling" => t.compiling.to_string(),
        "rolled-back" | "promoted" | "aborted" => format!("{}{v}", t.rolled_back),
        other => other.to_string(),
    });
    let unavailable = shop.unavailable_reason(step);
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "steps"))
        (page::notice(notice))
        h2 { (lang.step(step)) " " code.muted { (step.world()) } }
        @if let Some(reason) = unavailable {
            div.card.error { (t.step_unavailable) " " code { (reason) } }
        }
        @if let Some(c) = &canary {
            div.card {
                strong { (t.canary_running) } ": v" (c.version) " · " (percent(c.percent / 100.0))
                " (v" (c.stable_version) " → v" (c.version) ") · " code { (format!("{:?}", c.analysis)) }
                @if admin {
                    " "
                    form.inline method="post" action={ (base) "/rollback" } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="canary" value="promote";
                        button type="submit" { (t.promote) }
                    }
                    " "
                    form.inline method="post" action={ (base) "/rollback" } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="canary" value="abort";
                        button.quiet type="submit" { (t.abort) }
                    }
                }
            }
        }
        @if let Some(s) = &shadow {
            div.card {
                strong { (t.shadow_running) } ": " code { (s.candidate) }
                (super::replays::report(lang, &s.report, &format!("{base}/shadow/examples")))
            }
        }
        h2 { (t.versions) " " a href={ (base) "?format=csv" } { small { (t.export_csv) } } }
        @if versions.versions.is_empty() {
            p.muted { (t.no_versions) }
        } @else {
            div.scroll { table {
                thead { tr {
                    th.num { (t.version) } th { (t.status) } th { (t.who) } th { (t.when) }
                    th { (t.source) } th { (t.digest) } th.hide-narrow { (t.changes) } th {}
                } }
                tbody { @for ver in versions.versions.iter().rev() {
                    tr {
                        td.num { "v" (ver.version) }
                        td { @match ver.status {
                            "active" => span.tag.ok { (t.status_active) },
                            "canary" => span.tag.warn { (t.status_canary) },
                            _ => span.tag { (t.status_inactive) },
                        } }
                        td { code { (ver.actor.as_str()) } }
                        td { (page::time_ms(ver.at_ms)) }
                        td { (ver.source.as_str()) @if let Some(p) = &ver.path { br; code.muted { (p) } } }
                        td { code title=(ver.digest) { (ver.digest.get(..12).unwrap_or(&ver.digest)) } }
                        td.hide-narrow {
                            @if ver.changes.is_empty() { span.muted { (t.first_version) } }
                            @for c in &ver.changes { code { (c) } br; }
                        }
                        td { @if admin && ver.status == "inactive" && canary.is_none() {
                            form.inline method="post" action={ (base) "/rollback" } {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="version" value=(ver.version);
                                button.quiet type="submit" { (t.rollback_button) }
                            }
                        } }
                    }
                } }
            } }
        }
        h2 { (t.replays) }
        p.muted { (t.replay_intro) }
        @if admin && !versions.versions.is_empty() {
            form.search method="post" action={ (base) "/replays" } {
                input type="hidden" name="csrf" value=(csrf);
                label { (t.version)
                    select name="version" {
                        @for ver in versions.versions.iter().rev() { option value=(ver.version) { "v" (ver.version) } }
                    }
                }
                label { (t.days)
                    select name="days" {
                        option value="1" { "1" }
                        option value="7" selected { "7" }
                        option value="30" { "30" }
                    }
                }
                button type="submit" { (t.start_replay) }
            }
        }
        @if !replays.is_empty() {
            div.scroll { table {
                thead { tr {
                    th { (t.replay) } th { (t.when) } th { (t.candidate) } th { (t.status) }
                    th.num { (t.replayed) } th.num { (t.changed) }
                } }
                tbody { @for r in &replays {
                    tr {
                        td { a href={ (base) "/replays/" (r.id) } { "#" (r.id) } }
                        td { (page::time_ms(r.started_at_ms)) }
                        td { code { (r.candidate) } }
                        td { span.tag { (r.status) } }
                        td.num { (r.done) " / " (r.total) }
                        td.num { (r.report.as_ref().map_or(0, |x| x.changed)) }
                    }
                } }
            } }
        }
        h2 { (t.deploy_title) }
        @if admin {
            form.stack.card method="post" action={ (base) "/deploy" } enctype="multipart/form-data" {
                p.muted { (t.deploy_intro) }
                input type="hidden" name="csrf" value=(csrf);
                label { (t.component_file) input type="file" name="component" accept=".wasm,application/wasm"; }
                label { (t.config_json) textarea name="config" placeholder="{ }" {} }
                div { button type="submit" { (t.deploy_button) } }
            }
        } @else {
            p.muted { (t.admin_only) }
        }
    };
    let here = base.clone();
    Ok(page::page(&signed, &here, &shop.name, body).into_response())
}

/// After an action: back to the step page, saying what happened.
fn back(base: &str, done: &str, version: Option<u64>) -> Response {
    let v = version.map(|v| format!("&v={v}")).unwrap_or_default();
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("{base}?done={done}{v}"))],
    )
        .into_response()
}

/// Only the admin deploys and rolls back (as in the API).
fn admin_only(view: &ShopView) -> Result<(), ConsoleError> {
    match view.signed.session.owner {
        KeyOwner::Admin => Ok(()),
        KeyOwner::Shop(_) => Err(ConsoleError::Forbidden(view.signed.lang)),
    }
}

/// `POST .../deploy`: a multipart form with `csrf`, `component` (a file)
/// and `config` (JSON or TOML text, empty to keep the current one).
pub async fn deploy(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, step)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ConsoleError> {
    admin_only(&view)?;
    let lang = view.signed.lang;
    let step = step_of(lang, &step)?;
    let bad = |what: String| ConsoleError::BadForm(lang, what);
    let mut form = Multipart::from_request(req, &app)
        .await
        .map_err(|e| bad(e.body_text()))?;
    let mut request = DeployRequest::default();
    let mut csrf = String::new();
    while let Some(field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| bad(e.body_text()))?;
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "component" if !bytes.is_empty() => request.component = Some(bytes.to_vec()),
            "component" => {}
            "config" => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| bad("the config is not UTF-8".into()))?
                    .trim();
                if !text.is_empty() {
                    let format = match text.starts_with('{') {
                        true => ConfigFormat::Json,
                        false => ConfigFormat::Toml,
                    };
                    request.config_json = Some(plugin_config(text, format).map_err(bad)?);
                }
            }
            other => return Err(bad(format!("unknown field `{other}`"))),
        }
    }
    check_csrf(&view.signed.session.csrf, &csrf)?;
    if request.component.is_none() && request.config_json.is_none() {
        return Err(bad(format!(
            "{} / {}",
            lang.texts().component_file,
            lang.texts().config_json
        )));
    }
    let base = format!(
        "/console/shops/{}/steps/{}",
        page::query_escape(&view.shop.id),
        step.world()
    );
    let shop = view.shop.id.clone();
    let actor = view.signed.session.owner.actor();
    let wait = std::time::Duration::from_secs(app.config().deploy_wait_secs);
    let task = blocking(lang, move || app.deploy(&shop, step, request, actor));
    match tokio::time::timeout(wait, task).await {
        Ok(done) => Ok(back(&base, "deployed", Some(done?.version))),
        Err(_) => Ok(back(&base, "compiling", None)),
    }
}

#[derive(Deserialize)]
pub struct Rollback {
    csrf: String,
    /// Roll back to this version...
    version: Option<u64>,
    /// ...or act on the running canary: `promote` or `abort`.
    canary: Option<String>,
}

/// `POST .../rollback`: to `version`, or promote or abort the canary.
pub async fn rollback(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, step)): Path<(String, String)>,
    PageForm(form): PageForm<Rollback>,
) -> Result<Response, ConsoleError> {
    admin_only(&view)?;
    let lang = view.signed.lang;
    check_csrf(&view.signed.session.csrf, &form.csrf)?;
    let step = step_of(lang, &step)?;
    let base = format!(
        "/console/shops/{}/steps/{}",
        page::query_escape(&view.shop.id),
        step.world()
    );
    let shop = view.shop.id.clone();
    let actor = view.signed.session.owner.actor();
    let (done, version) = match form.canary.as_deref() {
        Some("promote") => (
            "promoted",
            blocking(lang, move || app.promote_canary(&shop, step, actor)).await?,
        ),
        Some("abort") => (
            "aborted",
            blocking(lang, move || {
                app.abort_canary(&shop, step, actor, "aborted in the console")
            })
            .await?,
        ),
        Some(other) => {
            return Err(ConsoleError::BadForm(
                lang,
                format!("canary `{other}`: promote or abort"),
            ));
        }
        None => (
            "rolled-back",
            blocking(lang, move || app.rollback(&shop, step, form.version, actor)).await?,
        ),
    };
    Ok(back(&base, done, Some(version.version)))
}
