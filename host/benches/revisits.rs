//! 1,000,000 scheduled revisits: insert rate, resident memory, and how late
//! they fire when the scheduler runs on the wall clock as in the server.
//!
//! cargo bench -p kefu --bench revisits [-- COUNT WINDOW_SECONDS]
//! (defaults: 1,000,000 revisits due over 60 s)

use kefu::app::Scheduler;
use kefu::storage_types::{RevisitRecord, RevisitStatus};
use kefu::{SledStorage, Storage};
use std::sync::Arc;
use std::time::Instant;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let count: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let window: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());

    // Due from after the inserts (≥ 20,000 per second), spread evenly over
    // the window.
    let headroom = 10 + (count / 20_000) as i64;
    let start = chrono::Utc::now().timestamp() + headroom;
    let rss_before = rss_mb();
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..count {
        batch.push(RevisitRecord {
            id: storage.next_id().unwrap(),
            shop: format!("shop-{}", i % 1000),
            customer_id: format!("c{i}"),
            due_at: start + (i as i64 * window) / count as i64,
            channel: kefu::types::Channel::Chat,
            purpose: "satisfaction".into(),
            message: "小王您好，宝贝用着还满意吗？".into(),
            max_attempts: 3,
            retry_after_hours: 24,
            status: RevisitStatus::Planned,
            decision_id: i as u64,
            attempts_made: 0,
            planned_at: start - 30,
            cause: None,
            outcomes: Vec::new(),
        });
        if batch.len() == 10_000 {
            storage.put_revisits(&batch).unwrap();
            batch.clear();
        }
    }
    storage.put_revisits(&batch).unwrap();
    storage.flush().unwrap();
    let insert = t.elapsed();
    println!(
        "inserted {count} revisits in {:.1} s: {:.0} per second; RSS {:.0} MB -> {:.0} MB",
        insert.as_secs_f64(),
        count as f64 / insert.as_secs_f64(),
        rss_before,
        rss_mb()
    );
    let wait = start - chrono::Utc::now().timestamp();
    if wait < 0 {
        println!(
            "inserting took longer than 30 s: firing starts {} s late",
            -wait
        );
    }

    // Fire them as the server does: tick every 200 ms on the wall clock.
    let scheduler = Scheduler::standalone(storage.clone());
    let mut lateness_ms: Vec<i64> = Vec::with_capacity(count);
    while lateness_ms.len() < count {
        let now = chrono::Utc::now();
        let fired = scheduler
            .tick(now.timestamp(), now.timestamp_millis())
            .unwrap();
        let done_ms = chrono::Utc::now().timestamp_millis();
        lateness_ms.extend(fired.iter().map(|r| done_ms - r.due_at * 1000));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    lateness_ms.sort_unstable();
    let pct = |p: usize| lateness_ms[(lateness_ms.len() - 1) * p / 100];
    println!(
        "fired {} revisits due over {window} s; lateness after the due second: p50 {} ms, p99 {} ms, max {} ms; RSS {:.0} MB",
        lateness_ms.len(),
        pct(50),
        pct(99),
        lateness_ms.last().unwrap(),
        rss_mb()
    );
}
