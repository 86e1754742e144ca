"""Who runs a command, and file work done with that person's rights: the user behind ``sudo`` when root runs
``lifeline-agent grant`` for them.

Root writing a file where the person asked and handing it over with ``chown`` would let them create a file
they own in any directory root can write (``/etc/profile.d``, ``/etc/systemd/system``...). So what is done in
the person's name (checking that they may create the file, creating it) is done by a forked child that has
dropped to their user, group and supplementary groups first: the kernel then checks their rights, not root's.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Requester:
    """Who runs the command: the user behind ``sudo`` when root runs it for them."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    @classmethod
    def of_this_process(cls, environ: dict[str, str] | None = None) -> Requester:
        environ = dict(os.environ if environ is None else environ)
        uid, gid = os.getuid(), os.getgid()
        sudo_uid, sudo_gid = environ.get("SUDO_UID", ""), environ.get("SUDO_GID", "")
        behind_sudo = uid == 0 and sudo_uid.isdigit() and sudo_gid.isdigit()
        if behind_sudo:
            uid, gid = int(sudo_uid), int(sudo_gid)
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = f"uid-{uid}"
        if not behind_sudo:
            groups = tuple(os.getgroups())
        elif name.startswith("uid-"):
            groups = (gid,)
        else:
            groups = tuple(os.getgrouplist(name, gid))
        return cls(name=name, uid=uid, gid=gid, groups=groups)

    @property
    def is_this_process(self) -> bool:
        return self.uid == os.geteuid()

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid})"


def as_requester(requester: Requester, action: Callable[[], None]) -> None:
    """Run ``action`` with ``requester``'s rights: here when this process is that user, else in a forked child
    that first drops to their groups, group and user. An :class:`OSError` of the action is raised here again
    (errno, message, file name); any other failure of the child as :class:`OSError` too."""
    if requester.is_this_process:
        action()
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here, whatever happens
        outcome: dict[str, object] = {"ok": True}
        try:
            os.close(read_end)
            os.setgroups(list(requester.groups or (requester.gid,)))
            os.setresgid(requester.gid, requester.gid, requester.gid)
            os.setresuid(requester.uid, requester.uid, requester.uid)
            action()
        except OSError as exc:
            outcome = {"ok": False, "errno": exc.errno, "strerror": exc.strerror or str(exc),
                       "filename": None if exc.filename is None else str(exc.filename)}  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, the child must end here
            outcome = {"ok": False, "errno": errno.EIO, "strerror": f"{type(exc).__name__}: {exc}", "filename": None}
        finally:
            try:
                os.write(write_end, json.dumps(outcome).encode("utf-8"))
            finally:
                os._exit(0 if outcome["ok"] else 1)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answers:
        answer = answers.read()
    os.waitpid(pid, 0)
    try:
        outcome = json.loads(answer)
    except ValueError:
        raise OSError(errno.EIO, f"the child acting as {requester} ended without an answer") from None
    if not outcome["ok"]:
        filename = outcome["filename"]
        raise OSError(outcome["errno"], outcome["strerror"], *(() if filename is None else (filename,)))
