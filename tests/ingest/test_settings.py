"""IngestSettings from the environment: defaults and the variable named on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.errors import ConfigError
from tracker.ingest.settings import IngestSettings
from tracker.settings import Env


def test_defaults():
    settings = IngestSettings.from_env(Env({}))
    assert settings.host == "127.0.0.1"
    assert settings.port == 3030
    assert settings.url_mode == "signed"
    assert settings.max_batch_size == 10_000
    assert settings.registry_path == Path(".tracker/registry.db")
    assert settings.registry_refresh_seconds == 5.0


def test_encryption_keys_merge():
    key0 = "00" * 32
    key5 = "55" * 32
    settings = IngestSettings.from_env(
        Env({"ENCRYPTION_KEY": key0, "ENCRYPTION_KEYS": f"5:{key5}, 0:{key0}"})
    )
    assert settings.encryption_keys == {0: bytes(32), 5: bytes([0x55]) * 32}


def test_secrets_not_in_repr():
    settings = IngestSettings.from_env(Env({"HMAC_SECRET": "very-secret-value"}))
    assert "very-secret-value" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "0"),
        ("PORT", "x"),
        ("URL_MODE", "both"),
        ("ENCRYPTION_KEY", "00" * 31),
        ("ENCRYPTION_KEYS", "300:" + "00" * 32),
        ("ENCRYPTION_KEYS", "a:" + "00" * 32),
        ("ENCRYPTION_KEYS", "1:" + "00" * 32 + ",1:" + "11" * 32),
        ("MAX_URL_BYTES", "100000"),
        ("REGISTRY_REFRESH_SECONDS", "nan"),
        ("LOG_FORMAT", "xml"),
        ("TRUSTED_PROXIES", "not-a-net"),
        ("BATCH_PARSE_THREADS", "-1"),
        ("BATCH_PARSE_THREADS", "many"),
        ("BATCH_PARSE_THREADS", "65"),
    ],
)
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        IngestSettings.from_env(Env({variable: value}))
    assert caught.value.variable == variable
