//! One suite for every backend: the storage traits' behaviour, the same
//! on sled and on NATS (a real `nats-server`, see `kefu_tests::nats`),
//! across a restart of the store; then what only a shared store does
//! (two nodes, a view rebuilt from NATS, NATS restarted, a component
//! whose bytes do not match its name).

use super::*;
use crate::state::{StateError, StateScope};
use crate::storage::events::{ActionStatus, EventCommit, EventRecord, EventStatus, TimerRecord};
use kefu_tests::nats::Nats;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// A backend under test: opens (and, dropped and opened again, restarts)
/// its store.
struct Backend {
    dir: tempfile::TempDir,
    nats: Option<Nats>,
}

const QUOTA: u64 = 64;

impl Backend {
    fn sled() -> Backend {
        Backend {
            dir: tempfile::tempdir().unwrap(),
            nats: None,
        }
    }

    fn nats() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start(&dir.path().join("nats"));
        Backend {
            dir,
            nats: Some(nats),
        }
    }

    fn open(&self) -> Arc<dyn Storage> {
        match &self.nats {
            None => Arc::new(
                SledStorage::open(&self.dir.path().join("sled"))
                    .unwrap()
                    .with_state_quota(QUOTA),
            ),
            Some(nats) => Arc::new(node(nats, &self.dir.path().join("view-1"), "node-1")),
        }
    }
}

fn node(nats: &Nats, view: &Path, name: &str) -> NatsStorage {
    NatsStorage::open(NatsOptions {
        url: nats.url(),
        prefix: "kefu".into(),
        credentials: None,
        token: None,
        view_dir: view.to_path_buf(),
        cache_bytes: 8 << 20,
        state_quota: QUOTA,
        node: name.into(),
    })
    .unwrap()
}

fn decision(store: &dyn Storage, shop: &str, step: Step, at_ms: i64, customer: &str) -> Decision {
    Decision {
        id: store.next_id().unwrap(),
        shop: shop.into(),
        step,
        digest: "d".into(),
        version: 1,
        at_ms,
        now: at_ms / 1000,
        input: serde_json::value::RawValue::from_string(format!(
            r#"{{"customer":{{"id":"{customer}"}}}}"#
        ))
        .unwrap(),
        output: Some(serde_json::value::RawValue::from_string("{}".into()).unwrap()),
        error: None,
        duration_us: 1,
        canary: false,
        fallback: None,
        state_reads: Vec::new(),
        customer: customer.into(),
        order: None,
        logs: Vec::new(),
        event: None,
    }
}

fn refund_of(store: &dyn Storage, d: &Decision) -> RefundRecord {
    serde_json::from_value(json!({
        "id": store.next_id().unwrap(), "shop": d.shop, "order_id": "o1", "buyer_id": "b1",
        "at_ms": d.at_ms, "reason": "Quality", "kind": "RefundOnly", "requested": 100,
        "decision": { "outcome": "Approve", "amount": 100, "return_required": false,
                      "return_shipping": "None", "message": "ok" },
        "decision_id": d.id,
    }))
    .unwrap()
}

fn revisit(store: &dyn Storage, shop: &str, due_at: i64) -> RevisitRecord {
    serde_json::from_value(json!({
        "id": store.next_id().unwrap(), "shop": shop, "customer_id": "c", "due_at": due_at,
        "channel": "Chat", "purpose": "satisfaction", "message": "hi", "max_attempts": 3,
        "retry_after_hours": 24, "status": "planned", "decision_id": 1,
    }))
    .unwrap()
}

fn delivery(key: &str, shop: &str, next_try_ms: i64) -> Delivery {
    serde_json::from_value(json!({
        "key": key, "shop": shop, "url": "http://127.0.0.1:9/hook", "body": "{}",
        "tries": 0, "next_try_ms": next_try_ms, "last_error": null, "queued_ms": 1,
    }))
    .unwrap()
}

fn version_record(digest: &str, version: u64) -> VersionRecord {
    serde_json::from_value(json!({
        "version": version, "digest": digest, "config_json": "{}", "source": "api",
        "path": null, "actor": "admin", "at_ms": 1,
    }))
    .unwrap()
}

fn query(shop: &str) -> DecisionQuery {
    DecisionQuery {
        shop: shop.into(),
        limit: 100,
        ..DecisionQuery::default()
    }
}

fn event(store: &dyn Storage, id: &str, subject: &str) -> EventRecord {
    let mut e = EventRecord::pending(
        "s",
        id,
        "order.created",
        subject,
        1_800_000_000,
        1_800_000_000_000,
        "{}".into(),
    );
    e.seq = store.next_id().unwrap();
    e
}

/// Decisions with their effects, found by shop, step, customer and time,
/// counted by hour, pruned; there after a restart.
fn decision_log(b: &Backend) {
    let store = b.open();
    let s = store.as_ref();
    let mut ids = Vec::new();
    for t in 1..=4 {
        let d = decision(s, "s", Step::Greeting, t * 1000, "c1");
        s.record_decision(&d, &Effects::None).unwrap();
        ids.push(d.id);
    }
    let r = decision(s, "s", Step::RefundPolicy, 5000, "c2");
    s.record_decision(&r, &Effects::Refund(refund_of(s, &r)))
        .unwrap();
    let p = decision(s, "s", Step::RevisitPlanner, 6000, "c2");
    let planned = revisit(s, "s", 10);
    s.record_decision(&p, &Effects::Revisits(vec![planned.clone()]))
        .unwrap();
    let o = decision(s, "s", Step::OrderConfirmation, 3_600_000, "c3");
    s.record_decision(&o, &Effects::None).unwrap();
    s.flush().unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let check = |s: &dyn Storage| {
        assert_eq!(s.decisions(&query("s")).unwrap().len(), 7);
        assert_eq!(s.decisions(&query("other")).unwrap().len(), 0);
        let greet = s
            .decisions(&DecisionQuery {
                step: Some(Step::Greeting),
                since_ms: Some(2000),
                until_ms: Some(4000),
                ..query("s")
            })
            .unwrap();
        assert_eq!(
            greet.iter().map(|d| d.at_ms).collect::<Vec<_>>(),
            [3000, 2000],
            "newest first, until exclusive"
        );
        let of_c2 = s
            .decisions(&DecisionQuery {
                customer: Some("c2".into()),
                ..query("s")
            })
            .unwrap();
        assert_eq!(of_c2.len(), 2, "by customer");
        assert_eq!(s.refunds("s", 10).unwrap().len(), 1, "the refund kept");
        assert_eq!(s.revisit(planned.id).unwrap().as_ref(), Some(&planned));
        assert_eq!(
            s.orders_confirmed("s", 0, 7_200_000).unwrap(),
            [(3_600_000, 1)],
            "one order confirmed in that hour"
        );
        let mut seen = 0;
        s.scan_decisions(&query("s"), &mut |_| {
            seen += 1;
            true
        })
        .unwrap();
        assert_eq!(seen, 7);
        let times: Vec<i64> = s
            .decisions(&query("s"))
            .unwrap()
            .iter()
            .map(|d| d.at_ms)
            .collect();
        assert_eq!(
            times,
            [3_600_000, 6000, 5000, 4000, 3000, 2000, 1000],
            "newest first, entries with effects and without together"
        );
        let mut times = Vec::new();
        s.scan_decisions(&query("s"), &mut |d| {
            times.push(d.at_ms);
            true
        })
        .unwrap();
        assert_eq!(times, [1000, 2000, 3000, 4000, 5000, 6000, 3_600_000]);
        assert!(s.decision_at("s", r.at_ms, r.id).unwrap().is_some());
    };
    check(s);
    drop(store);
    let store = b.open();
    check(store.as_ref());
    assert_eq!(store.prune_decisions(3000).unwrap(), 2);
    assert_eq!(store.decisions(&query("s")).unwrap().len(), 5);
}

/// Plugin state: scopes apart, the quota refused, deletes; kept.
fn plugin_state(b: &Backend) {
    let store = b.open();
    let a = StateScope::new("s", "greeting");
    let other = StateScope::new("s", "refund-policy");
    store.set(&a, "k1", "v1").unwrap();
    store.set(&a, "k2", "v2").unwrap();
    store.set(&other, "k1", "x").unwrap();
    assert_eq!(store.get(&a, "k1").unwrap().as_deref(), Some("v1"));
    assert_eq!(store.get(&other, "k1").unwrap().as_deref(), Some("x"));
    assert_eq!(store.list_keys(&a, "k", None, 10).unwrap(), ["k1", "k2"]);
    match store.set(&a, "big", &"x".repeat(QUOTA as usize)) {
        Err(StateError::QuotaExceeded(_)) => {}
        other => panic!("over the quota must be refused, got {other:?}"),
    }
    assert!(store.delete(&a, "k2").unwrap());
    assert!(!store.delete(&a, "k2").unwrap(), "already gone");
    store.flush().unwrap();
    drop(store);
    let store = b.open();
    assert_eq!(store.get(&a, "k1").unwrap().as_deref(), Some("v1"));
    assert_eq!(store.get(&a, "k2").unwrap(), None);
    assert_eq!(store.get(&a, "big").unwrap(), None);
}

/// Components, versions, the active version, shop records, canaries,
/// the audit.
fn versions(b: &Backend) {
    let store = b.open();
    let bytes = b"\0asm component bytes".to_vec();
    let digest = crate::runtime::digest(&bytes);
    store.put_component(&digest, &bytes).unwrap();
    let record = version_record(&digest, 1);
    store.put_version("s", Step::Greeting, &record).unwrap();
    store
        .put_version(
            "s",
            Step::Greeting,
            &VersionRecord {
                version: 2,
                ..record.clone()
            },
        )
        .unwrap();
    store.set_active("s", Step::Greeting, 2).unwrap();
    let shop: ShopRecord = serde_json::from_value(json!({
        "id": "s", "name": "Shop", "key_sha256": null, "webhook_url": null,
        "webhook_secret_env": null,
    }))
    .unwrap();
    store.put_shop_record(&shop).unwrap();
    let audit: AuditEvent = serde_json::from_value(json!({
        "id": store.next_id().unwrap(), "at_ms": 5, "shop": "s", "step": "greeting",
        "action": "activated", "version": 2, "digest": digest, "source": "api",
        "actor": "admin", "reason": "",
    }))
    .unwrap();
    store.append_audit(&audit).unwrap();
    store.flush().unwrap();
    let check = |s: &dyn Storage, versions: &[u64]| {
        assert_eq!(s.component(&digest).unwrap().as_deref(), Some(&bytes[..]));
        assert_eq!(s.component("0000").unwrap(), None);
        let kept: Vec<u64> = s
            .versions("s", Step::Greeting)
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(kept, versions);
        assert_eq!(s.active("s", Step::Greeting).unwrap(), Some(2));
        assert_eq!(s.active("s", Step::RefundPolicy).unwrap(), None);
        assert_eq!(s.shop_record("s").unwrap().as_ref(), Some(&shop));
        assert_eq!(
            s.audit(Some("s"), 10).unwrap(),
            std::slice::from_ref(&audit)
        );
        assert!(s.version_digests().unwrap().contains(&digest));
    };
    check(store.as_ref(), &[1, 2]);
    store.remove_versions("s", Step::Greeting, &[1]).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = b.open();
    check(store.as_ref(), &[2]);
}

/// Revisits by due time, fired with their webhooks; the outbox.
fn revisits_and_outbox(b: &Backend) {
    let store = b.open();
    let early = revisit(store.as_ref(), "s", 100);
    let late = revisit(store.as_ref(), "s", 200);
    store.put_revisits(&[early.clone(), late.clone()]).unwrap();
    assert_eq!(
        store.due_revisits(150, 10).unwrap(),
        std::slice::from_ref(&early)
    );
    assert_eq!(store.revisits_due_before(1000).unwrap(), 2);
    let fired = RevisitRecord {
        status: RevisitStatus::Due,
        ..early.clone()
    };
    let hook = delivery("revisit-1", "s", 0);
    store
        .fire_revisits(std::slice::from_ref(&fired), std::slice::from_ref(&hook))
        .unwrap();
    store
        .put_deliveries(&[delivery("later", "s", 10_000)])
        .unwrap();
    store.set_do_not_contact("s", "c9", true).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = b.open();
    assert_eq!(store.due_revisits(150, 10).unwrap(), []);
    assert_eq!(store.revisit(early.id).unwrap(), Some(fired));
    assert_eq!(
        store.deliveries_ready(5, 10, 10).unwrap(),
        std::slice::from_ref(&hook)
    );
    assert_eq!(store.deliveries("s").unwrap().len(), 2);
    assert!(store.is_do_not_contact("s", "c9").unwrap());
    store.remove_delivery("revisit-1").unwrap();
    assert_eq!(store.delivery("revisit-1").unwrap(), None);
    assert_eq!(store.outbox_stats().unwrap().queued, 1);
}

/// The inbox: an event id once, commits, timers fired into events,
/// actions; kept.
fn workflow_events(b: &Backend) {
    let store = b.open();
    let first = event(store.as_ref(), "e1", "order:o1");
    assert_eq!(store.accept_event(&first).unwrap(), None);
    let again = event(store.as_ref(), "e1", "order:o1");
    assert_eq!(
        store.accept_event(&again).unwrap(),
        Some(first.clone()),
        "the same id answers the first record"
    );
    let second = event(store.as_ref(), "e2", "order:o1");
    store.accept_event(&second).unwrap();
    let pending: Vec<String> = store
        .pending_events(10)
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(pending, ["e1", "e2"], "arrival order");
    let timer = TimerRecord {
        id: store.next_id().unwrap(),
        shop: "s".into(),
        subject: "order:o1".into(),
        name: "remind".into(),
        at: 1_800_000_100,
        payload: "{}".into(),
        set_by: "e1".into(),
        chain: 1,
    };
    let action: ActionRecord = serde_json::from_value(json!({
        "id": store.next_id().unwrap(), "shop": "s", "idempotency_key": "e1/0",
        "event_id": "e1", "subject": "order:o1", "kind": "send-message",
        "data": {"text": "hi"}, "at_ms": 1, "status": "pending",
    }))
    .unwrap();
    let mut done = first.clone();
    done.status = EventStatus::Processed;
    done.commit = store.next_id().unwrap();
    store
        .commit_event(&EventCommit {
            event: done.clone(),
            decisions: Vec::new(),
            state: Some("{\"paid\":false}".into()),
            timers_set: vec![timer.clone()],
            timers_cancelled: Vec::new(),
            actions: vec![action.clone()],
            deliveries: Vec::new(),
        })
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let store = b.open();
    assert_eq!(
        store.event("s", "e1").unwrap().unwrap().status,
        EventStatus::Processed
    );
    assert_eq!(
        store.subject_state("s", "order:o1").unwrap().as_deref(),
        Some("{\"paid\":false}")
    );
    assert_eq!(
        store.due_timers(1_800_000_100, 10).unwrap(),
        std::slice::from_ref(&timer)
    );
    assert_eq!(
        store.due_timers(1_800_000_099, 10).unwrap(),
        [],
        "never early"
    );
    assert_eq!(store.subject_events("s", "order:o1", 10).unwrap().len(), 2);
    let fired = event(store.as_ref(), &format!("timer-{}", timer.id), "order:o1");
    store.fire_timer(&timer, &fired).unwrap();
    assert_eq!(store.timers("s", "order:o1").unwrap(), []);
    assert!(store.event("s", &fired.id).unwrap().is_some());
    assert!(
        store
            .set_action_status("s", action.id, ActionStatus::Delivered)
            .unwrap()
    );
    assert!(
        !store
            .set_action_status("s", 1, ActionStatus::Delivered)
            .unwrap()
    );
    assert_eq!(
        store
            .actions("s", Some(ActionStatus::Delivered), 0, 10)
            .unwrap()
            .len(),
        1
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sled_backend {
            $(#[test] fn $name() { super::$name(&super::Backend::sled()) })*
        }
        mod nats_backend {
            $(#[test] fn $name() { super::$name(&super::Backend::nats()) })*
        }
    };
}

conformance!(
    decision_log,
    plugin_state,
    versions,
    revisits_and_outbox,
    workflow_events
);

/// Two nodes, `a` and `c`, on one NATS (kept running by the backend).
fn two_nodes() -> (Backend, NatsStorage, NatsStorage) {
    let b = Backend::nats();
    let nats = b.nats.as_ref().unwrap();
    let a = node(nats, &b.dir.path().join("view-a"), "a");
    let c = node(nats, &b.dir.path().join("view-c"), "c");
    (b, a, c)
}

/// Wait (at most 5 s) until `f` holds: another node's view applies what
/// one node wrote a moment later.
fn eventually(what: &str, f: impl Fn() -> bool) {
    within(5, what, f)
}

fn within(secs: u64, what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn nodes_read_what_other_nodes_wrote() {
    let (_b, a, c) = two_nodes();
    let scope = StateScope::new("s", "greeting");
    a.set(&scope, "visits", "3").unwrap();
    a.set_active("s", Step::Greeting, 7).unwrap();
    let d = decision(&a, "s", Step::Greeting, 1000, "c1");
    a.record_decision(&d, &Effects::None).unwrap();
    a.flush().unwrap();
    eventually("state written through a, read through c", || {
        c.get(&scope, "visits").unwrap().as_deref() == Some("3")
    });
    eventually("a's deploy seen by c", || {
        c.active("s", Step::Greeting).unwrap() == Some(7)
    });
    eventually("a's decision in c's log", || {
        c.decisions(&query("s")).unwrap().len() == 1
    });
    // Ids of the two nodes never meet.
    let ids: std::collections::HashSet<u64> = (0..1000)
        .flat_map(|_| [a.next_id().unwrap(), c.next_id().unwrap()])
        .collect();
    assert_eq!(ids.len(), 2000);
    // The quota is judged in the stream's order: two nodes filling one
    // shop's state together never pass it.
    let fill = |store: &NatsStorage, tag: &str| {
        (0..8)
            .filter(|i| store.set(&scope, &format!("{tag}{i}"), "xxxxxxxx").is_ok())
            .count()
    };
    let (from_a, from_c) = std::thread::scope(|s| {
        let ja = s.spawn(|| fill(&a, "a"));
        let jc = s.spawn(|| fill(&c, "c"));
        (ja.join().unwrap(), jc.join().unwrap())
    });
    let kept = |store: &NatsStorage| store.list_keys(&scope, "", None, 100).unwrap().len();
    assert!(from_a + from_c < 16, "the quota stops them");
    assert_eq!(kept(&a), 1 + from_a + from_c, "what was accepted is kept");
    eventually("both views agree", || kept(&c) == kept(&a));
}

#[test]
fn an_event_id_sent_to_two_nodes_at_once_is_kept_once() {
    let (_b, a, c) = two_nodes();
    for i in 0..50 {
        let id = format!("e{i}");
        let (ea, ec) = (event(&a, &id, "order:o1"), event(&c, &id, "order:o1"));
        let (ra, rc) = std::thread::scope(|s| {
            let ja = s.spawn(|| a.accept_event(&ea).unwrap());
            let jc = s.spawn(|| c.accept_event(&ec).unwrap());
            (ja.join().unwrap(), jc.join().unwrap())
        });
        assert!(
            ra.is_none() != rc.is_none(),
            "exactly one node keeps event {id}: {ra:?} {rc:?}"
        );
    }
    eventually("50 pending on both", || {
        a.pending_events(100).unwrap().len() == 50 && c.pending_events(100).unwrap().len() == 50
    });
}

#[test]
fn a_revisit_fired_by_two_nodes_queues_its_webhook_once() {
    let (_b, a, c) = two_nodes();
    let r = revisit(&a, "s", 100);
    a.put_revisits(std::slice::from_ref(&r)).unwrap();
    eventually("c sees it due", || {
        c.due_revisits(100, 10).unwrap().len() == 1
    });
    let due = RevisitRecord {
        status: RevisitStatus::Due,
        ..r.clone()
    };
    // Each node fires it with a webhook of its own key: only the first
    // firing in the stream counts.
    a.fire_revisits(std::slice::from_ref(&due), &[delivery("from-a", "s", 0)])
        .unwrap();
    c.fire_revisits(std::slice::from_ref(&due), &[delivery("from-c", "s", 0)])
        .unwrap();
    eventually("both applied", || c.deliveries("s").unwrap().len() == 1);
    assert_eq!(a.deliveries("s").unwrap().len(), 1);
    assert_eq!(a.deliveries("s").unwrap()[0].key, "from-a");
}

#[test]
fn a_lost_view_is_built_again_from_nats() {
    let b = Backend::nats();
    let store = b.open();
    let d = decision(store.as_ref(), "s", Step::Greeting, 1000, "c1");
    store.record_decision(&d, &Effects::None).unwrap();
    store.set(&StateScope::new("s", "p"), "k", "v").unwrap();
    let bytes = b"component".to_vec();
    store
        .put_component(&crate::runtime::digest(&bytes), &bytes)
        .unwrap();
    store.flush().unwrap();
    drop(store);
    std::fs::remove_dir_all(b.dir.path().join("view-1")).unwrap();
    let store = b.open();
    assert_eq!(store.decisions(&query("s")).unwrap().len(), 1);
    assert_eq!(
        store
            .get(&StateScope::new("s", "p"), "k")
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(
        store.component(&crate::runtime::digest(&bytes)).unwrap(),
        Some(bytes),
        "fetched from the object store"
    );
}

#[test]
fn a_component_whose_bytes_are_not_its_digest_is_refused() {
    let b = Backend::nats();
    let nats = b.nats.as_ref().unwrap();
    let a = node(nats, &b.dir.path().join("view-a"), "a");
    let named = crate::runtime::digest(b"what the version names");
    a.put_object_unchecked(&named, b"something else");
    match a.component(&named) {
        Err(StorageError::Corrupt(e)) => assert!(e.contains("SHA-256"), "{e}"),
        other => panic!("must be refused, got {other:?}"),
    }
}

#[test]
fn writes_wait_out_a_nats_restart_and_nothing_acknowledged_is_lost() {
    let mut b = Backend::nats();
    let store = b.open();
    let mut written = Vec::new();
    for t in 0..20 {
        let d = decision(store.as_ref(), "s", Step::Greeting, 1000 + t, "c1");
        store.record_decision(&d, &Effects::None).unwrap();
        written.push(d.id);
    }
    store.flush().unwrap();
    let nats = b.nats.as_mut().unwrap();
    nats.kill();
    eventually("the store says NATS is gone", || store.flush().is_err());
    nats.restart();
    // The client reconnects by itself; writes go through again.
    within(20, "writes go through again", || {
        let d = decision(store.as_ref(), "s", Step::Greeting, 5000, "c1");
        store.record_decision(&d, &Effects::None).is_ok() && store.flush().is_ok()
    });
    let kept: std::collections::HashSet<u64> = store
        .decisions(&query("s"))
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert!(
        written.iter().all(|id| kept.contains(id)),
        "every decision acknowledged before the restart is there"
    );
    drop(store);
    // And in NATS itself: a view built from nothing has them.
    std::fs::remove_dir_all(b.dir.path().join("view-1")).unwrap();
    let store = b.open();
    let kept: std::collections::HashSet<u64> = store
        .decisions(&query("s"))
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert!(written.iter().all(|id| kept.contains(id)));
}

#[test]
fn a_sled_store_migrates_into_nats_with_its_history() {
    let b = Backend::nats();
    let sled_dir = b.dir.path().join("old-sled");
    let bytes = b"a component".to_vec();
    let digest = crate::runtime::digest(&bytes);
    let (d, r) = {
        let old = SledStorage::open(&sled_dir).unwrap();
        let d = decision(&old, "s", Step::RefundPolicy, 5000, "c2");
        old.record_decision(&d, &Effects::Refund(refund_of(&old, &d)))
            .unwrap();
        let o = decision(&old, "s", Step::OrderConfirmation, 3_600_000, "c3");
        old.record_decision(&o, &Effects::None).unwrap();
        old.set(&StateScope::new("s", "p"), "k", "v").unwrap();
        old.put_component(&digest, &bytes).unwrap();
        let record = version_record(&digest, 3);
        old.put_version("s", Step::Greeting, &record).unwrap();
        old.set_active("s", Step::Greeting, 3).unwrap();
        let r = revisit(&old, "s", 100);
        old.put_revisits(std::slice::from_ref(&r)).unwrap();
        old.accept_event(&event(&old, "e1", "order:o1")).unwrap();
        old.flush().unwrap();
        (d, r)
    };
    let old = SledStorage::open(&sled_dir).unwrap();
    let nats = b.nats.as_ref().unwrap();
    let copier = node(nats, &b.dir.path().join("view-copier"), "copier");
    let migrated = copier.migrate_from(&old, &mut |_| {}).unwrap();
    assert_eq!(migrated.components, 1);
    assert_eq!(migrated.records["decisions"], 2);
    // A node that never saw the sled store reads all of it.
    let fresh = node(nats, &b.dir.path().join("view-fresh"), "fresh");
    assert_eq!(fresh.decisions(&query("s")).unwrap().len(), 2);
    assert!(fresh.decision_at("s", d.at_ms, d.id).unwrap().is_some());
    assert_eq!(fresh.refunds("s", 10).unwrap().len(), 1);
    assert_eq!(
        fresh.orders_confirmed("s", 0, 7_200_000).unwrap(),
        [(3_600_000, 1)]
    );
    assert_eq!(
        fresh
            .get(&StateScope::new("s", "p"), "k")
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(fresh.active("s", Step::Greeting).unwrap(), Some(3));
    assert_eq!(fresh.component(&digest).unwrap(), Some(bytes));
    assert_eq!(fresh.due_revisits(100, 10).unwrap(), [r]);
    assert_eq!(fresh.pending_events(10).unwrap().len(), 1);
    // New ids come after the old ones.
    assert!(fresh.next_id().unwrap() > d.id);
    // Twice into one prefix is refused.
    let again = copier.migrate_from(&old, &mut |_| {});
    assert!(
        matches!(&again, Err(StorageError::Backend(e)) if e.contains("already holds")),
        "{again:?}"
    );
}
