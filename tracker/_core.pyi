"""Typed surface of the Rust extension: URL codecs, UUIDv7, events and record batches.

Every function takes and returns plain data and never calls back into Python.
The formats are specified in README.md ("URL formats") and docs/formats.md.
"""

from collections.abc import Iterable, Sequence
from typing import Final, final

__version__: Final[str]

SIGNATURE_HEX_LEN: Final[int]
"""Length of the hex part of a click signature: 64 lowercase hex digits (HMAC-SHA256)."""

MAX_KEY_PREFIX_LEN: Final[int]
"""Longest tenant key prefix: 32 characters of [a-z0-9]."""

# Exceptions. The tree is drawn in tracker.errors, which re-exports them.
class TrackerError(Exception): ...
class CodecError(TrackerError, ValueError): ...
class SignatureError(CodecError): ...
class SignatureExpired(SignatureError): ...
class DecryptionError(CodecError): ...
class UnknownKeyId(DecryptionError): ...

class EventError(CodecError):
    field: str

class BatchError(CodecError):
    field: str

class RecordBatchError(CodecError): ...

class QueryStringError(CodecError):
    code: str
    field: str | None
    count: int

# Signed click URLs (HMAC-SHA256, RFC 2104).
def click_signature_message(
    destination: str,
    *,
    key_prefix: str | None = None,
    params: Sequence[tuple[str, str]] = (),
    expires_at: int | None = None,
) -> bytes:
    """Return the exact bytes that a click signature covers."""

def sign_click(
    secret: bytes,
    destination: str,
    *,
    key_prefix: str | None = None,
    params: Sequence[tuple[str, str]] = (),
    expires_at: int | None = None,
) -> str:
    """Return the `sig` value: `<key_prefix>_<64 hex>` or `<64 hex>` without a prefix.

    SignatureError on a malformed key prefix, a reserved, empty or repeated covered
    param name, or an `expires_at` below 1 (0 would mean "no expiry"); ValueError
    on an empty secret.
    """

def split_signature(sig: str) -> tuple[str | None, str]:
    """Split a `sig` value into (key prefix or None, hex digest); SignatureError if malformed."""

def verify_click(
    secrets: Sequence[bytes],
    destination: str,
    sig: str,
    *,
    params: Sequence[tuple[str, str]] = (),
    expires_at: int | None = None,
    now: int,
) -> int:
    """Check `sig` in constant time against each secret; return the index of the one that matched.

    `now` and `expires_at` are Unix seconds. Raises SignatureExpired when `now > expires_at`
    (checked only after the signature itself is valid) and SignatureError otherwise.
    """

# Encrypted click URLs (AES-256-GCM, NIST SP 800-38D).
@final
class Decrypted:
    destination: str
    params: list[tuple[str, str]]
    expires_at: int | None
    key_prefix: str | None
    key_id: int

def encrypt_destination(
    key: bytes,
    key_id: int,
    destination: str,
    *,
    key_prefix: str | None = None,
    params: Sequence[tuple[str, str]] = (),
    expires_at: int | None = None,
    nonce: bytes | None = None,
) -> str:
    """Return the `d` value. `nonce` is for test vectors only; by default it is random.

    CodecError on a malformed key prefix, a repeated or empty param name, a field
    over 65,535 bytes or an `expires_at` below 1; ValueError on a key that is not
    32 bytes, a key id outside 0..255 or a nonce that is not 12 bytes.
    """

def blob_header(d: str) -> tuple[str | None, int]:
    """Return (key prefix or None, key id) of a `d` value without decrypting it."""

def decrypt_destination(key: bytes, d: str, *, now: int) -> Decrypted:
    """Authenticate and decrypt a `d` value; DecryptionError, or SignatureExpired if expired."""

# UUIDv7 (RFC 9562), monotonic within the process.
def uuid7() -> str: ...
def uuid7_timestamp_ms(value: str) -> int:
    """Return the Unix millisecond timestamp embedded in a UUIDv7; CodecError otherwise."""

def now_ms() -> int:
    """Return the wall clock in Unix milliseconds, the clock used to stamp events."""

# Partitioning.
def partition_for(key_prefix: str, partitions: int) -> int:
    """Return FNV-1a 64 of the UTF-8 key prefix modulo `partitions`."""

# Query strings.
def decode_query(
    raw: dict[str, list[str]],
    path_len: int,
    max_url_bytes: int,
    max_params: int,
    max_key_len: int,
    max_value_len: int,
) -> dict[str, list[str]]:
    """Check the limits of a still-encoded query dict and return it decoded.

    `+` is a space, `%XX` a byte, and the bytes must be UTF-8. Names that decode
    to the same text share one list in request order, and empty names are dropped.
    QueryStringError `code`: `url_too_long`, `too_many_params` (`count`),
    `invalid_escape`, `invalid_utf8`, `name_too_long` or `value_too_long`.
    """

def decode_query_component(text: str, field: object) -> str:
    """Decode one query name or value; QueryStringError with `field` if it does not decode."""

# Events.
@final
class EventLimits:
    def __init__(
        self,
        *,
        max_params: int = 64,
        max_key_len: int = 128,
        max_value_len: int = 2048,
        max_field_len: int = 2048,
    ) -> None: ...
    max_params: int
    max_key_len: int
    max_value_len: int
    max_field_len: int

def build_event(
    event_type: str,
    params: Sequence[tuple[str, str]],
    *,
    ip: str,
    user_agent: str,
    referer: str,
    accept_language: str,
    request_path: str,
    request_host: str,
    limits: EventLimits,
    event_id: str | None = None,
    timestamp: int | None = None,
) -> tuple[str, bytes]:
    """Validate and serialise one event; return (event_id, event JSON).

    Later pairs in `params` win over earlier ones with the same key. Raises EventError naming
    the field on an invalid event type, a param over the limits, or a bad event id.
    """

@final
class Rejection:
    index: int
    field: str
    reason: str

@final
class ParsedBatch:
    accepted: int
    rejected: list[Rejection]
    event_ids: list[str]
    records: list[tuple[int, int, bytes]]
    """(partition, event count, encoded record batch) for each partition that got events."""

@final
class BatchParser:
    def __init__(
        self,
        *,
        limits: EventLimits,
        max_events: int,
        max_body_bytes: int,
        partitions: int,
        known_tenants: Iterable[str],
    ) -> None: ...
    def parse(
        self,
        body: bytes | str,
        *,
        ip: str,
        user_agent: str,
        referer: str,
        accept_language: str,
        request_path: str,
        request_host: str,
    ) -> ParsedBatch:
        """Parse a /batch body, validate and stamp each event, encode per partition.

        The body is a JSON array of events or an object {"events": [...]}, as bytes or as a
        str (read through its UTF-8 form without a copy). Raises BatchError when the body as
        a whole is unusable; individual bad events become rejections.
        """

# Record batches: the unit stored on the broker.
def encode_record_batch(events: Sequence[bytes]) -> bytes:
    """Frame and zstd-compress event JSON documents into one record batch."""

def decode_record_batch(blob: bytes) -> list[bytes]:
    """Return the event JSON documents of a record batch; RecordBatchError if corrupt."""

# Event columns: what a consumer reads from event documents without decoding them into dicts.
@final
class EventColumns:
    count: int
    """Number of documents read."""
    problems: list[tuple[int, str]]
    """(index, reason) of each document that is not a valid wire event, in index order.
    The reason is the one `tracker.consumers.events.event_problem` returns."""
    unparsed: list[int]
    """Indexes of documents left to a full JSON parser: invalid JSON, not an object,
    nesting deeper than 128 levels, or params with a repeated key or over 64 entries."""
    timestamps: bytes
    """The `timestamp` of each document as little-endian int64, 0 where not valid."""
    def column(self, name: str) -> tuple[list[str], bytes]:
        """Return a requested field's distinct values, in first-seen order, and the code of
        each document as little-endian uint32. A missing field or param reads as "", and a
        document that is not valid has the code of "" (the empty string)."""

def read_event_columns(documents: Sequence[bytes], fields: Sequence[str]) -> EventColumns:
    """Validate event documents and extract `fields`, each dictionary-encoded.

    A field is `event_id`, `event_type`, `ip`, `user_agent`, `referer`,
    `accept_language`, `request_path`, `request_host` or `params.<key>`; ValueError
    names an unknown one.
    """

# Hot tier rows: PostgreSQL binary COPY of the `events` table.
@final
class HotCopy:
    payload: bytes
    """COPY ... (FORMAT binary) stream of the rows, in `tracker.hot.schema.COLUMNS` order."""
    rows: int
    indices: list[int]
    """Index in `documents` of each row, in row order."""
    days: list[int]
    """Start (Unix ms) of each UTC day the rows fall in, ascending."""
    rejected: list[tuple[int, str]]
    """(index, reason) of each invalid event, with the reasons of `event_problem`."""
    expired: int
    """Valid events older than the cutoff, left out."""
    duplicates: int
    """Repeats of an (event_id, timestamp) already in this batch, left out."""

def encode_hot_copy(documents: Sequence[bytes], *, cutoff_ms: int, horizon_ms: int) -> HotCopy:
    """Check event JSON documents and encode the valid ones as hot `events` rows.

    Events with a timestamp before `cutoff_ms` are counted as expired; those at or
    after `horizon_ms` are rejected. Releases the GIL for batches of 16 KiB and more.
    """

# Archive rows: event documents into the cold tier's Arrow columns.
@final
class ArchiveRows:
    """Rows of the archive table (ARCHIVE_SCHEMA) for the accepted documents, in input order.

    Implements the Arrow PyCapsule interface: `pyarrow.record_batch(rows)` imports
    the columns without copying them.
    """

    num_rows: int
    rejected: list[tuple[int, str]]
    """(document index, reason) of each rejected document, in input order."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        """Return (schema, array) capsules of a struct array; `requested_schema` is ignored."""

    def __len__(self) -> int: ...

def archive_rows(documents: Sequence[bytes]) -> ArchiveRows:
    """Parse event JSON documents and build archive rows from the valid ones.

    Rejections and their reasons are those `tracker.consumers.archive_table` gives for
    decoded dicts. A document is rejected when it is not a JSON object or lacks a
    non-empty `event_id`, `event_type` or `params.key_prefix`. It is also rejected
    when `timestamp` is not an integer in 0..253402300799999 (Unix ms), `params` is
    not an object of strings, or a top-level string field is present but not a
    string. Raises ValueError when the documents total more than 2**31 - 1 bytes.
    """
