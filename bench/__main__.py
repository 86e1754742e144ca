"""``python -m bench [--quick|--smoke] [--backend B] [renewal|footprint|fleet|outage|lambda_package ...]``: run
benchmarks, write bench/results/ (or $BENCH_RESULTS_DIR).

With no names: renewal, fleet and lambda_package one after the other, then footprint and outage side by side (each
in its own process with its own labs: the idle periods and the outages overlap), then SUMMARY.md.

Control planes (each row of SUMMARY.md names its own): renewal, footprint and outage run on every backend that
can run here, one after the other, each in a lab of its own: emulated (the lab's API server) and real (etcd +
kube-apiserver + kube-controller-manager from ../shared/kube; where the binaries are missing, real is recorded as
skipped, with the reason); --backend picks some of them. Footprint's 50-cluster idle figure is emulated only (50
real control planes are 150 processes on 2 cores; the row says so). fleet runs one agent over 50 emulated and
10 real clusters (real skipped the same way) and the Region workflow on emulated ones; lambda_package uses no
control plane. Separately:
``python -m bench.lab_speed`` (signer delay on both backends, the emulated API server's request latency) and
``python -m bench.flap_heap`` (the link probe's heap; it talks to the Region only, no control plane).
--smoke is the shortest variant (a few rounds, seconds of idle/outage), to prove the benchmarks still run.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench import summary
from bench.backends import BACKENDS
from bench.common import run_and_write

NAMES = ("renewal", "footprint", "fleet", "outage", "lambda_package")
ON_EACH_BACKEND = ("renewal", "footprint", "outage")  # run(variant, backends)


def runner(name: str) -> Callable[..., dict[str, Any]]:
    module: Any = importlib.import_module(f"bench.{name}")  # each benchmark imports the lab only when it runs
    return module.run  # type: ignore[no-any-return]


def run_one(name: str, variant: str, backends: Sequence[str] | None = None) -> bool:
    """Run benchmark ``name`` and write its JSON; False when part of it failed (recorded in ``failures``)."""
    run = runner(name)
    args = (variant, backends) if name in ON_EACH_BACKEND and backends else (variant,)
    path, result = run_and_write(name, variant, lambda: run(*args))
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
                        help=f"control-plane backend(s) of {', '.join(ON_EACH_BACKEND)} (repeatable; default: "
                             "every one that can run here)")  # fmt: skip
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
        flags += [f"--backend={backend}" for backend in args.backends or ()]
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
