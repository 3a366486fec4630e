//! Turning a compiled component into a plugin for one step, checking that
//! it implements the step's world.

use super::Runtime;
use super::call::{CallContext, new_store};
use super::failure::classify;
use super::host::CallState;
use crate::error::LoadError;
use crate::steps::{Step, StepKind, VisitKind};
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::Instance;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre};

/// A component ready to be called for one step. Cloning is cheap: clones
/// share the compiled code.
#[derive(Clone)]
pub struct Plugin {
    pub(super) step: Step,
    pub(super) digest: String,
    /// For synchronous calls (WASI linked synchronously).
    pub(super) pre: InstancePre<CallState>,
    /// For async calls (WASI linked asynchronously).
    pub(super) pre_async: InstancePre<CallState>,
    pub(super) export: ComponentExportIndex,
}

impl Plugin {
    /// The step this plugin implements.
    pub fn step(&self) -> Step {
        self.step
    }

    /// SHA-256 of the component's bytes (hex).
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("step", &self.step)
            .field("digest", &self.digest)
            .finish()
    }
}

pub(super) fn prepare(
    rt: &Runtime,
    digest: String,
    component: Component,
    step: Step,
) -> Result<Plugin, LoadError> {
    let world = step.world();
    let export = step.export();
    let (item, index) =
        component
            .get_export(None, export)
            .ok_or_else(|| LoadError::MissingExport {
                world,
                export,
                found: describe_exports(rt, &component),
            })?;
    if !matches!(item, ComponentItem::ComponentFunc(_)) {
        return Err(LoadError::MismatchedExport {
            world,
            export,
            detail: "it is not a function".into(),
        });
    }
    let imports = |e: wasmtime::Error| LoadError::Imports {
        world,
        detail: format!("{e:#}"),
    };
    let pre = rt.linker.instantiate_pre(&component).map_err(imports)?;
    let pre_async = rt
        .async_linker
        .instantiate_pre(&component)
        .map_err(imports)?;
    let plugin = Plugin {
        step,
        digest,
        pre,
        pre_async,
        export: index,
    };
    typecheck(rt, &plugin).map_err(|detail| LoadError::MismatchedExport {
        world,
        export,
        detail,
    })?;
    Ok(plugin)
}

/// " (it exports: a, b)" or " (it exports nothing)".
fn describe_exports(rt: &Runtime, component: &Component) -> String {
    let ty = component.component_type();
    let names: Vec<&str> = ty.exports(&rt.engine).map(|(name, _)| name).collect();
    if names.is_empty() {
        " (it exports nothing)".into()
    } else {
        format!(" (it exports: {})", names.join(", "))
    }
}

/// Check the export's signature against the step by instantiating once in
/// a throwaway store (with the usual limits, so a hostile start function
/// cannot hang or bloat the host).
fn typecheck(rt: &Runtime, plugin: &Plugin) -> Result<(), String> {
    let ctx = CallContext {
        shop: String::new(),
        plugin: String::new(),
        config_json: "{}".into(),
        now: 0,
        state: Arc::new(crate::state::MemoryStateStore::default()),
    };
    let mut store = new_store(rt, ctx);
    let instance = plugin.pre.instantiate(&mut store).map_err(|e| {
        format!(
            "instantiation failed: {}",
            classify(e, rt.limits().timeout())
        )
    })?;
    /// Look the export up with the step's request and answer types.
    struct Typed<'a> {
        store: &'a mut Store<CallState>,
        instance: &'a Instance,
        export: &'a ComponentExportIndex,
    }
    impl VisitKind for Typed<'_> {
        type Out = Result<(), String>;
        fn visit<K: StepKind>(self) -> Self::Out {
            self.instance
                .get_typed_func::<(K::Request,), (Result<K::Answer, String>,)>(
                    &mut *self.store,
                    self.export,
                )
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        }
    }
    plugin.step.visit(Typed {
        store: &mut store,
        instance: &instance,
        export: &plugin.export,
    })
}
