//! The Prometheus recorder (installed once per process) and the gauges
//! counted at each scrape.

use super::registry::Registry;
use crate::steps::Step;
use crate::storage::Storage;
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
    // Histograms keep each sample until upkeep folds it into their
    // buckets, which nothing else does between scrapes: a server nobody
    // scrapes would grow by every answer's samples.
    let kept = handle.clone();
    std::thread::Builder::new()
        .name(UPKEEP_THREAD.into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                kept.run_upkeep();
            }
        })
        .map_err(|e| format!("cannot start the metrics' upkeep: {e}"))?;
    Ok(handle)
}

/// How often the histograms' samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// The thread that does it.
const UPKEEP_THREAD: &str = "kefu-metrics";

/// What kind of metric a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric kefu records, with its kind and `# HELP` text (the
/// README's metrics table says the same). Histograms ending in `_seconds`
/// are in seconds.
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "kefu_build_info",
        Kind::Gauge,
        "kefu's version, git commit and commit date (the value is always 1)",
    ),
    ("kefu_shops", Kind::Gauge, "Shops loaded"),
    (
        "process_cpu_seconds_total",
        Kind::Gauge,
        "CPU time the process used (user and system), seconds",
    ),
    (
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory of the process, bytes",
    ),
    (
        "process_start_time_seconds",
        Kind::Gauge,
        "When the process started, unix seconds",
    ),
    (
        "process_open_fds",
        Kind::Gauge,
        "File descriptors the process holds",
    ),
    (
        "kefu_shops_degraded",
        Kind::Gauge,
        "Shops serving while their shop.toml does not load",
    ),
    (
        "kefu_reused_instances_idle",
        Kind::Gauge,
        "Reused plugin instances kept idle, in all shops (at most 500: past it the least recently used goes)",
    ),
    (
        "kefu_load_failures",
        Kind::Gauge,
        "Load failures kept (details in GET /v1/plugins)",
    ),
    (
        "kefu_steps",
        Kind::Gauge,
        "Shop steps serving (active) and without a working plugin (unavailable)",
    ),
    (
        "kefu_compiles",
        Kind::Gauge,
        "Compiles running and queued in the compile lane",
    ),
    (
        "kefu_compiled_functions_total",
        Kind::Counter,
        "Functions of compiled components, by where their code came from: the compiled-function cache or the compiler",
    ),
    (
        "kefu_version_calls_total",
        Kind::Counter,
        "Plugin calls by shop, step, version (a canary's apart from the stable one's) and outcome",
    ),
    (
        "kefu_fallbacks_total",
        Kind::Counter,
        "Answers given by the next version in the step's chain after the serving one failed, by the failure's code",
    ),
    (
        "kefu_canary_aborts_total",
        Kind::Counter,
        "Canaries aborted, by who aborted them (analysis or admin)",
    ),
    (
        "kefu_shadow_calls_total",
        Kind::Counter,
        "Shadow runs of a candidate on live decisions, by result (same, different, error)",
    ),
    (
        "kefu_shadow_dropped_total",
        Kind::Counter,
        "Live decisions a shadow never saw: its queue was full",
    ),
    (
        "kefu_calls_total",
        Kind::Counter,
        "Plugin calls, by shop, step and outcome",
    ),
    (
        "kefu_call_errors_total",
        Kind::Counter,
        "Failed plugin calls, by shop, step and error code",
    ),
    (
        "kefu_calls_offloaded_total",
        Kind::Counter,
        "Calls moved to the slow lane after 5 ms of CPU",
    ),
    (
        "kefu_quota_rejections_total",
        Kind::Counter,
        "429 answers, by shop and quota",
    ),
    (
        "kefu_deploys_total",
        Kind::Counter,
        "Deploys from files and the API, by shop and outcome",
    ),
    (
        "kefu_shop_reloads_total",
        Kind::Counter,
        "Shop reloads by the file watcher",
    ),
    (
        "kefu_revisits_fired_total",
        Kind::Counter,
        "Revisits come due",
    ),
    (
        "kefu_webhooks_total",
        Kind::Counter,
        "Webhook tries, by outcome (delivered, failed, dead)",
    ),
    (
        "kefu_storage_errors_total",
        Kind::Counter,
        "Storage failures, by kind (disk-full, write, flush, stuck, deadline, probe, reopen)",
    ),
    (
        "kefu_storage_reopens_total",
        Kind::Counter,
        "Times the store was opened again after it failed",
    ),
    (
        "kefu_http_requests_total",
        Kind::Counter,
        "HTTP answers, by route template, method and status",
    ),
    (
        "kefu_webhooks_queued",
        Kind::Gauge,
        "Webhook deliveries waiting to succeed (not dead-lettered)",
    ),
    (
        "kefu_webhooks_dead",
        Kind::Gauge,
        "Webhook deliveries given up on (dead letters; GET /v1/shops/{shop}/webhooks?status=dead)",
    ),
    (
        "kefu_webhooks_oldest_age_seconds",
        Kind::Gauge,
        "Age of the oldest webhook delivery still being tried, seconds (0 when none)",
    ),
    (
        "kefu_revisits_overdue",
        Kind::Gauge,
        "Planned revisits more than a minute past their time that have not come due (the scheduler is behind or storage is failing)",
    ),
    (
        "kefu_call_duration_seconds",
        Kind::Histogram,
        "A plugin call alone",
    ),
    (
        "kefu_answer_duration_seconds",
        Kind::Histogram,
        "A step request in the handler: checks, call, decision log, flush wait",
    ),
    (
        "kefu_flush_duration_seconds",
        Kind::Histogram,
        "Group-commit flushes",
    ),
    (
        "kefu_flush_batch_size",
        Kind::Histogram,
        "Answers served by one group-commit flush",
    ),
    (
        "kefu_events_accepted_total",
        Kind::Counter,
        "Workflow events taken into an inbox (not duplicates)",
    ),
    (
        "kefu_events_total",
        Kind::Counter,
        "Workflow events processed, by status (processed, failed)",
    ),
    (
        "kefu_timers_fired_total",
        Kind::Counter,
        "Workflow timers come due (each a timer.fired event)",
    ),
    (
        "kefu_event_latency_seconds",
        Kind::Histogram,
        "A workflow event from acceptance to the commit of all it made",
    ),
];

/// `# HELP` for every metric kefu records, and `kefu_build_info`.
fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram if name.ends_with("_seconds") => {
                metrics::describe_histogram!(name, metrics::Unit::Seconds, help)
            }
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    metrics::gauge!("kefu_build_info", "version" => env!("CARGO_PKG_VERSION"), "commit" => env!("KEFU_GIT_COMMIT"), "date" => env!("KEFU_COMMIT_DATE")).set(1.0);
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

/// The webhook outbox and overdue revisits, counted at each scrape (a scan
/// of the outbox and of the overdue part of the due index: both as large
/// as the trouble they show, nothing otherwise).
pub fn record_backlog_gauges(storage: &dyn Storage, now_ms: i64) {
    match storage.outbox_stats() {
        Ok(stats) => {
            metrics::gauge!("kefu_webhooks_queued").set(stats.queued as f64);
            metrics::gauge!("kefu_webhooks_dead").set(stats.dead as f64);
            let age = stats
                .oldest_queued_ms
                .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
            metrics::gauge!("kefu_webhooks_oldest_age_seconds").set(age);
        }
        Err(e) => tracing::warn!(error = %e, "cannot count the webhook outbox"),
    }
    let before = now_ms / 1000 - REVISIT_GRACE_SECS;
    match storage.revisits_due_before(before) {
        Ok(n) => metrics::gauge!("kefu_revisits_overdue").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot count overdue revisits"),
    }
}

/// How long past its time a planned revisit may wait for the scheduler
/// (which looks every second) before it counts as overdue.
const REVISIT_GRACE_SECS: i64 = 60;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorder comes with the thread that folds its histograms'
    /// samples into their buckets (without it they pile up until a
    /// scrape).
    #[test]
    fn the_recorder_comes_with_its_upkeep() {
        handle().unwrap();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        };
        // A new thread names itself as it starts.
        let since = std::time::Instant::now();
        while !names().iter().any(|n| n == UPKEEP_THREAD) {
            assert!(since.elapsed().as_secs() < 5, "{:?}", names());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
