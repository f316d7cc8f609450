"""Per-tenant filter rules: their JSON definition, its validation and compiled matchers.

A rule definition is a JSON object:

    {"match": "all" | "any",
     "conditions": [{"field": "...", "op": "...", "value": ...}, ...],
     "action": "drop" | "tag",
     "tag": "name"}                      (only with "tag")

`field` is an event field (`event_type`, `ip`, `user_agent`, `referer`,
`accept_language`, `request_path`, `request_host`) or `params.<key>`. Operators:
`equals` (string), `in` (list of strings), `prefix` (string), `regex` (RE2 syntax,
searched anywhere in the value; RE2 runs in linear time, so a tenant's pattern cannot
stall the filter) and `cidr` (string or list of networks, field `ip` only). A missing
param never matches. Tag rules add the param `_tag=<name>`; several matching tag
rules join their names with commas.

`compile_rule` raises RuleError for any defect, so a bad rule is rejected when it is
saved and never reaches the filter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from tracker.errors import RegistryError

__all__ = [
    "ACTIONS",
    "EVENT_FIELDS",
    "OPERATORS",
    "CompiledRule",
    "RuleError",
    "compile_rule",
]

ACTIONS = ("drop", "tag")
OPERATORS = ("cidr", "equals", "in", "prefix", "regex")
EVENT_FIELDS = (
    "accept_language",
    "event_type",
    "ip",
    "referer",
    "request_host",
    "request_path",
    "user_agent",
)
MAX_CONDITIONS = 32
MAX_VALUES = 1000
MAX_VALUE_LEN = 2048
MAX_REGEX_MEMORY = 8 << 20
_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PARAM_KEY_MAX = 128

Matcher = Callable[[dict[str, Any]], bool]


class RuleError(RegistryError, ValueError):
    """A rule definition is invalid; `field` is the path of the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to run: its id, tenant, action, optional tag and matcher."""

    rule_id: int
    key_prefix: str
    action: str
    tag: str | None
    matches: Matcher


def compile_rule(definition: Any, *, rule_id: int = 0, key_prefix: str = "") -> CompiledRule:
    """Validate a rule definition and return its compiled form; RuleError names the defect."""
    if not isinstance(definition, dict):
        raise RuleError("rule", "expected a JSON object")
    unknown = set(definition) - {"match", "conditions", "action", "tag"}
    if unknown:
        raise RuleError(
            sorted(unknown)[0][:50], "unknown key; expected match, conditions, action, tag"
        )

    match = definition.get("match", "all")
    if match not in ("all", "any"):
        raise RuleError("match", f"expected 'all' or 'any', got {str(match)[:50]!r}")
    action = definition.get("action")
    if action not in ACTIONS:
        raise RuleError("action", f"expected 'drop' or 'tag', got {str(action)[:50]!r}")
    tag = definition.get("tag")
    if action == "tag":
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise RuleError(
                "tag", "a tag rule needs a tag of 1 to 64 characters of [A-Za-z0-9_.:-]"
            )
    elif tag is not None:
        raise RuleError("tag", "only a tag rule takes a tag")

    conditions = definition.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise RuleError("conditions", "expected a non-empty list of conditions")
    if len(conditions) > MAX_CONDITIONS:
        raise RuleError("conditions", f"at most {MAX_CONDITIONS} conditions per rule")
    matchers = [
        _compile_condition(condition, f"conditions[{index}]")
        for index, condition in enumerate(conditions)
    ]

    if match == "all":

        def matches(event: dict[str, Any]) -> bool:
            return all(matcher(event) for matcher in matchers)

    else:

        def matches(event: dict[str, Any]) -> bool:
            return any(matcher(event) for matcher in matchers)

    return CompiledRule(rule_id, key_prefix, action, tag, matches)


def _compile_condition(condition: Any, path: str) -> Matcher:
    if not isinstance(condition, dict):
        raise RuleError(path, "expected an object with field, op and value")
    unknown = set(condition) - {"field", "op", "value"}
    if unknown:
        raise RuleError(
            f"{path}.{sorted(unknown)[0][:50]}", "unknown key; expected field, op, value"
        )
    field = condition.get("field")
    op = condition.get("op")
    value = condition.get("value")
    read = _field_reader(field, f"{path}.field")
    if op not in OPERATORS:
        raise RuleError(
            f"{path}.op",
            f"unknown operator {str(op)[:50]!r}; expected one of {', '.join(OPERATORS)}",
        )

    if op == "equals":
        expected = _string(value, f"{path}.value")
        return lambda event: read(event) == expected
    if op == "prefix":
        start = _string(value, f"{path}.value")
        return lambda event: (found := read(event)) is not None and found.startswith(start)
    if op == "in":
        choices = frozenset(_strings(value, f"{path}.value"))
        return lambda event: read(event) in choices
    if op == "regex":
        pattern = _compile_regex(_string(value, f"{path}.value"), f"{path}.value")
        return lambda event: (
            (found := read(event)) is not None and pattern.search(found) is not None
        )
    # cidr
    if field != "ip":
        raise RuleError(f"{path}.op", "cidr applies only to the field 'ip'")
    networks = _networks(value, f"{path}.value")
    return lambda event: _in_networks(read(event), networks)


def _field_reader(field: Any, path: str) -> Callable[[dict[str, Any]], str | None]:
    if not isinstance(field, str):
        raise RuleError(path, "expected an event field name or params.<key>")
    if field in EVENT_FIELDS:

        def read_field(event: dict[str, Any]) -> str | None:
            value = event.get(field)
            return value if isinstance(value, str) else None

        return read_field
    if field.startswith("params.") and 0 < len(field) - len("params.") <= _PARAM_KEY_MAX:
        key = field[len("params.") :]

        def read_param(event: dict[str, Any]) -> str | None:
            params = event.get("params")
            value = params.get(key) if isinstance(params, dict) else None
            return value if isinstance(value, str) else None

        return read_param
    raise RuleError(
        path,
        f"unknown field {field[:50]!r}; expected one of {', '.join(EVENT_FIELDS)} or params.<key>",
    )


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise RuleError(path, "expected a string")
    if len(value) > MAX_VALUE_LEN:
        raise RuleError(path, f"longer than {MAX_VALUE_LEN} characters")
    return value


def _strings(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise RuleError(path, "expected a non-empty list of strings")
    if len(value) > MAX_VALUES:
        raise RuleError(path, f"at most {MAX_VALUES} values")
    return [_string(item, f"{path}[{index}]") for index, item in enumerate(value)]


def _compile_regex(pattern: str, path: str) -> Any:
    options = re2.Options()
    options.max_mem = MAX_REGEX_MEMORY
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        raise RuleError(path, f"invalid regex (RE2 syntax): {str(error)[:100]}") from None


def _networks(value: Any, path: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    items = [value] if isinstance(value, str) else value
    texts = _strings(items, path)
    networks = []
    for index, text in enumerate(texts):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            where = path if isinstance(value, str) else f"{path}[{index}]"
            raise RuleError(
                where, f"invalid CIDR {text[:50]!r}; expected a network such as 203.0.113.0/24"
            ) from None
    return tuple(networks)


def _in_networks(value: str | None, networks: tuple[Any, ...]) -> bool:
    if value is None:
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return any(address in network for network in networks)
