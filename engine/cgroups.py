"""Cgroups: every task goes back into its cgroups, in every hierarchy, with the properties
that matter (engine/cgroup_props.py) of the tree's own cgroups.

Dump records /proc/PID/cgroup of each process, and cgroups.img: in each
hierarchy, the tree's root cgroup (the --cgroup-root given for it, as LXC
passes the container's payload cgroup, else the root task's cgroup) and the
cgroups below it that hold tasks of the tree (with those in between), with
their properties.  The root of a whole hierarchy ("/")
is never dumped or set: it is the host's.

Restore re-roots: a path below the dumped root is moved below the
--cgroup-root given for that hierarchy (`[CTRL[,CTRL...]:]/PATH`; no
controller means every hierarchy not named otherwise; on cgroup2 a controller
list that names no v1 hierarchy here is taken for the unified one, as LXC
passes it on pure cgroup2 hosts).  --manage-cgroups says what restore may do,
with CRIU's meanings:

  ignore  nothing: tasks stay in the restorer's cgroups, nothing is created or set
  none    tasks join their cgroups, which must exist; no property is set
  props   the same, and every dumped property is set
  soft    missing cgroups are created; properties are set in those created only (default)
  full    missing cgroups are created; properties are set in all of the tree's cgroups
  strict  like full, but none of the tree's cgroups may exist beforehand (the restorer's own
          cgroups and their parents excepted: tasks there inherit them)

The orchestrator creates and sets everything (parents first) before the root
task is forked; each restoring task moves itself into its cgroups before it
forks anything, so its children start there too.  Cgroups created are removed
again, children first, if the restore fails.
"""
from __future__ import annotations

import errno
import logging
import os
import re

from . import CGROUP_MODES, cgroup_props, proc
from .errors import ImageError, RestoreError, UnsupportedError, fault_point

log = logging.getLogger("lxc_cr.cgroups")

MODES = CGROUP_MODES
IMAGE = "cgroups.img"
ROOT_SPEC = r"(?:([^:/]*):)?(/.*)"


def message():
    from .proto.cgroups_pb2 import Cgroups
    return Cgroups


def parse_roots(specs) -> dict:
    """--cgroup-root [CTRL[,CTRL...]:]/PATH, repeated -> {controllers or None: path}."""
    out = {}
    for spec in specs:
        m = re.fullmatch(ROOT_SPEC, spec)
        if not m or not _clean(m.group(2)):
            raise ValueError(f"--cgroup-root {spec}: expected [CTRL[,CTRL...]:]/PATH (absolute, no '..')")
        out[m.group(1)] = os.path.normpath(m.group(2))
    return out


def _clean(path: str) -> bool:
    return path.startswith("/") and ".." not in path.split("/") and "\n" not in path


def dump(pid: int, task) -> None:
    for line in proc.read_text(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        task.cgroups.add(controllers=controllers, path=path)


def dump_tree(root_pid: int, roots: dict, mode: str, tasks: dict):
    """cgroups.img: the tree's root cgroup in each hierarchy and the cgroups below it that
    hold its tasks (with those in between), with their properties (not for
    --manage-cgroups=ignore or none, which never set any)."""
    msg = message()(mode=mode)
    mounts = _mounts()
    for controllers, path in _cgroups_of(root_pid):
        key = _key(controllers)
        root = _root_for(roots, key, mounts) or path
        if not _below(path, root):
            raise UnsupportedError(f"process {root_pid} is in cgroup {controllers or 'cgroup2'}:{path}, "
                                   f"which is not below the --cgroup-root {root} given for it")
        h = msg.hierarchies.add(controllers=controllers, root=root)
        if mode in ("ignore", "none") or root == "/" or key not in mounts:
            continue
        for rel in _tree_dirs(root, [cg.path for t in tasks.values() for cg in t.cgroups
                                     if cg.controllers == controllers]):
            d = h.dirs.add(path=rel)
            for name, value in cgroup_props.read(os.path.join(mounts[key], root.lstrip("/"), rel)):
                d.props.add(name=name, value=value)
    return msg


def _tree_dirs(root: str, paths: list[str]) -> list[str]:
    """The root ("") and every cgroup from it down to each of paths, relative, parents first."""
    out = {""}
    for path in paths:
        if path != root and _below(path, root):
            parts = path[len(root.rstrip("/")):].strip("/").split("/")
            out |= {"/".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return sorted(out)


def validate(img, where: str) -> None:
    if img.mode not in MODES:
        raise ImageError(f"{where}: unknown cgroup mode {img.mode!r}")
    for h in img.hierarchies:
        if not _clean(h.root):
            raise ImageError(f"{where}: bad root cgroup {h.root!r}")
        for d in h.dirs:
            if d.path.startswith("/") or ".." in d.path.split("/") or "\n" in d.path:
                raise ImageError(f"{where}: bad cgroup path {d.path!r}")
            cgroup_props.validate(d.props, f"{where}: cgroup {h.controllers}:{h.root}/{d.path}")


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


def _root_for(roots: dict, key: str, mounts: dict) -> str | None:
    """The --cgroup-root entry that names hierarchy key, else the one without controllers."""
    names = set(key.split(",")) if key else set()
    v1 = {c for k in mounts if k for c in k.split(",")}
    for ctrl, path in roots.items():
        if ctrl is None:
            continue
        wanted = set(ctrl.split(",")) - {""}
        if names & wanted or (not key and (ctrl == "" or not wanted & v1)):
            return path
    return roots.get(None)


def _below(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


def _reroot(path: str, old: str, new: str) -> str:
    if old == new or not _below(path, old):
        return path
    return os.path.normpath(new + "/" + path[len(old.rstrip("/")):])


class Placement:
    """Where each restored task goes and which cgroups are made and set; undo() removes
    exactly the cgroups created."""

    def __init__(self, tasks: dict, image=None, roots: dict | None = None, mode: str = "soft"):
        self.mode = mode
        self.mounts = _mounts()
        self.created: list[str] = []
        self.targets: dict[int, list[str]] = {}
        self.props: dict[str, list] = {}     # cgroup directory -> dumped properties
        self.dirs: dict[str, int] = {}       # target directory -> our O_PATH fd on it
        self.warming = None                  # a lock held while start_warming's move runs
        if mode == "ignore":
            log.info("--manage-cgroups=ignore: tasks stay in the restorer's cgroups")
            return
        moves = {}                           # hierarchy -> (dumped root, new root)
        for h in image.hierarchies if image is not None else ():
            key = _key(h.controllers)
            moves[key] = (h.root, _root_for(roots or {}, key, self.mounts) or h.root)
            if key in self.mounts:
                for d in h.dirs:
                    path = _reroot(os.path.normpath(f"{h.root}/{d.path}"), *moves[key])
                    self.props[self._dir(key, path)] = d.props
        for old, new in moves.values():
            if old != new:
                log.info("cgroups below %s are restored below %s", old, new)
        mine = {_key(c): p for c, p in _cgroups_of("self")}
        # the restorer's own cgroups (and their parents) exist whatever the mode: tasks placed
        # there inherit them, as CRIU leaves its own cgroup set alone
        self.ours = {self._dir(key, p) for key, p in mine.items() if key in self.mounts}
        for pid, t in tasks.items():
            dirs = []
            for cg in t.cgroups:
                if not _clean(cg.path):
                    raise ImageError(f"task-{pid}.img: bad cgroup path {cg.path!r}")
                key = _key(cg.controllers)
                if key not in self.mounts:
                    log.warning("process %d: cgroup hierarchy %r is not mounted here; left out", pid, key)
                    continue
                path = _reroot(cg.path, *moves.get(key, ("/", "/")))
                if mine.get(key) != path:       # inherited otherwise
                    dirs.append(self._dir(key, path))
            self.targets[pid] = dirs

    def _dir(self, key: str, path: str) -> str:
        return os.path.join(self.mounts[key], path.lstrip("/")).rstrip("/")

    def create(self) -> None:
        """Make (as the mode allows) and set every cgroup, parents first."""
        needed = {d for dirs in self.targets.values() for d in dirs}
        if self.mode in ("soft", "full", "strict"):
            needed |= set(self.props)
        for d in sorted(needed):
            if os.path.isdir(d):
                if self.mode == "strict" and d in self.props and not self._holds_us(d):
                    raise RestoreError(f"cgroup {d} exists already (--manage-cgroups=strict)")
            elif self.mode in ("none", "props"):
                raise RestoreError(f"cgroup {d} does not exist (--manage-cgroups={self.mode} "
                                   f"restores into existing cgroups only)")
            else:
                self._makedirs(d)
            if d in self.props and (self.mode in ("props", "full", "strict") or d in self.created):
                cgroup_props.apply(d, self.props[d])
        for d in sorted({d for dirs in self.targets.values() for d in dirs}):
            # held: a task that joins after entering a restored mount namespace
            # (engine/mounts.py) no longer sees the host's cgroup paths
            self.dirs[d] = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        fault_point("cgroups")

    # The first move of a task into a cgroup waits for an RCU grace period (the kernel's
    # threadgroup lock turns to its slow mode: 5-30 ms here), and moves within the next grace
    # period do not wait.  So a thread of ours pays that wait with a move of ourselves to where
    # we are (changing nothing) while the network is made; just before the tree is forked,
    # one more such move keeps the fast period open for the tasks' own moves.

    def start_warming(self) -> None:
        if not any(self.targets.values()) or not self.ours:
            return
        import _thread
        self.warming = _thread.allocate_lock()
        self.warming.acquire()

        def move():
            try:
                self._warm_move()
            finally:
                self.warming.release()
        _thread.start_new_thread(move, ())

    def finish_warming(self) -> None:
        if self._wait_warming():
            self._warm_move()

    def _wait_warming(self) -> bool:
        """Wait for start_warming's thread, if one runs (none may be left when we fork)."""
        if self.warming is None:
            return False
        self.warming.acquire()
        self.warming = None
        return True

    def _warm_move(self) -> None:
        try:
            _move_ourselves(os.path.join(min(self.ours), "cgroup.procs"))
        except OSError as e:         # only time is lost
            log.debug("cgroup warm-up move: %s", e)

    def _holds_us(self, d: str) -> bool:
        return any(o == d or o.startswith(d + "/") for o in self.ours)

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
            _move_ourselves("cgroup.procs", self.dirs[d])

    def close(self) -> None:
        self._wait_warming()
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()

    def undo(self) -> None:
        for d in reversed(self.created):
            try:
                os.rmdir(d)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning("cannot remove cgroup %s: %s", d, e.strerror)
        self.created.clear()


def _move_ourselves(procs: str, dir_fd: int | None = None) -> None:
    """Move this process into the cgroup of that cgroup.procs file ("0": the writer)."""
    fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def _cgroups_of(pid):
    for line in proc.read_text(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        yield controllers, path
