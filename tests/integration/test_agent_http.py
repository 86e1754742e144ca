"""`lifeline-agent run` against the lab, watched the way systemd and Prometheus watch it: sd_notify
datagrams on a real NOTIFY_SOCKET, `/metrics` and `/healthz` scraped over HTTP, SIGTERM to stop.

The daemon runs inside the parts of the unit's sandbox that a test can set up without systemd: the
unit's system-call allow list (SystemCallFilter=@system-service ~@privileged ~@resources,
SystemCallErrorNumber=EPERM, RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6; loaded with libseccomp
as systemd does) and the kernel's PR_SET_MDWE (MemoryDenyWriteExecute=yes), each where this machine
has it.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import functools
import grp
import http.client
import json
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab import agentkit
from lab.agentkit import AgentProcess, NotifySocket, agent_env, run_once, write_config
from tests.conftest import Kubectl

WATCHDOG_USEC = 2_000_000
wait_for = functools.partial(agentkit.wait_for, interval=0.2)
METRIC_NAMES = (
    "lifeline_certificate_expiry_timestamp_seconds",
    "lifeline_renewals",
    "lifeline_kubeconfig_verified_timestamp_seconds",
    "lifeline_service_link_up",
    "lifeline_cluster_state",
)
# argv: <comma-separated allowed system calls, or ""> <agent> <args...>. Sets PR_SET_MDWE where the
# kernel has it, loads the allow list (everything else fails with EPERM; socket() only for the unit's
# RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6), then becomes the agent.
SANDBOX_EXEC = textwrap.dedent(
    """
    import ctypes, ctypes.util, os, socket, sys
    PR_SET_NO_NEW_PRIVS, PR_SET_MDWE = 38, 65
    SCMP_ACT_ALLOW, SCMP_ACT_ERRNO_EPERM, SCMP_CMP_EQ = 0x7FFF0000, 0x00050001, 4
    FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)

    class ArgCompare(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_MDWE, 1, 0, 0, 0)
    allowed = [name for name in sys.argv[1].split(",") if name]
    if allowed:
        seccomp = ctypes.CDLL(ctypes.util.find_library("seccomp"))
        seccomp.seccomp_init.restype = ctypes.c_void_p
        seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
        seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        seccomp.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCompare)
        ]
        seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
        context = seccomp.seccomp_init(SCMP_ACT_ERRNO_EPERM)

        def allow(name, *conditions):
            number = seccomp.seccomp_syscall_resolve_name(name.encode())
            array = (ArgCompare * max(1, len(conditions)))(*conditions)
            if number >= 0 and seccomp.seccomp_rule_add_array(context, SCMP_ACT_ALLOW, number, len(conditions), array):
                raise SystemExit(f"seccomp_rule_add({name}) failed")

        for name in allowed:
            if name == "socket":
                for family in FAMILIES:
                    allow(name, ArgCompare(0, SCMP_CMP_EQ, int(family), 0))
            else:
                allow(name)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if seccomp.seccomp_load(context) != 0:
            raise SystemExit("seccomp_load failed")
    os.execv(sys.argv[2], sys.argv[2:])
    """
)


@functools.cache
def syscall_group(name: str) -> frozenset[str]:
    """The system calls of a systemd ``@group``, nested groups expanded (``systemd-analyze syscall-filter``)."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    calls: set[str] = set()
    for line in listing.splitlines():
        entry = line.strip()
        if line.startswith("    ") and not entry.startswith("#"):
            calls |= syscall_group(entry) if entry.startswith("@") else {entry}
    return frozenset(calls)


def can_filter_syscalls() -> bool:
    return shutil.which("systemd-analyze") is not None and ctypes.util.find_library("seccomp") is not None


def unit_syscall_allow_list(*added_groups: str) -> str:
    """The unit's SystemCallFilter= (plus a drop-in's groups) as one comma-separated list; "" where it
    cannot be emulated here."""
    if not can_filter_syscalls():
        return ""
    allowed = syscall_group("@system-service") - syscall_group("@privileged") - syscall_group("@resources")
    for group in added_groups:
        allowed |= syscall_group(group)
    return ",".join(sorted(allowed))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def write_http_config(directory: Path, lab: Any, cluster: str, *, metrics_address: str, **extra: str) -> Path:
    return write_config(lab, directory, [cluster], host_id="http-test-host", certificate_lifetime="1h",
                        probe_interval="1s", probe_timeout="2s", metrics_address=metrics_address,
                        timing={"backoff_base": "1s", "backoff_cap": "2s", "csr_timeout": "20s", "api_timeout": "5s"},
                        **extra)  # fmt: skip


def sandboxed(allowed_syscalls: str) -> list[str]:
    """The wrapper that loads the unit's system-call allow list, then becomes the agent."""
    return [sys.executable, "-c", SANDBOX_EXEC, allowed_syscalls]


@pytest.fixture
def agent_config(tmp_path: Path, lab: Any, unique_name: str) -> tuple[Path, str, str]:
    lab.create_local_cluster(unique_name)
    address = f"127.0.0.1:{free_port()}"
    config = write_http_config(tmp_path, lab, unique_name, metrics_address=address)
    return config, unique_name, f"http://{address}"


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture
def agent_log(tmp_path: Path) -> Path:
    return tmp_path / "agent.log"


@pytest.fixture
def agent_process(
    agent_config: tuple[Path, str, str], notify: NotifySocket, lab: Any, agent_log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    config, _, _ = agent_config
    env = agent_env(lab, WATCHDOG_USEC=str(WATCHDOG_USEC))
    agent = AgentProcess(lab, config, agent_log, notify=notify, env=env, wrapper=sandboxed(unit_syscall_allow_list()))
    try:
        yield agent.process
    finally:
        agent.kill()
        agent.stop()
        print(agent_log.read_text(errors="replace")[-5000:])


def scrape(base_url: str) -> dict[str, Any]:
    status, body = http_get(base_url + "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body)}


def status_for_host(base_url: str, host: str) -> int:
    """The status of ``GET /metrics`` sent with the Host header ``host`` (what a DNS-rebound browser sends)."""
    address = base_url.removeprefix("http://")
    connection = http.client.HTTPConnection(address, timeout=5)
    try:
        connection.putrequest("GET", "/metrics", skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def link_up(base_url: str) -> float:
    (sample,) = scrape(base_url)["lifeline_service_link_up"].samples
    return float(sample.value)


def cluster_samples(families: dict[str, Any], name: str, cluster: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for sample in families[name].samples
        if sample.labels.get("cluster") == cluster and not sample.name.endswith("_created")
    }


def test_daemon_notifies_systemd_and_serves_metrics_and_health(
    agent_config: tuple[Path, str, str],
    agent_process: subprocess.Popen[bytes],
    notify: NotifySocket,
    agent_log: Path,
    lab: Any,
    kubectl: Kubectl,
    link_restored: Any,
) -> None:
    config, cluster, base_url = agent_config

    # Not seeded yet (no lifeline/<cluster> secret): the agent serves, but is not healthy.
    def metrics_up() -> bool:
        with contextlib.suppress(OSError):
            return http_get(base_url + "/healthz")[0] in (200, 503)
        return False

    wait_for(metrics_up, 60, "the metrics address to answer")
    status, reason = http_get(base_url + "/healthz")
    assert status == 503, reason
    assert agent_process.poll() is None

    lab.seed_cluster_for_agent(cluster)
    wait_for(lambda: http_get(base_url + "/healthz")[0] == 200, 90, "/healthz 200 after seeding")
    kubeconfig = config.parent / "state" / cluster / "kubeconfig"
    result = kubectl(kubeconfig, "get", "svc", "kubernetes", "-o", "name")
    assert (result.rc, result.stdout.strip()) == (0, "service/kubernetes"), result.stderr

    families = scrape(base_url)
    for name in METRIC_NAMES:
        assert name in families, f"{name} missing from /metrics"
    for name in METRIC_NAMES:
        if name != "lifeline_service_link_up":
            assert cluster_samples(families, name, cluster), f"{name} has no sample for cluster={cluster}"
    (expiry,) = cluster_samples(families, "lifeline_certificate_expiry_timestamp_seconds", cluster).values()
    assert time.time() < expiry <= time.time() + 3600 + 60
    (verified,) = cluster_samples(families, "lifeline_kubeconfig_verified_timestamp_seconds", cluster).values()
    assert verified > time.time() - 120
    states = cluster_samples(families, "lifeline_cluster_state", cluster)
    assert states[(("cluster", cluster), ("state", "ready"))] == 1.0
    assert sum(states.values()) == 1.0
    renewals = cluster_samples(families, "lifeline_renewals", cluster)
    assert renewals[(("cluster", cluster), ("result", "success"))] >= 1.0
    assert [s.value for s in families["lifeline_service_link_up"].samples] == [1.0]
    port = base_url.rsplit(":", 1)[1]
    assert status_for_host(base_url, f"localhost:{port}") == 200
    assert status_for_host(base_url, f"attacker.example:{port}") == 421

    lines = wait_for(lambda: (ls := notify.lines()) and "WATCHDOG=1" in ls and ls, 10, "WATCHDOG=1")
    assert "READY=1" in lines
    assert any(line.startswith("STATUS=") and len(line) > len("STATUS=") for line in lines)
    assert lines.index("READY=1") < len(lines) - 1 - lines[::-1].index("WATCHDOG=1")

    # The link going down is reported, and does not make the offline kubeconfig unhealthy.
    link_restored.cut()
    wait_for(lambda: link_up(base_url) == 0.0, 30, "lifeline_service_link_up 0 after the cut")
    assert http_get(base_url + "/healthz")[0] == 200
    wait_for(lambda: any("link disconnected" in line for line in notify.lines()), 15, "STATUS with the link down")
    link_restored.restore()
    wait_for(lambda: link_up(base_url) == 1.0, 30, "lifeline_service_link_up 1 after the restore")
    assert '"service link disconnected"' in agent_log.read_text()

    # A kubeconfig that vanished is not healthy, whatever the agent believed a moment ago.
    moved = kubeconfig.with_name("kubeconfig.moved")
    kubeconfig.rename(moved)
    status, reason = http_get(base_url + "/healthz")
    moved.rename(kubeconfig)
    assert status == 503 and "kubeconfig missing" in reason, reason

    agent_process.send_signal(signal.SIGTERM)
    assert agent_process.wait(timeout=30) == 0
    wait_for(lambda: "STOPPING=1" in notify.lines(), 5, "STOPPING=1")
    with pytest.raises(OSError):
        urllib.request.urlopen(base_url + "/healthz", timeout=2)

    log_lines = agent_log.read_text().splitlines()
    assert all(line.startswith("{") and json.loads(line)["message"] for line in log_lines)
    key_body = [line for line in (kubeconfig.parent / "key.pem").read_text().splitlines() if "-----" not in line]
    log_text = "\n".join(log_lines)
    assert key_body and not any(line in log_text for line in key_body)
    assert "PRIVATE KEY" not in log_text


@pytest.mark.skipif(not can_filter_syscalls(), reason="needs systemd-analyze and libseccomp to emulate the filter")
def test_operators_drop_in_is_what_lets_the_sandboxed_agent_share_kubeconfigs(
    tmp_path: Path, lab: Any, unique_name: str
) -> None:
    """operators-access.conf adds SystemCallFilter=@chown: without it the agent cannot hand a kubeconfig
    to the operators' group (and installs nothing); with it the kubeconfig is 0640 to that group."""
    group = grp.getgrnam("nogroup" if "nogroup" in {g.gr_name for g in grp.getgrall()} else "daemon")
    lab.create_local_cluster(unique_name)
    lab.seed_cluster_for_agent(unique_name)
    results = {}
    for variant, allowed in (("base", unit_syscall_allow_list()), ("drop-in", unit_syscall_allow_list("@chown"))):
        directory = tmp_path / variant
        directory.mkdir()
        config = write_http_config(directory, lab, unique_name, metrics_address="127.0.0.1:9877",
                                   operators_group=group.gr_name)  # fmt: skip
        completed = run_once(lab, config, "once", timeout=120, wrapper=sandboxed(allowed))
        results[variant] = (completed, config.parent / "state" / unique_name / "kubeconfig")

    base, base_kubeconfig = results["base"]
    assert base.returncode == 1, base.stdout + base.stderr
    assert "Operation not permitted" in base.stderr
    assert not base_kubeconfig.exists()

    shared, shared_kubeconfig = results["drop-in"]
    assert shared.returncode == 0, shared.stdout + shared.stderr
    info = shared_kubeconfig.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, group.gr_gid)
