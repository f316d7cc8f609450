//! Events: limits, validation and the JSON document of the original schema.
//!
//! Field order is fixed: `event_id, event_type, timestamp, ip, user_agent,
//! referer, accept_language, request_path, request_host, params`. Lengths are
//! counted in UTF-8 bytes. Header-derived fields longer than `max_field_len` are
//! cut at a character boundary rather than rejected, because a browser controls
//! them and the event is still worth keeping.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{echo, CoreError};
use crate::uuid7::{format_uuid, new_bytes, parse_uuid, unix_ms};

pub const MAX_EVENT_TYPE_LEN: usize = 64;

/// Per-event limits, shared by `build_event` and the batch parser.
#[pyclass(frozen, module = "tracker._core")]
#[derive(Clone, Copy, Debug)]
pub struct EventLimits {
    #[pyo3(get)]
    pub max_params: usize,
    #[pyo3(get)]
    pub max_key_len: usize,
    #[pyo3(get)]
    pub max_value_len: usize,
    #[pyo3(get)]
    pub max_field_len: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_params: 64,
            max_key_len: 128,
            max_value_len: 2048,
            max_field_len: 2048,
        }
    }
}

fn positive_limit(name: &str, value: i64) -> Result<usize, CoreError> {
    match usize::try_from(value) {
        Ok(limit) if limit >= 1 => Ok(limit),
        _ => Err(CoreError::InvalidArgument(format!(
            "{name} must be at least 1, got {value}"
        ))),
    }
}

#[pymethods]
impl EventLimits {
    #[new]
    #[pyo3(signature = (*, max_params = 64, max_key_len = 128, max_value_len = 2048, max_field_len = 2048))]
    fn py_new(
        max_params: i64,
        max_key_len: i64,
        max_value_len: i64,
        max_field_len: i64,
    ) -> PyResult<Self> {
        Ok(EventLimits {
            max_params: positive_limit("max_params", max_params)?,
            max_key_len: positive_limit("max_key_len", max_key_len)?,
            max_value_len: positive_limit("max_value_len", max_value_len)?,
            max_field_len: positive_limit("max_field_len", max_field_len)?,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "EventLimits(max_params={}, max_key_len={}, max_value_len={}, max_field_len={})",
            self.max_params, self.max_key_len, self.max_value_len, self.max_field_len
        )
    }
}

/// Borrowed fields of one event, ready to serialise.
pub struct EventRef<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub timestamp: u64,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub referer: &'a str,
    pub accept_language: &'a str,
    pub request_path: &'a str,
    pub request_host: &'a str,
    pub params: &'a [(&'a str, &'a str)],
}

/// Checks an event type: 1 to 64 characters of `[A-Za-z0-9_.:-]`.
pub fn check_event_type(event_type: &str) -> Result<(), CoreError> {
    let valid = !event_type.is_empty()
        && event_type.len() <= MAX_EVENT_TYPE_LEN
        && event_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if valid {
        return Ok(());
    }
    Err(CoreError::event(
        "event_type",
        format!(
            "must be 1 to 64 characters of [A-Za-z0-9_.:-], got '{}'",
            echo(event_type)
        ),
    ))
}

/// Parses a client-given event id, a hyphenated UUID in either case.
pub fn parse_event_id(event_id: &str) -> Result<[u8; 16], CoreError> {
    parse_uuid(event_id).ok_or_else(|| {
        CoreError::event(
            "event_id",
            format!(
                "must be a hyphenated UUID of 36 characters, got '{}'",
                echo(event_id)
            ),
        )
    })
}

/// Returns the canonical lowercase form of a client-given event id.
pub fn canonical_event_id(event_id: &str) -> Result<String, CoreError> {
    parse_event_id(event_id).map(|bytes| format_uuid(&bytes))
}

/// Returns a new UUIDv7 event id.
pub fn new_event_id() -> String {
    format_uuid(&new_bytes())
}

/// Cuts `value` to at most `max_len` bytes at a character boundary.
pub fn truncate_field(value: &str, max_len: usize) -> &str {
    if value.len() <= max_len {
        return value;
    }
    let mut end = max_len;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Collapses repeated keys: each key keeps the position of its first occurrence
/// and the value of its last, as a Python dict built from the pairs would.
pub fn dedup_params<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut unique: Vec<(&'a str, &'a str)> = Vec::with_capacity(pairs.len());
    if pairs.len() <= 16 {
        for &(key, value) in pairs {
            match unique.iter_mut().find(|(seen, _)| *seen == key) {
                Some(slot) => slot.1 = value,
                None => unique.push((key, value)),
            }
        }
        return unique;
    }
    let mut positions: HashMap<&'a str, usize> = HashMap::with_capacity(pairs.len());
    for &(key, value) in pairs {
        match positions.get(key) {
            Some(&position) => unique[position].1 = value,
            None => {
                positions.insert(key, unique.len());
                unique.push((key, value));
            }
        }
    }
    unique
}

/// Checks the number of params and the length of each key and value.
pub fn check_params<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    limits: &EventLimits,
) -> Result<(), CoreError> {
    if params.len() > limits.max_params {
        return Err(CoreError::event(
            "params",
            format!(
                "has {} params, the maximum is {}",
                params.len(),
                limits.max_params
            ),
        ));
    }
    for (key, value) in params {
        check_param(key.as_ref(), value.as_ref(), limits)?;
    }
    Ok(())
}

/// Checks the length of one param key and value.
pub fn check_param(key: &str, value: &str, limits: &EventLimits) -> Result<(), CoreError> {
    if key.is_empty() || key.len() > limits.max_key_len {
        return Err(CoreError::event(
            "params",
            format!(
                "param name '{}' must be 1 to {} bytes, got {} bytes",
                echo(key),
                limits.max_key_len,
                key.len()
            ),
        ));
    }
    if value.len() > limits.max_value_len {
        return Err(CoreError::event(
            format!("params.{}", echo(key)),
            format!(
                "value is {} bytes, the maximum is {}",
                value.len(),
                limits.max_value_len
            ),
        ));
    }
    Ok(())
}

/// JSON escape for each byte below 0x80: 0 means "copy as is".
const ESCAPE: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Returns a mask with the high bit set in each of the 8 bytes of `word` that is
/// below 0x20, a quote or a backslash, reading the word little-endian. Each test is
/// the "some byte is zero / below n" bit trick, whose lowest flagged byte is always
/// exact. A byte above it may be flagged falsely by a borrow, so a caller that
/// needs more than the first position checks the rest byte by byte.
pub fn escape_mask(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_quote = quote.wrapping_sub(ONES) & !quote;
    let has_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | has_quote | has_backslash) & HIGH_BITS
}

/// Returns whether any of the 8 bytes in `word` is below 0x20, a quote or a
/// backslash. There are no false negatives, and a flagged word is then checked
/// byte by byte.
fn word_needs_escape(word: u64) -> bool {
    escape_mask(word) != 0
}

fn push_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match escape {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0x0f)],
        ]),
        other => out.extend_from_slice(&[b'\\', other]),
    }
}

/// Appends `value` as a JSON string, escaping quotes, backslashes and control
/// characters. Clean 8-byte words are skipped without a per-byte lookup.
pub fn write_json_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        if index + 8 <= bytes.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[index..index + 8]);
            if !word_needs_escape(u64::from_le_bytes(word)) {
                index += 8;
                continue;
            }
        }
        let end = (index + 8).min(bytes.len());
        for position in index..end {
            let byte = bytes[position];
            if byte >= 0x80 {
                continue;
            }
            let escape = ESCAPE[usize::from(byte)];
            if escape != 0 {
                out.extend_from_slice(&bytes[start..position]);
                push_escape(out, byte, escape);
                start = position + 1;
            }
        }
        index = end;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends the JSON document of one event in the fixed field order.
pub fn write_event(out: &mut Vec<u8>, event: &EventRef<'_>) {
    out.extend_from_slice(b"{\"event_id\":");
    write_json_str(out, event.event_id);
    out.extend_from_slice(b",\"event_type\":");
    write_json_str(out, event.event_type);
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(event.timestamp.to_string().as_bytes());
    out.extend_from_slice(b",\"ip\":");
    write_json_str(out, event.ip);
    out.extend_from_slice(b",\"user_agent\":");
    write_json_str(out, event.user_agent);
    out.extend_from_slice(b",\"referer\":");
    write_json_str(out, event.referer);
    out.extend_from_slice(b",\"accept_language\":");
    write_json_str(out, event.accept_language);
    out.extend_from_slice(b",\"request_path\":");
    write_json_str(out, event.request_path);
    out.extend_from_slice(b",\"request_host\":");
    write_json_str(out, event.request_host);
    out.extend_from_slice(b",\"params\":{");
    for (index, (key, value)) in event.params.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write_json_str(out, value);
    }
    out.extend_from_slice(b"}}");
}

/// Request fields that `build_event` and the batch parser stamp on events.
pub struct RequestFields<'a> {
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub referer: &'a str,
    pub accept_language: &'a str,
    pub request_path: &'a str,
    pub request_host: &'a str,
}

/// Validates and serialises one event; returns its id and JSON document.
pub fn build(
    event_type: &str,
    pairs: &[(&str, &str)],
    request: &RequestFields<'_>,
    limits: &EventLimits,
    event_id: Option<&str>,
    timestamp: Option<u64>,
) -> Result<(String, Vec<u8>), CoreError> {
    check_event_type(event_type)?;
    let params = dedup_params(pairs);
    check_params(&params, limits)?;
    let event_id = match event_id {
        Some(given) => canonical_event_id(given)?,
        None => new_event_id(),
    };

    let max = limits.max_field_len;
    let event = EventRef {
        event_id: &event_id,
        event_type,
        timestamp: timestamp.unwrap_or_else(unix_ms),
        ip: truncate_field(request.ip, max),
        user_agent: truncate_field(request.user_agent, max),
        referer: truncate_field(request.referer, max),
        accept_language: truncate_field(request.accept_language, max),
        request_path: truncate_field(request.request_path, max),
        request_host: truncate_field(request.request_host, max),
        params: &params,
    };
    let mut out = Vec::with_capacity(256 + params.len() * 32);
    write_event(&mut out, &event);
    Ok((event_id, out))
}

#[pyfunction]
#[pyo3(signature = (
    event_type, params, *, ip, user_agent, referer, accept_language, request_path,
    request_host, limits, event_id = None, timestamp = None
))]
#[allow(clippy::too_many_arguments)]
pub fn build_event<'py>(
    py: Python<'py>,
    event_type: &str,
    params: Vec<(pyo3::pybacked::PyBackedStr, pyo3::pybacked::PyBackedStr)>,
    ip: &str,
    user_agent: &str,
    referer: &str,
    accept_language: &str,
    request_path: &str,
    request_host: &str,
    limits: PyRef<'py, EventLimits>,
    event_id: Option<&str>,
    timestamp: Option<i64>,
) -> PyResult<(String, Bound<'py, PyBytes>)> {
    let timestamp = match timestamp {
        None => None,
        Some(ms) if ms >= 0 => Some(ms as u64),
        Some(ms) => {
            return Err(CoreError::event(
                "timestamp",
                format!("must be Unix milliseconds of at least 0, got {ms}"),
            )
            .into())
        }
    };
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (&**k, &**v)).collect();
    let request = RequestFields {
        ip,
        user_agent,
        referer,
        accept_language,
        request_path,
        request_host,
    };
    // One event is a few hundred bytes, so this runs with the GIL held.
    let (id, json) = build(event_type, &pairs, &request, &limits, event_id, timestamp)?;
    Ok((id, PyBytes::new(py, &json)))
}
