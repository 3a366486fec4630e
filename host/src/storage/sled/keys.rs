//! How records become sled keys and values. Keys start with the shop and
//! a separator, so a shop's records are one prefix and never mix with
//! another's; times are encoded so that byte order is time order.

use super::super::StorageError;
use crate::state::StateScope;
use crate::steps::Step;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Separator between key parts; shop and plugin names never contain it.
pub(super) const SEP: u8 = 0;

pub(super) fn backend(e: sled::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|e| StorageError::Corrupt(e.to_string()))
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// `shop \0`, the prefix of a shop's keys.
pub(super) fn shop_prefix(shop: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(shop.len() + 1);
    key.extend_from_slice(shop.as_bytes());
    key.push(SEP);
    key
}

/// Order-preserving encoding of a signed number.
pub(super) fn ordered(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

/// The number [`ordered`] encoded.
pub(super) fn unordered(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// `shop \0 time id`: a shop's records in time order.
pub(super) fn timed_key(shop: &str, time: i64, id: u64) -> Vec<u8> {
    let mut key = shop_prefix(shop);
    key.extend_from_slice(&ordered(time));
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `shop \0 step \0`: a shop step's keys.
pub(super) fn step_prefix(shop: &str, step: Step) -> Vec<u8> {
    let mut key = shop_prefix(shop);
    key.extend_from_slice(step.world().as_bytes());
    key.push(SEP);
    key
}

pub(super) fn state_key(scope: &StateScope, key: &str) -> Vec<u8> {
    let mut k = shop_prefix(&scope.shop);
    k.extend_from_slice(scope.plugin.as_bytes());
    k.push(SEP);
    k.extend_from_slice(key.as_bytes());
    k
}

/// A transaction's error as a storage error.
pub(super) fn transaction(e: sled::transaction::TransactionError<StorageError>) -> StorageError {
    match e {
        sled::transaction::TransactionError::Abort(e) => e,
        sled::transaction::TransactionError::Storage(e) => backend(e),
    }
}

/// An encoding failure inside a transaction: abort it.
pub(super) fn encode_tx<T: Serialize>(
    value: &T,
) -> Result<Vec<u8>, sled::transaction::ConflictableTransactionError<StorageError>> {
    encode(value).map_err(sled::transaction::ConflictableTransactionError::Abort)
}
