//! The Prometheus recorder (installed once per process) and the gauges
//! counted at each scrape.

use super::registry::Registry;
use crate::steps::Step;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Buckets of the latency histograms (plugin calls, group-commit flushes),
/// in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Buckets of whole answers, finer between 1 and 10 ms where a loaded
/// server's tail lies.
const ANSWER_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.001_5, 0.002, 0.003, 0.004, 0.005, 0.007_5, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

/// The process's recorder: installed by the first app opened, shared by
/// any later one (tests open several in one process).
pub fn handle() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn install() -> Result<PrometheusHandle, String> {
    let histograms = [
        ("kefu_call_duration_seconds", LATENCY_BUCKETS),
        ("kefu_flush_duration_seconds", LATENCY_BUCKETS),
        ("kefu_answer_duration_seconds", ANSWER_BUCKETS),
    ];
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histograms {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            .map_err(|e| e.to_string())?;
    }
    builder.install_recorder().map_err(|e| e.to_string())
}

/// What is loaded, counted at each scrape so it is always current.
pub fn record_shop_gauges(registry: &Registry) {
    let shops = registry.all();
    // As in the plugin listing.
    let (active, unavailable) = shops.values().fold((0, 0), |(a, u), shop| {
        let down = Step::ALL.into_iter();
        let down = down.filter(|&step| shop.unavailable_reason(step).is_some());
        (a + shop.steps.len(), u + down.count())
    });
    metrics::gauge!("kefu_shops").set(shops.len() as f64);
    let degraded = shops.values().filter(|s| s.degraded.is_some()).count();
    metrics::gauge!("kefu_shops_degraded").set(degraded as f64);
    metrics::gauge!("kefu_steps", "status" => "active").set(active as f64);
    metrics::gauge!("kefu_steps", "status" => "unavailable").set(unavailable as f64);
    metrics::gauge!("kefu_load_failures").set(registry.failure_count() as f64);
}
