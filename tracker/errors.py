"""Exception tree of the tracker package; every module imports its errors from here.

TrackerError                    (root; defined in the Rust extension)
+-- CodecError(ValueError)      bytes that do not decode
|   +-- SignatureError          missing, malformed or wrong click signature
|   |   +-- SignatureExpired    valid signature past its `exp`
|   +-- DecryptionError         malformed blob or failed GCM tag
|   |   +-- UnknownKeyId        blob names a key id the tenant does not have
|   +-- EventError              one event is invalid (`field` names what)
|   +-- BatchError              a /batch body is unusable as a whole
|   +-- RecordBatchError        a stored record batch is corrupt
|   +-- QueryStringError        a request query breaks a limit or does not decode (`code`)
+-- ConfigError(ValueError)     a setting is missing or invalid (`variable`)
+-- RegistryError               registry lookups and changes
|   +-- NotFound                no such tenant, link, key or webhook
|   +-- Conflict                the change clashes with what is stored
+-- BrokerError                 the broker failed an operation
|   +-- BrokerUnavailable       the broker cannot be reached now (retryable)
|   +-- QueueFull               the producer queue is at its bound (retryable)
+-- QueryError(ValueError)      a query tier cannot or will not answer (`code`, `field`)
+-- SinkError                   a consumer sink failed a batch
|   +-- RetryableSinkError      a transient failure: the runtime retries the batch
+-- AuthenticationError         an API key is missing, malformed, unknown or revoked (`reason`)
+-- PermissionDenied            the key's scope does not allow the request (`scope`)
"""

from tracker._core import (
    BatchError,
    CodecError,
    DecryptionError,
    EventError,
    QueryStringError,
    RecordBatchError,
    SignatureError,
    SignatureExpired,
    TrackerError,
    UnknownKeyId,
)

__all__ = [
    "AuthenticationError",
    "BatchError",
    "BrokerError",
    "BrokerUnavailable",
    "CodecError",
    "ConfigError",
    "Conflict",
    "DecryptionError",
    "EventError",
    "NotFound",
    "PermissionDenied",
    "QueryError",
    "QueryStringError",
    "QueueFull",
    "RecordBatchError",
    "RegistryError",
    "RetryableSinkError",
    "SignatureError",
    "SignatureExpired",
    "SinkError",
    "TrackerError",
    "UnknownKeyId",
]


class ConfigError(TrackerError, ValueError):
    """A setting is missing or invalid; `variable` names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class RegistryError(TrackerError):
    """A registry lookup or change failed."""


class NotFound(RegistryError):
    """The tenant, tracking URL, key or webhook does not exist."""


class Conflict(RegistryError):
    """The change clashes with stored state, such as a duplicate key prefix."""


class BrokerError(TrackerError):
    """The broker failed an operation."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached now; the caller may retry or spool."""


class QueueFull(BrokerError):
    """The producer queue is at its bound; answer 503 with Retry-After."""


class QueryError(TrackerError, ValueError):
    """A query is invalid or a tier cannot answer it.

    `code` is a stable snake_case reason the API maps to a status, and `field` names the
    request field at fault (empty when the query as a whole is the problem).
    """

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class AuthenticationError(TrackerError):
    """An API key is missing, malformed, unknown, revoked or of a disabled tenant.

    `reason` is one of missing, malformed, unknown, revoked, tenant_disabled; the
    message never contains the key's secret.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDenied(TrackerError):
    """The API key is valid but its scope does not allow the request; `scope` is the one needed."""

    def __init__(self, scope: str, message: str) -> None:
        super().__init__(message)
        self.scope = scope


class SinkError(TrackerError):
    """A consumer sink could not make a batch durable."""


class RetryableSinkError(SinkError):
    """A transient sink failure, such as a lost database connection; the batch is retried."""
