"""Readiness reports (lifeline_agent.readiness): the metric values, silence while the link is down, and a
Region that does not answer costing a bounded wait and a counted failure (over a real loopback socket)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lifeline_agent.config import ConfigError, load_config, parse_config
from lifeline_agent.link import LinkMonitor
from lifeline_agent.observability import ClusterHealth, ClusterState, Observer
from lifeline_agent.readiness import ReadinessReporter, readiness_data
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SilentEndpoint

NOW = 1_800_000_000.0


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\n")
    return path


def health(kubeconfig: Path, cluster: str = "edge-1", **fields: object) -> ClusterHealth:
    values: dict[str, object] = {"state": ClusterState.READY, "certificate_not_after": NOW + 3600.4,
                                 "last_verified": NOW - 10, **fields}  # fmt: skip
    return ClusterHealth(cluster=cluster, kubeconfig_path=str(kubeconfig), **values)  # type: ignore[arg-type]


def values(data: list[dict[str, object]]) -> dict[tuple[str, str], object]:
    return {(d["Dimensions"][0]["Value"], d["MetricName"]): d["Value"] for d in data}  # type: ignore[index]


def test_ready_means_a_verified_unexpired_kubeconfig_on_disk(kubeconfig: Path, tmp_path: Path) -> None:
    healths = [
        health(kubeconfig, "ready"),
        health(kubeconfig, "renewing", state=ClusterState.RENEWING),  # the installed one still serves
        health(kubeconfig, "expired", certificate_not_after=NOW - 1),
        health(kubeconfig, "never-verified", last_verified=None),
        health(kubeconfig, "revoked", state=ClusterState.REVOKED),
        health(tmp_path / "missing", "no-file"),
        health(kubeconfig, "pending", state=ClusterState.PENDING, certificate_not_after=None, last_verified=None),
    ]
    data = readiness_data(healths, NOW)
    assert values(data) == {
        ("ready", "OfflineAccessReady"): 1.0, ("ready", "OfflineAccessSecondsLeft"): 3600.0,
        ("renewing", "OfflineAccessReady"): 1.0, ("renewing", "OfflineAccessSecondsLeft"): 3600.0,
        ("expired", "OfflineAccessReady"): 0.0, ("expired", "OfflineAccessSecondsLeft"): 0.0,
        ("never-verified", "OfflineAccessReady"): 0.0, ("never-verified", "OfflineAccessSecondsLeft"): 3600.0,
        ("revoked", "OfflineAccessReady"): 0.0, ("revoked", "OfflineAccessSecondsLeft"): 3600.0,
        ("no-file", "OfflineAccessReady"): 0.0, ("no-file", "OfflineAccessSecondsLeft"): 3600.0,
        ("pending", "OfflineAccessReady"): 0.0, ("pending", "OfflineAccessSecondsLeft"): 0.0,
    }  # fmt: skip
    assert {d["Timestamp"].timestamp() for d in data} == {NOW}  # type: ignore[union-attr]
    assert {d["Dimensions"][0]["Name"] for d in data} == {"ClusterName"}  # type: ignore[index]


def config(tmp_path: Path, **extra: object) -> object:
    document = {"clusters": ["edge-1"], "host_id": "h1", "region": "us-west-2", **extra}
    return parse_config(document, tmp_path / "agent.toml")


def reports(observer: Observer) -> dict[str, float]:
    families = text_string_to_metric_families(generate_latest(observer.registry).decode())
    return {s.labels["result"]: s.value for f in families if f.name == "lifeline_readiness_reports"
            for s in f.samples if s.name.endswith("_total")}  # fmt: skip


def test_nothing_is_sent_while_the_link_is_down_or_unknown(tmp_path: Path, kubeconfig: Path) -> None:
    probes: list[bool] = []
    link = LinkMonitor(lambda: probes.append(False) or False, 30)
    observer = Observer()
    reporter = ReadinessReporter(config(tmp_path, aws_endpoint_url="http://127.0.0.1:9"),  # type: ignore[arg-type]
                                 lambda: [health(kubeconfig)], link, observer)  # fmt: skip
    assert reporter.report() is False and probes == []  # unknown link: no probe, nothing sent
    assert reporter.report(probe_if_unknown=True) is False and probes == [False]
    assert reporter.report() is False and reports(observer) == {}  # down: quiet, nothing counted


def test_a_region_that_does_not_answer_costs_a_bounded_wait_and_a_counted_failure(
    tmp_path: Path, kubeconfig: Path, silent_endpoint: SilentEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    link = LinkMonitor(lambda: True, 30)
    link.is_up()
    observer = Observer()
    settings = config(tmp_path, aws_endpoint_url=silent_endpoint.url, timing={"api_timeout": "1s"})
    reporter = ReadinessReporter(settings, lambda: [health(kubeconfig)], link, observer)  # type: ignore[arg-type]
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        assert reporter.report() is False
        assert reporter.report() is False
    assert time.monotonic() - started < 2 * (1 + 1) + 1  # one try each, within the 1 s timeout (connect + read)
    assert reports(observer) == {"failure": 2.0}
    assert len([r for r in caplog.records if "cannot report readiness" in r.getMessage()]) == 1  # once per error


def test_a_disabled_configuration_reports_nothing(tmp_path: Path, kubeconfig: Path) -> None:
    link = LinkMonitor(lambda: True, 30)
    link.is_up()
    disabled = config(tmp_path, readiness_metrics=False, aws_endpoint_url="http://127.0.0.1:9")
    assert ReadinessReporter(disabled, lambda: [health(kubeconfig)], link).report() is False  # type: ignore[arg-type]


def test_readiness_settings_and_their_named_errors(tmp_path: Path) -> None:
    settings = config(tmp_path)
    assert settings.readiness_metrics is True and settings.readiness_interval == 60.0  # type: ignore[attr-defined]
    assert config(tmp_path, readiness_interval="5m").readiness_interval == 300.0  # type: ignore[attr-defined]
    for bad, message in (({"readiness_interval": "2s"}, "readiness_interval: '2s' is too short"),
                         ({"readiness_metrics": "yes"}, "readiness_metrics: expected bool"),
                         ({"readiness_interval": "soon"}, "readiness_interval: 'soon' is not a duration")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            config(tmp_path, **bad)
    path = tmp_path / "agent.toml"
    path.write_text('clusters = ["edge-1"]\nhost_id = "h1"\nreadiness_interval = "30s"\n')
    assert load_config(path).readiness_interval == 30.0
