//! The decision log and opening a store written by an earlier build.

use super::*;
use crate::storage::{Decision, DecisionQuery, Storage};

fn decision(store: &SledStorage, shop: &str, step: Step, at_ms: i64) -> Decision {
    let d = Decision {
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
    };
    store.record_decision(&d).unwrap();
    d
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
        limit: 100,
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
