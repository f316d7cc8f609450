//! Error enum of the crate and its one mapping onto the Python exception tree.
//!
//! ```text
//! TrackerError(Exception)
//! +-- CodecError(TrackerError, ValueError)
//!     +-- SignatureError
//!     |   +-- SignatureExpired
//!     +-- DecryptionError
//!     |   +-- UnknownKeyId
//!     +-- EventError        (`field` names the offending field)
//!     +-- BatchError        (`field` names the offending field)
//!     +-- RecordBatchError
//!     +-- QueryStringError  (`code` names the problem, `field` and `count` its place)
//! ```

use std::fmt;

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyTuple, PyType};
use pyo3::{create_exception, ffi, PyTypeInfo};

/// Maximum length of caller input quoted in an error message, in bytes.
pub const ECHO_MAX_BYTES: usize = 50;

create_exception!(
    tracker._core,
    TrackerError,
    PyException,
    "Root of every error raised by the tracker package."
);

/// `CodecError` derives from both `TrackerError` and `ValueError`, which
/// `create_exception!` cannot express, so its type object is built here by hand.
#[repr(transparent)]
pub struct CodecError(PyAny);

pyo3::impl_exception_boilerplate!(CodecError);
pyo3::pyobject_native_type_core!(
    CodecError,
    CodecError::type_object_raw,
    #module=::std::option::Option::Some("tracker._core")
);

static CODEC_ERROR_TYPE: GILOnceCell<Py<PyType>> = GILOnceCell::new();

impl CodecError {
    fn create_type(py: Python<'_>) -> PyResult<Py<PyType>> {
        let bases = PyTuple::new(
            py,
            [py.get_type::<TrackerError>(), py.get_type::<PyValueError>()],
        )?;
        let doc = c"Bytes or text that do not decode into a valid value.";
        // SAFETY: the name and doc are NUL-terminated literals, and `bases` is a
        // live tuple of exception types, which PyErr_NewExceptionWithDoc accepts.
        let ptr = unsafe {
            ffi::PyErr_NewExceptionWithDoc(
                c"tracker._core.CodecError".as_ptr(),
                doc.as_ptr(),
                bases.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        // SAFETY: `ptr` is a new reference or NULL with an exception set.
        let any = unsafe { Bound::from_owned_ptr_or_err(py, ptr)? };
        Ok(any.downcast_into::<PyType>()?.unbind())
    }

    /// Creates the type object; the module calls this while it is imported,
    /// so a failure fails the import instead of a later raise.
    pub fn init_type(py: Python<'_>) -> PyResult<()> {
        CODEC_ERROR_TYPE.get_or_try_init(py, || Self::create_type(py))?;
        Ok(())
    }

    fn type_object_raw(py: Python<'_>) -> *mut ffi::PyTypeObject {
        match CODEC_ERROR_TYPE.get_or_try_init(py, || Self::create_type(py)) {
            Ok(ty) => ty.as_ptr() as *mut ffi::PyTypeObject,
            // Reached only if creating a type failed (out of memory) both at import
            // and now; ValueError is the closest stdlib base callers catch.
            // SAFETY: PyExc_ValueError is a static type object of the interpreter.
            Err(_) => unsafe { ffi::PyExc_ValueError as *mut ffi::PyTypeObject },
        }
    }
}

create_exception!(
    tracker._core,
    SignatureError,
    CodecError,
    "A click signature is missing, malformed or wrong."
);
create_exception!(
    tracker._core,
    SignatureExpired,
    SignatureError,
    "A click signature is valid but past its expiry."
);
create_exception!(
    tracker._core,
    DecryptionError,
    CodecError,
    "An encrypted blob is malformed or fails its GCM tag."
);
create_exception!(
    tracker._core,
    UnknownKeyId,
    DecryptionError,
    "An encrypted blob names a key id the tenant does not have."
);
create_exception!(
    tracker._core,
    EventError,
    CodecError,
    "One event is invalid; `field` names the offending field."
);
create_exception!(
    tracker._core,
    BatchError,
    CodecError,
    "A batch body is unusable as a whole; `field` names the offending field."
);
create_exception!(
    tracker._core,
    RecordBatchError,
    CodecError,
    "A stored record batch is corrupt."
);
create_exception!(
    tracker._core,
    QueryStringError,
    CodecError,
    "A query string breaks a request limit or does not decode; `code` says which."
);

/// Every failure the crate reports. Messages never contain keys or plaintext.
#[derive(Clone, PartialEq, Eq)]
pub enum CoreError {
    /// Text or bytes that do not decode, outside the more specific cases below.
    Codec(String),
    /// A click signature is malformed or does not match.
    Signature(String),
    /// A click signature or blob is authentic but past its expiry.
    Expired(String),
    /// An encrypted blob is malformed or fails authentication.
    Decryption(String),
    /// One event is invalid.
    Event { field: String, reason: String },
    /// A batch body is unusable as a whole.
    Batch { field: String, reason: String },
    /// A record batch is corrupt.
    RecordBatch(String),
    /// A constructor or function argument is out of range (a caller bug, not input).
    InvalidArgument(String),
}

impl CoreError {
    pub fn event(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CoreError::Event {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn batch(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CoreError::Batch {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Codec(message)
            | CoreError::Signature(message)
            | CoreError::Expired(message)
            | CoreError::Decryption(message)
            | CoreError::RecordBatch(message)
            | CoreError::InvalidArgument(message) => f.write_str(message),
            CoreError::Event { field, reason } | CoreError::Batch { field, reason } => {
                write!(f, "{field}: {reason}")
            }
        }
    }
}

impl fmt::Debug for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for CoreError {}

fn error_with_field<T: PyTypeInfo>(py: Python<'_>, field: &str, message: String) -> PyErr {
    let err = PyErr::new::<T, _>(message);
    if let Err(setattr_err) = err.value(py).setattr("field", field) {
        return setattr_err;
    }
    err
}

impl From<CoreError> for PyErr {
    fn from(error: CoreError) -> PyErr {
        let message = error.to_string();
        match error {
            CoreError::Codec(_) => PyErr::new::<CodecError, _>(message),
            CoreError::Signature(_) => PyErr::new::<SignatureError, _>(message),
            CoreError::Expired(_) => PyErr::new::<SignatureExpired, _>(message),
            CoreError::Decryption(_) => PyErr::new::<DecryptionError, _>(message),
            CoreError::Event { field, .. } => {
                Python::with_gil(|py| error_with_field::<EventError>(py, &field, message))
            }
            CoreError::Batch { field, .. } => {
                Python::with_gil(|py| error_with_field::<BatchError>(py, &field, message))
            }
            CoreError::RecordBatch(_) => PyErr::new::<RecordBatchError, _>(message),
            CoreError::InvalidArgument(_) => PyValueError::new_err(message),
        }
    }
}

/// Returns `text` cut to at most `ECHO_MAX_BYTES` at a character boundary, with an
/// ellipsis when it was cut, for quoting caller input in messages.
pub fn echo(text: &str) -> String {
    if text.len() <= ECHO_MAX_BYTES {
        return text.to_owned();
    }
    let mut end = ECHO_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Registers the exception classes on the module and gives `field` a class default.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    CodecError::init_type(py)?;
    m.add("TrackerError", py.get_type::<TrackerError>())?;
    m.add("CodecError", py.get_type::<CodecError>())?;
    m.add("SignatureError", py.get_type::<SignatureError>())?;
    m.add("SignatureExpired", py.get_type::<SignatureExpired>())?;
    m.add("DecryptionError", py.get_type::<DecryptionError>())?;
    m.add("UnknownKeyId", py.get_type::<UnknownKeyId>())?;
    m.add("EventError", py.get_type::<EventError>())?;
    m.add("BatchError", py.get_type::<BatchError>())?;
    m.add("RecordBatchError", py.get_type::<RecordBatchError>())?;
    m.add("QueryStringError", py.get_type::<QueryStringError>())?;
    py.get_type::<EventError>().setattr("field", "")?;
    py.get_type::<BatchError>().setattr("field", "")?;
    let query_error = py.get_type::<QueryStringError>();
    query_error.setattr("code", "")?;
    query_error.setattr("field", py.None())?;
    query_error.setattr("count", 0)?;
    Ok(())
}
