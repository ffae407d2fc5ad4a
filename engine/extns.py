"""External namespaces: a namespace of the tree's own that belongs to the caller.

runc and crun give a container's namespace a path in config.json (a pod's network
namespace, `ip netns add`, the PID namespace of a pod's infra container); they then name
it at dump as `net[INO]:extRootNetNS` or `pid[INO]:extRootPidNS` (CRIU's `--external`
spelling: the namespace's inode, and a key) and hand it back at restore as an open
namespace file under that key (`inherit_fd`, `--inherit-fd fd[N]:KEY`).

Dump (`check_dump`, before anything is read): each named namespace must be the root's own
(not the dumper's) and have that inode, else the dump fails and the tree runs on.  It is not dumped: no
devices, addresses, routes, sysctls or nftables of a network namespace (engine/netns.py
only enters it, to see the tree's sockets there); for a PID namespace the tasks' numbers
inside are recorded as for one of the tree's own (engine/pidns.py), but the root need
not be its init.  The inventory records the keys.

Restore (`fds_for`, then `join_net` and `PidChildren`): every key the images name must
come with an fd of a namespace of that type, checked before anything is created.  The
orchestrator joins the network namespace instead of making one (sockets are then made
in it; nothing of the namespace itself is created or set, so a failed restore leaves it
as it was); the tree's root is forked into the PID namespace (setns for children, then
back) with both its numbers (clone3 set_tid, inner first).
"""
from __future__ import annotations

import os
import re

from . import kernel as k
from .errors import ImageError, PlanError

NS_GET_PARENT, NS_GET_NSTYPE = 0xb702, 0xb703        # ioctls on a namespace file (linux/nsfs.h)
TYPES = {"net": k.CLONE_NEWNET, "pid": k.CLONE_NEWPID}
KEY = r"\S{1,256}"


# --- dump --------------------------------------------------------------------------------------

def check_dump(root: int, named) -> dict[str, str]:
    """The plan's external namespaces (kind, inode, key) checked against the root's: the
    kind -> key of each.  A namespace the root shares with us, or another inode, is refused."""
    out = {}
    for kind, ino, key in named:
        if kind in out:
            raise PlanError(f"--external {kind}[{ino}]:{key}: the {kind} namespace is named twice")
        theirs, ours = _ino(f"/proc/{root}/ns/{kind}"), _ino(f"/proc/self/ns/{kind}")
        if theirs == ours:
            raise PlanError(f"--external {kind}[{ino}]:{key}: process {root} has no {kind} namespace of "
                            f"its own (it shares the dumper's, {kind}:[{ours}])")
        if theirs != ino:
            raise PlanError(f"--external {kind}[{ino}]:{key}: process {root}'s {kind} namespace is "
                            f"{kind}:[{theirs}], not {ino}")
        out[kind] = key
    return out


def blockers(root: int, named) -> list[str]:
    """For `dump --check-only`: what check_dump would refuse."""
    try:
        check_dump(root, named)
    except PlanError as e:
        return [str(e)]
    return []


def is_named(named, kind: str) -> bool:
    """Does the plan name the tree's namespace of this kind as external?"""
    return any(n[0] == kind for n in named)


def record(inventory, keys: dict[str, str]) -> None:
    inventory.ext_net_key = keys.get("net", "")
    inventory.ext_pid_key = keys.get("pid", "")


def _ino(path: str) -> int:
    return os.stat(path).st_ino


# --- restore -----------------------------------------------------------------------------------

def keys(inventory) -> dict[str, str]:
    """kind -> key of the external namespaces the images name."""
    return {kind: key for kind, key in (("net", inventory.ext_net_key), ("pid", inventory.ext_pid_key)) if key}


def validate(inventory, where: str) -> None:
    for kind, key in keys(inventory).items():
        if not re.fullmatch(KEY, key):
            raise ImageError(f"{where}: bad key for the external {kind} namespace")
    if inventory.ext_net_key and inventory.HasField("net"):
        raise ImageError(f"{where}: the network namespace is both external and dumped")
    if inventory.ext_pid_key and not inventory.pid_ns:
        raise ImageError(f"{where}: an external PID namespace without the tasks' numbers in it")


def fds_for(inventory, inherit_fds: dict) -> dict[str, int]:
    """kind -> the caller's fd for each external namespace of the images, checked to be a
    namespace of that kind; a missing key is refused before anything is created."""
    out = {}
    for kind, key in keys(inventory).items():
        fd = inherit_fds.get(key)
        if fd is None:
            raise PlanError(f"the dump's {kind} namespace is external ({key}): restore needs "
                            f"--inherit-fd fd[N]:{key} (RPC: inherit_fd {{key: {key}}}) with that namespace")
        try:
            nstype = k.ioctl_arg(fd, NS_GET_NSTYPE, 0, "NS_GET_NSTYPE")
        except OSError:
            nstype = None               # not a namespace file at all
        if nstype != TYPES[kind]:
            raise PlanError(f"inherit fd {fd} for {key} is not a {kind} namespace")
        if kind == "pid":
            _check_pid_level(fd, key)
        out[kind] = fd
    return out


def _check_pid_level(fd: int, key: str) -> None:
    """The tasks' numbers were recorded one level below the dumper's: the caller's PID
    namespace must be a child of ours, or clone3 could not give them both."""
    try:
        parent = k.ioctl_arg(fd, NS_GET_PARENT, 0, "NS_GET_PARENT")
    except OSError:
        parent = None                   # ours or an ancestor (EPERM): not below us
    if parent is None:
        raise PlanError(f"inherit fd {fd} for {key}: that PID namespace is not a child of the restorer's")
    try:
        if os.fstat(parent).st_ino != _ino("/proc/self/ns/pid"):
            raise PlanError(f"inherit fd {fd} for {key}: that PID namespace is nested deeper than one "
                            f"level below the restorer's; only one level is supported")
    finally:
        os.close(parent)


def join_net(fds: dict[str, int]) -> None:
    """The orchestrator joins the caller's network namespace (if the images name one): the
    tree is forked there and its sockets are made there."""
    if "net" in fds:
        k.syscall("setns", fds["net"], k.CLONE_NEWNET)


class PidChildren:
    """`with PidChildren(fds):` around the root's clone3: children are born in the caller's
    PID namespace, the orchestrator's own are as before afterwards.  The child never leaves
    the block (it may not go back: the orchestrator's namespace is above its own)."""

    def __init__(self, fds: dict[str, int]):
        self.fd = fds.get("pid")
        self.home = None

    def __enter__(self):
        if self.fd is not None:
            self.home = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            k.syscall("setns", self.fd, k.CLONE_NEWPID)
        return self

    def __exit__(self, *exc):
        if self.home is not None:
            k.syscall("setns", self.home, k.CLONE_NEWPID)
            os.close(self.home)
            self.home = None
        return False
