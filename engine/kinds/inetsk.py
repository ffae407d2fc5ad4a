"""IPv4 and IPv6 sockets: TCP listening, closed and established; UDP bound or connected.

Every socket that unixsk does not take comes here; families and protocols we do
not carry (netlink, packet, raw, SCTP...) are refused, naming them.

TCP listeners come back bound and listening with their backlog.  Connections in
a listener's accept queue or half open (SYN_RECV) cannot be carried: they are
refused, or left out with --skip-in-flight.  Established connections need
--tcp-established and go through TCP repair mode: the dump reads sequence
numbers, both queues (MSG_PEEK in repair mode), window, timestamp clock, MSS and
the options agreed at the handshake; the socket stays in repair mode, so that
when the dumped task dies nothing goes on the wire.  Meanwhile packets from the
peer to the dumped end are dropped by an nftables rule (table inet lxc_cr):
without it, a segment or ACK from the peer reaching the closed port would get a
reset and kill the peer's connection.  The restore rebuilds the socket in repair
mode (no handshake), refills the queues, and lifts the rule; the peer's next
retransmission reaches it, so the peer sees nothing but a pause.  Connections
caught while closing (CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING) are
carried the same way, their FINs sent or received again (_tcpfin.py).

UDP sockets come back bound and connected as they were, with the datagrams
queued in them, from their senders' addresses (_udpq.py).
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
import struct

from .. import kernel as k, netlink
from ..errors import ImageError, UnsupportedError
from ..files import move_above
from . import _sock, _tcpfin, _udpq
from .inetsk_pb2 import InetSocket as MESSAGE

NAME = "inetsk"
log = logging.getLogger("lxc_cr.inetsk")

AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
IPPROTO_TCP, IPPROTO_UDP = 6, 17
FAMILY_NAMES = {1: "unix (from another network namespace)", 16: "netlink", 17: "packet", 38: "crypto (AF_ALG)",
                40: "vsock", 44: "XDP", 31: "bluetooth", 5: "AppleTalk", 9: "X.25", 15: "PF_KEY"}
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}
ESTABLISHED, SYN_RECV, CLOSE, LISTEN = 1, 3, 7, 10
CONNECTED = (ESTABLISHED,) + _tcpfin.CLOSING_STATES       # carried through repair mode

TCP_MAXSEG, TCP_INFO = 2, 11
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_REPAIR_OPTIONS = 19, 20, 21, 22
TCP_TIMESTAMP, TCP_REPAIR_WINDOW = 24, 29
TCP_REPAIR_ON, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP = 1, 0, -1
TCP_NO_QUEUE, TCP_RECV_QUEUE, TCP_SEND_QUEUE = 0, 1, 2
TCPOPT_MSS, TCPOPT_WINDOW, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP = 2, 3, 4, 8
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
SIOCINQ, SIOCOUTQ, SIOCOUTQNSD = 0x541B, 0x5411, 0x894B
CHUNK = 1 << 18
MAX_TCP_WINDOW = 32767
TCP_MIN_MSS, TCPOLEN_TSTAMP_ALIGNED = 88, 12


def matches(link: str, st: os.stat_result) -> bool:
    return stat.S_ISSOCK(st.st_mode)


def _table(family: int, proto: int):
    """The options carried for a family and protocol."""
    table = _sock.COMMON + _sock.INET + (_sock.IPV4 if family == AF_INET else _sock.IPV6)
    if proto == IPPROTO_TCP:
        return table + _sock.TCP
    return table + (_sock.UDP4 if family == AF_INET else _sock.UDP6)


# --- dump --------------------------------------------------------------------------------

def _what(f, msg) -> str:
    return f"process {f.pid} fd {f.fd}: {_restore_what(msg)}"


def _describe(ctx, f, sk) -> tuple:
    """The socket's kind, addresses and TCP state; UnsupportedError for what we do not carry."""
    family = sk.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
    if family not in (AF_INET, AF_INET6):
        name = FAMILY_NAMES.get(family, f"family {family}")
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: {name} socket is not supported")
    stype = sk.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    proto = sk.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
    if (stype, proto) not in ((socket.SOCK_STREAM, IPPROTO_TCP), (socket.SOCK_DGRAM, IPPROTO_UDP)):
        raise UnsupportedError(f"process {f.pid} fd {f.fd}: IP socket of type {stype}, protocol {proto} "
                               f"is not supported (TCP and UDP are)")
    msg = MESSAGE(family=family, type=stype, protocol=proto, state=CLOSE)
    local = sk.getsockname()
    if local[1]:
        msg.local.CopyFrom(_address(family, local))
    try:
        msg.peer.CopyFrom(_address(family, sk.getpeername()))
        msg.state = ESTABLISHED
    except OSError:
        pass
    info = b""
    if proto == IPPROTO_TCP:
        info = sk.getsockopt(IPPROTO_TCP, TCP_INFO, 104)
        msg.state = info[0]
    _refuse(ctx, f, msg, info, sk)
    return msg, info


def _refuse(ctx, f, msg, info: bytes, sk) -> None:
    if msg.protocol != IPPROTO_TCP or msg.state == CLOSE:
        return
    if msg.state == LISTEN:
        queued, _ = struct.unpack_from("<II", info, 24)       # tcpi_unacked, tcpi_sacked
        half_open = _half_open(msg)
        if (queued or half_open) and not ctx.plan.skip_in_flight:
            raise UnsupportedError(f"{_what(f, msg)} has {queued} connections waiting to be accepted and "
                                   f"{half_open} half open; use --skip-in-flight to leave them out")
        if queued or half_open:
            log.warning("%s: leaving out %d connections waiting to be accepted and %d half open",
                        _what(f, msg), queued, half_open)
        return
    if msg.state in CONNECTED:
        if not ctx.plan.tcp_established:
            raise UnsupportedError(f"{_what(f, msg)} is an established connection "
                                   f"({TCP_STATES[msg.state]}); use --tcp-established")
        return
    raise UnsupportedError(f"{_what(f, msg)} is in state {TCP_STATES.get(msg.state, msg.state)}, "
                           f"which is not supported (LISTEN, CLOSE, ESTABLISHED, CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2, "
                           f"LAST_ACK and CLOSING are)")


def _half_open(msg) -> int:
    """Connections in SYN_RECV for this listener (sock_diag)."""
    port = msg.local.port if msg.HasField("local") else 0
    return sum(1 for m in netlink.inet_diag(msg.family, IPPROTO_TCP, 1 << SYN_RECV) if m["idiag_sport"] == port)


def check(ctx, f) -> list[str]:
    """For --check-only: the socket kinds, states and queues we would refuse."""
    with _sock.borrow(ctx.local_fd(f)) as sk:
        try:
            _describe(ctx, f, sk)
        except UnsupportedError as e:
            return [str(e)]
    return []


def dump(ctx, f):
    with _sock.borrow(ctx.local_fd(f)) as sk:
        msg, info = _describe(ctx, f, sk)
        _sock.read_opts(sk, _table(msg.family, msg.protocol), msg.opts)
        if msg.state == LISTEN:
            msg.backlog = struct.unpack_from("<I", info, 28)[0]     # tcpi_sacked: sk_max_ack_backlog
        elif msg.state in CONNECTED and msg.protocol == IPPROTO_TCP:
            _dump_established(ctx, f, sk, msg, info)
        elif msg.protocol == IPPROTO_UDP and _ioctl_int(sk, SIOCINQ):
            _udpq.dump(ctx, sk, msg, _what(f, msg))
    return msg


def _address(family: int, sockaddr):
    return _sock.address_message(MESSAGE.Address, family, sockaddr)


def _sockaddr(family: int, a):
    host = socket.inet_ntop(family, a.addr)
    return (host, a.port) if family == AF_INET else (host, a.port, a.flowinfo, a.scope_id)


def _ioctl_int(sk, request: int) -> int:
    return struct.unpack("i", fcntl.ioctl(sk.fileno(), request, b"\0" * 4))[0]


def _dump_established(ctx, f, sk, msg, info: bytes) -> None:
    """The connection through repair mode.  It stays in repair mode, so that the dumped
    task's death sends nothing; it is taken out of it if the tree goes on running."""
    tcp = msg.tcp
    peek_off = sk.getsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF)
    reuse = sk.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    try:
        sk.setsockopt(IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON)
    except OSError as e:
        raise UnsupportedError(f"{_what(f, msg)}: cannot enter TCP repair mode: {e.strerror}") from None
    undo = _Undo(f.pid, f.fd, reuse, msg)
    ctx.on_release.append(undo)
    if not ctx.plan.leave_running:
        # the dumped task dies: its peer must not reach the closed port until the restore
        undo.lock = tcp.locked = _lock(msg)
    try:
        if peek_off >= 0:
            sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, -1)   # peeks start at the queue's head
        _read_repair(ctx, f, sk, msg, info)
    finally:
        if peek_off >= 0:
            sk.setsockopt(socket.SOL_SOCKET, _sock.SO_PEEK_OFF, peek_off)


def _read_repair(ctx, f, sk, msg, info: bytes) -> None:
    tcp = msg.tcp
    options, wscale = info[5], info[6]
    tcp.timestamps = bool(options & TCPI_OPT_TIMESTAMPS)
    tcp.sack = bool(options & TCPI_OPT_SACK)
    tcp.wscale = bool(options & TCPI_OPT_WSCALE)
    tcp.snd_wscale, tcp.rcv_wscale = wscale & 0xF, wscale >> 4
    tcp.mss = sk.getsockopt(IPPROTO_TCP, TCP_MAXSEG)        # in repair mode: the peer's MSS clamp
    tcp.snd_mss = struct.unpack_from("<I", info, 16)[0]
    name, out = ctx.data_file("tcp")
    tcp.data = name
    try:
        sk.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        tcp.send_seq = struct.unpack("I", sk.getsockopt(IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
        tcp.send_len, tcp.unsent_len = _tcpfin.data_lengths(msg.state, _ioctl_int(sk, SIOCOUTQ),
                                                            _ioctl_int(sk, SIOCOUTQNSD))
        _copy_queue(sk, tcp.send_len, out, f"{_what(f, msg)}: send queue")
        sk.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        tcp.recv_seq = struct.unpack("I", sk.getsockopt(IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
        tcp.recv_len = _ioctl_int(sk, SIOCINQ)
        _copy_queue(sk, tcp.recv_len, out, f"{_what(f, msg)}: receive queue")
        sk.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)
    finally:
        os.close(out)
    tcp.send_seq, tcp.recv_seq = _tcpfin.data_only(msg.state, tcp.send_seq, tcp.recv_seq)
    tcp.window = sk.getsockopt(IPPROTO_TCP, TCP_REPAIR_WINDOW, 20)
    if tcp.timestamps:
        tcp.timestamp = struct.unpack("I", sk.getsockopt(IPPROTO_TCP, TCP_TIMESTAMP, 4))[0]


def _copy_queue(sk, length: int, out: int, where: str) -> None:
    """A queue selected with TCP_REPAIR_QUEUE, peeked whole (repair mode peeks from its head
    every time; the queue is bounded by the socket's buffer) into the data image."""
    if not length:
        return
    buf = bytearray(length)
    n = sk.recv_into(buf, length, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    if n != length:
        raise UnsupportedError(f"{where}: read {n} of {length} bytes")
    _sock.write_all(out, buf)


class _Undo:
    """Takes a dumped connection out of repair mode (and lifts the lock) if the tree goes on running."""

    def __init__(self, pid: int, fd: int, reuse: int, msg):
        self.pid, self.fd, self.reuse, self.msg = pid, fd, reuse, msg
        self.lock = False

    def __call__(self) -> None:
        pidfd = k.pidfd_open(self.pid)
        try:
            fd = k.pidfd_getfd(pidfd, self.fd)
        finally:
            os.close(pidfd)
        try:
            with _sock.borrow(fd) as sk:
                sk.setsockopt(IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
                # leaving repair mode forgets SO_REUSEADDR
                if self.reuse:
                    sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, self.reuse)
        finally:
            os.close(fd)
            if self.lock:
                _unlock(self.msg)


# --- the network lock (nftables) ------------------------------------------------------------

def _lock_key(msg) -> tuple[str, str] | None:
    """(set, element) matching packets from the peer to the dumped end."""
    family, src, dst = msg.family, msg.peer.addr, msg.local.addr
    if family == AF_INET6 and src[:12] == dst[:12] == b"\0" * 10 + b"\xff\xff":
        family, src, dst = AF_INET, src[12:], dst[12:]          # IPv4 on an IPv6 socket
    text = f"{socket.inet_ntop(family, src)} . {msg.peer.port} . {socket.inet_ntop(family, dst)} . {msg.local.port}"
    return ("conn4" if family == AF_INET else "conn6"), text


def _lock(msg) -> bool:
    """Drop what the peer sends to the dumped end until the restore has rebuilt it."""
    from .. import netlock          # nft is run only for established connections
    return netlock.lock(*_lock_key(msg))


def locked(files: dict) -> list[tuple[str, str]]:
    """(set, element) of every connection the dump locked, for a restore that makes the lock
    again in a new network namespace before its devices go up."""
    out = []
    for entry in files.values():
        if entry.kind == NAME:
            msg = MESSAGE()
            entry.detail.Unpack(msg)
            if msg.HasField("tcp") and msg.tcp.locked:
                out.append(_lock_key(msg))
    return out


def _unlock(msg) -> None:
    from .. import netlock
    netlock.unlock(*_lock_key(msg))


# --- restore -----------------------------------------------------------------------------

def open(ctx, entry, msg) -> int:
    where = f"files.img: IP socket {entry.id}"
    _validate(ctx, msg, where)
    table = _table(msg.family, msg.protocol)
    established = msg.protocol == IPPROTO_TCP and msg.state in CONNECTED
    if established:
        _listener_first(ctx, entry.id, msg)
    sk = socket.socket(msg.family, msg.type, msg.protocol)
    try:
        (_restore_established if established else _restore_unconnected)(ctx, sk, msg, table, where)
    except OSError as e:
        sk.close()
        raise ImageError(f"{where}: cannot restore {_restore_what(msg)}: {e.strerror}") from None
    except BaseException:
        sk.close()
        raise
    fd = move_above(sk.detach(), ctx.base_fd)
    if entry.flags & os.O_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    return fd


def _restore_unconnected(ctx, sk, msg, table, where: str) -> None:
    """A UDP socket, or a TCP one that is closed or listening."""
    _sock.apply_opts(sk, msg.opts, table, _sock.EARLY, where)
    _sock.apply_opts(sk, msg.opts, table, _sock.BUFFER, where)
    _bind(sk, msg, where, strict=msg.state != CLOSE or msg.protocol == IPPROTO_UDP)
    if msg.state == LISTEN:
        sk.listen(msg.backlog)
    elif msg.protocol == IPPROTO_UDP:
        # queued before connect(): a connected socket takes datagrams from its peer only
        _udpq.refill(ctx, sk, msg, where)
        if msg.HasField("peer"):
            sk.connect(_sockaddr(msg.family, msg.peer))
    for stage in (_sock.LATE, _sock.LAST):
        _sock.apply_opts(sk, msg.opts, table, stage, where)


def _restore_what(msg) -> str:
    """'TCP socket 1.2.3.4:80 -> 5.6.7.8:1234': a socket as the messages name it."""
    proto = "TCP" if msg.protocol == IPPROTO_TCP else "UDP"
    text = f"{proto} socket"
    if msg.HasField("local"):
        text += " " + _sock.address_text(msg.family, msg.local.addr, msg.local.port)
    if msg.HasField("peer"):
        text += " -> " + _sock.address_text(msg.family, msg.peer.addr, msg.peer.port)
    return text


def _validate(ctx, msg, where: str) -> None:
    if msg.family not in (AF_INET, AF_INET6) or (msg.type, msg.protocol) not in (
            (socket.SOCK_STREAM, IPPROTO_TCP), (socket.SOCK_DGRAM, IPPROTO_UDP)):
        raise ImageError(f"{where}: unsupported family, type or protocol")
    size = 4 if msg.family == AF_INET else 16
    for a in ([msg.local] if msg.HasField("local") else []) + ([msg.peer] if msg.HasField("peer") else []):
        if len(a.addr) != size or not 0 < a.port < 65536:
            raise ImageError(f"{where}: malformed address")
    states = (CLOSE, LISTEN) + CONNECTED if msg.protocol == IPPROTO_TCP else (CLOSE, ESTABLISHED)
    if msg.state not in states or msg.backlog > 1 << 20:
        raise ImageError(f"{where}: bad state")
    if msg.state == LISTEN and not msg.HasField("local"):
        raise ImageError(f"{where}: listening on no address")
    _sock.validate_opts(msg.opts, _table(msg.family, msg.protocol), where)
    _udpq.validate(ctx, msg, where)
    if msg.protocol == IPPROTO_TCP and msg.state in CONNECTED:
        _validate_tcp(ctx, msg, where)


def _validate_tcp(ctx, msg, where: str) -> None:
    tcp = msg.tcp
    if not ctx.plan.tcp_established:
        raise ImageError(f"the dump holds an established TCP connection ({_restore_what(msg)}): "
                         f"restore with --tcp-established")
    if not (msg.HasField("local") and msg.HasField("peer") and msg.HasField("tcp")):
        raise ImageError(f"{where}: established connection without its addresses or TCP state")
    if tcp.unsent_len > tcp.send_len or len(tcp.window) != 20 or not 64 <= tcp.mss <= 65535 or \
            tcp.snd_mss > 65535 or \
            tcp.snd_wscale > 14 or tcp.rcv_wscale > 14:
        raise ImageError(f"{where}: malformed TCP state")
    if tcp.send_len + tcp.recv_len > 1 << 31:
        raise ImageError(f"{where}: queues too large")
    if not tcp.data.startswith("tcp-") or "/" in tcp.data or \
            ctx.images.size(tcp.data) != tcp.send_len + tcp.recv_len:
        raise ImageError(f"{where}: TCP queue image {tcp.data!r} does not hold {tcp.send_len + tcp.recv_len} bytes")


def _bind(sk, msg, where: str, strict: bool) -> None:
    if not msg.HasField("local"):
        return
    try:
        sk.bind(_sockaddr(msg.family, msg.local))
    except OSError as e:
        if strict:
            raise
        # a closed TCP socket keeps the address of a connection that ended; another may hold it now
        log.warning("%s: %s comes back unbound: %s", where, _restore_what(msg), e.strerror)


def _listener_first(ctx, file_id: int, msg) -> None:
    """A listener of the dump on the connection's port is made first: it must bind before the
    connections it accepted (which share its port) hold the port without SO_REUSEADDR."""
    listeners = ctx.shared.get(NAME)
    if listeners is None:
        listeners = ctx.shared[NAME] = []
        for entry in ctx.files.values():
            if entry.kind == NAME:
                m = MESSAGE()
                if entry.detail.Unpack(m) and m.state == LISTEN and m.HasField("local"):
                    listeners.append((entry.id, m.family, m.local.port))
    for other, family, port in listeners:
        if other != file_id and family == msg.family and port == msg.local.port:
            ctx.fd_of(other)


def _set_repair(sk, option: int, value, where: str) -> None:
    try:
        sk.setsockopt(IPPROTO_TCP, option, value)
    except OSError as e:
        raise ImageError(f"{where}: TCP repair step {option} failed: {e.strerror}") from None


def _restore_established(ctx, sk, msg, table, where: str) -> None:
    """The connection rebuilt in repair mode: no handshake, the same sequence numbers,
    options and queues; the window last (it is checked against the refilled queue)."""
    tcp = msg.tcp
    _sock.apply_opts(sk, msg.opts, table, _sock.EARLY, where)
    _set_repair(sk, TCP_REPAIR, TCP_REPAIR_ON, where)
    # room for the queues while they are refilled; the dumped sizes are set again after
    _sock.set_buffer(sk, _sock.SO_SNDBUF, 2 * tcp.send_len + (1 << 20))
    _sock.set_buffer(sk, _sock.SO_RCVBUF, 2 * tcp.recv_len + (1 << 20))
    # segments the size they had: connect() sizes them from TCP_MAXSEG; set too, as the
    # MSS clamp below, so that the kernel sizing them again later cannot make them
    # larger than half of a small window (and stall the connection on it)
    mss = _clamp(tcp)
    _set_repair(sk, TCP_MAXSEG, min(mss, MAX_TCP_WINDOW), where)
    sk.bind(_sockaddr(msg.family, msg.local))
    _set_repair(sk, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, where)
    _set_repair(sk, TCP_QUEUE_SEQ, struct.pack("I", (tcp.recv_seq - tcp.recv_len) & 0xFFFFFFFF), where)
    _set_repair(sk, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, where)
    _set_repair(sk, TCP_QUEUE_SEQ, struct.pack("I", (tcp.send_seq - tcp.send_len) & 0xFFFFFFFF), where)
    sk.connect(_sockaddr(msg.family, msg.peer))         # in repair mode: straight to ESTABLISHED
    _set_repair(sk, TCP_REPAIR_OPTIONS, _repair_options(tcp), where)
    if tcp.timestamps:
        _set_repair(sk, TCP_TIMESTAMP, struct.pack("I", tcp.timestamp), where)
    data = ctx.images.open(tcp.data)
    try:
        sent = tcp.send_len - tcp.unsent_len
        _set_repair(sk, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, where)
        _send_from(sk, data, tcp.send_len, tcp.recv_len, where)
        # what had been sent goes back as sent and unacknowledged: retransmitted if need be
        _set_repair(sk, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, where)
        _send_from(sk, data, 0, sent, where)
        _set_repair(sk, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, where)
        _set_repair(sk, TCP_REPAIR_WINDOW, _tcpfin.repair_window(msg.state, tcp.window, tcp.recv_seq), where)
        _set_repair(sk, TCP_REPAIR, TCP_REPAIR_OFF, where)
        if tcp.locked:
            _unlock(msg)
        # what had not been sent yet is sent now, as the task would have
        _send_from(sk, data, sent, tcp.unsent_len, where)
        _tcpfin.replay(sk, msg, where)
    finally:
        os.close(data)
    # leaving repair mode forgot SO_REUSEADDR (the other early options are in place)
    reuse = [o for o in msg.opts if (o.level, o.name) == (socket.SOL_SOCKET, socket.SO_REUSEADDR)]
    _sock.apply_opts(sk, reuse, table, _sock.EARLY, where)
    for stage in (_sock.BUFFER, _sock.LATE, _sock.LAST):
        _sock.apply_opts(sk, msg.opts, table, stage, where)


def _clamp(tcp) -> int:
    """The MSS clamp for the restored connection: the segment size it used, plus the
    timestamp option the kernel takes off it, within what the peer announced."""
    mss = (tcp.snd_mss or tcp.mss) + (TCPOLEN_TSTAMP_ALIGNED if tcp.timestamps else 0)
    return max(min(mss, tcp.mss), TCP_MIN_MSS)


def _repair_options(tcp) -> bytes:
    opts = struct.pack("II", TCPOPT_MSS, _clamp(tcp))
    if tcp.wscale:
        opts += struct.pack("II", TCPOPT_WINDOW, tcp.snd_wscale | (tcp.rcv_wscale << 16))
    if tcp.sack:
        opts += struct.pack("II", TCPOPT_SACK_PERM, 0)
    if tcp.timestamps:
        opts += struct.pack("II", TCPOPT_TIMESTAMP, 0)
    return opts


def _send_from(sk, data: int, offset: int, length: int, where: str) -> None:
    """Send `length` bytes of the queue image from `offset`, in chunks, without blocking."""
    end = offset + length
    while offset < end:
        chunk = os.pread(data, min(CHUNK, end - offset), offset)
        if not chunk:
            raise ImageError(f"{where}: TCP queue image is short")
        view = memoryview(chunk)
        while view:
            try:
                n = sk.send(view, socket.MSG_DONTWAIT)
            except BlockingIOError:
                raise ImageError(f"{where}: the restored socket has no room for its queue") from None
            view = view[n:]
            offset += n
