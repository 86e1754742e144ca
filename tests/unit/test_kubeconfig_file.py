import os
import stat

import pytest
from lifeline_agent import kubeconfig


def _config(**kw):
    return kubeconfig.build_kubeconfig(
        cluster_name="c1",
        server="https://127.0.0.1:6443",
        ca_pem=b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        user_name="u",
        tls_server_name="api.example",
        **kw,
    )


def test_client_certificate_kubeconfig_roundtrip():
    cfg = _config(client_cert_pem=b"cert", client_key_pem=b"key")
    loaded = kubeconfig.load_kubeconfig(kubeconfig.dump_kubeconfig(cfg))
    assert loaded["clusters"][0]["cluster"]["tls-server-name"] == "api.example"
    assert loaded["users"][0]["user"]["client-key-data"] == "a2V5"
    assert loaded["current-context"] == "c1"


def test_exactly_one_credential():
    with pytest.raises(ValueError):
        _config()
    with pytest.raises(ValueError):
        _config(client_cert_pem=b"c", client_key_pem=b"k", exec_plugin=kubeconfig.ExecPlugin("x"))
    with pytest.raises(ValueError):
        _config(client_cert_pem=b"c")


@pytest.mark.parametrize("data", [b"", b"{", b"kind: Config\n", b"- a\n", b"kind: Config\nclusters: []\n"])
def test_load_rejects_broken_files(data):
    with pytest.raises(ValueError):
        kubeconfig.load_kubeconfig(data)


def test_atomic_write_mode_and_no_temp_left(tmp_path):
    target = tmp_path / "kubeconfig"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    kubeconfig.atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kubeconfig"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "kubeconfig"
    target.write_bytes(b"old")
    with pytest.raises(KeyError):
        kubeconfig.atomic_write(target, b"new", group="no-such-group-lifeline")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["kubeconfig"]


def test_write_new_file_creates_it_whole_and_private(tmp_path):
    target = tmp_path / "alice.kubeconfig"
    kubeconfig.write_new_file(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["alice.kubeconfig"]


@pytest.mark.parametrize("planted", ["file", "symlink", "dangling symlink"])
def test_write_new_file_never_replaces_nor_follows_what_is_there(tmp_path, planted):
    target, elsewhere = tmp_path / "alice.kubeconfig", tmp_path / "elsewhere"
    if planted == "file":
        target.write_bytes(b"someone's")
    else:
        if planted == "symlink":
            elsewhere.write_bytes(b"untouched")
        target.symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        kubeconfig.write_new_file(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["alice.kubeconfig"] + (["elsewhere"] if planted == "symlink" else []))
    if planted == "file":
        assert target.read_bytes() == b"someone's"
    elif planted == "symlink":
        assert elsewhere.read_bytes() == b"untouched"
    else:
        assert not elsewhere.exists()


def test_write_new_file_removes_the_file_again_when_it_cannot_be_made_durable(tmp_path, monkeypatch):
    def failing_fsync(directory):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(kubeconfig, "_fsync_directory", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        kubeconfig.write_new_file(tmp_path / "alice.kubeconfig", b"new")
    assert list(tmp_path.iterdir()) == []
