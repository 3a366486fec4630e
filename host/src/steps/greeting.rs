//! Greeting (进门问好): the first answer to a buyer's message.

use super::{StepKind, StepOutput};
use crate::bindings::types::{GreetingReply, GreetingRequest};
use crate::error::CallError;
use wasmtime::component::InstancePre;

/// The `greeting` world's generated bindings.
mod bindings {
    super::super::world!("greeting");
}

pub struct Greeting;

impl StepKind for Greeting {
    const WORLD: &'static str = "greeting";
    const EXPORT: &'static str = "greet";
    const ENDPOINT: &'static str = "greeting";
    const SUMMARY: &'static str = "Greet a buyer";
    const SAMPLE: &'static str =
        include_str!("../../../examples/requests/greeting/first-visit.json");
    const DEFAULT_PLUGIN: &'static [u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kefu_greeting.wasm"));
    type Request = GreetingRequest;
    type Answer = GreetingReply;

    const SHARE: &'static str = "handed-off";

    fn customer(req: &GreetingRequest) -> &str {
        &req.customer.id
    }

    /// Greetings handed to a person.
    fn share(reply: &GreetingReply) -> bool {
        reply.hand_off
    }

    fn output(answer: GreetingReply) -> StepOutput {
        StepOutput::Greeting(answer)
    }

    fn check_export<T: 'static>(pre: &InstancePre<T>) -> wasmtime::Result<()> {
        bindings::GreetingIndices::new(pre).map(|_| ())
    }

    /// The buyer always gets an answer: a reply, or a person.
    fn check(_: &GreetingRequest, reply: &GreetingReply, _now: i64) -> Result<(), CallError> {
        if reply.reply.trim().is_empty() && !reply.hand_off {
            return Err(CallError::InvalidOutput(
                "greeting reply is empty and hand-off is false: the buyer would get no answer"
                    .into(),
            ));
        }
        Ok(())
    }
}
