"""The lab's Lambda runtime: each function runs the code it was deployed with, in its own interpreter.

A function's code zip and its layers' zips (what CloudFormation gave moto, from the assets ``cdk deploy``
uploaded) are unpacked once per content hash, and a sandbox process (lab/region/lambda_worker.py under
``python -I -S -B``: no site-packages, no PYTHON* variables) imports the handler from them with the
runtime's order of ``sys.path`` (cdk/lambda_package.py): code, layers, then the runtime's own boto3 at the
pinned version; nothing of the development virtualenv. A sandbox stays warm and answers one invocation at a
time, like Lambda's; concurrent invocations of one function get more sandboxes. The function's environment
is the template's, the variables Lambda itself sets, and the lab's additions (``extra_environment``: where
the Region is, and lab-only addresses); its output goes to ``<root>/logs/<function>.log``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import selectors
import shutil
import subprocess
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

WORKER = Path(__file__).with_name("lambda_worker.py")
TIMEOUT_GRACE_SECONDS = 2.0  # a sandbox that has not answered by the function's timeout plus this is killed


@dataclass(frozen=True)
class FunctionCode:
    """What one deployed function runs: the moto function's fields that decide its sandbox."""

    function_name: str
    function_arn: str
    handler: str
    runtime: str
    architecture: str
    memory_mb: int
    timeout_seconds: float
    environment: tuple[tuple[str, str], ...]
    code: bytes
    layers: tuple[bytes, ...]

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (self.function_arn, self.handler, self.runtime, self.architecture, json.dumps(self.environment),
                     self.code, *self.layers):  # fmt: skip
            digest.update(part if isinstance(part, bytes) else part.encode())
            digest.update(b"\0")
        return digest.hexdigest()


class Invocation:
    """The outcome moto's ``_invoke_lambda`` returns: payload (JSON text), whether it is an error, log text."""

    def __init__(self, payload: dict[str, Any] | Any, error: bool, log: str = "") -> None:
        self.payload, self.error, self.log = payload, error, log

    def as_moto(self) -> tuple[str, bool, str]:
        return json.dumps(self.payload, default=str), self.error, self.log


def _error(error_type: str, message: str) -> Invocation:
    return Invocation({"errorType": error_type, "errorMessage": message}, True, f"{error_type}: {message}")


class _Sandbox:
    def __init__(self, python: str, path: list[str], code: FunctionCode, cwd: Path, env: dict[str, str],
                 log: IO[bytes]) -> None:  # fmt: skip
        self.code = code
        self.process = subprocess.Popen(
            [python, "-I", "-S", "-B", str(WORKER), json.dumps({"path": path, "handler": code.handler})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=cwd, env=env,
        )  # fmt: skip
        self.path = path
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin, self._stdout = self.process.stdin, self.process.stdout

    def invoke(self, event: Any) -> Invocation:
        context = {
            "function_name": self.code.function_name, "invoked_function_arn": self.code.function_arn,
            "memory_limit_in_mb": self.code.memory_mb, "aws_request_id": str(uuid.uuid4()),
            "timeout_seconds": self.code.timeout_seconds,
            "log_group_name": f"/aws/lambda/{self.code.function_name}", "log_stream_name": "lab",
        }  # fmt: skip
        try:
            self._stdin.write((json.dumps({"event": event, "context": context}) + "\n").encode())
            self._stdin.flush()
        except (BrokenPipeError, OSError):
            return _error("Runtime.ExitError", f"the sandbox exited with {self.process.poll()}")
        deadline = time.monotonic() + self.code.timeout_seconds + TIMEOUT_GRACE_SECONDS
        with selectors.DefaultSelector() as selector:
            selector.register(self._stdout, selectors.EVENT_READ)
            while not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    self.close()
                    return _error("Sandbox.Timedout", f"Task timed out after {self.code.timeout_seconds:.2f} seconds")
        line = self._stdout.readline()
        if not line:
            self.close()
            return _error("Runtime.ExitError", f"the sandbox exited with {self.process.wait(5)}")
        answer = json.loads(line)
        if answer["ok"]:
            return Invocation(answer["result"], False)
        return _error(answer["errorType"], answer["errorMessage"])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._stdout.close()


class Sandboxes:
    """Warm sandboxes per deployed function; ``close`` ends them all."""

    def __init__(self, root: Path, extra_environment: dict[str, str]) -> None:
        self.root = root
        self.extra_environment = extra_environment
        self._idle: dict[str, list[_Sandbox]] = {}
        self._all: list[_Sandbox] = []
        self._lock = threading.Lock()
        self._closed = False

    def invoke(self, code: FunctionCode, event: Any) -> Invocation:
        sandbox = self._take(code)
        try:
            return sandbox.invoke(event)
        finally:
            with self._lock:
                if sandbox.alive and not self._closed:
                    self._idle.setdefault(code.key, []).append(sandbox)

    def _take(self, code: FunctionCode) -> _Sandbox:
        with self._lock:
            if self._closed:
                raise RuntimeError("the lab Region's Lambda sandboxes are closed")
            idle = self._idle.get(code.key, [])
            while idle:
                sandbox = idle.pop()
                if sandbox.alive:
                    return sandbox
        sandbox = self._start(code)
        with self._lock:
            self._all.append(sandbox)
        return sandbox

    def _start(self, code: FunctionCode) -> _Sandbox:
        from cdk.assets import LambdaTarget, build_runtime_sdk
        from cdk.lambda_package import runtime_interpreter, runtime_path

        target = LambdaTarget(runtime=code.runtime, architecture=code.architecture)
        code_directory = self._unpacked(code.code)
        layers = [self._unpacked(layer) for layer in code.layers]
        path = runtime_path(code_directory, layers, build_runtime_sdk(target))
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC",
            "AWS_REGION": self.extra_environment.get("AWS_REGION", "us-west-2"),
            "AWS_LAMBDA_FUNCTION_NAME": code.function_name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(code.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_EXECUTION_ENV": f"AWS_Lambda_{code.runtime}",
            "LAMBDA_TASK_ROOT": str(code_directory), "_HANDLER": code.handler,
            **dict(code.environment), **self.extra_environment,
        }  # fmt: skip
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{code.function_name}.log", "ab") as log:
            return _Sandbox(runtime_interpreter(target), path, code, code_directory, env, log)

    def _unpacked(self, archive: bytes) -> Path:
        directory = self.root / "code" / hashlib.sha256(archive).hexdigest()[:24]
        with self._lock:
            if not directory.is_dir():
                partial = directory.with_name(directory.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
                    zipped.extractall(partial)
                os.replace(partial, directory)
        return directory

    def running(self) -> list[tuple[int, str, list[str]]]:
        """Every live sandbox: process ID, function name, and the import path it was started with."""
        with self._lock:
            return [(s.process.pid, s.code.function_name, list(s.path)) for s in self._all if s.alive]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sandboxes, self._all, self._idle = self._all, [], {}
        for sandbox in sandboxes:
            sandbox.close()
