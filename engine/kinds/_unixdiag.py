"""What the kernel says about unix sockets, for unixsk (not a kind of its own): sock_diag
(peer, accept queue, queue sizes, shutdown state, socket file), which sockets the tree
holds, files in flight (fdinfo), and how names are shown in messages."""
from __future__ import annotations

import os
import struct

from .. import netlink, proc

SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
TYPE_NAMES = {SOCK_STREAM: "stream", SOCK_DGRAM: "datagram", SOCK_SEQPACKET: "seqpacket"}
ESTABLISHED, CLOSE, LISTEN = 1, 7, 10            # sock_diag states
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2

_unix_inodes: set[int] = set()


def is_unix(ino: int) -> bool:
    """Is this socket inode a unix socket of our network namespace?  (/proc/net/unix,
    re-read when an inode is not in the last reading)."""
    if ino not in _unix_inodes:
        lines = proc.read_bytes("/proc/self/net/unix").split(b"\n")[1:]
        _unix_inodes.update(int(line.split()[6]) for line in lines if line.strip())
    return ino in _unix_inodes


class Diag:
    """What sock_diag says about one unix socket."""
    __slots__ = ("type", "state", "peer", "icons", "rqueue", "wqueue", "shutdown", "vfs")

    def __init__(self, m):
        self.type = m["udiag_type"]
        self.state = m["udiag_state"]
        self.peer = m.get_attr("UNIX_DIAG_PEER") or 0
        icons = m.get_attr("UNIX_DIAG_ICONS")
        raw = bytes.fromhex(icons.replace(":", "")) if icons else b""
        self.icons = list(struct.unpack(f"<{len(raw) // 4}I", raw))
        rq = m.get_attr("UNIX_DIAG_RQLEN")
        # listening: connections queued and the backlog; otherwise bytes queued and sent
        self.rqueue = rq["udiag_rqueue"] if rq else 0
        self.wqueue = rq["udiag_wqueue"] if rq else 0
        self.shutdown = m.get_attr("UNIX_DIAG_SHUTDOWN") or 0
        vfs = m.get_attr("UNIX_DIAG_VFS")
        self.vfs = (vfs["udiag_vfs_dev"], vfs["udiag_vfs_ino"]) if vfs else None


def diag_all() -> dict[int, Diag]:
    """Every unix socket of the dumper's network namespace."""
    return {m["udiag_ino"]: Diag(m) for m in netlink.unix_diag()}


def held_sockets(pids) -> dict[int, tuple[int, int]]:
    """Socket inode -> (pid, fd) for every socket the tree holds."""
    out = {}
    for pid in sorted(pids):
        try:
            fds = proc.fds(pid)
        except (ProcessLookupError, OSError):
            continue        # a zombie
        for fd in fds:
            try:
                link = proc.fd_link(pid, fd)
            except (ProcessLookupError, OSError):
                continue
            if link.startswith("socket:["):
                out.setdefault(int(link[8:-1]), (pid, fd))
    return out


def scm_fds(pid: int, fd: int) -> int:
    """Files in flight in a unix socket's receive queue (fdinfo)."""
    try:
        return int(proc.fdinfo(pid, fd).get("scm_fds", "0"))
    except (OSError, ValueError):
        return 0


def name_bytes(addr) -> bytes:
    if not addr:
        return b""
    return os.fsencode(addr) if isinstance(addr, str) else bytes(addr)


def show(name: bytes) -> str:
    if not name:
        return "unnamed"
    if name[:1] == b"\0":
        return "@" + name[1:].decode("utf-8", "replace")
    return name.decode("utf-8", "replace")


def what(f, d: Diag, name: bytes) -> str:
    return f"process {f.pid} fd {f.fd}: unix {TYPE_NAMES.get(d.type, d.type)} socket {show(name)}"