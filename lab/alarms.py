"""CloudWatch alarm evaluation for the lab Region: moto stores alarms but never evaluates them.

:func:`evaluate` applies an alarm's own definition (as ``describe_alarms`` returns it, however it got into
moto) to the metric data, the way CloudWatch does: the newest ``EvaluationPeriods`` complete periods before
``now``, one value per period (the metric's statistic, or the metric-math expression whose ``ReturnData`` is
true), compared with the threshold; ALARM when at least ``DatapointsToAlarm`` of them breach; periods without
a value handled as ``TreatMissingData`` says. :func:`evaluate_all` does it for every alarm of the Region and
records the outcome with ``set_alarm_state``, so ``describe_alarms`` shows it.

The metric-math subset: metric ids, numbers, ``+ - * /``, comparisons (``< <= > >= == !=``), ``AND OR NOT``,
parentheses, ``FILL(x, number)`` and ``IF(condition, a[, b])``. A series is a mapping period start -> value;
an operation on two series has a value where both have one; ``FILL`` gives every evaluated period a value.
Anything else is an :class:`UnsupportedAlarm` error rather than a guess.

The ``AWS/Outposts`` ``ConnectedStatus`` the readiness alarms read comes from the lab's Outposts service
(lab/region/outposts.py), which follows the service link and reaches an hour ahead: evaluate at a chosen time
rather than wait for it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Series = dict[int, float]
Value = float | Series
# (metric {Namespace, MetricName, Dimensions}, statistic, period start, period seconds) -> value or None
Fetch = Callable[[dict[str, Any], str, int, int], float | None]
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


class UnsupportedAlarm(ValueError):
    """The alarm uses something this evaluator does not implement (a function, an anomaly band...)."""


@dataclass(frozen=True)
class Verdict:
    state: str  # OK, ALARM or INSUFFICIENT_DATA
    reason: str
    values: tuple[float | None, ...]  # one per evaluated period, oldest first
    periods: tuple[int, ...]  # their start times (Unix seconds)


# --- the expression language ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(<=|>=|==|!=|&&|\|\||[-+*/()<>,!]))")


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise UnsupportedAlarm(f"cannot read the expression {expression!r} at {expression[position:]!r}")
        tokens.append(next(group for group in match.groups() if group is not None))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent, CloudWatch's precedence: OR < AND < NOT < comparison < + - < * / < unary minus."""

    def __init__(self, expression: str, lookup: Callable[[str], Value], grid: tuple[int, ...]) -> None:
        self.expression, self.tokens, self.position = expression, _tokens(expression), 0
        self.lookup, self.grid = lookup, grid

    def parse(self) -> Value:
        value = self._or()
        if self.position != len(self.tokens):
            raise UnsupportedAlarm(f"unexpected {self.tokens[self.position]!r} in {self.expression!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise UnsupportedAlarm(f"expected {expected or 'more'} in {self.expression!r}")
        self.position += 1
        return token

    def _or(self) -> Value:
        value = self._and()
        while (self._peek() or "").upper() in ("OR", "||"):
            self._take()
            value = _combine(value, self._and(), lambda a, b: float(bool(a) or bool(b)))
        return value

    def _and(self) -> Value:
        value = self._not()
        while (self._peek() or "").upper() in ("AND", "&&"):
            self._take()
            value = _combine(value, self._not(), lambda a, b: float(bool(a) and bool(b)))
        return value

    def _not(self) -> Value:
        if (self._peek() or "").upper() in ("NOT", "!"):
            self._take()
            return _map(self._not(), lambda a: float(not a))
        return self._comparison()

    def _comparison(self) -> Value:
        value = self._sum()
        operators: dict[str, Callable[[float, float], float]] = {
            "<": lambda a, b: float(a < b), "<=": lambda a, b: float(a <= b), ">": lambda a, b: float(a > b),
            ">=": lambda a, b: float(a >= b), "==": lambda a, b: float(a == b), "!=": lambda a, b: float(a != b),
        }  # fmt: skip
        while self._peek() in operators:
            operator = operators[self._take()]
            value = _combine(value, self._sum(), operator)
        return value

    def _sum(self) -> Value:
        value = self._product()
        while self._peek() in ("+", "-"):
            sign = self._take()
            value = _combine(value, self._product(), (lambda a, b: a + b) if sign == "+" else (lambda a, b: a - b))
        return value

    def _product(self) -> Value:
        value = self._unary()
        while self._peek() in ("*", "/"):
            operator = self._take()
            value = _combine(value, self._unary(), (lambda a, b: a * b) if operator == "*" else _divide)
        return value

    def _unary(self) -> Value:
        if self._peek() == "-":
            self._take()
            return _map(self._unary(), lambda a: -a)
        return self._atom()

    def _atom(self) -> Value:
        token = self._take()
        if token == "(":
            value = self._or()
            self._take(")")
            return value
        if re.fullmatch(r"\d+(?:\.\d+)?", token):
            return float(token)
        if self._peek() == "(":
            return self._call(token.upper())
        if not re.fullmatch(r"[a-z][A-Za-z0-9_]*", token):
            raise UnsupportedAlarm(f"{token!r} in {self.expression!r} is not a metric id")
        return self.lookup(token)

    def _arguments(self) -> list[Value]:
        self._take("(")
        arguments = [self._or()]
        while self._peek() == ",":
            self._take()
            arguments.append(self._or())
        self._take(")")
        return arguments

    def _call(self, name: str) -> Value:
        arguments = self._arguments()
        if name == "FILL" and len(arguments) == 2 and isinstance(arguments[1], float):
            series = _as_series(arguments[0], self.grid)
            return {start: series.get(start, arguments[1]) for start in self.grid}
        if name == "IF" and len(arguments) in (2, 3):
            condition = _as_series(arguments[0], self.grid)
            then, otherwise = arguments[1], arguments[2] if len(arguments) == 3 else None
            result: Series = {}
            for start, flag in condition.items():
                chosen = then if flag else otherwise
                value = chosen if isinstance(chosen, float) or chosen is None else chosen.get(start)
                if value is not None:
                    result[start] = value
            return result
        raise UnsupportedAlarm(f"{name}({len(arguments)} arguments) is not supported by the lab's evaluator")


def _divide(a: float, b: float) -> float:
    return a / b if b else math.nan


def _as_series(value: Value, grid: tuple[int, ...]) -> Series:
    return dict.fromkeys(grid, value) if isinstance(value, float) else value


def _map(value: Value, operation: Callable[[float], float]) -> Value:
    if isinstance(value, float):
        return operation(value)
    return {start: operation(v) for start, v in value.items()}


def _combine(left: Value, right: Value, operation: Callable[[float, float], float]) -> Value:
    if isinstance(left, float) and isinstance(right, float):
        return operation(left, right)
    if isinstance(left, float):
        return {start: operation(left, v) for start, v in _series(right).items()}
    if isinstance(right, float):
        return {start: operation(v, right) for start, v in left.items()}
    return {start: operation(v, right[start]) for start, v in left.items() if start in right}


def _series(value: Value) -> Series:
    assert not isinstance(value, float)
    return value


def evaluate_expression(expression: str, series: dict[str, Series], grid: tuple[int, ...]) -> Series:
    """``expression`` over ``series`` (metric id -> values) on the evaluated periods ``grid``."""

    def lookup(name: str) -> Value:
        if name not in series:
            raise UnsupportedAlarm(f"{expression!r} uses {name!r}, which is no metric or expression of the alarm")
        return series[name]

    return _as_series(_Parser(expression, lookup, grid).parse(), grid)


# --- alarms -----------------------------------------------------------------------------------------------


def _periods(alarm: dict[str, Any]) -> int:
    if alarm.get("Period"):
        return int(alarm["Period"])
    stats = [m["MetricStat"]["Period"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
    if not stats:
        raise UnsupportedAlarm(f"alarm {alarm.get('AlarmName')}: no period")
    return int(min(stats))


def _alarm_series(alarm: dict[str, Any], fetch: Fetch, grid: tuple[int, ...], period: int) -> Series:
    def fetched(metric: dict[str, Any], statistic: str) -> Series:
        values = {start: fetch(metric, statistic, start, period) for start in grid}
        return {start: value for start, value in values.items() if value is not None}

    if alarm.get("MetricName"):
        if not alarm.get("Statistic"):
            raise UnsupportedAlarm(f"alarm {alarm['AlarmName']}: only plain statistics (no percentiles)")
        metric = {key: alarm.get(key) for key in ("Namespace", "MetricName", "Dimensions")}
        return fetched(metric, alarm["Statistic"])
    entries = alarm.get("Metrics") or []
    computed: dict[str, Series] = {}
    for entry in entries:  # CloudWatch requires an expression's inputs to be listed before it
        if "MetricStat" in entry:
            stat = entry["MetricStat"]
            computed[entry["Id"]] = fetched(stat["Metric"], stat["Stat"])
        elif "Expression" in entry:
            computed[entry["Id"]] = evaluate_expression(entry["Expression"], computed, grid)
        else:
            raise UnsupportedAlarm(f"alarm {alarm['AlarmName']}: entry {entry.get('Id')} has neither")
    returned = [entry["Id"] for entry in entries if entry.get("ReturnData", True)]
    if len(returned) != 1:
        raise UnsupportedAlarm(f"alarm {alarm['AlarmName']}: exactly one entry must have ReturnData")
    return computed[returned[0]]


def evaluate(alarm: dict[str, Any], fetch: Fetch, now: float) -> Verdict:
    """The state CloudWatch would give ``alarm`` at ``now``."""
    if "ThresholdMetricId" in alarm or alarm.get("ComparisonOperator") not in COMPARISONS:
        raise UnsupportedAlarm(f"alarm {alarm.get('AlarmName')}: {alarm.get('ComparisonOperator')} (anomaly bands "
                               "are not supported)")  # fmt: skip
    period = _periods(alarm)
    count = int(alarm["EvaluationPeriods"])
    needed = int(alarm.get("DatapointsToAlarm") or count)
    newest = (int(now) // period) * period - period  # the newest complete period
    grid = tuple(newest - period * (count - 1 - k) for k in range(count))
    series = _alarm_series(alarm, fetch, grid, period)
    values = tuple(series.get(start) for start in grid)
    compare, threshold = COMPARISONS[alarm["ComparisonOperator"]], float(alarm["Threshold"])
    missing = alarm.get("TreatMissingData") or "missing"
    breaches = sum(1 for v in values if v is not None and not math.isnan(v) and compare(v, threshold))
    present = sum(1 for v in values if v is not None)
    if missing == "breaching":
        breaches += count - present
    shown = ", ".join("-" if v is None else f"{v:g}" for v in values)
    reason = (f"{breaches} of the last {count} datapoints breach the threshold {threshold:g} "
              f"({alarm['ComparisonOperator']}; values oldest first: [{shown}]; missing data: {missing})")  # fmt: skip
    if breaches >= needed:
        return Verdict("ALARM", reason, values, grid)
    if present == 0 and missing in ("missing", "ignore"):
        state = alarm.get("StateValue", "INSUFFICIENT_DATA") if missing == "ignore" else "INSUFFICIENT_DATA"
        return Verdict(state, f"no datapoints in the last {count} periods ({reason})", values, grid)
    return Verdict("OK", reason, values, grid)


def region_fetch(cloudwatch: Any) -> Fetch:
    """A :data:`Fetch` over ``GetMetricStatistics`` of the lab Region (one call per period: moto's buckets
    start at the first datapoint, CloudWatch's at the period boundary)."""

    def fetch(metric: dict[str, Any], statistic: str, start: int, period: int) -> float | None:
        answer = cloudwatch.get_metric_statistics(
            Namespace=metric["Namespace"], MetricName=metric["MetricName"],
            Dimensions=metric.get("Dimensions") or [], StartTime=dt.datetime.fromtimestamp(start, dt.UTC),
            EndTime=dt.datetime.fromtimestamp(start + period, dt.UTC), Period=period, Statistics=[statistic],
        )  # fmt: skip
        points = [point[statistic] for point in answer["Datapoints"]]
        if not points:
            return None
        combine = {"Maximum": max, "Minimum": min, "Sum": sum, "SampleCount": sum}.get(statistic)
        if combine is None:
            if len(points) > 1:
                raise UnsupportedAlarm(f"{statistic} over several buckets")
            return float(points[0])
        return float(combine(points))

    return fetch


def evaluate_all(cloudwatch: Any, now: float, *, prefix: str = "") -> dict[str, Verdict]:
    """Evaluate every metric alarm (named ``prefix``…) of the Region and record each new state in moto."""
    verdicts: dict[str, Verdict] = {}
    fetch = region_fetch(cloudwatch)
    pages = cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"])
    for page in pages:
        for alarm in page.get("MetricAlarms", []):
            verdict = verdicts[alarm["AlarmName"]] = evaluate(alarm, fetch, now)
            if verdict.state != alarm.get("StateValue") or verdict.reason != alarm.get("StateReason"):
                cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=verdict.state,
                                           StateReason=verdict.reason[:1023])  # fmt: skip
    return verdicts


@dataclass(frozen=True)
class RegionReadiness:
    lines: list[str]
    ready: float | None = None  # the newest OfflineAccessReady (Maximum)
    alarm_state: str | None = None

    @property
    def shows_ready(self) -> bool:
        return self.ready == 1.0 and self.alarm_state == "OK"


def readiness_report(cloudwatch: Any, cluster: str, outpost_id: str, *, since: float, timeout: float = 60,
                     sleep: Callable[[float], None] | None = None) -> RegionReadiness:  # fmt: skip
    """What the lab Region shows for ``cluster``: the agents' newest readiness report (waited for, up to
    ``timeout``, after ``since``) and the readiness alarm as CloudWatch will evaluate it when the report's
    period is complete (with the Outpost's ConnectedStatus as the service link is now)."""
    from lifeline_agent.contract import CLUSTER_DIMENSION, READINESS_ALARM_PREFIX, READINESS_NAMESPACE, READY_METRIC

    pause = sleep or time.sleep
    deadline = time.monotonic() + timeout
    dimensions = [{"Name": CLUSTER_DIMENSION, "Value": cluster}]

    def newest(metric: str) -> dict[str, Any] | None:
        answer = cloudwatch.get_metric_statistics(
            Namespace=READINESS_NAMESPACE, MetricName=metric, Dimensions=dimensions, Period=60,
            StartTime=dt.datetime.fromtimestamp(since - 60, dt.UTC),
            EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), Statistics=["Maximum"],
        )  # fmt: skip
        points = sorted(answer["Datapoints"], key=lambda point: point["Timestamp"])
        return points[-1] if points else None

    while (ready := newest(READY_METRIC)) is None:
        if time.monotonic() > deadline:
            return RegionReadiness([f"no readiness report for {cluster} in the Region after {timeout:g} s"])
        pause(1.0)
    left = newest("OfflineAccessSecondsLeft")
    lines = [f"CloudWatch {READINESS_NAMESPACE}/{READY_METRIC}{{ClusterName={cluster}}} = {ready['Maximum']:g} "
             f"at {ready['Timestamp']:%H:%M:%S}; OfflineAccessSecondsLeft = {left['Maximum'] if left else 0:.0f} s"]
    alarm = f"{READINESS_ALARM_PREFIX}{cluster}"
    reported = ready["Timestamp"].timestamp()
    described = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    if not described:
        return RegionReadiness([*lines, f"no alarm {alarm} in the Region"], ready["Maximum"])
    period = _periods(described[0])
    start = int(reported) // period * period
    verdict = evaluate_all(cloudwatch, start + period + 1, prefix=alarm)[alarm]
    lines.append(f"alarm {alarm} (Outpost {outpost_id}): {verdict.state} once this {period // 60}-minute "
                 f"period closes")
    return RegionReadiness(lines, ready["Maximum"], verdict.state)
