"""Half-closed TCP connections, for inetsk (not a kind of its own): CLOSE_WAIT (the peer
sent its FIN) and FIN_WAIT2 (we sent ours and the peer acknowledged it).

TCP repair mode rebuilds a connection as ESTABLISHED.  A FIN takes one sequence
number but carries no byte: the dump takes it out of the sequence numbers it saves,
so the connection is saved as its data, and the state says which FIN there was.
The restore rebuilds the data part through repair mode as for ESTABLISHED, then, out
of repair mode and with the network lock lifted, replays the FIN:
  - CLOSE_WAIT: a FIN segment from the peer (its address, port and next sequence
    number, the peer's last window, a correct checksum) is sent to the socket through
    a raw socket in its network namespace; the socket acknowledges it, which the peer
    takes as a duplicate acknowledgement;
  - FIN_WAIT2: shutdown(SHUT_WR) sends our FIN again (the peer, which has it, answers
    with an acknowledgement), and an ACK of it from the peer is replayed the same way,
    in case the peer does not answer.
FIN_WAIT1, LAST_ACK and CLOSING (a FIN not yet acknowledged) are refused by inetsk.
"""
from __future__ import annotations

import socket
import struct
import time

from ..errors import ImageError
from . import _sock

FIN_WAIT2, CLOSE_WAIT = 5, 8
HALF_CLOSED = (FIN_WAIT2, CLOSE_WAIT)
TH_FIN, TH_ACK = 0x01, 0x10
TCP_INFO = 11
SETTLE_TRIES = 200          # 10 ms apart: the replayed segment is normally handled before sendto() returns


def data_only(state: int, send_seq: int, recv_seq: int) -> tuple[int, int]:
    """write_seq and rcv_nxt as read in repair mode, without the FIN (an acknowledged FIN
    is in neither SIOCOUTQ nor SIOCINQ)."""
    if state == FIN_WAIT2:
        send_seq = (send_seq - 1) & 0xFFFFFFFF
    if state == CLOSE_WAIT:
        recv_seq = (recv_seq - 1) & 0xFFFFFFFF
    return send_seq, recv_seq


def repair_window(state: int, window: bytes, recv_seq: int) -> bytes:
    """The window as the data-only connection takes it: the last window update may have
    been made past the peer's FIN, one past where rcv_nxt now is."""
    snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup = struct.unpack("5I", window)
    if state == CLOSE_WAIT and rcv_wup == (recv_seq + 1) & 0xFFFFFFFF:
        rcv_wup, rcv_wnd = recv_seq, rcv_wnd + 1
    return struct.pack("5I", snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup)


def replay(sk, msg, where: str) -> None:
    """Out of repair mode and unlocked: the FIN (and its acknowledgement) again."""
    tcp = msg.tcp
    if msg.state == CLOSE_WAIT:
        _inject(msg, tcp.recv_seq, (tcp.send_seq - tcp.send_len) & 0xFFFFFFFF, TH_FIN | TH_ACK, where)
    elif msg.state == FIN_WAIT2:
        try:
            sk.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise ImageError(f"{where}: cannot send its FIN again: {e.strerror}") from None
        _inject(msg, tcp.recv_seq, (tcp.send_seq + 1) & 0xFFFFFFFF, TH_ACK, where)
    else:
        return
    for _ in range(SETTLE_TRIES):
        state = sk.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 1)[0]
        if state == msg.state:
            return
        time.sleep(0.01)
    raise ImageError(f"{where}: the connection came back in TCP state {state}, not {msg.state}")


def _inject(msg, seq: int, ack: int, flags: int, where: str) -> None:
    """One segment from the peer to the socket (_sock.RawSender)."""
    src, dst = _sock.unmap(msg.peer.addr, msg.local.addr)
    snd_wnd = struct.unpack("5I", msg.tcp.window)[1]
    window = min(snd_wnd >> (msg.tcp.snd_wscale if msg.tcp.wscale else 0), 0xFFFF)
    header = struct.pack("!HHIIBBHHH", msg.peer.port, msg.local.port, seq, ack, 5 << 4, flags, window, 0, 0)
    check = _sock.inet_checksum(_sock.pseudo_header(src, dst, socket.IPPROTO_TCP, len(header)) + header)
    try:
        with _sock.RawSender() as raw:
            raw.send(socket.IPPROTO_TCP, src, dst, header[:16] + struct.pack("!H", check) + header[18:],
                     msg.local.scope_id)
    except OSError as e:
        raise ImageError(f"{where}: cannot replay the peer's FIN or ACK: {e.strerror}") from None
