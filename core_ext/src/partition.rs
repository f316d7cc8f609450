//! Broker partition of a tenant: FNV-1a 64 of the key prefix modulo the partition count.

use pyo3::prelude::*;

use crate::errors::CoreError;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Returns the 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// Returns the partition of `key_prefix` among `partitions` (at least 1).
pub fn partition_of(key_prefix: &str, partitions: u32) -> u32 {
    // The remainder is below `partitions`, so it fits in u32.
    (fnv1a_64(key_prefix.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// Checks a partition count from Python: 1 to 2^32 - 1.
pub fn checked_partitions(partitions: i64) -> Result<u32, CoreError> {
    match u32::try_from(partitions) {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(CoreError::InvalidArgument(format!(
            "partitions must be between 1 and {}, got {partitions}",
            u32::MAX
        ))),
    }
}

#[pyfunction]
pub fn partition_for(key_prefix: &str, partitions: i64) -> PyResult<u32> {
    let count = checked_partitions(partitions)?;
    Ok(partition_of(key_prefix, count))
}
