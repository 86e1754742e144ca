"""Lambda package: the size of the deployed code + layer, and each handler's cold import time.

The stack is synthesized with its dependencies layer (cdk/lambda_package.py); each handler the template names
is imported in a fresh clean interpreter of the runtime's Python (``-I -S -B``: the staged code asset, the
layer, and only the runtime's boto3 on ``sys.path``), N times, interleaved with the baselines of the same
round: a bare start of that interpreter (``python -I -S -B -c pass``), and the same import in the development
environment (``.venv/bin/python -B -c 'import ...'``, site-packages and its .pyc). The same package without
any byte code stands for what pip's time-stamped .pyc amount to once CDK has staged them (never valid).
No control plane, no network: nothing is called, only imported.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import spread
from cdk.assets import RUNTIME_DISTRIBUTIONS, build_runtime_sdk, locked_requirements
from cdk.lambda_package import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    DeployedFunction,
    directory_bytes,
    import_handlers,
    runtime_interpreter,
    synthesize_package,
)

ROUNDS = {"full": 11, "quick": 5, "smoke": 2}
DEV_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"


def _timed(command: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=120, **kwargs)
    return time.perf_counter() - started


def _timed_import(python: str, function: DeployedFunction, runtime_sdk: Path) -> tuple[float, float]:
    """(process seconds, in-process import seconds) of one fresh clean interpreter importing the handler."""
    started = time.perf_counter()
    [result] = import_handlers(python, function, runtime_sdk)["results"]
    wall = time.perf_counter() - started
    if not result["ok"]:
        raise RuntimeError(f"{function.handler}: {result.get('error')}")
    return wall, float(result["seconds"])


def _without_byte_code(function: DeployedFunction, into: Path) -> DeployedFunction:
    ignore = shutil.ignore_patterns("__pycache__")
    code = into / "code"
    if not code.exists():
        shutil.copytree(function.code_directory, code, ignore=ignore)
        for i, layer in enumerate(function.layer_directories):
            shutil.copytree(layer, into / f"layer{i}", ignore=ignore)
    layers = tuple(into / f"layer{i}" for i in range(len(function.layer_directories)))
    return replace(function, code_directory=code, layer_directories=layers)


def _name(function: DeployedFunction) -> str:
    return function.module.split(".")[1]


def run(variant: str) -> dict[str, Any]:
    rounds = ROUNDS[variant]
    functions = synthesize_package({})
    target = functions[0].target
    python = runtime_interpreter(target)
    runtime_sdk = build_runtime_sdk(target)
    bare: list[float] = []
    samples: dict[str, dict[str, list[float]]] = {_name(f): {"clean": [], "import": [], "dev": [], "no_pyc": []}
                                                  for f in functions}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-lambda-") as tmp:
        unbuilt = {_name(f): _without_byte_code(f, Path(tmp)) for f in functions}
        for _ in range(rounds):
            bare.append(_timed([python, "-I", "-S", "-B", "-c", "pass"], cwd=tmp))
            for function in functions:
                figures = samples[_name(function)]
                wall, seconds = _timed_import(python, function, runtime_sdk)
                figures["clean"].append(wall)
                figures["import"].append(seconds)
                figures["no_pyc"].append(_timed_import(python, unbuilt[_name(function)], runtime_sdk)[0])
                figures["dev"].append(_timed([str(DEV_PYTHON), "-B", "-c", f"import {function.module}"], cwd=tmp))
    bare_median = statistics.median(bare)
    handlers = {}
    for function in functions:
        figures = samples[_name(function)]
        clean = statistics.median(figures["clean"])
        handlers[_name(function)] = {
            "handler": function.handler,
            "cold_process_seconds": spread(figures["clean"]),
            "in_process_import_seconds": spread(figures["import"]),
            "without_byte_code_process_seconds": spread(figures["no_pyc"]),
            "dev_venv_process_seconds": spread(figures["dev"]),
            "ratio_over_bare_interpreter": round(clean / bare_median, 1),
            "ratio_over_dev_venv": round(clean / statistics.median(figures["dev"]), 2),
            "ratio_without_byte_code_over_with": round(statistics.median(figures["no_pyc"]) / clean, 2),
        }
    code = directory_bytes(functions[0].code_directory)
    layer = sum(directory_bytes(d) for d in functions[0].layer_directories)
    return {
        "what": __doc__.strip().splitlines()[0],
        "control_plane_backend": "none",
        "runtime": target.runtime, "architecture": target.architecture, "interpreter": python,
        "interpreter_version": _version(python),
        "runtime_sdk_stand_in": list(locked_requirements(RUNTIME_DISTRIBUTIONS)),
        "rounds": rounds,
        "baseline": "a bare start of the same clean interpreter (python -I -S -B -c pass)",
        "bare_interpreter_seconds": spread(bare),
        "code_bytes": code, "layer_bytes": layer, "lambda_unzipped_limit_bytes": LAMBDA_UNZIPPED_LIMIT_BYTES,
        "package_fraction_of_limit": round((code + layer) / LAMBDA_UNZIPPED_LIMIT_BYTES, 4),
        "layer_distributions": sorted(p.name.removesuffix(".dist-info")
                                      for p in (functions[0].layer_directories[0] / "python").glob("*.dist-info")),
        "handlers": handlers,
    }  # fmt: skip


def _version(python: str) -> str:
    done = subprocess.run([python, "-I", "-S", "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    return done.stdout.strip()


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """SUMMARY.md rows: the package's size against Lambda's limit; each handler's cold import against a bare
    start of the same interpreter (the baseline of the same run)."""
    where = f"none ({result.get('runtime')} {result.get('architecture')}, Python {result.get('interpreter_version')})"
    code, layer = result.get("code_bytes", 0), result.get("layer_bytes", 0)
    limit = result.get("lambda_unzipped_limit_bytes", 1)
    rows = [("Lambda package unzipped: code asset + dependencies layer", where,
             f"{(code + layer) / 1e6:.1f} MB of {limit / 1e6:.1f} MB ({100 * (code + layer) / limit:.1f} %)",
             f"layer {layer / 1e6:.1f} MB ({len(result.get('layer_distributions', []))} distributions, no "
             f"boto3/botocore), code {code / 1e6:.2f} MB")]  # fmt: skip
    bare = result.get("bare_interpreter_seconds", {}).get("median", 0.0)
    for name, figures in result.get("handlers", {}).items():
        cold, alone = figures["cold_process_seconds"], figures["in_process_import_seconds"]
        rows.append((
            f"Lambda cold import, {name} (median of {cold['n']} fresh processes)", where,
            f"{cold['median']:.3f} s: **{figures['ratio_over_bare_interpreter']}x** a bare start ({bare:.3f} s)",
            f"import alone {alone['median']:.3f} s; p10-p90 {cold['p10']:.3f}-{cold['p90']:.3f} s; without byte "
            f"code {figures['ratio_without_byte_code_over_with']}x as long; dev venv "
            f"{figures['dev_venv_process_seconds']['median']:.3f} s",
        ))  # fmt: skip
    return rows
