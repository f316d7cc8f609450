//! PostgreSQL binary COPY rows for the hot tier's `events` table, built from event documents.
//!
//! The hot writer passes the raw JSON documents of a consumer batch. Each one is
//! checked with the rules and reasons of `tracker.consumers.events.event_problem`,
//! and each valid, unexpired event becomes one row in `tracker.hot.schema.COLUMNS`
//! order. The stream follows "Binary Format" in the PostgreSQL 15 COPY manual. It
//! starts with an 11-byte signature, a flags word and a header-extension length.
//! Each row is a 16-bit field count, then each field as a 32-bit length and its
//! binary send form: uuid as 16 bytes, bigint as 8 bytes big-endian, text as UTF-8,
//! and jsonb as version byte 1 and JSON text. A 16-bit -1 ends the stream.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::gil;

// The limits of `tracker.consumers.events`, which the Python tests check against these.
pub const MAX_PARAMS: usize = 64;
pub const MAX_KEY_LEN: usize = 128;
pub const MAX_VALUE_LEN: usize = 2048;
pub const MAX_FIELD_LEN: usize = 2048;
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
pub const MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;
const DAY_MS: i64 = 86_400_000;
/// Characters of a params key quoted in a reason, as `key[:50]` in Python.
const KEY_ECHO_CHARS: usize = 50;

/// The request fields of the wire format, in column order.
pub const STRING_FIELDS: [&str; 6] = [
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
];
const COLUMN_COUNT: i16 = 11;
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const JSONB_VERSION: u8 = 1;

const EXPIRED_FUTURE: &str = "timestamp: more than 366 days in the future";

/// A JSON value as far as the checks need it: a string, an i64, a params object or anything else.
enum Field<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Object(Params<'a>),
    Other,
}

/// A params value: only strings are valid.
enum ParamValue<'a> {
    Text(Cow<'a, str>),
    Other,
}

/// Params entries in first-seen key order, each with the last value given for its key,
/// which is how a Python dict built from the same JSON looks.
struct Params<'a> {
    entries: Vec<(Cow<'a, str>, ParamValue<'a>)>,
    /// Whether the object has more than `MAX_PARAMS` distinct keys, so not all were kept.
    too_many: bool,
}

/// String that borrows from the document unless it contained escapes.
struct Text<'a>(Cow<'a, str>);

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(value)))
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Implements the scalar visits shared by `Field` and `ParamValue`: strings become
/// `Text`, every other scalar `Other`.
macro_rules! visit_scalars {
    ($kind:ident) => {
        fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
            Ok($kind::Text(Cow::Borrowed(value)))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok($kind::Text(Cow::Owned(value.to_owned())))
        }

        fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
            Ok($kind::Text(Cow::Owned(value)))
        }

        fn visit_bool<E: de::Error>(self, _value: bool) -> Result<Self::Value, E> {
            Ok($kind::Other)
        }

        fn visit_f64<E: de::Error>(self, _value: f64) -> Result<Self::Value, E> {
            Ok($kind::Other)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($kind::Other)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($kind::Other)
        }
    };
}

struct ParamValueVisitor;

impl<'de> Visitor<'de> for ParamValueVisitor {
    type Value = ParamValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    visit_scalars!(ParamValue);

    fn visit_i64<E: de::Error>(self, _value: i64) -> Result<Self::Value, E> {
        Ok(ParamValue::Other)
    }

    fn visit_u64<E: de::Error>(self, _value: u64) -> Result<Self::Value, E> {
        Ok(ParamValue::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ParamValue::Other)
    }
}

impl<'de> Deserialize<'de> for ParamValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParamValueVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    visit_scalars!(Field);

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Field::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        // Above i64 it is still an int in Python, but outside every accepted range.
        Ok(i64::try_from(value).map_or(Field::Other, Field::Int))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = Params {
            entries: Vec::new(),
            too_many: false,
        };
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let value = map.next_value::<ParamValue<'de>>()?;
            if params.too_many {
                continue;
            }
            let full = params.entries.len() == MAX_PARAMS;
            match params.entries.iter_mut().find(|(known, _)| *known == key) {
                Some(entry) => entry.1 = value,
                None if full => params.too_many = true,
                None => params.entries.push((key, value)),
            }
        }
        Ok(Field::Object(params))
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// The wire fields of one document, where a repeated key keeps its last value as in Python.
#[derive(Default)]
struct Document<'a> {
    event_id: Option<Field<'a>>,
    event_type: Option<Field<'a>>,
    timestamp: Option<Field<'a>>,
    strings: [Option<Field<'a>>; 6],
    params: Option<Field<'a>>,
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut document = Document::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let slot = match key.as_ref() {
                "event_id" => &mut document.event_id,
                "event_type" => &mut document.event_type,
                "timestamp" => &mut document.timestamp,
                "params" => &mut document.params,
                name => match STRING_FIELDS.iter().position(|field| *field == name) {
                    Some(position) => &mut document.strings[position],
                    None => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                },
            };
            *slot = Some(map.next_value::<Field<'de>>()?);
        }
        Ok(document)
    }
}

impl<'de> Deserialize<'de> for Document<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DocumentVisitor)
    }
}

/// A valid event, ready to encode as one row.
struct Row<'a> {
    event_id: [u8; 16],
    event_type: &'a str,
    timestamp: i64,
    key_prefix: &'a str,
    strings: [&'a str; 6],
    params: &'a [(Cow<'a, str>, ParamValue<'a>)],
}

/// Returns whether `text` has more than `limit` characters, as Python's `len` counts them.
fn longer_than(text: &str, limit: usize) -> bool {
    // UTF-8 has at least one byte per character, so a short string needs no count.
    text.len() > limit && text.chars().count() > limit
}

fn echo_key(key: &str) -> &str {
    match key.char_indices().nth(KEY_ECHO_CHARS) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

fn parse_event_id(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut id = [0u8; 16];
    let mut nibbles = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        if matches!(position, 8 | 13 | 18 | 23) {
            if byte != b'-' {
                return None;
            }
            continue;
        }
        let value = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => return None,
        };
        id[nibbles / 2] |= if nibbles % 2 == 0 { value << 4 } else { value };
        nibbles += 1;
    }
    Some(id)
}

fn is_event_type(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-'))
}

fn is_key_prefix(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

fn params_problem<'a>(params: Option<&'a Field<'a>>) -> Result<(&'a Params<'a>, &'a str), String> {
    let Some(Field::Object(params)) = params else {
        return Err("params: missing or not an object".to_owned());
    };
    if params.too_many {
        return Err(format!("params: more than {MAX_PARAMS} entries"));
    }
    let mut key_prefix = None;
    for (key, value) in &params.entries {
        if longer_than(key, MAX_KEY_LEN) {
            return Err(format!(
                "params: a key is longer than {MAX_KEY_LEN} characters"
            ));
        }
        let ParamValue::Text(value) = value else {
            return Err(format!("params.{}: expected a string", echo_key(key)));
        };
        if longer_than(value, MAX_VALUE_LEN) {
            return Err(format!(
                "params.{}: longer than {MAX_VALUE_LEN} characters",
                echo_key(key)
            ));
        }
        if key == "key_prefix" {
            key_prefix = Some(value.as_ref());
        }
    }
    match key_prefix {
        Some(tenant) if is_key_prefix(tenant) => Ok((params, tenant)),
        _ => Err("params.key_prefix: missing or not 1 to 32 characters of [a-z0-9]".to_owned()),
    }
}

/// Checks one document with the rules of `event_problem` and returns the row or the reason.
fn check<'a>(document: &'a Document<'a>) -> Result<Row<'a>, String> {
    let event_id = match &document.event_id {
        Some(Field::Text(text)) => parse_event_id(text),
        _ => None,
    }
    .ok_or("event_id: missing or not a lowercase UUID")?;
    let event_type = match &document.event_type {
        Some(Field::Text(text)) if is_event_type(text) => text.as_ref(),
        _ => return Err("event_type: missing or not 1 to 64 characters of [A-Za-z0-9_.:-]".into()),
    };
    let timestamp = match document.timestamp {
        Some(Field::Int(value)) if (MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&value) => value,
        _ => {
            return Err("timestamp: missing or not Unix milliseconds between 2000 and 2100".into())
        }
    };
    let mut strings = [""; 6];
    for (position, name) in STRING_FIELDS.iter().enumerate() {
        strings[position] = match &document.strings[position] {
            None => "",
            Some(Field::Text(text)) if !longer_than(text, MAX_FIELD_LEN) => text.as_ref(),
            Some(Field::Text(_)) => {
                return Err(format!("{name}: longer than {MAX_FIELD_LEN} characters"))
            }
            Some(_) => return Err(format!("{name}: expected a string")),
        };
    }
    let (params, key_prefix) = params_problem(document.params.as_ref())?;
    Ok(Row {
        event_id,
        event_type,
        timestamp,
        key_prefix,
        strings,
        params: &params.entries,
    })
}

/// Appends one field: its byte length, then the bytes written by `write`.
fn field(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&0i32.to_be_bytes());
    write(out);
    // Every field is bounded by the event limits, far below i32::MAX bytes.
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends `text` without NUL characters, which PostgreSQL text cannot store.
fn push_text(out: &mut Vec<u8>, text: &str) {
    if memchr::memchr(0, text.as_bytes()).is_none() {
        out.extend_from_slice(text.as_bytes());
    } else {
        out.extend(text.bytes().filter(|&byte| byte != 0));
    }
}

/// Appends `text` as a JSON string without NUL characters, which jsonb rejects.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            0 => {}
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x01..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            }
            // Bytes of multi-byte UTF-8 characters are all >= 0x80 and pass through.
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

fn write_row(out: &mut Vec<u8>, row: &Row<'_>) {
    out.extend_from_slice(&COLUMN_COUNT.to_be_bytes());
    field(out, |out| out.extend_from_slice(&row.event_id));
    field(out, |out| out.extend_from_slice(row.event_type.as_bytes()));
    field(out, |out| {
        out.extend_from_slice(&row.timestamp.to_be_bytes())
    });
    field(out, |out| out.extend_from_slice(row.key_prefix.as_bytes()));
    for text in row.strings {
        field(out, |out| push_text(out, text));
    }
    field(out, |out| {
        out.push(JSONB_VERSION);
        out.push(b'{');
        for (position, (key, value)) in row.params.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            push_json_string(out, key);
            out.push(b':');
            if let ParamValue::Text(value) = value {
                push_json_string(out, value);
            }
        }
        out.push(b'}');
    });
}

/// Outcome of encoding one batch, before it crosses into Python.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    pub payload: Vec<u8>,
    pub indices: Vec<usize>,
    pub days: Vec<i64>,
    pub rejected: Vec<(usize, String)>,
    pub expired: usize,
    pub duplicates: usize,
}

/// Checks and encodes `documents`. Events with a timestamp below `cutoff_ms` are
/// counted as expired, and those at or after `horizon_ms` are rejected.
pub fn encode<D: AsRef<[u8]>>(documents: &[D], cutoff_ms: i64, horizon_ms: i64) -> Encoded {
    let mut encoded = Encoded::default();
    let total: usize = documents
        .iter()
        .map(|document| document.as_ref().len())
        .sum();
    encoded.payload.reserve(SIGNATURE.len() + 8 + total + 2);
    encoded.payload.extend_from_slice(SIGNATURE);
    encoded.payload.extend_from_slice(&0i32.to_be_bytes());
    encoded.payload.extend_from_slice(&0i32.to_be_bytes());

    // The unique key is (event_id, timestamp); a repeat within one batch is written once.
    let mut seen: HashSet<([u8; 16], i64)> = HashSet::with_capacity(documents.len());
    let mut days = HashSet::new();
    for (index, document) in documents.iter().enumerate() {
        let parsed = match serde_json::from_slice::<Document<'_>>(document.as_ref()) {
            Ok(parsed) => parsed,
            Err(_) => {
                encoded
                    .rejected
                    .push((index, "event: not a valid JSON object".to_owned()));
                continue;
            }
        };
        let row = match check(&parsed) {
            Ok(row) => row,
            Err(reason) => {
                encoded.rejected.push((index, reason));
                continue;
            }
        };
        if row.timestamp >= horizon_ms {
            encoded.rejected.push((index, EXPIRED_FUTURE.to_owned()));
            continue;
        }
        if row.timestamp < cutoff_ms {
            encoded.expired += 1;
            continue;
        }
        if !seen.insert((row.event_id, row.timestamp)) {
            encoded.duplicates += 1;
            continue;
        }
        write_row(&mut encoded.payload, &row);
        encoded.indices.push(index);
        days.insert(row.timestamp - row.timestamp.rem_euclid(DAY_MS));
    }
    encoded.payload.extend_from_slice(&(-1i16).to_be_bytes());
    encoded.days = days.into_iter().collect();
    encoded.days.sort_unstable();
    encoded
}

/// One batch as a binary COPY stream for the hot `events` table, with what was left out.
#[pyclass(frozen, module = "tracker._core")]
pub struct HotCopy {
    #[pyo3(get)]
    payload: Py<PyBytes>,
    #[pyo3(get)]
    indices: Vec<usize>,
    #[pyo3(get)]
    days: Vec<i64>,
    #[pyo3(get)]
    rejected: Vec<(usize, String)>,
    #[pyo3(get)]
    expired: usize,
    #[pyo3(get)]
    duplicates: usize,
}

#[pymethods]
impl HotCopy {
    /// Rows in `payload`.
    #[getter]
    fn rows(&self) -> usize {
        self.indices.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "HotCopy(rows={}, rejected={}, expired={}, duplicates={})",
            self.indices.len(),
            self.rejected.len(),
            self.expired,
            self.duplicates
        )
    }
}

/// Encodes event documents as a binary COPY stream of hot `events` rows.
#[pyfunction]
#[pyo3(signature = (documents, *, cutoff_ms, horizon_ms))]
pub fn encode_hot_copy(
    py: Python<'_>,
    documents: Vec<PyBackedBytes>,
    cutoff_ms: i64,
    horizon_ms: i64,
) -> PyResult<HotCopy> {
    let size: usize = documents.iter().map(|document| document.len()).sum();
    let encoded = gil::run_sized(py, size, || encode(&documents, cutoff_ms, horizon_ms));
    Ok(HotCopy {
        payload: PyBytes::new(py, &encoded.payload).unbind(),
        indices: encoded.indices,
        days: encoded.days,
        rejected: encoded.rejected,
        expired: encoded.expired,
        duplicates: encoded.duplicates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0193a4b2-7c3d-7e4f-8a5b-6c7d8e9fa0b1";
    const NOW: i64 = 1_770_704_294_008;

    fn event(extra: &str) -> String {
        format!(
            r#"{{"event_id":"{ID}","event_type":"click","timestamp":{NOW},"ip":"203.0.113.7","user_agent":"UA","referer":"","accept_language":"en","request_path":"/t","request_host":"h","params":{{"key_prefix":"acme","sub1":"x"}}{extra}}}"#
        )
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    fn run(documents: &[String]) -> Encoded {
        encode(documents, NOW - 1000 * DAY_MS, NOW + 366 * DAY_MS)
    }

    #[test]
    fn encodes_row_in_binary_copy_format() {
        let encoded = run(&[event("")]);
        assert_eq!(encoded.indices, vec![0]);
        let payload = &encoded.payload;
        assert_eq!(&payload[..11], SIGNATURE);
        assert_eq!(&payload[payload.len() - 2..], &[0xff, 0xff]);
        let row = &payload[19..payload.len() - 2];
        assert_eq!(&row[..2], &11i16.to_be_bytes());
        assert_eq!(&row[2..6], &16i32.to_be_bytes());
        assert_eq!(
            &row[6..22],
            &[
                0x01, 0x93, 0xa4, 0xb2, 0x7c, 0x3d, 0x7e, 0x4f, 0x8a, 0x5b, 0x6c, 0x7d, 0x8e, 0x9f,
                0xa0, 0xb1
            ]
        );
        let jsonb = b"\x01{\"key_prefix\":\"acme\",\"sub1\":\"x\"}";
        assert!(row.ends_with(jsonb));
        assert_eq!(encoded.days, vec![NOW - NOW % DAY_MS]);
    }

    #[test]
    fn rejects_with_python_reasons() {
        let cases = [
            (
                event(r#","event_id":"X""#),
                "event_id: missing or not a lowercase UUID",
            ),
            (
                event(r#","params":{"key_prefix":"acme","n":1}"#),
                "params.n: expected a string",
            ),
            (event(r#","ip":null"#), "ip: expected a string"),
            (
                event(r#","params":{"sub1":"x"}"#),
                "params.key_prefix: missing or not 1 to 32 characters of [a-z0-9]",
            ),
            ("[1]".to_owned(), "event: not a valid JSON object"),
        ];
        for (document, reason) in cases {
            let encoded = run(&[document]);
            assert_eq!(encoded.rejected, vec![(0, reason.to_owned())]);
            assert!(encoded.indices.is_empty());
        }
    }

    #[test]
    fn drops_nul_and_escapes_params() {
        let encoded = run(&[event(
            r#","user_agent":"a\u0000b","params":{"key_prefix":"acme","q":"\"\\\n\u0000"}"#,
        )]);
        assert_eq!(encoded.indices, vec![0]);
        assert!(contains(&encoded.payload, b"\x00\x00\x00\x02ab"));
        assert!(contains(&encoded.payload, br#""q":"\"\\\u000a"}"#));
    }

    #[test]
    fn skips_repeats_and_expired() {
        let old = event("").replace(&NOW.to_string(), &(NOW - 2000 * DAY_MS).to_string());
        let encoded = run(&[event(""), event(""), old]);
        assert_eq!(encoded.indices, vec![0]);
        assert_eq!(encoded.duplicates, 1);
        assert_eq!(encoded.expired, 1);
    }
}
