"""Work done in the requester's name (``lifeline-agent grant`` behind sudo) runs with their rights, not root's:
real fork, setresuid and file-system checks by the kernel."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from lifeline_agent.kubeconfig import write_new_file
from lifeline_agent.requester import Requester, as_requester

NOBODY = Requester(name="nobody", uid=65534, gid=65534, groups=(65534,))


def test_root_acting_for_a_user_cannot_write_where_that_user_cannot(shared_tmp: Path) -> None:
    roots = shared_tmp / "roots"
    roots.mkdir(mode=0o755)
    with pytest.raises(PermissionError) as raised:
        as_requester(NOBODY, lambda: write_new_file(roots / "x.sh", b"id > /tmp/owned\n"))
    assert raised.value.errno == errno.EACCES and list(roots.iterdir()) == []


def test_root_acting_for_a_user_creates_the_file_as_that_user(nobodys_dir: Path) -> None:
    theirs = nobodys_dir
    as_requester(NOBODY, lambda: write_new_file(theirs / "k", b"data", mode=0o600))
    info = (theirs / "k").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY.uid, NOBODY.gid, 0o600)
    with pytest.raises(FileExistsError):  # errors of the child come back with their own type
        as_requester(NOBODY, lambda: write_new_file(theirs / "k", b"again"))
    assert (theirs / "k").read_bytes() == b"data"


def test_a_failure_in_the_child_that_is_not_an_os_error_is_reported_not_swallowed(shared_tmp: Path) -> None:
    def broken() -> None:
        raise ValueError("boom")

    with pytest.raises(OSError, match="ValueError: boom"):
        as_requester(NOBODY, broken)


def test_the_requesters_own_process_does_the_work_itself(tmp_path: Path) -> None:
    me = Requester.of_this_process({})
    assert me.is_this_process and me.groups == tuple(os.getgroups())
    done: list[int] = []
    as_requester(me, lambda: done.append(os.getpid()))
    assert done == [os.getpid()]


def test_the_user_behind_sudo_brings_their_supplementary_groups() -> None:
    if os.getuid() != 0:
        pytest.skip("SUDO_* are believed only when root runs the command")
    behind = Requester.of_this_process({"SUDO_UID": "65534", "SUDO_GID": "65534"})
    assert (behind.name, behind.uid, behind.gid) == ("nobody", 65534, 65534)
    assert behind.groups == tuple(os.getgrouplist("nobody", 65534)) and not behind.is_this_process


def test_a_directory_the_user_may_write_but_not_read_is_refused_before_anything_is_issued(
        shared_tmp: Path, nobodys_dir: Path) -> None:  # fmt: skip
    from lifeline_agent.grant import _check_creatable

    blind = shared_tmp / "drop-box"
    blind.mkdir(mode=0o733)
    blind.chmod(0o733)  # -wx for the user: a file could be linked in, but not fsynced there
    with pytest.raises(PermissionError):
        as_requester(NOBODY, lambda: _check_creatable(blind / "alice.kubeconfig"))
    theirs = nobodys_dir
    as_requester(NOBODY, lambda: _check_creatable(theirs / "alice.kubeconfig"))
    with pytest.raises(FileNotFoundError):
        as_requester(NOBODY, lambda: _check_creatable(theirs / "missing" / "alice.kubeconfig"))
