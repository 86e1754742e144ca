"""The lab's alarm evaluator (lab/alarms.py): its metric-math subset and CloudWatch's evaluation rules, on the
readiness alarm the workflow makes (lambdas/watch_readiness) and on plain alarms. Metric data comes from a
table here: the evaluator's logic is pure, the lab Region's GetMetricStatistics is the integration test's."""

from __future__ import annotations

from typing import Any

import pytest

from lab.alarms import UnsupportedAlarm, evaluate, evaluate_expression
from lambdas.models import ClusterView
from lambdas.watch_readiness.logic import alarm_definition

PERIOD = 300
NOW = 1_800_000_000 - 1_800_000_000 % PERIOD + 17  # 17 s into a period
GRID = tuple(NOW - NOW % PERIOD - PERIOD * k for k in (3, 2, 1))  # the three complete periods before NOW
OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890"


def table(points: dict[tuple[str, str], list[float | None]]):
    """A fetch over ``{(metric name, statistic): [value per period of GRID, oldest first]}``."""

    def fetch(metric: dict[str, Any], statistic: str, start: int, period: int) -> float | None:
        assert period == PERIOD and start in GRID
        values = points.get((metric["MetricName"], statistic))
        return None if values is None else values[GRID.index(start)]

    return fetch


def readiness_alarm() -> dict[str, Any]:
    cluster = ClusterView(name="edge-1", arn="arn:aws:eks:us-west-2:123456789012:cluster/edge-1", status="ACTIVE",
                          endpoint="https://10.0.0.1", certificateAuthorityData="x", version="1.31",
                          platformVersion="eks-local-outposts.1", outpostArns=[OUTPOST])  # fmt: skip
    return {**alarm_definition(cluster, topic_arn=None), "StateValue": "OK"}


CONNECTED = ("ConnectedStatus", "Minimum")
READY = ("OfflineAccessReady", "Maximum")


@pytest.mark.parametrize(("connected", "ready", "state"), [
    ([1, 1, 1], [1, 1, 1], "OK"),  # an agent ready all along
    ([1, 1, 1], None, "ALARM"),  # the agent stopped (sends nothing): missing readiness breaches
    ([1, 1, 1], [0, 0, 0], "ALARM"),  # the agent runs but its kubeconfig expired
    ([1, 1, 1], [0, None, 0], "ALARM"),
    ([0, 0, 0], None, "OK"),  # an outage: agents cannot report, and that is not missing offline access
    ([1, 0, 1], None, "OK"),  # disconnected during one period: not three periods in a row
    (None, None, "OK"),  # no connectivity data at all is not "connected"
    ([1, 1, 1], [None, None, 1], "OK"),  # ready again in the newest period
])  # fmt: skip
def test_the_readiness_alarm_fires_only_for_a_connected_outpost_without_a_ready_agent(connected, ready, state):
    points = {key: values for key, values in ((CONNECTED, connected), (READY, ready)) if values is not None}
    verdict = evaluate(readiness_alarm(), table(points), NOW)
    assert verdict.state == state, verdict.reason
    assert verdict.periods == GRID


def test_the_newest_period_is_the_last_complete_one() -> None:
    seen: list[int] = []

    def fetch(metric: dict[str, Any], statistic: str, start: int, period: int) -> float | None:
        seen.append(start)
        return 1.0

    evaluate(readiness_alarm(), fetch, NOW)
    assert max(seen) + PERIOD <= NOW and max(seen) + 2 * PERIOD > NOW


def plain(treat_missing: str, datapoints: int = 3) -> dict[str, Any]:
    return {"AlarmName": "plain", "Namespace": "N", "MetricName": "m", "Dimensions": [], "Statistic": "Maximum",
            "Period": PERIOD, "EvaluationPeriods": 3, "DatapointsToAlarm": datapoints, "Threshold": 5.0,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": treat_missing,
            "StateValue": "ALARM"}  # fmt: skip


@pytest.mark.parametrize(("values", "treat", "datapoints", "state"), [
    ([6, 7, 8], "missing", 3, "ALARM"),
    ([6, 5, 8], "missing", 3, "OK"),
    ([6, 5, 8], "missing", 2, "ALARM"),  # M of N
    ([None, None, None], "missing", 3, "INSUFFICIENT_DATA"),
    ([None, None, None], "ignore", 3, "ALARM"),  # keeps the current state
    ([None, None, None], "breaching", 3, "ALARM"),
    ([None, None, None], "notBreaching", 3, "OK"),
    ([6, None, 7], "breaching", 3, "ALARM"),
    ([6, None, 7], "notBreaching", 3, "OK"),
])  # fmt: skip
def test_comparison_datapoints_to_alarm_and_missing_data(values, treat, datapoints, state):
    verdict = evaluate(plain(treat, datapoints), table({("m", "Maximum"): values}), NOW)
    assert verdict.state == state, verdict.reason


def series(*values: float | None) -> dict[int, float]:
    return {start: v for start, v in zip(GRID, values, strict=True) if v is not None}


@pytest.mark.parametrize(("expression", "expected"), [
    ("a + b * 2", series(3, 6, None)),  # * before +; a value only where both series have one
    ("(a + b) * 2", series(4, 8, None)),
    ("-a + 10", series(9, 8, 7)),
    ("a >= 2 AND NOT b < 2", series(0, 1, None)),
    ("a == 1 OR b == 2", series(1, 1, None)),
    ("FILL(b, 0)", series(1, 2, 0)),
    ("IF(a > 1, 10, 20)", series(20, 10, 10)),
    ("IF(a > 1, b)", series(None, 2, None)),  # no else: no value; b has none in the newest period either
    ("IF(FILL(b, 0) < 1, 1, 0)", series(0, 0, 1)),
    ("a / 0", series(float("nan"), float("nan"), float("nan"))),
])  # fmt: skip
def test_the_metric_math_subset(expression: str, expected: dict[int, float]) -> None:
    result = evaluate_expression(expression, {"a": series(1, 2, 3), "b": series(1, 2, None)}, GRID)
    assert result.keys() == expected.keys()
    for start, value in expected.items():
        assert result[start] == value or (value != value and result[start] != result[start])


@pytest.mark.parametrize("expression", ["ANOMALY_DETECTION_BAND(a)", "a +", "FILL(a)", "c + 1", "a ? 1", "Foo"])
def test_what_the_subset_does_not_have_is_an_error(expression: str) -> None:
    with pytest.raises(UnsupportedAlarm):
        evaluate_expression(expression, {"a": series(1, 2, 3)}, GRID)


def test_an_anomaly_band_alarm_is_refused() -> None:
    with pytest.raises(UnsupportedAlarm):
        evaluate({**plain("missing"), "ComparisonOperator": "LessThanLowerThreshold"}, table({}), NOW)
