"""The Lambda package: the code asset (the `lambdas` package and `lifeline_agent`) and the dependencies layer.

Synth stays offline and fast: the two packages are copied and compiled, nothing is downloaded. The layer holds the
third-party distributions the Lambdas import and what those need (``LAYER_DISTRIBUTIONS``), at the versions
``requirements.lock`` pins for the development environment, installed with ``pip install --target
--no-deps`` for the functions' runtime and architecture. It leaves out what every Lambda Python runtime
already has (``RUNTIME_DISTRIBUTIONS``: boto3 and what it needs). It is built only when the context flag
``lifeline:dependenciesLayer`` is true (needs PyPI), and kept under ``.venv/lambda-layers/`` keyed by
what went into it, so a second build with the same pins costs nothing.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = REPO_ROOT / "requirements.lock"
LAYER_CACHE = REPO_ROOT / ".venv" / "lambda-layers"
LAMBDA_PACKAGES = (REPO_ROOT / "lambdas", REPO_ROOT / "agent" / "lifeline_agent")
LAYER_DISTRIBUTIONS = (
    "aws-lambda-powertools", "aws-xray-sdk", "wrapt",  # Logger/Tracer/Metrics; the tracer's X-Ray SDK
    "pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection",
    "PyYAML",  # aws-auth
    "cryptography", "cffi", "pycparser",  # the CA check of the secret contract
)  # fmt: skip
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "py.typed")
_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}


@dataclass(frozen=True)
class LambdaTarget:
    """A Lambda Python runtime and architecture, as the template names them (``python3.11``, ``x86_64``)."""

    runtime: str
    architecture: str

    @property
    def python_version(self) -> str:
        match = re.fullmatch(r"python(3\.\d+)", self.runtime)
        if match is None:
            raise ValueError(f"{self.runtime!r} is not a Lambda Python runtime")
        return match.group(1)

    @property
    def platform(self) -> str:
        try:
            return _PLATFORMS[self.architecture]
        except KeyError:
            raise ValueError(f"{self.architecture!r} is not a Lambda architecture") from None


def deployed_target() -> LambdaTarget:
    """The runtime and architecture of every function in the stack."""
    from cdk.constructs.functions import ARCHITECTURE, RUNTIME

    return LambdaTarget(runtime=RUNTIME.name, architecture=ARCHITECTURE.name)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_requirements(names: tuple[str, ...], lock_file: Path = LOCK_FILE) -> tuple[str, ...]:
    """``name==version`` for each of ``names``, as pinned in ``requirements.lock``."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        name, separator, version = line.strip().partition("==")
        if separator:
            pins[_canonical(name)] = version
    missing = [name for name in names if _canonical(name) not in pins]
    if missing:
        raise ValueError(f"{lock_file.name} pins no version of {', '.join(missing)}")
    return tuple(f"{name}=={pins[_canonical(name)]}" for name in names)


def _private_directory(prefix: str) -> Path:
    # One directory per process: parallel test workers synthesize at the same time.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def stage_lambda_code(target: LambdaTarget | None = None) -> Path:
    """Copy the Lambda packages into a fresh directory, with their byte code, and return it (the asset's source)."""
    root = _private_directory("lifeline-lambda-code-")
    for package in LAMBDA_PACKAGES:
        shutil.copytree(package, root / package.name, ignore=_IGNORED)
    compile_for_lambda(root, target or deployed_target(), "/var/task")
    return root


def compile_for_lambda(directory: Path, target: LambdaTarget, deployed_at: str) -> None:
    """Byte code for every module under ``directory`` (which Lambda mounts at ``deployed_at``), checked by
    hash, not time stamp: the asset staging copy and the uploaded zip do not keep the files' times, so
    time-stamped ``.pyc`` never match in Lambda, whose code and layer directories are read-only, and every
    cold start would compile every module again. One process, files in order: the same sources give the same
    bytes (and the same asset hash). Only an interpreter of the runtime's version can make them; with another,
    nothing is compiled."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != target.python_version:
        return
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "1", "--invalidation-mode", "unchecked-hash",
                    "-s", str(directory), "-p", deployed_at, str(directory)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def install_for_lambda(requirements: tuple[str, ...], target: LambdaTarget, destination: Path) -> None:
    """``pip install --target --no-deps`` exactly ``requirements``, binary wheels for ``target`` only."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--no-compile", "--target", str(destination), "--platform", target.platform, "--implementation", "cp",
            "--python-version", target.python_version, "--only-binary=:all:", *requirements,
        ],
        check=True,
    )
    compile_for_lambda(destination, target, "/opt/python")


def cached_install(kind: str, requirements: tuple[str, ...], target: LambdaTarget,
                   cache: Path | None = LAYER_CACHE) -> Path:  # fmt: skip
    """A directory whose ``python/`` holds ``requirements`` installed for ``target``; from ``cache`` when it
    was built before with the same inputs (a directory appears there whole or not at all)."""
    key = json.dumps([kind, requirements, target.runtime, target.architecture, sys.version_info[:2]])
    name = f"{kind}-{target.runtime}-{target.architecture}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if cache is None:
        root = _private_directory(f"lifeline-{kind}-")
        install_for_lambda(requirements, target, root / "python")
        return root
    final = cache / name
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
    try:
        install_for_lambda(requirements, target, building / "python")
        building.rename(final)
    except OSError:
        if not final.is_dir():  # not another process finishing the same build first
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final


def build_dependencies_layer(target: LambdaTarget | None = None, cache: Path | None = LAYER_CACHE) -> Path:
    """The layer's source directory (``python/`` inside) for ``target`` (default: the stack's functions)."""
    return cached_install("layer", locked_requirements(LAYER_DISTRIBUTIONS), target or deployed_target(), cache)


def build_runtime_sdk(target: LambdaTarget | None = None, cache: Path | None = LAYER_CACHE) -> Path:
    """What the runtime brings (boto3 and what it needs), at the pinned versions: for tests, never deployed."""
    return cached_install("runtime-sdk", locked_requirements(RUNTIME_DISTRIBUTIONS), target or deployed_target(),
                          cache)  # fmt: skip
