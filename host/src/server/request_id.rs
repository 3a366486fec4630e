//! The layer every request passes: a request id on every answer (`x-request-id`): the caller's own id
//! when it sends a sane one (a load balancer's, say), else a new one. With
//! the `kefu::request` target at debug (`KEFU_LOG=info,kefu::request=debug`)
//! every log line written while a request is handled names it too: a span
//! per request cost 11–18% of the greeting's throughput at 64 connections
//! (three pairs against the build without it), so it is off by default.
//! Every answer is counted in `kefu_http_requests_total` by route (the
//! route's template, not the path: `/v1/shops/{shop}/{step}`), method and
//! status. When spans are exported (OTLP, see `kefu serve`), the request's
//! span continues the caller's W3C `traceparent` and the answer's
//! `traceparent` names it. An error answer goes out in Chinese to a
//! caller whose `Accept-Language` prefers it (`language`).

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// The target of the request's span: its log lines name the request with
/// `KEFU_LOG=info,kefu::request=debug`; exported spans are these.
pub const SPAN_TARGET: &str = "kefu::request";

const TRACEPARENT: &str = "traceparent";

/// A W3C `traceparent` header's fields, as far as they are well formed:
/// version `00`, a trace id and parent id of hex digits, not all zero.
fn traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    (version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && nonzero(trace)
        && nonzero(parent))
    .then_some((trace, parent))
}

/// The request headers, as OpenTelemetry's propagators read them.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A caller's id is kept when it is 1 to 64 letters, digits, `-`, `_` or
/// `.`; anything else is replaced, never echoed.
fn sane(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A new id: this process's start (seconds) and a counter, in hex; unique
/// within the process, and apart from an earlier process's.
fn new_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| chrono::Utc::now().timestamp() as u32);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{start:08x}{n:08x}")).expect("hex is a valid header")
}

pub async fn layer(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(HEADER) {
        Some(id) if sane(id.as_bytes()) => id.clone(),
        _ => new_id(),
    };
    request.headers_mut().insert(HEADER, id.clone());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route_name = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(request.method());
    let chinese = super::language::prefers_chinese(request.headers());
    let span = tracing::debug_span!(
        target: SPAN_TARGET,
        "request",
        id = id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = request.uri().path(),
        route = route_name,
        trace_id = tracing::field::Empty,
        status = tracing::field::Empty,
        shop = tracing::field::Empty,
        step = tracing::field::Empty,
        version = tracing::field::Empty,
        decision_id = tracing::field::Empty,
    );
    let exported = !span.is_disabled();
    if exported {
        continue_trace(&span, request.headers());
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    if exported {
        span.record("status", response.status().as_u16());
        if let Some(value) = traceparent_of(&span) {
            response.headers_mut().insert(TRACEPARENT, value);
        }
    }
    count(route_name, method, response.status().as_u16());
    if chinese {
        response = super::language::localize(response);
    }
    response.headers_mut().insert(HEADER, id);
    response
}

/// A method as a label: the standard ones by name, any other as `other`
/// (a client inventing methods must not invent counters).
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

/// Counters of one route: by method and status.
type RouteCounters = Vec<(&'static str, u16, metrics::Counter)>;

/// Count an answer in `kefu_http_requests_total`. The counters are kept by
/// route, method and status, not looked up by label on every answer.
fn count(route: &str, method: &'static str, status: u16) {
    static COUNTERS: OnceLock<RwLock<HashMap<String, RouteCounters>>> = OnceLock::new();
    let counters = COUNTERS.get_or_init(Default::default);
    let find = |list: &RouteCounters| {
        list.iter()
            .find(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, c)| c.clone())
    };
    let known = counters
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(route)
        .and_then(find);
    let counter = known.unwrap_or_else(|| {
        let mut all = counters.write().unwrap_or_else(|e| e.into_inner());
        let list = all.entry(route.to_string()).or_default();
        find(list).unwrap_or_else(|| {
            let counter = metrics::counter!(
                "kefu_http_requests_total",
                "route" => route.to_string(),
                "method" => method,
                "status" => status.to_string(),
            );
            list.push((method, status, counter.clone()));
            counter
        })
    });
    counter.increment(1);
}

/// Make `span` a child of the caller's span, when it sent a well-formed
/// `traceparent`, and name the trace in its fields.
fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some((trace, _)) = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(traceparent)
    else {
        return;
    };
    span.record("trace_id", trace);
    let parent =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
}

/// The `traceparent` naming `span` (exported), for the answer.
fn traceparent_of(span: &tracing::Span) -> Option<HeaderValue> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if !ids.is_valid() {
        return None;
    }
    HeaderValue::from_str(&format!(
        "00-{}-{}-{:02x}",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_sane_ids_are_kept() {
        assert!(super::sane(b"lb-7f3a.2_x"));
        assert!(!super::sane(b""));
        assert!(!super::sane(&[b'a'; 65]));
        assert!(!super::sane(b"a b"));
        assert!(!super::sane("订单".as_bytes()));
    }

    #[test]
    fn invented_methods_count_as_other() {
        use axum::http::Method;
        assert_eq!(super::method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(super::method_label(&invented), "other");
    }

    #[test]
    fn only_well_formed_traceparents_are_continued() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            super::traceparent(good),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(super::traceparent(bad), None, "{bad}");
        }
    }
}
