"""PID namespaces: a tree whose root is the init of its own PID namespace.

Dump records, next to the dumper's PIDs, the numbers the tasks see inside
(/proc/PID/status NSpid, NSpgid, NSsid).  Restore creates the namespace with
the root (clone3 with CLONE_NEWPID and set_tid = {1, outer PID}) and gives
every task and thread both numbers; the tasks use the inner ones for
everything they do themselves (setpgid, waitpid, timers that notify a thread).
Only one level is supported: the root's namespace directly below the dumper's.
A PID namespace the caller names as external (engine/extns.py: a pod's, whose init
is someone else) is recorded the same way, but the root need not be its init;
restore then forks the root into the caller's namespace instead of a new one.
"""
from __future__ import annotations

import os

from . import proc
from .errors import UnsupportedError


def _ns_id(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/pid").st_ino


def own_namespace(root: int, external: bool = False) -> bool:
    """Is the tree in a PID namespace of its own (and can we dump it)?  An external one
    (the caller's) need not have the root as its init."""
    if _ns_id(root) == _ns_id(os.getpid()):
        return False
    levels = proc.status(root)["NSpid"].split()
    if len(levels) != 2:
        raise UnsupportedError(f"process {root} is in a nested PID namespace (NSpid {' '.join(levels)}); "
                               f"only one level below the dumper's is supported")
    if levels[-1] != "1" and not external:
        raise UnsupportedError(f"process {root} is in a PID namespace but is not its init "
                               f"(NSpid {' '.join(levels)}); dump the namespace's init")
    return True


def _inner(status: dict, key: str, pid: int) -> int:
    levels = status[key].split()
    if len(levels) != 2:
        raise UnsupportedError(f"process {pid} is in a nested PID namespace ({key} {' '.join(levels)})")
    return int(levels[-1])


def record(entry, pid: int, root: int) -> None:
    if _ns_id(pid) != _ns_id(root):
        raise UnsupportedError(f"process {pid} is in another PID namespace than the root {root}")
    status = proc.status(pid)
    entry.ns_pid = _inner(status, "NSpid", pid)
    entry.ns_pgid = _inner(status, "NSpgid", pid)
    entry.ns_sid = _inner(status, "NSsid", pid)


def ns_tid(pid: int, tid: int) -> int:
    return _inner(proc.status(pid, tid), "NSpid", tid)


def inner_ids(pstree) -> dict[int, int]:
    """Outer PID/TID -> inner one, for every task and thread of a pid_ns dump."""
    out = {}
    for p in pstree.processes:
        out[p.pid] = p.ns_pid
        out.update(zip(p.tids, p.ns_tids))
    return out
