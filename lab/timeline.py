"""The demo's timeline: what happened when, recorded as it happens, written as JSON and drawn as a PNG.

Lanes, top to bottom: the service link (up/down), the workflow's states, one bar per certificate the agent
installed (its validity window; a triangle where it was installed), the personal kubeconfigs granted
(``lifeline-agent grant``: for whom, their validity) when there are any, and one lane per kubectl caller with a
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
GRANT_COLOUR = "#9467bd"


@dataclass
class Timeline:
    """Thread-safe recorder; every time is epoch seconds, stored relative to ``started``."""

    started: float = field(default_factory=time.time)
    link: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    workflow: list[dict[str, Any]] = field(default_factory=list)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    kubectl: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
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

    def grant(self, user: str, serial: str, not_before: float, not_after: float, issued: float) -> None:
        with self._lock:
            self.grants.append({"user": user, "serial": serial, "not_before": self._t(not_before),
                                "not_after": self._t(not_after), "issued": self._t(issued)})  # fmt: skip

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
                "grants": list(self.grants),
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

    kubectl_lanes = sorted({call["lane"] for call in data["kubectl"]})  # "case 1..3" before "offline ..."
    certificates = sorted(data["certificates"], key=lambda c: c["installed"])
    end = float(data["ended"])
    grants = data.get("grants") or []
    rows = ["service link", "workflow", "certificates", *(["grants"] if grants else []), *kubectl_lanes]
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
        label = f"Step Functions: {len(workflow)} states, last {workflow[-1]['state']}"
        axes.text(times[-1] + end * 0.006, y["workflow"], label, va="center", fontsize=8)

    band = 0.8
    axis_end = end * 1.08
    for index, cert in enumerate(certificates):
        offset = (0.5 - index / (len(certificates) - 1)) * band if len(certificates) > 1 else 0.0
        row = y["certificates"] + offset
        replaced = certificates[index + 1]["installed"] if index + 1 < len(certificates) else None
        in_use_until = min(cert["not_after"], replaced if replaced is not None else end)
        axes.plot([cert["installed"], in_use_until], [row, row], color=CERT_COLOUR, linewidth=3,
                  solid_capstyle="butt")  # fmt: skip
        axes.plot([in_use_until, min(cert["not_after"], axis_end)], [row, row], color=CERT_COLOUR, linewidth=1,
                  alpha=0.45)  # fmt: skip
        axes.plot([cert["installed"]], [row], marker="v", color="black", markersize=5)
        if cert["not_after"] <= axis_end:
            axes.plot([cert["not_after"]], [row], marker="|", color=CERT_COLOUR, markersize=7)
    axes.text(0, y["certificates"] + band / 2 + 0.25, f"{len(certificates)} certificates: ▼ installed, thick: in use, "
              "thin: still valid until notAfter (|)", fontsize=8)  # fmt: skip

    for grant in grants:
        shown_until = min(grant["not_after"], axis_end)
        axes.plot([grant["issued"], shown_until], [y["grants"]] * 2, color=GRANT_COLOUR, linewidth=3,
                  solid_capstyle="butt")  # fmt: skip
        axes.plot([grant["issued"]], [y["grants"]], marker="v", color="black", markersize=5)
        axes.text(grant["issued"], y["grants"] + 0.22, f"grant: {grant['user']}, serial {grant['serial'][:8]}...",
                  fontsize=7, color=GRANT_COLOUR)  # fmt: skip

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

    free_from = [0.0, 0.0, 0.0, 0.0]  # per label level: where the last label ends (labels must not overlap)
    for phase in data["phases"]:
        axes.axvline(phase["t"], color="#bbbbbb", linewidth=0.6, linestyle=":")
        level = next((i for i, x in enumerate(free_from) if x <= phase["t"]), len(free_from) - 1)
        free_from[level] = phase["t"] + (len(phase["name"]) + 2) * axis_end * 0.0048
        axes.text(phase["t"], len(rows) + 0.55 + 0.3 * level, phase["name"], fontsize=7, ha="left",
                  va="bottom", color="#444444")  # fmt: skip

    axes.set_yticks([y[name] for name in rows], rows)
    axes.set_ylim(0.4, len(rows) + 1.8)
    axes.set_xlim(0, axis_end)
    axes.set_xlabel("seconds since the demo started")
    axes.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
