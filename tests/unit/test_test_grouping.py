"""``make test`` relies on ``--dist loadgroup``: one worker builds the demo, and one runs every real control plane.

pytest 9.2 with pytest-xdist 3.8.0 drops the groups without a word (pytest-dev/pytest-xdist#1386); this
runs the pinned pair on two small modules and checks that a group stays on one worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GROUPED = '''
import os, time, pytest
pytestmark = pytest.mark.xdist_group("together")

@pytest.fixture(scope="module")
def built():
    with open(os.environ["GROUPING_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")

@pytest.mark.parametrize("i", range(6))
def test_grouped(built, i):
    time.sleep(0.05)
'''
UNGROUPED = '''
import time, pytest

@pytest.mark.parametrize("i", range(12))
def test_alone(i):
    time.sleep(0.05)
'''


def test_an_xdist_group_runs_on_one_worker_and_its_module_fixture_is_built_once(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_ungrouped.py").write_text(UNGROUPED)
    log = tmp_path / "built.log"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider",
         str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={"GROUPING_LOG": str(log), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "18 passed" in done.stdout
    assert len(log.read_text().split()) == 1, "the group was split over the workers"
