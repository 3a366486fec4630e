//! The `config` interface: the shop's config for this plugin, as JSON.

use crate::bindings::config;
use wasmtime::component::HasSelf;

/// The config a call sees (a JSON object's text).
pub struct ConfigCtx {
    pub(super) json: String,
}

/// [`wasmtime::component::HasData`] marker for the `config` interface.
pub type ConfigData = HasSelf<ConfigCtx>;

impl config::Host for ConfigCtx {
    fn get(&mut self) -> String {
        self.json.clone()
    }
}
