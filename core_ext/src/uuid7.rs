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

/// Reserves `count` consecutive (timestamp, counter) pairs, strictly above every
/// earlier one, and returns the first. A new millisecond starts the counter at
/// `random_start`; the same or an earlier millisecond (the clock stepped back)
/// counts up from the last pair. The pairs of one reservation are consecutive
/// because the counter carries into the timestamp.
fn reserve_states(count: u64, now_ms: u64, random_start: u64) -> u64 {
    let now_ms = now_ms & TIMESTAMP_MASK;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let first = if now_ms > last >> COUNTER_BITS {
            (now_ms << COUNTER_BITS) | random_start
        } else {
            last + 1
        };
        let end = first + count.max(1) - 1;
        match LAST.compare_exchange_weak(last, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return first,
            Err(current) => last = current,
        }
    }
}

/// Builds the 16 bytes of a UUIDv7 from a reserved state and 64 random bits,
/// of which the 62 bits of `rand_b` are kept.
fn bytes_of(state: u64, random: u64) -> [u8; 16] {
    let timestamp = (state >> COUNTER_BITS) & TIMESTAMP_MASK;
    let counter = state & 0xfff;

    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&timestamp.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (counter >> 8) as u8;
    bytes[7] = counter as u8;
    bytes[8..].copy_from_slice(&random.to_be_bytes());
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    bytes
}

/// Returns the 16 bytes of a new UUIDv7.
pub fn new_bytes() -> [u8; 16] {
    let mut rng = rand::thread_rng();
    // The counter starts below 2048 so that at least 2048 ids fit in a millisecond
    // before it overflows into the timestamp.
    let state = reserve_states(1, unix_ms(), rng.next_u64() & 0x7ff);
    bytes_of(state, rng.next_u64())
}

/// A run of UUIDv7s reserved with one clock read and one atomic update, for the
/// events of one batch. The ids are strictly increasing, and all are above every
/// id made earlier in the process and below every id made later.
pub struct IdBlock {
    next_state: u64,
    remaining: u64,
    rng: rand::rngs::ThreadRng,
}

impl IdBlock {
    /// Reserves `count` ids stamped with `now_ms` (or later, when the counter of
    /// that millisecond runs out or the clock stepped back).
    pub fn reserve(count: u64, now_ms: u64) -> IdBlock {
        let mut rng = rand::thread_rng();
        let first = if count == 0 {
            0
        } else {
            reserve_states(count, now_ms, rng.next_u64() & 0x7ff)
        };
        IdBlock {
            next_state: first,
            remaining: count,
            rng,
        }
    }

    /// Returns the 16 bytes of the next reserved id. Past the reserved count it
    /// makes each id as `new_bytes` does, so the order guarantee still holds.
    pub fn next_bytes(&mut self) -> [u8; 16] {
        if self.remaining == 0 {
            return new_bytes();
        }
        let bytes = bytes_of(self.next_state, self.rng.next_u64());
        self.next_state += 1;
        self.remaining -= 1;
        bytes
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes 16 bytes as a lowercase hyphenated UUID of 36 ASCII characters.
pub fn write_uuid(bytes: &[u8; 16], text: &mut [u8; 36]) {
    let mut position = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text[position] = b'-';
            position += 1;
        }
        text[position] = HEX_DIGITS[usize::from(byte >> 4)];
        text[position + 1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        position += 2;
    }
}

/// Formats 16 bytes as a lowercase hyphenated UUID.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let mut text = [0u8; 36];
    write_uuid(bytes, &mut text);
    // Every byte written is an ASCII hex digit or a hyphen.
    text.iter().map(|&byte| char::from(byte)).collect()
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
