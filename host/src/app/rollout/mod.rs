//! Rolling out a shop step's new version safely: a canary that takes a
//! share of the shop's customers (sticky per customer, see `bucket`), its
//! analysis against the stable version (see `analysis`), and the fallback
//! that answers when the serving plugin fails (`on_failure`). Starting,
//! changing, promoting and aborting a canary are deploys: `deploy::canary`.

pub mod analysis;
pub mod bucket;

use super::registry::ActivePlugin;
use crate::error::CallError;
use crate::steps::Step;
use crate::storage::CanaryRecord;
use analysis::{ArmStats, CHECK_EVERY, Thresholds, Verdict};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What answers when a shop step's plugin fails (`on_failure` in
/// `[steps.<step>]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The version before (during a canary, the stable version answers
    /// for the canary): the shop's own rule that served until the last
    /// deploy. The default: a buyer gets the answer the shop gave a
    /// minute ago rather than none, and the decision says so.
    #[default]
    Previous,
    /// The version before, then the step's bundled default plugin.
    Default,
    /// No fallback: the caller gets the error.
    Error,
}

/// How one shop step rolls out and fails over.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepPolicy {
    pub on_failure: OnFailure,
    pub analysis: Thresholds,
}

/// Whether another version may answer for a call that failed this way:
/// the plugin's own failures, not the host's or the caller's.
pub fn falls_back(error: &CallError) -> bool {
    !matches!(error, CallError::WrongStep { .. } | CallError::Host(_))
}

/// A canary running on one shop step.
pub struct Canary {
    pub plugin: Arc<ActivePlugin>,
    pub record: CanaryRecord,
    /// Customers whose bucket is below this are in.
    threshold: u32,
    /// Calls on both sides since the canary started (kept across percent
    /// changes).
    pub stats: Arc<CanaryStats>,
}

impl Canary {
    pub fn new(
        plugin: Arc<ActivePlugin>,
        record: CanaryRecord,
        stats: Option<Arc<CanaryStats>>,
    ) -> Self {
        Canary {
            threshold: bucket::threshold(record.percent),
            plugin,
            record,
            stats: stats.unwrap_or_default(),
        }
    }

    /// Whether `customer` of `shop` gets the canary.
    pub fn takes(&self, shop: &str, step: Step, customer: &str) -> bool {
        self.threshold > 0
            && bucket::bucket(shop, step.world(), &self.record.salt, customer) < self.threshold
    }
}

/// Both sides' calls since a canary started.
#[derive(Default)]
pub struct CanaryStats {
    pub stable: ArmStats,
    pub canary: ArmStats,
    canary_calls: AtomicU64,
    /// Set by whoever ends the canary (an abort on the request path runs
    /// once).
    ended: AtomicBool,
}

impl CanaryStats {
    /// Count a call on its side (`share` none: it failed); whether the
    /// analysis should look now.
    pub fn record(&self, canary: bool, share: Option<bool>, duration: Duration) -> bool {
        if !canary {
            self.stable.record(share, duration);
            return false;
        }
        self.canary.record(share, duration);
        let n = self.canary_calls.fetch_add(1, Ordering::Relaxed) + 1;
        share.is_none() || n.is_multiple_of(CHECK_EVERY)
    }

    pub fn verdict(&self, thresholds: &Thresholds) -> Verdict {
        analysis::analyze(thresholds, &self.stable.snapshot(), &self.canary.snapshot())
    }

    /// Claim the ending of the canary: true once.
    pub fn claim_end(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }

    /// Give the claim back (the end did not happen).
    pub fn release_end(&self) {
        self.ended.store(false, Ordering::Release);
    }
}
