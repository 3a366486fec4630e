//! Each shop at a glance (the console's overview): its steps, the version
//! serving, a canary or shadow running, the last hour's calls and errors,
//! and what failed to load. Read from the registry in memory, never from
//! the logs.

use super::{App, KeyOwner, now_ms};
use crate::steps::Step;

/// One step of a shop in the overview.
#[derive(Debug)]
pub struct StepSummary {
    pub step: Step,
    /// The version serving (0: the bundled default), none when the step
    /// is unavailable.
    pub version: Option<u64>,
    pub reuse: bool,
    /// The canary's version and percent, when one runs.
    pub canary: Option<(u64, f64)>,
    /// A shadow run's candidate label, when one runs.
    pub shadow: bool,
    /// Calls and errors in the last hour (the serving version's).
    pub calls_hour: u64,
    pub errors_hour: u64,
    /// Why the step serves nothing, when it does not.
    pub unavailable: Option<String>,
}

/// One shop in the overview.
#[derive(Debug)]
pub struct ShopSummary {
    pub id: String,
    pub name: String,
    pub steps: Vec<StepSummary>,
    /// What failed to load (a file, a config), newest last.
    pub failures: Vec<(Option<Step>, String)>,
    /// Why the shop's folder does not load, while it serves what it did.
    pub degraded: Option<String>,
}

/// A page of the overview.
#[derive(Debug)]
pub struct Overview {
    pub shops: Vec<ShopSummary>,
    /// Shops the owner may see that match the filter (more than shown
    /// when the page is full).
    pub matching: usize,
}

impl App {
    /// The shops `owner` may see whose id or name contains `filter`,
    /// sorted by id, at most `limit`.
    pub fn overview(&self, owner: &KeyOwner, filter: &str, limit: usize) -> Overview {
        let shops = self.registry.all();
        let failures = self.registry.failures();
        let filter = filter.trim().to_lowercase();
        let mut ids: Vec<&String> = shops
            .keys()
            .filter(|id| owner.opens(id))
            .filter(|id| {
                filter.is_empty()
                    || id.to_lowercase().contains(&filter)
                    || shops[*id].name.to_lowercase().contains(&filter)
            })
            .collect();
        ids.sort();
        let matching = ids.len();
        let now = now_ms() / 1000;
        let summaries = ids
            .into_iter()
            .take(limit)
            .map(|id| {
                let shop = &shops[id];
                let steps = Step::ALL
                    .into_iter()
                    .filter_map(|step| {
                        let active = shop.steps.get(&step);
                        let unavailable = shop.unavailable_reason(step).map(str::to_string);
                        if active.is_none() && unavailable.is_none() {
                            return None;
                        }
                        let (calls_hour, errors_hour) =
                            active.map_or((0, 0), |a| a.recent.last_hour(now));
                        Some(StepSummary {
                            step,
                            version: active.map(|a| a.version),
                            reuse: active.is_some_and(|a| a.pool.is_some()),
                            canary: shop
                                .canaries
                                .get(&step)
                                .map(|c| (c.record.version, c.record.percent)),
                            shadow: shop.shadows.contains_key(&step),
                            calls_hour,
                            errors_hour,
                            unavailable,
                        })
                    })
                    .collect();
                ShopSummary {
                    id: shop.id.clone(),
                    name: shop.name.clone(),
                    steps,
                    failures: failures
                        .iter()
                        .filter(|f| &f.shop == id)
                        .map(|f| (f.step, f.reason.clone()))
                        .collect(),
                    degraded: shop.degraded.clone(),
                }
            })
            .collect();
        Overview {
            shops: summaries,
            matching,
        }
    }
}
