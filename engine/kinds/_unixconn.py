"""Unix sockets made again at restore, for unixsk (not a kind of its own): names (bound
paths and abstract names), connections made as a whole (socketpair(), or connect() and
accept() on the restored listener), listeners with the connections waiting in their
queue, datagram sockets connected by name; each receive queue refilled (_unixq) before
shutdown state and the last options are applied.  `rs` is unixsk's restore state: the
sockets made so far (file id -> our fd) and every socket's checked message.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import stat

from ..errors import ImageError
from ..files import move_above
from . import _sock, _unixq
from . import _unixdiag
from ._unixdiag import SOCK_DGRAM
from .unixsk_pb2 import UnixSocket as MESSAGE

log = logging.getLogger("lxc_cr.unixsk")
OPTS = _sock.COMMON


def sock_of(ctx, rs, file_id: int) -> int:
    """Our fd on another unix socket of the dump, made now if it is not yet."""
    if file_id in rs.fds:
        return rs.fds[file_id]
    return ctx.fd_of(file_id)


def _new(msg) -> socket.socket:
    sk = socket.socket(socket.AF_UNIX, msg.type)
    _sock.apply_opts(sk, msg.opts, OPTS, _sock.BUFFER, f"unix socket {_unixdiag.show(msg.name)}")
    return sk


def _register(ctx, rs, file_id: int, sk: socket.socket) -> int:
    """The socket's fd, above every fd the tasks use, with the open file's flags."""
    fd = move_above(sk.detach(), ctx.base_fd)
    flags = ctx.files[file_id].flags
    if flags & os.O_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    rs.fds[file_id] = fd
    return fd


def _late(fd: int, msg) -> None:
    """Shutdown state and the options that must wait until the queues are refilled."""
    where = f"unix socket {_unixdiag.show(msg.name)}"
    with _sock.borrow(fd) as sk:
        if msg.shutdown and msg.link != MESSAGE.DISCONNECTED:
            try:
                sk.shutdown(msg.shutdown - 1)       # 1 -> SHUT_RD, 2 -> SHUT_WR, 3 -> SHUT_RDWR
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    raise ImageError(f"{where}: cannot shut down: {e.strerror}") from None
        for stage in (_sock.LATE, _sock.LAST):
            _sock.apply_opts(sk, msg.opts, OPTS, stage, where)


def _address(msg) -> bytes:
    """What connect() or sendto() takes to reach the socket: its path or abstract name."""
    if msg.name[:1] == b"\0":
        return msg.name
    return os.fsencode(msg.path) if msg.name else b""


def _bind(ctx, rs, sk: socket.socket, msg, strict: bool) -> None:
    """Bind the socket to its dumped name.  A connected socket's name is kept when possible
    (strict=False: a warning otherwise); a socket others reach by name must get it."""
    if not msg.name:
        return
    try:
        if msg.name[:1] == b"\0":
            sk.bind(msg.name)
        else:
            if ctx.mnt is not None and rs.live_files is None:     # nothing may be imported while rooted
                rs.live_files = {d.vfs for d in _unixdiag.diag_all().values() if d.vfs}
            with ctx.rooted():          # the name as the tasks see it
                _bind_path(rs, sk, msg)
    except (OSError, ImageError) as e:
        text = e.strerror if isinstance(e, OSError) else str(e)
        if strict:
            raise ImageError(f"cannot bind unix socket to {_unixdiag.show(msg.name)}: {text}") from None
        log.warning("unix socket %s comes back unnamed: %s", _unixdiag.show(msg.name), text)


def _bind_path(rs, sk: socket.socket, msg) -> None:
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


def _clear_stale(rs, path: str) -> None:
    """A socket file left at the path by the dumped socket may go; anything else stays."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ImageError(f"{path} exists and is not a socket")
    if rs.live_files is None:
        rs.live_files = {d.vfs for d in _unixdiag.diag_all().values() if d.vfs}
    dev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)     # the kernel's encoding in sock_diag
    if (dev, st.st_ino) in rs.live_files:
        raise ImageError(f"{path} belongs to a live socket")
    os.unlink(path)


def open_single(ctx, rs, file_id: int, msg) -> None:
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
            _connect(s, bytes(msg.peer_name), f"unix socket {_unixdiag.show(msg.name)}")
    _late(fd, msg)


def open_listener(ctx, rs, file_id: int, msg) -> None:
    sk = _new(msg)
    _bind(ctx, rs, sk, msg, strict=True)
    sk.listen(msg.backlog)
    fd = _register(ctx, rs, file_id, sk)
    # the connections it accepted first, while its queue is empty, so that accept()
    # takes the one just made; then the ones waiting in its queue, in order
    for other_id, other in rs.msgs.items():
        if other.listener == file_id and other_id not in rs.fds:
            open_connection(ctx, rs, other_id, other)
    for index, client_id in enumerate(msg.pending):
        _connect_pending(ctx, rs, fd, msg, client_id, msg.waiting[index] if msg.waiting else None)
    _late(fd, msg)


def make_client(ctx, rs, file_id: int, msg) -> int:
    """A client whose connection waits in a listener's queue: made now, connected by the listener."""
    if file_id in rs.fds:
        return rs.fds[file_id]
    sk = _new(msg)
    _bind(ctx, rs, sk, msg, strict=False)
    return _register(ctx, rs, file_id, sk)


def _connect_pending(ctx, rs, listener_fd: int, lmsg, client_id: int, server) -> None:
    """Connect a waiting connection again; its client sends what the server end had queued."""
    if client_id == 0:
        # a connection whose client had closed: connect one, send its data, and close it
        with socket.socket(socket.AF_UNIX, lmsg.type) as tmp:
            tmp.connect(_address(lmsg))
            if server is not None:
                _unixq.send_queue(ctx, server, tmp.fileno())
        return
    cmsg = rs.msgs[client_id]
    if cmsg.link != MESSAGE.PENDING or cmsg.queued_on not in rs.fds or rs.fds[cmsg.queued_on] != listener_fd:
        raise ImageError(f"files.img: unix socket {client_id} is not waiting on this listener")
    fd = make_client(ctx, rs, client_id, cmsg)
    with _sock.borrow(fd) as sk:
        _connect(sk, _address(lmsg), f"unix socket {client_id}")
    if server is not None:
        _unixq.send_queue(ctx, server, fd)
    _late(fd, cmsg)


def _connect(sk: socket.socket, address: bytes, what: str) -> None:
    try:
        with _sock.nonblocking(sk.fileno()):
            sk.connect(address)
    except OSError as e:
        raise ImageError(f"{what}: cannot connect to {_unixdiag.show(address)}: {e.strerror}") from None


def open_connection(ctx, rs, file_id: int, msg) -> None:
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
            sock_of(ctx, rs, listener)             # the listener makes its connections
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
            _unixq.send_queue(ctx, m, other)     # a receive queue, sent again by the other end
    for fd, (i, m) in zip(fds, ends):
        if m is None:
            os.close(fd)
    for fd, (_, m) in zip(fds, ends):
        if m is not None:
            _late(fd, m)


def _apply_buffers(sk: socket.socket, m) -> None:
    _sock.apply_opts(sk, m.opts, OPTS, _sock.BUFFER, f"unix socket {_unixdiag.show(m.name)}")


def _through_listener(ctx, rs, smsg, cmsg, listener_fd: int):
    """connect() a client (or a stand-in) to the restored listener and accept() the server end."""
    lmsg = rs.msgs[smsg.listener]
    c_sock = _new(cmsg) if cmsg is not None else socket.socket(socket.AF_UNIX, smsg.type)
    if cmsg is not None:
        _bind(ctx, rs, c_sock, cmsg, strict=False)
    _connect(c_sock, _address(lmsg), f"unix socket {_unixdiag.show(cmsg.name) if cmsg else 'stand-in'}")
    with _sock.borrow(listener_fd) as lsk, _sock.nonblocking(listener_fd):
        try:
            s_sock, _ = lsk.accept()
        except OSError as e:
            raise ImageError(f"unix socket {_unixdiag.show(lmsg.name)}: cannot accept its connection again: "
                             f"{e.strerror}") from None
    _apply_buffers(s_sock, smsg)
    return s_sock, c_sock


def is_dgram_pair(rs, file_id: int, msg) -> bool:
    """Datagram sockets made as a socketpair: two connected to each other, one of them
    unnamed; or an unnamed one whose peer is gone (a stand-in sends its queue, then closes)."""
    if msg.link == MESSAGE.DISCONNECTED:
        return not msg.name
    if msg.link != MESSAGE.PEER:
        return False
    peer = rs.msgs[msg.peer]
    return peer.link == MESSAGE.PEER and peer.peer == file_id and (not msg.name or not peer.name)


def open_dgram_pair(ctx, rs, file_id: int, msg) -> None:
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
            _unixq.send_queue(ctx, m, other)
    for fd, (_, m) in zip(fds, ends):
        if m is None:
            os.close(fd)
        else:
            _late(fd, m)


def _fill_datagrams(ctx, rs, fd: int, msg) -> None:
    """A datagram socket's queue, then its connection.  Before connect() anyone may send to
    it; after, only its peer, but the peer's messages do not count against the queue limit
    (net.unix.max_dgram_qlen): connect after the last message from someone else."""
    address = _address(msg)
    peer = msg.peer if msg.link == MESSAGE.PEER else 0
    split = len(msg.packets)
    while split and peer and msg.packets[split - 1].sender_id == peer:
        split -= 1

    data = _unixq.queue_reader(ctx, msg)
    try:
        for index, p in enumerate(msg.packets):
            if index == split:
                _connect_dgram(ctx, rs, fd, msg)
            # from outside the dump, or unnamed: a stand-in sends it
            sender = sock_of(ctx, rs, p.sender_id) if p.sender_id else None
            _unixq.send_packet(ctx, msg, p, next(data), sender, address)
        if split == len(msg.packets):
            _connect_dgram(ctx, rs, fd, msg)
    finally:
        data.close()


def _connect_dgram(ctx, rs, fd: int, msg) -> None:
    if msg.link == MESSAGE.PEER:
        sock_of(ctx, rs, msg.peer)             # made (and bound) first
        address = _address(rs.msgs[msg.peer])
        if not address:
            raise ImageError(f"unix socket {_unixdiag.show(msg.name)} is connected to an unnamed datagram socket "
                             f"that is connected elsewhere")
    elif msg.link == MESSAGE.EXTERNAL:
        address = bytes(msg.peer_name)
    else:
        return
    with _sock.borrow(fd) as sk:
        _connect(sk, address, f"unix socket {_unixdiag.show(msg.name)}")