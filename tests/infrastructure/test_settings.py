"""CDK context parsing: bad values are refused at synth time with SettingsError naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App

from cdk.settings import SettingsError, load_settings


def settings_for(context: dict[str, Any]) -> Any:
    return load_settings(App(context=context).node)


def test_defaults() -> None:
    settings = settings_for({})
    assert settings.max_wait_seconds == 45 * 60
    assert settings.breakglass_group == "lifeline:breakglass"
    assert settings.agent_group == "lifeline:agents"
    assert settings.operators_group == "lifeline:operators"
    assert settings.operators_cluster_role == "cluster-admin"
    assert settings.allowed_outpost_arns == ()
    assert not settings.in_vpc and not settings.create_trail


def test_lists_accept_json_and_comma_separated_strings_from_the_command_line() -> None:
    arn = "arn:aws:iam::123456789012:role/agent"
    assert settings_for({"lifeline:agentPrincipalArns": f'["{arn}"]'}).agent_principal_arns == (arn,)
    assert settings_for({"lifeline:agentPrincipalArns": f"{arn},{arn}"}).agent_principal_arns == (arn, arn)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lifeline:allowedOutpostArns", ["arn:aws:outposts:us-west-2:123456789012:outpost/not-an-id"]),
        ("lifeline:agentPrincipalArns", ["arn:aws:iam::123456789012:group/admins"]),
        ("lifeline:agentPrincipalArns", [42]),
        ("lifeline:breakglassGroup", "system:masters"),
        ("lifeline:breakglassGroup", "bad group"),
        ("lifeline:operatorsGroup", "system:masters"),
        ("lifeline:operatorsGroup", "lifeline:agents"),
        ("lifeline:operatorsClusterRole", "Cluster Admin"),
        ("lifeline:maxWaitSeconds", 0),
        ("lifeline:maxWaitSeconds", "forever"),
        ("lifeline:pollIntervalSeconds", 100000),
        ("lifeline:createTrail", "maybe"),
        ("lifeline:vpcId", "vpc-0123456789abcdef0"),
        ("lifeline:subnetIds", ["subnet-0123456789abcdef0"]),
        ("lifeline:clusterNamePattern", "../etc"),
    ],
)
def test_bad_context_values_are_named(key: str, value: Any) -> None:
    with pytest.raises(SettingsError, match=key.split(":")[1].split("Ids")[0][:8]):
        settings_for({key: value})
