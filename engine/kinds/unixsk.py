"""Unix domain sockets: stream, datagram and seqpacket, with the data queued in them.

Dump (the tree is frozen).  sock_diag gives each socket's peer, its listen queue
and shutdown state; our copy of the socket (pidfd_getfd) gives its name, options
and receive queue.  The queue is read with MSG_PEEK from SO_PEEK_OFF 0 (the
task's own peek offset is put back), so nothing is consumed or reordered; files
passed with SCM_RIGHTS land in our fd table and are dumped as files of their
own.  Peers are files of the dump: sockets of the tree, or sockets only reachable
through a queue.  A peer outside is refused unless --ext-unix-sk.

Restore (in the orchestrator).  A connection is made as a whole: socketpair(),
or connect() + accept() on the restored listener when one end carried the
listener's name.  Each receive queue is refilled by sending from its peer (for
datagrams, from the sender when it is a socket of the dump), files in flight
included, before shutdown state and options are applied.  A listener's accepted
connections are made before the connections waiting in its queue are connected
again, in their order, so that they are still there to be accepted.
"""
from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
from contextlib import contextmanager

from .. import proc
from ..errors import ImageError, UnsupportedError
from ..files import FileRef, move_above
from . import _sock
from .unixsk_pb2 import UnixSocket as MESSAGE

NAME = "unixsk"
log = logging.getLogger("lxc_cr.unixsk")

SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
TYPE_NAMES = {SOCK_STREAM: "stream", SOCK_DGRAM: "datagram", SOCK_SEQPACKET: "seqpacket"}
ESTABLISHED, CLOSE, LISTEN = 1, 7, 10            # sock_diag states
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SIOCUNIXFILE = 0x89E0                            # an O_PATH fd on the bound socket file
SCM_RIGHTS, SCM_CREDENTIALS, SCM_PIDFD = 1, 2, 0x4C
MSG_CMSG_CLOEXEC = 0x40000000
PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT | MSG_CMSG_CLOEXEC
ANC_SIZE = 8192                                  # room for SCM_MAX_FD (253) fds, credentials, a label
CHUNK = 1 << 18                                  # bytes per read or send of queued data
SUN_PATH_MAX = 108
OPTS = _sock.COMMON


def matches(link: str, st: os.stat_result) -> bool:
    return stat.S_ISSOCK(st.st_mode) and _is_unix(st.st_ino)


_unix_inodes: set[int] = set()


def _is_unix(ino: int) -> bool:
    """Is this socket inode a unix socket of our network namespace?  (/proc/net/unix,
    re-read when an inode is not in the last reading)."""
    if ino not in _unix_inodes:
        lines = proc.read_bytes("/proc/self/net/unix").split(b"\n")[1:]
        _unix_inodes.update(int(line.split()[6]) for line in lines if line.strip())
    return ino in _unix_inodes


# --- sock_diag ---------------------------------------------------------------------------

class _Diag:
    """What sock_diag says about one unix socket."""
    __slots__ = ("type", "state", "peer", "icons", "rqueue", "wqueue", "shutdown", "vfs")

    def __init__(self, m):
        self.type = m["udiag_type"]
        self.state = m["udiag_state"]
        self.peer = m.get_attr("UNIX_DIAG_PEER") or 0
        icons = m.get_attr("UNIX_DIAG_ICONS")
        raw = bytes.fromhex(icons.replace(":", "")) if icons else b""
        self.icons = list(struct.unpack(f"<{len(raw) // 4}I", raw))
        rq = m.get_attr("UNIX_DIAG_RQLEN")
        # listening: connections queued and the backlog; otherwise bytes queued and sent
        self.rqueue = rq["udiag_rqueue"] if rq else 0
        self.wqueue = rq["udiag_wqueue"] if rq else 0
        self.shutdown = m.get_attr("UNIX_DIAG_SHUTDOWN") or 0
        vfs = m.get_attr("UNIX_DIAG_VFS")
        self.vfs = (vfs["udiag_vfs_dev"], vfs["udiag_vfs_ino"]) if vfs else None


def _diag_all() -> dict[int, _Diag]:
    from pyroute2 import DiagSocket
    from pyroute2.netlink.diag import (UDIAG_SHOW_ICONS, UDIAG_SHOW_PEER, UDIAG_SHOW_RQLEN,
                                       UDIAG_SHOW_VFS)
    with DiagSocket() as ds:
        ds.bind()
        msgs = ds.get_sock_stats(family=socket.AF_UNIX,
                                 show=UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN)
    return {m["udiag_ino"]: _Diag(m) for m in msgs}


def _held_sockets(pids) -> dict[int, tuple[int, int]]:
    """Socket inode -> (pid, fd) for every socket the tree holds."""
    out = {}
    for pid in sorted(pids):
        try:
            fds = proc.fds(pid)
        except (ProcessLookupError, OSError):
            continue        # a zombie
        for fd in fds:
            try:
                link = proc.fd_link(pid, fd)
            except (ProcessLookupError, OSError):
                continue
            if link.startswith("socket:["):
                out.setdefault(int(link[8:-1]), (pid, fd))
    return out


def _scm_fds(pid: int, fd: int) -> int:
    """Files in flight in a unix socket's receive queue (fdinfo)."""
    try:
        return int(proc.fdinfo(pid, fd).get("scm_fds", "0"))
    except (OSError, ValueError):
        return 0


class _DumpState:
    """Per-dump index of the unix sockets: diag, holders, sockets reachable in flight."""

    def __init__(self, ctx):
        self.diag = _diag_all()
        self.held = _held_sockets(ctx.tree)
        self.inflight: dict[int, int] | None = None      # inode -> our fd, found in queues
        self.names: dict[int, dict[bytes, int]] = {}     # type -> name -> inode
        # client inode -> the listener whose accept queue holds its connection
        self.queued_on = {c: ino for ino, d in self.diag.items() if d.state == LISTEN for c in d.icons if c}

    def info(self, ino: int) -> _Diag | None:
        if ino not in self.diag:
            self.diag.update(_diag_all())
        return self.diag.get(ino)

    def local(self, ctx, ino: int) -> int:
        """Our fd on a reachable socket."""
        if ino in self.held:
            pid, fd = self.held[ino]
            return ctx.local_fd(FileRef(pid, fd, "", None, {}, None))
        return self.inflight_sockets(ctx)[ino]

    def reachable(self, ctx, ino: int) -> bool:
        return ino in self.held or ino in self.inflight_sockets(ctx)

    def file_id(self, ctx, ino: int) -> int:
        """The file id of a socket of the dump (0: not part of it)."""
        if ino in self.held:
            return ctx.table.entry_for(*self.held[ino]).id
        fd = self.inflight_sockets(ctx).get(ino)
        return ctx.file_id_of_local(fd) if fd is not None else 0

    def inflight_sockets(self, ctx) -> dict[int, int]:
        """Unix sockets that only exist in flight, passed through the queues of the tree's
        sockets (and of those, recursively).  Our peeked fds stay open for the dump."""
        if self.inflight is not None:
            return self.inflight
        self.inflight = {}
        todo = [(pid, fd, None) for pid, fd in self.held.values() if _scm_fds(pid, fd)]
        while todo:
            pid, fd, local = todo.pop()
            if local is None:
                local = ctx.local_fd(FileRef(pid, fd, "", None, {}, None))
            d = self.info(os.fstat(local).st_ino)
            if d is None or d.state == LISTEN:
                continue
            with _sock.borrow(local) as sk:
                for _, fds, _, _ in _peek(sk, d):
                    for got in fds:
                        ino = os.fstat(got).st_ino
                        if ino in self.held or ino in self.inflight or not _is_unix(ino):
                            os.close(got)
                            continue
                        ctx.keep(got)
                        self.inflight[ino] = got
                        if _scm_fds(os.getpid(), got):
                            todo.append((os.getpid(), got, got))
        return self.inflight

    def named(self, ctx, name: bytes, sock_type: int) -> int:
        """The file id of the reachable socket of this type bound to `name` (0: none)."""
        if sock_type not in self.names:
            found = {}
            for ino in list(self.held) + list(self.inflight_sockets(ctx)):
                d = self.diag.get(ino)
                if d is None or d.type != sock_type:
                    continue
                with _sock.borrow(self.local(ctx, ino)) as sk:
                    own = _name_bytes(sk.getsockname())
                if own:
                    found.setdefault(own, ino)
            self.names[sock_type] = found
        ino = self.names[sock_type].get(name)
        return self.file_id(ctx, ino) if ino else 0

    def listener_named(self, ctx, name: bytes, d: _Diag) -> int:
        """The file id of the reachable listener whose name a connected socket carries (0: none)."""
        for ino, other in self.diag.items():
            if other.state != LISTEN or other.type != d.type or not self.reachable(ctx, ino):
                continue
            if name[:1] != b"\0" and other.vfs != d.vfs:
                continue
            with _sock.borrow(self.local(ctx, ino)) as sk:
                if _name_bytes(sk.getsockname()) == name:
                    return self.file_id(ctx, ino)
        return 0


def _state(ctx) -> _DumpState:
    if NAME not in ctx.shared:
        ctx.shared[NAME] = _DumpState(ctx)
    return ctx.shared[NAME]


def _name_bytes(addr) -> bytes:
    if not addr:
        return b""
    return os.fsencode(addr) if isinstance(addr, str) else bytes(addr)


def _show(name: bytes) -> str:
    if not name:
        return "unnamed"
    if name[:1] == b"\0":
        return "@" + name[1:].decode("utf-8", "replace")
    return name.decode("utf-8", "replace")


def _what(f, d: _Diag, name: bytes) -> str:
    return f"process {f.pid} fd {f.fd}: unix {TYPE_NAMES.get(d.type, d.type)} socket {_show(name)}"


# --- dump --------------------------------------------------------------------------------

def dump(ctx, f):
    st = _state(ctx)
    d = st.info(f.st.st_ino)
    if d is None:
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: unix socket {f.link} is unknown to sock_diag "
                               f"(in another network namespace?)")
    if d.type not in TYPE_NAMES:
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: unix socket of type {d.type} is not supported")
    msg = MESSAGE(ino=f.st.st_ino, type=d.type, shutdown=d.shutdown)
    with _sock.borrow(ctx.local_fd(f)) as sk:
        msg.name = _name_bytes(sk.getsockname())
        if msg.name and msg.name[:1] != b"\0":
            _dump_file(f, sk, d, msg)
        _sock.read_opts(sk, OPTS, msg.opts)
        if d.state == LISTEN:
            _dump_listener(ctx, st, f, d, msg)
            return msg
        if d.state not in (ESTABLISHED, CLOSE):
            raise UnsupportedError(f"{_what(f, d, msg.name)} is in state {d.state}, not supported")
        # an unconnected stream or seqpacket socket has no queue (recvmsg refuses)
        fds = _dump_queue(ctx, f, sk, d, msg) if d.state == ESTABLISHED or d.type == SOCK_DGRAM else []
        _dump_link(ctx, st, f, sk, d, msg)
    # files in flight are dumped once our own queue has been read
    for packet, got in fds:
        packet.fds.extend(ctx.file_id_of_local(fd) for fd in got)
    return msg


def _dump_file(f, sk, d: _Diag, msg) -> None:
    """Where the socket file of a path name is (the name may be relative), its mode and owner."""
    try:
        pfd = fcntl.ioctl(sk.fileno(), SIOCUNIXFILE)
    except OSError as e:
        raise UnsupportedError(f"{_what(f, d, msg.name)}: cannot find its socket file ({e.strerror})") from None
    try:
        path = os.readlink(f"/proc/self/fd/{pfd}")
        fst = os.fstat(pfd)
    finally:
        os.close(pfd)
    if path.endswith(" (deleted)"):
        path, msg.unlinked = path[:-len(" (deleted)")], True
    msg.path = path
    msg.file_mode, msg.file_uid, msg.file_gid = fst.st_mode, fst.st_uid, fst.st_gid


def _dump_listener(ctx, st: _DumpState, f, d: _Diag, msg) -> None:
    msg.listening = True
    msg.backlog = d.wqueue          # sk_max_ack_backlog
    loaded = any(c and st.info(c) is not None and st.info(c).wqueue for c in d.icons)
    if loaded and ctx.plan.leave_running:
        raise UnsupportedError(f"{_what(f, d, msg.name)}: a connection waiting to be accepted holds data, "
                               f"which can only be read by accepting it: not with --leave-running")
    servers = _accept_waiting(ctx, f, d, msg) if loaded or (0 in d.icons and not ctx.plan.leave_running) \
        else None
    for index, client in enumerate(d.icons):
        if client == 0:
            msg.pending.append(0)   # its client has closed: accept() will read its data, then EOF
        elif cid := st.file_id(ctx, client):
            msg.pending.append(cid)
        elif ctx.plan.ext_unix_sk:
            log.warning("%s: leaving out a waiting connection from outside the tree", _what(f, d, msg.name))
            continue
        else:
            raise UnsupportedError(f"{_what(f, d, msg.name)}: a connection waiting to be accepted comes from "
                                   f"outside the dumped tree (socket {client}); use --ext-unix-sk")
        if servers is not None:
            _dump_server_end(ctx, st, f, servers[index], msg.waiting.add(type=d.type))


def _accept_waiting(ctx, f, d: _Diag, msg) -> list[int]:
    """Our fds on the server ends of every waiting connection, in order: taken from the
    task's accept queue (nothing else reads a queue that no socket has yet).  The task
    dies after the dump; if it goes on running instead, these connections are lost to it."""
    servers = []
    with _sock.borrow(ctx.local_fd(f)) as lsk, _nonblocking(lsk.fileno()):
        for _ in d.icons:
            try:
                fd, _ = lsk._accept()
            except BlockingIOError:
                raise UnsupportedError(f"{_what(f, d, msg.name)}: its accept queue changed during the dump") \
                    from None
            ctx.keep(fd)
            servers.append(fd)
    what = _what(f, d, msg.name)
    ctx.on_release.append(lambda: log.error("%s: %d connections waiting to be accepted were taken by the "
                                            "dump and are lost to the task", what, len(servers)))
    return servers


def _dump_server_end(ctx, st: _DumpState, f, fd: int, out) -> None:
    """The receive queue (files in flight included) and shutdown state of an accepted server end."""
    with _sock.borrow(fd) as sk:
        d = st.info(os.fstat(fd).st_ino)
        if d is None:
            raise UnsupportedError(f"process {f.pid} fd {f.fd}: a connection waiting to be accepted is "
                                   f"unknown to sock_diag")
        out.shutdown = d.shutdown
        for packet, got in _dump_queue(ctx, f, sk, d, out):
            packet.fds.extend(ctx.file_id_of_local(i) for i in got)


def _dump_queue(ctx, f, sk, d: _Diag, msg) -> list:
    """The receive queue into a data image; returns (packet, our fds) for the files in flight."""
    st = _state(ctx)
    out = None
    files = []
    try:
        for data, fds, creds, sender in _peek(sk, d):
            for fd in fds:
                ctx.keep(fd)
            if out is None:
                msg.queue, out = ctx.data_file("usk")
            _sock.write_all(out, data)
            msg.queue_size += len(data)
            if d.type == SOCK_STREAM and msg.packets and not fds and not (files and files[-1][1] == len(msg.packets)) \
                    and _same_creds(msg.packets[-1], creds):
                msg.packets[-1].length += len(data)    # one run of bytes: a stream has no boundaries
                continue
            p = msg.packets.add(length=len(data))
            if creds is not None:
                p.creds = True
                p.pid, p.uid, p.gid = creds
            if d.type == SOCK_DGRAM and sender:
                p.sender = sender
            if fds:
                files.append((fds, len(msg.packets)))
    finally:
        if out is not None:
            os.close(out)
    for p in msg.packets:
        if p.sender:
            p.sender_id = st.named(ctx, p.sender, SOCK_DGRAM)
    return [(msg.packets[n - 1], fds) for fds, n in files]


def _same_creds(p, creds) -> bool:
    return p.creds == (creds is not None) and (creds is None or (p.pid, p.uid, p.gid) == tuple(creds))


def _dump_link(ctx, st: _DumpState, f, sk, d: _Diag, msg) -> None:
    """Whom the socket is connected to."""
    stream = d.type != SOCK_DGRAM
    if d.state != ESTABLISHED:
        if msg.packets and not msg.name:
            raise UnsupportedError(f"{_what(f, d, msg.name)}: messages queued in an unnamed unconnected "
                                   f"socket cannot be put back")
        return
    if f.st.st_ino in st.queued_on:
        # before d.peer: a connection the dump took from the accept queue has a peer now
        msg.queued_on = st.file_id(ctx, st.queued_on[f.st.st_ino])
        if msg.queued_on:
            msg.link = MESSAGE.PENDING
        else:
            _external(ctx, f, sk, d, msg, "a listener")
    elif d.peer:
        msg.peer = st.file_id(ctx, d.peer)
        if msg.peer:
            msg.link = MESSAGE.PEER
        else:
            _external(ctx, f, sk, d, msg, f"socket {d.peer}")
    else:
        # the other end was closed: its data, then EOF (a named datagram socket comes
        # back unconnected: others could still send to it)
        msg.link = MESSAGE.DISCONNECTED if stream or not msg.name else MESSAGE.NONE
    if stream and msg.name and msg.link in (MESSAGE.PEER, MESSAGE.DISCONNECTED):
        msg.listener = st.listener_named(ctx, msg.name, d)
    if d.type == SOCK_DGRAM and msg.packets and not msg.name and msg.link == MESSAGE.PEER:
        peer = st.info(d.peer)
        if peer is None or peer.peer != msg.ino:
            raise UnsupportedError(f"{_what(f, d, msg.name)}: messages queued in an unnamed datagram socket "
                                   f"that is not one end of a socketpair cannot be put back")


def _external(ctx, f, sk, d: _Diag, msg, whom: str) -> None:
    """A peer outside the dump: refused, or (--ext-unix-sk) kept as well as it can be."""
    try:
        peer_name = _name_bytes(sk.getpeername())
    except OSError:
        peer_name = b""
    if not ctx.plan.ext_unix_sk:
        raise UnsupportedError(f"{_what(f, d, msg.name)} is connected to {whom} outside the dumped tree "
                               f"({_show(peer_name)}); use --ext-unix-sk to allow it")
    msg.external = True
    if d.type != SOCK_DGRAM and msg.queued_on == 0 and d.peer:
        msg.link = MESSAGE.DISCONNECTED
        log.warning("%s: its peer is outside the tree; after restore it reads what is queued, then EOF",
                    _what(f, d, msg.name))
        return
    if not peer_name:
        raise UnsupportedError(f"{_what(f, d, msg.name)} is connected to an unnamed socket outside the "
                               f"dumped tree: it cannot be connected again")
    msg.link, msg.peer_name = MESSAGE.EXTERNAL, peer_name
    if msg.packets and not msg.name:
        raise UnsupportedError(f"{_what(f, d, msg.name)}: messages queued from outside the tree in an "
                               f"unnamed socket cannot be put back")


def check(ctx, f) -> list[str]:
    """For --check-only: peers outside the tree, data in connections not yet accepted."""
    st = ctx.shared.get(NAME + "-check")
    if st is None:
        st = ctx.shared[NAME + "-check"] = (_diag_all(), _held_sockets(ctx.tree))
    diag, held = st
    d = diag.get(f.st.st_ino)
    if d is None:
        return [f"process {f.pid} fd {f.fd}: unix socket {f.link} is unknown to sock_diag"]
    # a peer that is not held may still be in flight in a queue of the tree
    in_flight = any(_scm_fds(pid, fd) for pid, fd in held.values())
    reasons = []
    if d.state == ESTABLISHED and d.peer and d.peer not in held and not in_flight and not ctx.plan.ext_unix_sk:
        reasons.append(f"process {f.pid} fd {f.fd}: unix socket is connected to a socket outside the tree "
                       f"(use --ext-unix-sk)")
    for client in d.icons if d.state == LISTEN and ctx.plan.leave_running else ():
        cd = diag.get(client)
        if cd is not None and cd.wqueue:
            reasons.append(f"process {f.pid} fd {f.fd}: unix listener has a connection waiting to be "
                           f"accepted that holds data (not with --leave-running)")
    return reasons


# --- reading a queue without consuming it -------------------------------------------------

@contextmanager
def _peek_offset(sk):
    """SO_PEEK_OFF 0 while we read; the task's own value after."""
    old = sk.getsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF)
    sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, 0)
    try:
        yield
    finally:
        sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, old)


def _peek(sk, d: _Diag):
    """(data, fds, creds, sender) for each message of the receive queue (stream: each run of
    bytes; a run ends with the message that passed files), in order, consuming nothing.
    The fds are ours: the caller keeps or closes them."""
    buf = bytearray(CHUNK)
    with _peek_offset(sk):
        if d.type == SOCK_STREAM:
            yield from _peek_stream(sk, buf)
        else:
            eof = d.type == SOCK_SEQPACKET and d.shutdown & RCV_SHUTDOWN
            yield from _peek_messages(sk, buf, eof, d.rqueue)


def _peek_stream(sk, buf):
    off = 0
    while True:
        sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, off)
        got = _recv(sk, buf, len(buf))
        if got is None or got[0] == 0:
            return
        n, fds, creds, _ = got
        if fds and n > 1:
            # A peek ends with the message that passed files, but where that message
            # starts cannot be seen without consuming (every peek reaches ahead to the
            # files).  They go back with the last byte: a read of the whole message
            # still gets them with it, a read that stops before it does not.
            yield bytes(buf[:n - 1]), [], creds, b""
            yield bytes(buf[n - 1:n]), fds, creds, b""
        else:
            yield bytes(buf[:n]), fds, creds, b""
        off += n


def _peek_messages(sk, buf, eof_at_end: bool, total: int):
    seen = 0
    while True:
        before = sk.getsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF)
        got = _recv(sk, buf, len(buf), socket.MSG_TRUNC)
        if got is None:
            return
        n, fds, creds, sender = got
        if n > len(buf):
            # longer than our buffer: read the same message again with room for it
            _close(fds)
            buf = bytearray(n)
            sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, before)
            continue
        if n == 0 and eof_at_end and seen >= total:
            return              # a shut-down seqpacket socket reads 0 at the end, forever
        seen += n
        yield bytes(buf[:n]), fds, creds, sender


def _recv(sk, buf, size: int, flags: int = 0):
    try:
        n, anc, mflags, addr = sk.recvmsg_into([memoryview(buf)[:size]], ANC_SIZE, PEEK | flags)
    except BlockingIOError:
        return None
    fds, creds = _parse_anc(anc)
    if mflags & socket.MSG_CTRUNC:
        _close(fds)
        raise UnsupportedError("a queued message carries more control data than can be read")
    return n, fds, creds, _name_bytes(addr)


def _parse_anc(anc) -> tuple[list[int], tuple | None]:
    fds, creds = [], None
    for level, kind, data in anc:
        if level != socket.SOL_SOCKET:
            continue
        if kind == SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[:len(data) - len(data) % 4])
            fds.extend(a)
        elif kind == SCM_CREDENTIALS and len(data) >= 12:
            creds = struct.unpack_from("<iII", data)
        elif kind == SCM_PIDFD and len(data) >= 4:
            os.close(struct.unpack_from("<i", data)[0])     # a pidfd the peek made for us
    return fds, creds


def _close(fds) -> None:
    for fd in fds:
        os.close(fd)


# --- restore -----------------------------------------------------------------------------

class _RestoreState:
    """The unix sockets made so far (file id -> our fd) and what waits for the last one."""

    def __init__(self, ctx):
        self.fds: dict[int, int] = {}
        self.msgs: dict[int, object] = {}
        for entry in ctx.files.values():
            if entry.kind == NAME:
                m = MESSAGE()
                if not entry.detail.Unpack(m):
                    raise ImageError(f"files.img: file {entry.id} detail is not a UnixSocket")
                self.msgs[entry.id] = m
        self.unlink_later: list[tuple[str, int]] = []      # (path, inode): names the task had removed
        self.live_files: set | None = None                 # socket files some socket is bound to
        # every one checked before any is made: a connection makes both of its ends
        for file_id, m in self.msgs.items():
            _validate(ctx, self, file_id, m)


def _rstate(ctx) -> _RestoreState:
    if NAME not in ctx.shared:
        ctx.shared[NAME] = _RestoreState(ctx)
    return ctx.shared[NAME]


def open(ctx, entry, msg) -> int:
    rs = _rstate(ctx)
    msg = rs.msgs[entry.id]         # the checked copy every other socket's restore sees
    if entry.id not in rs.fds:
        if msg.listening:
            _open_listener(ctx, rs, entry.id, msg)
        elif msg.link == MESSAGE.PENDING:
            _make_client(ctx, rs, entry.id, msg)
            _sock_of(ctx, rs, msg.queued_on)        # opening the listener connects its queue
        elif msg.type != SOCK_DGRAM and msg.link in (MESSAGE.PEER, MESSAGE.DISCONNECTED):
            _open_connection(ctx, rs, entry.id, msg)
        elif msg.type == SOCK_DGRAM and _dgram_pair(rs, entry.id, msg):
            _open_dgram_pair(ctx, rs, entry.id, msg)
        else:
            _open_single(ctx, rs, entry.id, msg)
    if entry.id not in rs.fds:
        raise ImageError(f"files.img: unix socket {entry.id} was not made (inconsistent links)")
    if len(rs.fds) == len(rs.msgs):
        _finish(rs)
    return rs.fds[entry.id]


def _validate(ctx, rs: _RestoreState, file_id: int, msg) -> None:
    where = f"files.img: unix socket {file_id}"
    if msg.type not in TYPE_NAMES or msg.shutdown & ~3:
        raise ImageError(f"{where}: bad type or shutdown state")
    if len(msg.name) > SUN_PATH_MAX or len(msg.peer_name) > SUN_PATH_MAX:
        raise ImageError(f"{where}: name longer than {SUN_PATH_MAX} bytes")
    if msg.name and msg.name[:1] != b"\0" and not msg.path.startswith("/"):
        raise ImageError(f"{where}: path name without an absolute socket file path")
    if b"\0" in msg.name[1:] and msg.name[:1] != b"\0":
        raise ImageError(f"{where}: path name with a NUL byte")
    for ref in [msg.peer, msg.listener, msg.queued_on] + [p for p in msg.pending if p]:
        if ref and ref not in rs.msgs:
            raise ImageError(f"{where}: refers to file {ref}, which is not a unix socket of the dump")
    if msg.link == MESSAGE.PEER and not msg.peer or msg.link == MESSAGE.PENDING and not msg.queued_on:
        raise ImageError(f"{where}: connected to nothing")
    if msg.link == MESSAGE.PEER and msg.type != SOCK_DGRAM and rs.msgs[msg.peer].peer != file_id:
        raise ImageError(f"{where}: its peer {msg.peer} is connected elsewhere")
    if msg.link == MESSAGE.EXTERNAL and not msg.peer_name:
        raise ImageError(f"{where}: connected outside the dump, to no name")
    if msg.listener and not rs.msgs[msg.listener].listening:
        raise ImageError(f"{where}: accepted from file {msg.listener}, which is not listening")
    if msg.listening and (msg.backlog > 1 << 20 or msg.link != MESSAGE.NONE):
        raise ImageError(f"{where}: bad listening state")
    if msg.external and not ctx.plan.ext_unix_sk:
        raise ImageError(f"unix socket {_show(msg.name)} (file {file_id}) was connected outside the dumped "
                         f"tree: restore with --ext-unix-sk")
    _sock.validate_opts(msg.opts, OPTS, where)
    if msg.waiting and (len(msg.waiting) != len(msg.pending) or not msg.listening):
        raise ImageError(f"{where}: waiting connections do not match the accept queue")
    for server in msg.waiting:
        if server.waiting or server.type != msg.type:
            raise ImageError(f"{where}: malformed waiting connection")
        _validate_queue(ctx, rs, server, where)
    _validate_queue(ctx, rs, msg, where)


def _validate_queue(ctx, rs: _RestoreState, msg, where: str) -> None:
    if msg.queue_size or msg.packets:
        if not msg.queue.startswith("usk-") or "/" in msg.queue:
            raise ImageError(f"{where}: bad queue image name {msg.queue!r}")
        if sum(p.length for p in msg.packets) != msg.queue_size or ctx.images.size(msg.queue) != msg.queue_size:
            raise ImageError(f"{where}: queue sizes disagree with {msg.queue}")
    for p in msg.packets:
        if any(i not in ctx.files for i in p.fds) or (p.sender_id and p.sender_id not in rs.msgs):
            raise ImageError(f"{where}: a queued message refers to an unknown file")
        if len(p.fds) > 253 or len(p.sender) > SUN_PATH_MAX:
            raise ImageError(f"{where}: malformed queued message")


def _finish(rs: _RestoreState) -> None:
    """Once every unix socket exists: remove the names their tasks had removed."""
    while rs.unlink_later:
        path, ino = rs.unlink_later.pop()
        try:
            if os.lstat(path).st_ino == ino:
                os.unlink(path)
        except OSError:
            pass


def _sock_of(ctx, rs: _RestoreState, file_id: int) -> int:
    """Our fd on another unix socket of the dump, made now if it is not yet."""
    if file_id in rs.fds:
        return rs.fds[file_id]
    return ctx.fd_of(file_id)


def _new(msg) -> socket.socket:
    sk = socket.socket(socket.AF_UNIX, msg.type)
    _sock.apply_opts(sk, msg.opts, OPTS, _sock.BUFFER, f"unix socket {_show(msg.name)}")
    return sk


def _register(ctx, rs: _RestoreState, file_id: int, sk: socket.socket) -> int:
    """The socket's fd, above every fd the tasks use, with the open file's flags."""
    fd = move_above(sk.detach(), ctx.base_fd)
    flags = ctx.files[file_id].flags
    if flags & os.O_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    rs.fds[file_id] = fd
    return fd


def _late(fd: int, msg) -> None:
    """Shutdown state and the options that must wait until the queues are refilled."""
    where = f"unix socket {_show(msg.name)}"
    with _sock.borrow(fd) as sk:
        if msg.shutdown and msg.link != MESSAGE.DISCONNECTED:
            try:
                sk.shutdown(msg.shutdown - 1)       # 1 -> SHUT_RD, 2 -> SHUT_WR, 3 -> SHUT_RDWR
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    raise ImageError(f"{where}: cannot shut down: {e.strerror}") from None
        for stage in (_sock.LATE, _sock.LAST):
            _sock.apply_opts(sk, msg.opts, OPTS, stage, where)


# --- names -------------------------------------------------------------------------------

def _address(msg) -> bytes:
    """What connect() or sendto() takes to reach the socket: its path or abstract name."""
    if msg.name[:1] == b"\0":
        return msg.name
    return os.fsencode(msg.path) if msg.name else b""


def _bind(ctx, rs: _RestoreState, sk: socket.socket, msg, strict: bool) -> None:
    """Bind the socket to its dumped name.  A connected socket's name is kept when possible
    (strict=False: a warning otherwise); a socket others reach by name must get it."""
    if not msg.name:
        return
    try:
        if msg.name[:1] == b"\0":
            sk.bind(msg.name)
        else:
            _bind_path(rs, sk, msg)
    except (OSError, ImageError) as e:
        text = e.strerror if isinstance(e, OSError) else str(e)
        if strict:
            raise ImageError(f"cannot bind unix socket to {_show(msg.name)}: {text}") from None
        log.warning("unix socket %s comes back unnamed: %s", _show(msg.name), text)


def _bind_path(rs: _RestoreState, sk: socket.socket, msg) -> None:
    path = msg.path
    _clear_stale(rs, path)
    name = msg.name.decode("utf-8", "surrogateescape")
    if name.startswith("/") or not path.endswith("/" + name.lstrip("./")):
        sk.bind(path if not name.startswith("/") else name)
    else:
        # a relative name: bind it from the directory it was relative to, so that
        # getsockname() reads the same
        here = os.open(".", os.O_PATH | os.O_CLOEXEC)
        try:
            os.chdir(path[:len(path) - len(name.lstrip("./"))] or "/")
            sk.bind(name)
        finally:
            os.fchdir(here)
            os.close(here)
    os.chown(path, msg.file_uid, msg.file_gid, follow_symlinks=False)
    os.chmod(path, stat.S_IMODE(msg.file_mode))
    if msg.unlinked:
        rs.unlink_later.append((path, os.lstat(path).st_ino))


def _clear_stale(rs: _RestoreState, path: str) -> None:
    """A socket file left at the path by the dumped socket may go; anything else stays."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ImageError(f"{path} exists and is not a socket")
    if rs.live_files is None:
        rs.live_files = {d.vfs for d in _diag_all().values() if d.vfs}
    dev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)     # the kernel's encoding in sock_diag
    if (dev, st.st_ino) in rs.live_files:
        raise ImageError(f"{path} belongs to a live socket")
    os.unlink(path)


# --- making sockets ----------------------------------------------------------------------

def _open_single(ctx, rs: _RestoreState, file_id: int, msg) -> None:
    """A socket on its own: unconnected, or a datagram socket connected by name."""
    sk = _new(msg)
    _bind(ctx, rs, sk, msg, strict=msg.type == SOCK_DGRAM or msg.link == MESSAGE.NONE)
    fd = _register(ctx, rs, file_id, sk)
    if msg.type == SOCK_DGRAM:
        _fill_datagrams(ctx, rs, fd, msg)
    elif msg.packets:
        raise ImageError(f"files.img: unconnected unix socket {file_id} has queued data")
    elif msg.link == MESSAGE.EXTERNAL:
        # it waited in the queue of a listener outside the tree: it waits there again
        with _sock.borrow(fd) as s:
            _connect(s, bytes(msg.peer_name), f"unix socket {_show(msg.name)}")
    _late(fd, msg)


def _open_listener(ctx, rs: _RestoreState, file_id: int, msg) -> None:
    sk = _new(msg)
    _bind(ctx, rs, sk, msg, strict=True)
    sk.listen(msg.backlog)
    fd = _register(ctx, rs, file_id, sk)
    # the connections it accepted first, while its queue is empty, so that accept()
    # takes the one just made; then the ones waiting in its queue, in order
    for other_id, other in rs.msgs.items():
        if other.listener == file_id and other_id not in rs.fds:
            _open_connection(ctx, rs, other_id, other)
    for index, client_id in enumerate(msg.pending):
        _connect_pending(ctx, rs, fd, msg, client_id, msg.waiting[index] if msg.waiting else None)
    _late(fd, msg)


def _make_client(ctx, rs: _RestoreState, file_id: int, msg) -> int:
    """A client whose connection waits in a listener's queue: made now, connected by the listener."""
    if file_id in rs.fds:
        return rs.fds[file_id]
    sk = _new(msg)
    _bind(ctx, rs, sk, msg, strict=False)
    return _register(ctx, rs, file_id, sk)


def _connect_pending(ctx, rs: _RestoreState, listener_fd: int, lmsg, client_id: int, server) -> None:
    """Connect a waiting connection again; its client sends what the server end had queued."""
    if client_id == 0:
        # a connection whose client had closed: connect one, send its data, and close it
        with socket.socket(socket.AF_UNIX, lmsg.type) as tmp:
            tmp.connect(_address(lmsg))
            if server is not None:
                _send_queue(ctx, server, tmp.fileno())
        return
    cmsg = rs.msgs[client_id]
    if cmsg.link != MESSAGE.PENDING or cmsg.queued_on not in rs.fds or rs.fds[cmsg.queued_on] != listener_fd:
        raise ImageError(f"files.img: unix socket {client_id} is not waiting on this listener")
    fd = _make_client(ctx, rs, client_id, cmsg)
    with _sock.borrow(fd) as sk:
        _connect(sk, _address(lmsg), f"unix socket {client_id}")
    if server is not None:
        _send_queue(ctx, server, fd)
    _late(fd, cmsg)


@contextmanager
def _nonblocking(fd: int):
    """O_NONBLOCK for a moment (a full backlog must fail, not hang the restore); the
    open file's own flags after."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        yield
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def _connect(sk: socket.socket, address: bytes, what: str) -> None:
    try:
        with _nonblocking(sk.fileno()):
            sk.connect(address)
    except OSError as e:
        raise ImageError(f"{what}: cannot connect to {_show(address)}: {e.strerror}") from None


def _open_connection(ctx, rs: _RestoreState, file_id: int, msg) -> None:
    """A connected stream or seqpacket socket, made with its other end."""
    if msg.link == MESSAGE.PEER:
        ends = [(file_id, msg), (msg.peer, rs.msgs[msg.peer])]
    else:
        ends = [(file_id, msg), (0, None)]          # the other end is gone: a stand-in, closed after
    # the end that came from a listener (and carries its name) is made by accept()
    server = next((i for i, (_, m) in enumerate(ends) if m is not None and m.listener), None)
    if server is not None:
        listener = ends[server][1].listener
        if listener not in rs.fds:
            _sock_of(ctx, rs, listener)             # the listener makes its connections
            return
        if server == 1:
            ends.reverse()
        s_sock, c_sock = _through_listener(ctx, rs, ends[0][1], ends[1][1], rs.fds[listener])
    else:
        s_sock, c_sock = socket.socketpair(socket.AF_UNIX, msg.type)
        for sk, (_, m) in zip((s_sock, c_sock), ends):
            if m is not None:
                _apply_buffers(sk, m)
                _bind(ctx, rs, sk, m, strict=False)
    fds = []
    for sk, (i, m) in zip((s_sock, c_sock), ends):
        fds.append(_register(ctx, rs, i, sk) if m is not None else move_above(sk.detach(), ctx.base_fd))
    for (fd, (_, m)), other in zip(zip(fds, ends), reversed(fds)):
        if m is not None:
            _send_queue(ctx, m, other)     # a receive queue, sent again by the other end
    for fd, (i, m) in zip(fds, ends):
        if m is None:
            os.close(fd)
    for fd, (_, m) in zip(fds, ends):
        if m is not None:
            _late(fd, m)


def _apply_buffers(sk: socket.socket, m) -> None:
    _sock.apply_opts(sk, m.opts, OPTS, _sock.BUFFER, f"unix socket {_show(m.name)}")


def _through_listener(ctx, rs: _RestoreState, smsg, cmsg, listener_fd: int):
    """connect() a client (or a stand-in) to the restored listener and accept() the server end."""
    lmsg = rs.msgs[smsg.listener]
    c_sock = _new(cmsg) if cmsg is not None else socket.socket(socket.AF_UNIX, smsg.type)
    if cmsg is not None:
        _bind(ctx, rs, c_sock, cmsg, strict=False)
    _connect(c_sock, _address(lmsg), f"unix socket {_show(cmsg.name) if cmsg else 'stand-in'}")
    with _sock.borrow(listener_fd) as lsk, _nonblocking(listener_fd):
        try:
            s_sock, _ = lsk.accept()
        except OSError as e:
            raise ImageError(f"unix socket {_show(lmsg.name)}: cannot accept its connection again: "
                             f"{e.strerror}") from None
    _apply_buffers(s_sock, smsg)
    return s_sock, c_sock


def _dgram_pair(rs: _RestoreState, file_id: int, msg) -> bool:
    """Datagram sockets made as a socketpair: two connected to each other, one of them
    unnamed; or an unnamed one whose peer is gone (a stand-in sends its queue, then closes)."""
    if msg.link == MESSAGE.DISCONNECTED:
        return not msg.name
    if msg.link != MESSAGE.PEER:
        return False
    peer = rs.msgs[msg.peer]
    return peer.link == MESSAGE.PEER and peer.peer == file_id and (not msg.name or not peer.name)


def _open_dgram_pair(ctx, rs: _RestoreState, file_id: int, msg) -> None:
    ends = [(file_id, msg), (msg.peer, rs.msgs[msg.peer]) if msg.link == MESSAGE.PEER else (0, None)]
    socks = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sk, (_, m) in zip(socks, ends):
        if m is not None:
            _apply_buffers(sk, m)
            _bind(ctx, rs, sk, m, strict=False)
    fds = [_register(ctx, rs, i, sk) if m is not None else move_above(sk.detach(), ctx.base_fd)
           for sk, (i, m) in zip(socks, ends)]
    for fd, other, (_, m) in zip(fds, reversed(fds), ends):
        if m is not None:
            # only its peer can reach an end of a socketpair: every message comes from it
            _send_queue(ctx, m, other)
    for fd, (_, m) in zip(fds, ends):
        if m is None:
            os.close(fd)
        else:
            _late(fd, m)


# --- refilling queues --------------------------------------------------------------------

def _fill_datagrams(ctx, rs: _RestoreState, fd: int, msg) -> None:
    """A datagram socket's queue, then its connection.  Before connect() anyone may send to
    it; after, only its peer, but the peer's messages do not count against the queue limit
    (net.unix.max_dgram_qlen): connect after the last message from someone else."""
    address = _address(msg)
    peer = msg.peer if msg.link == MESSAGE.PEER else 0
    split = len(msg.packets)
    while split and peer and msg.packets[split - 1].sender_id == peer:
        split -= 1

    data = _queue_reader(ctx, msg)
    try:
        for index, p in enumerate(msg.packets):
            if index == split:
                _connect_dgram(ctx, rs, fd, msg)
            # from outside the dump, or unnamed: a stand-in sends it
            sender = _sock_of(ctx, rs, p.sender_id) if p.sender_id else None
            _send_packet(ctx, msg, p, next(data), sender, address)
        if split == len(msg.packets):
            _connect_dgram(ctx, rs, fd, msg)
    finally:
        data.close()


def _connect_dgram(ctx, rs: _RestoreState, fd: int, msg) -> None:
    if msg.link == MESSAGE.PEER:
        _sock_of(ctx, rs, msg.peer)             # made (and bound) first
        address = _address(rs.msgs[msg.peer])
        if not address:
            raise ImageError(f"unix socket {_show(msg.name)} is connected to an unnamed datagram socket "
                             f"that is connected elsewhere")
    elif msg.link == MESSAGE.EXTERNAL:
        address = bytes(msg.peer_name)
    else:
        return
    with _sock.borrow(fd) as sk:
        _connect(sk, address, f"unix socket {_show(msg.name)}")


def _send_queue(ctx, msg, sender_fd: int) -> None:
    """A receive queue, sent again by the socket at the other end of the connection."""
    data = _queue_reader(ctx, msg)
    try:
        for p in msg.packets:
            _send_packet(ctx, msg, p, next(data), sender_fd, b"")
    finally:
        data.close()


def _queue_reader(ctx, msg):
    """The bytes of each packet in turn (a generator over the queue image)."""
    if not msg.packets:
        return
    fd = ctx.images.open(msg.queue)
    try:
        for p in msg.packets:
            yield _sock.read_exact(fd, p.length, msg.queue)
    finally:
        os.close(fd)


def _send_packet(ctx, msg, p, data: bytes, sender_fd: int | None, address: bytes) -> None:
    """One message (or run of bytes) sent again, with its files and credentials."""
    anc = []
    if p.fds:
        anc.append((socket.SOL_SOCKET, SCM_RIGHTS, array.array("i", [ctx.fd_of(i) for i in p.fds])))
    if p.creds:
        # the uid and gid the receiver saw; the pid can only be a live one: ours
        anc.append((socket.SOL_SOCKET, SCM_CREDENTIALS, struct.pack("<iII", os.getpid(), p.uid, p.gid)))
    where = f"unix socket {_show(msg.name)}"
    if msg.type != SOCK_DGRAM:
        address = b""               # sent by the other end of the connection
    # a stand-in (unnamed) sends what came from outside the dump or from an unnamed socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if sender_fd is None else _sock.borrow(sender_fd) as sk:
        # skbs still queued are charged to their sender: room for the whole queue
        with _sock.big_send_buffer(sk, msg.queue_size + 1024 * len(msg.packets)):
            _send(sk, data, anc, address, where)


def _send(sk, data: bytes, anc, address: bytes, where: str) -> None:
    view = memoryview(data)
    try:
        if sk.type != socket.SOCK_STREAM or anc:
            # a message, or bytes that carry files: one sendmsg, so they stay together
            n = sk.sendmsg([view], anc, socket.MSG_DONTWAIT, address) if address else \
                sk.sendmsg([view], anc, socket.MSG_DONTWAIT)
            view = view[n:]
            anc = []
        while view:
            n = sk.send(view[:CHUNK], socket.MSG_DONTWAIT)
            view = view[n:]
    except OSError as e:
        raise ImageError(f"{where}: cannot put its queued data back: {e.strerror}") from None
