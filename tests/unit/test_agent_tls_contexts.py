"""TLS client contexts: built once per (CA, certificate, key), the key loaded from memory, errors named."""

from __future__ import annotations

import os

import pytest
from lifeline_agent import tls_contexts

from lab.pki import ClusterCA


@pytest.fixture(autouse=True)
def empty_cache():
    tls_contexts.forget_all()
    yield
    tls_contexts.forget_all()


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create(key_type="ec")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_same_credential_gets_the_same_context_and_another_key_another(ca: ClusterCA) -> None:
    first, second = ca.issue_client_cert("lifeline:a", ["lifeline:breakglass"]), ca.issue_client_cert("lifeline:a")
    context = tls_contexts.client_context(ca.cert_pem, first)
    assert tls_contexts.client_context(ca.cert_pem, first) is context
    assert tls_contexts.client_context(ca.cert_pem, second) is not context
    assert tls_contexts.client_context(ca.cert_pem, None) is not context


def test_the_key_is_loaded_from_an_in_memory_file_that_is_closed_at_once(ca: ClusterCA, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = open_descriptors()
    tls_contexts.client_context(ca.cert_pem, ca.issue_client_cert("lifeline:a"))
    assert open_descriptors() == before
    assert list(tmp_path.iterdir()) == []


def test_a_key_that_is_not_the_certificates_is_a_named_error(ca: ClusterCA) -> None:
    cert_pem, _ = ca.issue_client_cert("lifeline:a")
    _, other_key = ca.issue_client_cert("lifeline:b")
    with pytest.raises(tls_contexts.ContextError, match="client certificate is not usable"):
        tls_contexts.client_context(ca.cert_pem, (cert_pem, other_key))


def test_ca_data_that_is_not_a_certificate_is_a_named_error() -> None:
    with pytest.raises(tls_contexts.ContextError, match="CA data"):
        tls_contexts.client_context(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", None)


def test_the_cache_keeps_the_most_recently_used(ca: ClusterCA, monkeypatch) -> None:
    monkeypatch.setattr(tls_contexts, "CACHE_SIZE", 2)
    a, b, c = (ca.issue_client_cert(f"lifeline:{n}") for n in "abc")
    context_a = tls_contexts.client_context(ca.cert_pem, a)
    context_b = tls_contexts.client_context(ca.cert_pem, b)
    assert tls_contexts.client_context(ca.cert_pem, a) is context_a  # a is now the most recent
    tls_contexts.client_context(ca.cert_pem, c)  # evicts b
    assert tls_contexts.client_context(ca.cert_pem, a) is context_a
    assert tls_contexts.client_context(ca.cert_pem, b) is not context_b  # built again


def test_without_memfd_create_the_key_goes_through_a_private_directory_removed_at_once(ca: ClusterCA, tmp_path,
                                                                                        monkeypatch) -> None:
    monkeypatch.delattr(tls_contexts.os, "memfd_create")
    monkeypatch.setattr(tls_contexts.tempfile, "tempdir", str(tmp_path))
    context = tls_contexts.client_context(ca.cert_pem, ca.issue_client_cert("lifeline:a"))
    assert context.context.cert_store_stats()["x509_ca"] == 1
    assert list(tmp_path.iterdir()) == []
