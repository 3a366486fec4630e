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

/// Buckets of an event from acceptance to its commit: the inbox's wait
/// comes in, so they reach further.
const EVENT_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
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
        ("kefu_event_latency_seconds", EVENT_BUCKETS),
    ];
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histograms {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            .map_err(|e| e.to_string())?;
    }
    let handle = builder.install_recorder().map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

/// `# HELP` for every metric kefu records (the README's metrics table
/// says the same), and `kefu_build_info`.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "kefu_build_info",
        "kefu's version, git commit and commit date (the value is always 1)"
    );
    metrics::gauge!("kefu_build_info", "version" => env!("CARGO_PKG_VERSION"), "commit" => env!("KEFU_GIT_COMMIT"), "date" => env!("KEFU_COMMIT_DATE")).set(1.0);
    describe_gauge!("kefu_shops", "Shops loaded");
    describe_gauge!(
        "process_cpu_seconds_total",
        "CPU time the process used (user and system), seconds"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        "Resident memory of the process, bytes"
    );
    describe_gauge!(
        "process_start_time_seconds",
        "When the process started, unix seconds"
    );
    describe_gauge!("process_open_fds", "File descriptors the process holds");
    describe_gauge!(
        "kefu_shops_degraded",
        "Shops serving while their shop.toml does not load"
    );
    describe_gauge!(
        "kefu_load_failures",
        "Load failures kept (details in GET /v1/plugins)"
    );
    describe_gauge!(
        "kefu_steps",
        "Shop steps serving (active) and without a working plugin (unavailable)"
    );
    describe_gauge!(
        "kefu_compiles",
        "Compiles running and queued in the compile lane"
    );
    describe_counter!(
        "kefu_version_calls_total",
        "Plugin calls by shop, step, version (a canary's apart from the stable one's) and outcome"
    );
    describe_counter!(
        "kefu_fallbacks_total",
        "Answers given by the next version in the step's chain after the serving one failed, by the failure's code"
    );
    describe_counter!(
        "kefu_canary_aborts_total",
        "Canaries aborted, by who aborted them (analysis or admin)"
    );
    describe_counter!(
        "kefu_shadow_calls_total",
        "Shadow runs of a candidate on live decisions, by result (same, different, error)"
    );
    describe_counter!(
        "kefu_shadow_dropped_total",
        "Live decisions a shadow never saw: its queue was full"
    );
    describe_counter!(
        "kefu_calls_total",
        "Plugin calls, by shop, step and outcome"
    );
    describe_counter!(
        "kefu_call_errors_total",
        "Failed plugin calls, by shop, step and error code"
    );
    describe_counter!(
        "kefu_calls_offloaded_total",
        "Calls moved to the slow lane after 5 ms of CPU"
    );
    describe_counter!(
        "kefu_quota_rejections_total",
        "429 answers, by shop and quota"
    );
    describe_counter!(
        "kefu_deploys_total",
        "Deploys from files and the API, by shop and outcome"
    );
    describe_counter!(
        "kefu_shop_reloads_total",
        "Shop reloads by the file watcher"
    );
    describe_counter!("kefu_revisits_fired_total", "Revisits come due");
    describe_counter!(
        "kefu_webhooks_total",
        "Webhook tries, by outcome (delivered, failed, dead)"
    );
    describe_counter!("kefu_storage_errors_total", "Storage failures, by kind");
    describe_histogram!(
        "kefu_call_duration_seconds",
        metrics::Unit::Seconds,
        "A plugin call alone"
    );
    describe_histogram!(
        "kefu_answer_duration_seconds",
        metrics::Unit::Seconds,
        "A step request in the handler: checks, call, decision log, flush wait"
    );
    describe_histogram!(
        "kefu_flush_duration_seconds",
        metrics::Unit::Seconds,
        "Group-commit flushes"
    );
    describe_histogram!(
        "kefu_flush_batch_size",
        "Answers served by one group-commit flush"
    );
    describe_counter!(
        "kefu_events_accepted_total",
        "Workflow events taken into an inbox (not duplicates)"
    );
    describe_counter!(
        "kefu_events_total",
        "Workflow events processed, by status (processed, failed)"
    );
    describe_counter!(
        "kefu_timers_fired_total",
        "Workflow timers come due (each a timer.fired event)"
    );
    describe_histogram!(
        "kefu_event_latency_seconds",
        metrics::Unit::Seconds,
        "A workflow event from acceptance to the commit of all it made"
    );
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

/// The process's own figures, as Prometheus' client libraries name them:
/// resident memory, CPU time, open file descriptors, start time (read
/// from `/proc/self` when the metrics are rendered; Linux only).
pub fn record_process_gauges() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain queries of constants.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK) as f64,
                libc::sysconf(libc::_SC_PAGESIZE) as f64,
            )
        };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command (which may hold spaces), from field 3.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
            if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                metrics::gauge!("process_cpu_seconds_total").set((utime + stime) / ticks);
            }
            if let Some(rss) = field(24) {
                metrics::gauge!("process_resident_memory_bytes").set(rss * page);
            }
            if let (Some(start), Ok(uptime)) = (field(22), std::fs::read_to_string("/proc/uptime"))
                && let Some(up) = uptime
                    .split_whitespace()
                    .next()
                    .and_then(|u| u.parse::<f64>().ok())
            {
                let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
                metrics::gauge!("process_start_time_seconds").set(now - up + start / ticks);
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            metrics::gauge!("process_open_fds").set(fds.count() as f64);
        }
    }
}
