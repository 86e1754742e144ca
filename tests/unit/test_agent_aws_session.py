"""The agent's botocore session: its endpoint data is botocore's own, cut to the agent's services, and every
request the agent can make goes to the URL, and is signed for the region, that botocore's builtin data gives.

After a botocore upgrade that changes the endpoint data, regenerate the copy:
``.venv/bin/python -m tests.unit.test_agent_aws_session``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import botocore.loaders
import botocore.session
import pytest
from lifeline_agent import aws_session
from lifeline_agent.aws_session import (
    DATA_DIR,
    OPERATIONS,
    SERVICES,
    new_session,
    trimmed_endpoints,
    trimmed_service_model,
)

CALLS: dict[str, Callable[[Any], Any]] = {
    "sts": lambda c: c.get_caller_identity(),
    "secretsmanager": lambda c: c.get_secret_value(SecretId="lifeline/prod-1"),
    "eks": lambda c: c.describe_cluster(name="prod-1"),
    "cloudwatch": lambda c: c.put_metric_data(Namespace="Lifeline", MetricData=[{"MetricName": "OfflineAccessReady",
                                                                                 "Value": 1.0}]),
}


class _Sent(Exception):
    """Raised in place of sending: carries where the request would have gone and how it was signed."""


def _stop_before_sending(request: Any, **_: Any) -> None:
    authorization = request.headers.get("Authorization", b"")
    scope = authorization.decode().split("Credential=")[1].split(",")[0].split("/")[2:4] if authorization else []
    raise _Sent(request.url.split("?")[0], tuple(scope))


def _builtin_endpoints() -> dict[str, Any]:
    data, path = botocore.loaders.Loader().load_data_with_path("endpoints")
    assert botocore.loaders.Loader().is_builtin_path(path)
    return dict(data)


def _requests(session: botocore.session.Session, regions: list[str]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for region in regions:
        for service, call in CALLS.items():
            client = session.create_client(service, region_name=region)
            client.meta.events.register("before-send", _stop_before_sending)
            try:
                call(client)
            except _Sent as sent:
                seen[f"{service} {region}"] = sent.args
            except Exception as exc:  # noqa: BLE001 - an error is a result to compare too
                seen[f"{service} {region}"] = f"{type(exc).__name__}: {exc}"
    return seen


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for name in ("AWS_ENDPOINT_URL", "AWS_DATA_PATH", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
                 "AWS_PROFILE", "AWS_CONFIG_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    return monkeypatch


def test_the_copy_is_botocores_endpoint_data_cut_to_the_agents_services() -> None:
    shipped = json.loads((DATA_DIR / "endpoints.json").read_text())
    assert shipped == trimmed_endpoints(_builtin_endpoints()), "regenerate: python -m tests.unit.test_agent_aws_session"
    for partition in shipped["partitions"]:
        assert set(partition["services"]) <= set(SERVICES)
    assert any(set(partition["services"]) == set(SERVICES) for partition in shipped["partitions"])


def test_the_session_reads_the_copy_first(aws_environment: pytest.MonkeyPatch) -> None:
    aws_environment.setenv("AWS_DATA_PATH", "/opt/operator-models")
    loader = new_session().get_component("data_loader")
    assert loader.search_paths[:2] == [str(DATA_DIR), "/opt/operator-models"]
    _, path = loader.load_data_with_path("endpoints")
    assert path == str(DATA_DIR / "endpoints")


@pytest.mark.parametrize("fips", [False, True])
def test_every_request_goes_where_botocores_builtin_data_sends_it(aws_environment: pytest.MonkeyPatch,
                                                                    fips: bool) -> None:  # fmt: skip
    if fips:
        aws_environment.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    regions = [region for partition in _builtin_endpoints()["partitions"] for region in partition["regions"]]
    assert len(regions) > 30
    agents = _requests(new_session(), regions)
    assert agents == _requests(botocore.session.get_session(), regions)
    assert agents["sts us-west-2"] == (("https://sts-fips.us-west-2.amazonaws.com/" if fips else
                                        "https://sts.us-west-2.amazonaws.com/"), ("us-west-2", "sts"))  # fmt: skip


def test_dual_stack_keeps_botocores_own_data(aws_environment: pytest.MonkeyPatch) -> None:
    aws_environment.setenv("AWS_USE_DUALSTACK_ENDPOINT", "true")
    session = new_session()
    assert str(DATA_DIR) not in session.get_component("data_loader").search_paths
    assert _requests(session, ["us-west-2", "eu-west-1"]) == _requests(botocore.session.get_session(),
                                                                       ["us-west-2", "eu-west-1"])


def _builtin_model(service: str) -> tuple[dict[str, Any], str]:
    loader = botocore.loaders.Loader()
    version = loader.determine_latest_version(service, "service-2")
    data, path = loader.load_data_with_path(f"{service}/{version}/service-2")
    assert loader.is_builtin_path(path)
    return dict(data), version


def _model_path(service: str, version: str) -> Any:
    return DATA_DIR / service / version / "service-2.json"


def test_the_model_copies_are_botocores_cut_to_the_agents_operations(aws_environment: pytest.MonkeyPatch) -> None:
    for service, operations in OPERATIONS.items():
        builtin, version = _builtin_model(service)
        shipped = json.loads(_model_path(service, version).read_text())
        regenerate = "regenerate: python -m tests.unit.test_agent_aws_session"
        assert shipped == trimmed_service_model(builtin, operations), regenerate
        assert set(shipped["operations"]) == set(operations)
        model = new_session().get_service_model(service)  # the session reads the copy
        assert model.operation_names == list(operations)


def test_a_metric_report_is_the_same_request_with_the_copy(aws_environment: pytest.MonkeyPatch) -> None:
    def request(session: botocore.session.Session) -> tuple[str, bytes, dict[str, str]]:
        client = session.create_client("cloudwatch", region_name="eu-west-1")
        sent: list[Any] = []

        def stop(request: Any, **_: Any) -> None:
            sent.append(request)
            raise _Sent()

        client.meta.events.register("before-send", stop)
        with pytest.raises(_Sent):
            client.put_metric_data(Namespace="Lifeline", MetricData=[
                {"MetricName": "OfflineAccessReady", "Dimensions": [{"Name": "ClusterName", "Value": "edge-1"}],
                 "Value": 1.0, "Unit": "None"}])  # fmt: skip
        headers = {k: v for k, v in sent[0].headers.items() if k not in ("Authorization", "X-Amz-Date",
                                                                          "amz-sdk-invocation-id")}  # fmt: skip
        return sent[0].url, sent[0].body, {k: str(v) for k, v in headers.items()}

    assert request(new_session()) == request(botocore.session.get_session())


def write() -> None:
    data = trimmed_endpoints(_builtin_endpoints())
    (aws_session.DATA_DIR / "endpoints.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    for service, operations in OPERATIONS.items():
        model, version = _builtin_model(service)
        path = _model_path(service, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(trimmed_service_model(model, operations), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write()
