//! What the decision log keeps of each entry besides its body: a fixed
//! [`Row`] (time, id, shop, step, version, where the body is), written at
//! the head of the entry's frame and again in its segment's index, and
//! the hashes that find a shop, a buyer or an order.

use crate::steps::Step;
use crate::storage::Decision;
use std::hash::Hasher;

/// A stable 64-bit hash (FNV-1a: the same in every build, as files keep
/// it); never 0, which stands for "none".
pub(super) fn hash(parts: &[&[u8]]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    for p in parts {
        h.write(p);
        h.write_u8(0);
    }
    h.finish().max(1)
}

pub(super) fn shop_hash(shop: &str) -> u64 {
    hash(&[shop.as_bytes()])
}

/// Which index kind: by customer or by order.
pub(super) const CUSTOMER: u8 = b'c';
pub(super) const ORDER: u8 = b'o';

pub(super) fn subject_hash(shop: &str, kind: u8, subject: &str) -> u64 {
    hash(&[shop.as_bytes(), &[kind], subject.as_bytes()])
}

/// A step as one byte: its place in [`Step::ALL`], which only grows at
/// its end (files keep this byte).
pub(super) fn step_byte(step: Step) -> u8 {
    Step::ALL
        .iter()
        .position(|s| *s == step)
        .unwrap_or(u8::MAX as usize) as u8
}

#[cfg(test)]
pub(super) fn step_of(byte: u8) -> Option<Step> {
    Step::ALL.get(usize::from(byte)).copied()
}

/// One entry as its segment's index keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Row {
    pub at: i64,
    pub id: u64,
    pub shop: u64,
    pub version: u64,
    /// Where the frame starts in its segment, and the body's length
    /// (below [`MAX_LEN`]: it shares four bytes with the step).
    pub offset: u32,
    pub len: u32,
    pub step: u8,
}

/// The largest body an entry may have.
pub(super) const MAX_LEN: u32 = (1 << 24) - 1;

impl Row {
    pub(super) const BYTES: usize = 40;

    pub(super) fn of(d: &Decision) -> Row {
        Row {
            at: d.at_ms,
            id: d.id,
            shop: shop_hash(&d.shop),
            version: d.version,
            offset: 0,
            len: 0,
            step: step_byte(d.step),
        }
    }

    /// The order rows are kept in: by time, then id.
    pub(super) fn key(&self) -> (i64, u64) {
        (self.at, self.id)
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.at.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.shop.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&(self.len & MAX_LEN | u32::from(self.step) << 24).to_le_bytes());
    }

    pub(super) fn read(b: &[u8]) -> Row {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let len_step = u32_at(36);
        Row {
            at: u64_at(0) as i64,
            id: u64_at(8),
            shop: u64_at(16),
            version: u64_at(24),
            offset: u32_at(32),
            len: len_step & MAX_LEN,
            step: (len_step >> 24) as u8,
        }
    }
}

/// The subject hashes of `d`: its buyer's, and its order's if any.
pub(super) fn subjects(d: &Decision) -> Vec<u64> {
    d.customer_id()
        .map(|c| subject_hash(&d.shop, CUSTOMER, &c))
        .into_iter()
        .chain(d.order.as_deref().map(|o| subject_hash(&d.shop, ORDER, o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_back_as_written() {
        let row = Row {
            at: -5,
            id: u64::MAX - 1,
            shop: 7,
            version: 3,
            offset: 1 << 30,
            len: MAX_LEN,
            step: 2,
        };
        let mut b = Vec::new();
        row.write(&mut b);
        assert_eq!(b.len(), Row::BYTES);
        assert_eq!(Row::read(&b), row);
    }

    #[test]
    fn steps_and_hashes_are_what_the_files_keep() {
        // Files written by earlier builds keep these numbers: changing
        // them loses every entry's step or shop.
        assert_eq!(
            Step::ALL.map(step_byte).map(|b| step_of(b).unwrap()),
            Step::ALL
        );
        assert_eq!(step_byte(Step::ALL[0]), 0);
        assert_eq!(shop_hash("tea-oil"), 0xc450_1dd4_726b_ea1c);
        assert_ne!(
            subject_hash("s", CUSTOMER, "x"),
            subject_hash("s", ORDER, "x")
        );
    }
}
