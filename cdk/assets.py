"""Stages the Lambda code asset: the `lambdas` package and `lifeline_agent` (one token/contract/RBAC code).

Synth stays offline and fast: the two packages are copied, nothing is downloaded. The third-party packages
the Lambdas import (pydantic, aws-lambda-powertools, kubernetes, PyYAML) go in a layer that is built with
``pip install --target`` only when the context flag ``lifeline:dependenciesLayer`` is true.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_PACKAGES = (REPO_ROOT / "lambdas", REPO_ROOT / "agent" / "lifeline_agent")
LAYER_REQUIREMENTS = (
    "aws-lambda-powertools==3.37.0",
    "aws-xray-sdk==2.15.0",
    "pydantic==2.14.3",
    "kubernetes==37.0.1",
    "PyYAML==6.0.4",
    "cryptography==50.0.2",
)
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "py.typed")


def _private_directory(prefix: str) -> Path:
    # One directory per process: parallel test workers synthesize at the same time.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def stage_lambda_code() -> Path:
    """Copy the Lambda packages into a fresh directory and return it (the asset's source)."""
    root = _private_directory("lifeline-lambda-code-")
    for package in LAMBDA_PACKAGES:
        shutil.copytree(package, root / package.name, ignore=_IGNORED)
    return root


def build_dependencies_layer(python_version: str = "3.14") -> Path:
    """``pip install --target`` the Lambdas' third-party packages for the Lambda platform (needs network)."""
    root = _private_directory("lifeline-lambda-layer-")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--target", str(root / "python"), "--platform", "manylinux2014_x86_64",
            "--implementation", "cp", "--python-version", python_version, "--only-binary=:all:",
            *LAYER_REQUIREMENTS,
        ],
        check=True,
    )
    return root
