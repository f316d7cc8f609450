//! JSON reading of one stored event document for the archive, with borrowed strings.
//!
//! The rules and reasons are those of `_invalid` in
//! `tracker/consumers/archive_table.py`, applied to what `orjson.loads` returns,
//! so raw documents and decoded dicts are archived or rejected alike:
//!
//! - a repeated key keeps its first position and its last value, as in a Python
//!   dict built from the object;
//! - a missing top-level string field is "", but a `null` one is rejected;
//! - `timestamp` must be an integer (not a float, not a bool) in
//!   `MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS`;
//! - arrays and objects may nest `MAX_DEPTH` levels deep, counting the event
//!   object itself, which is the limit of orjson 3.x.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of arrays and objects in a document, the event object included.
pub const MAX_DEPTH: usize = 1024;

/// Earliest timestamp that maps to a UTC day partition: the Unix epoch, in ms.
pub const MIN_TIMESTAMP_MS: i64 = 0;
/// Latest timestamp that maps to a four-digit year: 9999-12-31T23:59:59.999Z, in ms.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Top-level string fields after `event_id` and `event_type`, in table column order.
pub const STRING_FIELDS: [&str; 6] = [
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
];

/// Reason an event cannot be archived; `message` is the dead-letter reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The document is not JSON, or is JSON but not an object.
    NotObject,
    EventId,
    EventType,
    Timestamp,
    Params,
    KeyPrefix,
    ParamValues,
    /// The `STRING_FIELDS` entry at this index is present but not a string.
    StringField(usize),
}

impl Rejection {
    pub fn message(self) -> &'static str {
        match self {
            Rejection::NotObject => "event is not a JSON object",
            Rejection::EventId => "event_id is missing or not a string",
            Rejection::EventType => "event_type is missing or not a string",
            Rejection::Timestamp => "timestamp is missing or not Unix milliseconds",
            Rejection::Params => "params is missing or not an object",
            Rejection::KeyPrefix => "params.key_prefix is missing or not a string",
            Rejection::ParamValues => "params values must be strings",
            Rejection::StringField(0) => "ip is not a string",
            Rejection::StringField(1) => "user_agent is not a string",
            Rejection::StringField(2) => "referer is not a string",
            Rejection::StringField(3) => "accept_language is not a string",
            Rejection::StringField(4) => "request_path is not a string",
            Rejection::StringField(_) => "request_host is not a string",
        }
    }
}

/// One JSON value, reduced to what validation needs.
#[derive(Default)]
pub enum Value<'de> {
    #[default]
    Missing,
    Text(Cow<'de, str>),
    Integer(i64),
    /// Any other value: null, bool, float, an integer outside i64, array or object.
    Other,
}

impl Value<'_> {
    fn non_empty_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }
}

/// An event document as read, before validation. Reused from one document to the next.
#[derive(Default)]
pub struct ParsedEvent<'de> {
    event_id: Value<'de>,
    event_type: Value<'de>,
    timestamp: Value<'de>,
    strings: [Value<'de>; 6],
    params_is_object: bool,
    params: Vec<(Cow<'de, str>, Value<'de>)>,
}

/// A valid event, borrowed from its `ParsedEvent`.
pub struct EventRef<'p> {
    pub event_id: &'p str,
    pub event_type: &'p str,
    pub timestamp: i64,
    /// `STRING_FIELDS` in order, "" where the field is missing.
    pub strings: [&'p str; 6],
    /// Params in first-seen key order, each key once.
    pub params: &'p [(Cow<'p, str>, Value<'p>)],
    pub key_prefix: &'p str,
}

impl<'de> ParsedEvent<'de> {
    fn clear(&mut self) {
        *self = ParsedEvent {
            params: std::mem::take(&mut self.params),
            ..ParsedEvent::default()
        };
        self.params.clear();
    }

    /// Reads `document` into `self`; `Err(Rejection::NotObject)` unless it is one JSON object.
    pub fn read(&mut self, document: &'de [u8]) -> Result<(), Rejection> {
        self.clear();
        let mut deserializer = serde_json::Deserializer::from_slice(document);
        // Depth is limited by `MAX_DEPTH` in the seeds below, above serde_json's 128.
        deserializer.disable_recursion_limit();
        EventSeed { event: self }
            .deserialize(&mut deserializer)
            .map_err(|_| Rejection::NotObject)?;
        deserializer.end().map_err(|_| Rejection::NotObject)
    }

    /// Checks the event in the order `_invalid` does and returns its archived fields.
    pub fn validate(&mut self) -> Result<EventRef<'_>, Rejection> {
        if self.params_is_object {
            merge_repeated_keys(&mut self.params);
        }

        let event_id = self.event_id.non_empty_text().ok_or(Rejection::EventId)?;
        let event_type = self
            .event_type
            .non_empty_text()
            .ok_or(Rejection::EventType)?;
        let timestamp = match self.timestamp {
            Value::Integer(ms) if (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms) => ms,
            _ => return Err(Rejection::Timestamp),
        };
        if !self.params_is_object {
            return Err(Rejection::Params);
        }
        let key_prefix = self
            .params
            .iter()
            .find(|(key, _)| key == "key_prefix")
            .and_then(|(_, value)| value.non_empty_text())
            .ok_or(Rejection::KeyPrefix)?;
        if self
            .params
            .iter()
            .any(|(_, value)| !matches!(value, Value::Text(_)))
        {
            return Err(Rejection::ParamValues);
        }
        let mut strings = [""; 6];
        for (index, value) in self.strings.iter().enumerate() {
            strings[index] = match value {
                Value::Missing => "",
                Value::Text(text) => text,
                _ => return Err(Rejection::StringField(index)),
            };
        }

        Ok(EventRef {
            event_id,
            event_type,
            timestamp,
            strings,
            params: &self.params,
            key_prefix,
        })
    }
}

/// Largest params object checked for repeated keys pairwise; above it a hash map is used.
const PAIRWISE_MAX: usize = 16;

/// Merges repeated keys as a Python dict would: first position, last value.
fn merge_repeated_keys(params: &mut Vec<(Cow<'_, str>, Value<'_>)>) {
    // `first[i]` is the index of the first entry with the key of entry `i`.
    let first: Vec<usize> = if params.len() <= PAIRWISE_MAX {
        (0..params.len())
            .map(|i| (0..i).find(|&j| params[j].0 == params[i].0).unwrap_or(i))
            .collect()
    } else {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(params.len());
        (0..params.len())
            .map(|i| *seen.entry(&params[i].0).or_insert(i))
            .collect()
    };
    if first.iter().enumerate().all(|(i, &j)| i == j) {
        return;
    }

    for i in 0..params.len() {
        if first[i] != i {
            let value = std::mem::take(&mut params[i].1);
            params[first[i]].1 = value;
        }
    }
    let mut index = 0;
    params.retain(|_| {
        let keep = first[index] == index;
        index += 1;
        keep
    });
}

fn too_deep<E: de::Error>() -> E {
    E::custom("document nests arrays or objects too deep")
}

/// Reads a JSON value of any type and discards it, enforcing `MAX_DEPTH`.
struct Skip {
    /// Depth of the value about to be read; the event object is depth 1.
    depth: usize,
}

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
        if self.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        let inner = self.depth + 1;
        while seq.next_element_seed(Skip { depth: inner })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip {
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }
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

/// Reads any JSON value into a `Value`, consuming arrays and objects.
struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Value::Text(Cow::Borrowed(value)))
    }
    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Value::Text(Cow::Owned(value.to_owned())))
    }
    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Value::Text(Cow::Owned(value)))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Value::Integer(value))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        // Above i64::MAX it is still past MAX_TIMESTAMP_MS and still not a string.
        Ok(i64::try_from(value).map_or(Value::Other, Value::Integer))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Value::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Value::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Value::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip { depth: self.depth }.visit_seq(seq)?;
        Ok(Value::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip { depth: self.depth }.visit_map(map)?;
        Ok(Value::Other)
    }
}

/// Reads `params` into the event; anything but an object leaves `params_is_object` false.
struct ParamsSeed<'p, 'de> {
    event: &'p mut ParsedEvent<'de>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        // A repeated `params` key replaces the earlier object, as in a Python dict.
        self.event.params.clear();
        while let Some(key) = map.next_key_seed(Key)? {
            let value = map.next_value_seed(ValueSeed {
                depth: self.depth + 1,
            })?;
            self.event.params.push((key, value));
        }
        self.event.params_is_object = true;
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Skip { depth: self.depth }.visit_seq(seq)?;
        self.not_object();
        Ok(())
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<(), E> {
        self.not_object();
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.not_object();
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.not_object();
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.not_object();
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.not_object();
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.not_object();
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.not_object();
        Ok(())
    }
}

impl ParamsSeed<'_, '_> {
    fn not_object(self) {
        self.event.params.clear();
        self.event.params_is_object = false;
    }
}

/// Reads the event object; any other top-level value fails the parse.
struct EventSeed<'p, 'de> {
    event: &'p mut ParsedEvent<'de>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The event object is depth 1, so its values are depth 2.
        const DEPTH: usize = 2;
        let event = self.event;
        while let Some(key) = map.next_key_seed(Key)? {
            let slot = match &*key {
                "event_id" => &mut event.event_id,
                "event_type" => &mut event.event_type,
                "timestamp" => &mut event.timestamp,
                "params" => {
                    map.next_value_seed(ParamsSeed {
                        event: &mut *event,
                        depth: DEPTH,
                    })?;
                    continue;
                }
                name => match STRING_FIELDS.iter().position(|field| *field == name) {
                    Some(index) => &mut event.strings[index],
                    None => {
                        map.next_value_seed(Skip { depth: DEPTH })?;
                        continue;
                    }
                },
            };
            *slot = map.next_value_seed(ValueSeed { depth: DEPTH })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(document: &str) -> Option<&'static str> {
        let mut event = ParsedEvent::default();
        match event.read(document.as_bytes()) {
            Err(rejection) => Some(rejection.message()),
            Ok(()) => event.validate().err().map(Rejection::message),
        }
    }

    const VALID: &str =
        r#"{"event_id":"e1","event_type":"click","timestamp":5,"params":{"key_prefix":"acme"}}"#;

    #[test]
    fn valid_event_has_defaults_for_missing_strings() {
        let mut event = ParsedEvent::default();
        event.read(VALID.as_bytes()).expect("valid JSON object");
        let valid = event.validate().expect("valid event");
        assert_eq!(valid.event_id, "e1");
        assert_eq!(valid.timestamp, 5);
        assert_eq!(valid.strings, [""; 6]);
        assert_eq!(valid.key_prefix, "acme");
    }

    #[test]
    fn rejections_follow_python_order() {
        let cases = [
            ("[1]", "event is not a JSON object"),
            ("{\"a\":1} x", "event is not a JSON object"),
            ("{}", "event_id is missing or not a string"),
            (
                r#"{"event_id":"e","event_type":"","timestamp":1}"#,
                "event_type is missing or not a string",
            ),
            (
                r#"{"event_id":"e","event_type":"c","timestamp":true}"#,
                "timestamp is missing or not Unix milliseconds",
            ),
            (
                r#"{"event_id":"e","event_type":"c","timestamp":1.0}"#,
                "timestamp is missing or not Unix milliseconds",
            ),
            (
                r#"{"event_id":"e","event_type":"c","timestamp":1,"params":[]}"#,
                "params is missing or not an object",
            ),
            (
                r#"{"event_id":"e","event_type":"c","timestamp":1,"params":{"key_prefix":1,"x":2}}"#,
                "params.key_prefix is missing or not a string",
            ),
            (
                r#"{"event_id":"e","event_type":"c","timestamp":1,"params":{"key_prefix":"a","x":2}}"#,
                "params values must be strings",
            ),
            (
                r#"{"event_id":"e","event_type":"c","timestamp":1,"params":{"key_prefix":"a"},"referer":null}"#,
                "referer is not a string",
            ),
        ];
        for (document, expected) in cases {
            assert_eq!(reason(document), Some(expected), "{document}");
        }
    }

    #[test]
    fn repeated_keys_keep_first_position_and_last_value() {
        let document = r#"{"event_id":"e","event_type":"c","timestamp":1,
            "params":{"key_prefix":"a","x":1,"y":"2","x":"3"}}"#;
        let mut event = ParsedEvent::default();
        event.read(document.as_bytes()).expect("valid JSON object");
        let valid = event.validate().expect("the later x is a string");
        let params: Vec<(&str, &str)> = valid
            .params
            .iter()
            .map(|(key, value)| match value {
                Value::Text(text) => (&**key, &**text),
                _ => (&**key, "?"),
            })
            .collect();
        assert_eq!(params, [("key_prefix", "a"), ("x", "3"), ("y", "2")]);
    }

    #[test]
    fn depth_limit_matches_orjson() {
        let nested = |levels: usize| {
            let open = &VALID[..VALID.len() - 1];
            format!(
                "{open},\"x\":{}{}}}",
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // orjson 3.13 accepts 1023 arrays inside the event object and rejects 1024.
        assert_eq!(reason(&nested(1023)), None);
        assert_eq!(reason(&nested(1024)), Some("event is not a JSON object"));
    }
}
