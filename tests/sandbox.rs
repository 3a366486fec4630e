//! The sandbox: what it refuses (files, env, network), malformed output,
//! oversized state values, and fuzzed and generated components fed to the
//! loader: each an error, never a panic.

mod support;

use kefu::{
    CallContext, CallError, Limits, MemoryStateStore, Runtime, RuntimeConfig, StateStore, Step,
    StepOutput,
};
use std::collections::HashMap;
use std::sync::Arc;
use support::{example, wasm};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: None,
        limits: Limits::default(),
        compile_worker: None,
    })
    .unwrap()
}

fn call(rt: &Runtime, config: &str) -> Result<StepOutput, CallError> {
    call_with(rt, config, Arc::new(MemoryStateStore::default()))
}

/// The hostile guest with `config`, keeping its state in `state`.
fn call_with(
    rt: &Runtime,
    config: &str,
    state: Arc<dyn StateStore>,
) -> Result<StepOutput, CallError> {
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let input = Step::RefundPolicy
        .parse_input(&std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap())
        .unwrap();
    let ctx = CallContext {
        shop: "s".into(),
        plugin: "refund-policy".into(),
        config_json: config.into(),
        now: 1_795_140_000,
        state,
    };
    plugin.call(rt, ctx, &input).result
}

fn message(out: Result<StepOutput, CallError>) -> String {
    match out {
        Ok(StepOutput::RefundPolicy(d)) => d.message,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_sandbox_refuses_files_env_args_and_network() {
    // The test process itself has files, env vars and a loopback; the
    // plugin sees none of them.
    assert!(std::env::vars().count() > 0);
    let rt = runtime();
    assert_eq!(message(call(&rt, r#"{"behavior":"probe"}"#)), "nothing");
}

#[test]
fn output_that_is_not_utf8_is_refused_and_the_host_goes_on() {
    let rt = runtime();
    let err = call(&rt, r#"{"behavior":"bad-utf8"}"#).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("utf-8"), "{err}");
    assert_eq!(message(call(&rt, r#"{"behavior":"ok"}"#)), "ok");
}

#[test]
fn a_plugin_cannot_store_oversized_values() {
    let rt = runtime();
    assert_eq!(
        message(call(
            &rt,
            r#"{"behavior":"fill-state","keys":3,"bytes":1000}"#
        )),
        "filled"
    );
    let err = call(&rt, r#"{"behavior":"fill-state","keys":1,"bytes":100000}"#).unwrap_err();
    assert!(
        matches!(&err, CallError::Plugin(m) if m.contains("TooLarge") && m.contains("65536")),
        "{err}"
    );
}

/// #27 item 10: `list-keys` returns at most 1,000 keys a call; a plugin
/// pages through all of its keys with `list-keys-after`, in the memory
/// store (`kefu run`) and in sled (`kefu serve`) alike.
#[test]
fn a_plugin_pages_through_all_of_its_keys() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn StateStore>; 2] = [
        Arc::new(MemoryStateStore::default()),
        Arc::new(kefu::SledStorage::open(dir.path()).unwrap()),
    ];
    for store in stores {
        let run = |config: &str| message(call_with(&rt, config, store.clone()));
        assert_eq!(
            run(r#"{"behavior":"fill-state","keys":2500,"bytes":1}"#),
            "filled"
        );
        assert_eq!(run(r#"{"behavior":"count-keys"}"#), "2500 keys in 3 pages");
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_components_are_errors_never_panics() {
    let rt = runtime();
    let original = std::fs::read(wasm::REFUND_POLICY).unwrap();
    let input = Step::RefundPolicy
        .parse_input(&std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap())
        .unwrap();
    let mut rng = XorShift(0x6b65_6675_2d66_757a);
    let (mut rejected, mut loaded) = (0, 0);
    for round in 0..200 {
        let mut bytes = original.clone();
        match round % 4 {
            // Flip a few bytes anywhere.
            0 | 1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            // Cut it short.
            2 => bytes.truncate(rng.below(bytes.len())),
            // Splice a copy of one region over another.
            _ => {
                let (from, to, len) = (
                    rng.below(bytes.len()),
                    rng.below(bytes.len()),
                    1 + rng.below(64),
                );
                let chunk: Vec<u8> = bytes[from..(from + len).min(bytes.len())].to_vec();
                let end = (to + chunk.len()).min(bytes.len());
                bytes[to..end].copy_from_slice(&chunk[..end - to]);
            }
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match rt.load(&bytes, Step::RefundPolicy) {
                Ok(plugin) => {
                    let ctx = CallContext {
                        shop: "s".into(),
                        plugin: "refund-policy".into(),
                        config_json: "{}".into(),
                        now: 1_795_140_000,
                        state: Arc::new(MemoryStateStore::default()) as Arc<dyn StateStore>,
                    };
                    let _ = plugin.call(&rt, ctx, &input).result;
                    true
                }
                Err(_) => false,
            }
        }));
        match outcome {
            Ok(true) => loaded += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("round {round}: the loader panicked on a mutated component"),
        }
    }
    eprintln!(
        "200 mutated components: {rejected} rejected with an error, {loaded} still loaded (mutations in data or custom sections)"
    );
    assert!(rejected > 0);
}

/// Random components and core modules from wasm-smith, fed to the loader
/// for every step: each is refused with an error or loads (and is then
/// called); none makes the host panic. Core modules are also wrapped in a
/// component that instantiates them, so random code reaches the compiler
/// and the instantiation of a component, not just the binary reader.
#[test]
fn generated_components_are_errors_never_panics() {
    use arbitrary::{Arbitrary, Unstructured};
    let rt = runtime();
    let mut rng = XorShift(0x7761_736d_2d73_6d69);
    let steps = [
        Step::Greeting,
        Step::OrderConfirmation,
        Step::RefundPolicy,
        Step::RevisitPlanner,
    ];
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for round in 0..1000 {
        let seed: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        let mut u = Unstructured::new(&seed);
        let (kind, bytes) = match round % 3 {
            0 => match wasm_smith::Component::arbitrary(&mut u) {
                Ok(c) => ("component", c.to_bytes()),
                Err(_) => continue,
            },
            n => {
                let mut config = wasm_smith::Config::arbitrary(&mut u).unwrap_or_default();
                config.max_imports = 0;
                let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
                    continue;
                };
                let module = module.to_bytes();
                if n == 1 {
                    ("core module", module)
                } else {
                    ("wrapped core module", wrap_in_component(&module))
                }
            }
        };
        let step = steps[round % steps.len()];
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.load(&bytes, step).map_err(|e| e.to_string())
        }));
        let verdict = match outcome {
            Ok(Ok(_)) => "loaded",
            Ok(Err(message)) => {
                assert!(!message.is_empty(), "round {round}: an empty error");
                if message.contains("does not implement world") {
                    // Compiled in full, then refused for its exports.
                    "compiled, then refused"
                } else {
                    "refused"
                }
            }
            Err(_) => {
                let path = std::env::temp_dir().join(format!("kefu-smith-{round}.wasm"));
                std::fs::write(&path, &bytes).unwrap();
                panic!(
                    "round {round}: the loader panicked on a generated {kind}; written to {}",
                    path.display()
                );
            }
        };
        *seen.entry(kind).or_default() += 1;
        *seen.entry(verdict).or_default() += 1;
    }
    eprintln!("wasm-smith inputs by kind and verdict: {seen:?}");
    assert!(seen.get("wrapped core module").copied().unwrap_or(0) >= 200);
    assert!(
        seen.get("compiled, then refused").copied().unwrap_or(0) >= 100,
        "random code reached the compiler: {seen:?}"
    );
}

/// Proposals the host is built without (threads' shared memory, GC types)
/// are refused at load with an error that names them, for every step.
#[test]
fn components_using_proposals_left_out_of_the_host_are_refused_by_name() {
    use wasm_encoder::{
        CompositeInnerType, CompositeType, MemoryType, Module, StructType, SubType,
    };
    let rt = runtime();
    let mut shared = Module::new();
    let mut memories = wasm_encoder::MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: Some(1),
        memory64: false,
        shared: true,
        page_size_log2: None,
    });
    shared.section(&memories);
    let mut gc = Module::new();
    let mut types = wasm_encoder::TypeSection::new();
    types.ty().subtype(&SubType {
        is_final: true,
        supertype_idxs: Vec::new(),
        composite_type: CompositeType {
            inner: CompositeInnerType::Struct(StructType {
                fields: Box::new([]),
            }),
            shared: false,
            descriptor: None,
            describes: None,
        },
    });
    gc.section(&types);
    // wasmtime's words: "threads must be enabled for shared memories",
    // "cannot define struct types when gc types are disabled".
    for (module, feature) in [
        (shared.finish(), "threads must be enabled"),
        (gc.finish(), "gc types are disabled"),
    ] {
        for step in [Step::Greeting, Step::RefundPolicy] {
            let message = match rt.load(&wrap_in_component(&module), step) {
                Ok(_) => panic!("a component using {feature} loaded"),
                Err(e) => e.to_string(),
            };
            assert!(
                message.contains(feature),
                "the error names what is missing ({feature}): {message}"
            );
        }
    }
}

/// A component that embeds `module` and instantiates it with no imports.
fn wrap_in_component(module: &[u8]) -> Vec<u8> {
    let mut component = wasm_encoder::Component::new();
    component.section(&wasm_encoder::RawSection {
        id: wasm_encoder::ComponentSectionId::CoreModule as u8,
        data: module,
    });
    let mut instances = wasm_encoder::InstanceSection::new();
    instances.instantiate(0, std::iter::empty::<(&str, wasm_encoder::ModuleArg)>());
    component.section(&instances);
    component.finish()
}
