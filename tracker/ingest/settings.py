"""Settings of the ingestion service, read once from the environment at start-up."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from tracker.broker.settings import BrokerSettings
from tracker.errors import ConfigError
from tracker.settings import Env, load_env

__all__ = ["URL_MODES", "IngestSettings"]

URL_MODES = ("signed", "encrypted")
AES_KEY_BYTES = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Everything `tracker serve` reads from the environment, validated at start-up."""

    host: str = "127.0.0.1"
    port: int = 3030
    processes: int = 1
    workers: int = 1
    url_mode: str = "signed"
    hmac_secret: bytes | None = field(default=None, repr=False)
    encryption_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    max_batch_size: int = 10_000
    batch_parse_threads: int = 2
    max_body_bytes: int = 16 * 1024 * 1024
    max_beacon_bytes: int = 16 * 1024
    max_url_bytes: int = 8192
    max_header_bytes: int = 16 * 1024
    max_params: int = 64
    max_param_key_len: int = 128
    max_param_value_len: int = 2048
    trusted_proxies: tuple[Network, ...] = ()
    registry_path: Path = Path(".tracker/registry.db")
    turso_url: str | None = None
    turso_auth_token: str | None = field(default=None, repr=False)
    registry_refresh_seconds: float = 5.0
    log_format: str = "json"
    drain_seconds: float = 10.0
    broker: BrokerSettings = field(default_factory=BrokerSettings)

    @classmethod
    def from_env(cls, env: Env | None = None) -> IngestSettings:
        """Build the settings; raise ConfigError naming the first invalid variable."""
        env = env if env is not None else load_env()
        broker = BrokerSettings.from_env(env)
        url_mode = env.choice("URL_MODE", "signed", URL_MODES)
        hmac_secret = env.str("HMAC_SECRET")
        encryption_keys = _encryption_keys(env)
        max_body_bytes = env.int("MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
        return cls(
            host=env.str("HOST", "127.0.0.1") or "127.0.0.1",
            port=env.int("PORT", 3030, minimum=1, maximum=65535),
            processes=env.int("INGEST_PROCESSES", 1, minimum=1, maximum=64),
            workers=env.int("INGEST_WORKERS", 1, minimum=1, maximum=64),
            url_mode=url_mode,
            hmac_secret=hmac_secret.encode("utf-8") if hmac_secret is not None else None,
            encryption_keys=encryption_keys,
            max_batch_size=env.int("MAX_BATCH_SIZE", 10_000, minimum=1, maximum=1_000_000),
            batch_parse_threads=env.int("BATCH_PARSE_THREADS", 2, minimum=0, maximum=64),
            max_body_bytes=max_body_bytes,
            max_beacon_bytes=env.int(
                "MAX_BEACON_BYTES", 16 * 1024, minimum=256, maximum=max_body_bytes
            ),
            # Robyn 0.88 rejects request URLs of about 65,500 bytes and more with 400 before any
            # handler runs (a 65,000-byte URL passed, 65,600 did not), so 414 needs a lower limit.
            max_url_bytes=env.int("MAX_URL_BYTES", 8192, minimum=256, maximum=65_000),
            max_header_bytes=env.int("MAX_HEADER_BYTES", 16 * 1024, minimum=1024),
            max_params=env.int("MAX_PARAMS", 64, minimum=1, maximum=1024),
            max_param_key_len=env.int("MAX_PARAM_KEY_LEN", 128, minimum=1, maximum=65_535),
            max_param_value_len=env.int("MAX_PARAM_VALUE_LEN", 2048, minimum=1, maximum=65_535),
            trusted_proxies=env.networks("TRUSTED_PROXIES"),
            registry_path=env.path("REGISTRY_PATH", broker.data_dir / "registry.db"),
            turso_url=env.str("TURSO_URL"),
            turso_auth_token=env.str("TURSO_AUTH_TOKEN"),
            registry_refresh_seconds=env.float("REGISTRY_REFRESH_SECONDS", 5.0, minimum=0.05),
            log_format=env.choice("LOG_FORMAT", "json", ("json", "text")),
            drain_seconds=env.float("INGEST_DRAIN_SECONDS", 10.0, minimum=0.0),
            broker=broker,
        )


def _encryption_keys(env: Env) -> dict[int, bytes]:
    """Read ENCRYPTION_KEY (key id 0) and ENCRYPTION_KEYS (`id:hex,...`) into one map."""
    keys: dict[int, bytes] = {}
    single = env.hex_key("ENCRYPTION_KEY", length=AES_KEY_BYTES)
    if single is not None:
        keys[0] = single

    listed = env.raw("ENCRYPTION_KEYS")
    if listed is None:
        return keys
    for entry in listed.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key_id_text, colon, hex_text = entry.partition(":")
        if not colon or not key_id_text.strip().isdigit():
            raise ConfigError(
                "ENCRYPTION_KEYS", "expected a comma-separated list of <key id>:<64 hex digits>"
            )
        key_id = int(key_id_text.strip())
        if key_id > 255:
            raise ConfigError("ENCRYPTION_KEYS", f"key id must be 0 to 255, got {key_id}")
        try:
            key = bytes.fromhex(hex_text.strip())
        except ValueError:
            raise ConfigError(
                "ENCRYPTION_KEYS", f"key {key_id} is not hex: expected 64 hex digits"
            ) from None
        if len(key) != AES_KEY_BYTES:
            raise ConfigError(
                "ENCRYPTION_KEYS", f"key {key_id} must be 32 bytes (64 hex digits), got {len(key)}"
            )
        if key_id in keys and keys[key_id] != key:
            raise ConfigError(
                "ENCRYPTION_KEYS", f"key id {key_id} is given twice with different keys"
            )
        keys[key_id] = key
    return keys
