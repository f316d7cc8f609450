"""Reading settings from the environment and an optional `.env` file.

Each component declares its own frozen settings dataclass and builds it with the
readers below, so an invalid value stops start-up with a ConfigError naming the
variable.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from tracker.errors import ConfigError

__all__ = [
    "Env",
    "load_env",
]


def load_env(env_file: str | Path | None = None) -> Env:
    """Merge `.env` (or `env_file`) under the process environment, which wins."""
    path = (
        Path(env_file) if env_file is not None else Path(os.environ.get("TRACKER_ENV_FILE", ".env"))
    )
    values: dict[str, str] = {}
    if path.is_file():
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ)
    return Env(values)


class Env:
    """Typed readers over a mapping of variable names to raw strings."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def raw(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise ConfigError(name, "is required but not set")
            return default
        return value

    def int(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise ConfigError(name, f"expected an integer, got {value[:50]!r}") from None
        if minimum is not None and number < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise ConfigError(name, f"must be at most {maximum}, got {number}")
        return number

    def float(self, name: str, default: float, *, minimum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, f"expected a number, got {value[:50]!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(name, f"expected a finite number, got {value[:50]!r}")
        if minimum is not None and number < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {number}")
        return number

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"expected true or false, got {value[:50]!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            raise ConfigError(name, f"expected one of {', '.join(choices)}, got {value[:50]!r}")
        return value

    def hex_key(self, name: str, *, length: int, required: bool = False) -> bytes | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise ConfigError(name, f"is required: {length} bytes as {2 * length} hex digits")
            return None
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise ConfigError(name, f"expected {2 * length} hex digits") from None
        if len(key) != length:
            raise ConfigError(
                name, f"expected {length} bytes ({2 * length} hex digits), got {len(key)}"
            )
        return key

    def networks(self, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        networks = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(name, f"invalid CIDR {part[:50]!r}") from None
        return tuple(networks)

    def path(self, name: str, default: str | Path) -> Path:
        value = self.raw(name)
        return Path(value) if value is not None else Path(default)
