"""Inherited files: at restore, the caller hands in its own fd for a file of the dump.

Every dumped open file records a key, the name runtimes use for it: `tty[RDEV:DEV]` for a
terminal (st_rdev and st_dev in hex, as LXC writes DIR/tty.info), else its /proc/PID/fd
link (`pipe:[INO]` with the pipe's original inode, `socket:[INO]`, a path).
RestorePlan.inherit_fds maps keys to fds of the restoring process: LXC's
`--inherit-fd fd[N]:tty[RDEV:DEV]` for the container's console, runc's and crun's
`inherit_fd {key: "pipe:[INO]", fd}` for a container's stdio pipes.  A file whose key is
there is that fd, in every task that held it, instead of a new open; kind hooks do not
run on it (the object is the caller's, as it is).  Files the caller marked as outside the
tree at dump (`--external KEY`) are not dumped at all: engine/kinds/external.py.
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat

from .errors import ImageError, PlanError

log = logging.getLogger("lxc_cr.inherit")
MAX_KEY = 4096
TTY_MAJORS = {4, 5, 136}        # ttyN and the console, /dev/tty and ptmx, pts


def key_of(link: str, st: os.stat_result) -> str:
    if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in TTY_MAJORS:
        return f"tty[{st.st_rdev:x}:{st.st_dev:x}]"
    return link


def open_inherited(ctx, entry) -> int | None:
    """Our own fd (at or above ctx.base_fd) on the caller's file for entry, or None."""
    fd = getattr(ctx.plan, "inherit_fds", {}).get(entry.inherit_key) if entry.inherit_key else None
    if fd is None:
        return None
    try:
        ours = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, ctx.base_fd)
    except OSError as e:
        raise PlanError(f"inherit fd {fd} for {entry.inherit_key}: {e.strerror}") from None
    ctx.inherited.add(entry.id)
    log.info("file %d (%s) is the caller's fd %d", entry.id, entry.inherit_key, fd)
    return _as_seen_inside(ctx, entry, ours)


def _as_seen_inside(ctx, entry, ours: int) -> int:
    """In a restored mount namespace, the caller's terminal reopened at the path the tasks had
    it by (LXC's /dev/console, a bind of that terminal), when that path is that terminal."""
    from .kinds import external
    msg = external.MESSAGE()
    if ctx.mnt is None or not entry.inherit_key.startswith("tty[") or not entry.detail.Unpack(msg) \
            or not msg.path.startswith("/dev/"):
        return ours
    try:
        fd = os.open(ctx.path(msg.path), (entry.flags & (os.O_ACCMODE | os.O_NONBLOCK)) | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return ours
    if os.fstat(fd).st_rdev != os.fstat(ours).st_rdev:
        os.close(fd)
        return ours
    os.close(ours)
    if fd < ctx.base_fd:
        fd, low = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, ctx.base_fd), fd
        os.close(low)
    return fd


def validate_key(entry) -> None:
    if len(entry.inherit_key) > MAX_KEY:
        raise ImageError(f"files.img: file {entry.id} has an oversized key")
