"""The receive queue of a unix socket, for unixsk (not a kind of its own).

Dump: the queue is read with MSG_PEEK from SO_PEEK_OFF 0 (the task's own peek offset
is put back), so nothing is consumed or reordered; files passed with SCM_RIGHTS land
in our fd table and are dumped as files of their own.  Restore: each message (stream:
each run of bytes) is sent again by the socket that will be its sender, with its
files and credentials.

A stream holding files in flight is the exception.  A read stops after the segment
(skb) that carries files and gets them with the first byte it takes of it; a peek gets
them too, but reaches ahead to them from wherever it starts, so where that segment
starts can only be seen by consuming.  take_stream() therefore takes such a queue
while the tree is frozen, a byte at a time up to each segment with files, and sends it
all back at once from the other end of the connection, segment by segment with the
same files and credentials: the queue is as it was (also for --leave-running), and the
dump knows which byte the files came with.
"""
from __future__ import annotations

import array
import logging
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
TAKE = socket.MSG_DONTWAIT | MSG_CMSG_CLOEXEC
ANC_SIZE = 8192                                  # room for SCM_MAX_FD (253) fds, credentials, a label
CHUNK = 1 << 18                                  # bytes per read or send of queued data
log = logging.getLogger("lxc_cr.unixsk")


def dump_queue(ctx, st, f, sk, d: _unixdiag.Diag, msg) -> list:
    """The receive queue into a data image; returns (packet, our fds) for the files in flight."""
    out = None
    files = []
    try:
        for data, fds, creds, sender in _messages(ctx, st, f, sk, d):
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


def _messages(ctx, st, f, sk, d: _unixdiag.Diag):
    """The queue's messages, peeked; a stream with files in flight whose other end the dump
    reaches is taken and put back instead, exact (see the module docstring)."""
    if d.type == SOCK_STREAM and d.state == _unixdiag.ESTABLISHED and d.peer and st.reachable(ctx, d.peer) \
            and _unixdiag.scm_fds(os.getpid(), sk.fileno()):
        runs = take_stream(sk, st.local(ctx, d.peer))
        if runs is not None:
            return runs
        log.warning("%s: its files in flight come back with the last byte of their message (the queue "
                    "shows credentials of a process gone)", _unixdiag.what(f, d, _unixdiag.name_bytes(
                        sk.getsockname())))
    return peek(sk, d)


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
            # still gets them with it, a read that stops before it does not (take_stream
            # is exact, where it can be used).
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


# --- a stream with files in flight: taken and put back ----------------------------------

def take_stream(sk, peer_fd: int) -> list | None:
    """(data, fds, creds, b"") for each run of the stream's queue, a segment with files being
    a run of its own; the queue is put back as it was by the peer (our fd on the other end).
    The fds are ours: the caller keeps them.  None: the queue shows credentials of a process
    that is gone, which could not be sent again (nothing was taken)."""
    runs = []
    with _peek_offset(sk):
        if not _creds_can_be_sent(sk):
            return None
        try:
            _take_all(sk, runs)
        except UnsupportedError:
            _take_rest(sk, runs)        # all of it, so that it goes back in its order
            raise
        finally:
            _give_back(peer_fd, runs)
    return [(bytes(data), fds, creds, b"") for data, fds, creds in runs]


def _creds_can_be_sent(sk) -> bool:
    """Credentials the queue shows (SO_PASSCRED) can be sent again only with a live pid."""
    for _, fds, creds, _ in _peek_stream(sk, bytearray(CHUNK)):
        close_all(fds)
        if creds is not None and (creds[0] <= 0 or not os.path.exists(f"/proc/{creds[0]}")):
            return False
    return True


def _take_all(sk, runs: list) -> None:
    buf = bytearray(CHUNK)
    while True:
        sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, 0)
        got = _recv(sk, buf, len(buf))
        if got is None or got[0] == 0:
            return
        n, fds, _, _ = got
        close_all(fds)
        if not fds:
            _take_exact(sk, buf, n, runs)
            continue
        # up to the end of the segment with files, a byte at a time until one comes with them
        while n:
            taken, fds, creds = _take(sk, buf, 1)
            n -= taken
            if fds:
                runs.append([bytearray(buf[:1]), fds, creds])
                _take_exact(sk, buf, n, runs, into=runs[-1])
                break
            _add(runs, buf[:1], creds)


def _take_exact(sk, buf, n: int, runs: list, into=None) -> None:
    """Take n bytes without files, appended to `into` (a run) or to the runs."""
    while n:
        size, fds, creds = _take(sk, buf, n)
        if fds:
            close_all(fds)
            raise UnsupportedError("unix stream: files in flight came where none were seen")
        if into is not None:
            into[0].extend(buf[:size])
        else:
            _add(runs, buf[:size], creds)
        n -= size


def _add(runs: list, data, creds) -> None:
    """Bytes without files: they join the last run if it has none and the same credentials."""
    if runs and not runs[-1][1] and runs[-1][2] == creds:
        runs[-1][0].extend(data)
    else:
        runs.append([bytearray(data), [], creds])


def _take_rest(sk, runs: list) -> None:
    buf = bytearray(CHUNK)
    while True:
        try:
            n, fds, creds = _take(sk, buf, len(buf))
        except UnsupportedError:
            return
        runs.append([bytearray(buf[:n]), fds, creds])


def _take(sk, buf, size: int):
    try:
        n, anc, mflags, _ = sk.recvmsg_into([memoryview(buf)[:size]], ANC_SIZE, TAKE)
    except BlockingIOError:
        raise UnsupportedError("unix stream: its queue emptied while it was read") from None
    fds, creds = _parse_anc(anc)
    if mflags & socket.MSG_CTRUNC:
        close_all(fds)
        raise UnsupportedError("a queued message carries more control data than can be read")
    if n == 0:
        raise UnsupportedError("unix stream: end of stream inside its queue")
    return n, fds, creds


def _give_back(peer_fd: int, runs: list) -> None:
    total = sum(len(data) + 1024 for data, _, _ in runs)
    with _sock.borrow(peer_fd) as peer, _sock.big_send_buffer(peer, total):
        for data, fds, creds in runs:
            rights = [(socket.SOL_SOCKET, SCM_RIGHTS, array.array("i", fds))] if fds else []
            cred = [(socket.SOL_SOCKET, SCM_CREDENTIALS, struct.pack("<iII", *creds))] if creds else []
            view = memoryview(data)
            # a segment with files in one sendmsg, so that they stay with its first byte
            n = peer.sendmsg([view], rights + cred, socket.MSG_DONTWAIT)
            view = view[n:]
            while view:
                n = peer.sendmsg([view[:CHUNK]], cred, socket.MSG_DONTWAIT)
                view = view[n:]


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