//! Validation and column extraction of event documents for the stream consumers.
//!
//! A consumer that needs a few fields of each event reads them here from the raw
//! documents instead of building a Python dict per event. Every document is checked
//! against the wire format with the rules, order and messages of
//! `tracker.consumers.events.event_problem`, so `problems` matches what that function
//! returns for the decoded event. The requested string fields come back
//! dictionary-encoded: each distinct value once, in first-seen order, and one `u32`
//! code per event.
//!
//! Some documents are left to the caller and listed in `unparsed`. These are invalid
//! JSON, a top level that is not an object, and nesting deeper than serde_json's limit
//! of 128 levels (orjson allows 1,024). A params object with a repeated key or more
//! than `MAX_PARAMS` entries is left too, because Python's dict semantics decide its
//! outcome. The caller's full parser then judges the document, so the two parsers
//! never disagree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::errors::CoreError;
use crate::gil;

/// Limits of the ingest service's default `EventLimits`, as in `tracker.consumers.events`.
pub const MAX_PARAMS: usize = 64;
pub const MAX_KEY_LEN: usize = 128;
pub const MAX_VALUE_LEN: usize = 2048;
pub const MAX_FIELD_LEN: usize = 2048;
/// Unix milliseconds of 2000-01-01 and 2100-01-01, the accepted timestamp range.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
pub const MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;

/// The top-level string fields, in the order `event_problem` checks them.
const STRING_FIELDS: [&str; 6] = [
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
];

/// A JSON value reduced to what validation needs.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    Int(i128),
    Other,
}

/// The `params` member: its entries in document order, or why it has none.
enum Params<'de> {
    /// Keys with their string value, or None for a value of another type.
    Object(Vec<(Cow<'de, str>, Option<Cow<'de, str>>)>),
    NotObject,
    /// A repeated key or more than `MAX_PARAMS` entries.
    Undecided,
}

/// The members of one event document that validation and extraction read.
#[derive(Default)]
struct Document<'de> {
    event_id: Option<Scalar<'de>>,
    event_type: Option<Scalar<'de>>,
    timestamp: Option<Scalar<'de>>,
    strings: [Option<Scalar<'de>>; 6],
    params: Option<Params<'de>>,
}

/// Reads an object key, borrowing it from the document when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }
    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }
}

/// Reads any value and discards it. Unlike `IgnoredAny`, which serde_json skips
/// without a depth limit, this recurses through `deserialize_any`, so nesting past
/// serde_json's limit fails the parse and leaves the document to the caller.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// Reads any value as a `Scalar`, consuming arrays and objects whole.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(value)))
    }
    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(value.to_owned())))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(i128::from(value)))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(i128::from(value)))
    }
    // Floats, booleans and null are not ints for Python's `type(x) is int` either.
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip.visit_seq(seq)?;
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip.visit_map(map)?;
        Ok(Scalar::Other)
    }
}

/// Reads the `params` member.
struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Params<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Params::NotObject)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Params::NotObject)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Params::NotObject)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Params::NotObject)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Params::NotObject)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Params::NotObject)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip.visit_seq(seq)?;
        Ok(Params::NotObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Option<Cow<'de, str>>)> = Vec::new();
        let mut undecided = false;
        while let Some(key) = map.next_key_seed(Key)? {
            let value = map.next_value_seed(ScalarSeed)?;
            if undecided {
                continue;
            }
            // At most MAX_PARAMS entries are kept, so this scan stays short.
            if entries.len() == MAX_PARAMS || entries.iter().any(|(seen, _)| *seen == key) {
                undecided = true;
                continue;
            }
            let text = match value {
                Scalar::Str(text) => Some(text),
                _ => None,
            };
            entries.push((key, text));
        }
        Ok(if undecided {
            Params::Undecided
        } else {
            Params::Object(entries)
        })
    }
}

/// Reads a whole event document; a later repeated member replaces an earlier one,
/// as it does in a Python dict.
struct DocumentSeed;

impl<'de> DeserializeSeed<'de> for DocumentSeed {
    type Value = Document<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed {
    type Value = Document<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut document = Document::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match key.as_ref() {
                "event_id" => document.event_id = Some(map.next_value_seed(ScalarSeed)?),
                "event_type" => document.event_type = Some(map.next_value_seed(ScalarSeed)?),
                "timestamp" => document.timestamp = Some(map.next_value_seed(ScalarSeed)?),
                "params" => document.params = Some(map.next_value_seed(ParamsSeed)?),
                name => match STRING_FIELDS.iter().position(|field| *field == name) {
                    Some(slot) => document.strings[slot] = Some(map.next_value_seed(ScalarSeed)?),
                    None => map.next_value_seed(Skip)?,
                },
            }
        }
        Ok(document)
    }
}

/// Outcome of reading one document.
// Nearly every document is valid, so boxing `Document` would only add an allocation
// per event to a vector that lives for one call.
#[allow(clippy::large_enum_variant)]
enum Outcome<'de> {
    Valid(Document<'de>),
    Invalid(String),
    Unparsed,
}

fn read_document(bytes: &[u8]) -> Outcome<'_> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let document = match DocumentSeed.deserialize(&mut deserializer) {
        Ok(document) => document,
        Err(_) => return Outcome::Unparsed,
    };
    if deserializer.end().is_err() {
        return Outcome::Unparsed;
    }
    if matches!(document.params, Some(Params::Undecided)) {
        return Outcome::Unparsed;
    }
    match problem(&document) {
        Some(reason) => Outcome::Invalid(reason),
        None => Outcome::Valid(document),
    }
}

fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, &byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte),
        })
}

fn is_event_type(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.:-".contains(&byte))
}

fn is_key_prefix(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

/// Returns whether `text` has more than `limit` characters, counted as code points like
/// Python's `len`.
fn longer_than(text: &str, limit: usize) -> bool {
    text.len() > limit && text.chars().count() > limit
}

/// Returns the first 50 characters of a key, as `key[:50]` does in Python.
fn key_head(key: &str) -> &str {
    match key.char_indices().nth(50) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

/// Returns why the document is not a valid wire event, worded as `event_problem` words it.
fn problem(document: &Document<'_>) -> Option<String> {
    match &document.event_id {
        Some(Scalar::Str(text)) if is_uuid(text) => {}
        _ => return Some("event_id: missing or not a lowercase UUID".to_owned()),
    }
    match &document.event_type {
        Some(Scalar::Str(text)) if is_event_type(text) => {}
        _ => {
            return Some(
                "event_type: missing or not 1 to 64 characters of [A-Za-z0-9_.:-]".to_owned(),
            )
        }
    }
    match &document.timestamp {
        Some(Scalar::Int(value))
            if (i128::from(MIN_TIMESTAMP_MS)..i128::from(MAX_TIMESTAMP_MS)).contains(value) => {}
        _ => {
            return Some(
                "timestamp: missing or not Unix milliseconds between 2000 and 2100".to_owned(),
            )
        }
    }
    for (name, value) in STRING_FIELDS.iter().zip(&document.strings) {
        match value {
            None => {}
            Some(Scalar::Str(text)) if longer_than(text, MAX_FIELD_LEN) => {
                return Some(format!("{name}: longer than {MAX_FIELD_LEN} characters"));
            }
            Some(Scalar::Str(_)) => {}
            Some(_) => return Some(format!("{name}: expected a string")),
        }
    }
    let entries = match &document.params {
        Some(Params::Object(entries)) => entries,
        _ => return Some("params: missing or not an object".to_owned()),
    };
    for (key, value) in entries {
        if longer_than(key, MAX_KEY_LEN) {
            return Some(format!(
                "params: a key is longer than {MAX_KEY_LEN} characters"
            ));
        }
        match value {
            None => return Some(format!("params.{}: expected a string", key_head(key))),
            Some(text) if longer_than(text, MAX_VALUE_LEN) => {
                return Some(format!(
                    "params.{}: longer than {MAX_VALUE_LEN} characters",
                    key_head(key)
                ))
            }
            Some(_) => {}
        }
    }
    match param(entries, "key_prefix") {
        Some(text) if is_key_prefix(text) => None,
        _ => Some("params.key_prefix: missing or not 1 to 32 characters of [a-z0-9]".to_owned()),
    }
}

fn param<'a>(entries: &'a [(Cow<'_, str>, Option<Cow<'_, str>>)], name: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
}

/// A field a caller can request, as named in `read_event_columns`.
#[derive(Clone)]
enum Field {
    EventId,
    EventType,
    Text(usize),
    Param(String),
}

impl Field {
    fn parse(name: &str) -> Result<Field, CoreError> {
        match name {
            "event_id" => Ok(Field::EventId),
            "event_type" => Ok(Field::EventType),
            _ => {
                if let Some(slot) = STRING_FIELDS.iter().position(|field| *field == name) {
                    return Ok(Field::Text(slot));
                }
                match name.strip_prefix("params.") {
                    Some(key) if !key.is_empty() => Ok(Field::Param(key.to_owned())),
                    _ => Err(CoreError::InvalidArgument(format!(
                        "unknown event field '{}'; expected event_id, event_type, {} or params.<key>",
                        crate::errors::echo(name),
                        STRING_FIELDS.join(", ")
                    ))),
                }
            }
        }
    }

    /// Returns the field's value in a valid document; a missing one reads as "".
    fn value<'b>(&self, document: &'b Document<'_>) -> &'b str {
        let scalar = match self {
            Field::EventId => document.event_id.as_ref(),
            Field::EventType => document.event_type.as_ref(),
            Field::Text(slot) => document.strings[*slot].as_ref(),
            Field::Param(key) => {
                return match &document.params {
                    Some(Params::Object(entries)) => param(entries, key).unwrap_or(""),
                    _ => "",
                }
            }
        };
        match scalar {
            Some(Scalar::Str(text)) => text,
            _ => "",
        }
    }
}

/// Returns the hasher of the column maps. Their keys come from untrusted events, so
/// the hash is keyed with seeds drawn once per process from the OS-seeded thread RNG,
/// and crafted values cannot be made to collide. aHash is used over the standard
/// SipHash because hashing every user agent and IP showed in profiles.
fn column_hasher() -> ahash::RandomState {
    static SEEDS: OnceLock<[u64; 4]> = OnceLock::new();
    let [k0, k1, k2, k3] = *SEEDS.get_or_init(rand::random::<[u64; 4]>);
    ahash::RandomState::with_seeds(k0, k1, k2, k3)
}

/// One dictionary-encoded column under construction.
struct ColumnBuilder<'a> {
    positions: HashMap<&'a str, u32, ahash::RandomState>,
    values: Vec<&'a str>,
    codes: Vec<u8>,
}

impl<'a> ColumnBuilder<'a> {
    fn new(capacity: usize) -> Self {
        ColumnBuilder {
            positions: HashMap::with_hasher(column_hasher()),
            values: Vec::new(),
            codes: Vec::with_capacity(capacity * 4),
        }
    }

    fn push(&mut self, value: &'a str) {
        let next = self.values.len() as u32;
        let code = *self.positions.entry(value).or_insert(next);
        if code == next {
            self.values.push(value);
        }
        self.codes.extend_from_slice(&code.to_le_bytes());
    }
}

/// The Rust-side result of one `read_event_columns` call, before Python objects exist.
struct Extracted<'a> {
    problems: Vec<(usize, String)>,
    unparsed: Vec<usize>,
    timestamps: Vec<u8>,
    columns: Vec<ColumnBuilder<'a>>,
}

fn extract<'b>(documents: &'b [Outcome<'_>], fields: &[Field]) -> Extracted<'b> {
    let mut extracted = Extracted {
        problems: Vec::new(),
        unparsed: Vec::new(),
        timestamps: Vec::with_capacity(documents.len() * 8),
        columns: fields
            .iter()
            .map(|_| ColumnBuilder::new(documents.len()))
            .collect(),
    };
    for (index, outcome) in documents.iter().enumerate() {
        let document = match outcome {
            Outcome::Valid(document) => document,
            Outcome::Invalid(reason) => {
                extracted.problems.push((index, reason.clone()));
                extracted.push_placeholder();
                continue;
            }
            Outcome::Unparsed => {
                extracted.unparsed.push(index);
                extracted.push_placeholder();
                continue;
            }
        };
        let timestamp = match document.timestamp {
            // Validation bounded it to the 2000-2100 range.
            Some(Scalar::Int(value)) => value as i64,
            _ => 0,
        };
        extracted
            .timestamps
            .extend_from_slice(&timestamp.to_le_bytes());
        for (field, column) in fields.iter().zip(extracted.columns.iter_mut()) {
            column.push(field.value(document));
        }
    }
    extracted
}

impl Extracted<'_> {
    fn push_placeholder(&mut self) {
        self.timestamps.extend_from_slice(&0i64.to_le_bytes());
        for column in &mut self.columns {
            column.push("");
        }
    }
}

/// Fields of a run of event documents, from `read_event_columns`.
#[pyclass(frozen, module = "tracker._core")]
pub struct EventColumns {
    #[pyo3(get)]
    count: usize,
    #[pyo3(get)]
    problems: Vec<(usize, String)>,
    #[pyo3(get)]
    unparsed: Vec<usize>,
    #[pyo3(get)]
    timestamps: Py<PyBytes>,
    columns: Vec<(String, Py<PyList>, Py<PyBytes>)>,
}

#[pymethods]
impl EventColumns {
    /// Returns the distinct values of a requested field and the code of each event.
    fn column<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyBytes>)> {
        for (field, values, codes) in &self.columns {
            if field == name {
                return Ok((values.bind(py).clone(), codes.bind(py).clone()));
            }
        }
        Err(CoreError::InvalidArgument(format!(
            "field '{}' was not requested from read_event_columns; request it in `fields`",
            crate::errors::echo(name)
        ))
        .into())
    }

    fn __repr__(&self) -> String {
        format!(
            "EventColumns(count={}, problems={}, unparsed={}, fields={:?})",
            self.count,
            self.problems.len(),
            self.unparsed.len(),
            self.columns
                .iter()
                .map(|(name, _, _)| name.as_str())
                .collect::<Vec<_>>()
        )
    }
}

#[pyfunction]
pub fn read_event_columns(
    py: Python<'_>,
    documents: Vec<PyBackedBytes>,
    fields: Vec<String>,
) -> PyResult<EventColumns> {
    let parsed_fields = fields
        .iter()
        .map(|name| Field::parse(name))
        .collect::<Result<Vec<_>, _>>()?;
    let size: usize = documents.iter().map(|document| document.len()).sum();

    // The documents are immutable `bytes` objects, which no thread can change, so
    // parsing and encoding borrow them without the GIL.
    let outcomes = gil::run_sized(py, size, || {
        documents
            .iter()
            .map(|document| read_document(document))
            .collect::<Vec<_>>()
    });
    let extracted = gil::run_sized(py, size, || extract(&outcomes, &parsed_fields));

    let columns = fields
        .into_iter()
        .zip(extracted.columns)
        .map(|(name, column)| {
            let values = PyList::new(py, column.values)?.unbind();
            let codes = PyBytes::new(py, &column.codes).unbind();
            Ok((name, values, codes))
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(EventColumns {
        count: documents.len(),
        problems: extracted.problems,
        unparsed: extracted.unparsed,
        timestamps: PyBytes::new(py, &extracted.timestamps).unbind(),
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(document: &str) -> Option<String> {
        match read_document(document.as_bytes()) {
            Outcome::Valid(_) => None,
            Outcome::Invalid(reason) => Some(reason),
            Outcome::Unparsed => Some("unparsed".to_owned()),
        }
    }

    const VALID: &str = r#"{"event_id":"0193a0b4-1c2d-7e3f-8a9b-0c1d2e3f4a5b","event_type":"click","timestamp":1770704294008,"ip":"203.0.113.7","user_agent":"Mozilla/5.0","params":{"key_prefix":"acme","tu_id":"tu_1"}}"#;

    #[test]
    fn valid_event_has_no_problem() {
        assert_eq!(reason(VALID), None);
    }

    #[test]
    fn problems_follow_field_order() {
        let bad_id = VALID.replace("0193a0b4", "0193A0B4");
        assert_eq!(
            reason(&bad_id).as_deref(),
            Some("event_id: missing or not a lowercase UUID")
        );
        let float_time = VALID.replace("1770704294008", "1770704294008.0");
        assert_eq!(
            reason(&float_time).as_deref(),
            Some("timestamp: missing or not Unix milliseconds between 2000 and 2100")
        );
        let null_ip = VALID.replace(r#""203.0.113.7""#, "null");
        assert_eq!(reason(&null_ip).as_deref(), Some("ip: expected a string"));
        let number_param = VALID.replace(r#""tu_1""#, "5");
        assert_eq!(
            reason(&number_param).as_deref(),
            Some("params.tu_id: expected a string")
        );
        let bad_tenant = VALID.replace("acme", "Acme");
        assert_eq!(
            reason(&bad_tenant).as_deref(),
            Some("params.key_prefix: missing or not 1 to 32 characters of [a-z0-9]")
        );
    }

    #[test]
    fn repeated_param_key_is_left_to_caller() {
        let repeated = VALID.replace(r#""tu_id":"tu_1""#, r#""tu_id":"a","tu_id":"b""#);
        assert_eq!(reason(&repeated).as_deref(), Some("unparsed"));
    }

    #[test]
    fn later_member_replaces_earlier() {
        let replaced = VALID.replace(r#""ip":"203.0.113.7""#, r#""ip":5,"ip":"203.0.113.7""#);
        assert_eq!(reason(&replaced), None);
    }

    #[test]
    fn non_object_and_bad_json_are_unparsed() {
        for document in ["[1]", "5", "{", "{} x", "\"text\""] {
            assert_eq!(reason(document).as_deref(), Some("unparsed"), "{document}");
        }
    }

    #[test]
    fn columns_are_dictionary_encoded() {
        let other = VALID.replace("acme", "beta");
        let documents = [
            read_document(VALID.as_bytes()),
            read_document(b"[]"),
            read_document(other.as_bytes()),
        ];
        let fields = [Field::Param("key_prefix".to_owned())];
        let extracted = extract(&documents, &fields);
        assert_eq!(extracted.unparsed, vec![1]);
        assert_eq!(extracted.columns[0].values, vec!["acme", "", "beta"]);
        assert_eq!(
            extracted.columns[0].codes,
            [0u32, 1, 2]
                .iter()
                .flat_map(|code| code.to_le_bytes())
                .collect::<Vec<_>>()
        );
    }
}
