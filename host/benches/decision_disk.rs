//! What the decision log takes on disk, and whether retention gives it
//! back: decisions written at a steady rate (each with its own buyer and
//! order, as live traffic has), flushed in groups as the server's group
//! commit does, pruned as the server prunes with a short retention; the data
//! folder's size sampled against the live entries' own size.
//!
//! cargo bench -p kefu --bench decision_disk -- [SECONDS] [RETENTION_S] [PER_SECOND]
//! (defaults 60, 20, 5000; #29 asks for 600 s with 60 s of retention)

use kefu::SledStorage;
use kefu::storage_types::{DecisionLog, Durable, Effects, Ids};
use serde_json::value::RawValue;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes the files under `dir` take on disk (allocated blocks).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            disk_bytes(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(60);
    let retention_ms = args.get(1).copied().unwrap_or(20) as i64 * 1000;
    let rate = args.get(2).copied().unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path())
        .unwrap()
        .with_decision_retention(retention_ms as u64);
    let input =
        std::fs::read_to_string(kefu_tests::example("requests/greeting/discount.json")).unwrap();
    let output = r#"{"reply":"您好，欢迎光临山野茶油旗舰店，我是客服慧兰 :)","quick_replies":["查询物流"],"hand_off":false,"matched_keywords":["便宜"],"off_hours":false}"#;
    let mut live: std::collections::VecDeque<(i64, u64)> = Default::default();
    let (mut live_bytes, mut written, mut written_bytes) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    // As the server does: every twentieth of the retention, at least 1 s.
    let prune_every = Duration::from_millis(retention_ms as u64 / 20).max(Duration::from_secs(1));
    let mut next_prune = prune_every;
    let mut next_sample = Duration::ZERO;
    let mut peak = 0f64;
    println!("seconds  written  live  live MB  disk MB  disk/live  disk per written decision");
    while start.elapsed() < Duration::from_secs(seconds) {
        let tick = Instant::now();
        // One group commit's worth: a millisecond of the rate.
        let group = (rate / 1000).max(1);
        for _ in 0..group {
            let id = store.next_id().unwrap();
            let d = kefu::storage_types::Decision {
                id,
                shop: format!("shop-{:04}", id % 1000),
                step: kefu::Step::Greeting,
                digest: "f864a9a9696026bc7c38006e9e35e33d9623f0cd7a8bfa26e93ef01c3795cb30".into(),
                version: 1,
                at_ms: now_ms(),
                now: 1_795_140_000,
                input: RawValue::from_string(input.clone()).unwrap(),
                output: Some(RawValue::from_string(output.into()).unwrap()),
                error: None,
                duration_us: 35,
                canary: false,
                fallback: None,
                state_reads: Vec::new(),
                customer: format!("buyer-{id}"),
                order: Some(format!("T{id}")),
                logs: Vec::new(),
                event: None,
            };
            let size = serde_json::to_vec(&d).unwrap().len() as u64;
            store.record_decision(&d, &Effects::None).unwrap();
            live.push_back((d.at_ms, size));
            live_bytes += size;
            written += 1;
            written_bytes += size;
        }
        Durable::flush(&store).unwrap();
        let elapsed = start.elapsed();
        if elapsed >= next_prune {
            let cutoff = now_ms() - retention_ms;
            store.prune_decisions(cutoff).unwrap();
            while live.front().is_some_and(|(at, _)| *at < cutoff) {
                live_bytes -= live.pop_front().unwrap().1;
            }
            next_prune = elapsed + prune_every;
        }
        if elapsed >= next_sample {
            let disk = disk_bytes(dir.path());
            let ratio = disk as f64 / live_bytes.max(1) as f64;
            if elapsed > Duration::from_millis(retention_ms as u64 + 5_000) {
                peak = peak.max(ratio);
            }
            println!(
                "{:>7}  {written:>7}  {:>4}  {:>7.1}  {:>7.1}  {ratio:>9.2}  {:>6} bytes",
                elapsed.as_secs(),
                live.len(),
                live_bytes as f64 / 1e6,
                disk as f64 / 1e6,
                disk / written.max(1),
            );
            next_sample = elapsed + Duration::from_secs(10);
        }
        if let Some(rest) = Duration::from_millis(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let disk = disk_bytes(dir.path());
    println!(
        "written {written} decisions ({:.0} bytes each as JSON); disk {:.1} MB; live {:.1} MB; \
         disk/live now {:.2}, peak after the first retention {peak:.2}",
        written_bytes as f64 / written.max(1) as f64,
        disk as f64 / 1e6,
        live_bytes as f64 / 1e6,
        disk as f64 / live_bytes.max(1) as f64,
    );
}
