//! The management side of the API in the OpenAPI document: plugin
//! versions, rollback and audit (admin token), and revisit work, do-not-
//! contact lists and bulk plans (shop key). Operations that need the admin
//! token carry the tag `admin`.

use super::{Schemas, json, object, param, typed, with_errors};
use crate::server::handlers;
use crate::storage::OutcomeResult;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder};

const STEPS: [&str; 5] = [
    "greeting",
    "order-confirmation",
    "refund-policy",
    "revisit-planner",
    "workflow",
];

/// `{"result": ..., "satisfaction": 1-5, "note": ..., "agent": ...}`.
pub fn outcome_schema() -> Schema {
    let results = OutcomeResult::ALL.iter().map(|r| r.to_string());
    object()
        .property(
            "result",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(results)),
        )
        .property(
            "satisfaction",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::Integer,
                    Type::Null,
                ]))
                .minimum(Some(1))
                .maximum(Some(5)),
        )
        .property("note", ObjectBuilder::new().schema_type(Type::String))
        .property("agent", ObjectBuilder::new().schema_type(Type::String))
        .required("result")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .into()
}

/// An operation answering 200 with `answer`.
fn op(
    id: &str,
    summary: &str,
    params: Vec<Parameter>,
    ok: &str,
    answer: RefOr<Schema>,
) -> OperationBuilder {
    op_answering("200", id, summary, params, ok, answer)
}

/// An operation answering `status` with `answer`.
pub(super) fn op_answering(
    status: &str,
    id: &str,
    summary: &str,
    params: Vec<Parameter>,
    ok: &str,
    answer: RefOr<Schema>,
) -> OperationBuilder {
    let mut op = OperationBuilder::new()
        .summary(Some(summary))
        .operation_id(Some(id));
    for p in params {
        op = op.parameter(p);
    }
    op.response(
        status,
        ResponseBuilder::new()
            .description(ok)
            .content("application/json", json(answer)),
    )
}

/// A deploy or rollback: it answers `status` with the version now active,
/// or 422 `plugin_rejected` when the component or its trial is refused.
fn activation(op: OperationBuilder, status: &str, answer: RefOr<Schema>) -> OperationBuilder {
    let mut op = op.build();
    op.responses.responses.remove("200");
    OperationBuilder::from(op)
        .response(
            status,
            ResponseBuilder::new()
                .description("the version now active")
                .content("application/json", json(answer)),
        )
        .response(
            "422",
            ResponseBuilder::new()
                .description("refused: not a component of this step, or it failed its trial")
                .content("application/json", json(Ref::from_schema_name("Error"))),
        )
}

/// An operation for the admin token only.
fn admin(op: OperationBuilder) -> Operation {
    with_errors(op)
        .tag("admin")
        .securities(Some([SecurityRequirement::new(
            "admin",
            Vec::<String>::new(),
        )]))
        .build()
}

/// Bytes (a component).
fn binary() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).format(Some(
        utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary),
    ))
}

fn json_body(
    schema: impl Into<utoipa::openapi::RefOr<Schema>>,
    required: bool,
) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .required(Some(if required {
            Required::True
        } else {
            Required::False
        }))
        .content("application/json", json(schema))
        .build()
}

pub fn paths(
    paths: PathsBuilder,
    schemas: &mut Schemas,
    shop: &dyn Fn() -> Parameter,
    limit: &dyn Fn() -> Parameter,
) -> PathsBuilder {
    let step = || param("step", ParameterIn::Path, Type::String, true, &STEPS);
    let id = || {
        let mut p = param("id", ParameterIn::Path, Type::Integer, true, &[]);
        p.schema = Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .into(),
        );
        p
    };
    let customer = || param("customer", ParameterIn::Path, Type::String, true, &[]);
    let int = |name: &str| param(name, ParameterIn::Query, Type::Integer, false, &[]);
    let versions_view = typed::<crate::app::VersionsView>(schemas);
    let activated = typed::<handlers::versions::Activated>(schemas);
    let pending = typed::<handlers::versions::Pending>(schemas);
    let audit_view = typed::<handlers::versions::Audit>(schemas);
    let plugins_view = typed::<crate::app::PluginsView>(schemas);
    let report_view = typed::<crate::app::Report>(schemas);
    let one_revisit = typed::<handlers::revisits::OneRevisit>(schemas);
    let plans_view = typed::<crate::app::PlansReport>(schemas);
    let do_not_contact_view = typed::<handlers::customers::DoNotContact>(schemas);
    let webhooks_view = typed::<handlers::webhooks::Webhooks>(schemas);
    let one_webhook = typed::<handlers::webhooks::OneWebhook>(schemas);
    let canary_view = typed::<crate::app::CanaryView>(schemas);
    let replay_view = typed::<crate::app::ReplayView>(schemas);
    let replay_example = typed::<crate::app::ReplayExample>(schemas);
    let shadow_view = typed::<crate::app::ShadowView>(schemas);
    let canary_start = typed::<handlers::canary::CanaryStart>(schemas);

    let versions = PathItem::builder()
        .operation(
            HttpMethod::Get,
            admin(op(
                "versions",
                "A step's plugin versions and which is active",
                vec![shop(), step()],
                "the versions",
                versions_view,
            )),
        )
        .operation(
            HttpMethod::Post,
            admin(
                activation(
                    op(
                        "deploy",
                        "Deploy a component as the step's new active version",
                        vec![shop(), step()],
                        "deployed",
                        activated.clone(),
                    ),
                    "201",
                    activated.clone(),
                )
                .response(
                    "202",
                    ResponseBuilder::new()
                        .description("still compiling after `deploy_wait_secs`: it goes on")
                        .content("application/json", json(pending)),
                )
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .description(Some(
                            "The component alone (the step's config is kept), or a form with \
                             `component` and/or `config` (a JSON object or a TOML table): \
                             what the form leaves out is the active version's.",
                        ))
                        .required(Some(Required::True))
                        .content(
                            "application/octet-stream",
                            ContentBuilder::new().schema(Some(binary())).build(),
                        )
                        .content(
                            "multipart/form-data",
                            ContentBuilder::new()
                                .schema(Some(
                                    ObjectBuilder::new()
                                        .property("component", binary())
                                        .property(
                                            "config",
                                            ObjectBuilder::new().schema_type(Type::String),
                                        )
                                        .property(
                                            "canary",
                                            ObjectBuilder::new()
                                                .schema_type(Type::String)
                                                .description(Some(
                                                    "Serve the new version to this percent of \
                                                     customers first (`10`), or a JSON plan \
                                                     (`{\"percent\": 5, \"steps\": [25, 100]}`)",
                                                )),
                                        )
                                        .additional_properties(Some(
                                            utoipa::openapi::schema::AdditionalProperties::FreeForm(
                                                false,
                                            ),
                                        )),
                                ))
                                .build(),
                        )
                        .build(),
                )),
            ),
        )
        .build();
    let rollback = admin(
        op(
            "rollback",
            "Make an earlier version active (the one before, or `version`)",
            vec![shop(), step()],
            "rolled back",
            activated.clone(),
        )
        .request_body(Some(json_body(
            object()
                .property(
                    "version",
                    // int64 from 0: `tighten` bounds it to a u64.
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Int64,
                        )))
                        .minimum(Some(0)),
                )
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                )),
            false,
        ))),
    );
    let canary_show = admin(op(
        "canary",
        "The step's canary and its analysis now",
        vec![shop(), step()],
        "the canary",
        canary_view.clone(),
    ));
    let canary_start = {
        let mut op = op(
            "canary-start",
            "Serve a recorded version to a percent of customers (or change the running canary's percent)",
            vec![shop(), step()],
            "unused",
            canary_view.clone(),
        )
        .request_body(Some(json_body(canary_start, true)))
        .build();
        op.responses.responses.remove("200");
        admin(
            OperationBuilder::from(op).response(
                "201",
                ResponseBuilder::new()
                    .description("the canary, serving")
                    .content("application/json", json(canary_view)),
            ),
        )
    };
    let canary_abort = admin(
        op(
            "canary-abort",
            "Stop the canary: the stable version serves everyone",
            vec![shop(), step()],
            "its version, now inactive",
            activated.clone(),
        )
        .request_body(Some(json_body(
            object()
                .property("reason", ObjectBuilder::new().schema_type(Type::String))
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                )),
            false,
        ))),
    );
    let canary_promote = admin(op(
        "canary-promote",
        "Make the canary's version active for everyone",
        vec![shop(), step()],
        "the version now active",
        activated.clone(),
    ));
    let decision = || {
        let mut p = param("decision", ParameterIn::Path, Type::Integer, true, &[]);
        p.schema = Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .into(),
        );
        p
    };
    // A replay's or shadow's candidate: a recorded version, or an upload.
    let upload_body = || {
        RequestBodyBuilder::new()
            .description(Some(
                "Empty with `version`; else a form with `component` and optionally `config` \
                 (without it, each decision's version's config)",
            ))
            .content(
                "multipart/form-data",
                ContentBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .property("component", binary())
                            .property("config", ObjectBuilder::new().schema_type(Type::String))
                            .additional_properties(Some(
                                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                            )),
                    ))
                    .build(),
            )
            .build()
    };
    let shadow_start = {
        let mut op = op(
            "shadow-start",
            "Run a recorded version (`version`) or an uploaded component on each live decision of the step, off the request path",
            vec![shop(), step(), int("version")],
            "unused",
            shadow_view.clone(),
        )
        .request_body(Some(upload_body()))
        .build();
        op.responses.responses.remove("200");
        admin(
            OperationBuilder::from(op)
                .response(
                    "201",
                    ResponseBuilder::new()
                        .description("the shadow, running")
                        .content("application/json", json(shadow_view.clone())),
                )
                .response(
                    "422",
                    ResponseBuilder::new()
                        .description("the component is not one of this step")
                        .content("application/json", json(Ref::from_schema_name("Error"))),
                ),
        )
    };
    let shadow_show = admin(op(
        "shadow",
        "The step's shadow and what it found so far",
        vec![shop(), step()],
        "the shadow",
        shadow_view.clone(),
    ));
    let shadow_stop = admin(op(
        "shadow-stop",
        "Stop the step's shadow",
        vec![shop(), step()],
        "what it found",
        shadow_view,
    ));
    let shadow_example = admin(op(
        "shadow-example",
        "One example decision of the shadow, side by side",
        vec![shop(), step(), decision()],
        "the decision, live and in the shadow",
        replay_example.clone(),
    ));
    let replay_start = {
        let mut op = op(
            "replay-start",
            "Replay a recorded version (`version`) or an uploaded component over the step's logged decisions, in the background",
            vec![
                shop(),
                step(),
                int("version"),
                int("since"),
                int("until"),
                int("limit"),
            ],
            "unused",
            replay_view.clone(),
        )
        .request_body(Some(upload_body()))
        .build();
        op.responses.responses.remove("200");
        admin(
            OperationBuilder::from(op)
                .response(
                    "202",
                    ResponseBuilder::new()
                        .description("the replay, running: follow it at .../replays/{id}")
                        .content("application/json", json(replay_view.clone())),
                )
                .response(
                    "422",
                    ResponseBuilder::new()
                        .description("the component is not one of this step")
                        .content("application/json", json(Ref::from_schema_name("Error"))),
                ),
        )
    };
    let replay_show = admin(op(
        "replay",
        "A replay: its progress, then its report",
        vec![shop(), step(), id()],
        "the replay",
        replay_view,
    ));
    let replay_example = admin(op(
        "replay-example",
        "One example decision of a finished replay, side by side",
        vec![shop(), step(), id(), decision()],
        "the decision, logged and replayed",
        replay_example,
    ));
    let audit = admin(op(
        "audit",
        "Deploys, rollbacks and refusals, newest first",
        vec![
            param("shop", ParameterIn::Query, Type::String, false, &[]),
            limit(),
        ],
        "the audit log",
        audit_view,
    ));
    let plugins = admin(op(
        "plugins",
        "Every shop's active plugin per step",
        vec![],
        "the plugins",
        plugins_view,
    ));

    let report = with_errors(op(
        "revisit-report",
        "Revisit outcomes over a week, a month or a range",
        vec![
            shop(),
            param(
                "period",
                ParameterIn::Query,
                Type::String,
                false,
                &["week", "month"],
            ),
            int("at"),
            int("from"),
            int("to"),
        ],
        "the report",
        report_view,
    ))
    .build();
    let outcome = with_errors(
        op(
            "revisit-outcome",
            "Record the outcome of one revisit attempt",
            vec![shop(), id()],
            "the revisit after it",
            one_revisit.clone(),
        )
        .request_body(Some(json_body(
            Ref::from_schema_name("RevisitOutcome"),
            true,
        ))),
    )
    .build();
    let cancel = with_errors(op(
        "revisit-cancel",
        "Cancel a revisit",
        vec![shop(), id()],
        "the cancelled revisit",
        one_revisit,
    ))
    .build();
    let plans = with_errors(
        op(
            "revisit-plans",
            "Plan revisits for many customers in one call",
            vec![shop()],
            "each request's decision id or error, in order",
            plans_view,
        )
        .request_body(Some(json_body(
            object()
                .property(
                    "requests",
                    ArrayBuilder::new().items(Ref::from_schema_name("RevisitRequest")),
                )
                .required("requests")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                )),
            true,
        ))),
    )
    .build();
    let webhooks = with_errors(op(
        "webhooks",
        "Revisit webhooks not yet delivered (status=dead: the dead-lettered)",
        vec![
            shop(),
            param(
                "status",
                ParameterIn::Query,
                Type::String,
                false,
                &["queued", "dead"],
            ),
        ],
        "the deliveries",
        webhooks_view,
    ))
    .build();
    let webhook_retry = with_errors(op(
        "webhook-retry",
        "Try a webhook delivery again now",
        vec![
            shop(),
            param("key", ParameterIn::Path, Type::String, true, &[]),
        ],
        "the delivery, queued",
        one_webhook,
    ))
    .build();
    let do_not_contact = |id: &str, summary: &str| {
        with_errors(op(
            id,
            summary,
            vec![shop(), customer()],
            "done",
            do_not_contact_view.clone(),
        ))
        .build()
    };
    paths
        .path("/v1/shops/{shop}/steps/{step}/versions", versions)
        .path(
            "/v1/shops/{shop}/steps/{step}/rollback",
            PathItem::new(HttpMethod::Post, rollback),
        )
        .path(
            "/v1/shops/{shop}/steps/{step}/canary",
            PathItem::builder()
                .operation(HttpMethod::Get, canary_show)
                .operation(HttpMethod::Post, canary_start)
                .operation(HttpMethod::Delete, canary_abort)
                .build(),
        )
        .path(
            "/v1/shops/{shop}/steps/{step}/canary/promote",
            PathItem::new(HttpMethod::Post, canary_promote),
        )
        .path(
            "/v1/shops/{shop}/steps/{step}/replays",
            PathItem::new(HttpMethod::Post, replay_start),
        )
        .path(
            "/v1/shops/{shop}/steps/{step}/shadow",
            PathItem::builder()
                .operation(HttpMethod::Get, shadow_show)
                .operation(HttpMethod::Post, shadow_start)
                .operation(HttpMethod::Delete, shadow_stop)
                .build(),
        )
        .path(
            "/v1/shops/{shop}/steps/{step}/shadow/examples/{decision}",
            PathItem::new(HttpMethod::Get, shadow_example),
        )
        .path(
            "/v1/shops/{shop}/steps/{step}/replays/{id}",
            PathItem::new(HttpMethod::Get, replay_show),
        )
        .path(
            "/v1/shops/{shop}/steps/{step}/replays/{id}/examples/{decision}",
            PathItem::new(HttpMethod::Get, replay_example),
        )
        .path("/v1/audit", PathItem::new(HttpMethod::Get, audit))
        .path("/v1/plugins", PathItem::new(HttpMethod::Get, plugins))
        .path(
            "/v1/shops/{shop}/revisits/report",
            PathItem::new(HttpMethod::Get, report),
        )
        .path(
            "/v1/shops/{shop}/revisits/{id}/outcome",
            PathItem::new(HttpMethod::Post, outcome),
        )
        .path(
            "/v1/shops/{shop}/revisits/{id}/cancel",
            PathItem::new(HttpMethod::Post, cancel),
        )
        .path(
            "/v1/shops/{shop}/revisit-plans",
            PathItem::new(HttpMethod::Post, plans),
        )
        .path(
            "/v1/shops/{shop}/webhooks",
            PathItem::new(HttpMethod::Get, webhooks),
        )
        .path(
            "/v1/shops/{shop}/webhooks/{key}/retry",
            PathItem::new(HttpMethod::Post, webhook_retry),
        )
        .path(
            "/v1/shops/{shop}/customers/{customer}/do-not-contact",
            PathItem::builder()
                .operation(
                    HttpMethod::Post,
                    do_not_contact("do-not-contact", "Stop revisits to a customer"),
                )
                .operation(
                    HttpMethod::Delete,
                    do_not_contact("allow-contact", "Allow revisits to a customer again"),
                )
                .build(),
        )
}
