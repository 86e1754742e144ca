"""Results: statistics, the JSON files under ``bench/results/`` and the machine they were measured on."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# BENCH_RESULTS_DIR sends a trial run elsewhere, so it does not overwrite the committed results.
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or DEFAULT_RESULTS)


def spread(samples: list[float]) -> dict[str, float | int]:
    """Median and spread of ``samples`` (seconds): n, median, p10, p90, min, max, mean, stdev."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    deciles = statistics.quantiles(ordered, n=10, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 9
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 4),
        "p10": round(deciles[0], 4),
        "p90": round(deciles[-1], 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
        "mean": round(statistics.fmean(ordered), 4),
        "stdev": round(statistics.stdev(ordered), 4) if len(ordered) > 1 else 0.0,
    }


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    kubectl = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "kubectl"
    version = subprocess.run([str(kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True,
                             check=False).stdout  # fmt: skip
    try:
        kubectl_version = json.loads(version)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError):
        kubectl_version = "unknown"
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "kubectl": kubectl_version, "load_average_at_end": load_average()}  # fmt: skip


def write_result(name: str, variant: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "variant": variant, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime()), "machine": machine(), **result}  # fmt: skip
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def run_and_write(name: str, variant: str, run: Callable[[], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """Run one benchmark and write its JSON, with its wall time and the load average before it started (the
    one at the end, in ``machine``, counts the benchmark's own work too)."""
    load_at_start = load_average()
    started = time.monotonic()
    result = run()
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    result["load_average_at_start"] = load_at_start
    return write_result(name, variant, result), result


def read_result(name: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads((RESULTS / f"{name}.json").read_text()))
    except (FileNotFoundError, ValueError):
        return None
