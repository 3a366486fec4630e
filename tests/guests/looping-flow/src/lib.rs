//! A workflow that misbehaves on purpose. Its config picks how:
//! `{"behavior": "chain"}` answers every event, its own steps' answers
//! included, with one more greeting step (a loop the host must stop);
//! `{"behavior": "fail"}` fails every event; anything else does nothing.

wit_bindgen::generate!({ world: "workflow", path: "../../../wit" });

use kefu::workflow::config;
use kefu::workflow::flow::{Action, RunStep, StepCall};
use kefu::workflow::types::{Customer, GreetingRequest};

struct Plugin;

impl Guest for Plugin {
    fn handle(_input: FlowInput) -> Result<FlowOutput, String> {
        let config = config::get();
        if config.contains("\"fail\"") {
            return Err("this flow cannot handle anything".into());
        }
        let mut actions = Vec::new();
        if config.contains("\"chain\"") {
            actions.push(Action::RunStep(RunStep {
                tag: "again".into(),
                call: StepCall::Greeting(GreetingRequest {
                    customer: Customer {
                        id: "loop".into(),
                        nickname: "loop".into(),
                        member_level: None,
                        order_count: 0,
                        returning: false,
                    },
                    message: "again".into(),
                    agent_name: None,
                }),
            }));
        }
        Ok(FlowOutput {
            actions,
            state: None,
        })
    }
}

export!(Plugin);
