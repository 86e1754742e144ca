"""``python -m bench [--quick] [renewal|footprint|fleet|outage ...]``: run benchmarks, write bench/results/.

With no names: renewal and fleet one after the other, then footprint and outage side by side (each in its
own process with its own lab: the 10-minute idle and the 10-minute outage overlap), then SUMMARY.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import summary
from bench.common import write_result

NAMES = ("renewal", "footprint", "fleet", "outage")


def runner(name: str) -> Callable[[str], dict[str, Any]]:
    if name == "renewal":
        from bench.renewal import run
    elif name == "footprint":
        from bench.footprint import run
    elif name == "fleet":
        from bench.fleet import run
    else:
        from bench.outage import run
    return run


def run_one(name: str, variant: str) -> None:
    started = time.monotonic()
    result = runner(name)(variant)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    path = write_result(name, variant, result)
    print(f"{name}: wrote {path} ({result['wall_seconds']} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(NAMES) + " (default: all)")
    parser.add_argument("--quick", action="store_true", help="short variant (1-2 min idle/outage, fewer rounds)")
    args = parser.parse_args(argv)
    variant = "quick" if args.quick else "full"
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    if args.names:
        for name in args.names:
            run_one(name, variant)
    else:
        for name in ("renewal", "fleet"):
            run_one(name, variant)
        flags = ["--quick"] if args.quick else []
        children = [subprocess.Popen([sys.executable, "-m", "bench", *flags, name]) for name in ("footprint", "outage")]
        codes = [child.wait() for child in children]
        if any(codes):
            print(f"footprint/outage exit codes: {codes}", file=sys.stderr)
            summary.write()
            return 1
    print(f"wrote {summary.write()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
