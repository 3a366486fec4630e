//! A kefu revisit-planner plugin. Build: cargo build --release --target wasm32-wasip2
wit_bindgen::generate!({ world: "revisit-planner", path: "wit" });

use kefu::workflow::clock;
use kefu::workflow::types::{AttemptPolicy, Channel, PlannedRevisit};

struct Plugin;

impl Guest for Plugin {
    fn plan(request: RevisitRequest) -> Result<RevisitPlan, String> {
        let week = 7 * 86_400;
        Ok(RevisitPlan {
            revisits: vec![PlannedRevisit {
                due_at: clock::now() + week,
                channel: request.preferred_channel.unwrap_or(Channel::Chat),
                purpose: "satisfaction".into(),
                message: format!("{}您好，宝贝用着还满意吗？", request.customer.nickname),
                attempts: AttemptPolicy { max_attempts: 3, retry_after_hours: 24 },
            }],
        })
    }
}

export!(Plugin);
