//! The default plugins, built from `plugins/` and bundled into the binary.

use crate::step::Step;
use std::sync::OnceLock;

const GREETING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kefu_greeting.wasm"));
const ORDER_CONFIRMATION: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kefu_order_confirmation.wasm"));
const REFUND_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kefu_refund_policy.wasm"));
const REVISIT_PLANNER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kefu_revisit_planner.wasm"));

/// The bundled default plugin component for `step`.
pub fn default_plugin(step: Step) -> &'static [u8] {
    match step {
        Step::Greeting => GREETING,
        Step::OrderConfirmation => ORDER_CONFIRMATION,
        Step::RefundPolicy => REFUND_POLICY,
        Step::RevisitPlanner => REVISIT_PLANNER,
    }
}

/// SHA-256 of the bundled plugin for `step`, computed once.
pub fn default_digest(step: Step) -> &'static str {
    static DIGESTS: OnceLock<[String; 4]> = OnceLock::new();
    let all = DIGESTS.get_or_init(|| Step::ALL.map(|s| crate::runtime::digest(default_plugin(s))));
    &all[Step::ALL
        .iter()
        .position(|s| *s == step)
        .expect("every step is in ALL")]
}
