//! Query strings as Robyn 0.88 hands them over: still percent-encoded, one list of
//! values per name. `decode_query` checks the request limits and decodes each name and
//! value it is given, and the ingest service calls it once per request. `+` is a space (HTML
//! form encoding), `%XX` is a byte, and the bytes must be UTF-8.

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::errors::QueryStringError;

/// The reason a query name or value does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentError {
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// The decoded bytes are not UTF-8.
    InvalidUtf8,
}

impl ComponentError {
    /// Returns the `code` attribute of the `QueryStringError` raised for this error.
    pub fn code(self) -> &'static str {
        match self {
            ComponentError::InvalidEscape => "invalid_escape",
            ComponentError::InvalidUtf8 => "invalid_utf8",
        }
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes one query name or value, borrowing `text` when it has no `%` and no `+`.
///
/// An invalid escape anywhere wins over invalid UTF-8, whichever comes first.
pub fn decode_component(text: &str) -> Result<Cow<'_, str>, ComponentError> {
    let bytes = text.as_bytes();
    if memchr::memchr2(b'%', b'+', bytes).is_none() {
        return Ok(Cow::Borrowed(text));
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex_value);
                let low = bytes.get(index + 2).copied().and_then(hex_value);
                match (high, low) {
                    (Some(high), Some(low)) => decoded.push(high << 4 | low),
                    _ => return Err(ComponentError::InvalidEscape),
                }
                index += 3;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| ComponentError::InvalidUtf8)
}

/// Decodes a Python string, returning the same object when nothing needs decoding.
fn decode_py<'py>(text: &Bound<'py, PyString>) -> Result<Bound<'py, PyString>, ComponentError> {
    // Robyn builds its strings from Rust strings, so a lone surrogate never comes from a
    // request. Text with one has no UTF-8 form, which makes it undecodable here, but an
    // invalid escape in it is still reported first.
    let utf8 = match text.to_str() {
        Ok(utf8) => utf8,
        Err(_) => {
            return Err(match decode_component(&text.to_string_lossy()) {
                Err(ComponentError::InvalidEscape) => ComponentError::InvalidEscape,
                _ => ComponentError::InvalidUtf8,
            })
        }
    };
    Ok(match decode_component(utf8)? {
        Cow::Borrowed(_) => text.clone(),
        Cow::Owned(decoded) => PyString::new(text.py(), &decoded),
    })
}

fn query_error(py: Python<'_>, code: &str, field: &Bound<'_, PyAny>, count: usize) -> PyErr {
    let error = PyErr::new::<QueryStringError, _>(format!("query string rejected: {code}"));
    let value = error.value(py);
    let attributes = value
        .setattr("code", code)
        .and_then(|()| value.setattr("field", field))
        .and_then(|()| value.setattr("count", count));
    match attributes {
        Ok(()) => error,
        Err(setattr_error) => setattr_error,
    }
}

/// Checks the limits of a query dict from Robyn and returns it decoded.
///
/// The URL length is `path_len` plus every name and value as received, each
/// with its `=` and `&` or `?`. Names that decode to the same text share one
/// list, in request order, and names that decode to nothing are dropped.
/// Raises `QueryStringError` with `code` one of `url_too_long`, `too_many_params`
/// (with `count`), `invalid_escape`, `invalid_utf8` (with `field` the name
/// as received, or the decoded name for a value), `name_too_long` or
/// `value_too_long` (with `field` the decoded name). Lengths count characters.
#[pyfunction]
pub fn decode_query<'py>(
    raw: &Bound<'py, PyDict>,
    path_len: usize,
    max_url_bytes: usize,
    max_params: usize,
    max_key_len: usize,
    max_value_len: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let py = raw.py();
    let mut length = path_len;
    let mut count = 0usize;
    for (name, values) in raw.iter() {
        let name_len = name.downcast::<PyString>()?.len()?;
        let values = values.downcast::<PyList>()?;
        for value in values.iter() {
            length += name_len + 2 + value.downcast::<PyString>()?.len()?;
        }
        count += values.len();
    }
    let none = py.None().into_bound(py);
    if length > max_url_bytes {
        return Err(query_error(py, "url_too_long", &none, count));
    }
    if count > max_params {
        return Err(query_error(py, "too_many_params", &none, count));
    }

    let decoded = PyDict::new(py);
    for (raw_name, raw_values) in raw.iter() {
        let raw_name = raw_name.downcast_into::<PyString>()?;
        let name = decode_py(&raw_name)
            .map_err(|error| query_error(py, error.code(), &raw_name, count))?;
        let name_len = name.len()?;
        if name_len == 0 {
            continue;
        }
        if name_len > max_key_len {
            return Err(query_error(py, "name_too_long", &name, count));
        }
        let bucket = match decoded.get_item(&name)? {
            Some(existing) => existing.downcast_into::<PyList>()?,
            None => {
                let created = PyList::empty(py);
                decoded.set_item(&name, &created)?;
                created
            }
        };
        for raw_value in raw_values.downcast::<PyList>()?.iter() {
            let raw_value = raw_value.downcast_into::<PyString>()?;
            let value = decode_py(&raw_value)
                .map_err(|error| query_error(py, error.code(), &name, count))?;
            if value.len()? > max_value_len {
                return Err(query_error(py, "value_too_long", &name, count));
            }
            bucket.append(value)?;
        }
    }
    Ok(decoded)
}

/// Decodes one query name or value, raising `QueryStringError` (`invalid_escape` or
/// `invalid_utf8`, `field` set to `field`) when it does not decode.
#[pyfunction]
pub fn decode_query_component<'py>(
    text: &Bound<'py, PyString>,
    field: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyString>> {
    decode_py(text).map_err(|error| query_error(text.py(), error.code(), field, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            decode_component("plain"),
            Ok(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn escape_at_end_is_invalid() {
        assert_eq!(decode_component("a%4"), Err(ComponentError::InvalidEscape));
    }

    #[test]
    fn invalid_escape_wins_over_invalid_utf8() {
        assert_eq!(
            decode_component("%FF%zz"),
            Err(ComponentError::InvalidEscape)
        );
    }
}
