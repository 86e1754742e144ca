"""Shared fixtures: one lab per test process, kubectl, and a guard that restores the service link.

No test may reach real AWS: before anything is imported, the AWS SDK is pointed at a closed loopback
port with dummy credentials. Code that talks to the lab passes the lab's endpoint explicitly.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
UNROUTABLE_AWS_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused

os.environ["AWS_ENDPOINT_URL"] = UNROUTABLE_AWS_ENDPOINT
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-west-2"
os.environ["AWS_REGION"] = "us-west-2"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_name, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"
# kubectl's discovery cache (keyed by host:port) decides how it words a 401; a cache left by an earlier
# run whose server had the same port would make that depend on history. One fresh cache per process.
os.environ["KUBECACHEDIR"] = tempfile.mkdtemp(prefix="kubectl-cache-")
atexit.register(shutil.rmtree, os.environ["KUBECACHEDIR"], ignore_errors=True)

# Renewal tests need certificates that expire in under a minute.
LAB_MIN_EXPIRATION_SECONDS = 30
LAB_ACTIVATION_DELAY = 0.5


class KubectlResult(NamedTuple):
    rc: int
    stdout: str
    stderr: str


Kubectl = Callable[..., KubectlResult]


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A started Lab shared by every test of this process; make your own cluster names (``unique_name``)."""
    from lab.lab import Lab

    the_lab = Lab(
        tmp_path_factory.mktemp("lab"),
        activation_delay=LAB_ACTIVATION_DELAY,
        min_expiration_seconds=LAB_MIN_EXPIRATION_SECONDS,
    )
    the_lab.start()
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture
def real_lab(lab: object) -> Iterator[object]:
    """The session's lab, creating the clusters of this test on a real control plane (kube-apiserver +
    kube-controller-manager from ``../shared/kube``, etcd); skips, with the reason, where they are missing.
    Mark the test ``xdist_group("real-lab")`` so that one worker runs every real-backend test."""
    from lab.controlplane.real import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"real control plane unavailable: {reason}")
    previous = lab.use_control_plane("real")  # type: ignore[attr-defined]
    try:
        yield lab
    finally:
        lab.use_control_plane(previous)  # type: ignore[attr-defined]


REAL_BACKEND = pytest.param("real", marks=pytest.mark.xdist_group("real-lab"), id="real")
both_backends = pytest.mark.parametrize("backend", ["emulated", REAL_BACKEND], indirect=True)


def lab_of_backend(lab: object, backend: str, request: pytest.FixtureRequest) -> object:
    """Install in a module as ``lab = pytest.fixture(name="lab")(lab_of_backend)``: there, ``lab`` is the
    session's lab, creating its clusters on the real control plane for the ``[real]`` run of ``@both_backends``."""
    return request.getfixturevalue("real_lab") if backend == "real" else lab


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The control-plane backend of a test marked ``@both_backends``; ``emulated`` otherwise."""
    return str(getattr(request, "param", "emulated"))


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A cluster name unique in the session: ``<test name prefix>-<random>``."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:40].rstrip("-")
    return f"{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory other users can reach (pytest's ``tmp_path`` is 0700 to root), for work done as another user;
    skips unless this process is root."""
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    directory = Path(tempfile.mkdtemp(prefix="lifeline-shared-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def nobodys_dir(shared_tmp: Path) -> Path:
    """A directory in ``shared_tmp`` that belongs to ``nobody`` (65534), mode 0700: theirs to write, nobody else's."""
    directory = shared_tmp / "nobodys"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    return directory


@pytest.fixture
def link_restored(lab: object) -> Iterator[object]:
    """The lab's service link, restored after the test whatever it did."""
    link = lab.link  # type: ignore[attr-defined]
    try:
        yield link
    finally:
        link.restore()


@dataclass
class SilentEndpoint:
    """``url``: a loopback port that accepts connections and never answers (a service behind a dying link)."""

    url: str
    accepted: list[socket.socket] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len(self.accepted)


@pytest.fixture
def silent_endpoint() -> Iterator[SilentEndpoint]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    endpoint = SilentEndpoint(f"http://127.0.0.1:{server.getsockname()[1]}")
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                endpoint.accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield endpoint
    stop.set()
    thread.join()
    for connection in endpoint.accepted:
        connection.close()
    server.close()


def run_kubectl(kubeconfig: Path | str, *args: str, timeout: float = 60.0) -> KubectlResult:
    """Run the venv's kubectl (v1.37) with ``kubeconfig``; never raises on a kubectl failure."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    try:
        completed = subprocess.run(
            [str(KUBECTL), f"--kubeconfig={kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return KubectlResult(-1, _text(exc.stdout), _text(exc.stderr) + f"\n(kubectl timed out after {timeout}s)")
    return KubectlResult(completed.returncode, completed.stdout, completed.stderr)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@pytest.fixture(scope="session")
def kubectl() -> Kubectl:
    """``kubectl(kubeconfig, *args, timeout=60) -> (rc, stdout, stderr)``."""
    assert KUBECTL.exists(), f"{KUBECTL} missing: run make install"
    return run_kubectl
