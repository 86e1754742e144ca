"""``python -m bench [--quick|--smoke] [--backend B] [renewal|footprint|fleet|outage|lambda_package ...]``: run
benchmarks, write bench/results/ (or $BENCH_RESULTS_DIR).

With no names: renewal, fleet and lambda_package one after the other, then footprint and outage side by side (each
in its own process with its own lab: the 10-minute idle and the 10-minute outage overlap), then SUMMARY.md.
renewal runs on every control-plane backend that can run here (emulated, and real when ../shared/kube has
the binaries; else real is recorded as skipped, with the reason); the others run on the emulated one.
--smoke is the shortest variant (a few rounds, seconds of idle/outage), to prove the benchmarks still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import summary
from bench.common import write_result

BACKENDS = ("emulated", "real")  # bench.renewal.BACKENDS (not imported here: it pulls in the lab)

NAMES = ("renewal", "footprint", "fleet", "outage", "lambda_package")


def runner(name: str) -> Callable[[str], dict[str, Any]]:
    if name == "renewal":
        from bench.renewal import run
    elif name == "footprint":
        from bench.footprint import run
    elif name == "fleet":
        from bench.fleet import run
    elif name == "lambda_package":
        from bench.lambda_package import run
    else:
        from bench.outage import run
    return run


def run_one(name: str, variant: str, backends: Sequence[str] | None = None) -> bool:
    """Run benchmark ``name`` and write its JSON; False when part of it failed (recorded in ``failures``)."""
    started = time.monotonic()
    if name == "renewal" and backends:
        from bench.renewal import run as run_renewal

        result = run_renewal(variant, backends)
    else:
        result = runner(name)(variant)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    path = write_result(name, variant, result)
    print(f"{name}: wrote {path} ({result['wall_seconds']} s)", flush=True)
    for failure in result.get("failures", []):
        print(f"{name}: FAILED {failure}", file=sys.stderr, flush=True)
    return not result.get("failures")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(NAMES) + " (default: all)")
    variants = parser.add_mutually_exclusive_group()
    variants.add_argument("--quick", action="store_true", help="short variant (1-2 min idle/outage, fewer rounds)")
    variants.add_argument("--smoke", action="store_true", help="shortest variant (3 rounds, 15-30 s idle/outage)")
    parser.add_argument("--backend", action="append", choices=BACKENDS, dest="backends",
                        help="control-plane backend(s) of renewal (repeatable; default: all)")  # fmt: skip
    args = parser.parse_args(argv)
    variant = "smoke" if args.smoke else "quick" if args.quick else "full"
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    ok = True
    if args.names:
        for name in args.names:
            ok = run_one(name, variant, args.backends) and ok
    else:
        for name in ("renewal", "fleet", "lambda_package"):
            ok = run_one(name, variant, args.backends) and ok
        flags = {"smoke": ["--smoke"], "quick": ["--quick"]}.get(variant, [])
        children = [subprocess.Popen([sys.executable, "-m", "bench", *flags, name]) for name in ("footprint", "outage")]
        codes = [child.wait() for child in children]
        if any(codes):
            print(f"footprint/outage exit codes: {codes}", file=sys.stderr)
            summary.write()
            return 1
    print(f"wrote {summary.write()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
