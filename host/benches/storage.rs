//! What the decision log costs: one entry written (buffered), one entry
//! written and flushed (what an answer waits for when alone), and a batch
//! of 64 entries sharing one flush (group commit under load); and one
//! entry that also keeps the state read its call made (what a replay
//! needs of an order confirmation that remembers its reminders).
//!
//! cargo bench -p kefu --bench storage

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kefu::storage_types::{DecisionLog, Durable, Effects, Ids};
use kefu::{SledStorage, Step};
use serde_json::value::RawValue;

fn entry(
    store: &SledStorage,
    input: &RawValue,
    output: &RawValue,
) -> kefu::storage_types::Decision {
    kefu::storage_types::Decision {
        id: store.next_id().unwrap(),
        shop: "tea-oil".into(),
        step: Step::Greeting,
        digest: "f864a9a9696026bc7c38006e9e35e33d9623f0cd7a8bfa26e93ef01c3795cb30".into(),
        version: 1,
        at_ms: chrono::Utc::now().timestamp_millis(),
        now: 1_795_140_000,
        input: input.to_owned(),
        output: Some(output.to_owned()),
        error: None,
        duration_us: 35,
        canary: false,
        fallback: None,
        state_reads: Vec::new(),
        // A refund's decision: indexed by its buyer and its order.
        customer: "tb_xiaowang".into(),
        order: Some("T20261118001".into()),
        logs: Vec::new(),
        event: None,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    let input = RawValue::from_string(
        std::fs::read_to_string(kefu_tests::example("requests/greeting/discount.json")).unwrap(),
    )
    .unwrap();
    let output = serde_json::value::to_raw_value(&serde_json::json!({"reply": "您好，欢迎光临山野茶油旗舰店，我是客服慧兰 :)", "quick_replies": ["查询物流"], "hand_off": false, "matched_keywords": ["便宜"], "off_hours": false})).unwrap();
    let mut group = c.benchmark_group("decision-log");
    let read = vec![kefu::storage_types::StateRead::Get {
        key: "reminded/T20261118001".into(),
        value: Some("1795140000".into()),
    }];
    let plain = serde_json::to_vec(&entry(&store, &input, &output))
        .unwrap()
        .len();
    let mut with_read = entry(&store, &input, &output);
    with_read.state_reads = read.clone();
    let bigger = serde_json::to_vec(&with_read).unwrap().len();
    eprintln!("decision record: {plain} bytes; with one state read: {bigger} bytes");
    group.bench_function("write (1 state read)", |b| {
        b.iter(|| {
            let mut d = entry(&store, &input, &output);
            d.state_reads = read.clone();
            store.record_decision(&d, &Effects::None).unwrap()
        })
    });
    group.bench_function("write", |b| {
        b.iter(|| {
            store
                .record_decision(&entry(&store, &input, &output), &Effects::None)
                .unwrap()
        })
    });
    group.bench_function("write+flush", |b| {
        b.iter(|| {
            store
                .record_decision(&entry(&store, &input, &output), &Effects::None)
                .unwrap();
            Durable::flush(&store).unwrap();
        })
    });
    group.bench_function("64 writes+1 flush", |b| {
        b.iter_batched(
            || {
                (0..64)
                    .map(|_| entry(&store, &input, &output))
                    .collect::<Vec<_>>()
            },
            |batch| {
                for d in &batch {
                    store.record_decision(d, &Effects::None).unwrap();
                }
                Durable::flush(&store).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
