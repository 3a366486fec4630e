//! Hostile plugins are each stopped with a typed error, and the same
//! runtime goes on serving the next call.

mod support;

use kefu::{
    CallContext, CallError, Limits, LoadError, MemoryStateStore, Runtime, RuntimeConfig,
    StateStore, Step, StepInput,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{example, wasm};

fn runtime(limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: None,
        limits,
        compile_worker: None,
    })
    .expect("runtime")
}

fn refund_input() -> StepInput {
    let json = std::fs::read(example("requests/refund-policy/no-reason.json")).unwrap();
    Step::RefundPolicy.parse_input(&json).unwrap()
}

fn ctx(shop: &str, config: &str, store: Arc<dyn StateStore>) -> CallContext {
    CallContext {
        shop: shop.into(),
        plugin: "refund-policy".into(),
        config_json: config.into(),
        now: 1_795_672_800,
        state: store,
    }
}

fn hostile(rt: &Runtime, behavior: &str) -> (Result<kefu::StepOutput, CallError>, Duration) {
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let config = format!(r#"{{"behavior":"{behavior}"}}"#);
    let out = plugin.call(
        rt,
        ctx("s", &config, Arc::new(MemoryStateStore::default())),
        &refund_input(),
    );
    (out.result, out.duration)
}

/// The default refund plugin still answers on the same runtime.
fn still_serving(rt: &Runtime) {
    let plugin = rt
        .load_file(wasm::REFUND_POLICY.as_ref(), Step::RefundPolicy)
        .unwrap();
    let out = plugin.call(
        rt,
        ctx("s", "{}", Arc::new(MemoryStateStore::default())),
        &refund_input(),
    );
    assert!(
        out.result.is_ok(),
        "runtime stopped serving: {:?}",
        out.result
    );
}

#[test]
fn infinite_loop_is_stopped_within_twice_the_timeout() {
    let limits = Limits {
        timeout_ms: 500,
        ..Limits::default()
    };
    let rt = runtime(limits);
    let (result, took) = hostile(&rt, "loop");
    assert!(
        matches!(result, Err(CallError::Timeout(t)) if t == Duration::from_millis(500)),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(1000), "stopped after {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "stopped early, after {took:?}"
    );
    still_serving(&rt);
}

/// Paced like a background job: 4 ms asleep for each epoch tick run.
fn pace() -> Duration {
    std::thread::sleep(Duration::from_millis(4));
    Duration::from_millis(4)
}

#[test]
fn a_paced_loop_is_stopped_at_its_timeout_less_the_time_paced_away() {
    let rt = runtime(Limits {
        timeout_ms: 300,
        ..Limits::default()
    });
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let out = plugin.call_paced(
        &rt,
        ctx(
            "s",
            r#"{"behavior":"loop"}"#,
            Arc::new(MemoryStateStore::default()),
        ),
        &refund_input(),
        pace,
    );
    assert!(
        matches!(out.result, Err(CallError::Timeout(t)) if t == Duration::from_millis(300)),
        "{:?}",
        out.result
    );
    // About 300 ms of running and four times that asleep: stopped neither
    // at 300 ms of the clock nor never.
    assert!(
        out.duration >= Duration::from_millis(900),
        "stopped after {:?}",
        out.duration
    );
    assert!(
        out.duration < Duration::from_secs(10),
        "stopped after {:?}",
        out.duration
    );
    still_serving(&rt);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let rt = runtime(Limits {
        memory_mib: 32,
        ..Limits::default()
    });
    let (result, _) = hostile(&rt, "memory-bomb");
    match result {
        Err(CallError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 32 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    still_serving(&rt);
}

#[test]
fn allocation_under_the_limit_succeeds_and_over_it_fails() {
    let rt = runtime(Limits {
        memory_mib: 32,
        ..Limits::default()
    });
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let call = |bytes: u64| {
        let config = format!(r#"{{"behavior":"allocate","bytes":{bytes}}}"#);
        plugin.call(
            &rt,
            ctx("s", &config, Arc::new(MemoryStateStore::default())),
            &refund_input(),
        )
    };
    let under = call(24 << 20);
    assert!(under.result.is_ok(), "{:?}", under.result);
    assert!(
        under.memory_peak >= 24 << 20 && under.memory_peak <= 32 << 20,
        "peak {}",
        under.memory_peak
    );
    assert!(matches!(
        call(40 << 20).result,
        Err(CallError::MemoryLimit { .. })
    ));
}

#[test]
fn trap_is_reported_with_the_panic_message() {
    let rt = runtime(Limits::default());
    let (result, _) = hostile(&rt, "trap");
    match result {
        Err(CallError::Trap(msg)) => assert!(msg.contains("panics on purpose"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    still_serving(&rt);
}

#[test]
fn stack_overflow_is_its_own_error() {
    let rt = runtime(Limits::default());
    assert!(matches!(
        hostile(&rt, "stack-overflow").0,
        Err(CallError::StackOverflow)
    ));
    still_serving(&rt);
}

/// #27 item 11: a Rust guest whose recursive frames hold arrays overflows
/// its shadow stack in linear memory (an out-of-bounds access, not wasm's
/// own stack); it is reported as a stack overflow too.
#[test]
fn shadow_stack_overflow_is_reported_as_a_stack_overflow() {
    let rt = runtime(Limits::default());
    let (result, _) = hostile(&rt, "shadow-stack-overflow");
    assert!(
        matches!(result, Err(CallError::StackOverflow)),
        "{result:?}"
    );
    still_serving(&rt);
}

#[test]
fn huge_output_is_refused() {
    let rt = runtime(Limits::default());
    match hostile(&rt, "huge-output").0 {
        Err(CallError::OutputTooLarge { size, limit }) => {
            assert_eq!(limit, 256 << 10);
            assert!(size > 10 << 20);
        }
        other => panic!("expected output too large, got {other:?}"),
    }
    still_serving(&rt);
}

#[test]
fn refund_above_what_was_paid_is_refused() {
    let rt = runtime(Limits::default());
    match hostile(&rt, "over-refund").0 {
        Err(CallError::InvalidOutput(msg)) => {
            assert!(msg.contains("exceeds the refundable 12800 fen"), "{msg}")
        }
        other => panic!("expected invalid output, got {other:?}"),
    }
}

#[test]
fn plugin_error_is_passed_on() {
    let rt = runtime(Limits::default());
    assert!(matches!(hostile(&rt, "error").0, Err(CallError::Plugin(m)) if m.contains("refuses")));
}

#[test]
fn plugin_output_is_captured_and_capped() {
    let rt = runtime(Limits {
        log_kib: 1,
        ..Limits::default()
    });
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let out = plugin.call(
        &rt,
        ctx(
            "s",
            r#"{"behavior":"chatty","lines":500}"#,
            Arc::new(MemoryStateStore::default()),
        ),
        &refund_input(),
    );
    assert!(out.result.is_ok(), "{:?}", out.result);
    use kefu::LogLevel::*;
    for level in [Info, Stdout, Stderr] {
        assert!(
            out.logs.iter().any(|l| l.level == level),
            "no {level:?} line"
        );
    }
    assert!(out.logs.iter().any(|l| l.message == "stdout line 0"));
    let kept: usize = out.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 3 * 1024, "kept {kept} bytes of log");
    assert!(out.logs_dropped > 0);
}

#[test]
fn state_is_kept_per_shop() {
    let rt = runtime(Limits::default());
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::default());
    let count = |shop: &str| {
        let out = plugin.call(
            &rt,
            ctx(shop, r#"{"behavior":"counter"}"#, store.clone()),
            &refund_input(),
        );
        match out.result.unwrap() {
            kefu::StepOutput::RefundPolicy(d) => d.message,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(count("a"), "1");
    assert_eq!(count("a"), "2");
    assert_eq!(count("b"), "1", "shop b must not see shop a's state");
}

#[test]
fn component_of_another_world_is_rejected_naming_world_and_export() {
    let rt = runtime(Limits::default());
    let err = rt
        .load_file(wasm::GREETING.as_ref(), Step::RefundPolicy)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::MissingExport {
                world: "refund-policy",
                export: "decide",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("it exports: greet"), "{err}");
    let err = rt
        .load_file(wasm::WRONG_SIGNATURE.as_ref(), Step::RefundPolicy)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::MismatchedExport {
                world: "refund-policy",
                export: "decide",
                ..
            }
        ),
        "{err}"
    );
    still_serving(&rt);
}

#[test]
fn files_that_are_not_components_are_rejected() {
    let rt = runtime(Limits::default());
    assert!(matches!(
        rt.load(b"not wasm at all", Step::Greeting),
        Err(LoadError::NotWasm(_))
    ));
    assert!(matches!(
        rt.load(b"", Step::Greeting),
        Err(LoadError::NotWasm(_))
    ));
    // The smallest valid core module.
    assert!(matches!(
        rt.load(b"\0asm\x01\0\0\0", Step::Greeting),
        Err(LoadError::CoreModule)
    ));
    // A half-written component.
    let whole = std::fs::read(wasm::GREETING).unwrap();
    let half = &whole[..whole.len() / 2];
    assert!(matches!(
        rt.load(half, Step::Greeting),
        Err(LoadError::Invalid(_))
    ));
    still_serving(&rt);
}

#[test]
fn input_for_another_step_is_refused() {
    let rt = runtime(Limits::default());
    let plugin = rt
        .load_file(wasm::REFUND_POLICY.as_ref(), Step::RefundPolicy)
        .unwrap();
    let json = std::fs::read(example("requests/greeting/first-visit.json")).unwrap();
    let input = Step::Greeting.parse_input(&json).unwrap();
    let out = plugin.call(
        &rt,
        ctx("s", "{}", Arc::new(MemoryStateStore::default())),
        &input,
    );
    assert!(matches!(out.result, Err(CallError::WrongStep { .. })));
}

#[test]
fn compiled_code_is_cached_on_disk_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        limits: Limits::default(),
        compile_worker: None,
    };
    let first = Runtime::new(config()).unwrap();
    first
        .load_file(wasm::REFUND_POLICY.as_ref(), Step::RefundPolicy)
        .unwrap();
    assert_eq!(first.compilations(), 1);
    drop(first);
    let second = Runtime::new(config()).unwrap();
    let started = Instant::now();
    second
        .load_file(wasm::REFUND_POLICY.as_ref(), Step::RefundPolicy)
        .unwrap();
    assert_eq!(second.compilations(), 0, "a restart must not recompile");
    eprintln!("load from cache took {:?}", started.elapsed());
    // A corrupt artifact is discarded and rebuilt, not trusted; so are
    // corrupt compiled functions (the `functions` folder).
    let mut corrupted = 0;
    let mut folders = vec![dir.path().to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                std::fs::write(path, b"garbage").unwrap();
                corrupted += 1;
            }
        }
    }
    assert!(corrupted > 10, "an artifact and its functions: {corrupted}");
    let third = Runtime::new(config()).unwrap();
    third
        .load_file(wasm::REFUND_POLICY.as_ref(), Step::RefundPolicy)
        .unwrap();
    assert_eq!(third.compilations(), 1);
    still_serving(&third);
}
