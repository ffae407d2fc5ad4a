"""The namespaces a tree lives in, other than its PID namespace (engine/pidns.py).

A tree may have UTS, IPC and network namespaces of its own: restore creates
the UTS and IPC ones with the root (CLONE_NEWUTS, CLONE_NEWIPC) and sets the
host and domain names before anything else runs; the network one is entered
by the dumper and created by the restorer before any file is opened, so that
sockets are dumped and recreated inside it (engine/netns.py).  A cgroup
namespace is rooted where the root task's cgroups are (as LXC makes them): the
restored root joins its cgroups, then unshares one.  Every task must share the
root's namespaces.  The contents of an IPC namespace are engine/sysvipc.py's, a
mount namespace is engine/mounts.py's.  Namespaces of other types (user, time)
of its own are refused until a later version rebuilds them.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from . import kernel as k
from .errors import UnsupportedError

# what we rebuild, and what we refuse when the tree has its own
REBUILT = ("pid", "uts", "ipc", "net", "cgroup", "mnt")     # mnt: engine/mounts.py
REFUSED = ("user", "time")


def _ns(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def own(root: int, kind: str) -> bool:
    return _ns(root, kind) != _ns("self", kind)


def check(root: int, pids) -> None:
    """Refuse a tree whose tasks do not share the root's namespaces, or that has
    a namespace of its own of a type we cannot rebuild yet."""
    for kind in REBUILT + REFUSED:
        want = _ns(root, kind)
        for pid in pids:
            if pid != root and _ns(pid, kind) != want:
                raise UnsupportedError(f"process {pid} is in another {kind} namespace than the root {root}")
    for kind in REFUSED:
        if own(root, kind):
            raise UnsupportedError(f"process {root} has a {kind} namespace of its own; "
                                   f"{kind} namespaces are not supported yet")


def dump_uts(root: int, pb):
    if not own(root, "uts"):
        return None
    with visiting(root, "uts"):
        return pb.Uts(hostname=os.uname().nodename, domainname=_domainname())


def dump_ipc(root: int) -> bool:
    return own(root, "ipc")


def dump_cgroup_ns(root: int) -> bool:
    """Does the root have a cgroup namespace of its own?  Only one rooted at the root's own
    cgroups can be made again (by unsharing once there); refuse any other."""
    if not own(root, "cgroup"):
        return False
    # /proc/PID/cgroup shows paths relative to the reader's cgroup namespace root
    with visiting(root, "cgroup"):
        seen = open(f"/proc/{root}/cgroup").read()
    for line in seen.splitlines():
        path = line.split(":", 2)[2]
        if path != "/":
            raise UnsupportedError(f"process {root}'s cgroup namespace is not rooted at its cgroup "
                                   f"({line}); only that case is supported")
    return True


def enter_cgroup_ns(inventory) -> None:
    """In the root task once it is in its cgroups, before it forks anything."""
    if inventory.cgroup_ns:
        k.syscall("unshare", k.CLONE_NEWCGROUP)


def restore_flags(inventory) -> int:
    return (k.CLONE_NEWUTS if inventory.HasField("uts") else 0) | (k.CLONE_NEWIPC if inventory.ipc_ns else 0)


def restore_in_root(inventory) -> None:
    """In the root task, in its new namespaces, before it forks anything."""
    if inventory.HasField("uts"):
        import socket
        socket.sethostname(inventory.uts.hostname)
        name = inventory.uts.domainname.encode()
        buf = k.ffi.new("char[]", name)
        k.syscall("setdomainname", int(k.ffi.cast("uintptr_t", buf)), len(name))


def _domainname() -> str:
    with open("/proc/sys/kernel/domainname") as f:
        return f.read().strip()


FLAGS = {"uts": k.CLONE_NEWUTS, "ipc": k.CLONE_NEWIPC, "net": k.CLONE_NEWNET, "cgroup": k.CLONE_NEWCGROUP,
         "mnt": k.CLONE_NEWNS}


@contextmanager
def visiting(ns: int | str, kind: str):
    """This process in a namespace of that kind for the while, then back in its own: a PID's
    namespace, or the one of a namespace file (a path).

    Cheaper than a child that joins it: forking the dumper costs milliseconds while the tree
    is frozen.  The dumper is single-threaded, as joining a mount namespace requires.
    Joining one moves our root and working directory to its root, and coming back to
    ours moves them to our namespace's root: both are put back as they were."""
    flag = FLAGS[kind]
    fds = [os.open(ns if isinstance(ns, str) else f"/proc/{ns}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)]
    try:
        fds.append(os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
        if kind == "mnt":
            fds += [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in ("/", ".")]
        k.syscall("setns", fds[0], flag)
        try:
            yield
        finally:
            k.syscall("setns", fds[1], flag)
            if kind == "mnt":
                os.fchdir(fds[2])
                os.chroot(".")
                os.fchdir(fds[3])
    finally:
        for fd in fds:
            os.close(fd)
