//! The numbers a shop cares about that kefu knows (shared/domain.md's
//! "numbers shops care about"): orders confirmed and the refund rate
//! (退款率: refund requests per order confirmed); refunds — how many, how
//! they were decided, the share escalated to a supervisor, the money, the
//! time to decide; revisits — success rate, satisfaction, complaint
//! follow-ups — over a period, with a series by day. Read from the
//! period's refund records, the hourly tally of orders confirmed and the
//! shop's revisits, never by scanning the decision log.

use super::App;
use super::revisits::{self, Report};
use crate::bindings::types::RefundOutcome;
use crate::storage::{OutcomeResult, RevisitStatus, StorageError};

/// Most refund records one period reads (newest first); more are said to
/// be left out.
pub const MAX_REFUNDS: usize = 10_000;
/// Most refunds whose decision time is looked up (the newest).
const TIMED_REFUNDS: usize = 1_000;
/// How a refund was decided, in display order.
pub const OUTCOMES: [&str; 5] = [
    "approve",
    "reject",
    "escalate",
    "request-evidence",
    "explain",
];

/// One day of the period.
#[derive(Debug, Default, Clone)]
pub struct Day {
    /// Its start, unix seconds (midnight in China, UTC+8).
    pub start: i64,
    /// Orders confirmed (order-confirmation decisions that answered).
    pub orders: u64,
    pub refunds: usize,
    pub escalated: usize,
    /// Revisits closed that day (done or unreachable), and of them those
    /// where the customer was reached.
    pub closed: usize,
    pub reached: usize,
}

/// A shop's numbers over `[from, to)` (unix seconds).
#[derive(Debug)]
pub struct Kpis {
    pub shop: String,
    pub from: i64,
    pub to: i64,
    pub refunds: usize,
    /// Orders confirmed in the period (退款率's denominator).
    pub orders: u64,
    /// Refund requests over orders confirmed; none without orders.
    pub refund_rate: Option<f64>,
    /// More refunds than [`MAX_REFUNDS`] fell in the period: the figures
    /// are of the newest.
    pub refunds_capped: bool,
    /// Refunds by outcome, in [`OUTCOMES`] order.
    pub outcomes: [usize; 5],
    /// Escalated over decided; none without refunds.
    pub escalated_share: Option<f64>,
    /// What buyers asked for, and what was approved, fen.
    pub requested_fen: u64,
    pub approved_fen: u64,
    /// Time the refund rule took to decide (plugin call), ms, of the
    /// newest refunds.
    pub decision_ms_p50: Option<f64>,
    pub decision_ms_p95: Option<f64>,
    pub days: Vec<Day>,
    /// The 回访总结 of the period.
    pub revisits: Report,
}

/// China's offset: days start at midnight there.
const CHINA: i64 = 8 * 3600;

/// The start of the day (in China) holding `t`.
pub fn day_start(t: i64) -> i64 {
    (t + CHINA).div_euclid(86_400) * 86_400 - CHINA
}

fn outcome_index(o: &RefundOutcome) -> usize {
    match o {
        RefundOutcome::Approve => 0,
        RefundOutcome::Reject(_) => 1,
        RefundOutcome::Escalate(_) => 2,
        RefundOutcome::RequestEvidence(_) => 3,
        RefundOutcome::Explain(_) => 4,
    }
}

impl App {
    /// `shop`'s numbers over `[from, to)`, unix seconds; without
    /// `refunds`, the revisits' only (the refund figures are zero).
    pub fn kpis(
        &self,
        shop: &str,
        from: i64,
        to: i64,
        with_refunds: bool,
    ) -> Result<Kpis, StorageError> {
        let storage = self.storage.as_ref();
        let refunds = match with_refunds {
            true => storage.refunds_between(shop, from * 1000, to * 1000, MAX_REFUNDS + 1)?,
            false => Vec::new(),
        };
        let refunds_capped = refunds.len() > MAX_REFUNDS;
        let refunds = &refunds[..refunds.len().min(MAX_REFUNDS)];
        let first = day_start(from);
        let mut days: Vec<Day> = (0..)
            .map(|i| first + i * 86_400)
            .take_while(|&start| start < to)
            .map(|start| Day {
                start,
                ..Day::default()
            })
            .collect();
        let day_of = |t: i64| usize::try_from((day_start(t) - first) / 86_400).ok();
        let mut orders = 0;
        if with_refunds {
            for (hour_ms, n) in storage.orders_confirmed(shop, from * 1000, to * 1000)? {
                orders += n;
                if let Some(day) = day_of(hour_ms / 1000).and_then(|d| days.get_mut(d)) {
                    day.orders += n;
                }
            }
        }
        let mut outcomes = [0; 5];
        let (mut requested_fen, mut approved_fen) = (0u64, 0u64);
        for r in refunds {
            let i = outcome_index(&r.decision.outcome);
            outcomes[i] += 1;
            requested_fen += r.requested;
            if i == 0 {
                approved_fen += r.decision.amount;
            }
            if let Some(day) = day_of(r.at_ms / 1000).and_then(|d| days.get_mut(d)) {
                day.refunds += 1;
                day.escalated += usize::from(i == 2);
            }
        }
        let mut times: Vec<f64> = Vec::new();
        for r in refunds.iter().take(TIMED_REFUNDS) {
            if let Some(d) = storage.decision_at(shop, r.at_ms, r.decision_id)? {
                times.push(d.duration_us as f64 / 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            (!times.is_empty()).then(|| times[((times.len() - 1) as f64 * q).round() as usize])
        };
        let during = |t: i64| t >= from && t < to;
        for r in storage.revisits(shop, None, usize::MAX)? {
            let closed = matches!(r.status, RevisitStatus::Done | RevisitStatus::Unreachable);
            let Some(last) = r.outcomes.last().filter(|o| closed && during(o.at)) else {
                continue;
            };
            if let Some(day) = day_of(last.at).and_then(|d| days.get_mut(d)) {
                day.closed += 1;
                day.reached += usize::from(
                    r.outcomes
                        .iter()
                        .any(|o| o.result == OutcomeResult::Reached && during(o.at)),
                );
            }
        }
        Ok(Kpis {
            shop: shop.to_string(),
            from,
            to,
            refunds: refunds.len(),
            orders,
            refund_rate: (orders > 0).then(|| refunds.len() as f64 / orders as f64),
            refunds_capped,
            outcomes,
            escalated_share: (!refunds.is_empty())
                .then(|| outcomes[2] as f64 / refunds.len() as f64),
            requested_fen,
            approved_fen,
            decision_ms_p50: quantile(0.5),
            decision_ms_p95: quantile(0.95),
            days,
            revisits: revisits::report(storage, shop, from, to)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::day_start;

    #[test]
    fn days_start_at_midnight_in_china() {
        // 2025-12-01 00:00 +08:00 is 2025-11-30 16:00 UTC.
        let midnight = 1_764_518_400;
        assert_eq!(day_start(midnight), midnight);
        assert_eq!(day_start(midnight + 86_399), midnight);
        assert_eq!(day_start(midnight - 1), midnight - 86_400);
    }
}
