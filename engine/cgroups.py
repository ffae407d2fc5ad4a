"""Cgroup membership: every task goes back into the cgroups it was in, in every hierarchy.

Dump records /proc/PID/cgroup of each process.  Restore: the orchestrator
creates the cgroups that no longer exist (and removes exactly those again if
the restore fails); each restoring task moves itself into its cgroups before
it forks anything, so its children start there too.  Paths are relative to the
root of each hierarchy (the tree must share our cgroup namespace).
Controller settings are not carried yet (--manage-cgroups, a later issue).
"""
from __future__ import annotations

import errno
import logging
import os

from . import proc
from .errors import ImageError, RestoreError

log = logging.getLogger("lxc_cr.cgroups")


def dump(pid: int, task) -> None:
    for line in proc.read_text(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        task.cgroups.add(controllers=controllers, path=path)


def _mounts() -> dict[str, str]:
    """Controllers ("cpu", "name=systemd", "" for cgroup2) -> where that hierarchy is mounted here."""
    out: dict[str, str] = {}
    known = {line.split()[0] for line in proc.read_text("/proc/cgroups").splitlines()[1:]}
    for line in proc.read_text("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = right.split()[:3]
        point = left.split()[4]
        if fstype == "cgroup2":
            out.setdefault("", point)
        elif fstype == "cgroup":
            wanted = [o for o in options.split(",") if o in known or o.startswith("name=")]
            out.setdefault(",".join(sorted(wanted)), point)
    return out


def _key(controllers: str) -> str:
    return ",".join(sorted(controllers.split(","))) if controllers else ""


class Placement:
    """Where each restored task goes; created cgroups are remembered for undo()."""

    def __init__(self, tasks: dict):
        self.mounts = _mounts()
        self.created: list[str] = []
        self.targets: dict[int, list[str]] = {}
        mine = {_key(c): p for c, p in _own()}
        for pid, t in tasks.items():
            dirs = []
            for cg in t.cgroups:
                if ".." in cg.path.split("/") or not cg.path.startswith("/"):
                    raise ImageError(f"task-{pid}.img: bad cgroup path {cg.path!r}")
                key = _key(cg.controllers)
                if key not in self.mounts:
                    log.warning("process %d: cgroup hierarchy %r is not mounted here; left out", pid, key)
                    continue
                if mine.get(key) != cg.path:       # inherited otherwise
                    dirs.append(os.path.join(self.mounts[key], cg.path.lstrip("/")))
            self.targets[pid] = dirs

    def create(self) -> None:
        for d in sorted({d for dirs in self.targets.values() for d in dirs}):
            self._makedirs(d)

    def _makedirs(self, d: str) -> None:
        if os.path.isdir(d):
            return
        self._makedirs(os.path.dirname(d))
        try:
            os.mkdir(d)
        except OSError as e:
            raise RestoreError(f"cannot create cgroup {d}: {e.strerror}") from None
        log.info("created cgroup %s", d)
        self.created.append(d)

    def join(self, pid: int) -> None:
        """In restoring task pid: move ourselves ("0" is the writer) into each of our cgroups."""
        for d in self.targets.get(pid, ()):
            procs = os.path.join(d, "cgroup.procs")
            with open(procs, "w") as f:
                f.write("0")

    def undo(self) -> None:
        for d in reversed(self.created):
            try:
                os.rmdir(d)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning("cannot remove cgroup %s: %s", d, e.strerror)
        self.created.clear()


def _own():
    for line in proc.read_text("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        yield controllers, path
