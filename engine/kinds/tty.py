"""Terminals: pseudo-terminal pairs (both sides), /dev/tty, and a session's controlling terminal.

A pty pair is described once, with its master (the open file of ptmx): its
number, the slave side's termios and window size, packet mode, lock state,
whether the slave was closed again (the master then sees a hang-up), and the
bytes queued in both directions.  Slaves and /dev/tty files name the master.

Queued bytes.  A tty has no way to look at queued input without reading it,
so the dump reads it and puts it back at once, before anything else happens,
whether the dump goes on, fails or leaves the tree running (the tree is
frozen: nobody else reads or writes meanwhile):
  - output the master has not read: read from the master (our pidfd_getfd
    copy), put back by writing it on the slave with output processing off
    (OPOST), so the master reads the very same bytes;
  - input the slave has not read (lines and a line being typed): read from our
    own open file of the slave with ICANON off, put back with TIOCSTI while
    echo, signals and input processing are off, so lines end where they ended.
Restore rebuilds both queues the same way.  The slave's queue is limited to
what a line discipline holds (4095 bytes); more is refused.

Restore opens ptmx until devpts hands out the dumped number (it always gives
the lowest free one).  A session's controlling terminal is taken back by its
leader with TIOCSCTTY right after setsid(), before it forks, so that the
tasks of the session inherit it as they did; the foreground group is set once
every group exists (take_ctty / set_foreground, called by engine/restoring.py).
/dev/tty is opened by a short-lived helper whose controlling terminal is the
restored pty, so that the file is a real /dev/tty open.

A slave or /dev/tty whose pair has its master outside the tree is a shell
job's terminal: with --shell-job it is chardev's (the restoring shell's
terminal), without it the dump is refused, as is a task whose controlling
terminal is such a pty (check_ctty, called by engine/dumping.py).  An O_PATH
open of a terminal is only a name: it is opened again by that name.

Orphan pairs (plan.orphan_pts_master, CRIU's orphan_pts_master: runc's and
crun's `terminal: true` containers, whose master the runtime holds): the
slave side is dumped with the pair's state as the slave shows it (termios,
window size, the session it controls); output the master has not read stays
in the caller's master.  Restore opens a new master for the same number in
the restored devpts, hands it to the caller (the RPC client's
orphan-pts-master notification, with the fd), and opens the slave by name.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import select
import socket
import stat
import struct
import termios

from .. import kernel as k
from .. import proc
from ..errors import DumpError, ImageError, RestoreError, UnsupportedError, fault_point
from . import external
from .tty_pb2 import PtyPair, Tty as MESSAGE

log = logging.getLogger("lxc_cr.tty")

NAME = "tty"
PTMX = (5, 2)
DEV_TTY = (5, 0)
PTS_MAJOR = 136
MAX_INDEX = 1 << 20                 # devpts numbers
NCCS = 19
TERMIOS = struct.Struct("<IIIIB19s")
LINE_MAX = k.N_TTY_BUF_SIZE - 1     # what a line discipline holds
DATA_NAME = re.compile(r"tty-[0-9]+\.img")
OPEN_FLAGS = os.O_ACCMODE | os.O_NONBLOCK   # what restore gives back at open (O_ASYNC: files.py)


def matches(link: str, st: os.stat_result) -> bool:
    if not stat.S_ISCHR(st.st_mode):
        return False
    dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return dev in (PTMX, DEV_TTY) or dev[0] == PTS_MAJOR


def _type(st: os.stat_result) -> int:
    dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return MESSAGE.MASTER if dev == PTMX else MESSAGE.DEV_TTY if dev == DEV_TTY else MESSAGE.SLAVE


# --- the tree's ptys ---------------------------------------------------------------------

def _tree_ptys(ctx) -> dict:
    """{"masters": {index: (pid, fd)}, "slaves": {index: [(pid, fd)]}} over the whole tree, once."""
    ptys = ctx.shared.setdefault(NAME, {})
    if "masters" not in ptys:
        masters, slaves = {}, {}
        for pid in sorted(ctx.tree):
            try:
                fds = proc.fds(pid)
            except OSError:
                continue                    # a zombie has no fds
            for fd in fds:
                try:
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if not stat.S_ISCHR(st.st_mode):
                    continue
                dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
                if dev == PTMX:
                    index = proc.fdinfo(pid, fd).get("tty-index")
                    if index is not None:
                        masters.setdefault(int(index), (pid, fd))
                elif dev[0] == PTS_MAJOR:
                    slaves.setdefault(dev[1], []).append((pid, fd))
        ptys["masters"], ptys["slaves"] = masters, slaves
    return ptys


def _outside(ctx, f, what: str) -> UnsupportedError:
    return UnsupportedError(f"process {f.pid} fd {f.fd}: {what} belongs to a pty pair whose master is "
                            f"outside the tree (use --shell-job for a job's own terminal)")


def _dev_tty_index(fd: int) -> int | None:
    """The pty number behind a /dev/tty open file, or None if it is another kind of terminal."""
    dev = k.ioctl_get_int(fd, k.TIOCGDEV, "TIOCGDEV") & 0xFFFFFFFF
    return os.minor(dev) if os.major(dev) == PTS_MAJOR else None


def check(ctx, f) -> list[str]:
    """--check-only: a slave or /dev/tty of a pair outside the tree (without --shell-job)."""
    kind = _type(f.st)
    if kind == MESSAGE.MASTER or ctx.shell_job or int(f.info["flags"], 8) & os.O_PATH:
        return []
    if kind == MESSAGE.SLAVE:
        index = os.minor(f.st.st_rdev)
    else:
        # our copy of the task's open file: opening /dev/tty ourselves would give our own terminal
        try:
            index = _dev_tty_index(ctx.local_fd(f))
        except OSError as e:
            return [f"process {f.pid} fd {f.fd}: cannot look at /dev/tty: {e.strerror}"]
    if index is None or index not in _tree_ptys(ctx)["masters"] and not _orphans_allowed(ctx):
        return [str(_outside(ctx, f, f.link))]
    return []


def _orphans_allowed(ctx) -> bool:
    return bool(getattr(ctx.plan, "orphan_pts_master", False))


def check_ctty(ctx, pid: int) -> None:
    """Refuse a task whose controlling terminal is not a pty pair of the tree (without --shell-job
    or orphan_pts_master): restore could not give it back."""
    if ctx.shell_job:
        return
    st = proc.stat(pid)
    if not st.tty_nr or st.state == "Z":
        return
    if external.is_ctty(ctx, pid, st.tty_nr, st.sid):
        return                          # the runtime's terminal (LXC's console): it gives it back
    major, minor = os.major(st.tty_nr), os.minor(st.tty_nr)
    if major == PTS_MAJOR and _orphans_allowed(ctx):
        return                          # a pair the dump makes orphan (files give it back)
    if major != PTS_MAJOR or minor not in _tree_ptys(ctx)["masters"]:
        name = f"/dev/pts/{minor}" if major == PTS_MAJOR else f"terminal {major}:{minor}"
        raise UnsupportedError(f"process {pid}: its controlling terminal {name} is not a pty pair of the "
                               f"tree (use --shell-job for a job's own terminal)")


# --- dump ------------------------------------------------------------------------------------

def dump(ctx, f):
    kind = _type(f.st)
    if f.entry.flags & os.O_PATH:
        # a name and nothing else: no terminal behind it to describe (but the name of
        # a slave of the tree exists only once its pair is restored)
        msg = MESSAGE(type=MESSAGE.PATH, path=f.link)
        master = _tree_ptys(ctx)["masters"].get(os.minor(f.st.st_rdev)) if kind == MESSAGE.SLAVE else None
        if master is not None:
            msg.index, msg.master_id = os.minor(f.st.st_rdev), ctx.table.entry_for(*master).id
        return msg
    if kind == MESSAGE.MASTER:
        return _dump_master(ctx, f)
    if kind == MESSAGE.SLAVE:
        index = os.minor(f.st.st_rdev)
        if f.st.st_dev != _devpts_dev(ctx):
            raise UnsupportedError(f"process {f.pid} fd {f.fd}: pty {f.link} of another devpts instance "
                                   f"than /dev/pts is not supported")
    else:
        index = _dev_tty_index(ctx.local_fd(f))
    master = _tree_ptys(ctx)["masters"].get(index) if index is not None else None
    if master is None:
        if ctx.shell_job:
            # the job's terminal belongs to its shell: restore gives it the restoring shell's
            from . import chardev
            f.entry.kind = chardev.NAME
            return chardev.dump(ctx, f)
        if index is not None and _orphans_allowed(ctx):
            return MESSAGE(type=kind, index=index, path=f.link, orphan=True, pair=_orphan_pair(ctx, f, index))
        what = f.link if index is None or kind == MESSAGE.SLAVE else f"{f.link} (/dev/pts/{index})"
        raise _outside(ctx, f, what)
    master_id = ctx.table.entry_for(*master).id
    return MESSAGE(type=kind, index=index, path=f.link, master_id=master_id)


def _orphan_pair(ctx, f, index: int):
    """The state of pty `index`, whose master is outside the tree, as its slave shows it (once
    per pair: every open of it carries the same)."""
    orphans = ctx.shared.setdefault(NAME, {}).setdefault("orphans", {})
    if index not in orphans:
        fd = ctx.local_fd(f)
        pair = PtyPair()
        pair.iflag, pair.oflag, pair.cflag, pair.lflag, pair.line, pair.cc = TERMIOS.unpack(k.tcgets(fd))
        if pair.line != 0:
            raise UnsupportedError(f"process {f.pid} fd {f.fd}: pty {index} has a line discipline other than N_TTY")
        pair.winsize.extend(k.get_winsize(fd))
        if _queued(fd):
            log.warning("pty %d: input its tasks had not read yet is lost (its master is the caller's)", index)
        _orphan_session(ctx, f, index, pair)
        orphans[index] = pair
    return orphans[index]


def _orphan_session(ctx, f, index: int, pair) -> None:
    """The session whose controlling terminal pty `index` is, from the tasks' stat (the slave
    answers TIOCGSID only to its own session)."""
    want = os.makedev(PTS_MAJOR, index)
    stats = [proc.stat(pid) for pid in sorted(ctx.tree)]
    holder = next((st for st in stats if st.tty_nr == want and st.state != "Z"), None)
    if holder is None:
        return
    if holder.sid not in ctx.tree:
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: pty {index} is the controlling terminal of "
                               f"session {holder.sid}, outside the tree")
    pair.session, pair.foreground = holder.sid, max(holder.tpgid, 0)
    pair.without_ctty.extend(st.pid for st in stats if st.sid == holder.sid and st.state != "Z" and not st.tty_nr)


def _devpts_dev(ctx) -> int:
    """The tree's /dev/pts (its own instance when it has a mount namespace of its own)."""
    return os.stat(f"/proc/{ctx.plan.pid}/root/dev/pts/ptmx").st_dev


def _dump_master(ctx, f):
    if f.link not in ("/dev/ptmx", "/dev/pts/ptmx") and f.st.st_dev != _devpts_dev(ctx):
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: pty master {f.link} of another devpts "
                               f"instance than /dev/pts is not supported")
    m = ctx.local_fd(f)
    index = k.ioctl_get_int(m, k.TIOCGPTN, "TIOCGPTN")
    if k.ioctl_get_int(m, k.TIOCGETD, "TIOCGETD") != 0:
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: pty master {index} has a line discipline "
                               f"other than N_TTY")
    pair = PtyPair(packet=bool(k.ioctl_get_int(m, k.TIOCGPKT, "TIOCGPKT")),
                   locked=bool(k.ioctl_get_int(m, k.TIOCGPTLCK, "TIOCGPTLCK")))
    pair.iflag, pair.oflag, pair.cflag, pair.lflag, pair.line, pair.cc = TERMIOS.unpack(k.tcgets(m))
    pair.winsize.extend(k.get_winsize(m))
    pair.slave_closed = bool(_poll(m, select.POLLIN) & select.POLLHUP)
    _dump_session(ctx, f, m, index, pair)
    slave = _own_slave(ctx, f, m, index, pair)
    try:
        to_slave, to_master = _take_and_put_back(f, m, slave, pair)
    finally:
        if slave is not None:
            os.close(slave)
    for data, attr in ((to_master, "to_master"), (to_slave, "to_slave")):
        if data:
            name, out = ctx.data_file(NAME)
            try:
                _write_all(out, data)
            finally:
                os.close(out)
            setattr(pair, attr, name)
            setattr(pair, attr + "_size", len(data))
    return MESSAGE(type=MESSAGE.MASTER, index=index, path=f.link, pair=pair)


def _dump_session(ctx, f, m: int, index: int, pair) -> None:
    """The session whose controlling terminal the pair is, its foreground group, and the
    tasks of that session that do not have it (forked before their leader took it)."""
    try:
        sid = k.ioctl_get_int(m, k.TIOCGSID, "TIOCGSID")     # through the master: anyone may ask
    except OSError as e:
        if e.errno == errno.ENOTTY:
            return                                              # no session has it
        raise
    if sid not in ctx.tree:
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: pty {index} is the controlling terminal of "
                               f"session {sid}, outside the tree")
    pair.session = sid
    pair.foreground = k.ioctl_get_int(m, k.TIOCGPGRP, "TIOCGPGRP")
    for pid in sorted(ctx.tree):
        st = proc.stat(pid)
        if st.sid == sid and st.state != "Z" and st.tty_nr == 0:
            pair.without_ctty.append(pid)


def _own_slave(ctx, f, m: int, index: int, pair) -> int | None:
    """Our own open file of the slave, to read its input queue, or None where opening one would
    change the pair: a slave never opened (closing ours would hang the master up)."""
    held = _tree_ptys(ctx)["slaves"].get(index)
    if not held and not pair.slave_closed:
        other = _slave_holder_outside(ctx, index)
        if other:
            raise UnsupportedError(f"process {f.pid} fd {f.fd}: the slave of pty {index} is open in process "
                                   f"{other}, outside the tree")
        return None
    flags = os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    with _unlocked(m, pair.locked):
        try:
            if held:
                return os.open(f"/proc/{held[0][0]}/fd/{held[0][1]}", flags)
            return k.ioctl_arg(m, k.TIOCGPTPEER, flags, "TIOCGPTPEER")
        except OSError as e:
            raise DumpError(f"process {f.pid} fd {f.fd}: cannot open the slave of pty {index}: "
                            f"{e.strerror}") from None


def _slave_holder_outside(ctx, index: int) -> int | None:
    """A process outside the tree holding /dev/pts/INDEX open, if any."""
    want = os.makedev(PTS_MAJOR, index)
    dev = _devpts_dev(ctx)
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ctx.tree:
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                st = os.stat(f"/proc/{name}/fd/{fd}")
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == want and st.st_dev == dev:
                    return int(name)
        except OSError:
            continue
    return None


class _unlocked:
    """Unlock a locked pair for the time of a slave open, then lock it again."""

    def __init__(self, m: int, locked: bool):
        self.m, self.locked = m, locked

    def __enter__(self):
        if self.locked:
            k.ioctl_set_int(self.m, k.TIOCSPTLCK, 0, "TIOCSPTLCK")

    def __exit__(self, *exc):
        if self.locked:
            k.ioctl_set_int(self.m, k.TIOCSPTLCK, 1, "TIOCSPTLCK")


def _take_and_put_back(f, m: int, slave: int | None, pair) -> tuple[bytes, bytes]:
    """(input the slave has not read, output the master has not read); both queues are
    refilled, in the same order, before returning."""
    where = f"process {f.pid} fd {f.fd}"
    if slave is None and _queued(m) >= LINE_MAX:
        raise UnsupportedError(f"{where}: more output queued on a pty than can be put back without its slave")
    saved = k.tcgets(slave) if slave is not None else None
    to_slave, to_master = bytearray(), bytearray()     # filled as read: what was taken goes back
    try:
        if slave is not None:
            if k.ioctl_get_int(slave, k.TIOCGETD, "TIOCGETD") != 0:
                raise UnsupportedError(f"{where}: pty slave with a line discipline other than N_TTY")
            _take_slave_input(slave, saved, where, to_slave)
        _take_master_input(m, pair.packet, where, to_master)
    finally:
        # whatever happened, the bytes taken go back where they were
        if slave is not None:
            try:
                _put_to_slave(slave, saved, to_slave, pair.packet)
                _put_to_master(m, slave, saved, to_master)
            finally:
                k.tcsets(slave, saved)
        elif to_master:
            _put_to_master(m, None, None, to_master)      # fits: checked before taking it
    return bytes(to_slave), bytes(to_master)


def _poll(fd: int, events: int) -> int:
    """Readiness now; polling a tty also lets pending input reach its line discipline."""
    p = select.poll()
    p.register(fd, events)
    ready = p.poll(0)
    return ready[0][1] if ready else 0


def _queued(fd: int) -> int:
    _poll(fd, select.POLLIN)
    return k.fionread(fd)


def _take_slave_input(slave: int, saved: bytes, where: str, out: bytearray) -> None:
    """Every byte the slave has not read, lines and the line being typed alike (ICANON off
    for the moment: a canonical read would give whole lines only)."""
    iflag, oflag, cflag, lflag, line, cc = TERMIOS.unpack(saved)
    cc = bytearray(cc)
    cc[termios.VMIN], cc[termios.VTIME] = 0, 0
    k.tcsets(slave, TERMIOS.pack(iflag, oflag, cflag, lflag & ~termios.ICANON, line, bytes(cc)))
    if _queued(slave) >= LINE_MAX:
        raise UnsupportedError(f"{where}: more than {LINE_MAX - 1} bytes of input queued on a pty slave")
    while True:
        try:
            chunk = os.read(slave, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk


def _take_master_input(m: int, packet: bool, where: str, out: bytearray) -> None:
    """Every byte the master has not read (in packet mode, without the packet headers)."""
    while _queued(m) > 0:
        try:
            chunk = os.read(m, 65536)
        except (BlockingIOError, OSError) as e:
            if isinstance(e, BlockingIOError) or e.errno == errno.EIO:
                break
            raise
        if packet:
            if chunk[:1] != b"\0":
                log.warning("%s: a pending packet-mode status (%#x) of a pty master is dropped", where, chunk[0])
                continue
            chunk = chunk[1:]
        out += chunk


def _transparent(saved: bytes, packet: bool) -> bytes:
    """termios under which pushed input lands as it is: canonical mode as it was (lines end
    where they ended), no echo, no signals, no input mapping, no editing characters."""
    iflag, oflag, cflag, lflag, line, cc = TERMIOS.unpack(saved)
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.IGNPAR | termios.PARMRK | termios.INPCK
               | termios.ISTRIP | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IUCLC
               | termios.IMAXBEL)
    if not packet:
        iflag &= ~termios.IXON      # in packet mode the master would be told: keep it
    lflag &= ~(termios.ISIG | termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL
               | termios.ECHOCTL | termios.ECHOPRT | termios.ECHOKE | termios.IEXTEN | termios.XCASE)
    cc = bytearray(cc)
    for c in (termios.VERASE, termios.VKILL, termios.VWERASE, termios.VREPRINT, termios.VLNEXT,
              termios.VEOF, termios.VDISCARD):
        cc[c] = 0
    return TERMIOS.pack(iflag, oflag, cflag, lflag, line, bytes(cc))


def _put_to_slave(slave: int, saved: bytes, data: bytes, packet: bool) -> None:
    if data:
        k.tcsets(slave, _transparent(saved, packet))
        k.tiocsti(slave, data)


def _put_to_master(m: int, slave: int | None, saved: bytes | None, data: bytes) -> None:
    """Queue bytes for the master to read: written on the slave with output processing off,
    or, without a slave, pushed straight into the master's input (up to a line discipline's size)."""
    if not data:
        return
    if slave is None:
        k.tiocsti(m, data)
        return
    iflag, oflag, cflag, lflag, line, cc = TERMIOS.unpack(saved)
    k.tcsets(slave, TERMIOS.pack(iflag, oflag & ~termios.OPOST, cflag, lflag, line, cc))
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(slave, view):]
        except BlockingIOError:
            p = select.poll()
            p.register(slave, select.POLLOUT)
            if not p.poll(5000):
                raise OSError(errno.EAGAIN, f"could not queue {len(view)} bytes for the pty master again") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- restore ---------------------------------------------------------------------------------

def open(ctx, entry, msg) -> int:
    where = f"files.img: terminal file {entry.id}"
    if not 0 <= msg.index < MAX_INDEX:
        raise ImageError(f"{where}: bad pty number {msg.index}")
    if entry.flags & os.O_ACCMODE not in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        raise ImageError(f"{where}: bad access mode {entry.flags:#o}")
    if msg.type == MESSAGE.PATH:
        if msg.master_id:
            _master_of(ctx, msg, where)
        return _open_path(ctx, msg.path, where)
    if msg.type == MESSAGE.MASTER:
        return _open_master(ctx, entry, msg, where)
    if msg.type not in (MESSAGE.SLAVE, MESSAGE.DEV_TTY):
        raise ImageError(f"{where}: unknown terminal type {msg.type}")
    flags = (entry.flags & OPEN_FLAGS) | os.O_CLOEXEC
    if msg.orphan:
        slave = _orphan_slave(ctx, msg, where, flags | os.O_NOCTTY)
        if msg.type == MESSAGE.SLAVE:
            return slave
        try:
            return _open_dev_tty(slave, flags, msg.index)
        finally:
            os.close(slave)
    m, detail = _master_of(ctx, msg, where)
    if msg.type == MESSAGE.DEV_TTY:
        return _open_dev_tty(m, flags, msg.index)
    with _unlocked(m, detail.pair.locked):
        try:
            return k.ioctl_arg(m, k.TIOCGPTPEER, flags | os.O_NOCTTY, "TIOCGPTPEER")
        except OSError as e:
            raise RestoreError(f"cannot open the slave of pty {msg.index}: {e.strerror}") from None


def _orphan_slave(ctx, msg, where: str, flags: int) -> int:
    """The slave of an orphan pair, opened by name once its new master is the caller's (made
    and handed over by the first open of the pair)."""
    handed = ctx.shared.setdefault("tty-orphans", set())
    if msg.index not in handed:
        hand = getattr(ctx.plan, "orphan_pts_master", None)
        if hand is None:
            raise RestoreError(f"{where}: the master of pty {msg.index} was the dumping caller's; only a "
                               f"caller that takes a new one (orphan_pts_master over RPC) can restore it")
        saved, _, _ = _validate_pair(ctx, msg.pair, where)
        m = _open_at_index(ctx.path("/dev/pts/ptmx"), msg.index, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            k.ioctl_set_int(m, k.TIOCSPTLCK, 0, "TIOCSPTLCK")
            k.tcsets(m, saved)
            k.set_winsize(m, tuple(msg.pair.winsize))
            hand(m, msg.index)
            fault_point("orphan-pts-master")
        except OSError as e:
            raise RestoreError(f"pty {msg.index}: {e.strerror}") from None
        finally:
            os.close(m)                 # the caller holds it now
        handed.add(msg.index)
    try:
        return os.open(ctx.path(f"/dev/pts/{msg.index}"), flags)
    except OSError as e:
        raise RestoreError(f"cannot open /dev/pts/{msg.index}: {e.strerror}") from None


def _master_of(ctx, msg, where: str):
    """(our fd, detail) of the pair's master, opened (the pair made) first if need be."""
    master = ctx.files.get(msg.master_id)
    detail = MESSAGE()
    if master is None or master.kind != NAME or not master.detail.Unpack(detail) \
            or detail.type != MESSAGE.MASTER or detail.index != msg.index:
        raise ImageError(f"{where}: its master (file {msg.master_id}) is not the master of pty {msg.index}")
    return ctx.fd_of(master.id), detail


def _open_path(ctx, path: str, where: str) -> int:
    if not path.startswith("/dev/"):
        raise ImageError(f"{where}: bad terminal path {path!r}")
    try:
        fd = os.open(ctx.path(path), os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"cannot open {path} (O_PATH): {e.strerror}") from None
    if not stat.S_ISCHR(os.fstat(fd).st_mode):
        os.close(fd)
        raise RestoreError(f"{path} is no longer a terminal")
    return fd


def _validate_pair(ctx, pair, where: str) -> tuple[bytes, bytes, bytes]:
    """Check the pair's fields; returns (termios, input for the slave, output for the master)."""
    if len(pair.cc) != NCCS or pair.line != 0:
        raise ImageError(f"{where}: bad termios (line discipline {pair.line}, {len(pair.cc)} control characters)")
    if len(pair.winsize) != 4 or any(v > 0xFFFF for v in pair.winsize):
        raise ImageError(f"{where}: bad window size")
    if pair.session < 0 or pair.foreground < 0 or any(p <= 0 for p in pair.without_ctty):
        raise ImageError(f"{where}: bad session or foreground group")
    data = []
    for attr in ("to_slave", "to_master"):
        name, size = getattr(pair, attr), getattr(pair, attr + "_size")
        if not name:
            if size:
                raise ImageError(f"{where}: {size} queued bytes without a data image")
            data.append(b"")
            continue
        if not DATA_NAME.fullmatch(name) or ctx.images.size(name) != size:
            raise ImageError(f"{where}: bad data image {name!r} for {size} bytes")
        fd = ctx.images.open(name)
        try:
            data.append(os.pread(fd, size, 0))
        finally:
            os.close(fd)
    if len(data[0]) >= LINE_MAX:
        raise ImageError(f"{where}: more input queued for a slave than a terminal holds")
    termios_bytes = TERMIOS.pack(pair.iflag, pair.oflag, pair.cflag, pair.lflag, 0, pair.cc)
    return termios_bytes, data[0], data[1]


def _has_slaves(ctx, master_id: int) -> bool:
    """Does the dump hold a slave of this master? (else the slave was never opened, or closed)"""
    for entry in ctx.files.values():
        msg = MESSAGE()
        if entry.kind == NAME and entry.detail.Unpack(msg) and msg.type != MESSAGE.MASTER \
                and msg.master_id == master_id:
            return True
    return False


def _open_master(ctx, entry, msg, where: str) -> int:
    if not msg.HasField("pair"):
        raise ImageError(f"{where}: pty master without its pair")
    pair = msg.pair
    if not msg.path.startswith("/") or not msg.path.endswith("ptmx"):
        raise ImageError(f"{where}: bad ptmx path {msg.path!r}")
    saved, to_slave, to_master = _validate_pair(ctx, pair, where)
    m = _open_at_index(ctx.path(msg.path), msg.index, (entry.flags & OPEN_FLAGS) | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        k.ioctl_set_int(m, k.TIOCSPTLCK, 0, "TIOCSPTLCK")
        k.tcsets(m, saved)                      # through the master: the slave's termios
        # the slave is opened only if it had been: opening and closing a slave never
        # opened would leave the master seeing a hang-up
        if to_slave or pair.slave_closed or (to_master and _has_slaves(ctx, entry.id)):
            slave = k.ioctl_arg(m, k.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC,
                                "TIOCGPTPEER")
            try:
                _put_to_slave(slave, saved, to_slave, pair.packet)
                _put_to_master(m, slave, saved, to_master)
                k.tcsets(slave, saved)
            finally:
                # closed again: if no slave of the dump opens it, the master sees the hang-up it saw
                os.close(slave)
        elif to_master:
            if len(to_master) >= LINE_MAX:
                raise ImageError(f"{where}: more output queued for the master than it holds without its slave")
            _put_to_master(m, None, None, to_master)
        k.set_winsize(m, tuple(pair.winsize))
        k.ioctl_set_int(m, k.TIOCSPTLCK, int(pair.locked), "TIOCSPTLCK")
        if pair.packet:
            k.ioctl_set_int(m, k.TIOCPKT, 1, "TIOCPKT")   # last: termios changes made no status
    except OSError as e:
        os.close(m)
        raise RestoreError(f"pty {msg.index}: {e.strerror}") from None
    except BaseException:
        os.close(m)
        raise
    return m


def _open_at_index(path: str, index: int, flags: int) -> int:
    """A new master numbered `index`: devpts gives out the lowest free number, so open
    masters until it comes, then close the others."""
    extra = []
    try:
        while len(extra) <= index:
            try:
                fd = os.open(path, flags)
            except OSError as e:
                raise RestoreError(f"cannot open {path} for pty {index}: {e.strerror}") from None
            got = k.ioctl_get_int(fd, k.TIOCGPTN, "TIOCGPTN")
            if got == index:
                return fd
            extra.append(fd)
            if got > index:
                break
        raise RestoreError(f"pty {index} (/dev/pts/{index}) is in use by another process")
    finally:
        for fd in extra:
            os.close(fd)


def _open_dev_tty(m: int, flags: int, index: int) -> int:
    """An open of /dev/tty that leads to pty `index`: made by a helper that takes the pty as
    its controlling terminal (a new session), opens /dev/tty and hands the file over."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)   # the helper's exit ends it
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ours.close()
            os.setsid()
            k.ioctl_arg(m, k.TIOCSCTTY, 0, "TIOCSCTTY")
            fd = os.open("/dev/tty", flags)
            socket.send_fds(theirs, [b"t"], [fd])
            code = 0
        finally:
            os._exit(code)     # leaving the session lets the pty go: its leader is gone
    theirs.close()
    try:
        ours.settimeout(10)
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    except OSError as e:
        raise RestoreError(f"cannot open /dev/tty for pty {index}: {e}") from None
    finally:
        ours.close()
        os.waitpid(pid, 0)
    if not fds:
        raise RestoreError(f"cannot open /dev/tty for pty {index}")
    return fds[0]


# --- the controlling terminal, in the restoring tasks (called by engine/restoring.py) ----------

def _sessions(ctx):
    """(file id, pair) of every pair that is a session's controlling terminal: its master, or
    an open of its slave for an orphan pair."""
    out = ctx.shared.get("tty-sessions")
    if out is None:
        out = []
        for entry in ctx.files.values():
            if entry.kind != NAME:
                continue
            msg = MESSAGE()
            if entry.detail.Unpack(msg) and msg.pair.session and (msg.type == MESSAGE.MASTER or msg.orphan) \
                    and all(pair.session != msg.pair.session for _, pair in out):
                out.append((entry.id, msg.pair))
        ctx.shared["tty-sessions"] = out
    return out


def take_ctty(ctx, pid: int) -> None:
    """In a session leader right after setsid(), before it forks: its controlling terminal
    (the tasks it forks inherit it)."""
    external.take_ctty(ctx, pid)
    for file_id, pair in _sessions(ctx):
        if pair.session == pid:
            try:
                k.ioctl_arg(ctx.opened[file_id], k.TIOCSCTTY, 0, "TIOCSCTTY")
            except OSError as e:
                raise RestoreError(f"process {pid}: cannot take back its controlling terminal: "
                                   f"{e.strerror}") from None


def set_foreground(ctx, pid: int, sid: int, seen) -> None:
    """In every task once all process groups exist: the leader sets the foreground group;
    tasks that had no controlling terminal let go of the one they inherited.
    seen(pid) gives a PID as the task sees it (they differ in a PID namespace)."""
    for file_id, pair in _sessions(ctx):
        if pair.session != sid:
            continue
        if pid == sid and pair.foreground:
            try:
                k.ioctl_set_int(ctx.opened[file_id], k.TIOCSPGRP, seen(pair.foreground), "TIOCSPGRP")
            except OSError as e:
                if e.errno != errno.ESRCH:      # a foreground group left empty is gone for good
                    raise RestoreError(f"process {pid}: cannot make group {pair.foreground} the "
                                       f"foreground of its terminal: {e.strerror}") from None
        if pid in pair.without_ctty and pid != sid:
            try:
                fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    continue            # it did not inherit one
                raise
            try:
                k.ioctl_arg(fd, k.TIOCNOTTY, 0, "TIOCNOTTY")
            finally:
                os.close(fd)
