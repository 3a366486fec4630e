//! A kefu workflow plugin: the shop's flow. Build: cargo build --release --target wasm32-wasip2
wit_bindgen::generate!({ world: "workflow", path: "wit" });

use kefu::workflow::flow::{
    Action, EventData, Message, RunStep, StepCall, StepOutput, Subject, Timer,
};
use kefu::workflow::types::Channel;

struct Plugin;

impl Guest for Plugin {
    fn handle(input: FlowInput) -> Result<FlowOutput, String> {
        let event = input.event;
        let mut actions = Vec::new();
        match event.data {
            // A buyer wrote: run the shop's greeting step.
            EventData::MessageReceived(request) => actions.push(Action::RunStep(RunStep {
                tag: "greeting".into(),
                call: StepCall::Greeting(request),
            })),
            // The greeting answered: send its reply.
            EventData::StepCompleted(result) => {
                if let (Some(StepOutput::Greeting(reply)), Subject::Customer(id)) =
                    (result.output, event.subject)
                {
                    actions.push(Action::SendMessage(Message {
                        customer_id: id,
                        channel: Channel::Chat,
                        text: reply.reply,
                    }));
                }
            }
            // Remind an unpaid order once, two hours after it was placed.
            EventData::OrderCreated(e) => actions.push(Action::ScheduleTimer(Timer {
                name: "payment-reminder".into(),
                at: e.order.created_at + 2 * 3600,
                payload: e.customer.id,
            })),
            EventData::OrderPaid(_) => {
                actions.push(Action::CancelTimer("payment-reminder".into()))
            }
            EventData::TimerFired(t) if t.name == "payment-reminder" => {
                actions.push(Action::SendMessage(Message {
                    customer_id: t.payload,
                    channel: Channel::Chat,
                    text: "亲，您拍下的宝贝还没有付款哦 :)".into(),
                }))
            }
            _ => {}
        }
        Ok(FlowOutput {
            actions,
            state: None,
        })
    }
}

export!(Plugin);
