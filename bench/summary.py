"""bench/results/SUMMARY.md: the table of figures, made from the JSON results (``python -m bench.summary``).

Every row says which control plane it was measured on: ``emulated`` (the lab's API server), ``real``
(kube-apiserver from ../shared/kube), or none. renewal.json, footprint.json and outage.json have one entry per
backend under ``backends``; results written before that (the figures at the top) are the emulated backend's,
and real is shown as not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import DEFAULT_RESULTS, RESULTS, read_result


def _s(value: Any, unit: str = " s") -> str:
    return "-" if value is None else f"{value:g}{unit}" if isinstance(value, int | float) else str(value)


Row = tuple[str, str, str, str]  # figure, control plane, value, details
RENEWAL_BACKENDS = ("emulated", "real")


def renewal_backends(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``backend -> figures`` of a renewal result, old (``key_types`` at the top: emulated only) or new."""
    if "backends" in result:
        return dict(result["backends"])
    return {"emulated": {"key_types": result.get("key_types", {})},
            "real": {"not_run": "these results predate the real backend's renewal benchmark"}}  # fmt: skip


def backend_label(backend: str, figures: dict[str, Any]) -> str:
    version = figures.get("kubernetes_version")
    return f"{backend} ({version})" if version else backend


def by_backend(name: str, result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(backend, label, figures)`` of a result with ``backends`` (every known backend, the missing ones as not
    run); a result from before ``backends`` is one emulated run (its figures at the top)."""
    if "backends" not in result:
        return [("emulated", "emulated", result),
                ("real", "real", {"not_run": "these results predate the real backend in this benchmark"})]
    measured = dict(result["backends"])
    names = [*RENEWAL_BACKENDS, *(b for b in measured if b not in RENEWAL_BACKENDS)]
    missing = {b: {"not_run": f"not in this run (python -m bench --backend {b} {name})"} for b in names}
    figures = {b: measured.get(b, missing[b]) for b in names}
    return [(b, backend_label(b, figures[b]), figures[b]) for b in names]


def status_rows(figure: str, label: str, figures: dict[str, Any]) -> list[Row]:
    """A row for a backend that was skipped, failed or not run."""
    return [(figure, label, "**failed**" if status == "failed" else status.replace("_", " "), str(figures[status]))
            for status in ("skipped", "failed", "not_run") if status in figures]  # fmt: skip

def _floor_row(key_type: str, label: str, agent: dict[str, Any], floor: dict[str, Any], ratio: str, which: str,
               what: str) -> tuple[str, str, str, str]:  # fmt: skip
    return (f"Renewal, {key_type}: agent's full step vs the {which}API floor (median)", label,
            f"{agent['median'] * 1000:.1f} ms vs {floor['median'] * 1000:.1f} ms: {ratio}",
            f"{what} p10-p90 {floor['p10'] * 1000:.1f}-{floor['p90'] * 1000:.1f} ms; n = {floor['n']}")  # fmt: skip


def renewal_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    measured = renewal_backends(result)
    for backend in [*RENEWAL_BACKENDS, *(b for b in measured if b not in RENEWAL_BACKENDS)]:
        figures = measured.get(backend, {"not_run": "not in this run (python -m bench renewal)"})
        label = backend_label(backend, figures)
        rows += status_rows("Renewal: agent vs manual procedure", label, figures)
        for key_type, by_key in figures.get("key_types", {}).items():
            agent, manual = by_key["agent_seconds"], by_key["manual_seconds"]
            rows.append((
                f"Renewal, {key_type}: agent vs manual procedure (median)",
                label,
                f"{agent['median']:.3f} s vs {manual['median']:.3f} s: **{by_key['ratio_manual_over_agent_median']}x**",
                f"agent p10-p90 {agent['p10']:.3f}-{agent['p90']:.3f} s, "
                f"manual {manual['p10']:.3f}-{manual['p90']:.3f} s; n = {agent['n']} each",
            ))  # fmt: skip
            if "api_floor_seconds" in by_key:
                rows.append(_floor_row(key_type, label, agent, by_key["api_floor_seconds"],
                                       f"**{by_key['ratio_agent_over_api_floor_median']}x** (target <= 2)",
                                       "", "floor: key + CSR, one TLS connection (" + (
                                           "resumed: the certificate's context and session in hand, as the agent "
                                           "has them" if "api_floor_cold_seconds" in by_key else "a new TLS context "
                                           "and a full handshake: a run from before the floor resumed its session")
                                       + "), POST, approve, GET until issued (bench/api_floor.py); floor"))  # fmt: skip
            if "api_floor_cold_seconds" in by_key:
                rows.append(_floor_row(key_type, label, agent, by_key["api_floor_cold_seconds"],
                                       f"{by_key['ratio_agent_over_api_floor_cold_median']}x", "cold ",
                                       "the floor with a new TLS context and a full handshake every time (the first "
                                       "benchmarks' floor);"))  # fmt: skip
        if "acceptance" in figures:
            ratio = figures["acceptance"]["agent_default_vs_manual_rsa_4096"]
            rows.append(("Renewal: agent's default (ecdsa-p256) vs the manual procedure with RSA-4096 (medians)",
                         label, f"**{ratio}x** (target >= 40)",
                         "the manual procedure as DESIGN section 1 has it (openssl rsa:4096 + kubectl), same run"))
    return rows


def footprint_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for _, label, figures in by_backend("footprint", result):
        rows += status_rows("Footprint: lifeline-agent run idle and over link flaps", label, figures)
        if "idle_3" in figures or "clusters" in figures:
            rows += [(figure, label, value, details) for figure, value, details in _footprint_3(figures)]
            rows += _footprint_many_and_flaps(figures, label)
    return rows


def _footprint_3(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    result = figures.get("idle_3", figures)  # before backends: the 3-cluster figures at the top
    clusters = result.get("clusters")
    return [
        ("Start-up to READY=1 (sd_notify)", _s(result.get("startup_to_ready_seconds")),
         f"{clusters} clusters; every cluster ready after {_s(result.get('startup_to_all_clusters_ready_seconds'))}"),
        (f"Resident memory, idle, {clusters} clusters (VmRSS)", _s(_mib(result.get("idle_rss_kib_end")), " MiB"),
         f"peak VmHWM {_s(_mib(result.get('peak_rss_kib_vmhwm')), ' MiB')}; at READY "
         f"{_s(_mib(result.get('rss_kib_at_ready')), ' MiB')}"),
        (f"CPU time while idle for {_s(result.get('idle_seconds'))}", _s(result.get("idle_cpu_seconds")),
         f"{_s(result.get('idle_cpu_percent'), ' %')} of one core; {result.get('renewals_while_idle')} renewals"),
    ]  # fmt: skip


def _footprint_many_and_flaps(result: dict[str, Any], label: str) -> list[Row]:
    many, flaps = result.get("idle_many"), result.get("flaps")
    if many is None or flaps is None:  # results from before bench/footprint.py measured them
        return []
    rows: list[Row] = []
    if "not_measured" in many:
        rows.append(("Resident memory, idle, 50 clusters (VmRSS)", label, "not measured", many["not_measured"]))
    else:
        rows.append((f"Resident memory, idle, {many['clusters']} clusters (VmRSS)", label,
                     f"{_mib(many['idle_rss_kib_end'])} MiB",
                     f"{_s(_mib(result.get('rss_kib_per_extra_cluster')), ' MiB')} per cluster over 3; every cluster "
                     f"ready after {_s(many['startup_to_all_clusters_ready_seconds'])}; idle CPU "
                     f"{many['idle_cpu_percent']} %"))  # fmt: skip
    rows.append((f"Resident memory over {flaps['flaps']} service-link cuts and restores (VmRSS)", label,
                 f"{_mib(flaps['rss_kib_after_warm_up'])} -> {_mib(flaps['rss_kib_after_flaps'])} MiB",
                 f"{flaps['rss_growth_kib']} KiB after the first {flaps['warm_up_flaps']} flaps; 3 clusters, "
                 f"probe every 1 s, each change seen by the agent (median flap "
                 f"{_s(flaps['flap_seconds_median'])})"))  # fmt: skip
    return rows


def _mib(kib: Any) -> float | None:
    return round(kib / 1024, 1) if isinstance(kib, int | float) else None


FLEET_PASSES = (("bootstrap from nothing", "bootstrap_from_nothing", 10), ("renew every cluster",
                "renew_every_cluster", 5), ("verify every cluster", "verify_every_cluster", 2))  # fmt: skip


def fleet_rows(result: dict[str, Any]) -> list[Row]:
    """Per backend: each pass at the default bound against the serial baseline of the same run; the workflow."""
    workflow = result.get("workflow", {})
    if "agent_backends" in result:
        rows = [row for backend, agent in result["agent_backends"].items() for row in agent_rows(backend, agent)]
    else:  # before the serial baseline: one serial agent on the emulated backend
        rows = [(figure, "emulated", value, details) for figure, value, details in _serial_only_rows(result)]
    rows.append((f"Workflow, {workflow.get('events')} CreateCluster events at once", "emulated",
                 _s(workflow.get("events_to_all_executions_ended_seconds")),
                 f"{workflow.get('succeeded')}/{workflow.get('events')} succeeded, {workflow.get('secrets_stored')} "
                 "secrets stored (lab: 1 s polls, 1 s activation)"))  # fmt: skip
    return rows


def agent_rows(backend: str, agent: dict[str, Any]) -> list[Row]:
    if "skipped" in agent:
        return [("One agent, many clusters: `once` passes and `run`", backend, "skipped", str(agent["skipped"]))]
    count, ratios = agent.get("clusters"), agent.get("serial_over_default", {})
    default, serial = agent["modes"]["default"], agent["modes"]["serial"]
    bound = f"{default.get('max_concurrent_clusters')} at once vs 1"
    rows = []
    for label, key, target in FLEET_PASSES:
        d, s = default["once_passes"][key], serial["once_passes"][key]
        details = (f"{bound}; ready {d['ready']}/{d['clusters']} vs {s['ready']}/{s['clusters']}, certificates "
                   f"installed {d['certificates_installed']} vs {s['certificates_installed']}, exit {d['exit_code']} "
                   f"vs {s['exit_code']}")  # fmt: skip
        if key == "renew_every_cluster":
            lifetimes = [m["renewal_priming"][-1]["certificate_lifetime_seconds"] for m in (default, serial)]
            details += (f"; renewed at their deadline {d.get('renewed_at_deadline')} vs {s.get('renewed_at_deadline')}"
                        f" ({lifetimes[0]} s vs {lifetimes[1]} s certificates, from this run's pass times)")
        if count == 50 and backend == "emulated":
            details += f"; target <= {target} s"
        rows.append((f"One agent, {count} clusters, `once` pass: {label}", backend,
                     f"{d['seconds']:g} s vs {s['seconds']:g} s serial: **{ratios.get(key)}x**", details))  # fmt: skip
    rows.append((f"One agent, {count} clusters, `run` from nothing to all ready", backend,
                 f"{default['run_from_nothing_to_all_ready_seconds']:g} s vs "
                 f"{serial['run_from_nothing_to_all_ready_seconds']:g} s serial: "
                 f"**{ratios.get('run_from_nothing_to_all_ready')}x**",
                 f"first steps {bound}; unexpected reconcile errors {default['run_unexpected_reconcile_errors']} vs "
                 f"{serial['run_unexpected_reconcile_errors']}"))  # fmt: skip
    return rows


def _serial_only_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    agent = result.get("agent", {})
    passes = agent.get("once_passes", {})
    rows = []
    for label, key, _ in FLEET_PASSES:
        figures = passes.get(key, {})
        rows.append((f"One agent, {agent.get('clusters')} clusters, `once` pass: {label}", _s(figures.get("seconds")),
                     f"{figures.get('ready')}/{figures.get('clusters')} ready, "
                     f"{figures.get('certificates_installed')} certificates installed, "
                     f"exit {figures.get('exit_code')}"))
    rows.append((f"One agent, {agent.get('clusters')} clusters, `run` from nothing to all ready",
                 _s(agent.get("run_from_nothing_to_all_ready_seconds")),
                 f"unexpected reconcile errors: {agent.get('run_unexpected_reconcile_errors')}"))
    return rows


def outage_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for _, label, figures in by_backend("outage", result):
        rows += status_rows("Link down, 60 s certificates", label, figures)
        if "kubectl_calls" in figures:
            rows += [(figure, label, value, details) for figure, value, details in _outage(figures)]
    return rows


def _outage(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    schedule = result.get("schedule", {})
    shortest = schedule.get("shortest_seconds_between_renewals")
    return [
        (f"Link down {_s(result.get('outage_seconds'))}, 60 s certificates: failed kubectl calls",
         f"**{result.get('kubectl_failures')} / {result.get('kubectl_calls')}**",
         f"median kubectl {_s(result.get('kubectl_seconds', {}).get('median'))}"),
        ("Renewals while the link was down", str(result.get("renewals_during_outage")),
         f"the agent's deadline rule predicts {result.get('expected_renewals_from_schedule')} +- "
         f"{result.get('expected_renewals_standard_deviation')}; count matches: "
         f"{result.get('count_matches_schedule')}; every renewal inside its predecessor's window: "
         f"{schedule.get('on_schedule')}; none after its predecessor expired: "
         f"{not schedule.get('installed_after_predecessor_expired')}"
         + ("" if shortest is None else f"; shortest time between two renewals {_s(shortest)}")),
    ]  # fmt: skip


def lambda_package_rows(result: dict[str, Any]) -> list[Row]:
    from bench.lambda_package import summary_rows

    return summary_rows(result)


def lab_speed_rows(result: dict[str, Any]) -> list[Row]:
    from bench.lab_speed import summary_rows

    return summary_rows(result)


def flap_heap_rows(result: dict[str, Any]) -> list[Row]:
    from bench.flap_heap import summary_rows

    return summary_rows(result)


SECTIONS = (("renewal", renewal_rows), ("footprint", footprint_rows), ("fleet", fleet_rows), ("outage", outage_rows),
            ("lambda_package", lambda_package_rows), ("lab_speed", lab_speed_rows),
            ("flap_heap", flap_heap_rows))  # fmt: skip


def rows_of(name: str, result: dict[str, Any]) -> list[Row]:
    """The rows of one result, each naming its control plane (results from before a benchmark recorded its
    backends were made on the emulated one)."""
    return dict(SECTIONS)[name](result)


def table() -> str:
    lines = ["| Figure | Control plane | Value | Details |", "|---|---|---|---|"]
    sources = []
    shown_dir = "bench/results" if RESULTS == DEFAULT_RESULTS else str(RESULTS)
    for name, _ in SECTIONS:
        result = read_result(name)
        if result is None:
            lines.append(f"| {name} | - | not run | `python -m bench {name}` |")
            continue
        sources.append(f"`{shown_dir}/{name}.json` ({result.get('variant')} variant, {result.get('finished_at')})")
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows_of(name, result)]
    machine = next((r["machine"] for n, _ in SECTIONS if (r := read_result(n))), {})
    lines += ["", "Sources: " + "; ".join(sources) + ".",
              f"Machine: {machine.get('cpus')} CPUs, Python {machine.get('python')}, kubectl {machine.get('kubectl')}, "
              f"Linux {machine.get('kernel')}; the lab on the same machine: moto Region; control plane `emulated` "
              "is the lab's API server (in the benchmark's process for renewal), `real` is etcd + kube-apiserver + "
              "kube-controller-manager from ../shared/kube as separate processes; "
              "the load average before and at the end of each run is in its JSON (other work may share the machine)."]
    return "\n".join(lines) + "\n"


def write() -> Path:
    path = RESULTS / "SUMMARY.md"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text("# Measured (generated by `make bench`; do not edit)\n\n" + table())
    return path


if __name__ == "__main__":
    print(write())
