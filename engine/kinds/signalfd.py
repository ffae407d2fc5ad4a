"""signalfd: the signal set it reads and O_NONBLOCK.  The signals waiting to be read are
the task's own pending queues, which the task image carries."""
from __future__ import annotations

import os

from .. import kernel as k
from .signalfd_pb2 import SignalFd as MESSAGE

NAME = "signalfd"


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:[signalfd]"


def dump(ctx, f):
    return MESSAGE(sigmask=int(f.info["sigmask"], 16))


def open(ctx, entry, msg) -> int:
    # any 64-bit set is valid: the kernel itself leaves SIGKILL and SIGSTOP out
    return k.signalfd(msg.sigmask, os.O_CLOEXEC | (entry.flags & os.O_NONBLOCK))
