"""timerfd: clock, time left, period, absolute or relative, expirations not yet read.

Dump: timerfd_gettime() on our own fd first: for a periodic timer that has
fired it counts the periods missed since into the ticks, as a read would, and
re-arms the timer; only then does fdinfo show every pending expiration.
Restore: timerfd_settime() (a relative timer gets the time it had left, an
absolute one its deadline), then TFD_IOC_SET_TICKS for the pending expirations
(settime clears them).
"""
from __future__ import annotations

import fcntl
import os
import struct
import time

from .. import kernel as k
from .. import proc
from ..errors import ImageError
from .timerfd_pb2 import TimerFd as MESSAGE

NAME = "timerfd"
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
CLOCKS = {0: 0, 1: 1, 7: 7, 8: 0, 9: 7}         # clock -> the clock its time is read on (alarms)


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:[timerfd]"


def dump(ctx, f):
    local = ctx.local_fd(f)
    value, interval = k.timerfd_gettime(local)
    info = proc.fdinfo("self", local)
    msg = MESSAGE(clockid=int(info["clockid"]), settime_flags=int(info["settime flags"], 8),
                  value_ns=value, interval_ns=interval, ticks=int(info["ticks"]))
    if value and msg.settime_flags & TFD_TIMER_ABSTIME:
        msg.value_ns = time.clock_gettime_ns(CLOCKS.get(msg.clockid, msg.clockid)) + value
    return msg


def open(ctx, entry, msg) -> int:
    if msg.clockid not in CLOCKS or msg.settime_flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET):
        raise ImageError(f"files.img: timerfd {entry.id} has clock {msg.clockid}, flags {msg.settime_flags:#x}")
    if msg.value_ns < 0 or msg.interval_ns < 0 or msg.ticks >= 2**63:
        raise ImageError(f"files.img: timerfd {entry.id} has a negative time or too many ticks")
    fd = k.timerfd_create(msg.clockid, os.O_CLOEXEC | (entry.flags & os.O_NONBLOCK))
    try:
        k.timerfd_settime(fd, msg.settime_flags, msg.value_ns, msg.interval_ns)
        if msg.ticks:
            fcntl.ioctl(fd, k.TFD_IOC_SET_TICKS, struct.pack("Q", msg.ticks))
    except BaseException:
        os.close(fd)
        raise
    return fd
