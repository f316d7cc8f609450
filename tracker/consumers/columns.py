"""Validated columns of the event fields a sink needs, read from raw event documents.

`read_columns` validates a batch's documents and extracts the requested fields in
the extension (`tracker._core.read_event_columns`), without building a dict per
event. The extension leaves some documents to a full JSON parser: invalid JSON, a
value that is not an object, deep nesting and repeated params keys. This module
decodes those with orjson and judges them with `event_problem`. Every document thus
ends up with either a problem or its fields in the columns, as decoding each event
and calling `event_problem` would decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from tracker._core import read_event_columns
from tracker.consumers.events import EVENT_FIELDS, event_problem
from tracker.consumers.runtime import NOT_AN_OBJECT

__all__ = ["Column", "EventColumns", "read_columns"]


@dataclass(slots=True)
class Column:
    """One dictionary-encoded field: distinct values and the code of each event."""

    values: list[str]
    codes: np.ndarray
    """Index into `values` per event (intp), which is the code of "" for an invalid event."""

    def decoded(self) -> list[str]:
        """Return the value of every event, in order."""
        values = self.values
        return [values[code] for code in self.codes.tolist()]


@dataclass(slots=True)
class EventColumns:
    """Problems, timestamps and requested fields of one batch of event documents."""

    count: int
    problems: dict[int, str]
    """Reason per invalid event, in index order, for the dead letters."""
    valid: np.ndarray
    """True for each event without a problem."""
    timestamps: np.ndarray
    """Event time in Unix milliseconds (int64), or 0 for an invalid event."""
    columns: dict[str, Column]

    def __getitem__(self, field: str) -> Column:
        return self.columns[field]


def read_columns(documents: list[bytes], fields: Sequence[str]) -> EventColumns:
    """Validate `documents` and return `fields` of each (see `read_event_columns`)."""
    native = read_event_columns(documents, fields)
    problems = dict(native.problems)
    timestamps = np.frombuffer(native.timestamps, dtype="<i8").astype(np.int64)
    columns = {}
    for field in fields:
        values, codes = native.column(field)
        columns[field] = Column(values, np.frombuffer(codes, dtype="<u4").astype(np.intp))

    if native.unparsed:
        _decide_unparsed(documents, native.unparsed, fields, problems, timestamps, columns)
        problems = dict(sorted(problems.items()))

    valid = np.ones(len(documents), dtype=bool)
    if problems:
        valid[list(problems)] = False
    return EventColumns(len(documents), problems, valid, timestamps, columns)


def _decide_unparsed(
    documents: list[bytes],
    unparsed: list[int],
    fields: Sequence[str],
    problems: dict[int, str],
    timestamps: np.ndarray,
    columns: dict[str, Column],
) -> None:
    """Judge the documents the extension left unparsed, and fill in the valid ones.

    A valid one is re-encoded with only the wire fields, which orjson writes without
    repeated keys or deep nesting, and read again by the extension.
    """
    replaced: list[int] = []
    replacements: list[bytes] = []
    for index in unparsed:
        try:
            event = orjson.loads(documents[index])
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            problems[index] = NOT_AN_OBJECT
            continue
        problem = event_problem(event)
        if problem is not None:
            problems[index] = problem
            continue
        replaced.append(index)
        replacements.append(
            orjson.dumps({name: event[name] for name in EVENT_FIELDS if name in event})
        )
    if not replaced:
        return

    native = read_event_columns(replacements, fields)
    # A validated event re-encoded this way always parses, so this only guards that.
    rejected = dict(native.problems) | dict.fromkeys(native.unparsed, NOT_AN_OBJECT)
    new_timestamps = np.frombuffer(native.timestamps, dtype="<i8")
    for position, index in enumerate(replaced):
        if position in rejected:
            problems[index] = rejected[position]
        else:
            timestamps[index] = new_timestamps[position]
    for field in fields:
        column = columns[field]
        positions = {value: code for code, value in enumerate(column.values)}
        values, codes = native.column(field)
        new_codes = np.frombuffer(codes, dtype="<u4")
        for position, index in enumerate(replaced):
            value = values[new_codes[position]]
            code = positions.get(value)
            if code is None:
                code = positions[value] = len(column.values)
                column.values.append(value)
            column.codes[index] = code
