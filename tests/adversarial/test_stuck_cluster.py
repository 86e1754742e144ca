"""A hung cluster thread is noticed (issue 9, case 4): the real ``lifeline-agent run`` with a systemd watchdog.

The Region answers ``GetSecretValue`` one byte every half second: the SDK's timeout is per read, so the
cluster's reconcile step hangs. Past its bound (CSR wait + a step's API calls + two link probes) the
daemon stops sending ``WATCHDOG=1`` (systemd would restart it) and publishes the cluster ``failed`` with
where its thread is stuck and for how long; once the answer completes, the loop moves on, the
cluster becomes ready and the pings come back.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lab import agentkit
from lab.agentkit import AgentProcess, NotifySocket, read_status, seeded_cluster, write_config

wait_for = functools.partial(agentkit.wait_for, interval=0.2)
WATCHDOG_USEC = 2_000_000  # a ping every second
CSR_TIMEOUT, API_TIMEOUT, PROBE_TIMEOUT = 2.0, 1.0, 1.0
STUCK = re.compile(r"stuck in \w+ \(\w+\.py:\d+\) for (\d+) s \(a step may take (\d+) s\)")


class SlowRegion:
    """An HTTP proxy to the lab's Region; while :attr:`drip` is set, ``GetSecretValue`` answers are dripped."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.drip = True
        self.dripped = 0
        self._stopping = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
                """Quiet."""

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, payload = owner.relay(self.command, self.path, list(self.headers.items()), body)
                head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
                answer = (head + f"Content-Length: {len(payload)}\r\n\r\n").encode("latin-1") + payload
                if "GetSecretValue" in (self.headers.get("X-Amz-Target") or "") and owner.drip:
                    owner.dripped += 1
                    self.close_connection = True
                    while answer and owner.drip and not owner._stopping.is_set():
                        self.wfile.write(answer[:1])
                        self.wfile.flush()
                        answer = answer[1:]
                        owner._stopping.wait(0.5)
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def relay(self, method: str, path: str, headers: list[tuple[str, str]],
              body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        connection = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)  # the signed Host header too, unchanged
            connection.endheaders(body)
            response = connection.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")]  # fmt: skip
            return response.status, kept, payload
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def slow_region(lab: Any) -> Iterator[SlowRegion]:
    region = SlowRegion(lab.outpost_region_url)
    yield region
    region.stop()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def pings_after(notify: NotifySocket, moment: float) -> int:
    return sum(when > moment and "WATCHDOG=1" in message.splitlines() for when, message in list(notify.messages))


def test_a_stuck_cluster_thread_stops_the_watchdog_and_is_published_failed(
    lab: Any, tmp_path: Path, slow_region: SlowRegion, notify: NotifySocket
) -> None:
    from lifeline_agent.kubeconfig import atomic_write, build_kubeconfig, dump_kubeconfig

    cluster = seeded_cluster(lab, "stuck")
    # IAM tokens presigned for this proxy are not accepted by the lab's authenticator: bootstrap with a certificate.
    control_plane = lab.control_plane(cluster)
    cert, key = control_plane.ca.issue_client_cert("bootstrap:stuck", ["lifeline:agents"])
    bootstrap = tmp_path / "bootstrap.kubeconfig"
    atomic_write(bootstrap, dump_kubeconfig(build_kubeconfig(
        cluster_name=cluster, server=control_plane.endpoint, ca_pem=control_plane.ca_pem, user_name="bootstrap",
        client_cert_pem=cert, client_key_pem=key)))  # fmt: skip
    config = write_config(lab, tmp_path, [cluster], aws_endpoint_url=slow_region.url, probe_interval="1s",
                          probe_timeout=f"{PROBE_TIMEOUT:g}s",
                          cluster={cluster: {"bootstrap_kubeconfig": str(bootstrap)}},
                          timing={"csr_timeout": CSR_TIMEOUT, "api_timeout": API_TIMEOUT})  # fmt: skip
    env = agentkit.agent_env(lab, sdk_endpoint=False, WATCHDOG_USEC=str(WATCHDOG_USEC))
    agent = AgentProcess(lab, config, tmp_path / "agent.log", notify=notify, env=env)
    state_dir = tmp_path / "state"
    try:
        wait_for(lambda: pings_after(notify, 0) >= 2, 30, "WATCHDOG=1 while the cluster's first step runs")
        status = wait_for(lambda: (s := read_status(state_dir, cluster)).get("state") == "failed"
                          and STUCK.search(s.get("last_error") or "") and s, 90, "the cluster published stuck")
        seen = time.monotonic()
        assert slow_region.dripped >= 1
        match = STUCK.search(status["last_error"])
        assert match is not None
        bound = CSR_TIMEOUT + 12 * API_TIMEOUT + 2 * PROBE_TIMEOUT
        assert int(match.group(2)) == bound and int(match.group(1)) >= bound, status["last_error"]

        time.sleep(4 * WATCHDOG_USEC / 2_000_000)  # four ping intervals
        assert pings_after(notify, seen) == 0, "WATCHDOG=1 sent while a cluster thread is stuck"
        assert agent.alive()
        statuses = [line for line in notify.lines() if line.startswith("STATUS=")]
        assert any("1 failed" in line for line in statuses), statuses
        errors = [r for r in agent.records() if "the systemd watchdog is no longer pinged" in r.get("message", "")]
        assert len(errors) == 1 and errors[0].get("cluster") == cluster, errors

        released = time.monotonic()
        slow_region.drip = False  # the answer completes: the step goes on and bootstraps
        wait_for(lambda: read_status(state_dir, cluster).get("state") == "ready", 90, "ready after the release")
        wait_for(lambda: pings_after(notify, released) >= 1, 15, "WATCHDOG=1 again once the thread moves")
        assert (state_dir / cluster / "kubeconfig").is_file()
    finally:
        agent.stop()
        print((tmp_path / "agent.log").read_text(errors="replace")[-4000:])
