//! Turning a compiled component into a plugin for one step, checking that
//! it implements the step's world: the export is there, is a function and
//! has the step's types (checked by the world's generated bindings, with
//! no instance), and every import is one the host provides.

use super::Runtime;
use super::host::CallState;
use crate::error::LoadError;
use crate::steps::{Step, StepKind, VisitKind};
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
    // The world's generated bindings check the export's types against
    // the step's, with no instance.
    struct CheckExport<'a>(&'a InstancePre<CallState>);
    impl VisitKind for CheckExport<'_> {
        type Out = wasmtime::Result<()>;
        fn visit<K: StepKind>(self) -> Self::Out {
            K::check_export(self.0)
        }
    }
    step.visit(CheckExport(&plugin.pre))
        .map_err(|e| LoadError::MismatchedExport {
            world,
            export,
            detail: format!("{e:#}"),
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
