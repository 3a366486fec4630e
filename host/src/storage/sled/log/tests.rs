//! The segments alone: entries read back across rolls and restarts, a torn
//! tail, pruning that gives space back, queries merged across segments.

use super::*;
use crate::steps::Step;
use serde_json::value::RawValue;

fn decision(id: u64, shop: &str, at_ms: i64, customer: &str, order: Option<&str>) -> Decision {
    let input = format!(
        r#"{{"customer":{{"id":"{customer}"}},"pad":"{}"}}"#,
        "x".repeat(200)
    );
    Decision {
        id,
        shop: shop.into(),
        step: if id.is_multiple_of(2) {
            Step::Greeting
        } else {
            Step::RefundPolicy
        },
        digest: "d".into(),
        version: id % 3,
        at_ms,
        now: 0,
        input: RawValue::from_string(input).unwrap(),
        output: None,
        error: None,
        duration_us: 1,
        canary: false,
        fallback: None,
        state_reads: Vec::new(),
        customer: customer.into(),
        order: order.map(String::from),
        logs: Vec::new(),
        event: None,
    }
}

fn append(log: &Log, d: &Decision) {
    log.append(d, &serde_json::to_vec(d).unwrap()).unwrap();
}

fn query(shop: &str) -> DecisionQuery {
    DecisionQuery {
        shop: shop.into(),
        step: None,
        since_ms: None,
        until_ms: None,
        customer: None,
        order: None,
        version: None,
        limit: usize::MAX,
        scan_limit: None,
    }
}

fn ids(ds: &[Decision]) -> Vec<u64> {
    ds.iter().map(|d| d.id).collect()
}

fn ascending(log: &Log, q: &DecisionQuery) -> Vec<u64> {
    let all = |_: &Decision| true;
    let mut it = log.oldest_first(q, &all).unwrap();
    let mut out = Vec::new();
    while let Some(d) = it.next().unwrap() {
        out.push(d.id);
    }
    out
}

/// 300 entries of three shops over many small segments, times a little
/// out of order (as concurrent writers append them).
fn filled(dir: &Path) -> (Log, Vec<Decision>) {
    let log = Log::open_with(dir, 4_000, Beside::alone()).unwrap();
    let mut all = Vec::new();
    for id in 1..=300u64 {
        let at = (id as i64) * 10 - if id % 7 == 0 { 25 } else { 0 };
        let shop = ["a", "b", "c"][(id % 3) as usize];
        let d = decision(
            id,
            shop,
            at,
            &format!("buyer{}", id % 10),
            (id % 4 == 0).then_some("T1"),
        );
        append(&log, &d);
        all.push(d);
    }
    (log, all)
}

fn expected(all: &[Decision], keep: impl Fn(&Decision) -> bool) -> Vec<u64> {
    let mut v: Vec<&Decision> = all.iter().filter(|d| keep(d)).collect();
    v.sort_by_key(|d| (d.at_ms, d.id));
    v.iter().map(|d| d.id).collect()
}

#[test]
fn queries_read_back_across_rolls_and_restarts_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, all) = filled(dir.path());
    let check = |log: &Log| {
        assert!(log.segments.read().unwrap().len() > 10, "it rolled");
        let want = expected(&all, |d| d.shop == "a");
        assert_eq!(ascending(log, &query("a")), want);
        let mut newest = want.clone();
        newest.reverse();
        let all_a = log.newest_first(&query("a"), &|_| true).unwrap();
        assert_eq!(ids(&all_a), newest);
        let five = log
            .newest_first(
                &DecisionQuery {
                    limit: 5,
                    ..query("a")
                },
                &|_| true,
            )
            .unwrap();
        assert_eq!(ids(&five), newest[..5]);
        let window = DecisionQuery {
            since_ms: Some(500),
            until_ms: Some(1500),
            step: Some(Step::Greeting),
            ..query("b")
        };
        assert_eq!(
            ascending(log, &window),
            expected(&all, |d| d.shop == "b"
                && d.at_ms >= 500
                && d.at_ms < 1500
                && d.step == Step::Greeting)
        );
        let of_buyer = DecisionQuery {
            customer: Some("buyer3".into()),
            ..query("a")
        };
        let mut by_buyer = expected(&all, |d| d.shop == "a" && d.customer == "buyer3");
        by_buyer.reverse();
        assert!(!by_buyer.is_empty());
        assert_eq!(
            ids(&log.newest_first(&of_buyer, &|_| true).unwrap()),
            by_buyer
        );
        let of_order = DecisionQuery {
            order: Some("T1".into()),
            ..query("c")
        };
        assert_eq!(
            ascending(log, &of_order),
            expected(&all, |d| d.shop == "c" && d.order.as_deref() == Some("T1"))
        );
        let d = &all[41];
        assert_eq!(log.find(&d.shop, d.at_ms, d.id).unwrap().unwrap().id, d.id);
        assert!(log.find(&d.shop, d.at_ms, d.id + 1000).unwrap().is_none());
        assert!(log.find("b", d.at_ms, d.id).unwrap().is_none() || d.shop == "b");
    };
    check(&log);
    log.sync().unwrap();
    drop(log);
    let again = Log::open_with(dir.path(), 4_000, Beside::alone()).unwrap();
    check(&again);
    // Appends after a restart go to a segment of their own.
    let before = again.segments.read().unwrap().len();
    append(&again, &decision(1000, "a", 5000, "z", None));
    assert_eq!(again.segments.read().unwrap().len(), before + 1);
    assert_eq!(
        again.newest_first(&query("a"), &|_| true).unwrap()[0].id,
        1000
    );
}

#[test]
fn a_torn_tail_or_a_lost_index_is_rebuilt_from_the_frames_that_check() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Beside::alone()).unwrap();
    for id in 1..=10 {
        append(&log, &decision(id, "a", id as i64, "b", None));
    }
    let no = log.writer.lock().unwrap().current.as_ref().unwrap().no;
    drop(log);
    // The last frame half written, as a crash may leave it.
    let path = seg_path(&dir.path().join(FOLDER), no);
    let bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    std::fs::write(&path, &bytes[..end - 30]).unwrap();
    let again = Log::open(dir.path(), Beside::alone()).unwrap();
    assert_eq!(ascending(&again, &query("a")), (1..=9).collect::<Vec<_>>());
    // An index file lost or cut short is built again.
    drop(again);
    let idx = idx_path(&dir.path().join(FOLDER), no);
    let bytes = std::fs::read(&idx).unwrap();
    std::fs::write(&idx, &bytes[..bytes.len() - 5]).unwrap();
    let again = Log::open(dir.path(), Beside::alone()).unwrap();
    assert_eq!(ascending(&again, &query("a")), (1..=9).collect::<Vec<_>>());
    // A damaged body is skipped, never read as another entry.
    drop(again);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = segment::FRAME_HEAD + 20;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let again = Log::open(dir.path(), Beside::alone()).unwrap();
    assert_eq!(ascending(&again, &query("a")), (2..=9).collect::<Vec<_>>());
}

#[test]
fn pruning_hides_what_it_prunes_and_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, all) = filled(dir.path());
    log.sync().unwrap();
    let bytes = log.bytes();
    let segments = log.segments.read().unwrap().len();
    let cutoff = 1500;
    let pruned = log.prune(cutoff).unwrap();
    assert_eq!(pruned, all.iter().filter(|d| d.at_ms < cutoff).count());
    let left_segments = log.segments.read().unwrap().len();
    assert!(
        left_segments <= segments / 2 + 1,
        "{left_segments} of {segments} left"
    );
    assert!(log.bytes() < bytes, "{} of {bytes}", log.bytes());
    let left = |log: &Log| {
        let mut v = ascending(log, &query("a"));
        v.extend(ascending(log, &query("b")));
        v.extend(ascending(log, &query("c")));
        v.sort_unstable();
        v
    };
    let mut want: Vec<u64> = all
        .iter()
        .filter(|d| d.at_ms >= cutoff)
        .map(|d| d.id)
        .collect();
    want.sort_unstable();
    assert_eq!(left(&log), want);
    assert_eq!(log.prune(cutoff).unwrap(), 0, "nothing twice");
    drop(log);
    // Still pruned after a restart, though some of it is still on disk.
    let again = Log::open_with(dir.path(), 4_000, Beside::alone()).unwrap();
    assert_eq!(left(&again), want);
    assert_eq!(again.prune(i64::MAX).unwrap(), want.len());
    assert!(left(&again).is_empty());
}

#[test]
fn a_quiet_log_rolls_by_age_so_retention_can_free_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Beside::alone()).unwrap();
    log.set_retention(0); // the shortest: a second
    append(&log, &decision(1, "a", 1, "b", None));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    append(&log, &decision(2, "a", 2, "b", None));
    assert_eq!(log.segments.read().unwrap().len(), 2);
    assert_eq!(log.prune(2).unwrap(), 1);
    assert_eq!(
        log.segments.read().unwrap().len(),
        1,
        "the closed one deleted"
    );
    assert_eq!(ascending(&log, &query("a")), [2]);
}

#[test]
fn an_event_commits_entries_count_once_kept_and_its_segment_closes_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), 4_000, Beside::alone()).unwrap();
    // A commit that fails: its entries are never read.
    let mut failed = log.in_commit();
    let d = decision(1, "a", 10, "b1", None);
    failed.append(&d, &serde_json::to_vec(&d).unwrap()).unwrap();
    drop(failed);
    assert!(ascending(&log, &query("a")).is_empty());
    // A commit in flight while its segment rolls: the segment keeps no
    // index until the commit is settled.
    let mut open = log.in_commit();
    let d = decision(2, "a", 20, "b1", None);
    open.append(&d, &serde_json::to_vec(&d).unwrap()).unwrap();
    let first = log.segments.read().unwrap().keys().next().copied().unwrap();
    for id in 3..=40 {
        append(&log, &decision(id, "a", id as i64 * 10, "b1", None));
    }
    assert!(log.segments.read().unwrap().len() > 1, "it rolled");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !idx_path(&log.dir, first).exists(),
        "closed with a commit in flight"
    );
    open.kept();
    let closed = std::time::Instant::now();
    while !idx_path(&log.dir, first).exists() {
        assert!(closed.elapsed().as_secs() < 5, "never closed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let want: Vec<u64> = (2..=40).collect();
    assert_eq!(ascending(&log, &query("a")), want);
    drop(log);
    // Read back from the index written: the failed entry stays out.
    let again = Log::open_with(dir.path(), 4_000, Beside::alone()).unwrap();
    assert_eq!(ascending(&again, &query("a")), want);
}

#[test]
fn a_segment_indexed_at_open_leaves_out_the_entries_its_store_refuses() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Beside::alone()).unwrap();
        for id in 1..=10 {
            let mut d = decision(id, "a", id as i64, "b1", None);
            d.event = Some(format!("e{}", id % 2));
            append(&log, &d);
        }
        // A stop that closes nothing: the segment has no index.
    }
    let refuse_odd = Beside {
        keep: Box::new(|d: &Decision| Ok(d.event.as_deref() != Some("e1"))),
        flush: Box::new(|| Ok(())),
    };
    let again = Log::open(dir.path(), refuse_odd).unwrap();
    assert_eq!(ascending(&again, &query("a")), vec![2, 4, 6, 8, 10]);
}

#[test]
fn plain_entries_wait_in_memory_until_a_sync_a_read_an_event_commit_or_a_close_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Beside::alone()).unwrap();
    // Entries whose frames are in the segment's file.
    let in_file = |log: &Log| {
        let seg = log.all_segments().pop().unwrap();
        segment::scan(&seg.file, &|_| Ok(true)).unwrap().0.len()
    };
    for id in 1..=5 {
        append(&log, &decision(id, "a", id as i64, "b1", None));
    }
    assert_eq!(in_file(&log), 0, "each entry written on its own");
    log.sync().unwrap();
    assert_eq!(in_file(&log), 5, "a sync writes what waits");
    for id in 6..=8 {
        append(&log, &decision(id, "a", id as i64, "b1", None));
    }
    assert_eq!(in_file(&log), 5);
    assert_eq!(
        ascending(&log, &query("a")),
        (1..=8).collect::<Vec<_>>(),
        "a read sees every append"
    );
    assert_eq!(in_file(&log), 8);
    // An event commit's frame is in the file when its append returns,
    // with the plain ones before it.
    append(&log, &decision(9, "a", 9, "b1", None));
    let mut commit = log.in_commit();
    let d = decision(10, "a", 10, "b1", None);
    commit.append(&d, &serde_json::to_vec(&d).unwrap()).unwrap();
    assert_eq!(in_file(&log), 10);
    commit.kept();
    append(&log, &decision(11, "a", 11, "b1", None));
    drop(log);
    let again = Log::open(dir.path(), Beside::alone()).unwrap();
    assert_eq!(
        ascending(&again, &query("a")),
        (1..=11).collect::<Vec<_>>(),
        "a close writes what waits"
    );
}
