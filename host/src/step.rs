//! The four workflow steps: their worlds, exports, inputs and outputs.

use crate::bindings::types::{
    Confirmation, ConfirmationRequest, GreetingReply, GreetingRequest, RefundDecision,
    RefundRequest, RevisitPlan, RevisitRequest,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A step of the customer-service workflow, one WIT world each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// `greeting` world, export `greet`.
    Greeting,
    /// `order-confirmation` world, export `confirm`.
    OrderConfirmation,
    /// `refund-policy` world, export `decide`.
    RefundPolicy,
    /// `revisit-planner` world, export `plan`.
    RevisitPlanner,
}

impl Step {
    /// Every step, in workflow order.
    pub const ALL: [Step; 4] = [
        Step::Greeting,
        Step::OrderConfirmation,
        Step::RefundPolicy,
        Step::RevisitPlanner,
    ];

    /// The WIT world name, which is also the step's name on the CLI and API.
    pub fn world(self) -> &'static str {
        match self {
            Step::Greeting => "greeting",
            Step::OrderConfirmation => "order-confirmation",
            Step::RefundPolicy => "refund-policy",
            Step::RevisitPlanner => "revisit-planner",
        }
    }

    /// The name of the step's HTTP endpoint (`POST /v1/shops/{shop}/...`),
    /// kept from the first API; the world's name is accepted there too.
    pub fn endpoint(self) -> &'static str {
        match self {
            Step::Greeting => "greeting",
            Step::OrderConfirmation => "order-confirmation",
            Step::RefundPolicy => "refund-decision",
            Step::RevisitPlanner => "revisit-plan",
        }
    }

    /// The step named by its world or its endpoint.
    pub fn from_name_or_endpoint(name: &str) -> Option<Step> {
        Step::ALL
            .into_iter()
            .find(|s| s.world() == name || s.endpoint() == name)
    }

    /// The function the world exports.
    pub fn export(self) -> &'static str {
        match self {
            Step::Greeting => "greet",
            Step::OrderConfirmation => "confirm",
            Step::RefundPolicy => "decide",
            Step::RevisitPlanner => "plan",
        }
    }

    /// Parse this step's input from JSON. The error names the path of the
    /// offending field (e.g. `order.items[0].quantity`).
    pub fn parse_input(self, json: &[u8]) -> Result<StepInput, InputError> {
        fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, InputError> {
            let mut de = serde_json::Deserializer::from_slice(json);
            let value = serde_path_to_error::deserialize(&mut de).map_err(|e| InputError {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
            // Nothing but whitespace may follow the value.
            de.end().map_err(|e| InputError {
                path: ".".into(),
                message: e.to_string(),
            })?;
            Ok(value)
        }
        Ok(match self {
            Step::Greeting => StepInput::Greeting(parse(json)?),
            Step::OrderConfirmation => StepInput::OrderConfirmation(parse(json)?),
            Step::RefundPolicy => StepInput::RefundPolicy(parse(json)?),
            Step::RevisitPlanner => StepInput::RevisitPlanner(parse(json)?),
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// A step name that is not one of the four.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown step `{0}`: expected one of greeting, order-confirmation, refund-policy, revisit-planner"
)]
pub struct UnknownStep(pub String);

impl FromStr for Step {
    type Err = UnknownStep;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.world() == s)
            .ok_or_else(|| UnknownStep(s.to_string()))
    }
}

/// Input JSON that does not fit the step's request type.
#[derive(Debug, thiserror::Error)]
#[error("invalid input at `{path}`: {message}")]
pub struct InputError {
    /// Path of the offending field; `.` for the document itself.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// The input of one call, typed by step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepInput {
    Greeting(GreetingRequest),
    OrderConfirmation(ConfirmationRequest),
    RefundPolicy(RefundRequest),
    RevisitPlanner(RevisitRequest),
}

impl StepInput {
    /// Which step this input is for.
    pub fn step(&self) -> Step {
        match self {
            StepInput::Greeting(_) => Step::Greeting,
            StepInput::OrderConfirmation(_) => Step::OrderConfirmation,
            StepInput::RefundPolicy(_) => Step::RefundPolicy,
            StepInput::RevisitPlanner(_) => Step::RevisitPlanner,
        }
    }
}

/// The output of one call, typed by step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepOutput {
    Greeting(GreetingReply),
    OrderConfirmation(Confirmation),
    RefundPolicy(RefundDecision),
    RevisitPlanner(RevisitPlan),
}

impl StepOutput {
    /// Which step produced this output.
    pub fn step(&self) -> Step {
        match self {
            StepOutput::Greeting(_) => Step::Greeting,
            StepOutput::OrderConfirmation(_) => Step::OrderConfirmation,
            StepOutput::RefundPolicy(_) => Step::RefundPolicy,
            StepOutput::RevisitPlanner(_) => Step::RevisitPlanner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Step;

    #[test]
    fn all_lists_the_steps_in_declaration_order() {
        // `step as usize` indexes arrays laid out in `Step::ALL` order.
        for (i, step) in Step::ALL.into_iter().enumerate() {
            assert_eq!(step as usize, i, "{step:?}");
        }
    }
}
