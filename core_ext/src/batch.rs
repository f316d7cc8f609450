//! `/batch` bodies: validate and stamp each event, then encode one record batch per partition.
//!
//! Every event of one body gets the same server timestamp, taken when parsing
//! starts. Accepted events keep their order within each partition.

use std::collections::HashSet;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::batch_json::{read_events, RawEvent, RawOutcome};
use crate::errors::{echo, CoreError};
use crate::event::{
    canonical_event_id, check_event_type, check_params, new_event_id, truncate_field, write_event,
    EventLimits, EventRef, RequestFields,
};
use crate::partition::{checked_partitions, partition_of};
use crate::prefix::{is_valid_key_prefix, KEY_PREFIX_FORM};
use crate::record::encode_lines;
use crate::uuid7::unix_ms;

/// Settings of a batch parser, fixed at construction.
pub struct BatchConfig {
    pub limits: EventLimits,
    pub max_events: usize,
    pub max_body_bytes: usize,
    pub partitions: u32,
    pub known_tenants: HashSet<String>,
}

/// One rejected event: its index in the body, the field and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedEvent {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// Outcome of parsing one body.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub accepted: usize,
    pub rejected: Vec<RejectedEvent>,
    pub event_ids: Vec<String>,
    /// (partition, event count, record batch), sorted by partition.
    pub records: Vec<(u32, u32, Vec<u8>)>,
}

struct PartitionLines {
    partition: u32,
    count: u32,
    lines: Vec<u8>,
}

fn key_prefix_of<'a>(params: &'a [(&'a str, &'a str)]) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| *key == "key_prefix")
        .map(|(_, value)| *value)
}

fn as_str<'a>(value: &'a Option<std::borrow::Cow<'_, str>>, fallback: &'a str) -> &'a str {
    value.as_deref().unwrap_or(fallback)
}

/// Validates one raw event and appends its JSON line to the lines of its partition.
fn stamp_event(
    config: &BatchConfig,
    raw: &RawEvent<'_>,
    request: &RequestFields<'_>,
    timestamp: u64,
    partitions: &mut Vec<PartitionLines>,
) -> Result<String, CoreError> {
    let Some(event_type) = raw.event_type.as_deref() else {
        return Err(CoreError::event("event_type", "is required"));
    };
    check_event_type(event_type)?;
    let Some(raw_params) = raw.params.as_ref() else {
        return Err(CoreError::event(
            "params",
            "is required and must contain key_prefix",
        ));
    };
    let params: Vec<(&str, &str)> = raw_params.iter().map(|(k, v)| (&**k, &**v)).collect();
    check_params(&params, &config.limits)?;

    let Some(key_prefix) = key_prefix_of(&params) else {
        return Err(CoreError::event("params.key_prefix", "is required"));
    };
    if !is_valid_key_prefix(key_prefix) {
        return Err(CoreError::event(
            "params.key_prefix",
            format!("must be {KEY_PREFIX_FORM}, got '{}'", echo(key_prefix)),
        ));
    }
    if !config.known_tenants.contains(key_prefix) {
        return Err(CoreError::event(
            "params.key_prefix",
            format!("'{key_prefix}' is not a known tenant"),
        ));
    }
    let event_id = match raw.event_id.as_deref() {
        Some(given) => canonical_event_id(given)?,
        None => new_event_id(),
    };

    let max = config.limits.max_field_len;
    let event = EventRef {
        event_id: &event_id,
        event_type,
        timestamp,
        ip: truncate_field(as_str(&raw.ip, request.ip), max),
        user_agent: truncate_field(as_str(&raw.user_agent, request.user_agent), max),
        referer: truncate_field(as_str(&raw.referer, request.referer), max),
        accept_language: truncate_field(as_str(&raw.accept_language, request.accept_language), max),
        request_path: truncate_field(request.request_path, max),
        request_host: truncate_field(request.request_host, max),
        params: &params,
    };
    let partition = partition_of(key_prefix, config.partitions);
    let slot = match partitions
        .iter()
        .position(|lines| lines.partition == partition)
    {
        Some(position) => &mut partitions[position],
        None => {
            partitions.push(PartitionLines {
                partition,
                count: 0,
                lines: Vec::with_capacity(64 * 1024),
            });
            let last = partitions.len() - 1;
            &mut partitions[last]
        }
    };
    write_event(&mut slot.lines, &event);
    slot.lines.push(b'\n');
    slot.count += 1;
    Ok(event_id)
}

/// Parses a body, validates and stamps each event and encodes them per partition.
pub fn parse_batch(
    config: &BatchConfig,
    body: &[u8],
    request: &RequestFields<'_>,
) -> Result<BatchOutcome, CoreError> {
    if body.len() > config.max_body_bytes {
        return Err(CoreError::batch(
            "body",
            format!(
                "is {} bytes, the maximum is {}",
                body.len(),
                config.max_body_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|error| {
        CoreError::batch(
            "body",
            format!("is not valid UTF-8 at byte {}", error.valid_up_to()),
        )
    })?;
    let raw_events = read_events(text, config.max_events)?;

    let timestamp = unix_ms();
    let mut outcome = BatchOutcome {
        event_ids: Vec::with_capacity(raw_events.len()),
        ..Default::default()
    };
    let mut partitions: Vec<PartitionLines> = Vec::new();
    for (index, raw) in raw_events.iter().enumerate() {
        let result = match raw {
            RawOutcome::Read(event) => {
                stamp_event(config, event, request, timestamp, &mut partitions)
            }
            RawOutcome::Rejected(field, reason) => {
                Err(CoreError::event(field.clone(), reason.clone()))
            }
        };
        match result {
            Ok(event_id) => outcome.event_ids.push(event_id),
            Err(CoreError::Event { field, reason }) => outcome.rejected.push(RejectedEvent {
                index,
                field,
                reason,
            }),
            Err(other) => return Err(other),
        }
    }
    outcome.accepted = outcome.event_ids.len();

    partitions.sort_unstable_by_key(|lines| lines.partition);
    for lines in partitions {
        let blob = encode_lines(&lines.lines, lines.count)?;
        outcome.records.push((lines.partition, lines.count, blob));
    }
    Ok(outcome)
}

/// One event of a batch that was not accepted.
#[pyclass(frozen, module = "tracker._core")]
pub struct Rejection {
    #[pyo3(get)]
    index: usize,
    #[pyo3(get)]
    field: String,
    #[pyo3(get)]
    reason: String,
}

#[pymethods]
impl Rejection {
    fn __repr__(&self) -> String {
        format!(
            "Rejection(index={}, field={:?}, reason={:?})",
            self.index, self.field, self.reason
        )
    }
}

/// Result of `BatchParser.parse`.
#[pyclass(frozen, module = "tracker._core")]
pub struct ParsedBatch {
    #[pyo3(get)]
    accepted: usize,
    #[pyo3(get)]
    rejected: Vec<Py<Rejection>>,
    #[pyo3(get)]
    event_ids: Vec<String>,
    #[pyo3(get)]
    records: Vec<(u32, u32, Py<PyBytes>)>,
}

#[pymethods]
impl ParsedBatch {
    fn __repr__(&self) -> String {
        format!(
            "ParsedBatch(accepted={}, rejected={}, records={})",
            self.accepted,
            self.rejected.len(),
            self.records.len()
        )
    }
}

/// Parser of `/batch` bodies with fixed limits, partition count and tenants.
#[pyclass(frozen, module = "tracker._core")]
pub struct BatchParser {
    config: BatchConfig,
}

fn positive(name: &str, value: i64) -> Result<usize, CoreError> {
    match usize::try_from(value) {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(CoreError::InvalidArgument(format!(
            "{name} must be at least 1, got {value}"
        ))),
    }
}

#[pymethods]
impl BatchParser {
    #[new]
    #[pyo3(signature = (*, limits, max_events, max_body_bytes, partitions, known_tenants))]
    fn py_new(
        limits: PyRef<'_, EventLimits>,
        max_events: i64,
        max_body_bytes: i64,
        partitions: i64,
        known_tenants: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let mut tenants = HashSet::new();
        for tenant in known_tenants.try_iter()? {
            tenants.insert(tenant?.extract::<String>()?);
        }
        Ok(BatchParser {
            config: BatchConfig {
                limits: *limits,
                max_events: positive("max_events", max_events)?,
                max_body_bytes: positive("max_body_bytes", max_body_bytes)?,
                partitions: checked_partitions(partitions)?,
                known_tenants: tenants,
            },
        })
    }

    #[pyo3(signature = (body, *, ip, user_agent, referer, accept_language, request_path, request_host))]
    #[allow(clippy::too_many_arguments)]
    fn parse(
        &self,
        py: Python<'_>,
        body: &[u8],
        ip: &str,
        user_agent: &str,
        referer: &str,
        accept_language: &str,
        request_path: &str,
        request_host: &str,
    ) -> PyResult<ParsedBatch> {
        let request = RequestFields {
            ip,
            user_agent,
            referer,
            accept_language,
            request_path,
            request_host,
        };
        // `body` and the request strings borrow immutable `bytes` and `str` objects,
        // which no thread can change, so the whole parse runs without the GIL.
        let outcome = py.allow_threads(|| parse_batch(&self.config, body, &request))?;

        let rejected = outcome
            .rejected
            .into_iter()
            .map(|r| {
                Py::new(
                    py,
                    Rejection {
                        index: r.index,
                        field: r.field,
                        reason: r.reason,
                    },
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        let records = outcome
            .records
            .into_iter()
            .map(|(partition, count, blob)| (partition, count, PyBytes::new(py, &blob).unbind()))
            .collect();
        Ok(ParsedBatch {
            accepted: outcome.accepted,
            rejected,
            event_ids: outcome.event_ids,
            records,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "BatchParser(max_events={}, max_body_bytes={}, partitions={}, known_tenants={})",
            self.config.max_events,
            self.config.max_body_bytes,
            self.config.partitions,
            self.config.known_tenants.len()
        )
    }
}
