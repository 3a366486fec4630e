//! Revisits that happen: the scheduler marks planned revisits due when
//! their time comes and queues the shop's webhook; the deliverer sends it
//! at least once, signed, concurrently but fairly between shops; agents
//! record outcomes, which close or re-plan them; bulk plans run the
//! planner for many customers at once.

mod outcomes;
mod plans;
mod scheduler;
#[cfg(test)]
mod tests;
pub mod webhooks;

pub use outcomes::{
    OutcomeInput, Report, RevisitError, cancel, do_not_contact, record_outcome, report,
};
pub use plans::{MAX_BATCH, PlanResult, PlansReport};
pub use scheduler::{Scheduler, TICK};
pub use webhooks::{Deliverer, DeliveryView, WebhookError};
