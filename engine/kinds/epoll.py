"""epoll: every watch (target file, the fd number it was registered through, events, data).

Dump: fdinfo lists the watches; each names its target by the fd number used to
register it, which may since have been closed or reused, so the target is found
with kcmp(KCMP_EPOLL_TFD) among the task's fds, then the whole tree's.
Restore: the orchestrator creates the epoll; its first holder registers the
watches in in_task, with its own fd numbers (the targets are installed then).
A watch whose number no longer names its file is registered through a number
lent for the call: dup2 the target there, epoll_ctl, put the number back.
A ready edge-triggered watch reports one event after restore even if the task
had already taken that edge (epoll_ctl polls the file when adding it).  A fired
EPOLLONESHOT watch is disarmed again by adding it and reporting it once, which
needs its file to be ready for something; if it is not, the watch comes back
armed for EPOLLERR and EPOLLHUP only (epoll_ctl always adds those).
"""
from __future__ import annotations

import fcntl
import os
import re
import select

from .. import kernel as k
from .. import proc
from ..errors import ImageError, RestoreError, UnsupportedError
from . import named
from .epoll_pb2 import Epoll as MESSAGE

NAME = "epoll"
EPOLLONESHOT = 1 << 30
PRIVATE_BITS = 0xF0000000        # EPOLLET, EPOLLONESHOT, EPOLLWAKEUP, EPOLLEXCLUSIVE: not events
POLL_ALL = (select.POLLIN | select.POLLPRI | select.POLLOUT | select.POLLRDNORM | select.POLLRDBAND
            | select.POLLWRNORM | select.POLLWRBAND | select.POLLMSG | select.POLLRDHUP)
WATCH = re.compile(r"^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)", re.M)


def matches(link: str, st: os.stat_result) -> bool:
    return link == "anon_inode:[eventpoll]"


def dump(ctx, f):
    msg = MESSAGE()
    nth: dict[int, int] = {}       # watches seen so far per number (KCMP_EPOLL_TFD's toff)
    text = proc.read_bytes(f"/proc/{f.pid}/fdinfo/{f.fd}").decode()
    for m in WATCH.finditer(text):
        tfd, events, data = int(m[1]), int(m[2], 16), int(m[3], 16)
        toff = nth.get(tfd, 0)
        nth[tfd] = toff + 1
        pid, fd = _holder(ctx, f, tfd, toff)
        msg.watches.add(tfd=tfd, events=events, data=data, target=ctx.table.entry_for(pid, fd).id)
    return msg


def _holder(ctx, f, tfd: int, toff: int) -> tuple[int, int]:
    """(pid, fd) of an fd of the tree on the file of watch (tfd, toff): the registering
    number itself if it still names that file, else any other."""
    if _is_target(f, f.pid, tfd, tfd, toff):
        return f.pid, tfd
    for pid in [f.pid] + sorted(ctx.tree - {f.pid}):
        for fd in _fds(pid):
            if _is_target(f, pid, fd, tfd, toff):
                return pid, fd
    raise UnsupportedError(f"process {f.pid} fd {f.fd}: epoll watches a file (registered as fd {tfd}) "
                           f"that no task of the tree holds open")


def _fds(pid: int) -> list[int]:
    try:
        return proc.fds(pid)
    except (ProcessLookupError, PermissionError):     # a zombie has no fd table
        return []


def _is_target(f, pid: int, fd: int, tfd: int, toff: int) -> bool:
    try:
        return k.kcmp_epoll_tfd(pid, fd, f.pid, f.fd, tfd, toff) == 0
    except OSError:          # no such fd, or not that file
        return False


def open(ctx, entry, msg) -> int:
    for w in msg.watches:
        if not 0 <= w.tfd < 1 << 20 or w.target not in ctx.files or w.target == entry.id:
            raise ImageError(f"files.img: epoll {entry.id} has a bad watch (fd {w.tfd}, file {w.target})")
    return k.epoll_create1(os.O_CLOEXEC)


def in_task(ctx, entry, msg, fds) -> None:
    epfd = fds[0]
    # fired oneshot watches first, while nothing else can be reported
    fired = [w for w in msg.watches if _fired_oneshot(w.events)]
    for w in fired:
        _watch(ctx, entry, epfd, w, w.events | _ready(_target(ctx, entry, w)))
    if fired:
        k.epoll_wait(epfd, len(fired), 0)
    for w in msg.watches:
        if not _fired_oneshot(w.events):
            _watch(ctx, entry, epfd, w, w.events)


def _watch(ctx, entry, epfd: int, w, events: int) -> None:
    try:
        _register(epfd, w, _target(ctx, entry, w), events)
    except OSError as e:
        raise RestoreError(f"epoll {entry.id}: cannot watch file {w.target} as fd {w.tfd} "
                           f"(events {events:#x}): {e.strerror}") from None


def _fired_oneshot(events: int) -> bool:
    return bool(events & EPOLLONESHOT) and not events & ~PRIVATE_BITS


def _ready(fd: int) -> int:
    """The events the file has now.  A oneshot watch only disarms by reporting one: adding
    it for these and taking them with epoll_wait leaves it as the task had it (disarmed);
    with none (the file is not ready), it stays armed for EPOLLERR|EPOLLHUP, which
    epoll_ctl always adds."""
    p = select.poll()
    p.register(fd, POLL_ALL)
    got = p.poll(0)
    return got[0][1] & POLL_ALL if got else 0


def _target(ctx, entry, w) -> int:
    target = ctx.opened.get(w.target)
    if target is None:
        raise ImageError(f"epoll {entry.id}: watched file {w.target} was not opened")
    if not _built_here(ctx, w.target):
        raise ImageError(f"epoll {entry.id} watches a {ctx.files[w.target].kind} that its first holder "
                         f"does not hold; not supported")
    return target


def _built_here(ctx, file_id: int) -> bool:
    """False for a file built in each task holding it (a pidfd) that this task does not hold:
    the orchestrator's fd for it is only a stand-in."""
    kind = named(ctx.files[file_id].kind)
    return not getattr(kind, "IN_EVERY_HOLDER", False) or file_id in ctx.shared.get("built_here", ())


def _register(epfd: int, w, target: int, events: int) -> None:
    me = os.getpid()
    try:
        same = k.kcmp_file(me, w.tfd, me, target) == 0
    except OSError:
        same = False
    if same:
        k.epoll_ctl(epfd, k.EPOLL_CTL_ADD, w.tfd, events, w.data)
        return
    # the number names another file now, or none: lend it to the target for the call
    try:
        saved, inheritable = fcntl.fcntl(w.tfd, fcntl.F_DUPFD_CLOEXEC, 0), os.get_inheritable(w.tfd)
    except OSError:
        saved = None
    os.dup2(target, w.tfd)
    try:
        k.epoll_ctl(epfd, k.EPOLL_CTL_ADD, w.tfd, events, w.data)
    finally:
        if saved is None:
            os.close(w.tfd)
        else:
            os.dup2(saved, w.tfd, inheritable=inheritable)
            os.close(saved)
