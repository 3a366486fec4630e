//! Which customers a canary takes: each customer's bucket, out of
//! [`BUCKETS`], from a hash of (shop, step, salt, customer id). A canary
//! of P% takes the buckets below P × 100, so raising P keeps everyone it
//! had, a customer stays on one side while P stands, and two canaries with
//! different salts take customers independently of each other.

use sha2::{Digest, Sha256};

/// Buckets customers fall into: a percent has two decimals.
pub const BUCKETS: u32 = 10_000;

/// The bucket of `customer` for a canary of `shop`'s `step` salted with
/// `salt`: the first 8 bytes of SHA-256(`shop \0 step \0 salt \0
/// customer`), big-endian, modulo [`BUCKETS`]. Any backend must compute
/// it alike (the tests pin examples).
pub fn bucket(shop: &str, step: &str, salt: &str, customer: &str) -> u32 {
    let mut hash = Sha256::new();
    for (i, part) in [shop, step, salt, customer].into_iter().enumerate() {
        if i > 0 {
            hash.update([0u8]);
        }
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (head % u64::from(BUCKETS)) as u32
}

/// The buckets a canary of `percent` takes: those below this.
pub fn threshold(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * f64::from(BUCKETS) / 100.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned: a later backend (or another language) must bucket alike.
    #[test]
    fn buckets_are_pinned() {
        let cases = [
            ("tea-oil", "refund-policy", "s1", "tb_buyer_001", 0),
            ("tea-oil", "refund-policy", "s1", "tb_buyer_002", 0),
            ("tea-oil", "greeting", "s1", "tb_buyer_001", 0),
            ("apparel", "refund-policy", "s1", "tb_buyer_001", 0),
            ("tea-oil", "refund-policy", "s2", "tb_buyer_001", 0),
            ("tea-oil", "refund-policy", "s1", "买家小王", 0),
        ];
        let got: Vec<u32> = cases
            .iter()
            .map(|(shop, step, salt, customer, _)| bucket(shop, step, salt, customer))
            .collect();
        assert_eq!(got, PINNED, "{cases:?}");
    }

    // Computed apart from this code (Python hashlib), not by it.
    const PINNED: [u32; 6] = [9331, 7461, 8057, 153, 6175, 6622];

    #[test]
    fn thresholds_count_hundredths_of_a_percent() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(5.0), 500);
        assert_eq!(threshold(12.34), 1234);
        assert_eq!(threshold(100.0), BUCKETS);
        assert_eq!(threshold(250.0), BUCKETS);
    }

    #[test]
    fn raising_the_percent_keeps_every_customer_in_and_spreads_evenly() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("buyer-{i}")).collect();
        let inside = |percent: f64| -> Vec<bool> {
            ids.iter()
                .map(|c| bucket("tea-oil", "refund-policy", "salt", c) < threshold(percent))
                .collect()
        };
        let (five, twenty) = (inside(5.0), inside(20.0));
        assert!(five.iter().zip(&twenty).all(|(a, b)| !a || *b));
        let share = |v: &[bool]| v.iter().filter(|x| **x).count() as f64 / v.len() as f64;
        assert!((share(&five) - 0.05).abs() < 0.01, "{}", share(&five));
        assert!((share(&twenty) - 0.20).abs() < 0.015, "{}", share(&twenty));
    }

    #[test]
    fn two_canaries_of_one_shop_take_customers_independently() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("buyer-{i}")).collect();
        let t = threshold(10.0);
        let both = ids
            .iter()
            .filter(|c| {
                bucket("tea-oil", "refund-policy", "a1", c) < t
                    && bucket("tea-oil", "greeting", "b2", c) < t
            })
            .count() as f64
            / ids.len() as f64;
        // Independent: about 10% of 10%, not the 10% of one shared split.
        assert!(both < 0.02, "{both}");
    }
}
