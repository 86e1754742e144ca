"""Observer metrics, the /healthz verdict over real HTTP on loopback, and the JSON log redaction."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lifeline_agent.kubeconfig import build_kubeconfig, dump_kubeconfig
from lifeline_agent.observability import (
    QUIET_LIBRARIES,
    REDACTED,
    ClusterHealth,
    ClusterState,
    MetricsAddressError,
    Observer,
    configure_logging,
    parse_loopback_address,
    redact,
)
from prometheus_client.parser import text_string_to_metric_families

NOW = 1_800_000_000.0


@pytest.fixture
def kubeconfig_file(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\n")
    return path


def ready(cluster: str, path: Path, **changes: object) -> ClusterHealth:
    health = ClusterHealth(
        cluster=cluster,
        state=ClusterState.READY,
        kubeconfig_path=str(path),
        certificate_not_after=NOW + 3600,
        next_renewal=NOW + 2800,
        last_verified=NOW - 10,
        last_renewal=NOW - 600,
        last_error=None,
    )
    for key, value in changes.items():
        setattr(health, key, value)
    return health


def sample(observer: Observer, name: str, **labels: str) -> float | None:
    return observer.registry.get_sample_value(name, labels)


def test_publish_sets_one_state_and_the_timestamps(kubeconfig_file: Path) -> None:
    observer = Observer()
    observer.publish(ready("prod", kubeconfig_file))
    observer.publish(ready("prod", kubeconfig_file, state=ClusterState.RENEWING))
    states = {state: sample(observer, "lifeline_cluster_state", cluster="prod", state=state) for state in ClusterState}
    assert states == {state: (1.0 if state is ClusterState.RENEWING else 0.0) for state in ClusterState}
    assert sample(observer, "lifeline_certificate_expiry_timestamp_seconds", cluster="prod") == NOW + 3600
    assert sample(observer, "lifeline_kubeconfig_verified_timestamp_seconds", cluster="prod") == NOW - 10
    assert sample(observer, "lifeline_renewals_total", cluster="prod", result="failure") == 0.0
    assert [h.state for h in observer.snapshot()] == [ClusterState.RENEWING]


def test_renewals_are_counted_per_cluster_and_result() -> None:
    observer = Observer()
    observer.renewal("prod", "success")
    observer.renewal("prod", "success")
    observer.renewal("edge", "failure")
    assert sample(observer, "lifeline_renewals_total", cluster="prod", result="success") == 2.0
    assert sample(observer, "lifeline_renewals_total", cluster="edge", result="failure") == 1.0
    with pytest.raises(ValueError, match="success"):
        observer.renewal("prod", "maybe")


def test_link_state_is_a_gauge_and_logged_only_on_change(caplog: pytest.LogCaptureFixture) -> None:
    observer = Observer()
    caplog.set_level(logging.INFO, logger="lifeline_agent.observability")
    for up in (True, True, False, False, True):
        observer.link(up)
    messages = [r.getMessage() for r in caplog.records if "service link" in r.getMessage()]
    assert messages == ["service link connected", "service link disconnected", "service link connected"]
    assert sample(observer, "lifeline_service_link_up") == 1.0
    observer.link(False)
    assert sample(observer, "lifeline_service_link_up") == 0.0
    assert observer.link_up is False


def test_two_observers_do_not_share_metrics() -> None:
    first, second = Observer(), Observer()
    first.renewal("prod", "success")
    assert sample(second, "lifeline_renewals_total", cluster="prod", result="success") is None


def test_healthy_only_when_every_cluster_has_a_verified_unexpired_kubeconfig(
    kubeconfig_file: Path, tmp_path: Path
) -> None:
    observer = Observer()
    assert observer.healthy(NOW) == (False, "no cluster reported yet")
    observer.publish(ready("prod", kubeconfig_file))
    observer.publish(ready("edge", kubeconfig_file, state=ClusterState.RENEWING))
    assert observer.healthy(NOW)[0]

    cases = {
        "expired": ready("edge", kubeconfig_file, certificate_not_after=NOW - 1),
        "never verified": ready("edge", kubeconfig_file, last_verified=None),
        "no certificate": ready("edge", kubeconfig_file, certificate_not_after=None),
        "missing": ready("edge", tmp_path / "absent"),
        "needs-link": ready("edge", kubeconfig_file, state=ClusterState.NEEDS_LINK, last_error="certificate expired"),
        "revoked": ready("edge", kubeconfig_file, state=ClusterState.REVOKED),
        "pending": ready("edge", kubeconfig_file, state=ClusterState.PENDING),
    }
    for word, health in cases.items():
        observer.publish(health)
        ok, reason = observer.healthy(NOW)
        assert not ok
        assert reason.startswith("edge: ") and word in reason
        assert "prod" not in reason


@pytest.fixture
def endpoint_observer(kubeconfig_file: Path) -> Iterator[tuple[Observer, str]]:
    observer = Observer()
    with observer.serve("127.0.0.1:0") as endpoint:
        yield observer, endpoint.url


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_healthz_and_metrics_over_http(endpoint_observer: tuple[Observer, str], kubeconfig_file: Path) -> None:
    observer, url = endpoint_observer
    status, _, body = http_get(url + "/healthz")
    assert (status, body) == (503, "no cluster reported yet\n")

    future = time.time() + 3600
    observer.publish(ready("prod", kubeconfig_file, certificate_not_after=future))
    observer.renewal("prod", "success")
    observer.link(True)
    assert http_get(url + "/healthz")[0] == 200

    status, content_type, body = http_get(url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(body)}
    for name in (
        "lifeline_certificate_expiry_timestamp_seconds",
        "lifeline_renewals",
        "lifeline_kubeconfig_verified_timestamp_seconds",
        "lifeline_service_link_up",
        "lifeline_cluster_state",
    ):
        assert name in families
    expiry = families["lifeline_certificate_expiry_timestamp_seconds"].samples
    assert [(s.labels, s.value) for s in expiry] == [({"cluster": "prod"}, future)]
    assert "process_resident_memory_bytes" in body

    kubeconfig_file.unlink()
    status, _, body = http_get(url + "/healthz")
    assert status == 503 and "kubeconfig missing" in body
    assert http_get(url + "/nothing")[0] == 404


def test_ipv6_loopback_endpoint() -> None:
    with Observer().serve("[::1]:0") as endpoint:
        assert endpoint.url.startswith("http://[::1]:")
        assert http_get(endpoint.url + "/healthz")[0] == 503


@pytest.mark.parametrize("address", ["0.0.0.0:9877", "10.1.2.3:9877", "example.com:9877", "9877", "127.0.0.1:http"])
def test_metrics_address_must_be_loopback_host_and_port(address: str) -> None:
    with pytest.raises(MetricsAddressError, match="metrics address"):
        parse_loopback_address(address)


def test_default_metrics_address_parses() -> None:
    assert parse_loopback_address("127.0.0.1:9877") == ("127.0.0.1", 9877)
    assert parse_loopback_address("localhost:9877") == ("127.0.0.1", 9877)
    assert parse_loopback_address("[::1]:9877") == ("::1", 9877)


# --- JSON logs and redaction -------------------------------------------------------------------


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_library_levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield stream
    for name, level in saved_library_levels.items():
        logging.getLogger(name).setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_logs_are_json_lines_with_extras(json_logs: io.StringIO) -> None:
    logging.getLogger("lifeline_agent.loop").info("renewed %s", "prod", extra={"cluster": "prod", "attempt": 2})
    (line,) = log_lines(json_logs)
    assert line["message"] == "renewed prod"
    assert line["level"] == "INFO" and line["logger"] == "lifeline_agent.loop"
    assert line["cluster"] == "prod" and line["attempt"] == 2
    assert str(line["time"]).endswith("Z")


def test_a_private_key_passed_to_a_log_call_is_redacted(
    json_logs: io.StringIO, private_key_pem: str
) -> None:
    secret_body = private_key_pem.splitlines()[1]
    logger = logging.getLogger("lifeline_agent.keys")
    logger.warning("made key %s", private_key_pem)
    logger.info("details", extra={"key": private_key_pem, "nested": {"pem": [private_key_pem]}})
    try:
        raise ValueError(f"bad key {private_key_pem}")
    except ValueError:
        logger.exception("failed")
    output = json_logs.getvalue()
    assert secret_body not in output and "PRIVATE KEY" not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["message"] == f"made key {REDACTED}\n"
    assert lines[1]["key"] == REDACTED + "\n" and lines[1]["nested"] == {"pem": [REDACTED + "\n"]}
    assert REDACTED in str(lines[2]["exception"]) and "ValueError" in str(lines[2]["exception"])


def test_a_kubeconfig_logged_whole_loses_its_client_key(
    json_logs: io.StringIO, private_key_pem: str
) -> None:
    kubeconfig = build_kubeconfig(
        cluster_name="prod",
        server="https://127.0.0.1:6443",
        ca_pem=b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        user_name="lifeline",
        client_cert_pem=b"-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
        client_key_pem=private_key_pem.encode(),
    )
    text = dump_kubeconfig(kubeconfig).decode()
    key_data = kubeconfig["users"][0]["user"]["client-key-data"]
    logging.getLogger("x").info("wrote %s", text)
    logging.getLogger("x").info("as dict %s", kubeconfig)
    output = json_logs.getvalue()
    assert key_data not in output
    assert kubeconfig["users"][0]["user"]["client-certificate-data"] in output


def test_redact_keeps_certificates_and_removes_tokens_and_unterminated_keys() -> None:
    certificate = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----"
    assert redact(certificate) == certificate
    assert redact("-----BEGIN " "RSA PRIVATE KEY-----\nMIIEtruncat") == REDACTED
    assert redact("token k8s-aws-v1.aHR0cHM6Ly9zdHM_x-y end") == f"token k8s-aws-v1.{REDACTED} end"
    assert redact("no secrets here") == "no secrets here"


def test_library_chatter_is_quiet_unless_debugging(json_logs: io.StringIO) -> None:
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    logging.getLogger("lifeline_agent.link").info("probe")
    assert [line["logger"] for line in log_lines(json_logs)] == ["lifeline_agent.link"]
    configure_logging("DEBUG", stream=json_logs)
    logging.getLogger("botocore.credentials").debug("now visible")
    assert log_lines(json_logs)[-1]["message"] == "now visible"
