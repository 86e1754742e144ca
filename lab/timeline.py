"""The demo's timeline: what happened when, recorded as it happens, written as JSON and drawn as a PNG.

Lanes, top to bottom: the service link (up/down), the workflow's states, one bar per certificate the agent
installed (its validity window; a triangle where it was installed), and one lane per kubectl caller with a
dot per call (green: the kubernetes service was listed; red: it was not) and a line for how long it took.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifeline_agent.kubeconfig import atomic_write

OK_COLOUR, FAIL_COLOUR, DOWN_COLOUR, CERT_COLOUR = "#2e9e44", "#d62728", "#d62728", "#4c78a8"


@dataclass
class Timeline:
    """Thread-safe recorder; every time is epoch seconds, stored relative to ``started``."""

    started: float = field(default_factory=time.time)
    link: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    workflow: list[dict[str, Any]] = field(default_factory=list)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    kubectl: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _t(self, when: float | None) -> float:
        return round((time.time() if when is None else when) - self.started, 3)

    def link_state(self, state: str, when: float | None = None) -> None:
        with self._lock:
            self.link.append({"t": self._t(when), "state": state})

    def phase(self, name: str, when: float | None = None) -> None:
        with self._lock:
            self.phases.append({"t": self._t(when), "name": name})

    def workflow_state(self, name: str, when: float) -> None:
        with self._lock:
            self.workflow.append({"t": self._t(when), "state": name})

    def certificate(self, serial: str, not_before: float, not_after: float, installed: float) -> None:
        with self._lock:
            self.certificates.append({"serial": serial, "not_before": self._t(not_before),
                                      "not_after": self._t(not_after), "installed": self._t(installed)})  # fmt: skip

    def kubectl_call(self, lane: str, started: float, ended: float, ok: bool, message: str) -> None:
        with self._lock:
            self.kubectl.append({"lane": lane, "started": self._t(started), "ended": self._t(ended),
                                 "ok": ok, "message": message})  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "started_at": self.started,
                "ended": self._t(None),
                "link": list(self.link),
                "phases": list(self.phases),
                "workflow": list(self.workflow),
                "certificates": list(self.certificates),
                "kubectl": list(self.kubectl),
            }

    def write(self, directory: Path, stem: str = "timeline") -> tuple[Path, Path]:
        """``<stem>.json`` and ``<stem>.png`` in ``directory``; returns their paths."""
        data = self.as_dict()
        directory.mkdir(parents=True, exist_ok=True)
        json_path, png_path = directory / f"{stem}.json", directory / f"{stem}.png"
        atomic_write(json_path, json.dumps(data, indent=2).encode("utf-8"), mode=0o644)
        render_png(data, png_path)
        return json_path, png_path


def _link_spans(data: dict[str, Any]) -> list[tuple[float, float, str]]:
    changes = sorted(data["link"], key=lambda c: c["t"])
    spans, state, since = [], "up", 0.0
    for change in changes:
        if change["state"] != state:
            spans.append((since, change["t"], state))
            state, since = change["state"], change["t"]
    spans.append((since, data["ended"], state))
    return [span for span in spans if span[1] > span[0]]


def render_png(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kubectl_lanes = list(dict.fromkeys(call["lane"] for call in data["kubectl"]))
    certificates = sorted(data["certificates"], key=lambda c: c["installed"])
    end = float(data["ended"])
    rows = ["service link", "workflow", "certificates", *kubectl_lanes]
    y = {name: len(rows) - i for i, name in enumerate(rows)}
    figure, axes = plt.subplots(figsize=(13, 1.1 + 0.62 * len(rows) + 0.05 * len(certificates)), dpi=110)

    for start, stop, state in _link_spans(data):
        colour = OK_COLOUR if state == "up" else DOWN_COLOUR
        axes.barh(y["service link"], stop - start, left=start, height=0.5, color=colour, alpha=0.85)
        axes.text((start + stop) / 2, y["service link"], state.upper(), ha="center", va="center",
                  color="white", fontsize=9, fontweight="bold")  # fmt: skip
    for span_start, span_stop, state in _link_spans(data):
        if state == "down":
            axes.axvspan(span_start, span_stop, color=DOWN_COLOUR, alpha=0.06)

    workflow = data["workflow"]
    if workflow:
        times = [w["t"] for w in workflow]
        axes.plot(times, [y["workflow"]] * len(times), "|", color="#555555", markersize=12)
        axes.barh(y["workflow"], times[-1] - times[0], left=times[0], height=0.3, color="#999999", alpha=0.6)
        axes.text(times[-1] + end * 0.006, y["workflow"], f"{workflow[-1]['state']} ({len(workflow)} states)",
                  va="center", fontsize=8)  # fmt: skip

    band = 0.8
    for index, cert in enumerate(certificates):
        offset = (index / max(1, len(certificates) - 1) - 0.5) * band if len(certificates) > 1 else 0.0
        row = y["certificates"] + offset
        left = max(0.0, cert["not_before"])
        axes.plot([left, cert["not_after"]], [row, row], color=CERT_COLOUR, linewidth=2.2, solid_capstyle="butt")
        axes.plot([cert["installed"]], [row], marker="v", color="black", markersize=5)
    axes.text(0, y["certificates"] + band / 2 + 0.12,
              f"{len(certificates)} certificates (bar: valid until notAfter; ▼ installed)", fontsize=8)  # fmt: skip

    for lane in kubectl_lanes:
        calls = [c for c in data["kubectl"] if c["lane"] == lane]
        for call in calls:
            colour = OK_COLOUR if call["ok"] else FAIL_COLOUR
            if call["ended"] - call["started"] > 1.0:
                axes.plot([call["started"], call["ended"]], [y[lane]] * 2, color=colour, linewidth=1.5, alpha=0.6)
            axes.plot([call["started"]], [y[lane]], "o", color=colour, markersize=5)
        failed = [c for c in calls if not c["ok"]]
        if failed:
            last = failed[-1]
            axes.text(last["ended"] + end * 0.006, y[lane] + 0.22, last["message"][:70], fontsize=7, color=FAIL_COLOUR)

    for phase in data["phases"]:
        axes.axvline(phase["t"], color="#bbbbbb", linewidth=0.6, linestyle=":")
        axes.text(phase["t"], len(rows) + 0.75, phase["name"], rotation=30, fontsize=7, ha="left", va="bottom")

    axes.set_yticks([y[name] for name in rows], rows)
    axes.set_ylim(0.4, len(rows) + 0.7)
    axes.set_xlim(0, end * 1.08)
    axes.set_xlabel("seconds since the demo started")
    axes.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
