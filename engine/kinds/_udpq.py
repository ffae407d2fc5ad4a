"""The receive queue of a UDP socket (IPv4 and IPv6), for inetsk; not a kind of its own.

Dump (the tree is frozen): the datagrams are peeked on our copy of the socket
from SO_PEEK_OFF 0 (UDP honours the peek offset: each peek moves past one
datagram), with the sender's address and, through IP_PKTINFO / IPV6_RECVPKTINFO
switched on for the moment, the address each one was sent to (read from the
packet's own header, so it is there even though the option was off when the
datagram came in).  The task's peek offset and options are put back: nothing is
consumed or reordered, so a --leave-running dump leaves the queue as it was.

Restore: the socket is bound (not yet connected: a connected socket only takes
datagrams from its peer) and each datagram is sent to it again through a raw
socket in the same network namespace (_sock.RawSender), crafted with its original
source address and port and a correct UDP checksum.  The restore then peeks at the new
socket until every datagram is there, in order, once, before it is connected.
"""
from __future__ import annotations

import os
import socket
import struct
import time

from ..errors import ImageError, UnsupportedError
from . import _sock

IP_PKTINFO, IPV6_RECVPKTINFO, IPV6_PKTINFO = 8, 49, 50
MAX_DATAGRAM = 65535
PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT | socket.MSG_TRUNC
ARRIVAL_TRIES = 200             # 10 ms apart


def _pktinfo_option(family: int) -> tuple[int, int]:
    return (_sock.IPPROTO_IP, IP_PKTINFO) if family == socket.AF_INET else (_sock.IPPROTO_IPV6, IPV6_RECVPKTINFO)


# --- dump --------------------------------------------------------------------------------

def dump(ctx, sk, msg, what: str) -> None:
    """Append the socket's queued datagrams to msg.datagrams, their bytes to a data image."""
    level, name = _pktinfo_option(msg.family)
    peek_off = sk.getsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF)
    pktinfo = sk.getsockopt(level, name)
    out = None
    try:
        sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, 0)
        sk.setsockopt(level, name, 1)
        buf = bytearray(MAX_DATAGRAM)
        while True:
            try:
                n, anc, _, source = sk.recvmsg_into([buf], 256, PEEK)
            except BlockingIOError:
                break
            except OSError as e:
                # a pending socket error is reported (and cleared) before the queue
                raise UnsupportedError(f"{what}: cannot read its queued datagrams: {e.strerror}") from None
            if out is None:
                msg.queue, out = ctx.data_file("udp")
            _sock.write_all(out, memoryview(buf)[:n])
            d = msg.datagrams.add(length=n, dest=_dest(msg, anc))
            d.source.CopyFrom(_sock.address_message(type(msg).Address, msg.family, source))
    finally:
        if out is not None:
            os.close(out)
        sk.setsockopt(level, name, pktinfo)
        sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, peek_off)


def _dest(msg, anc) -> bytes:
    """The destination address from the packet-info control message (the socket's own
    address if there is none)."""
    for level, kind, data in anc:
        if (level, kind) == (_sock.IPPROTO_IP, IP_PKTINFO) and len(data) >= 12:
            return data[8:12]                   # struct in_pktinfo: ifindex, spec_dst, addr
        if (level, kind) == (_sock.IPPROTO_IPV6, IPV6_PKTINFO) and len(data) >= 16:
            return data[:16]                    # struct in6_pktinfo: addr, ifindex
    return msg.local.addr


# --- restore -----------------------------------------------------------------------------

def validate(ctx, msg, where: str) -> None:
    if not msg.datagrams:
        return
    if msg.protocol != 17 or not msg.HasField("local"):
        raise ImageError(f"{where}: queued datagrams on a socket that is not a bound UDP socket")
    size = 4 if msg.family == socket.AF_INET else 16
    total = 0
    for d in msg.datagrams:
        if d.length > MAX_DATAGRAM - 8 or len(d.source.addr) != size or len(d.dest) != size \
                or not 0 < d.source.port < 65536:
            raise ImageError(f"{where}: malformed queued datagram")
        total += d.length
    if not msg.queue.startswith("udp-") or "/" in msg.queue or ctx.images.size(msg.queue) != total:
        raise ImageError(f"{where}: datagram image {msg.queue!r} does not hold {total} bytes")


def refill(ctx, sk, msg, where: str) -> None:
    """Send every queued datagram to the bound socket again, from its original source, and
    wait until all of them are in its queue."""
    if not msg.datagrams:
        return
    total = sum(d.length for d in msg.datagrams)
    rcvbuf = sk.getsockopt(socket.SOL_SOCKET, _sock.SO_RCVBUF)
    need = 2 * total + 2048 * len(msg.datagrams)
    if rcvbuf < need:
        _sock.set_buffer(sk, _sock.SO_RCVBUF, need)         # room while refilled; put back after
    data = ctx.images.open(msg.queue)
    try:
        with _sock.RawSender() as raw:
            for d in msg.datagrams:
                payload = _sock.read_exact(data, d.length, msg.queue)
                src, dst = _sock.unmap(d.source.addr, d.dest)
                try:
                    if len(src) != len(dst):
                        raise OSError(0, "source and destination of different families")
                    raw.send(17, src, dst, _udp(src, dst, d.source.port, msg.local.port, payload),
                             msg.local.scope_id)
                except OSError as e:
                    raise ImageError(f"{where}: cannot queue a datagram again: {e.strerror}") from None
        _wait_arrival(sk, msg, where)
    finally:
        os.close(data)
        if rcvbuf < need:
            _sock.set_buffer(sk, _sock.SO_RCVBUF, rcvbuf)


def _udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header and payload with its checksum over the pseudo-header of src and dst."""
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    check = _sock.inet_checksum(_sock.pseudo_header(src, dst, 17, length) + header + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, check) + payload


def _wait_arrival(sk, msg, where: str) -> None:
    """Peek at the restored socket until it holds every datagram (loopback delivers them
    before sendto() returns, unless the backlog is deferred to a softirq thread), then check
    they are the ones sent, in order (by source and length): anything else is an error."""
    want = [(bytes(d.source.addr), d.source.port, d.length) for d in msg.datagrams]
    got = _peek_all(sk, msg)
    for _ in range(ARRIVAL_TRIES):
        if len(got) >= len(want):
            break
        time.sleep(0.01)
        got = _peek_all(sk, msg)
    if got != want:
        raise ImageError(f"{where}: the queued datagrams did not come back as they were "
                         f"({len(got)} of {len(want)} arrived)")


def _peek_all(sk, msg) -> list:
    """(source address, port, length) of every datagram queued, consuming nothing."""
    out = []
    nothing = memoryview(bytearray(1))[:0]        # MSG_TRUNC: the length without the bytes
    old = sk.getsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF)
    sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, 0)
    try:
        while True:
            try:
                n, _, _, source = sk.recvmsg_into([nothing], 0, PEEK)
            except BlockingIOError:
                return out
            addr = _sock.address_message(type(msg).Address, msg.family, source)
            out.append((bytes(addr.addr), addr.port, n))
    finally:
        sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, old)
