"""The lab's AWS Region: moto in server mode on loopback, with the lab's patches applied."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import MotoRequestHandler

from lab.region import moto_patches
from lab.region.lambda_sandbox import Sandboxes
from lab.region.moto_patches import ACCOUNT_ID, Deprovisioner, Provisioner, RegionHooks

REGION_NAME = "us-west-2"
_running_lock = threading.Lock()
_running: Region | None = None


class _NoDelayHandler(MotoRequestHandler):
    # werkzeug writes headers and body separately: with Nagle on, the body waits for the client's delayed ACK.
    disable_nagle_algorithm = True


class RegionError(RuntimeError):
    """The Region cannot start (one per process) or a lab-only operation failed."""


class Region:
    """moto on ``127.0.0.1:<port>``; ``url`` is the direct address (Region-side callers)."""

    def __init__(
        self,
        *,
        provisioner: Provisioner | None = None,
        deprovisioner: Deprovisioner | None = None,
        activation_delay: float = 0.0,
        host: str = "127.0.0.1",
        lambda_dir: Path | None = None,
    ) -> None:
        self.hooks = RegionHooks(
            activation_delay=activation_delay, provisioner=provisioner, deprovisioner=deprovisioner
        )
        self.host = host
        self.lambda_dir = lambda_dir  # the functions' unpacked code while running, and their logs (kept)
        self.port = 0
        self._server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def account_id(self) -> str:
        return ACCOUNT_ID

    @property
    def name(self) -> str:
        return REGION_NAME

    def start(self) -> None:
        global _running
        with _running_lock:
            if _running is not None:
                raise RegionError("a lab Region is already running in this process (moto state is per process)")
            _running = self
        try:
            moto_patches.apply_all(self.hooks)
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            self._server = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
            self._server.start()
            # moto builds its server in its own thread; nothing can connect before the port is known (below).
            self._server._server.RequestHandlerClass = _NoDelayHandler  # type: ignore[union-attr]
            self.port = self._server.get_host_and_port()[1]
            self.hooks.region_url = self.url
            # Step Functions' interpreter calls Lambda and other services at localhost:$MOTO_PORT.
            os.environ["MOTO_PORT"] = str(self.port)
            lambda_dir = self.lambda_dir or Path(tempfile.mkdtemp(prefix="lab-lambda-"))
            self.hooks.sandboxes = Sandboxes(lambda_dir, {
                "AWS_ENDPOINT_URL": self.url, "AWS_REGION": REGION_NAME, "AWS_DEFAULT_REGION": REGION_NAME,
                # The function's execution role's credentials, in AWS; moto accepts any.
                "AWS_ACCESS_KEY_ID": "lambda-role-access-key", "AWS_SECRET_ACCESS_KEY": "lambda-role-secret-key",
            })  # fmt: skip
        except BaseException:
            with _running_lock:
                _running = None
            raise

    def set_lambda_environment(self, name: str, value: str) -> None:
        """A lab-only variable every Lambda function sees (not in the template a user deploys)."""
        if self.hooks.sandboxes is None:
            raise RegionError("the lab Region is not started")
        self.hooks.sandboxes.extra_environment[name] = value

    def stop(self) -> None:
        global _running
        sandboxes, self.hooks.sandboxes = self.hooks.sandboxes, None
        if sandboxes is not None:
            sandboxes.close()
            shutil.rmtree(sandboxes.root if self.lambda_dir is None else sandboxes.root / "code", ignore_errors=True)
        if self._server is not None:
            self._reset_state()
            self._server.stop()
            self._server = None
        with _running_lock:
            if _running is self:
                _running = None

    def _reset_state(self) -> None:
        from moto.core.base_backend import BackendDict
        from moto.core.model_instances import reset_model_data

        BackendDict.reset()
        reset_model_data()
        with self.hooks.lock:
            self.hooks.events.clear()
            self.hooks.delivered.clear()

    def events(self, detail_type: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
        """Events put on any bus of this Region (newest last), optionally filtered."""
        with self.hooks.lock:
            recorded = list(self.hooks.events)
        return [
            event
            for event in recorded
            if (detail_type is None or event["detail-type"] == detail_type)
            and (source is None or event["source"] == source)
        ]

    def delivered_events(self) -> list[dict[str, Any]]:
        """EventBridge deliveries to Step Functions targets: rule, target, executionArn, input."""
        with self.hooks.lock:
            return list(self.hooks.delivered)

    def eks_cluster(self, name: str) -> Any:
        """moto's EKS cluster object (for lab-only changes such as health issues)."""
        from moto.eks.models import eks_backends

        clusters = eks_backends[ACCOUNT_ID][REGION_NAME].clusters
        if name not in clusters:
            raise RegionError(f"no EKS cluster {name!r} in the lab Region")
        return clusters[name]

    def set_health_issues(self, name: str, issues: list[dict[str, Any]]) -> None:
        """Inject ``health.issues`` (code, message, resourceIds); a CREATING cluster stays CREATING."""
        cluster = self.eks_cluster(name)
        cluster.health = {"issues": [dict(issue) for issue in issues]}

    def set_activation_delay(self, seconds: float) -> None:
        """Delay from CreateCluster to ACTIVE for clusters created from now on."""
        self.hooks.activation_delay = seconds
