"""The per-cluster store: atomic install, modes, the previous generation, the cache."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest
from lifeline_agent import kubeconfig as kc
from lifeline_agent import store as store_module
from lifeline_agent.store import ClusterStore, StoreError, known_clusters


def config(tag: str) -> dict:
    return kc.build_kubeconfig(cluster_name="edge", server="https://127.0.0.1:6443", ca_pem=b"CA", user_name="u",
                               client_cert_pem=f"cert-{tag}".encode(), client_key_pem=f"key-{tag}".encode(),
                               tls_server_name="api.edge.local")


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_install_writes_0600_and_keeps_the_previous_generation(tmp_path):
    store = ClusterStore(tmp_path / "edge")
    assert store.current() is None
    store.install(config("1"), b"KEY-1")
    assert mode(store.directory) == 0o700
    assert mode(store.kubeconfig_path) == 0o600
    assert mode(store.path("key.pem")) == 0o600
    assert store.path("key.pem").read_bytes() == b"KEY-1"
    assert not store.path("kubeconfig.prev").exists()
    first_inode = store.kubeconfig_path.stat().st_ino

    store.install(config("2"), b"KEY-2")
    assert store.current()["users"][0]["user"]["client-certificate-data"] == "Y2VydC0y"  # cert-2
    previous = kc.load_kubeconfig(store.path("kubeconfig.prev").read_bytes())
    assert previous["users"][0]["user"]["client-certificate-data"] == "Y2VydC0x"  # cert-1
    assert mode(store.path("kubeconfig.prev")) == 0o600
    assert store.kubeconfig_path.stat().st_ino != first_inode  # replaced by rename, not rewritten in place
    assert sorted(p.name for p in store.directory.iterdir()) == ["key.pem", "kubeconfig", "kubeconfig.prev"]


def test_stale_session_directories_are_removed(tmp_path):
    store = ClusterStore(tmp_path / "edge")
    store.ensure()
    (store.directory / ".session-abc").mkdir()
    (store.directory / ".session-abc" / "client.key").write_bytes(b"KEY")
    store.remove_stale_sessions()
    assert list(store.directory.iterdir()) == []


def test_a_failed_swap_leaves_the_installed_kubeconfig_untouched(tmp_path, monkeypatch):
    store = ClusterStore(tmp_path / "edge")
    store.install(config("1"), b"KEY-1")
    before = store.kubeconfig_path.read_bytes()

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        store.install(config("2"), b"KEY-2")
    assert store.kubeconfig_path.read_bytes() == before
    assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]


def test_operators_group_gets_read_access(tmp_path):
    group = grp.getgrgid(os.getgid()).gr_name if os.geteuid() != 0 else "daemon"
    store = ClusterStore(tmp_path / "edge", operators_group=group)
    store.install(config("1"), b"KEY-1")
    store.install(config("2"), b"KEY-2")
    gid = grp.getgrnam(group).gr_gid
    assert (mode(store.directory), store.directory.stat().st_gid) == (0o750, gid)
    for name in ("kubeconfig", "kubeconfig.prev"):
        assert mode(store.path(name)) == 0o640
        assert store.path(name).stat().st_gid == gid
    assert mode(store.path("key.pem")) == 0o600


def test_a_corrupt_kubeconfig_is_a_named_error(tmp_path):
    store = ClusterStore(tmp_path / "edge")
    store.ensure()
    store.kubeconfig_path.write_bytes(b"apiVersion: v1\nkind: Con")
    with pytest.raises(StoreError, match="kubeconfig"):
        store.current()


def test_cache_round_trip_and_known_clusters(tmp_path, lab_free_secret):
    store = ClusterStore(tmp_path / "edge")
    assert store.load_cache() is None
    cached = store_module.CachedCluster(secret=lab_free_secret, ips=("127.0.0.2", "127.0.0.1"), fetched_at=12.5)
    store.save_cache(cached)
    assert store.load_cache() == cached
    assert mode(store.path("cluster.json")) == 0o600
    assert known_clusters(tmp_path) == ["edge"]
    store.path("cluster.json").write_text("{not json")
    with pytest.raises(StoreError, match="cluster.json"):
        store.load_cache()


@pytest.fixture
def lab_free_secret():
    import base64

    from lifeline_agent.contract import ClusterSecret

    from lab.pki import ClusterCA

    ca_pem = ClusterCA.create("kubernetes").cert_pem
    return ClusterSecret(cluster_name="edge", cluster_arn="arn:aws:eks:us-west-2:123456789012:cluster/edge",
                         endpoint="https://api.edge.local:6443",
                         certificate_authority_data=base64.b64encode(ca_pem).decode(), kubernetes_version="1.31",
                         platform_version="eks-local-outposts.1",
                         outpost_arns=("arn:aws:outposts:us-west-2:123456789012:outpost/op-0abcdef1234567890",))


def test_install_makes_every_file_durable_before_its_rename_with_three_fsyncs(tmp_path, monkeypatch):
    store = ClusterStore(tmp_path / "edge")
    store.install(config("1"), b"KEY-1")
    old_inode = store.kubeconfig_path.stat().st_ino
    events: list[tuple[str, str]] = []
    fsync, replace, link = os.fsync, os.replace, os.link

    def recorded_fsync(fd: int) -> None:
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        fsync(fd)

    def recorded_replace(source: str, target: Path) -> None:
        events.append(("replace", os.path.basename(source)))
        replace(source, target)

    def recorded_link(source: Path, target: str) -> None:
        events.append(("link", os.path.basename(target)))
        link(source, target)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    monkeypatch.setattr(os, "link", recorded_link)
    store.install(config("2"), b"KEY-2")

    renamed = [name for kind, name in events if kind == "replace"]
    assert [name.split(".")[1] for name in renamed] == ["kubeconfig", "kubeconfig", "key"]  # prev, new, key
    before_renames = events[: events.index(("replace", renamed[0]))]
    for name in renamed:  # written and fsynced, or a link to the installed (durable) inode, before any rename
        assert ("fsync", name) in before_renames or ("link", name) in before_renames, events
    assert events[-1] == ("fsync", "edge")  # then the directory, once, after the last rename
    assert [kind for kind, _ in events].count("fsync") == 3  # was 6: a data and a directory fsync per file
    assert store.path("kubeconfig.prev").stat().st_ino == old_inode  # the old kubeconfig itself, not a copy
    assert store.current()["users"][0]["user"]["client-certificate-data"] == "Y2VydC0y"  # cert-2
    assert store.path("key.pem").read_bytes() == b"KEY-2"


def test_a_previous_generation_with_other_permissions_is_copied_with_the_ones_configured(tmp_path):
    group = grp.getgrgid(os.getgid()).gr_name if os.geteuid() != 0 else "daemon"
    ClusterStore(tmp_path / "edge").install(config("1"), b"KEY-1")  # 0600, before operators_group was set
    store = ClusterStore(tmp_path / "edge", operators_group=group)
    store.install(config("2"), b"KEY-2")
    assert mode(store.path("kubeconfig.prev")) == 0o640
    assert store.path("kubeconfig.prev").stat().st_gid == grp.getgrnam(group).gr_gid
    assert kc.load_kubeconfig(store.path("kubeconfig.prev").read_bytes())["users"][0]["user"][
        "client-certificate-data"] == "Y2VydC0x"  # cert-1


def test_an_install_that_cannot_write_every_file_changes_none_and_leaves_nothing(tmp_path):
    ClusterStore(tmp_path / "edge").install(config("1"), b"KEY-1")
    before = {p.name: p.read_bytes() for p in (tmp_path / "edge").iterdir()}
    store = ClusterStore(tmp_path / "edge", operators_group="no-such-group-lifeline")
    with pytest.raises(KeyError):
        store.install(config("2"), b"KEY-2")
    assert {p.name: p.read_bytes() for p in store.directory.iterdir()} == before


def test_an_install_failing_on_its_last_file_changes_none_and_leaves_nothing(tmp_path, monkeypatch):
    store = ClusterStore(tmp_path / "edge")
    store.install(config("1"), b"KEY-1")
    before = {p.name: p.read_bytes() for p in store.directory.iterdir()}
    calls, real_fchmod = [], os.fchmod

    def fchmod(fd, mode):  # the new kubeconfig's temp file is made, the key's fails (kubeconfig.prev is a link)
        calls.append(mode)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", fchmod)
    with pytest.raises(OSError, match="No space"):
        store.install(config("2"), b"KEY-2")
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in store.directory.iterdir()} == before  # no temp file either
