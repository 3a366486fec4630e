//! A workflow that misbehaves on purpose. Its config picks how:
//! `{"behavior": "chain"}` plans a revisit for a shop date, then answers
//! each of its steps' answers with one more greeting step (a loop the host
//! must stop, and nothing it planned may stay);
//! `{"behavior": "fail"}` fails every event; anything else does nothing.

wit_bindgen::generate!({ world: "workflow", path: "../../../wit" });

use kefu::workflow::flow::{Action, EventData, RunStep, StepCall};
use kefu::workflow::types::{
    Customer, GreetingRequest, RevisitRequest, RevisitTrigger, SpecialDate,
};
use kefu::workflow::{clock, config};

struct Plugin;

impl Guest for Plugin {
    fn handle(input: FlowInput) -> Result<FlowOutput, String> {
        let config = config::get();
        if config.contains("\"fail\"") {
            return Err("this flow cannot handle anything".into());
        }
        let mut actions = Vec::new();
        if config.contains("\"chain\"") {
            let customer = Customer {
                id: "loop".into(),
                nickname: "loop".into(),
                member_level: None,
                order_count: 0,
                returning: false,
            };
            let call = match input.event.data {
                EventData::StepCompleted(_) => StepCall::Greeting(GreetingRequest {
                    customer,
                    message: "again".into(),
                    agent_name: None,
                }),
                _ => StepCall::RevisitPlanner(RevisitRequest {
                    customer,
                    trigger: RevisitTrigger::SpecialDate(SpecialDate {
                        kind: "anniversary".into(),
                        name: "店庆".into(),
                        date: clock::now() + 30 * 86_400,
                    }),
                    preferred_channel: None,
                }),
            };
            actions.push(Action::RunStep(RunStep {
                tag: "again".into(),
                call,
            }));
        }
        Ok(FlowOutput {
            actions,
            state: None,
        })
    }
}

export!(Plugin);
