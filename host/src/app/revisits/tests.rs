//! The scheduler and outcomes together, on a real sled store.

use super::outcomes::{OutcomeInput, cancel, do_not_contact, record_outcome, report};
use super::*;
use crate::app::registry::Registry;
use crate::storage::{OutcomeResult, RevisitRecord, RevisitStatus, SledStorage, Storage};
use std::sync::Arc;

fn revisit(store: &dyn Storage, customer: &str, due_at: i64) -> RevisitRecord {
    RevisitRecord {
        id: store.next_id().unwrap(),
        shop: "s".into(),
        customer_id: customer.into(),
        due_at,
        channel: crate::bindings::types::Channel::Chat,
        purpose: "satisfaction".into(),
        message: "hi".into(),
        max_attempts: 3,
        retry_after_hours: 24,
        status: RevisitStatus::Planned,
        decision_id: 0,
        attempts_made: 0,
        planned_at: 0,
        cause: None,
        outcomes: Vec::new(),
    }
}

fn setup() -> (tempfile::TempDir, Arc<dyn Storage>, Scheduler) {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
    let scheduler = Scheduler::new(storage.clone(), Arc::new(Registry::empty()));
    (dir, storage, scheduler)
}

#[test]
fn revisits_fire_in_due_order_and_never_early() {
    let (_dir, storage, scheduler) = setup();
    // Planned out of order.
    let planned: Vec<RevisitRecord> = [30, 10, 20, 10, 40]
        .iter()
        .map(|&t| revisit(storage.as_ref(), "c", 1_000 + t))
        .collect();
    storage.put_revisits(&planned).unwrap();
    assert!(
        scheduler.tick(1_009, 0).unwrap().is_empty(),
        "nothing is due before its time"
    );
    let fire = |now| -> Vec<i64> {
        scheduler
            .tick(now, 0)
            .unwrap()
            .iter()
            .map(|r| r.due_at)
            .collect()
    };
    let fired = fire(1_020);
    assert_eq!(
        fired,
        [1_010, 1_010, 1_020],
        "due order, up to now inclusive"
    );
    assert!(
        scheduler.tick(1_020, 0).unwrap().is_empty(),
        "none fires twice"
    );
    let fired = fire(2_000);
    assert_eq!(fired, [1_030, 1_040]);
    assert_eq!(
        storage
            .revisits("s", Some(RevisitStatus::Due), 100)
            .unwrap()
            .len(),
        5
    );
    assert!(
        storage
            .revisits("s", Some(RevisitStatus::Planned), 100)
            .unwrap()
            .is_empty()
    );
}

/// An outcome at `at`, as the API would parse it.
fn outcome(at: i64, result: &str, satisfaction: Option<u8>) -> (i64, OutcomeInput) {
    let input = serde_json::from_value(serde_json::json!({
        "result": result, "satisfaction": satisfaction, "agent": "慧兰",
    }))
    .unwrap();
    (at, input)
}

fn record(
    storage: &dyn Storage,
    shop: &str,
    id: u64,
    (at, input): (i64, OutcomeInput),
) -> Result<RevisitRecord, RevisitError> {
    record_outcome(storage, shop, id, at, input)
}

#[test]
fn no_answer_replans_until_the_attempts_run_out() {
    let (_dir, storage, scheduler) = setup();
    let r = revisit(storage.as_ref(), "c", 100);
    storage.put_revisits(std::slice::from_ref(&r)).unwrap();
    scheduler.tick(100, 0).unwrap();
    let after1 = record(storage.as_ref(), "s", r.id, outcome(200, "no-answer", None)).unwrap();
    // The retry keeps the planned time of day: 100, a day later.
    assert_eq!(
        (after1.status.as_str(), after1.due_at),
        ("planned", 100 + 24 * 3600)
    );
    assert!(scheduler.tick(100 + 24 * 3600 - 1, 0).unwrap().is_empty());
    assert_eq!(
        scheduler.tick(100 + 24 * 3600, 0).unwrap().len(),
        1,
        "the retry fires"
    );
    record(
        storage.as_ref(),
        "s",
        r.id,
        outcome(90_000, "no-answer", None),
    )
    .unwrap();
    let last = record(
        storage.as_ref(),
        "s",
        r.id,
        outcome(200_000, "no-answer", None),
    )
    .unwrap();
    assert_eq!(
        (last.status.as_str(), last.attempts_made),
        ("unreachable", 3)
    );
    assert!(matches!(
        record(storage.as_ref(), "s", r.id, outcome(0, "reached", Some(5))),
        Err(RevisitError::Closed { .. })
    ));
    assert!(matches!(
        record(
            storage.as_ref(),
            "other-shop",
            r.id,
            outcome(0, "reached", None)
        ),
        Err(RevisitError::NotFound(_))
    ));
}

#[test]
fn bad_outcomes_are_refused() {
    let (_dir, storage, _) = setup();
    let r = revisit(storage.as_ref(), "c", 100);
    storage.put_revisits(std::slice::from_ref(&r)).unwrap();
    assert!(
        serde_json::from_str::<OutcomeInput>(r#"{"result": "maybe"}"#).is_err(),
        "an unknown result is refused when the outcome is read"
    );
    assert_eq!(OutcomeResult::ALL.len(), 4);
    assert!(matches!(
        record(storage.as_ref(), "s", r.id, outcome(0, "reached", Some(6))),
        Err(RevisitError::Invalid(_))
    ));
    assert!(matches!(
        record(
            storage.as_ref(),
            "s",
            r.id,
            outcome(0, "no-answer", Some(3))
        ),
        Err(RevisitError::Invalid(_))
    ));
}

#[test]
fn do_not_contact_cancels_open_revisits() {
    let (_dir, storage, scheduler) = setup();
    let mine = [
        revisit(storage.as_ref(), "quiet", 10),
        revisit(storage.as_ref(), "quiet", 20),
    ];
    let other = revisit(storage.as_ref(), "chatty", 10);
    storage.put_revisits(&mine).unwrap();
    storage.put_revisits(std::slice::from_ref(&other)).unwrap();
    assert_eq!(do_not_contact(storage.as_ref(), "s", "quiet").unwrap(), 2);
    assert!(storage.is_do_not_contact("s", "quiet").unwrap());
    let fired = scheduler.tick(100, 0).unwrap();
    assert_eq!(
        fired
            .iter()
            .map(|r| r.customer_id.as_str())
            .collect::<Vec<_>>(),
        ["chatty"],
        "cancelled revisits never fire"
    );
    assert!(matches!(
        cancel(storage.as_ref(), "s", mine[0].id),
        Err(RevisitError::Closed { .. })
    ));
}

#[test]
fn report_figures_match_hand_counted_data() {
    let (_dir, storage, _) = setup();
    let s = storage.as_ref();
    // Ten revisits due inside [1000, 2000), one outside.
    let mut rs: Vec<RevisitRecord> = (0..10)
        .map(|i| revisit(s, &format!("c{i}"), 1_000 + i * 10))
        .collect();
    rs.push(revisit(s, "late", 5_000));
    rs[0].cause = Some("logistics".into());
    rs[1].cause = Some("logistics".into());
    rs[2].cause = Some("product".into());
    s.put_revisits(&rs).unwrap();
    // c0..c3 reached with satisfaction 5, 4, 4, 2; c4 refused;
    // c5 wrong number; c6 no answer x3 (unreachable); c7 cancelled;
    // c8, c9 still open.
    for (i, score) in [5, 4, 4, 2].into_iter().enumerate() {
        record(s, "s", rs[i].id, outcome(1_500, "reached", Some(score))).unwrap();
    }
    record(s, "s", rs[4].id, outcome(1_500, "refused", None)).unwrap();
    record(s, "s", rs[5].id, outcome(1_500, "wrong-number", None)).unwrap();
    for at in [1_100, 1_200, 1_300] {
        record(s, "s", rs[6].id, outcome(at, "no-answer", None)).unwrap();
    }
    cancel(s, "s", rs[7].id).unwrap();

    let report = serde_json::to_value(report(s, "s", 1_000, 2_000).unwrap()).unwrap();
    assert_eq!(report["planned"], 10);
    assert_eq!(report["attempts"], 9);
    assert_eq!(report["done"], 5, "4 reached + 1 refused");
    assert_eq!(report["unreachable"], 2, "wrong number + three no-answers");
    assert_eq!(report["cancelled"], 1);
    assert_eq!(report["open"], 2);
    assert_eq!(report["reached"], 4);
    assert_eq!(report["success_rate"], 4.0 / 7.0);
    assert_eq!(report["satisfaction_average"], 3.75);
    assert_eq!(
        report["satisfaction_distribution"],
        serde_json::json!({"1": 0, "2": 1, "3": 0, "4": 2, "5": 1})
    );
    assert_eq!(
        report["complaint_causes"],
        serde_json::json!({"logistics": 2, "product": 1})
    );
}

/// #27 item 6: a retry is due at the time of day its revisit was planned
/// for (inside the shop's contact hours), whenever the attempt was
/// recorded, and at least `retry_after_hours` after the planned time.
#[test]
fn retries_keep_the_planned_time_of_day() {
    use super::outcomes::next_attempt;
    const DAY: i64 = 86_400;
    // Planned for 19:00 China time on 2026-11-26 (11:00Z).
    let due = 1_795_662_000;
    for (at, hours, expected) in [
        (due + 60, 24, due + DAY),            // tried a minute late
        (due + 4 * 3600, 24, due + DAY),      // recorded at 23:00
        (due + 60, 2, due + DAY),             // 21:00 would be past the window
        (due + 60, 48, due + 2 * DAY),        // two days
        (due + 25 * 3600, 24, due + 2 * DAY), // recorded a day late
        (due + 3 * DAY, 24, due + 4 * DAY),   // recorded days late
        (due - 3600, 24, due + DAY),          // worked early
    ] {
        let next = next_attempt(due, at, hours);
        assert_eq!(next, expected, "at {at}, {hours} h");
        assert_eq!((next - due).rem_euclid(DAY), 0, "same time of day");
        assert!(next > at);
    }
    assert_eq!(next_attempt(i64::MAX - 10, 0, 24), i64::MAX);
}

/// #27 item 8: attempts and closes count in the period they happened in,
/// whenever the revisit was or is now due.
#[test]
fn the_report_counts_what_happened_in_the_period() {
    let (_dir, storage, _) = setup();
    let s = storage.as_ref();
    // Due before the period [1000, 2000): one worked in it and re-planned
    // past it, one closed in it; one due in it, answered after it.
    let rs: Vec<RevisitRecord> = [500, 400, 1_500]
        .into_iter()
        .enumerate()
        .map(|(i, due)| revisit(s, &format!("c{i}"), due))
        .collect();
    s.put_revisits(&rs).unwrap();
    let replanned = record(s, "s", rs[0].id, outcome(1_200, "no-answer", None)).unwrap();
    assert!(replanned.due_at >= 2_000, "re-planned past the period");
    record(s, "s", rs[1].id, outcome(1_300, "reached", Some(5))).unwrap();
    record(s, "s", rs[2].id, outcome(2_500, "reached", Some(1))).unwrap();

    let week = serde_json::to_value(report(s, "s", 1_000, 2_000).unwrap()).unwrap();
    assert_eq!(
        ["planned", "attempts", "done", "reached", "open"].map(|k| week[k].clone()),
        [3, 2, 1, 1, 1].map(|n| serde_json::json!(n)),
        "{week}"
    );
    assert_eq!(week["satisfaction_average"], 5.0, "{week}");
    // The next period has the answer given in it, and nothing else.
    let next = serde_json::to_value(report(s, "s", 2_000, 3_000).unwrap()).unwrap();
    assert_eq!(
        ["attempts", "done", "reached"].map(|k| next[k].clone()),
        [1, 1, 1].map(|n| serde_json::json!(n)),
        "{next}"
    );
    assert_eq!(next["satisfaction_average"], 1.0, "{next}");
}
