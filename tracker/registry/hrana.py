"""A sqlite3-like connection to a remote libSQL database (Turso, sqld) over Hrana over HTTP.

The protocol is the `POST /v3/pipeline` endpoint of sqld and Turso, specified in
docs/HTTP_V2_SPEC.md and docs/HRANA_3_SPEC.md of the tursodatabase/libsql repository.
Each request carries a list of stream requests and a baton that names the server-side
stream (one SQLite connection) they run on.

This client is used instead of libsql_experimental 0.0.55 for remote databases. That
library sets no timeout on remote requests and holds the GIL while it waits, so a server
that stopped responding froze every thread of the process. Here, httpx releases the GIL
during network I/O and each request has a timeout.

A statement outside a transaction runs on a new stream that the same request closes.
BEGIN keeps its stream open, so the statements up to COMMIT or ROLLBACK run on the same
server-side connection.
"""

from __future__ import annotations

import base64
import contextlib
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tracker.registry.libsql import LibsqlCursor, positional_parameters

__all__ = ["HranaConnection", "is_remote_url"]

_REMOTE_SCHEMES = ("libsql://", "http://", "https://")
_LEADING_COMMENTS = r"^\s*(?:--[^\n]*\n\s*)*"
_BEGIN = re.compile(_LEADING_COMMENTS + r"BEGIN\b", re.IGNORECASE)
_END = re.compile(_LEADING_COMMENTS + r"(COMMIT|END|ROLLBACK)\b(?!\s+TO\b)", re.IGNORECASE)
_ROLLBACK = re.compile(_LEADING_COMMENTS + r"ROLLBACK\s*(?:TRANSACTION\s*)?;?\s*$", re.IGNORECASE)
_DML = re.compile(_LEADING_COMMENTS + r"(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def is_remote_url(url: str) -> bool:
    """Return whether `url` names a remote libSQL database (libsql://, https:// or http://)."""
    return url.startswith(_REMOTE_SCHEMES)


class HranaConnection:
    """A connection to a remote libSQL database with the sqlite3 behaviour the registry relies on.

    Use it from one thread at a time; `Registry` gives each thread its own.
    `total_changes` is the sum of `rowcount` over the INSERT, UPDATE and DELETE
    statements run through this object.
    """

    def __init__(
        self, url: str, *, auth_token: str | None = None, timeout_seconds: float = 10.0
    ) -> None:
        if not is_remote_url(url):
            raise ValueError(
                f"invalid libSQL URL {url[:80]!r}: expected libsql://, https:// or http://"
            )
        # libsql:// is an alias for https:// in the libSQL clients (libsql/src/util/mod.rs).
        self._url = (
            "https://" + url.removeprefix("libsql://") if url.startswith("libsql://") else url
        )
        self._url = self._url.rstrip("/")
        headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_seconds)
        self._baton: str | None = None
        self._stream_url: str | None = None
        self.total_changes = 0

    @property
    def in_transaction(self) -> bool:
        return self._baton is not None

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> LibsqlCursor:
        if self._baton is None and _ROLLBACK.match(sql):
            # No stream is open, so no transaction is: it ended or a failed request lost it and
            # the server rolled it back. Doing nothing keeps the error that led here visible.
            return LibsqlCursor([], None, -1, None)
        statement = {"sql": sql, "args": _arguments(parameters), "want_rows": True}
        result = self._run(sql, {"type": "execute", "stmt": statement})["result"]
        rows = [tuple(_decode(value) for value in row) for row in result["rows"]]
        description = tuple(
            (column["name"], None, None, None, None, None, None) for column in result["cols"]
        )
        rowcount = -1
        if _DML.match(sql):
            rowcount = int(result["affected_row_count"])
            self.total_changes += rowcount
        rowid = result.get("last_insert_rowid")
        return LibsqlCursor(rows, description or None, rowcount, int(rowid) if rowid else None)

    def executemany(self, sql: str, seq_of_parameters: Any) -> LibsqlCursor:
        """Run `sql` once per parameter sequence, in one request, stopping at the first error."""
        steps = []
        for index, parameters in enumerate(seq_of_parameters):
            step: dict[str, Any] = {
                "stmt": {"sql": sql, "args": _arguments(parameters), "want_rows": False}
            }
            if index:
                step["condition"] = {"type": "ok", "step": index - 1}
            steps.append(step)
        if not steps:
            return LibsqlCursor([], None, 0 if _DML.match(sql) else -1, None)
        result = self._run(sql, {"type": "batch", "batch": {"steps": steps}})["result"]
        for error in result["step_errors"]:
            if error is not None:
                raise _database_error(error)
        rowcount = -1
        if _DML.match(sql):
            rowcount = sum(int(step["affected_row_count"]) for step in result["step_results"])
            self.total_changes += rowcount
        return LibsqlCursor([], None, rowcount, None)

    def executescript(self, script: str) -> None:
        self._run(script, {"type": "sequence", "sql": script})

    def commit(self) -> None:
        """Commit an open transaction. Without one it does nothing, as in sqlite3."""
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def close(self) -> None:
        """Close the HTTP client. The server rolls back an open transaction when its stream closes."""
        try:
            self._close_stream()
        finally:
            self._client.close()

    def _run(self, sql: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send one stream request and return its response, keeping the stream open only for a transaction."""
        opens = self._baton is None and _BEGIN.match(sql) is not None
        stays = opens or (self._baton is not None and not _END.match(sql))
        follow_up = {"type": "get_autocommit"} if stays else {"type": "close"}
        results = self._post([request, follow_up])

        if stays:
            autocommit = results[1].get("response", {}).get("is_autocommit", True)
            if autocommit:
                # The statement failed to open a transaction, or SQLite rolled it back.
                self._close_stream()
        if results[0]["type"] == "error":
            raise _database_error(results[0]["error"])
        return results[0]["response"]

    def _post(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        url = (self._stream_url or self._url) + "/v3/pipeline"
        try:
            response = self._client.post(url, json={"baton": self._baton, "requests": requests})
        except httpx.TimeoutException as error:
            self._forget_stream()
            raise sqlite3.OperationalError(
                f"libSQL request to {self._url} timed out ({type(error).__name__}). Check that the server is up"
            ) from error
        except httpx.HTTPError as error:
            self._forget_stream()
            raise sqlite3.OperationalError(
                f"libSQL request to {self._url} failed: {error}"
            ) from error
        if response.status_code >= 400:
            self._forget_stream()
            raise sqlite3.OperationalError(
                f"libSQL request to {self._url} failed with HTTP {response.status_code}: {response.text[:300]}"
            )
        try:
            body = response.json()
        except ValueError as error:
            self._forget_stream()
            raise sqlite3.OperationalError(
                f"libSQL request to {self._url} returned a body that is not JSON: {response.text[:200]!r}"
            ) from error
        self._baton = body.get("baton")
        self._stream_url = body.get("base_url") or self._stream_url
        if self._baton is None:
            self._stream_url = None
        return body["results"]

    def _close_stream(self) -> None:
        if self._baton is None:
            return
        # On failure _post has forgotten the stream already, and the server expires it.
        with contextlib.suppress(sqlite3.Error):
            self._post([{"type": "close"}])
        self._forget_stream()

    def _forget_stream(self) -> None:
        # After a failed request the stream is no longer valid, and the server rolls it back.
        self._baton = None
        self._stream_url = None


def _arguments(parameters: Any) -> list[dict[str, Any]]:
    values = positional_parameters(parameters)
    return [_encode(value, index) for index, value in enumerate(values)]


def _encode(value: Any, index: int) -> dict[str, Any]:
    if value is None:
        return {"type": "null"}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    if isinstance(value, float):
        return {"type": "float", "value": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "blob", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    try:
        number = int(value.__index__())
    except (AttributeError, TypeError):
        raise sqlite3.ProgrammingError(
            f"parameter {index + 1} has unsupported type {type(value).__name__}:"
            " expected None, int, float, str or bytes"
        ) from None
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise sqlite3.ProgrammingError(
            f"parameter {index + 1} is {number}: outside the 64-bit integer range"
        )
    return {"type": "integer", "value": str(number)}


def _decode(value: dict[str, Any]) -> Any:
    kind = value["type"]
    if kind == "null":
        return None
    if kind == "integer":
        return int(value["value"])
    if kind == "float":
        return float(value["value"])
    if kind == "text":
        return value["value"]
    if kind == "blob":
        encoded = value["base64"]
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    raise sqlite3.OperationalError(f"unknown libSQL value type {kind!r} in a server response")


def _database_error(error: Mapping[str, Any]) -> sqlite3.Error:
    """Map a Hrana error to the sqlite3 exception sqlite3 raises for it."""
    code = error.get("code") or ""
    message = error.get("message") or "unknown error"
    text = f"{message} ({code})" if code else message
    if code.startswith("SQLITE_CONSTRAINT") or "constraint failed" in message:
        return sqlite3.IntegrityError(text)
    if code.startswith("ARGS_"):
        return sqlite3.ProgrammingError(text)
    return sqlite3.OperationalError(text)
