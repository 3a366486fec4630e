use super::*;

fn quotas() -> Quotas {
    Quotas {
        concurrent_calls: 2,
        cpu_ms_per_window: 100,
        window_secs: 10,
        log_kib_per_window: 1,
        state_kib: 1,
    }
}

#[test]
fn concurrent_calls_are_capped_per_shop() {
    let meter = Meter::default();
    let q = quotas();
    let a1 = meter.shop("a").admit(&q, 0, 0).unwrap();
    let _a2 = meter.shop("a").admit(&q, 0, 0).unwrap();
    let err = meter
        .shop("a")
        .admit(&q, 0, 0)
        .err()
        .expect("third call refused");
    assert_eq!((err.what, err.retry_after_secs), ("concurrent calls", 1));
    assert!(
        meter.shop("b").admit(&q, 0, 0).is_ok(),
        "another shop is not affected"
    );
    drop(a1);
    assert!(
        meter.shop("a").admit(&q, 0, 0).is_ok(),
        "a finished call frees its slot"
    );
}

#[test]
fn plugin_time_is_budgeted_per_window() {
    let meter = Meter::default();
    let q = quotas();
    let permit = meter.shop("a").admit(&q, 1_000, 0).unwrap();
    permit.charge(&q, 1_000, Duration::from_millis(100));
    let err = meter
        .shop("a")
        .admit(&q, 4_000, 0)
        .err()
        .expect("budget used up");
    assert_eq!((err.what, err.retry_after_secs), ("plugin time", 6));
    assert!(meter.shop("b").admit(&q, 4_000, 0).is_ok());
    assert!(
        meter.shop("a").admit(&q, 10_000, 0).is_ok(),
        "a new window starts afresh"
    );
}

#[test]
fn a_check_takes_no_slot_and_refusals_spread_their_retries() {
    let meter = Meter::default();
    let q = quotas();
    let _a1 = meter.shop("a").admit(&q, 0, 0).unwrap();
    assert!(
        meter.shop("a").check(&q, 0).is_ok(),
        "checking takes no slot"
    );
    let _a2 = meter.shop("a").admit(&q, 0, 0).unwrap();
    let first = meter.shop("a").check(&q, 0).expect_err("both slots taken");
    let second = meter
        .shop("a")
        .admit(&q, 0, 0)
        .err()
        .expect("both slots taken");
    assert_eq!(first.what, "concurrent calls");
    assert_eq!(
        (first.retry_after_secs, second.retry_after_secs),
        (1, 2),
        "refused clients are told to come back at different times"
    );
    assert!(meter.shop("b").check(&q, 0).is_ok());
}

#[test]
fn request_bytes_logged_are_budgeted_per_window() {
    let meter = Meter::default();
    let q = quotas(); // 1 KiB per 10 s
    drop(meter.shop("a").admit(&q, 1_000, 600).unwrap());
    drop(meter.shop("a").admit(&q, 1_000, 400).unwrap());
    let err = meter
        .shop("a")
        .admit(&q, 2_000, 100)
        .err()
        .expect("1 KiB used");
    assert_eq!((err.what, err.retry_after_secs), ("decision log", 8));
    assert!(
        meter.shop("a").check(&q, 2_000).is_ok(),
        "24 bytes are left"
    );
    drop(meter.shop("a").admit(&q, 2_000, 24).unwrap());
    let err = meter
        .shop("a")
        .check(&q, 2_000)
        .expect_err("all 1,024 used");
    assert_eq!(
        err.what, "decision log",
        "refused before the body is parsed"
    );
    assert!(meter.shop("b").admit(&q, 2_000, 1_000).is_ok(), "per shop");
    assert!(
        meter.shop("a").admit(&q, 10_000, 1_000).is_ok(),
        "a new window starts afresh"
    );
}
