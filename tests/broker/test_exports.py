"""The public names of every broker module exist and are listed in isort order.

isort order, as in `tracker.broker.base`, lists constants first, then
classes, then functions, each group alphabetically.
"""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "tracker.broker",
    "tracker.broker.iggy",
    "tracker.broker.local",
    "tracker.broker.noop",
    "tracker.broker.producer",
    "tracker.broker.settings",
]


def isort_key(name: str) -> tuple[int, str]:
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("name", MODULES)
def test_module_exports_sorted_and_present(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__

    assert exported, f"{name} exports nothing"
    assert list(exported) == sorted(exported, key=isort_key)
    for public in exported:
        assert hasattr(module, public), f"{name}.__all__ lists missing {public}"
