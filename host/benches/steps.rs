//! One call of each default step: the same rule compiled natively (the
//! floor), in a fresh instance and in a reused instance (each called
//! synchronously and, as the server calls it, async), on the example
//! inputs and the tea-oil shop's config. After criterion's figures, a table
//! of per-call p50 and the ratio to native, measured in the same run, and
//! what making and dropping the instance costs (fresh less reused): the
//! part of a fresh call no plugin code can lower.
//! The bench runs on the allocator the server runs on (mimalloc).
//!
//! cargo bench -p kefu --bench steps

use criterion::{BenchmarkId, Criterion};
use kefu::{
    CallContext, MemoryStateStore, ReusePool, Runtime, RuntimeConfig, StateStore, Step, StepInput,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

// The server's allocator (host/src/main.rs): the host's side of a call
// allocates (the lifted answer, the log), and so does the native rule.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-11-26 14:00 (UTC+8).
const NOW: i64 = 1_795_672_800;

/// A call to time, and what makes one from an example input.
type Call = Box<dyn Fn() -> bool>;
type MakeNative = Box<dyn Fn(&str) -> Call>;

struct Case {
    step: Step,
    example: &'static str,
    /// The rule, natively: parses its input once, then runs per call.
    native: MakeNative,
}

fn native<Req, Out>(run: fn(&str, &Req, i64) -> Result<Out, String>) -> MakeNative
where
    Req: serde::de::DeserializeOwned + 'static,
    Out: 'static,
{
    Box::new(move |input: &str| {
        let req: Req = serde_json::from_str(input).expect("example parses natively");
        let config = CONFIG.with(|c| c.borrow().clone());
        Box::new(move || black_box(run(&config, black_box(&req), NOW)).is_ok()) as Call
    })
}

thread_local! {
    static CONFIG: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            step: Step::Greeting,
            example: "greeting/discount",
            native: native(kefu_greeting::run),
        },
        Case {
            step: Step::OrderConfirmation,
            example: "order-confirmation/ok-with-remark",
            native: native(kefu_order_confirmation::run),
        },
        Case {
            step: Step::RefundPolicy,
            example: "refund-policy/no-reason",
            native: native(kefu_refund_policy::run),
        },
        Case {
            step: Step::RevisitPlanner,
            example: "revisit-planner/delivered",
            native: native(kefu_revisit_planner::run),
        },
    ]
}

fn config_json(step: Step) -> String {
    let text = std::fs::read_to_string(kefu_tests::example(&format!(
        "shops/tea-oil/config/{}.toml",
        step.world()
    )))
    .unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    serde_json::to_string(&table).unwrap()
}

struct Setup {
    name: String,
    native: Box<dyn Fn() -> bool>,
    fresh: Box<dyn Fn() -> bool>,
    fresh_async: Box<dyn Fn() -> bool>,
    reused: Box<dyn Fn() -> bool>,
    reused_async: Box<dyn Fn() -> bool>,
}

/// Drive a future to its end on this thread, as the server's first poll
/// does for a call that ends within its first slice.
fn drive<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The bundled default plugin for `step`, or with `KEFU_BENCH_PLUGINS=dir`
/// the one in `dir` (as cargo names it, e.g. `kefu_greeting.wasm`): to time
/// two builds of the plugins against each other.
fn component(step: Step) -> Vec<u8> {
    match std::env::var_os("KEFU_BENCH_PLUGINS") {
        Some(dir) => {
            let file = format!("kefu_{}.wasm", step.world().replace('-', "_"));
            let path = std::path::Path::new(&dir).join(file);
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
        None => kefu::default_plugin(step).to_vec(),
    }
}

fn setups(rt: &Arc<Runtime>) -> Vec<Setup> {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::default());
    cases()
        .into_iter()
        .map(|case| {
            let input_text = std::fs::read_to_string(kefu_tests::example(&format!(
                "requests/{}.json",
                case.example
            )))
            .unwrap();
            let input: StepInput = case.step.parse_input(input_text.as_bytes()).unwrap();
            let config = config_json(case.step);
            CONFIG.with(|c| *c.borrow_mut() = config.clone());
            let native = (case.native)(&input_text);
            assert!(native(), "{} fails natively", case.example);
            let plugin = rt.load(&component(case.step), case.step).unwrap();
            let ctx = CallContext {
                shop: "bench".into(),
                plugin: case.step.world().into(),
                config_json: config,
                now: NOW,
                state: store.clone(),
            };
            let pool = Arc::new(ReusePool::new(plugin.clone()));
            let (rt1, rt2, input1, input2, ctx1, ctx2) = (
                rt.clone(),
                rt.clone(),
                input.clone(),
                input,
                ctx.clone(),
                ctx,
            );
            let (plugin3, rt3, input3, ctx3) =
                (plugin.clone(), rt.clone(), input1.clone(), ctx1.clone());
            let fresh: Box<dyn Fn() -> bool> =
                Box::new(move || plugin.call(&rt1, ctx1.clone(), &input1).result.is_ok());
            let fresh_async: Box<dyn Fn() -> bool> = Box::new(move || {
                drive(plugin3.call_async(&rt3, ctx3.clone(), &input3))
                    .result
                    .is_ok()
            });
            let (pool4, rt4, input4, ctx4) =
                (pool.clone(), rt2.clone(), input2.clone(), ctx2.clone());
            let reused: Box<dyn Fn() -> bool> =
                Box::new(move || pool.call(&rt2, ctx2.clone(), &input2).result.is_ok());
            let reused_async: Box<dyn Fn() -> bool> = Box::new(move || {
                drive(pool4.call_async(&rt4, ctx4.clone(), &input4))
                    .result
                    .is_ok()
            });
            assert!(
                fresh() && fresh_async() && reused() && reused_async(),
                "{} fails in wasm",
                case.example
            );
            Setup {
                name: case.step.world().into(),
                native,
                fresh,
                fresh_async,
                reused,
                reused_async,
            }
        })
        .collect()
}

/// Per-call medians of the given calls, in microseconds, over `n` calls
/// each. The calls take turns in blocks of 1,000 (long enough to keep the
/// caches warm for the call being timed), so a slow spell of the machine
/// falls on all of them alike and the ratios stay comparable.
fn p50s(calls: &[&dyn Fn() -> bool], n: usize) -> Vec<f64> {
    const BLOCK: usize = 1_000;
    let mut times = vec![Vec::with_capacity(n); calls.len()];
    for _ in 0..n.div_ceil(BLOCK) {
        for (f, t) in calls.iter().zip(&mut times) {
            for _ in 0..BLOCK {
                let start = Instant::now();
                black_box(f());
                t.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(|a, b| a.total_cmp(b));
            t[t.len() / 2]
        })
        .collect()
}

fn main() {
    let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
    let setups = setups(&rt);
    let mut c = Criterion::default().configure_from_args();
    for s in &setups {
        let mut group = c.benchmark_group(&s.name);
        group.bench_function(BenchmarkId::new("native", ""), |b| b.iter(|| (s.native)()));
        group.bench_function(BenchmarkId::new("wasm-fresh", ""), |b| {
            b.iter(|| (s.fresh)())
        });
        group.bench_function(BenchmarkId::new("wasm-fresh-async", ""), |b| {
            b.iter(|| (s.fresh_async)())
        });
        group.bench_function(BenchmarkId::new("wasm-reused", ""), |b| {
            b.iter(|| (s.reused)())
        });
        group.bench_function(BenchmarkId::new("wasm-reused-async", ""), |b| {
            b.iter(|| (s.reused_async)())
        });
        group.finish();
    }
    c.final_summary();

    println!(
        "\nper-call p50 over 20,000 calls each, in turns of 1,000 (µs), and ratio to native; instance: fresh less reused"
    );
    println!(
        "{:<20} {:>10} {:>12} {:>8} {:>12} {:>8} {:>12} {:>8} {:>12} {:>8} {:>10} {:>6}",
        "step",
        "native",
        "wasm-fresh",
        "x",
        "fresh-async",
        "x",
        "wasm-reused",
        "x",
        "reused-async",
        "x",
        "instance",
        "x"
    );
    for s in &setups {
        let calls: [&dyn Fn() -> bool; 5] = [
            &s.native,
            &s.fresh,
            &s.fresh_async,
            &s.reused,
            &s.reused_async,
        ];
        let [n, f, a, r, ra] = p50s(&calls, 20_000)[..] else {
            unreachable!("five calls, five medians")
        };
        // A fresh call is a reused one plus making and dropping the
        // instance.
        let instance = f - r;
        println!(
            "{:<20} {:>10.2} {:>12.2} {:>8.1} {:>12.2} {:>8.1} {:>12.2} {:>8.1} {:>12.2} {:>8.1} {:>10.2} {:>6.1}",
            s.name,
            n,
            f,
            f / n,
            a,
            a / n,
            r,
            r / n,
            ra,
            ra / n,
            instance,
            instance / n
        );
    }
}
