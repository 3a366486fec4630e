//! The workflow side of the API in the OpenAPI document: events in, an
//! event and its retry, the actions for pollers, timelines (shop key).

use super::{Schemas, json, object, param, typed, with_errors};
use crate::app::{EVENT_TYPES, MAX_EVENTS};
use crate::server::handlers;
use crate::steps::times::{MAX_TIME, MIN_TIME};
use crate::storage::ActionStatus;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{PathsBuilder, RefOr, Required};

/// One event as a sender writes it; `data`'s shape depends on `type`
/// (docs/workflows.md).
fn event_schema() -> Schema {
    let subject = OneOfBuilder::new()
        .item(
            object()
                .property("order", ObjectBuilder::new().schema_type(Type::String))
                .required("order"),
        )
        .item(
            object()
                .property("customer", ObjectBuilder::new().schema_type(Type::String))
                .required("customer"),
        );
    object()
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(200)),
        )
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(EVENT_TYPES)),
        )
        .property(
            "at",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(MIN_TIME))
                .maximum(Some(MAX_TIME - 1)),
        )
        .property("subject", subject)
        .property(
            "data",
            object().description(Some(
                "The type's record: `greeting-request`, `order-event`, `refund-request` or \
                 `complaint-event` (see docs/workflows.md)",
            )),
        )
        .required("id")
        .required("type")
        .required("at")
        .required("data")
        .into()
}

/// An operation answering `status` with `answer`.
fn op(
    id: &str,
    summary: &str,
    params: Vec<Parameter>,
    ok: &str,
    status: &str,
    answer: RefOr<Schema>,
) -> OperationBuilder {
    super::manage::op_answering(status, id, summary, params, ok, answer)
}

pub fn paths(
    paths: PathsBuilder,
    schemas: &mut Schemas,
    shop: &dyn Fn() -> Parameter,
    limit: &dyn Fn() -> Parameter,
) -> PathsBuilder {
    let accepted = typed::<handlers::events::AcceptedEvents>(schemas);
    let event_view = typed::<crate::app::EventView>(schemas);
    let actions_view = typed::<handlers::actions::Actions>(schemas);
    let action_view = typed::<crate::app::ActionView>(schemas);
    let timeline = typed::<crate::app::Timeline>(schemas);
    let text = |name: &str| param(name, ParameterIn::Path, Type::String, true, &[]);
    let event = event_schema();
    let body = OneOfBuilder::new().item(event.clone()).item(
        ArrayBuilder::new()
            .items(RefOr::T(event))
            .min_items(Some(1))
            .max_items(Some(MAX_EVENTS)),
    );
    let accept = with_errors(
        op(
            "events",
            "Take one event, or up to 500, into the shop's inbox (durable before the answer)",
            vec![shop()],
            "taken: each event `accepted`, or `duplicate` with its first record",
            "202",
            accepted,
        )
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json(body))
                .build(),
        )),
    )
    .build();
    let show = with_errors(op(
        "event",
        "An event and what became of it",
        vec![shop(), text("id")],
        "the event",
        "200",
        event_view.clone(),
    ))
    .build();
    let retry = with_errors(op(
        "event-retry",
        "Put a failed event back in the inbox",
        vec![shop(), text("id")],
        "back in the inbox",
        "202",
        event_view,
    ))
    .build();
    let statuses = [
        ActionStatus::Pending,
        ActionStatus::Delivered,
        ActionStatus::Dead,
    ]
    .map(|s| {
        serde_json::to_value(s)
            .unwrap_or_default()
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let status = {
        let mut p = param("status", ParameterIn::Query, Type::String, false, &[]);
        p.schema = Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(statuses))
                .into(),
        );
        p
    };
    let after = {
        let mut p = param("after", ParameterIn::Query, Type::Integer, false, &[]);
        p.schema = Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .into(),
        );
        p
    };
    let action_id = {
        let mut p = param("id", ParameterIn::Path, Type::Integer, true, &[]);
        p.schema = Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .into(),
        );
        p
    };
    let actions = with_errors(op(
        "actions",
        "The flow's actions for the shop's integration, in id order",
        vec![shop(), limit(), status, after],
        "the actions",
        "200",
        actions_view,
    ))
    .build();
    let ack = with_errors(op(
        "action-ack",
        "A poller took an action: mark it delivered",
        vec![shop(), action_id],
        "the action",
        "200",
        action_view,
    ))
    .build();
    let timeline_of = |id: &str, what: &str, name: &str| {
        with_errors(op(
            id,
            &format!("Everything that happened to {what}, in order"),
            vec![shop(), text(name)],
            "the timeline",
            "200",
            timeline.clone(),
        ))
        .build()
    };
    paths
        .path(
            "/v1/shops/{shop}/events",
            PathItem::new(HttpMethod::Post, accept),
        )
        .path(
            "/v1/shops/{shop}/events/{id}",
            PathItem::new(HttpMethod::Get, show),
        )
        .path(
            "/v1/shops/{shop}/events/{id}/retry",
            PathItem::new(HttpMethod::Post, retry),
        )
        .path(
            "/v1/shops/{shop}/actions",
            PathItem::new(HttpMethod::Get, actions),
        )
        .path(
            "/v1/shops/{shop}/actions/{id}/ack",
            PathItem::new(HttpMethod::Post, ack),
        )
        .path(
            "/v1/shops/{shop}/orders/{order}/timeline",
            PathItem::new(
                HttpMethod::Get,
                timeline_of("order-timeline", "an order", "order"),
            ),
        )
        .path(
            "/v1/shops/{shop}/customers/{customer}/timeline",
            PathItem::new(
                HttpMethod::Get,
                timeline_of("customer-timeline", "a customer", "customer"),
            ),
        )
}
