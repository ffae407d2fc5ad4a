"""The receive queue of a unix socket, for unixsk (not a kind of its own).

Dump: the queue is read with MSG_PEEK from SO_PEEK_OFF 0 (the task's own peek offset
is put back), so nothing is consumed or reordered; files passed with SCM_RIGHTS land
in our fd table and are dumped as files of their own.  Restore: each message (stream:
each run of bytes) is sent again by the socket that will be its sender, with its
files and credentials.
"""
from __future__ import annotations

import array
import os
import socket
import struct
from contextlib import contextmanager

from ..errors import ImageError, UnsupportedError
from . import _sock
from . import _unixdiag
from ._unixdiag import RCV_SHUTDOWN, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM

SCM_RIGHTS, SCM_CREDENTIALS, SCM_PIDFD = 1, 2, 0x4C
MSG_CMSG_CLOEXEC = 0x40000000
PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT | MSG_CMSG_CLOEXEC
ANC_SIZE = 8192                                  # room for SCM_MAX_FD (253) fds, credentials, a label
CHUNK = 1 << 18                                  # bytes per read or send of queued data


def dump_queue(ctx, st, f, sk, d: _unixdiag.Diag, msg) -> list:
    """The receive queue into a data image; returns (packet, our fds) for the files in flight."""
    out = None
    files = []
    try:
        for data, fds, creds, sender in peek(sk, d):
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


@contextmanager
def _peek_offset(sk):
    """SO_PEEK_OFF 0 while we read; the task's own value after."""
    old = sk.getsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF)
    sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, 0)
    try:
        yield
    finally:
        sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, old)


def peek(sk, d: _unixdiag.Diag):
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
            close_all(fds)
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
        close_all(fds)
        raise UnsupportedError("a queued message carries more control data than can be read")
    return n, fds, creds, _unixdiag.name_bytes(addr)


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


def close_all(fds) -> None:
    for fd in fds:
        os.close(fd)


def send_queue(ctx, msg, sender_fd: int) -> None:
    """A receive queue, sent again by the socket at the other end of the connection."""
    data = queue_reader(ctx, msg)
    try:
        for p in msg.packets:
            send_packet(ctx, msg, p, next(data), sender_fd, b"")
    finally:
        data.close()


def queue_reader(ctx, msg):
    """The bytes of each packet in turn (a generator over the queue image)."""
    if not msg.packets:
        return
    fd = ctx.images.open(msg.queue)
    try:
        for p in msg.packets:
            yield _sock.read_exact(fd, p.length, msg.queue)
    finally:
        os.close(fd)


def send_packet(ctx, msg, p, data: bytes, sender_fd: int | None, address: bytes) -> None:
    """One message (or run of bytes) sent again, with its files and credentials."""
    anc = []
    if p.fds:
        anc.append((socket.SOL_SOCKET, SCM_RIGHTS, array.array("i", [ctx.fd_of(i) for i in p.fds])))
    if p.creds:
        # the uid and gid the receiver saw; the pid can only be a live one: ours
        anc.append((socket.SOL_SOCKET, SCM_CREDENTIALS, struct.pack("<iII", os.getpid(), p.uid, p.gid)))
    where = f"unix socket {_unixdiag.show(msg.name)}"
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