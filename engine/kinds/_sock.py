"""Helpers shared by the socket kinds (unixsk, inetsk); not a kind of its own.

Socket options: a table of the ones we carry, read with getsockopt on our copy
of the task's socket (reading changes nothing), and set on the new socket where
they differ from what it has, so that a value the kernel chose by itself (a
buffer size it tunes) is not pinned.  Also: borrowing a socket object over an
fd we do not own, and full writes into image files.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
from contextlib import contextmanager

from ..errors import ImageError

SOL_SOCKET, IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6 = 1, 0, 6, 17, 41
SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 7, 8, 32, 33
SO_PEEK_OFF = 42
IPV6_PKTINFO, IPV6_TRANSPARENT = 50, 75
V4MAPPED = b"\0" * 10 + b"\xff\xff"

INT = 0                 # an int option; otherwise the size of a raw option's buffer

# when an option is set on the new socket
EARLY = "early"         # before bind(): it changes what bind() allows
BUFFER = "buffer"       # before the queues are refilled
LATE = "late"           # once connected and refilled
LAST = "last"           # after everything (SO_PEEK_OFF: the refill must not see it)

# (level, name, label, INT or raw size, stage)
COMMON = [
    (SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", INT, BUFFER),
    (SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", INT, BUFFER),
    (SOL_SOCKET, 12, "SO_PRIORITY", INT, LATE),
    (SOL_SOCKET, 16, "SO_PASSCRED", INT, LATE),
    (SOL_SOCKET, 18, "SO_RCVLOWAT", INT, LATE),
    (SOL_SOCKET, 20, "SO_RCVTIMEO", 16, LATE),
    (SOL_SOCKET, 21, "SO_SNDTIMEO", 16, LATE),
    (SOL_SOCKET, 29, "SO_TIMESTAMP", INT, LATE),
    (SOL_SOCKET, 34, "SO_PASSSEC", INT, LATE),
    (SOL_SOCKET, 35, "SO_TIMESTAMPNS", INT, LATE),
    (SOL_SOCKET, 36, "SO_MARK", INT, LATE),
    (SOL_SOCKET, 40, "SO_RXQ_OVFL", INT, LATE),
    (SOL_SOCKET, 76, "SO_PASSPIDFD", INT, LATE),
    (SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", INT, LAST),
]

INET = [
    (SOL_SOCKET, 2, "SO_REUSEADDR", INT, EARLY),
    (SOL_SOCKET, 15, "SO_REUSEPORT", INT, EARLY),
    (SOL_SOCKET, 25, "SO_BINDTODEVICE", 16, EARLY),
    (SOL_SOCKET, 5, "SO_DONTROUTE", INT, LATE),
    (SOL_SOCKET, 6, "SO_BROADCAST", INT, LATE),
    (SOL_SOCKET, 9, "SO_KEEPALIVE", INT, LATE),
    (SOL_SOCKET, 10, "SO_OOBINLINE", INT, LATE),
    (SOL_SOCKET, 13, "SO_LINGER", 8, LATE),
]

TCP = [
    (IPPROTO_TCP, 1, "TCP_NODELAY", INT, LATE),
    (IPPROTO_TCP, 3, "TCP_CORK", INT, LATE),
    (IPPROTO_TCP, 4, "TCP_KEEPIDLE", INT, LATE),
    (IPPROTO_TCP, 5, "TCP_KEEPINTVL", INT, LATE),
    (IPPROTO_TCP, 6, "TCP_KEEPCNT", INT, LATE),
    (IPPROTO_TCP, 7, "TCP_SYNCNT", INT, LATE),
    (IPPROTO_TCP, 8, "TCP_LINGER2", INT, LATE),
    (IPPROTO_TCP, 9, "TCP_DEFER_ACCEPT", INT, LATE),
    (IPPROTO_TCP, 10, "TCP_WINDOW_CLAMP", INT, LATE),
    (IPPROTO_TCP, 13, "TCP_CONGESTION", 16, LATE),
    (IPPROTO_TCP, 18, "TCP_USER_TIMEOUT", INT, LATE),
    (IPPROTO_TCP, 25, "TCP_NOTSENT_LOWAT", INT, LATE),
]

IPV4 = [
    (IPPROTO_IP, 15, "IP_FREEBIND", INT, EARLY),
    (IPPROTO_IP, 19, "IP_TRANSPARENT", INT, EARLY),
    (IPPROTO_IP, 24, "IP_BIND_ADDRESS_NO_PORT", INT, EARLY),
    (IPPROTO_IP, 1, "IP_TOS", INT, LATE),
    (IPPROTO_IP, 2, "IP_TTL", INT, LATE),
    (IPPROTO_IP, 8, "IP_PKTINFO", INT, LATE),
    (IPPROTO_IP, 10, "IP_MTU_DISCOVER", INT, LATE),
    (IPPROTO_IP, 11, "IP_RECVERR", INT, LATE),
    (IPPROTO_IP, 12, "IP_RECVTTL", INT, LATE),
    (IPPROTO_IP, 13, "IP_RECVTOS", INT, LATE),
    (IPPROTO_IP, 20, "IP_RECVORIGDSTADDR", INT, LATE),
]

IPV6 = [
    (IPPROTO_IPV6, 26, "IPV6_V6ONLY", INT, EARLY),
    (IPPROTO_IPV6, 75, "IPV6_TRANSPARENT", INT, EARLY),
    (IPPROTO_IPV6, 78, "IPV6_FREEBIND", INT, EARLY),
    (IPPROTO_IPV6, 16, "IPV6_UNICAST_HOPS", INT, LATE),
    (IPPROTO_IPV6, 23, "IPV6_MTU_DISCOVER", INT, LATE),
    (IPPROTO_IPV6, 25, "IPV6_RECVERR", INT, LATE),
    (IPPROTO_IPV6, 49, "IPV6_RECVPKTINFO", INT, LATE),
    (IPPROTO_IPV6, 66, "IPV6_RECVTCLASS", INT, LATE),
    (IPPROTO_IPV6, 67, "IPV6_TCLASS", INT, LATE),
]

# multicast: UDP only (TCP sockets refuse them, and accepted ones report odd values)
UDP4 = [
    (IPPROTO_IP, 33, "IP_MULTICAST_TTL", INT, LATE),
    (IPPROTO_IP, 34, "IP_MULTICAST_LOOP", INT, LATE),
]

UDP6 = [
    (IPPROTO_IPV6, 18, "IPV6_MULTICAST_HOPS", INT, LATE),
    (IPPROTO_IPV6, 19, "IPV6_MULTICAST_LOOP", INT, LATE),
]


@contextmanager
def borrow(fd: int):
    """A socket object over an fd we keep: closing the object leaves the fd open."""
    sk = socket.socket(fileno=fd)
    try:
        yield sk
    finally:
        sk.detach()


def write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int, where: str) -> bytes:
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 18))
        if not chunk:
            raise ImageError(f"{where}: shorter than its description says")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


# --- options -----------------------------------------------------------------------------

def read_opts(sk: socket.socket, table, out) -> None:
    """Append to `out` (a repeated Opt) every option of `table` the socket answers."""
    for level, name, _, size, _ in table:
        try:
            value = sk.getsockopt(level, name) if size == INT else sk.getsockopt(level, name, size)
        except OSError:
            continue            # not this socket's (an IPv4 option on an IPv6 socket...)
        if size == INT:
            out.add(level=level, name=name, int_value=value)
        else:
            out.add(level=level, name=name, raw=value)


def validate_opts(opts, table, where: str) -> None:
    known = {(level, name): size for level, name, _, size, _ in table}
    for o in opts:
        size = known.get((o.level, o.name))
        kind = o.WhichOneof("value")
        if size is None or kind is None or (size == INT) != (kind == "int_value"):
            raise ImageError(f"{where}: unknown or malformed socket option {o.level}/{o.name}")
        if kind == "raw" and len(o.raw) > size:
            raise ImageError(f"{where}: socket option {o.level}/{o.name} is {len(o.raw)} bytes")
        if kind == "int_value" and not -2**31 <= o.int_value < 2**31:
            raise ImageError(f"{where}: socket option {o.level}/{o.name} out of range")


def apply_opts(sk: socket.socket, opts, table, stage: str, where: str) -> None:
    """Set the options of `stage` that differ from the socket's current values."""
    stages = {(level, name): (label, size, st) for level, name, label, size, st in table}
    for o in opts:
        label, size, st = stages[(o.level, o.name)]
        if st != stage:
            continue
        try:
            if size == INT:
                if sk.getsockopt(o.level, o.name) != o.int_value:
                    _set_int(sk, o.level, o.name, o.int_value)
            elif sk.getsockopt(o.level, o.name, size) != o.raw:
                sk.setsockopt(o.level, o.name, o.raw)
        except OSError as e:
            raise ImageError(f"{where}: cannot set {label}: {e.strerror}") from None


def _set_int(sk: socket.socket, level: int, name: int, value: int) -> None:
    if (level, name) in ((SOL_SOCKET, SO_SNDBUF), (SOL_SOCKET, SO_RCVBUF)):
        set_buffer(sk, name, value)
    else:
        sk.setsockopt(level, name, value)


def set_buffer(sk: socket.socket, name: int, size: int) -> None:
    """Give a socket buffer exactly the size getsockopt reported (the kernel doubles what
    it is given; the FORCE variants pass net.core.[rw]mem_max, which the task may have had)."""
    force = SO_SNDBUFFORCE if name == SO_SNDBUF else SO_RCVBUFFORCE
    try:
        sk.setsockopt(SOL_SOCKET, force, max(size // 2, 1))
    except PermissionError:
        sk.setsockopt(SOL_SOCKET, name, max(size // 2, 1))


@contextmanager
def big_send_buffer(sk: socket.socket, need: int):
    """Room to refill a queue that the sender was charged for: the buffer is put back after."""
    before = sk.getsockopt(SOL_SOCKET, SO_SNDBUF)
    if before < 2 * need + (1 << 16):
        set_buffer(sk, SO_SNDBUF, 4 * need + (1 << 17))
    try:
        yield
    finally:
        if sk.getsockopt(SOL_SOCKET, SO_SNDBUF) != before:
            set_buffer(sk, SO_SNDBUF, before)


def address_message(cls, family: int, sockaddr):
    """An IPv4/IPv6 socket address (as socket returns it) as an Address message of class cls."""
    a = cls(addr=socket.inet_pton(family, sockaddr[0].split("%")[0]), port=sockaddr[1])
    if family == socket.AF_INET6:
        a.flowinfo, a.scope_id = sockaddr[2], sockaddr[3]
    return a


def address_text(family: int, addr: bytes, port: int) -> str:
    host = socket.inet_ntop(family, addr)
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The IPv4 or IPv6 pseudo-header a UDP or TCP checksum covers."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


class RawSender:
    """Sends UDP or TCP segments from any source address, as if they came from the network:
    raw sockets of the current network namespace (IPv4: with our own header, IPPROTO_RAW
    implies IP_HDRINCL; IPv6: the source through IPV6_PKTINFO, which IPV6_TRANSPARENT lets
    be any address).  A locally sent packet keeps its route on loopback, so no
    reverse-path check drops a foreign source.  Made when first needed; a context manager."""

    def __init__(self):
        self.socks: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for sk in self.socks.values():
            sk.close()

    def send(self, proto: int, src: bytes, dst: bytes, segment: bytes, scope_id: int = 0) -> None:
        """segment: the UDP or TCP header (checksum included) and payload; src, dst: 4 or 16 bytes."""
        if len(src) == 4:
            if 4 not in self.socks:
                self.socks[4] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0, 0x4000, 64, proto, 0, src, dst)
            self.socks[4].sendto(ip + segment, (socket.inet_ntop(socket.AF_INET, dst), 0))
            return
        if proto not in self.socks:
            self.socks[proto] = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
            self.socks[proto].setsockopt(IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        self.socks[proto].sendmsg([segment], [(IPPROTO_IPV6, IPV6_PKTINFO, src + struct.pack("I", 0))], 0,
                                  (socket.inet_ntop(socket.AF_INET6, dst), 0, 0, scope_id))


def unmap(src: bytes, dst: bytes) -> tuple[bytes, bytes]:
    """IPv4 addresses of an IPv6 socket (::ffff:a.b.c.d) as IPv4 addresses."""
    if len(src) == 16 and src[:12] == V4MAPPED and dst[:12] == V4MAPPED:
        return src[12:], dst[12:]
    return src, dst


@contextmanager
def nonblocking(fd: int):
    """O_NONBLOCK for a moment (a full backlog must fail, not hang the restore); the
    open file's own flags after."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        yield
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
