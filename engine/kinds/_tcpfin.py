"""TCP connections caught while closing, for inetsk (not a kind of its own): CLOSE_WAIT
(the peer sent its FIN), FIN_WAIT2 (we sent ours and the peer acknowledged it), and with
a FIN of ours not yet acknowledged FIN_WAIT1, LAST_ACK (after the peer's FIN) and CLOSING
(the two FINs crossed).

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
    in case the peer does not answer;
  - FIN_WAIT1: shutdown(SHUT_WR) queues our FIN again behind the data (it was not
    acknowledged: the peer may not have it), sent when the window allows, as before;
  - LAST_ACK: the peer's FIN as for CLOSE_WAIT, then our FIN as for FIN_WAIT1;
  - CLOSING: our FIN first, then the peer's, which does not acknowledge ours.
A FIN not yet acknowledged is also counted in SIOCOUTQ (and, unsent, in SIOCOUTQNSD),
but is no byte of the send queue: data_lengths() takes it out.
"""
from __future__ import annotations

import socket
import struct
import time

from ..errors import ImageError
from . import _sock

FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING = 4, 5, 6, 7, 8, 9, 11
CLOSING_STATES = (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING)
FIN_RECEIVED = (CLOSE_WAIT, LAST_ACK, CLOSING)
FIN_SENT = (FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING)
FIN_UNACKED = (FIN_WAIT1, LAST_ACK, CLOSING)
# where a restored connection may be once its FINs are replayed: the state it had, or (a
# FIN of ours not yet acknowledged) one the peer's acknowledgement takes it to at once
SETTLED = {CLOSE_WAIT: (CLOSE_WAIT,), FIN_WAIT2: (FIN_WAIT2,),
           FIN_WAIT1: (FIN_WAIT1, FIN_WAIT2, CLOSING, TIME_WAIT, CLOSE),
           LAST_ACK: (LAST_ACK, CLOSE), CLOSING: (CLOSING, TIME_WAIT, CLOSE)}
TH_FIN, TH_ACK = 0x01, 0x10
TCP_INFO = 11
SETTLE_TRIES = 200          # 10 ms apart: the replayed segment is normally handled before sendto() returns


def data_only(state: int, send_seq: int, recv_seq: int) -> tuple[int, int]:
    """write_seq and rcv_nxt as read in repair mode, without the FINs."""
    if state in FIN_SENT:
        send_seq = (send_seq - 1) & 0xFFFFFFFF
    if state in FIN_RECEIVED:
        recv_seq = (recv_seq - 1) & 0xFFFFFFFF
    return send_seq, recv_seq


def data_lengths(state: int, send_len: int, unsent_len: int) -> tuple[int, int]:
    """SIOCOUTQ and SIOCOUTQNSD without a FIN of ours not yet acknowledged (it is the last
    of the queue: unsent if anything is)."""
    if state in FIN_UNACKED:
        return send_len - 1, max(unsent_len - 1, 0)
    return send_len, unsent_len


def repair_window(state: int, window: bytes, recv_seq: int) -> bytes:
    """The window as the data-only connection takes it: the last window update may have
    been made past the peer's FIN, one past where rcv_nxt now is."""
    snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup = struct.unpack("5I", window)
    if state in FIN_RECEIVED and rcv_wup == (recv_seq + 1) & 0xFFFFFFFF:
        rcv_wup, rcv_wnd = recv_seq, rcv_wnd + 1
    return struct.pack("5I", snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup)


def replay(sk, msg, where: str) -> None:
    """Out of repair mode and unlocked: the FINs (and an acknowledgement) again."""
    if msg.state not in CLOSING_STATES:
        return
    tcp = msg.tcp
    if msg.state == CLOSING:
        _shutdown(sk, where)
    if msg.state in FIN_RECEIVED:
        _inject(msg, tcp.recv_seq, (tcp.send_seq - tcp.send_len) & 0xFFFFFFFF, TH_FIN | TH_ACK, where)
    if msg.state == LAST_ACK:
        _settle(sk, CLOSE_WAIT, (CLOSE_WAIT,), where)
    if msg.state in (FIN_WAIT1, FIN_WAIT2, LAST_ACK):
        _shutdown(sk, where)
    if msg.state == FIN_WAIT2:
        _inject(msg, tcp.recv_seq, (tcp.send_seq + 1) & 0xFFFFFFFF, TH_ACK, where)
    _settle(sk, msg.state, SETTLED[msg.state], where)


def _shutdown(sk, where: str) -> None:
    try:
        sk.shutdown(socket.SHUT_WR)
    except OSError as e:
        raise ImageError(f"{where}: cannot send its FIN again: {e.strerror}") from None


def _settle(sk, want: int, states: tuple, where: str) -> None:
    for _ in range(SETTLE_TRIES):
        state = sk.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 1)[0]
        if state in states:
            return
        time.sleep(0.01)
    raise ImageError(f"{where}: the connection came back in TCP state {state}, not {want}")


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
