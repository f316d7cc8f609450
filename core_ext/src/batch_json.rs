//! JSON reading of a `/batch` body into raw events, in one pass with borrowed strings.
//!
//! Body-level problems (not JSON, wrong shape, too many events, nesting deeper than
//! `MAX_DEPTH`) abort the parse. Problems inside one event are recorded on that
//! event, and the parser still consumes the rest of its value and goes on.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::errors::{echo, CoreError};

/// Deepest nesting of arrays and objects accepted in a body. A valid body needs 3:
/// the events array, an event object and its params object.
pub const MAX_DEPTH: usize = 64;

const EVENT_FIELDS: &str = "event_type, params, event_id, ip, user_agent, referer, accept_language";

/// One event as read from the body, before validation. A `Cow::Borrowed` string
/// is a slice of the body that had no escapes, so it contains no quote,
/// backslash or control character and is already valid JSON string content.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RawEvent<'de> {
    pub event_type: Option<Cow<'de, str>>,
    pub params: Option<Vec<(Cow<'de, str>, Cow<'de, str>)>>,
    pub event_id: Option<Cow<'de, str>>,
    pub ip: Option<Cow<'de, str>>,
    pub user_agent: Option<Cow<'de, str>>,
    pub referer: Option<Cow<'de, str>>,
    pub accept_language: Option<Cow<'de, str>>,
}

/// Result of reading one element of the events array.
#[derive(Debug, PartialEq, Eq)]
pub enum RawOutcome<'de> {
    Read(RawEvent<'de>),
    /// The first problem found in the event, as (field, reason).
    Rejected(String, String),
}

/// Shared state of one parse: the limits and the reason for a body-level abort.
pub struct ReadContext {
    pub max_events: usize,
    pub abort: RefCell<Option<CoreError>>,
}

impl ReadContext {
    fn abort<E: de::Error>(&self, error: CoreError) -> E {
        let mut slot = self.abort.borrow_mut();
        if slot.is_none() {
            *slot = Some(error);
        }
        E::custom("batch body rejected")
    }

    fn too_deep<E: de::Error>(&self) -> E {
        self.abort(CoreError::batch(
            "body",
            format!("nests arrays or objects deeper than {MAX_DEPTH} levels"),
        ))
    }
}

/// Reads a JSON value of any type and discards it, enforcing the depth limit.
struct Skip<'a> {
    ctx: &'a ReadContext,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
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
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.ctx.too_deep());
        }
        while seq
            .next_element_seed(Skip {
                ctx: self.ctx,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.ctx.too_deep());
        }
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip {
                ctx: self.ctx,
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }
}

/// Reads an object key, borrowing it from the body when it has no escapes.
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

/// Reads a value that must be a string; any other value is consumed and reported
/// as `Err(())` so the caller can reject the event and go on.
struct Text<'a> {
    ctx: &'a ReadContext,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = Result<Cow<'de, str>, ()>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = Result<Cow<'de, str>, ()>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Borrowed(value)))
    }
    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Owned(value.to_owned())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip {
            ctx: self.ctx,
            depth: self.depth,
        }
        .visit_seq(seq)?;
        Ok(Err(()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip {
            ctx: self.ctx,
            depth: self.depth,
        }
        .visit_map(map)?;
        Ok(Err(()))
    }
}

pub type Params<'de> = Vec<(Cow<'de, str>, Cow<'de, str>)>;

/// Returns whether `key` is already among `params`. Up to 16 params are compared
/// one by one. Past that, `seen` becomes a set of every key, so a hostile object
/// of many keys costs linear time.
#[allow(clippy::ptr_arg)] // `key` is cloned into `seen`, borrowed or owned as it came.
pub fn is_repeated_key<'de>(
    params: &[(Cow<'de, str>, Cow<'de, str>)],
    seen: &mut HashSet<Cow<'de, str>>,
    key: &Cow<'de, str>,
) -> bool {
    if params.len() < 16 {
        return params.iter().any(|(seen_key, _)| seen_key == key);
    }
    if seen.is_empty() {
        seen.extend(params.iter().map(|(seen_key, _)| seen_key.clone()));
    }
    !seen.insert(key.clone())
}

/// Reads the `params` object: string keys to string values, no repeated keys.
struct ParamsSeed<'a> {
    ctx: &'a ReadContext,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_> {
    type Value = Result<Params<'de>, (String, String)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn params_not_object<'de>() -> Result<Params<'de>, (String, String)> {
    Err((
        "params".to_owned(),
        "must be an object of string to string".to_owned(),
    ))
}

impl<'de> Visitor<'de> for ParamsSeed<'_> {
    type Value = Result<Params<'de>, (String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string to string")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(params_not_object())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(params_not_object())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(params_not_object())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(params_not_object())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(params_not_object())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(params_not_object())
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(params_not_object())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip {
            ctx: self.ctx,
            depth: self.depth,
        }
        .visit_seq(seq)?;
        Ok(params_not_object())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.ctx.too_deep());
        }
        let mut params: Params<'de> = Vec::with_capacity(8);
        let mut problem: Option<(String, String)> = None;
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let value = map.next_value_seed(Text {
                ctx: self.ctx,
                depth: self.depth + 1,
            })?;
            if problem.is_some() {
                continue;
            }
            let repeated = is_repeated_key(&params, &mut seen, &key);
            if repeated {
                problem = Some((
                    format!("params.{}", echo(&key)),
                    "is given twice".to_owned(),
                ));
                continue;
            }
            match value {
                Ok(text) => params.push((key, text)),
                Err(()) => {
                    problem = Some((
                        format!("params.{}", echo(&key)),
                        "must be a string".to_owned(),
                    ))
                }
            }
        }
        Ok(match problem {
            Some(problem) => Err(problem),
            None => Ok(params),
        })
    }
}

/// Reads one element of the events array.
struct EventSeed<'a> {
    ctx: &'a ReadContext,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = RawOutcome<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn not_an_object<'de>() -> RawOutcome<'de> {
    RawOutcome::Rejected("event".to_owned(), "must be a JSON object".to_owned())
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = RawOutcome<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip {
            ctx: self.ctx,
            depth: self.depth,
        }
        .visit_seq(seq)?;
        Ok(not_an_object())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.ctx.too_deep());
        }
        let mut event = RawEvent::default();
        let mut problem: Option<(String, String)> = None;
        let mut seen_params = false;
        let inner = self.depth + 1;
        while let Some(key) = map.next_key_seed(Key)? {
            let slot = match key.as_ref() {
                "event_type" => Some(&mut event.event_type),
                "event_id" => Some(&mut event.event_id),
                "ip" => Some(&mut event.ip),
                "user_agent" => Some(&mut event.user_agent),
                "referer" => Some(&mut event.referer),
                "accept_language" => Some(&mut event.accept_language),
                _ => None,
            };
            if let Some(slot) = slot {
                let value = map.next_value_seed(Text {
                    ctx: self.ctx,
                    depth: inner,
                })?;
                if problem.is_some() {
                    continue;
                }
                if slot.is_some() {
                    problem = Some((key.into_owned(), "is given twice".to_owned()));
                    continue;
                }
                match value {
                    Ok(text) => *slot = Some(text),
                    Err(()) => problem = Some((key.into_owned(), "must be a string".to_owned())),
                }
                continue;
            }

            if key == "params" {
                let value = map.next_value_seed(ParamsSeed {
                    ctx: self.ctx,
                    depth: inner,
                })?;
                if problem.is_some() {
                    continue;
                }
                if seen_params {
                    problem = Some(("params".to_owned(), "is given twice".to_owned()));
                    continue;
                }
                seen_params = true;
                match value {
                    Ok(params) => event.params = Some(params),
                    Err(params_problem) => problem = Some(params_problem),
                }
                continue;
            }

            map.next_value_seed(Skip {
                ctx: self.ctx,
                depth: inner,
            })?;
            if problem.is_some() {
                continue;
            }
            let reason = match key.as_ref() {
                "timestamp" | "request_path" | "request_host" => {
                    "is set by the server; remove it from the event".to_owned()
                }
                _ => format!("is not an event field; allowed fields: {EVENT_FIELDS}"),
            };
            problem = Some((echo(&key), reason));
        }
        Ok(match problem {
            Some((field, reason)) => RawOutcome::Rejected(field, reason),
            None => RawOutcome::Read(event),
        })
    }
}

/// Reads the events array.
struct EventsSeed<'a> {
    ctx: &'a ReadContext,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_> {
    type Value = Vec<RawOutcome<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl EventsSeed<'_> {
    fn wrong_shape<E: de::Error>(&self) -> E {
        let (field, reason) = if self.depth == 1 {
            (
                "body",
                "must be a JSON array of events or an object {\"events\": [...]}",
            )
        } else {
            ("events", "must be a JSON array of event objects")
        };
        self.ctx.abort(CoreError::batch(field, reason))
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_> {
    type Value = Vec<RawOutcome<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.wrong_shape())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.wrong_shape())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.wrong_shape())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.wrong_shape())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.wrong_shape())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.wrong_shape())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.wrong_shape())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::new();
        let element_depth = self.depth + 1;
        loop {
            if events.len() == self.ctx.max_events {
                let extra = seq.next_element_seed(Skip {
                    ctx: self.ctx,
                    depth: element_depth,
                })?;
                if extra.is_some() {
                    return Err(self.ctx.abort(CoreError::batch(
                        "events",
                        format!(
                            "holds more than {} events; split it into smaller batches",
                            self.ctx.max_events
                        ),
                    )));
                }
                return Ok(events);
            }
            match seq.next_element_seed(EventSeed {
                ctx: self.ctx,
                depth: element_depth,
            })? {
                Some(outcome) => events.push(outcome),
                None => return Ok(events),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.depth > 1 {
            return Err(self.wrong_shape());
        }
        let mut events: Option<Vec<RawOutcome<'de>>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            if key != "events" {
                return Err(self.ctx.abort(CoreError::batch(
                    echo(&key),
                    "is not a body field; the only field is \"events\"",
                )));
            }
            if events.is_some() {
                return Err(self.ctx.abort(CoreError::batch("events", "is given twice")));
            }
            events = Some(map.next_value_seed(EventsSeed {
                ctx: self.ctx,
                depth: 2,
            })?);
        }
        match events {
            Some(events) => Ok(events),
            None => Err(self.ctx.abort(CoreError::batch("events", "is required"))),
        }
    }
}

/// Reads a batch body into raw events, or returns the body-level error.
pub fn read_events<'de>(
    text: &'de str,
    max_events: usize,
) -> Result<Vec<RawOutcome<'de>>, CoreError> {
    let ctx = ReadContext {
        max_events,
        abort: RefCell::new(None),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result = EventsSeed {
        ctx: &ctx,
        depth: 1,
    }
    .deserialize(&mut deserializer)
    .and_then(|events| deserializer.end().map(|()| events));
    match result {
        Ok(events) => Ok(events),
        Err(json_error) => Err(ctx.abort.into_inner().unwrap_or_else(|| {
            CoreError::batch("body", format!("is not valid JSON: {json_error}"))
        })),
    }
}
