//! Record batches, the unit stored on the broker.
//!
//! `u8 version = 1 || u32 event count || zstd frame of JSON lines`, where each
//! line is one event document followed by `\n`. The decoder survives any bytes:
//! it caps the decompressed size and checks the count against the lines.

use std::cell::RefCell;
use std::io::Read;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use zstd::bulk::Compressor;
use zstd::zstd_safe::CParameter;

use crate::errors::CoreError;
use crate::gil;

pub const RECORD_VERSION: u8 = 1;
const HEADER_LEN: usize = 5;
/// zstd level 1 trades a little ratio for speed on the ingest path. Negative
/// ("fast") levels were measured on 1,000 stamped events of varied fields
/// (python-zstandard 0.25, one shared EPYC core): level -1 compressed 1.3x
/// faster but wrote 1.6x larger frames (ratio 4.8 against 7.8), and level -3
/// 1.8x faster at ratio 4.7. The broker stores and moves every frame, so level 1
/// stays.
const ZSTD_LEVEL: i32 = 1;
/// Largest decompressed payload accepted, so a small corrupt or hostile frame
/// cannot exhaust memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 * 1024 * 1024;

/// Largest compressed-frame buffer a thread keeps for its next batch; a larger
/// one is freed after use.
const MAX_KEPT_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// A thread's zstd context and the buffer it compresses into.
struct Encoder {
    compressor: Compressor<'static>,
    frame: Vec<u8>,
}

thread_local! {
    // A compression context costs far more to create than to reuse for one batch,
    // and a reused output buffer spares the page faults of a fresh one each time.
    static ENCODER: RefCell<Option<Encoder>> = const { RefCell::new(None) };
}

fn compression_failed<E>(_: E) -> CoreError {
    CoreError::RecordBatch("zstd compression failed".to_owned())
}

fn new_encoder() -> Result<Encoder, CoreError> {
    let mut compressor = Compressor::new(ZSTD_LEVEL).map_err(compression_failed)?;
    compressor
        .set_parameter(CParameter::ChecksumFlag(true))
        .map_err(compression_failed)?;
    Ok(Encoder {
        compressor,
        frame: Vec::new(),
    })
}

/// Frames and compresses JSON lines that already end in `\n`, `count` of them.
pub fn encode_lines(lines: &[u8], count: u32) -> Result<Vec<u8>, CoreError> {
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let encoder = match slot.as_mut() {
            Some(encoder) => encoder,
            None => slot.insert(new_encoder()?),
        };
        encoder.frame.clear();
        encoder
            .frame
            .reserve(zstd::zstd_safe::compress_bound(lines.len()));
        let compressed = encoder
            .compressor
            .compress_to_buffer(lines, &mut encoder.frame)
            .map_err(compression_failed);

        let blob = compressed.map(|_| {
            let mut blob = Vec::with_capacity(HEADER_LEN + encoder.frame.len());
            blob.push(RECORD_VERSION);
            blob.extend_from_slice(&count.to_be_bytes());
            blob.extend_from_slice(&encoder.frame);
            blob
        });
        if encoder.frame.capacity() > MAX_KEPT_FRAME_BYTES {
            encoder.frame = Vec::new();
        }
        blob
    })
}

/// Frames and compresses event documents, one per line.
pub fn encode<E: AsRef<[u8]>>(events: &[E]) -> Result<Vec<u8>, CoreError> {
    let count = u32::try_from(events.len()).map_err(|_| {
        CoreError::RecordBatch(format!(
            "{} events do not fit in one record batch",
            events.len()
        ))
    })?;
    let total: usize = events.iter().map(|event| event.as_ref().len() + 1).sum();
    let mut lines = Vec::with_capacity(total);
    for (index, event) in events.iter().enumerate() {
        let event = event.as_ref();
        if event.is_empty() {
            return Err(CoreError::RecordBatch(format!("event {index} is empty")));
        }
        if memchr::memchr(b'\n', event).is_some() {
            return Err(CoreError::RecordBatch(format!(
                "event {index} contains a newline; record batches hold compact JSON, one per line"
            )));
        }
        lines.extend_from_slice(event);
        lines.push(b'\n');
    }
    encode_lines(&lines, count)
}

fn decompress(frame: &[u8]) -> Result<Vec<u8>, CoreError> {
    let corrupt = |_| CoreError::RecordBatch("record batch zstd frame is corrupt".to_owned());
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(corrupt)?
        .single_frame();
    let mut payload = Vec::new();
    let read = (&mut decoder)
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut payload)
        .map_err(corrupt)?;
    if read as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(CoreError::RecordBatch(format!(
            "record batch decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"
        )));
    }
    if !decoder.finish().is_empty() {
        return Err(CoreError::RecordBatch(
            "record batch has bytes after its zstd frame".to_owned(),
        ));
    }
    Ok(payload)
}

/// Decompressed payload of a record batch and the byte range of each event in it.
pub struct DecodedBatch {
    pub payload: Vec<u8>,
    pub ranges: Vec<(usize, usize)>,
}

impl DecodedBatch {
    /// Returns the event documents, in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.ranges
            .iter()
            .map(|&(start, end)| &self.payload[start..end])
    }
}

/// Decodes a record batch into its payload and the byte ranges of its events.
pub fn decode(blob: &[u8]) -> Result<DecodedBatch, CoreError> {
    if blob.len() < HEADER_LEN {
        return Err(CoreError::RecordBatch(format!(
            "record batch is {} bytes, shorter than its {HEADER_LEN}-byte header",
            blob.len()
        )));
    }
    if blob[0] != RECORD_VERSION {
        return Err(CoreError::RecordBatch(format!(
            "record batch version is {}, the supported version is {RECORD_VERSION}",
            blob[0]
        )));
    }
    let count = u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]) as usize;
    let payload = decompress(&blob[HEADER_LEN..])?;

    // The count comes from the blob, so it only bounds the reservation, never drives it.
    let mut ranges = Vec::with_capacity(count.min(payload.len() / 2 + 1));
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', &payload) {
        if end == start {
            return Err(CoreError::RecordBatch(format!(
                "record batch line {} is empty",
                ranges.len()
            )));
        }
        ranges.push((start, end));
        start = end + 1;
    }
    if start != payload.len() {
        return Err(CoreError::RecordBatch(
            "record batch payload does not end with a newline".to_owned(),
        ));
    }
    if ranges.len() != count {
        return Err(CoreError::RecordBatch(format!(
            "record batch header gives {count} events but the payload contains {}",
            ranges.len()
        )));
    }
    Ok(DecodedBatch { payload, ranges })
}

#[pyfunction]
pub fn encode_record_batch<'py>(
    py: Python<'py>,
    events: Vec<pyo3::pybacked::PyBackedBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    let size: usize = events.iter().map(|event| event.len()).sum();
    let blob = gil::run_sized(py, size, || encode(&events))?;
    Ok(PyBytes::new(py, &blob))
}

#[pyfunction]
pub fn decode_record_batch<'py>(py: Python<'py>, blob: &[u8]) -> PyResult<Bound<'py, PyList>> {
    // `blob` borrows an immutable `bytes` object, which no thread can change. The
    // GIL is always released because a small frame can decompress to far more.
    let batch = py.allow_threads(|| decode(blob))?;
    PyList::new(py, batch.events().map(|event| PyBytes::new(py, event)))
}
