//! Archive rows: event documents straight into one Arrow record batch of the cold-tier table.
//!
//! The columns, their order, types, field names and nullability are those of
//! `ARCHIVE_SCHEMA` in `tracker/consumers/archive_table.py`, so the batch appends
//! to existing tables unchanged. The batch reaches Python through the Arrow
//! PyCapsule interface (`__arrow_c_array__`), which pyarrow and deltalake import
//! without copying the buffers.

use std::ffi::CString;
use std::fmt::Write;
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, StringBuilder};
use arrow_array::ffi::to_ffi;
use arrow_array::{Array, ArrayRef, Int64Array, MapArray, StructArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Fields};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyCapsule;

use crate::archive_json::{EventRef, ParsedEvent, Rejection, Value, STRING_FIELDS};
use crate::errors::CoreError;
use crate::gil;

const MS_PER_DAY: i64 = 86_400_000;

/// Largest total size of the documents of one call. String columns use 32-bit
/// offsets, and no column contains more bytes than the documents it came from.
pub const MAX_TOTAL_BYTES: usize = i32::MAX as usize;

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

/// Returns the fields of the params map's `entries` struct: `key` non-null and
/// `value` nullable, as `pa.map_(pa.string(), pa.string())` declares them.
fn params_entries() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ])
}

/// Fields of the archive table, in column order.
pub fn archive_fields() -> Fields {
    let mut fields = vec![
        utf8("event_id"),
        utf8("event_type"),
        Field::new("timestamp", DataType::Int64, false),
    ];
    fields.extend(STRING_FIELDS.iter().map(|name| utf8(name)));
    fields.push(Field::new(
        "params",
        DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(params_entries()),
                false,
            )),
            false,
        ),
        false,
    ));
    fields.push(utf8("key_prefix"));
    fields.push(utf8("date"));
    Fields::from(fields)
}

/// Writes the UTC day `days` after 1970-01-01 as `YYYY-MM-DD`.
///
/// Civil-from-days over 400-year eras of 146,097 days, from Howard Hinnant,
/// "chrono-Compatible Low-Level Date Algorithms"; exact for the proleptic
/// Gregorian calendar.
fn write_date(out: &mut String, days: i64) {
    let shifted = days + 719_468; // days from 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 is March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    out.clear();
    // Writing into a String cannot fail.
    let _ = write!(out, "{year:04}-{month:02}-{day:02}");
}

/// Column builders of the archive table.
struct Columns {
    event_id: StringBuilder,
    event_type: StringBuilder,
    timestamp: Vec<i64>,
    strings: [StringBuilder; 6],
    map_offsets: Vec<i32>,
    map_keys: StringBuilder,
    map_values: StringBuilder,
    key_prefix: StringBuilder,
    date: StringBuilder,
    /// The last day appended and its text, because a batch rarely spans many days.
    last_day: Option<i64>,
    day_text: String,
}

impl Columns {
    fn with_capacity(rows: usize) -> Self {
        let text = || StringBuilder::with_capacity(rows, rows * 16);
        let mut map_offsets = Vec::with_capacity(rows + 1);
        map_offsets.push(0);
        Columns {
            event_id: StringBuilder::with_capacity(rows, rows * 36),
            event_type: text(),
            timestamp: Vec::with_capacity(rows),
            strings: std::array::from_fn(|_| text()),
            map_offsets,
            map_keys: StringBuilder::with_capacity(rows * 4, rows * 32),
            map_values: StringBuilder::with_capacity(rows * 4, rows * 32),
            key_prefix: text(),
            date: StringBuilder::with_capacity(rows, rows * 10),
            last_day: None,
            day_text: String::with_capacity(10),
        }
    }

    fn append(&mut self, event: &EventRef<'_>) {
        self.event_id.append_value(event.event_id);
        self.event_type.append_value(event.event_type);
        self.timestamp.push(event.timestamp);
        for (builder, value) in self.strings.iter_mut().zip(event.strings) {
            builder.append_value(value);
        }
        for (key, value) in event.params {
            self.map_keys.append_value(key);
            if let Value::Text(text) = value {
                self.map_values.append_value(text);
            }
        }
        // Below MAX_TOTAL_BYTES there are fewer than i32::MAX entries.
        self.map_offsets.push(self.map_keys.len() as i32);
        self.key_prefix.append_value(event.key_prefix);

        let day = event.timestamp.div_euclid(MS_PER_DAY);
        if self.last_day != Some(day) {
            write_date(&mut self.day_text, day);
            self.last_day = Some(day);
        }
        self.date.append_value(&self.day_text);
    }

    fn finish(mut self) -> Result<StructArray, ArrowError> {
        let entries = StructArray::try_new(
            params_entries(),
            vec![
                Arc::new(self.map_keys.finish()) as ArrayRef,
                Arc::new(self.map_values.finish()),
            ],
            None,
        )?;
        let params = MapArray::try_new(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(params_entries()),
                false,
            )),
            OffsetBuffer::new(ScalarBuffer::from(self.map_offsets)),
            entries,
            None,
            false,
        )?;

        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(Int64Array::from(self.timestamp)),
        ];
        for builder in &mut self.strings {
            columns.push(Arc::new(builder.finish()));
        }
        columns.push(Arc::new(params));
        columns.push(Arc::new(self.key_prefix.finish()));
        columns.push(Arc::new(self.date.finish()));
        StructArray::try_new(archive_fields(), columns, None)
    }
}

/// Archive rows of a list of documents and the rejected ones.
pub struct ArchiveBatch {
    /// One row per accepted document, in input order; the fields of `archive_fields`.
    pub rows: StructArray,
    /// (index of the document, reason), in input order.
    pub rejected: Vec<(usize, Rejection)>,
}

/// Parses and validates each document and builds the archive rows of the valid ones.
pub fn build_archive_batch<D: AsRef<[u8]>>(documents: &[D]) -> Result<ArchiveBatch, CoreError> {
    let total: usize = documents
        .iter()
        .map(|document| document.as_ref().len())
        .sum();
    if total > MAX_TOTAL_BYTES {
        return Err(CoreError::InvalidArgument(format!(
            "documents total {total} bytes, more than the {MAX_TOTAL_BYTES} one call \
             accepts; split them over several calls"
        )));
    }

    let mut columns = Columns::with_capacity(documents.len());
    let mut rejected = Vec::new();
    let mut event = ParsedEvent::default();
    for (index, document) in documents.iter().enumerate() {
        let outcome = event
            .read(document.as_ref())
            .and_then(|()| event.validate().map(|valid| columns.append(&valid)));
        if let Err(rejection) = outcome {
            rejected.push((index, rejection));
        }
    }

    let rows = columns.finish().map_err(|error| {
        CoreError::Codec(format!("could not assemble the archive columns: {error}"))
    })?;
    Ok(ArchiveBatch { rows, rejected })
}

/// Rows of the archive table built from event documents, exported as an Arrow array.
#[pyclass(frozen, module = "tracker._core")]
pub struct ArchiveRows {
    rows: StructArray,
    rejected: Vec<(usize, Rejection)>,
}

#[pymethods]
impl ArchiveRows {
    /// Number of accepted events, the rows of the batch.
    #[getter]
    fn num_rows(&self) -> usize {
        self.rows.len()
    }

    /// (document index, reason) of each rejected document, in input order.
    #[getter]
    fn rejected(&self) -> Vec<(usize, &'static str)> {
        self.rejected
            .iter()
            .map(|&(index, rejection)| (index, rejection.message()))
            .collect()
    }

    /// Exports the rows as a struct array through the Arrow C Data Interface.
    ///
    /// The batch is always given in its own schema; a `requested_schema` is
    /// ignored, which the PyCapsule interface allows, and the caller casts.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let (array, schema) = to_ffi(&self.rows.to_data()).map_err(|error| {
            CoreError::Codec(format!("could not export the archive rows: {error}"))
        })?;
        // The capsules own the C structs; pyarrow moves them out on import and
        // a capsule that was never imported releases them when it is freed.
        let schema = PyCapsule::new(py, schema, Some(CString::from(c"arrow_schema")))?;
        let array = PyCapsule::new(py, array, Some(CString::from(c"arrow_array")))?;
        Ok((schema, array))
    }

    fn __len__(&self) -> usize {
        self.rows.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "ArchiveRows(num_rows={}, rejected={})",
            self.rows.len(),
            self.rejected.len()
        )
    }
}

#[pyfunction]
pub fn archive_rows(py: Python<'_>, documents: Vec<PyBackedBytes>) -> PyResult<ArchiveRows> {
    // Each `PyBackedBytes` borrows an immutable `bytes` object or owns a copy of a
    // `bytearray`, so no other thread can change the input while the GIL is released.
    let size: usize = documents.iter().map(|document| document.len()).sum();
    let batch = gil::run_sized(py, size, || build_archive_batch(&documents))?;
    Ok(ArchiveRows {
        rows: batch.rows,
        rejected: batch.rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        let mut text = String::new();
        for (days, expected) in [
            (0, "1970-01-01"),
            (59, "1970-03-01"),
            (11_016, "2000-02-29"),
            (20_494, "2026-02-10"),
            (2_932_896, "9999-12-31"),
        ] {
            write_date(&mut text, days);
            assert_eq!(text, expected, "day {days}");
        }
    }

    #[test]
    fn batch_keeps_valid_rows_in_order() {
        let good = |id: &str| {
            format!(
                r#"{{"event_id":"{id}","event_type":"click","timestamp":1770704294008,"ip":"1.2.3.4","params":{{"key_prefix":"acme","sub1":"x"}}}}"#
            )
        };
        let documents = [good("a"), "not json".to_owned(), good("b")];
        let batch = build_archive_batch(&documents).expect("builds");
        assert_eq!(batch.rows.len(), 2);
        assert_eq!(batch.rejected, [(1, Rejection::NotObject)]);
        assert_eq!(batch.rows.fields(), &archive_fields());
    }
}
