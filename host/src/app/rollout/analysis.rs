//! The canary analysis: the canary's calls against the stable version's
//! on the same shop step over the same window, on three checks, each a
//! one-sided test at level `alpha` with a practical margin:
//!
//! - **errors**: the canary's error rate (traps, timeouts, memory, invalid
//!   output...) exceeds the stable one's by at least
//!   `max_error_increase`, and significantly: the chance of the canary's
//!   count of errors or more, were its calls failing at the stable rate,
//!   is below `alpha` (an exact Poisson tail while the count expected is
//!   under 100, a two-proportion z-test above);
//! - **latency**: more than 1% of the canary's calls take longer than
//!   T = max(`max_p99_ratio` × stable p99, stable p99 + `p99_floor_ms`),
//!   significantly more than the stable calls do (its p99 is above T);
//! - **decision share** (e.g. the approve rate of refunds): the canary's
//!   share differs from the stable one's by more than
//!   `max_share_change`, significantly.
//!
//! Below `min_calls` on either side the verdict is "wait", never
//! "healthy". The analysis looks again every [`CHECK_EVERY`] canary calls,
//! and after each canary failure; `alpha` of 0.0001 per look keeps healthy
//! canaries from being aborted by chance over many looks (the simulation
//! test below: 3 of 1,000, at most 10 allowed; 10 at 0.0005). The normal
//! approximation alone is not enough for rare events: with it, 18 of the
//! 1,000 healthy canaries (error rates under 2%) were aborted.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Canary calls between two looks of the analysis on the request path.
pub const CHECK_EVERY: u64 = 16;

/// A shop step's analysis thresholds (`[steps.<step>.analysis]`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Calls each side needs before any verdict but "wait".
    pub min_calls: u64,
    /// How unlikely by chance a difference must be to count (one-sided,
    /// per look).
    pub alpha: f64,
    /// The largest increase of the error rate tolerated (0.02: two
    /// points).
    pub max_error_increase: f64,
    /// The largest change of the decision share tolerated, either way
    /// (0.10: ten points).
    pub max_share_change: f64,
    /// The canary's p99 call time may be this many times the stable one's...
    pub max_p99_ratio: f64,
    /// ...or this many milliseconds above it, whichever is more.
    pub p99_floor_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_calls: 100,
            alpha: 0.0001,
            max_error_increase: 0.02,
            max_share_change: 0.10,
            max_p99_ratio: 2.0,
            p99_floor_ms: 5.0,
        }
    }
}

impl Thresholds {
    /// What is wrong with the thresholds, if anything.
    pub fn check(&self) -> Result<(), String> {
        let fraction = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be between 0 and 1, not {v}"))
            }
        };
        fraction("max_error_increase", self.max_error_increase)?;
        fraction("max_share_change", self.max_share_change)?;
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(format!(
                "alpha must be above 0 and below 0.5, not {}",
                self.alpha
            ));
        }
        if !(self.max_p99_ratio.is_finite() && self.max_p99_ratio >= 1.0) {
            return Err(format!(
                "max_p99_ratio must be at least 1, not {}",
                self.max_p99_ratio
            ));
        }
        if !(self.p99_floor_ms.is_finite() && self.p99_floor_ms >= 0.0) {
            return Err(format!(
                "p99_floor_ms must be 0 or more, not {}",
                self.p99_floor_ms
            ));
        }
        if self.min_calls == 0 {
            return Err("min_calls must be at least 1".into());
        }
        Ok(())
    }
}

/// Call-time buckets: exact below 8 µs, then four per doubling.
const LATENCY_BUCKETS: usize = 160;

fn latency_bucket(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize;
    let sub = ((us >> (exp - 2)) & 3) as usize;
    (8 + (exp - 3) * 4 + sub).min(LATENCY_BUCKETS - 1)
}

/// The smallest call time (µs) in bucket `i`.
fn bucket_floor(i: usize) -> u64 {
    if i < 8 {
        return i as u64;
    }
    let exp = (i - 8) / 4 + 3;
    let sub = ((i - 8) % 4) as u64;
    (1u64 << exp) + (sub << (exp - 2))
}

/// One side's calls since the canary started; updated on the request
/// path with relaxed atomic adds.
pub struct ArmStats {
    calls: AtomicU64,
    errors: AtomicU64,
    shared: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for ArmStats {
    fn default() -> Self {
        ArmStats {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            shared: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ArmStats {
    /// Count one call: failed (`share` none) or answered, and whether its
    /// answer counts in the step's decision share.
    pub fn record(&self, share: Option<bool>, duration: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match share {
            None => self.errors.fetch_add(1, Ordering::Relaxed),
            Some(true) => self.shared.fetch_add(1, Ordering::Relaxed),
            Some(false) => 0,
        };
        let us = duration.as_micros().min(u128::from(u64::MAX)) as u64;
        self.latency[latency_bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            shared: self.shared.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// One side's counts at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub calls: u64,
    pub errors: u64,
    /// Answers counted in the decision share.
    pub shared: u64,
    latency: Vec<u64>,
}

impl Snapshot {
    /// Count a call (for tests and simulations: the same counts as
    /// [`ArmStats::record`]).
    pub fn add(&mut self, share: Option<bool>, duration: Duration) {
        if self.latency.is_empty() {
            self.latency = vec![0; LATENCY_BUCKETS];
        }
        self.calls += 1;
        match share {
            None => self.errors += 1,
            Some(true) => self.shared += 1,
            Some(false) => {}
        }
        self.latency[latency_bucket(duration.as_micros() as u64)] += 1;
    }

    fn answered(&self) -> u64 {
        self.calls - self.errors
    }

    /// The call time that `q` of the calls stay under, µs (bucket floor).
    pub fn quantile_us(&self, q: f64) -> u64 {
        let want = (self.calls as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return bucket_floor(i);
            }
        }
        0
    }

    /// Calls that took at least `us`.
    fn slower_than(&self, us: u64) -> u64 {
        self.latency
            .iter()
            .enumerate()
            .filter(|(i, _)| bucket_floor(*i) >= us)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn summary(&self) -> ArmSummary {
        let rate = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        ArmSummary {
            calls: self.calls,
            errors: self.errors,
            error_rate: rate(self.errors, self.calls),
            share: rate(self.shared, self.answered()),
            p99_ms: self.quantile_us(0.99) as f64 / 1000.0,
        }
    }
}

/// One side of the comparison, as the API and the audit show it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ArmSummary {
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Share of answers counted in the step's decision share.
    pub share: f64,
    /// p99 call time, milliseconds (to the analysis' bucket).
    pub p99_ms: f64,
}

/// What the analysis concludes.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", tag = "verdict")]
pub enum Verdict {
    /// Too few calls to judge.
    Wait { reason: String },
    /// Enough calls, no regression.
    Healthy,
    /// A significant regression: abort.
    Regressed(Evidence),
}

/// Why a canary regressed.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Evidence {
    /// `errors`, `latency` or `share`.
    pub check: String,
    pub stable: ArmSummary,
    pub canary: ArmSummary,
    /// The chance of a difference this large or larger by chance alone.
    pub p_value: f64,
    /// The comparison in words.
    pub detail: String,
}

/// The chance that `x1` of `n1` or more happen where `x2` of `n2` did,
/// were both from one rate (one-sided): an exact Poisson tail at the rate
/// `(x2 + 1) / n2` (leaning up, for a stable side with few events) while
/// fewer than 100 are expected, else the pooled two-proportion z-test.
fn p_more(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    let rate = ((x2 + 1) as f64 / n2 as f64).min(1.0);
    let expected = rate * n1 as f64;
    if expected < 100.0 {
        return poisson_tail(x1, expected);
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p = (x1 + x2) as f64 / (n1f + n2f);
    let se = (p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 {
        return 1.0;
    }
    normal_tail((x1 as f64 / n1f - x2 as f64 / n2f) / se)
}

/// The chance that a proportion `x1` of `n1` exceeds `x2` of `n2` by more
/// than `margin` by chance: the z-test with unpooled variance (shares are
/// not rare, so the normal approximation holds).
fn p_beyond(x1: u64, n1: u64, x2: u64, n2: u64, margin: f64) -> f64 {
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 as f64 / n1f, x2 as f64 / n2f);
    let se = (p1 * (1.0 - p1) / n1f + p2 * (1.0 - p2) / n2f).sqrt();
    let diff = p1 - p2 - margin;
    if se == 0.0 {
        return if diff > 0.0 { 0.0 } else { 1.0 };
    }
    normal_tail(diff / se)
}

/// P(X ≥ k) for X ~ Poisson(λ).
fn poisson_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    if k as f64 <= lambda {
        return 1.0_f64.min(0.5 + 0.5 * (lambda - k as f64 + 1.0) / lambda.sqrt().max(1.0));
    }
    // pmf(k) = e^-λ λ^k / k!, then each next term × λ / (i + 1).
    let mut term = (k as f64 * lambda.ln() - lambda - ln_factorial(k)).exp();
    let mut sum = 0.0;
    let mut i = k;
    while term > sum * 1e-12 && i < k + 100_000 {
        sum += term;
        i += 1;
        term *= lambda / i as f64;
    }
    sum.min(1.0)
}

/// ln(n!): exact below 30, Stirling's series above.
fn ln_factorial(n: u64) -> f64 {
    if n < 30 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x * x)
}

/// P(Z ≥ z) for a standard normal Z (Abramowitz-Stegun 7.1.26 on erfc,
/// error under 1.5e-7).
fn normal_tail(z: f64) -> f64 {
    if z < 0.0 {
        return 1.0 - normal_tail(-z);
    }
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

/// Compare the canary with the stable version.
pub fn analyze(t: &Thresholds, stable: &Snapshot, canary: &Snapshot) -> Verdict {
    if stable.calls < t.min_calls || canary.calls < t.min_calls {
        return Verdict::Wait {
            reason: format!(
                "{} stable and {} canary calls, {} each needed",
                stable.calls, canary.calls, t.min_calls
            ),
        };
    }
    let evidence = |check: &str, p_value: f64, detail: String| {
        Verdict::Regressed(Evidence {
            check: check.into(),
            stable: stable.summary(),
            canary: canary.summary(),
            p_value,
            detail,
        })
    };
    let (s, c) = (stable.summary(), canary.summary());
    // Errors: the canary worse by more than the margin, significantly.
    let p = p_more(canary.errors, canary.calls, stable.errors, stable.calls);
    if p < t.alpha && c.error_rate - s.error_rate >= t.max_error_increase {
        return evidence(
            "errors",
            p,
            format!(
                "error rate {:.2}% against {:.2}% (p = {p:.1e} < {}, increase ≥ {} points)",
                c.error_rate * 100.0,
                s.error_rate * 100.0,
                t.alpha,
                t.max_error_increase * 100.0
            ),
        );
    }
    // Latency: over 1% of the canary's calls slower than T.
    let p99 = stable.quantile_us(0.99) as f64;
    let limit = (p99 * t.max_p99_ratio).max(p99 + t.p99_floor_ms * 1000.0) as u64;
    let (slow_c, slow_s) = (canary.slower_than(limit), stable.slower_than(limit));
    let p = p_more(slow_c, canary.calls, slow_s, stable.calls);
    if p < t.alpha && slow_c as f64 / canary.calls as f64 > 0.01 {
        return evidence(
            "latency",
            p,
            format!(
                "{:.1}% of canary calls took over {:.1} ms (stable p99 {:.2} ms), against {:.1}% of stable calls (p = {p:.1e})",
                slow_c as f64 * 100.0 / canary.calls as f64,
                limit as f64 / 1000.0,
                p99 / 1000.0,
                slow_s as f64 * 100.0 / stable.calls as f64,
            ),
        );
    }
    // Decision share, either way, beyond the margin.
    let (ac, as_) = (canary.answered(), stable.answered());
    if ac >= t.min_calls && as_ >= t.min_calls {
        let up = p_beyond(canary.shared, ac, stable.shared, as_, t.max_share_change);
        let down = p_beyond(
            ac - canary.shared,
            ac,
            as_ - stable.shared,
            as_,
            t.max_share_change,
        );
        let p = up.min(down);
        if p < t.alpha {
            return evidence(
                "share",
                p,
                format!(
                    "decision share {:.1}% against {:.1}% (more than {} points apart, p = {p:.1e})",
                    c.share * 100.0,
                    s.share * 100.0,
                    t.max_share_change * 100.0
                ),
            );
        }
    }
    Verdict::Healthy
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible noise without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn chance(&mut self, p: f64) -> bool {
            self.next() < p
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.next().max(1e-12), self.next());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// A version's behaviour: error rate, decision share, call times.
    #[derive(Clone, Copy)]
    struct Version {
        errors: f64,
        share: f64,
        median_us: f64,
        /// Calls hit by a pause of the machine (1-20 ms more).
        hiccups: f64,
    }

    impl Version {
        fn call(&self, rng: &mut Rng) -> (Option<bool>, Duration) {
            let mut us = self.median_us * (0.5 * rng.normal()).exp();
            if rng.chance(self.hiccups) {
                us += 1000.0 + 19_000.0 * rng.next();
            }
            let outcome = if rng.chance(self.errors) {
                None
            } else {
                Some(rng.chance(self.share))
            };
            (outcome, Duration::from_micros(us as u64))
        }
    }

    /// Run a canary of `percent` until it is aborted (the canary calls it
    /// took) or `canary_calls` pass, looking as the request path does.
    fn run(
        rng: &mut Rng,
        stable: Version,
        canary: Version,
        percent: f64,
        canary_calls: u64,
    ) -> Option<(u64, Evidence)> {
        let t = Thresholds::default();
        let (mut s, mut c) = (Snapshot::default(), Snapshot::default());
        while c.calls < canary_calls {
            if rng.chance(percent / 100.0) {
                let (outcome, d) = canary.call(rng);
                c.add(outcome, d);
                if (c.calls.is_multiple_of(CHECK_EVERY) || outcome.is_none())
                    && let Verdict::Regressed(e) = analyze(&t, &s, &c)
                {
                    return Some((c.calls, e));
                }
            } else {
                let (outcome, d) = stable.call(rng);
                s.add(outcome, d);
            }
        }
        None
    }

    fn healthy(rng: &mut Rng) -> Version {
        Version {
            errors: 0.02 * rng.next(),
            share: 0.1 + 0.8 * rng.next(),
            median_us: 30.0 + 3000.0 * rng.next(),
            hiccups: 0.01 * rng.next(),
        }
    }

    #[test]
    fn healthy_canaries_are_rarely_aborted() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut aborted = Vec::new();
        for _ in 0..1000 {
            let stable = healthy(&mut rng);
            let percent = [1.0, 5.0, 10.0, 25.0, 50.0][(rng.next() * 5.0) as usize];
            if let Some((_, e)) = run(&mut rng, stable, stable, percent, 1000) {
                aborted.push(e);
            }
        }
        let checks: Vec<(&str, f64, f64)> = aborted
            .iter()
            .map(|e| (e.check.as_str(), e.stable.error_rate, e.canary.error_rate))
            .collect();
        eprintln!("{} of 1000 healthy canaries aborted", aborted.len());
        assert!(
            aborted.len() <= 10,
            "{} of 1000 healthy canaries aborted: {checks:?}",
            aborted.len(),
        );
    }

    #[test]
    fn a_canary_failing_a_fifth_of_its_calls_is_aborted_within_200_calls() {
        let mut rng = Rng(0x5eed_1234_abcd_0002);
        for _ in 0..200 {
            let stable = healthy(&mut rng);
            let failing = Version {
                errors: 0.2,
                ..stable
            };
            let (calls, e) = run(&mut rng, stable, failing, 10.0, 200)
                .expect("a canary failing 20% of its calls is aborted");
            assert!(calls <= 200);
            assert_eq!(e.check, "errors");
        }
    }

    #[test]
    fn a_slower_canary_and_a_canary_that_approves_more_are_aborted() {
        let mut rng = Rng(0x5eed_1234_abcd_0003);
        let stable = Version {
            errors: 0.0,
            share: 0.3,
            median_us: 200.0,
            hiccups: 0.0,
        };
        let slow = Version {
            median_us: 20_000.0,
            ..stable
        };
        let (_, e) = run(&mut rng, stable, slow, 10.0, 1000).expect("slow is aborted");
        assert_eq!(e.check, "latency", "{e:?}");
        let lenient = Version {
            share: 0.6,
            ..stable
        };
        let (_, e) = run(&mut rng, stable, lenient, 10.0, 1000).expect("lenient is aborted");
        assert_eq!(e.check, "share", "{e:?}");
    }

    #[test]
    fn below_the_minimum_the_verdict_is_wait() {
        let mut rng = Rng(7);
        let failing = Version {
            errors: 1.0,
            share: 0.5,
            median_us: 100.0,
            hiccups: 0.0,
        };
        let (mut s, mut c) = (Snapshot::default(), Snapshot::default());
        for _ in 0..99 {
            let (o, d) = failing.call(&mut rng);
            c.add(o, d);
            s.add(Some(true), d);
        }
        assert!(matches!(
            analyze(&Thresholds::default(), &s, &c),
            Verdict::Wait { .. }
        ));
    }

    #[test]
    fn tails_match_known_values() {
        // Poisson(2): P(X ≥ 5) = 0.052653, P(X ≥ 9) = 0.000237.
        assert!((poisson_tail(5, 2.0) - 0.052_653).abs() < 1e-5);
        assert!((poisson_tail(9, 2.0) - 0.000_237).abs() < 2e-6);
        // P(Z ≥ 1.96) = 0.025, P(Z ≥ 3.29) = 0.0005.
        assert!((normal_tail(1.96) - 0.025).abs() < 1e-4);
        assert!((normal_tail(3.29) - 0.000_5).abs() < 2e-5);
        // Stirling above 30 agrees with the exact sum.
        let exact: f64 = (2..=40u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(40) - exact).abs() < 1e-9);
    }

    #[test]
    fn latency_buckets_round_trip() {
        for us in [0, 1, 7, 8, 9, 15, 16, 100, 1000, 12_345, 1 << 30] {
            let i = latency_bucket(us);
            assert!(bucket_floor(i) <= us, "{us}");
            assert!(i + 1 == LATENCY_BUCKETS || bucket_floor(i + 1) > us, "{us}");
        }
    }
}
