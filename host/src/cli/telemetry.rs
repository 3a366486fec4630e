//! Logs and traces: log lines to stderr (text or JSON) at `KEFU_LOG`'s
//! level, and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, each HTTP request's span
//! (route, status, shop, step, version, decision id; a child of the
//! caller's W3C `traceparent`) exported over OTLP/HTTP. The other
//! `OTEL_*` variables (protocol, headers, timeout, `OTEL_SERVICE_NAME`,
//! `OTEL_BSP_SCHEDULE_DELAY`...) apply as the OpenTelemetry SDK reads them.

use super::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes and stops the span exporter when dropped (at exit).
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("kefu: spans not all exported at exit: {e}");
        }
    }
}

/// Whether the environment names an OTLP endpoint.
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// Start logging (and, with `traces` and an OTLP endpoint set, span
/// export); the default level is `level`.
pub fn init(format: LogFormat, level: &str, traces: bool) -> Telemetry {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KEFU_LOG").unwrap_or_else(|_| level.into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
    };
    let provider = (traces && otlp_configured())
        .then(exporter)
        .and_then(|built| match built {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!("kefu: no span export: {e}");
                None
            }
        });
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("kefu"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(kefu::server::REQUEST_SPAN_TARGET, tracing::Level::DEBUG),
            )
    });
    tracing_subscriber::registry().with(logs).with(spans).init();
    if provider.is_some() {
        tracing::info!("exporting request spans over OTLP");
    }
    Telemetry(provider)
}

fn exporter() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "kefu".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}
