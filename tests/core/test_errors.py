"""The exception tree of the extension and its re-export from tracker.errors."""

from __future__ import annotations

import pytest

import tracker.errors
from tracker import _core

NATIVE_PARENTS = {
    "TrackerError": Exception,
    "CodecError": _core.TrackerError,
    "SignatureError": _core.CodecError,
    "SignatureExpired": _core.SignatureError,
    "DecryptionError": _core.CodecError,
    "UnknownKeyId": _core.DecryptionError,
    "EventError": _core.CodecError,
    "BatchError": _core.CodecError,
    "RecordBatchError": _core.CodecError,
    "QueryStringError": _core.CodecError,
}


@pytest.mark.parametrize(("name", "parent"), sorted(NATIVE_PARENTS.items()))
def test_native_exception_parent(name: str, parent: type) -> None:
    native = getattr(_core, name)
    assert issubclass(native, parent)
    assert native.__module__ == "tracker._core"


def test_codec_error_is_value_error() -> None:
    assert issubclass(_core.CodecError, _core.TrackerError)
    assert issubclass(_core.CodecError, ValueError)
    assert issubclass(_core.SignatureExpired, ValueError)


@pytest.mark.parametrize("name", sorted(NATIVE_PARENTS))
def test_errors_module_reexports_native(name: str) -> None:
    assert getattr(tracker.errors, name) is getattr(_core, name)
    assert name in tracker.errors.__all__


def test_errors_all_names_exist() -> None:
    assert tracker.errors.__all__ == sorted(tracker.errors.__all__)
    for name in tracker.errors.__all__:
        assert issubclass(getattr(tracker.errors, name), _core.TrackerError)


def test_field_attribute_on_raised_errors(limits: _core.EventLimits) -> None:
    with pytest.raises(_core.EventError) as event_error:
        _core.build_event(
            "bad type!",
            [],
            ip="",
            user_agent="",
            referer="",
            accept_language="",
            request_path="",
            request_host="",
            limits=limits,
        )
    assert event_error.value.field == "event_type"
    assert _core.EventError("constructed by hand").field == ""
    assert _core.BatchError("constructed by hand").field == ""


def test_module_constants() -> None:
    assert _core.SIGNATURE_HEX_LEN == 64
    assert _core.MAX_KEY_PREFIX_LEN == 32
    assert _core.__version__.count(".") == 2
    import tracker

    assert tracker.__version__ == _core.__version__
