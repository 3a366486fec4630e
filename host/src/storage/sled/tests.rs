//! The decision log, atomic writes (with failures injected between their
//! parts) and opening a store written by an earlier build.

use super::*;
use crate::steps::Step;
use crate::storage::{
    Decision, DecisionLog, DecisionQuery, Delivery, Durable, Effects, Ids, Outbox, RevisitStatus,
    RevisitStore,
};

fn decision(store: &SledStorage, shop: &str, step: Step, at_ms: i64) -> Decision {
    let d = made(store, shop, step, at_ms);
    store.record_decision(&d, &Effects::None).unwrap();
    d
}

/// A decision of `shop`'s `step` at `at_ms`, not recorded.
fn made(store: &SledStorage, shop: &str, step: Step, at_ms: i64) -> Decision {
    Decision {
        id: store.next_id().unwrap(),
        shop: shop.into(),
        step,
        digest: "d".into(),
        version: 0,
        at_ms,
        now: at_ms / 1000,
        input: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        output: None,
        error: None,
        duration_us: 1,
        canary: false,
        fallback: None,
        state_reads: Vec::new(),
        customer: String::new(),
        order: None,
        logs: Vec::new(),
        event: None,
    }
}

#[test]
fn decisions_by_shop_step_and_time_and_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    for t in 1..=5 {
        decision(&store, "a", Step::Greeting, t * 1000);
        decision(&store, "a", Step::RefundPolicy, t * 1000 + 1);
        decision(&store, "ab", Step::Greeting, t * 1000);
    }
    let q = |step, since, until| DecisionQuery {
        shop: "a".into(),
        step,
        since_ms: since,
        until_ms: until,
        customer: None,
        order: None,
        version: None,
        limit: 100,
        scan_limit: None,
    };
    assert_eq!(
        store.decisions(&q(None, None, None)).unwrap().len(),
        10,
        "shop `ab` is not `a`"
    );
    let greet = store
        .decisions(&q(Some(Step::Greeting), Some(2000), Some(4000)))
        .unwrap();
    let times: Vec<i64> = greet.iter().map(|d| d.at_ms).collect();
    assert_eq!(times, [3000, 2000], "newest first, until exclusive");
    // Before 3000: a's 1000, 1001, 2000, 2001 and ab's 1000, 2000.
    assert_eq!(store.prune_decisions(3000).unwrap(), 6);
    let times = |shop: &str| -> Vec<i64> {
        let mut q = q(None, None, None);
        q.shop = shop.into();
        store
            .decisions(&q)
            .unwrap()
            .iter()
            .map(|d| d.at_ms)
            .collect()
    };
    assert_eq!(times("a"), [5001, 5000, 4001, 4000, 3001, 3000]);
    assert_eq!(times("ab"), [5000, 4000, 3000]);
    assert_eq!(
        store.prune_decisions(3000).unwrap(),
        0,
        "nothing left to prune"
    );
}

#[test]
fn the_old_decision_time_index_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let old = db.open_tree("decisions_by_time").unwrap();
        old.insert(b"k", b"v").unwrap();
        db.flush().unwrap();
    }
    let store = SledStorage::open(dir.path()).unwrap();
    assert!(
        !store
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == b"decisions_by_time")
    );
}

fn refund(store: &SledStorage, d: &Decision) -> crate::storage::RefundRecord {
    serde_json::from_value(serde_json::json!({
        "id": store.next_id().unwrap(), "shop": d.shop, "order_id": "o1", "buyer_id": "b1",
        "at_ms": d.at_ms, "reason": "Quality", "kind": "RefundOnly", "requested": 100,
        "decision": { "outcome": "Approve", "amount": 100, "return_required": false,
                      "return_shipping": "None", "message": "ok" },
        "decision_id": d.id,
    }))
    .unwrap()
}

fn planned(store: &SledStorage, due_at: i64) -> crate::storage::RevisitRecord {
    serde_json::from_value(serde_json::json!({
        "id": store.next_id().unwrap(), "shop": "a", "customer_id": "c", "due_at": due_at,
        "channel": "Chat", "purpose": "satisfaction", "message": "hi", "max_attempts": 3,
        "retry_after_hours": 24, "status": "planned", "decision_id": 1,
    }))
    .unwrap()
}

fn all_of(store: &SledStorage, shop: &str) -> usize {
    store
        .decisions(&DecisionQuery {
            shop: shop.into(),
            customer: None,
            limit: 100,
            ..DecisionQuery::default()
        })
        .unwrap()
        .len()
}

/// Inject `failure` at `point` of a decision's write, then (for a crash)
/// reopen the store as a restart would.
fn cut_short(
    dir: &std::path::Path,
    store: SledStorage,
    d: &Decision,
    effects: &Effects,
    point: &'static str,
    failure: Failure,
) -> SledStorage {
    *store.fail_at.lock().unwrap() = Some((point, failure));
    let err = store.record_decision(d, effects).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    *store.fail_at.lock().unwrap() = None;
    match failure {
        Failure::Error => store,
        Failure::Crash => {
            store.flush().unwrap();
            drop(store);
            SledStorage::open(dir).unwrap()
        }
    }
}

#[test]
fn a_decision_and_its_refund_are_written_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStorage::open(dir.path()).unwrap();
    let mut d = decision(&store, "a", Step::RefundPolicy, 1000);
    d.id = store.next_id().unwrap();
    let effects = Effects::Refund(refund(&store, &d));
    for failure in [Failure::Error, Failure::Crash] {
        store = cut_short(dir.path(), store, &d, &effects, "after-effects", failure);
        assert_eq!(
            all_of(&store, "a"),
            1,
            "{failure:?}: the cut decision is not logged"
        );
        assert!(
            store.refunds("a", 10).unwrap().is_empty(),
            "{failure:?}: nor its refund"
        );
        assert_eq!(store.intents.len(), 0, "{failure:?}: its intent is settled");
    }
    // Cut after the decision: it was logged, so everything is kept.
    store = cut_short(
        dir.path(),
        store,
        &d,
        &effects,
        "after-decision",
        Failure::Crash,
    );
    assert_eq!(all_of(&store, "a"), 2);
    assert_eq!(store.refunds("a", 10).unwrap().len(), 1);
    assert_eq!(store.intents.len(), 0);
}

#[test]
fn a_decision_and_its_revisits_are_written_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStorage::open(dir.path()).unwrap();
    let mut d = decision(&store, "a", Step::RevisitPlanner, 1000);
    d.id = store.next_id().unwrap();
    let effects = Effects::Revisits(vec![planned(&store, 5_000), planned(&store, 6_000)]);
    for failure in [Failure::Error, Failure::Crash] {
        store = cut_short(dir.path(), store, &d, &effects, "after-effects", failure);
        assert_eq!(all_of(&store, "a"), 1, "{failure:?}");
        assert!(
            store.revisits("a", None, 10).unwrap().is_empty(),
            "{failure:?}"
        );
        assert!(
            store.due_revisits(i64::MAX, 10).unwrap().is_empty(),
            "{failure:?}"
        );
    }
    store.record_decision(&d, &effects).unwrap();
    assert_eq!(store.revisits("a", None, 10).unwrap().len(), 2);
    assert_eq!(store.due_revisits(i64::MAX, 10).unwrap().len(), 2);
    assert_eq!(store.intents.len(), 0);
}

#[test]
fn a_revisit_moves_between_indexes_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    let mut r = planned(&store, 5_000);
    store.put_revisits(std::slice::from_ref(&r)).unwrap();
    // Re-planned later and fired: a failure after it left the old index
    // leaves it where it was, planned and due at its old time.
    r.due_at = 9_000;
    r.status = RevisitStatus::Due;
    *store.fail_at.lock().unwrap() = Some(("revisit-unindexed", Failure::Error));
    assert!(store.put_revisits(std::slice::from_ref(&r)).is_err());
    let kept = store.revisit(r.id).unwrap().unwrap();
    assert_eq!((kept.due_at, kept.status), (5_000, RevisitStatus::Planned));
    assert_eq!(store.due_revisits(5_000, 10).unwrap().len(), 1);
    // Fired with its webhook: neither without the other.
    let delivery = Delivery {
        key: format!("revisit-{}-1", r.id),
        shop: "a".into(),
        url: "http://127.0.0.1:9/".into(),
        body: "{}".into(),
        tries: 0,
        next_try_ms: 0,
        last_error: None,
        dead: false,
        idempotency_key: None,
        queued_ms: 0,
    };
    *store.fail_at.lock().unwrap() = Some(("webhooks-queued", Failure::Error));
    assert!(
        store
            .fire_revisits(std::slice::from_ref(&r), std::slice::from_ref(&delivery))
            .is_err()
    );
    assert!(store.deliveries_ready(i64::MAX, 10, 10).unwrap().is_empty());
    assert_eq!(store.due_revisits(5_000, 10).unwrap().len(), 1);
    assert_eq!(store.revisits_due_before(5_000).unwrap(), 0);
    assert_eq!(store.revisits_due_before(5_001).unwrap(), 1);
    *store.fail_at.lock().unwrap() = None;
    store
        .fire_revisits(std::slice::from_ref(&r), std::slice::from_ref(&delivery))
        .unwrap();
    assert_eq!(store.deliveries_ready(i64::MAX, 10, 10).unwrap().len(), 1);
    assert!(store.due_revisits(i64::MAX, 10).unwrap().is_empty());
    assert_eq!(store.revisits_due_before(i64::MAX).unwrap(), 0);
    let stats = store.outbox_stats().unwrap();
    assert_eq!(
        (stats.queued, stats.dead, stats.oldest_queued_ms),
        (1, 0, None)
    );
    assert_eq!(
        store
            .revisits("a", Some(RevisitStatus::Due), 10)
            .unwrap()
            .len(),
        1
    );
    store.flush().unwrap();
}

/// An event as accepted: pending, in the inbox.
fn pending_event(store: &SledStorage, id: &str) -> crate::storage::EventRecord {
    use crate::storage::{EventRecord, EventStore};
    let mut e = EventRecord::pending(
        "a",
        id,
        "order.created",
        "order:o1",
        1_800_000_000,
        1_800_000_000_000,
        "{}".into(),
    );
    e.seq = store.next_id().unwrap();
    assert!(store.accept_event(&e).unwrap().is_none());
    e
}

#[test]
fn an_event_and_all_it_made_are_committed_together_or_not_at_all() {
    use crate::storage::{
        ActionRecord, ActionStatus, EventCommit, EventStatus, EventStore, TimerRecord,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = SledStorage::open(dir.path()).unwrap();
    let e = pending_event(&store, "e1");
    // What the subject had before: a state and a timer the event moves.
    let old_timer = TimerRecord {
        id: store.next_id().unwrap(),
        shop: "a".into(),
        subject: "order:o1".into(),
        name: "reminder".into(),
        at: 1_800_000_100,
        payload: String::new(),
        set_by: "e0".into(),
        chain: 0,
    };
    let mut earlier = pending_event(&store, "e0");
    earlier.status = EventStatus::Processed;
    earlier.commit = store.next_id().unwrap();
    store
        .commit_event(&EventCommit {
            event: earlier,
            decisions: Vec::new(),
            state: Some("before".into()),
            timers_set: vec![old_timer.clone()],
            timers_cancelled: Vec::new(),
            actions: Vec::new(),
            deliveries: Vec::new(),
        })
        .unwrap();
    let commit = |store: &SledStorage| {
        let mut d = made(store, "a", Step::Workflow, 2000);
        d.customer = "c1".into();
        d.order = Some("o1".into());
        d.event = Some("e1".into());
        let mut event = e.clone();
        event.status = EventStatus::Processed;
        event.commit = store.next_id().unwrap();
        event.decisions = vec![crate::storage::DecisionRef {
            id: d.id,
            step: "workflow".into(),
            version: d.version,
            at_ms: d.at_ms,
            ok: true,
        }];
        EventCommit {
            event,
            decisions: vec![(d, Effects::None)],
            state: Some("after".into()),
            timers_set: vec![TimerRecord {
                id: store.next_id().unwrap(),
                at: 1_800_000_500,
                ..old_timer.clone()
            }],
            timers_cancelled: Vec::new(),
            actions: vec![ActionRecord {
                id: store.next_id().unwrap(),
                shop: "a".into(),
                idempotency_key: "e1/1".into(),
                event_id: "e1".into(),
                subject: "order:o1".into(),
                kind: "hand-off".into(),
                data: serde_json::json!({"reason": "x"}),
                at_ms: 0,
                status: ActionStatus::Pending,
            }],
            deliveries: Vec::new(),
        }
    };
    for failure in [Failure::Error, Failure::Crash] {
        let c = commit(&store);
        *store.fail_at.lock().unwrap() = Some(("before-event-commit", failure));
        assert!(store.commit_event(&c).is_err());
        *store.fail_at.lock().unwrap() = None;
        if failure == Failure::Crash {
            store.flush().unwrap();
            drop(store);
            store = SledStorage::open(dir.path()).unwrap();
        }
        // Nothing of it: the event still pending and first in line, the
        // state and the timer as before, no decision, no action.
        let now = store.event("a", "e1").unwrap().unwrap();
        assert_eq!(now.status, EventStatus::Pending, "{failure:?}");
        let inbox = store.pending_events(10).unwrap();
        assert_eq!(inbox.len(), 1, "{failure:?}: {inbox:?}");
        assert_eq!(inbox[0].id, "e1");
        assert_eq!(
            store.subject_state("a", "order:o1").unwrap().as_deref(),
            Some("before")
        );
        assert_eq!(
            store.timers("a", "order:o1").unwrap(),
            vec![old_timer.clone()]
        );
        assert_eq!(
            store.due_timers(1_800_000_100, 10).unwrap(),
            vec![old_timer.clone()]
        );
        assert!(
            store.actions("a", None, 0, 10).unwrap().is_empty(),
            "{failure:?}"
        );
        assert_eq!(all_of(&store, "a"), 0, "{failure:?}: no decision");
        assert_eq!(store.event_intents.len(), 0);
    }
    // Whole: all of it.
    let c = commit(&store);
    store.commit_event(&c).unwrap();
    assert_eq!(
        store.event("a", "e1").unwrap().unwrap().status,
        EventStatus::Processed
    );
    assert!(store.pending_events(10).unwrap().is_empty());
    assert_eq!(
        store.subject_state("a", "order:o1").unwrap().as_deref(),
        Some("after")
    );
    assert!(
        store.due_timers(1_800_000_100, 10).unwrap().is_empty(),
        "the old due time is gone"
    );
    assert_eq!(store.due_timers(1_800_000_500, 10).unwrap().len(), 1);
    assert_eq!(store.actions("a", None, 0, 10).unwrap().len(), 1);
    assert_eq!(all_of(&store, "a"), 1);
    // Its decision is found by its buyer and its order (the index is
    // written in the same commit).
    for (customer, order) in [(Some("c1"), None), (None, Some("o1"))] {
        let found = store
            .decisions(&DecisionQuery {
                shop: "a".into(),
                customer: customer.map(Into::into),
                order: order.map(Into::into),
                limit: 10,
                ..DecisionQuery::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1, "{customer:?} {order:?}");
    }
    // Reopened, the log's segments indexed again from their frames: the
    // decision its event lists is there, those of the two commits that
    // did not happen are not.
    store.flush().unwrap();
    drop(store);
    store = SledStorage::open(dir.path()).unwrap();
    assert_eq!(all_of(&store, "a"), 1, "after reopening");
    // The same id again is the first record, not a new event.
    let again = store
        .accept_event(&pending_event_record(&store, "e1"))
        .unwrap();
    assert_eq!(again.unwrap().status, EventStatus::Processed);
}

fn pending_event_record(store: &SledStorage, id: &str) -> crate::storage::EventRecord {
    let mut e = crate::storage::EventRecord::pending(
        "a",
        id,
        "order.created",
        "order:o1",
        1_800_000_000,
        0,
        "{}".into(),
    );
    e.seq = store.next_id().unwrap();
    e
}

/// A decision of `customer` (and `order`) at `at_ms`.
fn about(store: &SledStorage, customer: &str, order: Option<&str>, at_ms: i64) -> Decision {
    let mut d = made(store, "s", Step::RefundPolicy, at_ms);
    d.customer = customer.into();
    d.order = order.map(Into::into);
    store.record_decision(&d, &Effects::None).unwrap();
    d
}

#[test]
fn decisions_are_found_by_customer_and_order_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    for t in 1..=300 {
        about(
            &store,
            &format!("c{}", t % 3),
            Some(&format!("o{t}")),
            t * 1000,
        );
    }
    // An id holding the separator byte does not mix with another's.
    about(&store, "c1\0x", None, 5_000);
    let q = |customer: Option<&str>, order: Option<&str>, since, until, limit| DecisionQuery {
        shop: "s".into(),
        customer: customer.map(Into::into),
        order: order.map(Into::into),
        since_ms: since,
        until_ms: until,
        limit,
        ..DecisionQuery::default()
    };
    let found = store
        .decisions(&q(Some("c1"), None, None, None, 1000))
        .unwrap();
    assert_eq!(found.len(), 100);
    assert!(
        found.windows(2).all(|w| w[0].at_ms > w[1].at_ms),
        "newest first"
    );
    assert!(found.iter().all(|d| d.customer == "c1"));
    let window = store
        .decisions(&q(Some("c1"), None, Some(10_000), Some(20_000), 1000))
        .unwrap();
    let times: Vec<i64> = window.iter().map(|d| d.at_ms).collect();
    assert_eq!(times, vec![19_000, 16_000, 13_000, 10_000]);
    let one = store
        .decisions(&q(None, Some("o42"), None, None, 10))
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].customer, "c0");
    assert_eq!(
        store
            .decisions(&q(Some("c1\0x"), None, None, None, 10))
            .unwrap()
            .len(),
        1
    );
    // Pruning takes the index entries with the decisions.
    store.prune_decisions(150_500).unwrap();
    assert_eq!(
        store
            .decisions(&q(Some("c1"), None, None, None, 1000))
            .unwrap()
            .len(),
        50
    );
    // Plain decisions are indexed in their segments, not in sled.
    assert_eq!(store.decision_subjects.len(), 1, "the marker alone");
}

/// A decision of `customer` kept in sled as an earlier build (or a
/// decision with effects) keeps it: the entry and its index.
fn in_sled(store: &SledStorage, customer: &str, order: Option<&str>, at_ms: i64) -> Decision {
    let mut d = made(store, "s", Step::RefundPolicy, at_ms);
    d.customer = customer.into();
    d.order = order.map(Into::into);
    store
        .decisions
        .insert(
            super::keys::timed_key("s", at_ms, d.id),
            super::keys::encode(&d).unwrap(),
        )
        .unwrap();
    for key in super::decisions::subject_keys(&d) {
        store.decision_subjects.insert(key, &[]).unwrap();
    }
    d
}

#[test]
fn decisions_in_sled_and_in_segments_read_as_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for t in 1..=40 {
        let d = if t % 3 == 0 {
            in_sled(&store, &format!("c{}", t % 2), Some("o"), t * 1000)
        } else {
            about(&store, &format!("c{}", t % 2), Some("o"), t * 1000)
        };
        ids.push(d.id);
    }
    let q = |customer: Option<&str>, limit| DecisionQuery {
        shop: "s".into(),
        customer: customer.map(Into::into),
        limit,
        ..DecisionQuery::default()
    };
    let newest: Vec<u64> = ids.iter().rev().copied().collect();
    let got = |q: &DecisionQuery| -> Vec<u64> {
        store.decisions(q).unwrap().iter().map(|d| d.id).collect()
    };
    assert_eq!(got(&q(None, 100)), newest);
    assert_eq!(got(&q(None, 7)), newest[..7]);
    let of_c1: Vec<u64> = newest.iter().copied().skip(1).step_by(2).collect();
    assert_eq!(got(&q(Some("c1"), 100)), of_c1, "by buyer, both homes");
    let mut seen = Vec::new();
    store
        .scan_decisions(&q(None, 1), &mut |d| {
            seen.push(d.id);
            true
        })
        .unwrap();
    assert_eq!(seen, ids, "oldest first, both homes merged");
    assert_eq!(store.prune_decisions(20_500).unwrap(), 20);
    assert_eq!(got(&q(None, 100)), newest[..20]);
}

#[test]
fn a_store_without_the_index_gets_one_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(dir.path()).unwrap();
        for t in 1..=10 {
            in_sled(&store, "old", Some("o"), t * 1000);
        }
        // As an earlier build left it: no index at all.
        store.decision_subjects.clear().unwrap();
        store.db.flush().unwrap();
    }
    let store = SledStorage::open(dir.path()).unwrap();
    let found = store
        .decisions(&DecisionQuery {
            shop: "s".into(),
            order: Some("o".into()),
            limit: 100,
            ..DecisionQuery::default()
        })
        .unwrap();
    assert_eq!(found.len(), 10);
}

#[test]
fn orders_confirmed_are_tallied_by_hour() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    let hour = 3_600_000;
    let t0 = 1_800_000_000_000 / hour * hour;
    for at in [t0, t0 + 10, t0 + hour - 1, t0 + 2 * hour, t0 + 5 * hour] {
        decision(&store, "a", Step::OrderConfirmation, at);
    }
    // Other steps, failed calls and other shops are not orders confirmed.
    decision(&store, "a", Step::Greeting, t0);
    let mut failed = decision(&store, "a", Step::OrderConfirmation, t0);
    failed.id = store.next_id().unwrap();
    failed.error = Some(crate::storage::DecisionError {
        code: "plugin_trap".into(),
        message: "x".into(),
    });
    store.record_decision(&failed, &Effects::None).unwrap();
    decision(&store, "ab", Step::OrderConfirmation, t0);
    let all = store.orders_confirmed("a", t0, t0 + 24 * hour).unwrap();
    assert_eq!(all, vec![(t0, 4), (t0 + 2 * hour, 1), (t0 + 5 * hour, 1)]);
    // An hour counts when the window holds its start.
    assert_eq!(
        store.orders_confirmed("a", t0 + 1, t0 + 5 * hour).unwrap(),
        vec![(t0 + 2 * hour, 1)]
    );
}

#[test]
fn opening_waits_out_a_lock_let_go_of_in_a_moment_and_refuses_one_held_on() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledStorage::open(dir.path()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _ = rx.recv();
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(first);
    });
    tx.send(()).unwrap();
    // Let go of 200 ms from now: this open waits for it.
    let second = SledStorage::open(dir.path()).unwrap();
    holder.join().unwrap();
    // Held on past the wait: refused, saying why.
    let started = std::time::Instant::now();
    let err = SledStorage::open(dir.path())
        .err()
        .expect("the store is held");
    assert!(matches!(err, StorageError::Locked(_)), "{err}");
    assert!(started.elapsed() >= LOCK_WAIT, "{:?}", started.elapsed());
    drop(second);
}

/// sled's own background flush is off (it could make an event's record
/// durable before the decision-log frames it lists); the store's flusher
/// does it instead, segments first, every half second.
#[test]
fn the_store_flushes_itself_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    decision(&store, "a", Step::Greeting, 1000);
    let started = std::time::Instant::now();
    while store
        .flusher
        .flushes
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(started.elapsed().as_secs() < 5, "never flushed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Its thread lets go of the store with it: opened again at once.
    drop(store);
    let again = SledStorage::open(dir.path()).unwrap();
    assert_eq!(all_of(&again, "a"), 1);
}
