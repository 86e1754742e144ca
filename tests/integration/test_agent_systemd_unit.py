"""The agent's systemd unit: `systemd-analyze verify` accepts it, `systemd-analyze security` rates it
1.5 or lower, it bounds memory and tasks, and the agent's Python stack runs under the unit's
MemoryDenyWriteExecute=yes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "agent" / "systemd" / "lifeline-agent.service"
AGENT_BIN = Path(sys.executable).with_name("lifeline-agent")
MAX_EXPOSURE = 1.5


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], capture_output=True, timeout=300, check=False)
        found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed and `apt-get install -y systemd` was not possible here")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"systemd (\d+)", version)
    if not match or int(match.group(1)) < 252:
        pytest.skip(f"systemd-analyze security --offline needs systemd >= 252, found: {version.splitlines()[0]}")
    return found


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


OPERATORS_DROP_IN = UNIT.with_name("operators-access.conf")


@pytest.fixture(params=["unit", "unit+operators-access.conf"])
def installable_unit(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart is this environment's real `lifeline-agent` (verify checks it
    exists), alone or with the operators' drop-in beside it (systemd-analyze reads `<unit>.d/*.conf`)."""
    assert AGENT_BIN.is_file(), f"{AGENT_BIN} missing: install the agent (pip install -e ./agent)"
    text = UNIT.read_text().replace("/usr/local/bin/lifeline-agent", str(AGENT_BIN))
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    if request.param.endswith("operators-access.conf"):
        drop_ins = tmp_path / f"{UNIT.name}.d"
        drop_ins.mkdir()
        shutil.copy(OPERATORS_DROP_IN, drop_ins / OPERATORS_DROP_IN.name)
    return copy


def test_unit_declares_the_service_contract() -> None:
    settings = unit_settings()
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "60",
        "User": "lifeline",
        "StateDirectory": "lifeline",
        "StateDirectoryMode": "0700",
        "ConfigurationDirectory": "lifeline",
        "Restart": "on-failure",
        "UMask": "0077",
        "ExecStart": "/usr/local/bin/lifeline-agent run --config /etc/lifeline/agent.toml",
        "MemoryDenyWriteExecute": "yes",
        "IPAddressDeny": "any",
        "MemoryMax": "256M",
        "MemorySwapMax": "0",
        "TasksMax": "128",
    }
    assert {key: settings.get(key, [None])[-1] for key in expected} == expected
    assert "DynamicUser" not in settings
    environment = " ".join(settings["Environment"]).split()
    assert "MALLOC_ARENA_MAX=2" in environment  # what bench/footprint.py measures the agent with


def test_systemd_analyze_verify_accepts_the_unit(systemd_analyze: str, installable_unit: Path) -> None:
    result = subprocess.run(
        [systemd_analyze, "verify", str(installable_unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if installable_unit.name in line]
    assert complaints == []


def test_systemd_analyze_security_rates_the_unit_at_most_1_5(systemd_analyze: str, installable_unit: Path) -> None:
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=true", "--no-pager", str(installable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for lifeline-agent\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure of {installable_unit.name}: {exposure}")
    assert exposure <= MAX_EXPOSURE, result.stdout
    with_drop_in = installable_unit.with_name(f"{UNIT.name}.d").is_dir()
    assert ("@privileged is included" in result.stdout) == with_drop_in, "the drop-in was not (only) read"


MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, mmap, pkgutil, importlib, ssl
    PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise SystemExit(77)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        raise SystemExit("W+X mapping still allowed: the probe proves nothing")
    except PermissionError:
        pass
    import lifeline_agent
    for module in pkgutil.iter_modules(lifeline_agent.__path__):
        if module.name != "__main__":
            importlib.import_module("lifeline_agent." + module.name)
    import boto3, kubernetes.client, yaml
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    ec.generate_private_key(ec.SECP256R1())
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="us-west-2").client(
        "sts", endpoint_url="http://127.0.0.1:9"
    )
    kubernetes.client.CoreV1Api(kubernetes.client.ApiClient())
    ssl.create_default_context()
    print("ok")
    """
)


def test_agent_stack_runs_with_memory_deny_write_execute() -> None:
    """The kernel's PR_SET_MDWE is what MemoryDenyWriteExecute=yes enforces; run the agent's imports under it."""
    result = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=120)
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3): cannot emulate MemoryDenyWriteExecute=yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    from lifeline_agent.config import load_config

    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    config = load_config(REPO / "agent" / "examples" / "agent.toml", machine_id_path=machine_id)
    assert [cluster.name for cluster in config.clusters] == ["edge-1"]
    assert (config.key_type, config.certificate_lifetime, config.metrics_address) == (
        "ecdsa-p256",
        7 * 86400,
        "127.0.0.1:9877",
    )
    assert config.host_id == "0123456789abcdef0123456789abcdef"
