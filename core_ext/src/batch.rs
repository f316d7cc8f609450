//! `/batch` bodies: validate and stamp each event, then encode one record batch per partition.
//!
//! Every event of one body gets the same server timestamp, taken when parsing
//! starts, and its new ids come from one reserved run of UUIDv7s. Accepted events
//! keep their order within each partition. The work runs in three passes: read
//! the body (`batch_scan`, or `batch_json` for anything outside the common
//! shape), validate every event, then write the accepted events' JSON lines
//! straight into one buffer per partition.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::batch_json::{read_events, RawEvent, RawOutcome};
use crate::batch_scan::scan_events;
use crate::errors::{echo, CoreError};
use crate::event::{
    check_event_type, check_params, parse_event_id, truncate_field, write_json_str, EventLimits,
    RequestFields,
};
use crate::partition::{checked_partitions, partition_of};
use crate::prefix::{is_valid_key_prefix, KEY_PREFIX_FORM};
use crate::record::encode_lines;
use crate::uuid7::{unix_ms, write_uuid, IdBlock};

/// Largest buffer of JSON lines reserved before writing one partition's events.
const MAX_RESERVED_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Line buffers a thread keeps for its next body, and the largest one kept, so
/// a thread keeps at most 16 MiB between bodies.
const MAX_KEPT_LINE_BUFFERS: usize = 4;
const MAX_KEPT_LINE_BYTES: usize = 4 * 1024 * 1024;

thread_local! {
    // Fresh line and zstd output buffers cost the 1,000-event codec bench body
    // about 150 page faults and 300 us of system time per parse from Python.
    static LINE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_line_buffer() -> Vec<u8> {
    LINE_BUFFERS
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default()
}

fn keep_line_buffer(mut lines: Vec<u8>) {
    if lines.capacity() > MAX_KEPT_LINE_BYTES {
        return;
    }
    lines.clear();
    LINE_BUFFERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < MAX_KEPT_LINE_BUFFERS {
            pool.push(lines);
        }
    });
}

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

/// The id of an accepted event as its 36-character lowercase hyphenated text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventId([u8; 36]);

impl EventId {
    fn from_bytes(bytes: &[u8; 16]) -> EventId {
        let mut text = [0u8; 36];
        write_uuid(bytes, &mut text);
        EventId(text)
    }

    pub fn as_str(&self) -> &str {
        // Only `write_uuid` fills the text, with ASCII hex digits and hyphens, so
        // the check always passes and the fallback is never taken.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Outcome of parsing one body.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub accepted: usize,
    pub rejected: Vec<RejectedEvent>,
    pub event_ids: Vec<EventId>,
    /// (partition, event count, record batch), sorted by partition.
    pub records: Vec<(u32, u32, Vec<u8>)>,
}

struct PartitionLines {
    partition: u32,
    count: u32,
    lines: Vec<u8>,
}

/// An event that passed validation, waiting for its id and its JSON line.
struct Accepted<'r, 'de> {
    raw: &'r RawEvent<'de>,
    event_type: &'r str,
    params: &'r [(Cow<'de, str>, Cow<'de, str>)],
    /// Index into the partition buffers.
    slot: usize,
    given_id: Option<[u8; 16]>,
}

/// The partition buffer of the last tenant seen; most bodies hold one tenant.
struct TenantSlot<'r> {
    key_prefix: &'r str,
    slot: usize,
}

/// Request fields as JSON fragments, escaped and cut once per body rather than
/// once per event.
struct Stamp {
    /// `,"timestamp":T,"ip":`
    timestamp_and_ip_key: Vec<u8>,
    ip: Vec<u8>,
    user_agent: Vec<u8>,
    referer: Vec<u8>,
    accept_language: Vec<u8>,
    /// `,"request_path":P,"request_host":H,"params":{`
    request_and_params_key: Vec<u8>,
    max_field_len: usize,
}

impl Stamp {
    fn new(request: &RequestFields<'_>, timestamp: u64, max_field_len: usize) -> Stamp {
        let json = |value: &str| {
            let mut out = Vec::with_capacity(value.len() + 2);
            write_json_str(&mut out, truncate_field(value, max_field_len));
            out
        };
        let mut timestamp_and_ip_key = b",\"timestamp\":".to_vec();
        timestamp_and_ip_key.extend_from_slice(timestamp.to_string().as_bytes());
        timestamp_and_ip_key.extend_from_slice(b",\"ip\":");
        let mut request_and_params_key = b",\"request_path\":".to_vec();
        request_and_params_key.extend_from_slice(&json(request.request_path));
        request_and_params_key.extend_from_slice(b",\"request_host\":");
        request_and_params_key.extend_from_slice(&json(request.request_host));
        request_and_params_key.extend_from_slice(b",\"params\":{");
        Stamp {
            timestamp_and_ip_key,
            ip: json(request.ip),
            user_agent: json(request.user_agent),
            referer: json(request.referer),
            accept_language: json(request.accept_language),
            request_and_params_key,
            max_field_len,
        }
    }

    /// Bytes of one line besides the strings the event gives, an estimate for
    /// reserving buffers.
    fn fixed_len(&self) -> usize {
        self.timestamp_and_ip_key.len()
            + self.ip.len()
            + self.user_agent.len()
            + self.referer.len()
            + self.accept_language.len()
            + self.request_and_params_key.len()
            + 128
    }

    /// Appends a field given by the event, cut to the field limit, or the
    /// request's value when the event has none.
    fn write_field(&self, out: &mut Vec<u8>, given: Option<&Cow<'_, str>>, default: &[u8]) {
        match given {
            None => out.extend_from_slice(default),
            Some(value) => write_body_str(out, value, self.max_field_len),
        }
    }

    /// Appends the JSON line of one accepted event, in the fixed field order.
    fn write_line(&self, out: &mut Vec<u8>, event_id: &EventId, event: &Accepted<'_, '_>) {
        out.extend_from_slice(b"{\"event_id\":\"");
        out.extend_from_slice(&event_id.0);
        out.extend_from_slice(b"\",\"event_type\":\"");
        // A valid event type is `[A-Za-z0-9_.:-]`, which JSON never escapes.
        out.extend_from_slice(event.event_type.as_bytes());
        out.push(b'"');
        out.extend_from_slice(&self.timestamp_and_ip_key);
        self.write_field(out, event.raw.ip.as_ref(), &self.ip);
        out.extend_from_slice(b",\"user_agent\":");
        self.write_field(out, event.raw.user_agent.as_ref(), &self.user_agent);
        out.extend_from_slice(b",\"referer\":");
        self.write_field(out, event.raw.referer.as_ref(), &self.referer);
        out.extend_from_slice(b",\"accept_language\":");
        self.write_field(
            out,
            event.raw.accept_language.as_ref(),
            &self.accept_language,
        );
        out.extend_from_slice(&self.request_and_params_key);
        for (index, (key, value)) in event.params.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_body_str(out, key, usize::MAX);
            out.push(b':');
            write_body_str(out, value, usize::MAX);
        }
        out.extend_from_slice(b"}}\n");
    }
}

/// Appends a string read from the body as JSON, cut to `max_len` bytes.
///
/// A borrowed string had no escapes in the body, so it is copied as is. A decoded
/// string is escaped again.
#[inline]
#[allow(clippy::ptr_arg)] // The `Cow` variant, not only the text, is what this reads.
fn write_body_str(out: &mut Vec<u8>, value: &Cow<'_, str>, max_len: usize) {
    match value {
        Cow::Borrowed(text) => {
            out.push(b'"');
            out.extend_from_slice(truncate_field(text, max_len).as_bytes());
            out.push(b'"');
        }
        Cow::Owned(text) => write_json_str(out, truncate_field(text, max_len)),
    }
}

fn key_prefix_of<'a>(params: &'a [(Cow<'_, str>, Cow<'_, str>)]) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == "key_prefix")
        .map(|(_, value)| value.as_ref())
}

/// Validates one raw event and finds the partition buffer of its tenant.
fn check_event<'r, 'de>(
    config: &BatchConfig,
    raw: &'r RawEvent<'de>,
    last_tenant: &mut Option<TenantSlot<'r>>,
    partitions: &mut Vec<PartitionLines>,
) -> Result<Accepted<'r, 'de>, CoreError> {
    let Some(event_type) = raw.event_type.as_deref() else {
        return Err(CoreError::event("event_type", "is required"));
    };
    check_event_type(event_type)?;
    let Some(params) = raw.params.as_deref() else {
        return Err(CoreError::event(
            "params",
            "is required and must contain key_prefix",
        ));
    };
    check_params(params, &config.limits)?;

    let Some(key_prefix) = key_prefix_of(params) else {
        return Err(CoreError::event("params.key_prefix", "is required"));
    };
    let slot = match last_tenant {
        Some(last) if last.key_prefix == key_prefix => last.slot,
        _ => {
            let slot = tenant_slot(config, key_prefix, partitions)?;
            *last_tenant = Some(TenantSlot { key_prefix, slot });
            slot
        }
    };
    let given_id = match raw.event_id.as_deref() {
        Some(given) => Some(parse_event_id(given)?),
        None => None,
    };
    Ok(Accepted {
        raw,
        event_type,
        params,
        slot,
        given_id,
    })
}

/// Checks a tenant and returns the index of its partition buffer, adding one.
fn tenant_slot(
    config: &BatchConfig,
    key_prefix: &str,
    partitions: &mut Vec<PartitionLines>,
) -> Result<usize, CoreError> {
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
    let partition = partition_of(key_prefix, config.partitions);
    if let Some(slot) = partitions
        .iter()
        .position(|lines| lines.partition == partition)
    {
        return Ok(slot);
    }
    partitions.push(PartitionLines {
        partition,
        count: 0,
        lines: take_line_buffer(),
    });
    Ok(partitions.len() - 1)
}

/// Borrows the bytes of a `bytes` body, or the UTF-8 form of a `str` body without copying it.
///
/// A `str` with a lone surrogate has no UTF-8 form and is rejected as a batch error on `body`.
fn body_bytes<'a>(body: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    if let Ok(bytes) = body.downcast::<PyBytes>() {
        return Ok(bytes.as_bytes());
    }
    if let Ok(text) = body.downcast::<PyString>() {
        return match text.to_str() {
            Ok(text) => Ok(text.as_bytes()),
            Err(_) => Err(CoreError::batch(
                "body",
                "is not valid UTF-8: it contains a lone surrogate".to_owned(),
            )
            .into()),
        };
    }
    Err(PyTypeError::new_err(format!(
        "body must be bytes or str, not {}",
        body.get_type().name()?
    )))
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
    let raw_events = match scan_events(text, config.max_events) {
        Some(events) => events,
        None => read_events(text, config.max_events)?,
    };
    let timestamp = unix_ms();

    let mut outcome = BatchOutcome::default();
    let mut partitions: Vec<PartitionLines> = Vec::new();
    let mut accepted = Vec::with_capacity(raw_events.len());
    let mut last_tenant = None;
    for (index, raw) in raw_events.iter().enumerate() {
        let result = match raw {
            RawOutcome::Read(event) => {
                check_event(config, event, &mut last_tenant, &mut partitions)
            }
            RawOutcome::Rejected(field, reason) => {
                Err(CoreError::event(field.clone(), reason.clone()))
            }
        };
        match result {
            Ok(event) => accepted.push(event),
            Err(CoreError::Event { field, reason }) => outcome.rejected.push(RejectedEvent {
                index,
                field,
                reason,
            }),
            Err(other) => return Err(other),
        }
    }

    let stamp = Stamp::new(request, timestamp, config.limits.max_field_len);
    let line_estimate = body.len() / raw_events.len().max(1) + stamp.fixed_len();
    for event in &accepted {
        partitions[event.slot].count += 1;
    }
    for lines in &mut partitions {
        // The cap bounds memory taken up front when long request headers would
        // make the estimate large; a buffer past it grows as usual.
        let reserve = (lines.count as usize).saturating_mul(line_estimate);
        lines.lines.reserve(reserve.min(MAX_RESERVED_LINE_BYTES));
    }
    let new_ids = accepted
        .iter()
        .filter(|event| event.given_id.is_none())
        .count();
    let mut ids = IdBlock::reserve(new_ids as u64, timestamp);
    outcome.event_ids.reserve(accepted.len());
    for event in &accepted {
        let bytes = match event.given_id {
            Some(given) => given,
            None => ids.next_bytes(),
        };
        let event_id = EventId::from_bytes(&bytes);
        stamp.write_line(&mut partitions[event.slot].lines, &event_id, event);
        outcome.event_ids.push(event_id);
    }
    outcome.accepted = outcome.event_ids.len();

    partitions.sort_unstable_by_key(|lines| lines.partition);
    for lines in partitions {
        let blob = encode_lines(&lines.lines, lines.count)?;
        outcome.records.push((lines.partition, lines.count, blob));
        keep_line_buffer(lines.lines);
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
    event_ids: Vec<EventId>,
    #[pyo3(get)]
    records: Vec<(u32, u32, Py<PyBytes>)>,
}

#[pymethods]
impl ParsedBatch {
    /// Ids of the accepted events in body order, built into a new list on each access.
    #[getter]
    fn event_ids(&self) -> Vec<&str> {
        self.event_ids.iter().map(EventId::as_str).collect()
    }

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
        body: &Bound<'_, PyAny>,
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
        let body = body_bytes(body)?;
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
