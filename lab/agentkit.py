"""The real agent against the lab, one implementation for the benchmarks, the tests and the demo.

Lab start, seeded clusters, agent configurations, the agent's environment, ``lifeline-agent`` commands and
the agent as a real ``lifeline-agent run`` process (JSON logs in a file, sd_notify datagrams on a socket
this process owns), /proc readings, and a kubeconfig reader that checks every load.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
AGENT = VENV_BIN / "lifeline-agent"
KUBECTL = VENV_BIN / "kubectl"
RENEWED = "installed a new kubeconfig"


def isolate_from_aws() -> None:
    """No SDK call of this process may reach AWS: a closed loopback port and dummy credentials by default."""
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"] = "us-west-2"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)


@contextmanager
def started_lab(state_dir: Path, **options: Any) -> Iterator[Any]:
    """A started :class:`lab.lab.Lab` (30 s minimum certificate expiry, so renewals can be forced)."""
    from lab.lab import Lab

    options.setdefault("activation_delay", 0.2)
    options.setdefault("min_expiration_seconds", 30)
    lab = Lab(state_dir, **options)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


def seeded_cluster(lab: Any, prefix: str = "bench") -> str:
    """A local cluster with its ``lifeline/<name>`` secret and RBAC, as the Region workflow leaves it."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    lab.create_local_cluster(name)
    lab.seed_cluster_for_agent(name)
    return name


def write_config(lab: Any, directory: Path, clusters: list[str], *, region: str = "us-west-2", **extra: Any) -> Path:
    """``directory/agent.toml`` for ``lab``: its Region through the service link, fast probes and back-off.

    Keyword arguments are settings (they override the defaults; ``None`` leaves a setting out, e.g.
    ``aws_endpoint_url=None``: the SDK's own endpoint settings apply); ``timing`` is merged over the fast timings
    and ``cluster`` maps a cluster name to its ``[cluster."<name>"]`` table.
    """
    directory.mkdir(parents=True, exist_ok=True)
    timing = {"backoff_base": 1, "backoff_cap": 5, "csr_timeout": 20, "api_timeout": 5, "min_remaining_lifetime": 10,
              **extra.pop("timing", {})}
    cluster_tables: dict[str, dict[str, Any]] = extra.pop("cluster", {})
    settings = {
        "region": region,
        "clusters": clusters,
        "state_dir": str(directory / "state"),
        "host_id": f"host-{uuid.uuid4().hex[:8]}",
        "aws_endpoint_url": lab.outpost_region_url,
        "probe_timeout": "2s",  # the agent's default: with 1 s a busy test machine once took longer through the relay
        "metrics_address": "127.0.0.1:0",
        **extra,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items() if value is not None]
    lines.append("[timing]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in timing.items()]
    for name, table in cluster_tables.items():
        lines.append(f'[cluster."{name}"]')
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_env(lab: Any, *, region: str = "us-west-2", sdk_endpoint: bool = True, **extra: str) -> dict[str, str]:
    """The agent principal's credentials, no other AWS settings of this process; with ``sdk_endpoint`` the lab's
    Region (through the link) is also the SDK default endpoint, else the agent has only its configured one."""
    principal = lab.agent_principal
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=principal.access_key_id, AWS_SECRET_ACCESS_KEY=principal.secret_access_key,
               AWS_REGION=region, AWS_DEFAULT_REGION=region, AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)  # fmt: skip
    if sdk_endpoint:
        env["AWS_ENDPOINT_URL"] = lab.outpost_region_url
    env.update(extra)
    return env


@contextmanager
def agent_credentials(lab: Any) -> Iterator[None]:
    """This process's environment as the agent's (for an in-process :class:`ClusterAgent`)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for name in saved:
        del os.environ[name]
    os.environ.update({k: v for k, v in agent_env(lab).items() if k.startswith("AWS_")})
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(saved)


def run_once(lab: Any, config: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
             wrapper: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``[wrapper...] lifeline-agent <args or once> --config <config>`` in ``env`` (default :func:`agent_env`)."""
    command = [*wrapper, str(AGENT), *(args or ("once",)), "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, env=agent_env(lab) if env is None else env,
                          timeout=timeout, check=False)  # fmt: skip


class NotifySocket:
    """A NOTIFY_SOCKET this process owns: every datagram, with its arrival time (monotonic)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def lines(self) -> list[str]:
        """Every line of every datagram so far, in arrival order."""
        return [line for _, message in list(self.messages) for line in message.splitlines()]

    def first(self, assignment: str) -> float | None:
        """When a datagram with the line ``assignment`` (e.g. ``READY=1``) first arrived."""
        for when, message in list(self.messages):
            if assignment in message.splitlines():
                return when
        return None

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()


SERVING_METRICS = "serving /healthz and /metrics"


def metric_counts(address: str, family: str) -> dict[str, float]:
    """``family``'s counters by result, from a running agent's own /metrics at ``address``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{address}/metrics", timeout=5) as response:  # noqa: S310 - loopback
        families = text_string_to_metric_families(response.read().decode())
    return {s.labels["result"]: s.value for f in families if f.name == family
            for s in f.samples if s.name.endswith("_total")}  # fmt: skip


class AgentProcess:
    """``lifeline-agent run`` as a child process; its JSON log lines go to ``log_path``."""

    def __init__(self, lab: Any, config: Path, log_path: Path, *, notify: NotifySocket | None = None,
                 preexec: Callable[[], None] | None = None, env: dict[str, str] | None = None,
                 wrapper: Sequence[str] = ()) -> None:  # fmt: skip
        """``env`` defaults to :func:`agent_env`; ``notify`` adds its NOTIFY_SOCKET; ``wrapper`` runs the agent."""
        self.lab, self.config, self.log_path = lab, config, log_path
        self.env = agent_env(lab) if env is None else dict(env)
        if notify:
            self.env["NOTIFY_SOCKET"] = str(notify.path)
        self._log = log_path.open("ab")
        self.started, self.started_at = time.monotonic(), time.time()
        self.process = subprocess.Popen([*wrapper, str(AGENT), "run", "--config", str(config)], stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                                        preexec_fn=preexec)  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by SIGKILL
        return records

    def renewals(self) -> int:
        return sum(r.get("message") == RENEWED for r in self.records())

    def metrics_address(self) -> str | None:
        """Where the agent serves /healthz and /metrics (its log says so once it listens), or None yet."""
        return next((r["address"] for r in self.records() if r.get("message") == SERVING_METRICS), None)

    def renew_now(self) -> bool:
        """SIGUSR1 (every cluster renews now, whatever its deadline) once the daemon can take it: after it
        published a status (its signal handlers are in place by then; before, SIGUSR1 would end it)."""
        statuses = (self.config.parent / "state").glob("*/status.json")
        if not self.alive() or not any(path.stat().st_mtime >= self.started_at for path in statuses):
            return False
        os.kill(self.pid, signal.SIGUSR1)
        return True

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a power cut would end it."""
        if self.alive():
            self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 30) -> int:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def read_status(state_dir: Path, cluster: str) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / cluster / "status.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def kubectl(kubeconfig: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)  # fmt: skip


# --- /proc readings -----------------------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- a reader of the installed kubeconfig ---------------------------------------------------------------


class UnusableKubeconfig(AssertionError):
    """A reader found the installed kubeconfig torn, unparsable or with a certificate that is not its key's."""


def check_kubeconfig(data: bytes) -> bytes:
    """Parse ``data`` with the agent's loader; the client certificate must belong to the key. Returns the cert."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from lifeline_agent.kube import from_kubeconfig
    from lifeline_agent.kubeconfig import load_kubeconfig

    try:
        _, credential = from_kubeconfig(load_kubeconfig(data))
        assert credential.cert_pem is not None and credential.key_pem is not None
        certificate = x509.load_pem_x509_certificate(credential.cert_pem)
        key = serialization.load_pem_private_key(credential.key_pem, None)
    except Exception as exc:  # noqa: BLE001 - any failure to use it is the finding
        raise UnusableKubeconfig(f"{type(exc).__name__}: {exc} ({len(data)} bytes)") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificate.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(encoding, public):
        raise UnusableKubeconfig("the client certificate is not for the client key")
    return bytes(credential.cert_pem)


def main_reader(argv: list[str]) -> int:
    """``python -m lab.agentkit <stop-file> <kubectl-every> <kubeconfig>...``: reads the kubeconfigs in turn
    until ``stop-file`` exists (every ``kubectl-every`` reads also a real ``kubectl`` call); JSON summary out,
    the count so far in ``<stop-file>.reads``."""
    stop, every, paths = Path(argv[0]), int(argv[1]), [Path(a) for a in argv[2:]]
    progress = stop.with_name(stop.name + ".reads")
    reads, kubectl_calls, problems = 0, 0, []
    proven: dict[bytes, bytes] = {}  # content already checked in full -> its certificate
    while not stop.exists():
        path = paths[reads % len(paths)]
        try:
            data = path.read_bytes()
            if data not in proven:  # a torn file differs from every proven one, so it is always checked
                proven[data] = check_kubeconfig(data)
        except (UnusableKubeconfig, OSError) as exc:
            problems.append(str(exc))
        reads += 1
        if reads % 500 == 0:
            progress.write_text(str(reads))
        if every and reads % every == 0:
            result = kubectl(path, "get", "--raw", "/version", timeout=30)
            kubectl_calls += 1
            if result.returncode != 0:
                problems.append(f"kubectl: {result.stderr.strip()[:300]}")
        time.sleep(0.001)  # leave the CPU to the agent and the lab; still about 800 reads a second
    certificates = set(proven.values())
    print(json.dumps({"reads": reads, "kubectl_calls": kubectl_calls, "problems": problems[:20],
                      "problem_count": len(problems), "certificates_seen": len(certificates)}))  # fmt: skip
    return 0


class ReaderProcess:
    """:func:`main_reader` in a child process (no GIL shared with the lab), stopped with a file."""

    def __init__(self, kubeconfigs: list[Path], stop_file: Path, kubectl_every: int = 200) -> None:
        self.stop_file = stop_file
        argv = [sys.executable, "-m", "lab.agentkit", str(stop_file), str(kubectl_every), *map(str, kubeconfigs)]
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)

    def reads(self) -> int:
        """Reads so far (updated every 500 reads)."""
        try:
            return int(self.stop_file.with_name(self.stop_file.name + ".reads").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        self.stop_file.touch()
        out, _ = self.process.communicate(timeout=timeout)
        return dict(json.loads(out))


if __name__ == "__main__":
    sys.exit(main_reader(sys.argv[1:]))
