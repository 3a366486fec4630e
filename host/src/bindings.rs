//! The one `bindgen!` of the host: Rust types and host traits for the
//! `kefu:workflow` contract in `wit/`.
//!
//! The `host-imports` world holds every import a plugin may use; the four step
//! worlds include it and add one export each, which `crate::runtime` calls
//! through typed functions.

wasmtime::component::bindgen!({
    world: "host-imports",
    path: "../wit",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema],
});

pub use self::kefu::workflow::types;
pub use self::kefu::workflow::{clock, config, log, state};
