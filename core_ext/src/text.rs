//! Python `str` arguments that must be valid Unicode before any byte work starts.
//!
//! A Python string can contain a lone surrogate (`"\ud800"`), which has no UTF-8 form.
//! PyO3's own conversion raises `UnicodeEncodeError` for it. A decoder argument raises the
//! decoder's documented exception instead, because such a token can never be authentic.

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::errors::CoreError;

/// Return `value` as a Rust string, a non-`str` as `TypeError`, and a lone surrogate as the
/// error `invalid` builds from a message naming `name`.
pub fn utf8_argument(
    value: &Bound<'_, PyAny>,
    name: &str,
    invalid: fn(String) -> CoreError,
) -> PyResult<String> {
    let text = value.downcast::<PyString>()?;
    match text.to_str() {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => Err(invalid(format!(
            "{name} is not valid Unicode: it contains a lone surrogate"
        ))
        .into()),
    }
}
