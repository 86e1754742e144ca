"""The real-backend tests share the session's ``real_lab`` (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def real_link_restored(real_lab: Any) -> Iterator[Any]:
    try:
        yield real_lab.link
    finally:
        real_lab.link.restore()
