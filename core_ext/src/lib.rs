//! `tracker._core`: the byte work of the tracker request hot path.
//!
//! Signed and encrypted click URLs, query strings, UUIDv7, partitions, events, `/batch` bodies,
//! record batches, event columns, hot-tier COPY rows and the archive's Arrow rows.
//! Every function takes and returns plain data and never calls back into Python;
//! `tracker/_core.pyi` is the typed surface.

pub mod archive;
pub mod archive_json;
pub mod batch;
pub mod batch_json;
pub mod batch_scan;
pub mod encrypt;
pub mod errors;
pub mod event;
pub mod event_columns;
pub mod gil;
pub mod hot_copy;
pub mod partition;
pub mod prefix;
pub mod query;
pub mod record;
pub mod sign;
pub mod text;
pub mod uuid7;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SIGNATURE_HEX_LEN", sign::SIGNATURE_HEX_LEN)?;
    m.add("MAX_KEY_PREFIX_LEN", prefix::MAX_KEY_PREFIX_LEN)?;
    errors::register(m)?;

    m.add_function(wrap_pyfunction!(sign::click_signature_message, m)?)?;
    m.add_function(wrap_pyfunction!(sign::sign_click, m)?)?;
    m.add_function(wrap_pyfunction!(sign::split_signature, m)?)?;
    m.add_function(wrap_pyfunction!(sign::verify_click, m)?)?;

    m.add_class::<encrypt::Decrypted>()?;
    m.add_function(wrap_pyfunction!(encrypt::encrypt_destination, m)?)?;
    m.add_function(wrap_pyfunction!(encrypt::blob_header, m)?)?;
    m.add_function(wrap_pyfunction!(encrypt::decrypt_destination, m)?)?;

    m.add_function(wrap_pyfunction!(uuid7::uuid7, m)?)?;
    m.add_function(wrap_pyfunction!(uuid7::uuid7_timestamp_ms, m)?)?;
    m.add_function(wrap_pyfunction!(uuid7::now_ms, m)?)?;

    m.add_function(wrap_pyfunction!(partition::partition_for, m)?)?;

    m.add_function(wrap_pyfunction!(query::decode_query, m)?)?;
    m.add_function(wrap_pyfunction!(query::decode_query_component, m)?)?;

    m.add_class::<event::EventLimits>()?;
    m.add_function(wrap_pyfunction!(event::build_event, m)?)?;

    m.add_class::<batch::Rejection>()?;
    m.add_class::<batch::ParsedBatch>()?;
    m.add_class::<batch::BatchParser>()?;

    m.add_function(wrap_pyfunction!(record::encode_record_batch, m)?)?;
    m.add_function(wrap_pyfunction!(record::decode_record_batch, m)?)?;

    m.add_class::<event_columns::EventColumns>()?;
    m.add_function(wrap_pyfunction!(event_columns::read_event_columns, m)?)?;

    m.add_class::<hot_copy::HotCopy>()?;
    m.add_function(wrap_pyfunction!(hot_copy::encode_hot_copy, m)?)?;

    m.add_class::<archive::ArchiveRows>()?;
    m.add_function(wrap_pyfunction!(archive::archive_rows, m)?)?;
    Ok(())
}
