"""The agent's Python heap over service-link flaps: is anything kept per flap? (``python -m bench.flap_heap``)

``bench/footprint.py`` measures the agent process's RSS over 100 flaps; RSS also moves with the allocator
and pages touched late, so a small rise there does not say whether something is kept per flap. Here the
agent's link monitor (the production probe: botocore STS through the lab's service link) sees the link cut
and restored, in this process with ``tracemalloc`` on; the heap traced to the agent's side (lifeline_agent,
botocore, urllib3; not moto or the lab) is compared after a warm-up against after N and after 2N more
flaps. A per-flap leak grows with N; caches that fill once do not. No control plane takes part (the cluster in
the configuration is never contacted), so this runs on no backend.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import run_and_write
from lab.agentkit import agent_credentials, isolate_from_aws, seeded_cluster, started_lab, write_config

FLAPS = {"full": 100, "quick": 30, "smoke": 5}
NO_CONTROL_PLANE = ("the link probe asks the Region's STS through the service link and nothing else: no request "
                    "reaches a control plane, so no backend is chosen (bench/footprint.py measures whole agents "
                    "over flaps on each backend)")
WARM_UP = 20
AGENT_SIDE = ("lifeline_agent", "botocore", "urllib3")
NOT_AGENT = ("moto", "/lab/", "werkzeug")


def agent_side_bytes(snapshot: tracemalloc.Snapshot, base: tracemalloc.Snapshot) -> tuple[int, int]:
    """``(bytes, blocks)`` grown since ``base`` in allocations made by the agent's code or its libraries."""
    size = count = 0
    for stat in snapshot.compare_to(base, "traceback"):
        files = [frame.filename for frame in stat.traceback]
        if any(part in f for f in files for part in AGENT_SIDE) and not any(p in f for f in files for p in NOT_AGENT):
            size, count = size + stat.size_diff, count + stat.count_diff
    return size, count


def run(variant: str) -> dict[str, Any]:
    from lifeline_agent.config import load_config
    from lifeline_agent.daemon import make_link_monitor

    isolate_from_aws()
    flaps = FLAPS[variant]
    with tempfile.TemporaryDirectory(prefix="bench-flap-heap-") as tmp, started_lab(Path(tmp) / "lab") as lab:
        cluster = seeded_cluster(lab, "flaps")
        with agent_credentials(lab):
            config = dataclasses.replace(load_config(write_config(lab, Path(tmp) / "agent", [cluster])),
                                         probe_timeout=0.3)  # fmt: skip
            monitor = make_link_monitor(config, None)

            def flap() -> None:
                lab.link.cut()
                while monitor.is_up(fresh=True):
                    time.sleep(0.05)
                lab.link.restore()
                while not monitor.is_up(fresh=True):
                    time.sleep(0.05)

            for _ in range(WARM_UP):
                flap()
            gc.collect()
            tracemalloc.start(25)
            base = tracemalloc.take_snapshot()
            grown = {}
            for label, count in (("after_n", flaps), ("after_2n_more", 2 * flaps)):
                for _ in range(count):
                    flap()
                gc.collect()
                size, blocks = agent_side_bytes(tracemalloc.take_snapshot(), base)
                grown[label] = {"flaps": flaps if label == "after_n" else 3 * flaps, "bytes": size, "blocks": blocks}
            tracemalloc.stop()
    per_flap = (grown["after_2n_more"]["bytes"] - grown["after_n"]["bytes"]) / (2 * flaps)
    return {"what": __doc__.split("\n\n")[1].replace("\n", " "), "warm_up_flaps": WARM_UP, "grown": grown,
            "bytes_per_flap_after_n": round(per_flap, 1), "control_plane_backend": "none",
            "why_no_control_plane": NO_CONTROL_PLANE}  # fmt: skip


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    first, more = result["grown"]["after_n"], result["grown"]["after_2n_more"]
    return [(f"Agent heap (tracemalloc) over service-link cuts and restores, after {result['warm_up_flaps']} to warm",
             "none (Region only)",
             f"+{first['bytes'] / 1024:.1f} KiB after {first['flaps']}, +{more['bytes'] / 1024:.1f} KiB after "
             f"{more['flaps']}: **{result['bytes_per_flap_after_n']:.0f} B per flap** past the first {first['flaps']}",
             "agent-side allocations only (lifeline_agent, botocore, urllib3), the production link probe through "
             "the lab's service link")]  # fmt: skip


def main(argv: list[str]) -> int:
    variant = "smoke" if "--smoke" in argv else "quick" if "--quick" in argv else "full"
    path, result = run_and_write("flap_heap", variant, lambda: run(variant))
    print(f"flap_heap: wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
