"""One lab whose control planes are real kube-apiserver + kube-controller-manager (``../shared/kube``) and
etcd, shared by the tests of this process; every test here skips, with the reason, where they are missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LAB_ACTIVATION_DELAY


@pytest.fixture(scope="session")
def real_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from lab.controlplane.real import unavailable_reason
    from lab.lab import Lab

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"real control plane unavailable: {reason}")
    the_lab = Lab(tmp_path_factory.mktemp("real-lab"), activation_delay=LAB_ACTIVATION_DELAY,
                  control_plane="real", signing_duration_seconds=3600)  # fmt: skip
    the_lab.start()
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture
def real_link_restored(real_lab: Any) -> Iterator[Any]:
    try:
        yield real_lab.link
    finally:
        real_lab.link.restore()
