"""eventfd: the counter, semaphore mode and O_NONBLOCK.  Nothing else lives in one."""
from __future__ import annotations

import os

from ..errors import ImageError
from .eventfd_pb2 import EventFd as MESSAGE

NAME = "eventfd"
COUNT_MAX = 2**64 - 2           # the largest value an eventfd counter can hold


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:[eventfd]"


def dump(ctx, f):
    # fdinfo prints the counter in hex
    return MESSAGE(count=int(f.info["eventfd-count"], 16), semaphore=f.info.get("eventfd-semaphore") == "1")


def open(ctx, entry, msg) -> int:
    if msg.count > COUNT_MAX:
        raise ImageError(f"files.img: eventfd {entry.id} has a counter above {COUNT_MAX}")
    flags = os.EFD_CLOEXEC | (entry.flags & os.O_NONBLOCK)
    if msg.semaphore:
        flags |= os.EFD_SEMAPHORE
    fd = os.eventfd(0, flags)
    # written rather than given to eventfd(), whose initial value is only 32 bits
    if msg.count:
        os.eventfd_write(fd, msg.count)
    return fd
