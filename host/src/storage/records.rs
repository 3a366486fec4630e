//! What the storage keeps, as serializable records.

use crate::bindings::types::{Channel, RefundDecision, RefundKind, RefundReason};
use crate::steps::Step;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Declares a record field's enum, stored as the kebab-case names the
/// records have always held (so stores written by earlier builds open
/// unchanged), with `as_str` and `ALL` for messages and the API schema.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        // By hand: the derive does not see a rename given through a macro.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text,)+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored (and API) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("`{s}` is not one of {}", names.join(", "))
                })
            }
        }
    };
}

stored_enum! {
    /// Where a revisit stands.
    RevisitStatus {
        /// Waiting for its time (the only status in the due index).
        Planned = "planned",
        /// Its time came: an agent or the shop's webhook makes it.
        Due = "due",
        Done = "done",
        Unreachable = "unreachable",
        Cancelled = "cancelled",
    }
}

impl RevisitStatus {
    /// Planned or due: outcomes may still be recorded.
    pub fn is_open(self) -> bool {
        matches!(self, RevisitStatus::Planned | RevisitStatus::Due)
    }
}

stored_enum! {
    /// What one revisit attempt came to.
    OutcomeResult {
        Reached = "reached",
        NoAnswer = "no-answer",
        Refused = "refused",
        WrongNumber = "wrong-number",
    }
}

stored_enum! {
    /// Where a version's component came from.
    VersionSource {
        /// The default plugin bundled in the binary.
        Bundled = "bundled",
        /// A file in the shop's folder.
        File = "file",
        /// Uploaded through the admin API.
        Api = "api",
        /// Not about a version (a console sign-in).
        None = "none",
    }
}

stored_enum! {
    /// What happened, in the deploy audit.
    AuditAction {
        Activated = "activated",
        Rejected = "rejected",
        RolledBack = "rolled-back",
        ShopRemoved = "shop-removed",
        /// A canary started (or its percent changed: see the reason).
        CanaryStarted = "canary-started",
        CanaryChanged = "canary-changed",
        /// The canary's version became the active one.
        CanaryPromoted = "canary-promoted",
        /// The canary stopped; the stable version serves everyone.
        CanaryAborted = "canary-aborted",
        /// A replay over logged decisions started, and finished (with its
        /// summary).
        ReplayStarted = "replay-started",
        ReplayFinished = "replay-finished",
        /// A shadow run on live traffic started, and stopped (with what
        /// it found).
        ShadowStarted = "shadow-started",
        ShadowStopped = "shadow-stopped",
        /// Someone signed in to the console, or out.
        SignedIn = "signed-in",
        SignedOut = "signed-out",
        /// An agent recorded a revisit attempt's outcome (回访记录).
        RevisitOutcome = "revisit-outcome",
    }
}

stored_enum! {
    /// Who made a change.
    Actor {
        /// Loading the shop folders at start.
        Startup = "startup",
        /// A change of a shop's files while serving.
        FileWatcher = "file-watcher",
        /// The admin API.
        Admin = "admin",
        /// The canary analysis (an automatic abort or promotion step).
        Analysis = "analysis",
        /// The console, signed in with the admin token...
        ConsoleAdmin = "console-admin",
        /// ...or with the shop's key.
        ConsoleShop = "console-shop",
        /// The API with the shop's own key.
        ShopKey = "shop-key",
    }
}

/// The error of a failed plugin call, as logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallError {
    pub code: String,
    pub message: String,
}

/// One plugin call in the decision log. Input and output are kept as the
/// JSON text they were, not re-encoded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Decision {
    pub id: u64,
    pub shop: String,
    pub step: Step,
    /// SHA-256 of the plugin component that decided.
    pub digest: String,
    /// Version number of the plugin within the shop's step (0: bundled).
    pub version: u64,
    /// When the call was logged, unix milliseconds.
    pub at_ms: i64,
    /// The time the plugin was given (unix seconds): replaying the call
    /// with this time and input gives the same output.
    pub now: i64,
    pub input: Box<RawValue>,
    pub output: Option<Box<RawValue>>,
    pub error: Option<CallError>,
    pub duration_us: u64,
    /// The call went to the step's canary version (this customer is in
    /// its buckets).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// The serving version failed and another answered: which failed and
    /// why (`digest`/`version` above name the one that answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// What the call read from its plugin state, so a replay sees the
    /// same values (empty for a plugin that reads none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_reads: Vec<StateRead>,
    /// The buyer the call was about (the input's customer id), indexed
    /// for search; empty in entries logged before it was kept (their
    /// input says it: [`Decision::customer_id`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub customer: String,
    /// The order the call was about, if any, indexed for search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// What the plugin logged (and printed) during the call, within the
    /// call's log budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<crate::runtime::LogLine>,
    /// The workflow event whose processing made the call (its id in the
    /// shop's inbox); none for a call made over the step's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// One read of a call's plugin state, as the decision log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum StateRead {
    /// A key's value (none: absent), read before the call wrote it.
    Get { key: String, value: Option<String> },
    /// A page of keys listed.
    List {
        prefix: String,
        after: Option<String>,
        keys: Vec<String>,
    },
}

/// A failed call that another version answered for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fallback {
    /// The version that failed (0: bundled).
    pub from_version: u64,
    /// Its error code (e.g. `plugin_trap`).
    pub code: String,
    pub message: String,
}

/// Which decisions to list.
#[derive(Clone, Debug, Default)]
pub struct DecisionQuery {
    pub shop: String,
    pub step: Option<Step>,
    /// Inclusive lower bound, unix milliseconds.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound, unix milliseconds.
    pub until_ms: Option<i64>,
    /// Only the decisions about this customer (the input's `customer.id`).
    pub customer: Option<String>,
    /// Only the decisions about this order.
    pub order: Option<String>,
    /// Only the decisions of this version.
    pub version: Option<u64>,
    pub limit: usize,
    /// Look at no more than this many entries of the window (a search by
    /// step or version alone on a large log; an indexed search by
    /// customer or order is not bounded by it).
    pub scan_limit: Option<usize>,
}

impl Decision {
    /// The customer the decision is about: its input's `customer.id`.
    pub fn customer_id(&self) -> Option<String> {
        if !self.customer.is_empty() {
            return Some(self.customer.clone());
        }
        #[derive(Deserialize)]
        struct Input {
            customer: Option<Customer>,
        }
        #[derive(Deserialize)]
        struct Customer {
            id: String,
        }
        serde_json::from_str::<Input>(self.input.get())
            .ok()?
            .customer
            .map(|c| c.id)
    }
}

/// A refund decision kept for the shop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub id: u64,
    pub shop: String,
    pub order_id: String,
    pub buyer_id: String,
    pub at_ms: i64,
    /// The request's reason, kind and amount as the plugin saw them.
    pub reason: RefundReason,
    pub kind: RefundKind,
    pub requested: u64,
    /// The decision: outcome, amount, return and message.
    pub decision: RefundDecision,
    /// Decision-log entry that made it.
    pub decision_id: u64,
}

/// A revisit planned by the revisit planner, and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevisitRecord {
    pub id: u64,
    pub shop: String,
    pub customer_id: String,
    pub due_at: i64,
    pub channel: Channel,
    pub purpose: String,
    pub message: String,
    pub max_attempts: u32,
    pub retry_after_hours: u32,
    pub status: RevisitStatus,
    pub decision_id: u64,
    /// Attempts made so far (outcomes recorded).
    #[serde(default)]
    pub attempts_made: u32,
    /// When it was planned, unix seconds.
    #[serde(default)]
    pub planned_at: i64,
    /// The complaint's cause, for complaint follow-ups.
    #[serde(default)]
    pub cause: Option<String>,
    /// Outcomes recorded by agents (回访记录), oldest first.
    #[serde(default)]
    pub outcomes: Vec<RevisitOutcome>,
}

/// One attempt's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevisitOutcome {
    /// unix seconds
    pub at: i64,
    pub result: OutcomeResult,
    /// 1 to 5, when the customer was reached and said.
    pub satisfaction: Option<u8>,
    pub note: String,
    pub agent: String,
}

/// What a shop's last good `shop.toml` said about the shop itself (not
/// its steps, whose versions are kept apart): enough to serve it on its
/// stored versions when its folder no longer loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShopRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of its API key, hex.
    pub key_sha256: Option<String>,
    pub webhook_url: Option<String>,
    /// The environment variable holding the webhook secret (the secret
    /// itself is never stored).
    pub webhook_secret_env: Option<String>,
}

/// A webhook delivery waiting to succeed (the outbox).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// "revisit-<id>-<attempt>": the same for every retry of one firing.
    pub key: String,
    pub shop: String,
    pub url: String,
    pub body: String,
    pub tries: u32,
    /// unix milliseconds of the next try
    pub next_try_ms: i64,
    pub last_error: Option<String>,
    /// Given up after the configured number of tries: kept, listed, and
    /// tried again only when asked.
    #[serde(default)]
    pub dead: bool,
    /// The `idempotency-key` header when it is not `key` (a workflow
    /// action's `<event id>/<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// unix milliseconds when it was queued (0: queued by a build that
    /// did not say).
    #[serde(default)]
    pub queued_ms: i64,
}

/// One event of the deploy audit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: u64,
    pub at_ms: i64,
    pub shop: String,
    pub step: Option<Step>,
    pub action: AuditAction,
    pub version: Option<u64>,
    pub digest: Option<String>,
    pub source: VersionSource,
    pub actor: Actor,
    pub reason: String,
}

/// One version of a shop's step: which component, with which config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// 1, 2, 3... per shop and step.
    pub version: u64,
    /// SHA-256 of the component; its bytes are kept under it.
    pub digest: String,
    /// The plugin config of this version (JSON object text).
    pub config_json: String,
    pub source: VersionSource,
    /// The file it came from, for file versions.
    pub path: Option<String>,
    /// Instances are reused between calls (else a fresh one per call).
    #[serde(default)]
    pub reuse: bool,
    /// Who deployed it.
    pub actor: Actor,
    pub at_ms: i64,
    /// Recorded to serve as a canary first (not the folder's main version).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
}

/// A canary of a shop's step: a version serving the customers whose
/// bucket is below `percent`, kept so a restart resumes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryRecord {
    /// The candidate version (recorded in the step's versions).
    pub version: u64,
    /// Share of customers it serves, 0 to 100 (hundredths count).
    pub percent: f64,
    /// Mixed into every customer's bucket: two canaries with different
    /// salts take customers independently.
    pub salt: String,
    /// Automatic promotion: the percents to go through while healthy
    /// (the last 100 promotes), empty for none.
    #[serde(default)]
    pub steps: Vec<f64>,
    /// Time between two automatic steps, seconds.
    #[serde(default)]
    pub interval_secs: u64,
    pub started_at_ms: i64,
    /// When the percent last changed, unix ms.
    pub changed_at_ms: i64,
    pub actor: Actor,
}
