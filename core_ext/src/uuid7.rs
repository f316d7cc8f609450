//! UUIDv7 (RFC 9562 section 5.7), strictly increasing within the process.
//!
//! Monotonicity follows RFC 9562 section 6.2, method 1: the 12-bit `rand_a`
//! field is a counter that starts at a random value below 2048 in each new
//! millisecond and counts up for ids made in the same millisecond. The 48-bit
//! timestamp and the counter are kept together in one atomic word, so a counter
//! overflow carries into the timestamp, which advances by one millisecond.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use rand::RngCore;

use crate::errors::{echo, CoreError};

/// `(unix_ms << 12) | counter` of the last id made by this process.
static LAST: AtomicU64 = AtomicU64::new(0);
const COUNTER_BITS: u32 = 12;
const TIMESTAMP_MASK: u64 = (1 << 48) - 1;

/// Returns the wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Reserves the next (timestamp, counter) pair, strictly above every earlier one.
/// A new millisecond starts the counter at `random_start`; the same or an earlier
/// millisecond (the clock stepped back) counts up from the last pair.
fn next_state(now_ms: u64, random_start: u64) -> u64 {
    let now_ms = now_ms & TIMESTAMP_MASK;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = if now_ms > last >> COUNTER_BITS {
            (now_ms << COUNTER_BITS) | random_start
        } else {
            last + 1
        };
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(current) => last = current,
        }
    }
}

/// Returns the 16 bytes of a new UUIDv7.
pub fn new_bytes() -> [u8; 16] {
    let mut rng = rand::thread_rng();
    let random = rng.next_u64();
    // The counter starts below 2048 so that at least 2048 ids fit in a millisecond
    // before it overflows into the timestamp.
    let state = next_state(unix_ms(), random & 0x7ff);
    let timestamp = state >> COUNTER_BITS;
    let counter = state & 0xfff;

    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&timestamp.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (counter >> 8) as u8;
    bytes[7] = counter as u8;
    let rand_b = rng.next_u64();
    bytes[8..].copy_from_slice(&rand_b.to_be_bytes());
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    bytes
}

/// Formats 16 bytes as a lowercase hyphenated UUID.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(36);
    for (index, &byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// Parses a hyphenated UUID (either case) into its 16 bytes.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let raw = text.as_bytes();
    if raw.len() != 36 {
        return None;
    }
    let mut bytes = [0u8; 16];
    let mut out = 0;
    let mut index = 0;
    while index < 36 {
        if matches!(index, 8 | 13 | 18 | 23) {
            if raw[index] != b'-' {
                return None;
            }
            index += 1;
            continue;
        }
        let high = (raw[index] as char).to_digit(16)?;
        let low = (raw[index + 1] as char).to_digit(16)?;
        bytes[out] = ((high << 4) | low) as u8;
        out += 1;
        index += 2;
    }
    Some(bytes)
}

/// Returns the Unix millisecond timestamp of a UUIDv7 (version 7, RFC variant).
pub fn timestamp_ms(text: &str) -> Result<u64, CoreError> {
    let bytes = parse_uuid(text).ok_or_else(|| {
        CoreError::Codec(format!(
            "expected a hyphenated UUID of 36 characters, got '{}'",
            echo(text)
        ))
    })?;
    if bytes[6] >> 4 != 7 || bytes[8] >> 6 != 0b10 {
        return Err(CoreError::Codec(format!(
            "expected a UUIDv7 (version 7, RFC 9562 variant), got '{}'",
            echo(text)
        )));
    }
    let mut timestamp = [0u8; 8];
    timestamp[2..].copy_from_slice(&bytes[..6]);
    Ok(u64::from_be_bytes(timestamp))
}

#[pyfunction]
pub fn uuid7() -> String {
    format_uuid(&new_bytes())
}

#[pyfunction]
pub fn uuid7_timestamp_ms(value: &str) -> PyResult<u64> {
    Ok(timestamp_ms(value)?)
}

#[pyfunction]
pub fn now_ms() -> u64 {
    unix_ms()
}
