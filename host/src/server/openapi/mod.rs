//! `GET /v1/openapi.json`: the API described as OpenAPI 3.1, generated
//! from the request and response types themselves (utoipa's `ToSchema`
//! on the WIT bindings), so it cannot drift from what the server parses.

use super::handlers;
use crate::steps::{Step, StepKind, VisitKind};
use crate::storage::RevisitStatus;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

mod events;
mod manage;

pub(super) fn object() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Object)
}

fn error_schema() -> Schema {
    let error = object()
        .property("code", ObjectBuilder::new().schema_type(Type::String))
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property("field", ObjectBuilder::new().schema_type(Type::String))
        .required("code")
        .required("message");
    object().property("error", error).required("error").into()
}

/// The schemas of the document, by name.
pub(super) type Schemas = Vec<(String, RefOr<Schema>)>;

/// Register `T`'s schema (and the ones it refers to) and refer to it.
pub(super) fn typed<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    schemas.push((T::name().into(), T::schema()));
    T::schemas(schemas);
    Ref::from_schema_name(T::name()).into()
}

pub(super) fn json(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

pub(super) fn param(
    name: &str,
    place: ParameterIn,
    ty: Type,
    required: bool,
    values: &[&str],
) -> utoipa::openapi::path::Parameter {
    let mut schema = ObjectBuilder::new().schema_type(ty);
    if !values.is_empty() {
        schema = schema.enum_values(Some(values.iter().map(|v| v.to_string())));
    }
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .schema(Some(schema))
        .build()
}

pub(super) fn with_errors(op: OperationBuilder) -> OperationBuilder {
    let mut op = op;
    for (code, why) in [
        ("400", "invalid JSON, field or query"),
        ("401", "no key"),
        ("403", "key not allowed here"),
        ("404", "unknown shop, step or resource"),
        ("408", "the request body paused too long"),
        (
            "409",
            "the resource's state does not allow it (a closed revisit)",
        ),
        ("413", "body too large"),
        ("429", "over the shop's quota"),
        ("502", "the plugin failed"),
        ("503", "plugin unavailable or storage failed"),
        ("504", "the plugin timed out"),
    ] {
        op = op.response(
            code,
            ResponseBuilder::new()
                .description(why)
                .content("application/json", json(Ref::from_schema_name("Error"))),
        );
    }
    op.security(SecurityRequirement::new("key", Vec::<String>::new()))
}

/// The document as JSON, with the bounds the server enforces that the
/// generated schemas leave out (see [`tighten`]).
pub fn spec_json(shops: &[String]) -> serde_json::Value {
    let mut doc = serde_json::to_value(spec(shops)).unwrap_or_default();
    tighten(&mut doc);
    doc
}

/// Property names of input times: the host takes them only from
/// 2000-01-01 to 2100-01-01 (`steps::times`); and an event's `at`
/// (see [`tighten`]).
const INPUT_TIMES: [&str; 6] = [
    "created_at",
    "paid_at",
    "shipped_at",
    "delivered_at",
    "resolved_at",
    "date",
];

/// Say in the schemas what the server enforces: unsigned integers go up
/// to their type's maximum (utoipa writes u32 as int32, whose range a
/// client would read as ending at 2^31-1), and input times are bounded.
fn tighten(value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match value {
        Value::Object(map) => {
            let unsigned = map.get("minimum").and_then(Value::as_u64) == Some(0);
            match map.get("format").and_then(Value::as_str) {
                Some("int32") if unsigned => {
                    map.remove("format");
                    map.insert("maximum".into(), json!(u32::MAX));
                }
                Some("int64") if unsigned => {
                    map.remove("format");
                    map.insert("maximum".into(), json!(u64::MAX));
                }
                _ => {}
            }
            // An externally tagged variant is an object with its one tag.
            if let Some(Value::Array(alternatives)) = map.get_mut("oneOf") {
                for alt in alternatives {
                    let one_tag = alt
                        .get("properties")
                        .and_then(Value::as_object)
                        .map(|p| p.len())
                        == Some(1)
                        && alt
                            .get("required")
                            .and_then(Value::as_array)
                            .map(|r| r.len())
                            == Some(1);
                    if one_tag && let Some(alt) = alt.as_object_mut() {
                        alt.insert("additionalProperties".into(), Value::Bool(false));
                    }
                }
            }
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                // An event's time (it has a subject), not a timer's.
                let event_at = props.contains_key("subject").then_some("at");
                for name in INPUT_TIMES.into_iter().chain(event_at) {
                    if let Some(Value::Object(time)) = props.get_mut(name) {
                        time.remove("format");
                        time.insert("minimum".into(), json!(crate::steps::times::MIN_TIME));
                        time.insert("maximum".into(), json!(crate::steps::times::MAX_TIME - 1));
                    }
                }
            }
            for v in map.values_mut() {
                tighten(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tighten),
        _ => {}
    }
}

/// The document. `shops` become the `shop` parameter's values, so a
/// client (or a fuzzer) reaches the real shops.
pub fn spec(shops: &[String]) -> OpenApi {
    let shop_values: Vec<&str> = shops.iter().map(String::as_str).collect();
    let shop = || param("shop", ParameterIn::Path, Type::String, true, &shop_values);
    let limit = || {
        let schema = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(super::handlers::MAX_LIMIT as u32));
        ParameterBuilder::new()
            .name("limit")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .schema(Some(schema))
            .build()
    };

    let mut schemas: Vec<(String, RefOr<Schema>)> = vec![("Error".into(), error_schema().into())];
    let mut paths = PathsBuilder::new();
    for step in Step::ALL {
        let op = step.visit(StepSchemas {
            schemas: &mut schemas,
        });
        paths = paths.path(
            format!("/v1/shops/{{shop}}/{}", step.endpoint()),
            PathItem::new(HttpMethod::Post, with_errors(op.parameter(shop()))),
        );
    }

    let list = |id: &str,
                summary: &str,
                extra: Vec<utoipa::openapi::path::Parameter>,
                answer: RefOr<Schema>| {
        let mut op = OperationBuilder::new()
            .summary(Some(summary))
            .operation_id(Some(id))
            .parameter(shop())
            .parameter(limit());
        for p in extra {
            op = op.parameter(p);
        }
        let op = op.response(
            "200",
            ResponseBuilder::new()
                .description("the list")
                .content("application/json", json(answer)),
        );
        PathItem::new(HttpMethod::Get, with_errors(op))
    };
    let refunds = typed::<handlers::refunds::Refunds>(&mut schemas);
    let revisits = typed::<handlers::revisits::Revisits>(&mut schemas);
    let decisions = typed::<handlers::decisions::Decisions>(&mut schemas);
    paths = paths
        .path(
            "/v1/shops/{shop}/refunds",
            list("refunds", "The shop's refund decisions", vec![], refunds),
        )
        .path(
            "/v1/shops/{shop}/revisits",
            list(
                "revisits",
                "The shop's revisits",
                vec![param(
                    "status",
                    ParameterIn::Query,
                    Type::String,
                    false,
                    &RevisitStatus::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>(),
                )],
                revisits,
            ),
        )
        .path(
            "/v1/shops/{shop}/decisions",
            list(
                "decisions",
                "The shop's decision log",
                vec![
                    param(
                        "step",
                        ParameterIn::Query,
                        Type::String,
                        false,
                        &Step::ALL.map(Step::world),
                    ),
                    param("customer", ParameterIn::Query, Type::String, false, &[]),
                    param("order", ParameterIn::Query, Type::String, false, &[]),
                    param("version", ParameterIn::Query, Type::Integer, false, &[]),
                    param("since", ParameterIn::Query, Type::Integer, false, &[]),
                    param("until", ParameterIn::Query, Type::Integer, false, &[]),
                ],
                decisions,
            ),
        );
    let health = OperationBuilder::new()
        .operation_id(Some("healthz"))
        .response("200", ResponseBuilder::new().description("alive"));
    paths = paths.path("/healthz", PathItem::new(HttpMethod::Get, health));
    paths = manage::paths(paths, &mut schemas, &shop, &limit);
    paths = events::paths(paths, &mut schemas, &shop, &limit);
    schemas.push(("RevisitOutcome".into(), manage::outcome_schema().into()));

    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(InfoBuilder::new().title("kefu").version(env!("CARGO_PKG_VERSION")).description(Some("Customer-service workflow steps of online shops, run by each shop's WebAssembly plugins.")))
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// A step's operation: its request and answer schemas (added to
/// `schemas`) and its summary, from the step's own module.
struct StepSchemas<'a> {
    schemas: &'a mut Vec<(String, RefOr<Schema>)>,
}

impl VisitKind for StepSchemas<'_> {
    type Out = OperationBuilder;

    fn visit<K: StepKind>(self) -> OperationBuilder {
        let schemas = self.schemas;
        schemas.push((K::Request::name().into(), K::Request::schema()));
        <K::Request as ToSchema>::schemas(schemas);
        schemas.push((K::Answer::name().into(), K::Answer::schema()));
        <K::Answer as ToSchema>::schemas(schemas);
        let answer = object()
            .property(
                "decision_id",
                ObjectBuilder::new().schema_type(Type::Integer),
            )
            .property("output", Ref::from_schema_name(K::Answer::name()))
            .required("decision_id")
            .required("output");
        OperationBuilder::new()
            .summary(Some(K::SUMMARY))
            .operation_id(Some(K::ENDPOINT))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        json(Ref::from_schema_name(K::Request::name())),
                    )
                    .build(),
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("the plugin's decision")
                    .content("application/json", json(answer)),
            )
    }
}
