import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lifeline_agent.contract import ClusterSecret, ContractError, secret_name

OUTPOST = "arn:aws:outposts:us-west-2:123456789012:outpost/op-0123456789abcdef0"


def _ca_pem(ca: bool | None = True) -> bytes:
    """A self-signed certificate; ``ca=None`` leaves BasicConstraints out."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CA = _b64(_ca_pem())


def _secret(**overrides):
    fields = dict(
        cluster_name="prod-1", cluster_arn="arn:aws:eks:us-west-2:123456789012:cluster/prod-1",
        endpoint="https://abc.gr7.us-west-2.eks.amazonaws.com", certificate_authority_data=CA,
        kubernetes_version="1.31", platform_version="eks-local-outposts.1", outpost_arns=(OUTPOST,),
        cluster_id="0b7f3d3c-1111-2222-3333-444455556666",
    )
    fields.update(overrides)
    return ClusterSecret(**fields)


def test_roundtrip_keeps_every_field_and_unknown_ones():
    secret = _secret()
    data = json.loads(secret.to_json())
    assert data["schemaVersion"] == 1
    assert len(data["caSha256"]) == 64
    data["futureField"] = {"x": 1}
    again = ClusterSecret.from_json(json.dumps(data))
    assert again == secret
    assert again.extra == {"futureField": {"x": 1}}
    assert again.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert again.token_cluster_id == "0b7f3d3c-1111-2222-3333-444455556666"
    assert again.secret_name == "lifeline/prod-1"


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(schemaVersion=2), "schemaVersion"),
        (lambda d: d.update(schemaVersion="1"), "schemaVersion"),
        (lambda d: d.pop("endpoint"), "endpoint"),
        (lambda d: d.update(endpoint="http://x"), "endpoint"),
        (lambda d: d.update(clusterName="../etc"), "clusterName"),
        (lambda d: d.update(certificateAuthorityData="not base64!"), "certificateAuthorityData"),
        (lambda d: d.update(certificateAuthorityData=base64.b64encode(b"junk").decode()), "certificateAuthorityData"),
        (lambda d: d.update(caSha256="0" * 64), "caSha256"),
        (lambda d: d.update(outpostArns=[]), "outpostArns"),
        (lambda d: d.update(outpostArns=[1]), "outpostArns"),
        (lambda d: d.update(breakglassGroup="system:masters"), "breakglassGroup"),
        (lambda d: d.update(kubernetesVersion=131), "kubernetesVersion"),
    ],
)
def test_bad_secrets_name_the_field(mutate, field):
    data = json.loads(_secret().to_json())
    mutate(data)
    with pytest.raises(ContractError, match=field):
        ClusterSecret.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "[]", "{", "x" * 70000])
def test_not_a_secret(text):
    with pytest.raises(ContractError):
        ClusterSecret.from_json(text)


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x" * 101, "名前"])
def test_secret_name_rejects_bad_cluster_names(name):
    with pytest.raises(ContractError):
        secret_name(name)


@pytest.mark.parametrize(
    "ca_pem, problem",
    [
        (_ca_pem() + _ca_pem(), "exactly one certificate"),
        (_ca_pem(ca=False), "not a CA"),
        (_ca_pem(ca=None), "not a CA"),
        (_ca_pem() + b"-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n", "certificateAuthorityData"),
    ],
    ids=["two-certificates", "ca-false", "no-basic-constraints", "second-block-garbage"],
)
def test_ca_data_is_exactly_one_ca_certificate(ca_pem, problem):
    with pytest.raises(ContractError, match=problem):
        _secret(certificate_authority_data=_b64(ca_pem))
    data = json.loads(_secret().to_json())
    data.update(certificateAuthorityData=_b64(ca_pem), caSha256=hashlib.sha256(ca_pem).hexdigest())
    with pytest.raises(ContractError, match=problem):
        ClusterSecret.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "endpoint, problem",
    [
        ("https://user:pass@abc.eks.amazonaws.com", "user information"),
        ("https://token@abc.eks.amazonaws.com", "user information"),
        ("https://abc.eks.amazonaws.com?x=1", "query or fragment"),
        ("https://abc.eks.amazonaws.com/?", "query or fragment"),
        ("https://abc.eks.amazonaws.com#frag", "query or fragment"),
        ("https://abc.eks.amazonaws.com:99999", "not a URL"),
        ("https://abc.eks.amazonaws.com/api", "not an https://host"),
    ],
)
def test_endpoints_with_userinfo_query_or_fragment_are_refused(endpoint, problem):
    with pytest.raises(ContractError, match=problem):
        _secret(endpoint=endpoint)


def test_a_plain_endpoint_with_port_is_kept():
    assert _secret(endpoint="https://10.0.0.5:6443/").endpoint == "https://10.0.0.5:6443"
