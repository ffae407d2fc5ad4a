"""`criu swrk N`, the way in of the RPC server (rpc.py): the session's first request is answered
here when lxc_cr/rpc_canned.py holds its answer, else rpc.py serves the session.

runc asks VERSION in a session of its own before every checkpoint and restore.  Answered here,
that session loads neither protobuf nor the socket module (whose enum classes take ~6 ms to
build), only _socket, the C module socket.py wraps: it ends in ~9 ms instead of ~16.
"""
from __future__ import annotations

import _socket
import sys


def main(argv: list[str]) -> int:
    """Serve one session on fd argv[0]; returns the exit status."""
    if len(argv) != 1 or not argv[0].isdigit():
        if sys.stderr is not None:
            sys.stderr.write("lxc-cr: error: usage: swrk FD (the fd of a SOCK_SEQPACKET socket)\n")
        return 1
    fd = int(argv[0])
    code = _answer_canned(fd)
    if code is not None:
        return code
    from .rpc import serve
    return serve(fd)


def _answer_canned(fd: int) -> int | None:
    """The exit status if the first request is one of rpc_canned's, byte for byte, and has been
    answered; None for rpc.py to serve the session (and to say what is wrong with the fd)."""
    try:
        from .rpc_canned import ANSWERS
    except ImportError:         # not built: every request is parsed
        return None
    try:
        sock = _socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if sock.family != _socket.AF_UNIX or sock.type != _socket.SOCK_SEQPACKET:
            return None
        probe = bytearray(64)
        size = sock.recv_into(probe, len(probe), _socket.MSG_PEEK | _socket.MSG_TRUNC)
        answer = ANSWERS.get(bytes(probe[:size])) if size <= len(probe) else None
        if answer is None:
            return None
        sock.recv(size)
        sock.sendmsg([answer], [], _socket.MSG_NOSIGNAL)
        return 0
    except OSError:
        return 1                # the client went away: nobody to tell
    finally:
        sock.detach()           # the fd stays open for rpc.py
