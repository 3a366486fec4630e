//! The one `bindgen!` of the host: Rust types and host traits for the
//! `kefu:workflow` contract in `wit/`.
//!
//! Generated from the `workflow` world, which imports everything a plugin
//! may use (`host-imports`) and, through its export, the `flow` types; the
//! step worlds take their shared interfaces from here (`steps::world!`),
//! and `crate::runtime` calls each export through typed functions.

wasmtime::component::bindgen!({
    world: "workflow",
    path: "../wit",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema],
    // A state read the store cannot answer stops the call: read as
    // absent, it would decide on what is not so (remind twice...).
    imports: {
        "kefu:workflow/state.get": trappable,
        "kefu:workflow/state.delete": trappable,
        "kefu:workflow/state.list-keys": trappable,
        "kefu:workflow/state.list-keys-after": trappable,
    },
});

pub use self::kefu::workflow::flow;
pub use self::kefu::workflow::types;
pub use self::kefu::workflow::{clock, config, log, state};
