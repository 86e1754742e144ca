"""``python -m lab drill`` as an operator runs it, against a detached lab (``python -m lab up --detach``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.drill import TLS_HANDSHAKE_TIMEOUT, UNAUTHORIZED
from tests.conftest import REAL_BACKEND


@pytest.mark.parametrize("control_plane", ["emulated", REAL_BACKEND])
def test_python_m_lab_drill_against_a_running_lab(tmp_path: Path, control_plane: str) -> None:
    """The drill alone, as an operator runs it: a detached lab, its kubeconfigs and its link, real kubectl."""
    import subprocess
    import sys

    from lab.controlplane.real import unavailable_reason
    from tests.conftest import REPO

    if control_plane == "real" and (reason := unavailable_reason()) is not None:
        pytest.skip(f"real control plane unavailable: {reason}")

    def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lab", "--state-dir", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=180, cwd=REPO, check=False)  # fmt: skip

    started = lab_cli("up", "--detach", "--activation-delay", "0.2", "--control-plane", control_plane)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        drill = lab_cli("drill")
        status = json.loads(lab_cli("status", "--json").stdout)
    finally:
        lab_cli("down")
    assert drill.returncode == 0, drill.stdout + drill.stderr
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in drill.stdout.splitlines() if line.startswith("| ")]  # fmt: skip
    assert len(rows) == 4
    assert rows[1][4] == f"`{TLS_HANDSHAKE_TIMEOUT}`"
    assert rows[2][4] == f"`{UNAUTHORIZED}`"
    assert rows[3][2] == "X.509 certificate"
    assert rows[3][4].startswith("`kubernetes ClusterIP 172.20.0.1 <none> 443/TCP")
    assert all(row[3].startswith("`kubernetes ClusterIP") for row in rows[1:])
    assert "drill PASSED" in drill.stdout
    assert status["link"] == "up", "the drill restores the lab's link"
