"""Unix domain sockets: stream, datagram and seqpacket, with the data queued in them.

This module holds the kind's entry points, the dump of each socket and the checks
of its image; _unixdiag.py what the kernel says about unix sockets, _unixq.py the
receive queues (peeked at dump, sent again at restore), _unixconn.py the sockets
and connections made again at restore.

Dump (the tree is frozen).  sock_diag gives each socket's peer, its listen queue
and shutdown state; our copy of the socket (pidfd_getfd) gives its name, options
and receive queue, which is peeked without consuming it.  Peers are files of the
dump: sockets of the tree, or sockets only reachable through a queue.  A peer
outside is refused unless --ext-unix-sk.  A connection waiting to be accepted that
holds data is taken from the task's accept queue (the data of a socket nobody has
accepted cannot be read otherwise): refused with --leave-running.

Restore (in the orchestrator).  A connection is made as a whole: socketpair(),
or connect() + accept() on the restored listener when one end carried the
listener's name.  Each receive queue is refilled by sending from its peer (for
datagrams, from the sender when it is a socket of the dump), files in flight
included, before shutdown state and options are applied.  A listener's accepted
connections are made before the connections waiting in its queue are connected
again, in their order, so that they are still there to be accepted.
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat

from ..errors import ImageError, UnsupportedError
from ..files import FileRef
from . import _sock, _unixconn, _unixdiag, _unixq
from ._unixdiag import CLOSE, ESTABLISHED, LISTEN, SOCK_DGRAM, TYPE_NAMES
from .unixsk_pb2 import UnixSocket as MESSAGE

NAME = "unixsk"
log = logging.getLogger("lxc_cr.unixsk")

SIOCUNIXFILE = 0x89E0                            # an O_PATH fd on the bound socket file
SUN_PATH_MAX = 108
OPTS = _sock.COMMON


def matches(link: str, st: os.stat_result) -> bool:
    return stat.S_ISSOCK(st.st_mode) and _unixdiag.is_unix(st.st_ino)


# --- dump --------------------------------------------------------------------------------


class _DumpState:
    """Per-dump index of the unix sockets: diag, holders, sockets reachable in flight."""

    def __init__(self, ctx):
        self.diag = _unixdiag.diag_all()
        self.held = _unixdiag.held_sockets(ctx.tree)
        self.inflight: dict[int, int] | None = None      # inode -> our fd, found in queues
        self.names: dict[int, dict[bytes, int]] = {}     # type -> name -> inode
        # client inode -> the listener whose accept queue holds its connection
        self.queued_on = {c: ino for ino, d in self.diag.items() if d.state == LISTEN for c in d.icons if c}

    def info(self, ino: int) -> _unixdiag.Diag | None:
        if ino not in self.diag:
            self.diag.update(_unixdiag.diag_all())
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
        todo = [(pid, fd, None) for pid, fd in self.held.values() if _unixdiag.scm_fds(pid, fd)]
        while todo:
            pid, fd, local = todo.pop()
            if local is None:
                local = ctx.local_fd(FileRef(pid, fd, "", None, {}, None))
            d = self.info(os.fstat(local).st_ino)
            if d is None or d.state == LISTEN:
                continue
            with _sock.borrow(local) as sk:
                for _, fds, _, _ in _unixq.peek(sk, d):
                    for got in fds:
                        ino = os.fstat(got).st_ino
                        if ino in self.held or ino in self.inflight or not _unixdiag.is_unix(ino):
                            os.close(got)
                            continue
                        ctx.keep(got)
                        self.inflight[ino] = got
                        if _unixdiag.scm_fds(os.getpid(), got):
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
                    own = _unixdiag.name_bytes(sk.getsockname())
                if own:
                    found.setdefault(own, ino)
            self.names[sock_type] = found
        ino = self.names[sock_type].get(name)
        return self.file_id(ctx, ino) if ino else 0

    def listener_named(self, ctx, name: bytes, d: _unixdiag.Diag) -> int:
        """The file id of the reachable listener whose name a connected socket carries (0: none)."""
        for ino, other in self.diag.items():
            if other.state != LISTEN or other.type != d.type or not self.reachable(ctx, ino):
                continue
            if name[:1] != b"\0" and other.vfs != d.vfs:
                continue
            with _sock.borrow(self.local(ctx, ino)) as sk:
                if _unixdiag.name_bytes(sk.getsockname()) == name:
                    return self.file_id(ctx, ino)
        return 0


def _state(ctx) -> _DumpState:
    if NAME not in ctx.shared:
        ctx.shared[NAME] = _DumpState(ctx)
    return ctx.shared[NAME]


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
        msg.name = _unixdiag.name_bytes(sk.getsockname())
        if msg.name and msg.name[:1] != b"\0":
            _dump_file(f, sk, d, msg)
        _sock.read_opts(sk, OPTS, msg.opts)
        if d.state == LISTEN:
            _dump_listener(ctx, st, f, d, msg)
            return msg
        if d.state not in (ESTABLISHED, CLOSE):
            raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)} is in state {d.state}, not supported")
        # an unconnected stream or seqpacket socket has no queue (recvmsg refuses)
        fds = _unixq.dump_queue(ctx, _state(ctx), f, sk, d, msg) if d.state == ESTABLISHED or d.type == SOCK_DGRAM else []
        _dump_link(ctx, st, f, sk, d, msg)
    # files in flight are dumped once our own queue has been read
    for packet, got in fds:
        packet.fds.extend(ctx.file_id_of_local(fd) for fd in got)
    return msg


def _dump_file(f, sk, d: _unixdiag.Diag, msg) -> None:
    """Where the socket file of a path name is (the name may be relative), its mode and owner."""
    try:
        pfd = fcntl.ioctl(sk.fileno(), SIOCUNIXFILE)
    except OSError as e:
        raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)}: cannot find its socket file ({e.strerror})") from None
    try:
        path = os.readlink(f"/proc/self/fd/{pfd}")
        fst = os.fstat(pfd)
    finally:
        os.close(pfd)
    if path.endswith(" (deleted)"):
        path, msg.unlinked = path[:-len(" (deleted)")], True
    msg.path = path
    msg.file_mode, msg.file_uid, msg.file_gid = fst.st_mode, fst.st_uid, fst.st_gid


def _dump_listener(ctx, st: _DumpState, f, d: _unixdiag.Diag, msg) -> None:
    msg.listening = True
    msg.backlog = d.wqueue          # sk_max_ack_backlog
    loaded = any(c and st.info(c) is not None and st.info(c).wqueue for c in d.icons)
    if loaded and ctx.plan.leave_running:
        raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)}: a connection waiting to be accepted holds data, "
                               f"which can only be read by accepting it: not with --leave-running")
    servers = _accept_waiting(ctx, f, d, msg) if loaded or (0 in d.icons and not ctx.plan.leave_running) \
        else None
    for index, client in enumerate(d.icons):
        if client == 0:
            msg.pending.append(0)   # its client has closed: accept() will read its data, then EOF
        elif cid := st.file_id(ctx, client):
            msg.pending.append(cid)
        elif ctx.plan.ext_unix_sk:
            log.warning("%s: leaving out a waiting connection from outside the tree", _unixdiag.what(f, d, msg.name))
            continue
        else:
            raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)}: a connection waiting to be accepted comes from "
                                   f"outside the dumped tree (socket {client}); use --ext-unix-sk")
        if servers is not None:
            _dump_server_end(ctx, st, f, servers[index], msg.waiting.add(type=d.type))


def _accept_waiting(ctx, f, d: _unixdiag.Diag, msg) -> list[int]:
    """Our fds on the server ends of every waiting connection, in order: taken from the
    task's accept queue (nothing else reads a queue that no socket has yet).  The task
    dies after the dump; if it goes on running instead, these connections are lost to it."""
    servers = []
    with _sock.borrow(ctx.local_fd(f)) as lsk, _sock.nonblocking(lsk.fileno()):
        for _ in d.icons:
            try:
                fd, _ = lsk._accept()
            except BlockingIOError:
                raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)}: its accept queue changed during the dump") \
                    from None
            ctx.keep(fd)
            servers.append(fd)
    what = _unixdiag.what(f, d, msg.name)
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
        for packet, got in _unixq.dump_queue(ctx, _state(ctx), f, sk, d, out):
            packet.fds.extend(ctx.file_id_of_local(i) for i in got)


def _dump_link(ctx, st: _DumpState, f, sk, d: _unixdiag.Diag, msg) -> None:
    """Whom the socket is connected to."""
    stream = d.type != SOCK_DGRAM
    if d.state != ESTABLISHED:
        if msg.packets and not msg.name:
            raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)}: messages queued in an unnamed unconnected "
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
            raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)}: messages queued in an unnamed datagram socket "
                                   f"that is not one end of a socketpair cannot be put back")


def _external(ctx, f, sk, d: _unixdiag.Diag, msg, whom: str) -> None:
    """A peer outside the dump: refused, or (--ext-unix-sk) kept as well as it can be."""
    try:
        peer_name = _unixdiag.name_bytes(sk.getpeername())
    except OSError:
        peer_name = b""
    if not ctx.plan.ext_unix_sk:
        raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)} is connected to {whom} outside the dumped tree "
                               f"({_unixdiag.show(peer_name)}); use --ext-unix-sk to allow it")
    msg.external = True
    if d.type != SOCK_DGRAM and msg.queued_on == 0 and d.peer:
        msg.link = MESSAGE.DISCONNECTED
        log.warning("%s: its peer is outside the tree; after restore it reads what is queued, then EOF",
                    _unixdiag.what(f, d, msg.name))
        return
    if not peer_name:
        raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)} is connected to an unnamed socket outside the "
                               f"dumped tree: it cannot be connected again")
    msg.link, msg.peer_name = MESSAGE.EXTERNAL, peer_name
    if msg.packets and not msg.name:
        raise UnsupportedError(f"{_unixdiag.what(f, d, msg.name)}: messages queued from outside the tree in an "
                               f"unnamed socket cannot be put back")


def check(ctx, f) -> list[str]:
    """For --check-only: peers outside the tree, data in connections not yet accepted."""
    st = ctx.shared.get(NAME + "-check")
    if st is None:
        st = ctx.shared[NAME + "-check"] = (_unixdiag.diag_all(), _unixdiag.held_sockets(ctx.tree))
    diag, held = st
    d = diag.get(f.st.st_ino)
    if d is None:
        return [f"process {f.pid} fd {f.fd}: unix socket {f.link} is unknown to sock_diag"]
    # a peer that is not held may still be in flight in a queue of the tree
    in_flight = any(_unixdiag.scm_fds(pid, fd) for pid, fd in held.values())
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
            _unixconn.open_listener(ctx, rs, entry.id, msg)
        elif msg.link == MESSAGE.PENDING:
            _unixconn.make_client(ctx, rs, entry.id, msg)
            _unixconn.sock_of(ctx, rs, msg.queued_on)        # opening the listener connects its queue
        elif msg.type != SOCK_DGRAM and msg.link in (MESSAGE.PEER, MESSAGE.DISCONNECTED):
            _unixconn.open_connection(ctx, rs, entry.id, msg)
        elif msg.type == SOCK_DGRAM and _unixconn.is_dgram_pair(rs, entry.id, msg):
            _unixconn.open_dgram_pair(ctx, rs, entry.id, msg)
        else:
            _unixconn.open_single(ctx, rs, entry.id, msg)
    if entry.id not in rs.fds:
        raise ImageError(f"files.img: unix socket {entry.id} was not made (inconsistent links)")
    if len(rs.fds) == len(rs.msgs):
        with ctx.rooted():
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
        raise ImageError(f"unix socket {_unixdiag.show(msg.name)} (file {file_id}) was connected outside the dumped "
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
