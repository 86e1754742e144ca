"""The pure parts of the lab's CloudFormation patches (lab/region/moto_patches.py); the patches themselves
run in tests/integration/test_cdk_deploy.py against the stack the CDK CLI deployed."""

from __future__ import annotations

from lab.region.moto_patches import _loopback_template_location, _state_machine_configuration


def test_a_path_style_template_url_on_loopback_names_bucket_and_key() -> None:
    url = "http://127.0.0.1:43123/cdk-hnb659fds-assets-123456789012-us-west-2/abc/def.json"
    assert _loopback_template_location(url) == ("cdk-hnb659fds-assets-123456789012-us-west-2", "abc/def.json")
    assert _loopback_template_location("http://localhost:5000/bucket/key.json") == ("bucket", "key.json")


def test_a_template_url_elsewhere_is_left_to_moto() -> None:
    assert _loopback_template_location("https://bucket.s3.us-west-2.amazonaws.com/key.json") is None
    assert _loopback_template_location("https://s3.amazonaws.com/bucket/key.json") is None


def test_state_machine_logging_and_tracing_in_the_api_shape() -> None:
    properties = {
        "LoggingConfiguration": {"Level": "ALL", "IncludeExecutionData": False,
                                 "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": "arn:log"}}]},
        "TracingConfiguration": {"Enabled": True},
    }  # fmt: skip
    assert _state_machine_configuration(properties) == {
        "loggingConfiguration": {"level": "ALL", "includeExecutionData": False,
                                 "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": "arn:log"}}]},
        "tracingConfiguration": {"enabled": True},
    }  # fmt: skip
    assert _state_machine_configuration({}) == {}
