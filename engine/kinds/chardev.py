"""Character devices opened by path, and the terminal of a shell job."""
from __future__ import annotations

import os
import stat

from ..errors import ImageError, UnsupportedError
from .chardev_pb2 import CharDev as MESSAGE

NAME = "chardev"

# Devices whose state is nothing but their identity: reopening them by path is exact.
STATELESS = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)}   # null, zero, full, random, urandom
TTY_MAJORS = {4, 5, 136}                                # ttyN/console, tty, pts


def matches(link: str, st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode)


def dump(ctx, f):
    dev = (os.major(f.st.st_rdev), os.minor(f.st.st_rdev))
    msg = MESSAGE(path=f.link, rdev_major=dev[0], rdev_minor=dev[1])
    if dev in STATELESS:
        return msg
    if dev[0] in TTY_MAJORS and ctx.shell_job:
        msg.shell_tty = True
        return msg
    what = "terminal (use --shell-job for the job's own terminal)" if dev[0] in TTY_MAJORS else "device"
    raise UnsupportedError(f"process {f.pid} fd {f.fd}: {what} {f.link} ({dev[0]}:{dev[1]}) is not supported")


def open(ctx, entry, msg) -> int:
    if msg.shell_tty:
        if not ctx.shell_job:
            raise ImageError("the dump holds a shell job's terminal: restore with --shell-job")
        # share the caller's open terminal, as a job shares its shell's
        for fd in (0, 1, 2):
            if os.isatty(fd):
                return os.dup(fd)
        raise ImageError("--shell-job restore needs a terminal on stdin, stdout or stderr")
    if (msg.rdev_major, msg.rdev_minor) not in STATELESS:
        raise ImageError(f"files.img: device {msg.path} ({msg.rdev_major}:{msg.rdev_minor}) not supported")
    try:
        fd = os.open(ctx.path(msg.path), entry.flags | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise ImageError(f"cannot reopen {msg.path}: {e.strerror}") from None
    rdev = os.fstat(fd).st_rdev
    if (os.major(rdev), os.minor(rdev)) != (msg.rdev_major, msg.rdev_minor):
        os.close(fd)
        raise ImageError(f"{msg.path} is no longer device {msg.rdev_major}:{msg.rdev_minor}")
    return fd
