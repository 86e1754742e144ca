"""bench/results/SUMMARY.md: the table of figures, made from the JSON results."""

from __future__ import annotations

from pathlib import Path

from bench.common import RESULTS


def write() -> Path:
    path = RESULTS / "SUMMARY.md"
    path.write_text("TODO\n")
    return path
