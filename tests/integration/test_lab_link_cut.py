"""The three cases of DESIGN §1 on the lab, with real kubectl: what a service-link cut does to IAM and
X.509 kubeconfigs of local and extended clusters, and that restoring the link brings IAM back."""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lab.drill import seconds_until_fresh_tokens
from tests.conftest import KubectlResult, both_backends, lab_of_backend

lab = pytest.fixture(name="lab")(lab_of_backend)

UNAUTHORIZED = "error: You must be logged in to the server (Unauthorized)"
TLS_TIMEOUT = "Unable to connect to the server: net/http: TLS handshake timeout"


def _lists_kubernetes_service(result: KubectlResult) -> bool:
    return result.rc == 0 and any(
        line.split()[:2] == ["kubernetes", "ClusterIP"] and "443/TCP" in line for line in result.stdout.splitlines()
    )


@both_backends
def test_link_cut_locks_out_iam_but_not_x509_and_restore_brings_iam_back(
    lab: Any, kubectl: Any, link_restored: Any, unique_name: str
) -> None:
    local = lab.create_local_cluster(f"{unique_name}-l")
    extended = lab.create_extended_cluster(f"{unique_name}-x")
    local_iam = lab.iam_kubeconfig(local.name)
    extended_iam = lab.iam_kubeconfig(extended.name)
    local_admin = lab.admin_kubeconfig(local.name)

    for kubeconfig in (local_iam, extended_iam, local_admin):
        result = kubectl(kubeconfig, "get", "svc")
        assert _lists_kubernetes_service(result), (kubeconfig, result)

    link_restored.cut()
    with ThreadPoolExecutor(max_workers=3) as pool:
        extended_call = pool.submit(kubectl, extended_iam, "get", "svc", timeout=120)  # ~50 s of retries
        local_call = pool.submit(kubectl, local_iam, "get", "svc", timeout=60)
        admin_call = pool.submit(kubectl, local_admin, "get", "svc", timeout=60)
        case2, case3, case1 = local_call.result(), admin_call.result(), extended_call.result()

    assert case1.rc == 1 and case1.stderr.strip().endswith(TLS_TIMEOUT), case1
    assert case2.rc == 1 and UNAUTHORIZED in case2.stderr, case2
    assert _lists_kubernetes_service(case3), case3

    link_restored.restore()
    assert _lists_kubernetes_service(kubectl(local_iam, "get", "svc")), "IAM must work again after restore"
    assert _lists_kubernetes_service(kubectl(extended_iam, "get", "svc"))


def _status_with_token(server: str, ca_pem: bytes, token: str) -> int:
    parsed = urllib.parse.urlsplit(server)
    context = ssl.create_default_context(cadata=ca_pem.decode())
    connection = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context, timeout=30)
    try:
        connection.request("GET", "/api/v1/namespaces/default/services", headers={"Authorization": f"Bearer {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.xdist_group("real-lab")
def test_the_real_api_server_takes_a_token_it_accepted_again_after_the_cut_but_not_a_new_one(
    real_lab: Any, link_restored: Any, unique_name: str
) -> None:
    """kube-apiserver caches a successful token review for 10 s keyed by the token (no flag), and an EKS
    token is signed to the second: why the drill makes its after-the-cut calls in a later second."""
    from lifeline_agent.eks_token import get_token

    from lab.region import REGION_NAME

    cluster = real_lab.create_local_cluster(f"{unique_name}-l")
    info = real_lab.describe_cluster(cluster.name)
    session = real_lab.creator.boto3_session()

    def token() -> str:
        return get_token(cluster.name, session=session, region=REGION_NAME,
                         endpoint_url=real_lab.outpost_region_url).token  # fmt: skip

    accepted = token()
    assert _status_with_token(info.endpoint, info.ca_pem, accepted) == 200
    link_restored.cut()
    assert _status_with_token(info.endpoint, info.ca_pem, accepted) == 200, "served from the 10 s cache"
    time.sleep(seconds_until_fresh_tokens(time.time(), time.time()))
    fresh = token()
    assert fresh != accepted
    assert _status_with_token(info.endpoint, info.ca_pem, fresh) == 401
