//! The steps of a shop's workflow. Each step has one module holding all
//! that is particular to it: its world, export and endpoint names, its
//! request and answer types, its default plugin, the host's check of an
//! answer against its request, and what a decision records besides its
//! log entry. This file lists the steps once, in [`steps!`], and
//! dispatches: adding a step is one module and one line there (plus its
//! WIT world and default plugin).

mod greeting;
mod order_confirmation;
mod refund_policy;
mod revisit_planner;
pub mod times;
pub mod workflow;

pub use greeting::Greeting;
pub use order_confirmation::OrderConfirmation;
pub use refund_policy::RefundPolicy;
pub use revisit_planner::RevisitPlanner;
pub use workflow::Workflow;

use crate::error::CallError;
use crate::storage::{Effects, Ids, RevisitStore, StorageError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use wasmtime::component::InstancePre;
use wasmtime::component::{ComponentType, Lift, Lower};

/// What is particular to one step. Implemented once per step module.
pub trait StepKind: 'static {
    /// The WIT world, which is also the step's name on the CLI and API.
    const WORLD: &'static str;
    /// The function the world exports.
    const EXPORT: &'static str;
    /// The HTTP endpoint's name (`POST /v1/shops/{shop}/...`), kept from
    /// the first API; the world's name is accepted there too.
    const ENDPOINT: &'static str;
    /// One line for the API description.
    const SUMMARY: &'static str;
    /// The default plugin's component, bundled into the binary.
    const DEFAULT_PLUGIN: &'static [u8];
    /// An input every plugin of the step should answer (JSON): a new
    /// version is tried on it before it serves.
    const SAMPLE: &'static str;

    /// What the export takes.
    type Request: Clone
        + fmt::Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + utoipa::ToSchema
        + ComponentType
        + Lower
        + Send
        + Sync;
    /// What the export answers (inside `result<_, string>`).
    type Answer: Clone
        + fmt::Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + utoipa::ToSchema
        + ComponentType
        + Lift
        + Send
        + Sync;

    /// The answer as a [`StepOutput`].
    fn output(answer: Self::Answer) -> StepOutput;

    /// The buyer a request is about: a canary takes customers, not calls.
    fn customer(request: &Self::Request) -> &str;

    /// The order a request is about, if any (the decision log's order
    /// index).
    fn order(_request: &Self::Request) -> Option<&str> {
        None
    }

    /// The decision share a canary is compared on (e.g. `approved` for
    /// refunds): what [`StepKind::share`] counts.
    const SHARE: &'static str;

    /// Whether an answer counts in the step's decision share.
    fn share(answer: &Self::Answer) -> bool;

    /// Check, before any instance exists, that the component exports this
    /// step's function with this step's types (through the world's
    /// generated bindings, see [`world!`]).
    fn check_export<T: 'static>(pre: &InstancePre<T>) -> wasmtime::Result<()>;

    /// The host's check of `answer` against the `request` it answers, at
    /// `now` (unix seconds): a plugin may decide anything its shop wants,
    /// but nothing impossible or harmful.
    fn check(request: &Self::Request, answer: &Self::Answer, now: i64) -> Result<(), CallError>;

    /// Refuse an input the host knows no plugin should see (times outside
    /// [`times::MIN_TIME`]..[`times::MAX_TIME`]), naming the field.
    fn check_input(_request: &Self::Request) -> Result<(), InputError> {
        Ok(())
    }

    /// What a successful decision records besides its log entry, written
    /// with it atomically.
    fn effects(
        _at: &Recording<'_>,
        _request: &Self::Request,
        _answer: &Self::Answer,
    ) -> Result<Effects, StorageError> {
        Ok(Effects::None)
    }
}

/// The generated bindings of one step world (`bindgen!`), with the
/// interfaces every world shares taken from `crate::bindings`: a step's
/// module uses its world's `*Indices` to type-check a component's export.
macro_rules! world {
    ($world:literal $(, $iface:literal => $path:path)*) => {
        wasmtime::component::bindgen!({
            world: $world,
            path: "../wit",
            with: {
                "kefu:workflow/types": crate::bindings::types,
                "kefu:workflow/state": crate::bindings::state,
                "kefu:workflow/log": crate::bindings::log,
                "kefu:workflow/config": crate::bindings::config,
                "kefu:workflow/clock": crate::bindings::clock,
                $($iface: $path,)*
            },
        });
    };
}
use world;

/// Where and when a decision is recorded, for a step's effects.
pub struct Recording<'a> {
    pub shop: &'a str,
    /// The decision-log entry the effects belong to.
    pub decision_id: u64,
    /// When it is logged, unix milliseconds.
    pub at_ms: i64,
    /// The call's time, unix seconds.
    pub now: i64,
    pub ids: &'a dyn Ids,
    pub revisits: &'a dyn RevisitStore,
}

/// Code run with a step's kind, chosen at run time ([`Step::visit`]).
pub trait VisitKind {
    type Out;
    fn visit<K: StepKind>(self) -> Self::Out;
}

/// Code run with a step's typed request ([`StepInput::visit`]).
pub trait VisitRequest {
    type Out;
    fn visit<K: StepKind>(self, request: &K::Request) -> Self::Out;
}

/// Async code run with a step's typed request
/// ([`StepInput::visit_async`]).
pub(crate) trait VisitRequestAsync {
    type Out;
    async fn visit<K: StepKind>(self, request: &K::Request) -> Self::Out;
}

/// A step name that is not one of the steps.
#[derive(Debug, thiserror::Error)]
#[error("unknown step `{0}`: expected one of {names}", names = Step::names())]
pub struct UnknownStep(pub String);

/// Input JSON that does not fit the step's request type.
#[derive(Debug, thiserror::Error)]
#[error("invalid input at `{path}`: {message}")]
pub struct InputError {
    /// Path of the offending field; `.` for the document itself.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// The path of the field `message` is about, under `parent` (`.` for the
/// document): a missing field's own path (`customer.nickname`), where
/// serde names its parent (`customer`).
pub fn field_path(parent: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split_once('`'))
        .map(|(name, _)| name);
    match (parent, missing) {
        (".", Some(name)) => name.to_string(),
        (_, Some(name)) => format!("{parent}.{name}"),
        _ => parent.to_string(),
    }
}

/// Parse JSON, naming the offending field's path; nothing but whitespace
/// may follow the value.
fn parse<T: DeserializeOwned>(json: &[u8]) -> Result<T, InputError> {
    // Most inputs are good: parse them without tracking the path, and
    // only parse a bad one again to name where it went wrong.
    if let Ok(value) = serde_json::from_slice(json) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let message = e.inner().to_string();
        InputError {
            path: field_path(&e.path().to_string(), &message),
            message,
        }
    })?;
    de.end().map_err(|e| InputError {
        path: ".".into(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Declares [`Step`], [`StepInput`], [`StepOutput`] and their dispatch
/// from one list of `Variant => StepKind` lines, in workflow order.
macro_rules! steps {
    ($($(#[$doc:meta])* $variant:ident => $kind:ty,)+) => {
        /// A step of the customer-service workflow, one WIT world each.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Step {
            $($(#[$doc])* $variant,)+
        }

        impl Step {
            /// Every step, in workflow order.
            pub const ALL: [Step; [$(Step::$variant),+].len()] = [$(Step::$variant),+];

            /// Run `v` with this step's kind.
            pub fn visit<V: VisitKind>(self, v: V) -> V::Out {
                match self {
                    $(Step::$variant => v.visit::<$kind>(),)+
                }
            }

            /// Parse this step's input from JSON. The error names the path
            /// of the offending field (e.g. `order.items[0].quantity`).
            pub fn parse_input(self, json: &[u8]) -> Result<StepInput, InputError> {
                match self.parse_exact(json) {
                    Err(e) if crate::json::is_float_for_integer(&e.message) => {
                        match crate::json::integral_floats_as_integers(json) {
                            Some(fixed) => self.parse_exact(&fixed),
                            None => Err(e),
                        }
                    }
                    parsed => parsed,
                }
            }

            fn parse_exact(self, json: &[u8]) -> Result<StepInput, InputError> {
                Ok(match self {
                    $(Step::$variant => {
                        let request = parse(json)?;
                        <$kind as StepKind>::check_input(&request)?;
                        StepInput::$variant(request)
                    })+
                })
            }
        }

        /// The input of one call, typed by step.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        pub enum StepInput {
            $($variant(<$kind as StepKind>::Request),)+
        }

        impl StepInput {
            /// Which step this input is for.
            pub fn step(&self) -> Step {
                match self {
                    $(StepInput::$variant(_) => Step::$variant,)+
                }
            }

            /// The buyer the input is about.
            pub fn customer(&self) -> &str {
                match self {
                    $(StepInput::$variant(r) => <$kind as StepKind>::customer(r),)+
                }
            }

            /// The order the input is about, if any.
            pub fn order(&self) -> Option<&str> {
                match self {
                    $(StepInput::$variant(r) => <$kind as StepKind>::order(r),)+
                }
            }

            /// Run `v` with the typed request.
            pub fn visit<V: VisitRequest>(&self, v: V) -> V::Out {
                match self {
                    $(StepInput::$variant(r) => v.visit::<$kind>(r),)+
                }
            }

            /// Run async `v` with the typed request.
            pub(crate) async fn visit_async<V: VisitRequestAsync>(&self, v: V) -> V::Out {
                match self {
                    $(StepInput::$variant(r) => v.visit::<$kind>(r).await,)+
                }
            }
        }

        /// The output of one call, typed by step.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        pub enum StepOutput {
            $($variant(<$kind as StepKind>::Answer),)+
        }

        impl StepOutput {
            /// Which step produced this output.
            pub fn step(&self) -> Step {
                match self {
                    $(StepOutput::$variant(_) => Step::$variant,)+
                }
            }

            /// Whether the answer counts in its step's decision share.
            pub fn share(&self) -> bool {
                match self {
                    $(StepOutput::$variant(a) => <$kind as StepKind>::share(a),)+
                }
            }
        }

        /// The host's check of `output` against the `input` it answers.
        pub fn check(input: &StepInput, output: &StepOutput, now: i64) -> Result<(), CallError> {
            match (input, output) {
                $((StepInput::$variant(req), StepOutput::$variant(ans)) => {
                    <$kind>::check(req, ans, now)
                })+
                (input, output) => Err(CallError::InvalidOutput(format!(
                    "output is for step {} but the input is for {}",
                    output.step(),
                    input.step()
                ))),
            }
        }

        /// What a successful decision records besides its log entry.
        pub fn effects(
            at: &Recording<'_>,
            input: &StepInput,
            output: &StepOutput,
        ) -> Result<Effects, StorageError> {
            match (input, output) {
                $((StepInput::$variant(req), StepOutput::$variant(ans)) => {
                    <$kind>::effects(at, req, ans)
                })+
                _ => Ok(Effects::None),
            }
        }
    };
}

steps! {
    /// `greeting` world, export `greet`.
    Greeting => Greeting,
    /// `order-confirmation` world, export `confirm`.
    OrderConfirmation => OrderConfirmation,
    /// `refund-policy` world, export `decide`.
    RefundPolicy => RefundPolicy,
    /// `revisit-planner` world, export `plan`.
    RevisitPlanner => RevisitPlanner,
    /// `workflow` world, export `handle`: the flow itself.
    Workflow => Workflow,
}

/// A step's constants, read through its kind.
struct Consts {
    world: &'static str,
    export: &'static str,
    endpoint: &'static str,
    default_plugin: &'static [u8],
    sample: &'static str,
    share: &'static str,
}

struct ReadConsts;

impl VisitKind for ReadConsts {
    type Out = Consts;
    fn visit<K: StepKind>(self) -> Consts {
        Consts {
            world: K::WORLD,
            export: K::EXPORT,
            endpoint: K::ENDPOINT,
            default_plugin: K::DEFAULT_PLUGIN,
            sample: K::SAMPLE,
            share: K::SHARE,
        }
    }
}

impl Step {
    fn consts(self) -> Consts {
        self.visit(ReadConsts)
    }

    /// The WIT world name, which is also the step's name on the CLI and API.
    pub fn world(self) -> &'static str {
        self.consts().world
    }

    /// The function the world exports.
    pub fn export(self) -> &'static str {
        self.consts().export
    }

    /// The name of the step's HTTP endpoint (`POST /v1/shops/{shop}/...`).
    pub fn endpoint(self) -> &'static str {
        self.consts().endpoint
    }

    /// The default plugin bundled for this step.
    pub fn default_plugin(self) -> &'static [u8] {
        self.consts().default_plugin
    }

    /// The decision share a canary of this step is compared on.
    pub fn share_name(self) -> &'static str {
        self.consts().share
    }

    /// The step's sample input, parsed.
    pub fn sample(self) -> StepInput {
        self.parse_input(self.consts().sample.as_bytes())
            .expect("a step's bundled sample is a valid input (tested)")
    }

    /// The step named by its world or its endpoint.
    pub fn from_name_or_endpoint(name: &str) -> Option<Step> {
        Step::ALL
            .into_iter()
            .find(|s| s.world() == name || s.endpoint() == name)
    }

    /// The steps' world names, for messages.
    fn names() -> String {
        Step::ALL.map(Step::world).join(", ")
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

impl FromStr for Step {
    type Err = UnknownStep;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.world() == s)
            .ok_or_else(|| UnknownStep(s.to_string()))
    }
}

/// Reject an output whose JSON form is larger than `limit` bytes. The
/// bytes are counted, not kept.
pub fn output_size(output: &StepOutput, limit: usize) -> Result<(), CallError> {
    let mut counter = ByteCounter(0);
    let size = match serde_json::to_writer(&mut counter, output) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    };
    if size > limit {
        return Err(CallError::OutputTooLarge { size, limit });
    }
    Ok(())
}

/// A writer that only counts what it is given.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
